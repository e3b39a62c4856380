/*
 * libFuzzer target: mount a damaged volume and read everything in it.
 *
 * At start-up it builds real volumes in several states in memory (empty;
 * files of every extent kind; a pending journal from a crash; after
 * checkpoints; bad blocks; a preallocated file written here and there,
 * checkpointed and in the journal...).  An input picks one and patches its
 * metadata area: [u8 seed][u8 flags] then records {u32 offset, u8 len,
 * len bytes}.  With flags bit 0 every checkpoint and journal block (and
 * superblock) is re-sealed with a correct CRC, so the damage reaches the
 * parsers instead of stopping at the checksum.  The volume is served by an
 * in-memory backend.  Mount must fail cleanly (EUCLEAN/EINVAL) or succeed,
 * and then every file must read without a crash.
 *
 *   fuzz_mount -max_total_time=120 CORPUS   (seed inputs: see gen_seeds)
 */
#include "../helpers.h"
#include "../crashmodel.h"
#include "../../lib/internal.h"

#define VOL_SIZE (8u << 20)
#define NSEEDS 8

static uint8_t *seeds[NSEEDS];
static size_t meta_len;          /* bytes of the metadata area */
static uint8_t *img;             /* the image the backend serves */
static char path[256];

static int m_probe(void) { return 0; }
static void *m_open(int fd, unsigned depth, int *err) { (void)fd; (void)depth; (void)err; return img; }
static void m_close(void *c) { (void)c; }
static int m_flush(void *c) { (void)c; return 0; }
static int m_submit(void *ctx, struct dio_bio *bios, unsigned n)
{
	(void)ctx;
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = bios[i].offset;
		size_t total = 0;
		for (int k = 0; k < bios[i].iovcnt; k++) {
			size_t len = bios[i].iov[k].iov_len;
			if (off + len > VOL_SIZE) {
				/* libdio must never ask for this */
				fprintf(stderr, "fuzz_mount: I/O at %llu+%zu past the device's end\n",
					(unsigned long long)off, len);
				abort();
			}
			if (bios[i].op == DIO_BIO_READ)
				memcpy(bios[i].iov[k].iov_base, img + off, len);
			else
				memcpy(img + off, bios[i].iov[k].iov_base, len);
			off += len;
			total += len;
		}
		bios[i].res = (ssize_t)total;
	}
	return 0;
}
static const struct dio_backend_ops memdev = {
	.abi = DIO_BACKEND_ABI, .name = "fuzzmem", .probe = m_probe, .open = m_open,
	.submit = m_submit, .flush = m_flush, .close = m_close,
};
static const struct dio_mount_opts mo = { .backend = "fuzzmem" };

/* libdio's messages stay quiet; the last one is shown if the run aborts */
static char last_msg[256];
static void quiet(int l, const char *m, void *a)
{
	(void)l;
	(void)a;
	snprintf(last_msg, sizeof(last_msg), "%s", m);
}

/* A preallocated file written at scattered blocks: one extent in core
   with a bitmap of its written blocks, runs in the checkpoint. */
static void scatter(struct dio_vol *v)
{
	struct dio_file *f = dio_open(v, "pre", O_RDWR | O_CREAT);
	void *buf = aligned_alloc(4096, 4096);
	if (!f || !buf || dio_fallocate(f, 0, 0, 128 * 4096))
		abort();
	memset(buf, 0x5a, 4096);
	for (int i = 0; i < 30; i++)
		if (dio_pwrite(f, buf, 4096, (off_t)(1 + (i * 37) % 126) * 4096) != 4096)
			abort();
	dio_close(f);
	free(buf);
}

/* Run `nops` crash-model ops (or, with nops -1, scatter) on a fresh
   volume; umount unless `crash`. */
