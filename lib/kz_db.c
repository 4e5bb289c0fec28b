/*  kz_db.c - PostgreSQL connections and schema migrations (libpq)

    The one module that knows how to reach the database (lib/kz_db.h).
    Connections are made with PQconnectdbParams from keyword/value arrays:
    the DSN goes first as an expanded "dbname", so the keywords after it
    (application_name, connect_timeout, options) are ours whatever the DSN
    says - except a connect_timeout the DSN sets itself, which is kept, and
    the DSN's own "options", which are kept in front of our TimeZone.

    Migrations run each in its own transaction, serialised between
    processes by a transaction-level advisory lock, and recorded with a
    checksum of their text so a migration edited after it was applied is
    noticed (a warning: the database is not changed behind the user's back).
*/
#include "kz_db.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_log.h"

/* The advisory lock key of migrations: "kaizen-m" as a 64-bit integer */
#define S_MIGRATE_LOCK "8386671035316367725"
/* A migration file larger than this is refused */
#define S_MIGRATION_MAX (16 * 1024 * 1024)
/* At most this many migration files in a directory */
#define S_MIGRATIONS_MAX 10000

const char *kz_db_dsn(const kz_config_t *cfg)
{
    const char *url = getenv("KAIZEN_DATABASE_URL");
    if (url && *url)
        return url;
    if (cfg && cfg->database.dsn && *cfg->database.dsn)
        return cfg->database.dsn;
    return NULL;
}

/* Where the DSN in use comes from, for messages */
static const char *s_dsn_source(void)
{
    const char *url = getenv("KAIZEN_DATABASE_URL");
    return url && *url ? "$KAIZEN_DATABASE_URL" : "database.dsn";
}

bool kz_db_embedded(const kz_config_t *cfg)
{
    return kz_db_dsn(cfg) == NULL;
}

/* Append TEXT[0..N) to BUF (LEN bytes, *AT used), truncating quietly */
static void s_put(char *buf, size_t len, size_t *at, const char *text, size_t n)
{
    if (*at + 1 >= len)
        return;
    size_t room = len - 1 - *at;
    if (n > room)
        n = room;
    memcpy(buf + *at, text, n);
    *at += n;
    buf[*at] = '\0';
}

static bool s_is_uri(const char *dsn)
{
    return strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
}

/* A URI with the password of its user info and any password=... query
   parameter replaced by "***" */
static void s_redact_uri(const char *dsn, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    const char *p = strstr(dsn, "://") + 3;
    s_put(buf, len, &at, dsn, (size_t)(p - dsn));
    /* the user info ends at an '@' before the first '/' (libpq's rule: a
       '?' or '#' in a password is fine for libpq, so it must be here);
       take the last one (passwords must percent-encode '@', but be
       generous). A password with an unencoded '/' makes libpq refuse the
       URI, yet it is described in the message: then an '@' before the
       first '?' ends it. */
    size_t auth = strcspn(p, "/");
    const char *at_sign = NULL;
    for (size_t i = 0; i < auth; i++)
        if (p[i] == '@')
            at_sign = p + i;
    if (!at_sign) {
        size_t upto = strcspn(p, "?");
        for (size_t i = 0; i < upto; i++)
            if (p[i] == '@')
                at_sign = p + i;
    }
    if (at_sign) {
        const char *colon = memchr(p, ':', (size_t)(at_sign - p));
        if (colon) {
            s_put(buf, len, &at, p, (size_t)(colon - p) + 1);
            s_put(buf, len, &at, "***", 3);
            p = at_sign;
        }
    }
    const char *q = strchr(p, '?');
    if (!q) {
        s_put(buf, len, &at, p, strlen(p));
        return;
    }
    s_put(buf, len, &at, p, (size_t)(q - p) + 1);
    q++;
    while (*q) {
        size_t n = strcspn(q, "&");
        if (n >= 9 && strncmp(q, "password=", 9) == 0) {
            s_put(buf, len, &at, "password=***", 12);
        } else {
            s_put(buf, len, &at, q, n);
        }
        q += n;
        if (*q == '&') {
            s_put(buf, len, &at, "&", 1);
            q++;
        }
    }
}

