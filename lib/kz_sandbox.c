/*  kz_sandbox.c - the sandbox every run of a target's code goes through

    kz_sandbox_prepare builds, before fork, everything the child needs:
    bubblewrap's argv, the allow-listed environment, the user and the
    limits; kz_sandbox_enter applies the limits and the user in the child
    (async-signal-safe calls only) and kz_proc_run then execs bubblewrap,
    which execs the command. See kz_sandbox.h.
*/
#include "kz_sandbox.h"
#include "kz_proc.h"
#include "kz_log.h"
#include "kz_state.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_ARGS 4096
#define S_PROBE_MS 30000

/* The process's settings (kz_sandbox_configure), under s_lock */
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static bool s_configured;
static kz_sandbox_config_t s_cfg;
static char *s_state_dir;
/* The probe's outcome: 0 not run, 1 ok, -1 failed with s_probe_err */
static int s_probe_state;
static char s_probe_err[1024];
static _Thread_local bool s_probing;

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

void kz_sandbox_config_defaults(kz_sandbox_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->enabled = true;
    cfg->cpu_time_ms = 3600 * 1000;
    cfg->memory_mb = 16384;
    cfg->processes = 4096;
    cfg->file_size_mb = 4096;
}

static void s_defaults_locked(void)
{
    if (!s_configured) {
        kz_sandbox_config_defaults(&s_cfg);
        s_configured = true;
    }
}

static void s_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static char **s_strv_dup(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            s_strv_free(out);
            return NULL;
        }
    return out;
}

int kz_sandbox_configure(const kz_sandbox_config_t *cfg, const char *state_dir, char *errbuf,
                         size_t errlen)
{
    kz_sandbox_config_t copy = *cfg;
    copy.user = cfg->user ? strdup(cfg->user) : NULL;
    copy.bind_ro = s_strv_dup(cfg->bind_ro);
    copy.bind_rw = s_strv_dup(cfg->bind_rw);
    char *state = state_dir ? strdup(state_dir) : NULL;
    if ((cfg->user && !copy.user) || !copy.bind_ro || !copy.bind_rw || (state_dir && !state)) {
        free(copy.user);
        s_strv_free(copy.bind_ro);
        s_strv_free(copy.bind_rw);
        free(state);
        s_errf(errbuf, errlen, "sandbox: out of memory");
        return -1;
    }
    pthread_mutex_lock(&s_lock);
    if (s_configured) {
        free(s_cfg.user);
        s_strv_free(s_cfg.bind_ro);
        s_strv_free(s_cfg.bind_rw);
    }
    free(s_state_dir);
    s_cfg = copy;
    s_state_dir = state;
    s_configured = true;
    s_probe_state = 0;
    pthread_mutex_unlock(&s_lock);
    return 0;
}

bool kz_sandbox_enabled(void)
{
    pthread_mutex_lock(&s_lock);
    s_defaults_locked();
    bool on = s_cfg.enabled;
    pthread_mutex_unlock(&s_lock);
    return on;
}

/* The configured user's name into BUF */
static void s_user_name(char *buf, size_t len)
{
    pthread_mutex_lock(&s_lock);
    s_defaults_locked();
    snprintf(buf, len, "%s", s_cfg.user && *s_cfg.user ? s_cfg.user : KZ_SANDBOX_USER);
    pthread_mutex_unlock(&s_lock);
}

/* Look NAME up: 0 with its uid and gid, -1 when it does not exist */
static int s_lookup(const char *name, uid_t *uid, gid_t *gid)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwnam_r(name, &pw, buf, sizeof buf, &found) != 0 || !found)
        return -1;
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

bool kz_sandbox_runner(uid_t *uid, gid_t *gid)
{
    if (geteuid() != 0 || !kz_sandbox_enabled())
        return false;
    char name[256];
    s_user_name(name, sizeof name);
    uid_t u;
    gid_t g;
    if (s_lookup(name, &u, &g) != 0 || u == 0)
        return false;
    if (uid)
        *uid = u;
    if (gid)
        *gid = g;
    return true;
}

void kz_sandbox_describe(char *buf, size_t len)
{
    if (!kz_sandbox_enabled()) {
        snprintf(buf, len,
                 "off (sandbox.enabled: false): tools, fixers and tests run as %s "
                 "without bubblewrap",
                 geteuid() == 0 ? "root" : "kaizen's user");
        return;
    }
    char name[256];
    s_user_name(name, sizeof name);
    if (geteuid() == 0)
        snprintf(buf, len, "on (bubblewrap, user %s)", name);
    else
        snprintf(buf, len, "on (bubblewrap, as uid %u)", (unsigned)geteuid());
}

