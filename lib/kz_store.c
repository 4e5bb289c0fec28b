/*  kz_store.c - what agents read back from PostgreSQL (lib/kz_store.h)

    One lazily made connection per agent: nothing is connected until the
    first query, and a connection that broke (the server restarted, the
    network went away) is dropped and made again on the next use, so an
    agent outlives a database outage and simply NACKs what it could not
    handle meanwhile. Every statement is parameterised (kz_db_exec).

    Waiting for a scan: the recorder stores the bus asynchronously, in
    batches, so scan.completed can reach an agent before the scan's last
    finding.batch is in the findings table. kz_store_wait_scan polls (every
    S_POLL_MS) until the scan's row says it is no longer running and the
    number of distinct fingerprints stored for it reaches what
    scan.completed announced. Distinct, because a redelivered batch is
    stored twice under a new event id only if it was re-sent with a new id;
    either way a fingerprint counts once.
*/
#include "kz_store.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kz_db.h"
#include "kz_log.h"

/* How often kz_store_wait_scan and kz_store_wait_event look */
#define S_POLL_MS 200

struct kz_store {
    const kz_config_t *cfg;
    char *app;
    PGconn *db;
};

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

kz_store_t *kz_store_new(const kz_config_t *cfg, const char *app)
{
    kz_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->app = strdup(app && *app ? app : "kaizen-agent");
    if (!self->app) {
        free(self);
        return NULL;
    }
    return self;
}

void kz_store_destroy(kz_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_store_t *self = *self_p;
    if (self->db)
        PQfinish(self->db);
    free(self->app);
    free(self);
    *self_p = NULL;
}

void kz_store_reset(kz_store_t *self)
{
    if (self && self->db) {
        PQfinish(self->db);
        self->db = NULL;
    }
}

PGconn *kz_store_db(kz_store_t *self, char *errbuf, size_t errlen)
{
    if (self->db && PQstatus(self->db) == CONNECTION_OK)
        return self->db;
    kz_store_reset(self);
    self->db = kz_db_connect(self->cfg, self->app, errbuf, errlen);
    return self->db;
}

/* Run SQL on the store's connection. A statement that failed because the
   connection broke is retried once on a fresh connection (the statements
   here only read, so running one twice is harmless). The result, or NULL
   with ERRBUF. */
static PGresult *s_query(kz_store_t *self, const char *sql, int n, const char *const *params,
                         char *errbuf, size_t errlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *db = kz_store_db(self, errbuf, errlen);
        if (!db)
            return NULL;
        PGresult *res = kz_db_exec(db, sql, n, params, errbuf, errlen);
        if (res)
            return res;
        if (PQstatus(db) == CONNECTION_OK)
            return NULL; /* the server refused the statement: not a connection problem */
        kz_warn("database connection lost (%s), reconnecting", errbuf);
        kz_store_reset(self);
    }
    return NULL;
}

/* How far the recorder got with SCAN_ID: *STORED distinct fingerprints,
   *STATUS the scans row's status ("" when there is no row yet). 0 / -1 */
