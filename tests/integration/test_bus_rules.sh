#!/usr/bin/env bash
# test_bus_rules.sh - the broker's per-role rules (proto/PROTOCOL.md 1.5) on
# a CURVE bus with keys from `kaizen keygen --role`: a real broker,
# orchestrator (router and recorder) and PostgreSQL; the orchestrator,
# the CLI and the test's actors each use the key of their role.
#  - a plan awaiting approval: `kaizen publish plan.approved` with an
#    agent's key is refused (counted for that identity in `kaizen stats`)
#    and the plan still waits; the operator's key approves it;
#  - an agent's key cannot join kaizen.recorder or kaizen.router (the
#    orchestrator's groups), an operator's key cannot offer validate.tests,
#    an agent's key reads nothing from the tap: all counted as refused;
#  - the operator's monitor sees the traffic, the agent's offer of
#    validate.tests is served;
#  - `kaizen call exec.refactor` (operator) and a call of validate.tests by an
#    agent are refused by the broker with an error reply naming the rule; the
#    orchestrator's key calls validate.tests, the operator kaizen.plan;
#  - a key that is not in allow_dir gets nothing through at all.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
kz_python json || skip "no python3"
K=$KZ_BIN/kaizen
[[ -x $K && -x $KZ_BIN/kaizen-broker && -x $KZ_BIN/kaizen-orchestrator && -x $KZ_TOOLS/kz_sub &&
    -x $KZ_TOOLS/kz_serve && -x $KZ_TOOLS/kz_call ]] || skip "kaizen or the test tools are not built"

# --- keys: one per role, and a rogue one the broker does not know
KEYS=$T/keys
"$K" keygen broker --dir "$KEYS" >/dev/null || fail "keygen broker exited $?"
for kr in orch:orchestrator agent-x:agent op:operator rogue:operator; do
    "$K" keygen "${kr%%:*}" --role "${kr#*:}" --dir "$KEYS" >/dev/null || fail "keygen $kr exited $?"
done
mkdir -p "$T/allow"
cp "$KEYS/orch.key" "$KEYS/agent-x.key" "$KEYS/op.key" "$T/allow/"

# --- a target repository with one commit
REPO=$T/repo
mkdir -p "$REPO"
printf 'x = 1\n' >"$REPO/a.py"
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m "one"
BASE=$(git -C "$REPO" rev-parse HEAD)

# the config every kaizen process reads: each takes the key of its role
kz_config <<EOF
  curve:
    enabled: true
    broker_cert: $KEYS/broker.key_secret
    broker_public: $KEYS/broker.key
    allow_dir: $T/allow
    orchestrator_cert: $KEYS/orch.key_secret
    agent_cert: $KEYS/agent-x.key_secret
    operator_cert: $KEYS/op.key_secret
  call_timeout: 2s
  call_retries: 0
database:
  flush_interval: 50ms
targets:
  - name: py
    path: $REPO
    languages: [python]
    branch: main
tools:
  - name: black
    languages: [python]
    files: ["*.py"]
    argv: [/usr/bin/python3, -m, black, --check, --, "{files}"]
    format: files
fixers:
  - name: black
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    risk: 0.9
policy:
  require_approval: 0.5
  exec_timeout: 2s
  retries: 0
EOF
CFG=$KAIZEN_CONFIG
# an actor's config: the same bus, every role's key replaced by CERT
actor() { # FILE CERT
    sed -e "s#^\(    \)\(orchestrator\|agent\|operator\)_cert: .*#\1\2_cert: $2#" "$CFG" >"$1"
    echo "    client_cert: $2" >>"$1.tmp"
    sed -i "/^    allow_dir:/r $1.tmp" "$1"
    rm -f "$1.tmp"
}
actor "$T/agent.yaml" "$KEYS/agent-x.key_secret"
actor "$T/op.yaml" "$KEYS/op.key_secret"
actor "$T/rogue.yaml" "$KEYS/rogue.key_secret"
actor "$T/orch.yaml" "$KEYS/orch.key_secret"
grep -q "operator_cert: $KEYS/agent-x.key_secret" "$T/agent.yaml" || fail "actor config: $(cat "$T/agent.yaml")"

kz_at_exit kz_kill_leftovers
kz_db_start
# the orchestrator starts the broker (its log: STATE/logs/broker.log)
BLOG=$T/state/logs/broker.log
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_for 60 grep -q "broker ready.*curve=on" "$BLOG" || fail "the broker did not start with CURVE"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"

# refused ACTION for IDENTITY in the broker's stats is at least N
refused() { # IDENTITY ACTION N
    "$K" stats --json >"$T/stats.json" 2>/dev/null || return 1
    "$PY" - "$@" "$T/stats.json" <<'PY'
import json, sys
who, action, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
r = json.load(open(path)).get("refused", {}).get(who, {})
sys.exit(0 if r.get(action, 0) >= n else 1)
PY
}

