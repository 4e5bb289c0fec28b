"""plan_record.py - the orchestrator's kaizen.plan service (PROTOCOL.md
4.13a) for tests that call an executor directly, without a router.

    plan_record.py ENDPOINT RECORDS.json

A Majordomo worker of kaizen.plan answering each plan.query with a
plan.info taken from RECORDS.json (re-read for every request), a map
plan_id -> {state, target, fixer, base_commit, branch}: the router's
record as the test sets it. A plan not in it is "unknown", as the router
says of a plan it does not hold. The executor's own checks are what the
tests exercise; the router's answers for real plans are tested with the
real orchestrator (test_exec_own_plan.sh)."""
import json, os, random, socket, sys, time

import msgpack
import zmq

endpoint, records = sys.argv[1:3]
A = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid():
    n = (int(time.time() * 1000) << 80) | random.getrandbits(80)
    return "".join(A[(n >> (5 * i)) & 31] for i in reversed(range(26)))


s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(endpoint)
s.send_multipart([b"", b"MDPW01", b"\x01", b"kaizen.plan"])
print("ready", flush=True)
next_hb = time.time() + 1
while True:
    if s.poll(200):
        f = s.recv_multipart()
        if len(f) >= 3 and f[2] == b"\x05":
            s.send_multipart([b"", b"MDPW01", b"\x01", b"kaizen.plan"])
            continue
        if len(f) < 6 or f[2] != b"\x02":
            continue
        req = msgpack.unpackb(f[5], raw=False)
        pid = req["body"].get("plan_id", "")
        try:
            with open(records) as fh:
                rec = json.load(fh).get(pid)
        except FileNotFoundError:
            rec = None
        body = {"plan_id": pid, "state": "unknown"} if rec is None else dict(rec, plan_id=pid)
        env = {"v": 1, "id": ulid(), "type": "plan.info", "corr": req["id"],
               "src": "plan-record@%s#%d" % (socket.gethostname(), os.getpid()),
               "ts": int(time.time() * 1e6), "body": body}
        s.send_multipart([b"", b"MDPW01", b"\x03", f[3], b"", msgpack.packb(env, use_bin_type=True)])
        print("answered %s: %s" % (pid, body["state"]), flush=True)
    if time.time() >= next_hb:
        s.send_multipart([b"", b"MDPW01", b"\x04"])
        next_hb = time.time() + 1
