/*
 * SQLite on libdio through libdio_sqlite, as its users run it: the
 * system's SQLite, the VFS loaded as an extension (volume= in the URI)
 * or registered on a mounted volume (dio_sqlite_register).
 *
 * Every journal mode keeps every row through a remount; a writer killed
 * with SIGKILL loses no transaction it reported committed; a device error
 * surfaces as SQLITE_IOERR and leaves a consistent database; page I/O of
 * a registered VFS is zero copy; a volume another process holds gives
 * SQLITE_CANTOPEN with a message that says so.  This program links the
 * shared libdio, as the VFS does: one library, one backend registry.
 */
#include "helpers.h"
#include <dio/sqlite.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/uio.h>
#include <time.h>

#define ROWS 100000
/* x from a to b (generate_series is the shell's, not the library's) */
#define SERIES(a, b) "(WITH RECURSIVE s(x) AS (SELECT " #a " UNION ALL SELECT x + 1 FROM s WHERE x < " #b ") SELECT x FROM s)"

static char uri[4200];

/* The VFS "libdio", loaded the way the shell loads it. */
static void load_extension(void)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_enable_load_extension(db, 1), SQLITE_OK);
	char *err = NULL;
	int rc = sqlite3_load_extension(db, getenv("DIO_SQLITE_EXT"), NULL, &err);
	ck_assert_msg(rc == SQLITE_OK, "load %s: %s", getenv("DIO_SQLITE_EXT"), err ? err : "?");
	sqlite3_close(db);
	ck_assert_ptr_nonnull(sqlite3_vfs_find("libdio"));
}

static void fresh_volume(const char *tag)
{
	t_img = strdup(t_image_path(tag));
	t_forget_plog(t_img);
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 256u << 20 }), 0);
}

/* A fresh volume, mounted and registered as VFS vfs (before SQLite
   starts, in a test's own process: with aligned page memory). */
static struct dio_vol *registered_volume(const char *tag, const char *vfs)
{
	fresh_volume(tag);
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = t_backend() });
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(dio_sqlite_register(v, vfs, 0), SQLITE_OK);
	return v;
}

/* Database name through VFS vfs, created if missing. */
static sqlite3 *open_with(const char *name, const char *vfs)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2(name, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
	return db;
}

static sqlite3 *open_uri(const char *name)
{
	snprintf(uri, sizeof(uri), "file:%s?vfs=libdio&volume=%s", name, t_img);
	sqlite3 *db;
	int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL);
	ck_assert_msg(rc == SQLITE_OK, "open %s: %s", uri, sqlite3_errmsg(db));
	return db;
}

static void exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
}

static long long one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	long long v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void integrity_ok(sqlite3 *db)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

/* Row a's text, as the workload leaves it: rows whose a % 7 == 3 were
   updated, rows whose a % 11 == 5 deleted. */
static bool row_alive(long long a) { return a % 11 != 5; }

static void row_text(long long a, bool updated, char *out, size_t n)
{
	snprintf(out, n, "%s-%lld-%llx-%0*lld", updated ? "new" : "old", a, (unsigned long long)(a * 2654435761u),
		 (int)(20 + a % 60), a);
}

static void workload(sqlite3 *db)
{
	exec(db, "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c INTEGER)");
	sqlite3_stmt *ins;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?, ?, ?)", -1, &ins, NULL), SQLITE_OK);
	char text[128];
	for (long long a = 1; a <= ROWS; a++) {
		if (a % 1000 == 1)
			exec(db, "BEGIN");
		row_text(a, false, text, sizeof(text));
		sqlite3_bind_int64(ins, 1, a);
		sqlite3_bind_text(ins, 2, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(ins, 3, a * 3);
		ck_assert_int_eq(sqlite3_step(ins), SQLITE_DONE);
		sqlite3_reset(ins);
		if (a % 1000 == 0)
			exec(db, "COMMIT");
	}
	sqlite3_finalize(ins);
	exec(db, "CREATE INDEX tc ON t(c)");
	exec(db, "CREATE INDEX tb ON t(b)");
	sqlite3_stmt *up;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "UPDATE t SET b = ? WHERE a = ?", -1, &up, NULL), SQLITE_OK);
	exec(db, "BEGIN");
	for (long long a = 3; a <= ROWS; a += 7) {
		row_text(a, true, text, sizeof(text));
		sqlite3_bind_text(up, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(up, 2, a);
		ck_assert_int_eq(sqlite3_step(up), SQLITE_DONE);
		sqlite3_reset(up);
	}
	exec(db, "COMMIT");
	sqlite3_finalize(up);
	exec(db, "DELETE FROM t WHERE a % 11 = 5");
	exec(db, "VACUUM");
	integrity_ok(db);
}

