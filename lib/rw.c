/*
 * The data path.
 *
 * Modelled on the kernel's iomap direct I/O: a request is mapped once for
 * its whole range (one binary search, then a walk over the extents), and
 * each physically contiguous piece becomes one device I/O whose iovec is a
 * slice of the caller's.  Batches of such I/Os go to the backend in one
 * submission; the first error wins.  The request, the pieces and the
 * batch live on the stack: no malloc on this path.
 *
 * Three shapes of request:
 *  - direct: buffers aligned to mem_align, offset and segment lengths to
 *    offset_align, and no partial block that needs zeroing: zero copy;
 *  - bounce: anything else, through a preallocated bounce buffer, with the
 *    partial edge blocks read, merged and written back (or zero-filled if
 *    they were holes or unwritten);
 *  - allocating: holes get unwritten blocks before the data goes down,
 *    and turn written (journalled) only after it has been acknowledged.
 */
#include "internal.h"
#include <fcntl.h>
#include <string.h>

/*
 * The synchronous path lives on the caller's stack, which may be a
 * fiber's: it stays within about 4 KiB (tests/test_rw.c measures it).
 * A batch is 8 I/Os and 64 buffer slices (1.3 KiB); a piece with more
 * slices than a batch holds becomes several I/Os, cut where a caller's
 * segment ends, so each stays aligned.  Mapping copies 16 pieces at a
 * time.  Queue slots keep their own, larger, arrays (RW_ASYNC_*).
 */
#define NPIECES      32       /* rw_async_prepare: a queued request */
#define SYNC_PIECES  16
#define BATCH_BIOS   8
#define BATCH_IOVS   64

#include "cursor.h"

/* A batch of device I/Os under construction. */
struct batch {
	struct dio_vol *v;
	unsigned nbio, niov;
	int err;
	struct dio_bio bio[BATCH_BIOS];
	struct iovec iov[BATCH_IOVS];
};

static void batch_flush(struct batch *b)
{
	if (b->nbio) {
		int e = dev_submit(b->v, b->bio, b->nbio);
		if (e && !b->err)
			b->err = e;
	}
	b->nbio = b->niov = 0;
}

/* Queue `len` bytes at device offset `dev` from/to the cursor, in I/Os
   of at most max_io. */
static void batch_add(struct batch *b, int op, unsigned flags, uint64_t dev, struct cursor *c, size_t len)
{
	while (len) {
		if (b->nbio == BATCH_BIOS || b->niov == BATCH_IOVS)
			batch_flush(b);
		size_t piece = MIN(len, (size_t)b->v->geom.max_io);
		int k = cur_whole(c, piece);
		const struct iovec *slices = c->iov;
		if (!k) {
			slices = b->iov + b->niov;
			k = cur_take(c, &piece, b->iov + b->niov, BATCH_IOVS - (int)b->niov);
			b->niov += (unsigned)k;
		}
		b->bio[b->nbio++] = (struct dio_bio){ op, flags, dev, slices, k, 0 };
		cur_advance(c, piece);
		dev += piece;
		len -= piece;
	}
}

/* ---- mapping ------------------------------------------------------------ */

#define PBLK_HOLE UINT64_MAX

struct piece {
	uint64_t lblk, pblk, len;   /* pblk PBLK_HOLE for a hole */
	uint32_t flags;
};

/* ---- the handle's extent cache ---------------------------------------- */

/*
 * The cached extent as one piece if it covers [b, end) and is still
 * valid.  Called with a range lock on [b, end) held: the lock orders this
 * after any change that removed or rewrote a mapping of the range (those
 * take the range exclusively and bump map_gen before releasing it), and
 * no such change can start until the lock is released.
 */
static bool xc_lookup(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p)
{
	struct ext_cache *xc = &f->xc;
	unsigned s = atomic_load_explicit(&xc->seq, memory_order_acquire);
	if (s & 1)
		return false;
	uint64_t lblk = atomic_load_explicit(&xc->lblk, memory_order_relaxed);
	uint64_t pblk = atomic_load_explicit(&xc->pblk, memory_order_relaxed);
	uint64_t len = atomic_load_explicit(&xc->len, memory_order_relaxed);
	uint64_t gen = atomic_load_explicit(&xc->gen, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&xc->seq, memory_order_relaxed) != s ||
	    gen != atomic_load_explicit(&f->ino->map_gen, memory_order_acquire) ||
	    b < lblk || end > lblk + len)
		return false;
	*p = (struct piece){ b, pblk + (b - lblk), end - b, 0 };
	return true;
}

/* Remember a written extent read under the map lock at generation gen.
   If another thread is refilling the cache, leave it to that one. */
