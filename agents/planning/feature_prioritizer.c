/*  feature_prioritizer.c - kaizen-feature-prioritizer (layer "planning")

    Ranks the plans of one scan. Member of the queue group
    "planning.prioritizer" on plan.batch (PROTOCOL.md 4.11a), so one
    prioritizer decides on all the plans of a scan together.

    Each plan is scored

        score = impact x confidence / max(effort, 0.01) - risk

    where confidence is the mean, over the plan's rules, of the
    success_rate of learned_patterns row `fixer|rule|language|target`
    (0.5 for a pattern never seen, and for a plan without rules): a fixer
    that keeps failing on a rule sinks in the ranking.

    A plan is dropped, with its reason in plan.ranked, when
      - it is malformed: a bad plan id, a fixer that is not in the local
        config, a file outside the target, an unusable fingerprint;
      - its plan id was already ranked (a redelivered batch): "already
        ranked: plan X is ready";
      - its findings (fingerprints) overlap those of a plan of the same
        target that is open (ready, awaiting_approval, approved,
        executing, executed, validating) or accepted: "duplicate of
        accepted plan X (fingerprints ...)" - plans still "proposed" are
        only proposals (this batch's own, or another batch's not yet
        ranked) and do not count;
      - its findings overlap a plan that was rejected at the same base
        commit, or failed there with a cause trying again cannot mend
        (nothing_to_do, suite, fixer: kz_store_cause_settles): "already rejected
        at this commit: plan X", "already failed at this commit
        (nothing_to_do): plan X" (at a newer commit the code changed, so
        it may be tried again; a plan that failed for the machinery - a
        timeout, a lost reply - may be tried again at once). The plan a
        plan was split from (split_from: a grouped plan retried file by
        file) does not count here. The planner
        proposes none of these (kz_store_covered): this is the safety net
        for plans proposed at the same moment by another planner;
      - it overlaps a plan of the same batch ranked above it;
      - a limit is reached: policy.max_open_plans (plans not yet final,
        over all targets, counting the ones ready now) or
        policy.max_plans_per_hour (plan.ready published in the last hour
        over all targets, from plan_transitions): "max_open_plans (20)
        reached". Both limits are global because they protect what is
        shared: the executor, the validators and the people who review.
    The recorder stores asynchronously, so a plan.ready sent a moment ago
    may not be in the database yet: the prioritizer also remembers the
    plans it published as ready during the last hour (in memory, per
    process) and counts them for duplicates and limits until the database
    knows better.

    The kept plans go out as plan.ready in rank order (rank 1..n, every
    field of the plan kept, the rationale extended with the score), then
    plan.ranked {scan_id, ready, dropped}. All database reads happen
    before anything is published: database unreachable -> the delivery is
    NACKed and tried again later.
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kz_agent.h"
#include "kz_db.h"
#include "kz_finding.h"
#include "kz_log.h"
#include "kz_recipe.h"
#include "kz_store.h"

#define S_GROUP         "planning.prioritizer"
#define S_TOPIC         "plan.batch"
#define S_HOUR_US       (3600LL * 1000000LL)
#define S_UNKNOWN_RATE  0.5
#define S_MIN_EFFORT    0.01
#define S_SHOWN_FPS     3
#define S_DB_WAIT_MS    30000 /* for an unreachable database, before NACKing */
#define S_DB_RETRY_MS   500
#define S_RANKED_BUDGET (384 * 1024) /* bytes for the reasons of one plan.ranked */
/* A plan of the batch */
typedef struct {
    const kz_val_t *map; /* in the plan.batch message */
    const char *plan_id;
    const char *fixer;
    const char *base_commit; /* "" when absent */
    const char *rationale;   /* NULL when absent */
    const char *split_from;  /* the grouped plan it was split from, NULL when none */
    char language[64];
    const char **fps; /* sorted */
    size_t nfps;
    const char **rules;
    size_t nrules;
    double impact, effort, risk, confidence, score;
    size_t order; /* position in the batch */
    char *drop;   /* why it is dropped (malloc'd), NULL when kept */
} s_plan_t;

/* A plan this process published as ready */
typedef struct {
    char *plan_id;
    char *target;
    char **fps; /* sorted */
    size_t nfps;
    int64_t at_us;
} s_sent_t;

typedef struct {
    const kz_config_t *cfg;
    kz_store_t *store;
    s_sent_t *sent;
    size_t nsent;
    size_t capsent;
    bool lost; /* the last query failed because the connection broke */
} s_prio_t;

/* A row of improvement_suggestions whose fingerprints overlap the batch */
typedef struct {
    const char *plan_id;
    const char *status;
    const char *base_commit;
    const char *cause; /* of a failed or rejected plan, "" when unknown */
    char **fps;        /* the overlapping ones, sorted */
    size_t nfps;
} s_conflict_t;

/* A plan id and its status in improvement_suggestions */
typedef struct {
    const char *plan_id;
    const char *status;
} s_status_t;

