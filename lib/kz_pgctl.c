/*  kz_pgctl.c - the embedded PostgreSQL cluster under the state directory

    Drives Debian's server programs (initdb, pg_ctl) with argv arrays, no
    shell, from a forked child that drops to the cluster's user when we
    are root (lib/kz_pgctl.h). The children write to STATE/logs/
    postgres.log, never to the terminal, get a clean environment (a PGPORT
    or PGDATA of the caller must not move the server), and inherit no
    descriptor but their stdio.

    Layout of STATE/db, owned by the cluster's user, mode 0700:
      data/             the cluster; data/kaizen.conf is rewritten at every
                        start (socket directory, no TCP), included from
                        postgresql.conf, so a moved state directory works
      data.init/        initdb's work in progress, renamed to data/ when
                        complete (a crash during initdb leaves no half
                        cluster that looks whole)
      run/              the unix socket directory, mode 0700
*/
#include "kz_pgctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <locale.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kz_log.h"
#include "kz_proc.h"
#include "kz_state.h"

#define S_PG_USER      "postgres"
#define S_SOCKET_NAME  "/.s.PGSQL.5432"
#define S_PORT         "5432"
#define S_DB_NAME      "kaizen"
#define S_DB_USER      "kaizen"
#define S_LOG_ROTATE   (10 * 1024 * 1024) /* postgres.log is rotated at start beyond this */
#define S_INITDB_MS    (180 * 1000)
#define S_IMMEDIATE_MS (15 * 1000)
#define S_MAX_GROUPS   256

static int s_fail(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool s_is_exec(const char *dir, const char *prog)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, prog) >= (int)sizeof path)
        return false;
    return access(path, X_OK) == 0;
}

/* The server programs: /usr/lib/postgresql/N/bin with the highest N, else
   `pg_config --bindir`. 0 / -1 */
static int s_find_bindir(char *out, size_t len)
{
    double best = -1;
    DIR *d = opendir("/usr/lib/postgresql");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char *end = NULL;
            double v = strtod(e->d_name, &end);
            if (end == e->d_name || *end || v <= best)
                continue;
            char dir[PATH_MAX];
            if (snprintf(dir, sizeof dir, "/usr/lib/postgresql/%s/bin", e->d_name) >=
                (int)sizeof dir)
                continue;
            if (s_is_exec(dir, "initdb") && s_is_exec(dir, "pg_ctl") &&
                s_is_exec(dir, "postgres")) {
                best = v;
                snprintf(out, len, "%s", dir);
            }
        }
        closedir(d);
    }
    if (best >= 0)
        return 0;

    const char *argv[] = {"pg_config", "--bindir", NULL};
    kz_proc_opts_t opts = {0};
    opts.argv = argv;
    opts.timeout_ms = 10000;
    opts.out_cap = 4096;
    opts.err_cap = 4096;
    kz_proc_result_t res;
    char err[256];
    int rc = -1;
    if (kz_proc_run(&opts, &res, err, sizeof err) == 0 && res.exit_code == 0 && res.out) {
        size_t n = strcspn(res.out, "\r\n");
        res.out[n] = '\0';
        if (n > 0 && n < len && s_is_exec(res.out, "initdb") && s_is_exec(res.out, "pg_ctl") &&
            s_is_exec(res.out, "postgres")) {
            snprintf(out, len, "%s", res.out);
            rc = 0;
        }
    }
    kz_proc_result_free(&res);
    return rc;
}

/* PATH's absolute form without trailing slashes (not resolved: the
   directory may not exist yet) */
