/*  test_spool.c - kz_spool: append/read/commit round trip, the on-disk
    format (CRC-32C), resuming at the committed position after a reopen,
    corrupt records skipped and counted, a torn tail dropped, the size
    cap and write errors leaving the file as it was, rewind, and the file
    removed once drained
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_spool.h"

#define S_HDR     8  /* file header */
#define S_REC_HDR 12 /* record header */

static char s_dir[PATH_MAX / 2];
static char s_path[PATH_MAX];
static char s_pos[PATH_MAX + 8];

/* What a read handed out, copied */
typedef struct {
    size_t count;
    char *items[64];
    size_t lens[64];
} s_got_t;

static int s_collect(void *arg, const void *data, size_t len)
{
    s_got_t *got = arg;
    assert_true(got->count < 64);
    got->items[got->count] = malloc(len + 1);
    assert_non_null(got->items[got->count]);
    memcpy(got->items[got->count], data, len);
    got->items[got->count][len] = '\0';
    got->lens[got->count] = len;
    got->count++;
    return 0;
}

static void s_got_free(s_got_t *got)
{
    for (size_t i = 0; i < got->count; i++)
        free(got->items[i]);
    got->count = 0;
}

static int s_setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/kz-spool-test.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(s_dir))
        return -1;
    snprintf(s_path, sizeof s_path, "%s/recorder.spool", s_dir);
    snprintf(s_pos, sizeof s_pos, "%s.pos", s_path);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    unlink(s_path);
    unlink(s_pos);
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", s_pos);
    unlink(tmp);
    rmdir(s_dir);
    return 0;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static off_t s_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static kz_spool_t *s_open(uint64_t max)
{
    char err[512] = "";
    kz_spool_t *spool = kz_spool_open(s_path, max, err, sizeof err);
    if (!spool)
        fail_msg("kz_spool_open: %s", err);
    return spool;
}

/* Append the strings (each one record) in one call */
static int s_append(kz_spool_t *spool, const char *const *texts, size_t n, char *err, size_t len)
{
    const void *data[64];
    size_t lens[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        data[i] = texts[i];
        lens[i] = strlen(texts[i]);
    }
    return kz_spool_append(spool, data, lens, n, err, len);
}

static void s_append_ok(kz_spool_t *spool, const char *const *texts, size_t n)
{
    char err[512] = "";
    if (s_append(spool, texts, n, err, sizeof err) != 0)
        fail_msg("kz_spool_append: %s", err);
}

