/*  plans.c - `kaizen plans`, `kaizen plans show ID`, `kaizen approve ID`,
    `kaizen reject ID --why TEXT`: the plans as the recorder stored them,
    and a person's decision on one

    Plans live in improvement_suggestions (one row per plan_id, status =
    its latest state), their history in plan_transitions, and what the
    executor and the validators answered (the exec.result and
    validate.result the router republished) in executions and
    validations. The commit's message and diff come from the target's
    repository: refs/kaizen/plans/ID, where the router keeps every plan's
    commit whatever became of the plan, else (a plan executed before
    those refs) the plan branch kaizen/plan-ID, kept for accepted plans
    and deleted with a rejected or failed one.

    approve and reject only publish: plan.approved / plan.rejected for the
    router, feedback.decision for the learning layer. The state they
    check first is the database's, so a plan the router has started on
    is refused with a clear message instead of being raced.

    An ID is a full plan_id or a prefix of exactly one. Every query is a
    constant string with parameters.
*/
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_db.h"
#include "kz_git.h"
#include "kz_msg.h"

#define S_APP            "kaizen-cli"
#define S_DEFAULT_LIMIT  50
#define S_PUB_TIMEOUT_MS 3000
#define S_ID_MAX         128
#define S_SHOW_AMBIGUOUS 10
#define S_DIFF_MAX       (1024 * 1024)

/* Exit codes beyond cli.h's (docs/cli.md) */
#define S_EXIT_NOT_FOUND 3 /* no plan with that id, or a prefix of several */
#define S_EXIT_STATE     4 /* the plan's state does not allow it */

static const char s_plans_usage[] =
    "usage: kaizen [-c FILE] plans [--state STATE] [--target NAME] [--limit N] [--json]\n"
    "       kaizen [-c FILE] plans show ID [--no-diff] [--json]\n"
    "\n"
    "List the improvement plans from the database, most recently changed\n"
    "first: id, state, target, fixer, risk, rank, files, last change.\n"
    "'plans show ID' prints one plan: its fields, every state change with its\n"
    "reason, the execution (commit, diffstat), every validation result with\n"
    "its reasons, and its commit's message and diff (rejected and failed plans\n"
    "too: kaizen keeps the commit as refs/kaizen/plans/ID; a diff is cut at\n"
    "1 MiB). --no-diff leaves the diff out.\n"
    "ID is a full plan id or a prefix of exactly one.\n"
    "\n"
    "  --state STATE        only plans in STATE (proposed, ready, dropped,\n"
    "                       awaiting_approval, approved, executing, executed,\n"
    "                       validating, accepted, rejected, failed)\n"
    "  --target NAME        only plans of target NAME\n"
    "  --limit N            at most N plans (default 50, 0 = all)\n"
    "  --json               print one JSON document\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 ok, 1 the database is unreachable or has no kaizen schema,\n"
    "or a bad config, 2 usage, 3 no plan with that ID (or the prefix names\n"
    "several)\n";

static const char s_approve_usage[] =
    "usage: kaizen [-c FILE] approve ID\n"
    "\n"
    "Approve a plan that waits in awaiting_approval (its risk is at or above\n"
    "policy.require_approval): publishes plan.approved, on which the router\n"
    "executes and validates it, and feedback.decision for the learning layer,\n"
    "both naming you ($USER) as the one who decided. ID is a full plan id or a\n"
    "prefix of exactly one; follow the plan with 'kaizen plans show ID'.\n"
    "\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 approved, 1 the database or the broker is unreachable, or\n"
    "a bad config, 2 usage, 3 no plan with that ID (or the prefix names\n"
    "several), 4 the plan is not awaiting approval\n";

static const char s_reject_usage[] =
    "usage: kaizen [-c FILE] reject ID --why TEXT\n"
    "\n"
    "Reject a plan that is awaiting_approval, ready or proposed (not approved,\n"
    "executing or final): publishes plan.rejected with your reason, so the\n"
    "router drops it, and feedback.decision for the learning layer, both\n"
    "naming you ($USER).\n"
    "ID is a full plan id or a prefix of exactly one.\n"
    "\n"
    "  --why TEXT           the reason, recorded with the decision (required)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 rejected, 1 the database or the broker is unreachable, or\n"
    "a bad config, 2 usage, 3 no plan with that ID (or the prefix names\n"
    "several), 4 the plan is approved, executing or already final\n";

