/*
 * Durability: remount persistence; a simulated power loss at random
 * points (the fault backend drops every write not followed by a flush,
 * keeping a random prefix of them) mounts and keeps every fsynced byte
 * and never shows a byte that was not written there; a writer process
 * killed at random moments loses nothing it fsynced.
 */
#include "crashmodel.h"
#include "../lib/platform.h"
#include <signal.h>
#include <time.h>

#define NOPS 160


static void fresh_image(const char *tag)
{
	if (!t_img)
		t_img = strdup(t_image_path(tag));
	t_forget_plog(t_img);
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 24 << 20, .journal_size = 64 << 10 }), 0);
}

START_TEST(test_remount_keeps_everything_after_clean_umount)
{
	fresh_image("remount");
	static struct cm_op ops[NOPS];
	static struct cm_model m;
	memset(&m, 0, sizeof(m));
	cm_gen(ops, NOPS, 99);
	struct dio_vol *v = t_mount(t_img);
	struct dio_file *h[CM_FILES], *hs[CM_FILES];
	cm_open(v, h, hs);
	for (int i = 0; i < NOPS; i++) {
		cm_apply(&m, &ops[i]);
		ck_assert_int_eq(cm_exec(v, h, hs, &ops[i]), 0);
		if (i % 40 == 39) {   /* remount in the middle */
			cm_close(h, hs);
			ck_assert_int_eq(dio_umount(v), 0);
			v = t_mount(t_img);
			ck_assert_ptr_nonnull(v);
			cm_open(v, h, hs);
		}
	}
	cm_close(h, hs);
	ck_assert_int_eq(dio_umount(v), 0);
	/* a clean umount makes everything durable: sync the whole model */
	struct cm_op all = { .type = OP_SYNCFS };
	cm_synced(&m, &all);
	v = t_mount(t_img);
	cm_check(v, &m);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* One power-loss run: die at device op `die_at`, keep `keep_frac`% of the
   unflushed writes. */
static void power_loss_once(uint64_t seed, long die_at, unsigned keep_pct)
{
	static struct cm_op ops[NOPS];
	static struct cm_model m;
	memset(&m, 0, sizeof(m));
	cm_gen(ops, NOPS, seed);
	fresh_image("power");
	struct fault_cfg cfg = { .record = 1, .die_at = die_at };
	fault_setup(&cfg);
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "fault" });
	if (!v)
		return;   /* died during mount: nothing to check beyond mkfs */
	struct dio_file *h[CM_FILES], *hs[CM_FILES];
	cm_open(v, h, hs);
	for (int i = 0; i < NOPS; i++) {
		cm_apply(&m, &ops[i]);
		int rc = cm_exec(v, h, hs, &ops[i]);
		if (getenv("DIO_TEST_TRACE") && ops[i].fid == 0)
			fprintf(stderr, "op %d type %d mode %d off %llu len %llu rc %d ops %ld\n", i, ops[i].type, ops[i].mode,
				(unsigned long long)ops[i].off, (unsigned long long)ops[i].len, rc, fault_ops());
		if (rc < 0)
			break;
		cm_synced(&m, &ops[i]);
	}
	cm_close(h, hs);
	dio_umount(v);    /* may fail: the device is gone */
	long unflushed = fault_unflushed();
	fault_crash(t_img, unflushed * keep_pct / 100);
	if (getenv("DIO_TEST_VERBOSE"))
		fprintf(stderr, "power loss: seed %llu die_at %ld keep %u%% of %ld unflushed\n",
			(unsigned long long)seed, die_at, keep_pct, unflushed);
	ck_assert_msg(dio_fsck(t_img, 0, NULL, NULL) == 0, "fsck after power loss (seed %llu, die_at %ld)",
		      (unsigned long long)seed, die_at);
	v = t_mount(t_img);
	ck_assert_msg(v != NULL, "mount after power loss (seed %llu, die_at %ld): %s",
		      (unsigned long long)seed, die_at, strerror(errno));
	cm_check(v, &m);
	ck_assert_int_eq(dio_umount(v), 0);
}

