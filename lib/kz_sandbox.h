/*  kz_sandbox.h - the sandbox every run of a target's code goes through

    A tool, fixer, test, build or generator command reads a target's files
    and configuration, which are hostile input: they can run code (a
    committed black.py shadowing black, pylint's init-hook, flake8's local
    plugins, conftest.py, a Makefile). kz_proc_run runs such a command in
    the sandbox when its options say so (kz_proc_opts_t.sandbox):

      - as an unprivileged user: sandbox.user (default kaizen-runner, which
        scripts/install-deps creates) when kaizen runs as root, else as
        kaizen's own user; the child sets its groups, gid and uid and checks
        they stuck before anything else runs;
      - under resource limits (CPU time, address space, processes, file
        size; sandbox.limits);
      - inside bubblewrap: no network (unless a target's tests allow it),
        new namespaces, /usr and /etc read-only, a private /tmp, /proc and
        /dev, the working directory bound read-only (checkers) or writable
        (fixers, tests, builds) and nothing else: the state directory,
        other targets, the database socket, keys, /root, /home, /var and
        /work are not there;
      - with an allow-listed environment: PATH, HOME=/tmp, LANG, LC_ALL,
        TERM, PYTHONSAFEPATH=1, PYTHONDONTWRITEBYTECODE=1 and what the
        recipe or target sets (kz_proc_opts_t.env_add), nothing else of
        kaizen's own (no KAIZEN_DATABASE_URL, PG*, SSH_AUTH_SOCK, GIT_*).

    sandbox.enabled: false drops bubblewrap and the user switch (the
    environment and the limits stay), and every summary says so.

    Files: the runner must reach what it runs on. Directories kaizen makes
    for a sandboxed run (worktrees, scratch copies) are group-shared with
    the runner (kz_sandbox_share_dir: group = the runner's, mode 2770, so
    what is created inside inherits the group; kaizen's git runs with
    umask 007) and their parents inside the state directory are made
    traversable (0711). Scratch copies kaizen fills itself are handed over
    with kz_sandbox_give_tree.
*/
#ifndef KZ_SANDBOX_H_INCLUDED
#define KZ_SANDBOX_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define KZ_SANDBOX_USER  "kaizen-runner"
#define KZ_SANDBOX_BWRAP "/usr/bin/bwrap"
#define KZ_SANDBOX_PATH  "/usr/local/bin:/usr/bin:/bin"

/* The config's sandbox: section (kz_config.h) */
typedef struct {
    bool enabled;   /* sandbox.enabled, default true */
    char *user;     /* sandbox.user, default kaizen-runner (used when kaizen runs as root) */
    char **bind_ro; /* sandbox.bind_ro: more paths visible read-only (NULL-terminated) */
    size_t bind_ro_count;
    char **bind_rw; /* sandbox.bind_rw: paths visible writable (a cache shared between runs) */
    size_t bind_rw_count;
    int cpu_time_ms;  /* sandbox.cpu_time, default 1h of CPU per process (0 = no limit) */
    int memory_mb;    /* sandbox.memory_mb, default 8192: address space (0 = no limit) */
    int processes;    /* sandbox.processes, default 1024 (0 = no limit) */
    int file_size_mb; /* sandbox.file_size_mb, default 4096 (0 = no limit) */
} kz_sandbox_config_t;

/* How a run sees its working directory */
typedef enum {
    KZ_SANDBOX_NONE = 0, /* not sandboxed: kaizen's own git, pg_ctl, version probes */
    KZ_SANDBOX_READ,     /* checkers: cwd bound read-only */
    KZ_SANDBOX_WRITE,    /* fixers, tests, builds: cwd bound writable */
} kz_sandbox_mode_t;

