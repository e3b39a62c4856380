/*
 * RocksDB on libdio (ext/rocksdb): the FileSystem's calls as RocksDB
 * makes them, then RocksDB itself on a volume, reopened after clean
 * closes and after kill -9 of its writer.  Every value is checked, and
 * the volume passes dio_fsck after each test.  The run's backend is
 * DIO_BACKEND's (dio_mount reads it).
 */
#include <dio/dio.h>
#include <dio/rocksdb.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/convenience.h>
#include <rocksdb/utilities/object_registry.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <vector>
/* last: Check's macros (fail) would rename the C++ library's */
#include <check.h>
extern "C" {
#include "helpers.h"   /* the fault backend (faultdev.c) */
}

using namespace rocksdb;

namespace {

std::string img;

/* The test's image path: set in the runner's process (an unchecked
   fixture), so that its teardown, which runs there even when the test
   failed, removes what the test left. */
void name_image()
{
	static int n;
	const char *dir = getenv("DIO_TEST_DIR");
	const char *be = getenv("DIO_BACKEND");
	char p[256];
	snprintf(p, sizeof(p), "%s/libdio-test-rocksdb-%s-%d-%d.img", dir ? dir : "/dev/shm",
	         be && *be ? be : "auto", getpid(), n++);
	img = p;
}

/* The image, and the shared memory named after it: libdio's
   process-death log and the FileSystem's stage (libdio-*-DEV-INO). */
void remove_image()
{
	struct stat st;
	if (stat(img.c_str(), &st) == 0) {
		char pat[128];
		snprintf(pat, sizeof(pat), "/dev/shm/libdio-*-%llx-%llx", (unsigned long long)st.st_dev,
		         (unsigned long long)st.st_ino);
		glob_t g;
		if (glob(pat, 0, nullptr, &g) == 0)
			for (size_t i = 0; i < g.gl_pathc; i++)
				unlink(g.gl_pathv[i]);
		globfree(&g);
	}
	unlink(img.c_str());
}

/* A fresh volume of mib MiB for the test. */
void fresh(unsigned mib)
{
	remove_image();
	struct dio_mkfs_opts o = {};
	o.size = (uint64_t)mib << 20;
	ck_assert_msg(dio_mkfs(img.c_str(), &o) == 0, "mkfs %s: %s", img.c_str(), strerror(errno));
}

void fsck_clean()
{
	int rc = dio_fsck(img.c_str(), 0, [](int, const char *problem, void *) {
		fprintf(stderr, "fsck: %s\n", problem);
	}, nullptr);
	ck_assert_msg(rc == 0, "dio_fsck of %s: %d", img.c_str(), rc);
}

std::shared_ptr<FileSystem> fs_of_volume()
{
	std::shared_ptr<FileSystem> fs;
	Status s = dio_rocksdb_fs(img, nullptr, &fs);
	ck_assert_msg(s.ok(), "dio_rocksdb_fs: %s", s.ToString().c_str());
	return fs;
}

#define CK_OK(expr) do { \
	auto st_ = (expr); \
	ck_assert_msg(st_.ok(), "%s: %s", #expr, st_.ToString().c_str()); \
} while (0)

/*
 * RocksDB's background threads are Env::Default()'s, one pool for the
 * process, started by the first DB; a process that forks after that
 * has a child without them, whose writes stall forever waiting for a
 * flush.  So a test that forks never runs RocksDB in its own process:
 * every DB lives in a child of its own, this one for checks.  fn
 * prints what was wrong and returns false; in_child gives the exit
 * status (0: fn returned true).
 */
template <class Fn> int in_child(Fn fn)
{
	fflush(stderr);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0)
		_exit(fn() ? 0 : 1);
	int status;
	ck_assert(waitpid(pid, &status, 0) == pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string key(int i)
{
	char b[32];
	snprintf(b, sizeof(b), "key%08d", i);
	return b;
}

/* A value that says whose it is, of a length that varies with it. */
std::string value(int i, int gen)
{
	std::string v = "v" + std::to_string(gen) + ":" + std::to_string(i) + ":";
	v.append((size_t)(i * 7 % 300), (char)('a' + (i + gen) % 26));
	return v;
}

IOOptions io;

void write_file(FileSystem &fs, const std::string &path, const std::string &data)
{
	std::unique_ptr<FSWritableFile> w;
	CK_OK(fs.NewWritableFile(path, FileOptions(), &w, nullptr));
	CK_OK(w->Append(data, io, nullptr));
	CK_OK(w->Sync(io, nullptr));
	CK_OK(w->Close(io, nullptr));
}

std::string read_file(FileSystem &fs, const std::string &path)
{
	std::unique_ptr<FSSequentialFile> r;
	CK_OK(fs.NewSequentialFile(path, FileOptions(), &r, nullptr));
	std::string out;
	char buf[1000];
	for (;;) {
		Slice got;
		CK_OK(r->Read(sizeof(buf), io, &got, buf, nullptr));
		if (got.empty())
			break;
		out.append(got.data(), got.size());
	}
	return out;
}

std::vector<std::string> children(FileSystem &fs, const std::string &dir)
{
	std::vector<std::string> c;
	CK_OK(fs.GetChildren(dir, io, &c, nullptr));
	std::sort(c.begin(), c.end());
	return c;
}

} // namespace

/* ---- the FileSystem's calls ------------------------------------------- */

START_TEST(test_directories_are_what_the_names_make)
{
	fresh(64);
	{
		auto fs = fs_of_volume();
		CK_OK(fs->CreateDir("/db", io, nullptr));
		ck_assert(fs->CreateDir("/db", io, nullptr).IsIOError());       /* EEXIST */
		CK_OK(fs->CreateDirIfMissing("/db", io, nullptr));
		CK_OK(fs->FileExists("/db", io, nullptr));
		bool is_dir = false;
		CK_OK(fs->IsDirectory("/db", io, &is_dir, nullptr));
		ck_assert(is_dir);
		ck_assert(children(*fs, "/db").empty());

		write_file(*fs, "/db/a", "hello");
		write_file(*fs, "//db/./sub/../b", "world!");       /* spellings of /db/b */
		CK_OK(fs->CreateDir("/db/sub", io, nullptr));
		write_file(*fs, "/db/sub/c", "x");
		ck_assert(children(*fs, "/db") == (std::vector<std::string>{"a", "b", "sub"}));
		ck_assert(children(*fs, "/") == (std::vector<std::string>{"db"}));
		CK_OK(fs->IsDirectory("/db/a", io, &is_dir, nullptr));
		ck_assert(!is_dir);

		uint64_t size = 0;
		CK_OK(fs->GetFileSize("/db/b", io, &size, nullptr));
		ck_assert_uint_eq(size, 6);
		ck_assert(read_file(*fs, "/db/b") == "world!");

		/* a directory that holds something cannot go; an empty one can */
		ck_assert(fs->DeleteDir("/db/sub", io, nullptr).IsIOError());
		CK_OK(fs->DeleteFile("/db/sub/c", io, nullptr));
		CK_OK(fs->DeleteDir("/db/sub", io, nullptr));
		ck_assert(fs->FileExists("/db/sub", io, nullptr).IsNotFound());
		ck_assert(children(*fs, "/db") == (std::vector<std::string>{"a", "b"}));

		/* absent things say so as RocksDB expects */
		ck_assert(fs->FileExists("/db/nope", io, nullptr).IsNotFound());
		ck_assert(fs->DeleteFile("/db/nope", io, nullptr).IsPathNotFound());
		std::vector<std::string> c;
		ck_assert(fs->GetChildren("/nodir", io, &c, nullptr).IsPathNotFound());
		std::unique_ptr<FSSequentialFile> r;
		ck_assert(fs->NewSequentialFile("/db/nope", FileOptions(), &r, nullptr).IsPathNotFound());
		ck_assert(fs->FileExists("/../x", io, nullptr).IsInvalidArgument());
	}
	fsck_clean();
}
END_TEST

START_TEST(test_rename_replaces_and_times_and_locks)
{
	fresh(64);
	{
		auto fs = fs_of_volume();
		CK_OK(fs->CreateDir("/db", io, nullptr));
		write_file(*fs, "/db/CURRENT", "MANIFEST-000001\n");
		write_file(*fs, "/db/000002.dbtmp", "MANIFEST-000002\n");
		CK_OK(fs->RenameFile("/db/000002.dbtmp", "/db/CURRENT", io, nullptr));
		ck_assert(read_file(*fs, "/db/CURRENT") == "MANIFEST-000002\n");
		ck_assert(children(*fs, "/db") == (std::vector<std::string>{"CURRENT"}));

		uint64_t mtime = 0;
		CK_OK(fs->GetFileModificationTime("/db/CURRENT", io, &mtime, nullptr));
		uint64_t now = (uint64_t)time(nullptr);
		ck_assert_msg(mtime + 60 >= now && mtime <= now + 60, "mtime %llu, now %llu",
		              (unsigned long long)mtime, (unsigned long long)now);

		bool same = false;
		write_file(*fs, "/db/other", "x");
		CK_OK(fs->AreFilesSame("/db/CURRENT", "/db/CURRENT", io, &same, nullptr));
		ck_assert(same);
		CK_OK(fs->AreFilesSame("/db/CURRENT", "/db/other", io, &same, nullptr));
		ck_assert(!same);
		ck_assert(fs->LinkFile("/db/CURRENT", "/db/link", io, nullptr).IsNotSupported());

		/* one holder of a lock in the process; the file is made */
		FileLock *l1 = nullptr, *l2 = nullptr;
		CK_OK(fs->LockFile("/db/LOCK", io, &l1, nullptr));
		ck_assert(fs->LockFile("/db/LOCK", io, &l2, nullptr).IsIOError());
		CK_OK(fs->FileExists("/db/LOCK", io, nullptr));
		CK_OK(fs->UnlockFile(l1, io, nullptr));
		CK_OK(fs->LockFile("/db/LOCK", io, &l2, nullptr));
		CK_OK(fs->UnlockFile(l2, io, nullptr));

		/* Truncate by name; a reopened file appends at its end */
		CK_OK(fs->Truncate("/db/CURRENT", 8, io, nullptr));
		std::unique_ptr<FSWritableFile> w;
		CK_OK(fs->ReopenWritableFile("/db/CURRENT", FileOptions(), &w, nullptr));
		ck_assert_uint_eq(w->GetFileSize(io, nullptr), 8);
		CK_OK(w->Append("+tail", io, nullptr));
		CK_OK(w->Close(io, nullptr));
		ck_assert(read_file(*fs, "/db/CURRENT") == "MANIFEST+tail");

		/* a recycled log: renamed, written over from the start, its
		   blocks kept (no allocation for its syncs to commit) */
		std::string old_log(8192, 'o');
		write_file(*fs, "/db/000003.log", old_log);
		CK_OK(fs->ReuseWritableFile("/db/000009.log", "/db/000003.log", FileOptions(), &w, nullptr));
		ck_assert(fs->FileExists("/db/000003.log", io, nullptr).IsNotFound());
		CK_OK(w->Append("new", io, nullptr));
		CK_OK(w->Sync(io, nullptr));
		CK_OK(w->Close(io, nullptr));
		ck_assert(read_file(*fs, "/db/000009.log") == "new" + old_log.substr(3));

		uint64_t free_bytes = 0;
		CK_OK(fs->GetFreeSpace("/db", io, &free_bytes, nullptr));
		ck_assert(free_bytes > (32u << 20) && free_bytes < (64u << 20));
	}
	fsck_clean();
}
END_TEST

/* Every FileSystem of a volume in the process, from the call and from
   the URI, shares one mount; the last to go unmounts it. */
START_TEST(test_one_mount_per_process_released_by_the_last_user)
{
	fresh(64);
	{
		auto fs1 = fs_of_volume();
		std::shared_ptr<FileSystem> fs2;
		ConfigOptions co;
		CK_OK(FileSystem::CreateFromString(co, "libdio://" + img, &fs2));
		ck_assert(fs2 != nullptr && fs2.get() != fs1.get());
		ck_assert_str_eq(fs2->Name(), "LibdioFileSystem");
		write_file(*fs1, "/shared", "seen by both");
		ck_assert(read_file(*fs2, "/shared") == "seen by both");
		/* the volume is this process's: a mount of its own is refused */
		ck_assert(dio_mount(img.c_str(), nullptr) == nullptr);
		ck_assert_int_eq(errno, EBUSY);
		std::unique_ptr<FSWritableFile> w;
		CK_OK(fs2->NewWritableFile("/open", FileOptions(), &w, nullptr));
		fs1.reset();
		fs2.reset();
		/* a file outlives its FileSystem: the mount lives while it does */
		CK_OK(w->Append("tail", io, nullptr));
		CK_OK(w->Close(io, nullptr));
		w.reset();
		/* the last user gone: unmounted, the segment of the stage gone */
		struct dio_vol *v = dio_mount(img.c_str(), nullptr);
		ck_assert_msg(v != nullptr, "mount after the last user: %s", strerror(errno));
		struct dio_stat st;
		ck_assert_int_eq(dio_stat(v, "open", &st), 0);
		ck_assert_uint_eq(st.size, 4);
		ck_assert_int_eq(dio_umount(v), 0);
		struct stat hs;
		ck_assert(stat(img.c_str(), &hs) == 0);
		char seg[128];
		snprintf(seg, sizeof(seg), "/dev/shm/libdio-rocksdb-%d-%llx-%llx", (int)getuid(),
		         (unsigned long long)hs.st_dev, (unsigned long long)hs.st_ino);
		ck_assert_msg(access(seg, F_OK) != 0, "%s is left", seg);
	}
	fsck_clean();
}
END_TEST

/* Direct files: RocksDB aligns to GetRequiredBufferAlignment, and the
   reads of every kind return the bytes written. */
START_TEST(test_reads_of_every_kind_return_the_bytes)
{
	fresh(64);
	{
		auto fs = fs_of_volume();
		FileOptions direct;
		direct.use_direct_reads = direct.use_direct_writes = true;
		std::unique_ptr<FSWritableFile> w;
		CK_OK(fs->NewWritableFile("/f", direct, &w, nullptr));
		ck_assert(w->use_direct_io());
		size_t align = w->GetRequiredBufferAlignment();
		ck_assert_msg(align >= 512 && (align & (align - 1)) == 0, "alignment %zu", align);
		const size_t n = 1 << 20;
		char *buf = static_cast<char *>(aligned_alloc(align, n));
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)(i * 131 + i / 4096);
		CK_OK(w->Append(Slice(buf, n), io, nullptr));
		CK_OK(w->Truncate(n - 100, io, nullptr));    /* RocksDB cuts the padding */
		CK_OK(w->Fsync(io, nullptr));
		CK_OK(w->Close(io, nullptr));

		std::unique_ptr<FSRandomAccessFile> r;
		CK_OK(fs->NewRandomAccessFile("/f", direct, &r, nullptr));
		char *got = static_cast<char *>(aligned_alloc(align, n));
		Slice s;
		CK_OK(r->Read(align * 3, align * 2, io, &s, got, nullptr));
		ck_assert_uint_eq(s.size(), align * 2);
		ck_assert(memcmp(s.data(), buf + align * 3, align * 2) == 0);
		CK_OK(r->Read(n - align, align, io, &s, got, nullptr));   /* the end: short */
		ck_assert_uint_eq(s.size(), align - 100);

		/* 40 requests on a queue, one past the end */
		std::vector<FSReadRequest> reqs(40);
		std::vector<char *> scratch(40);
		for (size_t i = 0; i < reqs.size(); i++) {
			scratch[i] = static_cast<char *>(aligned_alloc(align, 8192));
			reqs[i].offset = (i * 7919 * align) % (n - 8192);
			reqs[i].len = 8192;
			reqs[i].scratch = scratch[i];
		}
		reqs[39].offset = n;
		CK_OK(r->MultiRead(reqs.data(), reqs.size(), io, nullptr));
		for (size_t i = 0; i < 39; i++) {
			CK_OK(reqs[i].status);
			ck_assert_uint_eq(reqs[i].result.size(), 8192);
			ck_assert(memcmp(reqs[i].result.data(), buf + reqs[i].offset, 8192) == 0);
		}
		CK_OK(reqs[39].status);
		ck_assert_uint_eq(reqs[39].result.size(), 0);

		/* ReadAsync, then Poll calls back with the bytes */
		FSReadRequest ar;
		ar.offset = align * 5;
		ar.len = 4096;
		ar.scratch = scratch[0];
		struct Seen { bool called = false; std::string bytes; } seen;
		void *handle = nullptr;
		IOHandleDeleter del;
		CK_OK(r->ReadAsync(ar, io, [](const FSReadRequest &req, void *arg) {
			Seen *sn = static_cast<Seen *>(arg);
			sn->called = true;
			if (req.status.ok())
				sn->bytes.assign(req.result.data(), req.result.size());
		}, &seen, &handle, &del, nullptr));
		if (handle) {
			std::vector<void *> hs{handle};
			CK_OK(fs->Poll(hs, 1));
			del(handle);
		}
		ck_assert(seen.called);
		ck_assert(seen.bytes == std::string(buf + align * 5, 4096));

		/* buffered (misaligned) and random-RW files */
		std::unique_ptr<FSRandomRWFile> rw;
		CK_OK(fs->NewRandomRWFile("/f", FileOptions(), &rw, nullptr));
		CK_OK(rw->Write(1001, Slice("patch", 5), io, nullptr));
		CK_OK(rw->Sync(io, nullptr));
		CK_OK(rw->Read(999, 9, io, &s, got, nullptr));
		ck_assert(std::string(s.data(), s.size()) == std::string(buf + 999, 2) + "patch" +
		          std::string(buf + 1006, 2));
		CK_OK(rw->Close(io, nullptr));
		for (char *p : scratch)
			free(p);
		free(buf);
		free(got);
	}
	fsck_clean();
}
END_TEST

