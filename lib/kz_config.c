/*  kz_config.c - kaizen.yaml loaded with libyaml into typed structures

    Two passes. First the libyaml event stream is turned into a small tree
    of nodes that keep their line and column (aliases and anchors are kept
    as marks so the second pass can refuse them with a key path). Then the
    tree is walked against a schema: one table of fields per section, each
    row giving the key, its type, where it lives in the struct, its default
    (as the text a user would write, parsed by the same code), its limits
    and an optional validator. A new key is one new row.

    The first problem found is reported as "FILE:LINE:COL: KEY: what is
    wrong" with 1-based line and column and the dotted key path.
*/
#include "kz_config.h"

#include "kz_commitmsg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "kz_fixable.h"
#include "kz_state.h"

#define S_MAX_DEPTH   64         /* nesting of YAML collections */
#define S_MAX_NODES   200000     /* nodes in one document */
#define S_MAX_FILE    (16 << 20) /* bytes of one config file */
#define S_MAX_LIST    1024       /* agents, targets */
#define S_MAX_STRLIST 1024       /* items of a list of strings */
#define S_MAX_PATH    512        /* key path shown in messages */
#define S_SHOW        60         /* characters of a bad value quoted in messages */

/* ---------------------------------------------------------------------
   The YAML tree */

typedef enum { S_SCALAR, S_SEQ, S_MAP, S_ALIAS } s_kind_t;

typedef struct s_node s_node_t;
struct s_node {
    s_kind_t kind;
    int line, col; /* 1-based */
    bool anchored; /* carried an &anchor */
    bool plain;    /* scalar written without quotes */
    char *value;   /* scalar text */
    size_t value_len;
    s_node_t **items; /* sequence items, or mapping key/value pairs in turn */
    size_t count;
    size_t cap;
};

typedef struct {
    const char *name; /* file name used in messages */
    const char *text;
    size_t len;
    char *base_dir; /* absolute directory that relative paths are resolved against */
    char *errbuf;
    size_t errlen;
    size_t nodes;
    kz_config_mark_t *marks; /* where each key was written (kz_config_mark) */
    size_t marks_count, marks_cap;
    bool marks_oom;
} s_ctx_t;

/* Remember that PATH's value is at NODE; a failure only loses the mark
   (reported as out of memory when the load ends) */
static void s_mark(s_ctx_t *ctx, const s_node_t *node, const char *path)
{
    if (ctx->marks_count == ctx->marks_cap) {
        size_t cap = ctx->marks_cap ? ctx->marks_cap * 2 : 64;
        kz_config_mark_t *marks = realloc(ctx->marks, cap * sizeof *marks);
        if (!marks) {
            ctx->marks_oom = true;
            return;
        }
        ctx->marks = marks;
        ctx->marks_cap = cap;
    }
    kz_config_mark_t *mark = &ctx->marks[ctx->marks_count];
    mark->key = strdup(path);
    if (!mark->key) {
        ctx->marks_oom = true;
        return;
    }
    mark->line = node->line;
    mark->col = node->col;
    ctx->marks_count++;
}

static void s_marks_free(kz_config_mark_t *marks, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(marks[i].key);
    free(marks);
}

/* Child key path into OUT; long paths are cut, they only appear in messages */
static void s_path(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_path(char *out, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
}

static void s_node_free(s_node_t *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->count; i++)
        s_node_free(node->items[i]);
    free(node->items);
    free(node->value);
    free(node);
}

static int s_node_append(s_node_t *parent, s_node_t *child)
{
    if (parent->count == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        s_node_t **items = realloc(parent->items, cap * sizeof *items);
        if (!items)
            return -1;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->count++] = child;
    return 0;
}

