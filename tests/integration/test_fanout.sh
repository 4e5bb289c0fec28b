#!/usr/bin/env bash
# test_fanout.sh - an event reaches every subscriber whose prefix matches
# it (prefix and exact topic), and no other subscriber
source "$KZ_ROOT/tests/integration/lib.sh"
N=3000

kz_config </dev/null
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

kz_start sub_prefix "$KZ_TOOLS/kz_sub" fan. --out "$T/prefix.out"
kz_start sub_exact "$KZ_TOOLS/kz_sub" fan.one --out "$T/exact.out"
kz_start sub_other "$KZ_TOOLS/kz_sub" other. --out "$T/other.out"
touch "$T/prefix.out" "$T/exact.out" "$T/other.out"

# publish one probe on TOPIC (seq SEQ) until every FILE has seen it:
# subscriptions travel asynchronously, this is how we know they arrived
probe() {
    local topic=$1 seq=$2; shift 2
    local deadline=$((SECONDS + 30)) f ok
    while ((SECONDS < deadline)); do
        "$KZ_TOOLS/kz_pub" "$topic" --start "$seq" >/dev/null 2>&1 || fail "kz_pub failed"
        ok=1
        for f in "$@"; do grep -qx "seq $seq" "$f" || ok=0; done
        ((ok)) && return 0
        sleep 0.2
    done
    return 1
}
probe fan.one 1000000 "$T/prefix.out" "$T/exact.out" || fail "subscribers never connected"
probe other.x 1000001 "$T/other.out" || fail "other subscriber never connected"

"$KZ_TOOLS/kz_pub" fan.one --count $N --size 200 >"$T/pub1.out" || fail "kz_pub fan.one failed"
"$KZ_TOOLS/kz_pub" fan.two --count $N --start 100000 >"$T/pub2.out" || fail "kz_pub fan.two failed"

count() { awk -v lo="$2" -v hi="$3" '$1 == "seq" && $2 >= lo && $2 < hi { n++ } END { print n + 0 }' "$1"; }
distinct() { awk -v lo="$2" -v hi="$3" '$1 == "seq" && $2 >= lo && $2 < hi && !s[$2]++ { n++ } END { print n + 0 }' "$1"; }
done_prefix() { [[ $(count "$T/prefix.out" 0 $N) -ge $N && $(count "$T/prefix.out" 100000 $((100000 + N))) -ge $N ]]; }
done_exact() { [[ $(count "$T/exact.out" 0 $N) -ge $N ]]; }
kz_wait_for 60 done_prefix || fail "prefix subscriber got $(count "$T/prefix.out" 0 $N)+$(count "$T/prefix.out" 100000 $((100000 + N))) of $((2 * N))"
kz_wait_for 60 done_exact || fail "exact subscriber got $(count "$T/exact.out" 0 $N) of $N"

# events pass through the broker in order: once a later probe reached the
# other subscriber, any fan.* event would have reached it before
probe other.x 1000002 "$T/other.out" || fail "other subscriber lost its connection"

[[ $(distinct "$T/prefix.out" 0 $N) -eq $N ]] || fail "prefix subscriber: missing fan.one events"
[[ $(count "$T/prefix.out" 0 $N) -eq $N ]] || fail "prefix subscriber: duplicate fan.one events"
[[ $(distinct "$T/prefix.out" 100000 $((100000 + N))) -eq $N ]] || fail "prefix subscriber: missing fan.two events"
[[ $(distinct "$T/exact.out" 0 $N) -eq $N ]] || fail "exact subscriber: missing events"
[[ $(count "$T/exact.out" 100000 $((100000 + N))) -eq 0 ]] || fail "exact subscriber got fan.two events"
[[ $(count "$T/other.out" 0 1000000) -eq 0 ]] || fail "other subscriber got fan.* events"
echo "ok: $N + $N events fanned out"
