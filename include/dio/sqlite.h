/*
 * libdio's SQLite VFS (libdio_sqlite): databases, their journals and WAL
 * files as files of a libdio volume.
 *
 * Loaded as an extension (".load libdio_sqlite" in the sqlite3 shell,
 * sqlite3_load_extension), it registers the VFS "libdio", which finds its
 * volume in the URI (file:NAME?vfs=libdio&volume=PATH) or in the
 * environment (DIO_SQLITE_VOLUME).  A program that mounts the volume
 * itself links -ldio_sqlite and calls dio_sqlite_register; see
 * dio_sqlite_register(3).
 */
#ifndef DIO_SQLITE_H
#define DIO_SQLITE_H

#include <dio/dio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Register a VFS named vfs_name (NULL: "libdio") that keeps its files on
 * vol, which stays the caller's (NULL: each database names its volume,
 * as for the extension); make_default: also make it SQLite's default.
 * Called before SQLite is initialized, it also gives SQLite page buffers
 * aligned for the zero-copy path.  Returns a SQLite result code.
 */
int dio_sqlite_register(struct dio_vol *vol, const char *vfs_name, int make_default);

#ifdef __cplusplus
}
#endif

#endif
