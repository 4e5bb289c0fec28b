/*  test_runner.c - kaizen-test-runner (layer "validation"), service validate.tests

    Answers validate.request {plan_id, commit, base_commit} for the target
    named by the envelope (or, for hand-made requests, a body field
    "target"): runs the target's test command (targets[].test, an argv run
    without a shell; "{junit}" becomes the path of a JUnit XML report) in a
    detached worktree of the commit, STATE/worktrees/<target>/tests-<plan_id>,
    and in one of the base commit, tests-base-<commit>, and rejects the plan
    when a test that passed on the base fails now. The base results are
    cached per commit and test command in STATE/test-runner/<target>/
    <commit>.json, so one base is run once for all the plans built on it
    (a lock file beside it keeps two instances from running it twice; the
    newest 64 results per target are kept).

    What a run is made of, best first (the parsers are lib/kz_testresult.h):
      junit    the JUnit XML report the command wrote (testsuite/testcase,
               failure, error and skipped children; test id classname::name,
               else file::name, else name)
      lines    per-test lines in the output: automake's "PASS: name",
               "FAIL: name", "ERROR:", "SKIP:", "XFAIL:", "XPASS:", and TAP
               "ok N - name" / "not ok N - name" (# SKIP, # TODO)
      pytest   the summary "== 3 failed, 10 passed in 0.12s ==" (counts only)
      ctest    "100% tests passed, 0 tests failed out of 5" (counts only)
      summary  "N passed, N failed" (counts only)
      exit     nothing but the exit status
    The verdict compares the best level both runs have: named tests from
    the same kind of report (each test that passed on the base and now
    fails, errors or is missing is a reason of its own), else the counts,
    else the exit status; a command
    that exits non-zero where it exited 0 on the base is always a reject.
    A run that exceeds targets[].test_timeout is killed with its process
    group: reject "timed out". An unknown target, one without a test
    command, a commit that is not there, a worktree git refuses or a test
    command that cannot start: verdict "error" with the reason.

    Worktrees are removed after every request, whatever happened. During a
    run the agent keeps its bus registration alive (kz_proc's tick).
*/
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>

#include "kz_agent.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_proc.h"
#include "kz_recipe.h"
#include "kz_state.h"
#include "kz_testresult.h"

#define S_SERVICE       "validate.tests"
#define S_VALIDATOR     "test-runner"
#define S_OUT_CAP       (8u << 20) /* bytes of stdout and of stderr kept per run */
#define S_MAX_REASONS   50         /* reasons listed in a reply; the rest are counted */
#define S_MAX_LISTED    200        /* test ids listed in details.newly_failing */
#define S_CACHE_VERSION 1
#define S_CACHE_KEEP    64 /* base results kept per target */

/* One run of the test command on one commit */
typedef struct {
    char commit[KZ_GIT_OID_MAX];
    bool started;   /* the command ran (false: it could not be started) */
    bool timed_out; /* killed after targets[].test_timeout */
    int exit_code;  /* -1 when killed by a signal */
    int term_signal;
    const char *source;    /* junit | lines | pytest | ctest | summary | exit */
    kz_test_cases_t tests; /* sorted by id, one per id, when have_cases */
    bool have_cases;
    bool have_counts;
    long passed, failed, errors, skipped;
    int64_t duration_ms;
    bool cached;
    bool truncated;  /* output beyond S_OUT_CAP was dropped */
    char error[512]; /* why it could not run */
    char last[256];  /* the output's last non-empty line, for people */
} s_run_t;

/* A growing list of reasons */
typedef struct {
    char **items;
    size_t count, cap;
    size_t dropped; /* reasons beyond S_MAX_REASONS */
} s_reasons_t;

/* ------------------------------------------------------------ helpers */

static bool s_valid_plan_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-')
            return false;
    return true;
}

/* A commit as the protocol sends it: 4..64 hex digits (never an option or a
   revision expression that git would interpret) */
static bool s_valid_commit(const char *commit)
{
    size_t n = commit ? strlen(commit) : 0;
    if (n < 4 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)commit[i]))
            return false;
    return true;
}

/* RUN->error = the formatted text (cut to fit) */
static void s_run_error(s_run_t *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_run_error(s_run_t *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->error, sizeof run->error, fmt, ap);
    va_end(ap);
}

static void s_run_clear(s_run_t *run)
{
    kz_test_cases_free(&run->tests);
    memset(run, 0, sizeof *run);
    run->source = "exit";
}

