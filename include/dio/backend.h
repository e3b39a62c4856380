/*
 * libdio backend interface: how libdio hands device I/O to an engine.
 *
 * A backend is a table of functions.  libdio opens one context per
 * submitting thread (and a few shared ones, never used by two threads at
 * once), hands it batches of vectored device I/Os and waits for all of
 * them, and asks it for cache flushes.  The built-in "psync", "uring" and
 * "aio" backends implement exactly this table; dio_backend_register(3)
 * adds another one under a name that dio_mount_opts.backend can select.
 */
#ifndef DIO_BACKEND_H
#define DIO_BACKEND_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DIO_BACKEND_ABI 7   /* 7: targets named by URI (schemes,
				target_open, open_target, target_close);
				6: submit_async returns how many it started;
				5 adds set_eventfd, 4 open_owned, 3 registered
				buffers, 2 the asynchronous pair; 1 to 6 are
				still accepted */

#define DIO_BIO_READ  0
#define DIO_BIO_WRITE 1

#define DIO_BIO_FUA   0x1u   /* write: durable when it completes (RWF_DSYNC) */
#define DIO_BIO_FIXED 0x2u   /* the bio's one buffer lies inside buffer number
				(flags >> DIO_BIO_BUF_SHIFT) registered with
				this context (ABI 3, register_buffers) */
#define DIO_BIO_BUF_SHIFT 16

struct dio_bio {
	int op;                    /* DIO_BIO_READ or DIO_BIO_WRITE */
	unsigned flags;            /* DIO_BIO_FUA */
	uint64_t offset;           /* byte offset on the device */
	const struct iovec *iov;   /* aligned buffers */
	int iovcnt;
	ssize_t res;               /* set by the backend: bytes moved or -errno */
};

/* A device that is not a local file (ABI 7): what target_open found. */
#define DIO_TARGET_RDONLY 0x1u   /* the store takes no writes */
#define DIO_TARGET_FLUSH  0x2u   /* writes may sit in a volatile cache that flush empties */
#define DIO_TARGET_ID_MAX 160

struct dio_target {
	uint64_t size;             /* bytes */
	uint32_t logical_bs;       /* smallest I/O unit and alignment (power of two) */
	uint32_t physical_bs;      /* preferred I/O unit (power of two, >= logical_bs) */
	uint32_t opt_io;           /* optimal I/O size, 0 if unknown */
	uint32_t mem_align;        /* buffer alignment the engine needs (power of two; 1: any) */
	uint64_t max_io;           /* largest I/O it takes as one (power of two) */
	unsigned flags;            /* DIO_TARGET_* */
	char id[DIO_TARGET_ID_MAX];   /* the device's identity: equal for every name of one device */
};

struct dio_backend_ops {
	unsigned abi;              /* DIO_BACKEND_ABI */
	const char *name;          /* at most 15 bytes */
	/* 0 if the backend can run on this machine now, else -errno. */
	int   (*probe)(void);
	/* One context on the open device fd, able to carry `depth` I/Os in
	   one batch.  NULL and *err = errno value on failure. */
	void *(*open)(int fd, unsigned depth, int *err);
	/* Issue the n I/Os and wait for all of them; set each bio's res.
	   Returns 0, or -errno if the batch could not be issued at all.
	   An I/O the engine would not take gets that error in its res; it
	   never returns with an I/O of the batch still in flight. */
	int   (*submit)(void *ctx, struct dio_bio *bios, unsigned n);
	/* Flush the device's volatile cache: 0 or -errno. */
	int   (*flush)(void *ctx);
	void  (*close)(void *ctx);
	/* Optional (ABI 2; NULL: queue requests complete inline).  Start n
	   I/Os without waiting; each bio pointer identifies its I/O until
	   reap hands it back.  ABI 6: returns how many were started, always
	   the first ones (the engine took bios[0..r) and will hand each back
	   through reap; the others never reach it), or -errno if none was.
	   ABI 2 to 5: 0 means all, -errno none. */
	int   (*submit_async)(void *ctx, struct dio_bio **bios, unsigned n);
	/* Wait up to timeout_ms (-1: forever, 0: poll) until at least
	   min_nr I/Os completed; store up to max_nr of them (res set) in
	   done.  Returns how many, or -errno. */
	int   (*reap)(void *ctx, struct dio_bio **done, unsigned min_nr, unsigned max_nr, int timeout_ms);
	/* Optional (ABI 3; NULL: not supported).  Register nr buffers with
	   this context for DIO_BIO_FIXED bios, replacing any registered
	   before; nr 0 drops them.  Called with no I/O in flight.  0 or
	   -errno. */
	int   (*register_buffers)(void *ctx, const struct iovec *iov, unsigned nr);
	/* Optional (ABI 4; NULL: open is used).  Like open, for a context
	   that only the calling thread will submit on (its own synchronous
	   context, a queue made with DIO_QUEUE_SINGLE_THREAD), so the engine
	   may bind it to that thread (io_uring: SINGLE_ISSUER|DEFER_TASKRUN).
	   close may still come from another thread, at unmount. */
	void *(*open_owned)(int fd, unsigned depth, int *err);
	/* Optional (ABI 5; NULL: dio_queue_fd fails with EOPNOTSUPP on a
	   queue of this backend that has the asynchronous pair).  From now
	   on, add to the eventfd `fd` (write(2) of a count) whenever an I/O
	   started by submit_async completes, as io_uring_register_eventfd
	   and IOCB_FLAG_RESFD do.  Called with no I/O in flight.  0 or
	   -errno. */
	int   (*set_eventfd)(void *ctx, int fd);
	/* Optional (ABI 7; NULL: local files and block devices only).  A
	   backend of a device reached by name, not by a file descriptor (a
	   network block device, a distributed store): schemes lists the
	   prefixes of the targets it serves ("nbd://", NULL-terminated), and
	   dio_mkfs, dio_mount and dio_fsck hand a path that starts with one of
	   them to this backend and to no other.  target_open connects to the
	   target (read-only if rdonly), fills *t and returns the device;
	   open_target makes a context on it, as open does on a file (open
	   and open_owned are never called for such a target); target_close
	   ends the device after its last context closed.  NULL and *err =
	   errno value on failure. */
	const char *const *schemes;
	void *(*target_open)(const char *target, int rdonly, struct dio_target *t, int *err);
	void *(*open_target)(void *dev, unsigned depth, int *err);
	void  (*target_close)(void *dev);
};

/* Make `ops` selectable by name.  The table must outlive every mount
   that uses it.  0, or -1 with errno EINVAL/EEXIST/ENOSPC. */
int dio_backend_register(const struct dio_backend_ops *ops);

#ifdef __cplusplus
}
#endif
#endif
