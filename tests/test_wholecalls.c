/*
 * Whole calls or nothing under kill -9 (contract rules 3 and 8).
 *
 * A child process mounts a fresh volume and makes a random sequence of
 * calls on a few names, with no fsync of its own: creates, writes
 * (aligned and not, extending or not), truncates (shrinking to a size
 * inside a block, growing), fallocate in every mode (preallocation,
 * punch, zero range), renames (over another file or to a free name) and
 * unlinks.  It reports each call on a pipe as it returns; the parent
 * kills it at a random moment, mounts the volume again and compares it
 * with an exact model:
 *
 *   - every call that returned has taken effect;
 *   - the call in flight, if any, has taken effect whole or not at all,
 *     except a write, whose bytes may each be old or new (and the size
 *     old or new);
 *   - nothing else: no byte any call did not write there, no name no
 *     call made.
 *
 * One suite per backend: DIO_WC_ROUNDS rounds (default 200).  Then the
 * process-death log's own limits: calls too many or too large for it are
 * committed before they return, and a log that does not apply never
 * fails a mount.
 */
#include "helpers.h"
#include <signal.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define WC_NAMES 6
#define WC_MAX   (160u << 10)   /* largest offset a call touches */
#define WC_OPS   3000

enum { W_CREATE, W_WRITE, W_TRUNC, W_FALLOC, W_RENAME, W_UNLINK, W_SYNC };

struct wc_op {
	int type, a, b, mode;      /* a, b: names; mode: fallocate's */
	uint64_t off, len;         /* TRUNC: off is the new size */
	bool aligned;
};

struct wc_file {
	bool exists;
	uint64_t size;
	uint8_t data[WC_MAX + 4096];   /* zero past size, always */
};

struct wc_state {
	struct wc_file f[WC_NAMES];
};

static const char *const wc_name[WC_NAMES] = { "a", "b", "dir/c", "dir/d", "e.log", "f.sst" };
static const char *const wc_kind[] = { "create", "write", "truncate", "fallocate", "rename", "unlink", "fdatasync" };

/* ---- the workload ---------------------------------------------------------- */

static uint64_t pick(uint64_t n) { return t_rand() % n; }

/* An offset or size: often inside a block, often on one. */
static uint64_t wc_off(void)
{
	uint64_t o = pick(WC_MAX);
	switch (pick(4)) {
	case 0: return o & ~UINT64_C(4095);
	case 1: return o & ~UINT64_C(511);
	default: return o;
	}
}

/* Calls valid in the order given: names exist where a call needs one. */
static void wc_gen(struct wc_op *ops, int n, uint64_t seed)
{
	bool ex[WC_NAMES] = { false };
	t_seed(seed);
	for (int i = 0; i < n; i++) {
		struct wc_op *o = &ops[i];
		memset(o, 0, sizeof(*o));
		int a = (int)pick(WC_NAMES), w = (int)pick(100);
		o->a = a;
		if (!ex[a]) {
			o->type = W_CREATE;
			ex[a] = true;
			continue;
		}
		if (w < 34) {
			o->type = W_WRITE;
			o->aligned = pick(2);
			if (o->aligned) {
				o->off = pick(WC_MAX / 4096) * 4096;
				o->len = (1 + pick(8)) * 4096;
			} else {
				o->off = wc_off();
				o->len = 1 + pick(pick(2) ? 300 : 20000);
			}
			if (o->off + o->len > WC_MAX)
				o->len = WC_MAX - o->off;
			if (!o->len)
				o->len = 1, o->off = WC_MAX - 1;
		} else if (w < 56) {
			o->type = W_TRUNC;
			o->off = wc_off();
		} else if (w < 78) {
			static const int modes[] = { 0, DIO_FALLOC_KEEP_SIZE, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE,
						     DIO_FALLOC_ZERO_RANGE, DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE,
						     DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE };
			o->type = W_FALLOC;
			o->mode = modes[pick(6)];
			o->off = wc_off();
			o->len = 1 + pick(pick(2) ? 9000 : 60000);
			if (o->off + o->len > WC_MAX)
				o->len = WC_MAX - o->off;
			if (!o->len)
				o->len = 1, o->off = WC_MAX - 1;
		} else if (w < 88) {
			o->type = W_RENAME;
			do
				o->b = (int)pick(WC_NAMES);
			while (o->b == a);
			ex[o->b] = true;
			ex[a] = false;
		} else if (w < 97) {
			o->type = W_UNLINK;
			ex[a] = false;
		} else {
			o->type = W_SYNC;
		}
	}
}

