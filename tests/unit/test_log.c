/*  test_log.c - kz_log: level filter, text and JSON lines, escaping, the
    agent and correlation ids, kz_fail, and log files (kz_log_open_file):
    stderr redirected into them, rotation by size, keep and truncation
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ------------------------------------------------------------ log files */

/* kz_log_open_file makes the file our fd 2: keep the real stderr to put
   it back, so cmocka's own messages are not lost in a temp file */
typedef struct {
    char dir[64];
    char path[128];
    int saved_stderr;
} s_logfile_t;

static void s_logfile_begin(s_logfile_t *lf)
{
    snprintf(lf->dir, sizeof lf->dir, "/tmp/kz-test-log.XXXXXX");
    assert_non_null(mkdtemp(lf->dir));
    snprintf(lf->path, sizeof lf->path, "%s/x.log", lf->dir);
    fflush(stderr);
    lf->saved_stderr = dup(STDERR_FILENO);
    assert_true(lf->saved_stderr >= 0);
}

static void s_logfile_end(s_logfile_t *lf)
{
    /* no rotation of whatever stderr becomes next: /dev/null without a
       size bound, then the real stderr back and the tests' file again */
    assert_int_equal(kz_log_open_file("/dev/null", 0, 0), 0);
    fflush(stderr);
    assert_true(dup2(lf->saved_stderr, STDERR_FILENO) == STDERR_FILENO);
    close(lf->saved_stderr);
    kz_log_set_file(s_file);
    for (int i = 0; i <= 9; i++) {
        char p[160];
        if (i == 0)
            snprintf(p, sizeof p, "%s", lf->path);
        else
            snprintf(p, sizeof p, "%s.%d", lf->path, i);
        unlink(p);
    }
    assert_int_equal(rmdir(lf->dir), 0);
}

/* The whole of PATH (malloc'd), NULL when it does not exist */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_non_null(mem);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(fwrite(chunk, 1, n, mem), n);
    fclose(f);
    fclose(mem);
    return text;
}

static off_t s_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The numbers N of the lines "line N " in TEXT, in order, into NUMS */
static int s_line_numbers(const char *text, int *nums, int max)
{
    int count = 0;
    for (const char *p = text; (p = strstr(p, " line ")) != NULL; p++) {
        assert_true(count < max);
        nums[count++] = atoi(p + 6);
    }
    return count;
}

#define S_LINE_PAD "................................................................"

