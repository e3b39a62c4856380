/*
 * Device contexts: which backend context a synchronous call submits on.
 *
 * Every thread gets a context of its own on each volume it does I/O on
 * (an io_uring ring, an aio context), opened at its first device I/O
 * there and closed when the thread exits or the volume closes, whichever
 * comes first.  A synchronous call then submits without taking a lock or
 * touching a cache line another thread writes.  Only its thread submits
 * on it, so it comes from the backend's open_owned where there is one
 * (io_uring: SINGLE_ISSUER|DEFER_TASKRUN).  Closing one from another
 * thread (a volume closed while its threads live) cannot unregister the
 * device from such a ring, which then holds the open file until the
 * kernel tears the ring down, a few milliseconds later: the volume drops
 * its flock explicitly and a mount retries a block device's EBUSY for up
 * to half a second (info.c), so the next mount does not see it.
 *
 * The number of thread contexts per volume is bounded (DIO_NTCTX), so that
 * a program with a thousand threads does not hold a thousand rings or
 * exhaust aio-max-nr.  A thread beyond the bound, or whose open failed
 * (EMFILE, EAGAIN from io_setup: it does not ask again on that volume),
 * shares the pool: a few contexts, each
 * behind its own mutex, taken with trylock from the one the thread used
 * last.  The mount opens the pool's first context, so that the mount
 * fails early when the backend cannot run and a context always exists.
 *
 * The registry (thread contexts by volume and by thread) changes only
 * under registry_lock: at a thread's first I/O on a volume, at thread
 * exit (a pthread key destructor), at volume close.  The lookup on the
 * hot path reads the calling thread's own list and each entry's vol_id,
 * which never changes; volume ids are never reused, so an entry left from
 * a closed volume can never match a new volume at the same address.
 */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIO_NTCTX 64   /* thread contexts per volume; beyond, the pool */

