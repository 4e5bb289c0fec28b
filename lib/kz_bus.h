/*  kz_bus.h - the bus client every kaizen process links

    One kz_bus_t per process (not thread-safe; use it from one thread).
    It owns the sockets to the broker:
      - a publisher (XPUB connected to the broker's XSUB "pub" endpoint;
        it waits for the broker's subscription before the first publish
        so early events are not lost to the slow-joiner effect)
      - a subscriber (SUB on the "sub" endpoint) for topic prefixes
      - one DEALER per queue-group membership (KZG01 on "router")
      - one DEALER per offered service (Majordomo worker, MDPW01)
      - one DEALER for calling services (Majordomo client, MDPC01); each
        retry and each raw call gets a fresh one, so late replies to an
        earlier attempt cannot be taken for this one's
    Heartbeats, liveness checks and reconnection to a restarted broker
    happen inside kz_bus_recv and kz_bus_call; call one of them at least
    every heartbeat interval. Code that handles one delivery or request
    for longer than that calls kz_bus_keepalive meanwhile, or the broker
    declares it dead and hands the work to someone else.
*/
#ifndef KZ_BUS_H_INCLUDED
#define KZ_BUS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kz_config.h"
#include "kz_msg.h"

typedef struct kz_bus kz_bus_t;

/* What the latest kz_bus_call went through. When the client socket's
   connection to the broker drops while a call is outstanding (a broker
   restart: the request, or its reply, is gone with it), the call does
   not wait out its timeout: it re-asks at once, through the new
   connection, under a new id with body field "retry_of" = the first
   request's id (PROTOCOL.md 1.3 "Re-asking"), and takes a reply to any
   of the ids. ASKS counts the ids sent (1: no re-ask); ANSWERED is the
   1-based ask whose id the reply's corr is (0: no reply): a re-ask
   answered from the worker's memory of the first run has ASKS 2,
   ANSWERED 1; a re-ask that ran again has ASKS 2, ANSWERED 2. */
typedef struct {
    int asks;
    int answered;
} kz_bus_call_info_t;

typedef enum {
    KZ_DELIVERY_EVENT,  /* from a subscription: at-most-once, no ack */
    KZ_DELIVERY_GROUP,  /* from a queue group: kz_bus_ack when handled, else kz_bus_nack */
    KZ_DELIVERY_REQUEST /* a service request: kz_bus_reply */
} kz_delivery_kind_t;

typedef struct {
    kz_delivery_kind_t kind;
    char topic[256]; /* event topic, or service name for requests */
    char group[256]; /* queue group name (GROUP) */
    kz_msg_t *msg;   /* decoded envelope, owned by the delivery */
    /* private to kz_bus */
    uint64_t delivery_id;
    int socket_index;
    uint32_t generation; /* connection generation it arrived on */
    uint8_t *reply_to;
    size_t reply_to_len;
    uint8_t settled; /* 0, or the KZG01 ACK / NACK already given */
} kz_delivery_t;

/* Create a bus client with CFG (copied) and AGENT_ID ("name@host#pid"),
   connecting lazily. NULL with ERRBUF on failure (bad endpoint, CURVE
   certificate missing). */
kz_bus_t *kz_bus_new(const kz_bus_config_t *cfg, const char *agent_id, char *errbuf, size_t errlen);
/* Flushes pending publishes (bounded by the linger of 2 s), sends LEAVE /
   DISCONNECT to the broker, closes every socket */
void kz_bus_destroy(kz_bus_t **self_p);

const char *kz_bus_agent_id(const kz_bus_t *self);

/* Publish MSG on topic = its type; sets src when unset; takes ownership
   (*msg_p = NULL). Blocks up to the heartbeat interval when the socket is
   full, then fails. 0 / -1 (encode error or full). */
int kz_bus_publish(kz_bus_t *self, kz_msg_t **msg_p);
/* Hand over what this bus published: returns 0 once the broker has
   confirmed that every event published before the call is in its
   fsynced durable log, or matched no durable group (an event is handed
   over once kz_bus_publish and the next kz_bus_flush have returned).
   Until confirmed, published events stay in an outbox (at most 65536;
   the oldest beyond that is forgotten, warned) and are sent again when
   the broker reconnects or restarts - so a subscriber MAY see one twice.
   Logs nothing: -1 when TIMEOUT_MS passed without confirmation (or a
   signal came): the events stay in the outbox, the next flush tries
   again; -2 when the broker could not log some event (its durable log
   is full or failing: see its log). kz_bus_flush_error says so in words.
   docs/durability.md. */
int kz_bus_flush(kz_bus_t *self, int timeout_ms);
/* "no confirmation from the broker within N ms" or the durable log's
   failure, for RC of kz_bus_flush, in BUF */
