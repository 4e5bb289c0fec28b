#!/usr/bin/env bash
# test_router: the plan lifecycle end to end on a real repository, with a
# real broker, orchestrator, PostgreSQL and the real agents: the
# orchestrator supervises kaizen-code-health (whose scan gives the
# findings' fingerprints), kaizen-code-refactorer (exec.refactor),
# kaizen-test-runner (validate.tests) and kaizen-code-reviewer
# (validate.review), running the real black, isort, codespell and pytest
# on a copy of examples/python-sample. The plans are published by hand
# (the router's input is plan.ready; the planner is not under test):
#  - a safe plan (black on textkit/counter.py): accepted; its branch
#    kaizen/plan-<id> and kaizen/improvements hold exactly black's change,
#    and the tests pass on kaizen/improvements;
#  - the planted breaking fix (codespell on textkit/receipt.py, whose
#    misspelled status the golden test asserts): rejected with the
#    failing test named, its branch and worktree gone, its commit kept
#    under refs/kaizen/plans/<id>;
#  - a plan the fixer changes nothing for (black on textkit/stats.py):
#    rejected "nothing to do", no branch left;
#  - a plan whose risk (its fixer's fixers[].risk) is at or above
#    policy.require_approval (isort on textkit/wrap.py): awaiting_approval, then `kaizen publish
#    plan.approved` -> accepted and integrated after the first;
#  - the commits: a message listing the plan's finding_details, author
#    and committer policy.commit_author, on the plan branch and on
#    kaizen/improvements (the router's cherry-pick);
#  - the user's checkout (HEAD, index, working tree, branch) unchanged;
#  - plan_transitions, executions and validations rows in order;
#  - policy.apply merge (orchestrator restarted): with the user's
#    untracked file main is not fast-forwarded and the commit goes to
#    kaizen/improvements (the reason logged); once the tree is clean, main
#    is fast-forwarded to the plan's commit.
# kz-plain-only: the plan lifecycle end to end with the real agents and tools (50 s plain); test_router_faults covers the router under the sanitizers
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
command -v codespell >/dev/null || skip "no codespell"
for m in black isort pytest; do
    /usr/bin/python3 -m "$m" --version >/dev/null 2>&1 || skip "no python3 -m $m"
done
for a in code-health code-refactorer test-runner code-reviewer; do
    [[ -x $KZ_BIN/kaizen-$a ]] || skip "kaizen-$a is not built"
done
kz_python json || skip "no python3"
SAMPLE=$KZ_ROOT/examples/python-sample
[[ -d $SAMPLE ]] || skip "no examples/python-sample"

K=$KZ_BIN/kaizen
REPO=$T/repo
STATE=$T/state

# --- the user's repository: the sample, committed on main
mkdir -p "$REPO"
cp -R "$SAMPLE/." "$REPO/"
find "$REPO" \( -name __pycache__ -o -name .mypy_cache -o -name .pytest_cache \) -prune \
    -exec rm -rf {} +
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m "the sample"
BASE=$(git -C "$REPO" rev-parse HEAD)
printf 'work in progress\n' >"$REPO/NOTES.txt" # the user's own untracked file
user_state() {
    git -C "$REPO" rev-parse HEAD
    git -C "$REPO" symbolic-ref HEAD
    git -C "$REPO" status --porcelain
    git -C "$REPO" ls-files -s | md5sum
    find "$REPO" -path "$REPO/.git" -prune -o -type f -print0 | sort -z | xargs -0 md5sum
}
before_user=$(user_state)

