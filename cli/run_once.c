/*  run_once.c - `kaizen run-once`: one full improvement cycle, watched
    from the bus, and a summary of everything it did

    Subscribes to what the loop publishes first, then brings kaizen up as
    `kaizen up` does (kz_cli_up) unless it answers already - so even the
    scan code-health makes right at its start is seen - checks that the
    broker delivers to it with a probe (an agent.run naming nobody but
    itself) and publishes agent.run {agent: code-health} (envelope target
    = --target). Then it follows each target through the stages:

      scan        the first scan of the target that starts while run-once
                  watches: the one it asked for, or one code-health began
                  meanwhile (on its interval, or at its start when
                  run-once started kaizen: then even a scan whose
                  scan.started came before the broker let us in); then
                  that scan's scan.completed
      analysis    analysis.result of kind quality for the scan
      planning    plan.ranked for the scan (the prioritizer always sends
                  it, also with nothing ready): the ready plans and the
                  dropped ones with their reasons
      execution+  each ready plan until it is final: plan.accepted,
      validation  plan.rejected, plan.failed, or plan.state
                  awaiting_approval (final for run-once: a person decides)
      learning    the learn.update of every accepted, rejected or failed
                  plan (one per rule of the plan), for a bounded time

    Times come from the messages' own timestamps. Everything arrives as
    events, in any order (plans can go final before their plan.ranked
    arrives), so every plan event is kept by plan_id
    and tied to a target when the scan's plan.ranked names it. Nothing
    read from the bus is trusted: ids are checked, targets must be in the
    config, the rest is only printed (control characters masked).

    The orchestrator is watched meanwhile (s_orch_check): its process (when
    it runs here), its heartbeats and, after S_ORCH_QUIET_MS without one,
    kaizen.status. When it is gone run-once says so, with the plans left
    unfinished, instead of waiting out --timeout.

    The data is gathered into one JSON document (jansson), printed with
    --json or rendered as text. Exit codes: 0 the cycle completed on every
    target (whatever became of the plans), 1 a runtime error or a target
    whose scan failed, 2 usage, 3 timed out, 4 the orchestrator is gone,
    130 interrupted.
*/
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kz_fixable.h"
#include "kz_recipe.h"
#include "kz_bus.h"
#include "kz_msg.h"
#include "kz_state.h"

#define S_EXIT_TIMEOUT     3
#define S_EXIT_GONE        4 /* the orchestrator died or stopped under us */
#define S_EXIT_INTERRUPTED 130
#define S_DEFAULT_TIMEOUT  (30 * 60 * 1000)
#define S_LEARN_WAIT_MS    60000
#define S_BASE_NUDGE_MS    30000 /* no tests.base this long after a scan: ask for it again */
#define S_PROBE_WAIT_MS    15000
#define S_PROBE_EVERY_MS   500
#define S_RECV_MS          250
#define S_STATUS_MS        1500
#define S_LOCK_WAIT_MS     60000
#define S_ID_MAX           128
#define S_MAX_PLANS        100000
#define S_TRIGGER_AGENT    "code-health"
#define S_PROGRESS_MS      30000 /* at most this long without a progress line */
#define S_ORCH_QUIET_MS    20000 /* no word from the orchestrator this long: ask kaizen.status */
#define S_ORCH_CHECK_MS    1000  /* look at the orchestrator's process this often */

static const char s_usage[] =
    "usage: kaizen [-c FILE] run-once [--target NAME] [--json] [--timeout DURATION]\n"
    "                              [--progress DURATION]\n"
    "\n"
    "Run one full improvement cycle and report what it did. Brings kaizen up\n"
    "as 'kaizen up' does when it is not running (and leaves it running), else\n"
    "uses the running system; creates missing sample targets (init_from).\n"
    "Then asks kaizen-code-health for a scan (agent.run) and follows every\n"
    "target through the loop: scan, analysis (quality snapshot), planning\n"
    "(ranked and dropped plans), the execution and validation of every ready\n"
    "plan until it is accepted, rejected, failed or awaiting approval, and the\n"
    "learned pattern updates. Progress goes to stderr as stages complete.\n"
    "\n"
    "The summary: findings per tool, snapshot rating, score and trend, plans\n"
    "accepted (branch, commit, files), rejected and failed (with reasons),\n"
    "awaiting approval (approve with 'kaizen approve ID'), dropped (with\n"
    "reasons), branches created, learned pattern updates, time per stage.\n"
    "\n"
    "  --target NAME        only this target (default: every configured target)\n"
    "  --json               print one JSON document instead (no progress lines)\n"
    "  --timeout DURATION   give up after this long from the trigger (default\n"
    "                       30m), naming what was still pending\n"
    "  --progress DURATION  while something is pending, a line at least this\n"
    "                       often saying what (default 30s)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 the cycle completed on every target (also when plans were\n"
    "rejected or failed), 1 kaizen could not be started or reached, a target's\n"
    "scan failed, or a bad config, 2 usage, 3 timed out (what was pending is\n"
    "named), 4 the orchestrator died or stopped meanwhile (no heartbeat, no\n"
    "kaizen.status reply, or its process is gone: run 'kaizen up'), 130\n"
    "interrupted (Ctrl-C)\n";

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ the state */

typedef struct {
    const kz_target_config_t *cfg;
    char scan_id[S_ID_MAX + 1]; /* "" until its scan.started */
    char commit[80];            /* from scan.started, for a scan.completed without it */
    json_t *scan;               /* the scan.completed body */
    json_t *by_tool;            /* tool -> findings counted from finding.batch */
    json_t *set_aside;          /* excluded reason -> {file: true}, from finding.batch */
    json_t *quality;            /* the analysis.result summary */
    json_t *ready;              /* plan ids, in rank order (plan.ranked) */
    json_t *dropped;            /* [{plan_id, reason}] */
    int64_t proposed;           /* plans in plan.batch, -1 before it */
    json_t *unplanned;          /* plan.batch's {reason: findings not planned} */
    /* when each stage ended, from the messages' own timestamps (ms since
       the epoch), -1 = not yet */
    int64_t t_started, t_scanned, t_analysed, t_ranked, t_final, t_learned;
    bool failed;        /* its scan failed: nothing more comes */
    bool reused;        /* its commit was scanned already: the stored scan answered */
    bool learn_gave_up; /* some learn.update never came */
    bool base_asked;    /* the scan was asked for again for a missing tests.base */
    bool complete;
    json_t *tests; /* the test-runner's tests.base for the scanned commit, or NULL */
} s_target_t;

typedef struct {
    const kz_config_t *cfg;
    bool json;
    s_target_t *targets;
    size_t ntargets;
    json_t *plans;       /* plan_id -> record (every plan event seen) */
    json_t *learned;     /* learn.update bodies of our plans (filled by s_doc) */
    json_t *warnings;    /* strings */
    char probe[320];     /* our bus id: the probe's agent.run names it */
    bool started_kaizen; /* we brought it up: every scan since is fresh */
    int64_t t0;          /* monotonic ms when the watching began (kaizen up) */
    int progress_ms;     /* at most this long without a line while waiting */
    int64_t last_line;   /* monotonic ms of the last progress line */
    json_t *workers;     /* agent id -> the service its last request.started named */
    /* the orchestrator, watched: its bus id and pid (from kaizen.status),
       whether that pid is a process of this host, when it was last heard
       of (monotonic ms), and why it is gone ("" while it is not) */
    char orch_id[320];
    long orch_pid;
    bool orch_local;
    int64_t orch_seen;
    int64_t orch_checked;
    char orch_gone[512];
} s_ro_t;

/* A progress line on stderr: "[  12.3s] WHAT" */
static void s_progress(s_ro_t *ro, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_progress(s_ro_t *ro, const char *fmt, ...)
{
    ro->last_line = s_mono_ms();
    if (ro->json)
        return;
    char when[32], line[2048];
    kz_cli_human_ms(s_mono_ms() - ro->t0, when, sizeof when);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "[%7s] %s\n", when, line);
}

static void s_warn(s_ro_t *ro, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_warn(s_ro_t *ro, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    json_array_append_new(ro->warnings, json_string(line));
    if (!ro->json)
        fprintf(stderr, "warning: %s\n", line);
}

static const char *s_jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The body of MSG as JSON (new reference), or NULL */
static json_t *s_body(const kz_msg_t *msg)
{
    char *text = kz_val_to_json(kz_msg_body_const(msg));
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static s_target_t *s_target_by_name(s_ro_t *ro, const char *name)
{
    for (size_t i = 0; name && i < ro->ntargets; i++)
        if (strcmp(ro->targets[i].cfg->name, name) == 0)
            return &ro->targets[i];
    return NULL;
}

static s_target_t *s_target_by_scan(s_ro_t *ro, const char *scan_id)
{
    for (size_t i = 0; scan_id && i < ro->ntargets; i++)
        if (ro->targets[i].scan_id[0] && strcmp(ro->targets[i].scan_id, scan_id) == 0)
            return &ro->targets[i];
    return NULL;
}

/* The record of PLAN_ID, created on first sight; NULL for a bad id */
static json_t *s_plan(s_ro_t *ro, const char *plan_id)
{
    if (!kz_id_valid(plan_id))
        return NULL;
    json_t *p = json_object_get(ro->plans, plan_id);
    if (p)
        return p;
    if (json_object_size(ro->plans) >= S_MAX_PLANS)
        return NULL;
    p = json_pack("{s:s, s:n, s:s, s:b, s:o, s:o}", "plan_id", plan_id, "target", "state", "seen",
                  "final", 0, "validations", json_array(), "learned", json_array());
    if (!p || json_object_set_new(ro->plans, plan_id, p) != 0)
        return NULL;
    return p;
}

/* The target a plan belongs to: the one whose plan.ranked named it */
static s_target_t *s_plan_target(s_ro_t *ro, const char *plan_id)
{
    for (size_t i = 0; i < ro->ntargets; i++) {
        size_t k;
        json_t *v;
        json_array_foreach(ro->targets[i].ready, k, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), plan_id) == 0)
                return &ro->targets[i];
        }
    }
    return NULL;
}

/* "black on pkg/a.py, pkg/b.py" */
static void s_plan_what(const json_t *p, char *buf, size_t len)
{
    const char *fixer = s_jstr(p, "fixer");
    size_t at = (size_t)snprintf(buf, len, "%s", fixer ? fixer : "?");
    const json_t *files = json_object_get(p, "files");
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f)
    {
        if (at >= len)
            break;
        if (at > 60) {
            snprintf(buf + at, len - at, " +%zu more", json_array_size(files) - i);
            break;
        }
        int n = snprintf(buf + at, len - at, "%s%s", i ? ", " : " on ",
                         json_string_value(f) ? json_string_value(f) : "?");
        at = n > 0 ? at + (size_t)n : at;
    }
    if (at >= len)
        buf[len - 1] = '\0';
}

/* How many learn.update a final plan should cause: one per rule */
static size_t s_learn_expected(const json_t *p)
{
    const json_t *rules = json_object_get(p, "rules");
    size_t n = 0, i, j;
    json_t *r, *q;
    json_array_foreach(rules, i, r)
    {
        bool dup = false;
        json_array_foreach(rules, j, q)
        {
            if (j >= i)
                break;
            if (json_equal(r, q))
                dup = true;
        }
        n += dup ? 0 : 1;
    }
    return n ? n : 1;
}

/* ------------------------------------------------------------ the events */

/* The first scan of a target that starts while we watch is the cycle's:
   the one our agent.run asked for, or one code-health began on its own
   meanwhile (the agent.run then waits behind it, and its scan is not
   followed) */
static void s_on_scan_started(s_ro_t *ro, const kz_msg_t *msg, const json_t *b, int64_t now)
{
    s_target_t *t = s_target_by_name(ro, kz_msg_target(msg));
    const char *scan_id = s_jstr(b, "scan_id");
    if (!t || t->scan_id[0] || !kz_id_valid(scan_id))
        return;
    snprintf(t->scan_id, sizeof t->scan_id, "%s", scan_id);
    const char *commit = s_jstr(b, "commit");
    snprintf(t->commit, sizeof t->commit, "%s", commit && strlen(commit) < 80 ? commit : "");
    t->t_started = now;
    s_progress(ro, "scan      %s: started (scan %s)", t->cfg->name, scan_id);
}