/* --------------------------------------------------------------- argv */

typedef struct {
    char **v;
    size_t n;
    size_t cap;
    bool failed;
} s_vec_t;

static void s_push(s_vec_t *v, const char *s)
{
    if (v->failed)
        return;
    if (v->n + 2 > v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        char **nv = cap <= S_MAX_ARGS ? realloc(v->v, cap * sizeof *nv) : NULL;
        if (!nv) {
            v->failed = true;
            return;
        }
        v->v = nv;
        v->cap = cap;
    }
    char *copy = strdup(s);
    if (!copy) {
        v->failed = true;
        return;
    }
    v->v[v->n++] = copy;
    v->v[v->n] = NULL;
}

static void s_push3(s_vec_t *v, const char *a, const char *b, const char *c)
{
    s_push(v, a);
    s_push(v, b);
    if (c)
        s_push(v, c);
}

/* Set "K=V" in V: a later entry of the same key replaces the earlier */
static void s_setenv(s_vec_t *v, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return;
    size_t klen = (size_t)(eq - kv) + 1;
    for (size_t i = 0; i < v->n; i++)
        if (strncmp(v->v[i], kv, klen) == 0) {
            char *copy = strdup(kv);
            if (!copy) {
                v->failed = true;
                return;
            }
            free(v->v[i]);
            v->v[i] = copy;
            return;
        }
    s_push(v, kv);
}

/* A program found in the sandbox's PATH (not kaizen's), or given with a
   slash; malloc'd, NULL when not found */
static char *s_which(const char *prog, const char *cwd)
{
    struct stat st;
    if (strchr(prog, '/')) {
        char *path;
        if (prog[0] == '/' || !cwd)
            path = strdup(prog);
        else if (asprintf(&path, "%s/%s", cwd, prog) < 0)
            path = NULL;
        if (path && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            free(path);
            return strdup(prog); /* relative: resolved inside, where cwd is the same */
        }
        free(path);
        return NULL;
    }
    const char *p = KZ_SANDBOX_PATH;
    while (*p) {
        size_t n = strcspn(p, ":");
        char *cand;
        if (asprintf(&cand, "%.*s/%s", (int)n, p, prog) < 0)
            return NULL;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
            return cand;
        free(cand);
        p += n;
        p += *p == ':';
    }
    return NULL;
}

/* /bin, /lib, ...: a symlink (merged /usr) is recreated, a directory bound */
static void s_system_dir(s_vec_t *v, const char *dir)
{
    struct stat st;
    char target[PATH_MAX];
    if (lstat(dir, &st) != 0)
        return;
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(dir, target, sizeof target - 1);
        if (n <= 0)
            return;
        target[n] = '\0';
        s_push3(v, "--symlink", target, dir);
    } else if (S_ISDIR(st.st_mode)) {
        s_push3(v, "--ro-bind", dir, dir);
    }
}

static bool s_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void s_limit(kz_sandbox_exec_t *x, int resource, rlim_t value, rlim_t hard_extra)
{
    if (value == 0 || x->nlimits >= KZ_SANDBOX_NLIMITS)
        return;
    x->resources[x->nlimits] = resource;
    x->limits[x->nlimits].rlim_cur = value;
    x->limits[x->nlimits].rlim_max = value + hard_extra;
    x->nlimits++;
}

/* True when PATH is DIR or lies under it */
static bool s_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool s_under_any(const char *path, const char *const *dirs)
{
    for (size_t i = 0; dirs && dirs[i]; i++)
        if (s_under(path, dirs[i]))
            return true;
    return false;
}

/* Is the program PROG (found by s_which) there inside the sandbox? */
static bool s_visible(const char *prog, const kz_sandbox_spec_t *spec,
                      const kz_sandbox_config_t *cfg)
{
    if (prog[0] != '/')
        return spec->cwd != NULL; /* relative to the working directory, bound */
    char real[PATH_MAX];
    const char *p = realpath(prog, real) ? real : prog;
    static const char *const system[] = {"/usr", "/etc", NULL};
    return s_under_any(p, system) || s_under_any(prog, (const char *const *)cfg->bind_ro) ||
           s_under_any(prog, (const char *const *)cfg->bind_rw) ||
           (spec->cwd && s_under(p, spec->cwd)) || s_under_any(prog, spec->ro) ||
           s_under_any(prog, spec->rw);
}

