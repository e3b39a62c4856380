/*
 * fsx-style: a long random sequence of writes, reads, truncates,
 * fallocates (all modes), syncs and remounts against an exact in-memory
 * model.  Every read is compared byte for byte; after every remount the
 * whole file is.  DIO_FSX_OPS sets the length (default 10000).
 */
#include "helpers.h"

#define MAXSZ (4u << 20)
#define NF 2

static char *img;
static uint8_t *model[NF];
static uint64_t msize[NF];
static struct dio_vol *vol;
static struct dio_file *fh[NF];
static uint8_t *buf;
static const char *names[NF] = { "fsx/a", "fsx/b" };

static void open_all(void)
{
	for (int i = 0; i < NF; i++) {
		fh[i] = dio_open(vol, names[i], O_RDWR | O_CREAT | (i ? DIO_O_CONCURRENT : 0));
		ck_assert_ptr_nonnull(fh[i]);
	}
}

static void compare(int fi, uint64_t off, uint64_t len, unsigned shift, long op)
{
	uint64_t want = off >= msize[fi] ? 0 : MIN_SZ(len, msize[fi] - off);
	ssize_t n = dio_pread(fh[fi], buf + shift, len, (off_t)off);
	ck_assert_msg(n == (ssize_t)want, "op %ld: read %s at %llu+%llu returned %zd, want %llu (%s)", op,
		      names[fi], (unsigned long long)off, (unsigned long long)len, n,
		      (unsigned long long)want, strerror(errno));
	for (uint64_t i = 0; i < want; i++)
		if (buf[shift + i] != model[fi][off + i])
			ck_abort_msg("op %ld: %s byte %llu is %u, model %u", op, names[fi],
				     (unsigned long long)(off + i), buf[shift + i], model[fi][off + i]);
}

static void remount(void)
{
	for (int i = 0; i < NF; i++)
		ck_assert_int_eq(dio_close(fh[i]), 0);
	ck_assert_int_eq(dio_umount(vol), 0);
	vol = t_mount(img);
	ck_assert_ptr_nonnull(vol);
	open_all();
}

static void set_size(int fi, uint64_t s)
{
	if (s < msize[fi])
		memset(model[fi] + s, 0, msize[fi] - s);
	msize[fi] = s;
}

START_TEST(test_random_operations_match_model_across_remounts)
{
	long nops = getenv("DIO_FSX_OPS") ? atol(getenv("DIO_FSX_OPS")) : 10000;
	const char *b = t_backend();
	t_seed(0xF5C0 + (uint64_t)b[0] * 31 + (uint64_t)b[1]);
	vol = t_fresh("fsx", 64, &img);
	for (int i = 0; i < NF; i++) {
		model[i] = calloc(1, MAXSZ);
		msize[i] = 0;
	}
	ck_assert(posix_memalign((void **)&buf, 4096, MAXSZ + 8192) == 0);
	open_all();
	long counts[9] = { 0 };
	for (long op = 0; op < nops; op++) {
		int fi = (int)(t_rand() % NF);
		unsigned r = (unsigned)(t_rand() % 100);
		bool aligned = t_rand() % 2;
		uint64_t off = t_rand() % MAXSZ, len = 1 + t_rand() % (t_rand() % 8 ? 20000 : 600000);
		unsigned shift = aligned ? 0 : (unsigned)(t_rand() % 4096);
		if (aligned) {
			off &= ~4095ull;
			len = (len + 4095) & ~4095ull;
		}
		if (off + len > MAXSZ)
			len = MAXSZ - off;
		if (!len)
			continue;
		if (r < 40) {                       /* write, sometimes vectored */
			t_fill(buf + shift, len, (uint32_t)fi, (uint32_t)op, off);
			ssize_t n;
			if (r < 10 && len >= 3) {
				size_t a = len / 3, c = len - 2 * a;
				struct iovec iov[3] = { { buf + shift, a }, { buf + shift + a, a },
							{ buf + shift + 2 * a, c } };
				n = dio_pwritev(fh[fi], iov, 3, (off_t)off);
			} else {
				n = dio_pwrite(fh[fi], buf + shift, len, (off_t)off);
			}
			ck_assert_msg(n == (ssize_t)len, "op %ld: write: %s", op, strerror(errno));
			memcpy(model[fi] + off, buf + shift, len);
			if (off + len > msize[fi])
				msize[fi] = off + len;
			counts[0]++;
		} else if (r < 70) {                /* read */
			compare(fi, off, len, shift, op);
			counts[1]++;
		} else if (r < 76) {                /* truncate */
			uint64_t s = t_rand() % 3 ? off : off / 7;
			ck_assert_int_eq(dio_ftruncate(fh[fi], (off_t)s), 0);
			set_size(fi, s);
			counts[2]++;
		} else if (r < 90) {                /* fallocate */
			static const int modes[] = { 0, DIO_FALLOC_KEEP_SIZE,
				DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, DIO_FALLOC_ZERO_RANGE,
				DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE };
			int mode = modes[t_rand() % 5];
			ck_assert_msg(dio_fallocate(fh[fi], mode, (off_t)off, (off_t)len) == 0,
				      "op %ld: fallocate mode %d: %s", op, mode, strerror(errno));
			if (mode & (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE)) {
				uint64_t e = MIN_SZ(off + len, msize[fi]);
				if (off < e)
					memset(model[fi] + off, 0, e - off);
			}
			if (!(mode & DIO_FALLOC_KEEP_SIZE) && off + len > msize[fi])
				msize[fi] = off + len;
			counts[3 + (mode & DIO_FALLOC_PUNCH_HOLE ? 1 : 0)]++;
		} else if (r < 96) {
			ck_assert_int_eq(r % 2 ? dio_fsync(fh[fi]) : dio_fdatasync(fh[fi]), 0);
			counts[5]++;
		} else if (r < 98) {
			struct dio_stat st;
			ck_assert_int_eq(dio_fstat(fh[fi], &st), 0);
			ck_assert_uint_eq(st.size, msize[fi]);
			counts[6]++;
		} else {
			remount();
			for (int i = 0; i < NF; i++)
				compare(i, 0, MAXSZ, 0, op);
			counts[7]++;
		}
	}
	remount();
	for (int i = 0; i < NF; i++)
		compare(i, 0, MAXSZ, 0, nops);
	fprintf(stderr, "fsx %s: %ld ops: %ld writes %ld reads %ld truncates %ld fallocates %ld punches "
		"%ld syncs %ld stats %ld remounts\n", t_backend(), nops, counts[0], counts[1], counts[2],
		counts[3], counts[4], counts[5], counts[6], counts[7]);
	for (int i = 0; i < NF; i++)
		dio_close(fh[i]);
	ck_assert_int_eq(dio_umount(vol), 0);
	unlink(img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fsx");
	TCase *tc = tcase_create("fsx");
	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, test_random_operations_match_model_across_remounts);
	suite_add_tcase(s, tc);
	return t_run(s);
}
