#!/usr/bin/env bash
# test_planning_causes: the causes of failed and rejected plans in the
# database, and what the planner plans again because of them. A real
# broker, the orchestrator's recorder, PostgreSQL, kaizen-improvement-planner
# and kaizen-feature-prioritizer; `kaizen publish` stands in for
# code-health and the router.
#   S1 (commit c1): one codespell finding in each of a.py .. h.py: eight
#      plans, all ready.
#   Their outcomes, by hand: a accepted; b rejected (cause change); c
#      failed (cause timeout); d failed (cause nothing_to_do, in state
#      executing); e failed (cause suite); f failed (no cause); g open;
#      h failed (cause fixer: the fixer itself failed on it).
#      improvement_suggestions.cause holds each (NULL where none).
#   S1 answered again (scan.completed reused): the planner proposes c.py
#      and f.py only (a failure of the machinery, or of unknown cause, does
#      not settle a finding), the prioritizer makes both ready.
#   S1 answered once more: nothing is proposed, no row is added.
#   S2 (commit c2, the same findings): b.py, d.py, e.py and h.py again
#      (they were settled at c1 only); a.py (accepted), g.py and the new c.py and
#      f.py plans (open) stay covered.
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
for f in a b c d e f g h; do echo "x = 1" >"$REPO/$f.py"; done
kz_config "$T/orch.yaml" <<'EOF'
supervisor:
  broker: false
database:
  flush_interval: 50ms
EOF
{ kz_config_base "$T/orch.yaml"; cat; } >"$T/kaizen.yaml" <<EOF
targets:
  - name: repo1
    path: $REPO
    languages: [python]
catalog: false
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

finding() { # FILE: a codespell finding whose fingerprint depends on the file only
    local fp
    fp=$(printf 'codespell|misspelling|%s' "$1" | md5sum | cut -c1-32)
    printf '{"tool":"codespell","rule":"misspelling","severity":"low","category":"docs",'
    printf '"file":"%s","line":1,"message":"recieve ==> receive","fingerprint":"%s"}' "$1" "$fp"
}
FINDINGS=$(for f in a b c d e f g h; do finding "$f.py"; echo; done | paste -sd,)
pub() { "$K" publish "$@" >/dev/null || fail "kaizen publish $1 $2"; }
# completed ID COMMIT [REUSED]: the scan.completed of a scan of 8 findings
completed() {
    pub scan.completed "{\"scan_id\":\"$1\",\"status\":\"ok\",\"findings\":8,\"files\":8,
        \"duration_ms\":5,\"commit\":\"$2\"${3:+,\"reused\":true}}" --target repo1 --corr "$1"
}
scan() { # ID COMMIT: what code-health publishes for a scan that ran
    pub scan.started "{\"scan_id\":\"$1\",\"commit\":\"$2\"}" --target repo1 --corr "$1"
    pub finding.batch "{\"scan_id\":\"$1\",\"seq\":0,\"findings\":[$FINDINGS]}" --target repo1 --corr "$1"
    completed "$1" "$2"
}
# ranked SCAN N: the Nth plan.ranked of SCAN has been seen; ready SCAN N:
# the files it made ready
cat >"$T/q.py" <<'PY'
import json, sys
what, scan, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = [json.loads(l.partition(" ")[2]) for l in open(sys.argv[4])]
ranked = [m["body"] for m in msgs if m["type"] == "plan.ranked" and m["body"]["scan_id"] == scan]
if len(ranked) < n:
    sys.exit(1)
files = {m["body"]["plan_id"]: m["body"]["files"][0] for m in msgs if m["type"] == "plan.ready"}
if what == "ready":
    print(" ".join(sorted(files[i] for i in ranked[n - 1]["ready"])))
    for d in ranked[n - 1].get("dropped", []):
        print("dropped", d["plan_id"], d["reason"])
