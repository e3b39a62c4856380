/*
 * The Linux platform: exclusive open, geometry discovery, durable writes,
 * random bytes (platform.h says what each promises).
 *
 * Every alignment value comes from the device (block ioctls and sysfs, or
 * statx STATX_DIOALIGN for an image file).  A file system that reports no
 * direct-I/O alignment (tmpfs says 0) gets the safe 512/4096 pair, never a
 * failure.  Values that are not powers of two are rounded down to one.
 *
 * Builds with glibc and with musl: what a C library may lack (statx,
 * pwritev2, <linux/fs.h>) is reached through the raw system call or the
 * kernel's own numbers, which are part of its ABI.
 */
#include "internal.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#if defined(__has_include)
#if __has_include(<linux/fs.h>)
#include <linux/fs.h>
#endif
#endif

/* The kernel's block-device ioctls, where no <linux/fs.h> defines them
   (musl's headers carry none of the kernel's). */
#ifndef BLKGETSIZE64
#define BLKGETSIZE64 _IOR(0x12, 114, size_t)
#endif
#ifndef BLKSSZGET
#define BLKSSZGET _IO(0x12, 104)
#endif
#ifndef BLKPBSZGET
#define BLKPBSZGET _IO(0x12, 123)
#endif
#ifndef BLKIOOPT
#define BLKIOOPT _IO(0x12, 121)
#endif
#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

/* ---- the system calls tests may replace ------------------------------------ */

static ssize_t sys_pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
#if defined(DIO_HAVE_PWRITEV2)
	return pwritev2(fd, iov, iovcnt, off, flags);
#elif defined(SYS_pwritev2)
	/* the kernel takes the offset as two longs, low then high */
	uint64_t o = (uint64_t)off;
	return syscall(SYS_pwritev2, fd, iov, iovcnt, (long)o, (long)(o >> (sizeof(long) * 4) >> (sizeof(long) * 4)),
		       flags);
#else
	(void)fd, (void)iov, (void)iovcnt, (void)off, (void)flags;
	errno = ENOSYS;
	return -1;
#endif
}

struct dio_syscalls dio_sys = { sys_pwritev2, pwritev, fdatasync };

/* ---- durable writes ---------------------------------------------------------- */

/* RWF_DSYNC: 1 works, 0 not here (ENOSYS from an old kernel or an
   emulator, EOPNOTSUPP from a file system), -1 not tried yet. */
static atomic_int dsync_works = -1;

void dio_platform_reset(void)
{
	atomic_store(&dsync_works, -1);
}

/* Without RWF_DSYNC: the write, then a data sync of the whole file, which
   the write's being durable needs (and which covers more: no harm). */
static ssize_t write_then_sync(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	ssize_t r = dio_sys.pwritev(fd, iov, iovcnt, off);
	if (r >= 0 && dio_sys.fdatasync(fd) < 0)
		return -1;
	return r;
}

ssize_t dio_dev_pwritev_fua(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	int works = atomic_load_explicit(&dsync_works, memory_order_relaxed);
	if (works == 0)
		return write_then_sync(fd, iov, iovcnt, off);
	ssize_t r = dio_sys.pwritev2(fd, iov, iovcnt, off, RWF_DSYNC);
	if (r >= 0 || works == 1)
		return r;
	int e = errno;
	if (e != ENOSYS && e != EOPNOTSUPP && e != EINVAL)
		return r;
	/* EINVAL may be the flag or the request: a plain write tells */
	r = write_then_sync(fd, iov, iovcnt, off);
	if (r >= 0 || errno != e) {
		atomic_store(&dsync_works, 0);
		dio_log(DIO_LOG_INFO, "pwritev2 RWF_DSYNC is not available (%s): durable writes are a write "
			"and fdatasync", strerror(e));
	}
	return r;
}

