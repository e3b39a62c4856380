/*
 * Holes, preallocation and truncation: unwritten blocks read as zeros,
 * sub-block writes into unwritten blocks zero the rest of the block,
 * punch and zero range free or zero exactly their range, truncate down
 * and up never lets old bytes reappear, SEEK_DATA/SEEK_HOLE.
 */
#include "helpers.h"

static struct dio_vol *vol;
static char *img;
static struct dio_file *f;
static uint8_t *buf;

static void setup(void)
{
	vol = t_fresh("holes", 64, &img);
	f = dio_open(vol, "h", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(f);
	buf = t_aligned(1 << 20);
}

static void teardown(void)
{
	dio_close(f);
	ck_assert_int_eq(dio_umount(vol), 0);
	unlink(img);
	free(img);
	free(buf);
}

static void expect_zero(uint64_t off, size_t len)
{
	memset(buf, 0x5A, len);
	ck_assert_int_eq(dio_pread(f, buf, len, (off_t)off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			ck_abort_msg("byte %llu is %u, not zero", (unsigned long long)(off + i), buf[i]);
}

static void expect_pat(uint64_t off, size_t len, uint32_t wid)
{
	ck_assert_int_eq(dio_pread(f, buf, len, (off_t)off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != t_pat(1, wid, off + i))
			ck_abort_msg("byte %llu differs", (unsigned long long)(off + i));
}

static void put(uint64_t off, size_t len, uint32_t wid)
{
	t_fill(buf, len, 1, wid, off);
	ck_assert_int_eq(dio_pwrite(f, buf, len, (off_t)off), (ssize_t)len);
}

static uint64_t fsize(void)
{
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	return st.size;
}

START_TEST(test_hole_reads_zero)
{
	put(1 << 20, 4096, 1);
	ck_assert_uint_eq(fsize(), (1 << 20) + 4096);
	expect_zero(0, 1 << 20);
	expect_zero(12345, 777);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 4096);
}
END_TEST

START_TEST(test_unwritten_reads_zero)
{
	ck_assert_int_eq(dio_fallocate(f, 0, 0, 1 << 20), 0);
	ck_assert_uint_eq(fsize(), 1 << 20);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 1 << 20);
	expect_zero(0, 1 << 20);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, 1 << 20, 1 << 20), 0);
	ck_assert_uint_eq(fsize(), 1 << 20);
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 2 << 20);
	/* and after remount */
	dio_close(f);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	f = dio_open(vol, "h", O_RDWR);
	expect_zero(0, 1 << 20);
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 2 << 20);
}
END_TEST

START_TEST(test_subblock_write_into_unwritten_zeroes_rest_of_block)
{
	ck_assert_int_eq(dio_fallocate(f, 0, 0, 65536), 0);
	put(5000, 10, 2);
	expect_zero(4096, 904);
	expect_pat(5000, 10, 2);
	expect_zero(5010, 8192 - 5010);
	expect_zero(8192, 65536 - 8192);
	/* into a hole past EOF too */
	put(200000, 3, 3);
	expect_zero(196608, 200000 - 196608);
	ck_assert_uint_eq(fsize(), 200003);
	struct dio_counters c;
	dio_counters(vol, &c);
	ck_assert_uint_ge(c.bounced, 2);
}
END_TEST

START_TEST(test_punch_hole_frees_blocks_and_reads_zero)
{
	put(0, 65536, 4);
	struct dio_stat st;
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE, 4096, 8192), -1);
	ck_assert_int_eq(errno, EOPNOTSUPP);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 4096, 8192), 0);
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 65536 - 8192);
	ck_assert_uint_eq(st.size, 65536);
	expect_pat(0, 4096, 4);
	expect_zero(4096, 8192);
	expect_pat(12288, 65536 - 12288, 4);
	/* partial blocks: bytes zeroed, blocks kept */
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 20000, 100), 0);
	expect_pat(12288, 20000 - 12288, 4);
	expect_zero(20000, 100);
	expect_pat(20100, 65536 - 20100, 4);
	struct dio_statvfs sv0, sv1;
	dio_statvfs(vol, &sv0);
	ck_assert_int_eq(dio_fsync(f), 0);
	dio_statvfs(vol, &sv1);
	ck_assert_uint_ge(sv1.free_blocks, sv0.free_blocks);   /* freed once durable */
}
END_TEST

