/*  test_msg.c - unit tests of the message codec (proto/kz_msg.c)

    Round trips of every core message type, one test per class of
    malformed input (each must give its own code, never a crash), the
    encoder's refusal of invalid bodies, ULIDs and JSON rendering.

    With KZ_MSG_CORPUS=DIR set, the round-trip test also writes one
    encoded message of each type to DIR/<type>.msgpack: that is how the
    fuzzer's seed corpus tests/fuzz/corpus/msg/ was made.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "kz_msg.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static kz_msg_t *s_new(const char *type)
{
    kz_msg_t *msg = kz_msg_new(type);
    assert_non_null(msg);
    assert_int_equal(kz_msg_set_src(msg, "tester@host#42"), 0);
    return msg;
}

static void s_put_strs(kz_msg_t *msg, kz_val_t *map, const char *key, int n, const char *prefix)
{
    kz_val_t *arr = kz_map_put_array(msg, map, key);
    assert_non_null(arr);
    for (int i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s%d", prefix, i);
        assert_int_equal(kz_val_set_str(msg, kz_array_push(msg, arr), buf), 0);
    }
}

static void s_finding(kz_msg_t *msg, kz_val_t *arr, int i)
{
    kz_val_t *f = kz_array_push(msg, arr);
    assert_non_null(f);
    kz_val_set_map(f);
    char fp[40];
    snprintf(fp, sizeof(fp), "%032x", i);
    assert_int_equal(kz_map_put_str(msg, f, "tool", "cppcheck"), 0);
    assert_int_equal(kz_map_put_str(msg, f, "rule", "nullPointer"), 0);
    assert_int_equal(kz_map_put_str(msg, f, "severity", i % 2 ? "high" : "low"), 0);
    assert_int_equal(kz_map_put_str(msg, f, "category", "bug"), 0);
    assert_int_equal(kz_map_put_str(msg, f, "file", "src/a \"quoted\".c"), 0);
    assert_int_equal(kz_map_put_int(msg, f, "line", 10 + i), 0);
    assert_int_equal(kz_map_put_int(msg, f, "col", 3), 0);
    assert_int_equal(kz_map_put_str(msg, f, "message", "possible null pointer dereference: p"), 0);
    assert_int_equal(kz_map_put_str(msg, f, "fingerprint", fp), 0);
    if (i % 3 == 0)
        assert_int_equal(kz_map_put_str(msg, f, "fix", "check p before use"), 0);
}

/* Build a valid message of TYPE with every field of its body filled */
static kz_msg_t *s_build(const char *type)
{
    kz_msg_t *msg = s_new(type);
    kz_val_t *b = kz_msg_body(msg);
    assert_int_equal(kz_msg_set_corr(msg, "scan-01"), 0);
    assert_int_equal(kz_msg_set_target(msg, "kaizen"), 0);

    if (!strcmp(type, "agent.hello")) {
        kz_map_put_str(msg, b, "name", "code-health");
        kz_map_put_str(msg, b, "layer", "monitoring");
        kz_map_put_str(msg, b, "host", "box1");
        kz_map_put_int(msg, b, "pid", 4242);
        kz_map_put_str(msg, b, "version", "0.1.0");
        kz_map_put_int(msg, b, "interval_ms", 60000);
        s_put_strs(msg, b, "services", 2, "exec.svc");
        s_put_strs(msg, b, "groups", 1, "analysis.g");
    } else if (!strcmp(type, "agent.heartbeat")) {
        kz_map_put_str(msg, b, "name", "code-health");
        kz_map_put_str(msg, b, "state", "busy");
        kz_map_put_int(msg, b, "uptime_ms", 123456);
        kz_map_put_int(msg, b, "cycles", 7);
        kz_map_put_int(msg, b, "last_cycle_ms", 250);
        kz_map_put_str(msg, b, "last_result", "ok");
        kz_map_put_int(msg, b, "pid", 4242);
    } else if (!strcmp(type, "agent.bye")) {
        kz_map_put_str(msg, b, "name", "code-health");
        kz_map_put_str(msg, b, "reason", "sigterm");
    } else if (!strcmp(type, "agent.exited")) {
        kz_map_put_str(msg, b, "name", "code-health");
        kz_map_put_int(msg, b, "instance", 1);
        kz_map_put_str(msg, b, "host", "build-1");
        kz_map_put_int(msg, b, "pid", 4242);
        kz_map_put_str(msg, b, "status", "killed by signal 9");
        kz_map_put_int(msg, b, "restarts", 1);
        kz_map_put_int(msg, b, "restart_in_ms", 500);
    } else if (!strcmp(type, "agent.failed")) {
        kz_map_put_str(msg, b, "name", "code-health");
        kz_map_put_int(msg, b, "instance", 0);
        kz_map_put_str(msg, b, "host", "build-1");
        kz_map_put_str(msg, b, "reason", "6 restarts within 60s");
        kz_map_put_int(msg, b, "restarts", 6);
    } else if (!strcmp(type, "agent.log")) {
        kz_map_put_str(msg, b, "level", "warn");
        kz_map_put_str(msg, b, "message", "tool 'mypy' not found");
    } else if (!strcmp(type, "agent.run")) {
        kz_map_put_str(msg, b, "agent", "*");
    } else if (!strcmp(type, "scan.started")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        kz_map_put_str(msg, b, "commit", "0123456789abcdef0123456789abcdef01234567");
        kz_map_put_int(msg, b, "files", 120);
        s_put_strs(msg, b, "tools", 3, "tool");
    } else if (!strcmp(type, "finding.batch")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        kz_map_put_int(msg, b, "seq", 0);
        kz_val_t *arr = kz_map_put_array(msg, b, "findings");
        for (int i = 0; i < 3; i++)
            s_finding(msg, arr, i);
    } else if (!strcmp(type, "metric.batch")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        kz_val_t *arr = kz_map_put_array(msg, b, "metrics");
        kz_val_t *m = kz_array_push(msg, arr);
        kz_val_set_map(m);
        kz_map_put_str(msg, m, "name", "health_score");
        kz_map_put_float(msg, m, "value", 87.25);
        kz_map_put_str(msg, m, "unit", "percent");
        kz_val_t *labels = kz_map_put_map(msg, m, "labels");
        kz_map_put_str(msg, labels, "lang", "c");
        m = kz_array_push(msg, arr);
        kz_val_set_map(m);
        kz_map_put_str(msg, m, "name", "files");
        kz_map_put_int(msg, m, "value", 120);
    } else if (!strcmp(type, "scan.completed")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        kz_map_put_str(msg, b, "status", "partial");
        kz_map_put_int(msg, b, "findings", 3);
        kz_map_put_int(msg, b, "files", 120);
        kz_map_put_int(msg, b, "duration_ms", 5400);
        kz_val_t *tools = kz_map_put_array(msg, b, "tools");
        kz_val_t *t = kz_array_push(msg, tools);
        kz_val_set_map(t);
        kz_map_put_str(msg, t, "name", "cppcheck");
        kz_map_put_str(msg, t, "status", "ok");
        kz_map_put_int(msg, t, "findings", 3);
        kz_map_put_int(msg, t, "duration_ms", 4000);
        t = kz_array_push(msg, tools);
        kz_val_set_map(t);
        kz_map_put_str(msg, t, "name", "mypy");
        kz_map_put_str(msg, t, "status", "missing");
        kz_map_put_int(msg, t, "findings", 0);
        kz_map_put_int(msg, t, "duration_ms", 0);
        kz_map_put_str(msg, t, "error", "not installed");
        kz_map_put_bool(msg, b, "reused", true);
    } else if (!strcmp(type, "analysis.result")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        kz_map_put_str(msg, b, "kind", "quality");
        kz_val_t *s = kz_map_put_map(msg, b, "summary");
        kz_map_put_str(msg, s, "rating", "B");
        kz_map_put_float(msg, s, "density", 1.5);
        kz_val_t *c = kz_map_put_map(msg, s, "by_severity");
        kz_map_put_int(msg, c, "high", 2);
        kz_map_put_bool(msg, s, "regressed", false);
    } else if (!strcmp(type, "plan.proposed") || !strcmp(type, "plan.ready")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "fixer", "clang-format");
        s_put_strs(msg, b, "files", 2, "src/f");
        s_put_strs(msg, b, "findings", 2, "0123456789abcdef");
        kz_map_put_float(msg, b, "impact", 0.8);
        kz_map_put_float(msg, b, "effort", 0.1);
        kz_map_put_float(msg, b, "risk", 0.05);
        kz_map_put_int(msg, b, "rank", 1);
        kz_map_put_str(msg, b, "rationale", "style findings with a known fixer");
    } else if (!strcmp(type, "plan.batch")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        kz_val_t *plans = kz_map_put_array(msg, b, "plans");
        kz_val_t *p = kz_array_push(msg, plans);
        kz_val_set_map(p);
        kz_map_put_str(msg, p, "plan_id", "plan-01");
        kz_map_put_str(msg, p, "fixer", "black");
        s_put_strs(msg, p, "files", 1, "pkg/a.py");
        s_put_strs(msg, p, "findings", 1, "0123456789abcdef");
        kz_map_put_float(msg, p, "impact", 1.0);
        kz_map_put_float(msg, p, "effort", 1.0);
        kz_map_put_float(msg, p, "risk", 0.1);
        kz_map_put_str(msg, p, "base_commit", "0123456789abcdef0123456789abcdef01234567");
        kz_map_put_str(msg, p, "tool", "black");
        s_put_strs(msg, p, "rules", 1, "would-reformat");
        kz_map_put_str(msg, p, "language", "python");
    } else if (!strcmp(type, "plan.ranked")) {
        kz_map_put_str(msg, b, "scan_id", "scan-01");
        s_put_strs(msg, b, "ready", 2, "plan-0");
        kz_val_t *dropped = kz_map_put_array(msg, b, "dropped");
        kz_val_t *d = kz_array_push(msg, dropped);
        kz_val_set_map(d);
        kz_map_put_str(msg, d, "plan_id", "plan-09");
        kz_map_put_str(msg, d, "reason", "duplicate of accepted plan plan-03");
    } else if (!strcmp(type, "plan.state")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "state", "executing");
        kz_map_put_str(msg, b, "reason", "risk 0.1 below require_approval 0.8");
        kz_val_t *d = kz_map_put_map(msg, b, "details");
        kz_map_put_str(msg, d, "service", "exec.refactor");
    } else if (!strcmp(type, "plan.query")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
    } else if (!strcmp(type, "plan.info")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "state", "executing");
        kz_map_put_str(msg, b, "target", "py");
        kz_map_put_str(msg, b, "fixer", "black");
        kz_map_put_str(msg, b, "base_commit", "0123456789abcdef0123456789abcdef01234567");
        kz_map_put_str(msg, b, "branch", "kaizen/plan-plan-01");
    } else if (!strcmp(type, "plan.approved") || !strcmp(type, "plan.rejected")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "by", "alice");
        kz_map_put_str(msg, b, "reason", "looks fine");
        if (!strcmp(type, "plan.rejected"))
            kz_map_put_str(msg, b, "cause", "person");
    } else if (!strcmp(type, "exec.request")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "fixer", "clang-format");
        s_put_strs(msg, b, "files", 2, "src/f");
        kz_map_put_str(msg, b, "base_commit", "0123456789abcdef0123456789abcdef01234567");
        kz_map_put_str(msg, b, "branch", "kaizen/plan-01");
    } else if (!strcmp(type, "exec.result")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "status", "changed");
        kz_map_put_str(msg, b, "commit", "89abcdef0123456789abcdef0123456789abcdef");
        s_put_strs(msg, b, "files", 1, "src/f");
        kz_map_put_str(msg, b, "diffstat", "1 file changed, 3 insertions(+), 3 deletions(-)");
        kz_map_put_str(msg, b, "error", "");
    } else if (!strcmp(type, "validate.request")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "commit", "89abcdef0123456789abcdef0123456789abcdef");
        kz_map_put_str(msg, b, "base_commit", "0123456789abcdef0123456789abcdef01234567");
        s_put_strs(msg, b, "files", 1, "src/f");
        kz_map_put_str(msg, b, "check", "tests");
    } else if (!strcmp(type, "validate.result")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "validator", "test-runner");
        kz_map_put_str(msg, b, "verdict", "reject");
        s_put_strs(msg, b, "reasons", 2, "failed: test_");
        kz_val_t *d = kz_map_put_map(msg, b, "details");
        kz_map_put_int(msg, d, "passed_before", 10);
        kz_map_put_int(msg, d, "passed_after", 8);
        kz_map_put_str(msg, b, "cause", "suite");
    } else if (!strcmp(type, "tests.base")) {
        kz_map_put_str(msg, b, "commit", "0123456789abcdef0123456789abcdef01234567");
        kz_map_put_bool(msg, b, "usable", false);
        kz_map_put_str(msg, b, "reason",
                       "0 tests ran (exit 4): ImportError while loading conftest "
                       "'tests/conftest.py': ModuleNotFoundError: No module named 'x'");
        kz_map_put_str(msg, b, "cause", "suite");
        kz_map_put_int(msg, b, "passed", 0);
        kz_map_put_int(msg, b, "failed", 0);
        kz_map_put_int(msg, b, "errors", 0);
        kz_map_put_int(msg, b, "skipped", 0);
        kz_map_put_str(msg, b, "source", "exit");
        kz_map_put_int(msg, b, "duration_ms", 412);
        kz_map_put_bool(msg, b, "cached", true);
        kz_map_put_str(msg, b, "scan_id", "scan-01");
    } else if (!strcmp(type, "plan.accepted")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "commit", "89abcdef0123456789abcdef0123456789abcdef");
        kz_map_put_str(msg, b, "branch", "kaizen/plan-01");
    } else if (!strcmp(type, "plan.failed")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "state", "executing");
        kz_map_put_str(msg, b, "reason", "timeout after 600 s");
        kz_map_put_str(msg, b, "cause", "timeout");
    } else if (!strcmp(type, "learn.update")) {
        kz_map_put_str(msg, b, "pattern", "clang-format|style|c|kaizen");
        kz_map_put_int(msg, b, "success", 9);
        kz_map_put_int(msg, b, "failure", 1);
        kz_map_put_float(msg, b, "rate", 0.9);
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "outcome", "success");
    } else if (!strcmp(type, "request.cancel")) {
        kz_map_put_str(msg, b, "id", "01HZX0000000000000000000000");
        kz_map_put_str(msg, b, "service", "validate.tests");
        kz_map_put_str(msg, b, "reason", "plan plan-01 was rejected by validate.review");
    } else if (!strcmp(type, "request.started")) {
        kz_map_put_str(msg, b, "id", "01HZX0000000000000000000000");
        kz_map_put_str(msg, b, "service", "validate.tests");
        kz_map_put_str(msg, b, "plan_id", "plan-01");
    } else if (!strcmp(type, "feedback.decision")) {
        kz_map_put_str(msg, b, "plan_id", "plan-01");
        kz_map_put_str(msg, b, "decision", "approve");
        kz_map_put_str(msg, b, "by", "alice");
        kz_map_put_str(msg, b, "reason", "ok");
    } else if (!strcmp(type, "status.request")) {
        kz_map_put_bool(msg, b, "verbose", true);
    } else if (!strcmp(type, "status.reply")) {
        kz_val_t *agents = kz_map_put_array(msg, b, "agents");
        kz_val_t *a = kz_array_push(msg, agents);
        kz_val_set_map(a);
        kz_map_put_str(msg, a, "name", "code-health");
        kz_map_put_str(msg, a, "state", "idle");
        kz_map_put_int(msg, b, "plans_open", 2);
    } else if (!strcmp(type, "error")) {
        kz_map_put_str(msg, b, "code", "bad_request");
        kz_map_put_str(msg, b, "message", "unknown plan 'plan-99'");
    } else if (!strcmp(type, "test.event")) {
        kz_map_put_int(msg, b, "seq", 17);
        kz_map_put_str(msg, b, "pad", "xxxxxxxx");
    } else if (!strcmp(type, "demo.echo")) {
        kz_map_put_str(msg, b, "text", "hello");
        kz_val_set_bin(msg, kz_map_put(msg, b, "blob"), "\x00\x01\x02", 3);
        kz_map_put(msg, b, "nothing");
        kz_map_put_int(msg, b, "neg", -5);
    } else {
        fail_msg("no builder for '%s'", type);
    }
    return msg;
}

