#!/usr/bin/env bash
# test_db_errors: where the database is and what goes wrong reaching it:
# an unreachable DSN, $KAIZEN_DATABASE_URL over database.dsn, a malformed
# DSN, a wrong database, passwords never shown, start/stop refused with a
# DSN, a state directory the postgres user cannot reach (root), a socket
# path too long. (A machine without PostgreSQL server programs is not
# tested: they are installed here.)
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"

K=$KZ_BIN/kaizen
SECRET=hunter2secret
port=$(kz_port)
kill_leftovers() {
    local p
    for p in $(pgrep -f -- "$T/" || true); do kill -KILL "$p" 2>/dev/null; done
}
kz_at_exit kill_leftovers

# a config per case (all share $T/state); KAIZEN_CONFIG stays the embedded one
kz_config "$T/embedded.yaml"
kz_config "$T/dsn.yaml" <<EOF
database:
  dsn: "host=127.0.0.1 port=$port dbname=x user=x connect_timeout=2"
EOF
kz_config "$T/malformed.yaml" <<EOF
database:
  dsn: "host=127.0.0.1 port"
EOF
kz_config "$T/secret.yaml" <<EOF
database:
  dsn: "postgresql://kz:$SECRET@127.0.0.1:$port/kaizen?connect_timeout=2"
EOF
kz_config "$T/secret-kv.yaml" <<EOF
database:
  dsn: "host=127.0.0.1 port=$port user=kz password=$SECRET connect_timeout=2"
EOF
export KAIZEN_CONFIG=$T/embedded.yaml
unset KAIZEN_DATABASE_URL

# exit code of "$@" with output in $T/out and $T/err
run() { "$@" >"$T/out" 2>"$T/err"; echo $?; }
out() { cat "$T/out" "$T/err"; }

# --- an unreachable DSN: exit 1, one clear line naming where
rc=$(run "$K" -c "$T/dsn.yaml" db migrate)
[[ $rc -eq 1 ]] || fail "unreachable DSN: exit $rc: $(out)"
[[ $(wc -l <"$T/err") -eq 1 ]] || fail "not one line: $(out)"
grep -q "^kaizen db migrate: database unreachable (host=127.0.0.1 port=$port dbname=x user=x connect_timeout=2): .*127.0.0.1.*$port.*; check database.dsn$" "$T/err" ||
    fail "unreachable DSN message: $(out)"
rc=$(run "$K" -c "$T/dsn.yaml" db status)
[[ $rc -eq 1 ]] || fail "status of an unreachable DSN: exit $rc"
grep -Eq "^reachable +no: database unreachable" "$T/out" || fail "status: $(out)"
rc=$(run "$K" -c "$T/dsn.yaml" db start)
[[ $rc -eq 1 ]] || fail "db start with a DSN: exit $rc"
grep -q "database.dsn is set: kaizen does not manage that server" "$T/err" || fail "db start: $(out)"
rc=$(run "$K" -c "$T/dsn.yaml" db stop)
[[ $rc -eq 1 ]] || fail "db stop with a DSN: exit $rc"
[[ -e $T/state/db ]] && fail "db start/stop with a DSN touched the state directory"

# --- a malformed DSN
rc=$(run "$K" -c "$T/malformed.yaml" db migrate)
[[ $rc -eq 1 ]] || fail "malformed DSN: exit $rc"
grep -q 'malformed database DSN (host=127.0.0.1 port): missing "=" after "port"' "$T/err" ||
    fail "malformed DSN message: $(out)"
rc=$(KAIZEN_DATABASE_URL="postgresql://kz:$SECRET@[::1" run "$K" db migrate)
[[ $rc -eq 1 ]] || fail "malformed URL: exit $rc"
grep -q "malformed database DSN (postgresql://kz:\*\*\*@\[::1).*check \$KAIZEN_DATABASE_URL" "$T/err" ||
    fail "malformed URL message: $(out)"
grep -q "$SECRET" "$T/err" && fail "the password was shown: $(out)"

# --- passwords are never shown
for f in secret secret-kv; do
    rc=$(run "$K" -c "$T/$f.yaml" db status)
    [[ $rc -eq 1 ]] || fail "$f: exit $rc"
    grep -q "$SECRET" "$T/out" "$T/err" && fail "$f: the password was shown: $(out)"
    grep -q '\*\*\*' "$T/out" || fail "$f: no redacted password: $(out)"
    rc=$(run "$K" -c "$T/$f.yaml" db status --json)
    grep -q "$SECRET" "$T/out" "$T/err" && fail "$f --json: the password was shown: $(out)"
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "***" in d["database"] and not d["reachable"], d' \
        "$T/out" || fail "$f --json: $(out)"
    rc=$(run "$K" -c "$T/$f.yaml" db migrate)
    grep -q "$SECRET" "$T/out" "$T/err" && fail "$f migrate: the password was shown: $(out)"
done
rc=$(run "$K" -c "$T/secret.yaml" db migrate)
grep -q "(postgresql://kz:\*\*\*@127.0.0.1:$port/kaizen?connect_timeout=2)" "$T/err" ||
    fail "URI redaction: $(out)"
rc=$(run "$K" -c "$T/secret-kv.yaml" db migrate)
grep -q "(host=127.0.0.1 port=$port user=kz password=\*\*\* connect_timeout=2)" "$T/err" ||
    fail "keyword/value redaction: $(out)"

# --- the embedded cluster, not started yet: unreachable with the hint
rc=$(run "$K" db migrate)
[[ $rc -eq 1 ]] || fail "embedded, not started: exit $rc"
grep -q "database unreachable (embedded cluster in $T/state/db).*start it with 'kaizen up' or 'kaizen db start'" "$T/err" ||
    fail "embedded not started: $(out)"

