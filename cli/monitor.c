/*  monitor.c - `kaizen monitor`: a live, decoded view of the broker's tap

    The broker republishes every frame it routes on its tap endpoint as
    [path][name][header][payload frames...] (lib/kz_wire.h). We SUB to it,
    decode the header and, where the payload is a kaizen envelope, the
    envelope, and print one line per message (or one JSON object, or a
    per-second table of rates). Requests are paired with their replies by
    the header's seq so a reply shows the broker-side round trip.

    Nothing on the tap is trusted: a malformed tap message is counted and
    reported on stderr, never fatal.
*/
#include "cli.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_msg.h"
#include "kz_wire.h"

static const char s_usage[] =
    "usage: kaizen [-c FILE] monitor [--topic PREFIX]... [--exclude PREFIX]... [--json]\n"
    "                      [--stats] [--count N] [--path LIST] [--endpoint TAP]\n"
    "                      [--no-color]\n"
    "\n"
    "Print every message the broker routes (its tap), decoded, one line each:\n"
    "local time, path, topic or service, sender, size, and a summary of the\n"
    "body. A reply is paired with its request and shows rtt=.\n"
    "\n"
    "  --topic PREFIX     only names (topics, services) starting with PREFIX;\n"
    "                     repeatable, any may match\n"
    "  --exclude PREFIX   drop names starting with PREFIX; repeatable\n"
    "  --path LIST        only these paths, comma separated, of\n"
    "                     event,group,ack,request,reply (default: all)\n"
    "  --json             one JSON object per line: ts, path, name, size, peer,\n"
    "                     group, seq, redelivery, rtt_us, and msg (the decoded\n"
    "                     envelope) or raw (the frames)\n"
    "  --stats            messages/s and bytes/s per name and path, refreshed\n"
    "                     every second, highest rate first (with --json: one\n"
    "                     JSON object per second)\n"
    "  --count N          exit after N messages (with --stats: N refreshes)\n"
    "  --endpoint TAP     tap endpoint to connect to (default: bus.endpoints.tap)\n"
    "  --no-color         no ANSI colours (also when $NO_COLOR is set or stdout\n"
    "                     is not a terminal)\n"
    "  -h, --help         this help\n"
    "\n"
    "CURVE settings of bus.curve apply when bus.curve.enabled is true.\n"
    "Ctrl-C or SIGTERM stops it with exit code 0.\n"
    "\n"
    "exit codes: 0 stopped or --count reached, 1 cannot connect, 2 usage\n";

/* Paths in the order of lib/kz_wire.h; a bit each for --path */
static const char *const s_paths[] = {KZ_TAP_EVENT, KZ_TAP_GROUP, KZ_TAP_ACK, KZ_TAP_REQUEST,
                                      KZ_TAP_REPLY};
enum { S_EVENT, S_GROUP, S_ACK, S_REQUEST, S_REPLY, S_NPATHS };

#define S_PAIR_SLOTS  8192  /* requests remembered for rtt, direct-mapped by seq */
#define S_STATS_MAX   10000 /* distinct (path, name) rows in --stats */
#define S_SUMMARY_MAX 200
#define S_PREVIEW_MAX 48

static volatile sig_atomic_t s_stop = 0;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

typedef struct {
    uint64_t seq;
    int64_t ts;
    bool used;
} s_pair_t;

typedef struct {
    int path;
    char *name;
    uint64_t win_msgs, win_bytes;
    uint64_t tot_msgs, tot_bytes;
    double msgs_rate, bytes_rate;
} s_row_t;

typedef struct {
    /* options */
    const char **topics;
    size_t ntopics;
    const char **excludes;
    size_t nexcludes;
    unsigned path_mask;
    bool json, stats, color;
    long count;
    const char *endpoint;
    /* state */
    long printed;
    uint64_t malformed;
    s_pair_t *pairs;
    zhashx_t *rows;
    size_t nrows;
    int64_t window_start; /* zclock_mono ms */
    long refreshes;
    bool tty;
} s_mon_t;

/* One tap message, split and decoded */
typedef struct {
    int path;
    char name[KZ_TOPIC_MAX + 1];
    size_t name_len;
    kz_msg_t *header_msg;
    const kz_val_t *header;
    int64_t ts;
    bool has_seq;
    uint64_t seq;
    const char *peer;
    const char *group;
    int64_t size;
    int redelivery; /* -1 absent, 0, 1 */
    int64_t rtt_us; /* -1 when not a paired reply */
    zframe_t *payload[64];
    size_t npayload;
    size_t payload_total; /* all payload frames, even past the 64 kept */
    kz_msg_t *env;        /* decoded envelope, or NULL */
    kz_msg_t *value;      /* payload decoded as one plain msgpack value, or NULL */
    kz_msg_err_t env_err;
} s_tap_t;

