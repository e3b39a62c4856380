/*
 * The files of the VFS: one libdio handle each, database locks between
 * the connections of the process, write runs, and the database header.
 *
 * Locks.  A libdio volume belongs to one process, so SQLite's file locks
 * only ever arbitrate between connections of this process: the unix VFS's
 * in-process rules (its unixInodeInfo), without fcntl.  One dsq_lock per
 * file name holds the highest level any connection has and how many hold
 * SHARED or more; PENDING keeps new readers out while a writer waits for
 * the readers to leave.
 *
 * Write runs.  SQLite writes a WAL frame as its 24-byte header and then
 * the page, a rollback-journal record as a 4-byte page number, the page
 * and a 4-byte checksum: never block-aligned, one after another; and at
 * a commit or a checkpoint, page after page of the database.  Written one
 * by one, each would be a synchronous device write of its own, and each
 * that ends inside an old block a device read first.  So every write is
 * copied into the volume's run buffer (aligned: aligned runs stay
 * zero-copy below), and a write that continues the run joins it.  One
 * that does not ends it: the run waits in one of 16 slots of the
 * volume's queue, each with its own buffer, and the write starts the
 * next.  Ended runs go in flight eight at a time, in one submission, so
 * the device is told once for them (a checkpoint's scattered pages: on a
 * virtual disk every notification is an exit to the host); the rest go
 * when a call needs them on the device.
 * Everything held or in flight is on the device before any other call
 * goes on: a call on another file of the volume, from any connection
 * (m->run_owner: the file whose writes are held or in flight), and any
 * call on the same file but a read or a size of another one, or a lock
 * taken above SHARED (a writer's step up, which publishes nothing: the
 * locks live in this process, and every read waits as above).  Overlapping
 * writes in flight are waited for first, so the later lands last.
 *
 * Why SQLite cannot tell.  While writes are held or in flight the process
 * has made no call that changes or publishes anything (no sync, shared
 * lock, barrier, delete, write elsewhere): SQLite has relied on none of
 * them.
 * A process killed meanwhile leaves the files as a kill just before those
 * writes would, with some of them done: any subset of one file's writes
 * since its last such call, which SQLite's recovery handles as it does a
 * torn sequence (rollback journal pages restored by a hot journal; WAL
 * frames checksum-chained, a commit's frames complete before the index
 * publishes it).  Reads of another file may pass (a checkpoint reads a
 * frame, writes its page, page after page: one run).
 *
 * Errors.  A run that fails on the device fails the call that drained
 * it, whichever file that call is on (dsq_run_drain returns its error),
 * and stays with the run's file (run_err) until a call on that file
 * that SQLite checks reports it: a write, sync, truncate, lock, close.
 * Calls whose result SQLite ignores (xShmBarrier, xUnlock, an unlock
 * through xShmLock, the hints of xFileControl) drain without reporting,
 * so an error is never spent on them: a checkpoint whose page writes
 * failed once went on to truncate and sync the database, its error
 * spent on a size hint, and marked the frames copied.  Until it is
 * reported, every checked call that could publish something fails with
 * it too (writes, syncs, truncates, locks, deletes: dsq_run_failed):
 * with synchronous=OFF a rollback journal's delete, truncate or zeroed
 * header is the commit, and once went ahead after the transaction's
 * pages had failed on a full volume, taking the only copy of the old
 * pages with it.
 * But a WAL commit whose frames were held would be published by the
 * wal-index right after its last frame's write, with no call SQLite
 * checks in between when synchronous is NORMAL or OFF (the barrier is
 * void): the commit would be reported with its frames lost to a kill.
 * So the write of a commit frame's page (its header, written just
 * before, has a database size: SQLite's mark of a commit) drains the
 * run before it returns, and a run that fails fails that write, which
 * fails the commit, as a failed write(2) would.
 *
 * The header.  Each read transaction in rollback mode starts with a
 * 16-byte read of the database's change counter (offset 24): on a
 * device with no page cache, a device read per transaction.  Writes of
 * the database go through this VFS only (the volume belongs to this
 * process), so its first 100 bytes are kept beside its lock, as every
 * connection wrote them, and such reads are served from there.
 *
 * The journal header.  A rollback journal starts with a 512-byte header
 * (SQLite's sector with POWERSAFE_OVERWRITE), followed by the records.
 * At each sync SQLite rewrites the header's first 12 bytes (the record
 * count), and in PERSIST mode zeroes its first 28 at the commit.  Written
 * as they come, each such write would make libdio read the block back
 * from the device to fill in the rest: a device read per transaction, as
 * slow as the rest of the commit on a disk.  So a main journal keeps a
 * copy of its first block as written (header and first records, one
 * after another from offset 0), and once the copy holds the whole block,
 * a write inside it goes down as that whole block: an aligned overwrite
 * that reads nothing.  The copy is the handle's own: a write or truncate
 * through another handle (another connection's transaction) empties it,
 * as the file's lock record names the handle that wrote last.
 */
