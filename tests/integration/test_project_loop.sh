#!/usr/bin/env bash
# test_project_loop.sh - the whole loop on a project configured only
# through .pre-commit-config.yaml and pyproject.toml, with vendored and
# generated code, from the built-in catalog (a config naming only the
# target):
#   - codespell, chosen by its pre-commit hook (pinned at the installed
#     version) whose args ignore "te": the typo in pkg/util.py is planned,
#     fixed and accepted; "te" is neither reported nor changed;
#   - mypy, chosen by [tool.mypy] with pretty = true and files = ["pkg"]:
#     its finding in pkg/ has the error code as its rule and its message
#     whole; the error in tests/ (not type-checked by the project) is not
#     reported;
#   - vendor/ and a .gitattributes linguist-generated file: their typos are
#     found and stored with their reason, and no plan touches them;
#   - every plan validated by the project's tests; none "nothing to do".
# kz-plain-only: the full loop with every agent (a real broker, orchestrator and PostgreSQL)
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for a in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-improvement-planner \
    kaizen-code-refactorer kaizen-test-runner kaizen-code-reviewer; do
    [[ -x $KZ_BIN/$a ]] || skip "$a is not built"
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v codespell >/dev/null || skip "codespell is not installed"
/usr/bin/python3 -m mypy --version >/dev/null 2>&1 || skip "no mypy for /usr/bin/python3"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "no pytest for /usr/bin/python3"
kz_python json || skip "no python3 with json"
installed=$(codespell --version | head -n 1)
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

S=$T/src
mkdir -p "$S/pkg" "$S/tests" "$S/vendor" "$S/gen"
cat >"$S/.pre-commit-config.yaml" <<EOF2
repos:
  - repo: https://github.com/codespell-project/codespell
    rev: v$installed
    hooks:
      - id: codespell
        args: [--ignore-words-list=te]
EOF2
printf '[project]\nname = "pkg"\nversion = "0.1"\n\n[tool.mypy]\npretty = true\nfiles = ["pkg"]\n' >"$S/pyproject.toml"
printf 'gen/*.py linguist-generated\n' >"$S/.gitattributes"
cat >"$S/pkg/__init__.py" <<'EOF2'
EOF2
cat >"$S/pkg/util.py" <<'EOF2'
import typing_extensions as te  # noqa: F401


def first(items: list) -> int:
    # return the first item we recieve
    return items[0]


def count(items: list) -> int:
    n: int = len(items)
    return n


def label(x: int) -> str:
    return x + 1  # a type error mypy reports
EOF2
printf '# vendored: somebody else'"'"'s code\ndef helper():\n    # we recieve it as it is\n    return 1\n' >"$S/vendor/ext.py"
printf '# a generated module\ndef made():\n    # we recieve what the generator wrote\n    return 2\n' >"$S/gen/api.py"
cat >"$S/tests/test_util.py" <<'EOF2'
from pkg.util import count, first


def test_first():
    assert first([3, 4]) == 3


def test_count():
    assert count([1, 2]) == 2


def untyped(x: int) -> str:
    return x  # a type error in tests/: not type-checked by the project
EOF2
/usr/bin/python3 -c "import typing_extensions" 2>/dev/null ||
    sed -i 's/^import typing_extensions as te  # noqa: F401$/import os as te  # noqa: F401/' "$S/pkg/util.py"

kz_config </dev/null
{
    kz_config_base "$T/kaizen.yaml"
    cat <<EOF2
targets:
  - name: proj
    path: $T/proj
    init_from: $S
    languages: [python]
    test: [/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    env: [PYTHONPATH=.]
EOF2
} >"$T/full.yaml"
kz_at_exit "\"$K\" -c \"$T/full.yaml\" down --timeout 60s"
timeout 1500 "$K" -c "$T/full.yaml" run-once --json --timeout 15m >"$T/ro.out" 2>"$T/ro.err" ||
    fail "run-once exited $?: $(cat "$T/ro.out" "$T/ro.err")"
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$T/state/db/run" -U kaizen -d kaizen -c "$1"; }

"$PY" - "$T/ro.out" <<'PY' || fail "run-once: $(cat "$T/ro.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "completed", (d["result"], d["pending"])
plans = sorted((p["fixer"], p["files"][0], p.get("outcome")) for p in d["plans"])
assert plans == [("codespell", "pkg/util.py", "accepted")], plans
t = d["targets"][0]
tools = {x["name"]: x["status"] for x in t["scan"]["tools"]}
assert tools["codespell"] == "ok" and tools["mypy"] == "ok", tools
PY

# the findings as stored: codespell's three typos (two set aside, with their
# reason), no "te"; mypy's one finding in pkg/, its rule the error code
got=$(q "SELECT tool || '|' || rule || '|' || file || '|' || COALESCE(excluded, '-') FROM findings
         WHERE tool IN ('codespell', 'mypy') ORDER BY 1")
want="codespell|misspelling|gen/api.py|generated: .gitattributes linguist-generated
codespell|misspelling|pkg/util.py|-
codespell|misspelling|vendor/ext.py|vendored: vendor/
mypy|return-value|pkg/util.py|-"
[[ "$got" == "$want" ]] || fail "findings:
$got
want:
$want"
msg=$(q "SELECT message FROM findings WHERE tool = 'mypy'")
[[ "$msg" == *'Incompatible return value type (got "int", expected "str")'* ]] || fail "mypy message cut: $msg"

# the fix on the integration branch: the typo, and nothing else
git -C "$T/proj" diff main kaizen/improvements >"$T/diff" || fail "no integration branch"
grep -q '^+    # return the first item we receive$' "$T/diff" || fail "no fix: $(cat "$T/diff")"
[[ $(grep -c '^[-+][^-+]' "$T/diff") == 2 ]] || fail "more than the typo changed: $(cat "$T/diff")"
grep -q 'as te' "$T/proj/pkg/util.py" || fail "te changed"
echo "ok"
