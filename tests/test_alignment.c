/*
 * Which requests move with no copy, and what DIO_O_STRICT refuses.
 *
 * Every request whose buffers are mem_align-aligned and whose offset and
 * lengths are offset_align-aligned is zero copy, even when it covers only
 * part of a block that is a hole or unwritten (the rest of the block is
 * written as zeros beside it); everything else is bounced, or refused
 * with EINVAL by a DIO_O_STRICT handle, changing nothing.  The volumes
 * here have 16 KiB blocks, so that offset_align (512 or 4096) is always
 * smaller than a block.
 */
#include "helpers.h"
#include <pthread.h>

#define BS 16384u

static struct dio_vol *vol16(const char *tag)
{
	const char *p = t_image_path(tag);
	unlink(p);
	struct dio_mkfs_opts o = { .size = 64u << 20, .block_size = BS };
	ck_assert_int_eq(dio_mkfs(p, &o), 0);
	free(t_img);
	t_img = strdup(p);
	struct dio_vol *v = t_mount(p);
	ck_assert_ptr_nonnull(v);
	return v;
}

/* Leave free space that held other bytes (0xee), as a volume in use has:
   preallocation takes such blocks, and must never show their bytes. */
static void dirty_free_space(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "stale", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(1 << 20);
	memset(b, 0xee, 1 << 20);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(dio_pwrite(f, b, 1 << 20, (off_t)i << 20), 1 << 20);
	ck_assert_int_eq(dio_fsync(f), 0);
	dio_close(f);
	ck_assert_int_eq(dio_unlink(v, "stale"), 0);
	ck_assert_int_eq(dio_syncfs(v), 0);   /* the freed blocks are reusable now */
	free(b);
}

static uint32_t unit_of(struct dio_file *f)
{
	struct dio_info i;
	ck_assert_int_eq(dio_info(f, &i), 0);
	ck_assert_uint_eq(i.block_size, BS);
	ck_assert_uint_lt(i.offset_align, BS);
	return i.offset_align;
}

/* The block at off reads as `pat` over [s, e) (relative) and zero elsewhere. */
static void check_block(struct dio_file *f, uint64_t off, uint32_t s, uint32_t e, uint8_t pat)
{
	uint8_t *r = t_aligned(BS);
	ck_assert_int_eq(dio_pread(f, r, BS, (off_t)off), BS);
	for (uint32_t i = 0; i < BS; i++)
		T_CHECK(r[i] == ((i >= s && i < e) ? pat : 0), "byte %u of the block at %llu: %02x", i,
			(unsigned long long)off, r[i]);
	free(r);
}

START_TEST(test_sub_block_aligned_write_into_a_hole_is_zero_copy)
{
	struct dio_vol *v = vol16("align-hole");
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT | DIO_O_STRICT);
	uint32_t u = unit_of(f);
	uint8_t *b = t_aligned(u);
	memset(b, 0x5a, u);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	/* past EOF, in the middle of block 1: strict takes it, no bounce */
	ck_assert_int_eq(dio_pwrite(f, b, u, BS + 2 * u), u);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	ck_assert_uint_eq(c1.rmw_blocks, c0.rmw_blocks);
	ck_assert_uint_eq(c1.writes, c0.writes + 1);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.size, BS + 3 * u);
	ck_assert_uint_eq(st.allocated, BS);   /* block 1 only: block 0 stays a hole */
	ck_assert_int_eq(dio_fsync(f), 0);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = t_mount(t_img);
	f = dio_open(v, "f", O_RDONLY);
	/* read up to the size: the rest of block 1 past EOF is not readable */
	uint8_t *r = t_aligned(BS * 2);
	ck_assert_int_eq(dio_pread(f, r, BS * 2, 0), BS + 3 * u);
	for (uint32_t i = 0; i < BS + 3 * u; i++)
		T_CHECK(r[i] == ((i >= BS + 2 * u) ? 0x5a : 0));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
}
END_TEST

START_TEST(test_sub_block_aligned_write_into_unwritten_blocks_is_zero_copy)
{
	struct dio_vol *v = vol16("align-unwritten");
	dirty_free_space(v);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT | DIO_O_STRICT);
	uint32_t u = unit_of(f);
	ck_assert_int_eq(dio_fallocate(f, 0, 0, 4 * BS), 0);
	uint8_t *b = t_aligned(BS);
	memset(b, 0x66, BS);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	/* a unit at the start of block 0, one at the end of block 1, and one
	   that straddles blocks 2 and 3 */
	ck_assert_int_eq(dio_pwrite(f, b, u, 0), u);
	ck_assert_int_eq(dio_pwrite(f, b, u, 2 * BS - u), u);
	ck_assert_int_eq(dio_pwrite(f, b, 2 * u, 3 * BS - u), 2 * u);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	ck_assert_uint_eq(c1.rmw_blocks, c0.rmw_blocks);
	check_block(f, 0, 0, u, 0x66);
	check_block(f, BS, BS - u, BS, 0x66);
	check_block(f, 2 * BS, BS - u, BS, 0x66);
	check_block(f, 3 * BS, 0, u, 0x66);
	ck_assert_int_eq(dio_fdatasync(f), 0);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = t_mount(t_img);
	f = dio_open(v, "f", O_RDONLY);
	check_block(f, 0, 0, u, 0x66);
	check_block(f, 3 * BS, 0, u, 0x66);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
}
END_TEST

