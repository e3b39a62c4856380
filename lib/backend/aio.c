/*
 * aio: Linux native AIO through libaio.  One io_submit per batch, the
 * context sized to the batch; the flush is fdatasync, because kernels
 * refuse IOCB_CMD_FDSYNC on most block devices.
 */
#include "../internal.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libaio.h>

/*
 * io_destroy waits for an RCU grace period (tens of milliseconds), so a
 * process that mounts and unmounts often would spend its time there.
 * Idle kernel contexts are kept in a small process-wide pool instead and
 * handed to the next open of the same depth; the kernel frees them at
 * exit.  The pool is bounded, so fs.aio-max-nr is not hoarded.
 */
#define POOL_MAX 8
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { io_context_t io; unsigned depth; } pool[POOL_MAX];
static unsigned pool_n;

/* A forked child shares none of its parent's AIO contexts. */
static void pool_forget(void)
{
	pthread_mutex_init(&pool_lock, NULL);
	pool_n = 0;
}
static void pool_setup(void) { pthread_atfork(NULL, NULL, pool_forget); }
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static io_context_t pool_get(unsigned depth)
{
	io_context_t io = 0;
	pthread_once(&pool_once, pool_setup);
	pthread_mutex_lock(&pool_lock);
	for (unsigned i = 0; i < pool_n; i++) {
		if (pool[i].depth == depth) {
			io = pool[i].io;
			pool[i] = pool[--pool_n];
			break;
		}
	}
	pthread_mutex_unlock(&pool_lock);
	return io;
}

static void pool_put(io_context_t io, unsigned depth)
{
	pthread_mutex_lock(&pool_lock);
	if (pool_n < POOL_MAX) {
		pool[pool_n].io = io;
		pool[pool_n++].depth = depth;
		io = 0;
	}
	pthread_mutex_unlock(&pool_lock);
	if (io)
		io_destroy(io);
}

struct aio_ctx {
	io_context_t io;
	int fd;
	unsigned depth;
	struct iocb *cbs;
	struct iocb **cbp;
	struct io_event *ev;
	struct iocb *acb;          /* iocbs of asynchronous I/Os in flight */
	struct iocb **afree;       /* stack of free ones */
	unsigned nfree;
	int efd;                   /* signalled by asynchronous completions, or -1 */
};

static int aio_probe(void)
{
	io_context_t io = 0;
	int e = io_setup(1, &io);
	if (e < 0)
		return e;
	io_destroy(io);
	return 0;
}

static void aio_close(void *ctx)
{
	struct aio_ctx *c = ctx;
	if (c->io)
		pool_put(c->io, c->depth);   /* idle: nothing in flight on it */
	free(c->cbs);
	free(c->cbp);
	free(c->ev);
	free(c->acb);
	free(c->afree);
	free(c);
}

static void *aio_open(int fd, unsigned depth, int *err)
{
	struct aio_ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		*err = ENOMEM;
		return NULL;
	}
	c->fd = fd;
	c->efd = -1;
	c->depth = depth;
	c->cbs = calloc(depth, sizeof(*c->cbs));
	c->cbp = calloc(depth, sizeof(*c->cbp));
	c->ev = calloc(depth, sizeof(*c->ev));
	c->acb = calloc(depth, sizeof(*c->acb));
	c->afree = calloc(depth, sizeof(*c->afree));
	for (unsigned i = 0; c->acb && c->afree && i < depth; i++)
		c->afree[c->nfree++] = &c->acb[i];
	int e = (c->cbs && c->cbp && c->ev && c->acb && c->afree) ? 0 : -ENOMEM;
	if (!e && !(c->io = pool_get(depth)))
		e = io_setup((int)depth, &c->io);
	if (e < 0) {
		/* EAGAIN: fs.aio-max-nr is used up system-wide. */
		aio_close(c);
		*err = -e;
		return NULL;
	}
	return c;
}

static void prep_iocb(struct iocb *cb, int fd, struct dio_bio *b)
{
	if (b->op == DIO_BIO_READ)
		io_prep_preadv(cb, fd, b->iov, b->iovcnt, (long long)b->offset);
	else
		io_prep_pwritev(cb, fd, b->iov, b->iovcnt, (long long)b->offset);
	cb->aio_rw_flags = (b->flags & DIO_BIO_FUA) ? RWF_DSYNC : 0;
	cb->data = b;
}

/*
 * io_submit the n iocbs, continuing where the kernel stopped; *sub says
 * how many went down.  It stops at an iocb it cannot start (returning
 * the count before it, then the error for it): 0, or the error that
 * left the rest unsubmitted.  Only EINTR is retried, so a kernel that
 * keeps taking nothing cannot make the caller spin.
 */
