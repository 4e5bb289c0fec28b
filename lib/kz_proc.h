/*  kz_proc.h - the safe subprocess runner

    Runs argv (never through a shell) in a working directory with a given
    environment, in its own process group, with a timeout that kills the
    whole group, and captures stdout and stderr up to a size cap each.
    An optional tick callback runs periodically while the caller waits,
    so a bus client can keep its registrations alive during a long tool
    run (opts.tick = kz_agent_proc_tick; opts.tick_arg = agent).
    With opts.sandbox set, the run goes through the sandbox (kz_sandbox.h):
    every run of a target's code or of a tool on a target's files does.
*/
#ifndef KZ_PROC_H_INCLUDED
#define KZ_PROC_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kz_sandbox.h"

typedef struct {
    const char *const *argv;    /* argv[0] is looked up in PATH; NULL-terminated */
    const char *cwd;            /* NULL = current directory */
    const char *const *env;     /* NULL = inherit; else the whole environment */
    const char *const *env_add; /* "K=V" entries added to (or replacing in) the environment */
    const char *stdin_data;     /* NULL = /dev/null */
    size_t stdin_len;
    int timeout_ms;    /* <= 0: no timeout */
    int kill_grace_ms; /* after SIGTERM to the group, SIGKILL after this (default 2000) */
    size_t out_cap;    /* bytes of stdout kept (default 1 MiB); more is read and dropped */
    size_t err_cap;    /* bytes of stderr kept (default 1 MiB) */
    /* Called from kz_proc_run's wait loop at least every TICK_MS (default
       250 when <= 0) until it returns, in the caller's thread; NULL = none.
       It must not call kz_proc_run itself. */
    void (*tick)(void *arg);
    void *tick_arg;
    int tick_ms;
    /* Asked as often as TICK would run (NULL = never): true when the result
       is no longer wanted, and the group is then stopped like on a timeout
       (SIGTERM, SIGKILL after the grace) with res.cancelled set. */
    bool (*cancel)(void *arg);
    void *cancel_arg;
    /* Run ARGV in the sandbox (kz_sandbox.h) when not KZ_SANDBOX_NONE:
       every run of a target's code or of a tool on a target's files does.
       ENV is then ignored: the child gets the sandbox's allow-list plus
       ENV_ADD; argv[0] is looked up in the sandbox's PATH; CWD is bound
       read-only (KZ_SANDBOX_READ) or writable (KZ_SANDBOX_WRITE). */
    kz_sandbox_mode_t sandbox;
    const char *const *sandbox_ro; /* more paths bound read-only (NULL-terminated) */
    const char *const *sandbox_rw; /* more paths bound writable (NULL-terminated) */
    bool sandbox_network;          /* the run keeps the host's network */
    /* The child's umask when SET_UMASK (kaizen's git in shared worktrees) */
    bool set_umask;
    mode_t umask;
} kz_proc_opts_t;

typedef struct {
    int exit_code;   /* exit status; -1 when killed by a signal, or when the status was lost
                        because something else reaped the child (SIGCHLD ignored) */
    int term_signal; /* signal that ended it, 0 if it exited */
    bool timed_out;  /* the timeout fired and the group was killed */
    bool cancelled;  /* opts.cancel said stop, and the group was killed */
    char *out;       /* NUL-terminated captured stdout (malloc'd) */
    size_t out_len;
    bool out_truncated; /* more than out_cap bytes were written */
    char *err;
    size_t err_len;
    bool err_truncated;
    int64_t duration_us;
} kz_proc_result_t;

/* Run and wait. Returns 0 when the program ran (look at RES), -1 when it
   could not be started (missing program, bad cwd, fork failure) with
   ERRBUF saying why, e.g. "unable to run 'flake8': no such file". RES is
   always initialised and must be released with kz_proc_result_free. */
int kz_proc_run(const kz_proc_opts_t *opts, kz_proc_result_t *res, char *errbuf, size_t errlen);
void kz_proc_result_free(kz_proc_result_t *res);

/* Look PROGRAM up in PATH like execvp would; returns a malloc'd path or NULL */
char *kz_proc_which(const char *program);

#endif