START_TEST(test_power_loss_keeps_fsynced_data_and_shows_no_stale_bytes)
{
	/* learn how many device ops the whole workload takes */
	fresh_image("power");
	struct fault_cfg probe = { 0 };
	fault_setup(&probe);
	static struct cm_op ops[NOPS];
	cm_gen(ops, NOPS, 7);
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "fault" });
	struct dio_file *h[CM_FILES], *hs[CM_FILES];
	cm_open(v, h, hs);
	for (int i = 0; i < NOPS; i++)
		cm_exec(v, h, hs, &ops[i]);
	cm_close(h, hs);
	dio_umount(v);
	long total = fault_ops();
	ck_assert_int_gt(total, NOPS);
	int runs = getenv("DIO_CRASH_RUNS") ? atoi(getenv("DIO_CRASH_RUNS")) : 60;
	t_seed(12345);
	for (int r = 0; r < runs; r++) {
		uint64_t rnd = t_rand();
		long die_at = 1 + (long)(rnd % (uint64_t)total);
		unsigned keep = (unsigned)((rnd >> 32) % 4) * 33;   /* 0, 33, 66, 99 % */
		power_loss_once(7 + (uint64_t)(r % 5), die_at, keep);
		t_seed(12345 + (uint64_t)r * 7919);
	}
}
END_TEST

/*
 * Run the 400-op workload `ops` in a child on a fresh image, reporting
 * each op as it returns; kill it after 1..max_ms ms.  stay: the child
 * waits to be killed with the volume mounted (it must die by the signal);
 * else it may also finish first.  The last op it reported, -1 if none.
 */
static int run_killed(const struct cm_op *ops, int max_ms, bool stay)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		struct dio_vol *v = t_mount(t_img);
		if (!v)
			_exit(2);
		struct dio_file *h[CM_FILES], *hs[CM_FILES];
		cm_open(v, h, hs);
		for (int i = 0; i < 400; i++) {
			if (cm_exec(v, h, hs, &ops[i]) < 0)
				_exit(3);
			if (write(pfd[1], &i, sizeof(i)) != sizeof(i))   /* op i returned */
				_exit(4);
		}
		if (stay)
			pause();
		_exit(0);
	}
	close(pfd[1]);
	struct timespec ts = { 0, (long)((t_rand() % (uint64_t)max_ms) + 1) * 1000000L };
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	int last = -1, idx;
	while (read(pfd[0], &idx, sizeof(idx)) == sizeof(idx))
		last = idx;
	close(pfd[0]);
	int status;
	waitpid(pid, &status, 0);
	if (stay)
		ck_assert_msg(WIFSIGNALED(status), "child ended by itself: %d", WEXITSTATUS(status));
	else
		ck_assert_msg(!WIFEXITED(status) || WEXITSTATUS(status) == 0, "child failed: %d", WEXITSTATUS(status));
	return last;
}

START_TEST(test_killed_writer_loses_nothing_it_fsynced)
{
	static struct cm_op ops[400];
	static struct cm_model m;
	int rounds = 12;
	for (int round = 0; round < rounds; round++) {
		uint64_t seed = 1000 + (uint64_t)round;
		cm_gen(ops, 400, seed);
		fresh_image("kill");
		int last = run_killed(ops, 40, false);
		/* model: every op up to `last` completed (syncs took effect);
		   every later op may have partly happened */
		memset(&m, 0, sizeof(m));
		for (int i = 0; i < 400; i++) {
			cm_apply(&m, &ops[i]);
			if (i <= last)
				cm_synced(&m, &ops[i]);
		}
		int fr;
		for (int tries = 0; (fr = dio_fsck(t_img, 0, NULL, NULL)) < 0 && errno == EBUSY && tries < 100; tries++)
			usleep(10000);
		ck_assert_int_eq(fr, 0);
		struct dio_vol *v = t_mount(t_img);
		ck_assert_msg(v != NULL, "mount after kill: %s", strerror(errno));
		cm_check(v, &m);
		ck_assert_int_eq(dio_umount(v), 0);
	}
}
END_TEST

/*
 * Rule 8: the death of the process is not a power loss.  A child runs
 * the workload without waiting for any sync and reports each call as it
 * returns; it is killed at a random moment.  Every call it reported must
 * show after the next mount, as if a syncfs had followed it: the model
 * takes a sync point right after the last reported op.  (The workload has
 * syncs of its own too; what matters here is what came after them.)
 */
