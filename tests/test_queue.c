/*
 * Async queues: completions carry user_data and res (bytes or -errno);
 * misaligned, extending and fsync requests behave as the synchronous
 * calls; a full queue refuses more until reaped; queues of several
 * threads work on one volume at once.
 */
#include "helpers.h"
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>

static struct dio_vol *vol;
static char *img;

static void setup(void) { vol = t_fresh("queue", 64, &img); }

static void teardown(void)
{
	ck_assert_int_eq(dio_umount(vol), 0);
	unlink(img);
	free(img);
}

START_TEST(test_completions_carry_user_data_and_bytes)
{
	struct dio_file *f = dio_open(vol, "q", O_RDWR | O_CREAT);
	struct dio_queue *q = dio_queue_create(vol, 64);
	ck_assert_ptr_nonnull(q);
	uint8_t *buf = t_aligned(32 * 4096), *rd = t_aligned(32 * 4096);
	t_fill(buf, 32 * 4096, 1, 1, 0);
	struct dio_req w[32];
	for (int i = 0; i < 32; i++)
		w[i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = buf + i * 4096, .len = 4096,
					 .offset = i * 4096, .user_data = 1000 + (uint64_t)i };
	ck_assert_int_eq(dio_submit(q, w, 32), 32);
	struct dio_cqe c[64];
	int got = 0;
	while (got < 32) {
		int n = dio_reap(q, c + got, 1, 64 - (unsigned)got, -1);
		ck_assert_int_gt(n, 0);
		got += n;
	}
	uint64_t seen = 0;
	for (int i = 0; i < 32; i++) {
		ck_assert_int_eq(c[i].res, 4096);
		ck_assert_uint_ge(c[i].user_data, 1000);
		ck_assert_uint_lt(c[i].user_data, 1032);
		seen |= 1ull << (c[i].user_data - 1000);
	}
	ck_assert_uint_eq(seen, 0xffffffffull);
	/* vectored read back plus an fsync */
	struct iovec iov[2] = { { rd, 16 * 4096 }, { rd + 16 * 4096, 16 * 4096 } };
	struct dio_req r[2] = { { .op = DIO_OP_READV, .file = f, .iov = iov, .iovcnt = 2, .offset = 0, .user_data = 7 },
				{ .op = DIO_OP_FSYNC, .file = f, .user_data = 8 } };
	ck_assert_int_eq(dio_submit(q, r, 2), 2);
	ck_assert_int_eq(dio_reap(q, c, 2, 2, -1), 2);
	ck_assert_uint_eq(c[0].user_data, 7);
	ck_assert_int_eq(c[0].res, 32 * 4096);
	ck_assert_uint_eq(c[1].user_data, 8);
	ck_assert_int_eq(c[1].res, 0);
	ck_assert(!memcmp(buf, rd, 32 * 4096));
	ck_assert_int_eq(dio_reap(q, c, 0, 8, 0), 0);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_uint_eq(st.size, 32 * 4096);
	ck_assert_uint_eq(st.allocated, 32 * 4096);
	dio_queue_destroy(q);
	dio_close(f);
	/* the extending writes (allocated, then converted at completion) and
	   their sizes were made durable by the FSYNC op */
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	f = dio_open(vol, "q", O_RDONLY);
	memset(rd, 0, 32 * 4096);
	ck_assert_int_eq(dio_pread(f, rd, 32 * 4096, 0), 32 * 4096);
	ck_assert(!memcmp(buf, rd, 32 * 4096));
	dio_close(f);
	free(buf);
	free(rd);
}
END_TEST

