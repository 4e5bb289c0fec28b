/*  stats.c - `kaizen stats`: the broker's counters (mmi.stats) as tables

    Calls the broker-internal service mmi.stats once, with a short
    timeout and no retry, so a missing broker is reported within seconds.
    The reply is one msgpack map (proto/PROTOCOL.md, "mmi.stats").
*/
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_curve_probe.h"
#include "kz_msg.h"
#include "kz_wire.h"

#define S_DEFAULT_TIMEOUT_MS 3000
#define S_PROBE_MS           2000 /* a CURVE handshake, after silence */

static const char s_usage[] =
    "usage: kaizen [-c FILE] stats [--json] [--timeout DURATION]\n"
    "\n"
    "Ask the broker (service mmi.stats on bus.endpoints.router) for its\n"
    "counters and print them as tables: topics, services, queue groups,\n"
    "drops and what the bus rules refused, per CURVE identity.\n"
    "\n"
    "  --json               print the broker's reply as one JSON object\n"
    "  --timeout DURATION   how long to wait for the broker (default 3s, one\n"
    "                       attempt)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 ok, 1 no answer from the broker or a bad reply, 2 usage\n";

/* Keys of one table: which column comes from which field */
typedef struct {
    const char *title;    /* "TOPIC" */
    const char *key;      /* "topics" */
    const char *cols[7];  /* field names, NULL-terminated */
    const char *heads[7]; /* column headers */
} s_table_t;

static const s_table_t s_tables[] = {
    {"TOPIC", "topics", {"msgs", "bytes", NULL}, {"MSGS", "BYTES", NULL}},
    {"SERVICE",
     "services",
     {"requests", "replies", "bytes", "workers", "waiting", "queued", NULL},
     {"REQUESTS", "REPLIES", "BYTES", "WORKERS", "WAITING", "QUEUED", NULL}},
    {"GROUP",
     "groups",
     {"members", "queued", "inflight", "delivered", "redelivered", "acked", NULL},
     {"MEMBERS", "QUEUED", "INFLIGHT", "DELIVERED", "REDELIVERED", "ACKED", NULL}},
};

static int s_cmp_kv(const void *a, const void *b)
{
    const kz_kv_t *x = *(const kz_kv_t *const *)a;
    const kz_kv_t *y = *(const kz_kv_t *const *)b;
    return strcmp(x->key.u.str.ptr, y->key.u.str.ptr);
}

/* Entries of MAP sorted by key, in a malloc'd array (NULL when empty) */
static const kz_kv_t **s_sorted(const kz_val_t *map, uint32_t *count)
{
    *count = 0;
    if (!map || map->type != KZ_VAL_MAP || map->u.map.count == 0)
        return NULL;
    const kz_kv_t **items = calloc(map->u.map.count, sizeof *items);
    if (!items)
        return NULL;
    for (uint32_t i = 0; i < map->u.map.count; i++)
        items[i] = &map->u.map.items[i];
    qsort(items, map->u.map.count, sizeof *items, s_cmp_kv);
    *count = map->u.map.count;
    return items;
}

static void s_cell(const kz_val_t *row, const char *field, bool bytes, char *buf, size_t len)
{
    const kz_val_t *v = kz_map_get(row, field);
    if (!v) {
        snprintf(buf, len, "-");
    } else if (v->type == KZ_VAL_INT) {
        if (bytes)
            kz_cli_human_bytes((double)v->u.i, buf, len);
        else
            snprintf(buf, len, "%lld", (long long)v->u.i);
    } else if (v->type == KZ_VAL_UINT) {
        snprintf(buf, len, "%llu", (unsigned long long)v->u.u);
    } else if (v->type == KZ_VAL_FLOAT) {
        snprintf(buf, len, "%g", v->u.f);
    } else {
        snprintf(buf, len, "?");
    }
}

static void s_print_table(const s_table_t *t, const kz_val_t *map)
{
    uint32_t n;
    const kz_kv_t **rows = s_sorted(map, &n);
    int width = (int)strlen(t->title);
    for (uint32_t i = 0; i < n; i++) {
        int w = (int)rows[i]->key.u.str.len;
        if (w > width)
            width = w > 60 ? 60 : w;
    }
    printf("%-*s", width, t->title);
    for (int c = 0; t->heads[c]; c++)
        printf("  %12s", t->heads[c]);
    printf("\n");
    if (n == 0)
        printf("(none)\n");
    for (uint32_t i = 0; i < n; i++) {
        printf("%-*s", width, rows[i]->key.u.str.ptr);
        for (int c = 0; t->cols[c]; c++) {
            char cell[32];
            s_cell(&rows[i]->val, t->cols[c], strcmp(t->cols[c], "bytes") == 0, cell, sizeof cell);
            printf("  %12s", cell);
        }
        printf("\n");
    }
    printf("\n");
    free(rows);
}

