/*
 * Alignment discovery: dio_info reports the device's own values, all
 * powers of two; on loop devices with 512- and 4096-byte sectors
 * (root only; skipped with a message otherwise) offset_align is the
 * sector size, and a 512-aligned write on the 4096 device is bounced, or
 * refused with EINVAL under DIO_O_STRICT.
 */
#include "helpers.h"
#include <sys/stat.h>

static bool pow2(uint64_t x) { return x && !(x & (x - 1)); }

static void check_info_sane(const struct dio_info *i)
{
	ck_assert(pow2(i->mem_align));
	ck_assert(pow2(i->offset_align));
	ck_assert(pow2(i->block_size));
	ck_assert(pow2(i->max_io));
	ck_assert(i->opt_io == 0 || pow2(i->opt_io));
	ck_assert(i->atomic_write_min == 0 || pow2(i->atomic_write_min));
	ck_assert(i->atomic_write_max == 0 || pow2(i->atomic_write_max));
	ck_assert_uint_le(i->mem_align, i->offset_align);
	ck_assert_uint_le(i->offset_align, i->block_size);
	ck_assert_uint_ge(i->max_io, i->block_size);
}

START_TEST(test_image_file_info_comes_from_statx)
{
	char *img;
	struct dio_vol *v = t_fresh("info", 16, &img);
	struct dio_file *f = dio_open(v, "f", O_RDWR | O_CREAT);
	struct dio_info i;
	ck_assert_int_eq(dio_info(f, &i), 0);
	check_info_sane(&i);
	ck_assert_uint_eq(i.block_size, 4096);
	ck_assert(i.flags & DIO_INFO_FALLBACK);
	/* what the kernel says about the image file (0 on tmpfs: the safe pair) */
	int fd = open(img, O_RDONLY);
	struct statx sx;
	ck_assert_int_eq(statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx), 0);
	close(fd);
	if ((sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
		ck_assert_uint_eq(i.offset_align, sx.stx_dio_offset_align);
		ck_assert_uint_le(i.mem_align, sx.stx_dio_offset_align);
		ck_assert_uint_ge(i.mem_align, sx.stx_dio_mem_align);
	} else {
		ck_assert_uint_eq(i.offset_align, 4096);
		ck_assert_uint_eq(i.mem_align, 512);
	}
	struct dio_statvfs sv;
	ck_assert_int_eq(dio_statvfs(v, &sv), 0);
	ck_assert_uint_eq(sv.dev_logical_block_size, i.offset_align);
	ck_assert_str_ne(sv.backend, "");
	if (strcmp(t_backend(), "auto"))
		ck_assert_str_eq(sv.backend, t_backend());
	struct dio_file *s = dio_open(v, "f", O_RDWR | DIO_O_STRICT);
	ck_assert_int_eq(dio_info(s, &i), 0);
	ck_assert_uint_eq(i.flags & DIO_INFO_FALLBACK, 0);
	dio_close(s);
	dio_close(f);
	ck_assert_int_eq(dio_umount(v), 0);
	unlink(img);
	free(img);
}
END_TEST

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
	if (!make_loop(sector, dev, sizeof(dev), backing, sizeof(backing))) {
		fprintf(stderr, "SKIP loop device with %u-byte sectors: needs root and losetup "
			"(running as uid %d)\n", sector, (int)geteuid());
		return;
	}
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

int main(void)
{
	Suite *s = suite_create("info");
	TCase *tc = tcase_create("info");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_image_file_info_comes_from_statx);
	tcase_add_test(tc, test_loop_device_512_sectors);
	tcase_add_test(tc, test_loop_device_4096_sectors_bounces_512_aligned_writes);
	suite_add_tcase(s, tc);
	return t_run(s);
}
