/*
 * Async queues.  A queue belongs to one thread at a time and owns its own
 * backend context (an io_uring ring or an AIO context), so queues of
 * different threads never share a lock.  Request slots, their device I/Os
 * and the completion ring are allocated at creation: submitting and
 * reaping allocate nothing.
 *
 * A queued read or write is the synchronous call's request (rw.c:
 * rw_async_prepare runs the same steps into the slot): an aligned one
 * goes to the backend asynchronously; dio_submit locks its range, maps
 * it once, allocates what it writes into and starts its I/Os; the lock
 * is released, and new blocks converted, when the last I/O of the
 * request comes back.  Everything else (misaligned, O_DSYNC, fsync, too
 * fragmented for a slot, or a backend without an asynchronous pair,
 * like psync) runs through the synchronous path inline, after the
 * queue's in-flight requests have completed, so a queue never waits on
 * a range lock its own requests hold.
 */
#include "internal.h"
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>

struct qslot {
	struct rw_async a;
	uint64_t user_data;
	unsigned pending;           /* I/Os not back yet */
	int err;                    /* first error */
	bool busy;
};

struct dio_queue {
	struct dio_vol *vol;
	const struct dio_backend_ops *ops;   /* the volume's backend */
	bool says_started;                   /* its submit_async says how many went down (ABI 6) */
	struct dio_counters_atomic *cnt;     /* the creating thread's shard of the volume's
						counters (adding to it is atomic: any thread may) */
	unsigned entries;
	void *ctx;                  /* own backend context, or NULL: inline only */
	struct qslot *slot;
	unsigned *free_slots, nfree;
	unsigned inflight;          /* requests with I/O outstanding */
	unsigned head, count;       /* completions not yet reaped */
	struct dio_cqe *cq;
	struct dio_bio **done;      /* scratch for the backend's reap */
	struct dio_bio **subv;      /* I/Os prepared, not yet handed to the backend */
	unsigned nsub;
	unsigned depth;             /* the backend context's, and what done and subv hold */
	bool io_bound;              /* more entries than depth / RW_ASYNC_BIOS: see io_room */
	unsigned pending_bios;      /* I/Os handed to the backend, not back yet */
	bool single;                /* DIO_QUEUE_SINGLE_THREAD: only `owner` may use it */
	unsigned owner;             /* its dio_thread_slot() */
	atomic_uint user;           /* the slot of the thread that used it last: the only
				       one that may reap it now (its ranges' q_user) */
	struct qbuf *bufs;          /* registered buffers, sorted by address */
	unsigned nbufs;
	bool fixed;                 /* the backend context has them too */
	int efd;                    /* dio_queue_fd's eventfd, or -1 */
	uint32_t magic;
};

struct qbuf {
	uintptr_t start, end;
	unsigned idx;               /* index in the caller's array */
};
#define DIO_QUEUE_MAGIC 0x64696f71u

static int fail(int e)
{
	errno = e < 0 ? -e : e;
	return -1;
}

static void q_free(struct dio_queue *q)
{
	if (q->ctx)
		q->vol->dev.ops->close(q->ctx);
	if (q->efd >= 0)
		close(q->efd);
	free(q->slot);
	free(q->free_slots);
	free(q->cq);
	free(q->done);
	free(q->subv);
	free(q->bufs);
	free(q);
}

DIO_API struct dio_queue *dio_queue_create(struct dio_vol *v, unsigned entries)
{
	return dio_queue_create_flags(v, entries, 0);
}

