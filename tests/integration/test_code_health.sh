#!/usr/bin/env bash
# test_code_health.sh - kaizen-code-health end to end: a real broker, the
# agent, real git repositories (copies of examples/python-sample and
# examples/c-sample) and the real tools of the built-in catalog, plus
# recipes that go wrong (a missing program, a crash, garbage output, a
# timeout, no evidence) and targets that cannot be scanned (not a git
# repository, a missing branch). Checks scan.started, finding.batch,
# metric.batch and scan.completed, the findings against the samples'
# EXPECTED-FINDINGS.md, the missing tool reported once, and that the
# user's checkouts are left exactly as they were.
source "$KZ_ROOT/tests/integration/lib.sh"
AGENT=$KZ_BIN/kaizen-code-health
PY=/usr/bin/python3
[[ -x "$AGENT" ]] || fail "$AGENT not built"
command -v git >/dev/null || skip "git not installed"
for s in python-sample c-sample; do
    [[ -d "$KZ_ROOT/examples/$s" ]] || skip "examples/$s is missing"
done

# the targets: the samples as fresh repositories (only what git tracks)
mk_repo() { # SRC DEST
    mkdir -p "$2"
    cp -r "$1/." "$2/"
    git -C "$2" init -q -b main
    git -C "$2" add -A
    git -C "$2" -c user.name=t -c user.email=t@example.com commit -qm "initial" || fail "git commit in $2"
    git -C "$2" clean -qfdx # build products and caches the sample's .gitignore names
}
mk_repo "$KZ_ROOT/examples/python-sample" "$T/py"
mk_repo "$KZ_ROOT/examples/c-sample" "$T/c"
mkdir -p "$T/plain" && echo "x = 1" >"$T/plain/a.py"
head_py=$(git -C "$T/py" rev-parse HEAD)
head_c=$(git -C "$T/c" rev-parse HEAD)

# tools that go wrong (run directly by their #! line: kaizen runs no shell)
printf '#!/bin/sh\necho "crashy: internal error: cannot read its configuration" >&2\nexit 3\n' >"$T/crashy"
printf '#!/bin/sh\nprintf "\\377\\376 garbage\\n:::\\n12:ab:\\nnot-a-file.py:x:y: what\\n\\001\\002\\n"\nexit 0\n' >"$T/garbage"
printf '#!/bin/sh\nexec sleep 30\n' >"$T/sleepy"
chmod +x "$T/crashy" "$T/garbage" "$T/sleepy"

# the built-in catalog's recipes (catalog: true), plus the broken ones

kz_config <<EOF
agent_heartbeat: 300ms
# the broken tools live in \$T, which the sandbox does not show otherwise
sandbox:
  bind_ro: [$T/crashy, $T/garbage, $T/sleepy]
agents:
  - name: code-health
    interval: 0
targets:
  - name: py
    path: $T/py
    languages: [python]
  - name: c
    path: $T/c
    languages: [c, shell]
  - name: notgit
    path: $T/plain
    languages: [python]
  - name: nobranch
    path: $T/py
    branch: no-such-branch
    languages: [python]
scan:
  parallelism: 4
  batch_size: 7
catalog: true
tools:
  - name: ghost
    languages: [python]
    files: ["*.py"]
    argv: [kaizen-no-such-tool-h3, "{files}"]
    format: gcc
  - name: crashy
    languages: [python]
    files: ["*.py"]
    argv: [$T/crashy, "{files}"]
    format: gcc
  - name: garbage
    languages: [python]
    files: ["*.py"]
    argv: [$T/garbage, "{files}"]
    format: gcc
  - name: sleepy
    languages: [python]
    files: ["*.py"]
    argv: [$T/sleepy, "{files}"]
    format: gcc
    timeout: 1s
  - name: picky
    languages: [python]
    files: ["*.py"]
    argv: [$T/garbage, "{files}"]
    format: gcc
    requires: ["no-such-evidence.cfg", "setup.cfg:[picky]"]
EOF

# --help, no broker needed
"$AGENT" --help >"$T/help.out" || fail "--help exited $?"
grep -q "usage: kaizen-code-health" "$T/help.out" || fail "--help printed no usage"

kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start watch "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
touch "$T/all.out"
probe_seen() { "$KZ_TOOLS/kz_pub" test.probe >/dev/null 2>&1 && grep -q "^test.probe " "$T/all.out"; }
kz_wait_for 30 probe_seen || fail "watcher never connected"

