/*
 * Alignment discovery on image files: dio_info reports the file
 * system's own values (statx), all powers of two; and the runtime
 * version is the one built.  Block devices: test_loopdev.c.
 */
#include "helpers.h"
#include <sys/stat.h>
#include <sys/vfs.h>

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
#ifdef STATX_DIOALIGN
	/* what the kernel says about the image file (0 on tmpfs: the safe
	   pair); the C library's statx, where it has one (musl 1.2 does not:
	   the values are still checked sane above) */
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
#endif
	/* DIO_INFO_MEMORY exactly when the image is on tmpfs */
	struct statfs sf;
	ck_assert_int_eq(statfs(img, &sf), 0);
	ck_assert_int_eq((i.flags & DIO_INFO_MEMORY) != 0, (unsigned long)sf.f_type == 0x01021994ul);
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

START_TEST(test_the_runtime_version_is_the_one_built)
{
	/* the library, the header and meson's project version agree */
	ck_assert_str_eq(dio_version(), DIO_PROJECT_VERSION);
	ck_assert_str_eq(dio_version(), DIO_VERSION_STRING);
	ck_assert_int_eq(dio_version_number(), DIO_VERSION_NUMBER);
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", DIO_VERSION_MAJOR, DIO_VERSION_MINOR, DIO_VERSION_PATCH);
	ck_assert_str_eq(dio_version(), want);
	ck_assert_int_eq(dio_version_number(), DIO_VERSION_MAJOR * 10000 + DIO_VERSION_MINOR * 100 + DIO_VERSION_PATCH);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("info");
	TCase *tc = tcase_create("info");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_image_file_info_comes_from_statx);
	tcase_add_test(tc, test_the_runtime_version_is_the_one_built);
	suite_add_tcase(s, tc);
	return t_run(s);
}
