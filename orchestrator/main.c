/*  main.c - kaizen-orchestrator: supervisor, recorder and status service

    One loop on the bus. The orchestrator (without --node) starts the
    broker and this host's agents (supervisor.c), joins queue group
    "kaizen.recorder" for every topic and hands each delivery to the
    recorder (recorder.c), which stores it in PostgreSQL - or spools it -
    before acknowledging it, joins queue group "kaizen.router" for the
    plan.* events and hands them to the router (router.c), which drives
    each plan through its states, and answers "kaizen.status". With
    --node it only supervises the agents configured for its host and
    follows the agent.* events.

    Stopping (SIGTERM/SIGINT): the router first (running plans get
    supervisor.stop_timeout to finish while the agents still serve them),
    then agents in reverse layer order while their last messages are
    still recorded, then the recorder group is drained and flushed,
    agent.bye is said, and the broker stops last.
*/
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "kz_agent.h"
#include "kz_bus.h"
#include "kz_config.h"
#include "kz_git.h"
#include "kz_keys.h"
#include "kz_log.h"
#include "kz_state.h"
#include "recorder.h"
#include "router.h"
#include "supervisor.h"

#ifndef KZ_VERSION
#define KZ_VERSION "0.1.0"
#endif

#define S_STATUS_SERVICE "kaizen.status"
#define S_PLAN_SERVICE   "kaizen.plan"

typedef struct {
    kz_config_t *cfg;
    const char *config_path;
    bool node;
    char host[256];
    char id[320];
    kz_bus_t *bus;
    kz_supervisor_t *sup;
    kz_recorder_t *rec;
    kz_router_t *router;
    int64_t started_us;
    int64_t next_hb;   /* mono ms */
    uint64_t received; /* deliveries taken from the bus */
} s_orch_t;

static volatile sig_atomic_t s_stop;

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_on_chld(int sig)
{
    (void)sig; /* only interrupts the bus wait: the supervisor reaps */
}

static void s_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the bus wait returns EINTR */
    sa.sa_handler = s_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = s_on_chld;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ telemetry */

static int s_publish(s_orch_t *self, kz_msg_t **msg_p)
{
    if (!*msg_p)
        return kz_fail("out of memory");
    return kz_bus_publish(self->bus, msg_p);
}

static void s_say_hello(s_orch_t *self)
{
    kz_msg_t *msg = kz_msg_new("agent.hello");
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "name", "orchestrator");
        rc |= kz_map_put_str(msg, b, "layer", "orchestration");
        rc |= kz_map_put_str(msg, b, "host", self->host);
        rc |= kz_map_put_int(msg, b, "pid", (int64_t)getpid());
        rc |= kz_map_put_str(msg, b, "version", KZ_VERSION);
        rc |= kz_map_put_int(msg, b, "interval_ms", 0);
        if (!self->node) {
            kz_val_t *s = kz_map_put_array(msg, b, "services");
            rc |= !s || kz_val_set_str(msg, kz_array_push(msg, s), S_STATUS_SERVICE);
            rc |= !s || kz_val_set_str(msg, kz_array_push(msg, s), S_PLAN_SERVICE);
            kz_val_t *g = kz_map_put_array(msg, b, "groups");
            rc |= !g || kz_val_set_str(msg, kz_array_push(msg, g), KZ_RECORDER_GROUP);
            if (self->router)
                rc |= !g || kz_val_set_str(msg, kz_array_push(msg, g), KZ_ROUTER_GROUP);
        }
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    if (s_publish(self, &msg) != 0)
        kz_warn("unable to publish agent.hello");
}

static void s_say_heartbeat(s_orch_t *self, const char *state)
{
    kz_msg_t *msg = kz_msg_new("agent.heartbeat");
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "name", "orchestrator");
        rc |= kz_map_put_str(msg, b, "state", state);
        rc |= kz_map_put_int(msg, b, "uptime_ms", (kz_now_us() - self->started_us) / 1000);
        rc |= kz_map_put_int(msg, b, "cycles", 0);
        rc |= kz_map_put_int(msg, b, "pid", (int64_t)getpid());
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    if (s_publish(self, &msg) != 0)
        kz_warn("unable to publish agent.heartbeat");
}

