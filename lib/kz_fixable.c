/*  kz_fixable.c - which findings a fixer recipe can change (kz_fixable.h)

    The identifier test is a heuristic and errs towards "a name": a word
    that is a name somewhere in the file must not be handed to a fixer
    that rewrites every occurrence (codespell -w does), and a word it
    cannot judge is left alone.
*/
#include "kz_fixable.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_WORD_MAX 64

typedef struct {
    const char *word;
    const char *text;
} s_reason_t;

static const s_reason_t s_reasons[KZ_UNPLANNED_COUNT] = {
    [KZ_FIXABLE_YES] = {"fixable", "fixable"},
    [KZ_UNPLANNED_NO_FIXER] = {"no_fixer", "no fixer for the rule"},
    [KZ_UNPLANNED_SEVERAL] = {"several_suggestions", "several suggestions"},
    [KZ_UNPLANNED_NO_SUGGESTION] = {"no_suggestion", "no suggestion the fixer applies"},
    [KZ_UNPLANNED_IDENTIFIER] = {"identifier", "an identifier"},
    [KZ_UNPLANNED_RENAMES] = {"renames_identifier",
                              "the fixer would also rename an identifier in the file"},
    [KZ_UNPLANNED_UNREADABLE] = {"unreadable", "its file could not be read"},
    [KZ_UNPLANNED_NO_FIXIT] = {"no_fixit", "no fix-it"},
    [KZ_UNPLANNED_EXCLUDED] = {"left_alone", "a file the fixer leaves alone"},
    [KZ_UNPLANNED_DEFERRED] = {"deferred", "another fixer's plan for the file goes first"},
};

const char *kz_unplanned_word(kz_unplanned_t why)
{
    return (unsigned)why < KZ_UNPLANNED_COUNT ? s_reasons[why].word : "unknown";
}

const char *kz_unplanned_text(kz_unplanned_t why)
{
    return (unsigned)why < KZ_UNPLANNED_COUNT ? s_reasons[why].text : "unknown";
}

const char *kz_unplanned_text_of(const char *word)
{
    for (size_t i = 0; word && i < KZ_UNPLANNED_COUNT; i++)
        if (strcmp(s_reasons[i].word, word) == 0)
            return s_reasons[i].text;
    return word;
}

/* ----------------------------------------------------------- predicates */

static const char *const s_predicates[] = {"single-suggestion", "not-identifier", "has-fix", NULL};

bool kz_fixable_known(const char *name)
{
    for (size_t i = 0; name && s_predicates[i]; i++)
        if (strcmp(s_predicates[i], name) == 0)
            return true;
    return false;
}

bool kz_fixable_defers_to(const kz_fixer_config_t *fixer, const char *other)
{
    for (size_t i = 0; fixer && other && i < fixer->defer_to_count && fixer->defer_to[i]; i++)
        if (strcmp(fixer->defer_to[i], other) == 0)
            return true;
    return false;
}

bool kz_fixable_needs_source(const kz_fixer_config_t *fixer)
{
    for (size_t i = 0; fixer && i < fixer->fixes_count && fixer->fixes[i]; i++)
        if (strcmp(fixer->fixes[i], "not-identifier") == 0)
            return true;
    return false;
}

kz_unplanned_t kz_fixable_single_suggestion(const kz_finding_t *f)
{
    const char *fix = f ? f->fix : NULL;
    if (!fix)
        return KZ_UNPLANNED_NO_SUGGESTION;
    /* codespell appends "  | reason" to a suggestion it does not apply */
    if (strchr(fix, '|'))
        return KZ_UNPLANNED_NO_SUGGESTION;
    bool letter = false;
    for (const char *p = fix; *p; p++)
        letter = letter || isalpha((unsigned char)*p);
    if (!letter)
        return KZ_UNPLANNED_NO_SUGGESTION;
    return strchr(fix, ',') ? KZ_UNPLANNED_SEVERAL : KZ_FIXABLE_YES;
}

bool kz_fixable_word(const char *message, char *word, size_t len)
{
    const char *arrow = message ? strstr(message, " ==> ") : NULL;
    if (!arrow || !len)
        return false;
    const char *start = message;
    while (start < arrow && isspace((unsigned char)*start))
        start++;
    size_t n = (size_t)(arrow - start);
    if (n == 0 || n >= len || n > S_WORD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)start[i]) && start[i] != '\'' && start[i] != '-')
            return false;
    memcpy(word, start, n);
    word[n] = '\0';
    return true;
}

/* -------------------------------------------------------------- lexers */

typedef enum { S_LEX_PYTHON, S_LEX_C, S_LEX_SHELL, S_LEX_PROSE, S_LEX_OPAQUE } s_lex_t;

