/*  fuzz_parse_sarif.c - libFuzzer target for the "sarif" tool-output parser
    (lib/kz_finding.c, kz_parse_output); the checks are in fuzz_parse.h.

    Seed corpus: tests/fuzz/corpus/parse_sarif/ (real tool output recorded
    by tests/data/tools/record.sh, @ROOT@ replaced by /r/root).
*/
#include <stddef.h>
#include <stdint.h>

#include "fuzz_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return s_fuzz_parse("sarif", data, size);
}
