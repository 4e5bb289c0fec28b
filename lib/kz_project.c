/*  kz_project.c - a project's own settings for the tools kaizen runs

    See kz_project.h. The TOML and INI files are read by Debian's python3
    (never a parser of our own), in isolated mode (-I: the worktree's
    modules cannot shadow tomllib or configparser), with the file names
    as arguments; .pre-commit-config.yaml by libyaml.
*/
#include "kz_project.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <fnmatch.h>
#include <limits.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "kz_proc.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define S_PYTHON        "/usr/bin/python3"
#define S_SETTINGS_MAX  (4u << 20)  /* bytes of a settings file read */
#define S_OUT_CAP       (16u << 20) /* bytes of JSON the reader may print */
#define S_TIMEOUT_MS    30000
#define S_HOOKS_MAX     1000 /* hooks of .pre-commit-config.yaml */
#define S_ARGS_MAX      256  /* args of one hook */
#define S_MATCH_LIMIT   1000000u
#define S_PROBLEMS_SIZE 2048

/* The INI files read (pyproject.toml is read apart, with tomllib) */
static const char *const s_ini_files[] = {
    "setup.cfg", "tox.ini", ".flake8", "mypy.ini", ".mypy.ini", ".codespellrc", NULL,
};

/* Reads every file named in argv: pyproject.toml with tomllib, the others
   with configparser; prints {"toml": ..., "ini": {file: {section: {key:
   value}}}, "errors": {file: first line of the error}} */
static const char s_reader[] =
    "import configparser, json, sys, tomllib\n"
    "out = {'toml': None, 'ini': {}, 'errors': {}}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        with open(name, 'rb') as fp:\n"
    "            data = fp.read(4194305)\n"
    "        if len(data) > 4194304:\n"
    "            raise ValueError('larger than 4 MiB')\n"
    "        if name == 'pyproject.toml':\n"
    "            out['toml'] = tomllib.loads(data.decode('utf-8'))\n"
    "        else:\n"
    "            cp = configparser.ConfigParser(interpolation=None, strict=False)\n"
    "            cp.read_string(data.decode('utf-8', 'replace'), name)\n"
    "            out['ini'][name] = {s: dict(cp.items(s, raw=True)) for s in cp.sections()}\n"
    "    except Exception as e:\n"
    "        text = str(e).strip().splitlines()\n"
    "        out['errors'][name] = text[0] if text else type(e).__name__\n"
    "json.dump(out, sys.stdout, default=str)\n";

struct kz_project {
    char *root;
    json_t *toml; /* pyproject.toml, or NULL */
    json_t *ini;  /* {file: {section: {key: value}}} */
    kz_hook_t *hooks;
    size_t nhooks;
    char *files;   /* pre-commit's top-level files */
    char *exclude; /* and exclude */
    char problems[S_PROBLEMS_SIZE];
};

struct kz_setup_filter {
    pcre2_code *re[4]; /* hook files, hook exclude, top files, top exclude */
};

__attribute__((format(printf, 2, 3))) static void s_problem(kz_project_t *self, const char *fmt,
                                                            ...)
{
    size_t o = strlen(self->problems);
    if (o + 4 >= sizeof self->problems)
        return;
    if (o)
        o += (size_t)snprintf(self->problems + o, sizeof self->problems - o, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->problems + o, sizeof self->problems - o, fmt, ap);
    va_end(ap);
}

