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
		return alloc_take_clean(a, goal, want, pblk, got);
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

/* ---- clean ranges ------------------------------------------------------ */

/*
 * Why: a commit that makes blocks written must not let the record reach
 * the disk before the data, or a crash shows whatever the blocks held
 * before -- another file's bytes.  The ordered commit pays for that with
 * a cache flush before the journal write.  Blocks zeroed (and flushed)
 * after the last mount cannot show anything but zeros or the new data,
 * so a commit that only exposes such blocks writes its record and flushes
 * once.  Small appends with fdatasync, the pattern of every log, get one
 * flush per commit instead of two.
 */

static uint64_t clean_chunk(const struct dio_alloc *a, uint32_t bs)
{
	return MIN((uint64_t)CLEAN_CHUNK_BYTES / bs, (a->free_blocks - a->clean_blocks) / 16);
}

bool clean_can_refill(const struct dio_vol *v, uint64_t need)
{
	const struct dio_alloc *a = &v->alloc;
	uint64_t chunk = clean_chunk(a, v->bs);
	return !v->clean_off && a->n && a->nclean < ALLOC_CLEAN_SLOTS && chunk >= 16 && chunk >= need * 4;
}

static void clean_drop_empty(struct dio_alloc *a, unsigned i)
{
	if (!a->clean[i].len)
		a->clean[i] = a->clean[--a->nclean];
}

/*
 * Take up to `want` clean blocks: at `goal` when a clean range holds it
 * (the file goes on where it stopped), else from a range nobody has taken
 * from, else from the middle of the largest one, so files appending at
 * the same time each get a run of their own instead of interleaving.
 */
int alloc_take_clean(struct dio_alloc *a, uint64_t goal, uint64_t want, uint64_t *pblk, uint64_t *got)
{
	unsigned best = a->nclean;
	uint64_t start = 0;
	for (unsigned i = 0; i < a->nclean && best == a->nclean; i++)
		if (goal >= a->clean[i].pblk && goal < a->clean[i].pblk + a->clean[i].len) {
			best = i;
			start = goal;
		}
	if (best == a->nclean) {
		for (unsigned i = 0; i < a->nclean; i++) {
			const struct dio_extent *c = &a->clean[i], *b = &a->clean[best];
			if (best == a->nclean || (c->flags & CLEAN_FRESH) > (b->flags & CLEAN_FRESH) ||
			    ((c->flags & CLEAN_FRESH) == (b->flags & CLEAN_FRESH) && c->len > b->len))
				best = i;
		}
		if (best == a->nclean)
			return -ENOSPC;
		const struct dio_extent *c = &a->clean[best];
		start = c->pblk;
		if (!(c->flags & CLEAN_FRESH) && c->len >= 2 * want && a->nclean < ALLOC_CLEAN_SLOTS)
			start = c->pblk + c->len / 2;
	}
	struct dio_extent *c = &a->clean[best];
	uint64_t end = c->pblk + c->len, n = MIN(want, end - start);
	if (start > c->pblk && start + n < end && a->nclean == ALLOC_CLEAN_SLOTS) {
		start = c->pblk;   /* no slot for a split: take the front */
		n = MIN(want, end - start);
	}
	if (start == c->pblk) {
		c->pblk += n;
		c->len -= (uint32_t)n;
	} else {
		if (start + n < end)
			a->clean[a->nclean++] = (struct dio_extent){ 0, start + n, (uint32_t)(end - start - n), 0 };
		c = &a->clean[best];
		c->len = (uint32_t)(start - c->pblk);
	}
	c->flags = 0;
	*pblk = start;
	*got = n;
	a->free_blocks -= n;
	__atomic_store_n(&a->clean_blocks, a->clean_blocks - n, __ATOMIC_RELAXED);
	clean_drop_empty(a, best);
	return 0;
}

/* Dirty free space for a refill: the first of the leading free ranges
   long enough for a chunk, else the longest of them. */
static uint64_t refill_goal(const struct dio_alloc *a, uint64_t chunk)
{
	size_t best = 0, scan = MIN(a->n, (size_t)64);
	for (size_t i = 0; i < scan; i++) {
		if (a->v[i].len >= chunk)
			return a->v[i].pblk;
		if (a->v[i].len > a->v[best].len)
			best = i;
	}
	return a->v[best].pblk;
}