START_TEST(test_a_full_volume_says_nospace)
{
	fresh(16);
	{
		auto fs = fs_of_volume();
		std::unique_ptr<FSWritableFile> w;
		CK_OK(fs->NewWritableFile("/big", FileOptions(), &w, nullptr));
		std::string chunk(1 << 20, 'z');
		IOStatus s;
		int written = 0;
		while ((s = w->Append(chunk, io, nullptr)).ok())
			ck_assert_int_lt(++written, 64);
		ck_assert_msg(s.IsNoSpace(), "%s", s.ToString().c_str());
		ck_assert(s.GetRetryable());
		CK_OK(w->Close(io, nullptr));
		/* the volume stays usable: delete, and the space is there again */
		CK_OK(fs->DeleteFile("/big", io, nullptr));
		write_file(*fs, "/small", chunk);
	}
	fsck_clean();
}
END_TEST

/* A log's appends, synced and not, then kill -9: the next mount writes
   the held ones and cuts the zeros the writer put ahead of them, so the
   file is exactly what was appended. */
START_TEST(test_kill9_leaves_a_log_exactly_as_appended)
{
	fresh(64);
	int p[2];
	ck_assert(pipe(p) == 0);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		auto fs = fs_of_volume();
		std::unique_ptr<FSWritableFile> w;
		if (!fs->NewWritableFile("/000007.log", FileOptions(), &w, nullptr).ok())
			_exit(3);
		uint64_t total = 0;
		for (int i = 0; i < 700; i++) {
			std::string rec = value(i, 3);
			if (!w->Append(rec, io, nullptr).ok())
				_exit(3);
			total += rec.size();
			if (i % 5 == 0 && !w->Sync(io, nullptr).ok())    /* extends ahead */
				_exit(3);
		}
		/* the file's size as RocksDB asks for it: the appends */
		uint64_t size = 0;
		if (!fs->GetFileSize("/000007.log", io, &size, nullptr).ok() || size != total ||
		    w->GetFileSize(io, nullptr) != total)
			_exit(5);
		if (write(p[1], &total, sizeof(total)) != (ssize_t)sizeof(total))
			_exit(4);
		raise(SIGKILL);
	}
	close(p[1]);
	uint64_t total = 0;
	ck_assert(read(p[0], &total, sizeof(total)) == (ssize_t)sizeof(total));
	close(p[0]);
	int status;
	ck_assert(waitpid(pid, &status, 0) == pid);
	ck_assert_msg(WIFSIGNALED(status), "the writer exited (%d)", status);
	{
		auto fs = fs_of_volume();
		uint64_t size = 0;
		CK_OK(fs->GetFileSize("/000007.log", io, &size, nullptr));
		ck_assert_uint_eq(size, total);
		std::string want;
		for (int i = 0; i < 700; i++)
			want += value(i, 3);
		ck_assert(read_file(*fs, "/000007.log") == want);
	}
	fsck_clean();
}
END_TEST

