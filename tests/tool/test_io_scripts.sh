#!/usr/bin/env bash
# dio io: scripted I/O checked against the bytes it leaves, text and
# --json; the first failing command stops the script; bad scripts are
# usage errors.
. "$(dirname "$0")/lib.sh"
img=$dir/v.img
expect_rc 0 "$DIO" mkfs --size 64m "$img"

# pwrite patterns, read back through pread -v and get
expect_rc 0 "$DIO" io "$img" f -c "pwrite -S 0x41 0 8k" -c "pwrite -S 0x42 100 10" -c "pwrite 8192 5" -c fsync
expect_in "wrote 8192/8192 bytes at offset 0" "$out" "pwrite report"
expect_in "wrote 5/5 bytes at offset 8192" "$out" "pwrite report"
expect_rc 0 "$DIO" get "$img" f "$dir/f"
{ head -c 100 /dev/zero | tr '\0' A; head -c 10 /dev/zero | tr '\0' B; head -c 8082 /dev/zero | tr '\0' A
  printf '\315\315\315\315\315'; } >"$dir/want"
cmp -s "$dir/f" "$dir/want" || fail "bytes after the pwrite script"
expect_rc 0 "$DIO" io "$img" f -c "pread -v 96 8"
expect_in "read 8/8 bytes at offset 96" "$out" "pread report"
expect_in "00000060:  41 41 41 41 42 42 42 42" "$out" "pread -v hex dump"
expect_in "AAAABBBB" "$out" "pread -v characters"
expect_rc 0 "$DIO" --json io "$img" f -c "pread -v 98 4" -c stat
expect_eq "$(jqo '.results[0].data')" 41414242 "pread -v --json data"
expect_eq "$(jqo '.results[0].bytes')" 4 "pread --json bytes"
expect_eq "$(jqo '.results[1].size')" 8197 "stat --json size"
expect_rc 0 "$DIO" io "$img" f -c "pread 8190 100"
expect_in "read 7/100 bytes at offset 8190" "$out" "short read at the end of the file"

# preallocation, holes, zeroing, truncation, seek
expect_rc 0 "$DIO" --json io "$img" g -c "falloc 0 64k" -c stat -c "seek -d 0" -c "seek -h 0"
expect_eq "$(jqo '.results[1].size')" 65536 "falloc grows the size"
expect_eq "$(jqo '.results[1].allocated')" 65536 "falloc allocates"
expect_eq "$(jqo '.results[2].result')" EOF "unwritten blocks are not data"
expect_eq "$(jqo '.results[3].result')" 0 "unwritten blocks are a hole"
expect_rc 0 "$DIO" --json io "$img" g -c "pwrite -S 0x7 16k 4k" -c "falloc -k 64k 64k" -c stat -c "seek -d 0" -c "seek -h 16k"
expect_eq "$(jqo '.results[2].size')" 65536 "falloc -k keeps the size"
expect_eq "$(jqo '.results[2].allocated')" 131072 "falloc -k allocates"
expect_eq "$(jqo '.results[3].result')" 16384 "seek -d finds the written block"
expect_eq "$(jqo '.results[4].result')" 20480 "seek -h finds the end of it"
expect_rc 0 "$DIO" --json io "$img" g -c "pread -v 16k 4" -c "fzero 16k 4k" -c "pread -v 16k 4"
expect_eq "$(jqo '.results[0].data')" 07070707 "written block"
expect_eq "$(jqo '.results[2].data')" 00000000 "fzero reads as zeros"
expect_rc 0 "$DIO" --json io "$img" g -c "pwrite -S 9 0 64k" -c "fpunch 4k 8k" -c "pread -v 4k 4" -c "pread -v 12k 4" -c stat
expect_eq "$(jqo '.results[2].data')" 00000000 "fpunch reads as zeros"
expect_eq "$(jqo '.results[3].data')" 09090909 "fpunch leaves the rest"
expect_eq "$(jqo '.results[4].allocated')" $((131072 - 8192)) "fpunch frees the blocks"
expect_rc 0 "$DIO" --json io "$img" g -c "truncate 5000" -c stat -c "truncate 1m" -c "pread -v 4990 16"
expect_eq "$(jqo '.results[1].size')" 5000 "truncate down"
expect_eq "$(jqo '.results[3].data')" 00000000000000000000000000000000 "no old bytes past a truncation"
expect_rc 0 "$DIO" io "$img" g -c fsync -c fdatasync -c "seek -d 2m"
expect_in "DATA from 2097152: EOF" "$out" "seek past the end"

# errors: the first failing command stops the script
expect_rc 1 "$DIO" io "$img" g -c "pwrite 0 4k" -c "falloc 0 300m" -c "pwrite -S 1 0 4k"
expect_in "dio: $img: g: falloc: No space left on device" "$err" "error line of a failing command"
expect_rc 0 "$DIO" io "$img" g -c "pread -v 0 1"
expect_in "00000000:  cd" "$out" "the command after the failing one did not run"
expect_rc 1 "$DIO" io "$img" missing -c "pread 0 1"
expect_in "missing: No such file or directory" "$err" "a read-only script does not create the file"
expect_rc 2 "$DIO" io "$img" g -c "frob 0 1"
expect_rc 2 "$DIO" io "$img" g -c "pread 0"
expect_rc 2 "$DIO" io "$img" g -c "pwrite -S 300 0 1"
expect_rc 2 "$DIO" io "$img" g -c "seek 0"
expect_rc 2 "$DIO" io "$img" g
expect_in "usage: dio io" "$err" "io without -c"
expect_rc 0 "$DIO" fsck "$img"

finish
