/*  kz_compdb.c - a compile database for the C tools of a worktree

    See kz_compdb.h. The database is always written into a scratch
    directory of kaizen's (STATE/compdb/db.XXXXXX), whatever its origin,
    so a tool reads one with absolute paths and nothing is left in the
    target's tree.
*/
#include "kz_compdb.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_log.h"
#include "kz_proc.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define KZ_COMPDB_MAX        (64u << 20) /* bytes of a compile_commands.json read */
#define KZ_COMPDB_TIMEOUT_MS (10 * 60 * 1000)

struct kz_compdb_t {
    char scratch[PATH_MAX]; /* "" when none was made */
    char dir[PATH_MAX * 2]; /* holds compile_commands.json; "" when there is none */
    const char *how;
    char error[512];
};

__attribute__((format(printf, 2, 3))) static int s_fail(kz_compdb_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    self->dir[0] = '\0';
    return -1;
}

static bool s_exists(const char *root, const char *rel)
{
    char path[PATH_MAX * 2];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return kz_path_inside(root, rel, NULL, 0) && lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ------------------------------------------------------------ commands */

/* The first line of TEXT that names an error, else its first non-empty
   line, at most 300 bytes, into OUT */
static void s_error_line(const char *text, char *out, size_t len)
{
    out[0] = '\0';
    if (!text)
        return;
    const char *pick = NULL;
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\r\n");
        bool blank = strspn(p, " \t") >= n;
        if (!blank && !pick)
            pick = p;
        if (!blank && (memmem(p, n, "Error", 5) || memmem(p, n, "error", 5))) {
            pick = p;
            break;
        }
        p += n;
        p += strspn(p, "\r\n");
    }
    if (!pick)
        return;
    size_t n = strcspn(pick, "\r\n");
    snprintf(out, len, "%.*s", (int)(n > 300 ? 300 : n), pick);
}

/* Run ARGV in CWD. 0 when it exited 0 (or - OK_ANY_EXIT - exited at all),
   -1 with the error set to WHAT and why */
static int s_run(kz_compdb_t *self, const kz_compdb_opts_t *opts, const char *what,
                 const char *const *argv, const char *cwd, bool ok_any_exit, bool sandboxed)
{
    char err[512], line[320];
    kz_proc_opts_t po = {0};
    po.argv = argv;
    po.cwd = cwd;
    /* the build is the project's code: in the sandbox, reading the
       worktree and writing the scratch directory only */
    const char *ro[] = {opts->root, NULL};
    const char *rw[] = {self->scratch, NULL};
    if (sandboxed) {
        if (kz_sandbox_give_tree(self->scratch, err, sizeof err) != 0)
            return s_fail(self, "%s failed: %s", what, err);
        po.sandbox = KZ_SANDBOX_WRITE;
        po.sandbox_ro = ro;
        po.sandbox_rw = rw;
    }
    po.timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : KZ_COMPDB_TIMEOUT_MS;
    po.out_cap = 256u << 10;
    po.err_cap = 256u << 10;
    po.tick = opts->tick;
    po.tick_arg = opts->tick_arg;
    po.cancel = opts->cancel;
    po.cancel_arg = opts->cancel_arg;
    kz_proc_result_t pr;
    int rc = kz_proc_run(&po, &pr, err, sizeof err);
    if (rc != 0)
        s_fail(self, "%s failed: %s", what, err);
    else if (pr.cancelled)
        rc = s_fail(self, "%s stopped: the result is no longer wanted", what);
    else if (pr.timed_out)
        rc = s_fail(self, "%s timed out after %d s", what, po.timeout_ms / 1000);
    else if (pr.term_signal)
        rc = s_fail(self, "%s was killed by signal %d", what, pr.term_signal);
    else if (pr.exit_code != 0 && !ok_any_exit) {
        s_error_line(pr.err, line, sizeof line);
        if (!line[0])
            s_error_line(pr.out, line, sizeof line);
        rc = s_fail(self, "%s failed: exit %d: %s", what, pr.exit_code,
                    line[0] ? line : "(no output)");
    }
    kz_proc_result_free(&pr);
    return rc;
}

