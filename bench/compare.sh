#!/bin/sh
# Run the same workload with fio (the baseline) and with `dio bench` on the
# same target directory or device in one run, and print the ratio.
#
#   bench/compare.sh DIR_OR_DEVICE BACKEND RW BS IODEPTH NUMJOBS [RUNTIME] [SIZE] [extra dio bench args]
#   e.g. bench/compare.sh /dev/shm psync randread 4k 1 1 10 256m
#
# BACKEND psync|uring|aio maps to fio's psync|io_uring|libaio.  On a
# directory, fio uses DIR/fio.img and dio bench DIR/dio.img.
set -e
target=$1 backend=$2 rw=$3 bs=$4 qd=$5 jobs=$6 runtime=${7:-10} size=${8:-256m}
shift 8 2>/dev/null || shift $#
build=${BUILD_DIR:-build}
case $backend in
  psync) engine=psync ;; uring) engine=io_uring ;; aio) engine=libaio ;; *) echo "backend?"; exit 2 ;;
esac
if [ -d "$target" ]; then fio_t="$target/fio.img"; dio_t="$target/dio.img"; else fio_t=$target; dio_t=$target; fi
# BENCH_CPU=N: one-job runs of fio and dio bench both pinned to CPU N.
# Off by default: pinned, the submitter competes with the io-wq workers
# that serve io_uring on tmpfs (both fio and libdio fall to a third).
pin=""
if [ -n "$BENCH_CPU" ] && [ "$jobs" = 1 ]; then pin="taskset -c $BENCH_CPU"; fi
extra_fio="" fio_where="--filename=$fio_t"
for a in "$@"; do
  case $a in
    --fsync=*) extra_fio="$extra_fio --fdatasync=${a#--fsync=}" ;;
    --fixedbufs) extra_fio="$extra_fio --fixedbufs" ;;
    --norandommap) extra_fio="$extra_fio --norandommap" ;;
    --append)  # every job appends to a fresh file of its own, which grows
               # with its writes as libdio's do (fio would fallocate --size
               # first, and on tmpfs allocate every page before timing)
               mkdir -p "$target/fio-append"; rm -f "$target"/fio-append/*
               fio_where="--directory=$target/fio-append --filename_format=f.\$jobnum --file_append=1 --fallocate=none" ;;
  esac
done
# On tmpfs each run starts right after writing and freeing 12 GiB, so that
# both find guest pages the host backs: this VM's balloon driver reports
# free pages to the host, which drops them, and the first write to such a
# page costs a host fault (1 MiB appends ran at 0.26-0.6x the bare loop
# when libdio's run got those pages and fio's did not; bench/RESULTS.md,
# session 4).
warm() {
  if [ -d "$target" ] && [ "$(stat -f -c %T "$target")" = tmpfs ]; then
    dd if=/dev/zero of="$target/warm" bs=1M count=12288 status=none && rm -f "$target/warm"
  fi
}
warm
fio_json=$($pin fio --name=base $fio_where --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$jobs" \
  --size="$size" --runtime="$runtime" --time_based --direct=1 --ioengine="$engine" --group_reporting \
  --randrepeat=0 $extra_fio --output-format=json 2>/dev/null)
fio_iops=$(printf '%s' "$fio_json" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(round(j["read"]["iops"]+j["write"]["iops"]))')
[ -d "$target" ] && rm -rf "$fio_t" "$target/fio-append"
warm
dio_args=""
for a in "$@"; do
  case $a in
    --fsync=*) dio_args="$dio_args --fsync ${a#--fsync=}" ;;
    *) dio_args="$dio_args $a" ;;
  esac
done
dio_json=$($pin "$build/tools/dio" bench "$dio_t" --backend "$backend" --rw "$rw" --bs "$bs" \
  --iodepth "$qd" --numjobs "$jobs" --runtime "$runtime" --size "$size" --json $dio_args)
dio_iops=$(printf '%s' "$dio_json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["iops"]))')
python3 - "$fio_iops" "$dio_iops" "$rw" "$bs" "$qd" "$jobs" "$backend" "$target" <<'PY'
import sys
fio, dio = float(sys.argv[1]), float(sys.argv[2])
print(f"{sys.argv[8]} {sys.argv[7]} {sys.argv[3]} bs={sys.argv[4]} qd={sys.argv[5]} jobs={sys.argv[6]}: "
      f"fio {fio:.0f} IOPS, libdio {dio:.0f} IOPS, ratio {dio / fio if fio else 0:.3f}")
PY
[ -d "$target" ] && rm -rf "$fio_t" "$target/fio-append"
exit 0