/* ---- RocksDB on the volume --------------------------------------------- */

namespace {

struct Db {
	std::unique_ptr<Env> env;
	Options opt;
	std::vector<ColumnFamilyHandle *> cfs;
	DB *db = nullptr;

	explicit Db(bool direct)
	{
		env = NewCompositeEnv(fs_of_volume());
		opt.env = env.get();
		opt.create_if_missing = true;
		opt.create_missing_column_families = true;
		opt.use_direct_reads = direct;
		opt.use_direct_io_for_flush_and_compaction = direct;
		opt.write_buffer_size = 256 << 10;     /* flushes and compactions happen */
		opt.target_file_size_base = 512 << 10;
		opt.max_bytes_for_level_base = 2 << 20;
	}
	Status try_open(const std::string &path, const std::vector<std::string> &cf_names = {"default"})
	{
		std::vector<ColumnFamilyDescriptor> d;
		for (auto &n : cf_names)
			d.emplace_back(n, ColumnFamilyOptions(opt));
		return DB::Open(opt, path, d, &cfs, &db);
	}
	void open(const std::string &path, const std::vector<std::string> &cf_names = {"default"})
	{
		CK_OK(try_open(path, cf_names));
	}
	void close()
	{
		for (auto *h : cfs)
			CK_OK(db->DestroyColumnFamilyHandle(h));
		cfs.clear();
		CK_OK(db->Close());
		delete db;
		db = nullptr;
	}
	~Db()
	{
		if (db)
			close();
	}
};

/* Every key of [0, n) but those in [gone_lo, gone_hi) has value(i, gen):
   by Get, and by an iterator that shows nothing else, in order. */
void check_db(DB *db, ColumnFamilyHandle *cf, int n, int gen, int gone_lo, int gone_hi)
{
	std::string v;
	for (int i = 0; i < n; i++) {
		Status s = db->Get(ReadOptions(), cf, key(i), &v);
		if (i >= gone_lo && i < gone_hi) {
			ck_assert_msg(s.IsNotFound(), "key %d: %s", i, s.ToString().c_str());
			continue;
		}
		ck_assert_msg(s.ok(), "key %d: %s", i, s.ToString().c_str());
		ck_assert_msg(v == value(i, gen), "key %d holds %s", i, v.c_str());
	}
	ReadOptions ro;
	ro.verify_checksums = true;
	std::unique_ptr<Iterator> it(db->NewIterator(ro, cf));
	int i = 0;
	for (it->SeekToFirst(); it->Valid(); it->Next(), i++) {
		if (i == gone_lo)
			i = gone_hi;
		ck_assert_msg(it->key().ToString() == key(i), "iterator at %s, wanted %s",
		              it->key().ToString().c_str(), key(i).c_str());
		ck_assert(it->value().ToString() == value(i, gen));
	}
	CK_OK(it->status());
	ck_assert_int_eq(i, n);
}

void db_round_trip(bool direct)
{
	fresh(256);
	const int n = 20000;
	{
		Db d(direct);
		d.open("/db", {"default", "cf1"});
		for (int i = 0; i < n; i++) {
			CK_OK(d.db->Put(WriteOptions(), d.cfs[0], key(i), value(i, 1)));
			if (i % 3 == 0)
				CK_OK(d.db->Put(WriteOptions(), d.cfs[1], key(i / 3), value(i / 3, 2)));
		}
		for (int i = 0; i < n; i += 2)   /* overwrites */
			CK_OK(d.db->Put(WriteOptions(), d.cfs[0], key(i), value(i, 1)));
		CK_OK(d.db->DeleteRange(WriteOptions(), d.cfs[0], key(5000), key(6000)));
		CK_OK(d.db->Flush(FlushOptions(), d.cfs));
		CK_OK(d.db->CompactRange(CompactRangeOptions(), d.cfs[0], nullptr, nullptr));
		check_db(d.db, d.cfs[0], n, 1, 5000, 6000);
		check_db(d.db, d.cfs[1], (n + 2) / 3, 2, 0, 0);

		/* a checkpoint on the same volume: files copied (no hard links) */
		Checkpoint *cp = nullptr;
		CK_OK(Checkpoint::Create(d.db, &cp));
		CK_OK(cp->CreateCheckpoint("/ckpt"));
		delete cp;
		d.close();

		d.open("/db", {"default", "cf1"});
		check_db(d.db, d.cfs[0], n, 1, 5000, 6000);
		check_db(d.db, d.cfs[1], (n + 2) / 3, 2, 0, 0);
		d.close();
		d.open("/ckpt", {"default", "cf1"});
		check_db(d.db, d.cfs[0], n, 1, 5000, 6000);
		check_db(d.db, d.cfs[1], (n + 2) / 3, 2, 0, 0);
		d.close();
	}
	fsck_clean();
}

} // namespace

