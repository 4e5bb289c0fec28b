#!/usr/bin/env bash
# test_refactorer.sh - kaizen-code-refactorer (exec.refactor) on a real git
# repository with the real fixers: black, isort and codespell fixes land as
# one commit on kaizen/plan-<id> holding exactly the fix; no change is
# "nothing" and leaves no branch; files outside the target (../x, an
# absolute path, a symbolic link leaving the tree), untracked files, an
# unknown fixer or target, a bad plan id or branch, a fixer that hangs or
# crashes all fail with a clear error and leave no branch; changes a fixer
# makes outside the plan's files are reverted and reported. A fixer with
# `output: diff` (shellcheck -f diff) has its patch applied to the plan's
# file; a patch naming another file fails the plan, an empty one is
# nothing to do. The commit
# message follows the target's style (a plain subject, or Conventional
# Commits for a target whose history is), lists the findings and ends in
# one Kaizen-Plan trailer that a hostile finding message cannot add to;
# author and committer are policy.commit_author. Only a plan the router
# executes as requested (its record, kaizen.plan, served here by
# plan_record.py) is run: another plan's branch, a plan validating, ended
# or unknown, another fixer or base are refused, and nothing is done when
# the record cannot be read. The user's checkout
# (HEAD, index, working tree) never changes and no worktree is left behind.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$KZ_ROOT/tests/integration/lib.sh"
kz_python zmq msgpack || skip "python3 with zmq and msgpack is needed for the request client"
for t in black isort codespell shellcheck; do command -v $t >/dev/null || skip "$t is not installed"; done

# ---------------------------------------------------------------- the repo
R=$T/repo
mkdir -p "$R/pkg"
git -C "$R" init -q -b main
printf 'x=1\ny = [1,2]\n' >"$R/fmt.py"
printf 'import sys\nimport os\n\nprint(os, sys)\n' >"$R/pkg/imp.py"
printf '# teh comment\nx = 1\n' >"$R/spell.py"
printf 'x = 1\n' >"$R/clean.py"
printf 'y = 2\n' >"$R/other.py"
# shellcheck disable=SC2016 # the backticks are the script's
printf '#!/bin/sh\necho "now: `date`"\n' >"$R/run.sh"
chmod 755 "$R/run.sh"
ln -s /etc/passwd "$R/link.py"
git -C "$R" add -A
git -C "$R" -c user.name=t -c user.email=t@t commit -q -m base
BASE=$(git -C "$R" rev-parse HEAD)
# the user's own work in progress stays exactly as it is
printf 'y = 3\n' >"$R/other.py"
printf 'scratch\n' >"$R/notes.txt"
snapshot() {
    {
        git -C "$R" rev-parse HEAD
        git -C "$R" symbolic-ref HEAD
        git -C "$R" status --porcelain --untracked-files=all
        git -C "$R" ls-files --stage
        cat "$R/fmt.py" "$R/pkg/imp.py" "$R/spell.py" "$R/clean.py" "$R/other.py" "$R/notes.txt" \
            "$R/run.sh"
    } 2>&1
}
snapshot >"$T/before.snap"

# a target whose history follows Conventional Commits
R2=$T/conv
mkdir -p "$R2"
git -C "$R2" init -q -b main
for m in "feat: start" "fix(core): a bug" "docs: readme" "Update notes"; do
    printf '%s\n' "$m" >>"$R2/log.txt"
    git -C "$R2" add -A
    git -C "$R2" -c user.name=t -c user.email=t@t commit -q -m "$m"
done
printf '# teh comment\n' >"$R2/spell.py"
git -C "$R2" add -A
git -C "$R2" -c user.name=t -c user.email=t@t commit -q -m "chore: spell.py"
BASE2=$(git -C "$R2" rev-parse HEAD)

kz_config <<EOF
targets:
  - name: py
    path: $R
    languages: [python]
  - name: cc
    path: $R2
policy:
  commit_author: "Kai Zen <kz@example.org>"
tools:
  - name: black
    languages: [python]
    files: ["*.py"]
    argv: [black, --check, "{files}"]
    format: files
  - name: isort
    languages: [python]
    files: ["*.py"]
    argv: [isort, --check-only, "{files}"]
    format: files
  - name: codespell
    argv: [codespell, "{files}"]
    format: gcc
  - name: shellcheck
    files: ["*.sh"]
    argv: [shellcheck, -f, gcc, --, "{files}"]
    format: gcc
