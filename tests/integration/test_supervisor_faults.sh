#!/usr/bin/env bash
# test_supervisor_faults.sh - an agent that exits at once on every start is
# restarted with a doubling back-off until the restart intensity is spent,
# then marked failed (agent.failed published, and recorded when the
# embedded database runs); an agent whose executable does not exist fails
# at once with a "not found" reason; a healthy agent beside them keeps
# running throughout, and the orchestrator still stops cleanly.
#
# restart_intensity 3 means three restarts are made within the window and
# the fourth exit within it fails the agent: restarts=3 in the status.
#
# The broker runs on its own here (supervisor.broker false, as under
# systemd) so a subscriber is in place, and proven to receive, before the
# orchestrator publishes anything. "crashy" is kaizen-demo under another
# name, started with a flag it refuses (exit 2).
source "$(dirname "$0")/lib.sh"
kz_python json || skip "no python3"

mkdir -p "$T/bin"
cp "$KZ_BIN/kaizen-orchestrator" "$T/bin/"
ln -s "$KZ_BIN/kaizen-demo" "$T/bin/kaizen-demo"
ln -s "$KZ_BIN/kaizen-demo" "$T/bin/kaizen-crashy"

kz_config <<'EOF'
agent_heartbeat: 500ms
supervisor:
  broker: false
  restart_intensity: 3
  restart_window: 60s
  backoff_initial: 100ms
  backoff_max: 400ms
  start_timeout: 10s
agents:
  - name: demo
    interval: 1s
  - name: crashy
    args: ["--bogus-flag"]
  - name: no-such-agent
EOF
STATE=$T/state

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

kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_start sub "$KZ_TOOLS/kz_sub" agent. --json --out "$T/events.txt"
probe() {
    "$KZ_BIN/kaizen" publish agent.log '{"level":"info","message":"probe"}' >/dev/null 2>&1
    grep -q '^agent.log ' "$T/events.txt" 2>/dev/null
}
kz_wait_for 30 probe || fail "the subscriber never received a probe event"

# the embedded database, when this machine can run one: the failure must
# be recorded too
db=0
chmod 755 "$T" # as root the cluster runs as user postgres (lib.sh's kz_db_start does the same)
if "$KZ_BIN/kaizen" db start >"$T/db-start.log" 2>&1; then
    db=1
    kz_at_exit "\"$KZ_BIN/kaizen\" db stop"
else
    echo "note: 'kaizen db start' failed, the recording part is not checked: $(tail -n 3 "$T/db-start.log")"
fi

kz_start orch "$T/bin/kaizen-orchestrator" -c "$KAIZEN_CONFIG"

kz_wait_for 30 st 'by("demo").get("state") == "idle"' ||
    fail "the healthy demo agent never showed idle: $(cat "$T/status.json" "$T/status.err" 2>/dev/null)"
demo_pid=$(st 'by("demo")["pid"]' | tail -1)

# the executable that does not exist: failed at once, never restarted
kz_wait_for 30 st 'by("no-such-agent").get("state") == "failed"' ||
    fail "no-such-agent is not failed: $(cat "$T/status.json")"
st "by('no-such-agent')['restarts'] == 0 and 'pid' not in by('no-such-agent') and by('no-such-agent')['failed_reason'] == \"executable '$T/bin/kaizen-no-such-agent' not found\"" >/dev/null ||
    fail "no-such-agent's status: $(cat "$T/status.json")"

# the crash loop: 3 restarts, the 4th exit fails it
kz_wait_for 60 st 'by("crashy").get("state") == "failed"' ||
    fail "crashy is not failed: $(cat "$T/status.json")"
st "by('crashy')['restarts'] == 3 and by('crashy')['last_exit'] == 'exit 2' and '4 exits within 60000 ms' in by('crashy')['failed_reason'] and 'pid' not in by('crashy')" >/dev/null ||
    fail "crashy's status: $(cat "$T/status.json")"
st "d['orchestrator']['failures'] == 2 and d['orchestrator']['restarts'] == 3" >/dev/null ||
    fail "the orchestrator's counters: $(cat "$T/status.json")"
grep -q "'crashy.0' failed: 4 exits within 60000 ms (restart_intensity 3), the last: exit 2" "$T/orch.log" ||
    fail "the failure was not logged"
grep -q "'no-such-agent.0' failed: executable '.*/kaizen-no-such-agent' not found" "$T/orch.log" ||
    fail "the missing executable was not logged"
grep -q "unknown option '--bogus-flag'" "$STATE/logs/crashy.0.log" ||
    fail "crashy's own complaint is not in its log"

# published: the exits with a doubling back-off, then agent.failed
kz_wait_for 60 grep -q '^agent.failed .*"crashy"' "$T/events.txt" || fail "no agent.failed for crashy"
kz_wait_for 60 grep -q '^agent.failed .*"no-such-agent"' "$T/events.txt" ||
    fail "no agent.failed for no-such-agent"
