/*  test_recipe.c - kz_recipe: kz_path_inside (symlinks, "..", absolute),
    the recipe predicates (applies, chosen, wants, fixers, exit codes),
    argv expansion, and kz_tool_run with real programs: flake8 on a temp
    tree (batched and whole-tree), a missing program, a missing python
    module, a timeout, a bad exit code, a crash, environment and {root},
    and the caller's tick while a tool runs (the tool waits for it, so
    the test does not depend on how long a tool takes).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_config.h"
#include "kz_finding.h"
#include "kz_proc.h"
#include "kz_recipe.h"

static const char s_yaml[] =
    "tools:\n"
    "  - name: flake8\n"
    "    languages: [python]\n"
    "    files: [\"*.py\", \"src/*.c\"]\n"
    "    argv: [/usr/bin/python3, -m, flake8, --, \"{files}\"]\n"
    "    format: gcc\n"
    "    rules:\n"
    "      - {match: \"F*\", severity: medium, category: bug}\n"
    "    requires: [\"setup.cfg:[flake8]\", .flake8]\n"
    "  - name: flake8-batched\n"
    "    argv: [/usr/bin/python3, -m, flake8, --, \"{files}\"]\n"
    "    format: gcc\n"
    "    batch: 1\n"
    "  - name: flake8-tree\n"
    "    argv: [/usr/bin/python3, -m, flake8]\n"
    "    format: gcc\n"
    "  - name: ghost\n"
    "    argv: [kaizen-no-such-tool-4c1f, \"{files}\"]\n"
    "    format: gcc\n"
    "  - name: nomodule\n"
    "    argv: [/usr/bin/python3, -m, kaizen_no_such_module_4c1f, \"{files}\"]\n"
    "    format: gcc\n"
    "  - name: sleepy\n"
    "    argv: [sleep, \"600\"]\n"
    "    format: gcc\n"
    "    timeout: 200ms\n"
    "  - name: failing\n"
    "    argv: [/usr/bin/python3, -c, \"import sys; sys.stderr.write('\\\\nboom: bad "
    "config\\\\nmore\\\\n'); sys.exit(3)\"]\n"
    "    format: gcc\n"
    "  - name: crashing\n"
    "    argv: [/usr/bin/python3, -c, \"import os, signal; os.kill(os.getpid(), "
    "signal.SIGKILL)\"]\n"
    "    format: gcc\n"
    "  - name: envy\n"
    "    argv: [/usr/bin/python3, -c, \"import os; print(os.environ['KZ_T'] + ':1:1: E1 env')\"]\n"
    "    format: gcc\n"
    "    env: [\"KZ_T=a.py\"]\n"
    "    exit_ok: [\"0\", \"2-4\"]\n"
    "  - name: rooted\n"
    "    argv: [/usr/bin/python3, -c, \"import sys; print(sys.argv[1] + '/a.py:2:1: E2 abs')\", "
    "\"{root}\"]\n"
    "    format: gcc\n"
    "  - name: black\n"
    "    argv: [black, --check, \"{files}\"]\n"
    "    format: files\n"
    "  - name: partial\n"
    "    argv: [/usr/bin/python3, -c, \"import sys; f = sys.argv[1]; print(f + ':1:1: E1 x'); "
    "sys.exit(5 if f == 'b.py' else 0)\", \"{files}\"]\n"
    "    format: gcc\n"
    "    batch: 1\n"
    "  - name: waits-for-tick\n"
    "    argv: [/usr/bin/python3, -c, \"import os, sys, time; f = os.path.join(sys.argv[1], "
    "'.ticked'); [time.sleep(0.01) for _ in iter(lambda: os.path.exists(f), True)]; "
    "print('a.py:1:1: E1 ticked')\", \"{root}\"]\n"
    "    format: gcc\n"
    "    timeout: 120s\n"
    "  - name: echo-files\n"
    "    argv: [/usr/bin/python3, -c, \"import sys; [print(f + ':1:1: E1 x') for f in "
    "sys.argv[1:]]\", \"{files}\"]\n"
    "    format: gcc\n"
    "  - name: echo-files-dashes\n"
    "    argv: [/usr/bin/python3, -c, \"import sys; [print(f + ':1:1: E1 x') for f in "
    "sys.argv[2:]]\", --, \"{files}\"]\n"
    "    format: gcc\n"
    "  - name: junkjson\n"
    "    argv: [echo, \"{\", \"{files}\"]\n"
    "    format: sarif\n"
    "fixers:\n"
    "  - name: black\n"
    "    tool: black\n"
    "    argv: [black, \"{files}\"]\n"
    "  - name: autopep8\n"
    "    tool: flake8\n"
    "    rules: [\"E1*\", \"W*\"]\n"
    "    argv: [autopep8, -i, \"{files}\"]\n"
    "  - name: autoflake\n"
    "    tool: flake8\n"
    "    rules: [F401]\n"
    "    argv: [autoflake, -i, \"{files}\"]\n";

static kz_config_t *s_cfg;
static char s_root[64];

static void s_write(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", s_root, rel);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int s_setup(void **state)
{
    (void)state;
    char err[512];
    s_cfg = kz_config_parse("test_recipe", s_yaml, strlen(s_yaml), err, sizeof err);
    if (!s_cfg) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    snprintf(s_root, sizeof s_root, "/tmp/kz-recipe-XXXXXX");
    if (!mkdtemp(s_root))
        return -1;
    chmod(s_root, 0755); /* the tools run in the sandbox, as its user */
    char path[512];
    snprintf(path, sizeof path, "%s/sub", s_root);
    mkdir(path, 0755);
    s_write("a.py", "import os\nx = 1\n");
    s_write("b.py", "import sys\n\n\ny = 2 \n");
    s_write("sub/c.py", "z=3\n");
    snprintf(path, sizeof path, "%s/link-out", s_root);
    if (symlink("/etc", path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/link-in", s_root);
    if (symlink("sub", path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/dangling", s_root);
    if (symlink("/nonexistent-kz/x", path) != 0)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    const char *names[] = {"a.py",     "b.py",      "sub/c.py", "link-out", "link-in",
                           "dangling", "setup.cfg", ".flake8",  ".ticked",  NULL};
    char path[512];
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", s_root, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/sub", s_root);
    rmdir(path);
    rmdir(s_root);
    kz_config_destroy(&s_cfg);
    return 0;
}

static const kz_tool_config_t *s_tool(const char *name)
{
    const kz_tool_config_t *t = kz_config_tool(s_cfg, name);
    assert_non_null(t);
    return t;
}

static void test_path_inside(void **state)
{
    (void)state;
    char why[512];
    static const char *const good[] = {
        "a.py",         "sub",    "sub/c.py",  "sub/new.py", "new/deep/x.py",
        "link-in/c.py", "./a.py", "sub//c.py", "link-in",    ".hidden",
        "..x",          "x..",    NULL};
    for (int i = 0; good[i]; i++)
        if (!kz_path_inside(s_root, good[i], why, sizeof why))
            fail_msg("'%s' refused: %s", good[i], why);
    static const struct {
        const char *path;
        const char *why;
    } bad[] = {
        {"", "empty"},
        {"/etc/passwd", "absolute"},
        {"../x", "leaves the worktree"},
        {"sub/../../x", "leaves the worktree"},
        {"sub/..", "leaves the worktree"},
        {"..", "leaves the worktree"},
        {"link-out", "symlink to '/etc'"},
        {"link-out/passwd", "symlink to '/etc'"},
        {"dangling", "cannot be resolved"},
        {"dangling/x", "cannot be resolved"},
        {"a\nb", "control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (kz_path_inside(s_root, bad[i].path, why, sizeof why))
            fail_msg("'%s' accepted", bad[i].path);
        if (!strstr(why, bad[i].why))
            fail_msg("'%s': '%s' does not say '%s'", bad[i].path, why, bad[i].why);
    }
    assert_false(kz_path_inside(s_root, NULL, why, sizeof why));
    assert_false(kz_path_inside("/nonexistent-kz-root", "a.py", why, sizeof why));
    assert_non_null(strstr(why, "cannot be resolved"));
    assert_false(kz_path_inside(s_root, "../x", NULL, 0)); /* WHY is optional */
    /* a root given through a symlink */
    char link[128];
    snprintf(link, sizeof link, "%s-root", s_root);
    assert_int_equal(symlink(s_root, link), 0);
    assert_true(kz_path_inside(link, "sub/c.py", why, sizeof why));
    assert_true(kz_path_inside(link, "link-in/c.py", why, sizeof why));
    assert_false(kz_path_inside(link, "link-out/passwd", why, sizeof why));
    unlink(link);
    char longp[5000];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    assert_false(kz_path_inside(s_root, longp, why, sizeof why));
    assert_non_null(strstr(why, "too long"));
}

static void test_predicates(void **state)
{
    (void)state;
    const kz_tool_config_t *flake8 = s_tool("flake8");
    const kz_tool_config_t *tree = s_tool("flake8-tree");
    char *py[] = {(char *)"python", NULL};
    char *c[] = {(char *)"c", (char *)"shell", NULL};
    char *none[] = {NULL};
    assert_true(kz_tool_applies(flake8, py));
    assert_false(kz_tool_applies(flake8, c));
    assert_true(kz_tool_applies(flake8, none)); /* a target without languages gets all */
    assert_true(kz_tool_applies(flake8, NULL));
    assert_true(kz_tool_applies(tree, c)); /* a tool without languages applies to all */

    assert_true(kz_tool_wants(flake8, "a.py"));
    assert_true(kz_tool_wants(flake8, "deep/dir/a.py")); /* on the base name */
    assert_true(kz_tool_wants(flake8, "src/x.c"));
    assert_false(kz_tool_wants(flake8, "lib/x.c"));
    assert_false(kz_tool_wants(flake8, "a.pyc"));
    assert_true(kz_tool_wants(tree, "anything.txt"));
    assert_false(kz_tool_wants(tree, ""));

    char which[256];
    assert_false(kz_tool_chosen(flake8, s_root, which, sizeof which));
    assert_string_equal(which, "none of 'setup.cfg:[flake8]', '.flake8'");
    s_write("setup.cfg", "[metadata]\nname = x\n");
    assert_false(kz_tool_chosen(flake8, s_root, which, sizeof which));
    s_write("setup.cfg", "[metadata]\nname = x\n[flake8]\nmax-line-length = 100\n");
    assert_true(kz_tool_chosen(flake8, s_root, which, sizeof which));
    assert_string_equal(which, "setup.cfg:[flake8]");
    char path[512];
    snprintf(path, sizeof path, "%s/setup.cfg", s_root);
    unlink(path);
    s_write(".flake8", "");
    assert_true(kz_tool_chosen(flake8, s_root, which, sizeof which));
    assert_string_equal(which, ".flake8");
    assert_true(kz_tool_chosen(flake8, s_root, NULL, 0));
    assert_true(kz_tool_chosen(tree, s_root, which, sizeof which)); /* nothing required */

    const kz_fixer_config_t *black = kz_config_fixer(s_cfg, "black");
    const kz_fixer_config_t *autopep8 = kz_config_fixer(s_cfg, "autopep8");
    assert_true(kz_fixer_fixes(black, "black", "would-reformat"));
    assert_false(kz_fixer_fixes(black, "isort", "unsorted-imports"));
    assert_true(kz_fixer_fixes(autopep8, "flake8", "E101"));
    assert_true(kz_fixer_fixes(autopep8, "flake8", "W291"));
    assert_false(kz_fixer_fixes(autopep8, "flake8", "F401"));
    assert_false(kz_fixer_fixes(autopep8, "pylint", "E101"));
    assert_ptr_equal(kz_fixer_for(s_cfg, "flake8", "F401"), kz_config_fixer(s_cfg, "autoflake"));
    assert_ptr_equal(kz_fixer_for(s_cfg, "flake8", "E111"), autopep8);
    assert_null(kz_fixer_for(s_cfg, "flake8", "E501x"));
    assert_null(kz_fixer_for(s_cfg, "mypy", "misc"));

    assert_true(kz_tool_exit_ok(flake8, 0));
    assert_true(kz_tool_exit_ok(flake8, 1));
    assert_false(kz_tool_exit_ok(flake8, 2));
    assert_false(kz_tool_exit_ok(flake8, -1));
    const kz_tool_config_t *envy = s_tool("envy");
    assert_true(kz_tool_exit_ok(envy, 0));
    assert_false(kz_tool_exit_ok(envy, 1));
    assert_true(kz_tool_exit_ok(envy, 2));
    assert_true(kz_tool_exit_ok(envy, 4));
    assert_false(kz_tool_exit_ok(envy, 5));
}

static void test_argv_expand(void **state)
{
    (void)state;
    char *argv[] = {
        (char *)"tool",    (char *)"--root={root}", (char *)"{files}",  (char *)"--junit",
        (char *)"{junit}", (char *)"{root}",        (char *)"x{files}", NULL};
    const char *files[] = {"a.py", "b c.py", NULL};
    char **v = kz_argv_expand(argv, files, 2, "/w/t", "/tmp/j.xml");
    assert_non_null(v);
    const char *want[] = {"tool",       "--root=/w/t", "a.py",     "b c.py", "--junit",
                          "/tmp/j.xml", "/w/t",        "x{files}", NULL};
    for (int i = 0; want[i]; i++)
        assert_string_equal(v[i], want[i]);
    assert_null(v[8]);
    kz_strv_free(v);
    /* no files, no junit: "{files}" vanishes, "{junit}" stays as written */
    v = kz_argv_expand(argv, NULL, 0, "/w/t", NULL);
    assert_non_null(v);
    assert_string_equal(v[2], "--junit");
    assert_string_equal(v[3], "{junit}");
    assert_null(v[6]);
    kz_strv_free(v);
    kz_strv_free(NULL);
    assert_null(kz_argv_expand(NULL, NULL, 0, "/", NULL));
}

/* A file name is never an option: one starting with '-' goes in as ./NAME,
   wherever "{files}" is expanded (kz_argv_expand, kz_argv_build) */
static void test_argv_file(void **state)
{
    (void)state;
    const struct {
        const char *in, *out;
    } cases[] = {
        {"a.py", "a.py"},
        {"-x.py", "./-x.py"},
        {"--addon={\"script\":\"evil.py\"}.c", "./--addon={\"script\":\"evil.py\"}.c"},
        {"--output-file=/tmp/out.txt.c", "./--output-file=/tmp/out.txt.c"},
        {"-", "./-"},
        {"--", "./--"},
        {"sub/-x.py", "sub/-x.py"}, /* the argument starts with "sub" */
        {"./-x.py", "./-x.py"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = kz_argv_file(cases[i].in);
        assert_non_null(got);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
    char *got = kz_argv_file(NULL);
    assert_string_equal(got, "");
    free(got);

    char *argv[] = {(char *)"cppcheck", (char *)"-q", (char *)"{files}", NULL};
    const char *files[] = {"a.c", "-x.c", "--addon=e.py.c", "--", NULL};
    char **v = kz_argv_expand(argv, files, 4, "/w", NULL);
    const char *want[] = {"cppcheck", "-q", "a.c", "./-x.c", "./--addon=e.py.c", "./--", NULL};
    for (int i = 0; want[i]; i++)
        assert_string_equal(v[i], want[i]);
    assert_null(v[6]);
    kz_strv_free(v);
    /* kz_argv_build: the project's arguments go before "--", the files after */
    char *fx[] = {(char *)"black", (char *)"--", (char *)"{files}", NULL};
    const char *extra[] = {"--line-length=100", NULL};
    v = kz_argv_build(fx, extra, false, files + 1, 1, "/w", NULL, NULL);
    const char *want2[] = {"black", "--line-length=100", "--", "./-x.c", NULL};
    for (int i = 0; want2[i]; i++)
        assert_string_equal(v[i], want2[i]);
    assert_null(v[4]);
    kz_strv_free(v);
}

/* "python3 [-FLAGS] -m MODULE": the module, with interpreter flags between */
static void test_argv_python_module(void **state)
{
    (void)state;
    char *a[] = {(char *)"/usr/bin/python3", (char *)"-I", (char *)"-m", (char *)"black",
                 (char *)"--check",          NULL};
    assert_string_equal(kz_argv_python_module(a, 0), "black");
    assert_string_equal(kz_argv_python_module(a, 4), "black");
    assert_null(kz_argv_python_module(a, 3)); /* the module is past ARGC */
    char *b[] = {(char *)"python3", (char *)"-m", (char *)"mypy", NULL};
    assert_string_equal(kz_argv_python_module(b, 3), "mypy");
    char *c[] = {(char *)"python3", (char *)"-B",     (char *)"-P",
                 (char *)"-m",      (char *)"pylint", NULL};
    assert_string_equal(kz_argv_python_module(c, 0), "pylint");
    char *d[] = {(char *)"python3", (char *)"-c", (char *)"import x",
                 (char *)"-m",      (char *)"y",  NULL};
    assert_null(kz_argv_python_module(d, 0)); /* -c: code, not a module */
    char *e[] = {(char *)"black", (char *)"-m", (char *)"x", NULL};
    assert_string_equal(kz_argv_python_module(e, 0), "x"); /* argv[0] is not looked at */
    char *f[] = {(char *)"python3", (char *)"--check", (char *)"-m", (char *)"x", NULL};
    assert_null(kz_argv_python_module(f, 0));
    char *g[] = {(char *)"python3", (char *)"-m", NULL};
    assert_null(kz_argv_python_module(g, 0));
    assert_null(kz_argv_python_module(NULL, 0));
}

static int s_ticks;
static void s_tick(void *arg)
{
    (void)arg;
    s_ticks++;
}

/* The tick of test_run_tick: counts, and makes ROOT/.ticked, the file
   the tool waits for */
static void s_tick_touch(void *arg)
{
    s_ticks++;
    char path[512];
    snprintf(path, sizeof path, "%s/.ticked", (const char *)arg);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

/* The caller's tick runs while a tool runs (how an agent stays alive on
   the bus during a long scan): the tool finishes only once the tick has
   run, so it runs exactly as long as it must, on any machine */
static void test_run_tick(void **state)
{
    (void)state;
    const char *files[] = {"a.py", NULL};
    kz_tool_run_opts_t opts = {s_root, files, 1,    s_tick_touch, s_root,
                               NULL,   NULL,  NULL, false,        NULL};
    kz_findings_t out;
    kz_findings_init(&out);
    kz_tool_result_t res;
    s_ticks = 0;
    assert_int_equal(kz_tool_run(s_tool("waits-for-tick"), &opts, &out, &res), 0);
    if (res.status != KZ_TOOL_OK)
        fail_msg("waits-for-tick: %s", res.error);
    assert_true(s_ticks > 0);
    assert_int_equal(out.count, 1);
    assert_string_equal(out.items[0].message, "ticked");
    kz_findings_free(&out);
}

static void test_run_flake8(void **state)
{
    (void)state;
    const char *files[] = {"a.py", "b.py", "sub/c.py", "../escape.py", "link-out/passwd", NULL};
    kz_tool_run_opts_t opts = {s_root, files, 5, s_tick, NULL, NULL, NULL, NULL, false, NULL};
    kz_findings_t out;
    kz_findings_init(&out);
    kz_tool_result_t res;
    assert_int_equal(kz_tool_run(s_tool("flake8"), &opts, &out, &res), 0);
    if (res.status != KZ_TOOL_OK)
        fail_msg("flake8: %s", res.error);
    kz_findings_sort(&out);
    /* a.py:1:1 F401 'os' unused; b.py:1:1 F401, b.py:4:6 W291; sub/c.py:1:2 E225 */
    assert_int_equal(out.count, 4);
    assert_string_equal(out.items[0].file, "a.py");
    assert_string_equal(out.items[0].rule, "F401");
    assert_string_equal(out.items[0].severity, "medium");
    assert_string_equal(out.items[0].category, "bug");
    assert_string_equal(out.items[0].tool, "flake8");
    assert_string_equal(out.items[2].rule, "W291");
    assert_string_equal(out.items[2].severity, "low");
    assert_string_equal(out.items[3].file, "sub/c.py");
    for (size_t i = 0; i < out.count; i++)
        assert_int_equal(strlen(out.items[i].fingerprint), 32);
    assert_true(res.duration_us > 0);
    assert_int_equal(res.stats.parsed, 4);
    assert_string_equal(kz_tool_status_name(res.status), "ok");

    /* one file per run: the same findings, the same fingerprints */
    kz_findings_t again;
    kz_findings_init(&again);
    assert_int_equal(kz_tool_run(s_tool("flake8-batched"), &opts, &again, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    kz_findings_sort(&again);
    assert_int_equal(again.count, out.count);
    for (size_t i = 0; i < out.count; i++) {
        assert_string_equal(again.items[i].file, out.items[i].file);
        assert_string_equal(again.items[i].rule, out.items[i].rule);
        assert_int_equal(again.items[i].line, out.items[i].line);
        /* the tool's name is part of the fingerprint */
        assert_string_not_equal(again.items[i].fingerprint, out.items[i].fingerprint);
    }
    kz_findings_free(&again);

    /* whole tree (no "{files}"): every file under the root */
    assert_int_equal(kz_tool_run(s_tool("flake8-tree"), &opts, &again, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(again.count, 4);
    kz_findings_free(&again);

    /* "{files}" and no files: not run */
    const char *nofiles[] = {NULL};
    kz_tool_run_opts_t none = {s_root, nofiles, 0, NULL, NULL, NULL, NULL, NULL, false, NULL};
    assert_int_equal(kz_tool_run(s_tool("ghost"), &none, &again, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(again.count, 0);
    kz_findings_free(&out);
}

static void test_run_failures(void **state)
{
    (void)state;
    const char *files[] = {"a.py", NULL};
    kz_tool_run_opts_t opts = {s_root, files, 1, s_tick, NULL, NULL, NULL, NULL, false, NULL};
    kz_findings_t out;
    kz_findings_init(&out);
    kz_tool_result_t res;

    assert_int_equal(kz_tool_run(s_tool("ghost"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_MISSING);
    assert_string_equal(kz_tool_status_name(res.status), "missing");
    assert_non_null(strstr(res.error, "not installed"));
    assert_non_null(strstr(res.error, "'kaizen-no-such-tool-4c1f'"));
    assert_non_null(strstr(res.error, "kaizen doctor"));

    assert_int_equal(kz_tool_run(s_tool("nomodule"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_MISSING);
    assert_non_null(strstr(res.error, "python module 'kaizen_no_such_module_4c1f'"));

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kz_tool_run(s_tool("sleepy"), &opts, &out, &res), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(res.status, KZ_TOOL_TIMEOUT);
    assert_string_equal(kz_tool_status_name(res.status), "timeout");
    assert_non_null(strstr(res.error, "timed out after 200 ms"));
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 300.0); /* killed, not its 10 minutes */

    assert_int_equal(kz_tool_run(s_tool("failing"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_ERROR);
    assert_string_equal(res.error, "exit 3: boom: bad config");
    assert_string_equal(kz_tool_status_name(res.status), "error");

    assert_int_equal(kz_tool_run(s_tool("crashing"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_ERROR);
    assert_string_equal(res.error, "killed by signal 9");

    assert_int_equal(kz_tool_run(s_tool("junkjson"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_ERROR);
    assert_non_null(strstr(res.error, "output not understood: sarif"));
    assert_int_equal(out.count, 0);

    /* the recipe's environment; a {root} argument; absolute paths in the output */
    assert_int_equal(kz_tool_run(s_tool("envy"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(out.count, 1);
    assert_string_equal(out.items[0].file, "a.py");
    assert_string_equal(out.items[0].rule, "E1");
    assert_string_equal(out.items[0].severity, "low");
    assert_string_equal(out.items[0].category, "style");
    assert_int_equal(kz_tool_run(s_tool("rooted"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(out.count, 2);
    assert_string_equal(out.items[1].file, "a.py");
    assert_int_equal(out.items[1].line, 2);
    kz_findings_free(&out);
    assert_string_equal(kz_tool_status_name((kz_tool_status_t)99), "error");

    /* a file named like an option goes in as ./NAME, with or without "--"
       before {files}, and its findings come back under its own name */
    const char *dashed[] = {"a.py", "-x.py", NULL};
    kz_tool_run_opts_t dopts = {s_root, dashed, 2, NULL, NULL, NULL, NULL, NULL, false, NULL};
    assert_int_equal(kz_tool_run(s_tool("echo-files"), &dopts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(out.count, 2);
    assert_string_equal(out.items[0].file, "a.py");
    assert_string_equal(out.items[1].file, "-x.py");
    assert_string_equal(out.items[1].rule, "E1");
    kz_findings_free(&out);
    assert_int_equal(kz_tool_run(s_tool("echo-files-dashes"), &dopts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(out.count, 2);
    assert_string_equal(out.items[1].file, "-x.py");
    kz_findings_free(&out);

    /* one batch fails: the others still run, the status says the first failure */
    const char *three[] = {"a.py", "b.py", "sub/c.py", NULL};
    kz_tool_run_opts_t topts = {s_root, three, 3, NULL, NULL, NULL, NULL, NULL, false, NULL};
    assert_int_equal(kz_tool_run(s_tool("partial"), &topts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_ERROR);
    assert_string_equal(res.error, "exit 5: b.py:1:1: E1 x");
    assert_int_equal(out.count, 2);
    assert_string_equal(out.items[0].file, "a.py");
    assert_string_equal(out.items[1].file, "sub/c.py");
    assert_int_equal(res.stats.parsed, 2);
    kz_findings_free(&out);

    /* a root that is not there */
    kz_tool_run_opts_t gone = {
        "/nonexistent-kz-root", files, 1, NULL, NULL, NULL, NULL, NULL, false, NULL};
    assert_int_equal(kz_tool_run(s_tool("flake8"), &gone, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_ERROR);
    assert_non_null(strstr(res.error, "cannot run in '/nonexistent-kz-root'"));
}

/* Format "rewrite" (pyupgrade, from the catalog): the tool runs on copies
   in a scratch directory; a file it changed is a finding at its first
   changed line; the worktree is untouched and the copies are gone */
static size_t s_scratch_dirs(void)
{
    glob_t g;
    size_t n = glob("/tmp/kaizen-rewrite.*", 0, NULL, &g) == 0 ? g.gl_pathc : 0;
    globfree(&g);
    return n;
}

static void test_rewrite(void **state)
{
    (void)state;
    char *prog = kz_proc_which("pyupgrade");
    if (!prog)
        skip();
    free(prog);
    s_write("up1.py", "import os\n\nx = set([1, 2])\n");
    s_write("up2.py", "x = {1, 2}\n");
    size_t before = s_scratch_dirs();
    const char *files[] = {"up1.py", "up2.py", NULL};
    kz_tool_run_opts_t opts = {s_root, files, 2, NULL, NULL, NULL, NULL, NULL, false, NULL};
    kz_findings_t out;
    kz_findings_init(&out);
    kz_tool_result_t res;
    assert_int_equal(kz_tool_run(s_tool("pyupgrade"), &opts, &out, &res), 0);
    assert_int_equal(res.status, KZ_TOOL_OK);
    assert_int_equal(out.count, 1);
    assert_string_equal(out.items[0].file, "up1.py");
    assert_string_equal(out.items[0].rule, "pyupgrade");
    assert_int_equal(out.items[0].line, 3);
    assert_non_null(strstr(out.items[0].message, "would rewrite"));
    /* the worktree's file is as it was; no scratch directory is left */
    char path[512], buf[64] = "";
    snprintf(path, sizeof path, "%s/up1.py", s_root);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, "import os\n\nx = set([1, 2])\n");
    assert_int_equal(s_scratch_dirs(), before);
    kz_findings_free(&out);
    unlink(path);
    snprintf(path, sizeof path, "%s/up2.py", s_root);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_inside),
        cmocka_unit_test(test_predicates),
        cmocka_unit_test(test_argv_expand),
        cmocka_unit_test(test_argv_file),
        cmocka_unit_test(test_argv_python_module),
        cmocka_unit_test(test_run_flake8),
        cmocka_unit_test(test_run_tick),
        cmocka_unit_test(test_run_failures),
        cmocka_unit_test(test_rewrite),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