static void s_row_destroy(void **item)
{
    s_row_t *row = (s_row_t *)*item;
    if (row) {
        free(row->name);
        free(row);
        *item = NULL;
    }
}

/* Append printf-style to BUF (capacity CAP, used *LEN), truncating */
static void s_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *len += (size_t)n;
    if (*len >= cap)
        *len = cap - 1;
}

/* True for a C1 control (U+0080..U+009F) encoded as UTF-8 (C2 80..C2 9F);
   P holds a valid sequence of N bytes */
static bool s_is_c1(const unsigned char *p, size_t n)
{
    return n == 2 && p[0] == 0xc2 && p[1] < 0xa0;
}

/* Append STR[0..N) to BUF (capacity CAP, used *LEN) made safe for a
   terminal: C0 controls, DEL, C1 controls (raw or as UTF-8) and bytes that
   are not valid UTF-8 each become '?', so input from the network can never
   send an escape sequence. At most MAX characters (0: no limit), "..." when
   cut there. A UTF-8 sequence is never split when BUF fills up. Every
   field taken from the input goes through here in the text output. */
static void s_add_safe(char *buf, size_t cap, size_t *len, const char *str, size_t n, size_t max)
{
    if (cap == 0 || *len + 1 >= cap)
        return;
    const unsigned char *p = (const unsigned char *)(str ? str : "");
    if (!str)
        n = 0;
    size_t i = 0, shown = 0;
    while (i < n && *len + 1 < cap) {
        if (max && shown == max) {
            s_add(buf, cap, len, "...");
            return;
        }
        size_t k = kz_cli_utf8_seq(p + i, n - i);
        if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f)) || s_is_c1(p + i, k)) {
            buf[(*len)++] = '?';
            i += k ? k : 1;
        } else {
            if (*len + k >= cap)
                break;
            memcpy(buf + *len, p + i, k);
            *len += k;
            i += k;
        }
        shown++;
    }
    buf[*len] = '\0';
}

/* s_add_safe of a NUL-terminated string (NULL: nothing) */
static void s_add_safe_str(char *buf, size_t cap, size_t *len, const char *str)
{
    s_add_safe(buf, cap, len, str, str ? strlen(str) : 0, 0);
}

/* Printable preview of DATA: quoted text when it is printable UTF-8,
   else hex of the first bytes */
static void s_preview(const uint8_t *data, size_t size, char *buf, size_t cap, size_t *len)
{
    bool text = true;
    for (size_t i = 0; i < size && text;) {
        if (data[i] < 0x20 || data[i] == 0x7f) {
            text = false;
            break;
        }
        size_t n = kz_cli_utf8_seq(data + i, size - i);
        if (n == 0 || s_is_c1(data + i, n))
            text = false;
        i += n ? n : 1;
    }
    if (text) {
        s_add(buf, cap, len, "\"");
        s_add_safe(buf, cap, len, (const char *)data, size, S_PREVIEW_MAX);
        s_add(buf, cap, len, "\"");
    } else {
        s_add(buf, cap, len, "0x");
        size_t i;
        for (i = 0; i < size && i < 16; i++)
            s_add(buf, cap, len, "%02x", data[i]);
        if (i < size)
            s_add(buf, cap, len, "...");
    }
}

/* A short rendering of one value for key=value summaries */
static void s_val_short(const kz_val_t *v, char *buf, size_t cap, size_t *len)
{
    switch (v->type) {
    case KZ_VAL_NIL:
        s_add(buf, cap, len, "null");
        break;
    case KZ_VAL_BOOL:
        s_add(buf, cap, len, "%s", v->u.b ? "true" : "false");
        break;
    case KZ_VAL_INT:
        s_add(buf, cap, len, "%lld", (long long)v->u.i);
        break;
    case KZ_VAL_UINT:
        s_add(buf, cap, len, "%llu", (unsigned long long)v->u.u);
        break;
    case KZ_VAL_FLOAT:
        s_add(buf, cap, len, "%g", v->u.f);
        break;
    case KZ_VAL_STR:
        s_add_safe(buf, cap, len, v->u.str.ptr, v->u.str.len, 40);
        break;
    case KZ_VAL_BIN:
        s_add(buf, cap, len, "<%u bytes>", v->u.str.len);
        break;
    case KZ_VAL_ARRAY:
        s_add(buf, cap, len, "[%u]", v->u.arr.count);
        break;
    case KZ_VAL_MAP:
        s_add(buf, cap, len, "{%u}", v->u.map.count);
        break;
    }
}

