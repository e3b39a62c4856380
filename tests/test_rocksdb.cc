/*
 * RocksDB on libdio (ext/rocksdb): put, get, iterate, delete range,
 * flush, compact, column families, checkpoints and reopen, buffered and
 * direct; kill -9 of a writer with sync, without, and with
 * manual_wal_flush; device errors under it.  Every value is checked,
 * and the volume passes dio_fsck after each test.  The backend is
 * DIO_BACKEND's (dio_mount reads it).
 */
#include <csignal>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include "rocksdb_util.h"
extern "C" {
#include "helpers.h"   /* the fault backend (faultdev.c) */
}

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
		int rfd;
		pid_t pid = spawn(&rfd, [&](int fd) { writer(fd, mode, r); });
		/* the first acknowledgement, then a random while */
		int i;
		ssize_t got = read(rfd, &i, sizeof(i));
		ck_assert_msg(got == (ssize_t)sizeof(i), "round %d: the writer died before its first put", r);
		acked[r] = i;
		usleep((useconds_t)(rand() % 150000));
		kill(pid, SIGKILL);
		while (read(rfd, &i, sizeof(i)) == (ssize_t)sizeof(i))
			acked[r] = i;
		close(rfd);
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
	int rfd;
	pid_t pid = spawn(&rfd, [&](int fd) { faulty_writer(fd, cfg, what); });
	std::vector<int> acked;
	int i;
	while (read(rfd, &i, sizeof(i)) == (ssize_t)sizeof(i))
		acked.push_back(i);
	close(rfd);
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
	const NamedTest tests[] = {
		{"db", test_db_put_get_iterate_flush_compact_checkpoint_reopen},
		{"db", test_db_with_direct_reads_and_flushes},
		{"kill9", test_kill9_keeps_every_acknowledged_synced_put},
		{"kill9", test_kill9_keeps_every_acknowledged_unsynced_put},
		{"kill9", test_kill9_keeps_what_manual_wal_flush_flushed},
		{"faults", test_device_errors_surface_as_ioerror_and_the_db_reopens_whole},
	};
	return run_suite("rocksdb", tests);
}
