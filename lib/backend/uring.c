/*
 * uring: io_uring through liburing.  One ring per context (libdio keeps a
 * context per submitting thread and one per queue), the device fd
 * registered, a batch is one io_uring_submit_and_wait; flushes are a
 * plain fdatasync (see uring_flush).  On a file whose I/O io_uring can
 * only punt to a worker thread (tmpfs: dio_dev_never_async), the I/Os
 * of a synchronous batch are system calls of the waiting thread: the
 * punt and the wakeups cost up to ten times the copy (SQLite's WAL
 * inserts on /dev/shm, bench/RESULTS.md).  Queues keep the ring.
 */
#include "../internal.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <liburing.h>

struct uring_ctx {
	struct io_uring ring;
	int fd;          /* the device, for flushes */
	unsigned depth;
	bool has_bufs;
	bool deferred;   /* DEFER_TASKRUN: completions show only after an enter */
	bool inline_io;  /* dio_dev_never_async: synchronous batches by syscall */
	unsigned cq_mask;   /* the completion ring's index mask */
};

/* One buffer: READ_FIXED/WRITE_FIXED if it is registered, else plain
   READ/WRITE (no iovec to import); several: READV/WRITEV. */
static inline void prep_rw(struct io_uring_sqe *sqe, const struct dio_bio *b)
{
	if (b->flags & DIO_BIO_FIXED) {
		int idx = (int)(b->flags >> DIO_BIO_BUF_SHIFT);
		if (b->op == DIO_BIO_READ)
			io_uring_prep_read_fixed(sqe, 0, b->iov[0].iov_base, (unsigned)b->iov[0].iov_len, b->offset, idx);
		else
			io_uring_prep_write_fixed(sqe, 0, b->iov[0].iov_base, (unsigned)b->iov[0].iov_len, b->offset, idx);
	} else if (b->iovcnt == 1 && b->op == DIO_BIO_READ)
		io_uring_prep_read(sqe, 0, b->iov[0].iov_base, (unsigned)b->iov[0].iov_len, b->offset);
	else if (b->iovcnt == 1)
		io_uring_prep_write(sqe, 0, b->iov[0].iov_base, (unsigned)b->iov[0].iov_len, b->offset);
	else if (b->op == DIO_BIO_READ)
		io_uring_prep_readv(sqe, 0, b->iov, (unsigned)b->iovcnt, b->offset);
	else
		io_uring_prep_writev(sqe, 0, b->iov, (unsigned)b->iovcnt, b->offset);
}

static int uring_probe(void)
{
	struct io_uring r;
	int e = io_uring_queue_init(2, &r, 0);
	if (e < 0)
		return e;
	io_uring_queue_exit(&r);
	return 0;
}

static void *ring_open(int fd, unsigned depth, int *err, bool owned)
{
	struct uring_ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		*err = ENOMEM;
		return NULL;
	}
	/* COOP_TASKRUN: completions are processed when the owner next enters
	   the kernel instead of interrupting it (5.19+); older kernels say
	   EINVAL and get a plain ring.  SINGLE_ISSUER|DEFER_TASKRUN are
	   faster still (+15 % on 4 KiB QD32 reads from RAM, bench/RESULTS.md)
	   but tie the ring to the task that made it: only that task can
	   reap, and a plain queue may be handed to another thread with
	   requests in flight (the contract: "one thread at a time").
	   Contexts only their thread submits on (a thread's own synchronous
	   context, a DIO_QUEUE_SINGLE_THREAD queue) come from open_owned and
	   get them, as fio's rings do. */
	int e = -EINVAL;
	if (owned) {
		e = io_uring_queue_init(depth, &c->ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
							 IORING_SETUP_COOP_TASKRUN);
		c->deferred = e == 0;
	}
	if (e == -EINVAL)
		e = io_uring_queue_init(depth, &c->ring, IORING_SETUP_COOP_TASKRUN);
	if (e == -EINVAL)
		e = io_uring_queue_init(depth, &c->ring, 0);
	if (e < 0) {
		free(c);
		*err = -e;
		return NULL;
	}
	e = io_uring_register_files(&c->ring, &fd, 1);
	if (e < 0) {
		io_uring_queue_exit(&c->ring);
		free(c);
		*err = -e;
		return NULL;
	}
	c->depth = depth;
	c->fd = fd;
	c->cq_mask = *c->ring.cq.kring_mask;
	c->inline_io = dio_dev_never_async(fd);
	return c;
}

static void *uring_open(int fd, unsigned depth, int *err) { return ring_open(fd, depth, err, false); }
static void *uring_open_owned(int fd, unsigned depth, int *err) { return ring_open(fd, depth, err, true); }

