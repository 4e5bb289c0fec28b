#!/usr/bin/env bash
# test_reviewer.sh - kaizen-code-reviewer (validate.review) on a real git
# repository with real flake8 and black: a clean fix passes; too many
# lines, too many files, a binary file, a path outside allowed_paths and
# an added TODO are rejected (a TODO that only moved is not); a targeted
# finding that is still there and a finding the base did not have are
# rejected with the finding named; a finding the plan did not target that
# stays on a line the fix changed (a new fingerprint) is not new; an
# unknown tool or commit is an error.
# Also end to end with kaizen-code-refactorer: its black fix passes the
# review. No worktree is left and the user's checkout never changes.
source "$KZ_ROOT/tests/integration/lib.sh"
kz_python zmq msgpack || skip "python3 with zmq and msgpack is needed for the request client"
for t in black flake8; do command -v $t >/dev/null || skip "$t is not installed"; done

R=$T/repo
mkdir -p "$R"
git -C "$R" init -q -b main
printf 'import os\nimport sys\n\nprint(sys.argv)\n' >"$R/a.py"
printf 'x = 1  # TODO keep\n' >"$R/b.py"
printf 'x=1\n' >"$R/fmt.py"
printf 'v = [1,2]  \n' >"$R/c.py"
git -C "$R" add -A
git -C "$R" -c user.name=t -c user.email=t@t commit -q -m base
BASE=$(git -C "$R" rev-parse HEAD)
printf 'wip\n' >"$R/notes.txt"
snapshot() {
    {
        git -C "$R" rev-parse HEAD
        git -C "$R" status --porcelain --untracked-files=all
        git -C "$R" ls-files --stage
        cat "$R/a.py" "$R/b.py" "$R/fmt.py" "$R/c.py"
    } 2>&1
}
snapshot >"$T/before.snap"

