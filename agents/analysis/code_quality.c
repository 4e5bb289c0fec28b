/*  code_quality.c - kaizen-code-quality, the quality snapshot of each scan
    (layer "analysis")

    A member of queue group "analysis.quality" on scan.completed: one
    member handles each scan. It waits until the orchestrator's recorder
    has stored all the scan's findings (kz_store_wait_scan), reads them
    back and publishes analysis.result {scan_id, kind "quality", summary}
    (envelope target = the scan's target, corr = scan_id); the recorder
    stores the summary in code_quality_snapshots (metrics), and its keys
    overall_score, security_score, performance_score, documentation_score
    and complexity_score in the columns of the same name. docs/analysis.md
    explains the figures; in short:

      weight        info 0.5, low 1, medium 2, high 4, critical 8
      kloc          loc / 1000 from scan.completed, at least 1
      density       weighted findings per kloc (of an area: of its findings)
      rating        A <= 1 < B <= 3 < C <= 10 < D <= 20 < E
                    capped for reliability and security: a high finding of
                    category bug, security or secret makes the area (and
                    overall) at best C, a critical one at best D
      score         0..100, piecewise linear in the density through
                    (0, 100) (1, 90) (3, 75) (10, 50) (20, 25) (40, 0), so
                    that the rating bands are score bands; capped with the
                    rating (C: at most 75, D: at most 50)

    The summary (every key always present unless said otherwise):
      target, commit (when known), status       of the scan
      findings, files, files_with_findings, loc, kloc
      weighted, density_per_kloc (findings per kloc),
      weighted_density_per_kloc
      by_severity   {info, low, medium, high, critical: count}
      by_category   {category: count} for the categories present
      areas         {area: {findings, weighted, density, rating, score}}
                    for each category present and "overall"
      ratings       {area: "A".."E"}, the same ratings in short
      rating        the overall rating
      rating_label  the rating as shown: "C", or "A (partial: mypy error)"
      partial       the scan may miss findings: its status is partial
                    (or failed), or a tool of tools[] has a status other
                    than ok and skipped
      partial_tools when partial: [{name, status, error}] of those tools
      overall_score the overall score
      security_score, performance_score, documentation_score,
      complexity_score   only when a tool covering that area ran in the
                    scan (its config category or a rule override says so)
                    or findings of the area exist: security counts the
                    categories security and secret, the others
                    performance, docs and complexity
      trend         {direction: "new"} for the target's first snapshot,
                    else {direction improved | worse | same | unknown,
                    previous_scan_id, previous_score, previous_findings,
                    delta_findings, delta_score}: against the latest
                    complete snapshot (else the latest partial one) the
                    score decides, and at an equal score the number of
                    findings; with a partial side only what the missing
                    findings cannot explain is claimed, else "unknown"
                    with a reason (s_direction); previous_partial: true
                    against a partial snapshot
      worst_files   up to ten {file, findings, weighted, by_severity
                    {severity: count, non-zero ones}}, most weighted first

    Failed scans are skipped, and so are reused ones (code-health answered
    with a stored scan, which has its snapshot). When the findings are not all stored in time
    or the database is unreachable, the delivery is handed back (NACK) so
    that it is tried again, here or by another member; a scan already
    snapshotted (code_quality_snapshots, or this process's memory) is not
    snapshotted again.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kz_recipe.h"
#include "kz_agent.h"
#include "kz_db.h"
#include "kz_finding.h"
#include "kz_log.h"
#include "kz_store.h"

#define S_GROUP       "analysis.quality"
#define S_PREFIX      "scan.completed"
#define S_APP         "kaizen-code-quality"
#define S_WAIT_MS     120000 /* for the recorder to store a scan's findings */
#define S_WORST_FILES 10
#define S_DONE_MAX    256 /* scan ids remembered as done */
#define S_ID_MAX      128
#define S_BACKOFF_MS  2000 /* before handing a delivery back after a database error */

static const char *const s_severities[] = {"info", "low", "medium", "high", "critical"};
static const double s_weights[] = {0.5, 1, 2, 4, 8};
#define S_NSEV 5