/*
 * Withdraw what the kernel left in the submission queue.  liburing keeps
 * the entries it handed over between *khead and *ktail; the kernel reads
 * them only inside io_uring_enter, which only this context's caller makes
 * (no SQPOLL), so moving the tail back to the head takes them back: no
 * later enter issues them behind the caller's back.
 */
static void sq_withdraw(struct io_uring *ring)
{
	unsigned head = io_uring_smp_load_acquire(ring->sq.khead);
	ring->sq.sqe_head = ring->sq.sqe_tail = head;
	io_uring_smp_store_release(ring->sq.ktail, head);
}

static int sq_enter(struct uring_ctx *c, unsigned wait_nr)
{
	return wait_nr ? io_uring_submit_and_wait(&c->ring, wait_nr) : io_uring_submit_and_get_events(&c->ring);
}

/* sq_push after a first enter (r) that did not take all queued entries. */
static NOINLINE unsigned sq_push_rest(struct uring_ctx *c, unsigned wait_nr, unsigned queued, int r, int *err)
{
	unsigned taken = 0;
	for (;;) {
		if (r == -EINTR) {
			r = sq_enter(c, wait_nr);
			continue;
		}
		if (r <= 0) {
			*err = r ? r : -EAGAIN;
			sq_withdraw(&c->ring);
			return taken;
		}
		taken += (unsigned)r;
		if (taken >= queued)
			return taken;
		r = sq_enter(c, wait_nr);
	}
}

/*
 * Hand the prepared entries to the kernel (and wait for wait_nr
 * completions in the same enter when it takes them all).  The kernel
 * stops early at an entry it cannot start -- that one still completes,
 * with its error -- and goes on at the next enter; it refuses outright
 * when it is out of requests (EAGAIN, EBUSY).  What it did not take is
 * withdrawn, so the caller knows exactly which I/Os will complete: the
 * first `return value` ones it prepared.  *err says why it stopped short.
 * The usual case, all taken at the first enter, is inline.
 */
static inline unsigned sq_push(struct uring_ctx *c, unsigned wait_nr, int *err)
{
	unsigned queued = io_uring_sq_ready(&c->ring);
	*err = 0;
	if (!queued)
		return 0;
	int r = sq_enter(c, wait_nr);
	if (r == (int)queued)
		return queued;
	return sq_push_rest(c, wait_nr, queued, r, err);
}

/* Submit the batch in ring-sized pieces and reap every completion.  An
   I/O the kernel would not take fails with its error; the ones it took
   are always waited for, so none is left behind. */
static int uring_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	struct uring_ctx *c = ctx;
	unsigned i = 0;
	if (c->inline_io) {
		for (unsigned k = 0; k < n; k++)
			dio_dev_bio(c->fd, &bios[k]);
		return 0;
	}
	while (i < n) {
		unsigned first = i, batch = 0;
		for (; i < n && batch < c->depth; i++, batch++) {
			struct dio_bio *b = &bios[i];
			struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
			prep_rw(sqe, b);
			if (b->flags & DIO_BIO_FUA)
				sqe->rw_flags = RWF_DSYNC;
			sqe->flags |= IOSQE_FIXED_FILE;
			io_uring_sqe_set_data64(sqe, i);
		}
		int err;
		unsigned taken = sq_push(c, batch, &err);
		for (unsigned k = first + taken; k < i; k++)
			bios[k].res = err;
		for (unsigned reaped = 0; reaped < taken;) {
			struct io_uring_cqe *cqe;
			int r = io_uring_wait_cqe(&c->ring, &cqe);
			if (r == -EINTR)
				continue;
			if (r < 0)
				return r;   /* the ring itself is gone */
			bios[io_uring_cqe_get_data64(cqe)].res = cqe->res;
			io_uring_cqe_seen(&c->ring, cqe);
			reaped++;
		}
	}
	return 0;
}

/* Asynchronous pair for queues: the bio pointer rides in user_data.
   Returns how many of the bios (from the first) went down. */
static int uring_submit_async(void *ctx, struct dio_bio **bios, unsigned n)
{
	struct uring_ctx *c = ctx;
	unsigned started = 0;
	int err = 0;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
		if (!sqe) {
			started += sq_push(c, 0, &err);
			if (err)
				return started ? (int)started : err;
			sqe = io_uring_get_sqe(&c->ring);
		}
		struct dio_bio *b = bios[i];
		prep_rw(sqe, b);
		if (b->flags & DIO_BIO_FUA)
			sqe->rw_flags = RWF_DSYNC;
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data(sqe, b);
	}
	/* GETEVENTS with no minimum: the same system call also runs the
	   completions already due, so the next reap finds them without
	   entering the kernel again (fio's io_uring loop does the same) */
	started += sq_push(c, 0, &err);
	return started ? (int)started : err;
}