static void s_on_findings(s_ro_t *ro, const json_t *b)
{
    s_target_t *t = s_target_by_scan(ro, s_jstr(b, "scan_id"));
    if (!t || t->scan)
        return;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(b, "findings"), i, f)
    {
        const char *tool = s_jstr(f, "tool");
        if (!tool)
            continue;
        json_int_t n = json_integer_value(json_object_get(t->by_tool, tool));
        json_object_set_new(t->by_tool, tool, json_integer(n + 1));
        /* a file that is not the project's own code: counted, never planned */
        const char *reason = s_jstr(f, "excluded");
        const char *file = s_jstr(f, "file");
        if (reason && file) {
            json_t *files = json_object_get(t->set_aside, reason);
            if (!files) {
                files = json_object();
                json_object_set_new(t->set_aside, reason, files);
            }
            json_object_set_new(files, file, json_true());
        }
    }
}

/* A scan.completed of the cycle's scan; or, when we started kaizen and
   missed a scan.started (the scan began while kaizen was coming up: its
   first cycle), that scan adopted: it is no older than this command */
/* Why a tool was skipped, short: code-health's "no evidence the project
   chose it (...)" is the project's choice, said so */
static const char *s_skip_why(const json_t *tool)
{
    const char *error = s_jstr(tool, "error");
    if (!error || !*error)
        return "no reason given";
    if (strncmp(error, "no evidence the project chose it", 32) == 0)
        return "not chosen by the project";
    if (strncmp(error, "chosen by the project but not run", 33) == 0)
        return "chosen by the project, but kaizen does not run it: see the note";
    return error;
}

/* Every tool's note of scan.completed's TOOLS (PROTOCOL.md 4.9: its
   version differs from the project's pin, or the project chose it and
   kaizen cannot run it) into BUF: "codespell: version differs ...; ruff:
   chosen by the project but not run: ..." */
static void s_tool_notes(const json_t *tools, char *buf, size_t len)
{
    size_t at = 0, i;
    json_t *tool;
    buf[0] = '\0';
    json_array_foreach(tools, i, tool)
    {
        const char *name = s_jstr(tool, "name"), *note = s_jstr(tool, "note");
        if (!name || !note)
            continue;
        int n = snprintf(buf + at, len - at, "%s%s: %s", at ? "; " : "", name, note);
        if (n > 0 && (size_t)n < len - at)
            at += (size_t)n;
    }
}

/* The tools of scan.completed's TOOLS in three lists: RAN "codespell 9,
   flake8 0" (ran clean), SKIPPED "black (not chosen by the project)"
   (not run, by design) and FAILED "mypy (error: WHY)" (their findings are
   missing). Without per-tool statuses RAN gets BY_TOOL's counts. */
static void s_tool_lists(const json_t *tools, const json_t *by_tool, char *ran, size_t ranlen,
                         char *skipped, size_t sklen, char *failed, size_t flen)
{
    size_t at = 0, sat = 0, fat = 0;
    ran[0] = skipped[0] = failed[0] = '\0';
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool)
    {
        const char *name = s_jstr(tool, "name"), *status = s_jstr(tool, "status");
        int n;
        if (!name)
            continue;
        kz_tool_outcome_t kind = kz_tool_outcome(status);
        if (kind == KZ_TOOL_RAN_CLEAN) {
            n = snprintf(ran + at, ranlen - at, "%s%s %lld", at ? ", " : "", name,
                         (long long)json_integer_value(json_object_get(tool, "findings")));
            if (n > 0 && (size_t)n < ranlen - at)
                at += (size_t)n;
        } else if (kind == KZ_TOOL_SKIPPED) {
            n = snprintf(skipped + sat, sklen - sat, "%s%s (%s)", sat ? ", " : "", name,
                         s_skip_why(tool));
            if (n > 0 && (size_t)n < sklen - sat)
                sat += (size_t)n;
        } else {
            const char *error = s_jstr(tool, "error");
            char why[200];
            snprintf(why, sizeof why, "%s", error && *error ? error : "no reason given");
            n = snprintf(failed + fat, flen - fat, "%s%s (%s: %s)", fat ? ", " : "", name,
                         status ? status : "?", why);
            if (n > 0 && (size_t)n < flen - fat)
                fat += (size_t)n;
        }
    }
    if (json_array_size(tools) == 0) {
        /* no per-tool statuses: the counts of the batches */
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)by_tool, key, v)
        {
            int n = snprintf(ran + at, ranlen - at, "%s%s %lld", at ? ", " : "", key,
                             (long long)json_integer_value(v));
            if (n > 0 && (size_t)n < ranlen - at)
                at += (size_t)n;
        }
    }
}

/* True when the scan's findings are not the whole picture: status partial
   or failed, or a tool that did not run clean (error, timeout, missing);
   WHY gets "mypy error, ..." */
static bool s_scan_partial(const json_t *scan, char *why, size_t len)
{
    size_t at = 0, i;
    why[0] = '\0';
    json_t *tool;
    json_array_foreach(json_object_get(scan, "tools"), i, tool)
    {
        const char *status = s_jstr(tool, "status");
        if (kz_tool_outcome(status) != KZ_TOOL_FAILED)
            continue;
        int n = snprintf(why + at, len - at, "%s%s %s", at ? ", " : "",
                         s_jstr(tool, "name") ? s_jstr(tool, "name") : "?", status ? status : "?");
        if (n > 0 && (size_t)n < len - at)
            at += (size_t)n;
    }
    const char *status = s_jstr(scan, "status");
    if (!at && status && strcmp(status, "ok") != 0)
        snprintf(why, len, "scan %s", status);
    return at > 0 || (status && strcmp(status, "ok") != 0);
}

static void s_on_scan_completed(s_ro_t *ro, const kz_msg_t *msg, const json_t *b, int64_t now)
{
    s_target_t *t = s_target_by_scan(ro, s_jstr(b, "scan_id"));
    bool reused = json_is_true(json_object_get(b, "reused"));
    if (!t && reused && kz_id_valid(s_jstr(b, "scan_id"))) {
        /* the commit was scanned already (with the same recipes): the
           stored scan answers our request instead of a new one */
        t = s_target_by_name(ro, kz_msg_target(msg));
        if (t && !t->scan_id[0]) {
            snprintf(t->scan_id, sizeof t->scan_id, "%s", s_jstr(b, "scan_id"));
            t->t_started = now;
        } else
            t = NULL;
    }
    if (!t && ro->started_kaizen && kz_id_valid(s_jstr(b, "scan_id"))) {
        t = s_target_by_name(ro, kz_msg_target(msg));
        if (t && !t->scan_id[0]) {
            snprintf(t->scan_id, sizeof t->scan_id, "%s", s_jstr(b, "scan_id"));
            s_progress(ro, "scan      %s: following the scan kaizen began at its start (scan %s)",
                       t->cfg->name, t->scan_id);
        } else {
            t = NULL;
        }
    }
    if (!t || t->scan)
        return;
    t->scan = json_deep_copy(b);
    if (!t->scan)
        return;
    t->reused = reused;
    if (!json_object_get(t->scan, "commit") && t->commit[0])
        json_object_set_new(t->scan, "commit", json_string(t->commit));
    t->t_scanned = now;
    /* the tools' own counts win over what the batches said */
    size_t i;
    json_t *tool;
    json_array_foreach(json_object_get(b, "tools"), i, tool)
    {
        const char *name = s_jstr(tool, "name");
        if (name && json_is_integer(json_object_get(tool, "findings")))
            json_object_set(t->by_tool, name, json_object_get(tool, "findings"));
    }
    const char *status = s_jstr(b, "status");
    char per[1024], skipped[1024], not_run[1536];
    s_tool_lists(json_object_get(b, "tools"), t->by_tool, per, sizeof per, skipped, sizeof skipped,
                 not_run, sizeof not_run);
    if (status && strcmp(status, "failed") == 0) {
        t->failed = true;
        const char *error = s_jstr(b, "error");
        s_progress(ro, "scan      %s: FAILED: %s", t->cfg->name,
                   error ? error : "(no reason given)");
        return;
    }
    char took[32] = "?";
    const json_t *dur = json_object_get(b, "duration_ms");
    if (json_is_integer(dur))
        kz_cli_human_ms(json_integer_value(dur), took, sizeof took);
    else if (t->t_started >= 0)
        kz_cli_human_ms(now - t->t_started, took, sizeof took);
    const char *commit = s_jstr(t->scan, "commit");
    if (reused)
        s_progress(ro,
                   "scan      %s: commit %.12s was scanned already with the same tools and "
                   "settings (scan %s): %lld findings, not scanned again",
                   t->cfg->name, commit ? commit : "?", t->scan_id,
                   (long long)json_integer_value(json_object_get(b, "findings")));
    else
        s_progress(ro, "scan      %s: %lld findings%s%s%s, status %s, in %s", t->cfg->name,
                   (long long)json_integer_value(json_object_get(b, "findings")),
                   per[0] ? " (" : "", per, per[0] ? ")" : "", status ? status : "?", took);
    if (skipped[0])
        s_progress(ro, "scan      %s: skipped: %s", t->cfg->name, skipped);
    if (not_run[0])
        s_progress(ro, "scan      %s: FAILED, their findings are missing: %s", t->cfg->name,
                   not_run);
    char notes[2048];
    s_tool_notes(json_object_get(b, "tools"), notes, sizeof notes);
    if (notes[0])
        s_progress(ro, "scan      %s: note: %s", t->cfg->name, notes);
}

/* "C", 71.5 and the trend, from the code-quality summary; PARTIAL (or
   NULL) says why the rating rests on part of the findings only, and is
   shown right beside it: a partial scan is never a plain rating */
static void s_quality_line(const json_t *q, const char *partial, char *buf, size_t len)
{
    const json_t *rating = json_object_get(q, "rating");
    if (!rating)
        rating = json_object_get(q, "overall_rating");
    const json_t *score = json_object_get(q, "overall_score");
    if (!score)
        score = json_object_get(q, "score");
    const json_t *trend = json_object_get(q, "trend");
    size_t at = 0;
    int n;
    if (json_is_string(rating))
        n = snprintf(buf, len, "rating %s%s%s%s", json_string_value(rating),
                     partial ? " (partial: " : "", partial ? partial : "", partial ? ")" : "");
    else
        n = snprintf(buf, len, "rating -");
    at = n > 0 && (size_t)n < len ? (size_t)n : at;
    if (json_is_number(score))
        n = snprintf(buf + at, len - at, ", score %.1f", json_number_value(score));
    else
        n = snprintf(buf + at, len - at, ", score -");
    at = n > 0 && (size_t)n < len - at ? at + (size_t)n : at;
    if (json_is_string(trend)) {
        snprintf(buf + at, len - at, ", trend %s", json_string_value(trend));
    } else if (json_is_number(trend)) {
        snprintf(buf + at, len - at, ", trend %+.1f", json_number_value(trend));
    } else if (json_is_object(trend)) {
        const char *dir = s_jstr(trend, "direction");
        const json_t *delta = json_object_get(trend, "delta");
        if (!delta)
            delta = json_object_get(trend, "score_delta");
        if (dir && json_is_number(delta))
            snprintf(buf + at, len - at, ", trend %s (%+.1f)", dir, json_number_value(delta));
        else if (dir)
            snprintf(buf + at, len - at, ", trend %s", dir);
        else {
            char *t = json_dumps(trend, JSON_COMPACT);
            snprintf(buf + at, len - at, ", trend %s", t ? t : "?");
            free(t);
        }
    } else {
        snprintf(buf + at, len - at, ", trend - (first snapshot)");
    }
}

/* Why target T's rating is partial (into WHY), or NULL: its scan was
   partial or a tool did not run clean, or code-quality says so */
