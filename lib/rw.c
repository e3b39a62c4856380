/*
 * Requests: the data path's one pipeline, for synchronous calls and queue
 * entries alike, in the model of the kernel's iomap_dio.  A request
 * (struct rw_req) is
 *
 *   rq_init    validated (handle, access, iovec, alignment, limits);
 *   rq_lock    its blocks range-locked, shared for reads and for
 *              DIO_O_CONCURRENT overwrites, exclusive otherwise;
 *   rq_plan_read, rq_plan_write
 *              sized against EOF (reads), or given its blocks (writes:
 *              holes allocated unwritten, zeros planned beside a partial
 *              block that holds no data), mapped once;
 *   rq_build   made into device I/Os, one per contiguous piece (xfer.c),
 *              into a batch;
 *   submitted  a synchronous call submits the batch and waits for it
 *              (dev_submit); a queue hands it to its backend context and
 *              counts the I/Os back (queue.c);
 *   rq_finish  completed, the first error winning: unwritten blocks the
 *              data reached become written and the size grows
 *              (journalled), a failed write's blocks are marked, the
 *              range unlocked.
 *
 * A misaligned request takes the same steps with a bounce buffer for the
 * build and submission (rmw.c); it is synchronous only, so a queue runs
 * it inline, as it does O_DSYNC writes and fsync.  Nothing on this path
 * allocates memory: the request, its pieces and a synchronous batch live
 * on the caller's stack, a queued one in its queue slot.
 */
#include "rw.h"
#include <fcntl.h>

static int fail(int e)
{
	errno = e < 0 ? -e : e;
	return -1;
}

/* Validate the iovec and sum its length; aligned says whether the direct
   path may move it. */
static ALWAYS_INLINE int check_iov(const struct dio_file *f, const struct iovec *iov, int iovcnt,
				   off_t offset, size_t *total, bool *aligned)
{
	if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX || offset < 0)
		return -EINVAL;
	const struct dio_geom *g = &f->vol->dev.geom;
	uintptr_t mmask = g->mem_align - 1, omask = g->logical_bs - 1;
	size_t t = 0;
	uintptr_t misaligned = (uintptr_t)((uint64_t)offset & omask);   /* any bit: not aligned */
	for (int i = 0; i < iovcnt; i++) {
		size_t l = iov[i].iov_len;
		if (l > SSIZE_MAX - t)
			return -EINVAL;
		if (l && !iov[i].iov_base)
			return -EFAULT;
		t += l;
		misaligned |= ((uintptr_t)iov[i].iov_base & mmask) | (l & omask);
	}
	*total = t;
	*aligned = !misaligned;
	return 0;
}

/*
 * A device that says ENOSPC or EDQUOT (an image file on a full host file
 * system, a thin device out of space) is not broken: the write fails with
 * that error, having changed nothing readable, and its blocks are not
 * marked bad (they would be lost to the volume for good).  Nothing the
 * caller was told had succeeded is lost, so no handle's fsync hears of it.
 */
static bool host_full(int e)
{
	return e == -ENOSPC || e == -EDQUOT;
}

/* Nor is a kernel that would not take the I/O (out of requests or
   memory: EAGAIN, EBUSY, ENOMEM from a submission; the backend reports
   it for the I/Os it did not start).  The media did not fail. */
static bool not_media_error(int e)
{
	return host_full(e) || e == -EAGAIN || e == -EBUSY || e == -ENOMEM;
}

/*
 * A write to [b0, b1) failed.  The device may have written part of it, so
 * every block of the range is marked bad (journalled): unwritten ones stay
 * unwritten, so the range still reads as before and is not marked
 * written; none of them is ever handed out again, and punching the range
 * moves them to the bad list so a rewrite gets fresh blocks.
 */
void rw_mark_failed(struct dio_file *f, uint64_t b0, uint64_t b1)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	atomic_fetch_add(&in->err_seq, 1);
	tail_forget(in, b0, b1);   /* what the device holds there is unknown */
	pthread_mutex_lock(&v->md_lock);
	pthread_rwlock_wrlock(&in->map_lock);
	struct dio_extent x;
	for (uint64_t at = b0; !md_ready_small(v, 256) && em_get(&in->map, at, &x) && x.lblk < b1 && !md_room(v, 2, 0);) {
		uint64_t s = MAX(x.lblk, b0), t = MIN(x.lblk + x.len, b1);
		if (!(x.flags & EXT_BAD) && md_map(v, in, s, x.pblk + (s - x.lblk), t - s, x.flags | EXT_BAD, true))
			break;
		if (t >= b1)
			break;
		at = t;
	}
	struct j_due due = j_due(v);
	pthread_rwlock_unlock(&in->map_lock);
	md_unlock(v);
	j_commit_due(v, due);   /* the write reports its own error */
}

