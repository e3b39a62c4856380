/*
 * The tail block (lib/tail.c): a misaligned appender does not read back
 * the partial block its previous write ended in, and the kept copy never
 * outlives a change of that block's bytes by any other call.
 *
 * Every test keeps a model of the file in memory and compares every byte
 * through dio_pread, then again after a remount (the copy is only
 * memory: the device must hold the same bytes).
 */
#include "helpers.h"
#include <pthread.h>

#define MAXF (8u << 20)

struct model {
	uint8_t *b;
	uint64_t size;
};

static void m_write(struct model *m, const uint8_t *src, size_t n, uint64_t off)
{
	memcpy(m->b + off, src, n);
	if (off + n > m->size)
		m->size = off + n;
}

static void m_zero(struct model *m, uint64_t off, uint64_t n)
{
	memset(m->b + off, 0, (size_t)n);
}

/* Bytes past a new, smaller size are gone (zeros if the file grows again). */
static void m_shrink(struct model *m, uint64_t by)
{
	m->size -= by;
	memset(m->b + m->size, 0, (size_t)by);
}

static void check_file(struct dio_file *f, const struct model *m, const char *step)
{
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(f, &st), 0);
	ck_assert_msg(st.size == m->size, "%s: size %llu, wanted %llu", step, (unsigned long long)st.size,
		      (unsigned long long)m->size);
	uint8_t *got = t_aligned(MAXF);
	ck_assert_int_eq(dio_pread(f, got, (size_t)m->size, 0), (ssize_t)m->size);
	for (uint64_t i = 0; i < m->size; i++)
		T_CHECK(got[i] == m->b[i], "%s: byte %llu is %02x, wanted %02x", step, (unsigned long long)i, got[i],
			m->b[i]);
	free(got);
}

/* Append `n` bytes of write number `wid` (malloc'd memory: bounced). */
static void append(struct dio_file *f, struct model *m, size_t n, uint32_t wid)
{
	uint8_t *src = malloc(n + 1);
	t_fill(src + 1, n, 1, wid, m->size);   /* +1: never mem-aligned */
	ck_assert_int_eq(dio_pwrite(f, src + 1, n, (off_t)m->size), (ssize_t)n);
	m_write(m, src + 1, n, m->size);
	free(src);
}

static uint64_t rmw(struct dio_vol *v)
{
	struct dio_counters c;
	ck_assert_int_eq(dio_counters(v, &c), 0);
	return c.rmw_blocks;
}

static struct dio_file *remount(struct dio_vol **v, struct dio_file *f, const char *name)
{
	dio_close(f);
	ck_assert_int_eq(dio_umount(*v), 0);
	*v = t_mount(t_img);
	ck_assert_ptr_nonnull(*v);
	f = dio_open(*v, name, O_RDWR);
	ck_assert_ptr_nonnull(f);
	return f;
}

/* WAL frames (24 + 4096) and rollback records (4 + 4096 + 4), as SQLite
   writes them: after the first, no append reads anything back. */
START_TEST(test_misaligned_appends_read_nothing_back)
{
	static const size_t rec[] = { 24 + 4096, 4 + 4096 + 4, 100, 4096 * 3 + 7 };
	struct dio_vol *v = t_fresh("tail-appends", 64, &t_img);
	for (unsigned k = 0; k < 4; k++) {
		char name[16];
		snprintf(name, sizeof(name), "log%u", k);
		struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT);
		struct model m = { calloc(1, MAXF), 0 };
		uint64_t r0 = rmw(v);
		for (uint32_t i = 0; m.size + rec[k] <= (2u << 20); i++)
			append(f, &m, rec[k], i);
		ck_assert_msg(rmw(v) == r0, "%zu-byte appends read %llu blocks back", rec[k],
			      (unsigned long long)(rmw(v) - r0));
		check_file(f, &m, "appended");
		f = remount(&v, f, name);
		check_file(f, &m, "after remount");
		/* a new mount has no copy: the first append reads once, no more */
		r0 = rmw(v);
		for (uint32_t i = 0; i < 50; i++)
			append(f, &m, rec[k], 1000 + i);
		ck_assert_uint_le(rmw(v) - r0, 1);
		check_file(f, &m, "appended after remount");
		dio_close(f);
		free(m.b);
	}
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* After each call that changes the tail block by other means, the next
   misaligned append must start from the block's real bytes.  16 KiB
   blocks, so that an aligned write (offset_align: 512 or 4096) can cover
   part of a block. */
