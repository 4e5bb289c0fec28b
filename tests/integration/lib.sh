# tests/integration/lib.sh - shared helpers for integration scripts
#
# Source it first thing. It gives:
#   $T            a private temporary directory, removed at exit
#   kz_port       a free TCP port on 127.0.0.1
#   kz_config     writes $T/kaizen.yaml with fresh ipc:// endpoints (or
#                 tcp with KZ_TRANSPORT=tcp: CURVE then comes on with the
#                 automatic keys of $T/state/keys, which the broker makes)
#                 plus any extra YAML on stdin;
#                 "agents: []" when it names none, "catalog: false" when it
#                 lists tools or fixers and says nothing of the catalog
#   kz_start NAME CMD...   starts CMD in the background, logs to $T/NAME.log,
#                 remembers its pid in PID_NAME; everything started is
#                 killed at exit
#   kz_wait_for SECONDS CMD...   polls CMD until it succeeds (generous deadlines,
#                 never a fixed sleep as a synchronisation)
#   kz_wait_log NAME PATTERN [SECONDS]   waits for PATTERN in $T/NAME.log (60 s)
#   fail MSG      prints MSG and exits 1;  skip MSG  exits 77
#   kz_at_exit CMD...   runs CMD at exit, before the started processes are
#                 killed (last registered first)
#   kz_psql SQL   runs SQL on that cluster (unaligned, tuples only)
#   kz_status EXPR   evaluates the python EXPR over the body "b" of the
#                 kaizen.status reply (needs PY, $K = the kaizen binary)
#   kz_curve_keys ROLE [KEYS]   "SERVER,PUBLIC,SECRET" for mdp_client and
#                 mdp_worker's --curve, from the broker's and ROLE's
#                 certificates in KEYS (default $T/state/keys, the
#                 automatic ones; ROLE.key_secret or a path to one)
#   kz_mdp_curve ROLE   "--curve ..." of ROLE's automatic keys when the
#                 last kz_config was tcp, nothing on ipc (unquoted use)
#   kz_kill_leftovers   SIGKILLs every process whose command line names $T/
#   kz_db_start   starts the embedded PostgreSQL cluster of $KAIZEN_CONFIG
#                 (kaizen db start: STATE/db; as root it runs as user
#                 postgres, so $T is made searchable); stopped at exit
set -u
KZ_BIN=${KZ_BIN:-$KZ_ROOT/bin}
KZ_TOOLS=${KZ_TOOLS:-$KZ_ROOT/build/default/tests/tools}
T=$(mktemp -d "${TMPDIR:-/tmp}/kz-it.XXXXXX")
# searchable (not listable) by others: as root, the sandbox's user
# (kaizen-runner) must reach the worktrees under $T's state directory
chmod 0711 "$T"
_kz_pids=()
_kz_exit_cmds=()

kz_at_exit() { _kz_exit_cmds=("$*" "${_kz_exit_cmds[@]}"); }

_kz_cleanup() {
    local p c
    for c in "${_kz_exit_cmds[@]}"; do eval "$c" >/dev/null 2>&1; done
    for p in "${_kz_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${_kz_pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    wait 2>/dev/null
    if [[ -n "${KZ_KEEP:-}" ]]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap _kz_cleanup EXIT

fail() { echo "FAIL: $*"; for f in "$T"/*.log; do [[ -f $f ]] && { echo "--- $f"; tail -n 30 "$f"; }; done; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

kz_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

kz_config() {
    local out=${1:-$T/kaizen.yaml}
    KZ_TCP=0
    if [[ "${KZ_TRANSPORT:-ipc}" == tcp ]]; then
        KZ_TCP=1
        local p1 p2 p3 p4
        p1=$(kz_port); p2=$(kz_port); p3=$(kz_port); p4=$(kz_port)
        KZ_PUB=tcp://127.0.0.1:$p1 KZ_SUB=tcp://127.0.0.1:$p2
        KZ_ROUTER=tcp://127.0.0.1:$p3 KZ_TAP=tcp://127.0.0.1:$p4
    else
        KZ_PUB=ipc://$T/pub.sock KZ_SUB=ipc://$T/sub.sock
        KZ_ROUTER=ipc://$T/router.sock KZ_TAP=ipc://$T/tap.sock
    fi
    {
        echo "state_dir: $T/state"
        echo "bus:"
        echo "  endpoints:"
        echo "    pub: $KZ_PUB"
        echo "    sub: $KZ_SUB"
        echo "    router: $KZ_ROUTER"
        echo "    tap: $KZ_TAP"
        [[ -t 0 ]] || cat
    } >"$out"
    # a test config runs what it lists: no agents unless it names them
    # (a config without agents: runs the loop's), and only its own recipes
    # when it lists any (unless it says catalog:)
    grep -q '^agents:' "$out" || echo 'agents: []  # kz_config: default' >>"$out"
    if grep -q '^\(tools\|fixers\):' "$out" && ! grep -q '^catalog:' "$out"; then
        echo 'catalog: false  # kz_config: default' >>"$out"
    fi
    export KAIZEN_CONFIG=$out
}

_kz_cert_key() { sed -n "s/^ *$2 = \"\(.*\)\"\$/\1/p" "$1"; }
kz_curve_keys() {
    local keys=${2:-$T/state/keys} cert=$1
    [[ $cert == */* ]] || cert=$keys/$1.key_secret
    echo "$(_kz_cert_key "$keys/broker.key" public-key),$(_kz_cert_key "$cert" public-key),$(_kz_cert_key "$cert" secret-key)"
}
kz_mdp_curve() {
    [[ $KZ_TCP == 1 ]] && echo "--curve $(kz_curve_keys "$1")"
    return 0
}

