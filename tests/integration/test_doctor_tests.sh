#!/usr/bin/env bash
# test_doctor_tests.sh - `kaizen doctor` says, for each target with a test
# command, whether its tests can run at the head of its branch, with real
# git and /usr/bin/python3's pytest:
# - with no state directory yet it runs each suite in a temporary
#   worktree of its own (and says so), removed afterwards; a usable suite
#   is "ok", a conftest importing a missing module and a src-layout
#   project importing Debian's installed msgpack are FAIL lines with the
#   reason and the fix, and doctor exits 1; a target without a test
#   command or not created yet is "skip";
# - with a state directory it uses the test runner's base cache
#   (STATE/test-runner/<target>/<commit>.json): a usable base is read
#   from it ("cached", no run), an unusable one is checked again;
# - a fix committed on the branch (or targets[].env PYTHONPATH=src) turns
#   the FAIL into ok;
# - nothing is left: no worktree registered, no temporary directory.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x "$K" ]] || fail "kaizen not built"
command -v git >/dev/null || skip "git not installed"
PY=/usr/bin/python3
"$PY" -m pytest --version >/dev/null 2>&1 || skip "pytest not installed for /usr/bin/python3"
installed=$("$PY" -c 'import msgpack; print(msgpack.__file__)' 2>/dev/null) ||
    skip "no msgpack for /usr/bin/python3 (apt-get install -y python3-msgpack)"
