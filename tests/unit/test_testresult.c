/*  test_testresult.c - kz_testresult: the test-result parsers against REAL
    recorded reports and outputs (tests/data/testresult/, re-recorded by
    tests/data/testresult/record.sh: pytest's JUnit XML and console, ctest,
    the c-sample's `make -s test`, unittest's summaries, pytest and
    unittest runs whose suite cannot start), a live pytest run when pytest is
    installed, the problem line of a suite that cannot start, TAP and automake lines, merging of repeated tests, malformed
    XML, XML with a DOCTYPE and external entities / DTDs (never loaded, never
    fetched: a loopback listener must see no connection and a file's secret
    must not show), a billion-laughs report, huge counts and too many tests.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kz_proc.h"
#include "kz_state.h"
#include "kz_testresult.h"

/* tests/data/testresult/NAME, NUL-terminated; malloc'd */
static char *s_data(const char *name, size_t *len)
{
    const char *top = getenv("KZ_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/testresult/%s", top ? top : ".", name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s (run the test from the repository root or set KZ_ROOT)", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const kz_test_case_t *s_find(const kz_test_cases_t *list, const char *id)
{
    const kz_test_case_t *c = kz_test_cases_find(list, id);
    if (!c)
        fail_msg("test '%s' not found", id);
    return c;
}

/* Every case of LIST is sorted, unique, clean and within the caps */
static void s_check_list(const kz_test_cases_t *list)
{
    long counts[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < list->count; i++) {
        const kz_test_case_t *c = &list->items[i];
        assert_non_null(c->id);
        assert_true(*c->id);
        assert_true(strlen(c->id) <= KZ_TESTRESULT_MAX_ID + 3);
        if (c->message)
            assert_true(*c->message && strlen(c->message) <= KZ_TESTRESULT_MAX_MESSAGE + 3);
        if (i > 0)
            assert_true(strcmp(list->items[i - 1].id, c->id) < 0);
        for (const unsigned char *p = (const unsigned char *)c->id; *p; p++)
            assert_true(*p >= 0x20 && *p != 0x7f);
        counts[c->status]++;
    }
    assert_int_equal(counts[KZ_TEST_PASS], list->passed);
    assert_int_equal(counts[KZ_TEST_SKIP], list->skipped);
    assert_int_equal(counts[KZ_TEST_FAIL], list->failed);
    assert_int_equal(counts[KZ_TEST_ERROR], list->errors);
}

static void s_check_pytest_report(const kz_test_cases_t *list)
{
    s_check_list(list);
    assert_int_equal(list->count, 4);
    assert_int_equal(list->passed, 1);
    assert_int_equal(list->failed, 1);
    assert_int_equal(list->errors, 1);
    assert_int_equal(list->skipped, 1);
    assert_int_equal(s_find(list, "test_tiny::test_pass")->status, KZ_TEST_PASS);
    assert_null(s_find(list, "test_tiny::test_pass")->message);
    const kz_test_case_t *f = s_find(list, "test_tiny::test_fail");
    assert_int_equal(f->status, KZ_TEST_FAIL);
    /* the message attribute's first line ("&#10;" breaks it) */
    assert_string_equal(f->message, "AssertionError: spelling changed");
    const kz_test_case_t *e = s_find(list, "test_tiny::test_error");
    assert_int_equal(e->status, KZ_TEST_ERROR);
    assert_string_equal(e->message, "failed on setup with \"RuntimeError: fixture exploded\"");
    assert_int_equal(s_find(list, "test_tiny::test_skip")->status, KZ_TEST_SKIP);
    assert_null(s_find(list, "test_tiny::test_skip")->message);
    assert_int_equal(list->items[0].status, KZ_TEST_ERROR); /* sorted: test_error first */
}

static void test_pytest_junit(void **state)
{
    (void)state;
    size_t len;
    char *xml = s_data("pytest.xml", &len);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    char err[256];
    assert_int_equal(kz_testresult_parse_junit(xml, len, &list, err, sizeof err), 1);
    assert_string_equal(err, "");
    s_check_pytest_report(&list);
    kz_test_cases_free(&list);
    assert_int_equal(list.count, 0);
    kz_test_cases_free(&list); /* twice is fine */
    free(xml);
}

static void test_pytest_console(void **state)
{
    (void)state;
    size_t len;
    char *out = s_data("pytest.out", &len);
    kz_test_summary_t sum;
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "pytest");
    assert_int_equal(sum.passed, 1);
    assert_int_equal(sum.failed, 1);
    assert_int_equal(sum.errors, 1);
    assert_int_equal(sum.skipped, 1);
    /* pytest's "ERROR test_tiny.py::test_error - ..." is not an automake line */
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, len, &list), 0);
    assert_int_equal(list.count, 0);
    char last[256];
    kz_testresult_last_line(out, len, last, sizeof last);
    assert_non_null(strstr(last, "1 failed, 1 passed, 1 skipped, 1 error in "));
    kz_test_cases_free(&list);
    free(out);
}

