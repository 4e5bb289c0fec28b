#!/usr/bin/env bash
# test_supervisor.sh - kaizen-orchestrator starts the broker and the agents
# in layer order, restarts an agent killed with SIGKILL (restarts=1, a new
# pid, idle again), gives its children a clean start (stdin /dev/null,
# output to their log file, no inherited ignored signals or signal mask,
# the orchestrator's process group) and on SIGTERM stops the agents in
# reverse layer order, then the broker, and leaves no process behind.
#
# Two layers with the one real agent there is: "code-quality" (layer
# analysis) is kaizen-demo under that name, in a private bin directory
# holding a copy of kaizen-orchestrator (it finds the broker and the
# agents beside its own executable).
source "$(dirname "$0")/lib.sh"
kz_python json || skip "no python3"

mkdir -p "$T/bin"
cp "$KZ_BIN/kaizen-orchestrator" "$T/bin/"
ln -s "$KZ_BIN/kaizen-broker" "$T/bin/kaizen-broker"
ln -s "$KZ_BIN/kaizen-demo" "$T/bin/kaizen-demo"
ln -s "$KZ_BIN/kaizen-demo" "$T/bin/kaizen-code-quality"

# code-quality first in the file: the layers decide the order, not the file
kz_config <<'EOF'
agent_heartbeat: 500ms
supervisor:
  backoff_initial: 100ms
  stop_timeout: 10s
agents:
  - name: code-quality
    interval: 1s
  - name: demo
    instances: 2
    interval: 1s
EOF
STATE=$T/state

# st EXPR: the orchestrator's status, EXPR evaluated by python over
# d (the reply body), A (its agents) and by(NAME, INSTANCE) -> agent;
# prints the value, succeeds when it is true
st() {
    "$KZ_BIN/kaizen" call kaizen.status --json --timeout 10s --retries 0 >"$T/status.json" \
        2>"$T/status.err" || return 1
    "$PY" - "$1" "$T/status.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))["body"]
A = d.get("agents", [])
def by(name, instance=0):
    for a in A:
        if a.get("name") == name and a.get("supervised") and a.get("instance") == instance:
            return a
    return {}
v = eval(sys.argv[1])
print(v)
sys.exit(0 if v else 1)
PY
}

kz_start orch "$T/bin/kaizen-orchestrator" -c "$KAIZEN_CONFIG"

# (each look retried: on a loaded machine one status call may miss its 10 s)
kz_wait_for 60 st 'all(by(n, i).get("state") == "idle" for n, i in (("demo", 0), ("demo", 1), ("code-quality", 0)))' ||
    fail "the agents never showed idle in the status: $(cat "$T/status.json" "$T/status.err" 2>/dev/null)"
kz_wait_for 30 st 'by("broker").get("state") == "idle" and by("broker").get("pid", 0) > 0' ||
    fail "the broker is not in the status as a supervised process: $(cat "$T/status.json")"
kz_wait_for 30 st 'by("demo", 0)["layer"] == "monitoring" and by("code-quality")["layer"] == "analysis"' ||
    fail "layers wrong: $(cat "$T/status.json")"
kz_wait_for 30 st 'all(by(n, i).get("id", "").startswith("demo@") and by(n, i).get("restarts") == 0 for n, i in (("demo", 0), ("demo", 1), ("code-quality", 0)))' ||
    fail "agents not matched to their processes: $(cat "$T/status.json")"

# one log per process, written by the agent itself
for f in broker demo.0 demo.1 code-quality.0; do
    [[ -s "$STATE/logs/$f.log" ]] || fail "no log $STATE/logs/$f.log"
done
kz_wait_for 60 grep -q "started (layer monitoring" "$STATE/logs/demo.1.log" ||
    fail "demo.1.log does not hold the agent's own lines"

# the layers came up in order: analysis only after monitoring was up
grep -n "layer 'monitoring' up" "$T/orch.log" >/dev/null || fail "no 'layer monitoring up' line"
up_line=$(grep -n "layer 'monitoring' up" "$T/orch.log" | head -1 | cut -d: -f1)
cq_line=$(grep -n "started 'code-quality.0'" "$T/orch.log" | head -1 | cut -d: -f1)
[[ -n "$cq_line" && "$cq_line" -gt "$up_line" ]] ||
    fail "code-quality (analysis) was started before the monitoring layer was up"

