#!/usr/bin/env bash
# test_group.sh - two members of one queue group share 10,000 events:
# every event is handled exactly once in total, and both members work
source "$KZ_ROOT/tests/integration/lib.sh"
N=10000

kz_config </dev/null
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

kz_start m1 "$KZ_TOOLS/kz_sub" --group workers --prefix grp. --out "$T/m1.out"
kz_start m2 "$KZ_TOOLS/kz_sub" --group workers --prefix grp. --out "$T/m2.out"
touch "$T/m1.out" "$T/m2.out"

# probes (seq >= 1000000) until both members got one: both have joined
probes() { awk '$1 == "seq" && $2 >= 1000000 { n++ } END { print n + 0 }' "$1"; }
seq_p=1000000
deadline=$((SECONDS + 60))
while (( $(probes "$T/m1.out") == 0 || $(probes "$T/m2.out") == 0 )); do
    ((SECONDS < deadline)) || fail "members never both received a probe"
    "$KZ_TOOLS/kz_pub" grp.probe --start $seq_p >/dev/null 2>&1 || fail "kz_pub failed"
    seq_p=$((seq_p + 1))
    sleep 0.1
done

"$KZ_TOOLS/kz_pub" grp.work --count $N --size 128 >"$T/pub.out" || fail "kz_pub failed"

union() { cat "$T/m1.out" "$T/m2.out" | awk -v n=$N '$1 == "seq" && $2 < n && !s[$2]++ { c++ } END { print c + 0 }'; }
all_done() { [[ $(union) -ge $N ]]; }
kz_wait_for 120 all_done || fail "members handled $(union) of $N distinct events"

# stop the members so nothing is in flight any more, then count
kill -TERM "$PID_m1" "$PID_m2"
wait "$PID_m1" || fail "member 1 exited with $?"
wait "$PID_m2" || fail "member 2 exited with $?"

c1=$(awk -v n=$N '$1 == "seq" && $2 < n { c++ } END { print c + 0 }' "$T/m1.out")
c2=$(awk -v n=$N '$1 == "seq" && $2 < n { c++ } END { print c + 0 }' "$T/m2.out")
[[ $(union) -eq $N ]] || fail "only $(union) of $N events handled"
((c1 + c2 == N)) || fail "$((c1 + c2 - N)) events handled twice (m1 $c1, m2 $c2)"
((c1 > 0 && c2 > 0)) || fail "one member did all the work (m1 $c1, m2 $c2)"
echo "ok: m1 $c1, m2 $c2"