/* A keyword/value connection string with the value of every "password"
   keyword replaced by "***" (values may be quoted with '...' and \' ) */
static void s_redact_kv(const char *dsn, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    const char *p = dsn;
    while (*p) {
        /* whitespace between pairs */
        size_t ws = strspn(p, " \t\n\r\f\v");
        s_put(buf, len, &at, p, ws);
        p += ws;
        if (!*p)
            break;
        /* the keyword, up to '=' or whitespace */
        size_t kw = strcspn(p, "= \t\n\r\f\v");
        bool secret = kw == 8 && strncmp(p, "password", 8) == 0;
        s_put(buf, len, &at, p, kw);
        p += kw;
        ws = strspn(p, " \t\n\r\f\v");
        s_put(buf, len, &at, p, ws);
        p += ws;
        if (*p != '=')
            continue; /* malformed: libpq will say so; copy the rest as it is */
        s_put(buf, len, &at, "=", 1);
        p++;
        ws = strspn(p, " \t\n\r\f\v");
        s_put(buf, len, &at, p, ws);
        p += ws;
        /* the value: quoted or up to whitespace */
        const char *v = p;
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
            if (*p == '\'')
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
        }
        if (secret)
            s_put(buf, len, &at, "***", 3);
        else
            s_put(buf, len, &at, v, (size_t)(p - v));
    }
}

void kz_db_describe(const kz_config_t *cfg, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    const char *dsn = kz_db_dsn(cfg);
    if (!dsn) {
        snprintf(buf, len, "embedded cluster in %s/db", cfg->state_dir);
        return;
    }
    if (s_is_uri(dsn))
        s_redact_uri(dsn, buf, len);
    else
        s_redact_kv(dsn, buf, len);
}

/* libpq's multi-line messages on one line: "\n\t" and newlines become
   spaces and "; ", trailing whitespace goes */
static void s_one_line(const char *text, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    const char *p = text ? text : "";
    while (*p) {
        if (*p == '\n') {
            size_t ws = strspn(p, " \t\n\r");
            if (!p[ws])
                break;
            s_put(buf, len, &at, "; ", 2);
            p += ws;
            continue;
        }
        if (*p == '\r' || *p == '\t') {
            s_put(buf, len, &at, " ", 1);
        } else {
            s_put(buf, len, &at, p, 1);
        }
        p++;
    }
    while (at > 0 && isspace((unsigned char)buf[at - 1]))
        buf[--at] = '\0';
}

/* Every copy of the secret-bearing DSN in MSG replaced by its redacted
   form WHERE (libpq quotes a malformed URI whole) */
static void s_hide(char *msg, size_t len, const char *dsn, const char *where)
{
    size_t dlen = strlen(dsn);
    if (dlen == 0 || strcmp(dsn, where) == 0)
        return;
    char out[1024];
    size_t at = 0;
    out[0] = '\0';
    for (const char *p = msg; *p;) {
        if (strncmp(p, dsn, dlen) == 0) {
            s_put(out, sizeof out, &at, where, strlen(where));
            p += dlen;
        } else {
            s_put(out, sizeof out, &at, p, 1);
            p++;
        }
    }
    snprintf(msg, len, "%s", out);
    /* libpq quotes pieces of a DSN it cannot parse, a bad percent-encoded
       password included: show a quoted piece only when the redacted DSN
       holds it too */
    at = 0;
    out[0] = '\0';
    for (const char *p = msg; *p;) {
        const char *close = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (!close) {
            s_put(out, sizeof out, &at, p, 1);
            p++;
            continue;
        }
        size_t n = (size_t)(close - p - 1);
        bool shown = false;
        for (const char *w = where; *w && !shown; w++)
            shown = strncmp(w, p + 1, n) == 0;
        if (shown || n == 0)
            s_put(out, sizeof out, &at, p, n + 2);
        else
            s_put(out, sizeof out, &at, "\"***\"", 5);
        p = close + 1;
    }
    snprintf(msg, len, "%s", out);
}