static const char *s_partial(const s_target_t *t, char *why, size_t len)
{
    if (t->scan && s_scan_partial(t->scan, why, len))
        return why;
    if (json_is_true(json_object_get(t->quality, "partial"))) {
        snprintf(why, len, "not every tool ran clean");
        return why;
    }
    return NULL;
}

static void s_on_analysis(s_ro_t *ro, const json_t *b, int64_t now)
{
    s_target_t *t = s_target_by_scan(ro, s_jstr(b, "scan_id"));
    const char *kind = s_jstr(b, "kind");
    if (!t || t->quality || !kind || strcmp(kind, "quality") != 0)
        return;
    const json_t *summary = json_object_get(b, "summary");
    t->quality = json_is_object(summary) ? json_incref((json_t *)summary) : json_object();
    t->t_analysed = now;
    char line[768], why[256];
    s_quality_line(t->quality, s_partial(t, why, sizeof why), line, sizeof line);
    s_progress(ro, "analysis  %s: %s", t->cfg->name, line);
}

/* plan.proposed / plan.ready: the plan's fields */
static void s_on_plan_info(s_ro_t *ro, const kz_msg_t *msg, const json_t *b, bool ready)
{
    json_t *p = s_plan(ro, s_jstr(b, "plan_id"));
    if (!p)
        return;
    if (ready || !json_object_get(p, "fixer")) {
        const char *keys[] = {"fixer",    "files",       "findings", "impact", "effort",
                              "risk",     "rank",        "tool",     "rules",  "scan_id",
                              "language", "base_commit", "rationale"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            json_t *v = json_object_get(b, keys[k]);
            if (v)
                json_object_set(p, keys[k], v);
        }
    }
    const char *target = kz_msg_target(msg);
    if (target && s_target_by_name(ro, target) && json_is_null(json_object_get(p, "target")))
        json_object_set_new(p, "target", json_string(target));
    const char *state = s_jstr(p, "state");
    if (!json_is_true(json_object_get(p, "final")) && state &&
        (strcmp(state, "seen") == 0 || strcmp(state, "proposed") == 0))
        json_object_set_new(p, "state", json_string(ready ? "ready" : "proposed"));
}

static void s_on_batch(s_ro_t *ro, const json_t *b)
{
    s_target_t *t = s_target_by_scan(ro, s_jstr(b, "scan_id"));
    if (t && t->proposed < 0) {
        t->proposed = (int64_t)json_array_size(json_object_get(b, "plans"));
        const char *reason;
        json_t *n;
        json_object_foreach(json_object_get(b, "unplanned"), reason, n)
        {
            if (json_is_integer(n) && json_integer_value(n) > 0)
                json_object_set_new(t->unplanned, reason, json_integer(json_integer_value(n)));
        }
    }
}

static void s_report_final(s_ro_t *ro, const json_t *p);

static void s_on_ranked(s_ro_t *ro, const json_t *b, int64_t now)
{
    s_target_t *t = s_target_by_scan(ro, s_jstr(b, "scan_id"));
    if (!t || t->t_ranked >= 0)
        return;
    t->t_ranked = now;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(b, "ready"), i, v)
    {
        json_t *p = s_plan(ro, json_string_value(v));
        if (!p)
            continue;
        json_array_append_new(t->ready, json_string(json_string_value(v)));
        json_object_set_new(p, "target", json_string(t->cfg->name));
    }
    json_array_foreach(json_object_get(b, "dropped"), i, v)
    {
        const char *id = s_jstr(v, "plan_id");
        if (!kz_id_valid(id))
            continue;
        const char *reason = s_jstr(v, "reason");
        json_t *d =
            json_pack("{s:s, s:s, s:s*}", "plan_id", id, "target", t->cfg->name, "reason", reason);
        json_t *p = json_object_get(ro->plans, id);
        if (d && p) {
            if (json_object_get(p, "fixer"))
                json_object_set(d, "fixer", json_object_get(p, "fixer"));
            if (json_object_get(p, "files"))
                json_object_set(d, "files", json_object_get(p, "files"));
        }
        if (d)
            json_array_append_new(t->dropped, d);
    }
    s_progress(ro, "planning  %s: %zu plan%s ready, %zu dropped%s", t->cfg->name,
               json_array_size(t->ready), json_array_size(t->ready) == 1 ? "" : "s",
               json_array_size(t->dropped), t->proposed >= 0 ? "" : " (no plan.batch seen)");
    /* plans that went final before this plan.ranked reached us */
    json_array_foreach(t->ready, i, v)
    {
        const json_t *p = json_object_get(ro->plans, json_string_value(v));
        if (p && json_is_true(json_object_get(p, "final")))
            s_report_final(ro, p);
    }
}

/* A final outcome (or awaiting_approval) for plan P */
static void s_finalize(s_ro_t *ro, json_t *p, const char *outcome, int64_t now)
{
    if (json_is_true(json_object_get(p, "final")))
        return;
    json_object_set_new(p, "final", json_true());
    json_object_set_new(p, "outcome", json_string(outcome));
    json_object_set_new(p, "state", json_string(outcome));
    json_object_set_new(p, "_final_ms", json_integer(now));
    if (s_plan_target(ro, s_jstr(p, "plan_id")))
        s_report_final(ro, p);
    /* else not ours, or its plan.ranked is still on the way: reported then */
}

/* A plan's end CAUSE (PROTOCOL.md 4.15) in words */
static const char *s_cause_words(const char *cause)
{
    static const char *const words[][2] = {
        {"change", "a validator rejected the change"},
        {"person", "a person rejected it"},
        {"fixer", "the fixer failed"},
        {"nothing_to_do", "nothing to do"},
        {"suite", "the tests cannot run at the base"},
        {"timeout", "timed out"},
        {"no_reply", "no reply"},
        {"no_executor", "no executor"},
        {"no_validator", "no validator"},
        {"conflict", "integration conflict"},
        {"interrupted", "interrupted"},
        {"invalid", "invalid plan"},
        {"error", "error"},
    };
    for (size_t i = 0; cause && i < sizeof words / sizeof words[0]; i++)
        if (strcmp(cause, words[i][0]) == 0)
            return words[i][1];
    return cause;
}

/* The progress line of a plan that went final */
static void s_report_final(s_ro_t *ro, const json_t *p)
{
    const char *outcome = s_jstr(p, "outcome");
    if (!outcome)
        return;
    char what[256];
    s_plan_what(p, what, sizeof what);
    const char *reason = s_jstr(p, "reason");
    if (strcmp(outcome, "accepted") == 0)
        s_progress(ro, "plan      %s %s: accepted (commit %.12s on %s)", s_jstr(p, "plan_id"), what,
                   s_jstr(p, "commit") ? s_jstr(p, "commit") : "?",
                   s_jstr(p, "branch") ? s_jstr(p, "branch") : "?");
    else if (strcmp(outcome, "awaiting_approval") == 0)
        s_progress(ro, "plan      %s %s: awaiting approval ('kaizen approve %s')",
                   s_jstr(p, "plan_id"), what, s_jstr(p, "plan_id"));
    else {
        const char *cause = s_cause_words(s_jstr(p, "cause"));
        s_progress(ro, "plan      %s %s: %s%s%s%s in state %s: %s", s_jstr(p, "plan_id"), what,
                   outcome, cause ? " (" : "", cause ? cause : "", cause ? ")" : "",
                   s_jstr(p, "failed_in") ? s_jstr(p, "failed_in") : "?",
                   reason ? reason : "(no reason given)");
    }
}

/* The calls a plan makes in STATE (plan.state's REASON names them: "calling
   exec.refactor: ..." or "validate.tests, validate.review"), each queued
   from NOW until a request.started says a worker took it */
static void s_plan_calls(json_t *p, const char *state, const char *reason, int64_t now)
{
    if (!reason)
        return;
    json_t *calls = json_object();
    if (!calls)
        return;
    char names[1024];
    if (strcmp(state, "executing") == 0 && strncmp(reason, "calling ", 8) == 0)
        snprintf(names, sizeof names, "%.*s", (int)strcspn(reason + 8, ":"), reason + 8);
    else if (strcmp(state, "validating") == 0)
        snprintf(names, sizeof names, "%s", reason);
    else
        names[0] = '\0';
    for (char *save = NULL, *name = strtok_r(names, ", ", &save); name;
         name = strtok_r(NULL, ", ", &save)) {
        if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(name))
            continue; /* "no validators configured (...)" */
        json_object_set_new(calls, name, json_pack("{s:s, s:I}", "state", "queued", "since", now));
    }
    json_object_set_new(p, "calls", calls);
}

/* "validate.tests running for 1m20s on test-runner@h#12, validate.review
   done" of plan P at NOW (ms since the epoch) */
static void s_plan_waits(const json_t *p, int64_t now, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    const char *name;
    json_t *c;
    json_object_foreach((json_t *)json_object_get(p, "calls"), name, c)
    {
        const char *state = s_jstr(c, "state");
        char took[32];
        kz_cli_human_ms(now - json_integer_value(json_object_get(c, "since")), took, sizeof took);
        int n;
        if (state && strcmp(state, "queued") == 0)
            n = snprintf(buf + at, len - at,
                         "%s%s waiting in the broker's queue for %s (no worker free yet)",
                         at ? ", " : "", name, took);
        else if (state && strcmp(state, "running") == 0)
            n = snprintf(buf + at, len - at, "%s%s running for %s on %s", at ? ", " : "", name,
                         took, s_jstr(c, "worker") ? s_jstr(c, "worker") : "?");
        else
            n = snprintf(buf + at, len - at, "%s%s done%s%s", at ? ", " : "", name,
                         s_jstr(c, "verdict") ? " (" : "",
                         s_jstr(c, "verdict") ? s_jstr(c, "verdict") : "");
        if (n > 0 && s_jstr(c, "verdict") && state && strcmp(state, "done") == 0 &&
            (size_t)n < len - at)
            n += snprintf(buf + at + n, len - at - (size_t)n, ")");
        if (n < 0 || (size_t)n >= len - at)
            break;
        at += (size_t)n;
    }
}

/* request.started: a worker took one of a plan's calls */
static void s_on_started(s_ro_t *ro, const kz_msg_t *msg, const json_t *b, int64_t now)
{
    const char *service = s_jstr(b, "service"), *src = kz_msg_src(msg);
    json_t *p = json_object_get(ro->plans, s_jstr(b, "plan_id") ? s_jstr(b, "plan_id") : "");
    if (!service || !src || !p)
        return;
    json_object_set_new(ro->workers, src, json_string(service));
    json_t *calls = json_object_get(p, "calls");
    if (!calls) {
        calls = json_object();
        json_object_set_new(p, "calls", calls);
    }
    json_object_set_new(
        calls, service,
        json_pack("{s:s, s:I, s:s}", "state", "running", "since", now, "worker", src));
}

/* A call of plan P answered by the worker SRC (its service from its
   request.started), with VERDICT (may be NULL) */
static void s_call_done(s_ro_t *ro, json_t *p, const char *src, const char *verdict, int64_t now)
{
    const char *service = src ? json_string_value(json_object_get(ro->workers, src)) : NULL;
    json_t *c = service ? json_object_get(json_object_get(p, "calls"), service) : NULL;
    if (!c)
        return;
    json_object_set_new(c, "state", json_string("done"));
    json_object_set_new(c, "since", json_integer(now));
    if (verdict)
        json_object_set_new(c, "verdict", json_string(verdict));
}

static void s_copy_keys(json_t *to, const json_t *from, const char *const *keys)
{
    for (; *keys; keys++) {
        json_t *v = json_object_get(from, *keys);
        if (v)
            json_object_set(to, *keys, v);
    }
}

