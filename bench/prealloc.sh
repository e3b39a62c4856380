#!/bin/sh
# Queued 4 KiB random writes into preallocated (unwritten) blocks against
# the same writes into written blocks, on a volume whose image file is
# fully written first (so the host file system does the same work for
# both: no first-write allocation or page clearing on either side).
# Alternating, ROUNDS times; prints each pair and the median ratio.
#   bench/prealloc.sh DIR|DEVICE [ROUNDS=5] [RUNTIME=4] [BACKEND=uring]
# Given a block device (at least 5 GiB; its contents are lost), the
# volume is made on it directly.
# BENCH_CPU=N pins both sides to CPU N.  On /dev/shm the unpinned runs
# swing by 2x from one to the next; pinned, tmpfs's io-wq worker shares
# the submitter's CPU, so IOPS is the inverse of the whole CPU cost per
# write, stable to a few percent (bench/RESULTS.md, session 21).
set -e
dir=$1 rounds=${2:-5} rt=${3:-4} be=${4:-uring}
pin=""
if [ -n "$BENCH_CPU" ]; then pin="taskset -c $BENCH_CPU"; fi
dio=${BUILD_DIR:-build}/tools/dio
if [ -b "$dir" ]; then
  img=$dir
else
  img=$dir/prealloc.img
  if [ ! -b "$img" ]; then rm -f "$img"; fi
  dd if=/dev/zero of="$img" bs=1M count=5120 oflag=direct status=none
fi
"$dio" -q mkfs --size 5g --force "$img"
run() { $pin "$dio" --json bench "$img" --backend "$be" --rw randwrite --iodepth 32 --runtime "$rt" --size 4g "$@"; }
field() { printf '%s' "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
ratios=""
for r in $(seq "$rounds"); do
  w=$(run); p=$(run --fallocate)
  wi=$(field "$w" iops) pi=$(field "$p" iops)
  ratio=$(echo "$pi / $wi" | bc -l)
  ratios="$ratios $ratio"
  printf 'round %d: written %s IOPS (%s us CPU/IO), preallocated %s IOPS (%s us CPU/IO), ratio %.3f\n' "$r" \
    "$wi" "$(field "$w" cpu_us_per_io)" "$pi" "$(field "$p" cpu_us_per_io)" "$ratio"
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {printf "median ratio %.3f (min %.3f, max %.3f)\n", a[int((NR+1)/2)], a[1], a[NR]}'
if [ ! -b "$img" ]; then rm -f "$img"; fi