/* Byte pos of call i's write: never 0, and two calls or two places
   almost never agree (cheap: the child makes every byte of a write). */
static uint8_t wc_byte(int i, uint64_t pos)
{
	uint32_t x = (uint32_t)pos * 0x9E3779B1u + (uint32_t)i * 0x85EBCA77u;
	x ^= x >> 15;
	x *= 0x2C1B3C6Du;
	uint8_t b = (uint8_t)(x >> 24);
	return b ? b : 1;
}

/* What call i does to the model. */
static void wc_apply(struct wc_state *s, const struct wc_op *o, int i)
{
	struct wc_file *f = &s->f[o->a];
	uint64_t end = o->off + o->len;
	switch (o->type) {
	case W_CREATE:
		f->exists = true;
		f->size = 0;
		memset(f->data, 0, sizeof(f->data));
		break;
	case W_WRITE:
		for (uint64_t p = o->off; p < end; p++)
			f->data[p] = wc_byte(i, p);
		if (end > f->size)
			f->size = end;
		break;
	case W_TRUNC:
		if (o->off < f->size)
			memset(f->data + o->off, 0, f->size - o->off);
		f->size = o->off;
		break;
	case W_FALLOC:
		if (o->mode & (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE))
			memset(f->data + o->off, 0, o->len);
		if (!(o->mode & DIO_FALLOC_KEEP_SIZE) && end > f->size)
			f->size = end;
		break;
	case W_RENAME:
		s->f[o->b] = *f;
		f->exists = false;
		f->size = 0;
		memset(f->data, 0, sizeof(f->data));
		break;
	case W_UNLINK:
		f->exists = false;
		f->size = 0;
		memset(f->data, 0, sizeof(f->data));
		break;
	}
}

/* ---- the child --------------------------------------------------------------- */

/* Every write's bytes, made before the child starts so that a kill
   lands in the calls, not in making their buffers: call i's at
   wbuf[i] (4096-aligned; a misaligned write starts one byte in). */
static uint8_t *warena, *wbuf[WC_OPS];

static void wc_make_buffers(const struct wc_op *o, int n)
{
	size_t total = 0;
	for (int i = 0; i < n; i++)
		if (o[i].type == W_WRITE)
			total += (o[i].len + 1 + 4095) & ~(size_t)4095;
	free(warena);
	warena = t_aligned(total ? total : 1);
	size_t at = 0;
	for (int i = 0; i < n; i++) {
		wbuf[i] = NULL;
		if (o[i].type != W_WRITE)
			continue;
		wbuf[i] = warena + at;
		uint8_t *p = o[i].aligned ? wbuf[i] : wbuf[i] + 1;
		for (uint64_t k = 0; k < o[i].len; k++)
			p[k] = wc_byte(i, o[i].off + k);
		at += (o[i].len + 1 + 4095) & ~(size_t)4095;
	}
}

static int wc_exec(struct dio_vol *v, const struct wc_op *o, int i)
{
	if (o->type == W_RENAME)
		return dio_rename(v, wc_name[o->a], wc_name[o->b]);
	if (o->type == W_UNLINK)
		return dio_unlink(v, wc_name[o->a]);
	struct dio_file *f = dio_open(v, wc_name[o->a], O_RDWR | (o->type == W_CREATE ? O_CREAT | O_EXCL : 0));
	if (!f)
		return -1;
	long r = 0;
	switch (o->type) {
	case W_WRITE: {
		const uint8_t *p = o->aligned ? wbuf[i] : wbuf[i] + 1;   /* misaligned: the buffer too */
		r = dio_pwrite(f, p, o->len, (off_t)o->off) == (ssize_t)o->len ? 0 : -1;
		break;
	}
	case W_TRUNC:
		r = dio_ftruncate(f, (off_t)o->off);
		break;
	case W_FALLOC:
		r = dio_fallocate(f, o->mode, (off_t)o->off, (off_t)o->len);
		break;
	case W_SYNC:
		r = dio_fdatasync(f);
		break;
	}
	int e = errno;
	if (dio_close(f) < 0 && !r)
		r = -1;
	errno = e;
	return (int)r;
}

