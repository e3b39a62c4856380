/*
 * libdio internals shared by the files of lib/.  Nothing here is public.
 *
 * Lock order (outermost first), never taken the other way round:
 *   inode range lock  ->  vol->j.commit_lock  ->  vol->md_lock
 *   ->  inode->map_lock  ->  vol->bounce.lock / device context locks
 * vol->clean.lock (a refill of the clean ranges) comes after the range
 * lock and before md_lock; vol->j.flush_lock is a leaf, never held across
 * a flush.
 * md_lock guards every metadata change (namespace, extent maps, sizes,
 * allocator, the pending journal records).  Readers of one file's map take
 * only that inode's map_lock shared.  No lock but a range lock is held
 * across a data I/O, and only commit_lock across journal I/O.
 */
#ifndef DIO_INTERNAL_H
#define DIO_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include "dio/dio.h"
#include "dio/backend.h"
#include "platform.h"
#include "mem.h"

#define DIO_API __attribute__((visibility("default")))

#define DIV_UP(a, b) (((a) + (b) - 1) / (b))

/* a * b in a size_t, or false if it does not fit: metadata areas are
   sized in 64 bits and can exceed a 32-bit target's memory (a damaged
   or huge journal then fails to load instead of overflowing a buffer). */
static inline bool size_mul(uint64_t a, uint64_t b, size_t *out)
{
	if (b && a > (uint64_t)SIZE_MAX / b)
		return false;
	*out = (size_t)(a * b);
	return true;
}
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- crc32c.c ---- */
uint32_t dio_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- log (vol.c) ---- */
void dio_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Invariants (log.c).  DIO_ASSERT marks a branch that cannot happen and a
 * state that must hold; it is compiled in with DIO_DEBUG (meson
 * -Dchecks=true, and every buildtype=debug build: the sanitizer builds
 * of CI) and is nothing otherwise.  DIO_HELD / DIO_RW_HELD state that the
 * lock is held on entry to a function documented as "under" it; a POSIX
 * lock cannot say by whom, so they catch a lock not taken at all.
 * DIO_MD_HELD / DIO_MAP_HELD: md_lock, an inode's map lock, except while
 * the mount recovers the volume, alone with it (v->recovering).
 */
#ifdef DIO_DEBUG
#define DIO_ASSERT(c) ((c) ? (void)0 : dio_assert_fail(#c, __FILE__, __LINE__))
#define DIO_HELD(m) DIO_ASSERT(dio_mutex_held(m))
#define DIO_RW_HELD(l) DIO_ASSERT(dio_rwlock_held(l))
#define DIO_MD_HELD(v) DIO_ASSERT((v)->recovering || dio_mutex_held(&(v)->md_lock))
#define DIO_MAP_HELD(v, in) DIO_ASSERT((v)->recovering || dio_rwlock_held(&(in)->map_lock))
#else
#define DIO_ASSERT(c) ((void)0)
#define DIO_HELD(m) ((void)0)
#define DIO_RW_HELD(l) ((void)0)
#define DIO_MD_HELD(v) ((void)0)
#define DIO_MAP_HELD(v, in) ((void)0)
#endif
void dio_assert_fail(const char *what, const char *file, int line) __attribute__((noreturn, cold));

/* A function that owns a batch or a slice array: its frame never nests in
   its caller's, so the synchronous path stays within 4 KiB of stack. */
#define NOINLINE __attribute__((noinline))
/* A step of the request path small enough that its call, not its work,
   was the cost (callgrind, bench/RESULTS.md): in the caller's frame. */
#define ALWAYS_INLINE inline __attribute__((always_inline))
bool dio_mutex_held(pthread_mutex_t *m);
bool dio_rwlock_held(pthread_rwlock_t *l);

/* ---- the platform (platform.h, platform_linux.c) ---- */
struct dio_vol;
void vol_info(const struct dio_vol *v, bool strict, struct dio_info *info);

/* ---- backends (backend/registry.c) ---- */
const struct dio_backend_ops *dio_backend_find(const char *name, int *err);        /* DIO_BACKEND overrides */
const struct dio_backend_ops *dio_backend_find_exact(const char *name, int *err);
/* psync, uring or aio: an engine over the device fd that libdio opened */
bool dio_backend_builtin(const struct dio_backend_ops *ops);
/* The backend whose schemes name path (nbd://..., ABI 7), or NULL with
   *err 0 for a local path, or NULL with *err set (a known scheme whose
   backend was not built or cannot run). */
const struct dio_backend_ops *dio_backend_for_target(const char *path, int *err);

/* One device context: a backend context, and for the shared pool the
   lock that keeps it to one submitter at a time (devctx.c). */
struct dio_devctx {
	pthread_mutex_t lock;      /* pooled contexts only */
	void *ctx;
	bool pooled;
} __attribute__((aligned(64)));

#define DIO_NCTX 8            /* at most this many pooled contexts */
struct dio_tctx;

/* Counters are sharded by thread so that counting a request touches a
   cache line no other thread writes; dio_counters() sums the shards. */
