/*
 * Range locks, striped so that no request takes a file-wide lock.
 *
 * The file's block space is cut into chunks of RL_CHUNK blocks, and chunk
 * c belongs to stripe c % RL_STRIPES.  Each stripe has its own mutex and
 * the list of held ranges that touch any of its chunks.  A range is
 * entered in every stripe its chunks map to (all of them if it spans
 * RL_STRIPES chunks or more), so two overlapping ranges always share a
 * stripe and meet on its list; the check there is exact, so ranges that
 * merely share a stripe never wait for each other.
 *
 * Taking a range locks its stripes in ascending index order, checks every
 * one for a conflict, and enters the range into all of them only if there
 * is none: the check and the entry are one step, so nobody waits while
 * holding a range.  On a conflict it keeps only the conflicting stripe,
 * and sleeps on that stripe's condition variable until an unlock there,
 * then starts over.  A 4 KiB request touches one stripe, shared with
 * 1/RL_STRIPES of the file's chunks, never with the whole file.  The
 * nodes live in the caller's struct dio_range (stack or queue slot), so
 * taking a range costs no malloc; each knows the link that points to it,
 * so releasing one does not scan the list (at QD32 that scan was about
 * 30 of a queued read's instructions).
 *
 * A stripe's list is guarded by a spin lock, not a mutex: every request
 * takes and releases a range, the section is a few pointer moves and a
 * scan of the stripe's held ranges, and a pthread mutex pair cost a
 * queued 4 KiB read about 100 of its ~1,300 instructions.  A spinner
 * that finds the lock taken for long yields its CPU (the holder may have
 * been preempted).  Sleeping on a conflict uses the stripe's mutex and
 * condition variable, with no lost wake-up: the sleeper counts itself in
 * waiters and takes mu before it lets the spin lock go, and an unlocker
 * looks at waiters after its own spin section, so it either sees the
 * sleeper or the sleeper saw its range gone; to wake it, the unlocker
 * takes mu, which it gets only once the sleeper is inside cond_wait.
 *
 * A queued request holds its range until its queue reaps it, and only
 * the thread that last used the queue may do that.  That thread waiting
 * for the range itself (a synchronous read of what it just queued, a
 * truncate) would wait forever: a range held by such a request carries
 * the queue's last-user slot (q_user), and a take that would sleep on
 * one whose last user is the caller fails with EDEADLK instead.
 */
#include "internal.h"
#include <sched.h>
#include <stdlib.h>

/* Spin until the holder lets go, yielding now and then (it may have been
   preempted); out of line, so that the uncontended take below is a few
   instructions inlined where it is used. */
static NOINLINE void stripe_lock_contended(struct rl_stripe *s)
{
	for (unsigned spins = 0; atomic_exchange_explicit(&s->busy, 1, memory_order_acquire);)
		while (atomic_load_explicit(&s->busy, memory_order_relaxed))
			if (++spins % 64 == 0)
				sched_yield();
}

static inline void stripe_lock(struct rl_stripe *s)
{
	if (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire))
		stripe_lock_contended(s);
}

static void stripe_unlock(struct rl_stripe *s)
{
	atomic_store_explicit(&s->busy, 0, memory_order_release);
}

struct dio_rangelock *rl_new(void)
{
	struct dio_rangelock *rl;
	if (dio_memalign((void **)&rl, 64, sizeof(*rl)))
		return NULL;
	for (unsigned i = 0; i < RL_STRIPES; i++) {
		pthread_mutex_init(&rl->s[i].mu, NULL);
		pthread_cond_init(&rl->s[i].cv, NULL);
		rl->s[i].held = NULL;
		atomic_init(&rl->s[i].busy, 0);
		atomic_init(&rl->s[i].waiters, 0);
	}
	return rl;
}

void rl_free(struct dio_rangelock *rl)
{
	if (!rl)
		return;
	for (unsigned i = 0; i < RL_STRIPES; i++) {
		pthread_mutex_destroy(&rl->s[i].mu);
		pthread_cond_destroy(&rl->s[i].cv);
	}
	free(rl);
}

static void rl_setup(struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	r->start = start;
	r->end = end > start ? end : start + 1;
	r->excl = excl;
	uint64_t c0 = r->start / RL_CHUNK, c1 = (r->end - 1) / RL_CHUNK;
	if (c1 - c0 + 1 >= RL_STRIPES) {
		r->s0 = 0;
		r->ns = RL_STRIPES;
	} else {
		r->s0 = (unsigned)(c0 % RL_STRIPES);
		r->ns = (unsigned)(c1 - c0 + 1);
	}
}

/* The k-th stripe of r in ascending index order (the lock order): the
   stripes are s0 .. s0+ns-1 modulo RL_STRIPES, which may wrap to 0. */
static unsigned rl_nth(const struct dio_range *r, unsigned k)
{
	unsigned wrap = r->s0 + r->ns > RL_STRIPES ? r->s0 + r->ns - RL_STRIPES : 0;
	return k < wrap ? k : r->s0 + (k - wrap);
}

/* Does a range of s that r waits for belong to a queued request that
   only the caller can reap (spin lock held)? */
static bool stripe_self_held(const struct rl_stripe *s, const struct dio_range *r, unsigned me)
{
	for (const struct rl_node *n = s->held; n; n = n->next) {
		const struct dio_range *h = n->owner;
		if (h->start < r->end && r->start < h->end && (h->excl || r->excl) && h->q_user &&
		    atomic_load_explicit(h->q_user, memory_order_relaxed) == me)
			return true;
	}
	return false;
}

static bool stripe_conflicts(const struct rl_stripe *s, const struct dio_range *r)
{
	for (const struct rl_node *n = s->held; n; n = n->next) {
		const struct dio_range *h = n->owner;
		if (h->start < r->end && r->start < h->end && (h->excl || r->excl))
			return true;
	}
	return false;
}

