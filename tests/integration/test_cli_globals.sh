#!/usr/bin/env bash
# test_cli_globals.sh - the global options (-c/--config, --log-level,
# --log-format) work before the command, right after its name, after its
# arguments and after nested subcommand words, for every command: a
# broken config named in any position stops the command with its
# FILE:LINE:COL (so the option was taken), a bad log level or format is a
# usage error naming it, a good config is the one used, and a command's
# own option value that looks like a global option stays the command's.
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

printf 'state_dir: %s/state\nbus:\n  heartbeat: 1s\n  bogus_key: 3\n' "$T" >"$T/bad.yaml"
# a good config whose endpoints nobody serves, and an empty state directory
kz_config "$T/good.yaml" <<EOF
database:
  connect_timeout: 2s
EOF
unset KAIZEN_CONFIG

# Every command with typical arguments; "|" marks the places a global
# option may go besides the front: after the command name, between its
# words, and at the end. (Nothing here reaches a server: the broken
# config stops each command first.)
commands=(
    "up|--foreground|"
    "down|--timeout 5s|"
    "status|--json|"
    "status|--watch 1s|"
    "run-once|--target x|"
    "plans|--state ready|"
    "plans|show|01ABC|--json|"
    "approve|01ABC|"
    "reject|01ABC|--why 'not now'|"
    "report|--since 1h|--json|"
    "logs|demo.0|-n 5|"
    "doctor|"
    "db|migrate|"
    "db|start|--timeout 5s|"
    "db|stop|"
    "db|status|--json|"
    "monitor|--count 1|"
    "stats|--json|"
    "publish|agent.run|{}|"
    "call|kaizen.status|{}|"
)

# at_pos POS OPTION...: the words of the current command with OPTION...
# inserted at POS (0 = before the command, i = after its first i words)
at_pos() {
    local pos=$1 i
    shift
    argv=()
    ((pos == 0)) && argv+=("$@")
    for ((i = 0; i < n; i++)); do
        [[ -n ${words[i]} ]] && eval "argv+=(${words[i]})"
        ((pos == i + 1)) && argv+=("$@")
    done
}

checked=0
for spec in "${commands[@]}"; do
    IFS='|' read -r -a words <<<"$spec"
    n=${#words[@]}
    # -c in every position; --config FILE at the end, --config=FILE in front
    for ((pos = 0; pos <= n; pos++)); do
        for form in "-c $T/bad.yaml" "--config $T/bad.yaml" "--config=$T/bad.yaml"; do
            [[ $form == "--config $T/bad.yaml" && $pos -ne n ]] && continue
            [[ $form == "--config=$T/bad.yaml" && $pos -ne 0 ]] && continue
            read -r -a g <<<"$form"
            at_pos "$pos" "${g[@]}"
            expect 1 "$K" "${argv[@]}"
            grep -q "^kaizen: $T/bad.yaml:4:[0-9]*: bus.bogus_key" "$T/err" ||
                fail "'kaizen ${argv[*]}': the config was not taken: $(cat "$T/err")"
            checked=$((checked + 1))
        done
    done
    # the log options (taken by the same code as -c): a bad value is a
    # usage error naming it, exit 2 - after the command's name, and last
    at_pos 1 --log-format xml
    expect 2 "$K" -c "$T/good.yaml" "${argv[@]}"
    grep -q "unknown log format 'xml'" "$T/err" || fail "'kaizen ${argv[*]}': $(cat "$T/err")"
    at_pos "$n" --log-level loud
    expect 2 "$K" -c "$T/good.yaml" "${argv[@]}"
    grep -q "unknown log level 'loud'" "$T/err" || fail "'kaizen ${argv[*]}': $(cat "$T/err")"
done
((checked >= 100)) || fail "only $checked positions checked"

# keygen loads no config, but takes the options anywhere all the same
expect 0 "$K" keygen k1 -c "$T/bad.yaml" --dir "$T/keys" --log-level debug
expect 0 "$K" --log-format json keygen -c "$T/good.yaml" k2 --dir "$T/keys"
[[ -s $T/keys/k1.key && -s $T/keys/k2.key_secret ]] || fail "keygen wrote nothing: $(ls "$T/keys")"
expect 2 "$K" keygen k3 --dir "$T/keys" --log-level loud

# the good config is the one used, in every position
expect 1 "$K" db status -c "$T/good.yaml"
grep -q "$T/state/db" "$T/out" || fail "db status -c: not the given state dir: $(cat "$T/out")"
expect 1 "$K" db --config "$T/good.yaml" status --json
grep -q "\"data_dir\": *\"$T/state/db/data\"" "$T/out" || fail "db --config status: $(cat "$T/out")"
mkdir -p "$T/state/logs" && echo "a line" >"$T/state/logs/demo.0.log"
expect 0 "$K" logs demo.0 -c "$T/good.yaml" -n 1
[[ $(cat "$T/out") == "a line" ]] || fail "logs NAME -c: $(cat "$T/out" "$T/err")"
expect 1 "$K" status --timeout 200ms --config="$T/good.yaml"
grep -qF "no answer from kaizen.status on $KZ_ROUTER" "$T/err" || fail "status --config=: $(cat "$T/err")"
# the last one wins, as with any option
expect 1 "$K" -c "$T/bad.yaml" status --timeout 200ms -c "$T/good.yaml"
grep -qF "no answer from kaizen.status on $KZ_ROUTER" "$T/err" || fail "two -c: $(cat "$T/err")"
# a cluster of short options: -f stays the command's ("-f needs a NAME")
expect 2 "$K" logs -fc "$T/good.yaml"
grep -q "kaizen logs: -f needs a NAME" "$T/err" || fail "logs -fc FILE: $(cat "$T/err")"

# a command option's value is never taken for a global option
expect 1 "$K" -c "$T/good.yaml" reject 01ABC --why -c
grep -q "database unreachable" "$T/err" || fail "reject --why -c: $(cat "$T/err")"
expect 2 "$K" -c "$T/good.yaml" logs -n -c demo.0
grep -q "invalid line count '-c'" "$T/err" || fail "logs -n -c: $(cat "$T/err")"
# nor is anything after "--"
expect 1 "$K" -c "$T/good.yaml" logs -- -c
grep -q "no log named '-c'" "$T/err" || fail "logs -- -c: $(cat "$T/err")"

# a global option without its value, in any position: exit 2, named
for argv in "status -c" "plans show 01ABC --config" "db status --log-level" "--log-format"; do
    read -r -a a <<<"$argv"
    expect 2 "$K" "${a[@]}"
    grep -q "needs a value" "$T/err" || fail "'kaizen $argv': $(cat "$T/err")"
done
expect 2 "$K" status --config=
grep -q "option '--config' needs a value" "$T/err" || fail "--config=: $(cat "$T/err")"

# an unknown option is still the command's to report
expect 2 "$K" plans show 01ABC -c "$T/good.yaml" --bogus
grep -q "kaizen plans: unknown option '--bogus'" "$T/err" || fail "plans show --bogus: $(cat "$T/err")"
# and the help of every command names the global options
for c in init up down status run-once plans approve reject report logs doctor db monitor stats publish call keygen; do
    expect 0 "$K" "$c" --help -c "$T/bad.yaml"
    grep -q "before or after the command" "$T/out" || fail "$c --help does not explain the global options"
    grep -q -- "--log-format" "$T/out" || fail "$c --help does not name --log-format"
done
echo ok