static int io_sub(io_context_t io, struct iocb **cbs, unsigned n, unsigned *sub)
{
	*sub = 0;
	while (*sub < n) {
		int r = io_submit(io, (long)(n - *sub), cbs + *sub);
		if (r == -EINTR)
			continue;
		if (r <= 0)
			return r ? r : -EAGAIN;
		*sub += (unsigned)r;
	}
	return 0;
}

static int aio_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	struct aio_ctx *c = ctx;
	unsigned done = 0;
	while (done < n) {
		unsigned batch = MIN(n - done, c->depth);
		for (unsigned i = 0; i < batch; i++) {
			struct dio_bio *b = &bios[done + i];
			struct iocb *cb = &c->cbs[i];
			prep_iocb(cb, c->fd, b);
			c->cbp[i] = cb;
		}
		/* the kernel stops at an iocb it cannot start: that one fails,
		   the ones after it are offered again */
		unsigned sub = 0, inflight = 0;
		while (sub < batch) {
			unsigned took;
			int r = io_sub(c->io, c->cbp + sub, batch - sub, &took);
			sub += took;
			inflight += took;
			if (r)
				bios[done + sub++].res = r;
		}
		unsigned reaped = 0;
		while (reaped < inflight) {
			int got = io_getevents(c->io, 1, (long)(inflight - reaped), c->ev, NULL);
			if (got == -EINTR)
				continue;
			if (got < 0)
				return got;   /* the context itself is gone */
			for (int i = 0; i < got; i++) {
				struct dio_bio *b = c->ev[i].data;
				b->res = (long)c->ev[i].res;
			}
			reaped += (unsigned)got;
		}
		done += batch;
	}
	return 0;
}

/* Asynchronous pair for queues: iocbs come from a stack sized to the
   context's depth at open, so submitting allocates nothing.  Returns how
   many of the bios (from the first) went down, or -errno if none did. */
static int aio_submit_async(void *ctx, struct dio_bio **bios, unsigned n)
{
	struct aio_ctx *c = ctx;
	struct iocb *cbs[64];
	unsigned done = 0;
	while (done < n) {
		unsigned batch = MIN(MIN(n - done, 64u), c->nfree);
		if (!batch)
			return done ? (int)done : -EAGAIN;
		for (unsigned i = 0; i < batch; i++) {
			struct iocb *cb = c->afree[--c->nfree];
			prep_iocb(cb, c->fd, bios[done + i]);
			if (c->efd >= 0)
				io_set_eventfd(cb, c->efd);
			cbs[i] = cb;
		}
		unsigned sub = 0;
		int r = io_sub(c->io, cbs, batch, &sub);
		for (unsigned i = sub; i < batch; i++)
			c->afree[c->nfree++] = cbs[i];
		done += sub;
		if (r)
			return done ? (int)done : r;
	}
	return (int)done;
}

static int aio_reap(void *ctx, struct dio_bio **done, unsigned min_nr, unsigned max_nr, int timeout_ms)
{
	struct aio_ctx *c = ctx;
	max_nr = MIN(max_nr, c->depth);
	int64_t deadline = dio_deadline(timeout_ms);   /* in all, whatever interrupts the wait */
	int r;
	for (;;) {
		int left = dio_ms_left(deadline);
		struct timespec ts = { left / 1000, (long)(left % 1000) * 1000000 };
		r = io_getevents(c->io, (long)min_nr, (long)max_nr, c->ev, left < 0 ? NULL : &ts);
		if (r != -EINTR)
			break;
		if (left == 0) {
			r = 0;   /* interrupted, and the time is up */
			break;
		}
	}
	if (r < 0)
		return r;
	for (int i = 0; i < r; i++) {
		struct dio_bio *b = c->ev[i].data;
		b->res = (long)c->ev[i].res;
		c->afree[c->nfree++] = c->ev[i].obj;
		done[i] = b;
	}
	return r;
}

static int aio_set_eventfd(void *ctx, int fd)
{
	struct aio_ctx *c = ctx;
	c->efd = fd;
	return 0;
}

static int aio_flush(void *ctx)
{
	struct aio_ctx *c = ctx;
	return fdatasync(c->fd) < 0 ? -errno : 0;
}

const struct dio_backend_ops dio_aio_ops = {
	.abi = DIO_BACKEND_ABI, .name = "aio", .probe = aio_probe, .open = aio_open,
	.submit = aio_submit, .flush = aio_flush, .close = aio_close,
	.submit_async = aio_submit_async, .reap = aio_reap, .set_eventfd = aio_set_eventfd,
};
