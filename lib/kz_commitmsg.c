/*  kz_commitmsg.c - the commit message of a plan's fix (kz_commitmsg.h)

    The subject is rendered from a template, shortened until it fits; the
    body lists the findings, each cleaned to one line that starts with
    "- ", so nothing a target's files say can become a line of its own.
*/
#include "kz_commitmsg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BAD      0xFFFFFFFFu /* an invalid UTF-8 byte */
#define S_FILE_CUT 200         /* characters of a file name in the body */
#define S_RULE_CUT 80          /* characters of a rule */
#define S_NOTE_CUT 300         /* characters of the note */
#define S_TYPE_MAX 20          /* characters of a conventional type */
#define S_LINE_MAX ((S_FILE_CUT + S_RULE_CUT + KZ_COMMIT_MESSAGE_CUT) * 4 + 64)

static const char *const s_placeholders[] = {"{n}", "{s}", "{file}", "{tool}", "{rule}", NULL};

/* The code point at P (NUL-terminated) into *CP and its length in bytes
   (1..4); an invalid or overlong sequence is one byte of S_BAD */
static size_t s_utf8_next(const unsigned char *p, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t k;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        v = c & 0x0F;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        v = c & 0x07;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        *cp = S_BAD;
        return 1;
    }
    for (size_t i = 1; i < k; i++) {
        unsigned char b = p[i];
        if ((i == 1 && (b < lo || b > hi)) || (i > 1 && (b & 0xC0) != 0x80)) {
            *cp = S_BAD;
            return 1;
        }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return k;
}

/* Characters (not bytes) of UTF-8 text S */
static size_t s_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool s_is_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029;
}

/* Drop the last character of DST[0..*O) */
static void s_drop_char(char *dst, size_t *o, size_t *chars)
{
    if (*o == 0)
        return;
    do
        (*o)--;
    while (*o > 0 && ((unsigned char)dst[*o] & 0xC0) == 0x80);
    (*chars)--;
}

void kz_commit_clean(char *dst, size_t len, const char *src, size_t max)
{
    if (len == 0)
        return;
    dst[0] = '\0';
    if (!src)
        return;
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0, chars = 0;
    bool space = false, cut = false;
    while (*p) {
        uint32_t cp;
        size_t k = s_utf8_next(p, &cp);
        if (cp == ' ' || cp == 0xA0 || s_is_control(cp)) {
            space = o > 0; /* leading blanks go, inner runs become one space */
            p += k;
            continue;
        }
        const char *bytes = cp == S_BAD ? "?" : (const char *)p;
        size_t nb = cp == S_BAD ? 1 : k;
        size_t gap = space ? 1 : 0;
        if (chars + gap + 1 > max || o + gap + nb >= len) {
            cut = true;
            break;
        }
        if (space)
            dst[o++] = ' ', chars++, space = false;
        memcpy(dst + o, bytes, nb);
        o += nb;
        chars++;
        p += k;
    }
    if (cut) {
        /* room for "..." within both limits */
        while (o > 0 && (chars + 3 > max || o + 3 >= len))
            s_drop_char(dst, &o, &chars);
        while (o > 0 && dst[o - 1] == ' ')
            o--, chars--;
        if (o + 3 < len && chars + 3 <= max) {
            memcpy(dst + o, "...", 3);
            o += 3;
        }
    }
    dst[o] = '\0';
}

/* ------------------------------------------------------- conventional */

bool kz_commit_is_conventional(const char *subject)
{
    const char *p = subject;
    if (!p || !(*p >= 'a' && *p <= 'z'))
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')
        p++;
    if (*p == '(') {
        const char *close = strchr(p, ')');
        if (!close || close == p + 1 || strcspn(p + 1, "()\r\n") != (size_t)(close - p - 1))
            return false;
        p = close + 1;
    }
    if (*p == '!')
        p++;
    return p[0] == ':' && p[1] == ' ' && p[2] && p[2] != ' ';
}