static void s_say_bye(s_orch_t *self, const char *reason)
{
    kz_msg_t *msg = kz_msg_new("agent.bye");
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        if (kz_map_put_str(msg, b, "name", "orchestrator") != 0 ||
            kz_map_put_str(msg, b, "reason", reason) != 0)
            kz_msg_destroy(&msg);
    }
    if (s_publish(self, &msg) != 0)
        kz_warn("unable to publish agent.bye");
}

/* --------------------------------------------------------------- status */

static kz_msg_t *s_status_reply(s_orch_t *self)
{
    kz_msg_t *msg = kz_msg_new("status.reply");
    if (!msg)
        return NULL;
    kz_val_t *b = kz_msg_body(msg);
    int rc = 0;
    kz_val_t *o = kz_map_put_map(msg, b, "orchestrator");
    if (!o)
        goto fail;
    rc |= kz_map_put_str(msg, o, "id", self->id);
    rc |= kz_map_put_str(msg, o, "host", self->host);
    rc |= kz_map_put_int(msg, o, "pid", (int64_t)getpid());
    rc |= kz_map_put_int(msg, o, "uptime_ms", (kz_now_us() - self->started_us) / 1000);
    rc |= kz_map_put_bool(msg, o, "node", self->node);
    rc |= kz_map_put_str(msg, o, "version", KZ_VERSION);
    rc |= kz_map_put_str(msg, o, "state_dir", self->cfg->state_dir);
    /* how this host's agents run a target's code (docs/sandbox.md) */
    char sandbox[512];
    kz_sandbox_describe(sandbox, sizeof sandbox);
    rc |= kz_map_put_bool(msg, o, "sandbox_enabled", kz_sandbox_enabled());
    rc |= kz_map_put_str(msg, o, "sandbox", sandbox);
    if (self->config_path)
        rc |= kz_map_put_str(msg, o, "config", self->config_path);
    rc |= kz_map_put_int(msg, o, "restarts", (int64_t)kz_supervisor_restarts(self->sup));
    rc |= kz_map_put_int(msg, o, "failures", (int64_t)kz_supervisor_failures(self->sup));
    rc |= kz_map_put_int(msg, o, "received", (int64_t)self->received);
    if (rc != 0)
        goto fail;
    kz_val_t *agents = kz_map_put_array(msg, b, "agents");
    if (!agents || kz_supervisor_status(self->sup, msg, agents) != 0)
        goto fail;
    if (self->rec && kz_recorder_status(self->rec, msg, b) != 0)
        goto fail;
    if (self->router && kz_router_status(self->router, msg, b) != 0)
        goto fail;
    return msg;
fail:
    kz_msg_destroy(&msg);
    return NULL;
}

static void s_reply_error(s_orch_t *self, const kz_delivery_t *d, const char *code,
                          const char *text)
{
    kz_msg_t *msg = kz_msg_new("error");
    if (msg && (kz_map_put_str(msg, kz_msg_body(msg), "code", code) != 0 ||
                kz_map_put_str(msg, kz_msg_body(msg), "message", text) != 0))
        kz_msg_destroy(&msg);
    if (!msg || kz_bus_reply(self->bus, d, &msg) != 0)
        kz_warn("unable to answer a request for '%s'", d->topic);
}

/* kaizen.plan: what the router's record says of one plan (plan.query ->
   plan.info, PROTOCOL.md 4.13a). The executors ask before they touch a
   repository and refuse a plan the router is not executing. */