/* Write "NAME:LINE:COL: PATH: MESSAGE" into the error buffer; returns -1 */
static int s_err_at(s_ctx_t *ctx, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int s_err_at(s_ctx_t *ctx, int line, int col, const char *path, const char *fmt, ...)
{
    if (!ctx->errbuf || ctx->errlen == 0)
        return -1;
    int n;
    if (path && *path)
        n = snprintf(ctx->errbuf, ctx->errlen, "%s:%d:%d: %s: ", ctx->name, line, col, path);
    else
        n = snprintf(ctx->errbuf, ctx->errlen, "%s:%d:%d: ", ctx->name, line, col);
    if (n >= 0 && (size_t)n < ctx->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->errbuf + n, ctx->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define s_err(ctx, node, path, ...) s_err_at((ctx), (node)->line, (node)->col, (path), __VA_ARGS__)

/* 1-based line and column of byte OFFSET in the text (for reader errors) */
static void s_offset_position(const s_ctx_t *ctx, size_t offset, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < ctx->len; i++) {
        /* line breaks as libyaml counts them: LF, CR, and CR LF as one */
        if (ctx->text[i] == '\n' ||
            (ctx->text[i] == '\r' && (i + 1 >= ctx->len || ctx->text[i + 1] != '\n'))) {
            (*line)++;
            *col = 1;
        } else if (ctx->text[i] == '\r') {
            continue; /* the CR of CR LF: the LF ends the line */
        } else if (((unsigned char)ctx->text[i] & 0xc0) != 0x80)
            (*col)++;
    }
}

/* The dotted path of the node being built, for syntax errors */
static void s_stack_path(s_node_t **stack, size_t depth, char *path, size_t len)
{
    size_t used = 0;
    path[0] = '\0';
    for (size_t i = 0; i < depth && used < len; i++) {
        const s_node_t *n = stack[i];
        /* is the last item of N the next open collection? */
        bool inner = i + 1 < depth && n->count > 0 && n->items[n->count - 1] == stack[i + 1];
        const s_node_t *key = NULL;
        int w = 0;
        if (n->kind == S_SEQ && inner)
            w = snprintf(path + used, len - used, "[%zu]", n->count - 1);
        else if (n->kind == S_MAP && n->count % 2 == 1)
            key = n->items[n->count - 1];
        else if (n->kind == S_MAP && inner && n->count >= 2)
            key = n->items[n->count - 2];
        else
            break;
        if (key)
            w = snprintf(path + used, len - used, "%s%s", used ? "." : "",
                         key->kind == S_SCALAR ? key->value : "?");
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Parse the whole text into *ROOT (NULL for an empty stream) */
static int s_build_tree(s_ctx_t *ctx, s_node_t **root)
{
    yaml_parser_t parser;
    yaml_event_t event;
    s_node_t *stack[S_MAX_DEPTH];
    size_t depth = 0;
    int documents = 0;
    int rc = -1;
    bool done = false;

    *root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        return s_err_at(ctx, 1, 1, "", "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ctx->text, ctx->len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &event)) {
            char path[S_MAX_PATH];
            int line, col;
            s_stack_path(stack, depth, path, sizeof path);
            if (parser.error == YAML_READER_ERROR)
                s_offset_position(ctx, parser.problem_offset, &line, &col);
            else {
                line = (int)parser.problem_mark.line + 1;
                col = (int)parser.problem_mark.column + 1;
            }
            const char *problem = parser.problem ? parser.problem : "invalid YAML";
            if (parser.context)
                s_err_at(ctx, line, col, path, "syntax error: %s (%s)", problem, parser.context);
            else
                s_err_at(ctx, line, col, path, "syntax error: %s", problem);
            goto out;
        }
        int line = (int)event.start_mark.line + 1;
        int col = (int)event.start_mark.column + 1;
        s_node_t *node = NULL;
        bool push = false;
        switch (event.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1) {
                s_err_at(ctx, line, col, "", "only one YAML document is allowed");
                yaml_event_delete(&event);
                goto out;
            }
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_ALIAS_EVENT:
            if (++ctx->nodes > S_MAX_NODES) {
                s_err_at(ctx, line, col, "", "too many YAML nodes (more than %d)", S_MAX_NODES);
                yaml_event_delete(&event);
                goto out;
            }
            node = calloc(1, sizeof *node);
            if (!node) {
                s_err_at(ctx, line, col, "", "out of memory");
                yaml_event_delete(&event);
                goto out;
            }
            node->line = line;
            node->col = col;
            if (event.type == YAML_SCALAR_EVENT) {
                node->kind = S_SCALAR;
                node->anchored = event.data.scalar.anchor != NULL;
                node->plain = event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                node->value_len = event.data.scalar.length;
                node->value = malloc(node->value_len + 1);
                if (node->value) {
                    memcpy(node->value, event.data.scalar.value, node->value_len);
                    node->value[node->value_len] = '\0';
                }
            } else if (event.type == YAML_ALIAS_EVENT) {
                node->kind = S_ALIAS;
            } else if (event.type == YAML_SEQUENCE_START_EVENT) {
                node->kind = S_SEQ;
                node->anchored = event.data.sequence_start.anchor != NULL;
                push = true;
            } else {
                node->kind = S_MAP;
                node->anchored = event.data.mapping_start.anchor != NULL;
                push = true;
            }
            if (node->kind == S_SCALAR && !node->value) {
                s_node_free(node);
                s_err_at(ctx, line, col, "", "out of memory");
                yaml_event_delete(&event);
                goto out;
            }
            if (depth > 0) {
                if (s_node_append(stack[depth - 1], node) < 0) {
                    s_node_free(node);
                    s_err_at(ctx, line, col, "", "out of memory");
                    yaml_event_delete(&event);
                    goto out;
                }
            } else if (!*root)
                *root = node;
            else /* cannot happen with one document; be safe */
                s_node_free(node);
            if (push) {
                if (depth == S_MAX_DEPTH) {
                    char path[S_MAX_PATH];
                    s_stack_path(stack, depth, path, sizeof path);
                    s_err_at(ctx, line, col, path, "nesting too deep (more than %d levels)",
                             S_MAX_DEPTH);
                    yaml_event_delete(&event);
                    goto out;
                }
                stack[depth++] = node;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        yaml_event_delete(&event);
    }
    rc = 0;
out:
    yaml_parser_delete(&parser);
    if (rc < 0) {
        s_node_free(*root);
        *root = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------------
   Paths */

/* Lexically normalise PATH in place: drop "." and empty components and,
   in an absolute path, resolve ".." (symlinks are not looked at) */
static void s_normalise(char *path)
{
    size_t len = strlen(path);
    char *copy = strdup(path);
    if (!copy)
        return; /* leave it as it is: still a correct path */
    bool absolute = path[0] == '/';
    char *out = path;
    if (absolute)
        *out++ = '/';
    char *start = out;
    char *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0 && absolute) {
            if (out > start) {
                out--; /* the '/' that ended the previous component */
                while (out > start && out[-1] != '/')
                    out--;
            }
            continue;
        }
        size_t n = strlen(part);
        memcpy(out, part, n); /* never longer than the input: n + 1 <= len */
        out += n;
        *out++ = '/';
    }
    if (out > start)
        out--; /* the trailing '/' */
    *out = '\0';
    if (out == path && len > 0) {
        path[0] = '.';
        path[1] = '\0';
    }
    free(copy);
}

/* PATH made absolute against BASE (expanding a leading "~/"); malloc'd */
static char *s_resolve(const char *base, const char *path)
{
    const char *home = getenv("HOME");
    char *joined;
    int n;
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') && home && *home)
        n = asprintf(&joined, "%s/%s", home, path + 1);
    else if (path[0] == '/' || !base)
        n = asprintf(&joined, "%s", path);
    else
        n = asprintf(&joined, "%s/%s", base, path);
    if (n < 0)
        return NULL;
    s_normalise(joined);
    return joined;
}

/* Absolute directory of file NAME (the current directory for a bare name) */
static char *s_base_dir(const char *name)
{
    char cwd[PATH_MAX];
    const char *slash = name ? strrchr(name, '/') : NULL;
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == name)
        dir = strdup("/");
    else
        dir = strndup(name, (size_t)(slash - name));
    if (!dir)
        return NULL;
    if (dir[0] == '/' || !getcwd(cwd, sizeof cwd)) {
        s_normalise(dir);
        return dir;
    }
    char *abs = s_resolve(cwd, dir);
    free(dir);
    return abs;
}

/* ---------------------------------------------------------------------
   Value parsers (shared by the schema and the public helpers) */

static int s_parse_int(const char *text, long long *value)
{
    char *end;
    if (!*text || isspace((unsigned char)*text))
        return -1;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end)
        return -1;
    *value = v;
    return 0;
}

static int s_parse_unit(const char *text, unsigned long long *number, const char **unit)
{
    if (!isdigit((unsigned char)*text))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return -1;
    *number = v;
    *unit = end;
    return 0;
}

int kz_parse_duration_ms(const char *text, int *ms)
{
    static const struct {
        const char *unit;
        unsigned long long factor;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    unsigned long long n;
    const char *unit;
    if (!text || s_parse_unit(text, &n, &unit) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(unit, units[i].unit) == 0) {
            if (n > (unsigned long long)INT_MAX / units[i].factor)
                return -1;
            *ms = (int)(n * units[i].factor);
            return 0;
        }
    return -1;
}

int kz_parse_size(const char *text, size_t *bytes)
{
    static const struct {
        const char *unit;
        unsigned long long factor;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"K", 1ULL << 10},
                 {"KiB", 1ULL << 10},
                 {"KB", 1ULL << 10},
                 {"M", 1ULL << 20},
                 {"MiB", 1ULL << 20},
                 {"MB", 1ULL << 20},
                 {"G", 1ULL << 30},
                 {"GiB", 1ULL << 30},
                 {"GB", 1ULL << 30}};
    unsigned long long n;
    const char *unit;
    if (!text || s_parse_unit(text, &n, &unit) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(unit, units[i].unit) == 0) {
            if (n > (unsigned long long)SIZE_MAX / units[i].factor)
                return -1;
            *bytes = (size_t)(n * units[i].factor);
            return 0;
        }
    return -1;
}

/* ---------------------------------------------------------------------
   The schema */

typedef enum {
    S_T_STR,      /* char * */
    S_T_PATH,     /* char *, made absolute against the config's directory */
    S_T_INT,      /* int, within [min, max] */
    S_T_DURATION, /* int milliseconds, within [min, max] */
    S_T_SIZE,     /* size_t bytes, within [min, max] */
    S_T_BOOL,     /* bool */
    S_T_LEVEL,    /* kz_log_level_t */
    S_T_FORMAT,   /* bool json */
    S_T_STRLIST,  /* char ** NULL-terminated, count at count_offset */
    S_T_SECTION,  /* a nested mapping described by sub */
    S_T_LIST,     /* an array of structs (elem_size) described by sub, count at count_offset */
    S_T_FLOAT     /* double, within [min, max] */
} s_type_t;

/* A validator for a string value: 0, or -1 with WHY filled in */
typedef int(s_check_fn)(const char *value, char *why, size_t len);

typedef struct s_field s_field_t;
struct s_field {
    const char *key;
    s_type_t type;
    size_t offset;
    const char *def; /* default in config syntax; NULL = none */
    long long min, max;
    bool required;
    s_check_fn *check;
    const s_field_t *sub;
    size_t elem_size;
    size_t count_offset;
    const char *unique; /* S_T_LIST: what the element's name must be unique among ("agent") */
};

static int s_check_endpoint(const char *value, char *why, size_t len)
{
    static const char *const schemes[] = {"tcp://", "ipc://", "inproc://"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(value, schemes[i], n) == 0) {
            if (value[n] == '\0')
                break;
            return 0;
        }
    }
    snprintf(why, len,
             "invalid endpoint '%.*s': expected tcp://, ipc:// or inproc:// and an address", S_SHOW,
             value);
    return -1;
}

/* Agent and target names become executable, branch and directory names */
static int s_check_name(const char *value, char *why, size_t len)
{
    if (!*value) {
        snprintf(why, len, "must not be empty");
        return -1;
    }
    for (const char *p = value; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
            snprintf(why, len, "invalid name '%.*s': use letters, digits, '-', '_' and '.'", S_SHOW,
                     value);
            return -1;
        }
    if (value[0] == '.' || value[0] == '-') {
        snprintf(why, len, "invalid name '%.*s': must start with a letter or digit", S_SHOW, value);
        return -1;
    }
    return 0;
}

#define S_OFF(type, member) offsetof(type, member)
#define S_DUR_MAX           INT_MAX
#define S_FIELD_END                                                 \
    {                                                               \
        NULL, S_T_STR, 0, NULL, 0, 0, false, NULL, NULL, 0, 0, NULL \
    }

#define S_ENDPOINT(st, m, d)                                                          \
    {                                                                                 \
#m, S_T_STR, S_OFF(st, m), d, 0, 0, false, s_check_endpoint, NULL, 0, 0, NULL \
    }

static const s_field_t s_connect_fields[] = {
    /* unset: ipc:// sockets in STATE/bus (s_bus_defaults) */
    S_ENDPOINT(kz_endpoints_t, pub, NULL), S_ENDPOINT(kz_endpoints_t, sub, NULL),
    S_ENDPOINT(kz_endpoints_t, router, NULL), S_ENDPOINT(kz_endpoints_t, tap, NULL), S_FIELD_END};

static const s_field_t s_bind_fields[] = {
    S_ENDPOINT(kz_endpoints_t, pub, NULL), S_ENDPOINT(kz_endpoints_t, sub, NULL),
    S_ENDPOINT(kz_endpoints_t, router, NULL), S_ENDPOINT(kz_endpoints_t, tap, NULL), S_FIELD_END};

#define S_PATHF(st, m)                                                        \
    {                                                                         \
#m, S_T_PATH, S_OFF(st, m), NULL, 0, 0, false, NULL, NULL, 0, 0, NULL \
    }

static const s_field_t s_curve_fields[] = {{"enabled", S_T_BOOL, S_OFF(kz_curve_config_t, enabled),
                                            "false", 0, 0, false, NULL, NULL, 0, 0, NULL},
                                           S_PATHF(kz_curve_config_t, broker_cert),
                                           S_PATHF(kz_curve_config_t, broker_public),
                                           S_PATHF(kz_curve_config_t, client_cert),
                                           S_PATHF(kz_curve_config_t, allow_dir),
                                           S_PATHF(kz_curve_config_t, orchestrator_cert),
                                           S_PATHF(kz_curve_config_t, agent_cert),
                                           S_PATHF(kz_curve_config_t, operator_cert),
                                           S_FIELD_END};

#define S_NUM(key, type, st, m, d, lo, hi)                                \
    {                                                                     \
        key, type, S_OFF(st, m), d, lo, hi, false, NULL, NULL, 0, 0, NULL \
    }
#define S_SECT(key, st, m, sub)                                                  \
    {                                                                            \
        key, S_T_SECTION, S_OFF(st, m), NULL, 0, 0, false, NULL, sub, 0, 0, NULL \
    }

static const s_field_t s_bus_fields[] = {
    S_SECT("endpoints", kz_bus_config_t, connect, s_connect_fields),
    S_SECT("bind", kz_bus_config_t, bind, s_bind_fields),
    S_NUM("heartbeat", S_T_DURATION, kz_bus_config_t, heartbeat_ms, "1s", 1, S_DUR_MAX),
    S_NUM("liveness", S_T_INT, kz_bus_config_t, heartbeat_liveness, "3", 1, 1000),
    S_NUM("reconnect", S_T_DURATION, kz_bus_config_t, reconnect_ms, "250ms", 1, S_DUR_MAX),
    S_NUM("max_message_size", S_T_SIZE, kz_bus_config_t, max_message_size, "1MiB", 1,
          (long long)1 << 40),
    S_NUM("hwm", S_T_INT, kz_bus_config_t, hwm, "100000", 0, INT_MAX),
    S_NUM("call_timeout", S_T_DURATION, kz_bus_config_t, call_timeout_ms, "10s", 1, S_DUR_MAX),
    S_NUM("call_retries", S_T_INT, kz_bus_config_t, call_retries, "3", 0, 1000),
    S_SECT("curve", kz_bus_config_t, curve, s_curve_fields),
    S_FIELD_END};

static int s_check_bool_text(const char *value, char *why, size_t len)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
        return 0;
    snprintf(why, len, "expected true or false, got '%.*s'", S_SHOW, value);
    return -1;
}

/* broker.rules patterns: NAME, PREFIX* or *, optionally after '!' */
static int s_check_rule(const char *value, char *why, size_t len)
{
    const char *p = value[0] == '!' ? value + 1 : value;
    size_t n = strlen(p);
    const char *star = strchr(p, '*');
    if (n > 0 && n <= 255 && (!star || star == p + n - 1))
        return 0;
    snprintf(why, len,
             "invalid pattern '%.*s': a name, a prefix ending in '*' or '*', optionally after '!'",
             S_SHOW, value);
    return -1;
}