static void s_on_plan_event(s_ro_t *ro, const char *type, const json_t *b, int64_t now)
{
    json_t *p = s_plan(ro, s_jstr(b, "plan_id"));
    if (!p)
        return;
    if (strcmp(type, "plan.state") == 0) {
        const char *state = s_jstr(b, "state");
        if (!state || json_is_true(json_object_get(p, "final")))
            return;
        json_object_set_new(p, "state", json_string(state));
        json_object_set_new(p, "_state_ms", json_integer(now));
        if (s_jstr(b, "reason"))
            json_object_set(p, "reason", json_object_get(b, "reason"));
        if (strcmp(state, "awaiting_approval") == 0)
            s_finalize(ro, p, "awaiting_approval", now);
        s_plan_calls(p, state, s_jstr(b, "reason"), now);
    } else if (strcmp(type, "plan.approved") == 0) {
        if (!json_is_true(json_object_get(p, "final")))
            json_object_set_new(p, "state", json_string("approved"));
    } else if (strcmp(type, "plan.accepted") == 0) {
        static const char *const keys[] = {"commit", "branch", "integrated", "integrated_commit",
                                           NULL};
        s_copy_keys(p, b, keys);
        s_finalize(ro, p, "accepted", now);
    } else if (strcmp(type, "plan.rejected") == 0 || strcmp(type, "plan.failed") == 0) {
        static const char *const keys[] = {"reason", "reasons", "by", "cause", NULL};
        s_copy_keys(p, b, keys);
        if (s_jstr(b, "state"))
            json_object_set(p, "failed_in", json_object_get(b, "state"));
        s_finalize(ro, p, strcmp(type, "plan.rejected") == 0 ? "rejected" : "failed", now);
    }
}

static void s_on_exec(s_ro_t *ro, const kz_msg_t *msg, const json_t *b, int64_t now)
{
    json_t *p = s_plan(ro, s_jstr(b, "plan_id"));
    if (!p)
        return;
    s_call_done(ro, p, kz_msg_src(msg), s_jstr(b, "status"), now);
    json_t *e = json_object();
    static const char *const keys[] = {"status", "commit", "files", "diffstat", "error", NULL};
    s_copy_keys(e, b, keys);
    json_object_set_new(p, "execution", e);
}

static void s_on_validate(s_ro_t *ro, const kz_msg_t *msg, const json_t *b, int64_t now)
{
    json_t *p = s_plan(ro, s_jstr(b, "plan_id"));
    if (!p)
        return;
    s_call_done(ro, p, kz_msg_src(msg), s_jstr(b, "verdict"), now);
    json_t *v = json_object();
    static const char *const keys[] = {"validator", "verdict", "reasons", NULL};
    s_copy_keys(v, b, keys);
    json_array_append_new(json_object_get(p, "validations"), v);
}

static void s_on_learn(s_ro_t *ro, const json_t *b, int64_t now)
{
    const char *plan_id = s_jstr(b, "plan_id");
    json_t *p = plan_id ? json_object_get(ro->plans, plan_id) : NULL;
    if (!p)
        return;
    json_t *u = json_object();
    static const char *const keys[] = {"pattern", "success", "failure", "rate",
                                       "outcome", "cause",   "plan_id", NULL};
    s_copy_keys(u, b, keys);
    json_array_append(json_object_get(p, "learned"), u);
    /* the summary lists them as they came */
    json_array_append(ro->learned, u);
    json_object_set_new(p, "_learned_ms", json_integer(now));
    s_target_t *t = s_plan_target(ro, plan_id);
    const char *outcome = s_jstr(b, "outcome");
    if (t && outcome && strcmp(outcome, "ignored") == 0)
        s_progress(ro, "learning  %s: %s not counted (%s: not the fixer's doing), rate stays %.2f",
                   t->cfg->name, s_jstr(b, "pattern") ? s_jstr(b, "pattern") : "?",
                   s_cause_words(s_jstr(b, "cause")) ? s_cause_words(s_jstr(b, "cause")) : "-",
                   json_number_value(json_object_get(b, "rate")));
    else if (t) {
        s_progress(ro, "learning  %s: %s, %lld success%s, %lld failure%s, rate %.2f", t->cfg->name,
                   s_jstr(b, "pattern") ? s_jstr(b, "pattern") : "?",
                   (long long)json_integer_value(json_object_get(b, "success")),
                   json_integer_value(json_object_get(b, "success")) == 1 ? "" : "es",
                   (long long)json_integer_value(json_object_get(b, "failure")),
                   json_integer_value(json_object_get(b, "failure")) == 1 ? "" : "s",
                   json_number_value(json_object_get(b, "rate")));
    }
    json_decref(u);
}

/* tests.base: can the target's tests run at the scanned commit? Said up
   front, before any plan waits on it */
static void s_on_tests(s_ro_t *ro, const kz_msg_t *msg, const json_t *b)
{
    s_target_t *t = s_target_by_name(ro, kz_msg_target(msg));
    const char *commit = s_jstr(b, "commit");
    const char *scanned = t && t->scan ? s_jstr(t->scan, "commit") : t ? t->commit : NULL;
    if (!t || !commit || !scanned || !*scanned || strcmp(commit, scanned) != 0)
        return;
    /* a second scan.completed of the commit (a reused one) brings the same
       answer again: said once */
    if (t->tests && json_equal(json_object_get(t->tests, "usable"), json_object_get(b, "usable")))
        return;
    json_decref(t->tests);
    t->tests = json_deep_copy(b);
    if (json_is_true(json_object_get(b, "usable")))
        s_progress(ro,
                   "tests     %s: %lld passed, %lld failed at %.12s (%s): plans can be validated",
                   t->cfg->name, (long long)json_integer_value(json_object_get(b, "passed")),
                   (long long)json_integer_value(json_object_get(b, "failed")) +
                       json_integer_value(json_object_get(b, "errors")),
                   commit, s_jstr(b, "source") ? s_jstr(b, "source") : "?");
    else
        s_progress(ro, "tests     %s: CANNOT RUN at %.12s: %s; no plan of it can be validated",
                   t->cfg->name, commit,
                   s_jstr(b, "reason") ? s_jstr(b, "reason") : "(no reason given)");
}

/* One delivery. Times are the message's own (the sender's clock, ms since
   the epoch), so what waited in our queue while kaizen came up keeps
   its real time */
static void s_orch_heard(s_ro_t *ro, const kz_msg_t *msg);

static void s_handle(s_ro_t *ro, const kz_msg_t *msg)
{
    s_orch_heard(ro, msg);
    int64_t now = kz_msg_ts(msg) > 0 ? kz_msg_ts(msg) / 1000 : kz_now_us() / 1000;
    const char *type = kz_msg_type(msg);
    json_t *b = s_body(msg);
    if (!type || !b) {
        json_decref(b);
        return;
    }
    if (strcmp(type, "scan.started") == 0) {
        s_on_scan_started(ro, msg, b, now);
    } else if (strcmp(type, "finding.batch") == 0) {
        s_on_findings(ro, b);
    } else if (strcmp(type, "scan.completed") == 0) {
        s_on_scan_completed(ro, msg, b, now);
    } else if (strcmp(type, "analysis.result") == 0) {
        s_on_analysis(ro, b, now);
    } else if (strcmp(type, "plan.proposed") == 0 || strcmp(type, "plan.ready") == 0) {
        s_on_plan_info(ro, msg, b, strcmp(type, "plan.ready") == 0);
    } else if (strcmp(type, "plan.batch") == 0) {
        s_on_batch(ro, b);
    } else if (strcmp(type, "plan.ranked") == 0) {
        s_on_ranked(ro, b, now);
    } else if (strncmp(type, "plan.", 5) == 0) {
        s_on_plan_event(ro, type, b, now);
    } else if (strcmp(type, "exec.result") == 0) {
        s_on_exec(ro, msg, b, now);
    } else if (strcmp(type, "validate.result") == 0) {
        s_on_validate(ro, msg, b, now);
    } else if (strcmp(type, "request.started") == 0) {
        s_on_started(ro, msg, b, now);
    } else if (strcmp(type, "tests.base") == 0) {
        s_on_tests(ro, msg, b);
    } else if (strcmp(type, "learn.update") == 0) {
        s_on_learn(ro, b, now);
    }
    json_decref(b);
}

/* ------------------------------------------------------- where things are */

/* True when the config runs agent NAME (with at least one instance) */
static bool s_runs_agent(const kz_config_t *cfg, const char *name)
{
    for (size_t k = 0; k < cfg->agents_count; k++)
        if (strcmp(cfg->agents[k].name, name) == 0 && cfg->agents[k].instances != 0)
            return true;
    return false;
}

/* Update T->complete; append what T still waits for to PENDING (may be
   NULL). NOW: ms since the epoch. Learning waits at most S_LEARN_WAIT_MS
   after the last plan went final, then gives up with a warning. */
static void s_check_target(s_ro_t *ro, s_target_t *t, int64_t now, json_t *pending)
{
    char buf[512];
    const char *name = t->cfg->name;
    if (t->complete)
        return;
#define S_PENDING(...)                                        \
    do {                                                      \
        if (pending) {                                        \
            snprintf(buf, sizeof buf, __VA_ARGS__);           \
            json_array_append_new(pending, json_string(buf)); \
        }                                                     \
    } while (0)
    if (!t->scan_id[0]) {
        S_PENDING("scan of target %s (no scan.started from kaizen-%s yet)", name, S_TRIGGER_AGENT);
        return;
    }
    if (!t->scan) {
        S_PENDING("scan of target %s (scan %s running)", name, t->scan_id);
        return;
    }
    if (t->failed) {
        t->complete = true;
        return;
    }
    bool waiting = false;
    if (!t->quality && !t->reused) { /* an unchanged commit gets no new snapshot */
        S_PENDING("analysis of target %s (analysis.result of scan %s from kaizen-code-quality)",
                  name, t->scan_id);
        waiting = true;
    }
    if (t->t_ranked < 0) {
        S_PENDING("planning of target %s (plan.ranked of scan %s from "
                  "kaizen-feature-prioritizer)",
                  name, t->scan_id);
        return;
    }
    /* the plans */
    int64_t last_final = t->t_ranked;
    bool plans_final = true;
    size_t i;
    json_t *v;
    json_array_foreach(t->ready, i, v)
    {
        const json_t *p = json_object_get(ro->plans, json_string_value(v));
        if (!p || !json_is_true(json_object_get(p, "final"))) {
            plans_final = false;
            char waits[1024] = "", since[32] = "";
            if (p) {
                s_plan_waits(p, now, waits, sizeof waits);
                if (json_is_integer(json_object_get(p, "_state_ms")))
                    kz_cli_human_ms(now - json_integer_value(json_object_get(p, "_state_ms")),
                                    since, sizeof since);
            }
            S_PENDING("plan %s of target %s (%s%s%s%s%s)", json_string_value(v), name,
                      p && s_jstr(p, "state") ? s_jstr(p, "state") : "ready",
                      since[0] ? " for " : "", since, waits[0] ? ": " : "", waits);
            continue;
        }
        int64_t at = json_integer_value(json_object_get(p, "_final_ms"));
        if (at > last_final)
            last_final = at;
    }
    if (!plans_final)
        return;
    if (t->t_final < 0)
        t->t_final = last_final > t->t_ranked ? last_final : t->t_ranked;
    /* the learning */
    bool learned = true;
    int64_t last_learn = t->t_final;
    json_array_foreach(t->ready, i, v)
    {
        const json_t *p = json_object_get(ro->plans, json_string_value(v));
        const char *outcome = s_jstr(p, "outcome");
        if (!outcome || strcmp(outcome, "awaiting_approval") == 0)
            continue;
        size_t got = json_array_size(json_object_get(p, "learned"));
        if (got < s_learn_expected(p)) {
            learned = false;
            if (now - t->t_final < S_LEARN_WAIT_MS)
                S_PENDING("learning for plan %s of target %s (%zu of %zu learn.update)",
                          json_string_value(v), name, got, s_learn_expected(p));
        }
        int64_t at = json_integer_value(json_object_get(p, "_learned_ms"));
        if (got > 0 && at > last_learn)
            last_learn = at;
    }
    if (!learned && now - t->t_final < S_LEARN_WAIT_MS)
        return;
    if (!learned && !t->learn_gave_up) {
        t->learn_gave_up = true;
        json_array_foreach(t->ready, i, v)
        {
            const json_t *p = json_object_get(ro->plans, json_string_value(v));
            const char *outcome = s_jstr(p, "outcome");
            if (!outcome || strcmp(outcome, "awaiting_approval") == 0)
                continue;
            if (json_array_size(json_object_get(p, "learned")) < s_learn_expected(p))
                s_warn(ro,
                       "learning: plan %s (%s) got %zu of %zu learn.update within %ds of the "
                       "last plan outcome (is kaizen-pattern-learner running?)",
                       json_string_value(v), name, json_array_size(json_object_get(p, "learned")),
                       s_learn_expected(p), S_LEARN_WAIT_MS / 1000);
        }
    }
    /* whether the target's tests can run at the scanned commit: the
       test-runner says so after every scan (tests.base); a cycle is not
       reported before that is known */
    if (!t->tests && t->cfg->test_count > 0 && s_runs_agent(ro->cfg, "test-runner")) {
        S_PENDING("tests of target %s at %.12s (tests.base from kaizen-test-runner: the base "
                  "suite runs once per commit)",
                  name, s_jstr(t->scan, "commit") ? s_jstr(t->scan, "commit") : "?");
        return;
    }
    if (waiting)
        return; /* still the analysis */
    t->t_learned = last_learn;
    t->complete = true;
    s_progress(ro, "done      %s", name);
#undef S_PENDING
}

