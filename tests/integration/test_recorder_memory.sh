#!/usr/bin/env bash
# test_recorder_memory: the orchestrator's memory does not grow with the
# length of a database outage. With the cluster stopped, 20,000 messages
# are spooled, then 100,000 more; the orchestrator's VmRSS after the long
# phase may exceed the one after the short phase by at most 8 MiB (what
# it holds is bounded by broker.group_inflight and one batch, whatever
# the spool holds). Then the cluster starts and all 120,000 rows arrive.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json msgpack || skip "no python3 with msgpack (apt-get install -y python3-msgpack)"

K=$KZ_BIN/kaizen
N1=20000
N2=100000
SLACK_KIB=$((8 * 1024))
kz_config <<'EOF'
supervisor:
  broker: false
database:
  retry_max: 1s
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

rows() { kz_psql "SELECT count(*) FROM events WHERE type = 'test.event'" 2>/dev/null; }
rows_at_least() { local n; n=$(rows) && [[ -n "$n" && $n -ge $1 ]]; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID_orch/status"; }
# spooled COUNT: COUNT test.event messages are in the spool and nothing
# is held or queued for the recorder any more
spooled() {
    kz_status "b['spool']['appended'] >= $1 and b['held'] == 0" >/dev/null &&
        kz_stats "${G}[\"queued\"] == 0 and ${G}[\"inflight\"] == 0" >/dev/null
}
G='d["groups"]["kaizen.recorder"]'

# under AddressSanitizer freed memory sits in a quarantine (256 MiB by
# default) before it is reused, which would look like growth
if ldd "$KZ_BIN/kaizen-orchestrator" 2>/dev/null | grep -q libasan; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
fi
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
"$K" db stop >"$T/db-stop.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop.log")"

# --- a short outage
"$KZ_TOOLS/kz_pub" test.event --count $N1 --size 300 >"$T/pub1.log" 2>&1 ||
    fail "publisher: $(cat "$T/pub1.log")"
kz_wait_for 120 spooled $N1 || fail "not spooled: $(kz_status 'b')"
kz_status 'b["database"]["state"] != "up" and b["spool"]["state"] == "spooling"' ||
    fail "not spooling: $(kz_status 'b')"
rss1=$(rss_kib)

# --- five times longer
"$KZ_TOOLS/kz_pub" test.event --count $N2 --start $N1 --size 300 >"$T/pub2.log" 2>&1 ||
    fail "publisher: $(cat "$T/pub2.log")"
kz_wait_for 240 spooled $((N1 + N2)) || fail "not spooled: $(kz_status 'b')"
rss2=$(rss_kib)
spool_bytes=$(kz_status 'b["spool"]["bytes"]')
echo "VmRSS after $N1 spooled: $rss1 KiB, after $((N1 + N2)): $rss2 KiB (spool $spool_bytes bytes)"
((rss2 - rss1 <= SLACK_KIB)) || fail "memory grew by $((rss2 - rss1)) KiB with the outage"
((spool_bytes > (N1 + N2) * 300)) || fail "the spool holds only $spool_bytes bytes"

# --- the database is back: everything arrives, once, in order
"$K" db start >"$T/db-start2.log" 2>&1 || fail "kaizen db start: $(cat "$T/db-start2.log")"
kz_wait_for 240 rows_at_least $((N1 + N2)) || fail "only $(rows) of $((N1 + N2)) rows"
got=$(kz_psql "SELECT count(*), count(DISTINCT body->>'seq') FROM events WHERE type = 'test.event'")
[[ $got == "$((N1 + N2))|$((N1 + N2))" ]] || fail "rows|distinct: $got"
disorder=$(kz_psql "SELECT count(*) FROM (SELECT (body->>'seq')::int AS s,
                     lag((body->>'seq')::int) OVER (ORDER BY seq) AS prev
              FROM events WHERE type = 'test.event') x WHERE s <= prev")
[[ $disorder == 0 ]] || fail "$disorder rows out of publishing order"
kz_wait_for 30 kz_status 'b["spool"]["state"] == "empty"' || fail "spool not drained: $(kz_status 'b')"
rss3=$(rss_kib)
echo "VmRSS after the replay: $rss3 KiB"
