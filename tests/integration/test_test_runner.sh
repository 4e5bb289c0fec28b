#!/usr/bin/env bash
# test_test_runner.sh - kaizen-test-runner (validate.tests) with a real
# broker, real git and the real test suites of the samples: on copies of
# examples/python-sample (JUnit XML from pytest) and examples/c-sample
# (PASS:/FAIL: lines and "N passed, N failed"), a commit whose fix breaks a
# test is rejected with that test named, a safe one passes, the base runs
# once per commit (STATE/test-runner/<target>/<commit>.json) and is read
# from the cache afterwards, a test that hangs is killed after
# test_timeout (reject "timed out", nothing left running), an unknown
# target, a target without a test command and a missing commit answer
# "error", a base whose output gives no test count answers "error" with
# cause "suite", a commit that is not a plan's (not the head of
# kaizen/plan-<id>, the base itself, a base off main or one it does not
# descend from) answers "error" without running anything, and no worktree
# is left behind. (Bases that cannot run:
# test_test_runner_base.sh.)
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
AGENT="$KZ_BIN/kaizen-test-runner"
[[ -x "$AGENT" && -x "$K" && -x "$KZ_BIN/kaizen-broker" ]] || fail "kaizen, kaizen-broker or kaizen-test-runner not built"
command -v git >/dev/null || skip "git not installed"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "pytest not installed for /usr/bin/python3"
{ command -v make && command -v cc; } >/dev/null || skip "make or cc not installed"
command -v codespell >/dev/null || skip "codespell not installed"
for s in python-sample c-sample; do
    [[ -d "$KZ_ROOT/examples/$s" ]] || fail "examples/$s is missing"
done
PY=/usr/bin/python3

git_c() { git -C "$1" -c user.name=t -c user.email=t@example.com "${@:2}"; }
mk_repo() { # SRC DEST
    mkdir -p "$2"
    cp -r "$1/." "$2/"
    git -C "$2" init -q -b main
    git -C "$2" add -A
    git_c "$2" commit -qm "initial" || fail "git commit in $2"
    git -C "$2" clean -qfdx
}
# branch NAME in REPO from main, CMD... run there (no shell), committed
mk_branch() { # REPO NAME CMD...
    local repo=$1 name=$2; shift 2
    git -C "$repo" checkout -q -b "$name" main || fail "checkout -b $name"
    (cd "$repo" && "$@") >/dev/null 2>&1
    git -C "$repo" add -A
    git_c "$repo" commit -qm "$name" || fail "nothing to commit on $name"
    git -C "$repo" rev-parse HEAD
    git -C "$repo" checkout -q main
}

mk_repo "$KZ_ROOT/examples/python-sample" "$T/py"
mk_repo "$KZ_ROOT/examples/c-sample" "$T/c"
base_py=$(git -C "$T/py" rev-parse HEAD)
base_c=$(git -C "$T/c" rev-parse HEAD)
# the planted breaking fix, a safe fix, and a test that never ends
breaks_py=$(mk_branch "$T/py" breaks codespell -w -- textkit/receipt.py)
safe_py=$(mk_branch "$T/py" safe "$PY" -m black --quiet -- textkit/counter.py)
printf 'import time\n\n\ndef test_hangs():\n    time.sleep(600)\n' >"$T/test_hang.py"
hang_py=$(mk_branch "$T/py" hang cp "$T/test_hang.py" tests/test_hang.py)
breaks_c=$(mk_branch "$T/c" breaks codespell -w -- src/errors.c)
safe_c=$(mk_branch "$T/c" safe clang-format -i -- src/ring.c)
for c in "$breaks_py" "$safe_py" "$hang_py" "$breaks_c" "$safe_c"; do
    [[ $c =~ ^[0-9a-f]{40}$ ]] || fail "a branch commit was not made: '$c'"
done
git -C "$T/py" diff --quiet main breaks -- tests || fail "the breaking fix should not touch tests"
head_py=$(git -C "$T/py" rev-parse HEAD)
status_py=$(git -C "$T/py" status --porcelain)

