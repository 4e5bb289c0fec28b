/*  test_testsuite.c - kz_testsuite: the judgement of a run (a table of
    runs that can and cannot validate, and why), the imports file of the
    Python hook read as hostile input, a real Python run whose test imports
    an installed package the worktree also has in src/ (detected; not with
    targets[].env PYTHONPATH=src; a sitecustomize the hook hides still
    runs), and the base cache on a real git repository: a usable and an
    unusable base each run once and then read from the cache, run again
    when the env changes or a recheck is asked, a timeout cached, a command
    that cannot start not cached, no worktree or work directory left.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_config.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_proc.h"
#include "kz_state.h"
#include "kz_testsuite.h"

static char s_tmp[PATH_MAX - 256];

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_tmp, sizeof s_tmp, "%s/kz-testsuite.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(s_tmp))
        return -1;
    /* the tests run in the sandbox, as its user, which goes through here
       and sees the fake test command */
    chmod(s_tmp, 0711);
    kz_sandbox_config_t sb;
    kz_sandbox_config_defaults(&sb);
    char fake[PATH_MAX], other[PATH_MAX], state_dir[PATH_MAX];
    snprintf(fake, sizeof fake, "%s/fake-tests", s_tmp);
    snprintf(other, sizeof other, "%s/py-other", s_tmp);
    snprintf(state_dir, sizeof state_dir, "%s/state", s_tmp);
    char *ro[] = {fake, NULL}, *rw[] = {other, NULL};
    sb.bind_ro = ro;
    sb.bind_rw = rw;
    if (kz_sandbox_configure(&sb, state_dir, NULL, 0) != 0)
        return -1;
    kz_log_set_level(KZ_LOG_WARN);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    char err[256];
    return kz_rmtree(s_tmp, err, sizeof err);
}

static void s_write(const char *path, const char *text)
{
    char dir[PATH_MAX], err[256];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    /* each directory 0755, as git makes a worktree's (kz_mkdirs makes
       the parents it creates on the way only searchable: 0711) */
    for (char *p = dir + strlen(s_tmp) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        assert_int_equal(kz_mkdirs(dir, 0755, err, sizeof err), 0);
        *p = '/';
    }
    assert_int_equal(kz_mkdirs(dir, 0755, err, sizeof err), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    /* readable by the sandbox's user, as kaizen's worktrees are (group
       kaizen-runner): whatever the umask */
    assert_int_equal(chmod(path, 0644), 0);
}

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* /usr/bin/python3 imports MODULE */
static bool s_python_has(const char *module)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        return false;
    char code[128];
    snprintf(code, sizeof code, "import %s", module);
    const char *argv[] = {"/usr/bin/python3", "-c", code, NULL};
    kz_proc_opts_t po = {0};
    po.argv = argv;
    po.timeout_ms = 60000;
    kz_proc_result_t pr;
    char err[256];
    bool ok = kz_proc_run(&po, &pr, err, sizeof err) == 0 && pr.exit_code == 0;
    kz_proc_result_free(&pr);
    return ok;
}

/* A copy of the file FROM at TO */
/* Copy FROM to TO, the cached result's "target":"t" made "target":"NAME" */
static void s_copy_as(const char *from, const char *to, const char *name)
{
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    static char buf[1 << 16], out[(1 << 16) + 64];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *at = strstr(buf, "\"target\":\"t\"");
    assert_non_null(at);
    snprintf(out, sizeof out, "%.*s\"target\":\"%s\"%s", (int)(at - buf), buf, name,
             at + strlen("\"target\":\"t\""));
    s_write(to, out);
}