START_TEST(test_the_kept_tail_follows_every_other_change)
{
	const uint64_t BS = 16384;
	t_img = strdup(t_image_path("tail-changes"));
	t_forget_plog(t_img);
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 64u << 20, .block_size = BS }), 0);
	struct dio_vol *v = t_mount(t_img);
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	struct model m = { calloc(1, MAXF), 0 };
	uint8_t *al = t_aligned(BS);
	uint32_t wid = 1;
	append(f, &m, 10000, wid++);

	/* an aligned (zero-copy) overwrite of the tail block's first unit */
	struct dio_info info;
	ck_assert_int_eq(dio_info(f, &info), 0);
	uint32_t u = info.offset_align;
	uint64_t tb = m.size / BS * BS, b0 = rmw(v);
	t_fill(al, u, 2, wid, tb);
	ck_assert_int_eq(dio_pwrite(f, al, u, (off_t)tb), (ssize_t)u);
	ck_assert_uint_eq(rmw(v), b0);   /* zero copy indeed */
	m_write(&m, al, u, tb);
	append(f, &m, 3000, wid++);
	check_file(f, &m, "aligned overwrite");

	/* a queued aligned overwrite of the whole tail block */
	tb = m.size / BS * BS;
	append(f, &m, BS - m.size % BS + 100, wid++);   /* the block after tb is written: tb is whole */
	tb = (m.size / BS - 1) * BS;
	struct dio_queue *q = dio_queue_create(v, 4);
	ck_assert_ptr_nonnull(q);
	t_fill(al, BS, 3, wid++, tb);
	struct dio_req rq = { .op = DIO_OP_WRITE, .file = f, .buf = al, .len = BS, .offset = (off_t)tb };
	struct dio_cqe c;
	ck_assert_int_eq(dio_submit(q, &rq, 1), 1);
	ck_assert_int_eq(dio_reap(q, &c, 1, 1, -1), 1);
	ck_assert_int_eq(c.res, (ssize_t)BS);
	m_write(&m, al, BS, tb);
	dio_queue_destroy(q);
	check_file(f, &m, "queued overwrite");
	/* and of the partial tail block, then an append into it */
	tb = m.size / BS * BS;
	q = dio_queue_create(v, 4);
	t_fill(al, u, 3, wid, tb);
	rq = (struct dio_req){ .op = DIO_OP_WRITE, .file = f, .buf = al, .len = u, .offset = (off_t)tb };
	ck_assert_int_eq(dio_submit(q, &rq, 1), 1);
	ck_assert_int_eq(dio_reap(q, &c, 1, 1, -1), 1);
	ck_assert_int_eq(c.res, (ssize_t)u);
	m_write(&m, al, u, tb);
	dio_queue_destroy(q);
	append(f, &m, 777, wid++);
	check_file(f, &m, "queued write into the tail block");

	/* zero range over part of the tail block (zeroed in place) */
	uint64_t z = m.size - 300;
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE, (off_t)z, 200), 0);
	m_zero(&m, z, 200);
	append(f, &m, 1234, wid++);
	check_file(f, &m, "zero range");

	/* a punched hole over the whole tail block and beyond it */
	tb = m.size / BS * BS;
	ck_assert_int_eq(dio_fallocate(f, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, (off_t)(tb - BS), (off_t)(2 * BS)), 0);
	m_zero(&m, tb - BS, m.size - (tb - BS));
	append(f, &m, 555, wid++);
	check_file(f, &m, "punch");

	/* truncate down into the middle of an earlier block, then append */
	m_shrink(&m, 6000);
	ck_assert_int_eq(dio_ftruncate(f, (off_t)m.size), 0);
	append(f, &m, 4100, wid++);
	check_file(f, &m, "truncate down");

	/* truncate up past the tail (the block keeps its bytes, zeros after) */
	m.size += 5000;
	ck_assert_int_eq(dio_ftruncate(f, (off_t)m.size), 0);
	append(f, &m, 333, wid++);
	check_file(f, &m, "truncate up");

	/* an unaligned overwrite elsewhere moves the copy; the old tail is read */
	uint8_t *src = malloc(5000);
	t_fill(src, 5000, 4, wid, 1000);
	ck_assert_int_eq(dio_pwrite(f, src, 5000, 1000), 5000);
	m_write(&m, src, 5000, 1000);
	free(src);
	append(f, &m, 4099, wid++);
	check_file(f, &m, "overwrite elsewhere");

	/* another handle of the same file sees and continues the same tail */
	struct dio_file *g = dio_open(v, "f", O_RDWR);
	append(g, &m, 2222, wid++);
	append(f, &m, 1111, wid++);
	dio_close(g);
	check_file(f, &m, "two handles");

	f = remount(&v, f, "f");
	check_file(f, &m, "after remount");
	dio_close(f);
	free(m.b);
	free(al);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* A write that fails leaves the block's bytes unknown: the next write
   into that block must not trust the copy. */