/* One sandboxed run, as kz_proc_run describes it */
typedef struct {
    kz_sandbox_mode_t mode;
    const char *cwd;            /* bound read-only or writable (MODE); NULL = /tmp */
    const char *const *ro;      /* more paths bound read-only (NULL-terminated, may be NULL) */
    const char *const *rw;      /* more paths bound writable (NULL-terminated, may be NULL) */
    bool network;               /* share the host's network (a target's tests that need it) */
    const char *const *env_add; /* "K=V" set on top of the allow-list */
    const char *const *argv;    /* the command; argv[0] looked up in KZ_SANDBOX_PATH */
} kz_sandbox_spec_t;

#define KZ_SANDBOX_NLIMITS 4

/* What the child needs, all prepared before fork (kz_sandbox_enter only
   makes async-signal-safe calls) */
typedef struct {
    char *path;  /* the program to execve: bwrap, or the command itself when off */
    char **argv; /* its argv */
    char **env;  /* the allow-listed environment */
    bool switch_user;
    uid_t uid;
    gid_t gid;
    int resources[KZ_SANDBOX_NLIMITS];
    struct rlimit limits[KZ_SANDBOX_NLIMITS];
    size_t nlimits;
    char *home; /* sandbox off: the run's private HOME and TMPDIR (0700, made by
                   kz_sandbox_prepare, removed by kz_sandbox_exec_free); NULL otherwise */
} kz_sandbox_exec_t;

/* Take CFG (copied) as this process's sandbox settings; STATE_DIR is the
   directory under which kz_sandbox_share_dir may open parents (may be
   NULL). Before any call the defaults hold: on, kaizen-runner. 0 / -1 */
int kz_sandbox_configure(const kz_sandbox_config_t *cfg, const char *state_dir, char *errbuf,
                         size_t errlen);
/* The defaults into CFG (strings NULL: the user then is kaizen-runner) */
void kz_sandbox_config_defaults(kz_sandbox_config_t *cfg);
bool kz_sandbox_enabled(void);
/* "on (bubblewrap, user kaizen-runner)", "on (bubblewrap, as root's ...)", "off" */
void kz_sandbox_describe(char *buf, size_t len);

/* The uid and gid runs switch to; false when they do not switch (kaizen
   is not root, or the sandbox is off) or the user does not exist */
bool kz_sandbox_runner(uid_t *uid, gid_t *gid);

/* Prepare SPEC into X. -1 with ERRBUF when it cannot run sandboxed: the
   sandbox is on and bubblewrap is missing or fails its probe, the user
   does not exist, the program is not found. Free X with
   kz_sandbox_exec_free. */
int kz_sandbox_prepare(const kz_sandbox_spec_t *spec, kz_sandbox_exec_t *x, char *errbuf,
                       size_t errlen);
void kz_sandbox_exec_free(kz_sandbox_exec_t *x);
/* In the forked child: limits, umask 007, groups, gid, uid (checked).
   0, or -1 with errno */
int kz_sandbox_enter(const kz_sandbox_exec_t *x);

/* Run a probe inside the sandbox (once per process unless FORCE): 0 when
   bubblewrap starts, the user switch holds and the state directory is
   not visible; -1 with ERRBUF saying what is wrong and how to fix it */
int kz_sandbox_check(bool force, char *errbuf, size_t errlen);

/* DIR (made by kaizen) becomes reachable by the runner: group = the
   runner's, mode 2770, its parents inside the state directory 0711.
   Nothing when runs do not switch users. 0 / -1 */
int kz_sandbox_share_dir(const char *dir, char *errbuf, size_t errlen);
/* Everything under DIR (kaizen's scratch copy) is given to the runner
   (symlinks are not followed). Nothing when runs do not switch users. */
int kz_sandbox_give_tree(const char *dir, char *errbuf, size_t errlen);

/* Copy the files RELS (NULL-terminated paths relative to ROOT, at most
   MAX bytes each) into a new temporary directory DIR the sandbox's user
   owns: a target's settings files, read in the sandbox by a user that
   may not reach ROOT itself. DIR is set as soon as it exists (the caller
   removes it, kz_rmtree). 0 / -1 with ERRBUF */
int kz_sandbox_copy_files(const char *root, const char *const *rels, size_t max, char *dir,
                          size_t len, char *errbuf, size_t errlen);

#endif
