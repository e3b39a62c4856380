/*
 * The files of the VFS: one libdio handle each, database locks between
 * the connections of the process, the database header and the journal
 * header's copies; the write runs every write goes through are run.c's.
 *
 * Locks.  A libdio volume belongs to one process, so SQLite's file locks
 * only ever arbitrate between connections of this process: the unix VFS's
 * in-process rules (its unixInodeInfo), without fcntl.  One dsq_lock per
 * file name holds the highest level any connection has and how many hold
 * SHARED or more; PENDING keeps new readers out while a writer waits for
 * the readers to leave.
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

#define MIN_SIZE(a, b) ((a) < (b) ? (a) : (b))

static pthread_mutex_t hdr_lock = PTHREAD_MUTEX_INITIALIZER;   /* dsq_lock.hdr */

static struct dsq_file *F(sqlite3_file *f)
{
	return (struct dsq_file *)f;
}

/* A write of o's failed, or went down only in part: the copies of its
   bytes this VFS keeps (the WAL's, the database header, the journal's
   first block) no longer equal the file's, and reads go to the device. */
void dsq_caches_drop(struct dsq_file *o)
{
	dsq_wc_cut(o->lk->wc, 0);
	if (o->main_db) {
		pthread_mutex_lock(&hdr_lock);
		o->lk->hdr_ok = false;
		pthread_mutex_unlock(&hdr_lock);
	}
	o->jhead_len = 0;
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
	/* a read-only mount: the file opens read-only, and SQLite is told so
	   (a write then fails with SQLITE_READONLY) */
	if (m->rdonly)
		flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
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
	int rc = level <= SQLITE_LOCK_SHARED ? dsq_flush_pending(p) : SQLITE_OK;
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
	dsq_flush_keep(p);   /* a failed drain waits for a call SQLite checks */
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
	int rc = dsq_flush_pending(p);
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
	dsq_flush_for_read(p);
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
		rc = dsq_run_drain_locked(m, owner);   /* another file's writes end here, on the device */
	int own = dsq_err_take(p);
	if (own != SQLITE_OK)
		rc = own;
	else if (rc == SQLITE_OK)
		rc = dsq_run_failed(m);   /* nothing goes down while a failure is unreported */
	bool held = false;
	if (rc == SQLITE_OK) {
		held = dsq_run_take(p, buf, (size_t)amt, o);
		if (!held && m->run_len) {
			dsq_run_end(m, p, true);          /* p's run ends, and goes in flight */
			held = dsq_run_take(p, buf, (size_t)amt, o);   /* this write starts the next */
		}
		/* a commit's end, or written in place after all before it */
		if ((commit || !held) && atomic_load_explicit(&m->run_owner, memory_order_relaxed) == p &&
		    dsq_run_drain_locked(m, p) != SQLITE_OK)
			rc = dsq_err_take(p);   /* reported here */
	}
	pthread_mutex_unlock(&m->run_lock);
	if (rc == SQLITE_OK && !held && dio_pwrite(p->f, buf, (size_t)amt, (off_t)off) != (ssize_t)amt)
		rc = dsq_errno_rc(errno, SQLITE_IOERR_WRITE);
	if (rc != SQLITE_OK)
		dsq_caches_drop(p);   /* they took this write's bytes, which are not the file's */
	return rc;
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct dsq_file *p = F(f);
	int rc = dsq_flush_pending(p);
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

/* dio_fdatasync whatever the flags, as SQLite's own unix VFS calls
   fdatasync on Linux: it makes the data and the size durable, all that
   SQLite reads back.  An fsync would also log the file's modification
   time, a journal commit more each sync for nothing SQLite uses.
   (SQLITE_SYNC_FULL asks nothing more of a device that libdio flushes.) */
static int x_sync(sqlite3_file *f, int flags)
{
	struct dsq_file *p = F(f);
	int rc = dsq_flush_pending(p);
	if (rc != SQLITE_OK)
		return rc;
	(void)flags;
	int r = dio_fdatasync(p->f);
	return r ? SQLITE_IOERR_FSYNC : SQLITE_OK;
}

static int x_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct dsq_file *p = F(f);
	struct dio_stat st;
	dsq_flush_for_read(p);
	if (dio_fstat(p->f, &st))
		return SQLITE_IOERR_FSTAT;
	*size = (sqlite3_int64)st.size;
	return SQLITE_OK;
}

static int x_file_control(sqlite3_file *f, int op, void *arg)
{
	struct dsq_file *p = F(f);
	dsq_flush_keep(p);   /* SQLite ignores what hints return */
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
		dsq_flush_keep(F(f));   /* SQLite ignores what an unlock returns */
		return dsq_shm_lock(f, ofst, n, flags);
	}
	int rc = dsq_flush_pending(F(f));
	return rc != SQLITE_OK ? rc : dsq_shm_lock(f, ofst, n, flags);
}

static void x_shm_barrier(sqlite3_file *f)
{
	dsq_flush_keep(F(f));   /* void: a failed run stays its file's error */
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
