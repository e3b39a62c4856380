/*
 * Journalled changes to a file's map and size: each changes memory and
 * appends the record that redoes it, under md_lock and the inode's map
 * lock (write), and md_alloc_range takes blocks for a file's holes from
 * the allocator (clean ones when it can, refilling them: refill.c).
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

int md_room(struct dio_vol *v, uint64_t extra_extents, size_t extra_name)
{
	DIO_MD_HELD(v);
	uint64_t add = extra_extents * MD_EXTENT_BYTES + (extra_name ? md_inode_bytes(extra_name) : 0);
	if (v->j.broken)
		return -EIO;
	return v->md_bytes + add > v->md_cap ? -ENOSPC : 0;
}

/* After a change of the map (ending in e): the metadata accounting, and
   the record that redoes it.  ordered: as j_append's. */
static int map_logged(struct dio_vol *v, struct dio_inode *in, uint64_t before, int e, uint64_t lblk,
		      uint64_t pblk, uint64_t len, uint32_t flags, bool ordered)
{
	md_account(v, before, em_count(&in->map));
	if (e)
		return e;
	struct dio_rec r = { .type = R_MAP, .ino = in->ino, .a = lblk, .b = pblk, .c = len, .flags = flags };
	return j_append(v, &r, ordered);
}

/* A mapping that was written and changes invalidates the handles'
   extent caches (map lock held).  ordered: as j_append's (false when the
   record makes only clean blocks written). */
int md_map(struct dio_vol *v, struct dio_inode *in, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags,
	   bool ordered)
{
	DIO_MD_HELD(v);
	DIO_MAP_HELD(v, in);
	uint64_t before = em_count(&in->map);
	bool had_written = false;
	int e = em_set(&in->map, lblk, pblk, len, flags, &had_written);
	if (had_written)
		atomic_fetch_add_explicit(&in->map_gen, 1, memory_order_release);
	return map_logged(v, in, before, e, lblk, pblk, len, flags, ordered);
}

/* md_map of [lblk, lblk+len) inside the extent at c (em_find's, under the
   same locks) that keeps its device blocks: only the state changes (a
   write's conversion), with no second lookup. */
int md_restate(struct dio_vol *v, struct dio_inode *in, struct em_cur *c, uint64_t lblk, uint64_t len,
	       uint32_t flags, bool ordered)
{
	DIO_MD_HELD(v);
	DIO_MAP_HELD(v, in);
	const struct dio_extent *x = em_rec(c);
	uint64_t before = em_count(&in->map), pblk = x->pblk + (lblk - x->lblk);
	if (!(x->flags & EXT_UNWRITTEN))
		atomic_fetch_add_explicit(&in->map_gen, 1, memory_order_release);
	int e = em_restate(&in->map, c, lblk, len, flags);
	return map_logged(v, in, before, e, lblk, pblk, len, flags, ordered);
}

int md_unmap(struct dio_vol *v, struct dio_inode *in, uint64_t lblk, uint64_t len)
{
	DIO_MD_HELD(v);
	DIO_MAP_HELD(v, in);
	uint64_t before = em_count(&in->map);
	struct dio_extent x;
	if (!em_get(&in->map, lblk, &x) || x.lblk >= lblk + len)
		return 0;   /* nothing mapped there: no record needed */
	atomic_fetch_add_explicit(&in->map_gen, 1, memory_order_release);
	/* the freed blocks belong to the record appended next */
	struct freed fr = { v, v->j.last_seq + 1 };
	int e = em_remove(&in->map, lblk, len, freed_cb, &fr);
	md_account(v, before, em_count(&in->map));
	if (e)
		return e;
	struct dio_rec r = { .type = R_UNMAP, .ino = in->ino, .a = lblk, .c = len };
	return j_append(v, &r, true);
}

int md_set_size(struct dio_vol *v, struct dio_inode *in, uint64_t size, bool ordered)
{
	DIO_MD_HELD(v);
	DIO_MAP_HELD(v, in);
	struct dio_rec r = { .type = R_SIZE, .ino = in->ino, .a = size };
	int e = j_append(v, &r, ordered);   /* the record first: a failure changed nothing */
	if (!e)
		__atomic_store_n(&in->size, size, __ATOMIC_RELEASE);
	return e;
}

/* The file's modification time set to t and journalled (R_TIMES), in the
   call's transaction: a truncate, a preallocation, a punch, a create,
   dio_set_mtime.  A volume read-only or made before the feature keeps
   it in memory only (the first read-write mount adds the feature). */
int md_times(struct dio_vol *v, struct dio_inode *in, int64_t t)
{
	DIO_MD_HELD(v);
	if (!(v->sb.incompat & DIO_INCOMPAT_MTIME)) {
		ino_set_mtime(in, t, false);
		return 0;
	}
	struct dio_rec r = { .type = R_TIMES, .ino = in->ino, .a = (uint64_t)t };
	int e = j_append(v, &r, false);
	if (!e)
		ino_set_mtime(in, t, true);
	return e;
}