/* A target scanned S_BASE_NUDGE_MS ago with no tests.base yet: the
   test-runner may have joined its queue group after that scan.completed
   was routed (a scan that began while kaizen was coming up: code-health
   starts before the validation layer), and an event routed to a group
   with no member yet reaches nobody. Asked once for the target again:
   code-health answers with the stored scan (same commit), whose
   scan.completed the test-runner now gets. 0 / -1 (bus error) */
static int s_ask_base_again(s_ro_t *ro, kz_bus_t *bus, s_target_t *t, int64_t now)
{
    if (t->base_asked || !t->scan || t->tests || t->failed || t->cfg->test_count == 0 ||
        t->t_scanned < 0 || now - t->t_scanned < S_BASE_NUDGE_MS ||
        !s_runs_agent(ro->cfg, "test-runner"))
        return 0;
    t->base_asked = true;
    kz_msg_t *run = kz_msg_new("agent.run");
    if (!run || kz_map_put_str(run, kz_msg_body(run), "agent", S_TRIGGER_AGENT) != 0 ||
        kz_msg_set_target(run, t->cfg->name) != 0 || kz_bus_publish(bus, &run) != 0) {
        kz_msg_destroy(&run);
        return -1;
    }
    s_progress(ro,
               "asked kaizen-%s for %s again: no tests.base %ds after its scan (the "
               "test-runner may have joined after the scan was announced)",
               S_TRIGGER_AGENT, t->cfg->name, S_BASE_NUDGE_MS / 1000);
    return 0;
}

/* ------------------------------------------------------------ the report */

static json_t *s_ms(int64_t from, int64_t to)
{
    return from >= 0 && to >= from ? json_integer(to - from) : json_null();
}

static json_t *s_target_doc(s_ro_t *ro, const s_target_t *t)
{
    json_t *scan = json_null();
    if (t->scan) {
        scan = json_deep_copy(t->scan);
    } else if (t->scan_id[0]) {
        scan = json_pack("{s:s, s:s}", "scan_id", t->scan_id, "status", "running");
    }
    json_t *planning = json_null();
    if (t->t_ranked >= 0 || t->proposed >= 0)
        planning = json_pack("{s:o, s:O, s:O, s:O}", "proposed",
                             t->proposed >= 0 ? json_integer(t->proposed) : json_null(), "ready",
                             t->ready, "dropped", t->dropped, "unplanned", t->unplanned);
    /* the scan's own duration, else from its scan.started */
    const json_t *dur = json_object_get(t->scan, "duration_ms");
    json_t *scan_ms = json_is_integer(dur) ? json_integer(json_integer_value(dur))
                                           : s_ms(t->t_started, t->t_scanned);
    json_t *stages = json_pack(
        "{s:o, s:o, s:o, s:o, s:o}", "scan", scan_ms, "analysis", s_ms(t->t_scanned, t->t_analysed),
        "planning", s_ms(t->t_scanned, t->t_ranked), "execution_validation",
        s_ms(t->t_ranked, t->t_final), "learning", s_ms(t->t_final, t->t_learned));
    json_t *quality = json_null();
    if (t->quality) {
        json_t *q = t->quality;
        json_t *rating = json_object_get(q, "rating");
        json_t *score = json_object_get(q, "overall_score");
        json_t *trend = json_object_get(q, "trend");
        if (!rating)
            rating = json_object_get(q, "overall_rating");
        if (!score)
            score = json_object_get(q, "score");
        char why[256];
        const char *partial = s_partial(t, why, sizeof why);
        quality = json_pack("{s:O, s:O, s:O, s:s?, s:O}", "rating", rating ? rating : json_null(),
                            "score", score ? score : json_null(), "trend",
                            trend ? trend : json_null(), "partial", partial, "summary", q);
    }
    (void)ro;
    /* files set aside: reason -> how many files */
    json_t *set_aside = json_object();
    const char *reason;
    json_t *files;
    json_object_foreach(t->set_aside, reason, files)
    {
        json_object_set_new(set_aside, reason, json_integer((json_int_t)json_object_size(files)));
    }
    return json_pack("{s:s, s:s, s:b, s:o, s:O, s:o, s:o, s:o, s:O, s:o}", "name", t->cfg->name,
                     "path", t->cfg->path ? t->cfg->path : "", "complete", t->complete, "scan",
                     scan ? scan : json_null(), "findings_by_tool", t->by_tool, "quality",
                     quality ? quality : json_null(), "planning", planning ? planning : json_null(),
                     "stages_ms", stages ? stages : json_null(), "tests",
                     t->tests ? t->tests : json_null(), "set_aside",
                     set_aside ? set_aside : json_object());
}

/* The whole document */
static json_t *s_doc(s_ro_t *ro, const char *result, int exit_code, int64_t start_ms,
                     int64_t elapsed_ms, json_t *pending)
{
    json_t *targets = json_array(), *plans = json_array(), *dropped = json_array();
    json_t *branches = json_array();
    json_t *lists = json_pack("{s:[], s:[], s:[], s:[], s:[]}", "accepted", "rejected", "failed",
                              "awaiting_approval", "pending");
    int64_t stages[5] = {-1, -1, -1, -1, -1};
    const char *stage_names[5] = {"scan", "analysis", "planning", "execution_validation",
                                  "learning"};
    for (size_t i = 0; i < ro->ntargets; i++) {
        const s_target_t *t = &ro->targets[i];
        json_t *td = s_target_doc(ro, t);
        const json_t *st = json_object_get(td, "stages_ms");
        for (int k = 0; k < 5; k++) {
            const json_t *v = json_object_get(st, stage_names[k]);
            if (json_is_integer(v) && json_integer_value(v) > stages[k])
                stages[k] = json_integer_value(v);
        }
        json_array_append_new(targets, td);
        size_t j;
        json_t *v;
        json_array_foreach(t->ready, j, v)
        {
            json_t *p = json_object_get(ro->plans, json_string_value(v));
            if (!p)
                continue;
            json_t *copy = json_deep_copy(p);
            json_object_del(copy, "_learned_ms");
            json_object_del(copy, "_final_ms");
            json_object_del(copy, "final");
            const char *outcome = s_jstr(p, "outcome");
            json_array_append_new(json_object_get(lists, outcome ? outcome : "pending"),
                                  json_string(json_string_value(v)));
            if (outcome && strcmp(outcome, "accepted") == 0) {
                if (s_jstr(p, "branch"))
                    json_array_append_new(
                        branches, json_pack("{s:s, s:s, s:s*}", "branch", s_jstr(p, "branch"),
                                            "target", t->cfg->name, "commit", s_jstr(p, "commit")));
                /* the integration branch; with policy apply: merge it is the
                   target's own branch, which was moved, not created */
                const char *integ = s_jstr(p, "integrated");
                const char *own = t->cfg->branch ? t->cfg->branch : "main";
                if (integ && strcmp(integ, own) == 0)
                    integ = NULL;
                bool have = false;
                size_t k;
                json_t *bv;
                json_array_foreach(branches, k, bv)
                {
                    if (!integ || strcmp(s_jstr(bv, "branch"), integ) != 0 ||
                        strcmp(s_jstr(bv, "target"), t->cfg->name) != 0)
                        continue;
                    have = true;
                    /* its head: the commit of the plan accepted last */
                    json_t *at = json_object_get(p, "_final_ms");
                    if (json_integer_value(at) >= json_integer_value(json_object_get(bv, "_at"))) {
                        json_object_set_new(bv, "commit",
                                            s_jstr(p, "integrated_commit")
                                                ? json_string(s_jstr(p, "integrated_commit"))
                                                : json_null());
                        json_object_set(bv, "_at", at);
                    }
                }
                if (integ && !have)
                    json_array_append_new(
                        branches, json_pack("{s:s, s:s, s:s*, s:O*}", "branch", integ, "target",
                                            t->cfg->name, "commit", s_jstr(p, "integrated_commit"),
                                            "_at", json_object_get(p, "_final_ms")));
            }
            json_array_append_new(plans, copy);
        }
        json_array_foreach(t->dropped, j, v)
        {
            json_array_append(dropped, v);
        }
    }
    size_t bi;
    json_t *bv;
    json_array_foreach(branches, bi, bv)
    {
        json_object_del(bv, "_at");
    }
    json_t *stage_doc = json_object();
    for (int k = 0; k < 5; k++)
        json_object_set_new(stage_doc, stage_names[k],
                            stages[k] >= 0 ? json_integer(stages[k]) : json_null());
    json_t *doc =
        json_pack("{s:s, s:i, s:b, s:s*, s:I, s:I, s:o, s:o, s:o}", "result", result, "exit_code",
                  exit_code, "started_kaizen", ro->started_kaizen, "config", ro->cfg->path,
                  "start_ms", (json_int_t)start_ms, "elapsed_ms", (json_int_t)elapsed_ms,
                  "stages_ms", stage_doc, "targets", targets, "plans", plans);
    if (!doc)
        return NULL;
    const char *keys[] = {"accepted", "rejected", "failed", "awaiting_approval"};
    for (int k = 0; k < 4; k++)
        json_object_set(doc, keys[k], json_object_get(lists, keys[k]));
    json_decref(lists);
    json_object_set_new(doc, "dropped", dropped);
    json_object_set_new(doc, "branches", branches);
    json_object_set(doc, "learned", ro->learned);
    json_object_set(doc, "pending", pending);
    json_object_set(doc, "warnings", ro->warnings);
    /* how the tools, fixers and tests ran (docs/sandbox.md) */
    char sandbox[512];
    kz_sandbox_describe(sandbox, sizeof sandbox);
    json_object_set_new(
        doc, "sandbox",
        json_pack("{s:b, s:s}", "enabled", kz_sandbox_enabled(), "detail", sandbox));
    return doc;
}

/* ------------------------------------------------------------- the text */

static const char *s_or(const char *s, const char *dflt)
{
    return s && *s ? s : dflt;
}

/* Print S masking control characters */
static void s_put(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
        putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
}

/* "  set aside: 3 files, not the project's own code (not planned): 2
   vendored: vendor/, 1 generated: ..." when the scan set files aside */
static void s_text_set_aside(const json_t *set_aside)
{
    json_int_t files = 0;
    const char *reason;
    json_t *n;
    json_object_foreach((json_t *)set_aside, reason, n)
    {
        files += json_integer_value(n);
    }
    if (files <= 0)
        return;
    printf("  set aside: %lld file%s, not the project's own code (not planned):", (long long)files,
           files == 1 ? "" : "s");
    const char *sep = " ";
    json_object_foreach((json_t *)set_aside, reason, n)
    {
        printf("%s%lld ", sep, (long long)json_integer_value(n));
        s_put(reason);
        sep = ", ";
    }
    printf("\n");
}