/*
 * Blocks for the holes of [b0, b1) before a write.  A small write that
 * finds too few clean blocks refills them first (no lock held while the
 * zeros go down); one that finds too little free space because a refill
 * holds some waits for it, or because freed blocks wait for their commit
 * commits.
 */
static int alloc_for_write(struct dio_file *f, uint64_t b0, uint64_t b1, bool *clean)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	unsigned how = MA_REFILL, waits = 0;
	for (;;) {
		pthread_mutex_lock(&v->md_lock);
		pthread_rwlock_wrlock(&in->map_lock);
		int e = md_alloc_range(v, in, b0, b1 - b0, how, clean);
		pthread_rwlock_unlock(&in->map_lock);
		md_unlock(v);
		if (e == -EAGAIN && (how & MA_REFILL)) {
			e = clean_refill(v, b1 - b0);
			if (e) {
				/* the write fails having changed nothing; its
				   file's handles hear of it at their next fsync */
				atomic_fetch_add(&in->err_seq, 1);
				return e;
			}
			how = 0;
		} else if (!(e == -ENOSPC && waits++ < 4 && (clean_wait_zeroing(v) || md_commit_for_space(v)))) {
			return e;
		}
	}
}

/* A write into blocks all mapped: nothing to allocate, but room for the
   records its conversion adds, as md_alloc_range checks. */
static int alloc_room(struct dio_vol *v)
{
	pthread_mutex_lock(&v->md_lock);
	int e = md_room(v, 4, 0);
	md_unlock(v);
	return e;
}

/* After the data is down: unwritten blocks of [b0, b1) become written and
   the size grows; journalled.  *changed: whether anything did; *due: the
   journal commit due now (j_due). */
static int finish_write(struct dio_file *f, uint64_t b0, uint64_t b1, uint64_t end, bool clean,
			const struct em_hint *hint, bool *changed, struct j_due *due)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	pthread_mutex_lock(&v->md_lock);
	pthread_rwlock_wrlock(&in->map_lock);
	/* memory first: a conversion that began never fails for want of it */
	int e = md_ready_small(v, 256);
	struct em_cur c;
	bool found = !e && em_find_near(&in->map, b0, hint, &c);   /* where the write's mapping ended: warm */
	for (uint64_t at = b0; !e && found && em_rec(&c)->lblk < b1; found = em_find(&in->map, at, &c)) {
		const struct dio_extent *x = em_rec(&c);
		uint64_t s = MAX(x->lblk, b0), t = MIN(x->lblk + x->len, b1);
		if (x->flags & EXT_UNWRITTEN) {
			/* a block marked bad stays bad until punched */
			/* clean blocks need no flush before the record */
			e = md_restate(v, in, &c, s, t - s, x->flags & ~EXT_UNWRITTEN, !clean);
			*changed = true;
		}
		if (t >= b1)
			break;
		at = t;
	}
	if (!e && end > in->size) {
		e = md_set_size(v, in, end, !clean);
		*changed = true;
	}
	if (*changed)
		*due = j_due(v);
	pthread_rwlock_unlock(&in->map_lock);
	md_unlock(v);
	return e;
}

/* ---- the request's steps -------------------------------------------------- */

#define RQ_NOTHING 1   /* rq_init: valid, and nothing to move (ret 0) */
#define RQ_BUSY    1   /* rq_plan: the range was busy (may_block: EDEADLK); it is not locked now */

/* Validate a request.  0: go on; RQ_NOTHING; or -errno, in the order the
   synchronous calls have always checked (EBADF, EROFS, EINVAL, EFBIG). */
