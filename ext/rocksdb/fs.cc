/*
 * The FileSystem: RocksDB's paths as libdio names, directories as the
 * names make them (drf.h), and the object registry's "libdio://PATH".
 *
 * What a kernel file system gives and libdio does too: an atomic
 * RenameFile that replaces its target (CURRENT, OPTIONS), metadata
 * calls ordered and durable at the next sync of any file or directory
 * (a directory's Fsync is dio_syncfs: the names are the volume's one
 * journal).  What it does not: hard links (LinkFile is NotSupported,
 * and Checkpoint copies instead), memory maps.
 */
#include "drf.h"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <rocksdb/utilities/object_registry.h>

namespace drf {

using rocksdb::FileOptions;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;

bool path_to_name(const std::string &path, std::string *name)
{
	std::vector<std::string> parts;
	size_t i = 0;
	while (i <= path.size()) {
		size_t j = path.find('/', i);
		if (j == std::string::npos)
			j = path.size();
		std::string part = path.substr(i, j - i);
		if (part == "..") {
			if (parts.empty())
				return false;
			parts.pop_back();
		} else if (!part.empty() && part != ".") {
			parts.push_back(std::move(part));
		}
		i = j + 1;
	}
	name->clear();
	for (size_t k = 0; k < parts.size(); k++) {
		if (k)
			*name += '/';
		*name += parts[k];
	}
	return true;
}

namespace {

class Lock : public rocksdb::FileLock {
public:
	explicit Lock(std::string name) : name(std::move(name)) {}
	std::string name;
};

class Directory : public rocksdb::FSDirectory {
public:
	explicit Directory(std::shared_ptr<Mount> m) : m_(std::move(m)) {}
	IOStatus Fsync(const IOOptions &, IODebugContext *) override
	{
		return dio_syncfs(m_->vol) == 0 ? IOStatus::OK() : errno_status("sync directory", errno);
	}
	IOStatus Close(const IOOptions &, IODebugContext *) override { return IOStatus::OK(); }

private:
	std::shared_ptr<Mount> m_;
};

int any_entry(const char *, const struct dio_stat *, void *) { return 1; }

struct Children {
	size_t prefix;
	std::vector<std::string> *out;
};

int add_child(const char *name, const struct dio_stat *, void *arg)
{
	Children *c = static_cast<Children *>(arg);
	std::string child(name + c->prefix);
	if (!child.empty() && child.back() == '/')
		child.pop_back();      /* a subdirectory */
	if (!child.empty())
		c->out->push_back(std::move(child));
	return 0;
}

class LibdioFileSystem : public rocksdb::FileSystem {
public:
	explicit LibdioFileSystem(std::shared_ptr<Mount> m) : m_(std::move(m)) {}
	const char *Name() const override { return "LibdioFileSystem"; }

	IOStatus NewSequentialFile(const std::string &path, const FileOptions &fo,
	                           std::unique_ptr<rocksdb::FSSequentialFile> *out,
	                           IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		return s.ok() ? open_sequential(m_, name, fo, out) : s;
	}
	IOStatus NewRandomAccessFile(const std::string &path, const FileOptions &fo,
	                             std::unique_ptr<rocksdb::FSRandomAccessFile> *out,
	                             IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		return s.ok() ? open_random(m_, name, fo, out) : s;
	}
	IOStatus NewWritableFile(const std::string &path, const FileOptions &fo,
	                         std::unique_ptr<rocksdb::FSWritableFile> *out,
	                         IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		return s.ok() ? open_writable(m_, name, fo, O_TRUNC, false, out) : s;
	}
	IOStatus ReopenWritableFile(const std::string &path, const FileOptions &fo,
	                            std::unique_ptr<rocksdb::FSWritableFile> *out,
	                            IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		return s.ok() ? open_writable(m_, name, fo, 0, true, out) : s;
	}
	/* A recycled log keeps its blocks: written over from the start,
	   with no allocation for its syncs to commit. */
	IOStatus ReuseWritableFile(const std::string &path, const std::string &old_path,
	                           const FileOptions &fo,
	                           std::unique_ptr<rocksdb::FSWritableFile> *out,
	                           IODebugContext *) override
	{
		std::string name, old_name;
		IOStatus s = to_name(path, &name);
		if (s.ok())
			s = to_name(old_path, &old_name);
		if (s.ok() && dio_rename(m_->vol, old_name.c_str(), name.c_str()) != 0)
			s = errno_status("rename " + old_name + " to " + name, errno);
		return s.ok() ? open_writable(m_, name, fo, 0, false, out) : s;
	}
	IOStatus NewRandomRWFile(const std::string &path, const FileOptions &fo,
	                         std::unique_ptr<rocksdb::FSRandomRWFile> *out,
	                         IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		return s.ok() ? open_random_rw(m_, name, fo, out) : s;
	}
	IOStatus NewDirectory(const std::string &path, const IOOptions &,
	                      std::unique_ptr<rocksdb::FSDirectory> *out, IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (!s.ok())
			return s;
		if (!dir_exists(name))
			return errno_status("open directory " + path, ENOENT);
		out->reset(new Directory(m_));
		return IOStatus::OK();
	}