static void test_file_takes_stderr(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    assert_int_equal(kz_log_open_file(lf.path, 1024 * 1024, 3), 0);
    kz_info("through kz_log");
    fprintf(stderr, "raw stderr write %d\n", 42);
    fflush(stderr);
    assert_int_equal(write(STDERR_FILENO, "raw fd 2\n", 9), 9);
    kz_warn("after the raw writes");
    char *text = s_slurp(lf.path);
    assert_non_null(text);
    const char *a = strstr(text, " info tester@host#1 through kz_log\n");
    const char *b = strstr(text, "raw stderr write 42\n");
    const char *c = strstr(text, "raw fd 2\n");
    const char *d = strstr(text, " warn tester@host#1 after the raw writes\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    assert_true(a < b && b < c && c < d);
    free(text);
    s_logfile_end(&lf);

    /* a file that cannot be opened: -1 with errno, stderr untouched */
    struct stat before, after;
    assert_int_equal(fstat(STDERR_FILENO, &before), 0);
    errno = 0;
    assert_int_equal(kz_log_open_file("/nonexistent-dir/x.log", 1024, 1), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(fstat(STDERR_FILENO, &after), 0);
    assert_true(before.st_ino == after.st_ino && before.st_dev == after.st_dev);
}

/* A log is 0600 whatever the umask (an older 0644 one is narrowed), and
   a symlink planted in its place is never followed */
static void test_file_private_no_symlink(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    mode_t old = umask(022);
    assert_int_equal(kz_log_open_file(lf.path, 1024 * 1024, 3), 0);
    kz_info("private");
    struct stat st;
    assert_int_equal(stat(lf.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    s_logfile_end(&lf);

    s_logfile_begin(&lf);
    FILE *f = fopen(lf.path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(chmod(lf.path, 0644), 0);
    assert_int_equal(kz_log_open_file(lf.path, 1024 * 1024, 3), 0);
    assert_int_equal(stat(lf.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    s_logfile_end(&lf);

    s_logfile_begin(&lf);
    char outside[160];
    snprintf(outside, sizeof outside, "%s/outside", lf.dir);
    f = fopen(outside, "w");
    assert_non_null(f);
    fputs("untouched\n", f);
    fclose(f);
    assert_int_equal(chmod(outside, 0644), 0);
    assert_int_equal(symlink(outside, lf.path), 0);
    struct stat before, after;
    assert_int_equal(fstat(STDERR_FILENO, &before), 0);
    errno = 0;
    assert_int_equal(kz_log_open_file(lf.path, 1024, 1), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(fstat(STDERR_FILENO, &after), 0);
    assert_true(before.st_ino == after.st_ino && before.st_dev == after.st_dev);
    char *text = s_slurp(outside);
    assert_string_equal(text, "untouched\n");
    free(text);
    assert_int_equal(stat(outside, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    unlink(outside);
    umask(old);
    s_logfile_end(&lf);
}

static void test_file_rotation(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    const size_t max = 1000;
    assert_int_equal(kz_log_open_file(lf.path, max, 2), 0);
    /* each line is about 130 bytes: 60 lines are several rotations */
    for (int i = 1; i <= 60; i++)
        kz_info("line %d " S_LINE_PAD, i);

    char p1[160], p2[160], p3[160];
    snprintf(p1, sizeof p1, "%s.1", lf.path);
    snprintf(p2, sizeof p2, "%s.2", lf.path);
    snprintf(p3, sizeof p3, "%s.3", lf.path);
    /* keep 2: PATH.1 and PATH.2, nothing beyond */
    assert_true(s_size(p1) > (off_t)max);
    assert_true(s_size(p2) > (off_t)max);
    assert_int_equal(s_size(p3), -1);
    /* rotated as soon as a write went beyond the bound: one line over at most */
    assert_true(s_size(p1) < (off_t)max + 200);
    assert_true(s_size(p2) < (off_t)max + 200);
    assert_true(s_size(lf.path) <= (off_t)max);

    /* the files hold consecutive lines, oldest in PATH.2, the newest last
       in PATH; what came before PATH.2 was dropped */
    char *t2 = s_slurp(p2), *t1 = s_slurp(p1), *t0 = s_slurp(lf.path);
    assert_non_null(t2);
    assert_non_null(t1);
    assert_non_null(t0);
    int nums[200];
    int n = s_line_numbers(t2, nums, 200);
    n += s_line_numbers(t1, nums + n, 200 - n);
    n += s_line_numbers(t0, nums + n, 200 - n);
    assert_true(n > 0 && n < 60);
    assert_true(nums[0] > 1); /* the oldest lines are gone */
    for (int i = 1; i < n; i++)
        assert_int_equal(nums[i], nums[i - 1] + 1);
    assert_int_equal(nums[n - 1], 60);
    free(t0);
    free(t1);
    free(t2);

    /* stderr follows the fresh file: a raw write lands in PATH, not PATH.1 */
    fprintf(stderr, "raw after rotation\n");
    fflush(stderr);
    char *now = s_slurp(lf.path);
    assert_non_null(now);
    assert_non_null(strstr(now, "raw after rotation\n"));
    free(now);
    s_logfile_end(&lf);
}

static void test_file_rotates_at_open(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    /* a file already beyond the bound (left by an earlier run) is rotated
       when it is opened */
    FILE *f = fopen(lf.path, "w");
    assert_non_null(f);
    for (int i = 0; i < 40; i++)
        fputs("old line " S_LINE_PAD "\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(kz_log_open_file(lf.path, 1000, 1), 0);
    kz_info("first line of this run");
    char p1[160];
    snprintf(p1, sizeof p1, "%s.1", lf.path);
    char *old = s_slurp(p1), *cur = s_slurp(lf.path);
    assert_non_null(old);
    assert_non_null(cur);
    assert_non_null(strstr(old, "old line"));
    assert_null(strstr(old, "first line of this run"));
    assert_null(strstr(cur, "old line"));
    assert_non_null(strstr(cur, "first line of this run"));
    free(old);
    free(cur);
    s_logfile_end(&lf);
}

static void test_file_keep_zero_truncates(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    const size_t max = 600;
    assert_int_equal(kz_log_open_file(lf.path, max, 0), 0);
    for (int i = 1; i <= 30; i++)
        kz_info("line %d " S_LINE_PAD, i);
    char p1[160];
    snprintf(p1, sizeof p1, "%s.1", lf.path);
    assert_int_equal(s_size(p1), -1); /* no rotated files */
    assert_true(s_size(lf.path) <= (off_t)max);
    /* O_APPEND: after the truncation writes start at 0 again, no hole */
    kz_info("line 31 " S_LINE_PAD);
    char *text = s_slurp(lf.path);
    assert_non_null(text);
    assert_true(text[0] != '\0');
    assert_int_equal((size_t)s_size(lf.path), strlen(text)); /* no NUL bytes */
    assert_non_null(strstr(text, " line 31 "));
    assert_null(strstr(text, " line 1 "));
    free(text);
    s_logfile_end(&lf);
}

/* A supervised process has stdout on its log file too: after a rotation
   stdout writes land in the fresh PATH, not in PATH.1 */
static void test_file_rotation_moves_stdout(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    fflush(stdout);
    int saved_stdout = dup(STDOUT_FILENO);
    assert_true(saved_stdout >= 0);
    int fd = open(lf.path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    assert_true(fd >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
    close(fd);
    assert_int_equal(kz_log_open_file(lf.path, 1000, 2), 0);
    for (int i = 1; i <= 30; i++)
        kz_info("line %d " S_LINE_PAD, i);
    char p1[160];
    snprintf(p1, sizeof p1, "%s.1", lf.path);
    assert_true(s_size(p1) > 0);
    printf("stdout after rotation\n");
    fflush(stdout);
    char *cur = s_slurp(lf.path), *old = s_slurp(p1);
    assert_non_null(cur);
    assert_non_null(old);
    assert_non_null(strstr(cur, "stdout after rotation\n"));
    assert_null(strstr(old, "stdout after rotation"));
    free(cur);
    free(old);
    assert_true(dup2(saved_stdout, STDOUT_FILENO) == STDOUT_FILENO);
    close(saved_stdout);
    s_logfile_end(&lf);
}

/* Once fd 2 is pointed at another file, PATH is not rotated any more
   (it is not what we write to) */
static void test_file_no_rotation_when_stderr_moved(void **state)
{
    (void)state;
    s_logfile_t lf = {"", "", -1};
    s_logfile_begin(&lf);
    assert_int_equal(kz_log_open_file(lf.path, 1000, 2), 0);
    kz_info("first line");
    char other[160];
    snprintf(other, sizeof other, "%s.other", lf.path);
    int fd = open(other, O_WRONLY | O_CREAT | O_APPEND, 0644);
    assert_true(fd >= 0);
    fflush(stderr);
    assert_true(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
    for (int i = 1; i <= 30; i++)
        kz_info("line %d " S_LINE_PAD, i);
    char p1[160];
    snprintf(p1, sizeof p1, "%s.1", lf.path);
    assert_int_equal(s_size(p1), -1); /* PATH was not renamed */
    char *cur = s_slurp(lf.path);
    assert_non_null(cur);
    assert_non_null(strstr(cur, "first line"));
    free(cur);
    assert_true(s_size(other) > 1000);
    unlink(other);
    s_logfile_end(&lf);
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
        cmocka_unit_test(test_file_takes_stderr),
        cmocka_unit_test(test_file_private_no_symlink),
        cmocka_unit_test(test_file_rotation),
        cmocka_unit_test(test_file_rotates_at_open),
        cmocka_unit_test(test_file_keep_zero_truncates),
        cmocka_unit_test(test_file_rotation_moves_stdout),
        cmocka_unit_test(test_file_no_rotation_when_stderr_moved),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
