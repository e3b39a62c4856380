/*
 * The extension entry points: ".load libdio_sqlite" in the sqlite3
 * shell, or sqlite3_load_extension(db, "libdio_sqlite", NULL, ...).
 * SQLite tries sqlite3_extension_init first, then sqlite3_diosqlite_init
 * (the name it derives from the file name).  SQLite's functions come from
 * the routine table of the SQLite that loads us, which may be one linked
 * into the program rather than the shared library.
 */
#include "dsq.h"
#include <sqlite3ext.h>
#include <stdlib.h>

int sqlite3_extension_init(sqlite3 *db, char **err, const sqlite3_api_routines *api);
int sqlite3_diosqlite_init(sqlite3 *db, char **err, const sqlite3_api_routines *api);

int sqlite3_extension_init(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
	(void)db;
	if (!dsq.vfs_find) {
		dsq.vfs_find = api->vfs_find;
		dsq.vfs_register = api->vfs_register;
		dsq.log = api->log;
		dsq.mprintf = api->mprintf;
		dsq.uri_parameter = api->uri_parameter;
	}
	if (dsq.vfs_find("libdio"))
		return SQLITE_OK_LOAD_PERMANENTLY;   /* loaded before */
	struct dsq_vfs *dv = calloc(1, sizeof(*dv));
	int rc = dv ? dsq_vfs_init(dv, "libdio", NULL) : SQLITE_NOMEM;
	if (rc == SQLITE_OK)
		rc = dsq.vfs_register(&dv->base, 0);
	if (rc != SQLITE_OK) {
		free(dv);
		if (err)
			*err = dsq.mprintf("libdio_sqlite: cannot register the VFS \"libdio\" (%d)", rc);
		return rc;
	}
	/* the VFS outlives the connection that loaded it (the shell's .open
	   closes that one): keep the library loaded */
	return SQLITE_OK_LOAD_PERMANENTLY;
}

int sqlite3_diosqlite_init(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
	return sqlite3_extension_init(db, err, api);
}
