#!/usr/bin/env bash
# test_db_embedded: the embedded PostgreSQL cluster under the state
# directory: `kaizen db start` creates it (initdb) and starts it on a unix
# socket only, `db status` tells, `db migrate` applies the compiled-in
# migrations once, the seed's report query runs unchanged, the data
# survives stop/start and a kill -9 of the postmaster, and nothing is left
# running at the end. As root the server runs as user postgres, and the
# same cycle is run again as an ordinary user (nobody).
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"

K=$KZ_BIN/kaizen
kz_config
STATE=$T/state
DATA=$STATE/db/data
SOCK=$STATE/db/run

# pids of the processes of the cluster in DIR (their command line names it)
cluster_pids() { pgrep -f -- "$1" || true; }
# true once no process of the cluster in DIR is left (for kz_wait_for,
# which runs it again and again: `test -z "$(cluster_pids ...)"` would
# look once)
cluster_gone() { [[ -z $(cluster_pids "$1") ]]; }
# last resort at exit: kill this test's clusters' processes by pid
kill_leftovers() {
    local p
    for p in $(pgrep -f -- "$T/" || true); do kill -KILL "$p" 2>/dev/null; done
}
kz_at_exit kill_leftovers

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -U kaizen -d kaizen -c "$1"; }

# --- unreachable before it exists: a clear message, exit 1
"$K" db migrate >"$T/early.out" 2>"$T/early.err" && fail "db migrate without a database succeeded"
grep -q "database unreachable (embedded cluster in $STATE/db)" "$T/early.err" ||
    fail "no 'database unreachable' message: $(cat "$T/early.err")"
grep -q "kaizen db start" "$T/early.err" || fail "no hint to start it: $(cat "$T/early.err")"

# --- first start: initdb and start
kz_db_start
grep -q "started the embedded PostgreSQL" "$T/db-start.log" || fail "db start: $(cat "$T/db-start.log")"
grep -q "creating the embedded PostgreSQL cluster" "$T/db-start.log" || fail "no initdb message"
if [[ $(id -u) -eq 0 ]]; then
    grep -q "as user 'postgres' (PostgreSQL refuses to run as root)" "$T/db-start.log" ||
        fail "no message about running as postgres: $(cat "$T/db-start.log")"
    [[ $(stat -c %U "$DATA") == postgres ]] || fail "data directory not owned by postgres"
fi
[[ -S $SOCK/.s.PGSQL.5432 ]] || fail "no socket in $SOCK"
[[ $(stat -c %a "$SOCK") == 700 ]] || fail "socket directory mode is $(stat -c %a "$SOCK"), not 700"
[[ $(q "SHOW listen_addresses") == "" ]] || fail "the cluster listens on TCP"
[[ $(q "SHOW TimeZone") == UTC ]] || fail "server time zone is not UTC"

# idempotent
"$K" db start >"$T/start2.out" 2>&1 || fail "second db start failed: $(cat "$T/start2.out")"
grep -q "already running" "$T/start2.out" || fail "second start: $(cat "$T/start2.out")"
[[ $(cluster_pids "$DATA" | wc -l) -ge 1 ]] || fail "no server process for $DATA"

# --- status before migrating
"$K" db status >"$T/status.out" 2>&1 || fail "db status failed: $(cat "$T/status.out")"
grep -Eq '^running +yes$' "$T/status.out" || fail "status does not say running: $(cat "$T/status.out")"
grep -Eq '^reachable +yes$' "$T/status.out" || fail "status not reachable: $(cat "$T/status.out")"
"$K" db status --json >"$T/status.json" || fail "db status --json failed"
/usr/bin/python3 - "$T/status.json" <<'PY' || fail "status --json: $(cat "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["embedded"] is True, d
assert d["cluster"]["running"] is True and d["cluster"]["exists"] is True, d
assert d["reachable"] is True and d["error"] is None, d
assert d["schema_version"] == 0, d
assert "0001_init.sql" in d["pending"], d
PY

# --- migrate: everything once, then nothing
"$K" db migrate >"$T/m1.out" 2>&1 || fail "db migrate failed: $(cat "$T/m1.out")"
files=("$KZ_ROOT"/db/migrations/*.sql)
n_files=${#files[@]}
latest=$(printf '%s\n' "${files[@]##*/}" | sed 's|_.*||' | sort -n | tail -1 | sed 's/^0*//')
grep -q "^applied $n_files migrations\?, schema version $latest$" "$T/m1.out" ||
    fail "first migrate: $(cat "$T/m1.out")"
