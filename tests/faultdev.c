/*
 * "fault": a test backend wrapping the run's real backend.  It counts
 * device operations and can fail the Nth read, write or flush with EIO,
 * complete writes short, or simulate power loss: from the Nth operation
 * on everything fails, and fault_crash() rewinds the image to what a
 * device with a volatile cache could hold afterwards (every flushed or
 * FUA write, plus a prefix of the unflushed ones).  A one-shot gate
 * parks the next read or write until the test releases it, to hold a
 * request in flight while other threads show what waits for it.
 */
#include "helpers.h"
#include <pthread.h>
#include <sys/uio.h>

const struct dio_backend_ops *dio_backend_find(const char *name, int *err);

struct undo { uint64_t off; size_t len; uint8_t *old; };

static struct {
	pthread_mutex_t mu;
	const struct dio_backend_ops *inner;
	struct fault_cfg cfg;
	long writes, reads, flushes, ops, fua;
	long opens, closes, shared;   /* contexts; uses of one by a second thread */
	long refused;                 /* opens failed by max_contexts */
	long async_refused;           /* submit_async calls cut short */
	int failed, dead;
	struct undo *log;
	size_t nlog, cap;
	int gate_op;              /* DIO_BIO_READ/WRITE + 1 while armed, else 0 */
	int gate_parked, gate_released;
	pthread_cond_t gate_cv;
} F = { .mu = PTHREAD_MUTEX_INITIALIZER, .gate_cv = PTHREAD_COND_INITIALIZER };

struct fctx {
	void *inner;
	int fd;
	bool used;
	pthread_t user;
	unsigned inflight;        /* "fault-async": bios handed to inner, not reaped */
};

/* "fault-async": the gate's parked asynchronous bio (one at a time) */
static struct dio_bio *parked;

/* Under F.mu: note which thread uses c; count a second one. */
static void note_user(struct fctx *c)
{
	if (!c->used) {
		c->used = true;
		c->user = pthread_self();
	} else if (!pthread_equal(c->user, pthread_self()))
		F.shared++;
}

static int f_probe(void) { return 0; }

static void *f_open(int fd, unsigned depth, int *err)
{
	pthread_mutex_lock(&F.mu);
	bool full = F.cfg.max_contexts && F.opens - F.closes >= F.cfg.max_contexts;
	F.refused += full;
	pthread_mutex_unlock(&F.mu);
	if (full) {   /* as io_setup says when fs.aio-max-nr is reached */
		*err = EAGAIN;
		return NULL;
	}
	struct fctx *c = calloc(1, sizeof(*c));
	c->fd = fd;
	c->inner = F.inner->open(fd, depth, err);
	if (!c->inner) {
		free(c);
		return NULL;
	}
	pthread_mutex_lock(&F.mu);
	F.opens++;
	pthread_mutex_unlock(&F.mu);
	return c;
}

static void f_close(void *ctx)
{
	struct fctx *c = ctx;
	F.inner->close(c->inner);
	free(c);
	pthread_mutex_lock(&F.mu);
	F.closes++;
	pthread_mutex_unlock(&F.mu);
}

static void record_undo(int fd, const struct dio_bio *b)
{
	size_t len = 0;
	for (int i = 0; i < b->iovcnt; i++)
		len += b->iov[i].iov_len;
	void *old;
	if (posix_memalign(&old, 4096, len))
		abort();
	ssize_t r = pread(fd, old, len, (off_t)b->offset);
	if (r < 0)
		abort();
	if ((size_t)r < len)
		memset((char *)old + r, 0, len - (size_t)r);
	if (F.nlog == F.cap) {
		F.cap = F.cap ? F.cap * 2 : 256;
		F.log = realloc(F.log, F.cap * sizeof(*F.log));
	}
	F.log[F.nlog++] = (struct undo){ b->offset, len, old };
}

static void drop_undo(void)
{
	for (size_t i = 0; i < F.nlog; i++)
		free(F.log[i].old);
	F.nlog = 0;
}

static bool tick(long *counter, long at)
{
	/* under F.mu: true if this op must fail */
	F.ops++;
	(*counter)++;
	if (F.cfg.die_at && F.ops >= F.cfg.die_at)
		F.dead = 1;
	if (F.dead)
		return true;
	if (at && (*counter == at || (F.cfg.sticky && *counter > at))) {
		F.failed = 1;
		return true;
	}
	return false;
}

