/*
 * Fault injection: fail the Nth device read, write or flush with EIO,
 * for every N of a standard workload (and complete every write in short
 * pieces in another run).  After each run: some call reported EIO; after a
 * data write failed, the next fsync of each handle of that file reported
 * it; the volume stays usable, passes dio_fsck after a remount, and holds
 * everything the workload synced (the crash model's rules).
 */
#include "crashmodel.h"

#define NOPS 120


static struct cm_op ops[NOPS];
static struct cm_model m;

/* Run the workload with cfg; returns the device ops it took. */
static long run_with(const struct fault_cfg *cfg, bool check)
{
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 24 << 20, .journal_size = 64 << 10 }), 0);
	fault_setup(cfg);
	memset(&m, 0, sizeof(m));
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "fault" });
	if (!v) {
		ck_assert_int_eq(errno, EIO);   /* the fault hit the mount itself */
		return fault_ops();
	}
	struct dio_file *h[CM_FILES], *hs[CM_FILES];
	cm_open(v, h, hs);
	bool pending[CM_FILES][2] = { { false } };
	int eio = 0;
	for (int i = 0; i < NOPS; i++) {
		const struct cm_op *o = &ops[i];
		cm_apply(&m, o);
		long before = fault_ops();
		int r = cm_exec(v, h, hs, o);
		int err = r < 0 ? errno : 0;
		if (getenv("DIO_TEST_TRACE"))
			fprintf(stderr, "op %d type %d fid %d off %llu len %llu mode %d -> %d (%s) devops %ld..%ld\n", i,
				o->type, o->fid, (unsigned long long)o->off, (unsigned long long)o->len, o->mode, r,
				r < 0 ? strerror(err) : "", before, fault_ops());
		if (r < 0) {
			ck_assert_msg(err == EIO, "op %d (type %d) failed with %s", i, o->type, strerror(err));
			eio++;
		}
		if (o->type == OP_FSYNC || o->type == OP_FDATASYNC) {
			if (pending[o->fid][0])
				ck_assert_msg(r < 0 && err == EIO, "op %d: fsync after a failed write succeeded", i);
			pending[o->fid][0] = false;
		}
		if (r < 0 && (o->type == OP_WRITE || o->type == OP_DSYNC_WRITE))
			pending[o->fid][0] = pending[o->fid][1] = true;
		if (r == 0 && (o->type == OP_REPLACE || o->type == OP_RECREATE))
			pending[o->fid][0] = pending[o->fid][1] = false;   /* new handles, new file */
		if (r == 0)
			cm_synced(&m, o);
		else
			cm_failed(&m, o);
	}
	/* every other handle hears of its file's failed write once */
	for (int fi = 0; fi < CM_FILES; fi++) {
		if (pending[fi][1] && hs[fi]) {
			ck_assert_int_eq(dio_fsync(hs[fi]), -1);
			ck_assert_int_eq(errno, EIO);
		}
	}
	cm_close(h, hs);
	if (dio_umount(v) < 0) {
		ck_assert_int_eq(errno, EIO);
		eio++;
	}
	long total = fault_ops();
	if (check) {
		ck_assert_msg(eio > 0, "an injected fault was never reported");
		ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
		v = t_mount(t_img);
		ck_assert_msg(v != NULL, "remount after a fault: %s", strerror(errno));
		cm_check(v, &m);
		/* still usable: write, sync, read back */
		struct dio_file *f = dio_open(v, "after", O_RDWR | O_CREAT);
		uint8_t *b = t_aligned(8192);
		t_fill(b, 8192, 9, 9, 0);
		ck_assert_int_eq(dio_pwrite(f, b, 8192, 0), 8192);
		ck_assert_int_eq(dio_fsync(f), 0);
		memset(b, 0, 8192);
		ck_assert_int_eq(dio_pread(f, b, 8192, 0), 8192);
		ck_assert_uint_eq(b[8191], t_pat(9, 9, 8191));
		free(b);
		dio_close(f);
		ck_assert_int_eq(dio_umount(v), 0);
	}
	return total;
}

static void sweep(int kind)
{
	t_img = strdup(t_image_path("faults"));
	cm_gen(ops, NOPS, 4242);
	struct fault_cfg none = { 0 };
	run_with(&none, false);
	long counts[3];
	for (int k = 0; k < 3; k++)
		counts[k] = fault_count(k);
	long n = counts[kind];
	ck_assert_int_gt(n, 0);
	for (long i = 1; i <= n; i++) {
		struct fault_cfg cfg = { 0 };
		if (kind == 0)
			cfg.fail_write_at = i;
		else if (kind == 1)
			cfg.fail_read_at = i;
		else
			cfg.fail_flush_at = i;
		if (getenv("DIO_TEST_TRACE"))
			fprintf(stderr, "=== N=%ld\n", i);
		run_with(&cfg, true);
	}
	fprintf(stderr, "faults (%s): failed each of %ld %s in turn\n", t_backend(), n,
		kind == 0 ? "writes" : kind == 1 ? "reads" : "flushes");
}

START_TEST(test_every_failed_write_is_reported_and_contained) { sweep(0); }
END_TEST
START_TEST(test_every_failed_read_is_reported_and_contained) { sweep(1); }
END_TEST
START_TEST(test_every_failed_flush_is_reported_and_contained) { sweep(2); }
END_TEST

START_TEST(test_short_transfers_everywhere_change_nothing)
{
	t_img = strdup(t_image_path("short"));
	cm_gen(ops, NOPS, 777);
	struct fault_cfg cfg = { .short_writes = 1 };
	run_with(&cfg, false);
	struct cm_op all = { .type = OP_SYNCFS };
	cm_synced(&m, &all);   /* a clean umount made everything durable */
	struct dio_vol *v = t_mount(t_img);
	cm_check(v, &m);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, test_every_failed_write_is_reported_and_contained);
	tcase_add_test(tc, test_every_failed_read_is_reported_and_contained);
	tcase_add_test(tc, test_every_failed_flush_is_reported_and_contained);
	tcase_add_test(tc, test_short_transfers_everywhere_change_nothing);
	suite_add_tcase(s, tc);
	return t_run(s);
}
