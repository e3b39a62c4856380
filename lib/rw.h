/*
 * The data path's own interfaces (rw.c, xfer.c, rmw.c): how a request's
 * range is mapped to pieces of the device, and how the device I/Os for
 * those pieces are built.  Nothing outside the data path includes this.
 */
#ifndef DIO_RW_H
#define DIO_RW_H
#include "cursor.h"

/* One physically contiguous piece of a file range, or a hole. */
#define PBLK_HOLE UINT64_MAX
struct piece {
	uint64_t lblk, pblk, len;    /* pblk PBLK_HOLE for a hole */
	uint32_t flags;              /* EXT_* of the extent */
};

/*
 * Mapping copies MAP_PIECES pieces at a time, and a synchronous batch is
 * SYNC_BIOS I/Os over SYNC_IOVS buffer slices (1.3 KiB): the synchronous
 * path lives on the caller's stack, which may be a fiber's, and stays
 * within about 4 KiB (tests/test_rw.c measures it).
 */
#define MAP_PIECES 16
#define SYNC_BIOS  8
#define SYNC_IOVS  64

/*
 * Device I/Os under construction, into arrays someone else owns.  A
 * synchronous batch (queued false) submits and waits when they are full
 * and goes on; a queue slot's (queued true) is never submitted here: full
 * means the request does not fit the slot (err BATCH_FULL: it runs
 * inline), and every slice is copied into the slot, since the caller's
 * iovec array need not outlive dio_submit.  The first error wins.
 */
struct batch {
	struct dio_vol *v;
	struct dio_bio *bio;
	struct iovec *iov;
	unsigned nbio, niov, max_bio, max_iov;
	bool queued;
	int err;
};
#define BATCH_FULL (-E2BIG)

/* A synchronous batch with its arrays (on the caller's stack). */
struct sync_batch {
	struct batch b;
	struct dio_bio bio[SYNC_BIOS];
	struct iovec iov[SYNC_IOVS];
};

/* xfer.c: mapping and direct (zero-copy) transfers */
void     batch_init_sync(struct sync_batch *sb, struct dio_vol *v);
void     batch_flush(struct batch *b);
unsigned map_pieces(struct dio_file *f, uint64_t b, uint64_t end, struct piece *p, unsigned max,
		    struct em_hint *h);
bool     pieces_written(const struct piece *p, unsigned n, uint64_t end);
bool     pieces_mapped(const struct piece *p, unsigned n, uint64_t end);
void     xfer_range(struct batch *b, struct dio_file *f, int op, unsigned flags, struct cursor *c,
		    uint64_t off, uint64_t end, const struct piece *p, unsigned n);
int      xfer_direct(struct dio_file *f, int op, unsigned flags, struct cursor *c, uint64_t off, uint64_t len);

/* rmw.c: transfers through a bounce buffer (misaligned requests) */
int      write_bounce(struct dio_file *f, unsigned flags, struct cursor *c, uint64_t off, uint64_t len);
int      read_bounce(struct dio_file *f, struct cursor *c, uint64_t off, uint64_t len);

#endif