static int s_scan_progress(kz_store_t *self, const char *scan_id, long *stored, char *status,
                           size_t status_len, char *errbuf, size_t errlen)
{
    static const char *const sql =
        "SELECT (SELECT count(DISTINCT fingerprint) FROM findings WHERE scan_id = $1), "
        "(SELECT status FROM scans WHERE scan_id = $1)";
    const char *params[] = {scan_id};
    PGresult *res = s_query(self, sql, 1, params, errbuf, errlen);
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 2) {
        PQclear(res);
        snprintf(errbuf, errlen, "unexpected result shape while counting the findings of scan '%s'",
                 scan_id);
        return -1;
    }
    *stored = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(status, status_len, "%s", PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

/* One look of a wait: 1 done, 0 not yet, -1 with DBERR (the database is
   away, or refused the query) */
typedef int(s_look_fn)(kz_store_t *self, void *ctx, char *dberr, size_t dlen);

/* Look (LOOK with CTX) every S_POLL_MS until done (0), the server refuses
   a query - waiting will not help - (-1, DBERR says why), TIMEOUT_MS pass
   (1; DBERR holds the last connection failure, or "" when the database
   answered), or TICK(ARG) says stop (2). While the database is away
   (a restart) it keeps trying until the deadline. */
static int s_poll(kz_store_t *self, int timeout_ms, s_look_fn *look, void *ctx,
                  bool (*tick)(void *arg), void *arg, char *dberr, size_t dlen)
{
    int64_t deadline = s_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    dberr[0] = '\0';
    for (;;) {
        int rc = look(self, ctx, dberr, dlen);
        if (rc > 0)
            return 0;
        if (rc < 0 && self->db)
            return -1;
        if (rc == 0)
            dberr[0] = '\0';
        int64_t now = s_mono_ms();
        if (now >= deadline)
            return 1;
        if (tick && !tick(arg))
            return 2;
        int64_t left = deadline - now;
        s_sleep_ms(left < S_POLL_MS ? (int)left : S_POLL_MS);
    }
}

typedef struct {
    const char *scan_id;
    long expected, stored;
    char status[64];
} s_scan_wait_t;

static int s_look_scan(kz_store_t *self, void *ctx, char *dberr, size_t dlen)
{
    s_scan_wait_t *w = ctx;
    if (s_scan_progress(self, w->scan_id, &w->stored, w->status, sizeof w->status, dberr, dlen) !=
        0)
        return -1;
    bool done_scan = *w->status && strcmp(w->status, "running") != 0;
    return done_scan && w->stored >= w->expected ? 1 : 0;
}

int kz_store_wait_scan(kz_store_t *self, const char *scan_id, long expected, int timeout_ms,
                       bool (*tick)(void *arg), void *arg, char *errbuf, size_t errlen)
{
    s_scan_wait_t w = {scan_id, expected, 0, ""};
    char dberr[512]; /* the last connection failure, while the database is away */
    int rc = s_poll(self, timeout_ms, s_look_scan, &w, tick, arg, dberr, sizeof dberr);
    if (rc == 0)
        return 0;
    double secs = (timeout_ms > 0 ? timeout_ms : 0) / 1000.0;
    if (rc < 0)
        snprintf(errbuf, errlen, "%s", dberr);
    else if (rc == 2)
        snprintf(errbuf, errlen,
                 "stopped while waiting for scan '%s' to be stored (%ld of %ld findings stored)",
                 scan_id, w.stored, expected);
    else if (*dberr)
        snprintf(errbuf, errlen, "scan '%s' not readable after %.3g s: %s", scan_id, secs, dberr);
    else if (!*w.status)
        snprintf(errbuf, errlen,
                 "scan '%s' not recorded after %.3g s (%ld of %ld findings stored): is the "
                 "orchestrator's recorder running?",
                 scan_id, secs, w.stored, expected);
    else if (strcmp(w.status, "running") == 0)
        snprintf(errbuf, errlen,
                 "scan '%s' still recorded as running after %.3g s (its scan.completed is not "
                 "stored yet; %ld of %ld findings stored)",
                 scan_id, secs, w.stored, expected);
    else
        snprintf(errbuf, errlen, "only %ld of %ld findings of scan '%s' stored after %.3g s",
                 w.stored, expected, scan_id, secs);
    return -1;
}

/* The value of column COL of row ROW, NULL for SQL NULL */
static const char *s_val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int kz_store_findings(kz_store_t *self, const char *scan_id, kz_findings_t *out, char *errbuf,
                      size_t errlen)
{
    /* one row per fingerprint (the first stored), in a stable order */
    static const char *const sql =
        "SELECT tool, rule, severity, category, file, line, col, message, fix, fingerprint, "
        "excluded FROM "
        "(SELECT DISTINCT ON (fingerprint) * FROM findings WHERE scan_id = $1 ORDER BY "
        "fingerprint, id) f ORDER BY file, line, col NULLS FIRST, tool, rule, fingerprint";
    const char *params[] = {scan_id};
    PGresult *res = s_query(self, sql, 1, params, errbuf, errlen);
    if (!res)
        return -1;
    if (PQnfields(res) != 11) {
        PQclear(res);
        snprintf(errbuf, errlen, "unexpected result shape while reading the findings of scan '%s'",
                 scan_id);
        return -1;
    }
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        kz_finding_t f;
        memset(&f, 0, sizeof f);
        /* kz_findings_add copies the strings: pointing into RES is enough */
        f.tool = (char *)PQgetvalue(res, i, 0);
        f.rule = (char *)PQgetvalue(res, i, 1);
        f.severity = (char *)PQgetvalue(res, i, 2);
        f.category = (char *)PQgetvalue(res, i, 3);
        f.file = (char *)PQgetvalue(res, i, 4);
        f.line = atoi(PQgetvalue(res, i, 5));
        const char *col = s_val(res, i, 6);
        f.col = col ? atoi(col) : 0;
        f.message = (char *)PQgetvalue(res, i, 7);
        f.fix = (char *)s_val(res, i, 8);
        snprintf(f.fingerprint, sizeof f.fingerprint, "%s", PQgetvalue(res, i, 9));
        f.excluded = (char *)s_val(res, i, 10);
        if (kz_findings_add(out, &f) != 0) {
            PQclear(res);
            snprintf(errbuf, errlen, "out of memory reading the findings of scan '%s'", scan_id);
            return -1;
        }
    }
    PQclear(res);
    return 0;
}

