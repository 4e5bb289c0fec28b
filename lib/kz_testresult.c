/*  kz_testresult.c - the parsers of test results

    See kz_testresult.h for the contracts. The input is the output and the
    report of a target's own test command: untrusted. So every parser
    works on a buffer that need not be NUL-terminated, caps what it keeps,
    and cleans every string it keeps into valid UTF-8 without control
    characters (those strings go into messages on the bus).

    JUnit XML is read with libxml2 from memory without XML_PARSE_NOENT,
    XML_PARSE_DTDLOAD or XML_PARSE_DTDATTR and with XML_PARSE_NONET: no
    DTD is loaded and no entity is substituted. The text we read (attribute
    values, a failure's body) is gathered from text and CDATA nodes only,
    so an entity reference - internal or external - reads as nothing and
    is never expanded (not even by xmlNodeGetContent / xmlGetProp, which
    would expand internal ones: a "billion laughs" report).
*/
#include "kz_testresult.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define S_MAX_DEPTH 64   /* testsuites nested deeper are not read */
#define S_MAX_TEXT  4096 /* bytes of a message's first line gathered before cleaning */
#define S_MAX_ATTR  (KZ_TESTRESULT_MAX_ID + 4)

static const char *const s_status_names[] = {"passed", "skipped", "failed", "error"};

const char *kz_test_status_name(kz_test_status_t status)
{
    return (unsigned)status < 4 ? s_status_names[status] : "error";
}

int kz_test_status_parse(const char *name, kz_test_status_t *status)
{
    for (int k = 0; name && k < 4; k++)
        if (strcmp(name, s_status_names[k]) == 0) {
            *status = (kz_test_status_t)k;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------ strings */

/* Length of the valid UTF-8 sequence at S (N bytes left), 0 when invalid */
static size_t s_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned int min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned int cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

char *kz_testresult_clean(const char *s, size_t n, size_t max)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    char *out = malloc(max + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = s_utf8_seq((const unsigned char *)s + i, n - i);
        if (o + (len ? len : 1) > max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (len == 0) {
            out[o++] = '?';
            i++;
        } else if (len == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) {
            out[o++] = ' ';
            i++;
        } else {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = '\0';
    return out;
}

/* The line at *POS of TEXT (LEN bytes), trailing blanks cut: sets *LINE
   and *N, advances *POS. false at the end */
static bool s_next_line(const char *text, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len)
        return false;
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t k = nl ? (size_t)(nl - s) : len - *pos;
    *pos += k + 1;
    while (k > 0 && (s[k - 1] == '\r' || s[k - 1] == ' ' || s[k - 1] == '\t'))
        k--;
    *line = s;
    *n = k;
    return true;
}

void kz_testresult_last_line(const char *text, size_t len, char *buf, size_t buflen)
{
    if (buflen == 0)
        return;
    buf[0] = '\0';
    size_t pos = 0, n;
    const char *s, *last = NULL;
    size_t lastn = 0;
    while (s_next_line(text, len, &pos, &s, &n))
        if (n > 0)
            last = s, lastn = n;
    if (!last || buflen < 8)
        return;
    char *c = kz_testresult_clean(last, lastn, buflen - 4);
    if (c) {
        snprintf(buf, buflen, "%s", c);
        free(c);
    }
}

/* ------------------------------------------------------------ cases */

void kz_test_cases_init(kz_test_cases_t *list)
{
    memset(list, 0, sizeof *list);
}

void kz_test_cases_free(kz_test_cases_t *list)
{
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i].id);
        free(list->items[i].message);
    }
    free(list->items);
    memset(list, 0, sizeof *list);
}

