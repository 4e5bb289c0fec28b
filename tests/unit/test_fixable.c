/*  test_fixable.c - kz_fixable: the predicates of fixers[].fixes
    (codespell's single suggestion, misspelt words that are names in the
    code of Python, C, shell and prose files), fixers[].fixes and
    fixers[].exclude, defer_to and output in the config, and the reason
    words and texts.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_config.h"
#include "kz_finding.h"
#include "kz_fixable.h"
#include "kz_recipe.h"

static const char s_yaml[] = "tools:\n"
                             "  - name: codespell\n"
                             "    argv: [codespell, --, \"{files}\"]\n"
                             "    format: gcc\n"
                             "  - name: shellcheck\n"
                             "    argv: [shellcheck, -f, gcc, --, \"{files}\"]\n"
                             "    format: gcc\n"
                             "fixers:\n"
                             "  - name: codespell\n"
                             "    tool: codespell\n"
                             "    rules: [misspelling]\n"
                             "    fixes: [single-suggestion, not-identifier]\n"
                             "    argv: [codespell, -w, --, \"{files}\"]\n"
                             "    exclude: [\"vendor/*\", __init__.py]\n"
                             "    defer_to: [black, isort]\n"
                             "  - name: shellcheck\n"
                             "    tool: shellcheck\n"
                             "    rules: [SC2006]\n"
                             "    fixes: [has-fix]\n"
                             "    output: diff\n"
                             "    argv: [shellcheck, -f, diff, --, \"{files}\"]\n";

static kz_finding_t s_typo(char *file, char *message, char *fix)
{
    kz_finding_t f = {0};
    f.tool = (char *)"codespell";
    f.rule = (char *)"misspelling";
    f.file = file;
    f.line = 1;
    f.message = message;
    f.fix = fix;
    return f;
}

static void test_single_suggestion(void **state)
{
    (void)state;
    kz_finding_t f = s_typo((char *)"a.py", (char *)"teh ==> the", (char *)"the");
    assert_int_equal(kz_fixable_single_suggestion(&f), KZ_FIXABLE_YES);
    f.fix = (char *)"the, be, we, to";
    assert_int_equal(kz_fixable_single_suggestion(&f), KZ_UNPLANNED_SEVERAL);
    f.fix = (char *)"and, 2nd";
    assert_int_equal(kz_fixable_single_suggestion(&f), KZ_UNPLANNED_SEVERAL);
    f.fix = (char *)"clean  | disabled because it is a common name";
    assert_int_equal(kz_fixable_single_suggestion(&f), KZ_UNPLANNED_NO_SUGGESTION);
    f.fix = NULL;
    assert_int_equal(kz_fixable_single_suggestion(&f), KZ_UNPLANNED_NO_SUGGESTION);
    f.fix = (char *)"  ";
    assert_int_equal(kz_fixable_single_suggestion(&f), KZ_UNPLANNED_NO_SUGGESTION);
}

static void test_word(void **state)
{
    (void)state;
    char w[65];
    assert_true(kz_fixable_word("teh ==> the", w, sizeof w));
    assert_string_equal(w, "teh");
    assert_true(kz_fixable_word("Teh ==> The", w, sizeof w));
    assert_string_equal(w, "Teh");
    assert_true(kz_fixable_word("doesnt' ==> doesn't", w, sizeof w));
    assert_false(kz_fixable_word("E501 line too long", w, sizeof w));
    assert_false(kz_fixable_word(" ==> the", w, sizeof w));
    assert_false(kz_fixable_word("a.b ==> the", w, sizeof w));
    assert_false(kz_fixable_word(NULL, w, sizeof w));
    assert_false(kz_fixable_word("teh ==> the", w, 3)); /* does not fit */
}

#define S_ID(word, src, path) kz_fixable_is_identifier(word, src, strlen(src), path)