/* The first few key=value pairs of MAP, skipping SKIP */
static void s_pairs(const kz_val_t *map, const char *skip, int max, char *buf, size_t cap,
                    size_t *len)
{
    if (!map || map->type != KZ_VAL_MAP) {
        if (map)
            s_val_short(map, buf, cap, len);
        return;
    }
    int shown = 0;
    for (uint32_t i = 0; i < map->u.map.count; i++) {
        const kz_kv_t *kv = &map->u.map.items[i];
        if (skip && strcmp(kv->key.u.str.ptr, skip) == 0)
            continue;
        if (shown == max) {
            s_add(buf, cap, len, " ...");
            break;
        }
        bool sep = *len > 0 && buf[*len - 1] != ' ';
        if (sep)
            s_add(buf, cap, len, " ");
        s_add_safe(buf, cap, len, kv->key.u.str.ptr, kv->key.u.str.len, 0);
        s_add(buf, cap, len, "=");
        s_val_short(&kv->val, buf, cap, len);
        shown++;
    }
}

/* Summary of a decoded envelope's body, by type */
static void s_summarize_env(const kz_msg_t *env, const char *name, char *buf, size_t cap,
                            size_t *len)
{
    const char *type = kz_msg_type(env);
    const kz_val_t *body = kz_msg_body_const(env);
    if (type && strcmp(type, name) != 0) {
        s_add(buf, cap, len, "[");
        s_add_safe_str(buf, cap, len, type);
        s_add(buf, cap, len, "] ");
    }
    if (type && strcmp(type, "finding.batch") == 0) {
        const kz_val_t *f = kz_map_get(body, "findings");
        if (f && f->type == KZ_VAL_ARRAY) {
            static const char *const sev[] = {"critical", "high", "medium", "low", "info"};
            uint32_t counts[5] = {0};
            for (uint32_t i = 0; i < f->u.arr.count; i++) {
                const char *s = kz_map_str(&f->u.arr.items[i], "severity");
                for (int k = 0; s && k < 5; k++)
                    if (strcmp(s, sev[k]) == 0)
                        counts[k]++;
            }
            s_add(buf, cap, len, "%u finding%s", f->u.arr.count, f->u.arr.count == 1 ? "" : "s");
            for (int k = 0; k < 5; k++)
                if (counts[k])
                    s_add(buf, cap, len, " %s=%u", sev[k], counts[k]);
            const char *tool = kz_map_str(body, "tool");
            if (tool) {
                s_add(buf, cap, len, " tool=");
                s_add_safe_str(buf, cap, len, tool);
            }
            return;
        }
    } else if (type && strcmp(type, "metric.batch") == 0) {
        const kz_val_t *m = kz_map_get(body, "metrics");
        if (m && m->type == KZ_VAL_ARRAY) {
            s_add(buf, cap, len, "%u metric%s", m->u.arr.count, m->u.arr.count == 1 ? "" : "s");
            for (uint32_t i = 0; i < m->u.arr.count && i < 3; i++) {
                const kz_val_t *item = &m->u.arr.items[i];
                const char *mname = kz_map_str(item, "name");
                const kz_val_t *val = kz_map_get(item, "value");
                if (!mname || !val)
                    continue;
                s_add(buf, cap, len, " ");
                s_add_safe_str(buf, cap, len, mname);
                s_add(buf, cap, len, "=");
                s_val_short(val, buf, cap, len);
            }
            if (m->u.arr.count > 3)
                s_add(buf, cap, len, " ...");
            return;
        }
    } else if (type && strcmp(type, "agent.heartbeat") == 0) {
        const char *state = kz_map_str(body, "state");
        if (state) {
            s_add(buf, cap, len, "state=");
            s_add_safe_str(buf, cap, len, state);
            s_pairs(body, "state", 3, buf, cap, len);
            return;
        }
    }
    s_pairs(body, NULL, 4, buf, cap, len);
    if (*len == 0)
        s_add(buf, cap, len, "{}");
}

static bool s_prefix_any(const char *name, const char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(name, list[i], strlen(list[i])) == 0)
            return true;
    return false;
}