/*
 * Give every hole in [lblk, lblk+len) unwritten blocks, all or nothing.
 * Preallocation (MA_JOURNAL) journals them.  A write does not: the blocks
 * become reachable through the R_MAP record of their unwritten->written
 * conversion, after the data is down; a crash before that leaves them
 * free.  A small write takes clean blocks (alloc.c) when there are enough,
 * and with MA_REFILL returns -EAGAIN, changing nothing, when a refill
 * could provide them.  *clean (writes only) tells whether everything the
 * write will expose is clean: new blocks all clean, no unwritten blocks
 * from before in the range.
 */
struct taken { uint64_t lblk, p, got; };

int md_alloc_range(struct dio_vol *v, struct dio_inode *in, uint64_t lblk, uint64_t len, unsigned how,
		   bool *clean)
{
	DIO_MD_HELD(v);
	DIO_MAP_HELD(v, in);
	uint64_t end = lblk + len, need = 0, holes = 0, cur = lblk;
	bool old_unwritten = false;
	struct em_cur c, before;
	bool more = em_find(&in->map, lblk, &c);
	/* the extent before the range, for the allocation goal */
	before = c;
	bool has_before = more ? em_prev(&in->map, &before) : em_last(&in->map, &before);
	while (cur < end) {
		const struct dio_extent *x = more ? em_rec(&c) : NULL;
		uint64_t next = x ? MIN(x->lblk, end) : end;
		if (next > cur) {
			need += next - cur;
			holes++;
		}
		if (!x || x->lblk >= end)
			break;
		old_unwritten |= (x->flags & EXT_UNWRITTEN) != 0;
		cur = MAX(cur, x->lblk + x->len);
		more = em_next(&in->map, &c);
	}
	bool want_clean = clean && !old_unwritten && need && need * v->bs <= CLEAN_REQ_MAX_BYTES;
	if (clean)
		*clean = !old_unwritten;
	/* room for the new extents and for splitting unwritten extents
	   when the range is converted to written later */
	int e = md_room(v, holes + 4, 0);
	if (e || !need)
		return e;
	if (need > v->alloc.free_blocks || v->alloc.free_blocks - need < vol_reserve(v))
		return -ENOSPC;   /* the reserve is for md_spare_take */
	if (want_clean && v->alloc.clean_blocks < need) {
		if ((how & MA_REFILL) && clean_can_refill(v, need))
			return -EAGAIN;
		want_clean = false;
	}
	if (clean)
		*clean = want_clean;
	/* goal: right after the block mapped before lblk, for contiguity */
	uint64_t goal = v->alloc.first;
	if (has_before) {
		const struct dio_extent *b = em_rec(&before);
		goal = b->pblk + b->len + (lblk - (b->lblk + b->len));
	}
	/* every block first, then the memory for the inserts and records:
	   from the first change on nothing can fail, so the range is
	   allocated whole or not at all */
	struct taken *tk = NULL;
	size_t ntk = 0, tcap = 0;
	size_t inserts = 0;
	cur = lblk;
	while (cur < end && !e) {
		struct dio_extent x;
		bool found = em_get(&in->map, cur, &x);
		if (found && x.lblk <= cur) {
			cur = x.lblk + x.len;
			goal = x.pblk + x.len;
			continue;
		}
		uint64_t hole_end = found ? MIN(x.lblk, end) : end;
		while (cur < hole_end && !e) {
			if (ntk == tcap) {
				struct taken *n = dio_realloc(tk, (tcap = tcap ? tcap * 2 : 16) * sizeof(*tk));
				if (!n) {
					e = -ENOMEM;
					break;
				}
				tk = n;
			}
			uint64_t p, got;
			/* clean_blocks >= need was checked: a clean take cannot fail */
			e = want_clean ? alloc_take_clean(&v->alloc, goal, hole_end - cur, &p, &got)
				       : alloc_take(&v->alloc, goal, hole_end - cur, &p, &got);
			DIO_ASSERT(!e);   /* free_blocks was checked */
			if (e)
				break;
			tk[ntk++] = (struct taken){ cur, p, got };
			inserts += (got >> 24) + 1;   /* records of at most 16 Mi blocks */
			cur += got;
			goal = p + got;
		}
	}
	unsigned nodes = bt_insert_nodes(&in->map.t, inserts);
	if (!e)
		e = bt_reserve(nodes);
	if (!e && (how & MA_JOURNAL) && (e = j_reserve(v, ntk * 40)))
		bt_unreserve(nodes);
	if (e) {
		for (size_t i = 0; i < ntk; i++)
			alloc_give(&v->alloc, tk[i].p, tk[i].got);
		free(tk);
		return e;
	}
	for (size_t i = 0; i < ntk; i++) {
		uint64_t n0 = em_count(&in->map);
		int ei = em_insert(&in->map, tk[i].lblk, tk[i].p, tk[i].got, EXT_UNWRITTEN);
		DIO_ASSERT(!ei);   /* its nodes are reserved */
		(void)ei;
		md_account(v, n0, em_count(&in->map));
		if (how & MA_JOURNAL) {
			struct dio_rec r = { .type = R_MAP, .ino = in->ino, .a = tk[i].lblk, .b = tk[i].p, .c = tk[i].got,
					     .flags = EXT_UNWRITTEN };
			j_append(v, &r, true);   /* reserved */
		}
	}
	bt_unreserve(nodes);
	free(tk);
	return 0;
}

