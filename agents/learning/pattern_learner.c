/*  pattern_learner.c - kaizen-pattern-learner, what kaizen learns from the
    outcome of each plan (layer "learning")

    A member of queue group "learning.patterns" on the prefix "plan." (one
    group can have only one prefix): it handles the final outcomes and
    acknowledges every other plan.* event at once. Only what the fixer
    did counts (s_outcome_of): plan.accepted is a success; plan.rejected
    for the change (cause "change") or by a person ("person") and
    plan.failed because the fixer failed ("fixer") are failures. The
    machinery's causes - nothing to do, a suite that cannot run at the
    base, timeouts, lost replies, no executor, integration conflicts -
    move no rate: the learner still publishes learn.update for them, with
    outcome "ignored", the cause and the counts unchanged.

    For an outcome it looks the plan up (improvement_suggestions by
    plan_id: implementation_plan is the plan.proposed / plan.ready body
    with fixer, rules[], language; the target is the row's, else the
    envelope's), waiting a little when the recorder has not stored it yet.
    For each distinct rule of the plan it updates the pattern
    "fixer|rule|language|target": successes s and failures f, success rate
    the posterior mean of a Beta(1, 1) prior, (s + 1) / (s + f + 2), and
    publishes learn.update {pattern, success, failure, rate, plan_id,
    outcome} (envelope target, corr = plan_id); the recorder keeps one
    learned_patterns row per pattern (usage_count = s + f). The
    prioritizer reads the rates as its confidence.

    Each plan is counted once per pattern, whatever the redeliveries:
    patterns already updated for a plan are found in the learn.update
    events the recorder stored (body plan_id) and in this process's memory
    (the recorder stores asynchronously). The counts start from the
    learned_patterns row and from this process's memory, whichever is
    further (counts only grow), so an update not yet stored is not lost.

    Plans it cannot learn from (an unknown plan, no rules, a target not in
    the config, names with '|') are logged and acknowledged; an unreachable
    database makes it hand the delivery back (NACK) to try again later.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kz_agent.h"
#include "kz_db.h"
#include "kz_finding.h"
#include "kz_log.h"
#include "kz_store.h"

#define S_GROUP        "learning.patterns"
#define S_PREFIX       "plan."
#define S_APP          "kaizen-pattern-learner"
#define S_ID_MAX       128
#define S_PATTERN_MAX  1024
#define S_PLAN_WAIT_MS 30000 /* for the recorder to store the plan */
#define S_POLL_MS      200
#define S_BACKOFF_MS   2000 /* before handing a delivery back after an error */
#define S_MAX_RULES    256

/* A pattern's counts as this process knows them */
typedef struct {
    char *pattern;
    long s, f;
} s_count_t;

typedef struct {
    kz_store_t *store;
    s_count_t *counts;
    size_t ncounts, counts_cap;
    char **seen; /* "plan_id\tpattern", counted here */
    size_t nseen, seen_cap;
} s_self_t;

/* A part of a pattern: non-empty, short, printable, no '|' */
static bool s_valid_part(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '|' || (unsigned char)s[i] < 0x20)
            return false;
    return true;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------ memory of counts */

static s_count_t *s_count_find(s_self_t *self, const char *pattern)
{
    for (size_t i = 0; i < self->ncounts; i++)
        if (strcmp(self->counts[i].pattern, pattern) == 0)
            return &self->counts[i];
    return NULL;
}

/* Remember PATTERN's counts. 0 / -1 out of memory */
static int s_count_set(s_self_t *self, const char *pattern, long s, long f)
{
    s_count_t *c = s_count_find(self, pattern);
    if (!c) {
        if (self->ncounts == self->counts_cap) {
            size_t cap = self->counts_cap ? self->counts_cap * 2 : 64;
            s_count_t *items = realloc(self->counts, cap * sizeof *items);
            if (!items)
                return -1;
            self->counts = items;
            self->counts_cap = cap;
        }
        c = &self->counts[self->ncounts];
        c->pattern = strdup(pattern);
        if (!c->pattern)
            return -1;
        self->ncounts++;
    }
    c->s = s;
    c->f = f;
    return 0;
}

