#!/usr/bin/env bash
# test_recorder_typed: what the recorder derives from each message type,
# exactly once. A python publisher sends hand-made envelopes (fixed ids
# and sources) of every recorded type in order; the typed tables must
# then hold: agents (hello, heartbeat - also of an agent never said
# hello -, bye, the supervisor's agent.exited), autonomous_agent_logs
# (layer from agents, actions and statuses, texts cut to the seed's
# sizes, NUL and control characters kept safely), scans, findings (a
# huge line number capped), metrics (a NaN value left out),
# code_quality_snapshots, improvement_suggestions through its states,
# plan_transitions in order, learned_patterns (one row per pattern).
# Sending two of the messages again adds nothing anywhere. A message the
# database refuses (a test-only CHECK constraint) is isolated, logged
# with its id and skipped; the rest of its batch is stored.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json msgpack zmq || skip "no python3 with msgpack and zmq (apt-get install -y python3-msgpack python3-zmq)"

K=$KZ_BIN/kaizen
kz_config <<'EOF'
supervisor:
  broker: false
database:
  flush_interval: 50ms
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

# expect SQL WANT: the query's output must be WANT
expect() {
    local got
    got=$(kz_psql "$1" 2>&1)
    [[ $got == "$2" ]] || fail "$1
  got:  $got
  want: $2"
}

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
# the orchestrator's own agent.hello gives the layer of its rows below
orch_known() { [[ $(kz_psql "SELECT count(*) FROM agents WHERE name = 'orchestrator'") -ge 1 ]]; }
kz_wait_for 30 orch_known || fail "the orchestrator's agent.hello was not recorded"

# publish.py PHASE: send the envelopes of PHASE (all | again) through the
# broker; waits for its probe to be recorded first (so the broker has our
# subscription and nothing is dropped), then for the last envelope
export T KZ_PUB
cat >"$T/publish.py" <<'PY'
import math, os, subprocess, sys, time
import msgpack, zmq

T, phase = os.environ["T"], sys.argv[1]
now = int(time.time() * 1e6)
n = [0]

def env(type_, src, body, corr=None, target=None, id_=None):
    n[0] += 1
    m = {"v": 1, "id": id_ or "01J0000000000000000000%04d" % n[0], "type": type_, "src": src,
         "ts": now + n[0] * 1000, "body": body}
    if corr is not None:
        m["corr"] = corr
    if target is not None:
        m["target"] = target
    return m