/* The options of `plans`, `plans show`, `approve` and `reject` */
static const struct option s_list_opts[] = {
    {"state", required_argument, NULL, 's'},
    {"target", required_argument, NULL, 'T'},
    {"limit", required_argument, NULL, 'n'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};
static const struct option s_show_opts[] = {
    {"json", no_argument, NULL, 'j'},
    {"no-diff", no_argument, NULL, 'D'},
    {NULL, 0, NULL, 0},
};
static const struct option s_approve_opts[] = {
    {NULL, 0, NULL, 0},
};
static const struct option s_reject_opts[] = {
    {"why", required_argument, NULL, 'w'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_plans_tables[] = {s_list_opts, s_show_opts, NULL};
static const struct option *const s_approve_tables[] = {s_approve_opts, NULL};
static const struct option *const s_reject_tables[] = {s_reject_opts, NULL};

/* ------------------------------------------------------------ helpers */

/* Every state a plan can be in, as the recorder writes them: the
   planner's and prioritizer's (proposed, ready, dropped), a person's
   decision (approved, rejected), the router's plan.state and the final
   types (docs/cli.md lists them for --state) */
static const char *const s_states[] = {
    "proposed", "ready",      "dropped",  "awaiting_approval", "approved", "executing",
    "executed", "validating", "accepted", "rejected",          "failed",   NULL,
};
#define S_STATES_TEXT                                                                          \
    "proposed, ready, dropped, awaiting_approval, approved, executing, executed, validating, " \
    "accepted, rejected or failed"

static bool s_state_ok(const char *s)
{
    for (const char *const *st = s_states; *st; st++)
        if (strcmp(s, *st) == 0)
            return true;
    return false;
}

/* Connect and check the schema (at least version MIN); NULL after
   printing "kaizen CMD: ..." */
static PGconn *s_connect(const kz_config_t *cfg, const char *cmd, int min)
{
    char err[2048] = "";
    PGconn *db = kz_db_connect(cfg, S_APP, err, sizeof err);
    if (!db) {
        kz_cli_error(cmd, "%s", err);
        return NULL;
    }
    int version = kz_db_schema_version(db, err, sizeof err);
    if (version <= 0) {
        if (version == 0)
            kz_cli_error(cmd, "the database has no kaizen schema yet: run 'kaizen db migrate' "
                              "(or 'kaizen up')");
        else
            kz_cli_error(cmd, "%s", err);
        PQfinish(db);
        return NULL;
    }
    if (version < min) {
        kz_cli_error(cmd,
                     "the database schema is at version %d, this needs %d: run 'kaizen db "
                     "migrate'",
                     version, min);
        PQfinish(db);
        return NULL;
    }
    return db;
}

static PGresult *s_exec(PGconn *db, const char *cmd, const char *sql, int n,
                        const char *const *params)
{
    char err[2048];
    PGresult *res = kz_db_exec(db, sql, n, params, err, sizeof err);
    if (!res)
        kz_cli_error(cmd, "query failed: %s", err);
    return res;
}

/* A column as a JSON value: NULL -> null, else a string */
static json_t *s_cell(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    return json_string(PQgetvalue(res, row, col));
}

/* A column holding JSON text (a jsonb cast to text): the parsed value */
static json_t *s_json_cell(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    json_t *v = json_loads(PQgetvalue(res, row, col), JSON_DECODE_ANY, NULL);
    return v ? v : json_null();
}

/* A float column: a number or null */
static json_t *s_real_cell(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    char *end = NULL;
    double d = strtod(PQgetvalue(res, row, col), &end);
    return end && *end == '\0' ? json_real(d) : json_null();
}

static const char *s_jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : NULL;
}

/* Write S on one line for a terminal: control characters become '?' */
static void s_put(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : "-"); *p; p++)
        fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
}

/* The JSON array of strings ARR joined with ", ", at most MAX bytes
   (then "... +N more") into BUF */
static void s_join_list(const json_t *arr, size_t max, char *buf, size_t len)
{
    size_t at = 0, i;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        if (at > 0 && at + strlen(s) + 2 > max) {
            snprintf(buf + at, len - at, " +%zu more", json_array_size(arr) - i);
            return;
        }
        int n = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", s);
        if (n < 0 || (size_t)n >= len - at) {
            buf[len - 1] = '\0';
            return;
        }
        at += (size_t)n;
    }
    if (at == 0)
        snprintf(buf, len, "-");
}

static int s_print_doc(const char *cmd, const json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return kz_cli_error(cmd, "out of memory");
    printf("%s\n", text);
    free(text);
    return KZ_EXIT_OK;
}

static int s_flush(const char *cmd, int rc)
{
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        return kz_cli_error(cmd, "unable to write the output: %s", strerror(errno));
    return rc;
}

/* ------------------------------------------------------- plan lookups */

/* What approve, reject and show need of one plan */
typedef struct {
    char plan_id[S_ID_MAX + 1];
    char state[65];
    char target[256];
    char fixer[256];
} s_plan_t;

/* Resolve ID (a full plan id or a unique prefix) into P. KZ_EXIT_OK, or
   the exit code after the message */
static int s_resolve(PGconn *db, const char *cmd, const char *id, s_plan_t *p)
{
    static const char sql[] =
        "SELECT plan_id, COALESCE(status, ''), COALESCE(target, ''), COALESCE(fixer, '') "
        "FROM improvement_suggestions WHERE plan_id = $1 OR left(plan_id, length($1)) = $1 "
        "ORDER BY plan_id = $1 DESC, plan_id LIMIT 11";
    if (!kz_id_valid(id))
        return kz_cli_usage(cmd, "'%s' is not a plan id (letters, digits, '_' and '-', at most %d)",
                            id, S_ID_MAX);
    const char *params[1] = {id};
    PGresult *res = s_exec(db, cmd, sql, 1, params);
    if (!res)
        return KZ_EXIT_FAILURE;
    int n = PQntuples(res);
    bool exact = n > 0 && strcmp(PQgetvalue(res, 0, 0), id) == 0;
    if (n == 0) {
        PQclear(res);
        fprintf(stderr, "kaizen %s: no plan '%s' (see 'kaizen plans')\n", cmd, id);
        return S_EXIT_NOT_FOUND;
    }
    if (n > 1 && !exact) {
        fprintf(stderr, "kaizen %s: '%s' is ambiguous: it begins %s%d plans:", cmd, id,
                n > S_SHOW_AMBIGUOUS ? "more than " : "", n > S_SHOW_AMBIGUOUS ? 10 : n);
        for (int r = 0; r < n && r < S_SHOW_AMBIGUOUS; r++)
            fprintf(stderr, " %s", PQgetvalue(res, r, 0));
        fprintf(stderr, "; give more of the id\n");
        PQclear(res);
        return S_EXIT_NOT_FOUND;
    }
    snprintf(p->plan_id, sizeof p->plan_id, "%s", PQgetvalue(res, 0, 0));
    snprintf(p->state, sizeof p->state, "%s", PQgetvalue(res, 0, 1));
    snprintf(p->target, sizeof p->target, "%s", PQgetvalue(res, 0, 2));
    snprintf(p->fixer, sizeof p->fixer, "%s", PQgetvalue(res, 0, 3));
    PQclear(res);
    return KZ_EXIT_OK;
}

/* ---------------------------------------------------------- kaizen plans */