static ALWAYS_INLINE int rq_init(struct rw_req *rq, struct dio_file *f, bool write, const struct iovec *iov,
				 int iovcnt, off_t offset)
{
	if (file_check(f) < 0)
		return -EBADF;
	struct dio_vol *v = f->vol;
	int acc = f->flags & O_ACCMODE;
	if (write && v->rdonly)
		return -EROFS;
	if (write ? acc == O_RDONLY : acc == O_WRONLY)
		return -EBADF;
	size_t len;
	bool aligned;
	int e = check_iov(f, iov, iovcnt, offset, &len, &aligned);
	if (e)
		return e;
	if (!aligned && (f->flags & DIO_O_STRICT))
		return -EINVAL;
	uint64_t off = (uint64_t)offset;
	if (write) {
		if (!len)
			return RQ_NOTHING;
		if (off > DIO_MAX_FILE_SIZE || len > DIO_MAX_FILE_SIZE - off)
			return -EFBIG;
	} else {
		if (!len || off >= DIO_MAX_FILE_SIZE)
			return RQ_NOTHING;
		len = (size_t)MIN((uint64_t)len, DIO_MAX_FILE_SIZE - off);
	}
	uint64_t end = off + len;
	/* field by field: the range lock fills in r, and the compiler's
	   zeroing of the whole struct cost a queued read 70 instructions */
	rq->f = f;
	rq->iov = iov;
	rq->iovcnt = iovcnt;
	rq->off = off;
	rq->end = rq->xend = end;
	rq->b0 = off >> v->bshift;
	rq->b1 = vol_blk_end(v, end);
	rq->ret = 0;
	rq->pad[0].iov_len = rq->pad[1].iov_len = 0;
	rq->bio_flags = write && (f->flags & O_DSYNC) ? DIO_BIO_FUA : 0;
	rq->write = write;
	rq->aligned = aligned;
	rq->excl = write && !(aligned && (f->flags & DIO_O_CONCURRENT));
	rq->convert = rq->clean = rq->alloc_failed = rq->changed = rq->bounced = false;
	rq->hint.leaf = NULL;
	rq->r.q_user = NULL;   /* a synchronous call's; a queue sets its own */
	return 0;
}

/* Take the request's range lock; false: not taken, because it was busy
   and may_block false, or (may_block) because waiting would deadlock
   (EDEADLK: a queued request only this thread can reap holds it). */
static ALWAYS_INLINE bool rq_lock(struct rw_req *rq, bool may_block)
{
	struct dio_rangelock *rl = rq->f->ino->rl;
	if (!may_block)
		return rl_trylock_owned(rl, &rq->r, rq->b0, rq->b1, rq->excl);
	return !rl_lock_owned(rl, &rq->r, rq->b0, rq->b1, rq->excl);
}

/* A read: how much lies before EOF (ret), and the end of the device
   transfer (whole logical blocks at EOF for an aligned read: the request
   was aligned, so the caller's buffer has the room).  The range lock
   orders this against writers that overlap the read; others may move
   EOF beyond it, which the read may or may not see. */
static ALWAYS_INLINE void rq_plan_read(struct rw_req *rq)
{
	const struct dio_vol *v = rq->f->vol;
	uint64_t size = __atomic_load_n(&rq->f->ino->size, __ATOMIC_ACQUIRE);
	rq->ret = rq->off < size ? MIN(rq->end, size) - rq->off : 0;
	uint64_t lmask = (uint64_t)v->dev.geom.logical_bs - 1;
	rq->xend = rq->aligned ? rq->off + ((rq->ret + lmask) & ~lmask) : rq->off + rq->ret;
}

/*
 * A write: every block of it mapped before the data goes down.  An
 * overwrite of written blocks inside the file (the fast path) is mapped
 * here, into p[0..*n), and needs nothing else.  Anything else takes the
 * range exclusively (allocation and conversion are exclusive, also for
 * DIO_O_CONCURRENT handles), gets blocks for its holes (unwritten until
 * rq_finish converts them), and, if aligned, zeros planned beside a
 * partial edge block that holds no written data: the device writes whole
 * offset_align units, and the rest of such a block must read as zeros
 * once converted, while a block holding data keeps it.  RQ_BUSY: the
 * exclusive lock was busy and may_block false; the range is unlocked.
 */
