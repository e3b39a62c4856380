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
	struct dsq_lock *locks;     /* per file name: the lock state of its connections */
	struct dsq_shm *shms;       /* per database: the WAL index */
};

/* The database lock of one file name, shared by the process's connections. */
struct dsq_lock {
	struct dsq_lock *next;
	char *name;
	unsigned refs;
	int level;                  /* highest level any connection holds */
	unsigned nshared;           /* connections holding SHARED or more */
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
	struct dsq_shm_conn *shm;
	/* small writes held until the next call (see file.c) */
	uint64_t pend_off;
	uint32_t pend_len;
	uint8_t pend[64];
	sqlite3_file *real;         /* temporary file: the default VFS's */
};

extern pthread_mutex_t dsq_lock;   /* mounts, locks and WAL indexes */

/* vfs.c */
int dsq_vfs_init(struct dsq_vfs *dv, const char *name, struct dio_vol *vol);
void dsq_mount_put(struct dsq_mount *m);   /* under dsq_lock */
int dsq_errno_rc(int err, int io_rc);

/* file.c */
extern const sqlite3_io_methods dsq_io;
int dsq_file_open(struct dsq_file *p, struct dsq_mount *m, const char *name, int flags, int *out_flags);

/* shm.c */
int dsq_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp);
int dsq_shm_lock(sqlite3_file *f, int ofst, int n, int flags);
void dsq_shm_barrier(sqlite3_file *f);
int dsq_shm_unmap(sqlite3_file *f, int delete_flag);

/* tmp.c */
extern const sqlite3_io_methods dsq_tmp_io;

/* api.c: aligned page memory for SQLite, if it is not initialized yet */
void dsq_config_memory(void);

#endif
