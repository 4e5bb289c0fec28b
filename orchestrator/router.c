/*  router.c - the plan lifecycle (router.h)

    ready -> (awaiting_approval) -> executing -> executed -> validating
          -> accepted | rejected | failed

    The loop's thread (the only one that touches the orchestrator's bus)
    receives plan.ready, plan.approved and plan.rejected from queue group
    "kaizen.router". A plan.ready is checked at once - its id ([A-Za-z0-9_-],
    at most 128), its envelope target (in the config), its fixer (in the
    local config), every file (inside the target's path) - and a plan
    that fails a check gets plan.failed {state "ready", reason}. Otherwise
    it goes into the router's table (queued) and the delivery is
    acknowledged: from then on the router owns it. A plan id already in
    the table, or final (the last S_FINALS are remembered), is ignored: a
    redelivery never runs a plan twice.

    Up to policy.max_concurrent plans run at once, each on a worker
    thread with a bus client of its own (a bus is not thread-safe). The
    worker resolves base_commit in the target's repository, then either
    publishes plan.state awaiting_approval (risk at or above
    policy.require_approval, and no person approved it yet: the plan
    waits in the table for plan.approved or a person's plan.rejected) or
    runs it: plan.state executing, the fixer's service (exec.refactor)
    called with exec.request, the exec.result reply republished as an
    event, plan.state executed, plan.state validating, every
    policy.validators service called in parallel (a thread and a bus each)
    with validate.request, each validate.result republished, and the
    verdict: all pass -> integrate (policy.apply) and plan.accepted; any
    reject -> plan.rejected with every reason; an error or no reply ->
    plan.failed. Once the executor's commit is checked it is kept under
    refs/kaizen/plans/<id> whatever comes of the plan (`kaizen plans
    show`). A plan that is rejected or fails is rolled back: its
    worktree STATE/worktrees/<target>/plan-<id> and its branch
    kaizen/plan-<id> are deleted. An accepted plan keeps its branch.

    All of one plan's events come from one bus client, one after another,
    so they reach the recorder in order.

    At start a background thread reads the plans an earlier orchestrator
    left unfinished from improvement_suggestions: executing, executed or
    validating ones fail ("interrupted: the orchestrator restarted") and
    are rolled back, awaiting_approval ones wait again, ready and
    approved ones are queued again.

    Stopping: running plans get supervisor.stop_timeout to finish; then
    their threads are interrupted (SIGURG: the bus call in progress
    returns) and each fails with "interrupted: orchestrator stopping" and
    is rolled back.
*/
#include "router.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "kz_db.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_plan.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define S_ID_MAX         128   /* a plan id's length */
#define S_FINALS         4096  /* final plan ids remembered against redelivery */
#define S_PLANS_MAX      10000 /* plans in the table (queued, running, awaiting) */
#define S_PENDING_MAX    256   /* decisions for plans not known before recovery */
#define S_VALIDATORS_MAX 16
#define S_REASON_MAX     8192 /* bytes of one reason we publish */
#define S_RECOVER_RETRY  1000 /* ms between attempts to read the unfinished plans */
#define S_STOP_GRACE_MS  5000 /* after the interruption, for the rollbacks */
#define S_INTERRUPT_SIG  SIGURG

typedef enum {
    S_QUEUED,  /* waiting for a worker slot */
    S_RUNNING, /* a worker thread has it */
    S_AWAITING /* waiting for a person's decision */
} s_phase_t;

typedef struct s_plan s_plan_t;

/* One validator call, on a thread of its own */
typedef struct {
    s_plan_t *plan;
    const char *service;
    kz_msg_t *request;
    char req_id[65];         /* the request's envelope id (request.started, request.cancel) */
    kz_msg_t *reply;         /* or NULL with error */
    kz_bus_call_info_t info; /* re-asks after a lost broker connection */
    char error[512];
    pthread_t thread;
    bool started;
    /* under the router's lock */
    bool done;
    bool seen;          /* the worker thread has looked at the outcome */
    int64_t sent_ms;    /* when the request went to the broker */
    int64_t running_ms; /* when a validator took it (request.started), 0 = queued */
} s_vcall_t;

struct s_plan {
    kz_router_t *router;
    char id[S_ID_MAX + 1];
    char target[256];
    const kz_target_config_t *tcfg; /* NULL only for a recovered plan of an unknown target */
    const kz_fixer_config_t *fixer; /* likewise */
    double risk;                    /* kz_plan_risk of the fixer: never the message's */
    kz_msg_t *msg;                  /* the plan (plan.ready); read-only while running */
    char interrupted[64];           /* recovered: the state it was interrupted in */
    s_phase_t phase;                /* the loop's thread only */
    bool asking;                    /* RUNNING only to ask for approval: takes no execution slot */
    char rejected_by[256];          /* a person rejected it while its worker asked */
    char rejected_why[512];
    pthread_t thread;         /* while RUNNING */
    pthread_mutex_t pub_lock; /* held while the worker publishes */
    bool pub_lock_ready;
    /* under the router's lock */
    bool approved;
    bool stop;             /* interrupt: the orchestrator is stopping */
    bool done;             /* the worker ended; the loop joins it */
    bool abandoned;        /* under pub_lock too: the loop gave up on the worker */
    char state[32];        /* the plan's current state */
    char outcome[16];      /* accepted rejected failed awaiting, "" = dropped */
    char early_error[512]; /* the worker could not even start: the loop fails the plan */
    s_vcall_t *vcalls;
    size_t nvcalls;
    /* its base commit once the worker resolved it (kaizen.plan answers it) */
    char base[KZ_GIT_OID_MAX];
    int64_t state_ms;        /* when it entered its current state (mono) */
    char exec_service[256];  /* the executor call in progress: its service, */
    char exec_id[65];        /* request id, */
    int64_t exec_sent_ms;    /* when it was sent */
    int64_t exec_running_ms; /* and when an executor took it (0 = queued) */
    s_plan_t *next;
};

/* A decision that came before the plan was known (recovery pending) */
typedef struct {
    char id[S_ID_MAX + 1];
    bool approve;
    char by[256];
} s_pending_t;

/* A plan read back from the database at start */
typedef struct s_recovered {
    char id[S_ID_MAX + 1];
    char status[64];
    char target[256];
    char *plan_json; /* implementation_plan, or NULL */
    struct s_recovered *next;
} s_recovered_t;

struct kz_router {
    const kz_config_t *cfg;
    kz_bus_t *bus;
    char id[320];
    pthread_mutex_t lock;
    pthread_cond_t vdone;           /* a validator call ended (under lock) */
    pthread_mutex_t integrate_lock; /* one integration at a time: they move shared refs */
    s_plan_t *head, *tail;
    size_t nplans;
    char (*finals)[S_ID_MAX + 1];
    size_t nfinals, finals_next;
    uint64_t accepted, rejected, failed;
    bool stopping;
    s_pending_t pending[S_PENDING_MAX];
    size_t npending;
    /* recovery */
    pthread_t rec_thread;
    bool rec_started;
    pthread_cond_t rec_wake;
    bool rec_stop;  /* under lock */
    bool rec_done;  /* under lock: rec_list is ready */
    bool rec_taken; /* the loop took rec_list */
    s_recovered_t *rec_list;
};