static void s_plan_request(s_orch_t *self, const kz_delivery_t *d)
{
    const char *plan_id = kz_map_str(kz_msg_body_const(d->msg), "plan_id");
    if (strcmp(kz_msg_type(d->msg), "plan.query") != 0 || !plan_id || !kz_id_valid(plan_id)) {
        s_reply_error(self, d, "bad_request", "kaizen.plan takes a plan.query {plan_id}");
        return;
    }
    if (!self->router) {
        s_reply_error(self, d, "unavailable", "this orchestrator routes no plans (no targets)");
        return;
    }
    kz_msg_t *reply = kz_msg_new("plan.info");
    if (!reply || kz_router_plan_info(self->router, plan_id, reply, kz_msg_body(reply)) != 0) {
        kz_msg_destroy(&reply);
        s_reply_error(self, d, "internal", "unable to build the plan's record");
        return;
    }
    if (kz_bus_reply(self->bus, d, &reply) != 0)
        kz_warn("unable to send the kaizen.plan reply");
}

/* ------------------------------------------------------------- the loop */

static void s_dispatch(s_orch_t *self, kz_delivery_t **d_p)
{
    kz_delivery_t *d = *d_p;
    self->received++;
    switch (d->kind) {
    case KZ_DELIVERY_GROUP:
        if (self->router && strcmp(d->group, KZ_ROUTER_GROUP) == 0) {
            kz_router_add(self->router, d_p); /* the router acks (or nacks) it */
            return;
        }
        /* agent.* also arrives through our subscription: tracking keeps
           going while the recorder holds deliveries it cannot store */
        kz_supervisor_count(self->sup, kz_msg_src(d->msg));
        if (self->rec) {
            if (kz_recorder_add(self->rec, d_p) != 0)
                kz_warn("recorder did not take message %s yet", kz_msg_id(d->msg));
            return; /* the recorder owns it (or kept it) */
        }
        kz_bus_ack(self->bus, d);
        break;
    case KZ_DELIVERY_EVENT:
        if (self->node)
            kz_supervisor_count(self->sup, kz_msg_src(d->msg));
        if (strncmp(kz_msg_type(d->msg), "agent.", 6) == 0)
            kz_supervisor_on_message(self->sup, d->msg);
        else if (self->router && strcmp(kz_msg_type(d->msg), "request.started") == 0)
            kz_router_on_started(self->router, d->msg);
        break;
    case KZ_DELIVERY_REQUEST:
        if (strcmp(d->topic, S_PLAN_SERVICE) == 0)
            s_plan_request(self, d);
        else if (strcmp(d->topic, S_STATUS_SERVICE) == 0 &&
                 strcmp(kz_msg_type(d->msg), "status.request") == 0) {
            kz_msg_t *reply = s_status_reply(self);
            if (!reply)
                s_reply_error(self, d, "internal", "unable to build the status");
            else if (kz_bus_reply(self->bus, d, &reply) != 0)
                kz_warn("unable to send the status reply");
        } else
            s_reply_error(self, d, "bad_request", "kaizen.status takes a status.request");
        break;
    }
    kz_bus_delivery_destroy(d_p);
}

/* Work the bus for up to TIMEOUT_MS: deliveries, recorder housekeeping,
   our heartbeat. The supervisor is ticked by the caller of the main loop
   only (the supervisor calls this while it waits). */
static void s_pump(void *arg, int timeout_ms)
{
    s_orch_t *self = arg;
    int64_t deadline = s_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    do {
        int64_t now = s_mono_ms();
        int64_t wait = deadline - now;
        if (self->rec) {
            int64_t due = kz_recorder_tick(self->rec);
            if (due < wait)
                wait = due;
        }
        if (self->router) {
            int64_t due = kz_router_tick(self->router);
            if (due < wait)
                wait = due;
        }
        if (now >= self->next_hb) {
            s_say_heartbeat(self, s_stop ? "stopping" : "idle");
            self->next_hb = now + self->cfg->agent_heartbeat_ms;
        }
        if (self->next_hb - now < wait)
            wait = self->next_hb - now;
        if (wait < 0)
            wait = 0;
        kz_delivery_t *d = NULL;
        int rc = kz_bus_recv(self->bus, &d, (int)wait);
        int err = errno;
        if (rc == 1)
            s_dispatch(self, &d);
        /* hand over what the router, the supervisor and the heartbeat
           published (docs/durability.md); bounded */
        kz_bus_flush_step(self->bus, 2000);
        if (rc < 0 && err == EINTR)
            return; /* a signal: SIGCHLD wants the supervisor, SIGTERM the loop */
        else if (rc < 0) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    } while (s_mono_ms() < deadline);
}

