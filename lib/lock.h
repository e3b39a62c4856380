/*
 * Range locks (lock.c): a file's blocks locked by range, shared or
 * exclusive, striped so that no request takes a file-wide lock.
 * Utility layer; lock.c says how it works.
 */
#ifndef DIO_LOCK_H
#define DIO_LOCK_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RL_STRIPES 16
#define RL_CHUNK   64u         /* blocks per chunk; chunk c is in stripe c % RL_STRIPES */
struct dio_range;
struct rl_node {
	struct dio_range *owner;
	struct rl_node *next, **pprev;   /* pprev: the link to this node (unlink in O(1)) */
};
struct dio_range {
	uint64_t start, end;       /* blocks [start, end) */
	/* a queued request's range: the thread slot that last used its
	   queue (only that thread can reap it), else NULL */
	const atomic_uint *q_user;
	bool excl;
	unsigned s0, ns;           /* stripes s0 .. s0+ns-1 (mod RL_STRIPES) */
	struct rl_node node[RL_STRIPES];
};
struct rl_stripe {
	atomic_uint busy;          /* a spin lock over held (lock.c says why) */
	atomic_uint waiters;       /* threads asleep on cv: unlock wakes only if any */
	struct rl_node *held;
	pthread_mutex_t mu;        /* for cv only: sleeping on a conflict */
	pthread_cond_t cv;
} __attribute__((aligned(64)));
struct dio_rangelock {
	struct rl_stripe s[RL_STRIPES];
};
struct dio_rangelock *rl_new(void);
void rl_free(struct dio_rangelock *rl);
/* 0, or -EDEADLK: the range is held by a queued request that only the
   calling thread can reap (lock.c); nothing is held then. */
int  rl_lock(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl);
void rl_unlock(struct dio_rangelock *rl, struct dio_range *r);
bool rl_trylock(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl);
/* The same for a range whose q_user the caller set (NULL or a queue's). */
int  rl_lock_owned(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl);
bool rl_trylock_owned(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl);

#endif