START_TEST(test_errors_come_back_as_negative_errno)
{
	struct dio_file *ro = dio_open(vol, "e", O_RDONLY | O_CREAT);
	struct dio_file *st = dio_open(vol, "e", O_RDWR | DIO_O_STRICT);
	struct dio_queue *q = dio_queue_create(vol, 8);
	char b[8] = "abcdefg";
	struct dio_req r[5] = {
		{ .op = DIO_OP_WRITE, .file = ro, .buf = b, .len = 8, .user_data = 1 },
		{ .op = DIO_OP_WRITE, .file = st, .buf = b, .len = 7, .offset = 3, .user_data = 2 },
		{ .op = DIO_OP_READ, .file = st, .buf = b, .len = 8, .offset = -1, .user_data = 3 },
		{ .op = 99, .file = st, .user_data = 4 },
		{ .op = DIO_OP_READ, .file = NULL, .buf = b, .len = 8, .user_data = 5 },
	};
	ck_assert_int_eq(dio_submit(q, r, 5), 5);
	struct dio_cqe c[5];
	ck_assert_int_eq(dio_reap(q, c, 5, 5, -1), 5);
	ssize_t want[5] = { -EBADF, -EINVAL, -EINVAL, -EINVAL, -EBADF };
	for (int i = 0; i < 5; i++) {
		ck_assert_uint_eq(c[i].user_data, (uint64_t)i + 1);
		ck_assert_int_eq(c[i].res, want[i]);
	}
	ck_assert_ptr_null(dio_queue_create(vol, 0));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_reap(q, c, 3, 2, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	dio_queue_destroy(q);
	dio_close(ro);
	dio_close(st);
}
END_TEST

START_TEST(test_full_queue_takes_only_what_fits)
{
	struct dio_file *f = dio_open(vol, "full", O_RDWR | O_CREAT);
	struct dio_queue *q = dio_queue_create(vol, 4);
	uint8_t *buf = t_aligned(4096);
	struct dio_req r[6];
	for (int i = 0; i < 6; i++)
		r[i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = buf, .len = 4096,
					 .offset = i * 4096, .user_data = (uint64_t)i };
	ck_assert_int_eq(dio_submit(q, r, 6), 4);
	ck_assert_int_eq(dio_submit(q, r + 4, 2), -1);
	ck_assert_int_eq(errno, EAGAIN);
	struct dio_cqe c[4];
	ck_assert_int_eq(dio_reap(q, c, 1, 1, -1), 1);
	ck_assert_uint_lt(c[0].user_data, 4);
	uint64_t first = c[0].user_data;
	ck_assert_int_eq(dio_submit(q, r + 4, 2), 1);
	ck_assert_int_eq(dio_reap(q, c, 4, 4, -1), 4);
	uint64_t seen = 1ull << first;   /* completions may come back in any order */
	for (int i = 0; i < 4; i++)
		seen |= 1ull << c[i].user_data;
	ck_assert_uint_eq(seen, 0x1f);
	/* umount waits for the queue to go */
	ck_assert_int_eq(dio_close(f), 0);
	ck_assert_int_eq(dio_umount(vol), -1);
	ck_assert_int_eq(errno, EBUSY);
	dio_queue_destroy(q);
	free(buf);
}
END_TEST

START_TEST(test_misaligned_and_extending_requests_through_a_queue)
{
	struct dio_file *f = dio_open(vol, "m", O_RDWR | O_CREAT);
	struct dio_queue *q = dio_queue_create(vol, 16);
	uint8_t src[3000], dst[3000];
	t_fill(src, sizeof(src), 2, 1, 12345);
	struct dio_req r[3] = {
		{ .op = DIO_OP_WRITE, .file = f, .buf = src, .len = sizeof(src), .offset = 12345, .user_data = 1 },
		{ .op = DIO_OP_FDATASYNC, .file = f, .user_data = 2 },
		{ .op = DIO_OP_READ, .file = f, .buf = dst, .len = sizeof(dst), .offset = 12345, .user_data = 3 },
	};
	struct dio_counters c0, c1;
	dio_counters(vol, &c0);
	ck_assert_int_eq(dio_submit(q, r, 3), 3);
	struct dio_cqe c[3];
	ck_assert_int_eq(dio_reap(q, c, 3, 3, -1), 3);
	dio_counters(vol, &c1);
	ck_assert_int_eq(c[0].res, (ssize_t)sizeof(src));
	ck_assert_int_eq(c[1].res, 0);
	ck_assert_int_eq(c[2].res, (ssize_t)sizeof(dst));
	ck_assert(!memcmp(src, dst, sizeof(src)));
	ck_assert_uint_eq(c1.bounced - c0.bounced, 2);
	struct dio_stat st;
	dio_fstat(f, &st);
	ck_assert_uint_eq(st.size, 12345 + sizeof(src));
	dio_queue_destroy(q);
	dio_close(f);
	/* durable: survives a remount */
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	f = dio_open(vol, "m", O_RDONLY);
	ck_assert_int_eq(dio_pread(f, dst, sizeof(dst), 12345), (ssize_t)sizeof(dst));
	ck_assert(!memcmp(src, dst, sizeof(src)));
	dio_close(f);
}
END_TEST

static void *queue_thread(void *arg)
{
	long t = (long)arg;
	char name[16];
	snprintf(name, sizeof(name), "t%ld", t);
	struct dio_file *f = dio_open(vol, name, O_RDWR | O_CREAT);
	struct dio_queue *q = dio_queue_create(vol, 32);
	uint8_t *buf = t_aligned(32 * 4096);
	for (int round = 0; round < 20; round++) {
		struct dio_req r[32];
		t_fill(buf, 32 * 4096, (uint32_t)t, (uint32_t)round, 0);
		for (int i = 0; i < 32; i++)
			r[i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = buf + i * 4096, .len = 4096,
						 .offset = i * 4096, .user_data = (uint64_t)i };
		if (dio_submit(q, r, 32) != 32)
			return (void *)1;
		struct dio_cqe c[32];
		if (dio_reap(q, c, 32, 32, -1) != 32)
			return (void *)2;
		for (int i = 0; i < 32; i++)
			if (c[i].res != 4096)
				return (void *)3;
	}
	uint8_t *rd = t_aligned(32 * 4096);
	if (dio_pread(f, rd, 32 * 4096, 0) != 32 * 4096 || memcmp(rd, buf, 32 * 4096))
		return (void *)4;
	dio_queue_destroy(q);
	dio_close(f);
	free(buf);
	free(rd);
	return NULL;
}

START_TEST(test_queues_of_several_threads_share_a_volume)
{
	pthread_t th[4];
	for (long t = 0; t < 4; t++)
		pthread_create(&th[t], NULL, queue_thread, (void *)t);
	for (int t = 0; t < 4; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
}
END_TEST

START_TEST(test_many_aligned_requests_in_flight)
{
	struct dio_file *f = dio_open(vol, "deep", O_RDWR | O_CREAT);
	size_t n = 256, bs = 4096;
	uint8_t *buf = t_aligned(n * bs), *rd = t_aligned(n * bs);
	t_fill(buf, n * bs, 3, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, buf, n * bs, 0), (ssize_t)(n * bs));   /* lay down */
	struct dio_queue *q = dio_queue_create(vol, 32);
	t_fill(buf, n * bs, 3, 2, 0);
	struct dio_counters c0, c1;
	dio_counters(vol, &c0);
	/* overwrites then reads, 32 in flight, random order of offsets */
	for (int pass = 0; pass < 2; pass++) {
		size_t next = 0, done = 0;
		while (done < n) {
			struct dio_req r[32];
			unsigned k = 0;
			while (next < n && k < 32) {
				size_t i = (next * 97) % n;
				r[k++] = (struct dio_req){ .op = pass ? DIO_OP_READ : DIO_OP_WRITE, .file = f,
							   .buf = (pass ? rd : buf) + i * bs, .len = bs,
							   .offset = (off_t)(i * bs), .user_data = i };
				next++;
			}
			int sub = k ? dio_submit(q, r, k) : 0;
			ck_assert_int_ge(sub, 0);
			next -= k - (unsigned)sub;
			struct dio_cqe c[32];
			int got = dio_reap(q, c, 1, 32, -1);
			ck_assert_int_gt(got, 0);
			for (int j = 0; j < got; j++)
				ck_assert_int_eq(c[j].res, (ssize_t)bs);
			done += (size_t)got;
		}
	}
	dio_counters(vol, &c1);
	ck_assert(!memcmp(buf, rd, n * bs));
	ck_assert_uint_eq(c1.writes - c0.writes, n);
	ck_assert_uint_eq(c1.reads - c0.reads, n);
	ck_assert_uint_eq(c1.bytes_written - c0.bytes_written, n * bs);
	ck_assert_uint_eq(c1.bytes_read - c0.bytes_read, n * bs);
	ck_assert_uint_eq(c1.device_ios - c0.device_ios, 2 * n);   /* one I/O per request */
	ck_assert_uint_eq(c1.bounced, c0.bounced);
	dio_queue_destroy(q);
	dio_close(f);
	free(buf);
	free(rd);
}
END_TEST

START_TEST(test_overlapping_requests_in_one_batch_are_ordered)
{
	struct dio_file *f = dio_open(vol, "ovl", O_RDWR | O_CREAT);
	uint8_t *a = t_aligned(65536), *b = t_aligned(65536), *r1 = t_aligned(65536), *r2 = t_aligned(65536);
	memset(a, 'a', 65536);
	memset(b, 'b', 65536);
	ck_assert_int_eq(dio_pwrite(f, a, 65536, 0), 65536);
	struct dio_queue *q = dio_queue_create(vol, 8);
	struct dio_req r[4] = {
		{ .op = DIO_OP_WRITE, .file = f, .buf = b, .len = 65536, .offset = 0, .user_data = 1 },
		{ .op = DIO_OP_READ, .file = f, .buf = r1, .len = 65536, .offset = 0, .user_data = 2 },
		{ .op = DIO_OP_WRITE, .file = f, .buf = a, .len = 65536, .offset = 0, .user_data = 3 },
		{ .op = DIO_OP_READ, .file = f, .buf = r2, .len = 65536, .offset = 0, .user_data = 4 },
	};
	ck_assert_int_eq(dio_submit(q, r, 4), 4);
	struct dio_cqe c[4];
	int got = 0;
	while (got < 4)
		got += dio_reap(q, c + got, 1, 4 - (unsigned)got, -1);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(c[i].res, 65536);
	ck_assert(!memcmp(r1, b, 65536));
	ck_assert(!memcmp(r2, a, 65536));
	/* a read past the end completes with 0, a hole reads zeros */
	struct dio_req e[2] = { { .op = DIO_OP_READ, .file = f, .buf = r1, .len = 4096, .offset = 1 << 20, .user_data = 9 },
				{ .op = DIO_OP_READ, .file = f, .buf = r1, .len = 4096, .offset = 0, .user_data = 10 } };
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 0, 4096), 0);
	memset(r1, 1, 4096);
	ck_assert_int_eq(dio_submit(q, e, 2), 2);
	ck_assert_int_eq(dio_reap(q, c, 2, 2, -1), 2);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(c[i].res, c[i].user_data == 9 ? 0 : 4096);
	for (int i = 0; i < 4096; i++)
		ck_assert_uint_eq(r1[i], 0);
	ck_assert_int_eq(dio_reap(q, c, 0, 4, 0), 0);
	dio_queue_destroy(q);
	dio_close(f);
	free(a);
	free(b);
	free(r1);
	free(r2);
}
END_TEST

/* Requests whose buffers lie inside registered buffers (io_uring:
   READ_FIXED/WRITE_FIXED) move the same bytes as any other; requests
   outside them, vectored ones and allocating ones still work; the set can
   be replaced and dropped, not while requests are in flight. */
