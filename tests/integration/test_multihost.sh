#!/usr/bin/env bash
# test_multihost.sh - the bus across two "hosts": two network namespaces
# joined by a veth pair (10.231.0.1 and 10.231.0.2, nothing else sees
# them). kaizen-broker runs in the first, bound to tcp://10.231.0.1;
# publishers, subscribers, a queue-group member, service workers and
# clients run in the second (and a few in the first), all connecting to
# the broker's address. Shows that an event, a group delivery, a service
# call (kaizen and stock Majordomo peers) and the tap for `kaizen monitor`
# all cross between the namespaces. Needs root (ip netns); skips otherwise.
# shellcheck disable=SC2154  # PID_* variables are set by kz_start
source "$KZ_ROOT/tests/integration/lib.sh"

command -v ip >/dev/null || skip "network namespaces not permitted: iproute2 'ip' not found"
[[ $(id -u) -eq 0 ]] || skip "network namespaces not permitted: needs root"
for exe in "$KZ_BIN/kaizen-broker" "$KZ_TOOLS/kz_pub" "$KZ_TOOLS/kz_sub" "$KZ_TOOLS/kz_serve" \
    "$KZ_TOOLS/kz_call" "$KZ_TOOLS/mdp_client" "$KZ_TOOLS/mdp_worker"; do
    [[ -x "$exe" ]] || fail "'$exe' not built"
done

NS_A=kz-mh-a-$$ # broker host
NS_B=kz-mh-b-$$ # client host
VETH_A=kzmha$$
VETH_B=kzmhb$$
ADDR_A=10.231.0.1
ADDR_B=10.231.0.2
_mh_ns=()

# Processes first (lib.sh's cleanup), then anything left in our own
# namespaces, then the namespaces (their veth ends go with them).
# shellcheck disable=SC2317  # invoked by the trap
_mh_cleanup() {
    local ns p
    _kz_cleanup
    for ns in "${_mh_ns[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
}
trap _mh_cleanup EXIT

if ! out=$(ip netns add "$NS_A" 2>&1); then
    skip "network namespaces not permitted: $out"
fi
_mh_ns+=("$NS_A")
ip netns add "$NS_B" || fail "unable to create namespace $NS_B"
_mh_ns+=("$NS_B")
ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B" ||
    fail "unable to create the veth pair"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A" || fail "unable to address $VETH_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B" || fail "unable to address $VETH_B"
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up || fail "unable to bring lo up in $ns"
done
ip -n "$NS_A" link set "$VETH_A" up || fail "unable to bring $VETH_A up"
ip -n "$NS_B" link set "$VETH_B" up || fail "unable to bring $VETH_B up"

# commands, not functions, so kz_start's pid is the process itself
in_a=(ip netns exec "$NS_A")
in_b=(ip netns exec "$NS_B")

# true once PID has exited (a zombie not yet reaped counts as exited)
mh_exited() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    [[ $stat == *") Z "* ]]
}

# one configuration for both hosts: every endpoint is the broker's address
CFG=$T/multihost.yaml
cat >"$CFG" <<EOF
state_dir: $T/state
bus:
  endpoints:
    pub: tcp://$ADDR_A:7510
    sub: tcp://$ADDR_A:7511
    router: tcp://$ADDR_A:7512
    tap: tcp://$ADDR_A:7513
EOF

# the broker's addresses exist only in its namespace
kz_start broker "${in_a[@]}" "$KZ_BIN/kaizen-broker" -c "$CFG"
kz_wait_log broker "broker ready" 30 || fail "broker did not become ready"
"${in_b[@]}" ip -o addr show dev "$VETH_B" | grep -q "$ADDR_B" || fail "no $ADDR_B in $NS_B"
ip -o addr show 2>/dev/null | grep -q "10\.231\.0\." && fail "10.231.0.0/24 leaked into the root namespace"

# --- events: published in B, received in B (via the broker in A) and in A
kz_start sub_b "${in_b[@]}" "$KZ_TOOLS/kz_sub" test.event -c "$CFG" --count 1
kz_start sub_a "${in_a[@]}" "$KZ_TOOLS/kz_sub" test.event -c "$CFG" --count 1
# publish until both subscribers have one event: no reliance on join timing
kz_start pub_b "${in_b[@]}" "$KZ_TOOLS/kz_pub" test.event -c "$CFG" --count 0 --rate 20 --start 100
kz_wait_log sub_b "^seq " 60 || fail "event published in $NS_B never reached the subscriber in $NS_B"
kz_wait_log sub_a "^seq " 60 || fail "event published in $NS_B never reached the subscriber in $NS_A"
kill -TERM "$PID_pub_b"

# --- events the other way: published in A, received in B
kz_start sub_b2 "${in_b[@]}" "$KZ_TOOLS/kz_sub" test.event -c "$CFG" --count 1
kz_start pub_a "${in_a[@]}" "$KZ_TOOLS/kz_pub" test.event -c "$CFG" --count 0 --rate 20 --start 500
kz_wait_log sub_b2 "^seq 5" 60 || fail "event published in $NS_A never reached $NS_B"
kill -TERM "$PID_pub_a"

