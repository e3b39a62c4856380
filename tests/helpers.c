#include "helpers.h"
#include <dirent.h>
#include <sys/stat.h>

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
	const char *b = getenv("DIO_BACKEND");
	if (!b || !*b)
		b = getenv("DIO_FAULT_INNER");   /* fault_setup moved it here */
	return b && *b ? b : "auto";
}

struct dio_vol *t_mount(const char *path)
{
	struct dio_mount_opts o = { .backend = t_backend() };
	return dio_mount(path, &o);
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
