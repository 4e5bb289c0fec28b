#!/usr/bin/env bash
# test_option_names.sh - file names are never options (issue 11)
# kz-timeout: 900
# kz-plain-only: the full loop with every agent and the catalog's real tools
#
# A hostile target repository tracks files whose names are options of the
# tools that check them:
#   --addon={"script":"evil.py"}.c   made cppcheck run evil.py (which
#                                    writes a marker outside the worktree)
#   --output-file=$T/outside/out.txt.c  made cppcheck write its report
#                                    there (and report "cppcheck 0")
#   --output-file=$T/outside/flake8.py  the same for flake8
#   -x.py, -x.c, -n.sh               a finding of every catalog tool
# The project chose every style tool of the catalog (their settings files,
# a pre-commit hook), so `kaizen run-once` with the built-in catalog runs
# each tool recipe that takes files on them. The test asserts:
#   - evil.py never ran, nothing was written in $T/outside;
#   - every catalog tool ran ("ok") and reported its planted finding in a
#     file whose name starts with '-', stored under the file's own name
#     (no "./" prefix): a tool the catalog gains fails here until it is
#     covered; cppcheck finds the null dereference in the --output-file
#     file, clang-tidy and flawfinder theirs in the --addon file;
#   - every catalog fixer but shellcheck's (the catalog's shellcheck
#     reports no rule it fixes) ran on a file named like an option; each
#     commit changes exactly its plan's file, black's and clang-format's
#     into exactly what they make of a copy.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-code-quality \
    kaizen-improvement-planner kaizen-feature-prioritizer kaizen-code-refactorer \
    kaizen-test-runner kaizen-code-reviewer kaizen-pattern-learner; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
for tool in git cppcheck clang-tidy clang-format flawfinder shellcheck codespell pyupgrade; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
for m in flake8 pylint mypy black isort pydocstyle bandit; do
    /usr/bin/python3 -m "$m" --version >/dev/null 2>&1 || skip "no $m for /usr/bin/python3"
done
installed=$(/usr/bin/python3 -c "import importlib.metadata as m; print(m.version('pyupgrade'))") ||
    skip "pyupgrade has no package metadata"
kz_python json || skip "no python3 with json"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

# ------------------------------------------------------------- the target
S=$T/src/hostile
ADDON='--addon={"script":"evil.py"}.c'
OUTC="--output-file=$T/outside/out.txt.c"
OUTPY="--output-file=$T/outside/flake8.py"
mkdir -p "$S" "$T/outside" "$S/$(dirname -- "$OUTC")"
# what the project chose: every style tool of the catalog
printf '[flake8]\nmax-line-length = 100\n' >"$S/setup.cfg"
printf '[MAIN]\n' >"$S/.pylintrc"
printf '[mypy]\n' >"$S/mypy.ini"
printf '[tool.black]\nline-length = 100\n\n[tool.isort]\nprofile = "black"\n' >"$S/pyproject.toml"
printf '[pydocstyle]\n' >"$S/.pydocstyle"
printf '[codespell]\n' >"$S/.codespellrc"
printf 'BasedOnStyle: LLVM\n' >"$S/.clang-format"
cat >"$S/.pre-commit-config.yaml" <<EOF
repos:
  - repo: https://github.com/asottile/pyupgrade
    rev: v$installed
    hooks:
      - id: pyupgrade
EOF
# the script an unprefixed --addon= ran
cat >"$S/evil.py" <<EOF
"""Proof that a file name became an option."""

open("$T/evil-ran", "w", encoding="utf-8").close()
EOF
# a finding for every Python tool: unused import (flake8, pylint), a type
# error (mypy), formatting (black), import order (isort), no docstring
# (pydocstyle), set([...]) (pyupgrade), shell=True (bandit), a misspelling
# (codespell)
cat >"$S/-x.py" <<'EOF'
import sys
import os
import subprocess


def run(cmd: str) -> int:
    # recieve the command
    count: int = "a"
    subprocess.call(cmd, shell=True)
    return len(set([1,2])) + count
EOF
# flake8 only, for autoflake and autopep8: an unused import, E203 (a
# slice as black writes it)
cat >"$S/$OUTPY" <<'EOF'
"""A module."""

import os

HAM = [1, 2, 3]
LOWER = 1
VALUE = HAM[LOWER + 1 :]
EOF
# a finding for every C tool: a null dereference (cppcheck, clang-tidy),
# strcpy (flawfinder), formatting (clang-format), a macro argument
# without parentheses (the clang-tidy fixer)
cat >"$S/-x.c" <<'EOF'
#include <string.h>

int deref(int flag)
{
    int *p = 0;
    if (flag)
        return *p;
    return 0;
}

void copy(char *dst, const char *src) { strcpy(dst, src); }

#define SQ(x) (x * x)

int sq(int a) { return SQ(a + 1); }
EOF
# formatted as the project's .clang-format wants: no clang-format plan
cat >"$S/$ADDON" <<'EOF'
#include <string.h>