static int s_list(const kz_config_t *cfg, const char *state, const char *target, long limit,
                  bool json)
{
    static const char sql[] =
        "SELECT plan_id, status, target, fixer, "
        "COALESCE(implementation_plan->'files', '[]'::jsonb)::text, risk, "
        "implementation_plan->>'rank', "
        "to_char(COALESCE(updated_at, created_at), 'YYYY-MM-DD HH24:MI:SS'), "
        "estimated_impact, effort, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), title "
        "FROM improvement_suggestions WHERE plan_id IS NOT NULL "
        "AND ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR target = $2) "
        "ORDER BY COALESCE(updated_at, created_at) DESC, id DESC LIMIT $3::bigint";
    PGconn *db = s_connect(cfg, "plans", 1);
    if (!db)
        return KZ_EXIT_FAILURE;
    /* one row beyond the limit says whether there are more */
    char lim[32];
    snprintf(lim, sizeof lim, "%ld", limit + 1);
    const char *params[3] = {state, target, limit > 0 ? lim : NULL};
    PGresult *res = s_exec(db, "plans", sql, 3, params);
    PQfinish(db);
    if (!res)
        return KZ_EXIT_FAILURE;
    int rows = PQntuples(res);
    bool more = limit > 0 && rows > limit;
    if (more)
        rows = (int)limit;
    json_t *plans = json_array();
    for (int r = 0; plans && r < rows; r++) {
        json_t *rank = PQgetisnull(res, r, 6)
                           ? json_null()
                           : json_integer(strtoll(PQgetvalue(res, r, 6), NULL, 10));
        json_array_append_new(
            plans,
            json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "plan_id",
                      s_cell(res, r, 0), "state", s_cell(res, r, 1), "target", s_cell(res, r, 2),
                      "fixer", s_cell(res, r, 3), "files", s_json_cell(res, r, 4), "risk",
                      s_real_cell(res, r, 5), "rank", rank, "impact", s_real_cell(res, r, 8),
                      "effort", s_real_cell(res, r, 9), "title", s_cell(res, r, 11), "created_at",
                      s_cell(res, r, 10), "updated_at", s_cell(res, r, 7)));
    }
    PQclear(res);
    if (!plans)
        return kz_cli_error("plans", "out of memory");
    int rc = KZ_EXIT_OK;
    if (json) {
        json_t *doc = json_pack("{s:o, s:I, s:b}", "plans", plans, "count",
                                (json_int_t)json_array_size(plans), "more", more);
        rc = doc ? s_print_doc("plans", doc) : kz_cli_error("plans", "out of memory");
        json_decref(doc);
        return s_flush("plans", rc);
    }
    size_t n = json_array_size(plans);
    if (n == 0) {
        printf("no plans%s%s%s%s\n", state ? " in state " : "", state ? state : "",
               target ? " of target " : "", target ? target : "");
        json_decref(plans);
        return s_flush("plans", rc);
    }
    /* column widths from the data */
    static const char *const heads[] = {"PLAN", "STATE", "TARGET",  "FIXER",
                                        "RISK", "RANK",  "UPDATED", "FILES"};
    enum { NCOL = 8 };
    int width[NCOL];
    for (int c = 0; c < NCOL; c++)
        width[c] = (int)strlen(heads[c]);
    char cells[NCOL][512];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (int c = 0; c < NCOL; c++)
                printf(c == 0 ? "%-*s" : "  %-*s", c == NCOL - 1 ? 0 : width[c], heads[c]);
            printf("\n");
        }
        size_t i;
        json_t *p;
        json_array_foreach(plans, i, p)
        {
            const char *sv[] = {"plan_id", "state", "target", "fixer"};
            for (int c = 0; c < 4; c++) {
                const char *s = s_jstr(p, sv[c]);
                snprintf(cells[c], sizeof cells[c], "%s", s && *s ? s : "-");
                for (char *q = cells[c]; *q; q++)
                    if ((unsigned char)*q < 0x20 || *q == 0x7f)
                        *q = '?';
            }
            const json_t *risk = json_object_get(p, "risk");
            if (json_is_number(risk))
                snprintf(cells[4], sizeof cells[4], "%.2f", json_number_value(risk));
            else
                snprintf(cells[4], sizeof cells[4], "-");
            const json_t *rank = json_object_get(p, "rank");
            if (json_is_integer(rank))
                snprintf(cells[5], sizeof cells[5], "%lld", (long long)json_integer_value(rank));
            else
                snprintf(cells[5], sizeof cells[5], "-");
            const char *up = s_jstr(p, "updated_at");
            snprintf(cells[6], sizeof cells[6], "%s", up ? up : "-");
            s_join_list(json_object_get(p, "files"), 60, cells[7], sizeof cells[7]);
            for (char *q = cells[7]; *q; q++)
                if ((unsigned char)*q < 0x20 || *q == 0x7f)
                    *q = '?';
            for (int c = 0; c < NCOL; c++) {
                int w = (int)strlen(cells[c]);
                if (pass == 0 && w > width[c])
                    width[c] = w;
                if (pass == 1)
                    printf(c == 0 ? "%-*s" : "  %-*s", c == NCOL - 1 ? 0 : width[c], cells[c]);
            }
            if (pass == 1)
                printf("\n");
        }
    }
    printf("%zu plan%s%s\n", n, n == 1 ? "" : "s",
           more ? ", the most recent (there are more: --limit 0 lists all)" : "");
    json_decref(plans);
    return s_flush("plans", rc);
}

/* ------------------------------------------------------ kaizen plans show */

/* Replace every byte of S that is not part of valid UTF-8 with '?' */
static void s_utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = kz_cli_utf8_seq(p + i, n - i);
        if (k == 0) {
            p[i++] = '?';
        } else {
            i += k;
        }
    }
}

/* True when the executor recorded a commit for the plan in DOC: only
   then was its branch kaizen/plan-ID kept after the execution (the
   refactorer deletes the branch when the fixer changed nothing or
   failed) */
static bool s_had_branch(const json_t *doc)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "executions"), i, e)
    {
        const char *status = s_jstr(e, "status");
        if (status && strcmp(status, "changed") == 0 && s_jstr(e, "commit"))
            return true;
    }
    return false;
}

/* True when the plan in DOC ever reached execution: a transition to
   executing (or beyond) or an execution result */
static bool s_reached_execution(const json_t *doc)
{
    static const char *const states[] = {"executing", "executed", "validating", "accepted", NULL};
    if (json_array_size(json_object_get(doc, "executions")) > 0)
        return true;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "transitions"), i, t)
    {
        const char *st = s_jstr(t, "state");
        for (const char *const *s = states; st && *s; s++)
            if (strcmp(st, *s) == 0)
                return true;
    }
    return false;
}