static void xc_fill(struct dio_file *f, const struct dio_extent *x, uint64_t gen)
{
	struct ext_cache *xc = &f->xc;
	unsigned s = atomic_load_explicit(&xc->seq, memory_order_relaxed);
	if ((s & 1) || !atomic_compare_exchange_strong_explicit(&xc->seq, &s, s + 1, memory_order_relaxed,
								 memory_order_relaxed))
		return;
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&xc->lblk, x->lblk, memory_order_relaxed);
	atomic_store_explicit(&xc->pblk, x->pblk, memory_order_relaxed);
	atomic_store_explicit(&xc->len, x->len, memory_order_relaxed);
	atomic_store_explicit(&xc->gen, gen, memory_order_relaxed);
	atomic_store_explicit(&xc->seq, s + 2, memory_order_release);
}

/*
 * Pieces of [b, end) in file order, holes included; at most max.  The
 * caller's range lock keeps this part of the map stable afterwards.  A
 * request inside the handle's cached extent costs no lookup and no lock;
 * otherwise one binary search under the map lock, and the written extent
 * found first is cached for the next request.
 */
static unsigned map_pieces(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p, unsigned max)
{
	if (xc_lookup(f, b, end, p))
		return 1;
	struct dio_inode *in = f->ino;
	struct dio_extent cache = { 0, 0, 0, EXT_UNWRITTEN };
	unsigned n = 0;
	pthread_rwlock_rdlock(&in->map_lock);
	uint64_t gen = atomic_load_explicit(&in->map_gen, memory_order_relaxed);
	struct bt_cur c;
	bool more = em_find(&in->map, b, &c);
	while (b < end && n < max) {
		const struct dio_extent *x = more ? bt_rec(&c) : NULL;
		if (!x || x->lblk >= end) {
			p[n++] = (struct piece){ b, PBLK_HOLE, end - b, 0 };
			break;
		}
		if (x->lblk > b) {
			p[n++] = (struct piece){ b, PBLK_HOLE, x->lblk - b, 0 };
			b = x->lblk;
			continue;
		}
		if (!n)
			cache = *x;
		uint64_t e = MIN(end, x->lblk + x->len);
		p[n++] = (struct piece){ b, x->pblk + (b - x->lblk), e - b, x->flags };
		b = e;
		more = bt_next(&c);
	}
	pthread_rwlock_unlock(&in->map_lock);
	if (!(cache.flags & EXT_UNWRITTEN))
		xc_fill(f, &cache, gen);
	return n;
}

/* Do the pieces cover [b, end) with written blocks only? */
static bool pieces_written(const struct piece *p, unsigned n, uint64_t end)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i].pblk == PBLK_HOLE || (p[i].flags & EXT_UNWRITTEN))
			return false;
	return n && p[n - 1].lblk + p[n - 1].len >= end;
}

/* Do the pieces cover [b, end) with mapped blocks (written or not)? */
static bool pieces_mapped(const struct piece *p, unsigned n, uint64_t end)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i].pblk == PBLK_HOLE)
			return false;
	return n && p[n - 1].lblk + p[n - 1].len >= end;
}

/* Is block lblk mapped and written?  (Edge blocks of the slow paths.) */
static bool block_is_written(struct dio_inode *in, uint64_t lblk)
{
	pthread_rwlock_rdlock(&in->map_lock);
	bool w = em_written(&in->map, lblk);
	pthread_rwlock_unlock(&in->map_lock);
	return w;
}

/* ---- direct transfers ---------------------------------------------------- */

/* Queue the transfer of [off, end) for the pieces p[0..n) (which cover
   it in file order) between the cursor and the device, with no copy.
   Reads zero-fill holes and unwritten pieces; writes expect every block
   mapped.  Returns the block after the last piece. */
static uint64_t xfer_pieces(struct batch *b, int op, unsigned flags, struct cursor *c, uint64_t off, uint64_t end,
			    const struct piece *p, unsigned n)
{
	uint64_t bs = b->v->bs, next = 0;
	for (unsigned i = 0; i < n && !b->err; i++) {
		uint64_t s = MAX(off, p[i].lblk * bs), t = MIN(end, (p[i].lblk + p[i].len) * bs);
		if (op == DIO_BIO_WRITE && p[i].pblk == PBLK_HOLE) {
			DIO_ASSERT(!"a write into a hole: the blocks were allocated before");
			b->err = -EIO;
		}
		else if (op == DIO_BIO_READ && (p[i].pblk == PBLK_HOLE || (p[i].flags & EXT_UNWRITTEN)))
			cur_zero(c, (size_t)(t - s));   /* within the request: fits a size_t */
		else
			batch_add(b, op, flags, p[i].pblk * bs + (s - p[i].lblk * bs), c, (size_t)(t - s));
		next = p[i].lblk + p[i].len;
	}
	return next;
}

