#!/bin/sh
# record.sh - re-record the tool outputs the parser tests replay
#
# Copies src/ to a temporary directory (a trailing ".in" is dropped from
# file names, so bad.c.in becomes bad.c: C sources in tests/data must not
# be linted as kaizen's own code), runs each real tool there the way a
# kaizen.yaml recipe would, and writes its stdout followed by its stderr
# (what kz_tool_run hands to the parser; JSON formats: stdout only) to
# NAME.out, with the temporary directory replaced by @ROOT@ (the tests put
# their own root back). Versions used are written to VERSIONS.
#
#   sh tests/data/tools/record.sh      (then review the diff of *.out)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -R "$here/src/." "$tmp/"
for f in $(cd "$tmp" && find . -name '*.in'); do mv "$tmp/$f" "$tmp/${f%.in}"; done
cd "$tmp"

# NAME both|stdout CMD... : record one run (the exit code goes to NAME.rc)
rec() {
    name=$1 streams=$2
    shift 2
    rc=0
    "$@" >"$tmp/.stdout" 2>"$tmp/.stderr" || rc=$?
    if [ "$streams" = both ]; then
        cat "$tmp/.stdout" "$tmp/.stderr"
    else
        cat "$tmp/.stdout"
    fi | sed "s|$tmp|@ROOT@|g" >"$here/$name.out"
    echo "$name: exit $rc"
}

rec flake8 both flake8 bad.py pkg/dup.py
rec pylint stdout pylint --output-format=json bad.py pkg/dup.py
rec mypy both mypy --show-column-numbers --no-error-summary bad.py pkg/dup.py
rec mypy-nocol both mypy bad.py pkg/dup.py
rec mypy-notes both mypy --show-column-numbers notes.py
rec black both black --check bad.py pkg/dup.py
rec black-error both black --check bad.py broken.py
rec isort both isort --check-only bad.py pkg/dup.py
rec codespell both codespell README.md bad.py
rec cppcheck both cppcheck --template=gcc --enable=warning,style,performance,portability bad.c
rec clang-format both clang-format --dry-run bad.c
rec clang-tidy both clang-tidy bad.c --
rec shellcheck both shellcheck -f gcc bad.sh
rec gcc both gcc -Wall -Wextra -O2 -c bad.c -o /dev/null

{
    echo "flake8 $(flake8 --version | sed -n 1p)"
    pylint --version | sed -n 1p
    mypy --version
    black --version | sed -n 1p
    echo "isort $(isort --version | awk '/VERSION/{print $2}')"
    echo "codespell $(codespell --version)"
    cppcheck --version
    clang-format --version
    clang-tidy --version | grep version
    shellcheck --version | grep '^version'
    gcc --version | sed -n 1p
} >"$here/VERSIONS" 2>&1
