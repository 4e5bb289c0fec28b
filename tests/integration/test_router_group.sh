#!/usr/bin/env bash
# test_router_group: policy.group end to end with the real agents and
# tools on a copy of examples/python-sample: code-health scans, the
# planner groups the codespell findings of textkit/normalize.py (harmless
# misspellings) and textkit/receipt.py (the planted breaking fix: the
# golden test asserts the misspelled status) into one plan, the router
# runs it and the test runner rejects it; the planner splits it into one
# plan per file at the same base, the router runs both: normalize.py's
# fix is accepted and integrated, receipt.py's rejected. Every commit's
# diff stays viewable (refs/kaizen/plans/<id>).
# kz-plain-only: the whole loop with every agent and real tools; the agents' code runs under the sanitizers in their own tests
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
command -v codespell >/dev/null || skip "no codespell"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "no python3 -m pytest"
for a in code-health improvement-planner feature-prioritizer code-refactorer test-runner code-reviewer; do
    [[ -x $KZ_BIN/kaizen-$a ]] || skip "kaizen-$a is not built"
done
kz_python json || skip "no python3"
SAMPLE=$KZ_ROOT/examples/python-sample
[[ -d $SAMPLE ]] || skip "no examples/python-sample"

K=$KZ_BIN/kaizen
REPO=$T/repo
mkdir -p "$REPO"
cp -R "$SAMPLE/." "$REPO/"
find "$REPO" \( -name __pycache__ -o -name .mypy_cache -o -name .pytest_cache \) -prune \
    -exec rm -rf {} +
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m "the sample"
BASE=$(git -C "$REPO" rev-parse HEAD)

kz_config <<EOF
supervisor:
  stop_timeout: 5s
database:
  flush_interval: 50ms
agents:
  - name: code-health
    interval: 0
  - name: improvement-planner
    interval: 0
  - name: feature-prioritizer
    interval: 0
  - name: code-refactorer
    interval: 0
  - name: test-runner
    interval: 0
  - name: code-reviewer
    interval: 0
targets:
  - name: py
    path: $REPO
    languages: [python]
    test: [/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 3m
    branch: main
tools:
  - name: codespell
    files: ["*.py"]
    argv: [codespell, --, "{files}"]
    format: gcc
    category: docs
    exit_ok: ["0", "65"]
fixers:
  - name: codespell
    tool: codespell
    rules: [misspelling]
    argv: [codespell, -w, --, "{files}"]
    risk: 0.3
    subject: "Fix {n} spelling mistake{s} in {file}"
policy:
  require_approval: 0.8
  integration_branch: kaizen/improvements
  max_concurrent: 2
  validators: [validate.tests, validate.review]
  exec_timeout: 2m
  validate_timeout: 4m
  retries: 0
  group: true
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"
for a in code-health improvement-planner feature-prioritizer code-refactorer test-runner code-reviewer; do
    kz_wait_for 60 kz_status "any(x['name'] == '$a' and x.get('state') == 'idle' for x in b['agents'])" ||
        fail "$a is not up: $(kz_status 'b["agents"]')"
done

"$K" publish agent.run '{"agent":"code-health"}' --target py >/dev/null || fail "agent.run failed"

files_of() { kz_psql "SELECT plan_id || ' ' || status FROM improvement_suggestions WHERE
    (SELECT string_agg(f, '+') FROM jsonb_array_elements_text(implementation_plan->'files') f) = '$1'"; }
final() { # FILES STATUS: the plan of FILES ended in STATUS
    [[ $(files_of "$1") == *" $2" ]]
}
N=textkit/normalize.py R=textkit/receipt.py
kz_wait_for 300 final "$N+$R" rejected || fail "the grouped plan was not rejected: $(files_of "$N+$R")
$(kz_psql "SELECT plan_id, status, implementation_plan->'files' FROM improvement_suggestions")"
G=$(files_of "$N+$R" | cut -d' ' -f1)
kz_wait_for 300 final "$N" accepted || fail "the normalize.py plan was not accepted: $(files_of "$N")"
kz_wait_for 300 final "$R" rejected || fail "the receipt.py plan was not rejected: $(files_of "$R")"
PN=$(files_of "$N" | cut -d' ' -f1) PR=$(files_of "$R" | cut -d' ' -f1)
expect_sql() {
    local got
    got=$(kz_psql "$1")
    [[ $got == "$2" ]] || fail "$1
  got:  $got
  want: $2"
}
expect_sql "SELECT string_agg(implementation_plan->>'split_from' || ' ' || (implementation_plan->>'base_commit'), ',')
    FROM improvement_suggestions WHERE plan_id IN ('$PN', '$PR')" "$G $BASE,$G $BASE"
expect_sql "SELECT count(*) FROM improvement_suggestions" 3
grep -q "plan $G of 2 files ended without its fix: proposed again as 2 plans, one per file" \
    "$T/state/logs/improvement-planner.0.log" || fail "the split was not logged"

# the grouped plan's commit: both files, both findings listed, kept
GC=$(git -C "$REPO" rev-parse -q --verify "refs/kaizen/plans/$G") || fail "the grouped plan's commit is not kept"
[[ $(git -C "$REPO" log -1 --format=%s "$GC") == "Fix 3 spelling mistakes in 2 files" ]] ||
    fail "the grouped subject: $(git -C "$REPO" log -1 --format=%B "$GC")"
[[ $(git -C "$REPO" diff --name-only "$BASE" "$GC" | tr '\n' ' ') == "$N $R " ]] || fail "the grouped commit's files"
# the accepted split plan: its fix on the integration branch, nothing of receipt.py
IMP=$(git -C "$REPO" rev-parse kaizen/improvements) || fail "no kaizen/improvements"
[[ $(git -C "$REPO" diff --name-only "$BASE" "$IMP") == "$N" ]] ||
    fail "kaizen/improvements changes: $(git -C "$REPO" diff --name-only "$BASE" "$IMP")"
[[ $(git -C "$REPO" log -1 --format=%s "$IMP") == "Fix 2 spelling mistakes in $N" ]] ||
    fail "the integrated subject: $(git -C "$REPO" log -1 --format=%s "$IMP")"
[[ $(git -C "$REPO" diff --name-only "$BASE" "refs/kaizen/plans/$PR") == "$R" ]] ||
    fail "the rejected receipt.py plan's commit is not kept"
kz_wait_for 30 kz_branch_gone "$REPO" "kaizen/plan-$G" "kaizen/plan-$PR" || fail "a rejected plan's branch is left"
echo "ok"
