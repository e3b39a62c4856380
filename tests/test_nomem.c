/*
 * Out of memory in the middle of a metadata call: the call succeeds, or
 * fails having changed nothing.  For each call below and every N, the Nth
 * allocation libdio makes during the call fails (lib/mem.h's door); a
 * child process runs it on a fresh volume and reports what the volume
 * shows in memory afterwards, then creates "marker" and dies without
 * unmounting.  The parent checks:
 *
 *   - a call that failed left the volume exactly as before it (names,
 *     sizes, every byte), with ENOMEM;
 *   - the next mount (journal and process-death log) shows what the
 *     child's memory showed, plus "marker": memory, journal and log never
 *     disagree, whatever failed where;
 *   - dio_fsck is clean.
 *
 * N grows until the call makes fewer than N allocations.  A journal
 * record a call did not reserve room for counts as an allocation
 * meanwhile, room or not (dio_alloc_tight), so that the sweep fails it
 * too.  Once, not per backend: allocation does not depend on the
 * backend.
 */
#include "helpers.h"
#include <stdatomic.h>

extern _Atomic long dio_alloc_fail_in;   /* lib/mem.h */
extern _Atomic bool dio_alloc_tight;

#define NMAX 16
struct snap {
	int n;
	char name[NMAX][32];
	uint64_t size[NMAX], sum[NMAX];
};

static int snap_cb(const char *name, const struct dio_stat *st, void *arg)
{
	struct snap *s = arg;
	if (s->n < NMAX) {
		snprintf(s->name[s->n], sizeof(s->name[0]), "%s", name);
		s->size[s->n] = st->size;
		s->n++;
	}
	return 0;
}

/* Names, sizes and a checksum of every byte of every file. */
static void snap_take(struct dio_vol *v, struct snap *s)
{
	memset(s, 0, sizeof(*s));
	dio_list(v, NULL, snap_cb, s);
	uint8_t *buf = t_aligned(16 << 20);
	for (int i = 0; i < s->n; i++) {
		struct dio_file *f = dio_open(v, s->name[i], O_RDONLY);
		ssize_t r = f ? dio_pread(f, buf, 16 << 20, 0) : -1;
		uint64_t h = 1469598103934665603ull;
		for (ssize_t k = 0; k < r; k++)
			h = (h ^ buf[k]) * 1099511628211ull;
		s->sum[i] = r == (ssize_t)s->size[i] ? h : 0;
		if (f)
			dio_close(f);
	}
	free(buf);
}

/* The first difference between a and b (marker in b is skipped if
   skip_marker), or NULL. */
static const char *snap_diff(const struct snap *a, const struct snap *b, bool skip_marker, char *why, size_t len)
{
	int j = 0;
	for (int i = 0; i < a->n || j < b->n; i++, j++) {
		if (skip_marker && j < b->n && !strcmp(b->name[j], "marker") && (i >= a->n || strcmp(a->name[i], "marker")))
			j++;
		if (i >= a->n && j >= b->n)
			break;
		if (i >= a->n || j >= b->n || strcmp(a->name[i], b->name[j])) {
			snprintf(why, len, "names differ: \"%s\" and \"%s\"", i < a->n ? a->name[i] : "(none)",
				 j < b->n ? b->name[j] : "(none)");
			return why;
		}
		if (a->size[i] != b->size[j] || a->sum[i] != b->sum[j]) {
			snprintf(why, len, "\"%s\": size %llu/%llu, bytes %s", a->name[i], (unsigned long long)a->size[i],
				 (unsigned long long)b->size[j], a->sum[i] == b->sum[j] ? "same" : "differ");
			return why;
		}
	}
	return NULL;
}

/* ---- the calls ---------------------------------------------------------------- */

static uint8_t *pattern(size_t n, uint32_t seed)
{
	uint8_t *b = t_aligned(n);
	t_fill(b, n, 9, seed, 0);
	return b;
}

static void put(struct dio_vol *v, const char *name, uint64_t off, size_t len, uint32_t seed)
{
	struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(f);
	uint8_t *b = pattern(len + 1, seed);
	ck_assert_int_eq(dio_pwrite(f, b, len, (off_t)off), (ssize_t)len);
	free(b);
	dio_close(f);
}

/* "a": 40 KiB and a partial block, in pieces (several extents, holes);
   "b": 20,000 bytes; "big": 4 MiB preallocated with scattered blocks
   written (a partial record); some of it synced, some not. */
