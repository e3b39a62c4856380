/*
 * Block devices: on loop devices with 512- and 4096-byte sectors,
 * offset_align is the sector size, a second mount is refused (O_EXCL),
 * and a 512-aligned write on the 4096 device is bounced, or refused with
 * EINVAL under DIO_O_STRICT.  Needs root and losetup: without them the
 * suite exits 77, which meson reports as a skip (not a pass).
 */
#include "helpers.h"

static bool pow2(uint64_t x) { return x && !(x & (x - 1)); }

static void check_info_sane(const struct dio_info *i)
{
	ck_assert(pow2(i->mem_align));
	ck_assert(pow2(i->offset_align));
	ck_assert(pow2(i->block_size));
	ck_assert(pow2(i->max_io));
	ck_assert_uint_le(i->mem_align, i->offset_align);
	ck_assert_uint_le(i->offset_align, i->block_size);
}

/* Make a loop device of the given sector size over a file; "" if we cannot. */
static bool make_loop(unsigned sector, char *dev, size_t n, char *backing, size_t bn)
{
	if (geteuid() != 0)
		return false;
	snprintf(backing, bn, "/var/tmp/libdio-loop-%u-%s-%d.img", sector, t_backend(), getpid());
	int fd = open(backing, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 32 << 20) < 0)
		return false;
	close(fd);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "losetup --find --show --direct-io=on --sector-size %u %s 2>/dev/null", sector,
		 backing);
	FILE *p = popen(cmd, "r");
	if (!p)
		return false;
	bool ok = fgets(dev, (int)n, p) != NULL;
	pclose(p);
	if (!ok) {
		unlink(backing);
		return false;
	}
	dev[strcspn(dev, "\n")] = 0;
	return dev[0] == '/';
}

static void drop_loop(const char *dev, const char *backing)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	if (system(cmd) != 0)
		fprintf(stderr, "could not detach %s\n", dev);
	unlink(backing);
}

static void loop_case(unsigned sector)
{
	char dev[128], backing[256];
	ck_assert_msg(make_loop(sector, dev, sizeof(dev), backing, sizeof(backing)),
		      "losetup of a %u-byte-sector loop device failed", sector);
	ck_assert_int_eq(dio_mkfs(dev, NULL), 0);
	struct dio_vol *v = t_mount(dev);
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_null(t_mount(dev));            /* O_EXCL: the second mount is refused */
	ck_assert_int_eq(errno, EBUSY);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	struct dio_info i;
	ck_assert_int_eq(dio_info(f, &i), 0);
	check_info_sane(&i);
	ck_assert_uint_eq(i.offset_align, sector);
	ck_assert_uint_eq(i.block_size, 4096);
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	ck_assert_uint_eq(sv.dev_logical_block_size, sector);
	uint8_t *b = t_aligned(8192);
	t_fill(b, 8192, 1, 1, 0);
	ck_assert_int_eq(dio_pwrite(f, b, 8192, 0), 8192);
	struct dio_counters c0, c1;
	dio_counters(v, &c0);
	ck_assert_int_eq(dio_pwrite(f, b + 512, 512, 512), 512);   /* 512-aligned overwrite */
	dio_counters(v, &c1);
	if (sector == 4096) {
		ck_assert_uint_eq(c1.bounced, c0.bounced + 1);
		ck_assert_uint_ge(c1.rmw_blocks, c0.rmw_blocks + 1);
		struct dio_file *s = dio_open(v, "f", O_RDWR | DIO_O_STRICT);
		ck_assert_int_eq(dio_pwrite(s, b, 512, 512), -1);
		ck_assert_int_eq(errno, EINVAL);
		dio_close(s);
	} else {
		ck_assert_uint_eq(c1.bounced, c0.bounced);   /* direct on a 512 device */
	}
	uint8_t *r = t_aligned(8192);
	ck_assert_int_eq(dio_pread(f, r, 8192, 0), 8192);
	ck_assert(!memcmp(r, b, 8192));
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	free(b);
	free(r);
	drop_loop(dev, backing);
}

START_TEST(test_loop_device_512_sectors) { loop_case(512); }
END_TEST

START_TEST(test_loop_device_4096_sectors_bounces_512_aligned_writes) { loop_case(4096); }
END_TEST


/* Can this process make loop devices?  Why not, if not. */
static const char *loop_unavailable(void)
{
	if (geteuid() != 0)
		return "needs root";
	if (system("command -v losetup >/dev/null 2>&1") != 0)
		return "needs losetup (util-linux)";
	if (access("/dev/loop-control", R_OK | W_OK) != 0)
		return "no /dev/loop-control";
	return NULL;
}

int main(void)
{
	const char *why = loop_unavailable();
	if (why) {
		fprintf(stderr, "SKIP loop-device suite: %s (uid %d)\n", why, (int)geteuid());
		return 77;
	}
	Suite *s = suite_create("loopdev");
	TCase *tc = tcase_create("loopdev");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_loop_device_512_sectors);
	tcase_add_test(tc, test_loop_device_4096_sectors_bounces_512_aligned_writes);
	suite_add_tcase(s, tc);
	return t_run(s);
}