kz_start health "$AGENT" --log-level debug
has() { [[ $(grep -c "^$1 " "$T/all.out") -ge $2 ]]; }
kz_wait_for 30 has agent.hello 1 || fail "no agent.hello"
kz_wait_for 30 has agent.heartbeat 1 || fail "no agent.heartbeat"
# once: an agent says hello only when its agent.run subscription is
# delivered (one cycle: it scans every target)
"$KZ_BIN/kaizen" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "kaizen publish agent.run failed"
kz_wait_for 180 has scan.completed 4 || fail "fewer than 4 scan.completed after one cycle"

# every message of the cycle, checked in one go
"$PY" - "$T/all.out" "$head_py" "$head_c" <<'PY' || fail "cycle 1 messages are wrong (above)"
import json, sys
path, head_py, head_c = sys.argv[1:4]
msgs = []
for line in open(path, encoding="utf-8", errors="replace"):
    topic, _, js = line.partition(" ")
    if topic in ("scan.started", "finding.batch", "metric.batch", "scan.completed"):
        msgs.append(json.loads(js))
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
done = {m["target"]: m for m in msgs if m["type"] == "scan.completed"}
check(set(done) == {"py", "c", "notgit", "nobranch"}, "targets scanned: %s" % sorted(done))
for name, m in done.items():
    sid = m["body"]["scan_id"]
    check(m["corr"] == sid, "%s: corr %s is not the scan id %s" % (name, m.get("corr"), sid))
    started = [s for s in msgs if s["type"] == "scan.started" and s["body"]["scan_id"] == sid]
    check(len(started) == 1 and started[0]["target"] == name, "%s: one scan.started" % name)
    check(started and started[0]["id"] < m["id"], "%s: scan.started after scan.completed" % name)

# the targets that cannot be scanned
for name, words in (("notgit", "not a git repository"), ("nobranch", "branch 'no-such-branch' not found")):
    b = done[name]["body"]
    check(b["status"] == "failed", "%s: status %s, expected failed" % (name, b["status"]))
    check(words in b.get("error", ""), "%s: error %r does not say %r" % (name, b.get("error"), words))
    check(b["findings"] == 0, "%s: findings in a failed scan" % name)

