/*  router.h - the plan lifecycle: ready -> (awaiting_approval) ->
    executing -> executed -> validating -> accepted | rejected | failed

    The orchestrator's loop joins queue group KZ_ROUTER_GROUP for every
    plan.* event and hands each delivery to kz_router_add, which checks
    what it can at once, takes the plan into the router's table and
    acknowledges it. Execution and validation run on worker threads (at
    most policy.max_concurrent plans at once), each with a bus client of
    its own; the loop calls kz_router_tick to start queued plans, collect
    finished ones and pick up the plans recovered from the database at
    start. See docs/orchestrator.md, "Router".
*/
#ifndef KZ_ROUTER_H_INCLUDED
#define KZ_ROUTER_H_INCLUDED

#include <stdint.h>

#include "kz_bus.h"
#include "kz_config.h"

#define KZ_ROUTER_GROUP  "kaizen.router"
#define KZ_ROUTER_PREFIX "plan."

typedef struct kz_router kz_router_t;

/* A router publishing on BUS (the orchestrator's, used from the loop's
   thread only) with worker bus clients named ID. Starts the recovery of
   the plans an earlier orchestrator left unfinished (read from the
   database in the background, retried until it is reachable). NULL with
   ERRBUF on failure. */
kz_router_t *kz_router_new(const kz_config_t *cfg, kz_bus_t *bus, const char *id, char *errbuf,
                           size_t errlen);

/* Take a group delivery of KZ_ROUTER_GROUP (ownership taken, *D_P =
   NULL): plan.ready, plan.approved and plan.rejected are acted on; other
   plan.* types are acknowledged and ignored */
void kz_router_add(kz_router_t *self, kz_delivery_t **d_p);

/* Housekeeping from the loop: collect finished plans, start queued ones,
   take recovered plans. Returns the ms until it wants to run again. */
int64_t kz_router_tick(kz_router_t *self);

/* A request.started event (the orchestrator subscribes to them): a call
   of one of the router's plans left the broker's queue and a worker took
   it; kaizen status then shows it running rather than queued */
void kz_router_on_started(kz_router_t *self, const kz_msg_t *msg);

/* The router's counts as map "router" of the status reply: active (queued
   and running), running, queued, awaiting (approval), accepted, rejected,
   failed (totals since start), and "plans": the plans queued or running
   (at most 100), each {plan_id, target, state, for_ms, calls: [{service,
   state queued | running | done, for_ms}]}. 0 / -1 */
int kz_router_status(kz_router_t *self, kz_msg_t *msg, kz_val_t *map);

/* What the router's table says of plan PLAN_ID, as the fields of MAP
   (the body of a plan.info reply, PROTOCOL.md 4.13a): plan_id, state
   ("ready", "awaiting_approval", "executing", "executed", "validating",
   "final" for a plan that ended since the start, "unknown" for one the
   router does not hold), and for a plan it holds its target, fixer,
   base_commit (once resolved), branch (kaizen/plan-<id>) and, while its
   executor call is in progress, request_id (that call's envelope id).
   The executors ask it (service kaizen.plan) before they touch a
   repository. 0 / -1 (out of memory) */
int kz_router_plan_info(kz_router_t *self, const char *plan_id, kz_msg_t *msg, kz_val_t *map);

/* Stop: leave the group (later deliveries go back to the broker), give
   running plans STOP_TIMEOUT_MS to finish while PUMP(ARG, ms) works the
   bus, then interrupt them: each fails with "interrupted: orchestrator
   stopping" and is rolled back. Queued plans stay "ready" in the
   database, awaiting ones "awaiting_approval": the next start takes them
   up again. */
void kz_router_stop(kz_router_t *self, void (*pump)(void *arg, int timeout_ms), void *arg,
                    int stop_timeout_ms);

void kz_router_destroy(kz_router_t **self_p);

#endif
