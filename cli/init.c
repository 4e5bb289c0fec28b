/*  init.c - `kaizen init [PATH]`: a working target entry from a repository

    Looks at the git repository PATH (its tracked files at HEAD and the
    configuration files it keeps) and finds: its languages; the tool
    recipes of the config that apply to them and that the project chose
    (kz_tool_chosen); the tools it chose that kaizen has no recipe for or
    cannot run (pre-commit hooks, pyproject.toml [tool.X], setup.cfg and
    tox.ini sections); its test command, as an argv and targets[].env;
    and the build a compile database needs. It adds the target entry to
    the config file as text (the user's comments stay), checks that the
    result loads, replaces the file atomically, and runs the test command
    once at HEAD in a temporary worktree to say whether the tests can
    validate plans.

    The repository is hostile input: its files are read only inside it
    (kz_path_inside) with a size cap, pyproject.toml is read by Debian's
    python3 tomllib through kz_proc (the path an argument, never code),
    nothing it says is run through a shell, and a command it names is
    written into the config only when it is a plain argv.
*/
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "kz_finding.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_proc.h"
#include "kz_project.h"
#include "kz_recipe.h"
#include "kz_state.h"
#include "kz_testsuite.h"

#define S_CMD          "init"
#define S_FILE_CAP     (1u << 20) /* bytes of a project file read */
#define S_TOML_MS      30000
#define S_MAX_ARGV     64
#define S_MAX_ENV      32
#define S_MAX_LANGS    8
#define S_MAX_CHOSEN   64
#define S_PYTHON       "/usr/bin/python3"
#define S_OPT_NO_TEST  0x2001
#define S_LANG_MIN     5  /* files that make a language matter ... */
#define S_LANG_PERCENT 10 /* ... or this share of the code files */

static const char s_usage[] =
    "usage: kaizen [-c FILE] init [--name NAME] [--no-test] [PATH]\n"
    "\n"
    "Look at the git repository PATH (default: the current directory) and add\n"
    "a target entry for it to the config file (-c FILE, else ./kaizen.yaml),\n"
    "so that a first 'kaizen run-once' works without edits. It finds:\n"
    "\n"
    "  the languages of the tracked files; the tool recipes that apply to them\n"
    "  and that the project chose (tools[].requires), whether each is installed;\n"
    "  the tools the project chose that kaizen has no recipe for or cannot run\n"
    "  (.pre-commit-config.yaml hooks, pyproject.toml [tool.X], setup.cfg and\n"
    "  tox.ini sections); the test command (tox [testenv] commands and setenv,\n"
    "  pytest, 'make check' or 'make test', npm test, a CI workflow's test step)\n"
    "  as an argv and targets[].env; the build a compile database needs.\n"
    "\n"
    "A missing config file is created holding only 'targets:'; an existing one\n"
    "gets the entry appended under 'targets:' (comments kept), checked to load,\n"
    "and replaced atomically. Then the test command runs once at HEAD in a\n"
    "temporary worktree, removed after, and init says whether the tests can\n"
    "validate plans.\n"
    "\n"
    "  -n, --name NAME      the target's name (default: the directory's name)\n"
    "  --no-test            do not run the tests at HEAD\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 the entry was written (whatever the tests did), 1 PATH is\n"
    "not a git repository with a commit, the config file is not a kaizen config\n"
    "or cannot be written, 2 usage, or a target of that name exists already\n";

/* The code languages a target is about (kz_language_of's names) */
static const char *const s_code_languages[] = {"python", "c",          "cpp",
                                               "shell",  "javascript", "typescript"};

/* Names under pyproject.toml [tool.X], setup.cfg and tox.ini that are
   packaging, test running or coverage, not checkers kaizen could run */
static const char *const s_not_checkers[] = {
    "setuptools",   "setuptools_scm", "poetry",       "hatch",    "flit",           "pdm",
    "maturin",      "scikit-build",   "cibuildwheel", "pytest",   "coverage",       "towncrier",
    "bumpversion",  "distutils",      "uv",           "tox",      "testenv",        "metadata",
    "options",      "bdist_wheel",    "sdist",        "egg_info", "aliases",        "easy_install",
    "build_sphinx", "gh-actions",     "gh",           "wheel",    "check-manifest",
};

/* One tool the project chose that kaizen has no recipe for */
typedef struct {
    char name[64];
    char from[256]; /* where it was seen: ".pre-commit-config.yaml hook, pyproject.toml" */
} s_chosen_t;

typedef struct {
    const kz_config_t *cfg; /* the recipes */
    char root[PATH_MAX];    /* the repository, absolute */
    char branch[256];
    char name[128];
    char **files; /* tracked at HEAD */
    size_t nfiles;
    const char *langs[S_MAX_LANGS + 1]; /* NULL-terminated (static strings) */
    size_t nlangs;
    char *test[S_MAX_ARGV + 1]; /* malloc'd, NULL-terminated */
    size_t ntest;
    char *env[S_MAX_ENV + 1];
    size_t nenv;
    json_t *pyproject; /* pyproject.toml as JSON, or NULL */
    s_chosen_t chosen[S_MAX_CHOSEN];
    size_t nchosen;
} s_init_t;

/* ------------------------------------------------------------- helpers */

static bool s_in(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

static bool s_tracked(const s_init_t *s, const char *rel)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (strcmp(s->files[i], rel) == 0)
            return true;
    return false;
}

/* The first tracked file matching the glob PATTERN (FNM_PATHNAME), or NULL */
static const char *s_tracked_glob(const s_init_t *s, const char *pattern)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (fnmatch(pattern, s->files[i], FNM_PATHNAME) == 0)
            return s->files[i];
    return NULL;
}

/* The text of the tracked file REL (a regular file inside the root, at
   most S_FILE_CAP bytes), malloc'd and NUL-terminated; NULL when it is
   not tracked, not inside, not regular or unreadable */