static void test_identifier_python(void **state)
{
    (void)state;
    /* only in a comment, a string, a docstring: not a name */
    assert_false(S_ID("teh", "x = 1  # teh value\n", "a.py"));
    assert_false(S_ID("teh", "print('teh value')\n", "a.py"));
    assert_false(S_ID("teh", "def f():\n    \"\"\"Return teh\n    value.\"\"\"\n", "a.py"));
    assert_false(S_ID("teh", "s = \"it's teh # end\"\n", "a.py"));
    /* used as a name in code */
    assert_true(S_ID("nd", "nd = 2\n", "a.py"));
    assert_true(S_ID("nd", "x = 1\nreturn nd\n", "a.py"));
    assert_true(S_ID("clen", "def clen(s):\n    pass\n", "a.py"));
    assert_true(S_ID("nd", "import numpy as nd\n", "a.py"));
    assert_true(S_ID("ot", "x = self.ot\n", "a.py"));
    /* case does not matter (codespell -w fixes "Teh" and "teh" alike) */
    assert_true(S_ID("Teh", "teh = 1  # Teh\n", "a.py"));
    /* name-like places inside comments and strings count too */
    assert_true(S_ID("clen", "# call clen(x) first\n", "a.py"));
    assert_true(S_ID("clen", "# see obj.clen\n", "a.py"));
    assert_true(S_ID("clen", "# clen_max is the cap\n", "a.py"));
    assert_true(S_ID("clen", "# the max_clen cap\n", "a.py"));
    assert_true(S_ID("clen", "s = f'{clen} bytes'\n", "a.py"));
    assert_true(S_ID("clen", "# `clen` holds it\n", "a.py"));
    assert_true(S_ID("clen", "# clen = the length\n", "a.py"));
    /* a longer word is another word */
    assert_false(S_ID("nd", "x = 1  # nd\nband = 2\n", "a.py"));
    /* an unterminated string ends at the line's end */
    assert_true(S_ID("nd", "s = 'abc\nnd = 1\n", "a.py"));
}

static void test_identifier_c_shell_prose(void **state)
{
    (void)state;
    assert_false(S_ID("teh", "/* teh buffer */\nint x;\n", "a.c"));
    assert_false(S_ID("teh", "int x; // teh buffer\n", "a.h"));
    assert_false(S_ID("teh", "puts(\"teh end\");\n", "a.c"));
    assert_true(S_ID("clen", "size_t clen;\n", "a.c"));
    assert_true(S_ID("clen", "/* x */ n = p->clen;\n", "a.c"));
    assert_true(S_ID("clen", "#define clen 3\n", "a.c"));
    assert_false(S_ID("teh", "#!/bin/sh\n# teh script\necho 'teh end'\n", "a.sh"));
    assert_true(S_ID("nd", "#!/bin/sh\nnd=1\n", "a.sh"));
    assert_true(S_ID("nd", "echo \"$nd\"\n", "a.sh"));
    assert_true(S_ID("nd", "echo \"${nd}\"\n", "a.sh"));
    assert_true(S_ID("nd", "local nd\n", "a.bash"));
    assert_true(S_ID("nd", "echo x#nd\n", "a.sh")); /* "#" inside a word is no comment */
    /* prose: only name-like places */
    assert_false(S_ID("teh", "This is teh manual.\n", "README.md"));
    assert_true(S_ID("clen", "Set `clen` to 3.\n", "README.md"));
    assert_true(S_ID("clen", "Call clen() to count.\n", "doc.rst"));
    /* other files: any occurrence is taken for a name (a key, a field) */
    assert_true(S_ID("teh", "{\"teh\": 1}\n", "data.json"));
    assert_true(S_ID("teh", "teh: 1\n", "conf.yaml"));
    /* no source, no word: cannot tell, so a name */
    assert_true(kz_fixable_is_identifier("teh", NULL, 0, "a.py"));
    assert_true(kz_fixable_is_identifier("", "x", 1, "a.py"));
}