void kz_sandbox_exec_free(kz_sandbox_exec_t *x)
{
    if (!x)
        return;
    free(x->path);
    s_strv_free(x->argv);
    s_strv_free(x->env);
    if (x->home) {
        char err[256];
        if (kz_rmtree(x->home, err, sizeof err) != 0)
            kz_warn("sandbox: %s", err);
        free(x->home);
    }
    memset(x, 0, sizeof *x);
}

static int s_prepare(const kz_sandbox_spec_t *spec, kz_sandbox_exec_t *x, char *errbuf,
                     size_t errlen)
{
    memset(x, 0, sizeof *x);
    if (!spec->argv || !spec->argv[0] || !*spec->argv[0]) {
        s_errf(errbuf, errlen, "unable to run a program: empty argv");
        return -1;
    }
    const char *prog = spec->argv[0];
    kz_sandbox_config_t cfg;
    char user[256];
    char **bind_ro = NULL, **bind_rw = NULL;
    pthread_mutex_lock(&s_lock);
    s_defaults_locked();
    cfg = s_cfg;
    snprintf(user, sizeof user, "%s", s_cfg.user && *s_cfg.user ? s_cfg.user : KZ_SANDBOX_USER);
    bind_ro = s_strv_dup(s_cfg.bind_ro);
    bind_rw = s_strv_dup(s_cfg.bind_rw);
    pthread_mutex_unlock(&s_lock);
    cfg.bind_ro = bind_ro;
    cfg.bind_rw = bind_rw;
    s_vec_t env = {0}, argv = {0};
    int rc = -1;
    if (!bind_ro || !bind_rw)
        goto oom;

    /* the environment: the allow-list, then what the config sets */
    const char *term = getenv("TERM");
    char term_kv[128];
    snprintf(term_kv, sizeof term_kv, "TERM=%s",
             term && *term && strlen(term) < 64 && !strchr(term, '/') ? term : "dumb");
    s_push(&env, "PATH=" KZ_SANDBOX_PATH);
    s_push(&env, "HOME=/tmp");
    s_push(&env, "LANG=C.UTF-8");
    s_push(&env, "LC_ALL=C.UTF-8");
    s_push(&env, term_kv);
    s_push(&env, "PYTHONSAFEPATH=1");
    s_push(&env, "PYTHONDONTWRITEBYTECODE=1");
    for (size_t i = 0; spec->env_add && spec->env_add[i]; i++)
        s_setenv(&env, spec->env_add[i]);
    if (env.failed)
        goto oom;

    char *found = s_which(prog, spec->cwd);
    if (!found) {
        s_errf(errbuf, errlen, "unable to run '%s': %s (looked for in the sandbox's PATH %s)", prog,
               strerror(ENOENT), KZ_SANDBOX_PATH);
        goto done;
    }

    if (cfg.enabled && geteuid() == 0) {
        if (s_lookup(user, &x->uid, &x->gid) != 0) {
            free(found);
            s_errf(errbuf, errlen,
                   "sandbox: the user '%s' does not exist: run scripts/install-deps (it creates "
                   "kaizen-runner), name another in sandbox.user, or set sandbox.enabled: false",
                   user);
            goto done;
        }
        if (x->uid == 0 || x->gid == 0) {
            free(found);
            s_errf(errbuf, errlen, "sandbox: sandbox.user '%s' is root: name an unprivileged user",
                   user);
            goto done;
        }
        x->switch_user = true;
    }
    s_limit(x, RLIMIT_CPU, ((rlim_t)cfg.cpu_time_ms + 999) / 1000, 5);
    s_limit(x, RLIMIT_AS, (rlim_t)cfg.memory_mb << 20, 0);
    s_limit(x, RLIMIT_NPROC, (rlim_t)cfg.processes, 0);
    s_limit(x, RLIMIT_FSIZE, (rlim_t)cfg.file_size_mb << 20, 0);

    if (!cfg.enabled) {
        /* no private /tmp of bubblewrap's: a fresh private HOME and TMPDIR
           per run instead, so no tool of a target writes its caches where
           the next run (or another user, in a shared /tmp) finds them */
        const char *tmp = getenv("TMPDIR");
        char home[PATH_MAX];
        if (snprintf(home, sizeof home, "%s/kaizen-run.XXXXXX",
                     tmp && *tmp == '/' ? tmp : "/tmp") >= (int)sizeof home ||
            !mkdtemp(home)) {
            s_errf(errbuf, errlen, "unable to run '%s': cannot make its private HOME: %s", prog,
                   strerror(errno));
            free(found);
            goto done;
        }
        if (!(x->home = strdup(home))) {
            rmdir(home);
            free(found);
            goto oom;
        }
        char kv[PATH_MAX + 16];
        snprintf(kv, sizeof kv, "HOME=%s", home);
        s_setenv(&env, kv);
        snprintf(kv, sizeof kv, "TMPDIR=%s", home);
        s_setenv(&env, kv);
        if (env.failed) {
            free(found);
            goto oom;
        }
        x->path = found;
        for (size_t i = 0; spec->argv[i]; i++)
            s_push(&argv, spec->argv[i]);
        if (argv.failed)
            goto oom;
        rc = 0;
        goto done;
    }

    if (access(KZ_SANDBOX_BWRAP, X_OK) != 0) {
        free(found);
        s_errf(errbuf, errlen,
               "sandbox: bubblewrap (%s) is not installed, so kaizen refuses to run tools, "
               "fixers and tests: install it (apt-get install bubblewrap, or run "
               "scripts/install-deps) or set sandbox.enabled: false",
               KZ_SANDBOX_BWRAP);
        goto done;
    }
    if (!s_visible(found, spec, &cfg)) {
        s_errf(errbuf, errlen,
               "unable to run '%s': '%s' is not visible in the sandbox (only /usr, /etc, the "
               "directory it runs in and sandbox.bind_ro are: add its directory there)",
               prog, found);
        free(found);
        goto done;
    }
    x->path = strdup(KZ_SANDBOX_BWRAP);
    if (!x->path) {
        free(found);
        goto oom;
    }
    s_push(&argv, "bwrap");
    s_push(&argv, "--unshare-all");
    if (spec->network)
        s_push(&argv, "--share-net");
    s_push(&argv, "--die-with-parent");
    s_push(&argv, "--new-session");
    s_push3(&argv, "--ro-bind", "/usr", "/usr");
    static const char *const sysdirs[] = {"/bin",   "/sbin",   "/lib", "/lib32",
                                          "/lib64", "/libx32", NULL};
    for (size_t i = 0; sysdirs[i]; i++)
        s_system_dir(&argv, sysdirs[i]);
    s_push3(&argv, "--ro-bind", "/etc", "/etc");
    /* kaizen's own settings, if kept under /etc, are not the tools' business */
    if (s_is_dir("/etc/kaizen"))
        s_push3(&argv, "--tmpfs", "/etc/kaizen", NULL);
    s_push3(&argv, "--proc", "/proc", NULL);
    s_push3(&argv, "--dev", "/dev", NULL);
    s_push3(&argv, "--tmpfs", "/tmp", NULL);
    for (size_t i = 0; cfg.bind_ro && cfg.bind_ro[i]; i++)
        s_push3(&argv, "--ro-bind-try", cfg.bind_ro[i], cfg.bind_ro[i]);
    for (size_t i = 0; cfg.bind_rw && cfg.bind_rw[i]; i++)
        s_push3(&argv, "--bind-try", cfg.bind_rw[i], cfg.bind_rw[i]);
    if (spec->cwd) {
        s_push3(&argv, spec->mode == KZ_SANDBOX_WRITE ? "--bind" : "--ro-bind", spec->cwd,
                spec->cwd);
        /* a worktree's .git (a file naming kaizen's git directory) stays
           as it is: kaizen's git runs there after the tool */
        char dotgit[PATH_MAX];
        struct stat st;
        if (spec->mode == KZ_SANDBOX_WRITE &&
            snprintf(dotgit, sizeof dotgit, "%s/.git", spec->cwd) < (int)sizeof dotgit &&
            lstat(dotgit, &st) == 0 && !S_ISLNK(st.st_mode))
            s_push3(&argv, "--ro-bind", dotgit, dotgit);
    }
    for (size_t i = 0; spec->ro && spec->ro[i]; i++)
        s_push3(&argv, "--ro-bind", spec->ro[i], spec->ro[i]);
    for (size_t i = 0; spec->rw && spec->rw[i]; i++)
        s_push3(&argv, "--bind", spec->rw[i], spec->rw[i]);
    s_push3(&argv, "--chdir", spec->cwd ? spec->cwd : "/tmp", NULL);
    s_push(&argv, "--");
    s_push(&argv, found);
    free(found);
    for (size_t i = 1; spec->argv[i]; i++)
        s_push(&argv, spec->argv[i]);
    if (argv.failed)
        goto oom;
    rc = 0;
    goto done;
oom:
    s_errf(errbuf, errlen, "unable to run '%s': out of memory", prog);
    rc = -1;
done:
    s_strv_free(bind_ro);
    s_strv_free(bind_rw);
    if (rc == 0) {
        x->argv = argv.v;
        x->env = env.v;
    } else {
        s_strv_free(argv.v);
        s_strv_free(env.v);
        kz_sandbox_exec_free(x);
    }
    return rc;
}

