/*  supervisor.c - this host's processes, and every agent heard of

    Two tables. The slots are the processes this orchestrator runs: the
    broker (main host only) and instances x agents[] for this host, in
    layer order. Each is started with fork and execv (no shell; argv from
    the config only), stdin /dev/null, stdout and stderr appended to its
    log file, which is also given as --log-file so the child rotates it.
    Children stay in our process group: `kaizen up` makes the orchestrator
    a session leader, and `kaizen down` can then reach every process of
    the installation with one kill of the group, even after a crash of
    the orchestrator. They are reaped one by one (waitpid of the pid we
    know, never -1), so nobody else's child is ever taken.

    Restart policy, as in OTP supervisors: an exit we did not ask for is
    restarted after a back-off that starts at backoff_initial and doubles
    with every exit within restart_window, up to backoff_max. The
    intensity counts exits within the window: with restart_intensity N,
    N restarts are made and the (N+1)th exit within the window marks the
    process failed (intensity 0: the first exit fails it). A process that
    stays up longer than the window starts from backoff_initial again.

    The agents are the tracked table: every agent.hello, heartbeat, bye,
    exited and failed on the bus, from any host, keyed by the sender id.
    A slot is tied to its entry by the pid in agent.hello (and the host:
    ours, by --host or by hostname, since agents report gethostname). An
    entry of a slot dies with the process; the slot keeps what outlives
    it (restarts, last exit). The other entries age: stale, gone, and
    dropped an hour after they stopped; the table never exceeds
    S_MAX_AGENTS.
*/
#include "supervisor.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_log.h"
#include "kz_state.h"

#define S_MAX_AGENTS      10000   /* tracked entries at most */
#define S_FORGET_MS       3600000 /* drop stopped/gone/failed entries after this */
#define S_RATE_SECS       10      /* messages_per_s is over this many seconds */
#define S_SLICE_MS        50      /* waiting in steps of this while stopping */
#define S_PROBE_MS        500     /* one mmi.service probe of the broker */
#define S_BROKER_WAIT     10000   /* broker start wait when start_timeout is 0 */
#define S_LAYER_POLL_MS   100     /* tick at least this often while layers start */
#define S_OTHER_LAYER     "other" /* kz_agent_layer_rank beyond orchestration */
#define S_ADOPTED_KILL_MS 5000    /* an adopted process killed: wait this long for it to go */

typedef enum {
    S_PENDING,  /* its layer has not been started yet */
    S_RUNNING,  /* a process runs */
    S_BACKOFF,  /* exited; restarted at restart_at */
    S_STOPPING, /* SIGTERM sent by us */
    S_STOPPED,  /* stopped by us (or never started because we stopped) */
    S_FAILED    /* given up */
} s_slot_state_t;

typedef enum {
    S_LIVE,   /* hello or heartbeat seen, no word of its end */
    S_BYE,    /* said agent.bye */
    S_EXITED, /* a supervisor said agent.exited */
    S_DEAD    /* a supervisor said agent.failed */
} s_fate_t;

typedef struct s_slot s_slot_t;

/* One agent heard of on the bus */
typedef struct {
    char *id; /* the table key: the sender, name@host#pid */
    char *name;
    char *host;
    char *layer;    /* from agent.hello, else kz_agent_layer_of */
    int64_t pid;    /* -1 unknown */
    int instance;   /* -1 unknown (another host's supervised agent) */
    char state[16]; /* as reported: starting idle busy stopping */
    s_fate_t fate;
    int64_t last_seen; /* mono ms of the last hello or heartbeat */
    int64_t changed;   /* mono ms of the last fate change */
    int64_t uptime_ms; /* reported by the last heartbeat, -1 unknown */
    int64_t uptime_at; /* mono ms of that report (or of hello: uptime 0) */
    int64_t cycles;    /* -1 unknown */
    int64_t last_cycle_ms;
    char last_result[8];
    int64_t restarts; /* from agent.exited / agent.failed, -1 unknown */
    char *last_exit;
    char *failed_reason;
    s_slot_t *slot; /* the process of ours this is, or NULL */
    uint32_t rate[S_RATE_SECS];
    int64_t rate_sec[S_RATE_SECS];
} s_agent_t;

/* One process this host runs */
struct s_slot {
    char *name;
    char label[300]; /* "demo.0", "broker": for logs */
    int instance;
    const char *layer; /* NULL: none known */
    int rank;
    size_t order; /* in the config, for a stable sort */
    bool is_broker;
    bool adopted;                  /* pid is a broker of a previous run, not our child */
    unsigned long long start_tick; /* adopted: its start time (/proc/PID/stat), against reuse */
    char **argv;                   /* argv[0] is the executable's path */
    char *log_path;
    s_slot_state_t state;
    pid_t pid;          /* > 0 while a process runs (RUNNING, STOPPING) */
    pid_t prev_pid;     /* the last process that exited, to ignore its late words */
    int64_t started;    /* mono ms the process was started */
    int64_t restart_at; /* mono ms (BACKOFF) */
    uint64_t restarts;  /* restarts made since we started */
    int64_t *exits;     /* mono ms of the exits within the window, oldest first */
    size_t nexits, exits_cap;
    char last_exit[64];
    char *failed_reason;
    bool hello; /* its agent.hello (or a heartbeat) arrived */
    s_agent_t *agent;
};

struct kz_supervisor {
    const kz_config_t *cfg;
    const kz_supervisor_config_t *sc;
    char *host;      /* ours, as in agents[].host */
    char *real_host; /* gethostname: what agents report */
    bool node;
    char *bin_dir;
    char *config_path;
    char *log_dir;
    kz_bus_t *bus; /* for agent.exited / agent.failed; NULL outside start..stop */
    char *own_id;  /* our bus id: our own exited/failed are not news */

    s_slot_t *broker;
    s_slot_t **slots; /* agents, sorted by rank (stable) */
    size_t nslots;

    bool started;     /* kz_supervisor_start was called */
    bool stopping;    /* kz_supervisor_stop_agents was called: no more restarts */
    int layer;        /* rank being started (-1 none yet) */
    bool layers_done; /* every layer has been started */
    int64_t layer_deadline;

    zhashx_t *agents; /* id -> s_agent_t* */
    int64_t next_age; /* mono ms of the next ageing pass */

    uint64_t restarts;
    uint64_t failures;
};

/* ------------------------------------------------------------- helpers */

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* an interruption (SIGCHLD) only shortens it */
}

/* Wait up to MS: through the orchestrator's pump when there is one */
static void s_wait(kz_supervisor_pump_fn *pump, void *arg, int ms)
{
    if (ms <= 0)
        return;
    if (pump)
        pump(arg, ms);
    else
        s_sleep_ms(ms);
}

static void s_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static char *s_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Replace *FIELD with a copy of VALUE (kept when out of memory) */
static void s_set(char **field, const char *value)
{
    char *copy = s_strdup(value);
    if (value && !copy)
        return;
    free(*field);
    *field = copy;
}

static const char *s_layer_name(int rank)
{
    static const char *const names[] = {"monitoring", "analysis", "planning",     "execution",
                                        "validation", "learning", "orchestration"};
    return rank >= 0 && rank < (int)(sizeof names / sizeof names[0]) ? names[rank] : S_OTHER_LAYER;
}

/* "exit 1", "killed by signal 9" */
static void s_status_text(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d%s", WTERMSIG(status),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(buf, len, "status %d", status);
}

/* The last non-empty line of the file PATH (its last 4 KiB) into BUF;
   "" when there is none */
