/*
 * Volumes on NBD exports (the nbd backend, issue 27): a URI picks the
 * backend, naming another is EINVAL; geometry and read-only come from
 * the server; one export is mounted once per process; a server that is
 * gone fails the mount at once; a server that dies under a mounted
 * volume is EIO to the write and to the next fsync of each handle, once,
 * and a remount once it is back finds every fsynced byte; a server that
 * fails writes fails the calls and leaves the volume consistent; one that
 * stops answering (or never answers the handshake) is an error after
 * DIO_NBD_TIMEOUT, not a hang; a queue keeps its requests in flight at
 * the server; a server without flush is sent none and none is counted.
 *
 * Each test starts its own nbdkit (DIO_TEST_NBD names it; the suite is
 * skipped without it) in the foreground as a child that dies with the
 * test.  The core suites run on NBD too (tests/meson.build, suite nbd).
 */
#include "helpers.h"
#include <signal.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>

static char sock[100], uri[160], img[256];

/* nbdkit ARGS... on the test's socket, in the foreground: its pid */
static pid_t serve(const char *const *args)
{
	unlink(sock);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		const char *argv[32] = { "nbdkit", "-f", "--exit-with-parent", "-U", sock };
		int n = 5;
		for (int i = 0; args[i] && n < 31; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		if (!getenv("DIO_TEST_VERBOSE"))
			dup2(null, 2);   /* its complaints about our probes and kills */
		execv(t_nbd(), (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500 && !t_sock_answers(sock); i++)
		usleep(10000);
	ck_assert_msg(t_sock_answers(sock), "nbdkit did not start on %s", sock);
	return pid;
}

static void stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
}

static void setup(void)
{
	snprintf(sock, sizeof(sock), "/tmp/libdio-nbd-%d.sock", (int)getpid());
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	snprintf(img, sizeof(img), "%s", t_image_path("nbdfile"));
}

static void teardown(void)
{
	unlink(sock);
	unlink(img);
}

static struct dio_vol *mount_uri(unsigned flags)
{
	struct dio_mount_opts o = { .flags = flags };
	return dio_mount(uri, &o);
}

static void mkfs_uri(void)
{
	ck_assert_msg(dio_mkfs(uri, NULL) == 0, "mkfs %s: %s", uri, strerror(errno));
}

/* A volume in the image file img, made here, holding file name with
   len bytes of data (served afterwards by the test) */
static void image_with(const char *name, const void *data, size_t len)
{
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	struct dio_vol *v = dio_mount(img, NULL);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(f, data, len, 0), (ssize_t)len);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
}

static char last_log[2048];   /* every line since cleared */
static void keep_log(int level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	size_t n = strlen(last_log);
	snprintf(last_log + n, sizeof(last_log) - n, "%s\n", msg);
}

START_TEST(test_a_uri_picks_the_nbd_backend_and_naming_another_is_einval)
{
	pid_t s = serve((const char *[]){ "memory", "64M", NULL });
	mkfs_uri();
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	struct dio_statvfs st;
	ck_assert_int_eq(dio_statvfs(v, &st), 0);
	ck_assert_str_eq(st.backend, "nbd");
	ck_assert_int_eq(dio_umount(v), 0);
	/* DIO_BACKEND is for local devices: it does not turn a URI away */
	setenv("DIO_BACKEND", "psync", 1);
	v = mount_uri(0);
	unsetenv("DIO_BACKEND");
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(dio_umount(v), 0);
	/* a mount option naming another backend: EINVAL, with a message */
	dio_set_log(keep_log, NULL);
	last_log[0] = 0;
	ck_assert_ptr_null(dio_mount(uri, &(struct dio_mount_opts){ .backend = "uring" }));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strstr(last_log, "served by backend nbd, not uring"), "log: %s", last_log);
	/* and the nbd backend on a local file: EINVAL too */
	last_log[0] = 0;
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 16 << 20 }), 0);
	ck_assert_ptr_null(dio_mount(img, &(struct dio_mount_opts){ .backend = "nbd" }));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strstr(last_log, "NBD URIs only"), "log: %s", last_log);
	stop(s);
}
END_TEST

