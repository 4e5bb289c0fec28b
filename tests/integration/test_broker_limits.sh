#!/usr/bin/env bash
# test_broker_limits.sh - kaizen-broker's limits and their policies, driven
# by raw python3 (pyzmq) peers: names that a flood creates are reclaimed
# once idle (and a READY over the cap gets DISCONNECT); a full group queue
# drops its oldest events; NACK redelivers at the front; an event is
# delivered at most broker.max_deliveries times, then dropped as poison;
# a JOIN with another prefix than the group's is refused.
# shellcheck disable=SC2154,SC2119 # PID_* are set by kz_start (lib.sh)
source "$KZ_ROOT/tests/integration/lib.sh"

CLIENT=$KZ_TOOLS/mdp_client
WORKER=$KZ_TOOLS/mdp_worker
[[ -x $CLIENT && -x $WORKER ]] || fail "build the test tools first"
kz_python msgpack zmq || skip "python3 msgpack and zmq are not installed (python3-msgpack, python3-zmq)"

# the indented lines continue the "bus:" map kz_config writes
kz_config <<'EOF'
  heartbeat: 1s
broker:
  request_ttl: 1s
  group_queue_limit: 3
  max_deliveries: 3
EOF
R=$KZ_ROUTER
kz_start broker "$KZ_BIN/kaizen-broker" -c "$T/kaizen.yaml"
kz_wait_log broker "broker ready" 30 || fail "broker did not become ready"

# The peers: one python file, a scenario per argument. Every wait has a
# deadline; a scenario prints what it saw and exits 1 on a wrong result.
cat >"$T/peer.py" <<'PYEOF'
import sys, time, msgpack, zmq

ctx = zmq.Context()
ROUTER, PUB = sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
DEADLINE = 30.0

def die(msg):
    print("peer: " + msg, flush=True)
    sys.exit(1)

def dealer():
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ROUTER)
    return s

def stats():
    s = dealer()
    s.send_multipart([b"", b"MDPC01", b"mmi.stats", b"x"])
    if not s.poll(5000):
        die("no mmi.stats reply")
    f = s.recv_multipart()
    s.close()
    return msgpack.unpackb(f[3], raw=False)

MEMBERS = []

def wait_stats(what, pred):
    end = time.time() + DEADLINE
    while time.time() < end:
        for m in MEMBERS:
            m.heartbeat()
        d = stats()
        try:
            if pred(d):
                return d
        except KeyError:
            pass
        time.sleep(0.05)
    die("timed out waiting for " + what + ": " + repr({k: d[k] for k in ("groups", "drops")}))

def publisher():
    # an XPUB sees the broker's subscription: nothing is lost to a slow join
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.LINGER, 2000)
    s.connect(PUB)
    if not s.poll(10000):
        die("the broker never subscribed")
    s.recv()
    return s

BODY = msgpack.packb({"v": 1})

class Member:
    def __init__(self, group, prefix, credit=None):
        self.s = dealer()
        self.group, self.prefix, self.credit = group, prefix, credit
        self.beat = time.time()
        self.send(b"\x01", group.encode(), prefix.encode(), *([credit.encode()] if credit else []))
        MEMBERS.append(self)

    def send(self, cmd, *args):
        self.s.send_multipart([b"", b"KZG01", cmd, *args])

    def heartbeat(self):
        if time.time() - self.beat > 0.5:
            self.send(b"\x04")
            self.beat = time.time()

    def recv(self, timeout):
        """Next DELIVER as (id bytes, topic), None on timeout; heartbeats meanwhile"""
        end = time.time() + timeout
        while True:
            for m in MEMBERS:
                m.heartbeat()
            left = end - time.time()
            if left <= 0:
                return None
            if not self.s.poll(int(min(left, 0.5) * 1000) + 1):
                continue
            f = self.s.recv_multipart()
            if len(f) >= 3 and f[1] == b"KZG01" and f[2] == b"\x06":
                die("broker sent DISCONNECT to member of " + self.group)
            if len(f) == 6 and f[1] == b"KZG01" and f[2] == b"\x02":
                return f[3], f[4].decode()

def reclaim():
    # 5000 requests for distinct services nobody serves: 4096 names are
    # taken (the rest dropped), then a READY over the cap gets DISCONNECT
    s = dealer()
    for i in range(5000):
        s.send_multipart([b"", b"MDPC01", b"junk.%d" % i, b"x"])
    s.send_multipart([b"", b"MDPW01", b"\x01", b"fresh.blocked"])
    end = time.time() + DEADLINE
    while time.time() < end:
        if s.poll(1000):
            f = s.recv_multipart()
            if f[1:3] == [b"MDPW01", b"\x05"]:
                print("over the cap: DISCONNECT", flush=True)
                return
    die("no DISCONNECT for a READY over the service cap")