	IOStatus FileExists(const std::string &path, const IOOptions &, IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (!s.ok())
			return s;
		struct dio_stat st;
		if (dio_stat(m_->vol, name.c_str(), &st) == 0 || dir_exists(name))
			return IOStatus::OK();
		if (errno != ENOENT)
			return errno_status("stat " + path, errno);
		return IOStatus::NotFound(path);
	}
	IOStatus GetChildren(const std::string &path, const IOOptions &,
	                     std::vector<std::string> *out, IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (!s.ok())
			return s;
		out->clear();
		if (!dir_exists(name))
			return errno_status("list " + path, ENOENT);
		std::string dir = name.empty() ? name : name + "/";
		Children c{dir.size(), out};
		if (dio_listdir(m_->vol, dir.c_str(), add_child, &c) < 0)
			return errno_status("list " + path, errno);
		return IOStatus::OK();
	}
	IOStatus DeleteFile(const std::string &path, const IOOptions &, IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (s.ok() && dio_unlink(m_->vol, name.c_str()) != 0)
			s = errno_status("delete " + path, errno);
		return s;
	}
	IOStatus Truncate(const std::string &path, size_t size, const IOOptions &,
	                  IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (!s.ok())
			return s;
		struct dio_file *f = dio_open(m_->vol, name.c_str(), O_RDWR);
		if (!f)
			return errno_status("truncate " + path, errno);
		if (dio_ftruncate(f, (off_t)size) != 0)
			s = errno_status("truncate " + path, errno);
		dio_close(f);
		return s;
	}
	IOStatus CreateDir(const std::string &path, const IOOptions &, IODebugContext *) override
	{
		return make_dir(path, false);
	}
	IOStatus CreateDirIfMissing(const std::string &path, const IOOptions &,
	                            IODebugContext *) override
	{
		return make_dir(path, true);
	}
	IOStatus DeleteDir(const std::string &path, const IOOptions &, IODebugContext *) override;
	IOStatus GetFileSize(const std::string &path, const IOOptions &, uint64_t *size,
	                     IODebugContext *) override
	{
		struct dio_stat st;
		IOStatus s = stat(path, &st);
		uint64_t live;
		*size = !s.ok() ? 0 : staged_end(st.id, &live) ? live : st.size;
		return s;
	}
	IOStatus GetFileModificationTime(const std::string &path, const IOOptions &,
	                                 uint64_t *mtime, IODebugContext *) override
	{
		struct dio_stat st;
		IOStatus s = stat(path, &st);
		*mtime = s.ok() && st.mtime_ns > 0 ? (uint64_t)(st.mtime_ns / 1000000000) : 0;
		return s;
	}
	IOStatus RenameFile(const std::string &src, const std::string &dst, const IOOptions &,
	                    IODebugContext *) override;
	IOStatus AreFilesSame(const std::string &a, const std::string &b, const IOOptions &,
	                      bool *same, IODebugContext *) override
	{
		struct dio_stat sa, sb;
		IOStatus s = stat(a, &sa);
		if (s.ok())
			s = stat(b, &sb);
		*same = s.ok() && sa.id == sb.id;
		return s;
	}
	IOStatus LockFile(const std::string &path, const IOOptions &, rocksdb::FileLock **lock,
	                  IODebugContext *) override;
	IOStatus UnlockFile(rocksdb::FileLock *lock, const IOOptions &, IODebugContext *) override
	{
		Lock *l = static_cast<Lock *>(lock);
		{
			std::lock_guard<std::mutex> g(m_->lock_mu);
			m_->locked.erase(l->name);
		}
		delete l;
		return IOStatus::OK();
	}
	IOStatus GetTestDirectory(const IOOptions &opts, std::string *path, IODebugContext *dbg) override
	{
		*path = "/rocksdbtest";
		return CreateDirIfMissing(*path, opts, dbg);
	}
	IOStatus GetAbsolutePath(const std::string &path, const IOOptions &, std::string *out,
	                         IODebugContext *) override
	{
		*out = !path.empty() && path[0] == '/' ? path : "/" + path;
		return IOStatus::OK();
	}
	IOStatus GetFreeSpace(const std::string &, const IOOptions &, uint64_t *free,
	                      IODebugContext *) override
	{
		struct dio_statvfs sv;
		if (dio_statvfs(m_->vol, &sv) != 0)
			return errno_status("statvfs", errno);
		*free = sv.free_blocks * sv.block_size;
		return IOStatus::OK();
	}
	IOStatus IsDirectory(const std::string &path, const IOOptions &, bool *is_dir,
	                     IODebugContext *) override
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (!s.ok())
			return s;
		struct dio_stat st;
		bool file = !name.empty() && dio_stat(m_->vol, name.c_str(), &st) == 0;
		*is_dir = !file && dir_exists(name);
		return file || *is_dir ? IOStatus::OK() : errno_status("stat " + path, ENOENT);
	}
	IOStatus Poll(std::vector<void *> &handles, size_t) override { return poll_async(handles); }
	IOStatus AbortIO(std::vector<void *> &handles) override { return abort_async(handles); }

private:
	IOStatus to_name(const std::string &path, std::string *name) const
	{
		if (!path_to_name(path, name))
			return IOStatus::InvalidArgument("libdio: a path above the root", path);
		if (name->size() > DIO_NAME_MAX)
			return errno_status(path, ENAMETOOLONG);
		return IOStatus::OK();
	}
	IOStatus stat(const std::string &path, struct dio_stat *st)
	{
		std::string name;
		IOStatus s = to_name(path, &name);
		if (!s.ok())
			return s;
		if (dio_stat(m_->vol, name.c_str(), st) == 0)
			return IOStatus::OK();
		int err = errno;
		if (err == ENOENT && dir_exists(name)) {
			*st = {};          /* a directory: size 0, as GetChildrenFileAttributes asks */
			return IOStatus::OK();
		}
		return errno_status("stat " + path, err);
	}
	/* Where a writer of this process has file id's end in the stage:
	   the size RocksDB appended (the device's may be more: file.cc's
	   zeros ahead).  false: no writer stages it. */
	bool staged_end(uint64_t id, uint64_t *end) const
	{
		Slot *w = m_->stage && id ? m_->stage->find(id) : nullptr;
		if (!w)
			return false;
		std::lock_guard<std::mutex> g(w->mu);
		if (!Stage::holds(w, id))
			return false;
		*end = Stage::end(w);
		return true;
	}
	/* A file renamed while its writer stages: the slot follows it (its
	   bytes are replayed to the new name after a kill). */
	void stage_follows(const std::string &to)
	{
		struct dio_stat st;
		if (!m_->stage || dio_stat(m_->vol, to.c_str(), &st) != 0)
			return;
		Slot *w = m_->stage->find(st.id);
		if (!w)
			return;
		std::lock_guard<std::mutex> g(w->mu);
		if (Stage::holds(w, st.id))
			m_->stage->rename(w, to);
	}
	/* The root; a directory's marker; any name under it. */
	bool dir_exists(const std::string &name) const
	{
		if (name.empty())
			return true;
		std::string dir = name + "/";
		struct dio_stat st;
		if (dio_stat(m_->vol, dir.c_str(), &st) == 0)
			return true;
		return dio_listdir(m_->vol, dir.c_str(), any_entry, nullptr) == 1;
	}
	IOStatus make_dir(const std::string &path, bool if_missing);

