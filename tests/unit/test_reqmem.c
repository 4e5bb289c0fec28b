/*  test_reqmem.c - kz_reqmem: a request taken is RUNNING, its reply makes
    it DONE under its id and the id it re-asks, re-asks match either way,
    bad ids are refused, and both bounds (entries, bytes) forget the
    oldest answered requests first, never a running one while an
    answered one can go
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_reqmem.h"

static void test_states(void **state)
{
    (void)state;
    kz_reqmem_t *m = kz_reqmem_new();
    assert_non_null(m);
    const uint8_t *r = NULL;
    size_t len = 0;
    assert_int_equal(kz_reqmem_lookup(m, "A", NULL, &r, &len), KZ_REQMEM_UNKNOWN);
    assert_int_equal(kz_reqmem_start(m, "A", NULL), 0);
    assert_int_equal(kz_reqmem_lookup(m, "A", NULL, &r, &len), KZ_REQMEM_RUNNING);
    /* a re-ask B of A: running too, by its retry_of */
    assert_int_equal(kz_reqmem_lookup(m, "B", "A", &r, &len), KZ_REQMEM_RUNNING);
    assert_int_equal(kz_reqmem_lookup(m, "B", NULL, &r, &len), KZ_REQMEM_UNKNOWN);
    assert_int_equal(kz_reqmem_done(m, "A", (const uint8_t *)"reply-A", 7), 0);
    assert_int_equal(kz_reqmem_lookup(m, "B", "A", &r, &len), KZ_REQMEM_DONE);
    assert_int_equal(len, 7);
    assert_memory_equal(r, "reply-A", 7);
    /* the same id again (a broker's re-queue) */
    assert_int_equal(kz_reqmem_lookup(m, "A", NULL, &r, &len), KZ_REQMEM_DONE);
    assert_int_equal(kz_reqmem_count(m), 1);
    assert_int_equal(kz_reqmem_bytes(m), 7);
    kz_reqmem_destroy(&m);
    assert_null(m);
}

static void test_reask_ran(void **state)
{
    (void)state;
    /* a worker that never saw A runs its re-ask B; a third ask C of A
       then finds B's reply (by B's retry_of) */
    kz_reqmem_t *m = kz_reqmem_new();
    const uint8_t *r = NULL;
    size_t len = 0;
    assert_int_equal(kz_reqmem_start(m, "B", "A"), 0);
    assert_int_equal(kz_reqmem_lookup(m, "C", "A", &r, &len), KZ_REQMEM_RUNNING);
    assert_int_equal(kz_reqmem_done(m, "B", (const uint8_t *)"reply-B", 7), 0);
    assert_int_equal(kz_reqmem_lookup(m, "C", "A", &r, &len), KZ_REQMEM_DONE);
    assert_memory_equal(r, "reply-B", 7);
    assert_int_equal(kz_reqmem_lookup(m, "A", NULL, &r, &len), KZ_REQMEM_DONE);
    /* a reply to a request never started is kept too */
    assert_int_equal(kz_reqmem_done(m, "Z", (const uint8_t *)"z", 1), 0);
    assert_int_equal(kz_reqmem_lookup(m, "Z", NULL, &r, &len), KZ_REQMEM_DONE);
    kz_reqmem_destroy(&m);
}

static void test_bad_ids(void **state)
{
    (void)state;
    kz_reqmem_t *m = kz_reqmem_new();
    char longid[KZ_REQMEM_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(kz_reqmem_start(m, "", NULL), -1);
    assert_int_equal(kz_reqmem_start(m, NULL, NULL), -1);
    assert_int_equal(kz_reqmem_start(m, longid, NULL), -1);
    assert_int_equal(kz_reqmem_start(m, "A", longid), -1);
    assert_int_equal(kz_reqmem_done(m, longid, (const uint8_t *)"x", 1), -1);
    assert_int_equal(kz_reqmem_count(m), 0);
    assert_int_equal(kz_reqmem_lookup(m, "", "", NULL, NULL), KZ_REQMEM_UNKNOWN);
    /* "" matches nothing, not an entry without retry_of */
    assert_int_equal(kz_reqmem_start(m, "A", ""), 0);
    assert_int_equal(kz_reqmem_lookup(m, "Q", "", NULL, NULL), KZ_REQMEM_UNKNOWN);
    /* a reply too large to keep drops the entry */
    size_t big = KZ_REQMEM_BYTES / 4 + 1;
    uint8_t *buf = calloc(1, big);
    assert_int_equal(kz_reqmem_done(m, "A", buf, big), -1);
    free(buf);
    assert_int_equal(kz_reqmem_lookup(m, "A", NULL, NULL, NULL), KZ_REQMEM_UNKNOWN);
    assert_int_equal(kz_reqmem_bytes(m), 0);
    kz_reqmem_destroy(&m);
}

static void test_entry_bound(void **state)
{
    (void)state;
    kz_reqmem_t *m = kz_reqmem_new();
    char id[32];
    /* one running request, then more answered ones than fit */
    assert_int_equal(kz_reqmem_start(m, "RUN", NULL), 0);
    for (int i = 0; i < KZ_REQMEM_ENTRIES + 10; i++) {
        snprintf(id, sizeof id, "D%d", i);
        assert_int_equal(kz_reqmem_start(m, id, NULL), 0);
        assert_int_equal(kz_reqmem_done(m, id, (const uint8_t *)id, strlen(id)), 0);
    }
    assert_int_equal(kz_reqmem_count(m), KZ_REQMEM_ENTRIES);
    assert_int_equal(kz_reqmem_lookup(m, "RUN", NULL, NULL, NULL), KZ_REQMEM_RUNNING);
    assert_int_equal(kz_reqmem_lookup(m, "D0", NULL, NULL, NULL), KZ_REQMEM_UNKNOWN);
    snprintf(id, sizeof id, "D%d", KZ_REQMEM_ENTRIES + 9);
    assert_int_equal(kz_reqmem_lookup(m, id, NULL, NULL, NULL), KZ_REQMEM_DONE);
    kz_reqmem_destroy(&m);
}

static void test_byte_bound(void **state)
{
    (void)state;
    kz_reqmem_t *m = kz_reqmem_new();
    size_t quarter = KZ_REQMEM_BYTES / 4;
    uint8_t *buf = calloc(1, quarter);
    assert_non_null(buf);
    char id[16];
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "B%d", i);
        buf[0] = (uint8_t)i;
        assert_int_equal(kz_reqmem_done(m, id, buf, quarter), 0);
        assert_true(kz_reqmem_bytes(m) <= KZ_REQMEM_BYTES);
    }
    assert_int_equal(kz_reqmem_count(m), 4);
    assert_int_equal(kz_reqmem_lookup(m, "B1", NULL, NULL, NULL), KZ_REQMEM_UNKNOWN);
    const uint8_t *r = NULL;
    size_t len = 0;
    assert_int_equal(kz_reqmem_lookup(m, "B5", NULL, &r, &len), KZ_REQMEM_DONE);
    assert_int_equal(len, quarter);
    assert_int_equal(r[0], 5);
    free(buf);
    kz_reqmem_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states),     cmocka_unit_test(test_reask_ran),
        cmocka_unit_test(test_bad_ids),    cmocka_unit_test(test_entry_bound),
        cmocka_unit_test(test_byte_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
