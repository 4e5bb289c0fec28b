#!/usr/bin/env bash
# test_fixable.sh - the planner plans only what a fixer can change
# kz-timeout: 1200
# kz-plain-only: the full loop with every agent and real tools; the agents' code runs under the sanitizers in their own tests
#
# `kaizen run-once` on a small Python project the test writes, with the
# built-in catalog's recipes (fixers codespell, autoflake, autopep8,
# shellcheck; tools flake8 and codespell, chosen by the project's
# setup.cfg and .codespellrc; shellcheck at every level, as a project that
# chose it would run it), real flake8, codespell, autoflake and shellcheck:
#   - pkg/util.py: "teh" in a comment (one suggestion) is planned for
#     codespell and accepted; "te" on the same line (four suggestions) is
#     not planned and stays, which does not fail the review;
#   - pkg/names.py and tests/test_pkg.py: "recieve" is a function name
#     (an identifier: not planned), so "teh" in names.py's comment is not
#     planned either (codespell -w would rename the function too);
#   - pkg/imports.py: F401 (unused import) planned for autoflake, accepted;
#     pkg/__init__.py: F401 not planned (autoflake's exclude: a re-export);
#   - pkg/names.py: E501 (no fixer: autopep8 does not take it);
#   - pkg/spacing.py: black (chosen in pyproject.toml) reformats it,
#     accepted; its E225 is not planned for autopep8, which defers to
#     black (defer_to);
#   - scripts/today.sh: SC2006 fixed from shellcheck's -f diff patch
#     (fixer output: diff), accepted.
# The planner's counts per reason reach plan.batch (run-once --json:
# targets[].planning.unplanned) and run-once's text summary; no plan
# ends "nothing to do".
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for a in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-code-quality \
    kaizen-improvement-planner kaizen-feature-prioritizer kaizen-code-refactorer \
    kaizen-test-runner kaizen-code-reviewer kaizen-pattern-learner; do
    [[ -x $KZ_BIN/$a ]] || skip "$a is not built"
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
for tool in git codespell shellcheck autoflake; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
/usr/bin/python3 -m flake8 --version >/dev/null 2>&1 || skip "no flake8 for /usr/bin/python3"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "no pytest for /usr/bin/python3"
/usr/bin/python3 -m autopep8 --version >/dev/null 2>&1 || skip "no autopep8 for /usr/bin/python3"
kz_python json yaml || skip "no python3 with yaml"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

# ------------------------------------------------------------ the project
P=$T/src
mkdir -p "$P/pkg" "$P/tests" "$P/scripts"
printf '[flake8]\nmax-line-length = 79\n' >"$P/setup.cfg"
printf '[codespell]\n' >"$P/.codespellrc"
printf '[tool.black]\n' >"$P/pyproject.toml"
printf '"""Spacing."""\nX=1\n' >"$P/pkg/spacing.py"
printf '"""A small package."""\nfrom os import sep  # re-exported\n' >"$P/pkg/__init__.py"
cat >"$P/pkg/util.py" <<'EOF'
"""Small helpers."""


def double(value):
    """Return twice the value."""
    # teh result is computed here; te value is the input
    return value * 2
EOF
cat >"$P/pkg/imports.py" <<'EOF'
"""Paths."""
import os
import sys


def program():
    """The name of the running program."""
    return sys.argv[0]
EOF
cat >"$P/pkg/names.py" <<'EOF'
"""Names."""


def recieve(items):
    """Take the items."""
    # teh items are copied, and this comment is long enough to pass the line limit
    return list(items)
EOF
cat >"$P/tests/test_pkg.py" <<'EOF'
from pkg.imports import program
from pkg.names import recieve
from pkg.util import double


def test_double():
    assert double(2) == 4


def test_program():
    assert program()


def test_names():
    assert recieve((1, 2)) == [1, 2]
EOF
# shellcheck disable=SC2016 # the backticks are the script's
printf '#!/bin/sh\n# Print the date.\necho "today: `date`"\n' >"$P/scripts/today.sh"
chmod 755 "$P/scripts/today.sh"

# ------------------------------------------------------------- the config
kz_config "$T/base.yaml" </dev/null
"$PY" - "$KZ_ROOT/catalog" "$T/base.yaml" "$T/kaizen.yaml" "$T" <<'PY' || fail "unable to write the config"
import sys, yaml
cat, base, out, t = sys.argv[1:5]
c = yaml.safe_load(open(base))
def recipes(name, key):
    return {r["name"]: r for r in yaml.safe_load(open("%s/%s" % (cat, name)))[key]}
shell = recipes("shell.yaml", "tools")
# the built-in catalog gives flake8 and codespell (the project chose them:
# setup.cfg [flake8], .codespellrc) and the fixers; shellcheck here reports
# every level, as a project that chose it would run it
sc = dict(shell["shellcheck"])
sc["argv"] = ["shellcheck", "-f", "gcc", "--", "{files}"]
c["tools"] = [sc]
c["agents"] = [{"name": a, "interval": 0} for a in (
    "code-health", "code-quality", "improvement-planner", "feature-prioritizer",
    "code-refactorer", "test-runner", "code-reviewer", "pattern-learner")]
