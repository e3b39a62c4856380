/*
 * Every errno of the contract, and what each failure leaves behind:
 * EINVAL, EBADF, EROFS, EFBIG, ENOENT, EEXIST, ENAMETOOLONG, ENOSPC (with
 * nothing changed and the volume still usable), EBUSY, EIO (the write,
 * then the next fsync of every handle open at the time, once each).
 */
#include "helpers.h"
#include <sys/stat.h>


START_TEST(test_einval_on_bad_arguments)
{
	struct dio_vol *v = t_fresh("einval", 16, &t_img);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	char b[16] = { 0 };
	ck_assert_int_eq(dio_pwrite(f, b, 1, -1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_pread(f, b, 1, -4096), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_pwritev(f, NULL, 1, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	struct iovec iov = { b, 1 };
	ck_assert_int_eq(dio_preadv(f, &iov, 0, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_preadv(f, &iov, 100000, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dio_open(v, "g", O_RDWR | O_CREAT | 0x40000000));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_ftruncate(f, -1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_fallocate(f, 0, -1, 10), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_fallocate(f, 0, 0, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dio_mount(t_img, &(struct dio_mount_opts){ .flags = 0x80 }));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_info(f, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* STRICT: misaligned refused, nothing written */
	struct dio_file *s = dio_open(v, "f", O_RDWR | DIO_O_STRICT);
	struct dio_info info;
	ck_assert_int_eq(dio_info(s, &info), 0);
	ck_assert_uint_eq(info.flags & DIO_INFO_FALLBACK, 0);
	ck_assert_int_eq(dio_pwrite(s, b, 7, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_pread(s, b, 7, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	struct dio_stat st;
	dio_fstat(s, &st);
	ck_assert_uint_eq(st.size, 0);
	ck_assert_uint_eq(st.allocated, 0);
	uint8_t *al = t_aligned(4096);
	ck_assert_int_eq(dio_pwrite(s, al, 4096, 0), 4096);
	ck_assert_int_eq(dio_pwrite(s, al + 1, 512, 0), -1);   /* misaligned buffer */
	ck_assert_int_eq(errno, EINVAL);
	free(al);
	dio_close(s);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

START_TEST(test_ebadf_on_wrong_handle_mode)
{
	struct dio_vol *v = t_fresh("ebadf", 16, &t_img);
	char b[8] = { 0 };
	struct dio_file *r = dio_open(v, "f", O_RDONLY | O_CREAT);
	ck_assert_int_eq(dio_pwrite(r, b, 8, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(dio_ftruncate(r, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(dio_fallocate(r, 0, 0, 4096), -1);
	ck_assert_int_eq(errno, EBADF);
	struct dio_file *w = dio_open(v, "f", O_WRONLY);
	ck_assert_int_eq(dio_pread(w, b, 8, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(dio_close(NULL), -1);
	ck_assert_int_eq(errno, EBADF);
	dio_close(r);
	dio_close(w);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

START_TEST(test_erofs_on_readonly_mount)
{
	struct dio_vol *v = t_fresh("erofs", 16, &t_img);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(f, "data", 4, 0), 4);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = t_mount_flags(t_img, DIO_MOUNT_RDONLY);
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_null(dio_open(v, "f", O_RDWR));
	ck_assert_int_eq(errno, EROFS);
	ck_assert_ptr_null(dio_open(v, "new", O_RDONLY | O_CREAT));
	ck_assert_int_eq(errno, EROFS);
	ck_assert_int_eq(dio_unlink(v, "f"), -1);
	ck_assert_int_eq(errno, EROFS);
	ck_assert_int_eq(dio_rename(v, "f", "g"), -1);
	ck_assert_int_eq(errno, EROFS);
	f = dio_open(v, "f", O_RDONLY);
	char b[4];
	ck_assert_int_eq(dio_pread(f, b, 4, 0), 4);
	ck_assert(!memcmp(b, "data", 4));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

START_TEST(test_efbig_past_maximum_file_size)
{
	struct dio_vol *v = t_fresh("efbig", 16, &t_img);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	char b[8] = { 0 };
	ck_assert_int_eq(dio_pwrite(f, b, 8, (off_t)DIO_MAX_FILE_SIZE - 4), -1);
	ck_assert_int_eq(errno, EFBIG);
	ck_assert_int_eq(dio_ftruncate(f, (off_t)DIO_MAX_FILE_SIZE + 1), -1);
	ck_assert_int_eq(errno, EFBIG);
	ck_assert_int_eq(dio_fallocate(f, 0, (off_t)DIO_MAX_FILE_SIZE, 4096), -1);
	ck_assert_int_eq(errno, EFBIG);
	/* the last byte is writable as a sparse file */
	ck_assert_int_eq(dio_pwrite(f, b, 1, (off_t)DIO_MAX_FILE_SIZE - 1), 1);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.size, DIO_MAX_FILE_SIZE);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

START_TEST(test_eexist_and_force_in_mkfs)
{
	struct dio_vol *v = t_fresh("eexist", 16, &t_img);
	ck_assert_int_eq(dio_umount(v), 0);
	struct dio_mkfs_opts o = { .size = 16 << 20 };
	ck_assert_int_eq(dio_mkfs(t_img, &o), -1);
	ck_assert_int_eq(errno, EEXIST);
	o.flags = DIO_MKFS_FORCE;
	ck_assert_int_eq(dio_mkfs(t_img, &o), 0);
	ck_assert_int_eq(dio_mkfs("/nonexistent-dir/x.img", &o), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(dio_mkfs(t_image_path("nosize"), NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_ebusy_on_second_mount_and_umount_with_open_files)
{
	struct dio_vol *v = t_fresh("ebusy", 16, &t_img);
	ck_assert_ptr_null(t_mount(t_img));
	ck_assert_int_eq(errno, EBUSY);
	pid_t pid = fork();
	if (pid == 0)
		_exit(t_mount(t_img) == NULL && errno == EBUSY ? 0 : 1);
	int status;
	waitpid(pid, &status, 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process could mount");
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_umount(v), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(dio_pwrite(f, "still", 5, 0), 5);   /* nothing changed */
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = t_mount(t_img);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

START_TEST(test_enospc_changes_nothing_and_volume_stays_usable)
{
	struct dio_vol *v = t_fresh("enospc", 16, &t_img);
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	size_t bs = sv.block_size, total = sv.free_blocks * bs;
	struct dio_file *f = dio_open(v, "fill", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(total + bs);
	t_fill(b, total + bs, 1, 1, 0);
	/* more than the volume holds: refused whole */
	ck_assert_int_eq(dio_pwrite(f, b, total + bs, 0), -1);
	ck_assert_int_eq(errno, ENOSPC);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.size, 0);
	ck_assert_uint_eq(st.allocated, 0);
	struct dio_statvfs sv2;
	dio_statvfs(v, &sv2);
	ck_assert_uint_eq(sv2.free_blocks, sv.free_blocks);
	ck_assert_int_eq(dio_fallocate(f, 0, 0, (off_t)(total + bs)), -1);
	ck_assert_int_eq(errno, ENOSPC);
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.allocated, 0);
	ck_assert_uint_eq(st.size, 0);
	/* exactly full works, then one more block fails */
	ck_assert_int_eq(dio_pwrite(f, b, total, 0), (ssize_t)total);
	struct dio_file *g = dio_open(v, "more", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(g, b, bs, 0), -1);
	ck_assert_int_eq(errno, ENOSPC);
	/* the same write through a queue (the same request, asynchronous
	   when aligned): its completion carries ENOSPC, nothing changed */
	struct dio_queue *q = dio_queue_create(v, 2);
	ck_assert_ptr_nonnull(q);
	struct dio_req req = { .op = DIO_OP_WRITE, .file = g, .buf = b, .len = bs, .offset = 0, .user_data = 7 };
	ck_assert_int_eq(dio_submit(q, &req, 1), 1);
	struct dio_cqe cqe;
	ck_assert_int_eq(dio_reap(q, &cqe, 1, 1, -1), 1);
	ck_assert_uint_eq(cqe.user_data, 7);
	ck_assert_int_eq(cqe.res, -ENOSPC);
	dio_queue_destroy(q);
	dio_fstat(g, &st);
	ck_assert_uint_eq(st.size, 0);
	ck_assert_uint_eq(st.allocated, 0);
	/* delete, truncate and sync still work, and give space back */
	ck_assert_int_eq(dio_ftruncate(f, (off_t)(total / 2)), 0);
	ck_assert_int_eq(dio_fsync(f), 0);
	ck_assert_int_eq(dio_pwrite(g, b, bs, 0), (ssize_t)bs);
	dio_close(g);
	ck_assert_int_eq(dio_unlink(v, "more"), 0);
	ck_assert_int_eq(dio_syncfs(v), 0);
	uint8_t *r = t_aligned(total / 2);
	ck_assert_int_eq(dio_pread(f, r, total / 2, 0), (ssize_t)(total / 2));
	ck_assert(!memcmp(r, b, total / 2));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
}
END_TEST

/* Blocks a delete, a truncate or a punch freed wait for their commit
   before reuse (a crash must not show them in another file), but a full
   volume does not wait for the next fsync: the allocation that needs
   them commits and goes on.  df counts them free at once. */
START_TEST(test_space_freed_without_a_sync_is_used_at_once)
{
	struct dio_vol *v = t_fresh("freed", 16, &t_img);
	struct dio_statvfs sv, sv2;
	dio_statvfs(v, &sv);
	size_t bs = sv.block_size, total = sv.free_blocks * bs;
	uint8_t *b = t_aligned(total);
	t_fill(b, total, 1, 2, 0);
	struct dio_file *f = dio_open(v, "a", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(f, b, total, 0), (ssize_t)total);
	ck_assert_int_eq(dio_fsync(f), 0);
	dio_close(f);
	/* unlink, then a synchronous write of the whole volume */
	ck_assert_int_eq(dio_unlink(v, "a"), 0);
	dio_statvfs(v, &sv2);
	ck_assert_uint_eq(sv2.free_blocks, sv.free_blocks);
	f = dio_open(v, "b", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(f, b, total, 0), (ssize_t)total);
	/* truncate, then a preallocation of the whole volume */
	ck_assert_int_eq(dio_ftruncate(f, 0), 0);
	dio_statvfs(v, &sv2);
	ck_assert_uint_eq(sv2.free_blocks, sv.free_blocks);
	struct dio_file *g = dio_open(v, "c", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_fallocate(g, 0, 0, (off_t)total), 0);
	/* punch, then a queued write and a misaligned one (bounce path) */
	ck_assert_int_eq(dio_fallocate(g, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 0, (off_t)total), 0);
	struct dio_queue *q = dio_queue_create(v, 2);
	ck_assert_ptr_nonnull(q);
	struct dio_req req = { .op = DIO_OP_WRITE, .file = f, .buf = b, .len = total - bs, .offset = 0, .user_data = 3 };
	ck_assert_int_eq(dio_submit(q, &req, 1), 1);
	struct dio_cqe cqe;
	ck_assert_int_eq(dio_reap(q, &cqe, 1, 1, -1), 1);
	ck_assert_int_eq(cqe.res, (ssize_t)(total - bs));
	dio_queue_destroy(q);
	ck_assert_int_eq(dio_pwrite(f, b + total - bs, bs - 1, (off_t)(total - bs)), (ssize_t)(bs - 1));
	dio_statvfs(v, &sv2);
	ck_assert_uint_eq(sv2.free_blocks, 0);
	dio_close(f);
	dio_close(g);
	ck_assert_int_eq(dio_umount(v), 0);
	v = t_mount(t_img);
	ck_assert_ptr_nonnull(v);
	f = dio_open(v, "b", O_RDONLY);
	uint8_t *r = t_aligned(total);
	ck_assert_int_eq(dio_pread(f, r, total, 0), (ssize_t)(total - 1));
	ck_assert(!memcmp(r, b, total - 1));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
	free(b);
	free(r);
}
END_TEST

START_TEST(test_eio_reaches_write_and_each_handles_next_fsync_once)
{
	char *p = strdup(t_image_path("eio"));
	t_img = p;
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 16 << 20 }), 0);
	struct fault_cfg cfg = { 0 };
	fault_setup(&cfg);
	struct dio_vol *v = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	struct dio_file *a = dio_open(v, "f", O_RDWR | O_CREAT);
	struct dio_file *b = dio_open(v, "f", O_RDWR);
	uint8_t *buf = t_aligned(8192);
	t_fill(buf, 8192, 1, 1, 0);
	ck_assert_int_eq(dio_pwrite(a, buf, 8192, 0), 8192);
	ck_assert_int_eq(dio_fsync(a), 0);
	/* the next write bio fails */
	cfg.fail_write_at = fault_ops() + 1;   /* writes count is <= ops */
	struct fault_cfg now = { .fail_write_at = 1 };
	fault_setup(&now);
	uint8_t *nb = t_aligned(4096);
	t_fill(nb, 4096, 1, 2, 16384);
	ck_assert_int_eq(dio_pwrite(a, nb, 4096, 16384), -1);   /* extending: allocation */
	ck_assert_int_eq(errno, EIO);
	struct dio_file *c = dio_open(v, "f", O_RDWR);         /* opened after the error */
	ck_assert_int_eq(dio_fsync(a), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fsync(a), 0);                      /* once */
	ck_assert_int_eq(dio_fdatasync(b), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fdatasync(b), 0);
	ck_assert_int_eq(dio_fsync(c), 0);
	/* the range is not marked written: the size did not move, and the
	   failed block stays with the file (unwritten, marked bad) */
	struct dio_stat st;
	dio_fstat(a, &st);
	ck_assert_uint_eq(st.size, 8192);
	ck_assert_uint_eq(st.allocated, 8192 + 4096);
	memset(nb, 0x77, 4096);
	ck_assert_int_eq(dio_pread(a, nb, 4096, 16384), 0);
	ck_assert_int_eq(dio_ftruncate(a, 20480), 0);
	ck_assert_int_eq(dio_pread(a, nb, 4096, 16384), 4096);
	for (int i = 0; i < 4096; i++)
		ck_assert_uint_eq(nb[i], 0);
	/* punching the range moves the block to the bad list: never reused */
	struct dio_statvfs sv0, sv1;
	ck_assert_int_eq(dio_syncfs(v), 0);
	dio_statvfs(v, &sv0);
	ck_assert_int_eq(dio_fallocate(a, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 16384, 4096), 0);
	ck_assert_int_eq(dio_syncfs(v), 0);
	dio_statvfs(v, &sv1);
	ck_assert_uint_eq(sv1.free_blocks, sv0.free_blocks);
	/* and the rewrite gets a fresh block */
	t_fill(nb, 4096, 1, 3, 16384);
	ck_assert_int_eq(dio_pwrite(a, nb, 4096, 16384), 4096);
	dio_fstat(a, &st);
	ck_assert_uint_eq(st.allocated, 8192 + 4096);
	/* an overwrite that fails: EIO, data before it intact */
	struct fault_cfg again = { .fail_write_at = 1 };
	fault_setup(&again);
	ck_assert_int_eq(dio_pwrite(b, nb, 4096, 0), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fsync(a), -1);
	ck_assert_int_eq(dio_fsync(b), -1);
	ck_assert_int_eq(dio_fsync(c), -1);
	ck_assert_int_eq(dio_fsync(c), 0);
	/* the volume goes on working */
	struct fault_cfg none = { 0 };
	fault_setup(&none);
	ck_assert_int_eq(dio_pwrite(a, buf, 8192, 0), 8192);
	ck_assert_int_eq(dio_fsync(a), 0);
	dio_close(a);
	dio_close(b);
	dio_close(c);
	ck_assert_int_eq(dio_umount(v), 0);
	v = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	a = dio_open(v, "f", O_RDONLY);
	ck_assert_int_eq(dio_pread(a, nb, 4096, 4096), 4096);
	ck_assert(!memcmp(nb, buf + 4096, 4096));
	ck_assert_int_eq(dio_pread(a, nb, 4096, 16384), 4096);
	ck_assert_uint_eq(nb[100], t_pat(1, 3, 16384 + 100));
	dio_close(a);
	/* the bad block is still out of circulation after the remount */
	struct dio_statvfs sv2;
	dio_statvfs(v, &sv2);
	ck_assert_uint_eq(sv2.free_blocks + 1, sv1.free_blocks);   /* the rewrite took one */
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(dio_fsck(p, 0, NULL, NULL), 0);
	free(buf);
	free(nb);
}
END_TEST

/* Every byte of f, and its size, as the two expected. */
static void same_file(struct dio_file *f, const uint8_t *want, uint64_t size, const char *after)
{
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_msg(st.size == size, "after %s: size %llu, not %llu", after, (unsigned long long)st.size,
		      (unsigned long long)size);
	uint8_t *r = t_aligned(size + 4096);
	ck_assert_int_eq(dio_pread(f, r, size + 4096, 0), (ssize_t)size);
	for (uint64_t i = 0; i < size; i++)
		ck_assert_msg(r[i] == want[i], "after %s: byte %llu changed", after, (unsigned long long)i);
	free(r);
}

/*
 * A call that fails changes no byte.  On a full volume a zero range
 * whose middle needs blocks fails with ENOSPC; on a volume whose journal
 * commit failed, a truncate and a punch fail with EIO.  Their partial
 * edge blocks once were zeroed in place before the call knew it would
 * fail (3,996 bytes of one, 4,096 read as zeros).
 */
START_TEST(test_a_call_that_fails_changes_no_byte)
{
	char *p = strdup(t_image_path("nochange"));
	t_img = p;
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 16 << 20 }), 0);
	struct fault_cfg cfg = { 0 };
	fault_setup(&cfg);
	struct dio_vol *v = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(65536);
	t_fill(b, 65536, 2, 1, 0);
	/* 8,192 bytes written, a hole of 16 KiB, 8,192 more: the zero range
	   below has partial edges in written blocks and a hole to fill */
	ck_assert_int_eq(dio_pwrite(f, b, 8192, 0), 8192);
	ck_assert_int_eq(dio_pwrite(f, b + 24576, 8192, 24576), 8192);
	memset(b + 8192, 0, 16384);
	ck_assert_int_eq(dio_fsync(f), 0);
	/* fill the volume */
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	struct dio_file *fill = dio_open(v, "fill", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_fallocate(fill, 0, 0, (off_t)(sv.free_blocks * sv.block_size)), 0);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_ZERO_RANGE, 4000, 24000), -1);
	ck_assert_int_eq(errno, ENOSPC);
	same_file(f, b, 32768, "a zero range refused for want of space");
	/* the volume still truncates and punches (a copy of an edge block
	   takes a block writes leave free for it) */
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 100, 200), 0);
	memset(b + 100, 0, 200);
	same_file(f, b, 32768, "a punch on a full volume");
	dio_close(fill);
	ck_assert_int_eq(dio_unlink(v, "fill"), 0);
	ck_assert_int_eq(dio_fsync(f), 0);
	/* a failed commit: the volume refuses metadata changes from then on */
	struct fault_cfg broke = { .fail_flush_at = 1 };
	fault_setup(&broke);
	ck_assert_int_eq(dio_ftruncate(f, 5000), 0);   /* pending */
	ck_assert_int_eq(dio_fsync(f), -1);            /* its commit's flush fails */
	ck_assert_int_eq(errno, EIO);
	struct fault_cfg ok = { 0 };
	fault_setup(&ok);
	memset(b + 5000, 0, 32768 - 5000);
	ck_assert_int_eq(dio_ftruncate(f, 100), -1);
	ck_assert_int_eq(errno, EIO);
	same_file(f, b, 5000, "a truncate on a broken volume");
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 10, 3000), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE, 10, 3000), -1);
	ck_assert_int_eq(errno, EIO);
	same_file(f, b, 5000, "a punch and a zero range on a broken volume");
	dio_close(f);
	dio_umount(v);   /* EIO: the journal holds what was committed */
	free(b);
}
END_TEST

START_TEST(test_short_device_transfers_are_completed)
{
	char *p = strdup(t_image_path("short"));
	t_img = p;
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 16 << 20 }), 0);
	struct fault_cfg cfg = { .short_writes = 1 };
	fault_setup(&cfg);
	struct dio_vol *v = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	uint8_t *buf = t_aligned(65536), *chk = t_aligned(65536);
	t_fill(buf, 65536, 9, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, buf, 65536, 0), 65536);
	ck_assert_int_eq(dio_pread(f, chk, 65536, 0), 65536);
	ck_assert(!memcmp(buf, chk, 65536));
	/* a vectored write of 1,024 segments is one device I/O whose rest,
	   after each short transfer, goes down 16 slices at a time (and is
	   halved again each time): every byte still arrives */
	struct dio_info di;
	ck_assert_int_eq(dio_info(f, &di), 0);
	size_t seg = di.mem_align > di.offset_align ? di.mem_align : di.offset_align;
	uint8_t *big = t_aligned(1024 * seg), *bchk = t_aligned(1024 * seg);
	t_fill(big, 1024 * seg, 9, 2, 0);
	struct iovec *iov = calloc(1024, sizeof(*iov));
	for (int i = 0; i < 1024; i++)
		iov[i] = (struct iovec){ big + (size_t)i * seg, seg };
	ck_assert_int_eq(dio_pwritev(f, iov, 1024, 0), (ssize_t)(1024 * seg));
	ck_assert_int_eq(dio_pwritev(f, iov, 1024, 0), (ssize_t)(1024 * seg));   /* in place */
	ck_assert_int_eq(dio_pread(f, bchk, 1024 * seg, 0), (ssize_t)(1024 * seg));
	ck_assert(!memcmp(big, bchk, 1024 * seg));
	free(iov);
	free(big);
	free(bchk);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(buf);
	free(chk);
}
END_TEST

START_TEST(test_mount_with_a_backend_table_given_directly)
{
	t_img = strdup(t_image_path("ops"));
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 16 << 20 }), 0);
	struct fault_cfg cfg = { 0 };
	fault_setup(&cfg);
	setenv("DIO_BACKEND", "psync", 1);   /* the table wins over the name and the env */
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "aio", .ops = fault_table() });
	ck_assert_ptr_nonnull(v);
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	ck_assert_str_eq(sv.backend, "fault");
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(f, "x", 1, 0), 1);
	ck_assert_int_gt(fault_ops(), 0);      /* the I/O went through the table */
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	struct dio_backend_ops bad = *fault_table();
	bad.abi = 99;
	ck_assert_ptr_null(dio_mount(t_img, &(struct dio_mount_opts){ .ops = &bad }));
	ck_assert_int_eq(errno, EINVAL);
	unsetenv("DIO_BACKEND");
}
END_TEST

