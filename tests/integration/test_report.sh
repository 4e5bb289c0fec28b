#!/usr/bin/env bash
# test_report.sh - `kaizen report` tells the truth about scans and
# findings, against real PostgreSQL and the orchestrator's recorder:
# scans are published by hand (scan.started, finding.batch,
# scan.completed with `kaizen publish`). One commit scanned four times
# counts its findings once (distinct fingerprints of the latest scan of
# each target and commit), beside the raw count and the number of scans;
# a partial scan and a failed one are failures, with the tools that
# failed or were skipped listed apart from the clean ones, each with its
# reason - in the text, in --json and in --html.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
kz_python json || skip "no python3"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"
kz_config </dev/null
kz_at_exit "\"$K\" down --timeout 30s"

expect() { # expect RC NAME CMD... : output in $T/NAME.out, $T/NAME.err
    local want=$1 name=$2; shift 2
    timeout 60 "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/$name.out" "$T/$name.err")"
}
pub() { # pub TARGET TYPE BODY
    "$K" publish "$2" "$3" --target "$1" >/dev/null || fail "publish $2 $3"
}
finding() { # finding FINGERPRINT LINE
    printf '{"tool":"flake8","rule":"F401","severity":"low","category":"style","file":"a.py","line":%s,"message":"unused import","fingerprint":"%s"}' "$2" "$1"
}

expect 0 up "$K" up

C1=1111111111111111111111111111111111111111
C2=2222222222222222222222222222222222222222
# four scans of commit C1 of py, the same three findings each time
for n in 1 2 3 4; do
    S=01JS0000000000000000SCAN$n
    pub py scan.started "{\"scan_id\":\"$S\",\"commit\":\"$C1\",\"files\":1,\"tools\":[\"flake8\"]}"
    pub py finding.batch "{\"scan_id\":\"$S\",\"seq\":0,\"findings\":[$(finding fa 1),$(finding fb 2),$(finding fc 3)]}"
    pub py scan.completed "{\"scan_id\":\"$S\",\"status\":\"ok\",\"findings\":3,\"files\":1,\"duration_ms\":10,\"commit\":\"$C1\",\"tools\":[{\"name\":\"flake8\",\"status\":\"ok\",\"findings\":3,\"duration_ms\":9}]}"
done
# commit C2: a partial scan - mypy failed, pylint is missing, black skipped;
# fa is found again (another commit: counted again), fd is new; the same
# finding twice in one scan counts once
S5=01JS0000000000000000SCAN5
pub py scan.started "{\"scan_id\":\"$S5\",\"commit\":\"$C2\",\"files\":1}"
pub py finding.batch "{\"scan_id\":\"$S5\",\"seq\":0,\"findings\":[$(finding fa 1),$(finding fd 4),$(finding fd 5)]}"
pub py scan.completed "{\"scan_id\":\"$S5\",\"status\":\"partial\",\"findings\":3,\"files\":1,\"duration_ms\":20,\"commit\":\"$C2\",\"tools\":[{\"name\":\"flake8\",\"status\":\"ok\",\"findings\":3,\"duration_ms\":9},{\"name\":\"mypy\",\"status\":\"error\",\"findings\":0,\"duration_ms\":5,\"error\":\"exit 2: mypy.ini: no such section\"},{\"name\":\"pylint\",\"status\":\"missing\",\"findings\":0,\"duration_ms\":0,\"error\":\"not installed: 'pylint' not found in PATH\"},{\"name\":\"black\",\"status\":\"skipped\",\"findings\":0,\"duration_ms\":0,\"error\":\"no evidence the project chose it (no pyproject.toml:[tool.black] in its tree)\"},{\"name\":\"codespell\",\"status\":\"ok\",\"findings\":0,\"duration_ms\":3}]}"
# target c: a scan that failed
S6=01JS0000000000000000SCAN6
pub c scan.started "{\"scan_id\":\"$S6\"}"
pub c scan.completed "{\"scan_id\":\"$S6\",\"status\":\"failed\",\"findings\":0,\"files\":0,\"duration_ms\":1,\"error\":\"'/srv/c' is not a git repository\"}"

kz_wait_for 30 kz_psql_is "SELECT count(*) FROM scans WHERE completed_at IS NOT NULL" 6 ||
    fail "scans not recorded: $(kz_psql "SELECT scan_id, status FROM scans")"
kz_wait_for 30 kz_psql_is "SELECT count(*) FROM findings" 15 || fail "findings not recorded"

# --- text
expect 0 report "$K" report
grep -q "^Work: 6 scans (4 ok, 1 partial, 1 failed, 0 running) of 2 commits on 2 targets, 5 findings, 0 plans$" "$T/report.out" ||
    fail "work line: $(cat "$T/report.out")"
grep -q "^  findings: distinct fingerprints of the latest ok or partial scan of each target and commit (15 reported over all 6 scans)$" "$T/report.out" ||
    fail "findings line: $(cat "$T/report.out")"
