/*  kz_agent.h - the agent runtime: what every kaizen-<name> executable shares

    kz_agent_main parses the common flags, loads the config, connects the
    bus, says agent.hello, then loops: runs the cycle every interval (or
    when asked: an agent.run event naming it, or SIGUSR1), hands bus
    deliveries to on_message, publishes agent.heartbeat, and on SIGTERM or
    SIGINT finishes the current step, says agent.bye and returns 0.

    Common flags: -c FILE, --id ID, --interval DURATION, --once,
    --log-file PATH, --log-level LEVEL, --log-format text|json, --help.
*/
#ifndef KZ_AGENT_H_INCLUDED
#define KZ_AGENT_H_INCLUDED

#include "kz_bus.h"
#include "kz_config.h"

typedef struct kz_agent kz_agent_t;

/* Called once after connecting: subscribe, join groups, offer services.
   0 / -1 (the agent exits 1) */
typedef int(kz_agent_setup_fn)(kz_agent_t *agent, void *arg);
/* One cycle of work. 0 ok, -1 failed (logged, reported in heartbeats) */
typedef int(kz_agent_cycle_fn)(kz_agent_t *agent, void *arg);
/* One delivery; afterwards the runtime settles a group delivery - acks it
   when this returns 0, NACKs it when this returns -1, so the broker hands
   it to a member again (this one or another; after broker.max_deliveries
   deliveries it drops it as a poison message) - and destroys the
   delivery. A handler that settles it itself (kz_bus_ack / kz_bus_nack)
   returns 0 after an ack and -1 after a nack: settling again the same
   way is a no-op. Requests are not answered by the runtime: reply with
   kz_bus_reply on every path, or the broker keeps the worker busy. */
typedef int(kz_agent_message_fn)(kz_agent_t *agent, kz_delivery_t *delivery, void *arg);

typedef struct {
    const char *name;    /* "code-health" */
    const char *layer;   /* "monitoring", "analysis", ... */
    const char *summary; /* one line for --help */
    kz_agent_setup_fn *setup;
    kz_agent_cycle_fn *cycle; /* may be NULL for purely reactive agents */
    kz_agent_message_fn *on_message;
    void *arg;
} kz_agent_def_t;

/* Run the agent; returns the process exit code (0 after a clean stop,
   1 on a startup error such as a bad config or bad flag, 2 for usage). */
int kz_agent_main(int argc, char **argv, const kz_agent_def_t *def);

kz_bus_t *kz_agent_bus(kz_agent_t *self);
const kz_config_t *kz_agent_config(const kz_agent_t *self);
const char *kz_agent_id(const kz_agent_t *self);
/* True once SIGTERM/SIGINT arrived: long cycles should check it between steps */
bool kz_agent_stopping(const kz_agent_t *self);
/* Publish MSG (ownership taken) with src set and corr defaulting to the
   current cycle's correlation id. 0 / -1 */
int kz_agent_publish(kz_agent_t *self, kz_msg_t **msg_p);

/* The envelope target of the agent.run that started the current cycle
   (the one repository it asks about), or NULL: a cycle on the interval,
   or an agent.run for every target */
const char *kz_agent_run_target(const kz_agent_t *self);

/* Keep the agent alive during long work inside a cycle or on_message
   (linters, test suites, git): sends the bus heartbeats that keep its
   service and queue-group registrations (kz_bus_keepalive), so the broker
   does not hand the request or delivery to another worker, and publishes
   agent.heartbeat with state "busy" when one is due, so the orchestrator
   does not take the agent for hung. Cheap when nothing is due: call it
   between steps, at least once per bus.heartbeat interval. */
void kz_agent_keepalive(kz_agent_t *self);
/* kz_agent_keepalive for kz_proc_opts_t.tick: ARG is the kz_agent_t *.
   opts.tick = kz_agent_proc_tick; opts.tick_arg = agent; */
void kz_agent_proc_tick(void *arg);

/* True when the service request on_message is handling is no longer
   waited for: its client published request.cancel for it (another
   validator rejected the plan, the router gave up or stopped), or its
   deadline passed (kz_bus_request_cancelled). WHY (may be NULL) says
   which. Looks at most every 200 ms; false outside a request. Long work
   checks it between steps and stops; the runtime sends the reply the
   handler gives (an "error" is fine: nobody reads it). Before handing a
   request to on_message the runtime answers one already cancelled with
   error "cancelled" itself, and publishes request.started for the others. */
bool kz_agent_cancelled(kz_agent_t *self, char *why, size_t len);
/* kz_agent_cancelled for kz_proc_opts_t.cancel (ARG is the kz_agent_t *):
   a subprocess of a cancelled request is killed with its process group */
bool kz_agent_proc_cancel(void *arg);

/* The tick of a wait (kz_store_wait_scan, kz_store_wait_event: ARG is the
   kz_agent_t *): keeps the agent alive, and false - stop waiting - once
   the agent is stopping */
bool kz_agent_wait_tick(void *arg);

/* The layer of a known agent name ("code-health" -> "monitoring", the
   names of DESIGN.md section 3; "demo" -> "monitoring"), or NULL. The
   supervisor starts layers in kz_agent_layer_rank order: monitoring 0,
   analysis 1, planning 2, execution 3, validation 4, learning 5,
   orchestration 6, anything else (NULL included) 7. (lib/kz_layers.c) */
const char *kz_agent_layer_of(const char *name);
int kz_agent_layer_rank(const char *layer);

/* "name@host#pid" for NAME into BUF */
void kz_agent_make_id(const char *name, char *buf, size_t len);

#endif