c["targets"] = [{"name": "proj", "path": t + "/proj", "init_from": t + "/src",
                 "languages": ["python", "shell"],
                 "test": ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--junitxml={junit}"]}]
c["database"] = {"flush_interval": "50ms"}
yaml.safe_dump(c, open(out, "w"), default_flow_style=False, sort_keys=False)
PY
export KAIZEN_CONFIG=$T/kaizen.yaml
kz_at_exit "\"$K\" -c \"$T/kaizen.yaml\" down --timeout 60s"

timeout 1500 "$K" -c "$T/kaizen.yaml" run-once --json --timeout 15m >"$T/ro.out" 2>"$T/ro.err" ||
    fail "run-once exited $?: $(cat "$T/ro.out" "$T/ro.err")"

# --------------------------------------------------------------- planning
"$PY" - "$T/ro.out" <<'PY' || fail "run-once: $(cat "$T/ro.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "completed", (d["result"], d["pending"])
t = d["targets"][0]
assert t["planning"]["unplanned"] == {
    "no_fixer": 1,             # E501 in pkg/names.py
    "several_suggestions": 1,  # "te" in pkg/util.py
    "identifier": 3,           # "recieve" in pkg/names.py and twice in tests/test_pkg.py
    "renames_identifier": 1,   # "teh" in pkg/names.py
    "left_alone": 1,           # F401 in pkg/__init__.py
    "deferred": 1,             # E225 in pkg/spacing.py (black reformats it)
}, t["planning"]
plans = sorted((p["fixer"], p["files"][0], p.get("outcome"), p.get("cause")) for p in d["plans"])
assert plans == [
    ("autoflake", "pkg/imports.py", "accepted", None),
    ("black", "pkg/spacing.py", "accepted", None),
    ("codespell", "pkg/util.py", "accepted", None),
    ("shellcheck", "scripts/today.sh", "accepted", None),
], plans
assert t["planning"]["proposed"] == 4, t["planning"]
for p in d["plans"]:
    assert len(p["findings"]) == 1, p  # only the finding its fixer can change
PY

# ------------------------------------------------------------ the changes
R=$T/proj
git -C "$R" rev-parse -q --verify refs/heads/kaizen/improvements >/dev/null || fail "no integration branch"
show() { git -C "$R" show "kaizen/improvements:$1"; }
show pkg/util.py | grep -q "# the result is computed here; te value is the input" ||
    fail "codespell fix: $(show pkg/util.py)"
show pkg/imports.py | grep -q "^import os" && fail "autoflake left the import: $(show pkg/imports.py)"
show pkg/imports.py | grep -q "^import sys" || fail "autoflake removed too much: $(show pkg/imports.py)"
# shellcheck disable=SC2016 # the text the fix wrote
show scripts/today.sh | grep -qF 'echo "today: $(date)"' || fail "shellcheck fix: $(show scripts/today.sh)"
[[ "$(git -C "$R" ls-tree kaizen/improvements scripts/today.sh | cut -c1-6)" == 100755 ]] ||
    fail "the script lost its mode"
show pkg/__init__.py | grep -q "^from os import sep" || fail "a re-export was removed"
show pkg/spacing.py | grep -q "^X = 1" || fail "black's fix: $(show pkg/spacing.py)"
show pkg/names.py | grep -q "def recieve" || fail "an identifier was renamed: $(show pkg/names.py)"
show pkg/names.py | grep -q "# teh items" || fail "names.py was changed: $(show pkg/names.py)"
[[ -z "$(git -C "$R" status --porcelain)" ]] || fail "the checkout changed: $(git -C "$R" status)"

# the planner's log line and run-once's text summary
grep -rqF "12 findings, 0 already covered by plans, 4 fixable in 4 plans, 8 not planned: 1 no fixer for the rule, 1 several suggestions, 3 an identifier, 1 the fixer would also rename an identifier in the file, 1 a file the fixer leaves alone, 1 another fixer's plan for the file goes first, 0 set aside" \
    "$T/state/logs/" || fail "planner log: $(grep -rh "not planned" "$T/state/logs/")"
"$K" -c "$T/kaizen.yaml" run-once --timeout 10m >"$T/ro2.out" 2>"$T/ro2.err" ||
    fail "second run-once: $(cat "$T/ro2.out" "$T/ro2.err")"
grep -qF "  not planned: 8 findings (1 no fixer for the rule, 1 several suggestions, 3 an identifier, 1 the fixer would also rename an identifier in the file, 1 a file the fixer leaves alone, 1 another fixer's plan for the file goes first)" "$T/ro2.out" ||
    fail "no unplanned counts in the summary: $(cat "$T/ro2.out")"
echo "ok"
