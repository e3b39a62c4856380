/*
 * The data path's own interfaces (rw.c, xfer.c, rmw.c): how a request's
 * range is mapped to pieces of the device, and how the device I/Os for
 * those pieces are built.  Nothing outside the data path includes this.
 */
#ifndef DIO_RW_H
#define DIO_RW_H
#include "cursor.h"

/* One physically contiguous piece of a file range, or a hole. */
#define PBLK_HOLE UINT64_MAX
struct piece {
	uint64_t lblk, pblk, len;    /* pblk PBLK_HOLE for a hole */
	uint32_t flags;              /* EXT_* of the extent */
};

/*
 * Mapping copies MAP_PIECES pieces at a time, and a synchronous batch is
 * SYNC_BIOS I/Os over SYNC_IOVS buffer slices (1.3 KiB): the synchronous
 * path lives on the caller's stack, which may be a fiber's, and stays
 * within about 4 KiB (tests/test_rw.c measures it).
 */
#define MAP_PIECES 16
#define SYNC_BIOS  8
#define SYNC_IOVS  64

/*
 * Device I/Os under construction, into arrays someone else owns.  A
 * synchronous batch (queued false) submits and waits when they are full
 * and goes on; a queue slot's (queued true) is never submitted here: full
 * means the request does not fit the slot (err BATCH_FULL: it runs
 * inline), and every slice is copied into the slot, since the caller's
 * iovec array need not outlive dio_submit.  The first error wins.
 */
struct batch {
	struct dio_vol *v;
	struct dio_bio *bio;
	struct iovec *iov;
	unsigned nbio, niov, max_bio, max_iov;
	bool queued;
	int err;
};
#define BATCH_FULL (-E2BIG)

/* A synchronous batch with its arrays (on the caller's stack). */
struct sync_batch {
	struct batch b;
	struct dio_bio bio[SYNC_BIOS];
	struct iovec iov[SYNC_IOVS];
};

/* xfer.c: mapping and direct (zero-copy) transfers */
void     batch_init_sync(struct sync_batch *sb, struct dio_vol *v);
void     batch_flush(struct batch *b);
unsigned map_pieces(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p, unsigned max,
		    struct em_hint *h);
unsigned map_tree(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p, unsigned max,
		  struct em_hint *h);   /* map_pieces past the handle's cache */
bool     pieces_written(const struct piece *p, unsigned n, uint64_t end);
bool     pieces_mapped(const struct piece *p, unsigned n, uint64_t end);
void     xfer_walk(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
		   uint64_t off, uint64_t end, const struct piece *p, unsigned n);
void     xfer_range(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
		    uint64_t off, uint64_t end);
int      xfer_direct(struct dio_file *f, int op, unsigned flags, struct cursor *c, uint64_t off, uint64_t len);

/* rmw.c: transfers through a bounce buffer (misaligned requests) */
int      write_bounce(struct dio_file *f, unsigned flags, struct cursor *c, uint64_t off, uint64_t len);
int      read_bounce(struct dio_file *f, struct cursor *c, uint64_t off, uint64_t len);

/* ---- xfer.c's steps that run in their callers' frames ------------------- */

/*
 * If the handle's cached extent covers [b, end) and is still valid: true,
 * and *pblk is where b is on the device ([b, end) is one written piece).
 * Called with a range lock on [b, end) held: the lock orders this after
 * any change that removed or rewrote a mapping of the range (those take
 * the range exclusively and bump map_gen before releasing it), and no
 * such change can start until the lock is released.
 */
static ALWAYS_INLINE bool xc_lookup(struct dio_file *f, uint64_t b, uint64_t end, uint64_t *pblk)
{
	struct ext_cache *xc = &f->xc;
	unsigned s = atomic_load_explicit(&xc->seq, memory_order_acquire);
	if (s & 1)
		return false;
	uint64_t lblk = atomic_load_explicit(&xc->lblk, memory_order_relaxed);
	uint64_t base = atomic_load_explicit(&xc->pblk, memory_order_relaxed);
	uint64_t len = atomic_load_explicit(&xc->len, memory_order_relaxed);
	uint64_t gen = atomic_load_explicit(&xc->gen, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&xc->seq, memory_order_relaxed) != s ||
	    gen != atomic_load_explicit(&f->ino->map_gen, memory_order_acquire) ||
	    b < lblk || end > lblk + len)
		return false;
	*pblk = base + (b - lblk);
	return true;
}

/*
 * The usual request, one segment that maps to one piece of blocks to
 * move (not a hole; for a read, written), as its one I/O with none of
 * the general walk (xfer_walk); false, having added nothing, if it is not
 * that.  Inline: it is most of a queued read's mapping and building.
 */
static ALWAYS_INLINE bool xfer_one(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
				   uint64_t off, uint64_t end)
{
	const struct dio_vol *v = f->vol;
	size_t len = (size_t)(end - off);
	if (c->cnt != 1 || c->skip || c->iov->iov_len < len || len > v->dev.geom.max_io ||
	    b->nbio == b->max_bio || b->niov == b->max_iov)
		return false;
	uint64_t blk = off >> v->bshift, bend = vol_blk_end(v, end);
	uint64_t pblk;
	if (!xc_lookup(f, blk, bend, &pblk)) {
		struct piece p;
		if (map_tree(f, blk, bend, &p, 1, NULL) != 1 || p.lblk + p.len < bend || p.pblk == PBLK_HOLE ||
		    (op == DIO_BIO_READ && (p.flags & EXT_UNWRITTEN)))
			return false;
		pblk = p.pblk;
	}
	struct iovec *s = &b->iov[b->niov++];
	*s = (struct iovec){ c->iov->iov_base, len };
	b->bio[b->nbio++] = (struct dio_bio){ op, flags, (pblk << v->bshift) + (off & (v->bs - 1)), s, 1, 0 };
	/* the cursor past the one segment's first len bytes */
	if (len == c->iov->iov_len) {
		c->iov++;
		c->cnt = 0;
	} else {
		c->skip = len;
	}
	return true;
}

#endif