START_TEST(test_units_written_in_any_order_fill_a_block_without_a_copy)
{
	struct dio_vol *v = vol16("align-fill");
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT | DIO_O_STRICT);
	uint32_t u = unit_of(f), n = BS / u;
	uint8_t *b = t_aligned(BS), *want = t_aligned(BS);
	t_fill(want, BS, 3, 1, 0);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	/* every unit once, in a scrambled order: the first finds a hole, the
	   later ones a written block that keeps the earlier units' bytes */
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (k * 7 + 3) % n;   /* n is a power of two: 7 is odd, a permutation */
		memcpy(b, want + i * u, u);
		ck_assert_int_eq(dio_pwrite(f, b, u, (off_t)i * u), u);
	}
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	ck_assert_uint_eq(c1.rmw_blocks, c0.rmw_blocks);
	ck_assert_int_eq(dio_pread(f, b, BS, 0), BS);
	ck_assert(!memcmp(b, want, BS));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(want);
}
END_TEST

START_TEST(test_strict_refuses_what_is_not_aligned_and_changes_nothing)
{
	struct dio_vol *v = vol16("align-strict");
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT | DIO_O_STRICT);
	uint32_t u = unit_of(f);
	struct dio_info info;
	dio_info(f, &info);
	ck_assert_uint_eq(info.flags & DIO_INFO_FALLBACK, 0);
	uint8_t *b = t_aligned(2 * BS);
	memset(b, 1, 2 * BS);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	/* offset, length and buffer misaligned in turn, into a hole and past EOF */
	ck_assert_int_eq(dio_pwrite(f, b, u, u / 2), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_pwrite(f, b, u + 1, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	if (info.mem_align > 1) {
		ck_assert_int_eq(dio_pwrite(f, b + 1, u, 0), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	struct iovec iov[2] = { { b, u }, { b + u, u / 2 } };
	ck_assert_int_eq(dio_pwritev(f, iov, 2, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_pread(f, b, u, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.writes, c0.writes);
	ck_assert_uint_eq(c1.device_ios, c0.device_ios);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.size, 0);
	ck_assert_uint_eq(st.allocated, 0);
	/* the same misaligned write through a plain handle is served, bounced */
	struct dio_file *g = dio_open(v, "f", O_RDWR);
	ck_assert_int_eq(dio_pwrite(g, b, u + 1, 3), u + 1);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.bounced, c0.bounced + 1);
	dio_close(g);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
}
END_TEST

/* Two threads fill the units of fresh blocks at once, through their
   own handles: neither loses the other's bytes. */
struct racer {
	struct dio_file *f;
	uint32_t u, first, rounds;
};

static void *race_units(void *arg)
{
	struct racer *r = arg;
	uint8_t *b = t_aligned(r->u);
	for (uint32_t k = 0; k < r->rounds; k++) {
		uint64_t off = (uint64_t)k * BS + (uint64_t)r->first * r->u;
		memset(b, (int)(r->first + 1), r->u);
		if (dio_pwrite(r->f, b, r->u, (off_t)off) != (ssize_t)r->u)
			abort();
	}
	free(b);
	return NULL;
}

START_TEST(test_units_of_one_new_block_written_at_once_keep_each_others_bytes)
{
	struct dio_vol *v = vol16("align-race");
	int flags[2] = { O_RDWR | O_CREAT, O_RDWR | O_CREAT | DIO_O_CONCURRENT };
	for (int m = 0; m < 2; m++) {
		char name[8];
		snprintf(name, sizeof(name), "f%d", m);
		struct dio_file *f[2] = { dio_open(v, name, flags[m]), dio_open(v, name, flags[m]) };
		uint32_t u = unit_of(f[0]);
		struct racer r[2] = { { f[0], u, 0, 200 }, { f[1], u, 1, 200 } };
		pthread_t th[2];
		for (int i = 0; i < 2; i++)
			pthread_create(&th[i], NULL, race_units, &r[i]);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		uint8_t *got = t_aligned(BS);
		for (uint32_t k = 0; k < 200; k++) {
			ck_assert_int_eq(dio_pread(f[0], got, BS, (off_t)k * BS), k < 199 ? BS : 2 * u);
			for (uint32_t i = 0; i < (k < 199 ? BS : 2 * u); i++)
				T_CHECK(got[i] == (i < u ? 1 : i < 2 * u ? 2 : 0), "mode %d block %u byte %u: %02x",
					m, k, i, got[i]);
		}
		free(got);
		dio_close(f[0]);
		dio_close(f[1]);
	}
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/*
 * The same through a queue, where such writes go down asynchronously as
 * the same request (zeros beside the data in one batch, converted when
 * the last I/O is back): into a hole past EOF, into unwritten blocks over
 * stale free space, and units of one block in one batch (the second
 * waits for the first's range), beside a block of old data that keeps it.
 */
START_TEST(test_queued_sub_block_writes_keep_zeros_beside_and_each_others_bytes)
{
	struct dio_vol *v = vol16("align-queued");
	dirty_free_space(v);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT | DIO_O_STRICT);
	uint32_t u = unit_of(f);
	uint8_t *old = t_aligned(BS), *b = t_aligned(BS);
	memset(old, 0x11, BS);
	memset(b, 0x77, BS);
	ck_assert_int_eq(dio_pwrite(f, old, BS, 0), BS);           /* block 0: written */
	ck_assert_int_eq(dio_fallocate(f, 0, BS, 2 * BS), 0);       /* blocks 1, 2: unwritten */
	struct dio_queue *q = dio_queue_create(v, 8);
	ck_assert_ptr_nonnull(q);
	struct dio_req r[5] = {
		{ .op = DIO_OP_WRITE, .file = f, .buf = b, .len = u, .offset = u, .user_data = 0 },
		{ .op = DIO_OP_WRITE, .file = f, .buf = b, .len = u, .offset = BS + u, .user_data = 1 },
		{ .op = DIO_OP_WRITE, .file = f, .buf = b, .len = u, .offset = BS + 3 * u, .user_data = 2 },
		{ .op = DIO_OP_WRITE, .file = f, .buf = b, .len = 2 * u, .offset = 3 * BS - u, .user_data = 3 },
		{ .op = DIO_OP_WRITE, .file = f, .buf = b, .len = u, .offset = 5 * BS + 2 * u, .user_data = 4 },
	};
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	ck_assert_int_eq(dio_submit(q, r, 5), 5);
	struct dio_cqe cqe[5];
	for (int got = 0; got < 5;) {
		int n = dio_reap(q, cqe + got, 1, 5 - (unsigned)got, -1);
		ck_assert_int_gt(n, 0);
		got += n;
	}
	for (int i = 0; i < 5; i++)
		ck_assert_msg(cqe[i].res == (ssize_t)r[cqe[i].user_data].len, "request %llu: %zd",
			      (unsigned long long)cqe[i].user_data, cqe[i].res);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	ck_assert_uint_eq(c1.writes, c0.writes + 5);
	uint8_t *got = t_aligned(BS);
	ck_assert_int_eq(dio_pread(f, got, BS, 0), BS);
	for (uint32_t i = 0; i < BS; i++)
		T_CHECK(got[i] == (i >= u && i < 2 * u ? 0x77 : 0x11), "block 0 byte %u: %02x", i, got[i]);
	free(got);
	check_block(f, 2 * BS, BS - u, BS, 0x77);
	check_block(f, 3 * BS, 0, u, 0x77);
	check_block(f, 4 * BS, 0, 0, 0);
	/* block 5, past the old EOF: zeros before the unit, EOF after it */
	uint8_t *b1 = t_aligned(BS);
	ck_assert_int_eq(dio_pread(f, b1, BS, 5 * BS), 3 * u);
	for (uint32_t i = 0; i < 3 * u; i++)
		T_CHECK(b1[i] == (i >= 2 * u ? 0x77 : 0), "block 5 byte %u: %02x", i, b1[i]);
	/* block 1: two units, each with zeros around it */
	ck_assert_int_eq(dio_pread(f, b1, BS, BS), BS);
	for (uint32_t i = 0; i < BS; i++)
		T_CHECK(b1[i] == ((i >= u && i < 2 * u) || (i >= 3 * u && i < 4 * u) ? 0x77 : 0),
			"block 1 byte %u: %02x", i, b1[i]);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.size, 5 * BS + 3 * u);
	dio_queue_destroy(q);
	/* converted by the queue's completions, durable after fdatasync */
	ck_assert_int_eq(dio_fdatasync(f), 0);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = t_mount(t_img);
	f = dio_open(v, "f", O_RDONLY);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.size, 5 * BS + 3 * u);
	ck_assert_int_eq(dio_pread(f, b1, BS, BS), BS);
	for (uint32_t i = 0; i < BS; i++)
		T_CHECK(b1[i] == ((i >= u && i < 2 * u) || (i >= 3 * u && i < 4 * u) ? 0x77 : 0),
			"block 1 after remount, byte %u: %02x", i, b1[i]);
	check_block(f, 2 * BS, BS - u, BS, 0x77);
	check_block(f, 3 * BS, 0, u, 0x77);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b1);
	free(old);
	free(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("alignment");
	TCase *tc = tcase_create("alignment");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sub_block_aligned_write_into_a_hole_is_zero_copy);
	tcase_add_test(tc, test_sub_block_aligned_write_into_unwritten_blocks_is_zero_copy);
	tcase_add_test(tc, test_units_written_in_any_order_fill_a_block_without_a_copy);
	tcase_add_test(tc, test_strict_refuses_what_is_not_aligned_and_changes_nothing);
	tcase_add_test(tc, test_units_of_one_new_block_written_at_once_keep_each_others_bytes);
	tcase_add_test(tc, test_queued_sub_block_writes_keep_zeros_beside_and_each_others_bytes);
	suite_add_tcase(s, tc);
	return t_run(s);
}
