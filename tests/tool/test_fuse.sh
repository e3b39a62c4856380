#!/usr/bin/env bash
# dio-fuse: a volume reached by ordinary tools.  cp of odd sizes in and
# out (sha256sum compared), mv, rm, truncate, fallocate (-p too),
# SEEK_DATA/SEEK_HOLE, ls -l sizes and block counts, df, the '/' in a
# name as directories (mkdir, rmdir, cp -r and tar x of a tree, one
# spelling per name), fio --direct=1 --verify=crc32c through the mount,
# read-only mounts, a second mount of a held volume refused, a mount
# over its own image or folder refused; O_DSYNC writes and the atomic
# replace (fsync of the directory) survive kill -9 of dio-fuse with the
# process-death log gone; no .fuse_hidden files; space freed by rm is
# used without a sync; SIGTERM with a file open stops cleanly.  Then
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
# the name made by the library, '/' as a directory
expect_eq "$(ls "$mnt")" "bin" "the listing of a name with '/'"
expect_eq "$(ls "$mnt/bin")" "dio" "the directory a name's '/' makes"
[ -d "$mnt/bin" ] || fail "bin is not a directory"
cmp -s "$DIO" "$mnt/bin/dio" || fail "bin/dio read through the mount differs"

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

# names: directories, '%' as %25, any other spelling refused
mkdir "$mnt/db" || fail "mkdir"
echo hello >"$mnt/db/a" || fail "create db/a"
expect_eq "$(cat "$mnt/db/a")" hello "db/a read back"
echo x >"$mnt/100%25" || fail "create 100%25"
for bad in 'bad%zz' 'a%2fb' 'a%2Fb' '100%' 'x%2E'; do
  run touch "$mnt/$bad"
  [ "$rc" != 0 ] || fail "a name spelt $bad was created"
  expect_in "Invalid argument" "$err" "a name spelt $bad"
done
mkdir "$mnt/empty" || fail "mkdir of an empty directory"
run rmdir "$mnt/db"
expect_in "not empty" "$err" "rmdir of a directory that holds a file"
run mkdir "$mnt/db"
expect_in "File exists" "$err" "mkdir of an existing directory"

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
run df --output=iavail "$mnt"
[ "$(printf '%s\n' "$out" | tail -1 | tr -d ' ')" -gt 1000 ] || fail "df -i: no inodes free: $out"

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
run "$DIO_FUSE" -f "$img" "$host"
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
expect_eq "$out" hello "db/a on the mount is the library's db/a"
expect_rc 0 "$DIO" cat "$img" "100%"
expect_eq "$out" x "100%25 is the library's 100%"
expect_rc 0 "$DIO" stat "$img" "empty/"

# read-only: reads work, every change is refused
mount_it -o ro
cmp -s "$host/f511" "$mnt/f511" || fail "read through a read-only mount"
run sh -c "echo y > '$mnt/new'"
[ "$rc" != 0 ] || fail "a file was created on a read-only mount"
run rm "$mnt/f511"
[ "$rc" != 0 ] || fail "a file was removed on a read-only mount"
unmount_it
expect_rc 0 "$DIO" fsck "$img"
# ---- trees: cp -r and tar x of 200 files in 20 directories, diff -r
# after unmount and remount, fsck clean
src=$dir/tree
for d in $(seq 20); do
  sub=$src/d$d/s$((d % 3))
  mkdir -p "$sub"
  for f in $(seq 10); do head -c $((RANDOM * 3 + f)) /dev/urandom >"$sub/f$f"; done
done
mkdir -p "$src/emptydir"
mount_it
cp -r "$src" "$mnt/copied" || fail "cp -r of a tree"
mkdir "$mnt/untarred" && tar -C "$src" -cf - . | tar -C "$mnt/untarred" -xf - || fail "tar x of a tree"
unmount_it
expect_rc 0 "$DIO" fsck "$img"
mount_it
diff -r "$src" "$mnt/copied" >/dev/null || fail "cp -r: the tree read back differs"
diff -r "$src" "$mnt/untarred" >/dev/null || fail "tar x: the tree read back differs"
expect_eq "$(ls "$mnt/copied/d7")" "s1" "one level listed"
# a directory renamed: empty, in one rename; holding names, mv copies it
mkdir "$mnt/e1" && mv "$mnt/e1" "$mnt/e2" || fail "rename of an empty directory"
[ -d "$mnt/e2" ] && [ ! -e "$mnt/e1" ] || fail "the empty directory after its rename"
mv "$mnt/copied/d3" "$mnt/moved-d3" || fail "mv of a directory that holds files"
diff -r "$src/d3" "$mnt/moved-d3" >/dev/null || fail "the moved directory's files"
[ -e "$mnt/copied/d3" ] && fail "the old directory is still there after mv"
rm -r "$mnt/untarred" || fail "rm -r"
[ -e "$mnt/untarred" ] && fail "rm -r left the directory"
# a directory whose last file goes stays (rmdir removes it)
mkdir "$mnt/keep" && echo k >"$mnt/keep/only" && rm "$mnt/keep/only"
[ -d "$mnt/keep" ] || fail "a directory vanished with its last file"
rmdir "$mnt/keep" || fail "rmdir of an emptied directory"