static int s_absolute(const char *path, char *out, size_t len)
{
    int n;
    if (path[0] == '/') {
        n = snprintf(out, len, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -1;
        const char *rel = strncmp(path, "./", 2) == 0 ? path + 2 : path;
        n = snprintf(out, len, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, rel);
    }
    if (n < 0 || (size_t)n >= len)
        return -1;
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

/* The passwd entry of NAME or UID into PG. 0 / -1 */
static int s_user(kz_pg_t *pg, const char *name, uid_t uid)
{
    long size = sysconf(_SC_GETPW_R_SIZE_MAX);
    if (size < 4096)
        size = 16384;
    char *buf = malloc((size_t)size);
    if (!buf)
        return -1;
    struct passwd pw, *found = NULL;
    int rc = name ? getpwnam_r(name, &pw, buf, (size_t)size, &found)
                  : getpwuid_r(uid, &pw, buf, (size_t)size, &found);
    if (rc != 0 || !found) {
        free(buf);
        return -1;
    }
    snprintf(pg->run_user, sizeof pg->run_user, "%s", pw.pw_name);
    pg->uid = pw.pw_uid;
    pg->gid = pw.pw_gid;
    free(buf);
    return 0;
}

int kz_pg_init(kz_pg_t *pg, const char *state_dir, char *errbuf, size_t errlen)
{
    memset(pg, 0, sizeof *pg);
    if (!state_dir || !*state_dir)
        return s_fail(errbuf, errlen, "no state directory");
    if (strchr(state_dir, '\n') || strchr(state_dir, '\r'))
        return s_fail(errbuf, errlen, "state directory '%s' contains a line break", state_dir);
    if (s_absolute(state_dir, pg->state_dir, sizeof pg->state_dir) != 0)
        return s_fail(errbuf, errlen, "state directory path too long: %s", state_dir);
    if (snprintf(pg->data_dir, sizeof pg->data_dir, "%s/db/data", pg->state_dir) >=
            (int)sizeof pg->data_dir ||
        snprintf(pg->sock_dir, sizeof pg->sock_dir, "%s/db/run", pg->state_dir) >=
            (int)sizeof pg->sock_dir ||
        snprintf(pg->log_file, sizeof pg->log_file, "%s/logs/postgres.log", pg->state_dir) >=
            (int)sizeof pg->log_file)
        return s_fail(errbuf, errlen, "state directory path too long: %s", pg->state_dir);

    /* AF_UNIX paths hold sizeof sun_path - 1 bytes */
    struct sockaddr_un sun;
    size_t sock_len = strlen(pg->sock_dir) + strlen(S_SOCKET_NAME);
    if (sock_len >= sizeof sun.sun_path)
        return s_fail(errbuf, errlen,
                      "the embedded PostgreSQL's socket '%s%s' would be %zu bytes long, more "
                      "than the %zu a unix socket path can hold: use a shorter state_dir",
                      pg->sock_dir, S_SOCKET_NAME, sock_len, sizeof sun.sun_path - 1);

    if (s_find_bindir(pg->bin_dir, sizeof pg->bin_dir) != 0)
        return s_fail(errbuf, errlen,
                      "no PostgreSQL server programs (initdb, pg_ctl) in /usr/lib/postgresql/*/bin "
                      "or `pg_config --bindir`: install them with: apt-get install -y postgresql");

    if (geteuid() != 0) {
        pg->drop_privileges = false;
        if (s_user(pg, NULL, geteuid()) != 0) {
            snprintf(pg->run_user, sizeof pg->run_user, "%ld", (long)geteuid());
            pg->uid = geteuid();
        }
        pg->gid = getegid();
        return 0;
    }
    /* root: the cluster's owner when it exists (made by another user),
       else postgres */
    pg->drop_privileges = true;
    struct stat st;
    if (stat(pg->data_dir, &st) == 0 && st.st_uid != 0) {
        if (s_user(pg, NULL, st.st_uid) != 0)
            return s_fail(errbuf, errlen,
                          "the embedded cluster '%s' belongs to uid %ld, which has no passwd entry",
                          pg->data_dir, (long)st.st_uid);
        return 0;
    }
    if (s_user(pg, S_PG_USER, 0) != 0)
        return s_fail(errbuf, errlen,
                      "running as root, but there is no user '%s' to run the embedded "
                      "PostgreSQL as (PostgreSQL refuses to run as root): install it with: "
                      "apt-get install -y postgresql",
                      S_PG_USER);
    if (pg->uid == 0)
        return s_fail(errbuf, errlen, "user '%s' is root: PostgreSQL refuses to run as root",
                      pg->run_user);
    return 0;
}

int kz_pg_exists(const kz_pg_t *pg)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/PG_VERSION", pg->data_dir);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? 1 : 0;
}

/* PQping of the server on our socket */
static PGPing s_ping(const kz_pg_t *pg)
{
    const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *vals[] = {pg->sock_dir, S_PORT, S_DB_USER, "postgres", "3", NULL};
    return PQpingParams(keys, vals, 0);
}

int kz_pg_running(const kz_pg_t *pg, char *errbuf, size_t errlen)
{
    switch (s_ping(pg)) {
    case PQPING_OK:
        return 1;
    case PQPING_REJECT:      /* starting up, shutting down or in recovery */
    case PQPING_NO_RESPONSE: /* no server (a stale postmaster.pid included) */
        return 0;
    case PQPING_NO_ATTEMPT:
    default:
        return s_fail(errbuf, errlen, "unable to ask the embedded PostgreSQL on '%s' (libpq)",
                      pg->sock_dir);
    }
}

/* The postmaster's pid from data/postmaster.pid, 0 when there is none,
   -1 when it cannot be read (the cluster of another user) */
static pid_t s_postmaster_pid(const kz_pg_t *pg)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/postmaster.pid", pg->data_dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0 || pid > INT32_MAX)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/* True when PID is a live process (a zombie is not: the postmaster is
   not our child, and a container's init may be slow to reap it) */
static bool s_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    bool zombie = false;
    if (fgets(line, sizeof line, f)) {
        const char *paren = strrchr(line, ')');
        zombie = paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
    }
    fclose(f);
    return !zombie;
}

