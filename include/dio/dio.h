/*
 * libdio — O_DIRECT files on a raw block device or an image file.
 *
 * One public header.  Every call that mirrors POSIX returns -1 (or NULL)
 * and sets errno; see libdio(7) for the alignment, fallback, durability,
 * error and concurrency rules, and the man page of each function.
 */
#ifndef DIO_DIO_H
#define DIO_DIO_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* off_t crosses this interface (offsets, struct dio_req): a 32-bit
   program built without -D_FILE_OFFSET_BITS=64 would hand the library
   offsets of the wrong width.  pkg-config --cflags libdio gives it. */
#if defined(__cplusplus) && __cplusplus >= 201103L
static_assert(sizeof(off_t) == 8, "libdio needs a 64-bit off_t: compile with -D_FILE_OFFSET_BITS=64 "
			      "(pkg-config --cflags libdio)");
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(off_t) == 8, "libdio needs a 64-bit off_t: compile with -D_FILE_OFFSET_BITS=64 "
			      "(pkg-config --cflags libdio)");
#else
typedef char dio_needs_a_64_bit_off_t__compile_with_D_FILE_OFFSET_BITS_64[sizeof(off_t) == 8 ? 1 : -1];
#endif

#define DIO_VERSION_MAJOR 0
#define DIO_VERSION_MINOR 1
#define DIO_VERSION_PATCH 0
#define DIO_VERSION_STRING "0.1.0"
#define DIO_VERSION_NUMBER (DIO_VERSION_MAJOR * 10000 + DIO_VERSION_MINOR * 100 + DIO_VERSION_PATCH)

/* The library a program runs against, which may be newer than the header
   it was built with: "MAJOR.MINOR.PATCH", and as DIO_VERSION_NUMBER. */
const char *dio_version(void);
int dio_version_number(void);

/* ---- volumes ---------------------------------------------------------- */

#define DIO_MKFS_FORCE   0x1u   /* overwrite an existing libdio volume */
#define DIO_MOUNT_RDONLY 0x1u   /* read-only mount: nothing is written */

struct dio_mkfs_opts {
	uint32_t block_size;     /* 0: max(4096, device logical block size) */
	uint64_t size;           /* bytes; 0: the whole device or file */
	uint64_t journal_size;   /* bytes; 0: a default scaled to the size */
	const char *label;       /* up to 63 bytes, may be NULL */
	unsigned flags;          /* DIO_MKFS_FORCE */
};

struct dio_backend_ops;   /* <dio/backend.h> */

struct dio_mount_opts {
	const char *backend;     /* NULL/"auto", "uring", "aio", "psync" or a registered name */
	unsigned queue_depth;    /* per backend context; 0: default (64) */
	unsigned flags;          /* DIO_MOUNT_RDONLY */
	const struct dio_backend_ops *ops;   /* a backend table to use as is; wins over
	                                        backend and DIO_BACKEND; NULL: by name */
};

#define DIO_BACKEND_NAME_MAX 16

struct dio_statvfs {
	uint32_t block_size;
	uint32_t dev_logical_block_size;
	uint64_t total_blocks;   /* data blocks of the volume */
	uint64_t free_blocks;    /* blocks an allocation can take now */
	uint64_t nfiles;
	char backend[DIO_BACKEND_NAME_MAX];
	uint64_t files_free;     /* about how many more files the metadata area takes */
};

struct dio_counters {
	uint64_t reads;          /* read requests served */
	uint64_t writes;         /* write requests served */
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t device_ios;     /* I/Os handed to the backend */
	uint64_t bounced;        /* requests served through bounce buffers */
	uint64_t rmw_blocks;     /* blocks read back to merge a partial write */
	uint64_t journal_commits;/* journal transactions and checkpoints written */
	uint64_t flushes;        /* cache flushes sent to the device */
};

struct dio_vol;
struct dio_file;
struct dio_queue;

int             dio_mkfs(const char *path, const struct dio_mkfs_opts *opts);
struct dio_vol *dio_mount(const char *path, const struct dio_mount_opts *opts);
int             dio_umount(struct dio_vol *vol);
int             dio_syncfs(struct dio_vol *vol);
int             dio_statvfs(struct dio_vol *vol, struct dio_statvfs *st);
int             dio_counters(struct dio_vol *vol, struct dio_counters *c);

#define DIO_LOG_ERR   3
#define DIO_LOG_WARN  4
#define DIO_LOG_INFO  6
void dio_set_log(void (*fn)(int level, const char *msg, void *arg), void *arg);

/* Offline check of an unmounted volume: each problem goes to report();
   returns 0 if clean, 1 if problems were found, -1 with errno if the check
   could not run.  No flags are defined yet (pass 0): it never writes. */
#define DIO_FSCK_ERROR 1
#define DIO_FSCK_WARN  2
int dio_fsck(const char *path, unsigned flags,
             void (*report)(int severity, const char *problem, void *arg), void *arg);

/* ---- files ------------------------------------------------------------ */

/* Bits beyond every O_ flag Linux defines (O_TMPFILE tops out at 0x410000). */
#define DIO_O_STRICT     0x10000000  /* refuse misaligned requests (EINVAL) */
#define DIO_O_CONCURRENT 0x20000000  /* aligned requests not ordered against each other */

