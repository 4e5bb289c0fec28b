#!/bin/sh
# record.sh - re-record the test reports and outputs tests/unit/test_testresult.c
# replays (and tests/fuzz/corpus/testresult_* starts from)
#
#   pytest.xml, pytest.out   /usr/bin/python3 -m pytest --junitxml on a tiny
#                            suite with a pass, a fail, an error and a skip
#   ctest.out                ctest on a CMake project with two passing tests
#                            and a failing one
#   c-sample.out             `make -s test` of examples/c-sample
#   c-sample-fail.out        the same after codespell -w src/errors.c (the
#                            sample's planted breaking fix)
#   unittest.out             python3 -m unittest on a suite with a pass, a
#                            fail, an error, a skip, an expected failure and
#                            an unexpected success
#   unittest-import.out      python3 -m unittest on a test module importing a
#                            module that does not exist
#   pytest-conftest.out      pytest whose conftest.py imports a missing module
#                            (exit 4, nothing collected)
#   pytest-collect.out       pytest -q with a test module importing a missing
#                            module (exit 2, a collection error)
#   pytest-empty.out         pytest -q with no test at all (exit 5)
# Each .out is stdout followed by stderr, as kaizen-test-runner reads it;
# the temporary directory is replaced by @ROOT@.
#
#   sh tests/data/testresult/record.sh      (then review the diff)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# NAME DIR CMD... : record one run in DIR
rec() {
    name=$1 dir=$2
    shift 2
    rc=0
    (cd "$dir" && "$@") >"$tmp/.stdout" 2>"$tmp/.stderr" || rc=$?
    cat "$tmp/.stdout" "$tmp/.stderr" | sed "s|$tmp|@ROOT@|g" >"$here/$name"
    echo "$name: exit $rc"
}

mkdir -p "$tmp/py"
cat >"$tmp/py/test_tiny.py" <<'PY'
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


def test_pass():
    assert 1 + 1 == 2


def test_fail():
    assert "kaizen" == "kaizan", "spelling changed"


def test_error(broken):
    assert broken


@pytest.mark.skip(reason="not on this machine")
def test_skip():
    pass
PY
rec pytest.out "$tmp/py" /usr/bin/python3 -m pytest -p no:cacheprovider \
    --junitxml="$tmp/py/report.xml" test_tiny.py
sed "s|$tmp|@ROOT@|g; s|timestamp=\"[^\"]*\"|timestamp=\"2024-01-01T00:00:00.000000\"|; s|hostname=\"[^\"]*\"|hostname=\"host\"|" \
    "$tmp/py/report.xml" >"$here/pytest.xml"

mkdir -p "$tmp/ct"
cat >"$tmp/ct/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.10)
project(tiny NONE)
enable_testing()
add_test(NAME first COMMAND true)
add_test(NAME second COMMAND true)
add_test(NAME broken COMMAND false)
CM
(cd "$tmp/ct" && cmake -S . -B build >/dev/null)
rec ctest.out "$tmp/ct/build" ctest

cp -R "$top/examples/c-sample" "$tmp/c"
rm -rf "$tmp/c/build"
rec c-sample.out "$tmp/c" make -s test
(cd "$tmp/c" && codespell -w -- src/errors.c >/dev/null 2>&1)
rec c-sample-fail.out "$tmp/c" make -s test

mkdir -p "$tmp/ut"
cat >"$tmp/ut/test_u.py" <<'PY'
import unittest


class T(unittest.TestCase):
    def test_a(self):
        pass

    def test_b(self):
        self.assertEqual(1, 2)

    def test_c(self):
        raise RuntimeError("boom")

    @unittest.skip("no")
    def test_d(self):
        pass

    @unittest.expectedFailure
    def test_e(self):
        self.assertEqual(1, 2)

    @unittest.expectedFailure
    def test_f(self):
        pass
PY
rec unittest.out "$tmp/ut" /usr/bin/python3 -B -m unittest
mkdir -p "$tmp/ui"
printf 'import nothere\n' >"$tmp/ui/test_v.py"
rec unittest-import.out "$tmp/ui" /usr/bin/python3 -B -m unittest

mkdir -p "$tmp/pc/tests" "$tmp/pm/tests" "$tmp/pe/tests"
printf 'import nothere\n' >"$tmp/pc/tests/conftest.py"
printf 'def test_x():\n    pass\n' >"$tmp/pc/tests/test_x.py"
printf 'import nothere\n\n\ndef test_b():\n    pass\n' >"$tmp/pm/tests/test_b.py"
printf 'def test_ok():\n    pass\n' >"$tmp/pm/tests/test_ok.py"
printf 'X = 1\n' >"$tmp/pe/tests/helper.py"
rec pytest-conftest.out "$tmp/pc" /usr/bin/python3 -B -m pytest -q -p no:cacheprovider
rec pytest-collect.out "$tmp/pm" /usr/bin/python3 -B -m pytest -q -p no:cacheprovider
rec pytest-empty.out "$tmp/pe" /usr/bin/python3 -B -m pytest -q -p no:cacheprovider