/* What the database says, for one batch */
typedef struct {
    PGresult *rates, *conflicts_res, *open_res, *hour_res, *status_res;
    s_conflict_t *conflicts;
    size_t nconflicts;
} s_db_view_t;

/* --------------------------------------------------------------- helpers */

static bool s_valid_token(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* malloc'd printf; NULL on out of memory */
static char *s_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Set PLAN's drop reason (the first one wins). 0 / -1 */
static int s_drop(s_plan_t *plan, char *reason)
{
    if (!reason)
        return kz_fail("out of memory");
    if (plan->drop)
        free(reason);
    else
        plan->drop = reason;
    return 0;
}

/* The fingerprints both sorted lists A and B hold, into OUT (at most
   S_SHOWN_FPS shown, then "and N more"); returns how many */
static size_t s_overlap(const char *const *a, size_t na, const char *const *b, size_t nb, char *out,
                        size_t len)
{
    size_t i = 0, j = 0, n = 0, used = 0;
    if (len)
        out[0] = '\0';
    while (i < na && j < nb) {
        int c = strcmp(a[i], b[j]);
        if (c < 0)
            i++;
        else if (c > 0)
            j++;
        else {
            if (n < S_SHOWN_FPS && used < len)
                used += (size_t)snprintf(out + used, len - used, "%s%s", n ? ", " : "", a[i]);
            n++;
            i++;
            j++;
        }
    }
    if (n > S_SHOWN_FPS && used < len)
        snprintf(out + used, len - used, " and %zu more", n - S_SHOWN_FPS);
    return n;
}

/* The strings of the array VAL into a malloc'd vector (pointing into the
   message); NULL with *N = 0 for an empty or absent array, NULL with
   *BAD set on out of memory or a non-string item */
static const char **s_strs(const kz_val_t *val, size_t *n, bool *bad)
{
    *n = 0;
    if (!val || val->type != KZ_VAL_ARRAY || val->u.arr.count == 0)
        return NULL;
    const char **v = malloc(val->u.arr.count * sizeof *v);
    if (!v) {
        *bad = true;
        return NULL;
    }
    for (uint32_t i = 0; i < val->u.arr.count; i++) {
        const kz_val_t *item = &val->u.arr.items[i];
        if (item->type != KZ_VAL_STR) {
            free(v);
            *bad = true;
            return NULL;
        }
        v[(*n)++] = item->u.str.ptr;
    }
    return v;
}

/* ------------------------------------------------------- remembered plans */

static void s_sent_free(s_sent_t *s)
{
    free(s->plan_id);
    free(s->target);
    for (size_t i = 0; i < s->nfps; i++)
        free(s->fps[i]);
    free(s->fps);
}

/* Forget what was published as ready more than an hour ago */
static void s_sent_prune(s_prio_t *self, int64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nsent; i++) {
        if (now - self->sent[i].at_us > S_HOUR_US)
            s_sent_free(&self->sent[i]);
        else
            self->sent[n++] = self->sent[i];
    }
    self->nsent = n;
}

/* Remember PLAN as published ready for TARGET now. 0 / -1 */
static int s_sent_add(s_prio_t *self, const s_plan_t *plan, const char *target)
{
    if (self->nsent == self->capsent) {
        size_t cap = self->capsent ? 2 * self->capsent : 64;
        s_sent_t *v = realloc(self->sent, cap * sizeof *v);
        if (!v)
            return kz_fail("out of memory");
        self->sent = v;
        self->capsent = cap;
    }
    s_sent_t s = {strdup(plan->plan_id), strdup(target), calloc(plan->nfps + 1, sizeof(char *)), 0,
                  kz_now_us()};
    bool ok = s.plan_id && s.target && s.fps;
    for (size_t i = 0; ok && i < plan->nfps; i++, s.nfps++)
        ok = (s.fps[i] = strdup(plan->fps[i])) != NULL;
    if (!ok) {
        s_sent_free(&s);
        return kz_fail("out of memory");
    }
    self->sent[self->nsent++] = s;
    return 0;
}

static const s_sent_t *s_sent_find(const s_prio_t *self, const char *plan_id)
{
    for (size_t i = 0; i < self->nsent; i++)
        if (strcmp(self->sent[i].plan_id, plan_id) == 0)
            return &self->sent[i];
    return NULL;
}

/* --------------------------------------------------------------- parsing */

/* Read and check the plan map VAL into PLAN (a failed check sets
   plan->drop). 0 / -1 (out of memory) */
