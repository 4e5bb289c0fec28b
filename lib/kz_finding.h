/*  kz_finding.h - normalised findings and the parsers of tool output

    A finding is the same whatever tool produced it (DESIGN.md section 2,
    PROTOCOL.md 4.7): tool, rule, severity, category, file (relative to
    the target's root), line, col, message, fingerprint, optional fix.

    The parsers turn one tool run's output into findings:
      - "gcc":         FILE:LINE[:COL]: [LEVEL:] MESSAGE [RULE] lines
                       (gcc, clang-tidy, cppcheck --template=gcc, mypy,
                       flake8's default format "FILE:LINE:COL: CODE msg",
                       shellcheck -f gcc, codespell "FILE:LINE: a ==> b")
      - "sarif":       SARIF 2.1.0 JSON (runs[].results[])
      - "pylint-json": pylint --output-format=json
      - "files":       check-mode formatters (black --check, isort
                       --check-only, clang-format --dry-run): one finding
                       per checked file the output names (line 0)
    A parser never fails on garbage: unparseable lines are counted in
    kz_parse_stats_t.skipped, and only a structurally broken JSON document
    makes it return -1 with a reason.
*/
#ifndef KZ_FINDING_H_INCLUDED
#define KZ_FINDING_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"
#include "kz_msg.h"

#define KZ_FINGERPRINT_LEN 32 /* hex digits */

typedef struct {
    char *tool;
    char *rule;
    char *severity; /* info | low | medium | high | critical */
    char *category; /* style | bug | type | ... */
    char *file;     /* relative to the target root, normalised ("a/b.py") */
    int line;       /* 0: the whole file */
    int col;        /* 0: unknown */
    char *message;
    char *fix; /* NULL or a hint (codespell's suggestion, ...) */
    /* NULL: the project's own code, which plans may change; else why no
       plan may touch it ("vendored: vendor/", "generated: .gitattributes
       linguist-generated", ...; kz_scope.h). Still reported. */
    char *excluded;
    char fingerprint[KZ_FINGERPRINT_LEN + 1];
} kz_finding_t;

typedef struct {
    kz_finding_t *items;
    size_t count;
    size_t cap;
} kz_findings_t;

void kz_findings_init(kz_findings_t *list);
void kz_findings_free(kz_findings_t *list);
/* Append a copy of F (strings duplicated). 0 / -1 (out of memory) */
int kz_findings_add(kz_findings_t *list, const kz_finding_t *f);
/* Move every finding of SRC to the end of DST; SRC is left empty. 0 / -1 */
int kz_findings_move(kz_findings_t *dst, kz_findings_t *src);
/* Sort by file, line, col, tool, rule (stable output for tests and messages) */
void kz_findings_sort(kz_findings_t *list);

/* Fingerprints (PROTOCOL.md section 6): the first 16 bytes of SHA-256,
   in hex, over tool, rule, file and the finding's source line with every
   whitespace run collapsed to one space (so line shifts keep it), or the
   message when the line is 0 or cannot be read; the k-th repeat of the
   same tool, rule, file and line gets "\0" and k appended (so two
   identical lines differ). ROOT is the directory the file paths are
   relative to. Fills every finding's fingerprint. */
void kz_findings_fingerprint(kz_findings_t *list, const char *root);

/* Apply TOOL's severity/category defaults and rules[] overrides to every
   finding whose severity or category the parser left NULL, and to every
   finding a rule override matches (first matching rule wins); then drop
   the findings of a rule in TOOL's ignore globs or of a severity below its
   min_severity. */
int kz_findings_classify(kz_findings_t *list, const kz_tool_config_t *tool);

/* Append F as a finding map to the array ARR of MSG (PROTOCOL.md 4.7). 0 / -1 */
int kz_finding_to_msg(kz_msg_t *msg, kz_val_t *arr, const kz_finding_t *f);
/* Read a finding map VAL (a decoded finding.batch item) into F (strings
   duplicated; free with kz_finding_clear). 0 / -1 when a field is missing */
int kz_finding_from_msg(const kz_val_t *val, kz_finding_t *f);
void kz_finding_clear(kz_finding_t *f);

/* ------------------------------------------------------------ parsers */

typedef struct {
    const char *tool;         /* tool name put in every finding */
    const char *root;         /* the directory the tool ran in (the target root) */
    const char *const *files; /* the files the tool was given (relative to root), NULL-terminated;
                                 used by the "files" format and to keep findings inside them */
    size_t nfiles;
} kz_parse_ctx_t;

typedef struct {
    size_t lines;   /* output lines (or results) looked at */
    size_t parsed;  /* findings produced */
    size_t skipped; /* lines or results that were not findings */
    size_t outside; /* findings naming a file outside root (dropped) */
} kz_parse_stats_t;

/* Parse OUTPUT (LEN bytes, not necessarily NUL-terminated) in FORMAT
   ("gcc", "sarif", "pylint-json", "files") into OUT. Paths are made
   relative to ctx->root ("./a.py", "/abs/root/a.py" -> "a.py"); findings
   naming a file outside the root are dropped and counted. Severity and
   category are set from the tool's output when it says (an error/warning
   level), else left NULL for kz_findings_classify. 0, or -1 with ERRBUF
   (unknown format, a JSON document that does not parse). */
int kz_parse_output(const char *format, const char *output, size_t len, const kz_parse_ctx_t *ctx,
                    kz_findings_t *out, kz_parse_stats_t *stats, char *errbuf, size_t errlen);

/* The language of a path from its extension: "python" (.py, .pyi),
   "c" (.c .h), "cpp" (.cc .cpp .cxx .hpp .hh), "shell" (.sh .bash),
   "javascript" (.js .mjs .cjs), "typescript" (.ts), "markdown" (.md),
   "rst", "yaml", "text" otherwise */
const char *kz_language_of(const char *path);

/* Severity rank: info 0, low 1, medium 2, high 3, critical 4; -1 unknown */
int kz_severity_rank(const char *severity);

#endif
