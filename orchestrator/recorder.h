/*  recorder.h - every bus message into PostgreSQL, exactly once

    The orchestrator joins queue group "kaizen.recorder" for every topic
    and hands each group delivery to kz_recorder_add. The recorder keeps
    deliveries in a batch (at most database.batch_size) and makes them
    durable together - in one transaction: COPY into a temporary staging
    table, INSERT INTO events ... ON CONFLICT (id) DO NOTHING, then the
    typed rows (agents, autonomous_agent_logs, scans, findings, metrics,
    improvement_suggestions, plan_transitions, code_quality_snapshots,
    learned_patterns) derived from the messages that were new - or, while
    the database is unreachable, by appending them to the spool (lib/kz_spool.h)
    and fdatasync. Only then are the deliveries acknowledged to the broker
    (kz_bus_ack); a crash before that makes the broker deliver them again,
    and the id key makes the second store a no-op.

    Order: while the spool holds records, new batches go to the spool
    too, behind them, and the spool is replayed (oldest first, a batch per
    transaction) before anything else reaches the database; events.seq
    is therefore the arrival order.

    Memory is bounded by the batch: the broker delivers at most
    broker.group_inflight unacknowledged messages, and when neither the
    database nor the spool can take a batch (disk full, spool_max) the
    recorder holds it unacknowledged - the broker queues the rest - and
    retries, logging the reason once per state change.
*/
#ifndef KZ_RECORDER_H_INCLUDED
#define KZ_RECORDER_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "kz_bus.h"
#include "kz_config.h"
#include "kz_msg.h"

#define KZ_RECORDER_GROUP "kaizen.recorder"

typedef struct kz_recorder kz_recorder_t;

/* A recorder writing to the database of CFG (kz_db_connect, application
   "kaizen-orchestrator") and spooling to SPOOL_PATH. It connects,
   applies the migrations and replays an unfinished spool lazily from
   kz_recorder_tick; an unreachable database is not an error here. NULL
   with ERRBUF when the spool cannot be opened. */
kz_recorder_t *kz_recorder_new(const kz_config_t *cfg, kz_bus_t *bus, const char *spool_path,
                               char *errbuf, size_t errlen);
/* Flushes what it can (kz_recorder_flush), then frees; deliveries still
   held are left unacknowledged (the broker redelivers them) */
void kz_recorder_destroy(kz_recorder_t **self_p);

/* Take a group delivery (ownership: *DELIVERY_P = NULL). Writes the batch
   at once when it is full. 0 / -1 (never loses the delivery: on -1 it is
   kept for the next attempt) */
int kz_recorder_add(kz_recorder_t *self, kz_delivery_t **delivery_p);

/* Housekeeping: write a partial batch older than database.flush_interval,
   reconnect with back-off (doubling up to database.retry_max), replay
   the spool. Returns the milliseconds until it wants to be called again
   (the caller waits at most that long on the bus). */
int64_t kz_recorder_tick(kz_recorder_t *self);

/* Write the current batch now (to the database or the spool). 0 / -1 */
int kz_recorder_flush(kz_recorder_t *self);

/* Fill MAP (a map in MSG) with the recorder's state for kaizen.status:
     database: {state: "up"|"down"|"connecting", where: kz_db_describe,
                error: last error or absent, schema_version,
                recorded: messages stored since start, batches,
                last_commit_ms_ago, rate_per_s (last 10 s)}
     spool: {state: "empty"|"spooling"|"replaying"|"full", path, bytes,
             pending, corrupt_skipped, appended, replayed}
     held: deliveries waiting to be made durable
   0 / -1 */
int kz_recorder_status(kz_recorder_t *self, kz_msg_t *msg, kz_val_t *map);

/* True when the last attempt to reach the database succeeded */
bool kz_recorder_db_up(const kz_recorder_t *self);

#endif
