/*  up.c - `kaizen up`: database, broker, orchestrator and agents

    Under the lock STATE/run/up.lock: create the sample targets that do
    not exist yet (targets[].init_from, cli/samples.c); when
    run/orchestrator.pid names a live kaizen process, say so and stop
    (idempotent). Else clean up after
    a previous run that did not stop (stale pid files, leftover
    processes) - but never its broker, which holds what was published
    since the crash: it is adopted (the new orchestrator gets
    --adopt-broker) when it answers on the configured endpoints, else
    left running and nothing starts (s_keep_broker) - check that the
    bus endpoints are free - a port or socket taken by another program
    is refused before anything starts - start
    the embedded PostgreSQL cluster (or check the DSN), apply the schema
    migrations, then start kaizen-orchestrator (found beside this
    executable) in a session of its own, so `kaizen down` can signal the
    whole process group; it starts the broker and the agents. `up` waits,
    bounded, until kaizen.status answers and lists every agent configured
    for this host as running (or failed), showing progress on stderr.

    --foreground keeps the orchestrator attached: `up` forwards SIGINT and
    SIGTERM to it, and when it exits stops what is left and the embedded
    database, like `kaizen down`.

    kz_cli_up is the same start for `kaizen run-once` (cli/run_once.c).
*/
#include "cli.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_db.h"
#include "kz_keys.h"
#include "kz_pgctl.h"
#include "kz_state.h"
#include "kz_wire.h"

#define S_LOCK_WAIT_MS   60000
#define S_PG_START_MS    120000
#define S_POLL_MS        250
#define S_STATUS_MS      1000
#define S_BASE_WAIT_MS   30000
#define S_LOG_TAIL_LINES 20
#define S_APP            "kaizen-cli"
#define S_ADOPT_PROBE_MS 10000 /* a broker left running gets this long to answer */

static const char s_usage[] =
    "usage: kaizen [-c FILE] up [--foreground]\n"
    "\n"
    "Start kaizen: the embedded PostgreSQL cluster under the state directory\n"
    "(or check the server of database.dsn / $KAIZEN_DATABASE_URL) with the\n"
    "schema migrations applied, then kaizen-orchestrator, which starts the\n"
    "broker and this host's agents. Waits until every agent is up (or has\n"
    "failed) and prints where the state, the logs and the database live.\n"
    "A target with init_from whose path does not exist is created first: a\n"
    "new git repository holding a copy of that directory (the samples).\n"
    "\n"
    "Running it again while kaizen runs says so and exits 0. A bus port or\n"
    "socket used by another program is refused before anything starts.\n"
    "After a crash of the orchestrator, its broker - holding what was\n"
    "published meanwhile - is adopted, never killed; one that cannot be\n"
    "adopted (it does not answer on the configured endpoints) is left\n"
    "running and nothing starts.\n"
    "\n"
    "  --foreground         keep the orchestrator attached: Ctrl-C (or SIGTERM)\n"
    "                       stops everything, the database included; the logs\n"
    "                       still go to STATE/logs ('kaizen logs NAME -f')\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 running (or already running), 1 it could not start (a bad\n"
    "config, a taken port, a broker left running that cannot be adopted, the\n"
    "database, the orchestrator exited; the reason\n"
    "and the last lines of its log are printed), 2 usage\n";

/* The orchestrator while up --foreground waits for it */
static volatile sig_atomic_t s_child;
static volatile sig_atomic_t s_forwarded;

/* SIGINT, SIGTERM, SIGHUP while up waits: pass them on to the
   orchestrator (it ignores SIGHUP: that one becomes SIGTERM) */