# --- queue group: member in B, publisher in A; the group delivery crosses
kz_start member_b "${in_b[@]}" "$KZ_TOOLS/kz_sub" -c "$CFG" --group mh.group --prefix test.event --count 3
kz_start pub_a2 "${in_a[@]}" "$KZ_TOOLS/kz_pub" test.event -c "$CFG" --count 0 --rate 20 --start 1000
kz_wait_for 60 bash -c "[[ \$(grep -c '^seq ' '$T/member_b.log') -ge 3 ]]" ||
    fail "group deliveries never reached the member in $NS_B"
kill -TERM "$PID_pub_a2"
kz_wait_for 30 mh_exited "$PID_member_b" || fail "group member did not finish after 3 deliveries"

# --- service: kaizen worker in B, kaizen client in A and in B
# (TCP requires CURVE: the broker made the automatic keys in A's state;
# host B's worker uses copies named in its own config, as a user copies
# them to another machine: the config's paths win over the automatic ones)
mkdir -m 700 "$T/hostb-keys"
cp "$T/state/keys/broker.key" "$T/state/keys/agent.key_secret" "$T/hostb-keys/"
CFG_B=$T/multihost-b.yaml
{ sed "s|^state_dir: .*|state_dir: $T/state-b|" "$CFG"
  printf '  curve:\n    broker_public: %s\n    client_cert: %s\n' \
      "$T/hostb-keys/broker.key" "$T/hostb-keys/agent.key_secret"; } >"$CFG_B"
kz_start serve_b "${in_b[@]}" "$KZ_TOOLS/kz_serve" mh.echo -c "$CFG_B"
"${in_a[@]}" "$KZ_TOOLS/kz_call" mh.echo -c "$CFG" -f text=from-a --timeout-ms 20000 --retries 2 \
    >"$T/call_a.out" 2>"$T/call_a.log" || fail "service call from $NS_A to the worker in $NS_B failed"
grep -q '"text":"from-a"' "$T/call_a.out" || fail "unexpected reply in $NS_A: $(cat "$T/call_a.out")"
"${in_b[@]}" "$KZ_TOOLS/kz_call" mh.echo -c "$CFG" -f text=from-b --timeout-ms 20000 --retries 2 \
    >"$T/call_b.out" 2>"$T/call_b.log" || fail "service call from $NS_B through $NS_A failed"
grep -q '"text":"from-b"' "$T/call_b.out" || fail "unexpected reply in $NS_B: $(cat "$T/call_b.out")"
kz_wait_log serve_b "^got " 60 || fail "worker in $NS_B did not log the request"

# --- stock Majordomo peers (RFC 7 only): worker in B, client in A
# (with raw CURVE keys: the agent's for the worker, the operator's for the client)
kz_start mdpw_b "${in_b[@]}" "$KZ_TOOLS/mdp_worker" "tcp://$ADDR_A:7512" mh.stock --name wb \
    --curve "$(kz_curve_keys agent)"
"${in_a[@]}" "$KZ_TOOLS/mdp_client" "tcp://$ADDR_A:7512" mh.stock hello --timeout 20000 --retries 2 \
    --curve "$(kz_curve_keys operator)" \
    >"$T/mdp_a.out" 2>"$T/mdp_a.log" || fail "stock Majordomo call from $NS_A to $NS_B failed"
grep -qx 'wb:hello' "$T/mdp_a.out" || fail "unexpected stock reply: $(cat "$T/mdp_a.out")"

# --- tap: kaizen monitor in B sees events and service traffic routed in A
if [[ -x "$KZ_BIN/kaizen" ]]; then
    kz_start monitor_ev "${in_b[@]}" "$KZ_BIN/kaizen" -c "$CFG" monitor --json --count 3 --path event
    kz_start pub_b2 "${in_b[@]}" "$KZ_TOOLS/kz_pub" test.event -c "$CFG" --count 0 --rate 20 --start 2000
    kz_wait_for 60 mh_exited "$PID_monitor_ev" || fail "kaizen monitor in $NS_B saw no events"
    kill -TERM "$PID_pub_b2"
    wait "$PID_monitor_ev" || fail "kaizen monitor exited with an error"
    [[ $(grep -c '"path":"event"' "$T/monitor_ev.log") -ge 3 ]] ||
        fail "kaizen monitor output lacks events: $(head -c 2000 "$T/monitor_ev.log")"
    grep -q '"type":"test.event"' "$T/monitor_ev.log" || fail "monitor did not decode the envelope"

    kz_start monitor_rq "${in_b[@]}" "$KZ_BIN/kaizen" -c "$CFG" monitor --json --count 2 --path request,reply
    # call until the monitor has its request and reply (it may join the tap late)
    deadline=$((SECONDS + 60))
    while ! mh_exited "$PID_monitor_rq"; do
        ((SECONDS < deadline)) || fail "kaizen monitor in $NS_B saw no service traffic"
        "${in_a[@]}" "$KZ_TOOLS/kz_call" mh.echo -c "$CFG" -f text=tap --timeout-ms 10000 --retries 1 \
            >/dev/null 2>>"$T/call_tap.log" || fail "service call for the tap failed"
    done
    wait "$PID_monitor_rq" || fail "kaizen monitor exited with an error"
    grep -q '"path":"request"' "$T/monitor_rq.log" || fail "monitor saw no request"
    grep -q '"path":"reply"' "$T/monitor_rq.log" || fail "monitor saw no reply"
else
    echo "note: $KZ_BIN/kaizen not built, tap check skipped"
fi

echo "ok: events, group delivery, kaizen and stock Majordomo calls and the tap cross namespaces"
exit 0
