/*
 * Damaged volumes: a volume that is not ours fails with EINVAL, one of an
 * unknown version or with damaged metadata fails with EUCLEAN and a log
 * message, and random bytes over the metadata (raw, or re-checksummed so
 * that the parsers see them) never crash or hang the library: the mount
 * fails cleanly, or it succeeds and everything in the volume reads.
 */
#include "helpers.h"
#include "../lib/internal.h"
#include <sys/mman.h>
#include <sys/stat.h>

static char *img, *pristine;
static char lastlog[512];

static char alllog[4096];   /* every message since the last reset */
static void log_cb(int level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	snprintf(lastlog, sizeof(lastlog), "%s", msg);
	size_t n = strlen(alllog);
	snprintf(alllog + n, sizeof(alllog) - n, "%s\n", msg);
}

static void teardown_img(void)
{
	if (img) {
		t_forget_plog(img);
		unlink(img);
		free(img);
		img = NULL;
	}
	if (pristine) {
		t_forget_plog(pristine);   /* its writer died mounted */
		unlink(pristine);
		free(pristine);
		pristine = NULL;
	}
}

/* Both superblocks of an image; returns the current one. */
static struct dio_sb *read_sbs(int fd, struct dio_sb *s0, struct dio_sb *s1)
{
	uint8_t b[SB_BYTES];
	ck_assert_int_eq(pread(fd, b, SB_BYTES, 0), SB_BYTES);
	ck_assert_int_eq(sb_decode(b, s0), 0);
	ck_assert_int_eq(pread(fd, b, SB_BYTES, 4096), SB_BYTES);
	ck_assert_int_eq(sb_decode(b, s1), 0);
	return s0->gen > s1->gen ? s0 : s1;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", from, to);
	ck_assert_int_eq(system(cmd), 0);
}

/* A volume with files, extents of both kinds and unflushed journal
   records: the child exits without umount. */
static void build_pristine(void)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s.pristine", t_image_path("damage"));
	pristine = strdup(p);
	img = strdup(t_image_path("damage"));
	unlink(pristine);
	ck_assert_int_eq(dio_mkfs(pristine, &(struct dio_mkfs_opts){ .size = 16 << 20, .journal_size = 64 << 10 }), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct dio_vol *v = t_mount(pristine);
		if (!v)
			_exit(1);
		uint8_t *b = t_aligned(65536);
		for (int i = 0; i < 12; i++) {
			char name[32];
			snprintf(name, sizeof(name), "dir/file-%d", i);
			struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT);
			t_fill(b, 65536, (uint32_t)i, 1, 0);
			dio_pwrite(f, b, 20000 + (size_t)i * 3000, (off_t)i * 5000);
			dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, 200000, 50000);
			if (i % 3 == 0)
				dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 4096, 8192);
			if (i == 5)
				dio_syncfs(v);    /* half in the checkpoint's journal... */
			dio_fsync(f);
		}
		dio_rename(v, "dir/file-1", "dir/file-2");
		dio_unlink(v, "dir/file-3");
		dio_syncfs(v);
		_exit(0);              /* ...and no umount: replay has work */
	}
	int st;
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int read_all_cb(const char *name, const struct dio_stat *st, void *arg)
{
	struct dio_vol *v = arg;
	struct dio_file *f = dio_open(v, name, O_RDONLY);
	if (!f)
		return 0;
	uint8_t *b = t_aligned(1 << 20);
	for (uint64_t off = 0; off < st->size && off < (64u << 20); off += 1 << 20)
		dio_pread(f, b, 1 << 20, (off_t)off);
	free(b);
	dio_close(f);
	return 0;
}

/* Mount, and if it works, read everything: must not crash. */
struct fsck_log { int errors, warnings; char last[512]; };
static void fsck_cb(int sev, const char *msg, void *arg);
static int try_mount(void)
{
	lastlog[0] = 0;
	struct dio_vol *v = t_mount(img);
	if (!v) {
		ck_assert_msg(errno == EUCLEAN || errno == EINVAL, "mount failed with %s", strerror(errno));
		ck_assert_msg(lastlog[0], "mount failed without a log message");
		return errno;
	}
	dio_list(v, NULL, read_all_cb, v);
	ck_assert_int_eq(dio_umount(v), 0);
	return 0;
}