/* Why the plan in DOC has no branch BRANCH in PATH now, into NOTE: it
   never had one (never executed, or its execution made no commit), or
   it was deleted with the rollback, or it is gone for another reason */
static void s_no_branch_note(const json_t *doc, const char *branch, const char *path, char *note,
                             size_t len)
{
    const char *state = s_jstr(doc, "state") ? s_jstr(doc, "state") : "in no known state";
    if (!s_reached_execution(doc)) {
        snprintf(note, len, "the plan never had a branch: it never reached execution; it is %s",
                 state);
        return;
    }
    if (!s_had_branch(doc)) {
        const json_t *ex = json_object_get(doc, "executions");
        const json_t *last = json_array_get(ex, json_array_size(ex) - 1);
        const char *status = last ? s_jstr(last, "status") : NULL;
        const char *error = last ? s_jstr(last, "error") : NULL;
        if (status && strcmp(status, "nothing") == 0 && error &&
            strncmp(error, "nothing to do", 13) == 0)
            snprintf(note, len, "%s", error);
        else if (status && strcmp(status, "nothing") == 0)
            snprintf(note, len, "nothing to do: the fixer changed nothing, so there is no commit");
        else if (last)
            snprintf(note, len,
                     "the plan never had a branch with a commit: its execution ended with "
                     "status %s",
                     s_jstr(last, "status") ? s_jstr(last, "status") : "unknown");
        else
            snprintf(note, len,
                     "the plan never had a branch with a commit: no execution result was "
                     "recorded; it is %s",
                     state);
        return;
    }
    if (strcmp(state, "rejected") == 0 || strcmp(state, "failed") == 0)
        snprintf(note, len, "the branch %s was deleted from %s when the plan was %s: the rollback",
                 branch, path, state);
    else
        snprintf(note, len, "the branch %s no longer exists in %s; the plan is %s", branch, path,
                 state);
}

/* Where the plan's commit is in PATH: refs/kaizen/plans/ID (the router
   keeps every plan's commit there), else the branch kaizen/plan-ID. 1
   with REF, 0 when neither exists, -1 with ERR */