/* Enter node n of r at the head of s's list (spin lock held). */
static void stripe_enter(struct rl_stripe *s, struct rl_node *n, struct dio_range *r)
{
	n->owner = r;
	n->next = s->held;
	n->pprev = &s->held;
	if (s->held)
		s->held->pprev = &n->next;
	s->held = n;
}

/*
 * Lock r's stripes and enter it if nothing conflicts.  Returns RL_STRIPES
 * on success (all stripes released), else the index of a conflicting
 * stripe whose spin lock is still held (the others released).
 */
static NOINLINE unsigned rl_try_enter_many(struct dio_rangelock *rl, struct dio_range *r)
{
	for (unsigned k = 0; k < r->ns; k++)
		stripe_lock(&rl->s[rl_nth(r, k)]);
	unsigned bad = RL_STRIPES;
	for (unsigned k = 0; k < r->ns && bad == RL_STRIPES; k++)
		if (stripe_conflicts(&rl->s[rl_nth(r, k)], r))
			bad = rl_nth(r, k);
	for (unsigned k = 0; k < r->ns; k++) {
		unsigned i = rl_nth(r, k);
		if (bad == RL_STRIPES)
			stripe_enter(&rl->s[i], &r->node[k], r);
		if (i != bad)
			stripe_unlock(&rl->s[i]);
	}
	return bad;
}

/* The same; the common case (a request inside one chunk: one stripe)
   inline. */
static inline unsigned rl_try_enter(struct dio_rangelock *rl, struct dio_range *r)
{
	if (r->ns != 1)
		return rl_try_enter_many(rl, r);
	struct rl_stripe *s = &rl->s[r->s0];
	stripe_lock(s);
	if (stripe_conflicts(s, r))
		return r->s0;
	stripe_enter(s, &r->node[0], r);
	stripe_unlock(s);
	return RL_STRIPES;
}

int rl_lock_owned(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	rl_setup(r, start, end, excl);
	unsigned bad;
	while ((bad = rl_try_enter(rl, r)) != RL_STRIPES) {
		struct rl_stripe *s = &rl->s[bad];
		if (stripe_self_held(s, r, dio_thread_slot())) {
			stripe_unlock(s);
			return -EDEADLK;
		}
		/* counted and holding mu before the stripe is let go: see
		   the top of the file */
		atomic_fetch_add(&s->waiters, 1);
		pthread_mutex_lock(&s->mu);
		stripe_unlock(s);
		pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
		atomic_fetch_sub(&s->waiters, 1);
	}
	return 0;
}

int rl_lock(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	r->q_user = NULL;
	return rl_lock_owned(rl, r, start, end, excl);
}

/* Wake the sleepers of stripe s (out of line: an unlock rarely has any). */
static NOINLINE void stripe_wake(struct rl_stripe *s)
{
	pthread_mutex_lock(&s->mu);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Take node n of r off stripe s's list (its spin lock held). */
static inline void stripe_unlink(struct rl_node *n, const struct dio_range *r)
{
	DIO_ASSERT(*n->pprev == n && n->owner == r);   /* unlocking a range that is not held */
	(void)r;
	*n->pprev = n->next;
	if (n->next)
		n->next->pprev = n->pprev;
}

/* Take node n of r off stripe s's list, and wake the stripe's sleepers. */
static inline void stripe_leave(struct rl_stripe *s, struct rl_node *n, const struct dio_range *r)
{
	stripe_lock(s);
	stripe_unlink(n, r);
	stripe_unlock(s);
	if (atomic_load(&s->waiters))
		stripe_wake(s);
}

/* rl_unlock past its first attempt: several stripes, or one that another
   thread holds (taken spinning). */
static NOINLINE void rl_unlock_many(struct dio_rangelock *rl, struct dio_range *r)
{
	for (unsigned k = 0; k < r->ns; k++)
		stripe_leave(&rl->s[rl_nth(r, k)], &r->node[k], r);
}

/* The usual case, one stripe and nobody in its spin lock, calls nothing
   but to wake a sleeper. */
void rl_unlock(struct dio_rangelock *rl, struct dio_range *r)
{
	struct rl_stripe *s = &rl->s[r->s0];
	if (r->ns != 1 || atomic_exchange_explicit(&s->busy, 1, memory_order_acquire)) {
		rl_unlock_many(rl, r);
		return;
	}
	stripe_unlink(&r->node[0], r);
	stripe_unlock(s);
	if (atomic_load(&s->waiters))
		stripe_wake(s);
}

/* rl_trylock past its first attempt: several stripes, or one that
   another thread holds (taken spinning, as rl_lock does). */
static NOINLINE bool rl_trylock_many(struct dio_rangelock *rl, struct dio_range *r)
{
	unsigned bad = rl_try_enter_many(rl, r);
	if (bad == RL_STRIPES)
		return true;
	stripe_unlock(&rl->s[bad]);
	return false;
}

/* Take the range only if that needs no waiting (a queue must not sleep on
   a range its own in-flight requests hold).  The usual case, one stripe
   and nobody in its spin lock, calls nothing. */
bool rl_trylock_owned(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	rl_setup(r, start, end, excl);
	if (r->ns != 1)
		return rl_trylock_many(rl, r);
	struct rl_stripe *s = &rl->s[r->s0];
	if (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire))
		return rl_trylock_many(rl, r);
	bool free = !stripe_conflicts(s, r);
	if (free)
		stripe_enter(s, &r->node[0], r);
	stripe_unlock(s);
	return free;
}

bool rl_trylock(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	r->q_user = NULL;
	return rl_trylock_owned(rl, r, start, end, excl);
}