START_TEST(test_registered_buffers_carry_reads_and_writes)
{
	struct dio_file *f = dio_open(vol, "fixed", O_RDWR | O_CREAT);
	struct dio_queue *q = dio_queue_create(vol, 64);
	ck_assert_ptr_nonnull(q);
	size_t half = 32 * 4096;
	uint8_t *a = t_aligned(half), *b = t_aligned(half), *other = t_aligned(4096), *rd = t_aligned(2 * half);
	struct iovec reg[2] = { { b, half }, { a, half } };   /* not in address order */
	ck_assert_int_eq(dio_queue_register_buffers(q, reg, 2), 0);
	t_fill(a, half, 3, 1, 0);
	t_fill(b, half, 3, 1, half);
	/* 64 KiB writes from inside a and b: the first allocate (extending),
	   then overwrite the same blocks */
	struct dio_req w[8];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 4; i++)
			w[i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = a + i * 32768, .len = 32768,
						 .offset = i * 32768, .user_data = (uint64_t)i };
		for (int i = 0; i < 4; i++)
			w[4 + i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = b + i * 32768, .len = 32768,
						     .offset = (off_t)half + i * 32768, .user_data = 4 + (uint64_t)i };
		ck_assert_int_eq(dio_submit(q, w, 8), 8);
		struct dio_cqe c[8];
		ck_assert_int_eq(dio_reap(q, c, 8, 8, -1), 8);
		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(c[i].res, 32768);
	}
	/* read back into the registered buffers (cleared) and from outside */
	memset(a, 0, half);
	memset(b, 0, half);
	struct iovec v2[2] = { { rd, 4096 }, { rd + 4096, 4096 } };
	struct dio_req r[4] = {
		{ .op = DIO_OP_READ, .file = f, .buf = a, .len = half, .offset = 0, .user_data = 1 },
		{ .op = DIO_OP_READ, .file = f, .buf = b, .len = half, .offset = (off_t)half, .user_data = 2 },
		{ .op = DIO_OP_READ, .file = f, .buf = other, .len = 4096, .offset = 8192, .user_data = 3 },
		{ .op = DIO_OP_READV, .file = f, .iov = v2, .iovcnt = 2, .offset = 4096, .user_data = 4 },
	};
	ck_assert_int_eq(dio_submit(q, r, 4), 4);
	/* replacing the set while they may be in flight is refused */
	int rr = dio_queue_register_buffers(q, reg, 1);
	if (strcmp(t_backend(), "psync") != 0) {
		ck_assert_int_eq(rr, -1);   /* uring and aio keep aligned reads in flight */
		ck_assert_int_eq(errno, EBUSY);
	}
	struct dio_cqe c[4];
	ck_assert_int_eq(dio_reap(q, c, 4, 4, -1), 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(c[i].res, c[i].user_data <= 2 ? (ssize_t)half : c[i].user_data == 3 ? 4096 : 8192);
	for (size_t i = 0; i < half; i++) {
		ck_assert_uint_eq(a[i], t_pat(3, 1, i));
		ck_assert_uint_eq(b[i], t_pat(3, 1, half + i));
	}
	for (size_t i = 0; i < 4096; i++) {
		ck_assert_uint_eq(other[i], t_pat(3, 1, 8192 + i));
		ck_assert_uint_eq(rd[i], t_pat(3, 1, 4096 + i));
		ck_assert_uint_eq(rd[4096 + i], t_pat(3, 1, 8192 + i));
	}
	/* invalid sets change nothing; dropping the set leaves I/O working */
	struct iovec bad[1] = { { NULL, 4096 } };
	ck_assert_int_eq(dio_queue_register_buffers(q, bad, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_queue_register_buffers(q, NULL, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_queue_register_buffers(NULL, reg, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(dio_queue_register_buffers(q, NULL, 0), 0);
	struct dio_req last = { .op = DIO_OP_READ, .file = f, .buf = a, .len = 4096, .offset = 0, .user_data = 9 };
	ck_assert_int_eq(dio_submit(q, &last, 1), 1);
	ck_assert_int_eq(dio_reap(q, c, 1, 1, -1), 1);
	ck_assert_int_eq(c[0].res, 4096);
	ck_assert_uint_eq(a[100], t_pat(3, 1, 100));
	dio_queue_destroy(q);
	dio_close(f);
	free(a);
	free(b);
	free(other);
	free(rd);
}
END_TEST

/* A queue changes threads with requests in flight: one thread submits,
   another reaps. */
struct handover { struct dio_queue *q; struct dio_file *f; uint8_t *buf; int n; };

static void *handover_submit(void *arg)
{
	struct handover *h = arg;
	for (int i = 0; i < h->n; i++) {
		struct dio_req r = { .op = DIO_OP_READ, .file = h->f, .buf = h->buf + i * 4096, .len = 4096,
				     .offset = i * 4096, .user_data = (uint64_t)i };
		if (dio_submit(h->q, &r, 1) != 1)
			return (void *)1;
	}
	return NULL;
}

static void *handover_reap(void *arg)
{
	struct handover *h = arg;
	struct dio_cqe c[32];
	int got = 0;
	while (got < h->n) {
		int n = dio_reap(h->q, c, 1, 32, -1);
		if (n <= 0)
			return (void *)2;
		for (int i = 0; i < n; i++)
			if (c[i].res != 4096)
				return (void *)3;
		got += n;
	}
	return NULL;
}

START_TEST(test_queue_handed_to_another_thread_with_requests_in_flight)
{
	struct dio_file *f = dio_open(vol, "hand", O_RDWR | O_CREAT);
	uint8_t *w = t_aligned(32 * 4096);
	t_fill(w, 32 * 4096, 4, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, w, 32 * 4096, 0), 32 * 4096);
	struct handover h = { dio_queue_create(vol, 32), f, t_aligned(32 * 4096), 32 };
	ck_assert_ptr_nonnull(h.q);
	for (int round = 0; round < 3; round++) {
		memset(h.buf, 0, 32 * 4096);
		pthread_t t;
		void *res;
		pthread_create(&t, NULL, handover_submit, &h);
		pthread_join(t, &res);
		ck_assert_ptr_null(res);
		pthread_create(&t, NULL, handover_reap, &h);
		pthread_join(t, &res);
		ck_assert_ptr_null(res);
		ck_assert(!memcmp(h.buf, w, 32 * 4096));
	}
	dio_queue_destroy(h.q);
	dio_close(f);
	free(w);
	free(h.buf);
}
END_TEST

/* Calls on a DIO_QUEUE_SINGLE_THREAD queue from another thread. */
struct foreign_try { struct dio_queue *q; struct dio_file *f; uint8_t *buf; int submit, reap, regbuf; };

static void *foreign_calls(void *arg)
{
	struct foreign_try *t = arg;
	struct dio_req r = { .op = DIO_OP_READ, .file = t->f, .buf = t->buf, .len = 4096, .offset = 0 };
	struct dio_cqe c[4];
	struct iovec iov = { t->buf, 4096 };
	t->submit = dio_submit(t->q, &r, 1) == -1 ? errno : 0;
	t->reap = dio_reap(t->q, c, 0, 4, 0) == -1 ? errno : 0;
	t->regbuf = dio_queue_register_buffers(t->q, &iov, 1) == -1 ? errno : 0;
	return NULL;
}

START_TEST(test_single_thread_queue_works_for_its_owner_and_refuses_others)
{
	errno = 0;
	ck_assert_ptr_null(dio_queue_create_flags(vol, 8, 0x100));
	ck_assert_int_eq(errno, EINVAL);
	struct dio_file *f = dio_open(vol, "owned", O_RDWR | O_CREAT);
	uint8_t *w = t_aligned(16 * 4096), *r = t_aligned(16 * 4096);
	t_fill(w, 16 * 4096, 5, 1, 0);
	struct dio_queue *q = dio_queue_create_flags(vol, 16, DIO_QUEUE_SINGLE_THREAD);
	ck_assert_ptr_nonnull(q);
	/* extending writes, then an fdatasync, through the queue */
	struct dio_req req[17];
	for (int i = 0; i < 16; i++)
		req[i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = w + i * 4096, .len = 4096,
					   .offset = i * 4096, .user_data = 100 + (uint64_t)i };
	ck_assert_int_eq(dio_submit(q, req, 16), 16);
	struct dio_cqe c[16];
	int got = 0;
	while (got < 16) {
		int n = dio_reap(q, c, 1, 16, -1);
		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++) {
			ck_assert_uint_ge(c[i].user_data, 100);
			ck_assert_int_eq(c[i].res, 4096);
		}
		got += n;
	}
	req[0] = (struct dio_req){ .op = DIO_OP_FDATASYNC, .file = f, .user_data = 7 };
	ck_assert_int_eq(dio_submit(q, req, 1), 1);
	ck_assert_int_eq(dio_reap(q, c, 1, 1, -1), 1);
	ck_assert_uint_eq(c[0].user_data, 7);
	ck_assert_int_eq(c[0].res, 0);
	/* aligned reads of written blocks go down asynchronously; reaping
	   with min_nr 0 and no wait must still find them once done */
	for (int i = 0; i < 16; i++)
		req[i] = (struct dio_req){ .op = DIO_OP_READ, .file = f, .buf = r + i * 4096, .len = 4096,
					   .offset = i * 4096, .user_data = (uint64_t)i };
	ck_assert_int_eq(dio_submit(q, req, 16), 16);
	got = 0;
	for (long spins = 0; got < 16 && spins < 100000000; spins++) {
		int n = dio_reap(q, c + got, 0, (unsigned)(16 - got), 0);
		ck_assert_int_ge(n, 0);
		got += n;
	}
	ck_assert_int_eq(got, 16);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(c[i].res, 4096);
	ck_assert(!memcmp(r, w, 16 * 4096));
	/* another thread: every call refused, nothing taken */
	struct foreign_try t = { q, f, r, 0, 0, 0 };
	pthread_t th;
	pthread_create(&th, NULL, foreign_calls, &t);
	pthread_join(th, NULL);
	ck_assert_int_eq(t.submit, EPERM);
	ck_assert_int_eq(t.reap, EPERM);
	ck_assert_int_eq(t.regbuf, EPERM);
	ck_assert_int_eq(dio_reap(q, c, 0, 16, 0), 0);   /* the refused read never ran */
	dio_queue_destroy(q);
	dio_close(f);
	free(w);
	free(r);
}
END_TEST
/* The gate holds the write in flight 100 ms after it parked; the
   submitter notes whether dio_submit had returned by then. */
static void *release_later(void *arg)
{
	(void)arg;
	fault_gate_wait_parked();
	usleep(100 * 1000);
	fault_gate_release();
	return NULL;
}

/* Remount the test's volume on "fault-async" configured by cfg; false
   (and a SKIP line for test) when the run's backend has no asynchronous
   pair, so every queue request runs inline. */
static bool remount_fault_async(const struct fault_cfg *cfg, const char *test)
{
	fault_setup(cfg);
	if (!fault_inner_has_async()) {
		fprintf(stderr, "SKIP %s: backend %s has no asynchronous pair, every queue request runs inline\n",
			test, t_backend());
		return false;
	}
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = dio_mount(img, &(struct dio_mount_opts){ .backend = "fault-async" });
	ck_assert_ptr_nonnull(vol);
	return true;
}

START_TEST(test_queued_writes_into_preallocated_blocks_go_down_asynchronously)
{
	if (!remount_fault_async(&(struct fault_cfg){ 0 }, __func__))
		return;
	uint8_t *buf = t_aligned(8192), *rd = t_aligned(8192);
	/* a plain handle and a DIO_O_CONCURRENT one, whose conversions need
	   the exclusive range lock too */
	int flags[2] = { O_RDWR | O_CREAT, O_RDWR | O_CREAT | DIO_O_CONCURRENT };
	for (int m = 0; m < 2; m++) {
		char name[8];
		snprintf(name, sizeof(name), "pre%d", m);
		struct dio_file *f = dio_open(vol, name, flags[m]);
		ck_assert_int_eq(dio_fallocate(f, 0, 0, 1 << 20), 0);
		ck_assert_int_eq(dio_fsync(f), 0);
		struct dio_queue *q = dio_queue_create(vol, 8);
		/* a backend with the asynchronous pair but no set_eventfd */
		ck_assert_int_eq(dio_queue_fd(q), -1);
		ck_assert_int_eq(errno, EOPNOTSUPP);
		t_fill(buf, 8192, 9, (uint32_t)m, 0);
		fault_gate_arm(DIO_BIO_WRITE);
		pthread_t th;
		pthread_create(&th, NULL, release_later, NULL);
		struct dio_req w = { .op = DIO_OP_WRITE, .file = f, .buf = buf, .len = 8192, .offset = 65536,
				     .user_data = 5 };
		ck_assert_int_eq(dio_submit(q, &w, 1), 1);
		/* returned with the write still parked: it went down asynchronously */
		ck_assert(!fault_gate_is_released());
		struct dio_cqe c;
		ck_assert_int_eq(dio_reap(q, &c, 0, 1, 0), 0);
		ck_assert_int_eq(dio_reap(q, &c, 1, 1, -1), 1);
		pthread_join(th, NULL);
		ck_assert_uint_eq(c.user_data, 5);
		ck_assert_int_eq(c.res, 8192);
		/* converted at completion: the data reads back, the rest of the
		   preallocation still reads as zeros */
		ck_assert_int_eq(dio_pread(f, rd, 8192, 65536), 8192);
		ck_assert(!memcmp(rd, buf, 8192));
		ck_assert_int_eq(dio_pread(f, rd, 8192, 65536 + 8192), 8192);
		for (int i = 0; i < 8192; i++)
			T_CHECK(rd[i] == 0);
		ck_assert_int_eq(dio_lseek(f, 0, SEEK_DATA), 65536);
		dio_queue_destroy(q);
		ck_assert_int_eq(dio_fdatasync(f), 0);
		dio_close(f);
	}
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	for (int m = 0; m < 2; m++) {
		char name[8];
		snprintf(name, sizeof(name), "pre%d", m);
		struct dio_file *f = dio_open(vol, name, O_RDONLY);
		t_fill(buf, 8192, 9, (uint32_t)m, 0);
		ck_assert_int_eq(dio_pread(f, rd, 8192, 65536), 8192);
		ck_assert(!memcmp(rd, buf, 8192));
		dio_close(f);
	}
	free(buf);
	free(rd);
}
END_TEST

/* Device I/Os of one synchronous read of [off, off+len) of f. */
static uint64_t read_ios(struct dio_file *f, uint8_t *buf, size_t len, off_t off)
{
	struct dio_counters c0, c1;
	dio_counters(vol, &c0);
	ck_assert_int_eq(dio_pread(f, buf, len, off), (ssize_t)len);
	dio_counters(vol, &c1);
	return c1.device_ios - c0.device_ios;
}

START_TEST(test_a_submission_cut_short_fails_only_the_requests_not_started)
{
	if (!remount_fault_async(&(struct fault_cfg){ .async_refuse_from = 3 }, __func__))
		return;
	/* A's block 1, punched and written again before the punch is
	   committed, lives away from block 0 (a freed block is not reused
	   until then), so a read of blocks 0-1 is two device I/Os */
	struct dio_file *a = dio_open(vol, "a", O_RDWR | O_CREAT);
	uint8_t *buf = t_aligned(8 * 4096), *rd = t_aligned(8 * 4096), *nw = t_aligned(4096);
	t_fill(buf, 8 * 4096, 1, 1, 0);
	ck_assert_int_eq(dio_pwrite(a, buf, 8 * 4096, 0), 8 * 4096);
	ck_assert_int_eq(dio_fsync(a), 0);
	ck_assert_int_eq(dio_fallocate(a, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 4096, 4096), 0);
	ck_assert_int_eq(dio_pwrite(a, buf + 4096, 4096, 4096), 4096);
	ck_assert_uint_eq(read_ios(a, rd, 8192, 0), 2);
	/* one dio_submit, five device I/Os; the backend takes the first two:
	   r0 (one I/O) went down, r1 half (its second I/O refused), r2 and
	   the overwrite r3 not at all */
	struct dio_queue *q = dio_queue_create(vol, 16);
	t_fill(nw, 4096, 1, 2, 7 * 4096);
	memset(rd, 0, 8 * 4096);
	struct dio_req r[4] = {
		{ .op = DIO_OP_READ, .file = a, .buf = rd + 4 * 4096, .len = 4096, .offset = 4 * 4096, .user_data = 0 },
		{ .op = DIO_OP_READ, .file = a, .buf = rd, .len = 8192, .offset = 0, .user_data = 1 },
		{ .op = DIO_OP_READ, .file = a, .buf = rd + 6 * 4096, .len = 4096, .offset = 6 * 4096, .user_data = 2 },
		{ .op = DIO_OP_WRITE, .file = a, .buf = nw, .len = 4096, .offset = 7 * 4096, .user_data = 3 },
	};
	ck_assert_int_eq(dio_submit(q, r, 4), 4);
	struct dio_cqe c[8];
	int got = 0;
	while (got < 4) {
		int n = dio_reap(q, c + got, 1, 8 - (unsigned)got, 10000);
		ck_assert_int_gt(n, 0);
		got += n;
	}
	ssize_t res[4] = { 1, 1, 1, 1 };
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_lt(c[i].user_data, 4);
		ck_assert_int_eq(res[c[i].user_data], 1);   /* each exactly once */
		res[c[i].user_data] = c[i].res;
	}
	ck_assert_int_eq(res[0], 4096);
	ck_assert(!memcmp(rd + 4 * 4096, buf + 4 * 4096, 4096));
	ck_assert_int_eq(res[1], -EAGAIN);
	ck_assert_int_eq(res[2], -EAGAIN);
	ck_assert_int_eq(res[3], -EAGAIN);
	ck_assert_int_eq(dio_reap(q, c, 0, 8, 0), 0);   /* nothing stale */
	ck_assert_int_ge(fault_count(8), 1);
	dio_queue_destroy(q);
	/* a refusal is not a media error: the overwrite changed nothing, no
	   block went bad, no fsync hears of it, a rewrite lands in place */
	ck_assert_int_eq(dio_pread(a, rd, 8 * 4096, 0), 8 * 4096);
	ck_assert(!memcmp(rd, buf, 8 * 4096));
	ck_assert_int_eq(dio_fsync(a), 0);
	ck_assert_int_eq(dio_pwrite(a, nw, 4096, 7 * 4096), 4096);
	ck_assert_int_eq(dio_pread(a, rd, 4096, 7 * 4096), 4096);
	ck_assert(!memcmp(rd, nw, 4096));
	dio_close(a);
	free(buf);
	free(rd);
	free(nw);
}
END_TEST

/* A ring that will take nothing now says EBUSY (its completions are
   backed up): dio_submit(3) says such a request completes with -EAGAIN,
   and nothing of it ran. */
START_TEST(test_a_ring_refusing_with_ebusy_completes_requests_with_eagain)
{
	if (!remount_fault_async(&(struct fault_cfg){ .async_refuse_from = 1, .async_refuse_errno = EBUSY }, __func__))
		return;
	struct dio_file *a = dio_open(vol, "busy", O_RDWR | O_CREAT);
	uint8_t *buf = t_aligned(2 * 4096), *nw = t_aligned(4096);
	t_fill(buf, 2 * 4096, 4, 1, 0);
	t_fill(nw, 4096, 4, 2, 0);
	ck_assert_int_eq(dio_pwrite(a, buf, 2 * 4096, 0), 2 * 4096);
	struct dio_queue *q = dio_queue_create(vol, 4);
	struct dio_req r[2] = {
		{ .op = DIO_OP_READ, .file = a, .buf = buf + 4096, .len = 4096, .offset = 4096, .user_data = 0 },
		{ .op = DIO_OP_WRITE, .file = a, .buf = nw, .len = 4096, .offset = 0, .user_data = 1 },
	};
	ck_assert_int_eq(dio_submit(q, r, 2), 2);
	struct dio_cqe c[2];
	ck_assert_int_eq(dio_reap(q, c, 2, 2, 10000), 2);
	ck_assert_int_eq(c[0].res, -EAGAIN);
	ck_assert_int_eq(c[1].res, -EAGAIN);
	dio_queue_destroy(q);
	uint8_t *rd = t_aligned(4096);
	ck_assert_int_eq(dio_pread(a, rd, 4096, 0), 4096);
	ck_assert(!memcmp(rd, buf, 4096));   /* the write never ran */
	ck_assert_int_eq(dio_fsync(a), 0);   /* and is no media error */
	dio_close(a);
	free(buf);
	free(nw);
	free(rd);
}
END_TEST

START_TEST(test_a_file_closed_with_requests_in_flight_lives_until_they_complete)
{
	uint8_t *buf = t_aligned(64 * 4096), *rd = t_aligned(64 * 4096);
	t_fill(buf, 64 * 4096, 6, 1, 0);
	for (int round = 0; round < 3; round++) {
		/* round 0: reap after the close; 1: destroy the queue instead
		   (it drains); 2: the file was unlinked too, its blocks go with
		   the last request */
		struct dio_file *f = dio_open(vol, "closing", O_RDWR | O_CREAT);
		ck_assert_int_eq(dio_pwrite(f, buf, 32 * 4096, 0), 32 * 4096);
		struct dio_queue *q = dio_queue_create(vol, 64);
		struct dio_req r[64];
		for (int i = 0; i < 64; i++) {
			bool wr = i % 2;
			r[i] = (struct dio_req){ .op = wr ? DIO_OP_WRITE : DIO_OP_READ, .file = f,
						 .buf = (wr ? buf : rd) + i * 4096, .len = 4096,
						 .offset = (off_t)(wr ? (32 + i) * 4096 : i / 2 * 4096), .user_data = (uint64_t)i };
		}
		ck_assert_int_eq(dio_submit(q, r, 64), 64);
		if (round == 2)
			ck_assert_int_eq(dio_unlink(vol, "closing"), 0);
		ck_assert_int_eq(dio_close(f), 0);
		if (round == 1) {
			dio_queue_destroy(q);
		} else {
			struct dio_cqe c[64];
			int got = 0;
			while (got < 64) {
				int n = dio_reap(q, c + got, 1, 64 - (unsigned)got, -1);
				ck_assert_int_gt(n, 0);
				got += n;
			}
			for (int i = 0; i < 64; i++)
				ck_assert_int_eq(c[i].res, 4096);
			for (int i = 0; i < 64; i += 2)
				ck_assert(!memcmp(rd + i * 4096, buf + i / 2 * 4096, 4096));
			dio_queue_destroy(q);
		}
		struct dio_stat st;
		if (round == 2) {
			ck_assert_int_eq(dio_stat(vol, "closing", &st), -1);
			ck_assert_int_eq(dio_syncfs(vol), 0);
		} else {
			ck_assert_int_eq(dio_stat(vol, "closing", &st), 0);
			ck_assert_uint_eq(st.size, (32 + 64) * 4096);
			ck_assert_int_eq(dio_unlink(vol, "closing"), 0);
		}
	}
	/* every handle is gone: the volume unmounts (teardown) */
	struct dio_statvfs sv;
	dio_statvfs(vol, &sv);
	ck_assert_uint_eq(sv.nfiles, 0);
	free(buf);
	free(rd);
}
END_TEST

static bool readable(int fd, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

START_TEST(test_queue_fd_wakes_an_event_loop_for_every_completion)
{
	struct dio_file *f = dio_open(vol, "evt", O_RDWR | O_CREAT);
	uint8_t *buf = t_aligned(64 * 4096);
	t_fill(buf, 64 * 4096, 4, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, buf, 64 * 4096, 0), 64 * 4096);
	unsigned flags[2] = { 0, DIO_QUEUE_SINGLE_THREAD };
	for (int m = 0; m < 2; m++) {
		struct dio_queue *q = dio_queue_create_flags(vol, 64, flags[m]);
		int fd = dio_queue_fd(q);
		if (t_nbd()) {
			/* libnbd reads replies only when called: nothing could
			   signal the descriptor (dio_queue_fd(3)) */
			ck_assert_int_eq(fd, -1);
			ck_assert_int_eq(errno, EOPNOTSUPP);
			dio_queue_destroy(q);
			fprintf(stderr, "nbd: dio_queue_fd is EOPNOTSUPP, as documented\n");
			break;
		}
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(dio_queue_fd(q), fd);   /* one descriptor per queue */
		ck_assert(!readable(fd, 0));
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 };
		ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
		/* an event loop: sleep in epoll, reap without waiting */
		struct dio_req r[32];
		for (int i = 0; i < 32; i++)
			r[i] = (struct dio_req){ .op = DIO_OP_READ, .file = f, .buf = buf + i * 4096, .len = 4096,
						 .offset = (off_t)(i * 8192), .user_data = (uint64_t)i };
		ck_assert_int_eq(dio_submit(q, r, 32), 32);
		int got = 0, wakeups = 0;
		while (got < 32) {
			struct epoll_event out;
			ck_assert_msg(epoll_wait(ep, &out, 1, 5000) == 1, "no wakeup with %d of 32 reaped", got);
			ck_assert_uint_eq(out.data.u64, 42);
			wakeups++;
			struct dio_cqe c[32];
			int n = dio_reap(q, c, 0, 32, 0);
			ck_assert_int_ge(n, 0);
			for (int i = 0; i < n; i++)
				ck_assert_int_eq(c[i].res, 4096);
			got += n;
		}
		ck_assert_int_le(wakeups, 64);
		/* the last completions may have signalled after the reap that
		   took them (a wakeup with nothing to reap, as with any eventfd);
		   a reap with nothing in flight leaves it quiet */
		struct dio_cqe none[1];
		ck_assert_int_eq(dio_reap(q, none, 0, 1, 0), 0);
		ck_assert(!readable(fd, 0));
		/* a request that completes inside dio_submit (an fsync) */
		struct dio_req s1 = { .op = DIO_OP_FSYNC, .file = f, .user_data = 99 };
		ck_assert_int_eq(dio_submit(q, &s1, 1), 1);
		ck_assert(readable(fd, 0));
		/* reaping part of what waits leaves it readable */
		ck_assert_int_eq(dio_submit(q, &s1, 1), 1);
		struct dio_cqe c;
		ck_assert_int_eq(dio_reap(q, &c, 0, 1, 0), 1);
		ck_assert(readable(fd, 0));
		ck_assert_int_eq(dio_reap(q, &c, 0, 1, 0), 1);
		ck_assert(!readable(fd, 0));
		close(ep);
		dio_queue_destroy(q);
		ck_assert_int_eq(fcntl(fd, F_GETFD), -1);   /* closed with its queue */
	}
	dio_close(f);
	free(buf);
}
END_TEST