/* True when ROOT/REL is a regular file inside ROOT */
static bool s_file_here(const char *root, const char *rel)
{
    if (!kz_path_inside(root, rel, NULL, 0))
        return false;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ------------------------------------------------------- TOML and INI */

/* Run the python reader on the settings files present. 0 / -1 (OOM) */
static int s_read_settings(kz_project_t *self)
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = S_PYTHON;
    argv[n++] = "-I";
    argv[n++] = "-c";
    argv[n++] = s_reader;
    size_t first = n;
    if (s_file_here(self->root, "pyproject.toml"))
        argv[n++] = "pyproject.toml";
    for (size_t i = 0; s_ini_files[i]; i++)
        if (s_file_here(self->root, s_ini_files[i]))
            argv[n++] = s_ini_files[i];
    argv[n] = NULL;
    if (n == first)
        return 0;
    /* the target's settings files are hostile input: read in the
       sandbox, from copies when its user switches (it may not reach the
       target itself) */
    char copy[PATH_MAX] = "", err[512];
    if (kz_sandbox_runner(NULL, NULL) &&
        kz_sandbox_copy_files(self->root, argv + first, S_OUT_CAP, copy, sizeof copy, err,
                              sizeof err) != 0) {
        s_problem(self, "settings files not read: %s", err);
        if (copy[0])
            (void)kz_rmtree(copy, NULL, 0);
        return 0;
    }
    kz_proc_opts_t po = {0};
    po.argv = argv;
    po.cwd = copy[0] ? copy : self->root;
    po.sandbox = KZ_SANDBOX_READ;
    po.timeout_ms = S_TIMEOUT_MS;
    po.out_cap = S_OUT_CAP;
    po.err_cap = 64u << 10;
    kz_proc_result_t pr;
    int prc = kz_proc_run(&po, &pr, err, sizeof err);
    if (copy[0])
        (void)kz_rmtree(copy, NULL, 0);
    if (prc != 0) {
        s_problem(self, "settings files not read: %s", err);
        kz_proc_result_free(&pr);
        return 0;
    }
    json_error_t je;
    json_t *doc = pr.exit_code == 0 && !pr.out_truncated ? json_loads(pr.out, 0, &je) : NULL;
    if (!doc) {
        char line[200];
        snprintf(line, sizeof line, "%s", pr.err ? pr.err : "");
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        s_problem(self, "settings files not read: %s %d%s%s", S_PYTHON, pr.exit_code,
                  line[0] ? ": " : "", line);
        kz_proc_result_free(&pr);
        return 0;
    }
    kz_proc_result_free(&pr);
    json_t *toml = json_object_get(doc, "toml");
    if (json_is_object(toml))
        self->toml = json_incref(toml);
    json_t *ini = json_object_get(doc, "ini");
    if (json_is_object(ini)) {
        json_decref(self->ini);
        self->ini = json_incref(ini);
    }
    const char *file;
    json_t *why;
    json_object_foreach(json_object_get(doc, "errors"), file, why)
    {
        s_problem(self, "%s: %s", file, json_string_value(why) ? json_string_value(why) : "?");
    }
    json_decref(doc);
    return 0;
}

json_t *kz_project_toml(const kz_project_t *self, const char *path)
{
    if (!self || !self->toml || !path)
        return NULL;
    json_t *at = self->toml;
    char key[256];
    for (const char *p = path; at && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        at = json_object_get(at, key);
        p += n + (dot ? 1 : 0);
    }
    return json_is_object(at) ? at : NULL;
}

const char *kz_project_ini(const kz_project_t *self, const char *file, const char *section,
                           const char *key)
{
    if (!self || !file || !section || !key)
        return NULL;
    json_t *sec = json_object_get(json_object_get(self->ini, file), section);
    return json_string_value(json_object_get(sec, key));
}

/* --------------------------------------------------------- pre-commit */

yaml_node_t *kz_yaml_map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* A copy of scalar NODE's text; NULL when NODE is not a scalar (or OOM:
   *OOM set) */
static char *s_scalar(yaml_node_t *node, bool *oom)
{
    if (!node || node->type != YAML_SCALAR_NODE)
        return NULL;
    char *s = strndup((const char *)node->data.scalar.value, node->data.scalar.length);
    if (!s)
        *oom = true;
    return s;
}

static void s_hook_free(kz_hook_t *h)
{
    free(h->repo);
    free(h->rev);
    free(h->id);
    for (size_t i = 0; h->args && i < h->args_count; i++)
        free(h->args[i]);
    free(h->args);
    free(h->files);
    free(h->exclude);
    memset(h, 0, sizeof *h);
}

