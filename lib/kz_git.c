/*  kz_git.c - the git operations kaizen needs, through the safe runner

    Every call is `git -C REPO -c ... ARGS` started by kz_proc with an
    argv (no shell). The environment is the caller's minus every GIT_*
    variable that could point git at another repository, index or
    identity (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, GIT_AUTHOR_* ...):
    an agent started from inside a git hook must still work on the repo
    it names. Hooks, the fsmonitor daemon, external diff drivers and
    signing are switched off: they are commands kaizen never runs. So are
    the programs a repository's own .git/config can name and its
    .gitattributes select (a repository owned by someone else, trusted
    with trust_owner, is still not trusted to run code as us): every
    filter.NAME.{clean,smudge,process} and merge.NAME.driver set in the
    config is overridden on the command line (s_driver_args), transports
    (protocol.allow=never), submodule recursion, credential helpers and
    log.showSignature are off.
    Pathspecs are literal (GIT_LITERAL_PATHSPECS=1): a file named
    ":(glob)*" is that file, never pathspec magic.

    Only kz_git_fast_forward may change a user's checkout; everything else
    reads, moves refs, or works in worktrees kaizen created.
*/
#include "kz_git.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_proc.h"
#include "kz_state.h"

extern char **environ;

#define KZ_GIT_DEFAULT_TIMEOUT_MS (5 * 60 * 1000)
#define KZ_GIT_MAX_ARGS           64

static _Thread_local void (*s_tick)(void *arg);
static _Thread_local void *s_tick_arg;

void kz_git_set_tick(void (*tick)(void *arg), void *arg)
{
    s_tick = tick;
    s_tick_arg = arg;
}

static void s_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* GIT_* variables kept from the caller's environment: where git itself
   and the user's global configuration live. Every other GIT_* variable
   is dropped (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, GIT_AUTHOR_*,
   GIT_CONFIG_PARAMETERS ...). */
static bool s_env_keep(const char *entry)
{
    static const char *const keep[] = {
        "GIT_EXEC_PATH=",       "GIT_CONFIG_GLOBAL=", "GIT_CONFIG_SYSTEM=",
        "GIT_CONFIG_NOSYSTEM=", "GIT_TEMPLATE_DIR=",  NULL};
    if (strncmp(entry, "GIT_", 4) != 0)
        return true;
    for (size_t i = 0; keep[i]; i++)
        if (strncmp(entry, keep[i], strlen(keep[i])) == 0)
            return true;
    return false;
}

/* The caller's environment without the GIT_* variables (the pointers
   are environ's own; free only the array) */
static const char **s_env_base(void)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    const char **env = calloc(n + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (s_env_keep(*e))
            env[k++] = *e;
    env[k] = NULL;
    return env;
}

static const char *const s_env_add[] = {"LC_ALL=C",
                                        "LANGUAGE=C",
                                        "GIT_TERMINAL_PROMPT=0",
                                        "GIT_PAGER=cat",
                                        "PAGER=cat",
                                        "GIT_EDITOR=true",
                                        "GIT_OPTIONAL_LOCKS=0",
                                        "GIT_ADVICE=0",
                                        "GIT_LITERAL_PATHSPECS=1",
                                        NULL};

/* The options put before every command */
static const char *const s_git_prefix[] = {
    "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgsign=false",
    "-c", "tag.gpgsign=false", "-c", "advice.detachedHead=false", "-c", "color.ui=false",
    /* no background gc / maintenance left running after a command */
    "-c", "gc.auto=0", "-c", "maintenance.auto=false",
    /* nothing a repository's config names runs: no transport (kaizen
       never fetches: submodules, ext::), no credential helper, no gpg
       (log.showSignature, merge.verifySignatures, and the programs
       themselves), no attributes file of the user's */
    "-c", "protocol.allow=never", "-c", "submodule.recurse=false", "-c", "credential.helper=", "-c",
    "log.showSignature=false", "-c", "merge.verifySignatures=false", "-c", "gpg.program=false",
    "-c", "gpg.ssh.program=false", "-c", "gpg.x509.program=false", "-c",
    "core.attributesFile=/dev/null", NULL};

#define S_PREFIX_LEN (sizeof s_git_prefix / sizeof s_git_prefix[0])

/* Foreign-owned repositories trusted with targets[].trust_owner: each
   is "safe.directory=PATH" on every git command line */
#define S_MAX_SAFE 64
static pthread_mutex_t s_safe_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_safe[S_MAX_SAFE];
static size_t s_safe_count;
/* room for the driver overrides of one command (s_driver_args) */
#define S_MAX_DRIVER_ARGS 256

/* The identity of every commit (author and committer): "-c user.name=..."
   and "-c user.email=..." (kz_git_set_identity) */
static char s_user_name[320] = "user.name=kaizen";
static char s_user_email[320] = "user.email=kaizen@localhost";

int kz_git_set_identity(const char *name, const char *email)
{
    if (!name || !*name || !email || !*email ||
        snprintf(s_user_name, sizeof s_user_name, "user.name=%s", name) >=
            (int)sizeof s_user_name ||
        snprintf(s_user_email, sizeof s_user_email, "user.email=%s", email) >=
            (int)sizeof s_user_email) {
        snprintf(s_user_name, sizeof s_user_name, "user.name=kaizen");
        snprintf(s_user_email, sizeof s_user_email, "user.email=kaizen@localhost");
        return -1;
    }
    return 0;
}

/* "worktree add", "branch", ... for error messages */
static void s_label(const char *const *args, char *buf, size_t len)
{
    if (!args[0]) {
        snprintf(buf, len, "git");
        return;
    }
    if (args[1] && args[1][0] != '-' &&
        (strcmp(args[0], "worktree") == 0 || strcmp(args[0], "cherry-pick") == 0))
        snprintf(buf, len, "git %s %s", args[0], args[1]);
    else
        snprintf(buf, len, "git %s", args[0]);
}

/* The first non-empty line of S (trimmed) into BUF */
static void s_first_line(const char *s, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!s)
        return;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        const char *end = strchr(s, '\n');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\t'))
            n--;
        if (n > 0) {
            if (n >= len)
                n = len - 1;
            memcpy(buf, s, n);
            buf[n] = '\0';
            return;
        }
        if (!end)
            return;
        s = end + 1;
    }
}

/* ------------------------------------------------------------ ownership */

static void s_safe_add_one(const char *dir)
{
    char buf[PATH_MAX + 32];
    if (snprintf(buf, sizeof buf, "safe.directory=%s", dir) >= (int)sizeof buf)
        return;
    pthread_mutex_lock(&s_safe_lock);
    bool known = false;
    for (size_t i = 0; i < s_safe_count && !known; i++)
        known = strcmp(s_safe[i], buf) == 0;
    if (!known && s_safe_count < S_MAX_SAFE) {
        char *copy = strdup(buf);
        if (copy)
            s_safe[s_safe_count++] = copy;
    }
    pthread_mutex_unlock(&s_safe_lock);
}

/* PATH as configured and as resolved: git compares safe.directory with
   the path it found the repository at */
static void s_safe_add(const char *path)
{
    char real[PATH_MAX];
    s_safe_add_one(path);
    if (realpath(path, real) && strcmp(real, path) != 0)
        s_safe_add_one(real);
}

int kz_git_check_owner(const char *path, bool trust, char *errbuf, size_t errlen)
{
    char dotgit[PATH_MAX];
    if (snprintf(dotgit, sizeof dotgit, "%s/.git", path) >= (int)sizeof dotgit) {
        s_err(errbuf, errlen, "path too long: '%s'", path);
        return -1;
    }
    const char *paths[] = {path, dotgit};
    uid_t me = geteuid();
    bool foreign = false;
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        if (lstat(paths[i], &st) != 0)
            continue; /* not there (yet): nothing to refuse */
        if (st.st_uid == me)
            continue;
        foreign = true;
        if (!trust) {
            s_err(errbuf, errlen,
                  "refusing the repository '%s': '%s' is owned by uid %ld, not by uid %ld that "
                  "kaizen runs as (its owner could make kaizen run code through the "
                  "repository's config); if you trust that user, set trust_owner: true in "
                  "the target's entry",
                  path, paths[i], (long)st.st_uid, (long)me);
            return -1;
        }
    }
    if (foreign)
        s_safe_add(path);
    return 0;
}