config() { # APPLY
    kz_config <<EOF
supervisor:
  stop_timeout: 5s
database:
  flush_interval: 50ms
agents:
  - name: code-health
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
  - name: black
    languages: [python]
    files: ["*.py", "*.pyi"]
    argv: [/usr/bin/python3, -m, black, --check, --, "{files}"]
    format: files
    requires: ["pyproject.toml:[tool.black]"]
  - name: isort
    languages: [python]
    files: ["*.py", "*.pyi"]
    argv: [/usr/bin/python3, -m, isort, --check-only, --, "{files}"]
    format: files
    requires: ["pyproject.toml:[tool.isort]"]
  - name: codespell
    files: ["*.py"]
    argv: [codespell, --, "{files}"]
    format: gcc
    category: docs
    exit_ok: ["0", "65"]
fixers:
  - name: black
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    risk: 0.1
  - name: isort
    tool: isort
    argv: [/usr/bin/python3, -m, isort, --quiet, --, "{files}"]
    risk: 0.9
  - name: codespell
    tool: codespell
    rules: [misspelling]
    argv: [codespell, -w, --, "{files}"]
    risk: 0.3
policy:
  require_approval: 0.8
  apply: $1
  integration_branch: kaizen/improvements
  commit_author: "Kai Zen <kz@example.org>"
  max_concurrent: 2
  validators: [validate.tests, validate.review]
  exec_timeout: 2m
  validate_timeout: 4m
  retries: 0
EOF
}
config branch
kz_at_exit kz_kill_leftovers
kz_db_start

kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"
for a in code-refactorer test-runner code-reviewer code-health; do
    kz_wait_for 60 kz_status "any(x['name'] == '$a' and x.get('state') == 'idle' for x in b['agents'])" ||
        fail "$a is not up: $(kz_status 'b["agents"]')"
done

# --- a real scan, for the findings' fingerprints (asked once: code-health
# is idle, so its agent.run subscription is delivered)
"$K" publish agent.run '{"agent":"code-health"}' --target py >/dev/null || fail "agent.run failed"
scanned() { [[ $(kz_psql "SELECT count(*) FROM scans WHERE target = 'py' AND completed_at IS NOT NULL") -ge 1 ]]; }
kz_wait_for 120 scanned || fail "no scan completed"
SCAN=$(kz_psql "SELECT scan_id FROM scans WHERE target = 'py' ORDER BY completed_at DESC LIMIT 1")
kz_wait_for 30 kz_status 'b["held"] == 0' || fail "messages held"
fp() { # TOOL FILE: the fingerprints (JSON array)
    kz_psql "SELECT COALESCE(json_agg(fingerprint ORDER BY line), '[]') FROM findings
             WHERE scan_id = '$SCAN' AND tool = '$1' AND file = '$2'"
}
[[ $(fp black textkit/counter.py) != "[]" ]] || fail "the scan found nothing for black on counter.py"
[[ $(fp codespell textkit/receipt.py) != "[]" ]] || fail "the scan found no misspelling in receipt.py"

details() { # TOOL FILE: the finding_details (JSON array)
    kz_psql "SELECT COALESCE(json_agg(json_build_object('fingerprint', fingerprint, 'file', file,
             'line', line, 'rule', rule, 'message', message) ORDER BY line), '[]') FROM findings
             WHERE scan_id = '$SCAN' AND tool = '$1' AND file = '$2'"
}
# plan ID FIXER TOOL FILE RULE RISK: a plan body as the planner makes it
plan() {
    printf '{"plan_id":"%s","fixer":"%s","files":["%s"],"findings":%s,"finding_details":%s,"impact":1,"effort":0.5,"risk":%s,"rationale":"test","scan_id":"%s","base_commit":"%s","tool":"%s","rules":["%s"],"language":"python"}' \
        "$1" "$2" "$4" "$(fp "$3" "$4")" "$(details "$3" "$4")" "$6" "$SCAN" "$BASE" "$3" "$5"
}
publish_ready() { "$K" publish plan.ready "$1" --target py >/dev/null || fail "kaizen publish plan.ready failed"; }
status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
status_is() { [[ $(status_of "$1") == "$2" ]]; }
wait_status() { # ID STATUS [SECONDS]
    kz_wait_for "${3:-240}" status_is "$1" "$2" || fail "plan $1: status $(status_of "$1"), want $2"
}
transitions() { kz_psql "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = '$1'"; }
expect() { # SQL WANT
    local got
    got=$(kz_psql "$1")
    [[ $got == "$2" ]] || fail "$1
  got:  $got
  want: $2"
}

publish_ready "$(plan Psafe black black textkit/counter.py would-reformat 0.1)"
publish_ready "$(plan Pbreak codespell codespell textkit/receipt.py misspelling 0.3)"
publish_ready "$(plan Pask isort isort textkit/wrap.py unsorted-imports 0.9)"
publish_ready "$(plan Pnone black black textkit/stats.py would-reformat 0.1)"

