/*  test_runner.c - kaizen-test-runner (layer "validation"), service validate.tests

    Answers validate.request {plan_id, commit, base_commit} for the target
    named by the envelope (or, for hand-made requests, a body field
    "target"): runs the target's test command on the plan's commit and on
    its base (lib/kz_testsuite.h: a detached worktree each, targets[].env,
    the timeout, the parsers of lib/kz_testresult.h) and rejects the plan
    when a test that passed on the base fails now.

    The base must be usable (kz_testsuite_judge): the suite ran at least
    one test and passed it, exited as the project's passing runs do, and -
    for Python - imported the project's package from the worktree. When
    it is not, no plan on that base can be validated: the answer is verdict
    "error", cause "suite", reason "tests cannot run at base: <why>" (the
    router fails the plan and never counts it against the fixer). The base
    results - usable or not - are cached per commit, so every plan on a
    base gets its answer at once.

    Up front: as a member of queue group "validation.tests-base" on
    scan.completed, for a scan (status ok or partial, with a commit) of a
    configured target with a test command, it runs - or looks up - the base
    of the scanned commit and publishes tests.base, so `run-once` can say
    whether the target's tests can run before any plan waits on them.

    How a plan's run compares with its base, best first: named tests from
    the same kind of report (each test that passed on the base and now
    fails, errors or is missing is a reason of its own), else the counts,
    else the exit status; a command that exits non-zero where it exited 0
    on the base is always a reject, and so is a run killed after
    targets[].test_timeout ("timed out"). An unknown target, one without a
    test command, a commit that is not there, a worktree git refuses or a
    command that cannot start on the plan's commit: verdict "error" with
    the reason. So is a commit that is not a plan's (kz_plan_check_commit):
    it must be the head of the plan's branch kaizen/plan-<plan_id>,
    descend from base_commit and not be it, and base_commit must be on the
    target's branch - a request for any other commit of the repository
    runs nothing. The reply echoes the request's commit (the router checks
    it).

    Worktrees are removed after every request, whatever happened. During a
    run the agent keeps its bus registrations alive (kz_proc's tick).
*/
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "kz_agent.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_plan.h"
#include "kz_proc.h"
#include "kz_testresult.h"
#include "kz_testsuite.h"

#define S_SERVICE     "validate.tests"
#define S_VALIDATOR   "test-runner"
#define S_GROUP       "validation.tests-base" /* queue group on scan.completed */
#define S_SCANS       "scan.completed"
#define S_CAUSE_SUITE "suite" /* validate.result and tests.base: the suite cannot run */
#define S_MAX_REASONS 50      /* reasons listed in a reply; the rest are counted */
#define S_MAX_LISTED  200     /* test ids listed in details.newly_failing */

typedef kz_testsuite_run_t s_run_t;

/* A growing list of reasons */
typedef struct {
    char **items;
    size_t count, cap;
    size_t dropped; /* reasons beyond S_MAX_REASONS */
} s_reasons_t;

/* ------------------------------------------------------------ helpers */

/* A commit as the protocol sends it: 4..64 hex digits (never an option or a
   revision expression that git would interpret) */
static bool s_valid_commit(const char *commit)
{
    size_t n = commit ? strlen(commit) : 0;
    if (n < 4 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)commit[i]))
            return false;
    return true;
}

/* The kz_proc options of every test run: the runtime's tick keeps the
   agent's registrations alive (and heartbeats going) while a suite runs,
   and a request nobody waits for any more (another validator rejected the
   plan, the router gave up) stops it */
static void s_proc_opts(kz_agent_t *agent, kz_proc_opts_t *po)
{
    memset(po, 0, sizeof *po);
    po->tick = kz_agent_proc_tick;
    po->tick_arg = agent;
    po->cancel = kz_agent_proc_cancel;
    po->cancel_arg = agent;
}

