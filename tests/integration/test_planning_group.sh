#!/usr/bin/env bash
# test_planning_group: policy.group - one plan per fixer over a target's
# files - and the split of a grouped plan that ends without its fix. A
# real broker, the orchestrator's recorder, PostgreSQL,
# kaizen-improvement-planner and kaizen-feature-prioritizer; `kaizen
# publish` stands in for code-health and the router.
#   S1 (commit c1): codespell findings in a.py (2), b.py .. e.py (1 each),
#      policy.max_files 3: two plans, a.py+b.py+c.py (effort 3) and
#      d.py+e.py, both ready, their finding_details listing every finding.
#   G1 (a+b+c) rejected by a validator (cause change): the planner
#      proposes a.py, b.py and c.py again, one plan each, at c1 with the
#      same findings and split_from G1; the prioritizer makes them ready
#      (G1's rejection at this commit does not settle them).
#   The a.py plan rejected too: a plan of one file is never split again.
#   G2 (d+e) rejected by a person (cause person): not split.
#   b.py and c.py accepted; S1 answered again: every finding is covered
#      (G1 and a.py rejected at c1, b.py and c.py accepted, G2 rejected).
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json || skip "no python3"
[[ -x $KZ_TOOLS/kz_sub ]] || skip "no $KZ_TOOLS/kz_sub (make tests)"

K=$KZ_BIN/kaizen
REPO=$T/repo
mkdir -p "$REPO"
for f in a b c d e; do echo "x = 1" >"$REPO/$f.py"; done
kz_config "$T/orch.yaml" <<'EOF'
supervisor:
  broker: false
database:
  flush_interval: 50ms
EOF
cat "$T/orch.yaml" - >"$T/kaizen.yaml" <<EOF
targets:
  - name: repo1
    path: $REPO
    languages: [python]
tools:
  - name: codespell
    argv: [codespell, "{files}"]
    format: gcc
fixers:
  - name: codespell
    tool: codespell
    argv: [codespell, -w, "{files}"]
    effort: 1
    risk: 0.2
policy:
  max_open_plans: 50
  max_plans_per_hour: 100
  max_files: 3
  group: true