bool kz_commit_mostly_conventional(const char *const *subjects, size_t n)
{
    size_t counted = 0, conventional = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = subjects[i];
        if (!s || strncmp(s, "Merge ", 6) == 0 || strncmp(s, "Revert \"", 8) == 0)
            continue;
        counted++;
        conventional += kz_commit_is_conventional(s);
    }
    return counted > 0 && conventional * 2 > counted;
}

int kz_commit_check_template(const char *tmpl, char *why, size_t len)
{
    size_t n = strlen(tmpl);
    if (n == 0 || n > KZ_COMMIT_TEMPLATE_MAX) {
        snprintf(why, len, "a subject template has 1 to %d characters", KZ_COMMIT_TEMPLATE_MAX);
        return -1;
    }
    for (const char *p = tmpl; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            snprintf(why, len, "a subject template is one line of printable text");
            return -1;
        }
        if (*p != '{')
            continue;
        bool known = false;
        for (size_t i = 0; s_placeholders[i] && !known; i++)
            known = strncmp(p, s_placeholders[i], strlen(s_placeholders[i])) == 0;
        if (!known) {
            snprintf(why, len,
                     "unknown placeholder in '%.60s': use {n}, {s}, {file}, {tool} and {rule}",
                     tmpl);
            return -1;
        }
    }
    return 0;
}

int kz_commit_check_type(const char *type, char *why, size_t len)
{
    size_t n = strlen(type);
    bool ok = n > 0 && n <= S_TYPE_MAX && strspn(type, "abcdefghijklmnopqrstuvwxyz") == n;
    if (!ok)
        snprintf(why, len,
                 "a commit type is 1 to %d lowercase letters ('style', 'fix'), not '%.60s'",
                 S_TYPE_MAX, type);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ subject */

/* {rule}: the rule every listed finding shares, else "various rules" */
static const char *s_shared_rule(const kz_commit_info_t *info)
{
    const char *rule = NULL;
    for (size_t i = 0; i < info->nfindings; i++) {
        const char *r = info->findings[i].rule;
        if (!r || !*r || (rule && strcmp(rule, r) != 0))
            return "various rules";
        rule = r;
    }
    return rule ? rule : "various rules";
}

/* TMPL with its placeholders replaced into BUF */
static void s_render(const char *tmpl, const char *const *values, char *buf, size_t len)
{
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < len;) {
        size_t i = 0;
        while (s_placeholders[i] && strncmp(p, s_placeholders[i], strlen(s_placeholders[i])) != 0)
            i++;
        if (!s_placeholders[i]) {
            buf[o++] = *p++;
            continue;
        }
        int w = snprintf(buf + o, len - o, "%s", values[i]);
        o = w >= 0 && (size_t)w < len - o ? o + (size_t)w : len - 1;
        p += strlen(s_placeholders[i]);
    }
    buf[o] = '\0';
}

/* The subject with {file} = FILE into BUF */
static void s_subject_with(const kz_commit_info_t *info, const char *file, char *buf, size_t len)
{
    char n[32], raw[1024], clean[1024];
    size_t count = info->nfixed ? info->nfixed : info->nfindings;
    snprintf(n, sizeof n, "%zu", count);
    const char *values[] = {n, count == 1 ? "" : "s", file, info->tool ? info->tool : "",
                            s_shared_rule(info)};
    /* without findings to count, the default says what ran */
    const char *tmpl = info->subject && *info->subject ? info->subject
                       : count == 0                    ? "Apply {tool} to {file}"
                                                       : KZ_COMMIT_DEFAULT_TEMPLATE;
    s_render(tmpl, values, raw, sizeof raw);
    kz_commit_clean(clean, sizeof clean, raw, 300);
    if (!clean[0])
        snprintf(clean, sizeof clean, "Apply %s", info->tool ? info->tool : "a fixer");
    if (info->conventional) {
        if (clean[0] >= 'A' && clean[0] <= 'Z' && !(clean[1] >= 'A' && clean[1] <= 'Z'))
            clean[0] = (char)(clean[0] - 'A' + 'a'); /* "Fix" -> "fix", "README" stays */
        const char *type = info->commit_type && *info->commit_type ? info->commit_type : "style";
        snprintf(buf, len, "%s: %s", type, clean);
    } else {
        if (clean[0] >= 'a' && clean[0] <= 'z')
            clean[0] = (char)(clean[0] - 'a' + 'A');
        snprintf(buf, len, "%s", clean);
    }
}

