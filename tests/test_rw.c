/*
 * Reads and writes against a reference copy in memory: aligned and
 * misaligned, odd buffers, odd offsets, lengths across extents and EOF;
 * the zero-copy path and the one-I/O-per-extent rule through counters.
 */
#include "helpers.h"
#include <dirent.h>
#include <pthread.h>
#include <sys/vfs.h>

#define FSZ (3u << 20)

static struct dio_vol *vol;
static char *img;
static uint8_t *ref;

static void setup(void)
{
	vol = t_fresh("rw", 64, &img);
	ref = calloc(1, FSZ + 65536);
}

static void teardown(void)
{
	ck_assert_int_eq(dio_umount(vol), 0);
	unlink(img);
	free(img);
	free(ref);
}

static void verify(struct dio_file *f, uint64_t size)
{
	uint8_t *buf = t_aligned(FSZ);
	ssize_t n = dio_pread(f, buf, FSZ, 0);
	ck_assert_int_eq(n, (ssize_t)size);
	for (uint64_t i = 0; i < size; i++)
		if (buf[i] != ref[i])
			ck_abort_msg("byte %llu: got %u want %u", (unsigned long long)i, buf[i], ref[i]);
	free(buf);
}

START_TEST(test_aligned_pwritev_over_one_extent_is_one_device_io)
{
	struct dio_file *f = dio_open(vol, "a", O_RDWR | O_CREAT);
	ck_assert_ptr_nonnull(f);
	uint8_t *buf = t_aligned(1 << 20);
	t_fill(buf, 1 << 20, 1, 1, 0);
	struct iovec iov[256];
	for (int i = 0; i < 256; i++)
		iov[i] = (struct iovec){ buf + i * 4096, 4096 };
	ck_assert_int_eq(dio_pwritev(f, iov, 256, 0), 1 << 20);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.nextents, 1);
	struct dio_counters c0, c1;
	dio_counters(vol, &c0);
	ck_assert_int_eq(dio_pwritev(f, iov, 256, 0), 1 << 20);
	dio_counters(vol, &c1);
	ck_assert_uint_eq(c1.device_ios - c0.device_ios, 1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	ck_assert_uint_eq(c1.writes - c0.writes, 1);
	ck_assert_uint_eq(c1.bytes_written - c0.bytes_written, 1 << 20);
	dio_counters(vol, &c0);
	ck_assert_int_eq(dio_preadv(f, iov, 256, 0), 1 << 20);
	dio_counters(vol, &c1);
	ck_assert_uint_eq(c1.device_ios - c0.device_ios, 1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	for (size_t i = 0; i < (1 << 20); i++)
		ck_assert_uint_eq(buf[i], t_pat(1, 1, i));
	dio_close(f);
	free(buf);
}
END_TEST

START_TEST(test_aligned_io_moves_the_callers_buffer_without_bounce)
{
	struct dio_file *f = dio_open(vol, "a", O_RDWR | O_CREAT);
	struct dio_info info;
	ck_assert_int_eq(dio_info(f, &info), 0);
	uint8_t *buf = t_aligned(65536);
	t_fill(buf, 65536, 2, 1, 0);
	struct dio_counters c0, c1;
	dio_counters(vol, &c0);
	ck_assert_int_eq(dio_pwrite(f, buf, 65536, 0), 65536);
	ck_assert_int_eq(dio_pread(f, buf, 65536, 0), 65536);
	/* offset_align-aligned, not block-aligned overwrite of written blocks */
	ck_assert_int_eq(dio_pwrite(f, buf, info.offset_align, info.offset_align), (ssize_t)info.offset_align);
	dio_counters(vol, &c1);
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	ck_assert_uint_eq(c1.rmw_blocks, c0.rmw_blocks);
	dio_close(f);
	free(buf);
}
END_TEST

START_TEST(test_misaligned_requests_match_reference)
{
	t_seed(1234 + (uint64_t)_i);
	struct dio_file *f = dio_open(vol, "m", O_RDWR | O_CREAT);
	uint8_t *src = malloc(300000 + 16), *dst = malloc(300000 + 16);
	uint64_t size = 0;
	for (int op = 0; op < 300; op++) {
		uint64_t off = t_rand() % (FSZ - 300000);
		size_t len = 1 + t_rand() % (op % 10 == 0 ? 300000 : 9000);
		unsigned shift = t_rand() % 16;    /* odd buffer addresses */
		if (t_rand() % 2) {
			t_fill(src + shift, len, 3, (uint32_t)op, off);
			ck_assert_int_eq(dio_pwrite(f, src + shift, len, (off_t)off), (ssize_t)len);
			memcpy(ref + off, src + shift, len);
			if (off + len > size)
				size = off + len;
		} else {
			ssize_t want = off >= size ? 0 : (ssize_t)MIN_SZ(len, size - off);
			ssize_t n = dio_pread(f, dst + shift, len, (off_t)off);
			ck_assert_int_eq(n, want);
			ck_assert_msg(!memcmp(dst + shift, ref + off, (size_t)want), "read at %llu+%zu differs",
				      (unsigned long long)off, len);
		}
	}
	verify(f, size);
	dio_close(f);
	free(src);
	free(dst);
}
END_TEST

START_TEST(test_vectored_misaligned_segments_across_extents)
{
	/* two files preallocated in turn, block by block, so each one's
	   blocks are not contiguous (appends alone would each get a run of
	   clean blocks of their own) */
	struct dio_file *a = dio_open(vol, "x", O_RDWR | O_CREAT);
	struct dio_file *b = dio_open(vol, "y", O_RDWR | O_CREAT);
	uint8_t *blk = t_aligned(4096);
	for (int i = 0; i < 64; i++) {
		ck_assert_int_eq(dio_fallocate(a, 0, i * 4096, 4096), 0);
		ck_assert_int_eq(dio_fallocate(b, 0, i * 4096, 4096), 0);
	}
	for (int i = 0; i < 64; i++) {
		t_fill(blk, 4096, 4, 0, (uint64_t)i * 4096);
		ck_assert_int_eq(dio_pwrite(a, blk, 4096, i * 4096), 4096);
		memcpy(ref + i * 4096, blk, 4096);
		ck_assert_int_eq(dio_pwrite(b, blk, 4096, i * 4096), 4096);
	}
	struct dio_stat st;
	dio_fstat(a, &st);
	ck_assert_uint_gt(st.nextents, 1);
	/* misaligned vector write spanning many extents and EOF */
	uint8_t *src = malloc(200000);
	t_fill(src, 200000, 4, 1, 1000);
	struct iovec iov[5] = { { src, 7 }, { src + 7, 4096 }, { src + 4103, 100000 }, { src + 104103, 1 },
				{ src + 104104, 95896 } };
	ck_assert_int_eq(dio_pwritev(a, iov, 5, 250000), 200000);
	memcpy(ref + 250000, src, 200000);
	uint8_t *dst = malloc(200000);
	struct iovec riov[3] = { { dst, 3 }, { dst + 3, 150000 }, { dst + 150003, 49997 } };
	ck_assert_int_eq(dio_preadv(a, riov, 3, 250000), 200000);
	ck_assert(!memcmp(dst, src, 200000));
	verify(a, 450000);
	dio_close(a);
	dio_close(b);
	free(src);
	free(dst);
	free(blk);
}
END_TEST

START_TEST(test_reads_stop_at_eof)
{
	struct dio_file *f = dio_open(vol, "eof", O_RDWR | O_CREAT);
	uint8_t *buf = t_aligned(16384);
	t_fill(buf, 100, 5, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, buf, 100, 0), 100);
	memset(buf, 0xAA, 16384);
	ck_assert_int_eq(dio_pread(f, buf, 16384, 0), 100);    /* aligned read at EOF */
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(buf[i], t_pat(5, 1, (uint64_t)i));
	ck_assert_int_eq(dio_pread(f, buf, 4096, 4096), 0);
	ck_assert_int_eq(dio_pread(f, buf + 1, 50, 90), 10);    /* misaligned read at EOF */
	ck_assert_int_eq(dio_pread(f, buf, 10, 1 << 30), 0);
	ck_assert_int_eq(dio_pread(f, buf, 0, 0), 0);
	dio_close(f);
	free(buf);
}
END_TEST

