/*  kz_project.h - a project's own settings for the tools kaizen runs

    kaizen runs each tool the way the project runs it: with the arguments
    of the project's pre-commit hook for it, its files/exclude patterns,
    the settings the tool would not find by itself (codespell's section of
    pyproject.toml), and the files the project type-checks (mypy's
    `files`). This module reads those settings from a worktree and turns
    them into a tool's setup for kz_tool_run.

    The worktree is hostile input. pyproject.toml and the INI files
    (setup.cfg, tox.ini, .flake8, mypy.ini, .mypy.ini, .codespellrc) are
    read by Debian's /usr/bin/python3 (tomllib, configparser) in isolated
    mode, the file names passed as arguments; .pre-commit-config.yaml by
    libyaml with caps on size and counts. Hook arguments only ever become
    argv elements, and options that would make a tool write files, run
    programs or change its output format are refused (see s_denied in
    kz_project.c and docs/config.md).
*/
#ifndef KZ_PROJECT_H_INCLUDED
#define KZ_PROJECT_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

#include "kz_config.h"

typedef struct kz_project kz_project_t;

/* A hook of .pre-commit-config.yaml (strings may be NULL when absent) */
typedef struct {
    char *repo;  /* repos[].repo: a URL, "local" or "meta" */
    char *rev;   /* repos[].rev */
    char *id;    /* hooks[].id */
    char **args; /* hooks[].args, NULL-terminated (never NULL) */
    size_t args_count;
    char *files;   /* hooks[].files: a Python regex the paths must match */
    char *exclude; /* hooks[].exclude: a Python regex of paths left out */
} kz_hook_t;

/* Read the settings of the project checked out at ROOT. Never fails on
   the project's files: a file that cannot be read or parsed is left out
   and said in kz_project_problems. NULL only on out of memory or when
   ROOT is not a directory (ERRBUF says). */
kz_project_t *kz_project_load(const char *root, char *errbuf, size_t errlen);
void kz_project_destroy(kz_project_t **self_p);

/* What could not be read ("pyproject.toml: Expected '=' after a key ...;
   ..."), or "" */
const char *kz_project_problems(const kz_project_t *self);

/* The first hook with id ID, or NULL */
const kz_hook_t *kz_project_hook(const kz_project_t *self, const char *id);
size_t kz_project_hooks_count(const kz_project_t *self);
const kz_hook_t *kz_project_hook_at(const kz_project_t *self, size_t i);

/* The table at the dotted PATH ("tool.mypy") of pyproject.toml, or NULL
   (borrowed) */
json_t *kz_project_toml(const kz_project_t *self, const char *path);

/* The value of KEY (lowercase) in SECTION of the INI file FILE
   ("setup.cfg", "mypy"), or NULL */
const char *kz_project_ini(const kz_project_t *self, const char *file, const char *section,
                           const char *key);

/* How the project runs one tool */
typedef struct {
    char **args; /* argv elements to add before the recipe's "--" (the hook's args and
                    translated settings), NULL-terminated (never NULL after setup) */
    size_t args_count;
    bool project_files;             /* the project names the files the tool checks (mypy `files`):
                              run without the recipe's "{files}" and keep only the findings
                              in the files given */
    const kz_hook_t *hook;          /* the project's pre-commit hook of the tool, or NULL */
    char pinned[64];                /* the version the hook's rev pins ("2.4.2"), or "" */
    char installed[64];             /* the installed version (recipe `version`), or "" */
    char differs[256];              /* "version differs from the project's pin (2.4.2 pinned, 2.2.2
                              installed)", or "" */
    char refused[512];              /* hook arguments refused and why, or "" (for the log) */
    struct kz_setup_filter *filter; /* private: the hook's compiled files/exclude */
} kz_tool_setup_t;

/* Fill SETUP for TOOL in project SELF (which may be NULL: no settings).
   Runs the recipe's `version` argv when the project pins the tool.
   0, or -1 on out of memory (SETUP is then cleared). */
int kz_project_setup(const kz_project_t *self, const kz_tool_config_t *tool,
                     kz_tool_setup_t *setup);
void kz_tool_setup_clear(kz_tool_setup_t *setup);

/* kz_project_load of ROOT and kz_project_setup of TOOL in one, for a
   single run (the reviewer's, a fixer's): SETUP's hook is NULL after (the
   project is gone). NOTE gets what could not be read or was refused, for
   the log ("" when nothing). 0 / -1 (out of memory) */
int kz_tool_setup_load(const char *root, const kz_tool_config_t *tool, kz_tool_setup_t *setup,
                       char *note, size_t notelen);

/* True when the tool's pre-commit hook lets it check PATH (the hook's
   files and exclude, and pre-commit's top-level ones); true when the tool
   has no hook */
bool kz_tool_setup_wants(const kz_tool_setup_t *setup, const char *path);

/* Tools the project chose (pre-commit hook ids, [tool.X] tables of
   pyproject.toml) that no recipe of CFG runs: a new JSON array of
   {"name", "note"}, note "chosen by the project but not run: ruff (no
   recipe; not packaged in Debian 12)". NULL on out of memory. */
json_t *kz_project_unrun(const kz_project_t *self, const kz_config_t *cfg);

/* The first version number ("2.2.2") in TEXT into OUT, "" when none */
void kz_version_find(const char *text, char *out, size_t len);

/* The value at KEY of the YAML mapping MAP of DOC (libyaml's document
   API), or NULL (no such key, MAP not a mapping) */
yaml_node_t *kz_yaml_map_get(yaml_document_t *doc, yaml_node_t *map, const char *key);

#endif