#include "dsq.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define RUN_MAX (1u << 20)   /* bytes held at most; more is one write now */
#define MIN_SIZE(a, b) ((a) < (b) ? (a) : (b))

static pthread_mutex_t hdr_lock = PTHREAD_MUTEX_INITIALIZER;   /* dsq_lock.hdr */

static struct dsq_file *F(sqlite3_file *f)
{
	return (struct dsq_file *)f;
}

#define NSLOTS (sizeof(((struct dsq_mount *)0)->slots) / sizeof(((struct dsq_mount *)0)->slots[0]))

/* A write of o's failed, or went down only in part: the copies of its
   bytes this VFS keeps (the WAL's, the database header, the journal's
   first block) no longer equal the file's, and reads go to the device. */
static void caches_drop(struct dsq_file *o)
{
	dsq_wc_cut(o->lk->wc, 0);
	if (o->main_db) {
		pthread_mutex_lock(&hdr_lock);
		o->lk->hdr_ok = false;
		pthread_mutex_unlock(&hdr_lock);
	}
	o->jhead_len = 0;
}

/* A run of o's failed with rc: kept unless an earlier error is, and
   counted in the mount until o reports it. */
static void err_set(struct dsq_file *o, int rc)
{
	caches_drop(o);
	int none = SQLITE_OK;
	if (atomic_compare_exchange_strong(&o->run_err, &none, rc)) {
		atomic_store(&o->m->failed_rc, rc);
		atomic_fetch_add(&o->m->nfailed, 1);
	}
}

/* o's kept error, taken (reported once). */
static int err_take(struct dsq_file *o)
{
	int rc = atomic_exchange(&o->run_err, SQLITE_OK);
	if (rc != SQLITE_OK)
		atomic_fetch_sub(&o->m->nfailed, 1);
	return rc;
}

int dsq_run_failed(struct dsq_mount *m)
{
	return atomic_load(&m->nfailed) ? atomic_load(&m->failed_rc) : SQLITE_OK;
}

/* Under m->run_lock: the ended runs held in slots go in flight, in one
   call, so the kernel passes them to the device together (one
   notification for the batch instead of one per run: on a virtual disk
   each is an exit to the host); any the queue does not take are written
   here.  They are all o's, and no two slots overlap (runs_overlap). */
static void runs_submit(struct dsq_mount *m, struct dsq_file *o)
{
	if (!m->held)
		return;
	struct dio_req r[NSLOTS];
	unsigned n = 0;
	for (unsigned i = 0; i < NSLOTS; i++) {
		struct dsq_slot *sl = &m->slots[i];
		if (sl->len && !sl->sent)
			r[n++] = (struct dio_req){ .op = DIO_OP_WRITE, .file = o->f, .buf = sl->buf, .len = sl->len,
						   .offset = (off_t)sl->off, .user_data = i };
	}
	int k = dio_submit(m->runq, r, n);
	for (unsigned j = 0; j < n; j++) {
		struct dsq_slot *sl = &m->slots[r[j].user_data];
		if (k > 0 && j < (unsigned)k) {
			sl->sent = true;
			m->inflight++;
			continue;
		}
		if (dio_pwrite(o->f, sl->buf, sl->len, (off_t)sl->off) != (ssize_t)sl->len)
			err_set(o, dsq_errno_rc(errno, SQLITE_IOERR_WRITE));
		sl->len = 0;
	}
	m->held = 0;
}

/* Under m->run_lock: wait for the runs in flight (all, held ones
   submitted first; or at least one); a failed one is o's error (the runs
   in flight are all of the owner). */
