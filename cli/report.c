/*  report.c - `kaizen report`: the seed's improvement report, and more

    The seed's generate_improvement_report - its header lines and "Recent
    Activity (Last 24 Hours):" from its own query, run unchanged for the
    default window - followed by what an operator asks next: activity per
    layer, agent and status, failures (agent.failed events and log rows
    with status failed/error), restarts (agent.exited events), scans,
    findings and plans, and the health of the database and the spool,
    live from kaizen.status when the orchestrator answers.

    The data is gathered once into a JSON document (jansson) and rendered
    from it as text, as that document (--json), or as a self-contained
    HTML page with an inline SVG bar chart (--html FILE). Every query is
    a constant string with parameters ($1 the window as an interval).
*/
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_recipe.h"
#include "kz_db.h"
#include "kz_msg.h"
#include "kz_state.h"

#define S_APP          "kaizen-cli"
#define S_RULE         "============================================================"
#define S_TITLE        "AUTONOMOUS IMPROVEMENT SYSTEM - STATUS REPORT"
#define S_DAY          86400LL
#define S_MAX_SINCE    (S_DAY * 366 * 100)
#define S_STATUS_MS    2000
#define S_HOURLY_MAX_S (S_DAY * 7)

/* The seed's query, exactly, for the default window */
static const char s_seed_query[] =
    "SELECT agent_name, action, status, created_at FROM autonomous_agent_logs WHERE created_at > "
    "NOW() - INTERVAL '24 hours' ORDER BY created_at DESC LIMIT 20";
/* The same for any other window */
static const char s_recent_query[] =
    "SELECT agent_name, action, status, created_at FROM autonomous_agent_logs WHERE created_at > "
    "NOW() - $1::interval ORDER BY created_at DESC LIMIT 20";

static const char s_usage[] =
    "usage: kaizen [-c FILE] report [--since DURATION] [--json] [--html FILE]\n"
    "\n"
    "Print the improvement report from the database: the recent activity (the\n"
    "last 20 entries of autonomous_agent_logs in the window), activity per\n"
    "layer, agent and status, failures, restarts, scans, findings and plans,\n"
    "and the health of the database, the spool and the orchestrator.\n"
    "\n"
    "  --since DURATION     the window: 30m, 24h (default), 7d, 2w\n"
    "  --json               print the report as one JSON document\n"
    "  --html FILE          also write it as a self-contained HTML page with a\n"
    "                       chart of the activity over time\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 ok, 1 the database is unreachable or has no kaizen schema,\n"
    "a query failed, FILE cannot be written, or a bad config, 2 usage\n";

/* ------------------------------------------------------------- the window */

/* "90s" "30m" "24h" "7d" "2w" -> seconds. 0 / -1 */
static int s_parse_since(const char *text, long long *seconds)
{
    char *end = NULL;
    errno = 0;
    if (!text || *text < '0' || *text > '9')
        return -1;
    long long n = strtoll(text, &end, 10);
    if (errno || !end || n <= 0)
        return -1;
    long long unit;
    if (strcmp(end, "s") == 0)
        unit = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        unit = 60;
    else if (strcmp(end, "h") == 0)
        unit = 3600;
    else if (strcmp(end, "d") == 0)
        unit = S_DAY;
    else if (strcmp(end, "w") == 0)
        unit = S_DAY * 7;
    else
        return -1;
    if (n > S_MAX_SINCE / unit)
        return -1;
    *seconds = n * unit;
    return 0;
}

/* "24 Hours", "30 Minutes", "7 Days" (the seed's capitalisation) */
static void s_since_words(long long s, char *buf, size_t len)
{
    const char *unit;
    long long n;
    if (s % 3600 == 0 && s <= 3 * S_DAY) {
        n = s / 3600;
        unit = "Hour";
    } else if (s % S_DAY == 0) {
        n = s / S_DAY;
        unit = "Day";
    } else if (s % 3600 == 0) {
        n = s / 3600;
        unit = "Hour";
    } else if (s % 60 == 0) {
        n = s / 60;
        unit = "Minute";
    } else {
        n = s;
        unit = "Second";
    }
    snprintf(buf, len, "%lld %s%s", n, unit, n == 1 ? "" : "s");
}

/* ------------------------------------------------------------ the queries */

typedef struct {
    PGconn *db;
    char interval[64]; /* "$1": "86400 seconds" */
    char err[2048];
} s_q_t;

/* Run a constant SQL with the window as $1 (when NPARAMS >= 1) and
   EXTRA as $2.. ; NULL with Q->err */
static PGresult *s_query(s_q_t *q, const char *sql, int nparams, const char *p2, const char *p3)
{
    const char *params[3] = {q->interval, p2, p3};
    char err[1536];
    PGresult *res = kz_db_exec(q->db, sql, nparams, params, err, sizeof err);
    if (!res)
        snprintf(q->err, sizeof q->err, "query failed: %s", err);
    return res;
}

static json_t *s_cell(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    return json_string(PQgetvalue(res, row, col));
}

static json_int_t s_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    return (json_int_t)strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Rows of RES as objects with the keys NAMES (one per column) */
static json_t *s_rows(const PGresult *res, const char *const *names, int ncols)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (int r = 0; r < PQntuples(res); r++) {
        json_t *o = json_object();
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
        for (int c = 0; c < ncols && c < PQnfields(res); c++)
            json_object_set_new(o, names[c], s_cell(res, r, c));
    }
    return arr;
}

/* {"key": count, ...} from rows (key, count), in the query's order */
static json_t *s_counts(s_q_t *q, const char *sql)
{
    PGresult *res = s_query(q, sql, 1, NULL, NULL);
    if (!res)
        return NULL;
    json_t *o = json_object();
    for (int r = 0; o && r < PQntuples(res); r++) {
        const char *key = PQgetisnull(res, r, 0) ? "(none)" : PQgetvalue(res, r, 0);
        json_object_set_new(o, key, json_integer(s_int(res, r, 1)));
    }
    PQclear(res);
    return o;
}

static int s_recent(s_q_t *q, bool seed, json_t *doc)
{
    static const char *const names[] = {"agent_name", "action", "status", "created_at"};
    PGresult *res =
        seed ? s_query(q, s_seed_query, 0, NULL, NULL) : s_query(q, s_recent_query, 1, NULL, NULL);
    if (!res)
        return -1;
    json_object_set_new(doc, "recent_activity", s_rows(res, names, 4));
    PQclear(res);
    return 0;
}

