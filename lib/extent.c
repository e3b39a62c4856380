/*
 * Extent maps: a file's map (file block -> device block) and the volume's
 * bad-block list, each a B+tree of non-overlapping records ordered by
 * lblk (btree.c).
 *
 * Lookup is O(log n) and every change is a few tree operations, so a map
 * of a million extents costs what a map of ten does (a sorted array
 * spent 64 % of a random write into preallocated space moving its tail:
 * bench/RESULTS.md).  Neighbours contiguous on the device and in the
 * same state are merged, so a file written in order stays one extent.
 * Changes happen only on the metadata path, under md_lock and the
 * inode's map lock.
 *
 * Random writes into a preallocated file would still cut its unwritten
 * record into a written and an unwritten extent per write: a million
 * records for a 4 GiB file, more leaves than the L3 holds, so that each
 * write's lookup went to memory (bench/RESULTS.md).  A conversion in the
 * middle of an unwritten record therefore keeps the record whole and
 * marks the blocks in a bitmap of its own (a partial record, internal.h);
 * its runs are what the rest of libdio sees as extents (struct em_cur),
 * and what the checkpoint writes.  Any other change that touches a
 * partial record first cuts it around its range (records there, partial
 * records on either side), then changes records as before.
 */
#include "internal.h"
#include "bitmap.h"
#include <stdlib.h>
#include <string.h>

/* ---- partial records ------------------------------------------------------ */

#define PARTIAL_MIN    64u                        /* shorter records split as before */
#define PARTIAL_MAX    (1u << 24)                 /* at most 2 MiB of bitmap */

static struct em_bits *bits_of(const struct dio_emap *m, const struct dio_extent *r)
{
	return m->bits[r->flags >> EXT_BM_SHIFT];
}