int deref_addon(int flag) {
  int *p = 0;
  if (flag)
    return *p;
  return 0;
}

void copy_addon(char *dst, const char *src) { strcpy(dst, src); }
EOF
cat >"$S/$OUTC" <<'EOF'
int deref_out(int flag) {
  int *p = 0;
  if (flag)
    return *p;
  return 0;
}
EOF
# an error-level finding of shellcheck
printf '#!/bin/sh\nrm $@\n' >"$S/-n.sh"
for f in "$S/-x.c" "$S/$ADDON" "$S/$OUTC"; do
    cc -c -o /dev/null "$f" 2>/dev/null || fail "$f does not compile"
done
clang-format --dry-run --Werror -- "$S/$ADDON" "$S/$OUTC" || fail "planted C files not formatted"
(cd "$S" && /usr/bin/python3 -I -m black -q --check -- evil.py "./$OUTPY") ||
    fail "planted Python files not formatted"
git -C "$S" init -q -b main || fail "git init"
git -C "$S" add -A || fail "git add"
git -C "$S" -c user.name=t -c user.email=t@t commit -qm "hostile names" || fail "git commit"
[[ "$(git -C "$S" ls-files | wc -l)" == 15 ]] || fail "tracked: $(git -C "$S" ls-files)"

# the names are real exploits: handed over as they are (cppcheck has no
# "--"), cppcheck runs evil.py and writes its report outside, flake8 too
cp -a "$S" "$T/proof"
(
    cd "$T/proof" || exit 1
    cp -- -x.c plain.c
    cppcheck -q "$ADDON" plain.c >/dev/null 2>&1
    cppcheck -q --template=gcc "$OUTC" plain.c >/dev/null 2>&1
    /usr/bin/python3 -I -m flake8 "$OUTPY" evil.py >/dev/null 2>&1
    true
)
[[ -e $T/evil-ran ]] || fail "proof: cppcheck did not run evil.py for '$ADDON'"
grep -q nullPointer "$T/outside/out.txt.c" || fail "proof: cppcheck wrote no report outside"
[[ -e $T/outside/flake8.py ]] || fail "proof: flake8 wrote no report outside"
rm -rf "$T/proof" "$T/evil-ran" "$T/outside"/*

# ------------------------------------------------------------- the run
# the built-in catalog; every plan runs without approval (each fixer of
# the catalog with a planted finding runs on a '-' file); the "tests"
# only need to pass
kz_config <<EOF
log:
  level: debug
agents:
  - {name: code-health, interval: 0}
  - {name: code-quality, interval: 0}
  - {name: improvement-planner, interval: 0}
  - {name: feature-prioritizer, interval: 0}
  - {name: code-refactorer, interval: 0}
  - {name: test-runner, interval: 0}
  - {name: code-reviewer, interval: 0}
  - {name: pattern-learner, interval: 0}
policy:
  require_approval: 1.1
targets:
  - name: hostile
    path: $T/targets/hostile
    init_from: $S
    languages: [c, python, shell]
    test: [/bin/echo, "1 passed, 0 failed"]
    branch: main
EOF
kz_at_exit "\"$K\" down --timeout 60s"
timeout 900 "$K" run-once --json --timeout 12m >"$T/run.out" 2>"$T/run.err" ||
    fail "run-once failed: $(cat "$T/run.out" "$T/run.err")"
cp "$T/state/logs/code-health.0.log" "$T/code-health.log" 2>/dev/null
cp "$T/state/logs/code-refactorer.0.log" "$T/code-refactorer.log" 2>/dev/null
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$T/state/db/run" -U kaizen -d kaizen -c "$1"; }
TG=$T/targets/hostile

# nothing ran, nothing was written outside
[[ ! -e $T/evil-ran ]] || fail "evil.py ran: a file name became cppcheck's --addon"
[[ -z "$(ls -A "$T/outside")" ]] || fail "a tool wrote outside the worktree: $(ls -A "$T/outside")"

# every tool ran, none failed
scan=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["scan"]["scan_id"])' "$T/run.out")
q "SELECT tools FROM scans WHERE scan_id = '$scan'" >"$T/tools.json"
q "SELECT tool || '|' || rule || '|' || file FROM findings WHERE scan_id = '$scan'" |
    LC_ALL=C sort -u >"$T/findings"
"$K" catalog >"$T/catalog.out" 2>&1 || fail "kaizen catalog: $(cat "$T/catalog.out")"
# the planted finding per catalog tool: TOOL|RULE|FILE (RULE * = any)
cat >"$T/want" <<EOF
flake8|F401|-x.py
flake8|F401|$OUTPY
pylint|unused-import|-x.py
mypy|assignment|-x.py
black|would-reformat|-x.py
isort|unsorted-imports|-x.py
pydocstyle|D103|-x.py
pyupgrade|pyupgrade|-x.py
bandit|B602|-x.py
codespell|misspelling|-x.py
cppcheck|nullPointer|-x.c
cppcheck|nullPointer|$OUTC
clang-tidy|clang-analyzer-core.NullDereference|-x.c
clang-tidy|clang-analyzer-core.NullDereference|$ADDON
flawfinder|*|-x.c
flawfinder|*|$ADDON
clang-format|clang-format|-x.c
shellcheck|SC2068|-n.sh
EOF
"$PY" - "$T/tools.json" "$T/findings" "$T/want" "$T/catalog.out" <<'PY' || fail "tools or findings"
import json, sys
tools = {t["name"]: t for t in json.load(open(sys.argv[1]))}
found = [l.rstrip("\n").split("|", 2) for l in open(sys.argv[2]) if l.strip()]
want = [l.rstrip("\n").split("|", 2) for l in open(sys.argv[3]) if l.strip()]
lines = open(sys.argv[4]).read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith("tools ("))
catalog = []
for l in lines[start + 1:]:
    if not l.startswith("  "):
        break
    catalog.append(l.split()[0])
assert len(catalog) >= 14, catalog
bad = []
for name in catalog:
    t = tools.get(name)
    if not t or t.get("status") != "ok":
        bad.append(("did not run cleanly", name, t))
    if not [w for w in want if w[0] == name]:
        bad.append(("catalog tool with no planted finding in a '-' file", name))
for tool, rule, f in want:
    if not [x for x in found if x[0] == tool and (rule == "*" or x[1] == rule) and x[2] == f]:
        bad.append(("missing", tool, rule, f, [x for x in found if x[0] == tool]))
# no finding is stored under a "./" name
bad += [("./ prefix kept", x) for x in found if x[2].startswith("./")]
assert not bad, "\n".join(map(repr, bad))
PY

# the plans: every fixer of the catalog with a planted finding ran on a
# file named like an option; each commit changes exactly the plan's file;
# plans of one file after the first may conflict when integrated
fixers=$(sed -n '/^fixers (/,$p' "$T/catalog.out" | awk 'NR > 1 && /^  / {print $1}')
"$PY" - "$T/run.out" "$fixers" >"$T/commits" <<'PY' || fail "plans: $(cat "$T/run.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "completed", (d["result"], d["pending"])
ran, bad = set(), []
for p in d["plans"]:
    ex = p.get("execution") or {}
    if ex.get("status") != "changed" or not p["files"][0].startswith("-"):
        bad.append(p)
        continue
    ok = p.get("outcome") == "accepted" or (p.get("outcome") == "failed" and
                                            p.get("cause") == "conflict")
    if not ok:
        bad.append(p)
    ran.add(p["fixer"])
    print(p["fixer"], ex["commit"], "\t".join(p["files"]), sep="\t")
# every fixer of the catalog but shellcheck's (the catalog's shellcheck
# reports errors only, none of which it fixes)
catalog = set(sys.argv[2].split())
assert "black" in catalog and "shellcheck" in catalog, catalog
assert ran == catalog - {"shellcheck"} and not bad, (sorted(ran), sorted(catalog), bad)
PY
while IFS=$'\t' read -r fixer commit files; do
    got=$(git -C "$TG" diff --name-only "$commit~1" "$commit") || fail "no commit $commit"
    [[ "$got" == "$files" ]] || fail "$fixer changed '$got', not '$files'"
done <"$T/commits"
# black's and clang-format's: exactly what they make of a copy (named so
# that no option can be)
mkdir -p "$T/expect"
cp "$S/pyproject.toml" "$S/.clang-format" "$T/expect/"
cp -- "$S/-x.py" "$T/expect/x.py"
cp -- "$S/-x.c" "$T/expect/x.c"
(cd "$T/expect" && /usr/bin/python3 -I -m black -q -- x.py && clang-format -i -- x.c) ||
    fail "black or clang-format on the copies"
black=$(awk -F'\t' '$1 == "black" {print $2}' "$T/commits")
cf=$(awk -F'\t' '$1 == "clang-format" {print $2}' "$T/commits")
git -C "$TG" show "$black:-x.py" >"$T/got.py" || fail "no -x.py in black's commit"
git -C "$TG" show "$cf:-x.c" >"$T/got.c" || fail "no -x.c in clang-format's commit"
cmp -s "$T/got.py" "$T/expect/x.py" || fail "black's fix: $(diff -u "$T/expect/x.py" "$T/got.py")"
cmp -s "$T/got.c" "$T/expect/x.c" || fail "clang-format's fix: $(diff -u "$T/expect/x.c" "$T/got.c")"
[[ ! -e $T/evil-ran ]] || fail "evil.py ran during the plans"
[[ -z "$(ls -A "$T/outside")" ]] || fail "a fixer wrote outside the worktree: $(ls -A "$T/outside")"
[[ -z "$(git -C "$TG" status --porcelain)" ]] || fail "checkout changed: $(git -C "$TG" status)"
echo "ok"
