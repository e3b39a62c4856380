/*
 * The VFS: which volume a file lives on, and the VFS methods.
 *
 * A volume is mounted once per process, at the first file that names it,
 * and shared by every connection of the process; it is unmounted when
 * its last file closes.  A libdio mount is exclusive to one process (the
 * volume is its journal's and allocator's only writer), so another
 * process that holds it makes the open fail with SQLITE_CANTOPEN and a
 * message saying so.  Which volume: the one dio_sqlite_register bound the
 * VFS to; else the URI's volume= parameter (main database, journal and
 * WAL names carry the URI); else DIO_SQLITE_VOLUME; else, for names that
 * carry no URI (a super-journal, xAccess and xDelete of a journal), the
 * volume of the open database the name belongs to.
 *
 * Temporary files (temp databases, statement journals, names SQLite
 * makes up) go to the default VFS: they never outlive the connection,
 * and keeping them off the volume keeps its namespace the program's.
 */
#include "dsq.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pthread_mutex_t dsq_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dsq_mount *mounts;

#define ROUND8(n) (((n) + 7) & ~(size_t)7)
#define TEMP_FLAGS (SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_SUBJOURNAL | SQLITE_OPEN_TRANSIENT_DB)
#define URI_FLAGS  (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL)

static sqlite3_vfs *orig_of(sqlite3_vfs *vfs)
{
	return vfs->pAppData;
}

/* The errno of a failed libdio call as a SQLite result code. */
int dsq_errno_rc(int err, int io_rc)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
		return SQLITE_FULL;
	case ENOMEM:
		return SQLITE_IOERR_NOMEM;
	default:
		return io_rc;
	}
}

/* ---- mounts ------------------------------------------------------------------ */

/* Why the last open of this thread failed: the errno xGetLastError gives
   SQLite (sqlite3_system_errno), beside the message in SQLite's log. */
static _Thread_local int last_errno;

static int cantopen(int e)
{
	last_errno = e;
	return SQLITE_CANTOPEN;
}

/* Under dsq_lock: the mount of path (canonical), made if need be.  A
   volume first opened read-only (every open of it so far is) is mounted
   read-only; so is one the process may not write (an image without
   write permission, a read-only device), as SQLite's own VFS then opens
   the database read-only.  dsq_file_open opens the files of a read-only
   mount read-only. */
/* The name a volume is known by: an image or device by its real path, a
   device named by URI (nbd://...: dio_mount(3)) by the URI as written. */
static bool canonical(const char *path, char canon[PATH_MAX])
{
	if (strstr(path, "://")) {
		if (strlen(path) >= PATH_MAX) {
			errno = ENAMETOOLONG;
			return false;
		}
		strcpy(canon, path);
		return true;
	}
	return realpath(path, canon) != NULL;
}

static struct dsq_mount *mount_get(const char *path, bool rdonly, int *rc)
{
	char canon[PATH_MAX];
	if (!canonical(path, canon)) {
		int e = errno;
		dsq.log(SQLITE_CANTOPEN, "libdio: volume %s: %s", path, strerror(e));
		*rc = cantopen(e);
		return NULL;
	}
	for (struct dsq_mount *m = mounts; m; m = m->next) {
		if (m->path && !strcmp(m->path, canon)) {
			m->refs++;
			return m;
		}
	}
	struct dsq_mount *m = calloc(1, sizeof(*m));
	if (!m || !(m->path = strdup(canon))) {
		free(m);
		*rc = SQLITE_NOMEM;
		return NULL;
	}
	pthread_mutex_init(&m->run_lock, NULL);
	struct dio_mount_opts ro = { .flags = DIO_MOUNT_RDONLY };
	m->vol = dio_mount(canon, rdonly ? &ro : NULL);
	if (!m->vol && !rdonly && (errno == EACCES || errno == EROFS || errno == EPERM)) {
		dsq.log(SQLITE_NOTICE, "libdio: volume %s is not writable here: mounted read-only", canon);
		m->vol = dio_mount(canon, &ro);
		rdonly = true;
	}
	m->rdonly = rdonly;
	if (!m->vol) {
		int e = errno;
		last_errno = e;
		if (e == EBUSY)
			dsq.log(SQLITE_CANTOPEN, "libdio: volume %s is mounted by another process (a libdio volume "
				"belongs to one process at a time)", canon);
		else
			dsq.log(SQLITE_CANTOPEN, "libdio: cannot mount volume %s: %s%s", canon, strerror(e),
				e == EINVAL ? " (not a libdio volume)" : "");
		pthread_mutex_destroy(&m->run_lock);
		free(m->path);
		free(m);
		*rc = SQLITE_CANTOPEN;
		return NULL;
	}
	m->owned = true;
	m->refs = 1;
	m->next = mounts;
	mounts = m;
	return m;
}