DIO_API struct dio_queue *dio_queue_create_flags(struct dio_vol *v, unsigned entries, unsigned flags)
{
	if (!v || !entries || entries > 65536 || (flags & ~DIO_QUEUE_SINGLE_THREAD)) {
		fail(EINVAL);
		return NULL;
	}
	struct dio_queue *q = calloc(1, sizeof(*q));
	if (!q) {
		fail(ENOMEM);
		return NULL;
	}
	q->vol = v;
	q->ops = v->dev.ops;
	q->says_started = v->dev.ops->abi >= 6;
	q->cnt = CNT(v);
	q->entries = entries;
	q->efd = -1;
	q->magic = DIO_QUEUE_MAGIC;
	q->single = (flags & DIO_QUEUE_SINGLE_THREAD) != 0;
	q->owner = dio_thread_slot();
	atomic_init(&q->user, q->owner);
	q->cq = calloc(entries, sizeof(*q->cq));
	bool async = backend_has_async(v->dev.ops);
	if (async) {
		unsigned depth = q->depth = MIN(entries * RW_ASYNC_BIOS, 4096u);
		q->slot = calloc(entries, sizeof(*q->slot));
		q->free_slots = calloc(entries, sizeof(*q->free_slots));
		q->done = calloc(depth, sizeof(*q->done));
		q->subv = calloc(depth, sizeof(*q->subv));
		q->io_bound = entries > depth / RW_ASYNC_BIOS;
		int err = 0;
		if (q->slot && q->free_slots && q->done && q->subv)
			q->ctx = devctx_open(v, depth, q->single, &err);
		/* no context (e.g. fs.aio-max-nr used up): the queue still
		   works, inline */
		for (unsigned i = 0; q->ctx && i < entries; i++)
			q->free_slots[q->nfree++] = entries - 1 - i;
	}
	if (!q->cq) {
		q_free(q);
		fail(ENOMEM);
		return NULL;
	}
	pthread_mutex_lock(&v->md_lock);
	v->nqueues++;
	md_unlock(v);
	return q;
}

/* A DIO_QUEUE_SINGLE_THREAD queue called from another thread. */
static bool foreign(const struct dio_queue *q)
{
	return q->single && q->owner != dio_thread_slot();
}

/* The calling thread has the queue now (a range its requests hold can
   be released by this thread only: lock.c's EDEADLK). */
static ALWAYS_INLINE void q_used(struct dio_queue *q)
{
	unsigned me = dio_thread_slot();
	if (atomic_load_explicit(&q->user, memory_order_relaxed) != me)
		atomic_store_explicit(&q->user, me, memory_order_relaxed);
}