int kz_sandbox_prepare(const kz_sandbox_spec_t *spec, kz_sandbox_exec_t *x, char *errbuf,
                       size_t errlen)
{
    /* a sandbox that does not work is said once, clearly, rather than as
       each tool's mysterious exit code */
    if (!s_probing && kz_sandbox_enabled() && kz_sandbox_check(false, errbuf, errlen) != 0) {
        memset(x, 0, sizeof *x);
        return -1;
    }
    return s_prepare(spec, x, errbuf, errlen);
}

int kz_sandbox_enter(const kz_sandbox_exec_t *x)
{
    for (size_t i = 0; i < x->nlimits; i++)
        if (setrlimit(x->resources[i], &x->limits[i]) != 0)
            return -1;
    umask(007);
    if (!x->switch_user)
        return 0;
    pid_t parent = getppid();
    gid_t groups[1] = {x->gid};
    if (setgroups(1, groups) != 0 || setgid(x->gid) != 0 || setuid(x->uid) != 0)
        return -1;
    /* it stuck: no way back to root */
    if (getuid() != x->uid || geteuid() != x->uid || getgid() != x->gid || getegid() != x->gid ||
        setuid(0) == 0) {
        errno = EPERM;
        return -1;
    }
    /* changing the uid cleared the parent-death signal: set it again */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
        errno = ESRCH;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- probe */

static int s_probe_run(const char *const *argv, kz_proc_result_t *res, char *errbuf, size_t errlen)
{
    kz_proc_opts_t po = {0};
    po.argv = argv;
    po.sandbox = KZ_SANDBOX_READ;
    po.timeout_ms = S_PROBE_MS;
    po.out_cap = 4096;
    po.err_cap = 4096;
    return kz_proc_run(&po, res, errbuf, errlen);
}

static void s_first_line(const char *text, char *out, size_t len)
{
    size_t n = text ? strcspn(text, "\n") : 0;
    snprintf(out, len, "%.*s", (int)(n > 300 ? 300 : n), text ? text : "");
}

/* The sandbox's user UID (group GID, named USER) can search every existing
   directory above STATE (mode bits: owner, else group, else other, as the
   kernel decides): bubblewrap binds a worktree under STATE by its path, and
   a parent it cannot search fails every tool, fixer and test ("Can't find
   source path"). STATE itself and what kaizen makes in it are opened to
   the user by kaizen. 0 / -1 with ERRBUF */
static int s_check_reach(const char *state, const char *what, const char *shown, const char *user,
                         uid_t uid, gid_t gid, char *errbuf, size_t errlen)
{
    gid_t groups[256];
    int ngroups = 256;
    if (getgrouplist(user, gid, groups, &ngroups) < 0)
        ngroups = 0;
    char real[PATH_MAX];
    if (!realpath(state, real)) {
        /* not there yet: check what exists of its parents */
        snprintf(real, sizeof real, "%s", state);
    }
    size_t n = strlen(real);
    while (n > 1 && real[n - 1] == '/')
        real[--n] = '\0';
    const char *last = strrchr(real, '/');
    size_t end = last ? (size_t)(last - real) : 0;
    /* "/", then each prefix ending before a '/', up to STATE's parent */
    for (size_t i = 0; i <= end; i++) {
        if (i > 0 && real[i] != '/')
            continue;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int)(i == 0 ? 1 : i), real);
        struct stat st;
        if (stat(dir, &st) != 0) {
            if (errno == ENOENT)
                return 0; /* kaizen makes the rest, searchable */
            s_errf(errbuf, errlen, "sandbox: unable to examine '%s': %s", dir, strerror(errno));
            return -1;
        }
        mode_t need;
        const char *who;
        if (st.st_uid == uid) {
            need = S_IXUSR;
            who = "u";
        } else {
            bool member = st.st_gid == gid;
            for (int g = 0; g < ngroups && !member; g++)
                member = groups[g] == st.st_gid;
            need = member ? S_IXGRP : S_IXOTH;
            who = member ? "g" : "o";
        }
        if (!(st.st_mode & need)) {
            s_errf(errbuf, errlen,
                   "sandbox: its user '%s' cannot reach %s '%s': directory '%s' is not "
                   "searchable by it (mode %04o), so the tools, fixers and tests that run there "
                   "would fail; fix it with: chmod %s+x %s (or use a searchable path)",
                   user, what, shown, dir, (unsigned)(st.st_mode & 07777), who, dir);
            return -1;
        }
    }
    return 0;
}