START_TEST(test_large_write_larger_than_bounce_buffer)
{
	struct dio_file *f = dio_open(vol, "big", O_RDWR | O_CREAT);
	size_t n = (5u << 20) / 2 + 333;
	uint8_t *src = malloc(n + 1), *dst = malloc(n + 1);
	t_fill(src + 1, n, 6, 1, 777);
	ck_assert_int_eq(dio_pwrite(f, src + 1, n, 777), (ssize_t)n);
	ck_assert_int_eq(dio_pread(f, dst + 1, n, 777), (ssize_t)n);
	ck_assert(!memcmp(src + 1, dst + 1, n));
	dio_close(f);
	free(src);
	free(dst);
}
END_TEST

START_TEST(test_files_appended_in_turn_each_stay_contiguous)
{
	/* small appends to three files in turn, as three logs would do */
	struct dio_file *f[3];
	static const char *names[3] = { "log0", "log1", "log2" };
	uint8_t *blk = t_aligned(4096);
	for (int k = 0; k < 3; k++)
		f[k] = dio_open(vol, names[k], O_RDWR | O_CREAT);
	for (int i = 0; i < 40; i++)
		for (int k = 0; k < 3; k++) {
			t_fill(blk, 4096, (uint32_t)k + 10, 0, (uint64_t)i * 4096);
			ck_assert_int_eq(dio_pwrite(f[k], blk, 4096, (off_t)i * 4096), 4096);
		}
	for (int k = 0; k < 3; k++) {
		struct dio_stat st;
		ck_assert_int_eq(dio_fstat(f[k], &st), 0);
		ck_assert_uint_eq(st.size, 40 * 4096);
		ck_assert_msg(st.nextents == 1, "%s has %llu extents", names[k], (unsigned long long)st.nextents);
		for (int i = 0; i < 40; i++) {
			ck_assert_int_eq(dio_pread(f[k], blk, 4096, (off_t)i * 4096), 4096);
			ck_assert_uint_eq(blk[4095], t_pat((uint32_t)k + 10, 0, (uint64_t)i * 4096 + 4095));
		}
		dio_close(f[k]);
	}
	free(blk);
}
END_TEST

