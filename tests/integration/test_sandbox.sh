#!/usr/bin/env bash
# test_sandbox.sh - what a hostile target repository can do to the machine
# through kaizen's tools and tests (docs/sandbox.md), with real bubblewrap,
# the real code-health and test-runner agents, real pylint, flake8 and
# pytest, and the embedded PostgreSQL:
# - a tool recipe running a script committed in the target (probe.py),
#   inside the sandbox, tries to read the state directory, connect to the
#   database's unix socket, open a TCP connection to a listener on
#   127.0.0.1 and write outside the worktree (and into the read-only
#   worktree): every one fails; it reports what it saw as findings, so the
#   test knows it ran, as the sandbox's user and not root, with none of
#   KAIZEN_DATABASE_URL, PG*, SSH_AUTH_SOCK or PYTHONPATH of the agent's
#   environment;
# - the planted pylint init-hook (pyproject.toml and .pylintrc), flake8
#   local plugin (setup.cfg, paths = .) and black.py shadow write no
#   marker outside the worktree, and the scan still completes with pylint
#   and flake8 ok; a control scan with sandbox.enabled: false shows the
#   init-hook and the plugin do run then, as root;
# - the tests of the target (conftest.py doing the same, and a test that
#   asserts its own confinement) run through the test runner in the
#   sandbox: the marker is not written, the confinement test passes.
source "$KZ_ROOT/tests/integration/lib.sh"
K=$KZ_BIN/kaizen
PY=/usr/bin/python3
[[ -x $KZ_BIN/kaizen-code-health && -x $KZ_BIN/kaizen-test-runner ]] || fail "agents not built"
[[ -x /usr/bin/bwrap ]] || skip "bubblewrap is not installed (scripts/install-deps)"
[[ $(id -u) -eq 0 ]] || skip "needs root (the sandbox switches to kaizen-runner)"
runner_uid=$(id -u kaizen-runner 2>/dev/null) || skip "no user kaizen-runner (scripts/install-deps)"
command -v git >/dev/null || skip "git not installed"
"$PY" -m pylint --version >/dev/null 2>&1 || skip "pylint not installed"
"$PY" -m flake8 --version >/dev/null 2>&1 || skip "flake8 not installed"
"$PY" -m pytest --version >/dev/null 2>&1 || skip "pytest not installed"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || skip "PostgreSQL server programs are not installed"
unset KAIZEN_STATE_DIR

# a TCP listener on loopback, which the probe must not reach
port=$(kz_port)
kz_start listener "$PY" -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(16); print('listening', flush=True)
while True:
    c, _ = s.accept(); c.close()
"
kz_wait_log listener listening || fail "listener did not start"
"$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=5).close()" ||
    fail "the listener is not reachable from outside the sandbox"

# ------------------------------------------------------------- the target
E=$T/evil
mkdir -p "$E/tests"
cat >"$E/probe.py" <<'EOF'
"""A 'tool' committed in the target: tries to get out, reports as gcc lines."""
import glob, os, socket, sys

results = []
def report(key, value):
    results.append("%s=%s" % (key, value))

report("uid", os.getuid())
state = os.environ["PROBE_STATE"]
try:
    with open(os.path.join(state, "secret.txt")) as f:
        report("state", "READ:" + f.read().strip())
except OSError as e:
    report("state", "blocked")
try:
    names = os.listdir(os.path.join(state, "db"))
    report("statedb", "LISTED:%d" % len(names))
except OSError:
    report("statedb", "blocked")
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(os.environ["PROBE_SOCKET"])
    report("db", "CONNECTED")
except OSError:
    report("db", "blocked")
try:
    socket.create_connection(("127.0.0.1", int(os.environ["PROBE_PORT"])), timeout=5).close()
    report("tcp", "CONNECTED")
except OSError:
    report("tcp", "blocked")
