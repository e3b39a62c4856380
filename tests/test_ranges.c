/*
 * Which requests wait for which.  The fault backend's gate holds one
 * request in flight inside the device; other threads then show what
 * passes it (disjoint ranges, shared readers, DIO_O_CONCURRENT aligned
 * writes) and what waits (overlapping reads and writes by default,
 * truncate, misaligned writes under DIO_O_CONCURRENT).  "Passes" means it
 * completed while the first one is still parked; "waits" means it had not
 * completed 200 ms later and completes once the gate opens, with the data
 * of a serial order.  Nothing here measures speed.
 */
#include "helpers.h"
#include <pthread.h>
#include <time.h>

#define BS 4096
#define CHUNK_BYTES (64 * BS)    /* the range lock's chunk (lib/internal.h RL_CHUNK) */
#define FILE_BYTES (40u << 20)
#define WAITS_MS 200
#define PASSES_MS 20000

static struct dio_vol *vol;
static struct dio_file *fh, *fc;   /* plain and DIO_O_CONCURRENT handles of "f" */

enum { J_READ, J_WRITE, J_TRUNCATE };

struct job {
	pthread_t th;
	int kind;
	struct dio_file *f;
	uint8_t *buf;
	size_t len;
	off_t off;
	ssize_t ret;
	int done;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *job_run(void *arg)
{
	struct job *j = arg;
	ssize_t r;
	if (j->kind == J_READ)
		r = dio_pread(j->f, j->buf, j->len, j->off);
	else if (j->kind == J_WRITE)
		r = dio_pwrite(j->f, j->buf, j->len, j->off);
	else
		r = dio_ftruncate(j->f, j->off);
	pthread_mutex_lock(&j->mu);
	j->ret = r;
	j->done = 1;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

static struct job *job_start(int kind, struct dio_file *f, off_t off, size_t len, uint32_t wid, size_t misalign)
{
	struct job *j = calloc(1, sizeof(*j));
	j->kind = kind;
	j->f = f;
	j->off = off;
	j->len = len;
	j->buf = (uint8_t *)t_aligned(len + misalign + 1) + misalign;
	if (kind == J_WRITE)
		t_fill(j->buf, len, 1, wid, (uint64_t)off);
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	ck_assert_int_eq(pthread_create(&j->th, NULL, job_run, j), 0);
	return j;
}

/* Has the job completed within ms? */
static bool job_wait(struct job *j, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->mu);
	while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
		;
	bool d = j->done;
	pthread_mutex_unlock(&j->mu);
	return d;
}

/* Join a job that must complete, check its result, free it. */
static void job_end(struct job *j, ssize_t want, size_t misalign)
{
	ck_assert_msg(job_wait(j, PASSES_MS), "a request never completed");
	pthread_join(j->th, NULL);
	ck_assert_int_eq(j->ret, want);
	free(j->buf - misalign);
	free(j);
}

/* The bytes [off, off+len) in buf are write wid's. */
static void assert_pattern(const uint8_t *buf, off_t off, size_t len, uint32_t wid)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != t_pat(1, wid, (uint64_t)off + i))
			ck_abort_msg("byte %zu of the read at %lld: not write %u's", i, (long long)off, wid);
}

static void setup(void)
{
	t_img = strdup(t_image_path("ranges"));
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 96 << 20, .block_size = BS }), 0);
	fault_setup(&(struct fault_cfg){ 0 });
	vol = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "fault" });
	ck_assert_ptr_nonnull(vol);
	fh = dio_open(vol, "f", O_RDWR | O_CREAT);
	fc = dio_open(vol, "f", O_RDWR | DIO_O_CONCURRENT);
	ck_assert_ptr_nonnull(fh);
	ck_assert_ptr_nonnull(fc);
	/* every block written with write 1, so the fast paths apply */
	struct job *w = job_start(J_WRITE, fh, 0, FILE_BYTES, 1, 0);
	job_end(w, FILE_BYTES, 0);
	ck_assert_int_eq(dio_fdatasync(fh), 0);
}

static void teardown(void)
{
	fault_gate_release();
	dio_close(fc);
	dio_close(fh);
	ck_assert_int_eq(dio_umount(vol), 0);
	t_img_cleanup();
}

START_TEST(test_disjoint_requests_pass_a_write_in_flight_and_overlapping_ones_wait)
{
	fault_gate_arm(DIO_BIO_WRITE);
	struct job *a = job_start(J_WRITE, fh, 0, BS, 2, 0);
	fault_gate_wait_parked();
	/* same chunk, other blocks: both directions pass */
	struct job *b = job_start(J_WRITE, fh, BS, BS, 3, 0);
	ck_assert_msg(job_wait(b, PASSES_MS), "a write of the next block waited for a write in flight");
	job_end(b, BS, 0);
	struct job *c = job_start(J_READ, fh, 2 * BS, BS, 0, 0);
	ck_assert_msg(job_wait(c, PASSES_MS), "a read of another block waited for a write in flight");
	assert_pattern(c->buf, 2 * BS, BS, 1);
	job_end(c, BS, 0);
	/* a read overlapping the write waits for all of it */
	struct job *d = job_start(J_READ, fh, 0, 2 * BS, 0, 0);
	ck_assert_msg(!job_wait(d, WAITS_MS), "a read overlapping a write in flight did not wait");
	fault_gate_release();
	job_end(a, BS, 0);
	ck_assert(job_wait(d, PASSES_MS));
	assert_pattern(d->buf, 0, BS, 2);
	assert_pattern(d->buf + BS, BS, BS, 3);
	job_end(d, 2 * BS, 0);
}
END_TEST

