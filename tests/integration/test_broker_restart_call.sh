#!/usr/bin/env bash
# test_broker_restart_call: kill -9 of the broker while an executor works
# on a plan (issue 12, "no silent waits after a crash"). A real broker,
# orchestrator (router, recorder, supervisor of kaizen-code-refactorer and
# kaizen-code-reviewer), PostgreSQL and git repository; the fixer is a
# script that sleeps before it edits, so the kill lands while it works.
#  - the broker is killed (SIGKILL) once the executor took the request
#    (request.started recorded) and started again at once;
#  - the router notices the dropped connection and re-asks the executor
#    (retry_of) instead of waiting out policy.exec_timeout (300 s here):
#    the plan is accepted well before (90 s);
#  - the executor answers the re-ask from its memory of the first run:
#    the fixer ran once, and the plan's commit is one commit on the base
#    whose tree is what one run of the fixer gives;
#  - executions: attempt 1 "lost", attempt 2 "changed" replayed (the
#    kept answer, no second run); validations: one row, attempt 1;
#  - a second plan whose request waited in the killed broker's queue (one
#    executor, busy with the first): the request is lost with the broker,
#    its re-ask reaches the executor, which never saw it, and runs:
#    accepted, executions attempt 1 "lost", attempt 2 "changed" not
#    replayed.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/slowfix.sh"
STATE=$T/state

ready Pslow a.txt

started() {
    [[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'request.started'
                  AND body->>'plan_id' = 'Pslow'") -ge 1 ]]
}
kz_wait_for 60 started || fail "the executor never took the plan's request"
# the second plan's request waits in the broker's queue behind the first
ready Pqueued b.txt
queued() {
    [[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'plan.state'
                  AND body->>'plan_id' = 'Pqueued' AND body->>'state' = 'executing'") -ge 1 ]]
}
kz_wait_for 60 queued || fail "the second plan did not start executing"
kz_psql "SELECT count(*) FROM executions" | grep -qx 0 ||
    fail "a plan was executed before the broker was killed: the fixer is not slow enough"
kz_psql "SELECT count(*) FROM events WHERE type = 'request.started' AND body->>'plan_id' = 'Pqueued'" |
    grep -qx 0 || fail "the second plan's request did not wait in the broker's queue"

# --- kill -9 the broker while the fixer sleeps, and start it again
kill -KILL "$PID_broker"
wait "$PID_broker" 2>/dev/null
killed_at=$SECONDS
kz_start broker2 "$KZ_BIN/kaizen-broker"
kz_wait_log broker2 "broker ready" || fail "the broker did not start again"

status_of() { kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'"; }
final() { [[ $(status_of "$1") =~ ^(accepted|rejected|failed)$ ]]; }
for p in Pslow Pqueued; do
    kz_wait_for $((90 - (SECONDS - killed_at))) final "$p" ||
        fail "plan $p not final 90 s after the broker restart (status $(status_of "$p")): the lost call waits out exec_timeout"
    [[ $(status_of "$p") == accepted ]] ||
        fail "plan $p: $(status_of "$p"): $(kz_psql "SELECT string_agg(body->>'reason', ' | ') FROM events WHERE type IN ('plan.failed','plan.rejected') AND body->>'plan_id' = '$p'")"
done
echo "both accepted $((SECONDS - killed_at)) s after the broker was killed"

# --- one run: the fixer's edit once, one commit on the base
COMMIT=$(git -C "$REPO" rev-parse refs/kaizen/plans/Pslow) || fail "no refs/kaizen/plans/Pslow"
[[ $(git -C "$REPO" rev-parse "$COMMIT^") == "$BASE" ]] || fail "the plan's commit is not one commit on the base"
git clone -q "$REPO" "$T/one"
printf 'fixed\n' >>"$T/one/a.txt"
git -C "$T/one" add -A
[[ $(git -C "$REPO" rev-parse "$COMMIT^{tree}") == $(git -C "$T/one" write-tree) ]] ||
    fail "the plan's tree is not what one run of the fixer gives: $(git -C "$REPO" show "$COMMIT:a.txt")"
grep -q "answered already: sending the kept reply" "$STATE"/logs/code-refactorer*.log ||
    fail "the executor did not answer the re-ask from its memory"
n=$(grep -c "slowfix committed" "$STATE"/logs/code-refactorer*.log | awk -F: '{s += $NF} END {print s}')
[[ $n == 2 ]] || fail "the fixer committed $n times, want once per plan"
grep -q "the connection to the broker dropped while 'exec.refactor'" "$T/orch.log" ||
    fail "the router did not log its re-ask"

# --- the attempts, truthfully
expect() { # SQL WANT
    local got
    got=$(kz_psql "$1")
    [[ $got == "$2" ]] || fail "$1
  got:  $got
  want: $2"
}
expect "SELECT string_agg(attempt || ':' || status || ':' || replayed, ',' ORDER BY attempt, id)
        FROM executions WHERE plan_id = 'Pslow'" "1:lost:false,2:changed:true"
expect "SELECT commit FROM executions WHERE plan_id = 'Pslow' AND status = 'changed'" "$COMMIT"
expect "SELECT error LIKE 'no reply to attempt 1: the connection to the broker dropped%'
        FROM executions WHERE plan_id = 'Pslow' AND attempt = 1" "t"
expect "SELECT string_agg(attempt || ':' || verdict || ':' || replayed, ',')
        FROM validations WHERE plan_id = 'Pslow'" "1:pass:false"

# --- the queued plan's re-ask ran (the executor never saw the request)
Q=$(git -C "$REPO" rev-parse refs/kaizen/plans/Pqueued) || fail "no refs/kaizen/plans/Pqueued"
[[ $(git -C "$REPO" rev-parse "$Q^") == "$BASE" ]] || fail "Pqueued: not one commit on the base"
[[ $(git -C "$REPO" show "$Q:b.txt") == $'three\nfixed' ]] || fail "Pqueued: b.txt is $(git -C "$REPO" show "$Q:b.txt")"
expect "SELECT string_agg(attempt || ':' || status || ':' || replayed, ',' ORDER BY attempt, id)
        FROM executions WHERE plan_id = 'Pqueued'" "1:lost:false,2:changed:false"
echo "ok"