static void setup(struct dio_vol *v)
{
	put(v, "a", 0, 16384, 1);
	put(v, "a", 24576, 16384 + 3000, 2);
	put(v, "b", 0, 20000, 3);
	struct dio_file *big = dio_open(v, "big", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_fallocate(big, 0, 0, 4 << 20), 0);   /* one unwritten record */
	dio_close(big);
	ck_assert_int_eq(dio_syncfs(v), 0);
	for (int i = 0; i < 64; i++)
		put(v, "big", (uint64_t)(i * 37 % 1024) * 4096, 4096, 10 + (uint32_t)i);
	put(v, "a", 60000, 100, 4);   /* pending: an extending misaligned write */
	/* "frag": 100 one-block extents with a hole after each, so that the
	   map's leaves (32 records) are full and an insert among them splits
	   one */
	uint8_t *b = pattern(4096, 5);
	struct dio_file *fr = dio_open(v, "frag", O_RDWR | O_CREAT);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(dio_pwrite(fr, b, 4096, (off_t)i * 8192), 4096);
	dio_close(fr);
	free(b);
}

static int with_file(struct dio_vol *v, const char *name, int (*fn)(struct dio_file *f))
{
	struct dio_file *f = dio_open(v, name, O_RDWR);
	if (!f)
		return -1;
	int r = fn(f), e = errno;
	dio_close(f);
	errno = e;
	return r;
}

static int c_create(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "new", O_RDWR | O_CREAT | O_EXCL);
	return f ? dio_close(f) : -1;
}
static int c_unlink(struct dio_vol *v) { return dio_unlink(v, "a"); }
static int c_rename_over(struct dio_vol *v) { return dio_rename(v, "b", "a"); }
static int c_rename_new(struct dio_vol *v) { return dio_rename(v, "a", "dir/renamed"); }
static int f_trunc_edge(struct dio_file *f) { return dio_ftruncate(f, 20001); }
static int c_trunc_edge(struct dio_vol *v) { return with_file(v, "a", f_trunc_edge); }
static int f_trunc_grow(struct dio_file *f) { return dio_ftruncate(f, 1 << 20); }
static int c_trunc_grow(struct dio_vol *v) { return with_file(v, "b", f_trunc_grow); }
static int f_prealloc(struct dio_file *f) { return dio_fallocate(f, 0, 0, 256 << 10); }
static int c_prealloc(struct dio_vol *v) { return with_file(v, "a", f_prealloc); }
static int f_punch(struct dio_file *f) { return dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 3000, 33000); }
static int c_punch(struct dio_vol *v) { return with_file(v, "a", f_punch); }
static int f_zero(struct dio_file *f) { return dio_fallocate(f, DIO_FALLOC_ZERO_RANGE, 3000, 70000); }
static int c_zero(struct dio_vol *v) { return with_file(v, "a", f_zero); }
static int f_punch_partial(struct dio_file *f)
{
	return dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 100 * 4096 + 10, 300 * 4096);
}
static int c_punch_partial(struct dio_vol *v) { return with_file(v, "big", f_punch_partial); }
static int f_write_partial(struct dio_file *f)
{
	uint8_t *b = pattern(8192, 77);
	int r = dio_pwrite(f, b, 8192, 513 * 4096) == 8192 ? 0 : -1, e = errno;
	free(b);
	errno = e;
	return r;
}
static int c_write_partial(struct dio_vol *v) { return with_file(v, "big", f_write_partial); }
static int f_write_extend(struct dio_file *f)
{
	uint8_t *b = pattern(65536 + 1, 78);
	int r = dio_pwrite(f, b, 65536, 80000) == 65536 ? 0 : -1, e = errno;   /* misaligned, past EOF */
	free(b);
	errno = e;
	return r;
}
static int c_write_extend(struct dio_vol *v) { return with_file(v, "b", f_write_extend); }
static int f_write_hole(struct dio_file *f)
{
	uint8_t *b = pattern(8192, 79);
	int r = dio_pwrite(f, b, 8192, 16384) == 8192 ? 0 : -1, e = errno;   /* aligned, into a hole */
	free(b);
	errno = e;
	return r;
}
static int c_write_hole(struct dio_vol *v) { return with_file(v, "a", f_write_hole); }
static int f_frag_punch(struct dio_file *f)
{
	return dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 50 * 8192 + 100, 3 * 8192);
}
static int c_frag_punch(struct dio_vol *v) { return with_file(v, "frag", f_frag_punch); }
static int f_frag_zero(struct dio_file *f) { return dio_fallocate(f, DIO_FALLOC_ZERO_RANGE, 30 * 8192 + 100, 40 * 8192); }
static int c_frag_zero(struct dio_vol *v) { return with_file(v, "frag", f_frag_zero); }
static int f_frag_fill(struct dio_file *f) { return dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, 0, 100 * 8192); }
static int c_frag_fill(struct dio_vol *v) { return with_file(v, "frag", f_frag_fill); }
static int f_frag_trunc(struct dio_file *f) { return dio_ftruncate(f, 70 * 8192 + 77); }
static int c_frag_trunc(struct dio_vol *v) { return with_file(v, "frag", f_frag_trunc); }
static int f_frag_write(struct dio_file *f)
{
	uint8_t *b = pattern(4096 * 3, 80);
	int r = dio_pwrite(f, b, 4096 * 3, 40 * 8192 + 4096) == 4096 * 3 ? 0 : -1, e = errno;   /* over holes and blocks */
	free(b);
	errno = e;
	return r;
}
static int c_frag_write(struct dio_vol *v) { return with_file(v, "frag", f_frag_write); }
static int c_close_unlinked(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "b", O_RDONLY);
	if (!f || dio_unlink(v, "b"))
		return -1;
	return dio_close(f);
}

