#!/usr/bin/env bash
# test_project_notes.sh - what a project chose and kaizen could not follow
# is said in every summary: the full loop (`kaizen run-once`, the built-in
# agents and catalog, real PostgreSQL) on a small Python project whose
# pre-commit config pins codespell at a version other than the installed
# one and runs ruff. run-once's text and JSON and `kaizen report` (text,
# --json, --html) carry both notes - "version differs from the project's
# pin (2.4.2 pinned, X installed)" and "chosen by the project but not
# run: ruff (...)" - and never list ruff with a count of findings.
# kz-timeout: 1200
# kz-plain-only: the full loop with every agent
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health kaizen-code-quality \
    kaizen-improvement-planner kaizen-feature-prioritizer kaizen-code-refactorer \
    kaizen-test-runner kaizen-code-reviewer kaizen-pattern-learner; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
command -v git >/dev/null || skip "git is not installed"
command -v codespell >/dev/null || skip "codespell is not installed"
kz_python json || skip "no python3"
installed=$(codespell --version | head -n 1)
[[ $installed != 2.4.2 ]] || skip "codespell 2.4.2 is installed: the pin would match"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

expect() { # expect RC NAME CMD... : output in $T/NAME.out, $T/NAME.err
    local want=$1 name=$2; shift 2
    timeout 540 "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/$name.out" "$T/$name.err")"
}

P=$T/proj
mkdir -p "$P/src"
cat >"$P/.pre-commit-config.yaml" <<'EOF'
repos:
  - repo: https://github.com/codespell-project/codespell
    rev: v2.4.2
    hooks:
      - id: codespell
  - repo: https://github.com/astral-sh/ruff-pre-commit
    rev: v0.1.6
    hooks:
      - id: ruff
EOF
printf '"""Words."""\n# we recieve data\n' >"$P/src/words.py"
git -C "$P" init -q -b main
git -C "$P" add -A
git -C "$P" -c user.name=t -c user.email=t@example.com commit -qm "initial" || fail "git commit"

kz_config <<EOF
targets:
  - name: proj
    path: $P
    languages: [python]
EOF
# the loop's own agents and the catalog: no agents: and no tools: here
kz_config_base "$T/kaizen.yaml" >"$T/full.yaml"
export KAIZEN_CONFIG=$T/full.yaml
kz_at_exit "\"$K\" -c \"$T/full.yaml\" down --timeout 60s"
expect 0 run "$K" run-once --timeout 5m
expect 0 run-json "$K" run-once --json --timeout 5m

pin="version differs from the project's pin (2.4.2 pinned, $installed installed)"
ruff="chosen by the project but not run: ruff (no recipe; 0.1.6 pinned, not installed, not packaged in Debian 12)"
for f in run.out run.err; do cat "$T/$f"; done >"$T/run.all"
grep -qF "codespell: $pin" "$T/run.all" || fail "run-once does not say the pin: $(cat "$T/run.all")"
grep -qF "ruff: $ruff" "$T/run.all" || fail "run-once does not say ruff: $(cat "$T/run.all")"
grep -E "^ +ruff +[0-9]" "$T/run.all" && fail "run-once lists ruff with a count"
"$PY" - "$T/run-json.out" "$pin" "$ruff" <<'PY' || fail "run-once --json: $(cat "$T/run-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
tools = {t["name"]: t for tg in d["targets"] for t in tg["scan"]["tools"]}
assert tools["codespell"]["status"] == "ok" and tools["codespell"]["note"] == sys.argv[2], tools["codespell"]
assert tools["ruff"]["status"] == "skipped" and tools["ruff"]["note"] == sys.argv[3], tools["ruff"]
PY

# the finding of the codespell of another version is kept, not planned
n=$(kz_psql "SELECT count(*) FROM findings WHERE tool = 'codespell' AND excluded = '${pin//\'/\'\'}'")
[[ $n -ge 1 ]] || fail "no codespell finding set aside with the pin's reason: $(kz_psql "SELECT tool, file, excluded FROM findings")"
[[ $(kz_psql "SELECT count(*) FROM improvement_suggestions") == 0 ]] ||
    fail "a plan was made: $(kz_psql "SELECT plan_id, fixer, status FROM improvement_suggestions")"

expect 0 report "$K" report
grep -qF "codespell: $pin" "$T/report.out" || fail "report does not say the pin: $(cat "$T/report.out")"
grep -qF "ruff: $ruff" "$T/report.out" || fail "report does not say ruff: $(cat "$T/report.out")"
expect 0 report-json "$K" report --json
"$PY" - "$T/report-json.out" "$pin" "$ruff" <<'PY' || fail "report --json: $(cat "$T/report-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
sc = [s for s in d["scans"] if s["target"] == "proj"][0]
clean = {t["name"]: t for t in sc["tools_clean"]}
skipped = {t["name"]: t for t in sc["tools_skipped"]}
assert clean["codespell"]["note"] == sys.argv[2], clean
assert skipped["ruff"]["note"] == sys.argv[3] and "ruff" not in clean, skipped
PY
expect 0 report-html "$K" report --html "$T/report.html"
grep -qF "version differs from the project&#39;s pin (2.4.2 pinned, $installed installed)" "$T/report.html" ||
    fail "report --html does not say the pin: $(grep -i codespell "$T/report.html")"
grep -qF "chosen by the project but not run: ruff" "$T/report.html" || fail "report --html does not say ruff"
echo "ok"
