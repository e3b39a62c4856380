/*
 * psync: the portable backend.  preadv/pwritev one I/O at a time,
 * fdatasync for the flush; a FUA write is the platform's durable write
 * (pwritev2 RWF_DSYNC where the system has it, else a write and a data
 * sync: platform_linux.c).
 */
#include "../internal.h"
#include <stdlib.h>
#include <unistd.h>
#include <sys/uio.h>

struct psync_ctx { int fd; };

static int psync_probe(void) { return 0; }

static void *psync_open(int fd, unsigned depth, int *err)
{
	(void)depth;
	struct psync_ctx *c = malloc(sizeof(*c));
	if (!c) {
		*err = ENOMEM;
		return NULL;
	}
	c->fd = fd;
	return c;
}

static int psync_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	struct psync_ctx *c = ctx;
	for (unsigned i = 0; i < n; i++)
		dio_dev_bio(c->fd, &bios[i]);
	return 0;
}

static int psync_flush(void *ctx)
{
	struct psync_ctx *c = ctx;
	return fdatasync(c->fd) < 0 ? -errno : 0;
}

static void psync_close(void *ctx) { free(ctx); }

const struct dio_backend_ops dio_psync_ops = {
	.abi = DIO_BACKEND_ABI, .name = "psync", .probe = psync_probe, .open = psync_open,
	.submit = psync_submit, .flush = psync_flush, .close = psync_close,
};
