#!/usr/bin/env bash
# dio bench runs every mode briefly, on a volume and raw, and reports
# IOPS with CPU time per I/O (a smoke test: speed is measured in bench/).
. "$(dirname "$0")/lib.sh"
b=$dir/b.img
for args in "--rw randread --iodepth 1" "--rw randread --iodepth 8" "--rw randwrite --iodepth 8 --spin" \
            "--rw write --bs 64k --iodepth 4 --append" "--rw randrw --numjobs 2" "--rw write --append --fsync 1"; do
  expect_rc 0 "$DIO" --json bench "$b" --runtime 0.3 --size 4m $args
  expect_eq "$(jqo '.error')" 0 "bench $args: error"
  expect_eq "$(jqo '.iops > 0 and .cpu_us_per_io > 0')" true "bench $args: IOPS and CPU per I/O"
  expect_eq "$(jqo '.mode')" libdio "bench $args: mode"
  rm -f "$b"
done
expect_rc 0 "$DIO" --json bench "$dir/raw.img" --raw --runtime 0.3 --size 4m --iodepth 4
expect_eq "$(jqo '.mode')" raw "bench --raw"
expect_eq "$(jqo '.wait')" sleep "bench waits for completions by default"
expect_rc 0 "$DIO" bench "$b" --runtime=0.2 --size=4m
expect_in "IOPS" "$out" "text report"
expect_in "CPU/IO" "$out" "text report shows CPU per I/O"
expect_rc 2 "$DIO" bench "$b" --rw sideways
expect_rc 2 "$DIO" bench
finish
