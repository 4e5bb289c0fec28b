#!/usr/bin/env bash
# test_orchestrator_crash.sh - kill -9 of the orchestrator mid-plan, then
# `kaizen up`: nothing published meanwhile is lost (issue 12, item 2).
#
# kaizen up (embedded PostgreSQL, two demo agents, one target whose
# fixers' executor service has no worker: a plan stays "executing" as long
# as we like) with `kaizen monitor --json` capturing every event the
# broker routes, and `kaizen run-once` watching. The orchestrator - only
# it - is killed with SIGKILL while plan Plong executes. Then:
#  - run-once says within a bounded time (well under its --timeout) that
#    the orchestrator died, names the plan it left executing, tells the
#    user to run `kaizen up`, and exits 4;
#  - `kaizen status` says the orchestrator is gone and the broker runs;
#  - while no orchestrator runs, 100 events and two plans (one awaiting
#    approval, one with an unknown fixer) are published; the demo agents
#    keep publishing too;
#  - `kaizen up` adopts the broker of the previous run (same pid, "adopted"
#    in the status) instead of killing it with its queue, and stops the
#    old agents;
#  - every event id the monitor saw up to then, and every id `kaizen
#    publish` printed, is in `events`; the two plans published meanwhile
#    get their rows and reach their final state (awaiting_approval,
#    failed), and Plong is failed "interrupted: the orchestrator
#    restarted";
#  - `kaizen up` with the router endpoint moved (the broker does not answer
#    there) refuses to start and leaves the broker and agents running;
#  - the adopted broker killed: the orchestrator starts its own (a restart);
#  - `kaizen down` then stops everything: nothing is left.
# On the code before this test, `kaizen up` killed the broker ("stopping
# N leftover processes"): the events and plans published meanwhile were
# lost, and run-once waited out its timeout.
# kz-timeout: 600
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-demo; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
kz_python json || skip "no python3"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

# a small real repository: the target, never to be touched
REPO=$T/repo
mkdir -p "$REPO/pkg"
printf 'def f( x ):\n    return x\n' >"$REPO/pkg/a.py"
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m init
BASE=$(git -C "$REPO" rev-parse HEAD)

kz_config <<EOF
supervisor:
  stop_timeout: 2s
database:
  flush_interval: 50ms
agents:
  - name: demo
    instances: 2
    interval: 500ms
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
    service: exec.nobody
    risk: 0.1
  - name: black-risky
    tool: black
    argv: [/usr/bin/python3, -m, black, --quiet, --, "{files}"]
    service: exec.nobody
    risk: 0.9
policy:
  require_approval: 0.8
  max_concurrent: 2
  exec_timeout: 10m
  retries: 0
EOF
S=$T/state
kz_at_exit "\"$K\" down --timeout 30s"

