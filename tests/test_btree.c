/*
 * The in-core B+tree (lib/btree.c) and the extent maps on it
 * (lib/extent.c), against reference models: random insertions and
 * deletions in the three orders, deep enough to split and merge at
 * several levels and to grow and shrink the root; in-order walks both
 * ways, seeks, keys grown in place; extent maps checked block by block
 * after random maps, unmaps and merges, and after a deep map's random
 * conversions in place.
 */
#include "emap_model.h"

/* ---- the tree against a sorted array of keys --------------------------------- */

static int kind_cmp(int kind, const struct dio_extent *a, const struct dio_extent *b)
{
	uint64_t x1 = kind == BT_PBLK ? a->pblk : kind == BT_SIZE ? a->len : a->lblk;
	uint64_t x2 = kind == BT_PBLK ? b->pblk : kind == BT_SIZE ? b->len : b->lblk;
	uint64_t y1 = kind == BT_SIZE ? a->pblk : 0, y2 = kind == BT_SIZE ? b->pblk : 0;
	if (x1 != x2)
		return x1 < x2 ? -1 : 1;
	return y1 < y2 ? -1 : y1 > y2;
}

static int g_kind;
static int qcmp(const void *a, const void *b) { return kind_cmp(g_kind, a, b); }

struct model {
	struct dio_extent *v;
	size_t n;
};

static void check_tree(const struct dio_btree *t, struct model *m, int kind)
{
	g_kind = kind;
	qsort(m->v, m->n, sizeof(m->v[0]), qcmp);
	T_CHECK((t->n) == (m->n));
	struct bt_cur c;
	size_t i = 0;
	for (bool ok = bt_first(t, &c); ok; ok = bt_next(&c), i++) {
		T_CHECK((i) < (m->n));
		T_CHECK(kind_cmp(kind, bt_rec(&c), &m->v[i]) == 0);
		T_CHECK((bt_rec(&c)->flags) == (m->v[i].flags));
	}
	T_CHECK((i) == (m->n));
	for (bool ok = bt_last(t, &c); ok; ok = bt_prev(&c))
		T_CHECK(kind_cmp(kind, bt_rec(&c), &m->v[--i]) == 0);
	T_CHECK((i) == (0));
	/* seeks: the first record not below a random key */
	for (int k = 0; k < 50 && m->n; k++) {
		struct dio_extent key = m->v[t_rand() % m->n];
		key.lblk += t_rand() % 3;
		key.pblk += t_rand() % 3;
		size_t want = 0;
		while (want < m->n && kind_cmp(kind, &m->v[want], &key) < 0)
			want++;
		bool ok = bt_seek_ge(t, &key, &c);
		T_CHECK((ok) == (want < m->n));
		if (ok)
			T_CHECK(kind_cmp(kind, bt_rec(&c), &m->v[want]) == 0);
	}
}

static void tree_round(int kind, size_t target, uint64_t seed)
{
	struct dio_btree t;
	struct model m = { calloc(target * 2 + 16, sizeof(struct dio_extent)), 0 };
	/* every record's lblk and pblk are one number k, unique: so are the
	   keys of all three orders */
	size_t kmax = 16 * target + 1024;
	bool *used = calloc(kmax, 1);
	bt_init(&t, (uint8_t)kind);
	t_seed(seed);
	/* grow to target (a third of the time appending at the right edge),
	   shrink to a tenth, grow again, empty */
	size_t phases[4] = { target, target / 10, target, 0 };
	uint64_t next = 1;
	for (int ph = 0; ph < 4; ph++) {
		while (m.n != phases[ph]) {
			if (m.n < phases[ph]) {
				struct dio_extent x = { 0, 0, 0, 0 };
				uint64_t k = t_rand() % 3 == 0 ? (next += 1 + t_rand() % 4) : t_rand() % (4 * target + 64);
				if (k >= kmax || used[k])
					continue;
				x.lblk = x.pblk = k;
				x.len = (uint32_t)(1 + t_rand() % 64);
				x.flags = (uint32_t)(t_rand() % 4);
				used[k] = true;
				T_CHECK(bt_insert(&t, &x) == 0);
				m.v[m.n++] = x;
			} else {
				size_t i = t_rand() % m.n;
				T_CHECK(bt_delete(&t, &m.v[i]) == 0);
				T_CHECK(bt_delete(&t, &m.v[i]) == -ENOENT);
				used[m.v[i].lblk] = false;
				m.v[i] = m.v[--m.n];
			}
			if (m.n % 4999 == 0)
				check_tree(&t, &m, kind);
		}
		check_tree(&t, &m, kind);
		if (ph == 0 && target >= 100000)
			T_CHECK(t.height >= 4, "height %u", t.height);
		if (ph == 1) {
			/* leaves left near empty by the deletions were merged */
			struct bt_cur c;
			size_t leaves = 0;
			bt_first(&t, &c);
			for (struct bt_leaf *l = c.leaf; l; l = l->next)
				leaves++;
			T_CHECK(leaves <= m.n / 4 + 2, "%zu leaves for %zu records", leaves, m.n);
		}
	}
	ck_assert_ptr_null(t.root);
	T_CHECK((t.height) == (0));
	bt_destroy(&t);
	free(m.v);
	free(used);
}

