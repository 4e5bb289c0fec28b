#!/usr/bin/env bash
# test_validation_waits: no silent waits in validation, on a real broker,
# orchestrator (router), PostgreSQL and the real agents (code-refactorer,
# test-runner, code-reviewer, pattern-learner), with test suites made slow
# on purpose (a conftest.py that sleeps at the session's start):
#  1. the code-reviewer rejects a plan while the test-runner still runs a
#     suite that would take 10 minutes: the plan ends rejected at once,
#     the router cancels validate.tests, and the suite's processes are
#     gone (the test-runner killed their process group); nothing of the
#     interrupted run is cached;
#  2. three plans validate at once against one test-runner and a suite
#     slower than broker.request_ttl: the requests wait in the broker's
#     queue (their deadline is policy.validate_timeout, not the ttl), none
#     is dropped, all three are accepted, and `kaizen run-once` never
#     stays silent longer than --progress: it says which call waits in
#     the queue and which one runs where; `kaizen status` shows the same;
#  3. a project whose suite cannot even be collected (its conftest imports
#     a module that is not there): tests.base says so after its scan, the
#     plan fails "tests cannot run at base: ..." with cause suite - never
#     accepted - and the learner records it as not counted: no learned
#     pattern moves.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
# kz-timeout: 900
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
for m in black pytest; do
    /usr/bin/python3 -m "$m" --version >/dev/null 2>&1 || skip "no python3 -m $m"
done
kz_python json msgpack || skip "no python3 with msgpack"
SAMPLE=$KZ_ROOT/examples/python-sample
[[ -d $SAMPLE ]] || skip "no examples/python-sample"

K=$KZ_BIN/kaizen
STATE=$T/state

# commit DIR: a new repository of DIR's files on main
commit() {
    git -C "$1" init -q -b main
    git -C "$1" -c user.name=t -c user.email=t@t add -A
    git -C "$1" -c user.name=t -c user.email=t@t commit -q -m "the project"
}
# the sample, its suite slower than the broker's request_ttl (2 s)
mkdir -p "$T/py"
cp -R "$SAMPLE/." "$T/py/"
find "$T/py" \( -name __pycache__ -o -name .pytest_cache \) -prune -exec rm -rf {} +
for f in a b c; do # three files black reformats
    printf 'def %s(x,y):\n  return [x,y]\n' "$f" >"$T/py/textkit/fmt_$f.py"
done
# every run waits while $T/hold exists (the test decides how long the
# calls queue), then takes 3 s: slower than broker.request_ttl, on purpose
touch "$T/hold"
cat >"$T/py/conftest.py" <<EOF
import os
import time


def pytest_sessionstart(session):
    while os.path.exists("$T/hold"):
        time.sleep(0.1)
    time.sleep(3)
EOF
commit "$T/py"
PYBASE=$(git -C "$T/py" rev-parse HEAD)
# a project whose suite takes ten minutes
mkdir -p "$T/slow/pkg" "$T/slow/tests"
printf 'def add(a,b):\n  return a+b\n' >"$T/slow/pkg/calc.py"
: >"$T/slow/pkg/__init__.py"
printf 'from pkg.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n' >"$T/slow/tests/test_calc.py"
printf 'import time\n\n\ndef pytest_sessionstart(session):\n    time.sleep(600)\n' >"$T/slow/conftest.py"
commit "$T/slow"
SLOWBASE=$(git -C "$T/slow" rev-parse HEAD)
# a project whose tests cannot be collected
mkdir -p "$T/broken/pkg" "$T/broken/tests"
printf 'def add(a,b):\n  return a+b\n' >"$T/broken/pkg/calc.py"
: >"$T/broken/pkg/__init__.py"
printf 'import no_such_module_here\n' >"$T/broken/tests/conftest.py"
printf 'def test_add():\n    assert 1 + 2 == 3\n' >"$T/broken/tests/test_calc.py"
commit "$T/broken"
BROKENBASE=$(git -C "$T/broken" rev-parse HEAD)

kz_config <<EOF
broker:
  request_ttl: 2s
supervisor:
  stop_timeout: 5s
database:
  flush_interval: 50ms
agents:
  - name: code-refactorer
    interval: 0
  - name: test-runner
    interval: 0
  - name: code-reviewer
    interval: 0
  - name: pattern-learner
    interval: 0
