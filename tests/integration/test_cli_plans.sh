#!/usr/bin/env bash
# test_cli_plans.sh - `kaizen plans`, `plans show`, `approve` and `reject`
# against real PostgreSQL and the orchestrator's recorder: plans are
# published by hand (plan.ready, plan.state, exec.result, validate.result,
# plan.accepted, plan.rejected with `kaizen publish`), then the list and
# its filters, --json (parsed), one plan with its transitions, execution,
# validations and the message and diff of its commit (a rejected plan's
# too, kept as refs/kaizen/plans/<id>; --no-diff), unknown ids and ambiguous
# prefixes (exit 3), approving a plan that is not awaiting approval and
# rejecting one that is final (exit 4), and what approve and reject
# publish (plan.approved / plan.rejected and feedback.decision, recorded).
# Every text is exact: a plan never executed "never had a branch", one
# whose fixer changed nothing says "nothing to do", a rejection names the state it
# happened in and prints each reason once, an unknown --state is exit 2.
# The orchestrator runs without targets, so no router acts on the plans.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
command -v git >/dev/null || skip "git is not installed"
kz_python json || skip "no python3"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"
kz_config </dev/null
kz_at_exit "\"$K\" down --timeout 30s"

expect() { # expect RC NAME CMD... : output in $T/NAME.out, $T/NAME.err
    local want=$1 name=$2; shift 2
    timeout 60 "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/$name.out" "$T/$name.err")"
}
pub() { # pub TYPE BODY: publish with target py, corr = the body's plan_id
    local corr=
    [[ $2 =~ \"plan_id\":\"([^\"]+)\" ]] && corr=${BASH_REMATCH[1]}
    "$K" publish "$1" "$2" --target py --corr "$corr" >/dev/null || fail "publish $1 $2"
}
q() { kz_psql "$1"; }

expect 0 up "$K" up
grep -q "kaizen is up" "$T/up.out" || fail "up: $(cat "$T/up.out")"

# a repository with the accepted plan's branch, for the diff
R=$T/py
git init -q -b main "$R"
printf 'import os\nimport sys\n' >"$R/a.py"
git -C "$R" add a.py
git -C "$R" -c user.name=t -c user.email=t@t commit -q -m base
BASE=$(git -C "$R" rev-parse HEAD)
P1=01JAAA0000000000000000APR1 # awaiting approval
P2=01JAAA0000000000000000RDY2 # ready
P3=01JBBB0000000000000000ACC3 # accepted
P4=01JCCC0000000000000000REJ4 # rejected by two validators
P5=01JDDD0000000000000000DRP5 # dropped by the prioritizer
P6=01JEEE0000000000000000NOP6 # its fixer changed nothing
git -C "$R" checkout -q -b "kaizen/plan-$P3"
printf 'import sys\nimport os\n' >"$R/a.py"
git -C "$R" -c user.name=t -c user.email=t@t commit -q -am "kaizen: isort on a.py (plan $P3)"
COMMIT=$(git -C "$R" rev-parse HEAD)
git -C "$R" checkout -q main
# the rejected plan's commit, kept without a branch as the router keeps it
git -C "$R" checkout -q --detach
printf 'import os\nimport sys  # teh\n' >"$R/a.py"
git -C "$R" -c user.name=t -c user.email=t@t commit -q -am "Fix 1 spelling mistake in a.py" \
    -m "- a.py:2 teh: teh ==> the" -m "Kaizen-Plan: 01JCCC0000000000000000REJ4"
REJ=$(git -C "$R" rev-parse HEAD)
git -C "$R" update-ref refs/kaizen/plans/01JCCC0000000000000000REJ4 "$REJ"
git -C "$R" checkout -q main

plan() { # plan ID RANK RISK FIXER: a plan.ready body
    printf '{"plan_id":"%s","fixer":"%s","files":["a.py"],"findings":["fp%s"],"impact":2,"effort":1,"risk":%s,"rank":%s,"rationale":"test plan %s","scan_id":"SCAN1","base_commit":"%s","tool":"%s","rules":["R1"],"language":"python"}' \
        "$1" "$4" "$2" "$3" "$2" "$1" "$BASE" "$4"
}
pub plan.ready "$(plan $P1 0 0.9 black)"
pub plan.state "{\"plan_id\":\"$P1\",\"state\":\"awaiting_approval\",\"reason\":\"risk 0.90 is at or above policy.require_approval 0.80\"}"
pub plan.ready "$(plan $P2 1 0.2 black)"
pub plan.ready "$(plan $P3 2 0.1 isort)"
pub plan.state "{\"plan_id\":\"$P3\",\"state\":\"executing\"}"
pub exec.result "{\"plan_id\":\"$P3\",\"status\":\"changed\",\"commit\":\"$COMMIT\",\"files\":[\"a.py\"],\"diffstat\":\"1 file changed, 1 insertion(+), 1 deletion(-)\"}"
pub plan.state "{\"plan_id\":\"$P3\",\"state\":\"executed\"}"
pub plan.state "{\"plan_id\":\"$P3\",\"state\":\"validating\"}"
pub validate.result "{\"plan_id\":\"$P3\",\"validator\":\"test-runner\",\"verdict\":\"pass\"}"
pub validate.result "{\"plan_id\":\"$P3\",\"validator\":\"code-reviewer\",\"verdict\":\"pass\",\"reasons\":[\"targeted findings gone\"]}"
pub plan.accepted "{\"plan_id\":\"$P3\",\"commit\":\"$COMMIT\",\"branch\":\"kaizen/plan-$P3\",\"integrated\":\"kaizen/improvements\",\"integrated_commit\":\"$COMMIT\"}"
pub plan.ready "$(plan $P4 3 0.1 codespell)"
pub plan.state "{\"plan_id\":\"$P4\",\"state\":\"executing\"}"
pub exec.result "{\"plan_id\":\"$P4\",\"status\":\"changed\",\"commit\":\"$REJ\",\"files\":[\"a.py\"],\"diffstat\":\"1 file changed\"}"
pub plan.state "{\"plan_id\":\"$P4\",\"state\":\"validating\"}"
pub validate.result "{\"plan_id\":\"$P4\",\"validator\":\"test-runner\",\"verdict\":\"reject\",\"reasons\":[\"tests/test_x.py::test_greeting passed before and fails now\",\"tests/test_x.py::test_wrap passed before and fails now\"]}"
pub validate.result "{\"plan_id\":\"$P4\",\"validator\":\"code-reviewer\",\"verdict\":\"reject\",\"reasons\":[\"1 new finding: W0611\"]}"
# as the router words it: the reason joins every validator's reasons
pub plan.rejected "{\"plan_id\":\"$P4\",\"state\":\"validating\",\"reason\":\"test-runner: tests/test_x.py::test_greeting passed before and fails now; tests/test_x.py::test_wrap passed before and fails now; code-reviewer: 1 new finding: W0611\",\"reasons\":[\"test-runner: tests/test_x.py::test_greeting passed before and fails now\",\"test-runner: tests/test_x.py::test_wrap passed before and fails now\",\"code-reviewer: 1 new finding: W0611\"]}"
pub plan.proposed "$(plan $P5 0 0.1 black)"
pub plan.ranked "{\"scan_id\":\"SCAN1\",\"ready\":[],\"dropped\":[{\"plan_id\":\"$P5\",\"reason\":\"duplicate of plan $P2\"}]}"
pub plan.ready "$(plan $P6 4 0.1 black)"
pub plan.state "{\"plan_id\":\"$P6\",\"state\":\"executing\"}"
pub exec.result "{\"plan_id\":\"$P6\",\"status\":\"nothing\",\"error\":\"nothing to do: black changed none of a.py\"}"
pub plan.rejected "{\"plan_id\":\"$P6\",\"state\":\"executing\",\"reason\":\"nothing to do: black changed none of a.py\"}"

states() { q "SELECT string_agg(plan_id || '=' || status, ' ' ORDER BY plan_id) FROM improvement_suggestions"; }
want="$P1=awaiting_approval $P2=ready $P3=accepted $P4=rejected $P5=dropped $P6=rejected"
states_are() { [[ "$(states 2>/dev/null)" == "$1" ]]; }
kz_wait_for 30 states_are "$want" || fail "plans not recorded: $(states)"
kz_wait_for 30 kz_psql_is "SELECT count(*) FROM validations" 4 || fail "validations not recorded"
kz_wait_for 30 kz_psql_is "SELECT count(*) FROM executions" 3 || fail "executions not recorded"

# --- kaizen plans
expect 0 list "$K" plans
for p in $P1 $P2 $P3 $P4; do grep -q "^$p " "$T/list.out" || fail "plans does not list $p: $(cat "$T/list.out")"; done
grep -q "^PLAN .*STATE .*TARGET .*FIXER .*RISK .*RANK" "$T/list.out" || fail "no header: $(cat "$T/list.out")"
grep -q "^$P1 .*awaiting_approval .*py .*black .*0.90 .*0 " "$T/list.out" || fail "row of $P1: $(cat "$T/list.out")"
grep -q "^6 plans$" "$T/list.out" || fail "no count line: $(cat "$T/list.out")"
expect 0 list-state "$K" plans --state awaiting_approval
grep -q "^$P1 " "$T/list-state.out" || fail "--state: $(cat "$T/list-state.out")"
grep -q "^$P2 " "$T/list-state.out" && fail "--state awaiting_approval lists a ready plan"
expect 0 list-target "$K" plans --target nosuch
grep -q "no plans of target nosuch" "$T/list-target.out" || fail "--target nosuch: $(cat "$T/list-target.out")"
# a limit that cuts the list says so, one that does not says nothing
expect 0 list-limit "$K" plans --limit 2
grep -q "^2 plans, the most recent (there are more: --limit 0 lists all)$" "$T/list-limit.out" ||
    fail "plans --limit 2: $(cat "$T/list-limit.out")"
expect 0 list-limit6 "$K" plans --limit 6
grep -q "^6 plans$" "$T/list-limit6.out" || fail "plans --limit 6: $(cat "$T/list-limit6.out")"
# every state the recorder writes is a --state, dropped too; others are usage errors
expect 0 list-dropped "$K" plans --state dropped
grep -q "^$P5 .*dropped " "$T/list-dropped.out" || fail "--state dropped: $(cat "$T/list-dropped.out")"
[[ $(grep -c "^01J" "$T/list-dropped.out") -eq 1 ]] || fail "--state dropped: $(cat "$T/list-dropped.out")"
expect 2 bogus-state "$K" plans --state bogus
grep -q "kaizen plans: unknown state 'bogus' (use proposed, ready, dropped, awaiting_approval" "$T/bogus-state.err" ||
    fail "--state bogus: $(cat "$T/bogus-state.err")"
[[ -s $T/bogus-state.out ]] && fail "--state bogus printed plans"
expect 0 list-json "$K" plans --json --limit 2
"$PY" - "$T/list-json.out" <<'PY' || fail "plans --json: $(cat "$T/list-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["count"] == 2 and len(d["plans"]) == 2 and d["more"] is True, d
for p in d["plans"]:
    for k in ("plan_id", "state", "target", "fixer", "files", "risk", "rank", "updated_at"):
        assert k in p, (k, p)
    assert p["files"] == ["a.py"] and p["target"] == "py", p
PY
expect 0 list-json-all "$K" plans --json --state rejected
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert sorted(p["plan_id"] for p in d["plans"])==sys.argv[2:], d' \
    "$T/list-json-all.out" "$P4" "$P6" || fail "plans --json --state rejected: $(cat "$T/list-json-all.out")"
expect 2 bad-state "$K" plans --state 'Bad State'
expect 2 bad-limit "$K" plans --limit lots
expect 2 bad-flag "$K" plans --bogus
grep -q "see 'kaizen plans --help'" "$T/bad-flag.err" || fail "no hint: $(cat "$T/bad-flag.err")"

# --- kaizen plans show: with a config that knows target py, for the diff
{ cat "$T/kaizen.yaml"; printf 'targets:\n  - name: py\n    path: %s\n' "$R"; } >"$T/cli.yaml"
expect 0 show "$K" -c "$T/cli.yaml" plans show "$P3"
grep -q "^plan $P3  (accepted)" "$T/show.out" || fail "show header: $(cat "$T/show.out")"
awk '/^transitions:/{on=1;next} /^$/{on=0} on{print $3}' "$T/show.out" >"$T/trans"
[[ "$(tr '\n' ' ' <"$T/trans")" == "ready executing executed validating accepted " ]] ||
    fail "transitions not in order: $(cat "$T/trans") / $(cat "$T/show.out")"
grep -q "status changed  commit $COMMIT" "$T/show.out" || fail "no execution: $(cat "$T/show.out")"
grep -q "1 file changed, 1 insertion(+), 1 deletion(-)" "$T/show.out" || fail "no diffstat"
grep -q "test-runner: pass" "$T/show.out" || fail "no test-runner verdict: $(cat "$T/show.out")"
grep -q "code-reviewer: pass" "$T/show.out" || fail "no code-reviewer verdict"
grep -q -- "- targeted findings gone" "$T/show.out" || fail "no validation reason"
grep -q "^diff: git diff $BASE..refs/heads/kaizen/plan-$P3 in $R" "$T/show.out" || fail "no diff line: $(cat "$T/show.out")"
grep -q "^commit message:$" "$T/show.out" || fail "no commit message: $(cat "$T/show.out")"
grep -qx "    kaizen: isort on a.py (plan $P3)" "$T/show.out" || fail "no commit message: $(cat "$T/show.out")"
grep -q "^-import os" "$T/show.out" || fail "no diff: $(cat "$T/show.out")"
grep -q "^+import os" "$T/show.out" || fail "no diff: $(cat "$T/show.out")"
# a unique prefix, and --json
expect 0 show-json "$K" -c "$T/cli.yaml" plans show 01JBBB --json
"$PY" - "$T/show-json.out" "$P3" "$COMMIT" <<'PY' || fail "plans show --json: $(cat "$T/show-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["plan_id"] == sys.argv[2] and d["state"] == "accepted", d
assert [t["state"] for t in d["transitions"]] == ["ready", "executing", "executed", "validating", "accepted"], d["transitions"]
assert d["executions"][0]["commit"] == sys.argv[3] and d["executions"][0]["files"] == ["a.py"], d["executions"]
assert sorted(v["validator"] for v in d["validations"]) == ["code-reviewer", "test-runner"], d["validations"]
assert "+import os" in d["diff"], d["diff"]
assert d["plan"]["fixer"] == "isort" and d["plan"]["rules"] == ["R1"], d["plan"]
PY
# the rejected plan: the state it was rejected in, each reason once, and
# its commit's message and diff from refs/kaizen/plans/<id> (its branch is
# gone with the rollback)
expect 0 show-rej "$K" -c "$T/cli.yaml" plans show "$P4"
grep -Eq "^  [0-9-]+ [0-9:.]+  rejected +kaizen-publish@.* in validating$" "$T/show-rej.out" ||
    fail "no 'in validating' on the rejection: $(cat "$T/show-rej.out")"
for r in "test-runner: tests/test_x.py::test_greeting passed before and fails now" \
    "test-runner: tests/test_x.py::test_wrap passed before and fails now" \
    "code-reviewer: 1 new finding: W0611"; do
    [[ $(grep -cF -- "$r" "$T/show-rej.out") -eq 1 ]] ||
        fail "reason '$r' not printed exactly once: $(cat "$T/show-rej.out")"
done
grep -q "reason: " "$T/show-rej.out" && fail "the joined reason is printed beside its parts: $(cat "$T/show-rej.out")"
grep -q "^diff: git diff $BASE..refs/kaizen/plans/$P4 in $R$" "$T/show-rej.out" ||
    fail "no diff of the rejected plan: $(cat "$T/show-rej.out")"
grep -qx -- "+import sys  # teh" "$T/show-rej.out" || fail "no diff of the rejected plan: $(cat "$T/show-rej.out")"
[[ "$(sed -n '/^commit message:$/,/^$/p' "$T/show-rej.out")" == "$(printf 'commit message:\n    Fix 1 spelling mistake in a.py\n    \n    - a.py:2 teh: teh ==> the\n    \n    Kaizen-Plan: %s\n' "$P4")" ]] ||
    fail "the rejected plan's commit message: $(cat "$T/show-rej.out")"
git -C "$R" branch --list | grep -q "$P4" && fail "the rejected plan is a branch"
# --no-diff: the message, no diff
expect 0 show-rej-nodiff "$K" -c "$T/cli.yaml" plans show "$P4" --no-diff
grep -q "^diff: not shown (--no-diff); git diff $BASE..refs/kaizen/plans/$P4 in $R$" "$T/show-rej-nodiff.out" ||
    fail "--no-diff: $(cat "$T/show-rej-nodiff.out")"
grep -q "^+import" "$T/show-rej-nodiff.out" && fail "--no-diff printed the diff: $(cat "$T/show-rej-nodiff.out")"
grep -qx "    Fix 1 spelling mistake in a.py" "$T/show-rej-nodiff.out" || fail "--no-diff: no message"
# a dropped plan never had a branch, nor did one whose fixer changed nothing
expect 0 show-drop "$K" -c "$T/cli.yaml" plans show "$P5"
grep -q "^diff: none (the plan never had a branch: it never reached execution; it is dropped)$" "$T/show-drop.out" ||
    fail "dropped plan: $(cat "$T/show-drop.out")"
grep -q "no longer exists" "$T/show-drop.out" && fail "dropped plan: a branch that never existed 'no longer exists'"
grep -q "reason: duplicate of plan $P2" "$T/show-drop.out" || fail "dropped plan: no reason: $(cat "$T/show-drop.out")"
expect 0 show-drop-json "$K" -c "$T/cli.yaml" plans show "$P5" --json
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["had_branch"] is False and d["diff"] is None, d' \
    "$T/show-drop-json.out" || fail "dropped plan --json: $(cat "$T/show-drop-json.out")"
expect 0 show-nop "$K" -c "$T/cli.yaml" plans show "$P6"
grep -q "^diff: none (nothing to do: black changed none of a.py)$" "$T/show-nop.out" ||
    fail "plan whose fixer changed nothing: $(cat "$T/show-nop.out")"
grep -Eq "rejected +kaizen-publish@.* in executing$" "$T/show-nop.out" || fail "no 'in executing': $(cat "$T/show-nop.out")"
grep -q "status nothing" "$T/show-nop.out" || fail "no execution: $(cat "$T/show-nop.out")"
# without the target in the config: said so
expect 0 show-nocfg "$K" plans show "$P3"
grep -q "^diff: none (target 'py' is not in this config)" "$T/show-nocfg.out" || fail "$(cat "$T/show-nocfg.out")"
# unknown, ambiguous, malformed
expect 3 show-unknown "$K" plans show 01JZZZ
grep -q "no plan '01JZZZ'" "$T/show-unknown.err" || fail "unknown id: $(cat "$T/show-unknown.err")"
expect 3 show-ambiguous "$K" plans show 01JAAA
grep -q "'01JAAA' is ambiguous: it begins 2 plans: $P1 $P2" "$T/show-ambiguous.err" ||
    fail "ambiguous prefix: $(cat "$T/show-ambiguous.err")"
expect 2 show-bad "$K" plans show 'x;y'
expect 2 show-none "$K" plans show

# --- approve
expect 4 approve-ready "$K" approve "$P2"
grep -q "plan $P2 is ready, not awaiting approval" "$T/approve-ready.err" ||
    fail "approving a ready plan: $(cat "$T/approve-ready.err")"
expect 3 approve-unknown "$K" approve 01JNOPE
expect 3 approve-ambiguous "$K" approve 01JAAA
expect 2 approve-none "$K" approve
expect 0 approve "$K" approve 01JAAA0000000000000000AP
grep -q "approved plan $P1 (target py, fixer black) as .*: the router will execute and validate it" "$T/approve.out" ||
    fail "approve: $(cat "$T/approve.out")"
BY=${USER:-$(id -un)}
kz_wait_for 30 kz_psql_is "SELECT status FROM improvement_suggestions WHERE plan_id = '$P1'" approved ||
    fail "plan.approved not recorded: $(states)"
kz_wait_for 30 kz_psql_is "SELECT body->>'decision' || ' ' || (body->>'by') FROM events WHERE type = 'feedback.decision' AND body->>'plan_id' = '$P1'" "approve $BY" ||
    fail "feedback.decision of the approval: $(q "SELECT body FROM events WHERE type = 'feedback.decision'")"
[[ "$(q "SELECT target || ' ' || corr FROM events WHERE type = 'plan.approved'")" == "py $P1" ]] ||
    fail "plan.approved envelope: $(q "SELECT target, corr FROM events WHERE type = 'plan.approved'")"
expect 4 approve-again "$K" approve "$P1"

# --- reject
expect 2 reject-nowhy "$K" reject "$P2"
grep -q -- "--why" "$T/reject-nowhy.err" || fail "reject without --why: $(cat "$T/reject-nowhy.err")"
expect 4 reject-final "$K" reject "$P3" --why "changed my mind"
grep -q "plan $P3 is accepted (final): only a plan awaiting approval, ready or proposed can be rejected" "$T/reject-final.err" ||
    fail "rejecting an accepted plan: $(cat "$T/reject-final.err")"
expect 4 reject-approved "$K" reject "$P1" --why "changed my mind"
grep -q "plan $P1 is approved (the router executes it next): only a plan" "$T/reject-approved.err" ||
    fail "rejecting an approved plan: $(cat "$T/reject-approved.err")"
expect 4 reject-dropped "$K" reject "$P5" --why "changed my mind"
grep -q "plan $P5 is dropped (final)" "$T/reject-dropped.err" || fail "rejecting a dropped plan: $(cat "$T/reject-dropped.err")"
expect 3 reject-unknown "$K" reject 01JNOPE --why x
expect 0 reject "$K" reject "$P2" --why "touches generated code"
grep -q "rejected plan $P2 (target py, fixer black) as $BY: touches generated code" "$T/reject.out" ||
    fail "reject: $(cat "$T/reject.out")"
kz_wait_for 30 kz_psql_is "SELECT status || ' ' || cause FROM improvement_suggestions WHERE plan_id = '$P2'" "rejected person" ||
    fail "plan.rejected not recorded with cause person: $(states)"
kz_wait_for 30 kz_psql_is "SELECT body->>'decision' || '|' || (body->>'by') || '|' || (body->>'reason') FROM events WHERE type = 'feedback.decision' AND body->>'plan_id' = '$P2'" "reject|$BY|touches generated code" ||
    fail "feedback.decision of the rejection: $(q "SELECT body FROM events WHERE type = 'feedback.decision'")"
expect 0 show-p2 "$K" plans show "$P2"
grep -q "rejected .* by $BY" "$T/show-p2.out" || fail "the person's rejection in plans show: $(cat "$T/show-p2.out")"
grep -q "reason: touches generated code" "$T/show-p2.out" || fail "the reason in plans show: $(cat "$T/show-p2.out")"

# --- nothing reachable: a clear error, exit 1
expect 0 down "$K" down
expect 1 plans-down "$K" plans
grep -q "database unreachable" "$T/plans-down.err" || fail "plans with the database down: $(cat "$T/plans-down.err")"
echo "ok"
