#!/usr/bin/env bash
# test_cli.sh - the `kaizen` dispatcher: help for every command, exit codes
# for usage errors (2) and runtime errors (1), config errors with
# file:line:col, and `kaizen stats` with and without a broker.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x $K ]] || skip "kaizen is not built"
unset KAIZEN_CONFIG
cd "$T" || fail "cd $T"

expect() { # expect RC CMD... : run CMD, output in $T/out and $T/err
    local want=$1; shift
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/out" "$T/err")"
}

# top-level help and version
expect 0 "$K" --help
for c in monitor stats keygen; do grep -q "^  $c " "$T/out" || fail "--help does not list $c"; done
grep -q "exit codes" "$T/out" || fail "--help does not explain exit codes"
expect 0 "$K" -h
expect 0 "$K" --version
grep -Eq '^kaizen [0-9]+\.[0-9]+' "$T/out" || fail "--version: $(cat "$T/out")"
expect 2 "$K"
grep -q usage "$T/err" || fail "no command: no usage on stderr"

# every command's --help exits 0 and names its flags
declare -A flags=(
    [monitor]="--topic --exclude --json --stats --count --path --endpoint --no-color"
    [stats]="--json --timeout"
    [keygen]="--dir --force NAME"
)
for c in "${!flags[@]}"; do
    expect 0 "$K" "$c" --help
    for f in ${flags[$c]}; do grep -q -- "$f" "$T/out" || fail "$c --help does not mention $f"; done
    grep -q "exit codes" "$T/out" || fail "$c --help does not give exit codes"
    expect 0 "$K" "$c" -h
done

# usage errors: exit 2, one clear line plus a hint, nothing on stdout
expect 2 "$K" frobnicate
grep -q "'frobnicate' is not a kaizen command" "$T/err" || fail "unknown command message: $(cat "$T/err")"
grep -q "kaizen --help" "$T/err" || fail "unknown command: no hint"
[[ -s $T/out ]] && fail "usage error wrote to stdout"
expect 2 "$K" --bogus-flag
grep -q "unknown option '--bogus-flag'" "$T/err" || fail "unknown global flag: $(cat "$T/err")"
expect 2 "$K" monitor --bogus-flag
grep -q "kaizen monitor: unknown option '--bogus-flag'" "$T/err" || fail "monitor flag: $(cat "$T/err")"
grep -q "kaizen monitor --help" "$T/err" || fail "monitor flag: no hint"
expect 2 "$K" stats --frob
expect 2 "$K" keygen --frob x
expect 2 "$K" keygen
grep -q "missing NAME" "$T/err" || fail "keygen without NAME: $(cat "$T/err")"
expect 2 "$K" monitor --count
grep -q "needs a value" "$T/err" || fail "missing value: $(cat "$T/err")"
expect 2 "$K" monitor --count -3
expect 2 "$K" monitor --path event,bogus
expect 2 "$K" monitor extra-arg
expect 2 "$K" stats --timeout soon
expect 2 "$K" --log-level loud stats
expect 2 "$K" --log-format xml stats

# bad config: exit 1 with file:line:col, also through $KAIZEN_CONFIG
printf 'bus:\n  heartbeat: 1s\n  bogus_key: 3\n' >"$T/bad.yaml"
expect 1 "$K" -c "$T/bad.yaml" stats
grep -q "$T/bad.yaml:3:[0-9]*: bus.bogus_key" "$T/err" || fail "bad config message: $(cat "$T/err")"
printf 'bus:\n  endpoints: [\n' >"$T/broken.yaml"
KAIZEN_CONFIG=$T/broken.yaml expect 1 "$K" monitor
grep -Eq "$T/broken.yaml:[0-9]+:[0-9]+: " "$T/err" || fail "yaml syntax message: $(cat "$T/err")"
expect 1 "$K" -c "$T/missing.yaml" stats
grep -q "missing.yaml" "$T/err" || fail "missing config: $(cat "$T/err")"
# help works even next to a broken config
KAIZEN_CONFIG=$T/broken.yaml expect 0 "$K" monitor --help

# stats without a broker: exit 1 with the clear message once its timeout is
# over (`timeout 60` only catches one that would wait forever: exit 124)
kz_config </dev/null
expect 1 timeout 60 "$K" stats
grep -qF "no answer from the broker at '$KZ_ROUTER' (is kaizen-broker running?)" "$T/err" ||
    fail "stats without a broker: $(cat "$T/err")"
expect 1 "$K" stats --json
[[ -s $T/out ]] && fail "stats --json without a broker wrote to stdout"

# stats with a broker: tables, and --json that parses
[[ -x $KZ_BIN/kaizen-broker && -x $KZ_TOOLS/kz_pub ]] || fail "kaizen-broker or kz_pub not built"
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "ready" 30 || fail "broker did not start"
"$KZ_TOOLS/kz_pub" cli.topic --count 4 >/dev/null || fail "kz_pub exited $?"
kz_wait_for 30 sh -c "'$K' stats | grep -q '^cli.topic  *4 '" || fail "stats never showed cli.topic: $("$K" stats 2>&1)"
expect 0 "$K" stats
for h in TOPIC SERVICE GROUP 'DROP REASON'; do grep -q "^$h " "$T/out" || fail "stats: no $h table"; done
grep -q "up [0-9]*d" "$T/out" || fail "stats: no uptime"
expect 0 "$K" stats --json
python3 - "$T/out" <<'PY' || fail "stats --json: $(cat "$T/out")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
s = json.loads(lines[0])
assert isinstance(s["uptime_ms"], int) and s["uptime_ms"] >= 0
assert s["topics"]["cli.topic"]["msgs"] == 4, s["topics"]
assert s["topics"]["cli.topic"]["bytes"] > 0
for k in ("services", "groups", "drops"):
    assert isinstance(s[k], dict), k
PY
echo ok