/*
 * One random sequence of requests -- aligned and misaligned, reads and
 * writes, vectored, extending, into holes -- run through the synchronous
 * calls on one file and through a queue on another (in batches of up to
 * 8 requests on disjoint ranges, so their order inside a batch cannot
 * matter), both checked against one model: every read returns the
 * model's bytes and count, and both files end equal to it.
 */
#define RND_SPAN (2u << 20)
#define RMIN(a, b) ((a) < (b) ? (a) : (b))
#define RMAX(a, b) ((a) > (b) ? (a) : (b))
#define RND_OPS  1500

struct rnd_op { int op; off_t off; size_t len; unsigned shift; };

static struct rnd_op rnd_next(void)
{
	struct rnd_op o;
	bool aligned = t_rand() % 3 != 0;
	o.op = (int)(t_rand() % 4) + DIO_OP_READ;   /* READ, WRITE, READV, WRITEV */
	o.off = aligned ? (off_t)(t_rand() % (RND_SPAN / 4096)) * 4096 : (off_t)(t_rand() % RND_SPAN);
	o.len = aligned ? (size_t)(t_rand() % 16 + 1) * 4096 : (size_t)(t_rand() % 20000 + 1);
	o.shift = aligned ? 0 : (unsigned)(t_rand() % 7 + 1);   /* buffer not mem_align'd */
	return o;
}