/* Make dio_queue_fd's descriptor readable (there are completions). */
static void q_signal(struct dio_queue *q)
{
	uint64_t one = 1;
	if (q->efd >= 0 && write(q->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, so it is readable anyway */
	}
}

static ALWAYS_INLINE void post(struct dio_queue *q, uint64_t user_data, ssize_t res)
{
	unsigned i = q->head + q->count;   /* both < entries: no division */
	struct dio_cqe *c = &q->cq[i < q->entries ? i : i - q->entries];
	c->user_data = user_data;
	c->res = res;
	q->count++;
	q_signal(q);
}

static struct qslot *slot_of(struct dio_queue *q, struct dio_bio *b)
{
	size_t i = (size_t)((char *)b - (char *)q->slot) / sizeof(struct qslot);
	return &q->slot[i];
}

/* Slot s's last I/O is back (or none went down): its request completes. */
static ALWAYS_INLINE void slot_done(struct dio_queue *q, struct qslot *s, struct rw_tally *t)
{
	post(q, s->user_data, rw_async_finish(&s->a, s->err, t));
	s->busy = false;
	q->free_slots[q->nfree++] = (unsigned)(s - q->slot);
	q->inflight--;
}

/* The backend took only the first `started` of the n prepared I/Os (r:
   what its submit said).  The others fail with its error, or EAGAIN
   when it took some (a retry puts the first refused I/O first, so the
   caller then hears the kernel's own reason). */
static NOINLINE void fail_unstarted(struct dio_queue *q, unsigned started, unsigned n, int r)
{
	/* a ring that will not take more now says EBUSY: to the caller
	   that is EAGAIN, as dio_submit(3) says */
	int e = r == -EBUSY || r > 0 ? -EAGAIN : r < 0 ? r : -EIO;
	struct rw_tally t = { { 0, 0 }, { 0, 0 } };
	for (unsigned i = started; i < n; i++) {
		struct qslot *s = slot_of(q, q->subv[i]);
		if (!s->err)
			s->err = e;
		DIO_ASSERT(s->busy && s->pending > 0 && q->inflight > 0);
		if (--s->pending)
			continue;
		slot_done(q, s, &t);   /* the first error wins: nothing went down, never convert */
	}
	rw_tally_flush(q->cnt, &t);
}

/*
 * Hand the prepared I/Os to the backend in one call (one io_uring_submit
 * or io_submit for a whole dio_submit batch).  The backend says how many
 * of them went down; each of those comes back through reap, so a request
 * with some I/Os down and some refused completes, with the error, only
 * when its last started I/O is back.  A request none of whose I/Os went
 * down completes here.
 */
static ALWAYS_INLINE void flush_subs(struct dio_queue *q)
{
	if (!q->nsub)
		return;
	unsigned n = q->nsub;
	q->nsub = 0;
	int r = q->ops->submit_async(q->ctx, q->subv, n);
	/* ABI 6: how many went down (the first ones); before: 0 for all */
	DIO_ASSERT(r <= (int)n);
	unsigned started = r < 0 ? 0 : q->says_started ? MIN((unsigned)r, n) : n;
	q->pending_bios += started;
	cnt_add(&q->cnt->device_ios, started);
	if (started < n)
		fail_unstarted(q, started, n, r);
}

/* Collect finished I/Os; a request whose last I/O is back completes. */
static int collect(struct dio_queue *q, unsigned min_nr, int timeout_ms)
{
	int n = q->ops->reap(q->ctx, q->done, min_nr, q->depth, timeout_ms);
	if (n < 0)
		return n;
	q->pending_bios -= (unsigned)n;
	struct rw_tally t = { { 0, 0 }, { 0, 0 } };
	for (int i = 0; i < n; i++) {
		struct dio_bio *b = q->done[i];
		struct qslot *s = slot_of(q, b);
		int e = dev_finish(q->vol, b);
		if (e && !s->err)
			s->err = e;
		DIO_ASSERT(s->busy && s->pending > 0 && q->inflight > 0);
		if (--s->pending)
			continue;
		slot_done(q, s, &t);
	}
	rw_tally_flush(q->cnt, &t);
	return n;
}

/* Fail every request still in flight with e (a backend that stopped
   answering): their ranges are released and their handles dropped, so
   nothing outside the queue points into it. */
static void fail_inflight(struct dio_queue *q, int e)
{
	struct rw_tally t = { { 0, 0 }, { 0, 0 } };
	for (unsigned i = 0; i < q->entries && q->inflight; i++) {
		struct qslot *s = &q->slot[i];
		if (!s->busy)
			continue;
		if (!s->err)
			s->err = e;
		s->pending = 0;
		slot_done(q, s, &t);
	}
	q->pending_bios = 0;
	rw_tally_flush(q->cnt, &t);
}

/* Every request in flight completed (into the completion ring).  The
   backends retry EINTR themselves; any other error from a reap is a
   context that will return nothing more. */
static void drain(struct dio_queue *q)
{
	flush_subs(q);
	while (q->inflight) {
		int n = collect(q, 1, -1);
		if (n < 0) {
			dio_log(DIO_LOG_ERR, "queue: reaping failed (%s): %u requests in flight fail", strerror(-n),
				q->inflight);
			fail_inflight(q, n);
		}
	}
}

DIO_API void dio_queue_destroy(struct dio_queue *q)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC)
		return;
	if (foreign(q) && q->inflight) {
		/* only the owner can reap them (a ring tied to its thread):
		   freeing the queue now would free ranges still held in the
		   file's lock lists.  Left as it is, for its owner. */
		dio_log(DIO_LOG_ERR, "dio_queue_destroy: a DIO_QUEUE_SINGLE_THREAD queue with %u requests in flight "
			"can only be destroyed by its own thread: left as it is", q->inflight);
		errno = EPERM;
		return;
	}
	drain(q);
	pthread_mutex_lock(&q->vol->md_lock);
	q->vol->nqueues--;
	md_unlock(q->vol);
	q->magic = 0;
	q_free(q);
}

static ssize_t run_sync(struct dio_queue *q, const struct dio_req *r)
{
	struct dio_file *f = r->file;
	ssize_t res;
	if (file_check(f) < 0)
		return -EBADF;
	if (f->vol != q->vol)
		return -EXDEV;
	drain(q);   /* order after the queue's own in-flight requests */
	switch (r->op) {
	case DIO_OP_READ:
		res = dio_pread(f, r->buf, r->len, r->offset);
		break;
	case DIO_OP_WRITE:
		res = dio_pwrite(f, r->buf, r->len, r->offset);
		break;
	case DIO_OP_READV:
		res = dio_preadv(f, r->iov, r->iovcnt, r->offset);
		break;
	case DIO_OP_WRITEV:
		res = dio_pwritev(f, r->iov, r->iovcnt, r->offset);
		break;
	case DIO_OP_FSYNC:
		res = dio_fsync(f);
		break;
	case DIO_OP_FDATASYNC:
		res = dio_fdatasync(f);
		break;
	default:
		return -EINVAL;
	}
	return res < 0 ? -errno : res;
}

