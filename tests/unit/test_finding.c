/*  test_finding.c - kz_finding: the parsers against REAL recorded tool
    output (tests/data/tools/NAME.out, re-recorded by tests/data/tools/record.sh),
    a hand-written SARIF 2.1.0 log, garbage and truncated input, paths
    outside the root, classification with the config's rule overrides,
    fingerprints (PROTOCOL.md 6) and the finding.batch message round trip.
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
#include "kz_finding.h"
#include "kz_msg.h"

/* the tool recipes the recorded outputs are classified with (the same
   defaults and overrides as examples/kaizen.yaml) */
static const char s_yaml[] =
    "tools:\n"
    "  - name: flake8\n"
    "    argv: [flake8, \"{files}\"]\n"
    "    format: gcc\n"
    "    rules:\n"
    "      - {match: \"E9*\", severity: high, category: bug}\n"
    "      - {match: \"F82*\", severity: high, category: bug}\n"
    "      - {match: \"F*\", severity: medium, category: bug}\n"
    "  - name: pylint\n"
    "    argv: [pylint, --output-format=json, \"{files}\"]\n"
    "    format: pylint-json\n"
    "    rules:\n"
    "      - {match: unused-import, severity: low, category: style}\n"
    "      - {match: invalid-name, severity: info}\n"
    "  - name: mypy\n"
    "    argv: [mypy, \"{files}\"]\n"
    "    format: gcc\n"
    "    category: type\n"
    "    severity: medium\n"
    "    rules:\n"
    "      - {match: \"*\", severity: medium}\n"
    "  - name: codespell\n"
    "    argv: [codespell, \"{files}\"]\n"
    "    format: gcc\n"
    "    category: docs\n"
    "  - name: cppcheck\n"
    "    argv: [cppcheck, --template=gcc, \"{files}\"]\n"
    "    format: gcc\n"
    "    category: bug\n"
    "    severity: medium\n"
    "    rules:\n"
    "      - {match: \"*ninitvar\", severity: high}\n"
    "  - name: clang-tidy\n"
    "    argv: [clang-tidy, \"{files}\"]\n"
    "    format: gcc\n"
    "    category: bug\n"
    "    severity: medium\n"
    "    rules:\n"
    "      - {match: \"clang-analyzer-security.insecureAPI.*\", severity: info, category: "
    "security}\n"
    "  - name: shellcheck\n"
    "    argv: [shellcheck, -f, gcc, \"{files}\"]\n"
    "    format: gcc\n"
    "    category: bug\n"
    "    severity: medium\n"
    "    rules:\n"
    "      - {match: SC2086, category: style}\n"
    "  - name: gcc\n"
    "    argv: [gcc, -c, \"{files}\"]\n"
    "    format: gcc\n"
    "    category: bug\n"
    "  - name: demo-sast\n"
    "    argv: [demo-sast, --sarif]\n"
    "    format: sarif\n"
    "    category: security\n"
    "    severity: low\n"
    "  - name: black\n"
    "    argv: [black, --check, \"{files}\"]\n"
    "    format: files\n"
    "  - name: isort\n"
    "    argv: [isort, --check-only, \"{files}\"]\n"
    "    format: files\n"
    "  - name: clang-format\n"
    "    argv: [clang-format, --dry-run, \"{files}\"]\n"
    "    format: files\n";

static kz_config_t *s_cfg;

static int s_setup(void **state)
{
    (void)state;
    char err[512];
    s_cfg = kz_config_parse("test_finding", s_yaml, strlen(s_yaml), err, sizeof err);
    if (!s_cfg)
        fprintf(stderr, "config: %s\n", err);
    return s_cfg ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    kz_config_destroy(&s_cfg);
    return 0;
}

/* tests/data/tools/NAME with every "@ROOT@" replaced by ROOT; malloc'd */
static char *s_data(const char *name, const char *root, size_t *len)
{
    const char *top = getenv("KZ_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/tools/%s", top ? top : ".", name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s (run the test from the repository root or set KZ_ROOT)", path);
    char *raw = malloc(1 << 20);
    assert_non_null(raw);
    size_t n = fread(raw, 1, (1 << 20) - 1, fp);
    fclose(fp);
    size_t rl = strlen(root);
    char *out = malloc(n * (rl + 1) + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 6 && memcmp(raw + i, "@ROOT@", 6) == 0) {
            memcpy(out + o, root, rl);
            o += rl;
            i += 6;
        } else {
            out[o++] = raw[i++];
        }
    }
    out[o] = '\0';
    free(raw);
    *len = o;
    return out;
}

typedef struct {
    const char *rule;
    const char *file;
    int line;
    int col;
    const char *severity;
    const char *category;
} s_want_t;

/* Parse DATA as FORMAT for TOOL (classified with its recipe) and compare
   with WANT[0..N), in order */
static void s_expect(const char *format, const char *data, const char *tool, const char *root,
                     const char *const *files, const s_want_t *want, size_t n,
                     kz_parse_stats_t *stats)
{
    size_t len;
    char *text = s_data(data, root, &len);
    size_t nfiles = 0;
    while (files && files[nfiles])
        nfiles++;
    kz_parse_ctx_t ctx = {tool, root, files, nfiles};
    kz_findings_t list;
    kz_findings_init(&list);
    char err[256];
    int rc = kz_parse_output(format, text, len, &ctx, &list, stats, err, sizeof err);
    if (rc != 0)
        fail_msg("%s: %s", data, err);
    const kz_tool_config_t *tc = kz_config_tool(s_cfg, tool);
    assert_non_null(tc);
    assert_int_equal(kz_findings_classify(&list, tc), 0);
    for (size_t i = 0; i < list.count && i < n; i++) {
        const kz_finding_t *f = &list.items[i];
        if (strcmp(f->rule, want[i].rule) != 0 || strcmp(f->file, want[i].file) != 0 ||
            f->line != want[i].line || f->col != want[i].col ||
            strcmp(f->severity, want[i].severity) != 0 ||
            strcmp(f->category, want[i].category) != 0 || strcmp(f->tool, tool) != 0)
            fail_msg("%s finding %zu: got %s %s %s:%d:%d %s/%s, want %s %s:%d:%d %s/%s", data, i,
                     f->tool, f->rule, f->file, f->line, f->col, f->severity, f->category,
                     want[i].rule, want[i].file, want[i].line, want[i].col, want[i].severity,
                     want[i].category);
        assert_non_null(f->message);
    }
    if (list.count != n)
        fail_msg("%s: %zu findings, want %zu", data, list.count, n);
    kz_findings_free(&list);
    free(text);
}

