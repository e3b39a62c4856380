#!/bin/bash
# SQLite on libdio against stock SQLite (issue 12): the phases of
# bench/sqlite.c, stock on a file in DIR, libdio on a fresh image in DIR
# (the same file system: an ext4 disk or /dev/shm), in DELETE and WAL
# mode, with an equal cache that holds the database (CACHE KiB) and with
# SQLite's default cache.  Alternating (which side goes first too), ROUNDS
# times; prints the median wall and CPU seconds per phase and the ratio
# stock/libdio of the medians (above 1: libdio is faster).
#   bench/sqlite.sh DIR [ROUNDS=3] [CACHE=262144] [MODES="delete wal"] [CACHES="equal default"]
# BUILD_DIR (default build); DIO_BACKEND picks libdio's backend as usual.
set -euo pipefail
dir=$1 rounds=${2:-3} cache=${3:-262144}
modes=${4:-delete wal} caches=${5:-equal default}
bench=${BUILD_DIR:-build}/bench/dio-sqlite-bench
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
one() {   # one SIDE MODE CACHENAME
  local c=0 target=$dir
  [ "$3" = equal ] && c=$cache
  [ "$1" = libdio ] && target=$dir/sqlite-bench.img
  "$bench" "$1" -j "$2" -c "$c" "$target" | awk -v s="$1" -v m="$2" -v k="$3" \
    '$1 == "phase" {print s, m, k, $2, $3, $4} $1 == "counters" {print "#", s, m, k, $0 > "/dev/stderr"}' >>"$raw"
}
for mode in $modes; do
  for c in $caches; do
    for r in $(seq "$rounds"); do
      if [ $((r % 2)) = 1 ]; then one stock "$mode" "$c"; one libdio "$mode" "$c"
      else one libdio "$mode" "$c"; one stock "$mode" "$c"; fi
    done
  done
done
echo "| mode | cache | phase | stock s (cpu) | libdio s (cpu) | stock/libdio |"
echo "|---|---|---|---|---|---|"
for mode in $modes; do
  for c in $caches; do
    for ph in insert index lookup update integrity; do
      med() {   # med SIDE FIELD
        awk -v s="$1" -v m="$mode" -v k="$c" -v p="$ph" -v f="$2" '$1 == s && $2 == m && $3 == k && $4 == p {print $f}' "$raw" |
          sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
      }
      sw=$(med stock 5) sc=$(med stock 6) lw=$(med libdio 5) lc=$(med libdio 6)
      printf '| %s | %s | %s | %.3f (%.3f) | %.3f (%.3f) | **%.2f** |\n' "$mode" "$c" "$ph" "$sw" "$sc" "$lw" "$lc" \
        "$(echo "$sw / $lw" | bc -l)"
    done
  done
done