/* Split and check a tap message; 0, or -2 with WHY for a malformed one */
static int s_parse(zmsg_t *zmsg, s_tap_t *tap, char *why, size_t whylen)
{
    size_t nframes = zmsg_size(zmsg);
    if (nframes < 3) {
        snprintf(why, whylen, "%zu frame%s, expected at least 3", nframes, nframes == 1 ? "" : "s");
        return -2;
    }
    zframe_t *fpath = zmsg_first(zmsg);
    zframe_t *fname = zmsg_next(zmsg);
    zframe_t *fhdr = zmsg_next(zmsg);
    tap->path = -1;
    for (int i = 0; i < S_NPATHS; i++)
        if (zframe_size(fpath) == strlen(s_paths[i]) &&
            memcmp(zframe_data(fpath), s_paths[i], zframe_size(fpath)) == 0)
            tap->path = i;
    if (tap->path < 0) {
        snprintf(why, whylen, "unknown path frame (%zu bytes)", zframe_size(fpath));
        return -2;
    }
    size_t nlen = zframe_size(fname);
    if (nlen > KZ_TOPIC_MAX || memchr(zframe_data(fname), 0, nlen)) {
        snprintf(why, whylen, "bad name frame (%zu bytes)", nlen);
        return -2;
    }
    memcpy(tap->name, zframe_data(fname), nlen);
    tap->name[nlen] = '\0';
    tap->name_len = nlen;

    kz_msg_err_t err = {0, ""};
    tap->header_msg = kz_msg_decode_value(zframe_data(fhdr), zframe_size(fhdr), NULL, &err);
    if (!tap->header_msg) {
        snprintf(why, whylen, "bad header: %s", err.text);
        return -2;
    }
    tap->header = kz_msg_body_const(tap->header_msg);
    if (!tap->header || tap->header->type != KZ_VAL_MAP) {
        snprintf(why, whylen, "bad header: not a map");
        return -2;
    }
    const kz_val_t *h = tap->header;
    tap->ts = kz_map_int(h, "ts", 0);
    const kz_val_t *seq = kz_map_get(h, "seq");
    if (seq && seq->type == KZ_VAL_INT && seq->u.i >= 0) {
        tap->has_seq = true;
        tap->seq = (uint64_t)seq->u.i;
    } else if (seq && seq->type == KZ_VAL_UINT) {
        tap->has_seq = true;
        tap->seq = seq->u.u;
    }
    tap->peer = kz_map_str(h, "peer");
    tap->group = kz_map_str(h, "group");
    const kz_val_t *red = kz_map_get(h, "redelivery");
    tap->redelivery = red && red->type == KZ_VAL_BOOL ? (red->u.b ? 1 : 0) : -1;

    zframe_t *f;
    while ((f = zmsg_next(zmsg)) != NULL) {
        if (tap->npayload < sizeof tap->payload / sizeof tap->payload[0])
            tap->payload[tap->npayload++] = f;
        tap->payload_total += zframe_size(f);
    }
    tap->size = kz_map_int(h, "size", (int64_t)tap->payload_total);
    return 0;
}

/* Remember a request's broker time, or pair a reply with it */
static void s_pair(s_mon_t *self, s_tap_t *tap)
{
    tap->rtt_us = -1;
    if (!tap->has_seq)
        return;
    s_pair_t *slot = &self->pairs[tap->seq % S_PAIR_SLOTS];
    if (tap->path == S_REQUEST) {
        slot->seq = tap->seq;
        slot->ts = tap->ts;
        slot->used = true;
    } else if (tap->path == S_REPLY && slot->used && slot->seq == tap->seq) {
        tap->rtt_us = tap->ts - slot->ts;
        slot->used = false;
    }
}

static void s_decode_payload(s_tap_t *tap)
{
    if (tap->path == S_ACK || tap->npayload != 1 ||
        tap->payload_total != zframe_size(tap->payload[0]))
        return;
    const uint8_t *data = zframe_data(tap->payload[0]);
    size_t size = zframe_size(tap->payload[0]);
    tap->env = kz_msg_decode(data, size, NULL, &tap->env_err);
    if (!tap->env) {
        kz_msg_err_t err = {0, ""};
        tap->value = kz_msg_decode_value(data, size, NULL, &err);
    }
}

static void s_time(int64_t ts_us, char *buf, size_t len)
{
    if (ts_us <= 0)
        ts_us = kz_now_us();
    time_t secs = (time_t)(ts_us / 1000000);
    struct tm tm;
    localtime_r(&secs, &tm);
    size_t n = strftime(buf, len, "%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%06lld", (long long)(ts_us % 1000000));
}