expect() { # expect RC NAME CMD... : output in $T/NAME.out, $T/NAME.err
    local want=$1 name=$2; shift 2
    timeout 300 "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/$name.out" "$T/$name.err")"
}
plan() { # ID FIXER [RISK]: a plan body
    printf '{"plan_id":"%s","fixer":"%s","files":["pkg/a.py"],"findings":["fp%s"],"impact":2,"effort":1,"risk":%s,"base_commit":"%s","tool":"black"}' \
        "$1" "$2" "$1" "${3:-0.1}" "$BASE"
}
ready() { "$K" publish plan.ready "$1" --target repo >/dev/null || fail "kaizen publish plan.ready $1 failed"; }
status_is() { [[ $(kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'") == "$2" ]]; }
wait_status() { # ID STATUS [SECONDS]
    kz_wait_for "${3:-60}" status_is "$1" "$2" ||
        fail "plan $1: status '$(kz_psql "SELECT status FROM improvement_suggestions WHERE plan_id = '$1'")', want $2"
}
broker_pid() { # the broker's pid in kaizen.status (and whether it is adopted)
    "$K" status --json >"$T/st.json" 2>/dev/null || return 1
    "$PY" - "$T/st.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
b = [a for a in d["agents"] if a["name"] == "broker" and a.get("supervised")][0]
print(b["pid"], "adopted" if b.get("adopted") else "own")
sys.exit(0 if b.get("pid") and b.get("state") != "failed" else 1)
PY
}

# --- up, a monitor on the tap, a plan executing (nobody serves exec.nobody)
expect 0 up1 "$K" up
read -r BROKER how < <(broker_pid) || fail "no broker in the status: $(cat "$T/st.json")"
[[ $how == own ]] || fail "the first broker is not the orchestrator's own: $how"
ORCH=$(cat "$S/run/orchestrator.pid") || fail "no orchestrator pid file"
kz_start mon "$K" monitor --json --path event
kz_wait_for 30 grep -q '"name":"agent.heartbeat"' "$T/mon.log" || fail "the monitor sees nothing"

# run-once watches (no code-health here: it waits for a scan that never
# comes, long enough for the kill below)
kz_start ro timeout 600 "$K" run-once --timeout 20m
kz_wait_log ro "asked kaizen-code-health for a scan" 120 || fail "run-once did not start watching"

ready "$(plan Plong black)"
wait_status Plong executing
# (run-once got it too: the same events, from the same broker)
executing_on_bus() { grep '"name":"plan.state"' "$T/mon.log" | grep '"plan_id":"Plong"' | grep -q '"state":"executing"'; }
kz_wait_for 30 executing_on_bus || fail "no plan.state executing of Plong on the bus"

# --- kill -9 of the orchestrator alone
ended() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
kill -9 "$ORCH"
killed_at=$SECONDS
kz_wait_for 60 ended "$ORCH" ||
    fail "the orchestrator survived kill -9"
kill -0 "$BROKER" || fail "the broker died with the orchestrator"
[[ $(pgrep -f -- "kaizen-demo .*$S/logs" | wc -l) -eq 2 ]] || fail "the demo agents died with the orchestrator"

# while it is down: events and plans, into the broker's queues
"$K" publish agent.run '{"agent":"nobody-while-down"}' --count 100 >"$T/pub.ids" ||
    fail "kaizen publish while the orchestrator is down failed"
[[ $(wc -l <"$T/pub.ids") -eq 100 ]] || fail "kaizen publish printed $(wc -l <"$T/pub.ids") ids, want 100"
ready "$(plan Pwait black-risky 0.9)"
ready "$(plan Pbad nosuch)"

# run-once notices, well under its timeout, and says what to do
kz_wait_for 90 ended "$PID_ro" ||
    fail "run-once did not notice within 90s that the orchestrator died: $(cat "$T/ro.log")"
took=$((SECONDS - killed_at))
wait "$PID_ro"
ro_rc=$?
[[ $ro_rc -eq 4 ]] || fail "run-once exited $ro_rc after the orchestrator died, want 4: $(cat "$T/ro.log")"
((took <= 90)) || fail "run-once took ${took}s to notice the orchestrator died"
grep -q "the orchestrator (pid $ORCH) died" "$T/ro.log" || fail "run-once does not say the orchestrator died: $(cat "$T/ro.log")"
grep -q "kaizen up" "$T/ro.log" || fail "run-once does not say to run kaizen up: $(cat "$T/ro.log")"
grep -q "Plong executing" "$T/ro.log" || fail "run-once does not name the plan left executing: $(cat "$T/ro.log")"

# status: the orchestrator is gone, the broker runs
expect 1 status-gone "$K" status --timeout 2s
grep -q "the orchestrator (pid $ORCH) is gone" "$T/status-gone.err" ||
    fail "status after the crash: $(cat "$T/status-gone.err")"
grep -q "broker (pid $BROKER) still runs" "$T/status-gone.err" ||
    fail "status does not name the broker: $(cat "$T/status-gone.err")"

# the demo agents keep publishing into the queue meanwhile
n_before=$(grep -c '"name":"agent.heartbeat"' "$T/mon.log")
kz_wait_for 30 sh -c "[ \$(grep -c '\"name\":\"agent.heartbeat\"' '$T/mon.log') -ge $((n_before + 4)) ]" ||
    fail "the demo agents published nothing while the orchestrator was down"

# --- up with the router endpoint moved: the broker does not answer there;
# it may hold events, so it is not killed and nothing starts
sed "s|router: $KZ_ROUTER|router: ipc://$T/moved.sock|" "$T/kaizen.yaml" >"$T/moved.yaml"
expect 1 up-moved "$K" -c "$T/moved.yaml" up
grep -q "the broker of the previous run (pid $BROKER) does not answer" "$T/up-moved.err" ||
    fail "up with moved endpoints: $(cat "$T/up-moved.err")"
grep -q "left running and nothing was started" "$T/up-moved.err" || fail "up-moved: $(cat "$T/up-moved.err")"
kill -0 "$BROKER" || fail "up with moved endpoints killed the broker"
[[ $(pgrep -f -- "kaizen-demo .*$S/logs" | wc -l) -eq 2 ]] || fail "up with moved endpoints stopped the agents"
[[ -e $S/run/orchestrator.pid ]] && pgrep -f -- "kaizen-orchestrator .*$S/logs" >/dev/null &&
    fail "up with moved endpoints started an orchestrator"

# --- kaizen up again: the broker is adopted with its queue
expect 0 up2 "$K" up
grep -q "adopting the broker of the previous run (pid $BROKER)" "$T/up2.err" ||
    fail "up did not adopt the broker: $(cat "$T/up2.err")"
read -r b2 how < <(broker_pid) || fail "no broker in the status after up: $(cat "$T/st.json")"
[[ $b2 == "$BROKER" && $how == adopted ]] || fail "broker after up: pid $b2 ($how), want $BROKER adopted"
kill -0 "$BROKER" || fail "the adopted broker is gone"
[[ $(pgrep -f -- "kaizen-demo .*$S/logs" | wc -l) -eq 2 ]] || fail "not 2 demo agents after up"

# the plans published meanwhile get rows and reach their final state; the
# one that was executing is failed (interrupted) and rolled back
wait_status Pwait awaiting_approval
wait_status Pbad failed
wait_status Plong failed
kz_psql "SELECT body->>'reason' FROM events WHERE type = 'plan.failed' AND body->>'plan_id' = 'Plong'" |
    grep -q "interrupted: the orchestrator restarted" || fail "Plong: $(kz_psql "SELECT body FROM events WHERE body->>'plan_id' = 'Plong'")"

# every event seen on the tap up to now, and every id kaizen publish
# printed, is stored (once: id is the primary key)
cp "$T/mon.log" "$T/mon.snap"
"$PY" - "$T/mon.snap" "$T/pub.ids" >"$T/want.ids" <<'PY' || fail "unable to read the monitor's capture"
import json, sys
ids = set()
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue  # the last line may be cut short
    if d.get("path") == "event" and isinstance(d.get("msg"), dict) and d["msg"].get("id"):
        ids.add(d["msg"]["id"])
ids.update(l.strip() for l in open(sys.argv[2]) if l.strip())
print("\n".join(sorted(ids)))
PY
[[ $(wc -l <"$T/want.ids") -ge 150 ]] || fail "the capture holds only $(wc -l <"$T/want.ids") events"
missing() {
    kz_psql "SELECT id FROM events" | LC_ALL=C sort >"$T/got.ids"
    LC_ALL=C sort "$T/want.ids" | LC_ALL=C comm -23 - "$T/got.ids" >"$T/missing.ids"
    [[ ! -s $T/missing.ids ]]
}
kz_wait_for 90 missing ||
    fail "$(wc -l <"$T/missing.ids") of $(wc -l <"$T/want.ids") events seen on the bus are not in events (e.g. $(head -3 "$T/missing.ids" | tr '\n' ' '))"

# --- the adopted broker dies: the orchestrator starts its own
kill -9 "$BROKER"
new_broker() { read -r b3 how < <(broker_pid) && [[ $b3 != "$BROKER" && $how == own ]]; }
kz_wait_for 60 new_broker || fail "no new broker after the adopted one died: $(cat "$T/st.json")"
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); b=[a for a in d["agents"] if a["name"]=="broker"][0]; sys.exit(0 if b["restarts"]==1 and "adopted" in b.get("last_exit","") else 1)' "$T/st.json" ||
    fail "the adopted broker's death is not a restart: $(cat "$T/st.json")"
BROKER=$b3

# --- down stops everything
expect 0 down "$K" down --timeout 60s
kz_wait_for 30 ended "$BROKER" || fail "the broker outlived kaizen down"
leftovers() { pgrep -af -- "$S" | grep -v -e pgrep -e "$0" || true; }
no_leftovers() { [[ -z $(leftovers) ]]; }
kz_wait_for 60 no_leftovers || fail "processes left: $(leftovers)"
echo "PASS: test_orchestrator_crash"
