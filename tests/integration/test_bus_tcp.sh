#!/usr/bin/env bash
# test_bus_tcp.sh - TCP requires CURVE: a config with tcp:// endpoints and
# no bus.curve gets CURVE with the keys the broker makes on first use in
# STATE/keys (private modes, one role each); the CLI uses them; a plain
# client without CURVE gets nothing through (its event never reaches the
# tap, its request gets no reply); bus.curve.enabled: false with tcp is
# refused; kaizen doctor is content with the automatic setup.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x $K && -x $KZ_BIN/kaizen-broker && -x $KZ_TOOLS/kz_serve && -x $KZ_TOOLS/mdp_client ]] ||
    skip "kaizen, kaizen-broker or the test tools are not built"
PYZMQ=
for py in python3 /usr/bin/python3; do
    "$py" -c 'import zmq' 2>/dev/null && { PYZMQ=$py; break; }
done
[[ -n $PYZMQ ]] || fail "python3-zmq is needed for the plain client (apt-get install python3-zmq)"

KZ_TRANSPORT=tcp kz_config </dev/null
grep -q curve "$KAIZEN_CONFIG" && fail "the test config names curve"
KEYS=$T/state/keys

# a client before any key exists: says what to run
"$K" publish test.event '{"seq":1}' >"$T/nokeys.out" 2>&1 && fail "publish ran without bus keys"
grep -q "no bus keys: '$KEYS/operator.key_secret' is missing.*run 'kaizen up'" "$T/nokeys.out" ||
    fail "no keys: $(cat "$T/nokeys.out")"
[[ -e $KEYS ]] && fail "a client made the keys"

# the broker makes them, and comes up with CURVE
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready.*curve=on" 30 || fail "the broker did not start with CURVE"
grep -q "made the bus's CURVE keys in $KEYS" "$T/broker.log" || fail "the broker did not say it made the keys"
[[ $(stat -c %a "$KEYS") == 700 && $(stat -c %a "$KEYS/allow") == 700 ]] ||
    fail "keys directories: $(stat -c '%a %n' "$KEYS" "$KEYS/allow")"
for f in broker orchestrator agent operator; do
    [[ -f $KEYS/$f.key_secret && ! -L $KEYS/$f.key_secret ]] || fail "$f.key_secret missing"
    [[ $(stat -c %a "$KEYS/$f.key_secret") == 600 ]] || fail "$f.key_secret is not 0600"
done
[[ $(stat -c %a "$KEYS/broker.key") == 644 ]] || fail "broker.key is not 0644"
[[ $(ls "$KEYS/allow" | sort | tr '\n' ' ') == 'agent.key operator.key orchestrator.key ' ]] ||
    fail "allow dir: $(ls "$KEYS/allow")"
for r in orchestrator agent operator; do
    grep -q "role = \"$r\"" "$KEYS/allow/$r.key" || fail "allow/$r.key has no role $r"
    grep -q secret-key "$KEYS/allow/$r.key" && fail "a secret key in allow/$r.key"
done
cp -a "$KEYS" "$T/keys-before"
# a second broker start (here: kaizen-broker on busy ports) keeps them
"$KZ_BIN/kaizen-broker" >"$T/second.out" 2>&1 && fail "a second broker ran on the same ports"
diff -r "$KEYS" "$T/keys-before" >/dev/null || fail "the keys changed on a second start"

# the CLI and an agent-role worker use them
kz_start serve "$KZ_TOOLS/kz_serve" demo.echo
kz_start mon "$K" monitor --json
deadline=$((SECONDS + 60))
until grep -q '"seq":0' "$T/mon.log"; do
    ((SECONDS < deadline)) || fail "kaizen monitor never showed kaizen publish's events"
    "$K" publish test.event '{"seq":0}' >/dev/null 2>&1
    sleep 0.2
done
"$K" publish test.event '{"seq":42}' >/dev/null || fail "kaizen publish exited $?"
kz_wait_for 30 grep -q '"seq":42' "$T/mon.log" || fail "the monitor missed kaizen publish's event"
"$K" call demo.echo '{"who":"cli"}' --timeout 10s >"$T/call.out" 2>&1 ||
    fail "no reply from demo.echo: $(cat "$T/call.out")"
