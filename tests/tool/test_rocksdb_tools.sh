#!/usr/bin/env bash
# RocksDB's stock tools on a volume, as a user runs them: db_bench,
# ldb and sst_dump of Debian's rocksdb-tools, with the FileSystem
# LD_PRELOADed and the volume named by --fs_uri=libdio://PATH.  Every
# benchmark verifies checksums, ldb's checks pass, the SST files verify,
# and the volume is clean afterwards; a volume another process holds,
# and a path that is no volume, are refused with messages that say so.
# Run with DIO, DIO_ROCKSDB_EXT (the .so), DB_BENCH, LDB and SST_DUMP.
. "$(dirname "$0")/lib.sh"
: "${DIO_ROCKSDB_EXT:?DIO_ROCKSDB_EXT must name librocksdb_libdio.so}"
# a sanitizer build of the FileSystem in the stock (uninstrumented)
# tools: its runtime must be loaded first, the tools' leaks are not ours
preload=$DIO_ROCKSDB_EXT
asan=$(ldd "$DIO_ROCKSDB_EXT" 2>/dev/null | awk '/libasan|libclang_rt.asan/ {print $3; exit}')
if [ -n "$asan" ]; then
  preload="$asan $preload"
  export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
fi
img=$dir/vol.img
uri=libdio://$img
tool() { run env LD_PRELOAD="$preload" "$@"; }

expect_rc 0 "$DIO" mkfs --size 512m "$img"

# small memtables and files: flushes and compactions happen
tool "$DB_BENCH" --fs_uri="$uri" --db=/db --num=20000 --verify_checksum=1 \
  --benchmarks=fillseq,fillrandom,overwrite,readrandom,seekrandom \
  --write_buffer_size=262144 --target_file_size_base=524288 --max_bytes_for_level_base=2097152 \
  --progress_reports=0 --stats_interval_seconds=0
[ "$rc" = 0 ] || fail "db_bench failed ($rc): $err"
for b in fillseq fillrandom overwrite readrandom seekrandom; do
  expect_in "$b " "$out" "db_bench ran $b"
done
expect_in "of 20000 found" "$out" "readrandom found keys"

# the same with direct reads and direct flushes and compactions
tool "$DB_BENCH" --fs_uri="$uri" --db=/direct --num=20000 --verify_checksum=1 \
  --benchmarks=fillrandom,readrandom --use_direct_reads=1 --use_direct_io_for_flush_and_compaction=1 \
  --write_buffer_size=262144 --target_file_size_base=524288 --progress_reports=0
[ "$rc" = 0 ] || fail "db_bench with direct I/O failed ($rc): $err"

expect_rc 0 "$DIO" fsck "$img"

# what db_bench left: read by ldb and sst_dump through the URI
tool "$LDB" --fs_uri="$uri" --db=/db checkconsistency
[ "$rc" = 0 ] || fail "ldb checkconsistency ($rc): $err"
expect_in "OK" "$out" "ldb checkconsistency"
tool "$LDB" --fs_uri="$uri" --db=/db put --hex 0x6b6579 0x76616c7565
[ "$rc" = 0 ] || fail "ldb put ($rc): $err"
tool "$LDB" --fs_uri="$uri" --db=/db get --hex 0x6b6579
expect_eq "$out" "0x76616C7565" "ldb get of what ldb put"
tool "$LDB" --fs_uri="$uri" --db=/db scan --max_keys=5
[ "$rc" = 0 ] || fail "ldb scan ($rc): $err"
expect_eq "$(printf '%s\n' "$out" | wc -l)" 5 "ldb scan's rows"
tool "$SST_DUMP" --fs_uri="$uri" --file=/db --command=verify
[ "$rc" = 0 ] || fail "sst_dump verify ($rc): $err"
expect_in "The file is ok" "$out" "sst_dump verifies the SST files"
case "$out" in *"is corrupted"*|*"Corruption"*) fail "sst_dump: $out" ;; esac

# the files are the volume's: dio(1) sees the DB's directory
expect_rc 0 "$DIO" ls "$img" db/
expect_in "db/CURRENT" "$out" "dio ls shows the DB's files"
expect_rc 0 "$DIO" fsck "$img"

# refusals say why
exec 9<"$img"
flock -x 9 &&
  tool "$DB_BENCH" --fs_uri="$uri" --db=/db --num=10 --benchmarks=readrandom
flock -u 9
exec 9<&-
[ "$rc" != 0 ] || fail "db_bench ran on a volume another process holds"
expect_in "mounted by another process" "$out$err" "a held volume's message"
head -c 1048576 /dev/zero >"$dir/not.img"
tool "$DB_BENCH" --fs_uri="libdio://$dir/not.img" --db=/db --num=10 --benchmarks=fillseq
[ "$rc" != 0 ] || fail "db_bench ran on a file that is no volume"
expect_in "not a usable libdio volume" "$out$err" "a non-volume's message"

finish
