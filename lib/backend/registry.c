/*
 * Backend selection.  "auto" probes uring, then aio, then psync at run
 * time: a kernel or a sandbox that refuses io_uring or libaio falls
 * through to the next one.  A backend that was not compiled in is named
 * in the log together with the meson option that builds it.
 */
#include "../internal.h"
#include <string.h>
#include <stdlib.h>

extern const struct dio_backend_ops dio_psync_ops;
#ifdef DIO_HAVE_URING
extern const struct dio_backend_ops dio_uring_ops;
#endif
#ifdef DIO_HAVE_AIO
extern const struct dio_backend_ops dio_aio_ops;
#endif
#ifdef DIO_HAVE_NBD
extern const struct dio_backend_ops dio_nbd_ops;
#endif

#define MAX_USER_BACKENDS 8
static const struct dio_backend_ops *user_backends[MAX_USER_BACKENDS];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct dio_backend_ops *builtin(const char *name, int *err)
{
	if (!strcmp(name, "psync"))
		return &dio_psync_ops;
	if (!strcmp(name, "uring")) {
#ifdef DIO_HAVE_URING
		return &dio_uring_ops;
#else
		dio_log(DIO_LOG_ERR, "backend \"uring\" was not built: configure with meson -During=enabled (needs liburing-dev)");
		*err = ENOTSUP;
		return NULL;
#endif
	}
	if (!strcmp(name, "aio")) {
#ifdef DIO_HAVE_AIO
		return &dio_aio_ops;
#else
		dio_log(DIO_LOG_ERR, "backend \"aio\" was not built: configure with meson -Daio=enabled (needs libaio-dev)");
		*err = ENOTSUP;
		return NULL;
#endif
	}
	if (!strcmp(name, "nbd")) {
#ifdef DIO_HAVE_NBD
		return &dio_nbd_ops;
#else
		dio_log(DIO_LOG_ERR, "backend \"nbd\" was not built: configure with meson -Dnbd=enabled (needs libnbd-dev)");
		*err = ENOTSUP;
		return NULL;
#endif
	}
	*err = ENOENT;
	return NULL;
}

/* The schemes of a table, read only from tables that have the field. */
static const char *const *schemes_of(const struct dio_backend_ops *ops)
{
	return ops->abi >= 7 ? ops->schemes : NULL;
}

static bool serves(const struct dio_backend_ops *ops, const char *path)
{
	const char *const *s = ops ? schemes_of(ops) : NULL;
	for (; s && *s; s++)
		if (!strncmp(path, *s, strlen(*s)))
			return true;
	return false;
}

/* The URI schemes libdio knows a backend for, built or not: a target
   named by one of them is never taken for a file name. */
static const char *const known_schemes[] = { "nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
					     "nbd+vsock://", "nbds+vsock://", NULL };

const struct dio_backend_ops *dio_backend_for_target(const char *path, int *err)
{
	*err = 0;
	pthread_mutex_lock(&reg_lock);
	for (unsigned i = 0; i < MAX_USER_BACKENDS; i++) {
		if (serves(user_backends[i], path)) {
			const struct dio_backend_ops *o = user_backends[i];
			pthread_mutex_unlock(&reg_lock);
			return o;
		}
	}
	pthread_mutex_unlock(&reg_lock);
#ifdef DIO_HAVE_NBD
	if (serves(&dio_nbd_ops, path)) {
		int e = dio_nbd_ops.probe();
		if (e) {
			dio_log(DIO_LOG_ERR, "backend \"nbd\" cannot run here: %s", strerror(-e));
			*err = -e;
			return NULL;
		}
		return &dio_nbd_ops;
	}
#endif
	for (const char *const *s = known_schemes; *s; s++) {
		if (!strncmp(path, *s, strlen(*s))) {
			dio_log(DIO_LOG_ERR, "%s: no backend for this URI was built: configure with meson -Dnbd=enabled (needs libnbd-dev)", path);
			*err = ENOTSUP;
			return NULL;
		}
	}
	return NULL;
}

bool dio_backend_builtin(const struct dio_backend_ops *ops)
{
#ifdef DIO_HAVE_URING
	if (ops == &dio_uring_ops)
		return true;
#endif
#ifdef DIO_HAVE_AIO
	if (ops == &dio_aio_ops)
		return true;
#endif
	return ops == &dio_psync_ops;
}

const struct dio_backend_ops *dio_backend_find(const char *name, int *err)
{
	const char *env = getenv("DIO_BACKEND");
	if (env && *env)
		name = env;
	return dio_backend_find_exact(name, err);
}

const struct dio_backend_ops *dio_backend_find_exact(const char *name, int *err)
{
	*err = 0;
	if (!name || !*name || !strcmp(name, "auto")) {
		static const char *order[] = { "uring", "aio", "psync" };
		for (unsigned i = 0; i < 3; i++) {
			int e = 0;
			const struct dio_backend_ops *o = NULL;
			if (!strcmp(order[i], "psync"))
				o = &dio_psync_ops;
#ifdef DIO_HAVE_URING
			if (!strcmp(order[i], "uring"))
				o = &dio_uring_ops;
#endif
#ifdef DIO_HAVE_AIO
			if (!strcmp(order[i], "aio"))
				o = &dio_aio_ops;
#endif
			if (o && (e = o->probe()) == 0)
				return o;
		}
		*err = ENODEV;
		return NULL;
	}
	pthread_mutex_lock(&reg_lock);
	for (unsigned i = 0; i < MAX_USER_BACKENDS; i++) {
		if (user_backends[i] && !strcmp(user_backends[i]->name, name)) {
			const struct dio_backend_ops *o = user_backends[i];
			pthread_mutex_unlock(&reg_lock);
			return o;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	const struct dio_backend_ops *o = builtin(name, err);
	if (!o) {
		if (*err == ENOENT)
			dio_log(DIO_LOG_ERR, "unknown backend \"%s\"", name);
		return NULL;
	}
	int e = o->probe();
	if (e) {
		dio_log(DIO_LOG_ERR, "backend \"%s\" cannot run here: %s", name, strerror(-e));
		*err = -e;
		return NULL;
	}
	return o;
}

DIO_API int dio_backend_register(const struct dio_backend_ops *ops)
{
	if (!ops || ops->abi < 1 || ops->abi > DIO_BACKEND_ABI || !ops->name || !*ops->name ||
	    strlen(ops->name) >= DIO_BACKEND_NAME_MAX || !ops->probe || !ops->open ||
	    !ops->submit || !ops->flush || !ops->close || !strcmp(ops->name, "auto") ||
	    (ops->abi >= 2 && !ops->submit_async != !ops->reap) ||
	    (schemes_of(ops) && (!ops->target_open || !ops->open_target || !ops->target_close))) {
		errno = EINVAL;
		return -1;
	}
	int err = 0;
	pthread_mutex_lock(&reg_lock);
	int slot = -1;
	for (int i = 0; i < MAX_USER_BACKENDS; i++) {
		if (user_backends[i] == ops || (user_backends[i] && !strcmp(user_backends[i]->name, ops->name)))
			err = EEXIST;
		if (!user_backends[i] && slot < 0)
			slot = i;
	}
	if (!err && (!strcmp(ops->name, "psync") || !strcmp(ops->name, "uring") || !strcmp(ops->name, "aio") ||
		     !strcmp(ops->name, "nbd")))
		err = EEXIST;
	if (!err && slot < 0)
		err = ENOSPC;
	if (!err)
		user_backends[slot] = ops;
	pthread_mutex_unlock(&reg_lock);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}