CH = "code-health@h1#4242"
msgs = [
    env("agent.hello", CH, {"name": "code-health", "layer": "monitoring", "host": "h1",
                            "pid": 4242, "version": "1.0", "interval_ms": 1000}),
    env("agent.heartbeat", CH, {"name": "code-health", "state": "busy", "uptime_ms": 5000,
                                "cycles": 3, "last_cycle_ms": 120, "last_result": "ok",
                                "pid": 4242}),
    env("agent.heartbeat", "ghost@h2#7", {"name": "ghost", "state": "idle", "uptime_ms": 1000,
                                          "cycles": 0, "pid": 7}),
    env("agent.log", CH, {"level": "warn",
                          "message": "tab\there\nnl back\\slash nul\x00end " + "x" * 300},
        corr="S1", target="repo1"),
    env("scan.started", CH, {"scan_id": "S1", "commit": "abc123", "files": 10,
                             "tools": ["flake8"]}, corr="S1", target="repo1"),
    env("finding.batch", CH, {"scan_id": "S1", "seq": 0, "findings": [
        {"tool": "flake8", "rule": "E501", "severity": "low", "category": "style",
         "file": "a.py", "line": 3, "col": 80, "message": "line too long",
         "fingerprint": "f" * 32},
        {"tool": "flake8", "rule": "F401", "severity": "medium", "category": "bug",
         "file": "b.py", "line": 2 ** 40, "message": "unused import",
         "fingerprint": "e" * 32, "fix": "remove it"}]}, corr="S1", target="repo1"),
    env("metric.batch", CH, {"scan_id": "S1", "metrics": [
        {"name": "health", "value": 87.5, "unit": "%", "labels": {"lang": "python"}},
        {"name": "broken", "value": math.nan}]}, target="repo1"),
    env("scan.completed", CH, {"scan_id": "S1", "status": "ok", "findings": 2, "files": 10,
                               "duration_ms": 1500, "tools": [
        {"name": "flake8", "status": "ok", "findings": 2, "duration_ms": 1400}]},
        corr="S1", target="repo1"),
    env("analysis.result", "code-quality@h1#5", {"scan_id": "S1", "kind": "quality", "summary": {
        "overall_score": 81.5, "test_coverage": 60, "security_score": "n/a"}}, target="repo1"),
    env("plan.proposed", "improvement-planner@h1#6", {
        "plan_id": "P1", "fixer": "black", "files": ["a.py", "b.py"], "findings": ["f" * 32],
        "impact": 3.5, "effort": 1, "risk": 0.1, "rationale": "format"}, target="repo1"),
    env("plan.ready", "feature-prioritizer@h1#7", {
        "plan_id": "P1", "fixer": "black", "files": ["a.py", "b.py"], "findings": ["f" * 32],
        "impact": 3.5, "effort": 1, "risk": 0.1, "rank": 2}, target="repo1"),
    env("plan.approved", "kaizen@h1#8", {"plan_id": "P1", "by": "alice"}),
    env("plan.accepted", "orchestrator@h1#1", {"plan_id": "P1", "commit": "def456",
                                               "branch": "kaizen/P1"}),
    env("learn.update", "pattern-learner@h1#9", {"pattern": "black|E501|python|repo1",
                                                 "success": 3, "failure": 1, "rate": 0.7}),
    env("learn.update", "pattern-learner@h1#9", {"pattern": "black|E501|python|repo1",
                                                 "success": 4, "failure": 1, "rate": 0.75}),
    env("agent.exited", "orchestrator@h1#1", {"name": "code-health", "instance": 0, "host": "h1",
                                              "pid": 4242, "status": "killed by signal 9",
                                              "restarts": 1, "restart_in_ms": 500}),
    env("agent.failed", "orchestrator@h1#1", {"name": "code-health", "instance": 0, "host": "h1",
                                              "reason": "too many restarts", "restarts": 6}),
    env("agent.bye", "ghost@h2#7", {"name": "ghost", "reason": "signal"}),
]
if phase == "again":  # the agent.log and the finding.batch once more, same ids
    msgs = [msgs[3], msgs[5]]

def recorded(id_):
    out = subprocess.run(["psql", "-X", "-A", "-t", "-h", T + "/state/db/run", "-U", "kaizen",
                          "-d", "kaizen", "-c", "SELECT count(*) FROM events WHERE id = '%s'" % id_],
                         capture_output=True, text=True).stdout.strip()
    return out == "1"

ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.connect(os.environ["KZ_PUB"])
probe = env("test.event", "probe@h1#1", {"seq": 0}, id_="01J%023d" % (time.time_ns() % 10**23))
deadline = time.time() + 60
while not recorded(probe["id"]):
    if time.time() > deadline:
        sys.exit("probe never recorded")
    pub.send_multipart([b"test.event", msgpack.packb(probe)])
    time.sleep(0.1)
for m in msgs:
    pub.send_multipart([m["type"].encode(), msgpack.packb(m)])
while not all(recorded(m["id"]) for m in msgs[-1:]):
    if time.time() > deadline:
        sys.exit("last message never recorded")
    time.sleep(0.1)
pub.close(0)
ctx.term()
PY
"$PY" "$T/publish.py" all || fail "publisher failed"
kz_wait_for 30 kz_status 'b["held"] == 0' || fail "messages held: $(kz_status 'b')"

CH='code-health@h1#4242'
# --- agents
expect "SELECT name, layer, host, pid, version, state, cycles, last_cycle_ms, last_result,
        stop_reason, stopped_at IS NOT NULL FROM agents WHERE agent_id = '$CH'" \
    "code-health|monitoring|h1|4242|1.0|stopped|3|120|ok|killed by signal 9|t"
expect "SELECT name, layer IS NULL, state, pid, stop_reason, started_at < last_seen
        FROM agents WHERE agent_id = 'ghost@h2#7'" "ghost|t|stopped|7|signal|t"
# --- the activity log, in order
expect "SELECT string_agg(agent_name || ',' || layer || ',' || left(action, 20) || ',' || status,
        ' / ' ORDER BY id) FROM autonomous_agent_logs WHERE event_id LIKE '01J00000000%'" \
    "code-health,monitoring,started,ok / code-health,monitoring,tab	here
