#!/usr/bin/env bash
# test_router_faults: the router's answer to bad plans and to an executor
# that never answers, against a real broker, orchestrator, PostgreSQL and
# git repository (no agent is needed: every plan here ends before a
# fixer would run, or its executor is absent on purpose).
#  - unknown fixer, a file outside the target (../etc/passwd), an invalid
#    plan id, an unknown target, no target, an unknown base commit: each
#    fails in state "ready" with a reason naming the problem;
#  - the executor's service has no worker (exec_timeout 3s, no retries):
#    executing -> failed with the call's error, and the next plan runs;
#  - the same plan.ready delivered twice (same envelope id, as a broker
#    redelivery) while the plan executes, and again once it is final: it
#    runs once;
#  - risk (fixers[].risk) at or above policy.require_approval: awaiting_approval; a
#    person's plan.rejected ends it with nothing more published;
#  - plan.batch and plan.ranked (no plan_id) on the recorder's staged path
#    (a batch with an already stored message) store without a refusal;
#  - restart: an orchestrator killed while a plan executes -> the next one
#    fails it ("interrupted: the orchestrator restarted"), records the
#    execution as lost and rolls it back; a plan it left validating whose
#    commit is on kaizen/improvements already is accepted
#    (branch and worktree gone); an awaiting plan is reloaded and
#    `kaizen publish plan.approved` runs it;
#  - stop: SIGTERM while a plan executes -> failed "interrupted:
#    orchestrator stopping", rolled back;
#  - plan_transitions in order for every plan; the user's checkout is
#    unchanged.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
kz_python json msgpack zmq || skip "no python3 with msgpack and zmq (apt-get install -y python3-msgpack python3-zmq)"

K=$KZ_BIN/kaizen
REPO=$T/repo
STATE=$T/state

# a small real repository: the user's checkout, never to be touched
mkdir -p "$REPO/pkg"
printf 'def f( x ):\n    return x\n' >"$REPO/pkg/a.py"
printf 'def g(y):\n    return y\n' >"$REPO/pkg/b.py"
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m init
BASE=$(git -C "$REPO" rev-parse HEAD)
printf 'local change\n' >"$REPO/notes.txt" # the user's untracked work stays
user_state() { git -C "$REPO" rev-parse HEAD; git -C "$REPO" status --porcelain; git -C "$REPO" branch --list; }
before_user=$(user_state)

config() { # EXEC_TIMEOUT
    kz_config <<EOF
supervisor:
  broker: false
  stop_timeout: 2s
database:
  flush_interval: 50ms
targets:
  - name: repo
    path: $REPO
    branch: main
tools:
  - name: black
    argv: [/usr/bin/python3, -m, black, --check, --, "{files}"]
    format: files
fixers:
  - name: black
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    service: exec.nobody
    risk: 0.1
  - name: black-risky
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    service: exec.nobody
    risk: 0.9
policy:
  require_approval: 0.8
  max_concurrent: 2
  exec_timeout: $1
  retries: 0
EOF
}
config 3s
kz_at_exit kz_kill_leftovers
kz_db_start

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
start_orch() { # NAME
    kz_start "$1" "$KZ_BIN/kaizen-orchestrator"
    kz_wait_log "$1" "recording to the database" 60 || fail "$1 does not record"
    kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "$1: no router in the status"
}
start_orch orch