/* Add the hook HOOK of repository REPO (a mapping). 0 / -1 (OOM) */
static int s_hook_add(kz_project_t *self, yaml_document_t *doc, yaml_node_t *repo,
                      yaml_node_t *hook)
{
    if (self->nhooks >= S_HOOKS_MAX) {
        s_problem(self, ".pre-commit-config.yaml: more than %d hooks: the rest ignored",
                  S_HOOKS_MAX);
        return 0;
    }
    bool oom = false;
    kz_hook_t h = {0};
    h.id = s_scalar(kz_yaml_map_get(doc, hook, "id"), &oom);
    if (!h.id) {
        if (!oom)
            s_problem(self, ".pre-commit-config.yaml: a hook without an id");
        return oom ? -1 : 0;
    }
    h.repo = s_scalar(kz_yaml_map_get(doc, repo, "repo"), &oom);
    h.rev = s_scalar(kz_yaml_map_get(doc, repo, "rev"), &oom);
    h.files = s_scalar(kz_yaml_map_get(doc, hook, "files"), &oom);
    h.exclude = s_scalar(kz_yaml_map_get(doc, hook, "exclude"), &oom);
    yaml_node_t *args = kz_yaml_map_get(doc, hook, "args");
    size_t n = args && args->type == YAML_SEQUENCE_NODE
                   ? (size_t)(args->data.sequence.items.top - args->data.sequence.items.start)
                   : 0;
    if (n > S_ARGS_MAX) {
        s_problem(self, ".pre-commit-config.yaml: hook '%s': more than %d args: ignored", h.id,
                  S_ARGS_MAX);
        n = 0;
    }
    h.args = calloc(n + 1, sizeof *h.args);
    oom = oom || !h.args;
    for (size_t i = 0; !oom && i < n; i++) {
        yaml_node_t *a = yaml_document_get_node(doc, args->data.sequence.items.start[i]);
        char *s = s_scalar(a, &oom);
        if (s)
            h.args[h.args_count++] = s;
        else if (!oom)
            s_problem(self, ".pre-commit-config.yaml: hook '%s': an arg that is not a string",
                      h.id);
    }
    kz_hook_t *grown = oom ? NULL : realloc(self->hooks, (self->nhooks + 1) * sizeof *grown);
    if (!grown) {
        s_hook_free(&h);
        return -1;
    }
    self->hooks = grown;
    self->hooks[self->nhooks++] = h;
    return 0;
}

/* Read .pre-commit-config.yaml when there is one. 0 / -1 (OOM) */
static int s_read_precommit(kz_project_t *self)
{
    const char *name = ".pre-commit-config.yaml";
    if (!s_file_here(self->root, name))
        return 0;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", self->root, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        s_problem(self, "%s: cannot be opened", name);
        return 0;
    }
    char *buf = malloc(S_SETTINGS_MAX + 1);
    size_t len = buf ? fread(buf, 1, S_SETTINGS_MAX + 1, fp) : 0;
    fclose(fp);
    if (!buf)
        return -1;
    if (len > S_SETTINGS_MAX) {
        s_problem(self, "%s: larger than %u bytes: not read", name, S_SETTINGS_MAX);
        free(buf);
        return 0;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    if (!yaml_parser_initialize(&parser)) {
        free(buf);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        s_problem(self, "%s:%zu: %s", name, parser.problem_mark.line + 1,
                  parser.problem ? parser.problem : "not YAML");
        yaml_parser_delete(&parser);
        free(buf);
        return 0;
    }
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    bool oom = false;
    self->files = s_scalar(kz_yaml_map_get(&doc, top, "files"), &oom);
    self->exclude = s_scalar(kz_yaml_map_get(&doc, top, "exclude"), &oom);
    yaml_node_t *repos = kz_yaml_map_get(&doc, top, "repos");
    if (top && (!repos || repos->type != YAML_SEQUENCE_NODE))
        s_problem(self, "%s: no list of repos", name);
    for (yaml_node_item_t *r =
             repos && repos->type == YAML_SEQUENCE_NODE ? repos->data.sequence.items.start : NULL;
         r && r < repos->data.sequence.items.top && rc == 0 && !oom; r++) {
        yaml_node_t *repo = yaml_document_get_node(&doc, *r);
        yaml_node_t *hooks = kz_yaml_map_get(&doc, repo, "hooks");
        if (!hooks || hooks->type != YAML_SEQUENCE_NODE)
            continue;
        for (yaml_node_item_t *h = hooks->data.sequence.items.start;
             h < hooks->data.sequence.items.top && rc == 0; h++)
            rc = s_hook_add(self, &doc, repo, yaml_document_get_node(&doc, *h));
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(buf);
    return rc != 0 || oom ? -1 : 0;
}

/* ------------------------------------------------------------ project */

kz_project_t *kz_project_load(const char *root, char *errbuf, size_t errlen)
{
    struct stat st;
    if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "project '%s' is not a directory", root ? root : "(null)");
        return NULL;
    }
    kz_project_t *self = calloc(1, sizeof *self);
    if (!self || !(self->root = strdup(root)) || !(self->ini = json_object()))
        goto oom;
    if (s_read_settings(self) != 0 || s_read_precommit(self) != 0)
        goto oom;
    return self;
