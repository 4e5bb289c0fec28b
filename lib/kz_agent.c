/*  kz_agent.c - the agent runtime every kaizen-<name> executable shares

    kz_agent_main: flags, config, logging, bus, agent.hello, then one loop
    that waits on the bus until the next cycle or heartbeat is due, runs
    cycles (every interval, on an agent.run event naming the agent or "*",
    on SIGUSR1), hands deliveries to on_message and acks group deliveries
    it handled. SIGTERM/SIGINT only set a flag (no SA_RESTART, so the bus
    wait returns EINTR at once); the loop then finishes the current step,
    says agent.bye and destroys the bus, which lingers so the bye reaches
    the broker before the process exits. Long work inside a cycle or a
    handler calls kz_agent_keepalive (directly, or as kz_proc's tick), which
    keeps both the bus registrations and agent.heartbeat going meanwhile.
*/
#include "kz_agent.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kz_git.h"
#include "kz_log.h"

#ifndef KZ_VERSION
#define KZ_VERSION "0.1.0"
#endif

#define S_DEFAULT_INTERVAL_MS 60000
#define S_SUBSCRIBE_WAIT_MS   10000 /* for the echo of our own agent.run at the start */

struct kz_agent {
    char run_target[256]; /* envelope target of the agent.run being served, "" when none */
    const kz_agent_def_t *def;
    kz_config_t *cfg;
    kz_bus_t *bus;
    char id[256];
    char host[256];
    int interval_ms;
    int64_t started_us;
    int64_t cycles;
    int64_t last_cycle_ms; /* -1 before the first cycle */
    bool last_ok;
    const char *state;            /* "idle" | "busy" | "stopping" */
    int64_t next_hb;              /* mono ms when agent.heartbeat is due (INT64_MAX: never) */
    const kz_delivery_t *request; /* the request on_message is handling, or NULL */
    int64_t cancel_checked;       /* mono ms of the last look for its cancellation */
    bool cancelled;               /* nobody waits for its reply any more */
    char cancel_why[320];
};

static volatile sig_atomic_t s_stop;
static volatile sig_atomic_t s_run_now;

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_on_usr1(int sig)
{
    (void)sig;
    s_run_now = 1;
}

static void s_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocking waits return EINTR */
    sa.sa_handler = s_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = s_on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kz_agent_make_id(const char *name, char *buf, size_t len)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(buf, len, "%s@%s#%ld", name, host, (long)getpid());
}

kz_bus_t *kz_agent_bus(kz_agent_t *self)
{
    return self->bus;
}

const kz_config_t *kz_agent_config(const kz_agent_t *self)
{
    return self->cfg;
}

const char *kz_agent_id(const kz_agent_t *self)
{
    return self->id;
}

bool kz_agent_stopping(const kz_agent_t *self)
{
    (void)self;
    return s_stop != 0;
}

int kz_agent_publish(kz_agent_t *self, kz_msg_t **msg_p)
{
    kz_msg_t *msg = *msg_p;
    if (!msg)
        return -1;
    const char *corr = kz_msg_corr(msg);
    const char *cur = kz_log_corr();
    if ((!corr || !*corr) && cur && *cur && kz_msg_set_corr(msg, cur) != 0) {
        kz_msg_destroy(msg_p);
        return kz_fail("out of memory");
    }
    return kz_bus_publish(self->bus, msg_p);
}

/* ------------------------------------------------------------ telemetry */

