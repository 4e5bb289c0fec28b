#!/usr/bin/env bash
# test_call.sh - `kaizen publish` and `kaizen call` against a real broker and
# kaizen-demo: help and usage errors, JSON bodies (bad JSON with its
# position, non-objects), schema and unknown-type errors, no broker within
# the timeout, an on-demand cycle from `publish agent.run`, --count with
# ordered ids, the demo.echo round trip of every JSON type (--json and
# readable), mmi.* raw calls, and an error reply from a service.
source "$KZ_ROOT/tests/integration/lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
K="$KZ_BIN/kaizen"
[[ -x $K && -x $KZ_BIN/kaizen-broker && -x $KZ_BIN/kaizen-demo && -x $KZ_TOOLS/kz_sub ]] ||
    skip "kaizen, kaizen-broker, kaizen-demo or kz_sub are not built"
unset KAIZEN_CONFIG
cd "$T" || fail "cd $T"

expect() { # expect RC CMD... : run CMD, output in $T/out and $T/err
    local want=$1; shift
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want: $(cat "$T/out" "$T/err")"
}
has_err() { grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"; }

# help and the top-level list
expect 0 "$K" --help
for c in publish call; do grep -q "^  $c " "$T/out" || fail "--help does not list $c"; done
expect 0 "$K" publish --help
for f in TYPE BODY-JSON --corr --target --count --timeout "exit codes"; do
    grep -q -- "$f" "$T/out" || fail "publish --help does not mention $f"
done
expect 0 "$K" call --help
for f in SERVICE BODY-JSON --type --timeout --retries --json mmi.service "exit codes"; do
    grep -q -- "$f" "$T/out" || fail "call --help does not mention $f"
done

# usage errors (2), before any broker is needed
kz_config </dev/null
expect 2 "$K" publish
has_err "missing TYPE"
expect 2 "$K" call
has_err "missing SERVICE"
expect 2 "$K" publish agent.run '{"agent":"demo"}' extra
has_err "unexpected argument 'extra'"
expect 2 "$K" publish agent.run '{"agent": "demo",' # bad JSON: the position is named
has_err "invalid JSON at line 1, column 17"
has_err "see 'kaizen publish --help'"
expect 2 "$K" call demo.echo '{"a":1 "b":2}'
has_err "invalid JSON at line 1, column"
expect 2 "$K" publish agent.run '[1,2]'
has_err "must be a JSON object"
expect 2 "$K" publish agent.run '{"a":1,"a":2}'
has_err "duplicate"
expect 2 "$K" publish agent.run --count 0
expect 2 "$K" publish agent.run --timeout soon
expect 2 "$K" call demo.echo --retries -1
expect 2 "$K" call demo.echo --frob
has_err "unknown option '--frob'"
expect 2 "$K" call mmi.service '{"name":"demo.echo"}'
has_err "JSON string"
expect 2 "$K" call mmi.service '"demo.echo"' --type demo.echo

# unknown type and schema violations: exit 1 with the codec's words
expect 1 "$K" publish no.such.type '{}'
has_err "unknown message type 'no.such.type'"
has_err "see proto/PROTOCOL.md"
expect 1 "$K" publish agent.run '{}'
has_err "body.agent: required field is missing"
expect 1 "$K" publish agent.run '{"agent":42}'
has_err "body.agent"
expect 1 "$K" call demo.echo '{}' --type no.such.type
has_err "unknown message type"
[[ -s $T/out ]] && fail "a refused message wrote to stdout: $(cat "$T/out")"

# no broker: the clear message once the timeout is over (`timeout 60`
# only catches a command that would wait forever: exit 124, not 1)
expect 1 timeout 60 "$K" publish agent.run '{"agent":"demo"}' --timeout 1s
has_err "no broker at '$KZ_PUB' (is kaizen-broker running?)"
[[ -s $T/out ]] && fail "publish without a broker printed an id"
expect 1 timeout 60 "$K" call demo.echo '{}' --timeout 500ms --retries 1
has_err "no reply from 'demo.echo' after 2 attempts"
expect 1 timeout 60 "$K" call mmi.service '"demo.echo"' --timeout 500ms
has_err "no reply from 'mmi.service'"

# a broker, a watcher, and the demo agent that only runs cycles on demand
kz_start broker "$KZ_BIN/kaizen-broker"
kz_wait_log broker "broker ready" || fail "broker did not start"
kz_start watch "$KZ_TOOLS/kz_sub" --json --out "$T/all.out"
touch "$T/all.out"
probe_seen() { "$K" publish test.event '{"seq":0}' >/dev/null 2>&1 && grep -q "^test.event " "$T/all.out"; }
kz_wait_for 30 probe_seen || fail "watcher never connected"
kz_start demo "$KZ_BIN/kaizen-demo" --interval 0
count() { grep -c "^$1 " "$T/all.out"; }
has() { [[ $(count "$1") -ge $2 ]]; }
kz_wait_for 30 has agent.hello 1 || fail "no agent.hello"
echo_served() { [[ $("$K" call mmi.service '"demo.echo"' --timeout 1s 2>/dev/null) == 200 ]]; }
kz_wait_for 30 echo_served || fail "demo.echo never served"
[[ $(count metric.batch) -eq 0 ]] || fail "interval 0 still ran a cycle"

# publish agent.run: the demo runs one cycle and publishes a metric.batch
expect 0 "$K" publish agent.run '{"agent":"demo"}' --corr manual-1 --target repo-x
grep -Eq '^[0-9A-Z]{26}$' "$T/out" || fail "publish printed no id: $(cat "$T/out")"
id=$(cat "$T/out")
kz_wait_for 30 has metric.batch 1 || fail "agent.run from kaizen publish ran no cycle"
kz_wait_log demo "cycle requested by 'kaizen-publish@" || fail "demo did not log who asked"
python3 - "$T/all.out" "$id" <<'PY' || fail "the published agent.run differs: $(grep '^agent.run ' "$T/all.out")"
import json, sys
# (an agent's own probe of its subscription, "NAME@HOST#PID/subscribed", aside)
runs = [json.loads(l.split(" ", 1)[1]) for l in open(sys.argv[1]) if l.startswith("agent.run ")]
runs = [m for m in runs if not m["body"]["agent"].endswith("/subscribed")]
assert len(runs) == 1, runs
m = runs[0]
assert m["id"] == sys.argv[2], m
assert m["type"] == "agent.run" and m["body"] == {"agent": "demo"}, m
assert m["corr"] == "manual-1" and m["target"] == "repo-x", m
assert m["src"].startswith("kaizen-publish@"), m
PY

# --count: N messages, N ids, in publication order
expect 0 "$K" publish test.event '{"seq":7,"pad":"x"}' --count 5
[[ $(wc -l <"$T/out") -eq 5 ]] || fail "--count 5 printed: $(cat "$T/out")"
sort -c "$T/out" || fail "ids are not increasing: $(cat "$T/out")"
[[ $(sort -u "$T/out" | wc -l) -eq 5 ]] || fail "ids repeat: $(cat "$T/out")"
kz_wait_for 30 has test.event 6 || fail "fewer than 5 test.event arrived"

# call demo.echo --json: the reply carries the same body, every JSON type kept
body='{"a":[1,2.5,"x",true,null],"b":{"c":"d"},"big":-9007199254740993,"u":"h\u00e9 \"q\"","e":{},"f":[]}'
expect 0 "$K" call demo.echo "$body" --json
python3 - "$T/out" "$body" <<'PY' || fail "echo --json: $(cat "$T/out")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
r = json.loads(lines[0])
want = json.loads(sys.argv[2])
assert r["type"] == "demo.echo", r
assert r["body"] == want, (r["body"], want)
assert isinstance(r["body"]["a"][1], float) and isinstance(r["body"]["a"][0], int)
assert r["body"]["big"] == -9007199254740993
assert r["corr"] and r["src"].startswith("demo@"), r
PY
# readable: type, src, corr, rtt, then the body as indented JSON
expect 0 "$K" call demo.echo '{"hello":"kaizen","n":[1,2]}'
for k in type: src: corr: rtt: body:; do grep -q "^$k " "$T/out" || fail "readable reply lacks $k: $(cat "$T/out")"; done
grep -q '^type: *demo.echo$' "$T/out" || fail "readable type: $(cat "$T/out")"
grep -q '^  "hello": "kaizen",$' "$T/out" || fail "body not indented: $(cat "$T/out")"
python3 - "$T/out" <<'PY' || fail "readable body is not JSON: $(cat "$T/out")"
import json, sys
text = open(sys.argv[1]).read()
body = json.loads(text[text.index("body:") + 5:])
assert body == {"hello": "kaizen", "n": [1, 2]}, body
PY
kz_wait_log demo "echo for 'kaizen-call@" || fail "demo did not log the echo"

# a handler that fails without replying: the agent runtime answers with an
# error, so neither the client nor the (single) worker is left hanging
expect 1 "$K" call demo.echo '{}' --type status.request --timeout 10s --retries 0
has_err "answered error failed: the agent's handler failed"
expect 0 "$K" call demo.echo '{"after":"failure"}' --timeout 10s --retries 0
grep -q '"after": "failure"' "$T/out" || fail "echo after a failed request: $(cat "$T/out")"

# mmi.*: raw frames, text replies printed as they are, msgpack as JSON
expect 0 "$K" call mmi.service '"demo.echo"'
[[ $(cat "$T/out") == 200 ]] || fail "mmi.service demo.echo: $(cat "$T/out")"
expect 0 "$K" call mmi.service '"no.such.service"'
[[ $(cat "$T/out") == 404 ]] || fail "mmi.service no.such.service: $(cat "$T/out")"
expect 0 "$K" call mmi.service '"demo.echo"' --json
[[ $(cat "$T/out") == '"200"' ]] || fail "mmi.service --json: $(cat "$T/out")"
expect 0 "$K" call mmi.stats --json
python3 - "$T/out" <<'PY' || fail "mmi.stats --json: $(cat "$T/out")"
import json, sys
s = json.loads(open(sys.argv[1]).read())
assert s["topics"]["agent.run"]["msgs"] >= 1, s["topics"]
assert s["services"]["demo.echo"]["requests"] >= 2, s["services"]
PY
expect 0 "$K" call mmi.stats
grep -q '^  "topics": {$' "$T/out" || fail "mmi.stats readable: $(head -5 "$T/out")"

# an error reply: its code and message, exit 1 (and the envelope with --json);
# kz_serve echoes any request envelope, so a request of type error comes back
[[ -x $KZ_TOOLS/kz_serve ]] || fail "kz_serve not built"
kz_start serve "$KZ_TOOLS/kz_serve" test.fail
served() { [[ $("$K" call mmi.service '"test.fail"' --timeout 1s 2>/dev/null) == 200 ]]; }
kz_wait_for 30 served || fail "kz_serve never served test.fail"
expect 1 "$K" call test.fail '{"code":"busy","message":"try again later"}' --type error
has_err "kaizen call: 'test.fail' answered error busy: try again later"
[[ -s $T/out ]] && fail "an error reply wrote to stdout: $(cat "$T/out")"
expect 1 "$K" call test.fail '{"code":"busy","message":"try again later"}' --type error --json
python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); assert r["type"]=="error" and r["body"]["code"]=="busy", r' "$T/out" ||
    fail "error reply --json: $(cat "$T/out")"
expect 1 "$K" call test.fail '{"code":"busy"}' --type error
has_err "body.message: required field is missing"

# a service nobody serves: the broker's answer when the call's deadline
# passes (PROTOCOL.md 1.3), exit 1
expect 1 timeout 60 "$K" call no.such.service '{}' --timeout 300ms --retries 0
has_err "'no.such.service' answered error no_worker: no worker serves 'no.such.service'"

# the demo says bye on SIGTERM; the watcher sees it
kill -TERM "$PID_demo"
kz_wait_for 30 has agent.bye 1 || fail "no agent.bye"
echo ok