/* The completions already in the ring, up to max, released to the
   kernel with one store (not one per completion).  The ring's tail is
   read once: io_uring_for_each_cqe reads it again for every entry.  The
   rings are made without CQE32, so entry i is cqes[i & mask].  An entry
   of liburing's own (the timeout of a wait on a kernel without
   EXT_ARG) is passed over, as liburing's peek does. */
static unsigned take_ready(struct uring_ctx *c, struct dio_bio **done, unsigned max)
{
	unsigned head = *c->ring.cq.khead, ready = io_uring_cq_ready(&c->ring), seen = 0, got = 0;
	for (; seen < ready && got < max; seen++) {
		const struct io_uring_cqe *cqe = &c->ring.cq.cqes[(head + seen) & c->cq_mask];
		if (cqe->user_data == LIBURING_UDATA_TIMEOUT)
			continue;
		struct dio_bio *b = (struct dio_bio *)(uintptr_t)cqe->user_data;
		b->res = cqe->res;
		done[got++] = b;
	}
	io_uring_cq_advance(&c->ring, seen);
	return got;
}

/* Completions an enter would bring in: ones the kernel could not post
   (the ring full: a queue never has that many I/Os in flight, but a
   caller of the backend might) wait in its overflow list, and task work
   it asks us to run (the flags liburing's own peek looks at). */
static bool cq_needs_enter(const struct uring_ctx *c)
{
	return IO_URING_READ_ONCE(*c->ring.sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN);
}

/* Take what is there; if that is fewer than min_nr, wait for the rest
   in one io_uring_enter (not one per completion). */
static int uring_reap(void *ctx, struct dio_bio **done, unsigned min_nr, unsigned max_nr, int timeout_ms)
{
	struct uring_ctx *c = ctx;
	unsigned got = take_ready(c, done, max_nr);
	if (got < max_nr && got >= min_nr && (c->deferred || cq_needs_enter(c))) {
		/* about to return without waiting: first run the
		   completions the kernel deferred to us, or move in those
		   it holds back */
		io_uring_get_events(&c->ring);
		got += take_ready(c, done + got, max_nr - got);
	}
	int64_t deadline = dio_deadline(timeout_ms);   /* in all, whatever interrupts the wait */
	while (got < min_nr) {
		struct io_uring_cqe *cqe;
		int left = dio_ms_left(deadline);
		struct __kernel_timespec ts = { left / 1000, (long long)(left % 1000) * 1000000 };
		int r = io_uring_wait_cqes(&c->ring, &cqe, min_nr - got, left < 0 ? NULL : &ts, NULL);
		if (r == -ETIME || (r == -EINTR && left == 0))
			break;
		if (r == -EINTR)
			continue;
		if (r < 0)
			return got ? (int)got : r;
		got += take_ready(c, done + got, max_nr - got);
	}
	return (int)got;
}

/* fdatasync(2) directly: io_uring runs IORING_OP_FSYNC on an io-wq
   worker (it blocks), and the hand-off to that thread and back cost 4
   threads appending 4 KiB + fdatasync 12-15 % of their rate against the
   plain system call (bench/RESULTS.md, session 4). */
static int uring_flush(void *ctx)
{
	struct uring_ctx *c = ctx;
	return fdatasync(c->fd) < 0 ? -errno : 0;
}

static int uring_register_buffers(void *ctx, const struct iovec *iov, unsigned nr)
{
	struct uring_ctx *c = ctx;
	if (c->has_bufs) {
		int e = io_uring_unregister_buffers(&c->ring);
		if (e < 0)
			return e;
		c->has_bufs = false;
	}
	if (!nr)
		return 0;
	int e = io_uring_register_buffers(&c->ring, iov, nr);
	if (e < 0)
		return e;
	c->has_bufs = true;
	return 0;
}

static int uring_set_eventfd(void *ctx, int fd)
{
	struct uring_ctx *c = ctx;
	int e = io_uring_register_eventfd(&c->ring, fd);
	return e < 0 ? e : 0;
}

static void uring_close(void *ctx)
{
	struct uring_ctx *c = ctx;
	/* drop the ring's reference to the device before the ring goes,
	   so the exclusive claim is released when the volume closes (an
	   owned ring closed from another thread refuses with EEXIST and
	   drops it at its teardown instead: docs/DESIGN.md) */
	io_uring_unregister_files(&c->ring);
	io_uring_queue_exit(&c->ring);
	free(c);
}

const struct dio_backend_ops dio_uring_ops = {
	.abi = DIO_BACKEND_ABI, .name = "uring", .probe = uring_probe, .open = uring_open,
	.submit = uring_submit, .flush = uring_flush, .close = uring_close,
	.submit_async = uring_submit_async, .reap = uring_reap,
	.register_buffers = uring_register_buffers, .open_owned = uring_open_owned,
	.set_eventfd = uring_set_eventfd,
};
