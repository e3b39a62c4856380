/*
 * Crash states, the way dm-log-writes and CrashMonkey build them.
 *
 * "memdev", a test backend, keeps the device in memory and records every
 * write, FUA write and flush of a workload.  From the log we build crash
 * images: for every flush epoch, every prefix of the writes issued in it;
 * random subsets of its non-FUA writes applied in random order (FUA writes
 * are durable at completion and always kept); and torn writes, applied
 * only for some of their 512-byte sectors.  Each image is checked with
 * dio_fsck, then mounted and checked against the crash model: fsynced data and sizes present, synced names present, no byte
 * that was never written to that file at that offset, which also proves
 * freed blocks were not reused before their free was durable.
 *
 * Every other workload writes into preallocated space (partial records,
 * cut by punches and zero ranges, checkpointed: cm_gen_prealloc).
 * DIO_CRASH_STATES sets how many states to check (default 100000).
 */
#include "crashmodel.h"
#include <pthread.h>

#define NOPS 160
#define SECTOR 512

enum { E_WRITE, E_FUA, E_FLUSH };
struct ent { uint64_t off; uint32_t len; int kind; uint8_t *data; };
struct ovl { uint64_t off; uint32_t len; const uint8_t *data; };

static struct {
	pthread_mutex_t mu;
	size_t size;
	uint8_t *cur;             /* recording: the device as the workload sees it */
	uint8_t *base;            /* replay: durable state at the start of the epoch */
	bool recording;
	struct ent *log;
	size_t nlog, logcap;
	struct ovl *ov;           /* replay: writes on top of base, in order */
	size_t nov, ovcap;
	uint8_t **scratch;        /* copies owned by the overlay */
	size_t nscratch, scap;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q)
		abort();
	return q;
}

static void ov_push(uint64_t off, uint32_t len, const uint8_t *data)
{
	if (M.nov == M.ovcap) {
		M.ovcap = M.ovcap ? M.ovcap * 2 : 256;
		M.ov = xrealloc(M.ov, M.ovcap * sizeof(*M.ov));
	}
	M.ov[M.nov++] = (struct ovl){ off, len, data };
}

static void ov_reset(void)
{
	for (size_t i = 0; i < M.nscratch; i++)
		free(M.scratch[i]);
	M.nscratch = M.nov = 0;
}

static void read_img(uint64_t off, uint8_t *dst, size_t len)
{
	if (off >= M.size) {
		memset(dst, 0, len);
		return;
	}
	size_t n = MIN_SZ(len, M.size - off);
	if (M.recording) {
		memcpy(dst, M.cur + off, n);
		return;
	}
	memcpy(dst, M.base + off, n);
	for (size_t i = 0; i < M.nov; i++) {
		const struct ovl *o = &M.ov[i];
		uint64_t a = off > o->off ? off : o->off, b = MIN_SZ(off + n, o->off + o->len);
		if (a < b)
			memcpy(dst + (a - off), o->data + (a - o->off), b - a);
	}
}

static void write_img(uint64_t off, const uint8_t *src, size_t len, int kind)
{
	if (off + len > M.size || (kind == E_FLUSH && !M.recording))
		return;   /* replay: a flush changes nothing in memory */
	if (M.recording) {
		if (len)
			memcpy(M.cur + off, src, len);
		if (M.nlog == M.logcap) {
			M.logcap = M.logcap ? M.logcap * 2 : 4096;
			M.log = xrealloc(M.log, M.logcap * sizeof(*M.log));
		}
		uint8_t *copy = NULL;
		if (kind != E_FLUSH) {
			copy = xrealloc(NULL, len);
			memcpy(copy, src, len);
		}
		M.log[M.nlog++] = (struct ent){ off, (uint32_t)len, kind, copy };
		return;
	}
	uint8_t *copy = xrealloc(NULL, len);
	memcpy(copy, src, len);
	if (M.nscratch == M.scap) {
		M.scap = M.scap ? M.scap * 2 : 64;
		M.scratch = xrealloc(M.scratch, M.scap * sizeof(*M.scratch));
	}
	M.scratch[M.nscratch++] = copy;
	ov_push(off, (uint32_t)len, copy);
}

static int m_probe(void) { return 0; }
static void *m_open(int fd, unsigned depth, int *err) { (void)fd; (void)depth; (void)err; return &M; }
static void m_close(void *c) { (void)c; }

