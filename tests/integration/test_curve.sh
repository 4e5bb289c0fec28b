#!/usr/bin/env bash
# test_curve.sh - CURVE on the bus: keys from `kaizen keygen`, a broker that
# admits only client-a's (role operator) and worker-a's (role agent) public
# keys (ZAP allow_dir). client-a publishes, subscribes, calls worker-a's
# service, monitors and asks for stats; client-b (a valid key pair, not
# allowed) and a client without CURVE get nothing.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x $K && -x $KZ_BIN/kaizen-broker && -x $KZ_TOOLS/kz_pub && -x $KZ_TOOLS/kz_sub ]] ||
    skip "kaizen, kaizen-broker or the test tools are not built"

# --- keygen ---------------------------------------------------------------
KEYS=$T/keys
for n in broker client-a client-b; do
    "$K" keygen "$n" --dir "$KEYS" >"$T/keygen-$n.out" || fail "keygen $n exited $?"
    [[ -f $KEYS/$n.key && -f $KEYS/$n.key_secret ]] || fail "keygen $n: files missing"
    [[ $(stat -c %a "$KEYS/$n.key_secret") == 600 ]] || fail "keygen $n: secret not mode 0600"
    pub=$(sed -n 's/^public key: //p' "$T/keygen-$n.out")
    [[ ${#pub} -eq 40 ]] || fail "keygen $n: no 40-character Z85 public key printed"
    grep -qF "public-key = \"$pub\"" "$KEYS/$n.key" || fail "keygen $n: printed key not in $n.key"
    grep -q 'secret-key' "$KEYS/$n.key" && fail "keygen $n: secret key in the public file"
    grep -qF "allow_dir" "$T/keygen-$n.out" || fail "keygen $n: no hint how to allow the key"
done
cp "$KEYS/client-b.key" "$T/b-before.key"
"$K" keygen client-b --dir "$KEYS" >/dev/null 2>"$T/keygen-again.err" && fail "keygen overwrote without --force"
grep -q "already exists" "$T/keygen-again.err" || fail "keygen: no 'already exists' message"
cmp -s "$KEYS/client-b.key" "$T/b-before.key" || fail "keygen changed the key without --force"
chmod 644 "$KEYS/client-b.key_secret"
"$K" keygen client-b --dir "$KEYS" --force >/dev/null || fail "keygen --force exited $?"
cmp -s "$KEYS/client-b.key" "$T/b-before.key" && fail "keygen --force did not write a new key"
[[ $(stat -c %a "$KEYS/client-b.key_secret") == 600 ]] || fail "keygen --force: secret not 0600"
"$K" keygen 'bad/name' --dir "$KEYS" 2>/dev/null; [[ $? -eq 2 ]] || fail "keygen bad/name: want exit 2"
# roles: client-a is an operator (reads the tap), worker-a an agent (offers)
"$K" keygen client-a --role operator --dir "$KEYS" --force >"$T/keygen-a.out" || fail "keygen --role exited $?"
grep -q '^role: operator' "$T/keygen-a.out" || fail "keygen --role: role not printed"
grep -q 'role = "operator"' "$KEYS/client-a.key" || fail "keygen --role: no role in the certificate"
"$K" keygen worker-a --role agent --dir "$KEYS" >/dev/null || fail "keygen worker-a exited $?"
"$K" keygen x --role root --dir "$KEYS" 2>"$T/keygen-role.err"; [[ $? -eq 2 ]] || fail "keygen --role root: want exit 2"
grep -q "unknown role 'root'" "$T/keygen-role.err" || fail "keygen --role root: $(cat "$T/keygen-role.err")"
mkdir -p "$T/allow"
cp "$KEYS/client-a.key" "$KEYS/worker-a.key" "$T/allow/"

# --- configs: one broker, three clients on the same endpoints ---------------
kz_config "$T/broker.yaml" <<Y
  curve:
    enabled: true
    broker_cert: $KEYS/broker.key_secret
    allow_dir: $T/allow
Y
client_cfg() { # client_cfg FILE [CERT]
    {
        echo "state_dir: $T/state"
        echo "bus:"
        echo "  call_timeout: 1500ms"
        echo "  call_retries: 0"
        echo "  endpoints: {pub: $KZ_PUB, sub: $KZ_SUB, router: $KZ_ROUTER, tap: $KZ_TAP}"
        if [[ -n ${2:-} ]]; then
            echo "  curve:"
            echo "    enabled: true"
            echo "    client_cert: $2"
            echo "    broker_public: $KEYS/broker.key"
        fi
    } >"$1"
}
client_cfg "$T/a.yaml" "$KEYS/client-a.key_secret"
client_cfg "$T/wa.yaml" "$KEYS/worker-a.key_secret"
client_cfg "$T/b.yaml" "$KEYS/client-b.key_secret"
client_cfg "$T/none.yaml"

kz_start broker "$KZ_BIN/kaizen-broker" -c "$T/broker.yaml"
kz_wait_log broker "ready" 30 || fail "broker did not start"

# everyone listens from the start
for c in a b none; do
    kz_start "sub-$c" "$KZ_TOOLS/kz_sub" -c "$T/$c.yaml" --json
    kz_start "mon-$c" "$K" -c "$T/$c.yaml" monitor --json
done
kz_start serve-a "$KZ_TOOLS/kz_serve" demo.echo -c "$T/wa.yaml"

# client-a: warm up until its subscriber and monitor see its events
deadline=$((SECONDS + 60))
until grep -q '^warm' "$T/sub-a.log" && grep -q '"name":"warm' "$T/mon-a.log"; do
    ((SECONDS < deadline)) || fail "client-a never received its own events"
    "$KZ_TOOLS/kz_pub" warm.a -c "$T/a.yaml" >/dev/null 2>&1
    sleep 0.2
done

# the rejected clients try everything
timeout 5 "$KZ_TOOLS/kz_pub" from.b -c "$T/b.yaml" --count 3 >/dev/null 2>&1
timeout 5 "$KZ_TOOLS/kz_pub" from.none -c "$T/none.yaml" --count 3 >/dev/null 2>&1
timeout 30 "$KZ_TOOLS/kz_call" demo.echo -c "$T/b.yaml" -f who=b --timeout-ms 1500 --retries 0 \
    >"$T/call-b.out" 2>&1 && fail "client-b's service call got a reply"
timeout 30 "$KZ_TOOLS/kz_call" demo.echo -c "$T/none.yaml" -f who=none --timeout-ms 1500 --retries 0 \
    >"$T/call-none.out" 2>&1 && fail "a client without curve got a reply"
grep -q '"who"' "$T/call-b.out" "$T/call-none.out" && fail "a rejected call printed a reply"
timeout 30 "$K" -c "$T/b.yaml" stats --timeout 1500ms >/dev/null 2>&1 && fail "client-b got mmi.stats"

# client-a: events and a call go through
"$KZ_TOOLS/kz_pub" from.a -c "$T/a.yaml" --count 3 >/dev/null || fail "client-a kz_pub exited $?"
"$KZ_TOOLS/kz_call" demo.echo -c "$T/a.yaml" -f who=a --timeout-ms 10000 --retries 2 >"$T/call-a.out" ||
    fail "client-a's service call failed"
grep -q '"who":"a"' "$T/call-a.out" || fail "client-a's reply: $(cat "$T/call-a.out")"
three_from_a() { [[ $(grep -c '^from\.a ' "$T/sub-a.log") -eq 3 ]]; }
kz_wait_for 30 three_from_a || fail "client-a's subscriber missed events"
kz_wait_for 30 grep -q '"path":"reply","name":"demo.echo"' "$T/mon-a.log" || fail "client-a's monitor missed the reply"
"$K" -c "$T/a.yaml" stats --json >"$T/stats-a.json" || fail "client-a: kaizen stats exited $?"
grep -q '"from.a"' "$T/stats-a.json" || fail "stats: from.a missing: $(cat "$T/stats-a.json")"

# a monitor with client-a's key sees live traffic; client-b's and the
# plain one print nothing in the same time
kz_start stream-a "$KZ_TOOLS/kz_pub" live.a -c "$T/a.yaml" --count 0 --rate 20
timeout 30 "$K" -c "$T/a.yaml" monitor --count 3 --topic live.a --json >"$T/live-a.out" ||
    fail "client-a monitor --count 3 exited $?"
[[ $(grep -c '"name":"live.a"' "$T/live-a.out") -eq 3 ]] || fail "client-a monitor --count output"
for c in b none; do
    timeout 5 "$K" -c "$T/$c.yaml" monitor --count 1 >"$T/live-$c.out" 2>&1
    rc=$?
    [[ $rc -eq 124 ]] || fail "client-$c monitor: want timeout (124), got $rc: $(cat "$T/live-$c.out")"
    [[ -s $T/live-$c.out ]] && fail "client-$c monitor printed: $(cat "$T/live-$c.out")"
done

# nothing from or to the rejected clients, anywhere
grep -q 'from\.b\|from\.none' "$T/sub-a.log" "$T/mon-a.log" "$T/stats-a.json" &&
    fail "an event of a rejected client arrived"
grep -q '"who":"b"\|"who":"none"' "$T/mon-a.log" "$T/serve-a.log" && fail "a rejected request arrived"
for c in b none; do
    grep -v '^kz_sub:' "$T/sub-$c.log" | grep -q . &&
        fail "client-$c's subscriber received: $(cat "$T/sub-$c.log")"
    grep -q '"path"' "$T/mon-$c.log" && fail "client-$c's monitor printed messages"
done
kill -0 "$PID_broker" || fail "the broker died"
echo ok