START_TEST(test_tree_matches_a_sorted_array_in_every_order)
{
	for (int kind = BT_LBLK; kind <= BT_SIZE; kind++) {
		tree_round(kind, 10, 1 + (uint64_t)kind);
		tree_round(kind, 3000, 11 + (uint64_t)kind);
		tree_round(kind, 100000, 21 + (uint64_t)kind);   /* four levels */
	}
}
END_TEST

START_TEST(test_appending_in_order_fills_leaves)
{
	struct dio_btree t;
	bt_init(&t, BT_LBLK);
	size_t n = 1000000;
	for (size_t i = 0; i < n; i++) {
		struct dio_extent x = { 2 * i, 3 * i, 1, 0 };
		T_CHECK(bt_insert(&t, &x) == 0);
	}
	ck_assert_uint_eq(t.n, n);
	ck_assert_uint_le(t.height, 5);
	size_t leaves = 0;
	struct bt_cur c;
	bt_first(&t, &c);
	for (struct bt_leaf *l = c.leaf; l; l = l->next)
		leaves++;
	/* every leaf but the last full: the memory target of a loaded map */
	ck_assert_uint_eq(leaves, DIV_UP(n, BT_LEAF_MAX));
	struct dio_extent key = { 2 * 777777 + 1, 0, 0, 0 };
	ck_assert(bt_seek_ge(&t, &key, &c));
	ck_assert_uint_eq(bt_rec(&c)->lblk, 2 * 777778);
	bt_destroy(&t);
}
END_TEST

START_TEST(test_fields_other_than_the_key_change_in_place)
{
	struct dio_btree t;
	bt_init(&t, BT_LBLK);
	for (uint64_t i = 0; i < 5000; i++) {
		struct dio_extent x = { i * 10, i, 5, 0 };
		T_CHECK(bt_insert(&t, &x) == 0);
	}
	/* delete the first record of every other leaf, leaving its key in
	   the parent lower than the leaf's new first record */
	for (uint64_t i = 0; i < 5000; i += 64) {
		struct dio_extent key = { i * 10, 0, 0, 0 };
		T_CHECK(bt_delete(&t, &key) == 0);
	}
	struct bt_cur c;
	for (bool ok = bt_first(&t, &c); ok; ok = bt_next(&c)) {
		bt_rec(&c)->len = 9;
		bt_rec(&c)->pblk += 1000;
		bt_rec(&c)->flags = EXT_UNWRITTEN;
	}
	for (uint64_t i = 0; i < 5000; i++) {
		struct dio_extent key = { i * 10, 0, 0, 0 };
		bool ok = bt_seek_ge(&t, &key, &c);
		if (i % 64 == 0) {
			T_CHECK(ok && bt_rec(&c)->lblk == i * 10 + 10);
			continue;
		}
		T_CHECK(ok && bt_rec(&c)->lblk == i * 10 && bt_rec(&c)->pblk == i + 1000 && bt_rec(&c)->len == 9);
	}
	bt_destroy(&t);
}
END_TEST

/* ---- extent maps against a block array ---------------------------------------- */


