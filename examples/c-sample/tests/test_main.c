/* test_main.c - the textbuf tests: one line per test ("PASS: name" or
   "FAIL: name: why"), then "N passed, N failed"; exit 1 on any failure.
   Run from the project root (it reads tests/golden/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "errors.h"
#include "ring.h"
#include "sbuf.h"

static int passed, failed;
static char why[512];

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            snprintf(why, sizeof why, "line %d: %s", __LINE__, #cond);                   \
            return 0;                                                                    \
        }                                                                                \
    } while (0)

static void run(const char *name, int (*test)(void))
{
    why[0] = '\0';
    if (test()) {
        passed++;
        printf("PASS: %s\n", name);
    } else {
        failed++;
        printf("FAIL: %s: %s\n", name, why);
    }
}

static int test_sbuf_append(void)
{
    sbuf_t sb;
    CHECK(sbuf_init(&sb, 0) == TB_OK);
    CHECK(sbuf_append(&sb, "hello") == TB_OK);
    CHECK(sbuf_append(&sb, ", world") == TB_OK);
    CHECK(strcmp(sb.data, "hello, world") == 0 && sb.len == 12);
    sbuf_free(&sb);
    return 1;
}

static int test_sbuf_appendf_grows(void)
{
    sbuf_t sb;
    CHECK(sbuf_init(&sb, 4) == TB_OK);
    for (int i = 0; i < 100; i++)
        CHECK(sbuf_appendf(&sb, "%d,", i) == TB_OK);
    CHECK(strncmp(sb.data, "0,1,2,", 6) == 0 && sb.len == 290);
    sbuf_free(&sb);
    return 1;
}

static int test_sbuf_trim_detach(void)
{
    sbuf_t sb;
    CHECK(sbuf_init(&sb, 0) == TB_OK);
    CHECK(sbuf_append(&sb, " \t padded text\n") == TB_OK);
    sbuf_trim(&sb);
    CHECK(strcmp(sb.data, "padded text") == 0);
    char *s = sbuf_detach(&sb);
    CHECK(s && strcmp(s, "padded text") == 0 && sb.data == NULL);
    free(s);
    return 1;
}

static int test_sbuf_load_file(void)
{
    sbuf_t sb;
    CHECK(sbuf_init(&sb, 0) == TB_OK);
    CHECK(sbuf_load_file(&sb, "tests/golden/errors.txt") == TB_OK);
    CHECK(sb.len > 0 && strncmp(sb.data, "success\n", 8) == 0);
    CHECK(sbuf_load_file(&sb, "tests/golden/no-such-file") == TB_EIO);
    sbuf_free(&sb);
    return 1;
}

static int test_ring_fifo(void)
{
    ring_t *r = ring_new(3);
    int v = 0;
    CHECK(r != NULL);
    CHECK(ring_push(r, 1) == TB_OK && ring_push(r, 2) == TB_OK &&
          ring_push(r, 3) == TB_OK);
    CHECK(ring_push(r, 4) == TB_EFULL);
    CHECK(ring_pop(r, &v) == TB_OK && v == 1);
    CHECK(ring_push(r, 4) == TB_OK && ring_count(r) == 3);
    CHECK(ring_peek(r, 0, 0, &v) == TB_OK && v == 2);
    CHECK(ring_peek(r, 1, 0, &v) == TB_OK && v == 4);
    CHECK(ring_peek(r, 1, 3, &v) == TB_ERANGE);
    while (ring_count(r) > 0)
        CHECK(ring_pop(r, &v) == TB_OK);
    CHECK(ring_pop(r, &v) == TB_EEMPTY);
    ring_free(r);
    return 1;
}

static int test_csv_split(void)
{
    char *f[8];
    int n = csv_split("a,\"b,c\",\"say \"\"hi\"\"\",", f, 8);
    CHECK(n == 4);
    CHECK(strcmp(f[0], "a") == 0 && strcmp(f[1], "b,c") == 0);
    CHECK(strcmp(f[2], "say \"hi\"") == 0 && strcmp(f[3], "") == 0);
    csv_free(f, (size_t)n);
    CHECK(csv_split("\"open", f, 8) == TB_EQUOTE);
    CHECK(csv_split("1,2,3", f, 2) == TB_ERANGE);
    return 1;
}

/* The messages are a stable interface: scripts match on them */
static int test_error_messages(void)
{
    sbuf_t golden;
    CHECK(sbuf_init(&golden, 0) == TB_OK);
    CHECK(sbuf_load_file(&golden, "tests/golden/errors.txt") == TB_OK);
    sbuf_t now;
    CHECK(sbuf_init(&now, 0) == TB_OK);
    for (int code = 0; code > -TB_ERROR_COUNT; code--)
        CHECK(sbuf_appendf(&now, "%s\n", tb_strerror(code)) == TB_OK);
    CHECK(strcmp(tb_strerror(-99), "unknown error") == 0);
    CHECK(strcmp(now.data, golden.data) == 0);
    sbuf_free(&now);
    sbuf_free(&golden);
    return 1;
}

int main(void)
{
    run("sbuf_append", test_sbuf_append);
    run("sbuf_appendf_grows", test_sbuf_appendf_grows);
    run("sbuf_trim_detach", test_sbuf_trim_detach);
    run("sbuf_load_file", test_sbuf_load_file);
    run("ring_fifo", test_ring_fifo);
    run("csv_split", test_csv_split);
    run("error_messages", test_error_messages);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
