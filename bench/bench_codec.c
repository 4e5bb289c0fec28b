/*  bench_codec.c - envelope encode+decode against raw msgpack-c

    One realistic message (an agent.heartbeat envelope, about 300 bytes)
    is encoded and decoded again and again with kz_msg_encode /
    kz_msg_decode (schema checks, limits, UTF-8 validation, arena), and
    the same map is packed with msgpack-c's packer (msgpack_pack_map ...)
    and unpacked with msgpack_unpack_next, in the same process. Each side
    runs for about 1 s per round in slices of 20 ms that alternate with
    the other side's, so both see the same machine load; of three rounds
    the best rate of each side counts.

    Output (one line):
      bench codec VALUE msg/s baseline VALUE ratio R
    where R = VALUE / baseline. The goal is R >= 0.5.
*/
#include <msgpack.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kz_msg.h"

#define ROUNDS   3
#define ROUND_NS 1000000000LL
#define SLICE_NS 20000000LL
#define BATCH    200

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static kz_msg_t *s_message(void)
{
    kz_msg_t *msg = kz_msg_new("agent.heartbeat");
    if (!msg)
        return NULL;
    kz_msg_set_src(msg, "code-health@build-host-01#123456");
    kz_msg_set_corr(msg, "01HZX3Q9K7V2M8N4P6R0S2T4W6");
    kz_msg_set_target(msg, "kaizen-main-repository");
    kz_val_t *b = kz_msg_body(msg);
    kz_map_put_str(msg, b, "name", "code-health");
    kz_map_put_str(msg, b, "state", "busy");
    kz_map_put_int(msg, b, "uptime_ms", 86400123);
    kz_map_put_int(msg, b, "cycles", 1441);
    kz_map_put_int(msg, b, "last_cycle_ms", 5321);
    kz_map_put_str(msg, b, "last_result", "ok");
    kz_map_put_int(msg, b, "pid", 123456);
    kz_map_put_str(msg, b, "note", "scanning 3 targets: kaizen, libfoo and the web frontend repo");
    return msg;
}

/* Ours: one encode and one decode per message; adds to *N and *NS */
static void s_run_ours(const kz_msg_t *msg, int64_t budget_ns, uint64_t *n_p, int64_t *ns_p)
{
    uint64_t n = 0;
    int64_t start = s_now_ns();
    do {
        for (int i = 0; i < BATCH; i++) {
            uint8_t *buf;
            size_t len;
            kz_msg_err_t err;
            if (kz_msg_encode(msg, &buf, &len, &err) != 0) {
                fprintf(stderr, "bench_codec: encode failed: %s\n", err.text);
                exit(1);
            }
            kz_msg_t *back = kz_msg_decode(buf, len, NULL, &err);
            if (!back) {
                fprintf(stderr, "bench_codec: decode failed: %s\n", err.text);
                exit(1);
            }
            kz_msg_destroy(&back);
            free(buf);
        }
        n += BATCH;
    } while (s_now_ns() - start < budget_ns);
    *n_p += n;
    *ns_p += s_now_ns() - start;
}

static void s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Raw msgpack-c: pack the same map, unpack it into a msgpack_object tree */
static void s_run_raw(const kz_msg_t *msg, int64_t budget_ns, uint64_t *n_p, int64_t *ns_p)
{
    const kz_val_t *body = kz_msg_body_const(msg);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    uint64_t n = 0;
    int64_t start = s_now_ns();
    do {
        for (int i = 0; i < BATCH; i++) {
            msgpack_sbuffer_clear(&sbuf);
            msgpack_pack_map(&pk, 8);
            s_pack_str(&pk, "v");
            msgpack_pack_int(&pk, 1);
            s_pack_str(&pk, "id");
            s_pack_str(&pk, kz_msg_id(msg));
            s_pack_str(&pk, "type");
            s_pack_str(&pk, kz_msg_type(msg));
            s_pack_str(&pk, "src");
            s_pack_str(&pk, kz_msg_src(msg));
            s_pack_str(&pk, "ts");
            msgpack_pack_int64(&pk, kz_msg_ts(msg));
            s_pack_str(&pk, "corr");
            s_pack_str(&pk, kz_msg_corr(msg));
            s_pack_str(&pk, "target");
            s_pack_str(&pk, kz_msg_target(msg));
            s_pack_str(&pk, "body");
            msgpack_pack_map(&pk, body->u.map.count);
            for (uint32_t k = 0; k < body->u.map.count; k++) {
                const kz_kv_t *kv = &body->u.map.items[k];
                msgpack_pack_str(&pk, kv->key.u.str.len);
                msgpack_pack_str_body(&pk, kv->key.u.str.ptr, kv->key.u.str.len);
                if (kv->val.type == KZ_VAL_STR) {
                    msgpack_pack_str(&pk, kv->val.u.str.len);
                    msgpack_pack_str_body(&pk, kv->val.u.str.ptr, kv->val.u.str.len);
                } else {
                    msgpack_pack_int64(&pk, kv->val.u.i);
                }
            }
            size_t off = 0;
            if (msgpack_unpack_next(&result, sbuf.data, sbuf.size, &off) !=
                    MSGPACK_UNPACK_SUCCESS ||
                result.data.type != MSGPACK_OBJECT_MAP || result.data.via.map.size != 8) {
                fprintf(stderr, "bench_codec: raw unpack failed\n");
                exit(1);
            }
        }
        n += BATCH;
    } while (s_now_ns() - start < budget_ns);
    *n_p += n;
    *ns_p += s_now_ns() - start;
    msgpack_unpacked_destroy(&result);
    msgpack_sbuffer_destroy(&sbuf);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (seconds <= 0) {
        fprintf(stderr, "usage: bench_codec [SECONDS_PER_ROUND]\n");
        return 2;
    }
    int64_t budget = (int64_t)(seconds * (double)ROUND_NS);
    kz_msg_t *msg = s_message();
    if (!msg) {
        fprintf(stderr, "bench_codec: out of memory\n");
        return 1;
    }
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0) {
        fprintf(stderr, "bench_codec: encode failed: %s\n", err.text);
        return 1;
    }
    free(buf);
    fprintf(stderr, "bench_codec: message of %zu bytes, %d rounds of %.1f s each side\n", len,
            ROUNDS, seconds);

    uint64_t best_ours = 0, best_raw = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t n_raw = 0, n_ours = 0;
        int64_t ns_raw = 0, ns_ours = 0;
        for (int64_t spent = 0; spent < budget; spent += SLICE_NS) {
            s_run_raw(msg, SLICE_NS, &n_raw, &ns_raw);
            s_run_ours(msg, SLICE_NS, &n_ours, &ns_ours);
        }
        uint64_t raw = (uint64_t)((double)n_raw * 1e9 / (double)ns_raw);
        uint64_t ours = (uint64_t)((double)n_ours * 1e9 / (double)ns_ours);
        fprintf(stderr, "bench_codec: round %d: ours %llu msg/s, raw %llu msg/s\n", r + 1,
                (unsigned long long)ours, (unsigned long long)raw);
        if (raw > best_raw)
            best_raw = raw;
        if (ours > best_ours)
            best_ours = ours;
    }
    kz_msg_destroy(&msg);
    printf("bench codec %llu msg/s baseline %llu ratio %.2f\n", (unsigned long long)best_ours,
           (unsigned long long)best_raw, best_raw ? (double)best_ours / (double)best_raw : 0.0);
    return 0;
}