static void batch_init(struct batch *b, struct dio_vol *v)
{
	b->v = v;
	b->nbio = b->niov = 0;
	b->err = 0;
}

/* Queue the transfer of [off, off+len) between the cursor and the
   device with no copy, mapping as it goes. */
static void xfer_range(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
		       uint64_t off, uint64_t len)
{
	struct dio_vol *v = f->vol;
	uint64_t end = off + len;
	struct piece p[SYNC_PIECES];
	uint64_t blk = off >> v->bshift, bend = DIV_UP(end, v->bs);
	while (blk < bend && !b->err) {
		unsigned n = map_pieces(f, blk, bend, p, SYNC_PIECES);
		blk = xfer_pieces(b, op, flags, c, off, end, p, n);
	}
}

/* Move [off, off+len) between the cursor and the device with no copy. */
static NOINLINE int xfer_direct(struct dio_file *f, int op, unsigned flags, struct cursor *c, uint64_t off, uint64_t len)
{
	struct batch b;
	batch_init(&b, f->vol);
	xfer_range(&b, f, op, flags, c, off, len);
	batch_flush(&b);
	return b.err;
}

/*
 * An aligned write whose first or last block is only partly covered and
 * holds no written data (a hole just allocated, or unwritten blocks):
 * the rest of such a block must read as zeros once the write converts
 * it, so zeros from the bounce pool's zero buffer go down beside the
 * data, in the same batch, and the caller's bytes still move with no
 * copy.  head/tail: bytes of zeros before off and after off+len (each a
 * multiple of offset_align, less than a block).  The range lock holds
 * the whole blocks and they are not readable as written until the
 * conversion, so the order of the pieces does not matter.
 */
static NOINLINE int write_padded(struct dio_file *f, unsigned flags, struct cursor *c, uint64_t off, uint64_t len,
			uint64_t head, uint64_t tail)
{
	struct dio_vol *v = f->vol;
	struct batch b;
	struct iovec zh = { v->bounce.zero, (size_t)head }, zt = { v->bounce.zero, (size_t)tail };
	struct cursor ch = { &zh, 1, 0 }, ct = { &zt, 1, 0 };
	batch_init(&b, v);
	if (head)
		xfer_range(&b, f, DIO_BIO_WRITE, flags, &ch, off - head, head);
	xfer_range(&b, f, DIO_BIO_WRITE, flags, c, off, len);
	if (tail)
		xfer_range(&b, f, DIO_BIO_WRITE, flags, &ct, off + len, tail);
	batch_flush(&b);
	return b.err;
}

/* An aligned overwrite already mapped (pieces_written): no copy. */
static NOINLINE int write_mapped(struct dio_file *f, unsigned flags, struct cursor *c, uint64_t off, uint64_t len,
			const struct piece *p, unsigned n)
{
	struct batch b;
	batch_init(&b, f->vol);
	xfer_pieces(&b, DIO_BIO_WRITE, flags, c, off, off + len, p, n);
	batch_flush(&b);
	return b.err;
}

/* ---- bounce transfers ----------------------------------------------------- */

/* Read or write the blocks [b, b+n) of the file through buf (mapped pieces
   only; reads zero-fill holes and unwritten pieces). */
static int blocks_io(struct dio_file *f, int op, unsigned flags, uint8_t *buf, uint64_t b, uint64_t n)
{
	struct iovec one = { buf, (size_t)(n << f->vol->bshift) };   /* <= BOUNCE_SIZE */
	struct cursor c = { &one, 1, 0 };
	return xfer_direct(f, op, flags, &c, b << f->vol->bshift, one.iov_len);
}


/*
 * The end block of a sequential misaligned overwrite (each write starts
 * in the block the previous one ended in, and ends inside old data: a
 * WAL written over from its start, a log rewritten in place) is read
 * with the blocks after it, which the next writes will end in: one read
 * per window (64 KiB) instead of one per write.  Only blocks nobody else
 * holds (a try-lock, exclusive: no reader or writer is on them) and
 * below the file's end; they stay in the tail window, coherent as the
 * tail block is (lib/tail.c).  False: nothing read, the caller reads the
 * one block.
 */