static int rq_plan_write(struct rw_req *rq, struct piece *p, unsigned *n, bool may_block)
{
	struct dio_file *f = rq->f;
	struct dio_inode *in = f->ino;
	uint64_t bs = f->vol->bs;
	rq->ret = rq->end - rq->off;
	rq->xend = rq->end;
	*n = 0;
	if (rq->aligned) {
		tail_forget(in, rq->b0, rq->b1);   /* zero copy: the bytes do not pass through here */
		if (rq->end <= __atomic_load_n(&in->size, __ATOMIC_ACQUIRE))
			*n = map_pieces(f, rq->b0, rq->b1, p, MAP_PIECES, &rq->hint);
		if (*n && pieces_written(p, *n, rq->b1))
			return 0;
	}
	if (!rq->excl) {
		rl_unlock(in->rl, &rq->r);
		rq->excl = true;
		*n = 0;   /* mapped under the shared lock: stale once it went */
		if (!rq_lock(rq, may_block))
			return RQ_BUSY;
	}
	rq->convert = true;
	if (rq->aligned && !*n)
		*n = map_pieces(f, rq->b0, rq->b1, p, MAP_PIECES, &rq->hint);
	/* blocks all mapped (unwritten, or written past EOF): nothing to
	   allocate, and the pieces hold under the exclusive lock; clean
	   stays false, as unwritten blocks from before are not clean */
	bool mapped = *n && pieces_mapped(p, *n, rq->b1);
	int e = mapped ? alloc_room(f->vol) : alloc_for_write(f, rq->b0, rq->b1, &rq->clean);
	if (e) {
		rq->alloc_failed = true;
		return e;
	}
	if (!mapped)
		*n = 0;   /* the holes have blocks now: mapped as the I/Os are built */
	if (rq->aligned) {
		uint64_t head = rq->off & (bs - 1), tail = rq->end & (bs - 1);
		if (head && !block_is_written(in, rq->b0))
			rq->pad[0] = (struct iovec){ f->vol->bounce.zero, (size_t)head };
		if (tail && !block_is_written(in, rq->b1 - 1))
			rq->pad[1] = (struct iovec){ f->vol->bounce.zero, (size_t)(bs - tail) };
	}
	return 0;
}

/* Add the request's device I/Os to b: an aligned one's, from the pieces
   p[0..n) already mapped, mapping the rest as it goes; the zeros planned
   beside a write go in the same batch (the range lock holds their whole
   blocks, which are not readable as written until the conversion, so the
   order of the I/Os does not matter). */
static ALWAYS_INLINE void rq_build(struct rw_req *rq, struct batch *b, const struct piece *p, unsigned n)
{
	struct dio_file *f = rq->f;
	int op = rq->write ? DIO_BIO_WRITE : DIO_BIO_READ;
	struct cursor c = { rq->iov, rq->iovcnt, 0 };
	uint64_t head = rq->pad[0].iov_len, tail = rq->pad[1].iov_len;
	if (head) {
		struct cursor ch = { &rq->pad[0], 1, 0 };
		xfer_range(b, f, op, rq->bio_flags, &ch, rq->off - head, rq->off);
	}
	if (n || !xfer_one(b, f, op, rq->bio_flags, &c, rq->off, rq->xend))
		xfer_walk(b, f, op, rq->bio_flags, &c, rq->off, rq->xend, p, n);
	if (tail) {
		struct cursor ct = { &rq->pad[1], 1, 0 };
		xfer_range(b, f, op, rq->bio_flags, &ct, rq->end, rq->end + tail);
	}
}

/* rq_finish's part for a write (out of line: a read has none). */
static int rq_finish_write(struct rw_req *rq, int e, struct j_due *due)
{
	struct dio_file *f = rq->f;
	struct dio_inode *in = f->ino;
	if (!e && rq->convert)
		e = finish_write(f, rq->b0, rq->b1, rq->end, rq->clean, &rq->hint, &rq->changed, due);
	if (e && !not_media_error(e) && !rq->alloc_failed)
		rw_mark_failed(f, rq->b0, rq->b1);
	else if (e)
		tail_forget(in, rq->b0, rq->b1);   /* part of it may have gone down */
	if (!e) {
		if (!atomic_load_explicit(&in->data_dirty, memory_order_relaxed))
			atomic_store_explicit(&in->data_dirty, 1, memory_order_relaxed);
		/* in memory; made durable by fsync or a checkpoint */
		ino_set_mtime(in, dio_clock_coarse_ns(), false);
	}
	return e;
}

/*
 * The request's I/Os are all back; e is the first error, or 0.  A write
 * that allocated or extends converts its blocks and the size; a failed
 * one marks its blocks (unless the failure was not the media's, or
 * nothing went down).  Unlocks the range; returns the request's error.
 */