START_TEST(test_extent_map_matches_a_block_array)
{
	static struct blk b[NB];
	memset(b, 0, sizeof(b));
	struct dio_emap m = { 0 };
	t_seed(99);
	for (int op = 0; op < 60000; op++) {
		uint64_t l = t_rand() % NB, n = 1 + t_rand() % (t_rand() % 4 ? 8 : 200);
		if (l + n > NB)
			n = NB - l;
		bool contiguous = b[l].mapped;
		for (uint64_t i = l + 1; i < l + n && contiguous; i++)
			contiguous = b[i].mapped && b[i].pblk == b[l].pblk + (i - l);
		if (contiguous && t_rand() % 2) {
			/* the same blocks in another state: em_set's in-place path
			   when one extent holds them, else remove and insert */
			uint32_t fl = (uint32_t)(t_rand() % 4);
			bool had = false, want = false;
			for (uint64_t i = l; i < l + n; i++)
				want |= !(b[i].flags & EXT_UNWRITTEN);
			T_CHECK(em_set(&m, l, b[l].pblk, n, fl, &had) == 0);
			T_CHECK(had == want);
			for (uint64_t i = l; i < l + n; i++)
				b[i].flags = fl;
		} else if (t_rand() % 2) {
			uint64_t before = 0;
			for (uint64_t i = l; i < l + n; i++)
				before += b[i].mapped;
			removed_blocks = 0;
			T_CHECK(em_remove(&m, l, n, count_removed, NULL) == 0);
			T_CHECK((removed_blocks) == (before));
			for (uint64_t i = l; i < l + n; i++)
				b[i].mapped = false;
		} else {
			/* map onto device blocks that continue the left neighbour's
			   half the time, so merges happen */
			uint64_t p = (l > 0 && b[l - 1].mapped && t_rand() % 2) ? b[l - 1].pblk + 1 : 100000 + t_rand() % 100000;
			uint32_t fl = (uint32_t)(t_rand() % 2);
			T_CHECK(em_remove(&m, l, n, NULL, NULL) == 0);
			T_CHECK(em_insert(&m, l, p, n, fl) == 0);
			for (uint64_t i = 0; i < n; i++)
				b[l + i] = (struct blk){ p + i, fl, true };
		}
		if (op % 500 == 0 || getenv("EVERY"))
			check_map(&m, b);
	}
	check_map(&m, b);
	em_free(&m);
}
END_TEST

/*
 * The pattern of random writes into preallocated space, at the scale
 * where the tree is several levels deep: one unwritten extent, single
 * blocks and short runs of it converted in random order the way a
 * write's completion does (em_find, then em_restate at that cursor), a
 * few turned back or marked bad.  Conversions change records where they
 * stand (bt_insert_after, bt_delete_at, keys moved in place inside a
 * leaf), so after them every record must still be found from the root:
 * a key moved past its parent's bound would send the lookup to the wrong
 * leaf.  Checked against a block array.
 */

/* NBIG blocks as unwritten records of SHORT blocks, not contiguous on
   the device: too short to become partial, so conversions change
   records. */
#define SHORT 32u
static void map_short_records(struct dio_emap *m, struct blk *b)
{
	for (uint64_t r = 0; r < NBIG / SHORT; r++)
		ck_assert_int_eq(em_insert(m, r * SHORT, 5000 + r * (SHORT + 1), SHORT, EXT_UNWRITTEN), 0);
	for (uint64_t i = 0; b && i < NBIG; i++)
		b[i] = (struct blk){ 5000 + i + i / SHORT, EXT_UNWRITTEN, true };
}

START_TEST(test_conversions_in_place_keep_every_record_reachable)
{
	static struct blk b[NBIG];
	struct dio_emap m = { 0 };
	map_short_records(&m, b);
	t_seed(7);
	size_t most = 0;
	for (int op = 0; op < 200000; op++) {
		uint64_t l = t_rand() % NBIG, n = t_rand() % 8 ? 1 : 1 + t_rand() % 6;
		uint32_t fl = t_rand() % 16 ? 0 : t_rand() % 2 ? EXT_UNWRITTEN : EXT_BAD;
		if (l + n > NBIG)
			n = NBIG - l;
		/* within one extent, as a conversion always is */
		struct em_cur c;
		ck_assert(em_find(&m, l, &c));
		const struct dio_extent *x = em_rec(&c);
		n = MIN(n, x->lblk + x->len - l);
		ck_assert_int_eq(em_restate(&m, &c, l, n, fl), 0);
		for (uint64_t i = l; i < l + n; i++)
			b[i].flags = fl;
		most = MAX(most, em_count(&m));
		if (op % 20000 == 0 || getenv("EVERY"))
			check_big(&m, b);
	}
	check_big(&m, b);
	ck_assert_uint_ge(m.t.height, 3);   /* deep enough for leaf edges inside inner nodes */
	ck_assert_uint_gt(most, 20000);
	em_free(&m);
}
END_TEST

/*
 * A write's completion converts what its submission mapped, looking first
 * in the leaf where that search ended (em_find_near).  Between the two,
 * other conversions split that leaf and move its records, and punches
 * delete records and free leaves.  Hints kept over many such changes must
 * give what a search from the root gives, and a hint whose leaf may have
 * been freed must not be looked into (under AddressSanitizer a read of a
 * freed leaf fails the test).
 */