/* Read everything left and check it equals EXPECT[0..N) */
static void s_expect(kz_spool_t *spool, const char *const *expect, size_t n)
{
    s_got_t got = {0};
    int rc = kz_spool_read(spool, 64, s_collect, &got);
    assert_int_equal(rc, (int)n);
    assert_int_equal(got.count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(got.items[i], expect[i]);
    s_got_free(&got);
    assert_int_equal(kz_spool_read(spool, 64, s_collect, &got), 0);
}

/* Overwrite LEN bytes at OFF of the spool file with BYTE */
static void s_smash(off_t off, size_t len, uint8_t byte)
{
    int fd = open(s_path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t buf[64];
    assert_true(len <= sizeof buf);
    memset(buf, byte, len);
    assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

/* The offset of record I when records have payload lengths LENS */
static off_t s_offset(const size_t *lens, size_t i)
{
    off_t off = S_HDR;
    for (size_t k = 0; k < i; k++)
        off += S_REC_HDR + (off_t)lens[k];
    return off;
}

static void test_roundtrip(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    assert_false(s_exists(s_path)); /* nothing spooled: no file */
    assert_false(kz_spool_pending(spool));
    assert_string_equal(kz_spool_path(spool), s_path);

    char *big = malloc(100001);
    assert_non_null(big);
    for (size_t i = 0; i < 100000; i++)
        big[i] = (char)('a' + i % 26);
    big[100000] = '\0';
    const char *texts[] = {"one", "two\n\twith \\ bytes", big};
    s_append_ok(spool, texts, 3);
    assert_true(s_exists(s_path));
    assert_true(kz_spool_pending(spool));
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 3);
    assert_int_equal(st.appended, 3);
    assert_int_equal(st.bytes, (uint64_t)s_size(s_path));
    assert_int_equal(st.bytes, S_HDR + 3 * S_REC_HDR + 3 + 17 + 100000);

    s_got_t got = {0};
    assert_int_equal(kz_spool_read(spool, 2, s_collect, &got), 2);
    assert_int_equal(kz_spool_read(spool, 2, s_collect, &got), 1);
    assert_int_equal(kz_spool_read(spool, 2, s_collect, &got), 0);
    assert_int_equal(got.count, 3);
    assert_string_equal(got.items[0], "one");
    assert_string_equal(got.items[1], "two\n\twith \\ bytes");
    assert_int_equal(got.lens[2], 100000);
    assert_memory_equal(got.items[2], big, 100000);
    s_got_free(&got);
    /* read but not committed: still pending */
    assert_true(kz_spool_pending(spool));
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_false(kz_spool_pending(spool));
    kz_spool_stats(spool, &st);
    assert_int_equal(st.replayed, 3);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.bytes, 0);
    /* drained: the file and its .pos are gone */
    assert_false(s_exists(s_path));
    assert_false(s_exists(s_pos));

    /* and the next append starts a new file */
    const char *again[] = {"four"};
    s_append_ok(spool, again, 1);
    assert_true(s_exists(s_path));
    s_expect(spool, again, 1);
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_false(s_exists(s_path));
    kz_spool_close(&spool);
    assert_null(spool);
    kz_spool_close(&spool); /* twice is fine */
    free(big);
}

/* The record header is magic, length and the CRC-32C of the payload:
   the check value of CRC-32C over "123456789" is 0xE3069283 */
static void test_format(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *texts[] = {"123456789"};
    s_append_ok(spool, texts, 1);
    kz_spool_close(&spool);
    uint8_t raw[S_HDR + S_REC_HDR + 9];
    FILE *f = fopen(s_path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(raw, 1, sizeof raw, f), sizeof raw);
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
    assert_memory_equal(raw, "KZSPOOL1", 8);
    static const uint8_t head[] = {0x52, 0x53, 0x5A, 0x4B, 9, 0, 0, 0, 0x83, 0x92, 0x06, 0xE3};
    assert_memory_equal(raw + 8, head, sizeof head);
    assert_memory_equal(raw + 20, "123456789", 9);
}

static void test_reopen_resumes(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *texts[] = {"r1", "r2", "r3", "r4", "r5"};
    s_append_ok(spool, texts, 5);
    s_got_t got = {0};
    assert_int_equal(kz_spool_read(spool, 2, s_collect, &got), 2);
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_true(s_exists(s_pos));
    /* read one more without committing it, then "crash" */
    assert_int_equal(kz_spool_read(spool, 1, s_collect, &got), 1);
    assert_string_equal(got.items[2], "r3");
    s_got_free(&got);
    kz_spool_close(&spool);

    spool = s_open(0);
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 3); /* counted at open */
    assert_int_equal(st.read_pos, (uint64_t)s_offset((size_t[]){2, 2}, 2));
    s_expect(spool, texts + 2, 3);
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_false(s_exists(s_path));
    kz_spool_close(&spool);
}

/* A damaged .pos means replaying from the start: duplicates are
   harmless, losses are not */
static void test_bad_pos(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *texts[] = {"p1", "p2", "p3"};
    s_append_ok(spool, texts, 3);
    s_got_t got = {0};
    assert_int_equal(kz_spool_read(spool, 1, s_collect, &got), 1);
    s_got_free(&got);
    assert_int_equal(kz_spool_commit(spool), 0);
    kz_spool_close(&spool);
    FILE *f = fopen(s_pos, "r+b");
    assert_non_null(f);
    fputc('X', f);
    fclose(f);
    spool = s_open(0);
    s_expect(spool, texts, 3);
    kz_spool_close(&spool);
}

