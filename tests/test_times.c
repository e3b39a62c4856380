/*
 * Modification times: a file is stamped when it is made and by every
 * write, truncate, punch or zero range (not by a preallocation that
 * keeps the size); dio_set_mtime sets one, journalled as any metadata
 * call; fsync makes a write's time durable, fdatasync does not; a
 * volume made before times gets them at its first read-write mount.
 */
#include "helpers.h"
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>

uint32_t dio_crc32c(uint32_t crc, const void *buf, size_t len);   /* lib/crc32c.c */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap(void)
{
	struct timespec ts = { 0, 30 * 1000 * 1000 };   /* past the coarse clock's tick */
	nanosleep(&ts, NULL);
}

static int64_t mtime_of(struct dio_vol *v, const char *name)
{
	struct dio_stat st;
	ck_assert_int_eq(dio_stat(v, name, &st), 0);
	return st.mtime_ns;
}

/* t within [lo, hi], the coarse clock's tick (a few ms) allowed */
#define SLACK (20 * 1000 * 1000)
static void ck_between(int64_t t, int64_t lo, int64_t hi)
{
	ck_assert_msg(t >= lo - SLACK && t <= hi + SLACK, "time %lld not in [%lld, %lld]", (long long)t,
		      (long long)lo, (long long)hi);
}

START_TEST(test_create_write_truncate_and_punch_stamp_the_file)
{
	struct dio_vol *v = t_fresh("times", 16, &t_img);
	int64_t t0 = now_ns();
	struct dio_file *f = dio_open(v, "a", O_RDWR | O_CREAT);
	ck_between(mtime_of(v, "a"), t0, now_ns());
	uint8_t *b = t_aligned(8192);
	memset(b, 7, 8192);
	int64_t steps[4];
	for (int i = 0; i < 4; i++) {
		nap();
		int64_t lo = now_ns();
		switch (i) {
		case 0: ck_assert_int_eq(dio_pwrite(f, b, 8192, 0), 8192); break;
		case 1: ck_assert_int_eq(dio_pwrite(f, b, 10, 3), 10); break;   /* misaligned */
		case 2: ck_assert_int_eq(dio_ftruncate(f, 5000), 0); break;
		default: ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 0, 4096), 0);
		}
		steps[i] = mtime_of(v, "a");
		ck_between(steps[i], lo, now_ns());
		ck_assert(!i || steps[i] > steps[i - 1]);
	}
	/* a preallocation that keeps the size changes no byte: no stamp */
	nap();
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, 0, 1 << 20), 0);
	ck_assert_int_eq(mtime_of(v, "a"), steps[3]);
	/* set: any value, exactly */
	ck_assert_int_eq(dio_set_mtime(f, 1234567890123456789LL), 0);
	ck_assert_int_eq(mtime_of(v, "a"), 1234567890123456789LL);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_int_eq(st.mtime_ns, 1234567890123456789LL);
	dio_close(f);
	/* a read-only handle may set it (as futimens: not a write) */
	f = dio_open(v, "a", O_RDONLY);
	ck_assert_int_eq(dio_set_mtime(f, 42), 0);
	ck_assert_int_eq(mtime_of(v, "a"), 42);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	/* the clean unmount's checkpoint carries it */
	v = t_mount(t_img);
	ck_assert_int_eq(mtime_of(v, "a"), 42);
	f = dio_open(v, "a", O_RDONLY);
	ck_assert_int_eq(dio_set_mtime(NULL, 1), -1);
	ck_assert_int_eq(errno, EBADF);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = dio_mount(t_img, &(struct dio_mount_opts){ .flags = DIO_MOUNT_RDONLY });
	f = dio_open(v, "a", O_RDONLY);
	ck_assert_int_eq(dio_set_mtime(f, 7), -1);
	ck_assert_int_eq(errno, EROFS);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
}
END_TEST

/* In a child that dies without unmounting (kill -9's state): what then
   survives comes from the journal and the process-death log. */
static void in_child(void (*fn)(struct dio_vol *v))
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		struct dio_vol *v = t_mount(t_img);
		if (!v)
			_exit(2);
		fn(v);
		_exit(0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void set_then_die(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "a", O_RDWR);
	if (!f || dio_set_mtime(f, 1000000000000000000LL))
		_exit(3);
}

