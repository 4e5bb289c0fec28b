/*  fuzz_testresult_text.c - libFuzzer target for the console-output parsers
    of test results (lib/kz_testresult.c: kz_testresult_parse_lines,
    kz_testresult_parse_summary, kz_testresult_last_line); the checks are in
    fuzz_testresult.h.

    Whatever the output, the parsers must not crash, leak or fail, every
    test must be fit for the wire, a summary's counts must be within 0 ..
    KZ_TESTRESULT_MAX_COUNT and its source one of the documented ones, and
    the last line and the problem line must be clean text.

    Seed corpus: tests/fuzz/corpus/testresult_text/ (real pytest, unittest,
    ctest and c-sample output from tests/data/testresult/record.sh - runs
    that pass, fail and cannot start - TAP and automake lines, summaries
    with huge counts).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_testresult.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_check_count(long v)
{
    if (v < 0 || v > KZ_TESTRESULT_MAX_COUNT)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    if (kz_testresult_parse_lines(text, size, &list) != 0)
        abort();
    s_fuzz_check_cases(&list);
    kz_test_cases_free(&list);

    kz_test_summary_t sum;
    if (kz_testresult_parse_summary(text, size, &sum)) {
        if (!sum.source ||
            (strcmp(sum.source, "ctest") != 0 && strcmp(sum.source, "pytest") != 0 &&
             strcmp(sum.source, "unittest") != 0 && strcmp(sum.source, "summary") != 0))
            abort();
        s_check_count(sum.passed);
        s_check_count(sum.failed);
        s_check_count(sum.errors);
        s_check_count(sum.skipped);
    }

    char last[256];
    kz_testresult_last_line(text, size, last, sizeof last);
    if (strlen(last) >= sizeof last || !s_fuzz_clean(last))
        abort();

    char why[512];
    kz_testresult_problem(text, size, "@ROOT@", why, sizeof why);
    if (strlen(why) >= sizeof why || !s_fuzz_clean(why))
        abort();
    return 0;
}