START_TEST(test_ranges_spanning_many_chunks_meet_exactly_where_they_overlap)
{
	/* a write from the middle of chunk 14 to the middle of chunk 16: its
	   stripes wrap from the last to the first */
	off_t w0 = 14 * CHUNK_BYTES + 32 * BS, w1 = 16 * CHUNK_BYTES + 32 * BS;
	fault_gate_arm(DIO_BIO_WRITE);
	struct job *a = job_start(J_WRITE, fh, w0, (size_t)(w1 - w0), 2, 0);
	fault_gate_wait_parked();
	/* chunk 32 shares chunk 16's stripe but not its blocks: passes */
	struct job *b = job_start(J_READ, fh, 32 * CHUNK_BYTES, BS, 0, 0);
	ck_assert_msg(job_wait(b, PASSES_MS), "a read sharing only a stripe waited");
	job_end(b, BS, 0);
	/* chunk 16 inside the write, and the first block after it */
	struct job *c = job_start(J_READ, fh, 16 * CHUNK_BYTES, BS, 0, 0);
	struct job *d = job_start(J_WRITE, fh, w1 - BS, 2 * BS, 3, 0);
	ck_assert_msg(!job_wait(c, WAITS_MS), "a read inside the wrapped range did not wait");
	ck_assert_msg(!job_wait(d, 1), "an overlapping write did not wait");
	/* a read of all 40 MiB covers every stripe: it waits too */
	struct job *e = job_start(J_READ, fh, 0, FILE_BYTES, 0, 0);
	ck_assert_msg(!job_wait(e, WAITS_MS), "a read of the whole file did not wait");
	fault_gate_release();
	job_end(a, w1 - w0, 0);
	ck_assert(job_wait(c, PASSES_MS));
	assert_pattern(c->buf, 16 * CHUNK_BYTES, BS, 2);
	job_end(c, BS, 0);
	job_end(d, 2 * BS, 0);
	ck_assert(job_wait(e, PASSES_MS));
	assert_pattern(e->buf, 0, (size_t)w0, 1);
	assert_pattern(e->buf + w1 + BS, w1 + BS, FILE_BYTES - (size_t)(w1 + BS), 1);
	job_end(e, FILE_BYTES, 0);
}
END_TEST

START_TEST(test_truncate_waits_for_a_read_in_flight)
{
	fault_gate_arm(DIO_BIO_READ);
	struct job *a = job_start(J_READ, fh, 8 * BS, BS, 0, 0);
	fault_gate_wait_parked();
	struct job *t = job_start(J_TRUNCATE, fh, 0, 0, 0, 0);
	ck_assert_msg(!job_wait(t, WAITS_MS), "truncate did not wait for a read of the blocks it frees");
	fault_gate_release();
	ck_assert(job_wait(a, PASSES_MS));
	assert_pattern(a->buf, 8 * BS, BS, 1);   /* the read saw the file before the truncate */
	job_end(a, BS, 0);
	job_end(t, 0, 0);
	struct dio_stat st;
	ck_assert_int_eq(dio_fstat(fh, &st), 0);
	ck_assert_uint_eq(st.size, 0);
}
END_TEST

START_TEST(test_concurrent_handles_do_not_order_aligned_writes_but_serialize_misaligned_ones)
{
	fault_gate_arm(DIO_BIO_WRITE);
	struct job *a = job_start(J_WRITE, fc, 0, BS, 2, 0);
	fault_gate_wait_parked();
	/* aligned requests on the same block pass each other */
	struct job *b = job_start(J_WRITE, fc, 0, BS, 3, 0);
	ck_assert_msg(job_wait(b, PASSES_MS), "DIO_O_CONCURRENT: an aligned write waited for another");
	job_end(b, BS, 0);
	struct job *c = job_start(J_READ, fc, 0, BS, 0, 0);
	ck_assert_msg(job_wait(c, PASSES_MS), "DIO_O_CONCURRENT: an aligned read waited for a write");
	job_end(c, BS, 0);
	/* a misaligned write of that block is read-modify-write: it waits */
	struct job *d = job_start(J_WRITE, fc, 100, 200, 4, 1);
	ck_assert_msg(!job_wait(d, WAITS_MS), "DIO_O_CONCURRENT: a misaligned write did not wait");
	fault_gate_release();
	job_end(a, BS, 0);
	job_end(d, 200, 1);
	/* the misaligned bytes landed on whatever aligned write was last */
	uint8_t *r = t_aligned(BS);
	ck_assert_int_eq(dio_pread(fh, r, BS, 0), BS);
	assert_pattern(r + 100, 100, 200, 4);
	uint32_t last = r[0] == t_pat(1, 2, 0) ? 2 : 3;
	assert_pattern(r, 0, 100, last);
	assert_pattern(r + 300, 300, BS - 300, last);
	free(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ranges");
	TCase *tc = tcase_create("ranges");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_disjoint_requests_pass_a_write_in_flight_and_overlapping_ones_wait);
	tcase_add_test(tc, test_ranges_spanning_many_chunks_meet_exactly_where_they_overlap);
	tcase_add_test(tc, test_truncate_waits_for_a_read_in_flight);
	tcase_add_test(tc, test_concurrent_handles_do_not_order_aligned_writes_but_serialize_misaligned_ones);
	suite_add_tcase(s, tc);
	return t_run(s);
}
