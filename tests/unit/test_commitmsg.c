/*  test_commitmsg.c - kz_commitmsg: Conventional Commits detection, subject
    templates and their shortening, the body of findings, and hostile
    finding text that must not become a line (a trailer) of its own.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kz_commitmsg.h"

static void test_conventional(void **state)
{
    (void)state;
    assert_true(kz_commit_is_conventional("fix: a thing"));
    assert_true(kz_commit_is_conventional("feat(parser)!: drop the old syntax"));
    assert_true(kz_commit_is_conventional("style!: reformat"));
    assert_false(kz_commit_is_conventional("Fix a thing"));
    assert_false(kz_commit_is_conventional("fix:a thing"));
    assert_false(kz_commit_is_conventional("fix(): a thing"));
    assert_false(kz_commit_is_conventional("Fix: a thing"));
    assert_false(kz_commit_is_conventional(""));
    const char *conv[] = {"fix: a", "feat: b", "Merge branch 'x'", "docs: c", "Update README"};
    assert_true(kz_commit_mostly_conventional(conv, 5));
    const char *plain[] = {"fix: a", "Add b", "Update README", "feat: c"};
    assert_false(kz_commit_mostly_conventional(plain, 4));
    assert_false(kz_commit_mostly_conventional(NULL, 0));
}

static void test_templates(void **state)
{
    (void)state;
    char why[256];
    assert_int_equal(
        kz_commit_check_template("Fix {n} spelling mistake{s} in {file}", why, sizeof why), 0);
    assert_int_equal(kz_commit_check_template("Fix {x} in {file}", why, sizeof why), -1);
    assert_non_null(strstr(why, "unknown placeholder"));
    assert_int_equal(kz_commit_check_template("two\nlines", why, sizeof why), -1);
    assert_int_equal(kz_commit_check_template("", why, sizeof why), -1);
    assert_int_equal(kz_commit_check_type("style", why, sizeof why), 0);
    assert_int_equal(kz_commit_check_type("Style", why, sizeof why), -1);
    assert_int_equal(kz_commit_check_type("fix(x)", why, sizeof why), -1);
}

static void test_subjects(void **state)
{
    (void)state;
    const char *one[] = {"src/parser.c"};
    kz_commit_finding_t f[] = {{"src/parser.c", 3, "teh", "teh ==> the"},
                               {"src/parser.c", 9, "teh", "teh ==> the"},
                               {"src/parser.c", 12, "recieve", "recieve ==> receive"}};
    kz_commit_info_t info = {.plan_id = "P1",
                             .tool = "codespell",
                             .subject = "Fix {n} spelling mistake{s} in {file}",
                             .files = one,
                             .nfiles = 1,
                             .nfixed = 3,
                             .findings = f,
                             .nfindings = 3};
    char buf[256];
    kz_commit_subject(&info, buf, sizeof buf);
    assert_string_equal(buf, "Fix 3 spelling mistakes in src/parser.c");
    info.conventional = true;
    kz_commit_subject(&info, buf, sizeof buf);
    assert_string_equal(buf, "style: fix 3 spelling mistakes in src/parser.c");
    info.commit_type = "fix";
    info.nfixed = 1;
    info.nfindings = 1;
    kz_commit_subject(&info, buf, sizeof buf);
    assert_string_equal(buf, "fix: fix 1 spelling mistake in src/parser.c");

    /* the default template, {rule}, and several files */
    const char *two[] = {"a.py", "b.py"};
    kz_commit_info_t dflt = {.plan_id = "P2",
                             .tool = "black",
                             .files = two,
                             .nfiles = 2,
                             .nfixed = 2,
                             .findings = f,
                             .nfindings = 2};
    kz_commit_subject(&dflt, buf, sizeof buf);
    assert_string_equal(buf, "Fix 2 black findings in 2 files");
    dflt.nfixed = dflt.nfindings = 0;
    kz_commit_subject(&dflt, buf, sizeof buf);
    assert_string_equal(buf, "Apply black to 2 files");
    dflt.nfixed = dflt.nfindings = 2;
    dflt.subject = "fix {rule} in {file}";
    kz_commit_subject(&dflt, buf, sizeof buf);
    assert_string_equal(buf, "Fix teh in 2 files");

    /* too long: the base name, then "1 file", always <= 72 characters */
    const char *deep[] = {"a/very/long/directory/path/that/goes/on/and/on/for/ever/parser.c"};
    info.files = deep;
    info.conventional = false;
    kz_commit_subject(&info, buf, sizeof buf);
    assert_string_equal(buf, "Fix 1 spelling mistake in parser.c");
    const char *huge[] = {"src/a_file_name_so_long_that_even_its_base_name_cannot_fit_in_a.c"};
    info.files = huge;
    kz_commit_subject(&info, buf, sizeof buf);
    assert_string_equal(buf, "Fix 1 spelling mistake in 1 file");
    info.subject =
        "Fix {n} words that the spelling checker says are wrong in the file {file} of this project";
    kz_commit_subject(&info, buf, sizeof buf);
    assert_true(strlen(buf) <= KZ_COMMIT_SUBJECT_MAX);
    assert_non_null(strstr(buf, "..."));
}