oom:
    kz_project_destroy(&self);
    snprintf(errbuf, errlen, "out of memory reading the settings of '%s'", root);
    return NULL;
}

void kz_project_destroy(kz_project_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_project_t *self = *self_p;
    for (size_t i = 0; i < self->nhooks; i++)
        s_hook_free(&self->hooks[i]);
    free(self->hooks);
    json_decref(self->toml);
    json_decref(self->ini);
    free(self->files);
    free(self->exclude);
    free(self->root);
    free(self);
    *self_p = NULL;
}

const char *kz_project_problems(const kz_project_t *self)
{
    return self ? self->problems : "";
}

const kz_hook_t *kz_project_hook(const kz_project_t *self, const char *id)
{
    for (size_t i = 0; self && id && i < self->nhooks; i++)
        if (strcmp(self->hooks[i].id, id) == 0)
            return &self->hooks[i];
    return NULL;
}

size_t kz_project_hooks_count(const kz_project_t *self)
{
    return self ? self->nhooks : 0;
}

const kz_hook_t *kz_project_hook_at(const kz_project_t *self, size_t i)
{
    return self && i < self->nhooks ? &self->hooks[i] : NULL;
}

/* ------------------------------------------------------------ versions */

void kz_version_find(const char *text, char *out, size_t len)
{
    out[0] = '\0';
    for (const char *p = text; p && *p; p++) {
        if (*p < '0' || *p > '9' || (p > text && ((p[-1] >= '0' && p[-1] <= '9') || p[-1] == '.')))
            continue;
        const char *e = p;
        bool dotted = false;
        while ((*e >= '0' && *e <= '9') || (*e == '.' && e[1] >= '0' && e[1] <= '9')) {
            dotted = dotted || *e == '.';
            e++;
        }
        if (!dotted)
            continue;
        snprintf(out, len, "%.*s", (int)(e - p), p);
        return;
    }
}

/* True when versions A and B are the same, missing components being 0
   ("1.5" and "1.5.0") */
static bool s_version_same(const char *a, const char *b)
{
    while (*a || *b) {
        unsigned long x = strtoul(a, (char **)&a, 10), y = strtoul(b, (char **)&b, 10);
        if (x != y)
            return false;
        a += *a == '.';
        b += *b == '.';
    }
    return true;
}

/* True when pre-commit repository URL REPO is WANT ("owner/name"): the
   URL ends with it, after a '/' or ':', with or without ".git" */
static bool s_repo_is(const char *repo, const char *want)
{
    if (!repo || !want || !*want)
        return false;
    size_t rl = strlen(repo), wl = strlen(want);
    while (rl && repo[rl - 1] == '/')
        rl--;
    if (rl >= 4 && strncmp(repo + rl - 4, ".git", 4) == 0)
        rl -= 4;
    if (rl < wl || strncasecmp(repo + rl - wl, want, wl) != 0)
        return false;
    return rl == wl || repo[rl - wl - 1] == '/' || repo[rl - wl - 1] == ':';
}

/* The installed version of TOOL (its `version` argv) into OUT, "" when
   it cannot be told */
static void s_installed(const kz_tool_config_t *tool, char *out, size_t len)
{
    out[0] = '\0';
    kz_proc_opts_t po = {0};
    po.argv = (const char *const *)tool->version;
    po.cwd = "/";
    po.timeout_ms = S_TIMEOUT_MS;
    po.out_cap = 64u << 10;
    po.err_cap = 64u << 10;
    kz_proc_result_t pr;
    char err[256];
    if (kz_proc_run(&po, &pr, err, sizeof err) == 0 && pr.exit_code == 0) {
        kz_version_find(pr.out, out, len);
        if (!out[0])
            kz_version_find(pr.err, out, len);
    }
    kz_proc_result_free(&pr);
}

/* -------------------------------------------------------------- setup */

/* Long options a hook may not pass to any tool (fnmatch on the option's
   name): they write files, install or run programs, or change the output
   kaizen parses */