#define DIO_NAME_MAX     255
#define DIO_MAX_FILE_SIZE (UINT64_C(1) << 48)   /* 256 TiB: EFBIG beyond */

#define DIO_FALLOC_KEEP_SIZE   0x01
#define DIO_FALLOC_PUNCH_HOLE  0x02
#define DIO_FALLOC_ZERO_RANGE  0x10

struct dio_stat {
	uint64_t id;             /* stable file id, never reused within a volume */
	uint64_t size;           /* bytes */
	uint64_t allocated;      /* bytes of blocks held (written or unwritten) */
	uint64_t nextents;       /* extents in the file's map */
	uint32_t block_size;
	int64_t mtime_ns;        /* last modification, ns since the epoch (0: unknown) */
};

struct dio_file *dio_open(struct dio_vol *vol, const char *name, int flags);
int     dio_close(struct dio_file *f);
ssize_t dio_pread(struct dio_file *f, void *buf, size_t count, off_t offset);
ssize_t dio_pwrite(struct dio_file *f, const void *buf, size_t count, off_t offset);
ssize_t dio_preadv(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset);
ssize_t dio_pwritev(struct dio_file *f, const struct iovec *iov, int iovcnt, off_t offset);
int     dio_fsync(struct dio_file *f);
int     dio_fdatasync(struct dio_file *f);
int     dio_ftruncate(struct dio_file *f, off_t length);
int     dio_fallocate(struct dio_file *f, int mode, off_t offset, off_t len);
off_t   dio_lseek(struct dio_file *f, off_t offset, int whence);
int     dio_fstat(struct dio_file *f, struct dio_stat *st);
int     dio_stat(struct dio_vol *vol, const char *name, struct dio_stat *st);
int     dio_unlink(struct dio_vol *vol, const char *name);
int     dio_rename(struct dio_vol *vol, const char *oldname, const char *newname);
int     dio_set_mtime(struct dio_file *f, int64_t mtime_ns);
int     dio_list(struct dio_vol *vol, const char *prefix,
                 int (*cb)(const char *name, const struct dio_stat *st, void *arg),
                 void *arg);
/* one level, '/' separating directories: a subdirectory once, as
   "DIR/SUB/" with st NULL */
int     dio_listdir(struct dio_vol *vol, const char *dir,
                    int (*cb)(const char *name, const struct dio_stat *st, void *arg),
                    void *arg);

/* ---- alignment discovery ---------------------------------------------- */

#define DIO_INFO_FALLBACK        0x1u  /* misaligned requests are served, not refused */
#define DIO_INFO_VOLATILE_CACHE  0x2u  /* the device has a volatile write cache */
#define DIO_INFO_MEMORY          0x4u  /* the target is memory (tmpfs): a request is a
                                          copy, not a device wait, and submitting it
                                          asynchronously overlaps nothing */

struct dio_info {
	uint32_t mem_align;
	uint32_t offset_align;
	uint32_t block_size;
	uint32_t opt_io;
	uint64_t max_io;
	uint32_t atomic_write_min;
	uint32_t atomic_write_max;
	uint32_t flags;
};

int dio_info(struct dio_file *f, struct dio_info *info);

/* ---- async queues ------------------------------------------------------ */

#define DIO_OP_READ      1
#define DIO_OP_WRITE     2
#define DIO_OP_READV     3
#define DIO_OP_WRITEV    4
#define DIO_OP_FSYNC     5
#define DIO_OP_FDATASYNC 6

struct dio_req {
	int op;                     /* DIO_OP_* */
	struct dio_file *file;
	void *buf;                  /* READ, WRITE */
	const struct iovec *iov;    /* READV, WRITEV */
	int iovcnt;
	size_t len;                 /* READ, WRITE */
	off_t offset;
	uint64_t user_data;         /* returned in the completion */
};

struct dio_cqe {
	uint64_t user_data;
	ssize_t res;                /* bytes, or -errno */
};

struct dio_queue *dio_queue_create(struct dio_vol *vol, unsigned entries);
/* DIO_QUEUE_SINGLE_THREAD: only the creating thread ever uses the queue
   (calls from another thread fail with EPERM); lets io_uring bind the
   ring to it (SINGLE_ISSUER|DEFER_TASKRUN). */
#define DIO_QUEUE_SINGLE_THREAD 0x1u
struct dio_queue *dio_queue_create_flags(struct dio_vol *vol, unsigned entries, unsigned flags);
void dio_queue_destroy(struct dio_queue *q);
int  dio_submit(struct dio_queue *q, const struct dio_req *reqs, unsigned nr);
int  dio_reap(struct dio_queue *q, struct dio_cqe *cqes, unsigned min_nr, unsigned max_nr, int timeout_ms);
/* Optional: buffers requests of this queue will use (io_uring
   READ_FIXED/WRITE_FIXED); nr 0 drops them.  0, or -1/errno. */
int  dio_queue_register_buffers(struct dio_queue *q, const struct iovec *iov, unsigned nr);
/* A file descriptor (an eventfd, owned by the queue) that polls readable
   whenever the queue may have completions to reap: for epoll and other
   event loops.  dio_reap resets it.  The descriptor, or -1/errno. */
int  dio_queue_fd(struct dio_queue *q);

#ifdef __cplusplus
}
#endif
#endif