START_TEST(test_zero_range_zeroes_exactly_its_range)
{
	put(0, 65536, 5);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_ZERO_RANGE, 1000, 20000), 0);
	expect_pat(0, 1000, 5);
	expect_zero(1000, 20000);
	expect_pat(21000, 65536 - 21000, 5);
	ck_assert_uint_eq(fsize(), 65536);
	/* beyond EOF it grows the file unless KEEP_SIZE */
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_ZERO_RANGE, 65536, 10000), 0);
	ck_assert_uint_eq(fsize(), 75536);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE, 80000, 10000), 0);
	ck_assert_uint_eq(fsize(), 75536);
	expect_zero(65536, 10000);
	dio_close(f);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	f = dio_open(vol, "h", O_RDWR);
	expect_pat(0, 1000, 5);
	expect_zero(1000, 20000);
	expect_pat(21000, 65536 - 21000, 5);
}
END_TEST

START_TEST(test_truncate_down_then_up_shows_no_old_bytes)
{
	put(0, 3 * 4096, 6);
	ck_assert_int_eq(dio_ftruncate(f, 5000), 0);
	ck_assert_uint_eq(fsize(), 5000);
	ck_assert_int_eq(dio_pread(f, buf, 65536, 0), 5000);
	ck_assert_int_eq(dio_ftruncate(f, 3 * 4096), 0);
	expect_pat(0, 5000, 6);
	expect_zero(5000, 3 * 4096 - 5000);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 8192);
	/* a write past the old EOF inside the kept block */
	ck_assert_int_eq(dio_ftruncate(f, 100), 0);
	put(6000, 5, 7);
	expect_pat(0, 100, 6);
	expect_zero(100, 5900);
	ck_assert_int_eq(dio_ftruncate(f, 0), 0);
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 0);
	ck_assert_uint_eq(st.nextents, 0);
}
END_TEST

/* A handle caches the last written extent it mapped; every change that
   removes or rewrites a mapping, through any handle, must drop it. */
START_TEST(test_cached_extents_never_outlive_punch_zero_range_or_truncate)
{
	struct dio_file *g = dio_open(vol, "h", O_RDWR);
	ck_assert_ptr_nonnull(g);
	put(0, 1 << 20, 1);
	expect_pat(0, 4096, 1);                 /* f caches the 1 MiB extent */
	ck_assert_int_eq(dio_fallocate(g, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 8192, 8192), 0);
	expect_zero(8192, 8192);
	expect_pat(65536, 4096, 1);             /* re-cached */
	ck_assert_int_eq(dio_fallocate(g, DIO_FALLOC_ZERO_RANGE, 65536, 65536), 0);
	expect_zero(65536, 65536);
	expect_pat(262144, 4096, 1);
	/* truncate through g, then another file takes the freed blocks
	   (after a sync makes the free durable): f must not read them */
	ck_assert_int_eq(dio_ftruncate(g, 0), 0);
	ck_assert_int_eq(dio_fsync(g), 0);
	struct dio_file *o = dio_open(vol, "other", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(o);
	t_fill(buf, 1 << 20, 2, 9, 0);
	ck_assert_int_eq(dio_pwrite(o, buf, 1 << 20, 0), 1 << 20);
	ck_assert_int_eq(dio_ftruncate(g, 1 << 20), 0);
	expect_zero(262144, 4096);
	/* an aligned overwrite through f after g rewrote the file lands in
	   the file's new blocks, never in the other file's */
	put(0, 1 << 20, 3);
	ck_assert_int_eq(dio_pwrite(f, buf, 4096, 262144), 4096);
	ck_assert_int_eq(dio_pread(o, buf, 1 << 20, 0), 1 << 20);
	for (size_t i = 0; i < (1 << 20); i++)
		if (buf[i] != t_pat(2, 9, i))
			ck_abort_msg("byte %zu of the other file changed", i);
	dio_close(o);
	dio_close(g);
}
END_TEST

/* Every block of the file as the model says: the pattern of its last
   write, or zeros; and the map's extents, the runs of written and
   unwritten blocks of the one preallocated extent. */
static void expect_scattered(const uint32_t *wid, uint64_t nblk, uint64_t bs)
{
	uint64_t runs = 0;
	for (uint64_t b = 0; b < nblk; b++) {
		if (wid[b])
			expect_pat(b * bs, bs, wid[b]);
		else
			expect_zero(b * bs, bs);
		runs += !b || !wid[b] != !wid[b - 1];
	}
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.nextents, runs);
}

/*
 * Scattered block writes into the middle of one preallocated extent (in
 * core, one record with a bitmap of the written blocks): a process
 * killed after they returned keeps them all, through the journal's
 * replay, and a clean unmount writes the map's runs as extents that
 * fsck accepts and the next mount reads back the same.
 */
