#!/usr/bin/env bash
# dio put/get/cat: files of 0, 1, odd and 100 MiB sizes come back byte for
# byte, through files and pipes; a put killed at any moment never leaves
# a partial file under its name; the progress line shows on a terminal
# only (script -q), never with -q, --json or a non-terminal stderr.
. "$(dirname "$0")/lib.sh"
img=$dir/v.img
expect_rc 0 "$DIO" mkfs --size 512m "$img"

# ---- round trips
for size in 0 1 511 4095 4096 4097 1048575 1048577 1234567 $((100 << 20)); do
  head -c "$size" /dev/urandom >"$dir/in"
  expect_rc 0 "$DIO" -q put "$img" "$dir/in" "f$size"
  expect_rc 0 "$DIO" -q get "$img" "f$size" "$dir/out"
  cmp -s "$dir/in" "$dir/out" || fail "get of $size bytes differs"
  "$DIO" cat "$img" "f$size" | cmp -s "$dir/in" - || fail "cat of $size bytes differs"
  "$DIO" get "$img" "f$size" | cmp -s "$dir/in" - || fail "get to stdout of $size bytes differs"
  "$DIO" get "$img" "f$size" - | cmp -s "$dir/in" - || fail "get to - of $size bytes differs"
  run "$DIO" --json stat "$img" "f$size"
  expect_eq "$(jqo .size)" "$size" "size after put of $size bytes"
done
rm -f "$dir/in" "$dir/out"

# standard input, default names, replacing a file, --json
head -c 3000001 /dev/urandom >"$dir/piped"
cat "$dir/piped" | "$DIO" -q put "$img" - from-pipe || fail "put from a pipe"
"$DIO" get "$img" from-pipe | cmp -s "$dir/piped" - || fail "piped put differs"
expect_rc 2 "$DIO" put "$img" -
expect_in "NAME" "$err" "put from stdin without a NAME"
expect_rc 0 "$DIO" -q put "$img" "$dir/piped"
expect_rc 0 "$DIO" ls "$img" piped
expect_eq "$out" piped "put names the file after the host file's base name"
printf 'short' >"$dir/short"
expect_rc 0 "$DIO" -q put "$img" "$dir/short" piped
expect_rc 0 "$DIO" cat "$img" piped
expect_eq "$out" short "put over an existing file replaces it"
expect_rc 0 "$DIO" --json put "$img" "$dir/piped" j
expect_eq "$(jqo .bytes)" 3000001 "put --json bytes"
expect_eq "$(jqo '.seconds > 0 and .bytes_per_second > 0')" true "put --json rate"
expect_rc 0 "$DIO" --json get "$img" j "$dir/j"
expect_eq "$(jqo .bytes)" 3000001 "get --json bytes"
expect_rc 2 "$DIO" --json get "$img" j
expect_rc 1 "$DIO" put "$img" "$dir/does-not-exist" x
expect_in "No such file or directory" "$err" "put of a missing host file"
expect_rc 1 "$DIO" get "$img" nope "$dir/nope"
[ -e "$dir/nope" ] && fail "a get of a missing name created the host file"