int kz_test_cases_add(kz_test_cases_t *list, const char *id, size_t idlen, kz_test_status_t status,
                      const char *message, size_t msglen)
{
    if ((unsigned)status > KZ_TEST_ERROR)
        status = KZ_TEST_ERROR;
    if (list->count >= KZ_TESTRESULT_MAX_CASES) {
        list->dropped++; /* a summary line may still say how many */
        return 0;
    }
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        kz_test_case_t *items = realloc(list->items, cap * sizeof *items);
        if (!items)
            return -1;
        list->items = items;
        list->cap = cap;
    }
    kz_test_case_t *c = &list->items[list->count];
    c->id = kz_testresult_clean(id, idlen, KZ_TESTRESULT_MAX_ID);
    c->message =
        message && msglen ? kz_testresult_clean(message, msglen, KZ_TESTRESULT_MAX_MESSAGE) : NULL;
    c->status = status;
    if (!c->id || (message && msglen && !c->message)) {
        free(c->id);
        free(c->message);
        return -1;
    }
    if (!*c->id) {
        free(c->id);
        free(c->message);
        return 0;
    }
    if (c->message && !*c->message) {
        free(c->message);
        c->message = NULL;
    }
    list->count++;
    return 0;
}

static int s_case_cmp(const void *a, const void *b)
{
    return strcmp(((const kz_test_case_t *)a)->id, ((const kz_test_case_t *)b)->id);
}

void kz_test_cases_finish(kz_test_cases_t *list)
{
    if (list->count > 1)
        qsort(list->items, list->count, sizeof *list->items, s_case_cmp);
    size_t o = 0;
    for (size_t i = 0; i < list->count; i++) {
        if (o > 0 && strcmp(list->items[o - 1].id, list->items[i].id) == 0) {
            kz_test_case_t *keep = &list->items[o - 1];
            kz_test_case_t *dup = &list->items[i];
            bool worse = dup->status > keep->status && dup->status != KZ_TEST_SKIP;
            if (worse || keep->status == KZ_TEST_SKIP) {
                keep->status = dup->status;
                free(keep->message);
                keep->message = dup->message;
                dup->message = NULL;
            }
            free(dup->id);
            free(dup->message);
            continue;
        }
        list->items[o++] = list->items[i];
    }
    list->count = o;
    list->passed = list->failed = list->errors = list->skipped = 0;
    for (size_t i = 0; i < list->count; i++) {
        switch (list->items[i].status) {
        case KZ_TEST_PASS:
            list->passed++;
            break;
        case KZ_TEST_SKIP:
            list->skipped++;
            break;
        case KZ_TEST_FAIL:
            list->failed++;
            break;
        case KZ_TEST_ERROR:
            list->errors++;
            break;
        }
    }
}

const kz_test_case_t *kz_test_cases_find(const kz_test_cases_t *list, const char *id)
{
    if (!list->count || !id)
        return NULL;
    kz_test_case_t key = {.id = (char *)id};
    return bsearch(&key, list->items, list->count, sizeof *list->items, s_case_cmp);
}

/* ------------------------------------------------------------ JUnit XML */

/* The first line of some text, gathered piece by piece: leading blanks
   and line breaks skipped, up to the next line break, at most S_MAX_TEXT
   bytes */
typedef struct {
    char buf[S_MAX_TEXT];
    size_t len;
    bool seen;    /* any text at all (even blank) */
    bool started; /* past the leading blanks */
    bool done;    /* the line ended or the buffer is full */
} s_line_t;

static void s_line_put(s_line_t *l, const char *s)
{
    for (; s && *s && !l->done; s++) {
        l->seen = true;
        char c = *s;
        if (!l->started) {
            if (c == '\n' || c == '\r' || c == ' ' || c == '\t')
                continue;
            l->started = true;
        }
        if (c == '\n' || c == '\r' || l->len == sizeof l->buf) {
            l->done = true;
            break;
        }
        l->buf[l->len++] = c;
    }
}

/* The text and CDATA below NODE's children, in document order; entity
   references are skipped, never expanded */