static const char *const s_types[] = {
    "agent.hello",   "agent.heartbeat",   "agent.bye",       "agent.log",       "agent.run",
    "scan.started",  "finding.batch",     "metric.batch",    "scan.completed",  "analysis.result",
    "plan.proposed", "plan.ready",        "plan.approved",   "plan.rejected",   "exec.request",
    "exec.result",   "validate.request",  "validate.result", "plan.accepted",   "plan.failed",
    "learn.update",  "feedback.decision", "status.request",  "status.reply",    "error",
    "test.event",    "demo.echo",         "agent.exited",    "agent.failed",    "plan.batch",
    "plan.ranked",   "plan.state",        "request.cancel",  "request.started", "tests.base",
    "plan.query",    "plan.info",
};
#define N_TYPES (sizeof(s_types) / sizeof(s_types[0]))

static bool s_val_equal(const kz_val_t *a, const kz_val_t *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case KZ_VAL_NIL:
        return true;
    case KZ_VAL_BOOL:
        return a->u.b == b->u.b;
    case KZ_VAL_INT:
        return a->u.i == b->u.i;
    case KZ_VAL_UINT:
        return a->u.u == b->u.u;
    case KZ_VAL_FLOAT:
        return memcmp(&a->u.f, &b->u.f, sizeof(double)) == 0;
    case KZ_VAL_STR:
    case KZ_VAL_BIN:
        return a->u.str.len == b->u.str.len &&
               memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0 &&
               (a->type == KZ_VAL_BIN || a->u.str.ptr[a->u.str.len] == '\0');
    case KZ_VAL_ARRAY:
        if (a->u.arr.count != b->u.arr.count)
            return false;
        for (uint32_t i = 0; i < a->u.arr.count; i++)
            if (!s_val_equal(&a->u.arr.items[i], &b->u.arr.items[i]))
                return false;
        return true;
    case KZ_VAL_MAP:
        if (a->u.map.count != b->u.map.count)
            return false;
        for (uint32_t i = 0; i < a->u.map.count; i++)
            if (!s_val_equal(&a->u.map.items[i].key, &b->u.map.items[i].key) ||
                !s_val_equal(&a->u.map.items[i].val, &b->u.map.items[i].val))
                return false;
        return true;
    }
    return false;
}

