/*
 * dio-sqlite-bench: the phases of issue 12's SQLite comparison, on stock
 * SQLite (the unix VFS, a file in DIR) or on libdio (libdio_sqlite over a
 * volume made afresh at IMAGE).
 *
 *   dio-sqlite-bench stock|libdio [-j delete|wal] [-c CACHE_KIB] [-n ROWS] DIR|IMAGE
 *
 * Phases (synchronous=FULL, page_size 4096): insert ROWS rows in
 * 1,000-row transactions, create an index, 20,000 point lookups by key,
 * 2,000 single-row committed updates, integrity_check.  -c sets
 * cache_size (KiB; 0, the default, leaves SQLite's default cache).  One
 * line per phase: "phase NAME wall_s cpu_s ops"; for libdio the volume's
 * counters after the run.  The same seed on both sides: the same rows,
 * the same keys looked up and updated.
 */
#include <dio/sqlite.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 42;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static sqlite3 *db;

static void die(const char *what)
{
	fprintf(stderr, "dio-sqlite-bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
	exit(1);
}

static void exec(const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "dio-sqlite-bench: %s: %s\n", sql, err);
		exit(1);
	}
}

static sqlite3_stmt *prep(const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		die(sql);
	return st;
}

static void step_done(sqlite3_stmt *st)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		die("step");
	sqlite3_reset(st);
}

static void value(char *v, uint64_t x)
{
	/* 100 bytes that do not compress to nothing */
	for (int i = 0; i < 100; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
		v[i] = (char)('a' + (x >> 59) % 26);
	v[100] = 0;
}

static double t0_wall, t0_cpu;
static struct dio_vol *vol;            /* libdio's side: its counters per phase */
static struct dio_counters k0;

static void phase_start(void)
{
	if (vol)
		dio_counters(vol, &k0);
	t0_wall = now(CLOCK_MONOTONIC);
	t0_cpu = now(CLOCK_PROCESS_CPUTIME_ID);
}

static void phase_end(const char *name, long ops)
{
	printf("phase %s %.4f %.4f %ld", name, now(CLOCK_MONOTONIC) - t0_wall,
	       now(CLOCK_PROCESS_CPUTIME_ID) - t0_cpu, ops);
	if (vol) {
		struct dio_counters k;
		dio_counters(vol, &k);
		printf(" device_ios %llu rmw_blocks %llu flushes %llu journal_commits %llu",
		       (unsigned long long)(k.device_ios - k0.device_ios),
		       (unsigned long long)(k.rmw_blocks - k0.rmw_blocks),
		       (unsigned long long)(k.flushes - k0.flushes),
		       (unsigned long long)(k.journal_commits - k0.journal_commits));
	}
	printf("\n");
	fflush(stdout);
}

static void run(long rows)
{
	char v[101];
	exec("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)");

	phase_start();
	sqlite3_stmt *ins = prep("INSERT INTO t(id, k, v) VALUES (?, ?, ?)");
	for (long i = 0; i < rows; i += 1000) {
		exec("BEGIN");
		for (long j = i; j < i + 1000 && j < rows; j++) {
			uint64_t x = next_rand();
			value(v, x);
			sqlite3_bind_int64(ins, 1, j + 1);
			sqlite3_bind_int64(ins, 2, (sqlite3_int64)(x >> 1));
			sqlite3_bind_text(ins, 3, v, 100, SQLITE_STATIC);
			step_done(ins);
		}
		exec("COMMIT");
	}
	sqlite3_finalize(ins);
	phase_end("insert", rows);

	phase_start();
	exec("CREATE INDEX tk ON t(k)");
	phase_end("index", 1);

	phase_start();
	sqlite3_stmt *get = prep("SELECT length(v) FROM t WHERE id = ?");
	long found = 0;
	for (int i = 0; i < 20000; i++) {
		sqlite3_bind_int64(get, 1, (sqlite3_int64)(next_rand() % (uint64_t)rows) + 1);
		if (sqlite3_step(get) == SQLITE_ROW)
			found += sqlite3_column_int(get, 0) == 100;
		sqlite3_reset(get);
	}
	sqlite3_finalize(get);
	if (found != 20000)
		die("lookups found fewer rows than they looked for");
	phase_end("lookup", 20000);

	phase_start();
	sqlite3_stmt *upd = prep("UPDATE t SET v = ? WHERE id = ?");
	for (int i = 0; i < 2000; i++) {
		uint64_t x = next_rand();
		value(v, x);
		sqlite3_bind_text(upd, 1, v, 100, SQLITE_STATIC);
		sqlite3_bind_int64(upd, 2, (sqlite3_int64)(x % (uint64_t)rows) + 1);
		step_done(upd);   /* autocommit: one committed transaction each */
	}
	sqlite3_finalize(upd);
	phase_end("update", 2000);

	phase_start();
	sqlite3_stmt *ic = prep("PRAGMA integrity_check");
	if (sqlite3_step(ic) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(ic, 0), "ok"))
		die("integrity_check");
	sqlite3_finalize(ic);
	phase_end("integrity", 1);
}

int main(int argc, char **argv)
{
	const char *journal = "delete";
	long cache_kib = 0, rows = 200000;
	int c;
	while ((c = getopt(argc, argv, "j:c:n:")) != -1) {
		switch (c) {
		case 'j': journal = optarg; break;
		case 'c': cache_kib = atol(optarg); break;
		case 'n': rows = atol(optarg); break;
		default: goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	const char *side = argv[optind], *path = argv[optind + 1];
	char name[4096];
	const char *vfs = NULL;
	if (!strcmp(side, "libdio")) {
		unlink(path);
		if (dio_mkfs(path, &(struct dio_mkfs_opts){ .size = 1ull << 30 }))
			die("dio_mkfs");
		if (!(vol = dio_mount(path, NULL)))
			die("dio_mount");
		/* before SQLite starts: page buffers aligned for zero-copy */
		if (dio_sqlite_register(vol, "libdio", 0) != SQLITE_OK)
			die("dio_sqlite_register");
		vfs = "libdio";
		snprintf(name, sizeof(name), "bench.db");
	} else if (!strcmp(side, "stock")) {
		snprintf(name, sizeof(name), "%s/bench.db", path);
		const char *sfx[] = { "", "-journal", "-wal", "-shm" };
		for (int i = 0; i < 4; i++) {
			char f[4200];
			snprintf(f, sizeof(f), "%s%s", name, sfx[i]);
			unlink(f);
		}
	} else {
		goto usage;
	}
	if (sqlite3_open_v2(name, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK)
		die("open");
	char sql[128];
	exec("PRAGMA page_size=4096");
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", journal);
	exec(sql);
	exec("PRAGMA synchronous=FULL");
	if (cache_kib) {
		snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%ld", cache_kib);
		exec(sql);
	}
	run(rows);
	if (sqlite3_close(db) != SQLITE_OK)
		die("close");
	db = NULL;
	if (vol) {
		struct dio_counters k;
		dio_counters(vol, &k);
		printf("counters writes %llu bounced %llu rmw_blocks %llu journal_commits %llu flushes %llu\n",
		       (unsigned long long)k.writes, (unsigned long long)k.bounced,
		       (unsigned long long)k.rmw_blocks, (unsigned long long)k.journal_commits,
		       (unsigned long long)k.flushes);
		dio_umount(vol);
		unlink(path);
	} else {
		unlink(name);
	}
	return 0;
usage:
	fprintf(stderr, "usage: dio-sqlite-bench stock|libdio [-j delete|wal] [-c CACHE_KIB] [-n ROWS] DIR|IMAGE\n");
	return 2;
}
