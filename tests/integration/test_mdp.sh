#!/usr/bin/env bash
# test_mdp.sh - kaizen-broker serves stock Majordomo 0.1 (RFC 7) clients
# and workers: round trips, MMI (200/404/501), LRU sharing between
# workers, requeue of a request whose worker was killed with kill -9,
# client timeout with no worker, requests queued until a worker arrives,
# and a stock worker silent for 3x liveness x heartbeat while it works.
# shellcheck disable=SC2154,SC2119,SC2153 # PID_* and KZ_* are set by lib.sh
source "$KZ_ROOT/tests/integration/lib.sh"

CLIENT=$KZ_TOOLS/mdp_client
WORKER=$KZ_TOOLS/mdp_worker
[[ -x $CLIENT && -x $WORKER ]] || fail "build the test tools first ($CLIENT, $WORKER)"

# python with msgpack decodes mmi.stats (Debian: python3-msgpack)
kz_python msgpack || true

kz_config </dev/null
kz_start broker "$KZ_BIN/kaizen-broker" -c "$T/kaizen.yaml"
kz_wait_log broker "broker ready" 30 || fail "broker did not become ready"
R=$KZ_ROUTER

# mmi.service SERVICE == 200 (has_worker_at: on ENDPOINT)
has_worker() { [[ "$("$CLIENT" "$R" mmi.service "$1" --timeout 5000)" == 200 ]]; }
has_worker_at() {
    local c=()
    [[ $1 == tcp://* ]] && c=(--curve "$(kz_curve_keys operator)")
    [[ "$("$CLIENT" "$1" mmi.service "$2" --timeout 5000 "${c[@]}")" == 200 ]]
}

# stats EXPR: evaluate EXPR over the decoded mmi.stats map "d"
stats() { kz_stats "$1" "$R"; }

# --- round trip with a stock worker
kz_start w1 "$WORKER" "$R" echo --name w1
kz_wait_for 30 has_worker echo || fail "worker w1 never registered"
out=$("$CLIENT" "$R" echo hello --timeout 10000) || fail "echo round trip failed"
[[ "$out" == "w1:hello" ]] || fail "echo replied '$out', expected 'w1:hello'"
grep -q "got hello" "$T/w1.log" || fail "worker did not see the request"

# --- MMI
[[ "$("$CLIENT" "$R" mmi.service echo --timeout 5000)" == 200 ]] || fail "mmi.service echo is not 200"
[[ "$("$CLIENT" "$R" mmi.service no.such.service --timeout 5000)" == 404 ]] ||
    fail "mmi.service of an unknown service is not 404"
[[ "$("$CLIENT" "$R" mmi.nope x --timeout 5000)" == 501 ]] || fail "unknown mmi.* is not 501"

# --- two workers share the load (LRU): sequential requests alternate
kz_start w2 "$WORKER" "$R" echo --name w2
both_served() {
    local o
    o=$("$CLIENT" "$R" echo share --count 6 --timeout 10000) || return 1
    grep -q '^w1:share$' <<<"$o" && grep -q '^w2:share$' <<<"$o"
}
kz_wait_for 30 both_served || fail "two workers did not both get requests"
grep -q "got share" "$T/w2.log" || fail "w2 never got a request"

# --- a worker killed with kill -9 mid-request: the broker requeues the
# request and another worker completes it (client: no retries)
kz_start slow "$WORKER" "$R" job --name slow --delay-ms 60000
kz_wait_for 30 has_worker job || fail "slow worker never registered"
kz_start jobclient "$CLIENT" "$R" job task-1 --timeout 40000 --retries 0
kz_wait_log slow "got task-1" 30 || fail "slow worker never got the request"
kill -9 "$PID_slow"
kz_start fast "$WORKER" "$R" job --name fast
wait "$PID_jobclient"
rc=$?
[[ $rc -eq 0 ]] || fail "client of a killed worker's request exited $rc"
grep -qx "fast:task-1" "$T/jobclient.log" || fail "request was not completed by the second worker"
grep -q "requeueing its request" "$T/broker.log" || fail "broker did not log the requeue"

# --- no worker at all: the client times out cleanly, the broker is fine
"$CLIENT" "$R" nobody.home hi --timeout 1500 --retries 0 >/dev/null 2>&1
rc=$?
[[ $rc -eq 2 ]] || fail "client without a worker exited $rc, expected 2"
kill -0 "$PID_broker" || fail "broker died"
[[ "$("$CLIENT" "$R" echo again --timeout 10000)" == w[12]:again ]] ||
    fail "broker does not serve after a client timeout"

# --- requests queued while no worker is up are served when one arrives
kz_start lateclient "$CLIENT" "$R" later q-1 --timeout 40000 --retries 0
if [[ -n $PY ]]; then
    kz_wait_for 30 stats 'd["services"]["later"]["queued"] == 1' ||
        fail "request for 'later' was not queued"
else
    echo "note: no python msgpack, not checking that the request was queued first"
fi
kz_start late "$WORKER" "$R" later --name late
wait "$PID_lateclient"
rc=$?
[[ $rc -eq 0 ]] || fail "queued request client exited $rc"
grep -qx "late:q-1" "$T/lateclient.log" || fail "queued request was not served by the new worker"

# --- stats count what happened
if [[ -n $PY ]]; then
    stats 'd["services"]["echo"]["replies"] >= 8' || fail "mmi.stats echo replies wrong"
    stats 'd["services"]["job"]["replies"] == 1 and d["services"]["job"]["workers"] >= 1' ||
        fail "mmi.stats job service wrong"
    stats 'd["uptime_ms"] > 0' || fail "mmi.stats uptime wrong"
fi

# --- a stock worker is silent while it works: a request that takes 3x
# liveness x heartbeat is answered exactly once (the broker does not expire
# a busy worker; it only probes its connection). Own broker, 250ms beats;
# liveness 8 (2 s) so that an idle worker whose beats a loaded machine
# delays is not expired either (that would be logged and fail the test)
KZ_TRANSPORT=tcp kz_config "$T/hb.yaml" <<'EOF'
  heartbeat: 250ms
  liveness: 8
EOF
HB_ROUTER=$KZ_ROUTER
kz_start hbbroker "$KZ_BIN/kaizen-broker" -c "$T/hb.yaml"
kz_wait_log hbbroker "broker ready" 30 || fail "heartbeat broker did not become ready"
# (tcp: CURVE with the automatic keys the broker made; the stock tools
# take them as raw keys)
kz_start long "$WORKER" "$HB_ROUTER" long --name long --delay-ms 6000 --heartbeat 250 \
    $(kz_mdp_curve agent)
kz_wait_for 30 has_worker_at "$HB_ROUTER" long || fail "long worker never registered"
out=$("$CLIENT" "$HB_ROUTER" long job-1 --timeout 60000 --retries 0 $(kz_mdp_curve operator)) ||
    fail "long request got no reply: $out"
[[ "$out" == "long:job-1" ]] || fail "long request replied '$out', expected 'long:job-1'"
n=$(grep -c "got job-1" "$T/long.log")
[[ $n -eq 1 ]] || fail "the long request was executed $n times, expected once"
grep -q "requeueing\|expired" "$T/hbbroker.log" && fail "broker requeued or expired a busy worker"
grep -q "DISCONNECT" "$T/long.log" && fail "broker sent the busy worker DISCONNECT"
[[ "$("$CLIENT" "$HB_ROUTER" long job-2 --timeout 60000 --retries 0 $(kz_mdp_curve operator))" == "long:job-2" ]] ||
    fail "the long worker does not serve a second request"
kill -TERM "$PID_hbbroker"
wait "$PID_hbbroker"

kill -TERM "$PID_broker"
wait "$PID_broker"
rc=$?
[[ $rc -eq 0 ]] || fail "broker exited $rc after SIGTERM"
echo "ok"
