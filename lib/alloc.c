/*
 * Free space: the free ranges in two B+trees (btree.c), by block and by
 * size, as XFS keeps its free-space B+trees; rebuilt at mount from the
 * extent maps (the maps are the only record of what is in use, so free
 * space can never disagree with them after a crash).  Taking and giving
 * back blocks costs a few tree operations whatever the fragmentation.
 *
 * Blocks freed by an operation go to a pending list tagged with the
 * journal sequence of that operation and return to the free ranges only
 * once that sequence is durable: until then a crash brings the old owner
 * back, and its data must still be there.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* ---- the free ranges: two trees of the same records ------------------------- */

/* Every free range is in both trees: by block (where is free space near
   a goal, who are a range's neighbours) and by (length, block) (a range
   of at least n blocks, best fit).  Both change together. */
static int free_insert(struct dio_alloc *a, uint64_t pblk, uint32_t len)
{
	struct dio_extent x = { 0, pblk, len, 0 };
	int e = bt_insert(&a->by_blk, &x);
	if (!e && (e = bt_insert(&a->by_size, &x)))
		bt_delete(&a->by_blk, &x);
	return e;
}

static void free_delete(struct dio_alloc *a, const struct dio_extent *x)
{
	struct dio_extent k = *x;   /* x may point into a tree */
	bt_delete(&a->by_blk, &k);
	bt_delete(&a->by_size, &k);
}

/* The free range holding pblk, else the first after it; false if none. */
static bool free_at(const struct dio_alloc *a, uint64_t pblk, struct dio_extent *out)
{
	struct dio_extent key = { 0, pblk, 0, 0 };
	struct bt_cur c, p;
	bool ge = bt_seek_ge(&a->by_blk, &key, &c);
	p = c;
	bool prev = ge ? bt_prev(&p) : bt_last(&a->by_blk, &p);
	if (prev && bt_rec(&p)->pblk + bt_rec(&p)->len > pblk) {
		*out = *bt_rec(&p);
		return true;
	}
	if (ge)
		*out = *bt_rec(&c);
	return ge;
}

static size_t free_count(const struct dio_alloc *a)
{
	return a->by_blk.n;
}

int alloc_init(struct dio_alloc *a, uint64_t first, uint64_t end)
{
	memset(a, 0, sizeof(*a));
	a->first = first;
	a->end = end;
	bt_init(&a->by_blk, BT_PBLK);
	bt_init(&a->by_size, BT_SIZE);
	return 0;
}

void alloc_destroy(struct dio_alloc *a)
{
	bt_destroy(&a->by_blk);
	bt_destroy(&a->by_size);
	free(a->used);
	free(a->pend);
	memset(a, 0, sizeof(*a));
}

/* While building: blocks [pblk, pblk+len) belong to owner (a file id,
   0 for the bad-block list), kept for naming both owners of a block. */
int alloc_mark_used(struct dio_alloc *a, uint64_t pblk, uint64_t len, uint64_t owner)
{
	if (a->nused == a->ucap) {
		size_t cap = a->ucap ? a->ucap * 2 : 64;
		struct dio_extent *u = dio_realloc(a->used, cap * sizeof(*u));
		if (!u)
			return -ENOMEM;
		a->used = u;
		a->ucap = cap;
	}
	a->used[a->nused++] = (struct dio_extent){ owner, pblk, (uint32_t)len, 0 };
	return 0;
}

static int cmp_pblk(const void *x, const void *y)
{
	const struct dio_extent *a = x, *b = y;
	return a->pblk < b->pblk ? -1 : a->pblk > b->pblk;
}

/* Turn the used list into the free trees.  Used ranges were checked for
   overlap and bounds (alloc_check_overlap sorted them).  Ranges go into
   the block tree in order (each at its right edge: full leaves). */
void alloc_finish_build(struct dio_alloc *a)
{
	uint64_t cur = a->first;
	a->free_blocks = 0;
	for (size_t i = 0; i <= a->nused; i++) {
		uint64_t s = i < a->nused ? a->used[i].pblk : a->end;
		while (s > cur) {
			uint32_t piece = (uint32_t)MIN(s - cur, (uint64_t)EXT_MAX_LEN);
			/* out of memory: those blocks stay unused until the next
			   mount rebuilds free space; never corrupt */
			if (!free_insert(a, cur, piece))
				a->free_blocks += piece;
			cur += piece;
		}
		if (i < a->nused && a->used[i].pblk + a->used[i].len > cur)
			cur = a->used[i].pblk + a->used[i].len;
	}
	free(a->used);
	a->used = NULL;
	a->nused = a->ucap = 0;
}

/*
 * Take up to `want` contiguous blocks, preferring the free range at or
 * after `goal` (the block after the file's previous extent), so files
 * written in order stay contiguous.  -ENOSPC only when nothing is free;
 * callers check free_blocks first so a request is all or nothing.  Two
 * tree lookups and a few updates whatever the fragmentation.
 */