START_TEST(test_a_killed_process_keeps_every_call_that_returned)
{
	static struct cm_op ops[400];
	static struct cm_model m;
	int rounds = getenv("DIO_KILL_ROUNDS") ? atoi(getenv("DIO_KILL_ROUNDS")) : 16;
	for (int round = 0; round < rounds; round++) {
		uint64_t seed = 5000 + (uint64_t)round;
		cm_gen(ops, 400, seed);
		fresh_image("rule8");
		int last = run_killed(ops, 60, true);
		memset(&m, 0, sizeof(m));
		struct cm_op sync_all = { .type = OP_SYNCFS };
		for (int i = 0; i < 400; i++) {
			cm_apply(&m, &ops[i]);
			if (i <= last)
				cm_synced(&m, &ops[i]);
			if (i == last) {
				cm_apply(&m, &sync_all);   /* everything that returned */
				cm_synced(&m, &sync_all);
			}
		}
		struct dio_vol *v = NULL;
		for (int tries = 0; !(v = t_mount(t_img)) && errno == EBUSY && tries < 100; tries++)
			usleep(10000);
		ck_assert_msg(v != NULL, "mount after kill: %s", strerror(errno));
		cm_check(v, &m);
		ck_assert_int_eq(dio_umount(v), 0);
		ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
	}
}
END_TEST

/*
 * Rule 8, one metadata call at a time.  The child makes "f" (12,388
 * bytes) and "h" durable, makes one call, checks that the call committed
 * nothing (else the test would prove nothing), reports, and waits to be
 * killed with the volume mounted.  The next mount must show the call.
 */
#define R8_SIZE 12388u
#define R8_BIG  (1u << 20)

static uint8_t r8_byte(uint64_t off, unsigned seed) { return (uint8_t)(off * 7 + seed * 31 + 1); }

static void r8_pattern(uint8_t *p, size_t n, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = r8_byte(off + i, seed);
}

/* A whole file, or NULL if it is missing; its size in *size. */
static uint8_t *r8_read(struct dio_vol *v, const char *name, uint64_t *size)
{
	struct dio_file *f = dio_open(v, name, O_RDONLY);
	if (!f)
		return NULL;
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	uint8_t *b = calloc(1, st.size + 1);
	ck_assert_int_eq(dio_pread(f, b, st.size, 0), (ssize_t)st.size);
	dio_close(f);
	*size = st.size;
	return b;
}

/* The file holds `size` bytes: the setup's pattern (seed 1) where
   [z0, z1) is not, zeros there, and `seed`'s pattern over [w0, w1). */
static void r8_expect(struct dio_vol *v, const char *name, uint64_t size, uint64_t z0, uint64_t z1,
		      uint64_t w0, uint64_t w1, unsigned seed)
{
	uint64_t got;
	uint8_t *b = r8_read(v, name, &got);
	ck_assert_msg(b != NULL, "\"%s\" is missing after the kill", name);
	ck_assert_uint_eq(got, size);
	for (uint64_t i = 0; i < size; i++) {
		uint8_t want = i >= w0 && i < w1 ? r8_byte(i, seed) : i >= z0 && i < z1 ? 0 :
			       i < R8_SIZE ? r8_byte(i, 1) : 0;
		T_CHECK(b[i] == want, "\"%s\" byte %llu: %u, wanted %u", name, (unsigned long long)i, b[i], want);
	}
	free(b);
}

static void r8_missing(struct dio_vol *v, const char *name)
{
	struct dio_stat st;
	ck_assert_int_eq(dio_stat(v, name, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
}

static uint8_t *r8_buf(size_t n, uint64_t off, unsigned seed)
{
	uint8_t *b = aligned_alloc(4096, (n + 4095) & ~(size_t)4095);
	r8_pattern(b, n, off, seed);
	return b;
}

enum { R8_CREATE, R8_APPEND, R8_WRITE_PAST_EOF, R8_FALLOC_KEEP, R8_FALLOC_EXTEND, R8_PUNCH, R8_ZERO_RANGE,
       R8_SHRINK, R8_GROW, R8_RENAME, R8_RENAME_OVER, R8_UNLINK, R8_UNLINK_OPEN, R8_QUEUED_APPEND, R8_NCALLS };
static const char *const r8_names[] = { "create", "misaligned append", "write past the end", "fallocate keep-size",
	"fallocate extend", "punch hole", "zero range", "truncate down", "truncate up", "rename",
	"rename over a file", "unlink", "unlink of an open file", "queued append" };

/* In the child: the call. 0 on success. */
static int r8_call(struct dio_vol *v, struct dio_file *f, int call)
{
	uint8_t *b = r8_buf(8192, 0, 2), *a = r8_buf(5000, R8_SIZE, 2);   /* a: as the file's bytes */
	int r = 0;
	switch (call) {
	case R8_CREATE: r = dio_open(v, "new", O_CREAT | O_RDWR) ? 0 : -1; break;
	case R8_APPEND: r = dio_pwrite(f, a, 5000, R8_SIZE) == 5000 ? 0 : -1; break;
	case R8_WRITE_PAST_EOF: r = dio_pwrite(f, b, 8192, 65536) == 8192 ? 0 : -1; break;
	case R8_FALLOC_KEEP: r = dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, R8_SIZE, R8_BIG); break;
	case R8_FALLOC_EXTEND: r = dio_fallocate(f, 0, R8_SIZE, R8_BIG); break;
	case R8_PUNCH: r = dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 4096, 4096); break;
	case R8_ZERO_RANGE: r = dio_fallocate(f, DIO_FALLOC_ZERO_RANGE, 4096, 8192); break;
	case R8_SHRINK: r = dio_ftruncate(f, 100); break;
	case R8_GROW: r = dio_ftruncate(f, R8_BIG); break;
	case R8_RENAME: r = dio_rename(v, "f", "g"); break;
	case R8_RENAME_OVER: r = dio_rename(v, "f", "h"); break;
	case R8_UNLINK: dio_close(f); r = dio_unlink(v, "f"); break;
	case R8_UNLINK_OPEN: r = dio_unlink(v, "f"); break;   /* f stays open */
	case R8_QUEUED_APPEND: {
		struct dio_queue *q = dio_queue_create(v, 4);
		struct dio_req rq = { .op = DIO_OP_WRITE, .file = f, .buf = a, .len = 5000, .offset = R8_SIZE };
		struct dio_cqe c;
		r = q && dio_submit(q, &rq, 1) == 1 && dio_reap(q, &c, 1, 1, -1) == 1 && c.res == 5000 ? 0 : -1;
		break;   /* the queue stays: the process dies with it */
	}
	}
	free(b);
	free(a);
	return r;
}