# --- approval first: it waits while the others run
wait_status Pask awaiting_approval 60
expect "SELECT body->>'reason' LIKE 'risk 0.9 is at or above policy.require_approval 0.8%'
        FROM events WHERE type = 'plan.state' AND body->>'plan_id' = 'Pask'" "t"

# --- the safe plan
wait_status Psafe accepted
expect "SELECT body->>'branch', body->>'integrated', body->>'commit' = (SELECT commit FROM executions
        WHERE plan_id = 'Psafe') FROM events WHERE type = 'plan.accepted' AND body->>'plan_id' = 'Psafe'" \
    "kaizen/plan-Psafe|kaizen/improvements|t"
SAFE=$(git -C "$REPO" rev-parse kaizen/plan-Psafe) || fail "branch kaizen/plan-Psafe is gone"
[[ $(git -C "$REPO" rev-parse "$SAFE^") == "$BASE" ]] || fail "kaizen/plan-Psafe is not one commit on the base"
[[ $(git -C "$REPO" diff --name-only "$BASE" "$SAFE") == textkit/counter.py ]] ||
    fail "kaizen/plan-Psafe changes: $(git -C "$REPO" diff --name-only "$BASE" "$SAFE")"
# exactly black's change: black run on the original file by hand gives the same text
mkdir -p "$T/black"
git -C "$REPO" show "$BASE:textkit/counter.py" >"$T/black/counter.py"
cp "$REPO/pyproject.toml" "$T/black/"
(cd "$T/black" && /usr/bin/python3 -m black -q counter.py) || fail "black by hand failed"
cmp -s "$T/black/counter.py" <(git -C "$REPO" show "$SAFE:textkit/counter.py") ||
    fail "kaizen/plan-Psafe does not hold exactly black's change"
expect "SELECT string_agg(validator || ':' || verdict, ',' ORDER BY validator) FROM validations
        WHERE plan_id = 'Psafe'" "code-reviewer:pass,test-runner:pass"
expect "SELECT status, files::text FROM executions WHERE plan_id = 'Psafe'" \
    'changed|["textkit/counter.py"]'
[[ ! -e $STATE/worktrees/py/plan-Psafe ]] || fail "the worktree of Psafe is still there"
# its message: the subject, the findings (file:line rule: message), the trailer
n=$(kz_psql "SELECT count(*) FROM findings WHERE scan_id = '$SCAN' AND tool = 'black' AND file = 'textkit/counter.py'")
[[ $(git -C "$REPO" log -1 --format=%s "$SAFE") == "Fix $n black finding$([[ $n == 1 ]] || echo s) in textkit/counter.py" ]] ||
    fail "Psafe's subject: $(git -C "$REPO" log -1 --format=%s "$SAFE")"
[[ $(git -C "$REPO" log -1 --format=%b "$SAFE" | grep -cE '^- textkit/counter.py(:[0-9]+)? would-reformat: ') == "$n" ]] ||
    fail "Psafe's body does not list its $n findings: $(git -C "$REPO" log -1 --format=%b "$SAFE")"
[[ $(git -C "$REPO" log -1 --format='%(trailers:key=Kaizen-Plan,valueonly)' "$SAFE") == Psafe ]] ||
    fail "Psafe's trailer: $(git -C "$REPO" log -1 --format=%B "$SAFE")"
[[ $(git -C "$REPO" log -1 --format='%an <%ae>|%cn <%ce>' "$SAFE") == "Kai Zen <kz@example.org>|Kai Zen <kz@example.org>" ]] ||
    fail "Psafe's author and committer: $(git -C "$REPO" log -1 --format='%an <%ae>|%cn <%ce>' "$SAFE")"