struct dio_counters_atomic {
	atomic_uint_fast64_t reads, writes, bytes_read, bytes_written, device_ios,
		bounced, rmw_blocks, journal_commits, flushes;
} __attribute__((aligned(64)));
#define CNT_SHARDS 8
/* A small per-thread number, assigned at first use (log.c); inline, as
   every request counts itself through it. */
extern DIO_TLS unsigned dio_thread_slot_v;   /* 0: not assigned yet */
unsigned dio_thread_slot_assign(void);
static inline unsigned dio_thread_slot(void)
{
	unsigned s = dio_thread_slot_v;
	return s ? s : dio_thread_slot_assign();
}

/* ---- extents ---- */
#define EXT_UNWRITTEN 0x1u
#define EXT_BAD       0x2u   /* a write to these blocks failed: never free them */
#define EXT_FLAGS     (EXT_UNWRITTEN | EXT_BAD)

struct dio_extent {
	uint64_t lblk;   /* first file block */
	uint64_t pblk;   /* first device block (volume-relative) */
	uint32_t len;    /* blocks */
	uint32_t flags;  /* EXT_UNWRITTEN */
};
#define EXT_MAX_LEN 0x80000000u

/* ---- in-core B+trees of extent records (btree.c) ---- */
enum { BT_LBLK = 0, BT_PBLK = 1, BT_SIZE = 2 };   /* ordered by lblk; pblk; (len, pblk) */
#define BT_LEAF_MAX 32u
struct bt_leaf {
	struct bt_leaf *prev, *next;
	unsigned n;
	struct dio_extent r[BT_LEAF_MAX];
};
struct dio_btree {
	void *root;                /* a leaf when height is 1; NULL when empty */
	unsigned height;
	size_t n;                  /* records */
	uint64_t frees;            /* deletions that freed nodes, ever: see bt_seek_in_leaf */
	uint8_t kind;              /* BT_*; a zeroed tree is an empty BT_LBLK one */
};
/* A position in a tree; invalid (leaf NULL) past either end.  Any
   insertion or deletion invalidates every cursor of the tree, except as
   bt_insert_after and bt_delete_at say. */
struct bt_cur {
	struct bt_leaf *leaf;
	unsigned i;
};
void bt_init(struct dio_btree *t, uint8_t kind);
void bt_destroy(struct dio_btree *t);
int  bt_insert(struct dio_btree *t, const struct dio_extent *x);   /* 0 or -ENOMEM; the key is new */
/* Nodes kept so that inserts made once a metadata call has begun never
   fail (btree.c): n beyond the standing BT_STANDING, 0 or -ENOMEM; and
   given back when the call is done.  bt_insert_nodes: at most what k
   inserts into t take. */
#define BT_STANDING 64u
int  bt_reserve(unsigned n);
void bt_unreserve(unsigned n);
unsigned bt_insert_nodes(const struct dio_btree *t, size_t k);
int  bt_delete(struct dio_btree *t, const struct dio_extent *x);   /* the record with x's key */
bool bt_seek_ge(const struct dio_btree *t, const struct dio_extent *key, struct bt_cur *c);
bool bt_first(const struct dio_btree *t, struct bt_cur *c);
bool bt_last(const struct dio_btree *t, struct bt_cur *c);
bool bt_next(struct bt_cur *c);
bool bt_prev(struct bt_cur *c);
/* Changes at a known position (a conversion's): what bt_insert and
   bt_delete do there, without a descent when the leaf allows it. */
int  bt_insert_after(struct dio_btree *t, struct bt_cur *c, const struct dio_extent *x);
bool bt_delete_at(struct dio_btree *t, struct bt_cur *c);
bool bt_may_rekey(const struct bt_cur *c, bool raise);
/* A leaf kept from an earlier search (with t->frees then) is still one of
   the tree's while no node has been freed since, its records moved or
   not: the first record not below key inside it, at c; false if the leaf
   may be gone (or is empty), and c is not set. */
bool bt_seek_in_leaf(const struct dio_btree *t, struct bt_leaf *l, uint64_t frees, const struct dio_extent *key,
		     struct bt_cur *c);
/* The record at c.  Fields other than the tree's key may change in place;
   the key only where bt_may_rekey allows (else delete and insert). */
static inline struct dio_extent *bt_rec(const struct bt_cur *c) { return &c->leaf->r[c->i]; }

/* ---- extent maps (extent.c): a file's map, the bad-block list ---- */
/*
 * What a map holds is a list of extents: non-overlapping, ordered by
 * lblk, each written or not.  In core, an unwritten record that writes
 * convert here and there is kept whole, with a bitmap of its written
 * blocks (EXT_PARTIAL: never on the device, never seen outside
 * extent.c); the map's extents are then the runs of one state inside
 * it.  em_count, the walks and what the checkpoint writes are those
 * extents, as if the record had been split.
 */
#define EXT_PARTIAL   0x4u   /* in core only: see above */
#define EXT_BM_SHIFT  8      /* a partial record's bitmap: flags >> EXT_BM_SHIFT in bits[] */
struct em_bits;
struct dio_emap {
	struct dio_btree t;        /* by lblk */
	uint64_t blocks;           /* sum of the lengths */
	size_t extra;              /* extents beyond one per record (the partial records' runs) */
	struct em_bits **bits;     /* the partial records' bitmaps; NULL: a free slot */
	uint32_t nbits;            /* slots */
	uint32_t bits_lo;          /* no free slot below this one */
};
/* A position among a map's extents: the record holding it, and the
   extent (the record itself, or a run of a partial one). */