# --- $KAIZEN_DATABASE_URL wins over database.dsn
kz_db_start
url="postgresql:///kaizen?host=$T/state/db/run&user=kaizen"
rc=$(KAIZEN_DATABASE_URL=$url run "$K" -c "$T/dsn.yaml" db migrate)
[[ $rc -eq 0 ]] || fail "KAIZEN_DATABASE_URL did not win over database.dsn: $(out)"
grep -q "^applied [0-9]* migrations\?, schema version" "$T/out" || fail "migrate via URL: $(out)"
rc=$(KAIZEN_DATABASE_URL=$url run "$K" -c "$T/dsn.yaml" db status)
[[ $rc -eq 0 ]] || fail "status via URL: $(out)"
grep -Eq "^database +postgresql:///kaizen\?host=$T/state/db/run&user=kaizen$" "$T/out" ||
    fail "status via URL: $(out)"
rc=$(KAIZEN_DATABASE_URL=$url run "$K" db start)
[[ $rc -eq 1 ]] || fail "db start with KAIZEN_DATABASE_URL: exit $rc"
grep -q '\$KAIZEN_DATABASE_URL is set' "$T/err" || fail "db start with the URL: $(out)"

# --- a wrong DSN: the server answers, the database does not exist
rc=$(KAIZEN_DATABASE_URL="postgresql:///nosuchdb?host=$T/state/db/run&user=kaizen" run "$K" db migrate)
[[ $rc -eq 1 ]] || fail "nonexistent database: exit $rc"
grep -q 'database "nosuchdb" does not exist' "$T/err" || fail "nonexistent database: $(out)"

# --- a server that does not start: the error quotes the end of its log
DATA=$T/state/db/data
"$K" db stop >"$T/out" 2>&1 || fail "db stop: $(out)"
cp -p "$DATA/postgresql.auto.conf" "$T/auto.conf.orig"
echo "shared_buffers = 'plenty'" >>"$DATA/postgresql.auto.conf"
rc=$(run "$K" db start)
[[ $rc -eq 1 ]] || fail "a broken configuration started: exit $rc: $(out)"
grep -q "the embedded PostgreSQL did not start .*the end of $T/state/logs/postgres.log:" "$T/err" ||
    fail "start failure: $(out)"
grep -q 'invalid value for parameter "shared_buffers": "plenty"' "$T/err" ||
    fail "the log is not quoted: $(out)"
cp -p "$T/auto.conf.orig" "$DATA/postgresql.auto.conf"

# --- a stale postmaster.pid naming a live process of the cluster's user
# (a pid reused after a crash) does not block the start
if [[ $(id -u) -eq 0 ]]; then
    kz_start sleeper setpriv --reuid=postgres --regid=postgres --init-groups sleep 300
else
    kz_start sleeper sleep 300
fi
# shellcheck disable=SC2154 # PID_sleeper is set by kz_start
kz_wait_for 60 grep -q sleep "/proc/$PID_sleeper/cmdline" || fail "the sleeper did not start"
printf '%s\n%s\n' "$PID_sleeper" "$DATA" >"$DATA/postmaster.pid"
[[ $(id -u) -eq 0 ]] && chown postgres:postgres "$DATA/postmaster.pid"
rc=$(run "$K" db start)
[[ $rc -eq 0 ]] || fail "db start with a stale postmaster.pid: $(out)"
grep -q "removing the stale postmaster.pid" "$T/err" || fail "stale pid: $(out)"
kill -0 "$PID_sleeper" || fail "the process named by the stale pid file was killed"
rc=$(run "$K" db status)
[[ $rc -eq 0 ]] || fail "status after the stale-pid start: $(out)"

# --- a socket path too long for AF_UNIX
long=$T/$(printf 'd%.0s' $(seq 1 110))
rc=$(KAIZEN_STATE_DIR=$long run "$K" db start)
[[ $rc -eq 1 ]] || fail "long state_dir: exit $rc"
grep -q "more than the 107 a unix socket path can hold: use a shorter state_dir" "$T/err" ||
    fail "long state_dir: $(out)"

# --- as root: a state directory the postgres user cannot reach
if [[ $(id -u) -eq 0 ]]; then
    mkdir -m 700 "$T/private"
    rc=$(KAIZEN_STATE_DIR=$T/private/state run "$K" db start)
    [[ $rc -eq 1 ]] || fail "unreachable state dir: exit $rc"
    grep -q "user 'postgres', which cannot reach .*directory '$T/private' is not searchable by it (mode 0700); fix it with: chmod o+x $T/private$" "$T/err" ||
        fail "unreachable state dir: $(out)"
    [[ -e $T/private/state/db/data ]] && fail "initdb ran in an unreachable directory"
else
    echo "note: not root, the unreachable-directory case is skipped"
fi

# usage errors
rc=$(run "$K" db)
[[ $rc -eq 2 ]] || fail "kaizen db without a subcommand: exit $rc"
rc=$(run "$K" db frobnicate)
[[ $rc -eq 2 ]] || fail "kaizen db frobnicate: exit $rc"
rc=$(run "$K" db start --timeout never)
[[ $rc -eq 2 ]] || fail "bad --timeout: exit $rc"
rc=$(run "$K" db status --help)
[[ $rc -eq 0 ]] || fail "db status --help: exit $rc"
grep -q "kaizen \[-c FILE\] db status \[--json\]" "$T/out" || fail "db status --help: $(out)"
echo "ok"