/* recursive removal of the few files a pytest run leaves in DIR */
static void s_rmtree(const char *dir)
{
    char err[256];
    (void)kz_rmtree(dir, err, sizeof err);
}

/* The pytest installed today: its report and its summary still parse */
static void test_pytest_live(void **state)
{
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    char dir[] = "/tmp/kz-testresult.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[4200], report[4200];
    snprintf(file, sizeof file, "%s/test_tiny.py", dir);
    snprintf(report, sizeof report, "--junitxml=%s/report.xml", dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fputs("import pytest\n\n\n@pytest.fixture\ndef broken():\n    raise RuntimeError('boom')\n\n\n"
          "def test_pass():\n    assert True\n\n\ndef test_fail():\n    assert 1 == 2, 'one is "
          "not two'\n\n\ndef test_error(broken):\n    pass\n\n\n"
          "@pytest.mark.skip(reason='no')\ndef test_skip():\n    pass\n",
          fp);
    fclose(fp);
    const char *argv[] = {"/usr/bin/python3", "-B",   "-m",           "pytest", "-p",
                          "no:cacheprovider", report, "test_tiny.py", NULL};
    kz_proc_opts_t po = {0};
    po.argv = argv;
    po.cwd = dir;
    po.timeout_ms = 120000;
    kz_proc_result_t pr;
    char err[256];
    assert_int_equal(kz_proc_run(&po, &pr, err, sizeof err), 0);
    if (pr.exit_code != 1) { /* 1: tests failed; anything else: no usable pytest */
        kz_proc_result_free(&pr);
        s_rmtree(dir);
        skip();
    }
    kz_test_summary_t sum;
    assert_true(kz_testresult_parse_summary(pr.out, pr.out_len, &sum));
    assert_string_equal(sum.source, "pytest");
    assert_int_equal(sum.passed, 1);
    assert_int_equal(sum.failed, 1);
    assert_int_equal(sum.errors, 1);
    assert_int_equal(sum.skipped, 1);
    kz_proc_result_free(&pr);

    snprintf(file, sizeof file, "%s/report.xml", dir);
    fp = fopen(file, "rb");
    assert_non_null(fp);
    char *xml = malloc(1 << 20);
    assert_non_null(xml);
    size_t len = fread(xml, 1, 1 << 20, fp);
    fclose(fp);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_junit(xml, len, &list, err, sizeof err), 1);
    s_check_list(&list);
    assert_int_equal(list.count, 4);
    assert_int_equal(s_find(&list, "test_tiny::test_pass")->status, KZ_TEST_PASS);
    assert_int_equal(s_find(&list, "test_tiny::test_fail")->status, KZ_TEST_FAIL);
    assert_non_null(strstr(s_find(&list, "test_tiny::test_fail")->message, "one is not two"));
    assert_int_equal(s_find(&list, "test_tiny::test_error")->status, KZ_TEST_ERROR);
    assert_int_equal(s_find(&list, "test_tiny::test_skip")->status, KZ_TEST_SKIP);
    kz_test_cases_free(&list);
    free(xml);
    s_rmtree(dir);
}

static void test_ctest(void **state)
{
    (void)state;
    size_t len;
    char *out = s_data("ctest.out", &len);
    kz_test_summary_t sum;
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "ctest");
    assert_int_equal(sum.passed, 2);
    assert_int_equal(sum.failed, 1);
    assert_int_equal(sum.errors, 0);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, len, &list), 0);
    assert_int_equal(list.count, 0);
    free(out);

    static const char all[] = "Test project /x\n100% tests passed, 0 tests failed out of 5\n\n"
                              "Total Test time (real) =   0.06 sec\n";
    assert_true(kz_testresult_parse_summary(all, strlen(all), &sum));
    assert_string_equal(sum.source, "ctest");
    assert_int_equal(sum.passed, 5);
    assert_int_equal(sum.failed, 0);
    static const char one[] = "0% tests passed, 1 test failed out of 1\r\n";
    assert_true(kz_testresult_parse_summary(one, strlen(one), &sum));
    assert_int_equal(sum.passed, 0);
    assert_int_equal(sum.failed, 1);
    /* more failed than run: not a ctest line (nor a count line) */
    static const char bad[] = "50% tests passed, 9 tests failed out of 2\n";
    assert_false(kz_testresult_parse_summary(bad, strlen(bad), &sum));
}

