/*  down.c - `kaizen down`: stop everything `kaizen up` started

    Order: the orchestrator first (SIGTERM: it stops the agents in reverse
    layer order, drains the recorder and stops the broker), within a
    bound; then whatever is left of its process group - also after a
    crashed orchestrator whose agents live on - SIGTERM and then SIGKILL;
    the embedded database last. Stale pid files and ipc:// socket files
    nobody listens on are removed, and so are the worktrees kaizen made
    in the targets' repositories (STATE/worktrees/<target>/: the scan
    worktree, plan-<id>, tests-*, review-*), so that `git worktree list`
    in a user's repository shows only the user's own. Idempotent: with
    nothing running it says so and exits 0.

    Also home of kz_cli_stop and kz_cli_kill_leftovers, which `kaizen up`
    uses to clean up after a failed start and after --foreground.
*/
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kz_db.h"
#include "kz_git.h"
#include "kz_pgctl.h"
#include "kz_state.h"

#define S_MAX_LEFTOVERS 1024
#define S_KILL_WAIT_MS  5000
#define S_LOCK_WAIT_MS  60000
#define S_PG_STOP_MS    60000

static const char s_usage[] =
    "usage: kaizen [-c FILE] down [--timeout DURATION]\n"
    "\n"
    "Stop what 'kaizen up' started: the orchestrator, which stops the agents\n"
    "(reverse layer order) and the broker; then any process of that run that\n"
    "is still alive (also after a crash); then the embedded database. Stale\n"
    "pid files and ipc:// socket files are removed, and so are the worktrees\n"
    "kaizen made in each target's repository (under STATE/worktrees/TARGET;\n"
    "the user's own worktrees are left alone). Running it when nothing runs\n"
    "is fine: it says 'kaizen is not running' and exits 0.\n"
    "\n"
    "  --timeout DURATION   how long the orchestrator gets to stop before what\n"
    "                       is left is killed (default: supervisor.stop_timeout\n"
    "                       x 9 + 10s)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 stopped (or nothing was running), 1 something could not be\n"
    "stopped or removed, or a bad config, 2 usage\n";

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

/* State letter and process group of PID from /proc/PID/stat; -1 when it
   is gone */
static int s_stat(pid_t pid, char *state, pid_t *pgrp)
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
    /* "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses */
    const char *p = strrchr(buf, ')');
    long ppid = 0, pg = 0;
    char st = '?';
    if (!p || sscanf(p + 1, " %c %ld %ld", &st, &ppid, &pg) != 3)
        return -1;
    *state = st;
    *pgrp = (pid_t)pg;
    return 0;
}

/* True while PID runs (a zombie has stopped running) */
static bool s_running(pid_t pid)
{
    char state;
    pid_t pgrp;
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    if (s_stat(pid, &state, &pgrp) != 0)
        return false;
    return state != 'Z' && state != 'X';
}

/* True when PID's command line has "--log-file PATH" (or --log-file=PATH)
   with PATH under LOG_DIR/ */
static bool s_logs_under(pid_t pid, const char *log_dir)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    size_t dlen = strlen(log_dir);
    bool next_is_path = false;
    for (const char *arg = buf; arg < buf + n; arg += strlen(arg) + 1) {
        const char *value = NULL;
        if (next_is_path)
            value = arg;
        else if (strncmp(arg, "--log-file=", 11) == 0)
            value = arg + 11;
        next_is_path = strcmp(arg, "--log-file") == 0;
        if (value && strncmp(value, log_dir, dlen) == 0 && value[dlen] == '/')
            return true;
    }
    return false;
}

bool kz_cli_pid_is_ours(const kz_config_t *cfg, pid_t pid)
{
    char log_dir[PATH_MAX];
    return pid > 0 && s_running(pid) && kz_pid_is_kaizen(pid) &&
           kz_state_path(cfg, "logs", log_dir, sizeof log_dir) == 0 && s_logs_under(pid, log_dir);
}

/* True when PID's executable is kaizen-broker (its command name) */
static bool s_is_broker(pid_t pid)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(comm, sizeof comm, f) != NULL;
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    return ok && strcmp(comm, "kaizen-broker") == 0;
}

/* The leftovers now: running kaizen programs in group PGID or logging
   under LOG_DIR, but not SPARE. Count into PIDS (at most MAX). */