# a fake suite for the other report formats: the test command prints the
# commit's out.txt, copies its junit.xml (when there is one) to {junit} and
# exits with its rc.txt; each case is a base commit and a child commit
printf '#!/bin/sh\n[ -f junit.xml ] && cp junit.xml "$1"\ncat out.txt\nexit "$(cat rc.txt)"\n' >"$T/fake-tests"
chmod +x "$T/fake-tests"
mkdir -p "$T/fake" && git -C "$T/fake" init -q -b main
# fake_commit NAME OUT RC [JUNIT]: a commit on branch NAME (made from main's
# root when new, else on its tip) holding these files; prints its id
fake_commit() {
    local repo=$T/fake
    if git -C "$repo" rev-parse -q --verify "refs/heads/$1" >/dev/null; then
        git -C "$repo" checkout -q "$1"
    else
        git -C "$repo" checkout -q --orphan "$1"
        git -C "$repo" rm -rqf . 2>/dev/null
    fi
    printf '%b' "$2" >"$repo/out.txt"
    echo "$3" >"$repo/rc.txt"
    rm -f "$repo/junit.xml"
    [[ -n "${4:-}" ]] && printf '%s' "$4" >"$repo/junit.xml"
    git -C "$repo" add -A
    git_c "$repo" commit -qm "$1" --allow-empty || fail "fake commit $1"
    git -C "$repo" rev-parse HEAD
}
fb_pytest=$(fake_commit pytest '....\n========== 10 passed, 2 skipped in 0.12s ==========\n' 0)
fc_pytest=$(fake_commit pytest '.F..\nFAILED tests/test_a.py::test_x\n===== 1 failed, 9 passed, 2 skipped in 0.13s =====\n' 1)
fb_ctest=$(fake_commit ctest 'Test #1: a ... Passed\n100% tests passed, 0 tests failed out of 5\n' 0)
fc_ctest=$(fake_commit ctest '80% tests passed, 1 tests failed out of 5\n' 8)
fb_tap=$(fake_commit tap '1..3\nok 1 - alpha\nok 2 - beta\nok 3 - gamma # SKIP no network\n' 0)
fc_tap=$(fake_commit tap '1..3\nok 1 - alpha\nnot ok 2 - beta\nnot ok 3 - gamma # TODO later\n' 1)
fb_exit=$(fake_commit exit 'all good\n5 passed, 0 failed\n' 0)
fc_exit=$(fake_commit exit 'checking\n\377\376 broken \001 output\n' 3)
# a base whose output gives no count: it cannot show that a test ran
fb_nocount=$(fake_commit nocount 'all good\n' 0)
fc_nocount=$(fake_commit nocount 'still good\n' 0)
junit_base='<?xml version="1.0"?><testsuites><testsuite name="s"><testcase file="t/a.c" name="one"/><testcase classname="k" name="two"/><testsuite name="inner"><testcase classname="k" name="three"/></testsuite></testsuite></testsuites>'
junit_new='<?xml version="1.0"?><testsuite name="s"><testcase file="t/a.c" name="one"><skipped/></testcase><testcase classname="k" name="two"><error message="segfault&#10;more">trace</error></testcase></testsuite>'
fb_junit=$(fake_commit junit 'no summary here\n' 0 "$junit_base")
fc_junit=$(fake_commit junit 'no summary here\n' 1 "$junit_new")
fc_badxml=$(fake_commit junit 'PASS: one\nFAIL: two: it broke\n1 passed, 1 failed\n' 1 '<testsuite><testcase name="x">')
git -C "$T/fake" checkout -q main 2>/dev/null || true

kz_config <<EOF
  call_timeout: 3m
sandbox: # the fake test command lives in \$T, which the sandbox hides
  bind_ro: [$T/fake-tests]
