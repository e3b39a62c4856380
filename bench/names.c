/*
 * The namespace at scale (issue 29, item 7): N files created one by one
 * through dio_open(O_CREAT) in a tree of directories (1,000 names a
 * directory, as an unpacked source tree or a key-value store's shards
 * make), in random order, then a clean unmount, a mount, a listing of
 * one directory level and the removal of every file.  Targets: <= 10 us
 * a create at 1,000,000 files; mount and clean unmount <= 1 s each.
 * Prints the cost a create at each tenth of N, then the rest; then the
 * same creates as files of the host file system under DIR (directories
 * made as needed), the baseline of the same run.
 *
 *   dio-names-bench [DIR] [N]     (default /dev/shm, 1000000)
 */
#include <dio/dio.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* file i's name: directory i / 1000 under a shard, file i % 1000 */
static void name_of(long i, char *out, size_t n)
{
	snprintf(out, n, "shard%02ld/dir%05ld/file%04ld.dat", i % 97, i / 1000, i % 1000);
}

static int count_one(const char *name, const struct dio_stat *st, void *arg)
{
	(void)name, (void)st;
	++*(long *)arg;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)type, (void)ftw;
	return remove(path);
}

/* The same names as host files under dir/dio-names-bench.d: us a create */
static double host_creates(const char *dir, const long *order, long n)
{
	char top[512], path[700], name[128];
	snprintf(top, sizeof(top), "%s/dio-names-bench.d", dir);
	nftw(top, rm_one, 64, FTW_DEPTH | FTW_PHYS);
	if (mkdir(top, 0755))
		die(top);
	double t = now();
	for (long i = 0; i < n; i++) {
		name_of(order[i], name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", top, name);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 && errno == ENOENT) {   /* its directories first */
			for (char *p = path + strlen(top) + 1; (p = strchr(p, '/')); p++) {
				*p = 0;
				if (mkdir(path, 0755) && errno != EEXIST)
					die(path);
				*p = '/';
			}
			fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		}
		if (fd < 0 || close(fd))
			die(path);
	}
	double us = (now() - t) / (double)n * 1e6;
	nftw(top, rm_one, 64, FTW_DEPTH | FTW_PHYS);
	return us;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/dev/shm";
	long n = argc > 2 ? atol(argv[2]) : 1000000;
	char img[512], name[128];
	snprintf(img, sizeof(img), "%s/dio-names-bench.img", dir);
	unlink(img);
	/* the checkpoint area is 1/128 of the volume: ~60 bytes a name */
	uint64_t size = (uint64_t)n * 60 * 128 * 2 + (1ull << 30);
	if (dio_mkfs(img, &(struct dio_mkfs_opts){ .size = size }))
		die("mkfs");
	struct dio_vol *v = dio_mount(img, NULL);
	if (!v)
		die("mount");
	/* a random order of 0..n-1 (xorshift, Fisher-Yates) */
	long *order = malloc((size_t)n * sizeof(*order));
	if (!order)
		die("malloc");
	uint64_t x = 88172645463325252ull;
	for (long i = 0; i < n; i++)
		order[i] = i;
	for (long i = n - 1; i > 0; i--) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		long j = (long)(x % (uint64_t)(i + 1)), t = order[i];
		order[i] = order[j], order[j] = t;
	}
	printf("files      us/create (the last tenth)\n");
	double t0 = now();
	for (long i = 0, step = n / 10 ? n / 10 : 1; i < n; i++) {
		name_of(order[i], name, sizeof(name));
		struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT | O_EXCL);
		if (!f || dio_close(f))
			die(name);
		if ((i + 1) % step == 0) {
			double t = now();
			printf("%9ld  %8.2f\n", i + 1, (t - t0) / (double)step * 1e6);
			t0 = t;
		}
	}
	double t = now();
	if (dio_umount(v))
		die("umount");
	double umount_s = now() - t;
	t = now();
	if (!(v = dio_mount(img, NULL)))
		die("mount");
	double mount_s = now() - t;
	if (getenv("DIO_NAMES_KEEP")) {   /* the volume of n files, for a profile */
		dio_umount(v);
		return 0;
	}
	long listed = 0;
	t = now();
	if (dio_listdir(v, "shard05/", count_one, &listed) < 0)
		die("listdir");
	double list_s = now() - t;
	t = now();
	for (long i = 0; i < n; i++) {
		name_of(order[i], name, sizeof(name));
		if (dio_unlink(v, name))
			die(name);
	}
	double unlink_us = (now() - t) / (double)n * 1e6;
	printf("clean unmount of %ld files: %.3f s\nmount: %.3f s\n", n, umount_s, mount_s);
	printf("one directory level (%ld entries): %.3f ms\nunlink: %.2f us a file\n", listed, list_s * 1e3, unlink_us);
	if (dio_umount(v))
		die("umount");
	unlink(img);
	printf("host file system under %s, the same creates: %.2f us a file\n", dir, host_creates(dir, order, n));
	free(order);
	return 0;
}