uint32_t dio_crc32c_soft(uint32_t crc, const void *buf, size_t len);

START_TEST(test_crc32c_hardware_and_table_agree)
{
	ck_assert_uint_eq(dio_crc32c(0, "123456789", 9), 0xE3069283u);   /* the check value */
	ck_assert_uint_eq(dio_crc32c_soft(0, "123456789", 9), 0xE3069283u);
	uint8_t b[4099];
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i * 31 + 7);
	for (size_t len = 0; len < sizeof(b); len += 37)
		for (size_t off = 0; off < 9; off++)
			ck_assert_uint_eq(dio_crc32c(0, b + off, len - (len > off ? off : len)),
					  dio_crc32c_soft(0, b + off, len - (len > off ? off : len)));
	/* chaining equals one pass */
	ck_assert_uint_eq(dio_crc32c(dio_crc32c(0, b, 1000), b + 1000, 3099), dio_crc32c(0, b, 4099));
}
END_TEST

START_TEST(test_not_a_volume_is_einval_and_logged)
{
	img = strdup(t_image_path("notvol"));
	int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_eq(ftruncate(fd, 16 << 20), 0);
	ck_assert_int_eq(pwrite(fd, "some other data", 15, 0), 15);
	close(fd);
	lastlog[0] = 0;
	ck_assert_ptr_null(t_mount(img));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert(strstr(lastlog, "not a libdio volume") != NULL);
	/* fsck cannot check it: -1, not "problems found" */
	lastlog[0] = 0;
	ck_assert_int_eq(dio_fsck(img, 0, NULL, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert(strstr(lastlog, "not a libdio volume") != NULL);
}
END_TEST

static void rewrite_sb(const char *path, uint64_t off, void (*edit)(struct dio_sb *))
{
	int fd = open(path, O_RDWR);
	uint8_t b[SB_BYTES];
	ck_assert_int_eq(pread(fd, b, SB_BYTES, (off_t)off), SB_BYTES);
	struct dio_sb sb;
	ck_assert_int_eq(sb_decode(b, &sb), 0);
	edit(&sb);
	sb_encode(&sb, b);
	ck_assert_int_eq(pwrite(fd, b, SB_BYTES, (off_t)off), SB_BYTES);
	close(fd);
}

static void future_version(struct dio_sb *sb) { sb->version = 2; }
static void unknown_incompat(struct dio_sb *sb) { sb->incompat |= 0x80; }
static void past_the_device(struct dio_sb *sb) { sb->total_blocks *= 4; }

START_TEST(test_unknown_version_or_feature_is_euclean)
{
	build_pristine();
	void (*edits[])(struct dio_sb *) = { future_version, unknown_incompat, past_the_device };
	for (unsigned i = 0; i < 3; i++) {
		copy_file(pristine, img);
		rewrite_sb(img, 0, edits[i]);
		rewrite_sb(img, 4096, edits[i]);
		ck_assert_int_eq(try_mount(), EUCLEAN);
	}
}
END_TEST

START_TEST(test_one_damaged_superblock_is_survived)
{
	build_pristine();
	for (int slot = 0; slot < 2; slot++) {
		copy_file(pristine, img);
		int fd = open(img, O_RDWR);
		ck_assert_int_eq(pwrite(fd, "garbage!", 8, slot * 4096 + 100), 8);
		close(fd);
		ck_assert_int_eq(try_mount(), 0);
	}
	copy_file(pristine, img);
	int fd = open(img, O_RDWR);
	ck_assert_int_eq(pwrite(fd, "garbage!", 8, 100), 8);
	ck_assert_int_eq(pwrite(fd, "garbage!", 8, 4096 + 100), 8);
	close(fd);
	ck_assert_int_eq(try_mount(), EUCLEAN);
}
END_TEST

START_TEST(test_damaged_checkpoint_is_euclean)
{
	build_pristine();
	copy_file(pristine, img);
	int fd = open(img, O_RDWR);
	struct dio_sb s0, s1, *cur = read_sbs(fd, &s0, &s1);
	off_t at = (off_t)(cur->ckpt_start[cur->ckpt_slot] * cur->block_size + 200);
	ck_assert_int_eq(pwrite(fd, "XXXX", 4, at), 4);
	close(fd);
	ck_assert_int_eq(try_mount(), EUCLEAN);
	ck_assert(strstr(lastlog, "damaged") != NULL);
}
END_TEST

/* Random bytes over the metadata area; with resign, re-seal every
   checkpoint and journal block so the damage reaches the parsers. */
static void fuzz(int iters, bool resign, uint64_t seed)
{
	build_pristine();
	int fd = open(pristine, O_RDONLY);
	uint8_t b[SB_BYTES];
	struct dio_sb sb;
	pread(fd, b, SB_BYTES, 0);
	ck_assert_int_eq(sb_decode(b, &sb), 0);
	close(fd);
	size_t meta = sb.data_start * sb.block_size, bs = sb.block_size;
	t_seed(seed);
	int clean = 0, refused = 0;
	for (int it = 0; it < iters; it++) {
		copy_file(pristine, img);
		fd = open(img, O_RDWR);
		uint8_t *m = mmap(NULL, meta, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ck_assert(m != MAP_FAILED);
		int nmut = 1 + (int)(t_rand() % 16);
		for (int k = 0; k < nmut; k++) {
			/* aim at the blocks that are in use: superblocks, the
			   journal head, the checkpoints' first blocks */
			uint64_t region = t_rand() % 4, blk;
			if (region == 0)
				blk = t_rand() % 2;
			else if (region == 1)
				blk = sb.journal_start + t_rand() % 8;
			else
				blk = sb.ckpt_start[t_rand() % 2] + t_rand() % 4;
			size_t off = blk * bs + (t_rand() % bs);
			int len = 1 + (int)(t_rand() % 8);
			for (int j = 0; j < len && off + (size_t)j < meta; j++)
				m[off + (size_t)j] = (uint8_t)t_rand();
		}
		if (resign) {
			for (uint64_t blk = sb.journal_start; blk < sb.data_start; blk++) {
				uint8_t *p = m + blk * bs;
				uint32_t magic = get_le32(p);
				if (magic != DIO_MAGIC_JRNL && magic != DIO_MAGIC_CKPT)
					continue;
				struct dio_mblk_hdr h = { magic, 0, get_le64(p + 8), get_le64(p + 16),
							  get_le64(p + 24), get_le32(p + 32), get_le32(p + 36) };
				if (h.used > bs - MBLK_HDR)
					continue;
				mblk_seal(p, (uint32_t)bs, &h);
			}
			for (int s = 0; s < 2; s++)
				if (get_le64(m + (size_t)s * bs) == DIO_MAGIC_SB)
					put_le32(m + (size_t)s * bs + 252, dio_crc32c(0, m + (size_t)s * bs, 252));
		}
		munmap(m, meta);
		close(fd);
		struct fsck_log fl = { 0 };
		int fr = dio_fsck(img, 0, fsck_cb, &fl);
		/* -1 EINVAL: no superblock slot left that is ours at all */
		ck_assert(fr == 0 || fr == 1 || (fr == -1 && errno == EINVAL));
		int mr = try_mount();
		/* fsck and mount agree on what is usable */
		ck_assert_msg((fr == 0) == (mr == 0), "fsck says %d (%s), mount says %d", fr, fl.last, mr);
		if (mr == 0)
			clean++;
		else
			refused++;
	}
	fprintf(stderr, "damage (%s, %s): %d mounted and read, %d refused cleanly\n", t_backend(),
		resign ? "re-sealed" : "raw", clean, refused);
}

START_TEST(test_random_damage_never_crashes)
{
	fuzz(getenv("DIO_FUZZ_ITERS") ? atoi(getenv("DIO_FUZZ_ITERS")) : 150, false, 42);
}
END_TEST

START_TEST(test_random_damage_past_the_checksums_never_crashes)
{
	fuzz(getenv("DIO_FUZZ_ITERS") ? atoi(getenv("DIO_FUZZ_ITERS")) : 150, true, 43);
}
END_TEST

static void fsck_cb(int sev, const char *msg, void *arg)
{
	struct fsck_log *l = arg;
	if (sev == DIO_FSCK_ERROR)
		l->errors++;
	else
		l->warnings++;
	snprintf(l->last, sizeof(l->last), "%s", msg);
}

START_TEST(test_fsck_passes_a_clean_volume_with_pending_journal)
{
	build_pristine();
	struct fsck_log l = { 0 };
	ck_assert_int_eq(dio_fsck(pristine, 0, fsck_cb, &l), 0);
	ck_assert_int_eq(l.errors, 0);
	ck_assert_int_eq(l.warnings, 0);
	ck_assert_int_eq(dio_fsck(pristine, 1, fsck_cb, &l), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* a mounted volume is not checked under its owner's feet */
	struct dio_vol *v = t_mount(pristine);
	ck_assert_int_eq(dio_fsck(pristine, 0, fsck_cb, &l), -1);
	ck_assert_int_eq(errno, EBUSY);
	dio_umount(v);
}
END_TEST

START_TEST(test_fsck_reports_damaged_checkpoint_and_superblock)
{
	build_pristine();
	copy_file(pristine, img);
	int fd = open(img, O_RDWR);
	struct dio_sb s0, s1, *cur = read_sbs(fd, &s0, &s1);
	pwrite(fd, "XXXX", 4, (off_t)(cur->ckpt_start[cur->ckpt_slot] * cur->block_size + 300));
	pwrite(fd, "YY", 2, (off_t)(s0.gen > s1.gen ? 4096 : 0) + 17);   /* the older slot */
	close(fd);
	struct fsck_log l = { 0 };
	ck_assert_int_eq(dio_fsck(img, 0, fsck_cb, &l), 1);
	ck_assert_int_ge(l.errors, 1);
	ck_assert_int_ge(l.warnings, 1);
	ck_assert(strstr(l.last, "checkpoint") != NULL);
}
END_TEST


START_TEST(test_fsck_finds_a_block_owned_twice_which_mount_refuses)
{
	build_pristine();
	copy_file(pristine, img);
	struct dio_vol *v = t_mount(img);
	ck_assert_ptr_nonnull(v);
	/* forge the state: file-4 maps file-5's first block too */
	struct dio_inode *a = ns_lookup(v, "dir/file-4", 10), *b = ns_lookup(v, "dir/file-5", 10);
	struct em_cur ca, cb;
	ck_assert(a && b && em_first(&a->map, &ca) && em_first(&b->map, &cb));
	bt_rec(&ca.c)->pblk = em_rec(&cb)->pblk;
	ck_assert_int_eq(dio_umount(v), 0);    /* the checkpoint carries the forgery */
	struct fsck_log l = { 0 };
	ck_assert_int_eq(dio_fsck(img, 0, fsck_cb, &l), 1);
	ck_assert(strstr(l.last, "owned twice") != NULL);
	ck_assert(strstr(l.last, "\"dir/file-4\"") && strstr(l.last, "\"dir/file-5\""));
	alllog[0] = 0;
	ck_assert_int_eq(try_mount(), EUCLEAN);
	/* the mount says which files claim the block */
	ck_assert_msg(strstr(alllog, "owned by both") && strstr(alllog, "\"dir/file-4\"") &&
		      strstr(alllog, "\"dir/file-5\""), "%s", alllog);
}
END_TEST

int main(void)
{
	dio_set_log(log_cb, NULL);
	Suite *s = suite_create("damage");
	TCase *tc = tcase_create("damage");
	tcase_add_checked_fixture(tc, NULL, teardown_img);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_crc32c_hardware_and_table_agree);
	tcase_add_test(tc, test_fsck_passes_a_clean_volume_with_pending_journal);
	tcase_add_test(tc, test_fsck_reports_damaged_checkpoint_and_superblock);
	tcase_add_test(tc, test_fsck_finds_a_block_owned_twice_which_mount_refuses);
	tcase_add_test(tc, test_not_a_volume_is_einval_and_logged);
	tcase_add_test(tc, test_unknown_version_or_feature_is_euclean);
	tcase_add_test(tc, test_one_damaged_superblock_is_survived);
	tcase_add_test(tc, test_damaged_checkpoint_is_euclean);
	tcase_add_test(tc, test_random_damage_never_crashes);
	tcase_add_test(tc, test_random_damage_past_the_checksums_never_crashes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
