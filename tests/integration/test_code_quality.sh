#!/usr/bin/env bash
# test_code_quality: kaizen-code-quality on a real broker, orchestrator
# (whose recorder stores everything) and PostgreSQL. The messages
# code-health would send are published by hand (kaizen publish):
#   S1  scan.started, two finding.batch (one sent twice: a redelivered
#       batch), scan.completed with loc 2000 -> snapshot: counts by severity
#       and category, rating C (a high bug caps it at C; density 5),
#       overall_score 67.9, documentation_score 95, security_score 100 (a
#       security tool ran), worst files b.py, a.py, c.py, trend "new"
#   S2  scan.completed published BEFORE its findings (the agent waits for
#       them), fewer findings -> rating A, trend improved against S1
#   S2 again (a redelivery)  -> still one snapshot of S2
#   S3  a failed scan        -> no snapshot
#   S4  a target not in the config -> no snapshot
#   S5  published while the database is down -> snapshot once it is back,
#       trend against S2
#   S6  partial (mypy error, one finding fewer) -> snapshot marked partial
#       (summary partial, partial_tools, rating_label "A (partial: mypy
#       error)", column partial), trend "unknown" with the reason (the
#       missing findings could explain the improvement)
#   S7  complete, more findings -> trend "worse" against S5 (the latest
#       complete snapshot), not against the partial S6
#   S8  status ok but a tool timed out, and already worse than S7 -> partial,
#       trend "worse" (missing findings cannot make it better)
#   S5 reused (scan.completed reused true) -> no snapshot, no row
#   kaizen report (text, JSON) shows every target's latest rating, the
#   partial one never as a plain letter
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"

K=$KZ_BIN/kaizen
mkdir -p "$T/repo1"
kz_config <<EOF
supervisor:
  broker: false
database:
  flush_interval: 50ms
targets:
  - name: repo1
    path: $T/repo1
    languages: [python]
tools:
  - name: flake8
    argv: [flake8, "{files}"]
    format: gcc
    category: style
  - name: bandit
    argv: [bandit, -f, sarif, "{files}"]
    format: sarif
    category: security
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

# expect SQL WANT: the query's output must be WANT
expect() {
    local got
    got=$(kz_psql "$1" 2>&1)
    [[ $got == "$2" ]] || fail "$1
  got:  $got
  want: $2"
}

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_start quality "$KZ_BIN/kaizen-code-quality"
kz_wait_log quality "started" || fail "kaizen-code-quality did not start"

pub() { "$K" publish "$@" >/dev/null || fail "kaizen publish $1 failed"; }

# the agent has joined its group once it reacts to a probe (an invalid
# scan id: logged and ignored)
probe() {
    "$K" publish scan.completed '{"scan_id":"probe!","status":"ok","findings":0,"files":0,"duration_ms":0}' \
        >/dev/null 2>&1
    grep -q "invalid scan_id" "$T/quality.log"
}
kz_wait_for 60 probe || fail "kaizen-code-quality never got a scan.completed"

f() { # f TOOL RULE SEVERITY CATEGORY FILE LINE FINGERPRINT
    printf '{"tool":"%s","rule":"%s","severity":"%s","category":"%s","file":"%s","line":%s,"message":"m","fingerprint":"%s"}' "$@"
}

# ---------------------------------------------------------------- S1
b0="$(f flake8 E501 low style a.py 1 fa1),$(f flake8 E501 low style a.py 2 fa2),$(f flake8 W291 low style a.py 3 fa3),$(f pylint E1101 high bug b.py 4 fb1)"
b1="$(f mypy arg-type medium type b.py 5 fb2),$(f pydocstyle D100 info docs c.py 0 fc1),$(f pydocstyle D101 info docs c.py 7 fc2)"
pub scan.started '{"scan_id":"S1","commit":"c0ffee1","files":10}' --target repo1 --corr S1
pub finding.batch "{\"scan_id\":\"S1\",\"seq\":0,\"findings\":[$b0]}" --target repo1 --corr S1
pub finding.batch "{\"scan_id\":\"S1\",\"seq\":1,\"findings\":[$b1]}" --target repo1 --corr S1
pub finding.batch "{\"scan_id\":\"S1\",\"seq\":0,\"findings\":[$b0]}" --target repo1 --corr S1
pub scan.completed '{"scan_id":"S1","status":"ok","findings":7,"files":10,"duration_ms":120,"loc":2000,"commit":"c0ffee1","tools":[{"name":"flake8","status":"ok","findings":3,"duration_ms":10},{"name":"bandit","status":"ok","findings":0,"duration_ms":10}]}' --target repo1 --corr S1