/* Run ops in a child that reports each call as it returns; once it has
   reported call `after`, wait 0..max_us microseconds and kill it.  The
   last call reported, -1 if none. */
static int run_and_kill(const char *img, const struct wc_op *ops, int n, int after, long max_us)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		struct dio_vol *v = t_mount(img);
		if (!v)
			_exit(2);
		for (int i = 0; i < n; i++) {
			if (wc_exec(v, &ops[i], i) < 0) {
				fprintf(stderr, "call %d (%s of \"%s\") failed: %s\n", i, wc_kind[ops[i].type],
					wc_name[ops[i].a], strerror(errno));
				_exit(3);
			}
			if (write(pfd[1], &i, sizeof(i)) != sizeof(i))
				_exit(4);
		}
		pause();
		_exit(0);
	}
	close(pfd[1]);
	int last = -1, idx;
	while (last < after && read(pfd[0], &idx, sizeof(idx)) == sizeof(idx))
		last = idx;
	long us = (long)pick((uint64_t)max_us + 1);
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	while (read(pfd[0], &idx, sizeof(idx)) == sizeof(idx))
		last = idx;
	close(pfd[0]);
	int status;
	waitpid(pid, &status, 0);
	ck_assert_msg(WIFSIGNALED(status), "the child ended by itself (status %d)", WEXITSTATUS(status));
	return last;
}

/* ---- the check ------------------------------------------------------------------ */

struct wc_seen {
	bool exists;
	uint64_t size;
	uint8_t *data;
};

static void wc_read(struct dio_vol *v, struct wc_seen *got)
{
	uint8_t *buf = t_aligned(WC_MAX + 8192);
	for (int k = 0; k < WC_NAMES; k++) {
		struct dio_stat st;
		got[k].exists = dio_stat(v, wc_name[k], &st) == 0;
		got[k].size = got[k].exists ? st.size : 0;
		got[k].data = calloc(1, WC_MAX + 4096);
		if (!got[k].exists)
			continue;
		ck_assert_msg(st.size <= WC_MAX, "\"%s\" has size %llu, larger than any call made it",
			      wc_name[k], (unsigned long long)st.size);
		struct dio_file *f = dio_open(v, wc_name[k], O_RDONLY);
		ck_assert_ptr_nonnull(f);
		ssize_t r = dio_pread(f, buf, WC_MAX + 4096, 0);
		ck_assert_int_eq(r, (ssize_t)st.size);
		memcpy(got[k].data, buf, (size_t)r);
		dio_close(f);
	}
	free(buf);
}

/* Names the volume has that no call made. */
static int wc_count_cb(const char *name, const struct dio_stat *st, void *arg)
{
	(void)st;
	bool known = false;
	for (int k = 0; k < WC_NAMES; k++)
		known |= !strcmp(name, wc_name[k]);
	ck_assert_msg(known, "a name no call made: \"%s\"", name);
	++*(int *)arg;
	return 0;
}

/* The first difference between what the volume shows and state s, or
   NULL; in words. */
static const char *wc_diff(const struct wc_seen *got, const struct wc_state *s, char *why, size_t len)
{
	for (int k = 0; k < WC_NAMES; k++) {
		const struct wc_file *f = &s->f[k];
		if (got[k].exists != f->exists) {
			snprintf(why, len, "\"%s\" %s", wc_name[k], f->exists ? "is missing" : "exists");
			return why;
		}
		if (got[k].size != f->size) {
			snprintf(why, len, "\"%s\" has size %llu, not %llu", wc_name[k],
				 (unsigned long long)got[k].size, (unsigned long long)f->size);
			return why;
		}
		for (uint64_t p = 0; p < f->size; p++)
			if (got[k].data[p] != f->data[p]) {
				snprintf(why, len, "\"%s\" byte %llu is %#x, not %#x", wc_name[k],
					 (unsigned long long)p, got[k].data[p], f->data[p]);
				return why;
			}
	}
	return NULL;
}

/* A write in flight: its file's size is one of the two, and each byte
   old or new; every other file as in both states. */