const char *kz_bus_flush_error(const kz_bus_t *self, int rc, int timeout_ms, char *buf, size_t len);
/* The flush at the end of a step (agent runtime, orchestrator, CLI): a
   no-op when nothing is unconfirmed; else kz_bus_flush with TIMEOUT_MS -
   or 200 ms while the previous one failed (the broker is away: a step
   does not wait for it each time) - and a warning (at most every 10 s)
   when it fails. The events stay in the outbox then. As kz_bus_flush. */
int kz_bus_flush_step(kz_bus_t *self, int timeout_ms);
/* Events published and not yet confirmed by a flush */
size_t kz_bus_unconfirmed(const kz_bus_t *self);

/* Publish already encoded bytes on TOPIC (bench and tools) */
int kz_bus_publish_raw(kz_bus_t *self, const char *topic, const void *data, size_t len);
/* Wait up to TIMEOUT_MS for the broker to accept our publications. 0 / -1 */
int kz_bus_wait_publisher(kz_bus_t *self, int timeout_ms);

/* Receive events whose topic starts with PREFIX ("" = all). 0 / -1 */
int kz_bus_subscribe(kz_bus_t *self, const char *prefix);
int kz_bus_unsubscribe(kz_bus_t *self, const char *prefix);

/* Join queue GROUP for events whose topic starts with PREFIX: each such
   event goes to one live member of the group, and again to another
   member if this one dies before acknowledging. 0 / -1 */
int kz_bus_join(kz_bus_t *self, const char *group, const char *prefix);
/* Leave GROUP: unacknowledged deliveries go to other members now */
int kz_bus_leave(kz_bus_t *self, const char *group);

/* Serve SERVICE as a Majordomo worker. 0 / -1. The bus remembers the
   requests it hands out and the replies sent (kz_reqmem.h): a re-ask
   ("retry_of") or a second delivery of a request already answered is
   answered from that memory without reaching the application, and one of
   a request the application still works on waits until it is answered
   (PROTOCOL.md 1.3 "Re-asking"). */
int kz_bus_offer(kz_bus_t *self, const char *service);

/* Wait up to TIMEOUT_MS (-1 = forever) for the next event, group delivery
   or service request. Returns 1 with *DELIVERY_P set (free it with
   kz_bus_delivery_destroy, after kz_bus_ack / kz_bus_nack or
   kz_bus_reply), 0 on
   timeout, -1 on interrupt (EINTR: check your stop flag) or fatal error.
   Messages that fail to decode are logged, counted and dropped (group
   deliveries of such messages are acknowledged so they do not loop). */
int kz_bus_recv(kz_bus_t *self, kz_delivery_t **delivery_p, int timeout_ms);
void kz_bus_delivery_destroy(kz_delivery_t **delivery_p);

/* Acknowledge a group delivery: handled, the broker forgets it. Acks are
   batched and go out within a few ms (or with the next kz_bus_recv,
   kz_bus_call or kz_bus_keepalive). 0 / -1 */
int kz_bus_ack(kz_bus_t *self, const kz_delivery_t *delivery);
/* Refuse a group delivery: not handled, the broker hands it to a member
   again (possibly this one) ahead of newer events, until it has been
   delivered broker.max_deliveries times; then it drops it as a poison
   message. Sent at once. A delivery gets either an ack or a nack: the
   second of the other kind fails (-1), a repeat of the same is a no-op.
   Deliveries from before a reconnect are not sent (the broker already
   requeued them). 0 / -1 */
int kz_bus_nack(kz_bus_t *self, const kz_delivery_t *delivery);

/* Reply to a request with REPLY (ownership taken; corr is set to the
   request's id when unset). A request gets one reply: a second one
   fails. 0 / -1 */
int kz_bus_reply(kz_bus_t *self, const kz_delivery_t *request, kz_msg_t **reply_p);
/* True once a reply to REQUEST was sent (the agent runtime answers
   requests its handler left unanswered with an error, so the worker is
   never left holding a request the client waits for) */
bool kz_bus_replied(const kz_delivery_t *request);

/* True when nobody waits for REQUEST's reply any more: its client said so
   with a request.cancel event (same id, same src; a bus that offers a
   service hears them), or the request's deadline passed more than 2 s
   ago. WHY (may be NULL) says which. Reads waiting events without
   blocking (they stay queued for kz_bus_recv); cheap enough to call from
   a kz_proc tick. A worker that finds its request cancelled stops the
   work and answers with an error (the broker drops a reply nobody waits
   for). */
bool kz_bus_request_cancelled(kz_bus_t *self, const kz_delivery_t *request, char *why, size_t len);

/* Publish request.cancel {id REQUEST_ID, service SERVICE (may be NULL),
   reason REASON (may be NULL)}: the broker drops the request if it is
   still queued, and the worker holding it stops. kz_bus_call does this
   itself when it gives up; a caller that interrupts a call does it. 0 / -1 */
int kz_bus_cancel(kz_bus_t *self, const char *service, const char *request_id, const char *reason);