static size_t s_scan(pid_t pgid, pid_t spare, const char *log_dir, pid_t *pids, size_t max)
{
    DIR *dir = opendir("/proc");
    if (!dir)
        return 0;
    size_t count = 0;
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && count < max) {
        char *end = NULL;
        long v = strtol(e->d_name, &end, 10);
        if (!end || *end || v <= 0 || v > INT_MAX || (pid_t)v == self || (pid_t)v == spare)
            continue;
        pid_t pid = (pid_t)v;
        char state;
        pid_t pgrp;
        if (s_stat(pid, &state, &pgrp) != 0 || state == 'Z' || state == 'X')
            continue;
        if (!kz_pid_is_kaizen(pid))
            continue;
        if ((pgid > 0 && pgrp == pgid) || s_logs_under(pid, log_dir))
            pids[count++] = pid;
    }
    closedir(dir);
    return count;
}

/* Wait up to MS for every pid in PIDS to stop running; the number still
   running */
static size_t s_wait_all(const pid_t *pids, size_t n, int ms)
{
    int64_t deadline = s_mono_ms() + ms;
    for (;;) {
        size_t alive = 0;
        for (size_t i = 0; i < n; i++)
            alive += s_running(pids[i]);
        if (alive == 0 || s_mono_ms() >= deadline)
            return alive;
        s_nap(50);
    }
}

pid_t kz_cli_find_broker(const kz_config_t *cfg)
{
    char log_dir[PATH_MAX];
    if (kz_state_path(cfg, "logs", log_dir, sizeof log_dir) != 0)
        return 0;
    pid_t pids[S_MAX_LEFTOVERS];
    size_t n = s_scan(0, 0, log_dir, pids, S_MAX_LEFTOVERS);
    for (size_t i = 0; i < n; i++)
        if (s_is_broker(pids[i]))
            return pids[i];
    return 0;
}

int kz_cli_kill_leftovers(const kz_config_t *cfg, pid_t pgid, pid_t spare, int grace_ms)
{
    char log_dir[PATH_MAX];
    if (kz_state_path(cfg, "logs", log_dir, sizeof log_dir) != 0)
        return 0;
    pid_t pids[S_MAX_LEFTOVERS];
    size_t n = s_scan(pgid, spare, log_dir, pids, S_MAX_LEFTOVERS);
    if (n == 0)
        return 0;
    fprintf(stderr, "stopping %zu leftover process%s of kaizen in %s:", n, n == 1 ? "" : "es",
            cfg->state_dir);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %ld", (long)pids[i]);
    fprintf(stderr, "\n");
    for (size_t i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    if (s_wait_all(pids, n, grace_ms) > 0) {
        for (size_t i = 0; i < n; i++)
            if (s_running(pids[i]))
                kill(pids[i], SIGKILL);
        if (s_wait_all(pids, n, S_KILL_WAIT_MS) > 0) {
            for (size_t i = 0; i < n; i++)
                if (s_running(pids[i]))
                    fprintf(stderr, "kaizen: process %ld survived SIGKILL\n", (long)pids[i]);
            return -1;
        }
    }
    /* processes started meanwhile by a dying supervisor: one more round */
    size_t again = s_scan(pgid, spare, log_dir, pids, S_MAX_LEFTOVERS);
    for (size_t i = 0; i < again; i++)
        kill(pids[i], SIGKILL);
    if (again > 0 && s_wait_all(pids, again, S_KILL_WAIT_MS) > 0)
        return -1;
    return (int)(n + again);
}

/* Remove run/NAME.pid files whose process is no kaizen program any more */
static void s_clean_pidfiles(const kz_config_t *cfg)
{
    char run[PATH_MAX];
    if (kz_state_path(cfg, "run", run, sizeof run) != 0)
        return;
    DIR *dir = opendir(run);
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        bool pid = len > 4 && strcmp(e->d_name + len - 4, ".pid") == 0;
        bool tmp = len > 8 && strcmp(e->d_name + len - 8, ".pid.tmp") == 0;
        if (!pid && !tmp)
            continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", run, e->d_name);
        pid_t p = kz_pidfile_read(path);
        bool alive = s_running(p) && kz_pid_is_kaizen(p);
        /* the orchestrator `up` started logs under STATE/logs; any other
           kaizen program with its pid reused it after a crash */
        char logs[PATH_MAX];
        if (alive && strcmp(e->d_name, "orchestrator.pid") == 0 &&
            kz_state_path(cfg, "logs", logs, sizeof logs) == 0 && !s_logs_under(p, logs))
            alive = false;
        if (tmp || !alive)
            unlink(path);
    }
    closedir(dir);
}