static void s_last_line(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char tail[4096];
    struct stat st;
    off_t from = 0;
    if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof tail - 1)
        from = st.st_size - (off_t)(sizeof tail - 1);
    ssize_t n = pread(fd, tail, sizeof tail - 1, from);
    close(fd);
    if (n <= 0)
        return;
    tail[n] = '\0';
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
        tail[--n] = '\0';
    char *start = strrchr(tail, '\n');
    start = start ? start + 1 : tail;
    size_t keep = strlen(start);
    if (keep >= len)
        keep = len - 1;
    memcpy(buf, start, keep);
    buf[keep] = '\0';
}

/* State letter and start time (clock ticks since boot) of PID from
   /proc/PID/stat; -1 when it is gone */
static int s_proc_stat(pid_t pid, char *state, unsigned long long *start_tick)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* "pid (comm) S ppid ... starttime(22nd)": comm may hold spaces */
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    *state = *p;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    *start_tick = strtoull(p, NULL, 10);
    return 0;
}

/* An adopted process cannot be waited for: it runs while /proc shows it
   (not a zombie) with the start time it had when it was adopted */
static bool s_adopted_alive(const s_slot_t *slot)
{
    char state = '?';
    unsigned long long tick = 0;
    if (slot->pid <= 0 || s_proc_stat(slot->pid, &state, &tick) != 0)
        return false;
    return state != 'Z' && state != 'X' && tick == slot->start_tick;
}

/* "name@host#pid" -> HOST (into BUF) and *PID; -1 when SRC is not so */
static int s_parse_src(const char *src, char *host, size_t hostlen, int64_t *pid)
{
    const char *at = src ? strchr(src, '@') : NULL;
    const char *hash = src ? strrchr(src, '#') : NULL;
    if (!at || !hash || hash < at)
        return -1;
    char *end;
    errno = 0;
    long long p = strtoll(hash + 1, &end, 10);
    if (errno || *end || end == hash + 1 || p < 0)
        return -1;
    size_t n = (size_t)(hash - at - 1);
    if (n >= hostlen)
        return -1;
    memcpy(host, at + 1, n);
    host[n] = '\0';
    *pid = p;
    return 0;
}

static bool s_is_our_host(const kz_supervisor_t *self, const char *host)
{
    return host && (strcmp(host, self->host) == 0 || strcmp(host, self->real_host) == 0);
}

/* ------------------------------------------------------ tracked agents */

static void s_agent_free(s_agent_t **agent_p)
{
    s_agent_t *a = *agent_p;
    if (!a)
        return;
    free(a->id);
    free(a->name);
    free(a->host);
    free(a->layer);
    free(a->last_exit);
    free(a->failed_reason);
    free(a);
    *agent_p = NULL;
}

/* Remove A from the table and free it (unlinking its slot) */
static void s_agent_drop(kz_supervisor_t *self, s_agent_t *a)
{
    if (a->slot)
        a->slot->agent = NULL;
    zhashx_delete(self->agents, a->id);
    s_agent_free(&a);
}

/* The state shown for A now */
static const char *s_agent_state(const kz_supervisor_t *self, const s_agent_t *a, int64_t now)
{
    switch (a->fate) {
    case S_BYE:
        return "stopped";
    case S_EXITED:
        return "gone";
    case S_DEAD:
        return "failed";
    case S_LIVE:
        break;
    }
    int64_t quiet = now - a->last_seen;
    if (quiet >= self->sc->gone_after_ms)
        return "gone";
    if (quiet >= self->sc->stale_after_ms)
        return "stale";
    return a->state;
}

static bool s_agent_ended(const kz_supervisor_t *self, const s_agent_t *a, int64_t now)
{
    return a->fate != S_LIVE || now - a->last_seen >= self->sc->gone_after_ms;
}

/* Make room for one more entry: drop the oldest ended entry, else the
   quietest one of no slot. false when nothing can go. */
static bool s_agent_make_room(kz_supervisor_t *self, int64_t now)
{
    s_agent_t *ended = NULL, *quiet = NULL;
    for (s_agent_t *a = zhashx_first(self->agents); a; a = zhashx_next(self->agents)) {
        if (a->slot)
            continue;
        if (s_agent_ended(self, a, now)) {
            int64_t when = a->fate != S_LIVE ? a->changed : a->last_seen;
            int64_t best = ended ? (ended->fate != S_LIVE ? ended->changed : ended->last_seen) : 0;
            if (!ended || when < best)
                ended = a;
        } else if (!quiet || a->last_seen < quiet->last_seen)
            quiet = a;
    }
    s_agent_t *victim = ended ? ended : quiet;
    if (!victim)
        return false;
    kz_debug("agent table full, forgetting '%s'", victim->id);
    s_agent_drop(self, victim);
    return true;
}

/* The entry of ID, created (with NAME and HOST) when CREATE. NULL when
   absent, out of memory or the table cannot grow. */
static s_agent_t *s_agent_get(kz_supervisor_t *self, const char *id, const char *name,
                              const char *host, bool create, int64_t now)
{
    s_agent_t *a = zhashx_lookup(self->agents, id);
    if (a || !create)
        return a;
    if (zhashx_size(self->agents) >= S_MAX_AGENTS && !s_agent_make_room(self, now))
        return NULL;
    a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->id = strdup(id);
    a->name = strdup(name ? name : "?");
    a->host = strdup(host ? host : "?");
    const char *layer = kz_agent_layer_of(a->name ? a->name : "");
    a->layer = s_strdup(layer);
    if (!a->id || !a->name || !a->host || (layer && !a->layer) ||
        zhashx_insert(self->agents, a->id, a) != 0) {
        s_agent_free(&a);
        return NULL;
    }
    a->pid = -1;
    a->instance = -1;
    snprintf(a->state, sizeof a->state, "starting");
    a->fate = S_LIVE;
    a->last_seen = a->changed = now;
    a->uptime_ms = -1;
    a->cycles = -1;
    a->last_cycle_ms = -1;
    a->restarts = -1;
    return a;
}

static void s_agent_set_fate(s_agent_t *a, s_fate_t fate, int64_t now)
{
    if (a->fate != fate)
        a->changed = now;
    a->fate = fate;
}

/* The slot whose running process is HOST/PID, or NULL */
static s_slot_t *s_slot_of_pid(kz_supervisor_t *self, const char *host, int64_t pid)
{
    if (pid <= 0 || !s_is_our_host(self, host))
        return NULL;
    for (size_t i = 0; i < self->nslots; i++)
        if (self->slots[i]->pid > 0 && self->slots[i]->pid == pid)
            return self->slots[i];
    return NULL;
}

/* A late word from a process of ours that already exited? */
static bool s_is_late(kz_supervisor_t *self, const char *host, int64_t pid)
{
    if (pid <= 0 || !s_is_our_host(self, host))
        return false;
    for (size_t i = 0; i < self->nslots; i++)
        if (self->slots[i]->prev_pid == pid && self->slots[i]->pid != pid)
            return true;
    return false;
}

/* Tie A to the slot of its process, if it is one of ours */
static void s_agent_link(kz_supervisor_t *self, s_agent_t *a)
{
    if (a->slot && a->slot->pid == a->pid)
        return;
    if (a->slot) { /* the same id from another process (a fixed --id) */
        a->slot->agent = NULL;
        a->slot = NULL;
    }
    s_slot_t *slot = s_slot_of_pid(self, a->host, a->pid);
    if (!slot)
        return;
    if (slot->agent && slot->agent != a)
        slot->agent->slot = NULL;
    slot->agent = a;
    a->slot = slot;
    a->instance = slot->instance;
    if (!slot->hello)
        kz_info("'%s' (pid %ld) is up as '%s'", slot->label, (long)slot->pid, a->id);
    slot->hello = true;
}

