/*
 * dio_sqlite_register: the VFS for a program that links SQLite and
 * libdio_sqlite and mounts (or names) volumes itself.  SQLite's functions
 * are the program's own here.
 *
 * Page buffers.  The zero-copy path needs buffers aligned to the
 * volume's mem_align, and SQLite's page cache takes its pages from
 * malloc (16-byte aligned).  Before SQLite is initialized, SQLite lets a
 * program supply its allocator: every allocation of a page or more then
 * starts on a 4 KiB boundary, and the page cache's first pages (which it
 * otherwise carves from one bulk allocation at odd offsets) are
 * allocated one by one.  A page read or written at a page-aligned offset
 * then moves with no copy.  Registered after initialization, or loaded
 * as an extension, the VFS works the same with bounced page I/O.
 */
#include "dsq.h"
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_ALIGN 4096

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

static void *am_malloc(int n)
{
	void *p = NULL;
	if (n < PAGE_ALIGN)
		return malloc((size_t)n);
	return posix_memalign(&p, PAGE_ALIGN, (size_t)n) ? NULL : p;
}

static void am_free(void *p) { free(p); }
static int am_size(void *p) { return p ? (int)malloc_usable_size(p) : 0; }
static int am_roundup(int n) { return (n + 7) & ~7; }
static int am_init(void *arg) { (void)arg; return SQLITE_OK; }
static void am_shutdown(void *arg) { (void)arg; }

static void *am_realloc(void *p, int n)
{
	if (n < PAGE_ALIGN)
		return realloc(p, (size_t)n);
	void *q = am_malloc(n);
	if (q && p) {
		size_t old = malloc_usable_size(p);
		memcpy(q, p, old < (size_t)n ? old : (size_t)n);
		free(p);
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
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &aligned_mem) == SQLITE_OK)
		sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
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