static void check_rows(sqlite3 *db)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT a, b, c FROM t ORDER BY a", -1, &st, NULL), SQLITE_OK);
	char text[128];
	long long want = 1, n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		while (!row_alive(want))
			want++;
		long long a = sqlite3_column_int64(st, 0);
		T_CHECK(a == want, "row %lld where %lld was due", a, want);
		row_text(a, a % 7 == 3, text, sizeof(text));
		T_CHECK(!strcmp((const char *)sqlite3_column_text(st, 1), text), "row %lld: %s", a,
			sqlite3_column_text(st, 1));
		T_CHECK(sqlite3_column_int64(st, 2) == a * 3, "row %lld: c", a);
		want++;
		n++;
	}
	sqlite3_finalize(st);
	long long alive = 0;
	for (long long a = 1; a <= ROWS; a++)
		alive += row_alive(a);
	ck_assert_int_eq(n, alive);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t INDEXED BY tc WHERE c > 0"), n);
}

static const char *const modes[] = { "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL" };

START_TEST(test_every_journal_mode_keeps_every_row_through_a_remount)
{
	load_extension();
	const char *mode = modes[_i];
	fresh_volume(mode);
	sqlite3 *db = open_uri("main.db");
	char sql[128];
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", mode);
	exec(db, sql);
	exec(db, "PRAGMA synchronous=FULL");
	workload(db);
	check_rows(db);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	/* the last close unmounted the volume: it is consistent on its own */
	ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
	db = open_uri("main.db");
	integrity_ok(db);
	check_rows(db);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}
END_TEST

/* ---- killed writers ------------------------------------------------------------- */

static void child_writer(int report, int round, const char *sync)
{
	sqlite3 *db;
	snprintf(uri, sizeof(uri), "file:kill.db?vfs=libdio&volume=%s", t_img);
	if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL))
		_exit(2);
	sqlite3_busy_timeout(db, 1000);
	char *err = NULL;
	const char *mode = round % 2 ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE";
	char prag[64];
	snprintf(prag, sizeof(prag), "PRAGMA synchronous=%s", sync);
	if (sqlite3_exec(db, mode, NULL, NULL, &err) || sqlite3_exec(db, prag, NULL, NULL, &err) ||
	    sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS k(id INTEGER PRIMARY KEY, v TEXT, w BLOB)",
			 NULL, NULL, &err))
		_exit(3);
	long long next = 1;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) + 1 FROM k", -1, &st, NULL) || sqlite3_step(st) != SQLITE_ROW)
		_exit(4);
	next = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db, "INSERT INTO k VALUES(?, ?, randomblob(?))", -1, &st, NULL))
		_exit(5);
	for (;; next++) {
		char v[64];
		snprintf(v, sizeof(v), "row %lld", next);
		if (sqlite3_exec(db, "BEGIN", NULL, NULL, &err))
			_exit(6);
		sqlite3_bind_int64(st, 1, next);
		sqlite3_bind_text(st, 2, v, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, (int)(100 + next % 300));
		if (sqlite3_step(st) != SQLITE_DONE)
			_exit(7);
		sqlite3_reset(st);
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err)) {
			fprintf(stderr, "writer: COMMIT of %lld: %s\n", next, err);
			_exit(8);
		}
		if (write(report, &next, sizeof(next)) != sizeof(next))
			_exit(9);
	}
}

static void log_stderr(void *arg, int code, const char *msg)
{
	(void)arg;
	fprintf(stderr, "sqlite log (%d): %s\n", code, msg);
}

/*
 * The death of the process is not a power loss: a commit SQLite reported
 * survives it whatever `synchronous` says, as on a file system (the VFS
 * holds write runs and has runs in flight only while SQLite has made no
 * other call).  _i 0: synchronous=FULL, 30 rounds (DIO_SQLITE_KILL_ROUNDS);
 * _i 1: OFF and NORMAL in turn, 20 rounds.
 */
