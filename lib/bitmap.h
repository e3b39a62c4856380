/*
 * Bitmaps of blocks (bitmap.c): the written blocks of a partial record.
 */
#ifndef DIO_BITMAP_H
#define DIO_BITMAP_H
#include "internal.h"

#define BM_GROUP_WORDS 64u                        /* a count per 4,096 blocks, */
#define BM_GROUP_BITS  (BM_GROUP_WORDS * 64u)     /* to step over uniform spans */

struct em_bits {
	uint64_t len;              /* blocks */
	uint64_t set;              /* written ones */
	uint64_t runs;             /* maximal runs of one state: the extents it stands for */
	uint16_t *grp;             /* written blocks per group of BM_GROUP_BITS */
	uint64_t w[];              /* bit i: block i written; 0 past len */
};

static inline bool bm_get(const struct em_bits *b, uint64_t i)
{
	return (b->w[i >> 6] >> (i & 63)) & 1;
}

struct em_bits *bits_new(uint64_t len);                                  /* none written; NULL: no memory */
struct em_bits *bits_slice(const struct em_bits *b, uint64_t from, uint64_t to);   /* [from, to) as its own */
uint64_t bits_runs(const struct em_bits *b);
uint64_t bm_run_end(const struct em_bits *b, uint64_t i, bool v);     /* first block >= i not in state v, or len */
uint64_t bm_run_start(const struct em_bits *b, uint64_t i, bool v);   /* first block of i's run of state v */
void bm_set(struct em_bits *b, uint64_t i, uint64_t n);                 /* [i, i+n) written */

#endif
