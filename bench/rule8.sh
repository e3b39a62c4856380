#!/bin/sh
# What rule 8 (the process-death log, lib/plog.c) costs a no-fsync
# appender: 4 KiB appends to a new file, each of which changes the size
# and the block map, with the log on and off (DIO_PLOG=off).  A fresh
# sparse image per run (dio bench makes it); alternating (which goes first
# too), ROUNDS times;
# prints each pair and the median ratio of IOPS and of CPU time per I/O.
#   bench/rule8.sh DIR [ROUNDS=5] [RUNTIME=2] [BACKEND=psync] [BS=4096]
set -e
dir=$1 rounds=${2:-5} rt=${3:-2} be=${4:-psync} bs=${5:-4096}
dio=${BUILD_DIR:-build}/tools/dio
img=$dir/rule8.img
run() {
  rm -f "$img"
  env "$@" "$dio" --json bench "$img" --backend "$be" --rw write --append --bs "$bs" --runtime "$rt"
}
field() { printf '%s' "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
ratios="" cpus=""
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then on=$(run DIO_PLOG=on); off=$(run DIO_PLOG=off)
  else off=$(run DIO_PLOG=off); on=$(run DIO_PLOG=on); fi
  ion=$(field "$on" iops) ioff=$(field "$off" iops)
  con=$(field "$on" cpu_us_per_io) coff=$(field "$off" cpu_us_per_io)
  ratios="$ratios $(echo "$ion / $ioff" | bc -l)"
  cpus="$cpus $(echo "$con / $coff" | bc -l)"
  printf 'round %d: log on %s IOPS (%s us CPU/IO, %s commits), off %s IOPS (%s us CPU/IO, %s commits)\n' "$r" \
    "$ion" "$con" "$(field "$on" journal_commits)" "$ioff" "$coff" "$(field "$off" journal_commits)"
done
med() { echo "$1" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk -v what="$2" '{a[NR]=$1} END {printf "median %s %.3f (min %.3f, max %.3f)\n", what, a[int((NR+1)/2)], a[1], a[NR]}'; }
med "$ratios" "IOPS ratio on/off"
med "$cpus" "CPU/IO ratio on/off"
rm -f "$img"