/* In the parent, after the kill: the call shows. */
static void r8_check(struct dio_vol *v, int call)
{
	struct dio_stat st;
	switch (call) {
	case R8_CREATE:
		ck_assert_int_eq(dio_stat(v, "new", &st), 0);
		ck_assert_uint_eq(st.size, 0);
		break;
	case R8_APPEND:
	case R8_QUEUED_APPEND:
		r8_expect(v, "f", R8_SIZE + 5000, 0, 0, R8_SIZE, R8_SIZE + 5000, 2);
		break;
	case R8_WRITE_PAST_EOF: {
		/* the buffer's pattern starts at its own offset 0 */
		uint64_t got;
		uint8_t *b = r8_read(v, "f", &got);
		ck_assert_ptr_nonnull(b);
		ck_assert_uint_eq(got, 65536 + 8192);
		for (uint64_t i = R8_SIZE; i < 65536; i++)
			T_CHECK(b[i] == 0, "gap byte %llu is %u", (unsigned long long)i, b[i]);
		for (uint64_t i = 0; i < 8192; i++)
			T_CHECK(b[65536 + i] == r8_byte(i, 2), "new byte %llu", (unsigned long long)i);
		free(b);
		break;
	}
	case R8_FALLOC_KEEP:
		ck_assert_int_eq(dio_stat(v, "f", &st), 0);
		ck_assert_uint_eq(st.size, R8_SIZE);
		ck_assert_uint_ge(st.allocated, (uint64_t)R8_SIZE + R8_BIG);
		break;
	case R8_FALLOC_EXTEND:
		r8_expect(v, "f", R8_SIZE + R8_BIG, 0, 0, 0, 0, 1);
		break;
	case R8_PUNCH:
		r8_expect(v, "f", R8_SIZE, 4096, 8192, 0, 0, 1);
		break;
	case R8_ZERO_RANGE:
		r8_expect(v, "f", R8_SIZE, 4096, 12288, 0, 0, 1);
		break;
	case R8_SHRINK:
		r8_expect(v, "f", 100, 0, 0, 0, 0, 1);
		break;
	case R8_GROW:
		r8_expect(v, "f", R8_BIG, 0, 0, 0, 0, 1);
		break;
	case R8_RENAME:
		r8_missing(v, "f");
		r8_expect(v, "g", R8_SIZE, 0, 0, 0, 0, 1);
		break;
	case R8_RENAME_OVER:
		r8_missing(v, "f");
		r8_expect(v, "h", R8_SIZE, 0, 0, 0, 0, 1);
		break;
	case R8_UNLINK:
	case R8_UNLINK_OPEN:
		r8_missing(v, "f");
		r8_expect(v, "h", 10, 0, 10, 0, 0, 1);
		break;
	}
}

