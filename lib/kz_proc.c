/*  kz_proc.c - the safe subprocess runner

    fork + execve, never a shell. The child leads its own process group so
    a timeout can kill everything it started (kill(-pgid)); its signal mask
    and dispositions are reset and every descriptor but 0, 1 and 2 is closed
    on exec, so bus sockets never leak into tools. An exec failure travels
    back through a close-on-exec pipe, so a missing program is an error of
    kz_proc_run rather than an exit code 127.

    The parent polls stdin, stdout and stderr and reaps the child with
    waitpid(WNOHANG) in the same loop (no SIGCHLD handler, so it is safe in
    threads). Output past the cap is read and dropped so the child never
    blocks on a full pipe. When the leader has exited but something it
    left behind still holds the pipes open, the group is killed after a
    short grace instead of hanging the caller. The loop's poll timeout is
    also bounded by the next opts->tick, which it calls when due.
*/
#include "kz_proc.h"
#include "kz_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_DEFAULT_CAP   (1u << 20)
#define S_DEFAULT_GRACE 2000
#define S_ORPHAN_GRACE  200  /* ms the pipes may stay open after the leader exited */
#define S_ABANDON_MS    1000 /* ms after SIGKILL before pipes held outside the group are dropped */
#define S_POLL_MS       50   /* poll period while the child runs, to reap it */
#define S_CHUNK         65536
#define S_DEFAULT_TICK  250 /* ms between opts->tick calls when tick_ms <= 0 */

extern char **environ;

/* What the child reports through the exec pipe when it cannot exec */
typedef struct {
    int stage; /* S_STAGE_* */
    int err;   /* errno */
} s_child_error_t;

enum { S_STAGE_CHDIR = 1, S_STAGE_EXEC, S_STAGE_SETUP, S_STAGE_SANDBOX };

typedef struct {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
    bool truncated;
} s_capture_t;

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

/* Move FD above 2 (so the child's dup2 onto 0..2 never clobbers it) */
static int s_high_fd(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return high;
}

static int s_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    fds[0] = s_high_fd(fds[0]);
    fds[1] = s_high_fd(fds[1]);
    if (fds[0] < 0 || fds[1] < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return -1;
    }
    return 0;
}

static void s_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

char *kz_proc_which(const char *program)
{
    struct stat st;
    if (!program || !*program)
        return NULL;
    if (strchr(program, '/')) {
        if (stat(program, &st) == 0 && S_ISREG(st.st_mode) && access(program, X_OK) == 0)
            return strdup(program);
        return NULL;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (true) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        char *candidate;
        /* an empty PATH entry means the current directory */
        if (asprintf(&candidate, "%.*s%s%s", (int)n, n ? path : ".", "/", program) < 0)
            return NULL;
        if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) && access(candidate, X_OK) == 0)
            return candidate;
        free(candidate);
        if (!end)
            return NULL;
        path = end + 1;
    }
}

/* The child's environment: BASE with ADD entries replacing or added.
   The strings are not copied; the array is malloc'd. */
static char **s_build_env(const char *const *base, const char *const *add)
{
    size_t nbase = 0, nadd = 0;
    while (base && base[nbase])
        nbase++;
    while (add && add[nadd])
        nadd++;
    char **env = calloc(nbase + nadd + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < nbase; i++) {
        const char *eq = strchr(base[i], '=');
        size_t klen = eq ? (size_t)(eq - base[i]) : strlen(base[i]);
        bool replaced = false;
        for (size_t j = 0; j < nadd && !replaced; j++)
            replaced = strncmp(add[j], base[i], klen) == 0 && add[j][klen] == '=';
        if (!replaced)
            env[n++] = (char *)base[i];
    }
    for (size_t j = 0; j < nadd; j++) {
        bool later = false; /* the last of repeated keys wins */
        const char *eq = strchr(add[j], '=');
        size_t klen = eq ? (size_t)(eq - add[j]) : strlen(add[j]);
        for (size_t k = j + 1; k < nadd && !later; k++)
            later = strncmp(add[k], add[j], klen) == 0 && add[k][klen] == '=';
        if (!later)
            env[n++] = (char *)add[j];
    }
    env[n] = NULL;
    return env;
}