"$PY" - "$T/events.txt" <<'PY' || fail "published events: $(grep -e exited -e failed "$T/events.txt")"
import json, sys
ev = [l.split(" ", 1) for l in open(sys.argv[1]) if " " in l]
ex = [json.loads(j)["body"] for t, j in ev if t == "agent.exited"]
ex = [b for b in ex if b["name"] == "crashy"]
assert len(ex) == 4, ex
assert [b.get("restart_in_ms") for b in ex] == [100, 200, 400, None], ex
assert [b["restarts"] for b in ex] == [1, 2, 3, 3], ex
assert all(b["status"] == "exit 2" and b["instance"] == 0 and b["pid"] > 0 for b in ex), ex
fl = [json.loads(j)["body"] for t, j in ev if t == "agent.failed"]
c = [b for b in fl if b["name"] == "crashy"]
assert len(c) == 1 and c[0]["restarts"] == 3 and "4 exits" in c[0]["reason"], fl
n = [b for b in fl if b["name"] == "no-such-agent"]
assert len(n) == 1 and n[0]["restarts"] == 0 and "not found" in n[0]["reason"], fl
PY

# the healthy one kept running and keeps beating; nothing is restarted later
cycles=$(st 'by("demo")["cycles"]' | tail -1)
kz_wait_for 60 st "by('demo')['pid'] == $demo_pid and by('demo')['cycles'] > $cycles + 1 and by('demo')['state'] == 'idle' and by('demo')['restarts'] == 0" ||
    fail "the healthy agent did not keep working: $(cat "$T/status.json")"
[[ $(grep -c "started 'crashy.0'" "$T/orch.log") -eq 4 ]] || fail "crashy was started other than 4 times"
grep -q "started 'no-such-agent.0'" "$T/orch.log" && fail "no-such-agent was started"
st "by('crashy')['state'] == 'failed' and by('no-such-agent')['state'] == 'failed'" >/dev/null ||
    fail "a failed agent came back"

if [[ $db -eq 1 ]]; then
    q() { psql -h "$STATE/db/run" -U kaizen kaizen -Atc "$1" 2>>"$T/psql.err"; }
    kz_wait_for 60 kz_psql_is "SELECT count(*) FROM events WHERE type = 'agent.failed' AND body->>'name' = 'crashy'" 1 ||
        fail "the agent.failed event was not recorded: $(q "SELECT type, body FROM events WHERE type LIKE 'agent.%ed'") $(cat "$T/psql.err")"
    kz_wait_for 30 kz_psql_is "SELECT count(*) > 0 FROM autonomous_agent_logs WHERE agent_name = 'crashy' AND 'failed' IN (status, action)" t ||
        fail "no 'failed' row in autonomous_agent_logs: $(q "SELECT agent_name, action, status FROM autonomous_agent_logs") $(cat "$T/psql.err")"
fi

kill -TERM "$PID_orch"
deadline=$((SECONDS + 90))
while kill -0 "$PID_orch" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
kill -0 "$PID_orch" 2>/dev/null && fail "the orchestrator did not exit within 90 s of SIGTERM"
wait "$PID_orch"
rc=$?
[[ $rc -eq 0 ]] || fail "the orchestrator exited $rc"
[[ -e /proc/$demo_pid ]] && fail "the demo agent $demo_pid is left"
left=$(pgrep -f "$T/bin" || true)
[[ -z "$left" ]] || fail "processes left: $(ps -o pid,args -p "${left//$'\n'/,}")"

# a broker that cannot start (its port is taken): the orchestrator exits 1
# quoting the broker's own last words, and leaves nothing behind
port=$(kz_port)
kz_start holder "$PY" -c "
import socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', $port)); s.listen()
print('listening', flush=True); time.sleep(300)"
kz_wait_log holder listening 60 || fail "unable to hold port $port"
cat >"$T/busy.yaml" <<EOF
state_dir: $T/state2
bus:
  endpoints:
    pub: tcp://127.0.0.1:$port
    sub: ipc://$T/sub2.sock
    router: ipc://$T/router2.sock
    tap: ipc://$T/tap2.sock
EOF
timeout 60 "$KZ_BIN/kaizen-orchestrator" -c "$T/busy.yaml" >"$T/busy.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] || fail "with the broker's port taken the orchestrator exited $rc"
grep -q "error .*the broker exited at once (exit 1): .*unable to bind 'tcp://127.0.0.1:$port': Address already in use" "$T/busy.log" ||
    fail "the broker's failure is not quoted: $(cat "$T/busy.log")"
left=$(pgrep -f "$T/busy.yaml" || true)
[[ -z "$left" ]] || fail "processes left: $(ps -o pid,args -p "${left//$'\n'/,}")"
echo "ok"