static const json_t *s_find_plan(const json_t *doc, const char *id)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(doc, "plans"), i, p)
    {
        if (strcmp(s_or(s_jstr(p, "plan_id"), ""), id) == 0)
            return p;
    }
    return NULL;
}

/* The reasons of a rejected or failed plan, each once: the validators'
   list when there is one (the router's "reason" joins the same texts),
   else the reason */
static void s_text_reasons(const json_t *p)
{
    const json_t *reasons = json_object_get(p, "reasons");
    const char *cause = s_cause_words(s_jstr(p, "cause"));
    if (cause)
        printf("            cause: %s\n", cause);
    if (json_array_size(reasons) == 0) {
        printf("            reason: ");
        s_put(s_or(s_jstr(p, "reason"), "(no reason given)"));
        printf("\n");
        return;
    }
    size_t i;
    json_t *r;
    json_array_foreach(reasons, i, r)
    {
        if (!json_is_string(r))
            continue;
        printf("            - ");
        s_put(json_string_value(r));
        printf("\n");
    }
}

/* "  not planned: 5 findings (3 several suggestions, 2 an identifier)" */
static void s_text_unplanned(const json_t *unplanned)
{
    json_int_t total = 0;
    const char *reason;
    json_t *n;
    json_object_foreach((json_t *)unplanned, reason, n) total += json_integer_value(n);
    if (total <= 0)
        return;
    printf("  not planned: %lld finding%s (", (long long)total, total == 1 ? "" : "s");
    bool first = true;
    json_object_foreach((json_t *)unplanned, reason, n)
    {
        printf("%s%lld ", first ? "" : ", ", (long long)json_integer_value(n));
        s_put(kz_unplanned_text_of(reason));
        first = false;
    }
    printf(")\n");
}

static void s_text_plans(const json_t *doc, const char *list, const char *title)
{
    const json_t *ids = json_object_get(doc, list);
    printf("plans %s (%zu)%s\n", title, json_array_size(ids), json_array_size(ids) ? ":" : "");
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        const json_t *p = s_find_plan(doc, json_string_value(id));
        if (!p)
            continue;
        char what[256];
        s_plan_what(p, what, sizeof what);
        printf("  %s  %s  ", json_string_value(id), s_or(s_jstr(p, "target"), "-"));
        s_put(what);
        printf("\n");
        const json_t *exec = json_object_get(p, "execution");
        if (strcmp(list, "accepted") == 0) {
            printf("            branch %s, commit %.12s", s_or(s_jstr(p, "branch"), "-"),
                   s_or(s_jstr(p, "commit"), "-"));
            if (s_jstr(p, "integrated"))
                printf(", also on %s (%.12s)", s_jstr(p, "integrated"),
                       s_or(s_jstr(p, "integrated_commit"), "-"));
            printf("\n");
            if (exec) {
                char files[512] = "";
                size_t at = 0, k;
                json_t *f;
                json_array_foreach(json_object_get(exec, "files"), k, f)
                {
                    int n = snprintf(files + at, sizeof files - at, "%s%s", k ? ", " : "",
                                     s_or(json_string_value(f), "?"));
                    if (n < 0 || (size_t)n >= sizeof files - at)
                        break;
                    at += (size_t)n;
                }
                printf("            files: ");
                s_put(at ? files : "-");
                if (s_jstr(exec, "diffstat")) {
                    printf(" (");
                    s_put(s_jstr(exec, "diffstat"));
                    printf(")");
                }
                printf("\n");
            }
        } else if (strcmp(list, "awaiting_approval") == 0) {
            const json_t *risk = json_object_get(p, "risk");
            if (json_is_number(risk))
                printf("            risk %.2f: ", json_number_value(risk));
            else
                printf("            ");
            printf("approve with 'kaizen approve %s' (or 'kaizen reject %s --why TEXT')\n",
                   json_string_value(id), json_string_value(id));
        } else {
            if (s_jstr(p, "failed_in"))
                printf("            in state %s\n", s_jstr(p, "failed_in"));
            s_text_reasons(p);
        }
    }
}

static void s_text(const json_t *doc)
{
    const char *result = s_jstr(doc, "result");
    char took[32], start[32];
    json_int_t start_ms = json_integer_value(json_object_get(doc, "start_ms"));
    kz_cli_human_ms(start_ms, start, sizeof start);
    kz_cli_human_ms(start_ms + json_integer_value(json_object_get(doc, "elapsed_ms")), took,
                    sizeof took);
    if (strcmp(result, "completed") == 0)
        printf("kaizen run-once: the cycle completed in %s\n", took);
    else if (strcmp(result, "failed") == 0)
        printf("kaizen run-once: the cycle ran in %s, but not on every target (see below)\n", took);
    else
        printf("kaizen run-once: %s after %s; what was done so far:\n",
               strcmp(result, "timed_out") == 0           ? "TIMED OUT"
               : strcmp(result, "orchestrator_gone") == 0 ? "THE ORCHESTRATOR IS GONE"
                                                          : "interrupted",
               took);
    const json_t *sandbox = json_object_get(doc, "sandbox");
    if (json_is_false(json_object_get(sandbox, "enabled")))
        printf("WARNING: the sandbox is %s\n", s_jstr(sandbox, "detail"));

    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "targets"), i, t)
    {
        const json_t *scan = json_object_get(t, "scan");
        printf("\ntarget %s (%s)\n", s_jstr(t, "name"), s_or(s_jstr(t, "path"), "-"));
        if (!json_is_object(scan)) {
            printf("  scan: none seen\n");
            continue;
        }
        const char *status = s_or(s_jstr(scan, "status"), "?");
        printf("  scan %s: status %s", s_or(s_jstr(scan, "scan_id"), "-"), status);
        if (s_jstr(scan, "commit"))
            printf(", commit %.12s", s_jstr(scan, "commit"));
        if (json_is_integer(json_object_get(scan, "files")))
            printf(", %lld files", (long long)json_integer_value(json_object_get(scan, "files")));
        if (json_is_true(json_object_get(scan, "reused")))
            printf(" (scanned before with the same tools and settings: not scanned again)");
        else if (json_is_integer(json_object_get(scan, "rescanned")))
            printf(" (%lld re-checked)",
                   (long long)json_integer_value(json_object_get(scan, "rescanned")));
        printf("\n");
        if (s_jstr(scan, "error")) {
            printf("  error: ");
            s_put(s_jstr(scan, "error"));
            printf("\n");
        }
        if (json_is_integer(json_object_get(scan, "findings")))
            printf("  findings: %lld\n",
                   (long long)json_integer_value(json_object_get(scan, "findings")));
        s_text_set_aside(json_object_get(t, "set_aside"));
        /* the tools that ran clean first; then the others, apart: their
           findings are missing from the count above */
        const json_t *tools = json_object_get(scan, "tools");
        size_t k;
        json_t *tool;
        int listed[3] = {0, 0, 0};
        for (int pass = 0; pass < 3; pass++)
            json_array_foreach(tools, k, tool)
            {
                const char *st = s_or(s_jstr(tool, "status"), "?");
                if ((int)kz_tool_outcome(st) != pass)
                    continue;
                if (pass == 1 && listed[1]++ == 0)
                    printf("  skipped:\n");
                if (pass == 2 && listed[2]++ == 0)
                    printf("  FAILED (their findings are missing):\n");
                char d[32];
                kz_cli_human_ms(json_integer_value(json_object_get(tool, "duration_ms")), d,
                                sizeof d);
                /* a tool the project chose that did not run has no count */
                char count[32] = "-";
                if (pass != 1 || !s_jstr(tool, "note"))
                    snprintf(count, sizeof count, "%lld",
                             (long long)json_integer_value(json_object_get(tool, "findings")));
                printf("    %-14s %6s  %-8s %8s", s_or(s_jstr(tool, "name"), "?"), count,
                       s_or(s_jstr(tool, "status"), "?"), d);
                if (s_jstr(tool, "note")) {
                    printf("  ");
                    s_put(s_jstr(tool, "note"));
                } else if (pass == 1) {
                    printf("  ");
                    s_put(s_skip_why(tool));
                } else if (s_jstr(tool, "error")) {
                    printf("  ");
                    s_put(s_jstr(tool, "error"));
                }
                printf("\n");
            }
        if (json_array_size(tools) == 0) {
            const char *key;
            json_t *v;
            json_object_foreach((json_t *)json_object_get(t, "findings_by_tool"), key, v)
            {
                printf("    %-14s %6lld\n", key, (long long)json_integer_value(v));
            }
        }
        const json_t *q = json_object_get(t, "quality");
        if (json_is_object(q)) {
            char line[768];
            s_quality_line(json_object_get(q, "summary"), s_jstr(q, "partial"), line, sizeof line);
            printf("  snapshot: ");
            s_put(line);
            printf("\n");
        } else if (json_is_true(json_object_get(scan, "reused"))) {
            printf("  snapshot: the one of scan %s (no new snapshot of an unchanged commit)\n",
                   s_or(s_jstr(scan, "scan_id"), "-"));
        } else if (strcmp(status, "failed") != 0) {
            printf("  snapshot: none received\n");
        }
        const json_t *tests = json_object_get(t, "tests");
        if (json_is_object(tests)) {
            printf("  tests at %.12s: ", s_or(s_jstr(tests, "commit"), "-"));
            if (json_is_true(json_object_get(tests, "usable")))
                printf("%lld passed, %lld failed, %lld errors, %lld skipped (%s)\n",
                       (long long)json_integer_value(json_object_get(tests, "passed")),
                       (long long)json_integer_value(json_object_get(tests, "failed")),
                       (long long)json_integer_value(json_object_get(tests, "errors")),
                       (long long)json_integer_value(json_object_get(tests, "skipped")),
                       s_or(s_jstr(tests, "source"), "?"));
            else {
                printf("CANNOT RUN: ");
                s_put(s_or(s_jstr(tests, "reason"), "(no reason given)"));
                printf("\n    no plan of this target can be validated until they do\n");
            }
        }
        const json_t *pl = json_object_get(t, "planning");
        if (json_is_object(pl)) {
            const json_t *proposed = json_object_get(pl, "proposed");
            printf("  plans: ");
            if (json_is_integer(proposed))
                printf("%lld proposed, ", (long long)json_integer_value(proposed));
            printf("%zu ready, %zu dropped\n", json_array_size(json_object_get(pl, "ready")),
                   json_array_size(json_object_get(pl, "dropped")));
            s_text_unplanned(json_object_get(pl, "unplanned"));
        }
    }

    printf("\n");
    s_text_plans(doc, "accepted", "accepted");
    s_text_plans(doc, "rejected", "rejected");
    s_text_plans(doc, "failed", "failed");
    s_text_plans(doc, "awaiting_approval", "awaiting approval");
    const json_t *dropped = json_object_get(doc, "dropped");
    printf("plans dropped (%zu)%s\n", json_array_size(dropped),
           json_array_size(dropped) ? ":" : "");
    json_array_foreach(dropped, i, t)
    {
        char what[256];
        s_plan_what(t, what, sizeof what);
        printf("  %s  %s  ", s_or(s_jstr(t, "plan_id"), "?"), s_or(s_jstr(t, "target"), "-"));
        s_put(json_object_get(t, "fixer") ? what : "");
        printf(json_object_get(t, "fixer") ? ": " : "");
        s_put(s_or(s_jstr(t, "reason"), "(no reason given)"));
        printf("\n");
    }
    const json_t *branches = json_object_get(doc, "branches");
    printf("branches created (%zu)%s\n", json_array_size(branches),
           json_array_size(branches) ? ":" : "");
    json_array_foreach(branches, i, t)
    {
        printf("  %-40s %s", s_or(s_jstr(t, "branch"), "?"), s_or(s_jstr(t, "target"), "?"));
        if (s_jstr(t, "commit"))
            printf("  at %.12s", s_jstr(t, "commit"));
        printf("\n");
    }
    const json_t *learned = json_object_get(doc, "learned");
    printf("learned pattern updates (%zu)%s\n", json_array_size(learned),
           json_array_size(learned) ? ":" : "");
    json_array_foreach(learned, i, t)
    {
        printf("  ");
        s_put(s_or(s_jstr(t, "pattern"), "?"));
        if (strcmp(s_or(s_jstr(t, "outcome"), "-"), "ignored") == 0) {
            printf("  not counted (%s), rate stays %.2f\n",
                   s_or(s_cause_words(s_jstr(t, "cause")), "-"),
                   json_number_value(json_object_get(t, "rate")));
            continue;
        }
        printf("  %s: %lld success%s, %lld failure%s, rate %.2f\n", s_or(s_jstr(t, "outcome"), "-"),
               (long long)json_integer_value(json_object_get(t, "success")),
               json_integer_value(json_object_get(t, "success")) == 1 ? "" : "es",
               (long long)json_integer_value(json_object_get(t, "failure")),
               json_integer_value(json_object_get(t, "failure")) == 1 ? "" : "s",
               json_number_value(json_object_get(t, "rate")));
    }
    printf("time per stage:\n");
    const json_t *st = json_object_get(doc, "stages_ms");
    const char *names[] = {"scan", "analysis", "planning", "execution_validation", "learning"};
    const char *labels[] = {"scan", "analysis", "planning", "execution+validation", "learning"};
    for (int k = 0; k < 5; k++) {
        const json_t *v = json_object_get(st, names[k]);
        char d[32] = "-";
        if (json_is_integer(v))
            kz_cli_human_ms(json_integer_value(v), d, sizeof d);
        printf("  %-22s %8s\n", labels[k], d);
    }
    if (json_is_true(json_object_get(doc, "started_kaizen")))
        printf("  %-22s %8s\n", "(starting kaizen)", start);
    printf("  %-22s %8s\n", "total", took);
    const json_t *warnings = json_object_get(doc, "warnings");
    json_array_foreach(warnings, i, t)
    {
        printf("warning: ");
        s_put(json_string_value(t));
        printf("\n");
    }
    const json_t *pending = json_object_get(doc, "pending");
    if (json_array_size(pending) > 0) {
        printf("still waiting for:\n");
        json_array_foreach(pending, i, t)
        {
            printf("  ");
            s_put(json_string_value(t));
            printf("\n");
        }
    }
}