	std::shared_ptr<Mount> m_;
};

/* The marker "NAME/" makes the directory, as dio-fuse's mkdir does; a
   directory that exists already is an error only for CreateDir, and a
   file of the name for both (mkdir's EEXIST). */
IOStatus LibdioFileSystem::make_dir(const std::string &path, bool if_missing)
{
	std::string name;
	IOStatus s = to_name(path, &name);
	if (!s.ok())
		return s;
	struct dio_stat st;
	if (!name.empty() && dio_stat(m_->vol, name.c_str(), &st) == 0)
		return errno_status("create directory " + path, EEXIST);
	if (dir_exists(name))
		return if_missing ? IOStatus::OK() : errno_status("create directory " + path, EEXIST);
	struct dio_file *f = dio_open(m_->vol, (name + "/").c_str(), O_RDWR | O_CREAT);
	if (!f)
		return errno_status("create directory " + path, errno);
	dio_close(f);
	return IOStatus::OK();
}

IOStatus LibdioFileSystem::DeleteDir(const std::string &path, const IOOptions &, IODebugContext *)
{
	std::string name;
	IOStatus s = to_name(path, &name);
	if (!s.ok())
		return s;
	if (name.empty())
		return errno_status("delete directory /", EBUSY);
	std::string dir = name + "/";
	if (dio_listdir(m_->vol, dir.c_str(), any_entry, nullptr) == 1)
		return errno_status("delete directory " + path, ENOTEMPTY);
	if (dio_unlink(m_->vol, dir.c_str()) != 0)
		return errno_status("delete directory " + path, errno);
	return IOStatus::OK();
}

/* A file's rename is dio_rename: atomic, replacing the target.  A
   directory's is its names' renames, one by one (Checkpoint renames its
   ".tmp" directory when it is complete): its marker first, a CURRENT
   last, so that a crash in between leaves a DB directory RocksDB will
   not open, never one it opens with files missing. */
IOStatus LibdioFileSystem::RenameFile(const std::string &src, const std::string &dst,
                                      const IOOptions &, IODebugContext *)
{
	std::string from, to;
	IOStatus s = to_name(src, &from);
	if (s.ok())
		s = to_name(dst, &to);
	if (!s.ok())
		return s;
	struct dio_stat st;
	if (from.empty() || dio_stat(m_->vol, from.c_str(), &st) == 0 || !dir_exists(from)) {
		if (dio_rename(m_->vol, from.c_str(), to.c_str()) != 0)
			return errno_status("rename " + src + " to " + dst, errno);
		stage_follows(to);
		return IOStatus::OK();
	}
	if (to.empty() || dio_stat(m_->vol, to.c_str(), &st) == 0)
		return errno_status("rename " + src + " to " + dst, EEXIST);
	if (dio_listdir(m_->vol, (to + "/").c_str(), any_entry, nullptr) == 1)
		return errno_status("rename " + src + " to " + dst, ENOTEMPTY);
	std::vector<std::string> names;
	auto collect = [](const char *name, const struct dio_stat *, void *arg) {
		static_cast<std::vector<std::string> *>(arg)->push_back(name);
		return 0;
	};
	if (dio_list(m_->vol, (from + "/").c_str(), collect, &names) < 0)
		return errno_status("rename " + src + " to " + dst, errno);
	auto current_last = [](const std::string &a, const std::string &b) {
		auto rank = [](const std::string &n) {
			size_t slash = n.rfind('/', n.size() - 2);
			bool marker = n.back() == '/';
			bool current = n.compare(slash + 1, std::string::npos, "CURRENT") == 0;
			return marker ? 0 : current ? 2 : 1;
		};
		return rank(a) < rank(b);
	};
	std::stable_sort(names.begin(), names.end(), current_last);
	for (const std::string &n : names) {
		std::string moved = to + n.substr(from.size());
		if (dio_rename(m_->vol, n.c_str(), moved.c_str()) != 0)
			return errno_status("rename " + n + " to " + moved, errno);
		stage_follows(moved);
	}
	return IOStatus::OK();
}

/* Another process cannot have the volume at all (dio_mount's lock), so
   only this one's DBs are kept from the same directory: as RocksDB's
   POSIX file system keeps them, with a set of the names locked.  The
   file is made, as a kernel file system's LOCK file is. */
IOStatus LibdioFileSystem::LockFile(const std::string &path, const IOOptions &,
                                    rocksdb::FileLock **lock, IODebugContext *)
{
	*lock = nullptr;
	std::string name;
	IOStatus s = to_name(path, &name);
	if (!s.ok())
		return s;
	std::lock_guard<std::mutex> g(m_->lock_mu);
	if (m_->locked.count(name))
		return IOStatus::IOError("lock hold by current process", path);
	struct dio_file *f = dio_open(m_->vol, name.c_str(), O_RDWR | O_CREAT);
	if (!f)
		return errno_status("lock " + path, errno);
	dio_close(f);
	m_->locked.insert(name);
	*lock = new Lock(name);
	return IOStatus::OK();
}

} // namespace