/* The score curve: density -> score, linear between the points */
static const double s_curve[][2] = {{0, 100}, {1, 90}, {3, 75}, {10, 50}, {20, 25}, {40, 0}};
#define S_NCURVE (sizeof s_curve / sizeof s_curve[0])

typedef struct {
    kz_store_t *store;
    char done[S_DONE_MAX][S_ID_MAX + 1]; /* a ring of scan ids snapshotted */
    size_t done_next;
} s_self_t;

/* What is counted per area and per file */
typedef struct {
    const char *name; /* borrowed from the findings */
    long count;
    double weighted;
    long sev[S_NSEV];
} s_tally_t;

typedef struct {
    s_tally_t *items;
    size_t count, cap;
} s_tallies_t;

/* ------------------------------------------------------------ helpers */

static int s_sev_index(const char *severity)
{
    for (int i = 0; i < S_NSEV; i++)
        if (severity && strcmp(severity, s_severities[i]) == 0)
            return i;
    return 1; /* the protocol allows nothing else; count the unknown as low */
}

/* The tally named NAME in LIST, added when missing; NULL out of memory */
static s_tally_t *s_tally(s_tallies_t *list, const char *name)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].name, name) == 0)
            return &list->items[i];
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        s_tally_t *items = realloc(list->items, cap * sizeof *items);
        if (!items)
            return NULL;
        list->items = items;
        list->cap = cap;
    }
    s_tally_t *t = &list->items[list->count++];
    memset(t, 0, sizeof *t);
    t->name = name;
    return t;
}

static void s_count(s_tally_t *t, int sev)
{
    t->count++;
    t->sev[sev]++;
    t->weighted += s_weights[sev];
}

