/*
 * An image file on a host file system that fills up (a sparse image on a
 * small tmpfs): writes fail with ENOSPC, synchronous and queued alike,
 * change nothing readable and mark no block bad; what was synced before
 * stays; once the host has room again the volume unmounts, mounts and
 * checks clean, with all its free space.  dio_statvfs keeps showing the
 * volume's own free blocks meanwhile (libdio(7), Errors).  Needs root to
 * mount the tmpfs: without it the suite exits 77 (a skip).
 */
#include "helpers.h"
#include <sys/mount.h>
#include <sys/stat.h>

static char dir[] = "/tmp/libdio-hostfull-XXXXXX";

static const char *setup_host(void)
{
	if (geteuid() != 0)
		return "needs root to mount a tmpfs";
	if (!mkdtemp(dir))
		return "mkdtemp failed";
	if (mount("tmpfs", dir, "tmpfs", 0, "size=12m") != 0) {
		rmdir(dir);
		return "mount -t tmpfs failed";
	}
	return NULL;
}

static void drop_host(void)
{
	umount2(dir, MNT_DETACH);   /* even if a failed test left the image open */
	rmdir(dir);
}

START_TEST(test_a_full_host_file_system_fails_writes_with_enospc_and_loses_nothing)
{
	char img[256], filler[256];
	snprintf(img, sizeof(img), "%s/v.img", dir);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	/* 2 MiB of the host set aside, given back once the volume is full */
	int fd = open(filler, O_WRONLY | O_CREAT, 0644);
	uint8_t *b = t_aligned(1 << 20);
	memset(b, 0x11, 1 << 20);
	ck_assert_int_eq(write(fd, b, 1 << 20), 1 << 20);
	ck_assert_int_eq(write(fd, b, 1 << 20), 1 << 20);
	close(fd);
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 64 << 20 }), 0);
	struct dio_vol *v = t_mount(img);
	ck_assert_ptr_nonnull(v);
	struct dio_file *ok = dio_open(v, "synced", O_RDWR | O_CREAT);
	t_fill(b, 1 << 20, 1, 1, 0);
	ck_assert_int_eq(dio_pwrite(ok, b, 1 << 20, 0), 1 << 20);
	ck_assert_int_eq(dio_fsync(ok), 0);
	/* fill the host through the synchronous calls */
	struct dio_file *big = dio_open(v, "big", O_RDWR | O_CREAT);
	off_t off = 0;
	ssize_t r;
	while ((r = dio_pwrite(big, b, 1 << 20, off)) == 1 << 20)
		off += 1 << 20;
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(errno, ENOSPC);
	/* and through a queue */
	struct dio_queue *q = dio_queue_create(v, 4);
	struct dio_req w = { .op = DIO_OP_WRITE, .file = big, .buf = b, .len = 1 << 20, .offset = off + (4 << 20) };
	ck_assert_int_eq(dio_submit(q, &w, 1), 1);
	struct dio_cqe c;
	ck_assert_int_eq(dio_reap(q, &c, 1, 1, -1), 1);
	ck_assert_int_eq(c.res, -ENOSPC);
	dio_queue_destroy(q);
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	ck_assert_uint_gt(sv.free_blocks, 0);   /* the volume's own space */
	/* nothing that failed reads as written; nothing synced is lost */
	uint8_t *rd = t_aligned(1 << 20);
	ck_assert_int_eq(dio_pread(ok, rd, 1 << 20, 0), 1 << 20);
	ck_assert(!memcmp(rd, b, 1 << 20));
	ck_assert_int_eq(dio_close(big), 0);
	ck_assert_int_eq(dio_unlink(v, "big"), 0);
	dio_close(ok);
	/* room on the host again: the volume commits, unmounts, mounts */
	ck_assert_int_eq(unlink(filler), 0);
	ck_assert_int_eq(dio_umount(v), 0);
	struct dio_statvfs before = sv;
	v = t_mount(img);
	ck_assert_ptr_nonnull(v);
	dio_statvfs(v, &sv);
	/* every block but the synced file's 256 is free: none was marked bad */
	ck_assert_uint_eq(sv.free_blocks, before.total_blocks - 256);
	ok = dio_open(v, "synced", O_RDONLY);
	ck_assert_int_eq(dio_pread(ok, rd, 1 << 20, 0), 1 << 20);
	ck_assert(!memcmp(rd, b, 1 << 20));
	dio_close(ok);
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(dio_fsck(img, 0, NULL, NULL), 0);
	unlink(img);
	free(b);
	free(rd);
}
END_TEST

int main(void)
{
	const char *why = setup_host();
	if (why) {
		fprintf(stderr, "SKIP host-full suite: %s (uid %d)\n", why, (int)geteuid());
		return 77;
	}
	Suite *s = suite_create("hostfull");
	TCase *tc = tcase_create("hostfull");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_a_full_host_file_system_fails_writes_with_enospc_and_loses_nothing);
	suite_add_tcase(s, tc);
	int r = t_run(s);
	drop_host();
	return r;
}