# kz_branch_gone REPO BRANCH...: none of the branches is left (a plan's
# rollback follows its plan.failed / plan.rejected: wait with kz_wait_for)
kz_branch_gone() { [[ -z $(git -C "$1" branch --list "${@:2}") ]]; }

# kz_config_base FILE: a kz_config file without the defaults it added, for
# a test that builds a longer config on top of it
kz_config_base() {
    grep -v '# kz_config: default$' "$1"
}

kz_db_start() {
    chmod 755 "$T"
    "$KZ_BIN/kaizen" db start >"$T/db-start.log" 2>&1 || fail "kaizen db start failed"
    kz_at_exit "\"$KZ_BIN/kaizen\" db stop"
}

# kz_psql_is SQL EXPECTED: the query's output equals EXPECTED (for
# kz_wait_for, which re-runs it: `kz_wait_for 30 test "$(kz_psql ...)" = x`
# would run the query once only)
kz_psql_is() { [[ "$(kz_psql "$1" 2>/dev/null)" == "$2" ]]; }
kz_psql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$T/state/db/run" -U kaizen -d kaizen -c "$1"; }

kz_status() {
    "$K" call kaizen.status --json --timeout 10s --retries 0 >"$T/status.json" 2>/dev/null || return 1
    "$PY" - "$1" "$T/status.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[2]))["body"]
v = eval(sys.argv[1], {"b": b})
print(v)
sys.exit(0 if v else 1)
PY
}

kz_kill_leftovers() {
    local p
    for p in $(pgrep -f -- "$T/" || true); do kill -KILL "$p" 2>/dev/null; done
}

kz_start() {
    local name=$1; shift
    "$@" >"$T/$name.log" 2>&1 &
    local pid=$!
    _kz_pids+=("$pid")
    printf -v "PID_${name//[^A-Za-z0-9_]/_}" '%s' "$pid"
}

kz_wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

kz_wait_log() {
    local name=$1 pattern=$2 secs=${3:-60}
    kz_wait_for "$secs" grep -q -- "$pattern" "$T/$name.log"
}

# kz_python MODULE...: set PY to a python3 that imports every MODULE
# (Debian's python3-msgpack / python3-zmq); 1 when there is none
kz_python() {
    local p imports
    imports=$(IFS=,; echo "$*")
    PY=
    for p in python3 /usr/bin/python3; do
        if "$p" -c "import $imports" 2>/dev/null; then PY=$p; return 0; fi
    done
    return 1
}

# kz_stats EXPR [ROUTER]: fetch the broker's mmi.stats (with the stock
# mdp_client) and evaluate the python EXPR over the decoded map "d";
# prints the value, succeeds when it is true. Needs PY with msgpack.
kz_stats() {
    "$KZ_TOOLS/mdp_client" "${2:-$KZ_ROUTER}" mmi.stats x --timeout 5000 --retries 0 \
        >"$T/stats.bin" 2>/dev/null || return 1
    "$PY" - "$1" "$T/stats.bin" <<'PY'
import sys, msgpack
d = msgpack.unpackb(open(sys.argv[2], "rb").read()[:-1], raw=False)  # mdp_client adds \n
v = eval(sys.argv[1], {"d": d})
print(v)
sys.exit(0 if v else 1)
PY
}
