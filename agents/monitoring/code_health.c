/*  code_health.c - kaizen-code-health, the monitoring agent that runs the
    configured linters and type checkers on every target

    Each cycle (the interval, or an agent.run naming "code-health"; the
    agent.run's envelope target, when set, limits it to that target), for
    each target:
      1. checks the target is a git repository and resolves
         refs/heads/<branch> to a commit;
      2. checks that commit out in a detached worktree kaizen owns,
         STATE/worktrees/<target>/scan (created once, then moved with
         `git checkout --detach`), so the user's checkout is never touched
         and the tools' caches land there, not in the user's tree;
      2a. answers from the last scan when nothing that decides its result
         changed (s_reuse, after the tools are picked in 3): the same
         commit, an ok last scan (STATE/code-health/<target>.scan.json,
         written only for ok scans), the same tools with the same
         recipe/program/config hashes, and the database holding that
         scan as ok (when it cannot be asked, the record is trusted): one
         scan.completed with that scan's id and reused true, no tool run,
         nothing else published;
      3. lists the files at that commit with their blob ids (`git ls-tree`),
         picks the tools (recipes of the config that apply to the target's
         languages and - tools[].requires - for which the target holds the
         evidence that it chose them) and the files each wants;
      4. incrementally (scan.incremental): the cache
         STATE/code-health/<target>.json remembers, per file, the blob id
         and per tool the findings of that blob, and per tool a hash of
         the recipe, of the program and of the project's tool config
         files. A tool re-runs only on files whose blob changed (or that
         are new, or that it has no result for); the findings of the
         others carry over; deleted files drop out. A changed recipe or
         config file (setup.cfg, .clang-format, ...) re-runs that tool on
         everything. A tool whose argv has no "{files}" checks the whole
         tree: it re-runs when any file it wants changed.
      5. runs the (tool, batch of files) jobs concurrently on up to
         scan.parallelism threads (0 = the number of cores), longest
         first by the durations the cache remembers. The bus is not
         thread-safe: the worker threads only run kz_tool_run; the main
         thread waits and keeps the agent alive on the bus meanwhile;
      6. publishes scan.started, finding.batch (every current finding,
         carried ones included, sorted, scan.batch_size per batch, seq
         from 0), metric.batch (health score and counts) and
         scan.completed (status ok, partial when a tool failed, timed out
         or is missing, failed with an error when the scan could not run).

    Incrementality is per file: tools that check across files (mypy,
    pylint's import checks) may report something new in an unchanged
    file when another file changed; that shows up when the file itself
    changes or a recipe or config file does. docs/code-health.md has the
    details.
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_compdb.h"
#include "kz_finding.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_proc.h"
#include "kz_project.h"
#include "kz_recipe.h"
#include "kz_scope.h"
#include "kz_state.h"
#include "kz_store.h"

#define S_CACHE_VERSION  2            /* 2: findings carry "excluded" */
#define S_MAX_MESSAGE    8192         /* bytes of a finding's message or fix we publish */
#define S_BATCH_BYTES    (512u << 10) /* about this many bytes of findings per finding.batch */
#define S_BATCH_MAX      5000         /* findings per finding.batch whatever scan.batch_size says */
#define S_WAIT_MS        200          /* main thread: keepalive period while tools run */
#define S_GIT_TIMEOUT_MS (10 * 60 * 1000)
#define S_WARNED_MAX     256
#define S_RECORD_VERSION 2     /* 2: its scan's findings carry excluded */
#define S_STORED_WAIT_MS 30000 /* for the recorder to hold a scan we would answer with */

/* Files whose content changes what a tool reports on every file: a
   change to one re-runs the tools on everything (besides the files each
   recipe names in tools[].requires) */
static const char *const s_config_files[] = {
    "setup.cfg",
    "pyproject.toml",
    "tox.ini",
    ".flake8",
    ".pylintrc",
    "pylintrc",
    "mypy.ini",
    ".mypy.ini",
    ".isort.cfg",
    ".clang-format",
    ".clang-tidy",
    ".codespellrc",
    ".shellcheckrc",
    ".editorconfig",
    "compile_commands.json",
    ".pre-commit-config.yaml",
    ".gitmodules",
    NULL,
};

/* Debian packages of the tools kaizen's examples use, for the "missing" hint */
static const struct {
    const char *program;
    const char *package;
} s_packages[] = {
    {"flake8", "flake8"},
    {"pylint", "pylint"},
    {"mypy", "mypy"},
    {"black", "black"},
    {"isort", "isort"},
    {"codespell", "codespell"},
    {"cppcheck", "cppcheck"},
    {"clang-format", "clang-format"},
    {"clang-tidy", "clang-tidy"},
    {"shellcheck", "shellcheck"},
    {"pytest", "python3-pytest"},
    {"bandit", "bandit"},
    {"pydocstyle", "pydocstyle"},
    {"flawfinder", "flawfinder"},
    {"autoflake", "autoflake"},
    {"autopep8", "python3-autopep8"},
    {"pyupgrade", "pyupgrade"},
    {"ruff", "ruff"},
    {"pycodestyle", "pycodestyle"},
    {"pyflakes", "pyflakes3"},
    {"eslint", "eslint"},
    {"git", "git"},
    {NULL, NULL},
};

/* ---------------------------------------------------------------- types */

typedef struct {
    char *path;                /* relative to the target root */
    char blob[KZ_GIT_OID_MAX]; /* git blob id at the scanned commit */
    long loc;                  /* lines, -1 until counted */
    bool scanned;              /* some selected tool wants it */
    bool rescanned;            /* some tool ran on it in this scan */
} s_file_t;

typedef struct {
    s_file_t *items;
    size_t count;
    size_t cap;
} s_tree_t;

typedef struct {
    const kz_tool_config_t *cfg;
    bool skipped;            /* no evidence the target chose it */
    bool missing;            /* the program is not installed */
    bool whole;              /* argv without "{files}", or the project names the files it
                                checks (setup.project_files): one run, cached as a whole */
    kz_tool_setup_t setup;   /* how the project runs it (lib/kz_project.h) */
    kz_tool_status_t status; /* worst job status */
    char error[512];
    char hash[17];   /* recipe + program + config files */
    char digest[17]; /* whole-tree tools: the wanted files and their blobs */
    size_t *wanted;  /* indices into the tree */
    size_t nwanted;
    size_t *work; /* the wanted files it runs on now */
    size_t nwork;
    size_t findings;     /* carried + new */
    int64_t duration_us; /* sum over its jobs */
    size_t ran_files;    /* files of its jobs that finished (any status) */
    double ms_per_file;  /* from the cache: to order the jobs */
} s_tool_t;

typedef struct {
    s_tool_t *tool;
    size_t *idx;        /* tree indices of its files */
    const char **files; /* their paths, NULL-terminated */
    size_t nfiles;
    double est_ms; /* expected duration, to run the longest first */
    size_t seq;    /* creation order: config order, then batch order */
    bool ran;
    int rc;
    kz_findings_t found;
    kz_tool_result_t res;
} s_job_t;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    s_job_t **order; /* jobs, longest first */
    size_t njobs;
    size_t next;    /* next job to hand out */
    size_t running; /* jobs being run */
    bool cancel;    /* the agent is stopping: hand out no more */
    const char *root;
    const char *compdb; /* "{compdb}", or NULL */
    char corr[64];
} s_pool_t;

/* One scan of one target */
typedef struct {
    kz_agent_t *agent;
    const kz_config_t *cfg;
    const kz_target_config_t *target;
    char scan_id[32];
    char commit[KZ_GIT_OID_MAX];
    char wt[4096];
    char cache_path[4096];
    char record_path[4096]; /* the last completed scan, when it was ok ("" unknown) */
    int64_t t0_us;
    bool started; /* scan.started published */
    s_tree_t tree;
    s_tool_t *tools;
    size_t ntools;
    s_job_t *jobs;
    size_t njobs;
    json_t *old;           /* the previous cache, or NULL */
    json_t *old_files;     /* its "files" object, or NULL */
    json_t *old_tools;     /* its "tools" object, or NULL */
    kz_project_t *project; /* the project's tool settings, or NULL */
    json_t *unrun;         /* tools it chose that no recipe runs: [{name, note}] */
    kz_findings_t all;
    kz_scope_t *scope; /* which files are the project's own */
    size_t nscanned;
    size_t nrescanned;
    long loc;
    kz_compdb_t *compdb; /* made for the tools that want one, removed after the scan */
    char error[1024];
} s_scan_t;

/* Things logged once per process: missing programs, skipped tools */
static char *s_warned[S_WARNED_MAX];
static size_t s_nwarned;

/* True the first time KEY is seen */
static bool s_first_time(const char *key)
{
    for (size_t i = 0; i < s_nwarned; i++)
        if (strcmp(s_warned[i], key) == 0)
            return false;
    if (s_nwarned < S_WARNED_MAX) {
        s_warned[s_nwarned] = strdup(key);
        if (s_warned[s_nwarned])
            s_nwarned++;
    }
    return true;
}

/* ------------------------------------------------------------- helpers */

/* snprintf into an error buffer (truncating quietly: messages only) */
__attribute__((format(printf, 3, 4))) static void s_errf(char *buf, size_t len, const char *fmt,
                                                         ...)
{
    if (!buf || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* FNV-1a, 64 bits: a change detector for the cache, not a security hash */
typedef struct {
    uint64_t h;
} s_fnv_t;

static void s_fnv_init(s_fnv_t *f)
{
    f->h = 1469598103934665603ULL;
}

static void s_fnv_add(s_fnv_t *f, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        f->h ^= p[i];
        f->h *= 1099511628211ULL;
    }
}

/* A string and its terminator (so "ab","c" and "a","bc" differ); NULL
   hashes differently from "" */
static void s_fnv_str(s_fnv_t *f, const char *s)
{
    if (s)
        s_fnv_add(f, s, strlen(s) + 1);
    else
        s_fnv_add(f, "\xff", 1);
}

static void s_fnv_strv(s_fnv_t *f, char *const *v, size_t n)
{
    char count[32];
    snprintf(count, sizeof count, "%zu", n);
    s_fnv_str(f, count);
    for (size_t i = 0; i < n && v; i++)
        s_fnv_str(f, v[i]);
}

static void s_fnv_hex(const s_fnv_t *f, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, f->h);
}

/* Replace every byte that is not part of valid UTF-8 with '?', in place
   (tool output is untrusted; the codec refuses invalid UTF-8) */
static void s_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (p && *p) {
        size_t n = 0;
        uint32_t cp = 0;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xe0) == 0xc0) {
            n = 1;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            n = 2;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            n = 3;
            cp = *p & 0x07;
        } else {
            *p++ = '?';
            continue;
        }
        size_t i = 1;
        for (; i <= n && (p[i] & 0xc0) == 0x80; i++)
            cp = (cp << 6) | (p[i] & 0x3f);
        bool ok = i == n + 1 && !(n == 1 && cp < 0x80) && !(n == 2 && cp < 0x800) &&
                  !(n == 3 && cp < 0x10000) && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        if (ok) {
            p += n + 1;
        } else {
            *p++ = '?';
        }
    }
}

static bool s_utf8_valid(const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return false;
    s_utf8_fix(copy);
    bool same = strcmp(copy, s) == 0;
    free(copy);
    return same;
}