static void s_forward(int sig)
{
    int to = sig == SIGHUP ? SIGTERM : sig;
    if (s_child > 0)
        kill((pid_t)s_child, to);
    s_forwarded = to;
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int kz_cli_bin_dir(char *buf, size_t len)
{
    if (len < 2)
        return -1;
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0 || (size_t)n >= len - 1)
        return -1;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

/* ------------------------------------------------------ the bus endpoints */

/* Is something else listening on the tcp:// endpoint HOSTPORT ("*:7510",
   "127.0.0.1:7510", "[::1]:7510")? 0 free, -1 with ERRBUF */
static int s_check_tcp(const char *key, const char *hostport, char *errbuf, size_t errlen)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport)
        return 0; /* the broker will say what is wrong with it */
    const char *port = colon + 1;
    if (strcmp(port, "*") == 0 || strcmp(port, "0") == 0 || !*port)
        return 0; /* an ephemeral port cannot be taken */
    char host[256];
    size_t hlen = (size_t)(colon - hostport);
    if (hlen >= sizeof host)
        return 0;
    memcpy(host, hostport, hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && hlen >= 2 && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = strcmp(host, "*") == 0 ? AF_INET : AF_UNSPEC;
    if (getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res) != 0 || !res)
        return 0; /* an interface name, or unresolvable: ZeroMQ decides */
    int rc = 0;
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd >= 0) {
        /* as ZeroMQ does: connections in TIME_WAIT do not make a port busy */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
            if (errno == EADDRINUSE)
                snprintf(errbuf, errlen, "port %s (%s) is in use by another program", port, key);
            else
                snprintf(errbuf, errlen, "unable to use '%s' (%s): %s", hostport, key,
                         strerror(errno));
            rc = -1;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

/* Is the ipc:// socket PATH live? A stale socket file is removed (the
   broker would replace it anyway). 0 free, -1 with ERRBUF */
static int s_check_ipc(const char *key, const char *path, char *errbuf, size_t errlen)
{
    struct sockaddr_un sa;
    struct stat st;
    if (path[0] == '@' || lstat(path, &st) != 0)
        return 0; /* abstract, or nothing there */
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(errbuf, errlen, "socket path '%s' (%s) is too long for a unix socket", path, key);
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(errbuf, errlen, "'%s' (%s) exists and is not a socket", path, key);
        return -1;
    }
    /* non-blocking: a live socket whose backlog is full answers EAGAIN
       at once instead of stalling us */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS) {
        snprintf(errbuf, errlen,
                 "socket %s (%s) is in use by another program (a broker that 'kaizen up' of "
                 "this state directory did not start)",
                 path, key);
        rc = -1;
    } else if (errno == ECONNREFUSED) {
        unlink(path); /* stale: left by a broker that died */
    }
    close(fd);
    return rc;
}

/* The endpoints the broker will bind (bus.bind.X, else bus.endpoints.X)
   must be free. 0 / -1 with ERRBUF */
