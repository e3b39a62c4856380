#!/bin/bash
# fio through dio-fuse against fio on a raw image file in the same
# directory (issue 12: reported, no target).  4 KiB random reads and
# writes and 1 MiB sequential writes, direct=1, psync (the FUSE daemon
# serves each request synchronously), numjobs 1 and 4; alternating which
# side goes first, ROUNDS times; prints the median IOPS of each side and
# their ratio (FUSE / raw).  Needs root and /dev/fuse.
#   bench/fuse.sh DIR [ROUNDS=3] [RUNTIME=5]
set -euo pipefail
dir=$1 rounds=${2:-3} rt=${3:-5}
build=${BUILD_DIR:-build}
img=$dir/fuse-bench.img raw=$dir/fuse-bench.raw mnt=$dir/fuse-bench.mnt
size=512m
mkdir -p "$mnt"
rm -f "$img" "$raw"
"$build/tools/dio" mkfs -q --size 1g "$img"
"$build/tools/dio-fuse" -f "$img" "$mnt" &
pid=$!
trap 'fusermount3 -u "$mnt" 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$img" "$raw" "$mnt"' EXIT
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
# both files laid out in full first: the runs overwrite
fio --name=lay --filename="$mnt/f" --size=$size --rw=write --bs=1m --direct=1 >/dev/null
fio --name=lay --filename="$raw" --size=$size --rw=write --bs=1m --direct=1 >/dev/null
one() {   # one FILE RW BS JOBS -> IOPS
  fio --name=b --filename="$1" --size=$size --rw="$2" --bs="$3" --numjobs="$4" --direct=1 \
    --ioengine=psync --time_based --runtime="$rt" --group_reporting --output-format=json |
    python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(int(j['read']['iops'] + j['write']['iops']))"
}
med() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| workload | jobs | raw image IOPS | through dio-fuse IOPS | fuse/raw |"
echo "|---|---|---|---|---|"
for w in "randread 4k" "randwrite 4k" "write 1m"; do
  set -- $w
  for j in 1 4; do
    a="" b=""
    for r in $(seq "$rounds"); do
      if [ $((r % 2)) = 1 ]; then a="$a $(one "$raw" "$1" "$2" $j)"; b="$b $(one "$mnt/f" "$1" "$2" $j)"
      else b="$b $(one "$mnt/f" "$1" "$2" $j)"; a="$a $(one "$raw" "$1" "$2" $j)"; fi
    done
    ra=$(echo "$a" | med) rb=$(echo "$b" | med)
    printf '| %s %s | %d | %s | %s | **%.2f** |\n' "$1" "$2" "$j" "$ra" "$rb" "$(echo "$rb / $ra" | bc -l)"
  done
done