static char *s_read(const s_init_t *s, const char *rel)
{
    char why[256], path[PATH_MAX * 2];
    if (!s_tracked(s, rel) || !kz_path_inside(s->root, rel, why, sizeof why))
        return NULL;
    snprintf(path, sizeof path, "%s/%s", s->root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (buf = malloc(S_FILE_CAP + 1)) != NULL) {
        size_t len = 0;
        ssize_t n;
        while (len < S_FILE_CAP && (n = read(fd, buf + len, S_FILE_CAP - len)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
    }
    close(fd);
    return buf;
}

static void s_note_chosen(s_init_t *s, const char *name, size_t nlen, const char *from)
{
    if (nlen == 0 || nlen >= sizeof s->chosen[0].name)
        return;
    for (size_t i = 0; i < s->nchosen; i++)
        if (strlen(s->chosen[i].name) == nlen && memcmp(s->chosen[i].name, name, nlen) == 0) {
            if (!strstr(s->chosen[i].from, from)) {
                size_t o = strlen(s->chosen[i].from);
                snprintf(s->chosen[i].from + o, sizeof s->chosen[i].from - o, ", %s", from);
            }
            return;
        }
    if (s->nchosen == S_MAX_CHOSEN)
        return;
    s_chosen_t *c = &s->chosen[s->nchosen++];
    snprintf(c->name, sizeof c->name, "%.*s", (int)nlen, name);
    snprintf(c->from, sizeof c->from, "%s", from);
}

static int s_add_arg(char **v, size_t *n, size_t max, const char *arg, size_t len)
{
    if (*n >= max)
        return -1;
    char *copy = strndup(arg, len);
    if (!copy)
        return -1;
    v[(*n)++] = copy;
    v[*n] = NULL;
    return 0;
}

static void s_clear_test(s_init_t *s)
{
    for (size_t i = 0; i < s->ntest; i++)
        free(s->test[i]);
    s->ntest = 0;
    s->test[0] = NULL;
}

/* ----------------------------------------------------------- languages */

/* The code languages with enough tracked files to matter: S_LANG_MIN
   files or S_LANG_PERCENT of the code files; "c" only for headers of a
   C++ project is C++'s */
static void s_languages(s_init_t *s)
{
    size_t n = sizeof s_code_languages / sizeof s_code_languages[0];
    size_t counts[sizeof s_code_languages / sizeof s_code_languages[0]] = {0};
    size_t headers = 0, total = 0;
    for (size_t i = 0; i < s->nfiles; i++) {
        const char *lang = kz_language_of(s->files[i]);
        for (size_t l = 0; l < n; l++)
            if (strcmp(lang, s_code_languages[l]) == 0) {
                counts[l]++;
                total++;
            }
        size_t len = strlen(s->files[i]);
        if (len > 2 && strcmp(s->files[i] + len - 2, ".h") == 0)
            headers++;
    }
    if (counts[2] > 0 && counts[1] == headers)
        counts[1] = 0; /* only headers: those of the C++ code */
    printf("  languages:        ");
    bool any = false;
    for (;;) {
        size_t best = n;
        for (size_t l = 0; l < n; l++)
            if (counts[l] && (best == n || counts[l] > counts[best]))
                best = l;
        if (best == n)
            break;
        size_t c = counts[best];
        counts[best] = 0;
        if (c < S_LANG_MIN && c * 100 < total * S_LANG_PERCENT)
            continue;
        if (s->nlangs < S_MAX_LANGS)
            s->langs[s->nlangs++] = s_code_languages[best];
        printf("%s%s (%zu file%s)", any ? ", " : "", s_code_languages[best], c, c == 1 ? "" : "s");
        any = true;
    }
    s->langs[s->nlangs] = NULL;
    printf("%s\n", any ? "" : "none found (every tool applies)");
}

static bool s_has_lang(const s_init_t *s, const char *lang)
{
    for (size_t i = 0; i < s->nlangs; i++)
        if (strcmp(s->langs[i], lang) == 0)
            return true;
    return false;
}

/* The last non-empty line of TEXT into BUF */
static void s_last_line(const char *text, char *buf, size_t len)
{
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > text && start[-1] != '\n')
        start--;
    snprintf(buf, len, "%.*s", (int)(end - start), start);
}

/* --------------------------------------------------- project settings */

/* pyproject.toml as JSON, read by Debian's python3 with tomllib (the
   path an argument after the code); NULL when absent or unreadable,
   after saying why */
static json_t *s_pyproject(const s_init_t *s)
{
    char why[256], path[PATH_MAX * 2], err[512];
    if (!s_tracked(s, "pyproject.toml") ||
        !kz_path_inside(s->root, "pyproject.toml", why, sizeof why))
        return NULL;
    /* the target's pyproject.toml is hostile input: read in the sandbox,
       from a copy when its user switches (it may not reach the target) */
    char copy[PATH_MAX] = "";
    const char *files[] = {"pyproject.toml", NULL};
    if (kz_sandbox_runner(NULL, NULL) &&
        kz_sandbox_copy_files(s->root, files, 4u << 20, copy, sizeof copy, err, sizeof err) != 0) {
        printf("  note:             pyproject.toml not read: %s\n", err);
        if (copy[0])
            (void)kz_rmtree(copy, NULL, 0);
        return NULL;
    }
    const char *dir = copy[0] ? copy : s->root;
    snprintf(path, sizeof path, "%s/pyproject.toml", dir);
    static const char code[] = "import json, sys, tomllib\n"
                               "with open(sys.argv[1], 'rb') as f:\n"
                               "    doc = tomllib.load(f)\n"
                               "print(json.dumps(doc, default=str))\n";
    const char *argv[] = {S_PYTHON, "-I", "-c", code, path, NULL};
    kz_proc_opts_t opts = {.argv = argv,
                           .cwd = dir,
                           .sandbox = KZ_SANDBOX_READ,
                           .timeout_ms = S_TOML_MS,
                           .out_cap = 4u << 20,
                           .err_cap = 4096};
    kz_proc_result_t res;
    json_t *doc = NULL;
    int prc = kz_proc_run(&opts, &res, err, sizeof err);
    if (copy[0])
        (void)kz_rmtree(copy, NULL, 0);
    if (prc != 0) {
        printf("  note:             pyproject.toml not read: %s\n", err);
    } else if (res.exit_code != 0 || res.out_truncated) {
        char last[256];
        s_last_line(res.err_len ? res.err : "no output", last, sizeof last);
        printf("  note:             pyproject.toml not read: %s\n", last);
    } else {
        json_error_t jerr;
        doc = json_loadb(res.out, res.out_len, 0, &jerr);
        if (!json_is_object(doc)) {
            json_decref(doc);
            doc = NULL;
            printf("  note:             pyproject.toml not read: %s\n", jerr.text);
        }
    }
    kz_proc_result_free(&res);
    return doc;
}

/* Walk INI TEXT (setup.cfg, tox.ini: configparser's syntax): ON_SECTION
   gets each section's name (without brackets, trimmed) */
static void s_ini_sections(const char *text,
                           void (*on_section)(void *arg, const char *name, size_t len), void *arg)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 2 && line[0] == '[') {
            const char *close = memchr(line, ']', len);
            if (close && close > line + 1)
                on_section(arg, line + 1, (size_t)(close - line - 1));
        }
        line = end ? end + 1 : NULL;
    }
}

/* The value of KEY in [SECTION] of INI TEXT, continuation lines joined
   with '\n' (each trimmed, comments and empty lines dropped); malloc'd,
   NULL when absent */
static char *s_ini_value(const char *text, const char *section, const char *key)
{
    bool in = false, taking = false;
    size_t slen = strlen(section), klen = strlen(key);
    char *out = NULL;
    size_t olen = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *next = end ? end + 1 : NULL;
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            len--;
        if (len && line[0] == '[') {
            const char *close = memchr(line, ']', len);
            in =
                close && (size_t)(close - line - 1) == slen && memcmp(line + 1, section, slen) == 0;
            taking = false;
        } else if (in && taking && len && (line[0] == ' ' || line[0] == '\t')) {
            size_t skip = strspn(line, " \t");
            if (line[skip] != '#' && line[skip] != ';' && len > skip) {
                char *grown = realloc(out, olen + (len - skip) + 2);
                if (!grown)
                    break;
                out = grown;
                if (olen)
                    out[olen++] = '\n';
                memcpy(out + olen, line + skip, len - skip);
                olen += len - skip;
                out[olen] = '\0';
            }
        } else if (in && len && line[0] != '#' && line[0] != ';') {
            taking = false;
            size_t k = strcspn(line, "=:");
            size_t kend = k;
            while (kend && (line[kend - 1] == ' ' || line[kend - 1] == '\t'))
                kend--;
            if (k < len && kend == klen && memcmp(line, key, klen) == 0 && !out) {
                size_t v = k + 1 + strspn(line + k + 1, " \t");
                out = strndup(line + v, len > v ? len - v : 0);
                if (!out)
                    break;
                olen = strlen(out);
                taking = true;
            }
        } else if (len == 0) {
            /* an empty line inside a value is allowed; keep taking */
        } else {
            taking = false;
        }
        line = next;
    }
    return out;
}

typedef struct {
    s_init_t *s;
    const char *file;
} s_ini_arg_t;

/* A section of setup.cfg or tox.ini naming a tool: "flake8", "mypy-x"
   (mypy), "pylint.MESSAGES" (pylint), "tool:isort", "coverage:run" */
