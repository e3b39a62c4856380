#!/bin/sh
# Every case of bench/RESULTS.md on one target, fio first in each pair.
#   bench/run-all.sh DIR [RUNTIME]
set -e
d=$1 rt=${2:-5}
c=$(dirname "$0")/compare.sh
rm -f "$d/dio.img"
$c "$d" psync randread 4k 1 1 "$rt" 256m | tail -1
$c "$d" uring randread 4k 1 1 "$rt" 256m | tail -1
$c "$d" uring randread 4k 32 1 "$rt" 256m | tail -1
$c "$d" aio randread 4k 32 1 "$rt" 256m | tail -1
$c "$d" uring randwrite 4k 32 1 "$rt" 256m | tail -1
$c "$d" aio randwrite 4k 32 1 "$rt" 256m | tail -1
rm -f "$d/dio.img"
$c "$d" uring write 1m 8 1 3 16g --append | tail -1
rm -f "$d/dio.img"
for j in 4 8; do
  $c "$d" psync write 4k 1 $j "$rt" 64m --append --fsync=1 | tail -1
  rm -f "$d/dio.img"
done