# --- a plan that waits for a person
status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
status_is() { [[ $(status_of "$1") == "$2" ]]; }
transitions() { kz_psql "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = '$1'"; }
"$K" publish plan.ready "{\"plan_id\":\"Pask\",\"fixer\":\"black\",\"files\":[\"a.py\"],\"findings\":[\"f1\"],\"impact\":1,\"effort\":0.5,\"risk\":0.9,\"base_commit\":\"$BASE\",\"tool\":\"black\"}" \
    --target py >/dev/null || fail "kaizen publish plan.ready failed"
kz_wait_for 60 status_is Pask awaiting_approval || fail "Pask: status $(status_of Pask), want awaiting_approval"

# (a) an agent's key approves: refused, counted, the plan still waits
"$K" -c "$T/agent.yaml" publish plan.approved '{"plan_id":"Pask","by":"mallory"}' >/dev/null ||
    fail "publish with the agent's key exited $?"
kz_wait_for 30 refused agent-x publish 1 || fail "the forged plan.approved was not refused: $(cat "$T/stats.json")"
kz_wait_for 30 grep -qF "refused publish 'plan.approved' from 'agent-x' (role agent): only operator, orchestrator may" "$BLOG" ||
    fail "no refusal logged"
# the recorder (and the router: same orchestrator) had the time to see it
# had it gone through: a later event of the operator arrives after it
"$K" publish test.event '{"seq":1}' >/dev/null || fail "the operator's test.event failed"
kz_wait_for 30 kz_psql_is "SELECT count(*) FROM events WHERE type = 'test.event'" 1 ||
    fail "the operator's test.event was not recorded"