/* Worst first: most weighted, then most findings, then by name */
static int s_tally_cmp(const void *a, const void *b)
{
    const s_tally_t *x = a, *y = b;
    if (x->weighted != y->weighted)
        return x->weighted > y->weighted ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The rating letter of a weighted density */
static char s_rating(double density)
{
    return density <= 1    ? 'A'
           : density <= 3  ? 'B'
           : density <= 10 ? 'C'
           : density <= 20 ? 'D'
                           : 'E';
}

static double s_score(double density)
{
    if (density <= 0)
        return 100;
    for (size_t i = 1; i < S_NCURVE; i++)
        if (density <= s_curve[i][0]) {
            double x0 = s_curve[i - 1][0], y0 = s_curve[i - 1][1];
            double x1 = s_curve[i][0], y1 = s_curve[i][1];
            return y0 + (density - x0) * (y1 - y0) / (x1 - x0);
        }
    return 0;
}

static double s_round1(double v)
{
    return round(v * 10) / 10;
}

/* Categories whose high / critical findings cap the rating (reliability
   and security, as SonarQube rates them by their worst issue) */
static bool s_caps(const char *category)
{
    return strcmp(category, "bug") == 0 || strcmp(category, "security") == 0 ||
           strcmp(category, "secret") == 0;
}

/* The rating and score of an area with WEIGHTED findings, capped by CAP
   ('A' = no cap) */
static void s_grade(double weighted, double kloc, char cap, char *rating, double *score)
{
    double density = weighted / kloc;
    char r = s_rating(density);
    double s = s_score(density);
    if (cap > r)
        r = cap;
    if (cap == 'C' && s > 75)
        s = 75;
    if (cap == 'D' && s > 50)
        s = 50;
    *rating = r;
    *score = s_round1(s);
}

/* The cap of a tally of category NAME */
static char s_cap_of(const char *category, const long *sev)
{
    if (!s_caps(category))
        return 'A';
    return sev[4] > 0 ? 'D' : sev[3] > 0 ? 'C' : 'A';
}

/* True when a tool that ran in the scan (scan.completed tools[], status
   ok) covers CATEGORY (or ALSO, may be NULL) per the local config */
static bool s_covered(const kz_config_t *cfg, const kz_val_t *tools, const char *category,
                      const char *also)
{
    if (!tools || tools->type != KZ_VAL_ARRAY)
        return false;
    for (uint32_t i = 0; i < tools->u.arr.count; i++) {
        const kz_val_t *t = &tools->u.arr.items[i];
        const char *name = kz_map_str(t, "name");
        const char *status = kz_map_str(t, "status");
        if (!name || !status || strcmp(status, "ok") != 0)
            continue;
        const kz_tool_config_t *tool = kz_config_tool(cfg, name);
        if (!tool)
            continue;
        const char *cat = tool->category ? tool->category : "style";
        if (strcmp(cat, category) == 0 || (also && strcmp(cat, also) == 0))
            return true;
        for (size_t r = 0; r < tool->rules_count; r++) {
            const char *rc = tool->rules[r].category;
            if (rc && (strcmp(rc, category) == 0 || (also && strcmp(rc, also) == 0)))
                return true;
        }
    }
    return false;
}

/* ------------------------------------------------------- idempotency */

static bool s_done_here(const s_self_t *self, const char *scan_id)
{
    for (size_t i = 0; i < S_DONE_MAX; i++)
        if (strcmp(self->done[i], scan_id) == 0)
            return true;
    return false;
}

static void s_remember(s_self_t *self, const char *scan_id)
{
    snprintf(self->done[self->done_next], sizeof self->done[0], "%s", scan_id);
    self->done_next = (self->done_next + 1) % S_DONE_MAX;
}

/* 1 when SCAN_ID already has a snapshot, 0 when not, -1 with ERR */
static int s_done_in_db(s_self_t *self, const char *scan_id, char *err, size_t errlen)
{
    PGconn *db = kz_store_db(self->store, err, errlen);
    if (!db)
        return -1;
    const char *params[] = {scan_id};
    PGresult *res =
        kz_db_exec(db, "SELECT EXISTS (SELECT 1 FROM code_quality_snapshots WHERE scan_id = $1)", 1,
                   params, err, errlen);
    if (!res) {
        kz_store_reset(self->store);
        return -1;
    }
    int rc = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return rc;
}

/* ------------------------------------------------------------- trend */

typedef struct {
    bool found;
    char scan_id[S_ID_MAX + 1];
    double score;
    bool have_score;
    long findings;
    bool have_findings;
    bool partial;
} s_prev_t;

/* The snapshot of another scan of TARGET to compare with: the latest
   complete one, else the latest partial one. 0 / -1 with ERR */
static int s_previous(s_self_t *self, const char *target, const char *scan_id, s_prev_t *prev,
                      char *err, size_t errlen)
{
    memset(prev, 0, sizeof *prev);
    PGconn *db = kz_store_db(self->store, err, errlen);
    if (!db)
        return -1;
    const char *params[] = {target, scan_id};
    PGresult *res = kz_db_exec(db,
                               "SELECT scan_id, overall_score, metrics->>'findings', partial FROM "
                               "code_quality_snapshots WHERE target = $1 AND scan_id IS DISTINCT "
                               "FROM $2 ORDER BY partial, created_at DESC, id DESC LIMIT 1",
                               2, params, err, errlen);
    if (!res) {
        kz_store_reset(self->store);
        return -1;
    }
    if (PQntuples(res) == 1 && PQnfields(res) == 4) {
        prev->found = true;
        prev->partial = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
        snprintf(prev->scan_id, sizeof prev->scan_id, "%s",
                 PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
        if (!PQgetisnull(res, 0, 1)) {
            prev->have_score = true;
            prev->score = strtod(PQgetvalue(res, 0, 1), NULL);
        }
        if (!PQgetisnull(res, 0, 2)) {
            char *end;
            long n = strtol(PQgetvalue(res, 0, 2), &end, 10);
            /* stored from an analysis.result (bus input): a negative
               count would overflow the delta below */
            if (*end == '\0' && end != PQgetvalue(res, 0, 2) && n >= 0) {
                prev->have_findings = true;
                prev->findings = n;
            }
        }
    }
    PQclear(res);
    return 0;
}

/* ------------------------------------------------------------ partial */

#define S_LABEL_TOOLS 3 /* tools named in a rating label; then "and N more" */

/* Whether a scan of STATUS with TOOLS (scan.completed tools[], may be
   NULL) is partial - its status says so, or a tool did not run clean -
   and the rating label: "A", or "A (partial: mypy error, black missing)",
   or "A (partial)" when no tool says why */
static bool s_partial(const char *status, const kz_val_t *tools, char rating, char *label,
                      size_t len)
{
    bool partial = status && (strcmp(status, "partial") == 0 || strcmp(status, "failed") == 0);
    size_t named = 0, unclean = 0, used = (size_t)snprintf(label, len, "%c", rating);
    for (uint32_t i = 0; tools && tools->type == KZ_VAL_ARRAY && i < tools->u.arr.count; i++) {
        const kz_val_t *t = &tools->u.arr.items[i];
        const char *name = kz_map_str(t, "name");
        const char *st = kz_map_str(t, "status");
        if (kz_tool_outcome(st) != KZ_TOOL_FAILED)
            continue;
        partial = true;
        unclean++;
        if (named < S_LABEL_TOOLS && used < len) {
            used += (size_t)snprintf(label + used, len - used, "%s%s %s",
                                     named ? ", " : " (partial: ", name ? name : "?",
                                     st ? st : "unknown");
            named++;
        }
    }
    if (unclean > named && used < len)
        used += (size_t)snprintf(label + used, len - used, " and %zu more", unclean - named);
    if (partial && used < len)
        snprintf(label + used, len - used, "%s", named ? ")" : " (partial)");
    return partial;
}

/* summary.partial_tools: {name, status, error} of each tool of TOOLS that
   did not run clean. 0 / -1 */
static int s_put_partial_tools(kz_msg_t *msg, kz_val_t *sum, const kz_val_t *tools)
{
    kz_val_t *arr = kz_map_put_array(msg, sum, "partial_tools");
    if (!arr)
        return -1;
    for (uint32_t i = 0; tools && tools->type == KZ_VAL_ARRAY && i < tools->u.arr.count; i++) {
        const kz_val_t *t = &tools->u.arr.items[i];
        const char *st = kz_map_str(t, "status");
        if (kz_tool_outcome(st) != KZ_TOOL_FAILED)
            continue;
        const char *name = kz_map_str(t, "name");
        const char *error = kz_map_str(t, "error");
        kz_val_t *o = kz_array_push(msg, arr);
        if (!o)
            return -1;
        kz_val_set_map(o);
        if (kz_map_put_str(msg, o, "name", name ? name : "?") != 0 ||
            kz_map_put_str(msg, o, "status", st ? st : "unknown") != 0 ||
            (error && kz_map_put_str(msg, o, "error", error) != 0))
            return -1;
    }
    return 0;
}

/* The trend's direction from the raw comparison RAW ("improved", "worse",
   "same") when the current scan (PARTIAL) or the previous one
   (PREV_PARTIAL) may miss findings. A partial scan's score is an upper
   bound of what a complete one would give (missing tools can only add
   findings): a partial scan that already scores worse than a complete
   previous one is worse, and a complete scan that scores better than a
   partial previous one is better; anything else is "unknown", with
   *WHY saying so. */
static const char *s_direction(const char *raw, bool partial, bool prev_partial, const char **why)
{
    *why = NULL;
    if (!partial && !prev_partial)
        return raw;
    if (partial && !prev_partial && strcmp(raw, "worse") == 0)
        return raw;
    if (!partial && prev_partial && strcmp(raw, "improved") == 0)
        return raw;
    *why = partial && prev_partial ? "this scan and the previous one are partial: the findings "
                                     "of the tools that did not run are unknown"
           : partial ? "this scan is partial: the findings of the tools that did not run could "
                       "explain it"
                     : "the previous scan is partial: the findings its tools missed could "
                       "explain it";
    return "unknown";
}

/* ----------------------------------------------------------- snapshot */

typedef struct {
    const char *scan_id;
    const char *target;
    const char *commit;
    const char *status;
    long files;
    long loc;
    const kz_val_t *tools; /* scan.completed tools[] */
} s_scan_t;

/* The severity counts SEV as a map in SLOT; ALL: zeros too. 0 / -1 */
static int s_put_sev(kz_msg_t *msg, kz_val_t *map, const long *sev, bool all)
{
    for (int i = 0; i < S_NSEV; i++)
        if ((all || sev[i] > 0) && kz_map_put_int(msg, map, s_severities[i], sev[i]) != 0)
            return -1;
    return 0;
}

/* One entry of "areas" */
static int s_put_area(kz_msg_t *msg, kz_val_t *areas, const char *name, long count, double weighted,
                      double kloc, char rating, double score)
{
    kz_val_t *a = kz_map_put_map(msg, areas, name);
    char r[2] = {rating, '\0'};
    if (!a || kz_map_put_int(msg, a, "findings", count) != 0 ||
        kz_map_put_float(msg, a, "weighted", weighted) != 0 ||
        kz_map_put_float(msg, a, "density", round(weighted / kloc * 100) / 100) != 0 ||
        kz_map_put_str(msg, a, "rating", r) != 0 || kz_map_put_float(msg, a, "score", score) != 0)
        return -1;
    return 0;
}

/* Build the analysis.result of SCAN from its FINDINGS. The message, or
   NULL (out of memory, logged). LABEL_OUT (256 bytes: the rating label),
   *SCORE_OUT and *DIRECTION_OUT get the figures for the log line. */
static kz_msg_t *s_snapshot(const kz_config_t *cfg, const s_scan_t *scan,
                            const kz_findings_t *findings, const s_prev_t *prev, char *label_out,
                            double *score_out, const char **direction_out)
{
    s_tallies_t cats = {0}, files = {0};
    long sev[S_NSEV] = {0};
    double weighted = 0;
    char cap = 'A';
    kz_msg_t *msg = NULL;

    for (size_t i = 0; i < findings->count; i++) {
        const kz_finding_t *f = &findings->items[i];
        int s = s_sev_index(f->severity);
        sev[s]++;
        weighted += s_weights[s];
        s_tally_t *c = s_tally(&cats, f->category ? f->category : "style");
        s_tally_t *fl = s_tally(&files, f->file ? f->file : "");
        if (!c || !fl)
            goto oom;
        s_count(c, s);
        s_count(fl, s);
    }
    double kloc = scan->loc > 1000 ? scan->loc / 1000.0 : 1.0;
    for (size_t i = 0; i < cats.count; i++) {
        char c = s_cap_of(cats.items[i].name, cats.items[i].sev);
        if (c > cap)
            cap = c;
    }
    char rating;
    double score;
    s_grade(weighted, kloc, cap, &rating, &score);

    msg = kz_msg_new("analysis.result");
    if (!msg)
        goto oom;
    if (kz_msg_set_target(msg, scan->target) != 0 || kz_msg_set_corr(msg, scan->scan_id) != 0)
        goto oom;
    kz_val_t *body = kz_msg_body(msg);
    if (kz_map_put_str(msg, body, "scan_id", scan->scan_id) != 0 ||
        kz_map_put_str(msg, body, "kind", "quality") != 0)
        goto oom;
    /* the summary is the body's last key: its slot stays valid */
    kz_val_t *sum = kz_map_put_map(msg, body, "summary");
    if (!sum)
        goto oom;
    int rc = kz_map_put_str(msg, sum, "target", scan->target);
    if (scan->commit && *scan->commit)
        rc |= kz_map_put_str(msg, sum, "commit", scan->commit);
    rc |= kz_map_put_str(msg, sum, "status", scan->status);
    rc |= kz_map_put_int(msg, sum, "findings", (int64_t)findings->count);
    rc |= kz_map_put_int(msg, sum, "files", scan->files);
    rc |= kz_map_put_int(msg, sum, "files_with_findings", (int64_t)files.count);
    rc |= kz_map_put_int(msg, sum, "loc", scan->loc);
    rc |= kz_map_put_float(msg, sum, "kloc", kloc);
    rc |= kz_map_put_float(msg, sum, "weighted", weighted);
    rc |= kz_map_put_float(msg, sum, "density_per_kloc",
                           round((double)findings->count / kloc * 100) / 100);
    rc |=
        kz_map_put_float(msg, sum, "weighted_density_per_kloc", round(weighted / kloc * 100) / 100);
    if (rc != 0)
        goto oom;

    kz_val_t *m = kz_map_put_map(msg, sum, "by_severity");
    if (!m || s_put_sev(msg, m, sev, true) != 0)
        goto oom;
    m = kz_map_put_map(msg, sum, "by_category");
    if (!m)
        goto oom;
    for (size_t i = 0; i < cats.count; i++)
        if (kz_map_put_int(msg, m, cats.items[i].name, cats.items[i].count) != 0)
            goto oom;

    /* areas: each category present, then overall */
    char *ratings = calloc(cats.count + 1, 1);
    double *scores = calloc(cats.count + 1, sizeof *scores);
    kz_val_t *areas = kz_map_put_map(msg, sum, "areas");
    rc = !ratings || !scores || !areas ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < cats.count; i++) {
        const s_tally_t *c = &cats.items[i];
        s_grade(c->weighted, kloc, s_cap_of(c->name, c->sev), &ratings[i], &scores[i]);
        rc = s_put_area(msg, areas, c->name, c->count, c->weighted, kloc, ratings[i], scores[i]);
    }
    if (rc == 0)
        rc =
            s_put_area(msg, areas, "overall", (long)findings->count, weighted, kloc, rating, score);
    kz_val_t *rmap = rc == 0 ? kz_map_put_map(msg, sum, "ratings") : NULL;
    rc = rmap ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < cats.count; i++) {
        char r[2] = {ratings[i], '\0'};
        rc = kz_map_put_str(msg, rmap, cats.items[i].name, r);
    }
    char r1[2] = {rating, '\0'};
    if (rc == 0)
        rc = kz_map_put_str(msg, rmap, "overall", r1);
    free(ratings);
    free(scores);
    if (rc != 0 || kz_map_put_str(msg, sum, "rating", r1) != 0 ||
        kz_map_put_float(msg, sum, "overall_score", score) != 0)
        goto oom;
    /* a partial scan's rating is never a plain letter */
    char label[256];
    bool partial = s_partial(scan->status, scan->tools, rating, label, sizeof label);
    if (kz_map_put_str(msg, sum, "rating_label", label) != 0 ||
        kz_map_put_bool(msg, sum, "partial", partial) != 0 ||
        (partial && s_put_partial_tools(msg, sum, scan->tools) != 0))
        goto oom;

    /* the seed's per-area score columns, where this scan says something */
    static const struct {
        const char *key, *category, *also;
    } columns[] = {
        {"security_score", "security", "secret"},
        {"performance_score", "performance", NULL},
        {"documentation_score", "docs", NULL},
        {"complexity_score", "complexity", NULL},
    };
    for (size_t k = 0; k < sizeof columns / sizeof columns[0]; k++) {
        long n = 0;
        double w = 0;
        long csev[S_NSEV] = {0};
        for (size_t i = 0; i < cats.count; i++) {
            const s_tally_t *c = &cats.items[i];
            if (strcmp(c->name, columns[k].category) == 0 ||
                (columns[k].also && strcmp(c->name, columns[k].also) == 0)) {
                n += c->count;
                w += c->weighted;
                for (int s = 0; s < S_NSEV; s++)
                    csev[s] += c->sev[s];
            }
        }
        if (n == 0 && !s_covered(cfg, scan->tools, columns[k].category, columns[k].also))
            continue;
        char cr;
        double cs;
        s_grade(w, kloc, s_cap_of(columns[k].category, csev), &cr, &cs);
        if (kz_map_put_float(msg, sum, columns[k].key, cs) != 0)
            goto oom;
    }

    /* trend */
    kz_val_t *trend = kz_map_put_map(msg, sum, "trend");
    if (!trend)
        goto oom;
    const char *direction = "new", *why = NULL;
    if (prev->found) {
        double dscore = prev->have_score ? s_round1(score - prev->score) : 0;
        long dfind = prev->have_findings ? (long)findings->count - prev->findings : 0;
        direction = dscore > 0   ? "improved"
                    : dscore < 0 ? "worse"
                    : dfind < 0  ? "improved"
                    : dfind > 0  ? "worse"
                                 : "same";
        direction = s_direction(direction, partial, prev->partial, &why);
        rc = kz_map_put_str(msg, trend, "previous_scan_id", prev->scan_id);
        if (prev->partial)
            rc |= kz_map_put_bool(msg, trend, "previous_partial", true);
        if (why)
            rc |= kz_map_put_str(msg, trend, "reason", why);
        if (prev->have_score) {
            rc |= kz_map_put_float(msg, trend, "previous_score", prev->score);
            rc |= kz_map_put_float(msg, trend, "delta_score", dscore);
        }
        if (prev->have_findings) {
            rc |= kz_map_put_int(msg, trend, "previous_findings", prev->findings);
            rc |= kz_map_put_int(msg, trend, "delta_findings", dfind);
        }
        if (rc != 0)
            goto oom;
    }
    if (kz_map_put_str(msg, trend, "direction", direction) != 0)
        goto oom;

    /* the ten worst files (none for a scan without findings: no array) */
    if (files.count > 0)
        qsort(files.items, files.count, sizeof *files.items, s_tally_cmp);
    kz_val_t *worst = kz_map_put_array(msg, sum, "worst_files");
    if (!worst)
        goto oom;
    for (size_t i = 0; i < files.count && i < S_WORST_FILES; i++) {
        const s_tally_t *fl = &files.items[i];
        kz_val_t *w = kz_array_push(msg, worst);
        if (!w)
            goto oom;
        kz_val_set_map(w);
        if (kz_map_put_str(msg, w, "file", fl->name) != 0 ||
            kz_map_put_int(msg, w, "findings", fl->count) != 0 ||
            kz_map_put_float(msg, w, "weighted", fl->weighted) != 0)
            goto oom;
        kz_val_t *bs = kz_map_put_map(msg, w, "by_severity");
        if (!bs || s_put_sev(msg, bs, fl->sev, false) != 0)
            goto oom;
    }

    free(cats.items);
    free(files.items);
    snprintf(label_out, 256, "%s", label);
    *score_out = score;
    *direction_out = direction;
    return msg;
oom:
    kz_error("out of memory building the quality snapshot of scan '%s'", scan->scan_id);
    free(cats.items);
    free(files.items);
    kz_msg_destroy(&msg);
    return NULL;
}

