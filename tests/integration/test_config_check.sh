#!/usr/bin/env bash
# test_config_check.sh - what the config names is checked before anything
# starts (lib/kz_config_check.h): a target path that does not exist and a
# test program that is not installed each make `kaizen doctor`, `kaizen up`
# and `kaizen run-once` fail with "FILE:LINE:COL: KEY: ..." at the value's
# position, all problems listed, exit 1, and nothing started: no process,
# no state directory (so no database cluster, no pid file). A branch the
# repository lacks is refused the same way. A good config passes doctor's
# check.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x "$K" ]] || fail "kaizen not built"
command -v git >/dev/null || skip "git not installed"

git init -q -b main "$T/repo"
git -C "$T/repo" -c user.name=t -c user.email=t@example.com commit -q --allow-empty -m initial ||
    fail "git commit"

# the config: the line of each value is known (kz_config adds 6 lines first)
write_config() { # PATH TEST BRANCH
    kz_config <<EOF2
targets:
  - name: app
    path: $1
    branch: $3
    test: [$2, -q]
EOF2
}
# pos KEY [SKIP]: "LINE:COL" of KEY's value in $KAIZEN_CONFIG (SKIP more
# columns: the "[" of a flow list)
pos() {
    local n
    n=$(grep -n "^    $1: " "$KAIZEN_CONFIG" | cut -d: -f1)
    echo "$n:$((${#1} + 7 + ${2:-0}))"
}

nothing_started() { # WHAT
    [[ ! -e $T/state ]] || fail "$1: the state directory was created: $(ls -R "$T/state" | head)"
    local left
    left=$(pgrep -af "$T/" || true)
    [[ -z $left ]] || fail "$1: processes were started: $left"
}

# run_all NAME PATTERN: doctor, up and run-once each fail with PATTERN
run_all() {
    local cmd rc
    for cmd in doctor up run-once; do
        rc=0
        timeout 120 "$K" $cmd >"$T/$1-$cmd.out" 2>&1 || rc=$?
        ((rc == 1)) || fail "$1: kaizen $cmd exited $rc: $(cat "$T/$1-$cmd.out")"
        grep -qE -- "$2" "$T/$1-$cmd.out" || fail "$1: kaizen $cmd: no '$2': $(cat "$T/$1-$cmd.out")"
        nothing_started "$1: kaizen $cmd"
    done
    for cmd in up run-once; do
        grep -q "problem.* in the config: nothing started" "$T/$1-$cmd.out" ||
            fail "$1: kaizen $cmd does not say nothing started: $(cat "$T/$1-$cmd.out")"
    done
}

# --- a target path that does not exist
write_config "$T/missing" /bin/true main
cfg=$KAIZEN_CONFIG
run_all missing-path "^.*$cfg:$(pos path): targets\[0\]\.path: target app: '$T/missing': No such file"

# --- a test program that does not exist
write_config "$T/repo" kz-no-such-test-program main
run_all missing-test "$cfg:$(pos test 1): targets\[0\]\.test\[0\]: test program 'kz-no-such-test-program' of target app is not installed"

# --- a branch the repository lacks
write_config "$T/repo" /bin/true trunk
run_all missing-branch "$cfg:$(pos branch): targets\[0\]\.branch: target app: '$T/repo' has no branch 'trunk'"

# --- all of them at once: every problem listed, not the first only
kz_config <<EOF2
targets:
  - {name: one, path: $T/missing}
  - {name: two, path: $T/repo, test: [kz-no-such-test-program]}
EOF2
rc=0
"$K" up >"$T/both.out" 2>&1 || rc=$?
((rc == 1)) || fail "two problems: up exited $rc"
grep -q "targets\[0\]\.path:" "$T/both.out" && grep -q "targets\[1\]\.test\[0\]:" "$T/both.out" &&
    grep -q "2 problems in the config" "$T/both.out" || fail "not every problem listed: $(cat "$T/both.out")"
nothing_started "two problems"

# --- a good config passes the check
write_config "$T/repo" /bin/true main
rc=0
"$K" doctor >"$T/good.out" 2>&1 || rc=$?
grep -qE "^  ok +config semantics" "$T/good.out" || fail "good config: $(cat "$T/good.out")"
grep -q "FAIL *config semantics" "$T/good.out" && fail "good config has problems: $(cat "$T/good.out")"
echo "ok"