static int s_activity(s_q_t *q, long long since, json_t *doc)
{
    static const char sql[] =
        "SELECT to_char(b, 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), count(l.id) "
        "FROM generate_series(date_trunc($2, (NOW() AT TIME ZONE 'UTC') - $1::interval), "
        "                     date_trunc($2, NOW() AT TIME ZONE 'UTC'), $3::interval) AS b "
        "LEFT JOIN autonomous_agent_logs l ON date_trunc($2, l.created_at) = b "
        "     AND l.created_at > NOW() - $1::interval "
        "GROUP BY b ORDER BY b";
    bool hourly = since <= S_HOURLY_MAX_S;
    PGresult *res = s_query(q, sql, 3, hourly ? "hour" : "day", hourly ? "1 hour" : "1 day");
    if (!res)
        return -1;
    json_t *series = json_array();
    for (int r = 0; series && r < PQntuples(res); r++)
        json_array_append_new(
            series, json_pack("{s:o, s:I}", "at", s_cell(res, r, 0), "count", s_int(res, r, 1)));
    PQclear(res);
    json_object_set_new(doc, "activity",
                        json_pack("{s:s, s:o}", "bucket", hourly ? "hour" : "day", "series",
                                  series ? series : json_array()));
    return 0;
}

/* The scans of the window, with the time they ended (or began) and the
   error of a failed one (scan.completed's `error`, which the scans table
   does not keep) */
#define S_SCANS_CTE                                                                     \
    "WITH s AS (SELECT scan_id, target, commit, status, findings, files, duration_ms, " \
    "COALESCE(tools, '[]'::jsonb) AS tools, COALESCE(completed_at, started_at) AS at "  \
    "FROM scans WHERE COALESCE(started_at, completed_at) > NOW() - $1::interval) "

/* The error of a failed scan, from its scan.completed (only a failed scan
   has one: the others are not searched for) */
#define S_SCAN_ERROR                                                                            \
    "CASE WHEN s.status = 'failed' THEN (SELECT e.body->>'error' FROM events e WHERE e.type = " \
    "'scan.completed' AND e.body->>'scan_id' = s.scan_id ORDER BY e.seq DESC LIMIT 1) END"

/* Split the scan.completed tools[] (JSON text TEXT) into O's
   "tools_failed" (error, timeout, missing: each with its reason),
   "tools_skipped" (with the reason) and "tools_clean" (ran: name and
   findings), in the scan's order */
static void s_tools(const char *text, json_t *o)
{
    json_t *tools = json_loads(text ? text : "[]", 0, NULL);
    json_t *failed = json_array(), *skipped = json_array(), *clean = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *status = json_string_value(json_object_get(t, "status"));
        json_t *one = json_pack(
            "{s:O*, s:O*, s:O*, s:O*, s:O*}", "name", json_object_get(t, "name"), "status",
            json_object_get(t, "status"), "findings", json_object_get(t, "findings"), "duration_ms",
            json_object_get(t, "duration_ms"), "error", json_object_get(t, "error"));
        if (!one)
            continue;
        if (!json_object_get(one, "error")) /* a clean tool has none: null, not absent */
            json_object_set_new(one, "error", json_null());
        if (json_is_string(json_object_get(t, "note")))
            json_object_set(one, "note", json_object_get(t, "note"));
        kz_tool_outcome_t kind = kz_tool_outcome(status);
        json_array_append_new(kind == KZ_TOOL_FAILED    ? failed
                              : kind == KZ_TOOL_SKIPPED ? skipped
                                                        : clean,
                              one);
    }
    json_decref(tools);
    json_object_set_new(o, "tools_failed", failed ? failed : json_array());
    json_object_set_new(o, "tools_skipped", skipped ? skipped : json_array());
    json_object_set_new(o, "tools_clean", clean ? clean : json_array());
}

/* A scan row of RES (scan_id, target, commit, status, findings, at,
   tools, error) as an object with its tools grouped */
static json_t *s_scan_row(const PGresult *res, int r)
{
    json_t *o =
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "scan_id", s_cell(res, r, 0), "target",
                  s_cell(res, r, 1), "commit", s_cell(res, r, 2), "status", s_cell(res, r, 3),
                  "findings", PQgetisnull(res, r, 4) ? json_null() : json_integer(s_int(res, r, 4)),
                  "at", s_cell(res, r, 5), "error", s_cell(res, r, 7));
    if (o)
        s_tools(PQgetisnull(res, r, 6) ? NULL : PQgetvalue(res, r, 6), o);
    return o;
}

/* The files of scan SCAN_ID whose findings were set aside - not the
   project's own code: vendored, generated, excluded by the project
   (findings.excluded) - into O's "set_aside": {files, reasons: [{reason,
   files}]}, the most files first. 0 / -1 with Q->err */
static int s_set_aside(s_q_t *q, json_t *o, const char *scan_id)
{
    static const char sql[] =
        "SELECT excluded, count(DISTINCT file) FROM findings WHERE scan_id = $1 AND excluded IS "
        "NOT NULL GROUP BY excluded ORDER BY 2 DESC, 1";
    const char *params[1] = {scan_id};
    char err[1536];
    PGresult *res = kz_db_exec(q->db, sql, 1, params, err, sizeof err);
    if (!res) {
        snprintf(q->err, sizeof q->err, "query failed: %s", err);
        return -1;
    }
    json_t *reasons = json_array();
    json_int_t files = 0;
    for (int r = 0; reasons && r < PQntuples(res); r++) {
        files += s_int(res, r, 1);
        json_array_append_new(reasons, json_pack("{s:o, s:I}", "reason", s_cell(res, r, 0), "files",
                                                 s_int(res, r, 1)));
    }
    PQclear(res);
    json_object_set_new(
        o, "set_aside",
        json_pack("{s:I, s:o}", "files", files, "reasons", reasons ? reasons : json_array()));
    return 0;
}

