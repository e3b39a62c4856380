#!/usr/bin/env bash
# dio fsck exit codes (0 clean, 1 problems, 8 could not check) and dio
# dump on sound and damaged volumes: superblock slots with checksums, the
# checkpoint's damaged blocks, journal transactions with their records
# and where replay stops and why.
. "$(dirname "$0")/lib.sh"
img=$dir/v.img
expect_rc 0 "$DIO" mkfs --size 64m --label dumped "$img"
expect_rc 0 "$DIO" io "$img" a -c "pwrite 0 64k" -c fsync
expect_rc 0 "$DIO" io "$img" b -c "falloc 0 16k" -c fsync

# ---- sound volume
expect_rc 0 "$DIO" fsck "$img"
expect_in "clean" "$out" "fsck of a sound volume"
expect_rc 0 "$DIO" --json fsck "$img"
expect_eq "$(jqo '.clean')" true "fsck --json clean"
expect_eq "$(jqo '.errors')" 0 "fsck --json errors"
expect_rc 0 "$DIO" --json dump "$img"
expect_eq "$(jqo '[.superblocks[] | select(.valid)] | length')" 2 "both superblock slots valid"
expect_eq "$(jqo '[.superblocks[] | select(.current)] | length')" 1 "one slot is current"
expect_eq "$(jqo '.superblocks[0].crc_stored == .superblocks[0].crc_computed')" true "slot 0 checksum"
expect_eq "$(jqo '.superblocks[0].label')" dumped "superblock label"
expect_eq "$(jqo '.checkpoint.loads')" true "checkpoint loads"
expect_eq "$(jqo '.checkpoint.nfiles')" 2 "checkpoint files"
expect_eq "$(jqo '.checkpoint.files[0].name')" a "checkpoint file name"
expect_eq "$(jqo '.checkpoint.damaged_blocks | length')" 0 "no damaged checkpoint block"
expect_eq "$(jqo '.journal.transactions | length')" 0 "an unmounted volume has an empty journal"
expect_eq "$(jqo '.journal.replay_stops.fails')" false "replay ends normally"
expect_eq "$(jqo '.bad.list | length')" 0 "no bad blocks"
for s in superblock checkpoint journal bad; do
  expect_rc 0 "$DIO" dump "$img" $s
done
expect_rc 2 "$DIO" dump "$img" nonsense

# ---- a journal with transactions: kvlog killed while it commits
kv=$dir/kv.img
"$EXAMPLES/kvlog" "$kv" load 100000 -t 2 --ack >"$dir/acked" &
pid=$!
for i in $(seq 100); do [ "$(wc -l <"$dir/acked")" -gt 50 ] && break; sleep 0.05; done
kill -KILL $pid; wait $pid 2>/dev/null
for i in $(seq 50); do "$DIO" ls "$kv" >/dev/null 2>&1 && break; sleep 0.1; done
expect_rc 0 "$DIO" --json dump "$kv" journal
n=$(jqo '.journal.transactions | length')
[ "$n" -ge 1 ] || fail "a killed kvlog left no journal transaction to replay"
expect_eq "$(jqo '[.journal.transactions[].records[].type] | index("SIZE") != null')" true "records decoded"
expect_eq "$(jqo '.journal.replay_stops.fails')" false "replay of a killed writer's journal ends normally"
expect_eq "$(jqo '.journal.replay_stops.reason | length > 0')" true "replay says why it stops"
expect_rc 0 "$DIO" dump "$kv" journal
expect_in "transaction at pos" "$out" "text dump of transactions"
expect_in "SIZE" "$out" "text dump of records"
expect_in "replay stops at pos" "$out" "text dump of the replay's end"
# damage the journal's second transaction: replay stops there, and says why
run "$DIO" --json dump "$kv"
if [ "$(jqo '.journal.transactions | length')" -ge 2 ]; then
  bs=$(jqo '.superblocks[0].block_size')
  js=$(jqo '.journal.start_block')
  pos=$(jqo '.journal.transactions[1].pos')
  printf 'XXXX' | dd of="$kv" bs=1 seek=$(( (js + pos) * bs + 100 )) conv=notrunc status=none
  expect_rc 0 "$DIO" --json dump "$kv" journal
  expect_eq "$(jqo '.journal.transactions | length')" 1 "replay stops at the damaged transaction"
  expect_in "checksum mismatch" "$(jqo '.journal.replay_stops.reason')" "why replay stops"
  expect_eq "$(jqo '.journal.replay_stops.pos')" "$pos" "where replay stops"