static const char *wc_diff_torn(const struct wc_seen *got, const struct wc_state *A, const struct wc_state *B,
				int name, char *why, size_t len)
{
	for (int k = 0; k < WC_NAMES; k++) {
		if (k == name)
			continue;
		if (got[k].exists != A->f[k].exists || got[k].size != A->f[k].size ||
		    memcmp(got[k].data, A->f[k].data, A->f[k].size)) {
			snprintf(why, len, "\"%s\", which the write in flight does not touch, changed", wc_name[k]);
			return why;
		}
	}
	const struct wc_file *a = &A->f[name], *b = &B->f[name];
	if (!got[name].exists || (got[name].size != a->size && got[name].size != b->size)) {
		snprintf(why, len, "\"%s\" has size %llu, neither %llu nor %llu", wc_name[name],
			 (unsigned long long)got[name].size, (unsigned long long)a->size, (unsigned long long)b->size);
		return why;
	}
	for (uint64_t p = 0; p < got[name].size; p++) {
		uint8_t g = got[name].data[p];
		if (g != a->data[p] && g != b->data[p]) {
			snprintf(why, len, "\"%s\" byte %llu is %#x, neither old %#x nor new %#x", wc_name[name],
				 (unsigned long long)p, g, a->data[p], b->data[p]);
			return why;
		}
	}
	return NULL;
}

static struct wc_op ops[WC_OPS];
static struct wc_state A, B;

static void one_round(const char *img, uint64_t seed, long max_us)
{
	wc_gen(ops, WC_OPS, seed);
	wc_make_buffers(ops, WC_OPS);
	t_forget_plog(img);
	unlink(img);
	/* a small journal half the time: commits and checkpoints in flight too */
	uint64_t jsize = seed % 2 ? 64 << 10 : 0;
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 64 << 20, .journal_size = jsize }), 0);
	t_seed(seed * 7919 + 1);
	int last = run_and_kill(img, ops, WC_OPS, (int)pick(WC_OPS) - 1, max_us);
	memset(&A, 0, sizeof(A));
	for (int i = 0; i <= last; i++)
		wc_apply(&A, &ops[i], i);
	int fl = last + 1 < WC_OPS ? last + 1 : -1;   /* the call in flight */
	B = A;
	if (fl >= 0)
		wc_apply(&B, &ops[fl], fl);

	int fr;
	for (int tries = 0; (fr = dio_fsck(img, 0, NULL, NULL)) < 0 && errno == EBUSY && tries < 200; tries++)
		usleep(5000);
	ck_assert_msg(fr == 0, "seed %llu: fsck after the kill: %d", (unsigned long long)seed, fr);
	struct dio_vol *v = NULL;
	for (int tries = 0; !(v = t_mount(img)) && errno == EBUSY && tries < 200; tries++)
		usleep(5000);
	ck_assert_msg(v != NULL, "seed %llu: mount after the kill (%d calls returned): %s", (unsigned long long)seed,
		      last + 1, strerror(errno));
	struct wc_seen got[WC_NAMES];
	wc_read(v, got);
	int names = 0;
	ck_assert_int_eq(dio_list(v, NULL, wc_count_cb, &names), 0);
	char w1[200], w2[200];
	const char *d1, *d2 = NULL;
	const struct wc_op *o = fl >= 0 ? &ops[fl] : NULL;
	if (o && o->type == W_WRITE) {
		d1 = wc_diff_torn(got, &A, &B, o->a, w1, sizeof(w1));
	} else {
		d1 = wc_diff(got, &A, w1, sizeof(w1));
		if (d1 && o)
			d2 = wc_diff(got, &B, w2, sizeof(w2));
	}
	ck_assert_msg(!d1 || (o && o->type != W_WRITE && !d2),
		      "seed %llu: %d calls returned; in flight: %s; against the calls that returned: %s; "
		      "with the call in flight: %s", (unsigned long long)seed, last + 1,
		      o ? wc_kind[o->type] : "none", d1, o && o->type != W_WRITE ? d2 : "(a write: torn check)");
	if (getenv("DIO_TEST_VERBOSE"))
		fprintf(stderr, "seed %llu: %d calls returned, in flight: %s\n", (unsigned long long)seed, last + 1,
			o ? wc_kind[o->type] : "none");
	for (int k = 0; k < WC_NAMES; k++)
		free(got[k].data);
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_msg(dio_fsck(img, 0, NULL, NULL) == 0, "seed %llu: fsck after the remount", (unsigned long long)seed);
}

