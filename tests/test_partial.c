/*
 * Partial records (lib/extent.c): a conversion inside a long unwritten
 * record marks a bitmap of the record instead of splitting it, and the
 * map reads as the extents the conversions make.  Against a block array:
 * random conversions at scale, then the changes that split the record
 * back into records; a record written in full; runs found across long
 * uniform stretches; huge preallocations; a map loaded in order (a
 * checkpoint) putting its runs back together.
 */
#include "emap_model.h"

/*
 * One unwritten record of NBIG blocks, converted at random: the record
 * stays one (a bitmap marks the written blocks) while the map reads as
 * the tens of thousands of extents the conversions make, found at every
 * block, walked both ways, counted by em_count.  Then changes other than
 * conversions (marking bad, turning back, punching, mapping anew) cut
 * the partial records around their ranges into records there and
 * partial records on either side, and the map still matches the array.
 */
START_TEST(test_a_partial_record_reads_as_the_extents_it_stands_for)
{
	static struct blk b[NBIG];
	struct dio_emap m = { 0 };
	map_unwritten(&m, b, NBIG, 5000);
	t_seed(21);
	for (int op = 0; op < 40000; op++)
		convert(&m, b, 1 + t_rand() % (NBIG - 2), 1 + t_rand() % 4, 0);
	check_big(&m, b);
	ck_assert_uint_eq(m.t.n, 1);
	ck_assert_uint_gt(em_count(&m), 20000);
	for (int op = 0; op < 40000; op++) {
		uint64_t l = t_rand() % NBIG, n = 1 + t_rand() % 6;
		n = MIN(n, NBIG - l);
		unsigned kind = (unsigned)(t_rand() % 100);
		if (kind < 90) {
			convert(&m, b, l, n, 0);
		} else if (kind < 94) {
			convert(&m, b, l, n, t_rand() % 2 ? EXT_UNWRITTEN : EXT_BAD | (b[l].flags & EXT_UNWRITTEN));
		} else if (kind < 97) {
			/* in place over whatever extents hold the range */
			bool had = false, want = false;
			bool contiguous = true;
			for (uint64_t i = l; i < l + n; i++) {
				want |= !(b[i].flags & EXT_UNWRITTEN);
				contiguous &= b[i].pblk == b[l].pblk + (i - l);
			}
			if (!contiguous)
				continue;
			ck_assert_int_eq(em_set(&m, l, b[l].pblk, n, 0, &had), 0);
			ck_assert(had == want);
			for (uint64_t i = l; i < l + n; i++)
				b[i].flags = 0;
		} else {
			/* punched and mapped again elsewhere, unwritten */
			removed_blocks = 0;
			ck_assert_int_eq(em_remove(&m, l, n, count_removed, NULL), 0);
			ck_assert_uint_eq(removed_blocks, n);
			ck_assert_int_eq(em_insert(&m, l, 900000 + l, n, EXT_UNWRITTEN), 0);
			for (uint64_t i = l; i < l + n; i++)
				b[i] = (struct blk){ 900000 + i, EXT_UNWRITTEN, true };
		}
		if (op % 4000 == 0 || getenv("EVERY"))
			check_big(&m, b);
	}
	check_big(&m, b);
	/* each of those cut a record only around its range: most extents
	   are still runs of bitmaps (9,421 records for 36,482 extents) */
	ck_assert_uint_lt(m.t.n * 3, em_count(&m));
	em_free(&m);
}
END_TEST

/* Written block by block in random order, a partial record ends as one
   written record, merged with the written record before it. */
