/*
 * The files of the VFS: one libdio handle each, database locks between
 * the connections of the process, and small writes joined to the next.
 *
 * Locks.  A libdio volume belongs to one process, so SQLite's file locks
 * only ever arbitrate between connections of this process: the unix VFS's
 * in-process rules (its unixInodeInfo), without fcntl.  One dsq_lock per
 * file name holds the highest level any connection has and how many hold
 * SHARED or more; PENDING keeps new readers out while a writer waits for
 * the readers to leave.
 *
 * Joined writes.  SQLite writes a WAL frame as its 24-byte header and
 * then the page, and a rollback-journal record as a 4-byte page number,
 * the page and a 4-byte checksum: none of them block-aligned.  Written
 * one by one, each small piece would be a device write of its own.  So a
 * small write (up to 32 bytes) that continues the previous small one is
 * held in the handle, and goes down with the next write that continues
 * it, as one dio_pwritev (the header, the page: one request); anything
 * else the connection does first writes it.  SQLite cannot tell: it has
 * made no other call between the two, and a process killed in between
 * loses only a piece that nothing referred to yet (a frame without its
 * page is not a frame; recovery ignores it).
 */
#include "dsq.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define SMALL_WRITE 32

static struct dsq_file *F(sqlite3_file *f)
{
	return (struct dsq_file *)f;
}

/* Write what is held; 0 or a SQLite code. */
static int flush_pending(struct dsq_file *p)
{
	if (!p->pend_len)
		return SQLITE_OK;
	uint32_t n = p->pend_len;
	p->pend_len = 0;
	if (dio_pwrite(p->f, p->pend, n, (off_t)p->pend_off) != (ssize_t)n)
		return dsq_errno_rc(errno, SQLITE_IOERR_WRITE);
	return SQLITE_OK;
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
	free(l->name);
	free(l);
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
	if (out_flags)
		*out_flags = flags;
	p->base.pMethods = &dsq_io;
	return SQLITE_OK;
}

/* ---- locks ---------------------------------------------------------------------- */

static int x_lock(sqlite3_file *f, int level)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
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
	int rc = flush_pending(p);
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
	int rc = flush_pending(p);
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
	if (dio_close(p->f) && rc == SQLITE_OK)
		rc = SQLITE_IOERR_CLOSE;
	if (p->delete_on_close && dio_unlink(p->m->vol, p->name) && rc == SQLITE_OK)
		rc = SQLITE_IOERR_DELETE;
	pthread_mutex_lock(&dsq_lock);
	lock_put(p->m, p->lk);
	dsq_mount_put(p->m);
	pthread_mutex_unlock(&dsq_lock);
	free(p->name);
	p->base.pMethods = NULL;
	return rc;
}

static int x_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
	if (rc != SQLITE_OK)
		return rc;
	ssize_t n = dio_pread(p->f, buf, (size_t)amt, (off_t)off);
	if (n < 0)
		return dsq_errno_rc(errno, SQLITE_IOERR_READ);
	if (n < amt) {
		/* past the end: zeros, as SQLITE_IOERR_SHORT_READ requires */
		memset((char *)buf + n, 0, (size_t)(amt - n));
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

static int x_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct dsq_file *p = F(f);
	uint64_t o = (uint64_t)off;
	bool follows = p->pend_len && o == p->pend_off + p->pend_len;
	if (amt <= SMALL_WRITE && (!p->pend_len || follows) && p->pend_len + (uint32_t)amt <= sizeof(p->pend)) {
		if (!p->pend_len)
			p->pend_off = o;
		memcpy(p->pend + p->pend_len, buf, (size_t)amt);
		p->pend_len += (uint32_t)amt;
		return SQLITE_OK;
	}
	ssize_t n;
	size_t want = (size_t)amt;
	if (follows) {
		/* the held piece and this one: one request */
		struct iovec iov[2] = { { p->pend, p->pend_len }, { (void *)buf, (size_t)amt } };
		want += p->pend_len;
		n = dio_pwritev(p->f, iov, 2, (off_t)p->pend_off);
		p->pend_len = 0;
	} else {
		int rc = flush_pending(p);
		if (rc != SQLITE_OK)
			return rc;
		n = dio_pwrite(p->f, buf, want, (off_t)off);
	}
	if (n != (ssize_t)want)
		return dsq_errno_rc(n < 0 ? errno : ENOSPC, SQLITE_IOERR_WRITE);
	return SQLITE_OK;
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
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
	int rc = flush_pending(p);
	struct dio_stat st;
	if (rc != SQLITE_OK)
		return rc;
	if (dio_fstat(p->f, &st))
		return SQLITE_IOERR_FSTAT;
	*size = (sqlite3_int64)st.size;
	return SQLITE_OK;
}

static int x_file_control(sqlite3_file *f, int op, void *arg)
{
	struct dsq_file *p = F(f);
	int rc = flush_pending(p);
	if (rc != SQLITE_OK)
		return rc;
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
	int rc = flush_pending(F(f));
	return rc != SQLITE_OK ? rc : dsq_shm_lock(f, ofst, n, flags);
}

static void x_shm_barrier(sqlite3_file *f)
{
	flush_pending(F(f));
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
