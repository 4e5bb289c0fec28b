#!/usr/bin/env bash
# test_up_down.sh - `kaizen up` and `kaizen down` with the embedded
# PostgreSQL cluster: up prints where things live and is idempotent,
# status lists the agents (table and --json), report shows the seed's
# report with the agents' rows, down leaves no process behind, the data
# survives down/up, down cleans up after a kill -9 of the orchestrator,
# and up refuses a bus port taken by another program before starting
# anything; up --foreground stops everything when signalled.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-demo; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
# the embedded cluster runs as user postgres when we are root: it must
# reach $T/state/db
chmod 755 "$T"
cd "$T" || fail "cd $T"
kz_config <<'EOF'
agents:
  - name: demo
    instances: 2
    interval: 1s
EOF
S=$T/state
# whatever happens, nothing of this test outlives it
kz_at_exit "\"$K\" down --timeout 30s"

expect() { # expect RC NAME CMD... : run CMD, output in $T/NAME.out / $T/NAME.err
    local want=$1 name=$2; shift 2
    "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    [[ $rc -eq $want ]] ||
        fail "'$*' exited $rc, want $want: $(cat "$T/$name.out" "$T/$name.err")"
}

# processes whose command line mentions this test's directory (agents,
# broker, orchestrator, the postgres server of $S/db)
leftovers() { pgrep -af -- "$T" | grep -v -e pgrep -e "$0" || true; }

# no process left, no stale pid file (the processes looked for again and
# again: `test -z "$(leftovers)"` would look once)
no_leftovers() { [[ -z $(leftovers) ]]; }
check_clean() {
    local left
    kz_wait_for 60 no_leftovers || { left=$(leftovers); fail "$1: processes left: $left"; }
    compgen -G "$S/run/*.pid" >/dev/null && fail "$1: pid files left: $(ls "$S/run")"
    compgen -G "$T/*.sock" >/dev/null && fail "$1: socket files left: $(ls "$T"/*.sock)"
    return 0
}

# --- up: prints where state, logs and the database live (with a descriptor
# of the caller's open that must not reach the processes up starts)
expect 0 up "$K" up 7>>"$T/fd-marker"
grep -q "kaizen is up: 2 agents" "$T/up.out" || fail "up: no summary: $(cat "$T/up.out")"
grep -q "state .*$S\$" "$T/up.out" || fail "up does not say where the state is"
grep -q "logs .*$S/logs" "$T/up.out" || fail "up does not say where the logs are"
grep -q "database .*embedded cluster in $S/db" "$T/up.out" || fail "up does not say where the database is"
grep -q "kaizen status" "$T/up.out" || fail "up gives no 'kaizen status' hint"
grep -q "kaizen down" "$T/up.out" || fail "up gives no 'kaizen down' hint"
if [[ $(id -u) -eq 0 ]]; then
    grep -q "as user 'postgres'" "$T/up.out" || fail "up as root does not say the database runs as postgres"
fi
pid=$(cat "$S/run/orchestrator.pid") || fail "no orchestrator pid file"
kill -0 "$pid" || fail "orchestrator $pid is not running"
[[ $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]] || fail "the orchestrator does not lead its process group"
for p in $(pgrep -g "$pid"); do
    ls -l "/proc/$p/fd" 2>/dev/null | grep -q fd-marker &&
        fail "process $p ($(cat "/proc/$p/comm")) inherited a descriptor of the caller of up"
done

# --- a second up: already running, exit 0, nothing new started
expect 0 up2 "$K" up
grep -q "kaizen is already running (orchestrator pid $pid, state in $S)" "$T/up2.out" ||
    fail "second up: $(cat "$T/up2.out" "$T/up2.err")"
[[ $(cat "$S/run/orchestrator.pid") == "$pid" ]] || fail "second up replaced the orchestrator"

# --- status: the table lists both demo instances; --json parses
expect 0 status "$K" status
head -1 "$T/status.out" | grep -Eq '^NAME +LAYER +INST +HOST +PID +STATE +UPTIME +RESTARTS +LAST-HB +CYCLES +LAST-CYCLE +MSG/S' ||
    fail "status: no table header: $(cat "$T/status.out")"
[[ $(grep -Ec '^demo +monitoring +[01] ' "$T/status.out") -eq 2 ]] ||
    fail "status does not list 2 demo agents: $(cat "$T/status.out")"