/* The op's buffer: a vectored one is two segments, split where a page
   (aligned) or anywhere (misaligned) falls. */
static int rnd_iov(const struct rnd_op *o, uint8_t *buf, struct iovec *iov)
{
	size_t cut = o->shift ? o->len / 3 : (o->len / 4096 / 2) * 4096;
	if (o->op == DIO_OP_READ || o->op == DIO_OP_WRITE || !cut) {
		iov[0] = (struct iovec){ buf + o->shift, o->len };
		return 1;
	}
	iov[0] = (struct iovec){ buf + o->shift, cut };
	iov[1] = (struct iovec){ buf + o->shift + cut, o->len - cut };
	return 2;
}

static bool rnd_is_write(int op) { return op == DIO_OP_WRITE || op == DIO_OP_WRITEV; }

START_TEST(test_sync_and_queue_paths_agree_on_a_random_sequence)
{
	struct dio_file *fs = dio_open(vol, "path-sync", O_RDWR | O_CREAT);
	struct dio_file *fq = dio_open(vol, "path-queue", O_RDWR | O_CREAT);
	uint8_t *model = calloc(1, RND_SPAN + 65536);
	uint64_t msize = 0;
	enum { B = 8 };
	uint8_t *sbuf[B], *qbuf[B];
	for (int i = 0; i < B; i++) {
		sbuf[i] = t_aligned(65536 + 4096);
		qbuf[i] = t_aligned(65536 + 4096);
	}
	struct dio_queue *q = dio_queue_create(vol, 16);
	t_seed(0x5eed13);
	struct rnd_op ops[B];
	struct dio_req req[B];
	struct iovec qiov[B][2];
	for (int done = 0, batch = 0; done < RND_OPS; batch++) {
		/* a batch of disjoint ranges */
		int n = 0;
		while (n < B && done + n < RND_OPS) {
			struct rnd_op o = rnd_next();
			bool clash = false;
			for (int k = 0; k < n; k++)
				clash |= o.off < ops[k].off + (off_t)ops[k].len + 4096 && ops[k].off < o.off + (off_t)o.len + 4096;
			if (clash)
				break;
			ops[n++] = o;
		}
		for (int k = 0; k < n; k++) {
			struct rnd_op *o = &ops[k];
			uint32_t wid = (uint32_t)(done + k + 1);
			if (rnd_is_write(o->op)) {
				t_fill(sbuf[k] + o->shift, o->len, 7, wid, (uint64_t)o->off);
				memcpy(qbuf[k] + o->shift, sbuf[k] + o->shift, o->len);
			} else {
				memset(sbuf[k], 0xEE, 65536 + 4096);
				memset(qbuf[k], 0xEE, 65536 + 4096);
			}
			struct iovec siov[2];
			int cnt = rnd_iov(o, sbuf[k], siov);
			rnd_iov(o, qbuf[k], qiov[k]);
			ssize_t r = o->op == DIO_OP_READ    ? dio_pread(fs, sbuf[k] + o->shift, o->len, o->off)
				  : o->op == DIO_OP_WRITE   ? dio_pwrite(fs, sbuf[k] + o->shift, o->len, o->off)
				  : o->op == DIO_OP_READV   ? dio_preadv(fs, siov, cnt, o->off)
							    : dio_pwritev(fs, siov, cnt, o->off);
			/* the model: what both must return */
			ssize_t want;
			if (rnd_is_write(o->op)) {
				t_fill(model + o->off, o->len, 7, wid, (uint64_t)o->off);
				msize = RMAX((uint64_t)o->off + o->len, msize);
				want = (ssize_t)o->len;
			} else {
				want = (uint64_t)o->off >= msize ? 0 : (ssize_t)RMIN(o->len, msize - (uint64_t)o->off);
			}
			ck_assert_msg(r == want, "op %d (type %d off %lld len %zu): sync path returned %zd, model %zd",
				      done + k, o->op, (long long)o->off, o->len, r, want);
			if (!rnd_is_write(o->op))
				ck_assert_msg(!memcmp(sbuf[k] + o->shift, model + o->off, (size_t)want),
					      "op %d: sync read differs from the model", done + k);
			bool vec = o->op == DIO_OP_READV || o->op == DIO_OP_WRITEV;
			req[k] = (struct dio_req){ .op = o->op, .file = fq, .offset = o->off, .user_data = (uint64_t)k,
						   .buf = vec ? NULL : qbuf[k] + o->shift, .len = vec ? 0 : o->len,
						   .iov = vec ? qiov[k] : NULL, .iovcnt = vec ? cnt : 0 };
		}
		ck_assert_int_eq(dio_submit(q, req, (unsigned)n), n);
		struct dio_cqe c[B];
		for (int got = 0; got < n;) {
			int r = dio_reap(q, c + got, 1, (unsigned)(n - got), -1);
			ck_assert_int_gt(r, 0);
			got += r;
		}
		for (int i = 0; i < n; i++) {
			struct rnd_op *o = &ops[c[i].user_data];
			int k = (int)c[i].user_data;
			/* the sync path's result for the same op, the model's */
			ssize_t want = rnd_is_write(o->op) ? (ssize_t)o->len
				     : (uint64_t)o->off >= msize ? 0 : (ssize_t)RMIN(o->len, msize - (uint64_t)o->off);
			ck_assert_msg(c[i].res == want, "op %d (type %d off %lld len %zu): queue returned %zd, model %zd",
				      done + k, o->op, (long long)o->off, o->len, c[i].res, want);
			if (!rnd_is_write(o->op))
				ck_assert_msg(!memcmp(qbuf[k] + o->shift, sbuf[k] + o->shift, (size_t)want),
					      "op %d: the queue's read differs from the sync path's", done + k);
		}
		done += n;
	}
	struct dio_stat a, b;
	ck_assert_int_eq(dio_fstat(fs, &a), 0);
	ck_assert_int_eq(dio_fstat(fq, &b), 0);
	ck_assert_uint_eq(a.size, msize);
	ck_assert_uint_eq(b.size, msize);
	uint8_t *all = t_aligned(RND_SPAN + 65536);
	for (int f = 0; f < 2; f++) {
		memset(all, 0xEE, RND_SPAN + 65536);
		ck_assert_int_eq(dio_pread(f ? fq : fs, all, RND_SPAN + 65536, 0), (ssize_t)msize);
		ck_assert_msg(!memcmp(all, model, msize), "%s path's file differs from the model", f ? "queue" : "sync");
	}
	dio_queue_destroy(q);
	for (int i = 0; i < B; i++) {
		free(sbuf[i]);
		free(qbuf[i]);
	}
	free(all);
	free(model);
	dio_close(fs);
	dio_close(fq);
}
END_TEST