struct em_cur {
	struct bt_cur c;
	struct dio_extent x;
};
static inline const struct dio_extent *em_rec(const struct em_cur *c) { return &c->x; }
/* The first extent ending after lblk; false if none.  O(log n). */
bool em_find(const struct dio_emap *m, uint64_t lblk, struct em_cur *c);
bool em_next(const struct dio_emap *m, struct em_cur *c);
bool em_prev(const struct dio_emap *m, struct em_cur *c);
bool em_first(const struct dio_emap *m, struct em_cur *c);
bool em_last(const struct dio_emap *m, struct em_cur *c);
/* Where a search ended, kept past the map lock: a completion that
   converts what its submission mapped looks in that leaf first. */
struct em_hint {
	struct bt_leaf *leaf;      /* NULL: none */
	uint64_t frees;            /* the tree's frees then */
};
static inline void em_hint_at(const struct dio_emap *m, const struct em_cur *c, struct em_hint *h)
{
	h->leaf = c->c.leaf;
	h->frees = m->t.frees;
}
/* em_find, looking in h's leaf first (under the same locks as em_find). */
bool em_find_near(const struct dio_emap *m, uint64_t lblk, const struct em_hint *h, struct em_cur *c);
/* A copy of that extent (for walks that change the map as they go). */
bool em_get(const struct dio_emap *m, uint64_t lblk, struct dio_extent *x);
bool em_written(const struct dio_emap *m, uint64_t lblk);   /* block lblk mapped and written */
static inline size_t em_count(const struct dio_emap *m) { return m->t.n + m->extra; }
static inline uint64_t em_blocks(const struct dio_emap *m) { return m->blocks; }
typedef void (*em_free_fn)(void *arg, uint64_t pblk, uint64_t len, uint32_t flags);
int  em_remove(struct dio_emap *m, uint64_t lblk, uint64_t len, em_free_fn fn, void *arg);
int  em_prepare(struct dio_emap *m, uint64_t lblk, uint64_t end);   /* partial records cut: no memory needed after */
int  em_insert(struct dio_emap *m, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags);
int  em_set(struct dio_emap *m, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags, bool *had_written);
int  em_restate(struct dio_emap *m, struct em_cur *c, uint64_t lblk, uint64_t len, uint32_t flags);
void em_free(struct dio_emap *m);
/* Loading a map's extents in order (extent.c says what it joins):
   { m } to start, then em_load_add for each, em_load_end after the last
   (or em_load_drop).  On an error (-ENOMEM) the loader holds nothing; the
   map is to be freed. */
struct em_loader {
	struct dio_emap *m;
	struct dio_extent g;       /* what was gathered, as one extent (len 0: nothing) */
	struct em_bits *b;         /* its bitmap, once it mixes states */
	uint64_t cap, runs;        /* blocks b has room for; runs gathered */
	bool last_written;         /* the state of the last run */
};
int  em_load_add(struct em_loader *L, const struct dio_extent *x);
int  em_load_end(struct em_loader *L);
void em_load_drop(struct em_loader *L);   /* give up: free what it holds */

/* ---- free space (alloc.c) ---- */
#define ALLOC_CLEAN_SLOTS 16
#define CLEAN_CHUNK_BYTES (1u << 20)   /* zeroed per refill */
#define ZBUF_BYTES        (128u << 10)
#define CLEAN_REQ_MAX_BYTES (256u << 10) /* larger writes amortize the ordered flush */
#define CLEAN_FRESH       1u     /* nothing taken from this clean range yet */
struct dio_alloc {
	struct dio_btree by_blk;   /* free ranges by pblk (lblk unused) */
	struct dio_btree by_size;  /* the same, by (len, pblk) */
	struct dio_extent *used;   /* while building at mount: used ranges (lblk: owner) */
	size_t nused, ucap;
	uint64_t free_blocks;
	uint64_t first, end;       /* data area [first, end) in blocks */
	/* freed but not yet durable: reusable once durable_seq >= seq */
	struct pending_free { uint64_t pblk, len, seq; } *pend;
	size_t npend, pcap;
	uint64_t pend_blocks;
	/* Clean ranges: free blocks zeroed and flushed during this mount and
	   not handed out since (counted in free_blocks, kept apart from v).
	   A write into them needs no data flush before its commit: after a
	   crash they read as the new data or as zeros, never as stale bytes.
	   In memory only; at mount every free block is dirty. */
	struct dio_extent clean[ALLOC_CLEAN_SLOTS];   /* flags: CLEAN_FRESH */
	unsigned nclean;
	uint64_t clean_blocks;
	uint64_t zeroing;          /* taken out of v while being zeroed */
};
int  alloc_init(struct dio_alloc *a, uint64_t first, uint64_t end);
void alloc_destroy(struct dio_alloc *a);
int  alloc_mark_used(struct dio_alloc *a, uint64_t pblk, uint64_t len, uint64_t owner);
void alloc_finish_build(struct dio_alloc *a);
int  alloc_check_overlap(struct dio_alloc *a, uint64_t *o1, uint64_t *o2, uint64_t *pblk);   /* before finish_build */
int  alloc_take(struct dio_alloc *a, uint64_t goal, uint64_t want, uint64_t *pblk, uint64_t *got);
void alloc_give(struct dio_alloc *a, uint64_t pblk, uint64_t len);
int  alloc_defer(struct dio_alloc *a, uint64_t pblk, uint64_t len, uint64_t seq);
void alloc_release_durable(struct dio_alloc *a, uint64_t durable_seq);
int  alloc_take_clean(struct dio_alloc *a, uint64_t goal, uint64_t want, uint64_t *pblk, uint64_t *got);
bool alloc_can_refill(const struct dio_alloc *a, uint32_t bs, uint64_t need);
uint64_t alloc_take_for_refill(struct dio_alloc *a, uint32_t bs, uint64_t need, uint64_t *pblk);
void alloc_end_refill(struct dio_alloc *a, uint64_t pblk, uint64_t n, bool ok);
/* refill.c: zeroing free space into clean ranges */
bool clean_can_refill(const struct dio_vol *v, uint64_t need);   /* md_lock */
int  clean_refill(struct dio_vol *v, uint64_t need);     /* no locks held */
bool clean_wait_zeroing(struct dio_vol *v);              /* no locks held */