static void s_line_gather(s_line_t *l, const xmlNode *first, int depth)
{
    if (depth > S_MAX_DEPTH)
        return;
    for (const xmlNode *n = first; n && !l->done; n = n->next) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE)
            s_line_put(l, (const char *)n->content);
        else if (n->type == XML_ELEMENT_NODE)
            s_line_gather(l, n->children, depth + 1);
    }
}

/* NODE's attribute NAME (any namespace; DTD defaults never apply), or NULL */
static const xmlAttr *s_attr(const xmlNode *node, const char *name)
{
    for (const xmlAttr *a = node->properties; a; a = a->next)
        if (a->type == XML_ATTRIBUTE_NODE && a->name && strcmp((const char *)a->name, name) == 0)
            return a;
    return NULL;
}

/* The value of attribute NAME into BUF (cut to fit). false when NODE has
   no such attribute */
static bool s_attr_value(const xmlNode *node, const char *name, char *buf, size_t buflen)
{
    buf[0] = '\0';
    const xmlAttr *a = s_attr(node, name);
    if (!a)
        return false;
    size_t o = 0;
    for (const xmlNode *t = a->children; t; t = t->next) {
        if (t->type != XML_TEXT_NODE || !t->content)
            continue;
        size_t n = strlen((const char *)t->content);
        if (n > buflen - 1 - o)
            n = buflen - 1 - o;
        memcpy(buf + o, t->content, n);
        o += n;
    }
    buf[o] = '\0';
    return true;
}

static bool s_named(const xmlNode *node, const char *name)
{
    return node->type == XML_ELEMENT_NODE && node->name &&
           strcmp((const char *)node->name, name) == 0;
}

/* The failure's message: its first line of its "message" attribute when
   that is not empty, else of its text */
static void s_junit_message(const xmlNode *node, s_line_t *l)
{
    memset(l, 0, sizeof *l);
    const xmlAttr *a = s_attr(node, "message");
    if (a)
        for (const xmlNode *t = a->children; t && !l->done; t = t->next)
            if (t->type == XML_TEXT_NODE)
                s_line_put(l, (const char *)t->content);
    if (!l->seen)
        s_line_gather(l, node->children, 0);
}

static int s_junit_case(kz_test_cases_t *list, const xmlNode *tc)
{
    char name[S_MAX_ATTR], cls[S_MAX_ATTR], file[S_MAX_ATTR];
    bool has_name = s_attr_value(tc, "name", name, sizeof name);
    s_attr_value(tc, "classname", cls, sizeof cls);
    s_attr_value(tc, "file", file, sizeof file);
    const char *prefix = *cls ? cls : file;
    char id[S_MAX_ATTR * 2 + 4];
    snprintf(id, sizeof id, "%s%s%s", prefix, *prefix ? "::" : "", has_name ? name : "(unnamed)");
    kz_test_status_t status = KZ_TEST_PASS;
    s_line_t *message = NULL, *next = NULL;
    int rc = -1;
    for (const xmlNode *c = tc->children; c; c = c->next) {
        kz_test_status_t st;
        if (s_named(c, "failure"))
            st = KZ_TEST_FAIL;
        else if (s_named(c, "error"))
            st = KZ_TEST_ERROR;
        else if (s_named(c, "skipped"))
            st = KZ_TEST_SKIP;
        else
            continue;
        /* a test with a failure and a teardown error: the error counts */
        if (st > status || status == KZ_TEST_PASS) {
            if (st == KZ_TEST_SKIP && status != KZ_TEST_PASS)
                continue;
            status = st;
            free(message);
            message = NULL;
            if (st != KZ_TEST_SKIP) {
                if (!next && !(next = malloc(sizeof *next)))
                    goto done;
                s_junit_message(c, next);
                message = next;
                next = NULL;
            }
        }
    }
    rc = kz_test_cases_add(list, id, strlen(id), status, message ? message->buf : NULL,
                           message ? message->len : 0);
done:
    free(message);
    free(next);
    return rc;
}