/* The process that forks: the child checks it is still its parent */
static _Atomic pid_t s_parent; /* written by every thread that runs a child: the same value */

/* In the child, after fork: only async-signal-safe calls from here on */
static void s_child(const char *path, char *const argv[], char *const envp[], const char *cwd,
                    const kz_proc_opts_t *opts, const kz_sandbox_exec_t *sandbox, int in_fd,
                    int out_fd, int err_fd, int report_fd)
{
    s_child_error_t report = {S_STAGE_SETUP, 0};
    sigset_t none;
    struct sigaction dfl;

    setpgid(0, 0);
    /* the tool dies with the agent that runs it, even one killed with
       SIGKILL (its own children are its business: it has a group of its
       own that the agent's timeout kills) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() != s_parent)
        _exit(127); /* the agent died before we got here */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and RT internals */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        goto fail;
    /* everything above 2 closes on exec, including the report pipe */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536)
            max = 65536;
        for (int fd = 3; fd < max; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (cwd && chdir(cwd) < 0) {
        report.stage = S_STAGE_CHDIR;
        goto fail;
    }
    if (opts->set_umask)
        umask(opts->umask);
    if (sandbox && kz_sandbox_enter(sandbox) != 0) {
        report.stage = S_STAGE_SANDBOX;
        goto fail;
    }
    report.stage = S_STAGE_EXEC;
    execve(path, argv, envp);
fail:
    report.err = errno;
    if (write(report_fd, &report, sizeof report) < 0) {
        /* nothing more to do: the parent sees exit code 127 */
    }
    _exit(127);
}

static int s_capture_init(s_capture_t *cap, size_t limit)
{
    cap->len = 0;
    cap->truncated = false;
    cap->cap = limit ? limit : S_DEFAULT_CAP;
    cap->alloc = 4096;
    cap->data = malloc(cap->alloc);
    if (!cap->data)
        return -1;
    cap->data[0] = '\0';
    return 0;
}

/* Read what FD has; 0 = keep polling, 1 = end of file */
static int s_capture_read(s_capture_t *cap, int fd)
{
    char chunk[S_CHUNK];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : 1;
    if (n == 0)
        return 1;
    size_t keep = (size_t)n;
    if (cap->len + keep > cap->cap) {
        keep = cap->cap - cap->len;
        cap->truncated = true;
    }
    if (keep > 0 && cap->len + keep + 1 > cap->alloc) {
        size_t alloc = cap->alloc;
        while (alloc < cap->len + keep + 1)
            alloc *= 2;
        if (alloc > cap->cap + 1)
            alloc = cap->cap + 1;
        char *data = realloc(cap->data, alloc);
        if (!data) { /* keep what we have, drop the rest */
            cap->truncated = true;
            return 0;
        }
        cap->data = data;
        cap->alloc = alloc;
    }
    memcpy(cap->data + cap->len, chunk, keep);
    cap->len += keep;
    cap->data[cap->len] = '\0';
    return 0;
}

/* Write more of stdin; 1 when done (all written or the child closed it) */
static int s_feed(int fd, const char *data, size_t len, size_t *done)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    /* a child that closes stdin early must not kill us with SIGPIPE */
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigset_t pending;
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = write(fd, data + *done, len - *done);
    int saved = errno;
    if (n < 0 && saved == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (n < 0)
        return saved == EINTR || saved == EAGAIN ? 0 : 1;
    *done += (size_t)n;
    return *done >= len;
}

void kz_proc_result_free(kz_proc_result_t *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->err);
    memset(res, 0, sizeof *res);
}