/* ------------------------------------------------------------ rewriting */

/* True when an entry's compiler arguments would make a C tool load code */
static bool s_loads_code(const char *arg)
{
    return strstr(arg, "-fplugin") || strstr(arg, "-load") || strstr(arg, "-Xclang") ||
           strstr(arg, "-fpass-plugin");
}

/* S with every FROM replaced by TO (malloc'd), or NULL */
static char *s_replace(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    char *out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = s;;) {
        const char *hit = strstr(p, from);
        if (!hit) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, to, tl);
        o += tl;
        p = hit + fl;
    }
    return out;
}

/* Replace FROM by TO in the string member KEY of OBJ (when FROM is set) */
static int s_fix_member(json_t *obj, const char *key, const char *from, const char *to)
{
    json_t *v = json_object_get(obj, key);
    if (!from || !json_is_string(v))
        return 0;
    char *s = s_replace(json_string_value(v), from, to);
    int rc = s && json_object_set_new(obj, key, json_string(s)) == 0 ? 0 : -1;
    free(s);
    return rc;
}

/* Make ENTRY's directory absolute (relative to ROOT) and, when FROM is
   set, its paths FROM -> ROOT. 1 when the entry is kept, 0 when it is
   dropped (malformed, leaves the root, loads code), -1 out of memory */
static int s_fix_entry(json_t *entry, const char *root, const char *from)
{
    json_t *dir = json_object_get(entry, "directory");
    json_t *cmd = json_object_get(entry, "command");
    json_t *args = json_object_get(entry, "arguments");
    if (!json_is_string(dir) || !json_is_string(json_object_get(entry, "file")) ||
        !(json_is_string(cmd) || json_is_array(args)))
        return 0;
    if (cmd && s_loads_code(json_string_value(cmd)))
        return 0;
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a)
    {
        if (!json_is_string(a) || s_loads_code(json_string_value(a)))
            return 0;
        if (from) {
            char *s = s_replace(json_string_value(a), from, root);
            if (!s || json_array_set_new(args, i, json_string(s)) != 0) {
                free(s);
                return -1;
            }
            free(s);
        }
    }
    if (s_fix_member(entry, "directory", from, root) != 0 ||
        s_fix_member(entry, "file", from, root) != 0 ||
        s_fix_member(entry, "command", from, root) != 0 ||
        s_fix_member(entry, "output", from, root) != 0)
        return -1;
    const char *d = json_string_value(json_object_get(entry, "directory"));
    if (d[0] == '/')
        return 1;
    if (!kz_path_inside(root, d, NULL, 0))
        return 0;
    char abs[PATH_MAX * 2];
    snprintf(abs, sizeof abs, "%s/%s", root, d);
    return json_object_set_new(entry, "directory", json_string(abs)) == 0 ? 1 : -1;
}

/* Read the database IN, keep its usable entries (s_fix_entry) and write
   it to OUT. 0 / -1 with the error set */
