/*
 * Free space: a sorted array of free ranges, rebuilt at mount from the
 * extent maps (the maps are the only record of what is in use, so free
 * space can never disagree with them after a crash).
 *
 * Blocks freed by an operation go to a pending list tagged with the
 * journal sequence of that operation and return to the free ranges only
 * once that sequence is durable: until then a crash brings the old owner
 * back, and its data must still be there.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

static int alloc_grow(struct dio_alloc *a, size_t extra)
{
	if (a->n + extra <= a->cap)
		return 0;
	size_t cap = a->cap ? a->cap * 2 : 64;
	while (cap < a->n + extra)
		cap *= 2;
	struct dio_extent *v = realloc(a->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	a->v = v;
	a->cap = cap;
	return 0;
}

int alloc_init(struct dio_alloc *a, uint64_t first, uint64_t end)
{
	memset(a, 0, sizeof(*a));
	a->first = first;
	a->end = end;
	/* While building, v holds used ranges; alloc_finish_build inverts. */
	return 0;
}

void alloc_destroy(struct dio_alloc *a)
{
	free(a->v);
	free(a->pend);
	memset(a, 0, sizeof(*a));
}

int alloc_mark_used(struct dio_alloc *a, uint64_t pblk, uint64_t len)
{
	if (alloc_grow(a, 1) < 0)
		return -ENOMEM;
	a->v[a->n++] = (struct dio_extent){ 0, pblk, (uint32_t)len, 0 };
	return 0;
}

static int cmp_pblk(const void *x, const void *y)
{
	const struct dio_extent *a = x, *b = y;
	return a->pblk < b->pblk ? -1 : a->pblk > b->pblk;
}

/* Turn the used list into the free list.  Used ranges were checked for
   overlap and bounds by the checkpoint loader. */
void alloc_finish_build(struct dio_alloc *a)
{
	if (a->n)
		qsort(a->v, a->n, sizeof(a->v[0]), cmp_pblk);
	size_t used = a->n;
	uint64_t cur = a->first;
	/* the gaps between the sorted used ranges become the free list */
	struct dio_extent *u = a->v;
	a->v = NULL;
	a->cap = a->n = 0;
	a->free_blocks = 0;
	for (size_t i = 0; i <= used; i++) {
		uint64_t s = i < used ? u[i].pblk : a->end;
		if (s > cur) {
			uint64_t len = s - cur, p = cur;
			while (len) {
				uint32_t piece = (uint32_t)MIN(len, (uint64_t)EXT_MAX_LEN);
				if (alloc_grow(a, 1) == 0) {
					a->v[a->n++] = (struct dio_extent){ 0, p, piece, 0 };
					a->free_blocks += piece;
				}
				p += piece;
				len -= piece;
			}
		}
		if (i < used && u[i].pblk + u[i].len > cur)
			cur = u[i].pblk + u[i].len;
	}
	free(u);
}

static size_t alloc_search(const struct dio_alloc *a, uint64_t pblk)
{
	size_t lo = 0, hi = a->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->v[mid].pblk + a->v[mid].len <= pblk)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Take up to `want` contiguous blocks, preferring the free range at or
 * after `goal` (the block after the file's previous extent), so files
 * written in order stay contiguous.  -ENOSPC only when nothing is free;
 * callers check free_blocks first so a request is all or nothing.
 */
int alloc_take(struct dio_alloc *a, uint64_t goal, uint64_t want, uint64_t *pblk, uint64_t *got)
{
	if (!a->n)
		return -ENOSPC;
	size_t i = alloc_search(a, goal);
	if (i == a->n)
		i = 0;
	struct dio_extent *f = &a->v[i];
	uint64_t start = f->pblk;
	if (goal > f->pblk && goal < f->pblk + f->len)
		start = goal;
	uint64_t avail = f->pblk + f->len - start;
	uint64_t n = MIN(avail, want);
	*pblk = start;
	*got = n;
	a->free_blocks -= n;
	if (start == f->pblk) {
		f->pblk += n;
		f->len -= (uint32_t)n;
		if (!f->len) {
			memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(a->v[0]));
			a->n--;
		}
	} else if (start + n == f->pblk + f->len) {
		f->len -= (uint32_t)n;
	} else {
		/* carve from the middle: split into two free ranges */
		if (alloc_grow(a, 1) < 0) {
			/* no memory to split: take from the front instead */
			*pblk = f->pblk;
			f->pblk += n;
			f->len -= (uint32_t)n;
			return 0;
		}
		f = &a->v[i];
		struct dio_extent tail = { 0, start + n, (uint32_t)(f->pblk + f->len - start - n), 0 };
		f->len = (uint32_t)(start - f->pblk);
		memmove(&a->v[i + 2], &a->v[i + 1], (a->n - i - 1) * sizeof(a->v[0]));
		a->v[i + 1] = tail;
		a->n++;
	}
	return 0;
}

