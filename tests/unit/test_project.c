/*  test_project.c - kz_project: pyproject.toml and INI files read through
    python3, .pre-commit-config.yaml hooks, a tool's setup (hook args with
    the refused ones, codespell's [tool.codespell], mypy's configured
    files, the hook's files/exclude regexes, the version pin against the
    installed codespell), the tools chosen but not run, and
    kz_argv_build. Files are written by the test in a temp dir.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_config.h"
#include "kz_proc.h"
#include "kz_project.h"
#include "kz_recipe.h"

static char s_root[64];

static void s_write(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", s_root, rel);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_root, sizeof s_root, "/tmp/kz-test-project-XXXXXX");
    if (!mkdtemp(s_root))
        return -1;
    return chmod(s_root, 0755); /* settings are read in the sandbox, as its user */
}

static int s_teardown(void **state)
{
    (void)state;
    const char *argv[] = {"rm", "-rf", s_root, NULL};
    kz_proc_opts_t po = {0};
    po.argv = argv;
    kz_proc_result_t pr;
    char err[256];
    kz_proc_run(&po, &pr, err, sizeof err);
    kz_proc_result_free(&pr);
    return 0;
}

static const char s_precommit[] =
    "exclude: '^vendor/'\n"
    "repos:\n"
    "  - repo: https://github.com/codespell-project/codespell\n"
    "    rev: v2.4.2\n"
    "    hooks:\n"
    "      - id: codespell\n"
    "        args: [stray, '--ignore-words-list=inout,te', -w, --skip, '*.json', "
    "--config=/etc/passwd, -I, ../outside.txt, --builtin=clear]\n"
    "        files: '\\.(py|md)$'\n"
    "        exclude: '^docs/old/'\n"
    "  - repo: https://github.com/astral-sh/ruff-pre-commit\n"
    "    rev: v0.1.6\n"
    "    hooks:\n"
    "      - id: ruff\n"
    "      - id: ruff-format\n"
    "  - repo: local\n"
    "    hooks:\n"
    "      - id: mypy\n"
    "        args: [--strict, --pretty, --python-executable=/bin/sh]\n";