/* Keep our worker and group-member registrations alive during long work
   (handling one request or group delivery for more than a heartbeat).
   Sends a HEARTBEAT on every worker and group-member socket whose last
   send is at least one heartbeat interval old, and flushes batched acks.
   Never blocks on input and never reads: incoming messages (including the
   broker's heartbeats) stay queued for the next kz_bus_recv, and broker
   liveness is only judged there. Cheap when nothing is due (a clock read),
   so call it often - at least once per bus.heartbeat interval while the
   work runs (kz_proc's tick does that for subprocesses). 0, or -1 when a
   send failed (logged; the next call tries again). */
int kz_bus_keepalive(kz_bus_t *self);

/* Call SERVICE with REQUEST (ownership taken), waiting up to TIMEOUT_MS
   per attempt (<0: bus.call_timeout) and, when no reply came, making up
   to RETRIES more attempts (<0: bus.call_retries), each on a fresh
   socket: 1 + RETRIES attempts in all. Every send carries its ts and the
   attempt's deadline (envelope "deadline"), so the broker answers at once
   with an "error" reply when the request waits in its queue past that,
   when no worker serves SERVICE for broker.request_ttl, or when its queue
   is full; a "queue_full" refusal is sent again after a back-off (1 s,
   doubling to 8 s) while the attempt has time left. Keeps heartbeats of
   the other sockets going while it waits; deliveries that arrive
   meanwhile are queued for kz_bus_recv. Returns the reply (whose corr
   equals the request's id: replies to earlier requests are dropped; the
   broker's and the worker's "error" replies included) or NULL with
   ERRBUF, e.g. "no reply from 'exec.refactor' after 3 attempts" - after
   publishing request.cancel for it - or "call to 'X' interrupted" (a
   signal: the caller decides whether to cancel). */
kz_msg_t *kz_bus_call(kz_bus_t *self, const char *service, kz_msg_t **request_p, int timeout_ms,
                      int retries, char *errbuf, size_t errlen);

/* What the latest kz_bus_call went through (see kz_bus_call_info_t) */
const kz_bus_call_info_t *kz_bus_call_info(const kz_bus_t *self);

/* Call a service that answers raw frames (mmi.service, mmi.stats, stock
   workers): BODY is sent as one frame, one attempt of up to TIMEOUT_MS
   (<0: bus.call_timeout), on a client socket of its own that is closed
   afterwards - raw replies carry no correlation id, so a late reply to
   an earlier call must have no way in. The first reply frame is
   returned malloc'd in *REPLY_P / *REPLY_LEN. 0 / -1 with ERRBUF */
int kz_bus_call_raw(kz_bus_t *self, const char *service, const void *body, size_t len,
                    int timeout_ms, uint8_t **reply_p, size_t *reply_len, char *errbuf,
                    size_t errlen);

/* Wait until our subscription to "agent.run" is delivered: publish
   agent.run {agent: PROBE} (a name no agent has) every EVERY_MS until it
   comes back to us, at most TIMEOUT_MS. Every other delivery that arrives
   meanwhile goes to OTHER(delivery, ARG) (NULL: dropped), which must not
   keep it. The slow-joiner effect makes this needed before anything that
   relies on events reaching us (an agent's hello, run-once's request).
   0 echoed, 1 timed out, -1 interrupted by a signal, -2 timed out without
   ever managing to publish (no broker) */
int kz_bus_await_echo(kz_bus_t *self, const char *probe, int timeout_ms, int every_ms,
                      void (*other)(kz_delivery_t *delivery, void *arg), void *arg);

/* Counters: messages dropped because they failed to decode, reconnects */
uint64_t kz_bus_dropped(const kz_bus_t *self);
uint64_t kz_bus_reconnects(const kz_bus_t *self);

/* Apply CURVE client settings of CFG to a zsock_t* (void* to keep czmq.h
   out of this header). 0 / -1 with ERRBUF. */
int kz_bus_curve_client(void *zsock, const kz_bus_config_t *cfg, char *errbuf, size_t errlen);

/* The longest path of an ipc:// endpoint (sun_path less its NUL) */
#define KZ_IPC_PATH_MAX 107

/* Check an ipc:// endpoint before connecting or binding: its path fits
   KZ_IPC_PATH_MAX and, when it exists, this user may reach it (a private
   bus directory of another user answers "Permission denied" here, not
   an endless reconnect). 0 for other transports; -1 with ERRBUF. */
int kz_bus_ipc_check(const char *endpoint, const char *key, char *errbuf, size_t errlen);

/* Make DIR (the default endpoints' STATE/bus) private: created with mode
   0700 (its parent must exist); an existing one must be a
   directory owned by this user, inaccessible to group and other, else -1
   with ERRBUF saying what is wrong and how to fix it. */
int kz_bus_dir_ensure(const char *dir, char *errbuf, size_t errlen);

#endif
