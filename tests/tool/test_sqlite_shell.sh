#!/usr/bin/env bash
# The SQLite VFS as a user reaches it: the stock sqlite3 shell loads
# <builddir>/ext/sqlite/libdio_sqlite by its file name, opens
# file:NAME?vfs=libdio&volume=PATH (or finds the volume in
# DIO_SQLITE_VOLUME), in rollback and WAL mode; the database file copied
# out with dio(1) is an ordinary SQLite database; a volume another
# process holds is refused with a message that says so.
# Run with DIO, SQLITE3 (the shell) and DIO_SQLITE_EXT (the .so).
. "$(dirname "$0")/lib.sh"
: "${SQLITE3:?SQLITE3 must name the sqlite3 shell}"
ext=${DIO_SQLITE_EXT%.so}   # as a user types it: SQLite adds the suffix
# a sanitizer build of the VFS in the stock (uninstrumented) shell: its
# runtime must be loaded first, and the shell's own leaks are not ours
asan=$(ldd "$DIO_SQLITE_EXT" 2>/dev/null | awk '/libasan|libclang_rt.asan/ {print $3; exit}')
if [ -n "$asan" ]; then
  export LD_PRELOAD="$asan${LD_PRELOAD:+ $LD_PRELOAD}" ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
fi
img=$dir/vol.img
sql() { run "$SQLITE3" -batch -bail :memory: ".load $ext" "$@"; }

expect_rc 0 "$DIO" mkfs --size 64m "$img"

for mode in delete wal; do
  db="file:$mode.db?vfs=libdio&volume=$img"
  sql ".open $db" "PRAGMA journal_mode=$mode;" \
      "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);" \
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000)
       INSERT INTO t(v) SELECT printf('row %d %s', i, hex(randomblob(1 + i % 97))) FROM c;" \
      "CREATE INDEX tv ON t(v);" \
      "UPDATE t SET v = v || '!' WHERE k % 7 = 0;" \
      "DELETE FROM t WHERE k % 11 = 0;" \
      "SELECT count(*) FROM t;" "PRAGMA integrity_check;"
  [ "$rc" = 0 ] || fail "$mode: the shell failed: $err"
  expect_in "$mode" "$out" "journal_mode=$mode"
  expect_in "4546" "$out" "$mode: rows after the delete"
  expect_in "ok" "$out" "$mode: integrity_check"
  # reopened: the same rows, through the URI
  sql ".open $db" "SELECT count(*), sum(length(v)) FROM t WHERE v LIKE '%!';"
  expect_eq "$out" "$(sqlite3 :memory: "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000)
    SELECT count(*), sum(length(printf('row %d %s', i, hex(zeroblob(1 + i % 97)))) + 1) FROM c WHERE i % 7 = 0 AND i % 11 != 0;")" \
    "$mode: the updated rows after reopening"
done

# the journal and the WAL were files of the volume, and are gone after a
# clean close; the database is SQLite's own format, byte for byte
expect_rc 0 "$DIO" ls "$img"
expect_eq "$(printf '%s\n' "$out" | sort | tr '\n' ' ')" "delete.db wal.db " "the volume's files after closing"
expect_rc 0 "$DIO" get "$img" wal.db "$dir/host.db"
expect_eq "$("$SQLITE3" "$dir/host.db" "SELECT count(*) FROM t; PRAGMA integrity_check;" | tr '\n' ' ')" "4546 ok " \
  "the database copied out, opened by stock SQLite"
expect_rc 0 "$DIO" fsck "$img"

# no volume= in the URI: DIO_SQLITE_VOLUME names it
run env DIO_SQLITE_VOLUME="$img" "$SQLITE3" -batch :memory: ".load $ext" ".open file:delete.db?vfs=libdio" \
  "SELECT count(*) FROM t;"
expect_eq "$out" 4546 "the volume from DIO_SQLITE_VOLUME"
# neither: the open fails, naming the problem
run env -u DIO_SQLITE_VOLUME "$SQLITE3" -batch :memory: ".load $ext" ".open file:delete.db?vfs=libdio" \
  "SELECT count(*) FROM t;"
[ "$rc" != 0 ] || fail "a database with no volume opened"

# another process holds the volume: SQLITE_CANTOPEN, with the reason
mkfifo "$dir/in"
"$SQLITE3" -batch :memory: <"$dir/in" >"$dir/holder.out" 2>&1 &
holder=$!
exec 3>"$dir/in"
printf '%s\n' ".load $ext" ".open file:wal.db?vfs=libdio&volume=$img" "SELECT 'holding', count(*) FROM t;" >&3
for _ in $(seq 100); do grep -q holding "$dir/holder.out" && break; sleep 0.1; done
expect_in "holding" "$(cat "$dir/holder.out")" "the holding shell opened the database"
# (".log stderr": the shell shows SQLite's error log, where the VFS says why)
run "$SQLITE3" -batch -bail :memory: ".log stderr" ".load $ext" ".open file:delete.db?vfs=libdio&volume=$img" \
  "SELECT count(*) FROM t;"
[ "$rc" != 0 ] || fail "a volume held by another process opened"
expect_in "unable to open" "$err" "the error of an open of a held volume"
expect_in "mounted by another process" "$out$err" "the reason in SQLite's log"
exec 3>&-
wait "$holder" || fail "the holding shell failed: $(cat "$dir/holder.out")"
# released: it opens again
sql ".open file:delete.db?vfs=libdio&volume=$img" "SELECT count(*) FROM t;"
expect_eq "$out" 4546 "the volume after the other process closed it"
expect_rc 0 "$DIO" fsck "$img"
# a read-only image, opened by a user without write access: with
# mode=ro, and without (the volume is mounted read-only, as SQLite's own
# VFS opens such a file read-only); a write is refused, nothing changes
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  ro=$dir/ro
  mkdir "$ro" && chmod 755 "$dir" "$ro"
  cp "$img" "$ro/vol.img" && chmod 444 "$ro/vol.img"
  cp "$img" "$dir/ro-before.img"
  asnobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
  # (a WAL database, as with SQLite's own VFS on read-only storage, with
  # immutable=1: its -wal and -shm cannot be made)
  for uri in "file:delete.db?vfs=libdio&volume=$ro/vol.img&mode=ro" "file:delete.db?vfs=libdio&volume=$ro/vol.img" \
             "file:wal.db?vfs=libdio&volume=$ro/vol.img&immutable=1"; do
    run asnobody "$SQLITE3" -batch :memory: ".log stderr" ".load $ext" ".open $uri" "SELECT count(*) FROM t;"
    expect_eq "$out" 4546 "$uri opened by a user who cannot write the image (stderr: $err)"
  done
  run asnobody "$SQLITE3" -batch :memory: ".load $ext" ".open file:delete.db?vfs=libdio&volume=$ro/vol.img" \
    "INSERT INTO t(v) VALUES ('x');"
  [ "$rc" != 0 ] || fail "a write on a read-only volume succeeded"
  expect_in "readonly" "$err" "a write on a read-only volume"
  cmp -s "$ro/vol.img" "$dir/ro-before.img" || fail "the read-only image changed"
  rm -f "$dir/ro-before.img"
else
  echo "note: the read-only open as another user needs root and setpriv; not checked here"
fi
finish