static int s_failures(s_q_t *q, json_t *doc)
{
    static const char events_sql[] =
        "SELECT ts::text, body->>'name', body->>'instance', body->>'host', body->>'reason', "
        "count(*) OVER () FROM events WHERE type = 'agent.failed' AND ts > NOW() - $1::interval "
        "ORDER BY ts DESC LIMIT 20";
    /* a failed scan's own log row is counted with the scans below */
    static const char logs_sql[] =
        "SELECT l.created_at::text, l.agent_name, l.action, l.status, count(*) OVER () "
        "FROM autonomous_agent_logs l WHERE l.status IN ('failed', 'error') "
        "AND l.created_at > NOW() - $1::interval AND NOT EXISTS (SELECT 1 FROM events e "
        "WHERE e.id = l.event_id AND e.type = 'scan.completed') "
        "ORDER BY l.created_at DESC LIMIT 20";
    /* scans that failed, or in which a tool failed (partial) */
    static const char scans_sql[] = S_SCANS_CTE
        "SELECT scan_id, target, commit, status, findings, "
        "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), tools::text, " S_SCAN_ERROR
        ", count(*) FILTER (WHERE status = 'failed') OVER (), "
        "count(*) FILTER (WHERE status = 'partial') OVER () "
        "FROM s WHERE status IN ('failed', 'partial') ORDER BY at DESC, scan_id LIMIT 20";
    static const char *const ev_names[] = {"ts", "name", "instance", "host", "reason"};
    static const char *const log_names[] = {"created_at", "agent_name", "action", "status"};
    PGresult *ev = s_query(q, events_sql, 1, NULL, NULL);
    if (!ev)
        return -1;
    PGresult *lg = s_query(q, logs_sql, 1, NULL, NULL);
    if (!lg) {
        PQclear(ev);
        return -1;
    }
    PGresult *sc = s_query(q, scans_sql, 1, NULL, NULL);
    if (!sc) {
        PQclear(ev);
        PQclear(lg);
        return -1;
    }
    json_int_t nev = PQntuples(ev) > 0 ? s_int(ev, 0, 5) : 0;
    json_int_t nlg = PQntuples(lg) > 0 ? s_int(lg, 0, 4) : 0;
    json_int_t nfailed = PQntuples(sc) > 0 ? s_int(sc, 0, 8) : 0;
    json_int_t npartial = PQntuples(sc) > 0 ? s_int(sc, 0, 9) : 0;
    json_t *scans = json_array();
    for (int r = 0; scans && r < PQntuples(sc); r++)
        json_array_append_new(scans, s_scan_row(sc, r));
    json_object_set_new(doc, "failures",
                        json_pack("{s:I, s:I, s:o, s:I, s:o, s:I, s:I, s:o}", "count",
                                  nev + nlg + nfailed + npartial, "agent_failed_events", nev,
                                  "agent_failed", s_rows(ev, ev_names, 5), "failed_log_entries",
                                  nlg, "failed_logs", s_rows(lg, log_names, 4), "failed_scans",
                                  nfailed, "partial_scans", npartial, "scans",
                                  scans ? scans : json_array()));
    PQclear(ev);
    PQclear(lg);
    PQclear(sc);
    return 0;
}

static int s_restarts(s_q_t *q, json_t *doc)
{
    json_t *by = s_counts(q, "SELECT body->>'name', count(*) FROM events WHERE type = "
                             "'agent.exited' AND ts > NOW() - $1::interval GROUP BY 1 "
                             "ORDER BY 2 DESC, 1");
    if (!by)
        return -1;
    json_int_t total = 0;
    const char *key;
    json_t *v;
    json_object_foreach(by, key, v)
    {
        total += json_integer_value(v);
    }
    json_object_set_new(doc, "restarts", json_pack("{s:I, s:o}", "count", total, "by_agent", by));
    return 0;
}

/* What the loop did in the window. Findings are counted once per target
   and commit: a commit scanned four times (code-health's interval,
   run-once, a restart) has its findings in the findings table four
   times, so the total is the distinct fingerprints of the latest
   completed (ok or partial) scan of each (target, commit); the raw
   count over every scan is kept apart as findings_reported. */
static int s_work(s_q_t *q, json_t *doc)
{
    static const char sql[] =
        S_SCANS_CTE ", latest AS (SELECT DISTINCT ON (target, commit) scan_id FROM s "
                    "WHERE status IN ('ok', 'partial') AND commit IS NOT NULL "
                    "ORDER BY target, commit, at DESC, scan_id DESC) "
                    "SELECT (SELECT count(*) FROM s), "
                    "(SELECT count(*) FROM s WHERE status = 'ok'), "
                    "(SELECT count(*) FROM s WHERE status = 'partial'), "
                    "(SELECT count(*) FROM s WHERE status = 'failed'), "
                    "(SELECT count(*) FROM s WHERE status NOT IN ('ok', 'partial', 'failed')), "
                    "(SELECT count(DISTINCT target) FROM s), "
                    "(SELECT count(*) FROM latest), "
                    "(SELECT count(*) FROM (SELECT DISTINCT f.scan_id, f.fingerprint FROM "
                    "findings f JOIN latest USING (scan_id)) d), "
                    "(SELECT count(*) FROM findings f JOIN s USING (scan_id)), "
                    "(SELECT count(*) FROM improvement_suggestions WHERE created_at > NOW() - "
                    "$1::interval)";
    /* the latest scan of each target, its tools grouped */
    static const char latest_sql[] = S_SCANS_CTE
        "SELECT DISTINCT ON (target) scan_id, target, commit, status, findings, "
        "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), tools::text, " S_SCAN_ERROR
        " FROM s ORDER BY target, at DESC, scan_id DESC LIMIT 100";
    PGresult *res = s_query(q, sql, 1, NULL, NULL);
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 10) {
        PQclear(res);
        snprintf(q->err, sizeof q->err, "query failed: unexpected result shape");
        return -1;
    }
    json_t *work = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I}", "scans", s_int(res, 0, 0),
        "scans_ok", s_int(res, 0, 1), "scans_partial", s_int(res, 0, 2), "scans_failed",
        s_int(res, 0, 3), "scans_running", s_int(res, 0, 4), "targets", s_int(res, 0, 5), "commits",
        s_int(res, 0, 6), "findings", s_int(res, 0, 7), "findings_counted",
        "distinct fingerprints of the latest ok or partial scan of each target and commit",
        "findings_reported", s_int(res, 0, 8), "plans", s_int(res, 0, 9));
    PQclear(res);
    res = s_query(q, latest_sql, 1, NULL, NULL);
    if (!res) {
        json_decref(work);
        return -1;
    }
    json_t *latest = json_array();
    int rc = 0;
    for (int r = 0; latest && r < PQntuples(res); r++) {
        json_t *row = s_scan_row(res, r);
        json_array_append_new(latest, row);
        if (row && rc == 0)
            rc = s_set_aside(q, row, PQgetvalue(res, r, 0));
    }
    PQclear(res);
    if (rc != 0) {
        json_decref(work);
        json_decref(latest);
        return -1;
    }
    json_object_set_new(doc, "work", work);
    json_object_set_new(doc, "scans", latest ? latest : json_array());
    return 0;
}

/* The rating as shown: the snapshot's rating_label (code-quality marks a
   partial one), or - for a snapshot made before rating_label existed -
   the letter, never plain when the snapshot is partial */
static void s_rating_label(const char *rating, const char *label, bool partial, char *out,
                           size_t len)
{
    if (label && *label) /* code-quality's own, partial or not */
        snprintf(out, len, "%s", label);
    else
        snprintf(out, len, "%s%s", rating && *rating ? rating : "?", partial ? " (partial)" : "");
}

