# tests/integration/slowfix.sh - sourced (after lib.sh) by the tests that
# kill a process while an executor works: a real PostgreSQL, broker and
# orchestrator supervising kaizen-code-refactorer and kaizen-code-reviewer,
# a git repository $REPO (a.txt, b.txt at $BASE) and the fixer "slowfix",
# a script that sleeps 12 s before its one deterministic edit, so a kill
# lands while it works. SLOWFIX_CONCURRENT: policy.max_concurrent (2).
# Gives $K, $REPO, $BASE, PID_broker, PID_orch and `ready ID FILE`, which
# publishes plan.ready of a slowfix plan on FILE.
# shellcheck shell=bash disable=SC2034,SC2154 # used by the sourcing test
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"
command -v git >/dev/null || skip "no git"
for a in code-refactorer code-reviewer; do
    [[ -x $KZ_BIN/kaizen-$a ]] || skip "kaizen-$a is not built"
done
kz_python json || skip "no python3"

K=$KZ_BIN/kaizen
REPO=$T/repo

mkdir -p "$REPO"
printf 'one\ntwo\n' >"$REPO/a.txt"
printf 'three\n' >"$REPO/b.txt"
git -C "$REPO" init -q -b main
git -C "$REPO" -c user.name=t -c user.email=t@t add -A
git -C "$REPO" -c user.name=t -c user.email=t@t commit -q -m init
BASE=$(git -C "$REPO" rev-parse HEAD)

# the fixer: slow on purpose (the broker dies while it sleeps), then one
# deterministic edit; the linter is never run (the plan names no tool)
cat >"$T/slowfix" <<'EOF'
#!/bin/sh
sleep 12
for f; do printf 'fixed\n' >>"$f"; done
EOF
printf '#!/bin/sh\nexit 0\n' >"$T/lint"
chmod +x "$T/slowfix" "$T/lint"

kz_config <<EOF
sandbox: # the scripts live in \$T, which the sandbox hides
  bind_ro: [$T/slowfix, $T/lint]
supervisor:
  broker: false
  stop_timeout: 5s
database:
  flush_interval: 50ms
agents:
  - name: code-refactorer
    interval: 0
  - name: code-reviewer
    interval: 0
targets:
  - name: t
    path: $REPO
    branch: main
tools:
  - name: lint
    files: ["*.txt"]
    argv: [$T/lint, "{files}"]
    format: gcc
fixers:
  - name: slowfix
    tool: lint
    argv: [$T/slowfix, "{files}"]
    risk: 0.1
policy:
  max_concurrent: ${SLOWFIX_CONCURRENT:-2}
  validators: [validate.review]
  exec_timeout: 300s
  validate_timeout: 300s
  retries: 0
EOF
kz_at_exit kz_kill_leftovers
kz_db_start

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start orch "$KZ_BIN/kaizen-orchestrator"
kz_wait_log orch "recording to the database" 60 || fail "the orchestrator does not record"
kz_wait_for 30 kz_status 'b["router"]["recovered"]' || fail "no router in the status"
for a in code-refactorer code-reviewer; do
    kz_wait_for 60 kz_status "any(x['name'] == '$a' and x.get('state') == 'idle' for x in b['agents'])" ||
        fail "$a is not up: $(kz_status 'b["agents"]')"
done

ready() { # ID FILE
    "$K" publish plan.ready \
        "{\"plan_id\":\"$1\",\"fixer\":\"slowfix\",\"files\":[\"$2\"],\"findings\":[\"fp$1\"],\"impact\":1,\"effort\":1,\"risk\":0.1,\"base_commit\":\"$BASE\"}" \
        --target t >/dev/null || fail "kaizen publish plan.ready $1 failed"
}
