/*  kz_finding.c - normalised findings, fingerprints and tool-output parsers

    See kz_finding.h for the contracts. Every parser works on a buffer of
    LEN bytes that need not be NUL-terminated, never trusts the tool's
    output (caps on line length, path length, message length and the
    number of findings) and never fails on garbage: a line it does not
    understand is counted as skipped.

    Fingerprints follow PROTOCOL.md section 6 (first 16 bytes of SHA-256
    over tool NUL rule NUL file NUL normalised_line) with one addition for
    repeated problems: the second, third ... finding with the same tool,
    rule, file and normalised line (in file order) gets NUL and its ordinal
    ("1", "2" ...) appended to the hashed text, so two identical lines get
    distinct fingerprints while the first one keeps the plain hash.
*/
#include "kz_finding.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kz_log.h"

/* caps on what one tool run may produce */
#define KZ_PARSE_MAX_FINDINGS 1000000
#define KZ_PARSE_MAX_MESSAGE  4096        /* bytes kept of a message */
#define KZ_PARSE_MAX_PATH     4096        /* PROTOCOL.md: path = 1..4096 */
#define KZ_PARSE_MAX_NAME     255         /* PROTOCOL.md: name = 1..255 */
#define KZ_SRC_MAX_BYTES      (64u << 20) /* source files read for fingerprints */
#define KZ_JSON_MAX_DEPTH     64

/* ------------------------------------------------------------ strings */

static char *s_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool s_streq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Length of the valid UTF-8 sequence at S (at most LEN bytes), 0 when
   invalid (overlong, surrogate, above U+10FFFF): the rules of kz_msg,
   whose encoder refuses a string that breaks them */
static size_t s_utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2)
        return 0;
    if (c < 0xe0)
        return len >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if (len < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
            return 0;
        return 3;
    }
    if (c < 0xf5) {
        if (len < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

static bool s_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        size_t n = s_utf8_seq(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Copy TEXT (N bytes) into a new string fit for a message: trimmed,
   tabs and line breaks become spaces, other control characters are
   dropped, invalid UTF-8 becomes U+FFFD, at most MAX bytes (whole
   characters). */
static char *s_clean(const char *text, size_t n, size_t max)
{
    while (n > 0 && isspace((unsigned char)*text)) {
        text++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)text[n - 1]))
        n--;
    size_t cap = n < max / 3 ? n * 3 : max; /* U+FFFD takes 3 bytes for 1 */
    char *d = malloc(cap + 4);
    if (!d)
        return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        size_t k = s_utf8_seq(s + i, n - i);
        if (k == 0) {
            if (j + 3 > cap)
                break;
            memcpy(d + j, "\xef\xbf\xbd", 3);
            j += 3;
            i++;
            continue;
        }
        if (j + k > cap)
            break;
        if (k > 1) {
            memcpy(d + j, s + i, k);
            j += k;
        } else if (s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
            d[j++] = ' ';
        } else if (s[i] >= 0x20 && s[i] != 0x7f) {
            d[j++] = (char)s[i];
        }
        i += k;
    }
    while (j > 0 && d[j - 1] == ' ')
        j--;
    d[j] = '\0';
    return d;
}

/* ------------------------------------------------------------ lists */

void kz_findings_init(kz_findings_t *list)
{
    list->items = NULL;
    list->count = 0;
    list->cap = 0;
}

void kz_finding_clear(kz_finding_t *f)
{
    if (!f)
        return;
    free(f->tool);
    free(f->rule);
    free(f->severity);
    free(f->category);
    free(f->file);
    free(f->message);
    free(f->fix);
    free(f->excluded);
    memset(f, 0, sizeof *f);
}

void kz_findings_free(kz_findings_t *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        kz_finding_clear(&list->items[i]);
    free(list->items);
    kz_findings_init(list);
}

static int s_reserve(kz_findings_t *list, size_t more)
{
    if (list->count + more <= list->cap)
        return 0;
    size_t cap = list->cap ? list->cap : 16;
    while (cap < list->count + more)
        cap *= 2;
    kz_finding_t *items = realloc(list->items, cap * sizeof *items);
    if (!items)
        return -1;
    list->items = items;
    list->cap = cap;
    return 0;
}

/* Append F, taking ownership of its strings (F is zeroed) */
static int s_take(kz_findings_t *list, kz_finding_t *f)
{
    if (s_reserve(list, 1) < 0) {
        kz_finding_clear(f);
        return -1;
    }
    list->items[list->count++] = *f;
    memset(f, 0, sizeof *f);
    return 0;
}

int kz_findings_add(kz_findings_t *list, const kz_finding_t *f)
{
    kz_finding_t c = {0};
    c.tool = s_strdup0(f->tool);
    c.rule = s_strdup0(f->rule);
    c.severity = s_strdup0(f->severity);
    c.category = s_strdup0(f->category);
    c.file = s_strdup0(f->file);
    c.message = s_strdup0(f->message);
    c.fix = s_strdup0(f->fix);
    c.excluded = s_strdup0(f->excluded);
    c.line = f->line;
    c.col = f->col;
    memcpy(c.fingerprint, f->fingerprint, sizeof c.fingerprint);
    c.fingerprint[KZ_FINGERPRINT_LEN] = '\0';
    if ((f->tool && !c.tool) || (f->rule && !c.rule) || (f->severity && !c.severity) ||
        (f->category && !c.category) || (f->file && !c.file) || (f->message && !c.message) ||
        (f->fix && !c.fix) || (f->excluded && !c.excluded)) {
        kz_finding_clear(&c);
        return -1;
    }
    return s_take(list, &c);
}

int kz_findings_move(kz_findings_t *dst, kz_findings_t *src)
{
    if (src->count == 0)
        return 0;
    if (dst->count == 0 && dst->items == NULL) {
        *dst = *src;
        kz_findings_init(src);
        return 0;
    }
    if (s_reserve(dst, src->count) < 0)
        return -1;
    memcpy(dst->items + dst->count, src->items, src->count * sizeof *src->items);
    dst->count += src->count;
    free(src->items);
    kz_findings_init(src);
    return 0;
}

