/*  test_scope.c - kz_scope on a real git repository in a temporary
    directory: vendor directories at any depth, submodules (a gitlink),
    .gitattributes linguist-vendored / linguist-generated (and their
    explicit false), files that say they are generated, the exclude of
    .pre-commit-config.yaml and the [flake8] exclude of setup.cfg, tox.ini
    and .flake8; findings marked with their reason; bad project configs.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_finding.h"
#include "kz_git.h"
#include "kz_scope.h"

typedef struct {
    char dir[PATH_MAX - 64];
} s_fix_t;

static void s_write(const char *root, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void s_git(const char *repo, const char *const *args)
{
    char err[512] = "";
    int rc = kz_git(repo, args, 0, NULL, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "git failed: %s\n", err);
    assert_int_equal(rc, 0);
}

#define GIT(repo, ...)                          \
    do {                                        \
        const char *a_[] = {__VA_ARGS__, NULL}; \
        s_git((repo), a_);                      \
    } while (0)

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int s_setup(void **state)
{
    s_fix_t *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/kz-test-scope.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    GIT(fx->dir, "init", "--quiet", "--initial-branch=main");
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    s_fix_t *fx = *state;
    nftw(fx->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static kz_scope_t *s_scope(const s_fix_t *fx)
{
    char err[512] = "";
    kz_scope_t *scope = kz_scope_new(fx->dir, err, sizeof err);
    if (!scope)
        fprintf(stderr, "kz_scope_new: %s\n", err);
    assert_non_null(scope);
    return scope;
}

/* The reason kz_scope_mark gives PATH (NULL: the project's own) */
static const char *s_mark(kz_scope_t *scope, const char *path)
{
    kz_findings_t list;
    kz_findings_init(&list);
    kz_finding_t f = {0};
    f.tool = (char *)"codespell";
    f.rule = (char *)"misspelling";
    f.file = (char *)path;
    f.message = (char *)"m";
    assert_int_equal(kz_findings_add(&list, &f), 0);
    char err[512] = "";
    int rc = kz_scope_mark(scope, &list, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "kz_scope_mark: %s\n", err);
    assert_int_equal(rc, 0);
    /* the finding carries what the scope remembers */
    const char *reason = kz_scope_reason_of(scope, path);
    if (reason)
        assert_string_equal(list.items[0].excluded, reason);
    else
        assert_null(list.items[0].excluded);
    kz_findings_free(&list);
    return reason;
}