static const char *const s_denied_long[] = {
    "--output*",
    "--write*",
    "--fix*",
    "--in-place*",
    "--inplace*",
    "--install*",
    "--format*",
    "--msg-template*",
    "--python-executable*",
    "--init-hook*",
    "--load-plugins*",
    "--junit*",
    "--*-report*",
    "--tee*",
    "--show-source*",
    "--statistics*",
    "--benchmark*",
    "--count*",
    "--pretty*",
    "--quiet*",
    "--interactive*",
    "--exit-zero*",
    "--version*",
    "--help*",
    "--diff*",
    "--color*",
    "--colour*",
    "--toml*",
    NULL,
};

/* Short options a hook may not pass, any tool ("*") or one tool: each
   letter of a cluster ("-sw") counts */
static const struct {
    const char *tool;
    const char *letters;
} s_denied_short[] = {
    {"*", "hVo"},         /* help, version, output file */
    {"codespell", "wiq"}, /* write changes, interactive, quiet level (hides findings) */
    {"flake8", "q"},      /* quiet: file names only */
    {"isort", "q"},       {"pylint", "f"}, /* output format */
    {"bandit", "f"},                       /* output format */
    {NULL, NULL},
};

static int s_push(kz_tool_setup_t *setup, const char *arg)
{
    char **grown = realloc(setup->args, (setup->args_count + 2) * sizeof *grown);
    if (!grown)
        return -1;
    setup->args = grown;
    if (!(setup->args[setup->args_count] = strdup(arg)))
        return -1;
    setup->args[++setup->args_count] = NULL;
    return 0;
}

__attribute__((format(printf, 2, 3))) static void s_refuse(kz_tool_setup_t *setup, const char *fmt,
                                                           ...)
{
    size_t o = strlen(setup->refused);
    if (o + 4 >= sizeof setup->refused)
        return;
    if (o)
        o += (size_t)snprintf(setup->refused + o, sizeof setup->refused - o, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(setup->refused + o, sizeof setup->refused - o, fmt, ap);
    va_end(ap);
}

/* Why option OPT (an argv element starting with '-') may not be passed
   to TOOL, or NULL when it may */
static const char *s_denied(const char *tool, const char *opt)
{
    if (strcmp(opt, "-") == 0 || strcmp(opt, "--") == 0)
        return "not an option";
    if (opt[1] == '-') {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(opt, "="), opt);
        for (size_t i = 0; s_denied_long[i]; i++)
            if (fnmatch(s_denied_long[i], name, 0) == 0)
                return "writes files, runs programs or changes the output kaizen reads";
        return NULL;
    }
    size_t n = strcspn(opt + 1, "=");
    for (size_t i = 0; s_denied_short[i].tool; i++) {
        if (strcmp(s_denied_short[i].tool, "*") != 0 && strcmp(s_denied_short[i].tool, tool) != 0)
            continue;
        for (size_t k = 0; k < n; k++)
            if (strchr(s_denied_short[i].letters, opt[1 + k]))
                return "writes files, runs programs or changes the output kaizen reads";
    }
    return NULL;
}

/* True when option value V may name a file outside ROOT */
static bool s_value_leaves(const char *root, const char *v)
{
    if (v[0] == '~' || v[0] == '/')
        return true;
    if (!strchr(v, '/') && strcmp(v, "..") != 0)
        return false;
    return !root || !kz_path_inside(root, v, NULL, 0);
}

/* Append the options of HOOK's args: each option with the values that
   follow it, unless refused. 0 / -1 (OOM) */
static int s_hook_args(const kz_project_t *self, const kz_tool_config_t *tool,
                       const kz_hook_t *hook, kz_tool_setup_t *setup)
{
    for (size_t i = 0; i < hook->args_count;) {
        const char *opt = hook->args[i];
        size_t end = i + 1;
        while (end < hook->args_count && hook->args[end][0] != '-')
            end++;
        const char *why = opt[0] == '-' ? s_denied(tool->name, opt) : "not an option";
        const char *eq = opt[0] == '-' ? strchr(opt, '=') : NULL;
        if (!why && eq && s_value_leaves(self->root, eq + 1))
            why = "names a file outside the worktree";
        for (size_t k = i + 1; !why && k < end; k++)
            if (s_value_leaves(self->root, hook->args[k]))
                why = "names a file outside the worktree";
        if (why) {
            s_refuse(setup, "hook '%s' arg '%.80s' refused: %s", hook->id, opt, why);
        } else {
            for (size_t k = i; k < end; k++)
                if (s_push(setup, hook->args[k]) != 0)
                    return -1;
        }
        i = end;
    }
    return 0;
}

/* The hook of TOOL: the first hook whose id is one of tools[].hooks (or
   the tool's name) */