static int s_strcmp0(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int s_cmp_finding(const kz_finding_t *a, const kz_finding_t *b)
{
    int c = s_strcmp0(a->file, b->file);
    if (c)
        return c;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    if ((c = s_strcmp0(a->tool, b->tool)) != 0)
        return c;
    if ((c = s_strcmp0(a->rule, b->rule)) != 0)
        return c;
    if ((c = s_strcmp0(a->message, b->message)) != 0)
        return c;
    return strcmp(a->fingerprint, b->fingerprint);
}

/* a stable merge sort (qsort is not stable; equal findings keep their order) */
static void s_merge_sort(kz_finding_t *a, kz_finding_t *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    s_merge_sort(a, tmp, h);
    s_merge_sort(a + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = s_cmp_finding(&a[j], &a[i]) < 0 ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

void kz_findings_sort(kz_findings_t *list)
{
    if (!list || list->count < 2)
        return;
    kz_finding_t *tmp = malloc(list->count * sizeof *tmp);
    if (!tmp) {
        /* out of memory: an insertion sort needs none (still stable) */
        for (size_t i = 1; i < list->count; i++) {
            kz_finding_t x = list->items[i];
            size_t j = i;
            while (j > 0 && s_cmp_finding(&x, &list->items[j - 1]) < 0) {
                list->items[j] = list->items[j - 1];
                j--;
            }
            list->items[j] = x;
        }
        return;
    }
    s_merge_sort(list->items, tmp, list->count);
    free(tmp);
}

/* ------------------------------------------------------------ SHA-256 */

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t used;
} s_sha256_t;

static const uint32_t s_k256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define S_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void s_sha256_init(s_sha256_t *c)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->used = 0;
}

static void s_sha256_block(s_sha256_t *c, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = S_ROR(w[i - 15], 7) ^ S_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = S_ROR(w[i - 2], 17) ^ S_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
    uint32_t e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = S_ROR(e, 6) ^ S_ROR(e, 11) ^ S_ROR(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + ch + s_k256[i] + w[i];
        uint32_t s0 = S_ROR(a, 2) ^ S_ROR(a, 13) ^ S_ROR(a, 22);
        uint32_t maj = (a & b) ^ (a & cc) ^ (b & cc);
        uint32_t t2 = s0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + t2;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
    c->h[5] += f;
    c->h[6] += g;
    c->h[7] += h;
}

static void s_sha256_update(s_sha256_t *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    c->len += n;
    while (n > 0) {
        size_t take = 64 - c->used;
        if (take > n)
            take = n;
        memcpy(c->buf + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used == 64) {
            s_sha256_block(c, c->buf);
            c->used = 0;
        }
    }
}

static void s_sha256_final(s_sha256_t *c, uint8_t out[32])
{
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80;
    s_sha256_update(c, &pad, 1);
    pad = 0;
    while (c->used != 56)
        s_sha256_update(c, &pad, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    s_sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

/* ------------------------------------------------------------ fingerprints */

static bool s_ws(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Normalise TEXT[0..N) (PROTOCOL.md 6): runs of whitespace become one
   space, leading and trailing whitespace removed. malloc'd. */
static char *s_normalise(const char *text, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    size_t j = 0;
    bool pending = false;
    for (size_t i = 0; i < n; i++) {
        if (s_ws((unsigned char)text[i])) {
            pending = j > 0;
            continue;
        }
        if (pending)
            d[j++] = ' ';
        pending = false;
        d[j++] = text[i];
    }
    d[j] = '\0';
    return d;
}

/* One source file's lines, for the findings of one file */
typedef struct {
    char *data;
    size_t len;
    size_t *starts; /* starts[i]: offset of line i+1 */
    size_t nlines;
} s_source_t;

static void s_source_free(s_source_t *src)
{
    free(src->data);
    free(src->starts);
    memset(src, 0, sizeof *src);
}

/* Read ROOT/FILE into SRC; on any failure SRC stays empty (no lines) */
static void s_source_load(s_source_t *src, const char *root, const char *file)
{
    memset(src, 0, sizeof *src);
    if (!file || !*file)
        return;
    char path[PATH_MAX];
    int n = (file[0] == '/' || !root || !*root) ? snprintf(path, sizeof path, "%s", file)
                                                : snprintf(path, sizeof path, "%s/%s", root, file);
    if (n < 0 || (size_t)n >= sizeof path)
        return;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size > KZ_SRC_MAX_BYTES) {
        fclose(fp);
        return;
    }
    size_t size = (size_t)st.st_size;
    src->data = malloc(size + 1);
    if (!src->data) {
        fclose(fp);
        return;
    }
    src->len = fread(src->data, 1, size, fp);
    src->data[src->len] = '\0';
    fclose(fp);
    size_t lines = 1;
    for (size_t i = 0; i < src->len; i++)
        if (src->data[i] == '\n')
            lines++;
    src->starts = malloc(lines * sizeof *src->starts);
    if (!src->starts) {
        s_source_free(src);
        return;
    }
    src->starts[0] = 0;
    src->nlines = 1;
    for (size_t i = 0; i < src->len; i++)
        if (src->data[i] == '\n')
            src->starts[src->nlines++] = i + 1;
}

/* The normalised text a finding's fingerprint covers: its source line,
   or its message when the line is 0 or cannot be read */
static char *s_finding_text(const kz_finding_t *f, const s_source_t *src)
{
    if (f->line > 0 && (size_t)f->line <= src->nlines && src->data) {
        size_t start = src->starts[f->line - 1];
        size_t end = (size_t)f->line < src->nlines ? src->starts[f->line] : src->len;
        /* a line past the end of a file ending with a newline does not exist */
        if (!((size_t)f->line == src->nlines && start == src->len && f->line > 1))
            return s_normalise(src->data + start, end - start);
    }
    const char *m = f->message ? f->message : "";
    return s_normalise(m, strlen(m));
}

typedef struct {
    size_t index;
    uint8_t base[32]; /* SHA-256 of tool, rule, file, normalised text */
    s_sha256_t ctx;   /* state after hashing them, to append an ordinal */
} s_fpwork_t;

static int s_fpwork_cmp(const void *pa, const void *pb, const kz_findings_t *list)
{
    const s_fpwork_t *a = pa, *b = pb;
    int c = memcmp(a->base, b->base, sizeof a->base);
    if (c)
        return c;
    const kz_finding_t *fa = &list->items[a->index], *fb = &list->items[b->index];
    if (fa->line != fb->line)
        return fa->line < fb->line ? -1 : 1;
    if (fa->col != fb->col)
        return fa->col < fb->col ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

static void s_fpwork_sort(s_fpwork_t *a, s_fpwork_t *tmp, size_t n, const kz_findings_t *list)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    s_fpwork_sort(a, tmp, h, list);
    s_fpwork_sort(a + h, tmp, n - h, list);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = s_fpwork_cmp(&a[j], &a[i], list) < 0 ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

/* Sort WORK by the file of its finding (stable) */
static void s_fpwork_sort_file(s_fpwork_t *a, s_fpwork_t *tmp, size_t n, const kz_findings_t *list)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    s_fpwork_sort_file(a, tmp, h, list);
    s_fpwork_sort_file(a + h, tmp, n - h, list);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = s_strcmp0(list->items[a[j].index].file, list->items[a[i].index].file) < 0
                       ? a[j++]
                       : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static void s_hex(const uint8_t *digest, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < KZ_FINGERPRINT_LEN / 2; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[KZ_FINGERPRINT_LEN] = '\0';
}

static void s_fp_base(s_fpwork_t *w, const kz_finding_t *f, const char *text)
{
    static const uint8_t nul = 0;
    s_sha256_init(&w->ctx);
    const char *parts[3] = {f->tool, f->rule, f->file};
    for (int i = 0; i < 3; i++) {
        const char *p = parts[i] ? parts[i] : "";
        s_sha256_update(&w->ctx, p, strlen(p));
        s_sha256_update(&w->ctx, &nul, 1);
    }
    s_sha256_update(&w->ctx, text, strlen(text));
    s_sha256_t copy = w->ctx;
    s_sha256_final(&copy, w->base);
}

void kz_findings_fingerprint(kz_findings_t *list, const char *root)
{
    if (!list || list->count == 0)
        return;
    s_fpwork_t *work = calloc(list->count, sizeof *work);
    s_fpwork_t *tmp = calloc(list->count, sizeof *tmp);
    if (!work || !tmp) {
        /* out of memory: fingerprints without ordinals, from the message */
        for (size_t i = 0; i < list->count; i++) {
            s_fpwork_t w;
            const char *m = list->items[i].message ? list->items[i].message : "";
            s_fp_base(&w, &list->items[i], m);
            s_hex(w.base, list->items[i].fingerprint);
        }
        free(work);
        free(tmp);
        return;
    }
    /* each file is read once, for all its findings: visit them grouped
       by file (an index sorted by file name) */
    for (size_t i = 0; i < list->count; i++)
        work[i].index = i;
    s_fpwork_sort_file(work, tmp, list->count, list);
    for (size_t i = 0; i < list->count;) {
        const char *file = list->items[work[i].index].file;
        size_t end = i + 1;
        while (end < list->count && s_streq(list->items[work[end].index].file, file))
            end++;
        s_source_t src;
        s_source_load(&src, root, file);
        for (size_t k = i; k < end; k++) {
            const kz_finding_t *f = &list->items[work[k].index];
            char *text = s_finding_text(f, &src);
            s_fp_base(&work[k], f, text ? text : "");
            free(text);
        }
        s_source_free(&src);
        i = end;
    }
    /* equal bases in file order: the k-th (k > 0) gets "\0k" appended */
    s_fpwork_sort(work, tmp, list->count, list);
    size_t ordinal = 0;
    for (size_t i = 0; i < list->count; i++) {
        ordinal = (i > 0 && memcmp(work[i].base, work[i - 1].base, 32) == 0) ? ordinal + 1 : 0;
        uint8_t digest[32];
        if (ordinal == 0) {
            memcpy(digest, work[i].base, sizeof digest);
        } else {
            char num[32];
            int n = snprintf(num, sizeof num, "%c%zu", '\0', ordinal);
            s_sha256_update(&work[i].ctx, num, (size_t)n);
            s_sha256_final(&work[i].ctx, digest);
        }
        s_hex(digest, list->items[work[i].index].fingerprint);
    }
    free(work);
    free(tmp);
}

/* ------------------------------------------------------------ classify */

int kz_findings_classify(kz_findings_t *list, const kz_tool_config_t *tool)
{
    if (!list || !tool)
        return 0;
    const char *dsev = tool->severity ? tool->severity : "low";
    const char *dcat = tool->category ? tool->category : "style";
    for (size_t i = 0; i < list->count; i++) {
        kz_finding_t *f = &list->items[i];
        const kz_rule_config_t *rule = NULL;
        for (size_t r = 0; r < tool->rules_count && f->rule; r++) {
            if (tool->rules[r].match && fnmatch(tool->rules[r].match, f->rule, 0) == 0) {
                rule = &tool->rules[r];
                break;
            }
        }
        const char *sev = rule && rule->severity ? rule->severity : NULL;
        const char *cat = rule && rule->category ? rule->category : NULL;
        if (sev || !f->severity) {
            char *s = strdup(sev ? sev : dsev);
            if (!s)
                return -1;
            free(f->severity);
            f->severity = s;
        }
        if (cat || !f->category) {
            char *c = strdup(cat ? cat : dcat);
            if (!c)
                return -1;
            free(f->category);
            f->category = c;
        }
    }
    /* then what the recipe leaves out: ignored rules, lower severities */
    int min = tool->min_severity ? kz_severity_rank(tool->min_severity) : -1;
    size_t n = 0;
    for (size_t i = 0; i < list->count; i++) {
        kz_finding_t *f = &list->items[i];
        bool drop = kz_severity_rank(f->severity) < min;
        for (size_t r = 0; !drop && r < tool->ignore_count && f->rule; r++)
            drop = fnmatch(tool->ignore[r], f->rule, 0) == 0;
        if (drop)
            kz_finding_clear(f);
        else
            list->items[n++] = *f;
    }
    list->count = n;
    return 0;
}

/* ------------------------------------------------------------ messages */

int kz_finding_to_msg(kz_msg_t *msg, kz_val_t *arr, const kz_finding_t *f)
{
    kz_val_t *m = kz_array_push(msg, arr);
    if (!m)
        return -1;
    kz_val_set_map(m);
    if (kz_map_put_str(msg, m, "tool", f->tool ? f->tool : "") < 0 ||
        kz_map_put_str(msg, m, "rule", f->rule ? f->rule : "") < 0 ||
        kz_map_put_str(msg, m, "severity", f->severity ? f->severity : "low") < 0 ||
        kz_map_put_str(msg, m, "category", f->category ? f->category : "style") < 0 ||
        kz_map_put_str(msg, m, "file", f->file ? f->file : "") < 0 ||
        kz_map_put_int(msg, m, "line", f->line > 0 ? f->line : 0) < 0 ||
        kz_map_put_str(msg, m, "message", f->message ? f->message : "") < 0 ||
        kz_map_put_str(msg, m, "fingerprint", f->fingerprint) < 0)
        return -1;
    if (f->col > 0 && kz_map_put_int(msg, m, "col", f->col) < 0)
        return -1;
    if (f->fix && kz_map_put_str(msg, m, "fix", f->fix) < 0)
        return -1;
    if (f->excluded && kz_map_put_str(msg, m, "excluded", f->excluded) < 0)
        return -1;
    return 0;
}

int kz_finding_from_msg(const kz_val_t *val, kz_finding_t *f)
{
    memset(f, 0, sizeof *f);
    if (!val || val->type != KZ_VAL_MAP)
        return -1;
    const char *tool = kz_map_str(val, "tool");
    const char *rule = kz_map_str(val, "rule");
    const char *sev = kz_map_str(val, "severity");
    const char *cat = kz_map_str(val, "category");
    const char *file = kz_map_str(val, "file");
    const char *message = kz_map_str(val, "message");
    const char *fp = kz_map_str(val, "fingerprint");
    const char *fix = kz_map_str(val, "fix");
    const char *excluded = kz_map_str(val, "excluded");
    const kz_val_t *line = kz_map_get(val, "line");
    if (!tool || !rule || !sev || !cat || !file || !message || !fp || !line ||
        line->type != KZ_VAL_INT || line->u.i < 0 || line->u.i > INT_MAX)
        return -1;
    int64_t col = kz_map_int(val, "col", 0);
    f->tool = strdup(tool);
    f->rule = strdup(rule);
    f->severity = strdup(sev);
    f->category = strdup(cat);
    f->file = strdup(file);
    f->message = strdup(message);
    f->fix = fix ? strdup(fix) : NULL;
    f->excluded = excluded ? strdup(excluded) : NULL;
    f->line = (int)line->u.i;
    f->col = col > 0 && col <= INT_MAX ? (int)col : 0;
    snprintf(f->fingerprint, sizeof f->fingerprint, "%s", fp);
    if (!f->tool || !f->rule || !f->severity || !f->category || !f->file || !f->message ||
        (fix && !f->fix) || (excluded && !f->excluded)) {
        kz_finding_clear(f);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ helpers */

const char *kz_language_of(const char *path)
{
    static const struct {
        const char *ext;
        const char *lang;
    } map[] = {
        {"py", "python"},      {"pyi", "python"},     {"c", "c"},           {"h", "c"},
        {"cc", "cpp"},         {"cpp", "cpp"},        {"cxx", "cpp"},       {"hpp", "cpp"},
        {"hh", "cpp"},         {"sh", "shell"},       {"bash", "shell"},    {"js", "javascript"},
        {"mjs", "javascript"}, {"cjs", "javascript"}, {"ts", "typescript"}, {"md", "markdown"},
        {"rst", "rst"},        {"yaml", "yaml"},      {"yml", "yaml"}};
    if (!path)
        return "text";
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base)
        return "text";
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(dot + 1, map[i].ext) == 0)
            return map[i].lang;
    return "text";
}

int kz_severity_rank(const char *severity)
{
    static const char *const names[] = {"info", "low", "medium", "high", "critical"};
    if (!severity)
        return -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(severity, names[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------ paths */

/* Normalise PATH (N bytes, as a tool printed it) to a path relative to
   ROOT (whose real path is ROOTREAL, or NULL) in OUT. Returns 0 (OUT
   set), 1 (outside ROOT) or -1 (not a path: empty, too long, control
   characters, invalid UTF-8). */
static int s_relpath(const char *root, const char *rootreal, const char *path, size_t n, char *out,
                     size_t outlen)
{
    if (n == 0 || n >= KZ_PARSE_MAX_PATH || outlen < 2)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            return -1;
    if (!s_utf8_valid(path, n))
        return -1; /* a message cannot carry it */
    char buf[KZ_PARSE_MAX_PATH];
    memcpy(buf, path, n);
    buf[n] = '\0';
    const char *rest = buf;
    if (buf[0] == '/') {
        /* absolute: must be ROOT (as given or its real path) plus '/' */
        rest = NULL;
        const char *roots[2] = {root, rootreal};
        for (int r = 0; r < 2 && !rest; r++) {
            const char *rt = roots[r];
            if (!rt || !*rt)
                continue;
            size_t rl = strlen(rt);
            while (rl > 1 && rt[rl - 1] == '/')
                rl--;
            if (rl == 1 && rt[0] == '/')
                rest = buf + 1;
            else if (strncmp(buf, rt, rl) == 0 && buf[rl] == '/')
                rest = buf + rl + 1;
        }
        if (!rest)
            return 1;
    }
    /* walk the components: drop "" and ".", resolve ".." lexically */
    size_t o = 0;
    const char *p = rest;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t cl = e ? (size_t)(e - p) : strlen(p);
        if (cl == 0 || (cl == 1 && p[0] == '.')) {
            /* skip */
        } else if (cl == 2 && p[0] == '.' && p[1] == '.') {
            if (o == 0)
                return 1; /* above the root */
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the slash */
        } else {
            if (o + (o ? 1 : 0) + cl + 1 > outlen)
                return -1;
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, cl);
            o += cl;
        }
        p += cl;
        if (*p == '/')
            p++;
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

/* ------------------------------------------------------------ parse context */

typedef struct {
    const kz_parse_ctx_t *ctx;
    kz_findings_t *out;
    kz_parse_stats_t *stats;
    char rootreal[PATH_MAX]; /* realpath of ctx->root, "" when it has none */
    char **files;            /* ctx->files normalised; NULL = no filter */
    size_t nfiles;
    bool oom;
} s_parser_t;

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int s_parser_init(s_parser_t *p, const kz_parse_ctx_t *ctx, kz_findings_t *out,
                         kz_parse_stats_t *stats)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->out = out;
    p->stats = stats;
    if (!ctx->root || !realpath(ctx->root, p->rootreal))
        p->rootreal[0] = '\0';
    size_t n = 0;
    if (ctx->files) {
        while (ctx->files[n] && (ctx->nfiles == 0 || n < ctx->nfiles))
            n++;
    }
    if (n == 0)
        return 0;
    p->files = calloc(n, sizeof *p->files);
    if (!p->files)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char rel[KZ_PARSE_MAX_PATH];
        const char *f = ctx->files[i];
        if (s_relpath(ctx->root, p->rootreal, f, strlen(f), rel, sizeof rel) == 0) {
            p->files[p->nfiles] = strdup(rel);
            if (!p->files[p->nfiles])
                return -1;
            p->nfiles++;
        }
    }
    qsort(p->files, p->nfiles, sizeof *p->files, s_cmp_str);
    if (p->nfiles == 0) {
        /* none of the given files is a usable path: nothing can match */
        p->files[0] = strdup("");
        if (!p->files[0])
            return -1;
        p->nfiles = 1;
    }
    return 0;
}

static void s_parser_fini(s_parser_t *p)
{
    for (size_t i = 0; i < p->nfiles; i++)
        free(p->files[i]);
    free(p->files);
}

/* index of REL among the given files (sorted), or -1 */
static long s_given(const s_parser_t *p, const char *rel)
{
    size_t lo = 0, hi = p->nfiles;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->files[mid], rel);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Resolve the path a tool printed: 0 with REL set, 1 when it is to be
   dropped (counted: outside or not among the given files) */
static int s_resolve(s_parser_t *p, const char *path, size_t n, char *rel, size_t rellen)
{
    int rc = s_relpath(p->ctx->root, p->rootreal, path, n, rel, rellen);
    if (rc == 1) {
        p->stats->outside++;
        return 1;
    }
    if (rc < 0) {
        p->stats->skipped++;
        return 1;
    }
    if (p->files && s_given(p, rel) < 0) {
        p->stats->skipped++;
        return 1;
    }
    return 0;
}

/* Add a finding built from borrowed strings; the message is cleaned */
static void s_emit(s_parser_t *p, const char *rule, size_t rulelen, const char *sev,
                   const char *cat, const char *rel, int line, int col, const char *msg,
                   size_t msglen, const char *fix, size_t fixlen)
{
    if (p->oom)
        return;
    if (p->stats->parsed >= KZ_PARSE_MAX_FINDINGS) {
        p->stats->skipped++;
        return;
    }
    kz_finding_t f = {0};
    const char *tool = p->ctx->tool && *p->ctx->tool ? p->ctx->tool : "unknown";
    f.tool = strdup(tool);
    if (!rule || rulelen == 0) {
        rule = tool;
        rulelen = strlen(tool);
    }
    f.rule = s_clean(rule, rulelen, KZ_PARSE_MAX_NAME);
    if (f.rule && !*f.rule) {
        free(f.rule);
        f.rule = strdup(tool);
    }
    f.severity = s_strdup0(sev);
    f.category = s_strdup0(cat);
    f.file = strdup(rel);
    f.line = line > 0 ? line : 0;
    f.col = col > 0 ? col : 0;
    f.message = s_clean(msg ? msg : "", msg ? msglen : 0, KZ_PARSE_MAX_MESSAGE);
    f.fix = fix ? s_clean(fix, fixlen, KZ_PARSE_MAX_MESSAGE) : NULL;
    if (!f.tool || !f.rule || (sev && !f.severity) || (cat && !f.category) || !f.file ||
        !f.message || (fix && !f.fix) || s_take(p->out, &f) < 0) {
        kz_finding_clear(&f);
        p->oom = true;
        return;
    }
    p->stats->parsed++;
}

/* Parse up to 9 decimal digits at S[0..N): the value, or -1 */
static int s_number(const char *s, size_t n)
{
    if (n == 0 || n > 9)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* ------------------------------------------------------------ gcc format */

typedef struct {
    const char *word;
    const char *severity; /* NULL: a note (see s_gcc_line) */
    const char *category;
} s_level_t;

static const s_level_t s_levels[] = {
    {"fatal error", "high", NULL},
    {"error", "high", NULL},
    {"warning", "medium", NULL},
    {"performance", "low", "performance"},
    {"portability", "low", NULL},
    {"style", "low", NULL},
    {"information", "info", NULL},
    {"info", "info", NULL},
    {"remark", "info", NULL},
    {"note", NULL, NULL}, /* "low" when it names a rule, else skipped */
};

static bool s_rule_char(int c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == ',' || c == ':' || c == '/' ||
           c == '=' || c == '+' || c == '@' || c == '#';
}

/* One line of "gcc" output: FILE:LINE[:COL]: [LEVEL:] MESSAGE [RULE] */
static void s_gcc_line(s_parser_t *p, const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    /* FILE ends at the first ":<digits>:" */
    size_t i = 0, fend = 0;
    int line = -1;
    for (i = 0; i < n; i++) {
        if (s[i] != ':' || i == 0)
            continue;
        size_t j = i + 1;
        while (j < n && j - i <= 10 && isdigit((unsigned char)s[j]))
            j++;
        if (j > i + 1 && j < n && s[j] == ':') {
            line = s_number(s + i + 1, j - i - 1);
            if (line >= 0) {
                fend = i;
                i = j + 1;
                break;
            }
        }
    }
    if (line < 0) {
        p->stats->skipped++;
        return;
    }
    const char *file = s;
    size_t flen = fend;
    /* source lines echoed under a diagnostic are indented; a path is not
       quoted and holds no ": " ("In file included from x.c:3:", "make:
       *** [Makefile:12: all]") - unless it is exactly one of the files
       the tool was given (a tracked '--addon={"script":"x.py"}.c');
       cppcheck names "nofile" for whole-run messages */
    bool odd = memchr(file, '"', flen) || memchr(file, '`', flen) || memmem(file, flen, ": ", 2);
    if (odd && p->files) {
        char given[KZ_PARSE_MAX_PATH];
        odd = !(s_relpath(p->ctx->root, p->rootreal, file, flen, given, sizeof given) == 0 &&
                s_given(p, given) >= 0);
    }
    if (isspace((unsigned char)file[0]) || odd || (flen == 6 && memcmp(file, "nofile", 6) == 0)) {
        p->stats->skipped++;
        return;
    }
    int col = 0;
    size_t j = i;
    while (j < n && j - i <= 10 && isdigit((unsigned char)s[j]))
        j++;
    if (j > i && j < n && s[j] == ':') {
        col = s_number(s + i, j - i);
        if (col < 0)
            col = 0;
        i = j + 1;
    }
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    const char *rest = s + i;
    size_t rlen = n - i;
    /* LEVEL: */
    const char *sev = NULL, *cat = NULL;
    bool leveled = false;
    for (size_t l = 0; l < sizeof s_levels / sizeof s_levels[0]; l++) {
        size_t wl = strlen(s_levels[l].word);
        if (rlen > wl && strncasecmp(rest, s_levels[l].word, wl) == 0 && rest[wl] == ':') {
            sev = s_levels[l].severity;
            cat = s_levels[l].category;
            rest += wl + 1;
            rlen -= wl + 1;
            leveled = true;
            break;
        }
    }
    while (rlen > 0 && (*rest == ' ' || *rest == '\t')) {
        rest++;
        rlen--;
    }
    const char *rule = NULL, *fix = NULL;
    size_t rulelen = 0, fixlen = 0;
    /* a trailing "[rule]" (no spaces inside) */
    if (rlen > 2 && rest[rlen - 1] == ']') {
        size_t k = rlen - 1;
        while (k > 0 && rest[k - 1] != '[' && s_rule_char((unsigned char)rest[k - 1]))
            k--;
        if (k > 0 && rest[k - 1] == '[' && k < rlen - 1 && (k == 1 || rest[k - 2] == ' ')) {
            rule = rest + k;
            rulelen = rlen - 1 - k;
            rlen = k - 1;
            while (rlen > 0 && rest[rlen - 1] == ' ')
                rlen--;
        }
    }
    if (rule) {
        /* clang-tidy may list aliases "[a,b]": the first names it */
        const char *comma = memchr(rule, ',', rulelen);
        if (comma)
            rulelen = (size_t)(comma - rule);
        /* gcc's "-Wx" and "-Werror=x" are the warning "x" */
        if (rulelen > 8 && strncmp(rule, "-Werror=", 8) == 0) {
            rule += 8;
            rulelen -= 8;
        } else if (rulelen > 2 && strncmp(rule, "-W", 2) == 0) {
            rule += 2;
            rulelen -= 2;
        }
        /* "[-Wstringop-overflow=]": the option takes a value */
        while (rulelen > 1 && rule[rulelen - 1] == '=')
            rulelen--;
    }
    if (leveled && !sev) {
        /* a note with a rule is a finding of its own (shellcheck's info and
           style levels); one without belongs to the diagnostic before it */
        if (!rule) {
            p->stats->skipped++;
            return;
        }
        sev = "low";
    }
    if (!leveled && !rule) {
        /* flake8 "CODE message" */
        size_t k = 0;
        while (k < rlen && isupper((unsigned char)rest[k]))
            k++;
        size_t d = k;
        while (d < rlen && isdigit((unsigned char)rest[d]))
            d++;
        const char *arrow = NULL;
        for (size_t a = 0; a + 5 <= rlen; a++)
            if (memcmp(rest + a, " ==> ", 5) == 0) {
                arrow = rest + a;
                break;
            }
        if (k >= 1 && k <= 8 && d > k && d - k <= 6 && (d == rlen || rest[d] == ' ')) {
            rule = rest;
            rulelen = d;
            rest += d;
            rlen -= d;
            /* ruff marks fixable ones "CODE [*] message" */
            if (rlen >= 4 && memcmp(rest, " [*]", 4) == 0) {
                rest += 4;
                rlen -= 4;
            }
        } else if (arrow) {
            /* codespell "word ==> fix[, fix2]" */
            rule = "misspelling";
            rulelen = strlen(rule);
            fix = arrow + 5;
            fixlen = rlen - (size_t)(fix - rest);
        }
    }
    if (rlen == 0 && !rule) {
        p->stats->skipped++;
        return;
    }
    char rel[KZ_PARSE_MAX_PATH];
    if (s_resolve(p, file, flen, rel, sizeof rel) != 0)
        return;
    s_emit(p, rule, rulelen, sev, cat, rel, line, col, rest, rlen, fix, fixlen);
}

static void s_parse_gcc(s_parser_t *p, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len && !p->oom) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        if (n > 0) {
            p->stats->lines++;
            if (n > 65536)
                p->stats->skipped++;
            else
                s_gcc_line(p, text + i, n);
        }
        i += n + 1;
    }
}

/* ------------------------------------------------------------ files format */

static const char *s_files_rule(const char *tool)
{
    if (!tool)
        return "format";
    if (strcmp(tool, "black") == 0)
        return "would-reformat";
    if (strcmp(tool, "isort") == 0)
        return "unsorted-imports";
    if (strcmp(tool, "clang-format") == 0)
        return "clang-format";
    return "format";
}

/* Mark the given files a token of a line names */
static void s_files_token(s_parser_t *p, const char *t, size_t n, bool *hit)
{
    char rel[KZ_PARSE_MAX_PATH];
    while (n > 0 && (t[n - 1] == ':' || t[n - 1] == ','))
        n--;
    /* the whole token, then without ":LINE:COL" suffixes */
    for (int pass = 0; pass < 4 && n > 0; pass++) {
        if (s_relpath(p->ctx->root, p->rootreal, t, n, rel, sizeof rel) == 0) {
            long k = s_given(p, rel);
            if (k >= 0) {
                hit[k] = true;
                return;
            }
        }
        const char *c = NULL;
        for (size_t i = n; i > 0; i--)
            if (t[i - 1] == ':') {
                c = t + i - 1;
                break;
            }
        if (!c)
            return;
        n = (size_t)(c - t);
    }
}

static void s_parse_files(s_parser_t *p, const char *text, size_t len)
{
    if (!p->files)
        return; /* nothing given: nothing to name */
    bool *hit = calloc(p->nfiles, sizeof *hit);
    if (!hit) {
        p->oom = true;
        return;
    }
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        const char *s = text + i;
        i += n + 1;
        if (n == 0)
            continue;
        p->stats->lines++;
        /* black's own errors ("error: cannot format x.py: ...") are not findings */
        if (n >= 6 && strncmp(s, "error:", 6) == 0)
            continue;
        /* the first tokens of the line: "would reformat X", "ERROR: X Imports ...",
           "X:3:1: warning: ..." (clang-format echoes source lines too: the
           tokens further right are not looked at) */
        size_t k = 0;
        for (int tok = 0; tok < 3 && k < n; tok++) {
            while (k < n && isspace((unsigned char)s[k]))
                k++;
            size_t b = k;
            while (k < n && !isspace((unsigned char)s[k]))
                k++;
            if (k > b)
                s_files_token(p, s + b, k - b, hit);
        }
        /* a file name with a space is no single token: look for it whole */
        for (size_t f = 0; f < p->nfiles; f++) {
            size_t fl = strlen(p->files[f]);
            if (hit[f] || !strpbrk(p->files[f], " \t") || fl > n)
                continue;
            const char *at = memmem(s, n, p->files[f], fl);
            if (at && (at == s || isspace((unsigned char)at[-1]) || at[-1] == '/') &&
                (at + fl == s + n || isspace((unsigned char)at[fl]) || at[fl] == ':'))
                hit[f] = true;
        }
    }
    const char *tool = p->ctx->tool && *p->ctx->tool ? p->ctx->tool : "format";
    const char *rule = s_files_rule(p->ctx->tool);
    char msg[512];
    if (strcmp(rule, "unsorted-imports") == 0)
        snprintf(msg, sizeof msg, "%s: imports are incorrectly sorted or formatted", tool);
    else
        snprintf(msg, sizeof msg, "%s would reformat this file", tool);
    for (size_t f = 0; f < p->nfiles; f++)
        if (hit[f])
            s_emit(p, rule, strlen(rule), NULL, NULL, p->files[f], 0, 0, msg, strlen(msg), NULL, 0);
    free(hit);
}

/* ------------------------------------------------------------ JSON helpers */

static const char *s_jstr(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int s_jint(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return 0;
    json_int_t i = json_integer_value(v);
    return i > 0 && i <= INT_MAX ? (int)i : 0;
}

static json_t *s_json_load(const char *text, size_t len, char *errbuf, size_t errlen,
                           const char *what)
{
    json_error_t jerr;
    /* skip anything before the document (a tool's banner on stderr, ...) */
    size_t start = 0;
    while (start < len && text[start] != '{' && text[start] != '[')
        start++;
    if (start == len) {
        snprintf(errbuf, errlen, "%s: no JSON document in the output", what);
        return NULL;
    }
    json_t *doc = json_loadb(text + start, len - start, JSON_DISABLE_EOF_CHECK, &jerr);
    if (!doc) {
        snprintf(errbuf, errlen, "%s: invalid JSON at line %d column %d: %s", what, jerr.line,
                 jerr.column, jerr.text);
        return NULL;
    }
    return doc;
}

/* ------------------------------------------------------------ pydocstyle */

/* pydocstyle prints two lines per finding:
       pkg/a.py:12 in public function `f`:
               D103: Missing docstring in public function
   The first names the file and line, the indented second the code and
   the message. */
static void s_parse_pydocstyle(s_parser_t *p, const char *text, size_t len)
{
    char rel[KZ_PARSE_MAX_PATH];
    int line = -1; /* -1: no header line waiting for its message */
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        const char *s = text + i;
        i += n + 1;
        if (n == 0)
            continue;
        p->stats->lines++;
        if (!isspace((unsigned char)s[0])) {
            line = -1;
            /* the first ":DIGITS " names the line; what precedes is the path */
            for (size_t k = 0; k + 1 < n; k++) {
                if (s[k] != ':' || !isdigit((unsigned char)s[k + 1]))
                    continue;
                size_t e = k + 1;
                while (e < n && isdigit((unsigned char)s[e]))
                    e++;
                if (e < n && s[e] != ' ' && s[e] != ':')
                    continue;
                int v = s_number(s + k + 1, e - k - 1);
                if (v >= 0 && s_resolve(p, s, k, rel, sizeof rel) == 0)
                    line = v;
                break;
            }
            if (line < 0)
                p->stats->skipped++;
            continue;
        }
        size_t b = 0;
        while (b < n && isspace((unsigned char)s[b]))
            b++;
        const char *colon = memchr(s + b, ':', n - b);
        if (line < 0 || !colon || s[b] != 'D') {
            p->stats->skipped++;
            continue;
        }
        size_t rl = (size_t)(colon - (s + b));
        const char *msg = colon + 1;
        while (msg < s + n && *msg == ' ')
            msg++;
        s_emit(p, s + b, rl, NULL, NULL, rel, line, 0, msg, (size_t)(s + n - msg), NULL, 0);
        line = -1;
    }
}

/* ------------------------------------------------------------ pylint-json */

static void s_pylint_msg(s_parser_t *p, const json_t *m)
{
    p->stats->lines++;
    if (!json_is_object(m)) {
        p->stats->skipped++;
        return;
    }
    const char *type = s_jstr(m, "type");
    const char *symbol = s_jstr(m, "symbol");
    const char *msgid = s_jstr(m, "message-id");
    if (!msgid)
        msgid = s_jstr(m, "messageId");
    const char *text = s_jstr(m, "message");
    const char *path = s_jstr(m, "path");
    if (!path)
        path = s_jstr(m, "absolutePath");
    if (!path || !text) {
        p->stats->skipped++;
        return;
    }
    const char *sev = NULL, *cat = NULL;
    if (type) {
        if (strcmp(type, "fatal") == 0 || strcmp(type, "error") == 0)
            sev = "high", cat = "bug";
        else if (strcmp(type, "warning") == 0)
            sev = "medium", cat = "bug";
        else if (strcmp(type, "refactor") == 0)
            sev = "low", cat = "complexity";
        else if (strcmp(type, "convention") == 0)
            sev = "low", cat = "style";
        else if (strcmp(type, "info") == 0)
            sev = "info";
    }
    const char *rule = symbol && *symbol ? symbol : msgid;
    char rel[KZ_PARSE_MAX_PATH];
    if (s_resolve(p, path, strlen(path), rel, sizeof rel) != 0)
        return;
    /* pylint columns start at 0 */
    const json_t *jc = json_object_get(m, "column");
    int col = json_is_integer(jc) && json_integer_value(jc) >= 0 && json_integer_value(jc) < INT_MAX
                  ? (int)json_integer_value(jc) + 1
                  : 0;
    s_emit(p, rule, rule ? strlen(rule) : 0, sev, cat, rel, s_jint(m, "line"), col, text,
           strlen(text), NULL, 0);
}

static int s_parse_pylint(s_parser_t *p, const char *text, size_t len, char *errbuf, size_t errlen)
{
    /* no output at all: no messages */
    size_t k = 0;
    while (k < len && isspace((unsigned char)text[k]))
        k++;
    if (k == len)
        return 0;
    json_t *doc = s_json_load(text, len, errbuf, errlen, "pylint-json");
    if (!doc)
        return -1;
    const json_t *arr = doc;
    if (json_is_object(doc)) /* --output-format=json2: {"messages": [...], ...} */
        arr = json_object_get(doc, "messages");
    if (!json_is_array(arr)) {
        snprintf(errbuf, errlen, "pylint-json: expected an array of messages");
        json_decref(doc);
        return -1;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(arr, i, m)
    {
        if (p->oom)
            break;
        s_pylint_msg(p, m);
    }
    json_decref(doc);
    return 0;
}

/* ------------------------------------------------------------ SARIF */

static const char *s_sarif_severity(const char *level)
{
    if (!level)
        return NULL;
    if (strcmp(level, "error") == 0)
        return "high";
    if (strcmp(level, "warning") == 0)
        return "medium";
    if (strcmp(level, "note") == 0)
        return "low";
    if (strcmp(level, "none") == 0)
        return "info";
    return NULL;
}

/* Percent-decode a URI path and strip "file://[host]" */
static int s_uri_path(const char *uri, char *out, size_t outlen)
{
    const char *s = uri;
    if (strncasecmp(s, "file://", 7) == 0) {
        s += 7;
        if (*s != '/') { /* file://host/path */
            s = strchr(s, '/');
            if (!s)
                return -1;
        }
    } else if (strncasecmp(s, "file:", 5) == 0) {
        s += 5;
    } else {
        /* another scheme (http:, ...) is not a file */
        const char *c = s;
        while (isalnum((unsigned char)*c) || *c == '+' || *c == '-' || *c == '.')
            c++;
        if (*c == ':' && c > s + 1)
            return -1;
    }
    size_t o = 0;
    for (; *s && *s != '?' && *s != '#'; s++) {
        char c = *s;
        if (c == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            char h[3] = {s[1], s[2], 0};
            c = (char)strtol(h, NULL, 16);
            s += 2;
            if (c == '\0')
                return -1;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

/* The text of a result's message: message.text, or the rule's message
   string message.id with {N} placeholders filled from message.arguments */
static char *s_sarif_message(const json_t *result, const json_t *rule)
{
    const json_t *msg = json_object_get(result, "message");
    const char *text = s_jstr(msg, "text");
    if (!text)
        text = s_jstr(msg, "markdown");
    if (!text) {
        const char *id = s_jstr(msg, "id");
        const json_t *strings = json_object_get(rule, "messageStrings");
        if (id && strings)
            text = s_jstr(json_object_get(strings, id), "text");
    }
    if (!text)
        text = s_jstr(json_object_get(rule, "shortDescription"), "text");
    if (!text)
        return strdup("");
    const json_t *args = json_object_get(msg, "arguments");
    size_t cap = strlen(text) + 1, o = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *s = text; *s;) {
        const char *add = s;
        size_t addlen = 1;
        size_t skip = 1;
        if (*s == '{' && isdigit((unsigned char)s[1])) {
            char *end;
            long k = strtol(s + 1, &end, 10);
            if (*end == '}' && json_is_array(args) && k >= 0 && (size_t)k < json_array_size(args) &&
                json_is_string(json_array_get(args, (size_t)k))) {
                add = json_string_value(json_array_get(args, (size_t)k));
                addlen = strlen(add);
                skip = (size_t)(end + 1 - s);
            }
        }
        if (o + addlen + 1 > cap) {
            cap = (o + addlen + 1) * 2;
            if (cap > KZ_PARSE_MAX_MESSAGE * 4)
                break;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + o, add, addlen);
        o += addlen;
        s += skip;
    }
    out[o] = '\0';
    return out;
}

static void s_sarif_result(s_parser_t *p, const json_t *run, const json_t *rules,
                           const json_t *result)
{
    p->stats->lines++;
    if (!json_is_object(result)) {
        p->stats->skipped++;
        return;
    }
    /* only failures are findings; suppressed and fixed ("absent") ones are not */
    const char *kind = s_jstr(result, "kind");
    const json_t *supp = json_object_get(result, "suppressions");
    const char *baseline = s_jstr(result, "baselineState");
    if ((kind && strcmp(kind, "fail") != 0 && strcmp(kind, "review") != 0 &&
         strcmp(kind, "open") != 0) ||
        (json_is_array(supp) && json_array_size(supp) > 0) ||
        (baseline && strcmp(baseline, "absent") == 0)) {
        p->stats->skipped++;
        return;
    }
    /* the rule: ruleId, rule.id, or rules[ruleIndex / rule.index] */
    const char *rule_id = s_jstr(result, "ruleId");
    const json_t *rref = json_object_get(result, "rule");
    if (!rule_id)
        rule_id = s_jstr(rref, "id");
    const json_t *jidx = json_object_get(result, "ruleIndex");
    if (!json_is_integer(jidx))
        jidx = json_object_get(rref, "index");
    const json_t *rule = NULL;
    if (json_is_integer(jidx) && json_integer_value(jidx) >= 0 && json_is_array(rules))
        rule = json_array_get(rules, (size_t)json_integer_value(jidx));
    if (!rule && rule_id && json_is_array(rules)) {
        size_t i;
        const json_t *r;
        json_array_foreach(rules, i, r)
        {
            const char *id = s_jstr(r, "id");
            if (id && strcmp(id, rule_id) == 0) {
                rule = r;
                break;
            }
        }
    }
    if (!rule_id)
        rule_id = s_jstr(rule, "id");
    const char *level = s_jstr(result, "level");
    if (!level)
        level = s_jstr(json_object_get(rule, "defaultConfiguration"), "level");
    /* the location */
    const json_t *locs = json_object_get(result, "locations");
    const json_t *phys = json_object_get(json_array_get(locs, 0), "physicalLocation");
    const json_t *art = json_object_get(phys, "artifactLocation");
    const char *uri = s_jstr(art, "uri");
    const json_t *aidx = json_object_get(art, "index");
    if (!uri && json_is_integer(aidx) && json_integer_value(aidx) >= 0)
        uri = s_jstr(json_object_get(json_array_get(json_object_get(run, "artifacts"),
                                                    (size_t)json_integer_value(aidx)),
                                     "location"),
                     "uri");
    if (!uri) {
        p->stats->skipped++;
        return;
    }
    char path[KZ_PARSE_MAX_PATH], full[KZ_PARSE_MAX_PATH];
    if (s_uri_path(uri, path, sizeof path) < 0) {
        p->stats->skipped++;
        return;
    }
    /* a relative uri with a uriBaseId: prefix the base's uri when the run says it */
    const char *base_id = s_jstr(art, "uriBaseId");
    if (path[0] != '/' && base_id) {
        const json_t *bases = json_object_get(run, "originalUriBaseIds");
        const char *base_uri = s_jstr(json_object_get(bases, base_id), "uri");
        char base[KZ_PARSE_MAX_PATH];
        if (base_uri && s_uri_path(base_uri, base, sizeof base) == 0) {
            size_t bl = strlen(base);
            int n = snprintf(full, sizeof full, "%s%s%s", base,
                             bl && base[bl - 1] == '/' ? "" : "/", path);
            if (n > 0 && (size_t)n < sizeof full)
                memcpy(path, full, (size_t)n + 1);
        }
    }
    const json_t *region = json_object_get(phys, "region");
    int line = s_jint(region, "startLine");
    int col = s_jint(region, "startColumn");
    char rel[KZ_PARSE_MAX_PATH];
    if (s_resolve(p, path, strlen(path), rel, sizeof rel) != 0)
        return;
    char *text = s_sarif_message(result, rule);
    if (!text) {
        p->oom = true;
        return;
    }
    const char *fix =
        s_jstr(json_object_get(json_array_get(json_object_get(result, "fixes"), 0), "description"),
               "text");
    s_emit(p, rule_id, rule_id ? strlen(rule_id) : 0, s_sarif_severity(level), NULL, rel, line, col,
           text, strlen(text), fix, fix ? strlen(fix) : 0);
    free(text);
}

static int s_parse_sarif(s_parser_t *p, const char *text, size_t len, char *errbuf, size_t errlen)
{
    json_t *doc = s_json_load(text, len, errbuf, errlen, "sarif");
    if (!doc)
        return -1;
    const json_t *runs = json_object_get(doc, "runs");
    if (!json_is_object(doc) || !json_is_array(runs)) {
        snprintf(errbuf, errlen, "sarif: not a SARIF log (no \"runs\" array)");
        json_decref(doc);
        return -1;
    }
    size_t i;
    const json_t *run;
    json_array_foreach(runs, i, run)
    {
        const json_t *driver = json_object_get(json_object_get(run, "tool"), "driver");
        const json_t *rules = json_object_get(driver, "rules");
        const json_t *results = json_object_get(run, "results");
        if (!json_is_array(results))
            continue;
        size_t j;
        const json_t *result;
        json_array_foreach(results, j, result)
        {
            if (p->oom)
                break;
            s_sarif_result(p, run, rules, result);
        }
    }
    json_decref(doc);
    return 0;
}

/* ------------------------------------------------------------ entry */

int kz_parse_output(const char *format, const char *output, size_t len, const kz_parse_ctx_t *ctx,
                    kz_findings_t *out, kz_parse_stats_t *stats, char *errbuf, size_t errlen)
{
    kz_parse_stats_t local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    if (errbuf && errlen)
        errbuf[0] = '\0';
    char dummy[8];
    if (!errbuf || !errlen) {
        errbuf = dummy;
        errlen = sizeof dummy;
    }
    if (!format || !ctx || !out) {
        snprintf(errbuf, errlen, "parse: missing format, context or output list");
        return -1;
    }
    if (!output)
        len = 0;
    s_parser_t p;
    if (s_parser_init(&p, ctx, out, stats) < 0) {
        s_parser_fini(&p);
        snprintf(errbuf, errlen, "parse: out of memory");
        return -1;
    }
    int rc = 0;
    if (strcmp(format, "gcc") == 0)
        s_parse_gcc(&p, output, len);
    else if (strcmp(format, "files") == 0)
        s_parse_files(&p, output, len);
    else if (strcmp(format, "pylint-json") == 0)
        rc = s_parse_pylint(&p, output, len, errbuf, errlen);
    else if (strcmp(format, "pydocstyle") == 0)
        s_parse_pydocstyle(&p, output, len);
    else if (strcmp(format, "sarif") == 0)
        rc = s_parse_sarif(&p, output, len, errbuf, errlen);
    else {
        snprintf(errbuf, errlen,
                 "unknown output format '%s' (gcc, sarif, pylint-json, files, pydocstyle)", format);
        rc = -1;
    }
    if (rc == 0 && p.oom) {
        snprintf(errbuf, errlen, "%s: out of memory", format);
        rc = -1;
    }
    s_parser_fini(&p);
    return rc;
}
