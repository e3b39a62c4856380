#!/usr/bin/env bash
# dio mkfs/info/df/ls/stat/rm/mv/truncate/cat: happy paths, --json fields,
# exit codes and error lines, options anywhere, read-only commands leave
# the image untouched, and a volume in use is reported, not waited for.
. "$(dirname "$0")/lib.sh"
img=$dir/v.img

# ---- mkfs
expect_rc 0 "$DIO" mkfs --size 64m --label tool-test "$img"
expect_in "label tool-test" "$out" "mkfs summary"
expect_rc 1 "$DIO" mkfs --size 64m "$img"
expect_in "dio: $img: File exists" "$err" "mkfs over a volume without --force"
expect_rc 0 "$DIO" mkfs --size 64m --label tool-test --force "$img"
expect_rc 2 "$DIO" mkfs "$dir/missing.img"
expect_in "usage: dio mkfs" "$err" "mkfs of a missing path without --size"
expect_rc 2 "$DIO" mkfs --size 12q "$dir/x.img"
expect_in "bad size" "$err" "bad size suffix"
expect_rc 2 "$DIO" mkfs --size 64m --block-size 3000 "$dir/x.img"
expect_rc 2 "$DIO" mkfs --size 64m --label "$(printf 'L%.0s' $(seq 70))" "$dir/x.img"
[ -e "$dir/x.img" ] && fail "a refused mkfs left $dir/x.img behind"
expect_rc 0 "$DIO" --json mkfs --size 2m --block-size 4k "$dir/small.img"   # size suffixes
expect_eq "$(jqo .size)" 2097152 "mkfs --size 2m"
expect_eq "$(jqo .block_size)" 4096 "mkfs --block-size 4k"

# ---- info and df, text and JSON
expect_rc 0 "$DIO" info "$img"
expect_in "tool-test" "$out" "info shows the label"
expect_in "dio_info" "$out" "info shows dio_info"
expect_rc 0 "$DIO" --json info "$img"
expect_eq "$(jqo .label)" tool-test "info .label"
expect_eq "$(jqo .format_version)" 1 "info .format_version"
expect_eq "$(jqo .block_size)" 4096 "info .block_size"
expect_eq "$(jqo .device.size)" $((64 << 20)) "info .device.size"
expect_eq "$(jqo '.dio_info.offset_align > 0 and .dio_info.mem_align > 0')" true "info .dio_info"
expect_eq "$(jqo '.journal_bytes > 0 and .journal_used_bytes <= .journal_bytes')" true "info journal"
expect_eq "$(jqo '.nfiles')" 0 "info .nfiles"
expect_rc 0 "$DIO" info "$img" --json   # global option after the command
expect_eq "$(jqo .label)" tool-test "--json after the command"

# ---- files in, listed, inspected
printf 'hello\n' >"$dir/h1"
head -c 10000 /dev/urandom >"$dir/h2"
expect_rc 0 "$DIO" -q put "$img" "$dir/h1" dir/one
expect_rc 0 "$DIO" -q put "$img" "$dir/h2" dir/two
expect_rc 0 "$DIO" -q put "$img" "$dir/h1" other
expect_rc 0 "$DIO" -q put "$img" "$dir/h1" dir/sub/three
expect_rc 0 "$DIO" -q put "$img" "$dir/h1" dir2
expect_rc 0 "$DIO" ls "$img"
expect_eq "$out" "$(printf 'dir/\ndir2\nother')" "ls: one level, in name order"
expect_rc 0 "$DIO" ls "$img" dir/
expect_eq "$out" "$(printf 'dir/one\ndir/sub/\ndir/two')" "ls DIR/: one level"
expect_rc 0 "$DIO" ls -R "$img"
expect_eq "$out" "$(printf 'dir/one\ndir/sub/three\ndir/two\ndir2\nother')" "ls -R: every name"
expect_rc 0 "$DIO" ls "$img" dir
expect_eq "$out" "$(printf 'dir/one\ndir/sub/three\ndir/two\ndir2')" "ls PREFIX: every name starting with it"
expect_rc 0 "$DIO" --json ls "$img" dir/
expect_eq "$(jqo '.files[1].name')" dir/sub/ "ls --json: a directory's name"
expect_eq "$(jqo '.files[1].directory')" true "ls --json: a directory"
expect_rc 0 "$DIO" rm "$img" dir/sub/three dir2
expect_rc 0 "$DIO" ls "$img" -l dir/two   # option after the operands
expect_in "10000" "$out" "ls -l size"
expect_rc 0 "$DIO" --json ls -R "$img"
expect_eq "$(jqo '.files | length')" 3 "ls --json count"
expect_eq "$(jqo '.files[1].name')" dir/two "ls --json name"
expect_eq "$(jqo '.files[1].size')" 10000 "ls --json size"
expect_eq "$(jqo '.files[1].allocated')" 12288 "ls --json allocated"
expect_eq "$(jqo '.files[1].extents')" 1 "ls --json extents"
expect_eq "$(jqo '.files[1].id > 0')" true "ls --json id"
expect_rc 0 "$DIO" --json df "$img"
expect_eq "$(jqo '.used_bytes + .free_bytes == .total_bytes')" true "df adds up"
expect_eq "$(jqo '.files_free > 1000')" true "df: files the volume can still take"
expect_eq "$(jqo '.used_blocks')" 5 "df used blocks (1 + 3 + 1)"
expect_eq "$(jqo '.nfiles')" 3 "df nfiles"
expect_rc 0 "$DIO" df "$img"
expect_in "Avail" "$out" "df text"

