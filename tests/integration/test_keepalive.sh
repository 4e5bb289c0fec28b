#!/usr/bin/env bash
# test_keepalive.sh - long work does not get requeued: a Majordomo worker
# and queue-group members busy far longer than the broker's expiry
# (heartbeat 250 ms x liveness 8 = 2 s) stay alive by calling
# kz_bus_keepalive between slices of work (every 100 ms: twenty times
# inside the expiry, so a loaded machine that delays a slice several
# times over still keeps them alive), so each request and each delivery
# is handled exactly once. A worker busy without keepalive keeps
# its request too (the broker probes a busy worker's connection instead of
# expiring it), while a group member busy without keepalive is declared
# dead and its delivery redelivered: the negative case that shows the
# test can fail.
source "$KZ_ROOT/tests/integration/lib.sh"

kz_config <<'EOF2'
  heartbeat: 250ms
  liveness: 8
EOF2
# debug: the broker logs each worker's READY and each member's JOIN
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG" --log-level debug
kz_wait_log broker "broker ready" || fail "broker did not start"

registered() { [[ $(grep -c "$1" "$T/broker.log") -ge $2 ]]; }
got_count() { cat "$@" | awk '$1 == "got" { c++ } END { print c + 0 }'; }

# --- a request worked on for 5 s by one of two workers, with keepalive
kz_start w1 "$KZ_TOOLS/kz_serve" svc.slow --busy-ms 5000
kz_start w2 "$KZ_TOOLS/kz_serve" svc.slow --busy-ms 5000
kz_wait_for 30 registered "ready for 'svc.slow'" 2 || fail "the svc.slow workers did not register"

start=$SECONDS
"$KZ_TOOLS/kz_call" svc.slow -f text=slow --timeout-ms 60000 --retries 1 >"$T/slow.json" ||
    fail "the long request got no reply"
took=$((SECONDS - start))
grep -q '"text":"slow"' "$T/slow.json" || fail "wrong reply: $(cat "$T/slow.json")"
corr=$(sed -n 's/.*"corr":"\([0-9A-Z]*\)".*/\1/p' "$T/slow.json")
[[ -n "$corr" ]] || fail "reply has no corr"
n=$(cat "$T/w1.log" "$T/w2.log" | grep -c "^got $corr\$")
((n == 1)) || fail "$n workers got request $corr (requeued during keepalive)"
grep -q "expired" "$T/broker.log" && fail "the broker expired a worker that sent keepalives"
((took >= 5)) || fail "the reply came after ${took}s, before the 5 s of work"
echo "ok: long request handled once in ${took}s"

# --- two group members, 4 s per delivery, sharing 4 events
kz_start m1 "$KZ_TOOLS/kz_sub" --group slowg --prefix slow. --busy-ms 4000 --out "$T/m1.out"
kz_start m2 "$KZ_TOOLS/kz_sub" --group slowg --prefix slow. --busy-ms 4000 --out "$T/m2.out"
touch "$T/m1.out" "$T/m2.out"
kz_wait_for 30 registered "joined group 'slowg'" 2 || fail "the group members did not join"
"$KZ_TOOLS/kz_pub" slow.work --count 4 >"$T/pub.out" || fail "kz_pub failed"

union() { cat "$T/m1.out" "$T/m2.out" | awk '$1 == "seq" && !s[$2]++ { c++ } END { print c + 0 }'; }
all_seen() { [[ $(union) -ge 4 ]]; }
kz_wait_for 120 all_seen || fail "members handled $(union) of 4 events"
# "done N" follows the ack of N: wait for every ack before stopping them
dones() { cat "$T/m1.out" "$T/m2.out" | awk '$1 == "done" { c++ } END { print c + 0 }'; }
all_done() { [[ $(dones) -ge 4 ]]; }
kz_wait_for 120 all_done || fail "members finished $(dones) of 4 deliveries"
kill -TERM "$PID_m1" "$PID_m2"
wait "$PID_m1" || fail "member 1 exited with $?"
wait "$PID_m2" || fail "member 2 exited with $?"
total=$(cat "$T/m1.out" "$T/m2.out" | awk '$1 == "seq" { c++ } END { print c + 0 }')
((total == 4)) || fail "$total deliveries for 4 events (redelivered during keepalive): $(cat "$T/m1.out" "$T/m2.out" | tr '\n' ' ')"
[[ $(union) -eq 4 ]] || fail "only $(union) distinct events handled"
grep -q "expired" "$T/broker.log" && fail "the broker expired a member that sent keepalives"
echo "ok: 4 deliveries of 4 s each handled once (m1 $(grep -c seq "$T/m1.out"), m2 $(grep -c seq "$T/m2.out"))"

# --- a worker busy WITHOUT keepalive (like a stock RFC 7 worker) keeps its
# request: the broker does not expire a busy worker for silence, it probes
# its connection instead, so the request is not run twice
kz_start lazy "$KZ_TOOLS/kz_serve" svc.lazy --busy-ms 5000 --no-keepalive
kz_wait_for 30 registered "ready for 'svc.lazy'" 1 || fail "the svc.lazy worker did not register"
kz_start lazycall "$KZ_TOOLS/kz_call" svc.lazy -f text=lazy --timeout-ms 60000 --retries 0
kz_wait_log lazy "^got " || fail "the lazy worker got no request"
# only now a second worker: it must not be handed the lazy worker's request
kz_start other "$KZ_TOOLS/kz_serve" svc.lazy
kz_wait_for 30 registered "ready for 'svc.lazy'" 2 || fail "the second svc.lazy worker did not register"
rc=0; wait "$PID_lazycall" || rc=$?
((rc == 0)) || fail "the lazy worker's request got no reply (exit $rc)"
corr=$(sed -n 's/.*"corr":"\([0-9A-Z]*\)".*/\1/p' "$T/lazycall.log")
[[ -n "$corr" ]] || fail "lazy reply has no corr"
grep -q "^got $corr\$" "$T/lazy.log" || fail "the lazy worker did not get $corr"
grep -q "^got $corr\$" "$T/other.log" && fail "request $corr was requeued although its worker was alive"
grep -q "of 'svc.lazy' expired" "$T/broker.log" && fail "the broker expired a busy, connected worker"
echo "ok: a busy worker without keepalive kept its request"

# --- negative: a group member busy WITHOUT keepalive is declared dead and
# its delivery goes to the other member (so the keepalive above mattered):
# silent for 10 s, five times the expiry
kz_start n1 "$KZ_TOOLS/kz_sub" --group lazyg --prefix lazy. --ack-delay-ms 10000 --out "$T/n1.out"
touch "$T/n1.out"
kz_wait_for 30 registered "joined group 'lazyg'" 1 || fail "the lazy member did not join"
"$KZ_TOOLS/kz_pub" lazy.work --count 1 >"$T/pub2.out" || fail "kz_pub failed"
kz_wait_for 30 grep -q "^seq" "$T/n1.out" || fail "the lazy member got no delivery"
kz_start n2 "$KZ_TOOLS/kz_sub" --group lazyg --prefix lazy. --out "$T/n2.out"
touch "$T/n2.out"
kz_wait_for 30 grep -q "^seq" "$T/n2.out" || fail "the silent member's delivery was not redelivered to the other member"
echo "ok: without keepalive a busy member's delivery was redelivered"
echo "ok"
