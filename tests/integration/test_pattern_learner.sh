#!/usr/bin/env bash
# test_pattern_learner: kaizen-pattern-learner on a real broker,
# orchestrator (whose recorder stores plans and learned patterns) and
# PostgreSQL. Plans are published as the planner would (plan.proposed;
# not plan.ready, which the orchestrator's router would act on), their
# outcomes as the router or a person would:
#   P1 (rules E501, W291, E501) accepted -> both patterns 1 success, rate 2/3
#   P2 (E501) rejected by a person -> E501: 1 success 1 failure, rate 1/2
#   P3 (E501, no language: from its file) failed, cause fixer -> 1 / 2, rate 2/5
#   P3b, P3c, P3d failed for the machinery's causes (nothing to do, a test
#   suite that cannot run at the base, a timeout), P3e rejected after
#   "nothing to do" by an old router (cause unknown to the learner)
#                                           -> not counted: learn.update
#                                              outcome "ignored", rate unchanged
#   P1 accepted again (a second message)    -> not counted twice
#   the learner restarted (memory lost), P2 rejected again -> not counted
#   P4 of a target not in the config        -> nothing learned
#   plan.proposed / plan.state               -> ignored
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"

K=$KZ_BIN/kaizen
mkdir -p "$T/repo1" "$T/repo2"
kz_config <<EOF
supervisor:
  broker: false
database:
  flush_interval: 50ms
targets:
  - name: repo1
    path: $T/repo1
    languages: [python]
  - name: repo2
    path: $T/repo2
    languages: [python]
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

expect() {
    local got
    got=$(kz_psql "$1" 2>&1)
    [[ $got == "$2" ]] || fail "$1
  got:  $got
  want: $2"
}

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"

pub() { "$K" publish "$@" >/dev/null || fail "kaizen publish $1 failed"; }

# start_learner N: start it (log learner-N) and wait until it has joined
# its group: it reacts to a probe (an invalid plan id, logged and ignored)
probe() {
    "$K" publish plan.failed '{"plan_id":"probe!","state":"x","reason":"probe"}' >/dev/null 2>&1
    grep -q "invalid plan_id" "$T/$1.log"
}
start_learner() {
    kz_start "learner$1" "$KZ_BIN/kaizen-pattern-learner"
    kz_wait_log "learner$1" "started" || fail "kaizen-pattern-learner did not start"
    kz_wait_for 60 probe "learner$1" || fail "kaizen-pattern-learner never got a plan outcome"
}
start_learner 1

plan() { # plan ID RULES-JSON [LANGUAGE-FIELD]
    printf '{"plan_id":"%s","fixer":"black","files":["pkg/a.py"],"findings":["fp%s"],"impact":2,"effort":1,"risk":0.1,"rank":1,"tool":"flake8","rules":%s%s}' \
        "$1" "$1" "$2" "${3:-}"
}
stored() { [[ $(kz_psql "SELECT count(*) FROM improvement_suggestions WHERE plan_id = '$1'") == 1 ]]; }
row() { kz_psql "SELECT successes || '/' || failures || ' ' || round(success_rate::numeric, 4) || ' ' || usage_count FROM learned_patterns WHERE pattern = '$1'"; }
is() { [[ $(row "$1") == "$2" ]]; }

E501='black|E501|python|repo1'
W291='black|W291|python|repo1'

pub plan.proposed "$(plan P1 '["E501","W291","E501"]' ',"language":"python"')" --target repo1 --corr P1
kz_wait_for 30 stored P1 || fail "P1 not stored"
pub plan.state '{"plan_id":"P1","state":"executing"}' --target repo1 --corr P1
pub plan.accepted '{"plan_id":"P1","commit":"abc1234","branch":"kaizen/plan-P1"}' --target repo1 --corr P1
kz_wait_for 30 is "$E501" "1/0 0.6667 1" || fail "E501 after P1: $(row "$E501")"
kz_wait_for 30 is "$W291" "1/0 0.6667 1" || fail "W291 after P1: $(row "$W291")"

# rejected by a person while awaiting approval: a failure
pub plan.proposed "$(plan P2 '["E501"]' ',"language":"python"')" --target repo1 --corr P2
pub plan.rejected '{"plan_id":"P2","by":"alice","reason":"not now"}' --target repo1 --corr P2
kz_wait_for 30 is "$E501" "1/1 0.5000 2" || fail "E501 after P2: $(row "$E501")"

# no language in the plan: from its file; the outcome without a target
pub plan.proposed "$(plan P3 '["E501"]')" --target repo1 --corr P3
pub plan.failed '{"plan_id":"P3","state":"executing","reason":"fixer black was killed by signal 11","cause":"fixer"}' --corr P3
kz_wait_for 30 is "$E501" "1/2 0.4000 3" || fail "E501 after P3: $(row "$E501")"
expect "SELECT pattern_type, pattern_data->>'plan_id', pattern_data->>'outcome', last_used_at IS NOT NULL FROM learned_patterns WHERE pattern = '$E501'" \
    "black|P3|failure|t"