grep -q '^database  *up ' "$T/status.out" || fail "status: no database line: $(cat "$T/status.out")"
grep -q '^spool ' "$T/status.out" || fail "status: no spool line"
grep -q '^sandbox  *on (bubblewrap, user ' "$T/status.out" || fail "status: no sandbox line: $(cat "$T/status.out")"
grep -q '^broker ' "$T/status.out" || fail "status: no broker line"
expect 0 status-json "$K" status --json
/usr/bin/python3 - "$T/status-json.out" <<'PY' || fail "status --json: $(cat "$T/status-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
demos = [a for a in d["agents"] if a["name"] == "demo" and a.get("supervised")]
assert sorted(a["instance"] for a in demos) == [0, 1], demos
assert all(a["state"] in ("idle", "busy") for a in demos), demos
assert d["orchestrator"]["pid"] > 0 and d["database"]["state"] == "up", d
PY

# status --watch redraws until SIGINT, then exits 0
kz_start watch "$K" status --watch 200ms
kz_wait_for 30 sh -c "[ \$(grep -Ec '^demo +monitoring ' '$T/watch.log') -ge 6 ]" ||
    fail "status --watch does not redraw: $(cat "$T/watch.log")"
[[ $(grep -c '^kaizen status ' "$T/watch.log") -ge 3 ]] || fail "status --watch: $(cat "$T/watch.log")"
kill -INT "$PID_watch"
wait "$PID_watch"
rc=$?
[[ $rc -eq 0 ]] || fail "status --watch exited $rc after SIGINT"

# --- report: the seed's header and the demo agents' started rows
report_has_started() {
    "$K" report >"$T/report.out" 2>"$T/report.err" &&
        [[ $(grep -Ec '^  \[[0-9-]+ [0-9:.]+\] demo: started - ok$' "$T/report.out") -ge 2 ]]
}
kz_wait_for 30 report_has_started || fail "report: no demo rows: $(cat "$T/report.out" "$T/report.err")"
sed -n 1,5p "$T/report.out" >"$T/report.head"
printf '%s\n' "============================================================" \
    "AUTONOMOUS IMPROVEMENT SYSTEM - STATUS REPORT" \
    "============================================================" "" \
    "Recent Activity (Last 24 Hours):" | cmp -s - "$T/report.head" ||
    fail "report: not the seed's header: $(cat "$T/report.head")"
grep -q '^Orchestrator: running' "$T/report.out" || fail "report: orchestrator not seen running"
expect 0 report-json "$K" report --json
/usr/bin/python3 - "$T/report-json.out" "$T/first-run.txt" <<'PY' || fail "report --json: $(cat "$T/report-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
rows = [r for r in d["recent_activity"] if r["agent_name"] == "demo" and r["action"] == "started"]
assert len(rows) >= 2, d["recent_activity"]
assert d["by_agent"]["demo"] >= 2 and d["by_layer"]["monitoring"] >= 2, d
assert d["database"]["schema_version"] == d["database"]["schema_expected"] >= 1
# remember the first run's rows
open(sys.argv[2], "w").write("\n".join(r["created_at"] for r in rows) + "\n")
PY

# --- report --html: a self-contained page with the chart
expect 0 report-html "$K" report --html "$T/report.html"
for want in "<!DOCTYPE html>" "AUTONOMOUS IMPROVEMENT SYSTEM - STATUS REPORT" "<svg" "<rect" \
    "<td>demo</td>" "</html>"; do
    grep -qF -- "$want" "$T/report.html" || fail "report --html: no '$want'"
done
grep -q "<script\|<link\|src=" "$T/report.html" && fail "report --html is not self-contained"

# --- down: everything stops, nothing is left
expect 0 down "$K" down
grep -q "kaizen stopped" "$T/down.out" || fail "down: $(cat "$T/down.out" "$T/down.err")"
grep -q "stopping the embedded database" "$T/down.err" || fail "down did not stop the database"
check_clean "after down"
expect 0 down2 "$K" down
grep -q "kaizen is not running" "$T/down2.out" || fail "second down: $(cat "$T/down2.out")"

# --- up again: the first run's rows are still there
expect 0 up3 "$K" up
expect 0 report-json2 "$K" report --json
/usr/bin/python3 - "$T/report-json2.out" "$T/first-run.txt" <<'PY' || fail "data did not survive down/up: $(cat "$T/report-json2.out")"
import json, sys
d = json.load(open(sys.argv[1]))
first = set(open(sys.argv[2]).read().split("\n")) - {""}
now = {r["created_at"] for r in d["recent_activity"] if r["agent_name"] == "demo"}
assert first and first <= now, (first, now)
assert any(r["action"] == "stopped" for r in d["recent_activity"] if r["agent_name"] == "demo")
PY

# --- kill -9 of the orchestrator: its agents and broker live on; down
# still cleans up everything (and the stale pid file)
pid=$(cat "$S/run/orchestrator.pid")
agents=$(pgrep -f -- "kaizen-demo .*$S/logs" | wc -l)
[[ $agents -eq 2 ]] || fail "expected 2 demo processes, found $agents"
kill -9 "$pid"
kz_wait_for 60 sh -c "! kill -0 $pid 2>/dev/null" || fail "orchestrator survived kill -9"
[[ -n $(leftovers) ]] || fail "nothing survived the orchestrator (the test proves nothing)"
expect 0 down3 "$K" down
grep -q "leftover process" "$T/down3.err" || fail "down after a crash: $(cat "$T/down3.err")"
check_clean "after kill -9 and down"
[[ -e $S/run/orchestrator.pid ]] && fail "stale orchestrator.pid left"