for name, head in (("py", head_py), ("c", head_c)):
    b = done[name]["body"]
    sid = b["scan_id"]
    check(b.get("commit") == head, "%s: commit %s, expected %s" % (name, b.get("commit"), head))
    check(b["files"] > 0 and b.get("loc", 0) > 0, "%s: files %s loc %s" % (name, b["files"], b.get("loc")))
    check(b.get("rescanned") == b["files"], "%s: first scan rescanned %s of %s" % (name, b.get("rescanned"), b["files"]))
    batches = sorted((m for m in msgs if m["type"] == "finding.batch" and m["body"]["scan_id"] == sid),
                     key=lambda m: m["body"]["seq"])
    check([m["body"]["seq"] for m in batches] == list(range(len(batches))), "%s: batch seqs %s" % (name, [m["body"]["seq"] for m in batches]))
    check(all(m["target"] == name and m["corr"] == sid for m in batches), "%s: batch envelope" % name)
    check(all(len(m["body"]["findings"]) <= 7 for m in batches), "%s: a batch above scan.batch_size" % name)
    found = [f for m in batches for f in m["body"]["findings"]]
    check(len(found) == b["findings"], "%s: %d findings in batches, scan.completed says %d" % (name, len(found), b["findings"]))
    check(len({f["fingerprint"] for f in found}) == len(found), "%s: repeated fingerprints" % name)
    key = lambda f: (f["file"], f["line"], f.get("col", 0), f["tool"], f["rule"])
    check([key(f) for f in found] == sorted(key(f) for f in found), "%s: findings not sorted" % name)
    tools = {t["name"]: t for t in b.get("tools", [])}
    for t in tools.values():
        n = sum(1 for f in found if f["tool"] == t["name"])
        check(n == t["findings"], "%s: tool %s says %d findings, batches hold %d" % (name, t["name"], t["findings"], n))
    metrics = [m for m in msgs if m["type"] == "metric.batch" and m["body"].get("scan_id") == sid]
    check(len(metrics) == 1, "%s: %d metric.batch" % (name, len(metrics)))
    if metrics:
        ms = {(x["name"], x.get("labels", {}).get("severity")): x for x in metrics[0]["body"]["metrics"]}
        score = ms.get(("health_score", None), {}).get("value", -1)
        check(0 <= score <= 100, "%s: health_score %s" % (name, score))
        check(ms.get(("findings_total", None), {}).get("value") == b["findings"], "%s: findings_total" % name)
        check(sum(ms.get(("findings", s), {}).get("value", 0) for s in ("info", "low", "medium", "high", "critical")) == b["findings"], "%s: findings by severity" % name)
        check(all(x.get("labels", {}).get("target") == name for x in metrics[0]["body"]["metrics"]), "%s: metric labels" % name)
    if name == "py":
        check(b["status"] == "partial", "py: status %s, expected partial" % b["status"])
        want = {"flake8": "ok", "pylint": "ok", "mypy": "ok", "black": "ok", "isort": "ok",
                "pydocstyle": "skipped", "pyupgrade": "skipped", "bandit": "ok",
                "codespell": "ok", "ghost": "missing", "crashy": "error", "garbage": "ok",
                "sleepy": "timeout", "picky": "skipped"}
        got = {k: v["status"] for k, v in tools.items()}
        check(got == want, "py: tool statuses %s, expected %s" % (got, want))
        check("not installed" in tools.get("ghost", {}).get("error", ""), "py: ghost error %r" % tools.get("ghost"))
        check("exit 3: crashy: internal error" in tools.get("crashy", {}).get("error", ""), "py: crashy error %r" % tools.get("crashy"))
        check("timed out" in tools.get("sleepy", {}).get("error", ""), "py: sleepy error %r" % tools.get("sleepy"))
        check("no-such-evidence.cfg" in tools.get("picky", {}).get("error", ""), "py: picky error %r" % tools.get("picky"))
        check(tools.get("garbage", {}).get("findings") == 0, "py: garbage output made findings")
        started = [s for s in msgs if s["type"] == "scan.started" and s["body"]["scan_id"] == sid][0]["body"]
        check("picky" not in started.get("tools", []) and "flake8" in started.get("tools", []), "py: scan.started tools %s" % started.get("tools"))
        check(started.get("commit") == head and started.get("files") == b["files"], "py: scan.started commit/files")
    else:
        check(b["status"] == "ok", "c: status %s (%s)" % (b["status"], b.get("tools")))
        got = {k: v["status"] for k, v in tools.items()}
        want = {"codespell": "ok", "cppcheck": "ok", "clang-format": "ok", "clang-tidy": "ok",
                "flawfinder": "ok", "shellcheck": "ok"}
        check(got == want, "c: tool statuses %s, expected %s" % (got, want))
    open(sys.argv[1] + "." + name + ".findings", "w").write(json.dumps(found))
for b in bad:
    print("  -", b)
sys.exit(1 if bad else 0)
PY

# the findings the samples promise (EXPECTED-FINDINGS.md: tool, rule, file, line)
for name in py c; do
    sample=python-sample
    [[ $name == c ]] && sample=c-sample
    expected="$KZ_ROOT/examples/$sample/EXPECTED-FINDINGS.md"
    [[ -f "$expected" ]] || { echo "note: no $expected to compare with"; continue; }
    "$PY" - "$expected" "$T/all.out.$name.findings" <<'PY' || fail "$name: findings differ from $expected"
import json, re, sys
from collections import Counter
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"<!-- expected-findings:begin -->(.*?)<!-- expected-findings:end -->", text, re.S)
if not m:
    sys.exit("no expected-findings block in %s" % sys.argv[1])
want = Counter(l.strip() for l in m.group(1).splitlines() if l.count("|") == 3)
got = Counter("%s|%s|%s|%d" % (f["tool"], f["rule"], f["file"], f["line"])
              for f in json.load(open(sys.argv[2])))
for line in sorted((want - got).elements()):
    print("  missing:    " + line)
for line in sorted((got - want).elements()):
    print("  unexpected: " + line)
sys.exit(0 if want == got else 1)
PY
done

