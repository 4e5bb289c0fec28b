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
