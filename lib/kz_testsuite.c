/*  kz_testsuite.c - running a target's test suite and judging the run
    (see kz_testsuite.h for the contracts)

    Everything the suite leaves behind - its output, its JUnit report, the
    imports file of the Python hook - is written by the target's code and
    read as hostile input: capped, checked, never followed through a
    symlink, never opened in a way that could block (a FIFO), cleaned
    before it reaches a message.
*/
#include "kz_testsuite.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "kz_log.h"
#include "kz_msg.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define S_CACHE_VERSION 2
#define S_IMPORTS_FILE  "imports.txt"
#define S_HOOK_DIR      "pyhook"

/* The Python hook (kz_testsuite.h). Names start with _kz_ so that nothing
   of it shadows what a project's code looks up in sitecustomize. */
static const char s_hook_py[] =
    "# sitecustomize.py - written by kaizen for one test run, first on PYTHONPATH.\n"
    "# At exit it appends to $KAIZEN_IMPORTS_FILE one line per imported top-level\n"
    "# module that also exists in the worktree $KAIZEN_WORKTREE (NAME/__init__.py\n"
    "# or NAME.py at its root, in src/ or in lib/) but was loaded from elsewhere:\n"
    "# NAME <TAB> ORIGIN <TAB> DIR. Then it runs the sitecustomize it hides.\n"
    "import atexit as _kz_atexit\n"
    "import os as _kz_os\n"
    "import sys as _kz_sys\n"
    "\n"
    "\n"
    "def _kz_report():\n"
    "    out = _kz_os.environ.get(\"KAIZEN_IMPORTS_FILE\")\n"
    "    root = _kz_os.environ.get(\"KAIZEN_WORKTREE\")\n"
    "    if not out or not root:\n"
    "        return\n"
    "    try:\n"
    "        root = _kz_os.path.realpath(root)\n"
    "        skip = set(getattr(_kz_sys, \"stdlib_module_names\", ()))\n"
    "        skip.update(_kz_sys.builtin_module_names)\n"
    "        skip.update((\"setup\", \"conftest\", \"sitecustomize\", \"usercustomize\"))\n"
    "        seen, lines = set(), []\n"
    "        for sub in (\".\", \"src\", \"lib\"):\n"
    "            base = _kz_os.path.join(root, sub)\n"
    "            try:\n"
    "                names = sorted(_kz_os.listdir(base))\n"
    "            except OSError:\n"
    "                continue\n"
    "            for name in names:\n"
    "                path = _kz_os.path.join(base, name)\n"
    "                if name.endswith(\".py\") and _kz_os.path.isfile(path):\n"
    "                    name = name[:-3]\n"
    "                elif not _kz_os.path.isfile(_kz_os.path.join(path, \"__init__.py\")):\n"
    "                    continue\n"
    "                if not name.isidentifier() or name in seen or name in skip:\n"
    "                    continue\n"
    "                seen.add(name)\n"
    "                mod = _kz_sys.modules.get(name)\n"
    "                if mod is None:\n"
    "                    continue\n"
    "                origin = getattr(mod, \"__file__\", None)\n"
    "                if not origin:\n"
    "                    paths = list(getattr(mod, \"__path__\", None) or ())\n"
    "                    origin = paths[0] if paths else None\n"
    "                if not origin:\n"
    "                    continue\n"
    "                real = _kz_os.path.realpath(origin)\n"
    "                if real == root or real.startswith(root + _kz_os.sep):\n"
    "                    continue\n"
    "                lines.append(\"%s\\t%s\\t%s\\n\" % (name, origin, sub))\n"
    "        if lines:\n"
    "            with open(out, \"a\", encoding=\"utf-8\", errors=\"replace\") as f:\n"
    "                f.write(\"\".join(lines))\n"
    "    except Exception:\n"
    "        pass\n"
    "\n"
    "\n"
    "_kz_atexit.register(_kz_report)\n"
    "\n"
    "\n"
    "def _kz_chain():\n"
    "    import importlib.machinery\n"
    "    import importlib.util\n"
    "\n"
    "    here = _kz_os.path.dirname(_kz_os.path.abspath(__file__))\n"
    "    path = [p for p in _kz_sys.path if _kz_os.path.abspath(p or \".\") != here]\n"
    "    spec = importlib.machinery.PathFinder.find_spec(\"sitecustomize\", path)\n"
    "    if spec is None or spec.loader is None:\n"
    "        return\n"
    "    mod = importlib.util.module_from_spec(spec)\n"
    "    spec.loader.exec_module(mod)\n"
    "\n"
    "\n"
    "_kz_chain()\n";

/* ------------------------------------------------------------ runs */

void kz_testsuite_run_init(kz_testsuite_run_t *run)
{
    memset(run, 0, sizeof *run);
    kz_test_cases_init(&run->tests);
    run->source = "exit";
}

void kz_testsuite_run_clear(kz_testsuite_run_t *run)
{
    char commit[KZ_GIT_OID_MAX];
    memcpy(commit, run->commit, sizeof commit);
    kz_test_cases_free(&run->tests);
    kz_testsuite_run_init(run);
    memcpy(run->commit, commit, sizeof commit);
}

