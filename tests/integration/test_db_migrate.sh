#!/usr/bin/env bash
# test_db_migrate: `kaizen db migrate --dir DIR` against a throwaway embedded
# cluster: a migration that fails half way is rolled back entirely (its
# first statement's table does not exist) while the ones before it stay
# applied; the error names the file, the line and the server's message;
# the fixed migration then applies; an edited applied migration warns;
# bad file names and duplicate versions are refused; concurrent migrators
# apply each migration exactly once (advisory lock).
source "$(dirname "$0")/lib.sh"

compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
    skip "no PostgreSQL server programs (apt-get install -y postgresql)"
command -v psql >/dev/null || skip "no psql (apt-get install -y postgresql-client)"

K=$KZ_BIN/kaizen
kz_config
SOCK=$T/state/db/run
kill_leftovers() {
    local p
    for p in $(pgrep -f -- "$T/" || true); do kill -KILL "$p" 2>/dev/null; done
}
kz_at_exit kill_leftovers
kz_db_start

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -U kaizen -d "${DB:-kaizen}" -c "$1"; }

M=$T/mig
mkdir "$M"
cp "$KZ_ROOT/db/migrations/0001_init.sql" "$M/"
printf 'CREATE TABLE widgets (id integer PRIMARY KEY);\n\nINSERT INTO\n    no_such_table VALUES (1);\n' \
    >"$M/0002_widgets.sql"

# --- 0001 applies, 0002 fails on its second statement and leaves nothing
"$K" db migrate --dir "$M" >"$T/m1.out" 2>"$T/m1.err"
rc=$?
[[ $rc -eq 1 ]] || fail "db migrate with a failing migration exited $rc: $(cat "$T/m1.out" "$T/m1.err")"
grep -q "0002_widgets.sql" "$T/m1.err" || fail "the error does not name the file: $(cat "$T/m1.err")"
grep -q 'relation "no_such_table" does not exist' "$T/m1.err" ||
    fail "the error lacks the server's message: $(cat "$T/m1.err")"
grep -q "line 4" "$T/m1.err" || fail "the error lacks the line: $(cat "$T/m1.err")"
[[ $(grep -c "kaizen db migrate:" "$T/m1.err") -eq 1 ]] || fail "not one error line: $(cat "$T/m1.err")"
[[ $(q "SELECT to_regclass('public.widgets') IS NULL") == t ]] ||
    fail "table widgets exists: the failed migration was not rolled back"