static int s_check_endpoints(const kz_config_t *cfg, char *errbuf, size_t errlen)
{
    const char *names[] = {"pub", "sub", "router", "tap"};
    const char *binds[] = {cfg->bus.bind.pub, cfg->bus.bind.sub, cfg->bus.bind.router,
                           cfg->bus.bind.tap};
    const char *conns[] = {cfg->bus.connect.pub, cfg->bus.connect.sub, cfg->bus.connect.router,
                           cfg->bus.connect.tap};
    for (size_t i = 0; i < 4; i++) {
        const char *ep = binds[i] ? binds[i] : conns[i];
        if (!ep)
            continue;
        char key[64];
        snprintf(key, sizeof key, "bus.%s.%s", binds[i] ? "bind" : "endpoints", names[i]);
        int rc = 0;
        if (strncmp(ep, "tcp://", 6) == 0)
            rc = s_check_tcp(key, ep + 6, errbuf, errlen);
        else if (strncmp(ep, "ipc://", 6) == 0)
            rc = s_check_ipc(key, ep + 6, errbuf, errlen);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------- a broker left running */

/* The endpoints the broker binds on which nothing listens, named into
   BUF ("" when every one is taken, or cannot be told: a port 0) */
static void s_endpoints_unused(const kz_config_t *cfg, char *buf, size_t len)
{
    const char *names[] = {"pub", "sub", "router", "tap"};
    const char *binds[] = {cfg->bus.bind.pub, cfg->bus.bind.sub, cfg->bus.bind.router,
                           cfg->bus.bind.tap};
    const char *conns[] = {cfg->bus.connect.pub, cfg->bus.connect.sub, cfg->bus.connect.router,
                           cfg->bus.connect.tap};
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < 4; i++) {
        const char *ep = binds[i] ? binds[i] : conns[i];
        if (!ep)
            continue;
        char key[64], err[PATH_MAX + 256];
        snprintf(key, sizeof key, "bus.%s.%s", binds[i] ? "bind" : "endpoints", names[i]);
        int taken = 1;
        if (strncmp(ep, "tcp://", 6) == 0)
            taken = s_check_tcp(key, ep + 6, err, sizeof err) != 0;
        else if (strncmp(ep, "ipc://", 6) == 0)
            taken = s_check_ipc(key, ep + 6, err, sizeof err) != 0;
        if (taken)
            continue;
        int n = snprintf(buf + at, len - at, "%s%s (%s)", at ? ", " : "", key, ep);
        if (n < 0 || (size_t)n >= len - at)
            break;
        at += (size_t)n;
    }
}

/* What the broker holds in its queue groups */
typedef struct {
    uint64_t queued;   /* waiting for a member, all groups */
    uint64_t inflight; /* delivered, not acknowledged yet */
    uint64_t recorder; /* of those queued: the recorder's */
} s_held_t;

/* mmi.stats from the broker on bus.endpoints.router, asked again and
   again for up to MS. 0 answered (*HELD filled), -1 no (usable) answer */
static int s_broker_held(const kz_config_t *cfg, int ms, s_held_t *held)
{
    char host[256] = "localhost", id[320], err[512] = "";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(id, sizeof id, "kaizen-up@%s#%ld", host, (long)getpid());
    kz_bus_config_t bc = cfg->bus;
    bc.call_retries = 0;
    kz_bus_t *bus = kz_bus_new(&bc, id, err, sizeof err);
    if (!bus)
        return -1;
    memset(held, 0, sizeof *held);
    int64_t deadline = s_mono_ms() + ms;
    uint8_t *reply = NULL;
    size_t len = 0;
    int rc = -1;
    while (rc != 0 && !s_forwarded && s_mono_ms() < deadline)
        rc = kz_bus_call_raw(bus, KZ_MMI_STATS, "", 0, S_STATUS_MS, &reply, &len, err, sizeof err);
    kz_bus_destroy(&bus);
    if (rc != 0)
        return -1;
    kz_msg_limits_t limits = kz_msg_limits_default();
    if (limits.max_size < len)
        limits.max_size = len;
    limits.max_count = 1000000;
    limits.max_items = 10000000;
    kz_msg_err_t derr = {0, ""};
    kz_msg_t *value = kz_msg_decode_value(reply, len, &limits, &derr);
    free(reply);
    const kz_val_t *groups = value ? kz_map_get(kz_msg_body_const(value), "groups") : NULL;
    if (!groups || groups->type != KZ_VAL_MAP) {
        kz_msg_destroy(&value);
        return -1;
    }
    for (uint32_t i = 0; i < groups->u.map.count; i++) {
        const kz_kv_t *g = &groups->u.map.items[i];
        int64_t queued = kz_map_int(&g->val, "queued", 0);
        int64_t inflight = kz_map_int(&g->val, "inflight", 0);
        held->queued += queued > 0 ? (uint64_t)queued : 0;
        held->inflight += inflight > 0 ? (uint64_t)inflight : 0;
        if (strcmp(g->key.u.str.ptr, "kaizen.recorder") == 0)
            held->recorder += queued > 0 ? (uint64_t)queued : 0;
    }
    kz_msg_destroy(&value);
    return 0;
}

/* A kaizen-broker of this state directory that outlived its orchestrator
   (kill -9) holds what was published since: never killed here. When it
   answers on the configured endpoints it is adopted (*ADOPT: the new
   orchestrator supervises it); when the config no longer runs a broker
   it is left running (*SPARE only). Otherwise nothing starts:
   KZ_EXIT_FAILURE after saying why and what to do. */
static int s_keep_broker(const kz_config_t *cfg, const char *cmd, pid_t *spare, pid_t *adopt)
{
    *spare = *adopt = 0;
    pid_t broker = kz_cli_find_broker(cfg);
    if (broker <= 0)
        return KZ_EXIT_OK;
    *spare = broker;
    if (!cfg->supervisor.broker) {
        fprintf(stderr,
                "the broker of the previous run (pid %ld) still runs: left running "
                "(supervisor.broker is false: kaizen does not supervise it)\n",
                (long)broker);
        return KZ_EXIT_OK;
    }
    fprintf(stderr,
            "the broker of the previous run (pid %ld) still runs: asking it what it holds\n",
            (long)broker);
    s_held_t held;
    char why[1024] = "";
    if (s_broker_held(cfg, S_ADOPT_PROBE_MS, &held) != 0) {
        char bound[32];
        kz_cli_human_ms(S_ADOPT_PROBE_MS, bound, sizeof bound);
        snprintf(why, sizeof why,
                 "does not answer mmi.stats on bus.endpoints.router (%s) within %s",
                 cfg->bus.connect.router ? cfg->bus.connect.router : "?", bound);
    } else {
        char unused[768];
        s_endpoints_unused(cfg, unused, sizeof unused);
        if (unused[0])
            snprintf(why, sizeof why, "does not listen on %s (the endpoints changed?)", unused);
    }
    if (why[0] && kz_cli_find_broker(cfg) != broker) {
        /* it died meanwhile: nothing left to keep */
        fprintf(stderr, "the broker of the previous run (pid %ld) is gone\n", (long)broker);
        *spare = 0;
        return KZ_EXIT_OK;
    }
    if (why[0])
        return kz_cli_error(cmd,
                            "the broker of the previous run (pid %ld) %s. It may hold events "
                            "nobody has stored yet, so it is left running and nothing was "
                            "started: put back the bus endpoints it was started with and run "
                            "'kaizen %s' again to keep them, or stop it with 'kaizen down' (what "
                            "it holds is lost)",
                            (long)broker, why, cmd);
    fprintf(stderr,
            "adopting the broker of the previous run (pid %ld): it holds %llu queued message%s "
            "(%llu for the recorder) and %llu unacknowledged, kept for the new orchestrator\n",
            (long)broker, (unsigned long long)held.queued, held.queued == 1 ? "" : "s",
            (unsigned long long)held.recorder, (unsigned long long)held.inflight);
    *adopt = broker;
    return KZ_EXIT_OK;
}

/* ------------------------------------------------------------ the database */

/* Start the embedded cluster (or reach the DSN's server) and migrate.
   Describes it into WHERE. 0, or KZ_EXIT_FAILURE (printed) */
static int s_database(const kz_config_t *cfg, const char *cmd, char *where, size_t wlen)
{
    char err[2048] = "";
    kz_db_describe(cfg, where, wlen);
    if (kz_db_embedded(cfg)) {
        kz_pg_t pg;
        if (kz_pg_init(&pg, cfg->state_dir, err, sizeof err) != 0)
            return kz_cli_error(cmd, "%s", err);
        fprintf(stderr, "database: %s\n", where);
        if (pg.drop_privileges) { /* for the summary; kz_pg_start says it now */
            size_t n = strlen(where);
            snprintf(where + n, wlen - n,
                     " (the server runs as user '%s': PostgreSQL refuses to run as root)",
                     pg.run_user);
        }
        bool started = false;
        if (kz_pg_start(&pg, S_PG_START_MS, &started, err, sizeof err) != 0)
            return kz_cli_error(cmd, "the embedded database did not start: %s", err);
        fprintf(stderr, "database: %s\n", started ? "started" : "already running");
    } else {
        fprintf(stderr, "database: %s\n", where);
    }
    PGconn *db = kz_db_connect(cfg, S_APP, err, sizeof err);
    if (!db)
        return kz_cli_error(cmd, "%s", err);
    int applied = 0;
    if (kz_db_migrate(db, NULL, &applied, err, sizeof err) != 0) {
        PQfinish(db);
        return kz_cli_error(cmd, "the schema could not be brought up to date: %s", err);
    }
    int version = kz_db_schema_version(db, err, sizeof err);
    PQfinish(db);
    if (version < 0)
        return kz_cli_error(cmd, "%s", err);
    if (applied > 0)
        fprintf(stderr, "database: schema version %d (%d migration%s applied now)\n", version,
                applied, applied == 1 ? "" : "s");
    else
        fprintf(stderr, "database: schema version %d, up to date\n", version);
    return KZ_EXIT_OK;
}

/* --------------------------------------------------------- the orchestrator */

/* Start EXE ARGV with stdin and stdout on /dev/null and stderr appended
   to LOG (what it prints before it opens its own log file lands there
   too), in a new session (DAEMON) or process group of its own. The pid,
   or -1 with ERRBUF (exec failed: the reason comes back over a pipe) */
static pid_t s_spawn(const char *exe, char *const argv[], const char *log, bool daemon,
                     char *errbuf, size_t errlen)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(errbuf, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errbuf, errlen, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        int e = 0;
        if (daemon ? setsid() < 0 : setpgid(0, 0) != 0)
            e = errno;
        int devnull = open("/dev/null", O_RDWR);
        int logfd = kz_file_open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (!e && (devnull < 0 || logfd < 0))
            e = errno;
        if (!e && (dup2(devnull, STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0 ||
                   dup2(logfd, STDERR_FILENO) < 0))
            e = errno;
        /* nothing but stdio reaches the orchestrator and, through it, the
           agents: not these two, nor what our caller left open (a pipe
           someone waits on for EOF, make's jobserver). Marked close-on-exec
           rather than closed, so the pipe still reports a failed exec. */
        if (!e) {
            if (devnull > STDERR_FILENO)
                close(devnull);
            if (logfd > STDERR_FILENO)
                close(logfd);
            if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
                long max = sysconf(_SC_OPEN_MAX);
                for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
                    fcntl(fd, F_SETFD, FD_CLOEXEC);
            }
        }
        if (!e && chdir("/") != 0)
            e = errno;
        if (!e) {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT};
            for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
                signal(sigs[i], SIG_DFL);
            execv(exe, argv);
            e = errno;
        }
        ssize_t w = write(pipefd[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(pipefd[1]);
    int e = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof e) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        snprintf(errbuf, errlen, "unable to run '%s': %s", exe, strerror(e));
        return -1;
    }
    return pid;
}