START_TEST(test_geometry_comes_from_the_server)
{
	pid_t s = serve((const char *[]){ "--filter=blocksize-policy", "memory", "64M", "blocksize-minimum=4096",
					  "blocksize-preferred=65536", "blocksize-maximum=1M", NULL });
	mkfs_uri();
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "g", O_RDWR | O_CREAT);
	struct dio_info in;
	ck_assert_int_eq(dio_info(f, &in), 0);
	ck_assert_uint_eq(in.offset_align, 4096);   /* the server's minimum */
	ck_assert_uint_eq(in.max_io, 1 << 20);      /* its maximum */
	ck_assert(in.flags & DIO_INFO_VOLATILE_CACHE);   /* it offers flush */
	/* a 2 MiB write goes down as two commands of 1 MiB */
	uint8_t *b = t_aligned(2 << 20), *r = t_aligned(2 << 20);
	t_fill(b, 2 << 20, 1, 1, 0);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	ck_assert_int_eq(dio_pwrite(f, b, 2 << 20, 0), 2 << 20);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.device_ios - c0.device_ios, 2);
	ck_assert_int_eq(dio_fsync(f), 0);
	ck_assert_int_eq(dio_pread(f, r, 2 << 20, 0), 2 << 20);
	ck_assert(!memcmp(b, r, 2 << 20));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
	stop(s);
}
END_TEST

START_TEST(test_a_read_only_export_mounts_read_only_and_refuses_read_write)
{
	image_with("ro", "kept", 4);
	pid_t s = serve((const char *[]){ "-r", "file", img, NULL });
	ck_assert_ptr_null(mount_uri(0));
	ck_assert_int_eq(errno, EROFS);
	struct dio_vol *v = mount_uri(DIO_MOUNT_RDONLY);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "ro", O_RDONLY);
	char got[4];
	ck_assert_int_eq(dio_pread(f, got, 4, 0), 4);
	ck_assert(!memcmp(got, "kept", 4));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	stop(s);
}
END_TEST

START_TEST(test_one_export_is_mounted_once_per_process)
{
	pid_t s = serve((const char *[]){ "memory", "64M", NULL });
	mkfs_uri();
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_null(mount_uri(0));
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_ptr_null(mount_uri(DIO_MOUNT_RDONLY));
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(dio_umount(v), 0);
	v = mount_uri(0);   /* free again */
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(dio_umount(v), 0);
	stop(s);
}
END_TEST

START_TEST(test_a_server_that_is_gone_fails_the_mount_at_once)
{
	unlink(sock);
	time_t t0 = time(NULL);
	ck_assert_ptr_null(mount_uri(0));
	ck_assert_int_ne(errno, 0);
	ck_assert_int_eq(dio_mkfs(uri, NULL), -1);
	ck_assert_int_eq(dio_fsck(uri, 0, NULL, NULL), -1);
	ck_assert(time(NULL) - t0 < 5);
}
END_TEST

START_TEST(test_a_server_that_dies_is_eio_once_per_handle_and_a_remount_has_every_fsynced_byte)
{
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	pid_t s = serve((const char *[]){ "file", img, NULL });
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "d", O_RDWR | O_CREAT), *g = dio_open(v, "d", O_RDWR);
	uint8_t *b = t_aligned(1 << 20), *r = t_aligned(1 << 20);
	t_fill(b, 1 << 20, 2, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 1 << 20, 0), 1 << 20);
	ck_assert_int_eq(dio_fsync(f), 0);
	stop(s);   /* kill -9 of the server */
	t_fill(b, 65536, 2, 2, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 65536, 0), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fsync(f), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fsync(g), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_pread(f, r, 4096, 0), -1);   /* the connection is gone */
	ck_assert_int_eq(errno, EIO);
	dio_close(f);
	dio_close(g);
	dio_umount(v);   /* its last commit may fail: the server is gone */
	s = serve((const char *[]){ "file", img, NULL });
	ck_assert_int_eq(dio_fsck(uri, 0, NULL, NULL), 0);
	v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	f = dio_open(v, "d", O_RDONLY);
	ck_assert_int_eq(dio_pread(f, r, 1 << 20, 0), 1 << 20);
	t_fill(b, 1 << 20, 2, 1, 0);
	ck_assert_msg(!memcmp(b, r, 1 << 20), "an fsynced byte is gone");
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
	stop(s);
}
END_TEST

