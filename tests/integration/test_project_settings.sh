#!/usr/bin/env bash
# test_project_settings.sh - kaizen-code-health runs each tool the way the
# project runs it: two small Python projects configured only through
# .pre-commit-config.yaml (hook args, files, a pinned rev, a ruff hook) and
# pyproject.toml ([tool.codespell] ignore-words-list, [tool.mypy] with
# pretty = true and files = ["src"]), scanned with the catalog's recipes
# of the real codespell and mypy. Checks that ignored words are not
# reported and other misspellings are, that mypy checks only what the
# project type-checks with its error code as the rule and its message
# whole, that codespell's findings under a pin of another version carry
# the note (scan.completed tools[]) and the reason they are not planned
# (their `excluded`), and that the ruff hook is reported as chosen but not
# run, never as a clean tool. Then code-reviewer judges plans with the same
# arguments (mypy on the project's files only, the hook's ignore list),
# and code-refactorer's codespell fixer keeps the words the project told
# codespell to ignore.
source "$KZ_ROOT/tests/integration/lib.sh"
AGENT=$KZ_BIN/kaizen-code-health
PY=/usr/bin/python3
[[ -x "$AGENT" ]] || fail "$AGENT not built"
command -v git >/dev/null || skip "git not installed"
command -v codespell >/dev/null || skip "codespell not installed"
"$PY" -m mypy --version >/dev/null 2>&1 || skip "mypy not installed for $PY"
installed=$(codespell --version | head -n 1)
[[ $installed != 2.4.2 ]] || skip "codespell 2.4.2 is installed: the pin would match"
kz_python zmq msgpack || skip "python3 with zmq and msgpack is needed for the request client"

commit_all() { # DIR
    git -C "$1" init -q -b main
    git -C "$1" add -A
    git -C "$1" -c user.name=t -c user.email=t@example.com commit -qm "initial" || fail "git commit in $1"
}

# "hooks": codespell set up by its pre-commit hook (args, files, a pin of
# another version), a ruff hook, mypy by pyproject.toml
mkdir -p "$T/hooks/src" "$T/hooks/tests" "$T/hooks/docs"
cat >"$T/hooks/.pre-commit-config.yaml" <<'EOF'
repos:
  - repo: https://github.com/codespell-project/codespell
    rev: v2.4.2
    hooks:
      - id: codespell
        args: ["--ignore-words-list=inout,te,teh", "--write-changes"]
        files: ^src/
  - repo: https://github.com/astral-sh/ruff-pre-commit
    rev: v0.1.6
    hooks:
      - id: ruff
        args: [--fix]
EOF
cat >"$T/hooks/pyproject.toml" <<'EOF'
[tool.mypy]
pretty = true
files = ["src"]
EOF
cat >"$T/hooks/src/words.py" <<'EOF'
"""Words the project means."""
import typing_extensions as te


def convert(inout: te.Any) -> None:
    """We recieve a value and change it in place."""
    teh = inout  # a name the project means
    print(teh)
EOF
cat >"$T/hooks/src/typed.py" <<'EOF'
"""A type error mypy must report whole."""


def label(count: int) -> str:
    return count + 1000000000000000000000000000000000000000000000000000000000000000000000000000000000000
EOF
cat >"$T/hooks/tests/test_typed.py" <<'EOF'
"""Tests the project does not type-check."""
value: int = "not an int"
EOF
printf 'Notes outside the hook: a mispelled word.\n' >"$T/hooks/docs/notes.md"
cp "$T/hooks/src/words.py" "$T/hooks/words_copy.py" # outside the hook's files too
commit_all "$T/hooks"

# "toml": codespell set up only by [tool.codespell] of pyproject.toml
mkdir -p "$T/toml"
cat >"$T/toml/pyproject.toml" <<'EOF'
[tool.codespell]
ignore-words-list = "falsy"
EOF
cat >"$T/toml/values.py" <<'EOF'
"""Falsy values."""
# a falsy value is dropped; we recieve the rest
EOF
commit_all "$T/toml"

# the recipes are the built-in catalog's (catalog/*.yaml)
kz_config <<EOF
agent_heartbeat: 300ms
agents:
  - name: code-health
    interval: 0
targets:
  - name: hooks
    path: $T/hooks
    languages: [python]
  - name: toml
    path: $T/toml
    languages: [python]
EOF

kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start watch "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
touch "$T/all.out"
probe_seen() { "$KZ_TOOLS/kz_pub" test.probe >/dev/null 2>&1 && grep -q "^test.probe " "$T/all.out"; }
kz_wait_for 30 probe_seen || fail "watcher never connected"

kz_start health "$AGENT" --log-level debug
has() { [[ $(grep -c "^$1 " "$T/all.out") -ge $2 ]]; }
kz_wait_for 30 has agent.hello 1 || fail "no agent.hello"
"$KZ_BIN/kaizen" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "kaizen publish agent.run failed"
kz_wait_for 180 has scan.completed 2 || fail "fewer than 2 scan.completed after one cycle"