START_TEST(test_a_partial_record_written_in_full_is_one_extent_again)
{
	enum { N = 1000 };
	struct dio_emap m = { 0 };
	static struct blk b[NB];   /* check_map's size; unmapped past N + 10 */
	ck_assert_int_eq(em_insert(&m, 0, 7000, 10, 0), 0);
	ck_assert_int_eq(em_insert(&m, 10, 7010, N, EXT_UNWRITTEN), 0);
	for (uint64_t i = 0; i < N + 10; i++)
		b[i] = (struct blk){ 7000 + i, i < 10 ? 0 : EXT_UNWRITTEN, true };
	uint64_t order[N];
	for (uint64_t i = 0; i < N; i++)
		order[i] = 10 + i;
	t_seed(3);
	for (uint64_t i = N - 1; i > 0; i--) {
		uint64_t j = t_rand() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	size_t most = 0;
	for (uint64_t i = 0; i < N; i++) {
		convert(&m, b, order[i], 1, 0);
		most = MAX(most, em_count(&m));
		if (i % 50 == 0)
			check_map(&m, b);
	}
	check_map(&m, b);
	ck_assert_uint_gt(most, 100);
	ck_assert_uint_eq(em_count(&m), 1);
	ck_assert_uint_eq(m.t.n, 1);
	ck_assert_uint_eq(m.extra, 0);
	for (uint32_t i = 0; i < m.nbits; i++)
		ck_assert_ptr_null(m.bits[i]);
	struct dio_extent x;
	ck_assert(em_get(&m, 500, &x));
	ck_assert(x.lblk == 0 && x.pblk == 7000 && x.len == N + 10 && x.flags == 0);
	em_free(&m);
}
END_TEST

/* Runs that cross long stretches of one state (whole words and whole
   groups of the bitmap) are found from any block, both ways. */
START_TEST(test_runs_are_found_across_long_uniform_stretches)
{
	enum { N = 100000 };
	struct dio_emap m = { 0 };
	static struct blk b[N];
	map_unwritten(&m, b, N, 1000);
	convert(&m, b, 5, 1, 0);
	convert(&m, b, 99990, 1, 0);
	convert(&m, b, 40000, 10000, 0);
	convert(&m, b, 81920, 4096, 0);   /* exactly group 20 of the bitmap */
	static const uint64_t want[][3] = { { 0, 5, 1 },         { 5, 1, 0 },         { 6, 39994, 1 },
					    { 40000, 10000, 0 }, { 50000, 31920, 1 }, { 81920, 4096, 0 },
					    { 86016, 13974, 1 }, { 99990, 1, 0 },     { 99991, 9, 1 } };
	enum { NW = sizeof(want) / sizeof(want[0]) };
	ck_assert_uint_eq(em_count(&m), NW);
	ck_assert_uint_eq(m.t.n, 1);
	struct em_cur c;
	size_t k = 0;
	for (bool ok = em_first(&m, &c); ok; ok = em_next(&m, &c), k++) {
		ck_assert_uint_lt(k, NW);
		ck_assert_uint_eq(c.x.lblk, want[k][0]);
		ck_assert_uint_eq(c.x.len, want[k][1]);
		ck_assert_uint_eq(c.x.pblk, 1000 + want[k][0]);
		ck_assert_uint_eq(c.x.flags, want[k][2] ? EXT_UNWRITTEN : 0);
	}
	ck_assert_uint_eq(k, NW);
	for (bool ok = em_last(&m, &c); ok; ok = em_prev(&m, &c))
		ck_assert_uint_eq(c.x.lblk, want[--k][0]);
	ck_assert_uint_eq(k, 0);
	for (uint64_t at = 0; at < N; at += 997) {
		struct dio_extent x;
		ck_assert(em_get(&m, at, &x));
		ck_assert(x.lblk <= at && at < x.lblk + x.len);
		ck_assert_uint_eq(x.flags, b[at].flags);
	}
	/* the run at 40000 written over a whole group again: no change */
	convert(&m, b, 45000, 4096, 0);
	ck_assert_uint_eq(em_count(&m), NW);
	/* marking one block bad cuts the record around the run it is in:
	   that run becomes records (unwritten, bad, unwritten), the parts
	   before and after keep bitmaps of their own */
	convert(&m, b, 70000, 1, EXT_BAD | EXT_UNWRITTEN);
	ck_assert_uint_eq(em_count(&m), NW + 2);
	ck_assert_uint_eq(m.t.n, 5);
	ck_assert_uint_eq(m.extra, 3 + 3);
	ck_assert(em_find(&m, 1000, &c) && (bt_rec(&c.c)->flags & EXT_PARTIAL) && bt_rec(&c.c)->len == 50000);
	ck_assert(em_find(&m, 69999, &c) && !(bt_rec(&c.c)->flags & EXT_PARTIAL) && c.x.lblk == 50000);
	ck_assert(em_find(&m, 90000, &c) && (bt_rec(&c.c)->flags & EXT_PARTIAL) && c.x.lblk == 86016);
	for (uint64_t at = 0; at < N; at++) {
		struct dio_extent x;
		ck_assert(em_get(&m, at, &x) && x.lblk <= at && at < x.lblk + x.len);
		ck_assert(x.flags == b[at].flags && x.pblk + (at - x.lblk) == b[at].pblk);
	}
	em_free(&m);
}
END_TEST

/* However much is preallocated, unwritten records stop at 16 Mi blocks
   (the most a bitmap covers), so a write anywhere in it marks a bitmap:
   the map stays two records. */
START_TEST(test_a_huge_preallocation_stays_small_under_writes)
{
	struct dio_emap m = { 0 };
	uint64_t n = (1u << 24) + 1000;
	ck_assert_int_eq(em_insert(&m, 0, 100, n, EXT_UNWRITTEN), 0);
	ck_assert_uint_eq(m.t.n, 2);
	struct dio_extent x;
	ck_assert(em_get(&m, n - 1, &x) && x.lblk == 1u << 24 && x.len == 1000 && x.pblk == 100 + (1u << 24));
	t_seed(41);
	for (int i = 0; i < 2000; i++) {
		uint64_t at = 1 + t_rand() % (n - 2);
		struct em_cur c;
		ck_assert(em_find(&m, at, &c));
		if (c.x.flags == EXT_UNWRITTEN && at > bt_rec(&c.c)->lblk &&
		    at + 1 < bt_rec(&c.c)->lblk + bt_rec(&c.c)->len)
			ck_assert_int_eq(em_restate(&m, &c, at, 1, 0), 0);
	}
	ck_assert_uint_eq(m.t.n, 2);
	ck_assert_uint_gt(em_count(&m), 3000);
	ck_assert(em_written(&m, 0) == false);
	em_free(&m);
}
END_TEST

/* The map's extents in order, as a checkpoint stores them, loaded into
   a new map. */
static void load_copy(const struct dio_emap *from, struct dio_emap *to)
{
	struct em_loader L = { .m = to };
	struct em_cur c;
	for (bool ok = em_first(from, &c); ok; ok = em_next(from, &c))
		ck_assert_int_eq(em_load_add(&L, em_rec(&c)), 0);
	ck_assert_int_eq(em_load_end(&L), 0);
}

/*
 * A checkpoint stores a partial record as its runs; loaded in order they
 * come together again as one partial record (and conversions go on in
 * its bitmap), not one record per run.  Extents marked bad, or not
 * contiguous on the device, stay records of their own; runs too short to
 * be partial go in one record each.
 */
START_TEST(test_a_map_loaded_in_order_puts_its_runs_back_together)
{
	static struct blk b[NBIG];
	struct dio_emap a = { 0 }, l = { 0 };
	map_unwritten(&a, b, NBIG, 5000);
	t_seed(31);
	for (int op = 0; op < 30000; op++)
		convert(&a, b, 1 + t_rand() % (NBIG - 2), 1 + t_rand() % 4, 0);
	ck_assert_uint_eq(a.t.n, 1);
	load_copy(&a, &l);
	check_big(&l, b);
	ck_assert_uint_eq(l.t.n, 1);
	ck_assert_uint_eq(em_count(&l), em_count(&a));
	static struct blk b2[NBIG];
	memcpy(b2, b, sizeof(b));
	for (int op = 0; op < 5000; op++) {   /* the loaded bitmap takes conversions */
		uint64_t at = t_rand() % NBIG;
		convert(&l, b, at, 1, 0);
		convert(&a, b2, at, 1, 0);
	}
	check_big(&l, b);
	check_big(&a, b2);
	ck_assert_uint_eq(l.t.n, 1);
	em_free(&l);

	/* bad blocks in it: records of their own, the rest joined between */
	for (int k = 0; k < 20; k++)
		convert(&a, b, 1000 + (uint64_t)k * 6000, 1, EXT_BAD | (b[1000 + k * 6000].flags & EXT_UNWRITTEN));
	memset(&l, 0, sizeof(l));
	load_copy(&a, &l);
	check_big(&l, b);
	ck_assert_uint_le(l.t.n, 41);
	em_free(&l);
	em_free(&a);

	/* short alternating runs, and a gap on the device */
	memset(&a, 0, sizeof(a));
	memset(&l, 0, sizeof(l));
	struct em_loader L = { .m = &l };
	for (uint64_t i = 0; i < 10; i++) {
		struct dio_extent x = { i, 100 + i, 1, i % 2 ? 0 : EXT_UNWRITTEN };
		ck_assert_int_eq(em_load_add(&L, &x), 0);
	}
	struct dio_extent far = { 10, 900, 200, EXT_UNWRITTEN };
	ck_assert_int_eq(em_load_add(&L, &far), 0);
	ck_assert_int_eq(em_load_end(&L), 0);
	ck_assert_uint_eq(l.t.n, 11);
	ck_assert_uint_eq(em_count(&l), 11);
	ck_assert_uint_eq(em_blocks(&l), 210);
	struct dio_extent x;
	ck_assert(em_get(&l, 3, &x) && x.lblk == 3 && x.len == 1 && x.pblk == 103 && x.flags == 0);
	ck_assert(em_get(&l, 50, &x) && x.lblk == 10 && x.pblk == 900 && x.flags == EXT_UNWRITTEN);
	em_free(&l);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("partial");
	TCase *tc = tcase_create("partial");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_a_partial_record_reads_as_the_extents_it_stands_for);
	tcase_add_test(tc, test_a_partial_record_written_in_full_is_one_extent_again);
	tcase_add_test(tc, test_runs_are_found_across_long_uniform_stretches);
	tcase_add_test(tc, test_a_huge_preallocation_stays_small_under_writes);
	tcase_add_test(tc, test_a_map_loaded_in_order_puts_its_runs_back_together);
	suite_add_tcase(s, tc);
	return t_run(s);
}