static ALWAYS_INLINE int rq_finish(struct rw_req *rq, int e)
{
	struct dio_file *f = rq->f;
	struct j_due due = { 0, false };
	if (rq->write)
		e = rq_finish_write(rq, e, &due);
	rl_unlock(f->ino->rl, &rq->r);
	if (rq->bounced)
		cnt_add(&CNT(f->vol)->bounced, 1);
	if (due.seq && !(rq->bio_flags & DIO_BIO_FUA)) {   /* O_DSYNC commits itself, in do_rw */
		int ec = j_commit_due(f->vol, due);
		if (!e)
			e = ec;
	}
	return e;
}

/* A request that succeeded, in the volume's counters. */
static void rq_count(const struct rw_req *rq, struct rw_tally *t)
{
	t->n[rq->write]++;
	t->bytes[rq->write] += rq->ret;
}

void rw_tally_flush(struct dio_counters_atomic *cnt, struct rw_tally *t)
{
	if (t->n[0]) {
		cnt_add(&cnt->reads, t->n[0]);
		cnt_add(&cnt->bytes_read, t->bytes[0]);
	}
	if (t->n[1]) {
		cnt_add(&cnt->writes, t->n[1]);
		cnt_add(&cnt->bytes_written, t->bytes[1]);
	}
	*t = (struct rw_tally){ { 0, 0 }, { 0, 0 } };
}

/* ---- synchronous calls: submit the request and wait -------------------------- */

/* Build the aligned request's I/Os into a batch on this frame (out of
   line: a bounced request's stack need not hold it) and wait for them. */
static NOINLINE int rq_submit_wait(struct rw_req *rq, const struct piece *p, unsigned n)
{
	struct sync_batch sb;
	batch_init_sync(&sb, rq->f->vol);
	rq_build(rq, &sb.b, p, n);
	batch_flush(&sb.b);
	return sb.b.err;
}

static int run_read(struct rw_req *rq)
{
	rq_plan_read(rq);
	if (!rq->ret)
		return 0;
	if (rq->aligned)
		return rq_submit_wait(rq, NULL, 0);
	rq->bounced = true;
	struct cursor c = { rq->iov, rq->iovcnt, 0 };
	return read_bounce(rq->f, &c, rq->off, rq->ret);
}

static int run_write(struct rw_req *rq)
{
	struct piece p[MAP_PIECES];
	unsigned n;
	int e = rq_plan_write(rq, p, &n, true);
	if (e)
		return e;
	if (rq->aligned)
		return rq_submit_wait(rq, p, n);
	rq->bounced = true;
	struct cursor c = { rq->iov, rq->iovcnt, 0 };
	return write_bounce(rq->f, rq->bio_flags, &c, rq->off, rq->end - rq->off);
}

/* O_DSYNC is "as if followed by fdatasync": the data went down with FUA,
   and the metadata that reaches it (this write's, or an earlier one's
   still pending, e.g. the allocation of the blocks just overwritten) is
   made durable before returning. */
static int dsync_commit(struct dio_vol *v, bool changed)
{
	pthread_mutex_lock(&v->md_lock);
	uint64_t seq = v->j.last_seq;
	bool pending = v->j.durable_seq < seq;
	md_unlock(v);
	return pending || changed ? j_commit(v, seq, false, false) : 0;
}

/* A synchronous call: the request, submitted and waited for. */
static ssize_t do_rw(struct dio_file *f, bool write, const struct iovec *iov, int iovcnt, off_t offset)
{
	struct rw_req rq;
	int e = rq_init(&rq, f, write, iov, iovcnt, offset);
	if (e)
		return e < 0 ? fail(e) : 0;
	if (!rq_lock(&rq, true))
		return fail(EDEADLK);
	e = write ? run_write(&rq) : run_read(&rq);
	if (e == RQ_BUSY)
		return fail(EDEADLK);   /* lost its range to go exclusive: nothing held */
	e = rq_finish(&rq, e);
	if (!e && (rq.bio_flags & DIO_BIO_FUA))
		e = dsync_commit(f->vol, rq.changed);
	if (e)
		return fail(e);
	struct rw_tally t = { { 0, 0 }, { 0, 0 } };
	rq_count(&rq, &t);
	rw_tally_flush(CNT(f->vol), &t);
	return (ssize_t)rq.ret;
}