static kz_config_t *s_config(void)
{
    static const char yaml[] =
        "tools:\n"
        "  - name: codespell\n"
        "    argv: [codespell, --, \"{files}\"]\n"
        "    format: gcc\n"
        "    version: [codespell, --version]\n"
        "    pin_repo: codespell-project/codespell\n"
        "  - name: flake8\n"
        "    argv: [flake8, --, \"{files}\"]\n"
        "    format: gcc\n"
        "  - name: typecheck\n"
        "    hooks: [mypy]\n"
        "    argv: [/usr/bin/python3, -m, mypy, --no-pretty, --, \"{files}\"]\n"
        "    format: gcc\n";
    char err[512];
    kz_config_t *cfg = kz_config_parse("test", yaml, strlen(yaml), err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    return cfg;
}

static void test_settings(void **state)
{
    (void)state;
    s_write("pyproject.toml", "[tool.mypy]\npretty = true\nfiles = [\"src\"]\n"
                              "[tool.codespell]\nignore-words-list = \"falsy\"\n"
                              "ignore_regex = '\\bhttps?://\\S+'\ncount = true\n"
                              "[tool.pyright]\ninclude = [\"src\"]\n");
    s_write("setup.cfg", "[flake8]\nmax-line-length = 100\nextend-ignore =\n    E203,\n    W503\n");
    s_write(".pre-commit-config.yaml", s_precommit);
    char err[256];
    kz_project_t *p = kz_project_load(s_root, err, sizeof err);
    assert_non_null(p);
    assert_string_equal(kz_project_problems(p), "");

    json_t *mypy = kz_project_toml(p, "tool.mypy");
    assert_non_null(mypy);
    assert_true(json_is_true(json_object_get(mypy, "pretty")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(mypy, "files"), 0)),
                        "src");
    assert_null(kz_project_toml(p, "tool.black"));
    assert_string_equal(kz_project_ini(p, "setup.cfg", "flake8", "max-line-length"), "100");
    assert_string_equal(kz_project_ini(p, "setup.cfg", "flake8", "extend-ignore"), "\nE203,\nW503");
    assert_null(kz_project_ini(p, "setup.cfg", "mypy", "files"));

    assert_int_equal(kz_project_hooks_count(p), 4);
    const kz_hook_t *h = kz_project_hook(p, "codespell");
    assert_non_null(h);
    assert_string_equal(h->repo, "https://github.com/codespell-project/codespell");
    assert_string_equal(h->rev, "v2.4.2");
    assert_int_equal(h->args_count, 9);
    assert_string_equal(h->args[1], "--ignore-words-list=inout,te");
    assert_string_equal(h->files, "\\.(py|md)$");
    assert_string_equal(kz_project_hook(p, "ruff-format")->rev, "v0.1.6");
    assert_null(kz_project_hook(p, "black"));

    kz_config_t *cfg = s_config();
    kz_tool_setup_t su;
    /* a tool without a hook: pre-commit's patterns are not its business */
    assert_int_equal(kz_project_setup(p, kz_config_tool(cfg, "flake8"), &su), 0);
    assert_int_equal(su.args_count, 0);
    assert_null(su.hook);
    assert_true(kz_tool_setup_wants(&su, "vendor/lib/x.py"));
    kz_tool_setup_clear(&su);
    /* codespell: the pyproject keys first, then the hook's args but the
       refused ones; the pin against the installed version */
    assert_int_equal(kz_project_setup(p, kz_config_tool(cfg, "codespell"), &su), 0);
    assert_false(su.project_files);
    const char *want[] = {"--ignore-words-list=falsy",
                          "--ignore-regex=\\bhttps?://\\S+",
                          "--ignore-words-list=inout,te",
                          "--skip",
                          "*.json",
                          "--builtin=clear",
                          NULL};
    for (size_t i = 0; want[i]; i++)
        assert_string_equal(su.args[i], want[i]);
    assert_int_equal(su.args_count, 6);
    assert_non_null(strstr(su.refused, "'-w' refused"));
    assert_non_null(strstr(su.refused, "'--config=/etc/passwd' refused: names a file outside"));
    assert_non_null(strstr(su.refused, "'-I' refused: names a file outside"));
    assert_non_null(strstr(su.refused, "'stray' refused: not an option"));
    assert_non_null(strstr(su.refused, "[tool.codespell] count: not passed on"));
    assert_string_equal(su.pinned, "2.4.2");
    assert_true(su.installed[0] >= '0' && su.installed[0] <= '9');
    char differs[256];
    snprintf(differs, sizeof differs,
             "version differs from the project's pin (2.4.2 pinned, %s installed)", su.installed);
    if (strcmp(su.installed, "2.4.2") != 0)
        assert_string_equal(su.differs, differs);
    assert_true(kz_tool_setup_wants(&su, "src/a.py"));
    assert_true(kz_tool_setup_wants(&su, "README.md"));
    assert_false(kz_tool_setup_wants(&su, "notes.txt"));       /* hook files */
    assert_false(kz_tool_setup_wants(&su, "docs/old/a.md"));   /* hook exclude */
    assert_false(kz_tool_setup_wants(&su, "vendor/lib/x.py")); /* top-level exclude */
    kz_tool_setup_clear(&su);

    /* mypy through its hook alias: the project's files, --pretty and the
       program refused */
    assert_int_equal(kz_project_setup(p, kz_config_tool(cfg, "typecheck"), &su), 0);
    assert_true(su.project_files);
    assert_int_equal(su.args_count, 1);
    assert_string_equal(su.args[0], "--strict");
    assert_non_null(strstr(su.refused, "'--pretty' refused"));
    assert_non_null(strstr(su.refused, "'--python-executable=/bin/sh' refused"));
    assert_string_equal(su.pinned, ""); /* a local hook pins nothing */
    assert_string_equal(su.differs, "");
    char **argv =
        kz_argv_build(kz_config_tool(cfg, "typecheck")->argv, (const char *const *)su.args,
                      su.project_files, NULL, 0, s_root, NULL, NULL);
    const char *built[] = {"/usr/bin/python3", "-m", "mypy", "--no-pretty", "--strict", "--", NULL};
    for (size_t i = 0; built[i]; i++)
        assert_string_equal(argv[i], built[i]);
    assert_null(argv[6]);
    kz_strv_free(argv);
    kz_tool_setup_clear(&su);

    /* chosen but not run: ruff (two hooks, one entry) and pyright */
    json_t *unrun = kz_project_unrun(p, cfg);
    assert_int_equal(json_array_size(unrun), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(unrun, 0), "name")),
                        "ruff");
    assert_string_equal(json_string_value(json_object_get(json_array_get(unrun, 0), "note")),
                        "chosen by the project but not run: ruff (no recipe; 0.1.6 pinned, not "
                        "installed, not packaged in Debian 12)");
    assert_string_equal(json_string_value(json_object_get(json_array_get(unrun, 1), "name")),
                        "pyright");
    json_decref(unrun);

    kz_config_destroy(&cfg);
    kz_project_destroy(&p);
    kz_project_destroy(&p);
}