#include "lock.h"

/* ---- inodes and the namespace (file.c) ---- */
struct dio_inode {
	uint64_t ino;
	char *name;                /* NULL once unlinked (orphan until last close) */
	size_t namelen;
	pthread_rwlock_t map_lock; /* guards size and map */
	uint64_t size;             /* written under map_lock with __atomic_store_n:
				      the I/O path reads it under its range lock only */
	struct dio_emap map;
	/* bumped (under map_lock) whenever a written mapping is removed or
	   changed: a handle's cached extent is valid while this is unchanged */
	atomic_uint_fast64_t map_gen;
	struct dio_rangelock *rl;  /* allocated at first open (handles only use it) */
	unsigned nopen;            /* handles; under md_lock */
	atomic_uint err_seq;       /* bumped on every write error (errseq) */
	atomic_int data_dirty;     /* data written since the last flush */
	/* the last partial block a misaligned write left (lib/tail.c), made
	   at the first one */
	struct dio_tail *_Atomic tail;
	struct dio_inode *hnext;   /* ino hash chain */
	struct dio_inode *ns_left, *ns_right;   /* the namespace's AVL tree */
	int ns_height;
	/* modification time, ns since the epoch (0: unknown, a file of a
	   volume made before DIO_INCOMPAT_MTIME); mtime_dirty: a write set
	   it since the journal last got it (fsync logs it then).  A flag,
	   not a compare of values: what fsync writes must not depend on
	   the clock's ticks (the fault tests count device writes) */
	_Atomic int64_t mtime;
	atomic_bool mtime_dirty;
};

/*
 * The last written extent a request of this handle mapped, so that the
 * next request inside it needs no map lookup at all.  A seqlock: seq is
 * odd while one thread refills it; a reader that sees seq change retries
 * through the map.  Only written extents are cached, and the cache holds
 * while in->map_gen does (see there).
 */
struct ext_cache {
	atomic_uint seq;
	atomic_uint_fast64_t lblk, pblk, len, gen;
};

struct dio_file {
	struct dio_vol *vol;
	struct dio_inode *ino;
	int flags;
	atomic_uint err_seen;      /* err_seq this handle has reported */
	uint32_t magic;            /* 0 once dio_close()d */
	/* 1 while open, +1 per queue request in flight: a handle closed
	   under its requests lives until the last completes, as a kernel
	   file lives while io_uring requests hold it */
	atomic_uint refs;
	struct ext_cache xc;
};
#define DIO_FILE_MAGIC 0x64696f66u

/* ---- bounce buffers (bounce.c) ---- */
#define BOUNCE_SIZE  (1u << 20)
#define BOUNCE_COUNT 8
struct dio_bounce {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	void *mem;
	unsigned freemask;
	void *zero;                /* BOUNCE_SIZE of zeros, never written to */
};
int   bounce_init(struct dio_bounce *b, uint32_t align);
void  bounce_destroy(struct dio_bounce *b);
void *bounce_get(struct dio_bounce *b);
void  bounce_put(struct dio_bounce *b, void *p);

#include "format.h"

/* What replay saw, for dio dump: each whole transaction (its payload),
   then where and why it stopped (err: replay's result, 0 if it ended
   normally). */
struct j_replay_tap {
	void (*txn)(void *arg, uint64_t pos, uint64_t bseq, uint32_t nblocks, const uint8_t *payload, size_t len);
	void (*stop)(void *arg, uint64_t pos, uint64_t bseq, const char *why, int err);
	void *arg;
};

/* ---- the volume ---- */
/* The device under a volume: its descriptor, geometry, backend and the
   pool of backend contexts for synchronous I/O (devctx.c). */