# the machinery's failures move no rate: each still gets its learn.update,
# outcome ignored with the cause, and the stored row stays as it was
ignored() { [[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'learn.update' AND body->>'plan_id' = '$1' AND body->>'outcome' = 'ignored' AND body->>'cause' = '$2' AND body->>'success' = '1' AND body->>'failure' = '2'") == 1 ]]; }
for c in "P3b nothing_to_do executing" "P3c suite validating" "P3d timeout validating" "P3e no_executor executing"; do
    read -r id cause state <<<"$c"
    pub plan.proposed "$(plan "$id" '["E501"]' ',"language":"python"')" --target repo1 --corr "$id"
    kz_wait_for 30 stored "$id" || fail "$id not stored"
    pub plan.failed "{\"plan_id\":\"$id\",\"state\":\"$state\",\"reason\":\"machinery\",\"cause\":\"$cause\"}" --target repo1 --corr "$id"
    kz_wait_for 30 ignored "$id" "$cause" || fail "$id ($cause) was not published as ignored"
done
kz_wait_log learner1 "plan 'P3e' not counted for pattern '$E501' (cause no_executor" ||
    fail "P3e was not logged as not counted"
# a plan.rejected whose cause is not about the fixer is not counted either
pub plan.proposed "$(plan P3f '["E501"]' ',"language":"python"')" --target repo1 --corr P3f
kz_wait_for 30 stored P3f || fail "P3f not stored"
pub plan.rejected '{"plan_id":"P3f","state":"executed","reason":"nothing to do","cause":"nothing_to_do"}' --target repo1 --corr P3f
kz_wait_for 30 ignored P3f nothing_to_do || fail "P3f was counted"
is "$E501" "1/2 0.4000 3" || fail "the machinery's failures moved E501: $(row "$E501")"
expect "SELECT pattern_data->>'plan_id' FROM learned_patterns WHERE pattern = '$E501'" "P3"

# the same outcome again: not counted twice
pub plan.accepted '{"plan_id":"P1","commit":"abc1234","branch":"kaizen/plan-P1"}' --target repo1 --corr P1
kz_wait_log learner1 "plan 'P1' already counted for pattern '$E501'" ||
    fail "the repeated P1 outcome was not recognised"

# a target not in the config: nothing learned
pub plan.proposed "$(plan P4 '["E501"]' ',"language":"python"')" --target other --corr P4
pub plan.accepted '{"plan_id":"P4","commit":"abc1234","branch":"kaizen/plan-P4"}' --target other --corr P4
kz_wait_log learner1 "unable to learn from plan 'P4' (plan.accepted, target 'other'): its target is not in the config" ||
    fail "P4 of an unknown target was not refused"

# a restarted learner remembers nothing, the database does
kill -TERM "$PID_learner1"
wait "$PID_learner1" || fail "kaizen-pattern-learner exited with $?"
start_learner 2
pub plan.rejected '{"plan_id":"P2","by":"alice","reason":"not now"}' --target repo1 --corr P2
kz_wait_log learner2 "plan 'P2' already counted for pattern '$E501'" ||
    fail "the restarted learner counted P2 again"
# and it goes on from the stored counts
pub plan.proposed "$(plan P5 '["W291"]' ',"language":"python"')" --target repo1 --corr P5
pub plan.accepted '{"plan_id":"P5","commit":"abc1234","branch":"kaizen/plan-P5"}' --target repo1 --corr P5
kz_wait_for 30 is "$W291" "2/0 0.7500 2" || fail "W291 after P5: $(row "$W291")"

expect "SELECT count(*) FROM learned_patterns" "2"
expect "SELECT count(*) FROM events WHERE type = 'learn.update'" "10"
expect "SELECT string_agg(body->>'plan_id' || ':' || (body->>'outcome'), ' ' ORDER BY seq) FROM events WHERE type = 'learn.update' AND body->>'pattern' = '$E501'" \
    "P1:success P2:failure P3:failure P3b:ignored P3c:ignored P3d:ignored P3e:ignored P3f:ignored"

# two targets at once: each plan's pattern names its own target (the
# stored row's, whatever the outcome's envelope says)
pub plan.proposed "$(plan P6 '["E501"]' ',"language":"python"')" --target repo2 --corr P6
pub plan.proposed "$(plan P7 '["E501"]' ',"language":"python"')" --target repo1 --corr P7
kz_wait_for 30 stored P6 || fail "P6 not stored"
kz_wait_for 30 stored P7 || fail "P7 not stored"
pub plan.accepted '{"plan_id":"P6","commit":"abc1234","branch":"kaizen/plan-P6"}' --target repo1 --corr P6
pub plan.failed '{"plan_id":"P7","state":"executing","reason":"test","cause":"fixer"}' --target repo2 --corr P7
kz_wait_for 30 is 'black|E501|python|repo2' "1/0 0.6667 1" ||
    fail "E501 of repo2 after P6: $(row 'black|E501|python|repo2')"
kz_wait_for 30 is "$E501" "1/3 0.3333 4" || fail "E501 of repo1 after P7: $(row "$E501")"

# a stored row with negative counts (the bus refuses them, but the table
# is not only written by the recorder) is taken as 0 / 0: else the rate
# (s + 1) / (s + f + 2) divides by zero
E999='black|E999|python|repo1'
kz_psql "INSERT INTO learned_patterns (pattern_type, pattern, successes, failures, success_rate)
    VALUES ('black', '$E999', -1, -2, 0.5)" >/dev/null || fail "insert the negative counts"
pub plan.proposed "$(plan P8 '["E999"]' ',"language":"python"')" --target repo1 --corr P8
kz_wait_for 30 stored P8 || fail "P8 not stored"
pub plan.rejected '{"plan_id":"P8","reason":"no"}' --target repo1 --corr P8
kz_wait_for 30 is "$E999" "0/1 0.3333 1" || fail "E999 after P8: $(row "$E999")"

kill -TERM "$PID_learner2"
wait "$PID_learner2" || fail "kaizen-pattern-learner exited with $?"
echo "ok"
