/*  improvement_planner.c - kaizen-improvement-planner (layer "planning")

    Turns the findings of a completed scan that a configured fixer can fix
    into plans. Member of the queue group "planning.planner" on
    scan.completed, so each scan is planned once whatever the number of
    planners. For a scan whose status is ok or partial (a reused one too:
    code-health answering with a stored scan) it waits until the recorder
    stored every finding of the scan (kz_store_wait_scan), loads them,
    leaves out those in files that are not the project's own code (a
    finding's `excluded` reason: vendored, generated, excluded by the
    project - they are logged with their reasons, never planned) and
    those a plan of the target already covers
    (kz_store_covered: open, accepted, rejected at this commit, or failed
    there with nothing_to_do, suite or fixer - after waiting until the recorder
    holds this planner's own last plan.batch of the target), and groups
    the fixable ones (kz_fixer_for) by (fixer, file): one plan per fixer
    and file (PROTOCOL.md 4.11):

      plan_id      a new ULID
      fixer        the fixer recipe's name
      files        [the file]
      findings     the fingerprints the fix should make disappear
      impact       sum of severity weights: info 0.5, low 1, medium 2,
                   high 4, critical 8
      effort       fixers[].effort x files
      risk         fixers[].risk
      rationale    "2 black findings (would-reformat) in pkg/a.py"
      scan_id, base_commit (the scan's commit), tool, rules, language
      (kz_language_of of the file)

    Publishes one plan.proposed per plan (envelope target = the scan's
    target, corr = scan_id), in file then fixer order, then ONE plan.batch
    {scan_id, plans} (also when empty) for the prioritizer. A failed scan
    gives nothing. A scan of a target that is not in the local config is
    refused (logged). At most S_MAX_PLANS plans per scan, and at most half
    of the bus's message size for the whole batch: the plans of highest
    impact are kept and what was cut is logged. Database unreachable, or
    the findings not all stored in time: the delivery is NACKed so it is
    tried again (here or at another planner).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_agent.h"
#include "kz_finding.h"
#include "kz_log.h"
#include "kz_recipe.h"
#include "kz_store.h"

#define S_GROUP   "planning.planner"
#define S_TOPIC   "scan.completed"
#define S_WAIT_MS 60000 /* for the recorder to store a scan's findings */
#define S_OWN_MS  30000 /* for the recorder to store our last plan.batch of a target */
/* Caps that keep plan.batch well under bus.max_message_size and the
   codec's max_count / max_items (PROTOCOL.md 3) */
#define S_MAX_PLANS           500
#define S_MAX_PLAN_FINDINGS   1000
#define S_MAX_RATIONALE_RULES 5
#define S_ITEMS_BUDGET        (200000 / 2)

/* The last plan.batch this process published for a target: before the
   next scan of that target is planned, the recorder must hold it (and so
   every plan.proposed before it), or plans proposed a moment ago would
   not count as covering their findings */
typedef struct {
    char target[256];
    char event_id[32];
} s_last_t;

#define S_LAST_MAX 64

typedef struct {
    const kz_config_t *cfg;
    kz_store_t *store;
    s_last_t last[S_LAST_MAX];
    size_t nlast;
} s_planner_t;

/* One plan: the findings of one fixer in one file */
typedef struct {
    const kz_fixer_config_t *fixer;
    const char *file;
    size_t *idx; /* indexes into the scan's findings, sorted by line */
    size_t count;
    const char **rules; /* distinct, sorted */
    size_t nrules;
    double impact;
    size_t size;  /* estimated encoded bytes */
    size_t items; /* estimated msgpack values */
    char plan_id[32];
    char rationale[1024];
} s_plan_t;

typedef struct {
    s_plan_t *items;
    size_t count;
} s_plans_t;

/* --------------------------------------------------------------- checks */

/* An id or fingerprint we accept from the bus or the database:
   1..MAX of [A-Za-z0-9_-] */