int alloc_take(struct dio_alloc *a, uint64_t goal, uint64_t want, uint64_t *pblk, uint64_t *got)
{
	struct dio_extent f;
	if (!free_count(a))
		return alloc_take_clean(a, goal, want, pblk, got);
	if (!free_at(a, goal, &f))
		free_at(a, 0, &f);   /* nothing at or after the goal: wrap */
	uint64_t start = goal > f.pblk && goal < f.pblk + f.len ? goal : f.pblk;
	uint64_t n = MIN(f.pblk + f.len - start, want);
	uint64_t head = start - f.pblk, tail = f.pblk + f.len - (start + n);
	free_delete(a, &f);
	/* the parts left on either side go back; with no memory for one, its
	   blocks stay out of free space until the next mount rebuilds it (a
	   leak, never a corruption) */
	if (head && free_insert(a, f.pblk, (uint32_t)head))
		a->free_blocks -= head;
	if (tail && free_insert(a, start + n, (uint32_t)tail))
		a->free_blocks -= tail;
	*pblk = start;
	*got = n;
	a->free_blocks -= n;
	return 0;
}

/* Return blocks to the free ranges, merging with neighbours. */
void alloc_give(struct dio_alloc *a, uint64_t pblk, uint64_t len)
{
	while (len) {
		uint32_t piece = (uint32_t)MIN(len, (uint64_t)EXT_MAX_LEN);
		uint64_t s = pblk, n = piece;
		struct dio_extent l, r;
		/* the range ending at pblk, and the one starting after it */
		if (pblk && free_at(a, pblk - 1, &l) && l.pblk + l.len == pblk && (uint64_t)l.len + n <= EXT_MAX_LEN) {
			free_delete(a, &l);
			s = l.pblk;
			n += l.len;
		}
		if (free_at(a, pblk + piece, &r) && r.pblk == pblk + piece && n + r.len <= EXT_MAX_LEN) {
			free_delete(a, &r);
			n += r.len;
		}
		/* Out of memory: the blocks leak until the next mount rebuilds
		   free space from the maps.  Never corrupt. */
		if (!free_insert(a, s, (uint32_t)n))
			a->free_blocks += piece;
		pblk += piece;
		len -= piece;
	}
}

int alloc_defer(struct dio_alloc *a, uint64_t pblk, uint64_t len, uint64_t seq)
{
	if (a->npend == a->pcap) {
		size_t cap = a->pcap ? a->pcap * 2 : 64;
		struct pending_free *p = dio_realloc(a->pend, cap * sizeof(*p));
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

/* While building: sort the used ranges and report the first overlap
   (*o1, *o2: the two owners, *pblk: the first block both claim) or range
   outside the data area (*o2 = *o1). */
int alloc_check_overlap(struct dio_alloc *a, uint64_t *o1, uint64_t *o2, uint64_t *pblk)
{
	const struct dio_extent *u = a->used;
	if (a->nused)
		qsort(a->used, a->nused, sizeof(a->used[0]), cmp_pblk);
	for (size_t i = 0; i < a->nused; i++) {
		if (u[i].pblk < a->first || u[i].pblk + u[i].len > a->end) {
			*o1 = *o2 = u[i].lblk;
			*pblk = u[i].pblk;
			return -1;
		}
		if (i && u[i - 1].pblk + u[i - 1].len > u[i].pblk) {
			*o1 = u[i - 1].lblk;
			*o2 = u[i].lblk;
			*pblk = u[i].pblk;
			return -1;
		}
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

/* Whether a refill could make a clean range of `need` blocks or more
   (four times as many: worth the zeroing and the flush) now. */
bool alloc_can_refill(const struct dio_alloc *a, uint32_t bs, uint64_t need)
{
	uint64_t chunk = clean_chunk(a, bs);
	return free_count(a) && a->nclean < ALLOC_CLEAN_SLOTS && chunk >= 16 && chunk >= need * 4;
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

/* Dirty free space for a refill: the smallest free range that holds a
   chunk (best fit, so large ranges stay whole for large writes), else the
   largest there is. */
static uint64_t refill_goal(const struct dio_alloc *a, uint64_t chunk)
{
	struct dio_extent key = { 0, 0, (uint32_t)MIN(chunk, (uint64_t)EXT_MAX_LEN), 0 };
	struct bt_cur c;
	if (bt_seek_ge(&a->by_size, &key, &c) || bt_last(&a->by_size, &c))
		return bt_rec(&c)->pblk;
	return a->first;
}

/* Take a chunk of dirty free space to be zeroed into a clean range
   (alloc_add_clean once it is), if a refill of `need` blocks is worth it:
   the chunk's size, 0 if not.  It is out of the free ranges meanwhile;
   a->zeroing says how much. */
uint64_t alloc_take_for_refill(struct dio_alloc *a, uint32_t bs, uint64_t need, uint64_t *pblk)
{
	uint64_t got = 0, chunk = clean_chunk(a, bs);
	if (a->clean_blocks < need && alloc_can_refill(a, bs, need))
		alloc_take(a, refill_goal(a, chunk), chunk, pblk, &got);
	if (got && got < need * 4) {
		alloc_give(a, *pblk, got);     /* too short to be worth it */
		got = 0;
	}
	__atomic_store_n(&a->zeroing, got, __ATOMIC_RELAXED);
	return got;
}

/* The chunk is zeroed and flushed (ok), or could not be (given back as
   dirty free space). */
void alloc_end_refill(struct dio_alloc *a, uint64_t pblk, uint64_t n, bool ok)
{
	if (!ok) {
		alloc_give(a, pblk, n);
	} else {
		a->clean[a->nclean++] = (struct dio_extent){ 0, pblk, (uint32_t)n, CLEAN_FRESH };
		a->free_blocks += n;
		__atomic_store_n(&a->clean_blocks, a->clean_blocks + n, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&a->zeroing, 0, __ATOMIC_RELAXED);
}