/* True when PID's command name is "postgres" */
static bool s_is_postgres(pid_t pid)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool yes = fgets(comm, sizeof comm, f) && strncmp(comm, "postgres", 8) == 0;
    fclose(f);
    return yes;
}

/* DIR exists with MODE and belongs to the cluster's user */
static int s_own_dir(const kz_pg_t *pg, const char *dir, mode_t mode, char *errbuf, size_t errlen)
{
    if (kz_mkdirs(dir, mode, errbuf, errlen) != 0)
        return -1;
    if (pg->drop_privileges && chown(dir, pg->uid, pg->gid) != 0)
        return s_fail(errbuf, errlen, "unable to give '%s' to user '%s': %s", dir, pg->run_user,
                      strerror(errno));
    if (chmod(dir, mode) != 0)
        return s_fail(errbuf, errlen, "unable to set the mode of '%s': %s", dir, strerror(errno));
    return 0;
}

/* DIR (ours) also searchable by other users (0711 at most), so that the
   cluster's user reaches the files it writes there. 0 / -1 */
static int s_searchable(const char *dir, char *errbuf, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return s_fail(errbuf, errlen, "unable to examine '%s': %s", dir, strerror(errno));
    if ((st.st_mode & 0111) == 0111 || st.st_uid != geteuid())
        return 0;
    if (chmod(dir, (st.st_mode & 07777) | 0111) != 0)
        return s_fail(errbuf, errlen, "unable to set the mode of '%s': %s", dir, strerror(errno));
    return 0;
}

/* The cluster's user can search every directory on the way to PATH
   (mode bits: owner, else group, else other, as the kernel decides) */
static int s_check_reach(const kz_pg_t *pg, const char *path, char *errbuf, size_t errlen)
{
    gid_t groups[S_MAX_GROUPS];
    int ngroups = S_MAX_GROUPS;
    if (getgrouplist(pg->run_user, pg->gid, groups, &ngroups) < 0)
        ngroups = 0;
    char real[PATH_MAX];
    if (!realpath(path, real))
        snprintf(real, sizeof real, "%s", path);
    /* "/", then each prefix ending before a '/', then the whole path */
    size_t n = strlen(real);
    for (size_t i = 0; i <= n; i++) {
        if (i < n && real[i] != '/')
            continue;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int)(i == 0 ? 1 : i), real);
        struct stat st;
        if (stat(dir, &st) != 0)
            return s_fail(errbuf, errlen, "unable to examine '%s': %s", dir, strerror(errno));
        mode_t need;
        const char *who;
        if (st.st_uid == pg->uid) {
            need = S_IXUSR;
            who = "u";
        } else {
            bool member = st.st_gid == pg->gid;
            for (int g = 0; g < ngroups && !member; g++)
                member = groups[g] == st.st_gid;
            need = member ? S_IXGRP : S_IXOTH;
            who = member ? "g" : "o";
        }
        if (!(st.st_mode & need))
            return s_fail(errbuf, errlen,
                          "the embedded PostgreSQL runs as user '%s', which cannot reach '%s': "
                          "directory '%s' is not searchable by it (mode %04o); fix it with: "
                          "chmod %s+x %s",
                          pg->run_user, path, dir, (unsigned)(st.st_mode & 07777), who, dir);
    }
    return 0;
}