snap() { [[ $(kz_psql "SELECT count(*) FROM code_quality_snapshots WHERE scan_id = '$1'") -ge 1 ]]; }
kz_wait_for 60 snap S1 || fail "no snapshot of S1"

Q="FROM code_quality_snapshots WHERE scan_id = 'S1'"
expect "SELECT target, overall_score, security_score, documentation_score, performance_score IS NULL, test_coverage IS NULL $Q" \
    "repo1|67.9|100|95|t|t"
expect "SELECT metrics->>'rating', metrics->>'findings', metrics->>'files_with_findings', metrics->>'loc', metrics->>'commit' $Q" \
    "C|7|3|2000|c0ffee1"
expect "SELECT metrics->'by_severity' $Q" '{"low": 3, "high": 1, "info": 2, "medium": 1, "critical": 0}'
expect "SELECT metrics->'by_category' $Q" '{"bug": 1, "docs": 2, "type": 1, "style": 3}'
expect "SELECT metrics->'ratings' $Q" '{"bug": "C", "docs": "A", "type": "A", "style": "B", "overall": "C"}'
expect "SELECT metrics->'weighted', metrics->'weighted_density_per_kloc' $Q" "10|5"
expect "SELECT string_agg((w->>'file') || ':' || (w->>'findings') || ':' || (w->>'weighted'), ' ' ORDER BY i) FROM code_quality_snapshots s, jsonb_array_elements(s.metrics->'worst_files') WITH ORDINALITY AS x(w, i) WHERE s.scan_id = 'S1'" \
    "b.py:2:6 a.py:3:3 c.py:2:1"
expect "SELECT metrics->'worst_files'->0->'by_severity' $Q" '{"high": 1, "medium": 1}'
expect "SELECT metrics->'trend' $Q" '{"direction": "new"}'
grep -q "quality of 'repo1' (scan S1): rating C, score 67.9" "$T/quality.log" ||
    fail "no log line for S1"

# ---------------------------------------------------------------- S2
# scan.completed first: the agent waits until the findings are stored
pub scan.completed '{"scan_id":"S2","status":"ok","findings":2,"files":10,"duration_ms":80,"loc":2000}' --target repo1 --corr S2
pub finding.batch "{\"scan_id\":\"S2\",\"seq\":0,\"findings\":[$(f flake8 E501 low style a.py 1 fa1),$(f pydocstyle D100 info docs c.py 0 fc1)]}" --target repo1 --corr S2
kz_wait_for 60 snap S2 || fail "no snapshot of S2"
Q="FROM code_quality_snapshots WHERE scan_id = 'S2'"
expect "SELECT overall_score, metrics->>'rating', metrics->>'findings' $Q" "92.5|A|2"
# (floats: JSON renders them with 17 digits)
expect "SELECT t->>'direction', t->>'previous_scan_id', t->'delta_findings', t->'previous_findings', round((t->>'delta_score')::numeric, 1), round((t->>'previous_score')::numeric, 1) FROM (SELECT metrics->'trend' AS t $Q) x" \
    "improved|S1|-5|7|24.6|67.9"
grep -q "quality of 'repo1' (scan S2): rating A, score 92.5, 2 findings, trend improved against scan S1" \
    "$T/quality.log" || fail "no log line for S2"