static void test_corrupt_middle(void **state)
{
    (void)state;
    const char *texts[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(texts[i]);
    kz_spool_t *spool = s_open(0);
    s_append_ok(spool, texts, 6);
    kz_spool_close(&spool);
    /* flip payload bytes of record 2 (checksum fails) and the length of
       record 4 (claims 4 GiB) */
    s_smash(s_offset(lens, 2) + S_REC_HDR + 2, 3, 0xff);
    s_smash(s_offset(lens, 4) + 4, 4, 0xff);

    spool = s_open(0);
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 4);
    const char *left[] = {"alpha", "bravo", "delta", "foxtrot"};
    s_expect(spool, left, 4);
    kz_spool_stats(spool, &st);
    assert_int_equal(st.corrupt, 2);
    /* a rewind forgets the read, and the second reading counts once */
    kz_spool_rewind(spool);
    s_expect(spool, left, 4);
    kz_spool_stats(spool, &st);
    assert_int_equal(st.corrupt, 2);
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_false(s_exists(s_path));
    kz_spool_close(&spool);
}

/* A damaged file header does not hide the records behind it */
static void test_bad_header(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *texts[] = {"h1", "h2"};
    s_append_ok(spool, texts, 2);
    kz_spool_close(&spool);
    s_smash(0, 8, 0);
    spool = s_open(0);
    s_expect(spool, texts, 2);
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.corrupt, 1);
    kz_spool_close(&spool);
}

static void test_torn_tail(void **state)
{
    (void)state;
    const char *texts[] = {"first", "second", "third"};
    size_t lens[] = {5, 6, 5};
    kz_spool_t *spool = s_open(0);
    s_append_ok(spool, texts, 3);
    kz_spool_close(&spool);
    off_t whole = s_size(s_path);
    /* a crash in the middle of the third record */
    assert_int_equal(truncate(s_path, whole - 3), 0);
    spool = s_open(0);
    assert_int_equal(s_size(s_path), s_offset(lens, 2)); /* truncated at open */
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.corrupt, 0);
    /* appends go on behind the good records */
    const char *more[] = {"fourth"};
    s_append_ok(spool, more, 1);
    kz_spool_close(&spool);

    /* a torn record header (7 of 12 bytes) */
    int fd = open(s_path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x52\x53\x5a\x4b\x10\x00\x00", 7), 7);
    close(fd);
    spool = s_open(0);
    const char *expect[] = {"first", "second", "fourth"};
    s_expect(spool, expect, 3);
    assert_int_equal(kz_spool_commit(spool), 0);
    kz_spool_close(&spool);

    /* only a torn file header: nothing was spooled */
    fd = open(s_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "KZSP", 4), 4);
    close(fd);
    spool = s_open(0);
    assert_false(kz_spool_pending(spool));
    assert_false(s_exists(s_path));
    kz_spool_close(&spool);
}

static void test_cap(void **state)
{
    (void)state;
    char rec[101];
    memset(rec, 'c', 100);
    rec[100] = '\0';
    const char *texts[] = {rec, rec, rec};
    uint64_t cap = S_HDR + 2 * (S_REC_HDR + 100) + 50;
    kz_spool_t *spool = s_open(cap);
    /* what fits: two of three records, then none of one more */
    size_t lens[] = {100, 100, 100};
    assert_int_equal(kz_spool_fits(spool, lens, 3), 2);
    s_append_ok(spool, texts, 2);
    assert_int_equal(kz_spool_fits(spool, lens, 1), 0);
    assert_int_equal(kz_spool_fits(spool, lens, 0), 0);
    size_t small[] = {30};
    assert_int_equal(kz_spool_fits(spool, small, 1), 1);
    off_t before = s_size(s_path);
    char err[512] = "";
    assert_int_equal(s_append(spool, texts, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "spool full"));
    assert_non_null(strstr(err, s_path));
    assert_int_equal(s_size(s_path), before);
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.appended, 2);
    /* a batch that would not fit as a whole is refused as a whole */
    s_expect(spool, texts, 2);
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_int_equal(s_append(spool, texts, 3, err, sizeof err), -1);
    assert_false(s_exists(s_path));
    assert_false(kz_spool_pending(spool));
    kz_spool_close(&spool);
}