/* Open the server's log for appending (rotated once beyond S_LOG_ROTATE
   when ROTATE), owned by the cluster's user who writes it too. fd / -1 */
static int s_open_log(const kz_pg_t *pg, bool rotate, char *errbuf, size_t errlen)
{
    struct stat st;
    if (rotate && stat(pg->log_file, &st) == 0 && st.st_size > S_LOG_ROTATE) {
        char old[PATH_MAX + 8];
        snprintf(old, sizeof old, "%s.1", pg->log_file);
        if (rename(pg->log_file, old) != 0)
            kz_warn("unable to rotate '%s': %s", pg->log_file, strerror(errno));
    }
    int fd = open(pg->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        return s_fail(errbuf, errlen, "unable to open '%s': %s", pg->log_file, strerror(errno));
    if (pg->drop_privileges && fchown(fd, pg->uid, pg->gid) != 0) {
        s_fail(errbuf, errlen, "unable to give '%s' to user '%s': %s", pg->log_file, pg->run_user,
               strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The last lines of the server's log, each on its own indented line */
static void s_log_tail(const kz_pg_t *pg, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(pg->log_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char text[2048];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof text - 1 ? end - (off_t)sizeof text + 1 : 0;
    ssize_t n = end > 0 ? pread(fd, text, sizeof text - 1, from) : 0;
    close(fd);
    if (n <= 0)
        return;
    text[n] = '\0';
    /* the last 6 non-empty lines (the first may be cut: skip it) */
    char *lines[6];
    int count = 0;
    char *save = NULL;
    bool first = from > 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (first) {
            first = false;
            continue;
        }
        if (!*line)
            continue;
        if (count == 6) {
            memmove(lines, lines + 1, 5 * sizeof *lines);
            count = 5;
        }
        lines[count++] = line;
    }
    size_t at = 0;
    for (int i = 0; i < count && at + 1 < len; i++) {
        int w = snprintf(buf + at, len - at, "\n    %.200s", lines[i]);
        if (w < 0)
            break;
        at += (size_t)w;
    }
    if (at >= len)
        buf[len - 1] = '\0';
}

/* Run ARGV (argv[0] an absolute path) as the cluster's user with stdout
   and stderr on OUT_FD, stdin /dev/null, a clean environment, in its own
   session, and wait up to TIMEOUT_MS (then it is killed). *STATUS gets
   the exit code, 128+signal when killed, -1 when the status was lost (the
   child was reaped elsewhere). 0, or -1 with ERRBUF when it could not run */
static int s_run(const kz_pg_t *pg, const char *const *argv, int out_fd, int timeout_ms,
                 int *status, char *errbuf, size_t errlen)
{
    *status = -1;
    static const char *const env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", NULL};
    gid_t groups[S_MAX_GROUPS];
    int ngroups = S_MAX_GROUPS;
    if (pg->drop_privileges && getgrouplist(pg->run_user, pg->gid, groups, &ngroups) < 0) {
        groups[0] = pg->gid;
        ngroups = 1;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0)
        return s_fail(errbuf, errlen, "unable to open /dev/null: %s", strerror(errno));

    /* no signal handler of ours may run in the child before exec */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        /* the child: only async-signal-safe calls until exec */
        for (int sig = 1; sig < NSIG; sig++) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = SIG_DFL;
            sigaction(sig, &sa, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
            _exit(126);
        if (close_range(3, ~0U, 0) != 0) {
            for (int fd = 3; fd < 1024; fd++)
                close(fd);
        }
        if (pg->drop_privileges) {
            if (setgroups((size_t)ngroups, groups) != 0 || setgid(pg->gid) != 0 ||
                setuid(pg->uid) != 0 || getuid() == 0) {
                static const char msg[] = "kaizen: unable to drop privileges\n";
                ssize_t w = write(2, msg, sizeof msg - 1);
                (void)w;
                _exit(126);
            }
        }
        if (chdir("/") != 0)
            _exit(126);
        execve(argv[0], (char *const *)argv, (char *const *)env);
        static const char msg[] = "kaizen: unable to execute a PostgreSQL program\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(null_fd);
    if (pid < 0)
        return s_fail(errbuf, errlen, "unable to run '%s': fork: %s", argv[0],
                      strerror(fork_errno));

    if (timeout_ms <= 0)
        timeout_ms = 60000;
    int64_t deadline = s_now_ms() + timeout_ms;
    bool killed = false;
    for (int sleep_ms = 5;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                *status = WEXITSTATUS(st);
            else if (WIFSIGNALED(st))
                *status = 128 + WTERMSIG(st);
            break;
        }
        if (r < 0 && errno != EINTR) {
            /* reaped by someone else (SIGCHLD ignored): status unknown */
            kz_debug("lost the exit status of '%s': %s", argv[0], strerror(errno));
            break;
        }
        if (!killed && s_now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            killed = true;
        }
        s_sleep_ms(sleep_ms);
        if (sleep_ms < 50)
            sleep_ms *= 2;
    }
    if (killed) {
        *status = -1;
        return s_fail(errbuf, errlen, "'%s' did not finish within %d ms and was killed", argv[0],
                      timeout_ms);
    }
    return 0;
}

/* VALUE as a postgresql.conf string: quotes and backslashes doubled */
static void s_conf_quote(const char *value, char *out, size_t len)
{
    size_t at = 0;
    for (const char *p = value; *p && at + 3 < len; p++) {
        if (*p == '\'' || *p == '\\')
            out[at++] = *p;
        out[at++] = *p;
    }
    out[at] = '\0';
}

/* Write DATA/kaizen.conf (atomically, owned by the cluster's user) */
static int s_write_conf(const kz_pg_t *pg, const char *data, char *errbuf, size_t errlen)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 32], sock[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/kaizen.conf", data);
    snprintf(tmp, sizeof tmp, "%s/kaizen.conf.tmp", data);
    s_conf_quote(pg->sock_dir, sock, sizeof sock);
    char text[3 * PATH_MAX];
    int n = snprintf(text, sizeof text,
                     "# written by kaizen at every start of its embedded cluster: edits are lost\n"
                     "# (postgresql.conf and postgresql.auto.conf are the places for yours)\n"
                     "listen_addresses = ''\n"
                     "port = " S_PORT "\n"
                     "unix_socket_directories = '%s'\n"
                     "unix_socket_permissions = 0700\n"
                     "timezone = 'UTC'\n",
                     sock);
    if (n < 0 || (size_t)n >= sizeof text)
        return s_fail(errbuf, errlen, "socket directory path too long: %s", pg->sock_dir);
    /* as root in a directory the cluster's user owns: a fresh file only
       (O_EXCL), never one that user planted (a link to a file of root's,
       which we would truncate and chown) */
    if (unlink(tmp) != 0 && errno != ENOENT)
        return s_fail(errbuf, errlen, "unable to remove '%s': %s", tmp, strerror(errno));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return s_fail(errbuf, errlen, "unable to write '%s': %s", tmp, strerror(errno));
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0 ||
        (pg->drop_privileges && fchown(fd, pg->uid, pg->gid) != 0)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return s_fail(errbuf, errlen, "unable to write '%s': %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return s_fail(errbuf, errlen, "unable to write '%s': %s", path, strerror(e));
    }
    return 0;
}

/* initdb into data.init, settings, then rename to data */
static int s_initdb(const kz_pg_t *pg, int log_fd, char *errbuf, size_t errlen)
{
    char work[PATH_MAX + 16];
    snprintf(work, sizeof work, "%s.init", pg->data_dir);
    struct stat st;
    if (lstat(work, &st) == 0) {
        kz_info("removing '%s' left by an interrupted initdb", work);
        if (kz_rmtree(work, errbuf, errlen) != 0)
            return -1;
    }
    /* C.UTF-8 when the C library has it (Debian's has), else C */
    const char *locale = "--locale=C.UTF-8";
    locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
    if (loc)
        freelocale(loc);
    else
        locale = "--locale=C";
    char initdb[PATH_MAX + 16];
    snprintf(initdb, sizeof initdb, "%s/initdb", pg->bin_dir);
    const char *argv[] = {
        initdb, "-D",   work,   "-U", S_DB_USER, "--auth-local=trust", "--auth-host=scram-sha-256",
        "-E",   "UTF8", locale, NULL};
    kz_info("creating the embedded PostgreSQL cluster in %s", pg->data_dir);
    int status;
    if (s_run(pg, argv, log_fd, S_INITDB_MS, &status, errbuf, errlen) != 0)
        return -1;
    char version[PATH_MAX + 32];
    snprintf(version, sizeof version, "%s/PG_VERSION", work);
    if ((status != 0 && status != -1) || stat(version, &st) != 0) {
        char tail[1600];
        s_log_tail(pg, tail, sizeof tail);
        return s_fail(errbuf, errlen, "initdb failed (exit status %d); the end of %s:%s", status,
                      pg->log_file, tail);
    }
    /* our settings come last, so they win over initdb's */
    char conf[PATH_MAX + 32];
    snprintf(conf, sizeof conf, "%s/postgresql.conf", work);
    int fd = open(conf, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    static const char include[] = "\n# kaizen: the socket directory, no TCP (rewritten at start)\n"
                                  "include_if_exists = 'kaizen.conf'\n";
    if (fd < 0)
        return s_fail(errbuf, errlen, "unable to open '%s': %s", conf, strerror(errno));
    if (write(fd, include, sizeof include - 1) != (ssize_t)(sizeof include - 1) || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return s_fail(errbuf, errlen, "unable to write '%s': %s", conf, strerror(e));
    }
    close(fd);
    if (s_write_conf(pg, work, errbuf, errlen) != 0)
        return -1;
    if (rename(work, pg->data_dir) != 0)
        return s_fail(errbuf, errlen, "unable to rename '%s' to '%s': %s", work, pg->data_dir,
                      strerror(errno));
    return 0;
}

/* Create database "kaizen" when it is missing (a fixed statement) */
static int s_createdb(const kz_pg_t *pg, char *errbuf, size_t errlen)
{
    const char *keys[] = {"host", "port", "user", "dbname", "application_name", "connect_timeout",
                          NULL};
    const char *vals[] = {pg->sock_dir, S_PORT, S_DB_USER, "postgres", "kaizen-pgctl", "10", NULL};
    PGconn *db = PQconnectdbParams(keys, vals, 0);
    if (!db || PQstatus(db) != CONNECTION_OK) {
        s_fail(errbuf, errlen, "unable to connect to the embedded PostgreSQL on '%s': %s",
               pg->sock_dir, db ? PQerrorMessage(db) : "out of memory");
        PQfinish(db);
        return -1;
    }
    const char *params[] = {S_DB_NAME};
    PGresult *res = PQexecParams(db, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        s_fail(errbuf, errlen, "unable to list the databases: %s", PQerrorMessage(db));
        PQclear(res);
        PQfinish(db);
        return -1;
    }
    bool exists = PQntuples(res) > 0;
    PQclear(res);
    int rc = 0;
    if (!exists) {
        res = PQexec(db, "CREATE DATABASE " S_DB_NAME);
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        /* 42P04 duplicate_database: a concurrent start made it */
        if (!res ||
            (PQresultStatus(res) != PGRES_COMMAND_OK && !(state && strcmp(state, "42P04") == 0)))
            rc = s_fail(errbuf, errlen, "unable to create database '" S_DB_NAME "': %s",
                        PQerrorMessage(db));
        else
            kz_info("created database '" S_DB_NAME "'");
        PQclear(res);
    }
    PQfinish(db);
    return rc;
}

/* How many live processes work in the cluster: every server process
   has the data directory as its working directory. After a kill -9 of
   the postmaster its children linger a moment, holding the shared memory
   a new postmaster refuses to share. */
static int s_cluster_procs(const kz_pg_t *pg)
{
    char data[PATH_MAX];
    if (!realpath(pg->data_dir, data))
        return 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end = NULL;
        long pid = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || pid <= 0)
            continue;
        char link[64], cwd[PATH_MAX];
        snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
        ssize_t n = readlink(link, cwd, sizeof cwd - 1);
        if (n <= 0)
            continue;
        cwd[n] = '\0';
        if (strcmp(cwd, data) == 0 && s_alive((pid_t)pid))
            count++;
    }
    closedir(d);
    return count;
}

/* A postmaster.pid naming a zombie or a live process that is not a
   postgres (a pid reused after a crash) would stop the server from
   starting: remove it and the socket's lock file */
static void s_clear_stale(const kz_pg_t *pg)
{
    pid_t pid = s_postmaster_pid(pg);
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
        return;
    if (s_alive(pid) && s_is_postgres(pid))
        return;
    char path[PATH_MAX + 32];
    kz_info("removing the stale postmaster.pid of '%s' (pid %ld is not a running postgres)",
            pg->data_dir, (long)pid);
    snprintf(path, sizeof path, "%s/postmaster.pid", pg->data_dir);
    if (unlink(path) != 0 && errno != ENOENT)
        kz_warn("unable to remove '%s': %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s%s.lock", pg->sock_dir, S_SOCKET_NAME);
    if (unlink(path) != 0 && errno != ENOENT)
        kz_warn("unable to remove '%s': %s", path, strerror(errno));
}

int kz_pg_start(kz_pg_t *pg, int timeout_ms, bool *started, char *errbuf, size_t errlen)
{
    if (started)
        *started = false;
    if (timeout_ms <= 0)
        timeout_ms = 60000;
    char db_dir[PATH_MAX + 8], logs_dir[PATH_MAX + 8];
    snprintf(db_dir, sizeof db_dir, "%s/db", pg->state_dir);
    snprintf(logs_dir, sizeof logs_dir, "%s/logs", pg->state_dir);

    /* the directories, owned by the cluster's user, reachable by it */
    if (kz_mkdirs(pg->state_dir, 0711, errbuf, errlen) != 0 ||
        kz_mkdirs(logs_dir, 0700, errbuf, errlen) != 0 ||
        (pg->drop_privileges && s_searchable(logs_dir, errbuf, errlen) != 0) ||
        s_own_dir(pg, db_dir, 0700, errbuf, errlen) != 0 ||
        s_own_dir(pg, pg->sock_dir, 0700, errbuf, errlen) != 0)
        return -1;
    if (pg->drop_privileges && (s_check_reach(pg, pg->sock_dir, errbuf, errlen) != 0 ||
                                s_check_reach(pg, logs_dir, errbuf, errlen) != 0))
        return -1;

    if (kz_pg_exists(pg)) {
        /* running; or starting, stopping, or the remains of a crash:
           wait a little for it to answer or for its processes to go */
        PGPing ping = s_ping(pg);
        int64_t until = s_now_ms() + (timeout_ms < 10000 ? timeout_ms : 10000);
        while (ping != PQPING_OK && s_cluster_procs(pg) > 0 && s_now_ms() < until) {
            s_sleep_ms(50);
            ping = s_ping(pg);
        }
        if (ping == PQPING_OK) {
            kz_debug("the embedded PostgreSQL in %s is running", pg->data_dir);
            return s_createdb(pg, errbuf, errlen);
        }
    }
    if (pg->drop_privileges)
        kz_info("running the embedded PostgreSQL as user '%s' (PostgreSQL refuses to run as "
                "root)",
                pg->run_user);
    int log_fd = s_open_log(pg, true, errbuf, errlen);
    if (log_fd < 0)
        return -1;
    if (!kz_pg_exists(pg) && s_initdb(pg, log_fd, errbuf, errlen) != 0) {
        close(log_fd);
        return -1;
    }
    if (s_write_conf(pg, pg->data_dir, errbuf, errlen) != 0) {
        close(log_fd);
        return -1;
    }
    s_clear_stale(pg);

    char pg_ctl[PATH_MAX + 16], secs[16];
    snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", pg->bin_dir);
    snprintf(secs, sizeof secs, "%d", (timeout_ms + 999) / 1000);
    const char *argv[] = {pg_ctl, "-D", pg->data_dir, "-l",    pg->log_file,
                          "-w",   "-t", secs,         "start", NULL};
    int status;
    int rc = s_run(pg, argv, log_fd, timeout_ms + 10000, &status, errbuf, errlen);
    close(log_fd);
    if (rc != 0)
        return -1;
    /* pg_ctl -w returns once it accepts connections; a concurrent start
       may have won (pg_ctl fails, the server runs): ask the server */
    PGPing ping = s_ping(pg);
    for (int64_t until = s_now_ms() + 2000; ping != PQPING_OK && s_now_ms() < until;) {
        s_sleep_ms(100);
        ping = s_ping(pg);
    }
    if (ping != PQPING_OK) {
        char tail[1600];
        s_log_tail(pg, tail, sizeof tail);
        return s_fail(errbuf, errlen,
                      "the embedded PostgreSQL did not start (pg_ctl exit status %d); the end of "
                      "%s:%s",
                      status, pg->log_file, tail);
    }
    if (started)
        *started = status == 0 || status == -1;
    kz_debug("the embedded PostgreSQL runs (socket directory %s, log %s)", pg->sock_dir,
             pg->log_file);
    return s_createdb(pg, errbuf, errlen);
}

/* pg_ctl stop -m MODE, waiting up to TIMEOUT_MS. Its exit status */
static int s_pg_ctl_stop(kz_pg_t *pg, const char *mode, int timeout_ms, int log_fd, char *errbuf,
                         size_t errlen)
{
    char pg_ctl[PATH_MAX + 16], secs[16];
    snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", pg->bin_dir);
    snprintf(secs, sizeof secs, "%d", (timeout_ms + 999) / 1000);
    const char *argv[] = {pg_ctl, "-D", pg->data_dir, "-m", mode, "-w", "-t", secs, "stop", NULL};
    int status = -1;
    if (s_run(pg, argv, log_fd, timeout_ms + 10000, &status, errbuf, errlen) != 0)
        return -1;
    return status;
}

/* Wait up to MS for PID to be gone */
static bool s_wait_gone(pid_t pid, int ms)
{
    for (int64_t until = s_now_ms() + ms; s_alive(pid);) {
        if (s_now_ms() >= until)
            return false;
        s_sleep_ms(20);
    }
    return true;
}

int kz_pg_stop(kz_pg_t *pg, int timeout_ms, char *errbuf, size_t errlen)
{
    if (timeout_ms <= 0)
        timeout_ms = 30000;
    pid_t pid = s_postmaster_pid(pg);
    if (pid < 0)
        return s_fail(errbuf, errlen,
                      "unable to read '%s/postmaster.pid': %s (is it another user's cluster?)",
                      pg->data_dir, strerror(errno));
    /* a postmaster.pid left by a crash may name a pid reused by another
       program: pg_ctl would signal it and we would wait for it in vain */
    if (pid == 0 || !s_alive(pid) || !s_is_postgres(pid)) {
        kz_debug("the embedded PostgreSQL in %s is not running", pg->data_dir);
        return 0;
    }
    int log_fd = s_open_log(pg, false, errbuf, errlen);
    if (log_fd < 0)
        return -1;
    int status = s_pg_ctl_stop(pg, "fast", timeout_ms, log_fd, errbuf, errlen);
    if (status != 0 || !s_wait_gone(pid, 2000)) {
        kz_warn("the embedded PostgreSQL did not stop within %d ms: immediate shutdown",
                timeout_ms);
        s_pg_ctl_stop(pg, "immediate", S_IMMEDIATE_MS, log_fd, errbuf, errlen);
    }
    close(log_fd);
    if (!s_wait_gone(pid, 5000)) {
        char tail[1600];
        s_log_tail(pg, tail, sizeof tail);
        return s_fail(errbuf, errlen,
                      "the embedded PostgreSQL (pid %ld) did not stop; the end of %s:%s", (long)pid,
                      pg->log_file, tail);
    }
    kz_debug("stopped the embedded PostgreSQL in %s", pg->data_dir);
    return 0;
}
