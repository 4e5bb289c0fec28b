#!/usr/bin/env bash
# test_recorder_restart: an unfinished spool survives the orchestrator.
#
# 1. kill -9 mid-spool: test.event messages flow (until the publisher is
#    stopped, at the end: the kill falls inside the stream however slow
#    the machine); the cluster is stopped, the spool fills, the
#    orchestrator is killed with SIGKILL and started again while the
#    cluster is still down (it finds the spool from before and spools
#    behind it), then the cluster comes back. Exactly the N rows the
#    publisher sent, no duplicates, in publishing order. The broker
#    runs on its own (supervisor.broker: false), so the group queue and
#    the killed member's unacknowledged deliveries survive; the new
#    orchestrator is started once the broker has declared the old member
#    dead and put those deliveries back at the front of the queue.
# 2. a corrupt spool record: with the cluster down, 2,000 more messages
#    are spooled, the orchestrator stops, one record in the middle of the
#    spool file is damaged; with the cluster up a new orchestrator replays
#    the rest, counts the bad record (status spool.corrupt_skipped, a log
#    line) and does not block: every other message arrives, in order.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
kz_python json msgpack || skip "no python3 with msgpack (apt-get install -y python3-msgpack)"

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
# check_order FIRST COUNT [MISSING]: the test.event rows with seq in
# [FIRST, FIRST+COUNT) are there once each (but MISSING) and in order
check_order() {
    local first=$1 count=$2 missing=${3:--1} want got disorder
    want=$((count - (missing >= 0 ? 1 : 0)))
    got=$(kz_psql "SELECT count(*), count(DISTINCT body->>'seq') FROM events WHERE type = 'test.event'
             AND (body->>'seq')::int BETWEEN $first AND $((first + count - 1))")
    [[ $got == "$want|$want" ]] || fail "seqs $first..+$count: rows|distinct $got, want $want"
    if ((missing >= 0)); then
        [[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'test.event'
                AND (body->>'seq')::int = $missing") == 0 ]] || fail "seq $missing is there"
    fi
    disorder=$(kz_psql "SELECT count(*) FROM (SELECT (body->>'seq')::int AS s,
                         lag((body->>'seq')::int) OVER (ORDER BY seq) AS prev
                  FROM events WHERE type = 'test.event') x WHERE s <= prev")
    [[ $disorder == 0 ]] || fail "$disorder rows out of publishing order"
}

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"

# ------------------------------------------------ 1. kill -9 mid-spool
kz_start pub "$KZ_TOOLS/kz_pub" test.event --count 0 --rate 800 --size 300
kz_wait_for 60 rows_at_least 1000 || fail "no rows arrive: $(rows)"
"$K" db stop >"$T/db-stop.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop.log")"
kz_wait_for 60 kz_status 'b["spool"]["pending"] > 1000' || fail "not spooling: $(kz_status 'b')"
kill -KILL "$PID_orch"
wait "$PID_orch" 2>/dev/null
[[ -s $SPOOL ]] || fail "no spool file after the kill"
# restart at once: the broker still counts the killed member (until its
# heartbeats are missed) and requeues its deliveries only then; the new
# orchestrator waits for that before joining, so the order holds
kz_start orch2 "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch2 "messages\? from before" 30 || fail "the new orchestrator ignores the spool"
# still down: new messages go behind the old spool
kz_wait_for 60 kz_status 'b["spool"]["appended"] > 500 and b["database"]["state"] != "up"' ||
    fail "the restarted orchestrator does not spool: $(kz_status 'b')"
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
kz_wait_for 30 kz_status 'b["spool"]["state"] == "empty"' || fail "spool not drained: $(kz_status 'b')"
[[ -e $SPOOL ]] && fail "spool file left behind"
check_order 0 $N
[[ $(rows) == "$N" ]] || fail "$(rows) rows, want $N"
grep -q "waiting up to .* previous recorder" "$T/orch2.log" &&
    echo "(the new orchestrator waited for the broker to release the killed one's messages)"
echo "ok: kill -9 mid-spool, $N rows"

# ------------------------------------------------ 2. a corrupt record
M=2000
"$K" db stop >"$T/db-stop2.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop2.log")"
a0=$(kz_status 'b["spool"]["appended"]') || fail "no status"
"$KZ_TOOLS/kz_pub" test.event --count $M --start $N --size 300 >"$T/pub2.log" 2>&1 ||
    fail "publisher: $(cat "$T/pub2.log")"
kz_wait_for 60 kz_status "b['spool']['appended'] >= $((a0 + M)) and b['held'] == 0" ||
    fail "not spooled: $(kz_status 'b')"
kill -TERM "$PID_orch2"
kz_wait_for 60 bash -c "! kill -0 $PID_orch2 2>/dev/null" || fail "orchestrator does not stop"
[[ -s $SPOOL ]] || fail "no spool file"

# damage the payload of the test.event record in the middle of the file
bad=$("$PY" - "$SPOOL" <<'PY'
import struct, sys, msgpack
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
assert data[:8] == b"KZSPOOL1", "bad header"
off, recs = 8, []
while off + 12 <= len(data):
    magic, n, crc = struct.unpack_from("<III", data, off)
    assert magic == 0x4B5A5352, "bad record at %d" % off
    msg = msgpack.unpackb(bytes(data[off + 12:off + 12 + n]), raw=False)
    if msg["type"] == "test.event":
        recs.append((off, n, msg["body"]["seq"]))
    off += 12 + n
assert off == len(data), "trailing bytes"
off, n, seq = recs[len(recs) // 2]
for i in range(n - 8, n - 4):      # inside the pad string
    data[off + 12 + i] ^= 0xFF
open(path, "wb").write(data)
print(seq)
PY
) || fail "unable to damage the spool"
[[ $bad =~ ^[0-9]+$ ]] || fail "damaged record: $bad"

"$K" db start >"$T/db-start3.log" 2>&1 || fail "kaizen db start: $(cat "$T/db-start3.log")"
kz_start orch3 "$KZ_BIN/kaizen-orchestrator"
kz_wait_for 120 rows_at_least $((N + M - 1)) || fail "only $(rows) rows after the corrupt record"
kz_wait_for 30 kz_status 'b["spool"]["state"] == "empty" and b["spool"]["corrupt_skipped"] == 1' ||
    fail "corrupt record not counted: $(kz_status 'b["spool"]')"
grep -q "skipped a corrupt record" "$T/orch3.log" || fail "corrupt record not logged"
[[ -e $SPOOL ]] && fail "spool file left behind"
check_order 0 $N
check_order $N $M "$bad"
echo "ok: the corrupt record (seq $bad) skipped, $((M - 1)) others replayed"