static int m_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	(void)ctx;
	pthread_mutex_lock(&M.mu);
	for (unsigned i = 0; i < n; i++) {
		struct dio_bio *b = &bios[i];
		uint64_t off = b->offset;
		size_t total = 0;
		for (int k = 0; k < b->iovcnt; k++) {
			if (b->op == DIO_BIO_READ)
				read_img(off, b->iov[k].iov_base, b->iov[k].iov_len);
			else
				write_img(off, b->iov[k].iov_base, b->iov[k].iov_len,
					  (b->flags & DIO_BIO_FUA) ? E_FUA : E_WRITE);
			off += b->iov[k].iov_len;
			total += b->iov[k].iov_len;
		}
		b->res = (ssize_t)total;
	}
	pthread_mutex_unlock(&M.mu);
	return 0;
}

static int m_flush(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&M.mu);
	write_img(0, NULL, 0, E_FLUSH);
	pthread_mutex_unlock(&M.mu);
	return 0;
}

static const struct dio_backend_ops memdev = {
	.abi = DIO_BACKEND_ABI, .name = "memdev", .probe = m_probe, .open = m_open,
	.submit = m_submit, .flush = m_flush, .close = m_close,
};

static const struct dio_mount_opts mem_opts = { .backend = "memdev" };

/* ---- one workload ---------------------------------------------------- */

static struct cm_op ops[NOPS];
static long op_start[NOPS], op_end[NOPS];
static int op_ok[NOPS];
static char *img;
static long nstates, nfsck, nepochs, ntorn;

static void record(uint64_t seed, bool prealloc)
{
	unlink(img);
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 16 << 20, .journal_size = 64 << 10 }), 0);
	int fd = open(img, O_RDONLY);
	M.size = 16 << 20;
	free(M.cur);
	free(M.base);
	M.cur = xrealloc(NULL, M.size);
	M.base = xrealloc(NULL, M.size);
	ck_assert(pread(fd, M.cur, M.size, 0) == (ssize_t)M.size);
	memcpy(M.base, M.cur, M.size);
	close(fd);
	for (size_t i = 0; i < M.nlog; i++)
		free(M.log[i].data);
	M.nlog = 0;
	M.recording = true;
	if (prealloc)
		cm_gen_prealloc(ops, NOPS, seed);
	else
		cm_gen(ops, NOPS, seed);
	struct dio_vol *v = dio_mount(img, &mem_opts);
	ck_assert_ptr_nonnull(v);
	struct dio_file *h[CM_FILES], *hs[CM_FILES];
	cm_open(v, h, hs);
	for (int i = 0; i < NOPS; i++) {
		op_start[i] = (long)M.nlog;
		op_ok[i] = cm_exec(v, h, hs, &ops[i]) == 0;
		op_end[i] = (long)M.nlog - 1;   /* last entry it issued (start-1 if none) */
	}
	cm_close(h, hs);
	/* the umount's checkpoint is recorded too: crashes during it count */
	ck_assert_int_eq(dio_umount(v), 0);
	M.recording = false;
}

static struct cm_model model;
static int next_op;
static bool next_applied;

/*
 * Bring the model to "the crash happened after log entry `cut` was
 * issued and before the next one".  Ops run one after another, so an op
 * that started by then has every earlier op completed: the model only
 * moves forward as the cut does, and states are checked in cut order.
 */
static void model_reset(void)
{
	memset(&model, 0, sizeof(model));
	next_op = 0;
	next_applied = false;
}

static void advance_to(long cut)
{
	while (next_op < NOPS) {
		int i = next_op;
		if (!next_applied) {
			if (op_start[i] > cut + 1)
				break;                   /* not started */
			cm_apply(&model, &ops[i]);
			next_applied = true;
		}
		if (op_end[i] >= cut)
			break;                           /* may still be in flight */
		if (op_ok[i])
			cm_synced(&model, &ops[i]);      /* completed before the crash */
		else
			cm_failed(&model, &ops[i]);
		next_op++;
		next_applied = false;
	}
}

int fsck_with_ops(const char *path, unsigned flags, const struct dio_backend_ops *ops,
		  void (*report)(int, const char *, void *), void *arg);

static void fsck_report(int sev, const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "fsck of crash state %ld: %s: %s\n", nstates, sev == DIO_FSCK_ERROR ? "error" : "warning", msg);
}

