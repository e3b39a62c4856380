/*
 * libdio_sqlite internals: the VFS (vfs.c), its files (file.c), the WAL
 * index in process memory (shm.c), temporary files on the default VFS
 * (tmp.c), and the two ways SQLite's own functions are reached (api.c).
 */
#ifndef DSQ_H
#define DSQ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dio/dio.h>
#include <dio/sqlite.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The SQLite functions the VFS calls.  Loaded as an extension, they come
 * from the loading SQLite's routine table (which may be a copy of SQLite
 * linked into the program, not the shared library); registered through
 * dio_sqlite_register, from the SQLite the program links.
 */
struct dsq_api {
	sqlite3_vfs *(*vfs_find)(const char *);
	int (*vfs_register)(sqlite3_vfs *, int);
	void (*log)(int, const char *, ...);
	char *(*mprintf)(const char *, ...);
	const char *(*uri_parameter)(const char *, const char *);
};
extern struct dsq_api dsq;

/* A mounted volume, shared by every file of the process that lives on it. */
struct dsq_mount {
	struct dsq_mount *next;
	char *path;                 /* as mounted (NULL: given by the program) */
	struct dio_vol *vol;
	struct dio_info info;       /* of the volume (one file's) */
	unsigned refs;              /* open files, +1 while the program's binding lives */
	bool owned;                 /* mounted here: unmounted at the last close */
	bool rdonly;                /* mounted read-only: every file opens read-only */
	struct dsq_lock *locks;     /* per file name: the lock state of its connections */
	struct dsq_shm *shms;       /* per database: the WAL index */
	/* the one run of writes held on the volume (run.c):
	   its file (also while earlier runs of it are in flight), bytes
	   (aligned, allocated at the first run), offset; runs in flight on
	   a queue of the volume, each in a slot with its own buffer; ended
	   runs held in slots until several go in flight together */
	pthread_mutex_t run_lock;
	struct dsq_file *_Atomic run_owner;
	/* files with a failed run not reported yet, and the last such error:
	   no call that publishes anything goes on meanwhile (file.c) */
	_Atomic int nfailed, failed_rc;
	uint8_t *run;
	size_t run_len;
	uint64_t run_off;
	struct dio_queue *runq;     /* made at the first run in flight; NULL: none */
	bool runq_failed;           /* could not be made: runs are written in place */
	unsigned inflight;          /* slots submitted, not reaped */
	unsigned held;              /* slots ended, not submitted */
	struct dsq_slot {
		uint8_t *buf;       /* RUN_MAX bytes, aligned; NULL until used */
		uint64_t off;
		size_t len;         /* 0: free */
		bool sent;          /* on the queue (else held) */
	} slots[16];
};

/* The database lock of one file name, shared by the process's connections. */
struct dsq_lock {
	struct dsq_lock *next;
	char *name;
	unsigned refs;
	int level;                  /* highest level any connection holds */
	unsigned nshared;           /* connections holding SHARED or more */
	/* a main database's first bytes as every connection wrote them
	   (file.c, "The header"); under dsq_lock */
	bool hdr_ok;
	uint8_t hdr[100];
	struct dsq_wcache *wc;      /* a WAL's bytes (walcache.c), NULL for others */
	/* the handle that last wrote or truncated a main journal: another
	   handle's copy of its first block is stale (file.c) */
	struct dsq_file *_Atomic jwriter;
};

/* What a VFS instance keeps: the volume it is bound to, if any. */
struct dsq_vfs {
	sqlite3_vfs base;
	struct dsq_mount *bound;    /* dio_sqlite_register's volume, or NULL */
	char name[64];
};

struct dsq_shm;
struct dsq_shm_conn;

/* One open file: on libdio, or a temporary one on the default VFS. */
struct dsq_file {
	sqlite3_file base;
	struct dsq_mount *m;
	struct dio_file *f;
	struct dsq_lock *lk;
	int level;                  /* this connection's lock */
	bool delete_on_close;
	bool readonly;
	char *name;
	bool main_db;               /* SQLITE_OPEN_MAIN_DB */
	/* a rollback journal's first block as written, its first jhead_len
	   bytes known (file.c, "The journal header"); NULL for other files */
	uint8_t *jhead;
	size_t jhead_len;
	struct dsq_shm_conn *shm;
	/* a run of this file's failed and no call of the file that SQLite
	   checks has reported it yet (run.c, "Errors") */
	_Atomic int run_err;
	bool wal;                   /* SQLITE_OPEN_WAL */
	uint64_t commit_page;       /* WAL: where the page of the commit frame whose
				       header was just written goes (0: none) */
	sqlite3_file *real;         /* temporary file: the default VFS's */
};

extern pthread_mutex_t dsq_lock;   /* mounts, locks and WAL indexes */

/* vfs.c */
int dsq_vfs_init(struct dsq_vfs *dv, const char *name, struct dio_vol *vol);
void dsq_mount_put(struct dsq_mount *m);   /* under dsq_lock */
int dsq_errno_rc(int err, int io_rc);

/* file.c */
extern const sqlite3_io_methods dsq_io;
/* run.c: write runs (its header comment says how they go and fail) */
int  dsq_run_drain(struct dsq_mount *m);   /* write the held run, if any: SQLITE_OK or its error */
int  dsq_run_failed(struct dsq_mount *m);  /* a failed run not reported yet: its error, else SQLITE_OK */
int  dsq_run_drain_locked(struct dsq_mount *m, struct dsq_file *o);   /* m->run_lock, o the owner */
bool dsq_run_take(struct dsq_file *p, const void *buf, size_t amt, uint64_t off);   /* m->run_lock */
void dsq_run_end(struct dsq_mount *m, struct dsq_file *o, bool async);             /* m->run_lock */
void dsq_err_set(struct dsq_file *o, int rc);    /* a run of o's failed */
int  dsq_err_take(struct dsq_file *o);           /* o's kept error, reported once */
int  dsq_flush_pending(struct dsq_file *p);      /* before a call SQLite checks */
void dsq_flush_keep(struct dsq_file *p);         /* before one it ignores */
void dsq_flush_for_read(struct dsq_file *p);     /* before a read or size of p */
/* file.c: a write of o's failed: its copies (WAL, header, journal head) go */
void dsq_caches_drop(struct dsq_file *o);
int dsq_file_open(struct dsq_file *p, struct dsq_mount *m, const char *name, int flags, int *out_flags);

/* shm.c */
int dsq_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp);
int dsq_shm_lock(sqlite3_file *f, int ofst, int n, int flags);
void dsq_shm_barrier(sqlite3_file *f);
int dsq_shm_unmap(sqlite3_file *f, int delete_flag);

/* walcache.c */
struct dsq_wcache;
struct dsq_wcache *dsq_wc_new(void);
void dsq_wc_free(struct dsq_wcache *c);
void dsq_wc_write(struct dsq_wcache *c, const void *buf, size_t n, uint64_t off);
bool dsq_wc_read(struct dsq_wcache *c, void *buf, size_t n, uint64_t off);
bool dsq_wc_holds(struct dsq_wcache *c, uint64_t off, size_t n);   /* [off, off+n) is here */
void dsq_wc_cut(struct dsq_wcache *c, uint64_t size);
void dsq_wc_forget(struct dsq_mount *m, const char *name);   /* file.c, under dsq_lock */

/* tmp.c */
extern const sqlite3_io_methods dsq_tmp_io;

/* api.c: aligned page memory for SQLite, if it is not initialized yet */
void dsq_config_memory(void);

#endif
