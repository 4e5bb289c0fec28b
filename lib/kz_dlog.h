/*  kz_dlog.h - the broker's durable-group log

    An append-only, checksummed log of the events queued for the broker's
    durable groups and of their acknowledgements, in segment files
    DIR/SEGMENT.log (SEGMENT = 16 hex digits, increasing). After a restart
    the broker replays it: every event not acknowledged is queued again,
    in log order. docs/durability.md explains the design.

    File format (little-endian), after an 8-byte segment header "KZDLOG01":
      record  = u32 magic 0x4B5A444Cu ("KZDL") | u32 length N | u32 CRC-32C
                of the payload | N bytes payload
      payload = u8 type | u64 lsn | ...
        type 1 EVENT: u8 group length | group | u8 topic length | topic | body
        type 2 ACK:   (nothing more) the event LSN was handled or dropped
    LSNs (log sequence numbers) increase by one per event, across
    restarts. A record whose magic, length or checksum is wrong is corrupt:
    the reader scans forward for the next whole record (as kz_spool does),
    counts it, and goes on; a torn record at the end of a segment (a crash
    mid-write) is skipped the same way. A new process never appends to an
    old segment: it starts a new one.

    Writes are buffered in memory and go to the file with kz_dlog_sync
    (write + fdatasync), kz_dlog_sync_start (write, then fdatasync in the
    log's own thread, so the caller's loop never waits for the disk) or
    when the buffer is full (write only). A segment
    is deleted once all its events are acknowledged and every older
    segment is gone, so the acknowledgements it holds never outlive
    events they refer to. One thread uses a log (its sync thread is internal). Errors: ERRBUF, -1; never logs.
*/
#ifndef KZ_DLOG_H_INCLUDED
#define KZ_DLOG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kz_dlog kz_dlog_t;

/* One event read back at open */
typedef struct {
    uint64_t lsn;
    const char *group; /* NUL-terminated */
    const char *topic; /* NUL-terminated */
    const void *body;
    size_t body_len;
} kz_dlog_event_t;

/* Called for each unacknowledged event at open, in LSN order; the
   pointers are valid during the call only. Returns 0, or -1 to stop. */
typedef int(kz_dlog_replay_fn)(void *arg, const kz_dlog_event_t *event);

typedef struct {
    uint64_t bytes;    /* on disk, all segments (plus what is buffered) */
    uint64_t segments; /* segment files */
    uint64_t unacked;  /* events logged and not acknowledged */
    uint64_t appended, acked, syncs;
    uint64_t corrupt;  /* corrupt or torn records skipped at open */
    uint64_t replayed; /* events handed to the replay callback at open */
    uint64_t full;     /* appends refused by the byte cap */
} kz_dlog_stats_t;

/* Open the log in DIR (created, mode 0700), with a cap of MAX_BYTES on
   disk (0 = none) and segments of about SEGMENT_BYTES (0 = 64 MiB).
   Replays every unacknowledged event through FN (may be NULL), deletes
   the segments nothing refers to any more, and starts a new segment.
   NULL with ERRBUF. */
kz_dlog_t *kz_dlog_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                        kz_dlog_replay_fn *fn, void *arg, char *errbuf, size_t errlen);
/* Syncs what is buffered, then closes */
void kz_dlog_close(kz_dlog_t **self_p);

/* Append an event for GROUP; its LSN in *LSN. Buffered: durable after the
   next kz_dlog_sync. -1 with ERRBUF when the cap would be exceeded ("log
   full: ...") or a write failed; nothing is logged then. */
int kz_dlog_append(kz_dlog_t *self, const char *group, const void *topic, size_t topic_len,
                   const void *body, size_t body_len, uint64_t *lsn, char *errbuf, size_t errlen);
/* The event LSN was handled (or dropped for good): append an ACK record
   (buffered; not synced on its own: a lost ACK only means a redelivery)
   and delete the segments no longer needed. An LSN not known is ignored. */
int kz_dlog_ack(kz_dlog_t *self, uint64_t lsn, char *errbuf, size_t errlen);
/* Write what is buffered and fdatasync: everything appended so far is
   durable on 0. A no-op when nothing was appended since the last sync. */
int kz_dlog_sync(kz_dlog_t *self, char *errbuf, size_t errlen);
/* Asynchronous sync: write what is buffered and have the log's thread
   fdatasync it; *TICKET is satisfied once kz_dlog_synced reports a done
   ticket >= it (at once when nothing was appended since the last sync
   started). kz_dlog_sync_fd is readable (an eventfd) when a sync
   finished. kz_dlog_synced: the highest done ticket in *DONE; -1 with
   errno when an fdatasync failed since the last call (the tickets it
   covered are not durable: callers report failure). */
int kz_dlog_sync_start(kz_dlog_t *self, uint64_t *ticket, char *errbuf, size_t errlen);
int kz_dlog_synced(kz_dlog_t *self, uint64_t *done);
int kz_dlog_sync_fd(const kz_dlog_t *self);
/* True when records were appended since the last sync */
bool kz_dlog_dirty(const kz_dlog_t *self);

void kz_dlog_stats(const kz_dlog_t *self, kz_dlog_stats_t *stats);

#endif
