/*
 * Device I/O: batches of bios to the volume's backend, waited for, with
 * short transfers continued, and cache flushes.  The device layer: the
 * journal, checkpoints, the clean-range refill and the data path all
 * come down here, and it calls nothing above it.
 */
#include "cursor.h"

#define REST_IOVS 16   /* the continuation of a short transfer */
#define DEV_RW_BIOS 8

/*
 * Issue n I/Os and wait for them.  One I/O alone goes down as the calling
 * thread's own system call when the backend is a built-in one: a ring or
 * an AIO context only pays when several I/Os are in flight at once, and
 * a plain preadv costs one kernel entry with no ring to set up, fill and
 * reap (bench/RESULTS.md, "one request path").  Several go to the
 * thread's context (*c, taken at first use).
 */
static int issue(struct dio_vol *v, struct dio_devctx **c, struct dio_bio *bios, unsigned n)
{
	cnt_add(&CNT(v)->device_ios, n);
	if (n == 1 && v->dev.plain_single) {
		dio_dev_bio(v->dev.fd, bios);
		return 0;
	}
	if (!*c)
		*c = devctx_get(v);
	return v->dev.ops->submit((*c)->ctx, bios, n);
}

/*
 * Move the rest of a bio that came back short, REST_IOVS slices at a
 * time (slices end where the bio's segments do, so each I/O stays
 * aligned).  Out of line: its arrays stay off the common path's stack.
 */
static NOINLINE void continue_short(struct dio_vol *v, struct dio_devctx **c, struct dio_bio *b)
{
	size_t want = iov_bytes(b->iov, b->iovcnt);
	/* each round moves at most REST_IOVS slices, and a device that
	   splits may move less: give up only after a round per slice and 16
	   more (a round that moves nothing fails at once) */
	int limit = 16 + b->iovcnt;
	for (int tries = 0; b->res >= 0 && (size_t)b->res < want; tries++) {
		if (b->res == 0 || tries > limit) {
			b->res = -EIO;
			return;
		}
		struct iovec rest[REST_IOVS];
		struct cursor cur = { b->iov, b->iovcnt, 0 };
		size_t done = (size_t)b->res, n = want - done;
		cur_advance(&cur, done);
		int k = cur_take(&cur, &n, rest, REST_IOVS);
		struct dio_bio nb = { b->op, b->flags, b->offset + done, rest, k, 0 };
		int se = issue(v, c, &nb, 1);
		if (se)
			nb.res = se;
		b->res = nb.res < 0 ? nb.res : (ssize_t)(done + (size_t)nb.res);
	}
}

/*
 * Hand n I/Os to the backend and wait.  A short transfer is continued
 * (a backend may split); one that moves nothing is an I/O error.
 * Returns 0 or the first -errno.
 */
int dev_submit(struct dio_vol *v, struct dio_bio *bios, unsigned n)
{
	struct dio_devctx *c = NULL;
	int e = issue(v, &c, bios, n);
	for (unsigned i = 0; i < n && !e; i++) {
		struct dio_bio *b = &bios[i];
		if (b->res >= 0 && (size_t)b->res < iov_bytes(b->iov, b->iovcnt))
			continue_short(v, &c, b);
		if (b->res < 0)
			e = (int)b->res;
	}
	if (c)
		devctx_put(c);
	return e;
}

/* A queued bio came back short (res >= 0): the rest moves synchronously,
   through the thread's context, which has none of the queue's registered
   buffers.  0 or -errno (also in b->res). */
int dev_finish_short(struct dio_vol *v, struct dio_bio *b)
{
	if ((size_t)b->res >= iov_bytes(b->iov, b->iovcnt))
		return 0;
	struct dio_bio nb = *b;
	nb.flags &= DIO_BIO_FUA;
	struct dio_devctx *c = NULL;
	continue_short(v, &c, &nb);
	if (c)
		devctx_put(c);
	b->res = nb.res;
	return nb.res < 0 ? (int)nb.res : 0;
}

int dev_flush(struct dio_vol *v)
{
	if (v->dev.tdev && !v->dev.geom.volatile_cache)
		return 0;   /* a target that keeps no volatile cache offers no flush: none sent, none counted */
	struct dio_devctx *c = devctx_get(v);
	int e = v->dev.ops->flush(c->ctx);
	devctx_put(c);
	if (!e)
		cnt_add(&CNT(v)->flushes, 1);
	return e;
}

/* One flat aligned buffer, split at max_io. */
int dev_rw(struct dio_vol *v, int op, unsigned flags, uint64_t off, void *buf, size_t len)
{
	struct dio_bio bios[DEV_RW_BIOS];
	struct iovec iov[DEV_RW_BIOS];
	while (len) {
		unsigned n = 0;
		while (len && n < DEV_RW_BIOS) {
			size_t piece = MIN(len, (size_t)v->dev.geom.max_io);
			iov[n] = (struct iovec){ buf, piece };
			bios[n] = (struct dio_bio){ op, flags, off, &iov[n], 1, 0 };
			buf = (char *)buf + piece;
			off += piece;
			len -= piece;
			n++;
		}
		int e = dev_submit(v, bios, n);
		if (e)
			return e;
	}
	return 0;
}