/* "exit 1", "killed by signal 9" */
static void s_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "status %d", status);
}

static void s_print_log_tail(const char *log)
{
    fprintf(stderr, "last lines of %s:\n", log);
    if (kz_cli_print_tail(stderr, log, S_LOG_TAIL_LINES, "  | ") != 0)
        fprintf(stderr, "  (unable to read it: %s)\n", strerror(errno));
}

/* ------------------------------------------------------------ waiting */

typedef struct {
    const kz_config_t *cfg;
    char host[256];
    int expected;      /* agent instances configured for this host */
    int ready;         /* of those: running */
    int failed;        /* of those: failed */
    bool answered;     /* kaizen.status answered */
    char waiting[512]; /* names of those not ready yet */
} s_progress_t;

static bool s_ours(const s_progress_t *p, const kz_agent_config_t *a)
{
    return !a->host || strcmp(a->host, p->host) == 0;
}

/* The status entry of the supervised instance NAME.INSTANCE, or NULL */
static const kz_val_t *s_find(const kz_val_t *agents, const char *name, int instance)
{
    if (!agents || agents->type != KZ_VAL_ARRAY)
        return NULL;
    for (uint32_t i = 0; i < agents->u.arr.count; i++) {
        const kz_val_t *a = &agents->u.arr.items[i];
        const char *n = kz_map_str(a, "name");
        if (n && strcmp(n, name) == 0 && kz_map_bool(a, "supervised", false) &&
            kz_map_int(a, "instance", -1) == instance)
            return a;
    }
    return NULL;
}

