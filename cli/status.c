/*  status.c - `kaizen status`: the orchestrator's kaizen.status as a table

    One status.request to the service kaizen.status (one attempt, a short
    timeout, so "not running" is said within seconds), printed like the
    seed's get_system_status but for every agent on every host, then a
    line each for the orchestrator, the database, the spool and the
    broker. --json prints the reply body as one JSON document; --watch
    redraws until SIGINT.

    Also home of the helpers the other lifecycle commands share:
    kz_cli_status_call and kz_cli_human_ms.
*/
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_bus.h"
#include "kz_msg.h"
#include "kz_state.h"

#define S_SERVICE            "kaizen.status"
#define S_DEFAULT_TIMEOUT_MS 3000
#define S_DEFAULT_WATCH_MS   2000
#define S_MAX_ROWS           4096
#define S_COLS               12

static const char s_usage[] =
    "usage: kaizen [-c FILE] status [--json] [--watch [INTERVAL]] [--timeout DURATION]\n"
    "\n"
    "Ask the orchestrator (service kaizen.status) for the state of the system\n"
    "and print every agent on every host:\n"
    "\n"
    "  NAME LAYER INST HOST PID STATE UPTIME RESTARTS LAST-HB CYCLES LAST-CYCLE MSG/S\n"
    "\n"
    "then a line each for the orchestrator, the database, the spool and the\n"
    "broker. Agents that failed are listed with their reason below the table.\n"
    "\n"
    "  --json               print the status as one JSON document\n"
    "  --watch [INTERVAL]   redraw every INTERVAL (default 2s) until Ctrl-C\n"
    "  --timeout DURATION   how long to wait for the answer (default 3s)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 the orchestrator answered, 1 no answer (kaizen is not\n"
    "running) or a bad config, 2 usage\n";

static volatile sig_atomic_t s_interrupted;

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

/* --------------------------------------------------------------- helpers */

