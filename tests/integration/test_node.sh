#!/usr/bin/env bash
# test_node.sh - several hosts on one machine: the main orchestrator
# (--host main-h) runs the broker, a node orchestrator (--node --host
# node-h) runs only the agents the config gives node-h. The main one
# tracks that agent from its heartbeats (supervised false: another host's
# orchestrator supervises it), sees its restart there, sees it stopped
# when the node stops, and shows an agent nobody supervises stale, then
# gone, once it is killed (stale after 2 s, gone only after 12 s: each
# look at the status takes a process start or two, which a loaded machine
# makes slow, and the stale state must not be missed between two looks).
#
# --host names the host in agents[].host and in the orchestrator's own id;
# the agents report the machine's hostname, so both agents here show the
# real hostname as their host.
source "$(dirname "$0")/lib.sh"
kz_python json || skip "no python3"

kz_config <<'EOF'
agent_heartbeat: 500ms
supervisor:
  backoff_initial: 100ms
  stale_after: 2s
  gone_after: 12s
agents:
  - name: demo
    host: node-h
    interval: 1s
EOF
STATE=$T/state
HOST=$(hostname)

# st EXPR: the main orchestrator's status; D = the demo agents in it,
# O = the orchestrators it heard of
st() {
    "$KZ_BIN/kaizen" call kaizen.status --json --timeout 10s --retries 0 >"$T/status.json" \
        2>"$T/status.err" || return 1
    "$PY" - "$1" "$T/status.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))["body"]
A = d.get("agents", [])
D = [a for a in A if a.get("name") == "demo"]
O = [a for a in A if a.get("name") == "orchestrator"]
v = eval(sys.argv[1])
print(v)
sys.exit(0 if v else 1)
PY
}

kz_start main "$KZ_BIN/kaizen-orchestrator" -c "$KAIZEN_CONFIG" --host main-h
kz_wait_for 30 st 'd["orchestrator"]["host"] == "main-h"' || fail "the main orchestrator does not answer"
grep -q "no agents to run on 'main-h'" "$T/main.log" || fail "the main host started agents of node-h"

kz_start node "$KZ_BIN/kaizen-orchestrator" -c "$KAIZEN_CONFIG" --node --host node-h
kz_wait_log node "started 'demo.0'" 30 || fail "the node did not start its agent"
kz_wait_for 30 st "len(D) == 1 and D[0]['state'] == 'idle' and D[0]['supervised'] is False and D[0]['host'] == '$HOST'" ||
    fail "the main orchestrator does not show the node's agent: $(cat "$T/status.json" "$T/status.err" 2>/dev/null)"
pid=$(st 'D[0]["pid"]' | tail -1)
[[ $(ps -o ppid= -p "$pid" | tr -d ' ') == "$PID_node" ]] || fail "the demo agent is not the node's child"
kz_wait_for 60 st "D[0]['id'] == 'demo@$HOST#$pid' and 'cycles' in D[0] and 'last_heartbeat_ms_ago' in D[0] and 'messages_per_s' in D[0]" ||
    fail "the node's agent in the main status: $(cat "$T/status.json")"
kz_wait_for 60 st "sorted(o['id'] for o in O) == sorted(['orchestrator@main-h#$PID_main', 'orchestrator@node-h#$PID_node'])" ||
    fail "the orchestrators in the status: $(cat "$T/status.json")"
[[ -e "$STATE/logs/demo.0.log" ]] || fail "no log of the node's agent"
grep -q "started 'broker'" "$T/node.log" && fail "the node started a broker"

# the node restarts its agent; the main one follows: one demo, the new
# pid, the restart and the exit it heard of in agent.exited
kill -KILL "$pid"
kz_wait_log node "'demo.0' (pid $pid) exited: killed by signal 9; restart 1" 30 ||
    fail "the node did not see its agent die"
kz_wait_for 30 st "len(D) == 1 and D[0]['pid'] != $pid and D[0]['state'] == 'idle' and D[0].get('restarts') == 1 and D[0].get('last_exit') == 'killed by signal 9'" ||
    fail "the main status after the node's restart: $(cat "$T/status.json")"
pid=$(st 'D[0]["pid"]' | tail -1)

# the node stops: its agent says bye, the main one shows it stopped
kill -TERM "$PID_node"
kz_wait_for 30 st "len(D) == 1 and D[0]['pid'] == $pid and D[0]['state'] == 'stopped'" ||
    fail "the main status does not show the node's agent stopped: $(cat "$T/status.json")"
deadline=$((SECONDS + 90))
while kill -0 "$PID_node" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
kill -0 "$PID_node" 2>/dev/null && fail "the node did not exit"
wait "$PID_node" || fail "the node orchestrator exited non-zero"
[[ -e /proc/$pid ]] && fail "the node's agent $pid is left"
kz_wait_for 60 st "[o['state'] for o in O if o['id'].startswith('orchestrator@node-h')] == ['stopped']" ||
    fail "the node orchestrator does not show stopped: $(cat "$T/status.json")"

# an agent nobody supervises: stale after 2 s without heartbeats, gone after 12 s
kz_start hand "$KZ_BIN/kaizen-demo" -c "$KAIZEN_CONFIG"
kz_wait_for 30 st "len(D) == 1 and D[0]['pid'] == $PID_hand and D[0]['state'] == 'idle' and D[0]['supervised'] is False" ||
    fail "the hand-started agent is not in the status: $(cat "$T/status.json")"
kill -KILL "$PID_hand"
kz_wait_for 60 st "D[0]['state'] == 'stale' and D[0]['last_heartbeat_ms_ago'] >= 2000" ||
    fail "the killed agent never showed stale: $(cat "$T/status.json")"
kz_wait_for 60 st "D[0]['state'] == 'gone' and D[0]['last_heartbeat_ms_ago'] >= 12000 and 'uptime_ms' not in D[0]" ||
    fail "the killed agent never showed gone: $(cat "$T/status.json")"

kill -TERM "$PID_main"
deadline=$((SECONDS + 90))
while kill -0 "$PID_main" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
kill -0 "$PID_main" 2>/dev/null && fail "the main orchestrator did not exit"
wait "$PID_main" || fail "the main orchestrator exited non-zero"
left=$(pgrep -f "$STATE" || true)
[[ -z "$left" ]] || fail "processes left: $(ps -o pid,args -p "${left//$'\n'/,}")"
echo "ok"