status_is Pask awaiting_approval || fail "the agent's plan.approved moved Pask to $(status_of Pask)"
[[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'plan.approved'") == 0 ]] ||
    fail "the forged plan.approved was recorded"
# the rogue key (not in allow_dir) is not even counted: it never connects
timeout 20 "$K" -c "$T/rogue.yaml" publish plan.approved '{"plan_id":"Pask","by":"rogue"}' >/dev/null 2>&1
# the operator approves
"$K" publish plan.approved '{"plan_id":"Pask","by":"alice"}' >/dev/null || fail "the operator's plan.approved failed"
approved() { [[ $(transitions Pask) == *approved* ]]; }
kz_wait_for 60 approved || fail "the operator's approval did not move Pask: $(transitions Pask)"
[[ $(kz_psql "SELECT string_agg(body->>'by', ',') FROM events WHERE type = 'plan.approved'") == alice ]] ||
    fail "plan.approved recorded: $(kz_psql "SELECT body FROM events WHERE type = 'plan.approved'")"

# (b) joins and offers by the wrong roles
kz_start join-rec "$KZ_TOOLS/kz_sub" -c "$T/agent.yaml" --group kaizen.recorder --prefix ""
kz_start join-router "$KZ_TOOLS/kz_sub" -c "$T/agent.yaml" --group kaizen.router --prefix plan.
kz_wait_for 30 refused agent-x join 2 || fail "the agent's joins were not refused: $(cat "$T/stats.json")"
kz_start fake-tests "$KZ_TOOLS/kz_serve" validate.tests -c "$T/op.yaml"
kz_wait_for 30 refused op offer 1 || fail "the operator's offer was not refused: $(cat "$T/stats.json")"
kz_start real-tests "$KZ_TOOLS/kz_serve" validate.tests -c "$T/agent.yaml"
"$KZ_TOOLS/kz_call" validate.tests -c "$T/orch.yaml" -f who=orch --timeout-ms 10000 --retries 2 >"$T/call.out" ||
    fail "the orchestrator's call to validate.tests failed: $(cat "$T/call.out")"
grep -q "^got " "$T/real-tests.log" || fail "the agent's validate.tests did not serve the call"
grep -q "^got " "$T/fake-tests.log" && fail "the operator's validate.tests got a request"

# (b2) executors and validators are called only by the orchestrator's
# router (issue #12): the operator's `kaizen call` and an agent's call are
# refused by the broker with an error reply that says so, and nothing
# reaches the worker
served=$(grep -c "^got " "$T/real-tests.log")
"$K" call exec.refactor "{\"plan_id\":\"Pask\",\"fixer\":\"black\",\"files\":[\"a.py\"],\"base_commit\":\"$BASE\"}" \
    --target py --retries 0 --timeout 10s >"$T/call-exec.out" 2>&1 && fail "kaizen call exec.refactor succeeded: $(cat "$T/call-exec.out")"
grep -qF "the broker's rules refuse a call to 'exec.refactor' from 'op' (role operator): only orchestrator may" "$T/call-exec.out" ||
    fail "kaizen call exec.refactor: no refusal: $(cat "$T/call-exec.out")"
"$K" call validate.tests '{"plan_id":"Pask","commit":"'"$BASE"'","base_commit":"'"$BASE"'"}' \
    --target py --retries 0 --timeout 10s >"$T/call-val.out" 2>&1 && fail "kaizen call validate.tests succeeded"
grep -qF "refuse a call to 'validate.tests' from 'op' (role operator)" "$T/call-val.out" ||
    fail "kaizen call validate.tests: no refusal: $(cat "$T/call-val.out")"
"$K" -c "$T/agent.yaml" call validate.tests '{"plan_id":"Pask","commit":"'"$BASE"'","base_commit":"'"$BASE"'"}' \
    --target py --retries 0 --timeout 10s >"$T/call-agent.out" 2>&1 && fail "an agent's call to validate.tests succeeded"
grep -qF "refuse a call to 'validate.tests' from 'agent-x' (role agent)" "$T/call-agent.out" ||
    fail "an agent's call to validate.tests: no refusal: $(cat "$T/call-agent.out")"
[[ $(grep -c "^got " "$T/real-tests.log") == "$served" ]] || fail "a refused call reached validate.tests"
kz_wait_for 30 refused op call 2 || fail "the operator's calls are not counted as refused: $(cat "$T/stats.json")"
grep -qF "refused call 'exec.refactor' from 'op' (role operator): only orchestrator may" "$BLOG" ||
    fail "the refused call was not logged"
# the operator still calls what it may: the orchestrator's services
"$K" call kaizen.plan '{"plan_id":"Pask"}' --type plan.query --json >"$T/plan.out" ||
    fail "kaizen call kaizen.plan failed: $(cat "$T/plan.out")"
grep -q '"type":"plan.info".*"plan_id":"Pask"' "$T/plan.out" || fail "kaizen.plan: $(cat "$T/plan.out")"
# the joins took nothing from the orchestrator's groups
"$K" publish plan.rejected '{"plan_id":"Pnone","by":"alice","reason":"test"}' >/dev/null || fail "publish failed"
kz_wait_for 30 kz_psql_is "SELECT count(*) FROM events WHERE type = 'plan.rejected'" 1 ||
    fail "the recorder did not get the event (its group was shared?)"
grep -q '^msg \|^seq ' "$T/join-rec.log" "$T/join-router.log" && fail "a refused member got a delivery"

# (c) the tap: the operator's monitor sees traffic, the agent's nothing
kz_start stream "$KZ_TOOLS/kz_pub" live.x -c "$T/op.yaml" --count 0 --rate 20
timeout 30 "$K" monitor --count 3 --topic live.x --json >"$T/live-op.out" || fail "operator monitor exited $?"
[[ $(grep -c '"name":"live.x"' "$T/live-op.out") -eq 3 ]] || fail "operator monitor output: $(cat "$T/live-op.out")"
timeout 5 "$K" -c "$T/agent.yaml" monitor --count 1 >"$T/live-agent.out" 2>&1
rc=$?
[[ $rc -eq 124 ]] || fail "agent monitor: want timeout (124), got $rc: $(cat "$T/live-agent.out")"
[[ -s $T/live-agent.out ]] && fail "agent monitor printed: $(cat "$T/live-agent.out")"
kz_wait_for 30 refused agent-x tap 1 || fail "the agent's tap subscription was not refused: $(cat "$T/stats.json")"

# nothing from the rogue key anywhere; the table shows the refusals
"$K" stats >"$T/stats.txt" || fail "kaizen stats exited $?"
grep -q "^agent-x  *agent " "$T/stats.txt" || fail "kaizen stats: no refusals of agent-x: $(cat "$T/stats.txt")"
grep -q "rogue" "$T/stats.json" "$T/stats.txt" && fail "the rogue key shows in the stats"
grep -q "refused join 'kaizen.recorder' from 'agent-x'" "$BLOG" || fail "the refused join was not logged"
# kaizen doctor checks that each role's key is admitted with that role
"$K" doctor >"$T/doctor.out" 2>&1
for r in orchestrator agent operator; do
    grep -q "ok  *bus role $r " "$T/doctor.out" || fail "doctor: role $r: $(grep 'bus role' "$T/doctor.out")"
done
"$K" -c "$T/agent.yaml" doctor >"$T/doctor-agent.out" 2>&1 && fail "doctor passed with the agent's key as the operator's"
grep -q "FAIL  *bus role operator .*agent-x.key has role agent" "$T/doctor-agent.out" ||
    fail "doctor: no failed operator role: $(grep 'bus role' "$T/doctor-agent.out")"
kill -0 "$PID_orch" || fail "the orchestrator died"
echo ok
