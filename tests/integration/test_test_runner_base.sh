#!/usr/bin/env bash
# test_test_runner_base.sh - a plan is validated only on a suite that runs
# at its base. A real broker, kaizen-test-runner, git, /usr/bin/python3's
# pytest and unittest, and (for tests.base) the orchestrator recording into
# a throwaway PostgreSQL cluster:
# - suites that cannot run at the base answer validate.tests with verdict
#   "error", cause "suite" and "tests cannot run at base: <why>": a
#   conftest importing a missing module (exit 4), a test module importing
#   one (a collection error, exit 2), no tests at all (exit 5); the
#   unusable base is cached, so a second plan on it gets the answer
#   without a run;
# - a suite with one test failing already at the base still validates: a
#   change that breaks nothing passes, one that breaks a passing test is
#   rejected with that test named; a unittest suite validates by its
#   summary;
# - a src-layout project (src/msgpack/) whose tests `import msgpack` get
#   Debian's installed copy: error, the reason names its path; with
#   targets[].env [PYTHONPATH=src] the worktree's copy is imported and the
#   base is usable;
# - after a scan.completed the test runner publishes tests.base (usable,
#   and not usable with its reason and cause), none for a failed scan or a
#   target without a test command, and the recorder stores it in events;
# - no worktree and no work directory is left.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
AGENT="$KZ_BIN/kaizen-test-runner"
[[ -x "$AGENT" && -x "$K" && -x "$KZ_BIN/kaizen-broker" && -x "$KZ_BIN/kaizen-orchestrator" ]] ||
    fail "kaizen, kaizen-broker, kaizen-orchestrator or kaizen-test-runner not built"
command -v git >/dev/null || skip "git not installed"
PY=/usr/bin/python3
"$PY" -m pytest --version >/dev/null 2>&1 || skip "pytest not installed for /usr/bin/python3"
installed=$("$PY" -c 'import msgpack; print(msgpack.__file__)' 2>/dev/null) ||
    skip "no msgpack for /usr/bin/python3 (apt-get install -y python3-msgpack)"