static void s_print_text(s_mon_t *self, const s_tap_t *tap)
{
    static const char *const colors[] = {"\033[32m", "\033[36m", "\033[90m", "\033[33m",
                                         "\033[35m"};
    char when[32];
    s_time(tap->ts, when, sizeof when);
    /* name, sender and everything in extra and sum come from the network:
       only through s_add_safe */
    char name[KZ_TOPIC_MAX + 1];
    size_t nlen = 0;
    name[0] = '\0';
    s_add_safe(name, sizeof name, &nlen, tap->name, tap->name_len, 0);
    const char *src = tap->env && kz_msg_src(tap->env) ? kz_msg_src(tap->env)
                      : tap->peer                      ? tap->peer
                                                       : "-";
    char sender[256];
    size_t sdlen = 0;
    sender[0] = '\0';
    s_add_safe_str(sender, sizeof sender, &sdlen, src);
    char extra[160];
    size_t elen = 0;
    extra[0] = '\0';
    if (tap->group) {
        s_add(extra, sizeof extra, &elen, " group=");
        s_add_safe_str(extra, sizeof extra, &elen, tap->group);
    }
    if (tap->has_seq)
        s_add(extra, sizeof extra, &elen, " seq=%llu", (unsigned long long)tap->seq);
    if (tap->rtt_us >= 0)
        s_add(extra, sizeof extra, &elen, " rtt=%.2fms", (double)tap->rtt_us / 1000.0);
    if (tap->redelivery == 1)
        s_add(extra, sizeof extra, &elen, " redelivery");
    extra[elen] = '\0';

    char sum[S_SUMMARY_MAX + 64];
    size_t slen = 0;
    sum[0] = '\0';
    if (tap->env) {
        s_summarize_env(tap->env, tap->name, sum, S_SUMMARY_MAX, &slen);
    } else if (tap->path == S_ACK && tap->npayload == 1) {
        size_t n = zframe_size(tap->payload[0]);
        const uint8_t *d = zframe_data(tap->payload[0]);
        s_add(sum, S_SUMMARY_MAX, &slen, "%zu id%s", n / 8, n / 8 == 1 ? "" : "s");
        for (size_t i = 0; i + 8 <= n && i < 8 * 4; i += 8) {
            uint64_t id = 0;
            for (int k = 0; k < 8; k++)
                id = (id << 8) | d[i + (size_t)k];
            s_add(sum, S_SUMMARY_MAX, &slen, "%s%llu", i ? "," : " ", (unsigned long long)id);
        }
        if (n > 8 * 4)
            s_add(sum, S_SUMMARY_MAX, &slen, ",...");
    } else if (tap->value) {
        s_pairs(kz_msg_body_const(tap->value), NULL, 4, sum, S_SUMMARY_MAX, &slen);
    } else {
        for (size_t i = 0; i < tap->npayload; i++) {
            if (i)
                s_add(sum, S_SUMMARY_MAX, &slen, " | ");
            s_preview(zframe_data(tap->payload[i]), zframe_size(tap->payload[i]), sum,
                      S_SUMMARY_MAX, &slen);
        }
        if (tap->npayload == 0)
            s_add(sum, S_SUMMARY_MAX, &slen, "(empty)");
    }
    sum[slen] = '\0';

    char size[32];
    snprintf(size, sizeof size, "%lldB", (long long)tap->size);
    if (self->color)
        printf("\033[2m%s\033[0m %s%-7s\033[0m \033[1m%s\033[0m %s %s%s  %s\n", when,
               colors[tap->path], s_paths[tap->path], name, sender, size, extra, sum);
    else
        printf("%s %-7s %s %s %s%s  %s\n", when, s_paths[tap->path], name, sender, size, extra,
               sum);
}

static void s_base64(FILE *out, const uint8_t *data, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        fputc(abc[v >> 18], out);
        fputc(abc[(v >> 12) & 63], out);
        fputc(abc[(v >> 6) & 63], out);
        fputc(abc[v & 63], out);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        fprintf(out, "%c%c==", abc[v >> 18], abc[(v >> 12) & 63]);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        fprintf(out, "%c%c%c=", abc[v >> 18], abc[(v >> 12) & 63], abc[(v >> 6) & 63]);
    }
}

/* True when DATA is valid UTF-8 text we can show as a JSON string */
static bool s_is_text(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = kz_cli_utf8_seq(data + i, len - i);
        if (n == 0 ||
            (n == 1 && data[i] < 0x20 && data[i] != '\t' && data[i] != '\n' && data[i] != '\r'))
            return false;
        i += n;
    }
    return true;
}

static void s_print_json(const s_tap_t *tap)
{
    FILE *out = stdout;
    fprintf(out, "{\"ts\":%lld,\"path\":", (long long)tap->ts);
    kz_cli_json_str(out, s_paths[tap->path], strlen(s_paths[tap->path]));
    fputs(",\"name\":", out);
    kz_cli_json_str(out, tap->name, tap->name_len);
    fprintf(out, ",\"size\":%lld", (long long)tap->size);
    fputs(",\"peer\":", out);
    if (tap->peer)
        kz_cli_json_str(out, tap->peer, strlen(tap->peer));
    else
        fputs("null", out);
    fputs(",\"group\":", out);
    if (tap->group)
        kz_cli_json_str(out, tap->group, strlen(tap->group));
    else
        fputs("null", out);
    if (tap->has_seq)
        fprintf(out, ",\"seq\":%llu", (unsigned long long)tap->seq);
    else
        fputs(",\"seq\":null", out);
    fprintf(out, ",\"redelivery\":%s",
            tap->redelivery < 0 ? "null"
            : tap->redelivery   ? "true"
                                : "false");
    if (tap->path == S_REPLY) {
        if (tap->rtt_us >= 0)
            fprintf(out, ",\"rtt_us\":%lld", (long long)tap->rtt_us);
        else
            fputs(",\"rtt_us\":null", out);
    }
    char *json = NULL;
    if (tap->env)
        json = kz_msg_to_json(tap->env);
    if (json) {
        fprintf(out, ",\"msg\":%s", json);
        free(json);
    } else {
        /* not an envelope: the frames, text as strings, binary as
           {"base64": ...}; plus the plain msgpack value when it is one */
        fputs(",\"raw\":[", out);
        for (size_t i = 0; i < tap->npayload; i++) {
            const uint8_t *d = zframe_data(tap->payload[i]);
            size_t n = zframe_size(tap->payload[i]);
            if (i)
                fputc(',', out);
            if (s_is_text(d, n)) {
                kz_cli_json_str(out, (const char *)d, n);
            } else {
                fputs("{\"base64\":\"", out);
                s_base64(out, d, n);
                fputs("\"}", out);
            }
        }
        fputc(']', out);
        if (tap->value) {
            char *vjson = kz_val_to_json(kz_msg_body_const(tap->value));
            if (vjson) {
                fprintf(out, ",\"value\":%s", vjson);
                free(vjson);
            }
        }
        if (tap->env_err.code && tap->value) {
            fputs(",\"error\":", out);
            kz_cli_json_str(out, tap->env_err.text, strlen(tap->env_err.text));
        }
    }
    fputs("}\n", out);
}