/* A new agent said hello: forget the ended entries of the same name on
   the same host that nobody supervises here - the new one replaces them
   (a restart by another host's orchestrator, whose restart count and
   last exit the new one inherits: from the latest, when several) */
static void s_agent_supersede(kz_supervisor_t *self, s_agent_t *fresh)
{
    const char *drop[64];
    size_t n = 0;
    s_agent_t *latest = NULL;
    for (s_agent_t *a = zhashx_first(self->agents); a && n < 64; a = zhashx_next(self->agents))
        if (a != fresh && !a->slot && (a->fate == S_BYE || a->fate == S_EXITED) &&
            strcmp(a->name, fresh->name) == 0 && strcmp(a->host, fresh->host) == 0) {
            drop[n++] = a->id;
            if (a->fate == S_EXITED && (!latest || a->changed > latest->changed))
                latest = a;
        }
    if (latest && !fresh->slot) {
        fresh->restarts = latest->restarts;
        fresh->instance = latest->instance;
        s_set(&fresh->last_exit, latest->last_exit);
    }
    for (size_t i = 0; i < n; i++) {
        s_agent_t *a = zhashx_lookup(self->agents, drop[i]);
        if (a)
            s_agent_drop(self, a);
    }
}

static void s_on_hello(kz_supervisor_t *self, const kz_msg_t *msg, int64_t now)
{
    const kz_val_t *b = kz_msg_body_const(msg);
    const char *name = kz_map_str(b, "name");
    const char *host = kz_map_str(b, "host");
    int64_t pid = kz_map_int(b, "pid", -1);
    bool fresh = !zhashx_lookup(self->agents, kz_msg_src(msg));
    /* the hello of a process of ours that already exited (and was
       reaped) before we read it: no entry, or it shows "idle" for ever */
    if (fresh && s_is_late(self, host, pid))
        return;
    s_agent_t *a = s_agent_get(self, kz_msg_src(msg), name, host, true, now);
    if (!a)
        return;
    s_set(&a->name, name);
    s_set(&a->host, host);
    const char *layer = kz_map_str(b, "layer");
    if (layer)
        s_set(&a->layer, layer);
    a->pid = pid;
    snprintf(a->state, sizeof a->state, "idle"); /* hello comes after setup */
    s_agent_set_fate(a, S_LIVE, now);
    a->last_seen = now;
    a->uptime_ms = 0;
    a->uptime_at = now;
    s_agent_link(self, a);
    if (fresh)
        s_agent_supersede(self, a);
}

static void s_on_heartbeat(kz_supervisor_t *self, const kz_msg_t *msg, int64_t now)
{
    const kz_val_t *b = kz_msg_body_const(msg);
    const char *src = kz_msg_src(msg);
    s_agent_t *a = zhashx_lookup(self->agents, src);
    if (!a) {
        /* no hello seen (we started after it, or it was lost) */
        char host[256];
        int64_t pid;
        if (s_parse_src(src, host, sizeof host, &pid) != 0) {
            snprintf(host, sizeof host, "?");
            pid = -1;
        }
        pid = kz_map_int(b, "pid", pid);
        if (s_is_late(self, host, pid))
            return;
        a = s_agent_get(self, src, kz_map_str(b, "name"), host, true, now);
        if (!a)
            return;
        a->pid = pid;
    }
    const char *state = kz_map_str(b, "state");
    snprintf(a->state, sizeof a->state, "%s", state ? state : "idle");
    a->last_seen = now;
    a->uptime_ms = kz_map_int(b, "uptime_ms", -1);
    a->uptime_at = now;
    a->cycles = kz_map_int(b, "cycles", -1);
    a->last_cycle_ms = kz_map_int(b, "last_cycle_ms", -1);
    const char *result = kz_map_str(b, "last_result");
    snprintf(a->last_result, sizeof a->last_result, "%s", result ? result : "");
    s_agent_link(self, a);
}

static void s_on_bye(kz_supervisor_t *self, const kz_msg_t *msg, int64_t now)
{
    s_agent_t *a = zhashx_lookup(self->agents, kz_msg_src(msg));
    if (!a)
        return; /* nothing to say about an agent we never saw */
    snprintf(a->state, sizeof a->state, "stopping");
    s_agent_set_fate(a, S_BYE, now);
}

/* The entry an agent.exited / agent.failed from another orchestrator is
   about: by the id it may carry, else by host and pid */
static s_agent_t *s_agent_about(kz_supervisor_t *self, const kz_val_t *b)
{
    const char *id = kz_map_str(b, "id");
    s_agent_t *a = id ? zhashx_lookup(self->agents, id) : NULL;
    if (a)
        return a;
    const char *host = kz_map_str(b, "host");
    int64_t pid = kz_map_int(b, "pid", -1);
    if (!host || pid <= 0)
        return NULL;
    for (a = zhashx_first(self->agents); a; a = zhashx_next(self->agents))
        if (a->pid == pid && strcmp(a->host, host) == 0 && !a->slot)
            return a;
    return NULL;
}

static void s_on_exited(kz_supervisor_t *self, const kz_msg_t *msg, int64_t now)
{
    const kz_val_t *b = kz_msg_body_const(msg);
    s_agent_t *a = s_agent_about(self, b);
    if (!a || a->slot)
        return;
    s_agent_set_fate(a, S_EXITED, now);
    s_set(&a->last_exit, kz_map_str(b, "status"));
    a->restarts = kz_map_int(b, "restarts", a->restarts);
    a->instance = (int)kz_map_int(b, "instance", a->instance);
}

static void s_on_failed(kz_supervisor_t *self, const kz_msg_t *msg, int64_t now)
{
    const kz_val_t *b = kz_msg_body_const(msg);
    s_agent_t *a = s_agent_about(self, b);
    if (a && a->slot)
        return;
    if (!a) {
        /* nothing ran (an executable that is missing there): keep the
           word under a name of its own so status shows it */
        const char *name = kz_map_str(b, "name");
        const char *host = kz_map_str(b, "host");
        if (!name || !host)
            return;
        char key[600];
        snprintf(key, sizeof key, "%s@%s/%" PRId64 " (failed)", name, host,
                 kz_map_int(b, "instance", 0));
        a = s_agent_get(self, key, name, host, true, now);
        if (!a)
            return;
    }
    s_agent_set_fate(a, S_DEAD, now);
    s_set(&a->failed_reason, kz_map_str(b, "reason"));
    a->restarts = kz_map_int(b, "restarts", a->restarts);
    a->instance = (int)kz_map_int(b, "instance", a->instance);
}

void kz_supervisor_on_message(kz_supervisor_t *self, const kz_msg_t *msg)
{
    if (!self || !msg)
        return;
    const char *type = kz_msg_type(msg);
    int64_t now = s_mono_ms();
    if (strcmp(type, "agent.hello") == 0)
        s_on_hello(self, msg, now);
    else if (strcmp(type, "agent.heartbeat") == 0)
        s_on_heartbeat(self, msg, now);
    else if (strcmp(type, "agent.bye") == 0)
        s_on_bye(self, msg, now);
    else if (self->own_id && strcmp(kz_msg_src(msg), self->own_id) == 0)
        return; /* our own exited / failed: the slots know better */
    else if (strcmp(type, "agent.exited") == 0)
        s_on_exited(self, msg, now);
    else if (strcmp(type, "agent.failed") == 0)
        s_on_failed(self, msg, now);
}

