/*
 * Memory for lib/'s metadata: the C library's allocator through one door
 * that a test can close.  tests/test_nomem.c makes the Nth allocation
 * from now fail, for every N, around one metadata call at a time, and
 * checks that the call either succeeds or fails having changed nothing,
 * in memory, in the journal and in the process-death log.  Off (one
 * relaxed load) otherwise; never on the data path, which allocates
 * nothing.
 */
#ifndef DIO_MEM_H
#define DIO_MEM_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

extern _Atomic long dio_alloc_fail_in;   /* 0: off; n: the nth allocation from now fails */
/* A record a call did not reserve room for counts as an allocation
   even where the pending journal has room to spare (journal.c): what the
   test sweeps over, and only there. */
extern _Atomic bool dio_alloc_tight;
bool dio_alloc_countdown(void);          /* log.c: true for the one that fails */

static inline bool dio_alloc_fails(void)
{
	return atomic_load_explicit(&dio_alloc_fail_in, memory_order_relaxed) && dio_alloc_countdown();
}

static inline void *dio_malloc(size_t n) { return dio_alloc_fails() ? NULL : malloc(n); }
static inline void *dio_calloc(size_t k, size_t n) { return dio_alloc_fails() ? NULL : calloc(k, n); }
static inline void *dio_realloc(void *p, size_t n) { return dio_alloc_fails() ? NULL : realloc(p, n); }
static inline int dio_memalign(void **p, size_t align, size_t n)
{
	return dio_alloc_fails() ? ENOMEM : posix_memalign(p, align, n);
}

#endif