/* In the child: "f" and "h" durable, then the call; exits on failure. */
static void r8_child(int call, int report)
{
	struct dio_vol *v = t_mount(t_img);
	if (!v)
		_exit(2);
	struct dio_file *f = dio_open(v, "f", O_CREAT | O_RDWR), *h = dio_open(v, "h", O_CREAT | O_RDWR);
	uint8_t *b = r8_buf(R8_SIZE, 0, 1), zero[10] = { 0 };
	if (!f || !h || dio_pwrite(f, b, R8_SIZE, 0) != R8_SIZE || dio_pwrite(h, zero, 10, 0) != 10 || dio_syncfs(v))
		_exit(3);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	if (r8_call(v, f, call))
		_exit(4);
	dio_counters(v, &c1);
	char ok = c1.journal_commits == c0.journal_commits ? 'y' : 'c';   /* 'c': the call committed */
	if (write(report, &ok, 1) != 1)
		_exit(5);
	pause();
	_exit(0);
}

START_TEST(test_each_metadata_call_survives_kill_9)
{
	for (int call = 0; call < R8_NCALLS; call++) {
		fresh_image("rule8-call");
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			r8_child(call, pfd[1]);
		}
		close(pfd[1]);
		char ok = 0;
		ssize_t n = read(pfd[0], &ok, 1);
		close(pfd[0]);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		ck_assert_msg(n == 1, "%s: the child failed before the call returned (exit %d)", r8_names[call],
			      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		ck_assert_msg(ok == 'y', "%s: the call committed the journal: the test proves nothing", r8_names[call]);
		struct dio_vol *v = NULL;
		for (int tries = 0; !(v = t_mount(t_img)) && errno == EBUSY && tries < 100; tries++)
			usleep(10000);
		ck_assert_msg(v != NULL, "%s: mount after kill: %s", r8_names[call], strerror(errno));
		r8_check(v, call);
		ck_assert_int_eq(dio_umount(v), 0);
		ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
	}
}
END_TEST

/* A fresh volume on the fault backend, counting device operations, whose
   journal holds every commit of the tests below (no checkpoint). */
static struct dio_vol *counted_volume(const char *tag)
{
	t_img = strdup(t_image_path(tag));
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 24 << 20, .journal_size = 1 << 20 }), 0);
	struct fault_cfg none = { 0 };
	fault_setup(&none);
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	return v;
}

/* Device flushes and FUA writes the fault backend has seen. */
static long cache_ops(long *fua)
{
	*fua = fault_count(3);
	return fault_count(2);
}

START_TEST(test_small_appends_commit_with_one_flush_and_prealloc_stays_ordered)
{
	struct dio_vol *v = counted_volume("oneflush");
	struct dio_file *f = dio_open(v, "log", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(4096);
	t_fill(b, 4096, 1, 0, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 4096, 0), 4096);   /* the first zeroes a chunk */
	ck_assert_int_eq(dio_fdatasync(f), 0);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	long fua0, fua1, fl0 = cache_ops(&fua0);
	for (int i = 1; i <= 32; i++) {
		t_fill(b, 4096, 1, 0, (uint64_t)i * 4096);
		ck_assert_int_eq(dio_pwrite(f, b, 4096, (off_t)i * 4096), 4096);
		ck_assert_int_eq(dio_fdatasync(f), 0);
	}
	dio_counters(v, &c1);
	long fl1 = cache_ops(&fua1);
	/* appends into zeroed blocks: record, then one flush for data and record */
	ck_assert_uint_eq(c1.journal_commits - c0.journal_commits, 32);
	ck_assert_int_eq(fl1 - fl0, 32);
	ck_assert_int_eq(fua1 - fua0, 0);
	ck_assert_uint_eq(c1.flushes - c0.flushes, 32);

	/* writes into preallocated blocks (which may hold anything) stay
	   ordered: a flush for the data, then the record with FUA */
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_KEEP_SIZE, 33 * 4096, 8 * 4096), 0);
	ck_assert_int_eq(dio_fdatasync(f), 0);
	dio_counters(v, &c0);
	fl0 = cache_ops(&fua0);
	for (int i = 33; i < 41; i++) {
		t_fill(b, 4096, 1, 0, (uint64_t)i * 4096);
		ck_assert_int_eq(dio_pwrite(f, b, 4096, (off_t)i * 4096), 4096);
		ck_assert_int_eq(dio_fdatasync(f), 0);
	}
	dio_counters(v, &c1);
	fl1 = cache_ops(&fua1);
	ck_assert_uint_eq(c1.journal_commits - c0.journal_commits, 8);
	ck_assert_int_eq(fl1 - fl0, 8);
	ck_assert_int_eq(fua1 - fua0, 8);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);

	v = t_mount(t_img);
	f = dio_open(v, "log", O_RDONLY);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.size, 41 * 4096);
	for (int i = 0; i < 41; i++) {
		ck_assert_int_eq(dio_pread(f, b, 4096, (off_t)i * 4096), 4096);
		for (int k = 0; k < 4096; k += 511)
			ck_assert_msg(b[k] == t_pat(1, 0, (uint64_t)i * 4096 + (uint64_t)k), "block %d byte %d", i, k);
	}
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
}
END_TEST