static void s_write_corpus(const char *type, const uint8_t *buf, size_t len)
{
    const char *dir = getenv("KZ_MSG_CORPUS");
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.msgpack", dir, type);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Encode a valid finding.batch into *BUF_P (caller frees) */
static void s_valid(uint8_t **buf_p, size_t *len_p)
{
    kz_msg_t *msg = s_build("finding.batch");
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, buf_p, len_p, &err), 0);
    kz_msg_destroy(&msg);
}

static void s_expect_fail(const uint8_t *buf, size_t len, int code, const char *text)
{
    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode(buf, len, NULL, &err);
    if (msg) {
        char *json = kz_msg_to_json(msg);
        fail_msg("decoded although it should fail with '%s': %s", kz_msg_strerror(code), json);
    }
    if (err.code != code)
        fail_msg("expected '%s', got '%s' (%s)", kz_msg_strerror(code), kz_msg_strerror(err.code),
                 err.text);
    if (text && !strstr(err.text, text))
        fail_msg("error text '%s' does not contain '%s'", err.text, text);
}

/* A msgpack buffer assembled with msgpack-c's packer, for hand-made input */
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} s_raw_t;

static void s_raw_init(s_raw_t *r)
{
    msgpack_sbuffer_init(&r->sbuf);
    msgpack_packer_init(&r->pk, &r->sbuf, msgpack_sbuffer_write);
}

static void s_raw_str(s_raw_t *r, const char *s)
{
    msgpack_pack_str(&r->pk, strlen(s));
    msgpack_pack_str_body(&r->pk, s, strlen(s));
}

/* Pack an envelope map header of 6 + EXTRA entries and the five fields
   before body; the caller packs EXTRA more key/value pairs, then "body"
   and the body */
static void s_raw_env(s_raw_t *r, const char *type, int version, unsigned extra)
{
    msgpack_pack_map(&r->pk, 6 + extra);
    s_raw_str(r, "v");
    msgpack_pack_int(&r->pk, version);
    s_raw_str(r, "id");
    s_raw_str(r, "01HZX0000000000000000000000");
    s_raw_str(r, "type");
    s_raw_str(r, type);
    s_raw_str(r, "src");
    s_raw_str(r, "raw@host#1");
    s_raw_str(r, "ts");
    msgpack_pack_int64(&r->pk, 1700000000000000);
}

static void s_raw_append(s_raw_t *r, const void *data, size_t len)
{
    msgpack_sbuffer_write(&r->sbuf, data, len);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        assert_true(kz_msg_type_known(s_types[t]));
        kz_msg_t *msg = s_build(s_types[t]);
        uint8_t *buf;
        size_t len;
        kz_msg_err_t err;
        if (kz_msg_encode(msg, &buf, &len, &err) != 0)
            fail_msg("encode %s: %s (%s)", s_types[t], kz_msg_strerror(err.code), err.text);
        s_write_corpus(s_types[t], buf, len);
        kz_msg_t *back = kz_msg_decode(buf, len, NULL, &err);
        if (!back)
            fail_msg("decode %s: %s (%s)", s_types[t], kz_msg_strerror(err.code), err.text);
        assert_int_equal(kz_msg_version(back), 1);
        assert_string_equal(kz_msg_id(back), kz_msg_id(msg));
        assert_int_equal(strlen(kz_msg_id(back)), 26);
        assert_string_equal(kz_msg_type(back), s_types[t]);
        assert_string_equal(kz_msg_src(back), "tester@host#42");
        assert_int_equal(kz_msg_ts(back), kz_msg_ts(msg));
        assert_string_equal(kz_msg_corr(back), "scan-01");
        assert_string_equal(kz_msg_target(back), "kaizen");
        assert_true(s_val_equal(kz_msg_body_const(back), kz_msg_body_const(msg)));
        char *j1 = kz_msg_to_json(msg), *j2 = kz_msg_to_json(back);
        assert_non_null(j1);
        assert_string_equal(j1, j2);
        free(j1);
        free(j2);
        free(buf);
        kz_msg_destroy(&back);
        kz_msg_destroy(&msg);
        assert_null(msg);
        kz_msg_destroy(&msg); /* safe twice */
    }
    assert_false(kz_msg_type_known("no.such.type"));
    assert_false(kz_msg_type_known(""));
    assert_false(kz_msg_type_known(NULL));
}

/* The envelope's deadline survives a round trip, is absent unless set,
   and is what kz_msg_peek reads without decoding the body */