/* Ask kaizen.status and count the agents that are up */
static void s_progress(s_progress_t *p, FILE *warn)
{
    char err[1024];
    kz_msg_t *reply = kz_cli_status_call(p->cfg, S_STATUS_MS, err, sizeof err);
    p->answered = reply != NULL;
    p->ready = p->failed = 0;
    p->waiting[0] = '\0';
    if (!reply)
        return;
    const kz_val_t *agents = kz_map_get(kz_msg_body_const(reply), "agents");
    size_t at = 0;
    for (size_t i = 0; i < p->cfg->agents_count; i++) {
        const kz_agent_config_t *a = &p->cfg->agents[i];
        if (!s_ours(p, a))
            continue;
        for (int inst = 0; inst < a->instances; inst++) {
            const kz_val_t *e = s_find(agents, a->name, inst);
            const char *state = e ? kz_map_str(e, "state") : NULL;
            if (state && strcmp(state, "failed") == 0) {
                p->failed++;
                if (warn) {
                    const char *reason = kz_map_str(e, "failed_reason");
                    fprintf(warn, "warning: agent %s.%d failed: %s\n", a->name, inst,
                            reason ? reason : "(no reason given)");
                }
            } else if (state && strcmp(state, "starting") != 0 && strcmp(state, "backoff") != 0) {
                p->ready++;
            } else if (at + 1 < sizeof p->waiting) {
                /* named for the timeout message; cut short when there are many */
                int w = snprintf(p->waiting + at, sizeof p->waiting - at, "%s%s.%d (%s)",
                                 at ? ", " : "", a->name, inst, state ? state : "not started");
                at = w > 0 ? at + (size_t)w : at;
                if (at >= sizeof p->waiting)
                    at = sizeof p->waiting - 1;
            }
        }
    }
    kz_msg_destroy(&reply);
}

/* The bound on the start: the broker and each layer of agents get
   supervisor.start_timeout, plus S_BASE_WAIT_MS */
static int64_t s_start_bound(const s_progress_t *p)
{
    bool layers[8] = {false};
    int count = 0;
    for (size_t i = 0; i < p->cfg->agents_count; i++) {
        const kz_agent_config_t *a = &p->cfg->agents[i];
        if (!s_ours(p, a))
            continue;
        int r = kz_agent_layer_rank(kz_agent_layer_of(a->name));
        if (r < 0 || r > 7)
            r = 7;
        if (!layers[r]) {
            layers[r] = true;
            count++;
        }
    }
    return S_BASE_WAIT_MS + (int64_t)p->cfg->supervisor.start_timeout_ms * (count + 1);
}

/* Wait for the orchestrator PID to answer and its agents to come up.
   0 up, 1 it exited (*STATUS), 2 the bound passed, 3 interrupted */
static int s_wait_up(s_progress_t *p, pid_t pid, int *status)
{
    int64_t deadline = s_mono_ms() + s_start_bound(p);
    bool tty = isatty(STDERR_FILENO);
    char last[640] = "";
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid)
            return 1;
        if (s_forwarded)
            return 3;
        s_progress(p, NULL);
        char line[640];
        if (!p->answered)
            snprintf(line, sizeof line, "waiting for the broker and the orchestrator");
        else
            snprintf(line, sizeof line, "agents: %d of %d running, %d failed", p->ready,
                     p->expected, p->failed);
        if (strcmp(line, last) != 0) {
            if (tty)
                fprintf(stderr, "\r\033[K%s", line);
            else
                fprintf(stderr, "%s\n", line);
            snprintf(last, sizeof last, "%s", line);
        }
        if (p->answered && p->ready + p->failed >= p->expected) {
            if (tty)
                fprintf(stderr, "\n");
            return 0;
        }
        if (s_mono_ms() >= deadline) {
            if (tty)
                fprintf(stderr, "\n");
            return 2;
        }
        s_nap(S_POLL_MS);
    }
}