void kz_supervisor_count(kz_supervisor_t *self, const char *src)
{
    if (!self || !src)
        return;
    s_agent_t *a = zhashx_lookup(self->agents, src);
    if (!a)
        return;
    int64_t sec = s_mono_ms() / 1000;
    int i = (int)(sec % S_RATE_SECS);
    if (a->rate_sec[i] != sec) {
        a->rate_sec[i] = sec;
        a->rate[i] = 0;
    }
    if (a->rate[i] < UINT32_MAX)
        a->rate[i]++;
}

static double s_agent_rate(const s_agent_t *a, int64_t now)
{
    int64_t sec = now / 1000;
    uint64_t sum = 0;
    for (int i = 0; i < S_RATE_SECS; i++)
        if (a->rate_sec[i] > sec - S_RATE_SECS && a->rate_sec[i] <= sec)
            sum += a->rate[i];
    return (double)sum / S_RATE_SECS;
}

/* Forget entries that ended more than S_FORGET_MS ago */
static void s_agents_age(kz_supervisor_t *self, int64_t now)
{
    const char *drop[256];
    size_t n = 0;
    for (s_agent_t *a = zhashx_first(self->agents); a && n < 256; a = zhashx_next(self->agents)) {
        if (a->slot || !s_agent_ended(self, a, now))
            continue;
        int64_t since = a->fate != S_LIVE ? a->changed : a->last_seen + self->sc->gone_after_ms;
        if (now - since >= S_FORGET_MS)
            drop[n++] = a->id;
    }
    for (size_t i = 0; i < n; i++) {
        s_agent_t *a = zhashx_lookup(self->agents, drop[i]);
        if (a)
            s_agent_drop(self, a);
    }
}

/* ------------------------------------------------------------ publishing */

static void s_publish(kz_supervisor_t *self, kz_msg_t **msg_p, const char *what)
{
    if (!*msg_p || kz_bus_publish(self->bus, msg_p) != 0)
        kz_warn("unable to publish %s", what);
    kz_msg_destroy(msg_p);
}

static void s_say_exited(kz_supervisor_t *self, const s_slot_t *slot, pid_t pid,
                         int64_t restart_in_ms)
{
    if (!self->bus)
        return;
    kz_msg_t *msg = kz_msg_new("agent.exited");
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "name", slot->name);
        rc |= kz_map_put_int(msg, b, "instance", slot->instance);
        rc |= kz_map_put_str(msg, b, "host", self->host);
        rc |= kz_map_put_int(msg, b, "pid", (int64_t)pid);
        rc |= kz_map_put_str(msg, b, "status", slot->last_exit);
        rc |= kz_map_put_int(msg, b, "restarts", (int64_t)slot->restarts);
        if (restart_in_ms >= 0)
            rc |= kz_map_put_int(msg, b, "restart_in_ms", restart_in_ms);
        if (slot->agent) /* an extra field: whom it was on the bus */
            rc |= kz_map_put_str(msg, b, "id", slot->agent->id);
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    s_publish(self, &msg, "agent.exited");
}

static void s_say_failed(kz_supervisor_t *self, const s_slot_t *slot, pid_t pid)
{
    if (!self->bus)
        return;
    kz_msg_t *msg = kz_msg_new("agent.failed");
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "name", slot->name);
        rc |= kz_map_put_int(msg, b, "instance", slot->instance);
        rc |= kz_map_put_str(msg, b, "host", self->host);
        rc |= kz_map_put_str(msg, b, "reason", slot->failed_reason);
        rc |= kz_map_put_int(msg, b, "restarts", (int64_t)slot->restarts);
        if (pid > 0) /* extras: the last process, and whom it was on the bus */
            rc |= kz_map_put_int(msg, b, "pid", (int64_t)pid);
        if (slot->agent)
            rc |= kz_map_put_str(msg, b, "id", slot->agent->id);
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    s_publish(self, &msg, "agent.failed");
}

/* --------------------------------------------------------------- slots */

static void s_slot_free(s_slot_t **slot_p)
{
    s_slot_t *s = *slot_p;
    if (!s)
        return;
    if (s->argv)
        for (char **p = s->argv; *p; p++)
            free(*p);
    free(s->argv);
    free(s->name);
    free(s->log_path);
    free(s->exits);
    free(s->failed_reason);
    free(s);
    *slot_p = NULL;
}

/* A slot for NAME's process INSTANCE: argv = BIN_DIR/kaizen-NAME [-c
   CONFIG] --log-file LOG_DIR/LOGNAME.log ARGS... */
static s_slot_t *s_slot_new(const kz_supervisor_opts_t *opts, const char *name, int instance,
                            const char *logname, char *const *args, size_t nargs)
{
    s_slot_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->name = strdup(name);
    s->instance = instance;
    s->layer = strcmp(name, "broker") == 0 ? NULL : kz_agent_layer_of(name);
    s->rank = kz_agent_layer_rank(s->layer);
    snprintf(s->label, sizeof s->label, "%s", logname);
    s->state = S_PENDING;
    size_t n = 0;
    s->argv = calloc(nargs + 6, sizeof *s->argv);
    if (!s->name || !s->argv || asprintf(&s->log_path, "%s/%s.log", opts->log_dir, logname) < 0) {
        s->log_path = NULL;
        goto fail;
    }
    if (asprintf(&s->argv[n], "%s/kaizen-%s", opts->bin_dir, name) < 0) {
        s->argv[n] = NULL;
        goto fail;
    }
    n++;
    if (opts->config_path) {
        if (!(s->argv[n++] = strdup("-c")) || !(s->argv[n++] = strdup(opts->config_path)))
            goto fail;
    }
    if (!(s->argv[n++] = strdup("--log-file")) || !(s->argv[n++] = strdup(s->log_path)))
        goto fail;
    for (size_t i = 0; i < nargs; i++)
        if (!(s->argv[n++] = strdup(args[i])))
            goto fail;
    return s;
fail:
    s_slot_free(&s);
    return NULL;
}

/* Move FD above 2 so the child's dup2 onto 0..2 cannot clobber another */
static int s_high_fd(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return high;
}

/* In the child: only async-signal-safe calls until execv */
static void s_child(char *const argv[], int in_fd, int log_fd, int report_fd)
    __attribute__((noreturn));
static void s_child(char *const argv[], int in_fd, int log_fd, int report_fd)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(in_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        goto fail;
    /* everything above 2 closes on exec, the report pipe included */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536)
            max = 65536;
        for (int fd = 3; fd < max; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    execv(argv[0], argv);
fail:;
    int err = errno;
    if (write(report_fd, &err, sizeof err) < 0) {
        /* the parent then sees exit 127 */
    }
    _exit(127);
}

