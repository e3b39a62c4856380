/*
 * nbd: a volume on a Network Block Device export, through libnbd, in user
 * space (no kernel module, no root).  The target is the NBD URI as
 * nbd_connect_uri(3) reads it: nbd://host[:port]/export,
 * nbd+unix:///export?socket=PATH, and the TLS and vsock forms.
 *
 * Each context is a connection of its own when the server offers
 * multi-conn (a flush on one then covers writes acknowledged on any, the
 * NBD rule that makes several connections safe); else every context
 * shares the first connection, one call at a time.  A device I/O is one
 * NBD command per buffer of its iovec, all in flight at once; a batch
 * waits in nbd_poll(3) until every one came back.  DIO_BIO_FUA is the
 * FUA command flag where the server takes it, else the batch ends with a
 * flush.  A server without flush keeps no volatile cache (it advertises
 * none): libdio then sends no flush and counts none.
 *
 * Errors: whatever went wrong on the way (a server error, a dropped
 * connection, a dead handle) is EIO to libdio, which reports it as a
 * device error.  A connection that died stays dead: every later command
 * on it fails at once, until the volume is mounted again.  A server that
 * stays silent past DIO_NBD_TIMEOUT (30 s) while we wait, connecting or
 * for a reply, has its connection cut (silence_limit_ms): a store that stops
 * answering is an error, never a hang.
 */
#include "../internal.h"
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>
#include <sys/socket.h>

static const char *const nbd_schemes[] = { "nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
					   "nbd+vsock://", "nbds+vsock://", NULL };

#define NBD_MAX_IO (32u << 20)   /* what the NBD protocol says a client should not exceed */

struct nbd_dev {
	char *uri;
	struct nbd_handle *h;      /* the first connection */
	pthread_mutex_t lock;      /* serializes contexts sharing h (no multi-conn) */
	bool multi, fua, flush;
};

/* One bio in flight: its commands still out (plus one while they are
   being issued, so that an early reply cannot complete it), the first
   error.  A synchronous batch's live on its stack and count down *left;
   a queue's are the context's, and go to its done list. */
struct nbd_track {
	struct nbd_ctx *c;
	struct dio_bio *b;
	unsigned pending;
	int err;
	size_t bytes;
	unsigned *left;            /* synchronous: the batch's count, else NULL */
	struct nbd_track *next_free;
};

struct nbd_ctx {
	struct nbd_dev *d;
	struct nbd_handle *h;
	bool own;                  /* h is this context's connection */
	unsigned depth;
	struct nbd_track *track, *free_track;
	struct dio_bio **done;     /* completed asynchronous bios, not reaped yet */
	unsigned ndone, inflight;
	struct nbd_track sync_track[8];   /* SYNC_CHUNK */   /* a synchronous batch's (one thread at a time) */
};

static int nbd_probe(void) { return 0; }

static void *nbd_open_fd(int fd, unsigned depth, int *err)
{
	(void)fd;
	(void)depth;
	dio_log(DIO_LOG_ERR, "backend nbd serves NBD URIs only (nbd://host/export, nbd+unix:///export?socket=PATH)");
	*err = EINVAL;
	return NULL;
}

/* How long a server may stay silent while libdio waits on it (connecting
   or for a command's reply), in ms: DIO_NBD_TIMEOUT seconds (0: wait
   forever), 30 by default, as the kernel's NBD client.  Past it the
   connection is cut: every command on it fails (EIO to the caller) and
   the volume must be mounted again. */
static int silence_limit_ms(void)
{
	const char *e = getenv("DIO_NBD_TIMEOUT");
	long s = e && *e ? strtol(e, NULL, 10) : 30;
	return s <= 0 ? -1 : s > 86400 ? 86400000 : (int)(s * 1000);
}

#define SLICE_MS 250   /* one wait in nbd_poll, between looks at the clock */

/* Cut a silent connection: the next nbd_poll sees it closed, and libnbd
   fails every command still out on it. */