/* Run the probes; 0 / -1 with ERRBUF */
static int s_probe(char *errbuf, size_t errlen)
{
    static const char fix[] = "install bubblewrap (apt-get install bubblewrap, or run "
                              "scripts/install-deps) or set sandbox.enabled: false";
    if (access(KZ_SANDBOX_BWRAP, X_OK) != 0) {
        s_errf(errbuf, errlen,
               "sandbox: bubblewrap (%s) is not installed, so kaizen refuses to run tools, "
               "fixers and tests: %s",
               KZ_SANDBOX_BWRAP, fix);
        return -1;
    }
    uid_t uid = geteuid();
    gid_t gid;
    (void)kz_sandbox_runner(&uid, &gid);
    kz_proc_result_t res;
    char err[512], line[320];
    const char *id[] = {"id", "-u", NULL};
    s_probing = true;
    int rc = s_probe_run(id, &res, err, sizeof err);
    s_probing = false;
    if (rc != 0) {
        kz_proc_result_free(&res);
        s_errf(errbuf, errlen, "sandbox: the probe did not start: %s", err);
        return -1;
    }
    if (res.exit_code != 0 || strtoul(res.out, NULL, 10) != uid || !res.out[0]) {
        s_first_line(res.err[0] ? res.err : res.out, line, sizeof line);
        s_errf(errbuf, errlen,
               "sandbox: bubblewrap fails here (exit %d: %s), so kaizen refuses to run tools, "
               "fixers and tests: %s",
               res.exit_code, line[0] ? line : "no output", fix);
        kz_proc_result_free(&res);
        return -1;
    }
    kz_proc_result_free(&res);
    char state[PATH_MAX] = "";
    pthread_mutex_lock(&s_lock);
    if (s_state_dir)
        snprintf(state, sizeof state, "%s", s_state_dir);
    pthread_mutex_unlock(&s_lock);
    if (!state[0])
        return 0;
    uid_t ruid;
    gid_t rgid;
    if (kz_sandbox_runner(&ruid, &rgid)) {
        char name[256];
        s_user_name(name, sizeof name);
        if (s_check_reach(state, "the worktrees in the state directory", state, name, ruid, rgid,
                          errbuf, errlen) != 0)
            return -1;
        /* the scratch copies (settings readers, rewrite tools, compile
           databases) are made in TMPDIR: it must be searchable too */
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp)
            tmp = "/tmp";
        char inside[PATH_MAX];
        snprintf(inside, sizeof inside, "%s/kaizen-copy", tmp);
        if (s_check_reach(inside, "its scratch copies in the temporary directory (TMPDIR)", tmp,
                          name, ruid, rgid, errbuf, errlen) != 0)
            return -1;
    }
    const char *look[] = {"test", "!", "-e", state, NULL};
    s_probing = true;
    rc = s_probe_run(look, &res, err, sizeof err);
    s_probing = false;
    if (rc != 0 || res.exit_code != 0) {
        kz_proc_result_free(&res);
        s_errf(errbuf, errlen, "sandbox: the state directory '%s' is visible inside it", state);
        return -1;
    }
    kz_proc_result_free(&res);
    return 0;
}

