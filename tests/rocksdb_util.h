/*
 * What the RocksDB suites share (tests/test_rocksdb_fs.cc: the
 * FileSystem's calls; tests/test_rocksdb.cc: RocksDB on a volume): the
 * test's image, the FileSystem over it, keys and values that say whose
 * they are, and the suite's runner.  Header-only, C++17.
 */
#ifndef DIO_TEST_ROCKSDB_UTIL_H
#define DIO_TEST_ROCKSDB_UTIL_H

#include <dio/dio.h>
#include <dio/rocksdb.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <glob.h>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
/* last: Check's macros (fail) would rename the C++ library's */
#include <check.h>

using namespace rocksdb;


inline std::string img;

/* The test's image path: set in the runner's process (an unchecked
   fixture), so that its teardown, which runs there even when the test
   failed, removes what the test left. */
inline void name_image()
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
inline void remove_image()
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
inline void fresh(unsigned mib)
{
	remove_image();
	struct dio_mkfs_opts o = {};
	o.size = (uint64_t)mib << 20;
	ck_assert_msg(dio_mkfs(img.c_str(), &o) == 0, "mkfs %s: %s", img.c_str(), strerror(errno));
}

inline void fsck_clean()
{
	int rc = dio_fsck(img.c_str(), 0, [](int, const char *problem, void *) {
		fprintf(stderr, "fsck: %s\n", problem);
	}, nullptr);
	ck_assert_msg(rc == 0, "dio_fsck of %s: %d", img.c_str(), rc);
}

inline std::shared_ptr<FileSystem> fs_of_volume()
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

/* fn(fd) in a child that reports through fd and never returns (it is
   killed, or exits); the parent's end of the pipe in *rfd. */
template <class Fn> pid_t spawn(int *rfd, Fn fn)
{
	int p[2];
	ck_assert(pipe(p) == 0);
	fflush(stderr);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		fn(p[1]);
		_exit(0);
	}
	close(p[1]);
	*rfd = p[0];
	return pid;
}

inline std::string key(int i)
{
	char b[32];
	snprintf(b, sizeof(b), "key%08d", i);
	return b;
}

/* A value that says whose it is, of a length that varies with it. */
inline std::string value(int i, int gen)
{
	std::string v = "v" + std::to_string(gen) + ":" + std::to_string(i) + ":";
	v.append((size_t)(i * 7 % 300), (char)('a' + (i + gen) % 26));
	return v;
}

inline IOOptions io;

inline void write_file(FileSystem &fs, const std::string &path, const std::string &data)
{
	std::unique_ptr<FSWritableFile> w;
	CK_OK(fs.NewWritableFile(path, FileOptions(), &w, nullptr));
	CK_OK(w->Append(data, io, nullptr));
	CK_OK(w->Sync(io, nullptr));
	CK_OK(w->Close(io, nullptr));
}

inline std::string read_file(FileSystem &fs, const std::string &path)
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

inline std::vector<std::string> children(FileSystem &fs, const std::string &dir)
{
	std::vector<std::string> c;
	CK_OK(fs.GetChildren(dir, io, &c, nullptr));
	std::sort(c.begin(), c.end());
	return c;
}

/* Each test in a case of its own, its image named and removed by the
   runner's process (name_image, remove_image); the exit status. */
struct NamedTest {
	const char *tcase;
	const TTest *test;
};
template <size_t N> int run_suite(const char *name, const NamedTest (&tests)[N])
{
	Suite *s = suite_create(name);
	for (const NamedTest &t : tests) {
		TCase *tc = tcase_create(t.tcase);
		tcase_add_unchecked_fixture(tc, name_image, remove_image);
		tcase_set_timeout(tc, 600);
		tcase_add_test(tc, t.test);
		suite_add_tcase(s, tc);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