targets:
  - name: py
    path: $T/py
    languages: [python]
    test: [$PY, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 2m
  - name: py-short
    path: $T/py
    test: [$PY, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 8s
  - name: c
    path: $T/c
    languages: [c]
    test: [make, -s, test]
    test_timeout: 2m
  - name: notests
    path: $T/py
  - name: gone
    path: $T/does-not-exist
    test: [true]
  - name: fake
    path: $T/fake
    test: [$T/fake-tests, "{junit}"]
    test_timeout: 1m
EOF
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start runner "$AGENT" -c "$KAIZEN_CONFIG" --log-level debug
served() { [[ $("$K" call mmi.service '"validate.tests"' --timeout 2s 2>/dev/null) == 200 ]]; }
kz_wait_for 30 served || fail "validate.tests is not served"

# repo_of TARGET: its repository
repo_of() {
    case $1 in
    py | py-short | notests) echo "$T/py" ;;
    c) echo "$T/c" ;;
    fake) echo "$T/fake" ;;
    *) echo "" ;;
    esac
}
# as_plan TARGET COMMIT BASE PLAN: make COMMIT a plan's commit, as the
# refactorer would have: the head of branch kaizen/plan-PLAN; and, in the
# fake repository (whose cases sit on branches of their own), BASE the
# head of main
as_plan() {
    local repo
    repo=$(repo_of "$1")
    [[ -n $repo ]] || return 0
    git -C "$repo" rev-parse -q --verify "$2^{commit}" >/dev/null || return 0
    git -C "$repo" branch -f "kaizen/plan-$4" "$2" || fail "unable to make branch kaizen/plan-$4"
    if [[ $1 == fake ]]; then
        git -C "$repo" branch -f main "$3" || fail "unable to move main of fake to $3"
    fi
}
# call NAME TARGET COMMIT BASE [PLAN]: the reply envelope in $T/NAME.json
# (COMMIT made the head of the plan's branch first); call_raw: as it is
call() {
    as_plan "$2" "$3" "$4" "${5:-plan-$1}"
    call_raw "$@"
}
call_raw() {
    local name=$1 target=$2 commit=$3 base=$4 plan=${5:-plan-$1}
    "$K" call validate.tests \
        "{\"plan_id\":\"$plan\",\"commit\":\"$commit\",\"base_commit\":\"$base\",\"target\":\"$target\"}" \
        --json --timeout 3m --retries 0 >"$T/$name.json" 2>"$T/$name.err" ||
        fail "call $name failed: $(cat "$T/$name.err" "$T/$name.json")"
}
# check NAME EXPR: python EXPR over the reply body b is true
check() {
    "$PY" - "$T/$1.json" "$2" <<'PY' || fail "$1: $2 is false; reply: $(cat "$T/$1.json")"
import json, sys
env = json.loads(open(sys.argv[1]).read())
b = env["body"]
ok = env["type"] == "validate.result" and b["validator"] == "test-runner" and eval(sys.argv[2])
sys.exit(0 if ok else 1)
PY
}

# the planted breaking fix: rejected, the failing test named
call breaks py "$breaks_py" "$base_py"
check breaks 'b["verdict"] == "reject" and b["plan_id"] == "plan-breaks"'
check breaks "b['commit'] == '$breaks_py'"
check breaks 'any("tests.test_receipt::test_receipt_line_matches_archive" in r and "fails" in r for r in b["reasons"])'
check breaks 'len(b["reasons"]) == 1'
check breaks 'b["details"]["newly_failing"] == ["tests.test_receipt::test_receipt_line_matches_archive"]'
check breaks 'b["details"]["base"]["source"] == "junit" and b["details"]["base"]["passed"] == 19'
check breaks 'b["details"]["now"]["failed"] == 1 and b["details"]["now"]["passed"] == 18'
check breaks 'not b["details"]["base"]["cached"]'
# the base results are cached per commit
cache="$T/state/test-runner/py/$base_py.json"
[[ -f "$cache" ]] || fail "no base cache $cache"
"$PY" - "$cache" "$base_py" <<'PY' || fail "bad base cache: $(head -c 600 "$cache")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["commit"] == sys.argv[2] and c["target"] == "py" and c["source"] == "junit", c
assert c["tests"]["tests.test_receipt::test_receipt_line_matches_archive"] == "passed"
assert len(c["tests"]) == 19 and c["passed"] == 19 and c["exit_code"] == 0
PY

# a safe fix passes, with the base from the cache
call safe py "$safe_py" "$base_py"
check safe 'b["verdict"] == "pass" and b.get("reasons", []) == []'
check safe 'b["details"]["base"]["cached"] and b["details"]["now"]["passed"] == 19'
[[ $(grep -c "running the tests of 'py' at ${base_py:0:12}" "$T/runner.log") -eq 1 ]] ||
    fail "the base of 'py' ran more than once"