START_TEST(test_a_kept_leaf_finds_what_a_search_from_the_root_finds)
{
	struct dio_emap m = { 0 };
	map_short_records(&m, NULL);
	struct kept {
		struct em_hint h;
		uint64_t lblk;
	} kept[64] = { 0 };
	t_seed(11);
	uint64_t seen = 0, leaf_used = 0, frees0 = m.t.frees;
	for (int op = 0; op < 150000; op++) {
		uint64_t l = t_rand() % NBIG;
		struct em_cur c;
		if (t_rand() % 64 == 0) {
			/* punch a short range (records deleted, leaves freed as
			   they empty) and map it again, unwritten */
			uint64_t n = 1 + t_rand() % 300;
			n = MIN(n, NBIG - l);
			ck_assert_int_eq(em_remove(&m, l, n, NULL, NULL), 0);
			ck_assert_int_eq(em_insert(&m, l, 900000 + l, n, EXT_UNWRITTEN), 0);
		} else {
			ck_assert(em_find(&m, l, &c));
			em_hint_at(&m, &c, &kept[t_rand() % 64].h);
			kept[op % 64].lblk = l;
			const struct dio_extent *x = em_rec(&c);
			uint64_t n = 1 + t_rand() % 3;
			n = MIN(n, x->lblk + x->len - l);
			ck_assert_int_eq(em_restate(&m, &c, l, n, t_rand() % 16 ? 0 : EXT_UNWRITTEN), 0);
		}
		/* a kept hint against a search from the root, at a block
		   near where it was taken and at a random one */
		struct kept *k = &kept[t_rand() % 64];
		uint64_t at[2] = { (k->lblk + t_rand() % 5) % NBIG, t_rand() % NBIG };
		for (int j = 0; j < 2; j++) {
			struct em_cur near, full;
			bool a = em_find_near(&m, at[j], &k->h, &near), b = em_find(&m, at[j], &full);
			ck_assert(a == b);
			if (a)
				ck_assert(same_extent(&near, &full));
			struct dio_extent key = { .lblk = at[j] };
			leaf_used += bt_seek_in_leaf(&m.t, k->h.leaf, k->h.frees, &key, &near.c);
			seen++;
		}
	}
	ck_assert_uint_ge(m.t.height, 3);
	ck_assert_uint_gt(m.t.frees, frees0);        /* leaves were freed on the way */
	ck_assert_uint_gt(leaf_used, seen / 4);      /* and most hints stayed usable */
	struct em_hint last;
	struct em_cur c;
	ck_assert(em_find(&m, 7, &c));
	em_hint_at(&m, &c, &last);
	em_free(&m);                                 /* every leaf gone */
	struct dio_extent key = { .lblk = 7 };
	ck_assert(!bt_seek_in_leaf(&m.t, last.leaf, last.frees, &key, &c.c));
}
END_TEST

/* ---- free space against a bitmap ------------------------------------------------ */

/* Both trees hold the same ranges, disjoint, not touching (they merge),
   matching the bitmap; free_blocks counts them. */
static void check_free(struct dio_alloc *a, const uint8_t *freeb, uint64_t first, uint64_t end)
{
	struct bt_cur c;
	uint64_t prev_end = 0, total = 0;
	bool have_prev = false;
	for (bool ok = bt_first(&a->by_blk, &c); ok; ok = bt_next(&c)) {
		const struct dio_extent *x = bt_rec(&c);
		T_CHECK(x->len > 0 && x->pblk >= first && x->pblk + x->len <= end);
		T_CHECK(!have_prev || x->pblk > prev_end, "ranges touch or overlap at %llu", (unsigned long long)x->pblk);
		struct dio_extent key = *x;
		struct bt_cur s;
		T_CHECK(bt_seek_ge(&a->by_size, &key, &s) && bt_rec(&s)->pblk == x->pblk && bt_rec(&s)->len == x->len);
		for (uint64_t b = x->pblk; b < x->pblk + x->len; b++)
			T_CHECK(freeb[b], "block %llu listed free", (unsigned long long)b);
		total += x->len;
		prev_end = x->pblk + x->len;
		have_prev = true;
	}
	uint64_t want = 0;
	for (uint64_t b = first; b < end; b++)
		want += freeb[b];
	T_CHECK(total == want && a->free_blocks == want && a->by_size.n == a->by_blk.n,
		"free %llu, bitmap %llu, counted %llu", (unsigned long long)total, (unsigned long long)want,
		(unsigned long long)a->free_blocks);
}