/* --------------------------------------------------------------- up */

typedef struct {
    kz_cli_t *cli;
    const kz_config_t *cfg;
    const char *cmd; /* "up", "run-once": names the command in messages */
    FILE *out;       /* the summary: stdout for up */
    bool foreground;
    bool started; /* this run started the orchestrator */
    char pidfile[PATH_MAX];
    char log[PATH_MAX];
    char db_where[1024];
    char config[PATH_MAX]; /* absolute, "" for the built-in defaults */
} s_up_t;

static void s_summary(const s_up_t *u, pid_t pid, const s_progress_t *p)
{
    char logs[PATH_MAX];
    if (kz_state_path(u->cfg, "logs", logs, sizeof logs) != 0)
        snprintf(logs, sizeof logs, "%s/logs", u->cfg->state_dir);
    fprintf(u->out, "kaizen is up: %d agent%s on %s (orchestrator pid %ld)\n", p->ready,
            p->ready == 1 ? "" : "s", p->host, (long)pid);
    if (p->failed)
        fprintf(u->out, "  %d agent%s failed: see 'kaizen status' and 'kaizen logs NAME'\n",
                p->failed, p->failed == 1 ? "" : "s");
    fprintf(u->out, "  state     %s\n", u->cfg->state_dir);
    fprintf(u->out, "  logs      %s   ('kaizen logs [NAME] [-f]')\n", logs);
    fprintf(u->out, "  database  %s\n", u->db_where);
    fprintf(u->out, "  config    %s\n", u->config[0] ? u->config : "(built-in defaults)");
    fprintf(u->out, "  bus       %s\n", u->cfg->bus.connect.router);
    if (u->foreground)
        fprintf(u->out,
                "running in the foreground: Ctrl-C stops everything; the orchestrator logs to "
                "%s ('kaizen logs orchestrator -f')\n",
                u->log);
    else
        fprintf(u->out, "see 'kaizen status' for the agents; stop everything with 'kaizen down'\n");
    fflush(u->out);
}

/* Put things back after a start that failed: stop what was started */
static void s_undo(const s_up_t *u)
{
    fprintf(stderr, "stopping what was started\n");
    int64_t t = (int64_t)u->cfg->supervisor.stop_timeout_ms * 9 + 10000;
    kz_cli_stop(u->cfg, t > INT_MAX ? INT_MAX : (int)t, NULL);
}

/* --foreground after the start: wait for the orchestrator, then stop
   what is left and the database */
static int s_foreground(const s_up_t *u, pid_t pid, int *lock_p)
{
    close(*lock_p); /* `kaizen down` elsewhere may stop us */
    *lock_p = -1;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            status = 0;
            break;
        }
    }
    s_child = 0;
    char how[64];
    s_describe_status(status, how, sizeof how);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    fprintf(stderr, "the orchestrator stopped (%s)\n", how);
    if (!clean)
        s_print_log_tail(u->log);
    char err[1024] = "";
    int lock = kz_state_lock(u->cfg, S_LOCK_WAIT_MS, err, sizeof err);
    if (lock < 0)
        return kz_cli_error(u->cmd, "%s", err);
    /* without the lock, a `kaizen down` may have stopped ours and another
       `kaizen up` started a new run meanwhile: that one is not ours to stop */
    pid_t now = kz_pidfile_read(u->pidfile);
    if (now > 0 && now != pid && kz_cli_pid_is_ours(u->cfg, now)) {
        close(lock);
        fprintf(stderr, "kaizen was started again meanwhile (orchestrator pid %ld): left running\n",
                (long)now);
        return clean ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
    }
    int64_t t = (int64_t)u->cfg->supervisor.stop_timeout_ms * 9 + 10000;
    int rc = kz_cli_stop(u->cfg, t > INT_MAX ? INT_MAX : (int)t, NULL);
    close(lock);
    if (rc != KZ_EXIT_OK)
        return kz_cli_error(u->cmd, "not everything could be stopped (see above)");
    printf("kaizen stopped\n");
    return clean ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
}