struct dio_device {
	int fd;                    /* a local file or block device, or -1 */
	void *tdev;                /* else a backend's target (ABI 7 target_open) */
	char *tid;                 /* its identity (dio_target.id) while mounted */
	bool created;              /* dio_mkfs made the image file */
	char *path;
	struct dio_geom geom;
	const struct dio_backend_ops *ops;
	bool plain_single;         /* a built-in backend: a lone I/O is a syscall (devio.c issue) */
	uint64_t id;               /* unique for the process's life (devctx.c) */
	struct dio_tctx *tctx;     /* threads' own contexts, under devctx.c's registry_lock */
	unsigned ntctx;
	atomic_uint ntctx_hint;    /* ntctx, read without the lock */
	struct dio_devctx ctx[DIO_NCTX];   /* the pool */
	atomic_bool pool_full;     /* an open for the pool failed: open no more */
	unsigned nctx;
	unsigned depth;
};

/* The namespace and the live inodes (inode.c), under md_lock. */
struct dio_names {
	struct dio_inode *root;    /* of the AVL tree of names (inode.c) */
	size_t nnames;
	uint64_t name_bytes;       /* of every name: their average, for statvfs */
	struct dio_inode **ihash;  /* all live inodes by number */
	size_t ihash_size, ninodes;
	uint64_t next_ino;
	unsigned nopen_total;
};

/* The journal (journal.c): records appended under md_lock, committed
   under commit_lock, flushes shared by their waiters. */
struct dio_journal {
	uint8_t *buf;
	size_t len, cap;
	size_t room;               /* reserved up to here (j_reserve) */
	uint64_t last_seq;         /* seq of the last record appended */
	bool broken;               /* a commit failed: volume refuses metadata changes */
	/* The pending records expose blocks that may hold stale bytes (dirty
	   blocks made written, anything but a write into clean blocks): their
	   commit flushes the data first.  j_append sets it for a record
	   appended as ordered. */
	bool need_order;
	pthread_mutex_t commit_lock;
	uint64_t durable_seq;      /* records up to here are on stable storage */
	uint64_t written_seq;      /* ... in the journal, maybe not flushed yet (md_lock) */
	uint64_t written_mark;     /* flush_started when that journal write completed */
	uint64_t head_pos, head_bseq;   /* next journal block to write */
	uint8_t *io;               /* aligned staging for journal/checkpoint I/O */
	size_t io_cap;
	atomic_uint_fast64_t flush_started, flush_done;
	pthread_mutex_t flush_lock;  /* j_flush: one flush at a time, shared by waiters */
	pthread_cond_t flush_cv;
	bool flush_busy;
	uint64_t flush_failed;     /* number of the last flush that failed */
};

/* Clean ranges' refill (refill.c). */
struct dio_refill {
	bool off;                  /* a refill failed: no more for this mount */
	pthread_mutex_t lock;      /* one refill of the clean ranges at a time */
	uint8_t *zbuf;             /* zeros for refills, made at the first one */
};

struct dio_vol {
	struct dio_device dev;
	bool rdonly;
	bool recovering;           /* loaded and replayed by one thread, not yet handed out */
	struct dio_sb sb;
	uint32_t bs;
	unsigned bshift;

	pthread_mutex_t md_lock;
	struct dio_names ns;
	unsigned nqueues;          /* queues not yet destroyed */
	struct dio_alloc alloc;
	struct dio_emap bad;       /* blocks a write failed on, keyed by pblk: never reused */
	uint64_t md_bytes;         /* size of a checkpoint of the current state */
	uint64_t md_cap;           /* what a checkpoint area holds */
	struct dio_journal j;
	struct dio_refill clean;

	struct dio_bounce bounce;
	const struct j_replay_tap *replay_tap;   /* NULL but in dio dump */
	struct dio_plog *plog;     /* the process-death log (plog.c), or NULL */
	uint64_t plog_applied;     /* records the mount took from a killed process's log */
	struct dio_counters_atomic cnt[CNT_SHARDS];
};

/* The block after the one that holds byte end - 1: the end of [.., end)
   in blocks (a shift: bs is a power of two). */
static inline uint64_t vol_blk_end(const struct dio_vol *v, uint64_t end)
{
	return (end + v->bs - 1) >> v->bshift;
}

/* The free blocks writes and preallocation leave to md_spare_take:
   MD_RESERVE, or a sixteenth of a tiny volume's data area. */
#define MD_RESERVE 64u
static inline uint64_t vol_reserve(const struct dio_vol *v)
{
	uint64_t data = v->sb.total_blocks - v->sb.data_start;
	return MIN((uint64_t)MD_RESERVE, data / 16);
}

/* vol.c, shared with fsck.c */
int  read_sb(struct dio_vol *v, struct dio_sb *out);
int  read_sb_at(struct dio_vol *v, uint64_t off, uint8_t *raw);   /* SB_BYTES at byte off */
void vol_release(struct dio_vol *v);
struct dio_vol *vol_new(const char *path, bool rdonly, const char *backend, unsigned depth,
			bool create, uint64_t create_size, int *err);
struct dio_vol *vol_new_ops(const char *path, bool rdonly, const char *backend,
			    const struct dio_backend_ops *ops, unsigned depth,
			    bool create, uint64_t create_size, int *err);
