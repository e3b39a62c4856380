/*
 * The device: exclusive open and geometry discovery, and dio_info(3).
 *
 * Every alignment value comes from the device (block ioctls and sysfs, or
 * statx STATX_DIOALIGN for an image file).  A file system that reports no
 * direct-I/O alignment (tmpfs says 0) gets the safe 512/4096 pair, never a
 * failure.  Values that are not powers of two are rounded down to one.
 */
#include "internal.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>

static uint64_t pow2_floor(uint64_t x)
{
	if (!x)
		return 0;
	return UINT64_C(1) << (63 - __builtin_clzll(x));
}

/*
 * A process that dies with a volume mounted releases it only when the
 * kernel has torn down its io_uring or aio contexts, which can take a
 * moment after the process is gone.  So a busy device is retried for
 * about half a second before EBUSY is final.
 */
#define BUSY_RETRIES 50
static void busy_wait(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

int dio_dev_open(const char *path, bool rdonly, bool create, uint64_t create_size, int *fdp)
{
	struct stat st;
	int fd, flags = (rdonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;

	if (stat(path, &st) < 0) {
		if (errno != ENOENT || !create)
			return -errno;
		if (!create_size)
			return -EINVAL;
		fd = open(path, flags | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			return -errno;
	} else if (S_ISBLK(st.st_mode)) {
		/* O_EXCL on a block device: EBUSY while anyone holds it so. */
		for (int tries = 0; (fd = open(path, flags | O_EXCL)) < 0 && errno == EBUSY &&
				    tries < BUSY_RETRIES; tries++)
			busy_wait();
		if (fd < 0)
			return -errno;
	} else if (S_ISREG(st.st_mode)) {
		fd = open(path, flags);
		if (fd < 0)
			return -errno;
	} else {
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0)
		goto fail;
	if (S_ISREG(st.st_mode)) {
		/* flock belongs to the open file description, so a second
		   mount conflicts even inside the same process. */
		int r;
		for (int tries = 0; (r = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EWOULDBLOCK &&
				    tries < BUSY_RETRIES; tries++)
			busy_wait();
		if (r < 0) {
			if (errno == EWOULDBLOCK)
				errno = EBUSY;
			goto fail;
		}
		if (create && create_size > (uint64_t)st.st_size &&
		    ftruncate(fd, (off_t)create_size) < 0)
			goto fail;
	}
	*fdp = fd;
	return 0;
fail:;
	int e = errno;
	close(fd);
	return -e;
}

/* Read a number from /sys/dev/block/MAJ:MIN/<rel>, or from the whole
   disk's queue directory when MAJ:MIN is a partition. */
static bool sysfs_u64(dev_t dev, const char *rel, uint64_t *out)
{
	char p[128], buf[64];
	const char *fmt[2] = { "/sys/dev/block/%u:%u/%s", "/sys/dev/block/%u:%u/../%s" };
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), fmt[i], major(dev), minor(dev), rel);
		FILE *f = fopen(p, "re");
		if (!f)
			continue;
		bool ok = fgets(buf, sizeof(buf), f) != NULL;
		fclose(f);
		if (!ok)
			continue;
		if (!strncmp(buf, "write back", 10)) { *out = 1; return true; }
		if (!strncmp(buf, "write through", 13)) { *out = 0; return true; }
		char *end;
		unsigned long long v = strtoull(buf, &end, 10);
		if (end == buf)
			continue;
		*out = v;
		return true;
	}
	return false;
}

static void probe_queue(dev_t dev, struct dio_geom *g)
{
	uint64_t v;
	if (sysfs_u64(dev, "queue/dma_alignment", &v))
		g->mem_align = (uint32_t)pow2_floor(v + 1);
	if (sysfs_u64(dev, "queue/max_sectors_kb", &v) && v)
		g->max_io = pow2_floor(v * 1024);
	if (sysfs_u64(dev, "queue/write_cache", &v))
		g->volatile_cache = v != 0;
	if (sysfs_u64(dev, "queue/atomic_write_unit_min_bytes", &v))
		g->atomic_min = (uint32_t)pow2_floor(v);
	if (sysfs_u64(dev, "queue/atomic_write_unit_max_bytes", &v))
		g->atomic_max = (uint32_t)pow2_floor(v);
	if (!g->opt_io && sysfs_u64(dev, "queue/optimal_io_size", &v))
		g->opt_io = (uint32_t)pow2_floor(v);
}

int dio_dev_probe(int fd, struct dio_geom *g)
{
	struct stat st;
	memset(g, 0, sizeof(*g));
	if (fstat(fd, &st) < 0)
		return -errno;
	g->volatile_cache = true;     /* assume the worst until told */
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		int lbs = 0;
		unsigned pbs = 0, opt = 0;
		g->is_blockdev = true;
		if (ioctl(fd, BLKGETSIZE64, &sz) < 0 || ioctl(fd, BLKSSZGET, &lbs) < 0)
			return -errno;
		if (ioctl(fd, BLKPBSZGET, &pbs) < 0)
			pbs = (unsigned)lbs;
		if (ioctl(fd, BLKIOOPT, &opt) < 0)
			opt = 0;
		g->size = sz;
		g->logical_bs = (uint32_t)lbs;
		g->physical_bs = pbs;
		g->opt_io = (uint32_t)pow2_floor(opt);
		g->mem_align = (uint32_t)lbs;
		probe_queue(st.st_rdev, g);
	} else {
		struct statx sx;
		g->size = (uint64_t)st.st_size;
		g->physical_bs = (uint32_t)pow2_floor((uint64_t)st.st_blksize);
		if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
		    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
			g->logical_bs = sx.stx_dio_offset_align;
			g->mem_align = sx.stx_dio_mem_align;
		}
		if (!g->logical_bs) {
			/* tmpfs and friends report nothing: a safe pair. */
			g->logical_bs = 4096;
			g->mem_align = 512;
		}
		probe_queue(st.st_dev, g);
		/* The file system does not hand our atomic writes down untorn. */
		g->atomic_min = g->atomic_max = 0;
	}
	g->logical_bs = (uint32_t)pow2_floor(g->logical_bs);
	if (!g->mem_align || g->mem_align > g->logical_bs)
		g->mem_align = g->logical_bs;
	g->mem_align = (uint32_t)pow2_floor(g->mem_align);
	if (!g->physical_bs || g->physical_bs < g->logical_bs)
		g->physical_bs = g->logical_bs;
	if (!g->max_io)
		g->max_io = 1u << 20;
	if (g->max_io < g->logical_bs)
		g->max_io = g->logical_bs;
	if (g->atomic_max < g->atomic_min)
		g->atomic_min = g->atomic_max = 0;
	return 0;
}

/* dio_info's values for a handle of volume v (strict: DIO_O_STRICT);
   dio info(1) shows the same without opening a file. */
void vol_info(const struct dio_vol *v, bool strict, struct dio_info *info)
{
	const struct dio_geom *g = &v->geom;
	memset(info, 0, sizeof(*info));
	info->mem_align = g->mem_align;
	info->offset_align = g->logical_bs;
	info->block_size = v->bs;
	info->opt_io = g->opt_io;
	info->max_io = g->max_io;
	/* libdio does not submit RWF_ATOMIC writes yet, so it promises no
	   untorn unit beyond one logical block: report none. */
	info->atomic_write_min = 0;
	info->atomic_write_max = 0;
	if (!strict)
		info->flags |= DIO_INFO_FALLBACK;
	if (g->volatile_cache)
		info->flags |= DIO_INFO_VOLATILE_CACHE;
}

DIO_API int dio_info(struct dio_file *f, struct dio_info *info)
{
	if (file_check(f) < 0)
		return -1;
	if (!info) {
		errno = EINVAL;
		return -1;
	}
	vol_info(f->vol, (f->flags & DIO_O_STRICT) != 0, info);
	return 0;
}