static int s_reason(s_reasons_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_reason(s_reasons_t *r, const char *fmt, ...)
{
    if (r->count >= S_MAX_REASONS) {
        r->dropped++;
        return 0;
    }
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        char **items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return -1;
        r->items = items;
        r->cap = cap;
    }
    char buf[1400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    char *text = kz_testresult_clean(buf, strlen(buf), sizeof buf - 4);
    if (!text)
        return -1;
    r->items[r->count++] = text;
    return 0;
}

static void s_reasons_free(s_reasons_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->items[i]);
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ verdict */

static const char *s_short(const char *commit)
{
    static char buf[16];
    snprintf(buf, sizeof buf, "%.12s", commit);
    return buf;
}

/* Compare NOW with BASE into REASONS; *NEWLY gets the ids of the tests
   that passed on the base and do not now (borrowed from BASE). 0 / -1 */
static int s_compare(const kz_target_config_t *target, const s_run_t *base, const s_run_t *now,
                     s_reasons_t *reasons, const char ***newly, size_t *nnewly)
{
    *newly = NULL;
    *nnewly = 0;
    if (now->timed_out)
        return s_reason(reasons,
                        "the tests timed out after %d ms on %s (targets[].test_timeout of '%s')",
                        target->test_timeout_ms, s_short(now->commit), target->name);
    /* names compare only within one kind of report: a JUnit id is not a
       PASS: line's name */
    if (base->have_cases && now->have_cases && strcmp(base->source, now->source) == 0) {
        const char **list = calloc(base->tests.count + 1, sizeof *list);
        if (!list)
            return -1;
        *newly = list;
        for (size_t i = 0; i < base->tests.count; i++) {
            const kz_test_case_t *b = &base->tests.items[i];
            if (b->status != KZ_TEST_PASS)
                continue;
            const kz_test_case_t *n = kz_test_cases_find(&now->tests, b->id);
            if (n && (n->status == KZ_TEST_PASS || n->status == KZ_TEST_SKIP))
                continue;
            list[(*nnewly)++] = b->id;
            int rc;
            if (!n)
                rc = s_reason(reasons, "test %s passed on the base commit and did not run on %s",
                              b->id, s_short(now->commit));
            else
                rc = s_reason(reasons, "test %s passed on the base commit and %s on %s%s%s", b->id,
                              n->status == KZ_TEST_ERROR ? "errors" : "fails", s_short(now->commit),
                              n->message ? ": " : "", n->message ? n->message : "");
            if (rc != 0)
                return -1;
        }
        if (*nnewly)
            return 0;
    } else if (base->have_counts && now->have_counts) {
        long bad_now = now->failed + now->errors, bad_base = base->failed + base->errors;
        if (bad_now > bad_base || now->passed < base->passed)
            return s_reason(reasons,
                            "%ld passed and %ld failed on %s, %ld passed and %ld failed on the "
                            "base commit (%s summary)",
                            now->passed, bad_now, s_short(now->commit), base->passed, bad_base,
                            now->source);
    }
    if (base->exit_code == 0 && now->exit_code != 0) {
        if (now->term_signal)
            return s_reason(reasons,
                            "the test command was killed by signal %d on %s (it "
                            "passed on the base commit)%s%s",
                            now->term_signal, s_short(now->commit), now->last[0] ? ": " : "",
                            now->last);
        return s_reason(reasons, "the test command exited %d on %s, 0 on the base commit%s%s",
                        now->exit_code, s_short(now->commit), now->last[0] ? ": " : "", now->last);
    }
    return 0;
}

/* details.<KEY> = what RUN was */
static int s_put_run(kz_msg_t *msg, kz_val_t *details, const char *key, const s_run_t *run)
{
    kz_val_t *m = kz_map_put_map(msg, details, key);
    if (!m)
        return -1;
    if (kz_map_put_str(msg, m, "commit", run->commit) != 0 ||
        kz_map_put_str(msg, m, "source", run->source) != 0 ||
        kz_map_put_int(msg, m, "exit_code", run->exit_code) != 0 ||
        kz_map_put_bool(msg, m, "timed_out", run->timed_out) != 0 ||
        kz_map_put_int(msg, m, "passed", run->passed) != 0 ||
        kz_map_put_int(msg, m, "failed", run->failed) != 0 ||
        kz_map_put_int(msg, m, "errors", run->errors) != 0 ||
        kz_map_put_int(msg, m, "skipped", run->skipped) != 0 ||
        kz_map_put_int(msg, m, "tests", (int64_t)run->tests.count) != 0 ||
        kz_map_put_int(msg, m, "duration_ms", run->duration_ms) != 0 ||
        kz_map_put_bool(msg, m, "cached", run->cached) != 0)
        return -1;
    if (run->last[0] && kz_map_put_str(msg, m, "last_line", run->last) != 0)
        return -1;
    if (run->judged && kz_map_put_bool(msg, m, "usable", run->usable) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ requests */

typedef struct {
    const char *plan_id;
    const char *target;
    const char *commit; /* as the request gave it: the reply says which it judged */
    const char *verdict;
    s_reasons_t reasons;
    const char *cause; /* "suite" when the base cannot validate */
    s_run_t base, now;
    bool base_ran; /* the base was run or read: put it in details */
    bool ran;      /* base and now were attempted: put both in details */
    const char **newly;
    size_t nnewly;
} s_job_t;

static int s_reply(kz_agent_t *agent, const kz_delivery_t *d, s_job_t *job)
{
    kz_msg_t *reply = kz_msg_new("validate.result");
    if (!reply)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(reply);
    int rc = -1;
    if (kz_map_put_str(reply, b, "plan_id", job->plan_id) != 0 ||
        (job->commit && kz_map_put_str(reply, b, "commit", job->commit) != 0) ||
        kz_map_put_str(reply, b, "validator", S_VALIDATOR) != 0 ||
        kz_map_put_str(reply, b, "verdict", job->verdict) != 0 ||
        (job->cause && kz_map_put_str(reply, b, "cause", job->cause) != 0))
        goto done;
    kz_val_t *arr = kz_map_put_array(reply, b, "reasons");
    if (!arr)
        goto done;
    for (size_t i = 0; i < job->reasons.count; i++) {
        kz_val_t *v = kz_array_push(reply, arr);
        if (!v || kz_val_set_str(reply, v, job->reasons.items[i]) != 0)
            goto done;
    }
    if (job->reasons.dropped) {
        char more[64];
        snprintf(more, sizeof more, "... and %zu more", job->reasons.dropped);
        kz_val_t *v = kz_array_push(reply, arr);
        if (!v || kz_val_set_str(reply, v, more) != 0)
            goto done;
    }
    kz_val_t *details = kz_map_put_map(reply, b, "details");
    if (!details)
        goto done;
    if (job->target && kz_map_put_str(reply, details, "target", job->target) != 0)
        goto done;
    if (job->ran) {
        if (s_put_run(reply, details, "base", &job->base) != 0 ||
            s_put_run(reply, details, "now", &job->now) != 0)
            goto done;
        kz_val_t *nl = kz_map_put_array(reply, details, "newly_failing");
        for (size_t i = 0; nl && i < job->nnewly && i < S_MAX_LISTED; i++) {
            kz_val_t *v = kz_array_push(reply, nl);
            if (!v || kz_val_set_str(reply, v, job->newly[i]) != 0)
                goto done;
        }
        if (!nl)
            goto done;
    } else if (job->base_ran && s_put_run(reply, details, "base", &job->base) != 0) {
        goto done;
    }
    if (job->target && kz_msg_set_target(reply, job->target) != 0)
        goto done;
    rc = 0;
done:
    if (rc != 0) {
        kz_msg_destroy(&reply);
        return kz_fail("out of memory building the reply for plan '%s'", job->plan_id);
    }
    if (job->reasons.count)
        kz_info("plan %s: %s (%s%s)", job->plan_id, job->verdict, job->reasons.items[0],
                job->reasons.count > 1 ? ", ..." : "");
    else
        kz_info("plan %s: %s", job->plan_id, job->verdict);
    return kz_bus_reply(kz_agent_bus(agent), d, &reply);
}

/* An "error" reply (PROTOCOL.md 4.18) for a request we cannot take. 0 / -1 */
static int s_reply_error(kz_agent_t *agent, const kz_delivery_t *d, const char *code,
                         const char *text)
{
    kz_msg_t *reply = kz_msg_new("error");
    if (!reply || kz_map_put_str(reply, kz_msg_body(reply), "code", code) != 0 ||
        kz_map_put_str(reply, kz_msg_body(reply), "message", text) != 0) {
        kz_msg_destroy(&reply);
        return kz_fail("out of memory");
    }
    return kz_bus_reply(kz_agent_bus(agent), d, &reply);
}

/* The work of one request; sets job->verdict and the reasons. 0 / -1 */
static int s_validate(kz_agent_t *agent, const kz_val_t *body, s_job_t *job)
{
    const kz_config_t *cfg = kz_agent_config(agent);
    job->verdict = "error";
    const char *commit = kz_map_str(body, "commit");
    const char *base_commit = kz_map_str(body, "base_commit");
    if (!job->target)
        return s_reason(&job->reasons, "the request names no target (envelope target)");
    const kz_target_config_t *target = kz_config_target(cfg, job->target);
    if (!target)
        return s_reason(&job->reasons, "unknown target '%s': not in the configuration's targets",
                        job->target);
    if (!target->test || target->test_count == 0)
        return s_reason(&job->reasons, "target '%s' has no test command (targets[].test)",
                        target->name);
    if (!s_valid_commit(commit) || !s_valid_commit(base_commit))
        return s_reason(&job->reasons,
                        "invalid commit '%s' or base commit '%s': expected hex "
                        "object names",
                        commit ? commit : "", base_commit ? base_commit : "");
    char err[512];
    if (kz_git_check_repo(target->path, err, sizeof err) != 0)
        return s_reason(&job->reasons, "target '%s': %s", target->name, err);
    if (kz_git_rev(target->path, commit, job->now.commit, err, sizeof err) != 0)
        return s_reason(&job->reasons, "commit %s: %s", commit, err);
    if (kz_git_rev(target->path, base_commit, job->base.commit, err, sizeof err) != 0)
        return s_reason(&job->reasons, "base commit %s: %s", base_commit, err);
    /* only a plan's own commit, on its base on the target's branch: a
       request for any other commit of the repository is not a plan */
    if (kz_plan_check_commit(target, job->plan_id, job->now.commit, job->base.commit, err,
                             sizeof err) != 0)
        return s_reason(&job->reasons, "%s", err);

    kz_proc_opts_t po;
    s_proc_opts(agent, &po);
    if (kz_testsuite_base(cfg, target, &po, 0, &job->base) != 0)
        return -1;
    if (job->base.error[0])
        return s_reason(&job->reasons, "base commit %s: %s", s_short(job->base.commit),
                        job->base.error);
    job->base_ran = true;
    if (!job->base.usable) {
        /* nothing to compare with: no plan on this base can be validated,
           and the plan's fixer is not to blame */
        job->cause = S_CAUSE_SUITE;
        return s_reason(&job->reasons, "tests cannot run at base: %s", job->base.why);
    }
    char name[160];
    snprintf(name, sizeof name, "tests-%s", job->plan_id);
    if (kz_testsuite_test_commit(cfg, target, name, &po, &job->now) != 0)
        return -1;
    job->ran = true;
    if (job->now.error[0])
        return s_reason(&job->reasons, "%s", job->now.error);
    if (!job->now.started)
        return s_reason(&job->reasons, "unable to run the test command of '%s' on %s: %s",
                        target->name, s_short(job->now.commit), job->now.start_error);
    if (s_compare(target, &job->base, &job->now, &job->reasons, &job->newly, &job->nnewly) != 0)
        return -1;
    job->verdict = job->reasons.count || job->reasons.dropped ? "reject" : "pass";
    return 0;
}

/* A validate.request: one validate.result (or an error reply). 0 / -1 */
static int s_on_request(kz_agent_t *agent, kz_delivery_t *delivery)
{
    /* the runtime answers a failed request with an error reply */
    if (strcmp(kz_msg_type(delivery->msg), "validate.request") != 0)
        return kz_fail("'%s' wants a validate.request, got '%s'", S_SERVICE,
                       kz_msg_type(delivery->msg));
    const kz_val_t *body = kz_msg_body_const(delivery->msg);
    s_job_t job;
    memset(&job, 0, sizeof job);
    kz_testsuite_run_init(&job.base);
    kz_testsuite_run_init(&job.now);
    job.plan_id = kz_map_str(body, "plan_id");
    job.commit = kz_map_str(body, "commit");
    if (!kz_id_valid(job.plan_id)) {
        /* no validate.result: its plan_id would repeat what we refuse */
        kz_error("validate.request from '%s' with an invalid plan id", kz_msg_src(delivery->msg));
        return s_reply_error(agent, delivery, "bad_request",
                             "invalid plan id: expected 1 to 128 of A-Z a-z 0-9 _ -");
    }
    job.target = kz_msg_target(delivery->msg);
    if (!job.target || !*job.target)
        job.target = kz_map_str(body, "target"); /* `kaizen call` sets no envelope target */
    if (job.target && !*job.target)
        job.target = NULL;
    if (job.target && !kz_config_target(kz_agent_config(agent), job.target)) {
        /* never echo an unknown name into the reply envelope unchecked */
        job.verdict = "error";
        char shown[64];
        snprintf(shown, sizeof shown, "%s", job.target);
        job.target = NULL;
        if (s_reason(&job.reasons, "unknown target '%s': not in the configuration's targets",
                     shown) != 0)
            return kz_fail("out of memory");
    } else {
        kz_info("plan %s: validating %.12s against %.12s of '%s'", job.plan_id,
                kz_map_str(body, "commit"), kz_map_str(body, "base_commit"),
                job.target ? job.target : "?");
        if (s_validate(agent, body, &job) != 0) {
            kz_testsuite_run_clear(&job.base);
            kz_testsuite_run_clear(&job.now);
            free(job.newly);
            s_reasons_free(&job.reasons);
            return kz_fail("out of memory validating plan '%s'", job.plan_id);
        }
    }
    if (strcmp(job.verdict, "error") == 0 && job.reasons.count)
        kz_error("plan %s: %s", job.plan_id, job.reasons.items[0]);
    int rc = s_reply(agent, delivery, &job);
    kz_testsuite_run_clear(&job.base);
    kz_testsuite_run_clear(&job.now);
    free(job.newly);
    s_reasons_free(&job.reasons);
    return rc;
}

/* tests.base for RUN (the base of TARGET's scanned commit) of scan SCAN_ID. 0 / -1 */
static int s_publish_base(kz_agent_t *agent, const char *target, const char *scan_id,
                          const s_run_t *run)
{
    kz_msg_t *msg = kz_msg_new("tests.base");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(msg);
    const char *reason = run->error[0] ? run->error : run->usable ? NULL : run->why;
    bool suite = !run->error[0] && !run->usable;
    if (kz_map_put_str(msg, b, "commit", run->commit) != 0 ||
        kz_map_put_bool(msg, b, "usable", !run->error[0] && run->usable) != 0 ||
        (reason && kz_map_put_str(msg, b, "reason", reason) != 0) ||
        (suite && kz_map_put_str(msg, b, "cause", S_CAUSE_SUITE) != 0) ||
        kz_map_put_int(msg, b, "passed", run->passed) != 0 ||
        kz_map_put_int(msg, b, "failed", run->failed) != 0 ||
        kz_map_put_int(msg, b, "errors", run->errors) != 0 ||
        kz_map_put_int(msg, b, "skipped", run->skipped) != 0 ||
        kz_map_put_str(msg, b, "source", run->source) != 0 ||
        kz_map_put_int(msg, b, "duration_ms", run->duration_ms > 0 ? run->duration_ms : 0) != 0 ||
        kz_map_put_bool(msg, b, "cached", run->cached) != 0 ||
        (scan_id && kz_map_put_str(msg, b, "scan_id", scan_id) != 0) ||
        kz_msg_set_target(msg, target) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    if (run->error[0] || !run->usable)
        kz_warn("tests of '%s' cannot run at %.12s: %s", target, run->commit, reason);
    else
        kz_info("tests of '%s' can run at %.12s: %ld passed, %ld failed (%s%s)", target,
                run->commit, run->passed, run->failed + run->errors, run->source,
                run->cached ? ", cached" : "");
    if (kz_agent_publish(agent, &msg) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("unable to publish tests.base for '%s'", target);
    }
    return 0;
}

/* A scan.completed (queue group): the base of the scanned commit, checked
   up front and published as tests.base. 0 (done, or nothing to do: ack)
   / -1 (out of memory, or the event could not go out: nack) */
static int s_on_scan(kz_agent_t *agent, const kz_delivery_t *delivery)
{
    const kz_config_t *cfg = kz_agent_config(agent);
    const kz_val_t *body = kz_msg_body_const(delivery->msg);
    const char *name = kz_msg_target(delivery->msg);
    const char *status = kz_map_str(body, "status");
    const char *commit = kz_map_str(body, "commit");
    const char *scan_id = kz_map_str(body, "scan_id");
    const kz_target_config_t *target = name && *name ? kz_config_target(cfg, name) : NULL;
    if (!target || !target->test || target->test_count == 0) {
        kz_debug("scan.completed of %s%.64s%s: not a target with a test command here",
                 name ? "'" : "", name ? name : "no target", name ? "'" : "");
        return 0;
    }
    if (!status || (strcmp(status, "ok") != 0 && strcmp(status, "partial") != 0)) {
        kz_info("scan of '%s' %s: no tests.base", target->name, status ? status : "without status");
        return 0;
    }
    if (!s_valid_commit(commit)) {
        kz_warn("scan.completed of '%s' from '%s' names no valid commit: no tests.base",
                target->name, kz_msg_src(delivery->msg));
        return 0;
    }
    if (!kz_id_valid(scan_id))
        scan_id = NULL;
    s_run_t run;
    kz_testsuite_run_init(&run);
    char err[512];
    if (kz_git_check_repo(target->path, err, sizeof err) != 0 ||
        kz_git_rev(target->path, commit, run.commit, err, sizeof err) != 0) {
        snprintf(run.error, sizeof run.error, "unable to find commit %.64s of '%.64s': %.300s",
                 commit, target->name, err);
        snprintf(run.commit, sizeof run.commit, "%s", commit);
    } else {
        kz_proc_opts_t po;
        s_proc_opts(agent, &po);
        if (kz_testsuite_base(cfg, target, &po, 0, &run) != 0) {
            kz_testsuite_run_clear(&run);
            return kz_fail("out of memory running the base of '%s'", target->name);
        }
    }
    int rc = s_publish_base(agent, target->name, scan_id, &run);
    kz_testsuite_run_clear(&run);
    return rc;
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *delivery, void *arg)
{
    (void)arg;
    if (delivery->kind == KZ_DELIVERY_REQUEST && strcmp(delivery->topic, S_SERVICE) == 0)
        return s_on_request(agent, delivery);
    if (delivery->kind == KZ_DELIVERY_GROUP && strcmp(kz_msg_type(delivery->msg), S_SCANS) == 0)
        return s_on_scan(agent, delivery);
    return 0;
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    (void)arg;
    xmlInitParser();
    kz_git_set_tick(kz_agent_proc_tick, agent);
    if (kz_bus_offer(kz_agent_bus(agent), S_SERVICE) != 0)
        return -1;
    return kz_bus_join(kz_agent_bus(agent), S_GROUP, S_SCANS);
}

int main(int argc, char **argv)
{
    const kz_agent_def_t def = {
        .name = "test-runner",
        .layer = "validation",
        .summary = "serves validate.tests: runs a target's tests on a plan's commit and its base "
                   "and rejects the plan when a test that passed fails; says up front "
                   "(tests.base) whether a scanned commit's tests can run",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = NULL,
    };
    int rc = kz_agent_main(argc, argv, &def);
    xmlCleanupParser();
    return rc;
}
