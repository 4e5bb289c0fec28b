/*  fuzz_commitmsg.c - libFuzzer target for the commit message builder

    The input is split at NUL bytes into a file name, a rule, a finding's
    message and a subject template: whatever they hold (newlines, control
    characters, invalid UTF-8, "Kaizen-Plan:" lines), the message must
    have a subject of at most 72 characters, no control character but
    its own newlines, every body line a finding line ("- ..."), and
    exactly one trailer line, the last (the subject is a paragraph of its
    own: whatever it reads, git never takes it for a trailer).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kz_commitmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next NUL-terminated part of DATA (a copy), advancing *AT */
static char *s_part(const uint8_t *data, size_t size, size_t *at)
{
    size_t start = *at;
    while (*at < size && data[*at] != 0)
        (*at)++;
    char *s = strndup((const char *)data + start, *at - start);
    if (*at < size)
        (*at)++;
    return s;
}

static void s_check(const char *msg)
{
    size_t chars = 0, trailers = 0;
    const char *line = msg;
    for (const char *p = msg; *p && *p != '\n'; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80;
    if (chars > KZ_COMMIT_SUBJECT_MAX)
        abort();
    for (int n = 0; *line; n++) {
        const char *end = strchr(line, '\n');
        if (!end)
            abort(); /* every line ends with a newline */
        for (const char *p = line; p < end; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
        if (n == 0) {
            /* the subject: a paragraph of its own, never read as a trailer */
        } else if (strncmp(line, "Kaizen-Plan:", 12) == 0) {
            trailers++;
            if (end[1] != '\0')
                abort(); /* the trailer is the last line */
        } else if (end != line && line[0] != '-' && strncmp(line, "Put back", 8) != 0) {
            abort();
        }
        line = end + 1;
    }
    if (trailers != 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t at = 0;
    char *file = s_part(data, size, &at);
    char *rule = s_part(data, size, &at);
    char *text = s_part(data, size, &at);
    char *tmpl = s_part(data, size, &at);
    char why[256];
    if (file && rule && text && tmpl) {
        const char *files[] = {file};
        kz_commit_finding_t f[] = {{file, (int)size, rule, text}, {text, 0, file, rule}};
        kz_commit_info_t info = {
            .plan_id = "PLAN",
            .tool = rule,
            .subject = kz_commit_check_template(tmpl, why, sizeof why) == 0 ? tmpl : NULL,
            .conventional = size % 2 == 0,
            .files = files,
            .nfiles = 1,
            .nfixed = size % 100,
            .findings = f,
            .nfindings = 2,
            .note = text,
        };
        char *msg = kz_commit_message(&info);
        if (msg)
            s_check(msg);
        free(msg);
    }
    free(file);
    free(rule);
    free(text);
    free(tmpl);
    return 0;
}
