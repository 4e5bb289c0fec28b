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
    the ones a fixer can change (its tool and rules take the finding and
    its `fixes` predicates hold, kz_fixable.h: codespell gets only single
    suggestions that are no identifier) by (fixer, file): one plan per
    fixer and file, or with policy.group one per fixer over up to
    policy.max_files files (PROTOCOL.md 4.11):

      plan_id      a new ULID
      fixer        the fixer recipe's name
      files        [the file]
      findings     the fingerprints the fix should make disappear
      impact       sum of severity weights: info 0.5, low 1, medium 2,
                   high 4, critical 8
      effort       fixers[].effort x files
      risk         fixers[].risk (kz_plan_risk: the router computes it
                   again and never takes this one)
      rationale    "2 black findings (would-reformat) in pkg/a.py"
      scan_id, base_commit (the scan's commit), tool, rules, language
      (kz_language_of of the first file), finding_details (the first 50
      findings' file, line, rule and message, for the commit message)

    Publishes one plan.proposed per plan (envelope target = the scan's
    target, corr = scan_id), in file then fixer order, then ONE plan.batch
    {scan_id, plans, unplanned} (also when empty) for the prioritizer;
    `unplanned` counts the findings left out per reason (also logged). A failed scan
    gives nothing. A scan of a target that is not in the local config is
    refused (logged). At most S_MAX_PLANS plans per scan, and at most half
    of the bus's message size for the whole batch: the plans of highest
    impact are kept and what was cut is logged. Database unreachable, or
    the findings not all stored in time: the delivery is NACKed so it is
    tried again (here or at another planner).

    A grouped plan that a validator rejects (plan.rejected, cause change)
    or whose fixer fails on the files (plan.failed, cause fixer) is split:
    its findings proposed again one plan per file at the same base, with
    split_from = its id (groups planning.planner.rejected / .failed). A
    plan of one file is never split.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kz_agent.h"
#include "kz_commitmsg.h"
#include "kz_finding.h"
#include "kz_fixable.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_plan.h"
#include "kz_recipe.h"
#include "kz_store.h"

#define S_GROUP "planning.planner"
#define S_TOPIC "scan.completed"
/* the ends of grouped plans, to split them (one member each) */
#define S_GROUP_REJECTED "planning.planner.rejected"
#define S_GROUP_FAILED   "planning.planner.failed"
#define S_WAIT_MS        60000 /* for the recorder to store a scan's findings */
#define S_OWN_MS         30000 /* for the recorder to store our last plan.batch of a target */
/* Caps that keep plan.batch well under bus.max_message_size and the
   codec's max_count / max_items (PROTOCOL.md 3) */
#define S_MAX_PLANS           500
#define S_MAX_PLAN_FINDINGS   1000
#define S_MAX_RATIONALE_RULES 5
/* finding_details: what the commit message lists of a plan's findings */
#define S_MAX_PLAN_DETAILS KZ_COMMIT_LISTED_MAX
#define S_DETAIL_MSG_BYTES (KZ_COMMIT_MESSAGE_CUT * 4 + 4)
#define S_ITEMS_BUDGET     (200000 / 2)

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

/* One plan: the findings of one fixer in one file (policy.group: in up
   to policy.max_files files) */
typedef struct {
    const kz_fixer_config_t *fixer;
    const char *file;   /* the first of FILES */
    const char **files; /* distinct, sorted */
    size_t nfiles;
    const char *split_from; /* the grouped plan this one retries file by file, or NULL */
    size_t *idx;            /* indexes into the scan's findings, sorted by line */
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
    bool by_fixer;                    /* policy.group: fixer first, then file */
} s_sort_ctx_t;

static s_sort_ctx_t s_sort; /* qsort has no context argument in C11 */

/* By file, then fixer name (policy.group: fixer name, then file), then
   line, col, fingerprint */
static int s_cmp_finding(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const kz_finding_t *f = &s_sort.findings->items[i], *g = &s_sort.findings->items[j];
    int by_file = strcmp(f->file, g->file);
    int by_fixer = strcmp(s_sort.fixers[i]->name, s_sort.fixers[j]->name);
    int c = s_sort.by_fixer ? (by_fixer ? by_fixer : by_file) : (by_file ? by_file : by_fixer);
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
        free(plans->items[i].files);
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
    size_t size = 360 + 2 * strlen(plan->fixer->name) + listed * (KZ_FINGERPRINT_LEN + 4);
    for (size_t i = 0; i < plan->nfiles; i++)
        size += 2 * strlen(plan->files[i]) + 4;
    for (size_t i = 0; i < plan->count; i++) {
        const kz_finding_t *f = &findings->items[plan->idx[i]];
        plan->rules[i] = f->rule;
        plan->impact += s_severity_weight(f->severity);
        if (i < S_MAX_PLAN_DETAILS) /* its finding_details entry */
            size +=
                96 + KZ_FINGERPRINT_LEN + strlen(f->file) + strlen(f->rule) + S_DETAIL_MSG_BYTES;
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
    char where[64];
    snprintf(where, sizeof where, "%zu files", plan->nfiles);
    used = (size_t)snprintf(plan->rationale, sizeof plan->rationale, "%zu %s finding%s (%s) in %s",
                            plan->count, tool, plan->count == 1 ? "" : "s", rules,
                            plan->nfiles == 1 ? plan->file : where);
    if (listed < plan->count && used < sizeof plan->rationale)
        snprintf(plan->rationale + used, sizeof plan->rationale - used,
                 "; the first %zu fingerprints are listed", listed);
    size += 2 * strlen(plan->rationale);
    plan->size = size;
    size_t details = plan->count < S_MAX_PLAN_DETAILS ? plan->count : S_MAX_PLAN_DETAILS;
    plan->items = 2 * 18 + 1 + listed + n + plan->nfiles + 2 + details * 11;
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

/* The text of one file at the scan's commit, read once for the findings
   of that file (they come sorted by file) */
typedef struct {
    const char *repo;
    const char *commit;
    char *file;
    char *text; /* NULL: unreadable */
    size_t len;
} s_source_t;

static void s_source_free(s_source_t *src)
{
    free(src->file);
    free(src->text);
    src->file = src->text = NULL;
    src->len = 0;
}

/* Load FILE into SRC unless it holds it already. Reading it may fail
   (the predicates then say "unreadable"); -1 only on out of memory */
static int s_source_load(s_source_t *src, const char *file)
{
    if (src->file && strcmp(src->file, file) == 0)
        return 0;
    s_source_free(src);
    src->file = strdup(file);
    if (!src->file)
        return kz_fail("out of memory");
    size_t n = strlen(src->commit) + strlen(file) + 2;
    char *spec = malloc(n);
    if (!spec)
        return kz_fail("out of memory");
    snprintf(spec, n, "%s:%s", src->commit, file);
    const char *args[] = {"cat-file", "blob", spec, NULL};
    char err[512];
    if (kz_git(src->repo, args, 0, &src->text, err, sizeof err) != 0) {
        kz_warn("unable to read '%s' at %.12s to judge its findings: %s", file, src->commit, err);
        free(src->text);
        src->text = NULL;
    } else
        src->len = strlen(src->text);
    free(spec);
    return 0;
}

/* The fixer that can change F (first of the config's fixers whose tool
   and rules take it and whose `fixes` predicates hold), or NULL with
   *WHY (the reason the first fixer taking it gave, or "no fixer") and
   *REFUSER (that fixer). -1 only on out of memory */
static int s_fixer_of(const kz_config_t *cfg, const kz_finding_t *f, s_source_t *src,
                      const kz_fixer_config_t **fixer, kz_unplanned_t *why,
                      const kz_fixer_config_t **refuser)
{
    *fixer = *refuser = NULL;
    *why = KZ_UNPLANNED_NO_FIXER;
    for (size_t i = 0; i < cfg->fixers_count; i++) {
        const kz_fixer_config_t *fx = &cfg->fixers[i];
        if (!kz_fixer_fixes(fx, f->tool, f->rule))
            continue;
        if (kz_fixable_needs_source(fx) && s_source_load(src, f->file) != 0)
            return -1;
        kz_unplanned_t w = kz_fixable_check(fx, f, src->text, src->len);
        if (w == KZ_FIXABLE_YES) {
            *fixer = fx;
            return 0;
        }
        if (!*refuser) {
            *refuser = fx;
            *why = w;
        }
    }
    return 0;
}

/* A fixer that rewrites every occurrence of a word (codespell -w) would
   also rename the identifiers of its file it was not given: such a
   (fixer, file) gets no plan. FINDINGS are sorted by file. */
static void s_block_renames(const kz_findings_t *findings, const kz_fixer_config_t **fixers,
                            const kz_fixer_config_t **refusers, kz_unplanned_t *why)
{
    size_t start = 0;
    for (size_t i = 0; i < findings->count; i++) {
        if (i > 0 && strcmp(findings->items[i].file, findings->items[i - 1].file) != 0)
            start = i;
        if (why[i] != KZ_UNPLANNED_IDENTIFIER)
            continue;
        for (size_t j = start;
             j < findings->count && strcmp(findings->items[j].file, findings->items[i].file) == 0;
             j++)
            if (fixers[j] == refusers[i]) {
                fixers[j] = NULL;
                why[j] = KZ_UNPLANNED_RENAMES;
            }
    }
}

/* A fixer that defers to another (fixers[].defer_to: autopep8 to black,
   which reformats the whole file) gets no plan for a file the other has
   one for in this scan: both would change the same lines, and the second
   to be integrated would conflict; so does an open plan of the other
   (its findings are among COVERED, those earlier plans hold). The next
   scan plans what is left. FINDINGS are sorted by file. */
static bool s_defer_covered(const kz_config_t *cfg, const kz_findings_t *covered,
                            const kz_fixer_config_t *fixer, const char *file)
{
    for (size_t k = 0; fixer->defer_to_count && k < covered->count; k++) {
        const kz_finding_t *c = &covered->items[k];
        const kz_fixer_config_t *other =
            strcmp(c->file, file) == 0 ? kz_fixer_for(cfg, c->tool, c->rule) : NULL;
        if (other && kz_fixable_defers_to(fixer, other->name))
            return true;
    }
    return false;
}

static void s_defer(const kz_config_t *cfg, const kz_findings_t *findings,
                    const kz_findings_t *covered, const kz_fixer_config_t **fixers,
                    kz_unplanned_t *why)
{
    size_t start = 0;
    while (start < findings->count) {
        size_t end = start + 1;
        while (end < findings->count &&
               strcmp(findings->items[end].file, findings->items[start].file) == 0)
            end++;
        for (size_t i = start; i < end; i++) {
            bool defer = false;
            for (size_t j = start; fixers[i] && !defer && j < end; j++)
                defer = fixers[j] && kz_fixable_defers_to(fixers[i], fixers[j]->name);
            if (fixers[i] && !defer)
                defer = s_defer_covered(cfg, covered, fixers[i], findings->items[i].file);
            if (defer) {
                fixers[i] = NULL;
                why[i] = KZ_UNPLANNED_DEFERRED;
            }
        }
        start = end;
    }
}

/* Decide each finding's fixer (FIXERS) or why it gets none (WHY),
   counting the reasons in UNPLANNED. Sorts FINDINGS by file. 0 / -1 */
static int s_classify(const kz_config_t *cfg, const kz_target_config_t *target, const char *commit,
                      kz_findings_t *findings, const kz_findings_t *covered,
                      const kz_fixer_config_t **fixers, size_t unplanned[KZ_UNPLANNED_COUNT])
{
    int rc = -1;
    s_source_t src = {target->path, commit, NULL, NULL, 0};
    kz_unplanned_t *why = calloc(findings->count + 1, sizeof *why);
    const kz_fixer_config_t **refusers = calloc(findings->count + 1, sizeof *refusers);
    if (!why || !refusers) {
        kz_fail("out of memory");
        goto done;
    }
    kz_findings_sort(findings);
    for (size_t i = 0; i < findings->count; i++)
        if (s_fixer_of(cfg, &findings->items[i], &src, &fixers[i], &why[i], &refusers[i]) != 0)
            goto done;
    s_block_renames(findings, fixers, refusers, why);
    s_defer(cfg, findings, covered, fixers, why);
    for (size_t i = 0; i < findings->count; i++)
        if (!fixers[i])
            unplanned[why[i]]++;
    rc = 0;
done:
    s_source_free(&src);
    free(why);
    free(refusers);
    return rc;
}

/* The findings ORDER[I..J) of one plan into PLAN: its fixer, its files
   (distinct: ORDER is sorted so a file's findings are together) and
   findings. 0 / -1 (out of memory) */
static int s_plan_fill(s_plan_t *plan, const kz_findings_t *findings,
                       const kz_fixer_config_t *fixer, const size_t *order, size_t i, size_t j)
{
    plan->fixer = fixer;
    plan->count = j - i;
    plan->idx = malloc(plan->count * sizeof *plan->idx);
    plan->files = malloc(plan->count * sizeof *plan->files);
    if (!plan->idx || !plan->files)
        return kz_fail("out of memory");
    memcpy(plan->idx, order + i, plan->count * sizeof *plan->idx);
    for (size_t k = i; k < j; k++) {
        const char *file = findings->items[order[k]].file;
        if (plan->nfiles == 0 || strcmp(plan->files[plan->nfiles - 1], file) != 0)
            plan->files[plan->nfiles++] = file;
    }
    plan->file = plan->files[0];
    return s_plan_finish(plan, findings);
}

/* Group the findings of FINDINGS a fixer can change into PLANS: one per
   fixer and file, or with GROUPED (policy.group) one per fixer over up to
   MAX_FILES files; the others are counted per reason in UNPLANNED
   (COVERED: the findings earlier plans hold, for fixers[].defer_to).
   Findings naming a path outside the target, or carrying a fingerprint
   we do not accept, are skipped (logged). 0 / -1 (out of memory) */
static int s_group(const kz_config_t *cfg, const kz_target_config_t *target, const char *commit,
                   kz_findings_t *findings, const kz_findings_t *covered, bool grouped,
                   s_plans_t *plans, size_t unplanned[KZ_UNPLANNED_COUNT])
{
    size_t max_files = cfg->policy.max_files > 0 ? (size_t)cfg->policy.max_files : 1;
    int rc = -1;
    const kz_fixer_config_t **fixers = calloc(findings->count + 1, sizeof *fixers);
    size_t *order = malloc((findings->count + 1) * sizeof *order);
    size_t n = 0, bad = 0;
    plans->items = NULL;
    plans->count = 0;
    if (!fixers || !order) {
        kz_fail("out of memory");
        goto done;
    }
    if (s_classify(cfg, target, commit, findings, covered, fixers, unplanned) != 0)
        goto done;
    for (size_t i = 0; i < findings->count; i++) {
        const kz_finding_t *f = &findings->items[i];
        if (!fixers[i])
            continue;
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
    s_sort.by_fixer = grouped;
    qsort(order, n, sizeof *order, s_cmp_finding);

    plans->items = calloc(n + 1, sizeof *plans->items);
    if (!plans->items) {
        kz_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, nfiles = 1;
        for (; j < n && fixers[order[j]] == fixers[order[i]]; j++) {
            bool new_file =
                strcmp(findings->items[order[j]].file, findings->items[order[j - 1]].file) != 0;
            if (new_file && (!grouped || nfiles == max_files))
                break;
            nfiles += new_file;
        }
        if (s_plan_fill(&plans->items[plans->count++], findings, fixers[order[i]], order, i, j) !=
            0)
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
            free(plans->items[i].files);
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

/* finding_details of PLAN: {fingerprint, file, line, rule, message} of
   its first S_MAX_PLAN_DETAILS findings, the message on one line and cut
   (the commit message lists them; PROTOCOL.md 4.11). 0 / -1 */
static int s_put_details(kz_msg_t *msg, kz_val_t *map, const s_plan_t *plan,
                         const kz_findings_t *findings)
{
    kz_val_t *arr = kz_map_put_array(msg, map, "finding_details");
    if (!arr)
        return -1;
    for (size_t i = 0; i < plan->count && i < S_MAX_PLAN_DETAILS; i++) {
        const kz_finding_t *f = &findings->items[plan->idx[i]];
        char text[S_DETAIL_MSG_BYTES];
        kz_commit_clean(text, sizeof text, f->message, KZ_COMMIT_MESSAGE_CUT);
        kz_val_t *m = kz_array_push(msg, arr);
        if (!m)
            return -1;
        kz_val_set_map(m);
        if (kz_map_put_str(msg, m, "fingerprint", f->fingerprint) != 0 ||
            kz_map_put_str(msg, m, "file", f->file) != 0 ||
            kz_map_put_int(msg, m, "line", f->line) != 0 ||
            kz_map_put_str(msg, m, "rule", f->rule) != 0 ||
            kz_map_put_str(msg, m, "message", text) != 0)
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
        s_put_strs(msg, map, "files", plan->files, plan->nfiles) != 0)
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
        kz_map_put_float(msg, map, "effort", plan->fixer->effort * (double)plan->nfiles) != 0 ||
        kz_map_put_float(msg, map, "risk", kz_plan_risk(plan->fixer)) != 0 ||
        kz_map_put_str(msg, map, "rationale", plan->rationale) != 0 ||
        kz_map_put_str(msg, map, "scan_id", scan_id) != 0 ||
        (*commit && kz_map_put_str(msg, map, "base_commit", commit) != 0) ||
        kz_map_put_str(msg, map, "tool", plan->fixer->tool) != 0 ||
        s_put_strs(msg, map, "rules", plan->rules, plan->nrules) != 0 ||
        kz_map_put_str(msg, map, "language", kz_language_of(plan->file)) != 0 ||
        (plan->split_from && kz_map_put_str(msg, map, "split_from", plan->split_from) != 0) ||
        s_put_details(msg, map, plan, findings) != 0)
        return -1;
    return 0;
}

/* plan.batch's `unplanned` {reason: count} (PROTOCOL.md 4.11a): the
   reasons with a count only. 0 / -1 */
static int s_put_unplanned(kz_msg_t *msg, kz_val_t *map, const size_t unplanned[KZ_UNPLANNED_COUNT])
{
    kz_val_t *m = kz_map_put_map(msg, map, "unplanned");
    if (!m)
        return -1;
    for (int i = 0; i < KZ_UNPLANNED_COUNT; i++)
        if (unplanned[i] && kz_map_put_int(msg, m, kz_unplanned_word((kz_unplanned_t)i),
                                           (int64_t)unplanned[i]) != 0)
            return -1;
    return 0;
}

/* "3 several suggestions, 1 an identifier" into BUF; the number of
   findings not planned */
static size_t s_unplanned_summary(const size_t unplanned[KZ_UNPLANNED_COUNT], char *buf, size_t len)
{
    size_t total = 0, used = 0;
    buf[0] = '\0';
    for (int i = 0; i < KZ_UNPLANNED_COUNT; i++) {
        if (!unplanned[i])
            continue;
        total += unplanned[i];
        if (used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%zu %s", used ? ", " : "",
                                     unplanned[i], kz_unplanned_text((kz_unplanned_t)i));
    }
    return total;
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
                     const size_t unplanned[KZ_UNPLANNED_COUNT], const char *target,
                     const char *scan_id, const char *commit, char batch_id[32])
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
    if (s_put_unplanned(batch, kz_msg_body(batch), unplanned) != 0) {
        kz_msg_destroy(&batch);
        return kz_fail("out of memory building plan.batch");
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
                          const char *commit, kz_findings_t *findings, kz_findings_t *moved,
                          size_t *dropped, char *errbuf, size_t errlen)
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
            /* kept aside: a fixer that defers to its fixer waits for it */
            if (kz_findings_add(moved, &findings->items[i]) != 0) {
                snprintf(errbuf, errlen, "out of memory");
                for (size_t r = i; r < findings->count; r++) /* keep FINDINGS whole */
                    findings->items[out++] = findings->items[r];
                findings->count = out;
                goto done;
            }
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
    kz_findings_t findings, held; /* held: the findings earlier plans cover */
    kz_findings_init(&findings);
    kz_findings_init(&held);
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
    size_t unplanned[KZ_UNPLANNED_COUNT] = {0}, covered = 0, set_aside = 0, total = findings.count;
    s_drop_excluded(&findings, scan_id, &set_aside);
    if (!*commit) {
        /* the router cannot run a plan without its base commit */
        kz_error("scan %s of '%s' names no commit: no plan can be proposed", scan_id, target);
    } else if (s_drop_covered(agent, self, target, commit, &findings, &held, &covered, err,
                              sizeof err) != 0) {
        kz_error("scan %s: %s; trying again later", scan_id, err);
        goto done;
    } else if (s_group(self->cfg, tcfg, commit, &findings, &held, self->cfg->policy.group, &plans,
                       unplanned) != 0)
        goto done;
    size_t max_bytes = self->cfg->bus.max_message_size;
    if (max_bytes == 0 || max_bytes > kz_msg_limits_default().max_size)
        max_bytes = kz_msg_limits_default().max_size;
    s_cap(&plans, max_bytes / 2, scan_id);
    char batch_id[32] = "";
    if (s_publish(agent, &plans, &findings, unplanned, target, scan_id, commit, batch_id) != 0)
        goto done;
    s_last_t *last = s_last_of(self, target, true);
    snprintf(last->event_id, sizeof last->event_id, "%s", batch_id);
    size_t fixable = 0;
    for (size_t i = 0; i < plans.count; i++)
        fixable += plans.items[i].count;
    char why[512];
    size_t left = s_unplanned_summary(unplanned, why, sizeof why);
    kz_info("scan %s of '%s' at %.12s%s: %zu findings, %zu already covered by plans, %zu "
            "fixable in %zu plans, %zu not planned%s%s, %zu set aside (not the project's own "
            "code)",
            scan_id, target, *commit ? commit : "(none)",
            kz_map_bool(body, "reused", false) ? " (reused)" : "", total, covered, fixable,
            plans.count, left, left ? ": " : "", why, set_aside);
    rc = 0;
done:
    s_plans_free(&plans);
    kz_findings_free(&findings);
    kz_findings_free(&held);
    return rc;
}

/* ------------------------------------------------------------ splitting */

static int s_cmp_fp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The strings of JSON array ARR, sorted (malloc'd array; the strings are
   ARR's), *N of them; NULL when out of memory */
static const char **s_json_strs(const json_t *arr, size_t *n)
{
    *n = 0;
    const char **v = malloc((json_array_size(arr) + 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t i;
    const json_t *it;
    json_array_foreach(arr, i, it)
    {
        if (json_is_string(it))
            v[(*n)++] = json_string_value(it);
    }
    qsort(v, *n, sizeof *v, s_cmp_fp);
    return v;
}

static bool s_has(const char **sorted, size_t n, const char *s)
{
    return n && bsearch(&s, sorted, n, sizeof *sorted, s_cmp_fp);
}

/* Keep in FINDINGS those of PLAN (JSON): its fingerprints, in its files,
   fixed by FIXER. 0 / -1 (out of memory) */
static int s_keep_plan_findings(const kz_config_t *cfg, const json_t *plan,
                                const kz_fixer_config_t *fixer, kz_findings_t *findings)
{
    size_t nfps = 0, nfiles = 0;
    const char **fps = s_json_strs(json_object_get(plan, "findings"), &nfps);
    const char **files = s_json_strs(json_object_get(plan, "files"), &nfiles);
    if (!fps || !files) {
        free(fps);
        free(files);
        return kz_fail("out of memory");
    }
    size_t out = 0;
    for (size_t i = 0; i < findings->count; i++) {
        kz_finding_t *f = &findings->items[i];
        if (s_has(fps, nfps, f->fingerprint) && s_has(files, nfiles, f->file) &&
            kz_fixer_for(cfg, f->tool, f->rule) == fixer)
            findings->items[out++] = *f;
        else
            kz_finding_clear(f);
    }
    findings->count = out;
    free(fps);
    free(files);
    return 0;
}

/* Propose the findings of the grouped plan PLAN_ID (PLAN, as proposed)
   again, one plan per file, at its base commit, each with split_from.
   0 (done, or nothing to split), -1 (try again later) */
static int s_split_plan(kz_agent_t *agent, s_planner_t *self, const char *plan_id,
                        const char *target, const json_t *plan)
{
    const json_t *files = json_object_get(plan, "files");
    if (!json_is_array(files) || json_array_size(files) < 2 || json_object_get(plan, "split_from"))
        return 0; /* one file: nothing to split; a split plan is never split again */
    const char *fixer_name = json_string_value(json_object_get(plan, "fixer"));
    const char *scan_id = json_string_value(json_object_get(plan, "scan_id"));
    const char *base = json_string_value(json_object_get(plan, "base_commit"));
    const kz_fixer_config_t *fixer = fixer_name ? kz_config_fixer(self->cfg, fixer_name) : NULL;
    const kz_target_config_t *tcfg = kz_config_target(self->cfg, target);
    if (!fixer || !tcfg || !s_valid_token(scan_id, 128) || !base || !s_valid_token(base, 64)) {
        kz_warn("plan %s cannot be split: its fixer, target, scan or base commit is not known "
                "here",
                plan_id);
        return 0;
    }
    char err[512];
    kz_findings_t findings;
    kz_findings_init(&findings);
    kz_findings_t none; /* no covered findings: the plan's own are re-planned */
    kz_findings_init(&none);
    s_plans_t plans = {NULL, 0};
    size_t unplanned[KZ_UNPLANNED_COUNT] = {0};
    int rc = -1;
    if (kz_store_findings(self->store, scan_id, &findings, err, sizeof err) != 0) {
        kz_error("plan %s: unable to load the findings of scan %s to split it: %s; trying again "
                 "later",
                 plan_id, scan_id, err);
        goto done;
    }
    if (s_keep_plan_findings(self->cfg, plan, fixer, &findings) != 0 ||
        s_group(self->cfg, tcfg, base, &findings, &none, false, &plans, unplanned) != 0)
        goto done;
    for (size_t i = 0; i < plans.count; i++)
        plans.items[i].split_from = plan_id;
    char batch_id[32] = "";
    if (s_publish(agent, &plans, &findings, unplanned, target, scan_id, base, batch_id) != 0)
        goto done;
    s_last_t *last = s_last_of(self, target, true);
    snprintf(last->event_id, sizeof last->event_id, "%s", batch_id);
    kz_info("plan %s of %zu files ended without its fix: proposed again as %zu plans, one per "
            "file, at %.12s",
            plan_id, json_array_size(files), plans.count, base);
    rc = 0;
done:
    s_plans_free(&plans);
    kz_findings_free(&findings);
    return rc;
}

/* plan.rejected by a validator (cause change) or plan.failed because the
   fixer failed on the files (cause fixer): a grouped plan (several files)
   is split, so one file that breaks does not sink the others. 0 / -1 */
static int s_on_end(kz_agent_t *agent, s_planner_t *self, const kz_msg_t *msg)
{
    const kz_val_t *body = kz_msg_body_const(msg);
    const char *plan_id = kz_map_str(body, "plan_id");
    const char *cause = kz_map_str(body, "cause");
    bool rejected = strcmp(kz_msg_type(msg), "plan.rejected") == 0;
    if (!cause || strcmp(cause, rejected ? "change" : "fixer") != 0 || !s_valid_token(plan_id, 128))
        return 0;
    char *text = NULL, target[256], err[512];
    /* the prioritizer must see the plan final, or its split plans would
       be duplicates of an open plan */
    if (kz_store_wait_event(self->store, kz_msg_id(msg), S_OWN_MS, kz_agent_wait_tick, agent, err,
                            sizeof err) != 0) {
        kz_error("plan %s: its end is not in the database yet: %s; trying again later", plan_id,
                 err);
        return -1;
    }
    int found = kz_store_plan(self->store, plan_id, &text, target, sizeof target, err, sizeof err);
    if (found < 0) {
        kz_error("plan %s: unable to read it: %s; trying again later", plan_id, err);
        return -1;
    }
    if (found == 0) {
        kz_warn("plan %s ended (%s) but is not in the database: not split", plan_id, cause);
        return 0;
    }
    json_error_t jerr;
    json_t *plan = json_loads(text, 0, &jerr);
    free(text);
    int rc = 0;
    if (!json_is_object(plan))
        kz_warn("plan %s: its stored plan is not a JSON object: not split", plan_id);
    else
        rc = s_split_plan(agent, self, plan_id, target, plan);
    json_decref(plan);
    return rc;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *delivery, void *arg)
{
    s_planner_t *self = arg;
    if (delivery->kind != KZ_DELIVERY_GROUP)
        return 0;
    const char *type = kz_msg_type(delivery->msg);
    if (strcmp(type, "plan.rejected") == 0 || strcmp(type, "plan.failed") == 0)
        return s_on_end(agent, self, delivery->msg);
    if (strcmp(type, S_TOPIC) != 0)
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
    kz_bus_t *bus = kz_agent_bus(agent);
    return kz_bus_join(bus, S_GROUP, S_TOPIC) != 0 ||
                   kz_bus_join(bus, S_GROUP_REJECTED, "plan.rejected") != 0 ||
                   kz_bus_join(bus, S_GROUP_FAILED, "plan.failed") != 0
               ? -1
               : 0;
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