# $T is under /tmp, the sandbox's private one: a write there lands in
# the sandbox (the test checks the real path stays absent); the system
# is read-only
try:
    with open(os.environ["PROBE_OUT"], "w") as f:
        f.write("escaped\n")
except OSError:
    pass
try:
    with open("/usr/kaizen-probe-was-here", "w") as f:
        f.write("escaped\n")
    report("write", "WROTE")
except OSError:
    report("write", "blocked")
try:
    with open("probe-was-here.txt", "w") as f:
        f.write("x\n")
    report("wtwrite", "WROTE")
except OSError:
    report("wtwrite", "blocked")
leaked = sorted(k for k in os.environ
                if k in ("KAIZEN_DATABASE_URL", "SSH_AUTH_SOCK", "PYTHONPATH", "KZ_SECRET")
                or k.startswith("PG"))
report("env", ",".join(leaked) or "none")
for i, r in enumerate(results):
    print("probe.py:%d:1: warning: %s [probe]" % (i + 1, r))
EOF
printf 'def add(a, b):\n    return a + b\n' >"$E/mod.py"
# the exploits: each writes a marker (with its uid) to an absolute path in $T
hook() { # NAME: python code writing $T/mark-NAME, for one line
    printf "import os; open('%s/mark-%s', 'w').write(str(os.getuid()))" "$T" "$1"
}
cat >"$E/pyproject.toml" <<EOF
[tool.pylint.main]
init-hook = "$(hook pylint-pyproject)"
EOF
cat >"$E/.pylintrc" <<EOF
[MAIN]
init-hook=$(hook pylint-rc)
EOF
cat >"$E/setup.cfg" <<EOF
[flake8]
max-line-length = 100

[flake8:local-plugins]
extension =
    EVL = evilplugin:Plugin
paths = .
EOF
cat >"$E/evilplugin.py" <<EOF
try:
    $(hook flake8-plugin)
except OSError:
    pass


class Plugin:
    name = "evil"
    version = "1"

    def __init__(self, tree):
        self.tree = tree

    def run(self):
        return iter(())
EOF
cat >"$E/black.py" <<EOF
$(hook black-shadow)
EOF
cat >"$E/conftest.py" <<EOF
try:
    $(hook conftest)
except OSError:
    pass
EOF
printf 'from mod import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n' >"$E/tests/test_ok.py"
git -C "$E" init -q -b main
git -C "$E" add -A
git -C "$E" -c user.name=t -c user.email=t@example.com commit -qm base || fail "git commit"
base=$(git -C "$E" rev-parse HEAD)
# the head commit adds a test that asserts its own confinement
cat >"$E/tests/test_contained.py" <<EOF
import os, socket


def test_not_root():
    assert os.getuid() == $runner_uid


def test_cannot_write_outside():
    # \$T is under the sandbox's private /tmp: this lands there, if anywhere
    try:
        open("$T/mark-pytest", "w").write("x")
    except OSError:
        pass
    try:
        open("/etc/kaizen-pytest-was-here", "w").write("x")
    except OSError:
        return
    raise AssertionError("wrote outside the worktree")


def test_no_state_dir():
    assert not os.path.exists("$T/state/secret.txt")


def test_no_network():
    try:
        socket.create_connection(("127.0.0.1", $port), timeout=5).close()
    except OSError:
        return
    raise AssertionError("reached the listener")


def test_no_secrets():
    assert "KAIZEN_DATABASE_URL" not in os.environ and "KZ_SECRET" not in os.environ
EOF
git -C "$E" add -A
git -C "$E" -c user.name=t -c user.email=t@example.com commit -qm head || fail "git commit"
head=$(git -C "$E" rev-parse HEAD)

