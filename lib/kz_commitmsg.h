/*  kz_commitmsg.h - the commit message of a plan's fix, in the target's style

    Pure functions (no I/O), so tests feed them plain data. The message is

        <subject>                       (at most KZ_COMMIT_SUBJECT_MAX characters)

        - <file>:<line> <rule>: <message>
        ...

        Kaizen-Plan: <plan id>

    The subject is Conventional Commits ("style: fix 3 spelling mistakes
    in src/a.c") when most of the target's recent subjects are, otherwise
    plain imperative ("Fix 3 spelling mistakes in src/a.c"). Everything
    that comes from a finding (file, rule, message) comes from a hostile
    repository: it is put on one line, control characters removed, cut
    to a sane length, so it can never start a line of its own - never a
    trailer ("Kaizen-Plan: ..."), never a new paragraph.
*/
#ifndef KZ_COMMITMSG_H_INCLUDED
#define KZ_COMMITMSG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define KZ_COMMIT_SUBJECT_MAX  72  /* characters of a subject */
#define KZ_COMMIT_LISTED_MAX   50  /* findings listed in a body */
#define KZ_COMMIT_MESSAGE_CUT  120 /* characters of one finding's message */
#define KZ_COMMIT_TEMPLATE_MAX 200

/* The default subject template (fixers[].subject); "Apply {tool} to
   {file}" when the plan names no findings */
#define KZ_COMMIT_DEFAULT_TEMPLATE "Fix {n} {tool} finding{s} in {file}"

/* One finding a commit fixes (the strings are untrusted) */
typedef struct {
    const char *file;
    int line; /* 0: the whole file */
    const char *rule;
    const char *message;
} kz_commit_finding_t;

typedef struct {
    const char *plan_id;      /* the Kaizen-Plan trailer ([A-Za-z0-9_-]) */
    const char *tool;         /* {tool} */
    const char *subject;      /* fixers[].subject, NULL = KZ_COMMIT_DEFAULT_TEMPLATE */
    const char *commit_type;  /* fixers[].commit_type, NULL = "style" */
    bool conventional;        /* the target's history is Conventional Commits */
    const char *const *files; /* the plan's files */
    size_t nfiles;
    size_t nfixed;                       /* {n}: the findings the plan fixes */
    const kz_commit_finding_t *findings; /* the ones with details, listed in the body */
    size_t nfindings;
    const char *note; /* optional extra body line (paths put back), untrusted */
} kz_commit_info_t;

/* True when SUBJECT reads "type(scope)!: description" */
bool kz_commit_is_conventional(const char *subject);
/* True when more than half of SUBJECTS (merge and revert subjects left
   out) are Conventional Commits; false for none */
bool kz_commit_mostly_conventional(const char *const *subjects, size_t n);

/* 0 when TEMPLATE is a usable subject template (known placeholders,
   printable, 1..KZ_COMMIT_TEMPLATE_MAX bytes), -1 with WHY */
int kz_commit_check_template(const char *tmpl, char *why, size_t len);
/* 0 when TYPE is a Conventional Commits type ([a-z], 1..20), -1 with WHY */
int kz_commit_check_type(const char *type, char *why, size_t len);

/* SRC on one line into DST: control characters (C0, DEL, C1, U+2028/9)
   become spaces, whitespace runs one space, invalid UTF-8 '?', trimmed,
   cut at MAX characters ("..." ends a cut text). DST gets at most LEN-1
   bytes (cut at a character boundary). */
void kz_commit_clean(char *dst, size_t len, const char *src, size_t max);

/* The subject of INFO into BUF (KZ_COMMIT_SUBJECT_MAX characters at most:
   the file shortened to its base name, then to "N files", then cut) */
void kz_commit_subject(const kz_commit_info_t *info, char *buf, size_t len);

/* The whole message (malloc'd), NULL when out of memory. At most
   KZ_COMMIT_LISTED_MAX findings are listed, then "- and N more" (N from
   nfixed); without findings no list. */
char *kz_commit_message(const kz_commit_info_t *info);

#endif
