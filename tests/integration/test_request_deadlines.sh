#!/usr/bin/env bash
# test_request_deadlines.sh - no silent waits on the service bus: every
# kaizen request carries its deadline, and the broker answers at once
#   - a request for a service nobody serves: "no_worker" after
#     broker.request_ttl, however long the client would wait;
#   - a request queued behind a busy worker past its own deadline:
#     "expired" (the client acts on it instead of timing out blind);
#   - a request refused by a full queue: "queue_full" at once, which
#     kz_bus_call sends again after a back-off while it has time;
#   - a request still queued whose client publishes request.cancel: the
#     broker drops it, and no worker ever sees it;
#   - a request a worker holds whose client gives up: the worker hears the
#     client's request.cancel and stops its work;
#   - a stock RFC 7 client still only times out (no kaizen envelope).
# Every wait is for an event (a log line, a counter), never a fixed time.
source "$KZ_ROOT/tests/integration/lib.sh"
kz_python msgpack zmq || skip "no python3 with msgpack and zmq"

kz_config <<'EOF'
  heartbeat: 250ms
broker:
  request_ttl: 3s
  service_queue_limit: 2
EOF
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
stats() { kz_stats "$1"; }
code_of() { sed -n 's/.*"code":"\([a-z_]*\)".*/\1/p' "$1"; }

# --- nobody serves it: no_worker after request_ttl (3 s), not after the
#     client's 120 s
"$KZ_TOOLS/kz_call" svc.none --timeout-ms 120000 --retries 0 >"$T/none.json" 2>"$T/none.err" ||
    fail "no answer for a service nobody serves: $(cat "$T/none.err")"
[[ $(code_of "$T/none.json") == no_worker ]] || fail "no_worker expected: $(cat "$T/none.json")"
grep -q "no worker serves 'svc.none'" "$T/none.json" || fail "the answer does not say why: $(cat "$T/none.json")"
grep -q '"src":"kaizen-broker@' "$T/none.json" || fail "the answer is not the broker's: $(cat "$T/none.json")"
stats "d['drops'].get('no worker') == 1" || fail "no_worker not counted: $(stats 'd["drops"]')"

# --- a busy worker (it holds its request until cancelled) and a request
#     queued behind it past its deadline: expired, at the deadline
kz_start slow "$KZ_TOOLS/kz_serve" svc.slow --busy-ms 600000 --cancellable
kz_wait_log slow "serving 'svc.slow'" || fail "kz_serve did not start"
kz_start first "$KZ_TOOLS/kz_call" svc.slow -f n=first --timeout-ms 600000 --retries 0
kz_wait_for 60 grep -q "^got " "$T/slow.log" || fail "the worker never got the first request"
"$KZ_TOOLS/kz_call" svc.slow -f n=second --timeout-ms 2000 --retries 0 >"$T/second.json" 2>"$T/second.err" ||
    fail "a request queued past its deadline got no answer: $(cat "$T/second.err")"
[[ $(code_of "$T/second.json") == expired ]] || fail "expired expected: $(cat "$T/second.json")"
grep -q "waited [0-9]* ms in the broker's queue and passed its deadline (1 worker, all busy)" "$T/second.json" ||
    fail "the expiry does not say why: $(cat "$T/second.json")"
[[ $(grep -c "^got " "$T/slow.log") == 1 ]] || fail "the worker got the expired request"

# --- a queued request whose client cancels it: dropped, never served.
#     A client of its own, so that the request and the cancel have the
#     same src (the broker ignores a cancel from anyone else)
cat >"$T/canceller.py" <<'PY'
import sys, time, msgpack, zmq
router, pub, tap = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = zmq.Context()
def stats():
    s = ctx.socket(zmq.DEALER); s.setsockopt(zmq.LINGER, 0); s.connect(router)
    s.send_multipart([b"", b"MDPC01", b"mmi.stats", b"x"])
    if not s.poll(5000):
        sys.exit("no mmi.stats reply")
    d = msgpack.unpackb(s.recv_multipart()[3], raw=False)
    s.close()
    return d
def wait(what, pred):
    for _ in range(600):
        d = stats()
        if pred(d):
            return
        time.sleep(0.1)
    sys.exit("timed out waiting for " + what + ": %r" % d)
d = ctx.socket(zmq.DEALER); d.setsockopt(zmq.LINGER, 0); d.connect(router)
p = ctx.socket(zmq.XPUB); p.setsockopt(zmq.LINGER, 1000); p.connect(pub)
p.recv()  # the broker's subscription: publishing from now on arrives
now = int(time.time() * 1e6)
def env(type_, id_, body, src="canceller@test#1", deadline=None):
    m = {"v": 1, "id": id_, "type": type_, "src": src, "ts": now}
    if deadline: m["deadline"] = deadline
    m["body"] = body
    return msgpack.packb(m)