struct dio_tctx {
	struct dio_devctx dc;      /* dc.ctx: this thread's backend context */
	uint64_t vol_id;           /* the volume it belongs to (immutable) */
	struct dio_vol *v;         /* NULL once that volume closed it */
	struct dio_tctx *tnext;    /* the thread's list */
	struct dio_tctx *vnext;    /* the volume's list */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t next_vol_id = 1;

static DIO_TLS struct dio_tctx *tl_head;   /* this thread's contexts */
static DIO_TLS struct dio_tctx *tl_last;   /* the one it used last */
static DIO_TLS unsigned pool_hint;
static DIO_TLS uint64_t tl_refused;        /* a volume that could not open
					       one for this thread: it uses the pool */

/* Under registry_lock: take e off its volume's list and close it. */
static void tctx_detach(struct dio_tctx *e)
{
	struct dio_vol *v = e->v;
	for (struct dio_tctx **p = &v->dev.tctx; *p; p = &(*p)->vnext) {
		if (*p == e) {
			*p = e->vnext;
			break;
		}
	}
	atomic_store_explicit(&v->dev.ntctx_hint, --v->dev.ntctx, memory_order_relaxed);
	v->dev.ops->close(e->dc.ctx);
	e->dc.ctx = NULL;
	e->v = NULL;
}

/* The thread is exiting: close its contexts on volumes still mounted.
   Runs as the thread key's destructor, so `head` is the key's value. */
static void tctx_thread_exit(void *head)
{
	pthread_mutex_lock(&registry_lock);
	for (struct dio_tctx *e = head, *next; e; e = next) {
		next = e->tnext;
		if (e->v)
			tctx_detach(e);
		free(e);
	}
	pthread_mutex_unlock(&registry_lock);
	tl_head = tl_last = NULL;
}

/* A child forked while another thread held the lock would wait forever
   at its first open. */
static void registry_after_fork(void)
{
	pthread_mutex_init(&registry_lock, NULL);
}

static void thread_key_make(void)
{
	if (pthread_key_create(&thread_key, tctx_thread_exit))
		abort();   /* PTHREAD_KEYS_MAX exhausted at first use: no way on */
	pthread_atfork(NULL, NULL, registry_after_fork);
}

/* Under registry_lock: free this thread's entries whose volume closed. */
static void tctx_prune(void)
{
	for (struct dio_tctx **p = &tl_head; *p;) {
		struct dio_tctx *e = *p;
		if (e->v) {
			p = &e->tnext;
			continue;
		}
		*p = e->tnext;
		if (tl_last == e)
			tl_last = NULL;
		free(e);
	}
}

/* This thread's first I/O on v: open its context, or NULL if the bound
   is reached or the backend cannot open another (*refused: the open
   failed, so the thread need not ask again).  The slot is taken before
   the open, so that threads arriving together never open more than the
   bound allows. */
/* One backend context on the volume's device: on its file descriptor, or
   on the target a backend opened itself (ABI 7).  owned: only the calling
   thread will submit on it (open_owned). */
void *devctx_open(struct dio_vol *v, unsigned depth, bool owned, int *err)
{
	if (v->dev.tdev)
		return v->dev.ops->open_target(v->dev.tdev, depth, err);
	if (owned && backend_has_owned(v->dev.ops))
		return v->dev.ops->open_owned(v->dev.fd, depth, err);
	return v->dev.ops->open(v->dev.fd, depth, err);
}

static struct dio_tctx *tctx_open(struct dio_vol *v, bool *refused)
{
	if (atomic_load_explicit(&v->dev.ntctx_hint, memory_order_relaxed) >= DIO_NTCTX)
		return NULL;
	pthread_once(&thread_key_once, thread_key_make);
	pthread_mutex_lock(&registry_lock);
	bool room = v->dev.ntctx < DIO_NTCTX;
	if (room)
		atomic_store_explicit(&v->dev.ntctx_hint, ++v->dev.ntctx, memory_order_relaxed);
	pthread_mutex_unlock(&registry_lock);
	if (!room)
		return NULL;
	int err = 0;
	struct dio_tctx *e = NULL;   /* dio_devctx keeps a cache line of its own */
	if (!posix_memalign((void **)&e, 64, sizeof(*e))) {
		memset(e, 0, sizeof(*e));
		/* only this thread submits on it: the backend may bind it to
		   the thread (io_uring: SINGLE_ISSUER|DEFER_TASKRUN) */
		e->dc.ctx = devctx_open(v, v->dev.depth, true, &err);
	}
	pthread_mutex_lock(&registry_lock);
	if (!e || !e->dc.ctx) {
		*refused = true;
		atomic_store_explicit(&v->dev.ntctx_hint, --v->dev.ntctx, memory_order_relaxed);
		pthread_mutex_unlock(&registry_lock);
		free(e);
		return NULL;
	}
	e->vol_id = v->dev.id;
	e->v = v;
	tctx_prune();
	e->vnext = v->dev.tctx;
	v->dev.tctx = e;
	e->tnext = tl_head;
	tl_head = e;
	pthread_mutex_unlock(&registry_lock);
	pthread_setspecific(thread_key, tl_head);
	return e;
}

/* A pooled context, locked: the first free one from the one this thread
   used last; pool members beyond the first open on first use.  If none is
   free and no other opens, wait for the first. */
static struct dio_devctx *pool_get(struct dio_vol *v)
{
	for (unsigned i = 0; i < v->dev.nctx; i++) {
		unsigned k = (pool_hint + i) % v->dev.nctx;
		struct dio_devctx *c = &v->dev.ctx[k];
		if (pthread_mutex_trylock(&c->lock) != 0)
			continue;
		if (!c->ctx) {
			int err = 0;
			if (!atomic_load_explicit(&v->dev.pool_full, memory_order_relaxed))
				c->ctx = devctx_open(v, v->dev.depth, false, &err);
			if (!c->ctx) {
				/* the backend is out of contexts: do not ask on every call */
				atomic_store_explicit(&v->dev.pool_full, true, memory_order_relaxed);
				pthread_mutex_unlock(&c->lock);
				continue;
			}
		}
		pool_hint = k;
		return c;
	}
	struct dio_devctx *c = &v->dev.ctx[0];
	pthread_mutex_lock(&c->lock);
	return c;
}

struct dio_devctx *devctx_get(struct dio_vol *v)
{
	if (tl_last && tl_last->vol_id == v->dev.id)
		return &tl_last->dc;
	for (struct dio_tctx *e = tl_head; e; e = e->tnext) {
		if (e->vol_id == v->dev.id) {
			tl_last = e;
			return &e->dc;
		}
	}
	if (tl_refused != v->dev.id) {
		bool refused = false;
		struct dio_tctx *e = tctx_open(v, &refused);
		if (e) {
			tl_last = e;
			return &e->dc;
		}
		if (refused)
			tl_refused = v->dev.id;
	}
	return pool_get(v);
}

void devctx_put(struct dio_devctx *c)
{
	if (c->pooled)
		pthread_mutex_unlock(&c->lock);
}

int devctx_init(struct dio_vol *v)
{
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);
	v->dev.id = atomic_fetch_add_explicit(&next_vol_id, 1, memory_order_relaxed);
	v->dev.nctx = (unsigned)MIN(MAX(nproc, 1L), (long)DIO_NCTX);
	for (unsigned i = 0; i < v->dev.nctx; i++) {
		pthread_mutex_init(&v->dev.ctx[i].lock, NULL);
		v->dev.ctx[i].pooled = true;
	}
	int err = 0;
	v->dev.ctx[0].ctx = devctx_open(v, v->dev.depth, false, &err);
	if (!v->dev.ctx[0].ctx)
		return -(err ? err : EIO);
	return 0;
}