static void s_ini_tool(void *arg, const char *name, size_t len)
{
    s_ini_arg_t *a = arg;
    if (len > 5 && memcmp(name, "tool:", 5) == 0) {
        name += 5;
        len -= 5;
    }
    size_t n = strcspn(name, ":.");
    if (n > len)
        n = len;
    if (n > 5 && memcmp(name, "mypy-", 5) == 0)
        n = 4;
    char word[64];
    if (n == 0 || n >= sizeof word)
        return;
    snprintf(word, sizeof word, "%.*s", (int)n, name);
    if (s_in(word, s_not_checkers, sizeof s_not_checkers / sizeof s_not_checkers[0]))
        return;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)word[i]) && word[i] != '-' && word[i] != '_')
            return;
    s_note_chosen(a->s, word, n, a->file);
}

/* Load the YAML TEXT into DOC: 0, or -1 (not YAML) with DOC untouched */
static int s_yaml_load(const char *text, yaml_document_t *doc)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return -1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int ok = yaml_parser_load(&parser, doc);
    yaml_parser_delete(&parser);
    if (!ok)
        return -1;
    if (!yaml_document_get_root_node(doc)) {
        yaml_document_delete(doc);
        return -1;
    }
    return 0;
}

/* The hook ids of .pre-commit-config.yaml (repos[].hooks[].id) */
static void s_precommit(s_init_t *s)
{
    char *text = s_read(s, ".pre-commit-config.yaml");
    yaml_document_t doc;
    if (!text)
        return;
    if (s_yaml_load(text, &doc) != 0) {
        printf("  note:             .pre-commit-config.yaml is not YAML; its hooks not read\n");
        free(text);
        return;
    }
    yaml_node_t *repos = kz_yaml_map_get(&doc, yaml_document_get_root_node(&doc), "repos");
    if (repos && repos->type == YAML_SEQUENCE_NODE)
        for (yaml_node_item_t *r = repos->data.sequence.items.start;
             r < repos->data.sequence.items.top; r++) {
            yaml_node_t *hooks = kz_yaml_map_get(&doc, yaml_document_get_node(&doc, *r), "hooks");
            if (!hooks || hooks->type != YAML_SEQUENCE_NODE)
                continue;
            for (yaml_node_item_t *h = hooks->data.sequence.items.start;
                 h < hooks->data.sequence.items.top; h++) {
                yaml_node_t *id = kz_yaml_map_get(&doc, yaml_document_get_node(&doc, *h), "id");
                if (id && id->type == YAML_SCALAR_NODE)
                    s_note_chosen(s, (const char *)id->data.scalar.value, id->data.scalar.length,
                                  ".pre-commit-config.yaml hook");
            }
        }
    yaml_document_delete(&doc);
    free(text);
}

/* Every tool the project's configuration files name */
static void s_project_tools(s_init_t *s)
{
    s_precommit(s);
    json_t *tool = json_object_get(s->pyproject, "tool");
    const char *key;
    json_t *val;
    json_object_foreach(tool, key, val)
    {
        if (!s_in(key, s_not_checkers, sizeof s_not_checkers / sizeof s_not_checkers[0]))
            s_note_chosen(s, key, strlen(key), "pyproject.toml");
    }
    static const char *const inis[] = {"setup.cfg", "tox.ini"};
    for (size_t i = 0; i < 2; i++) {
        char *text = s_read(s, inis[i]);
        if (!text)
            continue;
        s_ini_arg_t a = {s, inis[i]};
        s_ini_sections(text, s_ini_tool, &a);
        free(text);
    }
}

/* --------------------------------------------------------------- tools */

/* The tools the project chose that have no recipe, one line per place
   they were seen ("trailing-whitespace, check-yaml (no recipe;
   .pre-commit-config.yaml hook)") */
static void s_no_recipe(const s_init_t *s)
{
    bool done[S_MAX_CHOSEN] = {false};
    for (size_t i = 0; i < s->nchosen; i++) {
        if (done[i] || kz_config_tool(s->cfg, s->chosen[i].name))
            continue;
        printf("  chosen but kaizen cannot run it: %s", s->chosen[i].name);
        for (size_t j = i + 1; j < s->nchosen; j++)
            if (!done[j] && strcmp(s->chosen[j].from, s->chosen[i].from) == 0 &&
                !kz_config_tool(s->cfg, s->chosen[j].name)) {
                printf(", %s", s->chosen[j].name);
                done[j] = true;
            }
        printf(" (no recipe; %s)\n", s->chosen[i].from);
    }
}

/* The recipes that apply and that the project chose, whether each runs
   here; then the tools it chose that kaizen cannot run, and why */
static void s_tools(s_init_t *s)
{
    const kz_config_t *cfg = s->cfg;
    char which[512], detail[PATH_MAX + 64];
    int chosen = 0;
    printf("  tools chosen:     ");
    for (size_t i = 0; i < cfg->tools_count; i++) {
        const kz_tool_config_t *tool = &cfg->tools[i];
        if (!kz_tool_applies(tool, (char *const *)s->langs) ||
            !kz_tool_chosen(tool, s->root, which, sizeof which))
            continue;
        printf("%s%s (%s)", chosen++ ? ", " : "", tool->name,
               which[0] ? which : "no evidence needed");
    }
    printf("%s\n", chosen ? "" : "none of the config's tool recipes");
    for (size_t i = 0; i < cfg->tools_count; i++) {
        const kz_tool_config_t *tool = &cfg->tools[i];
        if (!kz_tool_applies(tool, (char *const *)s->langs) ||
            !kz_tool_chosen(tool, s->root, NULL, 0) ||
            kz_cli_program_ready(tool->argv, tool->argv_count, detail, sizeof detail))
            continue;
        const char *pkg = kz_cli_tool_package(tool->name);
        if (!pkg)
            pkg = kz_cli_tool_package(kz_cli_program_name(tool->argv, tool->argv_count));
        printf("  not installed:    %s: %s (%s%s)\n", tool->name, detail,
               pkg ? "apt-get install -y " : "install it yourself", pkg ? pkg : "");
    }
    s_no_recipe(s);
    for (size_t i = 0; i < s->nchosen; i++) {
        const s_chosen_t *c = &s->chosen[i];
        const kz_tool_config_t *tool = kz_config_tool(cfg, c->name);
        if (!tool) {
            continue;
        } else if (!kz_tool_applies(tool, (char *const *)s->langs)) {
            printf("  chosen but kaizen cannot run it: %s (its recipe is for other languages; "
                   "%s)\n",
                   c->name, c->from);
        } else if (!kz_tool_chosen(tool, s->root, which, sizeof which)) {
            printf("  chosen but kaizen cannot run it: %s (the recipe's requires found %s; %s)\n",
                   c->name, which, c->from);
        }
    }
}

/* ---------------------------------------------------------- test command */

/* Split the command LINE into words (spaces and tabs; '...' and "..."
   quote, with no escapes) appended to S's test argv. BRACES: tox's
   {name} substitutions are kept in the words (else a brace is a shell
   operator). -1 with WHY when the line needs a shell (an operator,
   a variable, a glob, an escape) or is too long */
