#!/bin/sh
# Seed inputs for fuzz_mount: each real volume state untouched (re-sealed
# and not), and a few small patches into each of them.
set -e
dir=${1:-fuzz-corpus}
mkdir -p "$dir"
for s in 0 1 2 3 4 5 6 7; do
  printf "\\$(printf '%03o' $s)\\000" > "$dir/seed-$s-raw"
  printf "\\$(printf '%03o' $s)\\001" > "$dir/seed-$s-sealed"
  # patch 4 bytes at offset 8192+64 (journal) and 4096*20+64 (checkpoint area)
  printf "\\$(printf '%03o' $s)\\001\\100\\040\\000\\000\\004abcd" > "$dir/seed-$s-journal"
  printf "\\$(printf '%03o' $s)\\001\\100\\120\\001\\000\\004\\377\\377\\377\\377" > "$dir/seed-$s-ckpt"
done