# ---- times: touch -d and cp -p set them, and they stay after a remount
touch -d '2001-02-03 04:05:06' "$mnt/copied/d1/s1/f1" || fail "touch -d"
mkdir "$mnt/stamped" && touch -d '2002-03-04 05:06:07' "$mnt/stamped" || fail "touch -d of a directory"
touch -d '2003-04-05 06:07:08' "$src/d2/s2/f2" && cp -p "$src/d2/s2/f2" "$mnt/kept" || fail "cp -p"
echo more >>"$mnt/copied/d4/s1/f4" || fail "append"
unmount_it
mount_it
expect_eq "$(stat -c %y "$mnt/copied/d1/s1/f1")" "2001-02-03 04:05:06.000000000 $(date -d '2001-02-03 04:05:06' +%z)" "touch -d after a remount"
expect_eq "$(stat -c %Y "$mnt/stamped")" "$(date -d '2002-03-04 05:06:07' +%s)" "a directory's time after a remount"
expect_eq "$(stat -c %Y "$mnt/kept")" "$(stat -c %Y "$src/d2/s2/f2")" "cp -p's time after a remount"
[ $(( $(date +%s) - $(stat -c %Y "$mnt/copied/d4/s1/f4") )) -lt 60 ] || fail "an appended file's time is not now"

# ---- no .fuse_hidden files: an open file removed or renamed over
exec 3<"$mnt/moved-d3/s0/f1"
rm "$mnt/moved-d3/s0/f1" || fail "rm of an open file"
exec 4<"$mnt/moved-d3/s0/f2"
mv "$mnt/moved-d3/s0/f3" "$mnt/moved-d3/s0/f2" || fail "mv over an open file"
ls -a "$mnt/moved-d3/s0" | grep -q fuse_hidden && fail "a .fuse_hidden file: $(ls -a "$mnt/moved-d3/s0")"
# (read with dd: FUSE's path-based library cannot fstat an unlinked file)
expect_eq "$(dd bs=64k status=none <&3 | wc -c)" "$(stat -c %s "$src/d3/s0/f1")" "an unlinked open file still reads"
exec 3<&- 4<&-

# ---- space freed by rm is used without a sync
run df -B 4096 --output=avail "$mnt"
avail=$(printf '%s\n' "$out" | tail -1 | tr -d ' ')
head -c $(( (avail - 64) * 4096 )) /dev/urandom >"$dir/fill" 2>/dev/null
cp "$dir/fill" "$mnt/fill" || fail "filling the volume"
rm "$mnt/fill"
cp "$dir/fill" "$mnt/fill2" || fail "a copy after rm, no sync in between (ENOSPC?)"
cmp -s "$dir/fill" "$mnt/fill2" || fail "the copy after rm differs"
rm -f "$mnt/fill2" "$dir/fill"

# ---- SIGTERM with a file open: the volume is unmounted clean, exit 0
exec 3<"$mnt/bin/dio"
kill -TERM "$pid"
wait "$pid"; got=$?
exec 3<&-
pid=
expect_eq "$got" 0 "dio-fuse's exit status after SIGTERM with a file open"
for _ in $(seq 50); do mountpoint -q "$mnt" || break; sleep 0.1; done
mountpoint -q "$mnt" && { fusermount3 -u "$mnt" || umount -l "$mnt"; }
run "$DIO" --json info "$img"
expect_eq "$(jqo .pending_log_records)" 0 "records left in the process-death log after SIGTERM"
expect_rc 0 "$DIO" fsck "$img"

# ---- kill -9 of dio-fuse and the process-death log gone (a reboot):
# what O_DSYNC wrote, and the atomic replace with the directory synced
kill9_reboot() {
  kill -KILL "$pid"; wait "$pid" 2>/dev/null; pid=
  fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
  forget_plogs
}
mount_it
head -c 12288 /dev/urandom >"$dir/ds"
dd if="$dir/ds" of="$mnt/dsync" bs=4096 oflag=dsync status=none || fail "dd oflag=dsync"
kill9_reboot
expect_rc 0 "$DIO" get "$img" dsync "$dir/ds.back"
cmp -s "$dir/ds" "$dir/ds.back" || fail "an O_DSYNC write lost by kill -9 and a reboot"
mount_it
printf 'new\n' >"$mnt/u.tmp"
python3 - "$mnt" <<'PY' || fail "write, fsync, rename, fsync the directory"
import os, sys
d = sys.argv[1]
fd = os.open(d + "/u.tmp", os.O_WRONLY)
os.fsync(fd); os.close(fd)
os.rename(d + "/u.tmp", d + "/u")
dfd = os.open(d, os.O_RDONLY); os.fsync(dfd); os.close(dfd)
PY
kill9_reboot
expect_rc 0 "$DIO" cat "$img" u
expect_eq "$out" new "the replaced file after kill -9 and a reboot"
expect_rc 1 "$DIO" stat "$img" u.tmp
expect_rc 0 "$DIO" fsck "$img"

# ---- starting: errors before the command returns
expect_rc 2 "$DIO_FUSE" --bogus "$img" "$mnt"
cp "$img" "$dir/img.before"
for over in "$img" "$dir"; do
  start=$(date +%s%N)
  run timeout 10 "$DIO_FUSE" "$img" "$over"
  expect_eq "$rc" 1 "dio-fuse over $over"
  expect_in "mount it elsewhere" "$err" "dio-fuse over $over"
  [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 1000 ] || fail "dio-fuse over $over took a second or more"
  mountpoint -q "$over" && { fail "$over was mounted"; fusermount3 -u "$over"; }
done
cmp -s "$img" "$dir/img.before" || fail "a refused mount changed the image"
rm -f "$dir/img.before"
head -c 65536 /dev/zero >"$dir/notvol"
run "$DIO_FUSE" "$dir/notvol" "$mnt"
expect_eq "$rc" 1 "dio-fuse of a file that is not a volume"
expect_in "not a libdio volume" "$err" "dio-fuse of a file that is not a volume"
finish
