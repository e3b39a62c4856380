/*
 * The bitmap of a partial record (lib/extent.c): one bit per block, set
 * where the block is written, and a count of written blocks per group of
 * 4,096 so that the search for the end of a run steps over whole groups
 * of one state.  Utility layer: memory only.
 */
#include "bitmap.h"
#include <stdlib.h>

/* Are all blocks of group g in state v? */
static bool bm_group_uniform(const struct em_bits *b, uint64_t g, bool v)
{
	uint64_t size = MIN((uint64_t)BM_GROUP_BITS, b->len - g * BM_GROUP_BITS);
	return v ? b->grp[g] == size : b->grp[g] == 0;
}

/* The first block from i on not in state v, or len.  (Bits past len are
   0 and the last group counts only real blocks, so neither search runs
   past the end.) */
uint64_t bm_run_end(const struct em_bits *b, uint64_t i, bool v)
{
	uint64_t nw = DIV_UP(b->len, 64), k = i >> 6;
	uint64_t x = (v ? ~b->w[k] : b->w[k]) & (~UINT64_C(0) << (i & 63));
	while (!x) {
		if (++k >= nw)
			return b->len;
		while (k % BM_GROUP_WORDS == 0 && bm_group_uniform(b, k / BM_GROUP_WORDS, v))
			if ((k += BM_GROUP_WORDS) >= nw)
				return b->len;
		x = v ? ~b->w[k] : b->w[k];
	}
	return MIN(b->len, (k << 6) + (uint64_t)__builtin_ctzll(x));
}

/* The first block of the run of state v that holds block i. */
uint64_t bm_run_start(const struct em_bits *b, uint64_t i, bool v)
{
	uint64_t k = i >> 6;
	unsigned sh = 63 - (unsigned)(i & 63);    /* block i at the top bit */
	uint64_t x = (v ? ~b->w[k] : b->w[k]) << sh;
	while (!x) {
		if (!k)
			return 0;
		k--;
		while (k % BM_GROUP_WORDS == BM_GROUP_WORDS - 1 && bm_group_uniform(b, k / BM_GROUP_WORDS, v)) {
			if (k < BM_GROUP_WORDS)
				return 0;
			k -= BM_GROUP_WORDS;
		}
		x = v ? ~b->w[k] : b->w[k];
		sh = 0;
	}
	return (k << 6) + (uint64_t)(63 - __builtin_clzll(x)) - sh + 1;
}

/* Mark blocks [i, i+n) written. */
void bm_set(struct em_bits *b, uint64_t i, uint64_t n)
{
	for (uint64_t e = i + n; i < e;) {
		uint64_t k = i >> 6;
		unsigned lo = (unsigned)(i & 63), cnt = (unsigned)MIN(64u - lo, e - i);
		uint64_t mask = (cnt == 64 ? ~UINT64_C(0) : (UINT64_C(1) << cnt) - 1) << lo;
		unsigned add = (unsigned)__builtin_popcountll(mask & ~b->w[k]);
		b->w[k] |= mask;
		b->grp[k / BM_GROUP_WORDS] = (uint16_t)(b->grp[k / BM_GROUP_WORDS] + add);
		b->set += add;
		i += cnt;
	}
}

/* A bitmap for len blocks, none written. */
struct em_bits *bits_new(uint64_t len)
{
	uint64_t nw = DIV_UP(len, 64), ng = DIV_UP(nw, BM_GROUP_WORDS);
	struct em_bits *b = dio_calloc(1, sizeof(*b) + (size_t)nw * sizeof(uint64_t) + (size_t)ng * sizeof(uint16_t));
	if (!b)
		return NULL;
	b->len = len;
	b->runs = 1;
	b->grp = (uint16_t *)(b->w + nw);
	return b;
}

/* Maximal runs of one state in b: 1 + the neighbouring blocks that
   differ, a word at a time. */
uint64_t bits_runs(const struct em_bits *b)
{
	uint64_t nw = DIV_UP(b->len, 64), t = 0;
	for (uint64_t k = 0; k < nw; k++) {
		uint64_t next = k + 1 < nw ? b->w[k + 1] & 1 : 0;
		uint64_t d = b->w[k] ^ (b->w[k] >> 1 | next << 63);   /* bit i: block i differs from i+1 */
		uint64_t pairs = b->len - 1 - k * 64;                  /* blocks here with a next one */
		if (pairs < 64)
			d &= (UINT64_C(1) << pairs) - 1;
		t += (uint64_t)__builtin_popcountll(d);
	}
	return t + 1;
}

/* Blocks [from, to) of b as a bitmap of their own. */
struct em_bits *bits_slice(const struct em_bits *b, uint64_t from, uint64_t to)
{
	uint64_t len = to - from, nw = DIV_UP(len, 64), k0 = from >> 6, ow = DIV_UP(b->len, 64);
	unsigned sh = (unsigned)(from & 63);
	struct em_bits *nb = bits_new(len);
	if (!nb)
		return NULL;
	for (uint64_t k = 0; k < nw; k++) {
		uint64_t x = b->w[k0 + k] >> sh;
		if (sh && k0 + k + 1 < ow)
			x |= b->w[k0 + k + 1] << (64 - sh);
		if (k == nw - 1 && (len & 63))
			x &= (UINT64_C(1) << (len & 63)) - 1;
		unsigned pc = (unsigned)__builtin_popcountll(x);
		nb->w[k] = x;
		nb->grp[k / BM_GROUP_WORDS] = (uint16_t)(nb->grp[k / BM_GROUP_WORDS] + pc);
		nb->set += pc;
	}
	nb->runs = bits_runs(nb);
	return nb;
}