static bool s_valid_token(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static double s_severity_weight(const char *severity)
{
    switch (kz_severity_rank(severity)) {
    case 0:
        return 0.5;
    case 1:
        return 1;
    case 2:
        return 2;
    case 3:
        return 4;
    case 4:
        return 8;
    default:
        return 1;
    }
}

/* ------------------------------------------------------------- grouping */

typedef struct {
    const kz_findings_t *findings;
    const kz_fixer_config_t **fixers; /* per finding */
} s_sort_ctx_t;

static s_sort_ctx_t s_sort; /* qsort has no context argument in C11 */

/* By file, then fixer name, then line, col, fingerprint */
static int s_cmp_finding(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const kz_finding_t *f = &s_sort.findings->items[i], *g = &s_sort.findings->items[j];
    int c = strcmp(f->file, g->file);
    if (c == 0)
        c = strcmp(s_sort.fixers[i]->name, s_sort.fixers[j]->name);
    if (c == 0)
        c = (f->line > g->line) - (f->line < g->line);
    if (c == 0)
        c = (f->col > g->col) - (f->col < g->col);
    if (c == 0)
        c = strcmp(f->fingerprint, g->fingerprint);
    return c;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Highest impact first; ties by file, fixer (deterministic cut) */
static int s_cmp_impact(const void *a, const void *b)
{
    const s_plan_t *p = a, *q = b;
    if (p->impact != q->impact)
        return p->impact < q->impact ? 1 : -1;
    int c = strcmp(p->file, q->file);
    return c ? c : strcmp(p->fixer->name, q->fixer->name);
}

/* By file, then fixer: the order plans are published in */
static int s_cmp_file(const void *a, const void *b)
{
    const s_plan_t *p = a, *q = b;
    int c = strcmp(p->file, q->file);
    return c ? c : strcmp(p->fixer->name, q->fixer->name);
}

static void s_plans_free(s_plans_t *plans)
{
    for (size_t i = 0; i < plans->count; i++) {
        free(plans->items[i].idx);
        free(plans->items[i].rules);
    }
    free(plans->items);
    plans->items = NULL;
    plans->count = 0;
}

/* Fill the derived fields of PLAN: rules, impact, rationale, size */
static int s_plan_finish(s_plan_t *plan, const kz_findings_t *findings)
{
    plan->rules = malloc(plan->count * sizeof *plan->rules);
    if (!plan->rules)
        return kz_fail("out of memory");
    plan->impact = 0;
    size_t listed = plan->count < S_MAX_PLAN_FINDINGS ? plan->count : S_MAX_PLAN_FINDINGS;
    size_t size = 320 + 2 * strlen(plan->file) + 2 * strlen(plan->fixer->name) +
                  listed * (KZ_FINGERPRINT_LEN + 4);
    for (size_t i = 0; i < plan->count; i++) {
        const kz_finding_t *f = &findings->items[plan->idx[i]];
        plan->rules[i] = f->rule;
        plan->impact += s_severity_weight(f->severity);
    }
    qsort(plan->rules, plan->count, sizeof *plan->rules, s_cmp_str);
    size_t n = 0;
    for (size_t i = 0; i < plan->count; i++)
        if (n == 0 || strcmp(plan->rules[n - 1], plan->rules[i]) != 0)
            plan->rules[n++] = plan->rules[i];
    plan->nrules = n;
    for (size_t i = 0; i < n; i++)
        size += strlen(plan->rules[i]) + 3;

    /* "2 black findings (would-reformat) in pkg/a.py" */
    char rules[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && i < S_MAX_RATIONALE_RULES && used < sizeof rules; i++)
        used += (size_t)snprintf(rules + used, sizeof rules - used, "%s%s", i ? ", " : "",
                                 plan->rules[i]);
    if (n > S_MAX_RATIONALE_RULES && used < sizeof rules)
        snprintf(rules + used, sizeof rules - used, " and %zu more", n - S_MAX_RATIONALE_RULES);
    const char *tool = plan->fixer->tool;
    used = (size_t)snprintf(plan->rationale, sizeof plan->rationale, "%zu %s finding%s (%s) in %s",
                            plan->count, tool, plan->count == 1 ? "" : "s", rules, plan->file);
    if (listed < plan->count && used < sizeof plan->rationale)
        snprintf(plan->rationale + used, sizeof plan->rationale - used,
                 "; the first %zu fingerprints are listed", listed);
    size += 2 * strlen(plan->rationale);
    plan->size = size;
    plan->items = 2 * 16 + 1 + listed + n + 2;
    kz_ulid(plan->plan_id);
    return 0;
}

/* Take the findings whose file is set aside (their `excluded` reason:
   vendored, generated, excluded by the project) out of FINDINGS: no plan
   may touch them. *SET_ASIDE gets how many; one info line says how many
   files and why. */
static void s_drop_excluded(kz_findings_t *findings, const char *scan_id, size_t *set_aside)
{
    const char *reasons[8];
    size_t files[8], nreasons = 0, nfiles = 0;
    const char *last_file = NULL;
    *set_aside = 0;
    for (size_t i = 0; i < findings->count; i++) {
        const kz_finding_t *f = &findings->items[i];
        if (!f->excluded)
            continue;
        (*set_aside)++;
        /* the store gives them sorted by file: a new name is a new file */
        if (!last_file || strcmp(last_file, f->file) != 0) {
            nfiles++;
            size_t r = 0;
            while (r < nreasons && strcmp(reasons[r], f->excluded) != 0)
                r++;
            if (r == nreasons && nreasons < 8) {
                reasons[nreasons] = f->excluded;
                files[nreasons++] = 0;
            }
            if (r < nreasons)
                files[r]++;
        }
        last_file = f->file;
    }
    if (!*set_aside)
        return;
    char line[1024] = "";
    size_t o = 0;
    for (size_t r = 0; r < nreasons && o < sizeof line; r++) {
        int n =
            snprintf(line + o, sizeof line - o, "%s%zu %s", r ? ", " : "", files[r], reasons[r]);
        o += n > 0 ? (size_t)n : 0;
    }
    kz_info("scan %s: %zu findings in %zu files left unplanned, not the project's own code: %s",
            scan_id, *set_aside, nfiles, line);
    size_t kept = 0;
    for (size_t i = 0; i < findings->count; i++) {
        if (findings->items[i].excluded)
            kz_finding_clear(&findings->items[i]);
        else
            findings->items[kept++] = findings->items[i];
    }
    findings->count = kept;
}

/* Group the fixable findings of FINDINGS into PLANS (one per fixer and
   file). Findings no fixer fixes, or naming a path outside the target, or
   carrying a fingerprint we do not accept, are skipped (the latter two
   logged). 0 / -1 (out of memory) */
static int s_group(const kz_config_t *cfg, const kz_target_config_t *target,
                   const kz_findings_t *findings, s_plans_t *plans, size_t *unfixable)
{
    int rc = -1;
    const kz_fixer_config_t **fixers = calloc(findings->count + 1, sizeof *fixers);
    size_t *order = malloc((findings->count + 1) * sizeof *order);
    size_t n = 0, bad = 0;
    *unfixable = 0;
    plans->items = NULL;
    plans->count = 0;
    if (!fixers || !order) {
        kz_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < findings->count; i++) {
        const kz_finding_t *f = &findings->items[i];
        fixers[i] = kz_fixer_for(cfg, f->tool, f->rule);
        if (!fixers[i]) {
            (*unfixable)++;
            continue;
        }
        char why[512];
        if (!s_valid_token(f->fingerprint, 64)) {
            if (bad++ < 5)
                kz_warn("skipping a %s finding in '%s': unusable fingerprint '%.64s'", f->tool,
                        f->file, f->fingerprint);
            continue;
        }
        if (!kz_path_inside(target->path, f->file, why, sizeof why)) {
            if (bad++ < 5)
                kz_warn("skipping a %s finding: %s", f->tool, why);
            continue;
        }
        order[n++] = i;
    }
    if (bad > 5)
        kz_warn("skipped %zu unusable findings in all", bad);
    s_sort.findings = findings;
    s_sort.fixers = fixers;
    qsort(order, n, sizeof *order, s_cmp_finding);

    plans->items = calloc(n + 1, sizeof *plans->items);
    if (!plans->items) {
        kz_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        const kz_finding_t *f = &findings->items[order[i]];
        while (j < n && fixers[order[j]] == fixers[order[i]] &&
               strcmp(findings->items[order[j]].file, f->file) == 0)
            j++;
        s_plan_t *plan = &plans->items[plans->count++];
        plan->fixer = fixers[order[i]];
        plan->file = f->file;
        plan->count = j - i;
        plan->idx = malloc(plan->count * sizeof *plan->idx);
        if (!plan->idx) {
            kz_fail("out of memory");
            goto done;
        }
        memcpy(plan->idx, order + i, plan->count * sizeof *plan->idx);
        if (s_plan_finish(plan, findings) != 0)
            goto done;
        i = j;
    }
    rc = 0;
done:
    if (rc != 0)
        s_plans_free(plans);
    free(fixers);
    free(order);
    return rc;
}

/* Keep the plans of highest impact within S_MAX_PLANS and the size and
   item budgets of one plan.batch; log what was cut. Leaves PLANS sorted
   by file then fixer. */
static void s_cap(s_plans_t *plans, size_t max_bytes, const char *scan_id)
{
    if (plans->count == 0)
        return; /* nothing to cut (and maybe no array: qsort wants one) */
    qsort(plans->items, plans->count, sizeof *plans->items, s_cmp_impact);
    size_t bytes = 256, items = 8, keep = 0;
    while (keep < plans->count && keep < S_MAX_PLANS &&
           bytes + plans->items[keep].size <= max_bytes &&
           items + plans->items[keep].items <= S_ITEMS_BUDGET) {
        bytes += plans->items[keep].size;
        items += plans->items[keep].items;
        keep++;
    }
    if (keep < plans->count) {
        size_t cut_findings = 0;
        for (size_t i = keep; i < plans->count; i++)
            cut_findings += plans->items[i].count;
        kz_warn("scan %s: %zu plans, keeping the %zu of highest impact (at most %d plans and "
                "%zu bytes per plan.batch); cut %zu plans fixing %zu findings, impact %.1f and "
                "below",
                scan_id, plans->count, keep, S_MAX_PLANS, max_bytes, plans->count - keep,
                cut_findings, plans->items[keep].impact);
        for (size_t i = keep; i < plans->count; i++) {
            free(plans->items[i].idx);
            free(plans->items[i].rules);
        }
        plans->count = keep;
    }
    qsort(plans->items, plans->count, sizeof *plans->items, s_cmp_file);
}

/* ------------------------------------------------------------ messages */

static int s_put_strs(kz_msg_t *msg, kz_val_t *map, const char *key, const char *const *strs,
                      size_t n)
{
    kz_val_t *arr = kz_map_put_array(msg, map, key);
    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        kz_val_t *v = kz_array_push(msg, arr);
        if (!v || kz_val_set_str(msg, v, strs[i]) != 0)
            return -1;
    }
    return 0;
}

/* Write PLAN's fields into MAP (PROTOCOL.md 4.11). Each nested array is
   filled before the next key is added (kz_msg.h: slots move). 0 / -1 */
static int s_put_plan(kz_msg_t *msg, kz_val_t *map, const s_plan_t *plan,
                      const kz_findings_t *findings, const char *scan_id, const char *commit)
{
    if (kz_map_put_str(msg, map, "plan_id", plan->plan_id) != 0 ||
        kz_map_put_str(msg, map, "fixer", plan->fixer->name) != 0 ||
        s_put_strs(msg, map, "files", &plan->file, 1) != 0)
        return -1;
    kz_val_t *fps = kz_map_put_array(msg, map, "findings");
    if (!fps)
        return -1;
    for (size_t i = 0; i < plan->count && i < S_MAX_PLAN_FINDINGS; i++) {
        kz_val_t *v = kz_array_push(msg, fps);
        if (!v || kz_val_set_str(msg, v, findings->items[plan->idx[i]].fingerprint) != 0)
            return -1;
    }
    if (kz_map_put_float(msg, map, "impact", plan->impact) != 0 ||
        kz_map_put_float(msg, map, "effort", plan->fixer->effort * 1.0) != 0 ||
        kz_map_put_float(msg, map, "risk", plan->fixer->risk) != 0 ||
        kz_map_put_str(msg, map, "rationale", plan->rationale) != 0 ||
        kz_map_put_str(msg, map, "scan_id", scan_id) != 0 ||
        (*commit && kz_map_put_str(msg, map, "base_commit", commit) != 0) ||
        kz_map_put_str(msg, map, "tool", plan->fixer->tool) != 0 ||
        s_put_strs(msg, map, "rules", plan->rules, plan->nrules) != 0 ||
        kz_map_put_str(msg, map, "language", kz_language_of(plan->file)) != 0)
        return -1;
    return 0;
}

static kz_msg_t *s_new_msg(const char *type, const char *target, const char *scan_id)
{
    kz_msg_t *msg = kz_msg_new(type);
    if (msg && (kz_msg_set_target(msg, target) != 0 || kz_msg_set_corr(msg, scan_id) != 0))
        kz_msg_destroy(&msg);
    return msg;
}

/* Publish every plan.proposed, then the plan.batch (its envelope id into
   BATCH_ID). 0 / -1 */
static int s_publish(kz_agent_t *agent, const s_plans_t *plans, const kz_findings_t *findings,
                     const char *target, const char *scan_id, const char *commit, char batch_id[32])
{
    for (size_t i = 0; i < plans->count; i++) {
        kz_msg_t *msg = s_new_msg("plan.proposed", target, scan_id);
        if (!msg ||
            s_put_plan(msg, kz_msg_body(msg), &plans->items[i], findings, scan_id, commit) != 0) {
            kz_msg_destroy(&msg);
            return kz_fail("out of memory building plan.proposed");
        }
        if (kz_agent_publish(agent, &msg) != 0)
            return kz_fail("unable to publish plan.proposed %s", plans->items[i].plan_id);
        kz_agent_keepalive(agent);
    }
    kz_msg_t *batch = s_new_msg("plan.batch", target, scan_id);
    kz_val_t *arr = NULL;
    if (!batch || kz_map_put_str(batch, kz_msg_body(batch), "scan_id", scan_id) != 0 ||
        !(arr = kz_map_put_array(batch, kz_msg_body(batch), "plans"))) {
        kz_msg_destroy(&batch);
        return kz_fail("out of memory building plan.batch");
    }
    for (size_t i = 0; i < plans->count; i++) {
        kz_val_t *m = kz_array_push(batch, arr);
        if (!m) {
            kz_msg_destroy(&batch);
            return kz_fail("out of memory building plan.batch");
        }
        kz_val_set_map(m);
        if (s_put_plan(batch, m, &plans->items[i], findings, scan_id, commit) != 0) {
            kz_msg_destroy(&batch);
            return kz_fail("out of memory building plan.batch");
        }
    }
    snprintf(batch_id, 32, "%s", kz_msg_id(batch));
    if (kz_agent_publish(agent, &batch) != 0)
        return kz_fail("unable to publish plan.batch of scan %s", scan_id);
    return 0;
}

/* -------------------------------------------------------------- handler */
/* The slot of TARGET in SELF->last (added, or the oldest reused, when
   missing) */
static s_last_t *s_last_of(s_planner_t *self, const char *target, bool add)
{
    for (size_t i = 0; i < self->nlast; i++)
        if (strcmp(self->last[i].target, target) == 0)
            return &self->last[i];
    if (!add)
        return NULL;
    if (self->nlast == S_LAST_MAX) { /* many targets: forget the first */
        memmove(&self->last[0], &self->last[1], (S_LAST_MAX - 1) * sizeof self->last[0]);
        self->nlast--;
    }
    s_last_t *l = &self->last[self->nlast++];
    snprintf(l->target, sizeof l->target, "%s", target);
    l->event_id[0] = '\0';
    return l;
}

/* Drop from FINDINGS those a plan of TARGET already covers
   (kz_store_covered: open, accepted, or settled at COMMIT); only the ones
   a fixer fixes are asked about. *DROPPED gets how many. 0 / -1 with
   ERRBUF */
static int s_drop_covered(kz_agent_t *agent, s_planner_t *self, const char *target,
                          const char *commit, kz_findings_t *findings, size_t *dropped,
                          char *errbuf, size_t errlen)
{
    *dropped = 0;
    char err[384];
    /* our own plans of the last scan of this target first: they must be
       in the database to count */
    s_last_t *last = s_last_of(self, target, false);
    if (last && last->event_id[0]) {
        if (kz_store_wait_event(self->store, last->event_id, S_OWN_MS, kz_agent_wait_tick, agent,
                                err, sizeof err) != 0) {
            if (kz_agent_stopping(agent)) {
                snprintf(errbuf, errlen, "%s", err);
                return -1;
            }
            kz_warn("our last plans of '%s' are not in the database yet (%s): planning without "
                    "them (the prioritizer drops duplicates)",
                    target, err);
        }
        last->event_id[0] = '\0';
    }
    const char **fps = malloc((findings->count + 1) * sizeof *fps);
    size_t *idx = malloc((findings->count + 1) * sizeof *idx);
    bool *covered = malloc((findings->count + 1) * sizeof *covered);
    int rc = -1;
    if (!fps || !idx || !covered) {
        snprintf(errbuf, errlen, "out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t i = 0; i < findings->count; i++) {
        const kz_finding_t *f = &findings->items[i];
        if (kz_fixer_for(self->cfg, f->tool, f->rule) && s_valid_token(f->fingerprint, 64)) {
            fps[n] = f->fingerprint;
            idx[n++] = i;
        }
    }
    if (kz_store_covered(self->store, target, commit, fps, n, covered, err, sizeof err) != 0) {
        snprintf(errbuf, errlen, "unable to read the plans covering its findings: %s", err);
        goto done;
    }
    /* compact FINDINGS in place, keeping the order */
    size_t out = 0, k = 0;
    for (size_t i = 0; i < findings->count; i++) {
        bool drop = k < n && idx[k] == i && covered[k];
        if (k < n && idx[k] == i)
            k++;
        if (drop) {
            kz_finding_clear(&findings->items[i]);
            (*dropped)++;
            continue;
        }
        findings->items[out++] = findings->items[i];
    }
    findings->count = out;
    rc = 0;
done:
    free(fps);
    free(idx);
    free(covered);
    return rc;
}

/* Plan the scan of a scan.completed. 0 (done, or nothing to do: ack),
   -1 (try again later: NACK) */
static int s_plan_scan(kz_agent_t *agent, s_planner_t *self, const kz_msg_t *msg)
{
    const kz_val_t *body = kz_msg_body_const(msg);
    const char *scan_id = kz_map_str(body, "scan_id");
    const char *status = kz_map_str(body, "status");
    const char *target = kz_msg_target(msg);
    if (!s_valid_token(scan_id, 128)) {
        kz_error("ignoring scan.completed from '%s': scan_id '%.128s' is not an id "
                 "([A-Za-z0-9_-], at most 128)",
                 kz_msg_src(msg), scan_id ? scan_id : "");
        return 0;
    }
    const kz_target_config_t *tcfg = target ? kz_config_target(self->cfg, target) : NULL;
    if (!tcfg) {
        kz_error("ignoring scan %s: target '%s' is not in the configuration", scan_id,
                 target ? target : "(none)");
        return 0;
    }
    if (!status || strcmp(status, "failed") == 0) {
        kz_info("scan %s of '%s' failed (%s): nothing to plan", scan_id, target,
                kz_map_str(body, "error") ? kz_map_str(body, "error") : "no reason given");
        return 0;
    }
    long expected = (long)kz_map_int(body, "findings", 0);
    char err[512];
    kz_debug("scan %s: waiting for its %ld findings to be stored", scan_id, expected);
    if (kz_store_wait_scan(self->store, scan_id, expected, S_WAIT_MS, kz_agent_wait_tick, agent,
                           err, sizeof err) != 0) {
        kz_error("scan %s: %s; trying again later", scan_id, err);
        return -1;
    }
    kz_findings_t findings;
    kz_findings_init(&findings);
    if (kz_store_findings(self->store, scan_id, &findings, err, sizeof err) != 0) {
        kz_error("scan %s: unable to load its findings: %s; trying again later", scan_id, err);
        kz_findings_free(&findings);
        return -1;
    }
    char commit[128] = "";
    const char *c = kz_map_str(body, "commit");
    if (c && *c)
        snprintf(commit, sizeof commit, "%s", c);
    else {
        char t[256];
        if (kz_store_scan_info(self->store, scan_id, commit, sizeof commit, t, sizeof t, err,
                               sizeof err) != 0) {
            kz_error("scan %s: unable to read its commit: %s; trying again later", scan_id, err);
            kz_findings_free(&findings);
            return -1;
        }
    }
    int rc = -1;
    s_plans_t plans = {NULL, 0};
    size_t unfixable = 0, covered = 0, set_aside = 0, total = findings.count;
    s_drop_excluded(&findings, scan_id, &set_aside);
    if (!*commit) {
        /* the router cannot run a plan without its base commit */
        kz_error("scan %s of '%s' names no commit: no plan can be proposed", scan_id, target);
    } else if (s_drop_covered(agent, self, target, commit, &findings, &covered, err, sizeof err) !=
               0) {
        kz_error("scan %s: %s; trying again later", scan_id, err);
        goto done;
    } else if (s_group(self->cfg, tcfg, &findings, &plans, &unfixable) != 0)
        goto done;
    size_t max_bytes = self->cfg->bus.max_message_size;
    if (max_bytes == 0 || max_bytes > kz_msg_limits_default().max_size)
        max_bytes = kz_msg_limits_default().max_size;
    s_cap(&plans, max_bytes / 2, scan_id);
    char batch_id[32] = "";
    if (s_publish(agent, &plans, &findings, target, scan_id, commit, batch_id) != 0)
        goto done;
    s_last_t *last = s_last_of(self, target, true);
    snprintf(last->event_id, sizeof last->event_id, "%s", batch_id);
    size_t fixable = 0;
    for (size_t i = 0; i < plans.count; i++)
        fixable += plans.items[i].count;
    kz_info("scan %s of '%s' at %.12s%s: %zu findings, %zu already covered by plans, %zu "
            "fixable in %zu plans, %zu without a fixer, %zu set aside (not the project's own "
            "code)",
            scan_id, target, *commit ? commit : "(none)",
            kz_map_bool(body, "reused", false) ? " (reused)" : "", total, covered, fixable,
            plans.count, unfixable, set_aside);
    rc = 0;
done:
    s_plans_free(&plans);
    kz_findings_free(&findings);
    return rc;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *delivery, void *arg)
{
    s_planner_t *self = arg;
    if (delivery->kind != KZ_DELIVERY_GROUP || strcmp(kz_msg_type(delivery->msg), S_TOPIC) != 0)
        return 0;
    return s_plan_scan(agent, self, delivery->msg);
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    s_planner_t *self = arg;
    self->cfg = kz_agent_config(agent);
    self->store = kz_store_new(self->cfg, "kaizen-improvement-planner");
    if (!self->store)
        return kz_fail("out of memory");
    if (self->cfg->fixers_count == 0)
        kz_warn("no fixers in the configuration: every scan will give an empty plan.batch");
    return kz_bus_join(kz_agent_bus(agent), S_GROUP, S_TOPIC);
}

int main(int argc, char **argv)
{
    static s_planner_t planner;
    const kz_agent_def_t def = {
        .name = "improvement-planner",
        .layer = "planning",
        .summary = "turns fixable findings of each completed scan into plans (one per fixer and "
                   "file)",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = &planner,
    };
    int rc = kz_agent_main(argc, argv, &def);
    kz_store_destroy(&planner.store);
    return rc;
}
