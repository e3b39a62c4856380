/*
 * Extent maps checked against a block array (tests/test_btree.c and
 * tests/test_partial.c): every extent walked matches the blocks, the
 * walk's length is em_count, neighbours are merged where they can be.
 */
#ifndef DIO_TEST_EMAP_MODEL_H
#define DIO_TEST_EMAP_MODEL_H
#include "helpers.h"
#include "../lib/internal.h"

#define NB 4096
struct blk { uint64_t pblk; uint32_t flags; bool mapped; };

/* Could extents a and b be one? */
static inline bool mergeable(const struct dio_extent *a, const struct dio_extent *b)
{
	return a->lblk + a->len == b->lblk && a->pblk + a->len == b->pblk && a->flags == b->flags;
}

/* Neighbouring records that could merge have been merged; the runs of a
   partial record alternate (they are maximal).  Only where a partial
   record meets another record may two extents be one. */
static inline void check_neighbours(const struct em_cur *c, const struct dio_extent *prev, const struct dio_extent *prev_raw)
{
	const struct dio_extent *raw = bt_rec(&c->c);
	if (raw == prev_raw)
		T_CHECK(prev->lblk + prev->len == c->x.lblk && prev->flags != c->x.flags);
	else if (!((raw->flags | prev_raw->flags) & EXT_PARTIAL))
		T_CHECK(!mergeable(prev, &c->x));
}

static inline void check_map(const struct dio_emap *m, const struct blk *b)
{
	uint64_t blocks = 0;
	struct em_cur c;
	uint64_t prev_end = 0;
	size_t n = 0;
	struct dio_extent prev = { 0, 0, 0, 0 };
	const struct dio_extent *prev_raw = NULL;
	for (bool ok = em_first(m, &c); ok; ok = em_next(m, &c), n++) {
		const struct dio_extent *x = em_rec(&c);
		T_CHECK((x->lblk) >= (prev_end));
		T_CHECK((x->len) > (0));
		if (prev_raw)
			check_neighbours(&c, &prev, prev_raw);
		for (uint64_t i = 0; i < x->len; i++) {
			T_CHECK(b[x->lblk + i].mapped);
			T_CHECK((b[x->lblk + i].pblk) == (x->pblk + i));
			T_CHECK((b[x->lblk + i].flags) == (x->flags));
		}
		blocks += x->len;
		prev_end = x->lblk + x->len;
		prev = *x;
		prev_raw = bt_rec(&c.c);
	}
	T_CHECK(n == em_count(m), "%zu extents walked, em_count %zu", n, em_count(m));
	uint64_t want = 0;
	for (uint64_t i = 0; i < NB; i++) {
		want += b[i].mapped;
		struct dio_extent x;
		bool got = em_get(m, i, &x) && x.lblk <= i;
		T_CHECK((got) == (b[i].mapped));
		T_CHECK(em_written(m, i) == (b[i].mapped && !(b[i].flags & EXT_UNWRITTEN)));
	}
	T_CHECK((blocks) == (want));
	T_CHECK((em_blocks(m)) == (want));
}

static uint64_t removed_blocks;
static inline void count_removed(void *arg, uint64_t pblk, uint64_t len, uint32_t flags)
{
	(void)arg, (void)pblk, (void)flags;
	removed_blocks += len;
}

#define NBIG (1u << 17)
static inline bool same_extent(const struct em_cur *a, const struct em_cur *b)
{
	return bt_rec(&a->c) == bt_rec(&b->c) && a->x.lblk == b->x.lblk && a->x.len == b->x.len &&
	       a->x.pblk == b->x.pblk && a->x.flags == b->x.flags;
}

static inline void check_big(const struct dio_emap *m, const struct blk *b)
{
	uint64_t blocks = 0, prev_end = 0;
	size_t n = 0;
	struct em_cur c, f;
	struct dio_extent prev = { 0, 0, 0, 0 };
	const struct dio_extent *prev_raw = NULL;
	for (bool ok = em_first(m, &c); ok; ok = em_next(m, &c), n++) {
		const struct dio_extent *x = em_rec(&c);
		T_CHECK(x->lblk >= prev_end && x->len > 0);
		if (prev_raw)
			check_neighbours(&c, &prev, prev_raw);
		/* found from the root, at its first and its last block */
		T_CHECK(em_find(m, x->lblk, &f) && same_extent(&f, &c));
		T_CHECK(em_find(m, x->lblk + x->len - 1, &f) && same_extent(&f, &c));
		for (uint64_t i = 0; i < x->len; i++)
			T_CHECK(b[x->lblk + i].pblk == x->pblk + i && b[x->lblk + i].flags == x->flags);
		blocks += x->len;
		prev_end = x->lblk + x->len;
		prev = *x;
		prev_raw = bt_rec(&c.c);
	}
	T_CHECK(blocks == NBIG && em_blocks(m) == NBIG && n == em_count(m));
	/* and backwards, extent for extent */
	for (bool ok = em_last(m, &c); ok; ok = em_prev(m, &c), n--) {
		T_CHECK(n > 0 && em_find(m, c.x.lblk, &f) && same_extent(&f, &c));
		prev_end = c.x.lblk;
	}
	T_CHECK(n == 0 && prev_end == 0);
}

/* Blocks [0, n) mapped unwritten onto device blocks from pblk, as one
   record, and in the array. */
static inline void map_unwritten(struct dio_emap *m, struct blk *b, uint64_t n, uint64_t pblk)
{
	ck_assert_int_eq(em_insert(m, 0, pblk, n, EXT_UNWRITTEN), 0);
	for (uint64_t i = 0; i < n; i++)
		b[i] = (struct blk){ pblk + i, EXT_UNWRITTEN, true };
}

/* Convert n unwritten blocks from l (inside one extent) as a write's
   completion does, and in the array. */
static inline void convert(struct dio_emap *m, struct blk *b, uint64_t l, uint64_t n, uint32_t fl)
{
	struct em_cur c;
	ck_assert(em_find(m, l, &c));
	n = MIN(n, c.x.lblk + c.x.len - l);
	ck_assert_int_eq(em_restate(m, &c, l, n, fl), 0);
	for (uint64_t i = l; i < l + n; i++)
		b[i].flags = fl;
}

#endif
