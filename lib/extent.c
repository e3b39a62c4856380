/*
 * Extent maps: a file's map (file block -> device block) and the volume's
 * bad-block list, each a B+tree of non-overlapping extents ordered by
 * lblk (btree.c).
 *
 * Lookup is O(log n) and every change is a few tree operations, so a map
 * of a million extents costs what a map of ten does (a sorted array
 * spent 64 % of a random write into preallocated space moving its tail:
 * bench/RESULTS.md).  Neighbours contiguous on the device and in the
 * same state are merged, so a file written in order stays one extent.
 * Changes happen only on the metadata path, under md_lock and the
 * inode's map lock.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

bool em_find(const struct dio_emap *m, uint64_t lblk, struct bt_cur *c)
{
	struct dio_extent key = { .lblk = lblk };
	bool ge = bt_seek_ge(&m->t, &key, c);
	if (ge && bt_rec(c)->lblk == lblk)
		return true;
	/* the extent before may reach over lblk */
	struct bt_cur p = *c;
	bool prev = ge ? bt_prev(&p) : bt_last(&m->t, &p);
	if (prev && bt_rec(&p)->lblk + bt_rec(&p)->len > lblk) {
		*c = p;
		return true;
	}
	return ge;
}

/* Only an extent found inside the leaf settles it: records never overlap,
   so the one holding lblk is the one em_find finds.  An lblk at the
   leaf's edge, or not inside any extent there, takes the full search. */
bool em_find_near(const struct dio_emap *m, uint64_t lblk, const struct em_hint *h, struct bt_cur *c)
{
	struct dio_extent key = { .lblk = lblk };
	if (bt_seek_in_leaf(&m->t, h->leaf, h->frees, &key, c)) {
		const struct dio_extent *r = c->leaf->r;
		if (c->i < c->leaf->n && r[c->i].lblk == lblk)
			return true;
		if (c->i > 0 && r[c->i - 1].lblk + r[c->i - 1].len > lblk) {
			c->i--;
			return true;
		}
	}
	return em_find(m, lblk, c);
}

bool em_get(const struct dio_emap *m, uint64_t lblk, struct dio_extent *x)
{
	struct bt_cur c;
	if (!em_find(m, lblk, &c))
		return false;
	*x = *bt_rec(&c);
	return true;
}

bool em_written(const struct dio_emap *m, uint64_t lblk)
{
	struct dio_extent x;
	return em_get(m, lblk, &x) && x.lblk <= lblk && !(x.flags & EXT_UNWRITTEN);
}

void em_free(struct dio_emap *m)
{
	bt_destroy(&m->t);
	m->blocks = 0;
}

static bool em_joins(const struct dio_extent *a, const struct dio_extent *b)
{
	return a->lblk + a->len == b->lblk && a->pblk + a->len == b->pblk &&
	       a->flags == b->flags && (uint64_t)a->len + b->len <= EXT_MAX_LEN;
}

/*
 * [lblk, lblk+len) lies inside the extent at c and keeps its device
 * blocks; only its state changes (a write's unwritten->written
 * conversion, blocks marked bad).  The parts that change in place do so
 * first, then at most two new records go in (and out again if the second
 * cannot), and the range merges with a neighbour where it now can.  All
 * of it happens where c stands: the new records go in beside it, a
 * merged neighbour's key moves in place when that keeps it inside its
 * leaf (bt_may_rekey), and records go out at their cursor, so a random
 * write into preallocated space costs its one lookup (em_find's) and
 * moves inside a leaf; a full descent only where a leaf is full or its
 * edge is crossed.
 */