static void test_deadline_and_peek(void **state)
{
    (void)state;
    kz_msg_t *msg = s_build("validate.request");
    assert_int_equal(kz_msg_deadline(msg), 0);
    kz_msg_set_deadline(msg, 1700000000123456);
    uint8_t *buf;
    size_t len;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, NULL), 0);
    kz_msg_t *back = kz_msg_decode(buf, len, NULL, NULL);
    assert_non_null(back);
    assert_int_equal(kz_msg_deadline(back), 1700000000123456);
    char *json = kz_msg_to_json(back);
    assert_non_null(strstr(json, "\"deadline\":1700000000123456,\"body\""));
    free(json);
    kz_msg_peek_t pk;
    assert_int_equal(kz_msg_peek(buf, len, &pk), 0);
    assert_string_equal(pk.id, kz_msg_id(msg));
    assert_string_equal(pk.src, "tester@host#42");
    assert_int_equal(pk.ts, kz_msg_ts(msg));
    assert_int_equal(pk.deadline, 1700000000123456);
    /* every prefix of the envelope is refused, never read past its end */
    for (size_t n = 0; n < len; n++)
        assert_int_equal(kz_msg_peek(buf, n, &pk), -1);
    free(buf);
    kz_msg_destroy(&back);
    /* without a deadline: 0 */
    kz_msg_set_deadline(msg, 0);
    assert_int_equal(kz_msg_encode(msg, &buf, &len, NULL), 0);
    assert_int_equal(kz_msg_peek(buf, len, &pk), 0);
    assert_int_equal(pk.deadline, 0);
    back = kz_msg_decode(buf, len, NULL, NULL);
    assert_int_equal(kz_msg_deadline(back), 0);
    free(buf);
    kz_msg_destroy(&back);
    kz_msg_destroy(&msg);
    /* a stock Majordomo body, a negative deadline, a string deadline */
    assert_int_equal(kz_msg_peek((const uint8_t *)"hello", 5, &pk), -1);
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "agent.run", 1, 1);
    s_raw_str(&r, "deadline");
    msgpack_pack_int64(&r.pk, -5);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    s_raw_str(&r, "agent");
    s_raw_str(&r, "x");
    assert_int_equal(kz_msg_peek((const uint8_t *)r.sbuf.data, r.sbuf.size, &pk), -1);
    s_expect_fail((const uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_VALUE, "deadline");
    msgpack_sbuffer_destroy(&r.sbuf);
    s_raw_init(&r);
    s_raw_env(&r, "agent.run", 1, 1);
    s_raw_str(&r, "deadline");
    s_raw_str(&r, "soon");
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    s_raw_str(&r, "agent");
    s_raw_str(&r, "x");
    assert_int_equal(kz_msg_peek((const uint8_t *)r.sbuf.data, r.sbuf.size, &pk), -1);
    s_expect_fail((const uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_TYPE, "deadline");
    msgpack_sbuffer_destroy(&r.sbuf);
}

static void test_roundtrip_optional_absent(void **state)
{
    (void)state;
    kz_msg_t *msg = s_new("agent.bye");
    kz_map_put_str(msg, kz_msg_body(msg), "name", "x");
    uint8_t *buf;
    size_t len;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, NULL), 0);
    kz_msg_t *back = kz_msg_decode(buf, len, NULL, NULL);
    assert_non_null(back);
    assert_null(kz_msg_corr(back));
    assert_null(kz_msg_target(back));
    assert_null(kz_map_get(kz_msg_body_const(back), "reason"));
    assert_string_equal(kz_map_str(kz_msg_body_const(back), "name"), "x");
    free(buf);
    kz_msg_destroy(&back);
    kz_msg_destroy(&msg);
}

static void test_roundtrip_values(void **state)
{
    (void)state;
    kz_msg_t *msg = s_new("demo.echo");
    kz_val_t *b = kz_msg_body(msg);
    int64_t ints[] = {
        0,         1,  127, 128, 255,  256,  65535,  65536,  4294967295LL,  4294967296LL,
        INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769, -2147483648LL, -2147483649LL,
        INT64_MIN};
    kz_val_t *arr = kz_map_put_array(msg, b, "ints");
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        kz_val_set_int(kz_array_push(msg, arr), ints[i]);
    kz_val_t *u = kz_map_put(msg, b, "big");
    u->type = KZ_VAL_UINT;
    u->u.u = UINT64_MAX;
    kz_map_put_float(msg, b, "pi", 3.141592653589793);
    kz_map_put_float(msg, b, "tiny", 5e-324);
    kz_map_put_bool(msg, b, "yes", true);
    char *big = malloc(70000);
    memset(big, 'a', 69999);
    big[69999] = '\0';
    kz_map_put_str(msg, b, "s255", "");
    kz_val_set_strn(msg, kz_map_put(msg, b, "s300"), big, 300);
    kz_val_set_strn(msg, kz_map_put(msg, b, "s65535"), big, 65535);
    kz_val_set_bin(msg, kz_map_put(msg, b, "b300"), big, 300);
    kz_map_put_str(msg, b, "utf8", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
    kz_val_t *nested = b;
    for (int i = 0; i < 13; i++) /* envelope 1 + body 1 + 13 = depth 15 */
        nested = kz_map_put_map(msg, nested, "n");
    /* a large map exercises the hashed duplicate check and arena growth */
    kz_val_t *wide = kz_map_put_map(msg, b, "wide");
    for (int i = 0; i < 3000; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        kz_map_put_int(msg, wide, key, i);
    }
    free(big);

    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0)
        fail_msg("%s", err.text);
    kz_msg_t *back = kz_msg_decode(buf, len, NULL, &err);
    if (!back)
        fail_msg("%s", err.text);
    assert_true(s_val_equal(kz_msg_body_const(back), kz_msg_body_const(msg)));
    const kz_val_t *bb = kz_msg_body_const(back);
    assert_int_equal(kz_map_get(bb, "big")->type, KZ_VAL_UINT);
    assert_true(kz_map_get(bb, "big")->u.u == UINT64_MAX);
    assert_true(kz_map_float(bb, "pi", 0) == 3.141592653589793);
    assert_true(kz_map_bool(bb, "yes", false));
    assert_int_equal(kz_map_int(kz_map_get(bb, "wide"), "k2999", -1), 2999);
    assert_int_equal(kz_map_int(bb, "missing", -7), -7);
    assert_int_equal(kz_map_int(bb, "pi", -7), -7); /* wrong type: default */
    assert_null(kz_map_str(bb, "pi"));
    assert_true(kz_map_float(bb, "missing", 2.5) == 2.5);
    assert_null(kz_map_get(kz_map_get(bb, "pi"), "x")); /* not a map */
    /* a deep copy into another message's arena equals the original and
       outlives the message it came from */
    kz_msg_t *copy = s_new("demo.echo");
    kz_val_t *slot = kz_map_put(copy, kz_msg_body(copy), "echo");
    assert_int_equal(kz_val_copy(copy, slot, bb), 0);
    free(buf);
    kz_msg_destroy(&back);
    assert_true(s_val_equal(kz_map_get(kz_msg_body_const(copy), "echo"), kz_msg_body_const(msg)));
    kz_msg_destroy(&copy);
    kz_msg_destroy(&msg);
}

static void test_truncated_every_prefix(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    s_valid(&buf, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees over-reads */
        memcpy(copy, buf, n);
        s_expect_fail(copy, n, KZ_EMSG_TRUNCATED, NULL);
        kz_msg_err_t err;
        assert_null(kz_msg_decode_value(copy, n, NULL, &err));
        assert_int_equal(err.code, KZ_EMSG_TRUNCATED);
        free(copy);
    }
    kz_msg_t *ok = kz_msg_decode(buf, len, NULL, NULL);
    assert_non_null(ok);
    kz_msg_destroy(&ok);
    free(buf);
}

static void test_trailing(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    s_valid(&buf, &len);
    uint8_t *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 0xc0;
    s_expect_fail(more, len + 1, KZ_EMSG_TRAILING, "1 bytes after");
    free(more);
    free(buf);
}