[[ $(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations") == 1 ]] ||
    fail "schema_migrations: $(q 'SELECT version, name FROM schema_migrations')"
[[ $(q "SELECT to_regclass('public.events') IS NOT NULL") == t ]] || fail "0001 was not applied"

"$K" db status --json >"$T/st.json" || fail "db status failed"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["schema_version"]==1, d' \
    "$T/st.json" || fail "status: $(cat "$T/st.json")"

# --- fixed, it applies; then nothing is pending. It holds the real
# 0002's tables too, which the later compiled-in migrations alter (m5)
{
    cat "$KZ_ROOT/db/migrations/0002_loop.sql"
    printf 'CREATE TABLE widgets (id integer PRIMARY KEY);\nINSERT INTO widgets VALUES (1);\n'
} >"$M/0002_widgets.sql"
"$K" db migrate --dir "$M" >"$T/m2.out" 2>"$T/m2.err" || fail "fixed migration: $(cat "$T/m2.err")"
grep -q "^applied 1 migration, schema version 2$" "$T/m2.out" || fail "m2: $(cat "$T/m2.out")"
[[ $(q "SELECT count(*) FROM widgets") == 1 ]] || fail "widgets has no row"
[[ $(q "SELECT string_agg(name, ',' ORDER BY version) FROM schema_migrations") == \
    "0001_init.sql,0002_widgets.sql" ]] || fail "schema_migrations: $(q 'SELECT * FROM schema_migrations')"
"$K" db migrate --dir "$M" >"$T/m3.out" 2>&1 || fail "third migrate: $(cat "$T/m3.out")"
grep -q "^schema is up to date (version 2)$" "$T/m3.out" || fail "m3: $(cat "$T/m3.out")"

# --- an applied migration edited afterwards: a warning, nothing changes
echo "-- edited" >>"$M/0002_widgets.sql"
"$K" db migrate --dir "$M" >"$T/m4.out" 2>"$T/m4.err" || fail "migrate after edit: $(cat "$T/m4.err")"
grep -q "0002_widgets.sql was changed after it was applied" "$T/m4.err" ||
    fail "no checksum warning: $(cat "$T/m4.err")"

# --- the compiled-in migrations: versions 1 and 2 are applied (0002 with
# another text: a warning), the later ones apply on top
latest=$(find "$KZ_ROOT/db/migrations" -name '[0-9][0-9][0-9][0-9]_*.sql' -printf '%f\n' |
    sort | tail -n 1 | cut -c1-4)
latest=$((10#$latest))
"$K" db migrate >"$T/m5.out" 2>"$T/m5.err" || fail "compiled-in migrate: $(cat "$T/m5.err")"
grep -Eq "up to date \(version $latest\)|^applied $((latest - 2)) migrations?, schema version $latest$" \
    "$T/m5.out" || fail "m5: $(cat "$T/m5.out")"

# --- a migration may not end the transaction it runs in
next=$(printf '%04d' $((latest + 1)))
printf 'CREATE TABLE gadgets (id integer);\nCOMMIT;\n' >"$M/${next}_gadgets.sql"
"$K" db migrate --dir "$M" >"$T/m6.out" 2>"$T/m6.err" && fail "a migration with COMMIT was accepted"
grep -q "${next}_gadgets.sql.*must not hold BEGIN, COMMIT or ROLLBACK" "$T/m6.err" ||
    fail "COMMIT in a migration: $(cat "$T/m6.err")"
[[ $(q "SELECT count(*) FROM schema_migrations WHERE version = $((latest + 1))") == 0 ]] ||
    fail "${next} was recorded as applied"
rm "$M/${next}_gadgets.sql"

# --- bad directories
cp "$M/0002_widgets.sql" "$M/0002_again.sql"
"$K" db migrate --dir "$M" >"$T/m7.out" 2>"$T/m7.err" && fail "duplicate versions accepted"
grep -q "same version 2" "$T/m7.err" || fail "duplicate versions: $(cat "$T/m7.err")"
rm "$M/0002_again.sql"
echo "SELECT 1;" >"$M/seed.sql"
"$K" db migrate --dir "$M" >"$T/m8.out" 2>"$T/m8.err" && fail "a badly named file was accepted"
grep -q "seed.sql: a migration's name must be NNNN_what.sql" "$T/m8.err" || fail "bad name: $(cat "$T/m8.err")"
rm "$M/seed.sql"
"$K" db migrate --dir "$T/nonexistent" >"$T/m9.out" 2>"$T/m9.err" && fail "a missing directory was accepted"
grep -q "unable to open migrations directory" "$T/m9.err" || fail "missing dir: $(cat "$T/m9.err")"
"$K" db migrate --bogus >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "an unknown option is not a usage error"

# --- four migrators at once on a fresh database: each migration once
q "CREATE DATABASE race" || fail "unable to create database race"
url="postgresql:///race?host=$SOCK&user=kaizen"
pids=()
for i in 1 2 3 4; do
    KAIZEN_DATABASE_URL=$url "$K" db migrate --dir "$M" >"$T/race$i.out" 2>&1 &
    pids+=($!)
done
for i in 0 1 2 3; do
    wait "${pids[$i]}" || fail "concurrent migrate $((i + 1)) failed: $(cat "$T/race$((i + 1)).out")"
done
total=0
for i in 1 2 3 4; do
    n=$(sed -n 's/^applied \([0-9]*\) migrations\?.*/\1/p' "$T/race$i.out")
    total=$((total + ${n:-0}))
done
[[ $total -eq 2 ]] || fail "the concurrent migrators applied $total migrations, not 2: $(cat "$T"/race*.out)"
[[ $(DB=race q "SELECT count(*) FROM schema_migrations") == 2 ]] || fail "race: schema_migrations"
[[ $(DB=race q "SELECT count(*) FROM widgets") == 1 ]] || fail "race: widgets"
echo "ok"