int em_restate(struct dio_emap *m, struct bt_cur *c, uint64_t lblk, uint64_t len, uint32_t flags)
{
	struct dio_extent *x = bt_rec(c), old = *x;
	uint64_t e = lblk + len, xe = old.lblk + old.len;
	struct dio_extent mid = { lblk, old.pblk + (lblk - old.lblk), (uint32_t)len, flags };
	struct dio_extent back = { e, old.pblk + (e - old.lblk), (uint32_t)(xe - e), old.flags };
	DIO_ASSERT(old.lblk <= lblk && e <= xe);
	if (old.flags == flags)
		return 0;
	struct bt_cur pc = *c, nc = *c;
	bool prev = lblk == old.lblk && bt_prev(&pc) && em_joins(bt_rec(&pc), &mid);
	bool next = e == xe && bt_next(&nc) && em_joins(&mid, bt_rec(&nc));
	if (prev && next && (uint64_t)bt_rec(&pc)->len + len + bt_rec(&nc)->len > EXT_MAX_LEN)
		next = false;
	struct dio_extent nx = next ? *bt_rec(&nc) : old;
	int err = 0;
	if (lblk == old.lblk && e == xe) {
		/* the whole extent: into its neighbours, or in place; the one
		   after goes first, which leaves c valid if it was a move */
		if (prev)
			bt_rec(&pc)->len += (uint32_t)len + (next ? nx.len : 0);
		else
			*x = (struct dio_extent){ old.lblk, old.pblk, old.len + (next ? nx.len : 0), flags };
		bool kept = !next || bt_delete_at(&m->t, &nc);
		if (prev && kept)
			bt_delete_at(&m->t, c);
		else if (prev)
			bt_delete(&m->t, &old);
		return 0;
	}
	if (lblk == old.lblk) {
		/* the front: into the neighbour before, the back keeping the
		   old state (its key raised in place, or a record of its own);
		   or in place, the back a new record after it.  A failed
		   insertion changed nothing, so the cursors still hold. */
		if (!prev) {
			*x = mid;
			err = bt_insert_after(&m->t, c, &back);
			if (err)
				*x = old;
			return err;
		}
		bt_rec(&pc)->len += (uint32_t)len;
		if (bt_may_rekey(c, true)) {
			*x = back;
			return 0;
		}
		err = bt_insert(&m->t, &back);
		if (err)
			bt_rec(&pc)->len -= (uint32_t)len;
		else
			bt_delete(&m->t, &old);
		return err;
	}
	/* the front keeps the old state in place; the range joins the
	   extent after it (whose key comes down in place when it can) or is
	   a new record after the front, and so is the back */
	x->len = (uint32_t)(lblk - old.lblk);
	if (next && bt_may_rekey(&nc, false)) {
		*bt_rec(&nc) = (struct dio_extent){ lblk, mid.pblk, (uint32_t)len + nx.len, flags };
		return 0;
	}
	if (next)
		mid.len += nx.len;
	err = bt_insert_after(&m->t, c, &mid);
	if (!err && e < xe) {
		err = bt_insert_after(&m->t, c, &back);
		if (err)
			bt_delete(&m->t, &mid);
	}
	if (err) {
		em_find(m, old.lblk, c);
		*bt_rec(c) = old;
	} else if (next) {
		bt_delete(&m->t, &nx);
	}
	return err;
}

/* Map [lblk, lblk+len) -> pblk with flags, replacing what was there;
   *had_written: some block of the range was mapped and written. */
int em_set(struct dio_emap *m, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags, bool *had_written)
{
	struct bt_cur c;
	bool found = em_find(m, lblk, &c);
	const struct dio_extent *x = found ? bt_rec(&c) : NULL;
	if (x && x->lblk <= lblk && x->lblk + x->len >= lblk + len && x->pblk + (lblk - x->lblk) == pblk) {
		*had_written = !(x->flags & EXT_UNWRITTEN);
		return em_restate(m, &c, lblk, len, flags);
	}
	*had_written = false;
	for (bool ok = found; ok && bt_rec(&c)->lblk < lblk + len; ok = bt_next(&c))
		*had_written |= !(bt_rec(&c)->flags & EXT_UNWRITTEN);
	int e = em_remove(m, lblk, len, NULL, NULL);
	return e ? e : em_insert(m, lblk, pblk, len, flags);
}