/* Remove the socket file of ENDPOINT when it is ipc:// and nobody
   accepts connections on it */
static void s_clean_socket(const char *endpoint)
{
    if (!endpoint || strncmp(endpoint, "ipc://", 6) != 0 || endpoint[6] == '@')
        return;
    const char *path = endpoint + 6;
    struct sockaddr_un sa;
    struct stat st;
    if (strlen(path) >= sizeof sa.sun_path || lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno == ECONNREFUSED)
        unlink(path);
    close(fd);
}

static void s_clean_sockets(const kz_config_t *cfg)
{
    const kz_endpoints_t *sets[] = {&cfg->bus.connect, &cfg->bus.bind};
    for (size_t i = 0; i < 2; i++) {
        s_clean_socket(sets[i]->pub);
        s_clean_socket(sets[i]->sub);
        s_clean_socket(sets[i]->router);
        s_clean_socket(sets[i]->tap);
    }
}

/* Remove the worktrees kaizen made in each target's repository: every
   worktree under STATE/worktrees/<target>/ (never another one, never the
   user's checkout), then that directory. Run once nothing of kaizen runs
   any more, so no agent is half-way through one. 0, or -1 after naming
   on stderr what could not be removed */
static int s_remove_worktrees(const kz_config_t *cfg)
{
    int rc = 0;
    for (size_t i = 0; i < cfg->targets_count; i++) {
        const kz_target_config_t *t = &cfg->targets[i];
        char rel[600], dir[PATH_MAX], err[1536] = "";
        snprintf(rel, sizeof rel, "worktrees/%s", t->name);
        if (kz_state_path(cfg, rel, dir, sizeof dir) != 0) {
            fprintf(stderr, "kaizen: target %s: state path too long for 'STATE/%s'\n", t->name,
                    rel);
            rc = -1;
            continue;
        }
        int removed = 0;
        if (kz_git_worktrees_remove_under(t->path, dir, &removed, err, sizeof err) != 0) {
            fprintf(stderr, "kaizen: target %s: unable to remove kaizen's worktrees in '%s': %s\n",
                    t->name, t->path, err);
            rc = -1;
        } else if (removed > 0) {
            fprintf(stderr, "removed %d worktree%s of target %s from %s (%s)\n", removed,
                    removed == 1 ? "" : "s", t->name, t->path, dir);
        }
    }
    /* STATE/worktrees itself, when nothing else is in it */
    char top[PATH_MAX];
    if (kz_state_path(cfg, "worktrees", top, sizeof top) == 0)
        (void)rmdir(top);
    return rc;
}

/* Stop the embedded cluster when it runs. 1 stopped, 0 was not running,
   -1 failed (printed) */
static int s_stop_database(const kz_config_t *cfg)
{
    if (!kz_db_embedded(cfg))
        return 0;
    kz_pg_t pg;
    char err[1024] = "";
    if (kz_pg_init(&pg, cfg->state_dir, err, sizeof err) != 0) {
        /* no server programs: there cannot be a server of ours either,
           unless a cluster exists */
        char data[PATH_MAX];
        struct stat st;
        if (kz_state_path(cfg, "db/data", data, sizeof data) == 0 && stat(data, &st) == 0) {
            fprintf(stderr, "kaizen: unable to stop the embedded database: %s\n", err);
            return -1;
        }
        return 0;
    }
    if (kz_pg_exists(&pg) != 1)
        return 0;
    /* a server that is starting, stopping or recovering does not accept
       connections (kz_pg_running says 0) but must be stopped all the
       same: kz_pg_stop is a no-op for a server that is not there */
    int running = kz_pg_running(&pg, err, sizeof err);
    if (running == 0) {
        if (kz_pg_stop(&pg, S_PG_STOP_MS, err, sizeof err) != 0) {
            fprintf(stderr, "kaizen: unable to stop the embedded database: %s\n", err);
            return -1;
        }
        return 0;
    }
    fprintf(stderr, "stopping the embedded database (%s)\n", pg.data_dir);
    if (kz_pg_stop(&pg, S_PG_STOP_MS, err, sizeof err) != 0) {
        fprintf(stderr, "kaizen: unable to stop the embedded database: %s\n", err);
        return -1;
    }
    return 1;
}