void kz_commit_subject(const kz_commit_info_t *info, char *buf, size_t len)
{
    char files[64], full[1024];
    snprintf(files, sizeof files, "%zu file%s", info->nfiles, info->nfiles == 1 ? "" : "s");
    const char *file = info->nfiles == 1 && info->files[0] ? info->files[0] : files;
    const char *slash = strrchr(file, '/');
    const char *tries[] = {file, slash && slash[1] ? slash + 1 : file, files};
    for (size_t i = 0; i < 3; i++) {
        s_subject_with(info, tries[i], full, sizeof full);
        if (s_chars(full) <= KZ_COMMIT_SUBJECT_MAX)
            break;
    }
    kz_commit_clean(buf, len, full, KZ_COMMIT_SUBJECT_MAX);
}

/* --------------------------------------------------------------- body */

/* "- file:line rule: message" of F into BUF */
static void s_finding_line(const kz_commit_finding_t *f, char *buf, size_t len)
{
    char file[S_FILE_CUT * 4 + 4], rule[S_RULE_CUT * 4 + 4], msg[KZ_COMMIT_MESSAGE_CUT * 4 + 4];
    kz_commit_clean(file, sizeof file, f->file, S_FILE_CUT);
    kz_commit_clean(rule, sizeof rule, f->rule, S_RULE_CUT);
    kz_commit_clean(msg, sizeof msg, f->message, KZ_COMMIT_MESSAGE_CUT);
    char at[32] = "";
    if (f->line > 0)
        snprintf(at, sizeof at, ":%d", f->line);
    snprintf(buf, len, "- %s%s%s%s%s%s", file[0] ? file : "?", at, rule[0] ? " " : "", rule,
             msg[0] ? ": " : "", msg);
}

char *kz_commit_message(const kz_commit_info_t *info)
{
    size_t listed = info->nfindings < KZ_COMMIT_LISTED_MAX ? info->nfindings : KZ_COMMIT_LISTED_MAX;
    size_t len = 1024 + (listed + 2) * (S_LINE_MAX + 1) + S_NOTE_CUT * 4 + 256;
    char *msg = malloc(len);
    if (!msg)
        return NULL;
    char line[S_LINE_MAX], id[256];
    kz_commit_subject(info, line, sizeof line);
    size_t o = (size_t)snprintf(msg, len, "%s\n", line);
    bool body = false;
    for (size_t i = 0; i < listed; i++) {
        s_finding_line(&info->findings[i], line, sizeof line);
        o += (size_t)snprintf(msg + o, len - o, "%s%s\n", body ? "" : "\n", line);
        body = true;
    }
    size_t total = info->nfixed > info->nfindings ? info->nfixed : info->nfindings;
    if (listed > 0 && total > listed) {
        o += (size_t)snprintf(msg + o, len - o, "%s- and %zu more\n", body ? "" : "\n",
                              total - listed);
        body = true;
    }
    if (info->note && *info->note) {
        char note[S_NOTE_CUT * 4 + 4];
        kz_commit_clean(note, sizeof note, info->note, S_NOTE_CUT);
        o += (size_t)snprintf(msg + o, len - o, "\nPut back, outside the plan's files: %s\n", note);
    }
    kz_commit_clean(id, sizeof id, info->plan_id, 128);
    snprintf(msg + o, len - o, "\nKaizen-Plan: %s\n", id[0] ? id : "unknown");
    return msg;
}