static s_lex_t s_lex_of(const char *path)
{
    static const struct {
        const char *ext;
        s_lex_t lex;
    } exts[] = {
        {".py", S_LEX_PYTHON}, {".pyi", S_LEX_PYTHON}, {".c", S_LEX_C},        {".h", S_LEX_C},
        {".cc", S_LEX_C},      {".cpp", S_LEX_C},      {".cxx", S_LEX_C},      {".hpp", S_LEX_C},
        {".hh", S_LEX_C},      {".sh", S_LEX_SHELL},   {".bash", S_LEX_SHELL}, {".md", S_LEX_PROSE},
        {".rst", S_LEX_PROSE}, {".txt", S_LEX_PROSE},
    };
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/'))
        return S_LEX_OPAQUE;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i].ext) == 0)
            return exts[i].lex;
    return S_LEX_OPAQUE;
}

/* A quoted string from SRC[I] (the opening quote, QUOTE long: 1 or 3)
   to its end. ESCAPES: a backslash skips the next byte. Unless
   MULTILINE, a newline ends it too (an unterminated one). Returns the
   index after it. */
static size_t s_skip_string(const char *src, size_t len, size_t i, size_t quote, bool escapes,
                            bool multiline)
{
    char q = src[i];
    i += quote;
    while (i < len) {
        if (escapes && src[i] == '\\') {
            i += 2;
            continue;
        }
        if (!multiline && src[i] == '\n')
            return i;
        if (src[i] == q && (quote == 1 || (i + 2 < len && src[i + 1] == q && src[i + 2] == q)))
            return i + quote;
        i++;
    }
    return len;
}

static size_t s_skip_line(const char *src, size_t len, size_t i)
{
    const char *nl = memchr(src + i, '\n', len - i);
    return nl ? (size_t)(nl - src) : len;
}

/* Set MASK[i] to 1 for every byte of SRC that is code (not inside a
   comment or a string) */
static void s_mark_code(s_lex_t lex, const char *src, size_t len, unsigned char *mask)
{
    size_t i = 0;
    while (i < len) {
        char c = src[i];
        size_t end = 0;
        if (lex == S_LEX_PYTHON && c == '#')
            end = s_skip_line(src, len, i);
        else if (lex == S_LEX_PYTHON && (c == '\'' || c == '"')) {
            bool triple = i + 2 < len && src[i + 1] == c && src[i + 2] == c;
            end = s_skip_string(src, len, i, triple ? 3 : 1, true, triple);
        } else if (lex == S_LEX_C && c == '/' && i + 1 < len && src[i + 1] == '/')
            end = s_skip_line(src, len, i);
        else if (lex == S_LEX_C && c == '/' && i + 1 < len && src[i + 1] == '*') {
            const char *close = NULL;
            for (size_t k = i + 2; k + 1 < len && !close; k++)
                if (src[k] == '*' && src[k + 1] == '/')
                    close = src + k;
            end = close ? (size_t)(close - src) + 2 : len;
        } else if (lex == S_LEX_C && (c == '"' || c == '\''))
            end = s_skip_string(src, len, i, 1, true, false);
        else if (lex == S_LEX_SHELL && c == '#' &&
                 (i == 0 || strchr(" \t\n;|&(", src[i - 1]) != NULL))
            end = s_skip_line(src, len, i);
        else if (lex == S_LEX_SHELL && c == '\'')
            end = s_skip_string(src, len, i, 1, false, true);
        else if (lex == S_LEX_SHELL && c == '"')
            end = s_skip_string(src, len, i, 1, true, true);
        if (end > i) {
            i = end; /* a comment or a string: left 0 */
            continue;
        }
        mask[i++] = 1;
    }
}

/* --------------------------------------------------------- identifiers */

static bool s_alnum(char c)
{
    return isalnum((unsigned char)c) != 0;
}

/* The word before position I on the same line (skipping blanks) is one
   that introduces a name */
static bool s_after_keyword(const char *src, size_t i)
{
    static const char *const keywords[] = {"def",      "class",  "import",   "as",       "from",
                                           "struct",   "enum",   "union",    "typedef",  "define",
                                           "local",    "export", "function", "unset",    "declare",
                                           "readonly", "global", "alias",    "nonlocal", NULL};
    size_t k = i;
    while (k > 0 && (src[k - 1] == ' ' || src[k - 1] == '\t'))
        k--;
    size_t end = k;
    while (k > 0 && (s_alnum(src[k - 1]) || src[k - 1] == '_'))
        k--;
    if (end == k || end - k > 10)
        return false;
    for (size_t n = 0; keywords[n]; n++)
        if (strlen(keywords[n]) == end - k && strncmp(src + k, keywords[n], end - k) == 0)
            return true;
    return false;
}