static int f_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	struct fctx *c = ctx;
	for (unsigned i = 0; i < n; i++) {
		struct dio_bio *b = &bios[i];
		pthread_mutex_lock(&F.mu);
		note_user(c);
		if (F.gate_op == b->op + 1) {
			F.gate_op = 0;
			F.gate_parked = 1;
			pthread_cond_broadcast(&F.gate_cv);
			while (!F.gate_released)
				pthread_cond_wait(&F.gate_cv, &F.mu);
		}
		bool bad = b->op == DIO_BIO_WRITE ? tick(&F.writes, F.cfg.fail_write_at)
						  : tick(&F.reads, F.cfg.fail_read_at);
		if (b->op == DIO_BIO_WRITE && (b->flags & DIO_BIO_FUA))
			F.fua++;
		if (!bad && b->op == DIO_BIO_WRITE && F.cfg.record && !(b->flags & DIO_BIO_FUA))
			record_undo(c->fd, b);
		pthread_mutex_unlock(&F.mu);
		if (bad) {
			b->res = -EIO;
			continue;
		}
		if (F.cfg.short_writes && b->op == DIO_BIO_WRITE && b->iovcnt == 1 && b->iov[0].iov_len >= 1024) {
			/* move only the first half; libdio must continue the rest */
			struct iovec half = { b->iov[0].iov_base, (b->iov[0].iov_len / 2) & ~(size_t)511 };
			struct dio_bio hb = *b;
			hb.iov = &half;
			int e = F.inner->submit(c->inner, &hb, 1);
			b->res = e ? e : hb.res;
			continue;
		}
		int e = F.inner->submit(c->inner, b, 1);
		if (e)
			b->res = e;
	}
	return 0;
}

static int f_flush(void *ctx)
{
	struct fctx *c = ctx;
	pthread_mutex_lock(&F.mu);
	note_user(c);
	bool bad = tick(&F.flushes, F.cfg.fail_flush_at);
	pthread_mutex_unlock(&F.mu);
	if (bad)
		return -EIO;
	if (F.cfg.flush_delay_us)
		usleep((useconds_t)F.cfg.flush_delay_us);
	int e = F.inner->flush(c->inner);
	pthread_mutex_lock(&F.mu);
	if (!e)
		drop_undo();
	pthread_mutex_unlock(&F.mu);
	return e;
}

static const struct dio_backend_ops fault_ops_tbl = {
	.abi = DIO_BACKEND_ABI, .name = "fault", .probe = f_probe, .open = f_open,
	.submit = f_submit, .flush = f_flush, .close = f_close,
};

const struct dio_backend_ops *fault_table(void) { return &fault_ops_tbl; }

/*
 * "fault-async": the same, plus the inner backend's asynchronous pair,
 * through which the gate parks an I/O without blocking the submitter:
 * it is handed to the inner backend only once the gate is released, so a
 * test can see that dio_submit returned while it was still in flight.
 */
static int fa_submit_async(void *ctx, struct dio_bio **bios, unsigned n)
{
	struct fctx *c = ctx;
	for (unsigned i = 0; i < n; i++) {
		pthread_mutex_lock(&F.mu);
		note_user(c);
		bool park = F.gate_op == bios[i]->op + 1 && !parked;
		if (park) {
			F.gate_op = 0;
			parked = bios[i];
			F.gate_parked = 1;
			pthread_cond_broadcast(&F.gate_cv);
		}
		/* a kernel that stops taking I/Os part-way through the call */
		bool refuse = F.cfg.async_refuse_from && (long)i + 1 >= F.cfg.async_refuse_from;
		if (refuse)
			F.async_refused++;
		pthread_mutex_unlock(&F.mu);
		if (refuse)
			return i ? (int)i : -(F.cfg.async_refuse_errno ? F.cfg.async_refuse_errno : EAGAIN);
		if (park)
			continue;
		int r = F.inner->submit_async(c->inner, &bios[i], 1);
		if (r < 1)
			return i ? (int)i : r < 0 ? r : -EIO;
		c->inflight++;
	}
	return (int)n;
}