START_TEST(test_a_killed_writer_loses_no_reported_commit)
{
	static const char *syncs[] = { "FULL", "OFF", "NORMAL" };
	ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_LOG, log_stderr, NULL), SQLITE_OK);
	load_extension();
	fresh_volume("sqlkill");
	sqlite3 *made = open_uri("kill.db");   /* a writer killed early finds it */
	exec(made, "CREATE TABLE k(id INTEGER PRIMARY KEY, v TEXT, w BLOB)");
	ck_assert_int_eq(sqlite3_close(made), SQLITE_OK);
	int rounds = getenv("DIO_SQLITE_KILL_ROUNDS") ? atoi(getenv("DIO_SQLITE_KILL_ROUNDS")) : 30;
	if (_i)
		rounds = rounds * 2 / 3;
	long long total = 0;
	srand(4242);
	for (int round = 0; round < rounds; round++) {
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			child_writer(pfd[1], round, _i ? syncs[1 + (round / 2) % 2] : syncs[0]);
		}
		close(pfd[1]);
		struct timespec ts = { 0, (long)(rand() % 150 + 20) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		long long last = total, id;
		while (read(pfd[0], &id, sizeof(id)) == sizeof(id))
			last = id;
		close(pfd[0]);
		int status;
		waitpid(pid, &status, 0);
		ck_assert_msg(WIFSIGNALED(status), "round %d: the writer stopped by itself (%d)", round,
			      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		/* the kill released the volume; the journal or WAL may be hot */
		sqlite3 *db = NULL;
		for (int tries = 0; tries < 100; tries++) {
			snprintf(uri, sizeof(uri), "file:kill.db?vfs=libdio&volume=%s", t_img);
			if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL) == SQLITE_OK)
				break;
			if (tries == 99)
				fprintf(stderr, "round %d: reopen: %s\n", round, sqlite3_errmsg(db));
			sqlite3_close(db);
			db = NULL;
			usleep(10000);
		}
		ck_assert_ptr_nonnull(db);
		integrity_ok(db);
		long long n = one_int(db, "SELECT count(*) FROM k"), max = one_int(db, "SELECT coalesce(max(id), 0) FROM k");
		/* every reported commit, and at most the one in flight */
		ck_assert_msg(n == max && (max == last || max == last + 1),
			      "round %d: %lld rows up to %lld, %lld reported", round, n, max, last);
		ck_assert_int_eq(one_int(db, "SELECT count(*) FROM k WHERE v != 'row ' || id OR length(w) != 100 + id % 300"), 0);
		total = max;
		ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	}
	ck_assert_int_gt(total, rounds);   /* the rounds did commit */
	ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
}
END_TEST

/*
 * A volume that fills up: the commit whose pages or frames no longer fit
 * must fail (its write fails), not be reported and then lost to a kill.
 * A child commits one 3 KiB row per transaction on a 6 MiB volume until
 * a COMMIT fails, reporting each that succeeded, and waits to be killed;
 * every reported row must be there after the reopen.  _i: 0 WAL +
 * NORMAL, 1 WAL + OFF, 2 DELETE + OFF (the journal must not go before
 * the pages it protects are down).
 */
static void filling_writer(int report, const char *mode, const char *sync)
{
	sqlite3 *db;
	snprintf(uri, sizeof(uri), "file:full.db?vfs=libdio&volume=%s", t_img);
	char prag[128];
	snprintf(prag, sizeof(prag), "PRAGMA journal_mode=%s; PRAGMA synchronous=%s", mode, sync);
	if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL) ||
	    sqlite3_exec(db, prag, NULL, NULL, NULL) ||
	    sqlite3_exec(db, "CREATE TABLE k(id INTEGER PRIMARY KEY, w BLOB)", NULL, NULL, NULL))
		_exit(2);
	for (long long id = 1;; id++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "INSERT INTO k VALUES(%lld, zeroblob(3000))", id);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL))
			break;   /* autocommit: the insert's commit failed (full) */
		if (write(report, &id, sizeof(id)) != sizeof(id))
			_exit(3);
	}
	long long done = -1;
	if (write(report, &done, sizeof(done)) != sizeof(done))
		_exit(4);
	pause();
	_exit(0);
}

START_TEST(test_a_commit_a_full_volume_cannot_keep_fails_and_a_kill_loses_no_reported_one)
{
	static const char *const how[3][2] = { { "WAL", "NORMAL" }, { "WAL", "OFF" }, { "DELETE", "OFF" } };
	load_extension();
	t_img = strdup(t_image_path("sqlfull"));
	t_forget_plog(t_img);
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 6u << 20, .journal_size = 256 << 10 }), 0);
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		filling_writer(pfd[1], how[_i][0], how[_i][1]);
	}
	close(pfd[1]);
	long long last = 0, id;
	bool full = false;
	while (!full && read(pfd[0], &id, sizeof(id)) == sizeof(id)) {
		if (id < 0)
			full = true;
		else
			last = id;
	}
	kill(pid, SIGKILL);
	close(pfd[0]);
	int status;
	waitpid(pid, &status, 0);
	ck_assert_msg(full, "%s/%s: the writer ended before the volume was full (%d)", how[_i][0], how[_i][1],
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	ck_assert_int_gt(last, 10);
	sqlite3 *db = NULL;
	for (int tries = 0; tries < 100; tries++) {
		snprintf(uri, sizeof(uri), "file:full.db?vfs=libdio&volume=%s", t_img);
		if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL) == SQLITE_OK)
			break;
		sqlite3_close(db);
		db = NULL;
		usleep(10000);
	}
	ck_assert_ptr_nonnull(db);
	long long n = one_int(db, "SELECT count(*) FROM k"), max = one_int(db, "SELECT coalesce(max(id), 0) FROM k");
	ck_assert_msg(n == max && max >= last && max <= last + 1, "%s/%s: %lld rows up to %lld, %lld commits reported",
		      how[_i][0], how[_i][1], n, max, last);
	integrity_ok(db);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}