# ------------------------------------------------- redelivery, failed scan
pub scan.completed '{"scan_id":"S2","status":"ok","findings":2,"files":10,"duration_ms":80,"loc":2000}' --target repo1 --corr S2
kz_wait_log quality "scan 'S2' already snapshotted" || fail "the repeated S2 was not recognised"
pub scan.completed '{"scan_id":"S3","status":"failed","findings":0,"files":0,"duration_ms":1,"error":"not a git repository"}' --target repo1 --corr S3
kz_wait_log quality "scan 'S3' failed (not a git repository): no quality snapshot" ||
    fail "the failed scan was not skipped"
expect "SELECT count(*) FROM code_quality_snapshots WHERE scan_id = 'S2'" "1"
expect "SELECT count(*) FROM code_quality_snapshots WHERE scan_id = 'S3'" "0"

# a scan of a target not in the config is not snapshotted
pub scan.completed '{"scan_id":"S4","status":"ok","findings":0,"files":1,"duration_ms":1}' --target elsewhere --corr S4
kz_wait_log quality "scan 'S4' is of target 'elsewhere', not in the config" ||
    fail "a scan of an unknown target was not refused"

# the database goes away while a scan waits: the agent reconnects when it
# is back (the recorder spools meanwhile) and makes the snapshot
"$K" db stop >"$T/db-stop.log" 2>&1 || fail "kaizen db stop: $(cat "$T/db-stop.log")"
pub scan.completed '{"scan_id":"S5","status":"ok","findings":1,"files":10,"duration_ms":80,"loc":2000}' --target repo1 --corr S5
pub finding.batch "{\"scan_id\":\"S5\",\"seq\":0,\"findings\":[$(f flake8 E501 low style a.py 1 fa1)]}" --target repo1 --corr S5
kz_wait_log quality "database connection lost" 60 || fail "the agent did not notice the database go"
"$K" db start >"$T/db-start2.log" 2>&1 || fail "kaizen db start: $(cat "$T/db-start2.log")"
kz_wait_for 90 snap S5 || fail "no snapshot of S5 after the database came back"
expect "SELECT metrics->>'findings', metrics->'trend'->>'direction', metrics->'trend'->>'previous_scan_id' FROM code_quality_snapshots WHERE scan_id = 'S5'" \
    "1|improved|S2"

# ------------------------------------------------ partial scans, trend
pub scan.completed '{"scan_id":"S6","status":"partial","findings":0,"files":10,"duration_ms":80,"loc":2000,"tools":[{"name":"flake8","status":"ok","findings":0,"duration_ms":10},{"name":"mypy","status":"error","findings":0,"duration_ms":10,"error":"exit 2: mypy: error: no module named x"},{"name":"black","status":"skipped","findings":0,"duration_ms":0}]}' --target repo1 --corr S6
pub finding.batch '{"scan_id":"S6","seq":0,"findings":[]}' --target repo1 --corr S6
kz_wait_for 60 snap S6 || fail "no snapshot of S6"
Q="FROM code_quality_snapshots WHERE scan_id = 'S6'"
expect "SELECT partial, metrics->>'rating', metrics->>'rating_label', metrics->>'partial' $Q" \
    "t|A|A (partial: mypy error)|true"
expect "SELECT metrics->'partial_tools' $Q" \
    '[{"name": "mypy", "error": "exit 2: mypy: error: no module named x", "status": "error"}]'
expect "SELECT t->>'direction', t->>'previous_scan_id', t->>'reason' FROM (SELECT metrics->'trend' AS t $Q) x" \
    "unknown|S5|this scan is partial: the findings of the tools that did not run could explain it"
grep -q "quality of 'repo1' (scan S6): rating A (partial: mypy error), score 100.0, 0 findings, trend unknown against scan S5" \
    "$T/quality.log" || fail "no log line for S6"
expect "SELECT partial FROM code_quality_snapshots WHERE scan_id = 'S5'" "f"