static void test_badbyte(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    s_raw_str(&r, "x");
    s_raw_append(&r, "\xc1", 1);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_BADBYTE, "body.x: ");
    msgpack_sbuffer_destroy(&r.sbuf);
    kz_msg_err_t err;
    assert_null(kz_msg_decode_value((const uint8_t *)"\xc1", 1, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_BADBYTE);
    /* 0xc1 in key position is a bad byte too */
    assert_null(kz_msg_decode_value((const uint8_t *)"\x81\xc1\x01", 3, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_BADBYTE);
}

static void test_ext_rejected(void **state)
{
    (void)state;
    static const uint8_t ext[][4] = {{0xd4, 0x01, 0x00}, {0xc7, 0x01, 0x05, 0x00}};
    kz_msg_err_t err;
    assert_null(kz_msg_decode_value(ext[0], 3, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_TYPE);
    assert_null(kz_msg_decode_value(ext[1], 4, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_TYPE);
}

static void test_wrong_type_names_path(void **state)
{
    (void)state;
    /* a finding whose line is a string, in the fourth finding */
    kz_msg_t *msg = s_build("finding.batch");
    kz_val_t *arr = (kz_val_t *)kz_map_get(kz_msg_body(msg), "findings");
    s_finding(msg, arr, 3);
    kz_val_t *line = (kz_val_t *)kz_map_get(&arr->u.arr.items[3], "line");
    kz_val_set_str(msg, line, "12");
    /* the encoder refuses it with the same text */
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_null(buf);
    assert_int_equal(err.code, KZ_EMSG_TYPE);
    assert_string_equal(err.text, "body.findings[3].line: expected integer, got string");
    kz_msg_destroy(&msg);

    /* and the decoder when a peer sends it anyway */
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "agent.log", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 2);
    s_raw_str(&r, "level");
    s_raw_str(&r, "info");
    s_raw_str(&r, "message");
    msgpack_pack_int(&r.pk, 5);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_TYPE,
                  "body.message: expected string, got integer");
    msgpack_sbuffer_destroy(&r.sbuf);

    /* envelope field of the wrong type */
    s_raw_init(&r);
    msgpack_pack_map(&r.pk, 6);
    s_raw_str(&r, "v");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "id");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "type");
    s_raw_str(&r, "demo.echo");
    s_raw_str(&r, "src");
    s_raw_str(&r, "a");
    s_raw_str(&r, "ts");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 0);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_TYPE, "id: expected string");
    msgpack_sbuffer_destroy(&r.sbuf);

    /* body not a map, envelope not a map */
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_array(&r.pk, 0);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_TYPE, "body: expected map");
    msgpack_sbuffer_destroy(&r.sbuf);
    s_expect_fail((const uint8_t *)"\x90", 1, KZ_EMSG_TYPE, "envelope: expected map");
}

static void test_toobig(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    s_valid(&buf, &len);
    kz_msg_limits_t lim = kz_msg_limits_default();
    lim.max_size = len - 1;
    kz_msg_err_t err;
    assert_null(kz_msg_decode(buf, len, &lim, &err));
    assert_int_equal(err.code, KZ_EMSG_TOOBIG);
    lim.max_size = len;
    kz_msg_t *msg = kz_msg_decode(buf, len, &lim, &err);
    assert_non_null(msg);
    kz_msg_destroy(&msg);
    free(buf);

    /* default limit: 1 MiB */
    size_t big = (1u << 20) + 1;
    uint8_t *huge = calloc(1, big);
    s_expect_fail(huge, big, KZ_EMSG_TOOBIG, NULL);
    free(huge);

    /* the encoder refuses a message over 1 MiB: 17 strings of 64 KiB */
    msg = s_new("demo.echo");
    char *s = malloc(65536);
    memset(s, 'x', 65536);
    for (int i = 0; i < 17; i++) {
        char key[8];
        snprintf(key, sizeof(key), "s%d", i);
        kz_val_set_strn(msg, kz_map_put(msg, kz_msg_body(msg), key), s, 65536);
    }
    free(s);
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_TOOBIG);
    kz_msg_destroy(&msg);
}

static void test_long_string(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "test.event", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 2);
    s_raw_str(&r, "seq");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "pad");
    size_t n = 65537;
    msgpack_pack_str(&r.pk, n);
    char *pad = malloc(n);
    memset(pad, 'p', n);
    msgpack_pack_str_body(&r.pk, pad, n);
    free(pad);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_STRLEN, "body.pad: ");
    msgpack_sbuffer_destroy(&r.sbuf);

    /* a str32 header claiming 4 GiB, with no data: STRLEN, not TRUNCATED */
    kz_msg_err_t err;
    assert_null(kz_msg_decode_value((const uint8_t *)"\xdb\xff\xff\xff\xff", 5, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_STRLEN);

    /* schema limit: an id over 64 bytes */
    kz_msg_t *msg = s_new("demo.echo");
    char id[80];
    memset(id, 'i', 79);
    id[79] = '\0';
    kz_msg_set_id(msg, id);
    uint8_t *buf;
    size_t len;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_STRLEN);
    assert_non_null(strstr(err.text, "id: "));
    kz_msg_destroy(&msg);
}

static void test_huge_count(void **state)
{
    (void)state;
    kz_msg_err_t err;
    /* array32 / map32 headers claiming 4G entries and no data */
    assert_null(kz_msg_decode_value((const uint8_t *)"\xdd\xff\xff\xff\xff", 5, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_COUNT);
    assert_null(kz_msg_decode_value((const uint8_t *)"\xdf\xff\xff\xff\xff", 5, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_COUNT);
    /* inside a body */
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    s_raw_str(&r, "a");
    s_raw_append(&r, "\xdd\xff\xff\xff\xff", 5);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_COUNT, "body.a: array of");
    msgpack_sbuffer_destroy(&r.sbuf);
    /* within max_count but more entries than bytes left: truncated */
    assert_null(kz_msg_decode_value((const uint8_t *)"\xdc\x27\x10\xc0", 4, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_TRUNCATED);
}

static void test_depth_bomb(void **state)
{
    (void)state;
    uint8_t bomb[100000];
    memset(bomb, 0x91, sizeof(bomb)); /* [[[[... */
    kz_msg_err_t err;
    assert_null(kz_msg_decode_value(bomb, sizeof(bomb), NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_DEPTH);
    /* exactly max_depth is fine */
    memset(bomb, 0x91, 16);
    bomb[15] = 0x90;
    kz_msg_t *msg = kz_msg_decode_value(bomb, 16, NULL, &err);
    assert_non_null(msg);
    kz_msg_destroy(&msg);
    bomb[15] = 0x91;
    bomb[16] = 0x90;
    assert_null(kz_msg_decode_value(bomb, 17, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_DEPTH);
    /* map nesting inside a body */
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 0);
    s_raw_str(&r, "body");
    for (int i = 0; i < 40; i++) {
        msgpack_pack_map(&r.pk, 1);
        s_raw_str(&r, "d");
    }
    msgpack_pack_nil(&r.pk);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_DEPTH, "body.d.d");
    msgpack_sbuffer_destroy(&r.sbuf);
    /* the encoder refuses too deep a body */
    msg = s_new("demo.echo");
    kz_val_t *v = kz_msg_body(msg);
    for (int i = 0; i < 15; i++)
        v = kz_map_put_map(msg, v, "d");
    uint8_t *buf;
    size_t len;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_DEPTH);
    kz_msg_destroy(&msg);
}

static void test_items_bomb(void **state)
{
    (void)state;
    /* 10000 arrays of 15 nils: 160001 values, about 160 KB */
    size_t len;
    uint8_t *buf;
    len = 3 + 10000 * 16;
    buf = malloc(len);
    buf[0] = 0xdc;
    buf[1] = 0x27;
    buf[2] = 0x10;
    for (size_t i = 0; i < 10000; i++) {
        buf[3 + i * 16] = 0x9f; /* fixarray of 15 */
        memset(buf + 3 + i * 16 + 1, 0xc0, 15);
    }
    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode_value(buf, len, NULL, &err); /* 160001 values: fine */
    assert_non_null(msg);
    kz_msg_destroy(&msg);
    kz_msg_limits_t lim = kz_msg_limits_default();
    lim.max_items = 100000;
    assert_null(kz_msg_decode_value(buf, len, &lim, &err));
    assert_int_equal(err.code, KZ_EMSG_ITEMS);
    free(buf);
    /* with default limits: two such arrays, 320003 values */
    len = 1 + 2 * (3 + 10000 * 16);
    buf = malloc(len);
    buf[0] = 0x92;
    for (int a = 0; a < 2; a++) {
        uint8_t *p = buf + 1 + a * (3 + 10000 * 16);
        p[0] = 0xdc;
        p[1] = 0x27;
        p[2] = 0x10;
        for (size_t i = 0; i < 10000; i++) {
            p[3 + i * 16] = 0x9f;
            memset(p + 3 + i * 16 + 1, 0xc0, 15);
        }
    }
    assert_null(kz_msg_decode_value(buf, len, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_ITEMS);
    free(buf);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    /* "v" twice in the envelope */
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 1);
    s_raw_str(&r, "v");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 0);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_DUPKEY, "v: duplicate key");
    msgpack_sbuffer_destroy(&r.sbuf);
    /* in a large body map (hashed check): key 19 repeats key 7 */
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 20);
    for (int i = 0; i < 20; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i == 19 ? 7 : i);
        s_raw_str(&r, key);
        msgpack_pack_int(&r.pk, i);
    }
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_DUPKEY, "body.k7: duplicate key");
    msgpack_sbuffer_destroy(&r.sbuf);
    /* the encoder refuses a body built with a repeated key */
    kz_msg_t *msg = s_new("demo.echo");
    kz_map_put_int(msg, kz_msg_body(msg), "a", 1);
    kz_map_put_int(msg, kz_msg_body(msg), "a", 2);
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_DUPKEY);
    kz_msg_destroy(&msg);
}