START_TEST(test_a_failed_mkfs_leaves_no_file_it_made)
{
	char p[512];
	snprintf(p, sizeof(p), "%s.new", t_image_path("mkfsfail"));
	unlink(p);
	struct stat st;
	/* too small to hold a volume, a block size the device cannot take:
	   refused after the file was made; it goes again */
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 64 << 10 }), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(stat(p, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 16 << 20, .block_size = 3000 }), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(stat(p, &st), -1);
	/* a file that was there before stays, whatever mkfs thought of it */
	int fd = open(p, O_RDWR | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 64 << 10 }), -1);
	ck_assert_int_eq(stat(p, &st), 0);
	unlink(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("errors");
	TCase *tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_add_test(tc, test_einval_on_bad_arguments);
	tcase_add_test(tc, test_ebadf_on_wrong_handle_mode);
	tcase_add_test(tc, test_erofs_on_readonly_mount);
	tcase_add_test(tc, test_efbig_past_maximum_file_size);
	tcase_add_test(tc, test_eexist_and_force_in_mkfs);
	tcase_add_test(tc, test_ebusy_on_second_mount_and_umount_with_open_files);
	tcase_add_test(tc, test_enospc_changes_nothing_and_volume_stays_usable);
	tcase_add_test(tc, test_space_freed_without_a_sync_is_used_at_once);
	tcase_add_test(tc, test_eio_reaches_write_and_each_handles_next_fsync_once);
	tcase_add_test(tc, test_short_device_transfers_are_completed);
	tcase_add_test(tc, test_a_call_that_fails_changes_no_byte);
	tcase_add_test(tc, test_mount_with_a_backend_table_given_directly);
	tcase_add_test(tc, test_a_failed_mkfs_leaves_no_file_it_made);
	suite_add_tcase(s, tc);
	return t_run(s);
}