/*
 * Under md_lock, before a metadata call changes anything: room for what
 * it will need once it has begun (jbytes of journal records, *nodes tree
 * nodes beyond the standing reserve), so that from its first change on
 * nothing fails for want of memory and the call changes everything or
 * nothing.  0, or -ENOMEM with nothing changed (and *nodes 0); give
 * *nodes back with bt_unreserve when the call is done.
 */
int md_ready(struct dio_vol *v, size_t jbytes, unsigned *nodes)
{
	DIO_MD_HELD(v);
	int e = j_reserve(v, jbytes);
	if (!e)
		e = bt_reserve(*nodes);
	if (e)
		*nodes = 0;   /* nothing to give back */
	return e;
}

/*
 * A spare block for the copy of a partial block that a call zeroes
 * (truncate's new last block, the edges of a punch or a zero range): the
 * copy goes to a new place and the call's transaction maps it in, so the
 * old bytes stay where they were until that transaction is durable, and
 * a call that fails or dies changes no byte.  Writes and preallocation
 * leave vol_reserve() blocks to these (md_alloc_range), so that a full
 * volume still truncates; blocks the calls free come back as their
 * commits make them durable, so when none is left one commit is made
 * (or a refill awaited) and the take tried again.  Not journalled: a
 * crash before the call's R_MAP leaves the block free.  Under the
 * file's range lock, no other lock held.
 */
int md_spare_take(struct dio_vol *v, struct dio_inode *in, uint64_t blk, uint64_t *pblk)
{
	for (int tries = 0;; tries++) {
		pthread_mutex_lock(&v->md_lock);
		int e = v->j.broken ? -EIO : 0;
		uint64_t got = 0, seq = v->j.last_seq;
		if (!e && v->alloc.free_blocks) {
			struct dio_extent x;
			pthread_rwlock_rdlock(&in->map_lock);
			uint64_t goal = em_get(&in->map, blk, &x) && x.lblk <= blk ? x.pblk + (blk - x.lblk) : v->alloc.first;
			pthread_rwlock_unlock(&in->map_lock);
			e = alloc_take(&v->alloc, goal, 1, pblk, &got);
		}
		md_unlock(v);
		if (e || got)
			return e;
		if (tries == 2)
			return -ENOSPC;
		if (!clean_wait_zeroing(v) && (e = j_commit(v, seq, false, false)))
			return e;
	}
}

/*
 * An allocation found too little free space while blocks that earlier
 * calls freed wait for their commit (rule 4: they are reused only once
 * the change that freed them is durable, or a crash could show one
 * file's new data in another's old blocks).  Commit now, which frees
 * them, and say whether trying again can succeed: ENOSPC right after an
 * unlink would otherwise last until the next fsync.  No lock held.
 */
bool md_commit_for_space(struct dio_vol *v)
{
	pthread_mutex_lock(&v->md_lock);
	bool waiting = v->alloc.pend_blocks != 0;
	uint64_t seq = v->j.last_seq;
	md_unlock(v);
	return waiting && !j_commit(v, seq, false, false);
}

/* A spare block the call did not map: free again, or (a write to it
   failed on the media) never to be used. */
void md_spare_put(struct dio_vol *v, uint64_t pblk, bool bad)
{
	pthread_mutex_lock(&v->md_lock);
	if (bad && !md_room(v, 1, 0))
		bad_add(v, pblk, 1);
	else
		alloc_give(&v->alloc, pblk, 1);
	md_unlock(v);
}

/* The extents of in's map over [b0, b1) (map lock held): what a call that
   changes each of them (a zero range's unwrite) reserves for. */
size_t md_extents_in(struct dio_inode *in, uint64_t b0, uint64_t b1)
{
	size_t n = 0;
	struct em_cur c;
	for (bool ok = em_find(&in->map, b0, &c); ok && em_rec(&c)->lblk < b1; ok = em_next(&in->map, &c))
		n++;
	return n;
}