static void test_non_string_key(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    msgpack_pack_int(&r.pk, 7);
    msgpack_pack_int(&r.pk, 7);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_KEY, "body: map key");
    msgpack_sbuffer_destroy(&r.sbuf);
    kz_msg_err_t err;
    assert_null(kz_msg_decode_value((const uint8_t *)"\x81\xc4\x01k\x01", 5, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_KEY);
}

static void test_version(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "demo.echo", 2, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 0);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_VERSION, "v: version 2");
    msgpack_sbuffer_destroy(&r.sbuf);
    /* the version is checked before anything else of the envelope */
    s_raw_init(&r);
    msgpack_pack_map(&r.pk, 2);
    s_raw_str(&r, "v");
    msgpack_pack_int(&r.pk, 3);
    s_raw_str(&r, "type");
    s_raw_str(&r, "whatever.v3");
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_VERSION, NULL);
    msgpack_sbuffer_destroy(&r.sbuf);
}

static void test_unknown_type(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "finding.batches", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 0);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_UNKNOWN, "'finding.batches'");
    msgpack_sbuffer_destroy(&r.sbuf);
    kz_msg_t *msg = s_new("no.such");
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_UNKNOWN);
    kz_msg_destroy(&msg);
}

/* scan.completed's reused is a boolean, a plan's cause one word */
static void test_reused_and_cause(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    kz_msg_t *msg = s_build("scan.completed");
    kz_val_set_str(msg, (kz_val_t *)kz_map_get(kz_msg_body(msg), "reused"), "yes");
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_TYPE);
    assert_string_equal(err.text, "body.reused: expected boolean, got string");
    kz_msg_destroy(&msg);

    static const char *const types[] = {"plan.failed", "plan.rejected"};
    for (size_t i = 0; i < 2; i++) {
        msg = s_build(types[i]);
        kz_val_t *cause = (kz_val_t *)kz_map_get(kz_msg_body(msg), "cause");
        assert_non_null(cause);
        kz_val_set_str(msg, cause, "");
        assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
        assert_int_equal(err.code, KZ_EMSG_VALUE);
        char word[80];
        memset(word, 'w', 65);
        word[65] = '\0';
        kz_val_set_str(msg, cause, word);
        assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
        assert_int_equal(err.code, KZ_EMSG_STRLEN);
        kz_val_set_int(cause, 3);
        assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
        assert_int_equal(err.code, KZ_EMSG_TYPE);
        kz_val_set_str(msg, cause, "nothing_to_do");
        assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), 0);
        free(buf);
        kz_msg_destroy(&msg);
    }
}

static void test_bad_enum(void **state)
{
    (void)state;
    kz_msg_t *msg = s_build("finding.batch");
    kz_val_t *arr = (kz_val_t *)kz_map_get(kz_msg_body(msg), "findings");
    kz_val_set_str(msg, (kz_val_t *)kz_map_get(&arr->u.arr.items[1], "severity"), "urgent");
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_VALUE);
    assert_string_equal(err.text, "body.findings[1].severity: 'urgent' is not an allowed value");
    kz_msg_destroy(&msg);

    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "agent.heartbeat", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 5);
    s_raw_str(&r, "name");
    s_raw_str(&r, "a");
    s_raw_str(&r, "state");
    s_raw_str(&r, "sleeping");
    s_raw_str(&r, "uptime_ms");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "cycles");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "pid");
    msgpack_pack_int(&r.pk, 1);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_VALUE, "body.state: 'sleeping'");
    msgpack_sbuffer_destroy(&r.sbuf);

    /* a negative line number is out of range */
    msg = s_build("finding.batch");
    arr = (kz_val_t *)kz_map_get(kz_msg_body(msg), "findings");
    kz_val_set_int((kz_val_t *)kz_map_get(&arr->u.arr.items[0], "line"), -1);
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_VALUE);
    kz_msg_destroy(&msg);
    /* negative ts */
    msg = s_build("agent.run");
    kz_msg_set_ts(msg, -5);
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_VALUE);
    kz_msg_destroy(&msg);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff",
        "a\x80",
        "\xc0\xaf", /* overlong '/' */
        "\xe0\x80\xaf",
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xe2\x82",         /* cut short */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s_raw_t r;
        s_raw_init(&r);
        s_raw_env(&r, "agent.log", 1, 0);
        s_raw_str(&r, "body");
        msgpack_pack_map(&r.pk, 2);
        s_raw_str(&r, "level");
        s_raw_str(&r, "info");
        s_raw_str(&r, "message");
        s_raw_str(&r, bad[i]);
        s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_UTF8, "body.message: ");
        msgpack_sbuffer_destroy(&r.sbuf);
    }
    /* in a key */
    kz_msg_err_t err;
    assert_null(kz_msg_decode_value((const uint8_t *)"\x81\xa1\xff\x01", 4, NULL, &err));
    assert_int_equal(err.code, KZ_EMSG_UTF8);
    /* valid multi-byte sequences pass */
    kz_msg_t *msg = kz_msg_decode_value((const uint8_t *)"\xa4\xf0\x9f\x98\x80", 5, NULL, &err);
    assert_non_null(msg);
    kz_msg_destroy(&msg);
    /* the encoder refuses a built string that is not utf-8 */
    msg = s_new("agent.log");
    kz_map_put_str(msg, kz_msg_body(msg), "level", "info");
    kz_map_put_str(msg, kz_msg_body(msg), "message", "caf\xe9");
    uint8_t *buf;
    size_t len;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_UTF8);
    kz_msg_destroy(&msg);
}

static void test_missing(void **state)
{
    (void)state;
    /* finding.batch without scan_id */
    kz_msg_t *msg = s_new("finding.batch");
    kz_map_put_int(msg, kz_msg_body(msg), "seq", 0);
    kz_map_put_array(msg, kz_msg_body(msg), "findings");
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_MISSING);
    assert_string_equal(err.text, "body.scan_id: required field is missing");
    kz_msg_destroy(&msg);
    /* no src */
    msg = kz_msg_new("agent.run");
    kz_map_put_str(msg, kz_msg_body(msg), "agent", "*");
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_MISSING);
    assert_string_equal(err.text, "src: required field is missing");
    kz_msg_destroy(&msg);
    /* tests.base: usable is a required boolean; validate.result's cause a word */
    for (int k = 0; k < 3; k++) {
        msg = s_new(k < 2 ? "tests.base" : "validate.result");
        kz_val_t *b = kz_msg_body(msg);
        if (k < 2) {
            kz_map_put_str(msg, b, "commit", "0123456789abcdef");
            if (k == 1)
                kz_map_put_str(msg, b, "usable", "yes");
            static const char *const counts[] = {"passed", "failed", "errors", "skipped",
                                                 "duration_ms"};
            for (size_t i = 0; i < 5; i++)
                kz_map_put_int(msg, b, counts[i], 0);
            kz_map_put_str(msg, b, "source", "exit");
            kz_map_put_bool(msg, b, "cached", false);
        } else {
            kz_map_put_str(msg, b, "plan_id", "plan-01");
            kz_map_put_str(msg, b, "validator", "test-runner");
            kz_map_put_str(msg, b, "verdict", "error");
            kz_map_put_str(msg, b, "cause", "");
        }
        assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
        static const int codes[] = {KZ_EMSG_MISSING, KZ_EMSG_TYPE, KZ_EMSG_VALUE};
        static const char *const texts[] = {"body.usable: required field is missing",
                                            "body.usable: expected boolean, got string",
                                            "body.cause"};
        assert_int_equal(err.code, codes[k]);
        if (!strstr(err.text, texts[k]))
            fail_msg("'%s' does not contain '%s'", err.text, texts[k]);
        kz_msg_destroy(&msg);
    }
    /* decoder: envelope without ts, and a body without a required field */
    s_raw_t r;
    s_raw_init(&r);
    msgpack_pack_map(&r.pk, 5);
    s_raw_str(&r, "v");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "id");
    s_raw_str(&r, "x");
    s_raw_str(&r, "type");
    s_raw_str(&r, "demo.echo");
    s_raw_str(&r, "src");
    s_raw_str(&r, "a");
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 0);
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_MISSING, "ts: required");
    msgpack_sbuffer_destroy(&r.sbuf);
    s_raw_init(&r);
    s_raw_env(&r, "agent.log", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    s_raw_str(&r, "level");
    s_raw_str(&r, "info");
    s_expect_fail((uint8_t *)r.sbuf.data, r.sbuf.size, KZ_EMSG_MISSING, "body.message: required");
    msgpack_sbuffer_destroy(&r.sbuf);
}