static bool s_seen(const s_self_t *self, const char *key)
{
    for (size_t i = 0; i < self->nseen; i++)
        if (strcmp(self->seen[i], key) == 0)
            return true;
    return false;
}

static int s_see(s_self_t *self, const char *key)
{
    if (self->nseen == self->seen_cap) {
        size_t cap = self->seen_cap ? self->seen_cap * 2 : 64;
        char **items = realloc(self->seen, cap * sizeof *items);
        if (!items)
            return -1;
        self->seen = items;
        self->seen_cap = cap;
    }
    char *k = strdup(key);
    if (!k)
        return -1;
    self->seen[self->nseen++] = k;
    return 0;
}

static void s_self_free(s_self_t *self)
{
    for (size_t i = 0; i < self->ncounts; i++)
        free(self->counts[i].pattern);
    free(self->counts);
    for (size_t i = 0; i < self->nseen; i++)
        free(self->seen[i]);
    free(self->seen);
    kz_store_destroy(&self->store);
}

/* ------------------------------------------------------------- database */

/* Run SQL; on failure the store's connection is dropped when it broke */
static PGresult *s_exec(s_self_t *self, const char *sql, int n, const char *const *params,
                        char *err, size_t errlen)
{
    PGconn *db = kz_store_db(self->store, err, errlen);
    if (!db)
        return NULL;
    PGresult *res = kz_db_exec(db, sql, n, params, err, errlen);
    if (!res && PQstatus(db) != CONNECTION_OK)
        kz_store_reset(self->store);
    return res;
}

/* Was PATTERN already counted for PLAN_ID (a stored learn.update)? 1 / 0 / -1 */
static int s_counted_in_db(s_self_t *self, const char *plan_id, const char *pattern, char *err,
                           size_t errlen)
{
    const char *params[] = {plan_id, pattern};
    PGresult *res = s_exec(self,
                           "SELECT EXISTS (SELECT 1 FROM events WHERE type = 'learn.update' AND "
                           "body->>'plan_id' = $1 AND body->>'pattern' = $2)",
                           2, params, err, errlen);
    if (!res)
        return -1;
    int rc = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return rc;
}

/* The stored counts of PATTERN (0, 0 when it has no row). 0 / -1 */
static int s_stored_counts(s_self_t *self, const char *pattern, long *s, long *f, char *err,
                           size_t errlen)
{
    const char *params[] = {pattern};
    PGresult *res =
        s_exec(self, "SELECT successes, failures FROM learned_patterns WHERE pattern = $1", 1,
               params, err, errlen);
    if (!res)
        return -1;
    *s = *f = 0;
    if (PQntuples(res) == 1 && PQnfields(res) == 2) {
        *s = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        *f = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    }
    /* the row comes from learn.update bodies (bus input): a negative
       count would make the rate's denominator (s + f + 2) zero or less */
    if (*s < 0)
        *s = 0;
    if (*f < 0)
        *f = 0;
    PQclear(res);
    return 0;
}

/* --------------------------------------------------------------- plans */

/* What a plan tells the learner: fixer, rules[] (distinct), language
   (or the first file, to derive it from) */
typedef struct {
    char fixer[256];
    char language[256];
    char first_file[4097];
    char *rules[S_MAX_RULES];
    size_t nrules;
} s_plan_t;

static void s_plan_free(s_plan_t *p)
{
    for (size_t i = 0; i < p->nrules; i++)
        free(p->rules[i]);
    p->nrules = 0;
}

/* Read PLAN_ID's fields from its improvement_suggestions row with
   PostgreSQL's JSON operators (no JSON parsing here). 1 found, 0 not
   stored (yet), -1 with ERR */
