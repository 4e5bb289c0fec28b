#!/usr/bin/env python3
"""tests/chaos/tap.py - the chaos suite's capture of the broker's tap

    tap.py KAIZEN CONFIG OUT

Runs `KAIZEN -c CONFIG monitor --json` and appends one tab-separated
line per message to OUT:

    E  TYPE     ID  PLAN_ID  EXTRA    an event (path event)
    R  SERVICE  ID  PLAN_ID  -        an exec.* / validate.* request

PLAN_ID is the body's plan_id ("-" when none); EXTRA is "SERVICE:ID" of a
request.started, the agent of an agent.run, else "-". When the monitor
exits (it should not: the tap reconnects to a restarted broker) it is
started again, and a "# ..." line says so. SIGTERM stops it and the monitor.
"""
import json
import signal
import subprocess
import sys
import time

kaizen, config, out = sys.argv[1:4]
child = None
stopping = False


def on_term(_sig, _frame):
    global stopping
    stopping = True
    if child and child.poll() is None:
        child.terminate()


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def field(v):
    v = "-" if v is None else str(v)
    return v.replace("\t", " ").replace("\n", " ") or "-"


with open(out, "a", buffering=1) as f:
    starts = 0
    while not stopping:
        starts += 1
        f.write("# monitor start %d at %.3f\n" % (starts, time.time()))
        child = subprocess.Popen([kaizen, "-c", config, "monitor", "--json", "--no-color",
                                  "--path", "event,request"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 errors="replace")
        for line in child.stdout:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            msg = d.get("msg")
            if not isinstance(msg, dict):
                continue
            body = msg.get("body") if isinstance(msg.get("body"), dict) else {}
            path, name = d.get("path"), d.get("name")
            if path == "event":
                extra = None
                if name == "request.started":
                    extra = "%s:%s" % (body.get("service"), body.get("id"))
                elif name == "agent.run":
                    extra = body.get("agent")
                f.write("E\t%s\t%s\t%s\t%s\n" % (field(name), field(msg.get("id")),
                                                 field(body.get("plan_id")), field(extra)))
            elif path == "request" and str(name).startswith(("exec.", "validate.")):
                f.write("R\t%s\t%s\t%s\t-\n" % (field(name), field(msg.get("id")),
                                                field(body.get("plan_id"))))
        rc = child.wait()
        f.write("# monitor exited %s at %.3f\n" % (rc, time.time()))
        if not stopping:
            time.sleep(0.5)