/* A write that joins two extents into one shrinks the metadata a
   checkpoint holds; on 32-bit targets that shrink was once computed in a
   size_t and wrapped into 4 GiB of phantom metadata, and the next
   allocation failed with ENOSPC on an empty volume. */
START_TEST(test_a_write_that_joins_extents_leaves_room_for_more)
{
	struct dio_file *f = dio_open(vol, "join", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(4096);
	t_fill(b, 4096, 7, 1, 0);
	for (int round = 0; round < 20; round++) {
		off_t base = (off_t)round * 5 * 4096;
		/* three preallocated blocks (contiguous), the outer two written:
		   written, unwritten, written; then the middle one joins them */
		ck_assert_int_eq(dio_fallocate(f, 0, base, 3 * 4096), 0);
		ck_assert_int_eq(dio_pwrite(f, b, 4096, base), 4096);
		ck_assert_int_eq(dio_pwrite(f, b, 4096, base + 2 * 4096), 4096);
		struct dio_stat st;
		dio_fstat(f, &st);
		uint64_t before = st.nextents;
		ck_assert_int_eq(dio_pwrite(f, b, 4096, base + 4096), 4096);
		dio_fstat(f, &st);
		ck_assert_uint_eq(st.nextents, before - 2);
		/* and the volume still allocates */
		ck_assert_int_eq(dio_pwrite(f, b, 4096, base + 4 * 4096), 4096);
	}
	ck_assert_int_eq(dio_fsync(f), 0);
	ck_assert_int_eq(dio_fallocate(f, 0, 1 << 20, 1 << 20), 0);
	dio_close(f);
	free(b);
}
END_TEST

/* Threads of this process whose name starts with prefix. */
static int threads_named(const char *prefix)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *fp = fopen(path, "r");
		if (!fp)
			continue;
		if (fgets(comm, sizeof(comm), fp) && !strncmp(comm, prefix, strlen(prefix)))
			n++;
		fclose(fp);
	}
	closedir(d);
	return n;
}

/*
 * io_uring cannot start direct I/O on tmpfs without blocking, so it hands
 * each one to an io-wq worker thread ("iou-wrk-PID") and the caller
 * sleeps until the worker wakes it: ten times the cost of the copy.  The
 * uring backend's synchronous calls on such a file are the caller's own
 * system calls, so no worker ever starts.
 */