static void test_mypy_precedence(void **state)
{
    (void)state;
    /* mypy.ini is the file mypy reads first: without files there, the
       files of pyproject.toml do not count */
    s_write("mypy.ini", "[mypy]\nstrict = True\n");
    char err[256];
    kz_project_t *p = kz_project_load(s_root, err, sizeof err);
    assert_non_null(p);
    kz_config_t *cfg = s_config();
    kz_tool_setup_t su;
    assert_int_equal(kz_project_setup(p, kz_config_tool(cfg, "typecheck"), &su), 0);
    assert_false(su.project_files);
    kz_tool_setup_clear(&su);
    kz_project_destroy(&p);
    s_write("mypy.ini", "[mypy]\nfiles = src, lib\n");
    p = kz_project_load(s_root, err, sizeof err);
    assert_int_equal(kz_project_setup(p, kz_config_tool(cfg, "typecheck"), &su), 0);
    assert_true(su.project_files);
    kz_tool_setup_clear(&su);
    kz_project_destroy(&p);
    char path[256];
    snprintf(path, sizeof path, "%s/mypy.ini", s_root);
    unlink(path);
    kz_config_destroy(&cfg);
}

static void test_bad_files(void **state)
{
    (void)state;
    /* broken files are said, not fatal; a bad regex is left out */
    s_write("pyproject.toml", "[tool.mypy\nfiles = 1\n");
    s_write("setup.cfg", "no section here\n");
    s_write(".pre-commit-config.yaml", "repos:\n  - repo: local\n    hooks:\n"
                                       "      - id: codespell\n        files: '(['\n");
    char err[256];
    kz_project_t *p = kz_project_load(s_root, err, sizeof err);
    assert_non_null(p);
    assert_non_null(strstr(kz_project_problems(p), "pyproject.toml: "));
    assert_non_null(strstr(kz_project_problems(p), "setup.cfg: "));
    assert_null(kz_project_toml(p, "tool.mypy"));
    kz_config_t *cfg = s_config();
    kz_tool_setup_t su;
    assert_int_equal(kz_project_setup(p, kz_config_tool(cfg, "codespell"), &su), 0);
    assert_non_null(strstr(su.refused, "hook files '([' not applied"));
    assert_true(kz_tool_setup_wants(&su, "a.txt"));
    kz_tool_setup_clear(&su);
    kz_project_destroy(&p);

    s_write(".pre-commit-config.yaml", "repos: [\n");
    p = kz_project_load(s_root, err, sizeof err);
    assert_non_null(p);
    assert_non_null(strstr(kz_project_problems(p), ".pre-commit-config.yaml:"));
    assert_int_equal(kz_project_hooks_count(p), 0);
    kz_project_destroy(&p);
    kz_config_destroy(&cfg);

    assert_null(kz_project_load("/nonexistent-kz-project", err, sizeof err));
    assert_string_equal(err, "project '/nonexistent-kz-project' is not a directory");
    /* no project: an empty setup */
    assert_int_equal(kz_project_setup(NULL, NULL, &su), 0);
    assert_int_equal(su.args_count, 0);
    assert_null(su.args[0]);
    assert_true(kz_tool_setup_wants(&su, "x"));
    kz_tool_setup_clear(&su);
}

static void test_version_find(void **state)
{
    (void)state;
    char v[64];
    kz_version_find("mypy 1.0.1 (compiled: yes)", v, sizeof v);
    assert_string_equal(v, "1.0.1");
    kz_version_find("2.2.2\n", v, sizeof v);
    assert_string_equal(v, "2.2.2");
    kz_version_find("tool3 version 10", v, sizeof v);
    assert_string_equal(v, "");
    kz_version_find("x86 v12.4-rc1", v, sizeof v);
    assert_string_equal(v, "12.4");
}

static void test_argv_build(void **state)
{
    (void)state;
    char t0[] = "tool", t1[] = "{files}", t2[] = "{root}";
    char *tmpl[] = {t0, t1, NULL};
    const char *files[] = {"a.py", NULL};
    const char *extra[] = {"-x", "{root}", NULL};
    char **a = kz_argv_build(tmpl, extra, false, files, 1, "/r", NULL, NULL);
    assert_string_equal(a[0], "tool");
    assert_string_equal(a[1], "-x");
    assert_string_equal(a[2], "{root}"); /* the project's args are not expanded */
    assert_string_equal(a[3], "a.py");
    assert_null(a[4]);
    kz_strv_free(a);
    char *plain[] = {t0, t2, NULL};
    a = kz_argv_build(plain, extra, false, NULL, 0, "/r", NULL, NULL);
    assert_string_equal(a[1], "/r");
    assert_string_equal(a[2], "-x");
    assert_null(a[4]);
    kz_strv_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings),   cmocka_unit_test(test_mypy_precedence),
        cmocka_unit_test(test_bad_files),  cmocka_unit_test(test_version_find),
        cmocka_unit_test(test_argv_build),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