/* The volume is closing (no I/O in flight): close every context on it,
   including those of threads still running, whose entries stay on their
   lists, marked, until they next open one or exit. */
void devctx_release(struct dio_vol *v)
{
	pthread_mutex_lock(&registry_lock);
	while (v->dev.tctx)
		tctx_detach(v->dev.tctx);
	pthread_mutex_unlock(&registry_lock);
	for (unsigned i = 0; i < v->dev.nctx; i++) {
		if (v->dev.ctx[i].ctx)
			v->dev.ops->close(v->dev.ctx[i].ctx);
		pthread_mutex_destroy(&v->dev.ctx[i].lock);
	}
	v->dev.nctx = 0;
}

/* ---- targets named by URI (backend ABI 7) ----------------------------- */

/* The identities of the targets mounted in this process: a second mount
   of one is EBUSY, as for a local device (whose flock says it). */
static pthread_mutex_t targets_lock = PTHREAD_MUTEX_INITIALIZER;
struct target_claim { struct target_claim *next; char id[DIO_TARGET_ID_MAX]; };
static struct target_claim *targets;

static bool pow2(uint64_t x) { return x && !(x & (x - 1)); }

static int target_claim(const char *id)
{
	pthread_mutex_lock(&targets_lock);
	int e = 0;
	for (struct target_claim *c = targets; c && !e; c = c->next)
		if (!strcmp(c->id, id))
			e = -EBUSY;
	struct target_claim *c = e ? NULL : calloc(1, sizeof(*c));
	if (!e && !c)
		e = -ENOMEM;
	if (c) {
		memcpy(c->id, id, sizeof(c->id));
		c->next = targets;
		targets = c;
	}
	pthread_mutex_unlock(&targets_lock);
	return e;
}

static void target_unclaim(const char *id)
{
	pthread_mutex_lock(&targets_lock);
	for (struct target_claim **p = &targets; *p; p = &(*p)->next) {
		if (!strcmp((*p)->id, id)) {
			struct target_claim *c = *p;
			*p = c->next;
			free(c);
			break;
		}
	}
	pthread_mutex_unlock(&targets_lock);
}

/* Connect to the target path names, through v->dev.ops (which serves its
   scheme), and take its geometry from what the backend found. */
int dev_target_open(struct dio_vol *v, const char *path, bool rdonly)
{
	struct dio_target t;
	memset(&t, 0, sizeof(t));
	int err = 0;
	void *dev = v->dev.ops->target_open(path, rdonly, &t, &err);
	if (!dev) {
		dio_log(DIO_LOG_ERR, "%s: backend %s cannot open it: %s", path, v->dev.ops->name, strerror(err ? err : EIO));
		return -(err ? err : EIO);
	}
	t.id[sizeof(t.id) - 1] = 0;
	if (!t.id[0])
		snprintf(t.id, sizeof(t.id), "%s", path);
	int e = 0;
	if (!pow2(t.logical_bs) || !pow2(t.physical_bs) || t.physical_bs < t.logical_bs || !pow2(t.mem_align) ||
	    !pow2(t.max_io) || t.max_io < t.physical_bs || t.size < t.logical_bs || t.logical_bs > 65536) {
		dio_log(DIO_LOG_ERR, "%s: backend %s gave an impossible geometry", path, v->dev.ops->name);
		e = -EINVAL;
	} else if (!rdonly && (t.flags & DIO_TARGET_RDONLY)) {
		dio_log(DIO_LOG_ERR, "%s: the target is read-only", path);
		e = -EROFS;
	}
	if (!e && (e = target_claim(t.id)) == -EBUSY)
		dio_log(DIO_LOG_ERR, "%s: already mounted in this process", path);
	if (!e && !(v->dev.tid = strdup(t.id))) {
		target_unclaim(t.id);
		e = -ENOMEM;
	}
	if (e) {
		v->dev.ops->target_close(dev);
		return e;
	}
	v->dev.tdev = dev;
	struct dio_geom *g = &v->dev.geom;
	memset(g, 0, sizeof(*g));
	g->size = t.size & ~(uint64_t)(t.logical_bs - 1);
	g->logical_bs = t.logical_bs;
	g->physical_bs = t.physical_bs;
	g->mem_align = t.mem_align < 8 ? 8 : t.mem_align;
	g->opt_io = t.opt_io;
	g->max_io = t.max_io;
	g->volatile_cache = t.flags & DIO_TARGET_FLUSH;
	return 0;
}

void dev_target_close(struct dio_vol *v)
{
	if (!v->dev.tdev)
		return;
	v->dev.ops->target_close(v->dev.tdev);
	v->dev.tdev = NULL;
	target_unclaim(v->dev.tid);
	free(v->dev.tid);
	v->dev.tid = NULL;
}