/* Server notices (e.g. "relation ... already exists, skipping") go to the
   debug log, not to the terminal */
static void s_notice(void *arg, const char *message)
{
    (void)arg;
    char line[512];
    s_one_line(message, line, sizeof line);
    kz_debug("postgres: %s", line);
}

PGconn *kz_db_connect(const kz_config_t *cfg, const char *app, char *errbuf, size_t errlen)
{
    char where[1024];
    kz_db_describe(cfg, where, sizeof where);
    const char *dsn = kz_db_dsn(cfg);

    /* libpq takes connect_timeout in whole seconds (and treats 1 as 2) */
    int timeout_ms = cfg->database.connect_timeout_ms > 0 ? cfg->database.connect_timeout_ms : 5000;
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%d", (timeout_ms + 999) / 1000);

    const char *keys[10];
    const char *vals[10];
    int n = 0;
    char host[PATH_MAX + 16];
    char options[1024] = "-c TimeZone=UTC";
    bool dsn_timeout = false;
    if (dsn && !s_is_uri(dsn) && !strchr(dsn, '=')) {
        /* a bare database name: libpq's expand_dbname takes it as one */
        keys[n] = "dbname";
        vals[n++] = dsn;
    } else if (dsn) {
        /* parse it first: a malformed DSN gets its own message, and its
           own options and connect_timeout are kept */
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
        if (!opts) {
            char msg[1024];
            s_one_line(perr ? perr : "out of memory", msg, sizeof msg);
            PQfreemem(perr);
            s_hide(msg, sizeof msg, dsn, where);
            snprintf(errbuf, errlen, "malformed database DSN (%s): %s; check %s", where, msg,
                     s_dsn_source());
            return NULL;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val || !*o->val)
                continue;
            if (strcmp(o->keyword, "options") == 0)
                snprintf(options, sizeof options, "%s -c TimeZone=UTC", o->val);
            else if (strcmp(o->keyword, "connect_timeout") == 0)
                dsn_timeout = true;
        }
        PQconninfoFree(opts);
        keys[n] = "dbname";
        vals[n++] = dsn;
    } else {
        /* an absolute path: libpq takes anything else for a host name */
        char cwd[PATH_MAX] = "";
        if (cfg->state_dir[0] != '/' && !getcwd(cwd, sizeof cwd)) {
            snprintf(errbuf, errlen, "unable to resolve state directory '%s': %s", cfg->state_dir,
                     strerror(errno));
            return NULL;
        }
        if (snprintf(host, sizeof host, "%s%s%s/db/run", cwd, *cwd ? "/" : "", cfg->state_dir) >=
            (int)sizeof host) {
            snprintf(errbuf, errlen, "state directory path too long: %s", cfg->state_dir);
            return NULL;
        }
        keys[n] = "host";
        vals[n++] = host;
        keys[n] = "port"; /* the cluster's, whatever $PGPORT says */
        vals[n++] = "5432";
        keys[n] = "user";
        vals[n++] = "kaizen";
        keys[n] = "dbname";
        vals[n++] = "kaizen";
    }
    keys[n] = "application_name";
    vals[n++] = app && *app ? app : "kaizen";
    if (!dsn_timeout) {
        keys[n] = "connect_timeout";
        vals[n++] = timeout;
    }
    keys[n] = "options";
    vals[n++] = options;
    keys[n] = NULL;
    vals[n] = NULL;

    PGconn *db = PQconnectdbParams(keys, vals, dsn ? 1 : 0);
    if (!db) {
        snprintf(errbuf, errlen, "database unreachable (%s): out of memory", where);
        return NULL;
    }
    if (PQstatus(db) != CONNECTION_OK) {
        char msg[1024];
        s_one_line(PQerrorMessage(db), msg, sizeof msg);
        if (dsn)
            s_hide(msg, sizeof msg, dsn, where);
        PQfinish(db);
        if (dsn)
            snprintf(errbuf, errlen, "database unreachable (%s): %s; check %s", where, msg,
                     s_dsn_source());
        else
            snprintf(errbuf, errlen,
                     "database unreachable (%s): %s; start it with 'kaizen up' or 'kaizen db "
                     "start'",
                     where, msg);
        return NULL;
    }
    PQsetNoticeProcessor(db, s_notice, NULL);
    /* libpq sends $PGTZ as a startup setting that the server applies after
       our options, so it would win over TimeZone=UTC: set it again */
    const char *tz = PQparameterStatus(db, "TimeZone");
    if (!tz || strcmp(tz, "UTC") != 0) {
        PGresult *res = PQexec(db, "SET TIME ZONE 'UTC'");
        bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) {
            char msg[1024];
            s_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(db), msg, sizeof msg);
            snprintf(errbuf, errlen, "unable to set the session time zone to UTC (%s): %s", where,
                     msg);
        }
        PQclear(res);
        if (!ok) {
            PQfinish(db);
            return NULL;
        }
    }
    return db;
}