static void make_seed(int idx, int nops, uint64_t seed, bool crash)
{
	memset(img, 0, VOL_SIZE);
	int fd = open(path, O_RDWR);
	if (fd < 0 || pwrite(fd, img, VOL_SIZE, 0) != VOL_SIZE)
		abort();
	close(fd);
	struct dio_mkfs_opts o = { .size = VOL_SIZE, .journal_size = 64 << 10, .flags = DIO_MKFS_FORCE };
	if (dio_mkfs(path, &o)) {
		perror("fuzz_mount: dio_mkfs");
		abort();
	}
	fd = open(path, O_RDONLY);
	if (pread(fd, img, VOL_SIZE, 0) != VOL_SIZE)
		abort();
	close(fd);
	if (nops) {
		static struct cm_op ops[200];
		struct dio_vol *v = dio_mount(path, &mo);
		if (!v)
			abort();
		if (nops < 0) {
			scatter(v);
		} else {
			cm_gen(ops, nops, seed);
			struct dio_file *h[CM_FILES], *hs[CM_FILES];
			cm_open(v, h, hs);
			for (int i = 0; i < nops; i++)
				cm_exec(v, h, hs, &ops[i]);
			cm_close(h, hs);
		}
		uint8_t *at_crash = malloc(VOL_SIZE);
		memcpy(at_crash, img, VOL_SIZE);   /* the device as a crash would leave it */
		dio_umount(v);
		if (crash)
			memcpy(img, at_crash, VOL_SIZE);
		free(at_crash);
	}
	struct dio_sb sb;
	if (sb_decode(img, &sb))
		abort();
	meta_len = sb.data_start * sb.block_size;
	seeds[idx] = malloc(VOL_SIZE);
	memcpy(seeds[idx], img, VOL_SIZE);
}

static void remove_image(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	dio_set_log(quiet, NULL);
	snprintf(path, sizeof(path), "/dev/shm/libdio-fuzz-%d.img", getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, VOL_SIZE))
		abort();
	close(fd);
	atexit(remove_image);   /* libFuzzer leaves through exit(), also after a crash report */
	img = aligned_alloc(4096, VOL_SIZE);
	dio_backend_register(&memdev);
	make_seed(0, 0, 1, false);       /* empty */
	make_seed(1, 40, 2, false);      /* files, clean */
	make_seed(2, 60, 3, true);       /* pending journal */
	make_seed(3, 150, 4, true);      /* journal wrapped, checkpoints */
	make_seed(4, 120, 5, false);     /* many extents, punched, truncated */
	make_seed(5, 20, 6, true);       /* early crash */
	make_seed(6, -1, 0, false);      /* scattered writes into preallocated space */
	make_seed(7, -1, 0, true);       /* the same, in the journal */
	return 0;
}

static int read_cb(const char *name, const struct dio_stat *st, void *arg)
{
	struct dio_vol *v = arg;
	struct dio_file *f = dio_open(v, name, O_RDONLY);
	static uint8_t *b;
	if (!b)
		b = aligned_alloc(4096, 1 << 20);
	if (!f)
		return 0;
	for (uint64_t off = 0; off < st->size && off < (16u << 20); off += 1 << 20)
		dio_pread(f, b, 1 << 20, (off_t)off);
	dio_pread(f, b + 1, 777, 4095);
	dio_lseek(f, 0, SEEK_DATA);
	dio_close(f);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	memcpy(img, seeds[data[0] % NSEEDS], VOL_SIZE);
	bool reseal = data[1] & 1;
	size_t p = 2;
	while (p + 5 <= size) {
		uint32_t off = get_le32(data + p) % (uint32_t)meta_len;
		uint8_t len = data[p + 4];
		p += 5;
		for (uint8_t k = 0; k < len && p < size && off + k < meta_len; k++)
			img[off + k] = data[p++];
	}
	if (reseal) {
		uint32_t bs = get_le32(img + 24);
		if (bs >= 512 && bs <= 65536 && !(bs & (bs - 1))) {
			for (size_t b = 0; b + bs <= meta_len; b += bs) {
				uint8_t *q = img + b;
				uint32_t magic = get_le32(q);
				if (magic == DIO_MAGIC_JRNL || magic == DIO_MAGIC_CKPT) {
					struct dio_mblk_hdr h = { magic, 0, get_le64(q + 8), get_le64(q + 16),
								  get_le64(q + 24), get_le32(q + 32), get_le32(q + 36) };
					mblk_seal(q, bs, &h);
				}
			}
			for (int s = 0; s < 2; s++)
				if ((size_t)(s + 1) * bs <= meta_len && get_le64(img + (size_t)s * bs) == DIO_MAGIC_SB)
					put_le32(img + (size_t)s * bs + 252, dio_crc32c(0, img + (size_t)s * bs, 252));
		}
	}
	struct dio_vol *v = dio_mount(path, &mo);
	if (!v) {
		if (errno != EUCLEAN && errno != EINVAL) {
			fprintf(stderr, "fuzz_mount: mount failed with %s, not EUCLEAN or EINVAL (last message: %s)\n",
				strerror(errno), last_msg);
			abort();
		}
		return 0;
	}
	dio_list(v, NULL, read_cb, v);
	if (dio_umount(v)) {
		fprintf(stderr, "fuzz_mount: umount after a good mount failed: %s (last message: %s)\n",
			strerror(errno), last_msg);
		abort();
	}
	return 0;
}
