/*  fuzz_config.c - libFuzzer target for the kaizen.yaml parser

    Any input must either load or fail with a message in the
    "FILE:LINE:COL: ..." shape, never crash or leak.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kz_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    kz_config_t *cfg = kz_config_parse("fuzz.yaml", (const char *)data, size, err, sizeof err);
    if (cfg) {
        /* touch what a consumer would read */
        for (size_t i = 0; i < cfg->agents_count; i++)
            if (!cfg->agents[i].name)
                abort();
        for (size_t i = 0; i < cfg->targets_count; i++)
            if (!cfg->targets[i].name || !cfg->targets[i].path || cfg->targets[i].path[0] != '/')
                abort();
        kz_config_destroy(&cfg);
    } else if (strncmp(err, "fuzz.yaml:", 10) != 0)
        abort();
    return 0;
}