/* A slot of the map's table for b; -ENOMEM if the table cannot grow. */
static int slot_take(struct dio_emap *m, struct em_bits *b, uint32_t *out)
{
	uint32_t slot = m->bits_lo;
	while (slot < m->nbits && m->bits[slot])
		slot++;
	if (slot == m->nbits) {
		uint32_t n = m->nbits ? m->nbits * 2 : 4;
		if (n > UINT32_MAX >> EXT_BM_SHIFT)
			return -ENOMEM;
		struct em_bits **nb = dio_realloc(m->bits, n * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		memset(nb + m->nbits, 0, (n - m->nbits) * sizeof(*nb));
		m->bits = nb;
		m->nbits = n;
	}
	m->bits[slot] = b;
	m->bits_lo = slot + 1;
	*out = slot;
	return 0;
}

/* Free the slot and its bitmap. */
static void slot_release(struct dio_emap *m, uint32_t slot)
{
	free(m->bits[slot]);
	m->bits[slot] = NULL;
	m->bits_lo = MIN(m->bits_lo, slot);
}

static uint32_t partial_flags(uint32_t slot)
{
	return EXT_UNWRITTEN | EXT_PARTIAL | slot << EXT_BM_SHIFT;
}

/* Give r (unwritten) the bitmap b: r is partial from now on. */
static int partial_attach(struct dio_emap *m, struct dio_extent *r, struct em_bits *b)
{
	uint32_t slot;
	int e = slot_take(m, b, &slot);
	if (!e)
		r->flags = partial_flags(slot);
	return e;
}

/* Make the unwritten record r partial, with no block written yet. */
static int partial_new(struct dio_emap *m, struct dio_extent *r)
{
	struct em_bits *b = bits_new(r->len);
	if (!b)
		return -ENOMEM;
	int e = partial_attach(m, r, b);
	if (e)
		free(b);
	return e;
}

/* r stops being partial (its runs were accounted for by the caller). */
static void partial_free(struct dio_emap *m, struct dio_extent *r)
{
	slot_release(m, r->flags >> EXT_BM_SHIFT);
	r->flags = EXT_UNWRITTEN;
}

/* ---- extents: records, and the runs of partial records ------------------- */

/* The extent at block lblk of the record at c. */
static void view_at(const struct dio_emap *m, const struct bt_cur *c, uint64_t lblk, struct dio_extent *x)
{
	const struct dio_extent *r = bt_rec(c);
	if (!(r->flags & EXT_PARTIAL)) {
		*x = *r;
		return;
	}
	const struct em_bits *b = bits_of(m, r);
	uint64_t i = lblk - r->lblk;
	bool v = bm_get(b, i);
	uint64_t s = bm_run_start(b, i, v), e = bm_run_end(b, i, v);
	*x = (struct dio_extent){ r->lblk + s, r->pblk + s, (uint32_t)(e - s), v ? 0 : EXT_UNWRITTEN };
}

/* The first record ending after lblk. */
static bool rec_find(const struct dio_emap *m, uint64_t lblk, struct bt_cur *c)
{
	struct dio_extent key = { .lblk = lblk };
	bool ge = bt_seek_ge(&m->t, &key, c);
	if (ge && bt_rec(c)->lblk == lblk)
		return true;
	/* the record before may reach over lblk */
	struct bt_cur p = *c;
	bool prev = ge ? bt_prev(&p) : bt_last(&m->t, &p);
	if (prev && bt_rec(&p)->lblk + bt_rec(&p)->len > lblk) {
		*c = p;
		return true;
	}
	return ge;
}

bool em_find(const struct dio_emap *m, uint64_t lblk, struct em_cur *c)
{
	if (!rec_find(m, lblk, &c->c))
		return false;
	view_at(m, &c->c, MAX(lblk, bt_rec(&c->c)->lblk), &c->x);
	return true;
}

bool em_next(const struct dio_emap *m, struct em_cur *c)
{
	const struct dio_extent *r = bt_rec(&c->c);
	uint64_t e = c->x.lblk + c->x.len;
	if (e < r->lblk + r->len) {
		view_at(m, &c->c, e, &c->x);
		return true;
	}
	if (!bt_next(&c->c))
		return false;
	view_at(m, &c->c, bt_rec(&c->c)->lblk, &c->x);
	return true;
}

bool em_prev(const struct dio_emap *m, struct em_cur *c)
{
	if (c->x.lblk > bt_rec(&c->c)->lblk) {
		view_at(m, &c->c, c->x.lblk - 1, &c->x);
		return true;
	}
	if (!bt_prev(&c->c))
		return false;
	view_at(m, &c->c, bt_rec(&c->c)->lblk + bt_rec(&c->c)->len - 1, &c->x);
	return true;
}

bool em_first(const struct dio_emap *m, struct em_cur *c)
{
	if (!bt_first(&m->t, &c->c))
		return false;
	view_at(m, &c->c, bt_rec(&c->c)->lblk, &c->x);
	return true;
}

bool em_last(const struct dio_emap *m, struct em_cur *c)
{
	if (!bt_last(&m->t, &c->c))
		return false;
	view_at(m, &c->c, bt_rec(&c->c)->lblk + bt_rec(&c->c)->len - 1, &c->x);
	return true;
}

/* Only a record found inside the leaf settles it: records never overlap,
   so the one holding lblk is the one em_find finds.  An lblk at the
   leaf's edge, or not inside any record there, takes the full search. */
bool em_find_near(const struct dio_emap *m, uint64_t lblk, const struct em_hint *h, struct em_cur *c)
{
	struct dio_extent key = { .lblk = lblk };
	if (bt_seek_in_leaf(&m->t, h->leaf, h->frees, &key, &c->c)) {
		const struct dio_extent *r = c->c.leaf->r;
		bool in = c->c.i < c->c.leaf->n && r[c->c.i].lblk == lblk;
		if (!in && c->c.i > 0 && r[c->c.i - 1].lblk + r[c->c.i - 1].len > lblk) {
			c->c.i--;
			in = true;
		}
		if (in) {
			view_at(m, &c->c, lblk, &c->x);
			return true;
		}
	}
	return em_find(m, lblk, c);
}

bool em_get(const struct dio_emap *m, uint64_t lblk, struct dio_extent *x)
{
	struct em_cur c;
	if (!em_find(m, lblk, &c))
		return false;
	*x = c.x;
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
	for (uint32_t i = 0; i < m->nbits; i++)
		free(m->bits[i]);
	free(m->bits);
	m->bits = NULL;
	m->nbits = m->bits_lo = 0;
	m->extra = 0;
	m->blocks = 0;
}

/* The longest record of a state: unwritten ones stop at PARTIAL_MAX, so
   that however much is preallocated, writes into it can mark bitmaps. */
static uint64_t rec_max(uint32_t flags)
{
	return flags & EXT_UNWRITTEN ? PARTIAL_MAX : EXT_MAX_LEN;
}

static bool em_joins(const struct dio_extent *a, const struct dio_extent *b)
{
	return a->lblk + a->len == b->lblk && a->pblk + a->len == b->pblk &&
	       a->flags == b->flags && (uint64_t)a->len + b->len <= rec_max(a->flags);
}

/*
 * [lblk, lblk+len) lies inside the (not partial) record at c and keeps its device
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
static int rec_restate(struct dio_emap *m, struct bt_cur *c, uint64_t lblk, uint64_t len, uint32_t flags)
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
	if (prev && next && (uint64_t)bt_rec(&pc)->len + len + bt_rec(&nc)->len > rec_max(flags))
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
		rec_find(m, old.lblk, c);
		*bt_rec(c) = old;
	} else if (next) {
		bt_delete(&m->t, &nx);
	}
	return err;
}

/* Blocks [lblk, lblk+len) of the partial record at c, unwritten, are
   written now.  One that is written in full is a record like any other
   again, merged with its neighbours as a whole conversion would be. */
static int partial_write(struct dio_emap *m, struct bt_cur *c, uint64_t lblk, uint64_t len)
{
	struct dio_extent *r = bt_rec(c);
	struct em_bits *b = bits_of(m, r);
	uint64_t i = lblk - r->lblk, e = i + len, runs = b->runs;
	DIO_ASSERT(bm_run_end(b, i, false) >= e);
	/* runs = 1 + the block pairs that differ: only the two at the edges
	   of the range change */
	if (i > 0)
		runs = bm_get(b, i - 1) ? runs - 1 : runs + 1;
	if (e < b->len)
		runs = bm_get(b, e) ? runs - 1 : runs + 1;
	bm_set(b, i, len);
	m->extra = m->extra - (size_t)(b->runs - 1) + (size_t)(runs - 1);
	b->runs = runs;
	if (b->set < b->len)
		return 0;
	partial_free(m, r);   /* one run left: it added nothing to extra */
	return rec_restate(m, c, r->lblk, r->len, 0);
}

/* The record starting at lblk into the one before it, if they join. */
static void rec_merge_back(struct dio_emap *m, uint64_t lblk)
{
	struct bt_cur c, p;
	struct dio_extent key = { .lblk = lblk };
	if (!bt_seek_ge(&m->t, &key, &c) || bt_rec(&c)->lblk != lblk)
		return;
	p = c;
	if (!bt_prev(&p) || !em_joins(bt_rec(&p), bt_rec(&c)))
		return;
	struct dio_extent x = *bt_rec(&c);
	bt_rec(&p)->len += x.len;
	bt_delete(&m->t, &x);
}

/*
 * Cutting a partial record around [s, e) (offsets in it): the blocks
 * there become records, one per run, and the parts before and after stay
 * partial (bitmaps of their own) unless they are of one state.  So a
 * punch, a remap or a block marked bad changes records only where it
 * acts, and the rest of the record keeps its bitmap.
 */
struct cut {
	struct dio_extent r;            /* the partial record */
	const struct em_bits *b;
	uint64_t s, e;
	struct em_bits *part[2];        /* before s, from e: kept partial, or NULL */
	uint32_t slot[2];
};

/* The piece of the cut record from offset at: its extent in *x; returns
   the offset after it. */
static uint64_t cut_piece(const struct cut *k, uint64_t at, struct dio_extent *x)
{
	uint64_t to;
	uint32_t flags;
	if (at < k->s || at >= k->e) {
		int side = at >= k->e;
		to = side ? k->r.len : k->s;
		flags = k->part[side] ? partial_flags(k->slot[side]) : bm_get(k->b, at) ? 0 : EXT_UNWRITTEN;
	} else {
		bool v = bm_get(k->b, at);
		to = MIN(bm_run_end(k->b, at, v), k->e);
		flags = v ? 0 : EXT_UNWRITTEN;
	}
	*x = (struct dio_extent){ k->r.lblk + at, k->r.pblk + at, (uint32_t)(to - at), flags };
	return to;
}

/* Cut the partial record at c around [lblk, end).  The pieces after the
   first go in first, and out again if one cannot (-ENOMEM, nothing
   changed); then the record becomes its first piece.  c is invalid
   afterwards. */
static int partial_cut(struct dio_emap *m, struct bt_cur *c, uint64_t lblk, uint64_t end)
{
	struct cut k = { .r = *bt_rec(c) };
	k.b = bits_of(m, &k.r);
	k.s = lblk > k.r.lblk ? lblk - k.r.lblk : 0;
	k.e = MIN(end - k.r.lblk, (uint64_t)k.r.len);
	/* out to the runs' ends: pieces side by side then differ in state,
	   as records that could merge would have been merged */
	k.s = bm_run_start(k.b, k.s, bm_get(k.b, k.s));
	k.e = bm_run_end(k.b, k.e - 1, bm_get(k.b, k.e - 1));
	uint64_t from[2] = { 0, k.e }, to[2] = { k.s, k.r.len };
	int taken = 0, err = 0;
	for (int side = 0; side < 2 && !err; side++) {
		if (from[side] >= to[side] || bm_run_end(k.b, from[side], bm_get(k.b, from[side])) >= to[side])
			continue;   /* nothing there, or one state: a plain record */
		k.part[side] = bits_slice(k.b, from[side], to[side]);
		err = !k.part[side] ? -ENOMEM : slot_take(m, k.part[side], &k.slot[side]);
		if (!err)
			taken |= 1 << side;
	}
	struct dio_extent first, x;
	uint64_t at = err ? 0 : cut_piece(&k, 0, &first), done = at;
	while (!err && done < k.r.len) {
		uint64_t next = cut_piece(&k, done, &x);
		if (!(err = bt_insert(&m->t, &x)))
			done = next;
	}
	if (err) {
		for (uint64_t a = at; a < done;) {
			a = cut_piece(&k, a, &x);
			bt_delete(&m->t, &(struct dio_extent){ .lblk = x.lblk });
		}
		for (int side = 0; side < 2; side++) {
			if (taken & (1 << side))
				slot_release(m, k.slot[side]);
			else
				free(k.part[side]);
		}
		return err;
	}
	struct dio_extent key = { .lblk = k.r.lblk };
	bt_seek_ge(&m->t, &key, c);
	m->extra -= (size_t)(k.b->runs - 1);
	for (int side = 0; side < 2; side++)
		if (k.part[side])
			m->extra += (size_t)(k.part[side]->runs - 1);
	slot_release(m, k.r.flags >> EXT_BM_SHIFT);
	*bt_rec(c) = first;
	/* and with the records on either side, where an end piece is plain */
	rec_merge_back(m, k.r.lblk);
	rec_merge_back(m, k.r.lblk + k.r.len);
	return 0;
}

/* No partial record left over [lblk, end): they are cut around it. */
static int cut_partials(struct dio_emap *m, uint64_t lblk, uint64_t end)
{
	struct bt_cur c;
	while (lblk < end && rec_find(m, lblk, &c) && bt_rec(&c)->lblk < end) {
		uint64_t next = bt_rec(&c)->lblk + bt_rec(&c)->len;
		if (bt_rec(&c)->flags & EXT_PARTIAL) {
			int e = partial_cut(m, &c, lblk, end);
			if (e)
				return e;
		}
		lblk = next;
	}
	return 0;
}

/* Before a call changes [lblk, end) (a punch, a truncate, a zero range):
   the partial records there cut, which needs memory for their bitmaps,
   so that the changes after need none but reserved nodes.  The map's
   extents stay what they were, cut or not: -ENOMEM changed nothing a
   reader can see. */
int em_prepare(struct dio_emap *m, uint64_t lblk, uint64_t end)
{
	return cut_partials(m, lblk, end);
}

/*
 * [lblk, lblk+len) lies inside the extent at c and keeps its device
 * blocks; only its state changes.  The conversion of unwritten blocks in
 * the middle of a long record marks them in the record's bitmap (making
 * it partial if it was not); every other change is made to records.
 */
int em_restate(struct dio_emap *m, struct em_cur *c, uint64_t lblk, uint64_t len, uint32_t flags)
{
	struct dio_extent *r = bt_rec(&c->c);
	DIO_ASSERT(c->x.lblk <= lblk && lblk + len <= c->x.lblk + c->x.len);
	if (c->x.flags == flags)
		return 0;
	bool convert = c->x.flags == EXT_UNWRITTEN && flags == 0;
	if (r->flags & EXT_PARTIAL) {
		if (convert)
			return partial_write(m, &c->c, lblk, len);
		int e = partial_cut(m, &c->c, lblk, lblk + len);
		if (e)
			return e;
		rec_find(m, lblk, &c->c);
		return rec_restate(m, &c->c, lblk, len, flags);
	}
	if (convert && lblk > r->lblk && lblk + len < r->lblk + r->len && r->len >= PARTIAL_MIN &&
	    r->len <= PARTIAL_MAX && !partial_new(m, r))
		return partial_write(m, &c->c, lblk, len);
	return rec_restate(m, &c->c, lblk, len, flags);
}

/* Map [lblk, lblk+len) -> pblk with flags, replacing what was there;
   *had_written: some block of the range was mapped and written. */
int em_set(struct dio_emap *m, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags, bool *had_written)
{
	struct em_cur c;
	bool found = em_find(m, lblk, &c);
	const struct dio_extent *x = found ? em_rec(&c) : NULL;
	if (x && x->lblk <= lblk && x->lblk + x->len >= lblk + len && x->pblk + (lblk - x->lblk) == pblk) {
		*had_written = !(x->flags & EXT_UNWRITTEN);
		return em_restate(m, &c, lblk, len, flags);
	}
	*had_written = false;
	for (bool ok = found; ok && em_rec(&c)->lblk < lblk + len; ok = em_next(m, &c))
		*had_written |= !(em_rec(&c)->flags & EXT_UNWRITTEN);
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
	int err = cut_partials(m, lblk, end);
	if (err)
		return err;
	for (bool ok = rec_find(m, lblk, &c); ok && bt_rec(&c)->lblk < end; ok = rec_find(m, lblk, &c)) {
		struct dio_extent *x = bt_rec(&c), old = *x;
		uint64_t s = MAX(old.lblk, lblk), t = MIN(old.lblk + old.len, end);
		if (old.lblk < lblk && old.lblk + old.len > end) {
			/* a hole in the middle: keep the front, add the back */
			struct dio_extent back = { end, old.pblk + (end - old.lblk), (uint32_t)(old.lblk + old.len - end),
						   old.flags };
			int e = bt_insert(&m->t, &back);
			if (e)
				return e;
			rec_find(m, lblk, &c);
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
		uint32_t piece = (uint32_t)MIN(len, rec_max(flags));
		struct dio_extent ne = { lblk, pblk, piece, flags };
		struct bt_cur r, l;
		bool has_r = bt_seek_ge(&m->t, &ne, &r);
		l = r;
		bool has_l = has_r ? bt_prev(&l) : bt_last(&m->t, &l);
		bool left = has_l && em_joins(bt_rec(&l), &ne);
		bool right = has_r && em_joins(&ne, bt_rec(&r));
		int e = 0;
		if (left && right && (uint64_t)bt_rec(&l)->len + piece + bt_rec(&r)->len <= rec_max(flags)) {
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

/* ---- loading a map in order (a checkpoint) ------------------------------- */

/*
 * A checkpoint holds a partial record as its runs.  Loading puts them
 * together again: extents that continue one another in the file and on
 * the device, each written or unwritten and nothing else, become one
 * record (partial if they mix the two states and span PARTIAL_MIN to
 * PARTIAL_MAX blocks), so that random writes into a preallocated file
 * keep its map small after a remount too.  Everything else goes in as it
 * came, one record per extent.
 */
static bool loadable(const struct dio_extent *x)
{
	return !(x->flags & ~EXT_UNWRITTEN);
}

/* Room in L->b for need blocks; made when the gathered extents first mix
   states (the blocks so far all in the state of the first). */
static int load_room(struct em_loader *L, uint64_t need)
{
	if (L->b && need <= L->cap)
		return 0;
	uint64_t cap = MAX(need, MIN(MAX(2 * L->cap, (uint64_t)BM_GROUP_BITS), (uint64_t)PARTIAL_MAX));
	struct em_bits *nb = bits_new(cap);
	if (!nb)
		return -ENOMEM;
	if (L->b) {
		uint64_t nw = DIV_UP(L->cap, 64), ng = DIV_UP(nw, BM_GROUP_WORDS);
		memcpy(nb->w, L->b->w, (size_t)nw * sizeof(uint64_t));
		memcpy(nb->grp, L->b->grp, (size_t)ng * sizeof(uint16_t));
		nb->set = L->b->set;
		free(L->b);
	} else if (!(L->g.flags & EXT_UNWRITTEN)) {
		bm_set(nb, 0, L->g.len);
	}
	L->b = nb;
	L->cap = cap;
	return 0;
}

/* Put what was gathered into the map. */
static int load_flush(struct em_loader *L)
{
	struct dio_emap *m = L->m;
	struct dio_extent g = L->g;
	struct em_bits *b = L->b;
	int e = 0;
	L->g.len = 0;
	L->b = NULL;
	L->cap = 0;
	if (!g.len)
		return 0;
	if (!b) {
		e = bt_insert(&m->t, &g);
	} else if (g.len >= PARTIAL_MIN) {
		struct dio_extent r = { g.lblk, g.pblk, g.len, EXT_UNWRITTEN };
		b->len = g.len;
		b->runs = L->runs;
		e = partial_attach(m, &r, b);
		if (e)
			free(b);
		else if ((e = bt_insert(&m->t, &r)))
			partial_free(m, &r);
		else
			m->extra += (size_t)(L->runs - 1);
	} else {
		/* too short to be partial: its runs, one record each */
		b->len = g.len;
		for (uint64_t i = 0; i < g.len && !e;) {
			bool v = bm_get(b, i);
			uint64_t end = bm_run_end(b, i, v);
			struct dio_extent r = { g.lblk + i, g.pblk + i, (uint32_t)(end - i), v ? 0 : EXT_UNWRITTEN };
			e = bt_insert(&m->t, &r);
			i = end;
		}
		free(b);
	}
	if (!e)
		m->blocks += g.len;
	return e;
}

int em_load_add(struct em_loader *L, const struct dio_extent *x)
{
	struct dio_extent *g = &L->g;
	bool w = !(x->flags & EXT_UNWRITTEN);
	int e = 0;
	if (g->len && loadable(g) && loadable(x) && x->lblk == g->lblk + g->len && x->pblk == g->pblk + g->len &&
	    (uint64_t)g->len + x->len <= PARTIAL_MAX) {
		if (w != L->last_written)
			L->runs++;
		if (L->b || w != L->last_written)
			e = load_room(L, (uint64_t)g->len + x->len);
		if (!e) {
			if (L->b && w)
				bm_set(L->b, g->len, x->len);
			g->len += x->len;
			L->last_written = w;
			return 0;
		}
	} else {
		e = load_flush(L);
		if (!e) {
			*g = *x;
			L->runs = 1;
			L->last_written = w;
			return 0;
		}
	}
	em_load_drop(L);   /* failed: the caller gives the map up */
	return e;
}

int em_load_end(struct em_loader *L)
{
	return load_flush(L);
}

void em_load_drop(struct em_loader *L)
{
	free(L->b);
	L->b = NULL;
	L->g.len = 0;
}
