#!/usr/bin/env bash
# test_init_run_once.sh - the entry `kaizen init` writes works as it is:
# a Python src-layout project added with `kaizen init` to a config that
# holds only the bus and the state directory (the loop's agents and the
# built-in catalog by default), then `kaizen run-once` with no
# edit scans it with the tools the project chose (black, codespell; the
# others skipped as not chosen) and finds its tests usable at the base.
# kz-timeout: 900
# kz-plain-only: the full loop with every agent (a real broker, orchestrator and PostgreSQL)
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-test-runner; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
command -v git >/dev/null || skip "git is not installed"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "pytest not installed for /usr/bin/python3"
/usr/bin/python3 -m black --version >/dev/null 2>&1 || skip "black not installed for /usr/bin/python3"
command -v codespell >/dev/null || skip "codespell not installed"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

mkdir -p "$T/proj/src/mypkg" "$T/proj/tests"
printf '[project]\nname = "mypkg"\nversion = "0.1"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n[tool.black]\nline-length = 100\n\n[tool.codespell]\n' >"$T/proj/pyproject.toml"
printf 'def add(a, b):\n    return a + b\n' >"$T/proj/src/mypkg/__init__.py"
printf 'from mypkg import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n' >"$T/proj/tests/test_add.py"
git -C "$T/proj" init -q -b main
git -C "$T/proj" add -A
git -C "$T/proj" -c user.name=t -c user.email=t@example.com commit -qm initial || fail "commit"

# the bus and the state directory only: the loop's agents and the built-in
# catalog are the defaults
kz_config </dev/null
kz_config_base "$T/kaizen.yaml" >"$T/bare.yaml" && mv "$T/bare.yaml" "$T/kaizen.yaml"
unset KAIZEN_CONFIG
kz_at_exit "\"$K\" -c \"$T/kaizen.yaml\" down --timeout 30s"
timeout 300 "$K" -c "$T/kaizen.yaml" init --no-test "$T/proj" >"$T/init.out" 2>&1 ||
    fail "init: $(cat "$T/init.out")"
grep -q "^wrote target 'proj' to $T/kaizen.yaml" "$T/init.out" || fail "init: $(cat "$T/init.out")"

timeout 800 "$K" -c "$T/kaizen.yaml" run-once --target proj --timeout 10m >"$T/run.out" 2>"$T/run.err" ||
    fail "run-once exited $?: $(cat "$T/run.out" "$T/run.err")"
grep -Eq "^ +black +0 +ok " "$T/run.out" || fail "black did not run: $(cat "$T/run.out")"
grep -Eq "^ +codespell +0 +ok " "$T/run.out" || fail "codespell did not run: $(cat "$T/run.out")"
grep -Eq "^ +flake8 +0 +skipped .*not chosen" "$T/run.out" || fail "flake8 not skipped: $(cat "$T/run.out")"
grep -Eq "^  tests at [0-9a-f]{12}: 1 passed, 0 failed" "$T/run.out" ||
    fail "the tests were not usable: $(cat "$T/run.out" "$T/run.err")"
echo "ok"
