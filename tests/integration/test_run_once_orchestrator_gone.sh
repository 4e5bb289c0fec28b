#!/usr/bin/env bash
# test_run_once_orchestrator_gone.sh - run-once notices an orchestrator it
# cannot look at as a process (another host's, here one started with
# --host elsewhere) is gone: no heartbeat for 20 s and no kaizen.status
# reply. It then says so and exits 4, well before its --timeout (issue
# 12, item 2: it used to wait out its 30-minute timeout). The same for an
# orchestrator that stops cleanly: its agent.bye ends run-once at once.
# (test_orchestrator_crash covers the local case: a process that died.)
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
kz_python json || skip "no python3"

K=$KZ_BIN/kaizen
REPO=$T/repo
mkdir -p "$REPO"
echo 'x = 1' >"$REPO/a.py"
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m init
kz_config <<EOF
supervisor:
  stop_timeout: 2s
targets:
  - name: repo
    path: $REPO
    branch: main
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

ended() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
start_orch() { # NAME: an orchestrator of "host" elsewhere (it starts the broker)
    kz_start "$1" "$KZ_BIN/kaizen-orchestrator" --host elsewhere
    kz_wait_for 60 kz_status 'b["orchestrator"]["host"] == "elsewhere"' || fail "$1 does not answer"
}
watch() { # NAME: run-once in the background, once it watches
    kz_start "$1" timeout 600 "$K" run-once --timeout 20m
    kz_wait_log "$1" "asked kaizen-code-health for a scan" 120 || fail "$1 did not start watching"
}

# --- kill -9: no heartbeat, no status reply
start_orch orch1
watch ro1
kill -9 "$PID_orch1"
killed_at=$SECONDS
kz_wait_for 120 ended "$PID_ro1" || fail "run-once did not notice within 120s: $(cat "$T/ro1.log")"
took=$((SECONDS - killed_at))
wait "$PID_ro1"
rc=$?
[[ $rc -eq 4 ]] || fail "run-once exited $rc, want 4: $(cat "$T/ro1.log")"
((took >= 15)) || fail "run-once gave up after ${took}s: sooner than the 20s it should wait"
grep -q "the orchestrator (pid $PID_orch1) stopped answering (no heartbeat for " "$T/ro1.log" ||
    fail "run-once does not say the orchestrator stopped answering: $(cat "$T/ro1.log")"
grep -q "run \`kaizen up\` to recover" "$T/ro1.log" || fail "no hint: $(cat "$T/ro1.log")"
grep -q "THE ORCHESTRATOR IS GONE" "$T/ro1.log" || fail "no summary: $(cat "$T/ro1.log")"

# --- a clean stop: agent.bye ends it at once. The killed orchestrator's
# broker still runs (ipc sockets taken): the next one uses it as it is
# (supervisor.broker off for this start)
sed 's/^supervisor:$/supervisor:\n  broker: false/' "$T/kaizen.yaml" >"$T/nobroker.yaml"
export KAIZEN_CONFIG=$T/nobroker.yaml
start_orch orch2
watch ro2
kill -TERM "$PID_orch2"
kz_wait_for 60 ended "$PID_ro2" || fail "run-once did not notice the orchestrator stopped: $(cat "$T/ro2.log")"
wait "$PID_ro2"
rc=$?
[[ $rc -eq 4 ]] || fail "run-once exited $rc after a clean stop, want 4: $(cat "$T/ro2.log")"
grep -q "the orchestrator (pid $PID_orch2) stopped (agent.bye: signal)" "$T/ro2.log" ||
    fail "run-once does not say the orchestrator stopped: $(cat "$T/ro2.log")"
echo "PASS: test_run_once_orchestrator_gone"
