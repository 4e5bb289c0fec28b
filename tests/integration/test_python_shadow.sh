#!/usr/bin/env bash
# test_python_shadow.sh - a committed black.py does not stand in for black (issue 11)
# kz-timeout: 600
# kz-plain-only: the full loop with every agent and the catalog's real tools
#
# `python3 -m black` run in a worktree put that directory first on
# sys.path: a target that commits black.py had it run instead of black
# (as root, during the scan, with "black 0" findings). The catalog now
# runs Python tools as `python3 -I -m TOOL` (pylint, mypy: -P). A Python
# target that chose black, isort, flake8, pylint, mypy and pydocstyle
# commits black.py, isort.py, flake8.py, pylint.py, mypy.py,
# pydocstyle.py, bandit.py and autopep8.py, each writing a marker outside
# the worktree and printing nothing - first shown to be picked up by a
# plain `python3 -m black` there. Then `kaizen run-once` with the built-in
# catalog; the test asserts: no marker was written, every tool reported
# its real finding on mod.py, and black's plan on mod.py (its fixer runs
# in the same worktree) was accepted with exactly what black makes of a
# copy.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-code-quality \
    kaizen-improvement-planner kaizen-feature-prioritizer kaizen-code-refactorer \
    kaizen-test-runner kaizen-code-reviewer kaizen-pattern-learner; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
MODS="black isort flake8 pylint mypy pydocstyle bandit autopep8"
for m in $MODS; do
    /usr/bin/python3 -m "$m" --version >/dev/null 2>&1 || skip "no $m for /usr/bin/python3"
done
command -v git >/dev/null || skip "no git"
kz_python json || skip "no python3 with json"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

# ------------------------------------------------------------- the target
S=$T/src/shadow
mkdir -p "$S"
printf '[tool.black]\nline-length = 100\n\n[tool.isort]\nprofile = "black"\n' >"$S/pyproject.toml"
printf '[flake8]\nmax-line-length = 100\n' >"$S/setup.cfg"
printf '[MAIN]\n' >"$S/.pylintrc"
printf '[mypy]\n' >"$S/mypy.ini"
printf '[pydocstyle]\n' >"$S/.pydocstyle"
for m in $MODS; do
    cat >"$S/$m.py" <<EOF
"""Not $m."""

open("$T/shadow-$m", "w", encoding="utf-8").close()
EOF
done
# real findings of each tool: unformatted (black), unsorted and unused
# imports (isort, flake8, pylint), a wrong return type (mypy), no
# docstrings (pydocstyle)
cat >"$S/mod.py" <<'EOF'
import sys
import os


def bump(x: int) -> str:
    return x+1
EOF
git -C "$S" init -q -b main || fail "git init"
git -C "$S" add -A || fail "git add"
git -C "$S" -c user.name=t -c user.email=t@t commit -qm "shadows" || fail "git commit"

# the shadow is real: a plain `python3 -m black` there runs black.py
(cd "$S" && /usr/bin/python3 -m black --check mod.py >"$T/proof.out" 2>&1)
[[ -e $T/shadow-black && ! -s $T/proof.out ]] ||
    fail "proof: black.py did not stand in for black: $(cat "$T/proof.out")"
rm -f "$T"/shadow-*

# ------------------------------------------------------------- the run
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
  require_approval: 0.15
targets:
  - name: shadow
    path: $T/targets/shadow
    init_from: $S
    languages: [python]
    test: [/bin/echo, "1 passed, 0 failed"]
    branch: main
EOF
kz_at_exit "\"$K\" down --timeout 60s"
timeout 600 "$K" run-once --json --timeout 8m >"$T/run.out" 2>"$T/run.err" ||
    fail "run-once failed: $(cat "$T/run.out" "$T/run.err")"
cp "$T/state/logs/code-health.0.log" "$T/code-health.log" 2>/dev/null
cp "$T/state/logs/code-refactorer.0.log" "$T/code-refactorer.log" 2>/dev/null
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$T/state/db/run" -U kaizen -d kaizen -c "$1"; }

shadows=$(cd "$T" && ls -d shadow-* 2>/dev/null)
[[ -z $shadows ]] || fail "a committed module ran instead of the tool: $shadows"

scan=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["scan"]["scan_id"])' "$T/run.out")
q "SELECT tools FROM scans WHERE scan_id = '$scan'" >"$T/tools.json"
q "SELECT tool || '|' || rule || '|' || file FROM findings WHERE scan_id = '$scan'" |
    LC_ALL=C sort -u >"$T/findings"
"$PY" - "$T/tools.json" "$T/findings" <<'PY' || fail "tools or findings"
import json, sys
tools = {t["name"]: t for t in json.load(open(sys.argv[1]))}
found = {tuple(l.rstrip("\n").split("|", 2)) for l in open(sys.argv[2]) if l.strip()}
bad = []
for name in ("black", "isort", "flake8", "pylint", "mypy", "pydocstyle", "bandit"):
    t = tools.get(name)
    if not t or t.get("status") != "ok":
        bad.append(("did not run cleanly", name, t))
for want in [("black", "would-reformat", "mod.py"), ("isort", "unsorted-imports", "mod.py"),
             ("flake8", "F401", "mod.py"), ("pylint", "unused-import", "mod.py"),
             ("mypy", "return-value", "mod.py"), ("pydocstyle", "D103", "mod.py")]:
    if want not in found:
        bad.append(("missing", want))
# the shadows are formatted: black's only finding is mod.py
if {f for t, r, f in found if t == "black"} != {"mod.py"}:
    bad.append(("black", sorted(x for x in found if x[0] == "black")))
assert not bad, "\n".join(map(repr, bad)) + "\n" + "\n".join(map(repr, sorted(found)))
PY

# black's plan: the real black ran in a worktree holding black.py
"$PY" - "$T/run.out" <<'PY' || fail "plans: $(cat "$T/run.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "completed", (d["result"], d["pending"])
acc = [(p["fixer"], p["files"]) for p in d["plans"] if p.get("outcome") == "accepted"]
assert acc == [("black", ["mod.py"])], d["plans"]
PY
mkdir -p "$T/expect"
cp "$S/pyproject.toml" "$S/mod.py" "$T/expect/"
(cd "$T/expect" && /usr/bin/python3 -I -m black -q -- mod.py) || fail "black on the copy"
git -C "$T/targets/shadow" show kaizen/improvements:mod.py >"$T/got.py" || fail "no mod.py fix"
cmp -s "$T/got.py" "$T/expect/mod.py" || fail "black's fix: $(diff -u "$T/expect/mod.py" "$T/got.py")"
shadows=$(cd "$T" && ls -d shadow-* 2>/dev/null)
[[ -z $shadows ]] || fail "a committed module ran during the plans: $shadows"
echo "ok"