static void test_c_sample(void **state)
{
    (void)state;
    size_t len;
    char *out = s_data("c-sample.out", &len);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, len, &list), 0);
    s_check_list(&list);
    assert_int_equal(list.count, 7);
    assert_int_equal(list.passed, 7);
    assert_int_equal(s_find(&list, "error_messages")->status, KZ_TEST_PASS);
    kz_test_summary_t sum;
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "summary");
    assert_int_equal(sum.passed, 7);
    assert_int_equal(sum.failed, 0);
    kz_test_cases_free(&list);
    free(out);

    out = s_data("c-sample-fail.out", &len);
    assert_int_equal(kz_testresult_parse_lines(out, len, &list), 0);
    s_check_list(&list);
    assert_int_equal(list.count, 7);
    assert_int_equal(list.passed, 6);
    assert_int_equal(list.failed, 1);
    const kz_test_case_t *f = s_find(&list, "error_messages");
    assert_int_equal(f->status, KZ_TEST_FAIL);
    assert_string_equal(f->message, "line 126: strcmp(now.data, golden.data) == 0");
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_int_equal(sum.passed, 6);
    assert_int_equal(sum.failed, 1);
    char last[64];
    kz_testresult_last_line(out, len, last, sizeof last);
    assert_string_equal(last, "make: *** [Makefile:25: test] Error 1");
    kz_test_cases_free(&list);
    free(out);
}

static void test_tap_and_automake(void **state)
{
    (void)state;
    static const char out[] = "1..6\n"
                              "ok 1 - adds\n"
                              "not ok 2 - subtracts\n"
                              "ok 3 # SKIP no network\n"
                              "not ok 4 - divides # TODO later\n"
                              "ok 5 multiplies # skip\n"
                              "not ok 6\n"
                              "ok x - not a test line\n"
                              "XFAIL: known_bug\n"
                              "XPASS: fixed_by_accident\n"
                              "ERROR: crashed: signal 11\n"
                              "SKIP: slow\n"
                              "PASS:no_space_is_not_a_line\n";
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, strlen(out), &list), 0);
    s_check_list(&list);
    assert_int_equal(list.count, 10);
    assert_int_equal(s_find(&list, "adds")->status, KZ_TEST_PASS);
    assert_int_equal(s_find(&list, "subtracts")->status, KZ_TEST_FAIL);
    assert_int_equal(s_find(&list, "test 3")->status, KZ_TEST_SKIP);
    assert_int_equal(s_find(&list, "divides")->status, KZ_TEST_SKIP);
    assert_int_equal(s_find(&list, "multiplies")->status, KZ_TEST_SKIP);
    assert_int_equal(s_find(&list, "test 6")->status, KZ_TEST_FAIL);
    assert_int_equal(s_find(&list, "known_bug")->status, KZ_TEST_PASS);
    assert_int_equal(s_find(&list, "fixed_by_accident")->status, KZ_TEST_FAIL);
    assert_int_equal(s_find(&list, "crashed")->status, KZ_TEST_ERROR);
    assert_string_equal(s_find(&list, "crashed")->message, "signal 11");
    assert_int_equal(s_find(&list, "slow")->status, KZ_TEST_SKIP);
    kz_test_cases_free(&list);
}

/* A test reported twice: a failure or an error wins over a pass, anything over a skip */
static void test_merge_and_clean(void **state)
{
    (void)state;
    static const char out[] = "SKIP: a\nPASS: a\n"
                              "PASS: b\nFAIL: b: broke\nPASS: b\n"
                              "FAIL: c: first\nERROR: c: worse\nFAIL: c: again\n"
                              "PASS: bad\x01id\xff\xfe\n"
                              "FAIL: d: \x1b[31m red \x1b[0m\n";
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, sizeof out - 1, &list), 0);
    s_check_list(&list);
    assert_int_equal(list.count, 5);
    assert_int_equal(s_find(&list, "a")->status, KZ_TEST_PASS);
    assert_int_equal(s_find(&list, "b")->status, KZ_TEST_FAIL);
    assert_string_equal(s_find(&list, "b")->message, "broke");
    assert_int_equal(s_find(&list, "c")->status, KZ_TEST_ERROR);
    assert_string_equal(s_find(&list, "c")->message, "worse");
    assert_int_equal(s_find(&list, "bad id??")->status, KZ_TEST_PASS);
    /* escapes become blanks (the cleaning trims before it replaces) */
    assert_string_equal(s_find(&list, "d")->message, " [31m red  [0m");
    assert_null(kz_test_cases_find(&list, "zzz"));

    /* long ids and messages are cut on a character boundary */
    char line[2048];
    memcpy(line, "FAIL: ", 6);
    memset(line + 6, 'x', 700);
    memcpy(line + 706, ": ", 2);
    for (int i = 0; i < 400; i++)
        memcpy(line + 708 + 2 * i, "\xc3\xa9", 2); /* é */
    kz_test_cases_free(&list);
    assert_int_equal(kz_testresult_parse_lines(line, 708 + 800, &list), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(strlen(list.items[0].id), KZ_TESTRESULT_MAX_ID + 3);
    assert_string_equal(list.items[0].id + KZ_TESTRESULT_MAX_ID, "...");
    assert_int_equal(strlen(list.items[0].message), KZ_TESTRESULT_MAX_MESSAGE + 3);
    kz_test_cases_free(&list);

    kz_test_status_t st;
    assert_int_equal(kz_test_status_parse("failed", &st), 0);
    assert_int_equal(st, KZ_TEST_FAIL);
    assert_int_equal(kz_test_status_parse("bogus", &st), -1);
    assert_int_equal(kz_test_status_parse(NULL, &st), -1);
    assert_string_equal(kz_test_status_name(KZ_TEST_SKIP), "skipped");
    assert_string_equal(kz_test_status_name(KZ_TEST_ERROR), "error");
    char *c = kz_testresult_clean("  \t a\tb \r\n", 10, 100);
    assert_string_equal(c, "a b");
    free(c);
}