/* The latest quality snapshot of each target (whatever the window) */
static int s_quality(s_q_t *q, json_t *doc)
{
    static const char sql[] =
        "SELECT DISTINCT ON (target) target, scan_id, created_at::text, metrics->>'rating', "
        "metrics->>'rating_label', overall_score, metrics->>'findings', partial, "
        "COALESCE(metrics->'partial_tools', '[]')::text, metrics->'trend'->>'direction', "
        "metrics->'trend'->>'reason', metrics->'trend'->>'previous_scan_id' FROM "
        "code_quality_snapshots WHERE target IS NOT NULL ORDER BY target, created_at DESC, id DESC";
    PGresult *res = s_query(q, sql, 0, NULL, NULL);
    if (!res)
        return -1;
    json_t *arr = json_array();
    for (int r = 0; arr && r < PQntuples(res) && PQnfields(res) == 12; r++) {
        bool partial = strcmp(PQgetvalue(res, r, 7), "t") == 0;
        char label[512];
        s_rating_label(PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3),
                       PQgetisnull(res, r, 4) ? NULL : PQgetvalue(res, r, 4), partial, label,
                       sizeof label);
        json_t *tools = json_loads(PQgetvalue(res, r, 8), 0, NULL);
        json_t *score =
            PQgetisnull(res, r, 5) ? json_null() : json_real(strtod(PQgetvalue(res, r, 5), NULL));
        json_array_append_new(
            arr, json_pack("{s:o, s:o, s:o, s:o, s:s, s:o, s:I, s:b, s:o, s:{s:o, s:o, s:o}}",
                           "target", s_cell(res, r, 0), "scan_id", s_cell(res, r, 1), "at",
                           s_cell(res, r, 2), "rating", s_cell(res, r, 3), "rating_label", label,
                           "score", score, "findings", s_int(res, r, 6), "partial", partial,
                           "partial_tools", json_is_array(tools) ? tools : json_array(), "trend",
                           "direction", s_cell(res, r, 9), "reason", s_cell(res, r, 10),
                           "previous_scan_id", s_cell(res, r, 11)));
        if (tools && !json_is_array(tools))
            json_decref(tools);
    }
    PQclear(res);
    json_object_set_new(doc, "quality", arr ? arr : json_array());
    return 0;
}

static int s_database(s_q_t *q, const kz_config_t *cfg, int version, json_t *doc)
{
    static const char sql[] = "SELECT count(*), max(ts)::text, max(recorded_at)::text, "
                              "count(*) FILTER (WHERE ts > NOW() - $1::interval) FROM events";
    PGresult *res = s_query(q, sql, 1, NULL, NULL);
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        PQclear(res);
        snprintf(q->err, sizeof q->err, "query failed: unexpected result shape");
        return -1;
    }
    char where[1024];
    kz_db_describe(cfg, where, sizeof where);
    int expected = kz_migrations_count > 0 ? kz_migrations[kz_migrations_count - 1].version : 0;
    json_object_set_new(doc, "database",
                        json_pack("{s:s, s:i, s:i, s:I, s:I, s:o, s:o}", "where", where,
                                  "schema_version", version, "schema_expected", expected, "events",
                                  s_int(res, 0, 0), "events_in_window", s_int(res, 0, 3),
                                  "last_event_at", s_cell(res, 0, 1), "last_recorded_at",
                                  s_cell(res, 0, 2)));
    PQclear(res);
    return 0;
}

/* The spool file as found on disk */
static void s_spool(const kz_config_t *cfg, json_t *doc)
{
    char path[PATH_MAX];
    if (kz_state_path(cfg, "spool/recorder.spool", path, sizeof path) != 0)
        return;
    struct stat st;
    json_t *o;
    if (stat(path, &st) == 0) {
        char when[32] = "";
        struct tm tm;
        if (gmtime_r(&st.st_mtime, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
        o = json_pack("{s:s, s:b, s:I, s:s}", "path", path, "present", 1, "bytes",
                      (json_int_t)st.st_size, "modified_at", when);
    } else {
        o = json_pack("{s:s, s:b, s:I}", "path", path, "present", 0, "bytes", (json_int_t)0);
    }
    json_object_set_new(doc, "spool_file", o);
}

/* The live state from kaizen.status, when the orchestrator answers */
static void s_live(const kz_config_t *cfg, json_t *doc)
{
    char err[1024] = "unreadable answer from kaizen.status";
    kz_msg_t *reply = kz_cli_status_call(cfg, S_STATUS_MS, err, sizeof err);
    json_t *live = NULL;
    if (reply) {
        char *text = kz_val_to_json(kz_msg_body_const(reply));
        json_t *body = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        kz_msg_destroy(&reply);
        if (body) {
            json_t *agents = json_object_get(body, "agents");
            live = json_pack("{s:b, s:O*, s:O*, s:O*, s:O*, s:I}", "running", 1, "orchestrator",
                             json_object_get(body, "orchestrator"), "database",
                             json_object_get(body, "database"), "spool",
                             json_object_get(body, "spool"), "held", json_object_get(body, "held"),
                             "agents", (json_int_t)json_array_size(agents));
            json_decref(body);
        }
    }
    if (!live)
        live = json_pack("{s:b, s:s}", "running", 0, "error", err);
    json_object_set_new(doc, "orchestrator", live);
}

/* Everything, into a new document; NULL with ERRBUF */
static json_t *s_gather(const kz_config_t *cfg, const char *since_text, long long since,
                        char *errbuf, size_t errlen)
{
    s_q_t q;
    memset(&q, 0, sizeof q);
    q.db = kz_db_connect(cfg, S_APP, errbuf, errlen);
    if (!q.db)
        return NULL;
    json_t *doc = NULL;
    int version = kz_db_schema_version(q.db, q.err, sizeof q.err);
    if (version < 0)
        goto fail;
    if (version == 0) {
        snprintf(q.err, sizeof q.err,
                 "the database has no kaizen schema yet: run 'kaizen db migrate' (or 'kaizen up')");
        goto fail;
    }
    snprintf(q.interval, sizeof q.interval, "%lld seconds", since);
    char words[64], now[32] = "";
    s_since_words(since, words, sizeof words);
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    doc = json_pack("{s:s, s:s, s:s, s:I, s:s}", "title", S_TITLE, "generated_at", now, "since",
                    since_text, "since_seconds", (json_int_t)since, "window", words);
    if (!doc) {
        snprintf(q.err, sizeof q.err, "out of memory");
        goto fail;
    }
    if (s_recent(&q, since == S_DAY, doc) != 0)
        goto fail;
    json_t *layer = s_counts(&q, "SELECT layer, count(*) FROM autonomous_agent_logs WHERE "
                                 "created_at > NOW() - $1::interval GROUP BY 1 ORDER BY 2 DESC, 1");
    json_t *agent = layer ? s_counts(&q, "SELECT agent_name, count(*) FROM autonomous_agent_logs "
                                         "WHERE created_at > NOW() - $1::interval GROUP BY 1 "
                                         "ORDER BY 2 DESC, 1")
                          : NULL;
    json_t *status = agent ? s_counts(&q, "SELECT status, count(*) FROM autonomous_agent_logs "
                                          "WHERE created_at > NOW() - $1::interval GROUP BY 1 "
                                          "ORDER BY 2 DESC, 1")
                           : NULL;
    if (!status) {
        json_decref(layer);
        json_decref(agent);
        goto fail;
    }
    json_object_set_new(doc, "by_layer", layer);
    json_object_set_new(doc, "by_agent", agent);
    json_object_set_new(doc, "by_status", status);
    if (s_activity(&q, since, doc) != 0 || s_failures(&q, doc) != 0 || s_restarts(&q, doc) != 0 ||
        s_work(&q, doc) != 0 || s_database(&q, cfg, version, doc) != 0)
        goto fail;
    /* code_quality_snapshots.partial came with migration 3 */
    if (version < 3)
        json_object_set_new(doc, "quality", json_array());
    else if (s_quality(&q, doc) != 0)
        goto fail;
    PQfinish(q.db);
    s_spool(cfg, doc);
    s_live(cfg, doc);
    /* how the tools, fixers and tests run (docs/sandbox.md) */
    char sandbox[512];
    kz_sandbox_describe(sandbox, sizeof sandbox);
    json_object_set_new(
        doc, "sandbox",
        json_pack("{s:b, s:s}", "enabled", kz_sandbox_enabled(), "detail", sandbox));
    return doc;
fail:
    snprintf(errbuf, errlen, "%s", q.err);
    json_decref(doc);
    PQfinish(q.db);
    return NULL;
}

/* ---------------------------------------------------------------- text */

static const char *s_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static json_int_t s_num(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void s_text_counts(const char *title, const json_t *counts)
{
    printf("%s\n", title);
    if (json_object_size(counts) == 0)
        printf("  (none)\n");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)counts, key, v)
    {
        printf("  %-24s %8lld\n", key, (long long)json_integer_value(v));
    }
}

/* Quality: the latest snapshot of each target, its rating as shown */
static void s_text_quality(const json_t *doc)
{
    const json_t *quality = json_object_get(doc, "quality");
    printf("Quality (latest snapshot per target):\n");
    if (json_array_size(quality) == 0)
        printf("  (none)\n");
    size_t i;
    json_t *row;
    json_array_foreach(quality, i, row)
    {
        const json_t *score = json_object_get(row, "score");
        const json_t *trend = json_object_get(row, "trend");
        printf("  %s: %s", s_str(row, "target"), s_str(row, "rating_label"));
        if (json_is_number(score))
            printf(", score %.1f", json_number_value(score));
        printf(", %lld findings, trend %s", (long long)s_num(row, "findings"),
               s_str(trend, "direction"));
        if (json_is_string(json_object_get(trend, "reason")))
            printf(" (%s)", s_str(trend, "reason"));
        printf(", scan %s at %s\n", s_str(row, "scan_id"), s_str(row, "at"));
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(row, "partial_tools"), k, t)
        {
            printf("    %s %s%s%s\n", s_str(t, "name"), s_str(t, "status"),
                   json_is_string(json_object_get(t, "error")) ? ": " : "",
                   json_is_string(json_object_get(t, "error")) ? s_str(t, "error") : "");
        }
    }
}

