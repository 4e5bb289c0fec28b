#!/usr/bin/env bash
# test_recorder_spool_full: when neither the database nor the spool can
# take messages, the recorder holds them unacknowledged and loses nothing.
# With the cluster stopped and database.spool_max at 256 KiB, 3,000
# messages of 300 bytes (about 1 MiB) are published: the spool fills,
# status says spool "full" with messages held, the condition is logged
# once (not once per retry), the broker queues the rest. When the cluster
# is back the spool is replayed, the held messages and the queue follow,
# and all 3,000 rows arrive once each, in order. broker.group_inflight
# 1000: batches of 500 messages (about 160 KiB), so one fits the spool and
# the next only in part (test_recorder_spool_split.sh), and the broker
# holds what is beyond the 1000 in flight.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json msgpack || skip "no python3 with msgpack (apt-get install -y python3-msgpack)"

K=$KZ_BIN/kaizen
N=3000
kz_config <<'EOF'
supervisor:
  broker: false
database:
  retry_max: 1s
  spool_max: 256KiB
broker:
  group_inflight: 1000
EOF
SPOOL=$T/state/spool/recorder.spool
kz_at_exit kz_kill_leftovers
kz_db_start

rows() { kz_psql "SELECT count(*) FROM events WHERE type = 'test.event'" 2>/dev/null; }
rows_at_least() { local n; n=$(rows) && [[ -n "$n" && $n -ge $1 ]]; }
G='d["groups"]["kaizen.recorder"]'

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
"$K" db stop >"$T/db-stop.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop.log")"

"$KZ_TOOLS/kz_pub" test.event --count $N --size 300 >"$T/pub.log" 2>&1 ||
    fail "publisher: $(cat "$T/pub.log")"
kz_wait_for 60 kz_status 'b["spool"]["state"] == "full" and b["held"] > 0' ||
    fail "the spool never filled: $(kz_status 'b')"
size=$(stat -c %s "$SPOOL") || fail "no spool file"
((size <= 256 * 1024)) || fail "the spool holds $size bytes, over spool_max"
# the rest waits in the broker, unacknowledged; retries do not repeat the log line
kz_wait_for 30 kz_stats "${G}[\"queued\"] > 0" || fail "nothing queued: $(kz_stats "$G")"
kz_wait_log orch "spool full" || fail "the full spool was not logged"
held=$(kz_status 'b["held"]')

# --- room again: everything arrives, once, in order
"$K" db start >"$T/db-start2.log" 2>&1 || fail "kaizen db start: $(cat "$T/db-start2.log")"
kz_wait_for 120 rows_at_least $N || fail "only $(rows) of $N rows: $(kz_status 'b')"
got=$(kz_psql "SELECT count(*), count(DISTINCT body->>'seq') FROM events WHERE type = 'test.event'")
[[ $got == "$N|$N" ]] || fail "rows|distinct: $got"
disorder=$(kz_psql "SELECT count(*) FROM (SELECT (body->>'seq')::int AS s,
                     lag((body->>'seq')::int) OVER (ORDER BY seq) AS prev
              FROM events WHERE type = 'test.event') x WHERE s <= prev")
[[ $disorder == 0 ]] || fail "$disorder rows out of publishing order"
kz_wait_for 30 kz_status 'b["spool"]["state"] == "empty" and b["held"] == 0' ||
    fail "after the outage: $(kz_status 'b')"
grep -q "nothing held back any more" "$T/orch.log" || fail "the end of the full state was not logged"
# held batches were offered again every second meanwhile: logged once
[[ $(grep -c "spool full" "$T/orch.log") == 1 ]] || fail "logged more than once per state change"
[[ -e $SPOOL ]] && fail "spool file left behind"
echo "ok: $held messages were held while the spool was full"
