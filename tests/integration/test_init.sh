#!/usr/bin/env bash
# test_init.sh - `kaizen init PATH` on small real projects built here:
# - a Python src-layout project (pyproject.toml with pytest, black and ruff
#   settings, a .pre-commit-config.yaml with codespell and ruff hooks):
#   python found, black and codespell chosen, ruff reported as a tool
#   kaizen cannot run, the pytest command with PYTHONPATH=src, its tests
#   run once at HEAD; the entry is appended under the existing targets:
#   of a config with comments, which stay;
# - a C project whose Makefile's check target prints "N passed, N failed":
#   [make, check] and the compile database build (bear -- make);
# - a tox project: [testenv] commands "pytest {posargs} tests" and its
#   setenv become the argv and targets[].env, and the tests (which need
#   that env) pass at base;
# - a CMake project: its tests need a build (said, no test written), and a
#   CI workflow step: a multi-line one is not translated, a plain one is;
# - a project whose tests cannot run says so; --no-test runs nothing;
# - a missing config file is created holding only targets:, and loads;
# - a duplicate name (exit 2), a non-git PATH and a file that is no kaizen
#   config (exit 1) leave the file as it was;
# - `kaizen doctor` reports per target the chosen tools, their fixers and
#   the test program, and never a tool no target chose as MISSING.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
[[ -x $K ]] || fail "kaizen not built"
command -v git >/dev/null || skip "git not installed"
command -v make >/dev/null && command -v cc >/dev/null || skip "make or cc not installed"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "pytest not installed for /usr/bin/python3"
/usr/bin/python3 -c 'import tomllib' 2>/dev/null || skip "python3 has no tomllib"
unset KAIZEN_CONFIG KAIZEN_DATABASE_URL
export KAIZEN_STATE_DIR=$T/state TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
cd "$T" || fail "cd $T"