static int s_start(s_up_t *u, int *lock_p)
{
    const kz_config_t *cfg = u->cfg;
    char err[PATH_MAX * 2 + 256] = "";

    /* 1. already running? */
    pid_t old = kz_pidfile_read(u->pidfile);
    if (old > 0 && kz_cli_pid_is_ours(cfg, old)) {
        fprintf(u->out, "kaizen is already running (orchestrator pid %ld, state in %s)\n",
                (long)old, cfg->state_dir);
        fflush(u->out);
        return KZ_EXIT_OK;
    }
    fprintf(stderr, "starting kaizen (state in %s)\n", cfg->state_dir);

    /* Ctrl-C while starting (or, with --foreground, while running) stops
       what was started: passed on to the orchestrator once there is one */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_forward;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    /* 2. what a run that did not stop left behind: its broker, with what
       it queued while no orchestrator ran, is kept; the rest is stopped
       (the agents' unacknowledged deliveries go back to their groups) */
    pid_t spare = 0, adopt = 0;
    int kept = s_keep_broker(cfg, u->cmd, &spare, &adopt);
    if (kept != KZ_EXIT_OK)
        return kept;
    if (old > 0)
        unlink(u->pidfile);
    int grace = cfg->supervisor.stop_timeout_ms < 5000 ? cfg->supervisor.stop_timeout_ms : 5000;
    /* a live kaizen program at that pid that is not ours (pid reuse)
       leads someone else's run: its group is not ours to clean */
    pid_t pgid = old > 0 && kz_pid_is_kaizen(old) ? 0 : old;
    if (kz_cli_kill_leftovers(cfg, pgid, spare, grace) < 0)
        return kz_cli_error(u->cmd, "processes of a previous run could not be stopped");

    /* 3. the bus endpoints, before anything starts (the adopted broker's
       are taken by it) */
    if (cfg->supervisor.broker && !spare && s_check_endpoints(cfg, err, sizeof err) != 0)
        return kz_cli_error(u->cmd, "%s; nothing was started", err);

    /* 4. the programs */
    char bin[PATH_MAX], exe[PATH_MAX + 32];
    if (kz_cli_bin_dir(bin, sizeof bin) != 0)
        return kz_cli_error(u->cmd, "unable to find the directory of the kaizen executable");
    snprintf(exe, sizeof exe, "%s/kaizen-orchestrator", bin);
    if (access(exe, X_OK) != 0)
        return kz_cli_error(u->cmd,
                            "'%s' is missing or not executable: build it with 'make' or "
                            "install kaizen with 'make install'",
                            exe);

    /* 5. the database, with the schema up to date */
    int rc = s_database(cfg, u->cmd, u->db_where, sizeof u->db_where);
    if (rc != KZ_EXIT_OK || s_forwarded) {
        if (rc == KZ_EXIT_OK)
            fprintf(stderr, "interrupted: stopping\n");
        if (kz_db_embedded(cfg))
            s_undo(u);
        return KZ_EXIT_FAILURE;
    }

    /* 6. the orchestrator */
    if (u->cli->config_path && !realpath(u->cli->config_path, u->config))
        return kz_cli_error(u->cmd, "unable to resolve '%s': %s", u->cli->config_path,
                            strerror(errno));
    char *argv[10];
    char adopt_pid[32];
    int argc = 0;
    argv[argc++] = exe;
    if (u->config[0]) {
        argv[argc++] = (char *)"-c";
        argv[argc++] = u->config;
    }
    if (adopt > 0) {
        snprintf(adopt_pid, sizeof adopt_pid, "%ld", (long)adopt);
        argv[argc++] = (char *)"--adopt-broker";
        argv[argc++] = adopt_pid;
    }
    argv[argc++] = (char *)"--log-file";
    argv[argc++] = u->log;
    argv[argc] = NULL;

    pid_t pid = s_spawn(exe, argv, u->log, !u->foreground, err, sizeof err);
    if (pid < 0) {
        kz_cli_error(u->cmd, "%s", err);
        s_undo(u);
        return KZ_EXIT_FAILURE;
    }
    s_child = pid;
    u->started = true;
    if (s_forwarded) /* a signal between the check above and s_child */
        kill(pid, (int)s_forwarded);
    if (kz_pidfile_write(u->pidfile, pid) != 0)
        fprintf(stderr, "kaizen %s: warning: unable to write '%s': %s\n", u->cmd, u->pidfile,
                strerror(errno));
    fprintf(stderr, "orchestrator: started (pid %ld), logging to %s\n", (long)pid, u->log);

    /* 7. wait until it answers and the agents are up */
    s_progress_t p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    if (gethostname(p.host, sizeof p.host - 1) != 0)
        snprintf(p.host, sizeof p.host, "localhost");
    for (size_t i = 0; i < cfg->agents_count; i++)
        if (s_ours(&p, &cfg->agents[i]))
            p.expected += cfg->agents[i].instances;
    int status = 0;
    int w = s_wait_up(&p, pid, &status);
    if (w == 1) {
        char how[64];
        s_describe_status(status, how, sizeof how);
        kz_cli_error(u->cmd, "kaizen-orchestrator exited during start-up (%s)", how);
        s_print_log_tail(u->log);
        s_child = 0;
        s_undo(u);
        return KZ_EXIT_FAILURE;
    }
    if (w == 3) {
        fprintf(stderr, "interrupted: stopping\n");
        s_foreground(u, pid, lock_p);
        return KZ_EXIT_FAILURE;
    }
    if (w == 2) {
        char bound[32];
        kz_cli_human_ms(s_start_bound(&p), bound, sizeof bound);
        if (!p.answered)
            kz_cli_error(u->cmd,
                         "the orchestrator (pid %ld) did not answer kaizen.status within %s",
                         (long)pid, bound);
        else
            kz_cli_error(u->cmd, "not every agent came up within %s; waiting for: %s", bound,
                         p.waiting);
        s_print_log_tail(u->log);
        if (u->foreground) {
            kill(pid, SIGTERM);
            s_foreground(u, pid, lock_p);
            return KZ_EXIT_FAILURE;
        }
        fprintf(stderr, "kaizen is running anyway: see 'kaizen status' and 'kaizen logs NAME'; "
                        "stop it with 'kaizen down'\n");
        return KZ_EXIT_FAILURE;
    }
    if (p.failed)
        s_progress(&p, stderr); /* once more, to name the failed agents */
    s_summary(u, pid, &p);
    if (u->foreground)
        return s_foreground(u, pid, lock_p);
    return KZ_EXIT_OK;
}