/* Line of the 1-based character POSITION in SQL (PostgreSQL counts
   characters, not bytes) */
static int s_line_of(const char *sql, long position)
{
    int line = 1;
    long chars = 0;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        if ((*p & 0xc0) != 0x80)
            chars++;
        if (chars >= position)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* ERRBUF from a failed RES (or the connection when RES is NULL): the
   primary message, the detail and hint, and "line N" of SQL (NULL: the
   character position) when the server gives a position */
static void s_result_error(PGconn *db, const PGresult *res, const char *sql, char *errbuf,
                           size_t errlen)
{
    char primary[512], detail[512] = "", hint[512] = "", where[64] = "";
    const char *text = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!text)
        text = res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(db);
    if (!text || !*text)
        text = "unknown error (connection lost?)";
    s_one_line(text, primary, sizeof primary);
    if (res) {
        const char *d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        const char *h = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
        if (d) {
            char line[480];
            s_one_line(d, line, sizeof line);
            snprintf(detail, sizeof detail, " (%s)", line);
        }
        if (h) {
            char line[480];
            s_one_line(h, line, sizeof line);
            snprintf(hint, sizeof hint, " (hint: %s)", line);
        }
        if (pos) {
            long p = strtol(pos, NULL, 10);
            if (p > 0 && sql)
                snprintf(where, sizeof where, "line %d: ", s_line_of(sql, p));
            else if (p > 0)
                snprintf(where, sizeof where, "at character %ld: ", p);
        }
    }
    snprintf(errbuf, errlen, "%s%s%s%s", where, primary, detail, hint);
}