START_TEST(test_db_put_get_iterate_flush_compact_checkpoint_reopen)
{
	db_round_trip(false);
}
END_TEST

START_TEST(test_db_with_direct_reads_and_flushes)
{
	db_round_trip(true);
}
END_TEST

/* ---- kill -9 of a writer ----------------------------------------------- */

namespace {

enum class Mode { sync, nosync, manual_flush };

/* The child: puts keys of round r from 0 on, reporting through fd each
   one RocksDB's rules keep after the death of the process: every
   acknowledged put (sync and not), or with manual_wal_flush those
   before the last FlushWAL. */
[[noreturn]] void writer(int fd, Mode mode, int round)
{
	Db d(round % 2 == 1);
	d.opt.manual_wal_flush = mode == Mode::manual_flush;
	d.open("/db");
	WriteOptions wo;
	wo.sync = mode == Mode::sync;
	for (int i = 0;; i++) {
		std::string k = "r" + std::to_string(round) + "-" + key(i);
		if (!d.db->Put(wo, k, value(i, round)).ok())
			_exit(3);
		if (mode == Mode::manual_flush) {
			if (i % 10 != 9)
				continue;
			if (!d.db->FlushWAL(false).ok())
				_exit(3);
		}
		if (write(fd, &i, sizeof(i)) != (ssize_t)sizeof(i))
			_exit(4);
	}
}

/* Round k's acknowledged keys [0, acked] hold their values (in a child:
   false with a message if not). */
bool check_round(DB *db, int k, int acked, int r)
{
	std::string v;
	for (int j = 0; j <= acked; j++) {
		std::string name = "r" + std::to_string(k) + "-" + key(j);
		Status s = db->Get(ReadOptions(), name, &v);
		if (!s.ok() || v != value(j, k)) {
			fprintf(stderr, "round %d: acknowledged %s: %s\n", r, name.c_str(),
			        s.ok() ? ("holds " + v).c_str() : s.ToString().c_str());
			return false;
		}
	}
	return true;
}

void kill_rounds(Mode mode)
{
	fresh(512);
	int rounds = getenv("DIO_ROCKSDB_KILL_ROUNDS") ? atoi(getenv("DIO_ROCKSDB_KILL_ROUNDS")) : 50;
	srand(1234);
	std::vector<int> acked(rounds, -1);
	for (int r = 0; r < rounds; r++) {
		int p[2];
		ck_assert(pipe(p) == 0);
		pid_t pid = fork();
		ck_assert(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			writer(p[1], mode, r);
		}
		close(p[1]);
		/* the first acknowledgement, then a random while */
		int i;
		ssize_t got = read(p[0], &i, sizeof(i));
		ck_assert_msg(got == (ssize_t)sizeof(i), "round %d: the writer died before its first put", r);
		acked[r] = i;
		usleep((useconds_t)(rand() % 150000));
		kill(pid, SIGKILL);
		while (read(p[0], &i, sizeof(i)) == (ssize_t)sizeof(i))
			acked[r] = i;
		close(p[0]);
		int status;
		ck_assert(waitpid(pid, &status, 0) == pid);
		ck_assert_msg(WIFSIGNALED(status), "round %d: the writer exited (%d)", r, status);

		/* this round's acknowledged keys, with their values; every
		   round's again after the last (nothing lost later either) */
		int rc = in_child([&] {
			Db d(false);
			Status s = d.try_open("/db");
			if (!s.ok()) {
				fprintf(stderr, "round %d: reopen: %s\n", r, s.ToString().c_str());
				return false;
			}
			for (int k = r == rounds - 1 ? 0 : r; k <= r; k++)
				if (!check_round(d.db, k, acked[k], r))
					return false;
			return true;
		});
		ck_assert_msg(rc == 0, "round %d: the DB after the kill is not what was acknowledged (%d)", r, rc);
	}
	fsck_clean();
}

} // namespace