EOF
export KAIZEN_CONFIG=$T/kaizen.yaml
kz_at_exit kz_kill_leftovers
kz_db_start

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator" -c "$T/orch.yaml"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_start sub "$KZ_TOOLS/kz_sub" plan. --json --out "$T/plans.out"
kz_wait_log sub "listening" || fail "kz_sub did not start"
kz_start planner "$KZ_BIN/kaizen-improvement-planner" --interval 0 --log-level debug
kz_start prio "$KZ_BIN/kaizen-feature-prioritizer" --interval 0 --log-level debug
hellos() {
    [[ $(kz_psql "SELECT count(DISTINCT name) FROM agents WHERE name IN
        ('improvement-planner', 'feature-prioritizer')") == 2 ]]
}
kz_wait_for 60 hellos || fail "the planning agents did not say hello"
stop_in_order() {
    local p
    for p in "$PID_sub" "$PID_planner" "$PID_prio" "$PID_orch"; do
        kill -TERM "$p" 2>/dev/null
        kz_wait_for 20 eval "! kill -0 $p"
    done
}
kz_at_exit stop_in_order

finding() { # FILE LINE: a codespell finding whose fingerprint depends on both
    local fp
    fp=$(printf 'codespell|misspelling|%s|%s' "$1" "$2" | md5sum | cut -c1-32)
    printf '{"tool":"codespell","rule":"misspelling","severity":"low","category":"docs",'
    printf '"file":"%s","line":%s,"message":"recieve ==> receive","fingerprint":"%s"}' "$1" "$2" "$fp"
}
FINDINGS=$( (finding a.py 1; echo; finding a.py 7; echo; for f in b c d e; do finding "$f.py" 2; echo; done) | paste -sd,)
pub() { "$K" publish "$@" >/dev/null || fail "kaizen publish $1 $2"; }
completed() { # ID COMMIT [REUSED]
    pub scan.completed "{\"scan_id\":\"$1\",\"status\":\"ok\",\"findings\":6,\"files\":5,
        \"duration_ms\":5,\"commit\":\"$2\"${3:+,\"reused\":true}}" --target repo1 --corr "$1"
}
pub scan.started '{"scan_id":"S1","commit":"c1"}' --target repo1 --corr S1
pub finding.batch "{\"scan_id\":\"S1\",\"seq\":0,\"findings\":[$FINDINGS]}" --target repo1 --corr S1
completed S1 c1

# ready N: the plan.ready events seen, one line each: files (joined by +),
# the number of findings and of details, effort, split_from ("-" when none)
cat >"$T/q.py" <<'PY'
import json, sys
msgs = [json.loads(l.partition(" ")[2]) for l in open(sys.argv[2])]
ready = [m["body"] for m in msgs if m["type"] == "plan.ready"]
if len(ready) < int(sys.argv[1]):
    sys.exit(1)
for b in ready:
    print("+".join(b["files"]), len(b["findings"]), len(b.get("finding_details", [])),
          "%g" % b["effort"], b.get("split_from", "-"))
PY
ready() { /usr/bin/python3 "$T/q.py" "$1" "$T/plans.out"; }
expect_eq() { [[ "$2" == "$3" ]] || fail "$1
  got:  $2
  want: $3"; }
plan_of() { # FILES (joined by +): the plan id of the ready plan of those files
    kz_psql "SELECT plan_id FROM improvement_suggestions WHERE status = 'ready' AND
        (SELECT string_agg(f, '+') FROM jsonb_array_elements_text(implementation_plan->'files') f) = '$1'"
}

# ------------------------------------- S1: two grouped plans (max_files 3)
kz_wait_for 60 ready 2 || fail "no plan.ready for S1: $(cat "$T/plans.out")"
expect_eq "S1 plans" "$(ready 2)" "a.py+b.py+c.py 4 4 3 -
d.py+e.py 2 2 2 -"
stored() { [[ $(kz_psql "SELECT count(*) FROM improvement_suggestions WHERE status = 'ready'") == 2 ]]; }
kz_wait_for 30 stored || fail "the S1 plans are not stored as ready"
G1=$(plan_of a.py+b.py+c.py) G2=$(plan_of d.py+e.py)
[[ -n $G1 && -n $G2 ]] || fail "grouped plans not found: $(kz_psql "SELECT implementation_plan FROM improvement_suggestions")"

# -------------------- G1 rejected by a validator: split, one plan per file
pub plan.rejected "{\"plan_id\":\"$G1\",\"state\":\"validating\",\"reasons\":[\"test_b failed\"],
    \"cause\":\"change\"}" --target repo1
kz_wait_for 60 ready 5 || fail "G1 was not split: $(ready 0) $(tail -5 "$T/planner.log")"
expect_eq "plans after G1's rejection" "$(ready 5 | tail -n +3 | sort)" "a.py 2 2 1 $G1
b.py 1 1 1 $G1
c.py 1 1 1 $G1"
kz_wait_log planner "plan $G1 of 3 files ended without its fix: proposed again as 3 plans, one per file, at c1" ||
    fail "the split was not logged"
expect_eq "the split plans' base" \
    "$(kz_psql "SELECT string_agg(DISTINCT implementation_plan->>'base_commit', ',') FROM improvement_suggestions
        WHERE implementation_plan->>'split_from' = '$G1'")" "c1"
split_stored() { [[ $(kz_psql "SELECT count(*) FROM improvement_suggestions WHERE status = 'ready'") == 4 ]]; }
kz_wait_for 30 split_stored || fail "the split plans are not stored as ready"
SA=$(plan_of a.py) SB=$(plan_of b.py) SC=$(plan_of c.py)

# ---- a split plan rejected: never split again; G2 rejected by a person:
# not split either (published in this order to one queue group: once G2's
# end is handled, so is SA's)
pub plan.rejected "{\"plan_id\":\"$SA\",\"state\":\"validating\",\"cause\":\"change\"}" --target repo1
pub plan.rejected "{\"plan_id\":\"$G2\",\"by\":\"tester\",\"cause\":\"person\"}" --target repo1
pub plan.accepted "{\"plan_id\":\"$SB\",\"commit\":\"c1b\",\"branch\":\"kaizen/plan-$SB\"}" --target repo1
pub plan.accepted "{\"plan_id\":\"$SC\",\"commit\":\"c1c\",\"branch\":\"kaizen/plan-$SC\"}" --target repo1
ended() { [[ $(kz_psql "SELECT count(*) FROM improvement_suggestions WHERE status IN ('accepted', 'rejected')") == 5 ]]; }
kz_wait_for 30 ended || fail "the outcomes were not recorded"

# ------------ S1 again: every finding is covered; nothing new was proposed
completed S1 c1 reused
kz_wait_log planner "scan S1 of 'repo1' at c1 (reused): 6 findings, 6 already covered by plans, 0 fixable in 0 plans" ||
    fail "S1 again: $(grep "scan S1" "$T/planner.log")"
expect_eq "plans in all" "$(kz_psql "SELECT count(*) FROM improvement_suggestions")" 5
expect_eq "ready events in all" "$(ready 5 | wc -l)" 5

! grep -E " error " "$T/planner.log" "$T/prio.log" || fail "errors in the planning agents' logs"
echo "ok"
