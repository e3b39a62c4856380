/*
 * Per-file extent maps: a sorted array of non-overlapping extents.
 *
 * Lookup is a binary search (O(log n)); the I/O path calls em_search once
 * per request and walks forward from there.  Changes shift the tail of
 * the array; they happen only on the metadata path (allocation, punch,
 * truncate, conversion), under md_lock and the inode's map lock.
 * Neighbours that are contiguous on the device and in the same state are
 * merged, so a file written in order stays one extent.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

size_t em_search(const struct dio_emap *m, uint64_t lblk)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->v[mid].lblk + m->v[mid].len <= lblk)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int em_reserve(struct dio_emap *m, size_t extra)
{
	if (m->n + extra <= m->cap)
		return 0;
	size_t cap = m->cap ? m->cap : 4;
	while (cap < m->n + extra)
		cap *= 2;
	struct dio_extent *v = realloc(m->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	m->v = v;
	m->cap = cap;
	return 0;
}

void em_free(struct dio_emap *m)
{
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
}

uint64_t em_blocks(const struct dio_emap *m)
{
	uint64_t t = 0;
	for (size_t i = 0; i < m->n; i++)
		t += m->v[i].len;
	return t;
}

static void em_open_gap(struct dio_emap *m, size_t at, size_t k)
{
	memmove(&m->v[at + k], &m->v[at], (m->n - at) * sizeof(m->v[0]));
	m->n += k;
}

static void em_close_gap(struct dio_emap *m, size_t at, size_t k)
{
	memmove(&m->v[at], &m->v[at + k], (m->n - at - k) * sizeof(m->v[0]));
	m->n -= k;
}

/*
 * Remove every mapping of [lblk, lblk+len), splitting extents that stick
 * out on either side.  fn (if set) receives each removed physical range.
 * Needs at most one extra slot (a split in the middle of one extent).
 */
int em_remove(struct dio_emap *m, uint64_t lblk, uint64_t len, em_free_fn fn, void *arg)
{
	uint64_t end = lblk + len;
	if (!len)
		return 0;
	if (em_reserve(m, 1) < 0)
		return -ENOMEM;
	size_t i = em_search(m, lblk);
	if (i < m->n && m->v[i].lblk < lblk && m->v[i].lblk + m->v[i].len > end) {
		/* one extent covers the range and sticks out on both sides */
		struct dio_extent *e = &m->v[i];
		uint64_t cut = lblk - e->lblk;
		em_open_gap(m, i + 1, 1);
		e = &m->v[i];
		struct dio_extent tail = *e;
		tail.lblk = end;
		tail.pblk = e->pblk + (end - e->lblk);
		tail.len = (uint32_t)(e->lblk + e->len - end);
		if (fn)
			fn(arg, e->pblk + cut, len, e->flags);
		e->len = (uint32_t)cut;
		m->v[i + 1] = tail;
		return 0;
	}
	if (i < m->n && m->v[i].lblk < lblk) {
		struct dio_extent *e = &m->v[i];
		uint64_t keep = lblk - e->lblk;
		if (fn)
			fn(arg, e->pblk + keep, e->len - keep, e->flags);
		e->len = (uint32_t)keep;
		i++;
	}
	size_t first = i;
	while (i < m->n && m->v[i].lblk + m->v[i].len <= end) {
		if (fn)
			fn(arg, m->v[i].pblk, m->v[i].len, m->v[i].flags);
		i++;
	}
	if (i < m->n && m->v[i].lblk < end) {
		struct dio_extent *e = &m->v[i];
		uint64_t cut = end - e->lblk;
		if (fn)
			fn(arg, e->pblk, cut, e->flags);
		e->lblk += cut;
		e->pblk += cut;
		e->len -= (uint32_t)cut;
	}
	if (i > first)
		em_close_gap(m, first, i - first);
	return 0;
}

static bool em_joins(const struct dio_extent *a, const struct dio_extent *b)
{
	return a->lblk + a->len == b->lblk && a->pblk + a->len == b->pblk &&
	       a->flags == b->flags && (uint64_t)a->len + b->len <= EXT_MAX_LEN;
}

/* Map [lblk, lblk+len) -> pblk; the range must hold no mapping. */
int em_insert(struct dio_emap *m, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags)
{
	while (len) {
		uint32_t piece = (uint32_t)MIN(len, (uint64_t)EXT_MAX_LEN);
		struct dio_extent ne = { lblk, pblk, piece, flags };
		size_t i = em_search(m, lblk);
		bool left = i > 0 && em_joins(&m->v[i - 1], &ne);
		bool right = i < m->n && em_joins(&ne, &m->v[i]);
		if (left && right && (uint64_t)m->v[i - 1].len + piece + m->v[i].len <= EXT_MAX_LEN) {
			m->v[i - 1].len += piece + m->v[i].len;
			em_close_gap(m, i, 1);
		} else if (left) {
			m->v[i - 1].len += piece;
		} else if (right) {
			m->v[i].lblk = lblk;
			m->v[i].pblk = pblk;
			m->v[i].len += piece;
		} else {
			if (em_reserve(m, 1) < 0)
				return -ENOMEM;
			em_open_gap(m, i, 1);
			m->v[i] = ne;
		}
		lblk += piece;
		pblk += piece;
		len -= piece;
	}
	return 0;
}
