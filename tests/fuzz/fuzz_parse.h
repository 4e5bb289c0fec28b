/*  fuzz_parse.h - the checks shared by the tool-output parser fuzz targets
    (fuzz_parse_gcc.c, fuzz_parse_sarif.c, fuzz_parse_pylint.c,
    fuzz_parse_files.c), included by each of them.

    Whatever the input, kz_parse_output must not crash or leak, must
    fail only for the JSON formats (with a reason), and every finding it
    returns must be fit for the wire: a relative path inside the root
    without ".." components, names and texts of valid UTF-8 within the
    PROTOCOL.md limits, so that a finding.batch holding them encodes.
*/
#ifndef FUZZ_PARSE_H_INCLUDED
#define FUZZ_PARSE_H_INCLUDED

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_config.h"
#include "kz_finding.h"
#include "kz_msg.h"

static void s_fuzz_check(const kz_findings_t *list, const kz_parse_stats_t *st)
{
    if (st->parsed != list->count)
        abort();
    for (size_t i = 0; i < list->count; i++) {
        const kz_finding_t *f = &list->items[i];
        if (!f->tool || !*f->tool || !f->rule || !*f->rule || strlen(f->rule) > 255 || !f->file ||
            !*f->file || strlen(f->file) > 4096 || !f->message || strlen(f->message) > 65536 ||
            f->line < 0 || f->col < 0)
            abort();
        if (f->file[0] == '/' || strcmp(f->file, "..") == 0 || strncmp(f->file, "../", 3) == 0 ||
            strstr(f->file, "/../") || strstr(f->file, "//"))
            abort();
        size_t fl = strlen(f->file);
        if (fl >= 3 && strcmp(f->file + fl - 3, "/..") == 0)
            abort();
        if (f->severity && kz_severity_rank(f->severity) < 0)
            abort();
    }
}

static void s_fuzz_encode(kz_findings_t *list)
{
    kz_tool_config_t tool;
    memset(&tool, 0, sizeof tool);
    tool.name = (char *)"t";
    if (kz_findings_classify(list, &tool) != 0)
        abort();
    kz_findings_fingerprint(list, "/nonexistent-kz-fuzz-root");
    kz_findings_sort(list);
    kz_msg_t *msg = kz_msg_new("finding.batch");
    if (!msg || kz_msg_set_src(msg, "fuzz@host#1") != 0)
        abort();
    kz_val_t *body = kz_msg_body(msg);
    kz_map_put_str(msg, body, "scan_id", "01HFUZZ");
    kz_map_put_int(msg, body, "seq", 0);
    kz_val_t *arr = kz_map_put_array(msg, body, "findings");
    /* PROTOCOL.md max_count: at most this many per batch */
    for (size_t i = 0; i < list->count && i < 1000; i++) {
        if (strlen(list->items[i].fingerprint) != KZ_FINGERPRINT_LEN)
            abort();
        if (kz_finding_to_msg(msg, arr, &list->items[i]) != 0)
            abort();
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0) {
        fprintf(stderr, "finding.batch does not encode: %s (%s)\n", kz_msg_strerror(err.code),
                err.text);
        abort();
    }
    free(buf);
    kz_msg_destroy(&msg);
}

/* Parse DATA as FORMAT without and with a list of given files */
static int s_fuzz_parse(const char *format, const uint8_t *data, size_t size)
{
    static const char *const files[] = {"a.py", "src/b.c", "my file.py", "bad.py", NULL};
    kz_parse_ctx_t ctx[2] = {{"t", "/r/root", NULL, 0}, {"t", "/r/root", files, 4}};
    bool json = strcmp(format, "sarif") == 0 || strcmp(format, "pylint-json") == 0;
    for (int k = 0; k < 2; k++) {
        kz_findings_t list;
        kz_findings_init(&list);
        kz_parse_stats_t st;
        char err[256];
        int rc =
            kz_parse_output(format, (const char *)data, size, &ctx[k], &list, &st, err, sizeof err);
        if (rc != 0) {
            if (!json || err[0] == '\0' || list.count != 0)
                abort();
            return 0;
        }
        s_fuzz_check(&list, &st);
        if (k == 1)
            for (size_t i = 0; i < list.count; i++)
                if (strcmp(list.items[i].file, "a.py") != 0 &&
                    strcmp(list.items[i].file, "src/b.c") != 0 &&
                    strcmp(list.items[i].file, "my file.py") != 0 &&
                    strcmp(list.items[i].file, "bad.py") != 0)
                    abort(); /* only the given files */
        s_fuzz_encode(&list);
        kz_findings_free(&list);
    }
    return 0;
}

#endif