static void runs_reap(struct dsq_mount *m, struct dsq_file *o, bool all)
{
	if (all)
		runs_submit(m, o);
	while (m->inflight) {
		struct dio_cqe c[NSLOTS];
		int n = dio_reap(m->runq, c, all ? m->inflight : 1, (unsigned)NSLOTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			abort();   /* a queue that cannot reap what it holds: nothing sane is left */
		}
		for (int i = 0; i < n; i++) {
			struct dsq_slot *sl = &m->slots[c[i].user_data];
			if (c[i].res != (ssize_t)sl->len)
				err_set(o, dsq_errno_rc(c[i].res < 0 ? (int)-c[i].res : ENOSPC, SQLITE_IOERR_WRITE));
			sl->len = 0;
			sl->sent = false;
			m->inflight--;
		}
		if (!all)
			return;
	}
}

/* Under m->run_lock: does [off, off+len) meet a run held or in flight? */
static bool runs_overlap(const struct dsq_mount *m, uint64_t off, size_t len)
{
	for (unsigned i = 0; i < NSLOTS; i++)
		if (m->slots[i].len && off < m->slots[i].off + m->slots[i].len && m->slots[i].off < off + len)
			return true;
	return false;
}

#define RUN_BATCH 8   /* ended runs that go in flight together */

/* Under m->run_lock: a WAL run's partial edge blocks completed from the
   VFS's copy of the WAL, where it holds those bytes (the file has them
   already: the copy is the file), so the run goes down as whole blocks,
   with no copy and no read of its edges back.  A write continues where
   the last ended, inside a block, so without this every commit's frames
   would start in a block that libdio has to read or have kept. */
static void run_align(struct dsq_mount *m, struct dsq_file *o)
{
	struct dsq_wcache *wc = o->lk->wc;
	uint64_t bs = m->info.block_size;
	if (!wc || !bs || !m->run_len)
		return;
	uint64_t s = m->run_off, e = s + m->run_len;
	size_t head = (size_t)(s % bs), tail = e % bs ? (size_t)(bs - e % bs) : 0;
	if (head && m->run_len + head <= RUN_MAX && dsq_wc_holds(wc, s - head, head)) {
		memmove(m->run + head, m->run, m->run_len);
		if (dsq_wc_read(wc, m->run, head, s - head)) {
			m->run_off -= head;
			m->run_len += head;
		} else {
			/* cut in between (a truncation by another handle) */
			memmove(m->run, m->run + head, m->run_len);
		}
	}
	if (tail && m->run_len + tail <= RUN_MAX && dsq_wc_read(wc, m->run + m->run_len, tail, e))
		m->run_len += tail;
}

/* Under m->run_lock: the run (o's) ends.  Held in a slot of the run
   queue if it may be (more of o's writes may follow before anyone
   waits), to go in flight with the next ones, else written now. */
static void run_end(struct dsq_mount *m, struct dsq_file *o, bool async)
{
	if (!m->run_len)
		return;
	run_align(m, o);
	/* the run grew past the range its first write checked (continuing
	   writes, completed edges): what it meets goes down first, so the
	   later bytes land last */
	if ((m->inflight || m->held) && runs_overlap(m, m->run_off, m->run_len))
		runs_reap(m, o, true);
	if (m->info.flags & DIO_INFO_MEMORY)
		async = false;   /* a copy now is cheaper than a hand-off to a kernel thread */
	if (async && !m->runq && !m->runq_failed)
		m->runq_failed = !(m->runq = dio_queue_create(m->vol, (unsigned)NSLOTS));
	if (async && m->runq) {
		if (m->inflight + m->held == NSLOTS) {
			runs_submit(m, o);
			runs_reap(m, o, false);
		}
		unsigned i = 0;
		while (m->slots[i].len)
			i++;
		struct dsq_slot *sl = &m->slots[i];
		if (sl->buf || !posix_memalign((void **)&sl->buf, 4096, RUN_MAX)) {
			uint8_t *b = sl->buf;   /* the run's buffer goes to the slot */
			sl->buf = m->run;
			m->run = b;
			sl->off = m->run_off;
			sl->len = m->run_len;
			sl->sent = false;
			m->held++;
			m->run_len = 0;
			if (m->held >= RUN_BATCH)
				runs_submit(m, o);
			return;
		}
	}
	if (dio_pwrite(o->f, m->run, m->run_len, (off_t)m->run_off) != (ssize_t)m->run_len)
		err_set(o, dsq_errno_rc(errno, SQLITE_IOERR_WRITE));
	m->run_len = 0;
}

