#!/usr/bin/env bash
# test_nack.sh - queue-group members refusing deliveries (KZG01 NACK):
#   1. two members, one refuses every seq that is a multiple of 3 the
#      first time it sees it: the broker hands those out again, and in
#      the end every seq is handled (acked) exactly once by someone
#   2. a member that refuses everything, alone: the broker delivers each
#      event broker.max_deliveries (default 5) times, then drops it
#
# kz_sub writes "nack N" for a refused delivery and "seq N" for a handled
# one (before acking it), so "seq" lines count handlings.
source "$KZ_ROOT/tests/integration/lib.sh"
N=2000
M=20       # events for the poison part
MAXD=5     # broker.max_deliveries, default
PROBE=1000000

kz_config </dev/null
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

# lines (seq or nack) about probes in FILE
probes() { awk -v p=$PROBE '($1 == "seq" || $1 == "nack") && $2 >= p { n++ } END { print n + 0 }' "$1"; }
seq_p=$PROBE
# publish probes on TOPIC until every FILE shows one: the members have joined
wait_joined() {
    local topic=$1 f ok; shift
    local deadline=$((SECONDS + 60))
    for (( ;; )); do
        ok=1
        for f in "$@"; do (( $(probes "$f") > 0 )) || ok=0; done
        ((ok)) && return 0
        ((SECONDS < deadline)) || fail "members never all received a probe on $topic"
        "$KZ_TOOLS/kz_pub" "$topic" --start $seq_p >/dev/null 2>&1 || fail "kz_pub failed"
        seq_p=$((seq_p + 1))
        sleep 0.1
    done
}

# ---- 1. a member refusing a subset: everything is still handled once
kz_start m1 "$KZ_TOOLS/kz_sub" --group workers --prefix grp. --nack-every 3 --out "$T/m1.out"
kz_start m2 "$KZ_TOOLS/kz_sub" --group workers --prefix grp. --out "$T/m2.out"
touch "$T/m1.out" "$T/m2.out"
wait_joined grp.probe "$T/m1.out" "$T/m2.out"

"$KZ_TOOLS/kz_pub" grp.work --count $N --size 128 >"$T/pub.out" || fail "kz_pub failed"

handled() { cat "$T/m1.out" "$T/m2.out" | awk -v n=$N '$1 == "seq" && $2 < n && !s[$2]++ { c++ } END { print c + 0 }'; }
all_handled() { [[ $(handled) -ge $N ]]; }
kz_wait_for 60 all_handled || fail "members handled $(handled) of $N distinct events (NACKed ones not redelivered?)"

kill -TERM "$PID_m1" "$PID_m2"
wait "$PID_m1" || fail "member 1 exited with $?"
wait "$PID_m2" || fail "member 2 exited with $?"

count() { awk -v n=$N -v k="$2" '$1 == k && $2 < n { c++ } END { print c + 0 }' "$1"; }
s1=$(count "$T/m1.out" seq) s2=$(count "$T/m2.out" seq) n1=$(count "$T/m1.out" nack)
((s1 + s2 == N)) || fail "$((s1 + s2 - N)) events handled twice (m1 $s1, m2 $s2)"
((n1 > 0)) || fail "member 1 refused nothing, so nothing was tested"
bad=$(awk -v n=$N '$1 == "nack" && $2 < n && ($2 % 3 != 0 || s[$2]++) { c++ } END { print c + 0 }' "$T/m1.out")
((bad == 0)) || fail "member 1 refused $bad seqs it should not have (kz_sub --nack-every)"
echo "part 1 ok: m1 handled $s1 and refused $n1, m2 handled $s2"

# ---- 2. a member refusing everything: max_deliveries, then dropped
kz_start p1 "$KZ_TOOLS/kz_sub" --group poison --prefix poison. --nack-all --out "$T/p1.out"
touch "$T/p1.out"
wait_joined poison.probe "$T/p1.out"

"$KZ_TOOLS/kz_pub" poison.work --count $M >"$T/ppub.out" || fail "kz_pub failed"
# refusals of SEQ seen by p1
seen() { awk -v s="$1" '$1 == "nack" && $2 == s { c++ } END { print c + 0 }' "$T/p1.out"; }
all_refused() { awk -v m=$M -v d=$MAXD '$1 == "nack" && $2 < m { c[$2]++ }
    END { for (i = 0; i < m; i++) if (c[i] < d) exit 1 }' "$T/p1.out"; }
kz_wait_for 60 all_refused || fail "not every event was delivered $MAXD times"

# two sentinels, published after: once the second has been through all
# its deliveries, any further redelivery of earlier events would be seen
sentinel_done() { (($(seen "$1") >= MAXD)); }
for sentinel in 500000 500001; do
    "$KZ_TOOLS/kz_pub" poison.sentinel --start $sentinel >/dev/null 2>&1 || fail "kz_pub failed"
    kz_wait_for 60 sentinel_done $sentinel || fail "sentinel $sentinel delivered $(seen $sentinel) times, not $MAXD"
done
for ((s = 0; s < M; s++)); do
    c=$(seen $s)
    ((c == MAXD)) || fail "event $s was delivered $c times, expected $MAXD (broker.max_deliveries)"
done
c=$(seen 500000)
((c == MAXD)) || fail "sentinel 500000 was delivered $c times, expected $MAXD"
grep -q '^seq ' "$T/p1.out" && fail "the refusing member handled something"
echo "ok"