START_TEST(test_scattered_writes_into_preallocated_space_survive_kill_and_remount)
{
	enum { NBLK = 2048, NW = 600 };
	struct dio_info info;
	ck_assert_int_eq(dio_info(f, &info), 0);
	uint64_t bs = info.block_size;
	ck_assert_int_eq(dio_fallocate(f, 0, 0, (off_t)(NBLK * bs)), 0);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.nextents, 1);   /* one extent: the runs below are its */
	dio_close(f);
	ck_assert_int_eq(dio_umount(vol), 0);
	static uint64_t blk[NW];
	static uint32_t wid[NBLK];
	memset(wid, 0, sizeof(wid));
	t_seed(17);
	for (int i = 0; i < NW; i++) {
		blk[i] = 1 + t_rand() % (NBLK - 2);
		wid[blk[i]] = (uint32_t)i + 1;
	}
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		struct dio_vol *v = t_mount(img);
		struct dio_file *g = v ? dio_open(v, "h", O_RDWR) : NULL;
		if (!g)
			_exit(2);
		for (int i = 0; i < NW; i++) {
			t_fill(buf, bs, 1, (uint32_t)i + 1, blk[i] * bs);
			if (dio_pwrite(g, buf, bs, (off_t)(blk[i] * bs)) != (ssize_t)bs)
				_exit(3);
			if (i == NW / 2 && dio_fsync(g))
				_exit(4);
			if (write(pfd[1], &i, sizeof(i)) != sizeof(i))
				_exit(5);
		}
		pause();
		_exit(0);
	}
	close(pfd[1]);
	int last = -1, idx;
	while (last < NW - 1 && read(pfd[0], &idx, sizeof(idx)) == sizeof(idx))
		last = idx;
	kill(pid, SIGKILL);
	close(pfd[0]);
	int status;
	waitpid(pid, &status, 0);
	ck_assert_int_eq(last, NW - 1);
	ck_assert_int_eq(dio_fsck(img, 0, NULL, NULL), 0);   /* replayed in memory: the runs checked */
	vol = t_mount(img);
	ck_assert_ptr_nonnull(vol);
	f = dio_open(vol, "h", O_RDWR);
	ck_assert_ptr_nonnull(f);
	expect_scattered(wid, NBLK, bs);
	dio_close(f);
	ck_assert_int_eq(dio_umount(vol), 0);
	ck_assert_int_eq(dio_fsck(img, 0, NULL, NULL), 0);
	vol = t_mount(img);
	f = dio_open(vol, "h", O_RDWR);
	expect_scattered(wid, NBLK, bs);
}
END_TEST

START_TEST(test_seek_data_and_hole)
{
	put(8192, 4096, 8);
	put(65536, 8192, 8);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, 16384, 8192), 0);
	ck_assert_int_eq(dio_lseek(f, 0, SEEK_DATA), 8192);
	ck_assert_int_eq(dio_lseek(f, 0, SEEK_HOLE), 0);
	ck_assert_int_eq(dio_lseek(f, 8192, SEEK_HOLE), 12288);
	ck_assert_int_eq(dio_lseek(f, 12288, SEEK_DATA), 65536);   /* unwritten counts as hole */
	ck_assert_int_eq(dio_lseek(f, 70000, SEEK_DATA), 70000);
	ck_assert_int_eq(dio_lseek(f, 70000, SEEK_HOLE), 73728);   /* EOF */
	ck_assert_int_eq(dio_lseek(f, 73728, SEEK_DATA), -1);
	ck_assert_int_eq(errno, ENXIO);
	ck_assert_int_eq(dio_lseek(f, -1, SEEK_DATA), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_lseek(f, -1, SEEK_HOLE), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_lseek(f, 0, SEEK_CUR), -1);   /* no position */
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_lseek(f, -1, SEEK_SET), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* SEEK_END: a result past off_t is EOVERFLOW (and no signed overflow:
	   UBSan fails this test otherwise), one below 0 EINVAL */
	ck_assert_int_eq(dio_lseek(f, INT64_MAX, SEEK_END), -1);
	ck_assert_int_eq(errno, EOVERFLOW);
	ck_assert_int_eq(dio_lseek(f, INT64_MIN, SEEK_END), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_lseek(f, -10, SEEK_END), 73728 - 10);
	ck_assert_int_eq(dio_lseek(f, 0, 12345), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_lseek(f, 0, SEEK_END), 73728);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("holes");
	TCase *tc = tcase_create("holes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hole_reads_zero);
	tcase_add_test(tc, test_unwritten_reads_zero);
	tcase_add_test(tc, test_subblock_write_into_unwritten_zeroes_rest_of_block);
	tcase_add_test(tc, test_punch_hole_frees_blocks_and_reads_zero);
	tcase_add_test(tc, test_zero_range_zeroes_exactly_its_range);
	tcase_add_test(tc, test_truncate_down_then_up_shows_no_old_bytes);
	tcase_add_test(tc, test_seek_data_and_hole);
	tcase_add_test(tc, test_scattered_writes_into_preallocated_space_survive_kill_and_remount);
	tcase_add_test(tc, test_cached_extents_never_outlive_punch_zero_range_or_truncate);
	suite_add_tcase(s, tc);
	return t_run(s);
}