static void s_loop(s_orch_t *self)
{
    while (!s_stop) {
        int64_t wait = kz_supervisor_tick(self->sup);
        if (wait > 1000)
            wait = 1000;
        if (wait < 0)
            wait = 0;
        s_pump(self, (int)wait);
    }
}

/* After the agents stopped: take what the broker still holds for the
   recorder until the group has been quiet for a moment (bounded), then
   write the last batch */
static void s_drain(s_orch_t *self)
{
    if (!self->rec)
        return;
    int64_t deadline = s_mono_ms() + 5000;
    uint64_t seen = self->received;
    int quiet = 0;
    while (quiet < 3 && s_mono_ms() < deadline) {
        s_pump(self, 100);
        quiet = self->received == seen ? quiet + 1 : 0;
        seen = self->received;
    }
    if (kz_recorder_flush(self->rec) != 0)
        kz_warn("the last batch could not be stored; the broker keeps it unacknowledged");
}

/* Members the broker lists in group GROUP of its mmi.stats reply, or -1
   when it cannot be told */
static int s_group_members(s_orch_t *self, const char *group)
{
    uint8_t *reply = NULL;
    size_t len = 0;
    char err[256];
    if (kz_bus_call_raw(self->bus, "mmi.stats", "", 0, 1000, &reply, &len, err, sizeof err) != 0)
        return -1;
    int members = -1;
    msgpack_unpacked top;
    msgpack_unpacked_init(&top);
    if (msgpack_unpack_next(&top, (const char *)reply, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        top.data.type == MSGPACK_OBJECT_MAP) {
        members = 0;
        const msgpack_object_map *m = &top.data.via.map;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 6 ||
                memcmp(k->via.str.ptr, "groups", 6) != 0 || v->type != MSGPACK_OBJECT_MAP)
                continue;
            for (uint32_t g = 0; g < v->via.map.size; g++) {
                const msgpack_object *gk = &v->via.map.ptr[g].key;
                const msgpack_object *gv = &v->via.map.ptr[g].val;
                if (gk->type != MSGPACK_OBJECT_STR || gk->via.str.size != strlen(group) ||
                    memcmp(gk->via.str.ptr, group, gk->via.str.size) != 0 ||
                    gv->type != MSGPACK_OBJECT_MAP)
                    continue;
                for (uint32_t f = 0; f < gv->via.map.size; f++) {
                    const msgpack_object *fk = &gv->via.map.ptr[f].key;
                    const msgpack_object *fv = &gv->via.map.ptr[f].val;
                    if (fk->type == MSGPACK_OBJECT_STR && fk->via.str.size == 7 &&
                        memcmp(fk->via.str.ptr, "members", 7) == 0 &&
                        fv->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                        members = fv->via.u64 > INT_MAX ? INT_MAX : (int)fv->via.u64;
                }
            }
        }
    }
    msgpack_unpacked_destroy(&top);
    free(reply);
    return members;
}

/* After a crash of the previous orchestrator the broker still counts it as
   the recorder group's member until its heartbeats have been missed; the
   messages it held are requeued, ahead of newer ones, only then. Joining
   before that would store newer messages first. So wait (bounded: the
   broker's expiry plus a second) until the group has no member; a second
   live recorder, if someone runs one, only delays the start. */
