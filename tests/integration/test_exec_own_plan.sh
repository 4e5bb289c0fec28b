#!/usr/bin/env bash
# test_exec_own_plan.sh - an executor acts only on the plan the router is
# executing (issue #12), against a real broker, orchestrator (router and
# recorder), PostgreSQL, kaizen-code-refactorer and -reviewer and a git
# repository, with requests sent by `kaizen call exec.refactor` as the
# issue found them
# (no CURVE here: the bus rules are test_bus_rules.sh's; this is the
# executor's own check, the only one on a single-user ipc bus).
#  - a plan runs through the router to accepted: the refactorer's check
#    of the router's record lets the router's own request through;
#  - a call naming that accepted plan's branch for another plan id
#    (the fixer changes nothing: today "nothing to do" deleted the
#    branch) is refused, and the branch keeps its commit;
#  - a call for the accepted plan itself, with a file the fixer would
#    change (today: the branch reset to a new commit), is refused;
#  - a call for a plan that waits for approval (not executing) is
#    refused, and one naming a branch other than the plan's too: no
#    branch is made;
#  - the refactorer never ran its fixer for a refused request.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
command -v jq >/dev/null || skip "no jq"
/usr/bin/python3 -m black --version >/dev/null 2>&1 || skip "black is not installed"
kz_python json || skip "no python3"
K=$KZ_BIN/kaizen

REPO=$T/repo
mkdir -p "$REPO/pkg"
printf 'def f( x ):\n    return x\n' >"$REPO/pkg/a.py"
printf 'def g( y ):\n    return y\n' >"$REPO/pkg/b.py"
printf 'def h(z):\n    return z\n' >"$REPO/pkg/clean.py"
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m init
BASE=$(git -C "$REPO" rev-parse HEAD)

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
    risk: 0.1
  - name: black-ask
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    risk: 0.9
policy:
  require_approval: 0.5
  validators: [validate.review]
  exec_timeout: 60s
  retries: 0
EOF
kz_at_exit kz_kill_leftovers
kz_db_start
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"
kz_start refactorer "$KZ_BIN/kaizen-code-refactorer" --log-level debug
kz_wait_log refactorer "started" || fail "the refactorer did not start"
kz_start reviewer "$KZ_BIN/kaizen-code-reviewer"
kz_wait_log reviewer "started" || fail "the reviewer did not start"

status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
status_is() { [[ $(status_of "$1") == "$2" ]]; }
ready() { # ID FIXER FILE
    "$K" publish plan.ready "{\"plan_id\":\"$1\",\"fixer\":\"$2\",\"files\":[\"$3\"],\"findings\":[\"fp$1\"],\"impact\":2,\"effort\":1,\"risk\":0.1,\"base_commit\":\"$BASE\",\"tool\":\"black\"}" \
        --target repo >/dev/null || fail "kaizen publish plan.ready $1 failed"
}
# call ID FIXER FILE [BRANCH]: kaizen call exec.refactor, the reply in $T/ID.json
call() {
    local body="{\"plan_id\":\"$1\",\"fixer\":\"$2\",\"files\":[\"$3\"],\"base_commit\":\"$BASE\"${4:+,\"branch\":\"$4\"}}"
    "$K" call exec.refactor "$body" --target repo --retries 0 --timeout 60s --json >"$T/$1.json" 2>"$T/$1.err" ||
        fail "kaizen call exec.refactor for $1 got no reply: $(cat "$T/$1.err")"
}
refused() { # ID ERROR-SUBSTRING
    [[ $(jq -r .body.status "$T/$1.json") == failed ]] || fail "call $1 was not refused: $(cat "$T/$1.json")"
    jq -r .body.error "$T/$1.json" | grep -qF -- "$2" || fail "call $1: the error does not say '$2': $(cat "$T/$1.json")"
    [[ $(jq -r .body.cause "$T/$1.json") == refused ]] || fail "call $1: cause is not refused: $(cat "$T/$1.json")"
}
head_of() { git -C "$REPO" rev-parse --verify --quiet "refs/heads/$1"; }

# --- a plan the router runs: the refactorer's check lets it through
ready P1 black pkg/a.py
kz_wait_for 90 status_is P1 accepted || fail "P1: status $(status_of P1), want accepted"
H1=$(head_of kaizen/plan-P1) || fail "the accepted plan P1 has no branch"
[[ $(git -C "$REPO" rev-parse "$H1^") == "$BASE" ]] || fail "P1's commit is not on the base"
grep -q "plan P1: black committed" "$T/refactorer.log" || fail "the refactorer did not commit P1"
fixers_before=$(grep -c "running fixer" "$T/refactorer.log")

# --- another plan id naming P1's branch, a file black leaves alone
call X1 black pkg/clean.py kaizen/plan-P1
[[ $(head_of kaizen/plan-P1) == "$H1" ]] || fail "X1 changed or deleted the accepted plan's branch: $(cat "$T/X1.json")"
refused X1 "branch 'kaizen/plan-P1' is refused: plan X1 works on its own branch 'kaizen/plan-X1' only"

# --- the accepted plan itself, a file black would change
call P1 black pkg/b.py
[[ $(head_of kaizen/plan-P1) == "$H1" ]] || fail "a call for P1 reset its branch: $(cat "$T/P1.json")"
refused P1 "refused: plan P1 is not being executed by the router (its state there is 'final')"

# --- a plan waiting for approval is not executing
ready P2 black-ask pkg/b.py
kz_wait_for 60 status_is P2 awaiting_approval || fail "P2: status $(status_of P2), want awaiting_approval"
call P2 black-ask pkg/b.py
head_of kaizen/plan-P2 >/dev/null && fail "a call for P2 made its branch: $(cat "$T/P2.json")"
refused P2 "refused: plan P2 is not being executed by the router (its state there is 'awaiting_approval')"
# --- and one naming a branch other than its own
call P2b black-ask pkg/b.py kaizen/plan-P2
head_of kaizen/plan-P2 >/dev/null && fail "a call for P2b made P2's branch: $(cat "$T/P2b.json")"
head_of kaizen/plan-P2b >/dev/null && fail "a refused call made P2b's branch"
refused P2b "branch 'kaizen/plan-P2' is refused: plan P2b works on its own branch 'kaizen/plan-P2b' only"

# --- nothing ran for the refusals; the repository holds what the router made
[[ $(grep -c "running fixer" "$T/refactorer.log") == "$fixers_before" ]] || fail "a fixer ran for a refused request"
[[ "$(git -C "$REPO" for-each-ref --format='%(refname:short)' refs/heads/ | sort | tr '\n' ' ')" == \
    "kaizen/improvements kaizen/plan-P1 main " ]] ||
    fail "branches: $(git -C "$REPO" for-each-ref --format='%(refname:short)' refs/heads/)"
[[ $(git -C "$REPO" rev-parse main) == "$BASE" ]] || fail "main moved"
kill -0 "$PID_orch" || fail "the orchestrator died"
echo ok