START_TEST(test_synchronous_io_on_tmpfs_starts_no_io_uring_worker)
{
	struct statfs sf;
	ck_assert_int_eq(statfs(img, &sf), 0);
	if (strcmp(t_backend(), "uring") || (unsigned long)sf.f_type != 0x01021994ul) {
		fprintf(stderr, "not checked: backend %s, image not on tmpfs or not io_uring\n", t_backend());
		return;
	}
	struct dio_file *f = dio_open(vol, "t", O_RDWR | O_CREAT);
	uint8_t *b = t_aligned(65536);
	t_fill(b, 65536, 1, 1, 0);
	for (int i = 0; i < 64; i++) {
		ck_assert_int_eq(dio_pwrite(f, b, 65536, (off_t)i * 65536), 65536);          /* zero copy */
		ck_assert_int_eq(dio_pwrite(f, b + 1, 5000, (off_t)i * 65536 + 77), 5000);   /* bounced */
		ck_assert_int_eq(dio_pread(f, b, 65536, (off_t)i * 65536), 65536);
	}
	ck_assert_int_eq(dio_fsync(f), 0);
	ck_assert_int_eq(threads_named("iou-wrk"), 0);
	/* a queue keeps the ring (it may punt: that is asynchronous) */
	dio_close(f);
	free(b);
}
END_TEST

/*
 * The synchronous calls run on a 64 KiB thread stack (a fiber's size),
 * filled with a pattern first; what they overwrote below the thread's
 * own entry frame is their stack use.  Every kind of request: aligned
 * overwrite (the fast path), aligned into a hole (allocation), aligned
 * with zero padding, misaligned (bounce, read-modify-write), vectored
 * with many segments over several extents, and the syncs.  Under
 * AddressSanitizer frames are larger: there the calls only have to fit
 * (ThreadSanitizer wants bigger stacks than a fiber's: skipped).
 */
#define SMALL_STACK (64 << 10)
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#define MAX_SZ(a, b) ((a) > (b) ? (a) : (b))
#define PAT 0xA5

struct stack_run { struct dio_file *f; uint8_t *buf, *stack; bool stack_is_mine; int call; uintptr_t entry; int err; struct iovec iov[100]; };

#define NCALLS 11
static const char *const call_name[NCALLS] = {
	"allocating pwrite", "in-place pwrite", "padded pwrite", "bounced pwrite", "read-modify-write pwrite",
	"pwritev of 100 segments", "pread", "misaligned pread", "preadv of 100 segments", "fdatasync", "fsync",
};

/* Paint the unused stack below this frame again (a loop, not memset: no
   call frame below the painting). */
static __attribute__((noinline)) void paint_below(uint8_t *base)
{
	volatile char mark;
	uintptr_t top = (uintptr_t)&mark - 512;
	for (volatile uint8_t *p = base; (uintptr_t)p < top; p++)
		*p = PAT;
}

static void *small_stack_call(void *arg)
{
	struct stack_run *r = arg;
	volatile char here;
	r->entry = (uintptr_t)&here;
	struct dio_file *f = r->f;
	uint8_t *b = r->buf;
	/* a thread's first malloc makes its arena, and glibc reads the CPU
	   count for that through a 4 KiB stack buffer: the C library's
	   cost, once per thread, whoever calls malloc first */
	free(malloc(64));
	if (r->stack_is_mine)
		paint_below(r->stack);
	ssize_t want = 0, got = -1;
	switch (r->call) {
	case 0: want = 65536; got = dio_pwrite(f, b, 65536, 0); break;
	case 1: want = 65536; got = dio_pwrite(f, b, 65536, 0); break;
	case 2: want = 512; got = dio_pwrite(f, b, 512, 1 << 20); break;
	case 3: want = 5000; got = dio_pwrite(f, b + 1, 5000, 3000); break;
	case 4: want = 4096; got = dio_pwrite(f, b, 4096, 8192 + 100); break;
	case 5: want = 100 * 4096; got = dio_pwritev(f, r->iov, 100, 2 << 20); break;
	case 6: want = 65536; got = dio_pread(f, b, 65536, 0); break;
	case 7: want = 5000; got = dio_pread(f, b + 1, 5000, 3000); break;
	case 8: want = 100 * 4096; got = dio_preadv(f, r->iov, 100, 2 << 20); break;
	case 9: got = dio_fdatasync(f); break;
	case 10: got = dio_fsync(f); break;
	}
	r->err = got == want ? 0 : errno ? errno : EIO;
	return NULL;
}

/* A file whose range [2 MiB, 2.5 MiB) is 9 extents: written, committed,
   4 blocks punched and written again (a freed block is not reused until
   a commit), so the vectored calls cross several. */