START_TEST(test_kill9_keeps_every_acknowledged_synced_put)
{
	kill_rounds(Mode::sync);
}
END_TEST

START_TEST(test_kill9_keeps_every_acknowledged_unsynced_put)
{
	kill_rounds(Mode::nosync);
}
END_TEST

START_TEST(test_kill9_keeps_what_manual_wal_flush_flushed)
{
	kill_rounds(Mode::manual_flush);
}
END_TEST

/* ---- device errors ------------------------------------------------------ */

namespace {

class NullLogger : public Logger {
public:
	using Logger::Logv;
	void Logv(const char *, va_list) override {}
};

/* The faulty phase, in a child: RocksDB on the fault backend, puts
   with sync=true reported through fd once acknowledged, until the first
   error.  Exits 0 if every error was an IOError (never Corruption) and
   every read answered was right; then dies as a process does after an
   I/O error, without closing the DB.  (Debian's RocksDB 7.8 is built
   with assertions, and its file writer asserts when it is used again
   after an error: the info LOG's next line after a failed write, a log
   writer's destructor.  On ext4 those writes go to the page cache and
   do not fail; here they may, so the info LOG goes to a logger of the
   process and the DB is not closed.) */
[[noreturn]] void faulty_writer(int fd, const struct fault_cfg &cfg, const char *what)
{
	fault_setup(&cfg);
	struct dio_mount_opts mo = {};
	mo.backend = "fault";
	std::shared_ptr<FileSystem> fs;
	Status s = dio_rocksdb_fs(img, &mo, &fs);
	std::unique_ptr<Env> env;
	DB *db = nullptr;
	if (s.ok()) {
		env = NewCompositeEnv(fs);
		Options opt;
		opt.env = env.get();
		opt.create_if_missing = true;
		opt.write_buffer_size = 128 << 10;
		opt.paranoid_checks = true;
		opt.info_log = std::make_shared<NullLogger>();
		BlockBasedTableOptions t;
		t.no_block_cache = true;      /* every read of a table goes to the device */
		opt.table_factory.reset(NewBlockBasedTableFactory(t));
		s = DB::Open(opt, "/db", &db);
	}
	if (s.IsCorruption()) {
		fprintf(stderr, "%s: open: %s\n", what, s.ToString().c_str());
		_exit(10);
	}
	WriteOptions wo;
	wo.sync = true;
	std::vector<int> acked;
	for (int i = 0; db && i < 3000; i++) {
		s = db->Put(wo, key(i), value(i, 7));
		if (!s.ok()) {
			if (!s.IsIOError()) {
				fprintf(stderr, "%s: put %d: %s\n", what, i, s.ToString().c_str());
				_exit(11);
			}
			break;
		}
		acked.push_back(i);
		if (write(fd, &i, sizeof(i)) != (ssize_t)sizeof(i))
			_exit(4);
		if (i % 7 == 0) {
			/* a read now: its value, or an error that is not Corruption */
			std::string v;
			int k = acked[(size_t)i * 31 % acked.size()];
			Status g = db->Get(ReadOptions(), key(k), &v);
			if (g.IsCorruption() || (g.ok() && v != value(k, 7))) {
				fprintf(stderr, "%s: get %d: %s\n", what, k, g.ok() ? "wrong bytes" : g.ToString().c_str());
				_exit(12);
			}
		}
	}
	_exit(0);
}

/* The faulty phase (faulty_writer), then, the fault gone, the DB opens
   with the run's own backend and holds every put it acknowledged. */
void fault_round(const struct fault_cfg &cfg, const char *what)
{
	fresh(256);
	int p[2];
	ck_assert(pipe(p) == 0);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		faulty_writer(p[1], cfg, what);
	}
	close(p[1]);
	std::vector<int> acked;
	int i;
	while (read(p[0], &i, sizeof(i)) == (ssize_t)sizeof(i))
		acked.push_back(i);
	close(p[0]);
	int status;
	ck_assert(waitpid(pid, &status, 0) == pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the faulty phase failed (%d)",
	              what, status);
	int rc = in_child([&] {
		auto fs = fs_of_volume();
		std::unique_ptr<Env> env = NewCompositeEnv(fs);
		Options opt;
		opt.env = env.get();
		opt.create_if_missing = true;
		opt.paranoid_checks = true;
		DB *db = nullptr;
		Status s = DB::Open(opt, "/db", &db);
		if (!s.ok()) {
			fprintf(stderr, "%s: reopen: %s\n", what, s.ToString().c_str());
			return false;
		}
		std::string v;
		for (int k : acked) {
			s = db->Get(ReadOptions(), key(k), &v);
			if (!s.ok() || v != value(k, 7)) {
				fprintf(stderr, "%s: acknowledged put %d after reopen: %s\n", what, k,
				        s.ToString().c_str());
				return false;
			}
		}
		s = db->Close();
		delete db;
		return s.ok();
	});
	ck_assert_msg(rc == 0, "%s: the DB reopened without the fault is not whole (%d)", what, rc);
	fsck_clean();
}

} // namespace

