/*  kz_config_check.c - what a loaded config names must exist on this host

    One pass over the targets and the bus endpoints; every problem found
    becomes one line placed at its key's value (kz_config_mark). Only
    reads: git (rev-parse, cat-file), PATH lookups, stat.
*/
#include "kz_config_check.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kz_git.h"
#include "kz_proc.h"
#include "kz_recipe.h"

#define S_LINE_MAX 2048

typedef struct {
    const kz_config_t *cfg;
    kz_config_problems_t *out;
    bool oom;
} s_check_t;

/* Add "FILE:LINE:COL: KEY: MESSAGE" at KEY's position */
static void s_problem(s_check_t *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_problem(s_check_t *c, const char *key, const char *fmt, ...)
{
    char msg[S_LINE_MAX], *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int l, col;
    (void)kz_config_mark(c->cfg, key, &l, &col);
    char **lines = realloc(c->out->lines, (c->out->count + 1) * sizeof *lines);
    if (!lines || asprintf(&line, "%s:%d:%d: %s: %s", c->cfg->path ? c->cfg->path : "<defaults>", l,
                           col, key, msg) < 0) {
        if (lines)
            c->out->lines = lines;
        c->oom = true;
        return;
    }
    c->out->lines = lines;
    c->out->lines[c->out->count++] = line;
}

static bool s_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Is PROGRAM installed: on PATH, or an executable file when it names one */
static bool s_installed(const char *program)
{
    if (!program || !*program)
        return false;
    if (strchr(program, '/'))
        return access(program, X_OK) == 0;
    char *path = kz_proc_which(program);
    free(path);
    return path != NULL;
}

/* The test program of target I: argv[0] on PATH, or a file of the
   repository (or of init_from while the repository does not exist) */
static void s_test_program(s_check_t *c, size_t i, const kz_target_config_t *t, bool exists)
{
    if (!t->test || t->test_count == 0 || !t->test[0])
        return;
    const char *prog = t->test[0];
    char key[64];
    snprintf(key, sizeof key, "targets[%zu].test[0]", i);
    if (!strchr(prog, '/')) {
        if (!s_installed(prog))
            s_problem(c, key, "test program '%s' of target %s is not installed (not found on PATH)",
                      prog, t->name);
        return;
    }
    if (prog[0] == '/') {
        if (access(prog, X_OK) != 0)
            s_problem(c, key, "test program '%s' of target %s: %s", prog, t->name, strerror(errno));
        return;
    }
    /* relative: the tests run in a worktree of the branch */
    const char *rel = prog;
    while (strncmp(rel, "./", 2) == 0)
        rel += 2;
    if (!exists) {
        char file[PATH_MAX];
        snprintf(file, sizeof file, "%s/%s", t->init_from ? t->init_from : "", rel);
        if (t->init_from && access(file, F_OK) != 0)
            s_problem(c, key, "test program '%s' of target %s is not in %s", prog, t->name,
                      t->init_from);
        return;
    }
    char spec[PATH_MAX + 256], err[512];
    snprintf(spec, sizeof spec, "%s:%s", t->branch, rel);
    const char *args[] = {"cat-file", "-e", spec, NULL};
    if (kz_git(t->path, args, 0, NULL, err, sizeof err) != 0)
        s_problem(c, key, "test program '%s' of target %s is not in branch '%s' of %s", prog,
                  t->name, t->branch, t->path);
}

/* Each language of target I has an enabled tool recipe whose program is
   installed */
static void s_languages(s_check_t *c, size_t i, const kz_target_config_t *t)
{
    for (size_t l = 0; l < t->languages_count && t->languages[l]; l++) {
        char *one[] = {t->languages[l], NULL};
        char names[512] = "";
        size_t at = 0, recipes = 0;
        bool found = false;
        for (size_t k = 0; k < c->cfg->tools_count && !found; k++) {
            const kz_tool_config_t *tool = &c->cfg->tools[k];
            if (!tool->enabled || !tool->argv_count || !kz_tool_applies(tool, one))
                continue;
            recipes++;
            found = s_installed(tool->argv[0]);
            if (at < sizeof names) {
                int n = snprintf(names + at, sizeof names - at, "%s%s", at ? ", " : "", tool->name);
                at += n > 0 ? (size_t)n : 0;
            }
        }
        if (found)
            continue;
        char key[80];
        snprintf(key, sizeof key, "targets[%zu].languages[%zu]", i, l);
        if (recipes == 0)
            s_problem(c, key, "no tool recipe checks language '%s' (tools[].languages)",
                      t->languages[l]);
        else
            s_problem(c, key, "no tool for language '%s' is installed (tried: %s)", t->languages[l],
                      names);
    }
}

static void s_target(s_check_t *c, size_t i)
{
    const kz_target_config_t *t = &c->cfg->targets[i];
    char key[64], err[1024];
    snprintf(key, sizeof key, "targets[%zu].path", i);
    if (!t->path)
        return;
    struct stat st;
    bool exists = stat(t->path, &st) == 0;
    if (!exists && errno == ENOENT && t->init_from) {
        /* `kaizen up` creates it from init_from */
        if (!s_is_dir(t->init_from)) {
            snprintf(key, sizeof key, "targets[%zu].init_from", i);
            s_problem(c, key, "'%s' (to create target %s from) is not a directory", t->init_from,
                      t->name);
        }
    } else if (!exists) {
        s_problem(c, key, "target %s: '%s': %s", t->name, t->path, strerror(errno));
    } else if (kz_git_check_owner(t->path, t->trust_owner, err, sizeof err) != 0) {
        s_problem(c, key, "target %s: %s", t->name, err);
        exists = false;
    } else if (kz_git_check_repo(t->path, err, sizeof err) != 0) {
        s_problem(c, key, "target %s: %s", t->name, err);
        exists = false;
    } else {
        char oid[KZ_GIT_OID_MAX];
        char ref[PATH_MAX];
        snprintf(ref, sizeof ref, "refs/heads/%s", t->branch);
        if (kz_git_rev(t->path, ref, oid, err, sizeof err) != 0) {
            snprintf(key, sizeof key, "targets[%zu].branch", i);
            s_problem(c, key, "target %s: '%s' has no branch '%s'", t->name, t->path, t->branch);
            exists = false;
        }
    }
    if (exists || t->init_from)
        s_test_program(c, i, t, exists);
    s_languages(c, i, t);
}

/* ENDPOINT (at KEY) is usable: tcp://HOST:PORT with a port 1-65535 or *,
   ipc://PATH short enough for a unix socket */
static void s_endpoint(s_check_t *c, const char *key, const char *endpoint)
{
    if (!endpoint)
        return;
    if (strncmp(endpoint, "tcp://", 6) == 0) {
        const char *hostport = endpoint + 6;
        const char *colon = strrchr(hostport, ':');
        if (!colon || colon == hostport) {
            s_problem(c, key, "'%s': expected tcp://HOST:PORT", endpoint);
            return;
        }
        const char *port = colon + 1;
        if (strcmp(port, "*") == 0)
            return;
        char *end = NULL;
        errno = 0;
        long n = strtol(port, &end, 10);
        if (!*port || errno || *end || n < 1 || n > 65535)
            s_problem(c, key, "'%s': the port must be 1-65535 or *", endpoint);
    } else if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct sockaddr_un sa;
        const char *path = endpoint + 6;
        if (path[0] != '@' && strlen(path) >= sizeof sa.sun_path)
            s_problem(c, key,
                      "'%s': the socket path is longer than %zu bytes (a unix socket's "
                      "limit): use a shorter state_dir or endpoint",
                      endpoint, sizeof sa.sun_path - 1);
    }
}