static int s_parse_plan(const kz_config_t *cfg, const kz_target_config_t *target,
                        const kz_val_t *val, size_t order, s_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->map = val;
    plan->order = order;
    plan->plan_id = kz_map_str(val, "plan_id");
    plan->fixer = kz_map_str(val, "fixer");
    plan->base_commit = kz_map_str(val, "base_commit") ? kz_map_str(val, "base_commit") : "";
    plan->rationale = kz_map_str(val, "rationale");
    plan->split_from = kz_map_str(val, "split_from");
    plan->impact = kz_map_float(val, "impact", 0);
    plan->effort = kz_map_float(val, "effort", 1);
    plan->risk = kz_map_float(val, "risk", 0);
    bool oom = false;
    plan->fps = s_strs(kz_map_get(val, "findings"), &plan->nfps, &oom);
    plan->rules = s_strs(kz_map_get(val, "rules"), &plan->nrules, &oom);
    if (oom)
        return kz_fail("out of memory");
    if (plan->fps)
        qsort(plan->fps, plan->nfps, sizeof *plan->fps, s_cmp_str);
    size_t nfiles = 0;
    const char **files = s_strs(kz_map_get(val, "files"), &nfiles, &oom);
    if (oom)
        return kz_fail("out of memory");
    const char *lang = kz_map_str(val, "language");
    snprintf(plan->language, sizeof plan->language, "%s",
             lang && *lang ? lang : (nfiles ? kz_language_of(files[0]) : "text"));

    int rc = 0;
    char why[512];
    if (!s_valid_token(plan->plan_id, 128)) {
        rc = s_drop(plan, s_fmt("plan id '%.128s' is not an id ([A-Za-z0-9_-], at most 128)",
                                plan->plan_id ? plan->plan_id : ""));
        plan->plan_id = "?";
    } else if (!plan->fixer || !kz_config_fixer(cfg, plan->fixer))
        rc = s_drop(plan, s_fmt("fixer '%.255s' is not in the configuration",
                                plan->fixer ? plan->fixer : ""));
    else if (nfiles == 0)
        rc = s_drop(plan, s_fmt("the plan names no file"));
    else if (plan->nfps == 0)
        rc = s_drop(plan, s_fmt("the plan names no finding"));
    else if (!isfinite(plan->impact) || !isfinite(plan->effort) || !isfinite(plan->risk) ||
             plan->effort < 0)
        rc = s_drop(plan, s_fmt("impact, effort or risk is not a usable number"));
    for (size_t i = 0; rc == 0 && !plan->drop && i < nfiles; i++)
        if (!kz_path_inside(target->path, files[i], why, sizeof why))
            rc = s_drop(plan, s_fmt("file outside the target: %s", why));
    for (size_t i = 0; rc == 0 && !plan->drop && i < plan->nfps; i++)
        if (!s_valid_token(plan->fps[i], 64))
            rc = s_drop(plan, s_fmt("fingerprint '%.64s' is not usable ([A-Za-z0-9_-], at most "
                                    "64)",
                                    plan->fps[i]));
    free(files);
    return rc;
}

static void s_plans_free(s_plan_t *plans, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(plans[i].fps);
        free(plans[i].rules);
        free(plans[i].drop);
    }
    free(plans);
}

/* -------------------------------------------------------------- database */

static void s_view_free(s_db_view_t *view)
{
    PQclear(view->rates);
    PQclear(view->conflicts_res);
    PQclear(view->open_res);
    PQclear(view->hour_res);
    PQclear(view->status_res);
    for (size_t i = 0; i < view->nconflicts; i++)
        free(view->conflicts[i].fps);
    free(view->conflicts);
    memset(view, 0, sizeof *view);
}

/* Run SQL; on failure log what failed and forget a broken connection */
static PGresult *s_query(s_prio_t *self, PGconn *db, const char *what, const char *sql, int n,
                         const char *const *params)
{
    char err[512];
    PGresult *res = kz_db_exec(db, sql, n, params, err, sizeof err);
    if (!res) {
        if (PQstatus(db) != CONNECTION_OK) {
            /* the caller waits for the database and tries again */
            kz_warn("unable to read %s: %s", what, err);
            kz_store_reset(self->store);
            self->lost = true;
        } else
            kz_error("unable to read %s: %s", what, err);
    }
    return res;
}

/* Split the comma-separated FPS (a column value, modified in place) into
   a sorted vector. 0 / -1 */