"$PY" - "$T/all.out" "$installed" <<'PY' || fail "the scans did not follow the projects' settings (above)"
import json, sys
path, installed = sys.argv[1:3]
msgs = []
for line in open(path, encoding="utf-8", errors="replace"):
    topic, _, js = line.partition(" ")
    if topic in ("finding.batch", "scan.completed"):
        msgs.append(json.loads(js))
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
done = {m["target"]: m["body"] for m in msgs if m["type"] == "scan.completed"}
found = {}
for name, b in done.items():
    found[name] = [f for m in msgs if m["type"] == "finding.batch"
                   and m["body"]["scan_id"] == b["scan_id"] for f in m["body"]["findings"]]

# hooks: codespell with the hook's ignore list, on the hook's files only
hooks = done.get("hooks", {})
tools = {t["name"]: t for t in hooks.get("tools", [])}
check(hooks.get("status") == "ok", "hooks: status %s (%s)" % (hooks.get("status"), hooks.get("tools")))
spell = sorted((f["file"], f["line"], f["message"]) for f in found.get("hooks", []) if f["tool"] == "codespell")
check(spell == [("src/words.py", 6, "recieve ==> receive")],
      "hooks: codespell findings %s, expected only 'recieve' in src/words.py" % spell)
note = "version differs from the project's pin (2.4.2 pinned, %s installed)" % installed
check(tools.get("codespell", {}).get("status") == "ok", "hooks: codespell %s" % tools.get("codespell"))
check(tools.get("codespell", {}).get("note") == note, "hooks: codespell note %r, expected %r" % (tools.get("codespell", {}).get("note"), note))
# ... and its findings are reported but not planned, with that reason
ex = [f.get("excluded") for f in found.get("hooks", []) if f["tool"] == "codespell"]
check(ex == [note], "hooks: codespell findings' excluded %s, expected [%r]" % (ex, note))
check(all("excluded" not in f for f in found.get("hooks", []) if f["tool"] != "codespell"),
      "hooks: findings of tools without a pin set aside")
# mypy: what the project type-checks, the error code as the rule, the message whole
typed = [(f["file"], f["line"], f["rule"], f["message"]) for f in found.get("hooks", []) if f["tool"] == "mypy"]
want = [("src/typed.py", 5, "return-value",
         'Incompatible return value type (got "int", expected "str")')]
check([t[:3] for t in typed] == [w[:3] for w in want], "hooks: mypy findings %s, expected %s" % (typed, want))
check(typed and typed[0][3] == want[0][3], "hooks: mypy message %r is not whole" % (typed[0][3] if typed else None))
check(tools.get("mypy", {}).get("status") == "ok" and "note" not in tools.get("mypy", {}), "hooks: mypy %s" % tools.get("mypy"))
# ruff: chosen by the project, not run, never a clean tool
ruff = tools.get("ruff", {})
check(ruff.get("status") == "skipped", "hooks: ruff %s, expected skipped" % ruff)
check(ruff.get("note", "").startswith("chosen by the project but not run: ruff (no recipe; 0.1.6 pinned"),
      "hooks: ruff note %r" % ruff.get("note"))
check("not packaged in Debian 12" in ruff.get("note", ""), "hooks: ruff note %r names no package" % ruff.get("note"))

# toml: [tool.codespell] ignore-words-list, no pin
toml = done.get("toml", {})
ttools = {t["name"]: t for t in toml.get("tools", [])}
spell = sorted((f["file"], f["line"], f["message"]) for f in found.get("toml", []) if f["tool"] == "codespell")
check(spell == [("values.py", 2, "recieve ==> receive")], "toml: codespell findings %s, expected only 'recieve'" % spell)
check(all("excluded" not in f for f in found.get("toml", [])), "toml: findings set aside without a pin")
check(ttools.get("codespell", {}).get("status") == "ok" and "note" not in ttools.get("codespell", {}),
      "toml: codespell %s" % ttools.get("codespell"))
check(ttools.get("mypy", {}).get("status") == "skipped", "toml: mypy %s, expected skipped (not chosen)" % ttools.get("mypy"))
for b in bad:
    print("  -", b)
sys.exit(1 if bad else 0)
PY

# the refused hook arg and the pin are said in the log
grep -q "hook 'codespell' arg '--write-changes' refused" "$T/health.log" || fail "the refused --write-changes is not logged"
grep -q "version differs from the project's pin (2.4.2 pinned, $installed installed)" "$T/health.log" ||
    fail "the pin is not logged"
grep -q "chosen by the project but not run: ruff" "$T/health.log" || fail "ruff is not logged"
# the hook's --write-changes did not change the project
git -C "$T/hooks" diff --quiet || fail "the scan changed the project's files"