static const kz_hook_t *s_tool_hook(const kz_project_t *self, const kz_tool_config_t *tool)
{
    if (!tool->hooks_count)
        return kz_project_hook(self, tool->name);
    for (size_t i = 0; i < tool->hooks_count; i++) {
        const kz_hook_t *h = kz_project_hook(self, tool->hooks[i]);
        if (h)
            return h;
    }
    return NULL;
}

/* V (a TOML string or array of strings) as one comma-separated string */
static int s_toml_join(const json_t *v, char *out, size_t len)
{
    if (json_is_string(v))
        return snprintf(out, len, "%s", json_string_value(v)) < (int)len ? 0 : -1;
    if (!json_is_array(v))
        return -1;
    size_t o = 0, i;
    const json_t *e;
    out[0] = '\0';
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return -1;
        int n = snprintf(out + o, len - o, "%s%s", i ? "," : "", json_string_value(e));
        if (n < 0 || (size_t)n >= len - o)
            return -1;
        o += (size_t)n;
    }
    return 0;
}

/* codespell: Debian's codespell reads setup.cfg and .codespellrc itself,
   but pyproject.toml only with tomli, which Debian 12 does not ship:
   pass the keys of [tool.codespell] kaizen knows as options */
static int s_codespell(const kz_project_t *self, kz_tool_setup_t *setup)
{
    static const char *const keys[] = {"ignore-words-list",     "skip",    "ignore-regex",
                                       "uri-ignore-words-list", "builtin", NULL};
    const json_t *sec = kz_project_toml(self, "tool.codespell");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)sec, key, v)
    {
        char name[64];
        snprintf(name, sizeof name, "%s", key);
        for (char *c = name; *c; c++)
            *c = *c == '_' ? '-' : *c;
        size_t k = 0;
        while (keys[k] && strcmp(keys[k], name) != 0)
            k++;
        char val[4096], arg[4200];
        if (!keys[k] || s_toml_join(v, val, sizeof val) != 0) {
            s_refuse(setup, "pyproject.toml [tool.codespell] %s: not passed on", key);
            continue;
        }
        snprintf(arg, sizeof arg, "--%s=%s", name, val);
        if (s_push(setup, arg) != 0)
            return -1;
    }
    return 0;
}

/* mypy: true when the config file mypy uses (the first of mypy.ini,
   .mypy.ini, pyproject.toml with [tool.mypy], setup.cfg with [mypy])
   names the files to check */
static bool s_mypy_files(const kz_project_t *self)
{
    const char *const inis[] = {"mypy.ini", ".mypy.ini"};
    for (size_t i = 0; i < 2; i++)
        if (json_object_get(self->ini, inis[i]))
            return kz_project_ini(self, inis[i], "mypy", "files") != NULL;
    const json_t *sec = kz_project_toml(self, "tool.mypy");
    if (sec) {
        const json_t *f = json_object_get(sec, "files");
        return (json_is_string(f) && *json_string_value(f)) || json_array_size(f) > 0;
    }
    return kz_project_ini(self, "setup.cfg", "mypy", "files") != NULL;
}

/* PATTERN compiled, or NULL: no pattern, or a bad one (said in SETUP:
   it is left out) */
static pcre2_code *s_compile(kz_tool_setup_t *setup, const char *what, const char *pattern)
{
    if (!pattern)
        return NULL;
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        s_refuse(setup, "%s '%.80s' not applied: %s at %zu", what, pattern, (const char *)msg,
                 (size_t)at);
    }
    return re;
}

/* Compile PATTERNS (the hook's files and exclude, pre-commit's top-level
   files and exclude; each may be NULL) into SETUP's filter. 0 / -1 (OOM) */
static int s_filter_make(kz_tool_setup_t *setup, const char *const patterns[4])
{
    static const char *const what[4] = {"hook files", "hook exclude", "pre-commit files",
                                        "pre-commit exclude"};
    if (!patterns[0] && !patterns[1] && !patterns[2] && !patterns[3])
        return 0;
    struct kz_setup_filter *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    for (size_t i = 0; i < 4; i++)
        f->re[i] = s_compile(setup, what[i], patterns[i]);
    setup->filter = f;
    return 0;
}

/* The version HOOK's rev pins (when its repository is tools[].pin_repo
   and the rev is a version, not a commit) against the installed one */