targets:
  - name: py
    path: $T/py
    languages: [python]
    test: [/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 5m
  - name: slow
    path: $T/slow
    languages: [python]
    test: [/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 20m
  - name: broken
    path: $T/broken
    languages: [python]
    test: [/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 5m
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
    risk: 0.1
policy:
  require_approval: 0.8
  max_concurrent: 3
  allowed_paths: ["textkit/*", "pkg/*"]
  validators: [validate.tests, validate.review]
  exec_timeout: 5m
  validate_timeout: 10m
  retries: 0
EOF
kz_at_exit kz_kill_leftovers
kz_db_start
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"
for a in code-refactorer test-runner code-reviewer pattern-learner; do
    kz_wait_for 60 kz_status "any(x['name'] == '$a' and x.get('state') == 'idle' for x in b['agents'])" ||
        fail "$a is not up: $(kz_status 'b["agents"]')"
done
RUNNER=$(ls "$STATE"/logs/test-runner*.log | head -1)

plan() { # ID TARGET FILE BASE
    printf '{"plan_id":"%s","fixer":"black","files":["%s"],"findings":[],"impact":1,"effort":0.5,"risk":0.1,"rationale":"test","scan_id":"SCAN-%s","base_commit":"%s","tool":"black","rules":["would-reformat"],"language":"python"}' \
        "$1" "$3" "$2" "$4"
}
status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
status_is() { [[ $(status_of "$1") == "$2" ]]; }

# --- 1. the reviewer rejects while the ten-minute suite runs
suite_running() { pgrep -f -- "$STATE/test-runner/slow/junit" >/dev/null; }
# (black reformats conftest.py, which policy.allowed_paths does not allow)
printf 'import time\ndef pytest_sessionstart(session):\n    time.sleep(600)\n' >"$T/slow/conftest.py"
git -C "$T/slow" -c user.name=t -c user.email=t@t commit -qam "black would reformat it"
SLOWBASE=$(git -C "$T/slow" rev-parse HEAD)
"$K" publish plan.ready "$(plan S1 slow conftest.py "$SLOWBASE")" --target slow >/dev/null ||
    fail "publish S1"
kz_wait_for 120 status_is S1 rejected || fail "S1: $(status_of S1), want rejected"
reason=$(kz_psql "SELECT body->>'reason' FROM events WHERE type = 'plan.rejected' AND body->>'plan_id' = 'S1'")
[[ $reason == *"code-reviewer: 'conftest.py' is outside policy.allowed_paths"* ]] ||
    fail "S1 was rejected for '$reason'"
grep -q "running the tests of 'slow'" "$RUNNER" || fail "the suite never ran: $(tail -20 "$RUNNER")"
kz_wait_log orch "plan S1: cancelling validate.tests" || fail "the router did not cancel validate.tests"
kz_wait_for 60 grep -q "request to 'validate.tests' cancelled by its client: plan S1 was rejected" "$RUNNER" ||
    fail "the test-runner did not hear the cancel: $(tail -20 "$RUNNER")"
kz_wait_for 60 grep -q "stopped the tests of 'slow'" "$RUNNER" ||
    fail "the test-runner did not stop the suite: $(tail -20 "$RUNNER")"
kz_wait_for 60 eval '! suite_running' || fail "the suite's processes are left: $(pgrep -af -- "$STATE/test-runner/slow")"
[[ -e $STATE/test-runner/slow/$SLOWBASE.json ]] && fail "the interrupted base run was cached"
kz_wait_for 30 kz_branch_gone "$T/slow" kaizen/plan-S1 || fail "S1's branch is left"

# --- 2. three plans at once behind one test-runner, each suite run (3 s)
#     slower than request_ttl (2 s), watched by run-once
kz_start monitor "$K" monitor --topic agent.run --path event --json
probed() { "$K" publish agent.run '{"agent":"nobody"}' >/dev/null; grep -q '"agent":"nobody"' "$T/monitor.log"; }
kz_wait_for 60 probed || fail "the monitor sees nothing"
"$K" run-once --target py --timeout 10m --progress 2s >"$T/ro.out" 2>"$T/ro.err" &
ro=$!
kz_wait_for 60 grep -q '"agent":"code-health"' "$T/monitor.log" || fail "run-once did not ask for a scan"
pub() { "$K" publish "$1" "$2" --target py ${3:+--corr "$3"} >/dev/null || fail "publish $1"; }
pub scan.started "{\"scan_id\":\"SCAN-py\",\"commit\":\"$PYBASE\"}" SCAN-py
pub scan.completed "{\"scan_id\":\"SCAN-py\",\"status\":\"ok\",\"findings\":3,\"files\":8,\"duration_ms\":100,\"commit\":\"$PYBASE\",\"tools\":[{\"name\":\"black\",\"status\":\"ok\",\"findings\":3,\"duration_ms\":90}]}" SCAN-py
pub analysis.result '{"scan_id":"SCAN-py","kind":"quality","summary":{"rating":"B","overall_score":80}}' SCAN-py
pub plan.batch '{"scan_id":"SCAN-py","plans":[]}' SCAN-py
pub plan.ranked '{"scan_id":"SCAN-py","ready":["W1","W2","W3"],"dropped":[]}' SCAN-py
for f in "W1 textkit/fmt_a.py" "W2 textkit/fmt_b.py" "W3 textkit/fmt_c.py"; do
    read -r id file <<<"$f"
    pub plan.ready "$(plan "$id" py "$file" "$PYBASE")" "$id"
done
# while they run, kaizen status names the calls that wait in the broker's queue
queued_seen() { kz_status 'any(c["state"] == "queued" for p in b["router"]["plans"] for c in p["calls"])'; }
kz_wait_for 120 queued_seen || fail "kaizen status never showed a queued call: $(kz_status 'b["router"]')"
status_text() { "$K" status >"$T/status.txt" 2>&1; grep -q "^  W[123]  py  .*waiting in the broker's queue for" "$T/status.txt"; }
kz_wait_for 120 status_text || fail "kaizen status (text) never showed a queued call: $(cat "$T/status.txt")"
# the calls have been seen waiting: let the suites run
rm -f "$T/hold"
rc=0
wait $ro || rc=$?
((rc == 0)) || fail "run-once exited $rc: $(cat "$T/ro.out" "$T/ro.err")"
grep -q "^plans accepted (3):" "$T/ro.out" || fail "not all three accepted: $(cat "$T/ro.out" "$T/ro.err")"
grep -q "waiting   for plan W[123] of target py (validating for .*validate.tests waiting in the broker's queue for" "$T/ro.err" ||
    fail "run-once never said a validation waits in the queue: $(cat "$T/ro.err")"
grep -q "validate.tests running for .* on test-runner@" "$T/ro.err" ||
    fail "run-once never said where a validation runs: $(cat "$T/ro.err")"
# no gap longer than --progress (2 s) between two lines, with slack for a
# loaded machine: the lines' own clock, at most 10 s apart
"$PY" - "$T/ro.err" <<'PY' || fail "run-once was silent too long: $(cat "$T/ro.err")"
import re, sys
def secs(t):  # kz_cli_human_ms: 812ms, 12.3s, 4m05s
    m = re.fullmatch(r"(\d+)ms|(\d+(?:\.\d+)?)s|(\d+)m(\d+)s", t)
    assert m, t
    if m.group(1):
        return int(m.group(1)) / 1000
    if m.group(2):
        return float(m.group(2))
    return 60 * int(m.group(3)) + int(m.group(4))
times = [secs(m.group(1).strip()) for m in (re.match(r"\[\s*([^\]]+)\]", l) for l in open(sys.argv[1])) if m]
gaps = [b - a for a, b in zip(times, times[1:])]
assert times and max(gaps) <= 10, (max(gaps), times)
PY
kz_stats "'request expired' not in d['drops'] and 'no worker' not in d['drops']" ||
    fail "the broker dropped requests: $(kz_stats 'd["drops"]')"
for id in W1 W2 W3; do status_is "$id" accepted || fail "$id: $(status_of "$id")"; done

# --- 3. a suite that cannot be collected
"$K" publish scan.completed "{\"scan_id\":\"SCAN-broken\",\"status\":\"ok\",\"findings\":1,\"files\":3,\"duration_ms\":10,\"commit\":\"$BROKENBASE\"}" --target broken >/dev/null ||
    fail "publish the broken target's scan.completed"
base_said() { [[ $(kz_psql "SELECT body->>'usable' || ' ' || (body->>'reason' LIKE '0 tests ran (exit 4)%no_such_module_here%') FROM events WHERE type = 'tests.base' AND target = 'broken'") == "false true" ]]; }
kz_wait_for 120 base_said ||
    fail "tests.base of the broken target: $(kz_psql "SELECT body FROM events WHERE type = 'tests.base' AND target = 'broken'")"
rate() { kz_psql "SELECT count(*) FROM learned_patterns WHERE pattern LIKE 'black|%|broken'"; }
"$K" publish plan.ready "$(plan B1 broken pkg/calc.py "$BROKENBASE")" --target broken >/dev/null || fail "publish B1"
kz_wait_for 120 status_is B1 failed || fail "B1: $(status_of B1), want failed"
expect_b1=$(kz_psql "SELECT body->>'state' || ' ' || (body->>'cause') || ' ' || (body->>'reason' LIKE 'tests cannot run at base: 0 tests ran (exit 4)%No module named%no_such_module_here%') FROM events WHERE type = 'plan.failed' AND body->>'plan_id' = 'B1'")
[[ $expect_b1 == "validating suite true" ]] ||
    fail "B1 failed as '$expect_b1': $(kz_psql "SELECT body FROM events WHERE type = 'plan.failed' AND body->>'plan_id' = 'B1'")"
[[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'plan.accepted' AND body->>'plan_id' = 'B1'") == 0 ]] ||
    fail "B1 was accepted"
ignored() { [[ $(kz_psql "SELECT body->>'outcome' || ' ' || (body->>'cause') FROM events WHERE type = 'learn.update' AND body->>'plan_id' = 'B1'") == "ignored suite" ]]; }
kz_wait_for 60 ignored || fail "the learner did not record B1 as not counted: $(kz_psql "SELECT body FROM events WHERE type = 'learn.update' AND body->>'plan_id' = 'B1'")"
[[ $(rate) == 0 ]] || fail "a learned pattern of the broken target moved: $(kz_psql "SELECT * FROM learned_patterns WHERE pattern LIKE '%|broken'")"
kz_wait_for 30 kz_branch_gone "$T/broken" 'kaizen/*' || fail "B1 left a branch"
echo ok