static void s_account(s_mon_t *self, const s_tap_t *tap)
{
    char key[KZ_TOPIC_MAX + 8];
    snprintf(key, sizeof key, "%d:%s", tap->path, tap->name);
    s_row_t *row = (s_row_t *)zhashx_lookup(self->rows, key);
    if (!row) {
        if (self->nrows >= S_STATS_MAX) {
            snprintf(key, sizeof key, "%d:(other)", tap->path);
            row = (s_row_t *)zhashx_lookup(self->rows, key);
        }
        if (!row) {
            row = (s_row_t *)calloc(1, sizeof *row);
            if (!row)
                return;
            row->path = tap->path;
            row->name = strdup(self->nrows >= S_STATS_MAX ? "(other)" : tap->name);
            if (!row->name || zhashx_insert(self->rows, key, row) != 0) {
                free(row->name);
                free(row);
                return;
            }
            self->nrows++;
        }
    }
    uint64_t bytes = tap->size > 0 ? (uint64_t)tap->size : 0;
    row->win_msgs++;
    row->win_bytes += bytes;
    row->tot_msgs++;
    row->tot_bytes += bytes;
}

static int s_cmp_rows(const void *a, const void *b)
{
    const s_row_t *x = *(const s_row_t *const *)a;
    const s_row_t *y = *(const s_row_t *const *)b;
    if (x->msgs_rate != y->msgs_rate)
        return x->msgs_rate < y->msgs_rate ? 1 : -1;
    if (x->bytes_rate != y->bytes_rate)
        return x->bytes_rate < y->bytes_rate ? 1 : -1;
    if (x->tot_msgs != y->tot_msgs)
        return x->tot_msgs < y->tot_msgs ? 1 : -1;
    int c = strcmp(x->name, y->name);
    return c ? c : x->path - y->path;
}

/* Close the current window: rates per row, then print them */
static void s_refresh(s_mon_t *self, int64_t now_ms)
{
    double secs = (double)(now_ms - self->window_start) / 1000.0;
    if (secs <= 0)
        secs = 1e-3;
    self->window_start = now_ms;
    s_row_t **rows = NULL;
    if (self->nrows)
        rows = (s_row_t **)calloc(self->nrows, sizeof *rows);
    size_t n = 0;
    double all_msgs = 0, all_bytes = 0;
    for (s_row_t *row = (s_row_t *)zhashx_first(self->rows); row && rows;
         row = (s_row_t *)zhashx_next(self->rows)) {
        row->msgs_rate = (double)row->win_msgs / secs;
        row->bytes_rate = (double)row->win_bytes / secs;
        row->win_msgs = row->win_bytes = 0;
        all_msgs += row->msgs_rate;
        all_bytes += row->bytes_rate;
        if (n < self->nrows)
            rows[n++] = row;
    }
    if (n > 1)
        qsort(rows, n, sizeof *rows, s_cmp_rows);
    int64_t now_us = kz_now_us();
    if (self->json) {
        printf("{\"ts\":%lld,\"interval_ms\":%.0f,\"msgs_per_s\":%.3f,\"bytes_per_s\":%.3f,"
               "\"rows\":[",
               (long long)now_us, secs * 1000.0, all_msgs, all_bytes);
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"path\":\"%s\",\"name\":", i ? "," : "", s_paths[rows[i]->path]);
            kz_cli_json_str(stdout, rows[i]->name, strlen(rows[i]->name));
            printf(",\"msgs_per_s\":%.3f,\"bytes_per_s\":%.3f,\"msgs\":%llu,\"bytes\":%llu}",
                   rows[i]->msgs_rate, rows[i]->bytes_rate, (unsigned long long)rows[i]->tot_msgs,
                   (unsigned long long)rows[i]->tot_bytes);
        }
        printf("]}\n");
    } else {
        char when[32], rate[32];
        s_time(now_us, when, sizeof when);
        kz_cli_human_bytes(all_bytes, rate, sizeof rate);
        if (self->tty)
            printf("\033[H\033[2J");
        else if (self->refreshes)
            printf("\n");
        printf("%s  tap %s  %.1f msg/s  %s/s  malformed %llu\n", when, self->endpoint, all_msgs,
               rate, (unsigned long long)self->malformed);
        printf("%-8s %-40s %10s %12s %10s %12s\n", "PATH", "NAME", "MSG/S", "BYTES/S", "MSGS",
               "BYTES");
        size_t shown = self->tty ? 40 : n;
        for (size_t i = 0; i < n && i < shown; i++) {
            char br[32], tb[32];
            kz_cli_human_bytes(rows[i]->bytes_rate, br, sizeof br);
            kz_cli_human_bytes((double)rows[i]->tot_bytes, tb, sizeof tb);
            char name[KZ_TOPIC_MAX + 1];
            size_t nlen = 0;
            name[0] = '\0';
            s_add_safe_str(name, sizeof name, &nlen, rows[i]->name);
            printf("%-8s %-40s %10.1f %12s %10llu %12s\n", s_paths[rows[i]->path], name,
                   rows[i]->msgs_rate, br, (unsigned long long)rows[i]->tot_msgs, tb);
        }
        if (n > shown)
            printf("(%zu more)\n", n - shown);
        if (n == 0)
            printf("(no messages yet)\n");
    }
    fflush(stdout);
    free(rows);
    self->refreshes++;
}