static void test_check(void **state)
{
    (void)state;
    char err[512];
    kz_config_t *cfg = kz_config_parse("test_fixable", s_yaml, strlen(s_yaml), err, sizeof err);
    assert_non_null(cfg);
    const kz_fixer_config_t *cs = kz_config_fixer(cfg, "codespell");
    const kz_fixer_config_t *sc = kz_config_fixer(cfg, "shellcheck");
    assert_non_null(cs);
    assert_non_null(sc);
    assert_string_equal(cs->output, "files");
    assert_string_equal(sc->output, "diff");
    assert_true(kz_fixable_needs_source(cs));
    assert_true(kz_fixable_defers_to(cs, "isort"));
    assert_false(kz_fixable_defers_to(cs, "blackish"));
    assert_false(kz_fixable_defers_to(sc, "black"));
    assert_false(kz_fixable_defers_to(cs, NULL));
    assert_false(kz_fixable_needs_source(sc));

    const char *src = "nd = 1  # teh te nd\n";
    size_t len = strlen(src);
    kz_finding_t f = s_typo((char *)"a.py", (char *)"teh ==> the", (char *)"the");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_FIXABLE_YES);
    f = s_typo((char *)"a.py", (char *)"te ==> the, be, we, to", (char *)"the, be, we, to");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_UNPLANNED_SEVERAL);
    f = s_typo((char *)"a.py", (char *)"nd ==> and", (char *)"and");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_UNPLANNED_IDENTIFIER);
    assert_int_equal(kz_fixable_check(cs, &f, NULL, 0), KZ_UNPLANNED_UNREADABLE);
    /* fixers[].exclude: on the path and on the base name */
    f = s_typo((char *)"vendor/x.py", (char *)"teh ==> the", (char *)"the");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_UNPLANNED_EXCLUDED);
    f = s_typo((char *)"pkg/__init__.py", (char *)"teh ==> the", (char *)"the");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_UNPLANNED_EXCLUDED);
    f = s_typo((char *)"pkg/init.py", (char *)"teh ==> the", (char *)"the");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_FIXABLE_YES);
    f = s_typo((char *)"a.py", (char *)"garbled", (char *)"and");
    assert_int_equal(kz_fixable_check(cs, &f, src, len), KZ_UNPLANNED_NO_SUGGESTION);
    /* a binary file cannot be judged */
    f = s_typo((char *)"a.py", (char *)"teh ==> the", (char *)"the");
    assert_int_equal(kz_fixable_check(cs, &f, "teh\0x", 5), KZ_UNPLANNED_UNREADABLE);

    kz_finding_t g = {0};
    g.tool = (char *)"shellcheck";
    g.rule = (char *)"SC2006";
    g.file = (char *)"a.sh";
    g.message = (char *)"Use $(...)";
    assert_int_equal(kz_fixable_check(sc, &g, NULL, 0), KZ_UNPLANNED_NO_FIXIT);
    g.fix = (char *)"$(date)";
    assert_int_equal(kz_fixable_check(sc, &g, NULL, 0), KZ_FIXABLE_YES);
    kz_config_destroy(&cfg);

    /* unknown predicate, unknown output: the config is refused */
    static const char bad[] = "tools:\n"
                              "  - name: t\n"
                              "    argv: [t]\n"
                              "    format: gcc\n"
                              "fixers:\n"
                              "  - name: f\n"
                              "    tool: t\n"
                              "    fixes: [always]\n"
                              "    argv: [f]\n";
    cfg = kz_config_parse("bad", bad, strlen(bad), err, sizeof err);
    assert_null(cfg);
    assert_non_null(strstr(err, "unknown fixable predicate 'always'"));
    static const char bad2[] = "tools:\n"
                               "  - name: t\n"
                               "    argv: [t]\n"
                               "    format: gcc\n"
                               "fixers:\n"
                               "  - name: f\n"
                               "    tool: t\n"
                               "    output: patch\n"
                               "    argv: [f]\n";
    cfg = kz_config_parse("bad2", bad2, strlen(bad2), err, sizeof err);
    assert_null(cfg);
    assert_non_null(strstr(err, "unknown fixer output 'patch'"));
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(kz_unplanned_word(KZ_UNPLANNED_NO_FIXER), "no_fixer");
    assert_string_equal(kz_unplanned_text(KZ_UNPLANNED_SEVERAL), "several suggestions");
    assert_string_equal(kz_unplanned_text_of("identifier"), "an identifier");
    assert_string_equal(kz_unplanned_text_of("something_else"), "something_else");
    assert_string_equal(kz_unplanned_word((kz_unplanned_t)99), "unknown");
    for (int i = 0; i < KZ_UNPLANNED_COUNT; i++)
        assert_string_equal(kz_unplanned_text_of(kz_unplanned_word((kz_unplanned_t)i)),
                            kz_unplanned_text((kz_unplanned_t)i));
    assert_true(kz_fixable_known("has-fix"));
    assert_false(kz_fixable_known("always"));
    assert_false(kz_fixable_known(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_suggestion),
        cmocka_unit_test(test_word),
        cmocka_unit_test(test_identifier_python),
        cmocka_unit_test(test_identifier_c_shell_prose),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