/* A write error half-way (here the file size limit, as with a full disk)
   leaves the file as it was before the call */
static void test_write_error(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *first[] = {"kept"};
    s_append_ok(spool, first, 1);
    off_t before = s_size(s_path);
    char rec[201];
    memset(rec, 'w', 200);
    rec[200] = '\0';
    const char *texts[] = {rec, rec, rec};

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)before + 300; /* the first record fits, the second not */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char err[512] = "";
    int rc = s_append(spool, texts, 3, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0); /* before any output */
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "unable to append to spool"));
    assert_int_equal(s_size(s_path), before);
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.bytes, (uint64_t)before);
    s_expect(spool, first, 1);
    kz_spool_close(&spool);
}

static void test_rewind(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *texts[] = {"w1", "w2", "w3", "w4"};
    s_append_ok(spool, texts, 4);
    s_got_t got = {0};
    assert_int_equal(kz_spool_read(spool, 2, s_collect, &got), 2);
    s_got_free(&got);
    kz_spool_rewind(spool); /* that batch failed */
    s_expect(spool, texts, 4);
    kz_spool_rewind(spool);
    assert_int_equal(kz_spool_read(spool, 3, s_collect, &got), 3);
    s_got_free(&got);
    assert_int_equal(kz_spool_commit(spool), 0);
    kz_spool_stats_t st;
    kz_spool_stats(spool, &st);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.replayed, 3);
    assert_true(s_exists(s_path));
    /* appends while a replay is under way land behind it */
    const char *more[] = {"w5"};
    s_append_ok(spool, more, 1);
    const char *rest[] = {"w4", "w5"};
    s_expect(spool, rest, 2);
    assert_int_equal(kz_spool_commit(spool), 0);
    assert_false(s_exists(s_path));
    kz_spool_close(&spool);
}

/* A callback that refuses a record stops the read before it */
static int s_refuse_second(void *arg, const void *data, size_t len)
{
    (void)data;
    (void)len;
    int *calls = arg;
    return ++*calls == 2 ? -1 : 0;
}

static void test_callback_stops(void **state)
{
    (void)state;
    kz_spool_t *spool = s_open(0);
    const char *texts[] = {"c1", "c2", "c3"};
    s_append_ok(spool, texts, 3);
    int calls = 0;
    assert_int_equal(kz_spool_read(spool, 10, s_refuse_second, &calls), -1);
    assert_int_equal(kz_spool_commit(spool), 0); /* c1 only */
    s_expect(spool, texts + 1, 2);
    kz_spool_close(&spool);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[512] = "";
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/missing-dir/x.spool", s_dir);
    /* a missing directory only matters when something must be written */
    kz_spool_t *spool = kz_spool_open(path, 0, err, sizeof err);
    assert_non_null(spool);
    const void *data[] = {"x"};
    size_t lens[] = {1};
    assert_int_equal(kz_spool_append(spool, data, lens, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing-dir"));
    kz_spool_close(&spool);
    /* a directory where the file should be */
    snprintf(path, sizeof path, "%s", s_dir);
    spool = kz_spool_open(path, 0, err, sizeof err);
    assert_null(spool);
    assert_non_null(strstr(err, s_dir));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_format, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_resumes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_pos, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_header, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cap, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_error, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_rewind, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
