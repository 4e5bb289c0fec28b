#!/usr/bin/env bash
# test_cli_commands.sh - the lifecycle commands' command line: --help of
# every command, exit 2 for unknown flags, exit 1 with FILE:LINE:COL for
# a broken config, clear messages for an unreachable database and for
# nothing running, and `kaizen doctor`'s checks (a missing agent program
# is MISSING with the command that fixes it).
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x $K ]] || skip "kaizen is not built"
unset KAIZEN_CONFIG KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
cd "$T" || fail "cd $T"

expect() { # expect RC CMD... : run CMD, output in $T/out and $T/err
    local want=$1; shift
    timeout 60 "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/out" "$T/err")"
}

# --- every command's --help: exit 0, a usage line, the exit codes
for c in up down status report doctor logs db monitor stats publish call keygen; do
    expect 0 "$K" "$c" --help
    grep -q "^usage: kaizen.* $c" "$T/out" || fail "$c --help: no usage line: $(head -3 "$T/out")"
    grep -q "exit codes" "$T/out" || fail "$c --help does not give the exit codes"
    expect 0 "$K" "$c" -h
done
declare -A flags=(
    [up]="--foreground"
    [down]="--timeout"
    [status]="--json --watch --timeout"
    [report]="--since --json --html"
    [logs]="--follow --lines NAME"
)
for c in "${!flags[@]}"; do
    expect 0 "$K" "$c" --help
    for f in ${flags[$c]}; do grep -q -- "$f" "$T/out" || fail "$c --help does not mention $f"; done
done
# the top-level help lists them
expect 0 "$K" --help
for c in up down status report logs doctor; do
    grep -q "^  $c " "$T/out" || fail "--help does not list $c"
done

# --- unknown flags and bad values: exit 2 with a hint
for c in up down status report doctor logs db monitor stats publish call keygen; do
    expect 2 "$K" "$c" --no-such-flag
    # (db takes its subcommand first and says so)
    [[ $c == db ]] || grep -q "unknown option '--no-such-flag'" "$T/err" || fail "$c: $(cat "$T/err")"
    grep -q "see 'kaizen $c --help'" "$T/err" || fail "$c: no hint: $(cat "$T/err")"
done
expect 2 "$K" report --since forever
grep -q "invalid duration 'forever'" "$T/err" || fail "report --since: $(cat "$T/err")"
expect 2 "$K" down --timeout -1
expect 2 "$K" logs -n many demo
expect 2 "$K" status --watch 1parsec
expect 2 "$K" status extra

# --- a broken config: exit 1 naming FILE:LINE:COL, nothing starts
printf 'state_dir: %s/state\nbus:\n  endpoints: [unclosed\n' "$T" >"$T/bad.yaml"
for c in up status report doctor down logs; do
    expect 1 "$K" -c "$T/bad.yaml" "$c"
    grep -Eq "bad\.yaml:[0-9]+:[0-9]+" "$T/err" || fail "$c with a bad config: $(cat "$T/err")"
done
# after the command too
for c in up status report doctor; do
    expect 1 "$K" "$c" -c "$T/bad.yaml"
    grep -Eq "bad\.yaml:[0-9]+:[0-9]+" "$T/err" || fail "$c -c with a bad config: $(cat "$T/err")"
done
[[ -e $T/state ]] && fail "a bad config created the state directory"

# --- nothing running
kz_config <<EOF
agents:
  - name: demo
EOF
# (expect's `timeout 60` catches a status that would wait forever)
expect 1 "$K" status
grep -q "kaizen status: kaizen is not running (no answer from kaizen.status on $KZ_ROUTER)" "$T/err" ||
    fail "status with nothing running: $(cat "$T/err")"
expect 1 "$K" status --json
expect 0 "$K" down
grep -q "kaizen is not running" "$T/out" || fail "down with nothing running: $(cat "$T/out")"

# --- report with an unreachable database: one clear line, exit 1
port=$(kz_port)
kz_config <<EOF
database:
  dsn: "postgresql://kaizen@127.0.0.1:$port/kaizen"
  connect_timeout: 2s
EOF
expect 1 "$K" report
grep -q "^kaizen report: database unreachable (postgresql://kaizen@127.0.0.1:$port/kaizen)" "$T/err" ||
    fail "report with an unreachable DSN: $(cat "$T/err")"
[[ $(wc -l <"$T/err") -le 2 ]] || fail "report: more than a clear message: $(cat "$T/err")"
expect 1 "$K" report --json
[[ -s $T/out ]] && fail "report --json printed a document without a database"
# a DSN with a password: never printed
KAIZEN_DATABASE_URL="postgresql://kaizen:s3cret@127.0.0.1:$port/kaizen" expect 1 "$K" report
grep -q s3cret "$T/err" && fail "the password was printed: $(cat "$T/err")"
grep -q "database unreachable" "$T/err" || fail "report with KAIZEN_DATABASE_URL: $(cat "$T/err")"