# --- up --foreground: attached; SIGTERM to it stops everything, the
# database included, and it exits 0
kz_start fg "$K" up --foreground
kz_wait_log fg "kaizen is up: 2 agents" 60 || fail "up --foreground did not come up"
grep -q "running in the foreground" "$T/fg.log" || fail "up --foreground: $(cat "$T/fg.log")"
"$K" status >/dev/null 2>&1 || fail "status after up --foreground"
kill -TERM "$PID_fg"
wait "$PID_fg"
rc=$?
[[ $rc -eq 0 ]] || fail "up --foreground exited $rc after SIGTERM: $(cat "$T/fg.log")"
grep -q "stopping the embedded database" "$T/fg.log" || fail "up --foreground left the database: $(cat "$T/fg.log")"
check_clean "after up --foreground"

# --- a bus port taken by another program: up refuses, starts nothing
port=$(kz_port)
kz_start holder /usr/bin/python3 -c "
import socket, time
s = socket.socket()
s.bind(('127.0.0.1', $port))
s.listen()
print('listening', flush=True)
time.sleep(300)"
kz_wait_log holder listening 10 || fail "the port holder did not start"
sed -e "s|^state_dir: .*|state_dir: $T/state2|" -e "s|pub: .*|pub: tcp://127.0.0.1:$port|" \
    "$T/kaizen.yaml" >"$T/taken.yaml"
expect 1 taken "$K" -c "$T/taken.yaml" up
grep -q "port $port (bus.endpoints.pub) is in use by another program" "$T/taken.err" ||
    fail "up with a taken port: $(cat "$T/taken.out" "$T/taken.err")"
[[ -e $T/state2/run/orchestrator.pid || -e $T/state2/db ]] && fail "up started something: $(ls -R "$T/state2")"
pgrep -af -- "$T/state2" | grep -v pgrep && fail "up with a taken port left processes"
# --- an ipc:// socket someone else listens on (backlog full, so a blocking
# probe would hang): refused at once, nothing started
kz_start sockholder /usr/bin/python3 -c "
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind('$T/held.sock')
s.listen(0)
fillers = []
for _ in range(4):
    c = socket.socket(socket.AF_UNIX)
    c.setblocking(False)
    try:
        c.connect('$T/held.sock')
    except OSError:
        pass
    fillers.append(c)
print('listening', flush=True)
time.sleep(300)"
kz_wait_log sockholder listening 10 || fail "the socket holder did not start"
sed -e "s|^state_dir: .*|state_dir: $T/state3|" -e "s|tap: .*|tap: ipc://$T/held.sock|" \
    "$T/kaizen.yaml" >"$T/heldsock.yaml"
expect 1 heldsock timeout 60 "$K" -c "$T/heldsock.yaml" up
grep -q "socket $T/held.sock (bus.endpoints.tap) is in use by another program" "$T/heldsock.err" ||
    fail "up with a taken ipc socket: $(cat "$T/heldsock.out" "$T/heldsock.err")"
[[ -e $T/state3/run/orchestrator.pid || -e $T/state3/db ]] && fail "up started something: $(ls -R "$T/state3")"
kill "$PID_sockholder" 2>/dev/null
wait "$PID_sockholder" 2>/dev/null
rm -f "$T/held.sock"
# sanitizer builds: the daemons' reports land in their log files
bad=$(grep -l -E "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:" "$S"/logs/*.log* 2>/dev/null | grep -v postgres || true)
[[ -z $bad ]] || fail "sanitizer reports in: $bad: $(grep -h -A5 -E 'Sanitizer|runtime error:' -- "${bad%%$'\n'*}" | head -40)"
# --- the orchestrator exits during start-up (its broker cannot bind): up
# quotes its log, stops what it started (the database) and exits 1
sed "s|router: .*|router: ipc://$T/no-such-dir/router.sock|" "$T/kaizen.yaml" >"$T/nobind.yaml"
expect 1 nobind "$K" -c "$T/nobind.yaml" up
grep -q "kaizen-orchestrator exited during start-up" "$T/nobind.err" || fail "up: $(cat "$T/nobind.err")"
grep -q "unable to bind 'ipc://$T/no-such-dir/router.sock'" "$T/nobind.err" ||
    fail "up does not quote the orchestrator's log: $(cat "$T/nobind.err")"
check_clean "after a failed up"
echo "ok"