int kz_proc_run(const kz_proc_opts_t *opts, kz_proc_result_t *res, char *errbuf, size_t errlen)
{
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    int report[2] = {-1, -1};
    char **envp = NULL;
    char *path = NULL;
    kz_sandbox_exec_t sbx;
    bool sandboxed = false, bwrapped = false;
    const char *cwd = opts ? opts->cwd : NULL;
    char *const *argv = NULL;
    s_capture_t out = {0}, err = {0};
    int rc = -1;
    pid_t pid = -1;
    int64_t start = s_now_us();
    const char *prog = NULL;

    memset(res, 0, sizeof *res);
    res->exit_code = -1;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!opts || !opts->argv || !opts->argv[0]) {
        s_errf(errbuf, errlen, "unable to run a program: empty argv");
        goto done;
    }
    prog = opts->argv[0];
    if (opts->sandbox != KZ_SANDBOX_NONE) {
        kz_sandbox_spec_t spec = {.mode = opts->sandbox,
                                  .cwd = opts->cwd,
                                  .ro = opts->sandbox_ro,
                                  .rw = opts->sandbox_rw,
                                  .network = opts->sandbox_network,
                                  .env_add = opts->env_add,
                                  .argv = opts->argv};
        if (kz_sandbox_prepare(&spec, &sbx, errbuf, errlen) != 0)
            goto done;
        sandboxed = true;
        path = strdup(sbx.path);
        argv = sbx.argv;
        envp = s_build_env((const char *const *)sbx.env, NULL);
        /* bubblewrap changes directory inside; outside it starts at / */
        if (strcmp(sbx.argv[0], "bwrap") == 0) {
            bwrapped = true;
            cwd = "/";
        }
    } else {
        path = kz_proc_which(prog);
        if (!path) {
            s_errf(errbuf, errlen, "unable to run '%s': %s", prog,
                   strchr(prog, '/') && access(prog, F_OK) == 0 ? strerror(EACCES)
                                                                : strerror(ENOENT));
            goto done;
        }
        argv = (char *const *)opts->argv;
        envp = s_build_env(opts->env ? opts->env : (const char *const *)environ, opts->env_add);
    }
    if (!path || !envp || s_capture_init(&out, opts->out_cap) < 0 ||
        s_capture_init(&err, opts->err_cap) < 0) {
        s_errf(errbuf, errlen, "unable to run '%s': out of memory", prog);
        goto done;
    }
    if (s_pipe(out_pipe) < 0 || s_pipe(err_pipe) < 0 || s_pipe(report) < 0) {
        s_errf(errbuf, errlen, "unable to run '%s': pipe: %s", prog, strerror(errno));
        goto done;
    }
    if (opts->stdin_data) {
        if (s_pipe(in_pipe) < 0) {
            s_errf(errbuf, errlen, "unable to run '%s': pipe: %s", prog, strerror(errno));
            goto done;
        }
    } else {
        in_pipe[0] = s_high_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (in_pipe[0] < 0) {
            s_errf(errbuf, errlen, "unable to open '/dev/null': %s", strerror(errno));
            goto done;
        }
    }

    /* no signal handler of ours may run in the child before s_child has
       reset them all: block every signal across the fork (the child
       unblocks after the reset, the parent restores its mask) */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    s_parent = getpid();
    pid = fork();
    if (pid == 0)
        s_child(path, argv, envp, cwd, opts, sandboxed ? &sbx : NULL, in_pipe[0], out_pipe[1],
                err_pipe[1], report[1]);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (pid < 0) {
        s_errf(errbuf, errlen, "unable to run '%s': fork: %s", prog, strerror(fork_errno));
        goto done;
    }
    setpgid(pid, pid); /* also here, so the group exists before we may signal it */
    s_close(&in_pipe[0]);
    s_close(&out_pipe[1]);
    s_close(&err_pipe[1]);
    s_close(&report[1]);

    /* the report pipe closes on a successful exec, or carries the error */
    s_child_error_t child_err;
    ssize_t got;
    do
        got = read(report[0], &child_err, sizeof child_err);
    while (got < 0 && errno == EINTR);
    s_close(&report[0]);
    if (got == (ssize_t)sizeof child_err) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (child_err.stage == S_STAGE_CHDIR)
            s_errf(errbuf, errlen, "unable to run '%s': cannot change directory to '%s': %s", prog,
                   cwd, strerror(child_err.err));
        else if (child_err.stage == S_STAGE_SANDBOX)
            s_errf(errbuf, errlen,
                   "unable to run '%s': sandbox: cannot set its limits or switch to its user: %s",
                   prog, strerror(child_err.err));
        else
            s_errf(errbuf, errlen, "unable to run '%s': %s", prog, strerror(child_err.err));
        goto done;
    }

    if (in_pipe[1] >= 0) {
        fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
        if (opts->stdin_len == 0)
            s_close(&in_pipe[1]);
    }
    size_t fed = 0;
    int grace_ms = opts->kill_grace_ms > 0 ? opts->kill_grace_ms : S_DEFAULT_GRACE;
    int64_t deadline = opts->timeout_ms > 0 ? start + (int64_t)opts->timeout_ms * 1000 : 0;
    int64_t kill_at = 0;   /* SIGKILL to the group when the SIGTERM grace ends */
    int64_t orphan_at = 0; /* SIGKILL when the leader is gone but the pipes stay open */
    int64_t killed_at = 0;
    bool reaped = false, killed = false;
    int status = 0;
    bool status_lost = false;
    int64_t tick_us = (int64_t)(opts->tick_ms > 0 ? opts->tick_ms : S_DEFAULT_TICK) * 1000;
    int64_t next_tick = opts->tick || opts->cancel ? s_now_us() + tick_us : 0;

    while (!reaped || out_pipe[0] >= 0 || err_pipe[0] >= 0) {
        struct pollfd fds[3];
        int nfds = 0, out_i = -1, err_i = -1, in_i = -1;
        if (out_pipe[0] >= 0) {
            out_i = nfds;
            fds[nfds++] = (struct pollfd){.fd = out_pipe[0], .events = POLLIN};
        }
        if (err_pipe[0] >= 0) {
            err_i = nfds;
            fds[nfds++] = (struct pollfd){.fd = err_pipe[0], .events = POLLIN};
        }
        if (in_pipe[1] >= 0) {
            in_i = nfds;
            fds[nfds++] = (struct pollfd){.fd = in_pipe[1], .events = POLLOUT};
        }
        int wait_ms = reaped ? S_ORPHAN_GRACE : S_POLL_MS;
        int64_t now = s_now_us();
        int64_t next = 0;
        if (deadline && !res->timed_out)
            next = deadline;
        else if (kill_at && !killed)
            next = kill_at;
        if (orphan_at && !killed && (!next || orphan_at < next))
            next = orphan_at;
        if (next_tick && (!next || next_tick < next))
            next = next_tick;
        if (next) {
            int64_t left = (next - now + 999) / 1000;
            if (left < wait_ms)
                wait_ms = left > 0 ? (int)left : 0;
        }
        int n = poll(fds, (nfds_t)nfds, wait_ms);
        if (n < 0 && errno != EINTR) {
            s_errf(errbuf, errlen, "unable to run '%s': poll: %s", prog, strerror(errno));
            kill(-pid, SIGKILL);
            if (!reaped)
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                    ;
            reaped = true;
            goto done;
        }
        if (n > 0) {
            if (out_i >= 0 && fds[out_i].revents && s_capture_read(&out, out_pipe[0]))
                s_close(&out_pipe[0]);
            if (err_i >= 0 && fds[err_i].revents && s_capture_read(&err, err_pipe[0]))
                s_close(&err_pipe[0]);
            if (in_i >= 0 && fds[in_i].revents &&
                ((fds[in_i].revents & (POLLERR | POLLHUP)) ||
                 s_feed(in_pipe[1], opts->stdin_data, opts->stdin_len, &fed)))
                s_close(&in_pipe[1]);
        }
        if (!reaped) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w < 0 && errno == ECHILD) {
                /* someone else reaped it (SIGCHLD ignored, a waitpid(-1)
                   elsewhere): the status is lost, but it is gone */
                kz_warn("exit status of '%s' lost: the process was reaped elsewhere", prog);
                status_lost = true;
                w = pid;
            }
            if (w == pid) {
                reaped = true;
                s_close(&in_pipe[1]);
                if (out_pipe[0] >= 0 || err_pipe[0] >= 0)
                    orphan_at = s_now_us() + S_ORPHAN_GRACE * 1000;
            }
        }
        now = s_now_us();
        if (deadline && !res->timed_out && !res->cancelled && now >= deadline && !reaped) {
            res->timed_out = true;
            kill(-pid, SIGTERM);
            kill_at = now + (int64_t)grace_ms * 1000;
        }
        if (!killed && ((kill_at && now >= kill_at) || (orphan_at && now >= orphan_at))) {
            killed = true;
            killed_at = now;
            kill(-pid, SIGKILL);
        }
        /* something that left the group (setsid) may still hold the pipes:
           stop waiting for it a little after the kill */
        if (killed && reaped && now >= killed_at + (int64_t)S_ABANDON_MS * 1000) {
            s_close(&out_pipe[0]);
            s_close(&err_pipe[0]);
        }
        if (next_tick && now >= next_tick) {
            if (opts->tick)
                opts->tick(opts->tick_arg);
            /* nobody waits for the result any more: stop the whole group
               as a timeout would */
            if (opts->cancel && !reaped && !res->timed_out && !res->cancelled &&
                opts->cancel(opts->cancel_arg)) {
                res->cancelled = true;
                kill(-pid, SIGTERM);
                kill_at = s_now_us() + (int64_t)grace_ms * 1000;
            }
            next_tick = s_now_us() + tick_us;
        }
    }
    /* nothing the program started may outlive it */
    kill(-pid, SIGKILL);

    if (status_lost) {
        res->exit_code = -1;
    } else if (WIFEXITED(status) && bwrapped && WEXITSTATUS(status) > 128 &&
               WEXITSTATUS(status) < 128 + NSIG) {
        /* bubblewrap exits 128 + N when the command was killed by signal N */
        res->exit_code = -1;
        res->term_signal = WEXITSTATUS(status) - 128;
    } else if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->exit_code = -1;
        res->term_signal = WTERMSIG(status);
    }
    rc = 0;
    /* bubblewrap exits 1 when it cannot set the sandbox up (a bind source
       it cannot reach, a namespace it may not make), which many tools'
       exit_ok takes for "findings": say it could not run instead */
    if (bwrapped && res->exit_code == 1 && err.data && err.len > 7 &&
        strncmp(err.data, "bwrap: ", 7) == 0) {
        size_t n = strcspn(err.data, "\n");
        snprintf(errbuf, errlen, "unable to run '%s': the sandbox could not start it: %.*s",
                 opts->argv[0], (int)(n > 400 ? 400 : n), err.data);
        rc = -1;
    }
done:
    res->duration_us = s_now_us() - start;
    res->out = out.data;
    res->out_len = out.len;
    res->out_truncated = out.truncated;
    res->err = err.data;
    res->err_len = err.len;
    res->err_truncated = err.truncated;
    if (!res->out)
        res->out = calloc(1, 1);
    if (!res->err)
        res->err = calloc(1, 1);
    s_close(&in_pipe[0]);
    s_close(&in_pipe[1]);
    s_close(&out_pipe[0]);
    s_close(&out_pipe[1]);
    s_close(&err_pipe[0]);
    s_close(&err_pipe[1]);
    s_close(&report[0]);
    s_close(&report[1]);
    free(envp);
    free(path);
    if (sandboxed)
        kz_sandbox_exec_free(&sbx);
    return rc;
}
