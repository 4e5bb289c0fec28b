/*  test_dlog.c - kz_dlog, the broker's durable-group log: replay of the
    unacknowledged events in order after a reopen, acknowledged ones not
    replayed, LSNs growing across reopens, segments deleted once all
    their events are acknowledged (only from the oldest), a torn last
    record and a corrupt record in the middle skipped without blocking
    the rest, the byte cap refusing appends, and a segment never appended
    to again after a reopen
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_dlog.h"

static char s_dir[PATH_MAX / 2];

typedef struct {
    size_t count;
    uint64_t lsn[256];
    char body[256][64];
    char group[256][32];
} s_got_t;

static int s_collect(void *arg, const kz_dlog_event_t *ev)
{
    s_got_t *got = arg;
    assert_true(got->count < 256);
    got->lsn[got->count] = ev->lsn;
    snprintf(got->body[got->count], sizeof got->body[0], "%.*s", (int)ev->body_len,
             (const char *)ev->body);
    snprintf(got->group[got->count], sizeof got->group[0], "%s", ev->group);
    assert_string_equal(ev->topic, "test.event");
    got->count++;
    return 0;
}

static int s_setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/kz-dlog-test.XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(s_dir) ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(s_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char path[PATH_MAX];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", s_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(s_dir);
    return 0;
}

static size_t s_segments(void)
{
    size_t n = 0;
    DIR *d = opendir(s_dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".log") != NULL;
    closedir(d);
    return n;
}

static uint64_t s_append(kz_dlog_t *log, const char *group, const char *body)
{
    char err[256];
    uint64_t lsn = 0;
    assert_int_equal(
        kz_dlog_append(log, group, "test.event", 10, body, strlen(body), &lsn, err, sizeof err), 0);
    return lsn;
}

static kz_dlog_t *s_open(uint64_t max, uint64_t seg, s_got_t *got)
{
    char err[256];
    memset(got, 0, sizeof *got);
    kz_dlog_t *log = kz_dlog_open(s_dir, max, seg, s_collect, got, err, sizeof err);
    if (!log)
        fail_msg("%s", err);
    return log;
}

static void test_replay_unacked(void **state)
{
    (void)state;
    s_got_t got;
    char err[256];
    kz_dlog_t *log = s_open(0, 0, &got);
    assert_int_equal(got.count, 0);
    uint64_t a = s_append(log, "kaizen.recorder", "one");
    uint64_t b = s_append(log, "other", "two");
    uint64_t c = s_append(log, "kaizen.recorder", "three");
    assert_true(a < b && b < c);
    assert_int_equal(kz_dlog_ack(log, b, err, sizeof err), 0);
    assert_true(kz_dlog_dirty(log));
    assert_int_equal(kz_dlog_sync(log, err, sizeof err), 0);
    assert_false(kz_dlog_dirty(log));
    kz_dlog_close(&log);

    log = s_open(0, 0, &got);
    assert_int_equal(got.count, 2);
    assert_int_equal(got.lsn[0], a);
    assert_string_equal(got.body[0], "one");
    assert_string_equal(got.group[0], "kaizen.recorder");
    assert_int_equal(got.lsn[1], c);
    assert_string_equal(got.body[1], "three");
    /* new LSNs follow the old ones */
    uint64_t d = s_append(log, "kaizen.recorder", "four");
    assert_true(d > c);
    kz_dlog_stats_t st;
    kz_dlog_stats(log, &st);
    assert_int_equal(st.unacked, 3);
    assert_int_equal(st.replayed, 2);
    /* everything acknowledged: nothing comes back, old segments go */
    assert_int_equal(kz_dlog_ack(log, a, err, sizeof err), 0);
    assert_int_equal(kz_dlog_ack(log, c, err, sizeof err), 0);
    assert_int_equal(kz_dlog_ack(log, d, err, sizeof err), 0);
    assert_int_equal(kz_dlog_ack(log, d, err, sizeof err), 0); /* twice: ignored */
    kz_dlog_close(&log);
    log = s_open(0, 0, &got);
    assert_int_equal(got.count, 0);
    kz_dlog_close(&log);
    log = s_open(0, 0, &got);
    assert_int_equal(s_segments(), 1); /* only the current one */
    kz_dlog_close(&log);
}