# --- the breaking plan
wait_status Pbreak rejected
reason=$(kz_psql "SELECT body->>'state' || ': ' || (body->>'reason') FROM events
                  WHERE type = 'plan.rejected' AND body->>'plan_id' = 'Pbreak'")
[[ $reason == "validating: test-runner: "*test_receipt* ]] || fail "Pbreak rejected for '$reason'"
expect "SELECT jsonb_array_length(body->'reasons') > 0 FROM events
        WHERE type = 'plan.rejected' AND body->>'plan_id' = 'Pbreak'" "t"
expect "SELECT verdict FROM validations WHERE plan_id = 'Pbreak' AND validator = 'test-runner'" "reject"
kz_wait_for 30 kz_branch_gone "$REPO" kaizen/plan-Pbreak || fail "branch kaizen/plan-Pbreak not deleted"
[[ ! -e $STATE/worktrees/py/plan-Pbreak ]] || fail "the worktree of Pbreak not removed"
git -C "$REPO" worktree list --porcelain | grep -q plan-Pbreak && fail "worktree plan-Pbreak still registered"
# its commit stays reachable, outside the branches
KEPT=$(git -C "$REPO" rev-parse --verify -q refs/kaizen/plans/Pbreak) || fail "refs/kaizen/plans/Pbreak is missing"
expect "SELECT commit FROM executions WHERE plan_id = 'Pbreak'" "$KEPT"
[[ $(git -C "$REPO" diff --name-only "$BASE" "$KEPT") == textkit/receipt.py ]] || fail "refs/kaizen/plans/Pbreak changes more"
[[ $(git -C "$REPO" log -1 --format=%s "$KEPT") == "Fix "*" codespell finding"*" in textkit/receipt.py" ]] ||
    fail "Pbreak's subject: $(git -C "$REPO" log -1 --format=%s "$KEPT")"
git -C "$REPO" branch --list | grep -q Pbreak && fail "Pbreak is listed by git branch"

# --- a plan the fixer has nothing to do for (black leaves stats.py as it is):
#     it failed while executing (nobody rejected anything, no commit was
#     made), cause nothing_to_do
wait_status Pnone failed
expect "SELECT body->>'state' || ': ' || (body->>'reason' LIKE 'nothing to do: %') || ' ' || (body->>'cause') FROM events
        WHERE type = 'plan.failed' AND body->>'plan_id' = 'Pnone'" "executing: true nothing_to_do"
expect "SELECT body->>'cause' FROM events WHERE type = 'plan.rejected' AND body->>'plan_id' = 'Pbreak'" "change"
expect "SELECT status FROM executions WHERE plan_id = 'Pnone'" "nothing"
kz_wait_for 30 kz_branch_gone "$REPO" kaizen/plan-Pnone || fail "branch kaizen/plan-Pnone not deleted"

# --- the approval
status_is Pask awaiting_approval || fail "Pask: $(status_of Pask) before the approval"
"$K" publish plan.approved '{"plan_id":"Pask","by":"tester"}' >/dev/null || fail "kaizen publish plan.approved failed"
wait_status Pask accepted
ASK=$(git -C "$REPO" rev-parse kaizen/plan-Pask) || fail "branch kaizen/plan-Pask is gone"
[[ $(git -C "$REPO" diff --name-only "$BASE" "$ASK") == textkit/wrap.py ]] || fail "kaizen/plan-Pask changes more"

# --- the integration branch: both fixes, nothing else, tests pass
IMP=$(git -C "$REPO" rev-parse kaizen/improvements) || fail "no kaizen/improvements"
expect "SELECT body->>'integrated_commit' FROM events WHERE type = 'plan.accepted'
        AND body->>'plan_id' = 'Pask'" "$IMP"
[[ $(git -C "$REPO" rev-list --count "$BASE..$IMP") == 2 ]] || fail "kaizen/improvements: not 2 commits on the base"
[[ $(git -C "$REPO" diff --name-only "$BASE" "$IMP" | tr '\n' ' ') == "textkit/counter.py textkit/wrap.py " ]] ||
    fail "kaizen/improvements changes: $(git -C "$REPO" diff --name-only "$BASE" "$IMP")"
[[ -z $(git -C "$REPO" diff "$SAFE" "$IMP" -- textkit/counter.py) ]] || fail "counter.py differs from Psafe's"
[[ -z $(git -C "$REPO" diff "$ASK" "$IMP" -- textkit/wrap.py) ]] || fail "wrap.py differs from Pask's"
[[ $(git -C "$REPO" log --format='%an <%ae>|%cn <%ce>' "$BASE..$IMP" | sort -u) == "Kai Zen <kz@example.org>|Kai Zen <kz@example.org>" ]] ||
    fail "kaizen/improvements authors: $(git -C "$REPO" log --format='%an <%ae>|%cn <%ce>' "$BASE..$IMP")"
[[ $(git -C "$REPO" log -1 --format=%B "$IMP") == $(git -C "$REPO" log -1 --format=%B "$ASK") ]] ||
    fail "the integrated commit's message is not the plan's"
git -C "$REPO" worktree add -q --detach "$T/check" "$IMP" || fail "unable to check out kaizen/improvements"
(cd "$T/check" && /usr/bin/python3 -m pytest -q -p no:cacheprovider >"$T/pytest.log" 2>&1) ||
    fail "the tests fail on kaizen/improvements: $(tail -5 "$T/pytest.log")"
git -C "$REPO" worktree remove --force "$T/check"

# --- the records
expect "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = 'Psafe'" \
    "ready,executing,executed,validating,accepted"
expect "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = 'Pbreak'" \
    "ready,executing,executed,validating,rejected"
expect "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = 'Pask'" \
    "ready,awaiting_approval,approved,executing,executed,validating,accepted"
expect "SELECT string_agg(state, ',' ORDER BY id) FROM plan_transitions WHERE plan_id = 'Pnone'" \
    "ready,executing,failed"
expect "SELECT count(*) FROM plan_transitions t JOIN events e ON e.id = t.event_id
        WHERE t.plan_id IN ('Psafe', 'Pbreak', 'Pask', 'Pnone') AND t.state <> 'approved'
        AND t.state <> 'ready' AND e.src NOT LIKE 'orchestrator@%'" "0"
expect "SELECT implemented_at IS NOT NULL FROM improvement_suggestions WHERE plan_id = 'Psafe'" "t"
kz_wait_for 60 kz_status 'b["router"]["accepted"] == 2 and b["router"]["rejected"] == 1 and b["router"]["failed"] == 1 and b["router"]["active"] == 0' ||
    fail "router status: $(kz_status 'b["router"]')"
for p in Psafe Pbreak Pask; do
    grep -q "plan $p: validating -> " "$T/orch.log" || fail "the final transition of $p was not logged"
done
grep -q "plan Pnone: executing -> failed (nothing_to_do): nothing to do: " "$T/orch.log" ||
    fail "Pnone's end was not logged"

# --- the user's checkout is as it was
[[ $(user_state) == "$before_user" ]] || fail "the user's checkout changed"

# --- policy.apply merge: main is fast-forwarded only when its working
#     tree is clean; with the user's untracked file it is not, and the
#     commit goes to kaizen/improvements instead
kill -TERM "$PID_orch"
wait "$PID_orch" 2>/dev/null
config merge
kz_start orch2 "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch2 "recording to the database" 60 || fail "the second orchestrator does not record"
for a in code-refactorer test-runner code-reviewer; do
    kz_wait_for 60 kz_status "any(x['name'] == '$a' and x.get('state') == 'idle' for x in b['agents'])" ||
        fail "$a is not up again"
done
publish_ready "$(plan Pdirty black black textkit/slug.py would-reformat 0.1)"
wait_status Pdirty accepted
expect "SELECT body->>'integrated' FROM events WHERE type = 'plan.accepted' AND body->>'plan_id' = 'Pdirty'" \
    "kaizen/improvements"
grep -q "plan Pdirty: policy.apply merge: cannot fast-forward 'main' (working tree of 'main' has local changes)" \
    "$T/orch2.log" || fail "the fallback was not logged"
[[ $(git -C "$REPO" rev-parse main) == "$BASE" ]] || fail "main moved although its tree was dirty"
rm "$REPO/NOTES.txt"
publish_ready "$(plan Pclean codespell codespell textkit/normalize.py misspelling 0.3)"
wait_status Pclean accepted
CLEAN=$(git -C "$REPO" rev-parse kaizen/plan-Pclean)
expect "SELECT body->>'integrated' || ' ' || (body->>'integrated_commit') FROM events
        WHERE type = 'plan.accepted' AND body->>'plan_id' = 'Pclean'" "main $CLEAN"
[[ $(git -C "$REPO" rev-parse main) == "$CLEAN" ]] || fail "main was not fast-forwarded"
[[ -z $(git -C "$REPO" status --porcelain) ]] || fail "the fast-forward left the tree dirty"
git -C "$REPO" show "$CLEAN:textkit/normalize.py" | cmp -s - "$REPO/textkit/normalize.py" ||
    fail "the checkout does not hold the fast-forwarded file"
echo "ok"
