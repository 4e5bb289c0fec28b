#!/usr/bin/env python3
"""tests/chaos/check.py - the chaos suite's checkouts, settling and invariants

    check.py baseline --config FILE --out JSON
        record every target's checkout (branch, HEAD, the branch's commit,
        the index, the working tree) before the run
    check.py settle --config FILE --kaizen K --timeout S
        wait (at most S seconds) until kaizen is quiet: the orchestrator
        answers, the database is up, the spool is empty and nothing is
        held, the router runs no plan, the broker's group and service
        queues are empty, no plan is in a non-final state - twice in a row,
        5 s apart. Exit 0 settled, 1 not (what was still pending is printed)
    check.py check --config FILE --dir T --baseline JSON --min-kills N
                   --min-final F --seed S --minutes M
        the invariants (docs/chaos.md); prints the summary and every
        violation. Exit 0 when none, 1 otherwise

The database is the run's embedded cluster (STATE/db/run, user kaizen).
"""
import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys
import time

import yaml

FINAL = {"accepted", "rejected", "failed", "dropped", "awaiting_approval"}
KINDS = ["broker", "orchestrator", "agent", "postmaster"]


def load_config(path):
    c = yaml.safe_load(open(path))
    return c, c["state_dir"]


def psql(state, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h",
                        os.path.join(state, "db", "run"), "-U", "kaizen", "-d", "kaizen", "-c", sql],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("psql: %s" % r.stderr.strip())
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def git(repo, *args):
    r = subprocess.run(["git", "-C", repo] + list(args), capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def checkout_state(tg):
    path, branch = tg["path"], tg.get("branch") or "main"
    tree = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not (root == path and d == ".git"))
        for name in sorted(files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            tree.update(("%s %o\n" % (os.path.relpath(p, path), st.st_mode)).encode())
            if os.path.islink(p):
                tree.update(os.readlink(p).encode())
            else:
                with open(p, "rb") as f:
                    tree.update(f.read())
    return {
        "head_ref": git(path, "symbolic-ref", "-q", "HEAD"),
        "head": git(path, "rev-parse", "HEAD"),
        "branch": git(path, "rev-parse", "refs/heads/" + branch),
        "index": hashlib.sha256((git(path, "ls-files", "-s") or "").encode()).hexdigest(),
        "status": git(path, "status", "--porcelain=v1", "--untracked-files=all", "--ignored"),
        "tree": tree.hexdigest(),
    }


def cmd_baseline(a):
    c, _ = load_config(a.config)
    json.dump({tg["name"]: checkout_state(tg) for tg in c["targets"]}, open(a.out, "w"), indent=1)


def settle_state(a, state):
    """the list of what is not quiet yet (empty: quiet)"""
    pending = []
    r = subprocess.run([a.kaizen, "-c", a.config, "call", "kaizen.status", "--json", "--timeout", "10s",
                        "--retries", "0"], capture_output=True, text=True)
    try:
        b = json.loads(r.stdout)["body"]
        if b.get("database", {}).get("state") != "up":
            pending.append("database %s" % b.get("database", {}).get("state"))
        if b.get("spool", {}).get("state") != "empty":
            pending.append("spool %s (%s pending)" % (b["spool"].get("state"), b["spool"].get("pending")))
        if b.get("held", 0):
            pending.append("recorder holds %s" % b.get("held"))
        ro = b.get("router") or {}
        if ro.get("active", 0):
            pending.append("router: %s plans active %s" % (
                ro.get("active"), [(p.get("plan_id"), p.get("state")) for p in ro.get("plans", [])][:5]))
    except (ValueError, KeyError, TypeError):
        pending.append("the orchestrator does not answer kaizen.status")
    r = subprocess.run([a.kaizen, "-c", a.config, "stats", "--json", "--timeout", "10s"],
                       capture_output=True, text=True)
    try:
        d = json.loads(r.stdout)
        for name, g in (d.get("groups") or {}).items():
            if g.get("queued", 0):
                pending.append("group %s: %s queued (%s members)" % (name, g["queued"], g.get("members")))
        for name, s in (d.get("services") or {}).items():
            if s.get("queued", 0):
                pending.append("service %s: %s queued" % (name, s["queued"]))
    except (ValueError, AttributeError):
        pending.append("the broker does not answer mmi.stats")
    try:
        rows = psql(state, "SELECT plan_id, status FROM improvement_suggestions WHERE plan_id IS NOT NULL")
        busy = [(p, s) for p, s in rows if s not in FINAL]
        if busy:
            pending.append("%d plans not final: %s" % (len(busy), busy[:5]))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        pending.append("database: %s" % e)
    return pending


def cmd_settle(a):
    _, state = load_config(a.config)
    deadline = time.time() + a.timeout
    quiet_once = False
    pending = []
    while time.time() < deadline:
        pending = settle_state(a, state)
        if not pending and quiet_once:
            print("quiet twice in a row")
            return 0
        quiet_once = not pending
        print("%s pending: %s" % (time.strftime("%H:%M:%S"), "; ".join(pending) or "nothing"), flush=True)
        time.sleep(5)
    print("not settled: %s" % "; ".join(pending))
    return 1


def read_tap(path):
    # started: the request.started events (each a worker taking the
    # request: a retried call has the same request id, a new event id);
    # requests: the exec.* request frames the broker routed (attempts)
    events, types, requests, started = set(), {}, collections.Counter(), collections.defaultdict(set)
    plans_seen = collections.defaultdict(set)
    restarts = 0
    for line in open(path, errors="replace"):
        if line.startswith("# monitor start"):
            restarts += 1
            continue
        f = line.rstrip("\n").split("\t")
        if len(f) != 5:
            continue
        kind, name, mid, plan, extra = f
        if kind == "E":
            events.add(mid)
            types[mid] = name
            if name in ("plan.proposed", "plan.ready") and plan != "-":
                plans_seen[plan].add(name)
            if name == "request.started" and extra.startswith("exec.") and plan != "-":
                started[plan].add(mid)
        elif kind == "R" and name.startswith("exec.") and plan != "-":
            requests[plan] += 1
    return events, types, requests, started, plans_seen, max(restarts - 1, 0)


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_time(mid):
    """the creation time (epoch seconds) in a ULID id, None when it is none"""
    try:
        ms = 0
        for ch in mid[:10].upper():
            ms = ms * 32 + CROCKFORD.index(ch)
        return ms / 1000.0
    except ValueError:
        return None


def by_kill(ids, types, kills_times):
    """ids grouped by the kills around their creation: {label: Counter of
    types}. An event created between two kills was lost by one of them
    (usually the next: it waited in a queue the kill took away)"""
    out = collections.defaultdict(collections.Counter)
    for mid in ids:
        t = ulid_time(mid)
        i = sum(1 for at, _ in kills_times if t is not None and at <= t)
        out[s_window(kills_times, i)][types.get(mid, "?")] += 1
    return out


def s_window(kills_times, i):
    after = kills_times[i - 1][1] if i > 0 else "the start"
    before = kills_times[i][1] if i < len(kills_times) else "the end"
    return "between %s and %s" % (after, before)


def read_published(path):
    mode, ids = "publish", []
    if not os.path.exists(path):
        return mode, ids
    for line in open(path):
        if line.startswith("# handed-over:"):
            mode = line.split(":", 1)[1].strip()
        elif line.strip():
            ids.append(line.split()[0])
    return mode, ids


def cmd_check(a):
    c, state = load_config(a.config)
    violations, notes = [], []

    def bad(what):
        violations.append(what)

    # --- kills
    kills = collections.Counter()
    skipped = collections.Counter()
    for line in open(os.path.join(a.dir, "kills")):
        f = line.split()
        if len(f) >= 3:
            (skipped if f[2] == "-" else kills)[f[1]] += 1
    for k in KINDS:
        if kills[k] < a.min_kills:
            bad("killed %d %s processes, fewer than %d" % (kills[k], k, a.min_kills))

    # --- events: every id seen on the tap stored exactly once
    tap, types, requests, started, plans_seen, tap_restarts = read_tap(os.path.join(a.dir, "tap.txt"))
    stored = {r[0] for r in psql(state, "SELECT id FROM events")}
    lost = tap - stored
    lost_by_type = collections.Counter(types[i] for i in lost)
    kills_times = []
    if os.path.exists(os.path.join(a.dir, "kills.times")):
        for line in open(os.path.join(a.dir, "kills.times")):
            f = line.split()
            if len(f) >= 4:
                at = float(f[0])
                kills_times.append((at, "the kill of %s (pid %s) at %s" % (
                    f[3], f[2], time.strftime("%H:%M:%S", time.gmtime(at)))))
    if lost:
        bad("%d of %d events seen on the tap are not in events: %s" % (
            len(lost), len(tap), ", ".join("%s %d" % kv for kv in lost_by_type.most_common())))
        counts = by_kill(lost, types, kills_times)
        for label in [s_window(kills_times, i) for i in range(len(kills_times) + 1)]:
            if counts.get(label):
                notes.append("lost %d events created %s: %s" % (
                    sum(counts[label].values()), label,
                    ", ".join("%s %d" % kv for kv in counts[label].most_common())))
    # the events table's key is its id (PRIMARY KEY): a second row of an id
    # cannot exist; its derived rows must not be doubled either
    dup_checks = {
        "plan_transitions": "SELECT count(*) FROM (SELECT 1 FROM plan_transitions GROUP BY event_id, plan_id, state "
                            "HAVING count(*) > 1) x",
        "executions": "SELECT count(*) FROM (SELECT 1 FROM executions GROUP BY event_id HAVING count(*) > 1) x",
        "validations": "SELECT count(*) FROM (SELECT 1 FROM validations GROUP BY event_id, validator "
                       "HAVING count(*) > 1) x",
        "code_quality_snapshots": "SELECT count(*) FROM (SELECT 1 FROM code_quality_snapshots WHERE event_id IS NOT "
                                  "NULL GROUP BY event_id HAVING count(*) > 1) x",
        "findings (one scan's finding stored from two events)":
            "SELECT count(*) FROM (SELECT 1 FROM findings GROUP BY scan_id, fingerprint, line "
            "HAVING count(DISTINCT event_id) > 1) x",
    }
    duplicated = 0
    for table, sql in dup_checks.items():
        n = int(psql(state, sql)[0][0])
        duplicated += n
        if n:
            bad("%d duplicated rows in %s" % (n, table))
    # what the publisher handed over
    mode, published = read_published(os.path.join(a.dir, "published.txt"))
    pub_set = set(published)
    pub_not_seen = pub_set - tap
    pub_not_stored = pub_set - stored
    if pub_not_stored:
        what = "%d of %d events kz_pub handed over (%s returned) are not in events (%d not seen on the tap)" % (
            len(pub_not_stored), len(pub_set), mode, len(pub_not_seen))
        if mode == "flush":
            bad(what)
        else:
            notes.append(what + " - not a violation until publishers flush (kz_bus_flush)")

    # --- plans
    plans = {r[0]: {"status": r[1], "target": r[2]} for r in psql(
        state, "SELECT plan_id, status, COALESCE(target, '') FROM improvement_suggestions WHERE plan_id IS NOT NULL")}
    by_state = collections.Counter(p["status"] for p in plans.values())
    not_final = sorted((pid, p["status"]) for pid, p in plans.items() if p["status"] not in FINAL)
    if not_final:
        bad("%d plans not final after settling: %s" % (len(not_final), not_final[:10]))
    no_row = sorted(pid for pid in plans_seen if pid not in plans)
    if no_row:
        bad("%d plans seen on the tap (plan.proposed/plan.ready) have no row: %s" % (len(no_row), no_row[:10]))
    final_share = (len(plans) - len(not_final)) / len(plans) if plans else 0.0
    if not plans:
        bad("the workload made no plans")
    elif final_share < a.min_final:
        bad("only %.0f %% of the plans reached a final state (at least %.0f %%)" % (
            100 * final_share, 100 * a.min_final))
    # interrupted plans, and those the router read back at start
    rows = psql(state, "SELECT count(DISTINCT plan_id) FROM plan_transitions WHERE details->>'reason' LIKE "
                       "'interrupted%'")
    interrupted = int(rows[0][0]) if rows else 0

    # --- executions: a plan's exec.* run a second time is recorded. One
    # run without a row is a reply lost with its orchestrator (the plan
    # failed as interrupted and was rolled back): a note
    execs = collections.Counter(r[0] for r in psql(state, "SELECT plan_id FROM executions"))
    unrecorded, unanswered = [], []
    for pid, s in sorted(started.items()):
        row = (pid, len(s), execs.get(pid, 0), requests.get(pid, 0), plans.get(pid, {}).get("status", "no row"))
        if len(s) >= 2 and len(s) > execs.get(pid, 0):
            unrecorded.append(row)
        elif len(s) > execs.get(pid, 0):
            unanswered.append(row)
    if unrecorded:
        bad("%d plans executed again without a record (plan, runs started, executions rows, requests sent, "
            "state): %s" % (len(unrecorded), unrecorded[:10]))
    if unanswered:
        notes.append("%d plans ran their executor once with no executions row (plan, runs started, rows, requests "
                     "sent, state): %s" % (len(unanswered), unanswered[:10]))

    # --- kaizen/improvements holds exactly the accepted plans
    ib = (c.get("policy") or {}).get("integration_branch") or "kaizen/improvements"
    integrated_total = 0
    for tg in c["targets"]:
        path, branch = tg["path"], tg.get("branch") or "main"
        accepted = {pid for pid, p in plans.items() if p["target"] == tg["name"] and p["status"] == "accepted"}
        log = git(path, "log", "--format=%(trailers:key=Kaizen-Plan,valueonly)%x00", branch + ".." + ib)
        if log is None:
            if accepted:
                bad("%s: no %s, yet %d plans accepted" % (tg["name"], ib, len(accepted)))
            continue
        held = [x.strip() for x in log.split("\0") if x.strip()]
        integrated_total += len(held)
        dups = [p for p, n in collections.Counter(held).items() if n > 1]
        if dups:
            bad("%s: %s holds plans twice: %s" % (tg["name"], ib, dups))
        missing, extra = accepted - set(held), set(held) - accepted
        if missing:
            bad("%s: accepted plans missing from %s: %s" % (tg["name"], ib, sorted(missing)))
        if extra:
            bad("%s: %s holds plans that are not accepted: %s" % (
                tg["name"], ib, sorted((p, plans.get(p, {}).get("status", "no row")) for p in extra)))

    # --- the user's checkouts
    base = json.load(open(a.baseline))
    for tg in c["targets"]:
        now = checkout_state(tg)
        diff = [k for k in now if now[k] != base.get(tg["name"], {}).get(k)]
        if diff:
            bad("%s: the user's checkout changed: %s" % (tg["name"], ", ".join(diff)))

    # --- informational
    scans_running = psql(state, "SELECT count(*) FROM scans WHERE status = 'running'")[0][0]
    if scans_running != "0":
        notes.append("%s scans still 'running' in scans (their scan.completed never stored)" % scans_running)

    # --- the workload's run-once results (a timed-out one waited on something that never came)
    runs = collections.Counter()
    pending = []
    for name in sorted(os.listdir(a.dir)):
        if name.startswith("run-once-") and name.endswith(".json"):
            try:
                d = json.load(open(os.path.join(a.dir, name)))
                runs[d.get("result", "?")] += 1
                if d.get("result") != "completed" and d.get("pending"):
                    pending.append("%s: %s" % (name[:-5], "; ".join(d["pending"])[:300]))
            except (ValueError, OSError):
                runs["stopped at the end (no summary)"] += 1
    for p in pending:
        notes.append("run-once did not complete, %s" % p)

    # --- summary
    print("chaos summary (seed %s, %s minutes)" % (a.seed, a.minutes))
    print("  kills: %s%s" % (", ".join("%s %d" % (k, kills[k]) for k in KINDS),
                             ("; skipped (no such process): %s" % dict(skipped)) if skipped else ""))
    print("  events: published %d (handed over: %s), seen on the tap %d, stored %d" % (
        len(pub_set), mode, len(tap), len(stored)))
    print("  lost %d (tap ids not stored), duplicated %d (derived rows), published not stored %d" % (
        len(lost), duplicated, len(pub_not_stored)))
    print("  plans %d: %s; final %.0f %%; interrupted %d" % (
        len(plans), ", ".join("%s %d" % kv for kv in sorted(by_state.items())), 100 * final_share, interrupted))
    print("  executions: %d rows for %d plans; %d exec starts seen; %d commits on %s" % (
        sum(execs.values()), len(execs), sum(len(s) for s in started.values()), integrated_total, ib))
    print("  run-once: %s" % (", ".join("%s %d" % kv for kv in sorted(runs.items())) or "none"))
    print("  tap capture restarted %d times" % tap_restarts)
    for n in notes:
        print("  note: " + n)
    for v in violations:
        print("  VIOLATION: " + v)
    print("chaos: %d violations" % len(violations))
    return 1 if violations else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baseline")
    b.add_argument("--config", required=True)
    b.add_argument("--out", required=True)
    s = sub.add_parser("settle")
    for k in ("--config", "--kaizen"):
        s.add_argument(k, required=True)
    s.add_argument("--timeout", type=int, required=True)
    c = sub.add_parser("check")
    for k in ("--config", "--dir", "--baseline", "--seed", "--minutes"):
        c.add_argument(k, required=True)
    c.add_argument("--min-kills", type=int, default=2)
    c.add_argument("--min-final", type=float, default=0.9)
    a = ap.parse_args()
    return {"baseline": cmd_baseline, "settle": cmd_settle, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