static bool read_ahead(struct dio_file *f, uint64_t blk, uint8_t *dst, int *e)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	uint64_t last = DIV_UP(__atomic_load_n(&in->size, __ATOMIC_ACQUIRE), v->bs);
	if (last <= blk + 1)
		return false;
	struct dio_range r;
	uint32_t cap;
	uint8_t *win = tail_window_begin(in, v->bs, &cap);
	if (!win)
		return false;
	uint64_t n = MIN((uint64_t)cap, last - blk);
	if (n < 2 || !rl_trylock(in->rl, &r, blk + 1, blk + n, true)) {
		tail_window_end(in, blk, 0);
		return false;
	}
	*e = blocks_io(f, DIO_BIO_READ, 0, win, blk, n);
	if (!*e)
		memcpy(dst, win, v->bs);
	tail_window_end(in, blk, *e ? 0 : n);
	rl_unlock(in->rl, &r);
	cnt_add(&CNT(v)->rmw_blocks, n);
	return true;
}

/*
 * Write [off, off+len) from the cursor through a bounce buffer.  Every
 * block of the range is mapped (allocated by the caller).  A partial edge
 * block keeps its other bytes: read back if written, zeros otherwise.
 */
static NOINLINE int write_bounce(struct dio_file *f, unsigned flags, struct cursor *c, uint64_t off, uint64_t len)
{
	struct dio_vol *v = f->vol;
	uint64_t bs = v->bs, end = off + len;
	uint64_t b0 = off >> v->bshift, b1 = DIV_UP(end, bs);
	uint64_t chunk = BOUNCE_SIZE >> v->bshift;
	uint8_t *buf = bounce_get(&v->bounce);
	int e = 0;
	for (uint64_t b = b0; b < b1 && !e; b += chunk) {
		uint64_t n = MIN(chunk, b1 - b);
		uint64_t cs = b * bs, ce = (b + n) * bs;
		uint64_t us = MAX(off, cs), ue = MIN(end, ce);
		/* head and tail blocks of the chunk that the user does not cover */
		uint64_t edge[2] = { b, b + n - 1 };
		bool partial[2] = { us > cs, ue < ce };
		bool seq = false;   /* the head came from the kept tail: a sequential writer */
		for (int k = 0; k < 2 && !e; k++) {
			if (!partial[k] || (k == 1 && partial[0] && edge[1] == edge[0]))
				continue;
			uint8_t *at = buf + (edge[k] - b) * bs;
			if (!block_is_written(f->ino, edge[k])) {
				memset(at, 0, (size_t)bs);
			} else if (tail_load(f->ino, edge[k], at, v->bs)) {
				seq = k == 0;
			} else if (!(k == 1 && seq && read_ahead(f, edge[1], at, &e))) {
				e = blocks_io(f, DIO_BIO_READ, 0, at, edge[k], 1);
				cnt_add(&CNT(v)->rmw_blocks, 1);
			}
		}
		if (e)
			break;
		cur_copy(c, buf + (us - cs), (size_t)(ue - us), 0);   /* <= BOUNCE_SIZE */
		e = blocks_io(f, DIO_BIO_WRITE, flags, buf, b, n);
		/* the block the write ends inside is what the next one (an
		   appender's) starts in: keep it */
		if (!e && partial[1])
			tail_store(f->ino, edge[1], buf + (edge[1] - b) * bs, v->bs);
		else
			tail_forget(f->ino, b, b + n);
	}
	bounce_put(&v->bounce, buf);
	return e;
}

static NOINLINE int read_bounce(struct dio_file *f, struct cursor *c, uint64_t off, uint64_t len)
{
	struct dio_vol *v = f->vol;
	uint64_t bs = v->bs, end = off + len;
	uint64_t b0 = off >> v->bshift, b1 = DIV_UP(end, bs);
	uint64_t chunk = BOUNCE_SIZE >> v->bshift;
	uint8_t *buf = bounce_get(&v->bounce);
	int e = 0;
	for (uint64_t b = b0; b < b1 && !e; b += chunk) {
		uint64_t n = MIN(chunk, b1 - b);
		uint64_t cs = b * bs, us = MAX(off, cs), ue = MIN(end, (b + n) * bs);
		e = blocks_io(f, DIO_BIO_READ, 0, buf, b, n);
		if (!e)
			cur_copy(c, buf + (us - cs), (size_t)(ue - us), 1);
	}
	bounce_put(&v->bounce, buf);
	return e;
}

/* Zero [off, off+len) within one written block (truncate, punch, zero range). */
int rw_zero_partial(struct dio_file *f, uint64_t off, uint64_t len)
{
	struct dio_vol *v = f->vol;
	uint64_t bs = v->bs, blk = off / bs;
	uint8_t *buf = bounce_get(&v->bounce);
	tail_forget(f->ino, blk, blk + 1);
	int e = blocks_io(f, DIO_BIO_READ, 0, buf, blk, 1);
	if (!e) {
		memset(buf + (off - blk * bs), 0, (size_t)len);   /* < one block */
		e = blocks_io(f, DIO_BIO_WRITE, 0, buf, blk, 1);
		cnt_add(&CNT(v)->rmw_blocks, 1);
	}
	bounce_put(&v->bounce, buf);
	if (e)
		rw_mark_failed(f, blk, blk + 1);
	return e;
}

