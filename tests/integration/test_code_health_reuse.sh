#!/usr/bin/env bash
# test_code_health_reuse.sh - no churn on an unchanged commit, end to end:
# a real broker, the orchestrator's recorder, PostgreSQL, kaizen-code-health
# running real tools (flake8, codespell) through a wrapper that logs each
# call, kaizen-code-quality, kaizen-improvement-planner and
# kaizen-feature-prioritizer.
#   1. agent.run: a scan (ok), its snapshot, its plans;
#   2. agent.run again, nothing changed: scan.completed reused (the same
#      scan_id, rescanned 0, no scan.started, finding.batch or
#      metric.batch), no tool ran, no new scans row (the stored one
#      unchanged), no new snapshot, and the planner proposes nothing (no
#      row added to improvement_suggestions);
#   3. a new commit, and a second agent.run while its scan runs (a tool
#      held on purpose): the scan runs once, then answers the second
#      request (reused, the same scan_id);
#   4. a changed recipe (kaizen-code-health --once with another config):
#      a real scan (flake8 runs again); the same config again: reused;
#   5. the tools' program changed (the wrapper's mtime): a real scan;
#   6. the database holds the last scan as partial (changed by hand): no
#      answer from it, a real scan;
#   7. a partial scan (a recipe whose program exits with an error) is
#      never reused: its tools run again on the next request; its
#      snapshot is marked partial in the database and in kaizen report.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v codespell >/dev/null || skip "no codespell (apt-get install -y codespell)"
/usr/bin/python3 -m flake8 --version >/dev/null 2>&1 || skip "no flake8 (apt-get install -y flake8)"
[[ -x $KZ_TOOLS/kz_sub ]] || skip "no $KZ_TOOLS/kz_sub (make tests)"
PY=/usr/bin/python3
K=$KZ_BIN/kaizen

# the target: a small Python package with misspellings and flake8 findings
R=$T/py
mkdir -p "$R/pkg"
printf '[flake8]\nmax-line-length = 100\n' >"$R/setup.cfg"
printf '"""Values."""\nimport os\n\n# we recieve the values here\nX = 1\n' >"$R/pkg/a.py"
printf '"""More."""\nimport sys\n\n# it is seperate\nY = 2\n' >"$R/pkg/b.py"
git -C "$R" init -q -b main && git -C "$R" add -A
commit() { git -C "$R" -c user.name=t -c user.email=t@example.com commit -qam "$1" || fail "git commit: $1"; }
git -C "$R" -c user.name=t -c user.email=t@example.com commit -qm initial || fail "git commit"
# a second target whose only tool fails: every scan of it is partial
B=$T/sh
mkdir -p "$B"
printf '#!/bin/sh\necho hi\n' >"$B/run.sh"
git -C "$B" init -q -b main && git -C "$B" add -A
git -C "$B" -c user.name=t -c user.email=t@example.com commit -qm initial || fail "git commit sh"

# the wrapper: "NAME ARGS..." logs one line to calls.log, then runs ARGS;
# while $T/ctl/hold exists it waits first (a tool slow on purpose), saying so
# in $T/ctl/held
cat >"$T/wrap" <<EOF
#!/bin/sh
name=\$1; shift
printf '%s %s\n' "\$name" "\$*" >>"$T/ctl/calls.log"
if [ -e "$T/ctl/hold" ]; then
    touch "$T/ctl/held"
    while [ -e "$T/ctl/hold" ]; do sleep 0.1; done
fi
exec "\$@"
EOF
chmod +x "$T/wrap"
printf '#!/bin/sh\necho "crashy: internal error: cannot read its configuration" >&2\nexit 3\n' >"$T/crashy"
chmod +x "$T/crashy"
# the wrapper runs in the sandbox, as its user: its files are in a
# directory it may write (sandbox.bind_rw)
mkdir -m 0777 "$T/ctl"
touch "$T/ctl/calls.log"
chmod 0666 "$T/ctl/calls.log"

kz_config "$T/orch.yaml" <<'EOF'
supervisor:
  broker: false
database:
  flush_interval: 50ms
