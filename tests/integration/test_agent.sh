#!/usr/bin/env bash
# test_agent.sh - the agent runtime end to end with kaizen-demo: flags,
# config errors, agent.hello, heartbeats, a metric.batch every interval,
# a cycle on agent.run and on SIGUSR1, the demo.echo service, and on
# SIGTERM an agent.bye that reaches subscribers and exit status 0
source "$KZ_ROOT/tests/integration/lib.sh"
DEMO=$KZ_BIN/kaizen-demo

# flags and configuration errors, no broker needed
"$DEMO" --help >"$T/help.out" || fail "--help exited $?"
grep -q "usage: kaizen-demo" "$T/help.out" || fail "--help printed no usage"
grep -q "host load" "$T/help.out" || fail "--help printed no summary"
rc=0; "$DEMO" --no-such-flag 2>"$T/badflag.err" || rc=$?
((rc == 2)) || fail "a bad flag exited $rc, expected 2"
grep -q "usage:" "$T/badflag.err" || fail "a bad flag printed no usage on stderr"
printf 'bus:\n  heartbeat: [1, 2\n' >"$T/bad.yaml"
rc=0; "$DEMO" -c "$T/bad.yaml" 2>"$T/badcfg.err" || rc=$?
((rc == 1)) || fail "a bad config exited $rc, expected 1"
grep -Eq "^$T/bad.yaml:[0-9]+:[0-9]+: " "$T/badcfg.err" || fail "no file:line:col in: $(cat "$T/badcfg.err")"
printf 'bus:\n  heartbeat: fast\n' >"$T/bad2.yaml"
rc=0; "$DEMO" -c "$T/bad2.yaml" 2>"$T/badcfg2.err" || rc=$?
((rc == 1)) || fail "a bad value exited $rc, expected 1"
grep -Eq "^$T/bad2.yaml:[0-9]+:[0-9]+: bus.heartbeat" "$T/badcfg2.err" || fail "no key in: $(cat "$T/badcfg2.err")"

kz_config <<'EOF2'
agent_heartbeat: 300ms
agents:
  - name: demo
    interval: 1s
EOF2
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start watch "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
touch "$T/all.out"
probe_seen() { "$KZ_TOOLS/kz_pub" test.probe >/dev/null 2>&1 && grep -q "^test.probe " "$T/all.out"; }
kz_wait_for 30 probe_seen || fail "watcher never connected"

kz_start demo "$DEMO" --log-level debug
has() { [[ $(grep -c "^$1 " "$T/all.out") -ge $2 ]]; }
kz_wait_for 30 has agent.hello 1 || fail "no agent.hello"
grep "^agent.hello " "$T/all.out" | grep -q '"name":"demo","layer":"monitoring"' || fail "bad hello: $(grep agent.hello "$T/all.out")"
kz_wait_for 30 has agent.heartbeat 2 || fail "no agent.heartbeat"
grep "^agent.heartbeat " "$T/all.out" | grep -q '"state":"idle"' || fail "bad heartbeat"
# the interval comes from agents[].interval: 1s -> several batches
kz_wait_for 30 has metric.batch 3 || fail "fewer than 3 metric.batch in time"
grep "^metric.batch " "$T/all.out" | head -n 1 | grep -q '"name":"host.mem_available"' || fail "metric.batch without host.mem_available"
grep "^agent.hello " "$T/all.out" | grep -q '"interval_ms":1000' || fail "interval from config not used"

# on-demand cycles: agent.run naming another agent is ignored, naming us runs one
"$KZ_TOOLS/kz_pub" agent.run --type agent.run -f agent=someone-else >/dev/null || fail "kz_pub agent.run failed"
"$KZ_TOOLS/kz_pub" agent.run --type agent.run -f agent=demo >/dev/null || fail "kz_pub agent.run failed"
kz_wait_log demo "cycle requested by 'kz_pub" 30 || fail "agent.run did not run a cycle"
[[ $(grep -c "cycle requested by 'kz_pub" "$T/demo.log") -eq 1 ]] || fail "agent.run for another agent ran a cycle"
kill -USR1 "$PID_demo"
kz_wait_log demo "cycle requested by SIGUSR1" 30 || fail "SIGUSR1 did not run a cycle"
# a cycle's log lines carry its correlation id
grep -Eq "corr=[0-9A-Z]{26} .*load " "$T/demo.log" || fail "cycle log lines have no corr id"

# the service
"$KZ_TOOLS/kz_call" demo.echo -f text=hello -i n=42 --timeout-ms 5000 >"$T/echo.out" || fail "demo.echo call failed"
grep -q '"type":"demo.echo"' "$T/echo.out" || fail "echo reply has the wrong type: $(cat "$T/echo.out")"
grep -q '"body":{"text":"hello","n":42}' "$T/echo.out" || fail "echo reply body differs: $(cat "$T/echo.out")"

# SIGTERM: bye reaches the watcher, exit 0
kill -TERM "$PID_demo"
rc=0; wait "$PID_demo" || rc=$?
((rc == 0)) || fail "kaizen-demo exited $rc after SIGTERM"
kz_wait_for 30 has agent.bye 1 || fail "agent.bye never reached the subscriber"
grep "^agent.bye " "$T/all.out" | grep -q '"reason":"signal"' || fail "bye without reason signal"

# --once: one cycle, bye, exit 0
n_batches=$(grep -c "^metric.batch " "$T/all.out")
"$DEMO" --once >"$T/once.log" 2>&1 || fail "--once exited $?"
kz_wait_for 30 has agent.bye 2 || fail "--once said no bye"
[[ $(grep -c "^metric.batch " "$T/all.out") -gt $n_batches ]] || fail "--once published no metric.batch"
echo "ok"