static void s_on_interrupt(int sig)
{
    (void)sig; /* only interrupts the worker's bus call (EINTR) */
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* snprintf that says nothing about cutting: every text here is bounded
   on purpose */
__attribute__((format(printf, 3, 4))) static void s_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ helpers */

/* A commit id: 7 to 64 lowercase hex digits */
static bool s_hex_ok(const char *text)
{
    size_t n = strspn(text, "0123456789abcdef");
    return text[n] == '\0' && n >= 7 && n <= 64;
}

/* Make TEXT valid UTF-8 in place (bytes of git's stderr, file names):
   every byte that starts no valid sequence becomes '?'; and cut it to
   at most MAX bytes on a character boundary */
static void s_clean(char *text, size_t max)
{
    unsigned char *s = (unsigned char *)text;
    size_t i = 0;
    while (s[i]) {
        size_t n = s[i] < 0x80             ? 1
                   : (s[i] & 0xe0) == 0xc0 ? 2
                   : (s[i] & 0xf0) == 0xe0 ? 3
                   : (s[i] & 0xf8) == 0xf0 ? 4
                                           : 0;
        bool ok = n > 0;
        for (size_t k = 1; ok && k < n; k++)
            ok = (s[i + k] & 0xc0) == 0x80;
        if (ok && n == 2 && s[i] < 0xc2)
            ok = false; /* overlong */
        if (ok && n == 3) {
            unsigned cp = ((s[i] & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && n == 4) {
            unsigned cp = ((s[i] & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) |
                          ((s[i + 2] & 0x3fu) << 6) | (s[i + 3] & 0x3fu);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (!ok) {
            s[i] = '?';
            n = 1;
        }
        if (i + n > max) {
            s[i] = '\0';
            return;
        }
        i += n;
    }
}

/* A number field (integer or float) of MAP, DFLT when absent */
static double s_num(const kz_val_t *map, const char *key, double dflt)
{
    const kz_val_t *v = kz_map_get(map, key);
    if (!v)
        return dflt;
    switch (v->type) {
    case KZ_VAL_INT:
        return (double)v->u.i;
    case KZ_VAL_UINT:
        return (double)v->u.u;
    case KZ_VAL_FLOAT:
        return v->u.f;
    default:
        return dflt;
    }
}

/* Append "SEP TEXT" to BUF (LEN bytes), cut to fit */
static void s_append(char *buf, size_t len, const char *sep, const char *text)
{
    size_t used = strlen(buf);
    if (used + 1 >= len)
        return;
    s_fmt(buf + used, len - used, "%s%s", used > 0 ? sep : "", text);
}

/* ----------------------------------------------------------- messages */

/* A message of TYPE about plan P (target and corr of the plan) */
static kz_msg_t *s_plan_msg(const char *type, const char *plan_id, const char *target,
                            const char *corr)
{
    kz_msg_t *msg = kz_msg_new(type);
    if (!msg)
        return NULL;
    if (kz_map_put_str(msg, kz_msg_body(msg), "plan_id", plan_id) != 0 ||
        (target && *target && kz_msg_set_target(msg, target) != 0) ||
        (corr && *corr && kz_msg_set_corr(msg, corr) != 0))
        kz_msg_destroy(&msg);
    return msg;
}

/* Publish MSG on BUS, logging a failure */
static int s_send(kz_bus_t *bus, kz_msg_t **msg_p, const char *what)
{
    if (!*msg_p) {
        kz_error("unable to build %s: out of memory", what);
        return -1;
    }
    if (kz_bus_publish(bus, msg_p) != 0) {
        kz_error("unable to publish %s", what);
        return -1;
    }
    return 0;
}

/* plan.failed {plan_id, state, reason, cause} on BUS. CAUSE says whose
   the failure is (PROTOCOL.md 4.15): only "fixer" counts against the
   fixer's learned rate; the machinery's causes never do. */
static void s_publish_failed(kz_bus_t *bus, const char *plan_id, const char *target,
                             const char *corr, const char *state, const char *reason,
                             const char *cause)
{
    char text[S_REASON_MAX];
    s_fmt(text, sizeof text, "%s", reason);
    s_clean(text, sizeof text - 1);
    kz_msg_t *msg = s_plan_msg("plan.failed", plan_id, target, corr);
    if (msg && (kz_map_put_str(msg, kz_msg_body(msg), "state", state) != 0 ||
                kz_map_put_str(msg, kz_msg_body(msg), "reason", text) != 0 ||
                kz_map_put_str(msg, kz_msg_body(msg), "cause", cause) != 0))
        kz_msg_destroy(&msg);
    s_send(bus, &msg, "plan.failed");
}

/* The cause of an "error" reply CODE from the broker or a worker's
   runtime (PROTOCOL.md 1.3, 4.18) to a call of an executor (EXEC) or a
   validator */
static const char *s_error_cause(const char *code, bool exec)
{
    if (!code)
        return "error";
    if (strcmp(code, "expired") == 0 || strcmp(code, "queue_full") == 0)
        return "timeout";
    if (strcmp(code, "no_worker") == 0)
        return exec ? "no_executor" : "no_validator";
    if (strcmp(code, "cancelled") == 0)
        return "interrupted";
    return "error";
}

/* ------------------------------------------------------------- finals */

static bool s_is_final(const kz_router_t *self, const char *id)
{
    for (size_t i = 0; i < self->nfinals; i++)
        if (strcmp(self->finals[i], id) == 0)
            return true;
    return false;
}

static void s_add_final(kz_router_t *self, const char *id)
{
    s_fmt(self->finals[self->finals_next], S_ID_MAX + 1, "%s", id);
    self->finals_next = (self->finals_next + 1) % S_FINALS;
    if (self->nfinals < S_FINALS)
        self->nfinals++;
}

static void s_count(kz_router_t *self, const char *outcome)
{
    pthread_mutex_lock(&self->lock);
    if (strcmp(outcome, "accepted") == 0)
        self->accepted++;
    else if (strcmp(outcome, "rejected") == 0)
        self->rejected++;
    else if (strcmp(outcome, "failed") == 0)
        self->failed++;
    pthread_mutex_unlock(&self->lock);
}

/* -------------------------------------------------------------- table */

static s_plan_t *s_find(kz_router_t *self, const char *id)
{
    for (s_plan_t *p = self->head; p; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p;
    return NULL;
}

static void s_plan_free(s_plan_t **p_p)
{
    s_plan_t *p = *p_p;
    if (!p)
        return;
    kz_msg_destroy(&p->msg);
    if (p->pub_lock_ready)
        pthread_mutex_destroy(&p->pub_lock);
    free(p);
    *p_p = NULL;
}

/* Unlink P from the table and free it */
static void s_remove(kz_router_t *self, s_plan_t *p)
{
    pthread_mutex_lock(&self->lock);
    s_plan_t **at = &self->head, *prev = NULL;
    while (*at && *at != p) {
        prev = *at;
        at = &(*at)->next;
    }
    if (*at) {
        *at = p->next;
        if (self->tail == p)
            self->tail = prev;
        self->nplans--;
    }
    pthread_mutex_unlock(&self->lock);
    s_plan_free(&p);
}

static void s_append_plan(kz_router_t *self, s_plan_t *p)
{
    pthread_mutex_lock(&self->lock);
    p->next = NULL;
    if (self->tail)
        self->tail->next = p;
    else
        self->head = p;
    self->tail = p;
    self->nplans++;
    pthread_mutex_unlock(&self->lock);
}

static void s_set_state(s_plan_t *p, const char *state)
{
    pthread_mutex_lock(&p->router->lock);
    s_fmt(p->state, sizeof p->state, "%s", state);
    p->state_ms = s_mono_ms();
    pthread_mutex_unlock(&p->router->lock);
}

/* ======================================================= worker thread */

/* Everything a worker needs besides the plan */
typedef struct {
    s_plan_t *p;
    kz_router_t *r;
    kz_bus_t *bus;
    const kz_val_t *body; /* the plan */
    char repo[4096];      /* the target's path */
    char base[KZ_GIT_OID_MAX];
    char commit[KZ_GIT_OID_MAX];
    char branch[S_ID_MAX + 32];
    char wt[4096]; /* STATE/worktrees/<target>/plan-<id> */
    const char *corr;
    bool touched; /* the executor may have made a branch or worktree: roll back */
} s_work_t;

static bool s_stopping(s_plan_t *p)
{
    pthread_mutex_lock(&p->router->lock);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->router->lock);
    return stop;
}

/* Publish MSG for the plan unless the loop abandoned it */
static int s_emit(s_work_t *w, kz_msg_t **msg_p, const char *what)
{
    pthread_mutex_lock(&w->p->pub_lock);
    int rc = -1;
    if (w->p->abandoned)
        kz_msg_destroy(msg_p);
    else
        rc = s_send(w->bus, msg_p, what);
    /* handed over (docs/durability.md) before the plan goes on: a
       plan.state executing must not die with this process in the
       socket's buffer while the executor runs. Bounded (200 ms while the
       broker is away); the outbox keeps what is not confirmed */
    if (rc == 0)
        kz_bus_flush_step(w->bus, 2000);
    pthread_mutex_unlock(&w->p->pub_lock);
    return rc;
}

/* plan.state STATE with REASON (and DETAILS copied when given) */
static void s_state(s_work_t *w, const char *state, const char *reason, const kz_val_t *details)
{
    const char *from = w->p->state;
    kz_info("plan %s: %s -> %s: %s", w->p->id, from, state, reason);
    char text[S_REASON_MAX];
    s_fmt(text, sizeof text, "%s", reason);
    s_clean(text, sizeof text - 1);
    kz_msg_t *msg = s_plan_msg("plan.state", w->p->id, w->p->target, w->corr);
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "state", state);
        rc |= kz_map_put_str(msg, b, "reason", text);
        if (details) {
            kz_val_t *d = kz_map_put(msg, b, "details");
            rc |= !d || kz_val_copy(msg, d, details) != 0;
        }
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    s_emit(w, &msg, "plan.state");
    s_set_state(w->p, state);
}

static void s_outcome(s_work_t *w, const char *outcome)
{
    pthread_mutex_lock(&w->r->lock);
    s_fmt(w->p->outcome, sizeof w->p->outcome, "%s", outcome);
    pthread_mutex_unlock(&w->r->lock);
}

/* Delete the plan's worktree and (unless KEEP_BRANCH) its branch */
static void s_rollback(s_work_t *w, bool keep_branch)
{
    if (!w->p->tcfg || !w->touched)
        return;
    char err[1024];
    if (kz_git_worktree_remove(w->repo, w->wt, err, sizeof err) != 0)
        kz_warn("plan %s: unable to remove worktree '%s': %s", w->p->id, w->wt, err);
    if (!keep_branch && kz_git_branch_delete(w->repo, w->branch, err, sizeof err) != 0)
        kz_warn("plan %s: unable to delete branch '%s': %s", w->p->id, w->branch, err);
    else if (!keep_branch)
        kz_info("plan %s: rolled back (worktree and branch '%s' deleted)", w->p->id, w->branch);
}

/* plan.failed in STATE with REASON and CAUSE, then the rollback */
static void s_fail(s_work_t *w, const char *state, const char *reason, const char *cause)
{
    kz_info("plan %s: %s -> failed (%s): %s", w->p->id, state, cause, reason);
    pthread_mutex_lock(&w->p->pub_lock);
    if (!w->p->abandoned)
        s_publish_failed(w->bus, w->p->id, w->p->target, w->corr, state, reason, cause);
    pthread_mutex_unlock(&w->p->pub_lock);
    s_set_state(w->p, "failed");
    s_outcome(w, "failed");
    s_rollback(w, false);
}

/* plan.rejected in STATE with REASON and REASONS (may be NULL), cause
   "change" (a validator judged the change), then the rollback */
static void s_reject(s_work_t *w, const char *state, const char *reason, char **reasons,
                     size_t nreasons)
{
    kz_info("plan %s: %s -> rejected: %s", w->p->id, state, reason);
    char text[S_REASON_MAX];
    s_fmt(text, sizeof text, "%s", reason);
    s_clean(text, sizeof text - 1);
    kz_msg_t *msg = s_plan_msg("plan.rejected", w->p->id, w->p->target, w->corr);
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "state", state);
        rc |= kz_map_put_str(msg, b, "reason", text);
        rc |= kz_map_put_str(msg, b, "cause", "change");
        if (reasons && nreasons > 0) {
            kz_val_t *a = kz_map_put_array(msg, b, "reasons");
            for (size_t i = 0; a && i < nreasons; i++)
                rc |= kz_val_set_str(msg, kz_array_push(msg, a), reasons[i]);
            rc |= !a;
        }
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    s_emit(w, &msg, "plan.rejected");
    s_set_state(w->p, "rejected");
    s_outcome(w, "rejected");
    s_rollback(w, false);
}

/* Republish a service's reply REPLY (exec.result, validate.result) as an
   event, so the recorder keeps it; REPLY stays the caller's. INFO (NULL:
   asked once) says how the call went: after re-asks (a broker restart,
   PROTOCOL.md 1.3) the copy's body says which ask it answers
   ("attempt") and whether it is the kept answer to an earlier ask, with
   no second run ("replayed"), so executions and validations show it. */
static void s_republish(s_work_t *w, const kz_msg_t *reply, const kz_bus_call_info_t *info)
{
    kz_msg_t *copy = kz_msg_new(kz_msg_type(reply));
    if (copy) {
        const char *corr = kz_msg_corr(reply);
        const char *target = kz_msg_target(reply);
        kz_val_t *b = kz_msg_body(copy);
        if (kz_msg_set_id(copy, kz_msg_id(reply)) != 0 ||
            kz_msg_set_src(copy, kz_msg_src(reply)) != 0 ||
            (corr && kz_msg_set_corr(copy, corr) != 0) ||
            kz_msg_set_target(copy, target && *target ? target : w->p->target) != 0 ||
            kz_val_copy(copy, b, kz_msg_body_const(reply)) != 0 ||
            (info && info->asks > 1 &&
             (kz_map_put_int(copy, b, "attempt", info->asks) != 0 ||
              kz_map_put_bool(copy, b, "replayed", info->answered < info->asks) != 0)))
            kz_msg_destroy(&copy);
        else
            kz_msg_set_ts(copy, kz_msg_ts(reply));
    }
    s_emit(w, &copy, kz_msg_type(reply));
}

/* Why a service's reply is not what we asked for: an "error" reply, a
   wrong type or another plan's. NULL when it is a TYPE about our plan. */
static const char *s_bad_reply(const kz_msg_t *reply, const char *type, const char *plan_id,
                               char *buf, size_t len)
{
    const kz_val_t *b = kz_msg_body_const(reply);
    if (strcmp(kz_msg_type(reply), "error") == 0) {
        const char *code = kz_map_str(b, "code"), *text = kz_map_str(b, "message");
        s_fmt(buf, len, "answered with an error: %s: %s", code ? code : "?", text ? text : "");
        return buf;
    }
    if (strcmp(kz_msg_type(reply), type) != 0) {
        s_fmt(buf, len, "answered with '%s', not '%s'", kz_msg_type(reply), type);
        return buf;
    }
    const char *pid = kz_map_str(b, "plan_id");
    if (!pid || strcmp(pid, plan_id) != 0) {
        s_fmt(buf, len, "answered about plan '%s', not this one", pid ? pid : "?");
        return buf;
    }
    return NULL;
}

/* Copy the string array KEY of FROM into TO's map M as KEY; 0 / -1 */
static int s_copy_strs(kz_msg_t *msg, kz_val_t *m, const char *key, const kz_val_t *from)
{
    const kz_val_t *a = kz_map_get(from, key);
    if (!a || a->type != KZ_VAL_ARRAY)
        return 0;
    kz_val_t *slot = kz_map_put(msg, m, key);
    return !slot || kz_val_copy(msg, slot, a) != 0 ? -1 : 0;
}

static void *s_vcall_main(void *arg)
{
    s_vcall_t *v = arg;
    kz_router_t *r = v->plan->router;
    kz_log_set_corr(v->plan->id);
    char err[512];
    kz_bus_t *bus = kz_bus_new(&r->cfg->bus, r->id, err, sizeof err);
    if (!bus) {
        s_fmt(v->error, sizeof v->error, "unable to connect to the bus: %s", err);
        kz_msg_destroy(&v->request);
    } else {
        const kz_policy_config_t *pol = &r->cfg->policy;
        v->reply = kz_bus_call(bus, v->service, &v->request, pol->validate_timeout_ms, pol->retries,
                               err, sizeof err);
        v->info = *kz_bus_call_info(bus);
        if (!v->reply)
            s_fmt(v->error, sizeof v->error, "%s", err);
        kz_bus_destroy(&bus);
    }
    pthread_mutex_lock(&r->lock);
    v->done = true;
    pthread_cond_broadcast(&r->vdone);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Start a thread with every signal blocked but the interruption */
static int s_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t set, saved;
    sigfillset(&set);
    sigdelset(&set, S_INTERRUPT_SIG);
    pthread_sigmask(SIG_SETMASK, &set, &saved);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return rc;
}

/* Integrate the plan's commit (policy.apply). 0 with INTO and OID, or
   -1 with ERR */
static int s_integrate(s_work_t *w, char *into, size_t into_len, char oid[KZ_GIT_OID_MAX],
                       char *err, size_t errlen)
{
    const kz_config_t *cfg = w->r->cfg;
    const kz_policy_config_t *pol = &cfg->policy;
    const char *ib = pol->integration_branch ? pol->integration_branch : "kaizen/improvements";
    pthread_mutex_lock(&w->r->integrate_lock);
    int rc = -1;
    if (pol->apply && strcmp(pol->apply, "merge") == 0) {
        const char *branch = w->p->tcfg->branch ? w->p->tcfg->branch : "main";
        char why[1024];
        if (kz_git_fast_forward(w->repo, branch, w->commit, why, sizeof why) == 0) {
            s_fmt(into, into_len, "%s", branch);
            s_fmt(oid, KZ_GIT_OID_MAX, "%s", w->commit);
            rc = 0;
            goto done;
        }
        kz_info("plan %s: policy.apply merge: cannot fast-forward '%s' (%s); adding the commit "
                "to '%s' instead",
                w->p->id, branch, why, ib);
    }
    char tmp[4096], rel[600];
    s_fmt(rel, sizeof rel, "worktrees/%s", w->p->target);
    if (kz_state_path(cfg, rel, tmp, sizeof tmp) != 0) {
        s_fmt(err, errlen, "state directory path too long");
        goto done;
    }
    (void)kz_mkdirs(tmp, 0711, err, errlen); /* a failure shows in the cherry-pick's error */
    if (kz_git_cherry_pick_onto(w->repo, ib, w->base, w->commit, tmp, oid, err, errlen) != 0)
        goto done;
    s_fmt(into, into_len, "%s", ib);
    rc = 0;
done:
    pthread_mutex_unlock(&w->r->integrate_lock);
    return rc;
}

/* What one validator said, taken as its call ends */
typedef struct {
    char rejected[S_REASON_MAX]; /* "validator: reason; ..." of the rejections */
    char failed[S_REASON_MAX];   /* likewise of the errors and lost calls */
    char *reasons[256];          /* each rejection reason, for plan.rejected.reasons */
    size_t nreasons;
    const char *cause;        /* of the failures: the most telling one */
    char suite[S_REASON_MAX]; /* a "tests cannot run at base" reason, verbatim */
} s_verdict_t;

/* Rank of a failure cause: the one that tells most wins ("suite" says
   exactly why nothing can be validated; "interrupted" least) */
static int s_cause_rank(const char *cause)
{
    static const char *const order[] = {"suite",    "no_validator", "timeout",
                                        "no_reply", "error",        "interrupted"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (cause && strcmp(cause, order[i]) == 0)
            return (int)i;
    return (int)(sizeof order / sizeof order[0]);
}

static void s_verdict_cause(s_verdict_t *vd, const char *cause)
{
    if (!vd->cause || s_cause_rank(cause) < s_cause_rank(vd->cause))
        vd->cause = cause;
}

/* Take the outcome of call V into VD (the loop's side: republishes the
   reply so the recorder and run-once see it at once). True when V
   rejected the change. */
static bool s_take_vcall(s_work_t *w, s_vcall_t *v, s_verdict_t *vd)
{
    char line[S_REASON_MAX], why[512];
    if (!v->reply) {
        s_fmt(line, sizeof line, "%s: %s", v->service, v->error);
        s_append(vd->failed, sizeof vd->failed, "; ", line);
        /* a call is interrupted only once the plan is decided or the
           orchestrator stops: those ends do not come from this cause */
        s_verdict_cause(vd, "no_reply");
        return false;
    }
    const char *bad = s_bad_reply(v->reply, "validate.result", w->p->id, why, sizeof why);
    const char *corr = kz_msg_corr(v->reply);
    const char *rcommit = kz_map_str(kz_msg_body_const(v->reply), "commit");
    if (!bad && (!corr || strcmp(corr, v->req_id) != 0)) {
        /* kz_bus_call drops a reply to another request or from another
           service already; this says so again where the verdict is taken */
        s_fmt(why, sizeof why, "answered another request (corr '%.64s', not %s)", corr ? corr : "",
              v->req_id);
        bad = why;
    } else if (!bad && (!rcommit || strcmp(rcommit, w->commit) != 0)) {
        s_fmt(why, sizeof why, "answered about commit '%.64s', not %.12s", rcommit ? rcommit : "?",
              w->commit);
        bad = why;
    }
    if (bad) {
        s_fmt(line, sizeof line, "%s %s", v->service, bad);
        s_append(vd->failed, sizeof vd->failed, "; ", line);
        const char *type = kz_msg_type(v->reply);
        s_verdict_cause(vd,
                        strcmp(type, "error") == 0
                            ? s_error_cause(kz_map_str(kz_msg_body_const(v->reply), "code"), false)
                            : "error");
        return false;
    }
    s_republish(w, v->reply, &v->info);
    const kz_val_t *b = kz_msg_body_const(v->reply);
    const char *verdict = kz_map_str(b, "verdict");
    const char *who = kz_map_str(b, "validator");
    const char *cause = kz_map_str(b, "cause");
    const kz_val_t *rs = kz_map_get(b, "reasons");
    bool reject = verdict && strcmp(verdict, "reject") == 0;
    char all[S_REASON_MAX] = "";
    for (uint32_t k = 0; rs && rs->type == KZ_VAL_ARRAY && k < rs->u.arr.count; k++) {
        const kz_val_t *e = &rs->u.arr.items[k];
        if (e->type != KZ_VAL_STR)
            continue;
        s_append(all, sizeof all, "; ", e->u.str.ptr);
        if (reject && vd->nreasons < sizeof vd->reasons / sizeof vd->reasons[0]) {
            char one[S_REASON_MAX];
            s_fmt(one, sizeof one, "%s: %s", who ? who : v->service, e->u.str.ptr);
            s_clean(one, sizeof one - 1);
            vd->reasons[vd->nreasons] = strdup(one);
            if (vd->reasons[vd->nreasons])
                vd->nreasons++;
        }
    }
    if (verdict && strcmp(verdict, "pass") == 0) {
        kz_info("plan %s: %s passed", w->p->id, who ? who : v->service);
        return false;
    }
    s_fmt(line, sizeof line, "%s: %s", who ? who : v->service, all[0] ? all : "no reason given");
    if (reject) {
        s_append(vd->rejected, sizeof vd->rejected, "; ", line);
        return true;
    }
    s_append(vd->failed, sizeof vd->failed, "; ", line);
    if (cause && strcmp(cause, "suite") == 0) {
        /* the test suite cannot run at the base: nothing can be validated
           there, whatever the change; the validator's reason says why */
        if (!vd->suite[0])
            s_fmt(vd->suite, sizeof vd->suite, "%s", all[0] ? all : "tests cannot run at base");
        s_verdict_cause(vd, "suite");
    } else
        s_verdict_cause(vd, "error");
    return false;
}

/* Stop the validator calls still running after the plan was decided:
   request.cancel for each (the broker drops a queued one, the worker
   holding one kills its work), then their threads are interrupted until
   they end. Under no lock. */
static void s_cancel_vcalls(s_work_t *w, s_vcall_t *calls, size_t n, const char *why)
{
    kz_router_t *r = w->r;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&r->lock);
        bool pending = calls[i].started && !calls[i].done;
        pthread_mutex_unlock(&r->lock);
        if (!pending || !calls[i].req_id[0])
            continue;
        kz_info("plan %s: cancelling %s (%s)", w->p->id, calls[i].service, why);
        pthread_mutex_lock(&w->p->pub_lock);
        if (kz_bus_cancel(w->bus, calls[i].service, calls[i].req_id, why) != 0)
            kz_warn("plan %s: unable to publish request.cancel for %s", w->p->id, calls[i].service);
        pthread_mutex_unlock(&w->p->pub_lock);
    }
    /* the signal can fall between two of the call's polls: repeat it */
    for (;;) {
        bool any = false;
        pthread_mutex_lock(&r->lock);
        for (size_t i = 0; i < n; i++)
            if (calls[i].started && !calls[i].done) {
                any = true;
                pthread_kill(calls[i].thread, S_INTERRUPT_SIG);
            }
        pthread_mutex_unlock(&r->lock);
        if (!any)
            return;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Validation: every policy.validators service in parallel; the plan is
   decided as soon as one rejects it (the others are cancelled) or all
   have answered; then the verdict, the integration and the final event */
static void s_validate(s_work_t *w, char **files, size_t nfiles)
{
    const kz_policy_config_t *pol = &w->r->cfg->policy;
    size_t n = pol->validators_count < S_VALIDATORS_MAX ? pol->validators_count : S_VALIDATORS_MAX;
    char names[2048] = "";
    for (size_t i = 0; i < n; i++)
        s_append(names, sizeof names, ", ", pol->validators[i]);
    s_state(w, "validating", n ? names : "no validators configured (policy.validators)", NULL);
    if (s_stopping(w->p)) {
        s_fail(w, "validating", "interrupted: orchestrator stopping", "interrupted");
        return;
    }

    s_vcall_t *calls = calloc(n ? n : 1, sizeof *calls);
    if (!calls) {
        s_fail(w, "validating", "out of memory", "error");
        return;
    }
    const char *tool = kz_map_str(w->body, "tool");
    for (size_t i = 0; i < n; i++) {
        s_vcall_t *v = &calls[i];
        v->plan = w->p;
        v->service = pol->validators[i];
        kz_msg_t *req = s_plan_msg("validate.request", w->p->id, w->p->target, NULL);
        if (req) {
            kz_val_t *b = kz_msg_body(req);
            int rc = kz_map_put_str(req, b, "commit", w->commit);
            rc |= kz_map_put_str(req, b, "base_commit", w->base);
            kz_val_t *fa = kz_map_put_array(req, b, "files");
            for (size_t k = 0; fa && k < nfiles; k++)
                rc |= kz_val_set_str(req, kz_array_push(req, fa), files[k]);
            rc |= !fa;
            rc |= kz_map_put_str(req, b, "fixer", w->p->fixer->name);
            if (tool)
                rc |= kz_map_put_str(req, b, "tool", tool);
            rc |= s_copy_strs(req, b, "findings", w->body);
            if (rc != 0)
                kz_msg_destroy(&req);
        }
        if (!req) {
            s_fmt(v->error, sizeof v->error, "out of memory");
            v->done = true;
            continue;
        }
        s_fmt(v->req_id, sizeof v->req_id, "%s", kz_msg_id(req));
        v->request = req;
    }
    /* the threads are started under the lock: the loop only signals
       threads that are started and not done */
    pthread_mutex_lock(&w->r->lock);
    w->p->vcalls = calls;
    w->p->nvcalls = n;
    for (size_t i = 0; i < n; i++) {
        s_vcall_t *v = &calls[i];
        if (v->done)
            continue;
        v->sent_ms = s_mono_ms();
        int rc = s_thread(&v->thread, s_vcall_main, v);
        if (rc != 0) {
            s_fmt(v->error, sizeof v->error, "unable to start a thread: %s", strerror(rc));
            kz_msg_destroy(&v->request);
            v->done = true;
        } else
            v->started = true;
    }
    pthread_mutex_unlock(&w->r->lock);

    /* take each outcome as it comes; a rejection decides the plan */
    s_verdict_t vd;
    memset(&vd, 0, sizeof vd);
    bool rejected = false;
    for (;;) {
        pthread_mutex_lock(&w->r->lock);
        s_vcall_t *ready = NULL;
        size_t open = 0;
        for (size_t i = 0; i < n; i++) {
            if (!calls[i].done)
                open++;
            else if (!calls[i].seen && !ready)
                ready = &calls[i];
        }
        if (ready)
            ready->seen = true;
        else if (open > 0 && !w->p->stop) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += 200 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->r->vdone, &w->r->lock, &until);
        }
        bool stop = w->p->stop;
        pthread_mutex_unlock(&w->r->lock);
        if (ready) {
            if (s_take_vcall(w, ready, &vd))
                rejected = true;
            if (rejected)
                break;
            continue;
        }
        if (open == 0 || stop)
            break;
    }
    if (rejected) {
        char why[S_REASON_MAX];
        s_fmt(why, sizeof why, "plan %s was rejected: %s", w->p->id, vd.rejected);
        s_cancel_vcalls(w, calls, n, why);
    } else if (s_stopping(w->p))
        s_cancel_vcalls(w, calls, n, "the orchestrator is stopping");
    for (size_t i = 0; i < n; i++)
        if (calls[i].started)
            pthread_join(calls[i].thread, NULL);
    pthread_mutex_lock(&w->r->lock);
    w->p->vcalls = NULL;
    w->p->nvcalls = 0;
    pthread_mutex_unlock(&w->r->lock);
    /* the replies that came while the others were cancelled are kept too */
    for (size_t i = 0; i < n; i++)
        if (!calls[i].seen && calls[i].reply &&
            strcmp(kz_msg_type(calls[i].reply), "validate.result") == 0)
            s_republish(w, calls[i].reply, &calls[i].info);
    for (size_t i = 0; i < n; i++) {
        kz_msg_destroy(&calls[i].request);
        kz_msg_destroy(&calls[i].reply);
    }
    free(calls);

    /* a reject is a verdict on the change: it wins over another
       validator's error */
    if (rejected)
        s_reject(w, "validating", vd.rejected, vd.reasons, vd.nreasons);
    else if (s_stopping(w->p))
        s_fail(w, "validating", "interrupted: orchestrator stopping", "interrupted");
    else if (vd.failed[0]) /* "tests cannot run at base: ..." says it all when it is so */
        s_fail(w, "validating", vd.suite[0] ? vd.suite : vd.failed, vd.cause ? vd.cause : "error");
    for (size_t i = 0; i < vd.nreasons; i++)
        free(vd.reasons[i]);
    if (rejected || vd.failed[0] || s_stopping(w->p))
        return;

    char into[256], oid[KZ_GIT_OID_MAX], err[1024];
    if (s_integrate(w, into, sizeof into, oid, err, sizeof err) != 0) {
        char reason[S_REASON_MAX];
        s_fmt(reason, sizeof reason, "unable to integrate commit %.12s: %s", w->commit, err);
        s_fail(w, "integrating", reason, "conflict");
        return;
    }
    kz_info("plan %s: validating -> accepted: commit %.12s on '%s', integrated into '%s' as %.12s",
            w->p->id, w->commit, w->branch, into, oid);
    kz_msg_t *msg = s_plan_msg("plan.accepted", w->p->id, w->p->target, w->corr);
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        int rc = kz_map_put_str(msg, b, "commit", w->commit);
        rc |= kz_map_put_str(msg, b, "branch", w->branch);
        rc |= kz_map_put_str(msg, b, "integrated", into);
        rc |= kz_map_put_str(msg, b, "integrated_commit", oid);
        if (rc != 0)
            kz_msg_destroy(&msg);
    }
    s_emit(w, &msg, "plan.accepted");
    s_set_state(w->p, "accepted");
    s_outcome(w, "accepted");
    s_rollback(w, true);
}

/* Keep the plan's commit under refs/kaizen/plans/<id>: `kaizen plans
   show` shows its diff and message after the branch is gone with a
   rejection or a failure, and `git branch` does not list it */
static void s_keep(s_work_t *w)
{
    char ref[S_ID_MAX + 32], err[1024];
    s_fmt(ref, sizeof ref, "refs/kaizen/plans/%s", w->p->id);
    if (kz_git_keep(w->repo, ref, w->commit, err, sizeof err) != 0)
        kz_warn("plan %s: unable to keep commit %.12s as '%s': %s; its diff goes with its branch",
                w->p->id, w->commit, ref, err);
}

/* The exec.request to SERVICE was re-asked (INFO): one exec.result
   {status "lost", attempt K} per ask whose reply was lost with a broker
   restart, so executions lists every attempt; the reply's row says
   whether the executor ran again or answered from its memory
   ("replayed", s_republish) */
static void s_lost_asks(s_work_t *w, const char *service, const kz_bus_call_info_t *info)
{
    for (int k = 1; k < info->asks; k++) {
        char error[256];
        s_fmt(error, sizeof error,
              "no reply to attempt %d: the connection to the broker dropped (a broker restart); "
              "%s was asked again as attempt %d",
              k, service, k + 1);
        kz_msg_t *msg = s_plan_msg("exec.result", w->p->id, w->p->target, NULL);
        if (msg) {
            kz_val_t *b = kz_msg_body(msg);
            if (kz_map_put_str(msg, b, "status", "lost") != 0 ||
                kz_map_put_str(msg, b, "error", error) != 0 ||
                kz_map_put_int(msg, b, "attempt", k) != 0)
                kz_msg_destroy(&msg);
        }
        s_emit(w, &msg, "exec.result");
    }
}

/* A plan an orchestrator that died left validating may have been
   integrated already: it died between the integration and plan.accepted.
   The integration's commit carries the trailer "Kaizen-Plan: <id>"
   (kz_commitmsg): when the integration branch (policy.apply merge: the
   target's branch too) holds one, the plan is accepted, as it was. True
   when it was */
static bool s_recover_integrated(s_work_t *w)
{
    const kz_policy_config_t *pol = &w->r->cfg->policy;
    const char *refs[2] = {
        pol->integration_branch ? pol->integration_branch : "kaizen/improvements", NULL};
    if (pol->apply && strcmp(pol->apply, "merge") == 0)
        refs[1] = w->p->tcfg->branch ? w->p->tcfg->branch : "main";
    char grep[S_ID_MAX + 64], ref[600], err[512];
    s_fmt(grep, sizeof grep, "--grep=^Kaizen-Plan: %s$", w->p->id);
    for (int i = 0; i < 2 && refs[i]; i++) {
        s_fmt(ref, sizeof ref, "refs/heads/%s", refs[i]);
        const char *args[] = {"log", "-n", "1", "--format=%H", grep, ref, "--", NULL};
        char *out = NULL;
        if (kz_git(w->repo, args, 0, &out, err, sizeof err) != 0 || !out || !out[0]) {
            free(out);
            continue;
        }
        char oid[KZ_GIT_OID_MAX];
        s_fmt(oid, sizeof oid, "%.*s", (int)strcspn(out, "\n"), out);
        free(out);
        /* the plan's own commit, kept under refs/kaizen/plans/<id> */
        char kept[600], commit[KZ_GIT_OID_MAX];
        s_fmt(kept, sizeof kept, "refs/kaizen/plans/%s", w->p->id);
        if (kz_git_rev(w->repo, kept, commit, err, sizeof err) != 0)
            s_fmt(commit, sizeof commit, "%s", oid);
        kz_info("plan %s: %s -> accepted: the orchestrator died after integrating it into '%s' "
                "as %.12s",
                w->p->id, w->p->interrupted, refs[i], oid);
        kz_msg_t *msg = s_plan_msg("plan.accepted", w->p->id, w->p->target, w->corr);
        if (msg) {
            kz_val_t *b = kz_msg_body(msg);
            int rc = kz_map_put_str(msg, b, "commit", commit);
            rc |= kz_map_put_str(msg, b, "branch", w->branch);
            rc |= kz_map_put_str(msg, b, "integrated", refs[i]);
            rc |= kz_map_put_str(msg, b, "integrated_commit", oid);
            rc |= kz_map_put_str(msg, b, "recovered",
                                 "the orchestrator died between the integration and this event");
            if (rc != 0)
                kz_msg_destroy(&msg);
        }
        s_emit(w, &msg, "plan.accepted");
        s_set_state(w->p, "accepted");
        s_outcome(w, "accepted");
        s_rollback(w, true);
        return true;
    }
    return false;
}

/* The executor's reply counts RUNS of this plan on its host: each earlier
   one died before answering (its process was killed, the broker gave the
   request to a worker again). Each is recorded as lost, so executions
   lists every run */
static void s_lost_runs(s_work_t *w, const kz_msg_t *reply)
{
    int64_t runs = kz_map_int(kz_msg_body_const(reply), "runs", 1);
    for (int64_t k = 1; k < runs && k < 100; k++) {
        char error[256];
        s_fmt(error, sizeof error,
              "run %d of %d on the executor died before it answered (its process was killed); "
              "the request was run again",
              (int)k, (int)runs);
        kz_msg_t *msg = s_plan_msg("exec.result", w->p->id, w->p->target, NULL);
        if (msg) {
            kz_val_t *b = kz_msg_body(msg);
            if (kz_map_put_str(msg, b, "status", "lost") != 0 ||
                kz_map_put_str(msg, b, "error", error) != 0)
                kz_msg_destroy(&msg);
        }
        s_emit(w, &msg, "exec.result");
    }
}

/* A plan an orchestrator that died left executing: the executor may have
   run (its reply went to the dead router), so the attempt is recorded as
   lost - executions never hides a run */
static void s_lost_interrupted(s_work_t *w)
{
    kz_msg_t *msg = s_plan_msg("exec.result", w->p->id, w->p->target, NULL);
    if (msg) {
        kz_val_t *b = kz_msg_body(msg);
        if (kz_map_put_str(msg, b, "status", "lost") != 0 ||
            kz_map_put_str(msg, b, "error",
                           "no reply: the orchestrator died while the plan was executing; the "
                           "executor may have run (its reply had nobody to go to)") != 0)
            kz_msg_destroy(&msg);
    }
    s_emit(w, &msg, "exec.result");
}

/* Execution: the fixer's service, then validation */
static void s_execute(s_work_t *w)
{
    const kz_config_t *cfg = w->r->cfg;
    const kz_fixer_config_t *fx = w->p->fixer;
    const char *service = fx->service && *fx->service ? fx->service : "exec.refactor";
    const kz_val_t *files = kz_map_get(w->body, "files");
    char reason[S_REASON_MAX];
    s_fmt(reason, sizeof reason, "calling %s: fixer %s on %u file%s at %.12s", service, fx->name,
          files ? files->u.arr.count : 0, files && files->u.arr.count == 1 ? "" : "s", w->base);
    s_state(w, "executing", reason, NULL);
    w->touched = true;

    kz_msg_t *req = s_plan_msg("exec.request", w->p->id, w->p->target, NULL);
    if (req) {
        kz_val_t *b = kz_msg_body(req);
        int rc = kz_map_put_str(req, b, "fixer", fx->name);
        rc |= s_copy_strs(req, b, "files", w->body);
        rc |= kz_map_put_str(req, b, "base_commit", w->base);
        rc |= kz_map_put_str(req, b, "branch", w->branch);
        /* the refactorer lists them in the commit message */
        rc |= s_copy_strs(req, b, "findings", w->body);
        rc |= s_copy_strs(req, b, "finding_details", w->body);
        if (rc != 0)
            kz_msg_destroy(&req);
    }
    if (!req) {
        s_fail(w, "executing", "out of memory", "error");
        return;
    }
    /* kaizen status and run-once tell a call that waits in the broker's
       queue from one an executor works on (request.started) */
    pthread_mutex_lock(&w->r->lock);
    s_fmt(w->p->exec_service, sizeof w->p->exec_service, "%s", service);
    s_fmt(w->p->exec_id, sizeof w->p->exec_id, "%s", kz_msg_id(req));
    w->p->exec_sent_ms = s_mono_ms();
    w->p->exec_running_ms = 0;
    pthread_mutex_unlock(&w->r->lock);
    char err[1024], why[512];
    kz_msg_t *reply = kz_bus_call(w->bus, service, &req, cfg->policy.exec_timeout_ms,
                                  cfg->policy.retries, err, sizeof err);
    const kz_bus_call_info_t info = *kz_bus_call_info(w->bus);
    s_lost_asks(w, service, &info);
    pthread_mutex_lock(&w->r->lock);
    w->p->exec_id[0] = '\0';
    pthread_mutex_unlock(&w->r->lock);
    if (!reply) {
        if (s_stopping(w->p))
            s_fail(w, "executing", "interrupted: orchestrator stopping", "interrupted");
        else {
            s_fmt(reason, sizeof reason, "%s: %s", service, err);
            s_fail(w, "executing", reason, "no_reply");
        }
        return;
    }
    const char *bad = s_bad_reply(reply, "exec.result", w->p->id, why, sizeof why);
    if (bad) {
        s_fmt(reason, sizeof reason, "%s %s", service, bad);
        const char *cause = strcmp(kz_msg_type(reply), "error") == 0
                                ? s_error_cause(kz_map_str(kz_msg_body_const(reply), "code"), true)
                                : "error";
        kz_msg_destroy(&reply);
        s_fail(w, "executing", reason, cause);
        return;
    }
    s_lost_runs(w, reply);
    s_republish(w, reply, &info);
    const kz_val_t *b = kz_msg_body_const(reply);
    const char *status = kz_map_str(b, "status");
    const char *error = kz_map_str(b, "error");
    const char *diffstat = kz_map_str(b, "diffstat");
    const char *commit = kz_map_str(b, "commit");
    if (status && strcmp(status, "nothing") == 0) {
        /* the fixer ran and changed nothing: no commit, no branch to
           validate; nobody rejected anything, and it says nothing of how
           well the fixer fixes (the plan asked for what it cannot do) */
        if (error && strncmp(error, "nothing to do", 13) == 0)
            s_fmt(reason, sizeof reason, "%s", error);
        else
            s_fmt(reason, sizeof reason, "nothing to do: %s",
                  error && *error ? error : "the fixer changed nothing");
        s_fail(w, "executing", reason, "nothing_to_do");
        kz_msg_destroy(&reply);
        return;
    }
    if (!status || strcmp(status, "changed") != 0) {
        s_fmt(reason, sizeof reason, "%s: %s", service,
              error && *error ? error : "the executor failed without saying why");
        const char *cause = kz_map_str(b, "cause");
        if (!cause || (strcmp(cause, "fixer") != 0 && strcmp(cause, "timeout") != 0 &&
                       strcmp(cause, "interrupted") != 0))
            cause = "error";
        s_fail(w, "executing", reason, cause);
        kz_msg_destroy(&reply);
        return;
    }
    if (!commit || !s_hex_ok(commit) ||
        kz_git_rev(w->repo, commit, w->commit, err, sizeof err) != 0) {
        s_fmt(reason, sizeof reason, "%s reported a change without a commit of the target: %s",
              service,
              !commit             ? "no commit in exec.result"
              : !s_hex_ok(commit) ? "not a commit id"
                                  : err);
        s_fail(w, "executing", reason, "error");
        kz_msg_destroy(&reply);
        return;
    }
    /* what the validators judge (base..commit) must be what the
       integration applies (the commit's own change) and what the plan's
       branch holds */
    char parent[KZ_GIT_OID_MAX + 2], head[KZ_GIT_OID_MAX], ref[S_ID_MAX + 48];
    s_fmt(parent, sizeof parent, "%s^", w->commit);
    s_fmt(ref, sizeof ref, "refs/heads/%s", w->branch);
    char got[KZ_GIT_OID_MAX] = "";
    if (kz_git_rev(w->repo, parent, got, err, sizeof err) != 0 || strcmp(got, w->base) != 0 ||
        kz_git_rev(w->repo, ref, head, err, sizeof err) != 0 || strcmp(head, w->commit) != 0) {
        s_fmt(reason, sizeof reason,
              "%s reported commit %.12s, which is not one commit on the base %.12s at the head "
              "of '%s'",
              service, w->commit, w->base, w->branch);
        s_fail(w, "executing", reason, "error");
        kz_msg_destroy(&reply);
        return;
    }
    s_keep(w);
    /* the changed files; each must be inside the target */
    const kz_val_t *changed = kz_map_get(b, "files");
    if (!changed || changed->type != KZ_VAL_ARRAY || changed->u.arr.count == 0)
        changed = files;
    size_t nfiles = changed && changed->type == KZ_VAL_ARRAY ? changed->u.arr.count : 0;
    char **list = calloc(nfiles + 1, sizeof *list);
    if (!list) {
        s_fail(w, "executing", "out of memory", "error");
        kz_msg_destroy(&reply);
        return;
    }
    for (size_t i = 0; i < nfiles; i++) {
        const kz_val_t *f = &changed->u.arr.items[i];
        char inside[512];
        if (f->type != KZ_VAL_STR ||
            !kz_path_inside(w->repo, f->u.str.ptr, inside, sizeof inside)) {
            s_fmt(reason, sizeof reason, "%s reported a changed file outside target '%s': %s",
                  service, w->p->target, f->type == KZ_VAL_STR ? inside : "not a string");
            s_fail(w, "executing", reason, "error");
            kz_strv_free(list);
            kz_msg_destroy(&reply);
            return;
        }
        list[i] = strdup(f->u.str.ptr);
        if (!list[i]) {
            s_fail(w, "executing", "out of memory", "error");
            kz_strv_free(list);
            kz_msg_destroy(&reply);
            return;
        }
    }
    s_fmt(reason, sizeof reason, "commit %.12s on '%s'%s%s", w->commit, w->branch,
          diffstat && *diffstat ? ": " : "", diffstat ? diffstat : "");
    s_state(w, "executed", reason, b);
    kz_msg_destroy(&reply);
    if (s_stopping(w->p))
        s_fail(w, "executed", "interrupted: orchestrator stopping", "interrupted");
    else
        s_validate(w, list, nfiles);
    kz_strv_free(list);
}

/* The worker: the checks that need git, the approval, the execution */
static void s_work(s_work_t *w)
{
    s_plan_t *p = w->p;
    char reason[S_REASON_MAX], err[1024];
    if (p->interrupted[0]) {
        /* left unfinished by an orchestrator that died */
        w->touched = true;
        if (strcmp(p->interrupted, "executing") == 0)
            s_lost_interrupted(w);
        else if (s_recover_integrated(w))
            return;
        s_fail(w, p->interrupted, "interrupted: the orchestrator restarted", "interrupted");
        return;
    }
    pthread_mutex_lock(&w->r->lock);
    bool approved = p->approved;
    pthread_mutex_unlock(&w->r->lock);
    const char *state = approved ? "approved" : "ready";
    const char *base = kz_map_str(w->body, "base_commit");
    if (!base || !*base) {
        s_fail(w, state, "the plan has no base_commit", "invalid");
        return;
    }
    if (!s_hex_ok(base)) {
        s_fmt(reason, sizeof reason, "base_commit '%s' is not a commit id (7 to 64 hex digits)",
              base);
        s_fail(w, state, reason, "invalid");
        return;
    }
    if (kz_git_rev(w->repo, base, w->base, err, sizeof err) != 0) {
        s_fmt(reason, sizeof reason, "base commit '%s' not found in target '%s': %s", base,
              p->target, err);
        s_fail(w, state, reason, "invalid");
        return;
    }
    /* the base must be on the target's branch: a plan is a change of
       that branch, not of any commit the repository happens to hold */
    if (kz_plan_check_base(p->tcfg, w->base, err, sizeof err) != 0) {
        s_fail(w, state, err, "invalid");
        return;
    }
    pthread_mutex_lock(&w->r->lock);
    s_fmt(p->base, sizeof p->base, "%s", w->base);
    pthread_mutex_unlock(&w->r->lock);
    double limit = w->r->cfg->policy.require_approval;
    if (!approved && kz_plan_needs_approval(&w->r->cfg->policy, p->risk)) {
        s_fmt(reason, sizeof reason,
              "risk %g is at or above policy.require_approval %g (fixers[].risk of '%s'): "
              "waiting for a person ('kaizen approve %s' or 'kaizen reject %s')",
              p->risk, limit, p->fixer->name, p->id, p->id);
        s_state(w, "awaiting_approval", reason, NULL);
        /* a decision that came meanwhile is looked at by the loop */
        s_outcome(w, "awaiting");
        return;
    }
    if (s_stopping(p)) {
        s_outcome(w, ""); /* not started: it stays ready for the next start */
        return;
    }
    s_execute(w);
}

static void *s_plan_main(void *arg)
{
    s_plan_t *p = arg;
    kz_router_t *r = p->router;
    kz_log_set_corr(p->id);
    s_work_t w;
    memset(&w, 0, sizeof w);
    w.p = p;
    w.r = r;
    w.body = kz_msg_body_const(p->msg);
    w.corr = kz_msg_corr(p->msg);
    if (kz_plan_branch(p->id, w.branch, sizeof w.branch) != 0)
        s_fmt(w.branch, sizeof w.branch, "kaizen/plan-%s", p->id); /* the id was checked */
    char err[512], rel[600];
    s_fmt(rel, sizeof rel, "worktrees/%s/plan-%s", p->target, p->id);
    if (p->tcfg) {
        s_fmt(w.repo, sizeof w.repo, "%s", p->tcfg->path);
        if (kz_state_path(r->cfg, rel, w.wt, sizeof w.wt) != 0) {
            pthread_mutex_lock(&r->lock);
            s_fmt(p->early_error, sizeof p->early_error, "state directory path too long");
            p->done = true;
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
    }
    w.bus = kz_bus_new(&r->cfg->bus, r->id, err, sizeof err);
    if (!w.bus) {
        pthread_mutex_lock(&r->lock);
        s_fmt(p->early_error, sizeof p->early_error, "unable to connect to the bus: %s", err);
        p->done = true;
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    s_work(&w);
    kz_bus_destroy(&w.bus); /* flushes this plan's last events */
    kz_log_set_corr(NULL);
    pthread_mutex_lock(&r->lock);
    p->done = true;
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ===================================================== the loop's side */

/* Check a plan that came in (or came back from the database): 0 with
   the target and fixer looked up, -1 with REASON */
static int s_check(kz_router_t *self, const kz_msg_t *msg, s_plan_t *p, char *reason, size_t len)
{
    const kz_val_t *b = kz_msg_body_const(msg);
    const char *target = kz_msg_target(msg);
    if (!target || !*target) {
        s_fmt(reason, len, "the plan names no target (the envelope's target is empty)");
        return -1;
    }
    s_fmt(p->target, sizeof p->target, "%s", target);
    p->tcfg = kz_config_target(self->cfg, target);
    if (!p->tcfg) {
        s_fmt(reason, len, "unknown target '%s': not in the configuration", target);
        return -1;
    }
    const char *fixer = kz_map_str(b, "fixer");
    p->fixer = fixer ? kz_config_fixer(self->cfg, fixer) : NULL;
    if (!p->fixer) {
        s_fmt(reason, len, "unknown fixer '%s': not in the local configuration (fixers[])",
              fixer ? fixer : "");
        return -1;
    }
    /* the risk is ours to compute: a plan.ready that says less is not
       believed (it only shows in the log) */
    p->risk = kz_plan_risk(p->fixer);
    double said = s_num(b, "risk", p->risk);
    if (said < p->risk)
        kz_warn("plan %s: its message says risk %g, but fixers[].risk of '%s' is %g: taking %g",
                p->id, said, p->fixer->name, p->risk, p->risk);
    const kz_val_t *files = kz_map_get(b, "files");
    if (!files || files->type != KZ_VAL_ARRAY || files->u.arr.count == 0) {
        s_fmt(reason, len, "the plan names no files");
        return -1;
    }
    for (uint32_t i = 0; i < files->u.arr.count; i++) {
        const kz_val_t *f = &files->u.arr.items[i];
        char why[512];
        if (f->type != KZ_VAL_STR) {
            s_fmt(reason, len, "files[%u] is not a string", i);
            return -1;
        }
        if (strlen(f->u.str.ptr) != f->u.str.len ||
            !kz_path_inside(p->tcfg->path, f->u.str.ptr, why, sizeof why)) {
            s_fmt(reason, len, "file outside target '%s' (%s): %s", target, p->tcfg->path,
                  why[0] ? why : "it contains a NUL byte");
            return -1;
        }
    }
    return 0;
}

/* Fail a plan that never ran (loop's bus) and remember it as final */
static void s_fail_now(kz_router_t *self, const char *id, const char *target, const char *corr,
                       const char *state, const char *reason, const char *cause)
{
    kz_info("plan %s: %s -> failed (%s): %s", id, state, cause, reason);
    s_publish_failed(self->bus, id, target, corr, state, reason, cause);
    s_add_final(self, id);
    s_count(self, "failed");
}

/* Take plan MSG (owned) into the table: QUEUED, or AWAITING when it was
   waiting for approval. Checks it first; a plan that fails them fails
   now. A plan already known is ignored. */
static void s_take(kz_router_t *self, kz_msg_t **msg_p, bool approved, bool awaiting,
                   const char *why_here)
{
    kz_msg_t *msg = *msg_p;
    *msg_p = NULL;
    const char *id = kz_map_str(kz_msg_body_const(msg), "plan_id");
    char reason[S_REASON_MAX];
    if (!id || !kz_id_valid(id)) {
        char shown[S_ID_MAX + 1];
        s_fmt(shown, sizeof shown, "%s", id ? id : "");
        s_clean(shown, sizeof shown - 1);
        s_fmt(reason, sizeof reason, "invalid plan id '%s': 1 to %d letters, digits, '-' or '_'",
              shown, S_ID_MAX);
        if (shown[0])
            s_fail_now(self, shown, kz_msg_target(msg), kz_msg_corr(msg), "ready", reason,
                       "invalid");
        else
            kz_warn("%s", reason);
        kz_msg_destroy(&msg);
        return;
    }
    s_plan_t *known = s_find(self, id);
    if (known || s_is_final(self, id)) {
        kz_info("plan %s: already %s; ignoring %s", id,
                known ? (known->phase == S_AWAITING ? "awaiting approval" : "in progress")
                      : "final",
                why_here);
        kz_msg_destroy(&msg);
        return;
    }
    if (self->nplans >= S_PLANS_MAX) {
        s_fmt(reason, sizeof reason, "the router holds %d plans already; try again later",
              S_PLANS_MAX);
        s_fail_now(self, id, kz_msg_target(msg), kz_msg_corr(msg), "ready", reason, "error");
        kz_msg_destroy(&msg);
        return;
    }
    s_plan_t *p = calloc(1, sizeof *p);
    if (!p) {
        s_fail_now(self, id, kz_msg_target(msg), kz_msg_corr(msg), "ready", "out of memory",
                   "error");
        kz_msg_destroy(&msg);
        return;
    }
    p->router = self;
    s_fmt(p->id, sizeof p->id, "%s", id);
    if (s_check(self, msg, p, reason, sizeof reason) != 0) {
        s_fail_now(self, id, kz_msg_target(msg), kz_msg_corr(msg),
                   awaiting   ? "awaiting_approval"
                   : approved ? "approved"
                              : "ready",
                   reason, "invalid");
        kz_msg_destroy(&msg);
        free(p);
        return;
    }
    pthread_mutex_init(&p->pub_lock, NULL);
    p->pub_lock_ready = true;
    p->msg = msg;
    p->approved = approved;
    p->phase = awaiting ? S_AWAITING : S_QUEUED;
    p->state_ms = s_mono_ms();
    s_fmt(p->state, sizeof p->state, "%s",
          awaiting   ? "awaiting_approval"
          : approved ? "approved"
                     : "ready");
    const kz_val_t *files = kz_map_get(kz_msg_body_const(msg), "files");
    kz_info("plan %s: %s (%s): target %s, fixer %s, %u file%s, risk %g", id, p->state, why_here,
            p->target, p->fixer->name, files->u.arr.count, files->u.arr.count == 1 ? "" : "s",
            p->risk);
    s_append_plan(self, p);
}

/* A person's decision on plan ID */
static void s_decide(kz_router_t *self, const char *id, bool approve, const char *by,
                     const char *why)
{
    s_plan_t *p = s_find(self, id);
    const char *who = by && *by ? by : "someone";
    if (!p) {
        pthread_mutex_lock(&self->lock);
        bool recovering = !self->rec_taken;
        pthread_mutex_unlock(&self->lock);
        if (s_is_final(self, id)) {
            kz_info("plan %s: already final; ignoring the %s by %s", id,
                    approve ? "approval" : "rejection", who);
        } else if (recovering && self->npending < S_PENDING_MAX) {
            /* the plan may still come back from the database */
            s_pending_t *d = &self->pending[self->npending++];
            s_fmt(d->id, sizeof d->id, "%s", id);
            s_fmt(d->by, sizeof d->by, "%s", who);
            d->approve = approve;
            kz_info("plan %s: %s by %s kept until the unfinished plans are read back", id,
                    approve ? "approval" : "rejection", who);
        } else {
            kz_warn("plan %s: unknown to the router; ignoring the %s by %s", id,
                    approve ? "approval" : "rejection", who);
        }
        return;
    }
    if (approve) {
        pthread_mutex_lock(&self->lock);
        p->approved = true;
        pthread_mutex_unlock(&self->lock);
        if (p->phase == S_AWAITING) {
            kz_info("plan %s: awaiting_approval -> approved by %s", id, who);
            p->phase = S_QUEUED;
            s_fmt(p->state, sizeof p->state, "approved");
        } else
            kz_info("plan %s: approved by %s before it asked; it will not wait", id, who);
        return;
    }
    if (p->phase == S_RUNNING && p->asking) {
        /* its worker is about to ask: the answer is already there */
        s_fmt(p->rejected_by, sizeof p->rejected_by, "%s", who);
        s_fmt(p->rejected_why, sizeof p->rejected_why, "%s", why && *why ? why : "-");
        kz_info("plan %s: rejected by %s before it asked for approval", id, who);
        return;
    }
    if (p->phase == S_RUNNING) {
        kz_info("plan %s: rejected by %s while %s: only a plan that waits can be rejected; it "
                "goes on",
                id, who, p->state);
        return;
    }
    kz_info("plan %s: %s -> rejected by %s: %s", id, p->state, who, why && *why ? why : "-");
    s_add_final(self, id);
    s_count(self, "rejected");
    s_remove(self, p);
}

void kz_router_add(kz_router_t *self, kz_delivery_t **d_p)
{
    kz_delivery_t *d = *d_p;
    *d_p = NULL;
    if (!d)
        return;
    if (self->stopping) {
        /* back to the broker: the next router takes it */
        kz_bus_nack(self->bus, d);
        kz_bus_delivery_destroy(&d);
        return;
    }
    char type[64], id[128];
    s_fmt(type, sizeof type, "%s", kz_msg_type(d->msg));
    s_fmt(id, sizeof id, "%s", kz_msg_id(d->msg));
    const kz_val_t *b = kz_msg_body_const(d->msg);
    if (strcmp(type, "plan.ready") == 0) {
        kz_msg_t *msg = d->msg;
        d->msg = NULL;
        s_take(self, &msg, false, false, "plan.ready");
    } else if (strcmp(type, "plan.approved") == 0 || strcmp(type, "plan.rejected") == 0) {
        const char *plan_id = kz_map_str(b, "plan_id");
        const char *src = kz_msg_src(d->msg);
        /* our own plan.rejected comes back through the group too */
        bool ours = src && strcmp(src, self->id) == 0;
        if (plan_id && !ours)
            s_decide(self, plan_id, type[5] == 'a', kz_map_str(b, "by"), kz_map_str(b, "reason"));
    }
    /* taken (or not ours): the broker can forget it */
    if (kz_bus_ack(self->bus, d) != 0)
        kz_warn("unable to acknowledge %s %s", type, id);
    kz_bus_delivery_destroy(&d);
}

/* ----------------------------------------------------------- recovery */

static void s_recovered_free(s_recovered_t *list)
{
    while (list) {
        s_recovered_t *next = list->next;
        free(list->plan_json);
        free(list);
        list = next;
    }
}

/* Read the unfinished plans: 0, 1 when the schema is not there yet (the
   recorder migrates it), -1 with ERR */
static int s_recover_read(kz_router_t *self, s_recovered_t **list, char *err, size_t errlen)
{
    PGconn *db = kz_db_connect(self->cfg, "kaizen-orchestrator", err, errlen);
    if (!db)
        return -1;
    PGresult *res = kz_db_exec(db, "SELECT to_regclass('improvement_suggestions') IS NOT NULL", 0,
                               NULL, err, errlen);
    if (!res || PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        int rc = res ? 1 : -1;
        PQclear(res);
        PQfinish(db);
        return rc;
    }
    PQclear(res);
    res = kz_db_exec(
        db,
        "SELECT plan_id, status, COALESCE(target, ''), implementation_plan::text FROM "
        "improvement_suggestions WHERE plan_id IS NOT NULL AND status IN ('ready', 'approved', "
        "'awaiting_approval', 'executing', 'executed', 'validating') ORDER BY id",
        0, NULL, err, errlen);
    if (!res) {
        PQfinish(db);
        return -1;
    }
    s_recovered_t *head = NULL, **tail = &head;
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        s_recovered_t *r = calloc(1, sizeof *r);
        if (!r)
            break;
        s_fmt(r->id, sizeof r->id, "%s", PQgetvalue(res, i, 0));
        s_fmt(r->status, sizeof r->status, "%s", PQgetvalue(res, i, 1));
        s_fmt(r->target, sizeof r->target, "%s", PQgetvalue(res, i, 2));
        if (!PQgetisnull(res, i, 3))
            r->plan_json = strdup(PQgetvalue(res, i, 3));
        *tail = r;
        tail = &r->next;
    }
    PQclear(res);
    PQfinish(db);
    *list = head;
    return 0;
}

static void *s_recover_main(void *arg)
{
    kz_router_t *self = arg;
    bool said = false;
    for (;;) {
        pthread_mutex_lock(&self->lock);
        bool stop = self->rec_stop;
        pthread_mutex_unlock(&self->lock);
        if (stop)
            return NULL;
        char err[1024];
        s_recovered_t *list = NULL;
        int rc = s_recover_read(self, &list, err, sizeof err);
        if (rc == 0) {
            pthread_mutex_lock(&self->lock);
            self->rec_list = list;
            self->rec_done = true;
            pthread_mutex_unlock(&self->lock);
            return NULL;
        }
        if (rc < 0 && !said) {
            kz_info("router: unfinished plans not read yet (%s); trying again every %d ms", err,
                    S_RECOVER_RETRY);
            said = true;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += S_RECOVER_RETRY / 1000;
        pthread_mutex_lock(&self->lock);
        if (!self->rec_stop)
            pthread_cond_timedwait(&self->rec_wake, &self->lock, &until);
        pthread_mutex_unlock(&self->lock);
    }
}

/* A JSON value into SLOT of MSG; 0 / -1 */
static int s_json_val(kz_msg_t *msg, kz_val_t *slot, json_t *j, int depth)
{
    if (depth > 12)
        return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        kz_val_set_map(slot);
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            kz_val_t *s = kz_map_put(msg, slot, key);
            if (!s || s_json_val(msg, s, v, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        kz_val_set_array(slot);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            kz_val_t *s = kz_array_push(msg, slot);
            if (!s || s_json_val(msg, s, v, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_STRING:
        return kz_val_set_strn(msg, slot, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        kz_val_set_int(slot, (int64_t)json_integer_value(j));
        return 0;
    case JSON_REAL:
        kz_val_set_float(slot, json_real_value(j));
        return 0;
    case JSON_TRUE:
        kz_val_set_bool(slot, true);
        return 0;
    case JSON_FALSE:
        kz_val_set_bool(slot, false);
        return 0;
    default:
        return 0; /* null stays nil */
    }
}

/* The stored plan R as a plan.ready message from SRC (checked against
   the schema); NULL with ERR */
static kz_msg_t *s_stored_plan(const s_recovered_t *r, const char *src, char *err, size_t errlen)
{
    if (!r->plan_json) {
        s_fmt(err, errlen, "no plan stored");
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loads(r->plan_json, 0, &jerr);
    if (!j || !json_is_object(j)) {
        s_fmt(err, errlen, "the stored plan is not a JSON object");
        json_decref(j);
        return NULL;
    }
    kz_msg_t *msg = kz_msg_new("plan.ready");
    if (!msg || kz_msg_set_src(msg, src) != 0 ||
        (r->target[0] && kz_msg_set_target(msg, r->target) != 0) ||
        s_json_val(msg, kz_msg_body(msg), j, 0) != 0) {
        s_fmt(err, errlen, "out of memory");
        kz_msg_destroy(&msg);
        json_decref(j);
        return NULL;
    }
    json_decref(j);
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t merr;
    if (kz_msg_encode(msg, &buf, &len, &merr) != 0) {
        s_fmt(err, errlen, "the stored plan is not a valid plan: %s", merr.text);
        kz_msg_destroy(&msg);
        return NULL;
    }
    free(buf);
    return msg;
}

/* Take the plans read back from the database */
static void s_recover_take(kz_router_t *self, s_recovered_t *list)
{
    size_t interrupted = 0, awaiting = 0, requeued = 0;
    for (s_recovered_t *r = list; r; r = r->next) {
        if (!kz_id_valid(r->id) || s_find(self, r->id) || s_is_final(self, r->id))
            continue; /* ours already (the database lags the bus) */
        char err[512];
        bool broken = strcmp(r->status, "executing") == 0 || strcmp(r->status, "executed") == 0 ||
                      strcmp(r->status, "validating") == 0;
        if (broken) {
            /* fail it and roll it back on a worker */
            s_plan_t *p = calloc(1, sizeof *p);
            if (!p)
                continue;
            p->router = self;
            s_fmt(p->id, sizeof p->id, "%s", r->id);
            s_fmt(p->target, sizeof p->target, "%s", r->target);
            s_fmt(p->interrupted, sizeof p->interrupted, "%s", r->status);
            s_fmt(p->state, sizeof p->state, "%s", r->status);
            p->tcfg = kz_config_target(self->cfg, r->target);
            p->msg = kz_msg_new("plan.ready"); /* only its envelope is used */
            pthread_mutex_init(&p->pub_lock, NULL);
            p->pub_lock_ready = true;
            p->phase = S_QUEUED;
            if (!p->msg) {
                s_plan_free(&p);
                continue;
            }
            if (!p->tcfg)
                kz_warn("plan %s: target '%s' is no longer configured: nothing to roll back", p->id,
                        r->target);
            s_append_plan(self, p);
            interrupted++;
            continue;
        }
        kz_msg_t *msg = s_stored_plan(r, self->id, err, sizeof err);
        if (!msg) {
            s_fail_now(self, r->id, r->target, NULL, r->status, err, "error");
            continue;
        }
        bool await = strcmp(r->status, "awaiting_approval") == 0;
        s_take(self, &msg, strcmp(r->status, "approved") == 0, await, "recovered at start");
        if (await)
            awaiting++;
        else
            requeued++;
    }
    if (interrupted + awaiting + requeued > 0)
        kz_info("router: %zu unfinished plan%s from before: %zu interrupted, %zu awaiting "
                "approval, %zu queued again",
                interrupted + awaiting + requeued,
                interrupted + awaiting + requeued == 1 ? "" : "s", interrupted, awaiting, requeued);
    /* the decisions that waited for this */
    for (size_t i = 0; i < self->npending; i++) {
        s_pending_t *d = &self->pending[i];
        if (s_find(self, d->id))
            s_decide(self, d->id, d->approve, d->by, NULL);
        else
            kz_warn("plan %s: unknown to the router; ignoring the %s by %s", d->id,
                    d->approve ? "approval" : "rejection", d->by);
    }
    self->npending = 0;
}

/* -------------------------------------------------------------- ticks */

/* Collect the workers that ended */
static void s_reap(kz_router_t *self)
{
    s_plan_t *p = self->head;
    while (p) {
        s_plan_t *next = p->next;
        if (p->phase != S_RUNNING) {
            p = next;
            continue;
        }
        pthread_mutex_lock(&self->lock);
        bool done = p->done;
        pthread_mutex_unlock(&self->lock);
        if (!done) {
            p = next;
            continue;
        }
        pthread_join(p->thread, NULL);
        if (p->early_error[0]) {
            s_fail_now(self, p->id, p->target, kz_msg_corr(p->msg),
                       p->interrupted[0] ? p->interrupted : p->state, p->early_error, "error");
            s_remove(self, p);
        } else if (strcmp(p->outcome, "awaiting") == 0 && p->rejected_by[0]) {
            /* the person's plan.rejected came before our awaiting_approval:
               say it again after it, so the record ends rejected */
            char reason[1024];
            s_fmt(reason, sizeof reason, "rejected by %s: %s", p->rejected_by, p->rejected_why);
            kz_info("plan %s: awaiting_approval -> %s", p->id, reason);
            kz_msg_t *msg = s_plan_msg("plan.rejected", p->id, p->target, kz_msg_corr(p->msg));
            if (msg && (kz_map_put_str(msg, kz_msg_body(msg), "state", "awaiting_approval") != 0 ||
                        kz_map_put_str(msg, kz_msg_body(msg), "cause", "person") != 0 ||
                        kz_map_put_str(msg, kz_msg_body(msg), "by", p->rejected_by) != 0 ||
                        kz_map_put_str(msg, kz_msg_body(msg), "reason", reason) != 0))
                kz_msg_destroy(&msg);
            s_send(self->bus, &msg, "plan.rejected");
            s_add_final(self, p->id);
            s_count(self, "rejected");
            s_remove(self, p);
        } else if (strcmp(p->outcome, "awaiting") == 0) {
            pthread_mutex_lock(&self->lock);
            bool approved = p->approved;
            p->done = false;
            pthread_mutex_unlock(&self->lock);
            /* approved while the worker asked: run it now */
            p->phase = approved ? S_QUEUED : S_AWAITING;
            s_fmt(p->state, sizeof p->state, "%s", approved ? "approved" : "awaiting_approval");
        } else if (p->outcome[0]) {
            s_add_final(self, p->id);
            s_count(self, p->outcome);
            s_remove(self, p);
        } else {
            kz_info("plan %s: not started before the stop; it stays %s for the next start", p->id,
                    p->state);
            s_remove(self, p);
        }
        p = next;
    }
}

/* True when P's worker will only ask for approval (risk at or above
   policy.require_approval, nobody approved it yet) */
static bool s_will_ask(const kz_router_t *self, const s_plan_t *p)
{
    return !p->interrupted[0] && !p->approved &&
           kz_plan_needs_approval(&self->cfg->policy, p->risk);
}

/* Start queued plans while there is room (policy.max_concurrent plans
   executing or validating; a plan that will only ask for approval
   does not wait for a slot) */
static void s_start(kz_router_t *self)
{
    int max = self->cfg->policy.max_concurrent > 0 ? self->cfg->policy.max_concurrent : 1;
    int running = 0;
    for (s_plan_t *p = self->head; p; p = p->next)
        running += p->phase == S_RUNNING && !p->asking;
    for (s_plan_t *p = self->head; p; p = p->next) {
        if (p->phase != S_QUEUED)
            continue;
        bool ask = s_will_ask(self, p);
        if (!ask && running >= max)
            continue;
        pthread_mutex_lock(&self->lock);
        p->done = false;
        p->outcome[0] = '\0';
        pthread_mutex_unlock(&self->lock);
        int rc = s_thread(&p->thread, s_plan_main, p);
        if (rc != 0) {
            kz_error("plan %s: unable to start a worker thread: %s; trying again later", p->id,
                     strerror(rc));
            return;
        }
        p->phase = S_RUNNING;
        p->asking = ask;
        running += !ask;
    }
}

/* Interrupt every running worker and validator call (the loop repeats it:
   a signal that came between two bus calls is lost) */
static void s_interrupt(kz_router_t *self)
{
    pthread_mutex_lock(&self->lock);
    for (s_plan_t *p = self->head; p; p = p->next) {
        if (p->phase != S_RUNNING)
            continue;
        p->stop = true;
        if (!p->done)
            pthread_kill(p->thread, S_INTERRUPT_SIG);
        for (size_t i = 0; i < p->nvcalls; i++)
            if (p->vcalls[i].started && !p->vcalls[i].done)
                pthread_kill(p->vcalls[i].thread, S_INTERRUPT_SIG);
    }
    pthread_mutex_unlock(&self->lock);
}

int64_t kz_router_tick(kz_router_t *self)
{
    s_reap(self);
    if (!self->rec_taken) {
        pthread_mutex_lock(&self->lock);
        s_recovered_t *list = self->rec_done ? self->rec_list : NULL;
        bool done = self->rec_done;
        self->rec_list = NULL;
        pthread_mutex_unlock(&self->lock);
        if (done) {
            if (self->rec_started) {
                pthread_join(self->rec_thread, NULL);
                self->rec_started = false;
            }
            pthread_mutex_lock(&self->lock);
            self->rec_taken = true;
            pthread_mutex_unlock(&self->lock);
            if (!self->stopping)
                s_recover_take(self, list);
            s_recovered_free(list);
        }
    }
    if (!self->stopping)
        s_start(self);
    bool busy = false;
    for (s_plan_t *p = self->head; p && !busy; p = p->next)
        busy = p->phase == S_RUNNING || p->phase == S_QUEUED;
    /* a worker cannot wake the loop's bus wait: look again soon */
    return busy ? 50 : !self->rec_taken ? 250 : 1000;
}

void kz_router_on_started(kz_router_t *self, const kz_msg_t *msg)
{
    const kz_val_t *b = kz_msg_body_const(msg);
    const char *plan_id = kz_map_str(b, "plan_id"), *id = kz_map_str(b, "id");
    if (!plan_id || !id)
        return;
    s_plan_t *p = s_find(self, plan_id);
    if (!p)
        return;
    pthread_mutex_lock(&self->lock);
    int64_t now = s_mono_ms();
    if (p->exec_id[0] && strcmp(p->exec_id, id) == 0 && !p->exec_running_ms)
        p->exec_running_ms = now;
    for (size_t i = 0; i < p->nvcalls; i++)
        if (strcmp(p->vcalls[i].req_id, id) == 0 && !p->vcalls[i].running_ms)
            p->vcalls[i].running_ms = now;
    pthread_mutex_unlock(&self->lock);
}

/* One call of plan P into array CALLS of MSG: {service, state queued |
   running | done, for_ms}. 0 / -1 */
static int s_status_call(kz_msg_t *msg, kz_val_t *calls, const char *service, int64_t sent_ms,
                         int64_t running_ms, bool done, int64_t now)
{
    kz_val_t *c = kz_array_push(msg, calls);
    if (!c)
        return -1;
    kz_val_set_map(c);
    const char *state = done ? "done" : running_ms ? "running" : "queued";
    int64_t since = running_ms && !done ? running_ms : sent_ms;
    int rc = kz_map_put_str(msg, c, "service", service);
    rc |= kz_map_put_str(msg, c, "state", state);
    rc |= kz_map_put_int(msg, c, "for_ms", now - since);
    return rc;
}

int kz_router_plan_info(kz_router_t *self, const char *plan_id, kz_msg_t *msg, kz_val_t *map)
{
    int rc = kz_map_put_str(msg, map, "plan_id", plan_id);
    s_plan_t *p = s_find(self, plan_id);
    if (!p)
        return rc |
               kz_map_put_str(msg, map, "state", s_is_final(self, plan_id) ? "final" : "unknown");
    char branch[S_ID_MAX + 32];
    if (kz_plan_branch(p->id, branch, sizeof branch) != 0)
        s_fmt(branch, sizeof branch, "kaizen/plan-%s", p->id); /* the id was checked */
    pthread_mutex_lock(&self->lock);
    const char *state = p->phase == S_QUEUED     ? "ready"
                        : p->phase == S_AWAITING ? "awaiting_approval"
                        : p->state[0]            ? p->state
                                                 : "ready";
    rc |= kz_map_put_str(msg, map, "state", state);
    rc |= kz_map_put_str(msg, map, "target", p->target);
    if (p->fixer)
        rc |= kz_map_put_str(msg, map, "fixer", p->fixer->name);
    if (p->base[0])
        rc |= kz_map_put_str(msg, map, "base_commit", p->base);
    rc |= kz_map_put_str(msg, map, "branch", branch);
    if (p->exec_id[0])
        rc |= kz_map_put_str(msg, map, "request_id", p->exec_id);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int kz_router_status(kz_router_t *self, kz_msg_t *msg, kz_val_t *map)
{
    size_t running = 0, queued = 0, awaiting = 0;
    for (s_plan_t *p = self->head; p; p = p->next) {
        running += p->phase == S_RUNNING;
        queued += p->phase == S_QUEUED;
        awaiting += p->phase == S_AWAITING;
    }
    pthread_mutex_lock(&self->lock);
    uint64_t accepted = self->accepted, rejected = self->rejected, failed = self->failed;
    bool recovered = self->rec_taken;
    pthread_mutex_unlock(&self->lock);
    kz_val_t *r = kz_map_put_map(msg, map, "router");
    if (!r)
        return -1;
    int rc = kz_map_put_int(msg, r, "active", (int64_t)(running + queued));
    rc |= kz_map_put_int(msg, r, "running", (int64_t)running);
    rc |= kz_map_put_int(msg, r, "queued", (int64_t)queued);
    rc |= kz_map_put_int(msg, r, "awaiting", (int64_t)awaiting);
    rc |= kz_map_put_int(msg, r, "accepted", (int64_t)accepted);
    rc |= kz_map_put_int(msg, r, "rejected", (int64_t)rejected);
    rc |= kz_map_put_int(msg, r, "failed", (int64_t)failed);
    rc |= kz_map_put_bool(msg, r, "recovered", recovered);
    /* the plans on the move, and what each waits for: a call queued at
       the broker (no worker free) reads differently from one at work */
    kz_val_t *plans = kz_map_put_array(msg, r, "plans");
    if (!plans)
        return -1;
    int64_t now = s_mono_ms();
    size_t listed = 0;
    pthread_mutex_lock(&self->lock);
    for (s_plan_t *p = self->head; p && listed < 100; p = p->next) {
        if (p->phase == S_AWAITING)
            continue;
        kz_val_t *e = kz_array_push(msg, plans);
        if (!e) {
            rc = -1;
            break;
        }
        listed++;
        kz_val_set_map(e);
        rc |= kz_map_put_str(msg, e, "plan_id", p->id);
        rc |= kz_map_put_str(msg, e, "target", p->target);
        rc |= kz_map_put_str(msg, e, "state", p->phase == S_QUEUED ? "queued" : p->state);
        rc |= kz_map_put_int(msg, e, "for_ms", now - p->state_ms);
        kz_val_t *calls = kz_map_put_array(msg, e, "calls");
        if (!calls) {
            rc = -1;
            break;
        }
        if (p->exec_id[0])
            rc |= s_status_call(msg, calls, p->exec_service, p->exec_sent_ms, p->exec_running_ms,
                                false, now);
        for (size_t i = 0; i < p->nvcalls; i++)
            if (p->vcalls[i].started)
                rc |= s_status_call(msg, calls, p->vcalls[i].service, p->vcalls[i].sent_ms,
                                    p->vcalls[i].running_ms, p->vcalls[i].done, now);
    }
    pthread_mutex_unlock(&self->lock);
    return rc != 0 ? -1 : 0;
}

/* ---------------------------------------------------------- lifecycle */

kz_router_t *kz_router_new(const kz_config_t *cfg, kz_bus_t *bus, const char *id, char *errbuf,
                           size_t errlen)
{
    /* the committer of the integration's cherry-picks (checked at load) */
    char name[256], email[256], why[512] = "too long";
    if (kz_config_ident(cfg->policy.commit_author, name, sizeof name, email, sizeof email, why,
                        sizeof why) != 0 ||
        kz_git_set_identity(name, email) != 0) {
        s_fmt(errbuf, errlen, "policy.commit_author: %s", why);
        return NULL;
    }
    kz_router_t *self = calloc(1, sizeof *self);
    if (!self || !(self->finals = calloc(S_FINALS, sizeof *self->finals))) {
        free(self);
        s_fmt(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->bus = bus;
    s_fmt(self->id, sizeof self->id, "%s", id);
    pthread_mutex_init(&self->lock, NULL);
    pthread_mutex_init(&self->integrate_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->rec_wake, &ca);
    pthread_cond_init(&self->vdone, &ca);
    pthread_condattr_destroy(&ca);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the worker's poll returns EINTR */
    sa.sa_handler = s_on_interrupt;
    sigaction(S_INTERRUPT_SIG, &sa, NULL);

    int rc = s_thread(&self->rec_thread, s_recover_main, self);
    if (rc != 0) {
        s_fmt(errbuf, errlen, "unable to start the router's recovery thread: %s", strerror(rc));
        kz_router_destroy(&self);
        return NULL;
    }
    self->rec_started = true;
    return self;
}

void kz_router_stop(kz_router_t *self, void (*pump)(void *arg, int timeout_ms), void *arg,
                    int stop_timeout_ms)
{
    if (!self || self->stopping)
        return;
    self->stopping = true;
    kz_bus_leave(self->bus, KZ_ROUTER_GROUP);
    pthread_mutex_lock(&self->lock);
    self->rec_stop = true;
    pthread_cond_signal(&self->rec_wake);
    pthread_mutex_unlock(&self->lock);

    /* queued plans stay ready (or approved) in the database */
    for (s_plan_t *p = self->head, *next; p; p = next) {
        next = p->next;
        if (p->phase == S_QUEUED) {
            kz_info("plan %s: not started before the stop; it stays %s for the next start", p->id,
                    p->interrupted[0] ? p->interrupted : p->state);
            s_remove(self, p);
        }
    }
    size_t running = 0;
    for (s_plan_t *p = self->head; p; p = p->next)
        running += p->phase == S_RUNNING;
    if (running == 0)
        return;
    kz_info("router: waiting up to %d ms for %zu running plan%s", stop_timeout_ms, running,
            running == 1 ? "" : "s");
    int64_t deadline = s_mono_ms() + (stop_timeout_ms > 0 ? stop_timeout_ms : 0);
    for (;;) {
        s_reap(self);
        running = 0;
        for (s_plan_t *p = self->head; p; p = p->next)
            running += p->phase == S_RUNNING;
        if (running == 0 || s_mono_ms() >= deadline)
            break;
        if (pump)
            pump(arg, 100);
        else {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (running == 0)
        return;
    kz_info("router: interrupting %zu running plan%s", running, running == 1 ? "" : "s");
    deadline = s_mono_ms() + S_STOP_GRACE_MS;
    for (;;) {
        s_interrupt(self);
        s_reap(self);
        running = 0;
        for (s_plan_t *p = self->head; p; p = p->next)
            running += p->phase == S_RUNNING;
        if (running == 0 || s_mono_ms() >= deadline)
            break;
        if (pump)
            pump(arg, 100);
        else {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* stuck (in git?): say it ourselves, and leave the thread be */
    for (s_plan_t *p = self->head; p; p = p->next) {
        if (p->phase != S_RUNNING)
            continue;
        pthread_mutex_lock(&p->pub_lock);
        p->abandoned = true;
        pthread_mutex_unlock(&p->pub_lock);
        pthread_mutex_lock(&self->lock);
        char state[32];
        s_fmt(state, sizeof state, "%s", p->state);
        pthread_mutex_unlock(&self->lock);
        kz_warn("plan %s: its worker does not stop; failing it without the rollback", p->id);
        s_publish_failed(self->bus, p->id, p->target, kz_msg_corr(p->msg), state,
                         "interrupted: orchestrator stopping (not rolled back)", "interrupted");
        s_count(self, "failed");
    }
}

void kz_router_destroy(kz_router_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_router_t *self = *self_p;
    *self_p = NULL;
    pthread_mutex_lock(&self->lock);
    self->rec_stop = true;
    pthread_cond_signal(&self->rec_wake);
    pthread_mutex_unlock(&self->lock);
    if (self->rec_started)
        pthread_join(self->rec_thread, NULL);
    s_recovered_free(self->rec_list);
    self->rec_list = NULL;
    bool stuck = false;
    for (s_plan_t *p = self->head; p; p = p->next) {
        if (p->phase != S_RUNNING)
            continue;
        pthread_mutex_lock(&self->lock);
        bool done = p->done;
        pthread_mutex_unlock(&self->lock);
        if (done)
            pthread_join(p->thread, NULL);
        else
            stuck = true;
    }
    if (stuck) {
        /* a worker still uses the router: leave it all to the exit */
        kz_warn("router: a plan's worker is still running; not freeing the router");
        return;
    }
    while (self->head) {
        s_plan_t *p = self->head;
        self->head = p->next;
        s_plan_free(&p);
    }
    free(self->finals);
    pthread_cond_destroy(&self->rec_wake);
    pthread_cond_destroy(&self->vdone);
    pthread_mutex_destroy(&self->integrate_lock);
    pthread_mutex_destroy(&self->lock);
    free(self);
}