static int s_rewrite(kz_compdb_t *self, const char *in, const char *out, const char *root,
                     const char *from)
{
    struct stat st;
    if (stat(in, &st) != 0)
        return s_fail(self, "no compile_commands.json was written");
    if ((size_t)st.st_size > KZ_COMPDB_MAX)
        return s_fail(self, "compile_commands.json is larger than %u bytes", KZ_COMPDB_MAX);
    json_error_t jerr;
    json_t *db = json_load_file(in, 0, &jerr);
    if (!json_is_array(db)) {
        json_decref(db);
        return s_fail(self, "compile_commands.json is not a JSON array: %s", jerr.text);
    }
    json_t *keep = json_array();
    size_t i, dropped = 0;
    json_t *entry;
    int rc = keep ? 0 : -1;
    json_array_foreach(db, i, entry)
    {
        int k = rc == 0 && json_is_object(entry) ? s_fix_entry(entry, root, from) : 0;
        if (k < 0 || (k == 1 && json_array_append(keep, entry) != 0))
            rc = -1;
        dropped += k == 0;
    }
    if (rc != 0)
        s_fail(self, "out of memory");
    else if (json_array_size(keep) == 0)
        rc = s_fail(self, "compile_commands.json has no usable entry (%zu dropped)", dropped);
    else {
        /* never through a symlink in its place (kz_state.h) */
        FILE *f = kz_file_fopen(out, "w", 0600);
        int bad = !f || json_dumpf(keep, f, JSON_INDENT(1)) != 0;
        if (f && fclose(f) != 0)
            bad = 1;
        if (bad)
            rc = s_fail(self, "unable to write '%s': %s", out, strerror(errno));
    }
    if (rc == 0 && dropped)
        kz_warn("compile database of '%s': %zu entries dropped (malformed, outside the tree or "
                "loading compiler plugins)",
                root, dropped);
    json_decref(keep);
    json_decref(db);
    return rc;
}

/* ------------------------------------------------------------ makers */

static int s_from_committed(kz_compdb_t *self, const kz_compdb_opts_t *opts)
{
    char in[PATH_MAX * 2], out[PATH_MAX * 2];
    snprintf(in, sizeof in, "%s/compile_commands.json", opts->root);
    snprintf(out, sizeof out, "%s/compile_commands.json", self->scratch);
    self->how = "committed";
    snprintf(self->dir, sizeof self->dir, "%s", self->scratch);
    return s_rewrite(self, in, out, opts->root, NULL);
}

static int s_from_cmake(kz_compdb_t *self, const kz_compdb_opts_t *opts)
{
    char build[PATH_MAX * 2], in[PATH_MAX * 3];
    snprintf(build, sizeof build, "%s/build", self->scratch);
    snprintf(in, sizeof in, "%s/compile_commands.json", build);
    self->how = "cmake";
    const char *argv[] = {
        "cmake", "-S", opts->root, "-B", build, "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", NULL};
    if (s_run(self, opts, "cmake configure", argv, self->scratch, false, true) != 0)
        return -1;
    snprintf(self->dir, sizeof self->dir, "%s", build);
    /* rewritten in place: the plugin rule holds for a generated one too */
    return s_rewrite(self, in, in, opts->root, NULL);
}

/* make under bear in a copy of the tree: the build's objects land in the
   scratch directory, not in the worktree */
static int s_from_make(kz_compdb_t *self, const kz_compdb_opts_t *opts)
{
    char copy[PATH_MAX * 2], src[PATH_MAX * 2], out[PATH_MAX * 2];
    snprintf(copy, sizeof copy, "%s/src", self->scratch);
    snprintf(src, sizeof src, "%s/.", opts->root);
    snprintf(out, sizeof out, "%s/compile_commands.json", self->scratch);
    self->how = "make";
    const char *cp[] = {"cp", "-a", "--", src, copy, NULL};
    if (s_run(self, opts, "copying the tree for make", cp, self->scratch, false, false) != 0)
        return -1;
    /* -k: files that fail to build still have their commands recorded */
    const char *argv[] = {"bear", "--output", out, "--", "make", "-C", copy, "-k", "-j2", NULL};
    if (s_run(self, opts, "make under bear", argv, copy, true, true) != 0)
        return -1;
    snprintf(self->dir, sizeof self->dir, "%s", self->scratch);
    return s_rewrite(self, out, out, opts->root, copy);
}