static void test_segments_deleted(void **state)
{
    (void)state;
    s_got_t got;
    char err[256];
    /* tiny segments: a few records each */
    kz_dlog_t *log = s_open(0, 200, &got);
    uint64_t lsn[20];
    for (int i = 0; i < 20; i++) {
        char body[32];
        snprintf(body, sizeof body, "event-%02d", i);
        lsn[i] = s_append(log, "g", body);
    }
    kz_dlog_stats_t st;
    kz_dlog_stats(log, &st);
    assert_true(st.segments > 3);
    size_t before = st.segments;
    /* acknowledging the second half first deletes nothing: the oldest
       segment still holds unacknowledged events */
    for (int i = 10; i < 20; i++)
        assert_int_equal(kz_dlog_ack(log, lsn[i], err, sizeof err), 0);
    kz_dlog_stats(log, &st);
    assert_int_equal(st.segments, before);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kz_dlog_ack(log, lsn[i], err, sizeof err), 0);
    kz_dlog_stats(log, &st);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.unacked, 0);
    assert_int_equal(s_segments(), 1);
    kz_dlog_close(&log);
    log = s_open(0, 200, &got);
    assert_int_equal(got.count, 0);
    kz_dlog_close(&log);
}

/* The one segment file other than NEWEST (or the newest when 0) */
static void s_segment_path(char *out, size_t len, bool newest)
{
    DIR *d = opendir(s_dir);
    assert_non_null(d);
    char best[256] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".log"))
            continue;
        if (!best[0] || (newest ? strcmp(e->d_name, best) > 0 : strcmp(e->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    snprintf(out, len, "%s/%s", s_dir, best);
}

static void test_torn_and_corrupt(void **state)
{
    (void)state;
    s_got_t got;
    char err[256];
    kz_dlog_t *log = s_open(0, 0, &got);
    for (int i = 0; i < 5; i++) {
        char body[32];
        snprintf(body, sizeof body, "event-%d", i);
        s_append(log, "g", body);
    }
    kz_dlog_close(&log);
    char path[PATH_MAX];
    s_segment_path(path, sizeof path, false);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* a torn last record: cut in the middle */
    assert_int_equal(truncate(path, sb.st_size - 3), 0);
    /* and a flipped byte in the body of the second record */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t rec = 8 + 12 + (1 + 8 + 1 + 1 + 1 + 10 + 7); /* header + first record */
    char byte;
    assert_int_equal(pread(fd, &byte, 1, rec + 12 + 25), 1);
    byte ^= 0x55;
    assert_int_equal(pwrite(fd, &byte, 1, rec + 12 + 25), 1);
    close(fd);
    log = s_open(0, 0, &got);
    /* the first, third and fourth survive: the damaged and the torn one are skipped */
    assert_int_equal(got.count, 3);
    assert_string_equal(got.body[0], "event-0");
    assert_string_equal(got.body[1], "event-2");
    assert_string_equal(got.body[2], "event-3");
    kz_dlog_stats_t st;
    kz_dlog_stats(log, &st);
    assert_int_equal(st.corrupt, 2);
    /* the damaged segment is never appended to: a new one is current */
    uint64_t lsn = s_append(log, "g", "after");
    assert_true(lsn > got.lsn[2]);
    assert_int_equal(kz_dlog_sync(log, err, sizeof err), 0);
    kz_dlog_close(&log);
    log = s_open(0, 0, &got);
    assert_int_equal(got.count, 4);
    assert_string_equal(got.body[3], "after");
    kz_dlog_close(&log);
}

static void test_cap(void **state)
{
    (void)state;
    s_got_t got;
    char err[256];
    kz_dlog_t *log = s_open(1000, 0, &got);
    uint64_t lsn = 0;
    int ok = 0;
    char body[100];
    memset(body, 'x', sizeof body);
    while (kz_dlog_append(log, "g", "test.event", 10, body, sizeof body, &lsn, err, sizeof err) ==
           0)
        ok++;
    assert_true(ok > 0 && ok < 10);
    assert_non_null(strstr(err, "log full"));
    kz_dlog_stats_t st;
    kz_dlog_stats(log, &st);
    assert_int_equal(st.full, 1);
    assert_true(st.bytes <= 1000);
    kz_dlog_close(&log);
    /* what was logged is all there */
    log = s_open(1000, 0, &got);
    assert_int_equal(got.count, (size_t)ok);
    kz_dlog_close(&log);
}

static void test_open_error(void **state)
{
    (void)state;
    char err[256], path[PATH_MAX];
    snprintf(path, sizeof path, "%s/file", s_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    kz_dlog_t *log = kz_dlog_open(path, 0, 0, NULL, NULL, err, sizeof err);
    assert_null(log);
    assert_non_null(strstr(err, "file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_unacked, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_segments_deleted, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_torn_and_corrupt, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cap, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_open_error, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
