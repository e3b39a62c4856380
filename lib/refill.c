/*
 * Clean-range refills: zero a chunk of dirty free space, flush, and hand
 * it to the allocator as a clean range (alloc.c says why clean ranges
 * save a flush per commit).  The metadata layer: device I/O and the
 * journal's flush around the pure allocator's bookkeeping.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

bool clean_can_refill(const struct dio_vol *v, uint64_t need)
{
	return !v->clean.off && alloc_can_refill(&v->alloc, v->bs, need);
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
			size_t piece = (size_t)MIN(left, (uint64_t)MIN(ZBUF_BYTES, v->dev.geom.max_io));
			iov[k] = (struct iovec){ v->clean.zbuf, piece };
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
	pthread_mutex_lock(&v->clean.lock);
	if (!v->clean.zbuf) {
		if (posix_memalign((void **)&v->clean.zbuf, MAX(v->dev.geom.mem_align, 4096u), ZBUF_BYTES)) {
			v->clean.zbuf = NULL;
			pthread_mutex_unlock(&v->clean.lock);
			return 0;   /* not an error: the write takes dirty blocks */
		}
		memset(v->clean.zbuf, 0, ZBUF_BYTES);
	}
	pthread_mutex_lock(&v->md_lock);
	uint64_t p = 0, got = v->clean.off || v->j.broken ? 0 : alloc_take_for_refill(a, v->bs, need, &p);
	md_unlock(v);
	if (!got) {
		pthread_mutex_unlock(&v->clean.lock);
		return 0;
	}
	int e = write_zeros(v, p, got), ef = 0;
	if (!e)
		ef = e = j_flush(v);
	pthread_mutex_lock(&v->md_lock);
	alloc_end_refill(a, p, got, !e);
	if (e) {
		v->clean.off = true;
		if (ef)
			v->j.broken = true;
		dio_log(DIO_LOG_ERR, "zeroing free space failed (%s)%s", strerror(-e),
			ef ? ": the flush failed, the volume refuses further metadata changes" : "");
	}
	md_unlock(v);
	pthread_mutex_unlock(&v->clean.lock);
	return e;
}

/* An allocation found too little free space while a refill holds some:
   wait for it to end.  Returns whether there was one to wait for. */
bool clean_wait_zeroing(struct dio_vol *v)
{
	if (!__atomic_load_n(&v->alloc.zeroing, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&v->clean.lock);
	pthread_mutex_unlock(&v->clean.lock);
	return true;
}
