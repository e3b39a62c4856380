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

/*
 * One stripe's held list, released from its head, its middle and its
 * tail: each unlock unlinks its own node through the link that points to
 * it, so whatever the order, a released range can be taken again at once
 * and every range still held still refuses.  One thread, so the release
 * order is exact.
 */
START_TEST(test_ranges_released_in_any_order_leave_the_others_held)
{
	rl = rl_new();
	ck_assert_ptr_nonnull(rl);
	enum { N = 12 };
	/* blocks 0, 2, 4, ...: disjoint, all in chunk 0 (one stripe); the
	   list holds them newest first */
	struct dio_range held[N];
	bool is_held[N];
	for (int i = 0; i < N; i++) {
		ck_assert(rl_trylock(rl, &held[i], (uint64_t)(2 * i), (uint64_t)(2 * i + 1), true));
		is_held[i] = true;
	}
	/* the list's head (the newest), its tail (the oldest), then from the
	   middle, then the rest */
	const int order[N] = { N - 1, 0, 5, 6, 1, N - 2, 3, 8, 2, 4, 7, 9 };
	for (int k = 0; k < N; k++) {
		rl_unlock(rl, &held[order[k]]);
		is_held[order[k]] = false;
		for (int i = 0; i < N; i++) {
			struct dio_range probe;
			bool got = rl_trylock(rl, &probe, (uint64_t)(2 * i), (uint64_t)(2 * i + 1), false);
			ck_assert_msg(got == !is_held[i], "after %d releases: range %d %s", k + 1, i,
				      is_held[i] ? "taken while held" : "refused after its release");
			if (got)
				rl_unlock(rl, &probe);
		}
	}
	/* and a range over several stripes, among one-stripe ones */
	struct dio_range wide, small, all_probe;
	ck_assert(rl_trylock(rl, &small, 1, 2, true));
	ck_assert(rl_trylock(rl, &wide, RL_CHUNK, RL_CHUNK * (RL_STRIPES + 2), true));
	ck_assert(!rl_trylock(rl, &all_probe, 0, RL_CHUNK * 2, false));
	rl_unlock(rl, &small);
	ck_assert(!rl_trylock(rl, &all_probe, 0, RL_CHUNK * 2, false));
	rl_unlock(rl, &wide);
	ck_assert(rl_trylock(rl, &all_probe, 0, NBLK, true));
	rl_unlock(rl, &all_probe);
	rl_free(rl);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rangelock");
	TCase *tc = tcase_create("rangelock");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_overlapping_holders_exclude_each_other_and_sleepers_wake);
	tcase_add_test(tc, test_ranges_released_in_any_order_leave_the_others_held);
	suite_add_tcase(s, tc);
	return t_run(s);
}
