#!/usr/bin/env bash
# test_recorder_spool_split: a batch larger than the spool's room goes in
# in pieces that fit (issue 12). With the cluster stopped, database.
# spool_max at 64 KiB and batches of 500 messages of 300 bytes (about 165
# KiB each, more than the whole spool), the spool still takes what fits:
# messages are appended and acknowledged, the file stays within
# spool_max, the rest is held unacknowledged (status "full") and queued by
# the broker. Before, such a batch never spooled at all. (flush_interval
# 10s: every batch is a full one of 500.) When the cluster
# is back all 2,000 rows arrive once each, in publishing order.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json msgpack || skip "no python3 with msgpack (apt-get install -y python3-msgpack)"

K=$KZ_BIN/kaizen
N=2000
kz_config <<'EOF2'
supervisor:
  broker: false
database:
  retry_max: 1s
  spool_max: 64KiB
  batch_size: 500
  flush_interval: 10s
broker:
  group_inflight: 1000
EOF2
SPOOL=$T/state/spool/recorder.spool
kz_at_exit kz_kill_leftovers
kz_db_start

rows() { kz_psql "SELECT count(*) FROM events WHERE type = 'test.event'" 2>/dev/null; }
rows_at_least() { local n; n=$(rows) && [[ -n "$n" && $n -ge $1 ]]; }

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
"$K" db stop >"$T/db-stop.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop.log")"

"$KZ_TOOLS/kz_pub" test.event --count $N --size 300 >"$T/pub.log" 2>&1 ||
    fail "publisher: $(cat "$T/pub.log")"
# the spool fills with the first pieces of a batch larger than itself
kz_wait_for 60 kz_status 'b["spool"]["state"] == "full" and b["spool"]["appended"] > 0 and b["held"] > 0' ||
    fail "a batch larger than spool_max was not spooled in pieces: $(kz_status 'b["spool"], b["held"]')"
appended=$(kz_status 'b["spool"]["appended"]')
size=$(stat -c %s "$SPOOL") || fail "no spool file"
((size <= 64 * 1024)) || fail "the spool holds $size bytes, over spool_max"
# it took close to all its room: no more than one record's worth left
((size > 64 * 1024 - 400)) || fail "the spool holds only $size bytes of 64 KiB"
kz_wait_log orch "spool full" || fail "the full spool was not logged"

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
echo "ok: $appended messages spooled in pieces of batches larger than the spool"
