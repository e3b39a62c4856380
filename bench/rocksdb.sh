#!/bin/bash
# RocksDB on libdio against RocksDB on ext4 (issue 26): the stock
# db_bench of Debian's rocksdb-tools, the same options and block cache
# on each side, on the same disk:
#   libdio      --fs_uri=libdio://DIR/rocksdb-bench.img (the FileSystem
#               LD_PRELOADed; the image zero-filled once, so that ext4
#               under it only passes the I/O through), with the options
#               of ext4-direct
#   ext4-direct --db=DIR/rocksdb-bench-ext4 --use_direct_reads=1
#               --use_direct_io_for_flush_and_compaction=1 (the fair
#               comparison: neither side has the page cache; RocksDB's
#               WAL is buffered on ext4 either way)
#   ext4        the same without direct I/O, as users run it (for the
#               record: its reads come from the page cache)
# Workloads: fillseq and fillrandom into a fresh DB, then on that DB
# overwrite with --sync=1, readrandom and seekrandom with a block cache
# (CACHE, default 8 MiB) far smaller than the DB, readwhilewriting.
# Alternating which side goes first, ROUNDS times; prints per workload
# and side the median ops/s, p99 latency (us), CPU us per op (user +
# system of db_bench over its ops) and device bytes written per user
# byte (DEV's sectors written over ops x (key + value)), and the ratio
# of libdio's median ops/s to ext4-direct's.
#   bench/rocksdb.sh DIR DEV [ROUNDS=5] [NUM=500000] [SIDES="libdio ext4-direct ext4"]
# (overwrite --sync=1 runs 100,000 writes: a run of 20,000 lasted about a
# second, and its ratio swung 1.2 to 1.5 between runs)
# DEV is the block device under DIR (vda, not /dev/vda).  BUILD_DIR
# (default build); DIO_BACKEND picks libdio's backend as usual.
set -euo pipefail
dir=$1 dev=$2 rounds=${3:-5} num=${4:-500000} sides=${5:-libdio ext4-direct ext4}
cache=${CACHE:-8388608}
build=${BUILD_DIR:-build}
so=$(realpath "$build/ext/rocksdb/librocksdb_libdio.so")
dio=$build/tools/dio
img=$dir/rocksdb-bench.img
raw=$(mktemp) log=$(mktemp)
trap 'rm -f "$raw" "$log"' EXIT
# WORKLOADS picks some (the reads then use the DBs the last fills left)
workloads=${WORKLOADS:-fillseq fillrandom overwrite-sync readrandom seekrandom readwhilewriting}
user_bytes_per_op=116   # db_bench's 16-byte keys and 100-byte values

if [ ! -e "$img" ]; then
  # written once: ext4 then has every block of the image allocated and
  # written, and libdio's I/O to it is I/O to the disk
  dd if=/dev/zero of="$img" bs=1M count=8192 oflag=direct status=none
fi

sectors() { awk '{print $7}' "/sys/block/$dev/stat"; }

# one SIDE WORKLOAD: one db_bench run; appends "SIDE WORKLOAD ops/s p99 cpu_us/op wamp"
one() {
  local side=$1 w=$2 args=() env=()
  case $side in
    libdio) env=(LD_PRELOAD="$so")
            args=(--fs_uri="libdio://$img" --db=/db --use_direct_reads=1 --use_direct_io_for_flush_and_compaction=1) ;;
    ext4-direct) args=(--db="$dir/rocksdb-bench-ext4" --use_direct_reads=1 --use_direct_io_for_flush_and_compaction=1) ;;
    ext4) args=(--db="$dir/rocksdb-bench-ext4") ;;
  esac
  case $w in
    fillseq|fillrandom)
      if [ "$side" = libdio ]; then "$dio" mkfs --force --size 8g "$img" >/dev/null
      else rm -rf "$dir/rocksdb-bench-ext4"; fi
      args+=(--benchmarks="$w" --num="$num") ;;
    overwrite-sync) args+=(--benchmarks=overwrite --use_existing_db=1 --num="$num" --sync=1 --writes=100000) ;;
    readrandom|seekrandom) args+=(--benchmarks="$w" --use_existing_db=1 --num="$num" --reads=200000) ;;
    readwhilewriting) args+=(--benchmarks=readwhilewriting --use_existing_db=1 --num="$num" --reads=100000 --threads=1) ;;
  esac
  sync; echo 3 >/proc/sys/vm/drop_caches
  local s0; s0=$(sectors)
  /usr/bin/time -f "cpu %U %S" env "${env[@]}" db_bench "${args[@]}" --cache_size="$cache" --histogram=1 \
    --progress_reports=0 --stats_interval_seconds=0 >"$log" 2>&1 || { cat "$log"; exit 1; }
  sync   # what the run left in the page cache counts as the run's writes
  local s1; s1=$(sectors)
  local name=${w%-sync}
  awk -v side="$side" -v w="$w" -v name="$name" -v sec=$((s1 - s0)) -v ub="$user_bytes_per_op" '
    $1 == name && $2 == ":" { ops = $5; n = $9 }
    /^Percentiles:/ && !p99 { p99 = $7 }
    $1 == "cpu" { cpu = $2 + $3 }
    END { if (!n) n = 1; printf "%s %s %.0f %.1f %.2f %.2f\n", side, w, ops, p99, cpu * 1e6 / n,
          (w ~ /^fill|^overwrite|^readwhile/) ? sec * 512 / (n * ub) : 0 }' "$log" >>"$raw"
}

for r in $(seq "$rounds"); do
  order=$sides
  [ $((r % 2)) = 0 ] && order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' ')
  for side in $order; do
    for w in $workloads; do one "$side" "$w"; done
  done
done

echo "| workload | side | ops/s | p99 us | CPU us/op | dev bytes / user byte | libdio / ext4-direct |"
echo "|---|---|---|---|---|---|---|"
med() {   # med SIDE WORKLOAD FIELD
  awk -v s="$1" -v w="$2" -v f="$3" '$1 == s && $2 == w {print $f}' "$raw" |
    sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}
for w in $workloads; do
  base=$(med ext4-direct "$w" 3)
  for side in $sides; do
    ops=$(med "$side" "$w" 3)
    ratio=""
    [ "$side" = libdio ] && [ -n "$base" ] && ratio=$(printf '**%.2f**' "$(echo "$ops / $base" | bc -l)")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$side" "$ops" "$(med "$side" "$w" 4)" \
      "$(med "$side" "$w" 5)" "$(med "$side" "$w" 6)" "$ratio"
  done
done
echo
echo "raw (side workload ops/s p99 cpu_us/op wamp):"
cat "$raw"