/*
 * dio_fdatasync of a file whose size and map did not change writes no
 * journal: one flush for the data (none if nothing was written since
 * the last), and O_DSYNC overwrites are FUA writes alone.  Rule 3 still
 * holds: metadata another file changed before the call is made durable
 * by it (a prefix of all metadata operations survives).
 */
START_TEST(test_fdatasync_of_overwrites_is_a_flush_and_no_journal_write)
{
	struct dio_vol *v = counted_volume("datasync");
	struct dio_file *f = dio_open(v, "db", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(8 * 4096);
	t_fill(b, 8 * 4096, 1, 0, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 8 * 4096, 0), 8 * 4096);
	ck_assert_int_eq(dio_fdatasync(f), 0);

	struct dio_counters c0, c1;
	long fua0, fua1, fl0, fl1;
	dio_counters(v, &c0);
	fl0 = cache_ops(&fua0);
	for (int i = 0; i < 16; i++) {
		t_fill(b, 4096, 1, (uint32_t)i + 1, (uint64_t)(i % 8) * 4096);
		ck_assert_int_eq(dio_pwrite(f, b, 4096, (off_t)(i % 8) * 4096), 4096);
		ck_assert_int_eq(dio_fdatasync(f), 0);
	}
	uint8_t odd[100];   /* misaligned: bounced, still no metadata */
	t_fill(odd, sizeof(odd), 1, 99, 5000);
	ck_assert_int_eq(dio_pwrite(f, odd, sizeof(odd), 5000), (ssize_t)sizeof(odd));
	ck_assert_int_eq(dio_fdatasync(f), 0);
	ck_assert_int_eq(dio_fdatasync(f), 0);   /* nothing new: not even a flush */
	dio_counters(v, &c1);
	fl1 = cache_ops(&fua1);
	ck_assert_uint_eq(c1.journal_commits, c0.journal_commits);
	ck_assert_int_eq(fl1 - fl0, 17);
	ck_assert_int_eq(fua1 - fua0, 0);

	/* O_DSYNC overwrites: FUA, no flush, no journal */
	struct dio_file *g = dio_open(v, "db", O_RDWR | O_DSYNC);
	dio_counters(v, &c0);
	fl0 = cache_ops(&fua0);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(dio_pwrite(g, b, 4096, (off_t)i * 4096), 4096);
	dio_counters(v, &c1);
	fl1 = cache_ops(&fua1);
	ck_assert_uint_eq(c1.journal_commits, c0.journal_commits);
	ck_assert_int_eq(fl1 - fl0, 0);
	ck_assert_int_eq(fua1 - fua0, 8);
	dio_close(g);

	/* another file's create and append before the call: rule 3 makes
	   fdatasync(db) commit them */
	struct dio_file *o = dio_open(v, "other", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(o, b, 4096, 0), 4096);
	ck_assert_int_eq(dio_pwrite(f, b, 4096, 0), 4096);
	dio_counters(v, &c0);
	ck_assert_int_eq(dio_fdatasync(f), 0);
	dio_counters(v, &c1);
	ck_assert_uint_eq(c1.journal_commits - c0.journal_commits, 1);
	dio_close(o);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
}
END_TEST

static uint8_t *snapshot(const char *path, size_t size)
{
	uint8_t *b = malloc(size);
	int fd = open(path, O_RDONLY);
	ck_assert(b && fd >= 0 && pread(fd, b, size, 0) == (ssize_t)size);
	close(fd);
	return b;
}

static void create_synced(struct dio_vol *v, const char *name, uint32_t fid)
{
	struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(4096);
	t_fill(b, 4096, fid, 0, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 4096, 0), 4096);
	ck_assert_int_eq(dio_fsync(f), 0);
	dio_close(f);
	free(b);
}