int kz_store_plan(kz_store_t *self, const char *plan_id, char **json, char *target,
                  size_t target_len, char *errbuf, size_t errlen)
{
    static const char *const sql = "SELECT implementation_plan::text, COALESCE(target, '') FROM "
                                   "improvement_suggestions WHERE plan_id = $1 AND "
                                   "implementation_plan IS NOT NULL";
    const char *params[] = {plan_id};
    *json = NULL;
    target[0] = '\0';
    PGresult *res = s_query(self, sql, 1, params, errbuf, errlen);
    if (!res)
        return -1;
    if (PQnfields(res) != 2) {
        PQclear(res);
        snprintf(errbuf, errlen, "unexpected result shape while reading plan '%s'", plan_id);
        return -1;
    }
    int found = PQntuples(res) > 0;
    if (found) {
        *json = strdup(PQgetvalue(res, 0, 0));
        snprintf(target, target_len, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    if (found && !*json) {
        snprintf(errbuf, errlen, "out of memory reading plan '%s'", plan_id);
        return -1;
    }
    return found;
}

int kz_store_scan_status(kz_store_t *self, const char *scan_id, char *status, size_t status_len,
                         char *errbuf, size_t errlen)
{
    long stored = 0;
    return s_scan_progress(self, scan_id, &stored, status, status_len, errbuf, errlen);
}

int kz_store_scan_info(kz_store_t *self, const char *scan_id, char *commit, size_t commit_len,
                       char *target, size_t target_len, char *errbuf, size_t errlen)
{
    /* scans.commit comes from scan.started; scan.completed carries it too
       (and is the only source when scan.started was lost) */
    static const char *const sql =
        "SELECT COALESCE((SELECT commit FROM scans WHERE scan_id = $1), (SELECT body->>'commit' "
        "FROM events WHERE type = 'scan.completed' AND body->>'scan_id' = $1 ORDER BY seq DESC "
        "LIMIT 1), ''), COALESCE((SELECT target FROM scans WHERE scan_id = $1), (SELECT target "
        "FROM events WHERE type IN ('scan.completed', 'scan.started') AND body->>'scan_id' = $1 "
        "AND target IS NOT NULL ORDER BY seq DESC LIMIT 1), '')";
    const char *params[] = {scan_id};
    if (commit_len)
        commit[0] = '\0';
    if (target_len)
        target[0] = '\0';
    PGresult *res = s_query(self, sql, 1, params, errbuf, errlen);
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 2) {
        PQclear(res);
        snprintf(errbuf, errlen, "unexpected result shape while reading scan '%s'", scan_id);
        return -1;
    }
    if (commit_len)
        snprintf(commit, commit_len, "%s", PQgetvalue(res, 0, 0));
    if (target_len)
        snprintf(target, target_len, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

static int s_look_event(kz_store_t *self, void *ctx, char *dberr, size_t dlen)
{
    static const char *const sql = "SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)";
    const char *params[] = {ctx};
    PGresult *res = s_query(self, sql, 1, params, dberr, dlen);
    if (!res)
        return -1;
    bool stored = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return stored ? 1 : 0;
}

int kz_store_wait_event(kz_store_t *self, const char *event_id, int timeout_ms,
                        bool (*tick)(void *arg), void *arg, char *errbuf, size_t errlen)
{
    char dberr[512];
    int rc =
        s_poll(self, timeout_ms, s_look_event, (void *)event_id, tick, arg, dberr, sizeof dberr);
    if (rc == 0)
        return 0;
    double secs = (timeout_ms > 0 ? timeout_ms : 0) / 1000.0;
    if (rc < 0)
        snprintf(errbuf, errlen, "%s", dberr);
    else if (rc == 2)
        snprintf(errbuf, errlen, "stopped while waiting for message '%s' to be stored", event_id);
    else if (*dberr)
        snprintf(errbuf, errlen, "message '%s' not readable after %.3g s: %s", event_id, secs,
                 dberr);
    else
        snprintf(errbuf, errlen,
                 "message '%s' not recorded after %.3g s: is the orchestrator's recorder running?",
                 event_id, secs);
    return -1;
}

/* The causes of plan.failed after which a finding is not planned again
   at the same base commit (kz_store_cause_settles) */
static const char *const s_settling[] = {"nothing_to_do", "suite", "fixer"};
#define S_NSETTLING (sizeof s_settling / sizeof s_settling[0])

bool kz_store_cause_settles(const char *cause)
{
    for (size_t i = 0; cause && i < S_NSETTLING; i++)
        if (strcmp(cause, s_settling[i]) == 0)
            return true;
    return false;
}

bool kz_store_is_open(const char *status)
{
    static const char *const open[] = {"ready",     "awaiting_approval", "approved",
                                       "executing", "executed",          "validating"};
    for (size_t i = 0; status && i < sizeof open / sizeof open[0]; i++)
        if (strcmp(status, open[i]) == 0)
            return true;
    return false;
}

int kz_store_covered(kz_store_t *self, const char *target, const char *commit,
                     const char *const *fps, size_t n, bool *covered, char *errbuf, size_t errlen)
{
    /* the positions (1-based) of the batch's fingerprints that some
       covering plan lists (the GIN index on implementation_plan->'findings'
       serves ?) */
    static const char *const sql =
        "SELECT x.i FROM unnest($3::text[]) WITH ORDINALITY AS x(fp, i) WHERE EXISTS (SELECT 1 "
        "FROM improvement_suggestions p WHERE p.target = $1 AND p.plan_id IS NOT NULL AND "
        "jsonb_typeof(p.implementation_plan->'findings') = 'array' AND "
        "p.implementation_plan->'findings' ? x.fp AND (p.status IN (" KZ_STORE_OPEN_STATES
        ", 'accepted') OR (COALESCE(p.implementation_plan->>'base_commit', '') = $2 AND "
        "(p.status IN ('proposed', 'rejected') OR (p.status = 'failed' AND p.cause = "
        "ANY($4::text[]))))))";
    for (size_t i = 0; i < n; i++)
        covered[i] = false;
    if (n == 0)
        return 0;
    char *fp_arr = kz_db_text_array(fps, n);
    char *cause_arr = kz_db_text_array(s_settling, S_NSETTLING);
    if (!fp_arr || !cause_arr) {
        free(fp_arr);
        free(cause_arr);
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    const char *params[] = {target, commit ? commit : "", fp_arr, cause_arr};
    PGresult *res = s_query(self, sql, 4, params, errbuf, errlen);
    free(fp_arr);
    free(cause_arr);
    int rc = -1;
    if (!res)
        goto done;
    if (PQnfields(res) != 1) {
        snprintf(errbuf, errlen, "unexpected result shape while reading the covered findings");
        goto done;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        long i = strtol(PQgetvalue(res, r, 0), NULL, 10);
        if (i >= 1 && (size_t)i <= n)
            covered[i - 1] = true;
    }
    rc = 0;
done:
    PQclear(res);
    return rc;
}
