/*  supervisor.h - this host's processes, and every agent heard of

    Supervision. The supervisor starts, on this host:
      - kaizen-broker, when supervisor.broker is true and not --node
        (first; the next step waits until the broker answers mmi.service),
      - each configured agent this host runs (agents[].host equal to this
        host's name, or unset on the main host - the orchestrator without
        --node), instances times, as BIN_DIR/kaizen-NAME -c CONFIG
        --id NAME@HOST#INSTANCE? no: the agent picks its id;
        argv = kaizen-NAME [-c CONFIG] --log-file LOGDIR/NAME.INSTANCE.log
        ARGS..., stdin /dev/null, stdout and stderr to that log file too,
        in the orchestrator's process group,
      in layer order (monitoring, analysis, planning, execution,
      validation, learning, then any other), each layer once the previous
      one's instances said agent.hello or supervisor.start_timeout passed.
    A supervised process that exits without being asked to is restarted
    after a back-off (supervisor.backoff_initial, doubling per restart
    within the window up to supervisor.backoff_max) and agent.exited is
    published; more than supervisor.restart_intensity restarts within
    supervisor.restart_window marks it failed: it is not restarted again,
    the reason is logged and agent.failed published. An executable that
    does not exist or cannot be executed fails at once with that reason.
    Stopping goes the other way: agents in reverse layer order (SIGTERM,
    then SIGKILL after supervisor.stop_timeout), the broker last.

    Tracking. Every agent.hello, agent.heartbeat, agent.bye, agent.exited
    and agent.failed seen on the bus, from any host, updates a table of
    agents keyed by their id (name@host#pid); supervised processes are
    matched to it by host and pid. An agent without a heartbeat for
    supervisor.stale_after is "stale", for supervisor.gone_after "gone";
    after agent.bye it is "stopped". Entries of agents that are gone or
    stopped and not supervised are dropped after an hour (the table stays
    bounded; the database keeps the history).
*/
#ifndef KZ_SUPERVISOR_H_INCLUDED
#define KZ_SUPERVISOR_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "kz_bus.h"
#include "kz_config.h"
#include "kz_msg.h"

typedef struct kz_supervisor kz_supervisor_t;

typedef struct {
    const char *host;        /* this host's name (gethostname, or --host) */
    bool node;               /* --node: only agents whose host is this host; no broker */
    const char *bin_dir;     /* where kaizen-broker and kaizen-NAME live (the orchestrator's dir) */
    const char *config_path; /* passed as -c to children (NULL: none, they use defaults) */
    const char *log_dir;     /* STATE/logs */
} kz_supervisor_opts_t;

/* Called while the supervisor waits (starting a layer, stopping): the
   orchestrator keeps the bus going - recording, answering status - for
   up to TIMEOUT_MS, and feeds agent messages back through
   kz_supervisor_on_message */
typedef void(kz_supervisor_pump_fn)(void *arg, int timeout_ms);
/* Every PUMP argument below may be NULL: the supervisor then sleeps */

/* NULL with ERRBUF (bad options). Starts nothing yet. */
kz_supervisor_t *kz_supervisor_new(const kz_config_t *cfg, const kz_supervisor_opts_t *opts,
                                   char *errbuf, size_t errlen);
/* Frees; children still running are killed (SIGKILL) - call
   kz_supervisor_stop first for an orderly stop */
void kz_supervisor_destroy(kz_supervisor_t **self_p);

/* Start the broker (when configured), waiting until it answers (up to
   supervisor.start_timeout, calling PUMP meanwhile) - the one step that
   must finish before the orchestrator uses the bus. 0, or -1 with ERRBUF
   (e.g. the broker exited at once: its log's last line is quoted) */
int kz_supervisor_start_broker(kz_supervisor_t *self, kz_supervisor_pump_fn *pump, void *arg,
                               char *errbuf, size_t errlen);

/* Adopt PID, a kaizen-broker a previous orchestrator of this state
   directory started and that outlived it (kill -9), instead of starting
   one: `kaizen up` found it answering on the configured endpoints and
   kept it, so nothing it queued while no orchestrator ran is lost. Call
   before kz_supervisor_start_broker, which then only waits until it
   answers. It is no child of ours: it is watched by its pid and its
   start time in /proc (not waitpid), stopped like our own (SIGTERM,
   then SIGKILL), and when it dies the next broker is started as ours,
   after the usual back-off. 0, or -1 with ERRBUF (it is gone) */
int kz_supervisor_adopt_broker(kz_supervisor_t *self, pid_t pid, char *errbuf, size_t errlen);

/* Begin starting the agents in layer order; the layers after the first
   are started from kz_supervisor_tick as the earlier ones come up. BUS
   is used to publish agent.exited / agent.failed. */
void kz_supervisor_start(kz_supervisor_t *self, kz_bus_t *bus);

/* Reap exited children (non-blocking), restart those whose back-off is
   over, start the next layer when due, age the tracked agents. Returns
   the milliseconds until it wants to be called again. Call it after
   every bus wait (SIGCHLD interrupts the wait). */
int64_t kz_supervisor_tick(kz_supervisor_t *self);

/* An agent.* message from the bus (any other type is ignored) */
void kz_supervisor_on_message(kz_supervisor_t *self, const kz_msg_t *msg);

/* One message from SRC seen on the bus (any type): feeds the agents'
   messages_per_s. Cheap (one lookup); call it for every delivery. */
void kz_supervisor_count(kz_supervisor_t *self, const char *src);

/* Stop the supervised agents in reverse layer order, each SIGTERM then
   SIGKILL after supervisor.stop_timeout, calling PUMP while waiting (the
   orchestrator records their last messages meanwhile). Returns when none
   is left; no agent is restarted afterwards. */
void kz_supervisor_stop_agents(kz_supervisor_t *self, kz_supervisor_pump_fn *pump, void *arg);
/* Then the broker, the same way (the orchestrator drains the recorder
   group and flushes before calling this) */
void kz_supervisor_stop_broker(kz_supervisor_t *self, kz_supervisor_pump_fn *pump, void *arg);

/* Append to ARR (an array in MSG) one map per agent, supervised here or
   heard of:
     name, layer, instance (supervised only), id, host, pid, state
     ("starting" "idle" "busy" "stopping" "stale" "gone" "stopped"
     "backoff" "failed"), supervised (bool), uptime_ms, restarts,
     last_heartbeat_ms_ago, cycles, last_cycle_ms, last_result,
     messages_per_s (messages it published, last 10 s), last_exit
     ("exit 1", "killed by signal 9"), failed_reason, adopted (the
     broker only: true when it is a previous run's, adopted)
   Absent facts are left out. 0 / -1 */
int kz_supervisor_status(kz_supervisor_t *self, kz_msg_t *msg, kz_val_t *arr);

/* Counters for the report: restarts and failures since start */
uint64_t kz_supervisor_restarts(const kz_supervisor_t *self);
uint64_t kz_supervisor_failures(const kz_supervisor_t *self);

#endif