/* "mypy (error: exit 2: ...)" for each tool of LIST, or "name N" for
   clean ones, on one line after LABEL */
static void s_text_tools(const char *label, const json_t *list, bool reasons)
{
    if (json_array_size(list) == 0)
        return;
    printf("      %-8s", label);
    size_t i;
    json_t *t;
    json_array_foreach((json_t *)list, i, t)
    {
        if (reasons)
            printf("%s%s (%s: %s)", i ? "; " : " ", s_str(t, "name"), s_str(t, "status"),
                   s_str(t, "error"));
        else
            printf("%s%s %lld", i ? ", " : " ", s_str(t, "name"), (long long)s_num(t, "findings"));
    }
    printf("\n");
}

/* "note: codespell: version differs ...; ruff: chosen by the project
   but not run: ..." for the tools of SC with a note (its version differs
   from the project's pin, or the project chose it and kaizen cannot run
   it): always shown, whatever else is left out */
static void s_text_notes(const json_t *sc)
{
    static const char *const groups[] = {"tools_failed", "tools_skipped", "tools_clean"};
    bool any = false;
    for (int g = 0; g < 3; g++) {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(sc, groups[g]), i, t)
        {
            if (!json_is_string(json_object_get(t, "note")))
                continue;
            printf("%s%s: %s", any ? "; " : "      note:    ", s_str(t, "name"), s_str(t, "note"));
            any = true;
        }
    }
    if (any)
        printf("\n");
}

/* One scan: "scan ID of TARGET at COMMIT: STATUS[, N findings | : ERROR]"
   and its failed, skipped and clean tools */
static void s_text_scan(const json_t *sc, bool all_tools)
{
    const char *commit = json_string_value(json_object_get(sc, "commit"));
    printf("scan %s of %s", s_str(sc, "scan_id"), s_str(sc, "target"));
    if (commit)
        printf(" at %.12s", commit);
    printf(": %s", s_str(sc, "status"));
    if (json_is_string(json_object_get(sc, "error")))
        printf(": %s", s_str(sc, "error"));
    else if (json_is_integer(json_object_get(sc, "findings")))
        printf(", %lld findings", (long long)s_num(sc, "findings"));
    printf(" [%s]\n", s_str(sc, "at"));
    s_text_tools("failed:", json_object_get(sc, "tools_failed"), true);
    s_text_notes(sc);
    if (all_tools) {
        s_text_tools("skipped:", json_object_get(sc, "tools_skipped"), true);
        s_text_tools("clean:", json_object_get(sc, "tools_clean"), false);
    }
}

/* "set aside: 14 files vendored (.gitattributes linguist-vendored), 2
   generated (the file says it is generated)" when a scan set files aside */
static void s_text_set_aside(const json_t *sc)
{
    const json_t *sa = json_object_get(sc, "set_aside");
    if (s_num(sa, "files") <= 0)
        return;
    printf("      set aside (not planned): ");
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(sa, "reasons"), i, r)
    {
        const char *reason = s_str(r, "reason");
        const char *colon = strstr(reason, ": ");
        long long n = (long long)s_num(r, "files");
        printf("%s%lld file%s ", i ? ", " : "", n, n == 1 ? "" : "s");
        if (colon)
            printf("%.*s (%s)", (int)(colon - reason), reason, colon + 2);
        else
            printf("%s", reason);
    }
    printf("\n");
}