"$K" db migrate >"$T/m2.out" 2>&1 || fail "second db migrate failed: $(cat "$T/m2.out")"
grep -q "^schema is up to date (version $latest)$" "$T/m2.out" || fail "second migrate: $(cat "$T/m2.out")"

expected=$(printf '%s\n' "${files[@]##*/}" | sort)
got=$(q "SELECT name FROM schema_migrations ORDER BY version")
[[ "$got" == "$expected" ]] || fail "schema_migrations holds '$got', expected '$expected'"
[[ $(q "SELECT count(*) FROM schema_migrations WHERE checksum ~ '^[0-9a-f]{16}\$'") == "$n_files" ]] ||
    fail "schema_migrations rows without a checksum"
for t in events agents scans findings metrics autonomous_agent_logs improvement_suggestions \
    code_quality_snapshots learned_patterns schema_migrations; do
    [[ $(q "SELECT to_regclass('public.$t') IS NOT NULL") == t ]] || fail "table $t is missing"
done
"$K" db status --json >"$T/status2.json" || fail "db status --json failed after migrate"
/usr/bin/python3 - "$T/status2.json" "$latest" <<'PY' || fail "status --json: $(cat "$T/status2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema_version"] == int(sys.argv[2]) and d["pending"] == [], d
PY

# --- the seed's report query, verbatim, over a row written with psql
q "INSERT INTO autonomous_agent_logs (agent_name, layer, action, status, details)
   VALUES ('test-agent', 'monitoring', 'scan', 'completed', '{\"files\": 3}')" ||
    fail "insert into autonomous_agent_logs failed"
q "INSERT INTO autonomous_agent_logs (agent_name, layer, action, status, created_at)
   VALUES ('old-agent', 'monitoring', 'scan', 'completed', NOW() - INTERVAL '2 days')" ||
    fail "insert of an old row failed"
report="SELECT agent_name, action, status, created_at FROM autonomous_agent_logs WHERE created_at > NOW() - INTERVAL '24 hours' ORDER BY created_at DESC LIMIT 20"
q "$report" >"$T/report.out" || fail "the seed's report query failed"
[[ $(wc -l <"$T/report.out") -eq 1 ]] || fail "report query returned: $(cat "$T/report.out")"
grep -q '^test-agent|scan|completed|20' "$T/report.out" || fail "report query returned: $(cat "$T/report.out")"

# --- the TIMESTAMP columns hold UTC, also for a caller whose $PGTZ is not
# UTC (libpq sends PGTZ after the connection's options, so it would win)
q "INSERT INTO autonomous_agent_logs (agent_name, layer, action, status, created_at)
   VALUES ('tz-agent', 'monitoring', 'probe', 'ok', (NOW() AT TIME ZONE 'UTC') - INTERVAL '30 minutes')" ||
    fail "insert of the time zone probe failed"
PGTZ=Asia/Tokyo "$K" report --since 1h --json >"$T/tz.json" 2>"$T/tz.err" || fail "report failed: $(cat "$T/tz.err")"
/usr/bin/python3 - "$T/tz.json" <<'PY' || fail "report with PGTZ=Asia/Tokyo: $(cat "$T/tz.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert "tz-agent" in [r["agent_name"] for r in d["recent_activity"]], d["recent_activity"]
assert d["by_agent"].get("tz-agent") == 1, d["by_agent"]
PY
q "DELETE FROM autonomous_agent_logs WHERE agent_name = 'tz-agent'" || fail "delete of the probe failed"

# --- stop, nothing left, start again: the data is still there
"$K" db stop >"$T/stop.out" 2>&1 || fail "db stop failed: $(cat "$T/stop.out")"
kz_wait_for 60 cluster_gone "$DATA" || fail "server processes left after db stop: $(cluster_pids "$DATA")"
[[ ! -e $DATA/postmaster.pid ]] || fail "postmaster.pid left after db stop"
"$K" db status >"$T/status3.out" 2>&1 && fail "db status says ok with the server stopped"
grep -Eq '^running +no$' "$T/status3.out" || fail "status after stop: $(cat "$T/status3.out")"
"$K" db stop >"$T/stop2.out" 2>&1 || fail "db stop of a stopped cluster failed: $(cat "$T/stop2.out")"
# a postmaster.pid left by a crash, its pid reused by another program:
# stop neither signals nor waits for it, start removes the stale file
sleep 60 &
other=$!
printf '%s\n%s\n' "$other" "$DATA" >"$DATA/postmaster.pid"
timeout 20 "$K" db stop >"$T/stop-reused.out" 2>&1 || fail "db stop with a reused pid: $(cat "$T/stop-reused.out")"
kill -0 "$other" || fail "db stop signalled pid $other, which is no postgres"
kill "$other"