def queuefull():
    m = Member("q", "t.", "1")
    wait_stats("member of q", lambda d: d["groups"]["q"]["members"] == 1)
    pub = publisher()
    for i in range(1, 11):
        pub.send_multipart([b"t.%d" % i, BODY])
    got = []
    first = m.recv(DEADLINE)
    if not first:
        die("no delivery")
    got.append(first[1])
    # credit 1, unacked: t.2..t.10 meet a queue of 3, the 6 oldest go
    wait_stats("6 queue-full drops", lambda d: d["drops"].get("group queue full", 0) == 6
               and d["groups"]["q"]["queued"] == 3)
    m.send(b"\x03", first[0])
    while len(got) < 4:
        d = m.recv(DEADLINE)
        if not d:
            die("deliveries stopped after " + repr(got))
        got.append(d[1])
        m.send(b"\x03", d[0])
    print("received", got, flush=True)
    if got != ["t.1", "t.8", "t.9", "t.10"]:
        die("expected t.1 then the newest three t.8 t.9 t.10")
    # nothing else was or will be delivered: the broker's own counters say
    # so once it has the acks (no waiting for something not to happen)
    d = wait_stats("all acked", lambda d: d["groups"]["q"]["acked"] == 4
                   and d["groups"]["q"]["queued"] == 0 and d["groups"]["q"]["inflight"] == 0)
    extra = m.recv(0.05)  # anything that did arrive (the counters say none will)
    if d["groups"]["q"]["delivered"] != 4 or extra:
        die("more than 4 deliveries: %r, %r" % (d["groups"]["q"], extra))

def nack():
    m = Member("n", "p.")
    wait_stats("member of n", lambda d: d["groups"]["n"]["members"] == 1)
    # another prefix for an existing group is refused, the group unchanged
    Member("n", "other.")
    wait_stats("prefix refusal", lambda d: d["drops"].get("join prefix mismatch", 0) == 1
               and d["groups"]["n"]["members"] == 1)
    pub = publisher()
    pub.send_multipart([b"p.poison", BODY])
    pub.send_multipart([b"p.ok", BODY])
    counts = {"p.poison": 0, "p.ok": 0}
    end = time.time() + DEADLINE
    while time.time() < end:
        d = m.recv(0.2)
        if d:
            counts[d[1]] += 1
            if d[1] == "p.ok" and counts["p.ok"] == 2:
                m.send(b"\x03", d[0])  # handled the second time
            else:
                m.send(b"\x07", d[0])
        s = stats()
        if s["drops"].get("poison message", 0) >= 1 and s["groups"]["n"]["acked"] >= 1:
            break
    # nothing queued or in flight any more, so nothing else will arrive
    s = wait_stats("nothing in flight", lambda d: d["groups"]["n"]["queued"] == 0
                   and d["groups"]["n"]["inflight"] == 0)
    extra = m.recv(0.05)  # anything that did arrive (the counters say none will)
    g = s["groups"]["n"]
    print("deliveries", counts, "extra", extra, "group", g, "drops", s["drops"], flush=True)
    if counts != {"p.poison": 3, "p.ok": 2} or extra:
        die("expected p.poison 3 times (max_deliveries) and p.ok twice")
    if s["drops"].get("poison message") != 1 or g["acked"] != 1 or g["nacked"] != 4 \
            or g["delivered"] != 5 or g["redelivered"] != 3 or g["queued"] or g["inflight"]:
        die("wrong counters")

{"reclaim": reclaim, "queuefull": queuefull, "nack": nack}[sys.argv[1]]()
PYEOF

stats() { kz_stats "$1" "$R"; }

# --- a flood of names is reclaimed once idle (2 x request_ttl)
"$PY" "$T/peer.py" reclaim "$R" >"$T/reclaim.out" 2>&1 || fail "reclaim: $(cat "$T/reclaim.out")"
stats "d['drops'].get('too many names', 0) >= 904" ||
    fail "the names over the cap were not refused: $(stats 'd["drops"]')"
kz_wait_for 60 stats "not any(k.startswith('junk.') for k in d['services'])" ||
    fail "idle services were not reclaimed: $(stats 'len(d["services"])')"
stats "d['drops'].get('no worker', 0) == 4096" ||
    fail "expired requests miscounted: $(stats 'd["drops"]')"
kz_start fresh "$WORKER" "$R" fresh --name fresh
[[ "$("$CLIENT" "$R" fresh hi --timeout 20000 --retries 0)" == "fresh:hi" ]] ||
    fail "a new service does not work after the flood was reclaimed"

# --- a full group queue drops the oldest events
"$PY" "$T/peer.py" queuefull "$R" "$KZ_PUB" >"$T/queuefull.out" 2>&1 ||
    fail "queuefull: $(cat "$T/queuefull.out")"

# --- NACK, poison messages and the prefix rule
"$PY" "$T/peer.py" nack "$R" "$KZ_PUB" >"$T/nack.out" 2>&1 || fail "nack: $(cat "$T/nack.out")"
grep -q "dropped poison message: topic 'p.poison' in group 'n' after 3 deliveries" \
    "$T/broker.log" || fail "the poison message was not logged with its topic"

kill -0 "$PID_broker" || fail "broker died"
kill -TERM "$PID_broker"
wait "$PID_broker"
rc=$?
[[ $rc -eq 0 ]] || fail "broker exited $rc after SIGTERM"
echo "ok"
