/*
 * dio_sqlite_register: the VFS for a program that links SQLite and
 * libdio_sqlite and mounts (or names) volumes itself.  SQLite's functions
 * are the program's own here.
 *
 * Page buffers.  The zero-copy path needs buffers aligned to the
 * volume's mem_align, and SQLite's page cache takes its pages from
 * malloc (16-byte aligned).  Before SQLite is initialized, SQLite lets a
 * program supply its allocator: every allocation from a page to 128 KiB
 * (any page and its header) then starts on a 4 KiB boundary, and the
 * page cache's first pages (which it otherwise carves from one bulk
 * allocation at odd offsets) are allocated one by one.  A page read or
 * written at a page-aligned offset then moves with no copy.  Registered after initialization, or loaded
 * as an extension, the VFS works the same with bounced page I/O.
 *
 * Page slots.  SQLite allocates a page and its header in one piece (4 KiB
 * and some 200 bytes): aligned one by one, each takes two memory pages,
 * and a process filling its cache takes two page faults per database
 * page (20,000 faults in bench/sqlite.c's run against stock SQLite's
 * 9,000).  Allocations from a page up to SLOT bytes are cut from 2 MiB
 * arenas in one reserved range instead, each filled in with one call
 * when it is taken (MADV_POPULATE_WRITE, Linux 5.14; elsewhere the pages
 * fault in as usual).  Huge pages (MADV_HUGEPAGE) were tried: fewer
 * faults still, but a fault that compacts memory stalls a phase now and
 * then (bench/RESULTS.md).  Freed slots are kept for reuse, not returned
 * to the system.  Without a reservation (a 32-bit address space too
 * small for it) or once the range is used up, allocations fall back to
 * posix_memalign.
 */
#include "dsq.h"
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE_ALIGN 4096
#define SLOT 8192u                /* a page of up to 8 KiB, or a 4 KiB one and its header */
#define ARENA ((size_t)2 << 20)
#define ALIGN_MAX (128u << 10)     /* larger than any page and its header */
#define RESERVE (sizeof(void *) >= 8 ? (size_t)64 << 30 : (size_t)0)

static struct {
	pthread_mutex_t lock;
	char *base;                   /* the range, ARENA-aligned; NULL: none (yet) */
	size_t size, used;            /* reserved; handed out as arenas */
	size_t bump;                  /* next unused slot's offset */
	void *free;                   /* freed slots, linked through their first word */
} slab = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool in_slab(const void *p)
{
	return slab.base && (const char *)p >= slab.base && (const char *)p < slab.base + slab.size;
}

/* Reserve the range: before SQLite is initialized with these methods,
   so that base and size never change while any thread allocates. */
static void slab_reserve(void)
{
	if (!RESERVE || slab.base)
		return;
	void *r = mmap(NULL, RESERVE + ARENA, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return;
	uintptr_t a = ((uintptr_t)r + ARENA - 1) & ~(uintptr_t)(ARENA - 1);
	slab.base = (char *)a;
	slab.size = RESERVE;
}

static void *slab_alloc(void)
{
	pthread_mutex_lock(&slab.lock);
	void *p = slab.free;
	if (p) {
		memcpy(&slab.free, p, sizeof(void *));
	} else if (slab.base && slab.bump < slab.used) {
		p = slab.base + slab.bump;
		slab.bump += SLOT;
	} else if (slab.base && slab.used < slab.size &&
		   !mprotect(slab.base + slab.used, ARENA, PROT_READ | PROT_WRITE)) {
#ifdef MADV_POPULATE_WRITE
		/* all its pages at once: refused by older kernels, which
		   then fault them in one by one */
		madvise(slab.base + slab.used, ARENA, MADV_POPULATE_WRITE);
#endif
		slab.used += ARENA;
		p = slab.base + slab.bump;
		slab.bump += SLOT;
	}
	pthread_mutex_unlock(&slab.lock);
	return p;
}

static void slab_put(void *p)
{
	pthread_mutex_lock(&slab.lock);
	memcpy(p, &slab.free, sizeof(void *));
	slab.free = p;
	pthread_mutex_unlock(&slab.lock);
}

struct dsq_api dsq;

static void api_direct(void)
{
	if (dsq.vfs_find)
		return;   /* the extension came first: its SQLite is the same one */
	dsq.vfs_find = sqlite3_vfs_find;
	dsq.vfs_register = sqlite3_vfs_register;
	dsq.log = sqlite3_log;
	dsq.mprintf = sqlite3_mprintf;
	dsq.uri_parameter = sqlite3_uri_parameter;
}

/* Page buffers: a page of up to 64 KiB and its header.  A smaller
   allocation needs no alignment, nor does a larger one (the sorter's
   buffer, doubled up to megabytes), which glibc's realloc then grows in
   place or, once mapped on its own, by moving its pages (mremap): an
   aligned copy of it would be copied and faulted in anew at every
   doubling (bench/RESULTS.md). */
static bool wants_alignment(int n)
{
	return n >= PAGE_ALIGN && (unsigned)n <= ALIGN_MAX;
}

static void *am_malloc(int n)
{
	void *p = NULL;
	if (!wants_alignment(n))
		return malloc((size_t)n);
	if ((unsigned)n <= SLOT && (p = slab_alloc()))
		return p;
	return posix_memalign(&p, PAGE_ALIGN, (size_t)n) ? NULL : p;
}

static void am_free(void *p)
{
	if (in_slab(p))
		slab_put(p);
	else
		free(p);
}

static int am_size(void *p)
{
	if (in_slab(p))
		return (int)SLOT;
	return p ? (int)malloc_usable_size(p) : 0;
}
static int am_roundup(int n) { return (n + 7) & ~7; }
static int am_init(void *arg) { (void)arg; return SQLITE_OK; }
static void am_shutdown(void *arg) { (void)arg; }

static void *am_realloc(void *p, int n)
{
	if (!in_slab(p) && !wants_alignment(n))
		return realloc(p, (size_t)n);
	if (in_slab(p) && n >= PAGE_ALIGN && (unsigned)n <= SLOT)
		return p;   /* still fits its slot */
	void *q = am_malloc(n);
	if (q && p) {
		size_t old = (size_t)am_size(p);
		memcpy(q, p, old < (size_t)n ? old : (size_t)n);
		am_free(p);
	}
	return q;
}

static const sqlite3_mem_methods aligned_mem = {
	am_malloc, am_free, am_realloc, am_size, am_roundup, am_init, am_shutdown, NULL
};

void dsq_config_memory(void)
{
	/* both fail with SQLITE_MISUSE once SQLite is initialized: then the
	   pages stay where SQLite puts them */
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &aligned_mem) == SQLITE_OK) {
		slab_reserve();
		sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
	}
}

int dio_sqlite_register(struct dio_vol *vol, const char *vfs_name, int make_default)
{
	api_direct();
	dsq_config_memory();   /* first: every other call initializes SQLite */
	const char *name = vfs_name ? vfs_name : "libdio";
	if (sqlite3_vfs_find(name))
		return SQLITE_MISUSE;   /* a VFS of that name exists (ours or not) */
	struct dsq_vfs *dv = calloc(1, sizeof(*dv));
	if (!dv)
		return SQLITE_NOMEM;
	int rc = dsq_vfs_init(dv, name, vol);
	if (rc == SQLITE_OK)
		rc = sqlite3_vfs_register(&dv->base, make_default);
	if (rc != SQLITE_OK)
		free(dv);   /* not registered: nothing refers to it */
	return rc;
}
