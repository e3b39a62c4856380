/*
 * Write runs: every write of the VFS's files goes through here (file.c's
 * x_write), and every other call drains them first.
 *
 * SQLite writes a WAL frame as its 24-byte header and then
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
 * fails the commit, as a failed write(2) would (x_write, file.c).
 */
#include "dsq.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX (1u << 20)   /* bytes held at most; more is one write now */

#define NSLOTS (sizeof(((struct dsq_mount *)0)->slots) / sizeof(((struct dsq_mount *)0)->slots[0]))

/* A run of o's failed with rc: kept unless an earlier error is, and
   counted in the mount until o reports it. */
void dsq_err_set(struct dsq_file *o, int rc)
{
	dsq_caches_drop(o);
	int none = SQLITE_OK;
	if (atomic_compare_exchange_strong(&o->run_err, &none, rc)) {
		atomic_store(&o->m->failed_rc, rc);
		atomic_fetch_add(&o->m->nfailed, 1);
	}
}

/* o's kept error, taken (reported once). */
int dsq_err_take(struct dsq_file *o)
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
			dsq_err_set(o, dsq_errno_rc(errno, SQLITE_IOERR_WRITE));
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
				dsq_err_set(o, dsq_errno_rc(c[i].res < 0 ? (int)-c[i].res : ENOSPC, SQLITE_IOERR_WRITE));
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
void dsq_run_end(struct dsq_mount *m, struct dsq_file *o, bool async)
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
		dsq_err_set(o, dsq_errno_rc(errno, SQLITE_IOERR_WRITE));
	m->run_len = 0;
}

/* Under m->run_lock: everything of the owner o on the device; the error
   of a run of o's that failed (it stays with o: see "Errors" above). */
int dsq_run_drain_locked(struct dsq_mount *m, struct dsq_file *o)
{
	runs_submit(m, o);   /* in flight while the last run is written */
	dsq_run_end(m, o, false);
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
	int rc = o ? dsq_run_drain_locked(m, o) : SQLITE_OK;
	pthread_mutex_unlock(&m->run_lock);
	return rc;
}

/* At the start of every method of p that SQLite checks but a continuing
   write: the volume's run written; p's own error (taken: reported once),
   else that of another file's run this drained. */
int dsq_flush_pending(struct dsq_file *p)
{
	int rc = dsq_run_drain(p->m), own = dsq_err_take(p);
	return own != SQLITE_OK ? own : rc != SQLITE_OK ? rc : dsq_run_failed(p->m);
}

/* The same for a call whose result SQLite ignores: errors stay for a
   call that reports them. */
void dsq_flush_keep(struct dsq_file *p)
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
void dsq_flush_for_read(struct dsq_file *p)
{
	struct dsq_file *o = atomic_load_explicit(&p->m->run_owner, memory_order_acquire);
	if (o && o->lk == p->lk)
		dsq_run_drain(p->m);
}

/* Under m->run_lock, p the owner (its run maybe empty) or none: append
   the write to p's run (true), or leave it to the caller. */
bool dsq_run_take(struct dsq_file *p, const void *buf, size_t amt, uint64_t off)
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