/* --------------------------------------------------------------- running */

/* Subscribe to what the loop publishes - before kaizen is brought up, so
   the first scan code-health makes at its start is seen too: the SUB
   socket connects as soon as the broker binds. 0, or -1 after the message */
static int s_subscribe(s_ro_t *ro, kz_bus_t *bus)
{
    static const char *const topics[] = {
        "agent.run",
        "scan.",
        "finding.",
        "analysis.",
        "plan.",
        "exec.result",
        "validate.result",
        "learn.",
        "request.started",
        "tests.base",
        /* the orchestrator's, to notice it is gone */
        "agent.heartbeat",
        "agent.bye",
        "agent.hello",
    };
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        if (kz_bus_subscribe(bus, topics[i]) != 0) {
            kz_cli_error("run-once", "unable to subscribe to '%s' on %s", topics[i],
                         ro->cfg->bus.connect.sub);
            return -1;
        }
    }
    return 0;
}

static void s_handle_other(kz_delivery_t *d, void *arg)
{
    s_handle(arg, d->msg);
}

/* Check that the broker delivers to us (the probe: an agent.run naming
   only us; once it is back, our subscriptions are in place, and what
   queued up while kaizen started has been handled), then ask code-health
   for a scan - unless every target's scan is already under way. 0, or -1
   after the message */
static int s_trigger(s_ro_t *ro, kz_bus_t *bus, const char *only)
{
    if (kz_bus_wait_publisher(bus, S_PROBE_WAIT_MS) != 0) {
        kz_cli_error("run-once", "no broker at '%s': is kaizen running?", ro->cfg->bus.connect.pub);
        return -1;
    }
    int echo =
        kz_bus_await_echo(bus, ro->probe, S_PROBE_WAIT_MS, S_PROBE_EVERY_MS, s_handle_other, ro);
    if (echo == -2) {
        kz_cli_error("run-once", "unable to publish to '%s'", ro->cfg->bus.connect.pub);
        return -1;
    }
    if (echo < 0 || s_stop)
        return -1;
    if (echo > 0) {
        kz_cli_error("run-once",
                     "the broker at '%s' does not deliver events to us (no echo of "
                     "our own agent.run within %ds)",
                     ro->cfg->bus.connect.sub, S_PROBE_WAIT_MS / 1000);
        return -1;
    }
    /* a target being scanned already is not asked for again: that scan
       is the cycle's (a second one of the same commit would only repeat
       it). The others are asked for one by one, or all at once when none
       is under way. */
    char scanning[1024] = "", asked[1024] = "";
    size_t at = 0, asked_at = 0, nscanning = 0;
    for (size_t i = 0; i < ro->ntargets; i++) {
        bool busy = ro->targets[i].scan_id[0] != '\0';
        nscanning += busy;
        char *buf = busy ? scanning : asked;
        size_t *pos = busy ? &at : &asked_at;
        int n = snprintf(buf + *pos, sizeof scanning - *pos, "%s%s", *pos ? ", " : "",
                         ro->targets[i].cfg->name);
        if (n > 0 && (size_t)n < sizeof scanning - *pos)
            *pos += (size_t)n;
    }
    if (nscanning)
        s_progress(ro, "kaizen-%s is already scanning %s: following that scan", S_TRIGGER_AGENT,
                   scanning);
    if (nscanning == ro->ntargets)
        return 0;
    for (size_t i = 0; i < ro->ntargets; i++) {
        if (nscanning && ro->targets[i].scan_id[0])
            continue;
        const char *target = nscanning ? ro->targets[i].cfg->name : only;
        kz_msg_t *run = kz_msg_new("agent.run");
        if (!run || kz_map_put_str(run, kz_msg_body(run), "agent", S_TRIGGER_AGENT) != 0 ||
            (target && kz_msg_set_target(run, target) != 0)) {
            kz_msg_destroy(&run);
            kz_cli_error("run-once", "out of memory");
            return -1;
        }
        if (kz_bus_publish(bus, &run) != 0) {
            kz_cli_error("run-once", "unable to publish agent.run to '%s'",
                         ro->cfg->bus.connect.pub);
            return -1;
        }
        if (!nscanning)
            break; /* one request for every target (or the --target one) */
    }
    kz_bus_flush_step(bus, 5000); /* handed over (docs/durability.md) */
    s_progress(ro, "asked kaizen-%s for a scan of %s", S_TRIGGER_AGENT, asked);
    return 0;
}

/* Warn about the agents of the loop the config does not run */
static void s_check_agents(s_ro_t *ro)
{
    static const char *const loop[][2] = {
        {"code-health", "no scan will start"},
        {"code-quality", "no quality snapshot will come"},
        {"improvement-planner", "no plan will be proposed"},
        {"feature-prioritizer", "no plan.ranked will come"},
        {"code-refactorer", "no plan can be executed"},
        {"test-runner", "validate.tests will not answer"},
        {"code-reviewer", "validate.review will not answer"},
        {"pattern-learner", "no learn.update will come"},
    };
    for (size_t i = 0; i < sizeof loop / sizeof loop[0]; i++) {
        bool found = false;
        for (size_t k = 0; k < ro->cfg->agents_count && !found; k++)
            found = strcmp(ro->cfg->agents[k].name, loop[i][0]) == 0;
        if (!found)
            s_warn(ro, "no agent %s in the config (agents:): %s", loop[i][0], loop[i][1]);
    }
}

/* ------------------------------------------------------ the orchestrator */

/* True while PID runs on this host as a kaizen program (a zombie has
   stopped running) */
static bool s_pid_runs(long pid)
{
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return false;
    return kz_pid_is_kaizen((pid_t)pid);
}

/* Ask kaizen.status who the orchestrator is. 0 answered, -1 not */
static int s_orch_ask(s_ro_t *ro)
{
    char err[1024] = "";
    kz_msg_t *reply = kz_cli_status_call(ro->cfg, S_STATUS_MS, err, sizeof err);
    if (!reply)
        return -1;
    const kz_val_t *o = kz_map_get(kz_msg_body_const(reply), "orchestrator");
    const char *id = kz_map_str(o, "id");
    const char *host = kz_map_str(o, "host");
    long pid = (long)kz_map_int(o, "pid", 0);
    char me[256] = "";
    gethostname(me, sizeof me - 1);
    if (ro->orch_pid > 0 && pid > 0 && pid != ro->orch_pid)
        s_warn(ro, "the orchestrator was restarted (pid %ld, now pid %ld)", ro->orch_pid, pid);
    snprintf(ro->orch_id, sizeof ro->orch_id, "%s", id ? id : "");
    ro->orch_pid = pid;
    ro->orch_local = host && strcmp(host, me) == 0 && s_pid_runs(pid);
    ro->orch_seen = s_mono_ms();
    kz_msg_destroy(&reply);
    return 0;
}

/* A message on the bus: the orchestrator's heartbeat (or any word of
   it) says it lives; its agent.bye says it stopped */
static void s_orch_heard(s_ro_t *ro, const kz_msg_t *msg)
{
    const char *src = kz_msg_src(msg);
    if (!ro->orch_id[0] || !src || strcmp(src, ro->orch_id) != 0)
        return;
    ro->orch_seen = s_mono_ms();
    if (strcmp(kz_msg_type(msg), "agent.bye") == 0 && !ro->orch_gone[0]) {
        const char *reason = kz_map_str(kz_msg_body_const(msg), "reason");
        snprintf(ro->orch_gone, sizeof ro->orch_gone, "stopped (agent.bye: %s)",
                 reason ? reason : "no reason given");
    }
}

/* Is the orchestrator gone? Its process is looked at every second (when
   it runs here); after S_ORCH_QUIET_MS (or 4 heartbeats, the longer)
   without a word from it, kaizen.status is asked once. true with
   ro->orch_gone saying why */
static bool s_orch_check(s_ro_t *ro, int64_t now)
{
    if (ro->orch_gone[0])
        return true;
    if (ro->orch_pid <= 0 && !ro->orch_id[0])
        return false; /* never known: nothing to watch */
    if (now - ro->orch_checked < S_ORCH_CHECK_MS)
        return false;
    ro->orch_checked = now;
    if (ro->orch_local && !s_pid_runs(ro->orch_pid)) {
        snprintf(ro->orch_gone, sizeof ro->orch_gone, "died (its process is gone)");
        return true;
    }
    int64_t quiet = (int64_t)ro->cfg->agent_heartbeat_ms * 4;
    if (quiet < S_ORCH_QUIET_MS)
        quiet = S_ORCH_QUIET_MS;
    if (now - ro->orch_seen < quiet)
        return false;
    if (s_orch_ask(ro) == 0)
        return false;
    char bound[32];
    kz_cli_human_ms(s_mono_ms() - ro->orch_seen, bound, sizeof bound);
    snprintf(ro->orch_gone, sizeof ro->orch_gone,
             "stopped answering (no heartbeat for %s, no kaizen.status reply)", bound);
    return true;
}

/* The plans that were not final, as "ID STATE" into BUF */
static void s_unfinished(const s_ro_t *ro, char *buf, size_t len)
{
    size_t at = 0;
    const char *id;
    json_t *p;
    buf[0] = '\0';
    json_object_foreach(ro->plans, id, p)
    {
        if (json_is_true(json_object_get(p, "final")))
            continue;
        int n = snprintf(buf + at, len - at, "%s%s %s", at ? ", " : "", id,
                         s_or(s_jstr(p, "state"), "seen"));
        if (n < 0 || (size_t)n >= len - at)
            break;
        at += (size_t)n;
    }
}