/* Every testcase among NODE and its siblings, at any depth (testsuites nest) */
static int s_junit_walk(kz_test_cases_t *list, const xmlNode *node, int depth)
{
    if (depth > S_MAX_DEPTH)
        return 0;
    for (const xmlNode *n = node; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (s_named(n, "testcase")) {
            if (s_junit_case(list, n) != 0)
                return -1;
        } else if (s_junit_walk(list, n->children, depth + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

int kz_testresult_parse_junit(const char *buf, size_t len, kz_test_cases_t *list, char *err,
                              size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    if (len == 0) {
        snprintf(err, errlen, "the report is empty");
        return 0;
    }
    if (len > KZ_TESTRESULT_MAX_XML || len > INT_MAX) {
        snprintf(err, errlen, "the report is too large (%zu bytes, at most %u)", len,
                 KZ_TESTRESULT_MAX_XML);
        return 0;
    }
    xmlInitParser();
    /* no network, no entity substitution, no DTD loading or default
       attributes: the report was written by code of the target */
    xmlDoc *doc = xmlReadMemory(buf, (int)len, "report.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                    XML_PARSE_NOCDATA);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        char why[160] = "";
        if (e && e->message) {
            char *c = kz_testresult_clean(e->message, strlen(e->message), 120);
            if (c)
                snprintf(why, sizeof why, " (line %d: %s)", e->line, c);
            free(c);
        }
        xmlResetLastError();
        snprintf(err, errlen, "the report is not well-formed XML%s", why);
        return 0;
    }
    const xmlNode *root = xmlDocGetRootElement(doc);
    int rc;
    if (root && (s_named(root, "testsuites") || s_named(root, "testsuite"))) {
        rc = s_junit_walk(list, root, 0) == 0 ? 1 : -1;
        kz_test_cases_finish(list);
        if (rc < 0)
            snprintf(err, errlen, "out of memory reading the report");
    } else {
        char *c = root && root->name ? kz_testresult_clean((const char *)root->name,
                                                           strlen((const char *)root->name), 64)
                                     : NULL;
        snprintf(err, errlen, "the report is not JUnit XML (root element '%s')", c ? c : "none");
        free(c);
        rc = 0;
    }
    xmlFreeDoc(doc);
    return rc;
}

/* ------------------------------------------------------------ lines */

static bool s_starts(const char *s, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && memcmp(s, prefix, p) == 0;
}

/* Name and message of "WORD: name: message" / "WORD: name message" */
static int s_automake_line(kz_test_cases_t *list, const char *s, size_t n, kz_test_status_t status)
{
    size_t k = 0;
    while (k < n && s[k] != ' ' && s[k] != '\t')
        k++;
    size_t idlen = k;
    while (idlen > 0 && s[idlen - 1] == ':')
        idlen--;
    while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == ':'))
        k++;
    return kz_test_cases_add(list, s, idlen, status, s + k, n - k);
}

/* TAP: "ok 3 - name # SKIP why", "not ok 4 name # TODO" (after "ok "/"not ok ") */
static int s_tap_line(kz_test_cases_t *list, const char *s, size_t n, bool ok)
{
    size_t k = 0;
    size_t numb = 0, nume = 0;
    while (k < n && s[k] == ' ')
        k++;
    numb = k;
    while (k < n && isdigit((unsigned char)s[k]))
        k++;
    nume = k;
    while (k < n && (s[k] == ' ' || s[k] == '-'))
        k++;
    const char *hash = memchr(s + k, '#', n - k);
    size_t end = hash ? (size_t)(hash - s) : n;
    while (end > k && s[end - 1] == ' ')
        end--;
    kz_test_status_t status = ok ? KZ_TEST_PASS : KZ_TEST_FAIL;
    if (hash) {
        size_t h = (size_t)(hash - s) + 1;
        while (h < n && s[h] == ' ')
            h++;
        if (n - h >= 4 && strncasecmp(s + h, "skip", 4) == 0)
            status = KZ_TEST_SKIP;
        else if (n - h >= 4 && strncasecmp(s + h, "todo", 4) == 0)
            status = ok ? KZ_TEST_PASS : KZ_TEST_SKIP; /* a TODO test may fail */
    }
    char id[KZ_TESTRESULT_MAX_ID];
    if (end > k)
        snprintf(id, sizeof id, "%.*s", (int)(end - k), s + k);
    else
        snprintf(id, sizeof id, "test %.*s", (int)(nume - numb), s + numb);
    return kz_test_cases_add(list, id, strlen(id), status, NULL, 0);
}

int kz_testresult_parse_lines(const char *text, size_t len, kz_test_cases_t *list)
{
    static const struct {
        const char *prefix;
        kz_test_status_t status;
    } words[] = {
        {"PASS: ", KZ_TEST_PASS}, {"FAIL: ", KZ_TEST_FAIL},  {"ERROR: ", KZ_TEST_ERROR},
        {"SKIP: ", KZ_TEST_SKIP}, {"XFAIL: ", KZ_TEST_PASS}, {"XPASS: ", KZ_TEST_FAIL},
    };
    size_t before = list->count + list->dropped;
    size_t pos = 0, n;
    const char *s;
    bool banner = false; /* the previous line was unittest's separator of 70 '=' */
    while (s_next_line(text, len, &pos, &s, &n)) {
        int rc = 0;
        bool done = false;
        bool after_banner = banner;
        size_t eq = 0; /* the line is not NUL-terminated: count within it */
        while (eq < n && s[eq] == '=')
            eq++;
        banner = n == 70 && eq == 70;
        /* unittest's "FAIL: test_b (mod.T.test_b)" headers name only the
           failures: read as a list they would hide every passing test */
        if (after_banner && (s_starts(s, n, "FAIL: ") || s_starts(s, n, "ERROR: ")))
            continue;
        for (size_t w = 0; w < sizeof words / sizeof words[0] && !done; w++) {
            if (s_starts(s, n, words[w].prefix)) {
                size_t p = strlen(words[w].prefix);
                rc = s_automake_line(list, s + p, n - p, words[w].status);
                done = true;
            }
        }
        if (!done && s_starts(s, n, "ok ") && n > 3 && isdigit((unsigned char)s[3]))
            rc = s_tap_line(list, s + 3, n - 3, true);
        else if (!done && s_starts(s, n, "not ok ") && n > 7 && isdigit((unsigned char)s[7]))
            rc = s_tap_line(list, s + 7, n - 7, false);
        if (rc != 0)
            return -1;
    }
    if (list->count + list->dropped != before)
        kz_test_cases_finish(list);
    return 0;
}

/* ------------------------------------------------------------ summaries */

/* A number at S (N bytes) below 10^9, -1 when none; *USED gets the digits
   read (a longer number is not one: the caller sees a digit after it) */
static long s_num(const char *s, size_t n, size_t *used)
{
    size_t k = 0;
    long v = 0;
    while (k < n && isdigit((unsigned char)s[k]) && v < 100000000) {
        v = v * 10 + (s[k] - '0');
        k++;
    }
    *used = k;
    return k ? v : -1;
}

static long s_add(long a, long b)
{
    return a > KZ_TESTRESULT_MAX_COUNT - b ? KZ_TESTRESULT_MAX_COUNT : a + b;
}

/* "100% tests passed, 0 tests failed out of 5" */
static bool s_ctest_line(const char *s, size_t n, long *passed, long *failed)
{
    const char *p = NULL;
    for (size_t i = 0; i + 20 <= n; i++)
        if (memcmp(s + i, "% tests passed, ", 16) == 0) {
            p = s + i + 16;
            break;
        }
    if (!p)
        return false;
    size_t left = n - (size_t)(p - s), used;
    long f = s_num(p, left, &used);
    if (f < 0)
        return false;
    p += used;
    left -= used;
    const char *mid = " tests failed out of ";
    if (s_starts(p, left, " test failed out of "))
        mid = " test failed out of ";
    if (!s_starts(p, left, mid))
        return false;
    p += strlen(mid);
    left -= strlen(mid);
    long total = s_num(p, left, &used);
    if (total < 0 || total < f || (used < left && isdigit((unsigned char)p[used])))
        return false; /* none, fewer than failed, or 10^9 and more */
    *failed = f;
    *passed = total - f;
    return true;
}

/* Counts of a summary line: "N passed", "N failed", "N error(s)",
   "N skipped" anywhere in it; true when it names passed or failed tests */
static bool s_count_line(const char *s, size_t n, long *passed, long *failed, long *errors,
                         long *skipped, bool *timing)
{
    static const struct {
        const char *word;
        int which;
    } words[] = {{"passed", 0}, {"failed", 1},  {"errors", 2},
                 {"error", 2},  {"skipped", 3}, {"xpassed", 0}};
    long v[4] = {0, 0, 0, 0};
    bool seen[4] = {false, false, false, false};
    *timing = false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]) || (i > 0 && isalnum((unsigned char)s[i - 1])))
            continue;
        size_t used;
        long num = s_num(s + i, n - i, &used);
        size_t j = i + used;
        if (j < n && s[j] == ' ') {
            for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
                size_t wl = strlen(words[w].word);
                if (n - j - 1 >= wl && memcmp(s + j + 1, words[w].word, wl) == 0 &&
                    (j + 1 + wl == n || !isalpha((unsigned char)s[j + 1 + wl]))) {
                    v[words[w].which] = s_add(v[words[w].which], num);
                    seen[words[w].which] = true;
                    break;
                }
            }
        }
        /* pytest: " in 0.12s" */
        if (i >= 4 && memcmp(s + i - 4, " in ", 4) == 0) {
            size_t k = j;
            if (k < n && s[k] == '.') {
                k++;
                while (k < n && isdigit((unsigned char)s[k]))
                    k++;
            }
            if (k < n && s[k] == 's')
                *timing = true;
        }
        i = j;
    }
    /* pytest's "1 error in 0.05s" (a collection error), "2 skipped in
       0.01s" and "no tests ran in 0.01s" are summaries too */
    bool pytest_only = *timing && (seen[2] || seen[3] || memmem(s, n, "no tests ran in ", 16));
    if (!seen[0] && !seen[1] && !pytest_only)
        return false;
    *passed = v[0];
    *failed = v[1];
    *errors = v[2];
    *skipped = v[3];
    return true;
}