# ---- a get that fails never changes or creates a host file
printf 'important\n' >"$dir/keep.txt"
cp "$dir/keep.txt" "$dir/keep.orig"
expect_rc 1 "$DIO" get "$img" nosuch "$dir/keep.txt"
expect_in "nosuch: No such file or directory" "$err" "get of a missing name"
cmp -s "$dir/keep.txt" "$dir/keep.orig" || fail "a get of a missing name changed the host file"
# the volume's own image as the destination is refused; the volume mounts
cp "$img" "$dir/img.before" 2>/dev/null || true
expect_rc 1 "$DIO" get "$img" j "$img"
expect_in "is the volume itself" "$err" "get onto the volume's image"
cmp -s "$img" "$dir/img.before" || fail "a get onto the volume's image changed it"
ln -s "$img" "$dir/img-link"
expect_rc 1 "$DIO" get "$img" j "$dir/img-link"
rm -f "$dir/img.before" "$dir/img-link"
expect_rc 0 "$DIO" fsck "$img"
# a directory takes the file under NAME's last part; a symbolic link is
# followed; an existing file keeps its mode
mkdir "$dir/into"
expect_rc 0 "$DIO" -q get "$img" j "$dir/into"
cmp -s "$dir/into/j" "$dir/piped" || fail "get into a directory"
chmod 600 "$dir/keep.txt"
ln -s keep.txt "$dir/keep-link"
expect_rc 0 "$DIO" -q get "$img" j "$dir/keep-link"
[ -L "$dir/keep-link" ] || fail "get replaced the symbolic link instead of its file"
cmp -s "$dir/keep.txt" "$dir/piped" || fail "get through a symbolic link"
expect_eq "$(stat -c %a "$dir/keep.txt")" 600 "the mode of a file get replaced"
expect_rc 0 "$DIO" -q get "$img" j /dev/null
# killed by SIGTERM or SIGINT at any moment: the host file is old or whole,
# and no temporary file is left beside it
head -c $((96 << 20)) /dev/urandom >"$dir/big-in"
expect_rc 0 "$DIO" -q put "$img" "$dir/big-in" big-in
for round in 1 2 3 4 5 6 7 8; do
  cp "$dir/keep.orig" "$dir/keep.txt"
  sig=TERM; [ $((round % 2)) = 0 ] && sig=INT
  "$DIO" -q get "$img" big-in "$dir/keep.txt" &
  pid=$!
  sleep "0.0$((RANDOM % 9 + 1))"
  kill -$sig $pid 2>/dev/null
  wait $pid
  got=$?
  if cmp -s "$dir/keep.txt" "$dir/keep.orig"; then
    [ "$got" = 0 ] && fail "round $round: get exited 0 and left the old file"
  else
    cmp -s "$dir/keep.txt" "$dir/big-in" || fail "round $round: SIG$sig left a partial host file"
  fi
  ls -a "$dir" | grep -q 'dio-get' && fail "round $round: SIG$sig left a temporary file: $(ls -a "$dir")"
done
rm -f "$dir/big-in"
expect_rc 0 "$DIO" rm "$img" big-in
expect_rc 0 "$DIO" ls "$img" .dio-put
expect_eq "$out" "" "no temporary file is left after puts"

# ---- several files into a DIR/, a tree with -r, an ambiguous NAME refused
mkdir -p "$dir/t/sub/deeper"
printf a >"$dir/t/a"; printf b >"$dir/t/sub/b"; printf c >"$dir/t/sub/deeper/c"
expect_rc 0 "$DIO" -q put "$img" "$dir/t/a" "$dir/t/sub/b" many/
expect_rc 0 "$DIO" ls "$img" many/
expect_eq "$out" "$(printf 'many/a\nmany/b')" "put of several files into a DIR/"
expect_rc 2 "$DIO" put "$img" "$dir/t/a" "$dir/t/sub/b" "$dir/t/sub/deeper/c"
expect_in "DIR/" "$err" "several files without a DIR/"
expect_rc 2 "$DIO" put "$img" "$dir/t/a" "$dir/t/sub/b"
expect_in "also a host file" "$err" "a NAME that is a host file"
expect_rc 1 "$DIO" put "$img" "$dir/t"
expect_in "use -r" "$err" "a host directory without -r"
expect_rc 0 "$DIO" -q put -r "$img" "$dir/t"
expect_rc 0 "$DIO" ls -R "$img" t/
expect_eq "$out" "$(printf 't/a\nt/sub/b\nt/sub/deeper/c')" "put -r of a tree"
expect_rc 0 "$DIO" -q put -r "$img" "$dir/t/" into/
expect_rc 0 "$DIO" cat "$img" into/t/sub/deeper/c
expect_eq "$out" c "put -r into a DIR/"
expect_rc 0 "$DIO" -q put -r "$img" "$dir/t" renamed
expect_rc 0 "$DIO" cat "$img" renamed/sub/b
expect_eq "$out" b "put -r as a new NAME"
expect_rc 0 "$DIO" rm "$img" many/a many/b t/a t/sub/b t/sub/deeper/c into/t/a into/t/sub/b into/t/sub/deeper/c \
  renamed/a renamed/sub/b renamed/sub/deeper/c