static kz_config_t *s_config(const char *yaml)
{
    char err[512];
    kz_config_t *cfg = kz_config_parse("/etc/kz/t.yaml", yaml, strlen(yaml), err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    return cfg;
}

/* ------------------------------------------------------------ judging */

static void s_run(kz_testsuite_run_t *run, int exit_code, const char *source, long passed,
                  long failed, long errors, long skipped)
{
    kz_testsuite_run_init(run);
    run->started = true;
    run->exit_code = exit_code;
    run->timeout_ms = 600000;
    if (source) {
        run->source = source;
        run->have_counts = true;
    }
    run->passed = passed;
    run->failed = failed;
    run->errors = errors;
    run->skipped = skipped;
}

static void test_judge(void **state)
{
    (void)state;
    kz_config_t *cfg = s_config("targets:\n"
                                "  - {name: py, path: /p, test: [python3, -m, pytest]}\n"
                                "  - {name: c, path: /c, test: [make, test]}\n");
    const kz_target_config_t *py = kz_config_target(cfg, "py"), *c = kz_config_target(cfg, "c");
    assert_true(kz_testsuite_is_python(py));
    assert_false(kz_testsuite_is_python(c));
    kz_testsuite_run_t run;

    /* usable: everything passed; a few failures that explain a failing exit */
    s_run(&run, 0, "junit", 19, 0, 0, 2);
    kz_testsuite_judge(py, NULL, &run);
    assert_true(run.judged && run.usable);
    assert_string_equal(run.why, "");
    s_run(&run, 1, "pytest", 18, 1, 0, 0);
    kz_testsuite_judge(py, NULL, &run);
    assert_true(run.usable);

    const struct {
        const kz_target_config_t **target;
        int exit_code;
        const char *source; /* NULL: no count at all */
        long passed, failed, errors, skipped;
        const char *problem, *last;
        const char *why;
    } bad[] = {
        {&py, 4, NULL, 0, 0, 0, 0,
         "ImportError while loading conftest 'tests/conftest.py': "
         "ModuleNotFoundError: No module named 'nothere'",
         "",
         "0 tests ran (exit 4): ImportError while loading conftest 'tests/conftest.py': "
         "ModuleNotFoundError: No module named 'nothere'"},
        {&py, 2, "junit", 0, 0, 1, 0,
         "ImportError while importing test module 'tests/t.py': "
         "ModuleNotFoundError: No module named 'x'",
         "",
         "0 tests ran (1 error, exit 2): ImportError while importing test module 'tests/t.py': "
         "ModuleNotFoundError: No module named 'x'"},
        {&py, 5, "junit", 0, 0, 0, 0, "", "", "no tests collected (exit 5)"},
        {&c, 5, "summary", 0, 0, 0, 0, "", "", "0 tests ran (exit 5)"},
        {&c, 0, NULL, 0, 0, 0, 0, "", "all good",
         "the output gives no test count (exit 0): nothing shows that any test ran (write a "
         "JUnit report with {junit} in targets[].test, or print a summary such as \"N passed, N "
         "failed\")"},
        {&c, 2, NULL, 0, 0, 0, 0, "", "make: *** [Makefile:3: test] Error 2",
         "the test command ended with exit 2 and no test count: make: *** [Makefile:3: test] "
         "Error 2"},
        {&c, 1, "summary", 0, 3, 1, 0, "", "", "no test passed (3 failed, 1 error, exit 1)"},
        {&c, 0, "summary", 0, 0, 0, 4, "", "", "no test passed (4 skipped, exit 0)"},
        {&c, 2, "summary", 5, 0, 0, 0, "", "Segmentation fault",
         "the test command ended with exit 2 although no test failed (5 passed): Segmentation "
         "fault"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_run(&run, bad[i].exit_code, bad[i].source, bad[i].passed, bad[i].failed, bad[i].errors,
              bad[i].skipped);
        snprintf(run.problem, sizeof run.problem, "%s", bad[i].problem);
        snprintf(run.last, sizeof run.last, "%s", bad[i].last);
        kz_testsuite_judge(*bad[i].target, NULL, &run);
        assert_true(run.judged);
        if (run.usable || strcmp(run.why, bad[i].why) != 0)
            fail_msg("case %zu: usable %d, why '%s', want '%s'", i, run.usable, run.why,
                     bad[i].why);
    }

    /* killed by a signal with no failing test */
    s_run(&run, -1, "lines", 3, 0, 0, 0);
    run.term_signal = 11;
    kz_testsuite_judge(c, NULL, &run);
    assert_false(run.usable);
    assert_string_equal(run.why,
                        "the test command ended with signal 11 although no test failed (3 passed)");
    /* timed out, could not start, imported from outside: each says so */
    s_run(&run, -1, NULL, 0, 0, 0, 0);
    run.timed_out = true;
    run.timeout_ms = 8000;
    kz_testsuite_judge(py, NULL, &run);
    assert_string_equal(run.why, "timed out after 8 s");
    assert_non_null(strstr(run.fix, "test_timeout"));
    kz_testsuite_run_init(&run);
    snprintf(run.start_error, sizeof run.start_error, "unable to run 'nosuch': no such file");
    kz_testsuite_judge(c, NULL, &run);
    assert_false(run.usable);
    assert_string_equal(run.why, "the test command cannot start: unable to run 'nosuch': no such "
                                 "file");
    s_run(&run, 0, "junit", 10, 0, 0, 0);
    snprintf(run.foreign_module, sizeof run.foreign_module, "msgpack");
    snprintf(run.foreign_origin, sizeof run.foreign_origin,
             "/usr/lib/python3/dist-packages/msgpack/__init__.py");
    snprintf(run.foreign_dir, sizeof run.foreign_dir, "src");
    kz_testsuite_judge(py, NULL, &run);
    assert_false(run.usable);
    assert_string_equal(run.why, "the tests import 'msgpack' from "
                                 "/usr/lib/python3/dist-packages/msgpack/__init__.py, not from "
                                 "the worktree (set targets[].env, e.g. PYTHONPATH=src)");
    assert_string_equal(run.fix, "set targets[].env, e.g. [PYTHONPATH=src]");
    /* a module the tests miss that the worktree has in src/: the hint */
    char wt[PATH_MAX], path[PATH_MAX + 64];
    snprintf(wt, sizeof wt, "%s/judge-wt", s_tmp);
    snprintf(path, sizeof path, "%s/src/pkg/__init__.py", wt);
    s_write(path, "");
    s_run(&run, 2, "junit", 0, 0, 1, 0);
    snprintf(run.problem, sizeof run.problem, "E   ModuleNotFoundError: No module named 'pkg.sub'");
    kz_testsuite_judge(py, wt, &run);
    assert_false(run.usable);
    assert_non_null(strstr(run.why, "(set targets[].env, e.g. PYTHONPATH=src)"));
    assert_string_equal(run.fix, "set targets[].env, e.g. [PYTHONPATH=src]");
    /* a run kaizen could not make is not judged */
    kz_testsuite_run_init(&run);
    snprintf(run.error, sizeof run.error, "unable to check out");
    kz_testsuite_judge(c, NULL, &run);
    assert_false(run.judged);
    kz_config_destroy(&cfg);
}

/* ------------------------------------------------------------ imports */

static void test_parse_imports(void **state)
{
    (void)state;
    kz_testsuite_run_t run;
    kz_testsuite_run_init(&run);
    static const char *const ignored[] = {
        "",
        "\n\n",
        "msgpack /usr/x.py src\n",    /* no tabs */
        "msgpack\t/usr/x.py\n",       /* two fields */
        "msgpack\t/usr/x.py\tsrcx\n", /* an unknown dir */
        "msgpack\t/usr/x.py\t..\n",
        "msg-pack\t/usr/x.py\tsrc\n", /* not an identifier */
        "1pkg\t/usr/x.py\tsrc\n",
        "\t/usr/x.py\tsrc\n",
        "pkg\t\tsrc\n",    /* no origin */
        "pkg\t \r\tsrc\n", /* an origin that cleans to nothing */
    };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (kz_testsuite_parse_imports(ignored[i], strlen(ignored[i]), &run))
            fail_msg("'%s' was read as an import", ignored[i]);
    assert_string_equal(run.foreign_module, "");
    char name[300];
    memset(name, 'a', 200);
    snprintf(name + 200, sizeof name - 200, "\t/x\tsrc\n");
    assert_false(kz_testsuite_parse_imports(name, strlen(name), &run)); /* name too long */

    /* the first valid line wins; the origin is cleaned and cut */
    static const char two[] = "bad line\npkg\t/usr/lib/py\x01th\xff/pkg/__init__.py\tsrc\n"
                              "other\t/o.py\tlib\n";
    assert_true(kz_testsuite_parse_imports(two, sizeof two - 1, &run));
    assert_string_equal(run.foreign_module, "pkg");
    assert_string_equal(run.foreign_origin, "/usr/lib/py th?/pkg/__init__.py");
    assert_string_equal(run.foreign_dir, "src");
    char *big = malloc(5000);
    assert_non_null(big);
    int n = snprintf(big, 5000, "_p2\t/");
    memset(big + n, 'd', 3000);
    snprintf(big + n + 3000, 5000 - (size_t)n - 3000, "\t.");
    assert_true(kz_testsuite_parse_imports(big, strlen(big), &run));
    assert_string_equal(run.foreign_module, "_p2");
    assert_string_equal(run.foreign_dir, ".");
    assert_true(strlen(run.foreign_origin) < sizeof run.foreign_origin);
    assert_string_equal(run.foreign_origin + strlen(run.foreign_origin) - 3, "...");
    free(big);
    /* NUL bytes inside do not end the text early or get through */
    static const char nul[] = "p\0q\t/x\tsrc\nr\t/y\0z\tlib";
    assert_true(kz_testsuite_parse_imports(nul, sizeof nul - 1, &run));
    assert_string_equal(run.foreign_module, "r");
    assert_string_equal(run.foreign_origin, "/y z");
}

/* ------------------------------------------------------------ Python */

static void test_python_hook(void **state)
{
    (void)state;
    if (!s_python_has("msgpack"))
        skip();
    char wt[PATH_MAX], work[PATH_MAX], path[PATH_MAX + 64], other[PATH_MAX], marker[PATH_MAX];
    snprintf(wt, sizeof wt, "%s/py-wt", s_tmp);
    snprintf(work, sizeof work, "%s/py-work", s_tmp);
    snprintf(other, sizeof other, "%s/py-other", s_tmp);
    snprintf(marker, sizeof marker, "%s/py-other/py-marker", s_tmp);
    /* the worktree listable by the sandbox's user (kz_mkdirs makes the
       parents it creates on the way only searchable: 0711) */
    char err[256];
    assert_int_equal(kz_mkdirs(wt, 0755, err, sizeof err), 0);
    assert_int_equal(kz_mkdirs(other, 0777, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/src/msgpack/__init__.py", wt);
    s_write(path, "KAIZEN = 'worktree'\n");
    /* the "test": imports msgpack, says which one, passes either way */
    snprintf(path, sizeof path, "%s/check.py", wt);
    s_write(path, "import msgpack\nprint(getattr(msgpack, 'KAIZEN', 'installed'))\n"
                  "print('1 passed, 0 failed')\n");
    /* a sitecustomize of the user's, hidden by kaizen's: it must still run */
    char text[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/sitecustomize.py", other);
    snprintf(text, sizeof text, "open(%s%s%s, 'w').write('ran')\n", "'", marker, "'");
    s_write(path, text);
    assert_int_equal(chmod(other, 0777), 0); /* the sandbox's user writes the marker */

    char yaml[4 * PATH_MAX];
    snprintf(yaml, sizeof yaml,
             "targets:\n"
             "  - {name: py, path: /p, test: [/usr/bin/python3, -B, check.py], env: "
             "['PYTHONPATH=%s']}\n"
             "  - {name: fixed, path: /p, test: [/usr/bin/python3, -B, check.py], env: "
             "[PYTHONPATH=src]}\n",
             other);
    kz_config_t *cfg = s_config(yaml);
    kz_testsuite_run_t run;
    kz_testsuite_run_init(&run);
    assert_int_equal(kz_testsuite_exec(kz_config_target(cfg, "py"), wt, work, NULL, &run), 0);
    assert_true(run.started);
    assert_int_equal(run.exit_code, 0);
    assert_string_equal(run.source, "summary");
    assert_int_equal(run.passed, 1);
    assert_string_equal(run.foreign_module, "msgpack");
    assert_string_equal(run.foreign_dir, "src");
    assert_non_null(strstr(run.foreign_origin, "/msgpack/__init__.py"));
    assert_null(strstr(run.foreign_origin, wt));
    assert_true(s_exists(marker)); /* the hidden sitecustomize ran */
    assert_false(s_exists(work));  /* the work directory is gone */
    kz_testsuite_judge(kz_config_target(cfg, "py"), wt, &run);
    assert_false(run.usable);
    assert_non_null(strstr(run.why, "the tests import 'msgpack' from /"));
    kz_testsuite_run_clear(&run);

    /* PYTHONPATH=src: the worktree's copy, nothing reported */
    assert_int_equal(kz_testsuite_exec(kz_config_target(cfg, "fixed"), wt, work, NULL, &run), 0);
    assert_true(run.started);
    assert_int_equal(run.exit_code, 0);
    assert_string_equal(run.last, "1 passed, 0 failed");
    assert_string_equal(run.foreign_module, "");
    kz_testsuite_judge(kz_config_target(cfg, "fixed"), wt, &run);
    assert_true(run.usable);
    kz_testsuite_run_clear(&run);
    kz_config_destroy(&cfg);
}

/* ------------------------------------------------------------ base cache */

static void s_git(const char *repo, const char *const *args)
{
    char err[512] = "";
    int rc = kz_git(repo, args, 0, NULL, err, sizeof err);
    if (rc != 0)
        fail_msg("git failed: %s", err);
}

/* Commit OUT.TXT = TEXT and RC.TXT = RC in REPO; the new commit into OID */
static void s_commit(const char *repo, const char *text, const char *rc, char *oid)
{
    char path[PATH_MAX + 16], err[512];
    snprintf(path, sizeof path, "%s/out.txt", repo);
    s_write(path, text);
    snprintf(path, sizeof path, "%s/rc.txt", repo);
    s_write(path, rc);
    bool changed;
    assert_int_equal(kz_git_commit_all(repo, "test", &changed, oid, err, sizeof err), 0);
    assert_true(changed);
}

static size_t s_count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_base_cache(void **state)
{
    (void)state;
    char repo[PATH_MAX], script[PATH_MAX + 16];
    snprintf(repo, sizeof repo, "%s/repo", s_tmp);
    snprintf(script, sizeof script, "%s/fake-tests", s_tmp);
    s_write(script, "#!/bin/sh\ncat out.txt\nexit \"$(cat rc.txt)\"\n");
    assert_int_equal(chmod(script, 0755), 0);
    char err[256];
    assert_int_equal(kz_mkdirs(repo, 0755, err, sizeof err), 0);
    const char *init[] = {"init", "-q", "-b", "main", NULL};
    s_git(repo, init);
    char good[KZ_GIT_OID_MAX], bad[KZ_GIT_OID_MAX], slow[KZ_GIT_OID_MAX];
    s_commit(repo, "3 passed, 1 failed\n", "1\n", good);
    s_commit(repo, "all good\n", "0\n", bad);
    s_commit(repo, "slow\n", "0\n", slow);

    char yaml[10 * PATH_MAX];
    snprintf(yaml, sizeof yaml,
             "state_dir: %s/state\n"
             "targets:\n"
             "  - {name: t, path: %s, test: [%s], test_timeout: 1m}\n"
             "  - {name: t2, path: %s, test: [%s], test_timeout: 1m, env: [X=1]}\n"
             "  - {name: t3, path: %s, test: [%s], test_timeout: 1m}\n"
             "  - {name: gone, path: %s, test: [%s/no-such-program]}\n"
             "  - {name: slow, path: %s, test: [sleep, '60'], test_timeout: 1s}\n",
             s_tmp, repo, script, repo, script, repo, script, repo, s_tmp, repo);
    kz_config_t *cfg = s_config(yaml);
    const kz_target_config_t *t = kz_config_target(cfg, "t");
    kz_testsuite_run_t run;

    /* a usable base: run, then cached */
    for (int pass = 0; pass < 2; pass++) {
        kz_testsuite_run_init(&run);
        memcpy(run.commit, good, sizeof good);
        assert_int_equal(kz_testsuite_base(cfg, t, NULL, 0, &run), 0);
        assert_string_equal(run.error, "");
        assert_true(run.judged && run.usable);
        assert_int_equal(run.cached, pass == 1);
        assert_string_equal(run.source, "summary");
        assert_int_equal(run.passed, 3);
        assert_int_equal(run.failed, 1);
        assert_int_equal(run.exit_code, 1);
        kz_testsuite_run_clear(&run);
    }
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/state/test-runner/t/%s.json", s_tmp, good);
    assert_true(s_exists(path));

    /* an unusable base: cached too, with its reason; run again on a recheck */
    for (int pass = 0; pass < 3; pass++) {
        kz_testsuite_run_init(&run);
        memcpy(run.commit, bad, sizeof bad);
        assert_int_equal(
            kz_testsuite_base(cfg, t, NULL, pass == 2 ? KZ_TESTSUITE_RECHECK : 0, &run), 0);
        assert_true(run.judged);
        assert_false(run.usable);
        assert_int_equal(run.cached, pass == 1);
        assert_non_null(strstr(run.why, "the output gives no test count (exit 0)"));
        assert_non_null(strstr(run.fix, "{junit}"));
        kz_testsuite_run_clear(&run);
    }
    /* another env is another identity: t's cached result given t2's name
       (t2 differs from t only by its env) is run again, while the same
       given t3's name (t3 is t under another name) is taken */
    snprintf(path, sizeof path, "%s/state/test-runner/t/%s.json", s_tmp, good);
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "t3" : "t2";
        char dir[PATH_MAX * 2], copy[PATH_MAX * 3];
        snprintf(dir, sizeof dir, "%s/state/test-runner/%s", s_tmp, name);
        assert_int_equal(kz_mkdirs(dir, 0755, err, sizeof err), 0);
        snprintf(copy, sizeof copy, "%s/%s.json", dir, good);
        s_copy_as(path, copy, name);
        kz_testsuite_run_init(&run);
        memcpy(run.commit, good, sizeof good);
        assert_int_equal(kz_testsuite_base(cfg, kz_config_target(cfg, name), NULL, 0, &run), 0);
        assert_int_equal(run.cached, k == 0);
        assert_true(run.usable);
        kz_testsuite_run_clear(&run);
    }

    /* a command that cannot start: unusable, not cached */
    const kz_target_config_t *gone = kz_config_target(cfg, "gone");
    for (int pass = 0; pass < 2; pass++) {
        kz_testsuite_run_init(&run);
        memcpy(run.commit, good, sizeof good);
        assert_int_equal(kz_testsuite_base(cfg, gone, NULL, 0, &run), 0);
        assert_false(run.started);
        assert_false(run.cached);
        assert_false(run.usable);
        assert_non_null(strstr(run.why, "the test command cannot start: "));
        kz_testsuite_run_clear(&run);
    }
    snprintf(path, sizeof path, "%s/state/test-runner/gone/%s.json", s_tmp, good);
    assert_false(s_exists(path));

    /* a timeout (the suite sleeps a minute, the timeout is a second): cached */
    const kz_target_config_t *slowt = kz_config_target(cfg, "slow");
    for (int pass = 0; pass < 2; pass++) {
        kz_testsuite_run_init(&run);
        memcpy(run.commit, slow, sizeof slow);
        assert_int_equal(kz_testsuite_base(cfg, slowt, NULL, 0, &run), 0);
        assert_false(run.usable);
        assert_true(run.timed_out);
        assert_int_equal(run.cached, pass == 1);
        assert_string_equal(run.why, "timed out after 1 s");
        kz_testsuite_run_clear(&run);
    }

    /* nothing left behind: worktrees, work directories, registrations */
    snprintf(path, sizeof path, "%s/state/worktrees/t", s_tmp);
    assert_int_equal(s_count_dir(path), 0);
    snprintf(path, sizeof path, "%s/state/test-runner/t", s_tmp);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "run-", 4) == 0)
            fail_msg("work directory left: %s", e->d_name);
    closedir(d);
    char *out = NULL;
    const char *list[] = {"worktree", "list", "--porcelain", NULL};
    assert_int_equal(kz_git(repo, list, 0, &out, err, sizeof err), 0);
    assert_null(strstr(out, "tests-base-"));
    free(out);
    kz_config_destroy(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_parse_imports),
        cmocka_unit_test(test_python_hook),
        cmocka_unit_test(test_base_cache),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