static void test_unknown_keys_ignored(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "agent.run", 1, 1);
    s_raw_str(&r, "future");
    msgpack_pack_array(&r.pk, 2);
    msgpack_pack_int(&r.pk, 1);
    msgpack_pack_nil(&r.pk);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 2);
    s_raw_str(&r, "agent");
    s_raw_str(&r, "code-health");
    s_raw_str(&r, "extra");
    msgpack_pack_double(&r.pk, 1.5);
    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode((uint8_t *)r.sbuf.data, r.sbuf.size, NULL, &err);
    if (!msg)
        fail_msg("%s", err.text);
    assert_string_equal(kz_map_str(kz_msg_body_const(msg), "agent"), "code-health");
    assert_true(kz_map_float(kz_msg_body_const(msg), "extra", 0) == 1.5);
    kz_msg_destroy(&msg);
    /* unknown envelope keys count against the limits */
    kz_msg_limits_t lim = kz_msg_limits_default();
    lim.max_items = 16;
    assert_null(kz_msg_decode((uint8_t *)r.sbuf.data, r.sbuf.size, &lim, &err));
    assert_int_equal(err.code, KZ_EMSG_ITEMS);
    msgpack_sbuffer_destroy(&r.sbuf);
}

static void test_wide_envelope(void **state)
{
    (void)state;
    /* more envelope keys than the decoder keeps on its stack: 6 + 20 */
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "agent.run", 1, 20);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "x-%d", i);
        s_raw_str(&r, key);
        msgpack_pack_int(&r.pk, i);
    }
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 1);
    s_raw_str(&r, "agent");
    s_raw_str(&r, "*");
    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode((uint8_t *)r.sbuf.data, r.sbuf.size, NULL, &err);
    if (!msg)
        fail_msg("%s", err.text);
    assert_string_equal(kz_map_str(kz_msg_body_const(msg), "agent"), "*");
    assert_string_equal(kz_msg_src(msg), "raw@host#1");
    kz_msg_destroy(&msg);
    msgpack_sbuffer_destroy(&r.sbuf);
}

static void test_float32_accepted(void **state)
{
    (void)state;
    s_raw_t r;
    s_raw_init(&r);
    s_raw_env(&r, "learn.update", 1, 0);
    s_raw_str(&r, "body");
    msgpack_pack_map(&r.pk, 4);
    s_raw_str(&r, "pattern");
    s_raw_str(&r, "p");
    s_raw_str(&r, "success");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "failure");
    msgpack_pack_int(&r.pk, 1);
    s_raw_str(&r, "rate");
    msgpack_pack_float(&r.pk, 0.5f);
    kz_msg_t *msg = kz_msg_decode((uint8_t *)r.sbuf.data, r.sbuf.size, NULL, NULL);
    assert_non_null(msg);
    assert_true(kz_map_float(kz_msg_body_const(msg), "rate", 0) == 0.5);
    kz_msg_destroy(&msg);
    msgpack_sbuffer_destroy(&r.sbuf);
}

