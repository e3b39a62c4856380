/*
 * An iovec cursor: a position in a caller's vector, and the slices of
 * the next n bytes from it.  Utility layer: rw.c builds device I/Os with
 * it, devio.c continues short transfers with it.
 */
#ifndef DIO_CURSOR_H
#define DIO_CURSOR_H
#include "internal.h"
#include <limits.h>
#include <string.h>

struct cursor {
	const struct iovec *iov;
	int cnt;
	size_t skip;              /* bytes consumed of iov[0] */
};

static inline void cur_advance(struct cursor *c, size_t n)
{
	while (n) {
		size_t avail = c->iov->iov_len - c->skip;
		if (n < avail) {
			c->skip += n;
			return;
		}
		n -= avail;
		c->iov++;
		c->cnt--;
		c->skip = 0;
	}
	while (c->cnt && c->iov->iov_len == c->skip) {
		c->iov++;
		c->cnt--;
		c->skip = 0;
	}
}

/* Slices for as much of the next *n bytes as max slices hold, ending
   where a segment ends if they cannot hold all; *n becomes that. */
static inline int cur_take(const struct cursor *c0, size_t *n, struct iovec *out, int max)
{
	struct cursor c = *c0;
	size_t left = *n;
	int k = 0;
	while (left && c.cnt && k < max) {
		size_t take = MIN(left, c.iov->iov_len - c.skip);
		if (take)
			out[k++] = (struct iovec){ (char *)c.iov->iov_base + c.skip, take };
		left -= take;
		c.skip += take;
		if (c.skip == c.iov->iov_len) {
			c.iov++;
			c.cnt--;
			c.skip = 0;
		}
	}
	*n -= left;
	return k;
}

/* Slices covering all of the next n bytes into out[]; -1 if more than
   max (a queue slot takes a request whole or runs it inline). */
static inline int cur_slices(const struct cursor *c0, size_t n, struct iovec *out, int max)
{
	size_t got = n;
	int k = cur_take(c0, &got, out, max);
	return got == n ? k : -1;
}

/* If the next n bytes are whole segments of the caller's (the usual
   aligned request: one piece, from its first segment to its last), how
   many: the I/O can take the caller's iovec array as it is, with no
   copy and no limit but IOV_MAX.  0 if not. */
static inline int cur_whole(const struct cursor *c, size_t n)
{
	if (c->skip)
		return 0;
	int k = 0;
	while (n && k < c->cnt && k < IOV_MAX) {
		size_t l = c->iov[k++].iov_len;
		if (l > n)
			return 0;
		n -= l;
	}
	return n ? 0 : k;
}

/* Copy between the cursor and a flat buffer (dir 0: into buf). */
static inline void cur_copy(struct cursor *c, void *buf, size_t n, int to_user)
{
	char *p = buf;
	while (n) {
		size_t take = MIN(n, c->iov->iov_len - c->skip);
		char *u = (char *)c->iov->iov_base + c->skip;
		if (to_user)
			memcpy(u, p, take);
		else
			memcpy(p, u, take);
		p += take;
		n -= take;
		cur_advance(c, take);
	}
}

static inline void cur_zero(struct cursor *c, size_t n)
{
	while (n) {
		size_t take = MIN(n, c->iov->iov_len - c->skip);
		memset((char *)c->iov->iov_base + c->skip, 0, take);
		n -= take;
		cur_advance(c, take);
	}
}

static inline size_t iov_bytes(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

#endif