END_TEST

/* ---- a device that fails ---------------------------------------------------------- */

/* A psync-like backend whose writes fail with EIO while `failing`. */
static volatile int failing;
static int fb_probe(void) { return 0; }
static void *fb_open(int fd, unsigned depth, int *err) { (void)depth; (void)err; return (void *)(intptr_t)(fd + 1); }
static void fb_close(void *c) { (void)c; }
static int fb_flush(void *c) { return fdatasync((int)(intptr_t)c - 1) ? -errno : 0; }
static int fb_submit(void *c, struct dio_bio *b, unsigned n)
{
	int fd = (int)(intptr_t)c - 1;
	for (unsigned i = 0; i < n; i++) {
		if (b[i].op == DIO_BIO_WRITE && failing) {
			b[i].res = -EIO;
			continue;
		}
		ssize_t r = b[i].op == DIO_BIO_READ ? preadv(fd, b[i].iov, b[i].iovcnt, (off_t)b[i].offset)
						    : pwritev(fd, b[i].iov, b[i].iovcnt, (off_t)b[i].offset);
		b[i].res = r < 0 ? -errno : r;
	}
	return 0;
}
static const struct dio_backend_ops failing_dev = {
	.abi = DIO_BACKEND_ABI, .name = "sqlfail", .probe = fb_probe, .open = fb_open,
	.submit = fb_submit, .flush = fb_flush, .close = fb_close,
};

START_TEST(test_a_device_error_is_sqlite_ioerr_and_the_database_stays_consistent)
{
	fresh_volume("sqlfail");
	unsetenv("DIO_BACKEND");   /* it would override the backend asked for */
	ck_assert_int_eq(dio_backend_register(&failing_dev), 0);
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = "sqlfail" });
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(dio_sqlite_register(v, "libdio-failing", 0), SQLITE_OK);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2("f.db", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "libdio-failing"),
			 SQLITE_OK);
	exec(db, "PRAGMA synchronous=FULL; CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)");
	exec(db, "INSERT INTO t SELECT x, hex(randomblob(200)) FROM " SERIES(1, 2000));
	long long before = one_int(db, "SELECT sum(length(b)) FROM t");
	failing = 1;
	int rc = sqlite3_exec(db, "INSERT INTO t SELECT x, 'lost' FROM " SERIES(2001, 4000), NULL, NULL, NULL);
	ck_assert_msg((rc & 0xff) == SQLITE_IOERR, "a failed write gave %d (%s)", rc, sqlite3_errmsg(db));
	failing = 0;
	sqlite3_close(db);
	dio_umount(v);   /* may report the error again: the state on disk is what counts */
	/* a fresh process state: mount again through the URI */
	load_extension();
	db = open_uri("f.db");
	integrity_ok(db);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t"), 2000);
	ck_assert_int_eq(one_int(db, "SELECT sum(length(b)) FROM t"), before);
	sqlite3_close(db);
}
END_TEST

/* ---- zero copy -------------------------------------------------------------------- */

START_TEST(test_page_io_of_a_registered_vfs_is_zero_copy)
{
	/* before SQLite is initialized: aligned page buffers */
	struct dio_vol *v = registered_volume("sqlzc", "libdio-zc");
	sqlite3 *db = open_with("zc.db", "libdio-zc");
	/* only the database file on the volume: the journal in memory, one
	   connection (no change-counter reads) */
	exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=MEMORY; PRAGMA locking_mode=EXCLUSIVE;"
		 "PRAGMA synchronous=FULL; CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB)");
	struct dio_counters c0, c1;
	ck_assert_int_eq(dio_counters(v, &c0), 0);
	for (int i = 0; i < 20; i++)
		exec(db, "INSERT INTO t(b) SELECT randomblob(300) FROM " SERIES(1, 500));
	exec(db, "UPDATE t SET b = randomblob(310) WHERE a % 3 = 0");
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(dio_counters(v, &c1), 0);
	ck_assert_uint_gt(c1.writes - c0.writes, 100);
	ck_assert_uint_eq(c1.bounced - c0.bounced, 0);
	ck_assert_uint_eq(c1.rmw_blocks - c0.rmw_blocks, 0);
	/* reading it all back: pages straight into SQLite's buffers (the
	   100-byte header read at open is the one bounced request) */
	ck_assert_int_eq(sqlite3_open_v2("zc.db", &db, SQLITE_OPEN_READWRITE, "libdio-zc"), SQLITE_OK);
	exec(db, "PRAGMA locking_mode=EXCLUSIVE");
	ck_assert_int_eq(dio_counters(v, &c0), 0);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE length(b) >= 300"), 10000);
	integrity_ok(db);
	ck_assert_int_eq(dio_counters(v, &c1), 0);
	ck_assert_uint_gt(c1.reads - c0.reads, 100);
	ck_assert_uint_le(c1.bounced - c0.bounced, 1);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* With the VFS registered before SQLite starts, every allocation of a
   page or more is 4 KiB-aligned (what the zero-copy path needs); those up
   to 8 KiB come from the VFS's page slots (one whole slot each, kept
   across a realloc that still fits), and a realloc keeps the bytes. */
