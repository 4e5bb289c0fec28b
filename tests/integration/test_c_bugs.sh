#!/usr/bin/env bash
# test_c_bugs.sh - C bug finders with a compile database kaizen makes itself
# kz-timeout: 900
# kz-plain-only: the full loop with every agent and real tools; the agents' code runs under the sanitizers in their own tests
#
# A small CMake C project without a compile_commands.json: a public macro
# casts an unparenthesised argument (LOW_BYTE(a + b) computes the wrong
# value), and a leak in code only compiled with a definition the build
# sets (BYTES_LEVEL=3), so only a tool that reads the generated compile
# database sees it. With the built-in catalog (no tools: in the config),
# `kaizen run-once` brings up the whole loop (private
# PostgreSQL, broker, every agent) and the test asserts: code-health made
# the database with cmake in its scratch directory (gone afterwards,
# nothing left in the target's tree); clang-tidy and cppcheck found the
# leak behind the definition (they read the database) and clang-tidy the
# macro; the clang-tidy fixer made the macro's plan, which the tests
# validated and which was accepted; its commit parenthesises the
# argument and nothing else; the tests pass on it. Then a project whose
# configure fails: the scan's clang-tidy and cppcheck entries say why
# ("no compile database: cmake configure failed: ...") and both still
# run on the files.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-code-quality \
    kaizen-improvement-planner kaizen-feature-prioritizer kaizen-code-refactorer \
    kaizen-test-runner kaizen-code-reviewer kaizen-pattern-learner; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || skip "PostgreSQL server programs are not installed"
for tool in git cmake make cc clang-tidy cppcheck; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
kz_python json || skip "no python3"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

jcheck() { # jcheck FILE PYTHON: assert over the JSON document d of FILE
    "$PY" - "$1" "$2" <<'PY' || fail "$1: $(cat "$1")"
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2], {"d": d})
PY
}

# ------------------------------------------------------------- the project
S=$T/src/bytes
mkdir -p "$S/include" "$S/src" "$S/tests"
cat >"$S/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.13)
project(bytes C)
add_library(bytes STATIC src/bytes.c src/copy.c)
target_include_directories(bytes PUBLIC include)
target_compile_definitions(bytes PRIVATE BYTES_LEVEL=3)
add_executable(test_bytes tests/test_bytes.c)
target_link_libraries(test_bytes bytes)
EOF
cat >"$S/include/bytes.h" <<'EOF'
#ifndef BYTES_H
#define BYTES_H

/* the low byte of X */
#define LOW_BYTE(x) ((unsigned char)x)

unsigned bytes_sum_low(const unsigned *v, int n);
char *bytes_copy(const char *s, int n);

#endif
EOF
cat >"$S/src/bytes.c" <<'EOF'
#include "bytes.h"

unsigned bytes_sum_low(const unsigned *v, int n)
{
    unsigned s = 0;
    for (int i = 0; i < n; i++)
        s += LOW_BYTE(v[i]);
    return s;
}
EOF
# the leak: only compiled with the definition the build sets
cat >"$S/src/copy.c" <<'EOF'
#include <stdlib.h>
#include <string.h>

#include "bytes.h"

#if BYTES_LEVEL > 2
char *bytes_copy(const char *s, int n)
{
    char *p = malloc(16);
    if (n > 16)
        return NULL;
    memcpy(p, s, (size_t)n);
    return p;
}
#endif
EOF
# passes before and after the right fix; a wrong one (the cast moved, the
# value changed) fails
cat >"$S/tests/test_bytes.c" <<'EOF'
#include <stdio.h>

#include "bytes.h"

static int passed, failed;

static void check(const char *name, int ok)
{
    printf("%s: %s\n", ok ? "PASS" : "FAIL", name);
    if (ok)
        passed++;
    else
        failed++;
}