void kz_cli_human_ms(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        snprintf(buf, len, "-");
    else if (ms < 1000)
        snprintf(buf, len, "%lldms", (long long)ms);
    else if (ms < 60 * 1000)
        snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600 * 1000LL)
        snprintf(buf, len, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else if (ms < 86400 * 1000LL)
        snprintf(buf, len, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
    else
        snprintf(buf, len, "%lldd%02lldh", (long long)(ms / 86400000),
                 (long long)(ms / 3600000 % 24));
}

kz_msg_t *kz_cli_status_call(const kz_config_t *cfg, int timeout_ms, char *errbuf, size_t errlen)
{
    char host[256] = "localhost", id[320];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(id, sizeof id, "kaizen-status@%s#%ld", host, (long)getpid());

    char err[512] = "";
    kz_bus_t *bus = kz_bus_new(&cfg->bus, id, err, sizeof err);
    if (!bus) {
        snprintf(errbuf, errlen, "%s", err);
        return NULL;
    }
    kz_msg_t *req = kz_msg_new("status.request");
    if (!req || kz_msg_set_src(req, id) != 0) {
        kz_msg_destroy(&req);
        kz_bus_destroy(&bus);
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    kz_msg_t *reply = kz_bus_call(bus, S_SERVICE, &req, timeout_ms, 0, err, sizeof err);
    kz_bus_destroy(&bus);
    if (!reply) {
        snprintf(errbuf, errlen, "no answer from %s on %s", S_SERVICE, cfg->bus.connect.router);
        return NULL;
    }
    if (strcmp(kz_msg_type(reply), "status.reply") != 0) {
        const kz_val_t *b = kz_msg_body_const(reply);
        const char *code = kz_map_str(b, "code");
        const char *message = kz_map_str(b, "message");
        snprintf(errbuf, errlen, "%s answered %s %s: %s", S_SERVICE, kz_msg_type(reply),
                 code ? code : "?", message ? message : "");
        kz_msg_destroy(&reply);
        return NULL;
    }
    return reply;
}

/* ----------------------------------------------------------------- table */

typedef struct {
    const kz_val_t *agent;
    int rank;
} s_row_t;

static int s_strcmp0(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int s_cmp_rows(const void *a, const void *b)
{
    const s_row_t *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    int c = s_strcmp0(kz_map_str(x->agent, "name"), kz_map_str(y->agent, "name"));
    if (c == 0)
        c = s_strcmp0(kz_map_str(x->agent, "host"), kz_map_str(y->agent, "host"));
    if (c == 0) {
        int64_t i = kz_map_int(x->agent, "instance", -1), j = kz_map_int(y->agent, "instance", -1);
        c = i < j ? -1 : i > j;
    }
    if (c == 0)
        c = s_strcmp0(kz_map_str(x->agent, "id"), kz_map_str(y->agent, "id"));
    return c;
}

/* A cell from an integer field: "-" when absent */
static void s_int_cell(const kz_val_t *map, const char *key, char *buf, size_t len)
{
    const kz_val_t *v = kz_map_get(map, key);
    if (v && v->type == KZ_VAL_INT)
        snprintf(buf, len, "%lld", (long long)v->u.i);
    else if (v && v->type == KZ_VAL_UINT)
        snprintf(buf, len, "%llu", (unsigned long long)v->u.u);
    else
        snprintf(buf, len, "-");
}

static void s_ms_cell(const kz_val_t *map, const char *key, char *buf, size_t len)
{
    const kz_val_t *v = kz_map_get(map, key);
    if (v && v->type == KZ_VAL_INT)
        kz_cli_human_ms(v->u.i, buf, len);
    else if (v && v->type == KZ_VAL_FLOAT)
        kz_cli_human_ms((int64_t)v->u.f, buf, len);
    else
        snprintf(buf, len, "-");
}

static void s_str_cell(const kz_val_t *map, const char *key, char *buf, size_t len)
{
    const char *s = kz_map_str(map, key);
    snprintf(buf, len, "%s", s && *s ? s : "-");
}

static const char *const s_heads[S_COLS] = {"NAME",    "LAYER",  "INST",       "HOST",
                                            "PID",     "STATE",  "UPTIME",     "RESTARTS",
                                            "LAST-HB", "CYCLES", "LAST-CYCLE", "MSG/S"};

static void s_fill_row(const kz_val_t *a, char cells[S_COLS][64])
{
    s_str_cell(a, "name", cells[0], 64);
    s_str_cell(a, "layer", cells[1], 64);
    s_int_cell(a, "instance", cells[2], 64);
    s_str_cell(a, "host", cells[3], 64);
    s_int_cell(a, "pid", cells[4], 64);
    s_str_cell(a, "state", cells[5], 64);
    s_ms_cell(a, "uptime_ms", cells[6], 64);
    s_int_cell(a, "restarts", cells[7], 64);
    s_ms_cell(a, "last_heartbeat_ms_ago", cells[8], 64);
    s_int_cell(a, "cycles", cells[9], 64);
    s_ms_cell(a, "last_cycle_ms", cells[10], 64);
    const kz_val_t *r = kz_map_get(a, "messages_per_s");
    if (r && (r->type == KZ_VAL_FLOAT || r->type == KZ_VAL_INT))
        snprintf(cells[11], 64, "%.1f", kz_map_float(a, "messages_per_s", 0));
    else
        snprintf(cells[11], 64, "-");
}

/* The agents, sorted by layer, name, host, instance (the broker is shown
   on its own line, not in the table). *COUNT rows; NULL when none. */
static s_row_t *s_rows(const kz_val_t *agents, size_t *count, const kz_val_t **broker)
{
    *count = 0;
    *broker = NULL;
    if (!agents || agents->type != KZ_VAL_ARRAY || agents->u.arr.count == 0)
        return NULL;
    size_t n = agents->u.arr.count < S_MAX_ROWS ? agents->u.arr.count : S_MAX_ROWS;
    s_row_t *rows = calloc(n, sizeof *rows);
    if (!rows)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const kz_val_t *a = &agents->u.arr.items[i];
        if (a->type != KZ_VAL_MAP)
            continue;
        const char *name = kz_map_str(a, "name");
        if (name && strcmp(name, "broker") == 0 && kz_map_bool(a, "supervised", false)) {
            *broker = a;
            continue;
        }
        const char *layer = kz_map_str(a, "layer");
        rows[*count].agent = a;
        rows[*count].rank = kz_agent_layer_rank(layer ? layer : kz_agent_layer_of(name));
        (*count)++;
    }
    qsort(rows, *count, sizeof *rows, s_cmp_rows);
    return rows;
}

static void s_print_table(const s_row_t *rows, size_t n)
{
    int width[S_COLS];
    for (int c = 0; c < S_COLS; c++)
        width[c] = (int)strlen(s_heads[c]);
    char cells[S_COLS][64];
    for (size_t i = 0; i < n; i++) {
        s_fill_row(rows[i].agent, cells);
        for (int c = 0; c < S_COLS; c++) {
            int w = (int)strlen(cells[c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    for (int c = 0; c < S_COLS; c++)
        printf(c == 0 ? "%-*s" : "  %-*s", c == S_COLS - 1 ? 0 : width[c], s_heads[c]);
    printf("\n");
    if (n == 0)
        printf("(no agents)\n");
    for (size_t i = 0; i < n; i++) {
        s_fill_row(rows[i].agent, cells);
        for (int c = 0; c < S_COLS; c++)
            printf(c == 0 ? "%-*s" : "  %-*s", c == S_COLS - 1 ? 0 : width[c], cells[c]);
        printf("\n");
    }
    /* why agents failed or last exited */
    for (size_t i = 0; i < n; i++) {
        const kz_val_t *a = rows[i].agent;
        const char *reason = kz_map_str(a, "failed_reason");
        const char *last_exit = kz_map_str(a, "last_exit");
        const char *state = kz_map_str(a, "state");
        if (!reason && !(last_exit && state && strcmp(state, "failed") == 0))
            continue;
        const char *name = kz_map_str(a, "name");
        int64_t inst = kz_map_int(a, "instance", -1);
        if (inst >= 0)
            printf("%s.%lld failed: %s%s%s%s\n", name ? name : "?", (long long)inst,
                   reason ? reason : "", last_exit ? " (last exit: " : "",
                   last_exit ? last_exit : "", last_exit ? ")" : "");
        else
            printf("%s failed: %s%s%s%s\n", name ? name : "?", reason ? reason : "",
                   last_exit ? " (last exit: " : "", last_exit ? last_exit : "",
                   last_exit ? ")" : "");
    }
}

static void s_print_footer(const kz_config_t *cfg, const kz_val_t *body, const kz_val_t *broker)
{
    char a[32], b[32];
    const kz_val_t *o = kz_map_get(body, "orchestrator");
    if (o && o->type == KZ_VAL_MAP) {
        const char *id = kz_map_str(o, "id");
        const char *version = kz_map_str(o, "version");
        kz_cli_human_ms(kz_map_int(o, "uptime_ms", -1), a, sizeof a);
        printf("\norchestrator  %s  pid %lld  up %s  version %s  restarts %lld  failures %lld\n",
               id ? id : "-", (long long)kz_map_int(o, "pid", 0), a, version ? version : "-",
               (long long)kz_map_int(o, "restarts", 0), (long long)kz_map_int(o, "failures", 0));
        const char *state_dir = kz_map_str(o, "state_dir");
        if (state_dir)
            printf("              state in %s\n", state_dir);
        const char *sandbox = kz_map_str(o, "sandbox");
        if (sandbox && !kz_map_bool(o, "sandbox_enabled", true))
            printf("sandbox       WARNING: %s\n", sandbox);
        else if (sandbox)
            printf("sandbox       %s\n", sandbox);
    }
    const kz_val_t *d = kz_map_get(body, "database");
    if (d && d->type == KZ_VAL_MAP) {
        const char *state = kz_map_str(d, "state");
        const char *where = kz_map_str(d, "where");
        const char *error = kz_map_str(d, "error");
        kz_cli_human_ms(kz_map_int(d, "last_commit_ms_ago", -1), a, sizeof a);
        printf("database      %s  %s  schema %lld  recorded %lld in %lld batches  last commit "
               "%s ago  %.1f/s\n",
               state ? state : "-", where ? where : "-",
               (long long)kz_map_int(d, "schema_version", 0),
               (long long)kz_map_int(d, "recorded", 0), (long long)kz_map_int(d, "batches", 0), a,
               kz_map_float(d, "rate_per_s", 0));
        if (error)
            printf("              error: %s\n", error);
    } else if (o && kz_map_bool(o, "node", false)) {
        printf("database      - (a --node orchestrator does not record)\n");
    } else {
        printf("database      - (not reported by the orchestrator)\n");
    }
    const kz_val_t *s = kz_map_get(body, "spool");
    if (s && s->type == KZ_VAL_MAP) {
        const char *state = kz_map_str(s, "state");
        const char *path = kz_map_str(s, "path");
        kz_cli_human_bytes((double)kz_map_int(s, "bytes", 0), b, sizeof b);
        printf("spool         %s  %s  %s  pending %lld  corrupt skipped %lld  held %lld\n",
               state ? state : "-", path ? path : "-", b, (long long)kz_map_int(s, "pending", 0),
               (long long)kz_map_int(s, "corrupt_skipped", 0),
               (long long)kz_map_int(body, "held", 0));
    }
    const kz_val_t *r = kz_map_get(body, "router");
    if (r && r->type == KZ_VAL_MAP) {
        printf("plans         %lld running  %lld queued  %lld awaiting approval  since the start: "
               "%lld accepted, %lld rejected, %lld failed\n",
               (long long)kz_map_int(r, "running", 0), (long long)kz_map_int(r, "queued", 0),
               (long long)kz_map_int(r, "awaiting", 0), (long long)kz_map_int(r, "accepted", 0),
               (long long)kz_map_int(r, "rejected", 0), (long long)kz_map_int(r, "failed", 0));
        /* each plan on the move and what it waits for: a call that sits in
           the broker's queue (no worker free) reads apart from one at work */
        const kz_val_t *plans = kz_map_get(r, "plans");
        for (uint32_t i = 0; plans && plans->type == KZ_VAL_ARRAY && i < plans->u.arr.count; i++) {
            const kz_val_t *p = &plans->u.arr.items[i];
            const char *id = kz_map_str(p, "plan_id"), *target = kz_map_str(p, "target");
            const char *state = kz_map_str(p, "state");
            kz_cli_human_ms(kz_map_int(p, "for_ms", -1), a, sizeof a);
            printf("  %s  %s  %s for %s", id ? id : "?", target ? target : "-", state ? state : "-",
                   a);
            const kz_val_t *calls = kz_map_get(p, "calls");
            for (uint32_t k = 0; calls && calls->type == KZ_VAL_ARRAY && k < calls->u.arr.count;
                 k++) {
                const kz_val_t *c = &calls->u.arr.items[k];
                const char *service = kz_map_str(c, "service"), *cs = kz_map_str(c, "state");
                kz_cli_human_ms(kz_map_int(c, "for_ms", -1), b, sizeof b);
                bool queued = cs && strcmp(cs, "queued") == 0;
                printf("%s %s %s %s%s", k ? "," : ":", service ? service : "?",
                       queued ? "waiting in the broker's queue"
                       : cs   ? cs
                              : "?",
                       strcmp(cs ? cs : "", "done") == 0 ? "" : "for ",
                       strcmp(cs ? cs : "", "done") == 0 ? "" : b);
            }
            printf("\n");
        }
    }
    if (broker) {
        const char *state = kz_map_str(broker, "state");
        kz_cli_human_ms(kz_map_int(broker, "uptime_ms", -1), a, sizeof a);
        printf("broker        %s  pid %lld  up %s  restarts %lld  %s\n", state ? state : "-",
               (long long)kz_map_int(broker, "pid", 0), a,
               (long long)kz_map_int(broker, "restarts", 0), cfg->bus.connect.router);
    } else {
        printf("broker        answering on %s\n", cfg->bus.connect.router);
    }
}

/* One status: 0 printed, 1 no answer (message on stderr) */
static int s_show(const kz_config_t *cfg, int timeout_ms, bool json)
{
    char err[1024] = "";
    kz_msg_t *reply = kz_cli_status_call(cfg, timeout_ms, err, sizeof err);
    if (!reply) {
        /* a crash leaves the pid file behind, and often the broker (which
           then answers that nobody serves kaizen.status) */
        char pidfile[PATH_MAX];
        pid_t pid = 0;
        if (kz_state_path(cfg, "run/orchestrator.pid", pidfile, sizeof pidfile) == 0)
            pid = kz_pidfile_read(pidfile);
        if (pid > 0 && !kz_cli_pid_is_ours(cfg, pid)) {
            pid_t broker = kz_cli_find_broker(cfg);
            if (broker > 0)
                return kz_cli_error("status",
                                    "the orchestrator (pid %ld) is gone: it died without "
                                    "stopping; its broker (pid %ld) still runs and keeps what is "
                                    "published meanwhile: run 'kaizen up' to recover (%s)",
                                    (long)pid, (long)broker, err);
            return kz_cli_error("status",
                                "the orchestrator (pid %ld) is gone: it died without stopping; "
                                "run 'kaizen up' to start again, or 'kaizen down' to clean up (%s)",
                                (long)pid, err);
        }
        if (strncmp(err, "no answer", 9) != 0)
            return kz_cli_error("status", "%s", err);
        if (pid > 0)
            return kz_cli_error("status", "the orchestrator (pid %ld) runs but did not answer (%s)",
                                (long)pid, err);
        return kz_cli_error("status", "kaizen is not running (%s)", err);
    }
    const kz_val_t *body = kz_msg_body_const(reply);
    int rc = KZ_EXIT_OK;
    if (json) {
        char *text = kz_val_to_json(body);
        if (text)
            printf("%s\n", text);
        else
            rc = kz_cli_error("status", "out of memory");
        free(text);
    } else {
        size_t n = 0;
        const kz_val_t *broker = NULL;
        const kz_val_t *agents = kz_map_get(body, "agents");
        s_row_t *rows = s_rows(agents, &n, &broker);
        if (!rows && agents && agents->type == KZ_VAL_ARRAY && agents->u.arr.count > 0) {
            kz_msg_destroy(&reply);
            return kz_cli_error("status", "out of memory");
        }
        s_print_table(rows, n);
        s_print_footer(cfg, body, broker);
        free(rows);
    }
    kz_msg_destroy(&reply);
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = kz_cli_error("status", "unable to write the output: %s", strerror(errno));
    return rc;
}

static void s_sleep_ms(int ms)
{
    for (int slept = 0; slept < ms && !s_interrupted; slept += 50) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int s_watch(const kz_config_t *cfg, int timeout_ms, int interval_ms, bool json)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool tty = isatty(STDOUT_FILENO);
    s_interrupted = 0;
    while (!s_interrupted) {
        if (tty && !json)
            printf("\033[H\033[2J");
        if (!json) {
            time_t now = time(NULL);
            struct tm tm;
            char when[32] = "";
            if (localtime_r(&now, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            printf("kaizen status  %s  (every %.1fs, Ctrl-C to stop)\n\n", when,
                   (double)interval_ms / 1000.0);
        }
        fflush(stdout);
        s_show(cfg, timeout_ms, json); /* "not running" is shown and watching goes on */
        if (!tty && !json)
            printf("\n");
        fflush(stdout);
        s_sleep_ms(interval_ms);
    }
    return KZ_EXIT_OK;
}

static const struct option s_opts[] = {
    {"json", no_argument, NULL, 'j'},
    {"watch", optional_argument, NULL, 'w'},
    {"timeout", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    bool json = false, watch = false;
    int interval_ms = S_DEFAULT_WATCH_MS, timeout_ms = S_DEFAULT_TIMEOUT_MS;
    opterr = 0;
    int c;
    /* "+": no permutation, so "--watch 5s" can take the next word */
    while ((c = getopt_long(argc, argv, "+:", s_opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'w': {
            watch = true;
            const char *value = optarg;
            if (!value && optind < argc && argv[optind][0] != '-')
                value = argv[optind++];
            if (value && (kz_parse_duration_ms(value, &interval_ms) != 0 || interval_ms < 100))
                return kz_cli_usage("status",
                                    "invalid watch interval '%s' (e.g. 1s, 500ms; at "
                                    "least 100ms)",
                                    value);
            break;
        }
        case 't':
            if (kz_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms <= 0)
                return kz_cli_usage("status", "invalid duration '%s' (e.g. 500ms, 3s)", optarg);
            break;
        default:
            return kz_cli_bad_option("status", c, argv);
        }
    }
    if (optind < argc)
        return kz_cli_usage("status", "unexpected argument '%s'", argv[optind]);
    if (watch)
        return s_watch(cli->cfg, timeout_ms, interval_ms, json);
    return s_show(cli->cfg, timeout_ms, json);
}

const kz_cli_cmd_t kz_cmd_status = {
    "status", "show every agent, the database and the spool (kaizen.status)",
    s_usage,  s_run,
    true,     s_opt_tables,
    NULL,
};
