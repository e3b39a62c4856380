/*
 * Suite "backend": the run's backend, driven through its ops table
 * directly, never leaves an I/O behind.  When the kernel stops part-way
 * through a batch (an I/O it cannot start, a ring it refuses to enter),
 * the synchronous submit fails exactly the I/Os that did not go down and
 * waits for the others; the asynchronous one says how many went down, and
 * reap hands back exactly those: no completion of one call reaches a
 * later one, and nothing waits forever.
 */
#include "helpers.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <sys/uio.h>

const struct dio_backend_ops *dio_backend_find_exact(const char *name, int *err);

#define BS    4096
#define NBLK  64
#define BADIOV 2000   /* > UIO_MAXIOV: the kernel refuses the I/O as it takes it */

static const struct dio_backend_ops *ops;
static int fd = -1;
static void *ctx;
static uint8_t *bufs;          /* NBLK reads of BS */
static struct iovec iov[NBLK], bad[BADIOV];

static void setup(void)
{
	int e;
	ops = dio_backend_find_exact(t_backend(), &e);
	ck_assert_msg(ops, "backend %s: %s", t_backend(), strerror(e));
	/* a disk file system, not tmpfs: there io_uring would punt every I/O
	   to a worker and the uring backend's batches are plain syscalls */
	t_img = strdup("/var/tmp/dio-backend-XXXXXX");
	int tmp = mkstemp(t_img);
	ck_assert_int_ge(tmp, 0);
	close(tmp);
	fd = open(t_img, O_RDWR | O_DIRECT);
	ck_assert_int_ge(fd, 0);
	uint8_t *data = t_aligned(NBLK * BS);
	t_fill(data, NBLK * BS, 1, 1, 0);
	ck_assert_int_eq(pwrite(fd, data, NBLK * BS, 0), NBLK * BS);
	free(data);
	ctx = ops->open(fd, 64, &e);
	ck_assert_msg(ctx, "open: %s", strerror(e));
	bufs = t_aligned(NBLK * BS);
	for (int i = 0; i < NBLK; i++)
		iov[i] = (struct iovec){ bufs + (size_t)i * BS, BS };
	for (int i = 0; i < BADIOV; i++)
		bad[i] = (struct iovec){ bufs, 512 };
}

static void teardown(void)
{
	if (ctx)
		ops->close(ctx);
	ctx = NULL;
	if (fd >= 0)
		close(fd);
	fd = -1;
	free(bufs);
	t_img_cleanup();
}

/* Read bio of block `blk` into buffer `slot`. */
static struct dio_bio rd(int slot, int blk)
{
	return (struct dio_bio){ DIO_BIO_READ, 0, (uint64_t)blk * BS, &iov[slot], 1, 0 };
}

static void check_block(int slot, int blk)
{
	uint8_t want[BS];
	t_fill(want, BS, 1, 1, (uint64_t)blk * BS);
	ck_assert_msg(!memcmp(bufs + (size_t)slot * BS, want, BS), "slot %d: not block %d's bytes", slot, blk);
}

START_TEST(test_sync_batch_fails_only_the_io_the_kernel_refused)
{
	struct dio_bio b[6];
	for (int i = 0; i < 6; i++)
		b[i] = rd(i, 10 + i);
	b[2].iov = bad;
	b[2].iovcnt = BADIOV;
	memset(bufs, 0, NBLK * BS);
	ck_assert_int_eq(ops->submit(ctx, b, 6), 0);
	ck_assert_int_eq(b[2].res, -EINVAL);
	for (int i = 0; i < 6; i++)
		if (i != 2) {
			ck_assert_int_eq(b[i].res, BS);
			check_block(i, 10 + i);
		}
	/* the next batch gets its own completions, nothing left over */
	struct dio_bio c[3] = { rd(20, 40), rd(21, 41), rd(22, 42) };
	ck_assert_int_eq(ops->submit(ctx, c, 3), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(c[i].res, BS);
		check_block(20 + i, 40 + i);
	}
}
END_TEST

/* Reap exactly `n` and then nothing more. */
static void reap_exactly(struct dio_bio **want, int n)
{
	struct dio_bio *done[16];
	int got = 0;
	while (got < n) {
		int r = ops->reap(ctx, done + got, 1, 16 - (unsigned)got, 5000);
		ck_assert_msg(r > 0, "reap: %d after %d of %d", r, got, n);
		got += r;
	}
	ck_assert_int_eq(got, n);
	for (int i = 0; i < n; i++) {
		int k = 0;
		while (k < n && done[k] != want[i])
			k++;
		ck_assert_msg(k < n, "bio %d never came back", i);
	}
	ck_assert_int_eq(ops->reap(ctx, done, 0, 16, 0), 0);
}

START_TEST(test_async_submit_says_how_many_went_down_and_only_those_come_back)
{
	if (!ops->submit_async) {
		fprintf(stderr, "SKIP %s: backend %s has no asynchronous pair\n", __func__, t_backend());
		return;
	}
	ck_assert_uint_ge(ops->abi, 6);
	struct dio_bio b[5];
	struct dio_bio *p[5];
	for (int i = 0; i < 5; i++) {
		b[i] = rd(i, 20 + i);
		p[i] = &b[i];
	}
	b[2].iov = bad;
	b[2].iovcnt = BADIOV;
	int r = ops->submit_async(ctx, p, 5);
	/* the kernel stops at the bad one (aio: 2 went down) or takes it
	   and completes it with the error (io_uring: all 5) */
	ck_assert_msg(r >= 2 && r <= 5, "submit_async: %d", r);
	reap_exactly(p, r);
	for (int i = 0; i < r; i++) {
		if (i == 2) {
			ck_assert_int_eq(b[i].res, -EINVAL);
			continue;
		}
		ck_assert_int_eq(b[i].res, BS);
		check_block(i, 20 + i);
	}
	/* a clean batch afterwards: all of it, and only it */
	struct dio_bio c[3] = { rd(10, 50), rd(11, 51), rd(12, 52) };
	struct dio_bio *q[3] = { &c[0], &c[1], &c[2] };
	ck_assert_int_eq(ops->submit_async(ctx, q, 3), 3);
	reap_exactly(q, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(c[i].res, BS);
		check_block(10 + i, 50 + i);
	}
}
END_TEST