static void s_pin(const kz_tool_config_t *tool, const kz_hook_t *hook, kz_tool_setup_t *setup)
{
    if (!hook->rev || !s_repo_is(hook->repo, tool->pin_repo))
        return;
    const char *rev = hook->rev + (hook->rev[0] == 'v');
    char found[64];
    kz_version_find(rev, found, sizeof found);
    if (!found[0] || strcmp(found, rev) != 0)
        return;
    snprintf(setup->pinned, sizeof setup->pinned, "%s", rev);
    if (!tool->version_count)
        return;
    s_installed(tool, setup->installed, sizeof setup->installed);
    if (setup->installed[0] && !s_version_same(setup->pinned, setup->installed))
        snprintf(setup->differs, sizeof setup->differs,
                 "version differs from the project's pin (%s pinned, %s installed)", setup->pinned,
                 setup->installed);
}

/* True when TOOL's recipe runs PROGRAM: its name, its program or its
   python module ("python3 -m mypy") */
static bool s_runs(const kz_tool_config_t *tool, const char *program)
{
    if (strcmp(tool->name, program) == 0 || !tool->argv || !tool->argv[0])
        return strcmp(tool->name, program) == 0;
    const char *base = strrchr(tool->argv[0], '/');
    if (strcmp(base ? base + 1 : tool->argv[0], program) == 0)
        return true;
    const char *module = kz_argv_python_module(tool->argv, tool->argv_count);
    return module && strcmp(module, program) == 0;
}

int kz_project_setup(const kz_project_t *self, const kz_tool_config_t *tool, kz_tool_setup_t *setup)
{
    memset(setup, 0, sizeof *setup);
    if (!(setup->args = calloc(1, sizeof *setup->args)))
        return -1;
    if (!self || !tool || !tool->name)
        return 0;
    int rc = 0;
    if (s_runs(tool, "codespell"))
        rc = s_codespell(self, setup);
    if (s_runs(tool, "mypy"))
        setup->project_files = s_mypy_files(self);
    const kz_hook_t *hook = s_tool_hook(self, tool);
    setup->hook = hook;
    if (rc == 0 && hook)
        rc = s_hook_args(self, tool, hook, setup);
    /* pre-commit's patterns choose the files of its hooks only: a tool the
       project does not run through pre-commit checks every file (and
       kz_scope says which are not the project's own) */
    const char *const patterns[4] = {hook ? hook->files : NULL, hook ? hook->exclude : NULL,
                                     hook ? self->files : NULL, hook ? self->exclude : NULL};
    if (rc == 0)
        rc = s_filter_make(setup, patterns);
    if (rc == 0 && hook)
        s_pin(tool, hook, setup);
    if (rc != 0)
        kz_tool_setup_clear(setup);
    return rc;
}

int kz_tool_setup_load(const char *root, const kz_tool_config_t *tool, kz_tool_setup_t *setup,
                       char *note, size_t notelen)
{
    char err[512];
    kz_project_t *p = kz_project_load(root, err, sizeof err);
    int rc = kz_project_setup(p, tool, setup);
    const char *problems = p ? kz_project_problems(p) : err;
    snprintf(note, notelen, "%s%s%s", problems, problems[0] && setup->refused[0] ? "; " : "",
             setup->refused);
    setup->hook = NULL;
    kz_project_destroy(&p);
    return rc;
}

void kz_tool_setup_clear(kz_tool_setup_t *setup)
{
    if (!setup)
        return;
    for (size_t i = 0; setup->args && i < setup->args_count; i++)
        free(setup->args[i]);
    free(setup->args);
    if (setup->filter)
        for (size_t i = 0; i < 4; i++)
            pcre2_code_free(setup->filter->re[i]);
    free(setup->filter);
    memset(setup, 0, sizeof *setup);
}

/* 1 when RE finds a match in PATH, 0 when not, -1 when it cannot tell
   (the match limit: a pattern too costly for this path) */
static int s_search(const pcre2_code *re, const char *path)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!md || !mc) {
        pcre2_match_data_free(md);
        pcre2_match_context_free(mc);
        return -1;
    }
    pcre2_set_match_limit(mc, S_MATCH_LIMIT);
    int rc = pcre2_match(re, (PCRE2_SPTR)path, strlen(path), 0, 0, md, mc);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return rc >= 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