/*
 * Remove every mapping of [lblk, lblk+len), splitting extents that stick
 * out on either side.  fn (if set) receives each removed physical range.
 * Fails (-ENOMEM) only when a piece that stays needs a node; what was
 * removed before stays removed (and was reported to fn).
 */
int em_remove(struct dio_emap *m, uint64_t lblk, uint64_t len, em_free_fn fn, void *arg)
{
	uint64_t end = lblk + len;
	struct bt_cur c;
	if (!len)
		return 0;
	for (bool ok = em_find(m, lblk, &c); ok && bt_rec(&c)->lblk < end; ok = em_find(m, lblk, &c)) {
		struct dio_extent *x = bt_rec(&c), old = *x;
		uint64_t s = MAX(old.lblk, lblk), t = MIN(old.lblk + old.len, end);
		if (old.lblk < lblk && old.lblk + old.len > end) {
			/* a hole in the middle: keep the front, add the back */
			struct dio_extent back = { end, old.pblk + (end - old.lblk), (uint32_t)(old.lblk + old.len - end),
						   old.flags };
			int e = bt_insert(&m->t, &back);
			if (e)
				return e;
			em_find(m, lblk, &c);
			bt_rec(&c)->len = (uint32_t)(lblk - old.lblk);
		} else if (old.lblk < lblk) {
			x->len = (uint32_t)(lblk - old.lblk);          /* keep the front */
		} else if (old.lblk + old.len > end) {
			/* keep the back: a record of its own (a key never moves
			   in place: the next leaf's key in its parent may be
			   below the next record's), added first as only that
			   can fail */
			struct dio_extent back = { end, old.pblk + (end - old.lblk), (uint32_t)(old.lblk + old.len - end),
						   old.flags };
			int e = bt_insert(&m->t, &back);
			if (e)
				return e;
			bt_delete(&m->t, &old);
		} else {
			bt_delete(&m->t, &old);
		}
		m->blocks -= t - s;
		if (fn)
			fn(arg, old.pblk + (s - old.lblk), t - s, old.flags);
		if (t >= end)
			break;
		lblk = t;
	}
	return 0;
}


/* Map [lblk, lblk+len) -> pblk; the range must hold no mapping. */
int em_insert(struct dio_emap *m, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags)
{
	while (len) {
		uint32_t piece = (uint32_t)MIN(len, (uint64_t)EXT_MAX_LEN);
		struct dio_extent ne = { lblk, pblk, piece, flags };
		struct bt_cur r, l;
		bool has_r = bt_seek_ge(&m->t, &ne, &r);
		l = r;
		bool has_l = has_r ? bt_prev(&l) : bt_last(&m->t, &l);
		bool left = has_l && em_joins(bt_rec(&l), &ne);
		bool right = has_r && em_joins(&ne, bt_rec(&r));
		int e = 0;
		if (left && right && (uint64_t)bt_rec(&l)->len + piece + bt_rec(&r)->len <= EXT_MAX_LEN) {
			struct dio_extent rx = *bt_rec(&r);
			bt_rec(&l)->len += piece + rx.len;
			bt_delete(&m->t, &rx);
		} else if (left) {
			bt_rec(&l)->len += piece;
		} else if (right) {
			/* the key would shrink: a new record, then the old one
			   goes (insert first: only it can fail) */
			struct dio_extent rx = *bt_rec(&r);
			ne.len += rx.len;
			e = bt_insert(&m->t, &ne);
			if (!e)
				bt_delete(&m->t, &rx);
		} else {
			e = bt_insert(&m->t, &ne);
		}
		if (e)
			return e;
		m->blocks += piece;
		lblk += piece;
		pblk += piece;
		len -= piece;
	}
	return 0;
}