# plan ID FIXER FILES-JSON [RISK] [BASE]: a plan body
plan() {
    printf '{"plan_id":"%s","fixer":"%s","files":%s,"findings":["fp%s"],"impact":2,"effort":1,"risk":%s,"base_commit":"%s","tool":"black"}' \
        "$1" "$2" "$3" "$1" "${4:-0.1}" "${5:-$BASE}"
}
ready() { # BODY [--target NAME]
    "$K" publish plan.ready "$@" >/dev/null || fail "kaizen publish plan.ready $1 failed"
}
status_is() { [[ $(kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'") == "$2" ]]; }
wait_status() { # ID STATUS [SECONDS]
    kz_wait_for "${3:-30}" status_is "$1" "$2" ||
        fail "plan $1: status $(kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"), want $2"
}
reason_of() { # TYPE ID
    kz_psql "SELECT string_agg(body->>'state' || ': ' || (body->>'reason'), ' | ' ORDER BY seq)
             FROM events WHERE type = '$1' AND body->>'plan_id' = '$2'"
}
expect_reason() { # TYPE ID PATTERN
    local got
    got=$(reason_of "$1" "$2")
    [[ $got == *"$3"* ]] || fail "plan $2: $1 reason '$got' does not name '$3'"
}
transitions() { kz_psql "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = '$1'"; }
expect_transitions() { # ID WANT
    local got
    got=$(transitions "$1")
    [[ $got == "$2" ]] || fail "plan $1: transitions '$got', want '$2'"
}

# --- checks: each fails in state ready, with the reason
ready "$(plan Pfixer nosuch '["pkg/a.py"]')" --target repo
ready "$(plan Poutside black '["pkg/a.py","../etc/passwd"]')" --target repo
ready "$(plan 'bad/../id' black '["pkg/a.py"]')" --target repo
ready "$(plan Ptarget black '["pkg/a.py"]')" --target nope
ready "$(plan Pnotarget black '["pkg/a.py"]')"
ready "$(plan Pbase black '["pkg/a.py"]' 0.1 0123456789abcdef0123456789abcdef01234567)" --target repo
wait_status Pfixer failed
expect_reason plan.failed Pfixer "ready: unknown fixer 'nosuch'"
wait_status Poutside failed
expect_reason plan.failed Poutside "ready: file outside target 'repo'"
expect_reason plan.failed Poutside "../etc/passwd"
wait_status 'bad/../id' failed
expect_reason plan.failed 'bad/../id' "ready: invalid plan id 'bad/../id'"
wait_status Ptarget failed
expect_reason plan.failed Ptarget "ready: unknown target 'nope'"
wait_status Pnotarget failed
expect_reason plan.failed Pnotarget "ready: the plan names no target"
wait_status Pbase failed
expect_reason plan.failed Pbase "ready: base commit '0123456789abcdef0123456789abcdef01234567' not found in target 'repo'"
for p in Pfixer Poutside 'bad/../id' Ptarget Pnotarget Pbase; do expect_transitions "$p" "ready,failed"; done

# --- an executor that never answers; the same plan.ready twice (one
#     envelope id: a redelivery) while it runs; the next plan still runs
export T KZ_PUB BASE
cat >"$T/send.py" <<'PY'
# send.py what: publish hand-made envelopes through the broker (after a
# probe shows the broker has our publisher)
import json, os, subprocess, sys, time
import msgpack, zmq

T, what = os.environ["T"], sys.argv[1]
base = os.environ["BASE"]

def ulid():
    return "01K%023d" % (time.time_ns() % 10**23)

def env(type_, body, target=None, id_=None):
    m = {"v": 1, "id": id_ or ulid(), "type": type_, "src": "tester@h#1",
         "ts": int(time.time() * 1e6), "body": body}
    if target:
        m["target"] = target
    return m

def recorded(id_):
    out = subprocess.run(["psql", "-X", "-A", "-t", "-h", T + "/state/db/run", "-U", "kaizen",
                          "-d", "kaizen", "-c", "SELECT count(*) FROM events WHERE id = '%s'" % id_],
                         capture_output=True, text=True).stdout.strip()
    return out == "1"

ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.connect(os.environ["KZ_PUB"])
probe = env("test.event", {"seq": 0})
deadline = time.time() + 60
while not recorded(probe["id"]):
    if time.time() > deadline:
        sys.exit("probe never recorded")
    pub.send_multipart([b"test.event", msgpack.packb(probe)])
    time.sleep(0.1)

def send(m):
    pub.send_multipart([m["type"].encode(), msgpack.packb(m)])

if what == "twice":
    plan = {"plan_id": "Pslow", "fixer": "black", "files": ["pkg/a.py"], "findings": ["fp1"],
            "impact": 2, "effort": 1, "risk": 0.1, "base_commit": base}
    m = env("plan.ready", plan, target="repo")
    send(m)
    send(m)  # the same envelope again: what the broker does after a lost ack
    open(T + "/pslow.msg", "wb").write(msgpack.packb(m))
elif what == "again":
    send(msgpack.unpackb(open(T + "/pslow.msg", "rb").read(), raw=False))
elif what == "batch":
    # plan.batch and plan.ranked carry no plan_id; the probe (stored
    # already) sent again in the same batch takes the staged path
    plans = [{"plan_id": "Pb1", "fixer": "black", "files": ["pkg/a.py"], "findings": ["x"],
              "impact": 1, "effort": 1, "risk": 0.1}]
    send(env("plan.batch", {"scan_id": "S9", "plans": plans}, target="repo"))
    send(probe)
    last = env("plan.ranked", {"scan_id": "S9", "ready": [], "dropped": [
        {"plan_id": "Pb1", "reason": "test"}]}, target="repo")
    send(last)
    while not recorded(last["id"]):
        if time.time() > deadline:
            sys.exit("plan.ranked never recorded")
        time.sleep(0.1)
pub.close(0)
ctx.term()
PY
"$PY" "$T/send.py" twice || fail "send.py twice failed"
ready "$(plan Pnext black '["pkg/b.py"]')" --target repo
wait_status Pslow failed
expect_reason plan.failed Pslow "executing: exec.nobody answered with an error: no_worker: no worker serves 'exec.nobody'"
[[ $(kz_psql "SELECT body->>'cause' FROM events WHERE type = 'plan.failed' AND body->>'plan_id' = 'Pslow'") == no_executor ]] ||
    fail "Pslow's cause: $(kz_psql "SELECT body FROM events WHERE type = 'plan.failed' AND body->>'plan_id' = 'Pslow'")"
wait_status Pnext failed
expect_reason plan.failed Pnext "executing: exec.nobody answered with an error: no_worker: "
kz_wait_log orch "plan Pslow: already in progress; ignoring plan.ready" ||
    fail "the second delivery of Pslow was not ignored"
# once final, the same delivery again is ignored too
"$PY" "$T/send.py" again || fail "send.py again failed"
kz_wait_log orch "plan Pslow: already final; ignoring plan.ready" ||
    fail "the delivery of final Pslow was not ignored"
expect_transitions Pslow "ready,executing,failed"
expect_transitions Pnext "ready,executing,failed"
[[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'plan.state' AND body->>'plan_id' = 'Pslow'") == 1 ]] ||
    fail "Pslow executed more than once"

# --- approval: awaiting_approval, then a person rejects it
ready "$(plan Prej black-risky '["pkg/a.py"]' 0.9)" --target repo
wait_status Prej awaiting_approval
expect_reason plan.state Prej "awaiting_approval: risk 0.9 is at or above policy.require_approval 0.8"
kz_status 'b["router"]["awaiting"] == 1' >/dev/null || fail "status: $(kz_status 'b["router"]')"
"$K" publish plan.rejected '{"plan_id":"Prej","by":"tester","reason":"not now"}' >/dev/null ||
    fail "kaizen publish plan.rejected failed"
wait_status Prej rejected
kz_wait_log orch "plan Prej: awaiting_approval -> rejected by tester: not now" ||
    fail "the rejection was not logged"
kz_wait_for 60 kz_status 'b["router"]["awaiting"] == 0 and b["router"]["rejected"] == 1' ||
    fail "status after the rejection: $(kz_status 'b["router"]')"
expect_transitions Prej "ready,awaiting_approval,rejected"

# --- plan.batch / plan.ranked: stored, nothing refused
"$PY" "$T/send.py" batch || fail "send.py batch failed"
kz_wait_for 30 kz_status 'b["held"] == 0' || fail "messages held"
kz_status 'b["database"]["skipped"] == 0' >/dev/null ||
    fail "the recorder refused messages: $(kz_status 'b["database"]')"
[[ $(kz_psql "SELECT count(*) FROM plan_transitions WHERE plan_id IS NULL OR plan_id = 'Pb1'") == 0 ]] ||
    fail "plan.batch made plan transitions"
[[ $(kz_psql "SELECT action FROM autonomous_agent_logs WHERE status = 'ranked'") == "ranked scan S9: 0 ready, 1 dropped" ]] ||
    fail "plan.ranked not logged: $(kz_psql "SELECT action, status FROM autonomous_agent_logs WHERE status = 'ranked'")"

# --- restart: a plan killed while executing, an awaiting plan reloaded
kill -TERM "$PID_orch"
wait "$PID_orch" 2>/dev/null
config 60s
start_orch orch2
ready "$(plan Plong black '["pkg/a.py"]')" --target repo
ready "$(plan Pwait black-risky '["pkg/b.py"]' 0.9)" --target repo
wait_status Plong executing
wait_status Pwait awaiting_approval
# what the refactorer would have left: the plan's branch and worktree
git -C "$REPO" branch -q kaizen/plan-Plong "$BASE"
git -C "$REPO" worktree add -q "$STATE/worktrees/repo/plan-Plong" kaizen/plan-Plong ||
    fail "unable to add the test worktree"
"$K" publish plan.proposed "$(plan Pint black '["pkg/a.py"]')" --target repo >/dev/null ||
    fail "kaizen publish plan.proposed Pint failed"
kz_wait_for 30 kz_psql_is "SELECT count(*) FROM improvement_suggestions WHERE plan_id = 'Pint'" 1 ||
    fail "Pint not stored"
kill -KILL "$PID_orch2"
wait "$PID_orch2" 2>/dev/null
# a plan the dead orchestrator had integrated but not yet announced: its
# row says validating, kaizen/improvements holds its commit
kz_psql "UPDATE improvement_suggestions SET status = 'validating' WHERE plan_id = 'Pint'" >/dev/null
int_oid=$(git -C "$REPO" commit-tree "$BASE^{tree}" -p "$BASE" -m "black: pkg/a.py

Kaizen-Plan: Pint") || fail "commit-tree failed"
git -C "$REPO" update-ref refs/heads/kaizen/improvements "$int_oid" || fail "update-ref failed"
start_orch orch3
wait_status Plong failed
expect_reason plan.failed Plong "executing: interrupted: the orchestrator restarted"
# the executor may have run for Plong: its attempt is on record, as lost
[[ $(kz_psql "SELECT string_agg(status, ',') FROM executions WHERE plan_id = 'Plong'") == lost ]] ||
    fail "Plong's interrupted execution is not recorded: $(kz_psql "SELECT status, error FROM executions WHERE plan_id = 'Plong'")"
wait_status Pint accepted
[[ $(kz_psql "SELECT body->>'integrated_commit' FROM events WHERE type = 'plan.accepted' AND body->>'plan_id' = 'Pint'") == "$int_oid" ]] ||
    fail "Pint's plan.accepted does not name its integrated commit"
kz_wait_log orch3 "plan Pint: validating -> accepted: the orchestrator died after integrating it" ||
    fail "Pint's late acceptance was not logged"
git -C "$REPO" branch -q -D kaizen/improvements
# the rollback follows the plan.failed (the router says it first)
kz_wait_for 30 kz_branch_gone "$REPO" kaizen/plan-Plong || fail "branch kaizen/plan-Plong not deleted"
[[ ! -e "$STATE/worktrees/repo/plan-Plong" ]] || fail "worktree of Plong not removed"
expect_transitions Plong "ready,executing,failed"
kz_wait_log orch3 "plan Pwait: awaiting_approval (recovered at start)" || fail "Pwait not reloaded"
kz_status 'b["router"]["awaiting"] == 1' >/dev/null || fail "status: $(kz_status 'b["router"]')"
"$K" publish plan.approved '{"plan_id":"Pwait","by":"tester"}' >/dev/null ||
    fail "kaizen publish plan.approved failed"
wait_status Pwait executing
kz_wait_log orch3 "plan Pwait: awaiting_approval -> approved by tester" || fail "approval not logged"

# --- stop while executing: interrupted, rolled back
kill -TERM "$PID_orch3"
wait "$PID_orch3" 2>/dev/null
wait_status Pwait failed
expect_reason plan.failed Pwait "executing: interrupted: orchestrator stopping"
expect_transitions Pwait "ready,awaiting_approval,approved,executing,failed"
grep -q "router: interrupting 1 running plan" "$T/orch3.log" || fail "the interruption was not logged"

# --- the user's checkout is as it was
[[ $(user_state) == "$before_user" ]] || fail "the user's checkout changed:
$(user_state)
was:
$before_user"
[[ $(cat "$REPO/notes.txt") == "local change" ]] || fail "the user's untracked file changed"
echo "ok"