void drop_orphans(struct dio_vol *v);
void recount_md(struct dio_vol *v);
int  fsck_with_ops(const char *path, unsigned flags, const struct dio_backend_ops *ops,
		   void (*report)(int, const char *, void *), void *arg);
extern DIO_TLS void (*dio_log_tap)(int level, const char *msg, void *arg);
extern DIO_TLS void *dio_log_tap_arg;

/* device contexts (devctx.c) */
struct dio_devctx *devctx_get(struct dio_vol *v);   /* this thread's, or a pooled one */
void devctx_put(struct dio_devctx *c);
int devctx_init(struct dio_vol *v);
void *devctx_open(struct dio_vol *v, unsigned depth, bool owned, int *err);
int  dev_target_open(struct dio_vol *v, const char *path, bool rdonly);   /* a URI's backend (ABI 7) */
void dev_target_close(struct dio_vol *v);
void devctx_release(struct dio_vol *v);
/* device I/O (rw.c) */
int dev_submit(struct dio_vol *v, struct dio_bio *bios, unsigned n);
int dev_flush(struct dio_vol *v);
int dev_finish_short(struct dio_vol *v, struct dio_bio *b);   /* a queued bio came back short */

/* A queued bio is back: 0, or its error (the rest of a short transfer
   moved first).  A whole one-buffer transfer, the usual case, is
   settled here without a call. */
static inline int dev_finish(struct dio_vol *v, struct dio_bio *b)
{
	if (b->res < 0)
		return (int)b->res;
	if (b->iovcnt == 1 && (size_t)b->res == b->iov[0].iov_len)
		return 0;
	return dev_finish_short(v, b);
}
int dev_rw(struct dio_vol *v, int op, unsigned flags, uint64_t off, void *buf, size_t len);

/* journal.c */
/* Append a record (under md_lock).  ordered: it may expose blocks whose
   data must reach the device before it (the next commit flushes first);
   false only for a write's records that make clean blocks written
   (rw.c finish_write). */
int  j_append(struct dio_vol *v, const struct dio_rec *r, bool ordered);
int  j_reserve(struct dio_vol *v, size_t bytes);   /* md_lock: room for records to come */
int  j_commit(struct dio_vol *v, uint64_t target_seq, bool need_flush, bool force_ckpt);
int  j_replay(struct dio_vol *v);
int  j_flush(struct dio_vol *v);                              /* counts for group commit */
struct j_due { uint64_t seq; bool must; };
struct j_due j_due(struct dio_vol *v);                       /* md_lock held, as a call ends */
int  j_commit_due(struct dio_vol *v, struct j_due d);         /* no locks held */
int  j_checkpoint_locked(struct dio_vol *v);                  /* under commit_lock */
int  rec_apply(struct dio_vol *v, const struct dio_rec *r, bool dry);   /* replay only */
int  j_apply_encoded(struct dio_vol *v, uint64_t seq, const uint8_t *rec, size_t len, bool dry);   /* plog_recover's */
int  rec_parse(const uint8_t *p, size_t avail, struct dio_rec *r, size_t *used);

/* plog.c: the process-death log (contract rule 8) */
struct dio_plog;
typedef int (*plog_apply_fn)(struct dio_vol *v, uint64_t seq, const uint8_t *rec, size_t len, bool dry);
/* mount (and fsck, dio info with peek), after j_replay: whole calls */
int  plog_recover(struct dio_vol *v, plog_apply_fn apply, bool peek, uint64_t *applied);
int  plog_start(struct dio_vol *v);            /* read-write mount, after its checkpoint */
void plog_sweep(struct dio_vol *v);            /* remove this user's rings of volumes gone */
void plog_close(struct dio_vol *v, bool remove);
void plog_append(struct dio_vol *v, const uint8_t *rec, size_t len, uint64_t seq);   /* md_lock */
void plog_publish(struct dio_vol *v);                                               /* md_lock */
bool plog_overflowed(const struct dio_vol *v);                                      /* md_lock */
void plog_trim(struct dio_vol *v, uint64_t seq);                                    /* md_lock */
void plog_checkpoint(struct dio_vol *v, uint64_t gen, uint64_t seq, bool done);     /* md_lock */
unsigned plog_fill(const struct dio_vol *v);   /* percent */

/* Every md_lock section ends here: what it appended to the journal buffer
   becomes visible in the process-death log at once, so that the records
   of one call survive the process together or not at all. */
static inline void md_unlock(struct dio_vol *v)
{
	v->j.room = v->j.len;   /* the section's reservation ends with it */
	if (v->plog)
		plog_publish(v);
	pthread_mutex_unlock(&v->md_lock);
}

/* ckpt.c */
int  ckpt_write(struct dio_vol *v, uint64_t *nblocks_out, uint8_t **image, size_t *image_len);
int  ckpt_load(struct dio_vol *v);
uint64_t md_inode_bytes(size_t namelen);
#define MD_EXTENT_BYTES 24u
#define CKPT_HDR_BYTES 24u

/* The checkpoint grows or shrinks with the extent count (64-bit on every
   target: a size_t difference would wrap on 32-bit). */
