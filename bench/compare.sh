#!/bin/sh
# Run the same workload with fio (the baseline) and with `dio bench` on the
# same target directory or device in one run, and print the ratio.
#
#   bench/compare.sh DIR_OR_DEVICE BACKEND RW BS IODEPTH NUMJOBS [RUNTIME] [SIZE] [extra dio bench args]
#   e.g. bench/compare.sh /dev/shm psync randread 4k 1 1 10 256m
#
# BACKEND psync|uring|aio maps to fio's psync|io_uring|libaio; auto (what
# a mount picks by default) is compared with fio's psync at iodepth 1
# (libdio's synchronous calls) and with io_uring above.  On a directory,
# fio uses DIR/fio.img and dio bench DIR/dio.img.
#
# ROUNDS=N (default 1) runs fio and libdio N times each, alternating
# (fio first in odd rounds, libdio first in even ones: the disk here drifts
# by 20 % between minutes) and prints the median ratio with its spread
# over the rounds, and each side's median CPU time per I/O (user + system:
# fio's usr_cpu/sys_cpu, dio bench's getrusage).  DIO_BIN=path runs
# another build of dio (an A/B of two commits).
set -e
target=$1 backend=$2 rw=$3 bs=$4 qd=$5 jobs=$6 runtime=${7:-10} size=${8:-256m}
shift 8 2>/dev/null || shift $#
build=${BUILD_DIR:-build}
case $backend in
  psync) engine=psync ;; uring) engine=io_uring ;; aio) engine=libaio ;;
  auto) if [ "$qd" = 1 ]; then engine=psync; else engine=io_uring; fi ;;
  *) echo "backend?"; exit 2 ;;
esac
dio_bin=${DIO_BIN:-$build/tools/dio}
rounds=${ROUNDS:-1}
if [ -d "$target" ]; then fio_t="$target/fio.img"; dio_t="$target/dio.img"; else fio_t=$target; dio_t=$target; fi
# BENCH_CPU=N: one-job runs of fio and dio bench both pinned to CPU N.
# Off by default: pinned, the submitter competes with the io-wq workers
# that serve io_uring on tmpfs (both fio and libdio fall to a third).
pin=""
if [ -n "$BENCH_CPU" ] && [ "$jobs" = 1 ]; then pin="taskset -c $BENCH_CPU"; fi
extra_fio="" fio_where="--filename=$fio_t" append_dir=""
for a in "$@"; do
  case $a in
    --fsync=*) extra_fio="$extra_fio --fdatasync=${a#--fsync=}" ;;
    --fixedbufs) extra_fio="$extra_fio --fixedbufs" ;;
    --norandommap) extra_fio="$extra_fio --norandommap" ;;
    --append)  # every job appends to a fresh file of its own, which grows
               # with its writes as libdio's do (fio would fallocate --size
               # first, and on tmpfs allocate every page before timing)
               append_dir="$target/fio-append"
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
dio_args=""
for a in "$@"; do
  case $a in
    --fsync=*) dio_args="$dio_args --fsync ${a#--fsync=}" ;;
    *) dio_args="$dio_args $a" ;;
  esac
done
# each prints "IOPS CPU_US_PER_IO"
run_fio() {
  warm
  if [ -n "$append_dir" ]; then mkdir -p "$append_dir"; rm -f "$append_dir"/*; fi
  $pin fio --name=base $fio_where --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$jobs" \
    --size="$size" --runtime="$runtime" --time_based --direct=1 --ioengine="$engine" --group_reporting \
    --randrepeat=0 $extra_fio --output-format=json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
ios = j["read"]["total_ios"] + j["write"]["total_ios"]
cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100.0 * j["job_runtime"] / 1000.0
print(round(j["read"]["iops"] + j["write"]["iops"]), round(cpu * 1e6 / ios, 2) if ios else 0)'
  [ -d "$target" ] && rm -rf "$fio_t" "$target/fio-append"
  return 0
}
run_dio() {
  warm
  $pin "$dio_bin" bench "$dio_t" --backend "$backend" --rw "$rw" --bs "$bs" \
    --iodepth "$qd" --numjobs "$jobs" --runtime "$runtime" --size "$size" --json $dio_args | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(round(j["iops"]), j["cpu_us_per_io"])'
  [ -d "$target" ] && rm -rf "$dio_t"
  return 0
}
results=""
r=1
while [ "$r" -le "$rounds" ]; do
  if [ $((r % 2)) = 1 ]; then f=$(run_fio); d=$(run_dio); else d=$(run_dio); f=$(run_fio); fi
  results="$results $f $d"
  r=$((r + 1))
done
python3 - "$rw" "$bs" "$qd" "$jobs" "$backend" "$target" "$engine" $results <<'PY'
import statistics, sys
rw, bs, qd, jobs, backend, target, engine = sys.argv[1:8]
v = [float(x) for x in sys.argv[8:]]
rounds = [v[i:i + 4] for i in range(0, len(v), 4)]   # fio iops, fio cpu, dio iops, dio cpu
ratios = sorted(r[2] / r[0] if r[0] else 0 for r in rounds)
med = lambda k: statistics.median(r[k] for r in rounds)
line = (f"{target} {backend} {rw} bs={bs} qd={qd} jobs={jobs}: fio({engine}) {med(0):.0f} IOPS "
        f"{med(1):.2f} us/io, libdio {med(2):.0f} IOPS {med(3):.2f} us/io, ratio {statistics.median(ratios):.3f}")
if len(rounds) > 1:
    cpu = med(3) / med(1) if med(1) else 0
    line += f" (median of {len(rounds)}, {ratios[0]:.3f}-{ratios[-1]:.3f}; CPU/IO {cpu:.2f}x fio's)"
print(line)
PY
exit 0