/* Under dsq_lock: a file of m closed. */
void dsq_mount_put(struct dsq_mount *m)
{
	--m->refs;
	if (m->runq && m->refs == (m->owned ? 0u : 1u)) {
		/* no file open (each drained at close): the queue goes, so
		   that the volume unmounts, here or by the program that bound it */
		dio_queue_destroy(m->runq);
		m->runq = NULL;
	}
	if (m->refs || !m->owned)
		return;
	for (struct dsq_mount **pp = &mounts; *pp; pp = &(*pp)->next) {
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	}
	if (dio_umount(m->vol))
		dsq.log(SQLITE_IOERR, "libdio: unmounting %s: %s", m->path, strerror(errno));
	pthread_mutex_destroy(&m->run_lock);
	for (unsigned i = 0; i < sizeof(m->slots) / sizeof(m->slots[0]); i++)
		free(m->slots[i].buf);
	free(m->run);
	free(m->path);
	free(m);
}

/* Under dsq_lock: the mount holding an open file whose name starts name
   (a database whose journal or WAL this is), or NULL. */
static struct dsq_mount *mount_of_name(const char *name)
{
	struct dsq_mount *best = NULL;
	size_t best_len = 0;
	for (struct dsq_mount *m = mounts; m; m = m->next) {
		for (struct dsq_lock *l = m->locks; l; l = l->next) {
			size_t n = strlen(l->name);
			if (n > best_len && !strncmp(name, l->name, n)) {
				best = m;
				best_len = n;
			}
		}
	}
	return best;
}

/* Under dsq_lock: the mount for a file of this VFS, with a reference;
   uri_ok: name carries SQLite's URI parameters. */
static struct dsq_mount *mount_for(struct dsq_vfs *dv, const char *name, bool uri_ok, bool rdonly, int *rc)
{
	if (dv->bound) {
		dv->bound->refs++;
		return dv->bound;
	}
	const char *path = uri_ok ? dsq.uri_parameter(name, "volume") : NULL;
	if (!path) {
		struct dsq_mount *m = mount_of_name(name);
		if (m) {
			m->refs++;
			return m;
		}
		path = getenv("DIO_SQLITE_VOLUME");
	}
	if (!path) {
		dsq.log(SQLITE_CANTOPEN, "libdio: no volume for %s: add volume=PATH to the URI "
			"(file:%s?vfs=%s&volume=PATH) or set DIO_SQLITE_VOLUME", name, name, dv->name);
		*rc = cantopen(ENOENT);
		return NULL;
	}
	return mount_get(path, rdonly, rc);
}

/* Under dsq_lock: the mount xAccess and xDelete act on (no reference). */
static struct dsq_mount *mount_peek(struct dsq_vfs *dv, const char *name)
{
	if (dv->bound)
		return dv->bound;
	struct dsq_mount *m = mount_of_name(name);
	const char *path = getenv("DIO_SQLITE_VOLUME");
	char canon[PATH_MAX];
	if (!m && path && canonical(path, canon))
		for (m = mounts; m && (!m->path || strcmp(m->path, canon)); m = m->next)
			;
	if (!m && mounts && !mounts->next)
		m = mounts;   /* the only volume open */
	return m;
}