/* kz_scope_mark gives PATH the reason WANT (NULL: the project's own) */
static void s_assert_reason(kz_scope_t *scope, const char *path, const char *want)
{
    const char *got = s_mark(scope, path);
    if (!want) {
        if (got)
            fprintf(stderr, "%s: '%s'\n", path, got);
        assert_null(got);
    } else {
        if (!got)
            fprintf(stderr, "%s: NULL, want '%s'\n", path, want);
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

#define ASSERT_REASON(scope, path, want) s_assert_reason((scope), (path), (want))

static void test_paths(void **state)
{
    s_fix_t *fx = *state;
    s_write(fx->dir, "app/main.py", "x = 1\n");
    s_write(fx->dir, "vendor/lib.py", "x = 1\n");
    s_write(fx->dir, "src/third_party/x.py", "x = 1\n");
    s_write(fx->dir, "web/node_modules/a/b.js", "x\n");
    s_write(fx->dir, "third-party/c.c", "int c;\n");
    s_write(fx->dir, "vendor.py", "x = 1\n"); /* a file, not a directory */
    GIT(fx->dir, "add", "-A");
    kz_scope_t *scope = s_scope(fx);
    assert_null(kz_scope_warning(scope));
    assert_null(kz_scope_path_reason(scope, "app/main.py"));
    assert_null(kz_scope_path_reason(scope, "vendor.py"));
    assert_string_equal(kz_scope_path_reason(scope, "vendor/lib.py"), "vendored: vendor/");
    assert_string_equal(kz_scope_path_reason(scope, "src/third_party/x.py"),
                        "vendored: third_party/");
    assert_string_equal(kz_scope_path_reason(scope, "web/node_modules/a/b.js"),
                        "vendored: node_modules/");
    assert_string_equal(kz_scope_path_reason(scope, "third-party/c.c"), "vendored: third-party/");
    ASSERT_REASON(scope, "app/main.py", NULL);
    ASSERT_REASON(scope, "vendor/lib.py", "vendored: vendor/");
    /* a file the tools report that the worktree does not hold */
    ASSERT_REASON(scope, "no/such.py", NULL);
    kz_scope_destroy(&scope);
    kz_scope_destroy(&scope); /* twice is fine */
    assert_null(scope);
}

static void test_attributes(void **state)
{
    s_fix_t *fx = *state;
    s_write(fx->dir, ".gitattributes",
            "extlib/** linguist-vendored\n"
            "vendor/own.py linguist-vendored=false\n"
            "vendor/unset.py -linguist-vendored\n"
            "api/*.py linguist-generated\n"
            "gen/kept.py linguist-generated=false\n"
            "docs/x.py linguist-generated=true\n");
    s_write(fx->dir, "extlib/y.py", "x = 1\n");
    s_write(fx->dir, "extlib/deep/z.py", "x = 1\n");
    s_write(fx->dir, "vendor/own.py", "x = 1\n");
    s_write(fx->dir, "vendor/unset.py", "x = 1\n");
    s_write(fx->dir, "vendor/other.py", "x = 1\n");
    s_write(fx->dir, "api/client.py", "x = 1\n");
    s_write(fx->dir, "gen/kept.py", "# Code generated by hand, kept by the project\n");
    s_write(fx->dir, "gen/said.py", "# Generated by the protocol buffer compiler.  DO NOT EDIT!\n");
    s_write(fx->dir, "docs/x.py", "x = 1\n");
    s_write(fx->dir, "own.py", "# a generator of reports\nx = 1\n");
    GIT(fx->dir, "add", "-A");
    kz_scope_t *scope = s_scope(fx);
    ASSERT_REASON(scope, "extlib/y.py", "vendored: .gitattributes linguist-vendored");
    ASSERT_REASON(scope, "extlib/deep/z.py", "vendored: .gitattributes linguist-vendored");
    ASSERT_REASON(scope, "vendor/own.py", NULL);
    ASSERT_REASON(scope, "vendor/unset.py", NULL);
    ASSERT_REASON(scope, "vendor/other.py", "vendored: vendor/");
    ASSERT_REASON(scope, "api/client.py", "generated: .gitattributes linguist-generated");
    ASSERT_REASON(scope, "docs/x.py", "generated: .gitattributes linguist-generated");
    ASSERT_REASON(scope, "gen/kept.py", NULL);
    ASSERT_REASON(scope, "gen/said.py", "generated: the file says it is generated");
    ASSERT_REASON(scope, "own.py", NULL);
    kz_scope_destroy(&scope);
}

static void test_generated_heads(void **state)
{
    s_fix_t *fx = *state;
    static const char *const heads[] = {
        "// @generated by tool\n",          "/* Code generated by protoc-gen-go. DO NOT EDIT. */\n",
        "# AUTOGENERATED FILE\n",           "-- this file was generated by sqlc\n",
        "# do not edit: written by make\n",
    };
    char rel[64];
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        snprintf(rel, sizeof rel, "g%zu.txt", i);
        s_write(fx->dir, rel, heads[i]);
    }
    /* a marker after the first KiB does not count */
    char big[2048];
    memset(big, 'x', sizeof big);
    big[1500] = '\n';
    memcpy(big + 1600, "DO NOT EDIT", 11);
    big[sizeof big - 1] = '\0';
    s_write(fx->dir, "late.txt", big);
    GIT(fx->dir, "add", "-A");
    kz_scope_t *scope = s_scope(fx);
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        snprintf(rel, sizeof rel, "g%zu.txt", i);
        ASSERT_REASON(scope, rel, "generated: the file says it is generated");
    }
    ASSERT_REASON(scope, "late.txt", NULL);
    kz_scope_destroy(&scope);
}

