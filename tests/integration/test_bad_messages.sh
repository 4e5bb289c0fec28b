#!/usr/bin/env bash
# test_bad_messages.sh - a peer that speaks msgpack but not kaizen: events
# that pass the broker's cheap frame check (they start with a map) yet are
# malformed envelopes - an unknown message type, a truncated map, a body
# that breaks its type's schema, a wrong protocol version, invalid UTF-8 -
# are dropped and counted by every receiving client with a clear log line,
# never delivered, and group deliveries of them are acknowledged so they
# do not loop; the valid event after them still arrives.
source "$KZ_ROOT/tests/integration/lib.sh"
kz_python zmq msgpack || skip "python3-zmq and python3-msgpack are needed"

kz_config </dev/null
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"

kz_start sub "$KZ_TOOLS/kz_sub" bad. --count 1 --out "$T/sub.out"
kz_start member "$KZ_TOOLS/kz_sub" --group badg --prefix bad. --count 1 --out "$T/member.out"
kz_wait_log sub "listening" || fail "subscriber did not start"
kz_wait_log member "listening" || fail "member did not start"
kz_wait_for 30 kz_stats 'd.get("groups", {}).get("badg", {}).get("members", 0) >= 1' ||
    fail "the member never joined"

# the subscriber's SUB connection may still be settling: publish the bad
# batch, then the good event, repeatedly until the subscriber got the good one
"$PY" - "$KZ_PUB" "$T/sub.out" "$T/member.out" <<'PY' || fail "the valid event never arrived"
import msgpack, os, sys, time, zmq
endpoint, sub_out, member_out = sys.argv[1:4]
ctx = zmq.Context()
pub = ctx.socket(zmq.XPUB)
pub.connect(endpoint)
# the broker's XSUB subscribes to everything: wait for that before sending
pub.poll(30000)
pub.recv()

def env(mtype, body, v=1, src="py-peer"):
    # use_bin_type=False packs bytes as msgpack str: lets us send invalid UTF-8
    return msgpack.packb({"v": v, "id": "01TESTBADMESSAGES00000000%02d" % len(body), "type": mtype,
                          "src": src, "ts": 1, "body": body}, use_bin_type=False)

bad = [
    env("no.such.type", {}),                                   # unknown type
    b"\x85\xa1v\x01\xa2id",                                    # truncated map
    env("finding.batch", {"scan_id": "s"}),                    # schema: findings missing
    env("test.event", {"seq": 1}, v=2),                        # unsupported version
    env("test.event", {"seq": 2}, src=b"\xff\xfe"),              # invalid UTF-8
]
good = env("test.event", {"seq": 7})
deadline = time.time() + 30
while time.time() < deadline:
    for b in bad:
        pub.send_multipart([b"bad.x", b])
    pub.send_multipart([b"bad.x", good])
    time.sleep(0.2)
    if all(os.path.exists(f) and "seq 7" in open(f).read() for f in (sub_out, member_out)):
        sys.exit(0)
sys.exit(1)
PY

wait "$PID_sub" || fail "subscriber exited with $?"
wait "$PID_member" || fail "member exited with $?"
for who in sub member; do
    grep -qx "seq 7" "$T/$who.out" || fail "$who did not get the valid event: $(cat "$T/$who.out")"
    [[ $(wc -l <"$T/$who.out") -eq 1 ]] || fail "$who got more than the valid event: $(cat "$T/$who.out")"
    n=$(sed -n 's/.*dropped \([0-9]*\),.*/\1/p' "$T/$who.log")
    ((n >= 5)) || fail "$who counted $n drops, want at least 5: $(cat "$T/$who.log")"
    grep -q "dropped malformed message on bad.x" "$T/$who.log" || fail "$who logged no drop reason"
done
grep -q "unknown message type\|unknown type" "$T/sub.log" || fail "no clear reason for the unknown type: $(cat "$T/sub.log")"
# the member acknowledged what it dropped: nothing stays in flight to loop
kz_wait_for 30 kz_stats 'd["groups"].get("badg", {}).get("inflight", 0) == 0' ||
    fail "group still holds the dropped deliveries: $(kz_stats 'd["groups"]')"
kz_stats 'd["groups"].get("badg", {}).get("redelivered", 0) == 0' >/dev/null ||
    fail "dropped deliveries were redelivered: $(kz_stats 'd["groups"]')"
echo ok
