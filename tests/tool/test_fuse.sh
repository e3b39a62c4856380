#!/usr/bin/env bash
# dio-fuse: a volume reached by ordinary tools.  cp of odd sizes in and
# out (sha256sum compared), mv, rm, truncate, fallocate (-p too),
# SEEK_DATA/SEEK_HOLE, ls -l sizes and block counts, df, the '/' in a
# name shown as %2F (and a name with another '%' refused), no
# subdirectories, fio --direct=1 --verify=crc32c through the mount,
# read-only mounts, a second mount of a held volume refused; then
# fusermount3 -u, dio fsck clean, and every file read back through the
# library (dio get).  Needs root, /dev/fuse and fusermount3: skipped
# (77) with a message otherwise.  Run with DIO, DIO_FUSE, SEEKHOLE.
. "$(dirname "$0")/lib.sh"
: "${DIO_FUSE:?DIO_FUSE must name the built dio-fuse}"
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "FUSE mounts need root here"
[ -c /dev/fuse ] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "no fusermount3 (Debian: fuse3)"

img=$dir/vol.img mnt=$dir/mnt host=$dir/host
mkdir -p "$mnt" "$host"
expect_rc 0 "$DIO" mkfs --size 256m "$img"
expect_rc 0 "$DIO" put "$img" "$DIO" "bin/dio"   # a name with '/', made by the library

pid=
mount_it() {   # mount_it [-o ro]: dio-fuse in the foreground, in the background
  "$DIO_FUSE" -f "$@" "$img" "$mnt" 2>"$dir/fuse.err" &
  pid=$!
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  fail "the mount did not appear: $(cat "$dir/fuse.err")"
  exit 1
}
unmount_it() {   # the daemon unmounts the volume and exits
  fusermount3 -u "$mnt" || fail "fusermount3 -u failed"
  wait "$pid" || fail "dio-fuse exited with $?: $(cat "$dir/fuse.err")"
  pid=
}
trap '[ -n "$pid" ] && { fusermount3 -u "$mnt"; wait "$pid"; }; forget_plogs; rm -rf "$dir"' EXIT

mount_it
# the name made by the library, '/' as %2F
expect_eq "$(ls "$mnt")" "bin%2Fdio" "the listing of a name with '/'"
cmp -s "$DIO" "$mnt/bin%2Fdio" || fail "bin/dio read through the mount differs"

# odd sizes in and out
sizes="0 1 511 4095 4097 65537 1048579 5255555"
for s in $sizes; do
  head -c "$s" /dev/urandom >"$host/f$s"
  cp "$host/f$s" "$mnt/f$s" || fail "cp in of $s bytes"
done
for s in $sizes; do
  cp "$mnt/f$s" "$host/back$s" || fail "cp out of $s bytes"
  expect_eq "$(sha256sum <"$host/back$s")" "$(sha256sum <"$host/f$s")" "the $s-byte file out again"
  expect_eq "$(stat -c %s "$mnt/f$s")" "$s" "ls -l size of f$s"
done
# block counts: what the library says is allocated, in 512-byte units
"$DIO" --json stat "$img" f1048579 >/dev/null 2>&1 && fail "the volume could be mounted twice"
expect_eq "$(stat -c %b "$mnt/f1048579")" "$(( (1048579 + 4095) / 4096 * 8 ))" "st_blocks of a 1 MiB + 3 file"

# names: create with %2F, refuse other % sequences, no subdirectories
echo hello >"$mnt/db%2Fa" || fail "create db%2Fa"
expect_eq "$(cat "$mnt/db%2Fa")" hello "db%2Fa read back"
echo x >"$mnt/100%25" || fail "create 100%25"
run touch "$mnt/bad%zz"
[ "$rc" != 0 ] || fail "a name with %zz was created"
expect_in "Invalid argument" "$err" "a name with %zz"
run mkdir "$mnt/sub"
[ "$rc" != 0 ] || fail "mkdir made a subdirectory"

