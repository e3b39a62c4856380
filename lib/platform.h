/*
 * What libdio needs from the operating system, in one place.  Everything
 * Linux-specific (block-device ioctls, sysfs, statx STATX_DIOALIGN,
 * O_DIRECT's alignment rules, pwritev2 RWF_DSYNC, flock, getrandom,
 * EUCLEAN) lives behind these calls in platform_linux.c; a port to
 * another system is another platform_<os>.c (docs/DESIGN.md says what
 * it must provide).  The io_uring and AIO backends are Linux-only by
 * nature and optional (meson features); psync is the portable one.
 */
#ifndef DIO_PLATFORM_H
#define DIO_PLATFORM_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* "Structure needs cleaning": Linux's EUCLEAN; FreeBSD calls it EINTEGRITY. */
#ifndef EUCLEAN
#ifdef EINTEGRITY
#define EUCLEAN EINTEGRITY
#else
#define EUCLEAN 117
#endif
#endif

/* Per-thread variables.  With glibc, the initial-exec model: an access is
   one load at a fixed offset from the thread pointer, where the default
   model in a shared library calls __tls_get_addr (three calls per 4 KiB
   read, a few percent of its instructions: bench/RESULTS.md).  glibc
   keeps spare static TLS for libraries loaded later by dlopen (a
   SQLite extension that pulls libdio in); libdio's few dozen bytes fit
   it.  Elsewhere the default. */
#if defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define DIO_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define DIO_TLS __thread
#endif

/* What the device is, as far as libdio cares. */
struct dio_geom {
	uint64_t size;           /* bytes usable */
	uint32_t logical_bs;     /* offset_align */
	uint32_t physical_bs;
	uint32_t mem_align;
	uint32_t opt_io;
	uint64_t max_io;
	uint32_t atomic_min, atomic_max;
	bool volatile_cache;
	bool is_blockdev;
	bool memory;             /* dio_dev_never_async: a copy, no device wait */
};

/* Open path for direct I/O, exclusively: a second open of the same volume,
   from any process, fails with EBUSY.  create: make a regular file of
   create_size bytes if path does not exist (*created says it did). */
int  dio_dev_open(const char *path, bool rdonly, bool create, uint64_t create_size, int *fdp, bool *created);
/* Give up the exclusive claim before the descriptor closes (a backend may
   hold the open file a moment longer). */
void dio_dev_release(int fd);
/* Geometry, every value from the device itself. */
int  dio_dev_probe(int fd, struct dio_geom *g);
/* A write that is durable when it returns (FUA): pwritev2 RWF_DSYNC where
   the system has it, else a write and a data sync. */
ssize_t dio_dev_pwritev_fua(int fd, const struct iovec *iov, int iovcnt, off_t off);
/* One device I/O as a system call of the calling thread (preadv,
   pwritev, the FUA write above); sets b->res. */
struct dio_bio;
void dio_dev_bio(int fd, struct dio_bio *b);
/* True if direct I/O on fd is a memory copy that the kernel cannot start
   without blocking (a file on tmpfs): an asynchronous engine hands each
   one to a worker thread, so a caller that waits anyway does better to
   make the system call itself. */
bool dio_dev_never_async(int fd);
/* Call cb with the name (no leading '/') of every POSIX shared memory
   object whose name starts with prefix (nothing where they cannot be
   listed). */
void dio_shm_list(const char *prefix, void (*cb)(const char *name, void *arg), void *arg);
/* Random bytes for a volume uuid. */
void dio_random(void *buf, size_t len);
/* The wall clock in ns since the epoch, coarse (a few ms: a write's
   modification time, as the kernel's own file systems keep it) */
int64_t dio_clock_coarse_ns(void);

/*
 * The system calls the platform file makes where systems differ, as a
 * table: tests replace an entry to see what libdio does without it (a
 * kernel or an emulator without RWF_DSYNC).  Never changed otherwise.
 */
struct dio_syscalls {
	ssize_t (*pwritev2)(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags);
	ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off);
	int     (*fdatasync)(int fd);
};
extern struct dio_syscalls dio_sys;
/* Forget what was learnt about the system (after a test changed dio_sys). */
void dio_platform_reset(void);

#endif