/*
 * A queue larger than its backend context (a context carries 8 I/Os per
 * entry, at most 4,096): dio_submit takes requests only while their I/Os
 * fit, so none fails for want of room (an AIO context would say EAGAIN,
 * a ring's completions would spill over), and a reaper that only polls
 * (min_nr 0, timeout 0) gets every completion.
 */
START_TEST(test_a_queue_larger_than_its_backend_context_fails_no_request)
{
	enum { N = 9000, BLOCKS = 64 };
	size_t bs = 4096;
	struct dio_file *f = dio_open(vol, "overflow", O_RDWR | O_CREAT);
	uint8_t *src = t_aligned(BLOCKS * bs), *dst = t_aligned((size_t)N * bs);
	t_fill(src, BLOCKS * bs, 9, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, src, BLOCKS * bs, 0), (ssize_t)(BLOCKS * bs));
	memset(dst, 0xEE, (size_t)N * bs);
	struct dio_queue *q = dio_queue_create(vol, N);
	ck_assert_ptr_nonnull(q);
	struct dio_req *r = calloc(N, sizeof(*r));
	for (unsigned i = 0; i < N; i++)
		r[i] = (struct dio_req){ .op = DIO_OP_READ, .file = f, .buf = dst + (size_t)i * bs, .len = bs,
					 .offset = (off_t)((i % BLOCKS) * bs), .user_data = i };
	static struct dio_cqe c[512];
	bool *seen = calloc(N, 1);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned sent = 0, got = 0, most = 0;
	while (got < N) {
		if (sent < N) {
			int k = dio_submit(q, r + sent, N - sent);
			ck_assert_msg(k > 0 || errno == EAGAIN, "dio_submit: %s", strerror(errno));
			sent += k > 0 ? (unsigned)k : 0;
		}
		most = sent - got > most ? sent - got : most;
		int k = dio_reap(q, c, 0, 512, 0);
		ck_assert_int_ge(k, 0);
		for (int j = 0; j < k; j++) {
			ck_assert_uint_lt(c[j].user_data, N);
			ck_assert(!seen[c[j].user_data]);
			seen[c[j].user_data] = true;
			ck_assert_int_eq(c[j].res, (ssize_t)bs);
		}
		got += (unsigned)k;
		clock_gettime(CLOCK_MONOTONIC, &t);
		ck_assert_msg(t.tv_sec - t0.tv_sec < 60, "a polling reaper got %u of %d completions in 60 s", got, N);
	}
	ck_assert_uint_gt(most, 1000);   /* it was deep */
	for (unsigned i = 0; i < N; i++)
		ck_assert(!memcmp(dst + (size_t)i * bs, src + (i % BLOCKS) * bs, bs));
	dio_queue_destroy(q);
	free(seen);
	free(r);
	free(src);
	free(dst);
	dio_close(f);
}
END_TEST