static int s_plan_ref(const char *path, const char *plan_id, char *ref, size_t len, char *err,
                      size_t errlen)
{
    snprintf(ref, len, "refs/kaizen/plans/%s", plan_id);
    int rc = kz_git_ref_exists(path, ref, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(ref, len, "refs/heads/kaizen/plan-%s", plan_id);
    return kz_git_ref_exists(path, ref, err, errlen);
}

/* The plan's commit in PATH against the plan's BASE: "message", "diff"
   (unless !WITH_DIFF) and "diff_note" (what was diffed where) into DOC,
   0; or -1 when there is no such commit, with the reason in NOTE */
static int s_commit_diff(const char *path, const char *plan_id, const char *base, bool with_diff,
                         json_t *doc, char *note, size_t len)
{
    char ref[S_ID_MAX + 32], from[sizeof ref + KZ_GIT_OID_MAX], err[1024] = "";
    int found = s_plan_ref(path, plan_id, ref, sizeof ref, err, sizeof err);
    if (found <= 0) {
        if (found < 0)
            snprintf(note, len, "%s", err);
        return -1;
    }
    char *msg = NULL, *diff = NULL;
    if (kz_git_message(path, ref, 0, &msg, err, sizeof err) == 0) {
        s_utf8_clean(msg);
        json_object_set_new(doc, "message", json_string(msg));
        free(msg);
    }
    snprintf(from, sizeof from, "%s", base && *base ? base : "");
    if (!from[0])
        snprintf(from, sizeof from, "%s~1", ref);
    if (!with_diff)
        snprintf(note, len, "not shown (--no-diff); git diff %.64s..%s in %s", from, ref, path);
    else if (kz_git_diff(path, from, ref, S_DIFF_MAX, &diff, err, sizeof err) != 0)
        snprintf(note, len, "%s", err);
    else
        snprintf(note, len, "git diff %.64s..%s in %s%s", from, ref, path,
                 strlen(diff) >= S_DIFF_MAX ? " (cut at 1 MiB)" : "");
    if (diff)
        s_utf8_clean(diff); /* a binary or Latin-1 line must not break the JSON */
    json_object_set_new(doc, "diff", diff ? json_string(diff) : json_null());
    free(diff);
    return 0;
}

/* The plan's commit message and diff (s_commit_diff), or why there is
   none; sets "diff" (text or null), "diff_note" and maybe "message" */
static void s_diff(const kz_config_t *cfg, const char *plan_id, const char *target,
                   const char *base, bool with_diff, json_t *doc)
{
    const kz_target_config_t *t = target && *target ? kz_config_target(cfg, target) : NULL;
    char branch[S_ID_MAX + 32], note[PATH_MAX + 512] = "";
    snprintf(branch, sizeof branch, "kaizen/plan-%s", plan_id);
    if (!target || !*target) {
        snprintf(note, sizeof note, "the plan names no target");
    } else if (!t) {
        snprintf(note, sizeof note, "target '%s' is not in this config", target);
    } else if (s_commit_diff(t->path, plan_id, base, with_diff, doc, note, sizeof note) == 0) {
        json_object_set_new(doc, "diff_note", json_string(note));
        return;
    } else if (!note[0]) {
        s_no_branch_note(doc, branch, t->path, note, sizeof note);
    }
    json_object_set_new(doc, "diff", json_null());
    json_object_set_new(doc, "diff_note", json_string(note));
}

/* The plan and everything recorded about it, or NULL after the message */
static json_t *s_gather_plan(const kz_config_t *cfg, PGconn *db, const s_plan_t *p, bool with_diff)
{
    static const char plan_sql[] =
        "SELECT plan_id, status, target, fixer, COALESCE(implementation_plan, '{}'::jsonb)::text, "
        "risk, effort, estimated_impact, title, description, agent_name, "
        "to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), "
        "to_char(COALESCE(updated_at, created_at), 'YYYY-MM-DD HH24:MI:SS'), "
        "to_char(implemented_at, 'YYYY-MM-DD HH24:MI:SS') "
        "FROM improvement_suggestions WHERE plan_id = $1";
    /* plan.state rows carry their state in the body */
    static const char trans_sql[] =
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), "
        "COALESCE(CASE WHEN state = 'state' THEN details->>'state' END, state), src, "
        "details->>'reason', COALESCE(details->'reasons', 'null'::jsonb)::text, details->>'by', "
        "CASE WHEN state IN ('rejected', 'failed') THEN details->>'state' END "
        "FROM plan_transitions WHERE plan_id = $1 ORDER BY at, id";
    /* what the router republished of the executor's and the validators'
       replies (db/migrations/0002_loop.sql) */
    static const char exec_sql[] =
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), status, commit, "
        "COALESCE(files, 'null'::jsonb)::text, diffstat, error, src "
        "FROM executions WHERE plan_id = $1 ORDER BY at, id";
    static const char valid_sql[] =
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), validator, verdict, "
        "COALESCE(reasons, 'null'::jsonb)::text, COALESCE(details, 'null'::jsonb)::text, src "
        "FROM validations WHERE plan_id = $1 ORDER BY at, id";
    const char *params[1] = {p->plan_id};
    PGresult *res = s_exec(db, "plans", plan_sql, 1, params);
    if (!res)
        return NULL;
    if (PQntuples(res) != 1) {
        PQclear(res);
        kz_cli_error("plans", "plan '%s' vanished while it was read", p->plan_id);
        return NULL;
    }
    json_t *plan = s_json_cell(res, 0, 4);
    if (!json_is_object(plan)) {
        json_decref(plan);
        plan = json_object();
    }
    json_t *doc = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "plan_id",
        s_cell(res, 0, 0), "state", s_cell(res, 0, 1), "target", s_cell(res, 0, 2), "fixer",
        s_cell(res, 0, 3), "risk", s_real_cell(res, 0, 5), "effort", s_real_cell(res, 0, 6),
        "impact", s_real_cell(res, 0, 7), "title", s_cell(res, 0, 8), "rationale",
        s_cell(res, 0, 9), "proposed_by", s_cell(res, 0, 10), "created_at", s_cell(res, 0, 11),
        "updated_at", s_cell(res, 0, 12), "accepted_at", s_cell(res, 0, 13));
    PQclear(res);
    if (!doc) {
        json_decref(plan);
        kz_cli_error("plans", "out of memory");
        return NULL;
    }
    json_object_set_new(doc, "plan", plan);

    res = s_exec(db, "plans", trans_sql, 1, params);
    if (!res)
        goto fail;
    json_t *trans = json_array();
    for (int r = 0; trans && r < PQntuples(res); r++)
        json_array_append_new(trans, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "at",
                                               s_cell(res, r, 0), "state", s_cell(res, r, 1), "src",
                                               s_cell(res, r, 2), "reason", s_cell(res, r, 3),
                                               "reasons", s_json_cell(res, r, 4), "by",
                                               s_cell(res, r, 5), "in", s_cell(res, r, 6)));
    PQclear(res);
    json_object_set_new(doc, "transitions", trans ? trans : json_array());

    res = s_exec(db, "plans", exec_sql, 1, params);
    if (!res)
        goto fail;
    json_t *arr = json_array();
    for (int r = 0; arr && r < PQntuples(res); r++)
        json_array_append_new(arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "at",
                                             s_cell(res, r, 0), "status", s_cell(res, r, 1),
                                             "commit", s_cell(res, r, 2), "files",
                                             s_json_cell(res, r, 3), "diffstat", s_cell(res, r, 4),
                                             "error", s_cell(res, r, 5), "src", s_cell(res, r, 6)));
    PQclear(res);
    json_object_set_new(doc, "executions", arr ? arr : json_array());
    res = s_exec(db, "plans", valid_sql, 1, params);
    if (!res)
        goto fail;
    arr = json_array();
    for (int r = 0; arr && r < PQntuples(res); r++)
        json_array_append_new(arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "at",
                                             s_cell(res, r, 0), "validator", s_cell(res, r, 1),
                                             "verdict", s_cell(res, r, 2), "reasons",
                                             s_json_cell(res, r, 3), "details",
                                             s_json_cell(res, r, 4), "src", s_cell(res, r, 5)));
    PQclear(res);
    json_object_set_new(doc, "validations", arr ? arr : json_array());
    s_diff(cfg, p->plan_id, p->target, s_jstr(plan, "base_commit"), with_diff, doc);
    json_object_set_new(doc, "had_branch", json_boolean(s_had_branch(doc)));
    return doc;
fail:
    json_decref(doc);
    return NULL;
}

/* Each of REASONS on its own line, but SKIP (the reason already shown) */
static void s_print_reasons(const char *indent, const json_t *reasons, const char *skip)
{
    size_t i;
    json_t *v;
    json_array_foreach(reasons, i, v)
    {
        if (!json_is_string(v) || (skip && strcmp(json_string_value(v), skip) == 0))
            continue;
        printf("%s- ", indent);
        s_put(stdout, json_string_value(v));
        printf("\n");
    }
}

/* True when REASON says nothing that REASONS do not: the router's
   rejection joins every validator's reasons with "; " into its reason
   ("test-runner: a; b; code-reviewer: c") and lists them one by one in
   reasons ("test-runner: a", "test-runner: b", ...), so each "; " part
   of REASON is found in one of them. Then only the list is printed. */
static bool s_reason_in(const char *reason, const json_t *reasons)
{
    if (!reason || json_array_size(reasons) == 0)
        return false;
    const char *part = reason;
    while (*part) {
        const char *end = strstr(part, "; ");
        size_t n = end ? (size_t)(end - part) : strlen(part);
        bool found = n == 0;
        size_t i;
        json_t *v;
        json_array_foreach(reasons, i, v)
        {
            const char *s = json_string_value(v);
            if (!found && s)
                found = memmem(s, strlen(s), part, n) != NULL;
        }
        if (!found)
            return false;
        part = end ? end + 2 : part + n;
    }
    return true;
}

static void s_print_field(const char *label, const char *value)
{
    printf("  %-11s ", label);
    s_put(stdout, value && *value ? value : "-");
    printf("\n");
}

