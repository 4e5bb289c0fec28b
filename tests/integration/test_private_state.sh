#!/usr/bin/env bash
# test_private_state.sh - the state directory is private (docs/security.md,
# "Private state"): after a real scan by kaizen-code-health (a real
# broker, real git), user nobody can neither list the state directory nor
# read a scan worktree's file, a log, the spool; the modes are 0711 for
# STATE, STATE/worktrees, STATE/worktrees/<target> and 0700 elsewhere,
# files 0600. A state directory writable by others or owned by another
# user is refused with the fix; an older 0755 one of ours is tightened.
# A symlink planted in a log's place is not followed. A target owned by
# another user is refused unless its entry says trust_owner: true. A
# filter driver set in a target's own .git/config (and chosen by its
# committed .gitattributes) never runs in kaizen's git commands.
source "$KZ_ROOT/tests/integration/lib.sh"
AGENT=$KZ_BIN/kaizen-code-health
K=$KZ_BIN/kaizen
[[ -x "$AGENT" && -x "$K" ]] || fail "kaizen binaries not built"
command -v git >/dev/null || skip "git not installed"
command -v setpriv >/dev/null || skip "setpriv not installed"
[[ $(id -u) -eq 0 ]] || skip "needs root (runs commands as user nobody)"
id nobody >/dev/null 2>&1 || skip "no user nobody"
NOGROUP=$(id -gn nobody)
as_nobody() { setpriv --reuid nobody --regid "$NOGROUP" --clear-groups "$@"; }
# $T itself is searchable (as an installation's /var/lib is): only
# kaizen's own modes may keep nobody out
chmod 0711 "$T"
STATE=$T/state
MARK=$T/filter-ran

# a private target (0700, root's) whose .gitattributes chooses a filter
# its .git/config defines as a command leaving a marker
mk_repo() { # DEST
    mkdir -p "$1"
    git -C "$1" init -q -b main
    echo 'SECRET = "kz-private-7f3a"' >"$1/secret.py"
    echo '* filter=evil' >"$1/.gitattributes"
    git -C "$1" add -A
    git -C "$1" -c user.name=t -c user.email=t@example.com commit -qm "initial" || fail "git commit in $1"
    git -C "$1" config filter.evil.smudge "sh -c 'touch $MARK; cat'"
    git -C "$1" config filter.evil.clean "sh -c 'touch $MARK; cat'"
    git -C "$1" config filter.evil.required true
    git -C "$1" config merge.evil.driver "sh -c 'touch $MARK'"
}
mk_repo "$T/priv"
chmod 0700 "$T/priv"
# the same, owned by nobody: refused, and accepted once trusted
mk_repo "$T/foreign"
mk_repo "$T/trusted"
chown -R nobody "$T/foreign" "$T/trusted"
rm -f "$MARK"

printf '#!/bin/sh\nexit 0\n' >"$T/quiet"
chmod 0755 "$T/quiet"

kz_config <<EOF
agent_heartbeat: 300ms
# the tool lives in \$T, which the sandbox does not show otherwise
sandbox:
  bind_ro: [$T/quiet]
agents:
  - name: code-health
    interval: 0
targets:
  - name: priv
    path: $T/priv
    languages: [python]
  - name: foreign
    path: $T/foreign
    languages: [python]
  - name: trusted
    path: $T/trusted
    languages: [python]
    trust_owner: true
catalog: false
tools:
  - name: quiet
    languages: [python]
    files: ["*.py"]
    argv: [$T/quiet, "{files}"]
    format: gcc
EOF

# kaizen down works on the state directory alone (a config without the
# targets: the foreign one would fail its worktree clean-up, rightly)
{ sed -n '/^state_dir:/,/^    tap:/p' "$KAIZEN_CONFIG"; echo "agents: []"; } >"$T/down.yaml"
down() { "$K" -c "$T/down.yaml" down; }

# --- an older state directory (0755, logs 0644) is tightened, once
mkdir -p "$STATE/logs" && chmod 0755 "$STATE" "$STATE/logs"
echo "old line" >"$STATE/logs/old.log" && chmod 0644 "$STATE/logs/old.log"
down >"$T/down1.out" 2>&1 || fail "kaizen down on an old state directory: $(cat "$T/down1.out")"
grep -q "made the state directory private" "$T/down1.out" || fail "no word of the tightening: $(cat "$T/down1.out")"
down >"$T/down2.out" 2>&1 || fail "second kaizen down: $(cat "$T/down2.out")"
grep -q "made the state directory private" "$T/down2.out" && fail "tightened twice: $(cat "$T/down2.out")"

mode() { stat -c %a "$1"; }
[[ $(mode "$STATE") == 711 ]] || fail "state dir mode $(mode "$STATE"), expected 711"
for d in run spool; do
    [[ $(mode "$STATE/$d") == 700 ]] || fail "STATE/$d mode $(mode "$STATE/$d"), expected 700"
done
# logs: searchable only (the embedded PostgreSQL, another user, may be
# writing postgres.log there: a program starting meanwhile leaves it so)
[[ $(mode "$STATE/logs") == 711 ]] || fail "STATE/logs mode $(mode "$STATE/logs"), expected 711"

