/*
 * librocksdb_libdio internals: a RocksDB FileSystem over a libdio volume.
 *
 *   mount.cc  the process's mounts, shared by every FileSystem object
 *             and file of a volume, unmounted at the last user and at exit
 *   fs.cc     the FileSystem: names, directories, locks, the registry
 *   file.cc   the files: sequential, random access, writable, random RW
 *   stage.cc  small appends held in shared memory until a block fills
 *   status.cc errno to IOStatus
 *
 * RocksDB names files by absolute paths ("/db/000012.sst"); libdio's
 * namespace is flat with '/' an ordinary byte.  A path maps to the name
 * without its leading '/' ("db/000012.sst"), and a directory is what the
 * names make of it, as dio_listdir(3) and dio-fuse read them: "db" exists
 * when a name starts with "db/" or its marker, the empty file "db/",
 * exists (CreateDir makes the marker).
 */
#ifndef DRF_H
#define DRF_H

#include <dio/dio.h>
#include <dio/rocksdb.h>
#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>

#include <atomic>
#include <sys/uio.h>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace drf {

using rocksdb::IOStatus;

struct SlotHdr;

/* A slot of the stage (stage.cc): one buffered writable file's appends
   not yet on the device.  mu is held by every call on it. */
struct Slot {
	std::mutex mu;
	struct dio_file *f = nullptr;   /* the writer's handle; NULL: free */
	SlotHdr *hdr = nullptr;         /* in the shared segment */
	char *ring = nullptr;
	/* the write-out in flight (stage.cc), on the slot's own queue */
	struct dio_queue *q = nullptr;
	bool inflight = false;
	uint64_t inflight_upto = 0;
	struct iovec iov[2];
};

class Stage {
public:
	static constexpr unsigned NSLOTS = 32;
	static constexpr size_t CAP = 64 << 10;
	/* The volume's segment, made or taken over: the slots a killed
	   process left are written to their files first.  NULL: no shared
	   memory (files are written through). */
	static std::unique_ptr<Stage> attach(struct dio_vol *vol, const std::string &path);
	~Stage();
	/* A free slot for f (file id, name) whose next append is at `at`. */
	Slot *take(struct dio_file *f, uint64_t id, const std::string &name, uint64_t at);
	void give(Slot *s);
	/* a slot whose bytes could not be written at the close: its file
	   id stays in the segment (the next mount tries again), the slot
	   is free for this process */
	void abandon(Slot *s);
	/* the slot of file id, if any: lock its mu and check holds() */
	Slot *find(uint64_t id);
	/* s still stages file id (s->mu held): it may have been given back
	   and taken by another file since find */
	static bool holds(const Slot *s, uint64_t id);
	/* the rest need s->mu; 0 or an errno */
	int append(Slot *s, const char *data, size_t n, uint32_t block);
	int drain(Slot *s);
	void rename(Slot *s, const std::string &name);
	/* the file's bytes up to `at` are on the device (written past the
	   slot, which is empty): the next append is at `at` */
	void skip(Slot *s, uint64_t at);
	/* the writer is about to extend the file to size, ahead of its
	   appends (stored first: a replay accepts that size) */
	void set_ahead(Slot *s, uint64_t size);
	static uint64_t end(const Slot *s);

private:
	Stage() = default;
	void replay(struct dio_vol *vol, SlotHdr *h, const char *ring);
	int write_out(Slot *s, uint64_t upto);
	void start_write_out(Slot *s, uint64_t upto);
	int reap(Slot *s);
	void quiesce(Slot *s);
	struct dio_vol *vol_ = nullptr;
	std::string name_;
	char *base_ = nullptr;
	size_t bytes_ = 0;
	unsigned nslots_ = 0;
	size_t cap_ = 0;
	std::mutex mu_;                  /* slot allocation */
	std::unique_ptr<Slot[]> slots_;
};

/* A mounted volume.  Every FileSystem object and file of it holds a
   reference: the last one to go unmounts it (mount.cc). */
struct Mount {
	std::string path;           /* canonical: the registry's key */
	struct dio_vol *vol = nullptr;
	bool rdonly = false;
	std::unique_ptr<Stage> stage;   /* NULL: read-only, or no shared memory */

	/* names LockFile holds in this process (another process cannot
	   mount the volume at all) */
	std::mutex lock_mu;
	std::set<std::string> locked;

	/* queues for MultiRead and ReadAsync, lent out one call at a time:
	   a dio_queue belongs to one thread at a time */
	std::mutex q_mu;
	std::vector<struct dio_queue *> idle_queues;
	struct dio_queue *take_queue();
	void give_queue(struct dio_queue *q);

	~Mount();
};

/* The volume at path, mounted if no FileSystem of this process has it. */
IOStatus mount_get(const std::string &path, const struct dio_mount_opts *opts,
                   std::shared_ptr<Mount> *out);

/* A path as a libdio name: leading '/' and empty or "." components
   dropped, ".." taken back; false for one that climbs above the root.
   The root is "". */
bool path_to_name(const std::string &path, std::string *name);

/* errno as an IOStatus: ENOSPC NoSpace (retryable, as RocksDB's POSIX
   file system says), ENOENT PathNotFound, anything else IOError with
   the errno's text; context names the call and the file. */
IOStatus errno_status(const std::string &context, int err);

/* The files (file.cc). */
IOStatus open_sequential(std::shared_ptr<Mount> m, const std::string &name,
                         const rocksdb::FileOptions &fo,
                         std::unique_ptr<rocksdb::FSSequentialFile> *out);
IOStatus open_random(std::shared_ptr<Mount> m, const std::string &name,
                     const rocksdb::FileOptions &fo,
                     std::unique_ptr<rocksdb::FSRandomAccessFile> *out);
/* flags: the dio_open flags (O_TRUNC for a new file, none to reuse) */
IOStatus open_writable(std::shared_ptr<Mount> m, const std::string &name,
                       const rocksdb::FileOptions &fo, int flags, bool at_end,
                       std::unique_ptr<rocksdb::FSWritableFile> *out);
IOStatus open_random_rw(std::shared_ptr<Mount> m, const std::string &name,
                        const rocksdb::FileOptions &fo,
                        std::unique_ptr<rocksdb::FSRandomRWFile> *out);

/* FileSystem::Poll and AbortIO for the handles ReadAsync returned:
   each waited for; Poll calls its callback, AbortIO does not. */
IOStatus poll_async(std::vector<void *> &handles);
IOStatus abort_async(std::vector<void *> &handles);

/* The buffer alignment RocksDB must use for direct I/O on a file: what
   its dio_info asks of the zero-copy path. */
size_t required_alignment(const struct dio_info &info);

} // namespace drf

#endif