static inline void md_account(struct dio_vol *v, uint64_t before, uint64_t after)
{
	if (after >= before)
		v->md_bytes += (after - before) * MD_EXTENT_BYTES;
	else
		v->md_bytes -= (before - after) * MD_EXTENT_BYTES;
}

/* inode.c: namespace, inode table, handles; all under md_lock */
struct dio_inode *ns_lookup(struct dio_vol *v, const char *name, size_t len);
struct dio_inode *ns_seek(struct dio_vol *v, const char *key, size_t len, bool after);
/* names in order: an AVL tree of 2^40 names is under 60 deep */
#define NS_DEPTH 64
struct ns_iter { struct dio_inode *stack[NS_DEPTH]; int n; };
void ns_iter_start(struct dio_vol *v, struct ns_iter *it);
struct ns_loader { struct dio_inode **a; size_t n, cap; };
int  ns_load_add(struct dio_vol *v, struct ns_loader *L, struct dio_inode *in, const char *name, size_t len);
void ns_load_end(struct dio_vol *v, struct ns_loader *L, bool ok);
struct dio_inode *ns_iter_next(struct ns_iter *it);
struct dio_inode *ino_lookup(struct dio_vol *v, uint64_t ino);
struct dio_inode *ino_new(struct dio_vol *v, uint64_t ino);
int ino_reserve(struct dio_vol *v, uint64_t n);
void ino_set_mtime(struct dio_inode *in, int64_t t, bool logged);
int  ns_insert(struct dio_vol *v, struct dio_inode *in, const char *name, size_t len);
int  ns_reserve(struct dio_vol *v, const char *name, size_t len, char **copy);
void ns_insert_reserved(struct dio_vol *v, struct dio_inode *in, char *copy, size_t len);
void ns_remove(struct dio_vol *v, struct dio_inode *in);
void ino_destroy(struct dio_vol *v, struct dio_inode *in);
void ino_free_blocks(struct dio_vol *v, struct dio_inode *in);
void vol_free_inodes(struct dio_vol *v);
int  bad_add(struct dio_vol *v, uint64_t pblk, uint64_t len);
void release_blocks_cb(void *arg, uint64_t pblk, uint64_t len, uint32_t flags);
/* blocks the change with journal sequence seq freed: bad list, free now,
   or free once that change is durable */
void blocks_freed(struct dio_vol *v, uint64_t seq, uint64_t pblk, uint64_t len, uint32_t flags);
struct freed { struct dio_vol *v; uint64_t seq; };
void freed_cb(void *arg, uint64_t pblk, uint64_t len, uint32_t flags);   /* arg: struct freed */

/* md.c: journalled map and size changes (under md_lock + map wrlock) */
int  md_unmap(struct dio_vol *v, struct dio_inode *in, uint64_t lblk, uint64_t len);
int  md_map(struct dio_vol *v, struct dio_inode *in, uint64_t lblk, uint64_t pblk, uint64_t len, uint32_t flags,
	    bool ordered);
int  md_restate(struct dio_vol *v, struct dio_inode *in, struct em_cur *c, uint64_t lblk, uint64_t len,
		 uint32_t flags, bool ordered);
int  md_set_size(struct dio_vol *v, struct dio_inode *in, uint64_t size, bool ordered);
#define MA_JOURNAL 1u    /* preallocation: journal the unwritten extents */
#define MA_REFILL  2u    /* a write: -EAGAIN when a clean refill would serve it */
int  md_alloc_range(struct dio_vol *v, struct dio_inode *in, uint64_t lblk, uint64_t len, unsigned how,
		    bool *clean);
int  md_room(struct dio_vol *v, uint64_t extra_extents, size_t extra_name);
int  md_ready(struct dio_vol *v, size_t jbytes, unsigned *nodes);   /* md_lock, before a call's first change */
size_t md_extents_in(struct dio_inode *in, uint64_t b0, uint64_t b1);   /* map lock */
/* md_ready for a call whose inserts the standing reserve covers: inline
   when the room is there already (a write's conversion, every time). */
extern _Atomic unsigned bt_pool_n;
static inline int md_ready_small(struct dio_vol *v, size_t jbytes)
{
	if (v->j.len + jbytes <= v->j.cap && atomic_load_explicit(&bt_pool_n, memory_order_relaxed) >= BT_STANDING) {
		v->j.room = v->j.len + jbytes;   /* reserved: the buffer has it */
		return 0;
	}
	return md_ready(v, jbytes, &(unsigned){ 0 });
}
#define MD_CALL_JBYTES 1024u   /* the records of a call with a few: a rename's two names and more */
int  md_spare_take(struct dio_vol *v, struct dio_inode *in, uint64_t blk, uint64_t *pblk);   /* range lock only */
void md_spare_put(struct dio_vol *v, uint64_t pblk, bool bad);
bool md_commit_for_space(struct dio_vol *v);   /* ENOSPC: commit the frees waiting; retry? */
int  md_times(struct dio_vol *v, struct dio_inode *in, int64_t t);   /* md_lock held */