# ------------------------------------------------------- config, services
config() { # SANDBOX-ENABLED
    kz_config <<EOF
agent_heartbeat: 300ms
catalog: true
scan:
  incremental: false # the control scan runs every tool again
sandbox:
  enabled: $1
targets:
  - name: evil
    path: $E
    languages: [python]
    test: [$PY, -m, pytest, -q, -p, "no:cacheprovider", "--junitxml={junit}"]
    test_timeout: 2m
tools:
  - name: probe
    languages: [python]
    files: ["probe.py"]
    argv: [$PY, probe.py, "{files}"]
    format: gcc
    env: ["PROBE_STATE=$T/state", "PROBE_SOCKET=\${SOCK}", "PROBE_PORT=$port",
          "PROBE_OUT=$T/outside-probe"]
EOF
}
config true
kz_db_start
sock=$(ls "$T"/state/db/run/.s.PGSQL.* 2>/dev/null | grep -v '\.lock$' | head -1)
[[ -S $sock ]] || fail "no database socket under $T/state/db/run"
sed -i "s|\${SOCK}|$sock|" "$KAIZEN_CONFIG"
# a world-readable secret in the state directory: only the sandbox hides it
echo "the-secret" >"$T/state/secret.txt"
chmod 0644 "$T/state/secret.txt"

kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start watch "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
touch "$T/all.out"
probe_seen() { "$KZ_TOOLS/kz_pub" test.probe >/dev/null 2>&1 && grep -q "^test.probe " "$T/all.out"; }
kz_wait_for 30 probe_seen || fail "watcher never connected"
# the agents' environment holds secrets the sandbox must not pass on
secrets=(KAIZEN_DATABASE_URL=postgresql://kaizen:hunter2@127.0.0.1:1/kaizen PGPASSWORD=hunter2
         PGHOST=/tmp SSH_AUTH_SOCK=/tmp/agent.sock PYTHONPATH=/nonexistent KZ_SECRET=1)
kz_start health env "${secrets[@]}" "$KZ_BIN/kaizen-code-health" --log-level debug
has() { [[ $(grep -c "^$1 " "$T/all.out") -ge $2 ]]; }
kz_wait_for 30 has agent.hello 1 || fail "no agent.hello"
"$K" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "kaizen publish agent.run failed"
kz_wait_for 240 has scan.completed 1 || fail "no scan.completed"

# ---------------------------------------------------------- the scan
"$PY" - "$T/all.out" "$runner_uid" <<'PY' || fail "the sandboxed scan is wrong (above)"
import json, sys
path, uid = sys.argv[1], sys.argv[2]
msgs = [json.loads(l.partition(" ")[2]) for l in open(path, errors="replace")
        if l.startswith(("finding.batch ", "scan.completed "))]
done = [m["body"] for m in msgs if m["type"] == "scan.completed"][0]
tools = {t["name"]: t for t in done.get("tools", [])}
bad = []
if done["status"] not in ("ok", "partial"):
    bad.append("scan status %s: %s" % (done["status"], done.get("error")))
for name in ("probe", "pylint", "flake8"):
    if tools.get(name, {}).get("status") != "ok":
        bad.append("tool %s: %s" % (name, tools.get(name)))
seen = {}
for m in msgs:
    if m["type"] == "finding.batch":
        for f in m["body"]["findings"]:
            if f["tool"] == "probe":
                k, _, v = f["message"].partition("=")
                seen[k] = v
want = {"uid": uid, "state": "blocked", "statedb": "blocked", "db": "blocked", "tcp": "blocked",
        "write": "blocked", "wtwrite": "blocked", "env": "none"}
for k, v in want.items():
    if seen.get(k) != v:
        bad.append("probe %s=%s, want %s" % (k, seen.get(k), v))
if bad:
    print("\n".join(bad))
    print("probe saw:", seen)
    sys.exit(1)
PY
for m in outside-probe mark-pylint-pyproject mark-pylint-rc mark-flake8-plugin mark-black-shadow; do
    [[ -e $T/$m ]] && fail "the sandbox let '$m' be written: $(cat "$T/$m")"
done
[[ -z "$(git -C "$E" status --porcelain)" ]] || fail "the target changed: $(git -C "$E" status --short)"