/* Use the running kaizen, or bring it up. KZ_EXIT_OK with *STARTED */
static int s_bring_up(kz_cli_t *cli, bool json, bool *started)
{
    *started = false;
    char err[1024] = "";
    kz_msg_t *reply = kz_cli_status_call(cli->cfg, S_STATUS_MS, err, sizeof err);
    if (!reply)
        return kz_cli_up(cli, "run-once", stderr, started);
    /* running (perhaps not started by 'kaizen up': systemd): still create
       the missing sample targets, under the lock when we can have it */
    const kz_val_t *o = kz_map_get(kz_msg_body_const(reply), "orchestrator");
    if (!json)
        fprintf(stderr, "using the running kaizen (orchestrator pid %lld)\n",
                (long long)kz_map_int(o, "pid", 0));
    kz_msg_destroy(&reply);
    int lock = -1;
    if (kz_state_init(cli->cfg, err, sizeof err) == 0)
        lock = kz_state_lock(cli->cfg, S_LOCK_WAIT_MS, err, sizeof err);
    int rc = kz_cli_prepare_targets(cli->cfg, "run-once");
    if (lock >= 0)
        close(lock);
    return rc;
}

static const struct option s_opts[] = {
    {"target", required_argument, NULL, 'T'},
    {"json", no_argument, NULL, 'j'},
    {"timeout", required_argument, NULL, 't'},
    {"progress", required_argument, NULL, 'p'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    const char *only = NULL;
    bool json = false;
    int timeout_ms = S_DEFAULT_TIMEOUT, progress_ms = S_PROGRESS_MS;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            only = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 't':
            if (kz_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms <= 0)
                return kz_cli_usage("run-once", "invalid duration '%s' (e.g. 90s, 30m)", optarg);
            break;
        case 'p':
            if (kz_parse_duration_ms(optarg, &progress_ms) != 0 || progress_ms <= 0)
                return kz_cli_usage("run-once", "invalid duration '%s' (e.g. 10s, 1m)", optarg);
            break;
        default:
            return kz_cli_bad_option("run-once", c, argv);
        }
    }
    if (optind < argc)
        return kz_cli_usage("run-once", "unexpected argument '%s'", argv[optind]);
    const kz_config_t *cfg = cli->cfg;
    if (cfg->targets_count == 0)
        return kz_cli_error("run-once",
                            "no targets in %s: add one under 'targets:' (see "
                            "examples/kaizen.yaml)",
                            cfg->path ? cfg->path : "the built-in defaults");
    if (only && !kz_config_target(cfg, only)) {
        char names[1024] = "";
        size_t at = 0;
        for (size_t i = 0; i < cfg->targets_count; i++) {
            int n = snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "",
                             cfg->targets[i].name);
            if (n < 0 || (size_t)n >= sizeof names - at)
                break;
            at += (size_t)n;
        }
        return kz_cli_usage("run-once", "no target '%s' in %s (targets: %s)", only,
                            cfg->path ? cfg->path : "the config", names);
    }
    /* what the config names exists, before anything starts */
    if (kz_cli_config_check(cfg, "run-once") != KZ_EXIT_OK)
        return KZ_EXIT_FAILURE;

    s_ro_t ro;
    memset(&ro, 0, sizeof ro);
    ro.cfg = cfg;
    ro.json = json;
    ro.plans = json_object();
    ro.learned = json_array();
    ro.warnings = json_array();
    ro.workers = json_object();
    ro.progress_ms = progress_ms;
    ro.targets = calloc(cfg->targets_count, sizeof *ro.targets);
    if (!ro.plans || !ro.learned || !ro.warnings || !ro.workers || !ro.targets) {
        json_decref(ro.workers);
        json_decref(ro.plans);
        json_decref(ro.learned);
        json_decref(ro.warnings);
        free(ro.targets);
        return kz_cli_error("run-once", "out of memory");
    }
    for (size_t i = 0; i < cfg->targets_count; i++) {
        if (only && strcmp(cfg->targets[i].name, only) != 0)
            continue;
        s_target_t *t = &ro.targets[ro.ntargets++];
        t->cfg = &cfg->targets[i];
        t->by_tool = json_object();
        t->set_aside = json_object();
        t->ready = json_array();
        t->dropped = json_array();
        t->unplanned = json_object();
        t->proposed = -1;
        t->t_started = t->t_scanned = t->t_analysed = t->t_ranked = t->t_final = t->t_learned = -1;
    }

    int rc = KZ_EXIT_OK;
    bool started = false;
    kz_bus_t *bus = NULL;
    json_t *pending = json_array();
    json_t *doc = NULL;
    const char *result = "completed";

    char host[256] = "localhost", err[512] = "";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(ro.probe, sizeof ro.probe, "kaizen-run-once@%s#%ld", host, (long)getpid());
    bus = kz_bus_new(&cfg->bus, ro.probe, err, sizeof err);
    if (!bus) {
        rc = kz_cli_error("run-once", "%s", err);
        goto done;
    }
    if (s_subscribe(&ro, bus) != 0) {
        rc = KZ_EXIT_FAILURE;
        goto done;
    }
    int64_t t_start = s_mono_ms();
    rc = s_bring_up(cli, json, &started);
    if (rc != KZ_EXIT_OK)
        goto done;
    ro.started_kaizen = started;
    if (s_orch_ask(&ro) != 0) {
        /* no answer now (up had one): the pid file says who it is */
        char pidfile[PATH_MAX];
        if (kz_state_path(cfg, "run/orchestrator.pid", pidfile, sizeof pidfile) == 0) {
            pid_t pid = kz_pidfile_read(pidfile);
            if (kz_cli_pid_is_ours(cfg, pid)) {
                ro.orch_pid = (long)pid;
                ro.orch_local = true;
            }
        }
        ro.orch_seen = s_mono_ms();
    }
    ro.t0 = s_mono_ms();
    ro.last_line = ro.t0;
    int64_t start_ms = started ? ro.t0 - t_start : 0;
    s_check_agents(&ro);

    s_stop = 0;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    if (s_trigger(&ro, bus, only) != 0) {
        rc = s_stop ? S_EXIT_INTERRUPTED : KZ_EXIT_FAILURE;
        goto restore;
    }

    int64_t deadline = ro.t0 + timeout_ms;
    for (;;) {
        int64_t now = s_mono_ms();
        bool all = true;
        for (size_t i = 0; i < ro.ntargets; i++) {
            s_check_target(&ro, &ro.targets[i], kz_now_us() / 1000, NULL);
            all = all && ro.targets[i].complete;
            if (s_ask_base_again(&ro, bus, &ro.targets[i], kz_now_us() / 1000) != 0)
                s_warn(&ro, "unable to publish agent.run for %s", ro.targets[i].cfg->name);
        }
        if (all)
            break;
        if (s_stop) {
            result = "interrupted";
            rc = S_EXIT_INTERRUPTED;
            break;
        }
        if (now >= deadline) {
            result = "timed_out";
            rc = S_EXIT_TIMEOUT;
            break;
        }
        if (s_orch_check(&ro, now)) {
            result = "orchestrator_gone";
            rc = S_EXIT_GONE;
            break;
        }
        if (now - ro.last_line >= ro.progress_ms) {
            /* never silent for long: say what is still pending */
            json_t *waits = json_array();
            for (size_t i = 0; waits && i < ro.ntargets; i++)
                s_check_target(&ro, &ro.targets[i], kz_now_us() / 1000, waits);
            char list[4096] = "";
            size_t at = 0, i;
            json_t *v;
            json_array_foreach(waits, i, v)
            {
                int n = snprintf(list + at, sizeof list - at, "%s%s", at ? "; " : "",
                                 json_string_value(v));
                if (n < 0 || (size_t)n >= sizeof list - at)
                    break;
                at += (size_t)n;
            }
            json_decref(waits);
            if (at)
                s_progress(&ro, "waiting   for %s", list);
            ro.last_line = now;
        }
        int64_t wait = deadline - now < S_RECV_MS ? deadline - now : S_RECV_MS;
        kz_delivery_t *d = NULL;
        int r = kz_bus_recv(bus, &d, (int)wait);
        if (r == 1) {
            s_handle(&ro, d->msg);
            kz_bus_delivery_destroy(&d);
        }
    }
    int64_t now = s_mono_ms();
    for (size_t i = 0; i < ro.ntargets; i++) {
        s_check_target(&ro, &ro.targets[i], kz_now_us() / 1000, pending);
        if (rc == KZ_EXIT_OK && ro.targets[i].failed) {
            result = "failed";
            rc = KZ_EXIT_FAILURE;
        }
    }
    doc = s_doc(&ro, result, rc, start_ms, now - ro.t0, pending);
    if (!doc) {
        rc = kz_cli_error("run-once", "out of memory");
        goto restore;
    }
    if (json) {
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            printf("%s\n", text);
        else
            rc = kz_cli_error("run-once", "out of memory");
        free(text);
    } else {
        if (!ro.json)
            fprintf(stderr, "\n");
        s_text(doc);
    }
    if (started) {
        if (json)
            fprintf(stderr, "kaizen keeps running; `kaizen down` stops it\n");
        else
            printf("kaizen keeps running; `kaizen down` stops it\n");
    }
    if (fflush(stdout) != 0)
        rc = kz_cli_error("run-once", "unable to write the output: %s", strerror(errno));
    if (rc == S_EXIT_TIMEOUT || rc == S_EXIT_INTERRUPTED) {
        char list[4096] = "";
        size_t at = 0, i;
        json_t *v;
        json_array_foreach(pending, i, v)
        {
            int n =
                snprintf(list + at, sizeof list - at, "%s%s", at ? "; " : "", json_string_value(v));
            if (n < 0 || (size_t)n >= sizeof list - at)
                break;
            at += (size_t)n;
        }
        char bound[32];
        kz_cli_human_ms(timeout_ms, bound, sizeof bound);
        if (rc == S_EXIT_TIMEOUT)
            kz_cli_error("run-once", "timed out after %s; still waiting for: %s", bound,
                         at ? list : "(nothing?)");
        else
            kz_cli_error("run-once", "interrupted; still waiting for: %s", at ? list : "-");
    } else if (rc == S_EXIT_GONE) {
        char plans[4096];
        s_unfinished(&ro, plans, sizeof plans);
        char who[64] = "";
        if (ro.orch_pid > 0)
            snprintf(who, sizeof who, " (pid %ld)", ro.orch_pid);
        kz_cli_error("run-once",
                     "the orchestrator%s %s: %s%s; run `kaizen up` to recover (it keeps the broker "
                     "and what it queued; a plan interrupted while executing is failed and "
                     "rolled back)",
                     who, ro.orch_gone,
                     plans[0] ? "plans left unfinished: " : "no plan was under way", plans);
    } else if (rc == KZ_EXIT_FAILURE && strcmp(result, "failed") == 0) {
        for (size_t i = 0; i < ro.ntargets; i++)
            if (ro.targets[i].failed)
                kz_cli_error("run-once", "the scan of target %s failed: %s",
                             ro.targets[i].cfg->name,
                             s_or(s_jstr(ro.targets[i].scan, "error"), "(no reason given)"));
    }
restore:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
done:
    kz_bus_destroy(&bus);
    json_decref(doc);
    json_decref(pending);
    for (size_t i = 0; i < ro.ntargets; i++) {
        s_target_t *t = &ro.targets[i];
        json_decref(t->scan);
        json_decref(t->by_tool);
        json_decref(t->set_aside);
        json_decref(t->quality);
        json_decref(t->ready);
        json_decref(t->dropped);
        json_decref(t->unplanned);
        json_decref(t->tests);
    }
    free(ro.targets);
    json_decref(ro.workers);
    json_decref(ro.plans);
    json_decref(ro.learned);
    json_decref(ro.warnings);
    return rc;
}

const kz_cli_cmd_t kz_cmd_run_once = {
    "run-once", "run one full improvement cycle and summarise it",
    s_usage,    s_run,
    true,       s_opt_tables,
    NULL,
};