/* Handle one tap message; returns true when --count is reached */
static bool s_handle(s_mon_t *self, zmsg_t *zmsg)
{
    s_tap_t tap;
    memset(&tap, 0, sizeof tap);
    tap.rtt_us = -1;
    char why[256];
    bool done = false;
    if (s_parse(zmsg, &tap, why, sizeof why) != 0) {
        self->malformed++;
        char shown[sizeof why];
        size_t slen = 0;
        shown[0] = '\0';
        s_add_safe_str(shown, sizeof shown, &slen, why);
        fprintf(stderr, "kaizen monitor: warning: malformed tap message (%llu so far): %s\n",
                (unsigned long long)self->malformed, shown);
        goto out;
    }
    /* pair before filtering so a reply shows its rtt even when the
       request was filtered out */
    s_pair(self, &tap);
    if (!(self->path_mask & (1u << tap.path)))
        goto out;
    if (self->ntopics && !s_prefix_any(tap.name, self->topics, self->ntopics))
        goto out;
    if (self->nexcludes && s_prefix_any(tap.name, self->excludes, self->nexcludes))
        goto out;
    if (self->stats) {
        s_account(self, &tap);
        goto out;
    }
    s_decode_payload(&tap);
    if (self->json)
        s_print_json(&tap);
    else
        s_print_text(self, &tap);
    fflush(stdout);
    self->printed++;
    done = self->count > 0 && self->printed >= self->count;
out:
    kz_msg_destroy(&tap.header_msg);
    kz_msg_destroy(&tap.env);
    kz_msg_destroy(&tap.value);
    return done;
}

static int s_parse_paths(const char *list, unsigned *mask)
{
    *mask = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int found = -1;
        for (int i = 0; i < S_NPATHS; i++)
            if (n == strlen(s_paths[i]) && strncmp(p, s_paths[i], n) == 0)
                found = i;
        if (found < 0)
            return -1;
        *mask |= 1u << found;
        p += n;
        if (*p == ',')
            p++;
    }
    return *mask ? 0 : -1;
}