/* unittest's "Ran 6 tests in 0.001s": *RAN */
static bool s_unittest_ran(const char *s, size_t n, long *ran)
{
    if (!s_starts(s, n, "Ran "))
        return false;
    size_t used;
    long v = s_num(s + 4, n - 4, &used);
    if (v < 0 || (4 + used < n && isdigit((unsigned char)s[4 + used])))
        return false;
    const char *p = s + 4 + used;
    size_t left = n - 4 - used;
    if (s_starts(p, left, " tests in "))
        return (*ran = v), true;
    if (s_starts(p, left, " test in "))
        return (*ran = v), true;
    return false;
}

/* unittest's status line after "Ran N tests": "OK", "OK (skipped=1)",
   "FAILED (failures=1, errors=2, skipped=3, expected failures=1,
   unexpected successes=1)", "NO TESTS RAN"; the counts into *GOT */
static bool s_unittest_status(const char *s, size_t n, long ran, kz_test_summary_t *got)
{
    size_t k;
    if (s_starts(s, n, "NO TESTS RAN"))
        k = 12;
    else if (s_starts(s, n, "FAILED"))
        k = 6;
    else if (s_starts(s, n, "OK"))
        k = 2;
    else
        return false;
    long failures = 0, errors = 0, skipped = 0, unexpected = 0;
    if (k < n) {
        if (!s_starts(s + k, n - k, " (") || s[n - 1] != ')')
            return false;
        size_t i = k + 2, end = n - 1;
        while (i < end) {
            size_t eq = i;
            while (eq < end && s[eq] != '=' && s[eq] != ',')
                eq++;
            if (eq >= end || s[eq] != '=')
                return false;
            size_t used;
            long v = s_num(s + eq + 1, end - eq - 1, &used);
            if (v < 0)
                return false;
            size_t klen = eq - i;
            if (klen == 8 && memcmp(s + i, "failures", 8) == 0)
                failures = s_add(failures, v);
            else if (klen == 6 && memcmp(s + i, "errors", 6) == 0)
                errors = s_add(errors, v);
            else if (klen == 7 && memcmp(s + i, "skipped", 7) == 0)
                skipped = s_add(skipped, v);
            else if (klen == 20 && memcmp(s + i, "unexpected successes", 20) == 0)
                unexpected = s_add(unexpected, v);
            /* "expected failures" are passes; other keys are ignored */
            i = eq + 1 + used;
            if (i < end && !s_starts(s + i, end - i, ", "))
                return false;
            i += i < end ? 2 : 0;
        }
    }
    long failed = s_add(failures, unexpected);
    long passed = ran - failed - errors - skipped;
    *got = (kz_test_summary_t){"unittest", passed > 0 ? passed : 0, failed, errors, skipped};
    return true;
}