static void test_builder_errors(void **state)
{
    (void)state;
    assert_null(kz_msg_new(NULL));
    kz_msg_t *msg = s_new("demo.echo");
    kz_val_t *b = kz_msg_body(msg);
    kz_val_t *i = kz_map_put(msg, b, "i");
    kz_val_set_int(i, 1);
    assert_null(kz_map_put(msg, i, "x")); /* not a map */
    assert_null(kz_array_push(msg, b));   /* not an array */
    assert_int_equal(kz_map_put_str(msg, i, "x", "y"), -1);
    assert_int_equal(kz_map_put_str(msg, b, "x", NULL), -1);
    assert_null(kz_map_get(b, "x")); /* the failed put left nothing */
    assert_int_equal(kz_msg_set_id(msg, NULL), -1);
    assert_int_equal(kz_msg_set_corr(msg, NULL), 0);
    assert_null(kz_msg_corr(msg));
    kz_msg_destroy(&msg);

    /* an empty item in a list of paths is refused like an empty path */
    msg = s_new("plan.proposed");
    b = kz_msg_body(msg);
    kz_map_put_str(msg, b, "plan_id", "p1");
    kz_map_put_str(msg, b, "fixer", "black");
    kz_val_t *files = kz_map_put_array(msg, b, "files");
    kz_val_set_str(msg, kz_array_push(msg, files), "");
    kz_val_set_str(msg, kz_array_push(msg, kz_map_put_array(msg, b, "findings")), "f1");
    kz_map_put_float(msg, b, "impact", 1);
    kz_map_put_float(msg, b, "effort", 1);
    kz_map_put_float(msg, b, "risk", 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    assert_int_equal(kz_msg_encode(msg, &buf, &len, &err), -1);
    assert_int_equal(err.code, KZ_EMSG_VALUE);
    assert_non_null(strstr(err.text, "body.files[0]"));
    kz_msg_destroy(&msg);

    /* keys may hold NUL bytes: putn and the deep copy keep them whole */
    msg = s_new("demo.echo");
    b = kz_msg_body(msg);
    kz_val_set_int(kz_map_putn(msg, b, "a\0b", 3), 1);
    kz_val_set_int(kz_map_putn(msg, b, "a\0c", 3), 2);
    kz_msg_t *copy = s_new("demo.echo");
    assert_int_equal(kz_val_copy(copy, kz_map_put(copy, kz_msg_body(copy), "echo"), b), 0);
    assert_int_equal(kz_msg_encode(copy, &buf, &len, &err), 0);
    free(buf);
    const kz_val_t *echo = kz_map_get(kz_msg_body_const(copy), "echo");
    assert_int_equal(echo->u.map.count, 2);
    assert_int_equal(echo->u.map.items[1].key.u.str.len, 3);
    assert_memory_equal(echo->u.map.items[1].key.u.str.ptr, "a\0c", 3);
    kz_msg_destroy(&copy);
    kz_msg_destroy(&msg);
}

static void test_limits_default(void **state)
{
    (void)state;
    kz_msg_limits_t lim = kz_msg_limits_default();
    assert_int_equal(lim.max_size, 1048576);
    assert_int_equal(lim.max_str, 65536);
    assert_int_equal(lim.max_count, 10000);
    assert_int_equal(lim.max_depth, 16);
    assert_int_equal(lim.max_items, 200000);
    /* every code has its own name */
    for (int a = KZ_EMSG_TRUNCATED; a <= KZ_EMSG_KEY; a++) {
        assert_string_not_equal(kz_msg_strerror(a), "unknown error");
        for (int b = a + 1; b <= KZ_EMSG_KEY; b++)
            assert_string_not_equal(kz_msg_strerror(a), kz_msg_strerror(b));
    }
    assert_string_equal(kz_msg_strerror(-KZ_EMSG_UTF8), "invalid utf-8");
}

static void test_ulid(void **state)
{
    (void)state;
    static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    char prev[27], cur[27];
    kz_ulid(prev);
    int64_t before = kz_now_us() / 1000;
    for (int i = 0; i < 100000; i++) {
        kz_ulid(cur);
        assert_int_equal(strlen(cur), 26);
        assert_int_equal(strspn(cur, crockford), 26);
        if (strcmp(prev, cur) >= 0)
            fail_msg("ulid not increasing: %s then %s", prev, cur);
        memcpy(prev, cur, 27);
    }
    int64_t after = kz_now_us() / 1000;
    /* the first 10 characters are the millisecond timestamp */
    uint64_t ms = 0;
    for (int i = 0; i < 10; i++)
        ms = ms * 32 + (uint64_t)(strchr(crockford, cur[i]) - crockford);
    assert_true((int64_t)ms >= before - 1);
    assert_true((int64_t)ms <= after + 1000); /* may run ahead when a ms overflows */
    assert_true(cur[0] <= '7');               /* 128 bits: the first digit has 3 */
}

#define ULID_THREADS 4
#define ULID_EACH    20000

static void *s_ulid_thread(void *arg)
{
    char *out = arg;
    for (int i = 0; i < ULID_EACH; i++)
        kz_ulid(out + (size_t)i * 27);
    return NULL;
}

static int s_cmp27(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_ulid_threads(void **state)
{
    (void)state;
    char *ids = malloc((size_t)ULID_THREADS * ULID_EACH * 27);
    pthread_t th[ULID_THREADS];
    for (int t = 0; t < ULID_THREADS; t++)
        assert_int_equal(
            pthread_create(&th[t], NULL, s_ulid_thread, ids + (size_t)t * ULID_EACH * 27), 0);
    for (int t = 0; t < ULID_THREADS; t++)
        pthread_join(th[t], NULL);
    qsort(ids, (size_t)ULID_THREADS * ULID_EACH, 27, s_cmp27);
    for (size_t i = 1; i < (size_t)ULID_THREADS * ULID_EACH; i++)
        assert_true(strcmp(ids + (i - 1) * 27, ids + i * 27) < 0);
    free(ids);
}

static void test_json(void **state)
{
    (void)state;
    kz_msg_t *msg = s_new("demo.echo");
    kz_msg_set_id(msg, "01ID");
    kz_msg_set_ts(msg, 5);
    kz_val_t *b = kz_msg_body(msg);
    kz_map_put_str(msg, b, "q", "a\"b\\c/d\n\r\t\b\f\x01\x1f\x7f");
    kz_map_put_str(msg, b, "u", "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    kz_map_put_str(msg, b, "bad", "x\xffy");
    kz_val_set_strn(msg, kz_map_put(msg, b, "nul"), "a\0b", 3);
    kz_map_put_str(msg, b, "k\"ey", "v");
    kz_map_put_float(msg, b, "f", 0.1);
    kz_map_put_float(msg, b, "whole", 2.0);
    kz_map_put_float(msg, b, "nan", NAN);
    kz_map_put_float(msg, b, "inf", -INFINITY);
    kz_map_put_int(msg, b, "min", INT64_MIN);
    kz_val_t *u = kz_map_put(msg, b, "umax");
    u->type = KZ_VAL_UINT;
    u->u.u = UINT64_MAX;
    kz_val_set_bin(msg, kz_map_put(msg, b, "b0"), "", 0);
    kz_val_set_bin(msg, kz_map_put(msg, b, "b1"), "f", 1);
    kz_val_set_bin(msg, kz_map_put(msg, b, "b2"), "fo", 2);
    kz_val_set_bin(msg, kz_map_put(msg, b, "b3"), "foo", 3);
    kz_val_set_bin(msg, kz_map_put(msg, b, "b4"), "\xff\xfe\x00\x01", 4);
    kz_val_t *arr = kz_map_put_array(msg, b, "arr");
    kz_array_push(msg, arr);
    kz_val_set_bool(kz_array_push(msg, arr), true);
    kz_val_set_bool(kz_array_push(msg, arr), false);
    kz_map_put_map(msg, b, "empty");
    kz_map_put_array(msg, b, "none");

    char *json = kz_val_to_json(b);
    assert_non_null(json);
    assert_string_equal(json, "{\"q\":\"a\\\"b\\\\c/d\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\","
                              "\"u\":\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","
                              "\"bad\":\"x\\ufffdy\","
                              "\"nul\":\"a\\u0000b\","
                              "\"k\\\"ey\":\"v\","
                              "\"f\":0.1,"
                              "\"whole\":2,"
                              "\"nan\":null,"
                              "\"inf\":null,"
                              "\"min\":-9223372036854775808,"
                              "\"umax\":18446744073709551615,"
                              "\"b0\":\"\",\"b1\":\"Zg==\",\"b2\":\"Zm8=\",\"b3\":\"Zm9v\","
                              "\"b4\":\"//4AAQ==\","
                              "\"arr\":[null,true,false],"
                              "\"empty\":{},\"none\":[]}");
    free(json);

    kz_msg_set_corr(msg, "c\"1");
    json = kz_msg_to_json(msg);
    assert_non_null(json);
    assert_non_null(strstr(json, "{\"v\":1,\"id\":\"01ID\",\"type\":\"demo.echo\","
                                 "\"src\":\"tester@host#42\",\"ts\":5,\"corr\":\"c\\\"1\","
                                 "\"body\":{\"q\":"));
    assert_int_equal(json[strlen(json) - 1], '}');
    free(json);
    json = kz_val_to_json(NULL);
    assert_string_equal(json, "null");
    free(json);
    kz_msg_destroy(&msg);

    /* a decoded value on its own */
    kz_msg_t *v = kz_msg_decode_value((const uint8_t *)"\x93\x01\xa1x\xc0", 5, NULL, NULL);
    assert_non_null(v);
    json = kz_val_to_json(kz_msg_body_const(v));
    assert_string_equal(json, "[1,\"x\",null]");
    free(json);
    kz_msg_destroy(&v);
}

static void test_many_findings(void **state)
{
    (void)state;
    /* a batch of 5000 findings: the arena grows over many chunks */
    kz_msg_t *msg = s_new("finding.batch");
    kz_val_t *b = kz_msg_body(msg);
    kz_map_put_str(msg, b, "scan_id", "s");
    kz_map_put_int(msg, b, "seq", 3);
    kz_val_t *arr = kz_map_put_array(msg, b, "findings");
    for (int i = 0; i < 5000; i++)
        s_finding(msg, arr, i);
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0)
        fail_msg("%s", err.text);
    kz_msg_t *back = kz_msg_decode(buf, len, NULL, &err);
    if (!back)
        fail_msg("%s", err.text);
    assert_true(s_val_equal(kz_msg_body_const(back), kz_msg_body_const(msg)));
    const kz_val_t *f = kz_map_get(kz_msg_body_const(back), "findings");
    assert_int_equal(f->u.arr.count, 5000);
    assert_int_equal(kz_map_int(&f->u.arr.items[4999], "line", 0), 5009);
    free(buf);
    kz_msg_destroy(&back);
    kz_msg_destroy(&msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_roundtrip_optional_absent),
        cmocka_unit_test(test_deadline_and_peek),
        cmocka_unit_test(test_roundtrip_values),
        cmocka_unit_test(test_truncated_every_prefix),
        cmocka_unit_test(test_trailing),
        cmocka_unit_test(test_badbyte),
        cmocka_unit_test(test_ext_rejected),
        cmocka_unit_test(test_wrong_type_names_path),
        cmocka_unit_test(test_toobig),
        cmocka_unit_test(test_long_string),
        cmocka_unit_test(test_huge_count),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_items_bomb),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_non_string_key),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_bad_enum),
        cmocka_unit_test(test_reused_and_cause),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_wide_envelope),
        cmocka_unit_test(test_float32_accepted),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_ulid),
        cmocka_unit_test(test_ulid_threads),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_many_findings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