/* A request the queue runs as a synchronous call, now; errno as it was. */
static ssize_t run_inline(struct dio_queue *q, const struct dio_req *r)
{
	int saved = errno;
	ssize_t res = run_sync(q, r);
	errno = saved;
	return res;
}

/* A bio whose one buffer lies inside a registered buffer uses it
   (READ_FIXED/WRITE_FIXED): one binary search, no per-page work. */
static void mark_fixed(const struct dio_queue *q, struct dio_bio *b)
{
	if (b->iovcnt != 1)
		return;
	uintptr_t p = (uintptr_t)b->iov[0].iov_base, e = p + b->iov[0].iov_len;
	unsigned lo = 0, hi = q->nbufs;   /* first buffer starting after p */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (q->bufs[mid].start <= p)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo && e <= q->bufs[lo - 1].end)
		b->flags |= DIO_BIO_FIXED | q->bufs[lo - 1].idx << DIO_BIO_BUF_SHIFT;
}

/*
 * Is there room in the backend context for one more request's I/Os?  It
 * carries depth of them (8 per entry, at most 4,096), and a queue of more
 * than 512 entries could have more in flight: an AIO context would refuse
 * them (EAGAIN) and a ring's completions would spill over.  So such a
 * queue takes a request only while its I/Os surely fit; dio_submit then
 * takes fewer than asked, as when its slots are full.  This also bounds
 * subv, which holds what one dio_submit prepares.
 */
static bool io_room(const struct dio_queue *q)
{
	return !q->io_bound || q->pending_bios + q->nsub + RW_ASYNC_BIOS <= q->depth;
}

/* Try the asynchronous path; false: run it inline instead. */
static bool try_async(struct dio_queue *q, const struct dio_req *r)
{
	if (!q->ctx || !q->nfree)
		return false;
	struct iovec one;
	const struct iovec *iov;
	int iovcnt;
	switch (r->op) {
	case DIO_OP_READ:
	case DIO_OP_WRITE:
		one = (struct iovec){ r->buf, r->len };
		iov = &one;
		iovcnt = 1;
		break;
	case DIO_OP_READV:
	case DIO_OP_WRITEV:
		iov = r->iov;
		iovcnt = r->iovcnt;
		if (!iov || iovcnt <= 0)
			return false;
		break;
	default:
		return false;
	}
	bool write = r->op == DIO_OP_WRITE || r->op == DIO_OP_WRITEV;
	struct dio_file *f = r->file;
	if (!f || f->magic != DIO_FILE_MAGIC || f->vol != q->vol)
		return false;   /* inline, which reports it (errno untouched here) */
	unsigned idx = q->free_slots[q->nfree - 1];
	struct qslot *s = &q->slot[idx];
	int k = rw_async_prepare(&s->a, f, write, iov, iovcnt, r->offset, false, &q->user);
	if (k == -EAGAIN) {
		/* the range is busy: maybe with our own requests.  Draining
		   frees slots, so pick the top free slot again after it. */
		drain(q);
		idx = q->free_slots[q->nfree - 1];
		s = &q->slot[idx];
		k = rw_async_prepare(&s->a, f, write, iov, iovcnt, r->offset, true, &q->user);
	}
	if (k == RWA_INLINE)
		return false;
	if (k == RWA_DONE) {
		post(q, r->user_data, s->a.res);
		return true;
	}
	q->nfree--;   /* idx is free_slots[nfree - 1] */
	s->busy = true;
	s->user_data = r->user_data;
	s->err = 0;
	s->pending = s->a.nbio;
	q->inflight++;
	for (unsigned i = 0; i < s->a.nbio; i++)
		q->subv[q->nsub + i] = &s->a.bio[i];
	q->nsub += s->a.nbio;
	if (q->fixed)
		for (unsigned i = 0; i < s->a.nbio; i++)
			mark_fixed(q, &s->a.bio[i]);
	return true;
}

DIO_API int dio_submit(struct dio_queue *q, const struct dio_req *reqs, unsigned nr)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC || (nr && !reqs))
		return fail(EINVAL);
	if (foreign(q))
		return fail(EPERM);
	if (!nr)
		return 0;
	q_used(q);
	unsigned taken = 0;
	while (taken < nr && q->inflight + q->count < q->entries && io_room(q)) {
		const struct dio_req *r = &reqs[taken];
		if (!try_async(q, r))
			post(q, r->user_data, run_inline(q, r));
		taken++;
	}
	flush_subs(q);
	if (!taken)
		return fail(EAGAIN);   /* every slot holds a request or a completion */
	return (int)taken;
}