/* What a state must show, once mounted (cut: the last log entry issued). */
static void (*checker)(struct dio_vol *v, long cut);

static void check_model(struct dio_vol *v, long cut)
{
	(void)cut;
	cm_check(v, &model);
}

static void check_state(long cut)
{
	if (checker == check_model)
		advance_to(cut);
	/* dio_fsck first, on the image exactly as the crash left it */
	size_t before = M.nov;
	ck_assert_msg(fsck_with_ops(img, 0, &memdev, fsck_report, NULL) == 0, "fsck of crash state %ld", nstates);
	ck_assert_uint_eq(M.nov, before);   /* fsck wrote nothing */
	nfsck++;
	struct dio_vol *v = dio_mount(img, &mem_opts);
	ck_assert_msg(v != NULL, "state %ld (cut %ld) does not mount: %s", nstates, cut, strerror(errno));
	checker(v, cut);
	ck_assert_int_eq(dio_umount(v), 0);
	ov_reset();
	nstates++;
}

static void apply_base(long i)
{
	if (M.log[i].kind != E_FLUSH)
		memcpy(M.base + M.log[i].off, M.log[i].data, M.log[i].len);
}

/* A random subset of the epoch's writes issued up to `c`, FUA writes
   always kept, one write maybe torn at sector bounds.  The survivors are
   laid down in issue order: a write that completed before a later one to
   the same sectors was issued is superseded in the device's cache, so the
   older bytes may survive only if the newer are lost, never on top of
   them (a shuffled order let an unflushed write land over a later FUA
   write of the same block, a state no device produces).  Writes to
   different sectors commute, so issue order loses no reachable state. */