static void s_show_text(const json_t *doc)
{
    const json_t *plan = json_object_get(doc, "plan");
    char buf[4096];
    printf("plan %s  (%s)\n", s_jstr(doc, "plan_id"),
           s_jstr(doc, "state") ? s_jstr(doc, "state") : "?");
    s_print_field("target", s_jstr(doc, "target"));
    s_print_field("fixer", s_jstr(doc, "fixer"));
    if (s_jstr(plan, "tool"))
        s_print_field("tool", s_jstr(plan, "tool"));
    if (json_array_size(json_object_get(plan, "rules")) > 0) {
        s_join_list(json_object_get(plan, "rules"), 400, buf, sizeof buf);
        s_print_field("rules", buf);
    }
    s_join_list(json_object_get(plan, "files"), 2000, buf, sizeof buf);
    s_print_field("files", buf);
    snprintf(buf, sizeof buf, "%zu fingerprint%s",
             json_array_size(json_object_get(plan, "findings")),
             json_array_size(json_object_get(plan, "findings")) == 1 ? "" : "s");
    s_print_field("findings", buf);
    const char *nums[] = {"impact", "effort", "risk"};
    size_t at = 0;
    for (int k = 0; k < 3; k++) {
        const json_t *v = json_object_get(doc, nums[k]);
        int n = json_is_number(v)
                    ? snprintf(buf + at, sizeof buf - at, "%s%s %.2f", at ? "  " : "", nums[k],
                               json_number_value(v))
                    : snprintf(buf + at, sizeof buf - at, "%s%s -", at ? "  " : "", nums[k]);
        at = n > 0 && (size_t)n < sizeof buf - at ? at + (size_t)n : at;
    }
    const json_t *rank = json_object_get(plan, "rank");
    if (json_is_integer(rank))
        snprintf(buf + at, sizeof buf - at, "  rank %lld", (long long)json_integer_value(rank));
    s_print_field("score", buf);
    if (s_jstr(plan, "language"))
        s_print_field("language", s_jstr(plan, "language"));
    s_print_field("base", s_jstr(plan, "base_commit"));
    s_print_field("scan", s_jstr(plan, "scan_id"));
    if (s_jstr(doc, "rationale"))
        s_print_field("rationale", s_jstr(doc, "rationale"));
    s_print_field("proposed", s_jstr(doc, "created_at"));
    s_print_field("updated", s_jstr(doc, "updated_at"));

    printf("\ntransitions:\n");
    size_t i;
    json_t *t;
    if (json_array_size(json_object_get(doc, "transitions")) == 0)
        printf("  (none recorded)\n");
    json_array_foreach(json_object_get(doc, "transitions"), i, t)
    {
        printf("  %s  %-18s ", s_jstr(t, "at") ? s_jstr(t, "at") : "-",
               s_jstr(t, "state") ? s_jstr(t, "state") : "?");
        s_put(stdout, s_jstr(t, "src"));
        if (s_jstr(t, "in")) {
            printf("  in ");
            s_put(stdout, s_jstr(t, "in"));
        }
        if (s_jstr(t, "by")) {
            printf("  by ");
            s_put(stdout, s_jstr(t, "by"));
        }
        printf("\n");
        const char *reason = s_jstr(t, "reason");
        const json_t *reasons = json_object_get(t, "reasons");
        if (s_reason_in(reason, reasons)) {
            printf("      reasons:\n");
            s_print_reasons("      ", reasons, NULL);
            continue;
        }
        if (reason) {
            printf("      reason: ");
            s_put(stdout, reason);
            printf("\n");
        }
        s_print_reasons("      ", reasons, reason);
    }

    printf("\nexecution:\n");
    if (json_array_size(json_object_get(doc, "executions")) == 0)
        printf("  (none recorded)\n");
    json_array_foreach(json_object_get(doc, "executions"), i, t)
    {
        printf("  %s  status ", s_jstr(t, "at") ? s_jstr(t, "at") : "-");
        s_put(stdout, s_jstr(t, "status"));
        if (s_jstr(t, "commit")) {
            printf("  commit ");
            s_put(stdout, s_jstr(t, "commit"));
        }
        printf("\n");
        if (json_array_size(json_object_get(t, "files")) > 0) {
            s_join_list(json_object_get(t, "files"), 2000, buf, sizeof buf);
            printf("      files: ");
            s_put(stdout, buf);
            printf("\n");
        }
        if (s_jstr(t, "diffstat")) {
            printf("      ");
            s_put(stdout, s_jstr(t, "diffstat"));
            printf("\n");
        }
        if (s_jstr(t, "error")) {
            printf("      error: ");
            s_put(stdout, s_jstr(t, "error"));
            printf("\n");
        }
    }

    printf("\nvalidations:\n");
    if (json_array_size(json_object_get(doc, "validations")) == 0)
        printf("  (none recorded)\n");
    json_array_foreach(json_object_get(doc, "validations"), i, t)
    {
        printf("  %s  ", s_jstr(t, "at") ? s_jstr(t, "at") : "-");
        s_put(stdout, s_jstr(t, "validator"));
        printf(": ");
        s_put(stdout, s_jstr(t, "verdict"));
        printf("\n");
        s_print_reasons("      ", json_object_get(t, "reasons"), NULL);
    }

    const char *msg = s_jstr(doc, "message");
    if (msg) {
        printf("\ncommit message:\n");
        for (const char *line = msg; line;) {
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line) : strlen(line);
            char *one = strndup(line, n);
            printf("    ");
            s_put(stdout, one ? one : "");
            printf("\n");
            free(one);
            line = end ? end + 1 : NULL;
        }
    }
    const char *diff = s_jstr(doc, "diff");
    bool skipped = !diff && json_object_get(doc, "message");
    printf(diff || skipped ? "\ndiff: " : "\ndiff: none (");
    s_put(stdout, s_jstr(doc, "diff_note"));
    printf(diff || skipped ? "\n" : ")\n");
    if (diff) {
        fputs(diff, stdout);
        if (*diff && diff[strlen(diff) - 1] != '\n')
            printf("\n");
    }
}