# a test that hangs: killed after test_timeout, reject "timed out", nothing left running
call hang py-short "$hang_py" "$base_py"
check hang 'b["verdict"] == "reject" and any("timed out" in r for r in b["reasons"])'
check hang 'b["details"]["now"]["timed_out"]'
# (SIGKILL to its process group is delivered at once, but a process needs
# a moment to go: look until it is gone - by its report path, which names
# this test's state directory, from this shell, whose command line does not)
hang_gone() { ! pgrep -f -- "$T/state/test-runner/.*tests-plan-hang" >/dev/null; }
kz_wait_for 60 hang_gone || fail "the hanging test still runs: $(pgrep -af -- "$T/state/test-runner/.*tests-plan-hang")"

# the C sample: per-test lines, the failing test named
call cbreaks c "$breaks_c" "$base_c"
check cbreaks 'b["verdict"] == "reject" and any(r.startswith("test error_messages passed on the base commit and fails") for r in b["reasons"])'
check cbreaks 'b["details"]["now"]["source"] == "lines" and b["details"]["now"]["failed"] == 1'
call csafe c "$safe_c" "$base_c"
check csafe 'b["verdict"] == "pass" and b["details"]["now"]["passed"] == 7'
[[ -f "$T/state/test-runner/c/$base_c.json" ]] || fail "no base cache for c"

# the other report formats
call fpytest fake "$fc_pytest" "$fb_pytest"
check fpytest 'b["verdict"] == "reject" and "9 passed and 1 failed" in b["reasons"][0] and "pytest summary" in b["reasons"][0]'
check fpytest 'b["details"]["base"]["source"] == "pytest" and b["details"]["base"]["passed"] == 10 and b["details"]["base"]["skipped"] == 2'
call fctest fake "$fc_ctest" "$fb_ctest"
check fctest 'b["verdict"] == "reject" and "ctest summary" in b["reasons"][0] and b["details"]["now"]["failed"] == 1 and b["details"]["base"]["passed"] == 5'
call ftap fake "$fc_tap" "$fb_tap"
check ftap 'b["verdict"] == "reject" and len(b["reasons"]) == 1 and b["reasons"][0].startswith("test beta passed on the base commit and fails")'
check ftap 'b["details"]["now"]["source"] == "lines" and b["details"]["base"]["skipped"] == 1'
call fexit fake "$fc_exit" "$fb_exit"
check fexit 'b["verdict"] == "reject" and "exited 3" in b["reasons"][0] and "broken" in b["reasons"][0]'
check fexit 'b["details"]["now"]["source"] == "exit"'
call fnocount fake "$fc_nocount" "$fb_nocount"
check fnocount 'b["verdict"] == "error" and b["cause"] == "suite" and len(b["reasons"]) == 1'
check fnocount 'b["reasons"][0].startswith("tests cannot run at base: the output gives no test count (exit 0)") and "{junit}" in b["reasons"][0]'
check fnocount 'b["details"]["base"]["usable"] is False and "now" not in b["details"]'
call fjunit fake "$fc_junit" "$fb_junit"
check fjunit 'b["verdict"] == "reject" and sorted(b["details"]["newly_failing"]) == ["k::three", "k::two"]'
check fjunit 'any(r.startswith("test k::two passed on the base commit and errors") and r.endswith(": segfault") for r in b["reasons"])'
check fjunit 'any(r.startswith("test k::three passed on the base commit and did not run") for r in b["reasons"])'
check fjunit 'b["details"]["base"]["tests"] == 3 and b["details"]["now"]["skipped"] == 1'
call fbadxml fake "$fc_badxml" "$fb_junit"
check fbadxml 'b["verdict"] == "reject" and b["details"]["now"]["source"] == "lines" and "1 passed and 1 failed" in b["reasons"][0]'
grep -q "is not well-formed XML" "$T/runner.log" || fail "a broken JUnit report was not reported"