PY
ranked() { /usr/bin/python3 "$T/q.py" ranked "$1" "$2" "$T/plans.out"; }
ready() { /usr/bin/python3 "$T/q.py" ready "$1" "$2" "$T/plans.out"; }
expect_eq() { [[ "$2" == "$3" ]] || fail "$1
  got:  $2
  want: $3"; }
expect_sql() { expect_eq "$1" "$(kz_psql "$1" 2>&1)" "$2"; }
plan_of() { kz_psql "SELECT plan_id FROM improvement_suggestions WHERE implementation_plan->>'scan_id' = 'S1'
    AND implementation_plan->'files'->>0 = '$1' ORDER BY id LIMIT 1"; }
nrows() { kz_psql "SELECT count(*) FROM improvement_suggestions"; }

# ---------------------------------------------------------------- S1
scan S1 c1
kz_wait_for 60 ranked S1 1 || fail "no plan.ranked for S1"
expect_eq "S1 ready" "$(ready S1 1)" "a.py b.py c.py d.py e.py f.py g.py h.py"
stored() { [[ $(kz_psql "SELECT count(*) FROM improvement_suggestions WHERE status = 'ready'") == 8 ]]; }
kz_wait_for 30 stored || fail "the S1 plans are not stored as ready"
A=$(plan_of a.py) B=$(plan_of b.py) C=$(plan_of c.py) D=$(plan_of d.py) E=$(plan_of e.py) F=$(plan_of f.py)
H=$(plan_of h.py)

# --------------------------------------------- outcomes and their causes
pub plan.accepted "{\"plan_id\":\"$A\",\"commit\":\"c1a\",\"branch\":\"kaizen/plan-$A\"}" --target repo1
pub plan.rejected "{\"plan_id\":\"$B\",\"state\":\"validating\",\"reasons\":[\"test_x failed\"],
    \"cause\":\"change\"}" --target repo1
pub plan.failed "{\"plan_id\":\"$C\",\"state\":\"executing\",\"reason\":\"no reply in 600 s\",
    \"cause\":\"timeout\"}" --target repo1
pub plan.failed "{\"plan_id\":\"$D\",\"state\":\"executing\",\"reason\":\"nothing to do\",
    \"cause\":\"nothing_to_do\"}" --target repo1
pub plan.failed "{\"plan_id\":\"$E\",\"state\":\"validating\",
    \"reason\":\"tests cannot run at base: 0 tests collected\",\"cause\":\"suite\"}" --target repo1
pub plan.failed "{\"plan_id\":\"$F\",\"state\":\"executing\",\"reason\":\"test\"}" --target repo1
pub plan.failed "{\"plan_id\":\"$H\",\"state\":\"executing\",\"reason\":\"fixer codespell was killed by signal 11\",
    \"cause\":\"fixer\"}" --target repo1
settled() { [[ $(kz_psql "SELECT count(*) FROM improvement_suggestions WHERE status IN
    ('accepted', 'rejected', 'failed')") == 7 ]]; }
kz_wait_for 30 settled || fail "the outcomes were not recorded"
expect_sql "SELECT string_agg((implementation_plan->'files'->>0) || ' ' || status || ' ' ||
    COALESCE(cause, '-'), ', ' ORDER BY implementation_plan->'files'->>0) FROM improvement_suggestions" \
    "a.py accepted -, b.py rejected change, c.py failed timeout, d.py failed nothing_to_do, e.py failed suite, f.py failed -, g.py ready -, h.py failed fixer"

# ------------------- S1 answered again: only what the machinery failed
completed S1 c1 reused
kz_wait_for 60 ranked S1 2 || fail "no plan.ranked for the reused S1"
expect_eq "reused S1 ready" "$(ready S1 2)" "c.py f.py"
kz_wait_log planner "scan S1 of 'repo1' at c1 (reused): 8 findings, 6 already covered by plans, 2 fixable in 2 plans" ||
    fail "no summary line for the reused S1"
# the plan.ranked was seen on the bus: its plans' rows follow (the recorder)
rows_are() { [[ $(nrows) == "$1" ]]; }
kz_wait_for 30 rows_are 10
rows=$(nrows)
expect_eq "rows after the reused S1" "$rows" 10

# ------------------------ S1 once more: everything covered, no row added
completed S1 c1 reused
kz_wait_for 60 ranked S1 3 || fail "no plan.ranked for S1 answered once more"
expect_eq "S1 once more ready" "$(ready S1 3)" ""
kz_wait_log planner "scan S1 of 'repo1' at c1 (reused): 8 findings, 8 already covered by plans, 0 fixable in 0 plans" ||
    fail "no summary line for S1 once more"
expect_eq "rows after S1 once more" "$(nrows)" "$rows"

# -------------- S2 at a new commit: what was settled at c1 is planned again
scan S2 c2
kz_wait_for 60 ranked S2 1 || fail "no plan.ranked for S2"
expect_eq "S2 ready" "$(ready S2 1)" "b.py d.py e.py h.py"
kz_wait_for 30 rows_are 14
expect_eq "rows after S2" "$(nrows)" 14

! grep -E " error " "$T/planner.log" "$T/prio.log" || fail "errors in the planning agents' logs"
echo "ok"