grep -q '"who": *"cli"' "$T/call.out" || fail "call: $(cat "$T/call.out")"
"$K" stats --json >"$T/stats.json" || fail "kaizen stats exited $?"

# a plain client without CURVE: a valid event and a request, neither gets through
cat >"$T/plain.py" <<'PY'
import sys, time, zmq
def mp(x):  # tiny msgpack encoder: maps, short str, small ints
    if isinstance(x, dict):
        return bytes([0x80 | len(x)]) + b"".join(mp(k) + mp(v) for k, v in x.items())
    if isinstance(x, str):
        b = x.encode()
        assert len(b) < 32
        return bytes([0xa0 | len(b)]) + b
    return bytes([0xcf]) + x.to_bytes(8, "big")
env = mp({"v": 1, "id": "01M8BJNK1ANEGRYDQ8TNZP6W6B", "type": "test.event",
          "src": "plain@h#1", "ts": int(time.time() * 1e6), "body": {"seq": 666}})
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.connect(sys.argv[1])
for _ in range(40):  # two seconds of tries: a connection would be up long before
    pub.send_multipart([b"test.event", env])
    time.sleep(0.05)
pub.close(linger=1000)
ctx.term()
PY
timeout 60 "$PYZMQ" "$T/plain.py" "$KZ_PUB" || fail "the plain client script failed"
rc=0; timeout 60 "$KZ_TOOLS/mdp_client" "$KZ_ROUTER" demo.echo plain-request --timeout 3000 --retries 1 \
    >"$T/plain-call.out" 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "the plain request: want no reply (2), got $rc: $(cat "$T/plain-call.out")"
# the same stock client with the operator's keys gets its reply, and the
# CLI's event after the plain one arrives: the tap was up all along
out=$("$KZ_TOOLS/mdp_client" "$KZ_ROUTER" mmi.service demo.echo --timeout 10000 --retries 2 \
    --curve "$(kz_curve_keys operator)") || fail "mdp_client with the keys got no reply"
[[ $out == 200 ]] || fail "mmi.service demo.echo: '$out'"
"$K" publish test.event '{"seq":43}' >/dev/null || fail "kaizen publish exited $?"
kz_wait_for 30 grep -q '"seq":43' "$T/mon.log" || fail "the monitor missed the second event"
grep -q '"seq":666\|plain@h\|plain-request' "$T/mon.log" "$T/serve.log" && fail "the plain client got through"

# kaizen doctor: the automatic setup is fine
"$K" doctor >"$T/doctor.out" 2>&1
grep -q "ok  *bus security  *tcp:// with CURVE, the automatic keys" "$T/doctor.out" ||
    fail "doctor: $(grep -i 'bus\|curve' "$T/doctor.out")"
for r in orchestrator agent operator; do
    grep -q "ok  *bus role $r " "$T/doctor.out" || fail "doctor, role $r: $(grep "role $r" "$T/doctor.out")"
done
grep -q "^ *\(FAIL\|MISSING\) .*\(curve\|bus\)" "$T/doctor.out" && fail "doctor: $(grep 'FAIL\|MISSING' "$T/doctor.out")"

# bus.curve.enabled: false with tcp is refused, by the broker and the CLI
{ kz_config_base "$KAIZEN_CONFIG"; printf '  curve:\n    enabled: false\n'; } >"$T/off.yaml"
for prog in "$KZ_BIN/kaizen-broker -c $T/off.yaml" "$K -c $T/off.yaml publish test.event {}"; do
    $prog >"$T/off.out" 2>&1 && fail "$prog ran with TCP without CURVE"
    grep -q "off.yaml:[0-9]*:[0-9]*: bus.curve.enabled: false with a tcp:// endpoint (bus.endpoints.pub: tcp://127.0.0.1:[0-9]*): TCP requires CURVE" "$T/off.out" ||
        fail "off: $(cat "$T/off.out")"
done
echo ok