static int s_split_fps(char *fps, s_conflict_t *c)
{
    size_t n = 1;
    for (const char *p = fps; *p; p++)
        n += *p == ',';
    c->fps = malloc(n * sizeof *c->fps);
    if (!c->fps)
        return kz_fail("out of memory");
    c->nfps = 0;
    for (char *save = NULL, *tok = strtok_r(fps, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        c->fps[c->nfps++] = tok;
    qsort(c->fps, c->nfps, sizeof *c->fps, s_cmp_str);
    return 0;
}

/* Read everything the batch's decisions need. 0, -1 (logged), or -2
   when the database is unreachable (ERR says why) */
static int s_read_db(s_prio_t *self, const char *target, const s_plan_t *plans, size_t n,
                     s_db_view_t *view, char *err, size_t errlen)
{
    self->lost = false;
    PGconn *db = kz_store_db(self->store, err, errlen);
    if (!db)
        return -2;
    /* every pattern, fingerprint and plan id the batch names */
    size_t npat = 0, nfp = 0, nid = 0;
    for (size_t i = 0; i < n; i++) {
        npat += plans[i].nrules;
        nfp += plans[i].nfps;
    }
    char **patterns = calloc(npat + 1, sizeof *patterns);
    const char **fps = calloc(nfp + 1, sizeof *fps);
    const char **ids = calloc(n + self->nsent + 1, sizeof *ids);
    char *pat_arr = NULL, *fp_arr = NULL, *id_arr = NULL;
    int rc = -1;
    bool in_tx = false;
    if (!patterns || !fps || !ids) {
        kz_fail("out of memory");
        goto done;
    }
    npat = nfp = 0;
    for (size_t i = 0; i < n; i++) {
        if (plans[i].drop)
            continue;
        for (size_t r = 0; r < plans[i].nrules; r++)
            if (!(patterns[npat++] = s_fmt("%s|%s|%s|%s", plans[i].fixer, plans[i].rules[r],
                                           plans[i].language, target))) {
                kz_fail("out of memory");
                goto done;
            }
        for (size_t f = 0; f < plans[i].nfps; f++)
            fps[nfp++] = plans[i].fps[f];
        ids[nid++] = plans[i].plan_id;
    }
    for (size_t i = 0; i < self->nsent; i++)
        ids[nid++] = self->sent[i].plan_id;
    pat_arr = kz_db_text_array((const char *const *)patterns, npat);
    fp_arr = kz_db_text_array(fps, nfp);
    id_arr = kz_db_text_array(ids, nid);
    if (!pat_arr || !fp_arr || !id_arr) {
        kz_fail("out of memory");
        goto done;
    }

    /* one snapshot for every read: the recorder stores meanwhile, and a
       plan it stores between two reads (absent from the conflicts, present
       in the statuses) would slip past both the database's check and this
       process's memory of what it made ready */
    PGresult *tx = s_query(self, db, "a snapshot",
                           "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL);
    if (!tx)
        goto done;
    PQclear(tx);
    in_tx = true;
    const char *p1[] = {pat_arr};
    view->rates = s_query(self, db, "learned_patterns",
                          "SELECT pattern, success_rate FROM learned_patterns WHERE pattern = "
                          "ANY($1::text[]) AND success_rate IS NOT NULL",
                          1, p1);
    if (!view->rates)
        goto done;
    const char *p2[] = {target, fp_arr};
    view->conflicts_res = s_query(
        self, db, "the plans sharing findings with the batch",
        "SELECT plan_id, status, COALESCE(implementation_plan->>'base_commit', ''), "
        "array_to_string(ARRAY(SELECT jsonb_array_elements_text(implementation_plan->'findings') "
        "INTERSECT SELECT unnest($2::text[]) ORDER BY 1), ','), COALESCE(cause, '') FROM "
        "improvement_suggestions "
        "WHERE target = $1 AND plan_id IS NOT NULL AND status IN (" KZ_STORE_OPEN_STATES
        ", 'accepted', 'rejected', 'failed') AND jsonb_typeof(implementation_plan->'findings') = "
        "'array' AND implementation_plan->'findings' ?| $2::text[] ORDER BY id",
        2, p2);
    if (!view->conflicts_res)
        goto done;
    view->open_res = s_query(self, db, "the open plans",
                             "SELECT plan_id FROM improvement_suggestions WHERE plan_id IS NOT "
                             "NULL AND status IN (" KZ_STORE_OPEN_STATES ")",
                             0, NULL);
    if (!view->open_res)
        goto done;
    view->hour_res = s_query(self, db, "the plans made ready in the last hour",
                             "SELECT DISTINCT plan_id FROM plan_transitions WHERE state = 'ready' "
                             "AND at > now() - interval '1 hour'",
                             0, NULL);
    if (!view->hour_res)
        goto done;
    const char *p3[] = {id_arr};
    view->status_res = s_query(self, db, "the status of known plans",
                               "SELECT plan_id, status FROM improvement_suggestions WHERE plan_id "
                               "= ANY($1::text[])",
                               1, p3);
    if (!view->status_res)
        goto done;
    tx = s_query(self, db, "the end of the snapshot", "COMMIT", 0, NULL);
    if (!tx)
        goto done;
    PQclear(tx);
    in_tx = false;

    int rows = PQntuples(view->conflicts_res);
    view->conflicts = calloc((size_t)rows + 1, sizeof *view->conflicts);
    if (!view->conflicts) {
        kz_fail("out of memory");
        goto done;
    }
    for (int r = 0; r < rows; r++) {
        s_conflict_t *c = &view->conflicts[view->nconflicts++];
        c->plan_id = PQgetvalue(view->conflicts_res, r, 0);
        c->status = PQgetvalue(view->conflicts_res, r, 1);
        c->base_commit = PQgetvalue(view->conflicts_res, r, 2);
        c->cause = PQgetvalue(view->conflicts_res, r, 4);
        if (s_split_fps(PQgetvalue(view->conflicts_res, r, 3), c) != 0)
            goto done;
    }
    rc = 0;
done:
    if (in_tx && !self->lost) {
        /* a read failed inside the snapshot: end it, so the connection
           serves the next batch */
        PGresult *rb = PQexec(db, "ROLLBACK");
        PQclear(rb);
    }
    if (rc != 0 && self->lost) {
        snprintf(err, errlen, "the connection to the database broke");
        rc = -2;
    }
    for (size_t i = 0; patterns && i < npat; i++)
        free(patterns[i]);
    free(patterns);
    free(fps);
    free(ids);
    free(pat_arr);
    free(fp_arr);
    free(id_arr);
    return rc;
}

/* s_read_db, waiting up to S_DB_WAIT_MS for an unreachable database to
   come back (a restart), so a short outage does not burn the delivery's
   attempts (broker.max_deliveries) in a few milliseconds. 0 / -1 */
static int s_read_db_wait(kz_agent_t *agent, s_prio_t *self, const char *target,
                          const s_plan_t *plans, size_t n, s_db_view_t *view)
{
    char err[512] = "";
    int64_t deadline = kz_now_us() + (int64_t)S_DB_WAIT_MS * 1000;
    for (int attempt = 0;; attempt++) {
        int rc = s_read_db(self, target, plans, n, view, err, sizeof err);
        if (rc != -2)
            return rc;
        s_view_free(view);
        if (attempt == 0)
            kz_warn("database unreachable, waiting up to %d s for it: %s", S_DB_WAIT_MS / 1000,
                    err);
        if (kz_now_us() >= deadline || kz_agent_stopping(agent))
            break;
        for (int i = 0; i < S_DB_RETRY_MS / 100; i++) {
            kz_agent_keepalive(agent);
            struct timespec ts = {0, 100L * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    kz_error("database unreachable for %d s: %s", S_DB_WAIT_MS / 1000, err);
    return -1;
}

/* The status of PLAN_ID in the database, or NULL when it has no row */
static const char *s_db_status(const s_db_view_t *view, const char *plan_id)
{
    for (int r = 0; r < PQntuples(view->status_res); r++)
        if (strcmp(PQgetvalue(view->status_res, r, 0), plan_id) == 0)
            return PQgetisnull(view->status_res, r, 1) ? "" : PQgetvalue(view->status_res, r, 1);
    return NULL;
}

/* True when the database does not know yet what became of a plan this
   process published as ready (no row, or still "proposed") */
static bool s_db_lags(const s_db_view_t *view, const char *plan_id)
{
    const char *st = s_db_status(view, plan_id);
    return !st || !*st || strcmp(st, "proposed") == 0;
}

/* -------------------------------------------------------------- deciding */

/* Mean success rate of PLAN's patterns (S_UNKNOWN_RATE for unknown ones) */
static double s_confidence(const s_plan_t *plan, const char *target, const s_db_view_t *view)
{
    if (plan->nrules == 0)
        return S_UNKNOWN_RATE;
    double sum = 0;
    for (size_t r = 0; r < plan->nrules; r++) {
        char pattern[1200];
        snprintf(pattern, sizeof pattern, "%s|%s|%s|%s", plan->fixer, plan->rules[r],
                 plan->language, target);
        double rate = S_UNKNOWN_RATE;
        for (int i = 0; i < PQntuples(view->rates); i++)
            if (strcmp(PQgetvalue(view->rates, i, 0), pattern) == 0) {
                rate = strtod(PQgetvalue(view->rates, i, 1), NULL);
                if (!isfinite(rate) || rate < 0 || rate > 1)
                    rate = S_UNKNOWN_RATE;
                break;
            }
        sum += rate;
    }
    return sum / (double)plan->nrules;
}

/* Drop PLAN when the database or this process's memory has a plan that
   makes it a duplicate. 0 / -1 (out of memory) */
static int s_check_known(const s_prio_t *self, s_plan_t *plan, const char *target,
                         const s_db_view_t *view)
{
    char shown[256];
    /* the same plan id again: a redelivered batch */
    const char *own = s_db_status(view, plan->plan_id);
    if (own && *own && strcmp(own, "proposed") != 0)
        return s_drop(plan, s_fmt("already ranked: plan %s is %s", plan->plan_id, own));
    if (s_sent_find(self, plan->plan_id))
        return s_drop(plan, s_fmt("already ranked: plan %s is ready", plan->plan_id));
    for (size_t i = 0; i < view->nconflicts; i++) {
        const s_conflict_t *c = &view->conflicts[i];
        if (strcmp(c->plan_id, plan->plan_id) == 0 ||
            !s_overlap(plan->fps, plan->nfps, (const char *const *)c->fps, c->nfps, shown,
                       sizeof shown))
            continue;
        if (strcmp(c->status, "accepted") == 0)
            return s_drop(
                plan, s_fmt("duplicate of accepted plan %s (fingerprints %s)", c->plan_id, shown));
        if (kz_store_is_open(c->status))
            return s_drop(plan, s_fmt("duplicate of open plan %s, %s (fingerprints %s)", c->plan_id,
                                      c->status, shown));
        /* at the same commit a rejection stands, and so does a failure
           that trying again cannot mend; after a failure of the machinery
           (a timeout, a lost reply) the plan may be tried again. A plan
           split from a grouped plan retries that plan's findings file by
           file on purpose: its parent does not settle them */
        bool parent = plan->split_from && strcmp(plan->split_from, c->plan_id) == 0;
        if (!parent && strcmp(c->base_commit, plan->base_commit) == 0 &&
            (strcmp(c->status, "rejected") == 0 || kz_store_cause_settles(c->cause)))
            return s_drop(plan,
                          s_fmt("already %s at this commit%s%s%s: plan %s", c->status,
                                *c->cause ? " (" : "", c->cause, *c->cause ? ")" : "", c->plan_id));
    }
    for (size_t i = 0; i < self->nsent; i++) {
        const s_sent_t *s = &self->sent[i];
        if (strcmp(s->target, target) != 0 || !s_db_lags(view, s->plan_id) ||
            !s_overlap(plan->fps, plan->nfps, (const char *const *)s->fps, s->nfps, shown,
                       sizeof shown))
            continue;
        return s_drop(
            plan, s_fmt("duplicate of open plan %s, ready (fingerprints %s)", s->plan_id, shown));
    }
    return 0;
}

/* Plans not yet final now (over all targets): the database's open plans
   and the ones this process made ready that the database does not show
   yet */
static long s_open_now(const s_prio_t *self, const s_db_view_t *view)
{
    long n = PQntuples(view->open_res);
    for (size_t i = 0; i < self->nsent; i++)
        if (s_db_lags(view, self->sent[i].plan_id))
            n++;
    return n;
}

/* plan.ready published in the last hour (over all targets) */
static long s_ready_last_hour(const s_prio_t *self, const s_db_view_t *view)
{
    long n = PQntuples(view->hour_res);
    for (size_t i = 0; i < self->nsent; i++) {
        bool seen = false;
        for (int r = 0; !seen && r < PQntuples(view->hour_res); r++)
            seen = strcmp(PQgetvalue(view->hour_res, r, 0), self->sent[i].plan_id) == 0;
        if (!seen)
            n++;
    }
    return n;
}

/* Best score first; ties by impact, then batch order */
static int s_cmp_rank(const void *a, const void *b)
{
    const s_plan_t *p = *(const s_plan_t *const *)a, *q = *(const s_plan_t *const *)b;
    if (p->score != q->score)
        return p->score < q->score ? 1 : -1;
    if (p->impact != q->impact)
        return p->impact < q->impact ? 1 : -1;
    return (p->order > q->order) - (p->order < q->order);
}

/* ------------------------------------------------------------- messages */

static kz_msg_t *s_new_msg(const char *type, const char *target, const char *scan_id)
{
    kz_msg_t *msg = kz_msg_new(type);
    if (msg &&
        ((target && kz_msg_set_target(msg, target) != 0) || kz_msg_set_corr(msg, scan_id) != 0))
        kz_msg_destroy(&msg);
    return msg;
}

/* plan.ready for PLAN at RANK: every field of the plan, rank set, the
   rationale extended with the score */
static kz_msg_t *s_ready_msg(const s_plan_t *plan, long rank, const char *target,
                             const char *scan_id)
{
    kz_msg_t *msg = s_new_msg("plan.ready", target, scan_id);
    if (!msg)
        return NULL;
    kz_val_t *body = kz_msg_body(msg);
    for (uint32_t i = 0; i < plan->map->u.map.count; i++) {
        const kz_kv_t *kv = &plan->map->u.map.items[i];
        if (strcmp(kv->key.u.str.ptr, "rank") == 0 || strcmp(kv->key.u.str.ptr, "rationale") == 0)
            continue;
        kz_val_t *slot = kz_map_putn(msg, body, kv->key.u.str.ptr, kv->key.u.str.len);
        if (!slot || kz_val_copy(msg, slot, &kv->val) != 0) {
            kz_msg_destroy(&msg);
            return NULL;
        }
    }
    char *why = s_fmt("%s%sscore %.2f = impact %g x confidence %.2f / effort %g - risk %g",
                      plan->rationale ? plan->rationale : "", plan->rationale ? "; " : "",
                      plan->score, plan->impact, plan->confidence, plan->effort, plan->risk);
    if (!why || kz_map_put_int(msg, body, "rank", rank) != 0 ||
        kz_map_put_str(msg, body, "rationale", why) != 0)
        kz_msg_destroy(&msg);
    free(why);
    return msg;
}

/* plan.ranked: the ready plan ids in rank order, the dropped with why */
static kz_msg_t *s_ranked_msg(s_plan_t *const *ranked, size_t nready, const s_plan_t *plans,
                              size_t n, const char *target, const char *scan_id)
{
    kz_msg_t *msg = s_new_msg("plan.ranked", target, scan_id);
    if (!msg)
        return NULL;
    kz_val_t *body = kz_msg_body(msg);
    if (kz_map_put_str(msg, body, "scan_id", scan_id) != 0)
        goto oom;
    kz_val_t *ready = kz_map_put_array(msg, body, "ready");
    if (!ready)
        goto oom;
    for (size_t i = 0; i < nready; i++) {
        kz_val_t *v = kz_array_push(msg, ready);
        if (!v || kz_val_set_str(msg, v, ranked[i]->plan_id) != 0)
            goto oom;
    }
    kz_val_t *dropped = kz_map_put_array(msg, body, "dropped");
    if (!dropped)
        goto oom;
    /* a batch of thousands of plans must still give a plan.ranked within
       the message size: the reasons get shorter */
    size_t reason_max = S_RANKED_BUDGET / (n + 1);
    reason_max = reason_max < 48 ? 48 : reason_max > 2048 ? 2048 : reason_max;
    for (size_t i = 0; i < n; i++) {
        if (!plans[i].drop)
            continue;
        kz_val_t *m = kz_array_push(msg, dropped);
        if (!m)
            goto oom;
        kz_val_set_map(m);
        size_t len = strlen(plans[i].drop);
        if (len > reason_max) {
            /* cut at a character boundary */
            len = reason_max;
            while (len > 0 && ((unsigned char)plans[i].drop[len] & 0xC0) == 0x80)
                len--;
        }
        kz_val_t *reason = NULL;
        if (kz_map_put_str(msg, m, "plan_id", plans[i].plan_id) != 0 ||
            !(reason = kz_map_put(msg, m, "reason")) ||
            kz_val_set_strn(msg, reason, plans[i].drop, len) != 0)
            goto oom;
    }
    return msg;
oom:
    kz_msg_destroy(&msg);
    return NULL;
}

/* -------------------------------------------------------------- handler */

/* Rank the plans of one plan.batch. 0 (done: ack), -1 (NACK) */
static int s_rank(kz_agent_t *agent, s_prio_t *self, const kz_msg_t *msg)
{
    const kz_val_t *body = kz_msg_body_const(msg);
    const char *scan_id = kz_map_str(body, "scan_id");
    const char *target = kz_msg_target(msg);
    const kz_val_t *arr = kz_map_get(body, "plans");
    if (!s_valid_token(scan_id, 128) || !arr || arr->type != KZ_VAL_ARRAY) {
        kz_error("ignoring plan.batch from '%s': scan_id '%.128s' is not an id or plans is "
                 "missing",
                 kz_msg_src(msg), scan_id ? scan_id : "");
        return 0;
    }
    const kz_target_config_t *tcfg = target ? kz_config_target(self->cfg, target) : NULL;
    size_t n = arr->u.arr.count;
    s_plan_t *plans = calloc(n + 1, sizeof *plans);
    s_plan_t **ranked = calloc(n + 1, sizeof *ranked);
    s_db_view_t view;
    memset(&view, 0, sizeof view);
    int rc = -1;
    size_t invalid = 0, known = 0;
    if (!plans || !ranked) {
        kz_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const kz_val_t *p = &arr->u.arr.items[i];
        if (!tcfg) {
            plans[i].plan_id = kz_map_str(p, "plan_id") ? kz_map_str(p, "plan_id") : "?";
            if (s_drop(&plans[i], s_fmt("target '%.255s' is not in the configuration",
                                        target ? target : "")) != 0)
                goto done;
        } else if (s_parse_plan(self->cfg, tcfg, p, i, &plans[i]) != 0)
            goto done;
        if (plans[i].drop && ++invalid <= 5)
            kz_warn("plan %.128s of scan %s dropped: %s", plans[i].plan_id, scan_id, plans[i].drop);
    }

    s_sent_prune(self, kz_now_us());
    long open_now = 0, ready_hour = 0;
    if (invalid < n) {
        if (s_read_db_wait(agent, self, target, plans, n, &view) != 0) {
            kz_error("scan %s: unable to rank its %zu plans now, trying again later", scan_id, n);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            if (plans[i].drop)
                continue;
            if (s_check_known(self, &plans[i], target, &view) != 0)
                goto done;
            if (plans[i].drop) {
                known++;
                kz_debug("plan %s (%s) dropped: %s", plans[i].plan_id, plans[i].fixer,
                         plans[i].drop);
            }
            plans[i].confidence = s_confidence(&plans[i], target, &view);
            double effort = plans[i].effort > S_MIN_EFFORT ? plans[i].effort : S_MIN_EFFORT;
            plans[i].score = plans[i].impact * plans[i].confidence / effort - plans[i].risk;
        }
        open_now = s_open_now(self, &view);
        ready_hour = s_ready_last_hour(self, &view);
    }

    /* rank what is left, then drop duplicates within the batch and
       what the limits do not allow, in rank order */
    size_t ncand = 0, nready = 0;
    for (size_t i = 0; i < n; i++)
        if (!plans[i].drop)
            ranked[ncand++] = &plans[i];
    qsort(ranked, ncand, sizeof *ranked, s_cmp_rank);
    const kz_policy_config_t *pol = &self->cfg->policy;
    size_t dup = 0, limited = 0;
    for (size_t i = 0; i < ncand; i++) {
        s_plan_t *p = ranked[i];
        char shown[256];
        for (size_t k = 0; !p->drop && k < nready; k++) {
            if (strcmp(ranked[k]->plan_id, p->plan_id) == 0) {
                if (s_drop(p, s_fmt("the plan id %s appears twice in the batch", p->plan_id)) != 0)
                    goto done;
            } else if (s_overlap(p->fps, p->nfps, ranked[k]->fps, ranked[k]->nfps, shown,
                                 sizeof shown) &&
                       s_drop(p, s_fmt("duplicate of plan %s of this batch (fingerprints %s)",
                                       ranked[k]->plan_id, shown)) != 0)
                goto done;
        }
        if (p->drop) {
            dup++;
            continue;
        }
        if (open_now + (long)nready >= pol->max_open_plans) {
            if (s_drop(p, s_fmt("max_open_plans (%d) reached", pol->max_open_plans)) != 0)
                goto done;
            limited++;
            continue;
        }
        if (ready_hour + (long)nready >= pol->max_plans_per_hour) {
            if (s_drop(p, s_fmt("max_plans_per_hour (%d) reached", pol->max_plans_per_hour)) != 0)
                goto done;
            limited++;
            continue;
        }
        ranked[nready++] = p;
    }

    /* publish: plan.ready in rank order, then plan.ranked */
    for (size_t i = 0; i < nready; i++) {
        kz_msg_t *ready = s_ready_msg(ranked[i], (long)i + 1, target, scan_id);
        if (!ready) {
            kz_fail("out of memory building plan.ready");
            goto done;
        }
        if (kz_agent_publish(agent, &ready) != 0) {
            kz_error("unable to publish plan.ready %s", ranked[i]->plan_id);
            goto done;
        }
        if (s_sent_add(self, ranked[i], target) != 0)
            goto done;
        kz_agent_keepalive(agent);
    }
    kz_msg_t *out = s_ranked_msg(ranked, nready, plans, n, target, scan_id);
    if (!out) {
        kz_fail("out of memory building plan.ranked");
        goto done;
    }
    if (kz_agent_publish(agent, &out) != 0) {
        kz_error("unable to publish plan.ranked of scan %s", scan_id);
        goto done;
    }
    char limits[160] = "";
    if (view.open_res)
        snprintf(limits, sizeof limits, "; open plans %ld of %d, ready in the last hour %ld of %d",
                 open_now + (long)nready, pol->max_open_plans, ready_hour + (long)nready,
                 pol->max_plans_per_hour);
    kz_info("scan %s of '%s': %zu plans, %zu ready, %zu dropped (%zu invalid, %zu already "
            "planned, %zu duplicate in the batch, %zu over the limits)%s%s%s",
            scan_id, target ? target : "(none)", n, nready, n - nready, invalid, known, dup,
            limited, limits, nready ? "; first: " : "", nready ? ranked[0]->plan_id : "");
    rc = 0;
done:
    s_view_free(&view);
    free(ranked);
    if (plans)
        s_plans_free(plans, n);
    return rc;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *delivery, void *arg)
{
    s_prio_t *self = arg;
    if (delivery->kind != KZ_DELIVERY_GROUP || strcmp(kz_msg_type(delivery->msg), S_TOPIC) != 0)
        return 0;
    return s_rank(agent, self, delivery->msg);
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    s_prio_t *self = arg;
    self->cfg = kz_agent_config(agent);
    self->store = kz_store_new(self->cfg, "kaizen-feature-prioritizer");
    if (!self->store)
        return kz_fail("out of memory");
    return kz_bus_join(kz_agent_bus(agent), S_GROUP, S_TOPIC);
}

int main(int argc, char **argv)
{
    s_prio_t prio;
    memset(&prio, 0, sizeof prio);
    const kz_agent_def_t def = {
        .name = "feature-prioritizer",
        .layer = "planning",
        .summary = "ranks each scan's plans (impact x confidence / effort - risk), drops "
                   "duplicates, enforces the plan limits, publishes plan.ready",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = &prio,
    };
    int rc = kz_agent_main(argc, argv, &def);
    for (size_t i = 0; i < prio.nsent; i++)
        s_sent_free(&prio.sent[i]);
    free(prio.sent);
    kz_store_destroy(&prio.store);
    return rc;
}
