/*  fuzz_testsuite_imports.c - libFuzzer target for the reader of the
    imports file the Python hook of a test run writes (lib/kz_testsuite.c,
    kz_testsuite_parse_imports). The file is written by the target's code:
    whatever it holds, the reader must not crash or leak, and an import it
    returns must have a Python identifier for a name, a non-empty origin
    that is valid UTF-8 without control characters and fits its buffer,
    and ".", "src" or "lib" for a directory; with nothing found the run is
    left untouched.

    Seed corpus: tests/fuzz/corpus/testsuite_imports/ (lines the hook
    writes, and broken ones).
*/
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_testresult.h"
#include "kz_testsuite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kz_testsuite_run_t run;
    kz_testsuite_run_init(&run);
    if (!kz_testsuite_parse_imports((const char *)data, size, &run)) {
        if (run.foreign_module[0] || run.foreign_origin[0] || run.foreign_dir[0])
            abort();
        return 0;
    }
    const char *m = run.foreign_module;
    size_t n = strlen(m);
    if (n == 0 || n >= sizeof run.foreign_module || isdigit((unsigned char)m[0]))
        abort();
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)m[i]) && m[i] != '_')
            abort();
    if (!run.foreign_origin[0] || strlen(run.foreign_origin) >= sizeof run.foreign_origin ||
        !s_fuzz_clean(run.foreign_origin))
        abort();
    if (strcmp(run.foreign_dir, ".") != 0 && strcmp(run.foreign_dir, "src") != 0 &&
        strcmp(run.foreign_dir, "lib") != 0)
        abort();
    return 0;
}