START_TEST(test_a_failed_write_drops_the_kept_tail)
{
	struct dio_vol *v = t_fresh("tail-fault", 64, &t_img);
	ck_assert_int_eq(dio_umount(v), 0);
	struct fault_cfg cfg = { 0 };
	fault_setup(&cfg);
	v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(v);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	struct model m = { calloc(1, MAXF), 0 };
	append(f, &m, 6000, 1);
	uint64_t r0 = rmw(v);
	/* the next device write fails (fault_setup counts from zero again) */
	struct fault_cfg fail = { .fail_write_at = 1 };
	fault_setup(&fail);
	uint8_t src[3000];
	t_fill(src, sizeof(src), 1, 2, m.size);
	ck_assert_int_eq(dio_pwrite(f, src, sizeof(src), (off_t)m.size), -1);
	ck_assert_int_eq(errno, EIO);
	fault_setup(&cfg);
	/* the failed range is marked bad; a write into the same block reads it */
	ck_assert_int_eq(dio_pwrite(f, src, 100, (off_t)m.size), 100);
	ck_assert_uint_ge(rmw(v), r0 + 1);
	dio_close(f);
	free(m.b);
	dio_umount(v);
}
END_TEST

/* One thread appends misaligned records while another rewrites earlier
   blocks (zero copy, and bounced): each keeps the other's bytes, and the
   appender still reads nothing back (run under ThreadSanitizer in CI). */
struct racer {
	struct dio_file *f;
	uint8_t *expect;     /* the bytes each thread writes, disjoint ranges */
	uint64_t end;
	int kind;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	uint8_t *al = t_aligned(8192);
	uint8_t *src = malloc(20000);
	if (r->kind == 0) {
		for (uint64_t off = 1u << 20; off + 4120 <= r->end; off += 4120) {
			memcpy(src + 1, r->expect + off, 4120);
			T_CHECK(dio_pwrite(r->f, src + 1, 4120, (off_t)off) == 4120);
		}
	} else {
		uint64_t seed = 7;
		for (int i = 0; i < 3000; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t off = (seed >> 20) % ((1u << 20) - 8192);
			off &= ~(uint64_t)4095;
			if (i % 2) {
				memcpy(al, r->expect + off, 8192);
				T_CHECK(dio_pwrite(r->f, al, 8192, (off_t)off) == 8192);
			} else {
				/* whole blocks from a misaligned buffer: bounced,
				   nothing to read back, the copy's block untouched */
				size_t n = 4096 * (1 + (size_t)(seed % 3));
				memcpy(src + 3, r->expect + off, n);
				T_CHECK(dio_pwrite(r->f, src + 3, n, (off_t)off) == (ssize_t)n);
			}
		}
	}
	free(al);
	free(src);
	return NULL;
}

