/*
 * A deterministic workload and the model of what may survive a crash,
 * shared by the power-loss and the killed-process tests.
 *
 * After a crash, for every file:
 *  - a byte not touched since the file's last successful sync must hold
 *    its synced value (data and size were made durable by that sync);
 *  - a touched byte may hold its synced value, zero, or the value of any
 *    write ever made to that file at that offset: never another file's
 *    byte or one that was never written there;
 *  - a file that was ever synced exists, with a size between the smallest
 *    and the largest it could have had since that sync.
 */
#ifndef CRASHMODEL_H
#define CRASHMODEL_H
#include "helpers.h"

#define CM_FILES 3
#define CM_MAX   (256u << 10)
#define CM_GENS  4      /* incarnations of one name: replaced or recreated */

enum { OP_WRITE, OP_DSYNC_WRITE, OP_FSYNC, OP_FDATASYNC, OP_TRUNC, OP_FALLOC, OP_SYNCFS,
       OP_REPLACE,      /* write a temp file, fdatasync it, rename it over the file */
       OP_RECREATE };   /* unlink the file and create it again, empty */

struct cm_op { int type, fid, mode; uint64_t off, len; uint32_t wid; unsigned shift; };

struct cm_file {
	uint8_t cur[CM_MAX], synced[CM_MAX], touched[CM_MAX];
	uint8_t unknown[CM_MAX];   /* a failed op's bytes: old, new or zero, even after a sync */
	uint64_t prev_size;        /* size before the op being applied */
	uint64_t size, synced_size, lo, hi;
	bool exists, durable;      /* durable: its data was synced at least once */
	bool exists_sure;          /* its name binding is durable */
	struct cm_write { uint64_t off, len; uint32_t wid; } w[1024];
	int nw;
};

/* Each name has up to CM_GENS incarnations; after a crash it shows one of
   those from the last durable rename/recreate on (metadata is a prefix). */
struct cm_model {
	struct cm_file g[CM_FILES][CM_GENS];
	int gen[CM_FILES];          /* current incarnation */
	int dgen[CM_FILES];         /* the one bound at the last sync point */
	bool maybe_absent[CM_FILES];
};

void cm_gen(struct cm_op *ops, int n, uint64_t seed);
void cm_gen_prealloc(struct cm_op *ops, int n, uint64_t seed);      /* scattered writes into preallocated space */
void cm_apply(struct cm_model *m, const struct cm_op *op);           /* before executing */
void cm_synced(struct cm_model *m, const struct cm_op *op);          /* after it succeeded */
void cm_failed(struct cm_model *m, const struct cm_op *op);          /* after it failed */
int  cm_exec(struct dio_vol *v, struct dio_file **h, struct dio_file **hs, const struct cm_op *op);
void cm_open(struct dio_vol *v, struct dio_file **h, struct dio_file **hs);
void cm_close(struct dio_file **h, struct dio_file **hs);
void cm_check(struct dio_vol *v, struct cm_model *m);
#endif