# mk NAME [FILE CONTENT]...: prints a new commit on BASE writing each FILE
mk() {
    local name=$1; shift
    git -C "$R" worktree add -q --detach "$T/w" "$BASE"
    while (($#)); do
        printf '%b' "$2" >"$T/w/$1"
        shift 2
    done
    git -C "$T/w" add -A
    git -C "$T/w" -c user.name=t -c user.email=t@t commit -q -m "$name"
    git -C "$T/w" rev-parse HEAD
    git -C "$R" worktree remove --force "$T/w"
}
C_fix=$(mk fix a.py 'import sys\n\nprint(sys.argv)\n')
C_keep=$(mk keep b.py 'x = 2  # TODO keep\n')
C_new=$(mk new a.py 'import re\nimport sys\n\nprint(sys.argv)\n')
C_todo=$(mk todo b.py 'x = 1  # TODO keep\ny = 2  # TODO: later\n')
C_big=$(mk big b.py "$(for i in $(seq 30); do printf 'v%d = %d\\n' "$i" "$i"; done)")
C_bin=$(mk bin data.bin '\x00\x01\x02\x00\xff')
C_many=$(mk many c1.py 'a = 1\n' c2.py 'a = 2\n' c3.py 'a = 3\n' c4.py 'a = 4\n')
C_ws=$(mk ws c.py 'v = [1,2]\n')
for c in "$C_fix" "$C_keep" "$C_new" "$C_todo" "$C_big" "$C_bin" "$C_many" "$C_ws"; do
    [[ "$c" =~ ^[0-9a-f]{40}$ ]] || fail "making the test commits failed: '$c'"
done

# the reverse reviews (a fix's commit as the base, to learn the
# fingerprint of what the fix removes) happen in a repository of their
# own that shares R's objects: there, the fix is on main and a plan's
# commit with the base's tree goes on top of it
REV=$T/rev
git init -q -b main "$REV"
echo "$R/.git/objects" >"$REV/.git/objects/info/alternates"
git -C "$REV" -c user.name=t -c user.email=t@t commit -q --allow-empty -m start
git -C "$REV" checkout -q --detach

kz_config <<EOF
targets:
  - name: py
    path: $R
    languages: [python]
  - name: rev
    path: $REV
    languages: [python]
tools:
  - name: flake8
    languages: [python]
    files: ["*.py"]
    argv: [flake8, "{files}"]
    format: gcc
  - name: black
    languages: [python]
    files: ["*.py"]
    argv: [black, --check, "{files}"]
    format: files
fixers:
  - name: black
    tool: black
    argv: [black, -q, "{files}"]
policy:
  max_files: 3
  max_lines: 20
  allowed_paths: ["*.py"]
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
# review ID COMMIT BASE [EXTRA-JSON-FIELDS]: reply in $T/ID.json; COMMIT is
# made the head of the plan's branch kaizen/plan-ID first, as the
# refactorer would have (only a plan's commit is reviewed); review_raw
# leaves the branches alone; RT names the target (default py)
review() {
    local repo=$R
    [[ ${RT:-py} == rev ]] && repo=$REV
    if git -C "$repo" rev-parse -q --verify "$2^{commit}" >/dev/null; then
        git -C "$repo" branch -f "kaizen/plan-$1" "$2" || fail "unable to make the branch of $1"
    fi
    review_raw "$@"
}
# review_rev ID FIX EXTRA: review the change from FIX back to BASE (in REV)
review_rev() {
    git -C "$REV" branch -f main "$2" || fail "unable to move main of rev"
    local back
    back=$(git -C "$REV" -c user.name=t -c user.email=t@t commit-tree -p "$2" -m back "$BASE^{tree}") ||
        fail "unable to make the reverse commit"
    RT=rev review "$1" "$back" "$2" "$3"
}
review_raw() {
    local body
    body=$(printf '{"plan_id": "%s", "commit": "%s", "base_commit": "%s"%s}' "$1" "$2" "$3" "${4:+, $4}")
    "$PY" "$T/req.py" "$KZ_ROUTER" validate.review validate.request "${RT:-py}" "$body" >"$T/$1.json" ||
        fail "no reply for review $1"
    [[ $(jq -r .type "$T/$1.json") == validate.result ]] || fail "review $1: reply type: $(cat "$T/$1.json")"
    [[ $(jq -r .body.validator "$T/$1.json") == code-reviewer ]] || fail "review $1: validator: $(cat "$T/$1.json")"
}
field() { jq -r "$2" "$T/$1.json"; }
verdict() { # ID VERDICT [REASON-SUBSTRING]...
    local id=$1 v=$2; shift 2
    [[ $(field "$id" .body.verdict) == "$v" ]] || fail "review $id: verdict is not $v: $(cat "$T/$id.json")"
    local r
    for r in "$@"; do
        field "$id" '.body.reasons[]?' | grep -qF -- "$r" || fail "review $id: no reason '$r': $(cat "$T/$id.json")"
    done
}
nreasons() { [[ $(field "$1" '.body.reasons | length') == "$2" ]] || fail "review $1: not $2 reasons: $(cat "$T/$1.json")"; }

kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start reviewer "$KZ_BIN/kaizen-code-reviewer"
kz_wait_log reviewer "started" || fail "reviewer did not start"
kz_start refactorer "$KZ_BIN/kaizen-code-refactorer"
kz_wait_log refactorer "started" || fail "refactorer did not start"

# the fingerprint of flake8's F401 on "import os": the base seen from the fix
review_rev r0 "$C_fix" '"tool": "flake8", "files": ["a.py"]'
verdict r0 reject "new flake8 F401 at a.py:1"
FP=$(field r0 '.body.details.new[0]')
[[ "$FP" =~ ^[0-9a-f]{32}$ ]] || fail "no fingerprint in details.new: $(cat "$T/r0.json")"

# a clean fix passes
review r1 "$C_fix" "$BASE" "\"tool\": \"flake8\", \"files\": [\"a.py\"], \"findings\": [\"$FP\"], \"fixer\": \"x\""
verdict r1 pass
[[ $(field r1 '.body.reasons | length') == 0 ]] || fail "a pass with reasons: $(cat "$T/r1.json")"
[[ "$(field r1 '[.body.details.files, .body.details.added, .body.details.removed, .body.details.findings_before, .body.details.findings_after, .body.details.targeted_gone] | map(tostring) | join(" ")')" == "1 0 1 1 0 1" ]] ||
    fail "details of the pass: $(cat "$T/r1.json")"

# the targeted finding is still there (and a TODO that only changed line is not new)
review r2 "$C_keep" "$BASE" "\"tool\": \"flake8\", \"files\": [\"a.py\"], \"findings\": [\"$FP\"]"
verdict r2 reject "targeted finding still there: flake8 F401 at a.py:1"
nreasons r2 1
[[ $(field r2 '.body.details.remaining[0]') == "$FP" ]] || fail "remaining not listed: $(cat "$T/r2.json")"

# the targeted one went, another came
review r3 "$C_new" "$BASE" "\"tool\": \"flake8\", \"files\": [\"a.py\"], \"findings\": [\"$FP\"]"
verdict r3 reject "new flake8 F401 at a.py:1: 're' imported but unused"
nreasons r3 1

# c.py's line holds W291 (trailing whitespace) and E231: a fix of W291
# alone changes the line, so E231's fingerprint changes too; it was not
# targeted and stays: not new. The fingerprint of W291 first, seen from
# the fix.
review_rev w0 "$C_ws" '"tool": "flake8", "files": ["c.py"]'
verdict w0 reject "new flake8 W291 at c.py:1"
nreasons w0 1
WFP=$(field w0 '.body.details.new[0]')
review w1 "$C_ws" "$BASE" "\"tool\": \"flake8\", \"files\": [\"c.py\"], \"findings\": [\"$WFP\"]"
verdict w1 pass
[[ "$(field w1 '[.body.details.findings_before, .body.details.findings_after, .body.details.targeted_gone, .body.details.new_findings] | map(tostring) | join(" ")')" == "2 1 1 0" ]] ||
    fail "details of the partial fix: $(cat "$T/w1.json")"

# policy
review r4 "$C_todo" "$BASE"
verdict r4 reject 'new TODO/FIXME in b.py: "y = 2  # TODO: later"'
nreasons r4 1
field r4 .body.details.note | grep -q "no tool" || fail "no note about the missing tool: $(cat "$T/r4.json")"
review r5 "$C_big" "$BASE"
verdict r5 reject "31 lines changed (30 added, 1 removed), policy.max_lines is 20"
review r6 "$C_bin" "$BASE"
verdict r6 reject "binary file changed: data.bin" "'data.bin' is outside policy.allowed_paths"
review r7 "$C_many" "$BASE"
verdict r7 reject "4 files changed, policy.max_files is 3"

# the review cannot be done
review e1 "$C_fix" "$BASE" '"tool": "nosuch"'
verdict e1 error "unknown tool 'nosuch': not in this host's config"
review e2 0123456789abcdef0123456789abcdef01234567 "$BASE"
verdict e2 error "commit 0123456789abcdef0123456789abcdef01234567 not found"
review e3 "$C_fix" "$BASE" '"files": ["../etc/passwd"]'
verdict e3 error "leaves the worktree"
# only a plan's commit: the head of its branch, on a base on main
review_raw e4 "$C_fix" "$BASE"
verdict e4 error "is not the head of the plan's branch 'kaizen/plan-e4'"
# the plan's branch holds another commit (r2's holds C_keep): reply in r2.json again
review_raw r2 "$C_fix" "$BASE"
verdict r2 error "is not the head of the plan's branch 'kaizen/plan-r2' (${C_keep:0:12})"
review e6 "$BASE" "$BASE"
verdict e6 error "is the base commit itself"
review e7 "$C_fix" "$C_keep"
verdict e7 error "does not descend from the base commit"

# end to end: the refactorer's black fix passes the review with the black tool
body=$(printf '{"plan_id": "p1", "fixer": "black", "files": ["fmt.py"], "base_commit": "%s"}' "$BASE")
# the router's record says it executes p1 so (kaizen.plan, plan_record.py)
printf '{"p1": {"state": "executing", "target": "py", "fixer": "black", "base_commit": "%s", "branch": "kaizen/plan-p1"}}' "$BASE" >"$T/records.json"
kz_start record "$PY" "$KZ_ROOT/tests/integration/plan_record.py" "$KZ_ROUTER" "$T/records.json"
kz_wait_log record "ready" || fail "the plan record service did not start"
"$PY" "$T/req.py" "$KZ_ROUTER" exec.refactor exec.request py "$body" >"$T/p1.json" || fail "no reply from the refactorer"
[[ $(jq -r .body.status "$T/p1.json") == changed ]] || fail "refactor: $(cat "$T/p1.json")"
P1=$(jq -r .body.commit "$T/p1.json")
review_rev b0 "$P1" '"tool": "black", "files": ["fmt.py"]'
verdict b0 reject "new black"
BFP=$(field b0 '.body.details.new[0]')
review b1 "$P1" "$BASE" "\"tool\": \"black\", \"files\": [\"fmt.py\"], \"findings\": [\"$BFP\"], \"fixer\": \"black\""
verdict b1 pass
[[ $(field b1 .body.details.targeted_gone) == 1 ]] || fail "black finding not gone: $(cat "$T/b1.json")"

# nothing left over
[[ $(git -C "$R" worktree list --porcelain | grep -c '^worktree ') -eq 1 ]] ||
    fail "worktrees left: $(git -C "$R" worktree list)"
left=$(find "$T/state/worktrees/py" -mindepth 1 2>/dev/null)
[[ -z "$left" ]] || fail "left in the worktrees directory: $left"
snapshot >"$T/after.snap"
diff -u "$T/before.snap" "$T/after.snap" || fail "the user's checkout changed"
echo "test_reviewer: ok"