/* Under m->run_lock: everything of the owner o on the device; the error
   of a run of o's that failed (it stays with o: see "Errors" above). */
static int run_drain_locked(struct dsq_mount *m, struct dsq_file *o)
{
	runs_submit(m, o);   /* in flight while the last run is written */
	run_end(m, o, false);
	runs_reap(m, o, true);
	atomic_store_explicit(&m->run_owner, NULL, memory_order_release);
	return atomic_load(&o->run_err);
}

/* Everything held or in flight on the device: SQLITE_OK, or the error of
   a run that failed, for the caller to report. */
int dsq_run_drain(struct dsq_mount *m)
{
	if (!atomic_load_explicit(&m->run_owner, memory_order_acquire))
		return SQLITE_OK;   /* the common case: one load */
	pthread_mutex_lock(&m->run_lock);
	struct dsq_file *o = atomic_load_explicit(&m->run_owner, memory_order_relaxed);
	int rc = o ? run_drain_locked(m, o) : SQLITE_OK;
	pthread_mutex_unlock(&m->run_lock);
	return rc;
}

/* At the start of every method of p that SQLite checks but a continuing
   write: the volume's run written; p's own error (taken: reported once),
   else that of another file's run this drained. */
static int flush_pending(struct dsq_file *p)
{
	int rc = dsq_run_drain(p->m), own = err_take(p);
	return own != SQLITE_OK ? own : rc != SQLITE_OK ? rc : dsq_run_failed(p->m);
}

/* The same for a call whose result SQLite ignores: errors stay for a
   call that reports them. */
static void flush_keep(struct dsq_file *p)
{
	dsq_run_drain(p->m);
}

/* Before a read or a size of p: the run written only if it is of p's
   file (any connection's handle).  A read changes nothing and commits
   SQLite to nothing, so a run elsewhere may stay held: a checkpoint that
   reads a WAL frame and writes its page, page after page, keeps one run
   of the database's pages.  A run that failed is not the read's error
   (SQLite does not expect a write's from a read, and once kept a failed
   transaction's pages in its cache after one): it stays for the file's
   next write, sync or lock. */
static void flush_for_read(struct dsq_file *p)
{
	struct dsq_file *o = atomic_load_explicit(&p->m->run_owner, memory_order_acquire);
	if (o && o->lk == p->lk)
		dsq_run_drain(p->m);
}

/* A main database's header copy follows a write or a truncate. */
static void hdr_written(struct dsq_file *p, const void *buf, int amt, uint64_t off)
{
	if (!p->main_db || off >= sizeof(p->lk->hdr))
		return;
	pthread_mutex_lock(&hdr_lock);
	if (off == 0 && (size_t)amt >= sizeof(p->lk->hdr)) {
		memcpy(p->lk->hdr, buf, sizeof(p->lk->hdr));
		p->lk->hdr_ok = true;
	} else if (p->lk->hdr_ok) {
		size_t n = MIN_SIZE(sizeof(p->lk->hdr) - (size_t)off, (size_t)amt);
		memcpy(p->lk->hdr + off, buf, n);
	}
	pthread_mutex_unlock(&hdr_lock);
}

/* Before p writes or truncates its main journal: if another handle did
   last (another connection's transaction), p's copy knows nothing. */
static void jhead_claim(struct dsq_file *p)
{
	if (atomic_load_explicit(&p->lk->jwriter, memory_order_acquire) != p) {
		p->jhead_len = 0;
		atomic_store_explicit(&p->lk->jwriter, p, memory_order_release);
	}
}

/* A main journal's write that starts in its first block: kept in the
   copy of that block, which knows the bytes [0, jhead_len) (written one
   after another from the start).  Once it knows them all, a write that
   stays inside the block becomes the whole block (*buf, *amt, *off). */
