#!/bin/sh
# Issue 13's table: libdio against fio on one target, every case for every
# backend, each a median of alternating rounds (compare.sh ROUNDS).
#
#   bench/matrix.sh TARGET [ROUNDS] [RUNTIME]
#
# TARGET: a directory (an image file in it: the root disk, /dev/shm) or a
# block device (a loop device: losetup --direct-io=on over a /dev/shm
# file).  Cases: 4 KiB random reads at QD1 (libdio's synchronous calls;
# auto against fio psync) and QD32 (a queue), 4 KiB random overwrites at
# QD32, 1 MiB sequential writes at QD8 (on a directory: each side
# appending to a file of its own; on a device: over the device).
set -e
t=$1 rounds=${2:-5} rt=${3:-3}
c="$(dirname "$0")/compare.sh"
export ROUNDS=$rounds
for b in auto uring aio psync; do "$c" "$t" $b randread 4k 1 1 "$rt" 256m | tail -1; done
for b in auto uring aio; do "$c" "$t" $b randread 4k 32 1 "$rt" 256m | tail -1; done
for b in uring aio; do "$c" "$t" $b randwrite 4k 32 1 "$rt" 256m | tail -1; done
if [ -d "$t" ]; then
  for b in uring aio; do "$c" "$t" $b write 1m 8 1 "$rt" 16g --append | tail -1; done
else
  for b in uring aio; do "$c" "$t" $b write 1m 8 1 "$rt" 1g | tail -1; done
fi