START_TEST(test_free_space_matches_a_bitmap)
{
	enum { FIRST = 100, END = 20100 };
	static uint8_t freeb[END];
	struct dio_alloc a;
	alloc_init(&a, FIRST, END);
	/* start fragmented: every third block in use */
	memset(freeb, 0, sizeof(freeb));
	for (uint64_t b = FIRST; b < END; b++) {
		if (b % 3 == 0)
			ck_assert_int_eq(alloc_mark_used(&a, b, 1, 7), 0);
		else
			freeb[b] = 1;
	}
	uint64_t o1, o2, pb;
	ck_assert_int_eq(alloc_check_overlap(&a, &o1, &o2, &pb), 0);
	alloc_finish_build(&a);
	check_free(&a, freeb, FIRST, END);
	t_seed(5);
	struct { uint64_t p, n; } held[4000];
	int nh = 0;
	for (int op = 0; op < 40000; op++) {
		if (nh < 4000 && (t_rand() % 2 || !nh) && a.free_blocks) {
			uint64_t goal = FIRST + t_rand() % (END - FIRST), want = 1 + t_rand() % 8, p, got;
			T_CHECK(alloc_take(&a, goal, want, &p, &got) == 0);
			T_CHECK(got >= 1 && got <= want);
			for (uint64_t b = p; b < p + got; b++) {
				T_CHECK(freeb[b], "block %llu handed out twice", (unsigned long long)b);
				freeb[b] = 0;
			}
			/* the goal is honoured where it is free */
			held[nh].p = p;
			held[nh++].n = got;
		} else if (nh) {
			int i = (int)(t_rand() % (uint64_t)nh);
			alloc_give(&a, held[i].p, held[i].n);
			for (uint64_t b = held[i].p; b < held[i].p + held[i].n; b++)
				freeb[b] = 1;
			held[i] = held[--nh];
		}
		if (op % 2000 == 0)
			check_free(&a, freeb, FIRST, END);
	}
	check_free(&a, freeb, FIRST, END);
	/* everything back: the free space it started with, merged as before */
	uint64_t initial = 0;
	for (uint64_t b = FIRST; b < END; b++)
		initial += b % 3 != 0;
	while (nh) {
		nh--;
		alloc_give(&a, held[nh].p, held[nh].n);
		for (uint64_t b = held[nh].p; b < held[nh].p + held[nh].n; b++)
			freeb[b] = 1;
	}
	check_free(&a, freeb, FIRST, END);
	ck_assert_uint_eq(a.free_blocks, initial);
	alloc_destroy(&a);
}
END_TEST

START_TEST(test_a_take_at_a_free_goal_starts_there)
{
	struct dio_alloc a;
	alloc_init(&a, 10, 1010);
	alloc_finish_build(&a);   /* all free: one range */
	uint64_t p, got;
	ck_assert_int_eq(alloc_take(&a, 500, 4, &p, &got), 0);
	ck_assert_uint_eq(p, 500);
	ck_assert_uint_eq(got, 4);
	ck_assert_uint_eq(a.by_blk.n, 2);   /* split around it */
	ck_assert_int_eq(alloc_take(&a, 504, 1000, &p, &got), 0);
	ck_assert_uint_eq(p, 504);
	ck_assert_uint_eq(got, 1010 - 504);
	ck_assert_int_eq(alloc_take(&a, 1005, 1, &p, &got), 0);   /* nothing after the goal: wraps */
	ck_assert_uint_eq(p, 10);
	alloc_give(&a, 500, 4);
	alloc_give(&a, 504, 1010 - 504);
	alloc_give(&a, 10, 1);
	ck_assert_uint_eq(a.by_blk.n, 1);   /* merged back into one */
	ck_assert_uint_eq(a.free_blocks, 1000);
	alloc_destroy(&a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("btree");
	TCase *tc = tcase_create("btree");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_tree_matches_a_sorted_array_in_every_order);
	tcase_add_test(tc, test_appending_in_order_fills_leaves);
	tcase_add_test(tc, test_fields_other_than_the_key_change_in_place);
	tcase_add_test(tc, test_extent_map_matches_a_block_array);
	tcase_add_test(tc, test_conversions_in_place_keep_every_record_reachable);
	tcase_add_test(tc, test_a_kept_leaf_finds_what_a_search_from_the_root_finds);
	tcase_add_test(tc, test_free_space_matches_a_bitmap);
	tcase_add_test(tc, test_a_take_at_a_free_goal_starts_there);
	suite_add_tcase(s, tc);
	return t_run(s);
}