START_TEST(test_a_transaction_is_never_replayed_without_the_one_before)
{
	/* Commits that only expose zeroed blocks flush after their journal
	   write, and the next journal write may overlap that flush: a crash
	   can keep transaction 3's journal blocks and lose transaction 2's.
	   Build that image (every block that transaction 2 changed put back
	   as it was before it) and mount it: replay must stop at the hole. */
	fresh_image("jhole");
	const size_t size = 24 << 20;
	struct dio_vol *v = t_mount(t_img);
	create_synced(v, "a", 1);
	uint8_t *s1 = snapshot(t_img, size);
	create_synced(v, "b", 2);
	uint8_t *s2 = snapshot(t_img, size);
	create_synced(v, "c", 3);
	uint8_t *s3 = snapshot(t_img, size);
	ck_assert_int_eq(dio_umount(v), 0);
	size_t reverted = 0;
	for (size_t off = 0; off < size; off += 4096)
		if (memcmp(s1 + off, s2 + off, 4096)) {
			memcpy(s3 + off, s1 + off, 4096);
			reverted++;
		}
	ck_assert_uint_gt(reverted, 0);
	char crash[4096];
	snprintf(crash, sizeof(crash), "%s.crash", t_img);
	int fd = open(crash, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ck_assert(fd >= 0 && pwrite(fd, s3, size, 0) == (ssize_t)size);
	close(fd);
	ck_assert_int_eq(dio_fsck(crash, 0, NULL, NULL), 0);
	v = t_mount(crash);
	ck_assert_ptr_nonnull(v);
	struct dio_stat st;
	ck_assert_int_eq(dio_stat(v, "a", &st), 0);
	ck_assert_uint_eq(st.size, 4096);
	ck_assert_int_eq(dio_stat(v, "b", &st), -1);
	ck_assert_int_eq(dio_stat(v, "c", &st), -1);   /* not replayed past the hole */
	ck_assert_int_eq(dio_umount(v), 0);
	unlink(crash);
	free(s1);
	free(s2);
	free(s3);
}
END_TEST

/* A system without pwritev2 RWF_DSYNC (old kernels, qemu-user, some file
   systems): durable writes fall back to a write and fdatasync. */
static int refuse_errno;
static long refused, datasyncs;
static ssize_t no_dsync(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
	(void)fd, (void)iov, (void)iovcnt, (void)off, (void)flags;
	refused++;
	errno = refuse_errno;
	return -1;
}
static int (*real_fdatasync)(int);
extern const struct dio_backend_ops dio_psync_ops;
static int counted_fdatasync(int fd)
{
	datasyncs++;
	return real_fdatasync(fd);
}

START_TEST(test_durable_writes_work_without_rwf_dsync)
{
	int errs[2] = { ENOSYS, EOPNOTSUPP };
	for (int k = 0; k < 2; k++) {
		fresh_image("nodsync");
		dio_platform_reset();
		refuse_errno = errs[k];
		refused = datasyncs = 0;
		struct dio_syscalls saved = dio_sys;
		real_fdatasync = dio_sys.fdatasync;
		dio_sys.pwritev2 = no_dsync;
		dio_sys.fdatasync = counted_fdatasync;
		/* psync: the backend whose FUA writes are the platform's */
		struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .ops = &dio_psync_ops });
		ck_assert_ptr_nonnull(v);   /* the mount's checkpoint wrote with FUA */
		struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT | O_DSYNC);
		uint8_t *b = t_aligned(8192);
		t_fill(b, 8192, 1, 1, 0);
		ck_assert_int_eq(dio_pwrite(f, b, 8192, 0), 8192);   /* O_DSYNC: a journal commit */
		ck_assert_int_eq(dio_pwrite(f, b, 4096, 0), 4096);   /* an O_DSYNC overwrite: a FUA write */
		ck_assert_int_eq(dio_fsync(f), 0);
		ck_assert_int_eq(dio_rename(v, "f", "g"), 0);
		ck_assert_int_eq(dio_syncfs(v), 0);
		/* asked once, then never again: every later FUA write is a write
		   and a data sync */
		ck_assert_int_eq(refused, 1);
		ck_assert_int_gt(datasyncs, 2);
		dio_close(f);
		ck_assert_int_eq(dio_umount(v), 0);
		dio_sys = saved;
		dio_platform_reset();
		v = t_mount(t_img);
		f = dio_open(v, "g", O_RDONLY);
		ck_assert_ptr_nonnull(f);
		uint8_t *r = t_aligned(8192);
		ck_assert_int_eq(dio_pread(f, r, 8192, 0), 8192);
		ck_assert(!memcmp(r, b, 8192));
		dio_close(f);
		ck_assert_int_eq(dio_umount(v), 0);
		free(b);
		free(r);
	}
}
END_TEST