START_TEST(test_an_appender_and_a_rewriter_of_the_same_file_keep_each_others_bytes)
{
	struct dio_vol *v = t_fresh("tail-race", 64, &t_img);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	uint64_t end = (1u << 20) + 4120 * 500;
	struct model m = { malloc(MAXF), end };
	t_fill(m.b, (size_t)end, 9, 9, 0);
	/* the first MiB exists before the race (the rewriter's range) */
	uint8_t *al = t_aligned(1u << 20);
	memcpy(al, m.b, 1u << 20);
	ck_assert_int_eq(dio_pwrite(f, al, 1u << 20, 0), 1 << 20);
	free(al);
	uint64_t r0 = rmw(v);
	struct racer r[2] = { { f, m.b, end, 0 }, { f, m.b, end, 1 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, race, &r[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	check_file(f, &m, "after the race");
	/* neither read anything back: the appender's copy survived the
	   rewriter's writes to other blocks */
	ck_assert_uint_eq(rmw(v), r0);
	f = remount(&v, f, "f");
	check_file(f, &m, "after remount");
	dio_close(f);
	free(m.b);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

static uint64_t device_ios(struct dio_vol *v)
{
	struct dio_counters c;
	ck_assert_int_eq(dio_counters(v, &c), 0);
	return c.device_ios;
}

/* Overwrite [off, off+n) with write number wid (bounced). */
static void overwrite(struct dio_file *f, struct model *m, uint64_t off, size_t n, uint32_t wid)
{
	uint8_t *src = malloc(n + 1);
	t_fill(src + 1, n, 2, wid, off);
	ck_assert_int_eq(dio_pwrite(f, src + 1, n, (off_t)off), (ssize_t)n);
	m_write(m, src + 1, n, off);
	free(src);
}

/* A WAL written over from its start again (SQLite after a checkpoint):
   24 + 4096-byte frames after a 32-byte header, each ending inside old
   data.  The block each frame ends in is read with the blocks after it,
   once per 64 KiB window, not once per frame. */
START_TEST(test_a_sequential_overwrite_reads_each_window_once)
{
	struct dio_vol *v = t_fresh("tail-overwrite", 64, &t_img);
	struct dio_file *f = dio_open(v, "wal", O_RDWR | O_CREAT);
	struct model m = { calloc(1, MAXF), 0 };
	for (uint32_t i = 0; m.size < (4u << 20); i++)
		append(f, &m, 24 + 4096, i);   /* the first pass: appends */
	f = remount(&v, f, "wal");            /* no copy of anything */
	uint64_t io0 = device_ios(v);
	overwrite(f, &m, 0, 32, 5000);
	unsigned frames = 0;
	for (uint64_t off = 32; off + 4120 <= (2u << 20); off += 4120, frames++)
		overwrite(f, &m, off, 4120, 5001 + frames);
	uint64_t reads = device_ios(v) - io0 - (frames + 1);   /* each write is one device I/O */
	/* a window is the block a frame ends in and the 15 after it */
	ck_assert_msg(reads <= (uint64_t)frames * 4120 / (15 * 4096) + 2, "%u frames over old data: %llu reads",
		      frames, (unsigned long long)reads);
	check_file(f, &m, "overwritten");
	f = remount(&v, f, "wal");
	check_file(f, &m, "after remount");
	dio_close(f);
	free(m.b);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* The blocks read ahead are changed by others before the sequential
   writer reaches them: an aligned write, a bounced whole-block write, a
   zeroed range, a punched hole, each from another handle.  The writer
   must merge with the new bytes, never with what it read ahead. */
START_TEST(test_blocks_read_ahead_follow_other_writers)
{
	struct dio_vol *v = t_fresh("tail-ahead", 64, &t_img);
	struct dio_file *f = dio_open(v, "wal", O_RDWR | O_CREAT);
	struct model m = { calloc(1, MAXF), 0 };
	for (uint32_t i = 0; m.size < (2u << 20); i++)
		append(f, &m, 24 + 4096, i);
	f = remount(&v, f, "wal");
	struct dio_file *g = dio_open(v, "wal", O_RDWR);
	uint8_t *al = t_aligned(8192);
	uint64_t off = 32;
	overwrite(f, &m, 0, 32, 100);
	for (int round = 0; round < 4; round++) {
		/* two frames: the second reads ahead from the block it ends in */
		for (int i = 0; i < 2; i++, off += 4120)
			overwrite(f, &m, off, 4120, 200 + (uint32_t)(round * 2 + i));
		uint64_t ahead = (off / 4096 + 2) * 4096;   /* a block inside the window */
		switch (round) {
		case 0:
			t_fill(al, 4096, 3, 300, ahead);
			ck_assert_int_eq(dio_pwrite(g, al, 4096, (off_t)ahead), 4096);
			m_write(&m, al, 4096, ahead);
			break;
		case 1:
			overwrite(g, &m, ahead, 4096, 301);
			break;
		case 2:
			ck_assert_int_eq(dio_fallocate(g, DIO_FALLOC_ZERO_RANGE, (off_t)ahead + 100, 1000), 0);
			m_zero(&m, ahead + 100, 1000);
			break;
		case 3:
			ck_assert_int_eq(dio_fallocate(g, DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE,
						       (off_t)ahead, 4096), 0);
			m_zero(&m, ahead, 4096);
			break;
		}
		/* then the writer goes on, and stops inside that block: the
		   rest of it must be the other writer's bytes */
		while (off + 4120 <= ahead) {
			overwrite(f, &m, off, 4120, 400 + (uint32_t)off);
			off += 4120;
		}
		overwrite(f, &m, off, (size_t)(ahead + 700 - off), 500 + (uint32_t)round);
		off = ahead + 700;
		check_file(f, &m, "after the writer passed a changed block");
	}
	dio_close(g);
	f = remount(&v, f, "wal");
	check_file(f, &m, "after remount");
	free(al);
	dio_close(f);
	free(m.b);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tailblock");
	TCase *tc = tcase_create("tailblock");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_misaligned_appends_read_nothing_back);
	tcase_add_test(tc, test_the_kept_tail_follows_every_other_change);
	tcase_add_test(tc, test_a_failed_write_drops_the_kept_tail);
	tcase_add_test(tc, test_an_appender_and_a_rewriter_of_the_same_file_keep_each_others_bytes);
	tcase_add_test(tc, test_a_sequential_overwrite_reads_each_window_once);
	tcase_add_test(tc, test_blocks_read_ahead_follow_other_writers);
	suite_add_tcase(s, tc);
	return t_run(s);
}
