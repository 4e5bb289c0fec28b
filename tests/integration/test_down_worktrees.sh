#!/usr/bin/env bash
# test_down_worktrees.sh - `kaizen down` leaves no worktree of kaizen's
# registered in a user's repository: a real up, a real scan by
# kaizen-code-health (its worktree STATE/worktrees/<target>/scan), plus
# the worktrees a killed validator or executor leaves behind (one locked,
# one whose directory is gone); after down `git worktree list` shows the
# user's checkout and the user's own worktree only, STATE/worktrees is
# gone, and the user's checkout and worktree are untouched. A second up
# scans again (the scan worktree is made anew) and a second down cleans
# again. The commits kaizen keeps under refs/kaizen/plans/ stay.
source "$KZ_ROOT/tests/integration/lib.sh"
K="$KZ_BIN/kaizen"
for p in kaizen kaizen-orchestrator kaizen-broker kaizen-code-health; do
    [[ -x $KZ_BIN/$p ]] || skip "$p is not built"
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null ||
    skip "PostgreSQL server programs are not installed (apt-get install -y postgresql)"
command -v git >/dev/null || skip "git is not installed"
unset KAIZEN_DATABASE_URL KAIZEN_STATE_DIR
chmod 755 "$T"
cd "$T" || fail "cd $T"

expect() { # expect RC NAME CMD... : output in $T/NAME.out, $T/NAME.err
    local want=$1 name=$2; shift 2
    timeout 120 "$@" >"$T/$name.out" 2>"$T/$name.err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/$name.out" "$T/$name.err")"
}

# the user's repository, with a worktree of the user's own
R=$T/py
git init -q -b main "$R"
printf 'import os\n' >"$R/a.py"
git -C "$R" add a.py
git -C "$R" -c user.name=t -c user.email=t@t commit -q -m base
git -C "$R" worktree add -q -b feature "$T/users-wt"
HEAD=$(git -C "$R" rev-parse HEAD)

# a linter that is quick and always finds one thing
printf '#!/bin/sh\nfor f; do echo "$f:1:1: W1 something"; done\n' >"$T/lint"
chmod +x "$T/lint"
kz_config <<EOF
sandbox: # the linter lives in \$T, which the sandbox hides
  bind_ro: [$T/lint]
agents:
  - name: code-health
    interval: 0
targets:
  - name: py
    path: $R
    languages: [python]
tools:
  - name: lint
    languages: [python]
    argv: ["$T/lint", "{files}"]
    format: gcc
EOF
S=$T/state
kz_at_exit "\"$K\" down --timeout 30s"

kaizen_wts() { git -C "$R" worktree list --porcelain | grep "^worktree $S/" || true; }

# scan_once N: ask for a scan (once: `kaizen up` returned when the agents
# said hello, which they do once their agent.run subscription is
# delivered), then wait until N scans completed
scan_once() {
    "$K" publish agent.run '{"agent":"code-health"}' >/dev/null || fail "publish agent.run"
    kz_wait_for 120 kz_psql_is "SELECT count(*) >= $1 FROM scans WHERE status = 'ok'" t ||
        fail "no scan completed: $(kz_psql "SELECT scan_id, status FROM scans") $(tail -20 "$S/logs/code-health.0.log")"
}

expect 0 up "$K" up
scan_once 1
kaizen_wts | grep -q "^worktree $S/worktrees/py/scan$" || fail "no scan worktree: $(git -C "$R" worktree list)"
# what a validator and an executor killed mid-run leave: a worktree, a
# locked one, and a registration whose directory is gone
git -C "$R" worktree add -q --detach "$S/worktrees/py/tests-01JX" "$HEAD"
git -C "$R" worktree add -q -b kaizen/plan-01JX "$S/worktrees/py/plan-01JX" "$HEAD"
git -C "$R" worktree lock "$S/worktrees/py/plan-01JX"
git -C "$R" update-ref refs/kaizen/plans/01JY "$HEAD" # a rejected plan's commit, kept
git -C "$R" worktree add -q --detach "$S/worktrees/py/review-01JX" "$HEAD"
rm -rf "$S/worktrees/py/review-01JX"
[[ $(git -C "$R" worktree list --porcelain | grep -c '^worktree ') -eq 6 ]] ||
    fail "setup: $(git -C "$R" worktree list)"

expect 0 down "$K" down
grep -q "removed 4 worktrees of target py from $R" "$T/down.err" || fail "down: $(cat "$T/down.err")"
[[ -z $(kaizen_wts) ]] || fail "kaizen's worktrees still registered: $(git -C "$R" worktree list)"
git -C "$R" worktree list --porcelain | grep '^worktree ' >"$T/wts"
printf 'worktree %s\nworktree %s\n' "$R" "$T/users-wt" | cmp -s - "$T/wts" ||
    fail "worktrees after down: $(cat "$T/wts")"
[[ -e $S/worktrees ]] && fail "STATE/worktrees left: $(ls -R "$S/worktrees")"
# the user's checkout and worktree are as they were; the plan branch is a
# branch, not a worktree: kept
[[ $(git -C "$R" rev-parse HEAD) == "$HEAD" && -z $(git -C "$R" status --porcelain) ]] ||
    fail "the user's checkout changed: $(git -C "$R" status)"
[[ -f $T/users-wt/a.py && $(git -C "$T/users-wt" rev-parse --abbrev-ref HEAD) == feature ]] ||
    fail "the user's worktree changed"
git -C "$R" rev-parse -q --verify refs/heads/kaizen/plan-01JX >/dev/null || fail "a branch was deleted"
[[ $(git -C "$R" rev-parse -q --verify refs/kaizen/plans/01JY) == "$HEAD" ]] || fail "a kept plan commit was deleted"

# again: up, a scan (its worktree made anew), down. A new commit: the
# same one again would be answered from the stored scan, with no worktree
printf 'x = 2\n' >>"$R/a.py"
git -C "$R" -c user.name=t -c user.email=t@t commit -qam "a change"
expect 0 up2 "$K" up
scan_once 2
kaizen_wts | grep -q "^worktree $S/worktrees/py/scan$" || fail "no scan worktree after up: $(git -C "$R" worktree list)"
expect 0 down2 "$K" down
grep -q "removed 1 worktree of target py" "$T/down2.err" || fail "second down: $(cat "$T/down2.err")"
[[ -z $(kaizen_wts) && ! -e $S/worktrees ]] || fail "after the second down: $(git -C "$R" worktree list)"
# nothing running, nothing to remove: still fine
expect 0 down3 "$K" down
grep -q "kaizen is not running" "$T/down3.out" || fail "third down: $(cat "$T/down3.out" "$T/down3.err")"
grep -q "removed" "$T/down3.err" && fail "third down removed something: $(cat "$T/down3.err")"
echo ok