[[ $installed == /usr/* ]] || skip "msgpack is not an installed copy: $installed"

git_c() { git -C "$1" -c user.name=t -c user.email=t@example.com "${@:2}"; }
mk_repo() { # NAME FILE TEXT [FILE TEXT ...]
    local repo=$T/$1; shift
    mkdir -p "$repo"
    while (($#)); do
        mkdir -p "$(dirname "$repo/$1")"
        printf '%b' "$2" >"$repo/$1"
        shift 2
    done
    git -C "$repo" init -q -b main
    git -C "$repo" add -A
    git_c "$repo" commit -qm "initial" || fail "git commit in $repo"
}
ok_test='def test_ok():\n    assert True\n'
mk_repo good tests/test_a.py "$ok_test" tests/test_b.py "$ok_test"
mk_repo broken tests/conftest.py 'import kz_missing_module\n' tests/test_x.py "$ok_test"
mk_repo srclayout src/msgpack/__init__.py 'KAIZEN = "worktree"\n' \
    tests/test_m.py 'import msgpack\n\n\ndef test_import():\n    assert msgpack\n'
head_broken=$(git -C "$T/broken" rev-parse main)
head_good=$(git -C "$T/good" rev-parse main)

pytest_cmd='[/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]'
write_config() { # SRC-ENV
    kz_config <<EOF
targets:
  - {name: good, path: $T/good, test: $pytest_cmd, test_timeout: 2m}
  - {name: broken, path: $T/broken, test: $pytest_cmd, test_timeout: 2m}
  - {name: src, path: $T/srclayout, test: $pytest_cmd, test_timeout: 2m, env: [$1]}
  - {name: notests, path: $T/good}
  - {name: later, path: $T/not-yet, init_from: $T/good, test: $pytest_cmd}
EOF
}
write_config "LANG=C.UTF-8"
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

doctor() { # NAME: kaizen doctor's output in $T/NAME.out, its exit code in $rc
    rc=0
    "$K" doctor >"$T/$1.out" 2>"$T/$1.err" || rc=$?
}
# line NAME WORD WHAT PATTERN: the output of NAME has the check line
line() {
    grep -Eq "^  $2 +$3 +$4" "$T/$1.out" || fail "$1: no '$2 $3 $4' line: $(cat "$T/$1.out" "$T/$1.err")"
}
# fix NAME WHAT TEXT: the line after WHAT's FAIL line is its fix, holding TEXT
fix() {
    grep -A1 -E "^  FAIL +$2 " "$T/$1.out" | tail -1 | grep -qF "fix: $3" ||
        fail "$1: no fix '$3' for $2: $(cat "$T/$1.out")"
}

# --- no state directory: temporary worktrees
[[ ! -e $T/state ]] || fail "the state directory exists already"
doctor first
((rc == 1)) || fail "doctor with suites that cannot run exited $rc: $(cat "$T/first.out")"
line first '\.\.\.' "tests of good" "running the test command at ${head_good:0:12} in a temporary worktree \(removed after"
line first ok "tests of good" "can run at ${head_good:0:12} of main: 2 passed, 0 failed, 0 skipped \(junit; ran now\)"
line first FAIL "tests of broken" "cannot run at ${head_broken:0:12} of main: 0 tests ran \(exit 4\): ImportError while loading conftest 'tests/conftest.py': ModuleNotFoundError: No module named 'kz_missing_module'"
fix first "tests of broken" "install the module 'kz_missing_module'"
line first FAIL "tests of src" "cannot run at [0-9a-f]{12} of main: the tests import 'msgpack' from $installed, not from the worktree"
fix first "tests of src" "set targets[].env, e.g. [PYTHONPATH=src]"
line first skip "tests of notests" "no test command"
line first skip "tests of later" "not created yet"
[[ ! -e $T/state ]] || fail "doctor created the state directory"
[[ -z $(ls -A "$TMPDIR") ]] || fail "temporary directories left: $(ls -A "$TMPDIR")"
for r in good broken srclayout; do
    n=$(git -C "$T/$r" worktree list | wc -l)
    ((n == 1)) || fail "worktrees left in $r: $(git -C "$T/$r" worktree list)"
done

# --- a state directory: the base cache is written, then read
mkdir -p "$T/state"
doctor second
((rc == 1)) || fail "second doctor exited $rc"
line second '\.\.\.' "tests of good" "running the test command at ${head_good:0:12} in a temporary worktree under the state directory"
line second ok "tests of good" ".*\(junit; ran now\)"
[[ -f $T/state/test-runner/good/$head_good.json ]] || fail "no base cache for good"
[[ -f $T/state/test-runner/broken/$head_broken.json ]] || fail "no base cache for broken"
doctor third
((rc == 1)) || fail "third doctor exited $rc"
line third ok "tests of good" "can run at ${head_good:0:12} of main: 2 passed, 0 failed, 0 skipped \(junit; cached\)"
grep -Eq '^  \.\.\. +tests of good ' "$T/third.out" && fail "doctor ran the cached usable base again"
# an unusable base is checked again, not taken from the cache
line third '\.\.\.' "tests of broken" "running the test command"
line third FAIL "tests of broken" "cannot run at ${head_broken:0:12}"

# --- the fixes: a commit on the branch, targets[].env
printf 'X = 1\n' >"$T/broken/tests/conftest.py"
git_c "$T/broken" commit -qam "fix the conftest" || fail "commit the fix"
head_fixed=$(git -C "$T/broken" rev-parse main)
write_config "PYTHONPATH=src"
doctor fixed
line fixed ok "tests of broken" "can run at ${head_fixed:0:12} of main: 1 passed"
line fixed ok "tests of src" "can run at [0-9a-f]{12} of main: 1 passed"
line fixed ok "tests of good" ".*cached"
grep -Eq '^  FAIL +tests of' "$T/fixed.out" && fail "a FAIL left: $(cat "$T/fixed.out")"
for r in good broken srclayout; do
    n=$(git -C "$T/$r" worktree list | wc -l)
    ((n == 1)) || fail "worktrees left in $r: $(git -C "$T/$r" worktree list)"
done
left=$(find "$T/state/worktrees" -mindepth 2 -maxdepth 2 2>/dev/null)
[[ -z "$left" ]] || fail "worktree directories left: $left"
echo "ok"
