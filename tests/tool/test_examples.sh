#!/usr/bin/env bash
# The example programs run: dio-copy, dio-demo, and kvlog -- puts, gets,
# deletes, compaction, and every acknowledged put surviving kill -9 at
# random moments of a group-committing load (DIO_KILL_ROUNDS rounds).
. "$(dirname "$0")/lib.sh"

expect_rc 0 "$EXAMPLES/dio-copy" "$dir/copy.img"
expect_in "identical" "$out" "dio-copy"
expect_rc 0 "$EXAMPLES/dio-copy" "$dir/copy.img"   # the volume exists now: mounted, not made
expect_rc 0 "$EXAMPLES/dio-demo" "$dir/demo.img"
expect_in "0 check(s) failed" "$out" "dio-demo"

K=$EXAMPLES/kvlog
kv=$dir/kv.img
expect_rc 0 "$K" "$kv" put alpha 1
expect_rc 0 "$K" "$kv" put beta two
expect_rc 0 "$K" "$kv" put alpha one
expect_rc 0 "$K" "$kv" get alpha
expect_eq "$out" one "kvlog get of an overwritten key"
expect_rc 0 "$K" "$kv" del beta
expect_rc 3 "$K" "$kv" get beta
expect_rc 0 "$K" "$kv" load 5000 -t 8
expect_in "5000 puts by 8 threads" "$out" "kvlog load"
commits=$(printf '%s' "$out" | sed -n 's/.* \([0-9]*\) commits.*/\1/p')
[ -n "$commits" ] && [ "$commits" -le 5000 ] || fail "group commit: $commits commits for 5000 puts"
expect_rc 0 "$K" "$kv" stats
expect_in "keys 5001 records 5004" "$out" "kvlog stats"
expect_rc 0 "$K" "$kv" compact
expect_rc 0 "$K" "$kv" stats
expect_in "keys 5001 records 5001" "$out" "compaction keeps the live records only"
expect_rc 0 "$K" "$kv" get key4321
expect_in "value-4321-" "$out" "a value after compaction"
expect_rc 0 "$K" "$kv" get alpha
expect_eq "$out" one "alpha after compaction"
expect_rc 0 "$DIO" fsck "$kv"
expect_rc 0 "$DIO" ls "$kv"
expect_eq "$out" kvlog.log "compaction renamed over the log"

# ---- kill -9 at random moments: every acknowledged put survives
rounds=${DIO_KILL_ROUNDS:-8}
for r in $(seq "$rounds"); do
  img=$dir/kill$((r % 2)).img   # two volumes, so later rounds find old logs
  "$K" "$img" load 200000 -t 4 --ack >"$dir/acked" &
  pid=$!
  sleep "0.$((RANDOM % 6 + 2))"
  kill -KILL $pid
  wait $pid 2>/dev/null
  for i in $(seq 50); do "$DIO" ls "$img" >/dev/null 2>&1 && break; sleep 0.1; done
  run "$DIO" fsck "$img"
  [ "$rc" = 0 ] || fail "round $r: fsck after kill -9: $out $err"
  "$K" "$img" dump | sort >"$dir/present"
  sort "$dir/acked" >"$dir/want"
  lost=$(comm -23 "$dir/want" "$dir/present" | wc -l)
  [ "$lost" = 0 ] || fail "round $r: $lost of $(wc -l <"$dir/want") acknowledged puts lost: $(comm -23 "$dir/want" "$dir/present" | head -3)"
  [ -s "$dir/want" ] || echo "round $r: killed before the first acknowledgement" >&2
done

finish