#define S_RULELIST(key, m)                                                                     \
    {                                                                                          \
        key, S_T_STRLIST, S_OFF(kz_role_rules_t, m), NULL, 0, 0, false, s_check_rule, NULL, 0, \
            S_OFF(kz_role_rules_t, m##_count), NULL                                            \
    }

static const s_field_t s_role_rules_fields[] = {S_RULELIST("publish", publish),
                                                S_RULELIST("offer", offer),
                                                S_RULELIST("join", join),
                                                S_RULELIST("call", call),
                                                {"tap", S_T_STR, S_OFF(kz_role_rules_t, tap), NULL,
                                                 0, 0, false, s_check_bool_text, NULL, 0, 0, NULL},
                                                S_FIELD_END};

static const s_field_t s_rules_fields[] = {
    S_SECT("agent", kz_bus_rules_t, agent, s_role_rules_fields),
    S_SECT("operator", kz_bus_rules_t, operator, s_role_rules_fields),
    S_SECT("orchestrator", kz_bus_rules_t, orchestrator, s_role_rules_fields), S_FIELD_END};

static const s_field_t s_durable_group_fields[] = {
    {"name", S_T_STR, S_OFF(kz_durable_group_t, name), NULL, 0, 0, true, NULL, NULL, 0, 0, NULL},
    {"prefix", S_T_STR, S_OFF(kz_durable_group_t, prefix), "", 0, 0, false, NULL, NULL, 0, 0, NULL},
    S_FIELD_END};

static const s_field_t s_broker_fields[] = {
    S_NUM("group_queue_limit", S_T_INT, kz_broker_config_t, group_queue_limit, "100000", 1,
          INT_MAX),
    S_NUM("group_inflight", S_T_INT, kz_broker_config_t, group_inflight, "4000", 1, INT_MAX),
    S_NUM("max_deliveries", S_T_INT, kz_broker_config_t, max_deliveries, "5", 1, INT_MAX),
    S_NUM("service_queue_limit", S_T_INT, kz_broker_config_t, service_queue_limit, "10000", 1,
          INT_MAX),
    S_NUM("request_ttl", S_T_DURATION, kz_broker_config_t, request_ttl_ms, "60s", 1, S_DUR_MAX),
    S_NUM("stats_interval", S_T_DURATION, kz_broker_config_t, stats_interval_ms, "0", 0, S_DUR_MAX),
    S_SECT("rules", kz_broker_config_t, rules, s_rules_fields),
    {"durable", S_T_BOOL, S_OFF(kz_broker_config_t, durable), "true", 0, 0, false, NULL, NULL, 0, 0,
     NULL},
    {"durable_groups", S_T_LIST, S_OFF(kz_broker_config_t, durable_groups), NULL, 0, 64, false,
     NULL, s_durable_group_fields, sizeof(kz_durable_group_t),
     S_OFF(kz_broker_config_t, durable_groups_count), "durable group"},
    S_NUM("log_max", S_T_SIZE, kz_broker_config_t, log_max, "4GiB", 1 << 20, (long long)1 << 50),
    S_FIELD_END};

static const s_field_t s_log_fields[] = {
    {"level", S_T_LEVEL, S_OFF(kz_logcfg_t, level), "info", 0, 0, false, NULL, NULL, 0, 0, NULL},
    {"format", S_T_FORMAT, S_OFF(kz_logcfg_t, json), "text", 0, 0, false, NULL, NULL, 0, 0, NULL},
    S_NUM("max_size", S_T_SIZE, kz_logcfg_t, max_size, "10MiB", 4096, (long long)1 << 40),
    S_NUM("keep", S_T_INT, kz_logcfg_t, keep, "5", 0, 100),
    S_FIELD_END};

static const s_field_t s_database_fields[] = {
    {"dsn", S_T_STR, S_OFF(kz_db_config_t, dsn), NULL, 0, 0, false, NULL, NULL, 0, 0, NULL},
    S_NUM("connect_timeout", S_T_DURATION, kz_db_config_t, connect_timeout_ms, "5s", 1000,
          S_DUR_MAX),
    S_NUM("batch_size", S_T_INT, kz_db_config_t, batch_size, "2000", 1, 100000),
    S_NUM("flush_interval", S_T_DURATION, kz_db_config_t, flush_interval_ms, "200ms", 1, S_DUR_MAX),
    S_NUM("retry_max", S_T_DURATION, kz_db_config_t, retry_max_ms, "10s", 1, S_DUR_MAX),
    S_NUM("spool_max", S_T_SIZE, kz_db_config_t, spool_max, "1GiB", 4096, (long long)1 << 50),
    S_FIELD_END};

static const s_field_t s_supervisor_fields[] = {
    {"broker", S_T_BOOL, S_OFF(kz_supervisor_config_t, broker), "true", 0, 0, false, NULL, NULL, 0,
     0, NULL},
    S_NUM("restart_intensity", S_T_INT, kz_supervisor_config_t, restart_intensity, "5", 0, 100000),
    S_NUM("restart_window", S_T_DURATION, kz_supervisor_config_t, restart_window_ms, "60s", 1,
          S_DUR_MAX),
    S_NUM("backoff_initial", S_T_DURATION, kz_supervisor_config_t, backoff_initial_ms, "500ms", 0,
          S_DUR_MAX),
    S_NUM("backoff_max", S_T_DURATION, kz_supervisor_config_t, backoff_max_ms, "30s", 0, S_DUR_MAX),
    S_NUM("start_timeout", S_T_DURATION, kz_supervisor_config_t, start_timeout_ms, "10s", 0,
          S_DUR_MAX),
    S_NUM("stop_timeout", S_T_DURATION, kz_supervisor_config_t, stop_timeout_ms, "10s", 1,
          S_DUR_MAX),
    S_NUM("stale_after", S_T_DURATION, kz_supervisor_config_t, stale_after_ms, "15s", 1, S_DUR_MAX),
    S_NUM("gone_after", S_T_DURATION, kz_supervisor_config_t, gone_after_ms, "60s", 1, S_DUR_MAX),
    S_FIELD_END};

static const s_field_t s_agent_fields[] = {
    {"name", S_T_STR, S_OFF(kz_agent_config_t, name), NULL, 0, 0, true, s_check_name, NULL, 0, 0,
     NULL},
    S_NUM("instances", S_T_INT, kz_agent_config_t, instances, "1", 0, 1000),
    S_NUM("interval", S_T_DURATION, kz_agent_config_t, interval_ms, "60s", 0, S_DUR_MAX),
    {"host", S_T_STR, S_OFF(kz_agent_config_t, host), NULL, 0, 0, false, NULL, NULL, 0, 0, NULL},
    {"args", S_T_STRLIST, S_OFF(kz_agent_config_t, args), NULL, 0, 0, false, NULL, NULL, 0,
     S_OFF(kz_agent_config_t, args_count), NULL},
    S_FIELD_END};

static int s_check_branch(const char *value, char *why, size_t len);

/* An environment entry "NAME=VALUE": NAME is a shell-style variable name
   (letters, digits, '_', not starting with a digit); VALUE may be empty */
static int s_check_env(const char *value, char *why, size_t len)
{
    const char *eq = strchr(value, '=');
    if (!eq) {
        snprintf(why, len, "expected NAME=VALUE, got '%.*s'", S_SHOW, value);
        return -1;
    }
    bool ok = eq > value && !isdigit((unsigned char)value[0]);
    for (const char *p = value; ok && p < eq; p++)
        ok = isalnum((unsigned char)*p) || *p == '_';
    if (ok)
        return 0;
    snprintf(why, len,
             "invalid variable name '%.*s': use letters, digits and '_', not starting with a "
             "digit",
             (int)(eq - value < S_SHOW ? eq - value : S_SHOW), value);
    return -1;
}

static const s_field_t s_target_fields[] = {
    {"name", S_T_STR, S_OFF(kz_target_config_t, name), NULL, 0, 0, true, s_check_name, NULL, 0, 0,
     NULL},
    {"path", S_T_PATH, S_OFF(kz_target_config_t, path), NULL, 0, 0, true, NULL, NULL, 0, 0, NULL},
    {"languages", S_T_STRLIST, S_OFF(kz_target_config_t, languages), NULL, 0, 0, false, NULL, NULL,
     0, S_OFF(kz_target_config_t, languages_count), NULL},
    {"test", S_T_STRLIST, S_OFF(kz_target_config_t, test), NULL, 0, 0, false, NULL, NULL, 0,
     S_OFF(kz_target_config_t, test_count), NULL},
    {"branch", S_T_STR, S_OFF(kz_target_config_t, branch), "main", 0, 0, false, s_check_branch,
     NULL, 0, 0, NULL},
    S_NUM("test_timeout", S_T_DURATION, kz_target_config_t, test_timeout_ms, "10m", 1, S_DUR_MAX),
    S_PATHF(kz_target_config_t, init_from),
    {"env", S_T_STRLIST, S_OFF(kz_target_config_t, env), NULL, 0, 0, false, s_check_env, NULL, 0,
     S_OFF(kz_target_config_t, env_count), NULL},
    /* private state (docs/security.md) */
    {"trust_owner", S_T_BOOL, S_OFF(kz_target_config_t, trust_owner), "false", 0, 0, false, NULL,
     NULL, 0, 0, NULL},
    {"test_network", S_T_BOOL, S_OFF(kz_target_config_t, test_network), "false", 0, 0, false, NULL,
     NULL, 0, 0, NULL},
    S_FIELD_END};

static int s_check_one_of(const char *value, const char *const *allowed, const char *what,
                          char *why, size_t len)
{
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(value, allowed[i]) == 0)
            return 0;
    char list[256] = "";
    for (size_t i = 0; allowed[i]; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
    }
    snprintf(why, len, "unknown %s '%.*s' (expected %s)", what, S_SHOW, value, list);
    return -1;
}

static int s_check_format(const char *value, char *why, size_t len)
{
    static const char *const formats[] = {"gcc",        "sarif",   "pylint-json", "files",
                                          "pydocstyle", "rewrite", NULL};
    return s_check_one_of(value, formats, "output format", why, len);
}

static int s_check_fixer_output(const char *value, char *why, size_t len)
{
    static const char *const outputs[] = {"files", "diff", NULL};
    return s_check_one_of(value, outputs, "fixer output", why, len);
}

static int s_check_fixes(const char *value, char *why, size_t len)
{
    if (kz_fixable_known(value))
        return 0;
    snprintf(why, len,
             "unknown fixable predicate '%.*s' (expected single-suggestion, not-identifier or "
             "has-fix)",
             S_SHOW, value);
    return -1;
}

static int s_check_severity(const char *value, char *why, size_t len)
{
    static const char *const severities[] = {"info", "low", "medium", "high", "critical", NULL};
    return s_check_one_of(value, severities, "severity", why, len);
}

static int s_check_category(const char *value, char *why, size_t len)
{
    static const char *const categories[] = {"style",  "bug",          "type",        "security",
                                             "secret", "dependency",   "performance", "coverage",
                                             "docs",   "architecture", "complexity",  NULL};
    return s_check_one_of(value, categories, "category", why, len);
}

static int s_check_gate(const char *value, char *why, size_t len)
{
    static const char *const allowed[] = {"chosen", "always", NULL};
    return s_check_one_of(value, allowed, "gate", why, len);
}

static int s_check_apply(const char *value, char *why, size_t len)
{
    static const char *const modes[] = {"branch", "merge", NULL};
    return s_check_one_of(value, modes, "apply mode", why, len);
}

