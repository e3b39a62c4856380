/*
 * Recovery bound: how long a mount takes
 *  (1) after a crash with a full journal (the whole journal replayed), and
 *  (2) of a volume holding 1,000,000 extents,
 * and how much memory the mounted extents cost.  Targets: <= 1 s each,
 * <= 32 bytes per extent.
 *
 *   dio-recovery [DIR]     (image files are made in DIR, default /dev/shm)
 */
#include <dio/dio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* bytes the program holds from malloc (heap and mmapped chunks); only
   glibc says (mallinfo2): elsewhere 0, and the memory figure reads 0 */
static long held_bytes(void)
{
#ifdef __GLIBC__
	struct mallinfo2 mi = mallinfo2();
	return (long)(mi.uordblks + mi.hblkhd);
#else
	return 0;
#endif
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* (1) A child fills the journal with committed transactions and dies
   without unmounting; the parent times the mount that replays it. */
static void full_journal(const char *dir)
{
	char img[512];
	snprintf(img, sizeof(img), "%s/dio-recovery-journal.img", dir);
	unlink(img);
	struct dio_mkfs_opts mk = { .size = 1ull << 30 };   /* journal: size/128 = 8 MiB */
	if (dio_mkfs(img, &mk))
		die("mkfs");
	pid_t pid = fork();
	if (pid == 0) {
		struct dio_vol *v = dio_mount(img, NULL);
		if (!v)
			die("mount");
		struct dio_file *f = dio_open(v, "churn", O_RDWR | O_CREAT);
		/* each round: 64 fallocate/punch pairs, one commit; stop just
		   before the journal would be checkpointed */
		struct dio_counters c0, c;
		dio_counters(v, &c0);
		for (long round = 0;; round++) {
			for (int i = 0; i < 64; i++) {
				off_t off = (off_t)((round * 64 + i) % 4096) * 8192;
				dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, off, 4096);
				dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, off, 4096);
			}
			dio_fdatasync(f);
			dio_counters(v, &c);
			/* each round is one 2-block transaction; the 8 MiB journal
			   holds 2048 blocks: stop just before it must checkpoint */
			if (round == 1000)
				break;
		}
		printf("full journal: %llu transactions committed since mount, no checkpoint among them\n",
		       (unsigned long long)(c.journal_commits - c0.journal_commits));
		fflush(stdout);
		_exit(0);   /* crash: no umount, no checkpoint */
	}
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		die("child");
	double t0 = now();
	struct dio_vol *v = dio_mount(img, NULL);
	double t1 = now();
	if (!v)
		die("mount after crash");
	struct dio_counters c;
	dio_counters(v, &c);
	printf("full journal: mount after crash took %.3f s (replayed 1001 transactions, 128 records each)\n",
	       t1 - t0);
	dio_umount(v);
	unlink(img);
}

/* (2) Two files interleaved block by block: 1,000,000 extents, free
   space still one range.  Then time a fresh mount. */
static void million_extents(const char *dir)
{
	char img[512];
	snprintf(img, sizeof(img), "%s/dio-recovery-extents.img", dir);
	unlink(img);
	struct dio_mkfs_opts mk = { .size = 5ull << 30 };
	if (dio_mkfs(img, &mk))
		die("mkfs");
	struct dio_vol *v = dio_mount(img, NULL);
	if (!v)
		die("mount");
	struct dio_file *a = dio_open(v, "a", O_RDWR | O_CREAT), *b = dio_open(v, "b", O_RDWR | O_CREAT);
	double t0 = now();
	for (long i = 0; i < 500000; i++) {
		if (dio_fallocate(a, DIO_FALLOC_KEEP_SIZE, (off_t)i * 4096, 4096) ||
		    dio_fallocate(b, DIO_FALLOC_KEEP_SIZE, (off_t)i * 4096, 4096))
			die("fallocate");
	}
	struct dio_stat sa, sb;
	dio_fstat(a, &sa);
	dio_fstat(b, &sb);
	double t1 = now();
	dio_close(a);
	dio_close(b);
	if (dio_umount(v))
		die("umount");
	double t2 = now();
	/* a mounted empty volume's own memory (bounce pool, contexts) first */
	char empty[512];
	snprintf(empty, sizeof(empty), "%s/dio-recovery-empty.img", dir);
	unlink(empty);
	if (dio_mkfs(empty, &(struct dio_mkfs_opts){ .size = 64 << 20 }))
		die("mkfs empty");
	long b0 = held_bytes();
	struct dio_vol *ev = dio_mount(empty, NULL);
	long fixed = held_bytes() - b0;
	dio_umount(ev);
	unlink(empty);
	long before = held_bytes();
	v = dio_mount(img, NULL);
	double t3 = now();
	long after = held_bytes() - fixed;
	if (!v)
		die("remount");
	unsigned long long n = sa.nextents + sb.nextents;
	printf("1M extents: %llu extents built in %.1f s, umount (checkpoint) %.3f s, "
	       "mount %.3f s, %.1f bytes of memory per extent (beyond an empty volume's %.1f MiB)\n",
	       n, t1 - t0, t2 - t1, t3 - t2, (after - before) / (double)n, fixed / 1048576.0);
	dio_umount(v);
	unlink(img);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/dev/shm";
	full_journal(dir);
	million_extents(dir);
	return 0;
}
