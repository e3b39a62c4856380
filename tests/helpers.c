#include "helpers.h"
#include <dirent.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>

static char pathbuf[4096];
static uint64_t rs = 88172645463325252ull;

const char *t_image_path(const char *tag)
{
	const char *dir = getenv("DIO_TEST_DIR");
	struct stat st;
	if (!dir)
		dir = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
	snprintf(pathbuf, sizeof(pathbuf), "%s/libdio-test-%s-%s-%d.img", dir, tag, t_backend(), getpid());
	return pathbuf;
}

const char *t_backend(void)
{
	if (t_nbd())
		return "nbd";
	const char *b = getenv("DIO_BACKEND");
	if (!b || !*b)
		b = getenv("DIO_FAULT_INNER");   /* fault_setup moved it here */
	return b && *b ? b : "auto";
}

/* ---- images served over NBD (DIO_TEST_NBD=path of nbdkit) ---- */

const char *t_nbd(void)
{
	const char *n = getenv("DIO_TEST_NBD");
	return n && *n ? n : NULL;
}

bool t_sock_answers(const char *sock)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* The suite's process (t_run): nbdkit lives until it exits. */
static pid_t t_owner;

/* The URI of image path served by nbdkit's file plugin on the Unix socket
   PATH.sock, started now unless one serves it already.  It runs on its
   own (not a child of whoever started it) until the suite's process
   exits, so that a child killed by a test does not take it along, and
   the volume is mounted again through the same URI (the process-death
   log is keyed by it). */
const char *t_nbd_uri(const char *path)
{
	static char uri[4200];
	char sock[4096], owner[64];
	snprintf(sock, sizeof(sock), "%s.sock", path);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	if (t_sock_answers(sock))
		return uri;
	unlink(sock);
	snprintf(owner, sizeof(owner), "exit-when-process-exits=%d", (int)(t_owner ? t_owner : getpid()));
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		if (!getenv("DIO_TEST_VERBOSE"))
			dup2(null, 2);   /* its complaints about our probes */
		/* nothing of the test's (a pipe whose end of file it waits for) */
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		/* nbdkit forks into the background once the socket listens */
		execl(t_nbd(), "nbdkit", "--filter=exitwhen", "-U", sock, "file", path, owner, "exit-when-poll=1",
		      (char *)NULL);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	for (int i = 0; i < 500 && !t_sock_answers(sock); i++)
		usleep(10000);
	ck_assert_msg(t_sock_answers(sock), "nbdkit serving %s on %s did not start", path, sock);
	return uri;
}

struct dio_vol *t_mount_flags(const char *path, unsigned flags)
{
	struct dio_mount_opts o = { .backend = t_backend(), .flags = flags };
	return dio_mount(t_nbd() ? t_nbd_uri(path) : path, &o);
}

struct dio_vol *t_mount(const char *path)
{
	return t_mount_flags(path, 0);
}

struct dio_vol *t_fresh(const char *tag, unsigned mib, char **path_out)
{
	const char *p = t_image_path(tag);
	t_forget_plog(p);
	unlink(p);
	struct dio_mkfs_opts o = { .size = (uint64_t)mib << 20 };
	ck_assert_msg(dio_mkfs(p, &o) == 0, "mkfs %s: %s", p, strerror(errno));
	struct dio_vol *v = t_mount(p);
	ck_assert_msg(v != NULL, "mount %s: %s", p, strerror(errno));
	if (path_out)
		*path_out = strdup(p);
	return v;
}

void *t_aligned(size_t n)
{
	void *p;
	ck_assert(posix_memalign(&p, 4096, n ? n : 1) == 0);
	memset(p, 0, n);
	return p;
}

void t_fill(uint8_t *p, size_t n, uint32_t fid, uint32_t wid, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		p[i] = t_pat(fid, wid, off + i);
}

void t_seed(uint64_t s) { rs = s ? s : 1; }

uint64_t t_rand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static void quiet_log(int level, const char *msg, void *arg)
{
	(void)arg;
	if (getenv("DIO_TEST_VERBOSE"))
		fprintf(stderr, "libdio[%d]: %s\n", level, msg);
}

int t_run(Suite *s)
{
	t_owner = getpid();
	dio_set_log(quiet_log, NULL);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

char *t_img;

/* What a reboot does to the volume's process-death log (lib/plog.c): it
   is gone.  Power loss simulated without a reboot must do the same, or
   the next mount would apply changes whose data the "power loss" took. */
void t_forget_plog(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return;
	char suffix[64];
	snprintf(suffix, sizeof(suffix), "-%llx-%llx", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		size_t n = strlen(e->d_name), k = strlen(suffix);
		if (!strncmp(e->d_name, "libdio-", 7) && n > k && !strcmp(e->d_name + n - k, suffix)) {
			char full[512];
			snprintf(full, sizeof(full), "/dev/shm/%s", e->d_name);
			unlink(full);
		}
	}
	closedir(d);
}

void t_img_cleanup(void)
{
	if (t_img) {
		t_forget_plog(t_img);
		unlink(t_img);
		free(t_img);
		t_img = NULL;
	}
}
