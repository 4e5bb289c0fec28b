/*  test_log.c - kz_log: level filter, text and JSON lines, escaping, the
    agent and correlation ids, kz_fail
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_log.h"

static FILE *s_file;

static int s_setup(void **state)
{
    (void)state;
    s_file = tmpfile();
    if (!s_file)
        return -1;
    kz_log_set_file(s_file);
    kz_log_set_level(KZ_LOG_INFO);
    kz_log_set_json(false);
    kz_log_set_agent("tester@host#1");
    kz_log_set_corr(NULL);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    kz_log_set_file(NULL);
    fclose(s_file);
    return 0;
}

/* Everything written since the last call (malloc'd) */
static char *s_take(void)
{
    static long offset;
    long end = ftell(s_file);
    assert_true(end >= offset);
    char *text = calloc(1, (size_t)(end - offset) + 1);
    assert_non_null(text);
    fflush(s_file);
    assert_int_equal(fseek(s_file, offset, SEEK_SET), 0);
    size_t n = fread(text, 1, (size_t)(end - offset), s_file);
    assert_int_equal(n, (size_t)(end - offset));
    offset = end;
    assert_int_equal(fseek(s_file, end, SEEK_SET), 0);
    return text;
}

/* "2026-11-26T09:01:02.123456Z" */
static void s_check_timestamp(const char *ts)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd')
            assert_true(isdigit((unsigned char)ts[i]));
        else
            assert_int_equal(ts[i], shape[i]);
    }
}

static void test_text_and_levels(void **state)
{
    (void)state;
    kz_debug("hidden %d", 1);
    kz_info("scan of '%s' done", "repo");
    kz_log_set_level(KZ_LOG_WARN);
    kz_info("hidden too");
    kz_warn("slow cycle");
    kz_error("broken");
    kz_log_set_level(KZ_LOG_OFF);
    kz_error("silent");
    kz_log_set_level(KZ_LOG_DEBUG);
    kz_debug("now visible");
    kz_log_set_level(KZ_LOG_INFO);

    char *text = s_take();
    const char *want[] = {" info tester@host#1 scan of 'repo' done\n",
                          " warn tester@host#1 slow cycle\n", " error tester@host#1 broken\n",
                          " debug tester@host#1 now visible\n"};
    const char *line = text;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        s_check_timestamp(line);
        const char *rest = line + 27;
        assert_memory_equal(rest, want[i], strlen(want[i]));
        line = rest + strlen(want[i]);
    }
    assert_string_equal(line, "");
    free(text);
}

static void test_corr(void **state)
{
    (void)state;
    kz_log_set_corr("01JSCAN");
    assert_string_equal(kz_log_corr(), "01JSCAN");
    kz_info("with corr");
    kz_log_set_corr(NULL);
    assert_null(kz_log_corr());
    kz_info("without");
    char *text = s_take();
    assert_non_null(strstr(text, " info tester@host#1 corr=01JSCAN with corr\n"));
    assert_non_null(strstr(text, " info tester@host#1 without\n"));
    free(text);
}

static void *s_thread(void *arg)
{
    (void)arg;
    return (void *)(kz_log_corr() ? "set" : NULL);
}

static void test_corr_is_per_thread(void **state)
{
    (void)state;
    pthread_t thread;
    void *seen = (void *)"unset";
    kz_log_set_corr("mine");
    assert_int_equal(pthread_create(&thread, NULL, s_thread, NULL), 0);
    assert_int_equal(pthread_join(thread, &seen), 0);
    assert_null(seen);
    assert_string_equal(kz_log_corr(), "mine");
    kz_log_set_corr(NULL);
}

