/*
 * dio-fuse's parts: main.c (the command line, starting and stopping),
 * tree.c (mount paths and libdio names), ops.c (the FUSE operations).
 */
#ifndef DFUSE_H
#define DFUSE_H
#define FUSE_USE_VERSION 31
#include <dio/dio.h>
#include <fuse.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

/* an open file: fi->fh; every one is on the list, so that a stop closes
   what the kernel still holds before the volume is unmounted */
struct handle {
	struct dio_file *f;
	int flags;
	struct handle *prev, *next;
};

extern struct dfs {
	char *target;
	int rdonly;
	struct dio_vol *vol;
	struct timespec mounted;
	uid_t uid;
	gid_t gid;
	pthread_mutex_t lock;   /* the handle list */
	struct handle *open;
} fs;

extern const struct fuse_operations dfuse_ops;
void handles_close_all(void);

/* ---- tree.c: the mount's paths over libdio's flat names ---------------- */
enum { NAME_BUF = DIO_NAME_MAX + 2 };   /* a name and a directory's '/' */
enum { ENTRY_BUF = 3 * DIO_NAME_MAX + 1 };

/* The libdio name of a mount path ("/" is "", a directory has no '/'
   at its end); 0 or -errno (EINVAL: not one of the mount's spellings). */
int name_of(const char *path, char *out);
void with_slash(const char *name, char *out);   /* out: NAME_BUF bytes */
bool is_dir(const char *name);          /* "" or names under "name/" */
bool dir_has(const char *name, const char *but);   /* a name under "name/" other than `but` */
/* readdir of directory `name`: fill(buf, entry, its libdio name, its
   stat or NULL for a directory); non-zero: stop */
typedef int (*entry_fn)(void *buf, const char *entry, const char *name, const struct dio_stat *st);
int list_level(const char *name, entry_fn fill, void *buf);
int mark_dir(const char *name);         /* the marker of an empty directory */
void keep_parent(const char *path);     /* after a name left: its directory stays */

#endif