/* ---- requests ------------------------------------------------------------- */

static int fail(int e)
{
	errno = e < 0 ? -e : e;
	return -1;
}

/* Validate the iovec and sum its length; aligned says whether the direct
   path may move it. */
static int check_iov(const struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset,
		     size_t *total, bool *aligned)
{
	if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX || offset < 0)
		return -EINVAL;
	const struct dio_geom *g = &f->vol->geom;
	uintptr_t mmask = g->mem_align - 1, omask = g->logical_bs - 1;
	size_t t = 0;
	bool al = ((uint64_t)offset & omask) == 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - t)
			return -EINVAL;
		if (iov[i].iov_len && !iov[i].iov_base)
			return -EFAULT;
		t += iov[i].iov_len;
		if (((uintptr_t)iov[i].iov_base & mmask) || (iov[i].iov_len & omask))
			al = false;
	}
	*total = t;
	*aligned = al;
	return 0;
}

static ssize_t do_read(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset)
{
	size_t len;
	bool aligned;
	if (file_check(f) < 0)
		return -1;
	if ((f->flags & O_ACCMODE) == O_WRONLY)
		return fail(EBADF);
	int e = check_iov(f, iov, iovcnt, offset, &len, &aligned);
	if (e)
		return fail(e);
	if (!aligned && (f->flags & DIO_O_STRICT))
		return fail(EINVAL);
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	uint64_t off = (uint64_t)offset;
	if (!len || off >= DIO_MAX_FILE_SIZE)
		return 0;
	len = (size_t)MIN((uint64_t)len, DIO_MAX_FILE_SIZE - off);
	struct dio_range r;
	rl_lock(in->rl, &r, off >> v->bshift, DIV_UP(off + len, v->bs), false);
	/* the range lock orders this against writers that overlap the read;
	   others may move EOF beyond it, which the read may or may not see */
	uint64_t size = __atomic_load_n(&in->size, __ATOMIC_ACQUIRE);
	ssize_t got = 0;
	if (off < size) {
		got = (ssize_t)MIN((uint64_t)len, size - off);
		struct cursor c = { iov, iovcnt, 0 };
		if (aligned) {
			/* at EOF read whole logical blocks into the caller's room
			   (the request was aligned, so the room is there) */
			uint64_t dlen = ((uint64_t)got + v->geom.logical_bs - 1) & ~((uint64_t)v->geom.logical_bs - 1);
			e = xfer_direct(f, DIO_BIO_READ, 0, &c, off, dlen);
		} else {
			e = read_bounce(f, &c, off, (uint64_t)got);
			cnt_add(&CNT(v)->bounced, 1);
		}
	}
	rl_unlock(in->rl, &r);
	if (e)
		return fail(e);
	struct dio_counters_atomic *cnt = CNT(v);
	cnt_add(&cnt->reads, 1);
	cnt_add(&cnt->bytes_read, (uint64_t)got);
	return got;
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
	for (uint64_t at = b0; em_get(&in->map, at, &x) && x.lblk < b1 && !md_room(v, 2, 0);) {
		uint64_t s = MAX(x.lblk, b0), t = MIN(x.lblk + x.len, b1);
		if (!(x.flags & EXT_BAD) && md_map(v, in, s, x.pblk + (s - x.lblk), t - s, x.flags | EXT_BAD, true))
			break;
		if (t >= b1)
			break;
		at = t;
	}
	pthread_rwlock_unlock(&in->map_lock);
	md_unlock(v);
}

/* Blocks for the holes of [b0, b1) (md_alloc_range, without a refill). */
static int alloc_blocks(struct dio_file *f, uint64_t b0, uint64_t b1, bool *clean)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	pthread_mutex_lock(&v->md_lock);
	pthread_rwlock_wrlock(&in->map_lock);
	int e = md_alloc_range(v, in, b0, b1 - b0, 0, clean);
	pthread_rwlock_unlock(&in->map_lock);
	md_unlock(v);
	return e;
}

/* A write into blocks all mapped (unwritten): nothing to allocate, but
   room for the records its conversion adds, as md_alloc_range checks. */
static int alloc_room(struct dio_vol *v)
{
	pthread_mutex_lock(&v->md_lock);
	int e = md_room(v, 4, 0);
	md_unlock(v);
	return e;
}

/*
 * Blocks for the holes of [b0, b1) before a write.  A small write that
 * finds too few clean blocks refills them first (no lock held while the
 * zeros go down); one that finds too little free space because a refill
 * holds some waits for it.
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
		} else if (!(e == -ENOSPC && waits++ < 4 && clean_wait_zeroing(v))) {
			return e;
		}
	}
}

/* After the data is down: unwritten blocks of [b0, b1) become written and
   the size grows; journalled.  Returns whether anything changed. */