static void s_endpoints(s_check_t *c, bool broker)
{
    const kz_endpoints_t *sets[] = {&c->cfg->bus.connect, &c->cfg->bus.bind};
    const char *section[] = {"bus.endpoints", "bus.bind"};
    for (size_t s = 0; s < 2; s++) {
        if (s == 1 && !broker)
            break; /* the broker binds them elsewhere */
        const kz_endpoints_t *e = sets[s];
        const char *names[] = {"pub", "sub", "router", "tap"};
        const char *values[] = {e->pub, e->sub, e->router, e->tap};
        for (size_t i = 0; i < 4; i++) {
            char key[64];
            snprintf(key, sizeof key, "%s.%s", section[s], names[i]);
            s_endpoint(c, key, values[i]);
        }
    }
}

/* Does HOST run the targets' roles: the main host (its orchestrator runs
   the broker, the router that applies plans to the targets), or an agent
   placed on it */
static bool s_runs_targets(const kz_config_t *cfg, const char *host)
{
    if (cfg->supervisor.broker)
        return true;
    for (size_t i = 0; i < cfg->agents_count; i++)
        if (cfg->agents[i].host && strcmp(cfg->agents[i].host, host) == 0)
            return true;
    return false;
}

int kz_config_check(const kz_config_t *cfg, const char *host, kz_config_problems_t *problems,
                    char *errbuf, size_t errlen)
{
    problems->lines = NULL;
    problems->count = 0;
    char name[256];
    if (!host) {
        if (gethostname(name, sizeof name - 1) != 0)
            snprintf(name, sizeof name, "localhost");
        name[sizeof name - 1] = '\0';
        host = name;
    }
    s_check_t c = {.cfg = cfg, .out = problems};
    if (s_runs_targets(cfg, host))
        for (size_t i = 0; i < cfg->targets_count; i++)
            s_target(&c, i);
    s_endpoints(&c, cfg->supervisor.broker);
    if (c.oom) {
        kz_config_problems_clear(problems);
        snprintf(errbuf, errlen, "out of memory checking the config");
        return -1;
    }
    return 0;
}

void kz_config_problems_clear(kz_config_problems_t *problems)
{
    if (!problems)
        return;
    for (size_t i = 0; i < problems->count; i++)
        free(problems->lines[i]);
    free(problems->lines);
    problems->lines = NULL;
    problems->count = 0;
}