static void push_subset(long e0, long c)
{
	long idx[256];
	int n = 0;
	for (long i = e0; i <= c && n < 256; i++)
		if (M.log[i].kind == E_FUA || t_rand() % 2)
			idx[n++] = i;
	int torn = (n && t_rand() % 3 == 0) ? (int)(t_rand() % (uint64_t)n) : -1;
	for (int k = 0; k < n; k++) {
		const struct ent *w = &M.log[idx[k]];
		if (k == torn && w->kind != E_FUA && w->len > SECTOR) {
			for (uint32_t s = 0; s < w->len; s += SECTOR)
				if (t_rand() % 2)
					ov_push(w->off + s, MIN_SZ(SECTOR, w->len - s), w->data + s);
			ntorn++;
		} else {
			ov_push(w->off, w->len, w->data);
		}
	}
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

/* Every state of one recorded workload, in cut order, from the epoch
   that holds entry `from` on (the ones before are laid down as durable). */
static void explore(long budget, long from)
{
	long start = nstates;
	long e0 = 0;                         /* first entry of the epoch */
	model_reset();
	for (long e1; e0 <= (long)M.nlog; e0 = e1 + 1) {
		for (e1 = e0; e1 < (long)M.nlog && M.log[e1].kind != E_FLUSH; e1++)
			;
		if (e1 >= from)
			break;
		for (long i = e0; i < e1; i++)
			apply_base(i);
	}
	while (e0 <= (long)M.nlog && nstates - start < budget) {
		long e1 = e0;                    /* the epoch's flush (or the end) */
		while (e1 < (long)M.nlog && M.log[e1].kind != E_FLUSH)
			e1++;
		nepochs++;
		long m = e1 - e0, cuts[24];
		int nsub = m > 1 ? 24 : 0;
		for (int r = 0; r < nsub; r++)
			cuts[r] = e0 + (long)(t_rand() % (uint64_t)m);
		qsort(cuts, (size_t)nsub, sizeof(cuts[0]), cmp_long);
		int r = 0;
		if (e1 == e0)
			check_state(e0 - 1);     /* an empty epoch: the state at the flush */
		for (long c = e0; c < e1; c++) {
			/* the prefix e0..c in order */
			for (long i = e0; i <= c; i++)
				ov_push(M.log[i].off, M.log[i].len, M.log[i].data);
			check_state(c);
			/* then the random subsets cut here */
			for (; r < nsub && cuts[r] == c; r++) {
				push_subset(e0, c);
				check_state(c);
			}
		}
		/* the epoch's writes are durable once its flush completes */
		for (long i = e0; i < e1; i++)
			apply_base(i);
		e0 = e1 + 1;
	}
}

START_TEST(test_every_crash_state_keeps_the_contract)
{
	long want = getenv("DIO_CRASH_STATES") ? atol(getenv("DIO_CRASH_STATES")) : 100000;
	img = strdup(t_image_path("crashstates"));
	static int registered;
	if (!registered++)
		ck_assert_int_eq(dio_backend_register(&memdev), 0);
	unsetenv("DIO_BACKEND");
	t_seed(31337);
	int workloads = 0;
	checker = check_model;
	long pstates = 0;
	while (nstates < want) {
		/* every other workload writes into preallocated space: partial
		   records, cut by punches and zero ranges, in checkpoints too */
		bool prealloc = workloads % 2;
		long before = nstates;
		record(5000 + (uint64_t)workloads, prealloc);
		explore(want - nstates, 0);
		if (prealloc)
			pstates += nstates - before;
		workloads++;
	}
	fprintf(stderr, "crash states: %ld checked (%ld by dio_fsck too, %ld of workloads into preallocated space) "
		"from %d workloads, %ld flush epochs, %ld torn writes\n", nstates, nfsck, pstates, workloads, nepochs,
		ntorn);
	unlink(img);
}
END_TEST

/* ---- one call on a synced file, cut at every device write ------------------------ */

/*
 * A file of synced data ("t", 48,853 bytes: the last block partial) and
 * a bystander ("u"), then one call on "t" and its fsync, recorded; every
 * crash state from the call's first device write on must show "t" as it
 * was or as the call left it, exactly, never a mix (contract rules 3 and
 * 8: a truncate cut by a crash once kept the old size with the bytes past
 * the new one zeroed).  Growing "t" back to its old size afterwards must
 * show zeros past the size it has: no old byte comes back.
 */
#define T_SIZE 48853u
#define U_SIZE 10000u

struct one_call {
	const char *what;
	int mode;                  /* DIO_FALLOC_*; -1: ftruncate to off */
	uint64_t off, len;
};
static const struct one_call *the_call;
static uint8_t t_old[T_SIZE], t_new[T_SIZE], u_data[U_SIZE];
static uint64_t t_new_size;

static void call_expect(const struct one_call *c)
{
	for (uint32_t i = 0; i < T_SIZE; i++)
		t_old[i] = t_pat(1, 1, i);
	for (uint32_t i = 0; i < U_SIZE; i++)
		u_data[i] = t_pat(2, 1, i);
	memcpy(t_new, t_old, T_SIZE);
	t_new_size = T_SIZE;
	if (c->mode < 0) {
		t_new_size = c->off;
		memset(t_new + c->off, 0, T_SIZE - c->off);
	} else {
		memset(t_new + c->off, 0, c->len);   /* punch or zero range, inside the file */
	}
}

static void record_call(const struct one_call *c, long *from)
{
	unlink(img);
	ck_assert_int_eq(dio_mkfs(img, &(struct dio_mkfs_opts){ .size = 16 << 20, .journal_size = 64 << 10 }), 0);
	int fd = open(img, O_RDONLY);
	M.size = 16 << 20;
	free(M.cur);
	free(M.base);
	M.cur = xrealloc(NULL, M.size);
	M.base = xrealloc(NULL, M.size);
	ck_assert(pread(fd, M.cur, M.size, 0) == (ssize_t)M.size);
	memcpy(M.base, M.cur, M.size);
	close(fd);
	for (size_t i = 0; i < M.nlog; i++)
		free(M.log[i].data);
	M.nlog = 0;
	M.recording = true;
	call_expect(c);
	struct dio_vol *v = dio_mount(img, &mem_opts);
	ck_assert_ptr_nonnull(v);
	struct dio_file *t = dio_open(v, "t", O_CREAT | O_RDWR), *u = dio_open(v, "u", O_CREAT | O_RDWR);
	ck_assert(t && u);
	/* an aligned write and a misaligned tail: written blocks throughout */
	uint8_t *a = t_aligned(32768);
	memcpy(a, t_old, 32768);
	ck_assert_int_eq(dio_pwrite(t, a, 32768, 0), 32768);
	ck_assert_int_eq(dio_pwrite(t, t_old + 32768, T_SIZE - 32768, 32768), T_SIZE - 32768);
	ck_assert_int_eq(dio_pwrite(u, u_data, U_SIZE, 0), U_SIZE);
	ck_assert_int_eq(dio_fsync(t), 0);
	ck_assert_int_eq(dio_fsync(u), 0);
	free(a);
	*from = (long)M.nlog;
	the_call = c;
	int r = c->mode < 0 ? dio_ftruncate(t, (off_t)c->off) : dio_fallocate(t, c->mode, (off_t)c->off, (off_t)c->len);
	ck_assert_msg(r == 0, "%s: %s", c->what, strerror(errno));
	ck_assert_int_eq(dio_fsync(t), 0);
	dio_close(t);
	dio_close(u);
	ck_assert_int_eq(dio_umount(v), 0);
	M.recording = false;
}

static void read_whole(struct dio_vol *v, const char *name, uint8_t *buf, size_t cap, uint64_t *size)
{
	struct dio_file *f = dio_open(v, name, O_RDWR);
	ck_assert_ptr_nonnull(f);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	*size = st.size;
	ck_assert_uint_le(st.size, cap);
	ck_assert_int_eq(dio_pread(f, buf, cap, 0), (ssize_t)st.size);
	dio_close(f);
}

static void check_call(struct dio_vol *v, long cut)
{
	static uint8_t got[T_SIZE + 4096];
	uint64_t size;
	read_whole(v, "u", got, sizeof(got), &size);
	ck_assert_msg(size == U_SIZE && !memcmp(got, u_data, U_SIZE), "%s, cut %ld: the bystander changed",
		      the_call->what, cut);
	read_whole(v, "t", got, sizeof(got), &size);
	bool old = size == T_SIZE && !memcmp(got, t_old, T_SIZE);
	bool new = size == t_new_size && !memcmp(got, t_new, (size_t)size);
	if (!old && !new) {
		uint64_t d = 0;
		while (d < size && d < T_SIZE && got[d] == t_old[d])
			d++;
		ck_abort_msg("%s, cut %ld (state %ld): size %llu, first byte unlike the old data at %llu: neither "
			     "the old file nor the call's", the_call->what, cut, nstates, (unsigned long long)size,
			     (unsigned long long)d);
	}
	if (size < T_SIZE) {
		/* grown back: zeros past the size it had, never old bytes */
		struct dio_file *f = dio_open(v, "t", O_RDWR);
		ck_assert_int_eq(dio_ftruncate(f, T_SIZE), 0);
		ck_assert_int_eq(dio_pread(f, got, T_SIZE, 0), (ssize_t)T_SIZE);
		for (uint64_t i = size; i < T_SIZE; i++)
			ck_assert_msg(!got[i], "%s, cut %ld: byte %llu came back after growing the file",
				      the_call->what, cut, (unsigned long long)i);
		dio_close(f);
	}
}

START_TEST(test_a_call_on_a_synced_file_cut_at_every_device_write_is_whole_or_absent)
{
	static const struct one_call calls[] = {
		{ "truncate to 3,507", -1, 3507, 0 },
		{ "truncate to 40,960 (a block edge)", -1, 40960, 0 },
		{ "truncate to 48,000 (inside the last block)", -1, 48000, 0 },
		{ "truncate to 0", -1, 0, 0 },
		{ "punch 5,000..20,000", DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 5000, 15000 },
		{ "punch 100 bytes inside a block", DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 9000, 100 },
		{ "zero range 4,000..30,000", DIO_FALLOC_ZERO_RANGE, 4000, 26000 },
		{ "zero range 100 bytes inside a block", DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE, 9000, 100 },
	};
	img = strdup(t_image_path("crashcall"));
	static int registered;
	if (!registered++)
		ck_assert_int_eq(dio_backend_register(&memdev), 0);
	unsetenv("DIO_BACKEND");
	t_seed(4242);
	checker = check_call;
	long total = 0;
	for (unsigned k = 0; k < sizeof(calls) / sizeof(calls[0]); k++) {
		long from, before = nstates;
		record_call(&calls[k], &from);
		explore(100000, from);
		total += nstates - before;
	}
	fprintf(stderr, "one call cut at every device write: %ld states, %ld torn writes\n", total, ntorn);
	unlink(img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crashstates");
	TCase *tc = tcase_create("crashstates");
	tcase_set_timeout(tc, 3000);
	tcase_add_test(tc, test_a_call_on_a_synced_file_cut_at_every_device_write_is_whole_or_absent);
	tcase_add_test(tc, test_every_crash_state_keeps_the_contract);
	suite_add_tcase(s, tc);
	return t_run(s);
}