void dio_dev_bio(int fd, struct dio_bio *b)
{
	/* one buffer: pread/pwrite, which the kernel serves without
	   importing an iovec (5 % of a 4 KiB read from tmpfs) */
	ssize_t r;
	bool one = b->iovcnt == 1;
	if (b->op == DIO_BIO_READ)
		r = one ? pread(fd, b->iov[0].iov_base, b->iov[0].iov_len, (off_t)b->offset)
			: preadv(fd, b->iov, b->iovcnt, (off_t)b->offset);
	else if (b->flags & DIO_BIO_FUA)
		r = dio_dev_pwritev_fua(fd, b->iov, b->iovcnt, (off_t)b->offset);
	else
		r = one ? pwrite(fd, b->iov[0].iov_base, b->iov[0].iov_len, (off_t)b->offset)
			: pwritev(fd, b->iov, b->iovcnt, (off_t)b->offset);
	b->res = r < 0 ? -errno : r;
}

bool dio_dev_never_async(int fd)
{
	/* io_uring issues with IOCB_NOWAIT; shmem cannot honour it for
	   direct I/O (a write takes the inode lock), so every such I/O is
	   punted to an io-wq worker and the submitter sleeps until it wakes
	   (reads measured too) */
	struct statfs sf;
	return fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == 0x01021994ul;   /* TMPFS_MAGIC */
}

/* Linux keeps POSIX shared memory as files in /dev/shm. */
void dio_shm_list(const char *prefix, void (*cb)(const char *name, void *arg), void *arg)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	size_t k = strlen(prefix);
	for (struct dirent *e; (e = readdir(d));)
		if (!strncmp(e->d_name, prefix, k))
			cb(e->d_name, arg);
	closedir(d);
}

void dio_random(void *buf, size_t len)
{
	if (getrandom(buf, len, 0) == (ssize_t)len)
		return;
	/* no getrandom (an old kernel): good enough for a uuid */
	uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)buf;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		((uint8_t *)buf)[i] = (uint8_t)x;
	}
}

/* ---- exclusive open ---------------------------------------------------------- */

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

int dio_dev_open(const char *path, bool rdonly, bool create, uint64_t create_size, int *fdp, bool *created)
{
	struct stat st;
	int fd, flags = (rdonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;
	*created = false;

	if (stat(path, &st) < 0) {
		if (errno != ENOENT || !create)
			return -errno;
		if (!create_size)
			return -EINVAL;
		fd = open(path, flags | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			return -errno;
		*created = true;
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
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
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
	if (*created)
		unlink(path);
	*created = false;
	return -e;
}

void dio_dev_release(int fd)
{
	flock(fd, LOCK_UN);
}

/* ---- geometry ------------------------------------------------------------------ */

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

/*
 * statx STATX_DIOALIGN through the raw system call, with the kernel's own
 * layout of struct statx (fixed by its ABI): a C library may not know the
 * fields yet (glibc before 2.37 knows no stx_dio_*, musl 1.2 no statx).
 */
struct kstatx {
	uint32_t mask, blksize;
	uint64_t attributes;
	uint32_t nlink, uid, gid;
	uint16_t mode, spare0;
	uint64_t ino, size, blocks, attributes_mask;
	struct { int64_t sec; uint32_t nsec; int32_t reserved; } atime, btime, ctime, mtime;
	uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
	uint64_t mnt_id;
	uint32_t dio_mem_align, dio_offset_align;
	uint64_t spare3[12];
};
#define KSTATX_DIOALIGN 0x00002000u

static void dio_align_of_file(int fd, uint32_t *offset_align, uint32_t *mem_align)
{
#ifdef SYS_statx
	struct kstatx sx;
	memset(&sx, 0, sizeof(sx));
	if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, KSTATX_DIOALIGN, &sx) == 0 &&
	    (sx.mask & KSTATX_DIOALIGN) && sx.dio_offset_align) {
		*offset_align = sx.dio_offset_align;
		*mem_align = sx.dio_mem_align;
	}
#else
	(void)fd, (void)offset_align, (void)mem_align;
#endif
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
		g->size = (uint64_t)st.st_size;
		g->physical_bs = (uint32_t)pow2_floor((uint64_t)st.st_blksize);
		dio_align_of_file(fd, &g->logical_bs, &g->mem_align);
		if (!g->logical_bs) {
			/* tmpfs and friends report nothing: a safe pair. */
			g->logical_bs = 4096;
			g->mem_align = 512;
		}
		probe_queue(st.st_dev, g);
		g->memory = dio_dev_never_async(fd);
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

int64_t dio_clock_coarse_ns(void)
{
	struct timespec ts;
#ifdef CLOCK_REALTIME_COARSE
	if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0)
		return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
