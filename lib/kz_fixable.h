/*  kz_fixable.h - which findings a fixer recipe can change

    A fixer's `rules` globs say which rules of its tool it is for; its
    `fixes` list names built-in predicates a finding must also pass before
    the planner gives it to the fixer (docs/planning.md "What a fixer can
    fix"). Every predicate is conservative: when it cannot tell, the
    finding is not planned. The predicates are pure (they look at the
    finding and, for some, at the text of its file), so tests feed them
    plain strings.

      single-suggestion   the finding's fix holds exactly one suggestion
                          and no reason ("teh ==> the"; codespell -w
                          applies nothing else)
      not-identifier      the misspelt word (the message before " ==> ")
                          is not used as a name in its file: in a code
                          file it occurs only inside comments and strings,
                          and nowhere in a name-like place ("word(",
                          "word =", "x.word", "word.x", "->word",
                          "def word", "import word", "as word", "$word",
                          "word_", "_word", ...)
      has-fix             the finding carries a suggested fix (a fix-it)
*/
#ifndef KZ_FIXABLE_H_INCLUDED
#define KZ_FIXABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"
#include "kz_finding.h"

/* Why a finding is not planned (KZ_FIXABLE_YES: it is) */
typedef enum {
    KZ_FIXABLE_YES = 0,
    KZ_UNPLANNED_NO_FIXER,      /* no fixer's tool and rules take it */
    KZ_UNPLANNED_SEVERAL,       /* several suggestions */
    KZ_UNPLANNED_NO_SUGGESTION, /* no suggestion, or one with a reason (not applied) */
    KZ_UNPLANNED_IDENTIFIER,    /* the word is a name in the code */
    KZ_UNPLANNED_RENAMES,       /* the fixer would also rename an identifier in the file */
    KZ_UNPLANNED_UNREADABLE,    /* its file could not be read to decide */
    KZ_UNPLANNED_NO_FIXIT,      /* the tool suggested no fix */
    KZ_UNPLANNED_EXCLUDED,      /* its file is one the fixer leaves alone (fixers[].exclude) */
    KZ_UNPLANNED_DEFERRED,      /* a fixer it defers to has a plan for the file (defer_to) */
    KZ_UNPLANNED_COUNT
} kz_unplanned_t;

/* The reason's word ("no_fixer", "several_suggestions", ...): the key in
   plan.batch's `unplanned` map (PROTOCOL.md 4.11a) */
const char *kz_unplanned_word(kz_unplanned_t why);
/* The reason in words ("no fixer for the rule", "several suggestions", ...) */
const char *kz_unplanned_text(kz_unplanned_t why);
/* The words of a reason's WORD, or WORD itself when unknown */
const char *kz_unplanned_text_of(const char *word);

/* True when FIXER defers to the fixer named OTHER (fixers[].defer_to) */
bool kz_fixable_defers_to(const kz_fixer_config_t *fixer, const char *other);

/* True when NAME is a predicate fixers[].fixes may name */
bool kz_fixable_known(const char *name);
/* True when one of FIXER's predicates reads the finding's file */
bool kz_fixable_needs_source(const kz_fixer_config_t *fixer);

/* Whether FIXER (whose tool and rules already take F) can change F:
   F's file must match none of fixer->exclude and every predicate of
   fixer->fixes must hold. SRC (LEN bytes, not
   necessarily NUL-terminated) is the text of F's file, or NULL when it
   could not be read (a predicate that needs it then says
   KZ_UNPLANNED_UNREADABLE). */
kz_unplanned_t kz_fixable_check(const kz_fixer_config_t *fixer, const kz_finding_t *f,
                                const char *src, size_t len);

/* The predicates on their own, for tests */
/* KZ_FIXABLE_YES, KZ_UNPLANNED_SEVERAL or KZ_UNPLANNED_NO_SUGGESTION */
kz_unplanned_t kz_fixable_single_suggestion(const kz_finding_t *f);
/* The misspelt word of a codespell-like message "WORD ==> FIX" into WORD
   (LEN bytes). false when the message has no such form or the word is
   empty, too long or holds other than letters, digits, "'" and "-" */
bool kz_fixable_word(const char *message, char *word, size_t len);
/* True when WORD (compared without regard to case, as codespell does)
   looks like a name in SRC, the text of the file PATH. How the file is
   read depends on its extension: Python, C/C++ and shell files are split
   into code and comments/strings (an occurrence in code is a name);
   .md, .rst and .txt are prose (only name-like places count); in any
   other file every occurrence counts as a name (a key, a field: when
   unsure, do not plan). */
bool kz_fixable_is_identifier(const char *word, const char *src, size_t len, const char *path);

#endif