START_TEST(test_a_server_that_fails_writes_fails_the_calls_and_the_volume_stays_consistent)
{
	uint8_t *b = t_aligned(65536), *r = t_aligned(65536);
	t_fill(b, 65536, 3, 1, 0);
	image_with("e", b, 65536);
	/* once the trigger file exists, every write fails; reads and
	   flushes work */
	char trigger[300];
	snprintf(trigger, sizeof(trigger), "%s.fail", img);
	char trig_arg[320];
	snprintf(trig_arg, sizeof(trig_arg), "error-pwrite-file=%s", trigger);
	unlink(trigger);
	pid_t s = serve((const char *[]){ "--filter=error", "file", img, "error-pwrite=EIO",
					  "error-pwrite-rate=100%", trig_arg, NULL });
	struct dio_vol *v = mount_uri(0);
	struct dio_file *f;
	ck_assert_ptr_nonnull(v);
	f = dio_open(v, "e", O_RDWR);
	ck_assert_ptr_nonnull(f);
	int tfd = open(trigger, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(tfd, 0);
	close(tfd);
	t_fill(b, 65536, 3, 2, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 65536, 0), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fsync(f), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_pread(f, r, 65536, 0), 65536);
	dio_close(f);
	dio_umount(v);
	stop(s);
	unlink(trigger);
	s = serve((const char *[]){ "file", img, NULL });
	ck_assert_int_eq(dio_fsck(uri, 0, NULL, NULL), 0);
	v = mount_uri(0);
	f = dio_open(v, "e", O_RDONLY);
	ck_assert_int_eq(dio_pread(f, r, 65536, 0), 65536);
	t_fill(b, 65536, 3, 1, 0);
	/* each block old or new (rule 6); here none was written */
	ck_assert(!memcmp(b, r, 65536));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
	stop(s);
}
END_TEST


/* Send one command character to nbdkit's pause filter; its answer. */
static char pause_ctl(const char *ctl, char cmd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", ctl);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(write(fd, &cmd, 1), 1);
	char got = 0;
	ck_assert_int_eq(read(fd, &got, 1), 1);
	close(fd);
	return got;
}

START_TEST(test_a_server_that_stops_answering_is_eio_after_the_timeout_not_a_hang)
{
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	char ctl[120], ctl_arg[140];
	snprintf(ctl, sizeof(ctl), "%s.ctl", sock);
	snprintf(ctl_arg, sizeof(ctl_arg), "pause-control=%s", ctl);
	unlink(ctl);
	pid_t s = serve((const char *[]){ "--filter=pause", "file", img, ctl_arg, NULL });
	setenv("DIO_NBD_TIMEOUT", "1", 1);
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "p", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(65536);
	t_fill(b, 65536, 4, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 65536, 0), 65536);
	ck_assert_int_eq(dio_fsync(f), 0);
	ck_assert_int_eq(pause_ctl(ctl, 'p'), 'P');   /* from now on nothing is answered */
	time_t t0 = time(NULL);
	ck_assert_int_eq(dio_pwrite(f, b, 65536, 65536), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(dio_fsync(f), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_msg(time(NULL) - t0 <= 10, "the silent server held the calls %lds", (long)(time(NULL) - t0));
	dio_close(f);
	dio_umount(v);
	unsetenv("DIO_NBD_TIMEOUT");
	ck_assert_int_eq(pause_ctl(ctl, 'r'), 'R');
	ck_assert_int_eq(dio_fsck(uri, 0, NULL, NULL), 0);
	v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	f = dio_open(v, "p", O_RDONLY);
	uint8_t *r = t_aligned(65536);
	ck_assert_int_eq(dio_pread(f, r, 65536, 0), 65536);
	ck_assert(!memcmp(b, r, 65536));   /* what was fsynced before */
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
	stop(s);
	unlink(ctl);
}
END_TEST

START_TEST(test_a_server_that_never_answers_the_handshake_fails_the_mount_after_the_timeout)
{
	/* a socket that accepts and says nothing */
	unlink(sock);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	setenv("DIO_NBD_TIMEOUT", "1", 1);
	time_t t0 = time(NULL);
	ck_assert_ptr_null(mount_uri(0));
	ck_assert_int_eq(errno, ETIMEDOUT);
	ck_assert(time(NULL) - t0 <= 10);
	unsetenv("DIO_NBD_TIMEOUT");
	close(l);
}
END_TEST

START_TEST(test_a_queue_keeps_requests_in_flight_on_the_server)
{
	/* every read takes 200 ms at the server: 16 of them one after the
	   other would take 3.2 s, in flight together about 0.2 s */
	pid_t s = serve((const char *[]){ "--filter=delay", "memory", "64M", "rdelay=200ms", NULL });
	mkfs_uri();
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "q", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(16 * 4096);
	t_fill(b, 16 * 4096, 5, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 16 * 4096, 0), 16 * 4096);
	memset(b, 0, 16 * 4096);
	struct dio_queue *q = dio_queue_create(v, 16);
	struct dio_req r[16];
	for (int i = 0; i < 16; i++)
		r[i] = (struct dio_req){ .op = DIO_OP_READ, .file = f, .buf = b + i * 4096, .len = 4096,
					 .offset = (off_t)i * 4096, .user_data = (uint64_t)i };
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(dio_submit(q, r, 16), 16);
	struct dio_cqe c[16];
	int got = 0;
	while (got < 16) {
		int n = dio_reap(q, c, 1, 16, -1);
		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++)
			ck_assert_int_eq(c[i].res, 4096);
		got += n;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(sec < 1.6, "16 reads of 200 ms took %.2f s: not in flight together", sec);
	uint8_t *want = t_aligned(16 * 4096);
	t_fill(want, 16 * 4096, 5, 1, 0);
	ck_assert(!memcmp(b, want, 16 * 4096));
	dio_queue_destroy(q);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(want);
	stop(s);
}
END_TEST