static int finish_write(struct dio_file *f, uint64_t b0, uint64_t b1, uint64_t end, bool clean, bool *changed)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	int e = 0;
	pthread_mutex_lock(&v->md_lock);
	pthread_rwlock_wrlock(&in->map_lock);
	struct dio_extent x;
	for (uint64_t at = b0; !e && em_get(&in->map, at, &x) && x.lblk < b1;) {
		uint64_t s = MAX(x.lblk, b0), t = MIN(x.lblk + x.len, b1);
		if (x.flags & EXT_UNWRITTEN) {
			/* a block marked bad stays bad until punched */
			/* clean blocks need no flush before the record */
			e = md_map(v, in, s, x.pblk + (s - x.lblk), t - s, x.flags & ~EXT_UNWRITTEN, !clean);
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
	pthread_rwlock_unlock(&in->map_lock);
	md_unlock(v);
	return e;
}

static ssize_t do_write(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset)
{
	size_t len;
	bool aligned;
	if (file_check(f) < 0)
		return -1;
	struct dio_vol *v = f->vol;
	if (v->rdonly)
		return fail(EROFS);
	if ((f->flags & O_ACCMODE) == O_RDONLY)
		return fail(EBADF);
	int e = check_iov(f, iov, iovcnt, offset, &len, &aligned);
	if (e)
		return fail(e);
	if (!aligned && (f->flags & DIO_O_STRICT))
		return fail(EINVAL);
	if (!len)
		return 0;
	uint64_t off = (uint64_t)offset, bs = v->bs;
	if (off > DIO_MAX_FILE_SIZE || len > DIO_MAX_FILE_SIZE - off)
		return fail(EFBIG);
	struct dio_inode *in = f->ino;
	uint64_t end = off + len, b0 = off >> v->bshift, b1 = DIV_UP(end, bs);
	bool dsync = (f->flags & O_DSYNC) != 0;
	unsigned flags = dsync ? DIO_BIO_FUA : 0;
	bool concurrent = aligned && (f->flags & DIO_O_CONCURRENT);
	struct dio_range r;
	struct cursor c = { iov, iovcnt, 0 };
	bool changed = false, bounced = false, alloc_failed = false;

	rl_lock(in->rl, &r, b0, b1, !concurrent);
	if (aligned)
		tail_forget(in, b0, b1);   /* zero copy: the bytes do not pass through here */
	struct piece p[SYNC_PIECES];
	unsigned np = 0;
	if (aligned && end <= __atomic_load_n(&in->size, __ATOMIC_ACQUIRE))
		np = map_pieces(f, b0, b1, p, SYNC_PIECES);
	if (np && pieces_written(p, np, b1)) {
		/* the fast path: an in-place overwrite, mapped once, zero copy */
		e = write_mapped(f, flags, &c, off, len, p, np);
	} else {
		if (concurrent) {
			/* allocation and conversion are exclusive */
			rl_unlock(in->rl, &r);
			rl_lock(in->rl, &r, b0, b1, true);
		}
		bool clean = false;
		e = alloc_for_write(f, b0, b1, &clean);
		alloc_failed = e != 0;
		if (!e && aligned) {
			/* zero copy: a partial edge block that holds written
			   data keeps it (the device writes whole offset_align
			   units); one that does not gets zeros beside the data */
			uint64_t head = (off & (bs - 1)) && !block_is_written(in, b0) ? off & (bs - 1) : 0;
			uint64_t tail = (end & (bs - 1)) && !block_is_written(in, b1 - 1) ? bs - (end & (bs - 1)) : 0;
			e = head || tail ? write_padded(f, flags, &c, off, len, head, tail)
					 : xfer_direct(f, DIO_BIO_WRITE, flags, &c, off, len);
		} else if (!e) {
			e = write_bounce(f, flags, &c, off, len);
			bounced = true;
		}
		if (!e)
			e = finish_write(f, b0, b1, end, clean, &changed);
	}
	if (e && !not_media_error(e) && !alloc_failed)
		rw_mark_failed(f, b0, b1);
	else if (e)
		tail_forget(in, b0, b1);   /* part of it may have gone down */
	if (!e && !atomic_load_explicit(&in->data_dirty, memory_order_relaxed))
		atomic_store_explicit(&in->data_dirty, 1, memory_order_relaxed);
	rl_unlock(in->rl, &r);
	if (bounced)
		cnt_add(&CNT(v)->bounced, 1);
	if (e)
		return fail(e);
	if (dsync) {
		/* The data went down with FUA.  O_DSYNC is "as if followed by
		   fdatasync": the metadata that reaches it (this write's, or an
		   earlier write's still pending, e.g. the allocation of the blocks
		   just overwritten) must be durable too before returning. */
		pthread_mutex_lock(&v->md_lock);
		uint64_t seq = v->last_seq;
		bool pending = v->durable_seq < seq;
		md_unlock(v);
		if (pending || changed) {
			e = j_commit(v, seq, false, false);
			if (e)
				return fail(e);
		}
	}
	if (changed && !dsync)
		j_maybe_commit(v);
	struct dio_counters_atomic *cnt = CNT(v);
	cnt_add(&cnt->writes, 1);
	cnt_add(&cnt->bytes_written, len);
	return (ssize_t)len;
}

/* ---- asynchronous requests (queues) --------------------------------------- */

/*
 * Prepare an aligned read, or an aligned overwrite of written blocks, for
 * asynchronous submission: validate, take the range lock, map once and
 * build the device I/Os into a (preallocated, per queue slot).  Anything
 * else (misaligned, allocating, O_DSYNC, too fragmented for the slot,
 * invalid) returns RWA_INLINE and runs through the synchronous path.
 * A read at or past the end of the file returns RWA_DONE with ret 0.
 * may_block false: -EAGAIN instead of waiting for a range lock.
 */
int rw_async_prepare(struct rw_async *a, struct dio_file *f, bool write, const struct iovec *iov,
		     int iovcnt, off_t offset, bool may_block)
{
	size_t len;
	bool aligned;
	if (file_check(f) < 0 || iovcnt > RW_ASYNC_IOVS ||
	    check_iov(f, iov, iovcnt, offset, &len, &aligned) || !aligned || !len)
		return RWA_INLINE;
	struct dio_vol *v = f->vol;
	int acc = f->flags & O_ACCMODE;
	if (write ? (acc == O_RDONLY || v->rdonly || (f->flags & O_DSYNC)) : acc == O_WRONLY)
		return RWA_INLINE;
	uint64_t off = (uint64_t)offset, bs = v->bs;
	if (off > DIO_MAX_FILE_SIZE || len > DIO_MAX_FILE_SIZE - off)
		return RWA_INLINE;
	struct dio_inode *in = f->ino;
	uint64_t end = off + len, b0 = off >> v->bshift, b1 = DIV_UP(end, bs);
	bool excl = write && !(f->flags & DIO_O_CONCURRENT);
relock:
	if (!may_block) {
		if (!rl_trylock(in->rl, &a->r, b0, b1, excl))
			return -EAGAIN;
	} else {
		rl_lock(in->rl, &a->r, b0, b1, excl);
	}
	uint64_t size = __atomic_load_n(&in->size, __ATOMIC_ACQUIRE);
	a->f = f;
	a->write = write;
	a->b0 = b0;
	a->b1 = b1;
	a->end = end;
	a->alloc = false;
	a->nbio = 0;
	/* map once; one bio per contiguous piece (split at max_io) */
	struct piece p[NPIECES];
	struct cursor c = { iov, iovcnt, 0 };
	uint64_t dend = end;
	unsigned n = 0, niov = 0;
	if (write) {
		if (end <= size)
			n = map_pieces(f, b0, b1, p, NPIECES);
		if (!n || !pieces_written(p, n, b1)) {
			/* a write of whole blocks into holes or unwritten blocks
			   goes down asynchronously too: allocate (unwritten) now,
			   convert when it completes; partial blocks take the
			   inline path (zeros beside the data) */
			if ((off | end) & (bs - 1))
				goto inline_path;
			if (!excl) {
				/* allocation and conversion are exclusive, also
				   for DIO_O_CONCURRENT handles (as inline) */
				rl_unlock(in->rl, &a->r);
				excl = true;
				goto relock;
			}
			a->clean = false;   /* blocks unwritten before: not clean */
			int e = pieces_mapped(p, n, b1) ? alloc_room(v) : alloc_blocks(f, b0, b1, &a->clean);
			if (e)
				goto inline_path;   /* it reports ENOSPC and the rest */
			if (!pieces_mapped(p, n, b1))
				n = map_pieces(f, b0, b1, p, NPIECES);
			a->alloc = true;
		}
		a->ret = len;
	} else {
		if (off >= size) {
			rl_unlock(in->rl, &a->r);
			a->ret = 0;
			return RWA_DONE;
		}
		a->ret = MIN((uint64_t)len, size - off);
		dend = off + ((a->ret + v->geom.logical_bs - 1) & ~((uint64_t)v->geom.logical_bs - 1));
		n = map_pieces(f, b0, DIV_UP(dend, bs), p, NPIECES);
	}
	if (n == NPIECES && p[n - 1].lblk + p[n - 1].len < DIV_UP(dend, bs))
		goto inline_path;
	for (unsigned i = 0; i < n; i++) {
		uint64_t s = MAX(off, p[i].lblk * bs), t = MIN(dend, (p[i].lblk + p[i].len) * bs);
		if (write && p[i].pblk == PBLK_HOLE)
			goto inline_path;
		if (!write && (p[i].pblk == PBLK_HOLE || (p[i].flags & EXT_UNWRITTEN))) {
			cur_zero(&c, (size_t)(t - s));   /* within the request */
			continue;
		}
		uint64_t dev = p[i].pblk * bs + (s - p[i].lblk * bs);
		while (s < t) {
			size_t piece = (size_t)MIN(t - s, (uint64_t)v->geom.max_io);
			if (a->nbio == RW_ASYNC_BIOS)
				goto inline_path;
			int k = cur_slices(&c, piece, a->iov + niov, RW_ASYNC_IOVS - (int)niov);
			if (k < 0)
				goto inline_path;
			a->bio[a->nbio++] = (struct dio_bio){ write ? DIO_BIO_WRITE : DIO_BIO_READ, 0, dev,
							      a->iov + niov, k, 0 };
			niov += (unsigned)k;
			cur_advance(&c, piece);
			s += piece;
			dev += piece;
		}
	}
	if (!a->nbio) {
		/* all holes: the read is complete already */
		file_get(f);
		rw_async_finish(a, 0);
		return RWA_DONE;
	}
	if (write)
		tail_forget(in, b0, b1);
	file_get(f);   /* the handle lives until rw_async_finish */
	return RWA_READY;
inline_path:
	rl_unlock(in->rl, &a->r);
	return RWA_INLINE;
}

/* The request's I/Os are all back (err: the first error, or 0).  Drops
   the request's reference to its handle. */
int rw_async_finish(struct rw_async *a, int err)
{
	struct dio_vol *v = a->f->vol;
	struct dio_inode *in = a->f->ino;
	bool changed = false;
	if (a->write) {
		if (!err && a->alloc)
			err = finish_write(a->f, a->b0, a->b1, a->end, a->clean, &changed);
		if (err && !not_media_error(err))
			rw_mark_failed(a->f, a->b0, a->b1);
		else if (err)
			tail_forget(in, a->b0, a->b1);
		else if (!atomic_load_explicit(&in->data_dirty, memory_order_relaxed))
			atomic_store_explicit(&in->data_dirty, 1, memory_order_relaxed);
	}
	rl_unlock(in->rl, &a->r);
	if (changed)
		j_maybe_commit(v);
	if (!err) {
		cnt_add(a->write ? &CNT(v)->writes : &CNT(v)->reads, 1);
		cnt_add(a->write ? &CNT(v)->bytes_written : &CNT(v)->bytes_read, a->ret);
	}
	file_put(a->f);   /* a handle closed meanwhile goes now */
	return err;
}

/* A bio came back short: move the rest synchronously. */
int rw_finish_short(struct dio_vol *v, struct dio_bio *b)
{
	size_t want = iov_bytes(b->iov, b->iovcnt), done = (size_t)b->res;
	if (done >= want)
		return 0;
	if (!done)
		return -EIO;
	struct iovec rest[RW_ASYNC_IOVS];
	struct cursor cur = { b->iov, b->iovcnt, 0 };
	cur_advance(&cur, done);
	int k = cur_slices(&cur, want - done, rest, RW_ASYNC_IOVS);
	/* the rest goes through a synchronous context, which has none of
	   the queue's registered buffers */
	struct dio_bio nb = { b->op, b->flags & DIO_BIO_FUA, b->offset + done, rest, k, 0 };
	int e = dev_submit(v, &nb, 1);
	if (!e)
		b->res = (ssize_t)want;
	return e;
}

DIO_API ssize_t dio_preadv(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset)
{
	return do_read(f, iov, iovcnt, offset);
}

DIO_API ssize_t dio_pwritev(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset)
{
	return do_write(f, iov, iovcnt, offset);
}

DIO_API ssize_t dio_pread(struct dio_file *f, void *buf, size_t count, off_t offset)
{
	struct iovec one = { buf, count };
	if (!count)
		one.iov_base = (void *)&one;   /* a zero-length read needs no buffer */
	return do_read(f, &one, 1, offset);
}

DIO_API ssize_t dio_pwrite(struct dio_file *f, const void *buf, size_t count, off_t offset)
{
	struct iovec one = { (void *)buf, count };
	if (!count)
		one.iov_base = (void *)&one;
	return do_write(f, &one, 1, offset);
}