/* Is a queue of this volume inline only (psync: no request stays in
   flight past dio_submit)?  Says so for test. */
static bool inline_only(const char *test)
{
	struct dio_statvfs sv;
	dio_statvfs(vol, &sv);
	if (strcmp(sv.backend, "psync"))
		return false;
	fprintf(stderr, "SKIP %s: backend psync runs every queue request inline\n", test);
	return true;
}

struct blocked_read { struct dio_file *f; uint8_t *buf; atomic_int done; ssize_t r; };

static void *read_block2(void *arg)
{
	struct blocked_read *b = arg;
	b->r = dio_pread(b->f, b->buf, 4096, 8192);
	atomic_store(&b->done, 1);
	return NULL;
}

/*
 * A queued write holds its range until it is reaped, and only the
 * thread that last used the queue may reap it: that thread asking for
 * the range itself would wait forever.  It gets EDEADLK instead, having
 * changed nothing; another thread waits and goes on once the write is
 * reaped; ranges the write does not hold are free.
 */
START_TEST(test_a_thread_asking_for_a_range_its_own_unreaped_write_holds_gets_edeadlk)
{
	if (inline_only(__func__))
		return;
	struct dio_file *f = dio_open(vol, "self", O_RDWR | O_CREAT);
	uint8_t *old = t_aligned(8 * 4096), *nw = t_aligned(4096), *rd = t_aligned(8 * 4096);
	t_fill(old, 8 * 4096, 3, 1, 0);
	t_fill(nw, 4096, 3, 2, 8192);
	ck_assert_int_eq(dio_pwrite(f, old, 8 * 4096, 0), 8 * 4096);
	for (int flags = 0; flags < 2; flags++) {
		struct dio_queue *q = dio_queue_create_flags(vol, 8, flags ? DIO_QUEUE_SINGLE_THREAD : 0);
		struct dio_req w = { .op = DIO_OP_WRITE, .file = f, .buf = nw, .len = 4096, .offset = 8192, .user_data = 9 };
		ck_assert_int_eq(dio_submit(q, &w, 1), 1);
		errno = 0;
		ck_assert_int_eq(dio_pread(f, rd, 4096, 8192), -1);
		ck_assert_int_eq(errno, EDEADLK);
		ck_assert_int_eq(dio_pwrite(f, old, 4096, 8192), -1);
		ck_assert_int_eq(errno, EDEADLK);
		ck_assert_int_eq(dio_ftruncate(f, 4096), -1);
		ck_assert_int_eq(errno, EDEADLK);
		ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, 0, 5 * 4096), -1);
		ck_assert_int_eq(errno, EDEADLK);
		/* through another queue of the same thread: the same */
		struct dio_queue *q2 = dio_queue_create(vol, 4);
		struct dio_req r2 = { .op = DIO_OP_READ, .file = f, .buf = rd, .len = 4096, .offset = 8192, .user_data = 2 };
		struct dio_cqe c;
		ck_assert_int_eq(dio_submit(q2, &r2, 1), 1);
		ck_assert_int_eq(dio_reap(q2, &c, 1, 1, -1), 1);
		ck_assert_int_eq(c.res, -EDEADLK);
		dio_queue_destroy(q2);
		/* what the write does not hold is free */
		ck_assert_int_eq(dio_pread(f, rd + 4096, 4096, 5 * 4096), 4096);
		ck_assert(!memcmp(rd + 4096, old + 5 * 4096, 4096));
		/* another thread waits for the reap */
		struct blocked_read b = { f, rd, 0, 0 };
		pthread_t th;
		pthread_create(&th, NULL, read_block2, &b);
		usleep(50 * 1000);
		ck_assert_msg(!atomic_load(&b.done), "another thread read a range a queued write holds (%zd)", b.r);
		ck_assert_int_eq(dio_reap(q, &c, 1, 1, -1), 1);
		ck_assert_uint_eq(c.user_data, 9);
		ck_assert_int_eq(c.res, 4096);
		pthread_join(th, NULL);
		ck_assert_int_eq(b.r, 4096);
		ck_assert(!memcmp(rd, nw, 4096));
		/* the refused calls changed nothing: the size, the other blocks */
		struct dio_stat st;
		ck_assert_int_eq(dio_fstat(f, &st), 0);
		ck_assert_uint_eq(st.size, 8 * 4096);
		ck_assert_int_eq(dio_pread(f, rd, 8 * 4096, 0), 8 * 4096);
		ck_assert(!memcmp(rd, old, 8192));
		ck_assert(!memcmp(rd + 8192, nw, 4096));
		ck_assert(!memcmp(rd + 3 * 4096, old + 3 * 4096, 5 * 4096));
		ck_assert_int_eq(dio_pwrite(f, old + 8192, 4096, 8192), 4096);   /* free again */
		dio_queue_destroy(q);
	}
	dio_close(f);
	free(old);
	free(nw);
	free(rd);
}
END_TEST