START_TEST(test_a_server_without_flush_gets_no_flush_and_none_is_counted)
{
	/* nbdkit's eval plugin with no flush script: the export offers no
	   flush (a server that keeps no volatile cache) */
	int fd = open(img, O_CREAT | O_TRUNC | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 32 << 20), 0);
	close(fd);
	char size[300], pread[400], pwrite[400];
	snprintf(size, sizeof(size), "get_size=stat -c %%s %s", img);
	snprintf(pread, sizeof(pread), "pread=dd if=%s iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none", img);
	snprintf(pwrite, sizeof(pwrite), "pwrite=dd of=%s oflag=seek_bytes conv=notrunc seek=$4 status=none", img);
	pid_t s = serve((const char *[]){ "eval", size, pread, pwrite, "can_write=exit 0", NULL });
	dio_set_log(keep_log, NULL);
	last_log[0] = 0;
	mkfs_uri();
	struct dio_vol *v = mount_uri(0);
	ck_assert_ptr_nonnull(v);
	ck_assert_msg(strstr(last_log, "offers no flush"), "log: %s", last_log);
	struct dio_file *f = dio_open(v, "nf", O_RDWR | O_CREAT);
	struct dio_info in;
	ck_assert_int_eq(dio_info(f, &in), 0);
	ck_assert(!(in.flags & DIO_INFO_VOLATILE_CACHE));
	uint8_t *b = t_aligned(65536), *r = t_aligned(65536);
	t_fill(b, 65536, 6, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 65536, 0), 65536);
	ck_assert_int_eq(dio_fsync(f), 0);
	struct dio_counters c;
	ck_assert_int_eq(dio_counters(v, &c), 0);
	ck_assert_uint_eq(c.flushes, 0);   /* none sent, so none counted */
	ck_assert_uint_gt(c.journal_commits, 0);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	v = mount_uri(DIO_MOUNT_RDONLY);
	ck_assert_ptr_nonnull(v);
	f = dio_open(v, "nf", O_RDONLY);
	ck_assert_int_eq(dio_pread(f, r, 65536, 0), 65536);
	ck_assert(!memcmp(b, r, 65536));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
	stop(s);
}
END_TEST

int main(void)
{
	if (!t_nbd() || access(t_nbd(), X_OK) != 0) {
		fprintf(stderr, "SKIP nbd suite: no nbdkit (DIO_TEST_NBD=%s; Debian: apt-get install nbdkit)\n",
			t_nbd() ? t_nbd() : "");
		return 77;
	}
	Suite *s = suite_create("nbd");
	TCase *tc = tcase_create("nbd");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_a_uri_picks_the_nbd_backend_and_naming_another_is_einval);
	tcase_add_test(tc, test_geometry_comes_from_the_server);
	tcase_add_test(tc, test_a_read_only_export_mounts_read_only_and_refuses_read_write);
	tcase_add_test(tc, test_one_export_is_mounted_once_per_process);
	tcase_add_test(tc, test_a_server_that_is_gone_fails_the_mount_at_once);
	tcase_add_test(tc, test_a_server_that_dies_is_eio_once_per_handle_and_a_remount_has_every_fsynced_byte);
	tcase_add_test(tc, test_a_server_that_fails_writes_fails_the_calls_and_the_volume_stays_consistent);
	tcase_add_test(tc, test_a_server_that_stops_answering_is_eio_after_the_timeout_not_a_hang);
	tcase_add_test(tc, test_a_server_that_never_answers_the_handshake_fails_the_mount_after_the_timeout);
	tcase_add_test(tc, test_a_queue_keeps_requests_in_flight_on_the_server);
	tcase_add_test(tc, test_a_server_without_flush_gets_no_flush_and_none_is_counted);
	suite_add_tcase(s, tc);
	return t_run(s);
}