static void s_print(const kz_val_t *stats, const char *endpoint)
{
    int64_t up = kz_map_int(stats, "uptime_ms", -1);
    if (up >= 0) {
        int64_t s = up / 1000;
        printf("broker %s, up %lldd %02lld:%02lld:%02lld\n\n", endpoint, (long long)(s / 86400),
               (long long)(s / 3600 % 24), (long long)(s / 60 % 60), (long long)(s % 60));
    } else {
        printf("broker %s\n\n", endpoint);
    }
    for (size_t i = 0; i < sizeof s_tables / sizeof s_tables[0]; i++)
        s_print_table(&s_tables[i], kz_map_get(stats, s_tables[i].key));

    uint32_t n;
    const kz_kv_t **drops = s_sorted(kz_map_get(stats, "drops"), &n);
    printf("%-30s  %12s\n", "DROP REASON", "COUNT");
    if (n == 0)
        printf("(none)\n");
    for (uint32_t i = 0; i < n; i++) {
        const kz_val_t *v = &drops[i]->val;
        long long count = v->type == KZ_VAL_INT ? (long long)v->u.i : -1;
        printf("%-30s  %12lld\n", drops[i]->key.u.str.ptr, count);
    }
    free(drops);

    /* what the broker's rules refused, per CURVE identity (a broker
       without CURVE has no identities and refuses nothing) */
    const kz_kv_t **refused = s_sorted(kz_map_get(stats, "refused"), &n);
    static const char *const acts[] = {"publish", "offer", "join", "call", "tap"};
    printf("\n%-24s  %-12s  %8s  %8s  %8s  %8s  %8s\n", "REFUSED IDENTITY", "ROLE", "PUBLISH",
           "OFFER", "JOIN", "CALL", "TAP");
    if (n == 0)
        printf("(none)\n");
    for (uint32_t i = 0; i < n; i++) {
        const kz_val_t *row = &refused[i]->val;
        const char *role = kz_map_str(row, "role");
        printf("%-24s  %-12s", refused[i]->key.u.str.ptr, role ? role : "-");
        for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
            printf("  %8lld", (long long)kz_map_int(row, acts[a], 0));
        printf("\n");
    }
    free(refused);
}

static const struct option s_opts[] = {
    {"json", no_argument, NULL, 'j'},
    {"timeout", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    bool json = false;
    int timeout_ms = S_DEFAULT_TIMEOUT_MS;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case 't':
            if (kz_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms <= 0)
                return kz_cli_usage("stats", "invalid duration '%s' (e.g. 500ms, 3s)", optarg);
            break;
        default:
            return kz_cli_bad_option("stats", c, argv);
        }
    }
    if (optind < argc)
        return kz_cli_usage("stats", "unexpected argument '%s'", argv[optind]);

    kz_bus_config_t bus_cfg = cli->cfg->bus;
    bus_cfg.call_timeout_ms = timeout_ms;
    bus_cfg.call_retries = 0;
    const char *endpoint = bus_cfg.connect.router ? bus_cfg.connect.router : "?";

    char id[300], host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(id, sizeof id, "kaizen-stats@%s#%ld", host, (long)getpid());
    char err[512] = "";
    kz_bus_t *bus = kz_bus_new(&bus_cfg, id, err, sizeof err);
    if (!bus)
        return kz_cli_error("stats", "%s", err);
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    int rc =
        kz_bus_call_raw(bus, KZ_MMI_STATS, "", 0, timeout_ms, &reply, &reply_len, err, sizeof err);
    kz_bus_destroy(&bus);
    if (rc != 0) {
        /* silence is also what a CURVE refusal looks like: tell them apart */
        char why[1024] = "";
        if (kz_curve_probe(&bus_cfg, bus_cfg.connect.router, false, S_PROBE_MS, why, sizeof why) ==
            KZ_CURVE_REFUSED)
            return kz_cli_error("stats", "%s", why);
        return kz_cli_error(
            "stats", "no answer from the broker at '%s' (is kaizen-broker running?)", endpoint);
    }

    kz_msg_limits_t limits = kz_msg_limits_default();
    if (limits.max_size < reply_len)
        limits.max_size = reply_len;
    limits.max_count = 1000000;
    limits.max_items = 10000000;
    kz_msg_err_t derr = {0, ""};
    kz_msg_t *value = kz_msg_decode_value(reply, reply_len, &limits, &derr);
    free(reply);
    if (!value)
        return kz_cli_error("stats", "bad mmi.stats reply from '%s': %s", endpoint, derr.text);
    const kz_val_t *stats = kz_msg_body_const(value);
    if (!stats || stats->type != KZ_VAL_MAP) {
        kz_msg_destroy(&value);
        return kz_cli_error("stats", "bad mmi.stats reply from '%s': not a map", endpoint);
    }
    rc = KZ_EXIT_OK;
    if (json) {
        char *text = kz_val_to_json(stats);
        if (!text)
            rc = kz_cli_error("stats", "out of memory");
        else
            printf("%s\n", text);
        free(text);
    } else {
        s_print(stats, endpoint);
    }
    kz_msg_destroy(&value);
    if (fflush(stdout) != 0)
        rc = KZ_EXIT_FAILURE;
    return rc;
}

const kz_cli_cmd_t kz_cmd_stats = {
    "stats", "print the broker's counters (topics, services, groups, drops)",
    s_usage, s_run,
    true,    s_opt_tables,
    NULL,
};