[[ $installed == /usr/* ]] || skip "msgpack is not an installed copy: $installed"
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
[[ -x "$KZ_TOOLS/kz_sub" ]] || fail "tests/tools/kz_sub not built"

git_c() { git -C "$1" -c user.name=t -c user.email=t@example.com "${@:2}"; }
# mk_repo NAME FILE TEXT [FILE TEXT ...]: a repository $T/NAME holding
# these files (and a README), committed on main
mk_repo() {
    local repo=$T/$1; shift
    mkdir -p "$repo"
    printf 'a project\n' >"$repo/README"
    while (($#)); do
        mkdir -p "$(dirname "$repo/$1")"
        printf '%b' "$2" >"$repo/$1"
        shift 2
    done
    git -C "$repo" init -q -b main
    git -C "$repo" add -A
    git_c "$repo" commit -qm "initial" || fail "git commit in $repo"
}
# branch REPO NAME FILE TEXT: a commit on branch NAME from main writing
# FILE; prints its id
branch() {
    local repo=$T/$1
    git -C "$repo" checkout -q -b "$2" main || fail "checkout -b $2"
    printf '%b' "$4" >"$repo/$3"
    git -C "$repo" add -A
    git_c "$repo" commit -qm "$2" || fail "nothing to commit on $2"
    git -C "$repo" rev-parse HEAD
    git -C "$repo" checkout -q main
}
head_of() { git -C "$T/$1" rev-parse main; }

ok_test='def test_ok():\n    assert True\n'
mk_repo conftest tests/conftest.py 'import kz_missing_module\n' tests/test_x.py "$ok_test"
mk_repo collect tests/test_a.py 'import kz_missing_module\n\n\ndef test_a():\n    pass\n' \
    tests/test_ok.py "$ok_test"
mk_repo empty tests/helper.py 'X = 1\n'
mk_repo onefail pkg/__init__.py '' pkg/mod.py 'def value():\n    return 1\n' \
    tests/test_m.py 'from pkg.mod import value\n\n\ndef test_value():\n    assert value() == 1\n\n\ndef test_already_fails():\n    assert False, "broken before kaizen came"\n\n\ndef test_other():\n    assert True\n'
mk_repo ut test_u.py 'import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        pass\n\n    def test_b(self):\n        pass\n'
mk_repo srclayout src/msgpack/__init__.py 'KAIZEN = "worktree"\n' \
    tests/test_m.py 'import msgpack\n\n\ndef test_import():\n    assert msgpack\n\n\ndef test_worktree_copy():\n    assert getattr(msgpack, "KAIZEN", None) == "worktree"\n'
for r in conftest collect empty onefail ut srclayout; do
    printf -v "base_$r" '%s' "$(head_of $r)"
    printf -v "safe_$r" '%s' "$(branch $r safe README 'a project, changed\n')"
done
breaks_onefail=$(branch onefail breaks pkg/mod.py 'def value():\n    return 2\n')
# shellcheck disable=SC2154 # base_* and safe_* are set by printf -v above
for c in "$base_conftest" "$safe_conftest" "$safe_srclayout" "$breaks_onefail"; do
    [[ $c =~ ^[0-9a-f]{40}$ ]] || fail "a commit was not made: '$c'"
done

pytest_cmd='[/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]'
kz_config <<EOF
  call_timeout: 3m
supervisor:
  broker: false
database:
  flush_interval: 50ms
targets:
  - {name: conftest, path: $T/conftest, languages: [python], test: $pytest_cmd, test_timeout: 2m}
  - {name: collect, path: $T/collect, test: $pytest_cmd, test_timeout: 2m}
  - {name: empty, path: $T/empty, test: $pytest_cmd, test_timeout: 2m}
  - {name: onefail, path: $T/onefail, test: $pytest_cmd, test_timeout: 2m}
  - {name: ut, path: $T/ut, test: [/usr/bin/python3, -m, unittest], test_timeout: 2m}
  - {name: src, path: $T/srclayout, test: $pytest_cmd, test_timeout: 2m}
  - {name: src-fixed, path: $T/srclayout, test: $pytest_cmd, test_timeout: 2m, env: [PYTHONPATH=src]}
  - {name: notests, path: $T/onefail}
EOF
kz_at_exit kz_kill_leftovers
kz_db_start
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_start runner "$AGENT" -c "$KAIZEN_CONFIG"
served() { [[ $("$K" call mmi.service '"validate.tests"' --timeout 2s 2>/dev/null) == 200 ]]; }
kz_wait_for 60 served || fail "validate.tests is not served"

# call NAME TARGET COMMIT BASE: the reply envelope in $T/NAME.json; COMMIT
# is made the head of the plan's branch kaizen/plan-plan-NAME first, as
# the refactorer would have (only a plan's commit is validated)
call() {
    local repo=$T/$2
    case $2 in src | src-fixed) repo=$T/srclayout ;; notests) repo=$T/onefail ;; esac
    if [[ -d $repo ]] && git -C "$repo" rev-parse -q --verify "$3^{commit}" >/dev/null; then
        git -C "$repo" branch -f "kaizen/plan-plan-$1" "$3" || fail "unable to make the branch of plan-$1"
    fi
    "$K" call validate.tests \
        "{\"plan_id\":\"plan-$1\",\"commit\":\"$3\",\"base_commit\":\"$4\",\"target\":\"$2\"}" \
        --json --timeout 3m --retries 0 >"$T/$1.json" 2>"$T/$1.err" ||
        fail "call $1 failed: $(cat "$T/$1.err" "$T/$1.json")"
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
runs_of() { grep -c "running the tests of '$1' at ${2:0:12}" "$T/runner.log"; }

# tests.base as they come, one JSON envelope a line
kz_start sub "$KZ_TOOLS/kz_sub" tests.base -c "$KAIZEN_CONFIG" --json --out "$T/base.jsonl"
kz_wait_log sub "listening" || fail "kz_sub did not start"

# --- suites that cannot run at the base
# shellcheck disable=SC2154
call conftest conftest "$safe_conftest" "$base_conftest"
check conftest 'b["verdict"] == "error" and b["cause"] == "suite" and len(b["reasons"]) == 1'
check conftest 'b["reasons"][0] == "tests cannot run at base: 0 tests ran (exit 4): ImportError while loading conftest '"'tests/conftest.py'"': ModuleNotFoundError: No module named '"'kz_missing_module'"'"'
check conftest 'b["details"]["base"]["usable"] is False and not b["details"]["base"]["cached"] and "now" not in b["details"]'
# a second plan on that base: the cached answer, no second run
call conftest2 conftest "$safe_conftest" "$base_conftest"
check conftest2 'b["verdict"] == "error" and b["cause"] == "suite" and b["details"]["base"]["cached"]'
check conftest2 'b["reasons"][0].startswith("tests cannot run at base: 0 tests ran (exit 4): ")'
(($(runs_of conftest "$base_conftest") == 1)) || fail "the unusable base of 'conftest' ran again"
[[ -f "$T/state/test-runner/conftest/$base_conftest.json" ]] || fail "the unusable base was not cached"
# shellcheck disable=SC2154
call collect collect "$safe_collect" "$base_collect"
check collect 'b["verdict"] == "error" and b["cause"] == "suite"'
check collect 'b["reasons"][0].startswith("tests cannot run at base: 0 tests ran (1 error, exit 2): ImportError while importing test module '"'tests/test_a.py'"'")'
check collect 'b["reasons"][0].endswith("ModuleNotFoundError: No module named '"'kz_missing_module'"'")'
# shellcheck disable=SC2154
call empty empty "$safe_empty" "$base_empty"
check empty 'b["verdict"] == "error" and b["cause"] == "suite" and b["reasons"] == ["tests cannot run at base: no tests collected (exit 5)"]'

# --- one test failing already at the base: the comparison is per test
# shellcheck disable=SC2154
call onefail_safe onefail "$safe_onefail" "$base_onefail"
check onefail_safe 'b["verdict"] == "pass" and "cause" not in b and b.get("reasons", []) == []'
check onefail_safe 'b["details"]["base"]["passed"] == 2 and b["details"]["base"]["failed"] == 1 and b["details"]["base"]["exit_code"] == 1'
call onefail_breaks onefail "$breaks_onefail" "$base_onefail"
check onefail_breaks 'b["verdict"] == "reject" and "cause" not in b and b["details"]["newly_failing"] == ["tests.test_m::test_value"]'
check onefail_breaks 'len(b["reasons"]) == 1 and b["reasons"][0].startswith("test tests.test_m::test_value passed on the base commit and fails")'
# shellcheck disable=SC2154
call ut ut "$safe_ut" "$base_ut"
check ut 'b["verdict"] == "pass" and b["details"]["base"]["source"] == "unittest" and b["details"]["base"]["passed"] == 2'

# --- src layout: the installed copy is detected, PYTHONPATH=src fixes it
# shellcheck disable=SC2154
call src src "$safe_srclayout" "$base_srclayout"
check src 'b["verdict"] == "error" and b["cause"] == "suite"'
check src 'b["reasons"] == ["tests cannot run at base: the tests import '"'msgpack'"' from '"$installed"', not from the worktree (set targets[].env, e.g. PYTHONPATH=src)"]'
call src_fixed src-fixed "$safe_srclayout" "$base_srclayout"
check src_fixed 'b["verdict"] == "pass" and b["details"]["base"]["passed"] == 2 and b["details"]["base"]["failed"] == 0'
check src_fixed 'b["details"]["now"]["passed"] == 2'

# --- tests.base after scan.completed
scan() { # TARGET SCAN_ID STATUS COMMIT
    "$K" publish scan.completed \
        "{\"scan_id\":\"$2\",\"status\":\"$3\",\"findings\":0,\"files\":3,\"duration_ms\":5,\"commit\":\"$4\"}" \
        --target "$1" --corr "$2" >/dev/null 2>"$T/publish.err" || fail "publish: $(cat "$T/publish.err")"
}
# shellcheck disable=SC2154
scan onefail scan-failed failed "$base_onefail"      # a failed scan: nothing
scan notests scan-notests ok "$base_onefail"         # no test command: nothing
scan onefail scan-usable ok "$base_onefail"
scan conftest scan-unusable partial "$base_conftest"
scan src-fixed scan-fresh ok "$safe_srclayout"       # a commit never run yet
have_bases() { [[ $(grep -c '^tests.base ' "$T/base.jsonl" 2>/dev/null) -ge "$1" ]]; }
kz_wait_for 120 have_bases 3 || fail "no three tests.base: $(cat "$T/base.jsonl" 2>/dev/null)"
"$PY" - "$T/base.jsonl" "$base_onefail" "$base_conftest" "$safe_srclayout" <<'PY' || fail "bad tests.base: $(cat "$T/base.jsonl")"
import json, sys
got = {}
for line in open(sys.argv[1]):
    topic, _, env = line.partition(" ")
    env = json.loads(env)
    assert env["type"] == "tests.base", env
    got[env["corr"]] = env
assert sorted(got) == ["scan-fresh", "scan-unusable", "scan-usable"], sorted(got)
u = got["scan-usable"]
b = u["body"]
assert u["target"] == "onefail" and b["commit"] == sys.argv[2] and b["usable"] is True, u
assert b["passed"] == 2 and b["failed"] == 1 and b["source"] == "junit" and b["cached"] is True, u
assert "reason" not in b and "cause" not in b and b["scan_id"] == "scan-usable", u
n = got["scan-unusable"]
b = n["body"]
assert n["target"] == "conftest" and b["commit"] == sys.argv[3] and b["usable"] is False, n
assert b["cause"] == "suite" and b["cached"] is True, n
assert b["reason"].startswith("0 tests ran (exit 4): ImportError while loading conftest"), n
f = got["scan-fresh"]["body"]
assert f["commit"] == sys.argv[4] and f["usable"] is True and f["cached"] is False, f
assert f["passed"] == 2 and f["duration_ms"] > 0, f
PY
grep -q "scan of 'onefail' failed: no tests.base" "$T/runner.log" || fail "the failed scan was not skipped"
# the recorder stores tests.base like any event
recorded() { kz_psql_is "SELECT count(*) FROM events WHERE type = 'tests.base'" 3; }
kz_wait_for 60 recorded || fail "tests.base not recorded: $(kz_psql "SELECT type, target FROM events WHERE type LIKE 'tests%'" 2>&1)"
got=$(kz_psql "SELECT target || ' ' || (body->>'usable') || ' ' || coalesce(body->>'cause', '-') || ' ' || corr FROM events WHERE type = 'tests.base' ORDER BY target, corr")
want="conftest false suite scan-unusable
onefail true - scan-usable
src-fixed true - scan-fresh"
[[ $got == "$want" ]] || fail "recorded tests.base: got
$got
want
$want"

# nothing left behind: worktrees, work directories, the users' checkouts
for r in conftest collect empty onefail ut srclayout; do
    n=$(git -C "$T/$r" worktree list | wc -l)
    ((n == 1)) || fail "worktrees left in $r: $(git -C "$T/$r" worktree list)"
    [[ $(git -C "$T/$r" branch --show-current) == main && -z $(git -C "$T/$r" status --porcelain) ]] ||
        fail "the checkout of $r changed"
done
left=$(find "$T/state/worktrees" -mindepth 2 -maxdepth 2 2>/dev/null)
[[ -z "$left" ]] || fail "worktree directories left: $left"
left=$(find "$T/state/test-runner" -mindepth 2 -maxdepth 2 -name 'run-*' 2>/dev/null)
[[ -z "$left" ]] || fail "work directories left: $left"

kill -TERM "$PID_sub" "$PID_runner"
wait "$PID_sub" 2>/dev/null
rc=0; wait "$PID_runner" || rc=$?
((rc == 0)) || fail "kaizen-test-runner exited $rc after SIGTERM"
echo "ok"