static void test_junit_shapes(void **state)
{
    (void)state;
    static const char xml[] =
        "<?xml version=\"1.0\"?>\n"
        "<testsuites><testsuite name=\"outer\"><testsuite name=\"inner\">"
        "<testcase name=\"by_file\" file=\"t/a.c\"/>"
        "<testcase name=\"bare\"/>"
        "<testcase classname=\"k\"/>"
        "<testcase classname=\"k\" name=\"fail_then_error\"><failure>first\nsecond</failure>"
        "<error message=\"\">\n\n  teardown broke\nmore</error></testcase>"
        "<testcase classname=\"k\" name=\"skip_then_fail\"><skipped/><failure "
        "message=\"m\"/></testcase>"
        "<testcase classname=\"k\" name=\"fail_then_skip\"><failure><![CDATA[cdata "
        "<why>]]></failure><skipped/></testcase>"
        "<testcase classname=\"k\" name=\"blank\"><failure message=\"  \n\">body</failure>"
        "</testcase>"
        "<testcase classname=\"k\" name=\"dup\"/><testcase classname=\"k\" name=\"dup\">"
        "<failure message=\"second run\"/></testcase>"
        "</testsuite></testsuite></testsuites>";
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    char err[256];
    assert_int_equal(kz_testresult_parse_junit(xml, strlen(xml), &list, err, sizeof err), 1);
    s_check_list(&list);
    assert_int_equal(list.count, 8);
    assert_int_equal(s_find(&list, "t/a.c::by_file")->status, KZ_TEST_PASS);
    assert_int_equal(s_find(&list, "bare")->status, KZ_TEST_PASS);
    assert_int_equal(s_find(&list, "k::(unnamed)")->status, KZ_TEST_PASS);
    const kz_test_case_t *c = s_find(&list, "k::fail_then_error");
    assert_int_equal(c->status, KZ_TEST_ERROR);
    assert_string_equal(c->message, "teardown broke");
    assert_int_equal(s_find(&list, "k::skip_then_fail")->status, KZ_TEST_FAIL);
    assert_string_equal(s_find(&list, "k::skip_then_fail")->message, "m");
    c = s_find(&list, "k::fail_then_skip");
    assert_int_equal(c->status, KZ_TEST_FAIL);
    assert_string_equal(c->message, "cdata <why>");
    c = s_find(&list, "k::blank"); /* a blank message attribute: no message */
    assert_int_equal(c->status, KZ_TEST_FAIL);
    assert_null(c->message);
    assert_int_equal(s_find(&list, "k::dup")->status, KZ_TEST_FAIL);
    assert_string_equal(s_find(&list, "k::dup")->message, "second run");
    kz_test_cases_free(&list);

    /* a lone testsuite is a report too; testsuites nested too deep are not read */
    static const char one[] = "<testsuite><testcase name=\"x\"/></testsuite>";
    assert_int_equal(kz_testresult_parse_junit(one, strlen(one), &list, err, sizeof err), 1);
    assert_int_equal(list.count, 1);
    kz_test_cases_free(&list);
    char deep[4096];
    size_t o = (size_t)snprintf(deep, sizeof deep, "<testsuites>");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(deep + o, sizeof deep - o, "<testsuite>");
    o += (size_t)snprintf(deep + o, sizeof deep - o, "<testcase name=\"deep\"/>");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(deep + o, sizeof deep - o, "</testsuite>");
    o += (size_t)snprintf(deep + o, sizeof deep - o, "</testsuites>");
    assert_int_equal(kz_testresult_parse_junit(deep, o, &list, err, sizeof err), 1);
    assert_int_equal(list.count, 0);
    kz_test_cases_free(&list);
}

static void test_junit_malformed(void **state)
{
    (void)state;
    size_t len;
    char *xml = s_data("pytest.xml", &len);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    char err[256];
    /* cut in the middle */
    assert_int_equal(kz_testresult_parse_junit(xml, len / 2, &list, err, sizeof err), 0);
    assert_non_null(strstr(err, "not well-formed XML"));
    assert_int_equal(list.count, 0);
    free(xml);
    static const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {"", "empty"},
        {"PASS: a\n7 passed, 0 failed\n", "not well-formed"},
        {"<html><body>testcase</body></html>", "root element 'html'"},
        {"<testsuites><testcase name=\"a\"></testsuites>", "not well-formed"},
        {"<testsuites><testcase name=\"a\" name=\"b\"/></testsuites>", "not well-formed"},
        {"<testsuites>&undefined;</testsuites>", "not well-formed"},
        {"\xff\xfe<\x00t\x00", "not well-formed"},
        {"<?xml version=\"1.0\" encoding=\"bogus-enc\"?><testsuites/>", "XML"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i].text);
        if (i == 6)
            n = 6;
        err[0] = 'x';
        assert_int_equal(kz_testresult_parse_junit(bad[i].text, n, &list, err, sizeof err), 0);
        if (!strstr(err, bad[i].why))
            fail_msg("input %zu: '%s' does not say '%s'", i, err, bad[i].why);
        assert_int_equal(list.count, 0);
    }
    /* too small an error buffer is fine */
    assert_int_equal(kz_testresult_parse_junit("<a/>", 4, &list, err, 4), 0);
    assert_int_equal(strlen(err), 3);
    kz_test_cases_free(&list);
}