START_TEST(test_page_sized_allocations_are_aligned_and_keep_their_bytes)
{
	struct dio_vol *v = registered_volume("sqlmem", "libdio-mem");
	int sizes[] = { 4096, 4096 + 200, 8192, 8192 + 1, 65536 };
	void *p[5];
	for (int i = 0; i < 5; i++) {
		p[i] = sqlite3_malloc(sizes[i]);
		ck_assert_ptr_nonnull(p[i]);
		ck_assert_uint_eq((uintptr_t)p[i] % 4096, 0);
		ck_assert_int_ge(sqlite3_msize(p[i]), sizes[i]);
		memset(p[i], 0x40 + i, (size_t)sizes[i]);
	}
	if (sizeof(void *) >= 8) {
		ck_assert_int_eq(sqlite3_msize(p[1]), 8192);   /* a slot */
		ck_assert_ptr_eq(sqlite3_realloc(p[1], 6000), p[1]);
	}
	/* shrunk below a page, grown past a slot: the bytes move along */
	uint8_t *small = sqlite3_realloc(p[0], 100);
	ck_assert_ptr_nonnull(small);
	for (int k = 0; k < 100; k++)
		ck_assert_int_eq(small[k], 0x40);
	uint8_t *big = sqlite3_realloc(p[2], 20000);
	ck_assert_ptr_nonnull(big);
	ck_assert_uint_eq((uintptr_t)big % 4096, 0);
	for (int k = 0; k < 8192; k += 97)
		ck_assert_int_eq(big[k], 0x42);
	/* doubled to megabytes as the sorter does: aligned while a page
	   and its header could fit (128 KiB), every byte kept; shrunk back
	   under that, aligned again */
	for (size_t had = 20000; had <= 4u << 20; had *= 2) {
		memset(big + 8192, 0x55, had - 8192);
		big = sqlite3_realloc(big, (int)(had * 2));
		ck_assert_ptr_nonnull(big);
		if (had * 2 <= 128 << 10)
			ck_assert_uint_eq((uintptr_t)big % 4096, 0);
		ck_assert_int_eq(big[0], 0x42);
		ck_assert_int_eq(big[8191], 0x42);
		ck_assert_int_eq(big[8192], 0x55);
		ck_assert_int_eq(big[had - 1], 0x55);
		ck_assert_int_ge(sqlite3_msize(big), (int)(had * 2));
	}
	big = sqlite3_realloc(big, 100000);
	ck_assert_ptr_nonnull(big);
	ck_assert_uint_eq((uintptr_t)big % 4096, 0);
	ck_assert_int_eq(big[8191], 0x42);
	ck_assert_int_eq(big[99999], 0x55);
	sqlite3_free(small);
	sqlite3_free(big);
	for (int i = 1; i < 5; i++)
		if (i != 2)
			sqlite3_free(p[i]);
	/* freed slots come back for the next pages */
	void *again = sqlite3_malloc(4500);
	ck_assert_ptr_nonnull(again);
	ck_assert_uint_eq((uintptr_t)again % 4096, 0);
	sqlite3_free(again);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* The end of a test that wrote: the database is sound, closes, the
   volume unmounts, and fsck finds it clean. */
static void close_checked(sqlite3 *db, struct dio_vol *v)
{
	integrity_ok(db);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(dio_umount(v), 0);
	ck_assert_int_eq(dio_fsck(t_img, 0, NULL, NULL), 0);
}

/* ---- what the VFS spares the device --------------------------------------------- */

static uint64_t ctr(struct dio_vol *v, int which)
{
	struct dio_counters c;
	ck_assert_int_eq(dio_counters(v, &c), 0);
	return which == 0 ? c.writes : which == 1 ? c.reads : c.rmw_blocks;
}

/* A WAL transaction's frames (24 + 4096 bytes each, none block-aligned)
   go down as one write, not one per frame, and read nothing back; a
   checkpoint reads the frames from the VFS's copy of the WAL, not from
   the device, and writes the database's pages in runs. */
START_TEST(test_wal_frames_go_down_together_and_checkpoints_read_nothing)
{
	struct dio_vol *v = registered_volume("sqlwal", "libdio-wal");
	sqlite3 *db = open_with("w.db", "libdio-wal");
	exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		 "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB)");
	uint64_t w0 = ctr(v, 0), m0 = ctr(v, 2);
	exec(db, "INSERT INTO t(b) SELECT randomblob(1000) FROM " SERIES(1, 400));   /* ~100 pages */
	ck_assert_uint_le(ctr(v, 0) - w0, 3);
	ck_assert_uint_le(ctr(v, 2) - m0, 2);
	uint64_t r0 = ctr(v, 1);
	w0 = ctr(v, 0);
	ck_assert_int_eq(one_int(db, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);   /* not busy */
	ck_assert_uint_eq(ctr(v, 1) - r0, 0);
	ck_assert_uint_le(ctr(v, 0) - w0, 10);   /* ~100 pages, mostly in order */
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE length(b) = 1000"), 400);
	close_checked(db, v);
}
END_TEST

/* Each WAL commit starts inside the block where the last one ended: its
   run is completed to whole blocks from the VFS's copy of the WAL, so no
   commit reads a block back (one that grows the WAL still ends inside a
   block, which libdio's tail copy holds). */
START_TEST(test_wal_commits_go_down_as_whole_blocks)
{
	struct dio_vol *v = registered_volume("sqlwalblk", "libdio-walblk");
	sqlite3 *db = open_with("wb.db", "libdio-walblk");
	exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
		 "PRAGMA cache_size=-65536; CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);"
		 "INSERT INTO t(b) SELECT printf('%0300d', x) FROM " SERIES(1, 3000));
	struct dio_counters c0, c1;
	ck_assert_int_eq(dio_counters(v, &c0), 0);
	for (int i = 1; i <= 300; i++) {   /* past a checkpoint (1,000 frames) */
		char sql[128];
		snprintf(sql, sizeof(sql), "UPDATE t SET b = 'w%d' WHERE a = %d", i, (i * 7919) % 3000 + 1);
		exec(db, sql);
		if (i % 100 == 0)
			exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
	}
	ck_assert_int_eq(dio_counters(v, &c1), 0);
	ck_assert_uint_ge(c1.writes - c0.writes, 300);
	ck_assert_uint_eq(c1.rmw_blocks - c0.rmw_blocks, 0);
	ck_assert_uint_eq(c1.bytes_read - c0.bytes_read, 0);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE b LIKE 'w%'"), 300);
	integrity_ok(db);
	/* past the copy's 16 MiB the commits' edge blocks are not in it:
	   they go down as they are and the bytes are still right */
	exec(db, "PRAGMA wal_autocheckpoint=0; INSERT INTO t(b) SELECT printf('%04000d', x) FROM " SERIES(1, 4500));
	for (int i = 1; i <= 40; i++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "UPDATE t SET b = 'x%d' WHERE a = %d", i, i * 37);
		exec(db, sql);
	}
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE b LIKE 'x%'"), 40);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE length(b) = 4000"), 4500);
	ck_assert_int_eq(one_int(db, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE b LIKE 'x%'"), 40);
	close_checked(db, v);
}
END_TEST

/* In rollback mode each read transaction reads the database's change
   counter: served from the VFS's copy of the header, not the device. */
START_TEST(test_read_transactions_read_no_header_from_the_device)
{
	struct dio_vol *v = registered_volume("sqlhdr", "libdio-hdr");
	sqlite3 *db = open_with("h.db", "libdio-hdr"), *other;
	exec(db, "PRAGMA journal_mode=DELETE; CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);"
		 "INSERT INTO t(b) SELECT 'x' || x FROM " SERIES(1, 1000));
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t"), 1000);
	uint64_t r0 = ctr(v, 1);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(one_int(db, "SELECT length(b) > 1 FROM t WHERE a = 500"), 1);
	ck_assert_uint_eq(ctr(v, 1) - r0, 0);
	/* another connection's commit changes the counter: this one sees it */
	ck_assert_int_eq(sqlite3_open_v2("h.db", &other, SQLITE_OPEN_READWRITE, "libdio-hdr"), SQLITE_OK);
	exec(other, "UPDATE t SET b = 'changed' WHERE a = 500");
	ck_assert_int_eq(sqlite3_close(other), SQLITE_OK);
	ck_assert_int_eq(one_int(db, "SELECT b = 'changed' FROM t WHERE a = 500"), 1);
	integrity_ok(db);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(dio_umount(v), 0);
}
END_TEST

/* A rollback-journal commit rewrites the journal header's record count
   (12 bytes at offset 0) before its second sync: written from the VFS's
   copy of the journal's first block, it reads nothing back.  (SQLite
   also looks for a stale header past the journal's end each commit: a
   read of nothing.)  PERSIST keeps the journal and writes over it, and
   reads its first byte each commit, to see that it is not hot.
   50 single-row commits in mode: journal and pages go down, no block is
   read back, and each commit's journal (header, then a record for each
   page, across the writer's step to EXCLUSIVE) is one run: at most
   dev_per_commit device I/Os a commit. */
static void rollback_commits(const char *mode, const char *tag, const char *vfs, double dev_per_commit,
			     unsigned bytes_read_per_commit)
{
	struct dio_vol *v = registered_volume(tag, vfs);
	sqlite3 *db = open_with("j.db", vfs);
	char sql[256];
	snprintf(sql, sizeof(sql), "PRAGMA page_size=4096; PRAGMA journal_mode=%s; PRAGMA synchronous=FULL;"
		 "PRAGMA cache_size=-65536; CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);", mode);
	exec(db, sql);
	exec(db, "INSERT INTO t(b) SELECT printf('%0400d', x) FROM " SERIES(1, 2000));
	integrity_ok(db);   /* every page in SQLite's cache from here on */
	exec(db, "UPDATE t SET b = 'first' WHERE a = 1");   /* PERSIST: the journal exists */
	struct dio_counters c0, c1;
	ck_assert_int_eq(dio_counters(v, &c0), 0);
	for (int i = 1; i <= 50; i++) {
		snprintf(sql, sizeof(sql), "UPDATE t SET b = 'changed %d' WHERE a = %d", i, i * 37);
		exec(db, sql);
	}
	ck_assert_int_eq(dio_counters(v, &c1), 0);
	ck_assert_uint_gt(c1.writes - c0.writes, 100);   /* journals and pages went down */
	ck_assert_uint_eq(c1.rmw_blocks - c0.rmw_blocks, 0);
	ck_assert_uint_eq(c1.bytes_read - c0.bytes_read, 50 * bytes_read_per_commit);
	ck_assert_double_le((double)(c1.device_ios - c0.device_ios) / 50, dev_per_commit);
	ck_assert_int_eq(one_int(db, "SELECT count(*) FROM t WHERE b LIKE 'changed %'"), 50);
	close_checked(db, v);
	t_img_cleanup();   /* the next mode gets a volume of its own */
}

START_TEST(test_rollback_journal_commits_read_nothing_back)
{
	rollback_commits("DELETE", "sqljd", "libdio-jd", 5.5, 0);
	rollback_commits("TRUNCATE", "sqljt", "libdio-jt", 6.5, 0);
	/* PERSIST: SQLite reads the kept journal's first byte each commit */
	rollback_commits("PERSIST", "sqljp", "libdio-jp", 7.5, 1);
}
END_TEST

/* Scattered writes (each ends a run, and ended runs are held to go in
   flight several at a time) and a later write over one of them before
   anything waits: the later one lands last, and every byte reads back as
   written last, through the VFS and after a remount. */
START_TEST(test_held_runs_keep_the_order_of_overlapping_writes)
{
	/* not on tmpfs (DIO_INFO_MEMORY), where runs are written at once */
	char path[256];
	snprintf(path, sizeof(path), "/var/tmp/libdio-test-sqlrun-%s-%d.img", t_backend(), (int)getpid());
	t_img = strdup(path);
	t_forget_plog(t_img);
	unlink(t_img);
	ck_assert_int_eq(dio_mkfs(t_img, &(struct dio_mkfs_opts){ .size = 64u << 20 }), 0);
	struct dio_vol *v = dio_mount(t_img, &(struct dio_mount_opts){ .backend = t_backend() });
	ck_assert_ptr_nonnull(v);
	struct dio_info info;
	struct dio_file *probe = dio_open(v, "probe", O_RDWR | O_CREAT);
	ck_assert_int_eq(dio_info(probe, &info), 0);
	dio_close(probe);
	if (info.flags & DIO_INFO_MEMORY)
		fprintf(stderr, "note: /var/tmp is in memory here; the queue of runs is not exercised\n");
	ck_assert_int_eq(dio_sqlite_register(v, "libdio-run", 0), SQLITE_OK);
	sqlite3_vfs *vfs = sqlite3_vfs_find("libdio-run");
	ck_assert_ptr_nonnull(vfs);
	sqlite3_file *f = calloc(1, (size_t)vfs->szOsFile);
	int out = 0;
	ck_assert_int_eq(vfs->xOpen(vfs, "runs.db", f, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_MAIN_DB, &out), SQLITE_OK);
	enum { PAGES = 40, PS = 4096 };
	uint8_t *page = t_aligned(PS), *back = t_aligned(PS);
	/* every other page, then pages 4, 14 and 24 again, all held or in
	   flight until the sync */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < PAGES; i += 2) {
			if (round && i % 10 != 4)
				continue;
			memset(page, 'a' + round * 10 + i % 10, PS);
			ck_assert_int_eq(f->pMethods->xWrite(f, page, PS, (sqlite3_int64)i * PS), SQLITE_OK);
		}
	}
	/* a run that continues into a held one: pages 30, 31, 32 (32 held
	   above) in one run */
	for (int i = 30; i <= 32; i++) {
		memset(page, 'z', PS);
		ck_assert_int_eq(f->pMethods->xWrite(f, page, PS, (sqlite3_int64)i * PS), SQLITE_OK);
	}
	ck_assert_int_eq(f->pMethods->xSync(f, SQLITE_SYNC_FULL), SQLITE_OK);
	for (int i = 0; i < PAGES; i += 2) {
		ck_assert_int_eq(f->pMethods->xRead(f, back, PS, (sqlite3_int64)i * PS), SQLITE_OK);
		char want = i >= 30 && i <= 32 ? 'z' : (char)('a' + (i % 10 == 4 ? 10 : 0) + i % 10);
		ck_assert_msg(back[0] == (uint8_t)want && back[PS - 1] == (uint8_t)want, "page %d: %c, want %c",
			      i, back[0], want);
	}
	ck_assert_int_eq(f->pMethods->xClose(f), SQLITE_OK);
	free(f);
	ck_assert_int_eq(dio_umount(v), 0);
	/* on the device, in the same order */
	v = t_mount(t_img);
	struct dio_file *d = dio_open(v, "runs.db", O_RDONLY);
	ck_assert_ptr_nonnull(d);
	for (int i = 4; i < PAGES; i += 10) {
		ck_assert_int_eq(dio_pread(d, back, PS, (off_t)i * PS), PS);
		ck_assert_int_eq(back[0], 'a' + 14);
		ck_assert_int_eq(back[PS - 1], 'a' + 14);
	}
	dio_close(d);
	ck_assert_int_eq(dio_umount(v), 0);
	free(page);
	free(back);
}
END_TEST

