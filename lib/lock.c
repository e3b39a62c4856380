/*
 * Range locks: a per-file list of held block ranges, shared or exclusive.
 * The mutex is held only to look at the list, never across I/O; the
 * nodes live on the callers' stacks, so taking a range costs no malloc.
 */
#include "internal.h"

void rl_init(struct dio_rangelock *rl)
{
	pthread_mutex_init(&rl->mu, NULL);
	pthread_cond_init(&rl->cv, NULL);
	rl->held = NULL;
	rl->waiters = 0;
}

void rl_destroy(struct dio_rangelock *rl)
{
	pthread_mutex_destroy(&rl->mu);
	pthread_cond_destroy(&rl->cv);
}

static bool rl_conflicts(const struct dio_rangelock *rl, const struct dio_range *r)
{
	for (const struct dio_range *h = rl->held; h; h = h->next)
		if (h->start < r->end && r->start < h->end && (h->excl || r->excl))
			return true;
	return false;
}

void rl_lock(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	r->start = start;
	r->end = end > start ? end : start + 1;
	r->excl = excl;
	pthread_mutex_lock(&rl->mu);
	while (rl_conflicts(rl, r)) {
		rl->waiters++;
		pthread_cond_wait(&rl->cv, &rl->mu);
		rl->waiters--;
	}
	r->next = rl->held;
	rl->held = r;
	pthread_mutex_unlock(&rl->mu);
}

void rl_unlock(struct dio_rangelock *rl, struct dio_range *r)
{
	pthread_mutex_lock(&rl->mu);
	for (struct dio_range **p = &rl->held; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	if (rl->waiters)
		pthread_cond_broadcast(&rl->cv);
	pthread_mutex_unlock(&rl->mu);
}

/* Take the range only if that needs no waiting (a queue must not sleep on
   a range its own in-flight requests hold). */
bool rl_trylock(struct dio_rangelock *rl, struct dio_range *r, uint64_t start, uint64_t end, bool excl)
{
	r->start = start;
	r->end = end > start ? end : start + 1;
	r->excl = excl;
	pthread_mutex_lock(&rl->mu);
	bool ok = !rl_conflicts(rl, r);
	if (ok) {
		r->next = rl->held;
		rl->held = r;
	}
	pthread_mutex_unlock(&rl->mu);
	return ok;
}
