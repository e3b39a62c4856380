/*
 * Temporary files on the default VFS: every method passes the call to the
 * default VFS's file, which lives right after ours in the same memory
 * (szOsFile counts both).
 */
#include "dsq.h"

static sqlite3_file *R(sqlite3_file *f)
{
	return ((struct dsq_file *)f)->real;
}

static int t_close(sqlite3_file *f)
{
	int rc = R(f)->pMethods->xClose(R(f));
	f->pMethods = NULL;
	return rc;
}

static int t_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) { return R(f)->pMethods->xRead(R(f), b, n, o); }
static int t_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) { return R(f)->pMethods->xWrite(R(f), b, n, o); }
static int t_truncate(sqlite3_file *f, sqlite3_int64 s) { return R(f)->pMethods->xTruncate(R(f), s); }
static int t_sync(sqlite3_file *f, int fl) { return R(f)->pMethods->xSync(R(f), fl); }
static int t_file_size(sqlite3_file *f, sqlite3_int64 *s) { return R(f)->pMethods->xFileSize(R(f), s); }
static int t_lock(sqlite3_file *f, int l) { return R(f)->pMethods->xLock(R(f), l); }
static int t_unlock(sqlite3_file *f, int l) { return R(f)->pMethods->xUnlock(R(f), l); }
static int t_check_reserved(sqlite3_file *f, int *r) { return R(f)->pMethods->xCheckReservedLock(R(f), r); }
static int t_file_control(sqlite3_file *f, int op, void *a) { return R(f)->pMethods->xFileControl(R(f), op, a); }
static int t_sector_size(sqlite3_file *f) { return R(f)->pMethods->xSectorSize(R(f)); }
static int t_device_characteristics(sqlite3_file *f) { return R(f)->pMethods->xDeviceCharacteristics(R(f)); }

/* Temporary files are never in WAL mode: no shared-memory methods. */
const sqlite3_io_methods dsq_tmp_io = {
	.iVersion = 1,
	.xClose = t_close,
	.xRead = t_read,
	.xWrite = t_write,
	.xTruncate = t_truncate,
	.xSync = t_sync,
	.xFileSize = t_file_size,
	.xLock = t_lock,
	.xUnlock = t_unlock,
	.xCheckReservedLock = t_check_reserved,
	.xFileControl = t_file_control,
	.xSectorSize = t_sector_size,
	.xDeviceCharacteristics = t_device_characteristics,
};