static struct dio_file *stack_file(const char *name, const uint8_t *data)
{
	struct dio_file *f = dio_open(vol, name, O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_pwrite(f, data, 512 << 10, 2 << 20), 512 << 10);
	ck_assert_int_eq(dio_fsync(f), 0);
	for (int k = 1; k <= 4; k++) {
		off_t at = (2 << 20) + k * (100 << 10);
		ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, at, 4096), 0);
		ck_assert_int_eq(dio_pwrite(f, data, 4096, at), 4096);
	}
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_ge(st.nextents, 9);
	return f;
}

START_TEST(test_synchronous_calls_fit_a_small_stack)
{
#ifdef T_TSAN
	fprintf(stderr, "SKIP %s: ThreadSanitizer needs thread stacks of 128 KiB or more\n", __func__);
	return;
#endif
	uint8_t *big = t_aligned(1 << 20);
	t_fill(big, 1 << 20, 3, 1, 0);
	/* 64 KiB, or the system's least (128 KiB on aarch64 with 64 KiB
	   pages): only what is used is measured */
	long least = sysconf(_SC_THREAD_STACK_MIN);
	size_t ss = MAX_SZ((size_t)SMALL_STACK, least > 0 ? (size_t)least : 0);
	uint8_t *stack = t_aligned(ss);
	pthread_attr_t a;
	pthread_attr_init(&a);
	ck_assert_int_eq(pthread_attr_setstack(&a, stack, ss), 0);
	static struct stack_run r;
	for (int i = 0; i < 100; i++)
		r.iov[i] = (struct iovec){ big + i * 4096, 4096 };
	/* pass 0 on an ordinary thread and a file of its own: the first call
	   of each C library function binds its symbol, through the dynamic
	   linker's trampoline, which saves every vector register on the
	   stack (3 KiB); once per process, not libdio's */
	size_t most = 0;
	for (int pass = 0; pass < 2; pass++) {
		r.f = stack_file(pass ? "stack" : "warm", big);
		r.buf = big;
		r.stack = stack;
		r.stack_is_mine = pass;
		for (int call = 0; call < NCALLS; call++) {
			memset(stack, PAT, ss);
			r.call = call;
			pthread_t th;
			ck_assert_int_eq(pthread_create(&th, pass ? &a : NULL, small_stack_call, &r), 0);
			pthread_join(th, NULL);
			ck_assert_msg(r.err == 0, "%s failed: %s", call_name[call], strerror(r.err));
			if (!pass)
				continue;
			size_t low = 0;
			while (low < ss && stack[low] == PAT)
				low++;
			size_t used = (size_t)(r.entry - (uintptr_t)(stack + low));
			fprintf(stderr, "%s: %zu bytes of stack\n", call_name[call], used);
			most = MAX_SZ(most, used);
		}
		dio_close(r.f);
	}
#ifdef T_SANITIZED
	ck_assert_uint_lt(most, ss);
#else
	/* 4 KiB for libdio's I/O path, 512 bytes for the C library's
	   system call wrappers; s390x's ABI gives every frame a 160-byte
	   register save area of the callee's (a dozen frames deep: 2 KiB) */
#ifdef __s390x__
	size_t bound = 6144;
#else
	size_t bound = 4608;
#endif
	/* on NBD, libnbd's own frames (its state machine, poll, send)
	   come on top: libdio(7) says 8 KiB there */
	if (t_nbd())
		bound = 8192;
	ck_assert_msg(most <= bound, "synchronous calls used %zu bytes of stack", most);
#endif
	pthread_attr_destroy(&a);
	free(stack);
	free(big);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rw");
	TCase *tc = tcase_create("rw");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_aligned_pwritev_over_one_extent_is_one_device_io);
	tcase_add_test(tc, test_aligned_io_moves_the_callers_buffer_without_bounce);
	tcase_add_loop_test(tc, test_misaligned_requests_match_reference, 0, 3);
	tcase_add_test(tc, test_vectored_misaligned_segments_across_extents);
	tcase_add_test(tc, test_reads_stop_at_eof);
	tcase_add_test(tc, test_files_appended_in_turn_each_stay_contiguous);
	tcase_add_test(tc, test_large_write_larger_than_bounce_buffer);
	tcase_add_test(tc, test_a_write_that_joins_extents_leaves_room_for_more);
	tcase_add_test(tc, test_synchronous_io_on_tmpfs_starts_no_io_uring_worker);
	tcase_add_test(tc, test_synchronous_calls_fit_a_small_stack);
	suite_add_tcase(s, tc);
	return t_run(s);
}