/* Return blocks to the free ranges, merging with neighbours. */
void alloc_give(struct dio_alloc *a, uint64_t pblk, uint64_t len)
{
	while (len) {
		uint32_t piece = (uint32_t)MIN(len, (uint64_t)EXT_MAX_LEN);
		size_t i = alloc_search(a, pblk);
		bool left = i > 0 && a->v[i - 1].pblk + a->v[i - 1].len == pblk &&
			    (uint64_t)a->v[i - 1].len + piece <= EXT_MAX_LEN;
		bool right = i < a->n && pblk + piece == a->v[i].pblk &&
			     (uint64_t)a->v[i].len + piece <= EXT_MAX_LEN;
		if (left && right && (uint64_t)a->v[i - 1].len + piece + a->v[i].len <= EXT_MAX_LEN) {
			a->v[i - 1].len += piece + a->v[i].len;
			memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(a->v[0]));
			a->n--;
		} else if (left) {
			a->v[i - 1].len += piece;
		} else if (right) {
			a->v[i].pblk = pblk;
			a->v[i].len += piece;
		} else if (alloc_grow(a, 1) == 0) {
			memmove(&a->v[i + 1], &a->v[i], (a->n - i) * sizeof(a->v[0]));
			a->v[i] = (struct dio_extent){ 0, pblk, piece, 0 };
			a->n++;
		} else {
			/* Out of memory: the blocks leak until the next mount
			   rebuilds free space from the maps.  Never corrupt. */
			pblk += piece;
			len -= piece;
			continue;
		}
		a->free_blocks += piece;
		pblk += piece;
		len -= piece;
	}
}

int alloc_defer(struct dio_alloc *a, uint64_t pblk, uint64_t len, uint64_t seq)
{
	if (a->npend == a->pcap) {
		size_t cap = a->pcap ? a->pcap * 2 : 64;
		struct pending_free *p = realloc(a->pend, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;  /* leaked until remount; safe */
		a->pend = p;
		a->pcap = cap;
	}
	a->pend[a->npend++] = (struct pending_free){ pblk, len, seq };
	a->pend_blocks += len;
	return 0;
}

void alloc_release_durable(struct dio_alloc *a, uint64_t durable_seq)
{
	size_t keep = 0;
	for (size_t i = 0; i < a->npend; i++) {
		if (a->pend[i].seq <= durable_seq) {
			alloc_give(a, a->pend[i].pblk, a->pend[i].len);
			a->pend_blocks -= a->pend[i].len;
		} else {
			a->pend[keep++] = a->pend[i];
		}
	}
	a->npend = keep;
}

/* While building (v holds used ranges): sort and report any overlap or
   range outside the data area. */
int alloc_check_overlap(struct dio_alloc *a)
{
	if (a->n)
		qsort(a->v, a->n, sizeof(a->v[0]), cmp_pblk);
	for (size_t i = 0; i < a->n; i++) {
		if (a->v[i].pblk < a->first || a->v[i].pblk + a->v[i].len > a->end)
			return -1;
		if (i && a->v[i - 1].pblk + a->v[i - 1].len > a->v[i].pblk)
			return -1;
	}
	return 0;
}
