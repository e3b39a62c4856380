/*
 * The range lock (lib/lock.c) on its own, under threads: no two holders
 * of overlapping ranges at once unless both are shared, and every thread
 * that sleeps on a conflict is woken (a lost wake-up hangs the test until
 * Check's timeout fails it).  Each block has a word the holders write:
 * an exclusive holder stores its id and checks it is still there when it
 * lets go; a shared holder counts itself in and out, and an exclusive
 * holder must find the count 0.  Ranges are short (inside a chunk: one
 * stripe) or long (across many chunks and stripes, the path that takes
 * several stripes in order and keeps only the conflicting one).
 */
#include "helpers.h"
#include "../lib/internal.h"
#include <pthread.h>
#include <sched.h>

#define NBLK (RL_CHUNK * RL_STRIPES * 3)
#define THREADS 6
#define ROUNDS 20000

static struct dio_rangelock *rl;
static _Atomic long owner[NBLK];     /* exclusive holder's id, or 0 */
static _Atomic long readers[NBLK];   /* shared holders */
static _Atomic long violations, exclusive_taken;

struct worker {
	pthread_t th;
	long id;
	uint64_t seed;
};

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t r = next_rand(&w->seed);
		uint64_t len = r % 8 ? 1 + r / 8 % 16 : 1 + r / 8 % (NBLK / 2);
		uint64_t start = (r >> 24) % (NBLK - len);
		bool excl = (r >> 40) % 3 == 0;
		struct dio_range rg;
		if ((r >> 44) % 4 == 0) {
			if (!rl_trylock(rl, &rg, start, start + len, excl))
				continue;
		} else {
			rl_lock(rl, &rg, start, start + len, excl);
		}
		for (uint64_t b = start; b < start + len; b++) {
			if (excl) {
				if (atomic_load(&readers[b]) || atomic_exchange(&owner[b], w->id))
					atomic_fetch_add(&violations, 1);
			} else {
				atomic_fetch_add(&readers[b], 1);
				if (atomic_load(&owner[b]))
					atomic_fetch_add(&violations, 1);
			}
		}
		if (i % 16 == 0)
			sched_yield();   /* hold it across a reschedule now and then */
		for (uint64_t b = start; b < start + len; b++) {
			if (excl) {
				if (atomic_exchange(&owner[b], 0) != w->id)
					atomic_fetch_add(&violations, 1);
			} else {
				atomic_fetch_sub(&readers[b], 1);
			}
		}
		rl_unlock(rl, &rg);
		atomic_fetch_add(&exclusive_taken, excl);
	}
	return NULL;
}

START_TEST(test_overlapping_holders_exclude_each_other_and_sleepers_wake)
{
	rl = rl_new();
	ck_assert_ptr_nonnull(rl);
	struct worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .id = i + 1, .seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) };
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i].th, NULL);
	long bad = atomic_load(&violations), taken = atomic_load(&exclusive_taken);
	ck_assert_int_eq(bad, 0);
	ck_assert_int_gt(taken, ROUNDS / 2);
	for (unsigned b = 0; b < NBLK; b++) {
		long o = atomic_load(&owner[b]), n = atomic_load(&readers[b]);
		ck_assert_int_eq(o, 0);
		ck_assert_int_eq(n, 0);
	}
	/* nothing is left held: every range can be taken exclusively */
	struct dio_range all;
	ck_assert(rl_trylock(rl, &all, 0, NBLK, true));
	rl_unlock(rl, &all);
	rl_free(rl);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rangelock");
	TCase *tc = tcase_create("rangelock");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_overlapping_holders_exclude_each_other_and_sleepers_wake);
	suite_add_tcase(s, tc);
	return t_run(s);
}