# mv, rm, truncate, fallocate
mv "$mnt/f4097" "$mnt/moved" || fail "mv"
[ -e "$mnt/f4097" ] && fail "the old name is still there after mv"
cmp -s "$host/f4097" "$mnt/moved" || fail "the moved file's bytes"
mv -f "$mnt/f1" "$mnt/moved" || fail "mv over an existing file"
cmp -s "$host/f1" "$mnt/moved" || fail "mv over an existing file: the bytes"
rm "$mnt/f0" || fail "rm"
[ -e "$mnt/f0" ] && fail "rm left the file"
truncate -s 100000 "$mnt/f65537" || fail "truncate up"
cmp -s -n 65537 "$host/f65537" "$mnt/f65537" || fail "truncate up changed the bytes"
expect_eq "$(tail -c 34463 "$mnt/f65537" | tr -d '\0' | wc -c)" 0 "the grown part reads as zeros"
truncate -s 1000 "$mnt/f65537" || fail "truncate down"
cmp -s "$mnt/f65537" <(head -c 1000 "$host/f65537") || fail "truncate down: the bytes kept"
fallocate -l 1m "$mnt/prealloc" || fail "fallocate"
expect_eq "$(stat -c %s "$mnt/prealloc")" 1048576 "size after fallocate"
expect_eq "$(tr -d '\0' <"$mnt/prealloc" | wc -c)" 0 "preallocated blocks read as zeros"
before=$(stat -c %b "$mnt/f5255555")
fallocate -p -o 1048576 -l 1048576 "$mnt/f5255555" || fail "fallocate -p"
expect_eq "$(stat -c %b "$mnt/f5255555")" "$((before - 2048))" "blocks after punching 1 MiB"
expect_eq "$(stat -c %s "$mnt/f5255555")" 5255555 "a punch keeps the size"
expect_eq "$(dd if="$mnt/f5255555" bs=1M skip=1 count=1 2>/dev/null | tr -d '\0' | wc -c)" 0 "the punched range reads as zeros"
cmp -s -n 1048576 "$host/f5255555" "$mnt/f5255555" || fail "bytes before the punch"
cmp -s -i 2097152 "$host/f5255555" "$mnt/f5255555" || fail "bytes after the punch"
expect_eq "$("$SEEKHOLE" "$mnt/f5255555" 0)" "data 0 hole 1048576" "SEEK_DATA/SEEK_HOLE from 0"
expect_eq "$("$SEEKHOLE" "$mnt/f5255555" 1048576)" "data 2097152 hole 1048576" "SEEK_DATA/SEEK_HOLE in the hole"
# statfs
run df -B 4096 --output=size "$mnt"
[ "$(printf '%s\n' "$out" | tail -1 | tr -d ' ')" -gt 60000 ] || fail "df size: $out"

# fio, direct I/O with verification, two jobs in parallel
if command -v fio >/dev/null; then
  run fio --name=v --directory="$mnt" --direct=1 --rw=randwrite --bs=4k --size=16m --numjobs=2 \
    --verify=crc32c --ioengine=psync --group_reporting
  [ "$rc" = 0 ] || fail "fio through the mount: $out $err"
  expect_in "err= 0" "$out" "fio's verdict"
else
  fail "fio is not installed (Debian: fio)"
fi

# a held volume: a second mount is refused, saying why
run "$DIO_FUSE" -f "$img" "$dir"
[ "$rc" = 1 ] || fail "a second dio-fuse of a mounted volume: exit $rc"
expect_in "in use by another process" "$err" "a second dio-fuse of a mounted volume"

unmount_it
expect_rc 0 "$DIO" fsck "$img"
# every file back through the library
expect_rc 0 "$DIO" get "$img" f5255555 "$host/lib.out"
cmp -s <(head -c 1048576 "$host/f5255555") <(head -c 1048576 "$host/lib.out") || fail "library read: before the punch"
cmp -s -i 2097152 "$host/f5255555" "$host/lib.out" || fail "library read: after the punch"
for s in 511 4095 1048579; do
  expect_rc 0 "$DIO" get "$img" "f$s" "$host/lib$s"
  cmp -s "$host/f$s" "$host/lib$s" || fail "f$s read through the library"
done
expect_rc 0 "$DIO" cat "$img" "db/a"
expect_eq "$out" hello "db%2Fa is the library's db/a"
expect_rc 0 "$DIO" cat "$img" "100%"
expect_eq "$out" x "100%25 is the library's 100%"

# read-only: reads work, every change is refused
mount_it -o ro
cmp -s "$host/f511" "$mnt/f511" || fail "read through a read-only mount"
run sh -c "echo y > '$mnt/new'"
[ "$rc" != 0 ] || fail "a file was created on a read-only mount"
run rm "$mnt/f511"
[ "$rc" != 0 ] || fail "a file was removed on a read-only mount"
unmount_it
expect_rc 0 "$DIO" fsck "$img"
finish