# a second cycle: the missing tool and the skipped one are not logged again
"$KZ_BIN/kaizen" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "kaizen publish agent.run failed"
kz_wait_for 120 has scan.completed 8 || fail "fewer than 8 scan.completed after two cycles"
n=$(grep -c "tool 'ghost' is not installed" "$T/health.log")
((n == 1)) || fail "the missing tool was logged $n times, expected once"
grep -q "kaizen-no-such-tool-h3" "$T/health.log" || fail "the missing tool's log line does not name the program"
n=$(grep -c "tool 'picky' skipped on target 'py'" "$T/health.log")
((n == 1)) || fail "the skipped tool was logged $n times, expected once"
grep -q "scan of target 'notgit' failed: target 'notgit': '$T/plain' is not a git repository" "$T/health.log" ||
    fail "no clear log line for the target that is not a git repository"
# c (ok, nothing changed): its first scan answers again, no tool runs
grep -Eq "info .*target 'c' at [0-9a-f]{12} unchanged since scan [0-9A-Z]+ .*: answered from it" \
    "$T/health.log" || fail "second scan of c was not answered from the first"
# py (partial: never reused): the tools that worked carry everything over;
# the failed ones run again
"$PY" - "$T/all.out" <<'PY' || fail "second scan of py or c is wrong"
import json, sys
done = [json.loads(l.partition(" ")[2]) for l in open(sys.argv[1], errors="replace")
        if l.startswith("scan.completed ")]
c = [m["body"] for m in done if m["target"] == "c"]
if not (c[1].get("reused") is True and c[1]["scan_id"] == c[0]["scan_id"] and c[1]["rescanned"] == 0
        and c[1]["findings"] == c[0]["findings"] and c[1]["status"] == "ok"):
    sys.exit("second scan of c: %s" % {k: v for k, v in c[1].items() if k != "tools"})
py = [m["body"] for m in done if m["target"] == "py"]
first, second = py[0], py[1]
if "reused" in second or second["scan_id"] == first["scan_id"]:
    sys.exit("the partial scan of py answered again")
tools = {t["name"]: t for t in second["tools"]}
again = sorted(n for n, t in tools.items() if t.get("rescanned", 0) > 0)
if again != ["crashy", "sleepy"]:
    sys.exit("tools that ran again: %s" % again)
if second["findings"] != first["findings"] or second["status"] != "partial":
    sys.exit("second scan: %s findings, status %s" % (second["findings"], second["status"]))
PY

# agent.run with a target scans only that target
filtered=$(grep -c "^scan.completed " "$T/all.out")
"$KZ_BIN/kaizen" publish agent.run '{"agent":"code-health"}' --target c >/dev/null || fail "publish --target c failed"
kz_wait_for 60 has scan.completed $((filtered + 1)) || fail "agent.run --target c: no scan.completed"
"$KZ_BIN/kaizen" publish agent.run '{"agent":"code-health"}' --target py >/dev/null || fail "publish --target py failed"
kz_wait_for 60 has scan.completed $((filtered + 2)) || fail "agent.run --target py: no scan.completed"

# the user's checkouts are exactly as they were
for d in py c; do
    [[ -z "$(git -C "$T/$d" status --porcelain)" ]] || fail "$d: the user's checkout changed: $(git -C "$T/$d" status --porcelain)"
    [[ "$(git -C "$T/$d" symbolic-ref HEAD)" == refs/heads/main ]] || fail "$d: HEAD moved off main"
done
[[ $(git -C "$T/py" rev-parse HEAD) == "$head_py" && $(git -C "$T/c" rev-parse HEAD) == "$head_c" ]] ||
    fail "a target's HEAD changed"
[[ ! -e "$T/py/.mypy_cache" && ! -e "$T/py/__pycache__" ]] || fail "tool caches landed in the user's tree"
[[ -d "$T/state/worktrees/py/scan" && -f "$T/state/code-health/py.json" ]] || fail "no scan worktree or cache under STATE"

# shellcheck disable=SC2154  # PID_health is set by kz_start
kill -TERM "$PID_health"
rc=0; wait "$PID_health" || rc=$?
((rc == 0)) || fail "kaizen-code-health exited $rc after SIGTERM"
kz_wait_for 30 has agent.bye 1 || fail "no agent.bye after SIGTERM"
if [[ -n "$filtered" ]]; then
    got=$(grep "^scan.completed " "$T/all.out" | tail -n +$((filtered + 1)) | grep -o '"target":"[a-z]*"' | tr '\n' ' ')
    [[ "$got" == '"target":"c" "target":"py" ' ]] || fail "agent.run's target not honoured: scans of $got"
fi
echo "ok"