static void s_text(const json_t *doc)
{
    const char *window = s_str(doc, "window");
    /* the seed's report */
    printf("%s\n%s\n%s\n\n", S_RULE, S_TITLE, S_RULE);
    const json_t *sandbox = json_object_get(doc, "sandbox");
    if (json_is_false(json_object_get(sandbox, "enabled")))
        printf("WARNING: the sandbox is %s\n\n", s_str(sandbox, "detail"));
    printf("Recent Activity (Last %s):\n", window);
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(doc, "recent_activity"), i, row)
    {
        printf("  [%s] %s: %s - %s\n", s_str(row, "created_at"), s_str(row, "agent_name"),
               s_str(row, "action"), s_str(row, "status"));
    }
    printf("\n");

    /* and beyond it */
    char title[128];
    snprintf(title, sizeof title, "Activity by Layer (Last %s):", window);
    s_text_counts(title, json_object_get(doc, "by_layer"));
    s_text_counts("Activity by Agent:", json_object_get(doc, "by_agent"));
    s_text_counts("Activity by Status:", json_object_get(doc, "by_status"));
    printf("\n");

    const json_t *f = json_object_get(doc, "failures");
    printf("Failures: %lld (agent.failed events %lld, log entries failed/error %lld, scans "
           "failed %lld, scans partial %lld)\n",
           (long long)s_num(f, "count"), (long long)s_num(f, "agent_failed_events"),
           (long long)s_num(f, "failed_log_entries"), (long long)s_num(f, "failed_scans"),
           (long long)s_num(f, "partial_scans"));
    json_array_foreach(json_object_get(f, "agent_failed"), i, row)
    {
        printf("  [%s] %s.%s on %s failed: %s\n", s_str(row, "ts"), s_str(row, "name"),
               s_str(row, "instance"), s_str(row, "host"), s_str(row, "reason"));
    }
    json_array_foreach(json_object_get(f, "failed_logs"), i, row)
    {
        printf("  [%s] %s: %s - %s\n", s_str(row, "created_at"), s_str(row, "agent_name"),
               s_str(row, "action"), s_str(row, "status"));
    }
    json_array_foreach(json_object_get(f, "scans"), i, row)
    {
        printf("  ");
        s_text_scan(row, false);
    }
    const json_t *r = json_object_get(doc, "restarts");
    printf("Restarts: %lld\n", (long long)s_num(r, "count"));
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(r, "by_agent"), key, v)
    {
        printf("  %-24s %8lld\n", key, (long long)json_integer_value(v));
    }
    const json_t *w = json_object_get(doc, "work");
    printf("Work: %lld scans (%lld ok, %lld partial, %lld failed, %lld running) of %lld "
           "commits on %lld targets, %lld findings, %lld plans\n",
           (long long)s_num(w, "scans"), (long long)s_num(w, "scans_ok"),
           (long long)s_num(w, "scans_partial"), (long long)s_num(w, "scans_failed"),
           (long long)s_num(w, "scans_running"), (long long)s_num(w, "commits"),
           (long long)s_num(w, "targets"), (long long)s_num(w, "findings"),
           (long long)s_num(w, "plans"));
    printf("  findings: %s (%lld reported over all %lld scans)\n", s_str(w, "findings_counted"),
           (long long)s_num(w, "findings_reported"), (long long)s_num(w, "scans"));
    if (json_array_size(json_object_get(doc, "scans")) > 0)
        printf("Latest scan of each target:\n");
    json_array_foreach(json_object_get(doc, "scans"), i, row)
    {
        printf("  ");
        s_text_scan(row, true);
        s_text_set_aside(row);
    }
    s_text_quality(doc);
    printf("\n");

    const json_t *d = json_object_get(doc, "database");
    printf("Database: %s\n", s_str(d, "where"));
    printf("  schema version %lld (this kaizen: %lld)%s\n", (long long)s_num(d, "schema_version"),
           (long long)s_num(d, "schema_expected"),
           s_num(d, "schema_version") < s_num(d, "schema_expected") ? " - run 'kaizen db migrate'"
                                                                    : "");
    printf("  events stored: %lld (%lld in the window), last event %s\n",
           (long long)s_num(d, "events"), (long long)s_num(d, "events_in_window"),
           s_str(d, "last_event_at"));
    const json_t *sf = json_object_get(doc, "spool_file");
    if (json_is_true(json_object_get(sf, "present"))) {
        char size[32];
        kz_cli_human_bytes((double)s_num(sf, "bytes"), size, sizeof size);
        printf("Spool: %s, %s, modified %s\n", s_str(sf, "path"), size, s_str(sf, "modified_at"));
    } else {
        printf("Spool: empty (no %s)\n", s_str(sf, "path"));
    }
    const json_t *o = json_object_get(doc, "orchestrator");
    if (json_is_true(json_object_get(o, "running"))) {
        const json_t *oo = json_object_get(o, "orchestrator");
        const json_t *od = json_object_get(o, "database");
        const json_t *os = json_object_get(o, "spool");
        char up[32];
        kz_cli_human_ms(s_num(oo, "uptime_ms"), up, sizeof up);
        printf("Orchestrator: running (pid %lld, up %s, %lld agents, restarts %lld, failures "
               "%lld)\n",
               (long long)s_num(oo, "pid"), up, (long long)s_num(o, "agents"),
               (long long)s_num(oo, "restarts"), (long long)s_num(oo, "failures"));
        if (od)
            printf("  recorder: database %s, %lld recorded, error %s\n", s_str(od, "state"),
                   (long long)s_num(od, "recorded"), s_str(od, "error"));
        if (os)
            printf("  spool: %s, %lld pending, %lld corrupt records skipped\n", s_str(os, "state"),
                   (long long)s_num(os, "pending"), (long long)s_num(os, "corrupt_skipped"));
    } else {
        printf("Orchestrator: not running\n");
    }
    printf("\n%s\n", S_RULE);
}

/* ---------------------------------------------------------------- HTML */

static void s_html_esc(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

static void s_html_counts(FILE *out, const char *title, const json_t *counts)
{
    fprintf(out, "<h3>");
    s_html_esc(out, title);
    fprintf(out, "</h3>\n<table><tr><th>name</th><th>entries</th></tr>\n");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)counts, key, v)
    {
        fprintf(out, "<tr><td>");
        s_html_esc(out, key);
        fprintf(out, "</td><td class=n>%lld</td></tr>\n", (long long)json_integer_value(v));
    }
    if (json_object_size(counts) == 0)
        fprintf(out, "<tr><td colspan=2>(none)</td></tr>\n");
    fprintf(out, "</table>\n");
}

