/*
 * The RocksDB FileSystem's calls (ext/rocksdb) as RocksDB makes them:
 * names and directories, renames, locks, times, one mount per process,
 * reads of every kind, a full volume, and a log after kill -9 of its
 * writer.  The volume passes dio_fsck after each test; the backend is
 * DIO_BACKEND's (dio_mount reads it).
 */
#include <csignal>
#include <ctime>
#include "rocksdb_util.h"

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
	int rfd;
	pid_t pid = spawn(&rfd, [](int fd) {
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
		if (write(fd, &total, sizeof(total)) != (ssize_t)sizeof(total))
			_exit(4);
		raise(SIGKILL);
	});
	uint64_t total = 0;
	ck_assert(read(rfd, &total, sizeof(total)) == (ssize_t)sizeof(total));
	close(rfd);
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
int main()
{
	const NamedTest tests[] = {
		{"names", test_directories_are_what_the_names_make},
		{"mounts", test_one_mount_per_process_released_by_the_last_user},
		{"names", test_rename_replaces_and_times_and_locks},
		{"reads", test_reads_of_every_kind_return_the_bytes},
		{"space", test_a_full_volume_says_nospace},
		{"kill9", test_kill9_leaves_a_log_exactly_as_appended},
	};
	return run_suite("rocksdb-fs", tests);
}