#define S_N(a) (sizeof(a) / sizeof((a)[0]))

static void test_flake8(void **state)
{
    (void)state;
    static const s_want_t want[] = {
        {"F401", "bad.py", 1, 1, "medium", "bug"},
        {"F401", "bad.py", 2, 1, "medium", "bug"},
        {"F401", "bad.py", 2, 1, "medium", "bug"},
        {"E401", "bad.py", 2, 10, "low", "style"},
        {"F841", "bad.py", 6, 5, "medium", "bug"},
        {"E501", "bad.py", 15, 80, "low", "style"},
        {"F821", "bad.py", 22, 7, "high", "bug"},
        {"E711", "pkg/dup.py", 5, 10, "low", "style"},
        {"E711", "pkg/dup.py", 7, 10, "low", "style"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "flake8.out", "flake8", "/r/root", NULL, want, S_N(want), &st);
    assert_int_equal(st.parsed, 9);
    assert_int_equal(st.skipped, 0);

    /* the exact message of one */
    size_t len;
    char *text = s_data("flake8.out", "/r/root", &len);
    kz_parse_ctx_t ctx = {"flake8", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("gcc", text, len, &ctx, &list, NULL, NULL, 0), 0);
    assert_string_equal(list.items[5].message, "line too long (95 > 79 characters)");
    assert_null(list.items[5].severity); /* flake8 states no level: the recipe decides */
    assert_null(list.items[5].fix);
    kz_findings_free(&list);
    free(text);
}

static void test_pylint(void **state)
{
    (void)state;
    static const s_want_t want[] = {
        {"missing-module-docstring", "bad.py", 1, 1, "low", "style"},
        {"multiple-imports", "bad.py", 2, 1, "low", "style"},
        {"missing-function-docstring", "bad.py", 5, 1, "low", "style"},
        {"invalid-name", "bad.py", 5, 9, "info", "style"},
        {"invalid-name", "bad.py", 5, 12, "info", "style"},
        {"unused-variable", "bad.py", 6, 5, "medium", "bug"},
        {"missing-function-docstring", "bad.py", 10, 1, "low", "style"},
        {"missing-function-docstring", "bad.py", 14, 1, "low", "style"},
        {"missing-class-docstring", "bad.py", 18, 1, "low", "style"},
        {"invalid-name", "bad.py", 18, 1, "info", "style"},
        {"too-few-public-methods", "bad.py", 18, 1, "low", "complexity"},
        {"undefined-variable", "bad.py", 22, 7, "high", "bug"},
        {"unused-import", "bad.py", 1, 1, "low", "style"},
        {"unused-import", "bad.py", 2, 1, "low", "style"},
        {"unused-import", "bad.py", 2, 1, "low", "style"},
        {"missing-module-docstring", "pkg/dup.py", 1, 1, "low", "style"},
        {"missing-function-docstring", "pkg/dup.py", 4, 1, "low", "style"},
        {"invalid-name", "pkg/dup.py", 4, 1, "info", "style"},
        {"invalid-name", "pkg/dup.py", 4, 7, "info", "style"},
        {"singleton-comparison", "pkg/dup.py", 5, 8, "low", "style"},
        {"singleton-comparison", "pkg/dup.py", 7, 8, "low", "style"},
    };
    kz_parse_stats_t st;
    s_expect("pylint-json", "pylint.out", "pylint", "/r/root", NULL, want, S_N(want), &st);
    assert_int_equal(st.lines, 21);
    assert_int_equal(st.parsed, 21);

    /* json2 ({"messages": [...]}), absolute paths, no output at all */
    static const char json2[] =
        "{\"messages\": [{\"type\": \"error\", \"symbol\": \"syntax-error\", \"message\": "
        "\"parsing failed\", \"messageId\": \"E0001\", \"path\": \"a.py\", \"absolutePath\": "
        "\"/r/root/a.py\", \"line\": 3, \"column\": 0}], \"statistics\": {}}";
    kz_parse_ctx_t ctx = {"pylint", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(
        kz_parse_output("pylint-json", json2, strlen(json2), &ctx, &list, NULL, NULL, 0), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].rule, "syntax-error");
    assert_string_equal(list.items[0].severity, "high");
    assert_string_equal(list.items[0].category, "bug");
    assert_int_equal(list.items[0].line, 3);
    assert_int_equal(list.items[0].col, 1);
    kz_findings_free(&list);
    assert_int_equal(kz_parse_output("pylint-json", "  \n", 3, &ctx, &list, NULL, NULL, 0), 0);
    assert_int_equal(list.count, 0);
}

static void test_mypy(void **state)
{
    (void)state;
    static const s_want_t want[] = {
        {"return-value", "bad.py", 11, 12, "medium", "type"},
        {"name-defined", "bad.py", 22, 7, "medium", "type"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "mypy.out", "mypy", "/r/root", NULL, want, S_N(want), &st);
    static const s_want_t want_nocol[] = {
        {"return-value", "bad.py", 11, 0, "medium", "type"},
        {"name-defined", "bad.py", 22, 0, "medium", "type"},
    };
    s_expect("gcc", "mypy-nocol.out", "mypy", "/r/root", NULL, want_nocol, S_N(want_nocol), &st);
    assert_int_equal(st.skipped, 1); /* "Found 2 errors in 1 file" */
    /* a note without a code belongs to its error: skipped */
    static const s_want_t want_notes[] = {{"assignment", "notes.py", 3, 14, "medium", "type"}};
    s_expect("gcc", "mypy-notes.out", "mypy", "/r/root", NULL, want_notes, S_N(want_notes), &st);
    assert_int_equal(st.skipped, 2);
}

static void test_codespell(void **state)
{
    (void)state;
    static const s_want_t want[] = {
        {"misspelling", "README.md", 3, 0, "low", "docs"},
        {"misspelling", "README.md", 4, 0, "low", "docs"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "codespell.out", "codespell", "/r/root", NULL, want, S_N(want), &st);

    static const char two[] = "./doc/a.md:7: adn ==> and, add\n";
    kz_parse_ctx_t ctx = {"codespell", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("gcc", two, strlen(two), &ctx, &list, NULL, NULL, 0), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].file, "doc/a.md");
    assert_string_equal(list.items[0].message, "adn ==> and, add");
    assert_string_equal(list.items[0].fix, "and, add");
    kz_findings_free(&list);
}

static void test_cppcheck(void **state)
{
    (void)state;
    static const s_want_t want[] = {
        {"arrayIndexOutOfBounds", "bad.c", 17, 15, "medium", "bug"},
        {"bufferAccessOutOfBounds", "bad.c", 15, 12, "medium", "bug"},
        {"constParameter", "bad.c", 4, 14, "medium", "bug"},
        {"uninitvar", "bad.c", 8, 10, "high", "bug"},
        {"legacyUninitvar", "bad.c", 7, 32, "high", "bug"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "cppcheck.out", "cppcheck", "/r/root", NULL, want, S_N(want), &st);
    assert_int_equal(st.outside, 0);
    /* cppcheck's whole-run messages name "nofile" */
    static const char nofile[] =
        "nofile:0:0: information: Active checkers: 10/20 [checkersReport]\n";
    kz_parse_ctx_t ctx = {"cppcheck", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("gcc", nofile, strlen(nofile), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 0);
    assert_int_equal(st.skipped, 1);
}

static void test_clang_tidy(void **state)
{
    (void)state;
    /* clang-tidy prints absolute paths, notes and source excerpts */
    static const s_want_t want[] = {
        {"clang-analyzer-core.uninitialized.Assign", "bad.c", 7, 38, "medium", "bug"},
        {"clang-analyzer-security.insecureAPI.strcpy", "bad.c", 15, 5, "info", "security"},
        {"clang-diagnostic-fortify-source", "bad.c", 15, 5, "medium", "bug"},
        {"clang-diagnostic-array-bounds", "bad.c", 17, 12, "medium", "bug"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "clang-tidy.out", "clang-tidy", "/work/some root", NULL, want, S_N(want), &st);
    assert_int_equal(st.outside, 0);
    /* under another root every finding is outside */
    size_t len;
    char *text = s_data("clang-tidy.out", "/elsewhere", &len);
    kz_parse_ctx_t ctx = {"clang-tidy", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("gcc", text, len, &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 0);
    assert_int_equal(st.outside, 4);
    free(text);
}

static void test_shellcheck(void **state)
{
    (void)state;
    /* shellcheck's info and style levels come as notes with a code */
    static const s_want_t want[] = {
        {"SC2086", "bad.sh", 3, 12, "low", "style"}, {"SC2086", "bad.sh", 5, 9, "low", "style"},
        {"SC2164", "bad.sh", 7, 1, "medium", "bug"}, {"SC2086", "bad.sh", 7, 4, "low", "style"},
        {"SC2006", "bad.sh", 8, 13, "low", "bug"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "shellcheck.out", "shellcheck", "/r/root", NULL, want, S_N(want), &st);
}

static void test_gcc(void **state)
{
    (void)state;
    /* "-Wx" options name the rule "x"; notes and excerpts are skipped */
    static const s_want_t want[] = {
        {"maybe-uninitialized", "bad.c", 8, 10, "medium", "bug"},
        {"array-bounds", "bad.c", 17, 15, "medium", "bug"},
        {"uninitialized", "bad.c", 7, 38, "medium", "bug"},
    };
    kz_parse_stats_t st;
    s_expect("gcc", "gcc.out", "gcc", "/r/root", NULL, want, S_N(want), &st);
    /* levels, -Werror=, a message without a rule */
    static const char more[] = "x.c:1:2: error: 'y' undeclared\n"
                               "x.c:3:4: fatal error: z.h: No such file or directory\n"
                               "x.c:5:6: error: unused variable 'q' [-Werror=unused-variable]\n"
                               "x.c:7: warning: no column here\n"
                               "In file included from x.c:3:\n"
                               "make: *** [Makefile:12: all] Error 1\n"
                               "    x = \"y.c:3:4: z\";\n";
    kz_parse_ctx_t ctx = {"gcc", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("gcc", more, strlen(more), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 4);
    assert_string_equal(list.items[0].rule, "gcc"); /* no rule: the tool's name */
    assert_string_equal(list.items[0].severity, "high");
    assert_string_equal(list.items[0].message, "'y' undeclared");
    assert_string_equal(list.items[1].severity, "high");
    assert_string_equal(list.items[1].message, "z.h: No such file or directory");
    assert_string_equal(list.items[2].rule, "unused-variable");
    assert_int_equal(list.items[3].line, 7);
    assert_int_equal(list.items[3].col, 0);
    assert_string_equal(list.items[3].severity, "medium");
    kz_findings_free(&list);
    /* flake8 plugins and ruff: longer codes, ruff's "[*]" fixable mark */
    static const char codes[] = "a.py:1:8: F401 [*] `os` imported but unused\n"
                                "a.py:2:1: ASYNC100 async thing\n"
                                "a.py:3:1: SIM102 nested if\n";
    assert_int_equal(kz_parse_output("gcc", codes, strlen(codes), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 3);
    assert_string_equal(list.items[0].rule, "F401");
    assert_string_equal(list.items[0].message, "`os` imported but unused");
    assert_string_equal(list.items[1].rule, "ASYNC100");
    assert_string_equal(list.items[2].rule, "SIM102");
    kz_findings_free(&list);
}

/* Files named like options went in as ./NAME: what the tools print back
   ("./-x.c", or the name alone, quotes and all) is the file's own name */
static void test_dashed_names(void **state)
{
    (void)state;
    const char *given[] = {"-x.c", "--addon={\"script\":\"evil.py\"}.c",
                           "--output-file=/tmp/o/out.txt.c", "-x.py", NULL};
    kz_parse_ctx_t ctx = {"t", "/r/root", given, 0};
    kz_parse_stats_t st;
    kz_findings_t list;
    kz_findings_init(&list);
    static const char gcc[] = "./-x.c:1:31: warning: Null pointer dereference: p [nullPointer]\n"
                              "-x.c:2:3: warning: again [nullPointer]\n"
                              "./--addon={\"script\":\"evil.py\"}.c:4:5: warning: w [bugprone-x]\n"
                              "--output-file=/tmp/o/out.txt.c:6:7: error: e [nullPointer]\n"
                              "./\"other\".c:1:1: warning: not given [x]\n";
    assert_int_equal(kz_parse_output("gcc", gcc, strlen(gcc), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 4);
    assert_string_equal(list.items[0].file, "-x.c");
    assert_string_equal(list.items[1].file, "-x.c");
    assert_string_equal(list.items[2].file, "--addon={\"script\":\"evil.py\"}.c");
    assert_int_equal(list.items[2].line, 4);
    assert_string_equal(list.items[2].rule, "bugprone-x");
    assert_string_equal(list.items[3].file, "--output-file=/tmp/o/out.txt.c");
    assert_int_equal(st.skipped, 1); /* a quoted path that is no given file */
    kz_findings_free(&list);
    /* with no list of files, a quoted path is still no path */
    kz_parse_ctx_t all = {"t", "/r/root", NULL, 0};
    assert_int_equal(kz_parse_output("gcc", gcc, strlen(gcc), &all, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 3);
    kz_findings_free(&list);
    /* the files format (black, isort, clang-format) */
    static const char files[] = "would reformat ./-x.py\n"
                                "./-x.c:1:1: warning: code should be clang-formatted\n";
    assert_int_equal(kz_parse_output("files", files, strlen(files), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].file, "-x.c");
    assert_string_equal(list.items[1].file, "-x.py");
    kz_findings_free(&list);
    /* pylint's JSON and SARIF */
    static const char pylint[] = "[{\"type\": \"warning\", \"path\": \"./-x.py\", \"line\": 2, "
                                 "\"column\": 0, \"symbol\": \"unused-import\", "
                                 "\"message-id\": \"W0611\", \"message\": \"m\"}]";
    assert_int_equal(
        kz_parse_output("pylint-json", pylint, strlen(pylint), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].file, "-x.py");
    kz_findings_free(&list);
    static const char sarif[] =
        "{\"version\": \"2.1.0\", \"runs\": [{\"tool\": {\"driver\": {\"name\": \"f\"}}, "
        "\"results\": [{\"ruleId\": \"FF1\", \"level\": \"error\", \"message\": {\"text\": "
        "\"m\"}, \"locations\": [{\"physicalLocation\": {\"artifactLocation\": {\"uri\": "
        "\"./-x.c\"}, \"region\": {\"startLine\": 3}}}]}]}]}";
    assert_int_equal(kz_parse_output("sarif", sarif, strlen(sarif), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].file, "-x.c");
    assert_int_equal(list.items[0].line, 3);
    kz_findings_free(&list);
}

static void test_sarif(void **state)
{
    (void)state;
    static const s_want_t want[] = {
        {"DS001", "src/app.py", 12, 5, "high", "security"},         /* level error */
        {"DS002", "lib/util.c", 40, 0, "low", "security"},          /* rule default: note */
        {"DS003", "src/app.py", 3, 1, "low", "security"},           /* no level: the recipe's */
        {"DS001", "tests/test app.py", 7, 2, "medium", "security"}, /* %20 */
        {"DS003", "README.md", 0, 0, "info", "security"},           /* level none, no region */
        {"ST9/sub", "src/app.py", 1, 1, "medium", "security"},      /* the second run */
    };
    kz_parse_stats_t st;
    s_expect("sarif", "sample.sarif", "demo-sast", "/srv/project", NULL, want, S_N(want), &st);
    assert_int_equal(st.lines, 10);
    assert_int_equal(st.outside, 1); /* file:///etc/app.conf */
    assert_int_equal(st.skipped, 3); /* suppressed, kind pass, no location */

    size_t len;
    char *text = s_data("sample.sarif", "/srv/project", &len);
    kz_parse_ctx_t ctx = {"demo-sast", "/srv/project", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("sarif", text, len, &ctx, &list, NULL, NULL, 0), 0);
    /* message from the rule's messageStrings with arguments; the fix's description */
    assert_string_equal(list.items[1].message, "'md5' is a weak hash; use 'sha256'");
    assert_string_equal(list.items[1].fix, "use sha256");
    assert_string_equal(list.items[0].message, "Password literal assigned to 'db_password'.");
    kz_findings_free(&list);
    /* only the given files */
    static const char *const only[] = {"lib/util.c", NULL};
    ctx.files = only;
    ctx.nfiles = 1;
    assert_int_equal(kz_parse_output("sarif", text, len, &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].file, "lib/util.c");
    kz_findings_free(&list);
    free(text);
}

static void test_files_format(void **state)
{
    (void)state;
    static const char *const py[] = {"bad.py", "pkg/dup.py", "broken.py", NULL};
    static const s_want_t black[] = {{"would-reformat", "bad.py", 0, 0, "low", "style"}};
    kz_parse_stats_t st;
    s_expect("files", "black.out", "black", "/r/root", py, black, S_N(black), &st);
    /* "error: cannot format broken.py" is black failing, not a finding */
    s_expect("files", "black-error.out", "black", "/r/root", py, black, S_N(black), &st);
    /* isort prints the absolute path */
    static const s_want_t isort[] = {{"unsorted-imports", "bad.py", 0, 0, "low", "style"}};
    s_expect("files", "isort.out", "isort", "/r/root", py, isort, S_N(isort), &st);
    /* clang-format: one finding per file, however many lines it names it on */
    static const char *const c[] = {"bad.c", "ok.c", NULL};
    static const s_want_t cf[] = {{"clang-format", "bad.c", 0, 0, "low", "style"}};
    s_expect("files", "clang-format.out", "clang-format", "/r/root", c, cf, S_N(cf), &st);

    size_t len;
    char *text = s_data("black.out", "/r/root", &len);
    kz_parse_ctx_t ctx = {"black", "/r/root", py, 3};
    kz_findings_t list;
    kz_findings_init(&list);
    assert_int_equal(kz_parse_output("files", text, len, &ctx, &list, NULL, NULL, 0), 0);
    assert_string_equal(list.items[0].message, "black would reformat this file");
    kz_findings_free(&list);
    free(text);
    /* another tool, a path with a space, "./" */
    static const char out[] = "./src/my file.py needs formatting\nsrc/b.py: needs formatting\n";
    static const char *const two[] = {"src/my file.py", "src/b.py", "src/c.py", NULL};
    kz_parse_ctx_t ctx2 = {"yapf", "/r/root", two, 3};
    assert_int_equal(kz_parse_output("files", out, strlen(out), &ctx2, &list, NULL, NULL, 0), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].rule, "format");
    assert_string_equal(list.items[0].file, "src/b.py"); /* in file name order */
    assert_string_equal(list.items[1].file, "src/my file.py");
    kz_findings_free(&list);
    /* no files given: nothing to name */
    kz_parse_ctx_t ctx3 = {"black", "/r/root", NULL, 0};
    assert_int_equal(kz_parse_output("files", out, strlen(out), &ctx3, &list, NULL, NULL, 0), 0);
    assert_int_equal(list.count, 0);
}

static void test_paths(void **state)
{
    (void)state;
    static const char out[] = "./a.py:1:1: E1 one\n"
                              "/r/root/sub/b.py:2:1: E2 two\n"
                              "/r/rootx/c.py:3:1: E3 sibling of the root\n"
                              "/etc/passwd:4:1: E4 elsewhere\n"
                              "../up.py:5:1: E5 above\n"
                              "sub/../sub/./d.py:6:1: E6 dots\n"
                              "sub/../../e.py:7:1: E7 climbs out\n"
                              ".//f.py:8:1: E8 double slash\n";
    kz_parse_ctx_t ctx = {"flake8", "/r/root/", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    kz_parse_stats_t st;
    assert_int_equal(kz_parse_output("gcc", out, strlen(out), &ctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 4);
    assert_string_equal(list.items[0].file, "a.py");
    assert_string_equal(list.items[1].file, "sub/b.py");
    assert_string_equal(list.items[2].file, "sub/d.py");
    assert_string_equal(list.items[3].file, "f.py");
    assert_int_equal(st.outside, 4);
    assert_int_equal(st.lines, 8);
    kz_findings_free(&list);

    /* the root's real path counts as the root too (tools print realpaths) */
    char tmpl[] = "/tmp/kz-finding-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char link[64], real_out[256];
    snprintf(link, sizeof link, "%s-link", tmpl);
    assert_int_equal(symlink(tmpl, link), 0);
    snprintf(real_out, sizeof real_out, "%s/x.py:1:1: E1 via the real path\n", tmpl);
    kz_parse_ctx_t lctx = {"flake8", link, NULL, 0};
    assert_int_equal(kz_parse_output("gcc", real_out, strlen(real_out), &lctx, &list, &st, NULL, 0),
                     0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].file, "x.py");
    kz_findings_free(&list);
    unlink(link);
    rmdir(tmpl);

    /* only the given files are kept */
    static const char *const given[] = {"./a.py", "sub/d.py", NULL};
    kz_parse_ctx_t fctx = {"flake8", "/r/root", given, 2};
    assert_int_equal(kz_parse_output("gcc", out, strlen(out), &fctx, &list, &st, NULL, 0), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].file, "a.py");
    assert_string_equal(list.items[1].file, "sub/d.py");
    kz_findings_free(&list);
}

static void test_garbage(void **state)
{
    (void)state;
    kz_parse_ctx_t ctx = {"t", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    kz_parse_stats_t st;
    char err[256];
    /* random bytes: gcc and files never fail */
    unsigned seed = 1234;
    char *junk = malloc(200000);
    assert_non_null(junk);
    for (size_t i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        junk[i] = (char)(seed >> 16);
    }
    assert_int_equal(kz_parse_output("gcc", junk, 200000, &ctx, &list, &st, err, sizeof err), 0);
    assert_int_equal(st.parsed, list.count);
    kz_findings_free(&list);
    static const char *const files[] = {"a.py", NULL};
    kz_parse_ctx_t fctx = {"black", "/r/root", files, 1};
    assert_int_equal(kz_parse_output("files", junk, 200000, &fctx, &list, &st, err, sizeof err), 0);
    kz_findings_free(&list);
    /* JSON formats: garbage, truncated, wrong shape fail with a reason */
    assert_int_equal(kz_parse_output("sarif", junk, 200000, &ctx, &list, &st, err, sizeof err), -1);
    assert_non_null(strstr(err, "sarif"));
    free(junk);
    size_t len;
    char *sarif = s_data("sample.sarif", "/srv/project", &len);
    assert_int_equal(kz_parse_output("sarif", sarif, len / 2, &ctx, &list, &st, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "invalid JSON"));
    assert_int_equal(list.count, 0);
    free(sarif);
    char *pylint = s_data("pylint.out", "/r/root", &len);
    assert_int_equal(
        kz_parse_output("pylint-json", pylint, len - 40, &ctx, &list, &st, err, sizeof err), -1);
    assert_non_null(strstr(err, "pylint-json"));
    free(pylint);
    assert_int_equal(kz_parse_output("sarif", "[1,2]", 5, &ctx, &list, &st, err, sizeof err), -1);
    assert_non_null(strstr(err, "runs"));
    assert_int_equal(
        kz_parse_output("pylint-json", "{\"a\":1}", 7, &ctx, &list, &st, err, sizeof err), -1);
    /* odd but valid JSON: items of the wrong type are skipped */
    static const char odd[] = "[1, \"x\", {\"path\": 5}, {\"path\": \"a.py\", \"message\": \"m\", "
                              "\"line\": -3, \"column\": \"z\", \"type\": \"weird\"}]";
    assert_int_equal(
        kz_parse_output("pylint-json", odd, strlen(odd), &ctx, &list, &st, err, sizeof err), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].line, 0);
    assert_string_equal(list.items[0].rule, "t");
    assert_null(list.items[0].severity);
    assert_int_equal(st.skipped, 3);
    kz_findings_free(&list);
    static const char odd_sarif[] =
        "{\"runs\": [1, {\"results\": 3}, {\"results\": [null, {\"locations\": [{}]}, "
        "{\"message\": {\"text\": 7}, \"locations\": [{\"physicalLocation\": {\"artifactLocation\":"
        " {\"uri\": \"http://x/y\"}}}]}]}]}";
    assert_int_equal(
        kz_parse_output("sarif", odd_sarif, strlen(odd_sarif), &ctx, &list, &st, err, sizeof err),
        0);
    assert_int_equal(list.count, 0);
    assert_int_equal(st.skipped, 3);
    /* unknown format; empty input; NUL bytes and overlong lines */
    assert_int_equal(kz_parse_output("xml", "x", 1, &ctx, &list, &st, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown output format 'xml'"));
    assert_int_equal(kz_parse_output("gcc", "", 0, &ctx, &list, &st, err, sizeof err), 0);
    assert_int_equal(kz_parse_output("gcc", NULL, 0, &ctx, &list, &st, err, sizeof err), 0);
    static const char nul[] = "a.py:1:1: E1 x\0y\nb\0.py:2:2: E2 z\n";
    assert_int_equal(kz_parse_output("gcc", nul, sizeof nul - 1, &ctx, &list, &st, err, sizeof err),
                     0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].message, "xy"); /* control bytes dropped */
    kz_findings_free(&list);
    /* invalid UTF-8: replaced in texts (a message must carry valid UTF-8),
       a path that is not valid UTF-8 is skipped */
    static const char latin1[] = "a.py:1:1: E1 caf\xe9 \xf0\x9f\x92\xa5 ok\n"
                                 "caf\xe9.py:2:2: E2 the path\n";
    assert_int_equal(
        kz_parse_output("gcc", latin1, sizeof latin1 - 1, &ctx, &list, &st, err, sizeof err), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].message, "caf\xef\xbf\xbd \xf0\x9f\x92\xa5 ok");
    assert_int_equal(st.skipped, 1);
    kz_findings_free(&list);
    char *longline = malloc(300000);
    assert_non_null(longline);
    memset(longline, 'a', 300000);
    memcpy(longline, "a.py:1:1: E1 ", 13);
    assert_int_equal(kz_parse_output("gcc", longline, 300000, &ctx, &list, &st, err, sizeof err),
                     0);
    assert_int_equal(list.count, 0);
    assert_int_equal(st.skipped, 1);
    memcpy(longline + 5000, "\n", 1);
    assert_int_equal(kz_parse_output("gcc", longline, 300000, &ctx, &list, &st, err, sizeof err),
                     0);
    assert_int_equal(list.count, 1);
    assert_true(strlen(list.items[0].message) <= 4096);
    kz_findings_free(&list);
    free(longline);
}

/* ------------------------------------------------------------ fingerprints */

static void s_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void s_add(kz_findings_t *list, const char *tool, const char *rule, const char *file,
                  int line, const char *message)
{
    kz_finding_t f = {0};
    f.tool = (char *)tool;
    f.rule = (char *)rule;
    f.file = (char *)file;
    f.line = line;
    f.message = (char *)message;
    assert_int_equal(kz_findings_add(list, &f), 0);
}

static void test_fingerprint(void **state)
{
    (void)state;
    char dir[] = "/tmp/kz-fp-XXXXXX";
    assert_non_null(mkdtemp(dir));
    s_write(dir, "a.py", "import os\nx  =  1\n");
    kz_findings_t l1;
    kz_findings_init(&l1);
    s_add(&l1, "flake8", "E501", "a.py", 2, "m");
    s_add(&l1, "black", "would-reformat", "a.py", 0, "black would reformat this file");
    s_add(&l1, "flake8", "E501", "missing.py", 1, "  the   message ");
    kz_findings_fingerprint(&l1, dir);
    /* PROTOCOL.md 6: sha256("flake8\0E501\0a.py\0x = 1")[:16] */
    assert_string_equal(l1.items[0].fingerprint, "7c03a99dd6990217a5055d1707bdddeb");
    /* line 0: the message stands for the line */
    assert_string_equal(l1.items[1].fingerprint, "3d8e9297a02409d2ef7d198b4c8e93ed");
    assert_int_equal(strlen(l1.items[2].fingerprint), 32);

    /* the line moves down and its indentation changes: same fingerprint */
    s_write(dir, "a.py", "import os\n\n\n# comment\nif True:\n\tx = 1\n");
    kz_findings_t l2;
    kz_findings_init(&l2);
    s_add(&l2, "flake8", "E501", "a.py", 6, "m");
    kz_findings_fingerprint(&l2, dir);
    assert_string_equal(l2.items[0].fingerprint, l1.items[0].fingerprint);

    /* two identical lines: distinct, the first one keeps the plain hash,
       whatever order the tool reported them in */
    s_write(dir, "a.py", "x = 1\nx = 1\ny = 2\n");
    kz_findings_t l3;
    kz_findings_init(&l3);
    s_add(&l3, "flake8", "E501", "a.py", 2, "m");
    s_add(&l3, "flake8", "E501", "a.py", 1, "m");
    s_add(&l3, "flake8", "E302", "a.py", 1, "m"); /* another rule */
    s_add(&l3, "flake8", "E501", "a.py", 3, "m");
    kz_findings_fingerprint(&l3, dir);
    assert_string_equal(l3.items[1].fingerprint, "7c03a99dd6990217a5055d1707bdddeb");
    assert_string_equal(l3.items[0].fingerprint, "f0daf0143173c2e4ab595cf0832873be");
    assert_string_not_equal(l3.items[2].fingerprint, l3.items[1].fingerprint);
    assert_string_not_equal(l3.items[3].fingerprint, l3.items[1].fingerprint);
    for (size_t i = 0; i < l3.count; i++)
        for (size_t k = 0; k < 32; k++)
            assert_true(strchr("0123456789abcdef", l3.items[i].fingerprint[k]) != NULL);

    /* a line past the end, CRLF line endings, a file without a newline */
    s_write(dir, "b.py", "x = 1\r\n  x = 1");
    kz_findings_t l4;
    kz_findings_init(&l4);
    s_add(&l4, "flake8", "E501", "b.py", 1, "m");
    s_add(&l4, "flake8", "E501", "b.py", 9, "m");
    kz_findings_fingerprint(&l4, dir);
    char *b_first = strdup(l4.items[0].fingerprint);
    kz_findings_free(&l4);
    kz_findings_init(&l4);
    s_add(&l4, "flake8", "E501", "b.py", 2, "m");
    kz_findings_fingerprint(&l4, dir);
    /* b.py:1 "x = 1\r\n" and b.py:2 "  x = 1" (no newline) normalise alike,
       and the file name differs from a.py: not the a.py fingerprint */
    assert_string_equal(l4.items[0].fingerprint, b_first);
    assert_string_not_equal(l4.items[0].fingerprint, "7c03a99dd6990217a5055d1707bdddeb");
    free(b_first);
    kz_findings_free(&l4);

    kz_findings_free(&l1);
    kz_findings_free(&l2);
    kz_findings_free(&l3);
    char path[512];
    snprintf(path, sizeof path, "%s/a.py", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/b.py", dir);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------------ the rest */

static void test_classify(void **state)
{
    (void)state;
    const kz_tool_config_t *flake8 = kz_config_tool(s_cfg, "flake8");
    kz_findings_t list;
    kz_findings_init(&list);
    kz_finding_t f = {0};
    f.tool = (char *)"flake8";
    f.file = (char *)"a.py";
    f.message = (char *)"m";
    f.rule = (char *)"E999"; /* override: high bug, even over the parser's level */
    f.severity = (char *)"info";
    assert_int_equal(kz_findings_add(&list, &f), 0);
    f.rule = (char *)"W291"; /* no override: the tool defaults (low, style) */
    f.severity = NULL;
    assert_int_equal(kz_findings_add(&list, &f), 0);
    f.rule = (char *)"W292"; /* the parser's level wins over the defaults */
    f.severity = (char *)"medium";
    f.category = (char *)"bug";
    assert_int_equal(kz_findings_add(&list, &f), 0);
    assert_int_equal(kz_findings_classify(&list, flake8), 0);
    assert_string_equal(list.items[0].severity, "high");
    assert_string_equal(list.items[0].category, "bug");
    assert_string_equal(list.items[1].severity, "low");
    assert_string_equal(list.items[1].category, "style");
    assert_string_equal(list.items[2].severity, "medium");
    assert_string_equal(list.items[2].category, "bug");
    /* a partial override keeps the other half */
    const kz_tool_config_t *pylint = kz_config_tool(s_cfg, "pylint");
    kz_findings_t pl;
    kz_findings_init(&pl);
    f.tool = (char *)"pylint";
    f.rule = (char *)"invalid-name";
    f.severity = (char *)"low";
    f.category = (char *)"style";
    assert_int_equal(kz_findings_add(&pl, &f), 0);
    assert_int_equal(kz_findings_classify(&pl, pylint), 0);
    assert_string_equal(pl.items[0].severity, "info");
    assert_string_equal(pl.items[0].category, "style");
    kz_findings_free(&pl);
    kz_findings_free(&list);
}

/* pydocstyle's two-line output; a recipe's ignore globs and min_severity */
static void test_pydocstyle_filter(void **state)
{
    (void)state;
    char err[256];
    static const char yaml[] = "catalog: false\n"
                               "tools:\n"
                               "  - {name: pydocstyle, argv: [p], format: pydocstyle, category: "
                               "docs, severity: info}\n"
                               "  - {name: ff, argv: [f], format: gcc, severity: low,\n"
                               "     min_severity: medium, ignore: [\"FF10*\"],\n"
                               "     rules: [{match: \"X*\", severity: high}]}\n";
    kz_config_t *cfg = kz_config_parse("t.yaml", yaml, strlen(yaml), err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    static const char out[] = "pkg/a.py:1 at module level:\n"
                              "        D100: Missing docstring in public module\n"
                              "pkg/a.py:12 in public function `f`:\n"
                              "        D103: Missing docstring in public function\n"
                              "weird line\n"
                              "        D999: a message without its header\n"
                              "/elsewhere/b.py:3 in public class `C`:\n"
                              "        D101: Missing docstring in public class\n";
    kz_parse_ctx_t ctx = {"pydocstyle", "/r/root", NULL, 0};
    kz_findings_t list;
    kz_findings_init(&list);
    kz_parse_stats_t st;
    assert_int_equal(
        kz_parse_output("pydocstyle", out, strlen(out), &ctx, &list, &st, err, sizeof err), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].rule, "D100");
    assert_string_equal(list.items[0].file, "pkg/a.py");
    assert_int_equal(list.items[0].line, 1);
    assert_string_equal(list.items[0].message, "Missing docstring in public module");
    assert_string_equal(list.items[1].rule, "D103");
    assert_int_equal(list.items[1].line, 12);
    assert_int_equal(st.outside, 1); /* /elsewhere/b.py */
    assert_int_equal(kz_findings_classify(&list, kz_config_tool(cfg, "pydocstyle")), 0);
    assert_string_equal(list.items[0].severity, "info");
    assert_string_equal(list.items[0].category, "docs");
    kz_findings_free(&list);

    /* ff: FF10* ignored, below medium dropped, an override lifts X1 */
    static const char ffout[] = "a.c:1: warning: kept [W1]\n"
                                "a.c:2: note: dropped, low [N1]\n"
                                "a.c:3: warning: ignored [FF1019]\n"
                                "a.c:4: lifted [X1]\n"
                                "a.c:5: plain, low by default [P1]\n";
    ctx.tool = "ff";
    kz_findings_init(&list);
    assert_int_equal(
        kz_parse_output("gcc", ffout, strlen(ffout), &ctx, &list, &st, err, sizeof err), 0);
    assert_int_equal(kz_findings_classify(&list, kz_config_tool(cfg, "ff")), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].rule, "W1");
    assert_string_equal(list.items[1].rule, "X1");
    assert_string_equal(list.items[1].severity, "high");
    kz_findings_free(&list);
    kz_config_destroy(&cfg);
}

static void test_list_ops(void **state)
{
    (void)state;
    kz_findings_t a, b;
    kz_findings_init(&a);
    kz_findings_init(&b);
    s_add(&a, "t", "r2", "b.py", 3, "m");
    s_add(&a, "t", "r1", "a.py", 9, "m");
    s_add(&b, "t", "r1", "a.py", 2, "m");
    s_add(&b, "s", "r1", "a.py", 2, "m");
    for (int i = 0; i < 100; i++)
        s_add(&b, "t", "r", "c.py", 100 - i, "m");
    assert_int_equal(kz_findings_move(&a, &b), 0);
    assert_int_equal(a.count, 104);
    assert_int_equal(b.count, 0);
    assert_null(b.items);
    kz_findings_sort(&a);
    assert_string_equal(a.items[0].file, "a.py");
    assert_string_equal(a.items[0].tool, "s");
    assert_string_equal(a.items[1].tool, "t");
    assert_int_equal(a.items[2].line, 9);
    assert_string_equal(a.items[3].file, "b.py");
    for (int i = 4; i < 104; i++)
        assert_int_equal(a.items[i].line, i - 3);
    /* moving into an empty list, and an empty list */
    assert_int_equal(kz_findings_move(&b, &a), 0);
    assert_int_equal(b.count, 104);
    assert_int_equal(kz_findings_move(&b, &a), 0);
    assert_int_equal(b.count, 104);
    kz_findings_free(&b);
    kz_findings_free(&b); /* twice is fine */

    assert_string_equal(kz_language_of("a/b.py"), "python");
    assert_string_equal(kz_language_of("x.pyi"), "python");
    assert_string_equal(kz_language_of("x.h"), "c");
    assert_string_equal(kz_language_of("x.HPP"), "cpp");
    assert_string_equal(kz_language_of("run.sh"), "shell");
    assert_string_equal(kz_language_of("a.mjs"), "javascript");
    assert_string_equal(kz_language_of("a.ts"), "typescript");
    assert_string_equal(kz_language_of("README.md"), "markdown");
    assert_string_equal(kz_language_of("index.rst"), "rst");
    assert_string_equal(kz_language_of("c.yml"), "yaml");
    assert_string_equal(kz_language_of("Makefile"), "text");
    assert_string_equal(kz_language_of(".bashrc"), "text");
    assert_string_equal(kz_language_of("dir.py/file"), "text");
    assert_int_equal(kz_severity_rank("info"), 0);
    assert_int_equal(kz_severity_rank("critical"), 4);
    assert_int_equal(kz_severity_rank("High"), -1);
    assert_int_equal(kz_severity_rank(NULL), -1);
}

static void test_msg_roundtrip(void **state)
{
    (void)state;
    kz_findings_t list;
    kz_findings_init(&list);
    s_add(&list, "codespell", "misspelling", "doc/a.md", 3, "teh ==> the");
    list.items[0].col = 0;
    list.items[0].severity = strdup("low");
    list.items[0].category = strdup("docs");
    list.items[0].fix = strdup("the");
    s_add(&list, "black", "would-reformat", "a.py", 0, "black would reformat this file");
    list.items[1].col = 4;
    list.items[1].severity = strdup("low");
    list.items[1].category = strdup("style");
    list.items[1].excluded = strdup("vendored: .gitattributes linguist-vendored");
    kz_findings_fingerprint(&list, "/nonexistent");

    kz_msg_t *msg = kz_msg_new("finding.batch");
    assert_non_null(msg);
    assert_int_equal(kz_msg_set_src(msg, "code-health@test#1"), 0);
    kz_val_t *body = kz_msg_body(msg);
    assert_int_equal(kz_map_put_str(msg, body, "scan_id", "01HSCAN"), 0);
    assert_int_equal(kz_map_put_int(msg, body, "seq", 0), 0);
    kz_val_t *arr = kz_map_put_array(msg, body, "findings");
    assert_non_null(arr);
    for (size_t i = 0; i < list.count; i++)
        assert_int_equal(kz_finding_to_msg(msg, arr, &list.items[i]), 0);
    uint8_t *buf;
    size_t len;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0)
        fail_msg("encode: %s", err.text);
    kz_msg_t *back = kz_msg_decode(buf, len, NULL, &err);
    if (!back)
        fail_msg("decode: %s", err.text);
    const kz_val_t *items = kz_map_get(kz_msg_body_const(back), "findings");
    assert_non_null(items);
    assert_int_equal(items->u.arr.count, 2);
    for (size_t i = 0; i < 2; i++) {
        kz_finding_t f;
        assert_int_equal(kz_finding_from_msg(&items->u.arr.items[i], &f), 0);
        const kz_finding_t *o = &list.items[i];
        assert_string_equal(f.tool, o->tool);
        assert_string_equal(f.rule, o->rule);
        assert_string_equal(f.severity, o->severity);
        assert_string_equal(f.category, o->category);
        assert_string_equal(f.file, o->file);
        assert_int_equal(f.line, o->line);
        assert_int_equal(f.col, o->col);
        assert_string_equal(f.message, o->message);
        assert_string_equal(f.fingerprint, o->fingerprint);
        if (o->fix)
            assert_string_equal(f.fix, o->fix);
        else
            assert_null(f.fix);
        if (o->excluded)
            assert_string_equal(f.excluded, o->excluded);
        else
            assert_null(f.excluded);
        /* a copy keeps the reason too */
        kz_findings_t copy;
        kz_findings_init(&copy);
        assert_int_equal(kz_findings_add(&copy, &f), 0);
        if (o->excluded)
            assert_string_equal(copy.items[0].excluded, o->excluded);
        else
            assert_null(copy.items[0].excluded);
        kz_findings_free(&copy);
        kz_finding_clear(&f);
    }
    /* col is omitted when unknown */
    assert_null(kz_map_get(&items->u.arr.items[0], "col"));
    /* a map missing a required field */
    kz_msg_t *bad = kz_msg_new("x.y");
    kz_val_t *m = kz_msg_body(bad);
    kz_map_put_str(bad, m, "tool", "t");
    kz_finding_t f;
    assert_int_equal(kz_finding_from_msg(m, &f), -1);
    assert_null(f.tool);
    assert_int_equal(kz_finding_from_msg(NULL, &f), -1);
    kz_msg_destroy(&bad);
    kz_msg_destroy(&back);
    kz_msg_destroy(&msg);
    free(buf);
    kz_findings_free(&list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flake8),        cmocka_unit_test(test_pylint),
        cmocka_unit_test(test_mypy),          cmocka_unit_test(test_codespell),
        cmocka_unit_test(test_cppcheck),      cmocka_unit_test(test_clang_tidy),
        cmocka_unit_test(test_shellcheck),    cmocka_unit_test(test_gcc),
        cmocka_unit_test(test_sarif),         cmocka_unit_test(test_dashed_names),
        cmocka_unit_test(test_files_format),  cmocka_unit_test(test_paths),
        cmocka_unit_test(test_garbage),       cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_classify),      cmocka_unit_test(test_list_ops),
        cmocka_unit_test(test_msg_roundtrip), cmocka_unit_test(test_pydocstyle_filter),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