static void jhead_written(struct dsq_file *p, const void **buf, int *amt, uint64_t *off)
{
	size_t bs = p->m->info.block_size;
	if (!p->jhead)
		return;
	jhead_claim(p);
	if (*off >= bs)
		return;
	size_t o = (size_t)*off, n = MIN_SIZE(bs - o, (size_t)*amt);
	memcpy(p->jhead + o, *buf, n);
	if (o > p->jhead_len)
		return;   /* after a gap: the bytes between are not known */
	if (o + n > p->jhead_len)
		p->jhead_len = o + n;
	if (p->jhead_len == bs && o + (size_t)*amt <= bs) {
		/* the file holds the whole block: its bytes up to bs were
		   written, and a truncate below bs shortens jhead_len */
		*buf = p->jhead;
		*amt = (int)bs;
		*off = 0;
	}
}

/* Under dsq_lock: the lock record of name on m. */
static struct dsq_lock *lock_get(struct dsq_mount *m, const char *name)
{
	for (struct dsq_lock *l = m->locks; l; l = l->next) {
		if (!strcmp(l->name, name)) {
			l->refs++;
			return l;
		}
	}
	struct dsq_lock *l = calloc(1, sizeof(*l));
	if (!l || !(l->name = strdup(name))) {
		free(l);
		return NULL;
	}
	l->refs = 1;
	l->next = m->locks;
	m->locks = l;
	return l;
}