/*
 * A create or an unlink exposes no data, so a commit of nothing else
 * (beside writes into zeroed blocks) writes its record and flushes once,
 * with no FUA: SQLite's rollback journal is created, written, synced and
 * deleted in every transaction.  A rename stays ordered (the data
 * renamed into place is on the device before the name): a flush, then
 * the record with FUA.
 */
START_TEST(test_creates_and_unlinks_commit_with_one_flush_and_renames_stay_ordered)
{
	struct dio_vol *v = counted_volume("nsflush");
	struct dio_file *db = dio_open(v, "db", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(db);
	uint8_t *b = t_aligned(8192);
	t_fill(b, 8192, 1, 0, 0);
	ck_assert_int_eq(dio_pwrite(db, b, 4096, 0), 4096);   /* the first zeroes a chunk */
	ck_assert_int_eq(dio_fdatasync(db), 0);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	long fua0, fua1, fl0 = cache_ops(&fua0);
	for (int i = 0; i < 16; i++) {
		/* the journal's sync also commits the last round's unlink */
		struct dio_file *j = dio_open(v, "db-journal", O_RDWR | O_CREAT | O_EXCL);
		ck_assert_ptr_nonnull(j);
		ck_assert_int_eq(dio_pwrite(j, b, 8192, 0), 8192);
		ck_assert_int_eq(dio_fsync(j), 0);
		ck_assert_int_eq(dio_close(j), 0);
		ck_assert_int_eq(dio_pwrite(db, b, 4096, 0), 4096);
		ck_assert_int_eq(dio_fdatasync(db), 0);   /* an overwrite: a flush alone */
		ck_assert_int_eq(dio_unlink(v, "db-journal"), 0);
	}
	dio_counters(v, &c1);
	long fl1 = cache_ops(&fua1);
	ck_assert_uint_eq(c1.journal_commits - c0.journal_commits, 16);
	ck_assert_int_eq(fl1 - fl0, 32);
	ck_assert_int_eq(fua1 - fua0, 0);

	/* the atomic replace: its rename commits ordered */
	struct dio_file *t = dio_open(v, "db.tmp", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(t, b, 8192, 0), 8192);
	ck_assert_int_eq(dio_fdatasync(t), 0);
	ck_assert_int_eq(dio_close(t), 0);
	fl0 = cache_ops(&fua0);
	ck_assert_int_eq(dio_rename(v, "db.tmp", "db2"), 0);
	ck_assert_int_eq(dio_syncfs(v), 0);
	fl1 = cache_ops(&fua1);
	ck_assert_int_eq(fl1 - fl0, 1);
	ck_assert_int_eq(fua1 - fua0, 1);
	ck_assert_int_eq(dio_close(db), 0);
	ck_assert_int_eq(dio_umount(v), 0);

	/* every name as the calls left it */
	v = t_mount(t_img);
	ck_assert_ptr_null(dio_open(v, "db-journal", O_RDONLY));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(dio_open(v, "db.tmp", O_RDONLY));
	struct dio_file *d2 = dio_open(v, "db2", O_RDONLY);
	ck_assert_ptr_nonnull(d2);
	uint8_t *r = t_aligned(8192);
	ck_assert_int_eq(dio_pread(d2, r, 8192, 0), 8192);
	ck_assert_int_eq(memcmp(r, b, 8192), 0);
	dio_close(d2);
	ck_assert_int_eq(dio_umount(v), 0);
	free(r);
	free(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("durability");
	TCase *tc = tcase_create("durability");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_remount_keeps_everything_after_clean_umount);
	tcase_add_test(tc, test_power_loss_keeps_fsynced_data_and_shows_no_stale_bytes);
	tcase_add_test(tc, test_killed_writer_loses_nothing_it_fsynced);
	tcase_add_test(tc, test_small_appends_commit_with_one_flush_and_prealloc_stays_ordered);
	tcase_add_test(tc, test_a_transaction_is_never_replayed_without_the_one_before);
	tcase_add_test(tc, test_durable_writes_work_without_rwf_dsync);
	tcase_add_test(tc, test_a_killed_process_keeps_every_call_that_returned);
	tcase_add_test(tc, test_each_metadata_call_survives_kill_9);
	tcase_add_test(tc, test_fdatasync_of_overwrites_is_a_flush_and_no_journal_write);
	tcase_add_test(tc, test_creates_and_unlinks_commit_with_one_flush_and_renames_stay_ordered);
	suite_add_tcase(s, tc);
	return t_run(s);
}