/* A bar per bucket of the activity series, as inline SVG */
static void s_html_chart(FILE *out, const json_t *activity)
{
    const json_t *series = json_object_get(activity, "series");
    size_t n = json_array_size(series);
    json_int_t max = 1;
    size_t i;
    json_t *b;
    json_array_foreach(series, i, b)
    {
        if (s_num(b, "count") > max)
            max = s_num(b, "count");
    }
    const int w = 800, h = 200, pad = 30;
    double bw = n > 0 ? (double)(w - 2 * pad) / (double)n : 0;
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
            "height=\"%d\" role=\"img\" aria-label=\"activity per %s\">\n",
            w, h + 40, w, h + 40, s_str(activity, "bucket"));
    fprintf(out,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n"
            "<text x=\"2\" y=\"%d\" font-size=\"11\">%lld</text>\n"
            "<text x=\"2\" y=\"%d\" font-size=\"11\">0</text>\n",
            pad, h, w - pad, h, pad, (long long)max, h);
    json_array_foreach(series, i, b)
    {
        double bh = (double)s_num(b, "count") * (double)(h - pad) / (double)max;
        fprintf(out,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#3b7dd8\">"
                "<title>",
                pad + bw * (double)i + bw * 0.1, (double)h - bh, bw * 0.8 > 0.5 ? bw * 0.8 : 0.5,
                bh);
        s_html_esc(out, s_str(b, "at"));
        fprintf(out, ": %lld</title></rect>\n", (long long)s_num(b, "count"));
    }
    if (n > 0) {
        fprintf(out, "<text x=\"%d\" y=\"%d\" font-size=\"11\">", pad, h + 15);
        s_html_esc(out, s_str(json_array_get(series, 0), "at"));
        fprintf(out, "</text>\n<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">",
                w - pad, h + 15);
        s_html_esc(out, s_str(json_array_get(series, n - 1), "at"));
        fprintf(out, "</text>\n");
    }
    fprintf(out, "</svg>\n");
}

/* One scan as HTML: its line and its failed (and, with ALL_TOOLS,
   skipped and clean) tools */
static void s_html_scan(FILE *out, const json_t *sc, bool all_tools)
{
    const char *commit = json_string_value(json_object_get(sc, "commit"));
    fprintf(out, "<li>");
    s_html_esc(out, s_str(sc, "at"));
    fprintf(out, " scan ");
    s_html_esc(out, s_str(sc, "scan_id"));
    fprintf(out, " of ");
    s_html_esc(out, s_str(sc, "target"));
    if (commit) {
        fprintf(out, " at ");
        s_html_esc(out, commit);
    }
    fprintf(out, ": <b>");
    s_html_esc(out, s_str(sc, "status"));
    fprintf(out, "</b>");
    if (json_is_string(json_object_get(sc, "error"))) {
        fprintf(out, ": ");
        s_html_esc(out, s_str(sc, "error"));
    } else if (json_is_integer(json_object_get(sc, "findings"))) {
        fprintf(out, ", %lld findings", (long long)s_num(sc, "findings"));
    }
    static const char *const groups[] = {"tools_failed", "tools_skipped", "tools_clean"};
    static const char *const labels[] = {"failed", "skipped", "clean"};
    for (int g = 0; g < (all_tools ? 3 : 1); g++) {
        const json_t *list = json_object_get(sc, groups[g]);
        if (json_array_size(list) == 0)
            continue;
        fprintf(out, "<br>%s:", labels[g]);
        size_t i;
        json_t *t;
        json_array_foreach((json_t *)list, i, t)
        {
            fprintf(out, "%s", i ? (g == 2 ? ", " : "; ") : " ");
            s_html_esc(out, s_str(t, "name"));
            if (g == 2) {
                fprintf(out, " %lld", (long long)s_num(t, "findings"));
                if (json_is_string(json_object_get(t, "note"))) {
                    fprintf(out, " (");
                    s_html_esc(out, s_str(t, "note"));
                    fprintf(out, ")");
                }
            } else {
                fprintf(out, " (");
                s_html_esc(out, s_str(t, "status"));
                fprintf(out, ": ");
                s_html_esc(out, s_str(t, "error"));
                fprintf(out, ")");
            }
        }
    }
    fprintf(out, "</li>\n");
}