static void lock_put(struct dsq_mount *m, struct dsq_lock *l)
{
	if (--l->refs)
		return;
	for (struct dsq_lock **pp = &m->locks; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	dsq_wc_free(l->wc);
	free(l->name);
	free(l);
}

void dsq_wc_forget(struct dsq_mount *m, const char *name)
{
	for (struct dsq_lock *l = m->locks; l; l = l->next)
		if (!strcmp(l->name, name))
			dsq_wc_cut(l->wc, 0);
}

int dsq_file_open(struct dsq_file *p, struct dsq_mount *m, const char *name, int flags, int *out_flags)
{
	int oflags = (flags & SQLITE_OPEN_READONLY) ? O_RDONLY : O_RDWR;
	if (flags & SQLITE_OPEN_CREATE)
		oflags |= O_CREAT;
	if (flags & SQLITE_OPEN_EXCLUSIVE)
		oflags |= O_EXCL;
	p->f = dio_open(m->vol, name, oflags);
	if (!p->f)
		return errno == ENOMEM ? SQLITE_NOMEM : SQLITE_CANTOPEN;
	p->name = strdup(name);
	pthread_mutex_lock(&dsq_lock);
	p->lk = p->name ? lock_get(m, name) : NULL;
	if (p->lk && (flags & SQLITE_OPEN_WAL) && !p->lk->wc)
		p->lk->wc = dsq_wc_new();   /* NULL: reads go to the device */
	if (p->lk && !m->info.block_size && dio_info(p->f, &m->info))
		m->info.block_size = 0;
	pthread_mutex_unlock(&dsq_lock);
	if (!p->lk) {
		dio_close(p->f);
		free(p->name);
		return SQLITE_NOMEM;
	}
	p->m = m;
	p->readonly = (oflags & O_ACCMODE) == O_RDONLY;
	p->delete_on_close = (flags & SQLITE_OPEN_DELETEONCLOSE) != 0;
	p->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
	p->wal = (flags & SQLITE_OPEN_WAL) != 0;
	p->commit_page = 0;
	atomic_init(&p->run_err, SQLITE_OK);   /* p->m is set: err_set counts there */
	p->jhead = NULL;
	p->jhead_len = 0;
	if ((flags & SQLITE_OPEN_MAIN_JOURNAL) && m->info.block_size &&
	    posix_memalign((void **)&p->jhead, 4096, m->info.block_size))
		p->jhead = NULL;   /* no copy: such writes read their block back */
	if (out_flags)
		*out_flags = flags;
	p->base.pMethods = &dsq_io;
	return SQLITE_OK;
}

/* ---- locks ---------------------------------------------------------------------- */

static int x_lock(sqlite3_file *f, int level)
{
	struct dsq_file *p = F(f);
	/* A read transaction starts at SHARED: what was sent before is
	   written first.  Going up from there (RESERVED, EXCLUSIVE) keeps
	   the others out and needs nothing written: a rollback journal's
	   records span the writer's step to EXCLUSIVE, and stay one run. */
	int rc = level <= SQLITE_LOCK_SHARED ? flush_pending(p) : SQLITE_OK;
	if (rc != SQLITE_OK || p->level >= level)
		return rc;
	pthread_mutex_lock(&dsq_lock);
	struct dsq_lock *l = p->lk;
	if (p->level != l->level && (l->level >= SQLITE_LOCK_PENDING || level > SQLITE_LOCK_SHARED)) {
		rc = SQLITE_BUSY;   /* another connection writes, or is about to */
	} else if (level == SQLITE_LOCK_SHARED) {
		if (l->level == SQLITE_LOCK_NONE)
			l->level = SQLITE_LOCK_SHARED;
		l->nshared++;
		p->level = SQLITE_LOCK_SHARED;
	} else if (level == SQLITE_LOCK_EXCLUSIVE && l->nshared > 1) {
		/* readers remain: keep new ones out (PENDING) and retry */
		p->level = l->level = SQLITE_LOCK_PENDING;
		rc = SQLITE_BUSY;
	} else {
		/* RESERVED beside readers, or EXCLUSIVE alone; here p holds the
		   highest level there is */
		p->level = l->level = level;
	}
	pthread_mutex_unlock(&dsq_lock);
	return rc;
}

static int x_unlock(sqlite3_file *f, int level)
{
	struct dsq_file *p = F(f);
	int rc = SQLITE_OK;
	flush_keep(p);   /* a failed drain waits for a call SQLite checks */
	if (p->level <= level)
		return rc;
	pthread_mutex_lock(&dsq_lock);
	struct dsq_lock *l = p->lk;
	if (p->level > SQLITE_LOCK_SHARED)
		l->level = SQLITE_LOCK_SHARED;   /* p held the top: down to the readers */
	if (level == SQLITE_LOCK_NONE && --l->nshared == 0)
		l->level = SQLITE_LOCK_NONE;
	p->level = level;
	pthread_mutex_unlock(&dsq_lock);
	return rc;
}

static int x_check_reserved(sqlite3_file *f, int *res)
{
	struct dsq_file *p = F(f);
	int rc = dsq_run_drain(p->m);
	if (rc == SQLITE_OK)
		rc = dsq_run_failed(p->m);
	pthread_mutex_lock(&dsq_lock);
	*res = p->lk->level > SQLITE_LOCK_SHARED;
	pthread_mutex_unlock(&dsq_lock);
	return rc;
}

/* ---- I/O ------------------------------------------------------------------------- */

static int x_close(sqlite3_file *f)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
	if (p->shm)
		dsq_shm_unmap(f, 0);
	x_unlock(f, SQLITE_LOCK_NONE);
	struct dsq_file *me = p;   /* a later handle at this address starts afresh */
	atomic_compare_exchange_strong(&p->lk->jwriter, &me, NULL);
	if (dio_close(p->f) && rc == SQLITE_OK)
		rc = SQLITE_IOERR_CLOSE;
	if (p->delete_on_close && dio_unlink(p->m->vol, p->name) && rc == SQLITE_OK)
		rc = SQLITE_IOERR_DELETE;
	pthread_mutex_lock(&dsq_lock);
	lock_put(p->m, p->lk);
	dsq_mount_put(p->m);
	pthread_mutex_unlock(&dsq_lock);
	free(p->name);
	free(p->jhead);
	p->base.pMethods = NULL;
	return rc;
}