static int qbuf_cmp(const void *a, const void *b)
{
	const struct qbuf *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

#define QBUF_MAX 16384u           /* io_uring's limit */
#define QBUF_MAX_LEN (1ul << 30)  /* io_uring's limit per buffer */

DIO_API int dio_queue_register_buffers(struct dio_queue *q, const struct iovec *iov, unsigned nr)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC || (nr && !iov) || nr > QBUF_MAX)
		return fail(EINVAL);
	for (unsigned i = 0; i < nr; i++)
		if (!iov[i].iov_base || !iov[i].iov_len || iov[i].iov_len > QBUF_MAX_LEN)
			return fail(EINVAL);
	if (foreign(q))
		return fail(EPERM);
	if (q->inflight)
		return fail(EBUSY);
	struct qbuf *nb = NULL;
	if (nr) {
		nb = malloc(nr * sizeof(*nb));
		if (!nb)
			return fail(ENOMEM);
		for (unsigned i = 0; i < nr; i++)
			nb[i] = (struct qbuf){ (uintptr_t)iov[i].iov_base,
					       (uintptr_t)iov[i].iov_base + iov[i].iov_len, i };
		qsort(nb, nr, sizeof(*nb), qbuf_cmp);
	}
	bool fixed = false;
	if (q->ctx && backend_has_fixed(q->vol->dev.ops)) {
		int e = q->vol->dev.ops->register_buffers(q->ctx, iov, nr);
		if (e) {
			free(nb);
			q->fixed = false;   /* the old set is gone from the backend too */
			return fail(e);
		}
		fixed = nr > 0;
	}
	free(q->bufs);
	q->bufs = nb;
	q->nbufs = nr;
	q->fixed = fixed;
	return 0;
}

DIO_API int dio_reap(struct dio_queue *q, struct dio_cqe *cqes, unsigned min_nr, unsigned max_nr, int timeout_ms)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC || (max_nr && !cqes) || min_nr > max_nr)
		return fail(EINVAL);
	if (foreign(q))
		return fail(EPERM);
	q_used(q);
	/* reset the event descriptor: what completed so far is picked up
	   below, what completes later signals it again */
	uint64_t events;
	if (q->efd >= 0 && read(q->efd, &events, sizeof(events)) < 0) {
		/* EAGAIN: nothing signalled */
	}
	/* pick up what is already done without waiting */
	if (q->inflight)
		collect(q, 0, 0);
	/* wait only for requests that are really in flight, and no longer
	   than timeout_ms in all however many waits it takes */
	int64_t deadline = dio_deadline(timeout_ms);
	while (q->count < min_nr && q->inflight) {
		/* each request has at least one I/O: waiting for this many
		   I/Os in one call never waits for more than needed */
		unsigned want = MIN(min_nr - q->count, q->pending_bios);
		int left = dio_ms_left(deadline);
		int n = collect(q, MAX(want, 1u), left);
		if (n < 0)
			return fail(n);
		if (left >= 0 && (n == 0 || dio_ms_left(deadline) == 0))
			break;   /* timed out */
	}
	unsigned n = q->count < max_nr ? q->count : max_nr;
	for (unsigned i = 0; i < n; i++) {
		cqes[i] = q->cq[q->head];
		if (++q->head == q->entries)
			q->head = 0;
	}
	q->count -= n;
	if (q->count)
		q_signal(q);   /* completions left for the next reap */
	return (int)n;
}

DIO_API int dio_queue_fd(struct dio_queue *q)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC)
		return fail(EINVAL);
	if (foreign(q))
		return fail(EPERM);
	if (q->efd >= 0)
		return q->efd;
	if (q->ctx && !backend_has_eventfd(q->vol->dev.ops))
		return fail(EOPNOTSUPP);
	if (q->inflight)
		return fail(EBUSY);   /* the backend takes it with no I/O in flight */
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -1;
	int e = q->ctx ? q->vol->dev.ops->set_eventfd(q->ctx, fd) : 0;
	if (e) {
		close(fd);
		return fail(e);
	}
	q->efd = fd;
	if (q->count)
		q_signal(q);
	return fd;
}
