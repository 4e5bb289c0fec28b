#!/usr/bin/env bash
# test_monitor.sh - `kaizen monitor` against a real broker, over ipc and tcp:
# JSON output decoded and checked field by field, request/reply pairing,
# --topic/--exclude/--path filters, text mode, --count, --stats, SIGTERM,
# and malformed tap frames from a fake tap (needs python3-zmq).
source "$KZ_ROOT/tests/integration/lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
K="$KZ_BIN/kaizen"
[[ -x $K && -x $KZ_BIN/kaizen-broker && -x $KZ_TOOLS/kz_pub && -x $KZ_TOOLS/mdp_client ]] ||
    skip "kaizen, kaizen-broker or the test tools are not built"

cat >"$T/check.py" <<'PY'
import json, re, sys

def load(path):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                sys.exit(f"{path}:{n}: not JSON ({e}): {line[:200]!r}")
            if not isinstance(obj, dict):
                sys.exit(f"{path}:{n}: not an object")
            out.append(obj)
    return out

def real(objs):
    """everything except the warm-up traffic"""
    return [o for o in objs if o["name"] != "warmup" and o.get("raw") != ["warmup"]]

def need(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def check_all(path):
    objs = load(path)
    for o in objs:
        for k in ("ts", "path", "name", "size", "peer", "group", "seq", "redelivery"):
            need(k in o, f"key {k} missing in {o}")
        need(o["path"] in ("event", "group", "ack", "request", "reply"), f"path {o['path']}")
        need(("msg" in o) != ("raw" in o), f"exactly one of msg/raw: {o}")
    objs = real(objs)
    ev = [o for o in objs if o["path"] == "event" and o["name"] == "test.mon.a"]
    need(len(ev) == 3, f"3 test.mon.a events, got {len(ev)}")
    for o in ev:
        m = o["msg"]
        need(m["type"] == "test.event", f"type {m['type']}")
        need(m["src"].startswith("kz_pub"), f"src {m['src']}")
        need(m["v"] == 1 and len(m["id"]) == 26, f"envelope {m}")
        need(o["size"] > 0 and o["ts"] > 0, f"size/ts {o}")
    need(sorted(o["msg"]["body"]["seq"] for o in ev) == [0, 1, 2], "seqs 0,1,2")
    need(sum(o["name"] == "test.mon.skip" for o in objs) == 2, "2 test.mon.skip")
    need(sum(o["name"] == "other.topic" for o in objs) == 1, "1 other.topic")
    req = [o for o in objs if o["path"] == "request" and o["name"] == "demo.echo"]
    rep = [o for o in objs if o["path"] == "reply" and o["name"] == "demo.echo"]
    need(len(req) == 1 and len(rep) == 1, f"one demo.echo request and reply, got {len(req)}/{len(rep)}")
    q, r = req[0], rep[0]
    need(q["msg"]["type"] == "demo.echo" and q["msg"]["body"] == {"hello": "world"}, f"request {q}")
    need(isinstance(q["seq"], int) and q["seq"] == r["seq"], f"seq {q['seq']} vs {r['seq']}")
    need(isinstance(r["rtt_us"], int) and r["rtt_us"] > 0, f"rtt_us {r.get('rtt_us')}")
    need(r["rtt_us"] == r["ts"] - q["ts"], "rtt_us = reply ts - request ts")
    need(r["msg"]["corr"] == q["msg"]["id"], "reply corr = request id")
    need(r["msg"]["body"]["hello"] == "world", "reply body")
    need(isinstance(q["peer"], str) and re.fullmatch(r"[0-9a-f]+", q["peer"]), "request peer hex")
    mmi = [o for o in objs if o["name"] == "mmi.service" and o["path"] == "reply"]
    need(mmi and all(o["raw"] in (["200"], ["404"]) for o in mmi), f"mmi.service replies raw {mmi}")

def check_filtered(path):
    objs = real(load(path))
    names = [o["name"] for o in objs]
    need(all(n.startswith("test.mon") for n in names), f"--topic leaked {names}")
    need(not any(n.startswith("test.mon.skip") for n in names), "--exclude leaked")
    need(names.count("test.mon.a") == 3, f"3 test.mon.a in filtered view: {names}")

def check_paths(path):
    objs = real(load(path))
    need(all(o["path"] in ("request", "reply") for o in objs), "--path leaked")
    need(any(o["path"] == "reply" and o["name"] == "demo.echo" for o in objs), "reply seen")
    need(any(o["path"] == "request" and o["name"] == "demo.echo" for o in objs), "request seen")

def check_text(path):
    lines = [l for l in open(path) if " warmup " not in l and '"warmup"' not in l]
    ts = r"^\d\d:\d\d:\d\d\.\d{6} "
    ev = [l for l in lines if re.match(ts + r"event +test\.mon\.a kz_pub#\d+ \d+B .*seq=", l)]
    need(len(ev) == 3, f"3 text lines for test.mon.a, got {len(ev)}")
    need(any(re.match(ts + r"reply +demo\.echo .* rtt=\d+\.\d\dms .*hello=world", l)
             for l in lines), "text reply line with rtt")
    need(all(re.match(ts + r"\w+ +\S+ ", l) for l in lines), "every text line starts with time path name")
    need(not any("\033[" in l for l in lines), "no colour when not a tty")

def check_count(path, n, prefix):
    objs = load(path)
    need(len(objs) == n, f"--count {n}: got {len(objs)} objects")
    need(all(o["name"].startswith(prefix) for o in objs), "--count with --topic")

def check_stats(path):
    objs = load(path)
    need(len(objs) == 3, f"--stats --count 3: {len(objs)} blocks")
    rows = [r for o in objs for r in o["rows"]]
    need(any(r["name"] == "rate.x" and r["path"] == "event" and r["msgs_per_s"] > 0 and r["bytes_per_s"] > 0
             for r in rows), f"rate.x row with a rate: {rows}")
    need(all(r["name"].startswith("rate.") for r in rows), "--stats honours --topic")

def check_malformed(path, errpath):
    objs = [o for o in load(path) if o["name"] != "probe"]
    names = [o["name"] for o in objs]
    need(names == ["good.one", "bin.reply", EVIL_NAME, "evil.raw", "big.one", "good.two"],
         f"fake tap names {names}")
    need(objs[0]["msg"]["type"] == "test.event" and objs[0]["msg"]["body"]["seq"] == 7, "good.one decoded")
    need(objs[1]["raw"] == [{"base64": "AAEC/w=="}, "two"], f"raw frames {objs[1]['raw']}")
    err = open(errpath).read()
    need(err.count("malformed tap message") == 4, f"4 warnings, stderr: {err}")
    # the JSON writers escape what the text output must not show raw
    raw = open(path, "rb").read()
    need(b"\x1b" not in raw and b"\x07" not in raw, "raw ESC or BEL in --json output")
    evil = objs[2]
    need(evil["peer"] == EVIL_PEER and evil["group"] == EVIL_GROUP, f"evil header {evil}")
    need(evil["msg"]["src"] == EVIL_SRC and evil["msg"]["body"] == {EVIL_KEY: EVIL_VAL},
         f"evil envelope {evil['msg']}")

# a hostile tap: name (raw bytes), peer, group, src and a body key with ESC,
# BEL and C1 controls (U+009B as UTF-8 and as a raw byte in the name)
EVIL_NAME = "evil\x1b[2J\x07\ufffdname"   # as JSON shows the name frame below
EVIL_PEER = "peer\x1b[2J\x07\x9b"
EVIL_GROUP = "grp\x1b[1m\x07\x9b"
EVIL_SRC = "src\x1b]0;t\x07\x9b"
EVIL_KEY = "k\x1b[31m\x07\x9b"
EVIL_VAL = "v\x1b[0m\x9bc"

def check_text_safe(path):
    data = open(path, "rb").read()
    need(b"\x1b" not in data and b"\x07" not in data, f"ESC or BEL in text output: {data!r}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.exit(f"check failed: text output is not UTF-8 ({e}): {data!r}")
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
    need(not bad, f"control characters {bad!r} in text output: {text!r}")
    lines = text.splitlines()
    need(any(" good.one " in l for l in lines) and any(" good.two " in l for l in lines),
         f"good messages shown: {lines}")
    ev = [l for l in lines if " evil?[2J??name " in l]
    need(len(ev) == 1, f"one line for the evil name: {lines}")
    for want in (" src?]0;t?? ", " group=grp?[1m?? ", "[demo.echo] ", "k?[31m??=v?[0m?c"):
        need(want in ev[0], f"{want!r} in {ev[0]!r}")
    raw = [l for l in lines if " evil.raw " in l]
    need(len(raw) == 1 and " peer?[2J?? " in raw[0] and "0x61c29b62" in raw[0],
         f"evil.raw line: {raw}")
    # this monitor runs with bus.max_message_size 4GiB: its tap limit must
    # not wrap around to a few KiB
    need(any(" big.one - 20000B " in l for l in lines), f"big.one shown: {lines}")

mode = sys.argv[1]
if mode == "all": check_all(sys.argv[2])
elif mode == "filtered": check_filtered(sys.argv[2])
elif mode == "paths": check_paths(sys.argv[2])
elif mode == "text": check_text(sys.argv[2])
elif mode == "count": check_count(sys.argv[2], int(sys.argv[3]), sys.argv[4])
elif mode == "stats": check_stats(sys.argv[2])
elif mode == "malformed": check_malformed(sys.argv[2], sys.argv[3])
elif mode == "text_safe": check_text_safe(sys.argv[2])
PY

stop() { # stop NAME: SIGTERM, wait, and expect exit 0
    local pid_var="PID_${1//[^A-Za-z0-9_]/_}" rc
    kill -TERM "${!pid_var}" 2>/dev/null
    wait "${!pid_var}"; rc=$?
    [[ $rc -eq 0 ]] || fail "$1 exited $rc after SIGTERM"
}

scenario() {
    local tr=$1
    KZ_TRANSPORT=$tr kz_config "$T/$tr.yaml" </dev/null
    kz_start "$tr-broker" "$KZ_BIN/kaizen-broker" -c "$T/$tr.yaml"
    kz_wait_log "$tr-broker" "ready" 30 || fail "$tr: broker did not start"
    kz_start "$tr-serve" "$KZ_TOOLS/kz_serve" demo.echo -c "$T/$tr.yaml"
    kz_start "$tr-all" "$K" -c "$T/$tr.yaml" monitor --json
    kz_start "$tr-text" "$K" -c "$T/$tr.yaml" monitor --no-color
    kz_start "$tr-filt" "$K" -c "$T/$tr.yaml" monitor --json --topic test.mon --topic warmup \
        --exclude test.mon.skip
    kz_start "$tr-paths" "$K" -c "$T/$tr.yaml" monitor --json --path request,reply

    # warm up until every monitor's SUB is connected: publish and call
    # until each has shown a warm-up message
    local deadline=$((SECONDS + 60)) f ok
    while :; do
        "$KZ_TOOLS/kz_pub" warmup -c "$T/$tr.yaml" >/dev/null 2>&1
        "$KZ_TOOLS/mdp_client" "$KZ_ROUTER" mmi.service warmup --timeout 2000 --retries 1 \
            $(kz_mdp_curve operator) >/dev/null 2>&1
        ok=1
        for f in all text filt paths; do grep -q warmup "$T/$tr-$f.log" || ok=0; done
        [[ $ok == 1 ]] && break
        ((SECONDS < deadline)) || fail "$tr: monitors did not connect"
    done

    "$KZ_TOOLS/kz_pub" test.mon.a -c "$T/$tr.yaml" --count 3 >/dev/null || fail "$tr: kz_pub"
    "$KZ_TOOLS/kz_pub" test.mon.skip -c "$T/$tr.yaml" --count 2 >/dev/null || fail "$tr: kz_pub"
    "$KZ_TOOLS/kz_pub" other.topic -c "$T/$tr.yaml" --count 1 >/dev/null || fail "$tr: kz_pub"
    "$KZ_TOOLS/kz_call" demo.echo -c "$T/$tr.yaml" -f hello=world >"$T/$tr-call.out" ||
        fail "$tr: kz_call demo.echo"

    kz_wait_for 30 python3 "$T/check.py" all "$T/$tr-all.log" ||
        { python3 "$T/check.py" all "$T/$tr-all.log"; fail "$tr: monitor --json output"; }
    kz_wait_for 30 python3 "$T/check.py" text "$T/$tr-text.log" ||
        { python3 "$T/check.py" text "$T/$tr-text.log"; fail "$tr: monitor text output"; }
    kz_wait_for 30 python3 "$T/check.py" paths "$T/$tr-paths.log" ||
        { python3 "$T/check.py" paths "$T/$tr-paths.log"; fail "$tr: monitor --path"; }
    # the filtered view must show the three events; then nothing else may have leaked
    kz_wait_for 30 python3 "$T/check.py" filtered "$T/$tr-filt.log" ||
        { python3 "$T/check.py" filtered "$T/$tr-filt.log"; fail "$tr: monitor --topic/--exclude"; }

    for f in all text filt paths; do stop "$tr-$f"; done
    python3 "$T/check.py" all "$T/$tr-all.log" || fail "$tr: --json output after stop"
    python3 "$T/check.py" filtered "$T/$tr-filt.log" || fail "$tr: filtered output after stop"

    # --count: a steady stream, exit 0 after exactly N printed messages
    kz_start "$tr-stream" "$KZ_TOOLS/kz_pub" count.x -c "$T/$tr.yaml" --count 0 --rate 50
    kz_start "$tr-noise" "$KZ_TOOLS/kz_pub" noise.x -c "$T/$tr.yaml" --count 0 --rate 50
    timeout 60 "$K" -c "$T/$tr.yaml" monitor --json --count 5 --topic count. >"$T/$tr-count.out" ||
        fail "$tr: monitor --count 5 exited $?"
    python3 "$T/check.py" count "$T/$tr-count.out" 5 count. || fail "$tr: --count output"
    timeout 60 "$K" -c "$T/$tr.yaml" monitor --count 2 --topic count. --no-color >"$T/$tr-count2.out" ||
        fail "$tr: text monitor --count 2 exited $?"
    [[ $(wc -l <"$T/$tr-count2.out") -eq 2 ]] && grep -q ' count\.x ' "$T/$tr-count2.out" ||
        fail "$tr: text --count 2: $(cat "$T/$tr-count2.out")"
    stop "$tr-stream"
    stop "$tr-noise"

    # --stats: per-name rates as JSON blocks, one per second
    kz_start "$tr-rate" "$KZ_TOOLS/kz_pub" rate.x -c "$T/$tr.yaml" --count 0 --rate 100
    kz_start "$tr-rate2" "$KZ_TOOLS/kz_pub" other.rate -c "$T/$tr.yaml" --count 0 --rate 100
    # the first blocks may come before the connection is up (for as long
    # as a loaded machine takes): try again until one shows the traffic
    local got=0
    for _ in $(seq 10); do
        timeout 60 "$K" -c "$T/$tr.yaml" monitor --stats --json --count 3 --topic rate. \
            >"$T/$tr-stats.out" || fail "$tr: monitor --stats exited $?"
        python3 "$T/check.py" stats "$T/$tr-stats.out" && { got=1; break; }
    done
    [[ $got == 1 ]] || fail "$tr: --stats output: $(cat "$T/$tr-stats.out")"
    timeout 60 "$K" -c "$T/$tr.yaml" monitor --stats --count 2 >"$T/$tr-stats.txt" ||
        fail "$tr: text --stats exited $?"
    grep -q '^PATH  *NAME  *MSG/S' "$T/$tr-stats.txt" || fail "$tr: text --stats table"
    stop "$tr-rate"
    stop "$tr-rate2"
    stop "$tr-serve"
    stop "$tr-broker"
}

scenario ipc
scenario tcp

# Malformed frames from a fake tap: warnings on stderr, no crash, the
# good messages around them still shown; hostile names, header fields,
# sender and body keys with ESC, BEL and C1 controls: escaped in --json,
# replaced in the text output (no terminal escape sequence gets through)
PYZMQ=
for py in python3 /usr/bin/python3; do
    "$py" -c 'import zmq' 2>/dev/null && { PYZMQ=$py; break; }
done
[[ -n $PYZMQ ]] || fail "python3-zmq is needed for the malformed-tap check (apt-get install python3-zmq)"
cat >"$T/faketap.py" <<'PY'
import sys, time, zmq
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.bind(sys.argv[1])
def mp(x):  # tiny msgpack encoder: maps, short str, small ints
    if isinstance(x, dict):
        return bytes([0x80 | len(x)]) + b"".join(mp(k) + mp(v) for k, v in x.items())
    if isinstance(x, str):
        b = x.encode()
        assert len(b) < 32
        return bytes([0xa0 | len(b)]) + b
    return bytes([0xcf]) + x.to_bytes(8, "big")
env = mp({"v": 1, "id": "01M8BJNK1ANEGRYDQ8TNZP6W6B", "type": "test.event",
          "src": "fake@h#1", "ts": 1795685010474542, "body": {"seq": 7}})
hdr = mp({"ts": 1795685010474805, "path": "event", "size": len(env)})
probe = [b"event", b"probe", hdr, env]
evil_env = mp({"v": 1, "id": "01M8BJNK1ANEGRYDQ8TNZP6W6C", "type": "demo.echo",
               "src": "src\x1b]0;t\x07\x9b", "ts": 1795685010474542,
               "body": {"k\x1b[31m\x07\x9b": "v\x1b[0m\x9bc"}})
evil_hdr = mp({"ts": 1795685010474805, "path": "event", "size": len(evil_env),
               "peer": "peer\x1b[2J\x07\x9b", "group": "grp\x1b[1m\x07\x9b"})
raw_hdr = mp({"ts": 1795685010474806, "path": "reply", "peer": "peer\x1b[2J\x07\x9b"})
msgs = [
    [b"event", b"good.one", hdr, env],
    [b"event"],                                        # too few frames
    [b"bogus", b"x", hdr],                             # unknown path
    [b"event", b"x", b"\xc1\xc1"],                     # header not msgpack
    [b"event", b"x", b"\x92\x01\x02"],                 # header not a map
    [b"reply", b"bin.reply", mp({"ts": 1, "path": "reply", "seq": 3}), b"\x00\x01\x02\xff", b"two"],
    [b"event", b"evil\x1b[2J\x07\x9bname", evil_hdr, evil_env],  # hostile strings
    [b"reply", b"evil.raw", raw_hdr, "a\x9bb".encode()],        # C1 in a text frame
    [b"event", b"big.one", mp({"ts": 1795685010474807, "path": "event"}), b"x" * 20000],
    [b"event", b"good.two", hdr, env],
]
deadline = time.time() + 60
# until every monitor (output files argv[2:]) shows a probe
while not all("probe" in open(f, errors="replace").read() for f in sys.argv[2:]):
    if time.time() > deadline:
        sys.exit("monitor never connected")
    pub.send_multipart(probe)
    time.sleep(0.05)
for m in msgs:
    pub.send_multipart(m)
# the monitors are connected (they showed a probe): close sends what is
# queued before it returns, however long that takes (the 90 s timeout
# around this script is the bound)
pub.close(linger=-1)
ctx.term()
PY
FAKE="ipc://$T/fake-tap.sock"
# (the ipc config: with the tcp one the monitor would speak CURVE)
"$K" -c "$T/ipc.yaml" monitor --json --endpoint "$FAKE" \
    >"$T/fake.out" 2>"$T/fake.err" &
fakepid=$!
_kz_pids+=("$fakepid")
printf 'bus:\n  max_message_size: 4GiB\n' >"$T/big.yaml"
"$K" -c "$T/big.yaml" monitor --no-color --endpoint "$FAKE" \
    >"$T/fake.txt" 2>"$T/fake-txt.err" &
faketxtpid=$!
_kz_pids+=("$faketxtpid")
timeout 90 "$PYZMQ" "$T/faketap.py" "$FAKE" "$T/fake.out" "$T/fake.txt" || fail "fake tap: $?"
kz_wait_for 30 grep -q good.two "$T/fake.out" || fail "fake tap: good.two not shown"
kz_wait_for 30 grep -q good.two "$T/fake.txt" || fail "fake tap: good.two not shown as text"
kill -TERM "$fakepid" "$faketxtpid"
wait "$fakepid" || fail "monitor on the fake tap exited $? after SIGTERM"
wait "$faketxtpid" || fail "text monitor on the fake tap exited $? after SIGTERM"
python3 "$T/check.py" malformed "$T/fake.out" "$T/fake.err" || fail "fake tap output"
python3 "$T/check.py" text_safe "$T/fake.txt" || fail "fake tap text output: $(cat -v "$T/fake.txt")"
echo ok