static int s_plan_load(s_self_t *self, const char *plan_id, s_plan_t *plan, char *target,
                       size_t target_len, char *err, size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    const char *params[] = {plan_id};
    PGresult *res = s_exec(
        self,
        "SELECT implementation_plan->>'fixer', implementation_plan->>'language', "
        "implementation_plan->'files'->>0, target FROM improvement_suggestions WHERE plan_id = "
        "$1 AND implementation_plan IS NOT NULL",
        1, params, err, errlen);
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        PQclear(res);
        return 0;
    }
    snprintf(plan->fixer, sizeof plan->fixer, "%s", PQgetvalue(res, 0, 0));
    snprintf(plan->language, sizeof plan->language, "%s", PQgetvalue(res, 0, 1));
    snprintf(plan->first_file, sizeof plan->first_file, "%s", PQgetvalue(res, 0, 2));
    snprintf(target, target_len, "%s", PQgetvalue(res, 0, 3));
    PQclear(res);

    /* the rules, one per row (no array literal parsing) */
    res = s_exec(self,
                 "SELECT DISTINCT r FROM improvement_suggestions, "
                 "jsonb_array_elements_text(CASE WHEN jsonb_typeof(implementation_plan->'rules') "
                 "= 'array' THEN implementation_plan->'rules' ELSE '[]'::jsonb END) AS r WHERE "
                 "plan_id = $1 ORDER BY r",
                 1, params, err, errlen);
    if (!res)
        return -1;
    int n = PQntuples(res);
    for (int i = 0; i < n && plan->nrules < S_MAX_RULES; i++) {
        char *r = strdup(PQgetvalue(res, i, 0));
        if (!r) {
            PQclear(res);
            s_plan_free(plan);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        plan->rules[plan->nrules++] = r;
    }
    if (n > S_MAX_RULES)
        kz_warn("plan '%s' names %d rules: only the first %d are learned", plan_id, n, S_MAX_RULES);
    PQclear(res);
    return 1;
}

/* Wait up to S_PLAN_WAIT_MS for the plan's row, also while the database
   is unreachable (a restart: handing the delivery back at once would
   spend its redeliveries in a second). 1 found, 0 never came, -1 with ERR
   (the database still failing at the deadline, or the agent stopping) */
static int s_plan_wait(kz_agent_t *agent, s_self_t *self, const char *plan_id, s_plan_t *plan,
                       char *target, size_t target_len, char *err, size_t errlen)
{
    int64_t deadline = s_mono_ms() + S_PLAN_WAIT_MS;
    for (;;) {
        int rc = s_plan_load(self, plan_id, plan, target, target_len, err, errlen);
        if (rc > 0)
            return rc;
        if (kz_agent_stopping(agent)) {
            if (rc == 0)
                snprintf(err, errlen, "stopping before plan '%s' was stored", plan_id);
            return -1; /* handed back: the next learner takes it */
        }
        if (s_mono_ms() >= deadline)
            return rc;
        kz_agent_keepalive(agent);
        s_sleep_ms(S_POLL_MS);
    }
}

/* ------------------------------------------------------------ handler */

/* What a plan's end says of its fixer */
typedef enum { S_SUCCESS, S_FAILURE, S_IGNORED } s_outcome_t;

static const char *s_outcome_name(s_outcome_t o)
{
    return o == S_SUCCESS ? "success" : o == S_FAILURE ? "failure" : "ignored";
}

/* The outcome of final event TYPE with cause CAUSE (may be NULL): only
   what the fixer did counts. Accepted: a success. Rejected because of the
   change (a validator, cause "change") or by a person ("person"; an old
   plan.rejected without a cause is one of those two): a failure. Failed
   because the fixer itself failed on the files ("fixer"): a failure.
   Every other cause is the machinery's or the plan's - nothing to do, a
   test suite that cannot run at the base, timeouts, lost replies, no
   executor or validator, integration conflicts, interruptions - and
   moves no rate. */
