/*
 * Allocator at scale: free space split into N single-block fragments
 * (two files preallocated block by block in turn, then one of them
 * removed), then the cost of a 4 KiB allocating append and of a mount.
 * Targets (issue 11): <= 5 us per append with 1,000,000 fragments, mount
 * <= 1 s.  Prints one line per N.
 *
 *   dio-alloc-bench [DIR] [N...]     (default /dev/shm, N 10000 160000 1000000)
 */
#include <dio/dio.h>
#include <errno.h>
#include <fcntl.h>
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

static void one(const char *dir, long frags)
{
	char img[512];
	snprintf(img, sizeof(img), "%s/dio-alloc-bench.img", dir);
	unlink(img);
	/* 2 blocks per fragment, room for the appends, the checkpoint of a
	   file of `frags` extents (24 bytes each, area = size / 128) */
	uint64_t size = (uint64_t)frags * 2 * 4096 + (1ull << 30);
	if (size < (uint64_t)frags * 24 * 128 * 2)
		size = (uint64_t)frags * 24 * 128 * 2;
	if (dio_mkfs(img, &(struct dio_mkfs_opts){ .size = size }))
		die("mkfs");
	struct dio_vol *v = dio_mount(img, NULL);
	if (!v)
		die("mount");
	struct dio_file *keep = dio_open(v, "keep", O_RDWR | O_CREAT), *gone = dio_open(v, "gone", O_RDWR | O_CREAT);
	for (long i = 0; i < frags; i++)
		if (dio_fallocate(keep, DIO_FALLOC_KEEP_SIZE, (off_t)i * 4096, 4096) ||
		    dio_fallocate(gone, DIO_FALLOC_KEEP_SIZE, (off_t)i * 4096, 4096))
			die("fallocate");
	/* the rest of the volume in use too, so the fragments are all the
	   free space there is */
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	if (dio_fallocate(keep, DIO_FALLOC_KEEP_SIZE, (off_t)frags * 4096, (off_t)sv.free_blocks * 4096))
		die("fallocate rest");
	dio_close(gone);
	if (dio_unlink(v, "gone") || dio_syncfs(v))
		die("unlink");
	dio_statvfs(v, &sv);
	/* 4 KiB appends to a new file: each takes a fragment */
	struct dio_file *f = dio_open(v, "appends", O_RDWR | O_CREAT);
	void *buf;
	if (posix_memalign(&buf, 4096, 4096))
		die("posix_memalign");
	memset(buf, 0xab, 4096);
	long n = frags < 20000 ? frags / 2 : 10000;
	double t0 = now();
	for (long i = 0; i < n; i++)
		if (dio_pwrite(f, buf, 4096, (off_t)i * 4096) != 4096)
			die("append");
	double t1 = now();
	struct dio_stat st;
	dio_fstat(f, &st);
	dio_close(f);
	dio_close(keep);
	if (dio_umount(v))
		die("umount");
	double t2 = now();
	v = dio_mount(img, NULL);
	double t3 = now();
	if (!v)
		die("remount");
	struct dio_statvfs sv2;
	dio_statvfs(v, &sv2);
	printf("%7ld free fragments (%llu free blocks): 4 KiB allocating append %.2f us (%ld appends, file of %llu "
	       "extents); mount %.3f s\n", frags, (unsigned long long)sv.free_blocks, (t1 - t0) * 1e6 / (double)n, n,
	       (unsigned long long)st.nextents, t3 - t2);
	fflush(stdout);
	dio_umount(v);
	unlink(img);
	free(buf);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/dev/shm";
	if (argc > 2) {
		for (int i = 2; i < argc; i++)
			one(dir, atol(argv[i]));
	} else {
		long def[] = { 10000, 40000, 160000, 1000000 };
		for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
			one(dir, def[i]);
	}
	return 0;
}