/* ---- one process per volume ----------------------------------------------------- */

static char logged[512];
static void log_cb(void *arg, int code, const char *msg)
{
	(void)arg;
	(void)code;
	snprintf(logged, sizeof(logged), "%s", msg);
}

START_TEST(test_a_volume_held_by_another_process_is_cantopen_with_a_message)
{
	ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_LOG, log_cb, NULL), SQLITE_OK);
	load_extension();
	fresh_volume("sqlbusy");
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct dio_vol *v = dio_mount(t_img, NULL);
		char c = v ? 'y' : 'n';
		if (write(pfd[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c = 0;
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	ck_assert_int_eq(c, 'y');
	snprintf(uri, sizeof(uri), "file:x.db?vfs=libdio&volume=%s", t_img);
	sqlite3 *db;
	int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert_int_eq(rc, SQLITE_CANTOPEN);
	ck_assert_msg(strstr(logged, "mounted by another process") != NULL, "logged: %s", logged);
	/* the reason reaches the caller too: the VFS's xGetLastError */
	ck_assert_int_eq(sqlite3_system_errno(db), EBUSY);
	sqlite3_close(db);
	/* and for an image that is not there */
	snprintf(uri, sizeof(uri), "file:x.db?vfs=libdio&volume=%s.missing", t_img);
	rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL);
	ck_assert_int_eq(rc, SQLITE_CANTOPEN);
	ck_assert_int_eq(sqlite3_system_errno(db), ENOENT);
	sqlite3_close(db);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sqlite");
	TCase *tc = tcase_create("sqlite");
	tcase_add_checked_fixture(tc, NULL, t_img_cleanup);
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_every_journal_mode_keeps_every_row_through_a_remount, 0, 5);
	tcase_add_loop_test(tc, test_a_killed_writer_loses_no_reported_commit, 0, 2);
	tcase_add_loop_test(tc, test_a_commit_a_full_volume_cannot_keep_fails_and_a_kill_loses_no_reported_one, 0, 3);
	tcase_add_test(tc, test_wal_frames_go_down_together_and_checkpoints_read_nothing);
	tcase_add_test(tc, test_wal_commits_go_down_as_whole_blocks);
	tcase_add_test(tc, test_read_transactions_read_no_header_from_the_device);
	tcase_add_test(tc, test_rollback_journal_commits_read_nothing_back);
	tcase_add_test(tc, test_held_runs_keep_the_order_of_overlapping_writes);
	tcase_add_test(tc, test_a_device_error_is_sqlite_ioerr_and_the_database_stays_consistent);
	tcase_add_test(tc, test_page_io_of_a_registered_vfs_is_zero_copy);
	tcase_add_test(tc, test_page_sized_allocations_are_aligned_and_keep_their_bytes);
	tcase_add_test(tc, test_a_volume_held_by_another_process_is_cantopen_with_a_message);
	suite_add_tcase(s, tc);
	return t_run(s);
}