/* Cut S to at most MAX bytes without splitting a UTF-8 sequence */
static void s_utf8_cut(char *s, size_t max)
{
    if (!s || strlen(s) <= max)
        return;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    s[n] = '\0';
}

/* A target name we can use as a directory name and a file name */
static bool s_name_ok(const char *name)
{
    if (!name || !*name || name[0] == '.' || strlen(name) > 128)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

/* Lines in ROOT/REL (0 for a binary file: a NUL in its first 8 KiB) */
static long s_count_lines(const char *root, const char *rel)
{
    char path[8192];
    if (snprintf(path, sizeof path, "%s/%s", root, rel) >= (int)sizeof path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    char buf[65536];
    long lines = 0;
    bool first = true, binary = false;
    char last = '\n';
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (first && memchr(buf, '\0', (size_t)(n < 8192 ? n : 8192))) {
            binary = true;
            break;
        }
        first = false;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n')
                lines++;
        last = buf[n - 1];
    }
    close(fd);
    if (binary)
        return 0;
    return lines + (last != '\n' ? 1 : 0);
}

/* The Debian package that ships PROGRAM, or NULL */
static const char *s_package_of(const char *program)
{
    const char *base = strrchr(program, '/');
    base = base ? base + 1 : program;
    for (size_t i = 0; s_packages[i].program; i++)
        if (strcmp(s_packages[i].program, base) == 0)
            return s_packages[i].package;
    return NULL;
}

/* ---------------------------------------------------------------- tree */

static void s_tree_free(s_tree_t *tree)
{
    for (size_t i = 0; i < tree->count; i++)
        free(tree->items[i].path);
    free(tree->items);
    memset(tree, 0, sizeof *tree);
}

static int s_file_cmp(const void *a, const void *b)
{
    return strcmp(((const s_file_t *)a)->path, ((const s_file_t *)b)->path);
}

/* Index of PATH in TREE (sorted), or -1 */
static long s_tree_find(const s_tree_t *tree, const char *path)
{
    size_t lo = 0, hi = tree->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(tree->items[mid].path, path);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The files tracked at COMMIT (kz_git_ls_files) with their blob ids
   (`git ls-tree -r -z`: "MODE TYPE OID\tPATH\0"). Symbolic links (a tool
   would follow one anywhere) and paths that are not UTF-8 (the bus
   carries only UTF-8) are left out. A file whose blob id is unknown (the
   ls-tree output was cut at kz_git's cap) keeps an empty one: it is
   re-checked on every scan. 0 / -1 with ERRBUF */
static int s_tree_load(const char *repo, const char *commit, s_tree_t *tree, char *errbuf,
                       size_t errlen)
{
    char **paths = NULL;
    size_t npaths = 0, skipped = 0;
    if (kz_git_ls_files(repo, commit, &paths, &npaths, errbuf, errlen) != 0)
        return -1;
    tree->items = calloc(npaths ? npaths : 1, sizeof *tree->items);
    if (!tree->items)
        goto oom;
    tree->cap = npaths;
    for (size_t i = 0; i < npaths; i++) {
        if (!s_utf8_valid(paths[i]) || strlen(paths[i]) > 4096) {
            skipped++;
            continue;
        }
        s_file_t *f = &tree->items[tree->count++];
        f->path = paths[i];
        paths[i] = NULL; /* moved */
        f->loc = -1;
    }
    kz_git_strv_free(paths);
    paths = NULL;
    if (tree->count)
        qsort(tree->items, tree->count, sizeof *tree->items, s_file_cmp);
    if (skipped && s_first_time(repo))
        kz_warn("%zu files of '%s' have names that are not UTF-8 or are too long: not scanned",
                skipped, repo);

    const char *args[] = {"ls-tree", "-r", "-z", "--full-tree", commit, NULL};
    char *out = NULL;
    if (kz_git(repo, args, S_GIT_TIMEOUT_MS, &out, errbuf, errlen) != 0)
        return -1;
    /* records end with a NUL; the capture's terminating NUL follows the last */
    for (char *rec = out; *rec; rec += strlen(rec) + 1) {
        const char *tab = strchr(rec, '\t');
        char mode[16], type[16], oid[KZ_GIT_OID_MAX];
        if (!tab || sscanf(rec, "%15s %15s %64s", mode, type, oid) != 3)
            continue;
        long k = s_tree_find(tree, tab + 1);
        if (k < 0)
            continue;
        if (strcmp(mode, "120000") == 0)
            tree->items[k].blob[0] = '-'; /* a symlink: dropped below */
        else
            snprintf(tree->items[k].blob, sizeof tree->items[k].blob, "%s", oid);
    }
    free(out);
    size_t kept = 0, unknown = 0;
    for (size_t i = 0; i < tree->count; i++) {
        s_file_t *f = &tree->items[i];
        if (f->blob[0] == '-') {
            free(f->path);
            continue;
        }
        unknown += f->blob[0] == '\0';
        tree->items[kept++] = *f;
    }
    tree->count = kept;
    if (unknown && s_first_time("unknown blobs"))
        kz_warn("%zu files of '%s' have no blob id (too many files for one git ls-tree): they "
                "are re-checked on every scan",
                unknown, repo);
    return 0;
oom:
    kz_git_strv_free(paths);
    s_errf(errbuf, errlen, "out of memory listing the files of '%s'", repo);
    return -1;
}

/* ---------------------------------------------------------------- cache */

/* The previous scan's cache of S, when usable; NULL otherwise */
static json_t *s_cache_load(s_scan_t *s)
{
    json_error_t jerr;
    if (access(s->cache_path, F_OK) != 0)
        return NULL;
    json_t *root = json_load_file(s->cache_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        kz_warn("ignoring the scan cache '%s': %s (line %d): a full scan follows", s->cache_path,
                jerr.text, jerr.line);
        return NULL;
    }
    const char *path = json_string_value(json_object_get(root, "path"));
    if (json_integer_value(json_object_get(root, "version")) != S_CACHE_VERSION ||
        !json_is_object(json_object_get(root, "files")) ||
        !json_is_object(json_object_get(root, "tools")) || !path) {
        kz_warn("ignoring the scan cache '%s': not a version %d cache: a full scan follows",
                s->cache_path, S_CACHE_VERSION);
        json_decref(root);
        return NULL;
    }
    if (strcmp(path, s->target->path) != 0) {
        kz_info("target '%s' moved from '%s' to '%s': a full scan follows", s->target->name, path,
                s->target->path);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Write ROOT to PATH atomically (temporary file + rename). 0 / -1 */
static int s_cache_save(const char *path, json_t *root)
{
    char tmp[4200];
    s_errf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = kz_file_fopen(tmp, "w", 0600);
    int bad = !f || json_dumpf(root, f, JSON_COMPACT) != 0;
    if (f && fclose(f) != 0)
        bad = 1;
    if (bad) {
        unlink(tmp);
        return kz_fail("unable to write the scan cache '%s'", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return kz_fail("unable to rename '%s' to '%s': %s", tmp, path, strerror(e));
    }
    return 0;
}

/* A finding as kept in the cache (FILE only for whole-tree tools) */
static json_t *s_finding_json(const kz_finding_t *f, bool with_file)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = json_object_set_new(o, "rule", json_string(f->rule ? f->rule : ""));
    rc |= json_object_set_new(o, "severity", json_string(f->severity ? f->severity : "low"));
    rc |= json_object_set_new(o, "category", json_string(f->category ? f->category : "style"));
    rc |= json_object_set_new(o, "line", json_integer(f->line));
    rc |= json_object_set_new(o, "col", json_integer(f->col));
    rc |= json_object_set_new(o, "message", json_string(f->message ? f->message : ""));
    rc |= json_object_set_new(o, "fingerprint", json_string(f->fingerprint));
    if (f->fix)
        rc |= json_object_set_new(o, "fix", json_string(f->fix));
    if (f->excluded)
        rc |= json_object_set_new(o, "excluded", json_string(f->excluded));
    if (with_file)
        rc |= json_object_set_new(o, "file", json_string(f->file ? f->file : ""));
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Append the cached findings ARR of TOOL (in FILE, or each one's own
   file when FILE is NULL) to OUT. Returns how many, -1 on a malformed
   entry or out of memory */
static long s_findings_from_json(const json_t *arr, const char *tool, const char *file,
                                 kz_findings_t *out)
{
    size_t i;
    const json_t *o;
    long n = 0;
    if (!json_is_array(arr))
        return -1;
    json_array_foreach(arr, i, o)
    {
        kz_finding_t f;
        memset(&f, 0, sizeof f);
        const char *fp = json_string_value(json_object_get(o, "fingerprint"));
        f.tool = (char *)tool;
        f.rule = (char *)json_string_value(json_object_get(o, "rule"));
        f.severity = (char *)json_string_value(json_object_get(o, "severity"));
        f.category = (char *)json_string_value(json_object_get(o, "category"));
        f.file = (char *)(file ? file : json_string_value(json_object_get(o, "file")));
        f.line = (int)json_integer_value(json_object_get(o, "line"));
        f.col = (int)json_integer_value(json_object_get(o, "col"));
        f.message = (char *)json_string_value(json_object_get(o, "message"));
        f.fix = (char *)json_string_value(json_object_get(o, "fix"));
        f.excluded = (char *)json_string_value(json_object_get(o, "excluded"));
        if (!f.rule || !f.severity || !f.category || !f.file || !*f.file || !f.message || !fp ||
            strlen(fp) > KZ_FINGERPRINT_LEN)
            return -1;
        snprintf(f.fingerprint, sizeof f.fingerprint, "%s", fp);
        if (kz_findings_add(out, &f) != 0)
            return -1;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- tools */

static void s_tools_free(s_scan_t *s)
{
    for (size_t i = 0; i < s->ntools; i++) {
        free(s->tools[i].wanted);
        free(s->tools[i].work);
        kz_tool_setup_clear(&s->tools[i].setup);
    }
    free(s->tools);
    s->tools = NULL;
    s->ntools = 0;
}

static bool s_argv_has_files(const kz_tool_config_t *tool)
{
    for (size_t i = 0; i < tool->argv_count; i++)
        if (strcmp(tool->argv[i], "{files}") == 0)
            return true;
    return false;
}

/* Every .gitattributes of TREE, at any depth: they decide which findings
   are set aside (kz_scope), which the cache keeps with the findings */
static void s_fnv_gitattributes(s_fnv_t *f, const s_tree_t *tree)
{
    for (size_t i = 0; i < tree->count; i++) {
        const char *p = tree->items[i].path;
        const char *slash = strrchr(p, '/');
        if (strcmp(slash ? slash + 1 : p, ".gitattributes") == 0) {
            s_fnv_str(f, p);
            s_fnv_str(f, tree->items[i].blob);
        }
    }
}

/* The hash that decides whether a tool's cached results still hold: its
   recipe, its program (path, size, mtime: an upgrade re-runs it) and the
   blobs of the project's config files it may read */
static void s_tool_hash(const s_scan_t *s, s_tool_t *t)
{
    const kz_tool_config_t *c = t->cfg;
    s_fnv_t f;
    s_fnv_init(&f);
    s_fnv_str(&f, c->name);
    s_fnv_strv(&f, c->languages, c->languages_count);
    s_fnv_strv(&f, c->files, c->files_count);
    s_fnv_strv(&f, c->argv, c->argv_count);
    s_fnv_str(&f, c->format);
    s_fnv_str(&f, c->category);
    s_fnv_str(&f, c->severity);
    for (size_t i = 0; i < c->rules_count; i++) {
        s_fnv_str(&f, c->rules[i].match);
        s_fnv_str(&f, c->rules[i].severity);
        s_fnv_str(&f, c->rules[i].category);
    }
    s_fnv_strv(&f, c->requires, c->requires_count);
    s_fnv_str(&f, c->gate);
    s_fnv_strv(&f, c->exclude, c->exclude_count);
    s_fnv_strv(&f, c->ignore, c->ignore_count);
    s_fnv_str(&f, c->min_severity);
    s_fnv_strv(&f, c->exit_ok, c->exit_ok_count);
    s_fnv_strv(&f, c->env, c->env_count);
    /* how the project runs it: its args, its files, the installed version
       against its pin */
    s_fnv_strv(&f, t->setup.args, t->setup.args_count);
    s_fnv_str(&f, t->setup.project_files ? "project-files" : "files");
    s_fnv_str(&f, t->setup.hook && t->setup.hook->files ? t->setup.hook->files : "-");
    s_fnv_str(&f, t->setup.hook && t->setup.hook->exclude ? t->setup.hook->exclude : "-");
    s_fnv_str(&f, t->setup.differs);
    char *prog = c->argv_count ? kz_proc_which(c->argv[0]) : NULL;
    struct stat st;
    if (prog && stat(prog, &st) == 0) {
        char id[128];
        snprintf(id, sizeof id, "%lld:%lld:%ld", (long long)st.st_size, (long long)st.st_mtime,
                 (long)st.st_mtim.tv_nsec);
        s_fnv_str(&f, prog);
        s_fnv_str(&f, id);
    }
    free(prog);
    for (size_t i = 0; s_config_files[i]; i++) {
        long k = s_tree_find(&s->tree, s_config_files[i]);
        s_fnv_str(&f, k >= 0 ? s->tree.items[k].blob : "-");
    }
    /* the compile database's identity: the build files it is made from */
    for (size_t k = 0; kz_compdb_wanted(c->argv, c->argv_count) && k < s->tree.count; k++)
        if (kz_compdb_input(s->tree.items[k].path)) {
            s_fnv_str(&f, s->tree.items[k].path);
            s_fnv_str(&f, s->tree.items[k].blob);
        }
    s_fnv_gitattributes(&f, &s->tree);
    for (size_t i = 0; i < c->requires_count; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s", c->requires[i]);
        char *colon = strchr(file, ':');
        if (colon)
            *colon = '\0';
        long k = s_tree_find(&s->tree, file);
        s_fnv_str(&f, file);
        s_fnv_str(&f, k >= 0 ? s->tree.items[k].blob : "-");
    }
    for (size_t i = 0; i < c->settings_count; i++) {
        long k = s_tree_find(&s->tree, c->settings[i]);
        s_fnv_str(&f, c->settings[i]);
        s_fnv_str(&f, k >= 0 ? s->tree.items[k].blob : "-");
    }
    s_fnv_hex(&f, t->hash);
}

/* How S's project runs T (its hook's args and files, its settings, its
   pin); what was refused is logged once. 0 / -1 (out of memory) */
static int s_tool_setup(s_scan_t *s, s_tool_t *t)
{
    if (kz_project_setup(s->project, t->cfg, &t->setup) != 0)
        return -1;
    char key[1200];
    snprintf(key, sizeof key, "refused\n%s\n%s\n%.600s", s->target->name, t->cfg->name,
             t->setup.refused);
    if (t->setup.refused[0] && s_first_time(key))
        kz_warn("tool '%s' on target '%s': %s", t->cfg->name, s->target->name, t->setup.refused);
    snprintf(key, sizeof key, "pin\n%s\n%s\n%s", s->target->name, t->cfg->name, t->setup.differs);
    if (t->setup.differs[0] && s_first_time(key))
        kz_warn("tool '%s' on target '%s': %s: its findings are shown but not planned",
                t->cfg->name, s->target->name, t->setup.differs);
    return 0;
}

/* Read the tool settings of S's project from the worktree, and the tools
   it chose that no recipe runs. A project whose settings cannot be read
   is scanned with the recipes alone (said once). 0 / -1 (out of memory) */
static int s_project_load(s_scan_t *s)
{
    char err[512];
    s->project = kz_project_load(s->wt, err, sizeof err);
    if (!s->project)
        kz_warn("target '%s': its tool settings are not used: %s", s->target->name, err);
    const char *problems = kz_project_problems(s->project);
    char key[2200];
    snprintf(key, sizeof key, "settings\n%s\n%s", s->target->name, problems);
    if (problems[0] && s_first_time(key))
        kz_warn("target '%s': tool settings not read: %s", s->target->name, problems);
    s->unrun = kz_project_unrun(s->project, s->cfg);
    if (!s->unrun)
        return -1;
    size_t i;
    const json_t *u;
    json_array_foreach(s->unrun, i, u)
    {
        snprintf(key, sizeof key, "unrun\n%s\n%s", s->target->name,
                 json_string_value(json_object_get(u, "name")));
        if (s_first_time(key))
            kz_warn("target '%s': %s", s->target->name,
                    json_string_value(json_object_get(u, "note")));
    }
    return 0;
}

/* Choose the tools of the config for S's target and the files each
   wants. 0 / -1 (out of memory) */
static int s_tools_pick(s_scan_t *s)
{
    const kz_config_t *cfg = s->cfg;
    s->tools = calloc(cfg->tools_count ? cfg->tools_count : 1, sizeof *s->tools);
    if (!s->tools)
        return -1;
    for (size_t i = 0; i < cfg->tools_count; i++) {
        const kz_tool_config_t *c = &cfg->tools[i];
        if (!kz_tool_applies(c, s->target->languages)) {
            kz_debug("tool '%s' does not apply to target '%s' (languages)", c->name,
                     s->target->name);
            continue;
        }
        s_tool_t *t = &s->tools[s->ntools++];
        t->cfg = c;
        t->status = KZ_TOOL_OK;
        char which[1024] = "";
        if (!kz_tool_chosen(c, s->wt, which, sizeof which)) {
            t->skipped = true;
            char key[600];
            snprintf(key, sizeof key, "skip\n%s\n%s", s->target->name, c->name);
            if (s_first_time(key))
                kz_info("tool '%s' skipped on target '%s': no evidence the project chose it (%s "
                        "in its tree)",
                        c->name, s->target->name, which[0] ? which : "no requires entry");
            s_errf(t->error, sizeof t->error, "no evidence the project chose it (%s in its tree)",
                   which[0] ? which : "no requires entry");
            continue;
        }
        char *prog = c->argv_count ? kz_proc_which(c->argv[0]) : NULL;
        if (!prog) {
            const char *pkg = c->argv_count ? s_package_of(c->argv[0]) : NULL;
            t->missing = true;
            t->status = KZ_TOOL_MISSING;
            s_errf(t->error, sizeof t->error, "not installed: '%s' not found in PATH%s%s%s",
                   c->argv_count ? c->argv[0] : "", pkg ? " (Debian package " : "", pkg ? pkg : "",
                   pkg ? ")" : "");
            char key[600];
            snprintf(key, sizeof key, "missing\n%s", c->name);
            if (s_first_time(key))
                kz_warn("tool '%s' is %s; its findings are missing from every scan until it is "
                        "installed, the other tools still run",
                        c->name, t->error);
        }
        free(prog);
        if (s_tool_setup(s, t) != 0)
            return -1;
        t->whole = !s_argv_has_files(c) || t->setup.project_files;
        t->wanted = malloc((s->tree.count ? s->tree.count : 1) * sizeof *t->wanted);
        if (!t->wanted)
            return -1;
        for (size_t k = 0; k < s->tree.count; k++)
            if (kz_tool_wants(c, s->tree.items[k].path) &&
                kz_tool_setup_wants(&t->setup, s->tree.items[k].path)) {
                t->wanted[t->nwanted++] = k;
                s->tree.items[k].scanned = true;
            }
        s_tool_hash(s, t);
        s_fnv_t f;
        s_fnv_init(&f);
        for (size_t k = 0; k < t->nwanted; k++) {
            s_fnv_str(&f, s->tree.items[t->wanted[k]].path);
            s_fnv_str(&f, s->tree.items[t->wanted[k]].blob);
        }
        s_fnv_hex(&f, t->digest);
    }
    return 0;
}

/* Decide what T re-runs and carry over the rest of its findings from the
   cache into S->all. 0 / -1 (out of memory) */
static int s_tool_plan(s_scan_t *s, s_tool_t *t)
{
    t->work = malloc((t->nwanted ? t->nwanted : 1) * sizeof *t->work);
    if (!t->work)
        return -1;
    const json_t *cached = s->old_tools ? json_object_get(s->old_tools, t->cfg->name) : NULL;
    const char *old_hash = json_string_value(json_object_get(cached, "hash"));
    bool same = s->cfg->scan.incremental && old_hash && strcmp(old_hash, t->hash) == 0;
    json_int_t old_ms = json_integer_value(json_object_get(cached, "ms"));
    json_int_t old_files = json_integer_value(json_object_get(cached, "files"));
    t->ms_per_file = old_files > 0 ? (double)old_ms / (double)old_files : -1;
    if (t->missing)
        return 0;

    if (t->whole) {
        const char *old_digest = json_string_value(json_object_get(cached, "digest"));
        const json_t *arr = json_object_get(cached, "findings");
        if (same && old_digest && strcmp(old_digest, t->digest) == 0 && json_is_array(arr)) {
            long n = s_findings_from_json(arr, t->cfg->name, NULL, &s->all);
            if (n >= 0) {
                t->findings = (size_t)n;
                return 0;
            }
            kz_warn("scan cache of '%s': malformed findings of '%s': running it again",
                    s->target->name, t->cfg->name);
        }
        memcpy(t->work, t->wanted, t->nwanted * sizeof *t->work);
        t->nwork = t->nwanted;
        return 0;
    }

    for (size_t k = 0; k < t->nwanted; k++) {
        const s_file_t *file = &s->tree.items[t->wanted[k]];
        const json_t *entry =
            same && s->old_files ? json_object_get(s->old_files, file->path) : NULL;
        const char *blob = json_string_value(json_object_get(entry, "blob"));
        const json_t *arr = json_object_get(json_object_get(entry, "findings"), t->cfg->name);
        if (blob && file->blob[0] && strcmp(blob, file->blob) == 0 && arr) {
            size_t before = s->all.count;
            long n = s_findings_from_json(arr, t->cfg->name, file->path, &s->all);
            if (n >= 0) {
                t->findings += (size_t)n;
                continue;
            }
            /* drop what a malformed entry half-added: the tool runs again */
            while (s->all.count > before) {
                s->all.count--;
                kz_finding_clear(&s->all.items[s->all.count]);
            }
        }
        t->work[t->nwork++] = t->wanted[k];
    }
    return 0;
}

/* Split every tool's work into jobs (tools[].batch files each) */
static int s_jobs_make(s_scan_t *s)
{
    size_t max = 0;
    for (size_t i = 0; i < s->ntools; i++) {
        const s_tool_t *t = &s->tools[i];
        if (t->skipped || t->missing || !t->nwork)
            continue;
        size_t b = t->cfg->batch > 0 && !t->whole ? (size_t)t->cfg->batch : t->nwork;
        max += (t->nwork + b - 1) / b;
    }
    s->jobs = calloc(max ? max : 1, sizeof *s->jobs);
    if (!s->jobs)
        return -1;
    for (size_t i = 0; i < s->ntools; i++) {
        s_tool_t *t = &s->tools[i];
        if (t->skipped || t->missing || !t->nwork)
            continue;
        size_t b = t->cfg->batch > 0 && !t->whole ? (size_t)t->cfg->batch : t->nwork;
        for (size_t at = 0; at < t->nwork; at += b) {
            s_job_t *j = &s->jobs[s->njobs++];
            j->tool = t;
            j->nfiles = t->nwork - at < b ? t->nwork - at : b;
            j->idx = &t->work[at];
            j->files = calloc(j->nfiles + 1, sizeof *j->files);
            if (!j->files)
                return -1;
            for (size_t k = 0; k < j->nfiles; k++)
                j->files[k] = s->tree.items[j->idx[k]].path;
            kz_findings_init(&j->found);
            /* longest first by the tool's remembered time per file; tools
               never timed before all others, in the order of the config */
            j->est_ms = t->ms_per_file >= 0 ? 1.0 + t->ms_per_file * (double)j->nfiles : 1e12;
            j->seq = s->njobs - 1;
        }
    }
    return 0;
}

static void s_jobs_free(s_scan_t *s)
{
    for (size_t i = 0; i < s->njobs; i++) {
        free(s->jobs[i].files);
        kz_findings_free(&s->jobs[i].found);
    }
    free(s->jobs);
    s->jobs = NULL;
    s->njobs = 0;
}

static int s_job_cmp(const void *a, const void *b)
{
    const s_job_t *x = *(s_job_t *const *)a, *y = *(s_job_t *const *)b;
    if (x->est_ms != y->est_ms)
        return x->est_ms > y->est_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* --------------------------------------------------------------- threads */

static void s_job_run(const char *root, const char *compdb, s_job_t *job)
{
    kz_tool_run_opts_t opts = {
        .root = root,
        .compdb = compdb,
        .files = job->files,
        .nfiles = job->nfiles,
        .tick = NULL,
        .tick_arg = NULL,
        .extra_args = (const char *const *)job->tool->setup.args,
        .project_files = job->tool->setup.project_files,
    };
    job->rc = kz_tool_run(job->tool->cfg, &opts, &job->found, &job->res);
    job->ran = true;
}

static void *s_worker(void *arg)
{
    s_pool_t *pool = arg;
    kz_log_set_corr(pool->corr);
    pthread_mutex_lock(&pool->lock);
    while (!pool->cancel && pool->next < pool->njobs) {
        s_job_t *job = pool->order[pool->next++];
        pool->running++;
        pthread_mutex_unlock(&pool->lock);
        kz_debug("tool '%s' starts on %zu files", job->tool->cfg->name, job->nfiles);
        s_job_run(pool->root, pool->compdb, job);
        kz_debug("tool '%s' on %zu files: %s after %" PRId64 " ms", job->tool->cfg->name,
                 job->nfiles, kz_tool_status_name(job->res.status), job->res.duration_us / 1000);
        pthread_mutex_lock(&pool->lock);
        pool->running--;
        pthread_cond_signal(&pool->cond);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static size_t s_parallelism(const kz_config_t *cfg)
{
    long n = cfg->scan.parallelism;
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    if (n > 256)
        n = 256;
    return (size_t)n;
}

/* Run S's jobs on up to scan.parallelism threads, longest first, while
   this (the bus) thread keeps the agent alive. A stopping agent hands out
   no more jobs and waits for the running ones (each bounded by its
   tool's timeout). */
static void s_jobs_run(s_scan_t *s)
{
    if (!s->njobs)
        return;
    s_pool_t pool;
    memset(&pool, 0, sizeof pool);
    pool.order = malloc(s->njobs * sizeof *pool.order);
    size_t nthreads = s_parallelism(s->cfg);
    if (nthreads > s->njobs)
        nthreads = s->njobs;
    pthread_t *threads = calloc(nthreads, sizeof *threads);
    pthread_condattr_t attr;
    bool cond_ok = pthread_condattr_init(&attr) == 0;
    if (cond_ok) {
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        cond_ok = pthread_cond_init(&pool.cond, &attr) == 0;
        pthread_condattr_destroy(&attr);
    }
    if (!pool.order || !threads || !cond_ok || pthread_mutex_init(&pool.lock, NULL) != 0) {
        /* no threads to be had: run them here, one after the other */
        kz_warn("unable to set up worker threads: running the tools one after the other");
        if (cond_ok)
            pthread_cond_destroy(&pool.cond);
        for (size_t i = 0; i < s->njobs && !kz_agent_stopping(s->agent); i++) {
            s_job_run(s->wt, kz_compdb_dir(s->compdb), &s->jobs[i]);
            kz_agent_keepalive(s->agent);
        }
        free(pool.order);
        free(threads);
        return;
    }
    for (size_t i = 0; i < s->njobs; i++)
        pool.order[i] = &s->jobs[i];
    qsort(pool.order, s->njobs, sizeof *pool.order, s_job_cmp);
    pool.njobs = s->njobs;
    pool.root = s->wt;
    pool.compdb = kz_compdb_dir(s->compdb);
    snprintf(pool.corr, sizeof pool.corr, "%s", s->scan_id);

    /* the workers block every signal: SIGTERM and friends reach this
       thread, which watches kz_agent_stopping */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    size_t started = 0;
    for (size_t i = 0; i < nthreads; i++) {
        if (pthread_create(&threads[started], NULL, s_worker, &pool) != 0) {
            kz_warn("unable to start worker thread %zu of %zu: going on with %zu", i + 1, nthreads,
                    started);
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (started == 0)
        s_worker(&pool); /* run them all in this thread */

    pthread_mutex_lock(&pool.lock);
    while ((pool.next < pool.njobs && !pool.cancel) || pool.running > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)S_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&pool.cond, &pool.lock, &until);
        pthread_mutex_unlock(&pool.lock);
        kz_agent_keepalive(s->agent);
        bool stopping = kz_agent_stopping(s->agent);
        pthread_mutex_lock(&pool.lock);
        if (stopping && !pool.cancel) {
            pool.cancel = true;
            kz_info("stopping: waiting for %zu running tool jobs, %zu not started", pool.running,
                    pool.njobs - pool.next);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_cond_destroy(&pool.cond);
    pthread_mutex_destroy(&pool.lock);
    free(pool.order);
    free(threads);
}

/* Make the compile database when a job's tool wants one ("{compdb}" in
   its argv). Without one the tools run all the same (their "{compdb}"
   arguments left out) and their entries say why. 0 / -1 (out of memory) */
static int s_compdb_make(s_scan_t *s)
{
    bool wanted = false;
    for (size_t i = 0; i < s->njobs && !wanted; i++)
        wanted = kz_compdb_wanted(s->jobs[i].tool->cfg->argv, s->jobs[i].tool->cfg->argv_count);
    if (!wanted)
        return 0;
    s->compdb = kz_compdb_for(s->cfg, s->wt, kz_agent_proc_tick, kz_agent_proc_cancel, s->agent);
    if (!s->compdb)
        return -1;
    const char *why = kz_compdb_error(s->compdb);
    if (kz_compdb_dir(s->compdb)) {
        kz_info("compile database of '%s' made (%s) for the C tools", s->target->name,
                kz_compdb_how(s->compdb));
        return 0;
    }
    kz_warn("scan of '%s': no compile database: %s; the tools that want one run without it",
            s->target->name, why);
    for (size_t i = 0; i < s->ntools; i++) {
        s_tool_t *t = &s->tools[i];
        if (!t->skipped && !t->missing && t->nwork &&
            kz_compdb_wanted(t->cfg->argv, t->cfg->argv_count))
            s_errf(t->error, sizeof t->error, "no compile database: %s", why);
    }
    return 0;
}

/* ------------------------------------------------------------ publishing */

static const char *const s_categories[] = {
    "style",       "bug",      "type", "security",     "secret",     "dependency",
    "performance", "coverage", "docs", "architecture", "complexity", NULL,
};

static void s_replace(char **field, const char *value)
{
    char *copy = strdup(value);
    if (copy) {
        free(*field);
        *field = copy;
    }
}

/* Make F publishable whatever the tool printed: valid UTF-8, bounded
   sizes, known severity and category, a rule. False when it cannot be
   (no file). */
static bool s_finding_sane(kz_finding_t *f)
{
    if (!f->file || !*f->file || !f->tool || !*f->tool)
        return false;
    if (!f->rule || !*f->rule)
        s_replace(&f->rule, "unknown");
    if (!f->message)
        s_replace(&f->message, "");
    if (!f->severity || kz_severity_rank(f->severity) < 0)
        s_replace(&f->severity, "low");
    bool known = false;
    for (size_t i = 0; f->category && s_categories[i] && !known; i++)
        known = strcmp(f->category, s_categories[i]) == 0;
    if (!known)
        s_replace(&f->category, "style");
    s_utf8_fix(f->rule);
    s_utf8_fix(f->message);
    s_utf8_cut(f->rule, 255);
    s_utf8_cut(f->message, S_MAX_MESSAGE);
    if (f->fix) {
        s_utf8_fix(f->fix);
        s_utf8_cut(f->fix, S_MAX_MESSAGE);
    }
    if (f->line < 0)
        f->line = 0;
    if (f->col < 0)
        f->col = 0;
    if (!f->fingerprint[0])
        return false;
    return true;
}

static kz_msg_t *s_msg(const s_scan_t *s, const char *type)
{
    kz_msg_t *msg = kz_msg_new(type);
    if (!msg)
        return NULL;
    if (kz_msg_set_corr(msg, s->scan_id) != 0 || kz_msg_set_target(msg, s->target->name) != 0 ||
        kz_map_put_str(msg, kz_msg_body(msg), "scan_id", s->scan_id) != 0)
        kz_msg_destroy(&msg);
    return msg;
}

static int s_publish(s_scan_t *s, kz_msg_t **msg_p)
{
    if (!*msg_p)
        return kz_fail("out of memory");
    char type[64];
    snprintf(type, sizeof type, "%s", kz_msg_type(*msg_p));
    if (kz_agent_publish(s->agent, msg_p) != 0)
        return kz_fail("unable to publish %s of scan %s", type, s->scan_id);
    return 0;
}

static int s_publish_started(s_scan_t *s)
{
    kz_msg_t *msg = s_msg(s, "scan.started");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    int rc = 0;
    if (s->commit[0])
        rc |= kz_map_put_str(msg, b, "commit", s->commit);
    if (s->tools) {
        rc |= kz_map_put_int(msg, b, "files", (int64_t)s->nscanned);
        kz_val_t *tools = kz_map_put_array(msg, b, "tools");
        rc |= tools ? 0 : -1;
        for (size_t i = 0; tools && i < s->ntools; i++) {
            if (s->tools[i].skipped)
                continue;
            kz_val_t *v = kz_array_push(msg, tools);
            rc |= v ? kz_val_set_str(msg, v, s->tools[i].cfg->name) : -1;
        }
    }
    if (rc != 0)
        kz_msg_destroy(&msg);
    s->started = true;
    return s_publish(s, &msg);
}

/* Every finding, in batches of scan.batch_size (fewer when they are
   large: a message stays well under the bus's 1 MiB). At least one
   batch, possibly empty. Returns the number of batches, -1 on error */
static long s_publish_findings(s_scan_t *s)
{
    size_t per = s->cfg->scan.batch_size > 0 ? (size_t)s->cfg->scan.batch_size : 500;
    if (per > S_BATCH_MAX)
        per = S_BATCH_MAX;
    long seq = 0;
    size_t i = 0;
    do {
        kz_msg_t *msg = s_msg(s, "finding.batch");
        kz_val_t *arr = msg ? kz_map_put_array(msg, kz_msg_body(msg), "findings") : NULL;
        if (!arr || kz_map_put_int(msg, kz_msg_body(msg), "seq", seq) != 0) {
            kz_msg_destroy(&msg);
            return kz_fail("out of memory");
        }
        size_t n = 0, bytes = 0;
        for (; i < s->all.count && n < per && bytes < S_BATCH_BYTES; i++, n++) {
            const kz_finding_t *f = &s->all.items[i];
            bytes += 160 + strlen(f->file) + strlen(f->message) + strlen(f->rule) +
                     (f->fix ? strlen(f->fix) : 0);
            if (kz_finding_to_msg(msg, arr, f) != 0) {
                kz_msg_destroy(&msg);
                return kz_fail("unable to add a finding of '%s' in '%s' to finding.batch", f->tool,
                               f->file);
            }
        }
        if (s_publish(s, &msg) != 0)
            return -1;
        seq++;
        kz_agent_keepalive(s->agent);
    } while (i < s->all.count);
    return seq;
}

static int s_metric(kz_msg_t *msg, kz_val_t *metrics, const char *name, double value,
                    const char *unit, const char *target, const char *severity)
{
    kz_val_t *m = kz_array_push(msg, metrics);
    if (!m)
        return -1;
    kz_val_set_map(m);
    if (kz_map_put_str(msg, m, "name", name) != 0 ||
        kz_map_put_float(msg, m, "value", value) != 0 ||
        (unit && kz_map_put_str(msg, m, "unit", unit) != 0))
        return -1;
    kz_val_t *labels = kz_map_put_map(msg, m, "labels");
    if (!labels || kz_map_put_str(msg, labels, "target", target) != 0)
        return -1;
    return severity ? kz_map_put_str(msg, labels, "severity", severity) : 0;
}

/* 100 - severity-weighted findings per 1000 lines, clamped to 0..100
   (weights as the planner's impact: info 0.5, low 1, medium 2, high 4,
   critical 8) */
static double s_health_score(const s_scan_t *s, size_t by_sev[5])
{
    static const double weight[5] = {0.5, 1, 2, 4, 8};
    double w = 0;
    for (int i = 0; i < 5; i++)
        w += weight[i] * (double)by_sev[i];
    double kloc = (double)(s->loc > 0 ? s->loc : 1) / 1000.0;
    double score = 100.0 - w / kloc;
    return score < 0 ? 0 : score > 100 ? 100 : score;
}

static int s_publish_metrics(s_scan_t *s, int64_t duration_ms, double *score_out)
{
    static const char *const sev[5] = {"info", "low", "medium", "high", "critical"};
    size_t by_sev[5] = {0};
    for (size_t i = 0; i < s->all.count; i++) {
        int r = kz_severity_rank(s->all.items[i].severity);
        if (r >= 0 && r < 5)
            by_sev[r]++;
    }
    double score = s_health_score(s, by_sev);
    *score_out = score;
    kz_msg_t *msg = s_msg(s, "metric.batch");
    kz_val_t *m = msg ? kz_map_put_array(msg, kz_msg_body(msg), "metrics") : NULL;
    const char *t = s->target->name;
    int rc = m ? 0 : -1;
    rc |= m ? s_metric(msg, m, "health_score", score, NULL, t, NULL) : -1;
    rc |= m ? s_metric(msg, m, "findings_total", (double)s->all.count, NULL, t, NULL) : -1;
    for (int i = 0; m && i < 5; i++)
        rc |= s_metric(msg, m, "findings", (double)by_sev[i], NULL, t, sev[i]);
    rc |= m ? s_metric(msg, m, "files", (double)s->nscanned, NULL, t, NULL) : -1;
    rc |= m ? s_metric(msg, m, "loc", (double)s->loc, "lines", t, NULL) : -1;
    rc |= m ? s_metric(msg, m, "rescanned", (double)s->nrescanned, NULL, t, NULL) : -1;
    rc |= m ? s_metric(msg, m, "duration_ms", (double)duration_ms, "ms", t, NULL) : -1;
    if (rc != 0)
        kz_msg_destroy(&msg);
    return s_publish(s, &msg);
}

/* scan.completed of a scan that could not run: no tools, no findings */
static int s_publish_failed(s_scan_t *s, int64_t duration_ms)
{
    kz_msg_t *msg = s_msg(s, "scan.completed");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    int rc = kz_map_put_str(msg, b, "status", "failed");
    rc |= kz_map_put_int(msg, b, "findings", 0);
    rc |= kz_map_put_int(msg, b, "files", 0);
    rc |= kz_map_put_int(msg, b, "duration_ms", duration_ms);
    if (s->commit[0])
        rc |= kz_map_put_str(msg, b, "commit", s->commit);
    if (s->error[0]) {
        s_utf8_fix(s->error);
        rc |= kz_map_put_str(msg, b, "error", s->error);
    }
    if (rc != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    return s_publish(s, &msg);
}

/* The integer KEY of O, -1 when absent or not a non-negative integer */
static json_int_t s_json_count(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

/* Append to TOOLS (the record's tools[]) one entry per tool S's project
   chose that no recipe runs: status "skipped", its note saying so (never
   a clean tool with 0 findings). 0 / -1 (out of memory) */
static int s_record_unrun(const s_scan_t *s, json_t *tools)
{
    size_t i;
    const json_t *u;
    json_array_foreach(s->unrun, i, u)
    {
        const char *name = json_string_value(json_object_get(u, "name"));
        const char *note = json_string_value(json_object_get(u, "note"));
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:s}", "name", name, "status",
                              "skipped", "findings", 0, "duration_ms", 0, "files", 0, "rescanned",
                              0, "error", note, "note", note);
        if (!o || json_array_append_new(tools, o) != 0)
            return -1;
    }
    return 0;
}

/* The record of a completed scan of S: what its scan.completed says
   (scan_id, status, findings, files, duration_ms, commit, loc,
   rescanned, tools[], error) plus what decides whether it can answer a
   later request (version, target, path, and per tool "hashes": the
   recipe/program/config hash, or "skipped"). NULL when out
   of memory. */
static json_t *s_record_make(const s_scan_t *s, const char *status, int64_t duration_ms)
{
    json_t *rec = json_object();
    json_t *tools = json_array();
    json_t *hashes = json_object();
    bool oom = !rec || !tools || !hashes;
    oom = oom || json_object_set_new(rec, "version", json_integer(S_RECORD_VERSION)) != 0 ||
          json_object_set_new(rec, "target", json_string(s->target->name)) != 0 ||
          json_object_set_new(rec, "path", json_string(s->target->path)) != 0 ||
          json_object_set_new(rec, "scan_id", json_string(s->scan_id)) != 0 ||
          json_object_set_new(rec, "status", json_string(status)) != 0 ||
          json_object_set_new(rec, "findings", json_integer((json_int_t)s->all.count)) != 0 ||
          json_object_set_new(rec, "files", json_integer((json_int_t)s->nscanned)) != 0 ||
          json_object_set_new(rec, "duration_ms", json_integer(duration_ms)) != 0 ||
          json_object_set_new(rec, "commit", json_string(s->commit)) != 0 ||
          json_object_set_new(rec, "loc", json_integer(s->loc)) != 0 ||
          json_object_set_new(rec, "rescanned", json_integer((json_int_t)s->nrescanned)) != 0;
    for (size_t i = 0; !oom && i < s->ntools; i++) {
        const s_tool_t *t = &s->tools[i];
        json_t *o = json_object();
        oom = !o || json_array_append_new(tools, o) != 0;
        const char *st = t->skipped ? "skipped" : kz_tool_status_name(t->status);
        oom = oom || json_object_set_new(o, "name", json_string(t->cfg->name)) != 0 ||
              json_object_set_new(o, "status", json_string(st)) != 0 ||
              json_object_set_new(o, "findings", json_integer((json_int_t)t->findings)) != 0 ||
              json_object_set_new(o, "duration_ms", json_integer(t->duration_us / 1000)) != 0 ||
              json_object_set_new(o, "files", json_integer((json_int_t)t->nwanted)) != 0 ||
              json_object_set_new(o, "rescanned", json_integer((json_int_t)t->nwork)) != 0;
        if (!oom && t->error[0]) {
            char err[sizeof t->error];
            snprintf(err, sizeof err, "%s", t->error);
            s_utf8_fix(err);
            oom = json_object_set_new(o, "error", json_string(err)) != 0;
        }
        if (!oom && !t->skipped && t->setup.differs[0])
            oom = json_object_set_new(o, "note", json_string(t->setup.differs)) != 0;
        /* a missing tool makes the scan partial, and a partial scan is
           never recorded: a recorded tool either ran or was skipped */
        const char *h = t->skipped ? "skipped" : t->hash;
        oom = oom || json_object_set_new(hashes, t->cfg->name, json_string(h)) != 0;
    }
    oom = oom || s_record_unrun(s, tools) != 0;
    oom = oom || json_object_set(rec, "tools", tools) != 0 ||
          json_object_set(rec, "hashes", hashes) != 0;
    if (!oom && s->error[0]) {
        char err[sizeof s->error];
        snprintf(err, sizeof err, "%s", s->error);
        s_utf8_fix(err);
        oom = json_object_set_new(rec, "error", json_string(err)) != 0;
    }
    json_decref(tools);
    json_decref(hashes);
    if (oom) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

/* Publish the scan.completed of record REC (s_record_make): the scan
   that just ran, or - REUSED - a stored one answering again, then with
   rescanned 0 and reused true. 0 / -1 (also for a malformed record) */
static int s_publish_record(s_scan_t *s, const json_t *rec, bool reused)
{
    const char *status = json_string_value(json_object_get(rec, "status"));
    const char *commit = json_string_value(json_object_get(rec, "commit"));
    const char *error = json_string_value(json_object_get(rec, "error"));
    json_int_t findings = s_json_count(rec, "findings"), files = s_json_count(rec, "files");
    json_int_t duration = s_json_count(rec, "duration_ms"), loc = s_json_count(rec, "loc");
    json_int_t rescanned = reused ? 0 : s_json_count(rec, "rescanned");
    const json_t *tools = json_object_get(rec, "tools");
    if (!status || findings < 0 || files < 0 || duration < 0 || loc < 0 || rescanned < 0 ||
        !json_is_array(tools))
        return kz_fail("malformed record of scan %s", s->scan_id);
    kz_msg_t *msg = s_msg(s, "scan.completed");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    int rc = kz_map_put_str(msg, b, "status", status);
    rc |= kz_map_put_int(msg, b, "findings", findings);
    rc |= kz_map_put_int(msg, b, "files", files);
    rc |= kz_map_put_int(msg, b, "duration_ms", duration);
    if (commit && *commit)
        rc |= kz_map_put_str(msg, b, "commit", commit);
    rc |= kz_map_put_int(msg, b, "loc", loc);
    rc |= kz_map_put_int(msg, b, "rescanned", rescanned);
    kz_val_t *arr = kz_map_put_array(msg, b, "tools");
    rc |= arr ? 0 : -1;
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *st = json_string_value(json_object_get(t, "status"));
        const char *terr = json_string_value(json_object_get(t, "error"));
        const char *tnote = json_string_value(json_object_get(t, "note"));
        json_int_t tf = s_json_count(t, "findings"), td = s_json_count(t, "duration_ms");
        json_int_t tn = s_json_count(t, "files"), tr = reused ? 0 : s_json_count(t, "rescanned");
        kz_val_t *v = arr && rc == 0 ? kz_array_push(msg, arr) : NULL;
        if (!v || !name || !st || tf < 0 || td < 0 || tn < 0 || tr < 0) {
            rc = -1;
            break;
        }
        kz_val_set_map(v);
        rc |= kz_map_put_str(msg, v, "name", name);
        rc |= kz_map_put_str(msg, v, "status", st);
        rc |= kz_map_put_int(msg, v, "findings", tf);
        rc |= kz_map_put_int(msg, v, "duration_ms", td);
        rc |= kz_map_put_int(msg, v, "files", tn);
        rc |= kz_map_put_int(msg, v, "rescanned", tr);
        if (terr)
            rc |= kz_map_put_str(msg, v, "error", terr);
        if (tnote)
            rc |= kz_map_put_str(msg, v, "note", tnote);
    }
    if (error && *error)
        rc |= kz_map_put_str(msg, b, "error", error);
    if (reused)
        rc |= kz_map_put_bool(msg, b, "reused", true);
    if (rc != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("unable to build scan.completed of scan %s from its record", s->scan_id);
    }
    return s_publish(s, &msg);
}

/* ----------------------------------------------------------------- scan */

/* The scan worktree at S->commit: reused (checked out detached at the
   commit) when it is there, else created. 0 / -1 with S->error */
static int s_worktree(s_scan_t *s)
{
    char rel[600], err[1024];
    snprintf(rel, sizeof rel, "worktrees/%s/scan", s->target->name);
    if (kz_state_path(s->cfg, rel, s->wt, sizeof s->wt) != 0) {
        s_errf(s->error, sizeof s->error, "state path too long for 'STATE/%s'", rel);
        return -1;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", s->wt);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    if (kz_mkdirs(parent, 0711, err, sizeof err) != 0) {
        s_errf(s->error, sizeof s->error, "%s", err);
        return -1;
    }
    char git[4200];
    snprintf(git, sizeof git, "%s/.git", s->wt);
    /* a worktree made before the sandbox shared it with its user is made again */
    gid_t runner_gid;
    struct stat wst;
    bool shared = !kz_sandbox_runner(NULL, &runner_gid) ||
                  (stat(s->wt, &wst) == 0 && wst.st_gid == runner_gid && (wst.st_mode & S_ISGID));
    if (shared && access(git, F_OK) == 0) {
        const char *args[] = {"checkout", "-q", "--detach", "--force", s->commit, NULL};
        char head[KZ_GIT_OID_MAX];
        if (kz_git(s->wt, args, S_GIT_TIMEOUT_MS, NULL, err, sizeof err) == 0 &&
            kz_git_rev(s->wt, "HEAD", head, err, sizeof err) == 0 && strcmp(head, s->commit) == 0)
            return 0;
        kz_info("scan worktree '%s' unusable (%s): creating it again", s->wt, err);
    }
    if (kz_git_worktree_add(s->target->path, s->wt, NULL, s->commit, err, sizeof err) != 0) {
        s_errf(s->error, sizeof s->error, "unable to create the scan worktree '%s' of '%s': %s",
               s->wt, s->target->path, err);
        return -1;
    }
    return 0;
}

/* Say why the findings of the files that are not the project's own code
   (vendored, generated, excluded by the project) are set aside: each job's
   new findings get their `excluded` reason, which the cache keeps (the
   carried ones have it from there: the tool hash covers every
   .gitattributes and the project's configs). 0, or -1 with S->error */
static int s_scope_mark(s_scan_t *s)
{
    char err[1024];
    size_t found = 0;
    for (size_t i = 0; i < s->njobs; i++)
        found += s->jobs[i].ran ? s->jobs[i].found.count : 0;
    if (found == 0)
        return 0; /* nothing new to tell apart */
    if (!s->scope) {
        s->scope = kz_scope_new(s->wt, err, sizeof err);
        if (!s->scope) {
            s_errf(s->error, sizeof s->error, "unable to tell vendored and generated files: %s",
                   err);
            return -1;
        }
        const char *warning = kz_scope_warning(s->scope);
        if (warning && s_first_time(warning))
            kz_warn("target '%s': %s", s->target->name, warning);
    }
    for (size_t i = 0; i < s->njobs; i++) {
        s_job_t *j = &s->jobs[i];
        if (j->ran && j->rc == 0 && j->res.status == KZ_TOOL_OK &&
            kz_scope_mark(s->scope, &j->found, err, sizeof err) != 0) {
            s_errf(s->error, sizeof s->error, "unable to tell vendored and generated files: %s",
                   err);
            return -1;
        }
    }
    return 0;
}

/* The new findings of a tool whose installed version differs from the
   project's pin are reported but not planned: each gets the reason
   ("version differs from the project's pin (2.4.2 pinned, 2.2.2
   installed)") unless its file is set aside already. The carried ones
   have it from the cache (the tool hash covers the installed version and
   the pin). 0 / -1 (out of memory) */
static int s_pin_mark(s_scan_t *s)
{
    for (size_t i = 0; i < s->njobs; i++) {
        s_job_t *j = &s->jobs[i];
        const char *differs = j->tool->setup.differs;
        for (size_t k = 0; j->ran && differs[0] && k < j->found.count; k++) {
            kz_finding_t *f = &j->found.items[k];
            if (!f->excluded && !(f->excluded = strdup(differs)))
                return -1;
        }
    }
    return 0;
}

/* One info line naming the files set aside (S->all sorted by file):
   "3 files set aside, not planned: 2 vendored: vendor/, 1 generated: ..." */
static void s_log_set_aside(const s_scan_t *s)
{
    const char *reasons[16];
    size_t counts[16], nreasons = 0, files = 0;
    for (size_t i = 0; i < s->all.count; i++) {
        const kz_finding_t *f = &s->all.items[i];
        if (!f->excluded || (i > 0 && strcmp(s->all.items[i - 1].file, f->file) == 0))
            continue;
        files++;
        size_t r = 0;
        while (r < nreasons && strcmp(reasons[r], f->excluded) != 0)
            r++;
        if (r == nreasons && nreasons < 16) {
            reasons[nreasons] = f->excluded;
            counts[nreasons++] = 0;
        }
        if (r < nreasons)
            counts[r]++;
    }
    if (!files)
        return;
    char line[1024];
    size_t o = 0;
    for (size_t r = 0; r < nreasons && o < sizeof line; r++) {
        int n =
            snprintf(line + o, sizeof line - o, "%s%zu %s", r ? ", " : "", counts[r], reasons[r]);
        o += n > 0 ? (size_t)n : 0;
    }
    kz_info("scan of '%s': %zu files set aside, not planned (findings kept): %s", s->target->name,
            files, line);
}

/* Merge the jobs' results: tool statuses, new findings into S->all, and
   the new cache. Returns the cache (NULL on out of memory). */
static json_t *s_merge(s_scan_t *s)
{
    json_t *root = json_object();
    json_t *files = json_object();
    json_t *tools = json_object();
    if (!root || !files || !tools ||
        json_object_set_new(root, "version", json_integer(S_CACHE_VERSION)) ||
        json_object_set_new(root, "target", json_string(s->target->name)) ||
        json_object_set_new(root, "path", json_string(s->target->path)) ||
        json_object_set_new(root, "commit", json_string(s->commit)) ||
        json_object_set(root, "files", files) || json_object_set(root, "tools", tools)) {
        json_decref(root);
        json_decref(files);
        json_decref(tools);
        return NULL;
    }
    json_decref(files);
    json_decref(tools);
    bool oom = false;

    /* job results: statuses and per-file findings */
    for (size_t i = 0; i < s->njobs; i++) {
        s_job_t *j = &s->jobs[i];
        s_tool_t *t = j->tool;
        if (!j->ran) {
            if (t->status == KZ_TOOL_OK) {
                t->status = KZ_TOOL_ERROR;
                s_errf(t->error, sizeof t->error, "not run: the agent is stopping");
            }
            continue;
        }
        t->duration_us += j->res.duration_us;
        t->ran_files += j->nfiles;
        for (size_t k = 0; k < j->nfiles; k++)
            s->tree.items[j->idx[k]].rescanned = true;
        if (j->rc != 0 || j->res.status != KZ_TOOL_OK) {
            /* the first failure names the tool's problem; a timeout wins over an error */
            if (t->status == KZ_TOOL_OK ||
                (j->res.status == KZ_TOOL_TIMEOUT && t->status != KZ_TOOL_TIMEOUT)) {
                t->status = j->rc != 0 ? KZ_TOOL_ERROR : j->res.status;
                s_errf(t->error, sizeof t->error, "%s",
                       j->rc != 0 ? "out of memory" : j->res.error);
            }
            kz_debug("tool '%s' on %zu files of '%s': %s: %s", t->cfg->name, j->nfiles,
                     s->target->name, kz_tool_status_name(j->res.status),
                     j->rc != 0 ? "out of memory" : j->res.error);
            continue;
        }
        kz_debug("tool '%s': %zu files, %zu findings, %" PRId64 " ms (%zu output lines, %zu "
                 "skipped, %zu outside)",
                 t->cfg->name, j->nfiles, j->found.count, j->res.duration_us / 1000,
                 j->res.stats.lines, j->res.stats.skipped, j->res.stats.outside);
        /* cache: the files it checked, then their findings */
        if (!t->whole) {
            for (size_t k = 0; k < j->nfiles && !oom; k++) {
                const s_file_t *f = &s->tree.items[j->idx[k]];
                json_t *entry = json_object_get(files, f->path);
                if (!entry) {
                    entry = json_object();
                    oom |= !entry || json_object_set_new(files, f->path, entry) != 0 ||
                           json_object_set_new(entry, "blob", json_string(f->blob)) != 0 ||
                           json_object_set_new(entry, "findings", json_object()) != 0;
                }
                oom |= oom || json_object_set_new(json_object_get(entry, "findings"), t->cfg->name,
                                                  json_array()) != 0;
            }
            for (size_t k = 0; k < j->found.count && !oom; k++) {
                const kz_finding_t *f = &j->found.items[k];
                json_t *arr = json_object_get(
                    json_object_get(json_object_get(files, f->file), "findings"), t->cfg->name);
                if (arr)
                    oom |= json_array_append_new(arr, s_finding_json(f, false)) != 0;
            }
        } else {
            json_t *arr = json_array();
            for (size_t k = 0; arr && k < j->found.count && !oom; k++)
                oom |= json_array_append_new(arr, s_finding_json(&j->found.items[k], true)) != 0;
            json_t *entry = json_object();
            oom |= !arr || !entry || json_object_set_new(entry, "findings", arr) != 0 ||
                   json_object_set_new(tools, t->cfg->name, entry) != 0;
        }
        t->findings += j->found.count;
        oom |= kz_findings_move(&s->all, &j->found) != 0;
    }

    /* carried results: copy the cache entries of the files not re-run */
    for (size_t i = 0; i < s->ntools && !oom; i++) {
        s_tool_t *t = &s->tools[i];
        if (t->skipped || t->missing)
            continue;
        const json_t *old_tool = s->old_tools ? json_object_get(s->old_tools, t->cfg->name) : NULL;
        if (t->whole) {
            if (t->nwork == 0 && old_tool) { /* carried whole */
                json_t *entry = json_object();
                oom |=
                    !entry || json_object_set_new(tools, t->cfg->name, entry) != 0 ||
                    json_object_set(entry, "findings", json_object_get(old_tool, "findings")) != 0;
            }
        } else {
            /* the wanted files not in t->work carried their findings */
            size_t w = 0;
            for (size_t k = 0; k < t->nwanted && !oom; k++) {
                if (w < t->nwork && t->work[w] == t->wanted[k]) {
                    w++;
                    continue;
                }
                const s_file_t *f = &s->tree.items[t->wanted[k]];
                const json_t *arr = json_object_get(
                    json_object_get(json_object_get(s->old_files, f->path), "findings"),
                    t->cfg->name);
                json_t *entry = json_object_get(files, f->path);
                if (!entry) {
                    entry = json_object();
                    oom |= !entry || json_object_set_new(files, f->path, entry) != 0 ||
                           json_object_set_new(entry, "blob", json_string(f->blob)) != 0 ||
                           json_object_set_new(entry, "findings", json_object()) != 0;
                }
                if (!oom && arr)
                    oom |= json_object_set(json_object_get(entry, "findings"), t->cfg->name,
                                           (json_t *)arr) != 0;
            }
        }
        /* what the next scan orders its jobs by */
        json_t *entry = json_object_get(tools, t->cfg->name);
        if (!entry) {
            entry = json_object();
            oom |= !entry || json_object_set_new(tools, t->cfg->name, entry) != 0;
        }
        if (oom)
            break;
        /* the time per file of a run on few files is mostly the tool's
           start-up: keep the timing of the last run on at least half as
           many files, so a full scan after incremental ones still starts
           the slow tools first */
        json_int_t old_nf = json_integer_value(json_object_get(old_tool, "files"));
        bool timed = t->ran_files > 0 && t->status == KZ_TOOL_OK &&
                     (old_nf <= 0 || (json_int_t)t->ran_files * 2 >= old_nf);
        json_int_t ms = timed ? (json_int_t)(t->duration_us / 1000)
                              : json_integer_value(json_object_get(old_tool, "ms"));
        json_int_t nf = timed ? (json_int_t)t->ran_files : old_nf;
        /* failed files have no entry of this tool: they re-run anyway */
        oom |= json_object_set_new(entry, "hash", json_string(t->hash)) != 0 ||
               json_object_set_new(entry, "digest", json_string(t->digest)) != 0 ||
               json_object_set_new(entry, "ms", json_integer(ms)) != 0 ||
               json_object_set_new(entry, "files", json_integer(nf)) != 0;
        if (t->whole && t->status != KZ_TOOL_OK)
            json_object_del(entry, "findings"); /* no result to carry: run again next time */
    }
    /* line counts of the scanned files, for the next scan */
    for (size_t k = 0; k < s->tree.count && !oom; k++) {
        const s_file_t *f = &s->tree.items[k];
        if (!f->scanned)
            continue;
        json_t *entry = json_object_get(files, f->path);
        if (!entry) {
            entry = json_object();
            oom |= !entry || json_object_set_new(files, f->path, entry) != 0 ||
                   json_object_set_new(entry, "blob", json_string(f->blob)) != 0 ||
                   json_object_set_new(entry, "findings", json_object()) != 0;
        }
        oom |= oom || json_object_set_new(entry, "loc", json_integer(f->loc)) != 0;
    }
    if (oom) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Count the lines of the scanned files (from the cache when the blob is
   the same) */
static void s_count_loc(s_scan_t *s)
{
    s->loc = 0;
    s->nscanned = 0;
    for (size_t k = 0; k < s->tree.count; k++) {
        s_file_t *f = &s->tree.items[k];
        if (!f->scanned)
            continue;
        s->nscanned++;
        const json_t *entry = s->old_files ? json_object_get(s->old_files, f->path) : NULL;
        const char *blob = json_string_value(json_object_get(entry, "blob"));
        const json_t *loc = json_object_get(entry, "loc");
        if (blob && f->blob[0] && strcmp(blob, f->blob) == 0 && json_is_integer(loc) &&
            json_integer_value(loc) >= 0)
            f->loc = (long)json_integer_value(loc);
        else
            f->loc = s_count_lines(s->wt, f->path);
        s->loc += f->loc;
    }
}

static int s_fp_cmp(const void *a, const void *b)
{
    const kz_finding_t *x = *(kz_finding_t *const *)a, *y = *(kz_finding_t *const *)b;
    int c = strcmp(x->fingerprint, y->fingerprint);
    if (c)
        return c;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Drop findings whose fingerprint repeats one already in the list (the
   recorder keeps one per fingerprint) and those that cannot be published */
static void s_findings_clean(s_scan_t *s)
{
    size_t n = s->all.count, out = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        kz_finding_t *f = &s->all.items[i];
        if (!s_finding_sane(f)) {
            bad++;
            kz_finding_clear(f);
            continue;
        }
        s->all.items[out++] = *f;
    }
    s->all.count = out;
    if (bad)
        kz_warn("%zu findings without file, tool or fingerprint dropped", bad);
    kz_findings_sort(&s->all);
    /* duplicates: sort pointers by fingerprint, then list position */
    if (s->all.count < 2)
        return;
    kz_finding_t **p = malloc(s->all.count * sizeof *p);
    if (!p)
        return;
    for (size_t i = 0; i < s->all.count; i++)
        p[i] = &s->all.items[i];
    qsort(p, s->all.count, sizeof *p, s_fp_cmp);
    size_t dups = 0;
    for (size_t i = 1; i < s->all.count; i++)
        if (strcmp(p[i]->fingerprint, p[i - 1]->fingerprint) == 0) {
            p[i]->fingerprint[0] = '\0'; /* mark */
            dups++;
        }
    free(p);
    if (!dups)
        return;
    out = 0;
    for (size_t i = 0; i < s->all.count; i++) {
        if (!s->all.items[i].fingerprint[0]) {
            kz_finding_clear(&s->all.items[i]);
            continue;
        }
        s->all.items[out++] = s->all.items[i];
    }
    s->all.count = out;
    kz_debug("%zu findings with a repeated fingerprint dropped", dups);
}

static void s_scan_free(s_scan_t *s)
{
    kz_compdb_destroy(&s->compdb);
    s_jobs_free(s);
    s_tools_free(s);
    s_tree_free(&s->tree);
    kz_findings_free(&s->all);
    kz_scope_destroy(&s->scope);
    json_decref(s->old);
    s->old = NULL;
    kz_project_destroy(&s->project);
    json_decref(s->unrun);
    s->unrun = NULL;
}

/* ------------------------------------------------------------- reuse */

/* The agent's own state: the database, read to check that a stored scan
   is really stored before answering with it */
typedef struct {
    kz_store_t *store;
} s_health_t;

/* Forget the record of S's target: its last scan cannot answer again
   (it was partial or failed, or the record is useless) */
static void s_record_forget(const s_scan_t *s)
{
    if (s->record_path[0] && unlink(s->record_path) != 0 && errno != ENOENT)
        kz_warn("unable to remove '%s': %s", s->record_path, strerror(errno));
}
/* Whether the record REC of a scan can answer for S: the same target path
   and commit, status ok, and the same tools with the same hashes (recipe,
   program, config files) and the same skipped and missing ones. WHY gets
   the reason when not. */
static bool s_record_fits(const s_scan_t *s, const json_t *rec, char *why, size_t whylen)
{
    const char *path = json_string_value(json_object_get(rec, "path"));
    const char *commit = json_string_value(json_object_get(rec, "commit"));
    const char *status = json_string_value(json_object_get(rec, "status"));
    const char *scan_id = json_string_value(json_object_get(rec, "scan_id"));
    const json_t *hashes = json_object_get(rec, "hashes");
    if (json_integer_value(json_object_get(rec, "version")) != S_RECORD_VERSION || !path ||
        !commit || !status || !kz_id_valid(scan_id) || !json_is_object(hashes)) {
        s_errf(why, whylen, "its record is not a version %d record", S_RECORD_VERSION);
        return false;
    }
    if (strcmp(path, s->target->path) != 0) {
        s_errf(why, whylen, "the target moved from '%s'", path);
        return false;
    }
    if (strcmp(commit, s->commit) != 0) {
        s_errf(why, whylen, "a new commit");
        return false;
    }
    if (strcmp(status, "ok") != 0) {
        s_errf(why, whylen, "the last scan was %s", status);
        return false;
    }
    if (json_object_size(hashes) != s->ntools) {
        s_errf(why, whylen, "other tools apply");
        return false;
    }
    for (size_t i = 0; i < s->ntools; i++) {
        const s_tool_t *t = &s->tools[i];
        const char *want = t->skipped ? "skipped" : t->hash;
        const char *had = json_string_value(json_object_get(hashes, t->cfg->name));
        if (!had || strcmp(had, want) != 0) {
            s_errf(why, whylen,
                   had ? "tool '%s' changed (its recipe, program or config files)"
                       : "tool '%s' is new",
                   t->cfg->name);
            return false;
        }
    }
    return true;
}

/* Answer for S with the target's last completed scan when it fits
   (s_record_fits) and the database holds it - or cannot be asked (no
   database, or it is away: the recorder stores the scan once it is back):
   publish that scan's scan.completed again with reused true, and run
   nothing. True when answered so; false when S must scan. */
static bool s_reuse(s_scan_t *s, s_health_t *self)
{
    if (!s->cfg->scan.incremental || !s->record_path[0] || access(s->record_path, F_OK) != 0)
        return false;
    json_error_t jerr;
    json_t *rec = json_load_file(s->record_path, JSON_REJECT_DUPLICATES, &jerr);
    char why[512] = "";
    if (!rec) {
        kz_warn("ignoring '%s': %s (line %d)", s->record_path, jerr.text, jerr.line);
        s_record_forget(s);
        return false;
    }
    bool fits = s_record_fits(s, rec, why, sizeof why);
    const char *scan_id = json_string_value(json_object_get(rec, "scan_id"));
    if (!fits) {
        kz_debug("target '%s' at %.12s: not answered from its last scan: %s", s->target->name,
                 s->commit, why);
        json_decref(rec);
        return false;
    }
    char err[1024] = "no store";
    PGconn *db = self->store ? kz_store_db(self->store, err, sizeof err) : NULL;
    if (db) {
        /* the downstream agents read the scan's findings in the database:
           it must hold the scan, complete (the recorder may still be
           storing it when the request follows the scan closely) */
        char status[64] = "";
        json_int_t expected = s_json_count(rec, "findings");
        int rc = kz_store_wait_scan(self->store, scan_id, (long)expected, S_STORED_WAIT_MS,
                                    kz_agent_wait_tick, s->agent, err, sizeof err);
        if (rc == 0)
            rc = kz_store_scan_status(self->store, scan_id, status, sizeof status, err, sizeof err);
        if (rc == 0 && strcmp(status, "ok") != 0) {
            s_errf(err, sizeof err, "the database has it as '%s'", status);
            rc = -1;
        }
        if (rc != 0 && kz_agent_stopping(s->agent)) {
            /* told to stop while waiting: the record stays good, and
               nothing is scanned (the caller sees the stop) */
            json_decref(rec);
            return false;
        }
        if (rc != 0) {
            kz_info("target '%s' at %.12s: its last scan %s cannot answer (%s): scanning again",
                    s->target->name, s->commit, scan_id, err);
            json_decref(rec);
            s_record_forget(s);
            return false;
        }
    } else {
        kz_debug("database not reachable (%s): answering from scan %s without asking it", err,
                 scan_id);
    }
    char fresh[sizeof s->scan_id];
    snprintf(fresh, sizeof fresh, "%s", s->scan_id);
    snprintf(s->scan_id, sizeof s->scan_id, "%s", scan_id);
    kz_log_set_corr(s->scan_id);
    if (s_publish_record(s, rec, true) != 0) {
        snprintf(s->scan_id, sizeof s->scan_id, "%s", fresh);
        kz_log_set_corr(s->scan_id);
        json_decref(rec);
        return false;
    }
    kz_info("target '%s' at %.12s unchanged since scan %s (same commit, recipes, programs and "
            "tool configs): answered from it, %" JSON_INTEGER_FORMAT " findings, no tool run",
            s->target->name, s->commit, s->scan_id, s_json_count(rec, "findings"));
    json_decref(rec);
    return true;
}

/* Scan TARGET once. 0 when it completed (ok or partial), -1 when it failed */
static int s_scan_target(kz_agent_t *agent, s_health_t *self, const kz_target_config_t *target)
{
    s_scan_t scan;
    s_scan_t *s = &scan;
    memset(s, 0, sizeof *s);
    s->agent = agent;
    s->cfg = kz_agent_config(agent);
    s->target = target;
    s->t0_us = s_mono_us();
    kz_findings_init(&s->all);
    kz_ulid(s->scan_id);
    char cycle_corr[128];
    snprintf(cycle_corr, sizeof cycle_corr, "%s", kz_log_corr() ? kz_log_corr() : "");
    kz_log_set_corr(s->scan_id);
    char err[1024];
    int rc = -1;

    kz_debug("scan of target '%s' (%s, branch %s) starts", target->name, target->path,
             target->branch);
    if (!s_name_ok(target->name)) {
        s_errf(s->error, sizeof s->error,
               "target name '%s' is not usable as a directory name (letters, digits, '.', '_', "
               "'-'; not starting with '.')",
               target->name);
        goto failed;
    }
    char rec_rel[600];
    snprintf(rec_rel, sizeof rec_rel, "code-health/%s.scan.json", target->name);
    if (kz_state_path(s->cfg, rec_rel, s->record_path, sizeof s->record_path) != 0)
        s->record_path[0] = '\0';
    if (kz_git_check_repo(target->path, err, sizeof err) != 0) {
        s_errf(s->error, sizeof s->error, "target '%s': %s", target->name, err);
        goto failed;
    }
    char ref[600];
    snprintf(ref, sizeof ref, "refs/heads/%s", target->branch ? target->branch : "main");
    if (kz_git_rev(target->path, ref, s->commit, err, sizeof err) != 0) {
        s->commit[0] = '\0';
        kz_debug("%s", err);
        s_errf(s->error, sizeof s->error, "target '%s': branch '%s' not found in '%s'",
               target->name, target->branch ? target->branch : "main", target->path);
        goto failed;
    }
    if (s_worktree(s) != 0)
        goto failed;
    if (s_tree_load(s->wt, s->commit, &s->tree, err, sizeof err) != 0) {
        s_errf(s->error, sizeof s->error, "unable to list the files of '%s' at %s: %s",
               target->path, s->commit, err);
        goto failed;
    }
    if (s_project_load(s) != 0)
        goto oom;
    char rel[600];
    snprintf(rel, sizeof rel, "code-health/%s.json", target->name);
    char dir[4096];
    if (kz_state_path(s->cfg, "code-health", dir, sizeof dir) != 0 ||
        kz_state_path(s->cfg, rel, s->cache_path, sizeof s->cache_path) != 0 ||
        kz_mkdirs(dir, 0700, err, sizeof err) != 0) {
        s_errf(s->error, sizeof s->error, "scan cache directory: %s", err);
        goto failed;
    }
    if (s_tools_pick(s) != 0)
        goto oom;
    if (s_reuse(s, self)) {
        rc = 0;
        goto done;
    }
    if (kz_agent_stopping(agent)) {
        rc = 0; /* stopped while asking whether the last scan answers: no scan */
        goto done;
    }
    /* read even when scan.incremental is off: the tools' durations order
       the jobs and unchanged files keep their line counts */
    s->old = s_cache_load(s);
    s->old_files = s->old ? json_object_get(s->old, "files") : NULL;
    s->old_tools = s->old ? json_object_get(s->old, "tools") : NULL;
    for (size_t i = 0; i < s->ntools; i++)
        if (!s->tools[i].skipped && s_tool_plan(s, &s->tools[i]) != 0)
            goto oom;
    s_count_loc(s);
    if (s_publish_started(s) != 0)
        goto publish_failed;
    if (s_jobs_make(s) != 0)
        goto oom;
    if (s_compdb_make(s) != 0)
        goto oom;
    kz_debug("%zu tools, %zu jobs on %zu threads", s->ntools, s->njobs, s_parallelism(s->cfg));
    s_jobs_run(s);
    if (s_scope_mark(s) != 0)
        goto failed;
    if (s_pin_mark(s) != 0)
        goto oom;

    json_t *cache = s_merge(s);
    if (!cache)
        goto oom;
    for (size_t k = 0; k < s->tree.count; k++)
        s->nrescanned += s->tree.items[k].rescanned;
    if (s_cache_save(s->cache_path, cache) != 0)
        kz_warn("the next scan of '%s' is a full one", target->name);
    json_decref(cache);
    s_findings_clean(s);

    const char *status = "ok";
    for (size_t i = 0; i < s->ntools; i++)
        if (!s->tools[i].skipped && s->tools[i].status != KZ_TOOL_OK)
            status = "partial";
    int64_t duration_ms = (s_mono_us() - s->t0_us) / 1000;
    double score = 0;
    json_t *rec = s_record_make(s, status, duration_ms);
    if (!rec)
        goto oom;
    /* the record goes before publishing: a scan whose results did not all
       go out must not answer later requests */
    s_record_forget(s);
    if (s_publish_findings(s) < 0 || s_publish_metrics(s, duration_ms, &score) != 0 ||
        s_publish_record(s, rec, false) != 0) {
        json_decref(rec);
        goto publish_failed;
    }
    /* an ok scan answers later requests for the same commit, recipes and
       configs (s_reuse); a partial one does not: its tools run again */
    if (s->cfg->scan.incremental && strcmp(status, "ok") == 0 && s->record_path[0] &&
        s_cache_save(s->record_path, rec) != 0)
        kz_warn("the next scan of '%s' at the same commit runs the tools again", target->name);
    json_decref(rec);
    for (size_t i = 0; i < s->ntools; i++) {
        const s_tool_t *t = &s->tools[i];
        if (!t->skipped && !t->missing && t->status != KZ_TOOL_OK)
            kz_warn("scan of '%s': tool '%s' %s: %s", target->name, t->cfg->name,
                    kz_tool_status_name(t->status), t->error);
        kz_debug("tool '%s': %s, %zu files, %zu re-run, %zu findings, %" PRId64 " ms%s%s",
                 t->cfg->name, t->skipped ? "skipped" : kz_tool_status_name(t->status), t->nwanted,
                 t->nwork, t->findings, t->duration_us / 1000, t->error[0] ? ": " : "", t->error);
    }
    kz_info("scanned '%s' at %.12s: %zu files, %zu rescanned, %zu findings, health %.1f, %s "
            "in %" PRId64 " ms",
            target->name, s->commit, s->nscanned, s->nrescanned, s->all.count, score, status,
            duration_ms);
    s_log_set_aside(s);
    rc = 0;
    goto done;

oom:
    s_errf(s->error, sizeof s->error, "out of memory");
failed:
    kz_error("scan of target '%s' failed: %s", target->name, s->error);
    {
        /* what was found does not count: nothing is published as findings */
        kz_findings_free(&s->all);
        kz_findings_init(&s->all);
        s_tools_free(s);
        s->nscanned = 0;
        s->nrescanned = 0;
        s_record_forget(s); /* a failed scan is the last one: the next request scans */
        int64_t took_ms = (s_mono_us() - s->t0_us) / 1000;
        if ((!s->started && s_publish_started(s) != 0) || s_publish_failed(s, took_ms) != 0)
            kz_error("unable to report the failed scan of '%s'", target->name);
    }
    goto done;
publish_failed:
    kz_error("scan of target '%s': unable to publish its results", target->name);
done:
    s_scan_free(s);
    kz_log_set_corr(cycle_corr[0] ? cycle_corr : NULL);
    return rc;
}

static int s_cycle(kz_agent_t *agent, void *arg)
{
    s_health_t *self = arg;
    const kz_config_t *cfg = kz_agent_config(agent);
    const char *only = kz_agent_run_target(agent);
    if (only && *only) {
        const kz_target_config_t *t = kz_config_target(cfg, only);
        if (!t)
            return kz_fail("agent.run names target '%s', which is not in the configuration", only);
        return s_scan_target(agent, self, t);
    }
    if (cfg->targets_count == 0) {
        kz_info("no targets configured: nothing to scan");
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < cfg->targets_count && !kz_agent_stopping(agent); i++)
        if (s_scan_target(agent, self, &cfg->targets[i]) != 0)
            rc = -1;
    return rc;
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    s_health_t *self = arg;
    self->store = kz_store_new(kz_agent_config(agent), "kaizen-code-health");
    if (!self->store)
        return kz_fail("out of memory");
    /* jansson seeds its hash function on first use; do it before any
       thread exists */
    json_object_seed(0);
    /* git runs in this thread keep the agent alive on the bus */
    kz_git_set_tick(kz_agent_proc_tick, agent);
    return 0;
}

int main(int argc, char **argv)
{
    static s_health_t health;
    const kz_agent_def_t def = {
        .name = "code-health",
        .layer = "monitoring",
        .summary = "runs the configured linters and type checkers on every target, incrementally "
                   "and in parallel, and publishes findings, metrics and scan results",
        .setup = s_setup,
        .cycle = s_cycle,
        .on_message = NULL,
        .arg = &health,
    };
    int rc = kz_agent_main(argc, argv, &def);
    kz_store_destroy(&health.store);
    return rc;
}