/* ------------------------------------------------------------ handler */
/* Give up on SCAN_ID for now: log ERR and wait a moment (answering bus
   heartbeats) before the delivery is handed back, so that a database
   hiccup does not spend every redelivery within a second. -1 (NACK) */
static int s_postpone(kz_agent_t *agent, const char *scan_id, const char *err, bool pause)
{
    kz_error("quality snapshot of scan '%s' postponed: %s", scan_id, err);
    for (int i = 0; pause && i < S_BACKOFF_MS / 200 && !kz_agent_stopping(agent); i++) {
        kz_agent_keepalive(agent);
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *d, void *arg)
{
    s_self_t *self = arg;
    if (d->kind != KZ_DELIVERY_GROUP || strcmp(kz_msg_type(d->msg), "scan.completed") != 0)
        return 0;
    const kz_config_t *cfg = kz_agent_config(agent);
    const kz_val_t *body = kz_msg_body_const(d->msg);
    const char *scan_id = kz_map_str(body, "scan_id");
    const char *status = kz_map_str(body, "status");
    if (!kz_id_valid(scan_id)) {
        kz_warn("scan.completed from '%s' with an invalid scan_id: ignored", kz_msg_src(d->msg));
        return 0;
    }
    if (status && strcmp(status, "failed") == 0) {
        const char *why = kz_map_str(body, "error");
        kz_info("scan '%s' failed (%s): no quality snapshot", scan_id,
                why ? why : "no reason given");
        return 0;
    }
    if (kz_map_bool(body, "reused", false)) {
        /* the stored scan answered again (PROTOCOL.md 4.9): it has its
           snapshot, or gets it from its own scan.completed */
        kz_info("scan '%s' answered again from the stored scan (reused): no new snapshot", scan_id);
        return 0;
    }
    if (s_done_here(self, scan_id)) {
        kz_info("scan '%s' already snapshotted: skipped", scan_id);
        return 0;
    }
    char err[1024];
    char commit[128] = "", target[256] = "";
    const char *etarget = kz_msg_target(d->msg);
    if (etarget && *etarget)
        snprintf(target, sizeof target, "%s", etarget);
    const char *bcommit = kz_map_str(body, "commit");
    if (bcommit)
        snprintf(commit, sizeof commit, "%s", bcommit);

    long expected = (long)kz_map_int(body, "findings", 0);
    if (expected < 0)
        expected = 0;
    if (kz_store_wait_scan(self->store, scan_id, expected, S_WAIT_MS, kz_agent_wait_tick, agent,
                           err, sizeof err) != 0) {
        return s_postpone(agent, scan_id, err, false); /* waited long enough */
    }
    int done = s_done_in_db(self, scan_id, err, sizeof err);
    if (done < 0) {
        return s_postpone(agent, scan_id, err, true);
    }
    if (done) {
        kz_info("scan '%s' already has a quality snapshot: skipped", scan_id);
        s_remember(self, scan_id);
        return 0;
    }
    if (!*target || !*commit) {
        char c2[128], t2[256];
        if (kz_store_scan_info(self->store, scan_id, c2, sizeof c2, t2, sizeof t2, err,
                               sizeof err) != 0) {
            return s_postpone(agent, scan_id, err, true);
        }
        if (!*target)
            snprintf(target, sizeof target, "%s", t2);
        if (!*commit)
            snprintf(commit, sizeof commit, "%s", c2);
    }
    if (!*target || !kz_config_target(cfg, target)) {
        kz_warn("scan '%s' is of %s%s%s: no quality snapshot", scan_id,
                *target ? "target '" : "no target", target, *target ? "', not in the config" : "");
        return 0;
    }

    kz_findings_t findings;
    kz_findings_init(&findings);
    if (kz_store_findings(self->store, scan_id, &findings, err, sizeof err) != 0) {
        kz_findings_free(&findings);
        return s_postpone(agent, scan_id, err, true);
    }
    s_prev_t prev;
    if (s_previous(self, target, scan_id, &prev, err, sizeof err) != 0) {
        kz_findings_free(&findings);
        return s_postpone(agent, scan_id, err, true);
    }
    s_scan_t scan = {
        .scan_id = scan_id,
        .target = target,
        .commit = commit,
        .status = status ? status : "ok",
        .files = (long)kz_map_int(body, "files", 0),
        .loc = (long)kz_map_int(body, "loc", 0),
        .tools = kz_map_get(body, "tools"),
    };
    if (scan.loc < 0)
        scan.loc = 0;
    char label[256] = "?";
    double score = 0;
    const char *direction = "";
    kz_msg_t *msg = s_snapshot(cfg, &scan, &findings, &prev, label, &score, &direction);
    size_t nfindings = findings.count;
    kz_findings_free(&findings);
    if (!msg)
        return -1;
    if (kz_agent_publish(agent, &msg) != 0) {
        kz_msg_destroy(&msg);
        kz_error("unable to publish the quality snapshot of scan '%s'", scan_id);
        return -1;
    }
    s_remember(self, scan_id);
    if (prev.found)
        kz_info("quality of '%s' (scan %s): rating %s, score %.1f, %zu findings, trend %s against "
                "scan %s",
                target, scan_id, label, score, nfindings, direction, prev.scan_id);
    else
        kz_info("quality of '%s' (scan %s): rating %s, score %.1f, %zu findings, first snapshot",
                target, scan_id, label, score, nfindings);
    return 0;
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    s_self_t *self = arg;
    self->store = kz_store_new(kz_agent_config(agent), S_APP);
    if (!self->store)
        return kz_fail("out of memory");
    return kz_bus_join(kz_agent_bus(agent), S_GROUP, S_PREFIX);
}

int main(int argc, char **argv)
{
    static s_self_t self;
    const kz_agent_def_t def = {
        .name = "code-quality",
        .layer = "analysis",
        .summary = "quality snapshot of every scan: counts, density, A-E ratings, trend, worst "
                   "files",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = &self,
    };
    int rc = kz_agent_main(argc, argv, &def);
    kz_store_destroy(&self.store);
    return rc;
}