# ------------------------------------------------------------- the tests
kz_start runner env "${secrets[@]}" "$KZ_BIN/kaizen-test-runner" -c "$KAIZEN_CONFIG" --log-level debug
# the validators judge only the head of a plan's own branch
git -C "$E" branch kaizen/plan-plan-sandbox "$head" || fail "git branch"
served() { [[ $("$K" call mmi.service '"validate.tests"' --timeout 2s 2>/dev/null) == 200 ]]; }
kz_wait_for 30 served || fail "validate.tests is not served"
"$K" call validate.tests \
    "{\"plan_id\":\"plan-sandbox\",\"commit\":\"$head\",\"base_commit\":\"$base\",\"target\":\"evil\"}" \
    --json --timeout 3m --retries 0 >"$T/tests.json" 2>"$T/tests.err" ||
    fail "validate.tests failed: $(cat "$T/tests.err" "$T/tests.json")"
"$PY" - "$T/tests.json" <<'PY' || fail "the sandboxed tests: $(cat "$T/tests.json")"
import json, sys
b = json.load(open(sys.argv[1]))["body"]
assert b["verdict"] == "pass", b
assert b["details"]["now"]["passed"] == 6 and b["details"]["now"]["failed"] == 0, b["details"]
PY
for m in mark-conftest mark-pytest; do
    [[ -e $T/$m ]] && fail "a test wrote '$m' outside its worktree: $(cat "$T/$m")"
done
kill "$PID_runner" "$PID_health" 2>/dev/null
wait "$PID_runner" "$PID_health" 2>/dev/null

# doctor probes the sandbox, as its user
"$K" doctor >"$T/doctor-on.out" 2>&1
grep -Eq '^  ok +sandbox +on \(bubblewrap, user kaizen-runner\)' "$T/doctor-on.out" ||
    fail "doctor: $(grep sandbox "$T/doctor-on.out")"

# ------------------------------------------- control: the sandbox off
# the exploits are real: without the sandbox they run, as root
config false
sed -i "s|\${SOCK}|$sock|" "$KAIZEN_CONFIG"
hellos=$(grep -c "^agent.hello " "$T/all.out")
scans=$(grep -c "^scan.completed " "$T/all.out")
kz_start health2 "$KZ_BIN/kaizen-code-health" --log-level debug
kz_wait_for 30 has agent.hello $((hellos + 1)) || fail "no agent.hello (sandbox off)"
"$K" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "kaizen publish agent.run failed"
kz_wait_for 240 has scan.completed $((scans + 1)) || fail "no scan.completed (sandbox off)"
[[ -e $T/mark-pylint-pyproject || -e $T/mark-pylint-rc ]] ||
    fail "control: pylint's init-hook did not run without the sandbox (the test proves nothing)"
[[ -e $T/mark-flake8-plugin ]] ||
    fail "control: flake8's local plugin did not run without the sandbox (the test proves nothing)"
[[ -e $T/outside-probe ]] || fail "control: the probe could not write outside without the sandbox"
# every summary says the sandbox is off
"$K" doctor >"$T/doctor-off.out" 2>&1
grep -Eq '^  off +sandbox +off \(sandbox.enabled: false\)' "$T/doctor-off.out" ||
    fail "doctor: $(grep sandbox "$T/doctor-off.out")"
"$K" db migrate >"$T/migrate.log" 2>&1 || fail "kaizen db migrate: $(cat "$T/migrate.log")"
"$K" report --json >"$T/report.json" 2>"$T/report.err" || fail "report: $(cat "$T/report.err")"
"$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["sandbox"]["enabled"] is False, d.get("sandbox")' "$T/report.json" ||
    fail "report: $(head -c 300 "$T/report.json")"
"$K" report >"$T/report.txt" 2>&1 || fail "report: $(cat "$T/report.txt")"
grep -q "^WARNING: the sandbox is off" "$T/report.txt" || fail "report text: $(head -8 "$T/report.txt")"
echo "PASS"
