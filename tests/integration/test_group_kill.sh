#!/usr/bin/env bash
# test_group_kill.sh - a queue-group member killed with unacknowledged
# deliveries in flight: the broker hands them to the survivor.
#
# Accounting: kz_sub writes "seq N" before it acknowledges N. So a seq
# the dead member acked is in its file, and a seq it never acked is
# redelivered and lands in the survivor's file: the union must cover
# every seq. The slow member sleeps between writing and acking, so when
# it dies it has written seqs it never acked: the survivor handles those
# again, which shows the redelivery.
source "$KZ_ROOT/tests/integration/lib.sh"
N=10000

kz_config <<'EOF2'
  heartbeat: 250ms
  liveness: 3
EOF2
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

kz_start fast "$KZ_TOOLS/kz_sub" --group g --prefix kill. --out "$T/fast.out"
kz_start slow "$KZ_TOOLS/kz_sub" --group g --prefix kill. --ack-delay-ms 100 --out "$T/slow.out"
touch "$T/fast.out" "$T/slow.out"

probes() { awk '$1 == "seq" && $2 >= 1000000 { n++ } END { print n + 0 }' "$1"; }
seq_p=1000000
deadline=$((SECONDS + 60))
while (( $(probes "$T/fast.out") == 0 || $(probes "$T/slow.out") == 0 )); do
    ((SECONDS < deadline)) || fail "members never both received a probe"
    "$KZ_TOOLS/kz_pub" kill.probe --start $seq_p >/dev/null 2>&1 || fail "kz_pub failed"
    seq_p=$((seq_p + 1))
    sleep 0.1
done

"$KZ_TOOLS/kz_pub" kill.work --count $N >"$T/pub.out" || fail "kz_pub failed"

work() { awk -v n=$N '$1 == "seq" && $2 < n { c++ } END { print c + 0 }' "$1"; }
slow_started() { [[ $(work "$T/slow.out") -ge 5 ]]; }
kz_wait_for 60 slow_started || fail "the slow member handled nothing"
kill -KILL "$PID_slow"
wait "$PID_slow" 2>/dev/null

union() { cat "$T/fast.out" "$T/slow.out" | awk -v n=$N '$1 == "seq" && $2 < n && !s[$2]++ { c++ } END { print c + 0 }'; }
all_done() { [[ $(union) -ge $N ]]; }
kz_wait_for 120 all_done || fail "only $(union) of $N events accounted for after the kill"

slow=$(work "$T/slow.out")
again=$(awk -v n=$N 'FNR == NR { if ($1 == "seq" && $2 < n) s[$2] = 1; next }
                     $1 == "seq" && ($2 in s) { c++ } END { print c + 0 }' "$T/slow.out" "$T/fast.out")
((again > 0)) || fail "the survivor got none of the dead member's unacked events"
echo "ok: dead member handled $slow, survivor handled $(work "$T/fast.out") ($again redelivered after the kill)"