# --- code-reviewer and code-refactorer, with the same arguments
R=$T/hooks
BASE=$(git -C "$R" rev-parse HEAD)
mk() { # NAME FILE LINE: prints a new commit on BASE adding LINE to FILE
    git -C "$R" worktree add -q --detach "$T/w" "$BASE"
    printf '%s\n' "$3" >>"$T/w/$2"
    git -C "$T/w" add -A
    git -C "$T/w" -c user.name=t -c user.email=t@t commit -q -m "$1"
    git -C "$T/w" rev-parse HEAD
    git -C "$R" worktree remove --force "$T/w"
}
# a type error where the project does not type-check; words it ignores
C_tests=$(mk tests tests/test_typed.py 'other: str = 1')
C_words=$(mk words src/words.py '# te and inout, as meant')
for c in "$C_tests" "$C_words"; do
    [[ "$c" =~ ^[0-9a-f]{40}$ ]] || fail "making the test commits failed: '$c'"
done
cat >"$T/req.py" <<'PY'
import json, os, random, socket, sys, time, msgpack, zmq
endpoint, service, mtype, target, body = sys.argv[1:6]
A = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
n = (int(time.time() * 1000) << 80) | random.getrandbits(80)
ulid = "".join(A[(n >> (5 * i)) & 31] for i in reversed(range(26)))
env = {"v": 1, "id": ulid, "type": mtype, "src": "test@%s#%d" % (socket.gethostname(), os.getpid()),
       "ts": int(time.time() * 1e6), "body": json.loads(body), "target": target}
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(endpoint)
s.send_multipart([b"", b"MDPC01", service.encode(), msgpack.packb(env, use_bin_type=True)])
if not s.poll(120000):
    sys.exit("no reply from %s within 120 s" % service)
reply = msgpack.unpackb(s.recv_multipart()[3], raw=False)
if reply.get("corr") != ulid:
    sys.exit("reply corr %r is not the request id %s" % (reply.get("corr"), ulid))
print(json.dumps({"type": reply["type"], "body": reply["body"]}))
PY
kz_start reviewer "$KZ_BIN/kaizen-code-reviewer"
kz_wait_log reviewer "started" || fail "reviewer did not start"
kz_start refactorer "$KZ_BIN/kaizen-code-refactorer"
kz_wait_log refactorer "started" || fail "refactorer did not start"
review() { # ID COMMIT TOOL FILE: the verdict in $T/ID.json (COMMIT made the head
    # of the plan's branch first, as the refactorer would have)
    local body
    git -C "$R" branch -f "kaizen/plan-$1" "$2" || fail "unable to make the branch of $1"
    body=$(printf '{"plan_id": "%s", "commit": "%s", "base_commit": "%s", "tool": "%s", "files": ["%s"]}' \
        "$1" "$2" "$BASE" "$3" "$4")
    "$PY" "$T/req.py" "$KZ_ROUTER" validate.review validate.request hooks "$body" >"$T/$1.json" ||
        fail "no reply for review $1"
}
# mypy checks src/ only, as the project does: the error in tests/ is not new
review r1 "$C_tests" mypy tests/test_typed.py
[[ $(jq -r .body.verdict "$T/r1.json") == pass ]] || fail "review r1 (mypy on tests/): $(cat "$T/r1.json")"
[[ $(jq -r .body.details.findings_after "$T/r1.json") == 0 ]] || fail "review r1 found: $(cat "$T/r1.json")"
# codespell with the hook's ignore list: te and inout are no misspellings
review r2 "$C_words" codespell src/words.py
[[ $(jq -r .body.verdict "$T/r2.json") == pass ]] || fail "review r2 (ignored words): $(cat "$T/r2.json")"
[[ $(jq -r .body.details.findings_after "$T/r2.json") == 1 ]] || fail "review r2 findings: $(cat "$T/r2.json")"

# the codespell fixer fixes recieve and keeps teh, which the project ignores
body=$(printf '{"plan_id": "p1", "fixer": "codespell", "files": ["src/words.py"], "base_commit": "%s"}' "$BASE")
# the router's record says it executes p1 so (kaizen.plan, plan_record.py)
printf '{"p1": {"state": "executing", "target": "hooks", "fixer": "codespell", "base_commit": "%s", "branch": "kaizen/plan-p1"}}' "$BASE" >"$T/records.json"
kz_start record "$PY" "$KZ_ROOT/tests/integration/plan_record.py" "$KZ_ROUTER" "$T/records.json"
kz_wait_log record "ready" || fail "the plan record service did not start"
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request hooks "$body" >"$T/p1.json" ||
    fail "no reply from the refactorer"
[[ $(jq -r .body.status "$T/p1.json") == changed ]] || fail "refactor: $(cat "$T/p1.json")"
fixed=$(git -C "$R" show "$(jq -r .body.commit "$T/p1.json")":src/words.py)
grep -q "We receive a value" <<<"$fixed" || fail "the fixer did not fix 'recieve': $fixed"
grep -q "teh = inout" <<<"$fixed" || fail "the fixer changed 'teh', which the project ignores: $fixed"
echo "ok"