int kz_sandbox_check(bool force, char *errbuf, size_t errlen)
{
    if (!kz_sandbox_enabled())
        return 0;
    pthread_mutex_lock(&s_lock);
    int state = s_probe_state;
    char saved[sizeof s_probe_err];
    snprintf(saved, sizeof saved, "%s", s_probe_err);
    pthread_mutex_unlock(&s_lock);
    if (state && !force) {
        if (state < 0)
            s_errf(errbuf, errlen, "%s", saved);
        return state > 0 ? 0 : -1;
    }
    char err[sizeof s_probe_err];
    int rc = s_probe(err, sizeof err);
    pthread_mutex_lock(&s_lock);
    s_probe_state = rc == 0 ? 1 : -1;
    snprintf(s_probe_err, sizeof s_probe_err, "%s", rc == 0 ? "" : err);
    pthread_mutex_unlock(&s_lock);
    if (rc != 0)
        s_errf(errbuf, errlen, "%s", err);
    return rc;
}

/* ---------------------------------------------------------------- files */

int kz_sandbox_share_dir(const char *dir, char *errbuf, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    if (!kz_sandbox_runner(&uid, &gid))
        return 0;
    if (chown(dir, (uid_t)-1, gid) != 0 || chmod(dir, 02770) != 0) {
        s_errf(errbuf, errlen, "unable to share '%s' with the sandbox user: %s", dir,
               strerror(errno));
        return -1;
    }
    char state[PATH_MAX] = "";
    pthread_mutex_lock(&s_lock);
    if (s_state_dir)
        snprintf(state, sizeof state, "%s", s_state_dir);
    pthread_mutex_unlock(&s_lock);
    if (!state[0] || !s_under(dir, state))
        return 0;
    /* the runner must traverse (not list) the parents inside the state
       directory, the state directory itself included */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    while (true) {
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            break;
        *slash = '\0';
        if (!s_under(path, state))
            break;
        struct stat st;
        if (stat(path, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0011) != 0011 &&
            chmod(path, (st.st_mode & 07777) | 0011) != 0) {
            s_errf(errbuf, errlen, "unable to open '%s' to the sandbox user: %s", path,
                   strerror(errno));
            return -1;
        }
    }
    return 0;
}