struct call { const char *what; int (*fn)(struct dio_vol *v); };
static const struct call calls[] = {
	{ "create", c_create },
	{ "unlink", c_unlink },
	{ "rename over a file", c_rename_over },
	{ "rename to a new name", c_rename_new },
	{ "truncate inside a block", c_trunc_edge },
	{ "truncate up", c_trunc_grow },
	{ "preallocate over holes", c_prealloc },
	{ "punch with partial edges", c_punch },
	{ "zero range with partial edges", c_zero },
	{ "punch inside a partial record", c_punch_partial },
	{ "write into a partial record", c_write_partial },
	{ "extending misaligned write", c_write_extend },
	{ "aligned write into a hole", c_write_hole },
	{ "close of an unlinked file", c_close_unlinked },
	{ "punch among 100 extents", c_frag_punch },
	{ "zero range among 100 extents", c_frag_zero },
	{ "preallocate the 100 holes between extents", c_frag_fill },
	{ "truncate among 100 extents", c_frag_trunc },
	{ "write over holes and blocks among 100 extents", c_frag_write },
};

/* ---- the sweep ------------------------------------------------------------------ */

struct report {
	int r, err;
	long left;          /* the countdown when the call returned: > 0, it never reached N */
	struct snap before, after;
};

static void child(const struct call *c, long n, int fd)
{
	struct report rp;
	memset(&rp, 0, sizeof(rp));
	struct dio_vol *v = t_mount(t_img);
	if (!v)
		_exit(2);
	setup(v);
	snap_take(v, &rp.before);
	atomic_store(&dio_alloc_tight, true);
	atomic_store(&dio_alloc_fail_in, n);
	errno = 0;
	rp.r = c->fn(v);
	rp.err = errno;
	rp.left = atomic_exchange(&dio_alloc_fail_in, 0);
	atomic_store(&dio_alloc_tight, false);
	snap_take(v, &rp.after);
	struct dio_file *m = dio_open(v, "marker", O_RDWR | O_CREAT);
	if (!m || dio_close(m))
		_exit(3);
	if (write(fd, &rp, sizeof(rp)) != sizeof(rp))
		_exit(4);
	_exit(0);   /* as a kill: no unmount */
}

static long sweep(const struct call *c)
{
	struct report rp;
	long n;
	for (n = 1;; n++) {
		t_forget_plog(t_img);
		unlink(t_img);
		ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			child(c, n, pfd[1]);
		}
		close(pfd[1]);
		ssize_t got = read(pfd[0], &rp, sizeof(rp));
		close(pfd[0]);
		int status;
		waitpid(pid, &status, 0);
		ck_assert_msg(got == sizeof(rp), "%s, allocation %ld fails: the child died (status %d)", c->what, n, status);
		char why[200];
		const char *d;
		if (rp.r) {
			ck_assert_msg(rp.err == ENOMEM, "%s, allocation %ld fails: errno %d (%s), not ENOMEM", c->what, n,
				      rp.err, strerror(rp.err));
			d = snap_diff(&rp.before, &rp.after, false, why, sizeof(why));
			ck_assert_msg(!d, "%s failed at allocation %ld but changed the volume: %s", c->what, n, d);
		}
		struct dio_vol *v = t_mount(t_img);
		ck_assert_msg(v != NULL, "%s, allocation %ld fails: no mount after: %s", c->what, n, strerror(errno));
		struct snap disk;
		snap_take(v, &disk);
		d = snap_diff(&rp.after, &disk, true, why, sizeof(why));
		ck_assert_msg(!d, "%s, allocation %ld fails (the call %s): the next mount differs from memory: %s", c->what, n,
			      rp.r ? "failed" : "succeeded", d);
		ck_assert_int_eq(dio_umount(v), 0);
		ck_assert_msg(dio_fsck(t_img, 0, NULL, NULL) == 0, "%s, allocation %ld fails: fsck", c->what, n);
		if (rp.left > 0)
			break;   /* the call made fewer than n allocations */
	}
	return n - 1;
}

START_TEST(test_a_call_that_runs_out_of_memory_fails_whole)
{
	t_img = strdup(t_image_path("nomem"));
	for (unsigned i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		long n = sweep(&calls[i]);
		if (getenv("DIO_TEST_VERBOSE"))
			fprintf(stderr, "%s: %ld allocations, each failed in turn\n", calls[i].what, n);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nomem");
	TCase *tc = tcase_create("nomem");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 3000);
	tcase_add_test(tc, test_a_call_that_runs_out_of_memory_fails_whole);
	suite_add_tcase(s, tc);
	return t_run(s);
}