static void cut(struct nbd_handle *h, const char *why)
{
	int fd = nbd_aio_get_fd(h);
	dio_log(DIO_LOG_ERR, "nbd: %s: cutting the connection", why);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

static struct nbd_handle *connect_to(const char *uri, int *err)
{
	struct nbd_handle *h = nbd_create();
	if (!h) {
		*err = ENOMEM;
		return NULL;
	}
	int limit = silence_limit_ms(), waited = 0;
	int r = nbd_aio_connect_uri(h, uri);
	while (r != -1 && !nbd_aio_is_ready(h)) {
		if (nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1) {
			r = -1;
			break;
		}
		if (limit >= 0 && waited >= limit) {
			dio_log(DIO_LOG_ERR, "%s: no answer in %d s", uri, limit / 1000);
			nbd_close(h);
			*err = ETIMEDOUT;
			return NULL;
		}
		int p = nbd_poll(h, SLICE_MS);
		if (p == 0)
			waited += SLICE_MS;
		else if (p == -1 && (nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1))
			r = -1;
	}
	if (r == -1) {
		int e = nbd_get_errno();
		dio_log(DIO_LOG_ERR, "%s: %s", uri, nbd_get_error());
		nbd_close(h);
		*err = e ? e : EIO;
		return NULL;
	}
	return h;
}

static uint32_t pow2_floor32(uint64_t x)
{
	uint32_t p = 1;
	while ((uint64_t)p * 2 <= x && p < (1u << 30))
		p *= 2;
	return p;
}

static void *nbd_target_open(const char *target, int rdonly, struct dio_target *t, int *err)
{
	struct nbd_dev *d = calloc(1, sizeof(*d));
	if (!d || !(d->uri = strdup(target))) {
		free(d);
		*err = ENOMEM;
		return NULL;
	}
	d->h = connect_to(target, err);
	int64_t size = d->h ? nbd_get_size(d->h) : -1;
	if (!d->h || size < 0) {
		if (d->h) {
			dio_log(DIO_LOG_ERR, "%s: no size: %s", target, nbd_get_error());
			nbd_close(d->h);
			*err = EIO;
		}
		free(d->uri);
		free(d);
		return NULL;
	}
	pthread_mutex_init(&d->lock, NULL);
	d->multi = nbd_can_multi_conn(d->h) == 1;
	d->fua = nbd_can_fua(d->h) == 1;
	d->flush = nbd_can_flush(d->h) == 1;
	int64_t bmin = nbd_get_block_size(d->h, LIBNBD_SIZE_MINIMUM);
	int64_t bpref = nbd_get_block_size(d->h, LIBNBD_SIZE_PREFERRED);
	int64_t bmax = nbd_get_block_size(d->h, LIBNBD_SIZE_MAXIMUM);
	t->size = (uint64_t)size;
	/* a byte-granular server (minimum 1, or not said) is used in sectors */
	t->logical_bs = bmin > 512 ? pow2_floor32((uint64_t)bmin) : 512;
	t->physical_bs = bpref > (int64_t)t->logical_bs ? pow2_floor32((uint64_t)bpref) : MAX(4096u, t->logical_bs);
	t->opt_io = 0;
	t->mem_align = 1;   /* libnbd copies: any buffer */
	t->max_io = bmax > 0 && (uint64_t)bmax < NBD_MAX_IO ? pow2_floor32((uint64_t)bmax) : NBD_MAX_IO;
	if (t->max_io < t->physical_bs)
		t->max_io = t->physical_bs;
	t->flags = (nbd_is_read_only(d->h) == 1 ? DIO_TARGET_RDONLY : 0) | (d->flush ? DIO_TARGET_FLUSH : 0);
	if (!d->flush && !rdonly)
		dio_log(DIO_LOG_WARN, "%s: the server offers no flush: libdio takes its writes as durable when "
			"acknowledged (what a server without a volatile cache promises)", target);
	snprintf(t->id, sizeof(t->id), "%s", target);
	return d;
}

static void nbd_target_close(void *dev)
{
	struct nbd_dev *d = dev;
	nbd_shutdown(d->h, 0);
	nbd_close(d->h);
	pthread_mutex_destroy(&d->lock);
	free(d->uri);
	free(d);
}

static void *nbd_open_target(void *dev, unsigned depth, int *err)
{
	struct nbd_dev *d = dev;
	struct nbd_ctx *c = calloc(1, sizeof(*c));
	if (c) {
		c->track = calloc(depth ? depth : 1, sizeof(*c->track));
		c->done = calloc(depth ? depth : 1, sizeof(*c->done));
	}
	if (!c || !c->track || !c->done) {
		if (c) {
			free(c->track);
			free(c->done);
		}
		free(c);
		*err = ENOMEM;
		return NULL;
	}
	c->d = d;
	c->depth = depth ? depth : 1;
	for (unsigned i = 0; i < c->depth; i++) {
		c->track[i].c = c;
		c->track[i].next_free = i + 1 < c->depth ? &c->track[i + 1] : NULL;
	}
	c->free_track = &c->track[0];
	if (d->multi) {
		c->h = connect_to(d->uri, err);
		c->own = c->h != NULL;
	}
	if (!c->h)
		c->h = d->h;   /* no multi-conn, or no second connection: share the first */
	return c;
}

static void nbd_close_ctx(void *ctx)
{
	struct nbd_ctx *c = ctx;
	if (c->own) {
		nbd_shutdown(c->h, 0);
		nbd_close(c->h);
	}
	free(c->track);
	free(c->done);
	free(c);
}

static void lock_shared(struct nbd_ctx *c)
{
	if (!c->own)
		pthread_mutex_lock(&c->d->lock);
}

static void unlock_shared(struct nbd_ctx *c)
{
	if (!c->own)
		pthread_mutex_unlock(&c->d->lock);
}

/* A bio's last command came back (or it never had one out). */
static void track_done(struct nbd_track *t)
{
	struct nbd_ctx *c = t->c;
	t->b->res = t->err ? -EIO : (ssize_t)t->bytes;
	if (t->err)
		dio_log(DIO_LOG_ERR, "nbd %s at %llu: %s", t->b->op == DIO_BIO_WRITE ? "write" : "read",
			(unsigned long long)t->b->offset, strerror(t->err));
	if (t->left) {
		(*t->left)--;
		return;
	}
	c->done[c->ndone++] = t->b;
	c->inflight--;
	t->next_free = c->free_track;
	c->free_track = t;
}

static void track_put(struct nbd_track *t, int err)
{
	if (err && !t->err)
		t->err = err;
	if (--t->pending == 0)
		track_done(t);
}

static int on_reply(void *user_data, int *error)
{
	track_put(user_data, *error);
	return 1;   /* retire the command */
}

/* Issue b's commands, one per buffer; t tracks them.  Returns how many
   went out (0: none, the bio failed with t->err). */
static unsigned issue(struct nbd_ctx *c, struct nbd_track *t, struct dio_bio *b)
{
	t->b = b;
	t->err = 0;
	t->bytes = 0;
	t->pending = 1;   /* the guard, dropped below */
	uint64_t off = b->offset;
	uint32_t flags = b->op == DIO_BIO_WRITE && (b->flags & DIO_BIO_FUA) && c->d->fua ? LIBNBD_CMD_FLAG_FUA : 0;
	unsigned sent = 0;
	for (int i = 0; i < b->iovcnt && !t->err; i++) {
		nbd_completion_callback cb = { .callback = on_reply, .user_data = t };
		t->pending++;
		int64_t r = b->op == DIO_BIO_WRITE
			? nbd_aio_pwrite(c->h, b->iov[i].iov_base, b->iov[i].iov_len, off, cb, flags)
			: nbd_aio_pread(c->h, b->iov[i].iov_base, b->iov[i].iov_len, off, cb, 0);
		if (r == -1) {
			t->pending--;
			t->err = nbd_get_errno() ? nbd_get_errno() : EIO;
			break;
		}
		t->bytes += b->iov[i].iov_len;
		off += b->iov[i].iov_len;
		sent++;
	}
	return sent;
}

/* The connection cannot go on: libnbd has failed every command it had
   (each callback ran, with an error), and fails every new one at once. */
static bool conn_dead(struct nbd_ctx *c)
{
	return nbd_aio_is_dead(c->h) == 1 || nbd_aio_is_closed(c->h) == 1;
}

/* Poll the connection until *left is 0; EIO if it died first.  A server
   silent for silence_limit_ms() while we wait has its connection cut (the
   commands then come back failed). */
static int wait_for(struct nbd_ctx *c, unsigned *left)
{
	int limit = silence_limit_ms(), idle = 0;
	unsigned before = *left;
	while (*left) {
		int r = nbd_poll(c->h, limit < 0 ? -1 : SLICE_MS);
		if (r == -1 && conn_dead(c))
			return -EIO;
		if (*left < before) {
			before = *left;
			idle = 0;
		} else if (r == 0 && limit >= 0 && (idle += SLICE_MS) >= limit) {
			cut(c->h, "the server did not answer in time");
			idle = INT_MIN / 2;   /* cut once: now wait for libnbd to see it */
		}
	}
	return 0;
}

#define SYNC_CHUNK 8   /* bios in flight per round of a synchronous batch: sync_track */

static int nbd_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	struct nbd_ctx *c = ctx;
	bool fua_by_flush = false;
	lock_shared(c);
	for (unsigned at = 0; at < n;) {
		unsigned k = MIN(n - at, SYNC_CHUNK), left = k;
		struct nbd_track *tr = c->sync_track;
		for (unsigned i = 0; i < k; i++) {
			struct dio_bio *b = &bios[at + i];
			tr[i] = (struct nbd_track){ .c = c, .left = &left };
			if (b->op == DIO_BIO_WRITE && (b->flags & DIO_BIO_FUA) && !c->d->fua)
				fua_by_flush = true;
			issue(c, &tr[i], b);
			track_put(&tr[i], 0);   /* drop the guard */
		}
		if (wait_for(c, &left) < 0) {
			/* the connection cannot go on; libnbd failed every
			   command it had, a bio still counted is failed here */
			for (unsigned i = 0; i < k; i++)
				if (tr[i].pending)
					bios[at + i].res = -EIO;
		}
		at += k;
	}
	/* FUA writes the server cannot mark: durable by one flush after */
	if (fua_by_flush && c->d->flush && nbd_flush(c->h, 0) == -1) {
		for (unsigned i = 0; i < n; i++)
			if (bios[i].op == DIO_BIO_WRITE && (bios[i].flags & DIO_BIO_FUA))
				bios[i].res = -EIO;
	}
	unlock_shared(c);
	return 0;
}

