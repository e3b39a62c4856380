/*
 * Thread safety: disjoint writers, sub-block writers sharing blocks (each
 * thread's bytes intact), atomic overlapping writes against readers,
 * parallel extending writers with fsyncs, threads overlapping on one
 * file checked against the writes that can have produced each byte, the
 * namespace under
 * concurrent create/rename/unlink/list.  Data and counters are asserted,
 * never timings.  Runs under ThreadSanitizer in CI.
 */
#include "helpers.h"
#include <pthread.h>
#include <stdatomic.h>

#define MAX_SZ(a, b) ((a) > (b) ? (a) : (b))

#define NT 4

static struct dio_vol *vol;
static char *img;
static struct dio_file *shared;

static void setup(void)
{
	vol = t_fresh("conc", 128, &img);
	shared = dio_open(vol, "shared", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(shared);
}

static void teardown(void)
{
	dio_close(shared);
	ck_assert_int_eq(dio_umount(vol), 0);
	unlink(img);
	free(img);
}

static void *disjoint_writer(void *arg)
{
	long t = (long)arg;
	uint8_t *b = t_aligned(65536 + 1);
	for (int i = 0; i < 64; i++) {
		uint64_t off = (uint64_t)t * (4 << 20) + (uint64_t)i * 65536;
		bool mis = i % 3 == 0;
		t_fill(b + mis, 65536, (uint32_t)t, 1, off);
		if (dio_pwrite(shared, b + mis, 65536, (off_t)off) != 65536)
			return (void *)1;
		if (i % 16 == 15 && dio_fdatasync(shared) != 0)
			return (void *)2;
	}
	for (int i = 0; i < 64; i++) {
		uint64_t off = (uint64_t)t * (4 << 20) + (uint64_t)i * 65536;
		if (dio_pread(shared, b, 65536, (off_t)off) != 65536)
			return (void *)3;
		for (int k = 0; k < 65536; k++)
			if (b[k] != t_pat((uint32_t)t, 1, off + (uint64_t)k))
				return (void *)4;
	}
	free(b);
	return NULL;
}

START_TEST(test_disjoint_writers_in_parallel_keep_their_data)
{
	pthread_t th[NT];
	for (long t = 0; t < NT; t++)
		pthread_create(&th[t], NULL, disjoint_writer, (void *)t);
	for (int t = 0; t < NT; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	struct dio_counters c;
	dio_counters(vol, &c);
	ck_assert_uint_eq(c.writes, NT * 64);
	ck_assert_uint_ge(c.bounced, NT * 22);
}
END_TEST

/* thread t owns every byte i with i % NT == t in the first 8 blocks;
   run with a plain handle and with a DIO_O_CONCURRENT one, under which
   misaligned writes must still be serialized per block */
static struct dio_file *sub_handle;

static void *subblock_writer(void *arg)
{
	long t = (long)arg;
	for (int round = 0; round < 3; round++) {
		for (uint64_t i = (uint64_t)t; i < 8 * 4096; i += NT) {
			uint8_t v = t_pat((uint32_t)t, (uint32_t)round, i);
			if (dio_pwrite(sub_handle, &v, 1, (off_t)i) != 1)
				return (void *)1;
		}
	}
	return NULL;
}

START_TEST(test_subblock_writers_of_one_block_keep_each_others_bytes)
{
	sub_handle = _i ? dio_open(vol, "shared", O_RDWR | DIO_O_CONCURRENT) : shared;
	ck_assert_ptr_nonnull(sub_handle);
	pthread_t th[NT];
	for (long t = 0; t < NT; t++)
		pthread_create(&th[t], NULL, subblock_writer, (void *)t);
	for (int t = 0; t < NT; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	uint8_t *b = t_aligned(8 * 4096);
	ck_assert_int_eq(dio_pread(shared, b, 8 * 4096, 0), 8 * 4096);
	for (uint64_t i = 0; i < 8 * 4096; i++)
		ck_assert_msg(b[i] == t_pat((uint32_t)(i % NT), 2, i), "byte %llu lost", (unsigned long long)i);
	free(b);
	struct dio_counters c;
	dio_counters(vol, &c);
	/* every byte went through the merge path (the block read back, or
	   taken from the kept tail block when it was the last one written) */
	ck_assert_uint_ge(c.bounced, 8 * 4096 * 3);
	if (sub_handle != shared)
		dio_close(sub_handle);
}
END_TEST

static volatile int stop_readers;

static void *overlap_writer(void *arg)
{
	long t = (long)arg;
	uint8_t *b = t_aligned(65536);
	memset(b, (int)(t + 1), 65536);
	for (int i = 0; i < 300; i++)
		if (dio_pwrite(shared, b + (i % 2), 65536 - 1, 100) != 65536 - 1)
			return (void *)1;
	free(b);
	return NULL;
}

static void *torn_reader(void *arg)
{
	(void)arg;
	uint8_t *b = t_aligned(65536);
	long torn = 0;
	while (!__atomic_load_n(&stop_readers, __ATOMIC_ACQUIRE)) {
		if (dio_pread(shared, b, 65535, 100) != 65535)
			continue;
		for (int k = 1; k < 65535; k++)
			if (b[k] != b[0]) {
				torn++;
				break;
			}
	}
	free(b);
	return (void *)torn;
}

START_TEST(test_overlapping_writes_are_atomic_against_reads)
{
	uint8_t *z = t_aligned(65536);
	memset(z, 9, 65536);
	ck_assert_int_eq(dio_pwrite(shared, z, 65535, 100), 65535);
	pthread_t w[2], r[2];
	__atomic_store_n(&stop_readers, 0, __ATOMIC_RELEASE);
	for (long t = 0; t < 2; t++)
		pthread_create(&r[t], NULL, torn_reader, NULL);
	for (long t = 0; t < 2; t++)
		pthread_create(&w[t], NULL, overlap_writer, (void *)t);
	for (int t = 0; t < 2; t++) {
		void *res;
		pthread_join(w[t], &res);
		ck_assert_ptr_null(res);
	}
	__atomic_store_n(&stop_readers, 1, __ATOMIC_RELEASE);
	for (int t = 0; t < 2; t++) {
		void *torn;
		pthread_join(r[t], &torn);
		ck_assert_int_eq((long)torn, 0);
	}
	free(z);
}
END_TEST

static void *appender(void *arg)
{
	long t = (long)arg;
	char name[32];
	snprintf(name, sizeof(name), "log-%ld", t);
	struct dio_file *f = dio_open(vol, name, O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(4096 + 1);
	for (int i = 0; i < 100; i++) {
		t_fill(b, 4096 + 1, (uint32_t)t, 1, (uint64_t)i * 4096);
		uint64_t off = (uint64_t)i * 4096;
		if (dio_pwrite(f, b, 4096, (off_t)off) != 4096 || dio_fdatasync(f) != 0)
			return (void *)1;
		/* and one extending write into the shared file, its own slot */
		if (dio_pwrite(shared, b, 4096, (off_t)((uint64_t)(i * NT + t) * 4096)) != 4096)
			return (void *)2;
	}
	dio_close(f);
	free(b);
	return NULL;
}

START_TEST(test_parallel_extending_writers_with_fdatasync)
{
	struct dio_counters c0, c1;
	dio_counters(vol, &c0);
	pthread_t th[NT];
	for (long t = 0; t < NT; t++)
		pthread_create(&th[t], NULL, appender, (void *)t);
	for (int t = 0; t < NT; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	dio_counters(vol, &c1);
	/* every fdatasync of an extending write commits, but never more than once */
	ck_assert_uint_le(c1.journal_commits - c0.journal_commits, NT * 100);
	ck_assert_uint_ge(c1.flushes - c0.flushes, 1);
	dio_close(shared);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	shared = dio_open(vol, "shared", O_RDWR);
	uint8_t *b = t_aligned(4096);
	for (long t = 0; t < NT; t++) {
		char name[32];
		snprintf(name, sizeof(name), "log-%ld", t);
		struct dio_file *f = dio_open(vol, name, O_RDONLY);
		struct dio_stat st;
		dio_fstat(f, &st);
		ck_assert_uint_eq(st.size, 100 * 4096);
		for (int i = 0; i < 100; i++) {
			ck_assert_int_eq(dio_pread(f, b, 4096, i * 4096), 4096);
			ck_assert_uint_eq(b[77], t_pat((uint32_t)t, 1, (uint64_t)i * 4096 + 77));
			ck_assert_int_eq(dio_pread(shared, b, 4096, (i * NT + t) * 4096), 4096);
			ck_assert_uint_eq(b[4095], t_pat((uint32_t)t, 1, (uint64_t)i * 4096 + 4095));
		}
		dio_close(f);
	}
	free(b);
}
END_TEST

static int count_cb(const char *name, const struct dio_stat *st, void *arg)
{
	(void)name;
	(void)st;
	(*(long *)arg)++;
	return 0;
}

static void *namespace_worker(void *arg)
{
	long t = (long)arg;
	for (int i = 0; i < 200; i++) {
		char a[64], b[64];
		snprintf(a, sizeof(a), "ns/%ld/%d", t, i);
		snprintf(b, sizeof(b), "ns/%ld/renamed-%d", t, i % 7);
		struct dio_file *f = dio_open(vol, a, O_RDWR | O_CREAT | O_EXCL);
		if (!f)
			return (void *)1;
		if (dio_pwrite(f, a, strlen(a), 0) != (ssize_t)strlen(a))
			return (void *)2;
		dio_close(f);
		if (dio_rename(vol, a, b) != 0)
			return (void *)3;
		if (i % 3 == 0 && dio_unlink(vol, b) != 0)
			return (void *)4;
		long n = 0;
		if (i % 20 == 0 && dio_list(vol, "ns/", count_cb, &n) != 0)
			return (void *)5;
	}
	return NULL;
}

START_TEST(test_namespace_under_concurrent_changes)
{
	pthread_t th[NT];
	for (long t = 0; t < NT; t++)
		pthread_create(&th[t], NULL, namespace_worker, (void *)t);
	for (int t = 0; t < NT; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	long n = 0;
	ck_assert_int_eq(dio_list(vol, "ns/", count_cb, &n), 0);
	ck_assert_int_le(n, NT * 7);
	ck_assert_int_eq(dio_syncfs(vol), 0);
}
END_TEST

/* Each thread: random writes (aligned and not), reads compared with its
   exact model, truncates, fallocates of every mode and syncs on a file of
   its own, all at once; afterwards a remount must show every model. */
#define SMAX (1u << 20)
struct stress { long t; uint8_t *model; uint64_t size; long bad; };

static void *stress_thread(void *arg)
{
	struct stress *st = arg;
	char name[16];
	snprintf(name, sizeof(name), "s%ld", st->t);
	struct dio_file *f = dio_open(vol, name, O_RDWR | O_CREAT);
	uint8_t *buf = t_aligned(SMAX + 8192);
	uint64_t rs = 0x1234567ull * (uint64_t)(st->t + 1);
	for (int op = 0; op < 1500 && !st->bad; op++) {
		rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
		unsigned r = (unsigned)(rs % 100);
		uint64_t off = (rs >> 8) % SMAX, len = 1 + (rs >> 32) % 30000;
		if (rs & (1ull << 60)) {
			off &= ~4095ull;
			len = (len + 4095) & ~4095ull;
		}
		if (off + len > SMAX)
			len = SMAX - off;
		unsigned shift = (rs & (1ull << 61)) ? (unsigned)(rs % 64) : 0;
		if (r < 45) {
			t_fill(buf + shift, len, (uint32_t)st->t, (uint32_t)op, off);
			if (dio_pwrite(f, buf + shift, len, (off_t)off) != (ssize_t)len)
				st->bad = op + 1;
			memcpy(st->model + off, buf + shift, len);
			if (off + len > st->size)
				st->size = off + len;
		} else if (r < 75) {
			uint64_t want = off >= st->size ? 0 : MIN_SZ(len, st->size - off);
			if (dio_pread(f, buf + shift, len, (off_t)off) != (ssize_t)want ||
			    memcmp(buf + shift, st->model + off, want))
				st->bad = op + 1;
		} else if (r < 82) {
			if (dio_ftruncate(f, (off_t)off))
				st->bad = op + 1;
			if (off < st->size)
				memset(st->model + off, 0, st->size - off);
			st->size = off;
		} else if (r < 94) {
			static const int modes[] = { 0, DIO_FALLOC_KEEP_SIZE,
				DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, DIO_FALLOC_ZERO_RANGE };
			int mode = modes[rs % 4];
			if (dio_fallocate(f, mode, (off_t)off, (off_t)len))
				st->bad = op + 1;
			if (mode & (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE)) {
				uint64_t e = MIN_SZ(off + len, st->size);
				if (off < e)
					memset(st->model + off, 0, e - off);
			}
			if (!(mode & DIO_FALLOC_KEEP_SIZE) && off + len > st->size)
				st->size = off + len;
		} else {
			if ((r % 2 ? dio_fsync(f) : dio_fdatasync(f)))
				st->bad = op + 1;
		}
	}
	dio_close(f);
	free(buf);
	return NULL;
}

START_TEST(test_threads_with_every_operation_match_their_models_after_remount)
{
	struct stress st[NT];
	pthread_t th[NT];
	for (long t = 0; t < NT; t++) {
		st[t] = (struct stress){ t, calloc(1, SMAX), 0, 0 };
		pthread_create(&th[t], NULL, stress_thread, &st[t]);
	}
	for (int t = 0; t < NT; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < NT; t++)
		ck_assert_msg(st[t].bad == 0, "thread %d: op %ld failed or read wrong bytes", t, st[t].bad - 1);
	dio_close(shared);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	shared = dio_open(vol, "shared", O_RDWR);
	uint8_t *buf = t_aligned(SMAX);
	for (long t = 0; t < NT; t++) {
		char name[16];
		snprintf(name, sizeof(name), "s%ld", t);
		struct dio_file *f = dio_open(vol, name, O_RDONLY);
		ck_assert_int_eq(dio_pread(f, buf, SMAX, 0), (ssize_t)st[t].size);
		ck_assert_msg(!memcmp(buf, st[t].model, st[t].size), "file s%ld differs after remount", t);
		dio_close(f);
		free(st[t].model);
	}
	free(buf);
}
END_TEST

/*
 * Threads overlapping on one file: aligned and misaligned writes (some
 * extending it), reads and fdatasyncs on a 256 KiB region, half the
 * threads through DIO_O_CONCURRENT handles.  Every call is stamped with a
 * global clock before and after.  Since writes may race, the model is the
 * set of writes that can have produced each byte: a write W covering it
 * is a candidate unless another write covering it started after W had
 * returned.  Every byte read, and every byte of the file at the end and
 * after a remount, must be a candidate's (or zero where no write covering
 * it had returned yet); the final size is exact (no truncates here).
 */
#define OV_REGION (256u << 10)
#define OV_OPS 300
#define OV_SECT 512u

struct ov_io { uint64_t off, len, t0, t1; uint32_t tid, seq; uint8_t *data; bool write; };
static struct ov_io *ov_log;
static atomic_uint ov_n;
static atomic_ulong ov_clock;
static struct dio_file *ov_plain, *ov_conc;

static void *overlap_thread(void *arg)
{
	long t = (long)arg;
	struct dio_file *f = t % 2 ? ov_conc : ov_plain;
	uint64_t seed = 0x5eed0000u + (uint64_t)t;
	uint8_t *buf = t_aligned(16384 + 4096);
	for (uint32_t seq = 1; seq <= OV_OPS; seq++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t r = seed >> 20;
		unsigned kind = (unsigned)(r % 20);
		bool aligned = (r >> 5) & 1;
		uint64_t len = aligned ? 4096 * (1 + (r >> 6) % 4) : 1 + (r >> 6) % 12000;
		uint64_t off = aligned ? 4096 * ((r >> 20) % (OV_REGION / 4096)) : (r >> 20) % OV_REGION;
		if (kind == 19) {
			if (dio_fdatasync(f))
				return (void *)1;
			continue;
		}
		struct ov_io io = { off, len, 0, 0, (uint32_t)t, seq, NULL, kind < 10 };
		uint8_t *p = buf + (aligned ? 0 : (r >> 40) % 64);
		if (io.write)
			t_fill(p, len, (uint32_t)t, seq, off);
		io.t0 = atomic_fetch_add(&ov_clock, 1);
		ssize_t got = io.write ? dio_pwrite(f, p, len, (off_t)off) : dio_pread(f, p, len, (off_t)off);
		io.t1 = atomic_fetch_add(&ov_clock, 1);
		if (got < 0 || (io.write && (uint64_t)got != len))
			return (void *)2;
		if (!io.write) {
			io.len = (uint64_t)got;
			io.data = malloc(io.len + 1);
			memcpy(io.data, p, io.len);
		}
		ov_log[atomic_fetch_add(&ov_n, 1)] = io;
	}
	free(buf);
	return NULL;
}

/* Writes covering each sector, so a byte's candidates are few to scan. */
struct ov_index { unsigned *v; unsigned n, cap; };

static bool ov_byte_ok(const struct ov_index *ix, uint64_t pos, uint8_t b, uint64_t read_t0, uint64_t read_t1)
{
	const struct ov_index *s = &ix[pos / OV_SECT];
	bool maybe_unwritten = true;
	for (unsigned i = 0; i < s->n; i++) {
		const struct ov_io *w = &ov_log[s->v[i]];
		if (pos < w->off || pos >= w->off + w->len)
			continue;
		if (w->t1 < read_t0)
			maybe_unwritten = false;
	}
	if (b == 0 && maybe_unwritten)
		return true;
	for (unsigned i = 0; i < s->n; i++) {
		const struct ov_io *w = &ov_log[s->v[i]];
		if (pos < w->off || pos >= w->off + w->len || w->t0 > read_t1 || b != t_pat(w->tid, w->seq, pos))
			continue;
		bool superseded = false;   /* by a covering write between w and the read */
		for (unsigned k = 0; k < s->n && !superseded; k++) {
			const struct ov_io *x = &ov_log[s->v[k]];
			superseded = pos >= x->off && pos < x->off + x->len && x->t0 > w->t1 && x->t1 < read_t0;
		}
		if (!superseded)
			return true;
	}
	return false;
}

static void ov_check_file(struct dio_file *f, const struct ov_index *ix, uint64_t size, const char *when)
{
	uint8_t *buf = t_aligned(OV_REGION + 65536);
	ck_assert_int_eq(dio_pread(f, buf, OV_REGION + 65536, 0), (ssize_t)size);
	for (uint64_t pos = 0; pos < size; pos++)
		if (!ov_byte_ok(ix, pos, buf[pos], UINT64_MAX - 1, UINT64_MAX))
			ck_abort_msg("%s: byte %llu (%u) is no candidate write's", when, (unsigned long long)pos, buf[pos]);
	free(buf);
}

START_TEST(test_threads_overlapping_on_one_file_see_only_candidate_bytes)
{
	ov_log = calloc(NT * OV_OPS, sizeof(*ov_log));
	atomic_store(&ov_n, 0);
	atomic_store(&ov_clock, 1);
	ov_plain = dio_open(vol, "ov", O_RDWR | O_CREAT);
	ov_conc = dio_open(vol, "ov", O_RDWR | DIO_O_CONCURRENT);
	ck_assert_ptr_nonnull(ov_plain);
	ck_assert_ptr_nonnull(ov_conc);
	pthread_t th[NT];
	for (long t = 0; t < NT; t++)
		pthread_create(&th[t], NULL, overlap_thread, (void *)t);
	for (int t = 0; t < NT; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_msg(r == NULL, "thread %d: a call failed (%ld)", t, (long)r);
	}
	unsigned n = atomic_load(&ov_n);
	struct ov_index *ix = calloc((OV_REGION + 65536) / OV_SECT, sizeof(*ix));
	uint64_t size = 0, nwrites = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct ov_io *w = &ov_log[i];
		if (!w->write)
			continue;
		nwrites++;
		size = MAX_SZ(size, w->off + w->len);
		for (uint64_t s = w->off / OV_SECT; s <= (w->off + w->len - 1) / OV_SECT; s++) {
			struct ov_index *x = &ix[s];
			if (x->n == x->cap) {
				x->cap = x->cap ? 2 * x->cap : 16;
				x->v = realloc(x->v, x->cap * sizeof(*x->v));
			}
			x->v[x->n++] = i;
		}
	}
	ck_assert_uint_gt(nwrites, NT * OV_OPS / 3);
	for (unsigned i = 0; i < n; i++) {
		const struct ov_io *r = &ov_log[i];
		for (uint64_t k = 0; !r->write && k < r->len; k++)
			if (!ov_byte_ok(ix, r->off + k, r->data[k], r->t0, r->t1))
				ck_abort_msg("thread %u read %u: byte %llu (%u) is no candidate write's", r->tid, r->seq,
					     (unsigned long long)(r->off + k), r->data[k]);
	}
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(ov_plain, &st), 0);
	ck_assert_uint_eq(st.size, size);
	ov_check_file(ov_plain, ix, size, "before remount");
	ck_assert_int_eq(dio_fsync(ov_plain), 0);
	dio_close(ov_conc);
	dio_close(ov_plain);
	dio_close(shared);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	shared = dio_open(vol, "shared", O_RDWR);
	struct dio_file *f = dio_open(vol, "ov", O_RDONLY);
	ov_check_file(f, ix, size, "after remount");
	dio_close(f);
	for (unsigned i = 0; i < n; i++)
		free(ov_log[i].data);
	for (unsigned s = 0; s < (OV_REGION + 65536) / OV_SECT; s++)
		free(ix[s].v);
	free(ix);
	free(ov_log);
}
END_TEST

static struct dio_vol *gvol;
static struct dio_file *gf[NT];

static void *fdatasyncer(void *arg)
{
	return (void *)(intptr_t)dio_fdatasync(gf[(intptr_t)arg]);
}

START_TEST(test_concurrent_fsyncs_share_journal_commits)
{
	/* Thread 0's commit is parked inside its journal write (the fault
	   backend's gate) while the other files get an extending write each
	   and their threads call fdatasync behind it.  Every record they
	   need is pending when the gate opens, so exactly one more journal
	   commit must carry all of them, and their flushes (20 ms each) must
	   be shared. */
	char *p = strdup(t_image_path("group"));
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	struct fault_cfg cfg = { .flush_delay_us = 20000 };
	fault_setup(&cfg);
	gvol = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(gvol);
	uint8_t *b = t_aligned(4096);
	for (long t = 0; t < NT; t++) {
		char name[16];
		snprintf(name, sizeof(name), "g%ld", t);
		gf[t] = dio_open(gvol, name, O_RDWR | O_CREAT);
		t_fill(b, 4096, (uint32_t)t, 0, 0);
		ck_assert_int_eq(dio_pwrite(gf[t], b, 4096, 0), 4096);
	}
	ck_assert_int_eq(dio_syncfs(gvol), 0);
	struct dio_counters c0, c1;
	dio_counters(gvol, &c0);
	pthread_t th[NT];
	t_fill(b, 4096, 0, 1, 4096);
	ck_assert_int_eq(dio_pwrite(gf[0], b, 4096, 4096), 4096);
	fault_gate_arm(DIO_BIO_WRITE);
	pthread_create(&th[0], NULL, fdatasyncer, (void *)(intptr_t)0);
	fault_gate_wait_parked();            /* thread 0 holds the commit */
	for (long t = 1; t < NT; t++) {
		t_fill(b, 4096, (uint32_t)t, 1, 4096);
		ck_assert_int_eq(dio_pwrite(gf[t], b, 4096, 4096), 4096);
		pthread_create(&th[t], NULL, fdatasyncer, (void *)t);
	}
	fault_gate_release();
	for (int t = 0; t < NT; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	dio_counters(gvol, &c1);
	uint64_t commits = c1.journal_commits - c0.journal_commits, flushes = c1.flushes - c0.flushes;
	fprintf(stderr, "group commit (%s): %d fdatasyncs of extending writes, %llu journal commits, %llu flushes\n",
		t_backend(), NT, (unsigned long long)commits, (unsigned long long)flushes);
	ck_assert_uint_eq(commits, 2);       /* thread 0's, then one for all the others */
	ck_assert_uint_le(flushes, NT - 1);  /* some flushes were shared */
	for (int t = 0; t < NT; t++)
		dio_close(gf[t]);
	ck_assert_int_eq(dio_umount(gvol), 0);
	gvol = t_mount(p);
	for (long t = 0; t < NT; t++) {
		char name[16];
		snprintf(name, sizeof(name), "g%ld", t);
		struct dio_file *f = dio_open(gvol, name, O_RDONLY);
		struct dio_stat st;
		ck_assert_int_eq(dio_fstat(f, &st), 0);
		ck_assert_uint_eq(st.size, 2 * 4096);
		ck_assert_int_eq(dio_pread(f, b, 4096, 4096), 4096);
		ck_assert_uint_eq(b[100], t_pat((uint32_t)t, 1, 4096 + 100));
		dio_close(f);
	}
	ck_assert_int_eq(dio_umount(gvol), 0);
	unlink(p);
	free(p);
	free(b);
}
END_TEST

/* ---- device contexts ---------------------------------------------------- */

#define NCW 4
static struct dio_vol *cw_vol;
static pthread_barrier_t cw_bar;

/* Write, sync and read back a file of its own on cw_vol; after the first
   round wait while the main thread remounts, then check the first round's
   file survived and do it again on the new mount. */
static int pat_differs(const uint8_t *b, size_t n, uint32_t fid, uint32_t wid)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != t_pat(fid, wid, i))
			return 1;
	return 0;
}

static void *ctx_worker(void *arg)
{
	long t = (long)arg;
	uint8_t *b = t_aligned(8192);
	intptr_t bad = 0;
	for (int round = 0; round < 2 && !bad; round++) {
		char name[16];
		snprintf(name, sizeof(name), "c%ld.%d", t, round);
		struct dio_file *f = dio_open(cw_vol, name, O_RDWR | O_CREAT);
		t_fill(b, 8192, (uint32_t)t, (uint32_t)round, 0);
		bad |= f == NULL || dio_pwrite(f, b, 8192, 0) != 8192 || dio_fdatasync(f) != 0;
		memset(b, 0, 8192);
		bad |= dio_pread(f, b, 8192, 0) != 8192 || pat_differs(b, 8192, (uint32_t)t, (uint32_t)round);
		dio_close(f);
		if (round == 0) {
			pthread_barrier_wait(&cw_bar);   /* main unmounts and mounts again */
			pthread_barrier_wait(&cw_bar);
			snprintf(name, sizeof(name), "c%ld.0", t);
			f = dio_open(cw_vol, name, O_RDONLY);
			bad |= f == NULL || dio_pread(f, b, 8192, 0) != 8192 || pat_differs(b, 8192, (uint32_t)t, 0);
			dio_close(f);
		}
	}
	free(b);
	return (void *)bad;
}

START_TEST(test_each_thread_submits_on_a_device_context_of_its_own)
{
	/* The fault backend notes the first thread to use each context and
	   counts any use by another.  Threads doing synchronous I/O must each
	   open one context per volume and never share it; a volume's close
	   closes the contexts of threads still running, which then open new
	   ones on the next mount; a thread's exit closes its contexts. */
	char *p = strdup(t_image_path("ctx"));
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	fault_setup(&(struct fault_cfg){ 0 });
	cw_vol = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(cw_vol);
	long o0 = fault_count(4);
	pthread_barrier_init(&cw_bar, NULL, NCW + 1);
	pthread_t th[NCW];
	for (long t = 0; t < NCW; t++)
		pthread_create(&th[t], NULL, ctx_worker, (void *)t);
	pthread_barrier_wait(&cw_bar);
	ck_assert_int_eq(fault_count(4), o0 + NCW);   /* one each */
	ck_assert_int_eq(fault_count(5), 0);
	ck_assert_int_eq(dio_umount(cw_vol), 0);
	ck_assert_int_eq(fault_count(5), fault_count(4));   /* the live threads' too */
	cw_vol = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(cw_vol);
	long o1 = fault_count(4), c1 = fault_count(5);
	pthread_barrier_wait(&cw_bar);
	for (int t = 0; t < NCW; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	ck_assert_int_eq(fault_count(4), o1 + NCW);   /* new ones on the new mount */
	ck_assert_int_eq(fault_count(5), c1 + NCW);   /* closed as their threads exited */
	ck_assert_int_eq(fault_count(6), 0);          /* never one context for two threads */
	ck_assert_int_eq(dio_umount(cw_vol), 0);
	ck_assert_int_eq(fault_count(5), fault_count(4));
	pthread_barrier_destroy(&cw_bar);
	unlink(p);
	free(p);
}
END_TEST

#define NPOOLW 72   /* more threads than a volume gives contexts of their own (64) */
static struct dio_file *pw_file;
static pthread_barrier_t pw_bar;

/* Write and read back block t of pw_file while every other worker is
   alive, so that the ones past the bound must share the pool. */
static void *pool_worker(void *arg)
{
	long t = (long)arg;
	uint8_t *b = t_aligned(4096);
	pthread_barrier_wait(&pw_bar);
	t_fill(b, 4096, 7, (uint32_t)t, (uint64_t)t * 4096);
	intptr_t bad = dio_pwrite(pw_file, b, 4096, (off_t)t * 4096) != 4096;
	memset(b, 0, 4096);
	bad |= dio_pread(pw_file, b, 4096, (off_t)t * 4096) != 4096;
	for (size_t i = 0; i < 4096 && !bad; i++)
		bad |= b[i] != t_pat(7, (uint32_t)t, (uint64_t)t * 4096 + i);
	pthread_barrier_wait(&pw_bar);   /* keep the context until all are done */
	free(b);
	return (void *)bad;
}

/* n pool_workers at once on pw_file; each must report success. */
static void run_pool_workers(int n)
{
	pthread_t th[NPOOLW];
	ck_assert_int_le(n, NPOOLW);
	pthread_barrier_init(&pw_bar, NULL, (unsigned)n);
	for (long t = 0; t < n; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, pool_worker, (void *)t), 0);
	for (int t = 0; t < n; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	pthread_barrier_destroy(&pw_bar);
}

/* After a remount, block t of "shared" holds worker t's bytes. */
static void check_pool_blocks(const char *p, int n)
{
	struct dio_vol *v = t_mount(p);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "shared", O_RDONLY);
	uint8_t *b = t_aligned(4096);
	for (long t = 0; t < n; t++) {
		ck_assert_int_eq(dio_pread(f, b, 4096, (off_t)t * 4096), 4096);
		for (size_t i = 0; i < 4096; i += 511)
			ck_assert_uint_eq(b[i], t_pat(7, (uint32_t)t, (uint64_t)t * 4096 + i));
	}
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
}

START_TEST(test_threads_beyond_the_context_bound_share_the_pool)
{
	char *p = strdup(t_image_path("pool"));
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	fault_setup(&(struct fault_cfg){ 0 });
	struct dio_vol *v = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	pw_file = dio_open(v, "shared", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(pw_file);
	ck_assert_int_eq(dio_fallocate(pw_file, 0, 0, NPOOLW * 4096), 0);
	run_pool_workers(NPOOLW);
	/* at most 64 of their own plus a pool of at most 8, and the pool was
	   really shared (more threads than contexts, all alive at once) */
	ck_assert_int_le(fault_count(4), 64 + 8);
	ck_assert_int_gt(fault_count(6), 0);
	dio_close(pw_file);
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(fault_count(5), fault_count(4));
	check_pool_blocks(p, NPOOLW);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(test_threads_share_the_pool_when_the_backend_opens_no_more_contexts)
{
	/* The backend refuses every context past the mount's and the main
	   thread's (as io_setup does at fs.aio-max-nr): the workers' I/O must
	   still work, through the pool. */
	char *p = strdup(t_image_path("nomore"));
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	fault_setup(&(struct fault_cfg){ .max_contexts = 2 });
	struct dio_vol *v = dio_mount(p, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	pw_file = dio_open(v, "shared", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(pw_file);
	ck_assert_int_eq(fault_count(4), 2);   /* the pool's first, the main thread's */
	enum { N = 6 };
	run_pool_workers(N);
	ck_assert_int_eq(fault_count(4), 2);   /* nothing more could open */
	ck_assert_int_gt(fault_count(6), 0);   /* so the workers shared one */
	/* each worker asked once for its own, the pool once for a second
	   member; not again on every call */
	ck_assert_int_le(fault_count(7), N + 1);
	ck_assert_int_eq(dio_fsync(pw_file), 0);
	dio_close(pw_file);
	ck_assert_int_eq(dio_umount(v), 0);
	check_pool_blocks(p, N);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(test_volume_closed_under_live_threads_mounts_again_at_once)
{
	/* The same on the run's own backend, whose thread contexts are bound
	   to their threads (io_uring: SINGLE_ISSUER|DEFER_TASKRUN): the main
	   thread closes the workers' contexts while they live, and the image
	   (or device) must mount again at once and serve them. */
	char *p = strdup(t_image_path("ctxlive"));
	unlink(p);
	ck_assert_int_eq(dio_mkfs(p, &(struct dio_mkfs_opts){ .size = 32 << 20 }), 0);
	for (int round = 0; round < 3; round++) {
		cw_vol = t_mount(p);
		ck_assert_ptr_nonnull(cw_vol);
		pthread_barrier_init(&cw_bar, NULL, NCW + 1);
		pthread_t th[NCW];
		for (long t = 0; t < NCW; t++)
			pthread_create(&th[t], NULL, ctx_worker, (void *)t);
		pthread_barrier_wait(&cw_bar);
		ck_assert_int_eq(dio_umount(cw_vol), 0);
		cw_vol = t_mount(p);
		ck_assert_msg(cw_vol != NULL, "mount right after closing live threads' contexts: %s", strerror(errno));
		pthread_barrier_wait(&cw_bar);
		for (int t = 0; t < NCW; t++) {
			void *r;
			pthread_join(th[t], &r);
			ck_assert_ptr_null(r);
		}
		ck_assert_int_eq(dio_umount(cw_vol), 0);
		pthread_barrier_destroy(&cw_bar);
	}
	unlink(p);
	free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("concurrency");
	TCase *tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_disjoint_writers_in_parallel_keep_their_data);
	tcase_add_loop_test(tc, test_subblock_writers_of_one_block_keep_each_others_bytes, 0, 2);
	tcase_add_test(tc, test_overlapping_writes_are_atomic_against_reads);
	tcase_add_test(tc, test_parallel_extending_writers_with_fdatasync);
	tcase_add_test(tc, test_namespace_under_concurrent_changes);
	tcase_add_test(tc, test_threads_with_every_operation_match_their_models_after_remount);
	tcase_add_test(tc, test_threads_overlapping_on_one_file_see_only_candidate_bytes);
	suite_add_tcase(s, tc);
	TCase *g = tcase_create("group-commit");
	tcase_set_timeout(g, 600);
	tcase_add_test(g, test_concurrent_fsyncs_share_journal_commits);
	tcase_add_test(g, test_each_thread_submits_on_a_device_context_of_its_own);
	tcase_add_test(g, test_threads_beyond_the_context_bound_share_the_pool);
	tcase_add_test(g, test_threads_share_the_pool_when_the_backend_opens_no_more_contexts);
	tcase_add_test(g, test_volume_closed_under_live_threads_mounts_again_at_once);
	suite_add_tcase(s, g);
	return t_run(s);
}