expect_rc 0 "$DIO" stat "$img" dir/two
expect_in "size        10000" "$out" "stat text"
expect_rc 0 "$DIO" --json stat -v "$img" dir/two
expect_eq "$(jqo '.size')" 10000 "stat .size"
expect_eq "$(jqo '.map | length')" 1 "stat -v map"
expect_eq "$(jqo '.map[0].offset')" 0 "map offset"
expect_eq "$(jqo '.map[0].length')" 12288 "map length"
expect_eq "$(jqo '.map[0].unwritten')" false "map state"
expect_eq "$(jqo '.map[0].block > 0')" true "map device block"
expect_rc 0 "$DIO" --json stat "$img" dir/two
expect_eq "$(jqo 'has("map")')" false "stat without -v has no map"
expect_rc 1 "$DIO" stat "$img" nope
expect_eq "$err" "dio: $img: nope: No such file or directory" "error line format"
expect_rc 2 "$DIO" stat "$img"
expect_in "usage: dio stat" "$err" "missing NAME is a usage error"

# ---- cat, mv, truncate, rm
expect_rc 0 "$DIO" cat "$img" dir/one other
expect_eq "$out" "$(printf 'hello\nhello')" "cat of two files"
expect_rc 1 "$DIO" cat "$img" nope
expect_rc 0 "$DIO" mv "$img" other moved
expect_rc 0 "$DIO" cat "$img" moved
expect_eq "$out" hello "mv keeps the bytes"
expect_rc 1 "$DIO" mv "$img" other again
expect_rc 0 "$DIO" mv "$img" moved dir/one   # replaces
expect_rc 0 "$DIO" ls -R "$img"
expect_eq "$out" "$(printf 'dir/one\ndir/two')" "mv over an existing name"
expect_rc 0 "$DIO" truncate "$img" dir/two 3
"$DIO" cat "$img" dir/two >"$dir/t3" || fail "cat after truncate"
head -c 3 "$dir/h2" | cmp -s - "$dir/t3" || fail "truncate keeps the first bytes only"
expect_rc 0 "$DIO" truncate "$img" new 1m
expect_rc 0 "$DIO" --json stat "$img" new
expect_eq "$(jqo .size)" 1048576 "truncate creates and sizes"
expect_eq "$(jqo .allocated)" 0 "a truncated-up file holds no blocks"
expect_rc 2 "$DIO" truncate "$img" new 1x
expect_rc 1 "$DIO" rm "$img" new nope dir/two
expect_in "nope: No such file or directory" "$err" "rm of a missing name"
expect_rc 0 "$DIO" ls -R "$img"
expect_eq "$out" "dir/one" "rm removed the others anyway"

# ---- usage
expect_rc 2 "$DIO"
expect_rc 2 "$DIO" frobnicate "$img"
expect_rc 2 "$DIO" ls --frob "$img"
expect_in "usage: dio ls" "$err" "unknown option gives the command's usage"
expect_rc 0 "$DIO" ls --help
expect_in "usage: dio ls" "$out" "--help"

# ---- read-only commands do not write the image
before=$(md5sum <"$img")
for c in "info $img" "df $img" "ls -l $img" "stat -v $img dir/one" "cat $img dir/one" "get $img dir/one $dir/o" \
         "dump $img" "fsck $img" "io $img dir/one -c stat -c 'pread 0 1'"; do
  eval "run \"\$DIO\" $c"
  [ "$rc" = 0 ] || fail "$c: exit $rc ($err)"
done
expect_eq "$(md5sum <"$img")" "$before" "read-only commands left the image as it was"

# ---- a volume in use is reported at once
mkfifo "$dir/fifo"
"$DIO" -q put "$img" - held <"$dir/fifo" &
holder=$!
exec 3>"$dir/fifo"   # the put now waits for input, volume mounted
for i in $(seq 50); do "$DIO" ls "$img" >/dev/null 2>&1 || break; sleep 0.1; done
start=$(date +%s%N)
expect_rc 1 "$DIO" ls "$img"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_in "Device or resource busy" "$err" "ls of a volume in use"
[ "$ms" -lt 3000 ] || fail "reporting EBUSY took $ms ms"
expect_rc 8 "$DIO" fsck "$img"
expect_in "busy" "$err" "fsck of a volume in use"
expect_rc 1 "$DIO" dump "$img"
expect_rc 1 "$DIO" mkfs --force --size 64m "$img"
expect_in "mounted by another process" "$err" "mkfs --force of a volume in use"
exec 3>&-
wait $holder || fail "the holding put failed"
expect_rc 0 "$DIO" ls "$img" held
expect_eq "$out" held "the holder's put completed"

# ---- a directory named as the volume: said so
mkdir -p "$dir/adir"
expect_rc 1 "$DIO" df "$dir/adir"
expect_in "Is a directory" "$err" "df of a directory"
expect_rc 1 "$DIO" mkfs --size 64m "$dir/adir"
expect_in "Is a directory" "$err" "mkfs of a directory"

finish