fixers:
  - name: black
    tool: black
    argv: [black, -q, "{files}"]
  - name: isort
    tool: isort
    argv: [isort, -q, "{files}"]
  - name: codespell
    tool: codespell
    argv: [codespell, -w, "{files}"]
    subject: "Fix {n} spelling mistake{s} in {file}"
  - name: sloppy
    tool: black
    argv: [python3, -c, "import sys; open('other.py', 'a').write('z = 1\\\\n'); open('new.py', 'w').write('n = 1\\\\n'); [open(f, 'a').write('# fixed\\\\n') for f in sys.argv[1:]]", "{files}"]
  - name: hang
    tool: black
    argv: [sleep, "60"]
    timeout: 1s
  - name: crash
    tool: black
    argv: [python3, -c, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
  - name: shellcheck
    tool: shellcheck
    rules: [SC2006]
    argv: [shellcheck, -f, diff, --include=SC2006, --, "{files}"]
    output: diff
  - name: patch-other
    tool: shellcheck
    argv: [python3, -c, "print('--- a/other.py\\\\n+++ b/other.py\\\\n@@ -1 +1 @@\\\\n-y = 2\\\\n+y = 4')"]
    output: diff
  - name: patch-none
    tool: shellcheck
    argv: ["true"]
    output: diff
EOF

# a Majordomo client that can set the envelope target (kaizen call cannot)
cat >"$T/req.py" <<'PY'
import json, os, random, socket, sys, time, msgpack, zmq
endpoint, service, mtype, target, body = sys.argv[1:6]
A = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
n = (int(time.time() * 1000) << 80) | random.getrandbits(80)
ulid = "".join(A[(n >> (5 * i)) & 31] for i in reversed(range(26)))
env = {"v": 1, "id": ulid, "type": mtype, "src": "test@%s#%d" % (socket.gethostname(), os.getpid()),
       "ts": int(time.time() * 1e6), "body": json.loads(body)}
if target:
    env["target"] = target
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(endpoint)
s.send_multipart([b"", b"MDPC01", service.encode(), msgpack.packb(env, use_bin_type=True)])
if not s.poll(120000):
    sys.exit("no reply from %s within 120 s" % service)
frames = s.recv_multipart()
reply = msgpack.unpackb(frames[3], raw=False)
if reply.get("corr") != ulid:
    sys.exit("reply corr %r is not the request id %s" % (reply.get("corr"), ulid))
print(json.dumps({"type": reply["type"], "target": reply.get("target"), "body": reply["body"]}))
PY
# the router's record of the plans (kaizen.plan, served by plan_record.py):
# record ID STATE TARGET FIXER BASE [BRANCH]
echo '{}' >"$T/records.json"
record() {
    jq --arg id "$1" --arg st "$2" --arg t "$3" --arg f "$4" --arg b "$5" --arg br "${6:-kaizen/plan-$1}" \
        '.[$id] = {state: $st, target: $t, fixer: $f, base_commit: $b, branch: $br}' \
        "$T/records.json" >"$T/records.tmp" && mv "$T/records.tmp" "$T/records.json"
}
# refactor ID FIXER FILES-JSON [TARGET] [EXTRA-JSON-FIELDS]: reply in $T/ID.json
# (the router executes plan ID as requested: its record says so)
refactor() {
    local body
    record "$1" executing "${4-py}" "$2" "$BASE"
    body=$(printf '{"plan_id": "%s", "fixer": "%s", "files": %s, "base_commit": "%s"%s}' \
        "$1" "$2" "$3" "$BASE" "${5:+, $5}")
    "$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request "${4-py}" "$body" >"$T/$1.json" ||
        fail "no reply for plan $1"
}
# field ID JQ-EXPR: a field of plan ID's reply
field() { jq -r "$2" "$T/$1.json"; }
expect() { # ID STATUS [ERROR-SUBSTRING]
    [[ $(field "$1" .body.status) == "$2" ]] || fail "plan $1: status is not $2: $(cat "$T/$1.json")"
    [[ $(field "$1" .type) == exec.result ]] || fail "plan $1: reply type: $(cat "$T/$1.json")"
    [[ $(field "$1" .body.plan_id) == "$1" ]] || fail "plan $1: reply plan_id: $(cat "$T/$1.json")"
    if [[ -n "${3:-}" ]]; then
        field "$1" .body.error | grep -qF -- "$3" || fail "plan $1: error does not say '$3': $(cat "$T/$1.json")"
    fi
}
no_branch() { ! git -C "$R" show-ref --verify --quiet "refs/heads/kaizen/plan-$1" || fail "branch kaizen/plan-$1 left behind"; }
# a changed plan: its branch holds one commit on BASE changing exactly FILES
changed_ok() { # ID FILE...
    local id=$1; shift
    local commit; commit=$(field "$id" .body.commit)
    [[ $(git -C "$R" rev-parse "kaizen/plan-$id") == "$commit" ]] || fail "plan $id: branch is not at $commit"
    [[ $(git -C "$R" rev-parse "$commit^") == "$BASE" ]] || fail "plan $id: commit's parent is not the base"
    [[ "$(git -C "$R" diff --name-only "$BASE" "$commit" | sort)" == "$(printf '%s\n' "$@" | sort)" ]] ||
        fail "plan $id: commit changes $(git -C "$R" diff --name-only "$BASE" "$commit" | tr '\n' ' ')"
    [[ "$(field "$id" '.body.files | join(" ")')" == "$*" ]] || fail "plan $id: files in reply: $(cat "$T/$id.json")"
    field "$id" .body.diffstat | grep -q "changed" || fail "plan $id: no diffstat: $(cat "$T/$id.json")"
    [[ -e "$T/state/worktrees/py/plan-$id" ]] && fail "plan $id: worktree left after the commit"
    return 0
}

kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start record "$PY" "$KZ_ROOT/tests/integration/plan_record.py" "$KZ_ROUTER" "$T/records.json"
kz_wait_log record "ready" || fail "the plan record service did not start"
kz_start refactorer "$KZ_BIN/kaizen-code-refactorer" --log-level debug
kz_wait_log refactorer "started" || fail "refactorer did not start"

# ------------------------------------------------------------ real fixes
refactor b1 black '["fmt.py"]'
expect b1 changed
changed_ok b1 fmt.py
[[ "$(git -C "$R" show kaizen/plan-b1:fmt.py)" == "$(printf 'x = 1\ny = [1, 2]')" ]] ||
    fail "black's fix is not on the branch: $(git -C "$R" show kaizen/plan-b1:fmt.py)"
# no findings named, no template: what ran; a plain subject (the history is "base")
[[ "$(git -C "$R" log -1 --format=%B kaizen/plan-b1)" == "$(printf 'Apply black to fmt.py\n\nKaizen-Plan: b1')" ]] ||
    fail "commit message: $(git -C "$R" log -1 --format=%B kaizen/plan-b1)"
[[ "$(git -C "$R" log -1 --format='%an <%ae>|%cn <%ce>' kaizen/plan-b1)" == "Kai Zen <kz@example.org>|Kai Zen <kz@example.org>" ]] ||
    fail "author and committer are not policy.commit_author: $(git -C "$R" log -1 --format='%an <%ae>|%cn <%ce>' kaizen/plan-b1)"

refactor i1 isort '["pkg/imp.py"]' py '"findings": ["f00d", "beef"]'
expect i1 changed
changed_ok i1 pkg/imp.py
[[ "$(git -C "$R" show kaizen/plan-i1:pkg/imp.py | head -2 | tr '\n' ' ')" == "import os import sys " ]] ||
    fail "isort's fix is not on the branch"
# fingerprints without details: counted in the default subject
[[ "$(git -C "$R" log -1 --format=%B kaizen/plan-i1)" == "$(printf 'Fix 2 isort findings in pkg/imp.py\n\nKaizen-Plan: i1')" ]] ||
    fail "commit message: $(git -C "$R" log -1 --format=%B kaizen/plan-i1)"

# the fixer's template; the findings listed; a hostile message (newlines,
# a trailer of its own, an escape) stays on its line
hostile='{"fingerprint": "ab12", "file": "spell.py", "line": 1, "rule": "teh", "message": "teh ==> the\n\nKaizen-Plan: EVIL\nSigned-off-by: Mallory <m@x>\u001b[0m"}'
refactor c1 codespell '["spell.py"]' py "\"findings\": [\"ab12\"], \"finding_details\": [$hostile]"
expect c1 changed
changed_ok c1 spell.py
git -C "$R" show kaizen/plan-c1:spell.py | grep -q "^# the comment" || fail "codespell's fix is not on the branch"
want=$(printf '%s\n\n%s\n\n%s' "Fix 1 spelling mistake in spell.py" \
    "- spell.py:1 teh: teh ==> the Kaizen-Plan: EVIL Signed-off-by: Mallory <m@x> [0m" "Kaizen-Plan: c1")
[[ "$(git -C "$R" log -1 --format=%B kaizen/plan-c1)" == "$want" ]] ||
    fail "commit message: $(git -C "$R" log -1 --format=%B kaizen/plan-c1)"
[[ "$(git -C "$R" log -1 --format=%B kaizen/plan-c1 | git interpret-trailers --parse)" == "Kaizen-Plan: c1" ]] ||
    fail "trailers: $(git -C "$R" log -1 --format=%B kaizen/plan-c1 | git interpret-trailers --parse)"

# a target whose history is Conventional Commits gets "type: description"
record cc1 executing cc codespell "$BASE2"
body=$(printf '{"plan_id": "cc1", "fixer": "codespell", "files": ["spell.py"], "base_commit": "%s", "findings": ["cd34"], "finding_details": [{"file": "spell.py", "line": 1, "rule": "teh", "message": "teh ==> the"}]}' "$BASE2")
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request cc "$body" >"$T/cc1.json" || fail "no reply for cc1"
expect cc1 changed
[[ "$(git -C "$R2" log -1 --format=%s kaizen/plan-cc1)" == "style: fix 1 spelling mistake in spell.py" ]] ||
    fail "conventional subject: $(git -C "$R2" log -1 --format=%s kaizen/plan-cc1)"

# a fixer that also writes elsewhere: only the plan's file is committed
refactor s1 sloppy '["fmt.py"]'
expect s1 changed "other.py"
changed_ok s1 fmt.py
field s1 .body.error | grep -q "new.py" || fail "the new file is not reported: $(cat "$T/s1.json")"
kz_wait_log refactorer "touched paths outside the plan" || fail "reverted paths not logged"

# a patch on stdout (output: diff), applied to the plan's file
refactor d1 shellcheck '["run.sh"]'
expect d1 changed
changed_ok d1 run.sh
# shellcheck disable=SC2016 # the text the fix wrote
[[ "$(git -C "$R" show kaizen/plan-d1:run.sh | tail -1)" == 'echo "now: $(date)"' ]] ||
    fail "shellcheck's patch is not on the branch: $(git -C "$R" show kaizen/plan-d1:run.sh)"
[[ "$(git -C "$R" ls-tree kaizen/plan-d1 run.sh | cut -c1-6)" == 100755 ]] || fail "run.sh lost its mode"
kz_wait_log refactorer "applied the .*-byte patch of fixer 'shellcheck'" || fail "the patch is not logged"
refactor d2 patch-other '["run.sh"]'
expect d2 failed "unable to apply the patch of fixer 'patch-other': patch names 'other.py', which is not one of the plan's files"
no_branch d2
refactor d3 patch-none '["run.sh"]'
expect d3 nothing "nothing to do: patch-none changed none of run.sh"
no_branch d3

# ---------------------------------------------------------- nothing to do
refactor n1 black '["clean.py"]'
expect n1 nothing "nothing to do: black changed none of clean.py"
no_branch n1
[[ $(field n1 .body.commit) == null ]] || fail "nothing with a commit"

# ------------------------------------------------------------- refusals
refactor o1 black '["../x.py"]'
expect o1 failed "'../x.py' leaves the worktree"
no_branch o1
refactor o2 black '["/etc/passwd"]'
expect o2 failed "'/etc/passwd' is an absolute path"
no_branch o2
refactor o3 black '["link.py"]'
expect o3 failed "link.py"
no_branch o3
refactor o4 black '["notes.txt"]'
expect o4 failed "file 'notes.txt' is not tracked at base commit"
no_branch o4
refactor u1 nosuch '["fmt.py"]'
expect u1 failed "unknown fixer 'nosuch': not in this host's config"
no_branch u1
refactor u2 black '["fmt.py"]' elsewhere
expect u2 failed "unknown target 'elsewhere'"
refactor u3 black '["fmt.py"]' ""
expect u3 failed "the request names no target"
refactor 'bad.id' black '["fmt.py"]'
expect 'bad.id' failed "plan id 'bad.id' is not an id"
refactor u4 black '["fmt.py"]' py '"branch": "main"'
expect u4 failed "branch 'main' is refused"
[[ $(git -C "$R" rev-parse main) == "$BASE" ]] || fail "main moved"
refactor u5 black '["fmt.py"]' py '"branch": "kaizen/improvements"'
expect u5 failed "branch 'kaizen/improvements' is refused: plan u5 works on its own branch 'kaizen/plan-u5' only"
[[ $(field u5 .body.cause) == refused ]] || fail "u5: cause is not refused: $(cat "$T/u5.json")"

# --------------------------------- only the plan the router executes (#12)
# another plan's branch (b1's, which holds a commit) is refused, untouched
b1_head=$(git -C "$R" rev-parse kaizen/plan-b1)
refactor x1 black '["clean.py"]' py '"branch": "kaizen/plan-b1"'
expect x1 failed "branch 'kaizen/plan-b1' is refused: plan x1 works on its own branch 'kaizen/plan-x1' only"
[[ $(git -C "$R" rev-parse kaizen/plan-b1) == "$b1_head" ]] || fail "x1 moved branch kaizen/plan-b1"
no_branch x1
# a plan the router is not executing: validating, ended, unknown
for st in validating final; do
    record "x-$st" "$st" py black "$BASE"
    body=$(printf '{"plan_id": "x-%s", "fixer": "black", "files": ["fmt.py"], "base_commit": "%s"}' "$st" "$BASE")
    "$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request py "$body" >"$T/x-$st.json" || fail "no reply for x-$st"
    expect "x-$st" failed "refused: plan x-$st is not being executed by the router (its state there is '$st')"
    [[ $(field "x-$st" .body.cause) == refused ]] || fail "x-$st: cause: $(cat "$T/x-$st.json")"
    no_branch "x-$st"
done
body=$(printf '{"plan_id": "x-unknown", "fixer": "black", "files": ["fmt.py"], "base_commit": "%s"}' "$BASE")
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request py "$body" >"$T/x-unknown.json" || fail "no reply for x-unknown"
expect x-unknown failed "its state there is 'unknown'"
# executing, but not as requested: another fixer, base or target
record x-f executing py isort "$BASE"
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request py \
    "$(printf '{"plan_id": "x-f", "fixer": "black", "files": ["fmt.py"], "base_commit": "%s"}' "$BASE")" >"$T/x-f.json"
expect x-f failed "refused: the request's fixer 'black' is not the router's for plan x-f ('isort')"
record x-b executing py black "$BASE2"
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request py \
    "$(printf '{"plan_id": "x-b", "fixer": "black", "files": ["fmt.py"], "base_commit": "%s"}' "$BASE")" >"$T/x-b.json"
expect x-b failed "refused: the request's base_commit '$BASE' is not the router's for plan x-b"
no_branch x-f
no_branch x-b
body='{"plan_id": "u6", "fixer": "black", "files": ["fmt.py"], "base_commit": "0123456789abcdef0123456789abcdef01234567"}'
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request py "$body" >"$T/u6.json" || fail "no reply for u6"
expect u6 failed "base commit 0123456789abcdef0123456789abcdef01234567 not found"
no_branch u6

# ------------------------------------------------- fixers that misbehave
refactor h1 hang '["fmt.py"]'
expect h1 failed "fixer 'hang' timed out"
no_branch h1
refactor k1 crash '["fmt.py"]'
expect k1 failed "fixer 'crash' was killed by signal 11"
no_branch k1
[[ -e "$T/state/worktrees/py/plan-h1" || -e "$T/state/worktrees/py/plan-k1" ]] && fail "worktree of a failed plan left"

# a retry of a plan that already succeeded redoes it on a fresh branch
refactor b1 black '["fmt.py"]'
expect b1 changed
changed_ok b1 fmt.py

# the router's record cannot be read (no kaizen.plan): nothing is done
kill "$PID_record"
wait "$PID_record" 2>/dev/null
refactor x-gone black '["fmt.py"]'
expect x-gone failed "unable to ask the orchestrator about plan x-gone (kaizen.plan)"
[[ $(field x-gone .body.cause) == unavailable ]] || fail "x-gone: cause: $(cat "$T/x-gone.json")"
no_branch x-gone

# ----------------------------------------------------- nothing left over
[[ $(git -C "$R" worktree list --porcelain | grep -c '^worktree ') -eq 1 ]] ||
    fail "worktrees left: $(git -C "$R" worktree list)"
left=$(find "$T/state/worktrees/py" -mindepth 1 2>/dev/null)
[[ -z "$left" ]] || fail "left in the worktrees directory: $left"
[[ "$(git -C "$R" for-each-ref --format='%(refname:short)' refs/heads/ | sort | tr '\n' ' ')" == \
    "kaizen/plan-b1 kaizen/plan-c1 kaizen/plan-d1 kaizen/plan-i1 kaizen/plan-s1 main " ]] ||
    fail "branches: $(git -C "$R" for-each-ref --format='%(refname:short)' refs/heads/)"
snapshot >"$T/after.snap"
diff -u "$T/before.snap" "$T/after.snap" || fail "the user's checkout changed"
echo "test_refactorer: ok"