static void test_json(void **state)
{
    (void)state;
    kz_log_set_json(true);
    kz_log_set_agent("a\"b");
    kz_log_set_corr("c\\1");
    kz_error("q\"uote \\ nl\n tab\t ctl\x01 end");
    kz_log_set_corr(NULL);
    kz_warn("plain é");
    kz_log_set_json(false);
    kz_log_set_agent("tester@host#1");

    char *text = s_take();
    assert_memory_equal(text, "{\"ts\":\"", 7);
    s_check_timestamp(text + 7);
    const char *want = "\",\"level\":\"error\",\"agent\":\"a\\\"b\",\"corr\":\"c\\\\1\",\"msg\":"
                       "\"q\\\"uote \\\\ nl\\n tab\\t ctl\\u0001 end\"}\n";
    assert_memory_equal(text + 34, want, strlen(want));
    const char *second = text + 34 + strlen(want);
    assert_memory_equal(second, "{\"ts\":\"", 7);
    assert_string_equal(second + 34,
                        "\",\"level\":\"warn\",\"agent\":\"a\\\"b\",\"msg\":\"plain é\"}\n");
    free(text);
}

static void test_one_line_per_call(void **state)
{
    (void)state;
    /* a message longer than any internal buffer stays whole, on one line */
    size_t len = 20000;
    char *big = malloc(len + 1);
    assert_non_null(big);
    memset(big, 'x', len);
    big[len] = '\0';
    kz_info("%s|two\nlines", big);
    char *text = s_take();
    assert_int_equal(strlen(text),
                     27 + strlen(" info tester@host#1 ") + len + strlen("|two\\nlines\n"));
    assert_non_null(strstr(text, "|two\\nlines\n"));
    assert_int_equal(strchr(text, '\n') - text, (long)strlen(text) - 1);
    free(text);
    free(big);
}

static void test_fail_and_errno(void **state)
{
    (void)state;
    errno = ENOENT;
    assert_int_equal(kz_fail("unable to open '%s'", "x.yaml"), -1);
    assert_int_equal(errno, ENOENT); /* logging leaves errno alone */
    char *text = s_take();
    assert_non_null(strstr(text, " error tester@host#1 unable to open 'x.yaml'\n"));
    free(text);

    /* the default agent id is the program name */
    kz_log_set_agent(NULL);
    kz_info("who");
    text = s_take();
    assert_non_null(strstr(text, " info test_log who\n"));
    free(text);
    kz_log_set_agent("tester@host#1");
}

static void test_parse(void **state)
{
    (void)state;
    kz_log_level_t level = KZ_LOG_OFF;
    assert_int_equal(kz_log_level_parse("debug", &level), 0);
    assert_int_equal(level, KZ_LOG_DEBUG);
    assert_int_equal(kz_log_level_parse("INFO", &level), 0);
    assert_int_equal(level, KZ_LOG_INFO);
    assert_int_equal(kz_log_level_parse("warning", &level), 0);
    assert_int_equal(level, KZ_LOG_WARN);
    assert_int_equal(kz_log_level_parse("warn", &level), 0);
    assert_int_equal(level, KZ_LOG_WARN);
    assert_int_equal(kz_log_level_parse("error", &level), 0);
    assert_int_equal(level, KZ_LOG_ERROR);
    assert_int_equal(kz_log_level_parse("off", &level), 0);
    assert_int_equal(level, KZ_LOG_OFF);
    assert_int_equal(kz_log_level_parse("loud", &level), -1);
    assert_int_equal(kz_log_level_parse("", &level), -1);
    assert_int_equal(kz_log_level_parse(NULL, &level), -1);
    assert_int_equal(level, KZ_LOG_OFF);

    bool json = true;
    assert_int_equal(kz_log_format_parse("text", &json), 0);
    assert_false(json);
    assert_int_equal(kz_log_format_parse("json", &json), 0);
    assert_true(json);
    assert_int_equal(kz_log_format_parse("xml", &json), -1);
    assert_int_equal(kz_log_format_parse(NULL, &json), -1);
    assert_true(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_levels),
        cmocka_unit_test(test_corr),
        cmocka_unit_test(test_corr_is_per_thread),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_one_line_per_call),
        cmocka_unit_test(test_fail_and_errno),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