static void s_slot_fail(kz_supervisor_t *self, s_slot_t *slot, pid_t pid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_slot_fail(kz_supervisor_t *self, s_slot_t *slot, pid_t pid, const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    s_set(&slot->failed_reason, reason);
    slot->state = S_FAILED;
    slot->pid = 0;
    self->failures++;
    kz_error("'%s' failed: %s", slot->label, reason);
    s_say_failed(self, slot, pid);
}

/* Start SLOT's process. 0 started; -1 when it cannot be (the slot is
   then failed, except when out of resources: then it backs off) */
static int s_slot_spawn(kz_supervisor_t *self, s_slot_t *slot)
{
    const char *path = slot->argv[0];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        s_slot_fail(self, slot, 0, "executable '%s' not found", path);
        return -1;
    }
    if (access(path, X_OK) != 0) {
        s_slot_fail(self, slot, 0, "executable '%s' cannot be run: %s", path, strerror(errno));
        return -1;
    }
    int in_fd = -1, log_fd = -1, report[2] = {-1, -1};
    const char *what = "open /dev/null";
    in_fd = s_high_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (in_fd < 0)
        goto resources;
    what = "open its log file";
    log_fd = s_high_fd(kz_file_open(slot->log_path, O_WRONLY | O_APPEND | O_CREAT, 0600));
    if (log_fd < 0)
        goto resources;
    what = "create a pipe";
    if (pipe2(report, O_CLOEXEC) != 0)
        goto resources;
    report[0] = s_high_fd(report[0]);
    report[1] = s_high_fd(report[1]);
    if (report[0] < 0 || report[1] < 0)
        goto resources;

    /* no handler of ours may run in the child before it resets them */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    what = "fork";
    pid_t pid = fork();
    if (pid == 0)
        s_child(slot->argv, in_fd, log_fd, report[1]);
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    report[1] = -1;
    close(in_fd);
    in_fd = -1;
    close(log_fd);
    log_fd = -1;
    if (pid < 0) {
        errno = fork_errno;
        goto resources;
    }

    /* the report pipe closes on a successful exec; else it holds errno */
    int child_errno = 0;
    ssize_t n;
    do
        n = read(report[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        s_slot_fail(self, slot, 0, "unable to execute '%s': %s", path, strerror(child_errno));
        return -1;
    }
    slot->pid = pid;
    slot->state = S_RUNNING;
    slot->started = s_mono_ms();
    slot->hello = false;
    kz_info("started '%s' (pid %ld)", slot->label, (long)pid);
    return 0;

resources : {
    int err = errno;
    if (in_fd >= 0)
        close(in_fd);
    if (log_fd >= 0)
        close(log_fd);
    if (report[0] >= 0)
        close(report[0]);
    if (report[1] >= 0)
        close(report[1]);
    /* not the executable's fault: try again later like after an exit */
    kz_error("unable to start '%s': %s: %s", slot->label, what, strerror(err));
    snprintf(slot->last_exit, sizeof slot->last_exit, "not started: %s", strerror(err));
    slot->state = S_BACKOFF;
    slot->restart_at =
        s_mono_ms() + (self->sc->backoff_max_ms > 0 ? self->sc->backoff_max_ms : 1000);
    return -1;
}
}

/* SLOT's process PID exited (slot->last_exit says how): restart it
   after its back-off, or give up on it. Its agent entry is still tied to
   it, so what we publish names the agent id too. */
static void s_slot_decide(kz_supervisor_t *self, s_slot_t *slot, pid_t pid)
{
    int64_t now = s_mono_ms();
    if (slot->state == S_STOPPING || self->stopping) {
        slot->state = S_STOPPED;
        kz_info("'%s' (pid %ld) stopped: %s", slot->label, (long)pid, slot->last_exit);
        return;
    }

    /* the exits within the window, this one included */
    int64_t window = self->sc->restart_window_ms;
    size_t keep = 0;
    for (size_t i = 0; i < slot->nexits; i++)
        if (now - slot->exits[i] < window)
            slot->exits[keep++] = slot->exits[i];
    slot->nexits = keep;
    size_t limit = (size_t)self->sc->restart_intensity + 1;
    if (slot->nexits >= limit) { /* keep the newest LIMIT-1 */
        memmove(slot->exits, slot->exits + (slot->nexits - limit + 1),
                (limit - 1) * sizeof *slot->exits);
        slot->nexits = limit - 1;
    }
    if (slot->nexits == slot->exits_cap) {
        size_t cap = slot->exits_cap ? slot->exits_cap * 2 : 4;
        int64_t *exits = realloc(slot->exits, cap * sizeof *exits);
        if (exits) {
            slot->exits = exits;
            slot->exits_cap = cap;
        }
    }
    if (slot->nexits < slot->exits_cap)
        slot->exits[slot->nexits++] = now;
    size_t recent = slot->nexits;

    if (recent > (size_t)self->sc->restart_intensity) {
        kz_warn("'%s' (pid %ld) exited: %s", slot->label, (long)pid, slot->last_exit);
        s_say_exited(self, slot, pid, -1);
        s_slot_fail(self, slot, pid, "%zu exits within %d ms (restart_intensity %d), the last: %s",
                    recent, self->sc->restart_window_ms, self->sc->restart_intensity,
                    slot->last_exit);
        return;
    }
    int64_t delay = self->sc->backoff_initial_ms;
    for (size_t i = 1; i < recent && delay < self->sc->backoff_max_ms; i++)
        delay *= 2;
    if (delay > self->sc->backoff_max_ms)
        delay = self->sc->backoff_max_ms;
    slot->restarts++;
    self->restarts++;
    slot->state = S_BACKOFF;
    slot->restart_at = now + delay;
    kz_warn("'%s' (pid %ld) exited: %s; restart %" PRIu64 " in %" PRId64 " ms", slot->label,
            (long)pid, slot->last_exit, slot->restarts, delay);
    s_say_exited(self, slot, pid, delay);
}

/* SLOT's process exited with STATUS (-1: lost, reaped elsewhere; -2: an
   adopted process, not ours to wait for, is gone) */
static void s_slot_exited(kz_supervisor_t *self, s_slot_t *slot, int status)
{
    pid_t pid = slot->pid;
    if (status == -2)
        snprintf(slot->last_exit, sizeof slot->last_exit, "gone (adopted: exit status unknown)");
    else if (status == -1)
        snprintf(slot->last_exit, sizeof slot->last_exit, "exit status lost");
    else
        s_status_text(status, slot->last_exit, sizeof slot->last_exit);
    slot->prev_pid = pid;
    slot->pid = 0;
    slot->adopted = false; /* a restart is a child of ours */
    s_slot_decide(self, slot, pid);
    /* the entry of the process dies with it; the slot keeps the rest */
    if (slot->agent) {
        s_agent_t *a = slot->agent;
        a->slot = NULL;
        slot->agent = NULL;
        s_agent_drop(self, a);
    }
}

/* Reap SLOT's process if it exited. true when it did */
static bool s_slot_reap(kz_supervisor_t *self, s_slot_t *slot)
{
    if (slot->pid <= 0)
        return false;
    if (slot->adopted) {
        if (s_adopted_alive(slot))
            return false;
        s_slot_exited(self, slot, -2);
        return true;
    }
    int status = 0;
    pid_t r;
    do
        r = waitpid(slot->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    s_slot_exited(self, slot, r < 0 ? -1 : status);
    return true;
}

/* SIGKILL SLOT's process and wait for it; WHY for the log (NULL: quiet) */
static void s_slot_kill(kz_supervisor_t *self, s_slot_t *slot, const char *why)
{
    if (slot->pid <= 0)
        return;
    if (why)
        kz_warn("'%s' (pid %ld) %s, killing it", slot->label, (long)slot->pid, why);
    kill(slot->pid, SIGKILL);
    if (slot->adopted) {
        /* not our child: its parent (init) reaps it; wait until it is gone */
        int64_t deadline = s_mono_ms() + S_ADOPTED_KILL_MS;
        while (s_adopted_alive(slot) && s_mono_ms() < deadline)
            s_sleep_ms(S_SLICE_MS);
        slot->state = S_STOPPING;
        s_slot_exited(self, slot, -2);
        return;
    }
    int status = 0;
    pid_t r;
    do
        r = waitpid(slot->pid, &status, 0);
    while (r < 0 && errno == EINTR);
    slot->state = S_STOPPING;
    s_slot_exited(self, slot, r < 0 ? -1 : status);
}

/* Stop SLOTS[0..N) together: SIGTERM, wait up to stop_timeout, SIGKILL */
static void s_stop_slots(kz_supervisor_t *self, s_slot_t **slots, size_t n,
                         kz_supervisor_pump_fn *pump, void *arg)
{
    size_t running = 0;
    for (size_t i = 0; i < n; i++) {
        s_slot_t *s = slots[i];
        s_slot_reap(self, s);
        if (s->pid > 0) {
            if (kill(s->pid, SIGTERM) == 0 || errno != ESRCH) {
                s->state = S_STOPPING;
                running++;
            }
        } else if (s->state == S_PENDING || s->state == S_BACKOFF)
            s->state = S_STOPPED;
    }
    int64_t deadline = s_mono_ms() + self->sc->stop_timeout_ms;
    while (running > 0) {
        running = 0;
        for (size_t i = 0; i < n; i++)
            if (!s_slot_reap(self, slots[i]) && slots[i]->pid > 0)
                running++;
        int64_t left = deadline - s_mono_ms();
        if (running == 0 || left <= 0)
            break;
        s_wait(pump, arg, (int)(left < S_SLICE_MS ? left : S_SLICE_MS));
    }
    char why[64];
    snprintf(why, sizeof why, "did not stop within %d ms", self->sc->stop_timeout_ms);
    for (size_t i = 0; i < n; i++)
        s_slot_kill(self, slots[i], why);
}

/* -------------------------------------------------------------- layers */

/* Start every slot of rank RANK; the deadline of the layer is set */
static void s_start_layer(kz_supervisor_t *self, int rank)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nslots; i++)
        if (self->slots[i]->rank == rank)
            n++;
    self->layer = rank;
    self->layer_deadline = s_mono_ms() + self->sc->start_timeout_ms;
    kz_info("starting layer '%s' (%zu process%s)", s_layer_name(rank), n, n == 1 ? "" : "es");
    for (size_t i = 0; i < self->nslots; i++)
        if (self->slots[i]->rank == rank && self->slots[i]->state == S_PENDING)
            s_slot_spawn(self, self->slots[i]);
}