pub scan.completed '{"scan_id":"S7","status":"ok","findings":3,"files":10,"duration_ms":80,"loc":2000}' --target repo1 --corr S7
pub finding.batch "{\"scan_id\":\"S7\",\"seq\":0,\"findings\":[$(f flake8 E501 low style a.py 1 fa1),$(f flake8 E501 low style a.py 2 fa2),$(f flake8 E501 low style a.py 3 fa3)]}" --target repo1 --corr S7
kz_wait_for 60 snap S7 || fail "no snapshot of S7"
expect "SELECT partial, metrics->>'rating_label', metrics->'trend'->>'direction', metrics->'trend'->>'previous_scan_id', metrics->'trend' ? 'reason', metrics ? 'partial_tools' FROM code_quality_snapshots WHERE scan_id = 'S7'" \
    "f|B|worse|S5|f|f"

pub scan.completed '{"scan_id":"S8","status":"ok","findings":4,"files":10,"duration_ms":80,"loc":2000,"tools":[{"name":"flake8","status":"ok","findings":4,"duration_ms":10},{"name":"pylint","status":"timeout","findings":0,"duration_ms":10,"error":"timed out after 1 s"},{"name":"ghost","status":"missing","findings":0,"duration_ms":0,"error":"not installed"}]}' --target repo1 --corr S8
pub finding.batch "{\"scan_id\":\"S8\",\"seq\":0,\"findings\":[$(f flake8 E501 high bug a.py 1 fa1),$(f flake8 E501 low style a.py 2 fa2),$(f flake8 E501 low style a.py 3 fa3),$(f flake8 E501 low style a.py 4 fa4)]}" --target repo1 --corr S8
kz_wait_for 60 snap S8 || fail "no snapshot of S8"
expect "SELECT partial, metrics->>'rating_label', metrics->'trend'->>'direction', metrics->'trend'->>'previous_scan_id', metrics->'trend' ? 'reason' FROM code_quality_snapshots WHERE scan_id = 'S8'" \
    "t|C (partial: pylint timeout, ghost missing)|worse|S7|f"

# a reused scan.completed: the stored scan answered again, no snapshot
pub scan.completed '{"scan_id":"S5","status":"ok","findings":1,"files":10,"duration_ms":80,"loc":2000,"reused":true}' --target repo1 --corr S5
kz_wait_log quality "scan 'S5' answered again from the stored scan (reused): no new snapshot" ||
    fail "the reused scan was not recognised"
expect "SELECT count(*) FROM code_quality_snapshots WHERE scan_id = 'S5'" "1"

# the report: the latest snapshot of each target, the partial one marked
"$K" report >"$T/report.txt" 2>"$T/report.err" || fail "kaizen report: $(cat "$T/report.err")"
grep -q "^  repo1: C (partial: pylint timeout, ghost missing), score [0-9.]*, 4 findings, trend worse, scan S8 at " \
    "$T/report.txt" || fail "kaizen report does not show the partial rating: $(grep -A3 '^Quality' "$T/report.txt")"
grep -q "^    pylint timeout: timed out after 1 s$" "$T/report.txt" ||
    fail "kaizen report does not list the tool that timed out: $(grep -A4 '^Quality' "$T/report.txt")"
"$K" report --json >"$T/report.json" || fail "kaizen report --json failed"
/usr/bin/python3 - "$T/report.json" <<'PY' || fail "kaizen report --json: the quality is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
q = {r["target"]: r for r in d["quality"]}
r = q["repo1"]
want = {"scan_id": "S8", "rating": "C", "rating_label": "C (partial: pylint timeout, ghost missing)",
        "findings": 4, "partial": True}
bad = {k: r.get(k) for k, v in want.items() if r.get(k) != v}
assert not bad, (bad, r)
assert [t["name"] for t in r["partial_tools"]] == ["pylint", "ghost"], r
assert r["trend"]["direction"] == "worse", r
PY

kill -TERM "$PID_quality"
wait "$PID_quality" || fail "kaizen-code-quality exited with $?"
grep -q "ERROR\| error " "$T/quality.log" && fail "errors in the agent's log"
echo "ok"