static uid_t s_give_uid;
static gid_t s_give_gid;
static pthread_mutex_t s_give_lock = PTHREAD_MUTEX_INITIALIZER;

static int s_give_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return lchown(path, s_give_uid, s_give_gid) == 0 ? 0 : -1;
}

int kz_sandbox_give_tree(const char *dir, char *errbuf, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    if (!kz_sandbox_runner(&uid, &gid))
        return 0;
    pthread_mutex_lock(&s_give_lock);
    s_give_uid = uid;
    s_give_gid = gid;
    int rc = nftw(dir, s_give_one, 32, FTW_PHYS);
    int saved = errno;
    pthread_mutex_unlock(&s_give_lock);
    if (rc != 0) {
        s_errf(errbuf, errlen, "unable to give '%s' to the sandbox user: %s", dir, strerror(saved));
        return -1;
    }
    return 0;
}

int kz_sandbox_copy_files(const char *root, const char *const *rels, size_t max, char *dir,
                          size_t len, char *errbuf, size_t errlen)
{
    dir[0] = '\0';
    if (kz_tmpdir_new(NULL, "kaizen-copy", dir, len, errbuf, errlen) != 0) {
        dir[0] = '\0';
        return -1;
    }
    for (size_t i = 0; rels && rels[i]; i++) {
        char from[PATH_MAX * 2], to[PATH_MAX * 2];
        if (strchr(rels[i], '/') || strcmp(rels[i], "..") == 0) {
            s_errf(errbuf, errlen, "unable to copy '%s': not a file name", rels[i]);
            return -1;
        }
        snprintf(from, sizeof from, "%s/%s", root, rels[i]);
        snprintf(to, sizeof to, "%s/%s", dir, rels[i]);
        int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        int out = in >= 0 ? open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
        bool ok = in >= 0 && out >= 0;
        size_t total = 0;
        char buf[65536];
        ssize_t got = 0;
        while (ok && (got = read(in, buf, sizeof buf)) > 0) {
            total += (size_t)got;
            ok = total <= max && write(out, buf, (size_t)got) == got;
        }
        if (ok && got < 0)
            ok = false;
        if (out >= 0 && close(out) != 0)
            ok = false;
        if (in >= 0)
            close(in);
        if (!ok) {
            s_errf(errbuf, errlen, "unable to copy '%s' for the sandbox", rels[i]);
            return -1;
        }
    }
    if (kz_sandbox_share_dir(dir, errbuf, errlen) != 0 ||
        kz_sandbox_give_tree(dir, errbuf, errlen) != 0)
        return -1;
    return 0;
}
