#!/usr/bin/env bash
# test_broker_faults.sh - kaizen-broker survives malformed traffic and
# counts it, refuses oversize messages, refuses to start twice on the same
# tcp ports or ipc paths (while binding over a stale ipc file), rejects a
# broken config with FILE:LINE:COL, and exits 0 quickly on SIGTERM.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$KZ_ROOT/tests/integration/lib.sh"

CLIENT=$KZ_TOOLS/mdp_client
WORKER=$KZ_TOOLS/mdp_worker
GARBAGE=$KZ_TOOLS/kz_garbage
[[ -x $CLIENT && -x $WORKER && -x $GARBAGE ]] || fail "build the test tools first"

kz_python msgpack || skip "python3 msgpack is not installed (apt-get install python3-msgpack)"

# the indented lines continue the "bus:" map kz_config writes
kz_config <<'EOF'
  max_message_size: 64KiB
broker:
  service_queue_limit: 3
  request_ttl: 10s
EOF
IPC_CONFIG=$T/kaizen.yaml
IPC_PUB=$KZ_PUB IPC_SUB=$KZ_SUB IPC_ROUTER=$KZ_ROUTER IPC_TAP=$KZ_TAP
R=$IPC_ROUTER

kz_start broker "$KZ_BIN/kaizen-broker" -c "$IPC_CONFIG"
kz_wait_log broker "broker ready" 30 || fail "broker did not become ready"

has_worker() { [[ "$("$CLIENT" "$1" mmi.service "$2" --timeout 5000)" == 200 ]]; }
stats() { kz_stats "$1" "$R"; }

kz_start w1 "$WORKER" "$R" echo --name w1
kz_wait_for 30 has_worker "$R" echo || fail "worker never registered"

# --- garbage on every endpoint: the broker keeps serving and counts drops
"$GARBAGE" "$IPC_PUB" "$IPC_SUB" "$IPC_ROUTER" "$IPC_TAP" >"$T/garbage.out" 2>&1 ||
    fail "kz_garbage failed: $(cat "$T/garbage.out")"
kill -0 "$PID_broker" || fail "broker died on garbage"
[[ "$("$CLIENT" "$R" echo after-garbage --timeout 10000)" == "w1:after-garbage" ]] ||
    fail "no round trip after the garbage"
for reason in "malformed event" "unknown protocol" "malformed request" \
    "malformed worker command" "malformed group command" "bad delivery id" \
    "unknown worker" "unknown member" "too many frames"; do
    kz_wait_for 30 stats "d['drops'].get('$reason', 0) > 0" ||
        fail "mmi.stats shows no drop for '$reason': $(stats 'd["drops"]')"
done
# drops are logged, but rate-limited: far fewer lines than drops
nlines=$(grep -c "dropped malformed event" "$T/broker.log")
ndrops=$(stats "d['drops']['malformed event']")
((nlines < ndrops)) || fail "drop logging is not rate-limited ($nlines lines for $ndrops drops)"

# --- oversize message (bus.max_message_size 64KiB) is refused
"$GARBAGE" --oversize "$R" echo 200000 >"$T/oversize.out" 2>&1 ||
    fail "oversize message was not refused: $(cat "$T/oversize.out")"
grep -q "got xxxxxxxx" "$T/w1.log" && fail "the worker got the oversize request"
[[ "$("$CLIENT" "$R" echo after-oversize --timeout 10000)" == "w1:after-oversize" ]] ||
    fail "no round trip after the oversize message"

# --- requests for a service without workers: at most service_queue_limit
# are queued (the rest dropped), and queued ones expire after request_ttl
# (counted as "no worker": nobody serves the service).
# One at a time, each queued before the next is sent, so the fourth meets
# a full queue however slowly the clients start (request_ttl leaves room)
for i in 1 2 3 4; do
    kz_start "lonely$i" "$CLIENT" "$R" lonely "req-$i" --timeout 6000 --retries 0
    ((i < 4)) || break
    kz_wait_for 60 stats "d['services'].get('lonely', {}).get('queued', 0) >= $i" ||
        fail "request $i was not queued: $(stats 'd["services"]')"
done
kz_wait_for 60 stats "d['drops'].get('service queue full', 0) >= 1" ||
    fail "a full service queue did not drop: $(stats 'd["drops"]')"
kz_wait_for 60 stats "d['drops'].get('no worker', 0) >= 3" ||
    fail "queued requests did not expire: $(stats 'd["drops"]')"
stats "d['services']['lonely']['queued'] == 0 and d['services']['lonely']['requests'] == 4" ||
    fail "wrong stats for the lonely service: $(stats 'd["services"]["lonely"]')"
for i in 1 2 3 4; do
    pid_var=PID_lonely$i
    wait "${!pid_var}"
    rc=$?
    [[ $rc -eq 2 ]] || fail "client $i of a service without workers exited $rc, expected 2"