/* A loopback TCP listener: its port into *PORT, the socket returned */
static int s_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* DOCTYPEs with external entities, external DTDs and parameter entities:
   nothing is fetched (no connection to the listener) or read (the secret
   file's text shows nowhere), entities read as nothing */
static void test_junit_external_entities(void **state)
{
    (void)state;
    char secret[] = "/tmp/kz-testresult-secret.XXXXXX";
    int sfd = mkstemp(secret);
    assert_true(sfd >= 0);
    static const char sec[] = "TOPSECRET-42";
    assert_int_equal(write(sfd, sec, strlen(sec)), (ssize_t)strlen(sec));
    close(sfd);
    char dtd[] = "/tmp/kz-testresult-dtd.XXXXXX";
    int dfd = mkstemp(dtd);
    assert_true(dfd >= 0);
    static const char dtdtext[] = "<!ATTLIST testcase classname CDATA \"TOPSECRET-DTD\">\n"
                                  "<!ENTITY leak \"TOPSECRET-DTD\">\n";
    assert_int_equal(write(dfd, dtdtext, strlen(dtdtext)), (ssize_t)strlen(dtdtext));
    close(dfd);
    int port;
    int lfd = s_listener(&port);

    char xml[4096];
    const char *const forms[] = {
        /* an external general entity (file and network) in text and attributes */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites [\n"
        "<!ENTITY xxe SYSTEM \"file://%s\">\n"
        "<!ENTITY net SYSTEM \"http://127.0.0.1:%d/x\">\n]>\n"
        "<testsuites><testsuite><testcase classname=\"k\" name=\"t&xxe;\">"
        "<failure>&xxe;&net;why</failure></testcase></testsuite></testsuites>",
        /* an external DTD (file), with an attribute default and an entity */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites SYSTEM \"%s\">\n"
        "<testsuites><testcase name=\"t\"><failure>why&leak;</failure></testcase>"
        "</testsuites><!-- %d -->",
        /* an external DTD over the network */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites PUBLIC \"-//x//y\" "
        "\"http://127.0.0.1:%2$d/x.dtd\">\n<!-- %1$s -->"
        "<testsuites><testcase name=\"t\"><failure>why</failure></testcase></testsuites>",
        /* external parameter entities (file and network) */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites [\n"
        "<!ENTITY %% pe SYSTEM \"file://%s\">\n%%pe;\n"
        "<!ENTITY %% pn SYSTEM \"http://127.0.0.1:%d/p\">\n%%pn;\n]>\n"
        "<testsuites><testcase name=\"t\"><failure>why</failure></testcase></testsuites>",
        /* external (file and network) and internal entities in text only */
        "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites [\n"
        "<!ENTITY xxe SYSTEM \"file://%s\">\n"
        "<!ENTITY net SYSTEM \"http://127.0.0.1:%d/x\">\n<!ENTITY int \"inner\">\n]>\n"
        "<testsuites><testsuite><testcase classname=\"k\" name=\"t\">"
        "<failure>&xxe;&net;&int;why</failure></testcase></testsuite></testsuites>",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        const char *file = i == 1 ? dtd : secret;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        int n = snprintf(xml, sizeof xml, forms[i], file, port);
#pragma GCC diagnostic pop
        assert_true(n > 0 && (size_t)n < sizeof xml);
        kz_test_cases_t list;
        kz_test_cases_init(&list);
        char err[256];
        int rc = kz_testresult_parse_junit(xml, (size_t)n, &list, err, sizeof err);
        /* libxml2 refuses an external entity in an attribute; the others
           are reports whose entities read as nothing */
        if (rc != (i == 0 ? 0 : 1))
            fail_msg("form %zu: %d (%s)", i, rc, err);
        if (rc == 1) {
            s_check_list(&list);
            assert_int_equal(list.count, 1);
            const kz_test_case_t *c = &list.items[0];
            if (strstr(c->id, "TOPSECRET") || (c->message && strstr(c->message, "TOPSECRET")))
                fail_msg("form %zu: the external text was read: '%s' '%s'", i, c->id,
                         c->message ? c->message : "");
            assert_int_equal(c->status, KZ_TEST_FAIL);
            assert_string_equal(c->message, "why");
            assert_string_equal(c->id, i == 4 ? "k::t" : "t");
        } else if (strstr(err, "TOPSECRET")) {
            fail_msg("form %zu: the error shows the external text: %s", i, err);
        }
        kz_test_cases_free(&list);
        int conn = accept(lfd, NULL, NULL);
        if (conn >= 0)
            fail_msg("form %zu: the parser connected to the network", i);
    }
    close(lfd);
    unlink(secret);
    unlink(dtd);
}

/* "Billion laughs": internal entities are never expanded */
static void test_junit_entity_bomb(void **state)
{
    (void)state;
    char xml[8192];
    size_t o = (size_t)snprintf(xml, sizeof xml,
                                "<?xml version=\"1.0\"?>\n<!DOCTYPE testsuites [\n"
                                "<!ENTITY l0 \"lol\">\n");
    for (int i = 1; i <= 9; i++)
        o += (size_t)snprintf(
            xml + o, sizeof xml - o,
            "<!ENTITY l%d \"&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;\">\n", i, i - 1,
            i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    o += (size_t)snprintf(xml + o, sizeof xml - o,
                          "]>\n<testsuites><testcase classname=\"&l9;\" name=\"t\">"
                          "<failure message=\"&l9;\">&l9;why</failure></testcase></testsuites>");
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    char err[256];
    int rc = kz_testresult_parse_junit(xml, o, &list, err, sizeof err);
    assert_true(rc == 0 || rc == 1);
    if (rc == 1) {
        s_check_list(&list);
        assert_int_equal(list.count, 1);
        assert_string_equal(list.items[0].id, "t");
        assert_int_equal(list.items[0].status, KZ_TEST_FAIL);
    }
    kz_test_cases_free(&list);
}

static void test_huge_counts(void **state)
{
    (void)state;
    kz_test_summary_t sum;
    static const char big[] = "999999999 passed, 5 failed\n";
    assert_true(kz_testresult_parse_summary(big, strlen(big), &sum));
    assert_int_equal(sum.passed, 999999999);
    assert_int_equal(sum.failed, 5);
    /* 10^9 and more is not a count */
    static const char bigger[] = "1000000000 passed, 1 failed\n";
    assert_true(kz_testresult_parse_summary(bigger, strlen(bigger), &sum));
    assert_int_equal(sum.passed, 0);
    assert_int_equal(sum.failed, 1);
    static const char huge[] = "18446744073709551617 passed\n";
    memset(&sum, 0x55, sizeof sum);
    assert_false(kz_testresult_parse_summary(huge, strlen(huge), &sum));
    static const char cbig[] = "100% tests passed, 0 tests failed out of 99999999999\n";
    assert_false(kz_testresult_parse_summary(cbig, strlen(cbig), &sum));
    /* a line naming the same count again and again saturates */
    size_t cap = 20000 * 20 + 1;
    char *many = malloc(cap);
    assert_non_null(many);
    size_t o = 0;
    for (int i = 0; i < 20000; i++)
        o += (size_t)snprintf(many + o, cap - o, "999999999 passed, ");
    assert_true(kz_testresult_parse_summary(many, o, &sum));
    assert_int_equal(sum.passed, KZ_TESTRESULT_MAX_COUNT);
    free(many);
    /* the last summary line wins; no summary at all is false */
    static const char two[] = "3 passed, 1 failed\nnoise\n5 passed, 0 failed in 1.5s\n";
    assert_true(kz_testresult_parse_summary(two, strlen(two), &sum));
    assert_string_equal(sum.source, "pytest");
    assert_int_equal(sum.passed, 5);
    static const char none[] = "all good\n42\npassed\n";
    assert_false(kz_testresult_parse_summary(none, strlen(none), &sum));
    assert_false(kz_testresult_parse_summary("", 0, &sum));
}

/* unittest: the summary counts, its failure headers are not test lines */
static void test_unittest(void **state)
{
    (void)state;
    size_t len;
    char *out = s_data("unittest.out", &len);
    kz_test_summary_t sum;
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "unittest");
    /* 6 ran: failures=1 + unexpected successes=1 failed, errors=1,
       skipped=1, and test_a and the expected failure test_e passed */
    assert_int_equal(sum.passed, 2);
    assert_int_equal(sum.failed, 2);
    assert_int_equal(sum.errors, 1);
    assert_int_equal(sum.skipped, 1);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, len, &list), 0);
    assert_int_equal(list.count, 0);
    free(out);

    out = s_data("unittest-import.out", &len);
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "unittest");
    assert_int_equal(sum.passed, 0);
    assert_int_equal(sum.failed, 0);
    assert_int_equal(sum.errors, 1);
    assert_int_equal(kz_testresult_parse_lines(out, len, &list), 0);
    assert_int_equal(list.count, 0);
    char why[512];
    kz_testresult_problem(out, len, "@ROOT@/ui", why, sizeof why);
    assert_string_equal(why, "ImportError: Failed to import test module: test_v: "
                             "ModuleNotFoundError: No module named 'nothere'");
    free(out);

    static const struct {
        const char *text;
        long passed, failed, errors, skipped;
    } ok[] = {
        {"Ran 19 tests in 0.1s\n\nOK\n", 19, 0, 0, 0},
        {"Ran 1 test in 0.000s\r\n\r\nOK (skipped=1)\r\n", 0, 0, 0, 1},
        {"Ran 4 tests in 2.5s\nOK (expected failures=2)\n", 4, 0, 0, 0},
        {"Ran 19 tests in 0.1s\n\nFAILED (failures=1, errors=2, skipped=3)\n", 13, 1, 2, 3},
        {"Ran 0 tests in 0.000s\n\nNO TESTS RAN\n", 0, 0, 0, 0},
        /* more failed than ran: nothing passed */
        {"Ran 1 test in 0s\nFAILED (failures=5)\n", 0, 5, 0, 0},
        /* an unknown key is ignored */
        {"Ran 3 tests in 0s\nOK (flaky=2)\n", 3, 0, 0, 0},
        /* the last summary wins */
        {"Ran 3 tests in 0s\nOK\n5 passed, 1 failed\nRan 2 tests in 0s\n\n\nOK\n", 2, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        memset(&sum, 0, sizeof sum);
        if (!kz_testresult_parse_summary(ok[i].text, strlen(ok[i].text), &sum))
            fail_msg("no summary in case %zu", i);
        assert_string_equal(sum.source, "unittest");
        assert_int_equal(sum.passed, ok[i].passed);
        assert_int_equal(sum.failed, ok[i].failed);
        assert_int_equal(sum.errors, ok[i].errors);
        assert_int_equal(sum.skipped, ok[i].skipped);
    }
    static const char *const bad[] = {
        "Ran 19 tests in 0.1s\n",                 /* no status line */
        "Ran 19 tests in 0.1s\nsomething else\n", /* not a status */
        "Ran 19 tests in 0.1s\nFAILED (failures=x)\n",
        "Ran 19 tests in 0.1s\nFAILED (failures=1\n",
        "Ran 19 tests in 0.1s\nOK skipped\n",
        "Ran many tests in 0.1s\nOK\n",
        "Ran 1000000000 tests in 0.1s\nOK\n",
        "ran 19 tests in 0.1s\nOK\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (kz_testresult_parse_summary(bad[i], strlen(bad[i]), &sum))
            fail_msg("'%s' read as a summary (%s)", bad[i], sum.source);
    /* a line of '=' that is not 70 long: FAIL: is a test line again */
    static const char automake[] = "=====\nFAIL: t1\nPASS: t2\n";
    assert_int_equal(kz_testresult_parse_lines(automake, strlen(automake), &list), 0);
    assert_int_equal(list.count, 2);
    kz_test_cases_free(&list);
}

/* pytest runs that could not start: the counts and the problem line */
static void test_pytest_cannot_start(void **state)
{
    (void)state;
    size_t len;
    kz_test_summary_t sum;
    char why[512];
    char *out = s_data("pytest-conftest.out", &len);
    assert_false(kz_testresult_parse_summary(out, len, &sum));
    kz_testresult_problem(out, len, "@ROOT@/pc", why, sizeof why);
    assert_string_equal(why, "ImportError while loading conftest 'tests/conftest.py': "
                             "ModuleNotFoundError: No module named 'nothere'");
    /* without the prefix to strip, the path stays as it was */
    kz_testresult_problem(out, len, NULL, why, sizeof why);
    assert_non_null(strstr(why, "'@ROOT@/pc/tests/conftest.py': ModuleNotFoundError"));
    free(out);

    out = s_data("pytest-collect.out", &len);
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "pytest");
    assert_int_equal(sum.passed, 0);
    assert_int_equal(sum.failed, 0);
    assert_int_equal(sum.errors, 1);
    kz_testresult_problem(out, len, "@ROOT@/pm", why, sizeof why);
    assert_string_equal(why, "ImportError while importing test module 'tests/test_b.py': "
                             "ModuleNotFoundError: No module named 'nothere'");
    free(out);

    out = s_data("pytest-empty.out", &len);
    assert_true(kz_testresult_parse_summary(out, len, &sum));
    assert_string_equal(sum.source, "pytest");
    assert_int_equal(sum.passed + sum.failed + sum.errors + sum.skipped, 0);
    kz_testresult_problem(out, len, "@ROOT@/pe", why, sizeof why);
    assert_string_equal(why, "");
    free(out);

    /* the recorded runs that did start have no such problem... */
    out = s_data("c-sample.out", &len);
    kz_testresult_problem(out, len, NULL, why, sizeof why);
    assert_string_equal(why, "");
    free(out);
    /* ... and "2 skipped in 0.01s" is a pytest summary, "3 errors" alone is not */
    static const char skipped[] = "ss\n2 skipped in 0.01s\n";
    assert_true(kz_testresult_parse_summary(skipped, strlen(skipped), &sum));
    assert_int_equal(sum.skipped, 2);
    assert_int_equal(sum.passed, 0);
    static const char errors[] = "3 errors\n";
    assert_false(kz_testresult_parse_summary(errors, strlen(errors), &sum));
}

/* The problem line: which line wins, cleaning and caps */
static void test_problem_shapes(void **state)
{
    (void)state;
    char why[512];
    static const char usage[] = "ERROR: file or directory not found: tests\n\n";
    kz_testresult_problem(usage, strlen(usage), NULL, why, sizeof why);
    assert_string_equal(why, "ERROR: file or directory not found: tests");
    /* a traceback's last line */
    static const char tb[] = "Traceback (most recent call last):\n  File \"/w/x.py\", line 1\n"
                             "    import y\nimportlib.metadata.PackageNotFoundError: y\n"
                             "ERROR: later\n";
    kz_testresult_problem(tb, strlen(tb), "/w", why, sizeof why);
    assert_string_equal(why, "importlib.metadata.PackageNotFoundError: y");
    /* an error before the place does not count: the one after it does */
    static const char order[] = "ValueError: unrelated\n"
                                "ImportError while loading conftest '/w/t/conftest.py'.\n"
                                "E   SyntaxError: invalid syntax\nE   NameError: later\n";
    kz_testresult_problem(order, strlen(order), "/w", why, sizeof why);
    assert_string_equal(why,
                        "ImportError while loading conftest 't/conftest.py': SyntaxError: invalid "
                        "syntax");
    /* not exceptions */
    static const char none[] = "Errors: 3\nMyError happened\nE\nError: x\nERRORS\nsome Error: x\n";
    kz_testresult_problem(none, strlen(none), NULL, why, sizeof why);
    assert_string_equal(why, "");
    kz_testresult_problem("", 0, NULL, why, sizeof why);
    assert_string_equal(why, "");
    /* control characters and bad UTF-8 are cleaned, long lines cut */
    char big[2000];
    size_t o = (size_t)snprintf(big, sizeof big, "E   ImportError: \x01\xff");
    memset(big + o, 'y', 1500);
    o += 1500;
    kz_testresult_problem(big, o, NULL, why, sizeof why);
    assert_true(strncmp(why, "ImportError:  ?y", 16) == 0);
    assert_true(strlen(why) <= 303);
    assert_string_equal(why + strlen(why) - 3, "...");
    /* a small buffer is filled, terminated */
    char small[8];
    kz_testresult_problem(usage, strlen(usage), NULL, small, sizeof small);
    assert_int_equal(strlen(small), 7);
}

/* More tests than KZ_TESTRESULT_MAX_CASES: the rest are only counted */
/* "PASSED: N" then "FAILED: N" on lines of their own (a minimal C harness,
   one block per test binary: the last block counts, like every summary) */
static void test_label_counts(void **state)
{
    (void)state;
    static const char out[] = "cc test/tests.c -o test/t1\n./test/t1\n\nPASSED: 16\nFAILED: 0\n"
                              "./test/t2\n\nPASSED: 15\nFAILED: 1\n";
    kz_test_summary_t sum;
    assert_true(kz_testresult_parse_summary(out, strlen(out), &sum));
    assert_string_equal(sum.source, "summary");
    assert_int_equal(sum.passed, 15);
    assert_int_equal(sum.failed, 1);
    /* not a pair, not a count: no summary */
    static const char *const none[] = {"PASSED: 16\n", "FAILED: 0\nPASSED: 3\n",
                                       "passed: many\nfailed: 0\n", "PASSED: 3 of 4\nFAILED: 1\n"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        assert_false(kz_testresult_parse_summary(none[i], strlen(none[i]), &sum));
}

static void test_too_many_tests(void **state)
{
    (void)state;
    size_t n = KZ_TESTRESULT_MAX_CASES + 5;
    size_t cap = n * 20 + 1;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, cap - o, "PASS: t%zu\n", i);
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    assert_int_equal(kz_testresult_parse_lines(out, o, &list), 0);
    assert_int_equal(list.count, KZ_TESTRESULT_MAX_CASES);
    assert_int_equal(list.dropped, 5);
    assert_int_equal(list.passed, KZ_TESTRESULT_MAX_CASES);
    kz_test_cases_free(&list);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytest_junit),      cmocka_unit_test(test_pytest_console),
        cmocka_unit_test(test_pytest_live),       cmocka_unit_test(test_ctest),
        cmocka_unit_test(test_c_sample),          cmocka_unit_test(test_tap_and_automake),
        cmocka_unit_test(test_merge_and_clean),   cmocka_unit_test(test_junit_shapes),
        cmocka_unit_test(test_junit_malformed),   cmocka_unit_test(test_junit_external_entities),
        cmocka_unit_test(test_junit_entity_bomb), cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_too_many_tests),    cmocka_unit_test(test_label_counts),
        cmocka_unit_test(test_unittest),          cmocka_unit_test(test_pytest_cannot_start),
        cmocka_unit_test(test_problem_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