static bool s_layer_up(const kz_supervisor_t *self, int rank)
{
    for (size_t i = 0; i < self->nslots; i++) {
        const s_slot_t *s = self->slots[i];
        if (s->rank == rank && !s->hello && s->state != S_FAILED && s->state != S_STOPPED)
            return false;
    }
    return true;
}

/* The smallest rank above RANK among the slots, or -1 */
static int s_next_rank(const kz_supervisor_t *self, int rank)
{
    int next = -1;
    for (size_t i = 0; i < self->nslots; i++) {
        int r = self->slots[i]->rank;
        if (r > rank && (next < 0 || r < next))
            next = r;
    }
    return next;
}

/* Start the next layer when the current one is up or its time is over */
static void s_advance_layers(kz_supervisor_t *self, int64_t now)
{
    while (self->started && !self->layers_done && !self->stopping) {
        bool up = s_layer_up(self, self->layer);
        if (!up && now < self->layer_deadline)
            return;
        if (up)
            kz_info("layer '%s' up", s_layer_name(self->layer));
        else
            kz_warn("layer '%s' not up after %d ms, starting the next one anyway",
                    s_layer_name(self->layer), self->sc->start_timeout_ms);
        int next = s_next_rank(self, self->layer);
        if (next < 0) {
            self->layers_done = true;
            kz_info("every layer started");
            return;
        }
        s_start_layer(self, next);
    }
}