static int s_split(s_init_t *s, const char *line, bool braces, char *why, size_t len)
{
    static const char shell_ops[] = "|&;<>()$`\\*?[]~!#";
    char word[PATH_MAX];
    size_t w = 0;
    bool inword = false;
    for (const char *p = line;; p++) {
        if (*p == '\0' || *p == ' ' || *p == '\t') {
            if (inword && s_add_arg(s->test, &s->ntest, S_MAX_ARGV, word, w) != 0) {
                snprintf(why, len, "too many words");
                return -1;
            }
            inword = false;
            w = 0;
            if (*p == '\0')
                return 0;
            continue;
        }
        if (*p == '\'' || *p == '"') {
            const char *close = strchr(p + 1, *p);
            if (!close || (*p == '"' && strcspn(p + 1, "$`\\") < (size_t)(close - p - 1))) {
                snprintf(why, len, "quoting that needs a shell");
                return -1;
            }
            size_t n = (size_t)(close - p - 1);
            if (w + n >= sizeof word) {
                snprintf(why, len, "a word is too long");
                return -1;
            }
            memcpy(word + w, p + 1, n);
            w += n;
            word[w] = '\0';
            inword = true;
            p = close;
            continue;
        }
        if (strchr(shell_ops, *p) || (!braces && (*p == '{' || *p == '}')) ||
            (unsigned char)*p < 0x20) {
            snprintf(why, len, "the shell operator '%c'", *p);
            return -1;
        }
        if (w + 1 >= sizeof word) {
            snprintf(why, len, "a word is too long");
            return -1;
        }
        word[w++] = *p;
        word[w] = '\0';
        inword = true;
    }
}

/* Replace S's test argv by kaizen's pytest command followed by the
   arguments of the pytest command ARGV[FROM..] */
static int s_pytest_argv(s_init_t *s, size_t from)
{
    static const char *const base[] = {
        S_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml={junit}"};
    char *rest[S_MAX_ARGV + 1];
    size_t nrest = 0;
    for (size_t i = from; i < s->ntest; i++) {
        rest[nrest++] = s->test[i];
        s->test[i] = NULL;
    }
    for (size_t i = 0; i < from && i < s->ntest; i++)
        free(s->test[i]);
    s->ntest = 0;
    s->test[0] = NULL;
    int rc = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0] && rc == 0; i++)
        rc = s_add_arg(s->test, &s->ntest, S_MAX_ARGV, base[i], strlen(base[i]));
    for (size_t i = 0; i < nrest; i++) {
        if (rc == 0)
            rc = s_add_arg(s->test, &s->ntest, S_MAX_ARGV, rest[i], strlen(rest[i]));
        free(rest[i]);
    }
    return rc;
}

static bool s_is_python(const char *word)
{
    const char *base = strrchr(word, '/');
    base = base ? base + 1 : word;
    return strcmp(word, "{envpython}") == 0 || strncmp(base, "python", 6) == 0;
}

/* Make S's test argv run here: a pytest command becomes kaizen's (with a
   JUnit report), "python" Debian's python3. -1 when out of memory */
static int s_normalise(s_init_t *s)
{
    if (s->ntest == 0)
        return 0;
    const char *base = strrchr(s->test[0], '/');
    base = base ? base + 1 : s->test[0];
    if (strcmp(base, "pytest") == 0 || strcmp(base, "py.test") == 0 ||
        strcmp(base, "pytest-3") == 0)
        return s_pytest_argv(s, 1);
    if (s_is_python(s->test[0]) && s->ntest >= 3 && strcmp(s->test[1], "-m") == 0 &&
        strcmp(s->test[2], "pytest") == 0)
        return s_pytest_argv(s, 3);
    if (s_is_python(s->test[0])) {
        char *py = strdup(S_PYTHON);
        if (!py)
            return -1;
        free(s->test[0]);
        s->test[0] = py;
    }
    return 0;
}

/* Add "NAME=VALUE" (LEN bytes) to S's env, replacing an entry of NAME */
static int s_env_add(s_init_t *s, const char *entry, size_t len)
{
    size_t klen = strcspn(entry, "=");
    if (klen == 0 || klen >= len)
        return 0;
    for (size_t i = 0; i < s->nenv; i++)
        if (strncmp(s->env[i], entry, klen + 1) == 0) {
            char *copy = strndup(entry, len);
            if (!copy)
                return -1;
            free(s->env[i]);
            s->env[i] = copy;
            return 0;
        }
    return s_add_arg(s->env, &s->nenv, S_MAX_ENV, entry, len);
}

/* Tox's {toxinidir} in WORD becomes "." (the worktree the tests run in),
   {envpython} Debian's python3; {posargs} is dropped (OUT empty),
   {posargs:DEFAULT} becomes DEFAULT; any
   other substitution cannot be translated: -1 */
