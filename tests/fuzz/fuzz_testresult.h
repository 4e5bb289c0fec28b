/*  fuzz_testresult.h - the checks shared by the test-result parser fuzz
    targets (fuzz_testresult_junit.c, fuzz_testresult_text.c), included by
    each of them.

    Every test a parser returns must be fit for a validate.result: an id of
    1 .. KZ_TESTRESULT_MAX_ID + 3 bytes and a message (when there is one)
    of 1 .. KZ_TESTRESULT_MAX_MESSAGE + 3 bytes, both valid UTF-8 without
    control characters; the list sorted by id without repeats, its counts
    those of its statuses, findable with kz_test_cases_find, and a
    validate.result holding the ids and messages must encode.
*/
#ifndef FUZZ_TESTRESULT_H_INCLUDED
#define FUZZ_TESTRESULT_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_msg.h"
#include "kz_testresult.h"

/* S is valid UTF-8 without control characters */
static bool s_fuzz_clean(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        size_t len = *p < 0x80                  ? 1
                     : *p >= 0xc2 && *p <= 0xdf ? 2
                     : *p >= 0xe0 && *p <= 0xef ? 3
                     : *p >= 0xf0 && *p <= 0xf4 ? 4
                                                : 0;
        if (!len)
            return false;
        for (size_t i = 1; i < len; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += len;
    }
    return true;
}

static void s_fuzz_check_cases(const kz_test_cases_t *list)
{
    long counts[4] = {0, 0, 0, 0};
    if (list->count > KZ_TESTRESULT_MAX_CASES)
        abort();
    for (size_t i = 0; i < list->count; i++) {
        const kz_test_case_t *c = &list->items[i];
        if (!c->id || !*c->id || strlen(c->id) > KZ_TESTRESULT_MAX_ID + 3 || !s_fuzz_clean(c->id))
            abort();
        if (c->message && (!*c->message || strlen(c->message) > KZ_TESTRESULT_MAX_MESSAGE + 3 ||
                           !s_fuzz_clean(c->message)))
            abort();
        if ((unsigned)c->status > KZ_TEST_ERROR)
            abort();
        if (i > 0 && strcmp(list->items[i - 1].id, c->id) >= 0)
            abort();
        if (kz_test_cases_find(list, c->id) != c)
            abort();
        counts[c->status]++;
    }
    if (counts[KZ_TEST_PASS] != list->passed || counts[KZ_TEST_SKIP] != list->skipped ||
        counts[KZ_TEST_FAIL] != list->failed || counts[KZ_TEST_ERROR] != list->errors)
        abort();
    if (list->count == 0)
        return;
    /* the ids and messages encode in a message */
    kz_msg_t *msg = kz_msg_new("validate.result");
    if (!msg || kz_msg_set_src(msg, "fuzz@host#1") != 0)
        abort();
    kz_val_t *body = kz_msg_body(msg);
    if (kz_map_put_str(msg, body, "plan_id", "01HFUZZ") != 0 ||
        kz_map_put_str(msg, body, "validator", "test-runner") != 0 ||
        kz_map_put_str(msg, body, "verdict", "reject") != 0)
        abort();
    kz_val_t *arr = kz_map_put_array(msg, body, "reasons");
    if (!arr)
        abort();
    for (size_t i = 0; i < list->count && i < 25; i++) {
        kz_val_t *v = kz_array_push(msg, arr);
        const kz_test_case_t *c = &list->items[i];
        if (!v || kz_val_set_str(msg, v, c->message ? c->message : c->id) != 0)
            abort();
        v = kz_array_push(msg, arr);
        if (!v || kz_val_set_str(msg, v, c->id) != 0)
            abort();
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0) {
        fprintf(stderr, "validate.result does not encode: %s (%s)\n", kz_msg_strerror(err.code),
                err.text);
        abort();
    }
    free(buf);
    kz_msg_destroy(&msg);
}

#endif