static int s_show(kz_cli_t *cli, int argc, char **argv)
{
    bool json = false, with_diff = true;
    opterr = 0;
    optind = 0;
    int c;
    /* argv[0] is "show" */
    while ((c = getopt_long(argc, argv, ":", s_show_opts, NULL)) != -1) {
        if (c == 'j')
            json = true;
        else if (c == 'D')
            with_diff = false;
        else
            return kz_cli_bad_option("plans", c, argv);
    }
    if (optind >= argc)
        return kz_cli_usage("plans", "'plans show' needs a plan ID");
    if (optind + 1 < argc)
        return kz_cli_usage("plans", "unexpected argument '%s'", argv[optind + 1]);
    const char *id = argv[optind];
    if (!kz_id_valid(id))
        return kz_cli_usage("plans",
                            "'%s' is not a plan id (letters, digits, '_' and '-', at most %d)", id,
                            S_ID_MAX);
    const kz_config_t *cfg = cli->cfg;
    PGconn *db = s_connect(cfg, "plans", 2); /* executions, validations */
    if (!db)
        return KZ_EXIT_FAILURE;
    s_plan_t p;
    memset(&p, 0, sizeof p);
    int rc = s_resolve(db, "plans", id, &p);
    json_t *doc = rc == KZ_EXIT_OK ? s_gather_plan(cfg, db, &p, with_diff) : NULL;
    PQfinish(db);
    if (rc != KZ_EXIT_OK)
        return rc;
    if (!doc)
        return KZ_EXIT_FAILURE;
    if (json)
        rc = s_print_doc("plans", doc);
    else
        s_show_text(doc);
    json_decref(doc);
    return s_flush("plans", rc);
}

static int s_plans(kz_cli_t *cli, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "show") == 0)
        return s_show(cli, argc - 1, argv + 1);
    const char *state = NULL, *target = NULL;
    long limit = S_DEFAULT_LIMIT;
    bool json = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_list_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (!s_state_ok(optarg))
                return kz_cli_usage("plans", "unknown state '%s' (use " S_STATES_TEXT ")", optarg);
            state = optarg;
            break;
        case 'T':
            if (!*optarg)
                return kz_cli_usage("plans", "--target needs a name");
            target = optarg;
            break;
        case 'n':
            if (kz_cli_parse_count(optarg, &limit) != 0 || limit > 1000000)
                return kz_cli_usage("plans", "invalid limit '%s' (0 to 1000000, 0 = all)", optarg);
            break;
        case 'j':
            json = true;
            break;
        default:
            return kz_cli_bad_option("plans", c, argv);
        }
    }
    if (optind < argc) {
        if (strcmp(argv[optind], "show") == 0)
            return kz_cli_usage("plans",
                                "'show' comes first: kaizen plans show ID [--no-diff] [--json]");
        return kz_cli_usage("plans", "unexpected argument '%s'", argv[optind]);
    }
    return s_list(cli->cfg, state, target, limit, json);
}

/* ------------------------------------------------------ approve / reject */

/* Who decides: $USER, else the name of our uid, else "uid N"; at most
   255 bytes (the protocol's limit on `by`) */
static void s_who(char *buf, size_t len)
{
    const char *user = getenv("USER");
    bool ok = user && *user && strlen(user) < 256;
    for (const char *q = user; ok && *q; q++)
        ok = (unsigned char)*q > 0x20 && *q != 0x7f;
    if (!ok) {
        struct passwd *pw = getpwuid(getuid());
        user = pw && pw->pw_name && *pw->pw_name ? pw->pw_name : NULL;
    }
    if (user)
        snprintf(buf, len < 256 ? len : 256, "%s", user);
    else
        snprintf(buf, len, "uid %ld", (long)getuid());
}

/* A message of TYPE about plan P: body {plan_id, by[, decision][, reason]} */
static kz_msg_t *s_decision_msg(const char *type, const char *src, const s_plan_t *p,
                                const char *by, const char *decision, const char *reason)
{
    kz_msg_t *m = kz_msg_new(type);
    if (!m)
        return NULL;
    kz_val_t *b = kz_msg_body(m);
    if (kz_msg_set_src(m, src) != 0 || kz_msg_set_corr(m, p->plan_id) != 0 ||
        (*p->target && kz_msg_set_target(m, p->target) != 0) ||
        kz_map_put_str(m, b, "plan_id", p->plan_id) != 0 ||
        (decision && kz_map_put_str(m, b, "decision", decision) != 0) ||
        kz_map_put_str(m, b, "by", by) != 0 ||
        (reason && kz_map_put_str(m, b, "reason", reason) != 0) ||
        /* a person's rejection says something of the plan (and its fixer):
           the learner counts it */
        (strcmp(type, "plan.rejected") == 0 && kz_map_put_str(m, b, "cause", "person") != 0))
        kz_msg_destroy(&m);
    return m;
}

/* Publish MSGS[0..N) (all taken); KZ_EXIT_OK or KZ_EXIT_FAILURE */
static int s_publish(const kz_config_t *cfg, const char *cmd, const char *src, kz_msg_t **msgs,
                     int n)
{
    int rc = KZ_EXIT_OK;
    for (int i = 0; i < n; i++)
        if (!msgs[i] || kz_cli_check_msg(cmd, msgs[i]) != KZ_EXIT_OK)
            rc = msgs[i] ? KZ_EXIT_FAILURE : kz_cli_error(cmd, "out of memory");
    char err[512] = "";
    kz_bus_t *bus = rc == KZ_EXIT_OK ? kz_bus_new(&cfg->bus, src, err, sizeof err) : NULL;
    if (rc == KZ_EXIT_OK && !bus)
        rc = kz_cli_error(cmd, "%s", err);
    if (rc == KZ_EXIT_OK && kz_bus_wait_publisher(bus, S_PUB_TIMEOUT_MS) != 0)
        rc = kz_cli_error(cmd, "no broker at '%s': is kaizen running? ('kaizen up')",
                          cfg->bus.connect.pub ? cfg->bus.connect.pub : "?");
    for (int i = 0; i < n; i++) {
        if (rc == KZ_EXIT_OK && kz_bus_publish(bus, &msgs[i]) != 0)
            rc = kz_cli_error(cmd, "unable to publish to '%s'", cfg->bus.connect.pub);
        kz_msg_destroy(&msgs[i]);
    }
    /* sent once the broker confirms it has them (docs/durability.md) */
    int frc = rc == KZ_EXIT_OK ? kz_bus_flush(bus, 5000) : 0;
    if (frc != 0) {
        char why[512];
        rc = kz_cli_error(cmd, "%s", kz_bus_flush_error(bus, frc, 5000, why, sizeof why));
    }
    kz_bus_destroy(&bus); /* lingers until they are out */
    return rc;
}