done
# a worker arriving now gets none of the expired requests
kz_start lonelyworker "$WORKER" "$R" lonely --name late
kz_wait_for 30 has_worker "$R" lonely || fail "lonely worker never registered"
[[ "$("$CLIENT" "$R" lonely fresh --timeout 10000)" == "late:fresh" ]] ||
    fail "lonely service does not serve a fresh request"
grep -q "got req-" "$T/lonelyworker.log" && fail "an expired request was delivered"

# --- a second broker on the same ipc paths refuses to start
"$KZ_BIN/kaizen-broker" -c "$IPC_CONFIG" >"$T/second-ipc.out" 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "second broker on the same ipc paths exited $rc, expected 1"
grep -q "unable to bind 'ipc://.*': Address already in use (is another kaizen-broker running?)" \
    "$T/second-ipc.out" || fail "unclear second-broker message: $(cat "$T/second-ipc.out")"
[[ "$("$CLIENT" "$R" echo still-first --timeout 10000)" == "w1:still-first" ]] ||
    fail "the first broker stopped serving after a second one tried its ipc paths"

# --- the same on tcp endpoints
KZ_TRANSPORT=tcp kz_config "$T/tcp.yaml" </dev/null
TCP_ROUTER=$KZ_ROUTER
kz_start tcpbroker "$KZ_BIN/kaizen-broker" -c "$T/tcp.yaml"
kz_wait_log tcpbroker "broker ready" 30 || fail "tcp broker did not become ready"
"$KZ_BIN/kaizen-broker" -c "$T/tcp.yaml" >"$T/second-tcp.out" 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "second broker on the same tcp ports exited $rc, expected 1"
grep -q "unable to bind 'tcp://127.0.0.1:[0-9]*': Address already in use (is another kaizen-broker running?)" \
    "$T/second-tcp.out" || fail "unclear second-broker message: $(cat "$T/second-tcp.out")"
kill -0 "$PID_tcpbroker" || fail "the first tcp broker died"
# (CURVE: tcp comes with the automatic keys the broker made)
[[ "$("$CLIENT" "$TCP_ROUTER" mmi.service echo --timeout 10000 $(kz_mdp_curve operator))" == 404 ]] ||
    fail "the first tcp broker does not answer"
# garbage over tcp too (raw bytes that are not ZMTP take another code path)
# (its ZeroMQ sockets with the orchestrator's automatic keys: the least
# refused role, so every answer the check waits for comes)
KZ_GARBAGE_CURVE=$(kz_curve_keys orchestrator) \
    "$GARBAGE" "$KZ_PUB" "$KZ_SUB" "$KZ_ROUTER" "$KZ_TAP" >"$T/garbage-tcp.out" 2>&1 ||
    fail "kz_garbage over tcp failed: $(cat "$T/garbage-tcp.out")"
kill -0 "$PID_tcpbroker" || fail "the tcp broker died on garbage"

# --- a broken config: exit 1 naming FILE:LINE:COL
printf 'bus:\n  endpoints:\n    pub: [unclosed\n' >"$T/bad.yaml"
"$KZ_BIN/kaizen-broker" -c "$T/bad.yaml" >"$T/bad.out" 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "broken config exited $rc, expected 1"
grep -Eq "bad.yaml:[0-9]+:[0-9]+" "$T/bad.out" || fail "no FILE:LINE:COL in: $(cat "$T/bad.out")"
"$KZ_BIN/kaizen-broker" --no-such-flag >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "an unknown flag does not exit 2"

# --- SIGTERM: exit 0 quickly
stop_broker() {
    local pid=$1 start=$SECONDS
    kill -TERM "$pid"
    kz_wait_for 30 bash -c "! kill -0 $pid" || fail "broker $pid still running 30s after SIGTERM"
    wait "$pid"
    local rc=$?
    [[ $rc -eq 0 ]] || fail "broker exited $rc after SIGTERM"
    echo "broker $pid stopped in $((SECONDS - start))s"
}
stop_broker "$PID_tcpbroker"
stop_broker "$PID_broker"
for ep in "$IPC_PUB" "$IPC_SUB" "$IPC_ROUTER" "$IPC_TAP"; do
    [[ -e ${ep#ipc://} ]] && fail "broker left its socket file ${ep#ipc://} behind"
done

# --- a stale ipc file (nobody listening) does not stop a new broker
"$PY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
    "${IPC_ROUTER#ipc://}" || fail "unable to create a stale socket file"
[[ -S ${IPC_ROUTER#ipc://} ]] || fail "stale socket file missing"
kz_start broker2 "$KZ_BIN/kaizen-broker" -c "$IPC_CONFIG"
kz_wait_log broker2 "broker ready" 30 || fail "broker refused a stale ipc file"
[[ "$("$CLIENT" "$R" mmi.service echo --timeout 10000)" =~ ^(200|404)$ ]] ||
    fail "broker over a stale ipc file does not answer"
stop_broker "$PID_broker2"
echo "ok"