/* "libdio://PATH": PATH the volume, absolute. */
static rocksdb::FileSystem *from_uri(const std::string &uri,
                                     std::unique_ptr<rocksdb::FileSystem> *guard,
                                     std::string *errmsg)
{
	static const char scheme[] = "libdio://";
	std::shared_ptr<Mount> m;
	IOStatus s = mount_get(uri.substr(sizeof(scheme) - 1), nullptr, &m);
	if (!s.ok()) {
		*errmsg = s.ToString();
		return nullptr;
	}
	guard->reset(new LibdioFileSystem(std::move(m)));
	return guard->get();
}

[[maybe_unused]] static const auto &registered = rocksdb::ObjectLibrary::Default()->AddFactory<rocksdb::FileSystem>(
	rocksdb::ObjectLibrary::PatternEntry("libdio", false).AddSeparator("://", true), from_uri);

} // namespace drf

__attribute__((visibility("default")))
rocksdb::Status dio_rocksdb_fs(const std::string &path, const struct dio_mount_opts *opts,
                               std::shared_ptr<rocksdb::FileSystem> *result)
{
	std::shared_ptr<drf::Mount> m;
	rocksdb::IOStatus s = drf::mount_get(path, opts, &m);
	if (s.ok())
		result->reset(new drf::LibdioFileSystem(std::move(m)));
	return s;
}
