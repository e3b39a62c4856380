#!/bin/sh
# The comparison of bench/prealloc.sh made through a kernel file system
# with fio: queued 4 KiB random O_DIRECT writes (io_uring, QD32) into a
# 4 GiB file preallocated afresh with fallocate(2) (unwritten extents)
# against the same writes into a file written in full beforehand.
# Alternating, ROUNDS times; prints each pair and the median ratio.
#   bench/prealloc-fs.sh DIR [ROUNDS=5] [RUNTIME=4]
# DIR is a directory on the file system to measure (e.g. ext4 or XFS on
# a loop device over a /dev/shm file, the block device libdio's own
# figure can be measured on).  BENCH_CPU=N pins fio to CPU N.
set -e
dir=$1 rounds=${2:-5} rt=${3:-4}
pin=""
if [ -n "$BENCH_CPU" ]; then pin="taskset -c $BENCH_CPU"; fi
w=$dir/prealloc-written p=$dir/prealloc-unwritten
rm -f "$w" "$p"
dd if=/dev/zero of="$w" bs=1M count=4096 oflag=direct status=none
run() {
  $pin fio --name=pre --filename="$1" --size=4g --rw=randwrite --bs=4k --direct=1 \
    --ioengine=io_uring --iodepth=32 --runtime="$rt" --time_based --fallocate="$2" \
    --norandommap --randrepeat=0 --output-format=json |
    python3 -c "import json,sys; print(int(json.load(sys.stdin)['jobs'][0]['write']['iops']))"
}
ratios=""
for r in $(seq "$rounds"); do
  wi=$(run "$w" none)
  rm -f "$p"; sync
  pi=$(run "$p" native)
  ratio=$(echo "$pi / $wi" | bc -l)
  ratios="$ratios $ratio"
  printf 'round %d: written %s IOPS, preallocated %s IOPS, ratio %.3f\n' "$r" "$wi" "$pi" "$ratio"
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {printf "median ratio %.3f (min %.3f, max %.3f)\n", a[int((NR+1)/2)], a[1], a[NR]}'
rm -f "$w" "$p"
