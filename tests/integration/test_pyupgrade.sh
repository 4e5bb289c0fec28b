#!/usr/bin/env bash
# test_pyupgrade.sh - pyupgrade, a tool with no check mode, from the
# built-in catalog: a project that chose it in .pre-commit-config.yaml
# (with --py36-plus, pinned at the installed version) gets its findings
# from a run on copies (format "rewrite": the worktree is untouched), one
# plan by the pyupgrade fixer that runs with the hook's args (the
# .format() call becomes an f-string only with --py36-plus), validated by
# the project's tests and accepted. A second project pins another
# version: its findings are shown but not planned.
# kz-plain-only: the full loop with every agent (a real broker, orchestrator and PostgreSQL)
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for a in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-improvement-planner \
    kaizen-code-refactorer kaizen-test-runner kaizen-code-reviewer; do
    [[ -x $KZ_BIN/$a ]] || skip "$a is not built"
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v pyupgrade >/dev/null || skip "pyupgrade is not installed"
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || skip "no pytest for /usr/bin/python3"
installed=$(/usr/bin/python3 -c "import importlib.metadata as m; print(m.version('pyupgrade'))") ||
    skip "pyupgrade has no package metadata"
kz_python json || skip "no python3 with json"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

# project SRC (pre-commit rev REV)
project() {
    local src=$1 rev=$2
    mkdir -p "$src/tests"
    cat >"$src/.pre-commit-config.yaml" <<EOF2
repos:
  - repo: https://github.com/asottile/pyupgrade
    rev: v$rev
    hooks:
      - id: pyupgrade
        args: [--py36-plus]
EOF2
    printf 'def pair(a, b):\n    return set([a, b])\n\n\ndef greet(name):\n    return "hi {}".format(name)\n' >"$src/mod.py"
    printf 'from mod import greet, pair\n\n\ndef test_pair():\n    assert pair(1, 2) == {1, 2}\n\n\ndef test_greet():\n    assert greet("x") == "hi x"\n' >"$src/tests/test_mod.py"
}
project "$T/src" "$installed"
project "$T/src2" "99.0.0"

kz_config </dev/null
kz_config_base "$T/kaizen.yaml" >"$T/bare.yaml"
{
    cat "$T/bare.yaml"
    for n in up up2; do
        s=src; [[ $n == up2 ]] && s=src2
        cat <<EOF2
  - name: $n
    path: $T/$n
    init_from: $T/$s
    languages: [python]
    test: [/usr/bin/python3, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    env: [PYTHONPATH=.]
EOF2
    done
} | sed '0,/^  - name: up$/s//targets:\n  - name: up/' >"$T/kaizen.yaml"
kz_at_exit "\"$K\" -c \"$T/kaizen.yaml\" down --timeout 60s"
timeout 1500 "$K" -c "$T/kaizen.yaml" run-once --json --timeout 15m >"$T/ro.out" 2>"$T/ro.err" ||
    fail "run-once exited $?: $(cat "$T/ro.out" "$T/ro.err")"

"$PY" - "$T/ro.out" <<'PY' || fail "run-once: $(cat "$T/ro.out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "completed", (d["result"], d["pending"])
t = {x["name"]: x for x in d["targets"]}
assert t["up"]["scan"]["status"] == "ok", t["up"]["scan"]
# one finding: mod.py would be rewritten (its test file is already modern)
tools = {x["name"]: x for x in t["up"]["scan"]["tools"]}
assert tools["pyupgrade"]["status"] == "ok", tools["pyupgrade"]
plans = [p for p in d["plans"] if p["target"] == "up"]
assert [(p["fixer"], p["files"], p.get("outcome")) for p in plans] == [
    ("pyupgrade", ["mod.py"], "accepted")], plans
# the other pin: shown, not planned
tools2 = {x["name"]: x for x in t["up2"]["scan"]["tools"]}
assert "version differs from the project's pin" in json.dumps(tools2["pyupgrade"]), tools2
assert not [p for p in d["plans"] if p["target"] == "up2"], d["plans"]
PY

# the fix: what pyupgrade --py36-plus makes of it, on the integration branch
git -C "$T/up" diff main kaizen/improvements -- mod.py >"$T/diff" || fail "no integration branch"
grep -q '^+    return {a, b}$' "$T/diff" || fail "no set literal: $(cat "$T/diff")"
grep -q "^+    return f\"hi {name}\"$" "$T/diff" || fail "no f-string (the hook's --py36-plus): $(cat "$T/diff")"
[[ -z "$(git -C "$T/up" status --porcelain)" ]] || fail "the checkout changed: $(git -C "$T/up" status)"
echo "ok"