int main(void)
{
    unsigned v[3] = {0x1ff, 0x2, 0x300};
    check("low_byte", LOW_BYTE(0x1234u) == 0x34);
    check("low_byte_of_element", LOW_BYTE(v[0]) == 0xff);
    check("sum_low", bytes_sum_low(v, 3) == 0x101);
    check("sum_none", bytes_sum_low(v, 0) == 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
EOF
cat >"$S/Makefile" <<'EOF'
# make check: configure, build and run the tests in build/
check:
	cmake -S . -B build >/dev/null
	cmake --build build >/dev/null
	./build/test_bytes
.PHONY: check
EOF
printf 'build/\n' >"$S/.gitignore"
# the bug the macro hides: an expression argument gets the cast first
cat >"$T/demo.c" <<'EOF'
#include <stdio.h>
#include "bytes.h"
int main(void) { unsigned a = 0x1ff, b = 1; printf("%u\n", (unsigned)LOW_BYTE(a + b)); return 0; }
EOF
cc -I"$S/include" -o "$T/demo" "$T/demo.c" || fail "demo does not build"
[[ "$("$T/demo")" == 256 ]] || fail "the planted macro bug does not show: $("$T/demo")"
make -s -C "$S" check >"$T/check-src.log" 2>&1 || fail "the suite fails as written: $(cat "$T/check-src.log")"
grep -q "4 passed, 0 failed" "$T/check-src.log" || fail "$(cat "$T/check-src.log")"
rm -rf "$S/build"

# ------------------------------------------------------------- the config
# no tools: or fixers: the built-in catalog's recipes run (catalog/c.yaml:
# cppcheck, clang-tidy and flawfinder always, clang-format only where the
# project chose it; catalog/fixers.yaml: the clang-tidy fixer)
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
targets:
  - name: bytes
    path: $T/targets/bytes
    init_from: $S
    languages: [c]
    test: [make, -s, check]
    test_timeout: 5m
    branch: main
EOF
"$K" catalog >"$T/catalog.out" 2>&1 || fail "kaizen catalog: $(cat "$T/catalog.out")"
grep -q "^  clang-tidy  *always" "$T/catalog.out" || fail "clang-tidy is not always on: $(cat "$T/catalog.out")"
kz_at_exit "\"$K\" down --timeout 60s"
timeout 900 "$K" run-once --json --timeout 12m >"$T/run1.out" 2>"$T/run1.err" ||
    fail "run-once failed: $(cat "$T/run1.out" "$T/run1.err")"
cp "$T/state/logs/code-health.0.log" "$T/code-health.log" 2>/dev/null
cp "$T/state/logs/code-refactorer.0.log" "$T/code-refactorer.log" 2>/dev/null
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$T/state/db/run" -U kaizen -d kaizen -c "$1"; }
TG=$T/targets/bytes

# the compile database: made by cmake in the scratch directory, removed after
grep -q "compile database of 'bytes' made (cmake)" "$T/code-health.log" ||
    fail "no compile database made: $(grep -i compile "$T/code-health.log")"
[[ -z "$(ls -A "$T/state/compdb" 2>/dev/null)" ]] || fail "scratch directories left: $(ls "$T/state/compdb")"
[[ -e $TG/compile_commands.json || -e $T/state/worktrees/bytes/scan/compile_commands.json ]] &&
    fail "a compile database was written into the target's tree"

# the findings: the leak behind BYTES_LEVEL from both (they read the
# database), the macro from clang-tidy
scan=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["scan"]["scan_id"])' "$T/run1.out")
q "SELECT tool || '|' || rule || '|' || file || '|' || line FROM findings WHERE scan_id = '$scan'" |
    LC_ALL=C sort >"$T/findings"
for want in "clang-tidy|bugprone-macro-parentheses|include/bytes.h|5" \
    "clang-tidy|clang-analyzer-unix.Malloc|src/copy.c|11" \
    "cppcheck|memleak|src/copy.c|11"; do
    grep -qxF "$want" "$T/findings" || fail "no finding $want: $(cat "$T/findings")"
done
grep -q "insecureAPI\|easily-swappable\|reserved-identifier" "$T/findings" &&
    fail "a noisy class was reported: $(cat "$T/findings")"
jcheck "$T/run1.out" '
s = d["targets"][0]["scan"]
assert s["status"] == "ok", s
'

# the macro's plan: made by the clang-tidy fixer, validated, accepted
"$PY" - "$T/run1.out" >"$T/accepted" <<'PY' || fail "the macro fix was not accepted: $(cat "$T/run1.out")"
import json, sys
d = json.load(open(sys.argv[1]))
acc = [p for p in d["plans"] if p.get("outcome") == "accepted" and "include/bytes.h" in p.get("files", [])]
assert acc and d["result"] == "completed", (d["result"], d["pending"], d["plans"])
p = acc[0]
print(p["plan_id"], p["commit"], p["branch"])
PY
read -r ID COMMIT BRANCH <"$T/accepted"
[[ "$(q "SELECT fixer FROM improvement_suggestions WHERE plan_id = '$ID'")" == clang-tidy ]] ||
    fail "plan $ID: fixer $(q "SELECT fixer FROM improvement_suggestions WHERE plan_id = '$ID'")"
[[ "$(git -C "$TG" rev-parse "refs/heads/$BRANCH")" == "$COMMIT" ]] || fail "$BRANCH is not at $COMMIT"
[[ "$(git -C "$TG" diff --name-only "$COMMIT~1" "$COMMIT")" == include/bytes.h ]] ||
    fail "the fix changed $(git -C "$TG" diff --name-only "$COMMIT~1" "$COMMIT")"
git -C "$TG" diff "$COMMIT~1" "$COMMIT" >"$T/fix.diff"
grep -qxF -- '-#define LOW_BYTE(x) ((unsigned char)x)' "$T/fix.diff" || fail "$(cat "$T/fix.diff")"
grep -qxF -- '+#define LOW_BYTE(x) ((unsigned char)(x))' "$T/fix.diff" || fail "$(cat "$T/fix.diff")"
[[ "$(grep -c '^[-+][^-+]' "$T/fix.diff")" == 2 ]] || fail "more than the macro changed: $(cat "$T/fix.diff")"
# the fixed macro computes the right value, and the tests pass there
git -C "$TG" worktree add -q "$T/check" "$COMMIT" || fail "worktree of $COMMIT"
cc -I"$T/check/include" -o "$T/demo2" "$T/demo.c" || fail "demo does not build on the fix"
[[ "$("$T/demo2")" == 0 ]] || fail "the fixed macro still computes $("$T/demo2")"
make -s -C "$T/check" check >"$T/check-fix.log" 2>&1 || fail "tests fail on the fix: $(cat "$T/check-fix.log")"
git -C "$TG" worktree remove --force "$T/check"
[[ "$(q "SELECT status FROM improvement_suggestions WHERE plan_id = '$ID'")" == accepted ]] ||
    fail "plan $ID: $(q "SELECT status FROM improvement_suggestions WHERE plan_id = '$ID'")"
# the user's checkout is as created
[[ -z "$(git -C "$TG" status --porcelain)" ]] || fail "checkout changed: $(git -C "$TG" status)"

# ------------------------------------------------ a configure that fails
"$K" down --timeout 60s >/dev/null 2>&1
B=$T/src/broken
mkdir -p "$B"
cp "$S/src/copy.c" "$B/copy.c"
cp "$S/include/bytes.h" "$B/bytes.h"
printf 'cmake_minimum_required(VERSION 3.13)\nproject(broken C)\nmessage(FATAL_ERROR "no such platform")\n' >"$B/CMakeLists.txt"
sed -i "s|name: bytes|name: broken|; s|$T/targets/bytes|$T/targets/broken|; s|init_from: $S|init_from: $B|" "$KAIZEN_CONFIG"
timeout 900 "$K" run-once --json --timeout 10m >"$T/run2.out" 2>"$T/run2.err" ||
    [[ $? == 1 ]] || fail "run-once on the broken project: $(cat "$T/run2.out" "$T/run2.err")"
scan=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["scan"]["scan_id"])' "$T/run2.out")
q "SELECT tools FROM scans WHERE scan_id = '$scan'" >"$T/tools.json"
jcheck "$T/tools.json" '
tools = {t["name"]: t for t in d}
for name in ("clang-tidy", "cppcheck"):
    t = tools[name]
    assert t["status"] == "ok", t
    assert t["error"].startswith("no compile database: cmake configure failed: exit 1: CMake Error"), t
'
[[ -z "$(ls -A "$T/state/compdb" 2>/dev/null)" ]] || fail "scratch directories left: $(ls "$T/state/compdb")"
echo "ok"
