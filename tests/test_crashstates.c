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

static void record(uint64_t seed)
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

static void check_state(long cut)
{
	advance_to(cut);
	/* dio_fsck first, on the image exactly as the crash left it */
	size_t before = M.nov;
	ck_assert_msg(fsck_with_ops(img, 0, &memdev, fsck_report, NULL) == 0, "fsck of crash state %ld", nstates);
	ck_assert_uint_eq(M.nov, before);   /* fsck wrote nothing */
	nfsck++;
	struct dio_vol *v = dio_mount(img, &mem_opts);
	ck_assert_msg(v != NULL, "state %ld (cut %ld) does not mount: %s", nstates, cut, strerror(errno));
	cm_check(v, &model);
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

/* Every state of one recorded workload, in cut order. */
static void explore(long budget)
{
	long start = nstates;
	long e0 = 0;                         /* first entry of the epoch */
	model_reset();
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
	while (nstates < want) {
		record(5000 + (uint64_t)workloads);
		explore(want - nstates);
		workloads++;
	}
	fprintf(stderr, "crash states: %ld checked (%ld by dio_fsck too) from %d workloads, "
		"%ld flush epochs, %ld torn writes\n", nstates, nfsck, workloads, nepochs, ntorn);
	unlink(img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crashstates");
	TCase *tc = tcase_create("crashstates");
	tcase_set_timeout(tc, 3000);
	tcase_add_test(tc, test_every_crash_state_keeps_the_contract);
	suite_add_tcase(s, tc);
	return t_run(s);
}