static int s_tox_word(const char *word, char *out, size_t len)
{
    if (strcmp(word, "{posargs}") == 0) {
        out[0] = '\0';
        return 0;
    }
    if (strncmp(word, "{posargs:", 9) == 0) {
        /* what tox runs without arguments: the default */
        size_t n = strlen(word);
        if (word[n - 1] != '}' || memchr(word + 9, '{', n - 10) || memchr(word + 9, '}', n - 10))
            return -1;
        snprintf(out, len, "%.*s", (int)(n - 10), word + 9);
        return 0;
    }
    if (strcmp(word, "{envpython}") == 0) {
        snprintf(out, len, "%s", S_PYTHON);
        return 0;
    }
    size_t o = 0;
    for (const char *p = word; *p && o + 1 < len;) {
        if (strncmp(p, "{toxinidir}", 11) == 0) {
            out[o++] = '.';
            p += 11;
        } else if (*p == '{' || *p == '}') {
            return -1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return 0;
}

/* The first line of the commands COMMANDS of tox's environment ENV as S's test argv: split,
   each word through tox's substitutions. 1 translated, 0 not (said),
   -1 out of memory */
static int s_tox_command(s_init_t *s, const char *env, char *commands)
{
    char why[256] = "", word[PATH_MAX];
    commands[strcspn(commands, "\n")] = '\0';
    const char *line = commands[0] == '-' ? commands + 1 : commands; /* "-": errors ignored */
    int rc = 0;
    if (s_split(s, line, true, why, sizeof why) == 0) {
        char *words[S_MAX_ARGV + 1];
        size_t n = s->ntest;
        memcpy(words, s->test, n * sizeof *words);
        s->ntest = 0;
        s->test[0] = NULL;
        for (size_t i = 0; i < n; i++) {
            if (!why[0] && rc == 0) {
                if (s_tox_word(words[i], word, sizeof word) != 0)
                    snprintf(why, sizeof why, "the substitution '%.100s'", words[i]);
                else if (word[0] &&
                         s_add_arg(s->test, &s->ntest, S_MAX_ARGV, word, strlen(word)) != 0)
                    rc = -1;
            }
            free(words[i]);
        }
    }
    if (rc < 0)
        return -1;
    if (why[0] || s->ntest == 0) {
        printf("  note:             tox.ini [%s] commands '%.200s' could not be translated into "
               "an argv: %s\n",
               env, line, why[0] ? why : "no command");
        s_clear_test(s);
        return 0;
    }
    printf("  test source:      tox.ini [%s] commands: %.200s\n", env, line);
    return s_normalise(s) == 0 ? 1 : -1;
}

/* One line "NAME = VALUE" of tox's setenv into S's env (a line that is
   not a plain name and a value tox's substitutions can translate is
   said and left out). 0 / -1 out of memory */
static int s_tox_setenv_line(s_init_t *s, const char *env, const char *line, size_t len)
{
    static const char name_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789_";
    char entry[PATH_MAX], value[PATH_MAX], full[PATH_MAX * 2];
    snprintf(entry, sizeof entry, "%.*s", (int)len, line);
    size_t k = strcspn(entry, "="), kend = k;
    while (kend && (entry[kend - 1] == ' ' || entry[kend - 1] == '\t'))
        kend--;
    const char *v = entry[k] ? entry + k + 1 + strspn(entry + k + 1, " \t") : NULL;
    if (!v || kend == 0 || strspn(entry, name_chars) != kend ||
        s_tox_word(v, value, sizeof value) != 0) {
        printf("  note:             tox.ini [%s] setenv '%.200s' could not be translated\n", env,
               entry);
        return 0;
    }
    int n = snprintf(full, sizeof full, "%.*s=%s", (int)kend, entry, value);
    return s_env_add(s, full, (size_t)n);
}

/* s_ini_sections callback: the first "[testenv:NAME]" into ARG (a
   char[128] holding "testenv" until one is found) */
static void s_first_testenv(void *arg, const char *name, size_t len)
{
    char *env = arg;
    if (strcmp(env, "testenv") == 0 && len > 8 && len < 128 && memcmp(name, "testenv:", 8) == 0)
        snprintf(env, 128, "%.*s", (int)len, name);
}

/* tox.ini [testenv]: the first line of commands, and setenv. 1 found
   (S's test set), 0 none, -1 out of memory */
static int s_test_tox(s_init_t *s)
{
    char *text = s_read(s, "tox.ini");
    char env[128] = "testenv";
    char *commands = text ? s_ini_value(text, env, "commands") : NULL;
    if (text && !commands) {
        /* no [testenv] commands: the first environment of its own */
        s_ini_sections(text, s_first_testenv, env);
        commands = strcmp(env, "testenv") != 0 ? s_ini_value(text, env, "commands") : NULL;
    }
    char *setenv = text ? s_ini_value(text, env, "setenv") : NULL;
    int rc = commands ? s_tox_command(s, env, commands) : 0;
    for (const char *e = setenv; rc == 1 && e && *e;) {
        size_t n = strcspn(e, "\n");
        if (s_tox_setenv_line(s, env, e, n) != 0)
            rc = -1;
        e += n + (e[n] ? 1 : 0);
    }
    free(commands);
    free(setenv);
    free(text);
    return rc;
}

/* Evidence that the project runs pytest: its configuration, a conftest.py
   or test files; FROM gets which */
static bool s_pytest_evidence(s_init_t *s, char *from, size_t len)
{
    json_t *tool = json_object_get(s->pyproject, "tool");
    json_t *pytest = json_object_get(json_object_get(tool, "pytest"), "ini_options");
    static const struct {
        const char *file, *section;
    } inis[] = {{"setup.cfg", "[tool:pytest]"}, {"tox.ini", "[pytest]"}};
    const char *hit;
    if (s_tracked(s, "pytest.ini")) {
        snprintf(from, len, "pytest.ini");
        return true;
    }
    if (pytest) {
        snprintf(from, len, "pyproject.toml [tool.pytest.ini_options]");
        return true;
    }
    for (size_t i = 0; i < 2; i++) {
        char *text = s_read(s, inis[i].file);
        bool found = text && strstr(text, inis[i].section);
        free(text);
        if (found) {
            snprintf(from, len, "%s %s", inis[i].file, inis[i].section);
            return true;
        }
    }
    if ((hit = s_tracked_glob(s, "conftest.py")) || (hit = s_tracked_glob(s, "*/conftest.py")) ||
        (hit = s_tracked_glob(s, "tests/test_*.py")) ||
        (hit = s_tracked_glob(s, "test/test_*.py")) || (hit = s_tracked_glob(s, "test_*.py"))) {
        snprintf(from, len, "%s", hit);
        return true;
    }
    return false;
}

/* A rule for TARGET in the Makefile TEXT ("check: all", "test:") */
static bool s_make_rule(const char *text, const char *target)
{
    size_t tlen = strlen(target);
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *colon = memchr(line, ':', len);
        if (colon && line[0] != '\t' && line[0] != '#' && line[0] != '.' &&
            (colon + 1 >= line + len || colon[1] != '=')) {
            /* the words before the colon are the rule's targets */
            for (const char *p = line; p < colon;) {
                p += strspn(p, " \t");
                size_t n = strcspn(p, " \t:");
                if (p + n > colon)
                    n = (size_t)(colon - p);
                if (n == tlen && memcmp(p, target, tlen) == 0)
                    return true;
                p += n ? n : 1;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return false;
}

static int s_test_make(s_init_t *s)
{
    static const char *const names[] = {"GNUmakefile", "makefile", "Makefile"};
    static const char *const targets[] = {"check", "test"};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < 3; i++) {
            char *text = s_read(s, names[i]);
            bool found = text && s_make_rule(text, targets[t]);
            free(text);
            if (!found)
                continue;
            if (s_add_arg(s->test, &s->ntest, S_MAX_ARGV, "make", 4) != 0 ||
                s_add_arg(s->test, &s->ntest, S_MAX_ARGV, targets[t], strlen(targets[t])) != 0)
                return -1;
            printf("  test source:      %s target '%s'\n", names[i], targets[t]);
            return 1;
        }
    return 0;
}

static int s_test_npm(s_init_t *s)
{
    char *text = s_read(s, "package.json");
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    const char *script =
        json_string_value(json_object_get(json_object_get(doc, "scripts"), "test"));
    int rc = 0;
    if (script && !strstr(script, "no test specified")) {
        rc = s_add_arg(s->test, &s->ntest, S_MAX_ARGV, "npm", 3) == 0 &&
                     s_add_arg(s->test, &s->ntest, S_MAX_ARGV, "test", 4) == 0
                 ? 1
                 : -1;
        printf("  test source:      package.json scripts.test: %.200s\n", script);
    }
    json_decref(doc);
    return rc;
}

/* CMake's and meson's tests need a build first: one test argv cannot say
   so today */
static void s_test_needs_build(s_init_t *s)
{
    char *cmake = s_read(s, "CMakeLists.txt");
    if (cmake && (strstr(cmake, "enable_testing") || strstr(cmake, "add_test")))
        printf("  note:             ctest needs a build first (cmake -B build && cmake --build "
               "build && ctest --test-dir build); targets[].test is one command, so kaizen "
               "cannot run these tests yet\n");
    free(cmake);
    if (s_tracked(s, "meson.build"))
        printf("  note:             meson test needs a build first (meson setup build && meson "
               "test -C build); targets[].test is one command, so kaizen cannot run these "
               "tests yet\n");
}

static bool s_mentions_tests(const char *text)
{
    return text && (strcasestr(text, "test") || strcasestr(text, "check"));
}

/* A step that installs or prepares rather than tests: "pip install -r
   requirements-test.txt" mentions tests but is none */
static bool s_installs(const char *cmd)
{
    static const char *const first[] = {"pip",  "pip3",  "apt", "apt-get", "sudo",
                                        "brew", "conda", "cd",  "echo"};
    size_t n = strcspn(cmd, " \t\n");
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        if (strlen(first[i]) == n && memcmp(cmd, first[i], n) == 0)
            return true;
    return strstr(cmd, "-m pip") || strstr(cmd, "npm install") || strstr(cmd, "npm ci") ||
           strstr(cmd, "yarn install");
}

/* The step STEP of a CI workflow FILE as S's test command when it runs
   tests in one plain command: 1 translated, 0 not a test step, 2 a test
   step that cannot be translated (said), -1 out of memory */
static int s_workflow_step(s_init_t *s, const char *file, yaml_document_t *doc, yaml_node_t *step)
{
    yaml_node_t *run = kz_yaml_map_get(doc, step, "run");
    yaml_node_t *name = kz_yaml_map_get(doc, step, "name");
    if (!run || run->type != YAML_SCALAR_NODE)
        return 0;
    const char *cmd = (const char *)run->data.scalar.value;
    const char *label =
        name && name->type == YAML_SCALAR_NODE ? (const char *)name->data.scalar.value : NULL;
    if ((!s_mentions_tests(cmd) && !s_mentions_tests(label)) || s_installs(cmd))
        return 0;
    char why[256] = "", line[1024];
    snprintf(line, sizeof line, "%s", cmd);
    line[strcspn(line, "\n")] = '\0';
    size_t trail = strspn(cmd + strlen(line), " \t\r\n");
    if (cmd[strlen(line) + trail] != '\0')
        snprintf(why, sizeof why, "more than one line");
    else
        s_split(s, line, false, why, sizeof why);
    if (why[0] || s->ntest == 0) {
        printf("  note:             %s step '%.200s' could not be translated into an argv: %s\n",
               file, line, why[0] ? why : "no command");
        s_clear_test(s);
        return 2;
    }
    printf("  test source:      %s step: %.200s\n", file, line);
    return s_normalise(s) == 0 ? 1 : -1;
}

/* The first test step of the CI workflow FILE that translates: 1 (S's
   test set), 0 none, -1 out of memory */
static int s_workflow_file(s_init_t *s, const char *file)
{
    char *text = s_read(s, file);
    yaml_document_t doc;
    if (!text || s_yaml_load(text, &doc) != 0) {
        free(text);
        return 0;
    }
    int rc = 0;
    yaml_node_t *jobs = kz_yaml_map_get(&doc, yaml_document_get_root_node(&doc), "jobs");
    for (yaml_node_pair_t *j =
             jobs && jobs->type == YAML_MAPPING_NODE ? jobs->data.mapping.pairs.start : NULL;
         j && j < jobs->data.mapping.pairs.top && (rc == 0 || rc == 2); j++) {
        yaml_node_t *steps = kz_yaml_map_get(&doc, yaml_document_get_node(&doc, j->value), "steps");
        if (!steps || steps->type != YAML_SEQUENCE_NODE)
            continue;
        for (yaml_node_item_t *st = steps->data.sequence.items.start;
             st < steps->data.sequence.items.top && (rc == 0 || rc == 2); st++)
            rc = s_workflow_step(s, file, &doc, yaml_document_get_node(&doc, *st));
    }
    yaml_document_delete(&doc);
    free(text);
    return rc == 2 ? 0 : rc;
}

static int s_test_workflow(s_init_t *s)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (fnmatch(".github/workflows/*.yml", s->files[i], FNM_PATHNAME) == 0 ||
            fnmatch(".github/workflows/*.yaml", s->files[i], FNM_PATHNAME) == 0) {
            int rc = s_workflow_file(s, s->files[i]);
            if (rc != 0)
                return rc;
        }
    return 0;
}

/* The test command, first found of: tox, pytest, make check/test, npm
   test, a CI workflow step; plus PYTHONPATH=src for a src layout.
   0 / -1 out of memory */
static int s_test_command(s_init_t *s)
{
    char from[PATH_MAX];
    int rc = s_test_tox(s);
    if (rc == 0 && s_pytest_evidence(s, from, sizeof from)) {
        rc = s_pytest_argv(s, 0) == 0 ? 1 : -1;
        printf("  test source:      pytest (%s)\n", from);
    }
    if (rc == 0)
        rc = s_test_make(s);
    if (rc == 0)
        rc = s_test_npm(s);
    if (rc == 0)
        s_test_needs_build(s);
    if (rc == 0)
        rc = s_test_workflow(s);
    if (rc < 0)
        return -1;
    if (s->ntest && strcmp(s->test[0], S_PYTHON) == 0 &&
        (s_tracked_glob(s, "src/*.py") || s_tracked_glob(s, "src/*/__init__.py"))) {
        bool set = false;
        for (size_t i = 0; i < s->nenv; i++)
            set |= strncmp(s->env[i], "PYTHONPATH=", 11) == 0;
        if (!set && s_env_add(s, "PYTHONPATH=src", 14) != 0)
            return -1;
    }
    return 0;
}

/* The build a compile database needs (C and C++): printed only */
static void s_compile_db(const s_init_t *s)
{
    if (!s_has_lang(s, "c") && !s_has_lang(s, "cpp"))
        return;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/compile_commands.json", s->root);
    const char *how;
    if (access(path, F_OK) == 0)
        how = "compile_commands.json exists";
    else if (s_tracked(s, "CMakeLists.txt"))
        how = "cmake -B build -DCMAKE_EXPORT_COMPILE_COMMANDS=ON (build/compile_commands.json)";
    else if (s_tracked(s, "meson.build"))
        how = "meson setup build (build/compile_commands.json)";
    else if (s_tracked(s, "Makefile") || s_tracked(s, "makefile") || s_tracked(s, "GNUmakefile"))
        how = "bear -- make (compile_commands.json)";
    else
        how = "none found (no CMakeLists.txt, meson.build or Makefile)";
    printf("  compile database: %s\n", how);
}

/* --------------------------------------------------------------- entry */

/* TEXT as a YAML double-quoted scalar on OUT; -1 when TEXT is not UTF-8 */
static int s_yaml_quote(FILE *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t len = strlen(text);
    fputc('"', out);
    for (size_t i = 0; i < len;) {
        if (p[i] == '"' || p[i] == '\\') {
            fprintf(out, "\\%c", p[i++]);
        } else if (p[i] < 0x20 || p[i] == 0x7f) {
            fprintf(out, "\\x%02x", p[i++]);
        } else {
            size_t n = kz_cli_utf8_seq(p + i, len - i);
            if (n == 0)
                return -1;
            fwrite(p + i, 1, n, out);
            i += n;
        }
    }
    fputc('"', out);
    return 0;
}

/* " [a, "b c"]" of the NULL-terminated V on OUT; -1 when not UTF-8 */
static int s_yaml_list(FILE *out, char *const *v)
{
    fputc('[', out);
    for (size_t i = 0; v[i]; i++) {
        if (i)
            fputs(", ", out);
        if (s_yaml_quote(out, v[i]) != 0)
            return -1;
    }
    fputc(']', out);
    return 0;
}

/* The target entry as YAML block text, its "- " at INDENT; malloc'd,
   NULL with WHY */
static char *s_entry(const s_init_t *s, int indent, char *why, size_t len)
{
    char *buf = NULL;
    size_t blen = 0;
    FILE *out = open_memstream(&buf, &blen);
    if (!out) {
        snprintf(why, len, "out of memory");
        return NULL;
    }
    int bad = 0;
    fprintf(out, "%*s- name: ", indent, "");
    bad |= s_yaml_quote(out, s->name);
    fprintf(out, "\n%*s  path: ", indent, "");
    bad |= s_yaml_quote(out, s->root);
    fprintf(out, "\n%*s  branch: ", indent, "");
    bad |= s_yaml_quote(out, s->branch);
    if (s->nlangs) {
        fprintf(out, "\n%*s  languages: ", indent, "");
        bad |= s_yaml_list(out, (char *const *)s->langs);
    }
    if (s->ntest) {
        fprintf(out, "\n%*s  test: ", indent, "");
        bad |= s_yaml_list(out, s->test);
    }
    if (s->nenv) {
        fprintf(out, "\n%*s  env: ", indent, "");
        bad |= s_yaml_list(out, s->env);
    }
    fputc('\n', out);
    if (fclose(out) != 0 || !buf) {
        free(buf);
        snprintf(why, len, "out of memory");
        return NULL;
    }
    if (bad) {
        free(buf);
        snprintf(why, len, "a path, branch or command of the project is not valid UTF-8");
        return NULL;
    }
    return buf;
}

/* Where "targets:" stands in a config file's text */
typedef enum {
    S_TARGETS_NONE,  /* no top-level targets key */
    S_TARGETS_BLOCK, /* "targets:" then a block list (or nothing) */
    S_TARGETS_EMPTY, /* "targets: []", "targets: null", "targets: ~" */
    S_TARGETS_OTHER  /* a flow list with entries, an anchor, ...: not edited */
} s_targets_kind_t;

/* Find the top-level targets key in TEXT: its kind, *LINE its line */
static s_targets_kind_t s_find_targets(const char *text, const char **line_p)
{
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        if (strncmp(line, "targets", 7) == 0) {
            const char *p = line + 7 + strspn(line + 7, " \t");
            if (*p == ':') {
                p++;
                p += strspn(p, " \t");
                *line_p = line;
                if (*p == '\0' || *p == '\n' || *p == '\r' || *p == '#')
                    return S_TARGETS_BLOCK;
                size_t word = strcspn(p, " \t\r\n#");
                const char *after = p + word + strspn(p + word, " \t\r");
                bool alone = *after == '\0' || *after == '\n' || *after == '#';
                if (alone && ((word == 2 && memcmp(p, "[]", 2) == 0) ||
                              (word == 4 && memcmp(p, "null", 4) == 0) || (word == 1 && *p == '~')))
                    return S_TARGETS_EMPTY;
                return S_TARGETS_OTHER;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return S_TARGETS_NONE;
}

/* After the block list that starts after the line TLINE: where a new
   item goes (after its last line that is not blank or a comment), and
   the indentation of its items (2 when it has none) */
static const char *s_block_end(const char *tline, int *indent)
{
    const char *eol = strchr(tline, '\n');
    const char *at = eol ? eol + 1 : tline + strlen(tline);
    *indent = -1;
    for (const char *line = at; *line;) {
        eol = strchr(line, '\n');
        const char *next = eol ? eol + 1 : line + strlen(line);
        size_t lead = strspn(line, " \t");
        char c = line[lead];
        bool blank = c == '\0' || c == '\n' || c == '\r';
        if (!blank && c != '#') {
            if (lead == 0 && (c != '-' || strncmp(line, "---", 3) == 0))
                break; /* the next top-level key, or the document's end */
            if (*indent < 0 && c == '-')
                *indent = (int)lead;
            at = next;
        }
        line = next;
    }
    if (*indent < 0)
        *indent = 2;
    return at;
}

/* TEXT with S's entry added under targets: (malloc'd), or NULL with WHY
   (*UNEDITABLE when the file's targets cannot be edited as text) */
static char *s_with_entry(const s_init_t *s, const char *text, bool *uneditable, char *why,
                          size_t len)
{
    const char *tline = NULL;
    s_targets_kind_t kind = s_find_targets(text, &tline);
    *uneditable = kind == S_TARGETS_OTHER;
    if (kind == S_TARGETS_OTHER) {
        snprintf(why, len,
                 "its 'targets' is not a block list ('targets:' and '  - name: ...' "
                 "lines), so it is not edited");
        return NULL;
    }
    int indent = 2;
    const char *at, *resume;
    if (kind == S_TARGETS_NONE) {
        at = resume = text + strlen(text);
    } else if (kind == S_TARGETS_EMPTY) {
        at = tline;
        const char *eol = strchr(tline, '\n');
        resume = eol ? eol + 1 : tline + strlen(tline);
    } else {
        at = resume = s_block_end(tline, &indent);
    }
    char *entry = s_entry(s, indent, why, len);
    if (!entry)
        return NULL;
    char *buf = NULL;
    size_t blen = 0;
    FILE *out = open_memstream(&buf, &blen);
    if (out) {
        fwrite(text, 1, (size_t)(at - text), out);
        if (at > text && at[-1] != '\n')
            fputc('\n', out);
        if (kind != S_TARGETS_BLOCK)
            fputs("targets:\n", out);
        fputs(entry, out);
        fputs(resume, out);
    }
    free(entry);
    if (!out || fclose(out) != 0) {
        free(buf);
        snprintf(why, len, "out of memory");
        return NULL;
    }
    return buf;
}

/* Read the config file PATH (at most 4 MiB) into a malloc'd string */
static char *s_read_config(const char *path, char *why, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(why, len, "unable to read '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4u << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (buf)
        n = fread(buf, 1, cap, f);
    bool bad = !buf || ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(why, len, "unable to read '%s': %s", path,
                 buf ? "read error or larger than 4 MiB" : "out of memory");
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Write TEXT to a new temporary file beside PATH with MODE; its name in
   TMP. 0 / -1 with WHY (nothing left) */
static int s_write_temp(const char *path, const char *text, mode_t mode, char *tmp, size_t tlen,
                        char *why, size_t len)
{
    snprintf(tmp, tlen, "%s.init-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(why, len, "unable to create a file beside '%s': %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int e = done < n ? errno : 0;
    if (!e && (fchmod(fd, mode) != 0 || fsync(fd) != 0))
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e) {
        unlink(tmp);
        snprintf(why, len, "unable to write '%.1024s': %s", tmp, strerror(e ? e : EIO));
        return -1;
    }
    return 0;
}

/* Put the config text NEW in place of PATH (CREATE: PATH must not exist
   then) after checking that it loads and holds S's target. 0 / -1 with
   WHY (PATH untouched) */
static int s_write_config(const s_init_t *s, const char *path, const char *text, mode_t mode,
                          bool create, char *why, size_t len)
{
    char tmp[PATH_MAX + 32], err[1024];
    if (s_write_temp(path, text, mode, tmp, sizeof tmp, why, len) != 0)
        return -1;
    kz_config_t *cfg = kz_config_load(tmp, err, sizeof err);
    const kz_target_config_t *t = cfg ? kz_config_target(cfg, s->name) : NULL;
    bool ok = t && strcmp(t->path, s->root) == 0;
    if (!ok)
        snprintf(why, len, "the config would not load with the new entry (%s); '%s' is untouched",
                 cfg ? "the target is not in it" : err, path);
    kz_config_destroy(&cfg);
    if (ok && create) {
        /* link, not rename: a file made meanwhile is not overwritten */
        if (link(tmp, path) != 0) {
            snprintf(why, len, "unable to create '%s': %s", path, strerror(errno));
            ok = false;
        }
        unlink(tmp);
        return ok ? 0 : -1;
    }
    if (ok && rename(tmp, path) != 0) {
        snprintf(why, len, "unable to replace '%s': %s", path, strerror(errno));
        ok = false;
    }
    if (!ok)
        unlink(tmp);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- run */

/* Run the target NAME of the config PATH's tests once at the head of its
   branch in a temporary worktree, and say whether they can validate */
static void s_test_at_base(const s_init_t *s, const char *path)
{
    char err[1024];
    kz_config_t *cfg = kz_config_open(path, err, sizeof err);
    const kz_target_config_t *target = cfg ? kz_config_target(cfg, s->name) : NULL;
    if (!target) {
        printf("tests not run at base: %s\n", cfg ? "the target is not in the config" : err);
        kz_config_destroy(&cfg);
        return;
    }
    kz_testsuite_run_t run;
    kz_testsuite_run_init(&run);
    if (kz_git_rev(target->path, target->branch, run.commit, err, sizeof err) != 0) {
        printf("tests not run at base: %s\n", err);
        kz_config_destroy(&cfg);
        return;
    }
    printf("running the tests at %.12s in a temporary worktree (removed after; up to %g s)\n",
           run.commit, target->test_timeout_ms / 1000.0);
    fflush(stdout);
    kz_log_level_t level = kz_log_level();
    kz_log_set_level(KZ_LOG_OFF);
    int rc = kz_cli_tests_in_tmp(target, "kaizen-init", &run);
    kz_log_set_level(level);
    if (rc != 0)
        printf("tests not run at base: out of memory\n");
    else if (run.error[0])
        printf("tests not run at base: %s\n", run.error);
    else if (!run.usable)
        printf("tests cannot run at base: %s%s%s\n", run.why, run.fix[0] ? "\n  fix: " : "",
               run.fix);
    else
        printf("tests at base: %ld passed, %ld failed, %ld skipped (%s)\n", run.passed,
               run.failed + run.errors, run.skipped, run.source);
    kz_testsuite_run_clear(&run);
    kz_config_destroy(&cfg);
}

/* The default name: the directory's base name, with what a target name
   cannot hold made '-' */
static void s_default_name(const char *root, char *name, size_t len)
{
    const char *base = strrchr(root, '/');
    base = base && base[1] ? base + 1 : root;
    snprintf(name, len, "%.100s", base);
    for (char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            *p = '-';
    while (name[0] == '.' || name[0] == '-')
        memmove(name, name + 1, strlen(name));
    if (!name[0])
        snprintf(name, len, "target");
}

static bool s_name_ok(const char *name)
{
    if (!*name || name[0] == '.' || name[0] == '-' || strlen(name) >= 128)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

static void s_print_found(const s_init_t *s)
{
    printf("  test command:     ");
    if (s->ntest) {
        s_yaml_list(stdout, s->test);
        printf("\n");
    } else {
        printf("none found (write targets[].test by hand)\n");
    }
    for (size_t i = 0; i < s->nenv; i++)
        printf("  test env:         %s\n", s->env[i]);
}

/* Look at the repository: S's root and branch set. KZ_EXIT_OK or the
   exit code after saying what is wrong */
static int s_inspect(s_init_t *s)
{
    char err[1024];
    if (kz_git_ls_files(s->root, "HEAD", &s->files, &s->nfiles, err, sizeof err) != 0)
        return kz_cli_error(S_CMD, "%s", err);
    printf("kaizen init: %s (branch %s)\n", s->root, s->branch);
    s->pyproject = s_pyproject(s);
    s_languages(s);
    s_project_tools(s);
    s_tools(s);
    if (s_test_command(s) != 0)
        return kz_cli_error(S_CMD, "out of memory");
    s_print_found(s);
    s_compile_db(s);
    return KZ_EXIT_OK;
}

/* The repository at PATH: its top directory and branch into S */
static int s_repository(s_init_t *s, const char *path)
{
    char err[1024], oid[KZ_GIT_OID_MAX];
    if (!realpath(path, s->root))
        return kz_cli_error(S_CMD, "unable to open '%s': %s", path, strerror(errno));
    if (kz_git_check_repo(s->root, err, sizeof err) != 0)
        return kz_cli_error(S_CMD, "%s (give the top directory of a git repository)", err);
    if (kz_git_rev(s->root, "HEAD", oid, err, sizeof err) != 0)
        return kz_cli_error(S_CMD, "'%s' has no commit yet: commit the project first", s->root);
    if (kz_git_current_branch(s->root, s->branch, sizeof s->branch, err, sizeof err) != 0)
        return kz_cli_error(S_CMD, "%s", err);
    if (!s->branch[0])
        return kz_cli_error(S_CMD,
                            "HEAD of '%s' is detached: check out the branch kaizen should "
                            "improve",
                            s->root);
    return KZ_EXIT_OK;
}

/* Add the entry to the config file PATH (created when missing). The
   exit code after saying what happened */
static int s_add_entry(s_init_t *s, const char *path, bool exists)
{
    char why[2048];
    char *text = exists ? s_read_config(path, why, sizeof why) : strdup("");
    if (!text)
        return kz_cli_error(S_CMD, "%s", exists ? why : "out of memory");
    mode_t mode = 0644;
    struct stat st;
    if (exists && stat(path, &st) == 0) {
        mode = st.st_mode & 07777;
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    bool uneditable = false;
    char *updated = s_with_entry(s, text, &uneditable, why, sizeof why);
    int rc = KZ_EXIT_OK;
    if (!updated) {
        rc = kz_cli_error(S_CMD, "'%s': %s", path, why);
        if (uneditable) {
            char *entry = s_entry(s, 2, why, sizeof why);
            if (entry)
                fprintf(stderr, "add this entry under targets: by hand:\n%s", entry);
            free(entry);
        }
    } else if (s_write_config(s, path, updated, mode, !exists, why, sizeof why) != 0) {
        rc = kz_cli_error(S_CMD, "%s", why);
    } else {
        printf("wrote target '%s' to %s\n", s->name, path);
    }
    free(updated);
    free(text);
    return rc;
}

static void s_free(s_init_t *s)
{
    kz_git_strv_free(s->files);
    s_clear_test(s);
    for (size_t i = 0; i < s->nenv; i++)
        free(s->env[i]);
    json_decref(s->pyproject);
}

/* The config file PATH as it is (*EXISTS), or the defaults when there is
   none yet, into *CFG: its recipes decide the tools, its targets whether
   S's name is free. KZ_EXIT_OK, or the exit code after saying why not */
static int s_open_config(const s_init_t *s, const char *path, kz_config_t **cfg, bool *exists)
{
    char err[1024];
    struct stat st;
    *exists = stat(path, &st) == 0;
    if (!*exists && errno != ENOENT)
        return kz_cli_error(S_CMD, "unable to open '%s': %s", path, strerror(errno));
    *cfg = *exists ? kz_config_open(path, err, sizeof err) : kz_config_default();
    if (!*cfg && *exists)
        return kz_cli_error(S_CMD, "'%s' is not a kaizen config: %s", path, err);
    if (!*cfg)
        return kz_cli_error(S_CMD, "out of memory");
    if (kz_config_target(*cfg, s->name))
        return kz_cli_usage(S_CMD,
                            "a target named '%s' exists already in '%s' (choose another name "
                            "with --name)",
                            s->name, path);
    return KZ_EXIT_OK;
}

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},
        {"no-test", no_argument, NULL, S_OPT_NO_TEST},
        {NULL, 0, NULL, 0},
    };
    const char *name = NULL;
    bool no_test = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":n:", opts, NULL)) != -1) {
        if (c == 'n')
            name = optarg;
        else if (c == S_OPT_NO_TEST)
            no_test = true;
        else
            return kz_cli_bad_option(S_CMD, c, argv);
    }
    if (argc - optind > 1)
        return kz_cli_usage(S_CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (name && !s_name_ok(name))
        return kz_cli_usage(S_CMD,
                            "invalid name '%s': use letters, digits, '-', '_' and '.', starting "
                            "with a letter or digit",
                            name);
    const char *path = cli->config_path ? cli->config_path : "kaizen.yaml";

    s_init_t *s = calloc(1, sizeof *s);
    if (!s)
        return kz_cli_error(S_CMD, "out of memory");
    int rc = s_repository(s, optind < argc ? argv[optind] : ".");
    if (rc == KZ_EXIT_OK) {
        if (name)
            snprintf(s->name, sizeof s->name, "%.127s", name);
        else
            s_default_name(s->root, s->name, sizeof s->name);
    }
    bool exists = false;
    kz_config_t *cfg = NULL;
    if (rc == KZ_EXIT_OK)
        rc = s_open_config(s, path, &cfg, &exists);
    s->cfg = cfg;
    if (rc == KZ_EXIT_OK)
        rc = s_inspect(s);
    if (rc == KZ_EXIT_OK)
        rc = s_add_entry(s, path, exists);
    if (rc == KZ_EXIT_OK && !no_test && s->ntest)
        s_test_at_base(s, path);
    else if (rc == KZ_EXIT_OK)
        printf("tests not run at base: %s\n", no_test ? "--no-test" : "no test command");
    kz_config_destroy(&cfg);
    s_free(s);
    free(s);
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = KZ_EXIT_FAILURE;
    return rc;
}

static const struct option s_opts[] = {
    {"name", required_argument, NULL, 'n'},
    {"no-test", no_argument, NULL, S_OPT_NO_TEST},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

const kz_cli_cmd_t kz_cmd_init = {
    "init",  "add a target for a git repository to the config (languages, tools, tests)",
    s_usage, s_run,
    false,   s_opt_tables,
    "n:",
};
