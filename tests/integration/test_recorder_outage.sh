#!/usr/bin/env bash
# test_recorder_outage: the recorder keeps every message through a
# database outage. A real broker, the orchestrator (no agents) and the
# embedded cluster; kz_pub publishes test.event messages at a moderate
# rate until it is stopped; the cluster is stopped while they flow (after
# some rows are stored), the spool takes the messages meanwhile, the
# cluster is started again and the spool replayed, live recording
# resumes, and only then the publisher is stopped - so the outage falls
# inside the stream however slow the machine is. Then events holds
# exactly the N test.event rows the publisher sent, no seq twice, in
# publishing order (events.seq follows body.seq), and the spool is gone.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json || skip "no python3"

K=$KZ_BIN/kaizen
kz_config <<'EOF'
supervisor:
  broker: false
database:
  flush_interval: 100ms
  retry_max: 1s
EOF
SPOOL=$T/state/spool/recorder.spool
kz_at_exit kz_kill_leftovers
kz_db_start

rows() { kz_psql "SELECT count(*) FROM events WHERE type = 'test.event'" 2>/dev/null; }
rows_at_least() { local n; n=$(rows) && [[ -n "$n" && $n -ge $1 ]]; }

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"

kz_start pub "$KZ_TOOLS/kz_pub" test.event --count 0 --rate 800 --size 300
kz_wait_for 60 rows_at_least 1000 || fail "no rows arrive: $(rows)"

# --- the database goes away while messages flow
"$K" db stop >"$T/db-stop.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop.log")"
kz_wait_for 30 kz_status 'b["spool"]["pending"] > 0 and b["database"]["state"] != "up"' ||
    fail "nothing spooled while the database is down: $(kz_status 'b')"
[[ -s $SPOOL ]] || fail "no spool file at $SPOOL"
grep -q "database unavailable" "$T/orch.log" || fail "the outage was not logged"
kz_wait_for 60 kz_status "b['spool']['pending'] > 1000" || fail "the spool does not grow: $(kz_status 'b')"

# --- back: the spool is replayed and live recording resumes
"$K" db start >"$T/db-start2.log" 2>&1 || fail "kaizen db start: $(cat "$T/db-start2.log")"
kz_wait_for 120 kz_status 'b["spool"]["state"] == "empty" and b["database"]["state"] == "up"' ||
    fail "spool not drained: $(kz_status 'b')"
live=$(rows)
kz_wait_for 60 rows_at_least $((live + 500)) || fail "live recording did not resume: $(rows) rows"
# now the publisher stops; it says how many it sent
kill -TERM "$PID_pub"
wait "$PID_pub" || fail "publisher exited $?: $(cat "$T/pub.log")"
N=$(sed -n 's/^sent \([0-9]*\)$/\1/p' "$T/pub.log")
[[ -n $N ]] && ((N > 2000)) || fail "publisher: $(cat "$T/pub.log")"
kz_wait_for 120 rows_at_least $N || fail "only $(rows) of $N rows"
kz_wait_for 30 kz_status 'b["spool"]["state"] == "empty" and b["database"]["state"] == "up"' ||
    fail "spool not drained: $(kz_status 'b')"
[[ -e $SPOOL || -e $SPOOL.pos ]] && fail "spool file left behind: $(ls -l "$T/state/spool")"
grep -q "spool replayed completely" "$T/orch.log" || fail "no replay logged"
kz_status 'b["spool"]["replayed"] > 1000 and b["spool"]["corrupt_skipped"] == 0' ||
    fail "spool counters: $(kz_status 'b["spool"]')"

# --- exactly once, in order
got=$(kz_psql "SELECT count(*), count(DISTINCT body->>'seq'), min((body->>'seq')::int),
                max((body->>'seq')::int) FROM events WHERE type = 'test.event'")
[[ $got == "$N|$N|0|$((N - 1))" ]] || fail "rows, distinct seqs, min, max: $got"
disorder=$(kz_psql "SELECT count(*) FROM (SELECT (body->>'seq')::int AS s,
                     lag((body->>'seq')::int) OVER (ORDER BY seq) AS prev
              FROM events WHERE type = 'test.event') x WHERE s <= prev")
[[ $disorder == 0 ]] || fail "$disorder rows out of publishing order"
# nothing was refused or lost on the way ("held" counts deliveries in
# flight too: the orchestrator's own heartbeat may be between the broker
# and the database at any moment, so wait for a moment when none is)
kz_wait_for 30 kz_status 'b["database"]["skipped"] == 0 and b["held"] == 0' ||
    fail "status: $(kz_status 'b')"
kz_status 'b["database"]["skipped"] == 0' || fail "skipped: $(kz_status 'b')"
echo "ok: $N rows, $(kz_status 'b["spool"]["replayed"]') of them through the spool"
