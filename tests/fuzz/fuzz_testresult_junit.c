/*  fuzz_testresult_junit.c - libFuzzer target for the JUnit XML parser of
    test results (lib/kz_testresult.c, kz_testresult_parse_junit); the
    checks are in fuzz_testresult.h.

    Whatever the input, the parser must not crash, leak or fail (it is never
    out of memory here), must say why when the input is not a report, must
    leave the list alone then, and every test it returns must be fit for the
    wire (see s_fuzz_check_cases).

    Seed corpus: tests/fuzz/corpus/testresult_junit/ (pytest's real report
    from tests/data/testresult/record.sh, other JUnit shapes, DOCTYPEs with
    external and internal entities, malformed XML).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_testresult.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kz_test_cases_t list;
    kz_test_cases_init(&list);
    char err[256];
    int rc = kz_testresult_parse_junit((const char *)data, size, &list, err, sizeof err);
    if (rc == 0) {
        if (!err[0] || list.count != 0)
            abort();
    } else if (rc == 1) {
        s_fuzz_check_cases(&list);
    } else {
        abort();
    }
    kz_test_cases_free(&list);
    return 0;
}