static int x_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	struct dsq_file *p = F(f);
	if (dsq_wc_read(p->lk->wc, buf, (size_t)amt, (uint64_t)off))
		return SQLITE_OK;   /* the WAL's bytes as written, held or not */
	flush_for_read(p);
	uint64_t o = (uint64_t)off;
	if (p->main_db && o + (uint64_t)amt <= sizeof(p->lk->hdr)) {
		pthread_mutex_lock(&hdr_lock);
		bool hit = p->lk->hdr_ok;
		if (hit)
			memcpy(buf, p->lk->hdr + o, (size_t)amt);
		pthread_mutex_unlock(&hdr_lock);
		if (hit)
			return SQLITE_OK;
	}
	ssize_t n = dio_pread(p->f, buf, (size_t)amt, (off_t)off);
	if (n < 0)
		return dsq_errno_rc(errno, SQLITE_IOERR_READ);
	if (p->main_db && o == 0 && (size_t)n >= sizeof(p->lk->hdr)) {
		pthread_mutex_lock(&hdr_lock);
		memcpy(p->lk->hdr, buf, sizeof(p->lk->hdr));
		p->lk->hdr_ok = true;
		pthread_mutex_unlock(&hdr_lock);
	}
	if (n < amt) {
		/* past the end: zeros, as SQLITE_IOERR_SHORT_READ requires */
		memset((char *)buf + n, 0, (size_t)(amt - n));
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

/* Under m->run_lock, p the owner (its run maybe empty) or none: append
   the write to p's run (true), or leave it to the caller. */
static bool run_take(struct dsq_file *p, const void *buf, size_t amt, uint64_t off)
{
	struct dsq_mount *m = p->m;
	if (m->run_len && off != m->run_off + m->run_len)
		return false;   /* not a continuation */
	if (m->run_len + amt > RUN_MAX)
		return false;
	if (!m->run && posix_memalign((void **)&m->run, 4096, RUN_MAX)) {
		m->run = NULL;
		return false;   /* written now instead */
	}
	if (!m->run_len) {
		if ((m->inflight || m->held) && runs_overlap(m, off, amt))
			runs_reap(m, p, true);   /* a later write of the same bytes lands last */
		m->run_off = off;
	}
	memcpy(m->run + m->run_len, buf, amt);
	m->run_len += amt;
	atomic_store_explicit(&m->run_owner, p, memory_order_release);
	return true;
}

/* A WAL frame header (24 bytes, after the 32 of the WAL's own) whose
   database size is not 0: the frame commits a transaction. */
#define WAL_HDR 32u
#define WAL_FRAME_HDR 24u
static bool commit_frame_header(const struct dsq_file *p, const void *buf, int amt, uint64_t off)
{
	const uint8_t *b = buf;
	return p->wal && amt == (int)WAL_FRAME_HDR && off >= WAL_HDR && (b[4] | b[5] | b[6] | b[7]);
}

static int x_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct dsq_file *p = F(f);
	struct dsq_mount *m = p->m;
	uint64_t o = (uint64_t)off;
	/* the page of a commit frame: on the device before this returns */
	bool commit = p->commit_page && o == p->commit_page;
	p->commit_page = commit_frame_header(p, buf, amt, o) ? o + WAL_FRAME_HDR : 0;
	hdr_written(p, buf, amt, o);
	dsq_wc_write(p->lk->wc, buf, (size_t)amt, o);
	jhead_written(p, &buf, &amt, &o);
	off = (sqlite3_int64)o;
	int rc = SQLITE_OK;
	pthread_mutex_lock(&m->run_lock);
	struct dsq_file *owner = atomic_load_explicit(&m->run_owner, memory_order_relaxed);
	if (owner && owner != p)
		rc = run_drain_locked(m, owner);   /* another file's writes end here, on the device */
	int own = err_take(p);
	if (own != SQLITE_OK)
		rc = own;
	else if (rc == SQLITE_OK)
		rc = dsq_run_failed(m);   /* nothing goes down while a failure is unreported */
	bool held = false;
	if (rc == SQLITE_OK) {
		held = run_take(p, buf, (size_t)amt, o);
		if (!held && m->run_len) {
			run_end(m, p, true);          /* p's run ends, and goes in flight */
			held = run_take(p, buf, (size_t)amt, o);   /* this write starts the next */
		}
		/* a commit's end, or written in place after all before it */
		if ((commit || !held) && atomic_load_explicit(&m->run_owner, memory_order_relaxed) == p &&
		    run_drain_locked(m, p) != SQLITE_OK)
			rc = err_take(p);   /* reported here */
	}
	pthread_mutex_unlock(&m->run_lock);
	if (rc == SQLITE_OK && !held && dio_pwrite(p->f, buf, (size_t)amt, (off_t)off) != (ssize_t)amt)
		rc = dsq_errno_rc(errno, SQLITE_IOERR_WRITE);
	if (rc != SQLITE_OK)
		caches_drop(p);   /* they took this write's bytes, which are not the file's */
	return rc;
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
	if (p->main_db && (uint64_t)size < sizeof(p->lk->hdr)) {
		pthread_mutex_lock(&hdr_lock);
		p->lk->hdr_ok = false;
		pthread_mutex_unlock(&hdr_lock);
	}
	dsq_wc_cut(p->lk->wc, (uint64_t)size);
	if (p->jhead) {
		jhead_claim(p);
		if ((uint64_t)size < p->jhead_len)
			p->jhead_len = (size_t)size;   /* the file holds no more of the block */
	}
	if (rc == SQLITE_OK && dio_ftruncate(p->f, (off_t)size))
		rc = dsq_errno_rc(errno, SQLITE_IOERR_TRUNCATE);
	return rc;
}