static s_outcome_t s_outcome_of(const char *type, const char *cause)
{
    if (strcmp(type, "plan.accepted") == 0)
        return S_SUCCESS;
    if (strcmp(type, "plan.rejected") == 0)
        return !cause || strcmp(cause, "change") == 0 || strcmp(cause, "person") == 0 ? S_FAILURE
                                                                                      : S_IGNORED;
    return cause && strcmp(cause, "fixer") == 0 ? S_FAILURE : S_IGNORED;
}

/* Count OUTCOME of PLAN_ID for PATTERN and publish it (an ignored one is
   published with the counts unchanged and its CAUSE, so whoever waits for
   the plan's learn.update hears that it was not counted). 0 / -1 (NACK) */
static int s_learn(kz_agent_t *agent, s_self_t *self, const char *plan_id, const char *pattern,
                   const char *target, s_outcome_t outcome, const char *cause)
{
    char err[1024];
    char key[S_ID_MAX + S_PATTERN_MAX + 2];
    snprintf(key, sizeof key, "%s\t%s", plan_id, pattern);
    if (s_seen(self, key)) {
        kz_info("plan '%s' already counted for pattern '%s': skipped", plan_id, pattern);
        return 0;
    }
    int counted = s_counted_in_db(self, plan_id, pattern, err, sizeof err);
    if (counted < 0)
        return kz_fail("unable to learn from plan '%s': %s", plan_id, err);
    if (counted) {
        kz_info("plan '%s' already counted for pattern '%s': skipped", plan_id, pattern);
        return s_see(self, key) == 0 ? 0 : kz_fail("out of memory");
    }
    long s, f;
    if (s_stored_counts(self, pattern, &s, &f, err, sizeof err) != 0)
        return kz_fail("unable to learn from plan '%s': %s", plan_id, err);
    const s_count_t *mem = s_count_find(self, pattern);
    if (mem) {
        s = mem->s > s ? mem->s : s;
        f = mem->f > f ? mem->f : f;
    }
    if (outcome == S_SUCCESS)
        s++;
    else if (outcome == S_FAILURE)
        f++;
    double rate = (double)(s + 1) / (double)(s + f + 2);

    kz_msg_t *msg = kz_msg_new("learn.update");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    if (kz_msg_set_target(msg, target) != 0 || kz_msg_set_corr(msg, plan_id) != 0 ||
        kz_map_put_str(msg, b, "pattern", pattern) != 0 ||
        kz_map_put_int(msg, b, "success", s) != 0 || kz_map_put_int(msg, b, "failure", f) != 0 ||
        kz_map_put_float(msg, b, "rate", rate) != 0 ||
        kz_map_put_str(msg, b, "plan_id", plan_id) != 0 ||
        kz_map_put_str(msg, b, "outcome", s_outcome_name(outcome)) != 0 ||
        (cause && kz_id_valid(cause) && strlen(cause) <= 64 &&
         kz_map_put_str(msg, b, "cause", cause) != 0)) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    if (kz_agent_publish(agent, &msg) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("unable to publish learn.update for pattern '%s'", pattern);
    }
    if (s_count_set(self, pattern, s, f) != 0 || s_see(self, key) != 0)
        return kz_fail("out of memory");
    if (outcome == S_IGNORED)
        kz_info("plan '%s' not counted for pattern '%s' (cause %s: not the fixer's doing): still "
                "%ld successes, %ld failures, rate %.3f",
                plan_id, pattern, cause ? cause : "-", s, f, rate);
    else
        kz_info("learned from plan '%s' (%s): pattern '%s' now %ld successes, %ld failures, rate "
                "%.3f",
                plan_id, s_outcome_name(outcome), pattern, s, f, rate);
    return 0;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *d, void *arg)
{
    s_self_t *self = arg;
    if (d->kind != KZ_DELIVERY_GROUP)
        return 0;
    const char *type = kz_msg_type(d->msg);
    if (strcmp(type, "plan.accepted") != 0 && strcmp(type, "plan.rejected") != 0 &&
        strcmp(type, "plan.failed") != 0)
        return 0; /* plan.proposed, plan.ready, plan.state, ...: not an outcome */
    const kz_val_t *body = kz_msg_body_const(d->msg);
    const char *cause = kz_map_str(body, "cause");
    s_outcome_t outcome = s_outcome_of(type, cause);
    const char *plan_id = kz_map_str(body, "plan_id");
    if (!kz_id_valid(plan_id)) {
        kz_warn("%s from '%s' with an invalid plan_id: ignored", type, kz_msg_src(d->msg));
        return 0;
    }
    char err[1024], target[256] = "";
    s_plan_t plan;
    int rc = s_plan_wait(agent, self, plan_id, &plan, target, sizeof target, err, sizeof err);
    if (rc < 0) {
        kz_error("unable to learn from plan '%s' (%s): %s; will try again", plan_id, type, err);
        return -1;
    }
    if (rc == 0) {
        kz_warn("unable to learn from plan '%s' (%s): no such plan stored after %d s", plan_id,
                type, S_PLAN_WAIT_MS / 1000);
        return 0;
    }
    if (!*target && kz_msg_target(d->msg))
        snprintf(target, sizeof target, "%s", kz_msg_target(d->msg));
    const kz_config_t *cfg = kz_agent_config(agent);
    const char *language = *plan.language     ? plan.language
                           : *plan.first_file ? kz_language_of(plan.first_file)
                                              : "";
    const char *why = NULL;
    if (!*target)
        why = "the plan names no target";
    else if (!kz_config_target(cfg, target))
        why = "its target is not in the config";
    else if (!s_valid_part(plan.fixer))
        why = "the plan names no valid fixer";
    else if (!s_valid_part(language) || !s_valid_part(target))
        why = "its language or target cannot be part of a pattern";
    else if (plan.nrules == 0)
        why = "the plan names no rules";
    if (why) {
        kz_warn("unable to learn from plan '%s' (%s, target '%s'): %s", plan_id, type, target, why);
        s_plan_free(&plan);
        return 0;
    }
    int result = 0;
    for (size_t i = 0; i < plan.nrules && result == 0; i++) {
        if (!s_valid_part(plan.rules[i])) {
            kz_warn("plan '%s': rule '%s' cannot be part of a pattern: skipped", plan_id,
                    plan.rules[i]);
            continue;
        }
        char pattern[S_PATTERN_MAX + 1];
        int n = snprintf(pattern, sizeof pattern, "%s|%s|%s|%s", plan.fixer, plan.rules[i],
                         language, target);
        if (n < 0 || (size_t)n >= sizeof pattern) {
            kz_warn("plan '%s': pattern for rule '%s' too long: skipped", plan_id, plan.rules[i]);
            continue;
        }
        result = s_learn(agent, self, plan_id, pattern, target, outcome, cause);
        kz_agent_keepalive(agent); /* up to S_MAX_RULES patterns, each read and published */
    }
    s_plan_free(&plan);
    if (result != 0) {
        /* handed back after a moment: a database hiccup should not spend
           every redelivery within a second */
        for (int i = 0; i < S_BACKOFF_MS / S_POLL_MS && !kz_agent_stopping(agent); i++) {
            kz_agent_keepalive(agent);
            s_sleep_ms(S_POLL_MS);
        }
    }
    return result;
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
        .name = "pattern-learner",
        .layer = "learning",
        .summary = "learns from every plan outcome: success rates of fixer, rule, language and "
                   "target",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = &self,
    };
    int rc = kz_agent_main(argc, argv, &def);
    s_self_free(&self);
    return rc;
}
