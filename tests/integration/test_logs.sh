#!/usr/bin/env bash
# test_logs.sh - one log file per process under STATE/logs, rotated by
# size, and `kaizen logs`: the list, the last lines of one, and -f
# following new lines across rotations (a 4096-byte log.max_size and
# debug logging make the demo agent's log rotate every few seconds).
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-demo; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T" # the embedded cluster's user must reach $T/state/db
cd "$T" || fail "cd $T"
kz_config <<'EOF'
log:
  level: debug
  max_size: 4096
  keep: 2
agents:
  - name: demo
    interval: 1s
EOF
L=$T/state/logs
kz_at_exit "\"$K\" down --timeout 30s"

"$K" up >"$T/up.out" 2>&1 || fail "kaizen up: $(cat "$T/up.out")"

# --- the list names every process's log
"$K" logs >"$T/list.out" 2>&1 || fail "kaizen logs: $(cat "$T/list.out")"
for name in broker orchestrator demo.0 postgres; do
    grep -Eq "^$name +[0-9.]+ (B|KiB|MiB) +[0-9-]+ [0-9:]+ +$name\.log$" "$T/list.out" ||
        fail "kaizen logs does not list $name: $(cat "$T/list.out")"
done

# --- the last lines of one
kz_wait_for 30 sh -c "[ \$(wc -l <'$L/demo.0.log') -ge 5 ]" || fail "demo.0.log stays short"
"$K" logs demo.0 -n 5 >"$T/tail.out" 2>&1 || fail "kaizen logs demo.0 -n 5: $(cat "$T/tail.out")"
n=$(wc -l <"$T/tail.out")
[[ $n -ge 1 && $n -le 5 ]] || fail "logs -n 5 printed $n lines: $(cat "$T/tail.out")"
grep -q " demo@" "$T/tail.out" || fail "logs demo.0: not the agent's lines: $(cat "$T/tail.out")"
# an agent's name covers its instances
"$K" logs demo -n 1 >"$T/agent.out" 2>&1 || fail "kaizen logs demo: $(cat "$T/agent.out")"
grep -q " demo@" "$T/agent.out" || fail "logs demo: $(cat "$T/agent.out")"

# --- -f follows new lines, and goes on after a rotation
ino() { stat -c %i "$L/demo.0.log" 2>/dev/null; }
first_ino=$(ino)
kz_start follow "$K" logs demo.0 -n 0 -f
kz_wait_for 30 grep -q " demo@" "$T/follow.log" || fail "logs -f shows no new line"
# wait for a rotation of demo.0.log, then for a line of the new file
kz_wait_for 60 sh -c "[ -e '$L/demo.0.log.1' ] && [ \"\$(stat -c %i '$L/demo.0.log')\" != '$first_ino' ]" ||
    fail "demo.0.log was not rotated: $(ls -l "$L")"
kz_wait_for 60 sh -c "[ -s '$L/demo.0.log' ]" || fail "nothing written after the rotation"
after=$(head -n 1 "$L/demo.0.log")
[[ -n $after ]] || fail "no line after the rotation"
kz_wait_for 30 grep -qF -- "$after" "$T/follow.log" ||
    fail "logs -f lost the file at the rotation (waiting for '$after'): $(tail -5 "$T/follow.log")"
# keep 2: at most demo.0.log.1 and .2
kz_wait_for 60 test -e "$L/demo.0.log.2" || fail "no second rotation: $(ls -l "$L")"
[[ -e $L/demo.0.log.3 ]] && fail "log.keep 2 kept a third file"
# no line twice (each has its own timestamp)
dups=$(grep " demo@" "$T/follow.log" | sort | uniq -d | head -3)
[[ -z $dups ]] || fail "logs -f printed lines twice: $dups"
# SIGINT ends it with exit 0
kill -INT "$PID_follow"
wait "$PID_follow"
rc=$?
[[ $rc -eq 0 ]] || fail "logs -f exited $rc after SIGINT"

"$K" down >"$T/down.out" 2>&1 || fail "kaizen down: $(cat "$T/down.out")"
# sanitizer builds: the daemons' reports land in their log files
bad=$(grep -l -E "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:" "$L"/*.log* 2>/dev/null | grep -v postgres || true)
[[ -z $bad ]] || fail "sanitizer reports in: $bad: $(grep -h -A5 -E 'Sanitizer|runtime error:' -- "${bad%%$'\n'*}" | head -40)"
echo "ok"