char *kz_db_text_array(const char *const *items, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(items[i]) + 3;
    char *out = malloc(len);
    if (!out)
        return NULL;
    char *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        /* quoted, with " and \ escaped: any text is one element */
        *p++ = '"';
        for (const char *s = items[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

PGresult *kz_db_exec(PGconn *db, const char *sql, int n, const char *const *params, char *errbuf,
                     size_t errlen)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
        return res;
    char msg[1024];
    s_result_error(db, res, NULL, msg, sizeof msg);
    snprintf(errbuf, errlen, "%s", msg);
    PQclear(res);
    return NULL;
}

/* Run a statement whose result is not needed. 0 / -1 with ERRBUF */
static int s_exec(PGconn *db, const char *sql, int n, const char *const *params, char *errbuf,
                  size_t errlen)
{
    PGresult *res = kz_db_exec(db, sql, n, params, errbuf, errlen);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

/* Leave a failed transaction; the error already in ERRBUF stays */
static void s_rollback(PGconn *db)
{
    PGresult *res = PQexec(db, "ROLLBACK");
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
        kz_debug("rollback failed: %s", PQerrorMessage(db));
    PQclear(res);
}

/* FNV-1a 64 of TEXT without its trailing newlines (scripts/embed-sql
   ends every line with one, the file may not), as 16 hex digits */
static void s_checksum(const char *text, char out[17])
{
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)text[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016" PRIx64, h);
}

/* A migration read from a directory (name and sql malloc'd) */
typedef struct {
    int version;
    char *name;
    char *sql;
} s_file_t;

static void s_files_free(s_file_t *files, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(files[i].name);
        free(files[i].sql);
    }
    free(files);
}

static int s_cmp_file(const void *a, const void *b)
{
    const s_file_t *x = a, *y = b;
    return x->version < y->version ? -1 : x->version > y->version;
}

/* The version of a migration file NAME ("0002_more.sql" -> 2), -1 when
   NAME is not NNNN_what.sql */
static int s_version_of(const char *name)
{
    size_t digits = strspn(name, "0123456789");
    size_t n = strlen(name);
    if (digits == 0 || digits > 9 || name[digits] != '_' || n < digits + 5 ||
        strcmp(name + n - 4, ".sql") != 0)
        return -1;
    return (int)strtol(name, NULL, 10);
}

/* Read PATH (a regular file of at most S_MIGRATION_MAX bytes, no NUL)
   into a malloc'd string. NULL with ERRBUF */
static char *s_read_file(const char *path, char *errbuf, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errbuf, errlen, "unable to open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > S_MIGRATION_MAX) {
        snprintf(errbuf, errlen, "'%s' is not a regular file of at most %d bytes", path,
                 S_MIGRATION_MAX);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    char *text = malloc(size + 1);
    if (!text) {
        snprintf(errbuf, errlen, "out of memory reading '%s'", path);
        close(fd);
        return NULL;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, text + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(errbuf, errlen, "unable to read '%s': %s", path,
                     r < 0 ? strerror(errno) : "file shrank while reading");
            free(text);
            close(fd);
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    text[size] = '\0';
    if (memchr(text, '\0', size)) {
        snprintf(errbuf, errlen, "'%s' contains a NUL byte", path);
        free(text);
        return NULL;
    }
    return text;
}

/* The migrations DIR/NNNN_*.sql sorted by version into *FILES. 0 / -1
   with ERRBUF (a .sql file not named NNNN_what.sql, two files with one
   version, an unreadable file) */
static int s_load_dir(const char *dir, s_file_t **files_p, size_t *count_p, char *errbuf,
                      size_t errlen)
{
    *files_p = NULL;
    *count_p = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(errbuf, errlen, "unable to open migrations directory '%s': %s", dir,
                 strerror(errno));
        return -1;
    }
    s_file_t *files = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 4 || strcmp(e->d_name + n - 4, ".sql") != 0)
            continue;
        int version = s_version_of(e->d_name);
        if (version < 0) {
            snprintf(errbuf, errlen, "%s/%s: a migration's name must be NNNN_what.sql", dir,
                     e->d_name);
            rc = -1;
            break;
        }
        if (count == S_MIGRATIONS_MAX) {
            snprintf(errbuf, errlen, "%s: more than %d migrations", dir, S_MIGRATIONS_MAX);
            rc = -1;
            break;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            s_file_t *grown = realloc(files, ncap * sizeof *files);
            if (!grown) {
                snprintf(errbuf, errlen, "out of memory");
                rc = -1;
                break;
            }
            files = grown;
            cap = ncap;
        }
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            snprintf(errbuf, errlen, "%s/%s: path too long", dir, e->d_name);
            rc = -1;
            break;
        }
        files[count].version = version;
        files[count].name = strdup(e->d_name);
        files[count].sql = s_read_file(path, errbuf, errlen);
        if (!files[count].name || !files[count].sql) {
            if (!files[count].name)
                snprintf(errbuf, errlen, "out of memory");
            free(files[count].name);
            free(files[count].sql);
            rc = -1;
            break;
        }
        count++;
    }
    closedir(d);
    if (rc == 0 && count > 1) {
        qsort(files, count, sizeof *files, s_cmp_file);
        for (size_t i = 1; i < count; i++) {
            if (files[i].version == files[i - 1].version) {
                snprintf(errbuf, errlen, "%s: '%s' and '%s' have the same version %d", dir,
                         files[i - 1].name, files[i].name, files[i].version);
                rc = -1;
                break;
            }
        }
    }
    if (rc != 0) {
        s_files_free(files, count);
        return -1;
    }
    *files_p = files;
    *count_p = count;
    return 0;
}