/* A count under a label of its own line, "PASSED: 16" or "failed: 0"
   (minimal C test harnesses print the pair): true with *N, *WHICH 0 for
   passed, 1 for failed */
static bool s_label_count(const char *s, size_t n, long *count, int *which)
{
    static const char *const labels[] = {"passed: ", "failed: "};
    for (int w = 0; w < 2; w++) {
        if (n <= 8 || strncasecmp(s, labels[w], 8) != 0)
            continue;
        size_t used;
        long v = s_num(s + 8, n - 8, &used);
        while (8 + used < n && isspace((unsigned char)s[8 + used]))
            used++;
        if (v < 0 || 8 + used != n)
            return false;
        *count = v;
        *which = w;
        return true;
    }
    return false;
}

bool kz_testresult_parse_summary(const char *text, size_t len, kz_test_summary_t *sum)
{
    size_t pos = 0, n;
    const char *s;
    bool found = false;
    kz_test_summary_t got = {NULL, 0, 0, 0, 0};
    long label_passed = -1; /* a "PASSED: N" line waiting for its "FAILED: N" */
    while (s_next_line(text, len, &pos, &s, &n)) {
        long lp, lf, le = 0, ls = 0, ran, count;
        bool timing;
        int which;
        if (s_label_count(s, n, &count, &which)) {
            if (which == 0)
                label_passed = count;
            else if (label_passed >= 0) {
                found = true;
                got = (kz_test_summary_t){"summary", label_passed, count, 0, 0};
                label_passed = -1;
            }
            continue;
        }
        if (s_unittest_ran(s, n, &ran)) {
            /* the status is the next line that is not empty */
            size_t next = pos, tn = 0;
            const char *t = NULL;
            while (s_next_line(text, len, &next, &t, &tn) && tn == 0)
                ;
            if (t && tn > 0 && s_unittest_status(t, tn, ran, &got)) {
                found = true;
                pos = next;
            }
            continue;
        }
        if (s_ctest_line(s, n, &lp, &lf)) {
            found = true;
            got = (kz_test_summary_t){"ctest", lp, lf, 0, 0};
        } else if (s_count_line(s, n, &lp, &lf, &le, &ls, &timing)) {
            found = true;
            got = (kz_test_summary_t){timing ? "pytest" : "summary", lp, lf, le, ls};
        }
    }
    if (found)
        *sum = got;
    return found;
}