static void s_wait_previous_recorder(s_orch_t *self)
{
    int64_t bound =
        (int64_t)self->cfg->bus.heartbeat_ms * (self->cfg->bus.heartbeat_liveness + 1) + 1000;
    int64_t deadline = s_mono_ms() + bound;
    bool said = false;
    while (!s_stop && s_mono_ms() < deadline) {
        int members = s_group_members(self, KZ_RECORDER_GROUP);
        if (members <= 0)
            return;
        if (!said) {
            kz_info("waiting up to %" PRId64 " ms for the broker to release the previous "
                    "recorder's messages",
                    bound);
            said = true;
        }
        s_pump(self, 200);
    }
    if (said)
        kz_warn("the recorder group still has a member: joining it");
}

/* ---------------------------------------------------------------- flags */

static void s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: kaizen-orchestrator [options]\n"
        "the master orchestrator: starts and supervises this host's broker and agents,\n"
        "records every bus message in PostgreSQL and answers kaizen.status\n"
        "(normally started by 'kaizen up')\n\n"
        "  -c FILE               configuration file (default $KAIZEN_CONFIG, else ./kaizen.yaml)\n"
        "  --node                supervise only the agents configured for this host:\n"
        "                        no broker, no recorder, no status service\n"
        "  --host NAME           this host's name in agents[].host (default: hostname)\n"
        "  --adopt-broker PID    supervise the running kaizen-broker PID (left by an\n"
        "                        orchestrator that died; 'kaizen up' passes it) instead of\n"
        "                        starting one: what it queued meanwhile is kept\n"
        "  --log-file PATH       log to PATH (rotated per log.max_size and log.keep)\n"
        "  --log-level LEVEL     debug, info, warn or error\n"
        "  --log-format FORMAT   text or json\n"
        "  -h, --help            show this help\n");
}

typedef struct {
    const char *config;
    const char *host;
    const char *log_file;
    pid_t adopt_broker; /* --adopt-broker PID, 0 none */
    bool node;
    bool have_level, have_format, json;
    kz_log_level_t level;
} s_flags_t;

/* 0 parsed, 1 help shown, 2 usage error */
static int s_parse_flags(int argc, char **argv, s_flags_t *fl)
{
    enum { O_NODE = 256, O_HOST, O_LOGFILE, O_LEVEL, O_FORMAT, O_ADOPT };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"node", no_argument, NULL, O_NODE},
        {"host", required_argument, NULL, O_HOST},
        {"adopt-broker", required_argument, NULL, O_ADOPT},
        {"log-file", required_argument, NULL, O_LOGFILE},
        {"log-level", required_argument, NULL, O_LEVEL},
        {"log-format", required_argument, NULL, O_FORMAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(fl, 0, sizeof *fl);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            fl->config = optarg;
            break;
        case O_NODE:
            fl->node = true;
            break;
        case O_HOST:
            fl->host = optarg;
            break;
        case O_LOGFILE:
            fl->log_file = optarg;
            break;
        case O_ADOPT: {
            char *end = NULL;
            errno = 0;
            long pid = strtol(optarg, &end, 10);
            if (errno || !end || *end || pid <= 0 || pid > INT_MAX) {
                fprintf(stderr, "kaizen-orchestrator: invalid --adopt-broker '%s'\n", optarg);
                return 2;
            }
            fl->adopt_broker = (pid_t)pid;
            break;
        }
        case O_LEVEL:
            if (kz_log_level_parse(optarg, &fl->level) != 0) {
                fprintf(stderr, "kaizen-orchestrator: invalid --log-level '%s'\n", optarg);
                return 2;
            }
            fl->have_level = true;
            break;
        case O_FORMAT:
            if (kz_log_format_parse(optarg, &fl->json) != 0) {
                fprintf(stderr, "kaizen-orchestrator: invalid --log-format '%s'\n", optarg);
                return 2;
            }
            fl->have_format = true;
            break;
        case 'h':
            s_usage(stdout);
            return 1;
        case ':':
            fprintf(stderr, "kaizen-orchestrator: option '%s' needs a value\n", argv[optind - 1]);
            s_usage(stderr);
            return 2;
        default:
            fprintf(stderr, "kaizen-orchestrator: unknown option '%s'\n", argv[optind - 1]);
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kaizen-orchestrator: unexpected argument '%s'\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    return 0;
}