struct foreign_destroy { struct dio_queue *q; int err; };

static void *destroy_elsewhere(void *arg)
{
	struct foreign_destroy *d = arg;
	errno = 0;
	dio_queue_destroy(d->q);
	d->err = errno;
	return NULL;
}

/*
 * Destroying a queue with requests in flight waits for them (its
 * ranges are released, the writes are converted); a queue tied to its
 * thread, destroyed by another one with requests in flight, is left as
 * it is (EPERM): only its owner can reap them.  Afterwards nothing
 * still holds the ranges: a truncate over all of them goes through.
 */
START_TEST(test_a_queue_destroyed_with_requests_in_flight_frees_nothing_they_hold)
{
	uint8_t *buf = t_aligned(64 * 4096), *rd = t_aligned(64 * 4096);
	t_fill(buf, 64 * 4096, 8, 1, 0);
	for (int flags = 0; flags < 2; flags++) {
		struct dio_file *f = dio_open(vol, flags ? "gone1" : "gone0", O_RDWR | O_CREAT);
		struct dio_queue *q = dio_queue_create_flags(vol, 64, flags ? DIO_QUEUE_SINGLE_THREAD : 0);
		struct dio_req r[64];
		for (int i = 0; i < 64; i++)   /* extending writes: converted at completion */
			r[i] = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = buf + i * 4096, .len = 4096,
						 .offset = i * 4096, .user_data = (uint64_t)i };
		ck_assert_int_eq(dio_submit(q, r, 64), 64);
		if (flags) {
			struct foreign_destroy d = { q, 0 };
			pthread_t th;
			pthread_create(&th, NULL, destroy_elsewhere, &d);
			pthread_join(th, NULL);
			if (!inline_only(__func__)) {
				ck_assert_int_eq(d.err, EPERM);
				/* still the owner's, whole */
				struct dio_cqe c[64];
				int got = 0;
				while (got < 64) {
					int n = dio_reap(q, c + got, 1, 64 - (unsigned)got, -1);
					ck_assert_int_gt(n, 0);
					got += n;
				}
				for (int i = 0; i < 64; i++)
					ck_assert_int_eq(c[i].res, 4096);
				dio_queue_destroy(q);
			}
		} else {
			dio_queue_destroy(q);   /* waits for the 64 writes */
		}
		ck_assert_int_eq(dio_pread(f, rd, 64 * 4096, 0), 64 * 4096);
		ck_assert(!memcmp(rd, buf, 64 * 4096));
		ck_assert_int_eq(dio_ftruncate(f, 0), 0);   /* no range is left held */
		dio_close(f);
	}
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	ck_assert_ptr_nonnull(vol);
	free(buf);
	free(rd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("queue");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_completions_carry_user_data_and_bytes);
	tcase_add_test(tc, test_errors_come_back_as_negative_errno);
	tcase_add_test(tc, test_full_queue_takes_only_what_fits);
	tcase_add_test(tc, test_misaligned_and_extending_requests_through_a_queue);
	tcase_add_test(tc, test_queues_of_several_threads_share_a_volume);
	tcase_add_test(tc, test_many_aligned_requests_in_flight);
	tcase_add_test(tc, test_overlapping_requests_in_one_batch_are_ordered);
	tcase_add_test(tc, test_registered_buffers_carry_reads_and_writes);
	tcase_add_test(tc, test_queue_handed_to_another_thread_with_requests_in_flight);
	tcase_add_test(tc, test_single_thread_queue_works_for_its_owner_and_refuses_others);
	tcase_add_test(tc, test_queued_writes_into_preallocated_blocks_go_down_asynchronously);
	tcase_add_test(tc, test_queue_fd_wakes_an_event_loop_for_every_completion);
	tcase_add_test(tc, test_a_submission_cut_short_fails_only_the_requests_not_started);
	tcase_add_test(tc, test_a_queue_larger_than_its_backend_context_fails_no_request);
	tcase_add_test(tc, test_sync_and_queue_paths_agree_on_a_random_sequence);
	tcase_add_test(tc, test_a_file_closed_with_requests_in_flight_lives_until_they_complete);
	tcase_add_test(tc, test_a_ring_refusing_with_ebusy_completes_requests_with_eagain);
	tcase_add_test(tc, test_a_thread_asking_for_a_range_its_own_unreaped_write_holds_gets_edeadlk);
	tcase_add_test(tc, test_a_queue_destroyed_with_requests_in_flight_frees_nothing_they_hold);
	suite_add_tcase(s, tc);
	return t_run(s);
}
