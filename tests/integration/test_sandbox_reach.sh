#!/usr/bin/env bash
# test_sandbox_reach.sh - a state directory below a directory that the
# sandbox's user (kaizen-runner) cannot search: bubblewrap cannot bind a
# worktree there, and exits 1 with "Can't find source path" - the exit code
# of a checker that found something - so every tool looked "ok" with no
# findings. The sandbox's probe now says so, with the chmod that fixes it:
# kaizen doctor shows FAIL, and the same state directory under a searchable
# parent is ok.
source "$KZ_ROOT/tests/integration/lib.sh"
K=$KZ_BIN/kaizen
[[ -x /usr/bin/bwrap ]] || skip "bubblewrap is not installed (scripts/install-deps)"
[[ $(id -u) -eq 0 ]] || skip "needs root (the sandbox switches to kaizen-runner)"
id -u kaizen-runner >/dev/null 2>&1 || skip "no user kaizen-runner (scripts/install-deps)"
unset KAIZEN_STATE_DIR

mkdir -m 0700 "$T/closed"
kz_config <<EOF2
sandbox:
  enabled: true
EOF2
sed -i "s|^state_dir: .*|state_dir: $T/closed/state|" "$KAIZEN_CONFIG"

"$K" doctor >"$T/doctor-closed.out" 2>&1
line=$(grep -E '^  [A-Za-z]+ +sandbox ' "$T/doctor-closed.out")
[[ $line =~ ^\ \ FAIL\ +sandbox\ .*"user 'kaizen-runner' cannot reach the worktrees".*"directory '$T/closed' is not searchable by it (mode 0700)".*"chmod o+x $T/closed" ]] ||
    fail "doctor, closed parent: $line"
grep -q "apt-get install bubblewrap" "$T/doctor-closed.out" &&
    fail "doctor, closed parent: the fix is not about installing bubblewrap: $(cat "$T/doctor-closed.out")"

# searchable by the runner's group only (0710, group kaizen-runner): ok
chgrp kaizen-runner "$T/closed"
chmod 0710 "$T/closed"
"$K" doctor >"$T/doctor-group.out" 2>&1
grep -Eq '^  ok +sandbox +on \(bubblewrap, user kaizen-runner\)' "$T/doctor-group.out" ||
    fail "doctor, parent searchable by the group: $(grep -E ' sandbox ' "$T/doctor-group.out")"

# searchable by others: ok
chgrp root "$T/closed"
chmod 0711 "$T/closed"
"$K" doctor >"$T/doctor-open.out" 2>&1
grep -Eq '^  ok +sandbox +on \(bubblewrap, user kaizen-runner\)' "$T/doctor-open.out" ||
    fail "doctor, searchable parent: $(grep -E ' sandbox ' "$T/doctor-open.out")"

# a TMPDIR the runner cannot search: the scratch copies (the settings
# readers', rewrite tools', compile databases') are made there
mkdir -m 0700 "$T/tmp-closed"
TMPDIR=$T/tmp-closed "$K" doctor >"$T/doctor-tmp.out" 2>&1
line=$(grep -E '^  [A-Za-z]+ +sandbox ' "$T/doctor-tmp.out")
[[ $line =~ ^\ \ FAIL\ +sandbox\ .*"(TMPDIR) '$T/tmp-closed'".*"chmod o+x $T/tmp-closed" ]] ||
    fail "doctor, closed TMPDIR: $line"
echo "PASS"
