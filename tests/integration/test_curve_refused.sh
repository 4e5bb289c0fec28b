#!/usr/bin/env bash
# test_curve_refused.sh - a CURVE refusal is reported as one (issue 12):
# over tcp://, a client whose key the broker's allow_dir does not list
# gets from `kaizen publish` and `kaizen stats` "the broker at ... refused
# our key (CURVE)" with its public key and the fix, not "no broker ... (is
# kaizen-broker running?)", which stays the message when no broker is
# there. `kaizen keygen broker` says its public key goes to the clients'
# bus.curve.broker_public, never into allow_dir.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x $K && -x $KZ_BIN/kaizen-broker ]] || skip "kaizen or kaizen-broker not built"
export KZ_TRANSPORT=tcp

KEYS=$T/keys
"$K" keygen broker --dir "$KEYS" >"$T/keygen-broker.out" || fail "keygen broker exited $?"
"$K" keygen allowed --role operator --dir "$KEYS" >"$T/keygen-allowed.out" || fail "keygen allowed"
"$K" keygen stranger --role operator --dir "$KEYS" >/dev/null || fail "keygen stranger"

# --- keygen broker tells the truth
out=$T/keygen-broker.out
grep -q "copy .* into the broker's bus.curve.allow_dir" "$out" &&
    fail "keygen broker says to copy the broker's key into allow_dir: $(cat "$out")"
grep -qF "use $KEYS/broker.key_secret as its bus.curve.broker_cert" "$out" ||
    fail "keygen broker: no broker_cert advice: $(cat "$out")"
grep -qF "client $KEYS/broker.key as its bus.curve.broker_public" "$out" ||
    fail "keygen broker: no broker_public advice: $(cat "$out")"
grep -qF "copy $KEYS/allowed.key into the broker's bus.curve.allow_dir" "$T/keygen-allowed.out" ||
    fail "keygen of a client: no allow_dir advice: $(cat "$T/keygen-allowed.out")"

mkdir -p "$T/allow"
cp "$KEYS/allowed.key" "$T/allow/"
kz_config "$T/broker.yaml" <<Y
  curve:
    enabled: true
    broker_cert: $KEYS/broker.key_secret
    allow_dir: $T/allow
Y
client_cfg() { # FILE CERT
    {
        echo "state_dir: $T/state"
        echo "bus:"
        echo "  endpoints: {pub: $KZ_PUB, sub: $KZ_SUB, router: $KZ_ROUTER, tap: $KZ_TAP}"
        echo "  curve: {enabled: true, client_cert: $2, broker_public: $KEYS/broker.key}"
    } >"$1"
}
client_cfg "$T/allowed.yaml" "$KEYS/allowed.key_secret"
client_cfg "$T/stranger.yaml" "$KEYS/stranger.key_secret"
stranger_key=$(sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$KEYS/stranger.key")

# --- no broker: the old message, still true
rc=0
timeout 60 "$K" -c "$T/stranger.yaml" publish --timeout 1s test.event '{"seq":1}' >/dev/null 2>"$T/none.err" || rc=$?
((rc == 1)) || fail "publish without a broker exited $rc"
grep -q "no broker at '$KZ_PUB' (is kaizen-broker running?)" "$T/none.err" ||
    fail "publish without a broker: $(cat "$T/none.err")"

kz_start broker "$KZ_BIN/kaizen-broker" -c "$T/broker.yaml"
kz_wait_log broker "ready" 30 || fail "broker did not start"

# --- the allowed key publishes
timeout 60 "$K" -c "$T/allowed.yaml" publish --timeout 10s test.event '{"seq":1}' >/dev/null 2>"$T/allowed.err" ||
    fail "the allowed key could not publish: $(cat "$T/allowed.err")"

# --- the unlisted key: a refusal, named as one
for cmd in publish stats; do
    rc=0
    if [[ $cmd == publish ]]; then
        timeout 60 "$K" -c "$T/stranger.yaml" publish --timeout 2s test.event '{"seq":1}' >/dev/null 2>"$T/$cmd.err" || rc=$?
    else
        timeout 60 "$K" -c "$T/stranger.yaml" stats --timeout 2s >/dev/null 2>"$T/$cmd.err" || rc=$?
    fi
    ((rc == 1)) || fail "$cmd with an unlisted key exited $rc: $(cat "$T/$cmd.err")"
    grep -q "is kaizen-broker running" "$T/$cmd.err" && fail "$cmd: points at a missing broker: $(cat "$T/$cmd.err")"
    ep=$KZ_PUB
    [[ $cmd == stats ]] && ep=$KZ_ROUTER
    grep -qF "the broker at '$ep' refused our key (CURVE): add our public key $stranger_key" "$T/$cmd.err" ||
        fail "$cmd: no refusal message: $(cat "$T/$cmd.err")"
    grep -qF "bus.curve.allow_dir" "$T/$cmd.err" || fail "$cmd: no fix: $(cat "$T/$cmd.err")"
done
echo ok