/* RUN's counts are those of its named tests */
static void s_run_counts(s_run_t *run)
{
    run->passed = run->tests.passed;
    run->failed = run->tests.failed;
    run->errors = run->tests.errors;
    run->skipped = run->tests.skipped;
    run->have_counts = true;
}

static int s_reason(s_reasons_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_reason(s_reasons_t *r, const char *fmt, ...)
{
    if (r->count >= S_MAX_REASONS) {
        r->dropped++;
        return 0;
    }
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        char **items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return -1;
        r->items = items;
        r->cap = cap;
    }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    char *text = kz_testresult_clean(buf, strlen(buf), sizeof buf - 4);
    if (!text)
        return -1;
    r->items[r->count++] = text;
    return 0;
}

static void s_reasons_free(s_reasons_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->items[i]);
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ results */

/* Read the JUnit report at PATH into RUN (lib/kz_testresult.h). 1 read,
   0 no report (missing, or not JUnit XML: logged), -1 out of memory */
static int s_parse_junit(const char *path, s_run_t *run)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return 0;
    }
    if ((uint64_t)st.st_size > KZ_TESTRESULT_MAX_XML) {
        kz_warn("test report '%s' is too large (%lld bytes, at most %u): ignored", path,
                (long long)st.st_size, KZ_TESTRESULT_MAX_XML);
        close(fd);
        return 0;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = malloc(size);
    if (!buf) {
        close(fd);
        return -1;
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    char err[256];
    int rc = kz_testresult_parse_junit(buf, got, &run->tests, err, sizeof err);
    free(buf);
    if (rc == 0) {
        kz_warn("test report '%s' ignored: %s", path, err);
    } else if (rc == 1) {
        run->have_cases = true;
        run->source = "junit";
        s_run_counts(run);
    }
    return rc;
}

/* The per-test lines of the output TEXT into RUN. 0 / -1 (out of memory) */
static int s_parse_lines(const char *text, size_t len, s_run_t *run)
{
    if (kz_testresult_parse_lines(text, len, &run->tests) != 0)
        return -1;
    if (run->tests.count) {
        run->have_cases = true;
        run->source = "lines";
        s_run_counts(run);
    }
    return 0;
}

/* Counts from the last summary line of the output (ctest, pytest, "N
   passed, N failed"); the named tests' counts win when RUN has them */
static void s_parse_summary(const char *text, size_t len, s_run_t *run)
{
    kz_test_summary_t sum;
    if (!kz_testresult_parse_summary(text, len, &sum))
        return;
    if (!run->have_cases) {
        run->source = sum.source;
        run->passed = sum.passed;
        run->failed = sum.failed;
        run->errors = sum.errors;
        run->skipped = sum.skipped;
    }
    run->have_counts = true;
}

/* ------------------------------------------------------------ running */

/* Run TARGET's test command in WT (a worktree of RUN->commit); JUNIT is
   where "{junit}" points. Fills RUN. 0, or -1 when out of memory */
static int s_run_tests(kz_agent_t *agent, const kz_target_config_t *target, const char *wt,
                       const char *junit, s_run_t *run)
{
    unlink(junit);
    char **argv = kz_argv_expand(target->test, NULL, 0, wt, junit);
    if (!argv)
        return -1;
    kz_proc_opts_t po = {0};
    po.argv = (const char *const *)argv;
    po.cwd = wt;
    po.timeout_ms = target->test_timeout_ms > 0 ? target->test_timeout_ms : 600000;
    po.out_cap = S_OUT_CAP;
    po.err_cap = S_OUT_CAP;
    po.tick = kz_agent_proc_tick;
    po.tick_arg = agent;
    po.cancel = kz_agent_proc_cancel; /* the plan ended elsewhere: stop the suite */
    po.cancel_arg = agent;
    kz_proc_result_t pr;
    char err[512];
    int rc = kz_proc_run(&po, &pr, err, sizeof err);
    kz_strv_free(argv);
    run->duration_ms = pr.duration_us / 1000;
    if (rc != 0) {
        s_run_error(run, "unable to run the test command of '%s': %s", target->name, err);
        kz_proc_result_free(&pr);
        unlink(junit);
        return 0;
    }
    if (pr.cancelled) {
        char why[320];
        kz_agent_cancelled(agent, why, sizeof why);
        s_run_error(run, "stopped the tests of '%s' at %.12s: the request was %s", target->name,
                    run->commit, why[0] ? why : "cancelled");
        kz_proc_result_free(&pr);
        unlink(junit);
        return 0;
    }
    run->started = true;
    run->timed_out = pr.timed_out;
    run->exit_code = pr.exit_code;
    run->term_signal = pr.term_signal;
    run->truncated = pr.out_truncated || pr.err_truncated;
    int ret = 0;
    /* stdout, then stderr */
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
    kz_testresult_last_line(pr.out, pr.out_len, run->last, sizeof run->last);
    if (!run->last[0])
        kz_testresult_last_line(pr.err, pr.err_len, run->last, sizeof run->last);
    if (!run->timed_out) {
        int jr = s_parse_junit(junit, run);
        if (jr < 0 || (jr == 0 && s_parse_lines(text, total, run) != 0)) {
            ret = -1;
            goto done;
        }
        s_parse_summary(text, total, run);
    }
    if (run->truncated)
        kz_warn("the output of the tests of '%s' at %.12s went beyond %u bytes: the rest was "
                "not read",
                target->name, run->commit, S_OUT_CAP);
done:
    free(text);
    kz_proc_result_free(&pr);
    unlink(junit);
    return ret;
}

/* Check out RUN->commit at STATE/worktrees/<target>/<NAME>, run the tests
   there, remove the worktree. 0 with RUN filled (RUN->error set when
   the worktree could not be made or the command not started), -1 when
   out of memory */
static int s_test_commit(kz_agent_t *agent, const kz_target_config_t *target, const char *name,
                         s_run_t *run)
{
    const kz_config_t *cfg = kz_agent_config(agent);
    char rel[PATH_MAX], wt[PATH_MAX], junit[PATH_MAX];
    snprintf(rel, sizeof rel, "worktrees/%s/%s", target->name, name);
    if (kz_state_path(cfg, rel, wt, sizeof wt) != 0) {
        s_run_error(run, "path of worktree '%s' too long", rel);
        return 0;
    }
    snprintf(rel, sizeof rel, "test-runner/%s/junit-%s.xml", target->name, name);
    if (kz_state_path(cfg, rel, junit, sizeof junit) != 0) {
        s_run_error(run, "path of report '%s' too long", rel);
        return 0;
    }
    char err[512];
    if (kz_git_worktree_add(target->path, wt, NULL, run->commit, err, sizeof err) != 0) {
        s_run_error(run, "unable to check out %.12s of '%s': %s", run->commit, target->name, err);
        kz_error("%s", run->error);
        (void)kz_git_worktree_remove(target->path, wt, err, sizeof err);
        return 0;
    }
    kz_info("running the tests of '%s' at %.12s in '%s'", target->name, run->commit, wt);
    int rc = s_run_tests(agent, target, wt, junit, run);
    if (kz_git_worktree_remove(target->path, wt, err, sizeof err) != 0)
        kz_error("unable to remove worktree '%s': %s", wt, err);
    if (run->error[0])
        kz_error("%s", run->error);
    else
        kz_info("tests of '%s' at %.12s: %s, exit %d, %ld passed, %ld failed, %ld errors, %ld "
                "skipped (%s) in %lld ms",
                target->name, run->commit, run->timed_out ? "timed out" : "finished",
                run->exit_code, run->passed, run->failed, run->errors, run->skipped, run->source,
                (long long)run->duration_ms);
    return rc;
}

/* ------------------------------------------------------------ base cache */

static json_t *s_command_json(const kz_target_config_t *target)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < target->test_count; i++)
        if (json_array_append_new(arr, json_string(target->test[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

/* Load the cached base run at PATH into RUN when it is for this target,
   commit and test command. true when loaded */
static bool s_cache_load(const char *path, const kz_target_config_t *target, s_run_t *run)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc)
        return false;
    bool ok = false;
    json_t *cmd = s_command_json(target);
    const char *t = json_string_value(json_object_get(doc, "target"));
    const char *c = json_string_value(json_object_get(doc, "commit"));
    const char *src = json_string_value(json_object_get(doc, "source"));
    json_t *tests = json_object_get(doc, "tests");
    if (json_integer_value(json_object_get(doc, "version")) != S_CACHE_VERSION || !t ||
        strcmp(t, target->name) != 0 || !c || strcmp(c, run->commit) != 0 || !cmd ||
        !json_equal(cmd, json_object_get(doc, "command")) || !src || !json_is_object(tests)) {
        kz_info("base cache '%s' is for another target, commit or test command: ignored", path);
        goto done;
    }
    static const char *const sources[] = {"junit", "lines", "pytest", "ctest", "summary", "exit"};
    run->source = "exit";
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
        if (strcmp(src, sources[i]) == 0)
            run->source = sources[i];
    run->started = true;
    run->exit_code = (int)json_integer_value(json_object_get(doc, "exit_code"));
    run->duration_ms = json_integer_value(json_object_get(doc, "duration_ms"));
    run->have_cases = json_is_true(json_object_get(doc, "have_cases"));
    run->have_counts = json_is_true(json_object_get(doc, "have_counts"));
    run->passed = (long)json_integer_value(json_object_get(doc, "passed"));
    run->failed = (long)json_integer_value(json_object_get(doc, "failed"));
    run->errors = (long)json_integer_value(json_object_get(doc, "errors"));
    run->skipped = (long)json_integer_value(json_object_get(doc, "skipped"));
    const char *key;
    json_t *val;
    json_object_foreach(tests, key, val)
    {
        const char *st = json_string_value(val);
        kz_test_status_t status = KZ_TEST_PASS;
        (void)kz_test_status_parse(st, &status); /* unknown: a pass */
        if (kz_test_cases_add(&run->tests, key, strlen(key), status, NULL, 0) != 0)
            goto done;
    }
    if (run->have_cases) {
        /* the counts stay the cached ones (the tests beyond the cap count) */
        kz_test_cases_finish(&run->tests);
        run->have_counts = true;
    }
    run->cached = true;
    ok = true;
done:
    json_decref(cmd);
    json_decref(doc);
    if (!ok) {
        char commit[KZ_GIT_OID_MAX];
        memcpy(commit, run->commit, sizeof commit);
        s_run_clear(run);
        memcpy(run->commit, commit, sizeof commit);
    }
    return ok;
}

/* Write RUN to PATH atomically (temp file + rename). 0 / -1 (logged) */
static int s_cache_save(const char *path, const kz_target_config_t *target, const s_run_t *run)
{
    json_t *tests = json_object();
    json_t *doc = json_object();
    json_t *cmd = s_command_json(target);
    int rc = -1;
    if (!tests || !doc || !cmd)
        goto done;
    for (size_t i = 0; i < run->tests.count; i++)
        if (json_object_set_new(tests, run->tests.items[i].id,
                                json_string(kz_test_status_name(run->tests.items[i].status))) != 0)
            goto done;
    if (json_object_set_new(doc, "version", json_integer(S_CACHE_VERSION)) != 0 ||
        json_object_set_new(doc, "target", json_string(target->name)) != 0 ||
        json_object_set_new(doc, "commit", json_string(run->commit)) != 0 ||
        json_object_set(doc, "command", cmd) != 0 ||
        json_object_set_new(doc, "source", json_string(run->source)) != 0 ||
        json_object_set_new(doc, "exit_code", json_integer(run->exit_code)) != 0 ||
        json_object_set_new(doc, "duration_ms", json_integer(run->duration_ms)) != 0 ||
        json_object_set_new(doc, "have_cases", json_boolean(run->have_cases)) != 0 ||
        json_object_set_new(doc, "have_counts", json_boolean(run->have_counts)) != 0 ||
        json_object_set_new(doc, "passed", json_integer(run->passed)) != 0 ||
        json_object_set_new(doc, "failed", json_integer(run->failed)) != 0 ||
        json_object_set_new(doc, "errors", json_integer(run->errors)) != 0 ||
        json_object_set_new(doc, "skipped", json_integer(run->skipped)) != 0 ||
        json_object_set_new(doc, "created_us", json_integer(kz_now_us())) != 0 ||
        json_object_set(doc, "tests", tests) != 0)
        goto done;
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        goto done;
    if (json_dump_file(doc, tmp, JSON_COMPACT | JSON_SORT_KEYS) != 0 || rename(tmp, path) != 0) {
        kz_error("unable to write the base cache '%s': %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    json_decref(tests);
    json_decref(doc);
    json_decref(cmd);
    return rc;
}

/* mkdir -p DIR (0755). 0 / -1 */
static int s_mkdirs(const char *dir)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Keep the newest S_CACHE_KEEP base results of DIR (by modification
   time); older ones go with their lock files. Best effort. */
static void s_cache_prune(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct {
        char name[128];
        time_t mtime;
    } *items = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || len >= 128 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            stat(path, &st) != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *grown = realloc(items, ncap * sizeof *items);
            if (!grown)
                break;
            items = grown;
            cap = ncap;
        }
        snprintf(items[n].name, sizeof items[n].name, "%s", e->d_name);
        items[n++].mtime = st.st_mtime;
    }
    closedir(d);
    while (n > S_CACHE_KEEP) {
        size_t oldest = 0;
        for (size_t i = 1; i < n; i++)
            if (items[i].mtime < items[oldest].mtime)
                oldest = i;
        char path[PATH_MAX];
        int len = snprintf(path, sizeof path, "%s/%.*s", dir, (int)strlen(items[oldest].name) - 5,
                           items[oldest].name);
        if (len > 0 && (size_t)len + 6 <= sizeof path) {
            memcpy(path + len, ".json", 6);
            unlink(path);
            memcpy(path + len, ".lock", 6);
            unlink(path);
        }
        items[oldest] = items[--n];
    }
    free(items);
}

/* The base run of RUN->commit: from the cache, else run and cached. The
   lock STATE/test-runner/<target>/<commit>.lock makes a second instance
   wait for the first one's result instead of running the same base (in
   the same worktree) at the same time. 0 / -1 (out of memory) */
static int s_base_run(kz_agent_t *agent, const kz_target_config_t *target, s_run_t *run)
{
    const kz_config_t *cfg = kz_agent_config(agent);
    char rel[PATH_MAX], dir[PATH_MAX], cache[PATH_MAX], lockp[PATH_MAX];
    snprintf(rel, sizeof rel, "test-runner/%s", target->name);
    if (kz_state_path(cfg, rel, dir, sizeof dir) != 0 ||
        snprintf(cache, sizeof cache, "%s/%s.json", dir, run->commit) >= (int)sizeof cache ||
        snprintf(lockp, sizeof lockp, "%s/%s.lock", dir, run->commit) >= (int)sizeof lockp) {
        s_run_error(run, "state path too long for target '%s'", target->name);
        return 0;
    }
    if (s_mkdirs(dir) != 0) {
        s_run_error(run, "unable to create '%s': %s", dir, strerror(errno));
        kz_error("%s", run->error);
        return 0;
    }
    int fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        s_run_error(run, "unable to open '%s': %s", lockp, strerror(errno));
        kz_error("%s", run->error);
        return 0;
    }
    /* wait for another instance running this base, keeping our own
       registrations alive; give up after its test timeout and a minute */
    int64_t deadline = kz_now_us() + ((int64_t)target->test_timeout_ms + 60000) * 1000;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK || kz_now_us() > deadline) {
            s_run_error(run, "unable to lock '%s': %s", lockp,
                        errno == EWOULDBLOCK ? "still held by another test runner"
                                             : strerror(errno));
            kz_error("%s", run->error);
            close(fd);
            return 0;
        }
        kz_agent_keepalive(agent);
        char why[320];
        if (kz_agent_cancelled(agent, why, sizeof why)) {
            s_run_error(run, "stopped waiting for the base run of '%s': the request was %s",
                        target->name, why);
            close(fd);
            return 0;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int rc = 0;
    if (s_cache_load(cache, target, run)) {
        kz_info("base %.12s of '%s' from the cache: %ld passed, %ld failed, %ld errors (%s)",
                run->commit, target->name, run->passed, run->failed, run->errors, run->source);
    } else {
        char name[128];
        snprintf(name, sizeof name, "tests-base-%s", run->commit);
        rc = s_test_commit(agent, target, name, run);
        /* only a complete run is worth keeping: a timeout or a start
           failure may be the machine's, not the commit's */
        if (rc == 0 && run->started && !run->timed_out && !run->error[0] &&
            s_cache_save(cache, target, run) == 0)
            s_cache_prune(dir);
    }
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------ verdict */

static const char *s_short(const char *commit)
{
    static char buf[16];
    snprintf(buf, sizeof buf, "%.12s", commit);
    return buf;
}

/* Compare NOW with BASE into REASONS; *NEWLY gets the ids of the tests
   that passed on the base and do not now (borrowed from BASE). 0 / -1 */
static int s_compare(const kz_target_config_t *target, const s_run_t *base, const s_run_t *now,
                     s_reasons_t *reasons, const char ***newly, size_t *nnewly)
{
    *newly = NULL;
    *nnewly = 0;
    if (now->timed_out)
        return s_reason(reasons,
                        "the tests timed out after %d ms on %s (targets[].test_timeout of '%s')",
                        target->test_timeout_ms, s_short(now->commit), target->name);
    /* names compare only within one kind of report: a JUnit id is not a
       PASS: line's name */
    if (base->have_cases && now->have_cases && strcmp(base->source, now->source) == 0) {
        const char **list = calloc(base->tests.count + 1, sizeof *list);
        if (!list)
            return -1;
        *newly = list;
        for (size_t i = 0; i < base->tests.count; i++) {
            const kz_test_case_t *b = &base->tests.items[i];
            if (b->status != KZ_TEST_PASS)
                continue;
            const kz_test_case_t *n = kz_test_cases_find(&now->tests, b->id);
            if (n && (n->status == KZ_TEST_PASS || n->status == KZ_TEST_SKIP))
                continue;
            list[(*nnewly)++] = b->id;
            int rc;
            if (!n)
                rc = s_reason(reasons, "test %s passed on the base commit and did not run on %s",
                              b->id, s_short(now->commit));
            else
                rc = s_reason(reasons, "test %s passed on the base commit and %s on %s%s%s", b->id,
                              n->status == KZ_TEST_ERROR ? "errors" : "fails", s_short(now->commit),
                              n->message ? ": " : "", n->message ? n->message : "");
            if (rc != 0)
                return -1;
        }
        if (*nnewly)
            return 0;
    } else if (base->have_counts && now->have_counts) {
        long bad_now = now->failed + now->errors, bad_base = base->failed + base->errors;
        if (bad_now > bad_base || now->passed < base->passed)
            return s_reason(reasons,
                            "%ld passed and %ld failed on %s, %ld passed and %ld failed on the "
                            "base commit (%s summary)",
                            now->passed, bad_now, s_short(now->commit), base->passed, bad_base,
                            now->source);
    }
    if (base->exit_code == 0 && now->exit_code != 0) {
        if (now->term_signal)
            return s_reason(reasons,
                            "the test command was killed by signal %d on %s (it "
                            "passed on the base commit)%s%s",
                            now->term_signal, s_short(now->commit), now->last[0] ? ": " : "",
                            now->last);
        return s_reason(reasons, "the test command exited %d on %s, 0 on the base commit%s%s",
                        now->exit_code, s_short(now->commit), now->last[0] ? ": " : "", now->last);
    }
    return 0;
}

/* details.<KEY> = what RUN was */
static int s_put_run(kz_msg_t *msg, kz_val_t *details, const char *key, const s_run_t *run)
{
    kz_val_t *m = kz_map_put_map(msg, details, key);
    if (!m)
        return -1;
    if (kz_map_put_str(msg, m, "commit", run->commit) != 0 ||
        kz_map_put_str(msg, m, "source", run->source) != 0 ||
        kz_map_put_int(msg, m, "exit_code", run->exit_code) != 0 ||
        kz_map_put_bool(msg, m, "timed_out", run->timed_out) != 0 ||
        kz_map_put_int(msg, m, "passed", run->passed) != 0 ||
        kz_map_put_int(msg, m, "failed", run->failed) != 0 ||
        kz_map_put_int(msg, m, "errors", run->errors) != 0 ||
        kz_map_put_int(msg, m, "skipped", run->skipped) != 0 ||
        kz_map_put_int(msg, m, "tests", (int64_t)run->tests.count) != 0 ||
        kz_map_put_int(msg, m, "duration_ms", run->duration_ms) != 0 ||
        kz_map_put_bool(msg, m, "cached", run->cached) != 0)
        return -1;
    if (run->last[0] && kz_map_put_str(msg, m, "last_line", run->last) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ requests */

typedef struct {
    const char *plan_id;
    const char *target;
    const char *verdict;
    s_reasons_t reasons;
    s_run_t base, now;
    bool ran; /* base and now were attempted: put them in details */
    const char **newly;
    size_t nnewly;
} s_job_t;

static int s_reply(kz_agent_t *agent, const kz_delivery_t *d, s_job_t *job)
{
    kz_msg_t *reply = kz_msg_new("validate.result");
    if (!reply)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(reply);
    int rc = -1;
    if (kz_map_put_str(reply, b, "plan_id", job->plan_id) != 0 ||
        kz_map_put_str(reply, b, "validator", S_VALIDATOR) != 0 ||
        kz_map_put_str(reply, b, "verdict", job->verdict) != 0)
        goto done;
    kz_val_t *arr = kz_map_put_array(reply, b, "reasons");
    if (!arr)
        goto done;
    for (size_t i = 0; i < job->reasons.count; i++) {
        kz_val_t *v = kz_array_push(reply, arr);
        if (!v || kz_val_set_str(reply, v, job->reasons.items[i]) != 0)
            goto done;
    }
    if (job->reasons.dropped) {
        char more[64];
        snprintf(more, sizeof more, "... and %zu more", job->reasons.dropped);
        kz_val_t *v = kz_array_push(reply, arr);
        if (!v || kz_val_set_str(reply, v, more) != 0)
            goto done;
    }
    kz_val_t *details = kz_map_put_map(reply, b, "details");
    if (!details)
        goto done;
    if (job->target && kz_map_put_str(reply, details, "target", job->target) != 0)
        goto done;
    if (job->ran) {
        if (s_put_run(reply, details, "base", &job->base) != 0 ||
            s_put_run(reply, details, "now", &job->now) != 0)
            goto done;
        kz_val_t *nl = kz_map_put_array(reply, details, "newly_failing");
        for (size_t i = 0; nl && i < job->nnewly && i < S_MAX_LISTED; i++) {
            kz_val_t *v = kz_array_push(reply, nl);
            if (!v || kz_val_set_str(reply, v, job->newly[i]) != 0)
                goto done;
        }
        if (!nl)
            goto done;
    }
    if (job->target && kz_msg_set_target(reply, job->target) != 0)
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        kz_msg_destroy(&reply);
        return kz_fail("out of memory building the reply for plan '%s'", job->plan_id);
    }
    if (job->reasons.count)
        kz_info("plan %s: %s (%s%s)", job->plan_id, job->verdict, job->reasons.items[0],
                job->reasons.count > 1 ? ", ..." : "");
    else
        kz_info("plan %s: %s", job->plan_id, job->verdict);
    return kz_bus_reply(kz_agent_bus(agent), d, &reply);
}

/* An "error" reply (PROTOCOL.md 4.18) for a request we cannot take. 0 / -1 */
static int s_reply_error(kz_agent_t *agent, const kz_delivery_t *d, const char *code,
                         const char *text)
{
    kz_msg_t *reply = kz_msg_new("error");
    if (!reply || kz_map_put_str(reply, kz_msg_body(reply), "code", code) != 0 ||
        kz_map_put_str(reply, kz_msg_body(reply), "message", text) != 0) {
        kz_msg_destroy(&reply);
        return kz_fail("out of memory");
    }
    return kz_bus_reply(kz_agent_bus(agent), d, &reply);
}

/* The work of one request; sets job->verdict and the reasons. 0 / -1 */
static int s_validate(kz_agent_t *agent, const kz_val_t *body, s_job_t *job)
{
    const kz_config_t *cfg = kz_agent_config(agent);
    job->verdict = "error";
    const char *commit = kz_map_str(body, "commit");
    const char *base_commit = kz_map_str(body, "base_commit");
    if (!job->target)
        return s_reason(&job->reasons, "the request names no target (envelope target)");
    const kz_target_config_t *target = kz_config_target(cfg, job->target);
    if (!target)
        return s_reason(&job->reasons, "unknown target '%s': not in the configuration's targets",
                        job->target);
    if (!target->test || target->test_count == 0)
        return s_reason(&job->reasons, "target '%s' has no test command (targets[].test)",
                        target->name);
    if (!s_valid_commit(commit) || !s_valid_commit(base_commit))
        return s_reason(&job->reasons,
                        "invalid commit '%s' or base commit '%s': expected hex "
                        "object names",
                        commit ? commit : "", base_commit ? base_commit : "");
    char err[512];
    if (kz_git_check_repo(target->path, err, sizeof err) != 0)
        return s_reason(&job->reasons, "target '%s': %s", target->name, err);
    if (kz_git_rev(target->path, commit, job->now.commit, err, sizeof err) != 0)
        return s_reason(&job->reasons, "commit %s: %s", commit, err);
    if (kz_git_rev(target->path, base_commit, job->base.commit, err, sizeof err) != 0)
        return s_reason(&job->reasons, "base commit %s: %s", base_commit, err);

    if (s_base_run(agent, target, &job->base) != 0)
        return -1;
    if (job->base.error[0])
        return s_reason(&job->reasons, "base commit %s: %s", s_short(job->base.commit),
                        job->base.error);
    if (job->base.timed_out)
        return s_reason(&job->reasons,
                        "the tests timed out after %d ms on the base commit %s: nothing to "
                        "compare with (targets[].test_timeout of '%s')",
                        target->test_timeout_ms, s_short(job->base.commit), target->name);
    char name[160];
    snprintf(name, sizeof name, "tests-%s", job->plan_id);
    if (strcmp(job->now.commit, job->base.commit) == 0) {
        /* nothing changed: the base's results are the commit's */
        s_run_t *now = &job->now;
        now->started = true;
        now->exit_code = job->base.exit_code;
        now->source = job->base.source;
        now->have_counts = job->base.have_counts;
        now->passed = job->base.passed, now->failed = job->base.failed;
        now->errors = job->base.errors, now->skipped = job->base.skipped;
        now->cached = job->base.cached;
        job->ran = true;
        job->verdict = "pass";
        return 0;
    }
    if (s_test_commit(agent, target, name, &job->now) != 0)
        return -1;
    job->ran = true;
    if (job->now.error[0])
        return s_reason(&job->reasons, "%s", job->now.error);
    if (s_compare(target, &job->base, &job->now, &job->reasons, &job->newly, &job->nnewly) != 0)
        return -1;
    job->verdict = job->reasons.count || job->reasons.dropped ? "reject" : "pass";
    return 0;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *delivery, void *arg)
{
    (void)arg;
    if (delivery->kind != KZ_DELIVERY_REQUEST || strcmp(delivery->topic, S_SERVICE) != 0)
        return 0;
    /* the runtime answers a failed request with an error reply */
    if (strcmp(kz_msg_type(delivery->msg), "validate.request") != 0)
        return kz_fail("'%s' wants a validate.request, got '%s'", S_SERVICE,
                       kz_msg_type(delivery->msg));
    const kz_val_t *body = kz_msg_body_const(delivery->msg);
    s_job_t job;
    memset(&job, 0, sizeof job);
    s_run_clear(&job.base);
    s_run_clear(&job.now);
    job.plan_id = kz_map_str(body, "plan_id");
    if (!s_valid_plan_id(job.plan_id)) {
        /* no validate.result: its plan_id would repeat what we refuse */
        kz_error("validate.request from '%s' with an invalid plan id", kz_msg_src(delivery->msg));
        return s_reply_error(agent, delivery, "bad_request",
                             "invalid plan id: expected 1 to 128 of A-Z a-z 0-9 _ -");
    }
    job.target = kz_msg_target(delivery->msg);
    if (!job.target || !*job.target)
        job.target = kz_map_str(body, "target"); /* `kaizen call` sets no envelope target */
    if (job.target && !*job.target)
        job.target = NULL;
    if (job.target && !kz_config_target(kz_agent_config(agent), job.target)) {
        /* never echo an unknown name into the reply envelope unchecked */
        job.verdict = "error";
        char shown[64];
        snprintf(shown, sizeof shown, "%s", job.target);
        job.target = NULL;
        if (s_reason(&job.reasons, "unknown target '%s': not in the configuration's targets",
                     shown) != 0)
            return kz_fail("out of memory");
    } else {
        kz_info("plan %s: validating %.12s against %.12s of '%s'", job.plan_id,
                kz_map_str(body, "commit"), kz_map_str(body, "base_commit"),
                job.target ? job.target : "?");
        if (s_validate(agent, body, &job) != 0) {
            s_run_clear(&job.base);
            s_run_clear(&job.now);
            free(job.newly);
            s_reasons_free(&job.reasons);
            return kz_fail("out of memory validating plan '%s'", job.plan_id);
        }
    }
    if (strcmp(job.verdict, "error") == 0 && job.reasons.count)
        kz_error("plan %s: %s", job.plan_id, job.reasons.items[0]);
    int rc = s_reply(agent, delivery, &job);
    s_run_clear(&job.base);
    s_run_clear(&job.now);
    free(job.newly);
    s_reasons_free(&job.reasons);
    return rc;
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    (void)arg;
    xmlInitParser();
    kz_git_set_tick(kz_agent_proc_tick, agent);
    return kz_bus_offer(kz_agent_bus(agent), S_SERVICE);
}

int main(int argc, char **argv)
{
    const kz_agent_def_t def = {
        .name = "test-runner",
        .layer = "validation",
        .summary = "serves validate.tests: runs a target's tests on a plan's commit and its base "
                   "and rejects the plan when a test that passed fails",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = NULL,
    };
    int rc = kz_agent_main(argc, argv, &def);
    xmlCleanupParser();
    return rc;
}