/* ------------------------------------------------------------ problems */

#define S_PROBLEM_PART 300 /* bytes of the place and of the cause kept */

/* The exception of a traceback's last line, "ModuleNotFoundError: No
   module named 'x'", or pytest's "E   ImportError: ...": true with *AT
   and *N set to the exception and its message (pytest's "E" cut) */
static bool s_error_line(const char *s, size_t n, const char **at, size_t *n_at)
{
    size_t k = 0;
    if (n > 2 && s[0] == 'E' && (s[1] == ' ' || s[1] == '\t')) {
        k = 1;
        while (k < n && (s[k] == ' ' || s[k] == '\t'))
            k++;
    }
    size_t b = k;
    if (k >= n || !(isalpha((unsigned char)s[k]) || s[k] == '_'))
        return false;
    while (k < n && (isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '.'))
        k++;
    size_t w = k - b;
    bool named = (w > 5 && memcmp(s + k - 5, "Error", 5) == 0) ||
                 (w > 9 && memcmp(s + k - 9, "Exception", 9) == 0);
    if (!named || (k < n && s[k] != ':'))
        return false;
    *at = s + b;
    *n_at = n - b;
    return true;
}

/* S (N bytes) without every "STRIP/", cleaned and cut, into OUT */
static void s_problem_part(const char *s, size_t n, const char *strip, char *out, size_t outlen)
{
    char tmp[S_MAX_TEXT];
    size_t o = 0, k = strip ? strlen(strip) : 0;
    for (size_t i = 0; i < n && o < sizeof tmp;) {
        if (k && i + k < n && memcmp(s + i, strip, k) == 0 && s[i + k] == '/') {
            i += k + 1;
            continue;
        }
        tmp[o++] = s[i++];
    }
    while (o > 0 && tmp[o - 1] == '.') /* "ImportError while loading conftest '...'." */
        o--;
    char *c = kz_testresult_clean(tmp, o, outlen > 4 ? outlen - 4 : 0);
    snprintf(out, outlen, "%s", c ? c : "");
    free(c);
}

