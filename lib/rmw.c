/*
 * Transfers through a bounce buffer: what a misaligned request, or a
 * partial block that must keep its other bytes, needs.  Whole blocks
 * move between the device and a preallocated bounce buffer (xfer.c), the
 * caller's bytes are copied in or out; the partial edge blocks of a write
 * are read, merged and written back, or zero-filled if they held no
 * written data.  A sequential writer's end block is kept (lib/tail.c) so
 * the next write that starts in it need not read it back.
 */
#include "rw.h"
#include <string.h>

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
NOINLINE int write_bounce(struct dio_file *f, unsigned flags, struct cursor *c, uint64_t off, uint64_t len)
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

NOINLINE int read_bounce(struct dio_file *f, struct cursor *c, uint64_t off, uint64_t len)
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

/*
 * The file's written block blk with bytes [from, to) zeroed, written to
 * the device block pblk that is not the file's yet (a spare: md.c says
 * why a call that zeroes part of a block never does it in place).  The
 * caller holds blk's range lock exclusively.
 */
int rw_copy_zeroed(struct dio_file *f, uint64_t blk, uint32_t from, uint32_t to, uint64_t pblk)
{
	struct dio_vol *v = f->vol;
	uint8_t *buf = bounce_get(&v->bounce);
	int e = 0;
	if (!tail_load(f->ino, blk, buf, v->bs)) {
		e = blocks_io(f, DIO_BIO_READ, 0, buf, blk, 1);
		cnt_add(&CNT(v)->rmw_blocks, 1);
	}
	if (!e) {
		memset(buf + from, 0, (size_t)(to - from));   /* to <= bs */
		e = dev_rw(v, DIO_BIO_WRITE, 0, pblk << v->bshift, buf, v->bs);
	}
	bounce_put(&v->bounce, buf);
	return e;
}