START_TEST(test_device_errors_surface_as_ioerror_and_the_db_reopens_whole)
{
	for (long at : {40L, 400L, 1500L, 4000L}) {
		struct fault_cfg w = {};
		w.fail_write_at = at;
		w.sticky = 1;
		fault_round(w, ("write fails from " + std::to_string(at)).c_str());
		struct fault_cfg f = {};
		f.fail_flush_at = at / 10;
		f.sticky = 1;
		fault_round(f, ("flush fails from " + std::to_string(at / 10)).c_str());
		/* the mount reads about 20 blocks: from then on, RocksDB's */
		struct fault_cfg r = {};
		r.fail_read_at = 20 + at / 400;
		r.sticky = 1;
		fault_round(r, ("read fails from " + std::to_string(r.fail_read_at)).c_str());
	}
}
END_TEST

int main()
{
	Suite *s = suite_create("rocksdb");
	struct { const char *name; const TTest *t; } tests[] = {
		{"filesystem", test_directories_are_what_the_names_make},
		{"filesystem", test_one_mount_per_process_released_by_the_last_user},
		{"filesystem", test_rename_replaces_and_times_and_locks},
		{"filesystem", test_reads_of_every_kind_return_the_bytes},
		{"filesystem", test_a_full_volume_says_nospace},
		{"kill9", test_kill9_leaves_a_log_exactly_as_appended},
		{"db", test_db_put_get_iterate_flush_compact_checkpoint_reopen},
		{"db", test_db_with_direct_reads_and_flushes},
		{"kill9", test_kill9_keeps_every_acknowledged_synced_put},
		{"kill9", test_kill9_keeps_every_acknowledged_unsynced_put},
		{"kill9", test_kill9_keeps_what_manual_wal_flush_flushed},
		{"faults", test_device_errors_surface_as_ioerror_and_the_db_reopens_whole},
	};
	for (auto &t : tests) {
		TCase *tc = tcase_create(t.name);
		tcase_add_unchecked_fixture(tc, name_image, remove_image);
		tcase_set_timeout(tc, 600);
		tcase_add_test(tc, t.t);
		suite_add_tcase(s, tc);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