# errors, each with its reason
call unknown nope "$safe_py" "$base_py"
check unknown 'b["verdict"] == "error" and "unknown target" in b["reasons"][0]'
call notests notests "$safe_py" "$base_py"
check notests 'b["verdict"] == "error" and "no test command" in b["reasons"][0]'
call missing py "0123456789abcdef0123456789abcdef01234567" "$base_py"
check missing 'b["verdict"] == "error" and "0123456789abcdef" in b["reasons"][0]'
call badcommit py "HEAD" "$base_py"
check badcommit 'b["verdict"] == "error" and "invalid commit" in b["reasons"][0]'
call gone gone "$safe_py" "$base_py"
check gone 'b["verdict"] == "error" and "not a git repository" in b["reasons"][0]'
# a plan id that could name a path is refused with an error reply
rc=0
"$K" call validate.tests "{\"plan_id\":\"../x\",\"commit\":\"$safe_py\",\"base_commit\":\"$base_py\",\"target\":\"py\"}" \
    --json --timeout 30s --retries 0 >"$T/badid.json" 2>&1 || rc=$?
((rc == 1)) || fail "a bad plan id: exit $rc, want 1 (an error reply): $(cat "$T/badid.json")"
grep -q "bad_request.*invalid plan id" "$T/badid.json" || fail "bad plan id not reported: $(cat "$T/badid.json")"

# only a plan's commit is validated: the head of its branch kaizen/plan-<id>,
# descending from its base, which is on the target's branch - anything
# else is an error, and runs nothing
runs_before=$(grep -c "running the tests of" "$T/runner.log")
call same py "$base_py" "$base_py"
check same 'b["verdict"] == "error" and "is the base commit itself" in b["reasons"][0]'
call_raw nobranch py "$safe_py" "$base_py" plan-nobranch
check nobranch 'b["verdict"] == "error" and "not the head of the plan" in b["reasons"][0] and "kaizen/plan-plan-nobranch" in b["reasons"][0]'
# another branch's commit under a plan's name
call_raw otherhead py "$breaks_py" "$base_py" plan-safe
check otherhead 'b["verdict"] == "error" and "is not the head of the plan" in b["reasons"][0] and "kaizen/plan-plan-safe" in b["reasons"][0]'
# a plan whose base is not on main: the safe fix's commit as the base of a child
git -C "$T/py" worktree add -q --detach "$T/wchild" "$safe_py" || fail "worktree for the child"
printf '# child\n' >>"$T/wchild/README.md"
git_c "$T/wchild" commit -qam child || fail "child commit"
child_py=$(git -C "$T/wchild" rev-parse HEAD)
git -C "$T/py" worktree remove --force "$T/wchild"
call offmain py "$child_py" "$safe_py"
check offmain 'b["verdict"] == "error" and "is not on branch " in b["reasons"][0] and "of target " in b["reasons"][0]'
# a base the commit does not descend from
call nodescent py "$breaks_py" "$safe_py"
check nodescent 'b["verdict"] == "error" and "does not descend from the base commit" in b["reasons"][0]'
[[ $(grep -c "running the tests of" "$T/runner.log") == "$runs_before" ]] ||
    fail "a request for a commit that is not a plan's ran the tests"

# nothing left behind: worktrees, reports, the user's checkout
for repo in "$T/py" "$T/c" "$T/fake"; do
    n=$(git -C "$repo" worktree list | wc -l)
    ((n == 1)) || fail "worktrees left in $repo: $(git -C "$repo" worktree list)"
done
left=$(find "$T/state/worktrees" -mindepth 2 -maxdepth 2 2>/dev/null)
[[ -z "$left" ]] || fail "worktree directories left: $left"
for f in "$T"/state/test-runner/*/junit-*; do
    [[ -e $f ]] && fail "JUnit report left: $f"
done
[[ $(git -C "$T/py" rev-parse HEAD) == "$head_py" ]] || fail "the checkout's HEAD moved"
[[ $(git -C "$T/py" status --porcelain) == "$status_py" ]] || fail "the checkout changed"
[[ $(git -C "$T/py" branch --show-current) == main ]] || fail "the checkout left main"

# the agent is still alive and says goodbye on SIGTERM
kill -TERM "$PID_runner"
rc=0; wait "$PID_runner" || rc=$?
((rc == 0)) || fail "kaizen-test-runner exited $rc after SIGTERM"
echo "ok"