git_c() { git -C "$1" -c user.name=t -c user.email=t@example.com "${@:2}"; }
mk_repo() { # DIR FILE TEXT [FILE TEXT ...]: a git repository with one commit
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
# init NAME ARGS...: run kaizen init, output in $T/NAME.out/.err, exit code in $rc
init() {
    local name=$1; shift
    rc=0
    timeout 300 "$K" init "$@" >"$T/$name.out" 2>"$T/$name.err" || rc=$?
}
has() { # NAME PATTERN: the output of NAME has a line matching PATTERN
    grep -Eq -- "$2" "$T/$1.out" || fail "$1: no line '$2': $(cat "$T/$1.out" "$T/$1.err")"
}

# the config: the built-in catalog's recipes plus two of our own (one
# chosen by the Python project but not installed, one nobody chose),
# comments and a target already there
{
    echo "# kaizen for our projects"
    echo "state_dir: $T/state"
    echo "targets:"
    echo "  # the first one"
    echo "  - name: existing"
    echo "    path: $T/py"
    echo ""
    echo "# tools follow"
    echo "tools:"
    cat <<'EOF2'
  - name: kzmissing
    languages: [python]
    argv: [kz-no-such-checker, "{files}"]
    format: gcc
    requires: ["pyproject.toml:[tool.kzmissing]"]
  - name: kzunused
    argv: [kz-no-such-unused-checker, "{files}"]
    format: gcc
    requires: [kz-no-such-file]
EOF2
} >"$T/kaizen.yaml"
cp "$T/kaizen.yaml" "$T/before.yaml"

# --- (a) Python, src layout
mk_repo py \
    pyproject.toml '[project]\nname = "mypkg"\nversion = "0.1"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n[tool.black]\nline-length = 100\n\n[tool.ruff]\nline-length = 100\n\n[tool.kzmissing]\nx = 1\n' \
    .pre-commit-config.yaml 'repos:\n  - repo: https://github.com/pre-commit/pre-commit-hooks\n    rev: v4.6.0\n    hooks:\n      - id: trailing-whitespace\n      - id: check-yaml\n  - repo: https://github.com/codespell-project/codespell\n    rev: v2.2.6\n    hooks:\n      - id: codespell\n  - repo: https://github.com/astral-sh/ruff-pre-commit\n    rev: v0.4.0\n    hooks:\n      - id: ruff\n' \
    src/mypkg/__init__.py 'def add(a, b):\n    return a + b\n' \
    tests/test_add.py 'from mypkg import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\ndef test_add_more():\n    assert add(2, 2) == 4\n'
init py -c "$T/kaizen.yaml" --name pyproj "$T/py"
((rc == 0)) || fail "init py exited $rc: $(cat "$T/py.out" "$T/py.err")"
has py "^  languages: +python \(2 files\)$"
has py "^  tools chosen: .*black \(pyproject.toml:\[tool.black\]\)"
has py "^  tools chosen: .*codespell"
has py "^  tools chosen: .*kzmissing"
grep -q "flake8\|pylint\|mypy\|isort\|kzunused" <(grep "tools chosen" "$T/py.out") &&
    fail "py: tools chosen without evidence: $(cat "$T/py.out")"
has py "^  not installed: +kzmissing: program not found on PATH: kz-no-such-checker"
has py "^  chosen but kaizen cannot run it: trailing-whitespace, check-yaml \(no recipe; \.pre-commit-config\.yaml hook\)$"
has py "^  chosen but kaizen cannot run it: ruff \(no recipe; \.pre-commit-config\.yaml hook, pyproject\.toml\)"
grep -q "cannot run it: codespell\|cannot run it: black" "$T/py.out" &&
    fail "py: a tool with a recipe reported as unrunnable: $(cat "$T/py.out")"
has py "^  test source: +pytest \(pyproject.toml \[tool.pytest.ini_options\]\)"
has py '^  test command: +\["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=\{junit\}"\]$'
has py "^  test env: +PYTHONPATH=src$"
has py "^wrote target 'pyproj' to $T/kaizen.yaml$"
has py "^tests at base: 2 passed, 0 failed, 0 skipped \(junit\)$"
# the entry under the existing targets:, the rest of the file as it was
diff "$T/before.yaml" "$T/kaizen.yaml" >"$T/diff" && fail "init py did not change the config"
grep -c '^>' "$T/diff" | grep -qx 6 || fail "init py: not 6 lines added: $(cat "$T/diff")"
grep -q '^<' "$T/diff" && fail "init py removed lines: $(cat "$T/diff")"
grep -A1 -x "    path: $T/py" "$T/kaizen.yaml" | grep -qx '  - name: "pyproj"' ||
    fail "the entry is not right after the existing target: $(cat "$T/kaizen.yaml")"
for line in '# kaizen for our projects' '  # the first one' '# tools follow' \
    "    path: \"$T/py\"" '    branch: "main"' '    languages: ["python"]' \
    '    env: ["PYTHONPATH=src"]'; do
    grep -qxF -- "$line" "$T/kaizen.yaml" || fail "no line '$line' in: $(cat "$T/kaizen.yaml")"
done
[[ -z $(ls -A "$TMPDIR") ]] || fail "temporary files left: $(ls -A "$TMPDIR")"
(($(git -C "$T/py" worktree list | wc -l) == 1)) || fail "a worktree left in py"
ls "$T" | grep -q 'kaizen.yaml.init-' && fail "a temporary config left: $(ls "$T")"

# --- the same name again: refused, file untouched
cp "$T/kaizen.yaml" "$T/after-py.yaml"
init dup -c "$T/kaizen.yaml" --name pyproj "$T/py"
((rc == 2)) || fail "a duplicate name exited $rc: $(cat "$T/dup.out" "$T/dup.err")"
grep -q "a target named 'pyproj' exists already in '$T/kaizen.yaml'" "$T/dup.err" ||
    fail "duplicate: $(cat "$T/dup.err")"
cmp -s "$T/kaizen.yaml" "$T/after-py.yaml" || fail "the duplicate changed the config"

# --- (b) C with a Makefile check target
mk_repo cproj \
    add.c '#include "add.h"\n\nint add(int a, int b)\n{\n    return a + b;\n}\n' \
    add.h 'int add(int a, int b);\n' \
    test_add.c '#include <stdio.h>\n#include "add.h"\n\nint main(void)\n{\n    int passed = 0, failed = 0;\n    if (add(1, 2) == 3)\n        passed++;\n    else\n        failed++;\n    printf("%d passed, %d failed\\n", passed, failed);\n    return failed != 0;\n}\n' \
    Makefile 'test_add: test_add.c add.c add.h\n\t$(CC) -o $@ test_add.c add.c\n\n.PHONY: check\ncheck: test_add\n\t./test_add\n' \
    .clang-format 'BasedOnStyle: LLVM\n'
init c -c "$T/kaizen.yaml" "$T/cproj"
((rc == 0)) || fail "init c exited $rc: $(cat "$T/c.out" "$T/c.err")"
has c "^  languages: +c \(3 files\)$"
has c "^  tools chosen: .*clang-format \(\.clang-format\)"
has c "^  test source: +Makefile target 'check'$"
has c '^  test command: +\["make", "check"\]$'
has c "^  compile database: bear -- make"
has c "^wrote target 'cproj' to "
has c "^tests at base: 1 passed, 0 failed, 0 skipped \(summary\)$"
grep -qxF '    test: ["make", "check"]' "$T/kaizen.yaml" || fail "no make test: $(cat "$T/kaizen.yaml")"

# --- (c) tox: commands and setenv (the test needs KZ_MODE)
mk_repo toxp \
    pkg/__init__.py 'X = 1\n' \
    tests/test_x.py 'import os\n\nfrom pkg import X\n\n\ndef test_x():\n    assert X == 1\n    assert os.environ["KZ_MODE"] == "ci"\n' \
    tox.ini '[tox]\nenvlist = py3\n\n[testenv]\ndeps = pytest\nsetenv =\n    KZ_MODE = ci\n    PYTHONPATH = {toxinidir}\ncommands =\n    pytest {posargs} tests\n\n[flake8]\nmax-line-length = 100\n'
init tox -c "$T/kaizen.yaml" "$T/toxp"
((rc == 0)) || fail "init tox exited $rc: $(cat "$T/tox.out" "$T/tox.err")"
has tox "^  tools chosen: .*flake8 \(tox.ini:\[flake8\]\)"
has tox "^  test source: +tox.ini \[testenv\] commands: pytest \{posargs\} tests$"
has tox '^  test command: +\["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=\{junit\}", "tests"\]$'
has tox "^  test env: +KZ_MODE=ci$"
has tox "^  test env: +PYTHONPATH=\.$"
has tox "^tests at base: 1 passed, 0 failed, 0 skipped \(junit\)$"
grep -qxF '    env: ["KZ_MODE=ci", "PYTHONPATH=."]' "$T/kaizen.yaml" || fail "tox env: $(cat "$T/kaizen.yaml")"

# a tox environment of its own ([testenv:py]): {posargs:DEFAULT} is the
# default; a setenv tox alone can fill is said and left out
mk_repo tox2 tests/test_a.py 'def test_a():\n    assert True\n' \
    tox.ini '[tox]\nenvlist = py\n\n[testenv:py]\ncommands = python -m pytest {posargs:tests}\nsetenv = A={toxinidir}/x\n    B = {envtmpdir}\n'
init tox2 -c "$T/kaizen.yaml" --no-test "$T/tox2"
((rc == 0)) || fail "init tox2 exited $rc: $(cat "$T/tox2.out" "$T/tox2.err")"
has tox2 "^  test source: +tox.ini \[testenv:py\] commands: python -m pytest \{posargs:tests\}$"
has tox2 '^  test command: +\["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=\{junit\}", "tests"\]$'
has tox2 "^  note: +tox.ini \[testenv:py\] setenv 'B = \{envtmpdir\}' could not be translated$"
has tox2 "^  test env: +A=\./x$"
grep -q "test env: *B=" "$T/tox2.out" && fail "tox2: an untranslated setenv was kept"

# --- tests that cannot run at base; --no-test
mk_repo broken tests/conftest.py 'import kz_missing_module\n' \
    tests/test_y.py 'def test_y():\n    assert True\n'
init broken -c "$T/kaizen.yaml" "$T/broken"
((rc == 0)) || fail "init broken exited $rc: $(cat "$T/broken.out" "$T/broken.err")"
has broken "^tests cannot run at base: 0 tests ran \(exit 4\): .*kz_missing_module"
init notest -c "$T/kaizen.yaml" --name broken2 --no-test "$T/broken"
((rc == 0)) || fail "init --no-test exited $rc"
has notest "^tests not run at base: --no-test$"
grep -q "running the tests" "$T/notest.out" && fail "--no-test ran the tests"

# --- CMake (its tests need a build: said, not run) and a CI workflow
# whose multi-line step cannot be translated and whose plain one can
mk_repo wf \
    CMakeLists.txt 'cmake_minimum_required(VERSION 3.10)\nproject(x C)\nenable_testing()\nadd_executable(t t.c)\nadd_test(NAME t COMMAND t)\n' \
    t.c 'int main(void)\n{\n    return 0;\n}\n' \
    .github/workflows/ci.yml 'on: [push]\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - name: deps\n        run: pip install -r requirements-test.txt\n      - name: build and test\n        run: |\n          cmake -B build\n          cmake --build build && ctest --test-dir build\n      - name: unit tests\n        run: python -m pytest -x tests\n'
init wf -c "$T/kaizen.yaml" --no-test "$T/wf"
((rc == 0)) || fail "init wf exited $rc: $(cat "$T/wf.out" "$T/wf.err")"
has wf "^  note: +ctest needs a build first .*kaizen cannot run these tests yet"
has wf "^  note: +\.github/workflows/ci\.yml step 'cmake -B build' could not be translated into an argv: more than one line"
has wf "^  test source: +\.github/workflows/ci\.yml step: python -m pytest -x tests$"
has wf '^  test command: +\["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=\{junit\}", "-x", "tests"\]$'
has wf "^  compile database: cmake -B build -DCMAKE_EXPORT_COMPILE_COMMANDS=ON"
grep -q "requirements-test" "$T/wf.out" && fail "an install step taken for tests: $(cat "$T/wf.out")"

# --- a new config file: only targets:, and it loads
mkdir -p "$T/fresh"
init fresh -c "$T/fresh/kaizen.yaml" --no-test "$T/py"
((rc == 0)) || fail "init fresh exited $rc: $(cat "$T/fresh.out" "$T/fresh.err")"
[[ $(grep -Ec '^[a-z_]+:' "$T/fresh/kaizen.yaml") == 1 && $(head -1 "$T/fresh/kaizen.yaml") == targets: ]] ||
    fail "the new config holds more than targets: $(cat "$T/fresh/kaizen.yaml")"
grep -qxF '  - name: "py"' "$T/fresh/kaizen.yaml" || fail "default name: $(cat "$T/fresh/kaizen.yaml")"
(cd "$T/fresh" && "$K" init --no-test --name again "$T/cproj" >"$T/cwd.out" 2>&1) ||
    fail "init with ./kaizen.yaml: $(cat "$T/cwd.out")"
grep -qxF '  - name: "again"' "$T/fresh/kaizen.yaml" || fail "./kaizen.yaml not used: $(cat "$T/fresh/kaizen.yaml")"

# --- refusals: not a git repository, not a kaizen config; files untouched
mkdir -p "$T/plain"
cp "$T/kaizen.yaml" "$T/before-refusals.yaml"
init plain -c "$T/kaizen.yaml" "$T/plain"
((rc == 1)) || fail "a non-git path exited $rc: $(cat "$T/plain.out" "$T/plain.err")"
grep -q "^kaizen init: '$T/plain' is not a git repository" "$T/plain.err" || fail "non-git: $(cat "$T/plain.err")"
init nowhere -c "$T/kaizen.yaml" "$T/no-such-dir"
((rc == 1)) || fail "a missing path exited $rc"
grep -q "^kaizen init: unable to open '$T/no-such-dir'" "$T/nowhere.err" || fail "missing: $(cat "$T/nowhere.err")"
cmp -s "$T/kaizen.yaml" "$T/before-refusals.yaml" || fail "a refusal changed the config"
printf 'bogus_key: 1\n' >"$T/other.yaml"
init other "$T/py" --name x -c "$T/other.yaml"
((rc == 1)) || fail "a non-kaizen config exited $rc"
grep -q "is not a kaizen config: .*bogus_key" "$T/other.err" || fail "other: $(cat "$T/other.err")"
[[ $(cat "$T/other.yaml") == "bogus_key: 1" ]] || fail "the other file was changed"

# --- doctor: what each target needs, nothing else
"$K" -c "$T/kaizen.yaml" doctor >"$T/doctor.out" 2>"$T/doctor.err"
line() { grep -Eq "^  $1 +$2 +$3" "$T/doctor.out" || fail "doctor: no '$1 $2 $3': $(cat "$T/doctor.out" "$T/doctor.err")"; }
line ok config "$T/kaizen.yaml: [0-9]+ agents?, 8 targets"
line ok "target pyproj" "languages: python; tools: kzmissing, black, bandit, codespell; fixers: black, codespell; test: /usr/bin/python3"
line skip "tools not chosen by pyproj" "kzunused, flake8, pylint, mypy, isort, pydocstyle, pyupgrade \(no evidence"
line ok "tool black" "/usr/bin/python3 -m black"
line ok "fixer black" "/usr/bin/python3 -m black"
line MISSING "tool kzmissing" "program not found on PATH: kz-no-such-checker"
line ok "test program of pyproj" "/usr/bin/python3 -m pytest"
line ok "target cproj" "languages: c; tools: cppcheck, clang-format, clang-tidy, flawfinder; fixers: clang-format, clang-tidy; test: make"
line ok "test program of cproj" "$(command -v make)"
line ok "tests of pyproj" "can run at [0-9a-f]{12} of main: 2 passed"
line ok "tests of toxp" "can run at [0-9a-f]{12} of main: 1 passed"
grep -q "kzunused" <(grep -Ev "^  skip +tools not chosen" "$T/doctor.out") &&
    fail "doctor checked a tool no target chose: $(cat "$T/doctor.out")"
grep -Eq "^  skip +tools not chosen by pyproj .*kzunused" "$T/doctor.out" || fail "doctor: kzunused not listed: $(cat "$T/doctor.out")"
(($(grep -Ec "^  (ok|MISSING) +tool black " "$T/doctor.out") == 1)) || fail "doctor checked black twice"
echo "ok"