static int nbd_flush_ctx(void *ctx)
{
	struct nbd_ctx *c = ctx;
	if (!c->d->flush)
		return 0;
	lock_shared(c);
	int r = nbd_flush(c->h, 0);
	unlock_shared(c);
	if (r == -1) {
		dio_log(DIO_LOG_ERR, "nbd flush: %s", nbd_get_error());
		return -EIO;
	}
	return 0;
}

static int nbd_submit_async(void *ctx, struct dio_bio **bios, unsigned n)
{
	struct nbd_ctx *c = ctx;
	unsigned started = 0;
	lock_shared(c);
	for (; started < n && c->free_track; started++) {
		struct dio_bio *b = bios[started];   /* never FUA: libdio runs those inline */
		struct nbd_track *t = c->free_track;
		c->free_track = t->next_free;
		t->left = NULL;
		c->inflight++;
		if (!issue(c, t, b)) {
			/* nothing went out: hand it back, as never started */
			c->inflight--;
			t->next_free = c->free_track;
			c->free_track = t;
			break;
		}
		track_put(t, 0);
	}
	unlock_shared(c);
	return started ? (int)started : -EIO;
}

static int nbd_reap(void *ctx, struct dio_bio **done, unsigned min_nr, unsigned max_nr, int timeout_ms)
{
	struct nbd_ctx *c = ctx;
	lock_shared(c);
	int64_t deadline = timeout_ms > 0 ? dio_clock_coarse_ns() + (int64_t)timeout_ms * 1000000 : 0;
	int e = 0;
	int limit = silence_limit_ms(), idle = 0;
	unsigned seen = c->ndone;
	while (c->ndone < min_nr && c->inflight) {
		int wait = timeout_ms < 0 ? (limit < 0 ? -1 : SLICE_MS) : timeout_ms;
		if (timeout_ms > 0) {
			int64_t left = deadline - dio_clock_coarse_ns();
			if (left <= 0)
				break;
			wait = (int)MAX(1, MIN(left / 1000000, (int64_t)SLICE_MS));
		}
		int r = nbd_poll(c->h, wait);
		if (r == -1 && conn_dead(c)) {
			e = c->ndone ? 0 : -EIO;
			break;
		}
		if (r == 0 && timeout_ms == 0)
			break;
		/* the server silent past the limit: cut, as wait_for does */
		if (c->ndone != seen) {
			seen = c->ndone;
			idle = 0;
		} else if (r == 0 && limit >= 0 && (idle += wait) >= limit) {
			cut(c->h, "the server did not answer in time");
			idle = INT_MIN / 2;
		}
	}
	if (!c->ndone && timeout_ms == 0 && c->inflight)
		nbd_poll(c->h, 0);
	unsigned k = MIN(c->ndone, max_nr);
	memcpy(done, c->done, k * sizeof(*done));
	memmove(c->done, c->done + k, (c->ndone - k) * sizeof(*done));
	c->ndone -= k;
	unlock_shared(c);
	return k ? (int)k : e;
}

const struct dio_backend_ops dio_nbd_ops = {
	.abi = DIO_BACKEND_ABI, .name = "nbd", .probe = nbd_probe, .open = nbd_open_fd,
	.submit = nbd_submit, .flush = nbd_flush_ctx, .close = nbd_close_ctx,
	.submit_async = nbd_submit_async, .reap = nbd_reap,
	.schemes = nbd_schemes, .target_open = nbd_target_open, .open_target = nbd_open_target,
	.target_close = nbd_target_close,
};