/* Why a plan in STATE can no longer be rejected, for the message */
static const char *s_state_why(const char *state)
{
    static const char *const final[] = {"accepted", "rejected", "failed", "dropped", NULL};
    static const char *const running[] = {"executing", "executed", "validating", NULL};
    for (const char *const *s = final; *s; s++)
        if (strcmp(state, *s) == 0)
            return " (final)";
    for (const char *const *s = running; *s; s++)
        if (strcmp(state, *s) == 0)
            return " (the router is executing and validating it)";
    if (strcmp(state, "approved") == 0)
        return " (the router executes it next)";
    return "";
}

static bool s_in(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

/* approve (WHY NULL) or reject */
static int s_decide(kz_cli_t *cli, const char *cmd, const char *id, const char *why)
{
    static const char *const approvable[] = {"awaiting_approval", NULL};
    static const char *const rejectable[] = {"awaiting_approval", "ready", "proposed", NULL};
    bool approve = why == NULL;
    PGconn *db = s_connect(cli->cfg, cmd, 1);
    if (!db)
        return KZ_EXIT_FAILURE;
    s_plan_t p;
    memset(&p, 0, sizeof p);
    int rc = s_resolve(db, cmd, id, &p);
    PQfinish(db);
    if (rc != KZ_EXIT_OK)
        return rc;
    if (!s_in(p.state, approve ? approvable : rejectable)) {
        if (approve)
            fprintf(stderr,
                    "kaizen approve: plan %s is %s, not awaiting approval: only a plan "
                    "waiting in awaiting_approval can be approved\n",
                    p.plan_id, *p.state ? p.state : "in no known state");
        else
            fprintf(stderr,
                    "kaizen reject: plan %s is %s%s: only a plan awaiting approval, ready "
                    "or proposed can be rejected\n",
                    p.plan_id, *p.state ? p.state : "in no known state", s_state_why(p.state));
        return S_EXIT_STATE;
    }
    char by[256], host[256] = "localhost", src[600];
    s_who(by, sizeof by);
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(src, sizeof src, "kaizen-%s@%s#%ld", cmd, host, (long)getpid());
    kz_msg_t *msgs[2];
    msgs[0] = s_decision_msg(approve ? "plan.approved" : "plan.rejected", src, &p, by, NULL, why);
    msgs[1] = s_decision_msg("feedback.decision", src, &p, by, approve ? "approve" : "reject", why);
    rc = s_publish(cli->cfg, cmd, src, msgs, 2);
    if (rc != KZ_EXIT_OK)
        return rc;
    if (approve)
        printf("approved plan %s (target %s, fixer %s) as %s: the router will execute and "
               "validate it; follow it with 'kaizen plans show %s'\n",
               p.plan_id, *p.target ? p.target : "-", *p.fixer ? p.fixer : "-", by, p.plan_id);
    else
        printf("rejected plan %s (target %s, fixer %s) as %s: %s\n", p.plan_id,
               *p.target ? p.target : "-", *p.fixer ? p.fixer : "-", by, why);
    return s_flush(cmd, KZ_EXIT_OK);
}

static int s_approve(kz_cli_t *cli, int argc, char **argv)
{
    opterr = 0;
    int c = getopt_long(argc, argv, ":", s_approve_opts, NULL);
    if (c != -1)
        return kz_cli_bad_option("approve", c, argv);
    if (optind >= argc)
        return kz_cli_usage("approve", "missing the plan ID");
    if (optind + 1 < argc)
        return kz_cli_usage("approve", "unexpected argument '%s'", argv[optind + 1]);
    if (!kz_id_valid(argv[optind]))
        return kz_cli_usage("approve",
                            "'%s' is not a plan id (letters, digits, '_' and '-', at most %d)",
                            argv[optind], S_ID_MAX);
    return s_decide(cli, "approve", argv[optind], NULL);
}

static int s_reject(kz_cli_t *cli, int argc, char **argv)
{
    const char *why = NULL;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_reject_opts, NULL)) != -1) {
        if (c == 'w')
            why = optarg;
        else
            return kz_cli_bad_option("reject", c, argv);
    }
    if (optind >= argc)
        return kz_cli_usage("reject", "missing the plan ID");
    if (optind + 1 < argc)
        return kz_cli_usage("reject", "unexpected argument '%s'", argv[optind + 1]);
    if (!kz_id_valid(argv[optind]))
        return kz_cli_usage("reject",
                            "'%s' is not a plan id (letters, digits, '_' and '-', at most %d)",
                            argv[optind], S_ID_MAX);
    if (!why || !*why)
        return kz_cli_usage("reject", "say why with --why TEXT (it is recorded with the decision)");
    if (strlen(why) > 65536)
        return kz_cli_usage("reject", "--why is longer than 64 KiB");
    return s_decide(cli, "reject", argv[optind], why);
}

const kz_cli_cmd_t kz_cmd_plans = {
    "plans",       "list the improvement plans; 'plans show ID' for one",
    s_plans_usage, s_plans,
    true,          s_plans_tables,
    NULL,
};

const kz_cli_cmd_t kz_cmd_approve = {
    "approve",
    "approve a plan awaiting approval",
    s_approve_usage,
    s_approve,
    true,
    s_approve_tables,
    NULL,
};

const kz_cli_cmd_t kz_cmd_reject = {
    "reject",       "reject a plan proposed, ready or awaiting approval (--why TEXT)",
    s_reject_usage, s_reject,
    true,           s_reject_tables,
    NULL,
};
