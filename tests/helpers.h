/* Shared test helpers: scratch images, patterns, a reference model. */
#ifndef DIO_TEST_HELPERS_H
#define DIO_TEST_HELPERS_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <dio/dio.h>
#include <dio/backend.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

/* A fresh image path in $DIO_TEST_DIR (default /dev/shm, else /tmp). */
const char *t_image_path(const char *tag);
/* mkfs a fresh image of `mib` MiB and mount it with the run's backend. */
struct dio_vol *t_fresh(const char *tag, unsigned mib, char **path_out);
struct dio_vol *t_mount(const char *path);
struct dio_vol *t_mount_flags(const char *path, unsigned flags);   /* DIO_MOUNT_RDONLY */
/* Run on NBD (DIO_TEST_NBD names nbdkit): t_mount serves the image
   through nbdkit and mounts its nbd+unix:// URI (t_nbd_uri). */
const char *t_nbd(void);
const char *t_nbd_uri(const char *path);
bool t_sock_answers(const char *sock);   /* a Unix socket someone listens on */
void *t_aligned(size_t n);
/* byte of file `fid`, written by write number `wid`, at offset pos */
static inline uint8_t t_pat(uint32_t fid, uint32_t wid, uint64_t pos)
{
	/* splitmix64's finalizer over all three: every byte depends on each
	   of them, so two writes to the same place almost never agree */
	uint64_t x = pos + ((uint64_t)fid << 32 | wid) * 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	uint8_t b = (uint8_t)(x ^ (x >> 31));
	return b ? b : 1;   /* never 0, so zeros always mean "not written" */
}
void t_fill(uint8_t *p, size_t n, uint32_t fid, uint32_t wid, uint64_t off);
uint64_t t_rand(void);
void t_seed(uint64_t s);
const char *t_backend(void);
/* A test's image path (NULL until set) and a checked fixture that removes it. */
extern char *t_img;
void t_img_cleanup(void);
/* Drop the process-death log of the volume at path, as a reboot would. */
void t_forget_plog(const char *path);
/* Run a suite, return the exit status. */
int t_run(Suite *s);

/* The fault backend (faultdev.c) */
struct fault_cfg {
	long fail_write_at;    /* fail the Nth write bio (1-based), 0: never */
	long fail_read_at;
	long fail_flush_at;
	int  sticky;           /* keep failing after the first failure */
	int  short_writes;     /* complete writes in two halves */
	int  record;           /* keep an undo log of writes not yet flushed */
	long die_at;           /* power fails at the Nth device op: it and all after fail */
	long flush_delay_us;   /* every flush takes at least this long */
	long max_contexts;     /* opens beyond this many open contexts fail with EAGAIN */
	long async_refuse_from; /* "fault-async": every submit_async call takes only
				   the bios before its Nth (1-based), then says EAGAIN */
	int async_refuse_errno; /* ... or this, when it took none (0: EAGAIN) */
};
void fault_setup(const struct fault_cfg *cfg);  /* registers "fault", wraps the run's backend */
long fault_ops(void);
/* bios seen so far: 0 writes, 1 reads, 2 flushes, 3 FUA writes;
   contexts: 4 opened, 5 closed, 6 bios or flushes a context got from a
   thread other than the first that used it, 7 opens refused,
   8 submit_async calls cut short by async_refuse_from */
long fault_count(int kind);
const struct dio_backend_ops *fault_table(void);
/* Power loss: undo every non-FUA write after the first `keep` unflushed
   ones, newest first, on the image at path. */
void fault_crash(const char *path, long keep);
long fault_unflushed(void);
/* The gate: the next bio of op (DIO_BIO_READ or DIO_BIO_WRITE) parks in
   the backend until fault_gate_release(). */
void fault_gate_arm(int op);
void fault_gate_wait_parked(void);
void fault_gate_release(void);
bool fault_gate_is_released(void);
/* "fault-async" (registered by fault_setup): the fault backend with the
   run's asynchronous pair, whose gate parks an asynchronous I/O without
   blocking the thread that submitted it.  Only when the run's backend
   has such a pair (not psync). */
bool fault_inner_has_async(void);
#define MIN_SZ(a, b) ((a) < (b) ? (a) : (b))
/* ck_assert for hot loops: Check's own macros mark every passing
   assertion through a pipe (a system call each); this one costs nothing
   until it fails. */
#define T_CHECK(expr, ...)                                                  \
	do {                                                                \
		if (!(expr))                                                \
			ck_abort_msg("check failed: " #expr " " __VA_ARGS__); \
	} while (0)
#endif