nl back\\sla,warn / code-health,monitoring,scan S1,ok / improvement-planner,unknown,plan proposed P1,proposed / feature-prioritizer,unknown,plan ready P1,ready / kaizen,unknown,plan approved P1,approved / orchestrator,orchestration,plan accepted P1,accepted / code-health,monitoring,exited: killed by si,restarting / code-health,monitoring,failed: too many res,failed / ghost,unknown,stopped,ok"
expect "SELECT length(action), position(U&'\\FFFD' IN action) > 0, target, corr
        FROM autonomous_agent_logs WHERE status = 'warn'" "200|t|repo1|S1"
expect "SELECT metrics FROM autonomous_agent_logs WHERE action = 'scan S1'" \
    '{"files": 10, "findings": 2, "duration_ms": 1500}'
expect "SELECT count(*) FROM autonomous_agent_logs WHERE created_at > now() AT TIME ZONE 'UTC'
        OR created_at < (now() AT TIME ZONE 'UTC') - interval '1 hour'" "0"
# --- scans, findings, metrics, quality
expect "SELECT scan_id, target, commit, status, files, findings, duration_ms, tools->0->>'name',
        started_at < completed_at FROM scans" "S1|repo1|abc123|ok|10|2|1500|flake8|t"
expect "SELECT string_agg(rule || ',' || line || ',' || coalesce(col::text, '-') || ',' ||
        coalesce(fix, '-'), ' / ' ORDER BY id) FROM findings WHERE scan_id = 'S1'" \
    "E501,3,80,- / F401,2147483647,-,remove it"
expect "SELECT name, value, unit, labels->>'lang', scan_id FROM metrics" "health|87.5|%|python|S1"
expect "SELECT overall_score, test_coverage, security_score IS NULL, scan_id, target
        FROM code_quality_snapshots" "81.5|60|t|S1|repo1"
# --- plans
expect "SELECT agent_name, category, priority, title, status, estimated_impact, effort, risk,
        implemented_at IS NOT NULL, description FROM improvement_suggestions WHERE plan_id = 'P1'" \
    "improvement-planner|fix|2|black: a.py, b.py|accepted|3.5|1|0.1|t|format"
expect "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = 'P1'" \
    "proposed,ready,approved,accepted"
# --- learning
expect "SELECT pattern_type, success_rate, usage_count, successes, failures, pattern
        FROM learned_patterns" "black|0.75|5|4|1|black|E501|python|repo1"

# --- the same messages again: nothing new anywhere
before=$(kz_psql "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM autonomous_agent_logs
            WHERE event_id LIKE '01J00000000%'), (SELECT count(*) FROM findings)")
dup0=$(kz_status 'b["database"]["duplicates"]')
"$PY" "$T/publish.py" again || fail "publisher failed"
kz_wait_for 30 kz_status "b['database']['duplicates'] >= $dup0 + 2" ||
    fail "the repeated messages were not seen: $(kz_status 'b["database"]')"
after=$(kz_psql "SELECT (SELECT count(*) FROM events WHERE id LIKE '01J00000000%'),
              (SELECT count(*) FROM autonomous_agent_logs WHERE event_id LIKE '01J00000000%'),
              (SELECT count(*) FROM findings)")
[[ ${after#*|} == "${before#*|}" ]] || fail "repeated messages derived rows: $before -> $after"
[[ ${after%%|*} == 18 ]] || fail "events: ${after%%|*} rows of the 18 messages"

# --- a message the database refuses is skipped, its batch is not
kz_psql "ALTER TABLE events ADD CONSTRAINT test_no_13
   CHECK (type <> 'test.event' OR body->>'seq' IS DISTINCT FROM '13')" >/dev/null ||
    fail "unable to add the constraint"
"$KZ_TOOLS/kz_pub" test.event --count 50 --start 0 >"$T/pub.log" 2>&1 || fail "kz_pub failed"
kz_wait_for 60 kz_status 'b["database"]["skipped"] == 1 and b["held"] == 0' ||
    fail "nothing skipped: $(kz_status 'b["database"]')"
kz_wait_for 30 grep -q "refused by the database and skipped: SQLSTATE 23514" "$T/orch.log" ||
    fail "the refused message was not logged"
grep -q "storing them one by one" "$T/orch.log" || fail "the isolation was not logged"
expect "SELECT count(*), count(DISTINCT body->>'seq'), sum((body->>'seq')::int)
        FROM events WHERE type = 'test.event' AND src NOT LIKE 'probe@%'" "49|49|$((49 * 50 / 2 - 13))"
kz_status 'b["database"]["state"] == "up" and b["spool"]["state"] == "empty"' ||
    fail "after the refusal: $(kz_status 'b')"
echo "ok"
