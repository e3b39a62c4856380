#!/bin/sh
# dio put / dio get against dd with O_DIRECT on the same disk, in one run:
#   put: a host file -> a libdio volume   vs  dd if=HOST of=RAW bs=1M oflag=direct conv=fdatasync
#   get: a libdio file -> a host file     vs  dd if=RAW of=HOST bs=1M oflag=direct conv=fdatasync
#                                         and dd if=RAW of=HOST bs=1M iflag=direct conv=fdatasync
# Every side starts from a fresh sparse image file in DIR and syncs once at
# the end; page caches are dropped before every timed command (root).
# This VM's disk is cached and written back by its host: a command that
# follows a big write pays for its writeback, and one that reads what the
# command before it read finds it in the host's cache.  So every timed
# command starts SETTLE seconds (default 10) after the last one, and the
# order alternates (dd first in odd rounds, dio first in even ones).
# Medians of the ratios dd time / dio time (> 1: dio faster) are printed.
#   bench/copy.sh DIR [MIB=1024] [ROUNDS=5]
set -e
dir=$1 mib=${2:-1024} rounds=${3:-5}
dio=${BUILD_DIR:-build}/tools/dio
src=$dir/copy-src.bin raw=$dir/copy-raw.img vol=$dir/copy-vol.img dst=$dir/copy-dst.bin
head -c $((mib << 20)) /dev/urandom >"$src"
sync
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
secs() { drop; sleep "${SETTLE:-10}"; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
ratio() { echo "$1 / $2" | bc -l; }
volsize=$(( (mib + 256) << 20 ))
put_r="" get_r="" geti_r=""
dd_put() { dd if="$src" of="$raw" bs=1M oflag=direct conv=fdatasync,notrunc; }
dio_put() { "$dio" -q put "$vol" "$src" f; }
dd_get() { rm -f "$dst"; dd if="$raw" of="$dst" bs=1M count=$mib oflag=direct conv=fdatasync; }
dd_geti() { rm -f "$dst"; dd if="$raw" of="$dst" bs=1M count=$mib iflag=direct conv=fdatasync; }
dio_get() { rm -f "$dst"; "$dio" -q get "$vol" f "$dst"; }
for r in $(seq "$rounds"); do
  rm -f "$raw" "$vol" "$dst"; truncate -s $volsize "$raw"; "$dio" -q mkfs --size $volsize "$vol"
  if [ $((r % 2)) = 1 ]; then
    a=$(secs dd_put); b=$(secs dio_put); c=$(secs dd_get); d=$(secs dio_get); e=$(secs dd_geti)
  else
    b=$(secs dio_put); a=$(secs dd_put); d=$(secs dio_get); c=$(secs dd_get); e=$(secs dd_geti)
  fi
  cmp -s "$src" "$dst" || { echo "copy differs"; exit 1; }
  "$dio" -q get "$vol" f "$dst" && cmp -s "$src" "$dst" || { echo "dio get differs"; exit 1; }
  put_r="$put_r $(ratio "$a" "$b")" get_r="$get_r $(ratio "$c" "$d")" geti_r="$geti_r $(ratio "$e" "$d")"
  printf 'round %d: put dd %.2f s, dio %.2f s (%.3f) | get dd oflag=direct %.2f s, dio %.2f s (%.3f), dd iflag=direct %.2f s (%.3f)\n' \
    "$r" "$a" "$b" "$(ratio "$a" "$b")" "$c" "$d" "$(ratio "$c" "$d")" "$e" "$(ratio "$e" "$d")"
done
med() { echo "$1" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {printf "%.3f (min %.3f, max %.3f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
echo "$mib MiB, $rounds rounds on $dir"
echo "put: dio vs dd oflag=direct: median $(med "$put_r")"
echo "get: dio vs dd oflag=direct: median $(med "$get_r")"
echo "get: dio vs dd iflag=direct: median $(med "$geti_r")"
rm -f "$src" "$raw" "$vol" "$dst"