static const struct option s_opts[] = {
    {"topic", required_argument, NULL, 't'},
    {"exclude", required_argument, NULL, 'x'},
    {"json", no_argument, NULL, 'j'},
    {"stats", no_argument, NULL, 's'},
    {"count", required_argument, NULL, 'n'},
    {"path", required_argument, NULL, 'p'},
    {"endpoint", required_argument, NULL, 'e'},
    {"no-color", no_argument, NULL, 'C'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    s_mon_t self;
    memset(&self, 0, sizeof self);
    self.path_mask = (1u << S_NPATHS) - 1;
    bool no_color = false;
    int rc = KZ_EXIT_OK;
    zsock_t *sock = NULL;
    self.topics = (const char **)calloc((size_t)argc, sizeof *self.topics);
    self.excludes = (const char **)calloc((size_t)argc, sizeof *self.excludes);
    if (!self.topics || !self.excludes) {
        rc = kz_cli_error("monitor", "out of memory");
        goto done;
    }
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 't':
            self.topics[self.ntopics++] = optarg;
            break;
        case 'x':
            self.excludes[self.nexcludes++] = optarg;
            break;
        case 'j':
            self.json = true;
            break;
        case 's':
            self.stats = true;
            break;
        case 'n':
            if (kz_cli_parse_count(optarg, &self.count) != 0 || self.count <= 0) {
                rc = kz_cli_usage("monitor", "invalid --count '%s' (a positive number)", optarg);
                goto done;
            }
            break;
        case 'p':
            if (s_parse_paths(optarg, &self.path_mask) != 0) {
                rc = kz_cli_usage("monitor",
                                  "invalid --path '%s' (comma separated: "
                                  "event,group,ack,request,reply)",
                                  optarg);
                goto done;
            }
            break;
        case 'e':
            self.endpoint = optarg;
            break;
        case 'C':
            no_color = true;
            break;
        default:
            rc = kz_cli_bad_option("monitor", c, argv);
            goto done;
        }
    }
    if (optind < argc) {
        rc = kz_cli_usage("monitor", "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if (!self.endpoint)
        self.endpoint = cli->cfg->bus.connect.tap;
    if (!self.endpoint || !*self.endpoint) {
        rc = kz_cli_error("monitor", "no tap endpoint (set bus.endpoints.tap or use --endpoint)");
        goto done;
    }
    self.tty = isatty(STDOUT_FILENO) == 1;
    self.color = self.tty && !no_color && !self.json && !getenv("NO_COLOR");

    self.pairs = (s_pair_t *)calloc(S_PAIR_SLOTS, sizeof *self.pairs);
    self.rows = zhashx_new();
    if (!self.pairs || !self.rows) {
        rc = kz_cli_error("monitor", "out of memory");
        goto done;
    }
    zhashx_set_destructor(self.rows, s_row_destroy);

    sock = zsock_new(ZMQ_SUB);
    if (!sock) {
        rc = kz_cli_error("monitor", "unable to create a socket");
        goto done;
    }
    zsock_set_rcvhwm(sock, 100000);
    zsock_set_linger(sock, 0);
    if (cli->cfg->bus.max_message_size > 0) {
        /* a tap message is the routed frames plus path, name and header:
           twice the bus limit plus slack, computed in 64 bits (an int
           overflows past 1GiB); no limit (-1) when even that does not fit.
           Not zsock_set_maxmsgsize: it takes an int */
        const uint64_t slack = 4096;
        uint64_t mms = (uint64_t)cli->cfg->bus.max_message_size;
        int64_t limit = -1;
        if (mms <= ((uint64_t)INT64_MAX - slack) / 2)
            limit = (int64_t)(mms * 2 + slack);
        if (zmq_setsockopt(zsock_resolve(sock), ZMQ_MAXMSGSIZE, &limit, sizeof limit) != 0) {
            rc = kz_cli_error("monitor", "unable to set the message size limit: %s",
                              zmq_strerror(zmq_errno()));
            goto done;
        }
    }
    if (cli->cfg->bus.curve.enabled) {
        char err[512] = "";
        if (kz_bus_curve_client(sock, &cli->cfg->bus, err, sizeof err) != 0) {
            rc = kz_cli_error("monitor", "%s", err);
            goto done;
        }
    }
    zsock_set_subscribe(sock, "");
    if (zsock_connect(sock, "%s", self.endpoint) != 0) {
        rc = kz_cli_error("monitor", "unable to connect to tap endpoint '%s': %s", self.endpoint,
                          zmq_strerror(zmq_errno()));
        goto done;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: zmq_poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    self.window_start = zclock_mono();
    zmq_pollitem_t item = {zsock_resolve(sock), 0, ZMQ_POLLIN, 0};
    while (!s_stop) {
        long timeout = 1000;
        if (self.stats) {
            int64_t left = self.window_start + 1000 - zclock_mono();
            timeout = left < 0 ? 0 : (long)left;
        }
        int n = zmq_poll(&item, 1, timeout);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            rc = kz_cli_error("monitor", "poll failed: %s", zmq_strerror(zmq_errno()));
            break;
        }
        bool done = false;
        /* drain what is there, but keep the stats clock ticking */
        for (int burst = 0; n > 0 && burst < 10000 && !s_stop && !done; burst++) {
            if (!(zsock_events(sock) & ZMQ_POLLIN))
                break;
            zmsg_t *zmsg = zmsg_recv(sock);
            if (!zmsg)
                break;
            done = s_handle(&self, zmsg);
            zmsg_destroy(&zmsg);
        }
        if (ferror(stdout))
            break; /* reader went away (EPIPE): nothing left to do */
        if (done)
            break;
        if (self.stats && zclock_mono() - self.window_start >= 1000) {
            s_refresh(&self, zclock_mono());
            if (self.count > 0 && self.refreshes >= self.count)
                break;
        }
    }
done:
    zsock_destroy(&sock);
    zhashx_destroy(&self.rows);
    free(self.pairs);
    free(self.topics);
    free(self.excludes);
    return rc;
}

const kz_cli_cmd_t kz_cmd_monitor = {
    "monitor", "show the messages the broker routes, live and decoded",
    s_usage,   s_run,
    true,      s_opt_tables,
    NULL,
};