int kz_git_check_targets(const kz_config_t *cfg, char *errbuf, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < cfg->targets_count; i++) {
        const kz_target_config_t *t = &cfg->targets[i];
        char why[1024];
        if (!t->path || kz_git_check_owner(t->path, t->trust_owner, why, sizeof why) == 0)
            continue;
        if (rc == 0)
            s_err(errbuf, errlen, "target %s: %s", t->name, why);
        rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------------ drivers */

/* The "-c" pairs that empty every filter and merge driver the
   configuration of REPO names (the repository's own .git/config above
   all: its attributes choose them, and running them is running the
   owner's code): filter.NAME.{clean,smudge,process} empty and
   required=false (no filter), merge.NAME.driver "false" (a conflict).
   Strings into *HOLD (malloc'd; free it), pointers appended to ARGV at
   *N (room for MAX). 0 / -1 with ERRBUF (a driver name that cannot be
   overridden on a command line is refused) */
static int s_driver_args(const char *repo, const char *const *safe, size_t nsafe, char **hold,
                         const char **argv, size_t *n, size_t max, char *errbuf, size_t errlen)
{
    *hold = NULL;
    const char *cmd[3 + S_PREFIX_LEN + S_MAX_SAFE * 2 + 5];
    size_t c = 0;
    cmd[c++] = "git";
    cmd[c++] = "-C";
    cmd[c++] = repo;
    for (size_t i = 0; s_git_prefix[i]; i++)
        cmd[c++] = s_git_prefix[i];
    for (size_t i = 0; i < nsafe; i++) {
        cmd[c++] = "-c";
        cmd[c++] = safe[i];
    }
    cmd[c++] = "config";
    cmd[c++] = "-z";
    cmd[c++] = "--get-regexp";
    cmd[c++] = "^(filter|merge)\\.";
    cmd[c] = NULL;
    const char **env = s_env_base();
    if (!env) {
        s_err(errbuf, errlen, "git config: out of memory");
        return -1;
    }
    kz_proc_opts_t opts = {0};
    opts.argv = cmd;
    opts.env = env;
    opts.env_add = s_env_add;
    opts.timeout_ms = KZ_GIT_DEFAULT_TIMEOUT_MS;
    opts.out_cap = 1024 * 1024;
    opts.err_cap = 64 * 1024;
    kz_proc_result_t res;
    char perr[256];
    int rc = kz_proc_run(&opts, &res, perr, sizeof perr);
    free(env);
    if (rc != 0) {
        s_err(errbuf, errlen, "git config: %s", perr);
        kz_proc_result_free(&res);
        return -1;
    }
    /* 1: no such key; anything else but 0 is for the command itself to
       report (a missing repository, dubious ownership) */
    if (res.exit_code != 0 || !res.out || res.out_len == 0 || res.out_truncated) {
        bool trunc = res.out_truncated;
        kz_proc_result_free(&res);
        if (trunc) {
            s_err(errbuf, errlen, "git config: too many filter and merge settings in '%s'", repo);
            return -1;
        }
        return 0;
    }
    /* each entry "KEY\nVALUE\0" (or "KEY\0"); one "-c KEY=VALUE" string
       per override, all in one buffer */
    size_t cap = res.out_len * 8 + 256, start = *n;
    char *buf = malloc(cap);
    if (!buf) {
        kz_proc_result_free(&res);
        s_err(errbuf, errlen, "git config: out of memory");
        return -1;
    }
    size_t used = 0;
    rc = 0;
    for (size_t at = 0; at < res.out_len && rc == 0;) {
        const char *key = res.out + at;
        size_t klen = strnlen(key, res.out_len - at);
        at += klen + 1;
        const char *nl = memchr(key, '\n', klen);
        size_t keylen = nl ? (size_t)(nl - key) : klen;
        /* SECTION.NAME.VAR: NAME may hold dots; VAR is after the last */
        const char *first = memchr(key, '.', keylen);
        const char *last = NULL;
        for (const char *p = key + keylen; p > key; p--)
            if (p[-1] == '.') {
                last = p - 1;
                break;
            }
        if (!first || !last || last == first)
            continue; /* filter.X or merge.X: no driver */
        bool filter = strncmp(key, "filter.", 7) == 0;
        const char *var = last + 1;
        size_t varlen = keylen - (size_t)(var - key);
        bool wanted = filter ? (varlen == 5 && strncmp(var, "clean", 5) == 0) ||
                                   (varlen == 6 && strncmp(var, "smudge", 6) == 0) ||
                                   (varlen == 7 && strncmp(var, "process", 7) == 0)
                             : varlen == 6 && strncmp(var, "driver", 6) == 0;
        if (!wanted)
            continue;
        int namelen = (int)(last - first - 1);
        const char *name = first + 1;
        if (memchr(name, '=', (size_t)namelen) || memchr(name, '\n', (size_t)namelen)) {
            s_err(errbuf, errlen,
                  "refusing to run git in '%s': its config names a %s driver '%.*s' that "
                  "cannot be switched off",
                  repo, filter ? "filter" : "merge", namelen, name);
            rc = -1;
            break;
        }
        static const char *const fvars[] = {"clean=", "smudge=", "process=", "required=false"};
        static const char *const mvars[] = {"driver=false"};
        const char *const *vars = filter ? fvars : mvars;
        size_t nvars = filter ? 4 : 1;
        for (size_t v = 0; v < nvars; v++) {
            if (*n + 2 > max) {
                s_err(errbuf, errlen, "git: too many filter and merge drivers in '%s'", repo);
                rc = -1;
                break;
            }
            int w = snprintf(buf + used, cap - used, "%s.%.*s.%s", filter ? "filter" : "merge",
                             namelen, name, vars[v]);
            if (w < 0 || (size_t)w >= cap - used) {
                s_err(errbuf, errlen, "git: too many filter and merge drivers in '%s'", repo);
                rc = -1;
                break;
            }
            bool dup = false;
            for (size_t k = start; k < *n && !dup; k++)
                dup = strcmp(argv[k], buf + used) == 0;
            if (dup)
                continue;
            argv[(*n)++] = "-c";
            argv[(*n)++] = buf + used;
            used += (size_t)w + 1;
        }
    }
    kz_proc_result_free(&res);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    *hold = buf;
    return 0;
}

/* Commands that never read or write a file's content through
   attributes (refs, objects, configuration): no driver can run, so no
   s_driver_args first */
static bool s_no_drivers(const char *const *args)
{
    static const char *const plain[] = {"rev-parse", "config",   "for-each-ref", "merge-base",
                                        "rev-list",  "cat-file", "update-ref",   "symbolic-ref",
                                        "show-ref",  "ls-tree",  "branch",       NULL};
    if (!args[0])
        return true;
    for (size_t i = 0; plain[i]; i++)
        if (strcmp(args[0], plain[i]) == 0)
            return true;
    return strcmp(args[0], "worktree") == 0 && args[1] &&
           (strcmp(args[1], "list") == 0 || strcmp(args[1], "prune") == 0);
}

static void s_free_args(char **safe, size_t nsafe, char *drivers)
{
    for (size_t i = 0; i < nsafe; i++)
        free(safe[i]);
    free(drivers);
}

/* Run git. Returns 0 when git ran to an exit (its code in *CODE, stdout
   in *OUT when OUT is non-NULL, stderr's first line in ERRLINE), -1
   when it could not run, timed out or was killed (ERRBUF says so).
   OUT_CAP 0 = kz_proc's default. IN (IN_LEN bytes) is its stdin, NULL
   for none. */
static int s_run_full(const char *repo, const char *const *args, int timeout_ms, size_t out_cap,
                      const char *in, size_t in_len, int *code, char **out, size_t *out_len,
                      bool *out_trunc, char *errline, size_t errline_len, char *errbuf,
                      size_t errlen)
{
    /* git -C REPO, the prefix, safe.directory pairs, the driver
       overrides, the identity, ARGS, NULL */
    const char
        *argv[3 + S_PREFIX_LEN + S_MAX_SAFE * 2 + S_MAX_DRIVER_ARGS + 4 + KZ_GIT_MAX_ARGS + 1];
    size_t n = 0;
    char label[64];
    s_label(args, label, sizeof label);
    if (out)
        *out = NULL;
    if (errline && errline_len)
        errline[0] = '\0';
    if (!repo || !*repo) {
        s_err(errbuf, errlen, "%s: no repository given", label);
        return -1;
    }
    /* the trusted foreign-owned repositories, copied: another thread
       may add one meanwhile */
    char *safe[S_MAX_SAFE];
    size_t nsafe = 0;
    pthread_mutex_lock(&s_safe_lock);
    for (size_t i = 0; i < s_safe_count; i++)
        if ((safe[nsafe] = strdup(s_safe[i])))
            nsafe++;
    pthread_mutex_unlock(&s_safe_lock);
    argv[n++] = "git";
    argv[n++] = "-C";
    argv[n++] = repo;
    for (size_t i = 0; s_git_prefix[i]; i++)
        argv[n++] = s_git_prefix[i];
    for (size_t i = 0; i < nsafe; i++) {
        argv[n++] = "-c";
        argv[n++] = safe[i];
    }
    char *drivers = NULL;
    if (!s_no_drivers(args) && s_driver_args(repo, (const char *const *)safe, nsafe, &drivers, argv,
                                             &n, n + S_MAX_DRIVER_ARGS, errbuf, errlen) != 0) {
        s_free_args(safe, nsafe, NULL);
        return -1;
    }
    argv[n++] = "-c";
    argv[n++] = s_user_name;
    argv[n++] = "-c";
    argv[n++] = s_user_email;
    for (size_t i = 0; args[i]; i++) {
        if (i >= KZ_GIT_MAX_ARGS) {
            s_err(errbuf, errlen, "%s: too many arguments", label);
            s_free_args(safe, nsafe, drivers);
            return -1;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    const char **env = s_env_base();
    if (!env) {
        s_err(errbuf, errlen, "%s: out of memory", label);
        s_free_args(safe, nsafe, drivers);
        return -1;
    }
    kz_proc_opts_t opts = {0};
    opts.argv = argv;
    opts.env = env;
    opts.env_add = s_env_add;
    opts.timeout_ms = timeout_ms > 0 ? timeout_ms : KZ_GIT_DEFAULT_TIMEOUT_MS;
    opts.stdin_data = in;
    opts.stdin_len = in_len;
    opts.out_cap = out_cap;
    opts.err_cap = 64 * 1024;
    opts.stdin_data = in;
    opts.stdin_len = in_len;
    opts.tick = s_tick;
    opts.tick_arg = s_tick_arg;
    /* what git writes into a worktree stays readable and writable by the
       sandbox's group (kz_sandbox_share_dir) and nobody else */
    opts.set_umask = true;
    opts.umask = 007;
    kz_proc_result_t res;
    char perr[256];
    int rc = kz_proc_run(&opts, &res, perr, sizeof perr);
    free(env);
    s_free_args(safe, nsafe, drivers);
    if (rc != 0) {
        s_err(errbuf, errlen, "%s: %s", label, perr);
        kz_proc_result_free(&res);
        return -1;
    }
    if (res.timed_out) {
        s_err(errbuf, errlen, "%s: timed out after %d s in '%s'", label, opts.timeout_ms / 1000,
              repo);
        kz_proc_result_free(&res);
        return -1;
    }
    if (res.term_signal != 0 || res.exit_code < 0) {
        s_err(errbuf, errlen, "%s: killed by signal %d", label, res.term_signal);
        kz_proc_result_free(&res);
        return -1;
    }
    *code = res.exit_code;
    if (errline && errline_len) {
        s_first_line(res.err, errline, errline_len);
        if (strstr(errline, "dubious ownership"))
            snprintf(errline, errline_len,
                     "refusing the repository '%s': it is owned by another user than kaizen's "
                     "(set trust_owner: true in its target's entry if you trust that user)",
                     repo);
    }
    if (out_len)
        *out_len = res.out_len;
    if (out_trunc)
        *out_trunc = res.out_truncated;
    if (out) {
        *out = res.out;
        res.out = NULL;
        if (!*out) {
            *out = strdup("");
            if (!*out) {
                s_err(errbuf, errlen, "%s: out of memory", label);
                kz_proc_result_free(&res);
                return -1;
            }
        }
    }
    kz_proc_result_free(&res);
    return 0;
}

static int s_run(const char *repo, const char *const *args, int timeout_ms, size_t out_cap,
                 int *code, char **out, char *errline, size_t errline_len, char *errbuf,
                 size_t errlen)
{
    return s_run_full(repo, args, timeout_ms, out_cap, NULL, 0, code, out, NULL, NULL, errline,
                      errline_len, errbuf, errlen);
}

/* Run git and require exit 0 */
static int s_git_cap(const char *repo, const char *const *args, int timeout_ms, size_t out_cap,
                     char **out, char *errbuf, size_t errlen)
{
    int code = 0;
    char line[512];
    char label[64];
    if (s_run(repo, args, timeout_ms, out_cap, &code, out, line, sizeof line, errbuf, errlen) != 0)
        return -1;
    if (code != 0) {
        s_label(args, label, sizeof label);
        if (line[0])
            s_err(errbuf, errlen, "%s: %s", label, line);
        else
            s_err(errbuf, errlen, "%s: exit %d in '%s'", label, code, repo);
        if (out) {
            free(*out);
            *out = NULL;
        }
        return -1;
    }
    return 0;
}

int kz_git(const char *repo, const char *const *args, int timeout_ms, char **out, char *errbuf,
           size_t errlen)
{
    return s_git_cap(repo, args, timeout_ms, 0, out, errbuf, errlen);
}

int kz_git_input(const char *repo, const char *const *args, const char *in, size_t in_len,
                 size_t out_cap, char **out, size_t *out_len, char *errbuf, size_t errlen)
{
    int code = 0;
    bool trunc = false;
    char line[512], label[64];
    if (s_run_full(repo, args, 0, out_cap, in, in_len, &code, out, out_len, &trunc, line,
                   sizeof line, errbuf, errlen) != 0)
        return -1;
    s_label(args, label, sizeof label);
    if (code != 0 || trunc) {
        if (trunc)
            s_err(errbuf, errlen, "%s: more output than %zu bytes", label, out_cap);
        else if (line[0])
            s_err(errbuf, errlen, "%s: %s", label, line);
        else
            s_err(errbuf, errlen, "%s: exit %d in '%s'", label, code, repo);
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static void s_trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t k = 0;
    while (s[k] == ' ' || s[k] == '\t' || s[k] == '\n')
        k++;
    if (k)
        memmove(s, s + k, n - k + 1);
}

/* A revision or ref name from a caller must never read as an option */
static int s_check_name(const char *what, const char *name, char *errbuf, size_t errlen)
{
    if (!name || !*name) {
        s_err(errbuf, errlen, "empty %s", what);
        return -1;
    }
    if (name[0] == '-') {
        s_err(errbuf, errlen, "bad %s '%s': starts with '-'", what, name);
        return -1;
    }
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            s_err(errbuf, errlen, "bad %s: control character", what);
            return -1;
        }
    return 0;
}

static bool s_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int kz_git_check_repo(const char *path, char *errbuf, size_t errlen)
{
    char *out = NULL;
    char real[PATH_MAX], top[PATH_MAX];
    if (!path || !*path || !s_is_dir(path)) {
        s_err(errbuf, errlen, "'%s' is not a git repository: no such directory", path ? path : "");
        return -1;
    }
    const char *bare[] = {"rev-parse", "--is-bare-repository", NULL};
    char err[256];
    if (s_git_cap(path, bare, 0, 0, &out, err, sizeof err) != 0) {
        /* say why when it is not the plain "not a git repository"
           (dubious ownership, a broken .git, ...) */
        if (strstr(err, "not a git repository"))
            s_err(errbuf, errlen, "'%s' is not a git repository", path);
        else
            s_err(errbuf, errlen, "'%s' is not a git repository: %s", path, err);
        return -1;
    }
    s_trim(out);
    if (strcmp(out, "true") == 0) {
        free(out);
        return 0;
    }
    free(out);
    const char *toplevel[] = {"rev-parse", "--show-toplevel", NULL};
    if (s_git_cap(path, toplevel, 0, 0, &out, err, sizeof err) != 0) {
        s_err(errbuf, errlen, "'%s' is not a git repository", path);
        return -1;
    }
    s_trim(out);
    int ok = realpath(path, real) && realpath(out, top) && strcmp(real, top) == 0;
    free(out);
    if (!ok) {
        s_err(errbuf, errlen, "'%s' is not a git repository (it is inside one, not its top)", path);
        return -1;
    }
    return 0;
}

int kz_git_rev(const char *repo, const char *rev, char oid[KZ_GIT_OID_MAX], char *errbuf,
               size_t errlen)
{
    oid[0] = '\0';
    if (s_check_name("revision", rev, errbuf, errlen) != 0)
        return -1;
    char spec[512];
    if (snprintf(spec, sizeof spec, "%s^{commit}", rev) >= (int)sizeof spec) {
        s_err(errbuf, errlen, "revision too long");
        return -1;
    }
    const char *args[] = {"rev-parse", "--verify", "--quiet", "--end-of-options", spec, NULL};
    char *out = NULL;
    int code = 0;
    if (s_run(repo, args, 0, 0, &code, &out, NULL, 0, errbuf, errlen) != 0)
        return -1;
    if (code != 0) {
        free(out);
        s_err(errbuf, errlen, "unknown revision '%s' in '%s'", rev, repo);
        return -1;
    }
    s_trim(out);
    size_t n = strlen(out);
    if (n != 40 && n != 64) {
        s_err(errbuf, errlen, "git rev-parse: unexpected output for '%s'", rev);
        free(out);
        return -1;
    }
    memcpy(oid, out, n + 1);
    free(out);
    return 0;
}

int kz_git_is_clean(const char *repo, bool *clean, char *errbuf, size_t errlen)
{
    const char *args[] = {
        "status", "--porcelain", "-z", "--untracked-files=normal", "--ignore-submodules=none",
        NULL};
    char *out = NULL;
    *clean = false;
    if (kz_git(repo, args, 0, &out, errbuf, errlen) != 0)
        return -1;
    *clean = out[0] == '\0';
    free(out);
    return 0;
}

int kz_git_current_branch(const char *repo, char *branch, size_t len, char *errbuf, size_t errlen)
{
    const char *args[] = {"symbolic-ref", "--quiet", "HEAD", NULL};
    char *out = NULL;
    int code = 0;
    if (len)
        branch[0] = '\0';
    if (s_run(repo, args, 0, 0, &code, &out, NULL, 0, errbuf, errlen) != 0)
        return -1;
    if (code == 1) { /* detached */
        free(out);
        return 0;
    }
    if (code != 0) {
        free(out);
        s_err(errbuf, errlen, "git symbolic-ref: exit %d in '%s'", code, repo);
        return -1;
    }
    s_trim(out);
    const char *name = out;
    if (strncmp(name, "refs/heads/", 11) == 0)
        name += 11;
    if (strlen(name) >= len) {
        free(out);
        s_err(errbuf, errlen, "branch name too long");
        return -1;
    }
    snprintf(branch, len, "%s", name);
    free(out);
    return 0;
}

void kz_git_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* A growable NULL-terminated string vector */
typedef struct {
    char **v;
    size_t n, cap;
} s_strv_t;

static int s_strv_push(s_strv_t *sv, const char *s, size_t len)
{
    if (sv->n + 2 > sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 32;
        char **v = realloc(sv->v, cap * sizeof *v);
        if (!v)
            return -1;
        sv->v = v;
        sv->cap = cap;
    }
    char *copy = strndup(s, len);
    if (!copy)
        return -1;
    sv->v[sv->n++] = copy;
    sv->v[sv->n] = NULL;
    return 0;
}

/* Hand SV over as a NULL-terminated vector (an empty one when no entry) */
static int s_strv_finish(s_strv_t *sv, char ***files, size_t *count)
{
    if (!sv->v) {
        sv->v = calloc(1, sizeof *sv->v);
        if (!sv->v)
            return -1;
    }
    *files = sv->v;
    if (count)
        *count = sv->n;
    return 0;
}

/* Split NUL-separated OUT (LEN bytes) into a vector */
static int s_split_z(const char *out, size_t len, char ***files, size_t *count, char *errbuf,
                     size_t errlen)
{
    s_strv_t sv = {0};
    size_t i = 0;
    while (i < len) {
        size_t n = strnlen(out + i, len - i);
        if (n > 0 && s_strv_push(&sv, out + i, n) != 0) {
            kz_git_strv_free(sv.v);
            s_err(errbuf, errlen, "out of memory");
            return -1;
        }
        i += n + 1;
    }
    if (s_strv_finish(&sv, files, count) != 0) {
        s_err(errbuf, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Run git with -z output and split it; output is read up to 64 MiB */
static int s_git_list(const char *repo, const char *const *args, char ***files, size_t *count,
                      char *errbuf, size_t errlen)
{
    const size_t cap = 64u * 1024 * 1024;
    int code = 0;
    char line[512], label[64];
    char *out = NULL;
    size_t len = 0;
    bool trunc = false;
    *files = NULL;
    if (count)
        *count = 0;
    s_label(args, label, sizeof label);
    if (s_run_full(repo, args, 0, cap, NULL, 0, &code, &out, &len, &trunc, line, sizeof line,
                   errbuf, errlen) != 0)
        return -1;
    int rc = -1;
    if (code != 0) {
        if (line[0])
            s_err(errbuf, errlen, "%s: %s", label, line);
        else
            s_err(errbuf, errlen, "%s: exit %d in '%s'", label, code, repo);
    } else if (trunc) {
        s_err(errbuf, errlen, "%s: more than %zu bytes of output", label, cap);
    } else {
        rc = s_split_z(out, len, files, count, errbuf, errlen);
    }
    free(out);
    return rc;
}

int kz_git_ls_files(const char *repo, const char *commit, char ***files, size_t *count,
                    char *errbuf, size_t errlen)
{
    *files = NULL;
    if (count)
        *count = 0;
    if (s_check_name("commit", commit, errbuf, errlen) != 0)
        return -1;
    char spec[512];
    snprintf(spec, sizeof spec, "%s^{tree}", commit);
    /* with the object type, so submodules (commits) are left out */
    const char *args[] = {"ls-tree", "-r", "-z", "--full-tree", spec, NULL};
    char **lines = NULL;
    size_t nlines = 0;
    if (s_git_list(repo, args, &lines, &nlines, errbuf, errlen) != 0)
        return -1;
    s_strv_t sv = {0};
    for (size_t i = 0; i < nlines; i++) {
        /* "<mode> SP <type> SP <object> TAB <file>" */
        const char *tab = strchr(lines[i], '\t');
        const char *sp = strchr(lines[i], ' ');
        if (!tab || !sp || strncmp(sp + 1, "blob ", 5) != 0)
            continue;
        if (s_strv_push(&sv, tab + 1, strlen(tab + 1)) != 0) {
            kz_git_strv_free(sv.v);
            kz_git_strv_free(lines);
            s_err(errbuf, errlen, "out of memory");
            return -1;
        }
    }
    kz_git_strv_free(lines);
    if (s_strv_finish(&sv, files, count) != 0) {
        s_err(errbuf, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int s_diff_names(const char *repo, const char *from, const char *to, const char *filter,
                        char ***files, size_t *count, char *errbuf, size_t errlen)
{
    *files = NULL;
    if (count)
        *count = 0;
    if (s_check_name("commit", from, errbuf, errlen) != 0 ||
        s_check_name("commit", to, errbuf, errlen) != 0)
        return -1;
    /* --no-renames: a rename is its old name deleted and its new name
       added, whatever diff.renames says */
    const char *args[] = {
        "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", filter, from,
        to,     "--",          NULL};
    return s_git_list(repo, args, files, count, errbuf, errlen);
}

int kz_git_changed(const char *repo, const char *from, const char *to, char ***files, size_t *count,
                   char *errbuf, size_t errlen)
{
    return s_diff_names(repo, from, to, "--diff-filter=ACMRT", files, count, errbuf, errlen);
}

int kz_git_deleted(const char *repo, const char *from, const char *to, char ***files, size_t *count,
                   char *errbuf, size_t errlen)
{
    return s_diff_names(repo, from, to, "--diff-filter=D", files, count, errbuf, errlen);
}

/* ---------------------------------------------------------------- rm -r */

/* Remove the directory PATH and everything in it (symlinks are removed,
   never followed). Refuses REPO itself or any directory holding it. */
static int s_rm_rf(const char *repo, const char *path, char *errbuf, size_t errlen)
{
    char rpath[PATH_MAX], rrepo[PATH_MAX];
    if (!s_exists(path))
        return 0;
    if (!realpath(path, rpath)) {
        s_err(errbuf, errlen, "unable to resolve '%s': %s", path, strerror(errno));
        return -1;
    }
    if (strcmp(rpath, "/") == 0) {
        s_err(errbuf, errlen, "refusing to remove '/'");
        return -1;
    }
    if (repo && realpath(repo, rrepo)) {
        size_t n = strlen(rpath);
        if (strncmp(rrepo, rpath, n) == 0 && (rrepo[n] == '\0' || rrepo[n] == '/')) {
            s_err(errbuf, errlen, "refusing to remove '%s': it holds the repository '%s'", path,
                  repo);
            return -1;
        }
    }
    return kz_rmtree(path, errbuf, errlen);
}

/* mkdir -p of PATH's parent (0711) */
static int s_mkdir_parent(const char *path, char *errbuf, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        s_err(errbuf, errlen, "path too long: '%s'", path);
        return -1;
    }
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    /* searchable, not listable: STATE/worktrees/<target> is traversed by
       the sandbox's user to reach its worktree (kz_state.h) */
    return kz_mkdirs(buf, 0711, errbuf, errlen);
}

/* --------------------------------------------------------------- worktrees */

static void s_worktree_prune(const char *repo)
{
    const char *args[] = {"worktree", "prune", NULL};
    char err[256];
    (void)kz_git(repo, args, 0, NULL, err, sizeof err);
}

/* Worktree additions, removals and prunes of one repository are
   serialised across processes (code-health, the refactorer, both
   validators and the router work on the same repository at once): a
   prune while another process is half-way through `worktree add` deletes
   that worktree's registration under it. The lock is a file in the
   repository's common git directory, held with flock. Returns the
   descriptor to pass to s_wt_unlock, or -1 (then the work goes on
   unlocked: a repository we cannot lock is one git will refuse anyway). */
static int s_wt_lock(const char *repo)
{
    const char *args[] = {"rev-parse", "--path-format=absolute", "--git-common-dir", NULL};
    char *out = NULL, err[256];
    if (kz_git(repo, args, 0, &out, err, sizeof err) != 0) {
        free(out);
        return -1;
    }
    out[strcspn(out, "\n")] = '\0';
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/kaizen-worktrees.lock", out);
    free(out);
    if (n < 0 || n >= (int)sizeof path)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void s_wt_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static int s_worktree_remove(const char *repo, const char *path, char *errbuf, size_t errlen);

int kz_git_worktree_remove(const char *repo, const char *path, char *errbuf, size_t errlen)
{
    int lock = s_wt_lock(repo);
    int rc = s_worktree_remove(repo, path, errbuf, errlen);
    s_wt_unlock(lock);
    return rc;
}

static int s_worktree_remove(const char *repo, const char *path, char *errbuf, size_t errlen)
{
    if (!path || !*path) {
        s_err(errbuf, errlen, "git worktree remove: no path given");
        return -1;
    }
    if (s_exists(path)) {
        /* twice forced: also a locked worktree; errors are fine (not a
           worktree any more), the directory goes below either way */
        const char *args[] = {"worktree", "remove", "--force", "--force", path, NULL};
        char err[256];
        (void)kz_git(repo, args, 0, NULL, err, sizeof err);
    }
    if (s_exists(path) && s_rm_rf(repo, path, errbuf, errlen) != 0)
        return -1;
    /* a registration still locked by a `worktree add` that was killed
       half-way ("missing but locked": prune keeps it, the next add
       fails): kaizen's own path, so unlocked; an error only means it
       was not locked */
    const char *unlock[] = {"worktree", "unlock", path, NULL};
    char uerr[256];
    (void)kz_git(repo, unlock, 0, NULL, uerr, sizeof uerr);
    /* a registration whose directory is gone (removed above, or by
       someone else earlier) */
    s_worktree_prune(repo);
    return 0;
}

/* PATH as an empty directory the sandbox's user can work in */
static int s_mkdir_shared(const char *path, char *errbuf, size_t errlen)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        s_err(errbuf, errlen, "unable to create '%s': %s", path, strerror(errno));
        return -1;
    }
    return kz_sandbox_share_dir(path, errbuf, errlen);
}

int kz_git_worktree_add(const char *repo, const char *path, const char *branch, const char *commit,
                        char *errbuf, size_t errlen)
{
    if (s_check_name("commit", commit, errbuf, errlen) != 0)
        return -1;
    if (branch && s_check_name("branch", branch, errbuf, errlen) != 0)
        return -1;
    int lock = s_wt_lock(repo);
    int rc = -1;
    /* the directory is made first and shared with the sandbox's user
       (group, setgid, 2770: what git checks out inherits the group) */
    if (s_worktree_remove(repo, path, errbuf, errlen) == 0 &&
        s_mkdir_parent(path, errbuf, errlen) == 0 && s_mkdir_shared(path, errbuf, errlen) == 0) {
        const char *with_branch[] = {"worktree", "add", "--quiet", "-B",
                                     branch,     path,  commit,    NULL};
        const char *detached[] = {"worktree", "add", "--quiet", "--detach", path, commit, NULL};
        rc = kz_git(repo, branch ? with_branch : detached, 0, NULL, errbuf, errlen);
    }
    s_wt_unlock(lock);
    return rc;
}

/* True when PATH is DIR or lies under it (both absolute, DIR without a
   trailing slash) */
static bool s_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return n > 0 && strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int kz_git_worktrees_remove_under(const char *repo, const char *dir, int *removed, char *errbuf,
                                  size_t errlen)
{
    if (removed)
        *removed = 0;
    if (!dir || dir[0] != '/' || strcmp(dir, "/") == 0) {
        s_err(errbuf, errlen, "git worktree remove: '%s' is not an absolute directory",
              dir ? dir : "");
        return -1;
    }
    /* git lists worktrees by the path they were added with, or its real
       path: compare with both */
    char given[PATH_MAX], real[PATH_MAX] = "";
    if (snprintf(given, sizeof given, "%s", dir) >= (int)sizeof given) {
        s_err(errbuf, errlen, "path too long: '%s'", dir);
        return -1;
    }
    for (size_t n = strlen(given); n > 1 && given[n - 1] == '/'; n--)
        given[n - 1] = '\0';
    if (!realpath(given, real))
        real[0] = '\0';
    if (!s_is_dir(repo))
        return 0; /* no repository, so no worktree of it */
    /* a DIR that holds the repository is never kaizen's own: refuse before
       anything is removed */
    char rrepo[PATH_MAX];
    if (realpath(repo, rrepo) && (s_under(rrepo, given) || (real[0] && s_under(rrepo, real)))) {
        s_err(errbuf, errlen,
              "refusing to remove the worktrees under '%s': it holds the repository '%s'", dir,
              repo);
        return -1;
    }
    int lock = s_wt_lock(repo);
    const char *args[] = {"worktree", "list", "--porcelain", "-z", NULL};
    char **recs = NULL;
    size_t n = 0;
    int rc = 0;
    char err[1024] = "";
    if (s_git_list(repo, args, &recs, &n, err, sizeof err) != 0) {
        s_wt_unlock(lock);
        /* not a repository (any more): nothing of it to remove */
        if (strstr(err, "not a git repository"))
            return 0;
        s_err(errbuf, errlen, "%s", err);
        return -1;
    }
    bool main_seen = false;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(recs[i], "worktree ", 9) != 0)
            continue;
        const char *path = recs[i] + 9;
        /* the first entry is the main work tree: never kaizen's */
        if (!main_seen) {
            main_seen = true;
            continue;
        }
        if (!s_under(path, given) && !(real[0] && s_under(path, real)))
            continue;
        if (s_worktree_remove(repo, path, err, sizeof err) != 0) {
            if (rc == 0)
                s_err(errbuf, errlen, "unable to remove the worktree '%s': %s", path, err);
            rc = -1;
        } else if (removed) {
            (*removed)++;
        }
    }
    kz_git_strv_free(recs);
    /* registrations whose directory is gone, and whatever is left under
       DIR (a worktree half made, a directory git no longer knows) */
    s_worktree_prune(repo);
    if (rc == 0 && s_exists(given) && s_rm_rf(repo, given, err, sizeof err) != 0) {
        s_err(errbuf, errlen, "%s", err);
        rc = -1;
    }
    s_wt_unlock(lock);
    return rc;
}

int kz_git_branch_exists(const char *repo, const char *branch, char *errbuf, size_t errlen)
{
    if (s_check_name("branch", branch, errbuf, errlen) != 0)
        return -1;
    char ref[512];
    if (snprintf(ref, sizeof ref, "refs/heads/%s", branch) >= (int)sizeof ref) {
        s_err(errbuf, errlen, "branch name too long");
        return -1;
    }
    const char *args[] = {"show-ref", "--verify", "--quiet", ref, NULL};
    int code = 0;
    if (s_run(repo, args, 0, 0, &code, NULL, NULL, 0, errbuf, errlen) != 0)
        return -1;
    if (code == 0)
        return 1;
    if (code == 1)
        return 0;
    s_err(errbuf, errlen, "git show-ref: exit %d in '%s'", code, repo);
    return -1;
}

int kz_git_is_ancestor(const char *repo, const char *ancestor, const char *rev, char *errbuf,
                       size_t errlen)
{
    if (s_check_name("revision", ancestor, errbuf, errlen) != 0 ||
        s_check_name("revision", rev, errbuf, errlen) != 0)
        return -1;
    const char *args[] = {"merge-base", "--is-ancestor", ancestor, rev, NULL};
    int code = 0;
    if (s_run(repo, args, 0, 0, &code, NULL, NULL, 0, errbuf, errlen) != 0)
        return -1;
    if (code == 0 || code == 1)
        return code == 0;
    s_err(errbuf, errlen, "git merge-base: exit %d in '%s' (is '%.64s' or '%.64s' unknown?)", code,
          repo, ancestor, rev);
    return -1;
}

int kz_git_branch_delete(const char *repo, const char *branch, char *errbuf, size_t errlen)
{
    int exists = kz_git_branch_exists(repo, branch, errbuf, errlen);
    if (exists <= 0)
        return exists;
    const char *args[] = {"branch", "--quiet", "-D", branch, NULL};
    return kz_git(repo, args, 0, NULL, errbuf, errlen);
}

/* ------------------------------------------------------------- commits */

int kz_git_commit_all(const char *wt, const char *message, bool *changed, char oid[KZ_GIT_OID_MAX],
                      char *errbuf, size_t errlen)
{
    *changed = false;
    oid[0] = '\0';
    const char *add[] = {"add", "-A", "--", ".", NULL};
    if (kz_git(wt, add, 0, NULL, errbuf, errlen) != 0)
        return -1;
    const char *quiet[] = {"diff", "--cached", "--quiet", "--no-ext-diff", NULL};
    int code = 0;
    if (s_run(wt, quiet, 0, 0, &code, NULL, NULL, 0, errbuf, errlen) != 0)
        return -1;
    if (code == 1) {
        const char *commit[] = {"commit",
                                "--quiet",
                                "--no-verify",
                                "--no-gpg-sign",
                                "--allow-empty-message",
                                "--cleanup=verbatim",
                                "-m",
                                message && *message ? message : "kaizen",
                                NULL};
        if (kz_git(wt, commit, 0, NULL, errbuf, errlen) != 0)
            return -1;
        *changed = true;
    } else if (code != 0) {
        s_err(errbuf, errlen, "git diff --cached: exit %d in '%s'", code, wt);
        return -1;
    }
    return kz_git_rev(wt, "HEAD", oid, errbuf, errlen);
}

int kz_git_shortstat(const char *repo, const char *from, const char *to, char **out, char *errbuf,
                     size_t errlen)
{
    *out = NULL;
    if (s_check_name("commit", from, errbuf, errlen) != 0 ||
        s_check_name("commit", to, errbuf, errlen) != 0)
        return -1;
    const char *args[] = {"diff", "--shortstat", "--no-ext-diff", "--no-textconv", from, to,
                          "--",   NULL};
    if (kz_git(repo, args, 0, out, errbuf, errlen) != 0)
        return -1;
    s_trim(*out);
    return 0;
}

int kz_git_numstat(const char *repo, const char *from, const char *to, long *added, long *removed,
                   long *files, long *binary, char *errbuf, size_t errlen)
{
    *added = *removed = *files = *binary = 0;
    if (s_check_name("commit", from, errbuf, errlen) != 0 ||
        s_check_name("commit", to, errbuf, errlen) != 0)
        return -1;
    /* -z with --no-renames: "ADDED TAB REMOVED TAB PATH NUL", "-" for binary */
    const char *args[] = {"diff",          "--numstat", "-z", "--no-renames", "--no-ext-diff",
                          "--no-textconv", from,        to,   "--",           NULL};
    char **recs = NULL;
    size_t n = 0;
    if (s_git_list(repo, args, &recs, &n, errbuf, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *r = recs[i];
        if (r[0] == '-') {
            (*binary)++;
            (*files)++;
            continue;
        }
        char *end = NULL;
        long a = strtol(r, &end, 10);
        if (!end || *end != '\t')
            continue;
        long d = strtol(end + 1, &end, 10);
        if (!end || *end != '\t')
            continue;
        *added += a;
        *removed += d;
        (*files)++;
    }
    kz_git_strv_free(recs);
    return 0;
}

int kz_git_diff(const char *repo, const char *from, const char *to, size_t max, char **out,
                char *errbuf, size_t errlen)
{
    *out = NULL;
    if (s_check_name("commit", from, errbuf, errlen) != 0 ||
        s_check_name("commit", to, errbuf, errlen) != 0)
        return -1;
    const char *args[] = {
        "diff", "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames", from, to, "--",
        NULL};
    return s_git_cap(repo, args, 0, max ? max : 1024 * 1024, out, errbuf, errlen);
}

int kz_git_subjects(const char *repo, const char *commit, int max, char ***subjects, size_t *count,
                    char *errbuf, size_t errlen)
{
    *subjects = NULL;
    *count = 0;
    if (s_check_name("commit", commit, errbuf, errlen) != 0)
        return -1;
    char n[32];
    snprintf(n, sizeof n, "--max-count=%d", max > 0 ? max : 100);
    const char *args[] = {"log", "-z", "--format=%s", "--no-color", n, commit, "--", NULL};
    return s_git_list(repo, args, subjects, count, errbuf, errlen);
}

int kz_git_message(const char *repo, const char *commit, size_t max, char **out, char *errbuf,
                   size_t errlen)
{
    *out = NULL;
    if (s_check_name("commit", commit, errbuf, errlen) != 0)
        return -1;
    const char *args[] = {"show", "-s", "--format=%B", "--no-color", commit, "--", NULL};
    if (s_git_cap(repo, args, 0, max ? max : 64 * 1024, out, errbuf, errlen) != 0)
        return -1;
    s_trim(*out);
    return 0;
}

/* ----------------------------------------------------- branches and refs */

/* A ref kaizen keeps a commit in: "refs/kaizen/..." that git accepts */
static int s_check_kaizen_ref(const char *repo, const char *ref, char *errbuf, size_t errlen)
{
    if (s_check_name("ref", ref, errbuf, errlen) != 0)
        return -1;
    if (strncmp(ref, "refs/kaizen/", 12) != 0 || !ref[12]) {
        s_err(errbuf, errlen, "ref '%s' is not under refs/kaizen/", ref);
        return -1;
    }
    const char *args[] = {"check-ref-format", ref, NULL};
    char err[256];
    if (kz_git(repo, args, 0, NULL, err, sizeof err) != 0) {
        s_err(errbuf, errlen, "'%s' is not a valid ref name", ref);
        return -1;
    }
    return 0;
}

int kz_git_keep(const char *repo, const char *ref, const char *commit, char *errbuf, size_t errlen)
{
    char oid[KZ_GIT_OID_MAX];
    if (s_check_kaizen_ref(repo, ref, errbuf, errlen) != 0 ||
        kz_git_rev(repo, commit, oid, errbuf, errlen) != 0)
        return -1;
    const char *args[] = {"update-ref", "-m", "kaizen: keep the plan's commit", ref, oid, NULL};
    return kz_git(repo, args, 0, NULL, errbuf, errlen);
}

int kz_git_ref_exists(const char *repo, const char *ref, char *errbuf, size_t errlen)
{
    if (s_check_name("ref", ref, errbuf, errlen) != 0)
        return -1;
    const char *args[] = {"show-ref", "--verify", "--quiet", ref, NULL};
    int code = 0;
    if (s_run(repo, args, 0, 0, &code, NULL, NULL, 0, errbuf, errlen) != 0)
        return -1;
    if (code == 0 || code == 1)
        return code == 0;
    s_err(errbuf, errlen, "git show-ref: exit %d in '%s'", code, repo);
    return -1;
}

/* The path of the work tree that has BRANCH checked out, "" when none
   (`worktree list --porcelain -z`: "worktree P", "branch refs/heads/B") */
static int s_branch_worktree(const char *repo, const char *branch, char *path, size_t len,
                             char *errbuf, size_t errlen)
{
    const char *args[] = {"worktree", "list", "--porcelain", "-z", NULL};
    char **recs = NULL;
    size_t n = 0;
    char ref[512];
    path[0] = '\0';
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    if (s_git_list(repo, args, &recs, &n, errbuf, errlen) != 0)
        return -1;
    const char *current = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(recs[i], "worktree ", 9) == 0)
            current = recs[i] + 9;
        else if (strncmp(recs[i], "branch ", 7) == 0 && strcmp(recs[i] + 7, ref) == 0 && current) {
            snprintf(path, len, "%s", current);
            break;
        }
    }
    kz_git_strv_free(recs);
    return 0;
}

/* Move refs/heads/BRANCH to NEW_OID when it is still OLD_OID ("" = must
   not exist yet) */
static int s_update_ref(const char *repo, const char *branch, const char *new_oid,
                        const char *old_oid, const char *why, char *errbuf, size_t errlen)
{
    char ref[512];
    char zero[KZ_GIT_OID_MAX];
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    if (!old_oid || !*old_oid) {
        size_t n = strlen(new_oid);
        memset(zero, '0', n);
        zero[n] = '\0';
        old_oid = zero;
    }
    const char *args[] = {"update-ref", "-m", why, ref, new_oid, old_oid, NULL};
    return kz_git(repo, args, 0, NULL, errbuf, errlen);
}

/* True when the index of worktree WT matches its HEAD */
static bool s_nothing_staged(const char *wt)
{
    const char *args[] = {"diff", "--cached", "--quiet", "--no-ext-diff", NULL};
    int code = -1;
    char err[256];
    return s_run(wt, args, 0, 0, &code, NULL, NULL, 0, err, sizeof err) == 0 && code == 0;
}

/* A fresh directory under TMPDIR (or /tmp) for a temporary worktree */
int kz_git_cherry_pick_onto(const char *repo, const char *branch, const char *base,
                            const char *commit, const char *tmpdir, char new_oid[KZ_GIT_OID_MAX],
                            char *errbuf, size_t errlen)
{
    char old[KZ_GIT_OID_MAX] = "", start[KZ_GIT_OID_MAX], pick[KZ_GIT_OID_MAX];
    char dir[PATH_MAX - 16], wt[PATH_MAX], held[PATH_MAX];
    char err[512];
    new_oid[0] = '\0';
    if (s_check_name("branch", branch, errbuf, errlen) != 0)
        return -1;
    if (kz_git_rev(repo, commit, pick, errbuf, errlen) != 0)
        return -1;
    int exists = kz_git_branch_exists(repo, branch, errbuf, errlen);
    if (exists < 0)
        return -1;
    if (exists) {
        if (s_branch_worktree(repo, branch, held, sizeof held, errbuf, errlen) != 0)
            return -1;
        if (held[0]) {
            s_err(errbuf, errlen, "branch '%s' is checked out in '%s'; refusing to move it", branch,
                  held);
            return -1;
        }
        char ref[512];
        snprintf(ref, sizeof ref, "refs/heads/%s", branch);
        if (kz_git_rev(repo, ref, old, errbuf, errlen) != 0)
            return -1;
        memcpy(start, old, sizeof start);
    } else if (kz_git_rev(repo, base, start, errbuf, errlen) != 0) {
        return -1;
    }

    if (kz_tmpdir_new(tmpdir, "kz-pick", dir, sizeof dir, errbuf, errlen) != 0)
        return -1;
    snprintf(wt, sizeof wt, "%s/wt", dir);
    int rc = -1;
    if (kz_git_worktree_add(repo, wt, NULL, start, errbuf, errlen) != 0)
        goto done;
    const char *args[] = {"cherry-pick", "--no-edit", "--allow-empty", pick, NULL};
    int code = 0;
    char line[512];
    if (s_run(wt, args, 0, 0, &code, NULL, line, sizeof line, errbuf, errlen) != 0)
        goto done;
    if (code != 0) {
        /* conflicting paths, or nothing left to pick (already on the branch) */
        char **unmerged = NULL;
        size_t nu = 0;
        const char *u[] = {"diff", "--name-only", "-z", "--diff-filter=U", NULL};
        if (s_git_list(wt, u, &unmerged, &nu, err, sizeof err) == 0 && nu > 0) {
            char names[400] = "";
            for (size_t i = 0; i < nu; i++) {
                size_t used = strlen(names);
                snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", unmerged[i]);
            }
            s_err(errbuf, errlen, "conflict: cherry-pick of %.12s onto '%s' conflicts in %s", pick,
                  branch, names);
        } else if (s_nothing_staged(wt)) {
            /* the change is on the branch already: nothing to add */
            const char *abort_args[] = {"cherry-pick", "--abort", NULL};
            (void)kz_git(wt, abort_args, 0, NULL, err, sizeof err);
            kz_git_strv_free(unmerged);
            goto picked;
        } else {
            s_err(errbuf, errlen, "conflict: cherry-pick of %.12s onto '%s' failed: %s", pick,
                  branch, line[0] ? line : "no reason given");
        }
        kz_git_strv_free(unmerged);
        const char *abort_args[] = {"cherry-pick", "--abort", NULL};
        (void)kz_git(wt, abort_args, 0, NULL, err, sizeof err);
        goto done;
    }
picked:
    if (kz_git_rev(wt, "HEAD", new_oid, errbuf, errlen) != 0)
        goto done;
    if (strcmp(new_oid, old) == 0) { /* unchanged */
        rc = 0;
        goto done;
    }
    char why[128];
    snprintf(why, sizeof why, "kaizen: cherry-pick %.12s", pick);
    if (s_update_ref(repo, branch, new_oid, old, why, errbuf, errlen) != 0) {
        new_oid[0] = '\0';
        goto done;
    }
    rc = 0;
done:
    if (kz_git_worktree_remove(repo, wt, err, sizeof err) != 0 && rc == 0) {
        /* the branch moved; a leftover temporary directory is only logged
           by the caller */
        (void)0;
    }
    rmdir(dir);
    return rc;
}

int kz_git_fast_forward(const char *repo, const char *branch, const char *commit, char *errbuf,
                        size_t errlen)
{
    char target[KZ_GIT_OID_MAX], old[KZ_GIT_OID_MAX], held[PATH_MAX], ref[512];
    if (s_check_name("branch", branch, errbuf, errlen) != 0)
        return -1;
    if (kz_git_rev(repo, commit, target, errbuf, errlen) != 0)
        return -1;
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    int exists = kz_git_branch_exists(repo, branch, errbuf, errlen);
    if (exists < 0)
        return -1;
    if (!exists) {
        s_err(errbuf, errlen, "no branch '%s' in '%s'", branch, repo);
        return -1;
    }
    if (kz_git_rev(repo, ref, old, errbuf, errlen) != 0)
        return -1;
    if (strcmp(old, target) == 0)
        return 0;
    int anc = kz_git_is_ancestor(repo, old, target, errbuf, errlen);
    if (anc < 0)
        return -1;
    if (anc == 0) {
        s_err(errbuf, errlen, "not a fast-forward: '%s' is not an ancestor of %.12s", branch,
              target);
        return -1;
    }
    if (s_branch_worktree(repo, branch, held, sizeof held, errbuf, errlen) != 0)
        return -1;
    if (!held[0])
        return s_update_ref(repo, branch, target, old, "kaizen: fast-forward", errbuf, errlen);
    bool clean = false;
    if (kz_git_is_clean(held, &clean, errbuf, errlen) != 0)
        return -1;
    if (!clean) {
        s_err(errbuf, errlen, "working tree of '%s' has local changes", branch);
        return -1;
    }
    const char *merge[] = {"merge",     "--ff-only", "--quiet", "--no-verify",
                           "--no-edit", target,      NULL};
    return kz_git(held, merge, 0, NULL, errbuf, errlen);
}

/* --------------------------------------------------------------- apply */

#define S_APPLY_INCLUDES 32

/* The path of a patch header's file name NAME (LEN bytes): "a/" or "b/"
   and "./" stripped, a tab and what follows (a timestamp) cut. 0, or -1
   when it names no plan file of FILES */
static int s_patch_path(const char *name, size_t len, const char *const *files, size_t nfiles,
                        char *errbuf, size_t errlen)
{
    const char *tab = memchr(name, '\t', len);
    if (tab)
        len = (size_t)(tab - name);
    while (len > 0 && (name[len - 1] == '\r' || name[len - 1] == ' '))
        len--;
    if (len >= 2 && (name[0] == 'a' || name[0] == 'b') && name[1] == '/') {
        name += 2;
        len -= 2;
    }
    while (len >= 2 && name[0] == '.' && name[1] == '/') {
        name += 2;
        len -= 2;
    }
    for (size_t i = 0; i < nfiles; i++)
        if (strlen(files[i]) == len && memcmp(files[i], name, len) == 0)
            return 0;
    s_err(errbuf, errlen, "patch names '%.*s', which is not one of the plan's files",
          (int)(len > 200 ? 200 : len), name);
    return -1;
}

/* Refuse a patch that touches anything but the content of FILES */
static int s_patch_check(const char *patch, size_t len, const char *const *files, size_t nfiles,
                         char *errbuf, size_t errlen)
{
    static const char *const refused[] = {
        "new file mode",    "deleted file mode", "old mode", "new mode",   "rename from",
        "rename to",        "copy from",         "copy to",  "similarity", "dissimilarity",
        "GIT binary patch", "Binary files",      NULL};
    size_t i = 0;
    while (i < len) {
        const char *line = patch + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        i += n + 1;
        if (n >= 4 && (memcmp(line, "--- ", 4) == 0 || memcmp(line, "+++ ", 4) == 0)) {
            if (s_patch_path(line + 4, n - 4, files, nfiles, errbuf, errlen) != 0)
                return -1;
            continue;
        }
        if (n >= 1 && strchr(" +-@\\", line[0]))
            continue; /* hunk lines */
        for (size_t k = 0; refused[k]; k++)
            if (n >= strlen(refused[k]) && memcmp(line, refused[k], strlen(refused[k])) == 0) {
                s_err(errbuf, errlen, "patch does more than change the plan's files: '%.*s'",
                      (int)(n > 120 ? 120 : n), line);
                return -1;
            }
    }
    return 0;
}

/* PATCH (LEN bytes) with "./" dropped from the start of the paths of its
   "--- " and "+++ " lines into a new buffer (*OUT, *OUTLEN): a fixer given
   ./-x.sh (kz_argv_file) names "a/./-x.sh", which git apply calls an
   invalid path. 0 / -1 (out of memory) */
static int s_patch_dedot(const char *patch, size_t len, char **out, size_t *outlen)
{
    char *buf = malloc(len + 1);
    if (!buf)
        return -1;
    size_t i = 0, o = 0;
    while (i < len) {
        const char *line = patch + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) + 1 : len - i;
        i += n;
        size_t k = 0;
        if (n >= 4 && (memcmp(line, "--- ", 4) == 0 || memcmp(line, "+++ ", 4) == 0)) {
            k = 4;
            if (n >= k + 2 && (line[k] == 'a' || line[k] == 'b') && line[k + 1] == '/')
                k += 2;
            memcpy(buf + o, line, k);
            o += k;
            while (n >= k + 2 && line[k] == '.' && line[k + 1] == '/')
                k += 2;
        }
        memcpy(buf + o, line + k, n - k);
        o += n - k;
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}

int kz_git_apply(const char *wt, const char *patch, size_t len, const char *const *files,
                 size_t nfiles, char *errbuf, size_t errlen)
{
    if (!patch || len == 0)
        return 0;
    if (memchr(patch, '\0', len)) {
        s_err(errbuf, errlen, "patch holds a NUL byte");
        return -1;
    }
    if (s_patch_check(patch, len, files, nfiles, errbuf, errlen) != 0)
        return -1;
    char *clean = NULL;
    size_t clean_len = 0;
    if (s_patch_dedot(patch, len, &clean, &clean_len) != 0) {
        s_err(errbuf, errlen, "git apply: out of memory");
        return -1;
    }
    const char *args[S_APPLY_INCLUDES + 8];
    char *inc[S_APPLY_INCLUDES] = {NULL};
    size_t n = 0, ninc = nfiles <= S_APPLY_INCLUDES ? nfiles : 0;
    int rc = -1;
    args[n++] = "apply";
    args[n++] = "--whitespace=nowarn";
    for (size_t i = 0; i < ninc; i++) {
        size_t sz = strlen(files[i]) + sizeof "--include=";
        if (!(inc[i] = malloc(sz))) {
            s_err(errbuf, errlen, "git apply: out of memory");
            goto done;
        }
        snprintf(inc[i], sz, "--include=%s", files[i]);
        args[n++] = inc[i];
    }
    args[n++] = "-";
    args[n] = NULL;
    int code = 0;
    char line[512];
    if (s_run_full(wt, args, 0, 0, clean, clean_len, &code, NULL, NULL, NULL, line, sizeof line,
                   errbuf, errlen) != 0)
        goto done;
    if (code != 0) {
        s_err(errbuf, errlen, "git apply: %s", line[0] ? line : "failed");
        goto done;
    }
    rc = 0;
done:
    for (size_t i = 0; i < ninc; i++)
        free(inc[i]);
    free(clean);
    return rc;
}