# --- a real scan, its agent logging into the state directory
kz_start broker "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start watch "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
touch "$T/all.out"
probe_seen() { "$KZ_TOOLS/kz_pub" test.probe >/dev/null 2>&1 && grep -q "^test.probe " "$T/all.out"; }
kz_wait_for 30 probe_seen || fail "watcher never connected"
LOG=$STATE/logs/code-health.0.log
kz_start health "$AGENT" --log-file "$LOG"
has() { [[ $(grep -c "^$1 " "$T/all.out") -ge $2 ]]; }
kz_wait_for 30 has agent.hello 1 || fail "no agent.hello"
"$K" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "kaizen publish agent.run failed"
kz_wait_for 180 has scan.completed 3 || fail "fewer than 3 scan.completed"

/usr/bin/python3 - "$T/all.out" <<'PY' || fail "scan results are wrong (above)"
import json, sys
done = {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    topic, _, js = line.partition(" ")
    if topic == "scan.completed":
        m = json.loads(js)
        done[m["target"]] = m["body"]
bad = []
for name in ("priv", "trusted"):
    if done.get(name, {}).get("status") != "ok":
        bad.append("%s: %s" % (name, done.get(name)))
f = done.get("foreign", {})
if f.get("status") != "failed" or "trust_owner" not in f.get("error", ""):
    bad.append("foreign was not refused with a word of trust_owner: %s" % f)
for b in bad:
    print("  -", b)
sys.exit(1 if bad else 0)
PY
[[ -e "$MARK" ]] && fail "the target's filter driver ran in kaizen's git commands"

WT_FILE=$STATE/worktrees/priv/scan/secret.py
[[ -f "$WT_FILE" ]] || fail "no scan worktree file $WT_FILE"
grep -q kz-private-7f3a "$WT_FILE" || fail "the worktree file holds the filter's output, not the file"
[[ $(mode "$STATE/worktrees") == 711 ]] || fail "STATE/worktrees mode $(mode "$STATE/worktrees")"
[[ $(mode "$STATE/worktrees/priv") == 711 ]] || fail "STATE/worktrees/priv mode $(mode "$STATE/worktrees/priv")"
[[ -s "$LOG" ]] || fail "the agent wrote no log to $LOG"
[[ $(mode "$LOG") == 600 ]] || fail "log mode $(mode "$LOG"), expected 600"
echo "spooled" >"$STATE/spool/probe" # a file in the spool directory
"$K" keygen orchestrator --dir "$STATE/keys" >"$T/keygen.out" 2>&1 || fail "kaizen keygen: $(cat "$T/keygen.out")"
[[ $(mode "$STATE/keys") == 700 ]] || fail "STATE/keys mode $(mode "$STATE/keys"), expected 700"
[[ $(mode "$STATE/keys/orchestrator.key_secret") == 600 ]] || fail "secret key mode $(mode "$STATE/keys/orchestrator.key_secret")"

# --- user nobody reads nothing of it
for f in "$WT_FILE" "$LOG" "$STATE/spool/probe" "$STATE/keys/orchestrator.key_secret" "$STATE/keys/orchestrator.key"; do
    as_nobody cat "$f" >/dev/null 2>&1 && fail "user nobody read $f"
done
for d in "$STATE" "$STATE/logs" "$STATE/spool" "$STATE/run" "$STATE/keys" "$STATE/worktrees" "$STATE/worktrees/priv"; do
    as_nobody ls "$d" >/dev/null 2>&1 && fail "user nobody listed $d"
done
# sanity: nobody can run at all (the failures above are the modes)
as_nobody cat /etc/hostname >/dev/null 2>&1 || fail "setpriv as nobody does not work here"

# --- a symlink planted in a log's place is not followed
echo "outside, untouched" >"$T/outside"
chmod 0644 "$T/outside"
ln -s "$T/outside" "$STATE/logs/broker2.log"
if "$KZ_BIN/kaizen-broker" -c "$KAIZEN_CONFIG" --log-file "$STATE/logs/broker2.log" >"$T/broker2.out" 2>&1; then
    fail "a broker logging through a planted symlink started"
fi
[[ $(cat "$T/outside") == "outside, untouched" ]] || fail "the planted symlink was followed: $(cat "$T/outside")"
[[ $(mode "$T/outside") == 644 ]] || fail "the planted symlink's target changed mode"

# --- the config check refuses the foreign target, names the fix
"$K" doctor >"$T/doctor.out" 2>&1
grep -q "owner of foreign" "$T/doctor.out" && grep -q "trust_owner: true" "$T/doctor.out" ||
    fail "kaizen doctor says nothing of the foreign target: $(cat "$T/doctor.out")"
grep "owner of trusted" "$T/doctor.out" | grep -q "ok" || fail "doctor refused the trusted target: $(grep owner "$T/doctor.out")"

# --- a state directory others may write, or another user's, is refused
chmod 0777 "$STATE"
down >"$T/down3.out" 2>&1 && fail "kaizen down accepted a 0777 state directory"
grep -q "refusing the state directory.*chmod 0711" "$T/down3.out" || fail "no clear error for 0777: $(cat "$T/down3.out")"
"$K" doctor >"$T/doctor2.out" 2>&1
grep -A1 "state directory" "$T/doctor2.out" | grep -q "fix: chmod 0711" || fail "doctor: no chmod fix: $(grep -A1 'state directory' "$T/doctor2.out")"
chmod 0711 "$STATE"
chown nobody "$STATE"
down >"$T/down4.out" 2>&1 && fail "kaizen down accepted a state directory owned by nobody"
grep -q "refusing the state directory.*owned by uid $(id -u nobody).*chown" "$T/down4.out" ||
    fail "no clear error for another owner: $(cat "$T/down4.out")"
chown root "$STATE"
down >"$T/down5.out" 2>&1 || fail "kaizen down after the fix: $(cat "$T/down5.out")"
echo "ok"
