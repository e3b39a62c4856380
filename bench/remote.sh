#!/bin/bash
# libdio on an NBD export against fio's own nbd engine on the same export
# (issue 27): the same server (nbdkit, one process, on a Unix socket),
# the same workloads, alternating which side goes first, ROUNDS times;
# prints per workload the median IOPS of each side, CPU us per I/O of
# each client, and libdio's ratio to fio.
#   bench/remote.sh [ROUNDS=3] [RUNTIME=10] [PLUGIN="memory 2G"]
# PLUGIN is nbdkit's plugin and its arguments: "memory 2G" (RAM: what
# the clients cost), or "file /var/tmp/x.img" (a disk behind it).
# BUILD_DIR (default build).  Workloads: 4 KiB randread QD1 and QD32,
# 4 KiB randwrite QD32, 1 MiB sequential write QD8, over 256 MiB.
# libdio runs `dio bench URI` (a file in a volume made on the export);
# fio runs --ioengine=nbd on the export's first 256 MiB.
set -euo pipefail
rounds=${1:-3} runtime=${2:-10} plugin=${3:-memory 2G}
build=${BUILD_DIR:-build}
dio=$build/tools/dio
tmp=$(mktemp -d)
sock=$tmp/nbd.sock
uri="nbd+unix:///?socket=$sock"
raw=$tmp/raw
# shellcheck disable=SC2086
nbdkit -f -U "$sock" $plugin 2>/dev/null &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
"$dio" mkfs "$uri" >/dev/null

workloads="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 write-1m-qd8"
params() {   # params WORKLOAD: rw bs iodepth
  case $1 in
    randread-4k-qd1) echo "randread 4k 1" ;;
    randread-4k-qd32) echo "randread 4k 32" ;;
    randwrite-4k-qd32) echo "randwrite 4k 32" ;;
    write-1m-qd8) echo "write 1m 8" ;;
  esac
}

one() {   # one SIDE WORKLOAD: appends "SIDE WORKLOAD iops cpu_us_per_io"
  local side=$1 w=$2 rw bs qd
  read -r rw bs qd <<<"$(params "$w")"
  if [ "$side" = libdio ]; then
    "$dio" bench "$uri" --rw "$rw" --bs "$bs" --iodepth "$qd" --size 256m --runtime "$runtime" --json >"$tmp/out"
    jq -r --arg s "$side" --arg w "$w" '"\($s) \($w) \(.iops) \(.cpu_us_per_io)"' "$tmp/out" >>"$raw"
  else
    fio --name=nbd --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" --size=256m \
        --runtime="$runtime" --time_based --output-format=json --output="$tmp/out" >/dev/null
    jq -r --arg s "$side" --arg w "$w" '.jobs[0] as $j | ($j.read.iops + $j.write.iops) as $n |
      "\($s) \($w) \($n) \(($j.usr_cpu + $j.sys_cpu) * 10000 / ($n | if . == 0 then 1 else . end))"' \
      "$tmp/out" >>"$raw"
  fi
}

for r in $(seq "$rounds"); do
  order="libdio fio"
  [ $((r % 2)) = 0 ] && order="fio libdio"
  for side in $order; do
    for w in $workloads; do one "$side" "$w"; done
  done
done

med() {   # med SIDE WORKLOAD FIELD
  awk -v s="$1" -v w="$2" -v f="$3" '$1 == s && $2 == w {print $f}' "$raw" |
    sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}
echo "| workload | libdio IOPS | fio nbd IOPS | libdio / fio | CPU us/IO libdio | CPU us/IO fio |"
echo "|---|---|---|---|---|---|"
for w in $workloads; do
  l=$(med libdio "$w" 3) f=$(med fio "$w" 3)
  printf '| %s | %.0f | %.0f | **%.2f** | %.1f | %.1f |\n' "$w" "$l" "$f" "$(echo "$l / $f" | bc -l)" \
    "$(med libdio "$w" 4)" "$(med fio "$w" 4)"
done
echo
echo "raw (side workload iops cpu_us_per_io):"
cat "$raw"