static int fa_reap(void *ctx, struct dio_bio **done, unsigned min_nr, unsigned max_nr, int timeout_ms)
{
	struct fctx *c = ctx;
	pthread_mutex_lock(&F.mu);
	/* waiting for more than the inner backend has: the parked one */
	while (parked && !F.gate_released && min_nr > c->inflight && timeout_ms < 0)
		pthread_cond_wait(&F.gate_cv, &F.mu);
	struct dio_bio *go = parked && F.gate_released ? parked : NULL;
	if (go)
		parked = NULL;
	pthread_mutex_unlock(&F.mu);
	if (go) {
		int r = F.inner->submit_async(c->inner, &go, 1);
		if (r < 1)
			return r < 0 ? r : -EIO;
		c->inflight++;
	}
	int r = F.inner->reap(c->inner, done, MIN_SZ(min_nr, c->inflight), max_nr, timeout_ms);
	if (r > 0)
		c->inflight -= (unsigned)r;
	return r;
}

static const struct dio_backend_ops fault_async_tbl = {
	.abi = DIO_BACKEND_ABI, .name = "fault-async", .probe = f_probe, .open = f_open,
	.submit = f_submit, .flush = f_flush, .close = f_close,
	.submit_async = fa_submit_async, .reap = fa_reap,
};

bool fault_inner_has_async(void)
{
	return F.inner && F.inner->abi >= 2 && F.inner->submit_async && F.inner->reap;
}

bool fault_gate_is_released(void)
{
	pthread_mutex_lock(&F.mu);
	bool r = F.gate_released;
	pthread_mutex_unlock(&F.mu);
	return r;
}

void fault_setup(const struct fault_cfg *cfg)
{
	static int registered;
	const char *name = getenv("DIO_FAULT_INNER");
	if (!name)
		name = getenv("DIO_BACKEND");
	int err;
	char inner[32];
	snprintf(inner, sizeof(inner), "%s", name && *name ? name : "auto");
	unsetenv("DIO_BACKEND");   /* it would override opts->backend */
	F.inner = dio_backend_find(inner, &err);
	ck_assert_msg(F.inner != NULL, "inner backend %s", inner);
	setenv("DIO_FAULT_INNER", inner, 1);
	pthread_mutex_lock(&F.mu);
	F.cfg = *cfg;
	F.writes = F.reads = F.flushes = F.ops = F.fua = 0;
	F.opens = F.closes = F.shared = F.refused = 0;
	F.failed = F.dead = 0;
	drop_undo();
	pthread_mutex_unlock(&F.mu);
	if (!registered) {
		ck_assert(dio_backend_register(&fault_ops_tbl) == 0);
		ck_assert(dio_backend_register(&fault_async_tbl) == 0);
		registered = 1;
	}
}

long fault_ops(void)
{
	pthread_mutex_lock(&F.mu);
	long n = F.ops;
	pthread_mutex_unlock(&F.mu);
	return n;
}

long fault_count(int kind)
{
	pthread_mutex_lock(&F.mu);
	long n = kind == 0 ? F.writes : kind == 1 ? F.reads : kind == 2 ? F.flushes : kind == 3 ? F.fua
		: kind == 4 ? F.opens : kind == 5 ? F.closes : kind == 6 ? F.shared : kind == 7 ? F.refused
		: F.async_refused;
	pthread_mutex_unlock(&F.mu);
	return n;
}

long fault_unflushed(void)
{
	return (long)F.nlog;
}

void fault_crash(const char *path, long keep)
{
	t_forget_plog(path);   /* power loss is a reboot: the log is gone too */
	int fd = open(path, O_RDWR);
	ck_assert(fd >= 0);
	for (long i = (long)F.nlog - 1; i >= keep && i >= 0; i--)
		ck_assert(pwrite(fd, F.log[i].old, F.log[i].len, (off_t)F.log[i].off) == (ssize_t)F.log[i].len);
	fsync(fd);
	close(fd);
	drop_undo();
}

void fault_gate_arm(int op)
{
	pthread_mutex_lock(&F.mu);
	F.gate_op = op + 1;
	F.gate_parked = F.gate_released = 0;
	pthread_mutex_unlock(&F.mu);
}

void fault_gate_wait_parked(void)
{
	pthread_mutex_lock(&F.mu);
	while (!F.gate_parked)
		pthread_cond_wait(&F.gate_cv, &F.mu);
	pthread_mutex_unlock(&F.mu);
}

void fault_gate_release(void)
{
	pthread_mutex_lock(&F.mu);
	F.gate_released = 1;
	pthread_cond_broadcast(&F.gate_cv);
	pthread_mutex_unlock(&F.mu);
}