/* The directory of this executable: the broker and agents live beside it */
static void s_bin_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0) {
        snprintf(buf, len, ".");
        return;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
}

int main(int argc, char **argv)
{
    s_flags_t fl;
    int prc = s_parse_flags(argc, argv, &fl);
    if (prc == 1)
        return 0;
    if (prc == 2)
        return 2;

    char err[1024];
    s_orch_t orch;
    memset(&orch, 0, sizeof orch);
    s_orch_t *self = &orch;
    self->config_path = fl.config ? fl.config : kz_config_default_path();
    self->cfg = kz_config_open(fl.config, err, sizeof err);
    if (!self->cfg || kz_config_bus_role(self->cfg, KZ_ROLE_ORCHESTRATOR) != 0) {
        fprintf(stderr, "%s\n", self->cfg ? "out of memory" : err);
        kz_config_destroy(&self->cfg);
        return 1;
    }
    self->node = fl.node;
    self->started_us = kz_now_us();
    if (fl.host)
        snprintf(self->host, sizeof self->host, "%s", fl.host);
    else if (gethostname(self->host, sizeof self->host) != 0)
        snprintf(self->host, sizeof self->host, "localhost");
    self->host[sizeof self->host - 1] = '\0';
    snprintf(self->id, sizeof self->id, "orchestrator@%.255s#%ld", self->host, (long)getpid());

    /* an absolute config path for the children, whatever their cwd */
    char config_abs[PATH_MAX];
    if (self->config_path && realpath(self->config_path, config_abs))
        self->config_path = config_abs;

    if (fl.log_file &&
        kz_log_open_file(fl.log_file, self->cfg->log.max_size, self->cfg->log.keep) != 0) {
        fprintf(stderr, "kaizen-orchestrator: unable to open log file '%s': %s\n", fl.log_file,
                strerror(errno));
        kz_config_destroy(&self->cfg);
        return 1;
    }
    kz_log_set_agent(self->id);
    kz_log_set_level(fl.have_level ? fl.level : self->cfg->log.level);
    kz_log_set_json(fl.have_format ? fl.json : self->cfg->log.json);
    s_stop = 0;
    s_signals();

    int exit_code = 1;
    if (kz_state_init(self->cfg, err, sizeof err) != 0) {
        kz_error("%s", err);
        goto done;
    }
    /* TCP requires CURVE: the automatic keys, on first use (not on a
       --node host: its keys are the main host's, copied) */
    bool made = false;
    if (!self->node && kz_keys_ensure(self->cfg, &made, err, sizeof err) != 0) {
        kz_error("%s", err);
        goto done;
    }
    if (made)
        kz_info("made the bus's CURVE keys in %s/" KZ_KEYS_DIR, self->cfg->state_dir);
    if (kz_git_check_targets(self->cfg, err, sizeof err) != 0)
        kz_error("%s", err); /* git refuses it too: that target's work fails */
    char bin_dir[PATH_MAX], log_dir[PATH_MAX], spool[PATH_MAX];
    s_bin_dir(bin_dir, sizeof bin_dir);
    if (kz_state_path(self->cfg, "logs", log_dir, sizeof log_dir) != 0 ||
        kz_state_path(self->cfg, "spool/recorder.spool", spool, sizeof spool) != 0) {
        kz_error("state directory path too long: %s", self->cfg->state_dir);
        goto done;
    }
    kz_supervisor_opts_t opts = {
        .host = self->host,
        .node = self->node,
        .bin_dir = bin_dir,
        .config_path = self->config_path,
        .log_dir = log_dir,
    };
    self->sup = kz_supervisor_new(self->cfg, &opts, err, sizeof err);
    if (!self->sup) {
        kz_error("%s", err);
        goto done;
    }
    self->bus = kz_bus_new(&self->cfg->bus, self->id, err, sizeof err);
    if (!self->bus) {
        kz_error("%s", err);
        goto done;
    }
    self->next_hb = s_mono_ms() + self->cfg->agent_heartbeat_ms;
    /* a broker that outlived the previous orchestrator: kept, with what
       it queued; when it is gone already, a new one is started */
    if (fl.adopt_broker > 0 && !self->node && self->cfg->supervisor.broker &&
        kz_supervisor_adopt_broker(self->sup, fl.adopt_broker, err, sizeof err) != 0)
        kz_warn("%s: starting a broker", err);
    if (!self->node && self->cfg->supervisor.broker &&
        kz_supervisor_start_broker(self->sup, s_pump, self, err, sizeof err) != 0) {
        kz_error("%s", err);
        goto done;
    }
    if (kz_bus_subscribe(self->bus, "agent.") != 0) {
        kz_error("unable to subscribe to agent.* on the bus");
        goto done;
    }
    if (!self->node) {
        self->rec = kz_recorder_new(self->cfg, self->bus, spool, err, sizeof err);
        if (!self->rec) {
            kz_error("%s", err);
            goto done;
        }
        s_wait_previous_recorder(self);
        if (kz_bus_join(self->bus, KZ_RECORDER_GROUP, "") != 0 ||
            kz_bus_offer(self->bus, S_STATUS_SERVICE) != 0 ||
            kz_bus_offer(self->bus, S_PLAN_SERVICE) != 0) {
            kz_error("unable to join '%s' or offer '%s' and '%s' on the bus", KZ_RECORDER_GROUP,
                     S_STATUS_SERVICE, S_PLAN_SERVICE);
            goto done;
        }
        /* without targets there is nothing a plan could change: plans stay
           with the broker for an orchestrator that has some */
        if (self->cfg->targets_count == 0) {
            kz_info("no targets configured: not routing plans");
        } else {
            self->router = kz_router_new(self->cfg, self->bus, self->id, err, sizeof err);
            if (!self->router) {
                kz_error("%s", err);
                goto done;
            }
            if (kz_bus_join(self->bus, KZ_ROUTER_GROUP, KZ_ROUTER_PREFIX) != 0 ||
                kz_bus_subscribe(self->bus, "request.started") != 0) {
                kz_error("unable to join '%s' on the bus", KZ_ROUTER_GROUP);
                goto done;
            }
        }
    }
    s_say_hello(self);
    kz_info("started on %s (%s), state in %s", self->host, self->node ? "node" : "main",
            self->cfg->state_dir);
    /* a SIGTERM during the start (the broker wait can take seconds):
       no agent is started only to be stopped again */
    if (!s_stop)
        kz_supervisor_start(self->sup, self->bus);
    s_loop(self);

    kz_info("stopping");
    kz_router_stop(self->router, s_pump, self, self->cfg->supervisor.stop_timeout_ms);
    kz_supervisor_stop_agents(self->sup, s_pump, self);
    s_drain(self);
    s_say_heartbeat(self, "stopping");
    s_say_bye(self, "signal");
    s_pump(self, 200); /* let our last words reach the recorder before the broker goes */
    if (self->rec)
        kz_recorder_flush(self->rec);
    exit_code = 0;
done:
    kz_router_stop(self->router, NULL, NULL, 0);
    kz_router_destroy(&self->router);
    kz_recorder_destroy(&self->rec);
    kz_bus_destroy(&self->bus);
    if (self->sup) {
        kz_supervisor_stop_agents(self->sup, NULL, NULL);
        kz_supervisor_stop_broker(self->sup, NULL, NULL);
    }
    kz_supervisor_destroy(&self->sup);
    kz_config_destroy(&self->cfg);
    return exit_code;
}
