/*
 * libdio's RocksDB file system (librocksdb_libdio): a RocksDB FileSystem
 * whose files are the files of a libdio volume.  C++17.
 *
 * Loaded into a program that links RocksDB (LD_PRELOAD, or linked), it
 * registers the URI scheme "libdio://PATH" in RocksDB's object registry,
 * so that FileSystem::CreateFromString, Env::CreateFromUri and the stock
 * tools' --fs_uri find it:
 *
 *     db_bench --fs_uri=libdio:///var/tmp/db.img --db=/db ...
 *
 * A program that wants the object directly calls dio_rocksdb_fs; see
 * dio_rocksdb_fs(3).
 */
#ifndef DIO_ROCKSDB_H
#define DIO_ROCKSDB_H

#include <dio/dio.h>
#include <memory>
#include <string>
#include <rocksdb/file_system.h>

/*
 * A FileSystem over the volume at path (an image file or a block
 * device).  The volume is mounted once per process: every FileSystem and
 * file of the same path shares that mount (opts, NULL for the defaults,
 * is used by the call that mounts it), and the last of them to go
 * unmounts it.  OK, or the mount's error (IOError, InvalidArgument for a
 * path that is not a volume, Busy for one another process has mounted).
 */
rocksdb::Status dio_rocksdb_fs(const std::string &path, const struct dio_mount_opts *opts,
                               std::shared_ptr<rocksdb::FileSystem> *result);

#endif