static void s_html(FILE *out, const json_t *doc)
{
    const char *window = s_str(doc, "window");
    fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                 "<title>kaizen report</title>\n<style>\n"
                 "body{font-family:sans-serif;margin:2em;color:#222}\n"
                 "table{border-collapse:collapse;margin-bottom:1em}\n"
                 "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\n"
                 "td.n{text-align:right}\nh1{font-size:1.4em}\nh2{font-size:1.2em}\n"
                 "</style></head><body>\n<h1>" S_TITLE "</h1>\n<p>generated ");
    s_html_esc(out, s_str(doc, "generated_at"));
    fprintf(out, ", window: last ");
    s_html_esc(out, window);
    fprintf(out, "</p>\n<h2>Activity per %s</h2>\n",
            s_str(json_object_get(doc, "activity"), "bucket"));
    s_html_chart(out, json_object_get(doc, "activity"));

    fprintf(out, "<h2>Recent Activity (Last ");
    s_html_esc(out, window);
    fprintf(out, ")</h2>\n<table><tr><th>time (UTC)</th><th>agent</th><th>action</th>"
                 "<th>status</th></tr>\n");
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(doc, "recent_activity"), i, row)
    {
        const char *cols[] = {"created_at", "agent_name", "action", "status"};
        fprintf(out, "<tr>");
        for (size_t c = 0; c < 4; c++) {
            fprintf(out, "<td>");
            s_html_esc(out, s_str(row, cols[c]));
            fprintf(out, "</td>");
        }
        fprintf(out, "</tr>\n");
    }
    fprintf(out, "</table>\n<h2>Counts</h2>\n");
    s_html_counts(out, "by layer", json_object_get(doc, "by_layer"));
    s_html_counts(out, "by agent", json_object_get(doc, "by_agent"));
    s_html_counts(out, "by status", json_object_get(doc, "by_status"));

    const json_t *f = json_object_get(doc, "failures");
    fprintf(out, "<h2>Failures: %lld</h2>\n<ul>\n", (long long)s_num(f, "count"));
    json_array_foreach(json_object_get(f, "agent_failed"), i, row)
    {
        fprintf(out, "<li>");
        s_html_esc(out, s_str(row, "ts"));
        fprintf(out, " ");
        s_html_esc(out, s_str(row, "name"));
        fprintf(out, ".");
        s_html_esc(out, s_str(row, "instance"));
        fprintf(out, " failed: ");
        s_html_esc(out, s_str(row, "reason"));
        fprintf(out, "</li>\n");
    }
    json_array_foreach(json_object_get(f, "failed_logs"), i, row)
    {
        fprintf(out, "<li>");
        s_html_esc(out, s_str(row, "created_at"));
        fprintf(out, " ");
        s_html_esc(out, s_str(row, "agent_name"));
        fprintf(out, ": ");
        s_html_esc(out, s_str(row, "action"));
        fprintf(out, " - ");
        s_html_esc(out, s_str(row, "status"));
        fprintf(out, "</li>\n");
    }
    json_array_foreach(json_object_get(f, "scans"), i, row)
    {
        s_html_scan(out, row, false);
    }
    fprintf(out, "</ul>\n");
    const json_t *r = json_object_get(doc, "restarts");
    fprintf(out, "<h2>Restarts: %lld</h2>\n", (long long)s_num(r, "count"));
    s_html_counts(out, "restarts by agent", json_object_get(r, "by_agent"));
    const json_t *w = json_object_get(doc, "work");
    fprintf(out,
            "<h2>Work</h2>\n<p>%lld scans (%lld ok, %lld partial, %lld failed, %lld running) of "
            "%lld commits on %lld targets, %lld findings, %lld plans</p>\n<p>findings: ",
            (long long)s_num(w, "scans"), (long long)s_num(w, "scans_ok"),
            (long long)s_num(w, "scans_partial"), (long long)s_num(w, "scans_failed"),
            (long long)s_num(w, "scans_running"), (long long)s_num(w, "commits"),
            (long long)s_num(w, "targets"), (long long)s_num(w, "findings"),
            (long long)s_num(w, "plans"));
    s_html_esc(out, s_str(w, "findings_counted"));
    fprintf(out,
            " (%lld reported over all %lld scans)</p>\n<h3>Latest scan of each target</h3>\n<ul>\n",
            (long long)s_num(w, "findings_reported"), (long long)s_num(w, "scans"));
    json_array_foreach(json_object_get(doc, "scans"), i, row)
    {
        s_html_scan(out, row, true);
    }
    fprintf(out, "</ul>\n");

    fprintf(out, "<h2>Quality</h2>\n<table><tr><th>target</th><th>rating</th><th>score</th>"
                 "<th>findings</th><th>trend</th><th>scan</th></tr>\n");
    json_array_foreach(json_object_get(doc, "quality"), i, row)
    {
        const json_t *trend = json_object_get(row, "trend");
        const json_t *score = json_object_get(row, "score");
        fprintf(out, "<tr><td>");
        s_html_esc(out, s_str(row, "target"));
        fprintf(out, "</td><td>");
        s_html_esc(out, s_str(row, "rating_label"));
        if (json_is_number(score))
            fprintf(out, "</td><td class=n>%.1f", json_number_value(score));
        else
            fprintf(out, "</td><td class=n>-");
        fprintf(out, "</td><td class=n>%lld</td><td>", (long long)s_num(row, "findings"));
        s_html_esc(out, s_str(trend, "direction"));
        if (json_is_string(json_object_get(trend, "reason"))) {
            fprintf(out, " (");
            s_html_esc(out, s_str(trend, "reason"));
            fprintf(out, ")");
        }
        fprintf(out, "</td><td>");
        s_html_esc(out, s_str(row, "scan_id"));
        fprintf(out, "</td></tr>\n");
    }
    if (json_array_size(json_object_get(doc, "quality")) == 0)
        fprintf(out, "<tr><td colspan=6>(none)</td></tr>\n");
    fprintf(out, "</table>\n");

    const json_t *d = json_object_get(doc, "database");
    fprintf(out, "<h2>Health</h2>\n<table>\n<tr><th>database</th><td>");
    s_html_esc(out, s_str(d, "where"));
    fprintf(out,
            "</td></tr>\n<tr><th>schema version</th><td>%lld (this kaizen: %lld)</td></tr>\n"
            "<tr><th>events stored</th><td>%lld (%lld in the window)</td></tr>\n"
            "<tr><th>last event</th><td>",
            (long long)s_num(d, "schema_version"), (long long)s_num(d, "schema_expected"),
            (long long)s_num(d, "events"), (long long)s_num(d, "events_in_window"));
    s_html_esc(out, s_str(d, "last_event_at"));
    const json_t *sf = json_object_get(doc, "spool_file");
    fprintf(out, "</td></tr>\n<tr><th>spool file</th><td>");
    s_html_esc(out, s_str(sf, "path"));
    fprintf(out, ": %s, %lld bytes</td></tr>\n",
            json_is_true(json_object_get(sf, "present")) ? "present" : "empty",
            (long long)s_num(sf, "bytes"));
    const json_t *o = json_object_get(doc, "orchestrator");
    fprintf(out, "<tr><th>orchestrator</th><td>%s</td></tr>\n</table>\n</body></html>\n",
            json_is_true(json_object_get(o, "running")) ? "running" : "not running");
}

static int s_write_html(const char *path, const json_t *doc)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return kz_cli_error("report", "path too long: '%s'", path);
    FILE *out = kz_file_fopen(tmp, "w", 0600);
    if (!out)
        return kz_cli_error("report", "unable to write '%s': %s", tmp, strerror(errno));
    s_html(out, doc);
    int bad = ferror(out);
    if (fclose(out) != 0 || bad) {
        int e = errno;
        unlink(tmp);
        return kz_cli_error("report", "unable to write '%s': %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return kz_cli_error("report", "unable to write '%s': %s", path, strerror(e));
    }
    fprintf(stderr, "wrote %s\n", path);
    return KZ_EXIT_OK;
}

static const struct option s_opts[] = {
    {"since", required_argument, NULL, 's'},
    {"json", no_argument, NULL, 'j'},
    {"html", required_argument, NULL, 'H'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    const char *since_text = "24h", *html = NULL;
    bool json = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            since_text = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'H':
            html = optarg;
            break;
        default:
            return kz_cli_bad_option("report", c, argv);
        }
    }
    if (optind < argc)
        return kz_cli_usage("report", "unexpected argument '%s'", argv[optind]);
    long long since = 0;
    if (s_parse_since(since_text, &since) != 0)
        return kz_cli_usage("report", "invalid duration '%s' (e.g. 30m, 24h, 7d, 2w)", since_text);
    if (html && !*html)
        return kz_cli_usage("report", "--html needs a file name");

    char err[2048] = "";
    json_t *doc = s_gather(cli->cfg, since_text, since, err, sizeof err);
    if (!doc)
        return kz_cli_error("report", "%s", err);
    int rc = KZ_EXIT_OK;
    if (json) {
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            printf("%s\n", text);
        else
            rc = kz_cli_error("report", "out of memory");
        free(text);
    } else {
        s_text(doc);
    }
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = kz_cli_error("report", "unable to write the output: %s", strerror(errno));
    if (html && rc == KZ_EXIT_OK)
        rc = s_write_html(html, doc);
    json_decref(doc);
    return rc;
}

const kz_cli_cmd_t kz_cmd_report = {
    "report", "the improvement report: activity, failures, restarts, health",
    s_usage,  s_run,
    true,     s_opt_tables,
    NULL,
};