/* ---- queued requests ------------------------------------------------------- */

/*
 * The same request for a queue slot: validated, locked, planned and built
 * here into the slot's arrays; queue.c submits the I/Os and calls
 * rw_async_finish when the last is back.  RWA_INLINE: the synchronous
 * call must run it (misaligned, O_DSYNC, invalid: it reports the error,
 * too fragmented for the slot); RWA_DONE: complete already, a->res is
 * its result; RWA_READY: a->nbio I/Os to submit.  may_block false:
 * -EAGAIN instead of waiting for a range lock (the queue's own requests
 * may hold it).
 */
int rw_async_prepare(struct rw_async *a, struct dio_file *f, bool write, const struct iovec *iov,
		     int iovcnt, off_t offset, bool may_block, const atomic_uint *q_user)
{
	struct rw_req *rq = &a->rq;
	if (iovcnt > RW_ASYNC_IOVS)
		return RWA_INLINE;
	int e = rq_init(rq, f, write, iov, iovcnt, offset);
	if (e || !rq->aligned || (rq->bio_flags & DIO_BIO_FUA))
		return RWA_INLINE;
	rq->r.q_user = q_user;
	if (!rq_lock(rq, may_block)) {
		if (!may_block)
			return -EAGAIN;
		a->res = -EDEADLK;   /* another queue of this thread's holds it */
		return RWA_DONE;
	}
	struct piece p[MAP_PIECES];
	unsigned n = 0;
	if (!write) {
		rq_plan_read(rq);
		if (!rq->ret) {
			rl_unlock(f->ino->rl, &rq->r);
			a->res = 0;
			return RWA_DONE;
		}
	} else if ((e = rq_plan_write(rq, p, &n, may_block)) == RQ_BUSY) {
		if (!may_block)
			return -EAGAIN;
		a->res = -EDEADLK;
		return RWA_DONE;
	} else if (e) {
		a->res = rq_finish(rq, e);   /* ENOSPC and the like, as inline */
		return RWA_DONE;
	}
	struct batch b = { f->vol, a->bio, a->iov, 0, 0, RW_ASYNC_BIOS, RW_ASYNC_IOVS, true, 0 };
	rq_build(rq, &b, p, n);
	if (b.err) {
		/* too fragmented for the slot (blocks it allocated stay
		   unwritten: the inline write uses them) */
		DIO_ASSERT(b.err == BATCH_FULL);
		rl_unlock(f->ino->rl, &rq->r);
		return RWA_INLINE;
	}
	a->nbio = b.nbio;
	file_get(f);   /* the handle lives until rw_async_finish */
	if (!a->nbio) {
		/* holes and unwritten blocks only: the read is complete */
		struct rw_tally t = { { 0, 0 }, { 0, 0 } };
		a->res = rw_async_finish(a, 0, &t);
		rw_tally_flush(CNT(f->vol), &t);
		return RWA_DONE;
	}
	return RWA_READY;
}

/* The request's I/Os are all back (err: the first error, or 0): its
   result, counted into t.  Drops the request's reference to its handle. */
ssize_t rw_async_finish(struct rw_async *a, int err, struct rw_tally *t)
{
	struct dio_file *f = a->rq.f;
	int e = rq_finish(&a->rq, err);
	if (!e)
		rq_count(&a->rq, t);
	file_put(f);   /* a handle closed meanwhile goes now */
	return e ? e : (ssize_t)a->rq.ret;
}

DIO_API ssize_t dio_preadv(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset)
{
	return do_rw(f, false, iov, iovcnt, offset);
}

DIO_API ssize_t dio_pwritev(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset)
{
	return do_rw(f, true, iov, iovcnt, offset);
}

DIO_API ssize_t dio_pread(struct dio_file *f, void *buf, size_t count, off_t offset)
{
	struct iovec one = { buf, count };
	if (!count)
		one.iov_base = (void *)&one;   /* a zero-length read needs no buffer */
	return do_rw(f, false, &one, 1, offset);
}

DIO_API ssize_t dio_pwrite(struct dio_file *f, const void *buf, size_t count, off_t offset)
{
	struct iovec one = { (void *)buf, count };
	if (!count)
		one.iov_base = (void *)&one;
	return do_rw(f, true, &one, 1, offset);
}