/* The lock, the sample targets, then s_start; with FOREGROUND false the
   caller's signal handlers are put back afterwards */
static int s_up(kz_cli_t *cli, const char *cmd, FILE *out, bool foreground, bool *started)
{
    s_up_t u;
    memset(&u, 0, sizeof u);
    u.cli = cli;
    u.cfg = cli->cfg;
    u.cmd = cmd;
    u.out = out;
    u.foreground = foreground;
    s_child = 0;
    s_forwarded = 0;
    if (started)
        *started = false;

    char err[1024] = "";
    if (kz_state_init(u.cfg, err, sizeof err) != 0)
        return kz_cli_error(cmd, "%s", err);
    /* TCP requires CURVE: the automatic keys, on first use */
    bool made = false;
    if (kz_keys_ensure(u.cfg, &made, err, sizeof err) != 0)
        return kz_cli_error(cmd, "%s", err);
    if (made)
        fprintf(out,
                "made the bus's CURVE keys in %s/" KZ_KEYS_DIR
                " (a tcp:// endpoint requires CURVE)\n",
                u.cfg->state_dir);
    if (kz_state_path(u.cfg, "run/orchestrator.pid", u.pidfile, sizeof u.pidfile) != 0 ||
        kz_state_log_path(u.cfg, "orchestrator", u.log, sizeof u.log) != 0)
        return kz_cli_error(cmd, "state directory path too long: %s", u.cfg->state_dir);
    int lock = kz_state_lock(u.cfg, S_LOCK_WAIT_MS, err, sizeof err);
    if (lock < 0)
        return kz_cli_error(cmd, "%s", err);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction saved[3];
    for (size_t i = 0; i < 3; i++)
        sigaction(sigs[i], NULL, &saved[i]);
    int rc = kz_cli_prepare_targets(u.cfg, cmd);
    if (rc == KZ_EXIT_OK)
        rc = s_start(&u, &lock);
    if (lock >= 0)
        close(lock);
    if (!foreground) {
        for (size_t i = 0; i < 3; i++)
            sigaction(sigs[i], &saved[i], NULL);
        s_child = 0;
    }
    if (started)
        *started = u.started;
    return rc;
}

int kz_cli_up(kz_cli_t *cli, const char *cmd, FILE *out, bool *started)
{
    return s_up(cli, cmd, out, false, started);
}

static const struct option s_opts[] = {
    {"foreground", no_argument, NULL, 'F'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    bool foreground = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 'F':
            foreground = true;
            break;
        default:
            return kz_cli_bad_option("up", c, argv);
        }
    }
    if (optind < argc)
        return kz_cli_usage("up", "unexpected argument '%s'", argv[optind]);
    /* what the config names exists, before anything starts */
    if (kz_cli_config_check(cli->cfg, "up") != KZ_EXIT_OK)
        return KZ_EXIT_FAILURE;
    return s_up(cli, "up", stdout, foreground, NULL);
}

const kz_cli_cmd_t kz_cmd_up = {
    "up", "start the database, broker, orchestrator and agents", s_usage, s_run, true, s_opt_tables,
    NULL,
};