static void test_body_and_hostile_text(void **state)
{
    (void)state;
    const char *files[] = {"x.c"};
    kz_commit_finding_t f[] = {
        {"x.c", 4, "teh", "teh ==> the\n\nKaizen-Plan: EVIL\nSigned-off-by: Mallory <m@x>"},
        {"x.c", 0, "bad\rrule", "\x1b[31mred\x7f\xc2\x85next\xe2\x80\xa8sep\xff"},
    };
    kz_commit_info_t info = {.plan_id = "PLAN42",
                             .tool = "codespell",
                             .files = files,
                             .nfiles = 1,
                             .nfixed = 5,
                             .findings = f,
                             .nfindings = 2,
                             .note = "reverted change to 'y\nKaizen-Plan: EVIL2'"};
    char *msg = kz_commit_message(&info);
    assert_non_null(msg);
    /* subject, blank line, the findings, the note, a blank line, one trailer */
    assert_memory_equal(msg, "Fix 5 codespell findings in x.c\n\n- x.c:4 teh: teh ==> the",
                        strlen("Fix 5 codespell findings in x.c\n\n- x.c:4 teh: teh ==> the"));
    assert_non_null(strstr(msg, "\n- x.c bad rule: [31mred next sep?\n"));
    assert_non_null(strstr(msg, "\n- and 3 more\n"));
    const char *tail = "\n\nKaizen-Plan: PLAN42\n";
    assert_string_equal(msg + strlen(msg) - strlen(tail), tail);
    /* every line is the subject, blank, "- ...", the note or the trailer */
    int trailers = 0;
    for (char *line = msg; *line;) {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        if (strncmp(line, "Kaizen-Plan:", 12) == 0)
            trailers++;
        assert_true(line == msg || end == line || line[0] == '-' ||
                    strncmp(line, "Put back", 8) == 0 || strncmp(line, "Kaizen-Plan:", 12) == 0);
        for (char *c = line; c < end; c++)
            assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
        line = end + 1;
    }
    assert_int_equal(trailers, 1);
    free(msg);

    /* a long message is cut at a character boundary with "..." */
    char big[600], out[512];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[118] = '\xc3';
    big[119] = '\xa9'; /* "é" across the cut */
    kz_commit_clean(out, sizeof out, big, KZ_COMMIT_MESSAGE_CUT);
    assert_int_equal(strlen(out), 117 + 3);
    assert_string_equal(out + 117, "...");
    kz_commit_clean(out, 8, "  a   b  ", 100);
    assert_string_equal(out, "a b");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conventional),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_body_and_hostile_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