/*
 * rw.c: one request, synchronous or queued (the kernel's iomap_dio): see
 * the steps at the top of rw.c.  A synchronous call keeps it on its
 * stack; a queue slot keeps it with its I/Os until the last is back.
 */
struct rw_req {
	struct dio_file *f;
	const struct iovec *iov;     /* the caller's */
	int iovcnt;
	uint64_t off, end;           /* bytes [off, end) */
	uint64_t xend;               /* end of the transfer (EOF, logical blocks) */
	uint64_t b0, b1;             /* the blocks locked */
	uint64_t ret;                /* bytes to report on success */
	struct iovec pad[2];         /* zeros before and after an aligned write */
	unsigned bio_flags;          /* DIO_BIO_FUA for O_DSYNC */
	bool write, aligned;
	bool excl;                   /* the range lock is exclusive */
	bool convert;                /* not an overwrite: convert blocks, grow size */
	bool clean;                  /* ... every block allocated was clean */
	bool alloc_failed;           /* nothing went down */
	bool changed;                /* the conversion journalled something */
	bool bounced;
	struct em_hint hint;         /* where the map was searched: the conversion looks there */
	struct dio_range r;          /* held from rq_lock to rq_finish (last: its nodes are cold) */
};

/* rw.c: queued requests (queue.c) */
#define RW_ASYNC_BIOS 8
#define RW_ASYNC_IOVS 64
struct rw_async {
	struct rw_req rq;
	ssize_t res;                 /* RWA_DONE: the result */
	unsigned nbio;
	struct dio_bio bio[RW_ASYNC_BIOS];
	struct iovec iov[RW_ASYNC_IOVS];
};
enum { RWA_INLINE = 0, RWA_READY = 1, RWA_DONE = 2 };
/* Completed requests, counted here and added to the volume's counters
   in one go by rw_tally_flush: a queue's reap adds a batch's worth of
   counts with one atomic add each, not one per request. */
struct rw_tally {
	uint64_t n[2], bytes[2];     /* [0] reads, [1] writes */
};
int     rw_async_prepare(struct rw_async *a, struct dio_file *f, bool write, const struct iovec *iov,
			 int iovcnt, off_t offset, bool may_block, const atomic_uint *q_user);
ssize_t rw_async_finish(struct rw_async *a, int err, struct rw_tally *t);   /* the request's result */
void    rw_tally_flush(struct dio_counters_atomic *cnt, struct rw_tally *t);

/* the data path's helpers for file.c */
int  rw_copy_zeroed(struct dio_file *f, uint64_t blk, uint32_t from, uint32_t to, uint64_t pblk);   /* rmw.c */
void rw_mark_failed(struct dio_file *f, uint64_t b0, uint64_t b1);   /* rw.c; no md/map locks held */
bool block_is_written(struct dio_inode *in, uint64_t lblk);          /* xfer.c */

/* tail.c: the tail block of misaligned writers; callers hold the blocks'
   range lock (tail_load, tail_store: exclusively) */
struct dio_tail;
bool tail_load(struct dio_inode *in, uint64_t blk, uint8_t *dst, uint32_t bs);
void tail_store(struct dio_inode *in, uint64_t blk, const uint8_t *src, uint32_t bs);
void tail_forget(struct dio_inode *in, uint64_t b0, uint64_t b1);
/* A read-ahead window: the buffer (locked, the window empty) to read up
   to *cap blocks into, then the window made of the first n (0: none).
   The caller holds every block it reads exclusively. */
uint8_t *tail_window_begin(struct dio_inode *in, uint32_t bs, uint32_t *cap);
void tail_window_end(struct dio_inode *in, uint64_t blk, uint64_t n);
void tail_free(struct dio_inode *in);   /* the inode goes */
void file_close_last(struct dio_file *f);   /* file_put's last reference: the handle goes */

/* 0 if f is an open handle, else -1 with errno EBADF.  Every call checks
   this, so it is inline. */
static inline int file_check(struct dio_file *f)
{
	if (!f || f->magic != DIO_FILE_MAGIC) {
		errno = EBADF;
		return -1;
	}
	return 0;
}

static inline void file_get(struct dio_file *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

/* Drop a reference; the last one closes the handle. */
static inline void file_put(struct dio_file *f)
{
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		file_close_last(f);
}

/* A wait of timeout_ms (negative: no limit) as a deadline, and the
   milliseconds left of it (0 once past; -1 for no limit): a wait made of
   several (a partial reap, EINTR) never waits longer in all. */
int64_t dio_deadline(int timeout_ms);
int dio_ms_left(int64_t deadline);

static inline bool backend_has_async(const struct dio_backend_ops *o)
{
	return o->abi >= 2 && o->submit_async && o->reap;
}

static inline bool backend_has_fixed(const struct dio_backend_ops *o)
{
	return o->abi >= 3 && o->register_buffers;
}

static inline bool backend_has_owned(const struct dio_backend_ops *o)
{
	return o->abi >= 4 && o->open_owned;
}

static inline bool backend_has_eventfd(const struct dio_backend_ops *o)
{
	return o->abi >= 5 && o->set_eventfd;
}

#define CNT(v) (&(v)->cnt[dio_thread_slot() % CNT_SHARDS])

static inline void cnt_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}


#endif
