#!/usr/bin/env bash
# test_reconnect.sh - the broker dies (kill -9) and comes back on the same
# endpoints: a subscriber, a publisher, a group member and a service
# worker all work again without being restarted
source "$KZ_ROOT/tests/integration/lib.sh"

kz_config <<'EOF2'
  heartbeat: 250ms
  liveness: 3
EOF2
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

kz_start sub "$KZ_TOOLS/kz_sub" rc. --out "$T/sub.out"
kz_start member "$KZ_TOOLS/kz_sub" --group rcg --prefix rc. --out "$T/member.out"
kz_start worker "$KZ_TOOLS/kz_serve" rc.svc
kz_start pub "$KZ_TOOLS/kz_pub" rc.tick --count 0 --rate 50
touch "$T/sub.out" "$T/member.out"

lines() { wc -l <"$1"; }
grown() { [[ $(lines "$1") -gt $2 ]]; }
kz_wait_for 30 grown "$T/sub.out" 0 || fail "subscriber got nothing before the restart"
kz_wait_for 30 grown "$T/member.out" 0 || fail "group member got nothing before the restart"
kz_wait_for 30 "$KZ_TOOLS/kz_call" rc.svc -f phase=before --timeout-ms 2000 --retries 1 ||
    fail "service call failed before the restart"

kill -KILL "$PID_broker"
wait "$PID_broker" 2>/dev/null
kz_start broker2 "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker2 "broker ready" || fail "broker did not restart"

# whatever the old broker had sent is written by now (the restart took
# at least that long); more lines can only come through the new broker
sub_n=$(lines "$T/sub.out")
member_n=$(lines "$T/member.out")
kz_wait_for 60 grown "$T/sub.out" $((sub_n + 10)) || fail "subscriber or publisher did not recover"
kz_wait_for 60 grown "$T/member.out" $((member_n + 10)) || fail "group member did not recover"
kz_wait_for 60 "$KZ_TOOLS/kz_call" rc.svc -f phase=after --timeout-ms 2000 --retries 1 ||
    fail "service call failed after the restart"
"$KZ_TOOLS/kz_call" rc.svc -f phase=check --timeout-ms 5000 | grep -q '"phase":"check"' ||
    fail "service reply after the restart is wrong"

# second outage, long enough for every client to notice the silence
# (liveness 3 x 250ms) and reconnect on fresh sockets
kill -KILL "$PID_broker2"
wait "$PID_broker2" 2>/dev/null
noticed() { grep -q "broker silent" "$T/member.log" && grep -q "broker silent" "$T/worker.log"; }
kz_wait_for 30 noticed || fail "clients did not notice the dead broker"
kz_start broker3 "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker3 "broker ready" || fail "broker did not restart a second time"
sub_n=$(lines "$T/sub.out")
member_n=$(lines "$T/member.out")
kz_wait_for 60 grown "$T/sub.out" $((sub_n + 10)) || fail "subscriber or publisher did not recover twice"
kz_wait_for 60 grown "$T/member.out" $((member_n + 10)) || fail "group member did not recover twice"
"$KZ_TOOLS/kz_call" rc.svc -f phase=again --timeout-ms 5000 --retries 3 | grep -q '"phase":"again"' ||
    fail "service call failed after the second restart"

kill -0 "$PID_sub" "$PID_member" "$PID_worker" "$PID_pub" || fail "a client died during the restart"
echo "ok: sub $(lines "$T/sub.out") lines, member $(lines "$T/member.out") lines"
