/*  util.c - helpers every `kaizen` command shares: usage and error
    lines, option errors, number parsing, human sizes and JSON strings
*/
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kz_config_check.h"

int kz_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kaizen%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nsee 'kaizen%s%s --help'\n", cmd ? " " : "", cmd ? cmd : "");
    return KZ_EXIT_USAGE;
}

int kz_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kaizen%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return KZ_EXIT_FAILURE;
}

int kz_cli_config_check(const kz_config_t *cfg, const char *cmd)
{
    kz_config_problems_t problems;
    char err[256];
    if (kz_config_check(cfg, NULL, &problems, err, sizeof err) != 0)
        return kz_cli_error(cmd, "%s", err);
    if (problems.count == 0)
        return KZ_EXIT_OK;
    for (size_t i = 0; i < problems.count; i++)
        kz_cli_error(cmd, "%s", problems.lines[i]);
    kz_cli_error(cmd, "%zu problem%s in the config: nothing started", problems.count,
                 problems.count == 1 ? "" : "s");
    kz_config_problems_clear(&problems);
    return KZ_EXIT_FAILURE;
}

int kz_cli_bad_option(const char *cmd, int rc, char **argv)
{
    /* getopt_long leaves the offending word just before optind; a long
       option is named by that word (up to any '='), a short one by optopt */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    bool is_long = strncmp(word, "--", 2) == 0;
    int wlen = (int)strcspn(word, "=");
    if (rc == ':') {
        if (is_long)
            return kz_cli_usage(cmd, "option '%.*s' needs a value", wlen, word);
        return kz_cli_usage(cmd, "option '-%c' needs a value", optopt);
    }
    if (is_long || !optopt)
        return kz_cli_usage(cmd, "unknown option '%.*s'", wlen, word);
    return kz_cli_usage(cmd, "unknown option '-%c'", optopt);
}

int kz_cli_parse_count(const char *text, long *value)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || !end || *end)
        return -1;
    *value = v;
    return 0;
}

void kz_cli_human_bytes(double bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (bytes >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f B", bytes);
    else
        snprintf(buf, len, "%.1f %s", bytes, units[u]);
}

size_t kz_cli_utf8_seq(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t need;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* overlong forms, surrogates and values past U+10FFFF */
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

void kz_cli_json_str(FILE *out, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    fputc('"', out);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            i++;
        } else if (c == '\n') {
            fputs("\\n", out);
            i++;
        } else if (c == '\r') {
            fputs("\\r", out);
            i++;
        } else if (c == '\t') {
            fputs("\\t", out);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, out);
            i++;
        } else {
            size_t n = kz_cli_utf8_seq(p + i, len - i);
            if (n == 0) {
                fputs("\\ufffd", out);
                i++;
            } else {
                fwrite(p + i, 1, n, out);
                i += n;
            }
        }
    }
    fputc('"', out);
}
