#!/usr/bin/env bash
# test_executor_kill: kill -9 of the executor while it runs a plan's fixer
# (issue 12, "no plan executed twice unrecorded"). A real broker,
# orchestrator (router, recorder, supervisor of kaizen-code-refactorer and
# kaizen-code-reviewer), PostgreSQL and git repository; the fixer is a
# script that sleeps before it edits, so the kill lands while it works.
#  - the refactorer is killed (SIGKILL) once it took the request; the
#    supervisor starts it again and the broker gives the request, which
#    the dead worker held, to the new one: the fixer runs a second time;
#  - the new run finds the lock file the dead one left beside the plan's
#    worktree and says so in its reply (exec.result runs 2);
#  - executions lists both runs: one "lost" (the dead run) and the
#    "changed" reply; the plan is accepted, its commit one commit on the
#    base.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

SLOWFIX_CONCURRENT=1
source "$(dirname "$0")/slowfix.sh"

ready Pslow a.txt

started() {
    [[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'request.started'
                  AND body->>'plan_id' = 'Pslow'") -ge 1 ]]
}
kz_wait_for 60 started || fail "the executor never took the plan's request"
kz_psql "SELECT count(*) FROM executions" | grep -qx 0 ||
    fail "the plan was executed before the kill: the fixer is not slow enough"

# --- kill -9 the refactorer while the fixer sleeps
pid=$(pgrep -P "$PID_orch" -f kaizen-code-refactorer) || fail "no refactorer child of the orchestrator"
kill -KILL "$pid"

status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
final() { [[ $(status_of "$1") =~ ^(accepted|rejected|failed)$ ]]; }
kz_wait_for 180 final Pslow || fail "plan Pslow not final (status $(status_of Pslow))"
[[ $(status_of Pslow) == accepted ]] ||
    fail "plan Pslow: $(status_of Pslow): $(kz_psql "SELECT string_agg(body->>'reason', ' | ') FROM events WHERE type IN ('plan.failed','plan.rejected') AND body->>'plan_id' = 'Pslow'")"

# --- two runs started, two rows
runs=$(kz_psql "SELECT count(*) FROM events WHERE type = 'request.started' AND body->>'plan_id' = 'Pslow' AND body->>'service' = 'exec.refactor'")
[[ $runs == 2 ]] || fail "request.started of Pslow: $runs, want 2 (the dead run and the second): $(kz_psql "SELECT src, body::text, ts FROM events WHERE type = 'request.started' AND body->>'plan_id' = 'Pslow' ORDER BY ts")"
rows=$(kz_psql "SELECT string_agg(status, ',' ORDER BY id) FROM executions WHERE plan_id = 'Pslow'")
[[ $rows == lost,changed ]] ||
    fail "executions of Pslow: '$rows', want 'lost,changed': a run is not recorded"
kz_psql "SELECT error FROM executions WHERE plan_id = 'Pslow' AND status = 'lost'" |
    grep -q "run 1 of 2 on the executor died before it answered" ||
    fail "the lost run's row does not say why: $(kz_psql "SELECT error FROM executions WHERE plan_id = 'Pslow'")"
COMMIT=$(git -C "$REPO" rev-parse refs/kaizen/plans/Pslow) || fail "no refs/kaizen/plans/Pslow"
[[ $(git -C "$REPO" rev-parse "$COMMIT^") == "$BASE" ]] || fail "the plan's commit is not one commit on the base"
echo "ok"