rid = "01CANCE11ED0000000000000000"
d.send_multipart([b"", b"MDPC01", b"svc.slow", env("demo.echo", rid, {"n": "cancelled"}, deadline=now + 600 * 10**6)])
wait("the request to be queued", lambda s: s["services"]["svc.slow"]["queued"] == 1)
# someone else's cancel of it does nothing: once the tap shows that the
# broker routed it (it acts on a cancel before it taps it), the request
# still waits
t = ctx.socket(zmq.SUB); t.setsockopt(zmq.LINGER, 0); t.connect(tap)
t.setsockopt(zmq.SUBSCRIBE, b"event")
time.sleep(0.2)  # not a synchronisation: the loop below resends until seen
seen = False
for _ in range(300):
    p.send_multipart([b"request.cancel", env("request.cancel", "01OTHER0000000000000000000", {"id": rid}, src="someone@else#2")])
    if t.poll(100):
        f = t.recv_multipart()
        if f[1] == b"request.cancel":
            seen = True
            break
if not seen:
    sys.exit("the tap never showed the foreign cancel")
s = stats()
if s["services"]["svc.slow"]["queued"] != 1 or s["drops"].get("request cancelled"):
    sys.exit("someone else's cancel took the request: %r" % s)
# its own client's does (a probe event after the first shows it was seen)
p.send_multipart([b"request.cancel", env("request.cancel", "01CANCE1000000000000000000", {"id": rid, "service": "svc.slow", "reason": "test"})])
wait("the cancel", lambda s: s["drops"].get("request cancelled") == 1)
s = stats()
if s["services"]["svc.slow"]["queued"] != 0:
    sys.exit("the cancelled request is still queued: %r" % s["services"]["svc.slow"])
print("cancelled", rid, flush=True)
PY
"$PY" "$T/canceller.py" "$KZ_ROUTER" "$KZ_PUB" "$KZ_TAP" >"$T/canceller.log" 2>&1 ||
    fail "cancelling a queued request: $(cat "$T/canceller.log")"
grep -q "01CANCE11ED0000000000000000" "$T/slow.log" && fail "the worker got the cancelled request"

# --- the queue holds 2: two wait, the third is refused at once, sent
#     again after a back-off, and refused again when no time is left
kz_start q1 "$KZ_TOOLS/kz_call" svc.slow -f n=q1 --timeout-ms 600000 --retries 0
kz_start q2 "$KZ_TOOLS/kz_call" svc.slow -f n=q2 --timeout-ms 600000 --retries 0
kz_wait_for 60 stats "d['services']['svc.slow']['queued'] == 2" ||
    fail "two requests should wait: $(stats 'd["services"]["svc.slow"]')"
"$KZ_TOOLS/kz_call" svc.slow -f n=q3 --timeout-ms 2500 --retries 0 >"$T/q3.json" 2>"$T/q3.err" ||
    fail "a refused request got no answer: $(cat "$T/q3.err")"
[[ $(code_of "$T/q3.json") == queue_full ]] || fail "queue_full expected: $(cat "$T/q3.json")"
grep -q "sending again in 1000 ms" "$T/q3.err" || fail "kz_bus_call did not try again: $(cat "$T/q3.err")"
stats "d['drops'].get('service queue full', 0) >= 2" ||
    fail "the refusals were not counted: $(stats 'd["drops"]')"

# --- a held request whose client gives up: kz_bus_call publishes
#     request.cancel, and the worker holding it hears it and stops
kz_start hold "$KZ_TOOLS/kz_serve" svc.hold --busy-ms 600000 --cancellable
kz_wait_log hold "serving 'svc.hold'" || fail "kz_serve svc.hold did not start"
rc=0; "$KZ_TOOLS/kz_call" svc.hold -f n=giveup --timeout-ms 3000 --retries 0 >/dev/null 2>"$T/giveup.err" || rc=$?
((rc == 1)) || fail "a call nobody answers exited $rc: $(cat "$T/giveup.err")"
grep -q "no reply from 'svc.hold' after 1 attempt" "$T/giveup.err" || fail "giving up: $(cat "$T/giveup.err")"
kz_wait_log hold "^cancelled .*: cancelled by its client: no reply within 3000 ms" 60 ||
    fail "the worker did not stop the work of a request its client gave up"
held=$(sed -n 's/^got //p' "$T/hold.log")
grep -q "^cancelled $held: " "$T/hold.log" || fail "another request was cancelled: $(cat "$T/hold.log")"

# --- a stock RFC 7 client (no envelope) only waits: no error reply
rc=0; "$KZ_TOOLS/mdp_client" "$KZ_ROUTER" svc.slow raw-body --timeout 1500 --retries 0 >"$T/stock.out" 2>&1 || rc=$?
((rc != 0)) || fail "a stock client got a reply from a busy service: $(cat "$T/stock.out")"
echo ok