# --- doctor: one line per check, ok/MISSING/FAIL/off/skip; a missing
# agent program is MISSING with its fix
kz_config <<EOF
agents:
  - name: demo
  - name: no-such-agent
EOF
"$K" doctor >"$T/out" 2>"$T/err"
rc=$?
[[ $rc -eq 1 ]] || fail "doctor with a missing agent exited $rc: $(cat "$T/out" "$T/err")"
checks=$(grep -Ec '^  (ok|MISSING|FAIL|off|skip) ' "$T/out")
((checks >= 8)) || fail "doctor: only $checks checks: $(cat "$T/out")"
for what in "config" "program kaizen-broker" "program kaizen-orchestrator" "agent kaizen-demo" \
    "state directory" "database" "broker" "CURVE keys"; do
    grep -Eq "^  (ok|MISSING|FAIL|off|skip) +$what " "$T/out" || fail "doctor does not check '$what': $(cat "$T/out")"
done
grep -Eq "^  ok +agent kaizen-demo +$KZ_BIN/kaizen-demo" "$T/out" || fail "doctor: demo: $(cat "$T/out")"
grep -A1 -E "^  MISSING +agent kaizen-no-such-agent " "$T/out" >"$T/missing"
grep -q "$KZ_BIN/kaizen-no-such-agent not found" "$T/missing" || fail "doctor: $(cat "$T/out")"
grep -Eq "^ +fix: .*'no-such-agent'.* $T/kaizen.yaml" "$T/missing" || fail "doctor gives no fix: $(cat "$T/missing")"
# every problem line is followed by its fix
awk '/^  (MISSING|FAIL) / { want = 1; next } want && !/fix: / { bad = 1 } { want = 0 } END { exit bad }' "$T/out" ||
    fail "a problem without a fix: $(cat "$T/out")"
grep -Eq "^[0-9]+ checks, [0-9]+ problems? found" "$T/out" || fail "doctor: no summary: $(tail -3 "$T/out")"
# nothing running is 'off', not a problem
grep -Eq "^  off +broker +not running" "$T/out" || fail "doctor: broker: $(cat "$T/out")"

# with only the demo agent nothing kaizen itself needs is missing on a
# machine that builds kaizen; the remaining problems (if any) are
# packages, and each names its apt-get line
kz_config <<EOF
agents:
  - name: demo
EOF
"$K" doctor >"$T/out" 2>"$T/err"
rc=$?
if [[ $rc -ne 0 ]]; then
    grep -E "^  (MISSING|FAIL) " "$T/out" | grep -Ev "^  MISSING +package " &&
        fail "doctor on a healthy setup: $(cat "$T/out")"
    grep -q "apt-get install -y" "$T/out" || fail "doctor: no apt-get line: $(cat "$T/out")"
fi
# targets' languages bring their tools: a missing one names its package
kz_config <<EOF
targets:
  - name: t
    path: $T
    languages: [shell]
EOF
PATH=/nonexistent "$K" doctor >"$T/out" 2>"$T/err"
grep -A1 -E "^  MISSING +tool shellcheck " "$T/out" | grep -q "fix: apt-get install -y shellcheck" ||
    fail "doctor: shellcheck: $(cat "$T/out")"
# with tool and fixer recipes, doctor checks the recipes' programs (and the
# module of a "python3 -m MOD" recipe) instead of the built-in list
kz_config <<EOF
targets:
  - name: t
    path: $T
    languages: [python]
tools:
  - name: shellcheck
    argv: [shellcheck, -f, gcc, "{files}"]
    format: gcc
  - name: bandit
    argv: [/usr/bin/python3, -m, kz_no_such_module, "{files}"]
    format: gcc
fixers:
  - name: gone
    tool: shellcheck
    argv: [kz-no-such-fixer, "{files}"]
EOF
"$K" doctor >"$T/out" 2>"$T/err"
grep -A1 -E "^  MISSING +tool bandit +/usr/bin/python3 has no module 'kz_no_such_module'" "$T/out" |
    grep -q "fix: apt-get install -y bandit" || fail "doctor: recipe module: $(cat "$T/out")"
grep -A1 -E "^  MISSING +fixer gone +program not found" "$T/out" | grep -q "kz-no-such-fixer" ||
    fail "doctor: fixer program: $(cat "$T/out")"
grep -Eq "^  (ok|MISSING) +tool shellcheck " "$T/out" || fail "doctor: recipe shellcheck: $(cat "$T/out")"

# --- logs with nothing there yet, and an unknown name
expect 0 "$K" logs
grep -q "no log files" "$T/out" || fail "logs with no logs: $(cat "$T/out")"
mkdir -p "$T/state/logs" && echo "a line" >"$T/state/logs/broker.log"
expect 1 "$K" logs nosuch
grep -q "no log named 'nosuch' (available: broker)" "$T/err" || fail "logs nosuch: $(cat "$T/err")"
echo "ok"
