#!/usr/bin/env bash
# test_bus_private.sh - the default bus endpoints: ipc:// sockets in
# STATE/bus, which the broker creates 0700. kaizen's own user publishes
# and subscribes there; another user (nobody, via setpriv) cannot list the
# directory and `kaizen publish` as that user fails with a clear error. A
# bus directory open to group/other, or owned by another user, is refused;
# a state_dir too long for a Unix socket path gives a clear error.
# shellcheck disable=SC2154 # PID_* are set by kz_start (lib.sh)
source "$(dirname "$0")/lib.sh"
K=$KZ_BIN/kaizen
[[ -x $K && -x $KZ_BIN/kaizen-broker && -x $KZ_TOOLS/kz_sub ]] || skip "kaizen or the test tools are not built"
command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
[[ $(id -u) -eq 0 ]] || skip "needs root to run a command as nobody"
id nobody >/dev/null 2>&1 || skip "no user nobody"
NOGROUP=$(id -gn nobody)
as_nobody() { setpriv --reuid nobody --regid "$NOGROUP" --clear-groups "$@"; }

# a config without bus endpoints; readable by nobody, as is the state
# directory itself (so only the bus directory's own mode keeps nobody out)
chmod 755 "$T"
mkdir -m 755 "$T/state"
CFG=$T/kaizen.yaml
printf 'state_dir: %s\nagents: []\n' "$T/state" >"$CFG"
chmod 644 "$CFG"
export KAIZEN_CONFIG=$CFG
BUS=$T/state/bus

kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready pub=ipc://$BUS/pub.sock sub=ipc://$BUS/sub.sock router=ipc://$BUS/router.sock tap=ipc://$BUS/tap.sock" 30 ||
    fail "the broker did not bind the default ipc endpoints"
[[ $(stat -c '%a %u' "$BUS") == "700 0" ]] || fail "bus directory: $(stat -c '%a %u' "$BUS"), want 700 0"

# kaizen's own user: a subscriber gets what is published
kz_start sub "$KZ_TOOLS/kz_sub" test.event
got() { grep -q "^seq 1" "$T/sub.log"; }
deadline=$((SECONDS + 60))
until got; do
    ((SECONDS < deadline)) || fail "the subscriber never got the event"
    "$K" publish test.event '{"seq":1}' >/dev/null || fail "kaizen publish exited $?"
    sleep 0.2
done

# another user: cannot list the directory, cannot publish, gets told why
as_nobody ls "$BUS" >/dev/null 2>&1 && fail "nobody can list $BUS"
as_nobody test -r "$CFG" || fail "test setup: nobody cannot read the config"
as_nobody timeout 30 "$K" publish test.event '{"seq":2}' >"$T/nobody.out" 2>&1
rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]] || fail "kaizen publish as nobody: want a failure, got $rc: $(cat "$T/nobody.out")"
grep -q "Permission denied (the bus directory is private" "$T/nobody.out" ||
    fail "kaizen publish as nobody: no clear error: $(cat "$T/nobody.out")"
"$K" stats --json >"$T/stats.json" || fail "kaizen stats exited $?"
grep -q '^seq 2' "$T/sub.log" && fail "nobody's event arrived"

# a bus directory open to others, or owned by another user, is refused
kill -TERM "$PID_broker"
kz_wait_for 30 bash -c "! kill -0 $PID_broker 2>/dev/null" || fail "the broker did not stop"
chmod 755 "$BUS"
"$KZ_BIN/kaizen-broker" >"$T/open.out" 2>&1 && fail "the broker ran with a bus directory of mode 0755"
grep -q "bus directory '$BUS' has mode 0755: group and other must have no access" "$T/open.out" ||
    fail "mode 0755: $(cat "$T/open.out")"
chmod 700 "$BUS"
chown nobody "$BUS"
"$KZ_BIN/kaizen-broker" >"$T/owner.out" 2>&1 && fail "the broker ran with nobody's bus directory"
grep -q "bus directory '$BUS' is owned by uid $(id -u nobody), not by uid 0" "$T/owner.out" ||
    fail "owner: $(cat "$T/owner.out")"
chown 0 "$BUS"

# a state_dir too long for a socket path: a clear error, not a silent bind
LONG=$T/$(printf 'd%.0s' {1..90})
printf 'state_dir: %s\nagents: []\n' "$LONG" >"$T/long.yaml"
"$KZ_BIN/kaizen-broker" -c "$T/long.yaml" >"$T/long.out" 2>&1 && fail "the broker ran with a too long socket path"
grep -q "bytes, longer than the 107 a Unix socket path may have" "$T/long.out" || fail "long path: $(cat "$T/long.out")"
"$K" -c "$T/long.yaml" publish test.event '{"seq":3}' >"$T/long-pub.out" 2>&1 && fail "kaizen publish accepted a too long socket path"
grep -q "longer than the 107" "$T/long-pub.out" || fail "long path, publish: $(cat "$T/long-pub.out")"
# kaizen doctor: the private ipc default is fine; TCP without CURVE fails
"$K" doctor >"$T/doctor-ipc.out" 2>&1
grep -q "ok  *bus security  *ipc:// without CURVE" "$T/doctor-ipc.out" ||
    fail "doctor, ipc: $(grep 'bus security' "$T/doctor-ipc.out")"
# TCP without CURVE does not run: bus.curve.enabled: false with a tcp://
# endpoint is refused by every program (test_bus_tcp.sh: the automatic keys)
printf 'state_dir: %s\nagents: []\nbus:\n  endpoints: {pub: "tcp://127.0.0.1:%s"}\n  curve: {enabled: false}\n' \
    "$T/state" "$(kz_port)" >"$T/tcp.yaml"
"$K" -c "$T/tcp.yaml" doctor >"$T/doctor-tcp.out" 2>&1 && fail "doctor passed with TCP without CURVE"
grep -q "tcp.yaml:5:[0-9]*: bus.curve.enabled: false with a tcp:// endpoint (bus.endpoints.pub: tcp://127.0.0.1:[0-9]*): TCP requires CURVE" "$T/doctor-tcp.out" ||
    fail "doctor, tcp: $(cat "$T/doctor-tcp.out")"
echo ok
