/*
 * Logging, the debug build's assertions and the thread's counter shard:
 * the bottom layer, called from every other file and calling none of
 * them.
 */
#include "internal.h"
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*log_fn)(int, const char *, void *);
static void *log_arg;

DIO_API void dio_set_log(void (*fn)(int level, const char *msg, void *arg), void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

/* dio_fsck diverts this thread's error messages to its report callback */
DIO_TLS void (*dio_log_tap)(int level, const char *msg, void *arg);
DIO_TLS void *dio_log_tap_arg;

void dio_log(int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (dio_log_tap && level <= DIO_LOG_WARN)
		dio_log_tap(level, msg, dio_log_tap_arg);
	pthread_mutex_lock(&log_lock);
	if (log_fn)
		log_fn(level, msg, log_arg);
	pthread_mutex_unlock(&log_lock);
}

/* A broken invariant: say which, where, and stop before it does harm.
   Straight to stderr as well: the program's log function may be the
   thing that cannot run any more. */
void dio_assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "libdio: %s:%d: assertion failed: %s\n", file, line, what);
	dio_log(DIO_LOG_ERR, "%s:%d: assertion failed: %s", file, line, what);
	abort();
}

bool dio_mutex_held(pthread_mutex_t *m)
{
	int r = pthread_mutex_trylock(m);
	if (r == 0)
		pthread_mutex_unlock(m);
	return r != 0;
}

bool dio_rwlock_held(pthread_rwlock_t *l)
{
	int r = pthread_rwlock_trywrlock(l);
	if (r == 0)
		pthread_rwlock_unlock(l);
	return r != 0;
}

/* A small number per thread, given at its first use: which counter shard
   (CNT) the thread adds to, so that counting never bounces a line, and
   which thread owns a DIO_QUEUE_SINGLE_THREAD queue (no two threads ever
   get the same one). */
static atomic_uint next_thread_slot;
DIO_TLS unsigned dio_thread_slot_v;

unsigned dio_thread_slot_assign(void)
{
	dio_thread_slot_v = atomic_fetch_add_explicit(&next_thread_slot, 1, memory_order_relaxed) + 1;
	return dio_thread_slot_v;
}

int64_t dio_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
}

int dio_ms_left(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t left = deadline - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

_Atomic long dio_alloc_fail_in;
_Atomic bool dio_alloc_tight;

bool dio_alloc_countdown(void)
{
	long k = atomic_load_explicit(&dio_alloc_fail_in, memory_order_relaxed);
	while (k > 0 && !atomic_compare_exchange_weak_explicit(&dio_alloc_fail_in, &k, k - 1, memory_order_relaxed,
							       memory_order_relaxed))
		;
	return k == 1;   /* this one: the countdown is off from here */
}