/* "0", "1", "0-31": exit codes a tool may end with after a normal run */
static int s_check_exit(const char *value, char *why, size_t len)
{
    /* digits, optionally "-" and digits: nothing else (sscanf alone would
       take " 1" or "+1") */
    size_t digits = strspn(value, "0123456789");
    bool shape = digits > 0 && digits <= 3 &&
                 (value[digits] == '\0' ||
                  (value[digits] == '-' && strspn(value + digits + 1, "0123456789") > 0 &&
                   strspn(value + digits + 1, "0123456789") <= 3 &&
                   value[digits + 1 + strspn(value + digits + 1, "0123456789")] == '\0'));
    int lo = shape ? atoi(value) : -1;
    int hi = shape && value[digits] == '-' ? atoi(value + digits + 1) : lo;
    if (shape && hi >= lo && hi <= 255)
        return 0;
    snprintf(why, len, "expected an exit code or a range like 0-31, got '%.*s'", S_SHOW, value);
    return -1;
}

/* A branch name kaizen may create or move */
static int s_check_branch(const char *value, char *why, size_t len)
{
    bool ok = *value && value[0] != '-' && value[0] != '/' && !strstr(value, "..") &&
              !strstr(value, "//") && value[strlen(value) - 1] != '/';
    for (const char *p = value; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("-_./", *p);
    if (ok)
        return 0;
    snprintf(why, len, "invalid branch name '%.*s'", S_SHOW, value);
    return -1;
}

int kz_config_ident(const char *text, char *name, size_t nlen, char *email, size_t elen, char *why,
                    size_t wlen)
{
    const char *lt = strchr(text, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    if (!lt || !gt || gt[1] != '\0') {
        snprintf(why, wlen, "expected 'Name <email>', got '%.*s'", S_SHOW, text);
        return -1;
    }
    size_t n = (size_t)(lt - text);
    while (n > 0 && text[n - 1] == ' ')
        n--;
    size_t e = (size_t)(gt - lt - 1);
    bool ok = n > 0 && text[0] != ' ' && e > 0 && n < nlen && e < elen;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)text[i] >= 0x20 && text[i] != 0x7f && text[i] != '>';
    for (size_t i = 0; ok && i < e; i++)
        ok = (unsigned char)lt[1 + i] > 0x20 && lt[1 + i] != 0x7f && lt[1 + i] != '<';
    if (!ok) {
        snprintf(why, wlen,
                 "expected 'Name <email>' with a name and an email of printable characters "
                 "(no spaces in the email), got '%.*s'",
                 S_SHOW, text);
        return -1;
    }
    memcpy(name, text, n);
    name[n] = '\0';
    memcpy(email, lt + 1, e);
    email[e] = '\0';
    return 0;
}

static int s_check_author(const char *value, char *why, size_t len)
{
    char name[256], email[256];
    return kz_config_ident(value, name, sizeof name, email, sizeof email, why, len);
}

#define S_STRF(st, m, key, d, chk)                                        \
    {                                                                     \
        key, S_T_STR, S_OFF(st, m), d, 0, 0, false, chk, NULL, 0, 0, NULL \
    }
#define S_LISTF(st, m, key, chk)                                                               \
    {                                                                                          \
        key, S_T_STRLIST, S_OFF(st, m), NULL, 0, 0, false, chk, NULL, 0, S_OFF(st, m##_count), \
            NULL                                                                               \
    }

static const s_field_t s_rule_fields[] = {
    {"match", S_T_STR, S_OFF(kz_rule_config_t, match), NULL, 0, 0, true, NULL, NULL, 0, 0, NULL},
    S_STRF(kz_rule_config_t, severity, "severity", NULL, s_check_severity),
    S_STRF(kz_rule_config_t, category, "category", NULL, s_check_category),
    S_FIELD_END};

/* argv and format are required of an enabled recipe: checked in s_finish,
   so that {name: x, enabled: false} can switch a catalog recipe off */
static const s_field_t s_tool_fields[] = {
    {"name", S_T_STR, S_OFF(kz_tool_config_t, name), NULL, 0, 0, true, s_check_name, NULL, 0, 0,
     NULL},
    {"enabled", S_T_BOOL, S_OFF(kz_tool_config_t, enabled), "true", 0, 0, false, NULL, NULL, 0, 0,
     NULL},
    S_STRF(kz_tool_config_t, gate, "gate", NULL, s_check_gate),
    S_LISTF(kz_tool_config_t, languages, "languages", NULL),
    S_LISTF(kz_tool_config_t, files, "files", NULL),
    S_LISTF(kz_tool_config_t, exclude, "exclude", NULL),
    S_LISTF(kz_tool_config_t, settings, "settings", NULL),
    {"argv", S_T_STRLIST, S_OFF(kz_tool_config_t, argv), NULL, 0, 0, false, NULL, NULL, 0,
     S_OFF(kz_tool_config_t, argv_count), NULL},
    {"format", S_T_STR, S_OFF(kz_tool_config_t, format), NULL, 0, 0, false, s_check_format, NULL, 0,
     0, NULL},
    S_STRF(kz_tool_config_t, category, "category", "style", s_check_category),
    S_STRF(kz_tool_config_t, severity, "severity", "low", s_check_severity),
    {"rules", S_T_LIST, S_OFF(kz_tool_config_t, rules), NULL, 0, S_MAX_LIST, false, NULL,
     s_rule_fields, sizeof(kz_rule_config_t), S_OFF(kz_tool_config_t, rules_count), NULL},
    S_LISTF(kz_tool_config_t, ignore, "ignore", NULL),
    S_STRF(kz_tool_config_t, min_severity, "min_severity", NULL, s_check_severity),
    S_LISTF(kz_tool_config_t, requires, "requires", NULL),
    S_LISTF(kz_tool_config_t, exit_ok, "exit_ok", s_check_exit),
    S_NUM("timeout", S_T_DURATION, kz_tool_config_t, timeout_ms, "10m", 1, S_DUR_MAX),
    S_NUM("batch", S_T_INT, kz_tool_config_t, batch, "0", 0, 1000000),
    S_LISTF(kz_tool_config_t, env, "env", NULL),
    S_LISTF(kz_tool_config_t, hooks, "hooks", NULL),
    S_LISTF(kz_tool_config_t, version, "version", NULL),
    S_STRF(kz_tool_config_t, pin_repo, "pin_repo", NULL, NULL),
    S_FIELD_END};

static const s_field_t s_fixer_fields[] = {
    {"name", S_T_STR, S_OFF(kz_fixer_config_t, name), NULL, 0, 0, true, s_check_name, NULL, 0, 0,
     NULL},
    {"enabled", S_T_BOOL, S_OFF(kz_fixer_config_t, enabled), "true", 0, 0, false, NULL, NULL, 0, 0,
     NULL},
    {"tool", S_T_STR, S_OFF(kz_fixer_config_t, tool), NULL, 0, 0, false, s_check_name, NULL, 0, 0,
     NULL},
    S_LISTF(kz_fixer_config_t, rules, "rules", NULL),
    S_LISTF(kz_fixer_config_t, fixes, "fixes", s_check_fixes),
    S_LISTF(kz_fixer_config_t, exclude, "exclude", NULL),
    S_LISTF(kz_fixer_config_t, defer_to, "defer_to", s_check_name),
    {"argv", S_T_STRLIST, S_OFF(kz_fixer_config_t, argv), NULL, 0, 0, false, NULL, NULL, 0,
     S_OFF(kz_fixer_config_t, argv_count), NULL},
    S_STRF(kz_fixer_config_t, output, "output", "files", s_check_fixer_output),
    S_STRF(kz_fixer_config_t, service, "service", "exec.refactor", s_check_name),
    S_NUM("effort", S_T_FLOAT, kz_fixer_config_t, effort, "1", 0, 1000000),
    S_NUM("risk", S_T_FLOAT, kz_fixer_config_t, risk, "0.2", 0, 1),
    S_NUM("timeout", S_T_DURATION, kz_fixer_config_t, timeout_ms, "5m", 1, S_DUR_MAX),
    S_LISTF(kz_fixer_config_t, env, "env", NULL),
    S_STRF(kz_fixer_config_t, subject, "subject", NULL, kz_commit_check_template),
    S_STRF(kz_fixer_config_t, commit_type, "commit_type", "style", kz_commit_check_type),
    S_FIELD_END};

static const s_field_t s_policy_fields[] = {
    S_NUM("require_approval", S_T_FLOAT, kz_policy_config_t, require_approval, "0.8", 0, 1000),
    S_STRF(kz_policy_config_t, apply, "apply", "branch", s_check_apply),
    S_STRF(kz_policy_config_t, integration_branch, "integration_branch", "kaizen/improvements",
           s_check_branch),
    S_NUM("max_open_plans", S_T_INT, kz_policy_config_t, max_open_plans, "20", 0, 1000000),
    S_NUM("max_plans_per_hour", S_T_INT, kz_policy_config_t, max_plans_per_hour, "60", 0, 1000000),
    S_NUM("max_concurrent", S_T_INT, kz_policy_config_t, max_concurrent, "2", 1, 1000),
    S_NUM("max_files", S_T_INT, kz_policy_config_t, max_files, "20", 1, 1000000),
    S_NUM("max_lines", S_T_INT, kz_policy_config_t, max_lines, "500", 1, 100000000),
    S_LISTF(kz_policy_config_t, allowed_paths, "allowed_paths", NULL),
    S_LISTF(kz_policy_config_t, validators, "validators", s_check_name),
    S_NUM("exec_timeout", S_T_DURATION, kz_policy_config_t, exec_timeout_ms, "5m", 1, S_DUR_MAX),
    S_NUM("validate_timeout", S_T_DURATION, kz_policy_config_t, validate_timeout_ms, "15m", 1,
          S_DUR_MAX),
    S_NUM("retries", S_T_INT, kz_policy_config_t, retries, "1", 0, 100),
    S_STRF(kz_policy_config_t, commit_author, "commit_author", "kaizen <kaizen@localhost>",
           s_check_author),
    {"group", S_T_BOOL, S_OFF(kz_policy_config_t, group), "false", 0, 0, false, NULL, NULL, 0, 0,
     NULL},
    S_FIELD_END};

static const s_field_t s_scan_fields[] = {
    S_NUM("parallelism", S_T_INT, kz_scan_config_t, parallelism, "0", 0, 1024),
    S_NUM("batch_size", S_T_INT, kz_scan_config_t, batch_size, "500", 1, 100000),
    {"incremental", S_T_BOOL, S_OFF(kz_scan_config_t, incremental), "true", 0, 0, false, NULL, NULL,
     0, 0, NULL},
    S_FIELD_END};

/* sandbox: (kz_sandbox.h) */
static int s_check_abs_path(const char *value, char *why, size_t len)
{
    if (value[0] != '/') {
        snprintf(why, len, "'%.*s' is not an absolute path", S_SHOW, value);
        return -1;
    }
    return 0;
}

static const s_field_t s_sandbox_fields[] = {
    {"enabled", S_T_BOOL, S_OFF(kz_sandbox_config_t, enabled), "true", 0, 0, false, NULL, NULL, 0,
     0, NULL},
    S_STRF(kz_sandbox_config_t, user, "user", KZ_SANDBOX_USER, s_check_name),
    S_LISTF(kz_sandbox_config_t, bind_ro, "bind_ro", s_check_abs_path),
    S_LISTF(kz_sandbox_config_t, bind_rw, "bind_rw", s_check_abs_path),
    S_NUM("cpu_time", S_T_DURATION, kz_sandbox_config_t, cpu_time_ms, "1h", 0, S_DUR_MAX),
    S_NUM("memory_mb", S_T_INT, kz_sandbox_config_t, memory_mb, "16384", 0, 1 << 30),
    S_NUM("processes", S_T_INT, kz_sandbox_config_t, processes, "4096", 0, 1 << 30),
    S_NUM("file_size_mb", S_T_INT, kz_sandbox_config_t, file_size_mb, "4096", 0, 1 << 30),
    S_FIELD_END};

static const s_field_t s_root_fields[] = {
    S_PATHF(kz_config_t, state_dir),
    S_NUM("agent_heartbeat", S_T_DURATION, kz_config_t, agent_heartbeat_ms, "5s", 1, S_DUR_MAX),
    S_SECT("log", kz_config_t, log, s_log_fields),
    S_SECT("bus", kz_config_t, bus, s_bus_fields),
    S_SECT("broker", kz_config_t, broker, s_broker_fields),
    S_SECT("database", kz_config_t, database, s_database_fields),
    S_SECT("supervisor", kz_config_t, supervisor, s_supervisor_fields),
    {"agents", S_T_LIST, S_OFF(kz_config_t, agents), NULL, 0, S_MAX_LIST, false, NULL,
     s_agent_fields, sizeof(kz_agent_config_t), S_OFF(kz_config_t, agents_count), "agent"},
    {"targets", S_T_LIST, S_OFF(kz_config_t, targets), NULL, 0, S_MAX_LIST, false, NULL,
     s_target_fields, sizeof(kz_target_config_t), S_OFF(kz_config_t, targets_count), "target"},
    {"tools", S_T_LIST, S_OFF(kz_config_t, tools), NULL, 0, S_MAX_LIST, false, NULL, s_tool_fields,
     sizeof(kz_tool_config_t), S_OFF(kz_config_t, tools_count), "tool"},
    {"fixers", S_T_LIST, S_OFF(kz_config_t, fixers), NULL, 0, S_MAX_LIST, false, NULL,
     s_fixer_fields, sizeof(kz_fixer_config_t), S_OFF(kz_config_t, fixers_count), "fixer"},
    S_SECT("policy", kz_config_t, policy, s_policy_fields),
    S_SECT("scan", kz_config_t, scan, s_scan_fields),
    S_SECT("sandbox", kz_config_t, sandbox, s_sandbox_fields),
    {"catalog", S_T_BOOL, S_OFF(kz_config_t, catalog), "true", 0, 0, false, NULL, NULL, 0, 0, NULL},
    S_FIELD_END};

/* What a catalog file (catalog/NAME.yaml) may hold */
static const s_field_t s_catalog_fields[] = {
    {"tools", S_T_LIST, S_OFF(kz_config_t, tools), NULL, 0, S_MAX_LIST, false, NULL, s_tool_fields,
     sizeof(kz_tool_config_t), S_OFF(kz_config_t, tools_count), "tool"},
    {"fixers", S_T_LIST, S_OFF(kz_config_t, fixers), NULL, 0, S_MAX_LIST, false, NULL,
     s_fixer_fields, sizeof(kz_fixer_config_t), S_OFF(kz_config_t, fixers_count), "fixer"},
    S_FIELD_END};

/* ---------------------------------------------------------------------
   Freeing and defaults, both driven by the schema */

static void s_strlist_free(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

static void s_free_fields(const s_field_t *fields, void *base)
{
    for (const s_field_t *f = fields; f->key; f++) {
        char *at = (char *)base + f->offset;
        switch (f->type) {
        case S_T_STR:
        case S_T_PATH:
            free(*(char **)(void *)at);
            *(char **)(void *)at = NULL;
            break;
        case S_T_STRLIST:
            s_strlist_free(*(char ***)(void *)at);
            *(char ***)(void *)at = NULL;
            *(size_t *)(void *)((char *)base + f->count_offset) = 0;
            break;
        case S_T_SECTION:
            s_free_fields(f->sub, at);
            break;
        case S_T_LIST: {
            char *array = *(char **)(void *)at;
            size_t *count = (size_t *)(void *)((char *)base + f->count_offset);
            for (size_t i = 0; array && i < *count; i++)
                s_free_fields(f->sub, array + i * f->elem_size);
            free(array);
            *(char **)(void *)at = NULL;
            *count = 0;
            break;
        }
        default:
            break;
        }
    }
}

/* Store TEXT (a value in config syntax) into field F of BASE. Returns 0,
   -1 with WHY when the text is invalid, -2 when out of memory. Used for
   both defaults and the user's scalars. */
static int s_store_scalar(const s_ctx_t *ctx, const s_field_t *f, void *base, const char *text,
                          char *why, size_t len)
{
    char *at = (char *)base + f->offset;
    long long v = 0;
    switch (f->type) {
    case S_T_STR:
    case S_T_PATH: {
        if (f->check && f->check(text, why, len) < 0)
            return -1;
        if (f->type == S_T_PATH && !*text) {
            snprintf(why, len, "must not be empty");
            return -1;
        }
        char *copy =
            f->type == S_T_PATH ? s_resolve(ctx ? ctx->base_dir : NULL, text) : strdup(text);
        if (!copy)
            return -2;
        free(*(char **)(void *)at);
        *(char **)(void *)at = copy;
        return 0;
    }
    case S_T_INT:
        if (s_parse_int(text, &v) < 0) {
            snprintf(why, len, "expected an integer, got '%.*s'", S_SHOW, text);
            return -1;
        }
        break;
    case S_T_DURATION: {
        int ms;
        if (kz_parse_duration_ms(text, &ms) < 0) {
            if (text[0] == '-')
                snprintf(why, len, "must not be negative, got '%.*s'", S_SHOW, text);
            else
                snprintf(why, len, "expected a duration like 250ms, 5s, 2m or 1h, got '%.*s'",
                         S_SHOW, text);
            return -1;
        }
        v = ms;
        break;
    }
    case S_T_SIZE: {
        size_t bytes;
        if (kz_parse_size(text, &bytes) < 0) {
            if (text[0] == '-')
                snprintf(why, len, "must not be negative, got '%.*s'", S_SHOW, text);
            else
                snprintf(why, len, "expected a size like 512, 64KiB, 1MiB or 1GiB, got '%.*s'",
                         S_SHOW, text);
            return -1;
        }
        if (bytes > (unsigned long long)LLONG_MAX) {
            snprintf(why, len, "must be at most %lld, got '%.*s'", f->max, S_SHOW, text);
            return -1;
        }
        v = (long long)bytes;
        break;
    }
    case S_T_FLOAT: {
        char *end = NULL;
        errno = 0;
        double d = strtod(text, &end);
        if (!*text || !end || *end || errno || d != d) {
            snprintf(why, len, "expected a number, got '%.*s'", S_SHOW, text);
            return -1;
        }
        if (d < (double)f->min || d > (double)f->max) {
            snprintf(why, len, "must be between %lld and %lld, got '%.*s'", f->min, f->max, S_SHOW,
                     text);
            return -1;
        }
        *(double *)(void *)at = d;
        return 0;
    }
    case S_T_BOOL: {
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[] = {"false", "no", "off"};
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(text, yes[i]) == 0) {
                *(bool *)(void *)at = true;
                return 0;
            }
            if (strcasecmp(text, no[i]) == 0) {
                *(bool *)(void *)at = false;
                return 0;
            }
        }
        snprintf(why, len, "expected true or false, got '%.*s'", S_SHOW, text);
        return -1;
    }
    case S_T_LEVEL:
        if (kz_log_level_parse(text, (kz_log_level_t *)(void *)at) < 0) {
            snprintf(why, len,
                     "unknown log level '%.*s' (expected debug, info, warn, error or off)", S_SHOW,
                     text);
            return -1;
        }
        return 0;
    case S_T_FORMAT:
        if (kz_log_format_parse(text, (bool *)(void *)at) < 0) {
            snprintf(why, len, "unknown log format '%.*s' (expected text or json)", S_SHOW, text);
            return -1;
        }
        return 0;
    default:
        snprintf(why, len, "expected a %s",
                 f->type == S_T_STRLIST ? "list of strings"
                 : f->type == S_T_LIST  ? "list"
                                        : "mapping");
        return -1;
    }
    /* the numeric types */
    if (v < f->min) {
        if ((v < 0 && f->min >= 0) || (v == 0 && f->min == 1))
            snprintf(why, len, "must not be %s, got '%.*s'", v < 0 ? "negative" : "zero", S_SHOW,
                     text);
        else
            snprintf(why, len, "must be at least %lld, got '%.*s'", f->min, S_SHOW, text);
        return -1;
    }
    if (v > f->max) {
        snprintf(why, len, "must be at most %lld, got '%.*s'", f->max, S_SHOW, text);
        return -1;
    }
    if (f->type == S_T_SIZE)
        *(size_t *)(void *)at = (size_t)v;
    else
        *(int *)(void *)at = (int)v;
    return 0;
}

/* Apply every default of FIELDS to BASE; -1 when out of memory */
static int s_defaults(const s_field_t *fields, void *base)
{
    char why[256];
    for (const s_field_t *f = fields; f->key; f++) {
        if (f->type == S_T_SECTION) {
            if (s_defaults(f->sub, (char *)base + f->offset) < 0)
                return -1;
        } else if (f->def) {
            /* -1 here would be a broken default in the table (tests catch
               it); -2 is out of memory */
            if (s_store_scalar(NULL, f, base, f->def, why, sizeof why) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------
   Walking the tree */

static bool s_is_null(const s_node_t *node)
{
    if (!node)
        return true;
    if (node->kind != S_SCALAR || !node->plain)
        return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (strcmp(node->value, nulls[i]) == 0)
            return true;
    return false;
}

static size_t s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Nodes the walk meets are checked for anchors and aliases here */
static int s_check_node(s_ctx_t *ctx, const s_node_t *node, const char *path)
{
    if (node->kind == S_ALIAS)
        return s_err(ctx, node, path, "aliases are not supported: write the value out");
    if (node->anchored)
        return s_err(ctx, node, path, "anchors are not supported: write the value out");
    if (node->kind == S_SCALAR && strlen(node->value) != node->value_len)
        return s_err(ctx, node, path, "must not contain a NUL character");
    return 0;
}

static int s_walk_map(s_ctx_t *ctx, const s_node_t *map, const s_field_t *fields, void *base,
                      const char *path);

static const char *s_kind_want(s_type_t type)
{
    switch (type) {
    case S_T_STR:
    case S_T_PATH:
        return "expected a string";
    case S_T_INT:
        return "expected an integer";
    case S_T_DURATION:
        return "expected a duration like 250ms, 5s, 2m or 1h";
    case S_T_SIZE:
        return "expected a size like 512, 64KiB, 1MiB or 1GiB";
    case S_T_BOOL:
        return "expected true or false";
    case S_T_LEVEL:
        return "expected a log level";
    case S_T_FORMAT:
        return "expected a log format";
    case S_T_STRLIST:
        return "expected a list of strings";
    case S_T_LIST:
        return "expected a list";
    default:
        return "expected a mapping";
    }
}

static const char *s_kind_name(const s_node_t *node)
{
    return node->kind == S_MAP ? "a mapping" : node->kind == S_SEQ ? "a list" : "a string";
}

static int s_oom(s_ctx_t *ctx, const s_node_t *node, const char *path)
{
    return s_err(ctx, node, path, "out of memory");
}

static int s_walk_strlist(s_ctx_t *ctx, const s_field_t *f, const s_node_t *node, void *base,
                          const char *path)
{
    char ***at = (char ***)(void *)((char *)base + f->offset);
    size_t *count = (size_t *)(void *)((char *)base + f->count_offset);
    s_strlist_free(*at);
    *at = NULL;
    *count = 0;
    if (node->kind != S_SEQ)
        return s_err(ctx, node, path, "expected a list of strings, got %s", s_kind_name(node));
    if (node->count > S_MAX_STRLIST)
        return s_err(ctx, node, path, "too many items (more than %d)", S_MAX_STRLIST);
    if (f->required && node->count == 0)
        return s_err(ctx, node, path, "must not be empty");
    char **list = calloc(node->count + 1, sizeof *list);
    if (!list)
        return s_oom(ctx, node, path);
    *at = list;
    for (size_t i = 0; i < node->count; i++) {
        const s_node_t *item = node->items[i];
        char ipath[S_MAX_PATH];
        s_path(ipath, sizeof ipath, "%s[%zu]", path, i);
        if (s_check_node(ctx, item, ipath) < 0)
            return -1;
        if (item->kind != S_SCALAR || s_is_null(item))
            return s_err(ctx, item, ipath, "expected a list of strings, got %s",
                         s_is_null(item) ? "null" : s_kind_name(item));
        char why[256];
        if (f->check && f->check(item->value, why, sizeof why) < 0)
            return s_err(ctx, item, ipath, "%s", why);
        list[i] = strdup(item->value);
        if (!list[i])
            return s_oom(ctx, item, ipath);
        *count = i + 1;
        s_mark(ctx, item, ipath);
    }
    return 0;
}

/* The name field of a list element (the first S_T_STR field with a validator) */
static const s_field_t *s_name_field(const s_field_t *fields)
{
    for (const s_field_t *f = fields; f->key; f++)
        if (f->required && f->type == S_T_STR && strcmp(f->key, "name") == 0)
            return f;
    return NULL;
}

static const s_node_t *s_find_value(const s_node_t *map, const char *key)
{
    for (size_t i = 0; map->kind == S_MAP && i + 1 < map->count; i += 2)
        if (map->items[i]->kind == S_SCALAR && strcmp(map->items[i]->value, key) == 0)
            return map->items[i + 1];
    return NULL;
}

static int s_walk_list(s_ctx_t *ctx, const s_field_t *f, const s_node_t *node, void *base,
                       const char *path)
{
    char **at = (char **)(void *)((char *)base + f->offset);
    size_t *count = (size_t *)(void *)((char *)base + f->count_offset);
    if (node->kind != S_SEQ)
        return s_err(ctx, node, path, "expected a list, got %s", s_kind_name(node));
    if (node->count > (size_t)f->max)
        return s_err(ctx, node, path, "too many items (more than %lld)", f->max);
    /* free what was there (a duplicate key never gets here, but be exact) */
    for (size_t i = 0; *at && i < *count; i++)
        s_free_fields(f->sub, *at + i * f->elem_size);
    free(*at);
    *count = 0;
    *at = calloc(node->count ? node->count : 1, f->elem_size);
    if (!*at)
        return s_oom(ctx, node, path);
    const s_field_t *name = s_name_field(f->sub);
    for (size_t i = 0; i < node->count; i++) {
        const s_node_t *item = node->items[i];
        char *elem = *at + i * f->elem_size;
        char ipath[S_MAX_PATH];
        s_path(ipath, sizeof ipath, "%s[%zu]", path, i);
        *count = i + 1;
        s_mark(ctx, item, ipath);
        if (s_defaults(f->sub, elem) < 0)
            return s_oom(ctx, item, ipath);
        if (s_check_node(ctx, item, ipath) < 0)
            return -1;
        if (item->kind != S_MAP)
            return s_err(ctx, item, ipath, "expected a mapping, got %s",
                         s_is_null(item) ? "null" : s_kind_name(item));
        if (s_walk_map(ctx, item, f->sub, elem, ipath) < 0)
            return -1;
        if (!name || !f->unique)
            continue;
        const char *mine = *(char **)(void *)(elem + name->offset);
        for (size_t j = 0; j < i; j++) {
            const char *other = *(char **)(void *)(*at + j * f->elem_size + name->offset);
            if (mine && other && strcmp(mine, other) == 0) {
                char npath[S_MAX_PATH];
                s_path(npath, sizeof npath, "%s.%s", ipath, name->key);
                const s_node_t *where = s_find_value(item, name->key);
                return s_err(ctx, where ? where : item, npath,
                             "duplicate %s name '%.*s' (also %s[%zu])", f->unique, S_SHOW, mine,
                             path, j);
            }
        }
    }
    return 0;
}

/* Set field F of BASE from NODE */
static int s_walk_value(s_ctx_t *ctx, const s_field_t *f, const s_node_t *node, void *base,
                        const char *path)
{
    char why[512];
    if (s_check_node(ctx, node, path) < 0)
        return -1;
    s_mark(ctx, node, path);
    if (s_is_null(node)) {
        if (f->required)
            return s_err(ctx, node, path, "missing required value");
        return 0; /* the default stays */
    }
    switch (f->type) {
    case S_T_SECTION:
        if (node->kind != S_MAP)
            return s_err(ctx, node, path, "expected a mapping, got %s", s_kind_name(node));
        return s_walk_map(ctx, node, f->sub, (char *)base + f->offset, path);
    case S_T_LIST:
        return s_walk_list(ctx, f, node, base, path);
    case S_T_STRLIST:
        return s_walk_strlist(ctx, f, node, base, path);
    default:
        break;
    }
    if (node->kind != S_SCALAR)
        return s_err(ctx, node, path, "%s, got %s", s_kind_want(f->type), s_kind_name(node));
    int rc = s_store_scalar(ctx, f, base, node->value, why, sizeof why);
    if (rc == -2)
        return s_oom(ctx, node, path);
    if (rc < 0)
        return s_err(ctx, node, path, "%s", why);
    return 0;
}

static int s_walk_map(s_ctx_t *ctx, const s_node_t *map, const s_field_t *fields, void *base,
                      const char *path)
{
    for (size_t i = 0; i + 1 < map->count; i += 2) {
        const s_node_t *key = map->items[i];
        const s_node_t *value = map->items[i + 1];
        char kpath[S_MAX_PATH];
        if (s_check_node(ctx, key, path) < 0)
            return -1;
        if (key->kind != S_SCALAR)
            return s_err(ctx, key, path, "keys must be strings, got %s", s_kind_name(key));
        s_path(kpath, sizeof kpath, "%s%s%s", path, *path ? "." : "", key->value);
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(map->items[j]->value, key->value) == 0)
                return s_err(ctx, key, kpath, "duplicate key (first at line %d)",
                             map->items[j]->line);
        const s_field_t *field = NULL;
        for (const s_field_t *f = fields; f->key; f++)
            if (strcmp(f->key, key->value) == 0) {
                field = f;
                break;
            }
        if (!field) {
            const char *best = NULL;
            size_t best_d = SIZE_MAX;
            for (const s_field_t *f = fields; f->key; f++) {
                size_t d = s_distance(key->value, f->key);
                if (d < best_d) {
                    best_d = d;
                    best = f->key;
                }
            }
            size_t klen = strlen(key->value);
            if (best && best_d <= 2 && best_d < klen && best_d * 3 <= strlen(best))
                return s_err(ctx, key, kpath, "unknown key, did you mean '%s'?", best);
            return s_err(ctx, key, kpath, "unknown key");
        }
        if (s_walk_value(ctx, field, value, base, kpath) < 0)
            return -1;
    }
    /* a required key that is absent (present but null failed above) */
    for (const s_field_t *f = fields; f->key; f++)
        if (f->required && !s_find_value(map, f->key)) {
            char kpath[S_MAX_PATH];
            s_path(kpath, sizeof kpath, "%s%s%s", path, *path ? "." : "", f->key);
            return s_err(ctx, map, kpath, "missing required value");
        }
    return 0;
}

/* ---------------------------------------------------------------------
   The public API */

/* state_dir: $KAIZEN_STATE_DIR, else the configured value, else
   /var/lib/kaizen for root (a system service's place, and reachable by the
   unprivileged user the embedded PostgreSQL runs as), else
   $XDG_STATE_HOME/kaizen, else $HOME/.local/state/kaizen */
static int s_state_dir(kz_config_t *self)
{
    const char *env = getenv("KAIZEN_STATE_DIR");
    char *dir = NULL;
    if (env && *env) {
        char cwd[PATH_MAX];
        dir = s_resolve(getcwd(cwd, sizeof cwd) ? cwd : NULL, env);
    } else if (self->state_dir)
        return 0;
    else if (geteuid() == 0) {
        dir = strdup("/var/lib/kaizen");
    } else {
        const char *xdg = getenv("XDG_STATE_HOME");
        const char *home = getenv("HOME");
        if (xdg && xdg[0] == '/') {
            if (asprintf(&dir, "%s/kaizen", xdg) < 0)
                dir = NULL;
        } else {
            if (!home || !*home) {
                struct passwd *pw = getpwuid(getuid());
                home = pw && pw->pw_dir ? pw->pw_dir : "/tmp";
            }
            if (asprintf(&dir, "%s/.local/state/kaizen", home) < 0)
                dir = NULL;
        }
        if (dir)
            s_normalise(dir);
    }
    if (!dir)
        return -1;
    free(self->state_dir);
    self->state_dir = dir;
    return 0;
}

/* ---------------------------------------------------------------------
   Recipes: the config's own checked, the catalog's merged under them */

const char *const kz_config_loop_agents[] = {
    "code-health",         "code-quality",    "improvement-planner",
    "feature-prioritizer", "code-refactorer", "test-runner",
    "code-reviewer",       "pattern-learner", NULL};

/* The node of ITEM's KEY in the config's LIST (for error positions) */
static const s_node_t *s_item_node(const s_node_t *root, const char *list, size_t i,
                                   const char *key)
{
    const s_node_t *seq = root ? s_find_value(root, list) : NULL;
    const s_node_t *item = seq && seq->kind == S_SEQ && i < seq->count ? seq->items[i] : NULL;
    const s_node_t *where = item && key ? s_find_value(item, key) : NULL;
    return where ? where : (item ? item : root);
}

/* What an enabled recipe must have, which the schema cannot say: argv and
   format (tools), tool and argv (fixers), requires behind gate: chosen.
   The default gate: chosen when requires is set, else always. */
static int s_recipes_check(s_ctx_t *ctx, const s_node_t *root, kz_config_t *self)
{
    char path[S_MAX_PATH];
    for (size_t i = 0; i < self->tools_count; i++) {
        kz_tool_config_t *t = &self->tools[i];
        if (!t->gate && !(t->gate = strdup(t->requires_count ? "chosen" : "always")))
            return s_err_at(ctx, 1, 1, "tools", "out of memory");
        if (!t->enabled)
            continue;
        const char *missing = !t->argv_count ? "argv" : !t->format ? "format" : NULL;
        if (missing) {
            s_path(path, sizeof path, "tools[%zu].%s", i, missing);
            return s_err(ctx, s_item_node(root, "tools", i, NULL), path, "missing required value");
        }
        if (strcmp(t->gate, "chosen") == 0 && !t->requires_count) {
            s_path(path, sizeof path, "tools[%zu].requires", i);
            return s_err(ctx, s_item_node(root, "tools", i, "gate"), path,
                         "gate 'chosen' needs the evidence that the project chose '%.*s' "
                         "(requires: [FILE or FILE:TEXT, ...]), or gate: always",
                         S_SHOW, t->name);
        }
    }
    for (size_t i = 0; i < self->fixers_count; i++) {
        const kz_fixer_config_t *x = &self->fixers[i];
        const char *missing = !x->enabled      ? NULL
                              : !x->tool       ? "tool"
                              : !x->argv_count ? "argv"
                                               : NULL;
        if (missing) {
            s_path(path, sizeof path, "fixers[%zu].%s", i, missing);
            return s_err(ctx, s_item_node(root, "fixers", i, NULL), path, "missing required value");
        }
    }
    return 0;
}

/* True when one of the first N elements (ELEM bytes each, the name first)
   of ITEMS is named NAME */
static bool s_named(const char *items, size_t n, size_t elem, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(*(char *const *)(const void *)(items + i * elem), name) == 0)
            return true;
    return false;
}

/* Move the elements of the list F of FROM whose names SELF's list lacks to
   its end (the config's own come first, so they win every lookup), their
   origin set to ORIGIN; FROM's list is left empty. 0 / -1 (out of memory) */
static int s_merge_list(const s_field_t *f, kz_config_t *self, kz_config_t *from,
                        const char *origin)
{
    char **dst = (char **)(void *)((char *)self + f->offset);
    size_t *ndst = (size_t *)(void *)((char *)self + f->count_offset);
    char **src = (char **)(void *)((char *)from + f->offset);
    size_t *nsrc = (size_t *)(void *)((char *)from + f->count_offset);
    char *out = realloc(*dst, (*ndst + *nsrc + 1) * f->elem_size);
    if (!out)
        return -1;
    *dst = out;
    size_t own = *ndst;
    for (size_t i = 0; i < *nsrc; i++) {
        char *elem = *src + i * f->elem_size;
        if (s_named(out, own, f->elem_size, *(char **)(void *)elem))
            s_free_fields(f->sub, elem);
        else {
            if (f->sub == s_tool_fields)
                ((kz_tool_config_t *)(void *)elem)->origin = origin;
            else
                ((kz_fixer_config_t *)(void *)elem)->origin = origin;
            memcpy(out + (*ndst)++ * f->elem_size, elem, f->elem_size);
        }
    }
    free(*src);
    *src = NULL;
    *nsrc = 0;
    return 0;
}

/* Merge every catalog file's recipes under SELF's. A catalog file that does
   not load is a broken build (tests/unit/test_config.c loads each): its
   error is reported like a config error. */
static int s_catalog_merge(s_ctx_t *ctx, kz_config_t *self)
{
    for (size_t k = 0; k < kz_catalog_count; k++) {
        s_ctx_t cctx = {.name = kz_catalog[k].name,
                        .text = kz_catalog[k].text,
                        .len = strlen(kz_catalog[k].text),
                        .errbuf = ctx->errbuf,
                        .errlen = ctx->errlen};
        kz_config_t cat = {0};
        s_node_t *root = NULL;
        int rc = -1;
        if (s_defaults(s_catalog_fields, &cat) < 0)
            s_err_at(&cctx, 1, 1, "", "out of memory");
        else if (s_build_tree(&cctx, &root) == 0 && root && root->kind == S_MAP &&
                 s_walk_map(&cctx, root, s_catalog_fields, &cat, "") == 0 &&
                 s_recipes_check(&cctx, root, &cat) == 0) {
            rc = 0;
            for (const s_field_t *f = s_catalog_fields; f->key && rc == 0; f++)
                if (s_merge_list(f, self, &cat, kz_catalog[k].name) < 0)
                    rc = s_err_at(&cctx, 1, 1, f->key, "out of memory");
        } else if (ctx->errbuf && ctx->errlen && !ctx->errbuf[0])
            s_err_at(&cctx, 1, 1, "", "not a mapping of tools and fixers");
        s_node_free(root);
        s_marks_free(cctx.marks, cctx.marks_count); /* the catalog's own positions */
        s_free_fields(s_catalog_fields, &cat);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Drop the recipes switched off (enabled: false), and the fixers of a tool
   that is not there (a catalog fixer whose tool the config switched off;
   the config's own fixers naming no tool are an error in s_finish) */
static void s_recipes_prune(kz_config_t *self, size_t own_fixers)
{
    size_t n = 0;
    for (size_t i = 0; i < self->tools_count; i++) {
        if (!self->tools[i].enabled) {
            s_free_fields(s_tool_fields, &self->tools[i]);
            continue;
        }
        self->tools[n++] = self->tools[i];
    }
    self->tools_count = n;
    n = 0;
    for (size_t i = 0; i < self->fixers_count; i++) {
        kz_fixer_config_t *x = &self->fixers[i];
        if (!x->enabled || (i >= own_fixers && !kz_config_tool(self, x->tool))) {
            s_free_fields(s_fixer_fields, x);
            continue;
        }
        self->fixers[n++] = *x;
    }
    self->fixers_count = n;
}

/* The loop's agents, for a config without an agents: key. 0 / -1 */
static int s_default_agents(kz_config_t *self)
{
    size_t n = 0;
    while (kz_config_loop_agents[n])
        n++;
    kz_agent_config_t *agents = calloc(n, sizeof *agents);
    if (!agents)
        return -1;
    self->agents = agents;
    for (size_t i = 0; i < n; i++) {
        self->agents_count = i + 1;
        if (s_defaults(s_agent_fields, &agents[i]) < 0 ||
            !(agents[i].name = strdup(kz_config_loop_agents[i])))
            return -1;
        agents[i].interval_ms = i == 0 ? 10 * 60 * 1000 : 0;
    }
    return 0;
}

/* The recipes and agents of SELF once its own are walked: checked, the
   catalog's merged (unless catalog: false), the switched-off dropped; the
   loop's agents when ROOT (NULL: no file) has no agents: key */
static int s_complete(s_ctx_t *ctx, const s_node_t *root, kz_config_t *self)
{
    if (s_recipes_check(ctx, root, self) < 0)
        return -1;
    size_t own_fixers = self->fixers_count;
    if (self->catalog && s_catalog_merge(ctx, self) < 0)
        return -1;
    s_recipes_prune(self, own_fixers);
    if (!(root && s_find_value(root, "agents")) && !self->agents_count &&
        s_default_agents(self) < 0)
        return s_err_at(ctx, 1, 1, "agents", "out of memory");
    return 0;
}

/* Cross-references and list defaults, after the walk */
static int s_finish(s_ctx_t *ctx, const s_node_t *root, kz_config_t *self)
{
    for (size_t i = 0; i < self->fixers_count; i++) {
        if (kz_config_tool(self, self->fixers[i].tool))
            continue;
        const s_node_t *list = root ? s_find_value(root, "fixers") : NULL;
        const s_node_t *item =
            list && list->kind == S_SEQ && i < list->count ? list->items[i] : NULL;
        const s_node_t *where = item ? s_find_value(item, "tool") : NULL;
        char path[S_MAX_PATH];
        s_path(path, sizeof path, "fixers[%zu].tool", i);
        return s_err(ctx, where ? where : (item ? item : root), path,
                     "no tool named '%.*s' in tools", S_SHOW, self->fixers[i].tool);
    }
    if (!self->policy.validators_count) {
        static const char *const defaults[] = {"validate.tests", "validate.review"};
        char **list = calloc(3, sizeof *list);
        if (!list)
            return s_err_at(ctx, 1, 1, "policy.validators", "out of memory");
        for (size_t i = 0; i < 2; i++)
            if (!(list[i] = strdup(defaults[i]))) {
                s_strlist_free(list);
                return s_err_at(ctx, 1, 1, "policy.validators", "out of memory");
            }
        s_strlist_free(self->policy.validators);
        self->policy.validators = list;
        self->policy.validators_count = 2;
    }
    return 0;
}

const kz_target_config_t *kz_config_target(const kz_config_t *self, const char *name)
{
    for (size_t i = 0; self && name && i < self->targets_count; i++)
        if (strcmp(self->targets[i].name, name) == 0)
            return &self->targets[i];
    return NULL;
}

const kz_tool_config_t *kz_config_tool(const kz_config_t *self, const char *name)
{
    for (size_t i = 0; self && name && i < self->tools_count; i++)
        if (strcmp(self->tools[i].name, name) == 0)
            return &self->tools[i];
    return NULL;
}

const kz_fixer_config_t *kz_config_fixer(const kz_config_t *self, const char *name)
{
    for (size_t i = 0; self && name && i < self->fixers_count; i++)
        if (strcmp(self->fixers[i].name, name) == 0)
            return &self->fixers[i];
    return NULL;
}

/* bus.endpoints left unset: ipc://STATE/bus/NAME.sock, in the directory
   the broker keeps private (kz_bus_dir_ensure) */
static int s_bus_defaults(kz_config_t *self)
{
    kz_endpoints_t *e = &self->bus.connect;
    char **eps[4] = {&e->pub, &e->sub, &e->router, &e->tap};
    static const char *const names[4] = {"pub", "sub", "router", "tap"};
    for (int i = 0; i < 4; i++) {
        if (*eps[i])
            continue;
        if (asprintf(eps[i], "ipc://%s/" KZ_BUS_DIR "/%s.sock", self->state_dir, names[i]) < 0) {
            *eps[i] = NULL;
            return -1;
        }
    }
    return 0;
}

/* The first tcp:// endpoint of SELF's bus (connect or bind), its key
   into KEY; NULL when none */
static const char *s_bus_tcp(const kz_config_t *self, const char **key)
{
    const kz_bus_config_t *b = &self->bus;
    const char *eps[8] = {b->connect.pub, b->connect.sub, b->connect.router, b->connect.tap,
                          b->bind.pub,    b->bind.sub,    b->bind.router,    b->bind.tap};
    static const char *const keys[8] = {
        "bus.endpoints.pub", "bus.endpoints.sub", "bus.endpoints.router", "bus.endpoints.tap",
        "bus.bind.pub",      "bus.bind.sub",      "bus.bind.router",      "bus.bind.tap"};
    for (int i = 0; i < 8; i++)
        if (eps[i] && strncmp(eps[i], "tcp://", 6) == 0) {
            *key = keys[i];
            return eps[i];
        }
    return NULL;
}

/* STATE/keys/NAME into *AT unless the config set it; -1 out of memory */
static int s_key_default(char **at, const char *state_dir, const char *name)
{
    if (*at)
        return 0;
    if (asprintf(at, "%s/" KZ_KEYS_DIR "/%s", state_dir, name) < 0) {
        *at = NULL;
        return -1;
    }
    return 0;
}

/* TCP requires CURVE: bus.curve.enabled unset with a tcp:// endpoint
   switches it on with the automatic keys of STATE/keys for every path
   the config leaves unset (a role certificate only when client_cert is
   unset too: a client_cert the config names wins; client_cert itself is
   the agent's, the least role, for a program that takes none);
   bus.curve.enabled:
   false with a tcp:// endpoint is refused. ENABLED is the node of
   bus.curve.enabled, NULL when absent or empty. */
static int s_bus_curve(s_ctx_t *ctx, const s_node_t *enabled, kz_config_t *self)
{
    const char *key = NULL;
    const char *tcp = s_bus_tcp(self, &key);
    kz_curve_config_t *c = &self->bus.curve;
    if (!tcp)
        return 0;
    if (enabled) {
        if (c->enabled)
            return 0;
        return s_err(ctx, enabled, "bus.curve.enabled",
                     "false with a tcp:// endpoint (%s: %.*s): TCP requires CURVE; remove "
                     "bus.curve.enabled for keys made under state_dir/" KZ_KEYS_DIR
                     " on first use, or leave bus.endpoints unset for the private ipc:// "
                     "default (proto/PROTOCOL.md 1.5)",
                     key, S_SHOW, tcp);
    }
    c->enabled = true;
    c->automatic = true;
    const char *st = self->state_dir;
    int rc = s_key_default(&c->broker_cert, st, "broker.key_secret") |
             s_key_default(&c->broker_public, st, "broker.key") |
             s_key_default(&c->allow_dir, st, "allow");
    if (!c->client_cert)
        rc |= s_key_default(&c->orchestrator_cert, st, "orchestrator.key_secret") |
              s_key_default(&c->agent_cert, st, "agent.key_secret") |
              s_key_default(&c->operator_cert, st, "operator.key_secret") |
              s_key_default(&c->client_cert, st, "agent.key_secret");
    if (rc)
        return s_err_at(ctx, 1, 1, "bus.curve", "out of memory");
    return 0;
}

int kz_config_bus_role(kz_config_t *self, const char *role)
{
    kz_curve_config_t *c = &self->bus.curve;
    const char *cert = strcmp(role, KZ_ROLE_ORCHESTRATOR) == 0 ? c->orchestrator_cert
                       : strcmp(role, KZ_ROLE_AGENT) == 0      ? c->agent_cert
                       : strcmp(role, KZ_ROLE_OPERATOR) == 0   ? c->operator_cert
                                                               : NULL;
    if (!cert || !*cert)
        return 0;
    char *copy = strdup(cert);
    if (!copy)
        return -1;
    free(c->client_cert);
    c->client_cert = copy;
    return 0;
}

kz_config_t *kz_config_default(void)
{
    kz_config_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    char errbuf[256];
    s_ctx_t ctx = {.name = "<defaults>", .text = "", .errbuf = errbuf, .errlen = sizeof errbuf};
    if (s_defaults(s_root_fields, self) < 0 || s_state_dir(self) < 0 || s_bus_defaults(self) < 0 ||
        s_complete(&ctx, NULL, self) < 0 || s_finish(&ctx, NULL, self) < 0) {
        kz_config_destroy(&self);
        return NULL;
    }
    return self;
}

void kz_config_destroy(kz_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_config_t *self = *self_p;
    s_free_fields(s_root_fields, self);
    s_marks_free(self->marks, self->marks_count);
    free(self->path);
    free(self);
    *self_p = NULL;
}

int kz_config_mark(const kz_config_t *self, const char *key, int *line, int *col)
{
    *line = 1;
    *col = 1;
    if (!self || !key)
        return -1;
    char want[S_MAX_PATH];
    snprintf(want, sizeof want, "%s", key);
    for (;;) {
        for (size_t i = 0; i < self->marks_count; i++)
            if (strcmp(self->marks[i].key, want) == 0) {
                *line = self->marks[i].line;
                *col = self->marks[i].col;
                return 0;
            }
        /* the parent: "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" */
        char *dot = strrchr(want, '.');
        char *bracket = strrchr(want, '[');
        char *cut = dot > bracket ? dot : bracket;
        if (!cut || cut == want)
            return -1;
        *cut = '\0';
    }
}

kz_config_t *kz_config_parse(const char *name, const char *text, size_t len, char *errbuf,
                             size_t errlen)
{
    s_ctx_t ctx = {.name = name ? name : "<config>",
                   .text = text ? text : "",
                   .len = text ? len : 0,
                   .errbuf = errbuf,
                   .errlen = errlen};
    s_node_t *root = NULL;
    kz_config_t *self = NULL;
    if (errbuf && errlen)
        errbuf[0] = '\0';

    ctx.base_dir = s_base_dir(ctx.name);
    self = calloc(1, sizeof *self);
    if (!ctx.base_dir || !self || s_defaults(s_root_fields, self) < 0) {
        s_err_at(&ctx, 1, 1, "", "out of memory");
        goto fail;
    }
    if (s_build_tree(&ctx, &root) < 0)
        goto fail;
    if (root && !s_is_null(root)) {
        if (s_check_node(&ctx, root, "") < 0)
            goto fail;
        if (root->kind != S_MAP) {
            s_err(&ctx, root, "", "expected a mapping of keys at the top level, got %s",
                  s_kind_name(root));
            goto fail;
        }
        if (s_walk_map(&ctx, root, s_root_fields, self, "") < 0)
            goto fail;
    }
    if (s_state_dir(self) < 0 || s_bus_defaults(self) < 0) {
        s_err_at(&ctx, 1, 1, "state_dir", "out of memory");
        goto fail;
    }
    const s_node_t *bus = root ? s_find_value(root, "bus") : NULL;
    const s_node_t *curve = bus ? s_find_value(bus, "curve") : NULL;
    const s_node_t *enabled = curve ? s_find_value(curve, "enabled") : NULL;
    if (s_bus_curve(&ctx, enabled && !s_is_null(enabled) ? enabled : NULL, self) < 0)
        goto fail;
    if (s_complete(&ctx, root, self) < 0 || s_finish(&ctx, root, self) < 0)
        goto fail;
    if (ctx.marks_oom) {
        s_err_at(&ctx, 1, 1, "", "out of memory");
        goto fail;
    }
    self->marks = ctx.marks;
    self->marks_count = ctx.marks_count;
    s_node_free(root);
    free(ctx.base_dir);
    return self;
fail:
    s_marks_free(ctx.marks, ctx.marks_count);
    s_node_free(root);
    free(ctx.base_dir);
    kz_config_destroy(&self);
    return NULL;
}

kz_config_t *kz_config_load(const char *path, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    FILE *file = fopen(path, "rb");
    if (!file) {
        if (errbuf)
            snprintf(errbuf, errlen, "unable to open '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(S_MAX_FILE + 1);
    if (!text) {
        fclose(file);
        if (errbuf)
            snprintf(errbuf, errlen, "%s: out of memory", path);
        return NULL;
    }
    size_t len = fread(text, 1, S_MAX_FILE + 1, file);
    bool failed = ferror(file) != 0;
    fclose(file);
    if (failed || len > S_MAX_FILE) {
        if (errbuf)
            snprintf(errbuf, errlen, failed ? "unable to read '%s'" : "%s: file too large", path);
        free(text);
        return NULL;
    }
    kz_config_t *self = kz_config_parse(path, text, len, errbuf, errlen);
    free(text);
    if (self) {
        char *dir = s_base_dir(path);
        const char *slash = strrchr(path, '/');
        if (dir && asprintf(&self->path, "%s/%s", dir, slash ? slash + 1 : path) < 0)
            self->path = NULL;
        if (self->path)
            s_normalise(self->path);
        free(dir);
        if (!self->path) {
            if (errbuf)
                snprintf(errbuf, errlen, "%s: out of memory", path);
            kz_config_destroy(&self);
        }
    }
    return self;
}

const char *kz_config_default_path(void)
{
    const char *env = getenv("KAIZEN_CONFIG");
    if (env && *env)
        return env;
    if (access("kaizen.yaml", F_OK) == 0)
        return "kaizen.yaml";
    return NULL;
}

kz_config_t *kz_config_open(const char *path, char *errbuf, size_t errlen)
{
    /* every kaizen program opens its config first: from here on what it
       creates is private (docs/security.md) */
    kz_state_umask();
    if (!path)
        path = kz_config_default_path();
    kz_config_t *cfg;
    if (path) {
        cfg = kz_config_load(path, errbuf, errlen);
    } else {
        cfg = kz_config_default();
        if (!cfg && errbuf && errlen)
            snprintf(errbuf, errlen, "out of memory building the default configuration");
    }
    /* the program's runs of tools, fixers and tests use its sandbox: */
    if (cfg && kz_sandbox_configure(&cfg->sandbox, cfg->state_dir, errbuf, errlen) != 0)
        kz_config_destroy(&cfg);
    return cfg;
}
