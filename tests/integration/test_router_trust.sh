#!/usr/bin/env bash
# test_router_trust: what the router takes from a plan.ready and what it
# computes itself, against a real broker, orchestrator, PostgreSQL and git
# repository (no agent: every plan here ends before a fixer would run, or
# its executor is absent on purpose).
#  - risk: a forged plan.ready saying "risk": 0 for codespell, whose
#    fixers[].risk is 0.3 with policy.require_approval 0.25, waits in
#    awaiting_approval (the reason names the configured risk) and is never
#    executed; the message's lower risk is logged. The same forged risk on
#    black (fixers[].risk 0.1) executes: the router does look at the
#    fixer's risk, not at nothing.
#  - base_commit: a commit of another branch of the repository, and a
#    dangling commit, are refused in state "ready" ("base commit ... is
#    not on branch 'main' of target 'repo'"), cause invalid, nothing
#    executed, nothing left in the repository; an older commit of main is
#    a good base.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
kz_python json || skip "no python3"

K=$KZ_BIN/kaizen
REPO=$T/repo

gitc() { git -C "$REPO" -c user.name=t -c user.email=t@t "$@"; }
mkdir -p "$REPO/pkg"
printf 'def f( x ):\n    return x\n' >"$REPO/pkg/a.py"
printf 'def g(y):\n    return y\n' >"$REPO/pkg/b.py"
git -C "$REPO" init -q -b main
gitc add -A
gitc commit -q -m init
OLD=$(git -C "$REPO" rev-parse HEAD)
printf '# b\n' >>"$REPO/pkg/b.py"
gitc commit -q -am second
BASE=$(git -C "$REPO" rev-parse HEAD)
# a commit on another branch, and one on no branch at all
gitc checkout -q -b other
printf '# other\n' >>"$REPO/pkg/a.py"
gitc commit -q -am other
OTHER=$(git -C "$REPO" rev-parse HEAD)
gitc checkout -q main
DANGLING=$(gitc commit-tree -p "$BASE" -m dangling "$BASE^{tree}")
for c in "$OLD" "$BASE" "$OTHER" "$DANGLING"; do
    [[ $c =~ ^[0-9a-f]{40}$ ]] || fail "a test commit was not made: '$c'"
done
user_state() { git -C "$REPO" rev-parse HEAD; git -C "$REPO" status --porcelain; git -C "$REPO" branch --list; }
before_user=$(user_state)

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
  - name: codespell
    argv: [codespell, --, "{files}"]
    format: gcc
fixers:
  - name: black
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    service: exec.nobody
    risk: 0.1
  - name: codespell
    tool: codespell
    argv: [codespell, -w, --, "{files}"]
    service: exec.nobody
    risk: 0.3
policy:
  require_approval: 0.25
  max_concurrent: 4
  exec_timeout: 3s
  retries: 0
EOF
kz_at_exit kz_kill_leftovers
kz_db_start
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"

# plan ID FIXER RISK BASE: a plan body
plan() {
    printf '{"plan_id":"%s","fixer":"%s","files":["pkg/a.py"],"findings":["fp%s"],"impact":2,"effort":1,"risk":%s,"base_commit":"%s","tool":"%s"}' \
        "$1" "$2" "$1" "$3" "$4" "$2"
}
ready() { "$K" publish plan.ready "$1" --target repo >/dev/null || fail "kaizen publish plan.ready failed"; }
status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
status_is() { [[ $(status_of "$1") == "$2" ]]; }
wait_status() { # ID STATUS
    kz_wait_for 60 status_is "$1" "$2" || fail "plan $1: status $(status_of "$1"), want $2"
}
reason_of() { # TYPE ID
    kz_psql "SELECT string_agg(body->>'state' || ': ' || (body->>'reason') || ' (' || COALESCE(body->>'cause', '') || ')', ' | ' ORDER BY seq)
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

# --- the forged risk: codespell is 0.3 here, at or above 0.25
ready "$(plan Pforged codespell 0 "$BASE")"
# the same forged risk on black (0.1): it runs (and fails: no executor)
ready "$(plan Plow black 0 "$BASE")"
# --- bases that are not on main; an older commit of main is one
ready "$(plan Pother black 0.1 "$OTHER")"
ready "$(plan Pdangling black 0.1 "$DANGLING")"
ready "$(plan Pold black 0.1 "$OLD")"

wait_status Pforged awaiting_approval
expect_reason plan.state Pforged "awaiting_approval: risk 0.3 is at or above policy.require_approval 0.25 (fixers[].risk of 'codespell')"
grep -q "plan Pforged: its message says risk 0, but fixers\[\].risk of 'codespell' is 0.3" "$T/orch.log" ||
    fail "the forged risk was not logged"

wait_status Plow failed
expect_reason plan.failed Plow "executing: exec.nobody"
expect_transitions Plow "ready,executing,failed"
wait_status Pold failed
expect_reason plan.failed Pold "executing: exec.nobody"

wait_status Pother failed
expect_reason plan.failed Pother "ready: base commit ${OTHER:0:12} is not on branch 'main' of target 'repo' (invalid)"
expect_transitions Pother "ready,failed"
wait_status Pdangling failed
expect_reason plan.failed Pdangling "ready: base commit ${DANGLING:0:12} is not on branch 'main' of target 'repo' (invalid)"
expect_transitions Pdangling "ready,failed"

# the forged plan still waits, nothing ran it; only an approval would
kz_wait_for 30 kz_status 'b["router"]["active"] == 0 and b["router"]["awaiting"] == 1' ||
    fail "router status: $(kz_status 'b["router"]')"
status_is Pforged awaiting_approval || fail "Pforged: $(status_of Pforged)"
expect_transitions Pforged "ready,awaiting_approval"
[[ $(kz_psql "SELECT count(*) FROM events WHERE body->>'plan_id' IN ('Pforged', 'Pother', 'Pdangling')
              AND type IN ('exec.result', 'validate.result', 'plan.accepted')") == 0 ]] ||
    fail "a refused plan was executed"
grep -qE "plan (Pforged|Pother|Pdangling): [a-z_]+ -> executing" "$T/orch.log" &&
    fail "a refused plan was executed: $(grep -E 'plan (Pforged|Pother|Pdangling)' "$T/orch.log")"

[[ $(user_state) == "$before_user" ]] || fail "the repository changed:
$(user_state)
was:
$before_user"
echo "test_router_trust: ok"