void kz_testresult_problem(const char *text, size_t len, const char *strip, char *buf,
                           size_t buflen)
{
    if (buflen == 0)
        return;
    buf[0] = '\0';
    const char *where = NULL, *cause = NULL, *first_cause = NULL, *usage = NULL;
    size_t nwhere = 0, ncause = 0, nfirst = 0, nusage = 0;
    size_t pos = 0, n;
    const char *s;
    while (s_next_line(text, len, &pos, &s, &n) && !cause) {
        const char *at;
        size_t nat;
        if (!where && (s_starts(s, n, "ImportError while loading conftest ") ||
                       s_starts(s, n, "ImportError while importing test module ") ||
                       s_starts(s, n, "ImportError: Failed to import test module: "))) {
            where = s, nwhere = n;
        } else if (s_error_line(s, n, &at, &nat)) {
            if (where)
                cause = at, ncause = nat; /* the first error after the place */
            else if (!first_cause)
                first_cause = at, nfirst = nat;
        } else if (!usage && s_starts(s, n, "ERROR: ")) {
            usage = s, nusage = n;
        }
    }
    if (!cause && !where)
        cause = first_cause, ncause = nfirst;
    char a[S_PROBLEM_PART + 4] = "", b[S_PROBLEM_PART + 4] = "";
    if (where)
        s_problem_part(where, nwhere, strip, a, sizeof a);
    if (cause)
        s_problem_part(cause, ncause, strip, b, sizeof b);
    if (!where && !cause && usage)
        s_problem_part(usage, nusage, strip, a, sizeof a);
    snprintf(buf, buflen, "%s%s%s", a, *a && *b ? ": " : "", b);
}
