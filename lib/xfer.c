/*
 * Mapping a request's range and moving it with no copy.
 *
 * Modelled on the kernel's iomap direct I/O: a range is mapped once (one
 * binary search, then a walk over the extents, or nothing at all when the
 * handle's cached extent covers it), and each physically contiguous piece
 * becomes one device I/O whose iovec is a slice of the caller's (several,
 * cut where a caller's segment ends, past max_io or a batch's slices).
 * Reads zero-fill holes and unwritten pieces in the caller's buffer.
 */
#include "rw.h"

/* ---- batches ------------------------------------------------------------- */

void batch_init_sync(struct sync_batch *sb, struct dio_vol *v)
{
	sb->b = (struct batch){ v, sb->bio, sb->iov, 0, 0, SYNC_BIOS, SYNC_IOVS, false, 0 };
}

/* Submit a synchronous batch and wait for it. */
void batch_flush(struct batch *b)
{
	DIO_ASSERT(!b->queued);
	if (b->nbio) {
		int e = dev_submit(b->v, b->bio, b->nbio);
		if (e && !b->err)
			b->err = e;
	}
	b->nbio = b->niov = 0;
}

/* Add I/Os for `len` bytes at device offset `dev` from/to the cursor, of
   at most max_io each. */
static void batch_add(struct batch *b, int op, unsigned flags, uint64_t dev, struct cursor *c, size_t len)
{
	while (len && !b->err) {
		if (b->nbio == b->max_bio || b->niov == b->max_iov) {
			if (b->queued) {
				b->err = BATCH_FULL;
				return;
			}
			batch_flush(b);
		}
		size_t piece = MIN(len, (size_t)b->v->dev.geom.max_io);
		/* a piece that is whole segments of the caller's takes the
		   caller's array as it is (it outlives a synchronous batch) */
		int k = b->queued ? 0 : cur_whole(c, piece);
		const struct iovec *slices = c->iov;
		if (!k) {
			slices = b->iov + b->niov;
			k = cur_take(c, &piece, b->iov + b->niov, (int)(b->max_iov - b->niov));
			b->niov += (unsigned)k;
		}
		b->bio[b->nbio++] = (struct dio_bio){ op, flags, dev, slices, k, 0 };
		cur_advance(c, piece);
		dev += piece;
		len -= piece;
	}
}

/* ---- the handle's extent cache ---------------------------------------- */

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

/* map_pieces past the handle's cache: one search of the map. */
unsigned map_tree(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p, unsigned max,
		  struct em_hint *h)
{
	struct dio_inode *in = f->ino;
	struct dio_extent cache = { 0, 0, 0, EXT_UNWRITTEN };
	unsigned n = 0;
	pthread_rwlock_rdlock(&in->map_lock);
	uint64_t gen = atomic_load_explicit(&in->map_gen, memory_order_relaxed);
	struct em_cur c;
	bool more = em_find(&in->map, b, &c);
	if (h && more)
		em_hint_at(&in->map, &c, h);
	while (b < end && n < max) {
		const struct dio_extent *x = more ? em_rec(&c) : NULL;
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
		more = em_next(&in->map, &c);
	}
	pthread_rwlock_unlock(&in->map_lock);
	if (!(cache.flags & EXT_UNWRITTEN))
		xc_fill(f, &cache, gen);
	return n;
}

/*
 * Pieces of [b, end) in file order, holes included; at most max.  The
 * caller's range lock keeps this part of the map stable afterwards.  A
 * request inside the handle's cached extent costs no lookup and no lock;
 * otherwise one binary search under the map lock, and the written extent
 * found first is cached for the next request.  h (may be NULL) keeps
 * where the search ended, for the conversion after the write.
 */
unsigned map_pieces(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p, unsigned max,
		    struct em_hint *h)
{
	uint64_t pblk;
	if (xc_lookup(f, b, end, &pblk)) {
		*p = (struct piece){ b, pblk, end - b, 0 };
		return 1;   /* written: nothing to convert */
	}
	return map_tree(f, b, end, p, max, h);
}

/* Do the pieces cover [b, end) with written blocks only? */
bool pieces_written(const struct piece *p, unsigned n, uint64_t end)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i].pblk == PBLK_HOLE || (p[i].flags & EXT_UNWRITTEN))
			return false;
	return n && p[n - 1].lblk + p[n - 1].len >= end;
}

/* Do they cover [b, end) with blocks, written or not (no hole)? */
bool pieces_mapped(const struct piece *p, unsigned n, uint64_t end)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i].pblk == PBLK_HOLE)
			return false;
	return n && p[n - 1].lblk + p[n - 1].len >= end;
}

/* Is block lblk mapped and written?  (Edge blocks of partial writes.) */
bool block_is_written(struct dio_inode *in, uint64_t lblk)
{
	pthread_rwlock_rdlock(&in->map_lock);
	bool w = em_written(&in->map, lblk);
	pthread_rwlock_unlock(&in->map_lock);
	return w;
}

/* ---- direct transfers ---------------------------------------------------- */

/* Add the transfer of [off, end) for the pieces p[0..n) (in file order,
   from off's block) between the cursor and the device.  Writes expect
   every block mapped.  Returns the block after the last piece. */
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

/* Add the transfer of [off, end) between the cursor and the device, from
   the pieces p[0..n) already mapped (n may be 0), mapping the rest as it
   goes. */
void xfer_walk(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
	       uint64_t off, uint64_t end, const struct piece *p, unsigned n)
{
	struct dio_vol *v = f->vol;
	uint64_t blk = off >> v->bshift, bend = vol_blk_end(v, end);
	struct piece more[MAP_PIECES];
	if (n)
		blk = xfer_pieces(b, op, flags, c, off, end, p, n);
	while (blk < bend && !b->err) {
		unsigned k = map_pieces(f, blk, bend, more, MAP_PIECES, NULL);
		blk = xfer_pieces(b, op, flags, c, MAX(off, blk << v->bshift), end, more, k);
	}
}

/* The same with nothing mapped yet: the usual request in one I/O, else
   the walk. */
void xfer_range(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
		uint64_t off, uint64_t end)
{
	if (!xfer_one(b, f, op, flags, c, off, end))
		xfer_walk(b, f, op, flags, c, off, end, NULL, 0);
}

/* Move [off, off+len) between the cursor and the device with no copy,
   and wait. */
NOINLINE int xfer_direct(struct dio_file *f, int op, unsigned flags, struct cursor *c, uint64_t off, uint64_t len)
{
	struct sync_batch sb;
	batch_init_sync(&sb, f->vol);
	xfer_range(&sb.b, f, op, flags, c, off, off + len);
	batch_flush(&sb.b);
	return sb.b.err;
}