else
  fail "kvlog made fewer than two transactions"
fi

# ---- a damaged superblock slot: a warning, the volume still mounts
cp "$img" "$dir/sb.img"
printf 'XXXX' | dd of="$dir/sb.img" bs=1 seek=40 conv=notrunc status=none
expect_rc 0 "$DIO" --json dump "$dir/sb.img" superblock
expect_eq "$(jqo '.superblocks[0].state')" "checksum mismatch" "slot 0 state"
expect_eq "$(jqo '.superblocks[0].crc_stored != .superblocks[0].crc_computed')" true "slot 0 checksums shown"
expect_eq "$(jqo '.superblocks[1].valid')" true "slot 1 valid"
expect_rc 0 "$DIO" --json fsck "$dir/sb.img"
expect_eq "$(jqo '.warnings >= 1 and .errors == 0')" true "a damaged slot is a warning"
expect_rc 0 "$DIO" ls "$dir/sb.img"

# ---- a damaged checkpoint block: fsck finds it, mount refuses, dump shows it
cp "$img" "$dir/ck.img"
run "$DIO" --json dump "$dir/ck.img" checkpoint
start=$(jqo '.checkpoint.start_block')
printf 'XXXX' | dd of="$dir/ck.img" bs=1 seek=$(( start * 4096 + 200 )) conv=notrunc status=none
expect_rc 1 "$DIO" fsck "$dir/ck.img"
expect_in "error:" "$out" "fsck lists the problem"
expect_rc 1 "$DIO" --json fsck "$dir/ck.img"
expect_eq "$(jqo '.clean')" false "fsck --json of a damaged volume"
expect_eq "$(jqo '.errors >= 1')" true "fsck --json error count"
expect_rc 1 "$DIO" ls "$dir/ck.img"
expect_in "Structure needs cleaning" "$err" "mount of a damaged volume"
expect_rc 0 "$DIO" --json dump "$dir/ck.img" checkpoint
expect_eq "$(jqo '.checkpoint.loads')" false "the damaged checkpoint does not load"
expect_eq "$(jqo '.checkpoint.damaged_blocks[0].index')" 0 "the damaged block's index"
expect_eq "$(jqo '.checkpoint.damaged_blocks[0].problem')" "checksum mismatch" "the damaged block's problem"

# ---- a process-death log left by a put killed mid-copy (its temporary
# file's create is in no journal yet): pending in info, said by fsck,
# applied by the next read-write mount, then gone
pl=$dir/pl.img
expect_rc 0 "$DIO" mkfs --size 64m "$pl"
mkfifo "$dir/fifo"
( head -c 100000 /dev/urandom; sleep 20 ) >"$dir/fifo" &
feeder=$!
"$DIO" put "$pl" "$dir/fifo" partial &
pid=$!
sleep 1
kill -KILL $pid; wait $pid 2>/dev/null; kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
expect_rc 0 "$DIO" --json info "$pl"
expect_eq "$(jqo '.pending_log_records >= 1')" true "info: the killed put's calls are pending"
expect_rc 0 "$DIO" info "$pl"
expect_in "pending" "$out" "info text: pending records"
expect_rc 0 "$DIO" fsck "$pl"
expect_in "a mount would apply 1 metadata calls" "$err$out" "fsck says what the log holds"
expect_rc 0 "$DIO" ls "$pl"
expect_in ".dio-put." "$out" "the temporary file, from the log"
expect_rc 0 "$DIO" rm "$pl" "$(printf '%s' "$out" | head -1)"
expect_rc 0 "$DIO" --json info "$pl"
expect_eq "$(jqo '.pending_log_records')" 0 "no log pending after a read-write mount"

# ---- not a volume, missing, unreadable
head -c 1m /dev/zero >"$dir/zero.img"
expect_rc 8 "$DIO" fsck "$dir/zero.img"
expect_in "not a libdio volume" "$err" "fsck of something else: it could not check"
expect_rc 1 "$DIO" dump "$dir/zero.img"
expect_rc 1 "$DIO" info "$dir/zero.img"
expect_in "not a libdio volume" "$err" "mount of something else"
expect_rc 8 "$DIO" fsck "$dir/missing.img"
expect_in "No such file or directory" "$err" "fsck of a missing file"

finish