EOF
# tools [EXTRA-FLAKE8-LINE]: the recipes
tools() {
    cat <<EOF
tools:
  - name: flake8
    languages: [python]
    files: ["*.py"]
    argv: [$T/wrap, flake8, /usr/bin/python3, -m, flake8, --, "{files}"]
    format: gcc
    severity: low
    exit_ok: ["0", "1"]
${1:-}
  - name: codespell
    languages: [python]
    files: ["*.py"]
    argv: [$T/wrap, codespell, codespell, --, "{files}"]
    format: gcc
    category: docs
    exit_ok: ["0", "65"]
  - name: crashy
    languages: [shell]
    files: ["*.sh"]
    argv: [$T/wrap, crashy, $T/crashy, "{files}"]
    format: gcc
EOF
}
body() {
    kz_config_base "$T/orch.yaml"
    cat <<EOF
catalog: false
sandbox: # the wrapper, its log and crashy live in \$T, which the sandbox hides
  bind_ro: [$T/wrap, $T/crashy]
  bind_rw: [$T/ctl]
agents:
  - name: code-health
    interval: 0
targets:
  - name: py
    path: $R
    languages: [python]
  - name: sh
    path: $B
    languages: [shell]
fixers:
  - name: codespell
    tool: codespell
    argv: [codespell, -w, --, "{files}"]
    effort: 0.5
    risk: 0.3
EOF
}
{ body; tools; } >"$T/kaizen.yaml"
{ body; tools '    env: ["KZ_RECIPE_CHANGED=1"]'; } >"$T/changed.yaml"
export KAIZEN_CONFIG=$T/kaizen.yaml
kz_at_exit kz_kill_leftovers
kz_db_start

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator" -c "$T/orch.yaml"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_start sub "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
kz_wait_log sub "listening" || fail "kz_sub did not start"
kz_start quality "$KZ_BIN/kaizen-code-quality" --log-level debug
kz_start planner "$KZ_BIN/kaizen-improvement-planner" --log-level debug
kz_start prio "$KZ_BIN/kaizen-feature-prioritizer" --log-level debug
kz_start health "$KZ_BIN/kaizen-code-health" --log-level debug
hellos() {
    [[ $(kz_psql "SELECT count(DISTINCT name) FROM agents WHERE name IN ('code-quality',
        'improvement-planner', 'feature-prioritizer', 'code-health')") == 4 ]]
}
kz_wait_for 60 hellos || fail "the agents did not say hello"
stop_in_order() {
    local p
    for p in "$PID_health" "$PID_sub" "$PID_quality" "$PID_planner" "$PID_prio" "$PID_orch"; do
        kill -TERM "$p" 2>/dev/null
        kz_wait_for 20 eval "! kill -0 $p"
    done
}
kz_at_exit stop_in_order

# q.py WHAT [N] [TARGET]: the Nth scan.completed of TARGET (py) as JSON, or
# how many messages of type N there are
cat >"$T/q.py" <<'PY'
import json, sys
what = sys.argv[1]
msgs = []
for line in open(sys.argv[2], errors="replace"):
    topic, _, js = line.partition(" ")
    try:
        msgs.append(json.loads(js))
    except ValueError:
        pass
if what == "completed":
    n, target = int(sys.argv[3]), sys.argv[4]
    done = [m["body"] for m in msgs if m["type"] == "scan.completed" and m.get("target") == target]
    if len(done) < n:
        sys.exit(1)
    print(json.dumps(done[n - 1]))
elif what == "count":
    print(sum(1 for m in msgs if m["type"] == sys.argv[3]))
elif what == "ranked":  # how many plan.ranked for scan argv[3]
    print(sum(1 for m in msgs if m["type"] == "plan.ranked" and m["body"]["scan_id"] == sys.argv[3]))
PY
q() { "$PY" "$T/q.py" "$1" "$T/all.out" "${@:2}"; }
# field N TARGET KEY: KEY of the Nth scan.completed of TARGET
field() { q completed "$1" "$2" | "$PY" -c "import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))" "$3"; }
has_scan() { q completed "$1" "${2:-py}" >/dev/null; }
ranked() { [[ $(q ranked "$1") -ge $2 ]]; }
run() { # run TARGET: one agent.run for TARGET
    "$K" publish agent.run '{"agent":"code-health"}' --target "$1" >/dev/null || fail "publish agent.run"
}
expect_eq() { [[ "$2" == "$3" ]] || fail "$1: got '$2', want '$3'"; }
rows() { kz_psql "SELECT (SELECT count(*) FROM scans) || ' ' || (SELECT count(*) FROM
    improvement_suggestions) || ' ' || (SELECT count(*) FROM code_quality_snapshots)"; }

# ------------------------------------------------ 1. a scan, its plans
run py
kz_wait_for 120 has_scan 1 || fail "no scan.completed"
S1=$(field 1 py scan_id)
expect_eq "scan 1 status" "$(field 1 py status)" "ok"
kz_wait_for 60 ranked "$S1" 1 || fail "no plan.ranked for $S1"
snapped() { [[ $(kz_psql "SELECT count(*) FROM code_quality_snapshots WHERE scan_id = '$1'") == 1 ]]; }
kz_wait_for 60 snapped "$S1" || fail "no snapshot of $S1"
plans1=$(kz_psql "SELECT count(*) FROM improvement_suggestions")
((plans1 == 2)) || fail "scan 1: $plans1 plans, expected 2 (a.py, b.py)"
grep -q "^codespell " "$T/ctl/calls.log" && grep -q "^flake8 " "$T/ctl/calls.log" || fail "scan 1: the tools did not run"
rows1=$(rows)
completed_at=$(kz_psql "SELECT completed_at FROM scans WHERE scan_id = '$S1'")

# ------------------------ 2. nothing changed: answered from scan 1, no churn
: >"$T/ctl/calls.log"
run py
kz_wait_for 120 has_scan 2 || fail "no second scan.completed"
expect_eq "scan 2 reused" "$(field 2 py reused)" "True"
expect_eq "scan 2 scan_id" "$(field 2 py scan_id)" "$S1"
expect_eq "scan 2 rescanned" "$(field 2 py rescanned)" "0"
expect_eq "scan 2 findings" "$(field 2 py findings)" "$(field 1 py findings)"
[[ ! -s "$T/ctl/calls.log" ]] || fail "scan 2 ran tools: $(cat "$T/ctl/calls.log")"
for type in scan.started finding.batch metric.batch; do
    expect_eq "$type messages after scan 2" "$(q count $type)" 1
done
kz_wait_for 60 ranked "$S1" 2 || fail "the reused scan was not planned (no second plan.ranked of $S1)"
kz_wait_log planner "scan $S1 of 'py' at [0-9a-f]* (reused): 4 findings, 2 already covered by plans, 0 fixable in 0 plans" ||
    fail "the planner did not plan the reused scan as covered"
kz_wait_log quality "scan '$S1' answered again from the stored scan (reused): no new snapshot" ||
    fail "code-quality did not skip the reused scan"
stored2() { [[ $(kz_psql "SELECT count(*) FROM events WHERE type = 'scan.completed'
    AND body->>'scan_id' = '$S1'") == 2 ]]; }
kz_wait_for 30 stored2 || fail "the reused scan.completed is not in events"
expect_eq "rows after scan 2 (scans, plans, snapshots)" "$(rows)" "$rows1"
expect_eq "scan 1's row" "$(kz_psql "SELECT completed_at FROM scans WHERE scan_id = '$S1'")" "$completed_at"
expect_eq "activity of the reused scan" \
    "$(kz_psql "SELECT action || ' ' || status FROM autonomous_agent_logs WHERE action LIKE 'scan $S1%' ORDER BY id")" \
    "scan $S1 ok
scan $S1 (reused) ok"

# --------- 3. a new commit; a second request while its scan runs
printf '\n# definately\n' >>"$R/pkg/b.py"
commit "more"
: >"$T/ctl/calls.log"
touch "$T/ctl/hold"
run py
kz_wait_for 60 test -e "$T/ctl/held" || fail "scan 3 did not start its tools"
runs() { [[ $(q count agent.run) -ge $1 ]]; }
n=$(q count agent.run)
run py
kz_wait_for 30 runs $((n + 1)) || fail "the second request was not published"
rm -f "$T/ctl/hold"
kz_wait_for 120 has_scan 4 || fail "no answer to the request made during scan 3"
S3=$(field 3 py scan_id)
[[ $S3 != "$S1" && $(field 3 py reused) == None ]] || fail "scan 3 is not a new scan"
expect_eq "scan 4 answers with scan 3" "$(field 4 py scan_id)|$(field 4 py reused)" "$S3|True"
expect_eq "tools run for scans 3 and 4" "$(cut -d' ' -f1 "$T/ctl/calls.log" | sort | tr '\n' ' ')" "codespell flake8 "
expect_eq "scan.started messages" "$(q count scan.started)" 2
# b.py's plan of scan 1 covers its old misspelling: the new plan of scan 3
# for b.py lists only the new one; scan 4 (reused) adds no plan
kz_wait_for 60 ranked "$S3" 2 || fail "scan 4 (reused) was not planned"
expect_eq "plans of scan 3" "$(kz_psql "SELECT string_agg((implementation_plan->'files'->>0) || ':' ||
    jsonb_array_length(implementation_plan->'findings'), ' ') FROM improvement_suggestions
    WHERE implementation_plan->>'scan_id' = '$S3'")" "pkg/b.py:1"
expect_eq "plans in all" "$(kz_psql "SELECT count(*) FROM improvement_suggestions")" 3

# ----------------------- 4. a changed recipe: a real scan; then reused again
: >"$T/ctl/calls.log"
"$KZ_BIN/kaizen-code-health" -c "$T/changed.yaml" --once >"$T/once1.log" 2>&1 ||
    fail "kaizen-code-health --once: $(tail -n 5 "$T/once1.log")"
kz_wait_for 60 has_scan 5 || fail "no scan.completed after the recipe changed"
S5=$(field 5 py scan_id)
[[ $S5 != "$S3" && $(field 5 py reused) == None ]] || fail "a changed recipe was answered from the stored scan"
expect_eq "tools run after the recipe changed" "$(cut -d' ' -f1 "$T/ctl/calls.log" | sort -u | tr '\n' ' ')" "crashy flake8 "
: >"$T/ctl/calls.log"
"$KZ_BIN/kaizen-code-health" -c "$T/changed.yaml" --once >"$T/once2.log" 2>&1 ||
    fail "kaizen-code-health --once: $(tail -n 5 "$T/once2.log")"
kz_wait_for 60 has_scan 6 || fail "no scan.completed for the same recipe again"
expect_eq "scan 6 answers with scan 5" "$(field 6 py scan_id)|$(field 6 py reused)" "$S5|True"
grep -q "^flake8\|^codespell" "$T/ctl/calls.log" && fail "scan 6 ran tools: $(cat "$T/ctl/calls.log")"

# ---------------------- 5. the tools' program changed: a real scan
touch -d "1 hour ago" "$T/wrap"
: >"$T/ctl/calls.log"
run py
kz_wait_for 120 has_scan 7 || fail "no scan.completed after the program changed"
[[ $(field 7 py reused) == None && $(field 7 py scan_id) != "$S5" ]] ||
    fail "a changed program was answered from the stored scan"
expect_eq "tools run after the program changed" "$(cut -d' ' -f1 "$T/ctl/calls.log" | sort -u | tr '\n' ' ')" "codespell flake8 "

# ------------- 6. the database does not hold the last scan as ok: no answer
S7=$(field 7 py scan_id)
kz_wait_for 30 kz_psql_is "SELECT status FROM scans WHERE scan_id = '$S7'" ok ||
    fail "scan 7 not recorded as ok"
kz_psql "UPDATE scans SET status = 'partial' WHERE scan_id = '$S7'" >/dev/null
: >"$T/ctl/calls.log"
run py
kz_wait_for 120 has_scan 8 || fail "no scan.completed for scan 8"
[[ $(field 8 py reused) == None && $(field 8 py scan_id) != "$S7" ]] ||
    fail "a scan the database has as partial answered again"
kz_wait_log health "its last scan $S7 cannot answer (the database has it as 'partial'): scanning again" ||
    fail "code-health did not say why it scanned again"

# ------------------------------ 7. a partial scan is never reused
# (sh was scanned by the two --once runs of step 4 already)
: >"$T/ctl/calls.log"
nsh=$("$PY" -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if l.startswith('scan.completed ') and json.loads(l.partition(' ')[2]).get('target') == 'sh'))" "$T/all.out")
run sh
kz_wait_for 120 has_scan $((nsh + 1)) sh || fail "no scan.completed of sh"
expect_eq "sh scan status" "$(field $((nsh + 1)) sh status)" "partial"
run sh
kz_wait_for 120 has_scan $((nsh + 2)) sh || fail "no second scan.completed of sh"
[[ $(field $((nsh + 2)) sh reused) == None && $(field $((nsh + 2)) sh scan_id) != "$(field $((nsh + 1)) sh scan_id)" ]] ||
    fail "the partial scan answered again"
expect_eq "crashy runs" "$(grep -c '^crashy ' "$T/ctl/calls.log")" 2
SH2=$(field $((nsh + 2)) sh scan_id)
kz_wait_for 60 snapped "$SH2" || fail "no snapshot of $SH2"
expect_eq "the partial snapshot" \
    "$(kz_psql "SELECT partial, metrics->>'rating_label', metrics->'partial_tools'->0->>'name' FROM code_quality_snapshots WHERE scan_id = '$SH2'")" \
    "t|A (partial: crashy error)|crashy"
"$K" report >"$T/report.txt" 2>&1 || fail "kaizen report: $(cat "$T/report.txt")"
grep -q "^  sh: A (partial: crashy error), score 100.0, 0 findings, trend unknown (.*), scan $SH2 at " "$T/report.txt" ||
    fail "kaizen report: $(sed -n '/^Quality/,/^$/p' "$T/report.txt")"
grep -q "^    crashy error: exit 3: crashy: internal error" "$T/report.txt" ||
    fail "kaizen report does not say why crashy failed: $(sed -n '/^Quality/,/^$/p' "$T/report.txt")"

! grep -E " error " "$T/planner.log" "$T/prio.log" "$T/quality.log" || fail "errors in the agents' logs"
echo "ok"