START_TEST(test_a_call_in_flight_at_kill_9_is_whole_or_absent)
{
	t_img = strdup(t_image_path("wholecalls"));
	int rounds = getenv("DIO_WC_ROUNDS") ? atoi(getenv("DIO_WC_ROUNDS")) : 200;
	uint64_t base = getenv("DIO_WC_SEED") ? strtoull(getenv("DIO_WC_SEED"), NULL, 0) : 1;
	for (int r = 0; r < rounds; r++) {
		uint64_t seed = base + (uint64_t)r;
		/* right after a call returned, or a little later */
		long max_us = seed % 2 ? 50 : 400;
		one_round(t_img, seed, max_us);
		if (getenv("DIO_TEST_VERBOSE"))
			fprintf(stderr, "round %d (seed %llu) passed\n", r, (unsigned long long)seed);
	}
}
END_TEST

/* ---- the process-death log's limits ------------------------------------------ */

/* Run fn in a child on t_img; once it says so (fn returned 0), kill it
   with the volume mounted. */
static void kill_child_after(int (*fn)(struct dio_vol *v))
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		struct dio_vol *v = t_mount(t_img);
		if (!v || fn(v))
			_exit(2);
		char ok = 'y';
		if (write(pfd[1], &ok, 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	char ok = 0;
	ssize_t n = read(pfd[0], &ok, 1);
	close(pfd[0]);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	ck_assert_msg(n == 1, "the child failed (exit %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* The same, and the volume mounted again. */
static struct dio_vol *killed_after(int (*fn)(struct dio_vol *v))
{
	kill_child_after(fn);
	struct dio_vol *v = NULL;
	for (int tries = 0; !(v = t_mount(t_img)) && errno == EBUSY && tries < 200; tries++)
		usleep(5000);
	ck_assert_msg(v != NULL, "mount after the kill: %s", strerror(errno));
	return v;
}

static void fresh(const char *tag, uint64_t size, uint64_t journal)
{
	t_img = strdup(t_image_path(tag));
	t_forget_plog(t_img);
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = size, .journal_size = journal }), 0);
}

/* 5,000 creates and unlinks of long names: four times what the log
   holds, and none of them asks for a commit of its own. */
static void long_name(char *buf, int i)
{
	memset(buf, 'n', 240);
	snprintf(buf + 240, 16, "%06d", i);
}

static int many_namespace_calls(struct dio_vol *v)
{
	char name[300];
	for (int i = 0; i < 5000; i++) {
		long_name(name, i);
		struct dio_file *f = dio_open(v, name, O_CREAT | O_RDWR);
		if (!f || dio_close(f) || (i % 7 && dio_unlink(v, name)))
			return -1;
	}
	struct dio_file *m = dio_open(v, "marker", O_CREAT | O_RDWR);
	return m ? dio_close(m) : -1;
}

START_TEST(test_namespace_calls_commit_before_the_log_overflows)
{
	fresh("wc-names", 64 << 20, 64 << 10);
	struct dio_vol *v = killed_after(many_namespace_calls);
	struct dio_stat st;
	ck_assert_msg(dio_stat(v, "marker", &st) == 0, "the last create was lost: %s", strerror(errno));
	char name[300];
	for (int i = 0; i < 5000; i++) {
		long_name(name, i);
		ck_assert_msg((dio_stat(v, name, &st) == 0) == !(i % 7), "name %d: %s", i, i % 7 ? "unlinked, back" : "lost");
	}
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
}
END_TEST

/* A file of 40,000 one-block pieces with holes between them, then one
   fallocate over it all: 40,000 allocation records in one call, more
   than the log holds (1 MiB).  Killed after the call returned, the call
   is there whole (it was on the device when it returned); killed at
   moments during it, it is there whole or not at all. */
#define BIG_PIECES 40000

static int huge_setup(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "holey", O_CREAT | O_RDWR);
	uint8_t *b = t_aligned(4096);
	memset(b, 0x5a, 4096);
	for (int i = 0; f && i < BIG_PIECES; i++)
		if (dio_pwrite(f, b, 4096, (off_t)i * 8192) != 4096)
			return -1;
	free(b);
	return f && !dio_syncfs(v) ? dio_close(f) : -1;
}