bool kz_tool_setup_wants(const kz_tool_setup_t *setup, const char *path)
{
    if (!setup || !setup->filter || !path)
        return true;
    pcre2_code *const *re = setup->filter->re;
    /* a pattern that cannot decide leaves the file out, as a crash of
       pre-commit would */
    if ((re[2] && s_search(re[2], path) != 1) || (re[0] && s_search(re[0], path) != 1))
        return false;
    if ((re[3] && s_search(re[3], path) != 0) || (re[1] && s_search(re[1], path) != 0))
        return false;
    return true;
}

/* ------------------------------------------------------------ not run */

/* Checkers a project may choose: hook ids and [tool.X] names, the tool
   they are, and its Debian 12 package (NULL: not packaged) */
static const struct {
    const char *id;
    const char *tool;
    const char *package;
} s_checkers[] = {
    {"ruff", "ruff", NULL},
    {"ruff-format", "ruff", NULL},
    {"ruff-check", "ruff", NULL},
    {"pyright", "pyright", NULL},
    {"basedpyright", "basedpyright", NULL},
    {"pytype", "pytype", NULL},
    {"pyre", "pyre", NULL},
    {"pyre-check", "pyre", NULL},
    {"pylint", "pylint", "pylint"},
    {"flake8", "flake8", "flake8"},
    {"mypy", "mypy", "mypy"},
    {"black", "black", "black"},
    {"isort", "isort", "isort"},
    {"codespell", "codespell", "codespell"},
    {"bandit", "bandit", "bandit"},
    {"pydocstyle", "pydocstyle", "pydocstyle"},
    {"shellcheck", "shellcheck", "shellcheck"},
    {"clang-format", "clang-format", "clang-format"},
    {"clang-tidy", "clang-tidy", "clang-tidy"},
    {"cppcheck", "cppcheck", "cppcheck"},
    {"yamllint", "yamllint", "yamllint"},
    {NULL, NULL, NULL},
};

/* True when a recipe of CFG runs the checker called ID (its name, or one
   of its hooks) or the tool TOOL */
static bool s_has_recipe(const kz_config_t *cfg, const char *id, const char *tool)
{
    for (size_t i = 0; cfg && i < cfg->tools_count; i++) {
        const kz_tool_config_t *t = &cfg->tools[i];
        if (strcmp(t->name, id) == 0 || strcmp(t->name, tool) == 0)
            return true;
        for (size_t k = 0; k < t->hooks_count; k++)
            if (strcmp(t->hooks[k], id) == 0)
                return true;
    }
    return false;
}

/* Add ID (a hook id or a [tool.X] name) to LIST when it names a checker
   no recipe runs. 0 / -1 (OOM) */
static int s_unrun_add(const kz_config_t *cfg, json_t *list, const char *id, const char *rev)
{
    size_t k = 0;
    while (s_checkers[k].id && strcmp(s_checkers[k].id, id) != 0)
        k++;
    if (!s_checkers[k].id || s_has_recipe(cfg, id, s_checkers[k].tool))
        return 0;
    const char *tool = s_checkers[k].tool;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), tool) == 0)
            return 0; /* ruff and ruff-format: one entry */
    }
    char *prog = kz_proc_which(tool);
    char pkg[96], pin[96] = "", note[400];
    if (s_checkers[k].package)
        snprintf(pkg, sizeof pkg, "Debian package %s", s_checkers[k].package);
    else
        snprintf(pkg, sizeof pkg, "not packaged in Debian 12");
    if (rev)
        snprintf(pin, sizeof pin, "%s pinned, ", rev + (rev[0] == 'v'));
    snprintf(note, sizeof note, "chosen by the project but not run: %s (no recipe; %s%s, %s)", tool,
             pin, prog ? "installed" : "not installed", pkg);
    free(prog);
    json_t *o = json_pack("{s:s, s:s}", "name", tool, "note", note);
    return o && json_array_append_new(list, o) == 0 ? 0 : -1;
}

json_t *kz_project_unrun(const kz_project_t *self, const kz_config_t *cfg)
{
    json_t *list = json_array();
    if (!list || !self)
        return list;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < self->nhooks; i++)
        rc = s_unrun_add(cfg, list, self->hooks[i].id, self->hooks[i].rev);
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(self->toml, "tool"), key, v)
    {
        if (rc == 0 && json_is_object(v))
            rc = s_unrun_add(cfg, list, key, NULL);
    }
    if (rc != 0)
        json_decref(list);
    return rc == 0 ? list : NULL;
}
