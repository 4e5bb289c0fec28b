#!/usr/bin/env bash
# test_services.sh - Majordomo services through the broker with the
# kaizen client (kz_call) and worker (kz_serve): round trip with
# correlation, queueing until a worker comes, a malformed request gets an
# error reply (also one with no body or several body frames, after which
# the worker still serves), mmi.service, and interoperation with stock
# RFC 7 peers
source "$KZ_ROOT/tests/integration/lib.sh"

# 1 s heartbeats (liveness 3): a loaded machine that delays a beat by a
# few hundred ms does not make a peer look dead
kz_config <<'EOF2'
  heartbeat: 1s
EOF2
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

# a request sent before any worker exists waits in the broker: the
# broker's counters show it queued (no waiting to see nothing happen)
kz_python msgpack || fail "python3-msgpack is needed (apt-get install -y python3-msgpack)"
kz_start early "$KZ_TOOLS/kz_call" svc.echo -f text=early --timeout-ms 60000 --retries 1
kz_wait_for 60 kz_stats 'd["services"].get("svc.echo", {}).get("queued", 0) == 1' ||
    fail "the early request was not queued: $(kz_stats 'd["services"]')"
grep -q "svc.echo" "$T/early.log" && fail "a reply arrived before any worker"
kz_start serve "$KZ_TOOLS/kz_serve" svc.echo
kz_wait_log serve "serving 'svc.echo'" || fail "kz_serve did not start"
rc=0; wait "$PID_early" || rc=$?
((rc == 0)) || fail "queued request got no reply (exit $rc)"
grep -q '"text":"early"' "$T/early.log" || fail "queued request got a wrong reply"

# round trip: the reply's corr is the request's id, which the worker saw
"$KZ_TOOLS/kz_call" svc.echo -f text=hello -i n=7 --timeout-ms 30000 >"$T/reply.json" || fail "call failed"
grep -q '"body":{"text":"hello","n":7}' "$T/reply.json" || fail "wrong reply: $(cat "$T/reply.json")"
corr=$(sed -n 's/.*"corr":"\([0-9A-Z]*\)".*/\1/p' "$T/reply.json")
[[ -n "$corr" ]] || fail "reply has no corr"
grep -q "^got $corr\$" "$T/serve.log" || fail "reply corr $corr is not a request id the worker got"
grep -q '"src":"kz_serve#' "$T/reply.json" || fail "reply src is not the worker"

# a malformed request body gets an error envelope, not silence
"$KZ_TOOLS/kz_call" svc.echo --raw "not msgpack at all" --timeout-ms 30000 >"$T/bad.json" || fail "malformed call got no reply"
grep -q '"type":"error"' "$T/bad.json" || fail "malformed request: $(cat "$T/bad.json")"
grep -q '"code":"malformed"' "$T/bad.json" || fail "malformed request: $(cat "$T/bad.json")"

# a stock client may send no body frame, or several: the worker still
# answers each with an error envelope - the broker counts the request as
# the worker's current one until it replies, so silence would take the
# only worker out of service - and then serves a normal call
raw_request() { # SERVICE NBODY: MDPC01 from a DEALER, prints the reply's body frames
    /usr/bin/python3 - "$KZ_ROUTER" "$1" "$2" <<'PY'
import sys, zmq
endpoint, service, nbody = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(endpoint)
s.send_multipart([b"", b"MDPC01", service] + [b"x%d" % i for i in range(nbody)])
if not s.poll(60000):
    print("no reply within 60 s", file=sys.stderr)
    sys.exit(2)
frames = s.recv_multipart()
if frames[:3] != [b"", b"MDPC01", service]:
    print("unexpected reply frames %r" % frames[:3], file=sys.stderr)
    sys.exit(1)
for f in frames[3:]:
    print(f.decode("utf-8", "replace"))
PY
}
for nbody in 4 0; do
    raw_request svc.echo $nbody >"$T/raw$nbody.out" 2>"$T/raw$nbody.err" ||
        fail "request with $nbody body frames got no reply: $(cat "$T/raw$nbody.err")"
    grep -aq "malformed" "$T/raw$nbody.out" ||
        fail "reply to $nbody body frames is no error envelope: $(cat "$T/raw$nbody.out")"
    grep -aq "$nbody body frames" "$T/raw$nbody.out" ||
        fail "error for $nbody body frames does not say why: $(cat "$T/raw$nbody.out")"
done
"$KZ_TOOLS/kz_call" svc.echo -f text=after --timeout-ms 30000 >"$T/after.json" ||
    fail "the worker no longer serves after malformed requests"
grep -q '"text":"after"' "$T/after.json" || fail "wrong reply after malformed requests: $(cat "$T/after.json")"

# mmi.service answered by the broker
[[ $("$KZ_TOOLS/kz_call" mmi.service --raw svc.echo --timeout-ms 30000) == 200 ]] || fail "mmi.service svc.echo is not 200"
[[ $("$KZ_TOOLS/kz_call" mmi.service --raw svc.none --timeout-ms 30000) == 404 ]] || fail "mmi.service svc.none is not 404"

# a service nobody serves: the broker answers when the call's deadline
# passes, and says why (PROTOCOL.md 1.3), instead of letting it time out
"$KZ_TOOLS/kz_call" svc.none --timeout-ms 300 --retries 1 2>"$T/none.err" >"$T/none.json" ||
    fail "a call to a missing service got no answer: $(cat "$T/none.err")"
grep -q '"code":"no_worker"' "$T/none.json" || fail "unclear answer: $(cat "$T/none.json")"

# no reply at all (a worker holds the request and never answers): the
# client gives up after its attempts with a clear error
kz_start mute "$KZ_TOOLS/kz_serve" svc.mute --busy-ms 600000
kz_wait_log mute "serving 'svc.mute'" || fail "kz_serve svc.mute did not start"
rc=0; "$KZ_TOOLS/kz_call" svc.mute --timeout-ms 300 --retries 0 2>"$T/mute.err" >/dev/null || rc=$?
((rc == 1)) || fail "a call nobody answers exited $rc"
grep -q "no reply from 'svc.mute' after 1 attempt" "$T/mute.err" || fail "unclear error: $(cat "$T/mute.err")"

# stock RFC 7 peers
if [[ -x "$KZ_TOOLS/mdp_client" ]]; then
    # stock client -> kaizen worker: a text body is no envelope, so the
    # worker answers with an error envelope
    "$KZ_TOOLS/mdp_client" "$KZ_ROUTER" svc.echo "plain text" --timeout 30000 >"$T/mdp.out" ||
        fail "mdp_client got no reply from kz_serve"
    grep -aq "malformed" "$T/mdp.out" || fail "mdp_client reply is not the error envelope"
else
    echo "note: mdp_client not built, stock client check skipped"
fi
if [[ -x "$KZ_TOOLS/mdp_worker" ]]; then
    # kaizen client (raw frames) -> stock worker
    kz_start mdpw "$KZ_TOOLS/mdp_worker" "$KZ_ROUTER" svc.stock --name w1 --heartbeat 1000
    out=$("$KZ_TOOLS/kz_call" svc.stock --raw ping --timeout-ms 30000) || fail "kz_call to mdp_worker failed"
    [[ "$out" == "w1:ping" ]] || fail "mdp_worker replied '$out'"
else
    echo "note: mdp_worker not built, stock worker check skipped"
fi
echo "ok"