/* ---- VFS methods ----------------------------------------------------------------- */

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *out_flags)
{
	struct dsq_vfs *dv = (struct dsq_vfs *)vfs;
	struct dsq_file *p = (struct dsq_file *)file;
	memset(p, 0, sizeof(*p));
	if (!name || (flags & TEMP_FLAGS)) {
		sqlite3_vfs *o = orig_of(vfs);
		p->real = (sqlite3_file *)((char *)p + ROUND8(sizeof(*p)));
		int rc = o->xOpen(o, name, p->real, flags, out_flags);
		p->base.pMethods = rc == SQLITE_OK ? &dsq_tmp_io : NULL;
		if (rc != SQLITE_OK && p->real->pMethods)
			p->real->pMethods->xClose(p->real);
		return rc;
	}
	int rc = SQLITE_OK;
	pthread_mutex_lock(&dsq_lock);
	struct dsq_mount *m = mount_for(dv, name, (flags & URI_FLAGS) != 0, (flags & SQLITE_OPEN_READONLY) != 0, &rc);
	pthread_mutex_unlock(&dsq_lock);
	if (!m)
		return rc;
	rc = dsq_file_open(p, m, name, flags, out_flags);
	if (rc != SQLITE_OK) {
		last_errno = errno;
		pthread_mutex_lock(&dsq_lock);
		dsq_mount_put(m);
		pthread_mutex_unlock(&dsq_lock);
	}
	return rc;
}

/* The volume a name-only call (delete, access) acts on, with a reference
   (mount_put when done), its writes held or in flight on the device
   first: NULL if none. */
/* The mount name belongs to, held, with everything of its files on the
   device (*rc: the error of a run that failed, the caller's to report). */
static struct dsq_mount *mount_hold(sqlite3_vfs *vfs, const char *name, int *rc)
{
	pthread_mutex_lock(&dsq_lock);
	struct dsq_mount *m = mount_peek((struct dsq_vfs *)vfs, name);
	if (m)
		m->refs++;
	pthread_mutex_unlock(&dsq_lock);
	*rc = m ? dsq_run_drain(m) : SQLITE_OK;
	if (m && *rc == SQLITE_OK)
		*rc = dsq_run_failed(m);   /* nothing is deleted while a failure is unreported */
	return m;
}

static void mount_release(struct dsq_mount *m)
{
	pthread_mutex_lock(&dsq_lock);
	dsq_mount_put(m);
	pthread_mutex_unlock(&dsq_lock);
}

static int x_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	/* nothing of another file may be held past a delete: a rollback
	   journal goes only once the pages it protects are on the device */
	int rc;
	struct dsq_mount *m = mount_hold(vfs, name, &rc);
	if (!m)
		return SQLITE_IOERR_DELETE_NOENT;
	if (rc != SQLITE_OK) {
		mount_release(m);
		return rc;   /* the journal stays: it is hot */
	}
	pthread_mutex_lock(&dsq_lock);
	dsq_wc_forget(m, name);
	pthread_mutex_unlock(&dsq_lock);
	if (dio_unlink(m->vol, name))
		rc = errno == ENOENT ? SQLITE_IOERR_DELETE_NOENT : SQLITE_IOERR_DELETE;
	/* syncDir: the unlink durable before SQLite goes on (power loss);
	   without it the unlink already survives the process's death */
	else if (sync_dir && dio_syncfs(m->vol))
		rc = SQLITE_IOERR_DIR_FSYNC;
	mount_release(m);
	return rc;
}

static int x_access(sqlite3_vfs *vfs, const char *name, int flags, int *res)
{
	*res = 0;
	/* drained: a held run may be this very file's first bytes */
	int rc;
	struct dsq_mount *m = mount_hold(vfs, name, &rc);
	if (!m)
		return SQLITE_OK;
	if (rc != SQLITE_OK) {
		mount_release(m);
		return rc;
	}
	struct dio_stat st;
	int r = dio_stat(m->vol, name, &st);
	int e = errno;
	bool rdonly = m->rdonly;
	mount_release(m);
	if (r < 0)
		return e != ENOENT ? SQLITE_IOERR_ACCESS : SQLITE_OK;
	/* as the unix VFS answers: an empty file does not "exist" (a journal
	   truncated to nothing is not hot) */
	*res = flags == SQLITE_ACCESS_EXISTS ? st.size > 0 : flags == SQLITE_ACCESS_READWRITE ? !rdonly : 1;
	return SQLITE_OK;
}