/* Layer order, the config order within a layer */
static int s_slot_cmp(const void *a, const void *b)
{
    const s_slot_t *x = *(s_slot_t *const *)a;
    const s_slot_t *y = *(s_slot_t *const *)b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* ----------------------------------------------------------------- api */

kz_supervisor_t *kz_supervisor_new(const kz_config_t *cfg, const kz_supervisor_opts_t *opts,
                                   char *errbuf, size_t errlen)
{
    if (!cfg || !opts || !opts->host || !*opts->host || !opts->bin_dir || !opts->log_dir) {
        s_errf(errbuf, errlen, "supervisor: host, bin_dir and log_dir are required");
        return NULL;
    }
    kz_supervisor_t *self = calloc(1, sizeof *self);
    if (!self)
        goto oom;
    self->cfg = cfg;
    self->sc = &cfg->supervisor;
    self->node = opts->node;
    self->layer = -1;
    char real_host[256];
    if (gethostname(real_host, sizeof real_host) != 0)
        snprintf(real_host, sizeof real_host, "localhost");
    real_host[sizeof real_host - 1] = '\0';
    self->host = strdup(opts->host);
    self->real_host = strdup(real_host);
    self->bin_dir = strdup(opts->bin_dir);
    self->log_dir = strdup(opts->log_dir);
    self->config_path = s_strdup(opts->config_path);
    self->agents = zhashx_new();
    if (!self->host || !self->real_host || !self->bin_dir || !self->log_dir ||
        (opts->config_path && !self->config_path) || !self->agents)
        goto oom;

    size_t total = 0;
    for (size_t i = 0; i < cfg->agents_count; i++) {
        const kz_agent_config_t *ac = &cfg->agents[i];
        bool ours = ac->host ? strcmp(ac->host, opts->host) == 0 : !opts->node;
        if (ours)
            total += (size_t)(ac->instances > 0 ? ac->instances : 0);
    }
    self->slots = calloc(total ? total : 1, sizeof *self->slots);
    if (!self->slots)
        goto oom;
    for (size_t i = 0; i < cfg->agents_count; i++) {
        const kz_agent_config_t *ac = &cfg->agents[i];
        bool ours = ac->host ? strcmp(ac->host, opts->host) == 0 : !opts->node;
        if (!ours)
            continue;
        if (strcmp(ac->name, "broker") == 0) {
            s_errf(errbuf, errlen, "agents: 'broker' is not an agent (supervisor.broker runs it)");
            kz_supervisor_destroy(&self);
            return NULL;
        }
        for (int k = 0; k < ac->instances; k++) {
            char logname[300];
            snprintf(logname, sizeof logname, "%s.%d", ac->name, k);
            s_slot_t *s = s_slot_new(opts, ac->name, k, logname, ac->args, ac->args_count);
            if (!s)
                goto oom;
            s->order = self->nslots;
            self->slots[self->nslots++] = s;
        }
    }
    qsort(self->slots, self->nslots, sizeof *self->slots, s_slot_cmp);
    return self;
oom:
    s_errf(errbuf, errlen, "supervisor: out of memory");
    kz_supervisor_destroy(&self);
    return NULL;
}

void kz_supervisor_destroy(kz_supervisor_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_supervisor_t *self = *self_p;
    self->stopping = true;
    self->bus = NULL;
    for (size_t i = 0; i < self->nslots; i++) {
        s_slot_kill(self, self->slots[i], "still runs at exit");
        s_slot_free(&self->slots[i]);
    }
    free(self->slots);
    if (self->broker) {
        s_slot_kill(self, self->broker, "still runs at exit");
        s_slot_free(&self->broker);
    }
    if (self->agents) {
        for (s_agent_t *a = zhashx_first(self->agents); a; a = zhashx_next(self->agents))
            s_agent_free(&a);
        zhashx_destroy(&self->agents);
    }
    free(self->host);
    free(self->real_host);
    free(self->bin_dir);
    free(self->log_dir);
    free(self->config_path);
    free(self->own_id);
    free(self);
    *self_p = NULL;
}

/* The broker's slot, made on first use. NULL when out of memory */
static s_slot_t *s_broker_slot(kz_supervisor_t *self)
{
    if (!self->broker) {
        kz_supervisor_opts_t opts = {.host = self->host,
                                     .bin_dir = self->bin_dir,
                                     .config_path = self->config_path,
                                     .log_dir = self->log_dir};
        self->broker = s_slot_new(&opts, "broker", 0, "broker", NULL, 0);
        if (!self->broker)
            return NULL;
        self->broker->is_broker = true;
    }
    return self->broker;
}

int kz_supervisor_adopt_broker(kz_supervisor_t *self, pid_t pid, char *errbuf, size_t errlen)
{
    if (self->node || pid <= 0) {
        s_errf(errbuf, errlen, "no broker to adopt (pid %ld)", (long)pid);
        return -1;
    }
    s_slot_t *b = s_broker_slot(self);
    if (!b) {
        s_errf(errbuf, errlen, "supervisor: out of memory");
        return -1;
    }
    if (b->pid > 0) {
        s_errf(errbuf, errlen, "a broker runs already (pid %ld)", (long)b->pid);
        return -1;
    }
    char state = '?';
    unsigned long long tick = 0;
    if (s_proc_stat(pid, &state, &tick) != 0 || state == 'Z' || state == 'X') {
        s_errf(errbuf, errlen, "the broker to adopt (pid %ld) is gone", (long)pid);
        return -1;
    }
    b->pid = pid;
    b->adopted = true;
    b->start_tick = tick;
    b->state = S_RUNNING;
    b->started = s_mono_ms();
    kz_info("adopting the broker of the previous run (pid %ld): it keeps what it queued",
            (long)pid);
    return 0;
}

int kz_supervisor_start_broker(kz_supervisor_t *self, kz_supervisor_pump_fn *pump, void *arg,
                               char *errbuf, size_t errlen)
{
    if (self->node)
        return 0;
    s_slot_t *b = s_broker_slot(self);
    if (!b) {
        s_errf(errbuf, errlen, "supervisor: out of memory");
        return -1;
    }
    if (b->adopted && !s_adopted_alive(b)) {
        kz_warn("the adopted broker (pid %ld) is gone: starting one", (long)b->pid);
        b->pid = 0;
        b->adopted = false;
        b->state = S_PENDING;
    }
    if (b->pid > 0 && !b->adopted)
        return 0;
    if (!b->adopted && s_slot_spawn(self, b) != 0) {
        s_errf(errbuf, errlen, "unable to start the broker: %s",
               b->failed_reason ? b->failed_reason : b->last_exit);
        return -1;
    }
    char probe_id[320];
    snprintf(probe_id, sizeof probe_id, "orchestrator-probe@%s#%ld", self->host, (long)getpid());
    char err[512];
    kz_bus_t *probe = kz_bus_new(&self->cfg->bus, probe_id, err, sizeof err);
    if (!probe) {
        s_errf(errbuf, errlen, "unable to probe the broker: %s", err);
        goto fail;
    }
    int wait_ms = self->sc->start_timeout_ms > 0 ? self->sc->start_timeout_ms : S_BROKER_WAIT;
    int64_t deadline = s_mono_ms() + wait_ms;
    while (true) {
        uint8_t *reply = NULL;
        size_t len = 0;
        int rc = kz_bus_call_raw(probe, "mmi.service", "kaizen.status", strlen("kaizen.status"),
                                 S_PROBE_MS, &reply, &len, err, sizeof err);
        free(reply);
        /* reaped here, not by s_slot_reap: an exit now is no crash to
           restart but a start that failed */
        int status = 0;
        pid_t r = 0;
        if (b->adopted)
            r = s_adopted_alive(b) ? 0 : -1;
        else
            r = waitpid(b->pid, &status, WNOHANG);
        if (r < 0 && b->adopted) {
            /* it died between `kaizen up`'s look and ours: start our own */
            kz_warn("the adopted broker (pid %ld) is gone: starting one", (long)b->pid);
            kz_bus_destroy(&probe);
            b->pid = 0;
            b->adopted = false;
            b->state = S_PENDING;
            return kz_supervisor_start_broker(self, pump, arg, errbuf, errlen);
        }
        if (r > 0 || (r < 0 && errno != EINTR)) {
            if (r > 0)
                s_status_text(status, b->last_exit, sizeof b->last_exit);
            else
                snprintf(b->last_exit, sizeof b->last_exit, "exit status lost");
            b->prev_pid = b->pid;
            b->pid = 0;
            char line[512];
            s_last_line(b->log_path, line, sizeof line);
            s_errf(errbuf, errlen, "the broker exited at once (%s)%s%s", b->last_exit,
                   *line ? ": " : "", line);
            b->state = S_FAILED;
            s_set(&b->failed_reason, errbuf);
            kz_bus_destroy(&probe);
            return -1;
        }
        if (rc == 0)
            break;
        if (s_mono_ms() >= deadline) {
            char line[512];
            s_last_line(b->log_path, line, sizeof line);
            s_errf(errbuf, errlen, "the %sbroker did not answer within %d ms (%s)%s%s",
                   b->adopted ? "adopted " : "", wait_ms, err, *line ? "; its log ends: " : "",
                   line);
            goto fail;
        }
        s_wait(pump, arg, S_SLICE_MS);
    }
    kz_bus_destroy(&probe);
    kz_info("broker up (pid %ld%s)", (long)b->pid, b->adopted ? ", adopted" : "");
    return 0;
fail:
    kz_bus_destroy(&probe);
    b->state = S_STOPPING;
    s_slot_kill(self, b, NULL);
    b->state = S_FAILED;
    s_set(&b->failed_reason, errbuf);
    return -1;
}

void kz_supervisor_start(kz_supervisor_t *self, kz_bus_t *bus)
{
    if (!self || self->started)
        return;
    self->bus = bus;
    if (bus)
        s_set(&self->own_id, kz_bus_agent_id(bus));
    self->started = true;
    if (self->nslots == 0) {
        self->layers_done = true;
        kz_info("no agents to run on '%s'", self->host);
        return;
    }
    s_start_layer(self, self->slots[0]->rank);
    s_advance_layers(self, s_mono_ms());
}

int64_t kz_supervisor_tick(kz_supervisor_t *self)
{
    int64_t now = s_mono_ms();
    int64_t wait = 1000;
    if (self->broker)
        s_slot_reap(self, self->broker);
    for (size_t i = 0; i < self->nslots; i++)
        s_slot_reap(self, self->slots[i]);
    if (!self->stopping) {
        now = s_mono_ms();
        for (size_t i = 0; i <= self->nslots; i++) {
            s_slot_t *s = i < self->nslots ? self->slots[i] : self->broker;
            if (!s || s->state != S_BACKOFF)
                continue;
            if (now >= s->restart_at) {
                kz_info("restarting '%s' (restart %" PRIu64 ")", s->label, s->restarts);
                s_slot_spawn(self, s);
                now = s_mono_ms();
            }
            if (s->state == S_BACKOFF && s->restart_at - now < wait)
                wait = s->restart_at - now;
        }
        s_advance_layers(self, now);
        /* a layer is up as soon as its last agent.hello arrives: look soon */
        if (self->started && !self->layers_done && wait > S_LAYER_POLL_MS)
            wait = S_LAYER_POLL_MS;
    }
    if (now >= self->next_age) {
        s_agents_age(self, now);
        self->next_age = now + 1000;
    }
    return wait > 0 ? wait : 0;
}

void kz_supervisor_stop_agents(kz_supervisor_t *self, kz_supervisor_pump_fn *pump, void *arg)
{
    if (!self)
        return;
    if (!self->stopping)
        kz_info("stopping the agents");
    self->stopping = true;
    /* highest rank first */
    size_t end = self->nslots;
    while (end > 0) {
        int rank = self->slots[end - 1]->rank;
        size_t start = end;
        while (start > 0 && self->slots[start - 1]->rank == rank)
            start--;
        bool any = false;
        for (size_t i = start; i < end; i++)
            any |= self->slots[i]->pid > 0;
        if (any)
            kz_info("stopping layer '%s'", s_layer_name(rank));
        s_stop_slots(self, self->slots + start, end - start, pump, arg);
        if (any)
            kz_info("layer '%s' stopped", s_layer_name(rank));
        end = start;
    }
    self->bus = NULL; /* the orchestrator destroys it before the broker goes */
}

void kz_supervisor_stop_broker(kz_supervisor_t *self, kz_supervisor_pump_fn *pump, void *arg)
{
    if (!self || !self->broker)
        return;
    self->stopping = true;
    self->bus = NULL;
    bool any = self->broker->pid > 0;
    if (any)
        kz_info("stopping the broker");
    s_stop_slots(self, &self->broker, 1, pump, arg);
}

/* ------------------------------------------------------------- status */

static const char *s_slot_state_name(const kz_supervisor_t *self, const s_slot_t *s, int64_t now)
{
    switch (s->state) {
    case S_PENDING:
        return "starting";
    case S_BACKOFF:
        return "backoff";
    case S_STOPPING:
        return "stopping";
    case S_STOPPED:
        return "stopped";
    case S_FAILED:
        return "failed";
    case S_RUNNING:
        break;
    }
    if (s->is_broker)
        return "idle"; /* it says no hello: running is all we know */
    if (!s->agent)
        return "starting";
    return s_agent_state(self, s->agent, now);
}

/* The heard-of facts of A into the map M */
static int s_put_agent_facts(kz_msg_t *msg, kz_val_t *m, const s_agent_t *a, int64_t now, bool live)
{
    int rc = kz_map_put_str(msg, m, "id", a->id);
    rc |= kz_map_put_int(msg, m, "last_heartbeat_ms_ago", now - a->last_seen);
    if (a->cycles >= 0)
        rc |= kz_map_put_int(msg, m, "cycles", a->cycles);
    if (a->last_cycle_ms >= 0)
        rc |= kz_map_put_int(msg, m, "last_cycle_ms", a->last_cycle_ms);
    if (a->last_result[0])
        rc |= kz_map_put_str(msg, m, "last_result", a->last_result);
    if (live)
        rc |= kz_map_put_float(msg, m, "messages_per_s", s_agent_rate(a, now));
    return rc;
}

static int s_put_slot(kz_supervisor_t *self, kz_msg_t *msg, kz_val_t *arr, const s_slot_t *s,
                      int64_t now)
{
    kz_val_t *m = kz_array_push(msg, arr);
    if (!m)
        return -1;
    kz_val_set_map(m);
    const s_agent_t *a = s->agent;
    int rc = kz_map_put_str(msg, m, "name", s->name);
    if (s->layer)
        rc |= kz_map_put_str(msg, m, "layer", s->layer);
    rc |= kz_map_put_int(msg, m, "instance", s->instance);
    rc |= kz_map_put_str(msg, m, "host", a ? a->host : self->host);
    if (s->pid > 0)
        rc |= kz_map_put_int(msg, m, "pid", (int64_t)s->pid);
    rc |= kz_map_put_str(msg, m, "state", s_slot_state_name(self, s, now));
    rc |= kz_map_put_bool(msg, m, "supervised", true);
    if (s->adopted && s->pid > 0) /* a broker of the previous run, watched by its pid */
        rc |= kz_map_put_bool(msg, m, "adopted", true);
    if (s->pid > 0)
        rc |= kz_map_put_int(msg, m, "uptime_ms", now - s->started);
    rc |= kz_map_put_int(msg, m, "restarts", (int64_t)s->restarts);
    if (a)
        rc |= s_put_agent_facts(msg, m, a, now, true);
    if (s->last_exit[0])
        rc |= kz_map_put_str(msg, m, "last_exit", s->last_exit);
    if (s->state == S_FAILED && s->failed_reason)
        rc |= kz_map_put_str(msg, m, "failed_reason", s->failed_reason);
    return rc ? -1 : 0;
}

static int s_put_agent(kz_supervisor_t *self, kz_msg_t *msg, kz_val_t *arr, const s_agent_t *a,
                       int64_t now)
{
    kz_val_t *m = kz_array_push(msg, arr);
    if (!m)
        return -1;
    kz_val_set_map(m);
    const char *state = s_agent_state(self, a, now);
    bool live = a->fate == S_LIVE && strcmp(state, "gone") != 0;
    int rc = kz_map_put_str(msg, m, "name", a->name);
    if (a->layer)
        rc |= kz_map_put_str(msg, m, "layer", a->layer);
    rc |= kz_map_put_str(msg, m, "host", a->host);
    if (a->pid >= 0)
        rc |= kz_map_put_int(msg, m, "pid", a->pid);
    rc |= kz_map_put_str(msg, m, "state", state);
    rc |= kz_map_put_bool(msg, m, "supervised", false);
    if (live && a->uptime_ms >= 0)
        rc |= kz_map_put_int(msg, m, "uptime_ms", a->uptime_ms + (now - a->uptime_at));
    if (a->restarts >= 0)
        rc |= kz_map_put_int(msg, m, "restarts", a->restarts);
    if (a->fate == S_DEAD && a->pid < 0) /* a failure word only: no process was heard of */
        rc |= kz_map_put_int(msg, m, "instance", a->instance >= 0 ? a->instance : 0);
    else {
        rc |= s_put_agent_facts(msg, m, a, now, live);
        if (a->instance >= 0)
            rc |= kz_map_put_int(msg, m, "instance", a->instance);
    }
    if (a->last_exit)
        rc |= kz_map_put_str(msg, m, "last_exit", a->last_exit);
    if (a->failed_reason)
        rc |= kz_map_put_str(msg, m, "failed_reason", a->failed_reason);
    return rc ? -1 : 0;
}

static int s_agent_cmp(const void *x, const void *y)
{
    const s_agent_t *a = *(s_agent_t *const *)x;
    const s_agent_t *b = *(s_agent_t *const *)y;
    int ra = kz_agent_layer_rank(a->layer), rb = kz_agent_layer_rank(b->layer);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    c = strcmp(a->host, b->host);
    if (c)
        return c;
    return a->pid < b->pid ? -1 : a->pid > b->pid;
}

int kz_supervisor_status(kz_supervisor_t *self, kz_msg_t *msg, kz_val_t *arr)
{
    if (!self || !msg || !arr)
        return -1;
    int64_t now = s_mono_ms();
    if (self->broker && s_put_slot(self, msg, arr, self->broker, now) != 0)
        return -1;
    for (size_t i = 0; i < self->nslots; i++)
        if (s_put_slot(self, msg, arr, self->slots[i], now) != 0)
            return -1;
    size_t n = zhashx_size(self->agents), k = 0;
    s_agent_t **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return -1;
    for (s_agent_t *a = zhashx_first(self->agents); a && k < n; a = zhashx_next(self->agents))
        if (!a->slot)
            list[k++] = a;
    qsort(list, k, sizeof *list, s_agent_cmp);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        rc = s_put_agent(self, msg, arr, list[i], now);
    free(list);
    return rc;
}

uint64_t kz_supervisor_restarts(const kz_supervisor_t *self)
{
    return self ? self->restarts : 0;
}

uint64_t kz_supervisor_failures(const kz_supervisor_t *self)
{
    return self ? self->failures : 0;
}