/* Create schema_migrations when it does not exist (under the migration
   lock, since concurrent CREATE TABLE IF NOT EXISTS can collide) */
static int s_ensure_table(PGconn *db, char *errbuf, size_t errlen)
{
    char msg[1024];
    if (s_exec(db, "BEGIN", 0, NULL, msg, sizeof msg) != 0)
        goto fail;
    if (s_exec(db, "SELECT pg_advisory_xact_lock(" S_MIGRATE_LOCK ")", 0, NULL, msg, sizeof msg) !=
            0 ||
        s_exec(db,
               "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version integer PRIMARY KEY,"
               " name text NOT NULL,"
               " checksum text,"
               " applied_at timestamptz NOT NULL DEFAULT now())",
               0, NULL, msg, sizeof msg) != 0 ||
        s_exec(db, "COMMIT", 0, NULL, msg, sizeof msg) != 0) {
        s_rollback(db);
        goto fail;
    }
    return 0;
fail:
    snprintf(errbuf, errlen, "unable to create schema_migrations: %s", msg);
    return -1;
}

/* Apply one migration in its own transaction, unless another process
   applied it meanwhile. 1 applied, 0 already there, -1 with ERRBUF */
static int s_apply(PGconn *db, int version, const char *name, const char *sql, const char *sum,
                   char *errbuf, size_t errlen)
{
    char msg[1536];
    char vtext[16];
    snprintf(vtext, sizeof vtext, "%d", version);
    const char *vparam[1] = {vtext};
    if (s_exec(db, "BEGIN", 0, NULL, msg, sizeof msg) != 0) {
        snprintf(errbuf, errlen, "%s: %s", name, msg);
        return -1;
    }
    if (s_exec(db, "SELECT pg_advisory_xact_lock(" S_MIGRATE_LOCK ")", 0, NULL, msg, sizeof msg) !=
        0) {
        s_rollback(db);
        snprintf(errbuf, errlen, "%s: unable to take the migration lock: %s", name, msg);
        return -1;
    }
    PGresult *res = kz_db_exec(db, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1,
                               vparam, msg, sizeof msg);
    if (!res) {
        s_rollback(db);
        snprintf(errbuf, errlen, "%s: %s", name, msg);
        return -1;
    }
    bool done = PQntuples(res) > 0;
    PQclear(res);
    if (done) {
        s_rollback(db);
        return 0;
    }

    /* several statements: the simple query protocol (our own file) */
    res = PQexec(db, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (!res || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) {
        s_result_error(db, res, sql, msg, sizeof msg);
        PQclear(res);
        s_rollback(db);
        snprintf(errbuf, errlen, "migration %s failed, nothing of it was applied: %s", name, msg);
        return -1;
    }
    PQclear(res);
    if (PQtransactionStatus(db) != PQTRANS_INTRANS) {
        s_rollback(db);
        snprintf(errbuf, errlen,
                 "migration %s ended the transaction it runs in (a migration file must not "
                 "hold BEGIN, COMMIT or ROLLBACK): what it did up to there may be committed, "
                 "but it is not recorded as applied",
                 name);
        return -1;
    }
    const char *params[3] = {vtext, name, sum};
    if (s_exec(db,
               "INSERT INTO schema_migrations (version, name, checksum)"
               " VALUES ($1::integer, $2, $3)",
               3, params, msg, sizeof msg) != 0 ||
        s_exec(db, "COMMIT", 0, NULL, msg, sizeof msg) != 0) {
        s_rollback(db);
        snprintf(errbuf, errlen, "migration %s failed, nothing of it was applied: %s", name, msg);
        return -1;
    }
    return 1;
}

int kz_db_migrate(PGconn *db, const char *dir, int *applied, char *errbuf, size_t errlen)
{
    if (applied)
        *applied = 0;
    s_file_t *files = NULL;
    size_t count = kz_migrations_count;
    if (dir && s_load_dir(dir, &files, &count, errbuf, errlen) != 0)
        return -1;
    if (s_ensure_table(db, errbuf, errlen) != 0) {
        s_files_free(files, dir ? count : 0);
        return -1;
    }

    /* what is applied already, and with which checksum */
    char msg[1024];
    PGresult *done = kz_db_exec(db, "SELECT version, name, checksum FROM schema_migrations", 0,
                                NULL, msg, sizeof msg);
    if (!done) {
        snprintf(errbuf, errlen, "unable to read schema_migrations: %s", msg);
        s_files_free(files, dir ? count : 0);
        return -1;
    }
    int rows = PQntuples(done);
    int newest_known = 0;
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        int version = dir ? files[i].version : kz_migrations[i].version;
        const char *name = dir ? files[i].name : kz_migrations[i].name;
        const char *sql = dir ? files[i].sql : kz_migrations[i].sql;
        char sum[17];
        s_checksum(sql, sum);
        newest_known = version;
        int row = -1;
        for (int r = 0; r < rows && row < 0; r++)
            if (strtol(PQgetvalue(done, r, 0), NULL, 10) == version)
                row = r;
        if (row >= 0) {
            if (!PQgetisnull(done, row, 2) && strcmp(PQgetvalue(done, row, 2), sum) != 0)
                kz_warn("migration %s was changed after it was applied (checksum %s, applied "
                        "%s): the database keeps the applied version; add a new migration "
                        "instead of editing an applied one",
                        name, sum, PQgetvalue(done, row, 2));
            continue;
        }
        int a = s_apply(db, version, name, sql, sum, errbuf, errlen);
        if (a < 0) {
            rc = -1;
            break;
        }
        if (a > 0) {
            kz_info("applied migration %s", name);
            if (applied)
                (*applied)++;
        }
    }
    if (rc == 0) {
        for (int r = 0; r < rows; r++) {
            long v = strtol(PQgetvalue(done, r, 0), NULL, 10);
            if (v > newest_known) {
                kz_warn("the database has migration %ld (%s), newer than any this kaizen knows "
                        "(%d): is an older kaizen running against a newer schema?",
                        v, PQgetvalue(done, r, 1), newest_known);
                break;
            }
        }
    }
    PQclear(done);
    s_files_free(files, dir ? count : 0);
    return rc;
}

int kz_db_schema_version(PGconn *db, char *errbuf, size_t errlen)
{
    char msg[1024];
    PGresult *res = kz_db_exec(db, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL,
                               msg, sizeof msg);
    if (!res) {
        snprintf(errbuf, errlen, "unable to read the schema version: %s", msg);
        return -1;
    }
    bool exists = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!exists)
        return 0;
    res = kz_db_exec(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, msg,
                     sizeof msg);
    if (!res) {
        snprintf(errbuf, errlen, "unable to read the schema version: %s", msg);
        return -1;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        PQclear(res);
        snprintf(errbuf, errlen, "unable to read the schema version: unexpected result shape");
        return -1;
    }
    long v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (v < 0 || v > INT_MAX) {
        snprintf(errbuf, errlen, "unable to read the schema version: %ld is out of range", v);
        return -1;
    }
    return (int)v;
}