/* The occurrence SRC[I, I+N) sits where a name would */
static bool s_name_like(const char *src, size_t len, size_t i, size_t n)
{
    char prev = i > 0 ? src[i - 1] : '\n', prev2 = i > 1 ? src[i - 2] : '\n';
    size_t j = i + n;
    char next = j < len ? src[j] : '\n', next2 = j + 1 < len ? src[j + 1] : '\n';
    if (prev == '_' || next == '_' || prev == '$' || prev == '`' || next == '`')
        return true; /* snake_case, $var, `code` */
    if (next == '(' || next == '[' ||
        (next == '.' && (isalpha((unsigned char)next2) || next2 == '_')))
        return true; /* word(, word[, word.x */
    if ((next == '-' && next2 == '>') || (next == ':' && next2 == ':'))
        return true;
    if ((prev == '.' && (s_alnum(prev2) || prev2 == '_' || prev2 == ')' || prev2 == ']')) ||
        (prev == '>' && prev2 == '-') || (prev == ':' && prev2 == ':') || prev == '{')
        return true; /* x.word, ->word, ::word, {word} */
    size_t k = j;
    while (k < len && (src[k] == ' ' || src[k] == '\t'))
        k++;
    if (k < len && src[k] == '=' && (k + 1 >= len || src[k + 1] != '='))
        return true; /* word = ..., word=... */
    return s_after_keyword(src, i);
}

bool kz_fixable_is_identifier(const char *word, const char *src, size_t len, const char *path)
{
    size_t n = word ? strlen(word) : 0;
    if (n == 0 || !src)
        return true;
    s_lex_t lex = s_lex_of(path);
    unsigned char *mask = NULL;
    if (lex == S_LEX_PYTHON || lex == S_LEX_C || lex == S_LEX_SHELL) {
        mask = calloc(len + 1, 1);
        if (!mask)
            return true; /* cannot tell */
        s_mark_code(lex, src, len, mask);
    }
    bool name = false;
    for (size_t i = 0; !name && i + n <= len; i++) {
        if (strncasecmp(src + i, word, n) != 0)
            continue;
        if ((i > 0 && s_alnum(src[i - 1])) || (i + n < len && s_alnum(src[i + n])))
            continue; /* part of a longer word */
        name = lex == S_LEX_OPAQUE || (mask && mask[i]) || s_name_like(src, len, i, n);
    }
    free(mask);
    return name;
}

/* -------------------------------------------------------------- checks */

/* FILE matches one of FIXER's exclude globs (on the whole path or its
   base name) */
static bool s_excluded(const kz_fixer_config_t *fixer, const char *file)
{
    const char *base = file ? strrchr(file, '/') : NULL;
    base = base ? base + 1 : file;
    for (size_t i = 0; file && i < fixer->exclude_count && fixer->exclude[i]; i++)
        if (fnmatch(fixer->exclude[i], file, 0) == 0 || fnmatch(fixer->exclude[i], base, 0) == 0)
            return true;
    return false;
}

kz_unplanned_t kz_fixable_check(const kz_fixer_config_t *fixer, const kz_finding_t *f,
                                const char *src, size_t len)
{
    if (fixer && s_excluded(fixer, f->file))
        return KZ_UNPLANNED_EXCLUDED;
    for (size_t i = 0; fixer && i < fixer->fixes_count && fixer->fixes[i]; i++) {
        const char *p = fixer->fixes[i];
        kz_unplanned_t why = KZ_FIXABLE_YES;
        if (strcmp(p, "single-suggestion") == 0)
            why = kz_fixable_single_suggestion(f);
        else if (strcmp(p, "has-fix") == 0)
            why = f->fix && f->fix[0] ? KZ_FIXABLE_YES : KZ_UNPLANNED_NO_FIXIT;
        else if (strcmp(p, "not-identifier") == 0) {
            char word[S_WORD_MAX + 1];
            if (!kz_fixable_word(f->message, word, sizeof word))
                why = KZ_UNPLANNED_NO_SUGGESTION;
            else if (!src || memchr(src, '\0', len))
                why = KZ_UNPLANNED_UNREADABLE; /* missing, or not text */
            else if (kz_fixable_is_identifier(word, src, len, f->file))
                why = KZ_UNPLANNED_IDENTIFIER;
        } else
            why = KZ_UNPLANNED_NO_FIXER; /* config loading refuses unknown names */
        if (why != KZ_FIXABLE_YES)
            return why;
    }
    return KZ_FIXABLE_YES;
}