# ---- a killed put never leaves a partial file under its name
printf 'old contents\n' >"$dir/old"
expect_rc 0 "$DIO" -q put "$img" "$dir/old" existing
for round in 1 2 3 4 5 6; do
  for name in existing fresh$round; do
    # 40 MiB arrive quickly, then the writer stalls: the put is killed
    # while its data is in flight or while it waits for more
    rm -f "$dir/fifo"; mkfifo "$dir/fifo"
    "$DIO" -q put "$img" - "$name" <"$dir/fifo" &
    pid=$!
    ( head -c $((40 << 20)) /dev/urandom; exec sleep 5 ) >"$dir/fifo" 2>/dev/null &
    writer=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -KILL $pid
    wait $pid 2>/dev/null
    kill $writer 2>/dev/null
    wait $writer 2>/dev/null
    for t in $(seq 50); do "$DIO" ls "$img" >/dev/null 2>&1 && break; sleep 0.1; done
    if [ "$name" = existing ]; then
      run "$DIO" cat "$img" existing
      expect_eq "$out" "old contents" "round $round: a killed put changed the existing file"
    else
      run "$DIO" stat "$img" "$name"
      if [ "$rc" = 0 ]; then
        # the kill came after the rename: then it is complete
        run "$DIO" --json stat "$img" "$name"
        expect_eq "$(jqo .size)" $((40 << 20)) "round $round: a file under the new name is complete"
      else
        expect_in "No such file or directory" "$err" "round $round: killed put of a new name"
      fi
    fi
  done
done
run "$DIO" fsck "$img"
expect_eq "$rc" 0 "fsck after killed puts ($out)"
# the next put of the same name replaces what a killed one left behind
expect_rc 0 "$DIO" -q put "$img" "$dir/old" fresh1
expect_rc 0 "$DIO" cat "$img" fresh1
expect_eq "$out" "old contents" "put after a killed put"

# ---- progress: on a terminal only
head -c $((64 << 20)) /dev/urandom >"$dir/big"
DIO_PROGRESS_DELAY=0 script -qec "\"$DIO\" put \"$img\" \"$dir/big\" big" "$dir/typescript" >/dev/null
grep -q 'put: \[' "$dir/typescript" || fail "no progress bar for put on a terminal: $(tr '\r' '\n' <"$dir/typescript" | head -3)"
grep -q 'left' "$dir/typescript" || fail "the progress bar shows no time left"
grep -q '/s' "$dir/typescript" || fail "the progress bar shows no rate"
DIO_PROGRESS_DELAY=0 script -qec "\"$DIO\" get \"$img\" big \"$dir/big2\"" "$dir/typescript" >/dev/null
grep -q 'get: \[' "$dir/typescript" || fail "no progress bar for get on a terminal"
cmp -s "$dir/big" "$dir/big2" || fail "get under a terminal differs"
DIO_PROGRESS_DELAY=0 script -qec "\"$DIO\" -q put \"$img\" \"$dir/big\" big" "$dir/typescript" >/dev/null
grep -q 'put: \[' "$dir/typescript" && fail "progress shown with -q"
DIO_PROGRESS_DELAY=0 script -qec "\"$DIO\" --json put \"$img\" \"$dir/big\" big" "$dir/typescript" >/dev/null
grep -q 'put: \[' "$dir/typescript" && fail "progress shown with --json"
DIO_PROGRESS_DELAY=0 "$DIO" put "$img" "$dir/big" big 2>"$dir/stderr"
grep -q $'\r' "$dir/stderr" && fail "progress drawn on a stderr that is not a terminal"
DIO_PROGRESS_DELAY=0 script -qec "\"$DIO\" fsck \"$img\"" "$dir/typescript" >/dev/null
grep -q 'clean' "$dir/typescript" || fail "fsck under a terminal"
DIO_PROGRESS_DELAY=0 script -qec "\"$DIO\" bench \"$dir/b.img\" --runtime 0.6 --size 8m" "$dir/typescript" >/dev/null
grep -q 'bench: .* left' "$dir/typescript" || fail "no progress line for bench on a terminal"

finish