static int x_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	size_t len = strlen(name);
	if (len >= (size_t)n || len > DIO_NAME_MAX)
		return SQLITE_CANTOPEN;
	memcpy(out, name, len + 1);   /* one flat namespace: the name is the path */
	return SQLITE_OK;
}

/* Everything that is not about files: the default VFS's. */
static void *x_dlopen(sqlite3_vfs *v, const char *f) { return orig_of(v)->xDlOpen(orig_of(v), f); }
static void x_dlerror(sqlite3_vfs *v, int n, char *m) { orig_of(v)->xDlError(orig_of(v), n, m); }
static void (*x_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) { return orig_of(v)->xDlSym(orig_of(v), h, s); }
static void x_dlclose(sqlite3_vfs *v, void *h) { orig_of(v)->xDlClose(orig_of(v), h); }
static int x_randomness(sqlite3_vfs *v, int n, char *out) { return orig_of(v)->xRandomness(orig_of(v), n, out); }
static int x_sleep(sqlite3_vfs *v, int us) { return orig_of(v)->xSleep(orig_of(v), us); }
static int x_current_time(sqlite3_vfs *v, double *t) { return orig_of(v)->xCurrentTime(orig_of(v), t); }
/* The errno of this thread's last failed open (a busy volume: EBUSY, a
   missing image: ENOENT, not a volume: EINVAL), as the unix VFS gives
   its open's errno; 0 when none failed. */
static int x_last_error(sqlite3_vfs *v, int n, char *msg)
{
	(void)v;
	if (n > 0 && msg)
		snprintf(msg, (size_t)n, "%s", last_errno ? strerror(last_errno) : "");
	return last_errno;
}

static int x_current_time64(sqlite3_vfs *v, sqlite3_int64 *t)
{
	sqlite3_vfs *o = orig_of(v);
	if (o->iVersion >= 2 && o->xCurrentTimeInt64)
		return o->xCurrentTimeInt64(o, t);
	double d;
	int rc = o->xCurrentTime(o, &d);
	*t = (sqlite3_int64)(d * 86400000.0);
	return rc;
}

/* Fill dv as a VFS named name over vol (NULL: per database). */
int dsq_vfs_init(struct dsq_vfs *dv, const char *name, struct dio_vol *vol)
{
	sqlite3_vfs *o = dsq.vfs_find(NULL);
	/* our own VFS made default earlier is not a base to build on */
	if (o && o->xOpen == x_open)
		o = orig_of(o);
	if (!o)
		return SQLITE_ERROR;
	if (strlen(name) >= sizeof(dv->name))
		return SQLITE_MISUSE;
	snprintf(dv->name, sizeof(dv->name), "%s", name);
	if (vol) {
		struct dsq_mount *m = calloc(1, sizeof(*m));
		if (!m)
			return SQLITE_NOMEM;
		m->vol = vol;
		m->refs = 1;    /* the binding's: never unmounted here */
		pthread_mutex_init(&m->run_lock, NULL);
		pthread_mutex_lock(&dsq_lock);
		m->next = mounts;
		mounts = m;
		pthread_mutex_unlock(&dsq_lock);
		dv->bound = m;
	}
	sqlite3_vfs *b = &dv->base;
	b->iVersion = 2;
	b->szOsFile = (int)(ROUND8(sizeof(struct dsq_file)) + (size_t)o->szOsFile);
	b->mxPathname = 512;
	b->zName = dv->name;
	b->pAppData = o;
	b->xOpen = x_open;
	b->xDelete = x_delete;
	b->xAccess = x_access;
	b->xFullPathname = x_full_pathname;
	b->xDlOpen = x_dlopen;
	b->xDlError = x_dlerror;
	b->xDlSym = x_dlsym;
	b->xDlClose = x_dlclose;
	b->xRandomness = x_randomness;
	b->xSleep = x_sleep;
	b->xCurrentTime = x_current_time;
	b->xGetLastError = x_last_error;
	b->xCurrentTimeInt64 = x_current_time64;
	return SQLITE_OK;
}