static int huge_call(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "holey", O_RDWR);
	if (!f || dio_fallocate(f, 0, 0, (off_t)BIG_PIECES * 8192))
		return -1;
	return dio_close(f);
}

static long usec_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

/* The child: setup, 'r', the call, 'y'.  The parent kills it delay_us
   after 'r' (or after 'y' if negative, and *took: how long the call
   took).  Whether the call returned. */
static bool kill_around(int (*setup)(struct dio_vol *), int (*call)(struct dio_vol *), long delay_us, long *took)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		struct dio_vol *v = t_mount(t_img);
		if (!v || setup(v) || write(pfd[1], "r", 1) != 1 || call(v) || write(pfd[1], "y", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	char c = 0;
	ck_assert_msg(read(pfd[0], &c, 1) == 1 && c == 'r', "the child's setup failed");
	if (delay_us < 0) {
		long t0 = usec_now();
		ck_assert_msg(read(pfd[0], &c, 1) == 1 && c == 'y', "the child's call failed");
		*took = usec_now() - t0;
	} else {
		struct timespec ts = { delay_us / 1000000, (delay_us % 1000000) * 1000 };
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	bool returned = read(pfd[0], &c, 1) == 1 || delay_us < 0;
	close(pfd[0]);
	waitpid(pid, NULL, 0);
	return returned;
}

START_TEST(test_a_call_larger_than_the_log_is_whole_or_absent_and_on_the_device_when_it_returns)
{
	/* first killed after it returned, which times it; then at 40
	   moments spread over that time and a little past */
	long delays[41] = { -1 }, took = 0;
	uint8_t *b = t_aligned(8192);
	for (unsigned k = 0; k < sizeof(delays) / sizeof(delays[0]); k++) {
		fresh("wc-huge", 512 << 20, 64 << 10);   /* a log of 1 MiB */
		if (k)
			delays[k] = took * (long)(k - 1) / 32;
		bool returned = kill_around(huge_setup, huge_call, delays[k], &took);
		struct dio_vol *v = NULL;
		for (int tries = 0; !(v = t_mount(t_img)) && errno == EBUSY && tries < 200; tries++)
			usleep(5000);
		ck_assert_msg(v != NULL, "kill %ld us in: mount: %s", delays[k], strerror(errno));
		struct dio_file *f = dio_open(v, "holey", O_RDONLY);
		ck_assert_ptr_nonnull(f);
		struct dio_stat st;
		ck_assert_int_eq(dio_fstat(f, &st), 0);
		uint64_t whole = (uint64_t)BIG_PIECES * 8192, none = whole - 4096;
		bool is_whole = st.size == whole && st.allocated == whole;
		bool is_none = st.size == none && st.allocated == (uint64_t)BIG_PIECES * 4096;
		if (getenv("DIO_TEST_VERBOSE"))
			fprintf(stderr, "kill %ld us in: the call %s, %s\n", delays[k], returned ? "returned" : "in flight",
				is_whole ? "whole" : is_none ? "absent" : "split");
		ck_assert_msg(is_whole || (is_none && !returned),
			      "kill %ld us in (the call %s): size %llu, %llu bytes allocated: neither whole nor absent",
			      delays[k], returned ? "returned" : "in flight", (unsigned long long)st.size,
			      (unsigned long long)st.allocated);
		ck_assert_int_eq(dio_pread(f, b, 8192, 8192 * 777), 8192);
		ck_assert_uint_eq(b[0], 0x5a);
		ck_assert_uint_eq(b[4096], 0);
		dio_close(f);
		ck_assert_int_eq(dio_umount(v), 0);
		ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
		t_img_cleanup();
	}
	free(b);
}
END_TEST

/* The volume's log in /dev/shm (t_forget_plog's naming), mapped. */
static uint8_t *map_log(const char *img, size_t *len)
{
	struct stat st;
	ck_assert_int_eq(stat(img, &st), 0);
	char cmd[600], path[400] = "";
	snprintf(cmd, sizeof(cmd), "ls /dev/shm | grep -- '-%llx-%llx$'", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char name[300];
	if (fgets(name, sizeof(name), p)) {
		name[strcspn(name, "\n")] = 0;
		snprintf(path, sizeof(path), "/dev/shm/%s", name);
	}
	pclose(p);
	ck_assert_msg(path[0], "no process-death log for %s", img);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	uint8_t *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ck_assert(m != MAP_FAILED);
	return m;
}

/* The last record of the given type in the log from its start; with
   all, the first from the ring's first byte (a new log's committed
   records are still there, before its start). */
static uint8_t *find_record(uint8_t *m, int type, bool all)
{
	uint64_t start, tail, cap;
	memcpy(&start, m + 64, 8);
	if (all)
		start = 0;
	memcpy(&tail, m + 72, 8);
	memcpy(&cap, m + 80, 8);
	uint8_t *found = NULL;
	for (uint64_t pos = start; pos < tail;) {
		uint64_t off = pos % cap, w;
		memcpy(&w, m + 4096 + off, 8);
		if (cap - off < 12 || w == UINT64_MAX) {
			pos += cap - off;
			continue;
		}
		uint8_t *r = m + 4096 + off + 8;
		if (r[0] == type && !(all && found))
			found = r;
		pos += 8 + (uint64_t)(r[2] | r[3] << 8);
	}
	return found;
}

static int two_files(struct dio_vol *v)
{
	uint8_t *b = t_aligned(4096);
	memset(b, 0xa1, 4096);
	struct dio_file *a = dio_open(v, "a", O_CREAT | O_RDWR);
	if (!a || dio_pwrite(a, b, 4096, 0) != 4096 || dio_fsync(a) || dio_close(a))
		return -1;
	memset(b, 0xb2, 4096);
	struct dio_file *f = dio_open(v, "b", O_CREAT | O_RDWR);
	if (!f || dio_pwrite(f, b, 4096, 0) != 4096 || dio_close(f))
		return -1;
	f = dio_open(v, "c", O_CREAT | O_RDWR);
	return f ? dio_close(f) : -1;
}

/* A log whose calls do not apply (damaged, or mapping a block another
   file owns) ends its replay there, or is ignored: the volume mounts as
   the journal and the calls before left it, never fails to mount. */
START_TEST(test_a_log_that_does_not_apply_never_fails_the_mount)
{
	uint8_t *b = t_aligned(4096);
	for (int variant = 0; variant < 2; variant++) {
		fresh("wc-badlog", 64 << 20, 0);
		/* a child that dies, and a log to spoil before the next mount */
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			struct dio_vol *w = t_mount(t_img);
			char ok = 'y';
			if (!w || two_files(w) || write(pfd[1], &ok, 1) != 1)
				_exit(2);
			pause();
			_exit(0);
		}
		close(pfd[1]);
		char ok = 0;
		ck_assert_int_eq(read(pfd[0], &ok, 1), 1);
		close(pfd[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		size_t len;
		uint8_t *m = map_log(t_img, &len);
		uint8_t *r = find_record(m, 5, false);   /* b's R_MAP: ino, lblk, pblk, len, flags */
		ck_assert_ptr_nonnull(r);
		if (variant == 0) {
			r[2] = 3;   /* a record length no record has: damaged */
		} else {
			/* a's block (its committed R_MAP, the first in the
			   log's memory): owned twice */
			uint64_t start;
			memcpy(&start, m + 64, 8);
			memset(m + 64, 0, 8);
			uint8_t *ra = find_record(m, 5, true);
			memcpy(m + 64, &start, 8);
			ck_assert_ptr_nonnull(ra);
			ck_assert_ptr_ne(ra, r);
			memcpy(r + 4 + 16, ra + 4 + 16, 8);
		}
		munmap(m, len);
		struct dio_vol *v = NULL;
		for (int tries = 0; !(v = t_mount(t_img)) && errno == EBUSY && tries < 200; tries++)
			usleep(5000);
		ck_assert_msg(v != NULL, "variant %d: the spoilt log failed the mount: %s", variant, strerror(errno));
		struct dio_file *a = dio_open(v, "a", O_RDONLY);
		ck_assert_ptr_nonnull(a);
		ck_assert_int_eq(dio_pread(a, b, 4096, 0), 4096);
		ck_assert_uint_eq(b[0], 0xa1);
		ck_assert_uint_eq(b[4095], 0xa1);
		dio_close(a);
		struct dio_stat st;
		/* variant 0: the replay stops at b's write, so "c" after it is
		   not there either; variant 1: the whole log is set aside */
		ck_assert_int_ne(dio_stat(v, "c", &st), 0);
		if (dio_stat(v, "b", &st) == 0)
			ck_assert_uint_eq(st.size, 0);   /* created (before the spoilt call), never written */
		ck_assert_int_eq(dio_umount(v), 0);
		ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
		t_img_cleanup();
	}
	free(b);
}
END_TEST

/* The ring of the volume at img (t_forget_plog's naming), or "" if none. */
static void ring_of(const char *img, char *out, size_t len)
{
	struct stat st;
	out[0] = 0;
	if (stat(img, &st) < 0)
		return;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls /dev/shm | grep -- '^libdio-.*-%llx-%llx$'", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	FILE *p = popen(cmd, "r");
	if (p && fgets(out, (int)len, p))
		out[strcspn(out, "\n")] = 0;
	if (p)
		pclose(p);
}

static bool ring_exists(const char *name)
{
	char path[400];
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	return access(path, F_OK) == 0;
}

static int one_create(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "left", O_CREAT | O_RDWR);
	return f ? dio_close(f) : -1;
}

/* A ring outlives its process until its volume's next mount; one whose
   volume will never be mounted again (the image deleted, or formatted
   again as another volume) goes at the next read-write mount of any
   volume of the same user, and one whose volume is still there stays. */
START_TEST(test_rings_of_volumes_that_are_gone_are_swept)
{
	char img[3][300], ring[3][300];
	for (int k = 0; k < 3; k++) {
		snprintf(img[k], sizeof(img[k]), "%s", t_image_path(k == 0 ? "sweep-gone" : k == 1 ? "sweep-other" : "sweep-kept"));
		t_img = img[k];
		t_forget_plog(img[k]);
		unlink(img[k]);
		ck_assert_int_eq(dio_mkfs(img[k], &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
		kill_child_after(one_create);   /* a ring left by a killed process */
		ring_of(img[k], ring[k], sizeof(ring[k]));
		ck_assert_msg(ring[k][0], "volume %d: no ring left", k);
	}
	t_img = NULL;
	unlink(img[0]);
	ck_assert_int_eq(dio_mkfs(img[1], &(struct dio_mkfs_opts){ .size = 32 << 20, .flags = DIO_MKFS_FORCE }), 0);
	/* a fresh process (the sweep runs at most once a minute in one) mounts another volume */
	char other[300];
	snprintf(other, sizeof(other), "%s", t_image_path("sweep-mounter"));
	unlink(other);
	ck_assert_int_eq(dio_mkfs(other, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct dio_vol *v = t_mount(other);
		_exit(v && !dio_umount(v) ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_msg(!ring_exists(ring[0]), "the ring of a deleted image is still there");
	ck_assert_msg(!ring_exists(ring[1]), "the ring of a volume formatted again is still there");
	ck_assert_msg(ring_exists(ring[2]), "the ring of a volume still there was removed");
	/* and it still does its job */
	struct dio_vol *v = t_mount(img[2]);
	ck_assert_ptr_nonnull(v);
	struct dio_stat st;
	ck_assert_int_eq(dio_stat(v, "left", &st), 0);
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert(!ring_exists(ring[2]));   /* a clean unmount removes its own */
	t_forget_plog(img[1]);
	unlink(img[1]);
	unlink(img[2]);
	unlink(other);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wholecalls");
	TCase *tc = tcase_create("kill9");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 3000);
	tcase_add_test(tc, test_a_call_in_flight_at_kill_9_is_whole_or_absent);
	tcase_add_test(tc, test_namespace_calls_commit_before_the_log_overflows);
	tcase_add_test(tc, test_a_call_larger_than_the_log_is_whole_or_absent_and_on_the_device_when_it_returns);
	tcase_add_test(tc, test_a_log_that_does_not_apply_never_fails_the_mount);
	tcase_add_test(tc, test_rings_of_volumes_that_are_gone_are_swept);
	suite_add_tcase(s, tc);
	return t_run(s);
}
