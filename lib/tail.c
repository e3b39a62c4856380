/*
 * The tail block: the last partial block a misaligned write left, kept in
 * memory so that the next misaligned write into it does not read it back.
 *
 * A sequential appender whose records are not block multiples (SQLite's
 * WAL frames are 24 + page size bytes, its rollback records 4 + page
 * size + 4) rewrites the block its previous write ended in.  Without this
 * every such write reads that block first (rmw_blocks), a device read for
 * bytes libdio wrote a moment ago.  BlueFS keeps such a tail for
 * RocksDB's WAL for the same reason.
 *
 * The copy is write-through: it holds exactly what the device holds for
 * that block, because it is taken from the bounce buffer after the write
 * of the block succeeded.  So readers need nothing from it and a crash
 * loses nothing by it.  It is only ever consulted for a block that is
 * mapped written, by a writer that holds the block's range lock
 * exclusively; every other change of the block's bytes happens under that
 * range lock too and either forgets the copy (tail_forget: aligned and
 * queued writes, partial zeroing, write errors) or changes a written
 * mapping, which bumps the inode's map_gen (punch, truncate, zero range,
 * marking blocks bad): the copy is valid only while map_gen is what it
 * was when the copy was made.  Conversions of unwritten blocks to written
 * (an append's own) do not bump map_gen, so appends keep hitting.
 *
 * A sequential writer over old data (a WAL written again from its start)
 * ends each write inside a block that holds old bytes: rw.c's read_ahead
 * then reads that block and the 15 after it (64 KiB) into the copy, a
 * window [blk, end) of blocks that nobody else held while they were read
 * (a try-lock on their range); the following writes end inside the
 * window and read nothing.  The window stays coherent the same way: every
 * change of one of its blocks happens under that block's range lock and
 * forgets the window, or stores into it (the writer's own end block: the
 * blocks before it leave the window, the ones after it did not change).
 *
 * One copy per inode, made at the file's first misaligned write (one
 * block; a window's worth at the first read-ahead) and freed with the
 * inode; its mutex is held for memcpys, and across a read-ahead's read.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define NO_BLOCK UINT64_MAX
#define WINDOW_BYTES (64u << 10)   /* a read-ahead window: 16 blocks of 4 KiB */

struct dio_tail {
	pthread_mutex_t lock;
	/* the file blocks [blk, end) the copy holds, blk NO_BLOCK if none;
	   changed under the lock, read without it by tail_forget.  A new
	   window is only ever of blocks its maker holds exclusively, and a
	   window only ever shrinks by its start (tail_store): so a writer
	   holding blocks [b0, b1) that reads blk and end in either order,
	   mid-change, sees a superset of every window that can hold its
	   blocks, and never misses one it must drop */
	_Atomic uint64_t blk, end;
	uint64_t gen;     /* in->map_gen when it was made */
	uint32_t cap;     /* blocks buf holds: 1, or a window's */
	uint8_t *buf;     /* aligned for direct reads into it */
};

/* The inode's copy, made on first use (NULL if memory is short: the
   caller then reads the block back as before). */
static struct dio_tail *tail_get(struct dio_inode *in, uint32_t bs)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_acquire);
	if (t)
		return t;
	t = dio_malloc(sizeof(*t));
	if (!t)
		return NULL;
	if (dio_memalign((void **)&t->buf, bs, bs)) {
		free(t);
		return NULL;
	}
	t->cap = 1;
	pthread_mutex_init(&t->lock, NULL);
	atomic_init(&t->blk, NO_BLOCK);
	atomic_init(&t->end, 0);
	struct dio_tail *none = NULL;
	if (!atomic_compare_exchange_strong_explicit(&in->tail, &none, t, memory_order_acq_rel,
						     memory_order_acquire)) {
		pthread_mutex_destroy(&t->lock);
		free(t->buf);
		free(t);
		return none;   /* another writer made it first */
	}
	return t;
}

