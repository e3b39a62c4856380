#!/usr/bin/env bash
# dio(1) end to end on NBD exports named by URI (nbdkit on a Unix socket):
# mkfs, put, get, ls, fsck, info on a memory export and on a file
# export; the file export's bytes survive nbdkit's restart; a URI with
# another backend is refused with a message; dio-fuse and the stock
# sqlite3 shell (volume= URL-encoded) on the export; a server that is
# not there fails at once.  Run with NBDKIT=<nbdkit>; 77 (skipped) without it.
. "$(dirname "$0")/lib.sh"
nbdkit=${NBDKIT:-$(command -v nbdkit || true)}
if [ -z "$nbdkit" ] || [ ! -x "$nbdkit" ]; then
  echo "SKIP: no nbdkit (Debian: apt-get install nbdkit)"
  exit 77
fi
sock=$dir/nbd.sock
uri="nbd+unix:///?socket=$sock"
pid=
serve() {   # serve PLUGIN ARGS...: nbdkit in the background on $sock
  rm -f "$sock"
  "$nbdkit" -f -U "$sock" "$@" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && return; sleep 0.05; done
  fail "nbdkit $* did not start"
}
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }
trap 'stop; forget_plogs; rm -rf "$dir"' EXIT

round_trip() {   # round_trip WHAT: put/get/ls/fsck on $uri
  expect_rc 0 "$DIO" mkfs "$uri"
  expect_in "libdio volume" "$out" "$1: mkfs"
  head -c 5000001 /dev/urandom >"$dir/in"
  expect_rc 0 "$DIO" -q put "$uri" "$dir/in" data
  expect_rc 0 "$DIO" -q get "$uri" data "$dir/out"
  cmp -s "$dir/in" "$dir/out" || fail "$1: get differs from put"
  run "$DIO" --json stat "$uri" data
  expect_eq "$(jqo .size)" 5000001 "$1: size"
  expect_rc 0 "$DIO" ls "$uri"
  expect_eq "$out" data "$1: ls"
  expect_rc 0 "$DIO" fsck "$uri"
  expect_in clean "$out" "$1: fsck"
  run "$DIO" --json info "$uri"
  expect_eq "$(jqo .backend)" nbd "$1: backend"
  expect_eq "$(jqo .device.remote_target)" true "$1: remote target"
}

# a memory export
serve memory 128M
round_trip memory
stop

# a file export: the volume lives in the file, across the server's restart
truncate -s 128M "$dir/exp.img"
serve file "$dir/exp.img"
round_trip file
stop
serve file "$dir/exp.img"
expect_rc 0 "$DIO" -q get "$uri" data "$dir/out2"
cmp -s "$dir/in" "$dir/out2" || fail "the file export lost the data across a restart"
# the URI picks the backend: naming another is refused, with the reason
expect_rc 1 "$DIO" --backend uring ls "$uri"
expect_in "served by backend nbd, not uring" "$err" "--backend uring on an NBD URI"
stop

# dio-fuse on the export (where FUSE works: root, /dev/fuse)
if [ -n "${DIO_FUSE:-}" ] && [ -w /dev/fuse ] && command -v fusermount3 >/dev/null; then
  serve file "$dir/exp.img"
  mkdir -p "$dir/mnt"
  if "$DIO_FUSE" "$uri" "$dir/mnt"; then
    mkdir "$dir/mnt/sub" && cp "$dir/in" "$dir/mnt/sub/copy" || fail "cp through dio-fuse on NBD"
    fusermount3 -u "$dir/mnt" || fail "fusermount3 -u"
    for _ in $(seq 100); do "$DIO" -q ls "$uri" >/dev/null 2>&1 && break; sleep 0.05; done
    expect_rc 0 "$DIO" -q get "$uri" sub/copy "$dir/out3"
    cmp -s "$dir/in" "$dir/out3" || fail "the file copied through dio-fuse on NBD differs"
    expect_rc 0 "$DIO" fsck "$uri"
  else
    fail "dio-fuse did not mount $uri"
  fi
  stop
else
  echo "dio-fuse part not run: no dio-fuse build, /dev/fuse or fusermount3"
fi

# SQLite through the stock shell, the export URL-encoded in volume=
if [ -n "${SQLITE3:-}" ] && [ -n "${DIO_SQLITE_EXT:-}" ]; then
  # a sanitized build's VFS needs its runtime first in the stock shell
  asan=$(ldd "$DIO_SQLITE_EXT" 2>/dev/null | awk '/libasan|libclang_rt.asan/ {print $3; exit}')
  sqlite() {
    if [ -n "$asan" ]; then
      LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0 "$SQLITE3" "$@"
    else
      "$SQLITE3" "$@"
    fi
  }
  serve file "$dir/exp.img"
  enc=$(jq -rn --arg u "$uri" '$u | @uri')
  open_cmd=".open file:app.db?vfs=libdio&volume=$enc"
  printf 'create table t(a); insert into t values (1), (2), (39);\n' |
    sqlite -cmd ".load $DIO_SQLITE_EXT" -cmd "$open_cmd" >/dev/null 2>"$dir/sql.err" ||
    fail "sqlite3 on NBD: $(cat "$dir/sql.err")"
  stop
  serve file "$dir/exp.img"   # a server restarted: what SQLite committed is there
  got=$(printf 'select sum(a) from t;\n' | sqlite -cmd ".load $DIO_SQLITE_EXT" -cmd "$open_cmd" 2>&1)
  expect_eq "$got" 42 "SQLite's rows on NBD after a server restart"
  expect_rc 0 "$DIO" ls "$uri" app.db
  stop
else
  echo "SQLite part not run: no sqlite3 shell or VFS build"
fi

# nobody serves the socket: a prompt failure, not a hang
rm -f "$sock"
start=$(date +%s)
run timeout 20 "$DIO" ls "$uri"
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "ls of an unserved URI: exit $rc"
[ $(( $(date +%s) - start )) -lt 10 ] || fail "ls of an unserved URI took too long"
finish