int kz_cli_stop(const kz_config_t *cfg, int timeout_ms, bool *was_running)
{
    bool running = false;
    int rc = KZ_EXIT_OK;
    char pidfile[PATH_MAX], log_dir[PATH_MAX];
    pid_t pid = 0;
    if (kz_state_path(cfg, "run/orchestrator.pid", pidfile, sizeof pidfile) == 0 &&
        kz_state_path(cfg, "logs", log_dir, sizeof log_dir) == 0)
        pid = kz_pidfile_read(pidfile);
    /* a pid file left by a crash may name a pid reused since, also by a
       kaizen program of another state directory: ours logs under ours */
    if (pid > 0 && s_running(pid) && kz_pid_is_kaizen(pid) && !s_logs_under(pid, log_dir)) {
        fprintf(stderr, "kaizen: pid %ld of %s is not this run's orchestrator: left alone\n",
                (long)pid, pidfile);
        pid = 0;
    }
    if (pid > 0 && s_running(pid) && kz_pid_is_kaizen(pid)) {
        running = true;
        char bound[32];
        kz_cli_human_ms(timeout_ms, bound, sizeof bound);
        fprintf(stderr, "stopping the orchestrator (pid %ld): agents, then the broker (up to %s)\n",
                (long)pid, bound);
        int64_t started = s_mono_ms();
        if (kill(pid, SIGTERM) != 0 && errno != ESRCH)
            fprintf(stderr, "kaizen: unable to signal the orchestrator (pid %ld): %s\n", (long)pid,
                    strerror(errno));
        if (s_wait_all(&pid, 1, timeout_ms) > 0) {
            fprintf(stderr, "the orchestrator did not stop within %s: killing what is left\n",
                    bound);
            kill(pid, SIGKILL);
        } else {
            char took[32];
            kz_cli_human_ms(s_mono_ms() - started, took, sizeof took);
            fprintf(stderr, "the orchestrator stopped (%s)\n", took);
        }
    }
    /* what is left of its group, or of a run whose orchestrator crashed */
    int grace = cfg->supervisor.stop_timeout_ms < 5000 ? cfg->supervisor.stop_timeout_ms : 5000;
    int left = kz_cli_kill_leftovers(cfg, pid, 0, grace);
    if (left < 0)
        rc = KZ_EXIT_FAILURE;
    if (left != 0)
        running = true;
    if (s_remove_worktrees(cfg) != 0)
        rc = KZ_EXIT_FAILURE;
    int db = s_stop_database(cfg);
    if (db < 0)
        rc = KZ_EXIT_FAILURE;
    if (db > 0)
        running = true;
    s_clean_pidfiles(cfg);
    s_clean_sockets(cfg);
    if (was_running)
        *was_running = running;
    return rc;
}

static const struct option s_opts[] = {
    {"timeout", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    int timeout_ms = -1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (kz_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms <= 0)
                return kz_cli_usage("down", "invalid duration '%s' (e.g. 30s, 2m)", optarg);
            break;
        default:
            return kz_cli_bad_option("down", c, argv);
        }
    }
    if (optind < argc)
        return kz_cli_usage("down", "unexpected argument '%s'", argv[optind]);
    const kz_config_t *cfg = cli->cfg;
    if (timeout_ms < 0) {
        int64_t t = (int64_t)cfg->supervisor.stop_timeout_ms * 9 + 10000;
        timeout_ms = t > INT_MAX ? INT_MAX : (int)t;
    }

    struct stat st;
    if (stat(cfg->state_dir, &st) != 0) {
        printf("kaizen is not running (no state directory %s)\n", cfg->state_dir);
        return KZ_EXIT_OK;
    }
    char err[1024] = "";
    if (kz_state_init(cfg, err, sizeof err) != 0)
        return kz_cli_error("down", "%s", err);
    int lock = kz_state_lock(cfg, S_LOCK_WAIT_MS, err, sizeof err);
    if (lock < 0)
        return kz_cli_error("down", "%s", err);
    int64_t started = s_mono_ms();
    bool was_running = false;
    int rc = kz_cli_stop(cfg, timeout_ms, &was_running);
    close(lock);
    if (rc != KZ_EXIT_OK)
        return kz_cli_error("down", "not everything could be stopped (see above)");
    if (!was_running) {
        printf("kaizen is not running\n");
    } else {
        char took[32];
        kz_cli_human_ms(s_mono_ms() - started, took, sizeof took);
        printf("kaizen stopped (%s)\n", took);
    }
    return fflush(stdout) == 0 ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
}

const kz_cli_cmd_t kz_cmd_down = {
    "down",  "stop the orchestrator, agents, broker and embedded database",
    s_usage, s_run,
    true,    s_opt_tables,
    NULL,
};