/* A context bound to its thread (open_owned) used from another one: the
   kernel refuses to take anything (io_uring SINGLE_ISSUER: EEXIST). */
struct foreign { void *ctx; struct dio_bio **p; int r; };

static void *submit_from_elsewhere(void *arg)
{
	struct foreign *f = arg;
	f->r = ops->submit_async(f->ctx, f->p, 3);
	return NULL;
}

START_TEST(test_async_submit_refused_outright_leaves_nothing_queued)
{
	if (!ops->submit_async || !ops->open_owned) {
		fprintf(stderr, "SKIP %s: backend %s has no thread-bound contexts\n", __func__, t_backend());
		return;
	}
	int e;
	void *own = ops->open_owned(fd, 64, &e);
	ck_assert_msg(own, "open_owned: %s", strerror(e));
	struct dio_bio b[3] = { rd(0, 30), rd(1, 31), rd(2, 32) };
	struct dio_bio *p[3] = { &b[0], &b[1], &b[2] };
	struct foreign f = { own, p, 0 };
	pthread_t th;
	pthread_create(&th, NULL, submit_from_elsewhere, &f);
	pthread_join(th, NULL);
	void *shared = ctx;
	ctx = own;
	if (f.r > 0) {
		/* not bound on this kernel: they went down, reap them */
		fprintf(stderr, "SKIP %s: the kernel took I/O on a foreign thread's ring\n", __func__);
		reap_exactly(p, f.r);
	} else {
		ck_assert_int_lt(f.r, 0);
		/* what was refused is gone: the owner's next submission and its
		   waits see only their own I/Os */
		struct dio_bio c[2] = { rd(10, 60), rd(11, 61) };
		struct dio_bio *q[2] = { &c[0], &c[1] };
		memset(bufs, 0, NBLK * BS);
		ck_assert_int_eq(ops->submit_async(own, q, 2), 2);
		reap_exactly(q, 2);
		for (int i = 0; i < 2; i++) {
			ck_assert_int_eq(c[i].res, BS);
			check_block(10 + i, 60 + i);
		}
		for (int i = 0; i < 3; i++)
			ck_assert_int_eq(b[i].res, 0);   /* never ran */
		/* and the synchronous path on it */
		struct dio_bio s[2] = { rd(12, 62), rd(13, 63) };
		ck_assert_int_eq(ops->submit(own, s, 2), 0);
		ck_assert_int_eq(s[0].res, BS);
		ck_assert_int_eq(s[1].res, BS);
		check_block(12, 62);
		check_block(13, 63);
		ck_assert_int_eq(ops->reap(own, (struct dio_bio *[4]){ 0 }, 0, 4, 0), 0);
	}
	ctx = shared;
	ops->close(own);
}
END_TEST

/* A reap's timeout is one for the whole call, however often a signal
   interrupts the wait: a thread sends the reaper SIGUSR1 (no SA_RESTART)
   every 20 ms for 5 s, and a reap of nothing with 300 ms must still end
   well before those 5 s (it restarted its full wait at every signal). */
static void on_usr1(int sig) { (void)sig; }
struct pester { pthread_t target; atomic_bool stop; };

static void *pester(void *arg)
{
	struct pester *p = arg;
	for (int i = 0; i < 250 && !atomic_load(&p->stop); i++) {
		pthread_kill(p->target, SIGUSR1);
		usleep(20000);
	}
	return NULL;
}

static long ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

START_TEST(test_a_reap_interrupted_by_signals_ends_at_its_timeout)
{
	if (!ops->reap) {
		fprintf(stderr, "SKIP %s: backend %s has no reap\n", __func__, t_backend());
		return;
	}
	struct sigaction sa = { .sa_handler = on_usr1 }, old;   /* sa_flags 0: no restart */
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
	struct pester p = { pthread_self(), false };
	pthread_t th;
	pthread_create(&th, NULL, pester, &p);
	struct dio_bio *done[4];
	long t0 = ms_now();
	int r = ops->reap(ctx, done, 1, 4, 300);
	long took = ms_now() - t0;
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	sigaction(SIGUSR1, &old, NULL);
	ck_assert_int_eq(r, 0);
	ck_assert_msg(took >= 250 && took < 3000, "a reap with a 300 ms timeout took %ld ms", took);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("backend");
	TCase *tc = tcase_create("backend");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_sync_batch_fails_only_the_io_the_kernel_refused);
	tcase_add_test(tc, test_async_submit_says_how_many_went_down_and_only_those_come_back);
	tcase_add_test(tc, test_async_submit_refused_outright_leaves_nothing_queued);
	tcase_add_test(tc, test_a_reap_interrupted_by_signals_ends_at_its_timeout);
	suite_add_tcase(s, tc);
	return t_run(s);
}