kz_compdb_t *kz_compdb_new(const kz_compdb_opts_t *opts)
{
    kz_compdb_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->how = "none";
    char err[512];
    if (!opts || !opts->root || !opts->under) {
        s_fail(self, "no worktree or scratch directory given");
        return self;
    }
    bool committed = s_exists(opts->root, "compile_commands.json");
    bool cmake = s_exists(opts->root, "CMakeLists.txt");
    bool make = s_exists(opts->root, "Makefile") || s_exists(opts->root, "makefile") ||
                s_exists(opts->root, "GNUmakefile");
    if (!committed && !cmake && !make) {
        s_fail(self, "no compile_commands.json, CMakeLists.txt or Makefile at the root");
        return self;
    }
    if (kz_tmpdir_new(opts->under, "db", self->scratch, sizeof self->scratch, err, sizeof err) !=
        0) {
        self->scratch[0] = '\0';
        s_fail(self, "%s", err);
        return self;
    }
    /* the project's build runs in the sandbox as its user, writing only
       the scratch directory */
    if (kz_sandbox_share_dir(self->scratch, err, sizeof err) != 0) {
        s_fail(self, "%s", err);
        return self;
    }
    static bool warned;
    if (!committed && !kz_sandbox_enabled() && geteuid() == 0 && !warned) {
        warned = true;
        kz_warn("making a compile database runs the project's own build code (%s) as root "
                "outside the sandbox (sandbox.enabled: false; docs/sandbox.md)",
                cmake ? "cmake configure" : "make");
    }
    int rc = committed ? s_from_committed(self, opts)
             : cmake   ? s_from_cmake(self, opts)
                       : s_from_make(self, opts);
    /* the tools that read it run as the sandbox's user too */
    if (rc == 0 && kz_sandbox_give_tree(self->scratch, err, sizeof err) != 0)
        rc = s_fail(self, "%s", err);
    if (rc != 0)
        self->how = "none";
    else
        kz_debug("compile database of '%s' (%s) in '%s'", opts->root, self->how, self->dir);
    return self;
}

kz_compdb_t *kz_compdb_for(const kz_config_t *cfg, const char *root, void (*tick)(void *arg),
                           bool (*cancel)(void *arg), void *arg)
{
    char under[PATH_MAX], err[512];
    if (kz_compdb_under(cfg, under, sizeof under, err, sizeof err) != 0) {
        kz_compdb_t *self = calloc(1, sizeof *self);
        if (self) {
            self->how = "none";
            s_fail(self, "%s", err);
        }
        return self;
    }
    kz_compdb_opts_t o = {.root = root,
                          .under = under,
                          .tick = tick,
                          .tick_arg = arg,
                          .cancel = cancel,
                          .cancel_arg = arg};
    return kz_compdb_new(&o);
}

void kz_compdb_destroy(kz_compdb_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_compdb_t *self = *self_p;
    char err[512];
    if (self->scratch[0] && kz_rmtree(self->scratch, err, sizeof err) != 0)
        kz_warn("compile database: %s", err);
    free(self);
    *self_p = NULL;
}

const char *kz_compdb_dir(const kz_compdb_t *self)
{
    return self && self->dir[0] ? self->dir : NULL;
}

const char *kz_compdb_how(const kz_compdb_t *self)
{
    return self && self->dir[0] ? self->how : "none";
}

const char *kz_compdb_error(const kz_compdb_t *self)
{
    return self ? self->error : "out of memory";
}

int kz_compdb_under(const kz_config_t *cfg, char *buf, size_t len, char *errbuf, size_t errlen)
{
    if (kz_state_path(cfg, "compdb", buf, len) != 0) {
        snprintf(errbuf, errlen, "state directory path too long for 'STATE/compdb'");
        return -1;
    }
    return kz_mkdirs(buf, 0700, errbuf, errlen);
}

bool kz_compdb_wanted(char *const *argv, size_t n)
{
    for (size_t i = 0; argv && i < n && argv[i]; i++)
        if (strstr(argv[i], "{compdb}"))
            return true;
    return false;
}

bool kz_compdb_input(const char *path)
{
    static const char *const globs[] = {
        "CMakeLists.txt", "*.cmake", "CMakePresets.json",     "Makefile", "makefile",
        "GNUmakefile",    "*.mk",    "compile_commands.json", NULL,
    };
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; globs[i]; i++)
        if (fnmatch(globs[i], base, 0) == 0)
            return true;
    return false;
}