/* BUF (LEN bytes) = the formatted text, cut to fit */
static void s_set(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_set(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* RUN's counts are those of its named tests */
static void s_counts_from_cases(kz_testsuite_run_t *run)
{
    run->passed = run->tests.passed;
    run->failed = run->tests.failed;
    run->errors = run->tests.errors;
    run->skipped = run->tests.skipped;
    run->have_counts = true;
}

static bool s_python_name(const char *arg)
{
    const char *base = strrchr(arg, '/');
    base = base ? base + 1 : arg;
    return strncmp(base, "python", 6) == 0 || strncmp(base, "pytest", 6) == 0 ||
           strncmp(base, "py.test", 7) == 0;
}

bool kz_testsuite_is_python(const kz_target_config_t *target)
{
    for (size_t i = 0; i < target->languages_count; i++)
        if (strcmp(target->languages[i], "python") == 0)
            return true;
    if (!target->test || target->test_count == 0)
        return false;
    if (s_python_name(target->test[0]))
        return true;
    const char *base = strrchr(target->test[0], '/');
    base = base ? base + 1 : target->test[0];
    return strcmp(base, "env") == 0 && target->test_count > 1 && s_python_name(target->test[1]);
}

/* ------------------------------------------------------------ files */

/* Read at most MAX bytes of the regular file PATH (never through a
   symlink, never blocking on a FIFO) into a malloc'd buffer. 1 read (*BUF,
   *LEN; *BIGGER when the file had more), 0 no such regular file, -1 out
   of memory */
static int s_read_capped(const char *path, size_t max, char **buf, size_t *len, bool *bigger)
{
    *buf = NULL;
    *len = 0;
    *bigger = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    size_t want = (uint64_t)st.st_size > max ? max : (size_t)st.st_size;
    *bigger = (uint64_t)st.st_size > max;
    char *b = malloc(want + 1);
    if (!b) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, b + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    b[got] = '\0';
    *buf = b;
    *len = got;
    return 1;
}

/* The JUnit report at PATH into RUN (kz_testresult.h). 0, or -1 when out
   of memory; a missing report or one that is not JUnit XML is logged and
   left out */
static int s_read_junit(const char *path, kz_testsuite_run_t *run)
{
    char *buf;
    size_t len;
    bool bigger;
    int rc = s_read_capped(path, KZ_TESTRESULT_MAX_XML, &buf, &len, &bigger);
    if (rc <= 0)
        return rc;
    if (bigger || len == 0) {
        if (bigger)
            kz_warn("test report '%s' is too large (at most %u bytes): ignored", path,
                    KZ_TESTRESULT_MAX_XML);
        free(buf);
        return 0;
    }
    char err[256];
    rc = kz_testresult_parse_junit(buf, len, &run->tests, err, sizeof err);
    free(buf);
    if (rc == 0) {
        kz_warn("test report '%s' ignored: %s", path, err);
    } else if (rc == 1) {
        run->have_cases = true;
        run->source = "junit";
        s_counts_from_cases(run);
    }
    return rc < 0 ? -1 : 0;
}

/* Counts from the last summary of the output (unittest, pytest, ctest,
   "N passed, N failed"); the named tests' counts win when RUN has them */
static void s_read_summary(const char *text, size_t len, kz_testsuite_run_t *run)
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

bool kz_testsuite_parse_imports(const char *buf, size_t len, kz_testsuite_run_t *run)
{
    size_t pos = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        const char *t1 = memchr(line, '\t', n);
        const char *t2 = t1 ? memchr(t1 + 1, '\t', n - (size_t)(t1 + 1 - line)) : NULL;
        if (!t1 || !t2)
            continue;
        size_t nname = (size_t)(t1 - line), norigin = (size_t)(t2 - t1 - 1);
        size_t ndir = n - (size_t)(t2 + 1 - line);
        const char *dir = t2 + 1;
        bool ok = nname > 0 && nname < sizeof run->foreign_module && norigin > 0 &&
                  (isalpha((unsigned char)line[0]) || line[0] == '_');
        for (size_t i = 0; ok && i < nname; i++)
            ok = isalnum((unsigned char)line[i]) || line[i] == '_';
        const char *dirs[] = {".", "src", "lib"};
        const char *which = NULL;
        for (size_t i = 0; ok && i < 3 && !which; i++)
            if (ndir == strlen(dirs[i]) && memcmp(dir, dirs[i], ndir) == 0)
                which = dirs[i];
        if (!ok || !which)
            continue;
        char *origin = kz_testresult_clean(t1 + 1, norigin, sizeof run->foreign_origin - 4);
        if (!origin)
            return false; /* out of memory: as good as nothing found */
        if (!*origin) {
            free(origin);
            continue;
        }
        memcpy(run->foreign_module, line, nname);
        run->foreign_module[nname] = '\0';
        snprintf(run->foreign_origin, sizeof run->foreign_origin, "%s", origin);
        snprintf(run->foreign_dir, sizeof run->foreign_dir, "%s", which);
        free(origin);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ running */

/* Write the Python hook into WORK/pyhook. 0 / -1 with ERR */
static int s_write_hook(const char *work, char *err, size_t errlen)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/%s", work, S_HOOK_DIR) >= (int)sizeof dir ||
        snprintf(path, sizeof path, "%s/sitecustomize.py", dir) >= (int)sizeof path) {
        s_set(err, errlen, "path too long: %s", work);
        return -1;
    }
    if (kz_mkdirs(dir, 0755, err, errlen) != 0)
        return -1;
    int fd = kz_file_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        s_set(err, errlen, "unable to write '%s': %s", path, strerror(errno));
        return -1;
    }
    size_t len = sizeof s_hook_py - 1, done = 0;
    while (done < len) {
        ssize_t n = write(fd, s_hook_py + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s_set(err, errlen, "unable to write '%s': %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    close(fd);
    return 0;
}

/* The environment entries of a run: targets[].env and, for Python, the
   hook's (PYTHONPATH first the hook's directory, then the user's).
   NULL-terminated, malloc'd strings; NULL when out of memory */
static char **s_env(const kz_target_config_t *target, const char *dir, const char *work,
                    bool python)
{
    size_t n = target->env_count;
    char **env = calloc(n + 5, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    /* tests run the target's code by design: `python3 -m pytest` may
       import the project from the working directory, which the sandbox's
       PYTHONSAFEPATH=1 (there for tools) would stop; kaizen's own
       PYTHONPATH is not passed on, only the target's */
    if (!(env[k++] = strdup("PYTHONSAFEPATH=")))
        goto oom;
    const char *user_path = NULL;
    for (size_t i = 0; i < n; i++) {
        if (python && strncmp(target->env[i], "PYTHONPATH=", 11) == 0) {
            user_path = target->env[i] + 11; /* the last one wins, as in kz_proc */
            continue;
        }
        if (!(env[k++] = strdup(target->env[i])))
            goto oom;
    }
    if (python) {
        bool more = user_path && *user_path;
        if (asprintf(&env[k++], "PYTHONPATH=%s/%s%s%s", work, S_HOOK_DIR, more ? ":" : "",
                     more ? user_path : "") < 0) {
            env[--k] = NULL;
            goto oom;
        }
        if (asprintf(&env[k++], "KAIZEN_IMPORTS_FILE=%s/%s", work, S_IMPORTS_FILE) < 0) {
            env[--k] = NULL;
            goto oom;
        }
        if (asprintf(&env[k++], "KAIZEN_WORKTREE=%s", dir) < 0) {
            env[--k] = NULL;
            goto oom;
        }
    }
    return env;
oom:
    kz_strv_free(env);
    return NULL;
}

/* The output and the files of a finished run into RUN. 0 / -1 (out of memory) */
static int s_read_run(const kz_proc_result_t *pr, const char *dir, const char *junit,
                      const char *imports, bool python, kz_testsuite_run_t *run)
{
    /* stdout, then stderr */
    size_t total = pr->out_len + 1 + pr->err_len;
    char *text = malloc(total + 1);
    if (!text)
        return -1;
    memcpy(text, pr->out, pr->out_len);
    text[pr->out_len] = '\n';
    memcpy(text + pr->out_len + 1, pr->err, pr->err_len);
    text[total] = '\0';
    kz_testresult_last_line(pr->out, pr->out_len, run->last, sizeof run->last);
    if (!run->last[0])
        kz_testresult_last_line(pr->err, pr->err_len, run->last, sizeof run->last);
    kz_testresult_problem(text, total, dir, run->problem, sizeof run->problem);
    int rc = 0;
    if (!run->timed_out) {
        if (s_read_junit(junit, run) != 0 ||
            (!run->have_cases && kz_testresult_parse_lines(text, total, &run->tests) != 0)) {
            rc = -1;
            goto done;
        }
        if (!run->have_cases && run->tests.count) {
            run->have_cases = true;
            run->source = "lines";
            s_counts_from_cases(run);
        }
        s_read_summary(text, total, run);
    }
    if (python) {
        char *buf;
        size_t len;
        bool bigger;
        int r = s_read_capped(imports, KZ_TESTSUITE_MAX_IMPORTS, &buf, &len, &bigger);
        if (r < 0) {
            rc = -1;
            goto done;
        }
        if (r > 0) {
            (void)kz_testsuite_parse_imports(buf, len, run);
            free(buf);
        }
    }
done:
    free(text);
    return rc;
}

int kz_testsuite_exec(const kz_target_config_t *target, const char *dir, const char *work,
                      const kz_proc_opts_t *proc, kz_testsuite_run_t *run)
{
    char junit[PATH_MAX], imports[PATH_MAX], err[512];
    run->timeout_ms = target->test_timeout_ms;
    if (snprintf(junit, sizeof junit, "%s/junit.xml", work) >= (int)sizeof junit ||
        snprintf(imports, sizeof imports, "%s/%s", work, S_IMPORTS_FILE) >= (int)sizeof imports) {
        s_set(run->error, sizeof run->error, "path of '%s' too long", work);
        return 0;
    }
    /* a clean directory of our own: nothing of an earlier run counts */
    if (kz_rmtree(work, err, sizeof err) != 0 || kz_mkdirs(work, 0700, err, sizeof err) != 0) {
        s_set(run->error, sizeof run->error, "%s", err);
        return 0;
    }
    bool python = kz_testsuite_is_python(target);
    if (python && s_write_hook(work, err, sizeof err) != 0) {
        s_set(run->error, sizeof run->error, "%s", err);
        (void)kz_rmtree(work, err, sizeof err);
        return 0;
    }
    /* the tests run in the sandbox as its user, who writes the report there */
    if (kz_sandbox_share_dir(work, err, sizeof err) != 0 ||
        kz_sandbox_give_tree(work, err, sizeof err) != 0) {
        s_set(run->error, sizeof run->error, "%s", err);
        (void)kz_rmtree(work, err, sizeof err);
        return 0;
    }
    int ret = -1;
    char **argv = kz_argv_expand(target->test, NULL, 0, dir, junit);
    char **env = s_env(target, dir, work, python);
    kz_proc_result_t pr;
    memset(&pr, 0, sizeof pr);
    if (!argv || !env)
        goto done;
    kz_proc_opts_t po;
    if (proc)
        po = *proc;
    else
        memset(&po, 0, sizeof po);
    po.argv = (const char *const *)argv;
    po.cwd = dir;
    po.env = NULL;
    po.env_add = (const char *const *)env;
    /* the target's tests are its code: they run in the sandbox, writing
       their worktree and WORK only, with the network only when the
       target's config allows it */
    po.sandbox = KZ_SANDBOX_WRITE;
    const char *rw[] = {work, NULL};
    po.sandbox_rw = rw;
    po.sandbox_network = target->test_network;
    po.stdin_data = NULL;
    po.stdin_len = 0;
    po.timeout_ms = run->timeout_ms;
    po.out_cap = KZ_TESTSUITE_OUT_CAP;
    po.err_cap = KZ_TESTSUITE_OUT_CAP;
    int rc = kz_proc_run(&po, &pr, err, sizeof err);
    run->duration_ms = pr.duration_us / 1000;
    if (rc != 0) {
        s_set(run->start_error, sizeof run->start_error, "%s", err);
        ret = 0;
        goto done;
    }
    if (pr.cancelled) {
        /* nobody waits for the result (proc->cancel): the run was stopped,
           which says nothing about the suite - neither judged nor cached */
        s_set(run->error, sizeof run->error,
              "stopped the tests of '%s' at %.12s: the result is no longer wanted", target->name,
              run->commit);
        ret = 0;
        goto done;
    }
    run->started = true;
    run->timed_out = pr.timed_out;
    run->exit_code = pr.exit_code;
    run->term_signal = pr.term_signal;
    run->truncated = pr.out_truncated || pr.err_truncated;
    if (s_read_run(&pr, dir, junit, imports, python, run) != 0)
        goto done;
    if (run->truncated)
        kz_warn("the output of the tests of '%s' at %.12s went beyond %u bytes: the rest was "
                "not read",
                target->name, run->commit, KZ_TESTSUITE_OUT_CAP);
    ret = 0;
done:
    kz_proc_result_free(&pr);
    kz_strv_free(argv);
    kz_strv_free(env);
    if (kz_rmtree(work, err, sizeof err) != 0)
        kz_warn("%s", err);
    return ret;
}

/* ------------------------------------------------------------ judging */

/* "exit 4" or "signal 9" */
static const char *s_ended(const kz_testsuite_run_t *run, char *buf, size_t len)
{
    if (run->term_signal)
        snprintf(buf, len, "signal %d", run->term_signal);
    else
        snprintf(buf, len, "exit %d", run->exit_code);
    return buf;
}

/* true when DIR/SUB has a package NAME/__init__.py or a module NAME.py */
static bool s_has_module(const char *dir, const char *sub, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s/%s/__init__.py", dir, sub, name) < (int)sizeof path &&
        stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return true;
    return snprintf(path, sizeof path, "%s/%s/%s.py", dir, sub, name) < (int)sizeof path &&
           stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The top-level module of "No module named 'x.y'" in PROBLEM into NAME
   ("x"). false when there is none */
static bool s_missing_module(const char *problem, char *name, size_t len)
{
    const char *p = strstr(problem, "No module named '");
    if (!p || len == 0)
        return false;
    p += 17;
    size_t n = 0;
    while (n + 1 < len && (isalnum((unsigned char)p[n]) || p[n] == '_'))
        name[n] = p[n], n++;
    name[n] = '\0';
    return n > 0 && (p[n] == '\'' || p[n] == '.');
}

/* A missing module that the worktree has under src/ or lib/: "src" or
   "lib" (the directory PYTHONPATH should name), else NULL */
static const char *s_missing_here(const char *problem, const char *dir)
{
    char name[128];
    if (!dir || !s_missing_module(problem, name, sizeof name))
        return NULL;
    static const char *const subs[] = {"src", "lib"};
    for (size_t i = 0; i < 2; i++)
        if (s_has_module(dir, subs[i], name))
            return subs[i];
    return NULL;
}

static void s_unusable(kz_testsuite_run_t *run, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_unusable(kz_testsuite_run_t *run, const char *fix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->why, sizeof run->why, fmt, ap);
    va_end(ap);
    snprintf(run->fix, sizeof run->fix, "%s", fix ? fix : "");
    run->usable = false;
}

/* A run that passed no test */
static void s_judge_none_passed(const kz_target_config_t *target, const char *dir,
                                kz_testsuite_run_t *run)
{
    char ended[32], fix[256] = "";
    s_ended(run, ended, sizeof ended);
    const char *sub = s_missing_here(run->problem, dir);
    char missing[128];
    if (sub)
        snprintf(fix, sizeof fix, "set targets[].env, e.g. [PYTHONPATH=%s]", sub);
    else if (s_missing_module(run->problem, missing, sizeof missing))
        snprintf(fix, sizeof fix,
                 "install the module '%s' for the Python that runs the tests, or point "
                 "targets[].env's PYTHONPATH at it",
                 missing);
    char hint[64] = "";
    if (sub)
        snprintf(hint, sizeof hint, " (set targets[].env, e.g. PYTHONPATH=%s)", sub);
    const char *sep = run->problem[0] ? ": " : "";
    if (!run->have_counts) {
        if (run->exit_code == 0 && !run->term_signal) {
            s_unusable(run,
                       "write a JUnit report ({junit} in targets[].test) or print a summary such "
                       "as \"N passed, N failed\"",
                       "the output gives no test count (exit 0): nothing shows that any test ran "
                       "(write a JUnit report with {junit} in targets[].test, or print a summary "
                       "such as \"N passed, N failed\")");
        } else if (run->problem[0]) {
            s_unusable(run, fix, "0 tests ran (%s): %s%s", ended, run->problem, hint);
        } else {
            s_unusable(run, NULL, "the test command ended with %s and no test count%s%s", ended,
                       run->last[0] ? ": " : "", run->last);
        }
        return;
    }
    if (run->failed == 0 && run->errors == 0 && run->skipped == 0 && run->exit_code == 5 &&
        kz_testsuite_is_python(target)) {
        s_unusable(run, "check the test paths and names pytest collects (testpaths, test_*.py)",
                   "no tests collected (exit 5)%s%s", sep, run->problem);
        return;
    }
    if (run->failed == 0 && run->skipped == 0) {
        /* errors alone: collection errors, fixtures that broke - no test
           body ran */
        char errors[48] = "";
        if (run->errors > 0)
            snprintf(errors, sizeof errors, "%ld error%s, ", run->errors,
                     run->errors == 1 ? "" : "s");
        s_unusable(run, fix, "0 tests ran (%s%s)%s%s%s", errors, ended, sep, run->problem, hint);
        return;
    }
    char counts[128] = "";
    size_t o = 0;
    const struct {
        long n;
        const char *one, *many;
    } parts[] = {{run->failed, "failed", "failed"},
                 {run->errors, "error", "errors"},
                 {run->skipped, "skipped", "skipped"}};
    for (size_t i = 0; i < 3; i++)
        if (parts[i].n > 0 && o < sizeof counts)
            o += (size_t)snprintf(counts + o, sizeof counts - o, "%ld %s, ", parts[i].n,
                                  parts[i].n == 1 ? parts[i].one : parts[i].many);
    s_unusable(run, fix, "no test passed (%s%s)%s%s%s", counts, ended, sep, run->problem, hint);
}

void kz_testsuite_judge(const kz_target_config_t *target, const char *dir, kz_testsuite_run_t *run)
{
    if (run->error[0])
        return;
    run->judged = true;
    run->usable = true;
    run->why[0] = run->fix[0] = '\0';
    char ended[32];
    s_ended(run, ended, sizeof ended);
    if (!run->started) {
        s_unusable(run, "install the test command or correct targets[].test",
                   "the test command cannot start: %s", run->start_error);
    } else if (run->timed_out) {
        s_unusable(run, "raise targets[].test_timeout or make the suite faster",
                   "timed out after %g s", run->timeout_ms / 1000.0);
    } else if (run->foreign_module[0]) {
        char fix[64];
        snprintf(fix, sizeof fix, "set targets[].env, e.g. [PYTHONPATH=%s]", run->foreign_dir);
        s_unusable(run, fix,
                   "the tests import '%s' from %s, not from the worktree (set targets[].env, "
                   "e.g. PYTHONPATH=%s)",
                   run->foreign_module, run->foreign_origin, run->foreign_dir);
    } else if (run->passed <= 0) {
        s_judge_none_passed(target, dir, run);
    } else if ((run->exit_code != 0 || run->term_signal) && run->failed + run->errors == 0) {
        /* a failing exit that no failing test explains: the suite broke
           around its tests (a crash at exit, a tool after the tests) */
        /* the output's last line says how it ended; an error line from
           anywhere in it (a logged exception of a passing test) need not */
        const char *what = run->last[0] ? run->last : run->problem;
        s_unusable(run, NULL,
                   "the test command ended with %s although no test failed (%ld passed)%s%s", ended,
                   run->passed, what[0] ? ": " : "", what);
    }
}

/* ------------------------------------------------------------ worktrees */

int kz_testsuite_test_at(const kz_target_config_t *target, const char *wt, const char *work,
                         const kz_proc_opts_t *proc, kz_testsuite_run_t *run)
{
    char err[512];
    if (kz_git_worktree_add(target->path, wt, NULL, run->commit, err, sizeof err) != 0) {
        s_set(run->error, sizeof run->error, "unable to check out %.12s of '%s': %s", run->commit,
              target->name, err);
        kz_error("%s", run->error);
        (void)kz_git_worktree_remove(target->path, wt, err, sizeof err);
        return 0;
    }
    kz_info("running the tests of '%s' at %.12s in '%s'", target->name, run->commit, wt);
    int rc = kz_testsuite_exec(target, wt, work, proc, run);
    if (rc == 0)
        kz_testsuite_judge(target, wt, run); /* before the worktree goes: it looks there */
    if (kz_git_worktree_remove(target->path, wt, err, sizeof err) != 0)
        kz_error("unable to remove worktree '%s': %s", wt, err);
    if (run->error[0])
        kz_error("%s", run->error);
    else if (!run->started)
        kz_error("the test command of '%s' cannot start: %s", target->name, run->start_error);
    else
        kz_info("tests of '%s' at %.12s: %s, exit %d, %ld passed, %ld failed, %ld errors, %ld "
                "skipped (%s) in %lld ms",
                target->name, run->commit, run->timed_out ? "timed out" : "finished",
                run->exit_code, run->passed, run->failed, run->errors, run->skipped, run->source,
                (long long)run->duration_ms);
    return rc;
}

int kz_testsuite_test_commit(const kz_config_t *cfg, const kz_target_config_t *target,
                             const char *name, const kz_proc_opts_t *proc, kz_testsuite_run_t *run)
{
    char rel[PATH_MAX], wt[PATH_MAX], work[PATH_MAX];
    snprintf(rel, sizeof rel, "worktrees/%s/%s", target->name, name);
    if (kz_state_path(cfg, rel, wt, sizeof wt) != 0) {
        s_set(run->error, sizeof run->error, "path of worktree '%s' too long", rel);
        return 0;
    }
    snprintf(rel, sizeof rel, "test-runner/%s/run-%s", target->name, name);
    if (kz_state_path(cfg, rel, work, sizeof work) != 0) {
        s_set(run->error, sizeof run->error, "path of '%s' too long", rel);
        return 0;
    }
    return kz_testsuite_test_at(target, wt, work, proc, run);
}

/* ------------------------------------------------------------ base cache */

/* What a cached base must match: the command, the env, the timeout, and
   whether the Python import check ran (targets[].languages decides it) */
static json_t *s_identity(const kz_target_config_t *target)
{
    json_t *id = json_object(), *cmd = json_array(), *env = json_array();
    if (!id || !cmd || !env)
        goto fail;
    for (size_t i = 0; i < target->test_count; i++)
        if (json_array_append_new(cmd, json_string(target->test[i])) != 0)
            goto fail;
    for (size_t i = 0; i < target->env_count; i++)
        if (json_array_append_new(env, json_string(target->env[i])) != 0)
            goto fail;
    int timeout = target->test_timeout_ms;
    /* json_object_set_new takes the value whatever it returns */
    int rc = json_object_set_new(id, "command", cmd);
    cmd = NULL;
    if (rc != 0)
        goto fail;
    rc = json_object_set_new(id, "env", env);
    env = NULL;
    if (rc != 0 || json_object_set_new(id, "timeout_ms", json_integer(timeout)) != 0 ||
        json_object_set_new(id, "python", json_boolean(kz_testsuite_is_python(target))) != 0)
        goto fail;
    return id;
fail:
    json_decref(cmd);
    json_decref(env);
    json_decref(id);
    return NULL;
}

static const char *s_static_source(const char *src)
{
    static const char *const sources[] = {"junit", "lines",   "pytest", "unittest",
                                          "ctest", "summary", "exit"};
    for (size_t i = 0; src && i < sizeof sources / sizeof sources[0]; i++)
        if (strcmp(src, sources[i]) == 0)
            return sources[i];
    return "exit";
}

static void s_copy_str(json_t *doc, const char *key, char *buf, size_t len)
{
    const char *v = json_string_value(json_object_get(doc, key));
    snprintf(buf, len, "%s", v ? v : "");
}

static long s_get_long(json_t *doc, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(doc, key));
    return v < 0 ? 0 : v > KZ_TESTRESULT_MAX_COUNT ? KZ_TESTRESULT_MAX_COUNT : (long)v;
}

/* Load the cached base run at PATH into RUN when it is for this target,
   commit and identity. true when loaded */
static bool s_cache_load(const char *path, const kz_target_config_t *target,
                         kz_testsuite_run_t *run)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc)
        return false;
    bool ok = false;
    json_t *id = s_identity(target);
    const char *t = json_string_value(json_object_get(doc, "target"));
    const char *c = json_string_value(json_object_get(doc, "commit"));
    json_t *tests = json_object_get(doc, "tests");
    if (json_integer_value(json_object_get(doc, "version")) != S_CACHE_VERSION || !t ||
        strcmp(t, target->name) != 0 || !c || strcmp(c, run->commit) != 0 || !id ||
        !json_equal(id, json_object_get(doc, "identity")) || !json_is_object(tests) ||
        !json_is_boolean(json_object_get(doc, "usable"))) {
        kz_info("base cache '%s' is for another target, commit, test command, env or timeout: "
                "ignored",
                path);
        goto done;
    }
    run->source = s_static_source(json_string_value(json_object_get(doc, "source")));
    run->started = true;
    run->timed_out = json_is_true(json_object_get(doc, "timed_out"));
    run->exit_code = (int)json_integer_value(json_object_get(doc, "exit_code"));
    run->term_signal = (int)json_integer_value(json_object_get(doc, "term_signal"));
    run->timeout_ms = (int)json_integer_value(json_object_get(doc, "timeout_ms"));
    run->duration_ms = json_integer_value(json_object_get(doc, "duration_ms"));
    run->have_cases = json_is_true(json_object_get(doc, "have_cases"));
    run->have_counts = json_is_true(json_object_get(doc, "have_counts"));
    run->passed = s_get_long(doc, "passed");
    run->failed = s_get_long(doc, "failed");
    run->errors = s_get_long(doc, "errors");
    run->skipped = s_get_long(doc, "skipped");
    s_copy_str(doc, "last_line", run->last, sizeof run->last);
    s_copy_str(doc, "problem", run->problem, sizeof run->problem);
    s_copy_str(doc, "foreign_module", run->foreign_module, sizeof run->foreign_module);
    s_copy_str(doc, "foreign_origin", run->foreign_origin, sizeof run->foreign_origin);
    s_copy_str(doc, "foreign_dir", run->foreign_dir, sizeof run->foreign_dir);
    run->judged = true;
    run->usable = json_is_true(json_object_get(doc, "usable"));
    s_copy_str(doc, "why", run->why, sizeof run->why);
    s_copy_str(doc, "fix", run->fix, sizeof run->fix);
    if (!run->usable && !run->why[0])
        snprintf(run->why, sizeof run->why, "the cached base says so (no reason kept)");
    const char *key;
    json_t *val;
    json_object_foreach(tests, key, val)
    {
        kz_test_status_t status = KZ_TEST_PASS;
        (void)kz_test_status_parse(json_string_value(val), &status); /* unknown: a pass */
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
    json_decref(id);
    json_decref(doc);
    if (!ok)
        kz_testsuite_run_clear(run);
    return ok;
}

/* Write RUN to PATH atomically (temp file + rename). 0 / -1 (logged) */
static int s_cache_save(const char *path, const kz_target_config_t *target,
                        const kz_testsuite_run_t *run)
{
    json_t *tests = json_object();
    json_t *doc = json_object();
    json_t *id = s_identity(target);
    int rc = -1;
    if (!tests || !doc || !id)
        goto done;
    for (size_t i = 0; i < run->tests.count; i++)
        if (json_object_set_new(tests, run->tests.items[i].id,
                                json_string(kz_test_status_name(run->tests.items[i].status))) != 0)
            goto done;
    struct {
        const char *key;
        json_t *value;
    } fields[] = {
        {"version", json_integer(S_CACHE_VERSION)},
        {"target", json_string(target->name)},
        {"commit", json_string(run->commit)},
        {"source", json_string(run->source)},
        {"timed_out", json_boolean(run->timed_out)},
        {"exit_code", json_integer(run->exit_code)},
        {"term_signal", json_integer(run->term_signal)},
        {"timeout_ms", json_integer(run->timeout_ms)},
        {"duration_ms", json_integer(run->duration_ms)},
        {"have_cases", json_boolean(run->have_cases)},
        {"have_counts", json_boolean(run->have_counts)},
        {"passed", json_integer(run->passed)},
        {"failed", json_integer(run->failed)},
        {"errors", json_integer(run->errors)},
        {"skipped", json_integer(run->skipped)},
        {"last_line", json_string(run->last)},
        {"problem", json_string(run->problem)},
        {"foreign_module", json_string(run->foreign_module)},
        {"foreign_origin", json_string(run->foreign_origin)},
        {"foreign_dir", json_string(run->foreign_dir)},
        {"usable", json_boolean(run->usable)},
        {"why", json_string(run->why)},
        {"fix", json_string(run->fix)},
        {"created_us", json_integer(kz_now_us())},
    };
    bool failed = false;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!fields[i].value || json_object_set_new(doc, fields[i].key, fields[i].value) != 0)
            failed = true; /* set_new frees the value either way; keep going to free the rest */
    if (failed || json_object_set(doc, "identity", id) != 0 ||
        json_object_set(doc, "tests", tests) != 0)
        goto done;
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        goto done;
    FILE *f = kz_file_fopen(tmp, "w", 0600);
    int bad = !f || json_dumpf(doc, f, JSON_COMPACT | JSON_SORT_KEYS) != 0;
    if (f && fclose(f) != 0)
        bad = 1;
    if (bad || rename(tmp, path) != 0) {
        kz_error("unable to write the base cache '%s': %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    json_decref(tests);
    json_decref(doc);
    json_decref(id);
    return rc;
}

/* Keep the newest KZ_TESTSUITE_CACHE_KEEP base results of DIR (by
   modification time); older ones go with their lock files. Best effort. */
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
    while (n > KZ_TESTSUITE_CACHE_KEEP) {
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

/* STATE/test-runner/<target> into DIR and its cache file of COMMIT into
   CACHE. 0 / -1 (too long) */
static int s_cache_paths(const kz_config_t *cfg, const kz_target_config_t *target,
                         const char *commit, char *dir, size_t dirlen, char *cache, size_t cachelen)
{
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "test-runner/%s", target->name);
    if (kz_state_path(cfg, rel, dir, dirlen) != 0 ||
        snprintf(cache, cachelen, "%s/%s.json", dir, commit) >= (int)cachelen)
        return -1;
    return 0;
}

bool kz_testsuite_cached(const kz_config_t *cfg, const kz_target_config_t *target,
                         kz_testsuite_run_t *run)
{
    char dir[PATH_MAX], cache[PATH_MAX];
    if (s_cache_paths(cfg, target, run->commit, dir, sizeof dir, cache, sizeof cache) != 0)
        return false;
    struct stat st;
    if (lstat(cache, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    return s_cache_load(cache, target, run);
}

int kz_testsuite_base(const kz_config_t *cfg, const kz_target_config_t *target,
                      const kz_proc_opts_t *proc, int flags, kz_testsuite_run_t *run)
{
    char dir[PATH_MAX], cache[PATH_MAX], lockp[PATH_MAX], err[512];
    if (s_cache_paths(cfg, target, run->commit, dir, sizeof dir, cache, sizeof cache) != 0 ||
        snprintf(lockp, sizeof lockp, "%s/%s.lock", dir, run->commit) >= (int)sizeof lockp) {
        s_set(run->error, sizeof run->error, "state path too long for target '%s'", target->name);
        return 0;
    }
    if (kz_mkdirs(dir, 0700, err, sizeof err) != 0) {
        s_set(run->error, sizeof run->error, "%s", err);
        kz_error("%s", run->error);
        return 0;
    }
    int fd = kz_file_open(lockp, O_RDWR | O_CREAT, 0600);
    if (fd < 0) {
        s_set(run->error, sizeof run->error, "unable to open '%s': %s", lockp, strerror(errno));
        kz_error("%s", run->error);
        return 0;
    }
    /* wait for another process running this base, keeping the caller's
       registrations alive; give up after its test timeout and a minute */
    int timeout = target->test_timeout_ms;
    int64_t deadline = kz_now_us() + ((int64_t)timeout + 60000) * 1000;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK || kz_now_us() > deadline) {
            s_set(run->error, sizeof run->error, "unable to lock '%s': %s", lockp,
                  errno == EWOULDBLOCK ? "still held by another test run" : strerror(errno));
            kz_error("%s", run->error);
            close(fd);
            return 0;
        }
        if (proc && proc->tick)
            proc->tick(proc->tick_arg);
        if (proc && proc->cancel && proc->cancel(proc->cancel_arg)) {
            s_set(run->error, sizeof run->error,
                  "stopped waiting for the base run of '%s': the result is no longer wanted",
                  target->name);
            close(fd);
            return 0;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int rc = 0;
    bool hit = s_cache_load(cache, target, run);
    if (hit && !run->usable && (flags & KZ_TESTSUITE_RECHECK)) {
        kz_info("base %.12s of '%s' was cached as unusable (%s): running it again", run->commit,
                target->name, run->why);
        kz_testsuite_run_clear(run);
        hit = false;
    }
    if (hit) {
        kz_info("base %.12s of '%s' from the cache: %ld passed, %ld failed, %ld errors (%s)%s%s",
                run->commit, target->name, run->passed, run->failed, run->errors, run->source,
                run->usable ? "" : "; cannot validate: ", run->usable ? "" : run->why);
    } else {
        char name[128];
        snprintf(name, sizeof name, "tests-base-%s", run->commit);
        rc = kz_testsuite_test_commit(cfg, target, name, proc, run);
        if (rc == 0 && run->judged && !run->usable)
            kz_info("base %.12s of '%s' cannot validate: %s", run->commit, target->name, run->why);
        /* kaizen's own failures and a command that cannot start may be
           the machine's, not the commit's: run again next time */
        if (rc == 0 && run->started && !run->error[0] && run->judged &&
            s_cache_save(cache, target, run) == 0)
            s_cache_prune(dir);
    }
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}