static void test_submodule(void **state)
{
    s_fix_t *fx = *state;
    s_write(fx->dir, "a.py", "x = 1\n");
    GIT(fx->dir, "add", "-A");
    GIT(fx->dir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first");
    /* a gitlink (mode 160000) at ext/sub, as `git submodule add` leaves */
    char *head = NULL, err[256];
    const char *rev[] = {"rev-parse", "HEAD", NULL};
    assert_int_equal(kz_git(fx->dir, rev, 0, &head, err, sizeof err), 0);
    head[strcspn(head, "\n")] = '\0';
    char info[128];
    snprintf(info, sizeof info, "160000,%s,ext/sub", head);
    free(head);
    GIT(fx->dir, "update-index", "--add", "--cacheinfo", info);
    kz_scope_t *scope = s_scope(fx);
    assert_string_equal(kz_scope_path_reason(scope, "ext/sub/lib/m.py"), "vendored: git submodule");
    assert_null(kz_scope_path_reason(scope, "ext/subway.py"));
    ASSERT_REASON(scope, "ext/sub/m.py", "vendored: git submodule");
    ASSERT_REASON(scope, "a.py", NULL);
    kz_scope_destroy(&scope);

    /* a submodule checked out: its files are on disk, not in our index */
    char up[PATH_MAX];
    snprintf(up, sizeof up, "%s/upstream", fx->dir);
    assert_int_equal(mkdir(up, 0755), 0);
    GIT(up, "init", "--quiet", "--initial-branch=main");
    s_write(up, "m.py", "# upstream code\n");
    GIT(up, "add", "-A");
    GIT(up, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "up");
    GIT(fx->dir, "-c", "protocol.file.allow=always", "submodule", "--quiet", "add", "--", up,
        "ext/real");
    scope = s_scope(fx);
    ASSERT_REASON(scope, "ext/real/m.py", "vendored: git submodule");
    ASSERT_REASON(scope, "ext/sub/m.py", "vendored: git submodule");
    ASSERT_REASON(scope, "a.py", NULL);
    kz_scope_destroy(&scope);
}

static void test_precommit(void **state)
{
    s_fix_t *fx = *state;
    s_write(fx->dir, ".pre-commit-config.yaml",
            "exclude: |\n"
            "    (?x)^(\n"
            "        migrations/.*|\n"
            "        .*_pb2\\.py\n"
            "    )$\n"
            "repos:\n"
            "  - repo: local\n"
            "    hooks:\n"
            "      - id: x\n"
            "        exclude: ^app/\n");
    GIT(fx->dir, "add", "-A");
    kz_scope_t *scope = s_scope(fx);
    assert_null(kz_scope_warning(scope));
    const char *want = "excluded by the project: .pre-commit-config.yaml exclude";
    assert_string_equal(kz_scope_path_reason(scope, "migrations/0001.py"), want);
    assert_string_equal(kz_scope_path_reason(scope, "pkg/api_pb2.py"), want);
    /* a hook's own exclude is not the project's */
    assert_null(kz_scope_path_reason(scope, "app/main.py"));
    assert_null(kz_scope_path_reason(scope, "pkg/migrations.py"));
    kz_scope_destroy(&scope);

    /* a regex PCRE2 refuses: said, and not used */
    s_write(fx->dir, ".pre-commit-config.yaml", "exclude: '(unclosed'\nrepos: []\n");
    scope = s_scope(fx);
    assert_non_null(kz_scope_warning(scope));
    assert_non_null(strstr(kz_scope_warning(scope), "(unclosed"));
    assert_null(kz_scope_path_reason(scope, "(unclosed"));
    kz_scope_destroy(&scope);

    /* broken YAML: said */
    s_write(fx->dir, ".pre-commit-config.yaml", "exclude: [unclosed\n");
    scope = s_scope(fx);
    assert_non_null(kz_scope_warning(scope));
    kz_scope_destroy(&scope);
}

static void test_flake8(void **state)
{
    s_fix_t *fx = *state;
    s_write(fx->dir, ".flake8",
            "[flake8]\n"
            "max-line-length = 100\n"
            "exclude =\n"
            "    .git,\n"
            "    build/,\n"
            "    ./docs/conf.py,\n"
            "    *_generated.py\n"
            "extend_exclude: legacy\n"
            "[other]\n"
            "exclude = app\n");
    kz_scope_t *scope = s_scope(fx);
    const char *want = "excluded by the project: .flake8 exclude";
    assert_string_equal(kz_scope_path_reason(scope, "build/lib/x.py"), want);
    assert_string_equal(kz_scope_path_reason(scope, "docs/conf.py"), want);
    assert_string_equal(kz_scope_path_reason(scope, "pkg/models_generated.py"), want);
    assert_string_equal(kz_scope_path_reason(scope, "src/legacy/old.py"), want);
    assert_null(kz_scope_path_reason(scope, "pkg/docs/conf.py")); /* anchored at the root */
    assert_null(kz_scope_path_reason(scope, "app/main.py"));      /* another section */
    assert_null(kz_scope_path_reason(scope, "buildx/y.py"));
    kz_scope_destroy(&scope);

    /* setup.cfg comes first when it has a [flake8] section */
    s_write(fx->dir, "setup.cfg", "[metadata]\nname = x\n[flake8]\nexclude = gen\n");
    scope = s_scope(fx);
    assert_string_equal(kz_scope_path_reason(scope, "gen/a.py"),
                        "excluded by the project: setup.cfg exclude");
    assert_null(kz_scope_path_reason(scope, "build/lib/x.py"));
    kz_scope_destroy(&scope);

    /* a setup.cfg without [flake8] leaves it to tox.ini */
    s_write(fx->dir, "setup.cfg", "[metadata]\nname = x\n");
    s_write(fx->dir, "tox.ini", "[tox]\nenvlist = py3\n\n[flake8]\nEXCLUDE = out,tmp\n");
    scope = s_scope(fx);
    assert_string_equal(kz_scope_path_reason(scope, "out/a.py"),
                        "excluded by the project: tox.ini exclude");
    assert_string_equal(kz_scope_path_reason(scope, "a/tmp/b.py"),
                        "excluded by the project: tox.ini exclude");
    kz_scope_destroy(&scope);
}

static void test_not_a_repo(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", path[PATH_MAX];
    snprintf(path, sizeof path, "%s/nothing", fx->dir);
    assert_null(kz_scope_new(path, err, sizeof err));
    assert_non_null(strstr(err, "git ls-files"));
}

/* a file name that looks like an option, with spaces and a newline, goes
   to git on stdin and comes back intact */
static void test_odd_names(void **state)
{
    s_fix_t *fx = *state;
    s_write(fx->dir, ".gitattributes", "*.gen linguist-generated\n");
    s_write(fx->dir, "--all", "x\n");
    s_write(fx->dir, "a b\nc.gen", "x\n");
    GIT(fx->dir, "add", "-A");
    kz_scope_t *scope = s_scope(fx);
    ASSERT_REASON(scope, "--all", NULL);
    ASSERT_REASON(scope, "a b\nc.gen", "generated: .gitattributes linguist-generated");
    kz_scope_destroy(&scope);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paths, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_attributes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_generated_heads, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_submodule, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_precommit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_flake8, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_not_a_repo, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_odd_names, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