static int64_t write_t0;

static void write_fdatasync_then_die(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "a", O_RDWR);
	if (!f || dio_pwrite(f, "x", 1, 0) != 1 || dio_fdatasync(f))
		_exit(3);
}

static void write_fsync_then_die(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "a", O_RDWR);
	if (!f || dio_pwrite(f, "y", 1, 0) != 1 || dio_fsync(f))
		_exit(3);
}

START_TEST(test_a_set_time_and_an_fsynced_write_s_time_survive_the_process_s_death)
{
	struct dio_vol *v = t_fresh("times-kill", 16, &t_img);
	dio_close(dio_open(v, "a", O_RDWR | O_CREAT));
	ck_assert_int_eq(dio_umount(v), 0);
	in_child(set_then_die);
	v = t_mount(t_img);
	ck_assert_int_eq(mtime_of(v, "a"), 1000000000000000000LL);
	ck_assert_int_eq(dio_umount(v), 0);
	/* fdatasync: the data, not the time (POSIX's choice) */
	in_child(write_fdatasync_then_die);
	v = t_mount(t_img);
	ck_assert_int_eq(mtime_of(v, "a"), 1000000000000000000LL);
	ck_assert_int_eq(dio_umount(v), 0);
	/* fsync: the time too */
	write_t0 = now_ns();
	in_child(write_fsync_then_die);
	v = t_mount(t_img);
	ck_between(mtime_of(v, "a"), write_t0, now_ns());
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* Both superblock slots without the feature bit, re-sealed: a volume as
   libdio made it before modification times (with no file, its
   checkpoint is the same in both layouts). */
static void clear_mtime_feature(const char *img)
{
	int fd = open(img, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t sb[256];
	ck_assert_int_eq(pread(fd, sb, 256, 0), 256);
	uint32_t bs = (uint32_t)sb[24] | (uint32_t)sb[25] << 8 | (uint32_t)sb[26] << 16 | (uint32_t)sb[27] << 24;
	for (int slot = 0; slot < 2; slot++) {
		off_t at = slot ? (off_t)bs : 0;
		ck_assert_int_eq(pread(fd, sb, 256, at), 256);
		ck_assert_int_eq(sb[12], 1);   /* DIO_INCOMPAT_MTIME */
		sb[12] = 0;
		uint32_t c = dio_crc32c(0, sb, 252);
		for (int i = 0; i < 4; i++)
			sb[252 + i] = (uint8_t)(c >> (8 * i));
		ck_assert_int_eq(pwrite(fd, sb, 256, at), 256);
	}
	close(fd);
}

START_TEST(test_a_volume_made_before_times_gets_them_at_its_first_read_write_mount)
{
	struct dio_vol *v = t_fresh("times-old", 16, &t_img);
	ck_assert_int_eq(dio_umount(v), 0);
	clear_mtime_feature(t_img);
	/* read-only: nothing is written */
	v = dio_mount(t_img, &(struct dio_mount_opts){ .flags = DIO_MOUNT_RDONLY });
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(dio_umount(v), 0);
	int fd = open(t_img, O_RDONLY);
	uint8_t b = 1;
	ck_assert_int_eq(pread(fd, &b, 1, 12), 1);
	ck_assert_int_eq(b, 0);
	/* read-write: the feature from the first checkpoint on */
	v = t_mount(t_img);
	ck_assert_ptr_nonnull(v);
	int64_t t0 = now_ns();
	dio_close(dio_open(v, "new", O_RDWR | O_CREAT));
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(pread(fd, &b, 1, 12), 1);
	ck_assert_int_eq(b, 1);
	close(fd);
	v = t_mount(t_img);
	ck_between(mtime_of(v, "new"), t0, now_ns());
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("times");
	TCase *tc = tcase_create("times");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_add_test(tc, test_create_write_truncate_and_punch_stamp_the_file);
	tcase_add_test(tc, test_a_set_time_and_an_fsynced_write_s_time_survive_the_process_s_death);
	tcase_add_test(tc, test_a_volume_made_before_times_gets_them_at_its_first_read_write_mount);
	suite_add_tcase(s, tc);
	return t_run(s);
}
