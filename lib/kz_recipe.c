/*  kz_recipe.c - running tool and fixer recipes of the config

    See kz_recipe.h. Commands come from the local config only and run
    through kz_proc (argv, no shell, own process group, timeout); every
    file handed to a command is checked with kz_path_inside first.
*/
#include "kz_recipe.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_log.h"
#include "kz_proc.h"
#include "kz_state.h"

#define KZ_RUN_OUT_CAP   (64u << 20)  /* bytes of a tool's stdout kept */
#define KZ_RUN_ERR_CAP   (8u << 20)   /* bytes of its stderr kept */
#define KZ_RUN_ARG_BYTES (256u << 10) /* bytes of file arguments per invocation */
#define KZ_REQUIRE_MAX   (16u << 20)  /* bytes of a "FILE:TEXT" evidence file searched */

__attribute__((format(printf, 3, 4))) static void s_why(char *why, size_t len, const char *fmt, ...)
{
    if (!why || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ paths */

/* True when REAL (a real path) is ROOTREAL or below it */
static bool s_below(const char *rootreal, const char *real)
{
    size_t rl = strlen(rootreal);
    if (rl == 1 && rootreal[0] == '/')
        return true;
    return strncmp(real, rootreal, rl) == 0 && (real[rl] == '\0' || real[rl] == '/');
}

bool kz_path_inside(const char *root, const char *rel, char *why, size_t len)
{
    if (why && len)
        why[0] = '\0';
    if (!rel || !*rel) {
        s_why(why, len, "an empty path");
        return false;
    }
    if (!root || !*root) {
        s_why(why, len, "'%s': no root directory to check it against", rel);
        return false;
    }
    if (rel[0] == '/') {
        s_why(why, len, "'%s' is an absolute path", rel);
        return false;
    }
    size_t n = strlen(rel);
    if (n >= PATH_MAX) {
        s_why(why, len, "'%.64s...' is too long", rel);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)rel[i] < 0x20 || rel[i] == 0x7f) {
            s_why(why, len, "'%s' contains a control character", rel);
            return false;
        }
    }
    /* no ".." component */
    for (const char *p = rel; *p;) {
        const char *e = strchr(p, '/');
        size_t cl = e ? (size_t)(e - p) : strlen(p);
        if (cl == 2 && p[0] == '.' && p[1] == '.') {
            s_why(why, len, "'%s' leaves the worktree (a '..' component)", rel);
            return false;
        }
        p += cl;
        if (*p == '/')
            p++;
    }
    char rootreal[PATH_MAX];
    if (!realpath(root, rootreal)) {
        if (why && len)
            snprintf(why, len, "'%s': root '%s' cannot be resolved: %s", rel, root,
                     strerror(errno));
        return false;
    }
    /* walk the components: every existing prefix (symlinks resolved) must
       stay inside; a symlink that cannot be resolved (dangling, a loop) is
       refused, since writing through it could land anywhere */
    char full[PATH_MAX * 2];
    int fl = snprintf(full, sizeof full, "%s/", rootreal);
    if (fl < 0 || (size_t)fl >= sizeof full) {
        s_why(why, len, "'%s' is too long", rel);
        return false;
    }
    size_t o = (size_t)fl;
    for (const char *p = rel; *p;) {
        const char *comp = p;
        const char *e = strchr(p, '/');
        size_t cl = e ? (size_t)(e - p) : strlen(p);
        p += cl;
        if (*p == '/')
            p++;
        if (cl == 0 || (cl == 1 && comp[0] == '.'))
            continue;
        if (o + cl + 2 >= sizeof full) {
            s_why(why, len, "'%s' is too long", rel);
            return false;
        }
        if (full[o - 1] != '/')
            full[o++] = '/';
        memcpy(full + o, comp, cl);
        o += cl;
        full[o] = '\0';
        struct stat st;
        if (lstat(full, &st) != 0)
            break; /* the rest does not exist: nothing more to resolve */
        if (!S_ISLNK(st.st_mode))
            continue;
        char real[PATH_MAX];
        if (!realpath(full, real)) {
            if (why && len)
                snprintf(why, len, "'%s' goes through a symlink that cannot be resolved (%s)", rel,
                         strerror(errno));
            return false;
        }
        if (!s_below(rootreal, real)) {
            if (why && len)
                snprintf(why, len, "'%s' leaves the worktree (a symlink to '%s')", rel, real);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ recipes */

bool kz_tool_applies(const kz_tool_config_t *tool, char *const *languages)
{
    if (!tool || !tool->languages || !tool->languages[0] || tool->languages_count == 0)
        return true;
    if (!languages || !languages[0])
        return true;
    for (size_t i = 0; i < tool->languages_count && tool->languages[i]; i++)
        for (size_t j = 0; languages[j]; j++)
            if (strcasecmp(tool->languages[i], languages[j]) == 0)
                return true;
    return false;
}

/* True when ROOT/FILE exists (as a regular file or directory, inside root)
   and, when TEXT is given, contains it */
static bool s_evidence(const char *root, const char *file, size_t flen, const char *text)
{
    char rel[PATH_MAX];
    if (flen == 0 || flen >= sizeof rel)
        return false;
    memcpy(rel, file, flen);
    rel[flen] = '\0';
    if (!kz_path_inside(root, rel, NULL, 0))
        return false;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    if (!text || !*text)
        return true;
    if (!S_ISREG(st.st_mode))
        return false;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    size_t cap =
        st.st_size > 0 && (size_t)st.st_size < KZ_REQUIRE_MAX ? (size_t)st.st_size : KZ_REQUIRE_MAX;
    char *buf = malloc(cap + 1);
    bool found = false;
    if (buf) {
        size_t got = fread(buf, 1, cap, fp);
        buf[got] = '\0';
        found = memmem(buf, got, text, strlen(text)) != NULL;
        free(buf);
    }
    fclose(fp);
    return found;
}

bool kz_tool_chosen(const kz_tool_config_t *tool, const char *root, char *which, size_t len)
{
    if (which && len)
        which[0] = '\0';
    if (tool && tool->gate && strcmp(tool->gate, "always") == 0) {
        if (which && len)
            snprintf(which, len, "gate: always");
        return true;
    }
    if (!tool || tool->requires_count == 0 || !tool->requires)
        return true;
    for (size_t i = 0; i < tool->requires_count && tool->requires[i]; i++) {
        const char *req = tool->requires[i];
        const char *colon = strchr(req, ':');
        size_t flen = colon ? (size_t)(colon - req) : strlen(req);
        if (s_evidence(root, req, flen, colon ? colon + 1 : NULL)) {
            if (which && len)
                snprintf(which, len, "%s", req);
            return true;
        }
    }
    if (which && len) {
        size_t o = (size_t)snprintf(which, len, "none of");
        for (size_t i = 0; i < tool->requires_count && tool->requires[i] && o < len; i++)
            o += (size_t)snprintf(which + o, len - o, "%s '%s'", i ? "," : "", tool->requires[i]);
    }
    return false;
}

/* True when PATH or its base name matches one of the N GLOBS */
static bool s_glob_any(char *const *globs, size_t n, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < n && globs[i]; i++)
        if (fnmatch(globs[i], path, 0) == 0 || fnmatch(globs[i], base, 0) == 0)
            return true;
    return false;
}

bool kz_tool_wants(const kz_tool_config_t *tool, const char *path)
{
    if (!path || !*path)
        return false;
    if (!tool)
        return true;
    if (tool->exclude_count && tool->exclude &&
        s_glob_any(tool->exclude, tool->exclude_count, path))
        return false;
    if (tool->files_count == 0 || !tool->files)
        return true;
    return s_glob_any(tool->files, tool->files_count, path);
}

bool kz_fixer_fixes(const kz_fixer_config_t *fixer, const char *tool, const char *rule)
{
    if (!fixer || !tool || !fixer->tool || strcmp(fixer->tool, tool) != 0)
        return false;
    if (fixer->rules_count == 0 || !fixer->rules)
        return true;
    if (!rule)
        return false;
    for (size_t i = 0; i < fixer->rules_count && fixer->rules[i]; i++)
        if (fnmatch(fixer->rules[i], rule, 0) == 0)
            return true;
    return false;
}

const kz_fixer_config_t *kz_fixer_for(const kz_config_t *cfg, const char *tool, const char *rule)
{
    if (!cfg)
        return NULL;
    for (size_t i = 0; i < cfg->fixers_count; i++)
        if (kz_fixer_fixes(&cfg->fixers[i], tool, rule))
            return &cfg->fixers[i];
    return NULL;
}

bool kz_tool_exit_ok(const kz_tool_config_t *tool, int code)
{
    if (!tool || tool->exit_ok_count == 0 || !tool->exit_ok)
        return code == 0 || code == 1;
    for (size_t i = 0; i < tool->exit_ok_count && tool->exit_ok[i]; i++) {
        const char *s = tool->exit_ok[i];
        char *end;
        errno = 0;
        long lo = strtol(s, &end, 10);
        if (end == s || errno)
            continue;
        long hi = lo;
        if (*end == '-') {
            const char *h = end + 1;
            hi = strtol(h, &end, 10);
            if (end == h || errno)
                continue;
        }
        if (*end != '\0')
            continue;
        if (code >= lo && code <= hi)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ argv */

void kz_strv_free(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

/* ARG with every "{root}" / "{junit}" / "{compdb}" replaced (when the
   value is known) */
static char *s_subst(const char *arg, const char *root, const char *junit, const char *compdb)
{
    size_t cap = strlen(arg) + 1;
    const char *keys[3] = {"{root}", "{junit}", "{compdb}"};
    const char *vals[3] = {root, junit, compdb};
    for (int k = 0; k < 3; k++) {
        if (!vals[k])
            continue;
        for (const char *p = strstr(arg, keys[k]); p; p = strstr(p + 1, keys[k]))
            cap += strlen(vals[k]);
    }
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = 0;
    for (const char *p = arg; *p;) {
        bool done = false;
        for (int k = 0; k < 3 && !done; k++) {
            size_t kl = strlen(keys[k]);
            if (vals[k] && strncmp(p, keys[k], kl) == 0) {
                size_t vl = strlen(vals[k]);
                memcpy(out + o, vals[k], vl);
                o += vl;
                p += kl;
                done = true;
            }
        }
        if (!done)
            out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

char *kz_argv_file(const char *file)
{
    if (!file)
        file = "";
    if (file[0] != '-')
        return strdup(file);
    size_t n = strlen(file);
    char *out = malloc(n + 3);
    if (out) {
        memcpy(out, "./", 2);
        memcpy(out + 2, file, n + 1);
    }
    return out;
}

const char *kz_argv_python_module(char *const *argv, size_t argc)
{
    if (!argv || !argv[0])
        return NULL;
    for (size_t i = 1; (argc == 0 || i + 1 < argc) && argv[i] && argv[i + 1]; i++) {
        if (strcmp(argv[i], "-m") == 0)
            return argv[i + 1];
        const char *a = argv[i];
        if (a[0] != '-' || !a[1])
            return NULL;
        for (const char *c = a + 1; *c; c++)
            if (!isalpha((unsigned char)*c))
                return NULL;
    }
    return NULL;
}

char **kz_argv_expand(char *const *argv, const char *const *files, size_t nfiles, const char *root,
                      const char *junit)
{
    return kz_argv_expand_compdb(argv, files, nfiles, root, junit, NULL);
}

char **kz_argv_expand_compdb(char *const *argv, const char *const *files, size_t nfiles,
                             const char *root, const char *junit, const char *compdb)
{
    if (!argv)
        return NULL;
    size_t n = 0, slots = 1;
    for (; argv[n]; n++)
        slots += strcmp(argv[n], "{files}") == 0 ? nfiles : 1;
    char **out = calloc(slots, sizeof *out);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[i], "{files}") == 0) {
            for (size_t f = 0; f < nfiles; f++) {
                out[o] = kz_argv_file(files ? files[f] : NULL);
                if (!out[o++])
                    goto fail;
            }
            continue;
        }
        if (!compdb && strstr(argv[i], "{compdb}"))
            continue; /* no database: the tool runs without one */
        out[o] = s_subst(argv[i], root, junit, compdb);
        if (!out[o++])
            goto fail;
    }
    out[o] = NULL;
    return out;
fail:
    kz_strv_free(out);
    return NULL;
}

char **kz_argv_build(char *const *argv, const char *const *extra, bool drop_files,
                     const char *const *files, size_t nfiles, const char *root, const char *junit,
                     const char *compdb)
{
    if (!argv)
        return NULL;
    size_t n = 0;
    while (argv[n])
        n++;
    char **tmpl = calloc(n + 1, sizeof *tmpl);
    if (!tmpl)
        return NULL;
    /* the template, and where the extra arguments go in it: before "--",
       else before "{files}" (every element before maps to one) */
    size_t t = 0, at = SIZE_MAX, files_at = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        bool is_files = strcmp(argv[i], "{files}") == 0;
        if (is_files && files_at == SIZE_MAX)
            files_at = t;
        if (strcmp(argv[i], "--") == 0 && at == SIZE_MAX && files_at == SIZE_MAX)
            at = t;
        /* an element naming the compile database goes when there is none
           (as kz_argv_expand_compdb would drop it: here, so AT counts) */
        bool no_compdb = !compdb && strstr(argv[i], "{compdb}");
        if (!(is_files && drop_files) && !no_compdb)
            tmpl[t++] = argv[i];
    }
    if (at == SIZE_MAX)
        at = files_at != SIZE_MAX ? files_at : t;
    char **exp = kz_argv_expand_compdb(tmpl, files, nfiles, root, junit, compdb);
    free(tmpl);
    size_t ne = 0, nx = 0;
    while (extra && extra[nx])
        nx++;
    if (!exp || !nx)
        return exp;
    while (exp[ne])
        ne++;
    if (at > ne)
        at = ne;
    char **out = calloc(ne + nx + 1, sizeof *out);
    if (!out) {
        kz_strv_free(exp);
        return NULL;
    }
    memcpy(out, exp, at * sizeof *out);
    memcpy(out + at + nx, exp + at, (ne - at) * sizeof *out);
    free(exp); /* its strings moved to OUT */
    for (size_t i = 0; i < nx; i++) {
        if (!(out[at + i] = strdup(extra[i]))) {
            for (size_t k = 0; k < ne + nx; k++)
                free(out[k]); /* the slots not filled yet are NULL */
            free(out);
            return NULL;
        }
    }
    return out;
}

/* ------------------------------------------------------------ running */

kz_tool_outcome_t kz_tool_outcome(const char *status)
{
    if (status && strcmp(status, "ok") == 0)
        return KZ_TOOL_RAN_CLEAN;
    if (status && strcmp(status, "skipped") == 0)
        return KZ_TOOL_SKIPPED;
    return KZ_TOOL_FAILED;
}

const char *kz_tool_status_name(kz_tool_status_t status)
{
    switch (status) {
    case KZ_TOOL_OK:
        return "ok";
    case KZ_TOOL_ERROR:
        return "error";
    case KZ_TOOL_TIMEOUT:
        return "timeout";
    case KZ_TOOL_MISSING:
        return "missing";
    }
    return "error";
}

static bool s_has_files_arg(const kz_tool_config_t *tool)
{
    for (size_t i = 0; i < tool->argv_count && tool->argv[i]; i++)
        if (strcmp(tool->argv[i], "{files}") == 0)
            return true;
    return false;
}

/* The first non-empty line of TEXT, at most 300 bytes */
static void s_first_line(const char *text, size_t len, char *out, size_t outlen)
{
    size_t i = 0;
    out[0] = '\0';
    while (i < len) {
        while (i < len && (text[i] == '\n' || text[i] == '\r' || text[i] == ' '))
            i++;
        size_t b = i;
        while (i < len && text[i] != '\n' && text[i] != '\r')
            i++;
        if (i > b) {
            size_t n = i - b;
            if (n > 300)
                n = 300;
            snprintf(out, outlen, "%.*s", (int)n, text + b);
            return;
        }
    }
}

/* True when ARGV is "PYTHON -m MODULE ..." and Python said it has no
   such module: the tool is not installed (and its exit status 1 would
   otherwise pass for "ran, no findings") */
static bool s_python_module_missing(char *const *argv, const kz_proc_result_t *pr)
{
    const char *module = kz_argv_python_module(argv, 0);
    if (!module || pr->exit_code == 0 || !pr->err)
        return false;
    char needle[300];
    snprintf(needle, sizeof needle, "No module named %s", module);
    const char *hit = strstr(pr->err, needle);
    if (!hit)
        return false;
    char end = hit[strlen(needle)];
    return end == '\0' || end == '\n' || end == '\r' || end == '.' || end == ' ';
}

/* Run one invocation on FILES[0..N) (none for a whole-tree tool; not in
   its argv for a tool run on the project's own list of files) */
/* ------------------------------------------------- the "rewrite" format */

#define S_REWRITE_MAX (16u << 20) /* bytes of one file a rewrite check copies */

/* The whole of regular file PATH (at most S_REWRITE_MAX bytes) into *BUF,
   *LEN. 0 / -1 (missing, not regular, too large, unreadable) */
static int s_slurp(const char *path, char **buf, size_t *len)
{
    struct stat st;
    *buf = NULL;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > S_REWRITE_MAX)
        return -1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *buf = malloc((size_t)st.st_size + 1);
    *len = *buf ? fread(*buf, 1, (size_t)st.st_size, f) : 0;
    bool bad = !*buf || ferror(f);
    fclose(f);
    if (bad) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

/* Copy FILES (relative, NFILES) of ROOT into the scratch directory DIR,
   keeping their paths. 0 / -1 with WHY */
static int s_copy_files(const char *root, const char *dir, const char *const *files, size_t nfiles,
                        char *why, size_t len)
{
    for (size_t i = 0; i < nfiles; i++) {
        char from[PATH_MAX], to[PATH_MAX], parent[PATH_MAX];
        char *data;
        size_t n;
        snprintf(from, sizeof from, "%s/%s", root, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        snprintf(parent, sizeof parent, "%s", to);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        if (s_slurp(from, &data, &n) != 0) {
            snprintf(why, len, "cannot read '%s'", files[i]);
            return -1;
        }
        FILE *f = kz_mkdirs(parent, 0700, why, len) == 0 ? kz_file_fopen(to, "x", 0600) : NULL;
        bool ok = f && fwrite(data, 1, n, f) == n;
        if (f && fclose(f) != 0)
            ok = false;
        free(data);
        if (!ok) {
            if (!why[0])
                snprintf(why, len, "cannot copy '%s': %s", files[i], strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* One finding per file of FILES whose copy under DIR the tool changed,
   at its first changed line, into OUT. 0 / -1 (out of memory) */
static int s_rewrite_findings(const kz_tool_config_t *tool, const char *root, const char *dir,
                              const char *const *files, size_t nfiles, kz_findings_t *out)
{
    for (size_t i = 0; i < nfiles; i++) {
        char a[PATH_MAX], b[PATH_MAX];
        char *old = NULL, *new = NULL;
        size_t nold = 0, nnew = 0;
        snprintf(a, sizeof a, "%s/%s", root, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        bool read = s_slurp(a, &old, &nold) == 0 && s_slurp(b, &new, &nnew) == 0;
        if (read && (nold != nnew || memcmp(old, new, nold) != 0)) {
            size_t k = 0;
            int line = 1;
            while (k < nold && k < nnew && old[k] == new[k])
                line += old[k++] == '\n';
            char msg[256];
            snprintf(msg, sizeof msg, "%s would rewrite this file (first change at line %d)",
                     tool->name, line);
            kz_finding_t f = {.tool = tool->name,
                              .rule = tool->name,
                              .file = (char *)files[i],
                              .line = line,
                              .message = msg};
            if (kz_findings_add(out, &f) != 0) {
                free(old);
                free(new);
                return -1;
            }
        }
        free(old);
        free(new);
    }
    return 0;
}

static int s_run_batch(const kz_tool_config_t *tool, const kz_tool_run_opts_t *opts,
                       const char *const *files, size_t nfiles, bool filtered, kz_findings_t *out,
                       kz_tool_result_t *res)
{
    /* "rewrite": a tool that only rewrites files (pyupgrade) runs on
       copies in a scratch directory; each file it changed is a finding */
    bool rewrite = strcmp(tool->format, "rewrite") == 0;
    char scratch[PATH_MAX] = "";
    if (rewrite) {
        char why[512] = "";
        if (!filtered ||
            kz_tmpdir_new(NULL, "kaizen-rewrite", scratch, sizeof scratch, why, sizeof why) != 0 ||
            s_copy_files(opts->root, scratch, files, nfiles, why, sizeof why) != 0 ||
            kz_sandbox_share_dir(scratch, why, sizeof why) != 0 ||
            kz_sandbox_give_tree(scratch, why, sizeof why) != 0) {
            res->status = KZ_TOOL_ERROR;
            snprintf(res->error, sizeof res->error, "rewrite check: %s",
                     why[0] ? why : "the recipe names no {files}");
            if (scratch[0])
                kz_rmtree(scratch, NULL, 0);
            return 0;
        }
    }
    const char *cwd = rewrite ? scratch : opts->root;
    char **argv = kz_argv_build(tool->argv, opts->extra_args, opts->project_files, files, nfiles,
                                cwd, NULL, opts->compdb);
    if (!argv) {
        if (scratch[0])
            kz_rmtree(scratch, NULL, 0);
        return -1;
    }
    kz_proc_opts_t po = {0};
    po.argv = (const char *const *)argv;
    po.cwd = cwd;
    po.env_add = (const char *const *)tool->env;
    /* a checker reads the target (its files and its config, which can
       name code to run) in the sandbox, where it can write nothing; a
       rewrite check writes only its scratch copies */
    po.sandbox = rewrite ? KZ_SANDBOX_WRITE : KZ_SANDBOX_READ;
    const char *ro[] = {opts->compdb, NULL};
    po.sandbox_ro = ro;
    po.timeout_ms = tool->timeout_ms > 0 ? tool->timeout_ms : 600000;
    po.out_cap = KZ_RUN_OUT_CAP;
    po.err_cap = KZ_RUN_ERR_CAP;
    po.tick = opts->tick;
    po.tick_arg = opts->tick_arg;
    po.cancel = opts->cancel;
    po.cancel_arg = opts->cancel_arg;
    kz_proc_result_t pr;
    char err[512];
    int rc = kz_proc_run(&po, &pr, err, sizeof err);
    res->duration_us += pr.duration_us;
    int ret = 0;
    if (rc != 0) {
        char *found = kz_proc_which(argv[0]);
        if (!found) {
            res->status = KZ_TOOL_MISSING;
            snprintf(res->error, sizeof res->error,
                     "not installed: tool '%s' needs the program '%s', which is not in PATH "
                     "(`kaizen doctor` lists the tools and how to install them)",
                     tool->name, argv[0]);
        } else {
            res->status = KZ_TOOL_ERROR;
            snprintf(res->error, sizeof res->error, "%s", err);
        }
        free(found);
        goto done;
    }
    if (pr.cancelled) {
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "stopped: the result is no longer wanted");
        goto done;
    }
    if (pr.timed_out) {
        res->status = KZ_TOOL_TIMEOUT;
        snprintf(res->error, sizeof res->error, "timed out after %d ms (tools[].timeout)",
                 po.timeout_ms);
        goto done;
    }
    if (pr.term_signal) {
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "killed by signal %d", pr.term_signal);
        goto done;
    }
    if (s_python_module_missing(argv, &pr)) {
        res->status = KZ_TOOL_MISSING;
        snprintf(res->error, sizeof res->error,
                 "not installed: tool '%s' needs the python module '%s', which '%s' cannot "
                 "import (`kaizen doctor` lists the tools and how to install them)",
                 tool->name, kz_argv_python_module(argv, 0), argv[0]);
        goto done;
    }
    if (!kz_tool_exit_ok(tool, pr.exit_code)) {
        char line[320];
        s_first_line(pr.err, pr.err_len, line, sizeof line);
        if (!line[0])
            s_first_line(pr.out, pr.out_len, line, sizeof line);
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "exit %d: %s", pr.exit_code,
                 line[0] ? line : "(no output)");
        goto done;
    }
    if (pr.out_truncated) {
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "output larger than %u bytes: not parsed",
                 KZ_RUN_OUT_CAP);
        goto done;
    }
    if (rewrite) {
        kz_findings_t found;
        kz_findings_init(&found);
        if (s_rewrite_findings(tool, opts->root, scratch, files, nfiles, &found) != 0 ||
            kz_findings_classify(&found, tool) != 0)
            ret = -1;
        else {
            kz_findings_fingerprint(&found, opts->root);
            res->stats.parsed += found.count;
            if (kz_findings_move(out, &found) != 0)
                ret = -1;
        }
        kz_findings_free(&found);
        goto done;
    }
    /* stdout then stderr: tools differ in where they write findings */
    size_t total = pr.out_len + 1 + pr.err_len;
    char *text = malloc(total + 1);
    if (!text) {
        ret = -1;
        goto done;
    }
    memcpy(text, pr.out, pr.out_len);
    text[pr.out_len] = '\n';
    memcpy(text + pr.out_len + 1, pr.err, pr.err_len);
    text[total] = '\0';
    /* JSON formats: the document is on stdout alone */
    bool json = strcmp(tool->format, "sarif") == 0 || strcmp(tool->format, "pylint-json") == 0;
    kz_parse_ctx_t ctx = {tool->name, opts->root, filtered ? files : NULL, filtered ? nfiles : 0};
    kz_findings_t found;
    kz_findings_init(&found);
    kz_parse_stats_t st;
    char perr[400];
    /* the ctx files list must be NULL-terminated: FILES is a slice, so copy it */
    const char **slice = NULL;
    if (filtered) {
        slice = calloc(nfiles + 1, sizeof *slice);
        if (!slice) {
            free(text);
            ret = -1;
            goto done;
        }
        memcpy(slice, files, nfiles * sizeof *slice);
        ctx.files = slice;
    }
    if (kz_parse_output(tool->format, text, json ? pr.out_len : total, &ctx, &found, &st, perr,
                        sizeof perr) != 0) {
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "output not understood: %s", perr);
    } else if (kz_findings_classify(&found, tool) != 0) {
        ret = -1;
    } else {
        kz_findings_fingerprint(&found, opts->root);
        if (kz_findings_move(out, &found) != 0)
            ret = -1;
    }
    res->stats.lines += st.lines;
    res->stats.parsed += st.parsed;
    res->stats.skipped += st.skipped;
    res->stats.outside += st.outside;
    kz_findings_free(&found);
    free(slice);
    free(text);
done:
    kz_proc_result_free(&pr);
    kz_strv_free(argv);
    if (scratch[0])
        kz_rmtree(scratch, NULL, 0);
    return ret;
}

int kz_tool_run(const kz_tool_config_t *tool, const kz_tool_run_opts_t *opts, kz_findings_t *out,
                kz_tool_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->status = KZ_TOOL_OK;
    if (!tool || !opts || !opts->root || !tool->argv || !tool->argv[0] || !tool->format) {
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "tool '%s': incomplete recipe (argv, format)",
                 tool && tool->name ? tool->name : "?");
        return 0;
    }
    struct stat st;
    if (stat(opts->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        res->status = KZ_TOOL_ERROR;
        snprintf(res->error, sizeof res->error, "cannot run in '%.300s': %s", opts->root,
                 errno ? strerror(errno) : "not a directory");
        kz_warn("tool '%s': %s", tool->name, res->error);
        return 0;
    }
    errno = 0;
    bool with_files = s_has_files_arg(tool);
    if (!with_files) {
        int rc = s_run_batch(tool, opts, NULL, 0, false, out, res);
        if (res->status != KZ_TOOL_OK)
            kz_warn("tool '%s' in '%s': %s", tool->name, opts->root, res->error);
        return rc;
    }
    /* the files that are safe to hand over */
    size_t n = 0;
    while (opts->files && opts->files[n] && (opts->nfiles == 0 || n < opts->nfiles))
        n++;
    const char **ok = calloc(n + 1, sizeof *ok);
    if (!ok)
        return -1;
    size_t nok = 0;
    for (size_t i = 0; i < n; i++) {
        char why[512];
        /* a name starting with '-' is checked too: it goes in as "./NAME" */
        if (kz_path_inside(opts->root, opts->files[i], why, sizeof why))
            ok[nok++] = opts->files[i];
        else
            kz_warn("tool '%s': file skipped: %s", tool->name, why);
    }
    /* a batch that fails (a crash on one file) does not stop the others;
       a missing program or a timeout does: the next batch would fail alike */
    int rc = 0;
    size_t per = tool->batch > 0 && !opts->project_files ? (size_t)tool->batch : nok;
    for (size_t i = 0;
         i < nok && rc == 0 && res->status != KZ_TOOL_MISSING && res->status != KZ_TOOL_TIMEOUT;) {
        /* a batch: up to PER files and KZ_RUN_ARG_BYTES of arguments */
        size_t k = 0, bytes = 0;
        while (
            i + k < nok && k < per &&
            (k == 0 || opts->project_files || bytes + strlen(ok[i + k]) + 1 <= KZ_RUN_ARG_BYTES)) {
            bytes += strlen(ok[i + k]) + 1;
            k++;
        }
        kz_tool_result_t one;
        memset(&one, 0, sizeof one);
        one.status = KZ_TOOL_OK;
        rc = s_run_batch(tool, opts, ok + i, k, true, out, &one);
        res->duration_us += one.duration_us;
        res->stats.lines += one.stats.lines;
        res->stats.parsed += one.stats.parsed;
        res->stats.skipped += one.stats.skipped;
        res->stats.outside += one.stats.outside;
        if (one.status != KZ_TOOL_OK && res->status == KZ_TOOL_OK) {
            res->status = one.status;
            memcpy(res->error, one.error, sizeof res->error);
        } else if (one.status == KZ_TOOL_MISSING || one.status == KZ_TOOL_TIMEOUT) {
            res->status = one.status; /* stop, and say why */
            memcpy(res->error, one.error, sizeof res->error);
        }
        i += k;
    }
    if (res->status != KZ_TOOL_OK)
        kz_warn("tool '%s' in '%s': %s", tool->name, opts->root, res->error);
    free(ok);
    return rc;
}
