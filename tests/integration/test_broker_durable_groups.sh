#!/usr/bin/env bash
# test_broker_durable_groups: a group declared in broker.durable_groups
# (the broker alone, no orchestrator):
#   1. exists from the broker's start: events published while it has no
#      member are queued, and delivered in order when a member joins;
#   2. survives kill -9 of the broker: what was never acknowledged is
#      queued again from STATE/broker/log (with or without a member that
#      held it), what was acknowledged is not;
#   3. a torn record at the end of the log (a crash mid-write) is skipped
#      and counted, and the rest still comes back.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"
kz_python msgpack || skip "no python3 with msgpack (apt-get install -y python3-msgpack)"

kz_config <<'EOF2'
broker:
  durable_groups:
    - name: dg
      prefix: "test."
EOF2
kz_at_exit kz_kill_leftovers
LOG=$T/state/broker/log

start_broker() {
    kz_start "broker$1" "$KZ_BIN/kaizen-broker"
    kz_wait_log "broker$1" "broker ready" || fail "broker $1 did not start"
    BROKER=$(eval echo "\$PID_broker$1")
}
kill_broker() { kill -KILL "$BROKER"; wait "$BROKER" 2>/dev/null; }
publish() { # FIRST COUNT: seqs FIRST.. handed over (flushed)
    "$KZ_TOOLS/kz_flush_pub" -c "$KAIZEN_CONFIG" --start "$1" --count "$2" --rate 2000 \
        --every 10 >"$T/pub.out" 2>"$T/pub.err" || fail "kz_flush_pub: $(cat "$T/pub.err")"
    grep -q "^published $2 confirmed $2\$" "$T/pub.out" || fail "not confirmed: $(tail -1 "$T/pub.out")"
}
# seqs NAME: the seq lines a member wrote, space-separated
seqs() { sed -n 's/^seq //p' "$T/$1.log" | tr '\n' ' ' | sed 's/ $//'; }
range() { seq -s ' ' "$1" "$2"; }
seqs_are() { [[ "$(seqs "$1")" == "$2" ]]; }

# ------------------------------------- 1. queued while there is no member
start_broker 1
kz_stats 'd["durable"]["enabled"] == 1' || fail "durability is off"
publish 0 100
kz_stats 'd["durable"]["unacked"] == 100' || fail "not logged: $(kz_stats 'd["durable"]')"
kz_start m1 "$KZ_TOOLS/kz_sub" -c "$KAIZEN_CONFIG" --group dg --prefix test. --count 100
kz_wait_for 60 seqs_are m1 "$(range 0 99)" || fail "member 1 got: $(seqs m1)"
kz_wait_for 30 kz_stats 'd["durable"]["unacked"] == 0' || fail "acks not logged"
wait "$PID_m1"

# ------------------------- 2. kill -9: unacknowledged events come back
# 10 events held by a member that never acknowledges (ack delay), 10
# more with nobody there: all 20 come back after the kill, nothing of 1.
kz_start m2 "$KZ_TOOLS/kz_sub" -c "$KAIZEN_CONFIG" --group dg --prefix test. --ack-delay-ms 600000
publish 1000 10
kz_wait_for 30 grep -q "^seq 1000$" "$T/m2.log" || fail "member 2 got nothing"
kill -KILL "$PID_m2"
wait "$PID_m2" 2>/dev/null
publish 1010 10
kill_broker
start_broker 2
kz_wait_log broker2 "20 events queued again" 30 || fail "not replayed: $(grep durable "$T/broker2.log")"
publish 2000 1
kz_start m3 "$KZ_TOOLS/kz_sub" -c "$KAIZEN_CONFIG" --group dg --prefix test. --count 21
kz_wait_for 60 seqs_are m3 "$(range 1000 1019) 2000" || fail "member 3 got: $(seqs m3)"
wait "$PID_m3"
kz_wait_for 30 kz_stats 'd["durable"]["unacked"] == 0' || fail "acks of member 3 not logged"

# --------------------------------------------- 3. a torn last record
publish 3000 5
kill_broker
seg=$(find "$LOG" -name '*.log' | sort | tail -1)
[[ -n $seg ]] || fail "no segment in $LOG"
# half a record: the magic, a length, no payload (a crash mid-write)
printf 'LDZK\x40\x00\x00\x00\x01\x02' >>"$seg"
start_broker 3
kz_wait_log broker3 "5 events queued again, 1 corrupt records skipped" 30 ||
    fail "torn record: $(grep durable "$T/broker3.log")"
kz_start m4 "$KZ_TOOLS/kz_sub" -c "$KAIZEN_CONFIG" --group dg --prefix test. --count 5
kz_wait_for 60 seqs_are m4 "$(range 3000 3004)" || fail "member 4 got: $(seqs m4)"
wait "$PID_m4"
# acknowledged everything: the old segments are gone
kz_wait_for 30 kz_stats 'd["durable"]["segments"] == 1' || fail "segments kept: $(ls "$LOG")"
echo "ok: durable group queued, replayed and trimmed"
