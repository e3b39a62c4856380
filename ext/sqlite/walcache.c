/*
 * The WAL's bytes in memory.  A checkpoint copies each page from the WAL
 * into the database, reading it back from the WAL file: on a file system
 * the kernel's page cache serves those reads, on a libdio volume each is
 * a device read (two blocks, as frames are not block-aligned), one per
 * page of every checkpoint.  So the VFS keeps what it wrote to a WAL,
 * from offset 0 up to WC_MAX bytes (SQLite's default checkpoint point,
 * 1,000 pages, is 4 MiB of 4 KiB pages), and serves reads inside it.
 *
 * Every write of the WAL goes through the VFS (the volume belongs to this
 * process), so the copy is the file: the bytes [0, valid) are all here
 * and equal the file's, whether or not a write run still holds them.  A
 * write that starts past `valid` (a gap) or ends past WC_MAX ends the
 * copy at its start; a truncation or an unlink cuts it.  One copy per WAL
 * name, shared by the connections that have it open, freed with the last.
 */
#include "dsq.h"
#include <stdlib.h>
#include <string.h>

#define WC_CHUNK (1u << 20)
#define WC_MAX (16u << 20)

struct dsq_wcache {
	pthread_mutex_t lock;
	uint64_t valid;                       /* [0, valid) is here */
	uint8_t *chunk[WC_MAX / WC_CHUNK];    /* allocated as the WAL grows */
};

struct dsq_wcache *dsq_wc_new(void)
{
	struct dsq_wcache *c = calloc(1, sizeof(*c));
	if (c)
		pthread_mutex_init(&c->lock, NULL);
	return c;
}

void dsq_wc_free(struct dsq_wcache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < WC_MAX / WC_CHUNK; i++)
		free(c->chunk[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Copy between the cache and buf over [off, off+n), inside WC_MAX. */
static void span(struct dsq_wcache *c, uint8_t *buf, size_t n, uint64_t off, bool to_cache)
{
	while (n) {
		size_t i = (size_t)(off / WC_CHUNK), at = (size_t)(off % WC_CHUNK);
		size_t k = WC_CHUNK - at < n ? WC_CHUNK - at : n;
		if (to_cache)
			memcpy(c->chunk[i] + at, buf, k);
		else
			memcpy(buf, c->chunk[i] + at, k);
		buf += k;
		off += k;
		n -= k;
	}
}

void dsq_wc_write(struct dsq_wcache *c, const void *buf, size_t n, uint64_t off)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	bool fits = off <= c->valid && off + n <= WC_MAX;
	for (uint64_t i = off / WC_CHUNK; fits && n && i <= (off + n - 1) / WC_CHUNK; i++)
		if (!c->chunk[i] && !(c->chunk[i] = malloc(WC_CHUNK)))
			fits = false;
	if (fits) {
		span(c, (uint8_t *)buf, n, off, true);
		if (off + n > c->valid)
			c->valid = off + n;
	} else if (off < c->valid) {
		c->valid = off;   /* from here on the file is not all here */
	}
	pthread_mutex_unlock(&c->lock);
}

bool dsq_wc_read(struct dsq_wcache *c, void *buf, size_t n, uint64_t off)
{
	if (!c)
		return false;
	pthread_mutex_lock(&c->lock);
	bool hit = off + n <= c->valid;
	if (hit)
		span(c, buf, n, off, false);
	pthread_mutex_unlock(&c->lock);
	return hit;
}

bool dsq_wc_holds(struct dsq_wcache *c, uint64_t off, size_t n)
{
	if (!c)
		return false;
	pthread_mutex_lock(&c->lock);
	bool hit = off + n <= c->valid;
	pthread_mutex_unlock(&c->lock);
	return hit;
}

void dsq_wc_cut(struct dsq_wcache *c, uint64_t size)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	if (size < c->valid)
		c->valid = size;
	pthread_mutex_unlock(&c->lock);
}