/* SQLITE_SYNC_DATAONLY: fdatasync, else fsync (the same commit in libdio;
   SQLITE_SYNC_FULL asks nothing more of a device that libdio flushes). */
static int x_sync(sqlite3_file *f, int flags)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
	if (rc != SQLITE_OK)
		return rc;
	int r = (flags & SQLITE_SYNC_DATAONLY) ? dio_fdatasync(p->f) : dio_fsync(p->f);
	return r ? SQLITE_IOERR_FSYNC : SQLITE_OK;
}

static int x_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct dsq_file *p = F(f);
	struct dio_stat st;
	flush_for_read(p);
	if (dio_fstat(p->f, &st))
		return SQLITE_IOERR_FSTAT;
	*size = (sqlite3_int64)st.size;
	return SQLITE_OK;
}

static int x_file_control(sqlite3_file *f, int op, void *arg)
{
	struct dsq_file *p = F(f);
	flush_keep(p);   /* SQLite ignores what hints return */
	switch (op) {
	case SQLITE_FCNTL_VFSNAME:
		*(char **)arg = dsq.mprintf("libdio");
		return SQLITE_OK;
	case SQLITE_FCNTL_LOCKSTATE:
		*(int *)arg = p->level;
		return SQLITE_OK;
	case SQLITE_FCNTL_HAS_MOVED:
		*(int *)arg = 0;   /* names change only through this process */
		return SQLITE_OK;
	default:
		return SQLITE_NOTFOUND;
	}
}

/* The block: what libdio never tears into another write's bytes
   (dio_info(3), "Which unit is the sector"). */
static int x_sector_size(sqlite3_file *f)
{
	return (int)F(f)->m->info.block_size;
}

/*
 * A write never changes bytes outside its range, even torn by a power
 * loss: POWERSAFE_OVERWRITE.  Writes reach stable storage in call order
 * when the device has no volatile cache (each write completes before its
 * call returns): SEQUENTIAL then.  No atomic unit and no SAFE_APPEND: a
 * crash may show an appended region as zeros (libdio(7), rule 5).
 */
static int x_device_characteristics(sqlite3_file *f)
{
	const struct dio_info *i = &F(f)->m->info;
	int c = SQLITE_IOCAP_POWERSAFE_OVERWRITE;
	if (!(i->flags & DIO_INFO_VOLATILE_CACHE))
		c |= SQLITE_IOCAP_SEQUENTIAL;
	return c;
}

static int x_shm_lock(sqlite3_file *f, int ofst, int n, int flags)
{
	if (flags & SQLITE_SHM_UNLOCK) {
		flush_keep(F(f));   /* SQLite ignores what an unlock returns */
		return dsq_shm_lock(f, ofst, n, flags);
	}
	int rc = flush_pending(F(f));
	return rc != SQLITE_OK ? rc : dsq_shm_lock(f, ofst, n, flags);
}

static void x_shm_barrier(sqlite3_file *f)
{
	flush_keep(F(f));   /* void: a failed run stays its file's error */
	dsq_shm_barrier(f);
}

const sqlite3_io_methods dsq_io = {
	.iVersion = 2,
	.xClose = x_close,
	.xRead = x_read,
	.xWrite = x_write,
	.xTruncate = x_truncate,
	.xSync = x_sync,
	.xFileSize = x_file_size,
	.xLock = x_lock,
	.xUnlock = x_unlock,
	.xCheckReservedLock = x_check_reserved,
	.xFileControl = x_file_control,
	.xSectorSize = x_sector_size,
	.xDeviceCharacteristics = x_device_characteristics,
	.xShmMap = dsq_shm_map,
	.xShmLock = x_shm_lock,
	.xShmBarrier = x_shm_barrier,
	.xShmUnmap = dsq_shm_unmap,
};