static int write_zeros(struct dio_vol *v, uint64_t pblk, uint64_t n)
{
	enum { NZ = 8 };
	struct dio_bio bios[NZ];
	struct iovec iov[NZ];
	uint64_t off = pblk * v->bs, left = n * v->bs;
	while (left) {
		unsigned k = 0;
		for (; left && k < NZ; k++) {
			size_t piece = (size_t)MIN(left, (uint64_t)MIN(ZBUF_BYTES, v->geom.max_io));
			iov[k] = (struct iovec){ v->zbuf, piece };
			bios[k] = (struct dio_bio){ DIO_BIO_WRITE, 0, off, &iov[k], 1, 0 };
			off += piece;
			left -= piece;
		}
		int e = dev_submit(v, bios, k);
		if (e)
			return e;
	}
	return 0;
}

/*
 * Zero one chunk of dirty free space and make it a clean range.  Called
 * by a small allocating write that found too few clean blocks, with no
 * lock held; one refill at a time.  While it is zeroed the chunk is out
 * of the free ranges (a->zeroing counts it: an allocation that would need
 * it waits for the refill instead of failing with ENOSPC), and it becomes
 * clean only after a flush that started once the zeros were written.
 *
 * Errors go to the write that asked (it fails with EIO, having changed
 * nothing).  A failed zero write only stops refills for this mount: the
 * blocks are free, writes then take dirty blocks and ordered commits.  A
 * failed flush is what a failed commit is -- writes of other files may be
 * lost with it -- so the volume refuses further metadata changes and every
 * fsync reports EIO from then on.
 */
int clean_refill(struct dio_vol *v, uint64_t need)
{
	struct dio_alloc *a = &v->alloc;
	pthread_mutex_lock(&v->clean_lock);
	if (!v->zbuf) {
		if (posix_memalign((void **)&v->zbuf, MAX(v->geom.mem_align, 4096u), ZBUF_BYTES)) {
			v->zbuf = NULL;
			pthread_mutex_unlock(&v->clean_lock);
			return 0;   /* not an error: the write takes dirty blocks */
		}
		memset(v->zbuf, 0, ZBUF_BYTES);
	}
	pthread_mutex_lock(&v->md_lock);
	uint64_t p = 0, got = 0, chunk = clean_chunk(a, v->bs);
	if (a->clean_blocks < need && clean_can_refill(v, need) && !v->jbroken)
		alloc_take(a, refill_goal(a, chunk), chunk, &p, &got);
	if (got && got < need * 4) {
		alloc_give(a, p, got);     /* too short to be worth it */
		got = 0;
	}
	__atomic_store_n(&a->zeroing, got, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&v->md_lock);
	if (!got) {
		pthread_mutex_unlock(&v->clean_lock);
		return 0;
	}
	int e = write_zeros(v, p, got), ef = 0;
	if (!e)
		ef = e = j_flush(v);
	pthread_mutex_lock(&v->md_lock);
	if (e) {
		alloc_give(a, p, got);
		v->clean_off = true;
		if (ef)
			v->jbroken = true;
		dio_log(DIO_LOG_ERR, "zeroing free space failed (%s)%s", strerror(-e),
			ef ? ": the flush failed, the volume refuses further metadata changes" : "");
	} else {
		a->clean[a->nclean++] = (struct dio_extent){ 0, p, (uint32_t)got, CLEAN_FRESH };
		a->free_blocks += got;
		__atomic_store_n(&a->clean_blocks, a->clean_blocks + got, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&a->zeroing, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&v->md_lock);
	pthread_mutex_unlock(&v->clean_lock);
	return e;
}

/* An allocation found too little free space while a refill holds some:
   wait for it to end.  Returns whether there was one to wait for. */
bool clean_wait_zeroing(struct dio_vol *v)
{
	if (!__atomic_load_n(&v->alloc.zeroing, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&v->clean_lock);
	pthread_mutex_unlock(&v->clean_lock);
	return true;
}
