/*
 * dio(1): what the subcommands share.  Each subcommand is one function
 * `int cmd_NAME(int argc, char **argv)` (argv[0] is its name) returning
 * the exit status: 0, 1 for an error (one line on stderr), 2 for a usage
 * error (that subcommand's usage on stderr).
 */
#ifndef DIO_TOOL_H
#define DIO_TOOL_H

#include <dio/dio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2

/* ---- global options (before the subcommand or anywhere after it) ---- */
struct globals {
	const char *backend;     /* --backend NAME: dio_mount_opts.backend */
	bool json;               /* --json: one JSON document on stdout */
	bool quiet;              /* -q: no progress, no chatter */
	const char *cmd;         /* the subcommand, for messages */
	const char *usage;       /* its usage line(s) */
};
extern struct globals G;

/* ---- arguments ----------------------------------------------------------
   Options may stand anywhere among the operands; "--" ends them; "-" is an
   operand.  Long options take "--name=value" or "--name value". */
struct optspec {
	const char *lng;         /* without the dashes, or NULL */
	char shrt;               /* 0 if none */
	bool has_arg;
	bool repeat;             /* values collect in args.rep (in order) */
};
#define ARGS_MAX 64
struct args {
	const char *val[16];     /* per spec entry: its value ("" for a flag), NULL if absent */
	const char *rep[ARGS_MAX];
	int nrep;
	char *pos[ARGS_MAX];
	int npos;
};
/* 0, or prints the problem and the usage and returns EXIT_USAGE. */
int parse_args(int argc, char **argv, const struct optspec *spec, struct args *a);
/* parse_args, then between min and max operands (else `what` and the
   usage, EXIT_USAGE). */
int parse_cmd(int argc, char **argv, const struct optspec *spec, struct args *a, int min, int max,
	      const char *what);
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sizes: decimal (or 0x hex) with an optional k, m, g or t suffix
   (powers of 1024).  0, or -1 if s is not one. */
int parse_size(const char *s, uint64_t *out);
const char *human(uint64_t bytes, char *buf, size_t len);   /* "1.5 GiB" */

/* ---- errors: "dio: TARGET: NAME: what" on stderr; returns 1 ---------- */
const char *errstr(int e);   /* strerror, worded alike on every C library */
int fail(const char *target, const char *name, int err);
int failmsg(const char *target, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Mount TARGET as the global options say; on failure prints the error
   (with the library's own reason when it logged one) and returns NULL. */
struct dio_vol *tool_mount(const char *target, bool rdonly);
int tool_umount(const char *target, struct dio_vol *v);   /* 0 or 1 (printed) */
void tool_log_capture(void);                              /* before any libdio call */
const char *tool_last_log(void);                          /* last error the library logged */

/* ---- JSON output ------------------------------------------------------- */
void json_begin(void);                        /* the document's outer object */
void json_end(void);
void json_obj(const char *key);               /* key NULL inside arrays */
void json_obj_end(void);
void json_arr(const char *key);
void json_arr_end(void);
void json_str(const char *key, const char *s);
void json_strn(const char *key, const char *s, size_t n);
void json_u64(const char *key, uint64_t v);
void json_i64(const char *key, int64_t v);
void json_num(const char *key, double v);
void json_bool(const char *key, bool v);

/* ---- progress on a terminal ---------------------------------------------
   A thread redraws one line on stderr every 0.2 s once the operation has
   run for DIO_PROGRESS_DELAY seconds (default 1): bytes done, rate and
   time left when total is known.  Only when stderr is a terminal, and
   never with -q or --json. */
struct progress;
struct progress *progress_start(const char *what, uint64_t total);   /* total 0: unknown */
void progress_set(struct progress *p, uint64_t done);                /* p may be NULL */
void progress_set_fn(struct progress *p, uint64_t (*fn)(void *), void *arg);
void progress_deadline(struct progress *p, double seconds);        /* time left = until then */
void progress_end(struct progress *p);

double now_sec(void);
/* A modification time as local "YYYY-MM-DD HH:MM:SS" ("-" when unknown) */
const char *time_str(int64_t ns, char *out, size_t len);

/* ---- a host file written whole or not at all (hostout.c) ---------------- */
struct hostout {
	int fd;
	const char *shown;         /* the path as the user gave it */
	char path[4096];           /* what the rename replaces (links followed) */
	char tmp[4096];            /* the temporary file; empty: written in place */
	unsigned mode;             /* the old file's mode, or 0666 & ~umask */
	bool owner;                /* root keeps the old file's owner */
	unsigned uid, gid;
};
int hostout_check(const char *target, const char *path);   /* 1 (printed): PATH is the volume */
int hostout_open(struct hostout *o, const char *path);     /* 0 or 1 (printed) */
int hostout_commit(struct hostout *o);                     /* 0 or 1 (printed) */
void hostout_abort(struct hostout *o);

/* ---- subcommands ------------------------------------------------------- */
int cmd_mkfs(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_df(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_mv(int argc, char **argv);
int cmd_truncate(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_io(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* ---- what the public API does not show (inspect.c, library internals) */
struct tool_volinfo {
	char label[64];
	uint64_t uuid;
	uint32_t format_version;
	uint64_t device_size;
	uint32_t physical_block_size;
	bool is_block_device;
	bool is_target;         /* a device named by URI, served by its backend (nbd) */
	uint64_t journal_bytes, journal_used_bytes, checkpoint_bytes, data_start_bytes;
	uint64_t log_records;   /* the process-death log's records a read-write mount would apply */
	struct dio_info info;   /* what dio_info reports for a handle of the volume */
};
void tool_volinfo(struct dio_vol *v, struct tool_volinfo *vi);
struct tool_extent { uint64_t offset, device_offset, length; bool unwritten, bad; };
/* The extent map of a file, through cb; 0 or -errno. */
int tool_extents(struct dio_file *f, void (*cb)(const struct tool_extent *x, void *arg), void *arg);

#endif
