/*
 * Async queues.  A queue belongs to one thread at a time; it holds a ring
 * of completions sized at creation, so submitting and reaping allocate
 * nothing.  Requests run through exactly the same request path as the
 * synchronous calls (alignment, fallback, allocation, durability, range
 * locks), so a queue has the same semantics by construction.
 *
 * This first version completes each request inline in dio_submit (what
 * the psync backend does by design); completions wait in the ring until
 * dio_reap collects them.  The backends' native asynchronous submission
 * for the direct path is the next step (see docs/DESIGN.md).
 */
#include "internal.h"
#include <stdlib.h>

struct dio_queue {
	struct dio_vol *vol;
	unsigned entries;
	unsigned head, count;      /* ring of completions not yet reaped */
	struct dio_cqe *cq;
	uint32_t magic;
};
#define DIO_QUEUE_MAGIC 0x64696f71u

static int fail(int e)
{
	errno = e < 0 ? -e : e;
	return -1;
}

DIO_API struct dio_queue *dio_queue_create(struct dio_vol *v, unsigned entries)
{
	if (!v || !entries || entries > 65536) {
		fail(EINVAL);
		return NULL;
	}
	struct dio_queue *q = calloc(1, sizeof(*q));
	if (q)
		q->cq = calloc(entries, sizeof(*q->cq));
	if (!q || !q->cq) {
		free(q);
		fail(ENOMEM);
		return NULL;
	}
	q->vol = v;
	q->entries = entries;
	q->magic = DIO_QUEUE_MAGIC;
	pthread_mutex_lock(&v->md_lock);
	v->nqueues++;
	pthread_mutex_unlock(&v->md_lock);
	return q;
}

DIO_API void dio_queue_destroy(struct dio_queue *q)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC)
		return;
	pthread_mutex_lock(&q->vol->md_lock);
	q->vol->nqueues--;
	pthread_mutex_unlock(&q->vol->md_lock);
	q->magic = 0;
	free(q->cq);
	free(q);
}

static ssize_t run_one(struct dio_queue *q, const struct dio_req *r)
{
	struct dio_file *f = r->file;
	ssize_t res;
	if (file_check(f) < 0)
		return -EBADF;
	if (f->vol != q->vol)
		return -EXDEV;
	switch (r->op) {
	case DIO_OP_READ:
		res = dio_pread(f, r->buf, r->len, r->offset);
		break;
	case DIO_OP_WRITE:
		res = dio_pwrite(f, r->buf, r->len, r->offset);
		break;
	case DIO_OP_READV:
		res = dio_preadv(f, r->iov, r->iovcnt, r->offset);
		break;
	case DIO_OP_WRITEV:
		res = dio_pwritev(f, r->iov, r->iovcnt, r->offset);
		break;
	case DIO_OP_FSYNC:
		res = dio_fsync(f);
		break;
	case DIO_OP_FDATASYNC:
		res = dio_fdatasync(f);
		break;
	default:
		return -EINVAL;
	}
	return res < 0 ? -errno : res;
}

DIO_API int dio_submit(struct dio_queue *q, const struct dio_req *reqs, unsigned nr)
{
	if (!q || q->magic != DIO_QUEUE_MAGIC || (nr && !reqs))
		return fail(EINVAL);
	if (!nr)
		return 0;
	unsigned room = q->entries - q->count;
	if (!room)
		return fail(EAGAIN);   /* reap first: every slot holds a completion */
	unsigned take = nr < room ? nr : room;
	int saved = errno;
	for (unsigned i = 0; i < take; i++) {
		struct dio_cqe *c = &q->cq[(q->head + q->count) % q->entries];
		c->user_data = reqs[i].user_data;
		c->res = run_one(q, &reqs[i]);
		q->count++;
	}
	errno = saved;
	return (int)take;
}

DIO_API int dio_reap(struct dio_queue *q, struct dio_cqe *cqes, unsigned min_nr, unsigned max_nr, int timeout_ms)
{
	(void)timeout_ms;   /* completions are ready when dio_submit returns */
	if (!q || q->magic != DIO_QUEUE_MAGIC || (max_nr && !cqes) || min_nr > max_nr)
		return fail(EINVAL);
	unsigned n = q->count < max_nr ? q->count : max_nr;
	for (unsigned i = 0; i < n; i++) {
		cqes[i] = q->cq[q->head];
		q->head = (q->head + 1) % q->entries;
	}
	q->count -= n;
	return (int)n;
}
