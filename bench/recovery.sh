#!/bin/sh
# Recovery bound, with the raw baseline of the same run: fio reading, with
# O_DIRECT, as many bytes as the 1M-extent checkpoint holds (24 MiB) and as
# the full journal (8 MiB), on the same target directory.
#   bench/recovery.sh [DIR] [BUILD_DIR]
set -e
dir=${1:-/dev/shm}
build=${2:-build}
f="$dir/dio-recovery-fio.img"
for mib in 8 24; do
  fio --name=raw --filename="$f" --size=${mib}M --rw=read --bs=1M --direct=1 --ioengine=psync \
      --output-format=terse --terse-version=3 >/tmp/dio-fio.$$ 2>&1
  # terse v3: field 7 = read bandwidth KiB/s, field 40 = read completion mean usec... use runtime (field 9, ms)
  awk -F';' -v m=$mib '{printf "fio baseline: O_DIRECT read of %d MiB at %.0f MiB/s = %.3f s\n", m, $7/1024, m/($7/1024)}' /tmp/dio-fio.$$
done
rm -f "$f" /tmp/dio-fio.$$
"$build/bench/dio-recovery" "$dir"
