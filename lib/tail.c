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
 * One copy per inode, made at the file's first misaligned write and freed
 * with the inode; its mutex is the inode's, held for one block's memcpy.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define NO_BLOCK UINT64_MAX

struct dio_tail {
	pthread_mutex_t lock;
	/* the file block the copy holds, NO_BLOCK if none; changed under the
	   lock, read without it by tail_forget: a writer that holds blocks
	   [b0, b1) exclusively sees a value in that range only if the copy
	   is of one of its own blocks (nobody else can be storing one) */
	_Atomic uint64_t blk;
	uint64_t gen;     /* in->map_gen when it was made */
	uint8_t buf[];    /* one block */
};

/* The inode's copy, made on first use (NULL if memory is short: the
   caller then reads the block back as before). */
static struct dio_tail *tail_get(struct dio_inode *in, uint32_t bs)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_acquire);
	if (t)
		return t;
	t = malloc(sizeof(*t) + bs);
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	atomic_init(&t->blk, NO_BLOCK);
	struct dio_tail *none = NULL;
	if (!atomic_compare_exchange_strong_explicit(&in->tail, &none, t, memory_order_acq_rel,
						     memory_order_acquire)) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		return none;   /* another writer made it first */
	}
	return t;
}

bool tail_load(struct dio_inode *in, uint64_t blk, uint8_t *dst, uint32_t bs)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_acquire);
	if (!t)
		return false;
	pthread_mutex_lock(&t->lock);
	bool hit = atomic_load_explicit(&t->blk, memory_order_relaxed) == blk &&
		   t->gen == atomic_load_explicit(&in->map_gen, memory_order_acquire);
	if (hit)
		memcpy(dst, t->buf, bs);
	pthread_mutex_unlock(&t->lock);
	return hit;
}

void tail_store(struct dio_inode *in, uint64_t blk, const uint8_t *src, uint32_t bs)
{
	struct dio_tail *t = tail_get(in, bs);
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	memcpy(t->buf, src, bs);
	t->gen = atomic_load_explicit(&in->map_gen, memory_order_acquire);
	atomic_store_explicit(&t->blk, blk, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
}

void tail_forget(struct dio_inode *in, uint64_t b0, uint64_t b1)
{
	struct dio_tail *t = atomic_load_explicit(&in->tail, memory_order_acquire);
	if (!t)
		return;
	uint64_t blk = atomic_load_explicit(&t->blk, memory_order_relaxed);
	if (blk < b0 || blk >= b1)
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
	free(t);
	atomic_store_explicit(&in->tail, NULL, memory_order_relaxed);
}