/* Under t->lock: does the copy hold blk? */
static bool holds(struct dio_inode *in, struct dio_tail *t, uint64_t blk)
{
	uint64_t b = atomic_load_explicit(&t->blk, memory_order_relaxed);
	return b != NO_BLOCK && blk >= b && blk < atomic_load_explicit(&t->end, memory_order_relaxed) &&
	       t->gen == atomic_load_explicit(&in->map_gen, memory_order_acquire);
}

bool tail_load(struct dio_inode *in, uint64_t blk, uint8_t *dst, uint32_t bs)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_acquire);
	if (!t)
		return false;
	pthread_mutex_lock(&t->lock);
	bool hit = holds(in, t, blk);
	if (hit)
		memcpy(dst, t->buf + (blk - atomic_load_explicit(&t->blk, memory_order_relaxed)) * bs, bs);
	pthread_mutex_unlock(&t->lock);
	return hit;
}

void tail_store(struct dio_inode *in, uint64_t blk, const uint8_t *src, uint32_t bs)
{
	struct dio_tail *t = tail_get(in, bs);
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	if (holds(in, t, blk)) {
		/* inside the window: the write changed the blocks before blk
		   too (they leave the window), none after it */
		uint64_t b = atomic_load_explicit(&t->blk, memory_order_relaxed);
		uint64_t n = atomic_load_explicit(&t->end, memory_order_relaxed) - blk;
		memmove(t->buf, t->buf + (blk - b) * bs, (size_t)(n * bs));
		memcpy(t->buf, src, bs);
		atomic_store_explicit(&t->blk, blk, memory_order_relaxed);   /* end stays */
	} else {
		/* a new window of one block, which this writer holds */
		atomic_store_explicit(&t->blk, NO_BLOCK, memory_order_relaxed);
		memcpy(t->buf, src, bs);
		t->gen = atomic_load_explicit(&in->map_gen, memory_order_acquire);
		atomic_store_explicit(&t->end, blk + 1, memory_order_relaxed);
		atomic_store_explicit(&t->blk, blk, memory_order_relaxed);
	}
	pthread_mutex_unlock(&t->lock);
}

uint8_t *tail_window_begin(struct dio_inode *in, uint32_t bs, uint32_t *cap)
{
	struct dio_tail *t = tail_get(in, bs);
	if (!t)
		return NULL;
	pthread_mutex_lock(&t->lock);
	atomic_store_explicit(&t->blk, NO_BLOCK, memory_order_relaxed);
	uint32_t want = WINDOW_BYTES / bs > 1 ? WINDOW_BYTES / bs : 1;
	if (t->cap < want) {
		uint8_t *b;
		if (!dio_memalign((void **)&b, bs, (size_t)want * bs)) {
			free(t->buf);
			t->buf = b;
			t->cap = want;
		}
	}
	t->gen = atomic_load_explicit(&in->map_gen, memory_order_acquire);
	*cap = t->cap;
	return t->buf;   /* locked until tail_window_end */
}

void tail_window_end(struct dio_inode *in, uint64_t blk, uint64_t n)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_relaxed);
	if (n) {
		atomic_store_explicit(&t->end, blk + n, memory_order_relaxed);
		atomic_store_explicit(&t->blk, blk, memory_order_relaxed);
	}
	pthread_mutex_unlock(&t->lock);
}

void tail_forget(struct dio_inode *in, uint64_t b0, uint64_t b1)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_acquire);
	if (!t)
		return;
	uint64_t blk = atomic_load_explicit(&t->blk, memory_order_relaxed);
	if (blk == NO_BLOCK || blk >= b1 || atomic_load_explicit(&t->end, memory_order_relaxed) <= b0)
		return;   /* the common case: no lock */
	pthread_mutex_lock(&t->lock);
	atomic_store_explicit(&t->blk, NO_BLOCK, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
}

void tail_free(struct dio_inode *in)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_relaxed);
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->buf);
	free(t);
	atomic_store_explicit(&in->tail, NULL, memory_order_relaxed);
}