static int s_say_hello(kz_agent_t *self)
{
    kz_msg_t *msg = kz_msg_new("agent.hello");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    if (kz_map_put_str(msg, b, "name", self->def->name) != 0 ||
        kz_map_put_str(msg, b, "layer", self->def->layer) != 0 ||
        kz_map_put_str(msg, b, "host", self->host) != 0 ||
        kz_map_put_int(msg, b, "pid", (int64_t)getpid()) != 0 ||
        kz_map_put_str(msg, b, "version", KZ_VERSION) != 0 ||
        kz_map_put_int(msg, b, "interval_ms", self->interval_ms) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    return kz_bus_publish(self->bus, &msg);
}

static int s_say_heartbeat(kz_agent_t *self)
{
    kz_msg_t *msg = kz_msg_new("agent.heartbeat");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    int rc = kz_map_put_str(msg, b, "name", self->def->name);
    rc |= kz_map_put_str(msg, b, "state", self->state);
    rc |= kz_map_put_int(msg, b, "uptime_ms", (kz_now_us() - self->started_us) / 1000);
    rc |= kz_map_put_int(msg, b, "cycles", self->cycles);
    if (self->last_cycle_ms >= 0) {
        rc |= kz_map_put_int(msg, b, "last_cycle_ms", self->last_cycle_ms);
        rc |= kz_map_put_str(msg, b, "last_result", self->last_ok ? "ok" : "error");
    }
    rc |= kz_map_put_int(msg, b, "pid", (int64_t)getpid());
    if (rc != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    return kz_bus_publish(self->bus, &msg);
}

static int s_say_bye(kz_agent_t *self, const char *reason)
{
    kz_msg_t *msg = kz_msg_new("agent.bye");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    if (kz_map_put_str(msg, b, "name", self->def->name) != 0 ||
        kz_map_put_str(msg, b, "reason", reason) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    return kz_bus_publish(self->bus, &msg);
}

void kz_agent_keepalive(kz_agent_t *self)
{
    if (!self || !self->bus)
        return;
    if (kz_bus_keepalive(self->bus) != 0)
        kz_warn("unable to send bus heartbeats during long work");
    int64_t now = s_mono_ms();
    if (now < self->next_hb)
        return;
    /* whoever calls this is in the middle of long work */
    const char *state = self->state;
    if (strcmp(state, "idle") == 0)
        self->state = "busy";
    if (s_say_heartbeat(self) != 0)
        kz_warn("unable to publish agent.heartbeat");
    self->state = state;
    self->next_hb = now + self->cfg->agent_heartbeat_ms;
}

void kz_agent_proc_tick(void *arg)
{
    kz_agent_keepalive(arg);
}

bool kz_agent_cancelled(kz_agent_t *self, char *why, size_t len)
{
    if (!self || !self->request)
        return false;
    if (!self->cancelled) {
        /* a look costs a non-blocking read of the event socket: a few per
           second are plenty for work that runs for seconds */
        int64_t now = s_mono_ms();
        if (now - self->cancel_checked < 200)
            return false;
        self->cancel_checked = now;
        self->cancelled = kz_bus_request_cancelled(self->bus, self->request, self->cancel_why,
                                                   sizeof self->cancel_why);
        if (self->cancelled)
            kz_info("request to '%s' %s: stopping its work", self->request->topic,
                    self->cancel_why);
    }
    if (self->cancelled && why && len)
        snprintf(why, len, "%s", self->cancel_why);
    return self->cancelled;
}

bool kz_agent_proc_cancel(void *arg)
{
    return kz_agent_cancelled(arg, NULL, 0);
}

bool kz_agent_wait_tick(void *arg)
{
    kz_agent_keepalive(arg);
    return !kz_agent_stopping(arg);
}

/* request.started {id, service, plan_id}: the request left the broker's
   queue and this agent works on it (run-once and the router tell a
   request that waits from one that runs by it) */
static void s_say_started(kz_agent_t *self, const kz_delivery_t *d)
{
    kz_msg_t *msg = kz_msg_new("request.started");
    if (!msg)
        return;
    const char *plan_id = kz_map_str(kz_msg_body_const(d->msg), "plan_id");
    const char *target = kz_msg_target(d->msg);
    kz_val_t *b = kz_msg_body(msg);
    if (kz_map_put_str(msg, b, "id", kz_msg_id(d->msg)) != 0 ||
        kz_map_put_str(msg, b, "service", d->topic) != 0 ||
        (plan_id && kz_id_valid(plan_id) && kz_map_put_str(msg, b, "plan_id", plan_id) != 0) ||
        (target && *target && kz_msg_set_target(msg, target) != 0) ||
        kz_msg_set_corr(msg, kz_msg_id(d->msg)) != 0) {
        kz_msg_destroy(&msg);
        return;
    }
    if (kz_bus_publish(self->bus, &msg) != 0)
        kz_warn("unable to publish request.started for '%s'", d->topic);
}

/* ------------------------------------------------------------- the work */

/* Hand over what this step published (kz_bus_flush_step): at the end
   of every cycle and every handled delivery, before a group delivery is
   acknowledged; bounded, the outbox keeps what is not confirmed */
#define S_FLUSH_MS 5000

static void s_flush(kz_agent_t *self)
{
    kz_bus_flush_step(self->bus, S_FLUSH_MS);
}

/* One cycle under a fresh correlation id. 0 / -1 as the cycle returned */
static int s_run_cycle(kz_agent_t *self, const char *why)
{
    if (!self->def->cycle)
        return 0;
    char corr[32];
    kz_ulid(corr);
    kz_log_set_corr(corr);
    self->state = "busy";
    kz_debug("cycle %" PRId64 " starts (%s)", self->cycles + 1, why);
    int64_t t0 = s_mono_ms();
    int rc = self->def->cycle(self, self->def->arg);
    s_flush(self);
    self->last_cycle_ms = s_mono_ms() - t0;
    self->cycles++;
    self->last_ok = rc == 0;
    if (rc != 0)
        kz_warn("cycle failed after %" PRId64 " ms", self->last_cycle_ms);
    else
        kz_debug("cycle done in %" PRId64 " ms", self->last_cycle_ms);
    self->state = "idle";
    kz_log_set_corr(NULL);
    return rc == 0 ? 0 : -1;
}

/* An agent.run event: is it for us? */
static bool s_run_is_for_us(kz_agent_t *self, const kz_delivery_t *d)
{
    const char *who = kz_map_str(kz_msg_body_const(d->msg), "agent");
    return who && (strcmp(who, "*") == 0 || strcmp(who, self->def->name) == 0 ||
                   strcmp(who, self->id) == 0);
}

static void s_reply_error(kz_agent_t *self, const kz_delivery_t *d, const char *code,
                          const char *text)
{
    kz_msg_t *reply = kz_msg_new("error");
    if (!reply)
        return;
    kz_val_t *b = kz_msg_body(reply);
    if (kz_map_put_str(reply, b, "code", code) != 0 ||
        kz_map_put_str(reply, b, "message", text) != 0) {
        kz_msg_destroy(&reply);
        return;
    }
    kz_bus_reply(self->bus, d, &reply);
}

static void s_dispatch(kz_agent_t *self, kz_delivery_t *d)
{
    if (d->kind == KZ_DELIVERY_EVENT && strcmp(d->topic, "agent.run") == 0 &&
        strcmp(kz_msg_type(d->msg), "agent.run") == 0) {
        if (s_run_is_for_us(self, d)) {
            const char *target = kz_msg_target(d->msg);
            kz_info("cycle requested by '%s'%s%s", kz_msg_src(d->msg), target ? " for target " : "",
                    target ? target : "");
            snprintf(self->run_target, sizeof self->run_target, "%s", target ? target : "");
            s_run_cycle(self, "requested");
            self->run_target[0] = '\0';
        }
        return;
    }
    const char *corr = kz_msg_corr(d->msg);
    kz_log_set_corr(corr && *corr ? corr : kz_msg_id(d->msg));
    int rc = 0;
    char why[320];
    if (d->kind == KZ_DELIVERY_REQUEST && kz_bus_request_cancelled(self->bus, d, why, sizeof why)) {
        /* its client stopped waiting while it sat in the broker's queue */
        kz_info("request to '%s' from '%s' not served: %s", d->topic, kz_msg_src(d->msg), why);
        s_reply_error(self, d, "cancelled", why);
    } else if (self->def->on_message) {
        self->state = "busy";
        if (d->kind == KZ_DELIVERY_REQUEST) {
            self->request = d;
            self->cancelled = false;
            self->cancel_checked = s_mono_ms();
            s_say_started(self, d);
        }
        rc = self->def->on_message(self, d, self->def->arg);
        self->request = NULL;
        self->state = "idle";
    } else if (d->kind == KZ_DELIVERY_REQUEST)
        s_reply_error(self, d, "unsupported", "this agent serves no requests");
    if (d->kind == KZ_DELIVERY_REQUEST && !kz_bus_replied(d)) {
        /* a request left unanswered would hold the broker's worker slot
           and keep the client waiting until its timeout */
        kz_warn("request to '%s' got no reply from the handler, answering with an error", d->topic);
        s_reply_error(self, d, rc == 0 ? "no_reply" : "failed",
                      rc == 0 ? "the agent's handler sent no reply" : "the agent's handler failed");
    }
    s_flush(self);
    if (d->kind == KZ_DELIVERY_GROUP) {
        /* an unsettled delivery would hold one of the member's credits
           for good: nack it so another attempt (here or elsewhere) comes,
           up to broker.max_deliveries */
        if (rc == 0)
            kz_bus_ack(self->bus, d);
        else {
            kz_warn("handling '%s' from group '%s' failed, handing it back", d->topic, d->group);
            kz_bus_nack(self->bus, d);
        }
    }
    kz_log_set_corr(NULL);
}

/* Wait until the broker delivers our agent.run subscription: our own
   probe agent.run ("ID/subscribed", naming no agent) comes back. Until
   then an agent.run sent to us - by someone who saw our agent.hello - could
   be lost to the slow-joiner effect. Whatever else arrives meanwhile is
   handled as usual. Gives up after S_SUBSCRIBE_WAIT_MS (no broker yet: the
   subscription is made when it comes), with a warning. */
static void s_dispatch_other(kz_delivery_t *d, void *arg)
{
    s_dispatch(arg, d);
}

static void s_wait_subscribed(kz_agent_t *self)
{
    char probe[256];
    snprintf(probe, sizeof probe, "%.200s/subscribed", self->id);
    int rc = kz_bus_await_echo(self->bus, probe, S_SUBSCRIBE_WAIT_MS, 250, s_dispatch_other, self);
    if ((rc > 0 || rc == -2) && !s_stop)
        kz_warn("no echo of our own agent.run within %d ms: an agent.run sent now may be missed",
                S_SUBSCRIBE_WAIT_MS);
}

/* --------------------------------------------------------------- flags */

static void s_usage(FILE *out, const kz_agent_def_t *def)
{
    fprintf(
        out,
        "usage: kaizen-%s [options]\n"
        "%s\n\n"
        "  -c FILE               configuration file (default $KAIZEN_CONFIG, else ./kaizen.yaml)\n"
        "  --id ID               agent id (default %s@HOST#PID)\n"
        "  --interval DURATION   time between cycles, e.g. 30s (0 = only on demand)\n"
        "  --once                run one cycle, say bye and exit\n"
        "  --log-file PATH       log to PATH, rotated per log.max_size and log.keep\n"
        "                        (stderr goes there too)\n"
        "  --log-level LEVEL     debug, info, warn or error\n"
        "  --log-format FORMAT   text or json\n"
        "  -h, --help            show this help\n",
        def->name, def->summary ? def->summary : "", def->name);
}

typedef struct {
    const char *config;
    const char *id;
    const char *log_file;
    int interval_ms; /* -1 = from the config */
    bool once;
    bool have_level;
    kz_log_level_t level;
    bool have_format;
    bool json;
} s_flags_t;

/* 0 parsed, 1 help shown (exit 0), 2 usage error (exit 2) */
static int s_parse_flags(int argc, char **argv, const kz_agent_def_t *def, s_flags_t *fl)
{
    enum { O_ID = 256, O_INTERVAL, O_ONCE, O_LOGFILE, O_LEVEL, O_FORMAT };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"id", required_argument, NULL, O_ID},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"once", no_argument, NULL, O_ONCE},
        {"log-file", required_argument, NULL, O_LOGFILE},
        {"log-level", required_argument, NULL, O_LEVEL},
        {"log-format", required_argument, NULL, O_FORMAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(fl, 0, sizeof *fl);
    fl->interval_ms = -1;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            fl->config = optarg;
            break;
        case O_ID:
            fl->id = optarg;
            break;
        case O_INTERVAL:
            if (kz_parse_duration_ms(optarg, &fl->interval_ms) != 0 || fl->interval_ms < 0) {
                fprintf(stderr, "kaizen-%s: invalid --interval '%s' (e.g. 500ms, 30s, 5m)\n",
                        def->name, optarg);
                return 2;
            }
            break;
        case O_ONCE:
            fl->once = true;
            break;
        case O_LOGFILE:
            fl->log_file = optarg;
            break;
        case O_LEVEL:
            if (kz_log_level_parse(optarg, &fl->level) != 0) {
                fprintf(stderr, "kaizen-%s: invalid --log-level '%s' (debug, info, warn, error)\n",
                        def->name, optarg);
                return 2;
            }
            fl->have_level = true;
            break;
        case O_FORMAT:
            if (kz_log_format_parse(optarg, &fl->json) != 0) {
                fprintf(stderr, "kaizen-%s: invalid --log-format '%s' (text or json)\n", def->name,
                        optarg);
                return 2;
            }
            fl->have_format = true;
            break;
        case 'h':
            s_usage(stdout, def);
            return 1;
        case ':':
            fprintf(stderr, "kaizen-%s: option '%s' needs a value\n", def->name, argv[optind - 1]);
            s_usage(stderr, def);
            return 2;
        default:
            fprintf(stderr, "kaizen-%s: unknown option '%s'\n", def->name, argv[optind - 1]);
            s_usage(stderr, def);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kaizen-%s: unexpected argument '%s'\n", def->name, argv[optind]);
        s_usage(stderr, def);
        return 2;
    }
    return 0;
}

/* ----------------------------------------------------------------- main */

static int s_loop(kz_agent_t *self)
{
    int hb_ms = self->cfg->agent_heartbeat_ms;
    int64_t now = s_mono_ms();
    int64_t next_cycle = self->interval_ms > 0 ? now + self->interval_ms : INT64_MAX;
    while (!s_stop) {
        if (s_run_now) {
            s_run_now = 0;
            kz_info("cycle requested by SIGUSR1");
            s_run_cycle(self, "signal");
            continue;
        }
        now = s_mono_ms();
        if (now >= next_cycle) {
            s_run_cycle(self, "interval");
            next_cycle += self->interval_ms;
            now = s_mono_ms();
            if (next_cycle <= now) /* the cycle overran: do not queue catch-ups */
                next_cycle = now + self->interval_ms;
            continue;
        }
        if (now >= self->next_hb) {
            if (s_say_heartbeat(self) != 0)
                kz_warn("unable to publish agent.heartbeat");
            self->next_hb = now + hb_ms;
        }
        int64_t until = next_cycle < self->next_hb ? next_cycle : self->next_hb;
        int64_t wait = until - now;
        if (wait > 60000)
            wait = 60000;
        if (wait < 0)
            wait = 0;
        kz_delivery_t *d = NULL;
        int rc = kz_bus_recv(self->bus, &d, (int)wait);
        if (rc == 1) {
            s_dispatch(self, d);
            kz_bus_delivery_destroy(&d);
        } else if (rc < 0 && !s_stop && !s_run_now) {
            /* not a signal: back off instead of spinning on a broken socket */
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

int kz_agent_main(int argc, char **argv, const kz_agent_def_t *def)
{
    s_flags_t fl;
    int prc = s_parse_flags(argc, argv, def, &fl);
    if (prc == 1)
        return 0;
    if (prc == 2)
        return 2;

    char err[512];
    kz_config_t *cfg = kz_config_open(fl.config, err, sizeof err);
    if (!cfg || kz_config_bus_role(cfg, KZ_ROLE_AGENT) != 0) {
        fprintf(stderr, "%s\n", cfg ? "out of memory" : err);
        kz_config_destroy(&cfg);
        return 1;
    }
    /* from here on everything the process writes to stderr goes to the file */
    if (fl.log_file && kz_log_open_file(fl.log_file, cfg->log.max_size, cfg->log.keep) != 0) {
        fprintf(stderr, "kaizen-%s: unable to open log file '%s': %s\n", def->name, fl.log_file,
                strerror(errno));
        kz_config_destroy(&cfg);
        return 1;
    }

    /* targets owned by other users: refused unless trusted (the error
       repeats when a command works on one), trusted ones known to git */
    if (kz_git_check_targets(cfg, err, sizeof err) != 0)
        fprintf(stderr, "kaizen-%s: %s\n", def->name, err);

    kz_agent_t agent;
    memset(&agent, 0, sizeof agent);
    kz_agent_t *self = &agent;
    self->def = def;
    self->cfg = cfg;
    self->state = "idle";
    self->last_cycle_ms = -1;
    self->started_us = kz_now_us();
    /* the first agent.heartbeat is due one period after startup */
    self->next_hb = cfg->agent_heartbeat_ms > 0 ? s_mono_ms() + cfg->agent_heartbeat_ms : INT64_MAX;
    if (gethostname(self->host, sizeof self->host) != 0)
        snprintf(self->host, sizeof self->host, "localhost");
    self->host[sizeof self->host - 1] = '\0';
    if (fl.id)
        snprintf(self->id, sizeof self->id, "%s", fl.id);
    else
        kz_agent_make_id(def->name, self->id, sizeof self->id);
    self->interval_ms = S_DEFAULT_INTERVAL_MS;
    for (size_t i = 0; i < cfg->agents_count; i++)
        if (cfg->agents[i].name && strcmp(cfg->agents[i].name, def->name) == 0)
            self->interval_ms = cfg->agents[i].interval_ms;
    if (fl.interval_ms >= 0)
        self->interval_ms = fl.interval_ms;

    kz_log_set_agent(self->id);
    kz_log_set_level(fl.have_level ? fl.level : cfg->log.level);
    kz_log_set_json(fl.have_format ? fl.json : cfg->log.json);

    s_stop = 0;
    s_run_now = 0;
    s_signals();

    int exit_code = 1;
    self->bus = kz_bus_new(&cfg->bus, self->id, err, sizeof err);
    if (!self->bus) {
        kz_error("%s", err);
        goto done;
    }
    if (kz_bus_subscribe(self->bus, "agent.run") != 0)
        goto done;
    if (def->setup && def->setup(self, def->arg) != 0) {
        kz_error("setup failed");
        goto done;
    }
    /* whoever reacts to our hello with an agent.run must reach us */
    s_wait_subscribed(self);
    if (s_say_hello(self) != 0)
        kz_warn("unable to publish agent.hello");
    kz_info("started (layer %s, interval %d ms)", def->layer, self->interval_ms);

    if (fl.once) {
        int rc = s_run_cycle(self, "once");
        s_say_bye(self, "once");
        s_flush(self);
        exit_code = rc == 0 ? 0 : 1;
        goto done;
    }
    if (self->interval_ms > 0 && !s_stop)
        s_run_cycle(self, "start");
    s_loop(self);

    self->state = "stopping";
    s_say_heartbeat(self);
    if (s_say_bye(self, "signal") != 0)
        kz_warn("unable to publish agent.bye");
    s_flush(self);
    kz_info("stopping");
    exit_code = 0;
done:
    kz_bus_destroy(&self->bus);
    kz_config_destroy(&self->cfg);
    return exit_code;
}

const char *kz_agent_run_target(const kz_agent_t *self)
{
    return self->run_target[0] ? self->run_target : NULL;
}