grep -Eq "^Failures: [0-9]+ \(agent.failed events [0-9]+, log entries failed/error [0-9]+, scans failed 1, scans partial 1\)$" "$T/report.out" ||
    fail "failures line: $(cat "$T/report.out")"
grep -q "^Failures: 0" "$T/report.out" && fail "a failed and a partial scan reported as no failure"
grep -q "^  scan $S5 of py at 222222222222: partial, 3 findings \[" "$T/report.out" || fail "partial scan: $(cat "$T/report.out")"
grep -q "^  scan $S6 of c: failed: '/srv/c' is not a git repository \[" "$T/report.out" || fail "failed scan: $(cat "$T/report.out")"
grep -q "^      failed:  mypy (error: exit 2: mypy.ini: no such section); pylint (missing: not installed: 'pylint' not found in PATH)$" "$T/report.out" ||
    fail "failed tools: $(cat "$T/report.out")"
grep -q "^      skipped: black (skipped: no evidence the project chose it (no pyproject.toml:\[tool.black\] in its tree))$" "$T/report.out" ||
    fail "skipped tools: $(cat "$T/report.out")"
grep -q "^      clean:   flake8 3, codespell 0$" "$T/report.out" || fail "clean tools: $(cat "$T/report.out")"
# the latest scan of each target: py's is the partial one, c's the failed one
awk '/^Latest scan of each target:/{on=1;next} /^$/{on=0} on' "$T/report.out" >"$T/latest"
grep -q "^  scan $S5 of py" "$T/latest" || fail "latest of py: $(cat "$T/latest")"
grep -q "^  scan $S6 of c" "$T/latest" || fail "latest of c: $(cat "$T/latest")"
[[ $(grep -c "^  scan " "$T/latest") -eq 2 ]] || fail "latest: $(cat "$T/latest")"

# --- json: the same facts
expect 0 report-json "$K" report --json
"$PY" - "$T/report-json.out" "$S5" "$S6" <<'PY' || fail "report --json: $(cat "$T/report-json.out")"
import json, sys
d = json.load(open(sys.argv[1]))
w = d["work"]
assert (w["scans"], w["scans_ok"], w["scans_partial"], w["scans_failed"], w["scans_running"]) == (6, 4, 1, 1, 0), w
assert (w["targets"], w["commits"], w["findings"], w["findings_reported"], w["plans"]) == (2, 2, 5, 15, 0), w
assert "distinct fingerprints" in w["findings_counted"], w
f = d["failures"]
assert f["failed_scans"] == 1 and f["partial_scans"] == 1, f
assert f["count"] == f["agent_failed_events"] + f["failed_log_entries"] + 2, f
# a failed scan's own log row is not counted a second time
assert not any(r["action"].startswith("scan ") for r in f["failed_logs"]), f["failed_logs"]
byid = {s["scan_id"]: s for s in f["scans"]}
assert set(byid) == {sys.argv[2], sys.argv[3]}, f["scans"]
p = byid[sys.argv[2]]
assert p["status"] == "partial" and p["target"] == "py" and p["error"] is None, p
assert [(t["name"], t["status"], t["error"]) for t in p["tools_failed"]] == [
    ("mypy", "error", "exit 2: mypy.ini: no such section"),
    ("pylint", "missing", "not installed: 'pylint' not found in PATH")], p["tools_failed"]
assert [t["name"] for t in p["tools_skipped"]] == ["black"] and "no evidence" in p["tools_skipped"][0]["error"], p
assert [(t["name"], t["findings"]) for t in p["tools_clean"]] == [("flake8", 3), ("codespell", 0)], p
x = byid[sys.argv[3]]
assert x["status"] == "failed" and x["error"] == "'/srv/c' is not a git repository" and x["commit"] is None, x
latest = {s["target"]: s["scan_id"] for s in d["scans"]}
assert latest == {"py": sys.argv[2], "c": sys.argv[3]}, d["scans"]
PY

# --- html
expect 0 report-html "$K" report --html "$T/report.html"
for want in "6 scans (4 ok, 1 partial, 1 failed, 0 running) of 2 commits on 2 targets, 5 findings" \
    "<b>partial</b>" "<b>failed</b>: &#39;/srv/c&#39; is not a git repository" \
    "failed: mypy (error: exit 2: mypy.ini: no such section)" "skipped: black (skipped:" \
    "clean: flake8 3, codespell 0"; do
    grep -qF -- "$want" "$T/report.html" || fail "report --html: no '$want': $(cat "$T/report.html")"
done

# --- a window without these scans counts none of them
kz_psql "UPDATE scans SET started_at = started_at - interval '2 hours', completed_at = completed_at - interval '2 hours'" >/dev/null
expect 0 report-1h "$K" report --since 1h --json
"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); w=d["work"]; f=d["failures"]
assert (w["scans"], w["findings"], w["findings_reported"], f["failed_scans"], f["partial_scans"], d["scans"]) == (0, 0, 0, 0, 0, []), (w, f)' \
    "$T/report-1h.out" || fail "report --since 1h: $(cat "$T/report-1h.out")"
echo ok
