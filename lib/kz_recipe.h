/*  kz_recipe.h - running tool and fixer recipes of the config

    Shared by code-health (scans), code-reviewer (re-runs a plan's tool on
    the touched files) and code-refactorer (runs a fixer). Commands come
    only from the local config, never from a message; they run through
    kz_proc (no shell, own process group, timeout). Every path handed to a
    command is checked to stay inside the directory it runs in.
*/
#ifndef KZ_RECIPE_H_INCLUDED
#define KZ_RECIPE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kz_config.h"
#include "kz_finding.h"

/* True when REL is a safe relative path inside ROOT: not empty, not
   absolute, no ".." component, no NUL, and - when it exists - its real
   path (symlinks resolved) is inside ROOT's real path. Else false with
   WHY ("'../x' leaves the worktree"). A name starting with '-' is
   accepted (it is a legal file name and is checked like any other):
   kz_argv_file makes it "./NAME" wherever it becomes an argument. */
bool kz_path_inside(const char *root, const char *rel, char *why, size_t len);

/* True when TOOL applies to a target with LANGUAGES (NULL-terminated;
   a tool with no languages applies to every target; a target with no
   languages gets every tool) */
bool kz_tool_applies(const kz_tool_config_t *tool, char *const *languages);

/* Whether TOOL runs on the target at ROOT: always for gate "always" (bug
   and security finders); for gate "chosen", evidence that the project
   chose it (tools[].requires): true when requires is empty or any entry
   holds ("FILE" exists, "FILE:TEXT" exists and contains TEXT). WHICH (may
   be NULL) gets the entry that matched ("gate: always" for that gate), or a
   summary of what was looked for when none did. */
bool kz_tool_chosen(const kz_tool_config_t *tool, const char *root, char *which, size_t len);

/* True when PATH (relative) matches one of TOOL's files globs (on the
   whole path or its base name; a tool without globs takes every file)
   and none of its exclude globs */
bool kz_tool_wants(const kz_tool_config_t *tool, const char *path);

/* True when FIXER fixes findings of RULE (of its tool) */
bool kz_fixer_fixes(const kz_fixer_config_t *fixer, const char *tool, const char *rule);
/* The first fixer of CFG that fixes TOOL's RULE, or NULL */
const kz_fixer_config_t *kz_fixer_for(const kz_config_t *cfg, const char *tool, const char *rule);

/* True when exit code CODE means "ran" for TOOL (exit_ok; default 0 and 1) */
bool kz_tool_exit_ok(const kz_tool_config_t *tool, int code);

/* FILE (a path relative to the directory a command runs in) as one
   argument of that command: "./FILE" when FILE starts with '-', so that
   no file name is ever taken for an option ("--addon=x.c",
   "--output-file=/y.c" are legal names), else FILE as it is. Every file
   name a recipe puts in an argv goes through this. A malloc'd string,
   NULL on out of memory. */
char *kz_argv_file(const char *file);

/* The python module ARGV runs when it is "PYTHON [-FLAGS...] -m MODULE
   ...", each flag a single dash and letters ("-I", "-P", "-B"), among the
   first ARGC elements (argc 0: up to its NULL); else NULL */
const char *kz_argv_python_module(char *const *argv, size_t argc);

/* Expand ARGV (NULL-terminated) into a new NULL-terminated malloc'd
   vector: the element "{files}" becomes FILES (NFILES of them, each
   through kz_argv_file), "{root}"
   becomes ROOT, "{junit}" becomes JUNIT (when non-NULL); other elements
   are copied. Free with kz_strv_free. NULL on out of memory. */
char **kz_argv_expand(char *const *argv, const char *const *files, size_t nfiles, const char *root,
                      const char *junit);
/* kz_argv_expand, and "{compdb}" in an element becomes COMPDB (the
   directory holding compile_commands.json, kz_compdb.h); with COMPDB
   NULL an element holding "{compdb}" is left out, so a recipe writes it
   as one element ("-p={compdb}", "--project={compdb}/compile_commands.json")
   and runs without a database when there is none */
char **kz_argv_expand_compdb(char *const *argv, const char *const *files, size_t nfiles,
                             const char *root, const char *junit, const char *compdb);
void kz_strv_free(char **v);

/* kz_argv_expand_compdb of ARGV, without its "{files}" element when
   DROP_FILES, and with EXTRA (NULL-terminated, may be NULL; copied as they
   are, no "{root}" substitution) inserted before the first "--" of ARGV,
   else before "{files}", else at the end: a project's own arguments for
   the tool (kz_project_setup). NULL on out of memory. */
char **kz_argv_build(char *const *argv, const char *const *extra, bool drop_files,
                     const char *const *files, size_t nfiles, const char *root, const char *junit,
                     const char *compdb);

/* Options of one tool run */
typedef struct {
    const char *root;         /* run in this directory (a worktree); paths relative to it */
    const char *const *files; /* files to check (relative), NULL-terminated; each must be inside */
    size_t nfiles;
    void (*tick)(void *arg); /* kz_proc tick (kz_agent_proc_tick) or NULL */
    void *tick_arg;
    bool (*cancel)(void *arg); /* kz_proc cancel (kz_agent_proc_cancel) or NULL */
    void *cancel_arg;
    const char *const *extra_args; /* the project's arguments for the tool, added before the
                                      recipe's "--" (kz_tool_setup_t.args), or NULL */
    bool project_files;            /* the project names what the tool checks (kz_tool_setup_t): run
                           once without "{files}" and keep only the findings in FILES */
    const char *compdb;            /* "{compdb}": the directory of compile_commands.json, or NULL */
} kz_tool_run_opts_t;

typedef enum {
    KZ_TOOL_OK,      /* ran; findings parsed */
    KZ_TOOL_ERROR,   /* crashed, bad exit code, or output that could not be parsed */
    KZ_TOOL_TIMEOUT, /* killed after tools[].timeout */
    KZ_TOOL_MISSING  /* the program is not installed */
} kz_tool_status_t;

typedef struct {
    kz_tool_status_t status;
    char error[512]; /* why, when not OK: "exit 2: <first line of stderr>", "not installed: ..." */
    int64_t duration_us;
    kz_parse_stats_t stats;
} kz_tool_result_t;

/* Run TOOL on opts->files in opts->root (in batches of tools[].batch
   files, one after the other), parse the output, classify and
   fingerprint the findings and append them to OUT (only findings whose
   file is one of the files given, or - for a whole-tree tool - any file
   inside the root). Returns 0 after filling RES (look at RES->status),
   -1 only on out of memory. "{files}" with no files: not run, status OK. */
int kz_tool_run(const kz_tool_config_t *tool, const kz_tool_run_opts_t *opts, kz_findings_t *out,
                kz_tool_result_t *res);

/* "ok" | "error" | "timeout" | "missing" (PROTOCOL.md 4.9 tool status) */
const char *kz_tool_status_name(kz_tool_status_t status);

/* How a tool of a scan.completed's tools[] ran, by its STATUS name: clean
   ("ok"), skipped by design ("skipped": the project did not choose it), or
   failed ("error", "timeout", "missing", anything else, NULL: its findings
   are missing and the scan's picture is partial). One rule for
   code-quality's partial ratings, run-once and report. */
typedef enum { KZ_TOOL_RAN_CLEAN, KZ_TOOL_SKIPPED, KZ_TOOL_FAILED } kz_tool_outcome_t;
kz_tool_outcome_t kz_tool_outcome(const char *status);

#endif