# a child's start: stdin /dev/null, stdout and stderr its log file, no
# signal blocked, SIGHUP (which the orchestrator ignores) not ignored,
# the orchestrator's process group
pid0=$(st 'by("demo", 0)["pid"]' | tail -1)
pid1=$(st 'by("demo", 1)["pid"]' | tail -1)
bpid=$(st 'by("broker")["pid"]' | tail -1)
cqpid=$(st 'by("code-quality")["pid"]' | tail -1)
[[ $(readlink "/proc/$pid0/fd/0") == /dev/null ]] || fail "stdin of demo.0 is $(readlink "/proc/$pid0/fd/0")"
[[ $(readlink "/proc/$pid0/fd/1") == "$STATE/logs/demo.0.log" ]] ||
    fail "stdout of demo.0 is $(readlink "/proc/$pid0/fd/1")"
[[ $(readlink "/proc/$pid0/fd/2") == "$STATE/logs/demo.0.log" ]] ||
    fail "stderr of demo.0 is $(readlink "/proc/$pid0/fd/2")"
"$PY" - "$pid0" <<'PY' || fail "demo.0 inherited a signal mask or an ignored SIGHUP"
import sys
f = dict(l.split(":", 1) for l in open("/proc/%s/status" % sys.argv[1]) if ":" in l)
blocked, ignored = int(f["SigBlk"], 16), int(f["SigIgn"], 16)
sys.exit(0 if blocked == 0 and not ignored & 1 else 1)
PY
opg=$(ps -o pgid= -p "$PID_orch" | tr -d ' ')
for p in "$pid0" "$pid1" "$bpid" "$cqpid"; do
    [[ $(ps -o pgid= -p "$p" | tr -d ' ') == "$opg" ]] || fail "pid $p is not in the orchestrator's process group"
    [[ $(ps -o ppid= -p "$p" | tr -d ' ') == "$PID_orch" ]] || fail "pid $p is not the orchestrator's child"
done

# kill -9 one agent: restarted, restarts=1, a new pid, idle; the other untouched
kill -KILL "$pid0"
kz_wait_for 30 st "by('demo', 0).get('restarts') == 1 and by('demo', 0).get('pid') not in (None, $pid0) and by('demo', 0).get('state') == 'idle'" ||
    fail "demo.0 was not restarted: $(cat "$T/status.json")"
st "by('demo', 0).get('last_exit') == 'killed by signal 9' and by('demo', 1)['pid'] == $pid1 and by('demo', 1)['restarts'] == 0 and d['orchestrator']['restarts'] == 1" >/dev/null ||
    fail "after the restart: $(cat "$T/status.json")"
[[ -e /proc/$pid0 ]] && fail "the killed agent $pid0 was not reaped"
grep -q "'demo.0' (pid $pid0) exited: killed by signal 9; restart 1 in" "$T/orch.log" ||
    fail "the exit was not logged with its status"
newpid0=$(st 'by("demo", 0)["pid"]' | tail -1)

# SIGTERM: agents in reverse layer order, the broker last, exit 0
kill -TERM "$PID_orch"
deadline=$((SECONDS + 90))
while kill -0 "$PID_orch" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
kill -0 "$PID_orch" 2>/dev/null && fail "the orchestrator did not exit within 90 s of SIGTERM"
wait "$PID_orch"
rc=$?
[[ $rc -eq 0 ]] || fail "the orchestrator exited $rc"
for p in "$newpid0" "$pid1" "$bpid" "$cqpid"; do
    [[ -e /proc/$p ]] && fail "process $p ($(tr '\0' ' ' <"/proc/$p/cmdline")) is left"
done
left=$(pgrep -f "$T" || true)
[[ -z "$left" ]] && left=$(pgrep -f "$STATE" || true)
[[ -z "$left" ]] || fail "processes left: $(ps -o pid,args -p "${left//$'\n'/,}")"

order=$(grep -o -e "stopping layer '[a-z]*'" -e "layer '[a-z]*' stopped" -e "stopping the broker" \
    "$T/orch.log" | tr '\n' '|')
want="stopping layer 'analysis'|layer 'analysis' stopped|stopping layer 'monitoring'|layer 'monitoring' stopped|stopping the broker|"
[[ "$order" == "$want" ]] || fail "stop order: $order"
grep -q "'code-quality.0' (pid $cqpid) stopped: exit 0" "$T/orch.log" ||
    fail "code-quality did not stop cleanly on SIGTERM"
grep -q "'broker' (pid $bpid) stopped: exit 0" "$T/orch.log" || fail "the broker did not stop cleanly"
grep -q "agent.bye\|stopping" "$STATE/logs/demo.1.log" || fail "demo.1 did not log its stop"
echo "ok"