# through a pipe: the server must not keep the caller's stdout open (this
# would hang until the test's timeout)
"$K" db start 2>&1 | cat >"$T/start3.out"
[[ ${PIPESTATUS[0]} -eq 0 ]] || fail "db start after stop failed: $(cat "$T/start3.out")"
grep -q "creating the embedded" "$T/start3.out" && fail "the cluster was created again"
[[ $(q "SELECT count(*) FROM autonomous_agent_logs WHERE agent_name = 'test-agent'") == 1 ]] ||
    fail "the row did not survive stop/start"

# --- kill -9 of the postmaster: the next start recovers
pm=$(head -1 "$DATA/postmaster.pid")
[[ -n "$pm" ]] || fail "no postmaster pid"
kill -0 "$pm" || fail "postmaster $pm is not running"
kill -KILL "$pm"
kz_wait_for 60 sh -c "! kill -0 $pm 2>/dev/null || grep -q '^State:.Z' /proc/$pm/status" ||
    fail "postmaster $pm did not die"
"$K" db start >"$T/start4.out" 2>&1 || fail "db start after kill -9 failed: $(cat "$T/start4.out")"
[[ $(q "SELECT count(*) FROM autonomous_agent_logs WHERE agent_name = 'test-agent'") == 1 ]] ||
    fail "the row did not survive the crash"
"$K" db migrate >"$T/m3.out" 2>&1 || fail "db migrate after the crash failed: $(cat "$T/m3.out")"
grep -q "up to date" "$T/m3.out" || fail "migrate after crash: $(cat "$T/m3.out")"
"$K" db stop >"$T/stop3.out" 2>&1 || fail "db stop failed: $(cat "$T/stop3.out")"
kz_wait_for 60 cluster_gone "$DATA" || fail "server processes left after db stop: $(cluster_pids "$DATA")"

# --- an ordinary user runs its own cluster
if [[ $(id -u) -eq 0 ]]; then
    U=$T/u
    mkdir "$U" && chown nobody "$U"
    chmod 644 "$KAIZEN_CONFIG"
    as_nobody() { runuser -u nobody -- env KAIZEN_CONFIG="$KAIZEN_CONFIG" KAIZEN_STATE_DIR="$U/state" "$@"; }
    kz_at_exit "runuser -u nobody -- env KAIZEN_CONFIG='$KAIZEN_CONFIG' KAIZEN_STATE_DIR='$U/state' '$K' db stop"
    as_nobody "$K" db start >"$T/u-start.out" 2>&1 || fail "db start as nobody: $(cat "$T/u-start.out")"
    grep -q "refuses to run as root" "$T/u-start.out" && fail "nobody's cluster claims root"
    [[ $(stat -c %U "$U/state/db/data") == nobody ]] || fail "nobody's data directory has another owner"
    as_nobody "$K" db migrate >"$T/u-m.out" 2>&1 || fail "db migrate as nobody: $(cat "$T/u-m.out")"
    grep -q "schema version $latest" "$T/u-m.out" || fail "migrate as nobody: $(cat "$T/u-m.out")"
    as_nobody "$K" db status >"$T/u-status.out" 2>&1 || fail "db status as nobody: $(cat "$T/u-status.out")"
    grep -q "runs as user nobody" "$T/u-status.out" || fail "status as nobody: $(cat "$T/u-status.out")"
    as_nobody "$K" db stop >"$T/u-stop.out" 2>&1 || fail "db stop as nobody: $(cat "$T/u-stop.out")"
    kz_wait_for 60 cluster_gone "$U/state/db/data" || fail "nobody's server left running"
else
    echo "note: not root, so the cycle above already ran as an ordinary user; the root part is skipped"
fi

# nothing of this test's clusters runs
left=$(cluster_pids "$T/")
[[ -z "$left" ]] || fail "processes left: $(ps -o pid,user,args -p "$(paste -sd, <<<"$left")")"
echo "ok"
