/*  kz_broker.c - the kaizen bus broker: events, queue groups, Majordomo
    services and the tap (see kz_broker.h and proto/PROTOCOL.md)

    Hot paths (events, MDP requests and replies, group deliveries) use raw
    zmq_msg_t: frames are moved or zmq_msg_copy'd (reference counted above
    33 bytes), never re-allocated, and the objects that hold them (group
    items, requests) come from free lists. The tap header is only built
    while the tap XPUB has at least one subscription.

    Ownership: the broker owns every group, member, worker, service and
    queued message; a message is either in exactly one queue, one member's
    in-flight set, or one worker's "current" slot.
*/
#include "kz_broker.h"

#include <assert.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "kz_agent.h"
#include "kz_bus.h"
#include "kz_dlog.h"
#include "kz_log.h"
#include "kz_msg.h"
#include "kz_state.h"
#include "kz_wire.h"

#define S_BATCH        256  /* messages drained per readable socket per poll */
#define S_MAX_FRAMES   64   /* frames in one router message; more is malformed */
#define S_MAX_TOPICS   4096 /* distinct topics counted before "(other)" */
#define S_MAX_SERVICES 4096
#define S_MAX_GROUPS   1024
#define S_POOL_KEEP    4096 /* free objects kept for reuse */
#define S_ID_MAX       256  /* zmq routing ids are at most 255 bytes */

/* Drop reasons, counted and reported by mmi.stats under "drops" */
typedef enum {
    S_DROP_EVENT = 0,
    S_DROP_PROTOCOL,
    S_DROP_REQUEST,
    S_DROP_WORKER_CMD,
    S_DROP_GROUP_CMD,
    S_DROP_DELIVERY_ID,
    S_DROP_UNKNOWN_WORKER,
    S_DROP_UNKNOWN_MEMBER,
    S_DROP_TOO_MANY_FRAMES,
    S_DROP_SERVICE_QUEUE,
    S_DROP_GROUP_QUEUE,
    S_DROP_REQUEST_EXPIRED,
    S_DROP_TOO_MANY_NAMES,
    S_DROP_JOIN_PREFIX,
    S_DROP_POISON,
    S_DROP_CLIENT_GONE,
    S_DROP_CLIENT_HWM,
    S_DROP_NO_WORKER,
    S_DROP_REQUEST_CANCELLED,
    S_DROP_LOG_FULL,
    S_DROP_COUNT
} s_drop_t;

static const char *const s_drop_names[S_DROP_COUNT] = {
    "malformed event",         "unknown protocol",
    "malformed request",       "malformed worker command",
    "malformed group command", "bad delivery id",
    "unknown worker",          "unknown member",
    "too many frames",         "service queue full",
    "group queue full",        "request expired",
    "too many names",          "join prefix mismatch",
    "poison message",          "client gone",
    "client at hwm",           "no worker",
    "request cancelled",       "durable log full",
};

/* A ring of pointers; capacity is a power of two */
typedef struct {
    void **buf;
    size_t cap, head, len;
} s_ring_t;

typedef struct {
    uint64_t msgs, bytes;
} s_topic_stats_t;

/* One event queued for a group or in flight at a member */
typedef struct s_item {
    struct s_item *next_free;
    zmq_msg_t topic, body;
    uint64_t id;         /* delivery id, set when delivered */
    uint64_t lsn;        /* in the durable log (0: not logged) */
    unsigned deliveries; /* times handed to a member so far */
    bool redelivery, acked;
} s_item_t;

typedef struct s_group s_group_t;
typedef struct s_gpeer s_gpeer_t;

typedef struct {
    s_gpeer_t *peer;
    s_group_t *group;
    s_ring_t inflight; /* s_item_t *, ascending ids; acked ones are tombstones */
    size_t live;       /* unacked items in inflight */
    size_t credit;
    bool stalled; /* its pipe was full (EAGAIN): skipped until the next tick */
} s_member_t;

struct s_group {
    char *name;
    char *prefix; /* fixed by the JOIN that created the group */
    size_t prefix_len;
    s_member_t **members;
    size_t nmembers, rr;
    s_ring_t queue; /* s_item_t * */
    uint64_t delivered, redelivered, acked, nacked;
    int64_t last_used; /* for reclaiming an empty, idle group */
    bool durable;      /* declared in broker.durable_groups: logged, never forgotten */
};

/* A DEALER speaking KZG01 */
struct s_gpeer {
    unsigned char id[S_ID_MAX];
    size_t idlen;
    char hex[2 * S_ID_MAX + 1];
    int64_t last_recv, last_send;
    s_member_t **members;
    size_t nmembers;
    size_t index; /* in broker->gpeers */
    bool gone;    /* a send found no route: removed by s_reap */
};

typedef struct s_service s_service_t;

typedef struct s_request {
    struct s_request *next_free;
    s_service_t *service;
    zmq_msg_t client;
    bool delim; /* the client sent an empty delimiter (REQ, DEALER) */
    zmq_msg_t inl[4];
    zmq_msg_t *body;
    size_t nbody;
    int64_t arrived; /* queued at (requeued: the time of the requeue) */
    uint64_t seq;
    /* a kaizen client's request (its one body frame is an envelope):
       answered with an error envelope when it expires or is refused */
    bool kaizen;
    char id[65];     /* the envelope's id ("" for other clients) */
    char src[256];   /* the envelope's src: only it may cancel the request */
    int64_t expires; /* broker time its deadline passes; 0 = none (request_ttl) */
} s_request_t;

struct s_service {
    char *name;
    s_ring_t requests; /* s_request_t *, oldest first */
    s_ring_t waiting;  /* s_worker_t *, longest waiting first */
    size_t nworkers;
    uint64_t nrequests, nreplies, bytes;
    int64_t last_used;       /* for reclaiming a service nobody serves or calls */
    int64_t no_worker_since; /* when its last worker went (or it was created) */
    int64_t next_expiry;     /* no queued request expires before this; 0 = look now */
};

/* A DEALER speaking MDPW01 */
typedef struct {
    unsigned char id[S_ID_MAX];
    size_t idlen;
    char hex[2 * S_ID_MAX + 1];
    s_service_t *service;
    s_request_t *current;
    int64_t last_recv, last_send;
    size_t index; /* in broker->workers */
    bool waiting;
    bool gone; /* a send found no route: removed by s_reap */
} s_worker_t;

/* Bus roles and what they may do (proto/PROTOCOL.md 1.5) */
typedef enum { S_ROLE_AGENT = 0, S_ROLE_OPERATOR, S_ROLE_ORCHESTRATOR, S_ROLE_COUNT } s_role_t;
typedef enum {
    S_ACT_PUBLISH = 0,
    S_ACT_OFFER,
    S_ACT_JOIN,
    S_ACT_CALL,
    S_ACT_TAP,
    S_ACT_COUNT
} s_act_t;

/* One role's patterns per action (tap: a bool); first match wins, a
   leading '!' refuses, a trailing '*' matches a prefix */
typedef struct {
    char **pats[S_ACT_TAP];
    size_t npats[S_ACT_TAP];
    bool tap;
} s_rules_t;

/* A CURVE client key from allow_dir */
typedef struct {
    char name[256];
    s_role_t role;
    uint64_t refused[S_ACT_COUNT];
    int64_t logged[S_ACT_COUNT];        /* last refusal of each act logged (1/s each) */
    uint64_t logged_total[S_ACT_COUNT]; /* refusals of it counted when it was logged */
    uint32_t logged_name[S_ACT_COUNT];  /* hash of the name last logged for each act */
    int64_t lines_since;                /* a second of log lines for this identity ... */
    int lines;                          /* ... and how many it had (at most 20) */
} s_ident_t;

/* Fixed buffer for msgpack tap headers: no allocation on the hot path */
typedef struct {
    char data[2048];
    size_t len;
    bool overflow;
} s_fixbuf_t;

/* Optional tap header fields */
typedef struct {
    const char *peer;
    const char *group;
    uint64_t seq;
    bool has_seq;
    uint64_t size;
    int redelivery; /* -1 absent, 0 false, 1 true */
} s_tapinfo_t;

struct kz_broker_t {
    volatile sig_atomic_t stopping;
    zsock_t *pub, *sub, *router, *tap;
    void *pub_h, *sub_h, *router_h, *tap_h;
    zactor_t *auth;
    zcert_t *cert;
    /* CURVE identities and what their roles may do (see "rules" below);
       rules_on is false without CURVE: then every peer holds every role */
    bool rules_on;
    char *allow_dir;
    zhashx_t *idents; /* Z85 public key -> s_ident_t */
    int64_t idents_loaded;
    s_rules_t rules[S_ROLE_COUNT];
    uint64_t refused;
    char *ep_pub, *ep_sub, *ep_router, *ep_tap;

    int heartbeat_ms, liveness;
    size_t group_queue_limit, group_inflight, service_queue_limit;
    unsigned max_deliveries;
    int request_ttl_ms, stats_interval_ms;
    char id[320];         /* our src in the error envelopes we answer requests with */
    int64_t name_idle_ms; /* unused services and groups are forgotten after this */
    bool reap;            /* some worker or group peer is marked gone */

    int64_t now, started, next_stats;
    uint64_t next_delivery, next_seq;
    long tap_subs;

    zhashx_t *topics;   /* name -> s_topic_stats_t */
    zhashx_t *services; /* name -> s_service_t */
    zhashx_t *workers_by_id;
    zhashx_t *gpeers_by_id;
    s_worker_t **workers;
    size_t nworkers, capworkers;
    s_gpeer_t **gpeers;
    size_t ngpeers, capgpeers;
    s_group_t **groups;
    size_t ngroups, capgroups;

    uint64_t drops[S_DROP_COUNT];
    int64_t drop_logged[S_DROP_COUNT];
    uint64_t drop_logged_count[S_DROP_COUNT];
    uint64_t events_in, event_bytes;

    s_item_t *free_items;
    size_t nfree_items;
    s_request_t *free_requests;
    size_t nfree_requests;

    /* durable groups (docs/durability.md) */
    kz_dlog_t *dlog;
    bool dlog_failed;    /* an append failed since the last sync round */
    uint8_t instance[8]; /* random per broker start, in every SYNCED */
    struct s_sync {
        unsigned char id[S_ID_MAX];
        size_t idlen;
        uint8_t token[8];
        bool assigned;   /* a sync round gave it its ticket */
        uint64_t ticket; /* confirmed once the log's syncs reach it */
        uint8_t status;
    } * syncs; /* flush markers not yet confirmed, in arrival order */
    size_t nsyncs, capsyncs;
    bool syncs_new; /* some marker has no ticket yet */
    uint64_t syncs_confirmed;
};

/* ---------------------------------------------------------------- utils */

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t s_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void s_hex(const unsigned char *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * len] = '\0';
}

static bool s_frame_is(zmq_msg_t *msg, const char *text)
{
    size_t len = strlen(text);
    return zmq_msg_size(msg) == len && memcmp(zmq_msg_data(msg), text, len) == 0;
}

static void s_free_ptr(void **item)
{
    free(*item);
    *item = NULL;
}

/* Send one frame from a buffer; never blocks */
static void s_send_buf(void *sock, const void *data, size_t len, bool more)
{
    zmq_send(sock, data, len, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
}

/* Start a router message to peer ID. The router is ZMQ_ROUTER_MANDATORY,
   so this first frame tells whether the message can go at all: 0 = go on
   with the other frames (zmq takes the rest of a started message), -1 with
   *ERR = EHOSTUNREACH (no such connection: the peer is gone) or EAGAIN (the
   peer's pipe is at its high-water mark). On -1 nothing was queued and the
   caller MUST NOT send the other frames. */
static int s_route(kz_broker_t *self, const void *id, size_t idlen, int *err)
{
    if (zmq_send(self->router_h, id, idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        *err = zmq_errno();
        return -1;
    }
    return 0;
}

/* Send a reference-counted copy of MSG, keeping MSG */
static void s_send_copy(void *sock, zmq_msg_t *msg, bool more)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, msg);
    if (zmq_msg_send(&copy, sock, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) == -1)
        zmq_msg_close(&copy);
}

/* Send MSG itself (ownership passes to zmq; MSG is left empty) */
static void s_send_move(void *sock, zmq_msg_t *msg, bool more)
{
    if (zmq_msg_send(msg, sock, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) == -1) {
        zmq_msg_close(msg);
        zmq_msg_init(msg);
    }
}

/* ----------------------------------------------------------------- ring */

static int s_ring_grow(s_ring_t *r)
{
    size_t cap = r->cap ? r->cap * 2 : 16;
    void **buf = malloc(cap * sizeof(void *));
    if (!buf)
        return -1;
    for (size_t i = 0; i < r->len; i++)
        buf[i] = r->buf[(r->head + i) & (r->cap - 1)];
    free(r->buf);
    r->buf = buf;
    r->cap = cap;
    r->head = 0;
    return 0;
}

static void *s_ring_at(const s_ring_t *r, size_t i)
{
    return r->buf[(r->head + i) & (r->cap - 1)];
}

static int s_ring_push_back(s_ring_t *r, void *p)
{
    if (r->len == r->cap && s_ring_grow(r) == -1)
        return -1;
    r->buf[(r->head + r->len) & (r->cap - 1)] = p;
    r->len++;
    return 0;
}

static int s_ring_push_front(s_ring_t *r, void *p)
{
    if (r->len == r->cap && s_ring_grow(r) == -1)
        return -1;
    r->head = (r->head + r->cap - 1) & (r->cap - 1);
    r->buf[r->head] = p;
    r->len++;
    return 0;
}

static void *s_ring_pop_front(s_ring_t *r)
{
    if (r->len == 0)
        return NULL;
    void *p = r->buf[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    return p;
}

static void *s_ring_pop_back(s_ring_t *r)
{
    if (r->len == 0)
        return NULL;
    r->len--;
    return r->buf[(r->head + r->len) & (r->cap - 1)];
}

/* Remove the element at I keeping order (O(n), used on rare paths) */
static void s_ring_remove_at(s_ring_t *r, size_t i)
{
    for (size_t k = i; k + 1 < r->len; k++)
        r->buf[(r->head + k) & (r->cap - 1)] = r->buf[(r->head + k + 1) & (r->cap - 1)];
    r->len--;
}

/* Remove COUNT elements starting at START by moving the START elements in
   front of them forward: O(START), cheap when the front part is short */
static void s_ring_free(s_ring_t *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- pools */

static s_item_t *s_item_new(kz_broker_t *self)
{
    s_item_t *item = self->free_items;
    if (item) {
        self->free_items = item->next_free;
        self->nfree_items--;
    } else if (!(item = malloc(sizeof(*item))))
        return NULL;
    zmq_msg_init(&item->topic);
    zmq_msg_init(&item->body);
    item->next_free = NULL;
    item->id = 0;
    item->lsn = 0;
    item->deliveries = 0;
    item->redelivery = false;
    item->acked = false;
    return item;
}

/* Close the item's frames (idempotent: acked items are already empty) */
static void s_item_release(s_item_t *item)
{
    zmq_msg_close(&item->topic);
    zmq_msg_close(&item->body);
    zmq_msg_init(&item->topic);
    zmq_msg_init(&item->body);
}

static void s_item_free(kz_broker_t *self, s_item_t *item)
{
    zmq_msg_close(&item->topic);
    zmq_msg_close(&item->body);
    if (self->nfree_items < S_POOL_KEEP) {
        item->next_free = self->free_items;
        self->free_items = item;
        self->nfree_items++;
    } else
        free(item);
}

static s_request_t *s_request_new(kz_broker_t *self, size_t nbody)
{
    s_request_t *req = self->free_requests;
    if (req) {
        self->free_requests = req->next_free;
        self->nfree_requests--;
    } else if (!(req = malloc(sizeof(*req))))
        return NULL;
    req->body = req->inl;
    if (nbody > 4 && !(req->body = malloc(nbody * sizeof(zmq_msg_t)))) {
        free(req);
        return NULL;
    }
    req->nbody = nbody;
    for (size_t i = 0; i < nbody; i++)
        zmq_msg_init(&req->body[i]);
    zmq_msg_init(&req->client);
    req->next_free = NULL;
    req->service = NULL;
    req->delim = true;
    req->arrived = self->now;
    req->seq = 0;
    req->kaizen = false;
    req->id[0] = req->src[0] = '\0';
    req->expires = 0;
    return req;
}

static void s_request_free(kz_broker_t *self, s_request_t *req)
{
    zmq_msg_close(&req->client);
    for (size_t i = 0; i < req->nbody; i++)
        zmq_msg_close(&req->body[i]);
    if (req->body != req->inl)
        free(req->body);
    req->body = req->inl;
    req->nbody = 0;
    if (self->nfree_requests < S_POOL_KEEP) {
        req->next_free = self->free_requests;
        self->free_requests = req;
        self->nfree_requests++;
    } else
        free(req);
}

/* ------------------------------------------------------------ drops/log */

/* Count a drop and log it at most once per second per reason; DETAIL
   (may be NULL) says which message, e.g. the topic of a poison message */
static void s_drop_detail(kz_broker_t *self, s_drop_t reason, const char *peer, const char *detail)
{
    self->drops[reason]++;
    if (self->now - self->drop_logged[reason] >= 1000 || self->drop_logged[reason] == 0) {
        uint64_t since = self->drops[reason] - self->drop_logged_count[reason];
        kz_warn("dropped %s%s%s%s%s (%" PRIu64 " since last report, %" PRIu64 " in total)",
                s_drop_names[reason], peer ? " from " : "", peer ? peer : "", detail ? ": " : "",
                detail ? detail : "", since, self->drops[reason]);
        self->drop_logged[reason] = self->now ? self->now : 1;
        self->drop_logged_count[reason] = self->drops[reason];
    }
}

static void s_drop(kz_broker_t *self, s_drop_t reason, const char *peer)
{
    s_drop_detail(self, reason, peer, NULL);
}

/* ---------------------------------------------------------------- rules */

static const char *const s_role_names[S_ROLE_COUNT] = {"agent", "operator", "orchestrator"};
static const char *const s_act_names[S_ACT_COUNT] = {"publish", "offer", "join", "call", "tap"};

/* The built-in rules. Plan decisions and the router's republished
   replies come only from the orchestrator, approvals only from an
   operator (or the orchestrator), services only from agents (and the
   orchestrator's kaizen.*), the recorder's and the router's groups
   (kaizen.*) only the orchestrator joins, the executors and validators
   (exec.*, validate.*) only the orchestrator's router calls, the tap
   only operators and the orchestrator read. */
#define S_DECISIONS                                                                      \
    "!plan.accepted", "!plan.failed", "!plan.state", "!exec.result", "!validate.result", \
        "!agent.exited", "!agent.failed"
static const char *const s_def_agent_publish[] = {
    S_DECISIONS, "!plan.approved", "!plan.rejected", "!feedback.decision", "*", NULL};
static const char *const s_def_agent_offer[] = {"!kaizen.*", "*", NULL};
static const char *const s_def_agent_join[] = {"!kaizen.*", "*", NULL};
static const char *const s_def_operator_publish[] = {S_DECISIONS, "*", NULL};
static const char *const s_def_none[] = {NULL};
static const char *const s_def_orch_publish[] = {"*", NULL};
static const char *const s_def_orch_offer[] = {"!exec.*", "!validate.*", "*", NULL};
static const char *const s_def_orch_join[] = {"*", NULL};
static const char *const s_def_call[] = {"!exec.*", "!validate.*", "*", NULL};
static const char *const s_def_orch_call[] = {"*", NULL};

static const char *const *const s_def_rules[S_ROLE_COUNT][S_ACT_TAP] = {
    {s_def_agent_publish, s_def_agent_offer, s_def_agent_join, s_def_call},
    {s_def_operator_publish, s_def_none, s_def_none, s_def_call},
    {s_def_orch_publish, s_def_orch_offer, s_def_orch_join, s_def_orch_call},
};
static const bool s_def_tap[S_ROLE_COUNT] = {false, true, true};

static bool s_pattern_match(const char *pat, const char *name, size_t len)
{
    size_t plen = strlen(pat);
    if (plen > 0 && pat[plen - 1] == '*')
        return len >= plen - 1 && memcmp(pat, name, plen - 1) == 0;
    return plen == len && memcmp(pat, name, len) == 0;
}

/* May ROLE do ACT on NAME (LEN bytes, not NUL-terminated)? */
static bool s_rule_allows(const s_rules_t *r, s_act_t act, const char *name, size_t len)
{
    if (act == S_ACT_TAP)
        return r->tap;
    for (size_t i = 0; i < r->npats[act]; i++) {
        const char *pat = r->pats[act][i];
        bool deny = pat[0] == '!';
        if (s_pattern_match(deny ? pat + 1 : pat, name, len))
            return !deny;
    }
    return false;
}

static void s_rules_free(kz_broker_t *self)
{
    for (int r = 0; r < S_ROLE_COUNT; r++)
        for (int a = 0; a < S_ACT_TAP; a++) {
            for (size_t i = 0; i < self->rules[r].npats[a]; i++)
                free(self->rules[r].pats[a][i]);
            free(self->rules[r].pats[a]);
            self->rules[r].pats[a] = NULL;
            self->rules[r].npats[a] = 0;
        }
}

/* Copy LIST (COUNT items, or NULL-terminated when COUNT is SIZE_MAX) */
static int s_rules_set(s_rules_t *r, s_act_t act, const char *const *list, size_t count)
{
    if (count == SIZE_MAX)
        for (count = 0; list[count]; count++)
            ;
    r->pats[act] = calloc(count + 1, sizeof(char *));
    if (!r->pats[act])
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (!(r->pats[act][i] = strdup(list[i])))
            return -1;
        r->npats[act] = i + 1;
    }
    return 0;
}

/* The rules of each role: broker.rules.ROLE where set, else built in */
static int s_rules_init(kz_broker_t *self, const kz_bus_rules_t *cfg)
{
    const kz_role_rules_t *conf[S_ROLE_COUNT] = {&cfg->agent, &cfg->operator, & cfg->orchestrator };
    for (int r = 0; r < S_ROLE_COUNT; r++) {
        char *const *lists[S_ACT_TAP] = {conf[r]->publish, conf[r]->offer, conf[r]->join,
                                         conf[r]->call};
        size_t counts[S_ACT_TAP] = {conf[r]->publish_count, conf[r]->offer_count,
                                    conf[r]->join_count, conf[r]->call_count};
        for (int a = 0; a < S_ACT_TAP; a++) {
            int rc = lists[a]
                         ? s_rules_set(&self->rules[r], (s_act_t)a, (const char *const *)lists[a],
                                       counts[a])
                         : s_rules_set(&self->rules[r], (s_act_t)a, s_def_rules[r][a], SIZE_MAX);
            if (rc == -1)
                return -1;
        }
        self->rules[r].tap = conf[r]->tap ? strcmp(conf[r]->tap, "true") == 0 : s_def_tap[r];
    }
    return 0;
}

static int s_role_parse(const char *text, s_role_t *role)
{
    for (int r = 0; r < S_ROLE_COUNT; r++)
        if (strcmp(text, s_role_names[r]) == 0) {
            *role = (s_role_t)r;
            return 0;
        }
    return -1;
}

/* (Re)read the public certificates of allow_dir: their key, name
   (metadata "name", else the file name) and role (metadata "role", else
   agent). Counters of known keys are kept. */
static void s_idents_load(kz_broker_t *self)
{
    self->idents_loaded = self->now ? self->now : 1;
    DIR *dir = opendir(self->allow_dir);
    if (!dir) {
        kz_warn("unable to read bus.curve.allow_dir '%s': %s", self->allow_dir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || (len > 7 && strcmp(e->d_name + len - 7, "_secret") == 0))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", self->allow_dir, e->d_name) >= (int)sizeof path)
            continue;
        zcert_t *cert = zcert_load(path);
        if (!cert)
            continue;
        const char *role_text = zcert_meta(cert, "role");
        const char *name = zcert_meta(cert, "name");
        s_role_t role = S_ROLE_AGENT;
        if (role_text && s_role_parse(role_text, &role) == -1)
            kz_warn("certificate '%s' has unknown role '%s': it gets role agent", path, role_text);
        s_ident_t *id = zhashx_lookup(self->idents, zcert_public_txt(cert));
        if (!id && (id = calloc(1, sizeof *id)) &&
            zhashx_insert(self->idents, zcert_public_txt(cert), id) == -1) {
            free(id);
            id = NULL;
        }
        if (id) {
            snprintf(id->name, sizeof id->name, "%s", name && *name ? name : e->d_name);
            id->role = role;
        }
        zcert_destroy(&cert);
    }
    closedir(dir);
}

/* The identity MSG came from (its CURVE User-Id, the client's public key
   that zauth admitted); NULL when rules are off. A key not (yet) known is
   looked up again in allow_dir at most once a second, else it is named by
   its key and gets the least role, agent. */
static s_ident_t *s_ident_of(kz_broker_t *self, zmq_msg_t *msg)
{
    const char *key = zmq_msg_gets(msg, "User-Id");
    if (!key || !*key)
        return NULL;
    s_ident_t *id = zhashx_lookup(self->idents, key);
    if (id)
        return id;
    if (self->now - self->idents_loaded >= 1000) {
        s_idents_load(self);
        if ((id = zhashx_lookup(self->idents, key)))
            return id;
    }
    if (!(id = calloc(1, sizeof *id)))
        return NULL;
    snprintf(id->name, sizeof id->name, "key %.8s", key);
    id->role = S_ROLE_AGENT;
    if (zhashx_insert(self->idents, key, id) == -1) {
        free(id);
        return NULL;
    }
    return id;
}

/* May the sender of MSG do ACT on NAME (LEN bytes)? Without rules (no
   CURVE) yes. A refusal is counted for the identity and logged at most
   once a second per identity and act (publish, offer, join, tap), e.g. "refused publish 'plan.approved'
   from 'agent-x' (role agent): only operator, orchestrator may". */
static bool s_allowed(kz_broker_t *self, zmq_msg_t *msg, s_act_t act, const char *name, size_t len)
{
    if (!self->rules_on)
        return true;
    s_ident_t *id = s_ident_of(self, msg);
    if (!id) {
        /* CURVE is on, so every connection has a User-Id: without one
           (out of memory) nothing is allowed */
        self->refused++;
        return false;
    }
    if (s_rule_allows(&self->rules[id->role], act, name, len))
        return true;
    id->refused[act]++;
    self->refused++;
    uint64_t total = id->refused[act];
    /* a name not refused just before is always worth a line (two groups
       joined at once are two lines); the same one again at most once a
       second; and never more than 20 lines a second per identity */
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)name[i]) * 16777619u;
    if (self->now - id->lines_since >= 1000) {
        id->lines_since = self->now;
        id->lines = 0;
    }
    if (id->lines < 20 && (id->logged[act] == 0 || hash != id->logged_name[act] ||
                           self->now - id->logged[act] >= 1000)) {
        id->lines++;
        id->logged_name[act] = hash;
        char who[128] = "";
        size_t off = 0;
        for (int r = 0; r < S_ROLE_COUNT; r++)
            if (s_rule_allows(&self->rules[r], act, name, len))
                off += (size_t)snprintf(who + off, sizeof who - off, "%s%s", off ? ", " : "",
                                        s_role_names[r]);
        kz_warn("refused %s '%.*s' from '%s' (role %s): %s%s may (%" PRIu64
                " such refused from it since last report, %" PRIu64 " in total)",
                s_act_names[act], (int)len, name, id->name, s_role_names[id->role],
                off ? "only " : "no role", off ? who : "", total - id->logged_total[act], total);
        id->logged[act] = self->now ? self->now : 1;
        id->logged_total[act] = total;
    }
    return false;
}

static bool s_refused_any(const s_ident_t *id)
{
    for (int a = 0; a < S_ACT_COUNT; a++)
        if (id->refused[a] > 0)
            return true;
    return false;
}

/* "'op' (role operator): only orchestrator may", for the error reply to a
   refused call (the log line says it too) */
static void s_refusal_text(kz_broker_t *self, zmq_msg_t *msg, s_act_t act, const char *name,
                           char *buf, size_t len)
{
    const s_ident_t *id = s_ident_of(self, msg);
    char who[128] = "";
    size_t off = 0;
    for (int r = 0; r < S_ROLE_COUNT; r++)
        if (s_rule_allows(&self->rules[r], act, name, strlen(name)))
            off += (size_t)snprintf(who + off, sizeof who - off, "%s%s", off ? ", " : "",
                                    s_role_names[r]);
    snprintf(buf, len, "'%.100s' (role %s): %s%s may", id ? id->name : "?",
             id ? s_role_names[id->role] : "?", off ? "only " : "no role", off ? who : "");
}

/* ------------------------------------------------------------------ tap */

static int s_fixbuf_write(void *data, const char *buf, size_t len)
{
    s_fixbuf_t *fb = data;
    if (fb->len + len > sizeof(fb->data)) {
        fb->overflow = true;
        return -1;
    }
    memcpy(fb->data + fb->len, buf, len);
    fb->len += len;
    return 0;
}

static void s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Publish [path][name][header][payload copies...] on the tap. Callers
   check self->tap_subs first so nothing is built while nobody listens. */
static void s_tap(kz_broker_t *self, const char *path, const void *name, size_t namelen,
                  const s_tapinfo_t *info, zmq_msg_t *payload, size_t npayload)
{
    s_fixbuf_t fb;
    fb.len = 0;
    fb.overflow = false;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, s_fixbuf_write);
    size_t n = 3 + (info->peer ? 1 : 0) + (info->group ? 1 : 0) + (info->has_seq ? 1 : 0) +
               (info->redelivery >= 0 ? 1 : 0);
    msgpack_pack_map(&pk, n);
    s_pack_str(&pk, "ts");
    msgpack_pack_int64(&pk, s_wall_us());
    s_pack_str(&pk, "path");
    s_pack_str(&pk, path);
    if (info->peer) {
        s_pack_str(&pk, "peer");
        s_pack_str(&pk, info->peer);
    }
    if (info->group) {
        s_pack_str(&pk, "group");
        s_pack_str(&pk, info->group);
    }
    if (info->has_seq) {
        s_pack_str(&pk, "seq");
        msgpack_pack_uint64(&pk, info->seq);
    }
    s_pack_str(&pk, "size");
    msgpack_pack_uint64(&pk, info->size);
    if (info->redelivery >= 0) {
        s_pack_str(&pk, "redelivery");
        if (info->redelivery)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
    }
    if (fb.overflow)
        return;
    s_send_buf(self->tap_h, path, strlen(path), true);
    s_send_buf(self->tap_h, name, namelen, true);
    s_send_buf(self->tap_h, fb.data, fb.len, npayload > 0);
    for (size_t i = 0; i < npayload; i++)
        s_send_copy(self->tap_h, &payload[i], i + 1 < npayload);
}

/* With rules the tap XPUB is ZMQ_XPUB_MANUAL: a subscription takes
   effect only when we repeat it, which we do for the roles that may read
   the tap. Every subscribe and unsubscribe passes here; the
   unsubscriptions zmq makes for a closed connection carry no User-Id and
   only ever undo subscriptions we made. */
static void s_tap_manual(kz_broker_t *self, zmq_msg_t *msg, const unsigned char *d, size_t size)
{
    bool sub = d[0] == 1;
    if (d[0] > 1)
        return;
    const char *key = zmq_msg_gets(msg, "User-Id");
    if (!key || !*key) {
        if (!sub && self->tap_subs > 0)
            self->tap_subs--;
        return;
    }
    if (sub) {
        if (!s_allowed(self, msg, S_ACT_TAP, (const char *)d + 1, size - 1))
            return;
        zmq_setsockopt(self->tap_h, ZMQ_SUBSCRIBE, d + 1, size - 1);
        self->tap_subs++;
        return;
    }
    s_ident_t *id = s_ident_of(self, msg);
    if (!id || !self->rules[id->role].tap)
        return; /* never subscribed */
    zmq_setsockopt(self->tap_h, ZMQ_UNSUBSCRIBE, d + 1, size - 1);
    if (self->tap_subs > 0)
        self->tap_subs--;
}

static void s_handle_tap(kz_broker_t *self)
{
    for (int n = 0; n < S_BATCH; n++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, self->tap_h, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close(&msg);
            return;
        }
        /* XPUB passes one subscribe per distinct topic and one unsubscribe
           when its last subscriber goes: a counter tells whether anyone
           listens */
        const unsigned char *d = zmq_msg_data(&msg);
        size_t size = zmq_msg_size(&msg);
        if (size >= 1 && !zmq_msg_more(&msg) && self->rules_on)
            s_tap_manual(self, &msg, d, size);
        else if (size >= 1 && !zmq_msg_more(&msg)) {
            if (d[0] == 1)
                self->tap_subs++;
            else if (d[0] == 0 && self->tap_subs > 0)
                self->tap_subs--;
        }
        zmq_msg_close(&msg);
    }
}

/* Subscriptions on the events-out XPUB: zmq filters, we only drain */
static void s_handle_sub(kz_broker_t *self)
{
    for (int n = 0; n < S_BATCH; n++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        int rc = zmq_msg_recv(&msg, self->sub_h, ZMQ_DONTWAIT);
        zmq_msg_close(&msg);
        if (rc == -1)
            return;
    }
}

/* --------------------------------------------------------------- groups */

/* Send [""][KZG01][CMD] to ID: 0, or -1 with *ERR as s_route */
static int s_gpeer_send_cmd(kz_broker_t *self, const unsigned char *id, size_t idlen, int cmd,
                            int *err)
{
    unsigned char c = (unsigned char)cmd;
    if (s_route(self, id, idlen, err) == -1)
        return -1;
    s_send_buf(self->router_h, "", 0, true);
    s_send_buf(self->router_h, KZ_GRP, strlen(KZ_GRP), true);
    s_send_buf(self->router_h, &c, 1, false);
    return 0;
}

/* Mark a group peer whose connection is gone; s_reap removes it (and
   redelivers its pending deliveries) outside of any loop over members */
static void s_gpeer_gone(kz_broker_t *self, s_gpeer_t *p)
{
    if (!p->gone)
        kz_info("group member %s gone", p->hex);
    p->gone = true;
    self->reap = true;
}

/* Send ITEM to member M. 0 = sent and now in M's in-flight set; -1 = M's
   pipe is full (EAGAIN): nothing sent, ITEM untouched; -2 = M's connection
   is gone (EHOSTUNREACH): nothing sent, ITEM untouched */
static int s_deliver(kz_broker_t *self, s_member_t *m, s_item_t *item)
{
    s_group_t *g = m->group;
    s_gpeer_t *p = m->peer;
    unsigned char cmd = KZ_GRP_DELIVER;
    unsigned char idbuf[8];
    uint64_t id = self->next_delivery + 1;
    int err = 0;
    for (int i = 0; i < 8; i++)
        idbuf[i] = (unsigned char)(id >> (56 - 8 * i));
    if (s_route(self, p->id, p->idlen, &err) == -1)
        return err == EAGAIN ? -1 : -2;
    self->next_delivery = id;
    item->id = id;
    s_send_buf(self->router_h, "", 0, true);
    s_send_buf(self->router_h, KZ_GRP, strlen(KZ_GRP), true);
    s_send_buf(self->router_h, &cmd, 1, true);
    s_send_buf(self->router_h, idbuf, 8, true);
    s_send_copy(self->router_h, &item->topic, true);
    s_send_copy(self->router_h, &item->body, false);
    p->last_send = self->now;
    item->deliveries++;
    g->delivered++;
    if (item->redelivery)
        g->redelivered++;
    if (self->tap_subs > 0) {
        s_tapinfo_t info = {
            p->hex, g->name, item->id, true, zmq_msg_size(&item->body), item->redelivery ? 1 : 0};
        s_tap(self, KZ_TAP_GROUP, zmq_msg_data(&item->topic), zmq_msg_size(&item->topic), &info,
              &item->body, 1);
    }
    if (s_ring_push_back(&m->inflight, item) == -1) {
        /* out of memory: the member still got it; forget it rather than crash */
        s_item_free(self, item);
        return 0;
    }
    m->live++;
    return 0;
}

/* Hand queued events to members with credit, round-robin. A member whose
   pipe is full is skipped until the next tick (no spinning on EAGAIN); one
   whose connection is gone is marked for s_reap. Never removes anything,
   so callers may hold member and peer pointers across it. */
static void s_group_dispatch(kz_broker_t *self, s_group_t *g)
{
    while (g->queue.len > 0 && g->nmembers > 0) {
        s_member_t *chosen = NULL;
        for (size_t k = 0; k < g->nmembers; k++) {
            size_t i = (g->rr + k) % g->nmembers;
            s_member_t *m = g->members[i];
            if (m->live < m->credit && !m->stalled && !m->peer->gone) {
                chosen = m;
                g->rr = (i + 1) % g->nmembers;
                break;
            }
        }
        if (!chosen)
            return;
        int rc = s_deliver(self, chosen, s_ring_at(&g->queue, 0));
        if (rc == 0)
            s_ring_pop_front(&g->queue);
        else if (rc == -1)
            chosen->stalled = true;
        else
            s_gpeer_gone(self, chosen->peer);
    }
}

/* Put ITEM, taken back from a member (NACK, death, LEAVE), at the front of
   G's queue as a redelivery - unless it was delivered max_deliveries times
   already: then it is a poison message, dropped, counted and logged */
static void s_durable_done(kz_broker_t *self, s_item_t *item);

static void s_group_requeue(kz_broker_t *self, s_group_t *g, s_item_t *item)
{
    if (item->deliveries >= self->max_deliveries) {
        s_durable_done(self, item);
        char detail[KZ_TOPIC_MAX + 2 * KZ_TOPIC_MAX + 64];
        snprintf(detail, sizeof(detail), "topic '%.*s' in group '%s' after %u deliveries",
                 (int)zmq_msg_size(&item->topic), (const char *)zmq_msg_data(&item->topic), g->name,
                 item->deliveries);
        s_drop_detail(self, S_DROP_POISON, NULL, detail);
        s_item_free(self, item);
        return;
    }
    if (s_ring_push_front(&g->queue, item) == -1) {
        s_item_free(self, item);
        return;
    }
    item->redelivery = true;
}

static s_group_t *s_group_lookup(kz_broker_t *self, const char *name)
{
    for (size_t i = 0; i < self->ngroups; i++)
        if (strcmp(self->groups[i]->name, name) == 0)
            return self->groups[i];
    return NULL;
}

static s_group_t *s_group_new(kz_broker_t *self, const char *name, const char *prefix)
{
    if (self->ngroups == self->capgroups) {
        size_t cap = self->capgroups ? self->capgroups * 2 : 8;
        s_group_t **groups = realloc(self->groups, cap * sizeof(*groups));
        if (!groups)
            return NULL;
        self->groups = groups;
        self->capgroups = cap;
    }
    s_group_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->name = strdup(name);
    g->prefix = strdup(prefix);
    if (!g->name || !g->prefix) {
        free(g->name);
        free(g->prefix);
        free(g);
        return NULL;
    }
    g->prefix_len = strlen(prefix);
    g->last_used = self->now;
    self->groups[self->ngroups++] = g;
    return g;
}

static void s_group_destroy(kz_broker_t *self, s_group_t *g)
{
    s_item_t *item;
    while ((item = s_ring_pop_front(&g->queue)))
        s_item_free(self, item);
    s_ring_free(&g->queue);
    free(g->prefix);
    free(g->members);
    free(g->name);
    free(g);
}

/* Put a member's unacked deliveries back at the front of its group's queue
   in delivery order, marked as redeliveries, and free the member */
static void s_member_remove(kz_broker_t *self, s_member_t *m)
{
    s_group_t *g = m->group;
    s_item_t *item;
    while ((item = s_ring_pop_back(&m->inflight))) {
        if (item->acked)
            s_item_free(self, item);
        else
            s_group_requeue(self, g, item);
    }
    s_ring_free(&m->inflight);
    for (size_t i = 0; i < g->nmembers; i++) {
        if (g->members[i] == m) {
            memmove(&g->members[i], &g->members[i + 1],
                    (g->nmembers - i - 1) * sizeof(s_member_t *));
            g->nmembers--;
            if (g->rr > i)
                g->rr--;
            if (g->rr >= g->nmembers)
                g->rr = 0;
            break;
        }
    }
    free(m);
    g->last_used = self->now;
    s_group_dispatch(self, g);
}

static void s_gpeer_remove(kz_broker_t *self, s_gpeer_t *p)
{
    p->gone = true; /* its own other memberships get nothing meanwhile */
    for (size_t i = 0; i < p->nmembers; i++)
        s_member_remove(self, p->members[i]);
    free(p->members);
    zhashx_delete(self->gpeers_by_id, p->hex);
    self->gpeers[p->index] = self->gpeers[--self->ngpeers];
    self->gpeers[p->index]->index = p->index;
    free(p);
}

static s_gpeer_t *s_gpeer_new(kz_broker_t *self, zmq_msg_t *identity, const char *hex)
{
    if (self->ngpeers == self->capgpeers) {
        size_t cap = self->capgpeers ? self->capgpeers * 2 : 16;
        s_gpeer_t **arr = realloc(self->gpeers, cap * sizeof(*arr));
        if (!arr)
            return NULL;
        self->gpeers = arr;
        self->capgpeers = cap;
    }
    s_gpeer_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->idlen = zmq_msg_size(identity);
    memcpy(p->id, zmq_msg_data(identity), p->idlen);
    strcpy(p->hex, hex);
    p->last_recv = p->last_send = self->now;
    if (zhashx_insert(self->gpeers_by_id, p->hex, p) == -1) {
        free(p);
        return NULL;
    }
    p->index = self->ngpeers;
    self->gpeers[self->ngpeers++] = p;
    return p;
}

/* Copy a name frame (1..255 bytes, no NUL) into OUT; -1 when invalid */
static int s_name(zmq_msg_t *frame, char *out, bool allow_empty)
{
    size_t len = zmq_msg_size(frame);
    if ((len == 0 && !allow_empty) || len > KZ_TOPIC_MAX)
        return -1;
    if (memchr(zmq_msg_data(frame), '\0', len))
        return -1;
    memcpy(out, zmq_msg_data(frame), len);
    out[len] = '\0';
    return 0;
}

/* JOIN: the first JOIN of a group creates it and fixes its prefix; a JOIN
   naming another prefix is refused (counted, logged, nothing sent back:
   a DISCONNECT would only make the member join again at once), so one
   peer cannot grow a group's state. A peer refused this way is still
   known, so its heartbeats do not provoke DISCONNECT either. */
static void s_group_join(kz_broker_t *self, s_gpeer_t *p, zmq_msg_t *identity, const char *hex,
                         zmq_msg_t *args, size_t nargs)
{
    char gname[KZ_TOPIC_MAX + 1], prefix[KZ_TOPIC_MAX + 1];
    size_t credit = self->group_inflight;
    if (nargs < 2 || nargs > 3 || s_name(&args[0], gname, false) == -1 ||
        s_name(&args[1], prefix, true) == -1) {
        s_drop(self, S_DROP_GROUP_CMD, hex);
        return;
    }
    if (nargs == 3) {
        size_t len = zmq_msg_size(&args[2]);
        const char *d = zmq_msg_data(&args[2]);
        unsigned long long v = 0;
        if (len == 0 || len > 9) {
            s_drop(self, S_DROP_GROUP_CMD, hex);
            return;
        }
        for (size_t i = 0; i < len; i++) {
            if (d[i] < '0' || d[i] > '9') {
                s_drop(self, S_DROP_GROUP_CMD, hex);
                return;
            }
            v = v * 10 + (unsigned long long)(d[i] - '0');
        }
        if (v == 0) {
            s_drop(self, S_DROP_GROUP_CMD, hex);
            return;
        }
        if (v < credit)
            credit = (size_t)v;
    }
    if (self->rules_on && !s_allowed(self, &args[0], S_ACT_JOIN, gname, strlen(gname))) {
        /* known from now on, so its heartbeats do not provoke DISCONNECT
           (and a JOIN again) */
        if (!p)
            s_gpeer_new(self, identity, hex);
        return;
    }
    s_group_t *g = s_group_lookup(self, gname);
    if (!g) {
        if (self->ngroups >= S_MAX_GROUPS) {
            s_drop(self, S_DROP_TOO_MANY_NAMES, hex);
            return;
        }
        if (!(g = s_group_new(self, gname, prefix))) {
            kz_error("out of memory creating group '%s'", gname);
            return;
        }
    }
    if (!p && !(p = s_gpeer_new(self, identity, hex))) {
        kz_error("out of memory adding a group member");
        return;
    }
    if (strcmp(g->prefix, prefix) != 0) {
        char detail[3 * KZ_TOPIC_MAX + 64];
        snprintf(detail, sizeof(detail), "group '%s' has prefix '%s', not '%s'", gname, g->prefix,
                 prefix);
        s_drop_detail(self, S_DROP_JOIN_PREFIX, hex, detail);
        return;
    }
    g->last_used = self->now;
    for (size_t i = 0; i < p->nmembers; i++) {
        if (p->members[i]->group == g) {
            p->members[i]->credit = credit;
            s_group_dispatch(self, g);
            return;
        }
    }
    s_member_t *m = calloc(1, sizeof(*m));
    s_member_t **pm = realloc(p->members, (p->nmembers + 1) * sizeof(*pm));
    if (pm)
        p->members = pm;
    s_member_t **gm = realloc(g->members, (g->nmembers + 1) * sizeof(*gm));
    if (gm)
        g->members = gm;
    if (!m || !pm || !gm) {
        free(m);
        kz_error("out of memory joining group '%s'", gname);
        return;
    }
    m->peer = p;
    m->group = g;
    m->credit = credit;
    p->members[p->nmembers++] = m;
    g->members[g->nmembers++] = m;
    kz_debug("member %s joined group '%s' prefix '%s' credit %zu", hex, gname, prefix, credit);
    s_group_dispatch(self, g);
}

/* Find delivery ID in the member's in-flight ring (ascending ids) */
static s_item_t *s_inflight_find(s_member_t *m, uint64_t id, size_t *index)
{
    size_t lo = 0, hi = m->inflight.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        s_item_t *item = s_ring_at(&m->inflight, mid);
        if (item->id == id) {
            *index = mid;
            return item;
        }
        if (item->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void s_inflight_compact(kz_broker_t *self, s_member_t *m)
{
    s_item_t *item;
    while (m->inflight.len > 0 && ((s_item_t *)s_ring_at(&m->inflight, 0))->acked)
        s_item_free(self, s_ring_pop_front(&m->inflight));
    /* tombstones behind an old unacked delivery: rebuild when they dominate */
    if (m->inflight.len > 2 * m->live + 64) {
        size_t n = m->inflight.len;
        for (size_t i = 0; i < n; i++) {
            item = s_ring_pop_front(&m->inflight);
            if (!item)
                break;
            if (item->acked)
                s_item_free(self, item);
            else
                s_ring_push_back(&m->inflight, item); /* room is there: cannot fail */
        }
    }
}

/* Look up the unacked delivery ID among P's memberships; NULL if none */
static s_item_t *s_gpeer_find(s_gpeer_t *p, uint64_t id, s_member_t **mp)
{
    for (size_t i = 0; i < p->nmembers; i++) {
        size_t index = 0;
        s_item_t *item = s_inflight_find(p->members[i], id, &index);
        if (item && !item->acked) {
            *mp = p->members[i];
            return item;
        }
    }
    return NULL;
}

static uint64_t s_id_at(const unsigned char *d)
{
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = (id << 8) | d[i];
    return id;
}

static void s_group_ack(kz_broker_t *self, s_gpeer_t *p, zmq_msg_t *ids)
{
    size_t len = zmq_msg_size(ids);
    const unsigned char *d = zmq_msg_data(ids);
    if (len == 0 || len % 8 != 0) {
        s_drop(self, S_DROP_DELIVERY_ID, p->hex);
        return;
    }
    for (size_t off = 0; off < len; off += 8) {
        uint64_t id = s_id_at(d + off);
        s_member_t *m = NULL;
        s_item_t *item = s_gpeer_find(p, id, &m);
        if (!item || !m) {
            s_drop(self, S_DROP_DELIVERY_ID, p->hex);
            continue;
        }
        if (self->tap_subs > 0) {
            s_tapinfo_t info = {p->hex, m->group->name, id, true, 0, -1};
            s_tap(self, KZ_TAP_ACK, zmq_msg_data(&item->topic), zmq_msg_size(&item->topic), &info,
                  NULL, 0);
        }
        item->acked = true;
        s_durable_done(self, item);
        s_item_release(item);
        m->live--;
        m->group->acked++;
        s_inflight_compact(self, m);
    }
    for (size_t i = 0; i < p->nmembers; i++)
        s_group_dispatch(self, p->members[i]->group);
}

/* NACK: the member did not handle these deliveries. Each goes back to the
   front of its group's queue (the first id of the frame first) for another
   delivery, unless it is a poison message (s_group_requeue). The in-flight
   slot becomes a tombstone, as after an ACK; the frames move to a new item. */
static void s_group_nack(kz_broker_t *self, s_gpeer_t *p, zmq_msg_t *ids)
{
    size_t len = zmq_msg_size(ids);
    const unsigned char *d = zmq_msg_data(ids);
    if (len == 0 || len % 8 != 0) {
        s_drop(self, S_DROP_DELIVERY_ID, p->hex);
        return;
    }
    for (size_t off = len; off > 0; off -= 8) {
        s_member_t *m = NULL;
        s_item_t *item = s_gpeer_find(p, s_id_at(d + off - 8), &m);
        if (!item || !m) {
            s_drop(self, S_DROP_DELIVERY_ID, p->hex);
            continue;
        }
        s_item_t *again = s_item_new(self);
        if (!again)
            continue; /* out of memory: it stays in flight until the member goes */
        zmq_msg_move(&again->topic, &item->topic);
        zmq_msg_move(&again->body, &item->body);
        again->deliveries = item->deliveries;
        again->lsn = item->lsn;
        item->lsn = 0;
        item->acked = true;
        s_item_release(item);
        m->live--;
        m->group->nacked++;
        s_inflight_compact(self, m);
        s_group_requeue(self, m->group, again);
    }
    for (size_t i = 0; i < p->nmembers; i++)
        s_group_dispatch(self, p->members[i]->group);
}

static void s_handle_group(kz_broker_t *self, zmq_msg_t *f, size_t n, size_t h)
{
    char hex[2 * S_ID_MAX + 1];
    int err = 0;
    s_hex(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), hex);
    if (n < h + 2 || zmq_msg_size(&f[h + 1]) != 1) {
        s_drop(self, S_DROP_GROUP_CMD, hex);
        return;
    }
    int cmd = *(unsigned char *)zmq_msg_data(&f[h + 1]);
    s_gpeer_t *p = zhashx_lookup(self->gpeers_by_id, hex);
    if (p)
        p->last_recv = self->now;
    else if (cmd != KZ_GRP_JOIN) {
        s_drop(self, S_DROP_UNKNOWN_MEMBER, hex);
        s_gpeer_send_cmd(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), KZ_GRP_DISCONNECT, &err);
        return;
    }
    size_t nargs = n - h - 2;
    switch (cmd) {
    case KZ_GRP_JOIN:
        s_group_join(self, p, &f[0], hex, &f[h + 2], nargs);
        break;
    case KZ_GRP_ACK:
    case KZ_GRP_NACK:
        if (nargs != 1)
            s_drop(self, S_DROP_GROUP_CMD, hex);
        else if (cmd == KZ_GRP_ACK)
            s_group_ack(self, p, &f[h + 2]);
        else
            s_group_nack(self, p, &f[h + 2]);
        break;
    case KZ_GRP_HEARTBEAT:
        if (nargs != 0)
            s_drop(self, S_DROP_GROUP_CMD, hex);
        break;
    case KZ_GRP_LEAVE:
        if (nargs != 0)
            s_drop(self, S_DROP_GROUP_CMD, hex);
        else {
            kz_debug("member %s left", hex);
            s_gpeer_remove(self, p);
        }
        break;
    default:
        s_drop(self, S_DROP_GROUP_CMD, hex);
        break;
    }
}

/* --------------------------------------------------------------- events */

static s_topic_stats_t *s_topic_stats(kz_broker_t *self, const void *topic, size_t len)
{
    char key[KZ_TOPIC_MAX + 1];
    memcpy(key, topic, len);
    key[len] = '\0';
    s_topic_stats_t *ts = zhashx_lookup(self->topics, key);
    if (ts)
        return ts;
    if (zhashx_size(self->topics) >= S_MAX_TOPICS) {
        ts = zhashx_lookup(self->topics, "(other)");
        if (ts)
            return ts;
        strcpy(key, "(other)");
    }
    ts = calloc(1, sizeof(*ts));
    if (ts && zhashx_insert(self->topics, key, ts) == -1) {
        free(ts);
        ts = NULL;
    }
    return ts;
}

static bool s_event_valid(zmq_msg_t *topic, zmq_msg_t *body)
{
    size_t tlen = zmq_msg_size(topic);
    if (tlen == 0 || tlen > KZ_TOPIC_MAX || zmq_msg_size(body) == 0)
        return false;
    unsigned char b = *(unsigned char *)zmq_msg_data(body);
    return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

static void s_event_to_groups(kz_broker_t *self, zmq_msg_t *topic, zmq_msg_t *body)
{
    const char *t = zmq_msg_data(topic);
    size_t tlen = zmq_msg_size(topic);
    for (size_t gi = 0; gi < self->ngroups; gi++) {
        s_group_t *g = self->groups[gi];
        if (g->prefix_len > tlen || memcmp(g->prefix, t, g->prefix_len) != 0)
            continue;
        g->last_used = self->now;
        uint64_t lsn = 0;
        if (g->durable && self->dlog) {
            char err[512];
            if (kz_dlog_append(self->dlog, g->name, t, tlen, zmq_msg_data(body), zmq_msg_size(body),
                               &lsn, err, sizeof err) != 0) {
                self->dlog_failed = true;
                lsn = 0;
                s_drop_detail(self, S_DROP_LOG_FULL, NULL, err);
            }
        }
        if (lsn == 0 && g->queue.len >= self->group_queue_limit) {
            /* full: the oldest waiting event makes room for the new one */
            s_item_t *oldest = s_ring_pop_front(&g->queue);
            if (oldest)
                s_item_free(self, oldest);
            s_drop(self, S_DROP_GROUP_QUEUE, NULL);
        }
        s_item_t *item = s_item_new(self);
        if (!item)
            continue;
        zmq_msg_copy(&item->topic, topic);
        zmq_msg_copy(&item->body, body);
        item->lsn = lsn;
        if (s_ring_push_back(&g->queue, item) == -1) {
            s_item_free(self, item);
            continue;
        }
        s_group_dispatch(self, g);
    }
}

static void s_cancel_request(kz_broker_t *self, zmq_msg_t *body);

/* ------------------------------------------------------------ durability */

/* ITEM of a durable group was handled (ACK) or dropped for good (poison):
   log that, so a restart does not queue it again */
static void s_durable_done(kz_broker_t *self, s_item_t *item)
{
    if (!item->lsn || !self->dlog)
        return;
    char err[512];
    if (kz_dlog_ack(self->dlog, item->lsn, err, sizeof err) != 0)
        kz_warn("durable log: %s", err); /* only a redelivery after a restart */
    item->lsn = 0;
}

/* A sync marker from a publisher (kz_bus_flush): BODY = u8 version 1 |
   u8 routing id length | routing id | 8-byte token. Everything it sent
   before is in our queues (and its durable events in the log buffer):
   the confirmation goes out after the next sync round (s_sync_round). */
static void s_sync_request(kz_broker_t *self, zmq_msg_t *body)
{
    const unsigned char *d = zmq_msg_data(body);
    size_t len = zmq_msg_size(body);
    if (len < 2 + 1 + 8 || d[0] != 1 || d[1] == 0 || (size_t)d[1] + 2 + 8 != len) {
        s_drop(self, S_DROP_EVENT, NULL);
        return;
    }
    if (self->nsyncs == self->capsyncs) {
        size_t cap = self->capsyncs ? 2 * self->capsyncs : 16;
        struct s_sync *syncs = realloc(self->syncs, cap * sizeof(*syncs));
        if (!syncs)
            return; /* the publisher asks again */
        self->syncs = syncs;
        self->capsyncs = cap;
    }
    struct s_sync *sy = &self->syncs[self->nsyncs++];
    sy->assigned = false;
    self->syncs_new = true;
    sy->idlen = d[1];
    memcpy(sy->id, d + 2, sy->idlen);
    memcpy(sy->token, d + 2 + sy->idlen, 8);
}

/* Confirm the markers whose ticket the log's syncs reached: SYNCED
   [token][status][instance] to each publisher's sync DEALER. A publisher
   not connected there (yet) misses it and sends its marker again. */
static void s_sync_confirm(kz_broker_t *self)
{
    uint64_t done = 0;
    bool failed = false;
    if (self->dlog && kz_dlog_synced(self->dlog, &done) != 0) {
        kz_error("durable log: fdatasync failed: %s", strerror(errno));
        failed = true;
    }
    unsigned char cmd = KZ_GRP_SYNCED;
    size_t keep = 0;
    for (size_t i = 0; i < self->nsyncs; i++) {
        struct s_sync *sy = &self->syncs[i];
        if (!sy->assigned || (self->dlog && sy->ticket > done)) {
            self->syncs[keep++] = *sy;
            continue;
        }
        uint8_t status = failed ? KZ_SYNC_FAILED : sy->status;
        int err = 0;
        if (s_route(self, sy->id, sy->idlen, &err) == -1)
            continue;
        s_send_buf(self->router_h, "", 0, true);
        s_send_buf(self->router_h, KZ_GRP, strlen(KZ_GRP), true);
        s_send_buf(self->router_h, &cmd, 1, true);
        s_send_buf(self->router_h, sy->token, 8, true);
        s_send_buf(self->router_h, &status, 1, true);
        s_send_buf(self->router_h, self->instance, 8, false);
        self->syncs_confirmed++;
    }
    self->nsyncs = keep;
}

/* A sync round for the markers that arrived since the last one: write
   the log's buffer and have its thread fdatasync it (one for all of
   them; the loop does not wait for the disk), then confirm what is
   durable already */
static void s_sync_round(kz_broker_t *self)
{
    uint64_t ticket = 0;
    uint8_t status = KZ_SYNC_OK;
    if (self->dlog) {
        char err[512];
        if (kz_dlog_sync_start(self->dlog, &ticket, err, sizeof err) != 0) {
            kz_error("durable log: %s", err);
            status = KZ_SYNC_FAILED;
        }
    }
    if (self->dlog_failed)
        status = KZ_SYNC_FAILED;
    self->dlog_failed = false;
    for (size_t i = 0; i < self->nsyncs; i++) {
        struct s_sync *sy = &self->syncs[i];
        if (!sy->assigned) {
            sy->assigned = true;
            sy->ticket = ticket;
            sy->status = status;
        }
    }
    self->syncs_new = false;
    s_sync_confirm(self);
}

/* Replay callback: queue a logged, unacknowledged event again */
static int s_replay_event(void *arg, const kz_dlog_event_t *ev)
{
    kz_broker_t *self = arg;
    s_group_t *g = s_group_lookup(self, ev->group);
    if (!g || !g->durable) {
        /* no longer declared: it stays in the log until a restart with
           the group declared again, or until its segment is dropped */
        kz_warn("durable log: event %" PRIu64 " for group '%s', which is not declared; skipped",
                ev->lsn, ev->group);
        return 0;
    }
    s_item_t *item = s_item_new(self);
    if (!item || zmq_msg_init_size(&item->topic, strlen(ev->topic)) != 0 ||
        zmq_msg_init_size(&item->body, ev->body_len) != 0) {
        if (item)
            s_item_free(self, item);
        return -1;
    }
    memcpy(zmq_msg_data(&item->topic), ev->topic, strlen(ev->topic));
    memcpy(zmq_msg_data(&item->body), ev->body, ev->body_len);
    item->lsn = ev->lsn;
    item->redelivery = true;
    if (s_ring_push_back(&g->queue, item) == -1) {
        s_item_free(self, item);
        return -1;
    }
    return 0;
}

/* Declare the durable groups and replay the log: before any peer can
   connect, so replayed events come before anything new */
static int s_durable_setup(kz_broker_t *self, const kz_config_t *cfg, char *errbuf, size_t errlen)
{
    zuuid_t *uuid = zuuid_new();
    if (uuid) {
        memcpy(self->instance, zuuid_data(uuid), 8);
        zuuid_destroy(&uuid);
    }
    if (!cfg->broker.durable)
        return 0;
    /* the default: the recorder's group and the groups of the agents the
       config runs (their work items survive a broker crash too) */
    static const struct {
        const char *agent, *group, *prefix;
    } agent_groups[] = {
        {"code-quality", "analysis.quality", "scan.completed"},
        {"improvement-planner", "planning.planner", "scan.completed"},
        {"improvement-planner", "planning.planner.rejected", "plan.rejected"},
        {"improvement-planner", "planning.planner.failed", "plan.failed"},
        {"feature-prioritizer", "planning.prioritizer", "plan.batch"},
        {"test-runner", "validation.tests-base", "scan.completed"},
        {"pattern-learner", "learning.patterns", "plan."},
    };
    kz_durable_group_t def[1 + sizeof agent_groups / sizeof agent_groups[0]];
    const kz_durable_group_t *groups = cfg->broker.durable_groups;
    size_t n = cfg->broker.durable_groups_count;
    if (n == 0) {
        def[n++] = (kz_durable_group_t){(char *)"kaizen.recorder", (char *)""};
        for (size_t k = 0; k < sizeof agent_groups / sizeof agent_groups[0]; k++)
            for (size_t a = 0; a < cfg->agents_count; a++)
                if (cfg->agents[a].name &&
                    strcmp(cfg->agents[a].name, agent_groups[k].agent) == 0) {
                    def[n++] = (kz_durable_group_t){(char *)agent_groups[k].group,
                                                    (char *)agent_groups[k].prefix};
                    break;
                }
        groups = def;
    }
    for (size_t i = 0; i < n; i++) {
        const char *prefix = groups[i].prefix ? groups[i].prefix : "";
        s_group_t *g = s_group_lookup(self, groups[i].name);
        if (g) {
            snprintf(errbuf, errlen, "broker.durable_groups: group '%s' is declared twice",
                     groups[i].name);
            return -1;
        }
        if (strlen(groups[i].name) == 0 || strlen(groups[i].name) > KZ_TOPIC_MAX ||
            strlen(prefix) > KZ_TOPIC_MAX) {
            snprintf(errbuf, errlen, "broker.durable_groups: invalid group name or prefix");
            return -1;
        }
        if (!(g = s_group_new(self, groups[i].name, prefix))) {
            snprintf(errbuf, errlen, "out of memory");
            return -1;
        }
        g->durable = true;
    }
    char dir[4096];
    if (!cfg->state_dir ||
        snprintf(dir, sizeof dir, "%s/broker/log", cfg->state_dir) >= (int)sizeof dir) {
        snprintf(errbuf, errlen, "no state_dir for the durable log");
        return -1;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s/broker", cfg->state_dir);
    if (kz_mkdirs(parent, 0700, errbuf, errlen) != 0)
        return -1;
    self->dlog = kz_dlog_open(dir, cfg->broker.log_max, 0, s_replay_event, self, errbuf, errlen);
    if (!self->dlog)
        return -1;
    kz_dlog_stats_t st;
    kz_dlog_stats(self->dlog, &st);
    if (st.replayed || st.corrupt)
        kz_info("durable log %s: %" PRIu64 " events queued again, %" PRIu64
                " corrupt records skipped",
                dir, st.replayed, st.corrupt);
    return 0;
}

static void s_handle_pub(kz_broker_t *self)
{
    for (int n = 0; n < S_BATCH; n++) {
        zmq_msg_t topic, body;
        zmq_msg_init(&topic);
        if (zmq_msg_recv(&topic, self->pub_h, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close(&topic);
            return;
        }
        zmq_msg_init(&body);
        bool ok = zmq_msg_more(&topic) && zmq_msg_recv(&body, self->pub_h, ZMQ_DONTWAIT) != -1;
        if (ok && zmq_msg_more(&body)) {
            /* a multipart message arrives whole: drain the extra frames */
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            while (zmq_msg_recv(&extra, self->pub_h, ZMQ_DONTWAIT) != -1 && zmq_msg_more(&extra))
                ;
            zmq_msg_close(&extra);
            ok = false;
        }
        if (ok && zmq_msg_size(&topic) == strlen(KZ_SYNC_TOPIC) &&
            memcmp(zmq_msg_data(&topic), KZ_SYNC_TOPIC, strlen(KZ_SYNC_TOPIC)) == 0) {
            s_sync_request(self, &body);
            zmq_msg_close(&topic);
            zmq_msg_close(&body);
            continue;
        }
        if (!ok || !s_event_valid(&topic, &body)) {
            zmq_msg_close(&topic);
            zmq_msg_close(&body);
            s_drop(self, S_DROP_EVENT, NULL);
            continue;
        }
        if (self->rules_on &&
            !s_allowed(self, &topic, S_ACT_PUBLISH, zmq_msg_data(&topic), zmq_msg_size(&topic))) {
            zmq_msg_close(&topic);
            zmq_msg_close(&body);
            continue;
        }
        size_t size = zmq_msg_size(&body);
        self->events_in++;
        self->event_bytes += size;
        s_topic_stats_t *ts = s_topic_stats(self, zmq_msg_data(&topic), zmq_msg_size(&topic));
        if (ts) {
            ts->msgs++;
            ts->bytes += size;
        }
        if (self->ngroups > 0)
            s_event_to_groups(self, &topic, &body);
        if (zmq_msg_size(&topic) == 14 && memcmp(zmq_msg_data(&topic), "request.cancel", 14) == 0)
            s_cancel_request(self, &body);
        if (self->tap_subs > 0) {
            s_tapinfo_t info = {NULL, NULL, 0, false, size, -1};
            s_tap(self, KZ_TAP_EVENT, zmq_msg_data(&topic), zmq_msg_size(&topic), &info, &body, 1);
        }
        s_send_move(self->sub_h, &topic, true);
        s_send_move(self->sub_h, &body, false);
        zmq_msg_close(&topic);
        zmq_msg_close(&body);
    }
}

/* ------------------------------------------------------------- services */

/* Find or create service NAME; NULL when S_MAX_SERVICES exist already (or
   out of memory). Every use refreshes its idle clock (s_reclaim). */
static s_service_t *s_service_require(kz_broker_t *self, const char *name)
{
    s_service_t *svc = zhashx_lookup(self->services, name);
    if (svc) {
        svc->last_used = self->now;
        return svc;
    }
    if (zhashx_size(self->services) >= S_MAX_SERVICES)
        return NULL;
    svc = calloc(1, sizeof(*svc));
    if (!svc || !(svc->name = strdup(name))) {
        free(svc);
        return NULL;
    }
    if (zhashx_insert(self->services, name, svc) == -1) {
        free(svc->name);
        free(svc);
        return NULL;
    }
    svc->last_used = self->now;
    svc->no_worker_since = self->now;
    return svc;
}

static void s_service_destroy(kz_broker_t *self, s_service_t *svc)
{
    s_request_t *req;
    while ((req = s_ring_pop_front(&svc->requests)))
        s_request_free(self, req);
    s_ring_free(&svc->requests);
    s_ring_free(&svc->waiting);
    free(svc->name);
    free(svc);
}

/* When queued request REQ of SVC is due to be dropped (broker time):
   its own deadline, else broker.request_ttl after it was queued - and,
   while SVC has no worker at all, request_ttl after the later of its
   queueing and the last worker's going (*NO_WORKER is then set when that
   comes first). INT64_MAX: never. */
static int64_t s_request_expiry(const kz_broker_t *self, const s_service_t *svc,
                                const s_request_t *req, bool *no_worker)
{
    int64_t at = INT64_MAX;
    if (req->expires)
        at = req->expires;
    else if (self->request_ttl_ms > 0)
        at = req->arrived + self->request_ttl_ms;
    if (svc->nworkers == 0 && self->request_ttl_ms > 0) {
        int64_t since = req->arrived > svc->no_worker_since ? req->arrived : svc->no_worker_since;
        if (since + self->request_ttl_ms <= at) {
            at = since + self->request_ttl_ms;
            if (no_worker)
                *no_worker = true;
        }
    }
    return at;
}

/* Send [""][MDPW01][CMD] to ID: 0, or -1 with *ERR as s_route */
static int s_worker_send_cmd(kz_broker_t *self, const unsigned char *id, size_t idlen, int cmd,
                             int *err)
{
    unsigned char c = (unsigned char)cmd;
    if (s_route(self, id, idlen, err) == -1)
        return -1;
    s_send_buf(self->router_h, "", 0, true);
    s_send_buf(self->router_h, KZ_MDPW, strlen(KZ_MDPW), true);
    s_send_buf(self->router_h, &c, 1, false);
    return 0;
}

/* Send REQ to W. 0 = sent (the caller makes it W's current request), -1
   with *ERR = EAGAIN or EHOSTUNREACH: nothing sent, REQ untouched */
static int s_send_request(kz_broker_t *self, s_worker_t *w, s_request_t *req, int *err)
{
    unsigned char cmd = KZ_MDPW_REQUEST;
    if (s_route(self, w->id, w->idlen, err) == -1)
        return -1;
    s_send_buf(self->router_h, "", 0, true);
    s_send_buf(self->router_h, KZ_MDPW, strlen(KZ_MDPW), true);
    s_send_buf(self->router_h, &cmd, 1, true);
    s_send_copy(self->router_h, &req->client, true);
    s_send_buf(self->router_h, "", 0, req->nbody > 0);
    for (size_t i = 0; i < req->nbody; i++)
        s_send_copy(self->router_h, &req->body[i], i + 1 < req->nbody);
    w->last_send = self->now;
    return 0;
}

/* Hand queued requests to waiting workers, least recently used first. Each
   waiting worker is tried at most once per call: one at its high-water
   mark goes back to the end of the line (retried on the next tick or
   request, never in a loop), one whose connection is gone is marked for
   s_reap. Never removes a worker. */
static void s_service_dispatch(kz_broker_t *self, s_service_t *svc)
{
    size_t tries = svc->waiting.len;
    while (svc->requests.len > 0 && tries-- > 0) {
        s_worker_t *w = s_ring_pop_front(&svc->waiting);
        s_request_t *req = s_ring_at(&svc->requests, 0);
        int err = 0;
        if (!w || !req)
            return;
        w->waiting = false;
        if (s_send_request(self, w, req, &err) == 0) {
            s_ring_pop_front(&svc->requests);
            w->current = req;
        } else if (err == EAGAIN) {
            if (s_ring_push_back(&svc->waiting, w) == 0) /* room is there */
                w->waiting = true;
        } else {
            kz_info("worker %s of '%s' gone", w->hex, svc->name);
            w->gone = true;
            self->reap = true;
        }
    }
}

/* Forget a worker; its request in progress goes back to the front of the
   queue (with a fresh queue time: the time a worker held it does not count
   against request_ttl) so another worker completes it */
static void s_worker_remove(kz_broker_t *self, s_worker_t *w, bool disconnect)
{
    int err = 0;
    if (disconnect)
        s_worker_send_cmd(self, w->id, w->idlen, KZ_MDPW_DISCONNECT, &err);
    s_service_t *svc = w->service;
    if (w->waiting) {
        for (size_t i = 0; i < svc->waiting.len; i++)
            if (s_ring_at(&svc->waiting, i) == w) {
                s_ring_remove_at(&svc->waiting, i);
                break;
            }
    }
    svc->nworkers--;
    svc->last_used = self->now;
    if (svc->nworkers == 0) {
        svc->no_worker_since = self->now;
        svc->next_expiry = 0; /* its queued requests may now wait for nobody */
    }
    if (w->current) {
        kz_info("worker %s of '%s' gone: requeueing its request", w->hex, svc->name);
        w->current->arrived = self->now;
        svc->next_expiry = 0;
        if (s_ring_push_front(&svc->requests, w->current) == -1)
            s_request_free(self, w->current);
        w->current = NULL;
    }
    zhashx_delete(self->workers_by_id, w->hex);
    self->workers[w->index] = self->workers[--self->nworkers];
    self->workers[w->index]->index = w->index;
    free(w);
    s_service_dispatch(self, svc);
}

static void s_worker_ready(kz_broker_t *self, zmq_msg_t *identity, const char *hex, zmq_msg_t *args,
                           size_t nargs)
{
    char name[KZ_TOPIC_MAX + 1];
    int err = 0;
    if (nargs != 1 || s_name(&args[0], name, false) == -1) {
        s_drop(self, S_DROP_WORKER_CMD, hex);
        return;
    }
    if (strncmp(name, "mmi.", 4) == 0) {
        /* reserved for the broker (RFC 7 / MMI) */
        s_worker_send_cmd(self, zmq_msg_data(identity), zmq_msg_size(identity), KZ_MDPW_DISCONNECT,
                          &err);
        return;
    }
    /* a refused worker is not told (it would READY again at once): its
       heartbeats find no worker and get the usual DISCONNECT */
    if (self->rules_on && !s_allowed(self, &args[0], S_ACT_OFFER, name, strlen(name)))
        return;
    s_service_t *svc = s_service_require(self, name);
    if (!svc) {
        /* tell the worker rather than leave it waiting for requests */
        s_drop(self, S_DROP_TOO_MANY_NAMES, hex);
        s_worker_send_cmd(self, zmq_msg_data(identity), zmq_msg_size(identity), KZ_MDPW_DISCONNECT,
                          &err);
        return;
    }
    if (self->nworkers == self->capworkers) {
        size_t cap = self->capworkers ? self->capworkers * 2 : 16;
        s_worker_t **arr = realloc(self->workers, cap * sizeof(*arr));
        if (!arr)
            return;
        self->workers = arr;
        self->capworkers = cap;
    }
    s_worker_t *w = calloc(1, sizeof(*w));
    if (!w)
        return;
    w->idlen = zmq_msg_size(identity);
    memcpy(w->id, zmq_msg_data(identity), w->idlen);
    strcpy(w->hex, hex);
    w->service = svc;
    w->last_recv = w->last_send = self->now;
    if (zhashx_insert(self->workers_by_id, w->hex, w) == -1) {
        free(w);
        return;
    }
    w->index = self->nworkers;
    self->workers[self->nworkers++] = w;
    svc->nworkers++;
    kz_debug("worker %s ready for '%s'", hex, name);
    if (s_ring_push_back(&svc->waiting, w) == 0)
        w->waiting = true;
    s_service_dispatch(self, svc);
}

/* Start a reply to CLIENT; a client that is gone or at its high-water
   mark loses the reply (counted): -1, send nothing more */
static int s_route_client(kz_broker_t *self, zmq_msg_t *client)
{
    int err = 0;
    if (s_route(self, zmq_msg_data(client), zmq_msg_size(client), &err) == 0)
        return 0;
    char hex[2 * S_ID_MAX + 1];
    s_hex(zmq_msg_data(client), zmq_msg_size(client), hex);
    s_drop(self, err == EAGAIN ? S_DROP_CLIENT_HWM : S_DROP_CLIENT_GONE, hex);
    return -1;
}

/* Answer a kaizen client's request ourselves with an error envelope
   {code, message} (PROTOCOL.md 1.3): its deadline passed in the queue,
   the queue is full, or no worker serves the service. The reply's corr
   is the request's id, so the client takes it for this request's. */
static void s_reply_error(kz_broker_t *self, zmq_msg_t *client, bool delim, const char *service,
                          const char *id, uint64_t seq, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static void s_reply_error(kz_broker_t *self, zmq_msg_t *client, bool delim, const char *service,
                          const char *id, uint64_t seq, const char *code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    kz_msg_t *msg = kz_msg_new("error");
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    if (!msg || kz_msg_set_src(msg, self->id) != 0 || kz_msg_set_corr(msg, id) != 0 ||
        kz_map_put_str(msg, kz_msg_body(msg), "code", code) != 0 ||
        kz_map_put_str(msg, kz_msg_body(msg), "message", text) != 0 ||
        kz_msg_encode(msg, &buf, &len, &err) != 0) {
        kz_error("unable to build the '%s' error reply to a request for '%s'", code, service);
        kz_msg_destroy(&msg);
        return;
    }
    kz_msg_destroy(&msg);
    zmq_msg_t body;
    zmq_msg_init_size(&body, len);
    memcpy(zmq_msg_data(&body), buf, len);
    free(buf);
    if (self->tap_subs > 0) {
        char hex[2 * S_ID_MAX + 1];
        s_hex(zmq_msg_data(client), zmq_msg_size(client), hex);
        s_tapinfo_t info = {hex, NULL, seq, true, len, -1};
        s_tap(self, KZ_TAP_REPLY, service, strlen(service), &info, &body, 1);
    }
    if (s_route_client(self, client) == 0) {
        if (delim)
            s_send_buf(self->router_h, "", 0, true);
        s_send_buf(self->router_h, KZ_MDPC, strlen(KZ_MDPC), true);
        s_send_buf(self->router_h, service, strlen(service), true);
        s_send_move(self->router_h, &body, false);
    }
    zmq_msg_close(&body);
}

/* Drop queued request REQ of SVC for REASON: a kaizen client hears why at
   once (CODE, TEXT), another one only times out (RFC 7 has no error reply) */
static void s_request_refuse(kz_broker_t *self, s_service_t *svc, s_request_t *req, s_drop_t reason,
                             const char *code, const char *text)
{
    s_drop_detail(self, reason, NULL, svc->name);
    if (req->kaizen)
        s_reply_error(self, &req->client, req->delim, svc->name, req->id, req->seq, code, "%s",
                      text);
    s_request_free(self, req);
}

static void s_worker_reply(kz_broker_t *self, s_worker_t *w, zmq_msg_t *args, size_t nargs)
{
    /* [client address][""][body...] */
    if (nargs < 2 || zmq_msg_size(&args[1]) != 0 || zmq_msg_size(&args[0]) == 0 ||
        zmq_msg_size(&args[0]) > 255) {
        s_drop(self, S_DROP_WORKER_CMD, w->hex);
        return;
    }
    s_service_t *svc = w->service;
    s_request_t *req = w->current;
    bool delim = req ? req->delim : true;
    zmq_msg_t *body = &args[2];
    size_t nbody = nargs - 2, bytes = 0;
    for (size_t i = 0; i < nbody; i++)
        bytes += zmq_msg_size(&body[i]);
    svc->nreplies++;
    svc->bytes += bytes;
    svc->last_used = self->now;
    if (self->tap_subs > 0) {
        s_tapinfo_t info = {w->hex, NULL, req ? req->seq : 0, req != NULL, bytes, -1};
        s_tap(self, KZ_TAP_REPLY, svc->name, strlen(svc->name), &info, body, nbody);
    }
    if (s_route_client(self, &args[0]) == 0) {
        if (delim)
            s_send_buf(self->router_h, "", 0, true);
        s_send_buf(self->router_h, KZ_MDPC, strlen(KZ_MDPC), true);
        s_send_buf(self->router_h, svc->name, strlen(svc->name), nbody > 0);
        for (size_t i = 0; i < nbody; i++)
            s_send_move(self->router_h, &body[i], i + 1 < nbody);
    }
    if (req) {
        s_request_free(self, req);
        w->current = NULL;
    }
    if (!w->waiting && s_ring_push_back(&svc->waiting, w) == 0)
        w->waiting = true;
    s_service_dispatch(self, svc);
}

static void s_handle_worker(kz_broker_t *self, zmq_msg_t *f, size_t n, size_t h)
{
    char hex[2 * S_ID_MAX + 1];
    int err = 0;
    s_hex(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), hex);
    if (n < h + 2 || zmq_msg_size(&f[h + 1]) != 1) {
        s_drop(self, S_DROP_WORKER_CMD, hex);
        return;
    }
    int cmd = *(unsigned char *)zmq_msg_data(&f[h + 1]);
    zmq_msg_t *args = &f[h + 2];
    size_t nargs = n - h - 2;
    s_worker_t *w = zhashx_lookup(self->workers_by_id, hex);
    if (w)
        w->last_recv = self->now;
    if (cmd == KZ_MDPW_READY) {
        if (w) {
            /* READY twice: protocol error, as in RFC 7 */
            s_drop(self, S_DROP_WORKER_CMD, hex);
            s_worker_remove(self, w, true);
        } else
            s_worker_ready(self, &f[0], hex, args, nargs);
        return;
    }
    if (cmd == KZ_MDPW_REQUEST || cmd < KZ_MDPW_READY || cmd > KZ_MDPW_DISCONNECT) {
        /* RFC 7: REQUEST comes from the broker, never to it; like an
           unknown command it is a protocol error: DISCONNECT */
        s_drop(self, S_DROP_WORKER_CMD, hex);
        if (w)
            s_worker_remove(self, w, true);
        else
            s_worker_send_cmd(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), KZ_MDPW_DISCONNECT,
                              &err);
        return;
    }
    if (!w) {
        s_drop(self, S_DROP_UNKNOWN_WORKER, hex);
        if (cmd != KZ_MDPW_DISCONNECT)
            s_worker_send_cmd(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), KZ_MDPW_DISCONNECT,
                              &err);
        return;
    }
    switch (cmd) {
    case KZ_MDPW_REPLY:
        s_worker_reply(self, w, args, nargs);
        break;
    case KZ_MDPW_HEARTBEAT:
        break;
    default: /* KZ_MDPW_DISCONNECT */
        kz_debug("worker %s disconnected", hex);
        s_worker_remove(self, w, false);
        break;
    }
}

static void s_pack_key(msgpack_packer *pk, const char *key)
{
    s_pack_str(pk, key);
}

static void s_pack_kv(msgpack_packer *pk, const char *key, uint64_t value)
{
    s_pack_key(pk, key);
    msgpack_pack_uint64(pk, value);
}

/* The mmi.stats reply: see kz_broker.h / proto/PROTOCOL.md for the shape */
static void s_pack_stats(kz_broker_t *self, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 7);
    s_pack_kv(pk, "uptime_ms", (uint64_t)(self->now - self->started));

    kz_dlog_stats_t dst;
    memset(&dst, 0, sizeof dst);
    if (self->dlog)
        kz_dlog_stats(self->dlog, &dst);
    s_pack_key(pk, "durable");
    msgpack_pack_map(pk, 10);
    s_pack_kv(pk, "enabled", self->dlog != NULL);
    s_pack_kv(pk, "log_bytes", dst.bytes);
    s_pack_kv(pk, "segments", dst.segments);
    s_pack_kv(pk, "unacked", dst.unacked);
    s_pack_kv(pk, "appended", dst.appended);
    s_pack_kv(pk, "acked", dst.acked);
    s_pack_kv(pk, "syncs", dst.syncs);
    s_pack_kv(pk, "replayed", dst.replayed);
    s_pack_kv(pk, "corrupt", dst.corrupt);
    s_pack_kv(pk, "log_full", dst.full);

    s_pack_key(pk, "topics");
    msgpack_pack_map(pk, zhashx_size(self->topics));
    for (s_topic_stats_t *ts = zhashx_first(self->topics); ts; ts = zhashx_next(self->topics)) {
        s_pack_str(pk, zhashx_cursor(self->topics));
        msgpack_pack_map(pk, 2);
        s_pack_kv(pk, "msgs", ts->msgs);
        s_pack_kv(pk, "bytes", ts->bytes);
    }

    s_pack_key(pk, "services");
    msgpack_pack_map(pk, zhashx_size(self->services));
    for (s_service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services)) {
        s_pack_str(pk, s->name);
        msgpack_pack_map(pk, 6);
        s_pack_kv(pk, "requests", s->nrequests);
        s_pack_kv(pk, "replies", s->nreplies);
        s_pack_kv(pk, "bytes", s->bytes);
        s_pack_kv(pk, "workers", s->nworkers);
        s_pack_kv(pk, "waiting", s->waiting.len);
        s_pack_kv(pk, "queued", s->requests.len);
    }

    s_pack_key(pk, "groups");
    msgpack_pack_map(pk, self->ngroups);
    for (size_t i = 0; i < self->ngroups; i++) {
        s_group_t *g = self->groups[i];
        uint64_t inflight = 0;
        for (size_t k = 0; k < g->nmembers; k++)
            inflight += g->members[k]->live;
        s_pack_str(pk, g->name);
        msgpack_pack_map(pk, 7);
        s_pack_kv(pk, "members", g->nmembers);
        s_pack_kv(pk, "queued", g->queue.len);
        s_pack_kv(pk, "inflight", inflight);
        s_pack_kv(pk, "delivered", g->delivered);
        s_pack_kv(pk, "redelivered", g->redelivered);
        s_pack_kv(pk, "acked", g->acked);
        s_pack_kv(pk, "nacked", g->nacked);
    }

    size_t ndrops = 0;
    for (int i = 0; i < S_DROP_COUNT; i++)
        ndrops += self->drops[i] > 0;
    s_pack_key(pk, "drops");
    msgpack_pack_map(pk, ndrops);
    for (int i = 0; i < S_DROP_COUNT; i++)
        if (self->drops[i] > 0)
            s_pack_kv(pk, s_drop_names[i], self->drops[i]);

    /* refused: {identity: {role, publish, offer, join, call, tap}} */
    size_t nrefused = 0;
    if (self->idents)
        for (s_ident_t *id = zhashx_first(self->idents); id; id = zhashx_next(self->idents))
            nrefused += s_refused_any(id);
    s_pack_key(pk, "refused");
    msgpack_pack_map(pk, nrefused);
    if (self->idents)
        for (s_ident_t *id = zhashx_first(self->idents); id; id = zhashx_next(self->idents)) {
            if (!s_refused_any(id))
                continue;
            s_pack_str(pk, id->name);
            msgpack_pack_map(pk, 1 + S_ACT_COUNT);
            s_pack_key(pk, "role");
            s_pack_str(pk, s_role_names[id->role]);
            for (int a = 0; a < S_ACT_COUNT; a++)
                s_pack_kv(pk, s_act_names[a], id->refused[a]);
        }
}

/* Answer an mmi.* request ourselves (MMI, ZeroMQ RFC 8) */
static void s_mmi(kz_broker_t *self, zmq_msg_t *client, bool delim, const char *service,
                  zmq_msg_t *body, size_t nbody, uint64_t seq)
{
    char hex[2 * S_ID_MAX + 1];
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    const char *result = "501";
    size_t rlen = 3;
    if (strcmp(service, KZ_MMI_SERVICE) == 0) {
        char name[KZ_TOPIC_MAX + 1];
        s_service_t *svc = NULL;
        if (nbody >= 1 && s_name(&body[0], name, false) == 0)
            svc = zhashx_lookup(self->services, name);
        result = svc && svc->nworkers > 0 ? "200" : "404";
    } else if (strcmp(service, KZ_MMI_STATS) == 0) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        s_pack_stats(self, &pk);
        result = sbuf.data;
        rlen = sbuf.size;
    }
    if (self->tap_subs > 0) {
        s_hex(zmq_msg_data(client), zmq_msg_size(client), hex);
        zmq_msg_t reply;
        zmq_msg_init_size(&reply, rlen);
        memcpy(zmq_msg_data(&reply), result, rlen);
        s_tapinfo_t info = {hex, NULL, seq, true, rlen, -1};
        s_tap(self, KZ_TAP_REPLY, service, strlen(service), &info, &reply, 1);
        zmq_msg_close(&reply);
    }
    if (s_route_client(self, client) == 0) {
        if (delim)
            s_send_buf(self->router_h, "", 0, true);
        s_send_buf(self->router_h, KZ_MDPC, strlen(KZ_MDPC), true);
        s_send_buf(self->router_h, service, strlen(service), true);
        s_send_buf(self->router_h, result, rlen, false);
    }
    msgpack_sbuffer_destroy(&sbuf);
}

static void s_handle_client(kz_broker_t *self, zmq_msg_t *f, size_t n, size_t h, bool delim)
{
    char name[KZ_TOPIC_MAX + 1];
    char hex[2 * S_ID_MAX + 1];
    if (n < h + 2 || s_name(&f[h + 1], name, false) == -1) {
        s_hex(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), hex);
        s_drop(self, S_DROP_REQUEST, hex);
        return;
    }
    zmq_msg_t *body = &f[h + 2];
    size_t nbody = n - h - 2, bytes = 0;
    for (size_t i = 0; i < nbody; i++)
        bytes += zmq_msg_size(&body[i]);
    /* may the sender call it at all? (rules, PROTOCOL.md 1.5): a kaizen
       client hears why at once, a stock one gets nothing */
    /* (the User-Id is on the frames the peer sent, not on the routing id) */
    if (self->rules_on && !s_allowed(self, &f[h + 1], S_ACT_CALL, name, strlen(name))) {
        kz_msg_peek_t rp;
        if (n == h + 3 && kz_msg_peek(zmq_msg_data(&f[h + 2]), zmq_msg_size(&f[h + 2]), &rp) == 0) {
            char why[300];
            s_refusal_text(self, &f[h + 1], S_ACT_CALL, name, why, sizeof why);
            s_reply_error(self, &f[0], delim, name, rp.id, 0, "refused",
                          "the broker's rules refuse a call to '%s' from %s (broker.rules, "
                          "PROTOCOL.md 1.5)",
                          name, why);
        }
        return;
    }
    uint64_t seq = ++self->next_seq;
    bool mmi = strncmp(name, "mmi.", 4) == 0;
    s_service_t *svc = mmi ? NULL : s_service_require(self, name);
    if (!mmi && !svc) {
        s_drop(self, S_DROP_TOO_MANY_NAMES, NULL);
        return;
    }
    if (svc) {
        svc->nrequests++;
        svc->bytes += bytes;
    }
    if (self->tap_subs > 0) {
        s_hex(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), hex);
        s_tapinfo_t info = {hex, NULL, seq, true, bytes, -1};
        s_tap(self, KZ_TAP_REQUEST, name, strlen(name), &info, body, nbody);
    }
    if (mmi) {
        s_mmi(self, &f[0], delim, name, body, nbody, seq);
        return;
    }
    if (!svc) /* unreachable: keeps the analysers sure */
        return;
    /* a kaizen client's request is one envelope: its id, src and deadline
       are read without decoding the rest (a worker decodes it) */
    kz_msg_peek_t pk;
    bool kaizen =
        nbody == 1 && kz_msg_peek(zmq_msg_data(&body[0]), zmq_msg_size(&body[0]), &pk) == 0;
    if (svc->requests.len >= self->service_queue_limit) {
        s_drop_detail(self, S_DROP_SERVICE_QUEUE, NULL, name);
        if (kaizen)
            s_reply_error(self, &f[0], delim, name, pk.id, seq, "queue_full",
                          "the broker's queue for '%s' is full (%zu requests waiting, "
                          "broker.service_queue_limit): try again later",
                          name, svc->requests.len);
        return;
    }
    int64_t expires = 0;
    if (kaizen && pk.deadline > 0) {
        /* the budget the client gave, measured on its own clock (deadline
           minus ts) from the arrival here: the two clocks need not agree */
        int64_t budget_ms = (pk.deadline - pk.ts) / 1000;
        if (budget_ms <= 0) {
            s_drop_detail(self, S_DROP_REQUEST_EXPIRED, NULL, name);
            s_reply_error(self, &f[0], delim, name, pk.id, seq, "expired",
                          "the request to '%s' reached the broker after its deadline", name);
            return;
        }
        expires = self->now + budget_ms;
    }
    s_request_t *req = s_request_new(self, nbody);
    if (!req)
        return;
    req->service = svc;
    req->delim = delim;
    req->seq = seq;
    if (kaizen) {
        req->kaizen = true;
        memcpy(req->id, pk.id, sizeof req->id);
        memcpy(req->src, pk.src, sizeof req->src);
        req->expires = expires;
    }
    zmq_msg_move(&req->client, &f[0]);
    for (size_t i = 0; i < nbody; i++)
        zmq_msg_move(&req->body[i], &body[i]);
    if (s_ring_push_back(&svc->requests, req) == -1) {
        s_request_free(self, req);
        return;
    }
    int64_t at = s_request_expiry(self, svc, req, NULL);
    if (svc->next_expiry > at)
        svc->next_expiry = at;
    s_service_dispatch(self, svc);
}

static void s_router_message(kz_broker_t *self, zmq_msg_t *f, size_t n)
{
    size_t h = 1;
    bool delim = false;
    if (n > 1 && zmq_msg_size(&f[1]) == 0) {
        delim = true;
        h = 2;
    }
    if (n <= h) {
        s_drop(self, S_DROP_PROTOCOL, NULL);
        return;
    }
    if (s_frame_is(&f[h], KZ_MDPC))
        s_handle_client(self, f, n, h, delim);
    else if (s_frame_is(&f[h], KZ_MDPW))
        s_handle_worker(self, f, n, h);
    else if (s_frame_is(&f[h], KZ_GRP))
        s_handle_group(self, f, n, h);
    else {
        char hex[2 * S_ID_MAX + 1];
        s_hex(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), hex);
        s_drop(self, S_DROP_PROTOCOL, hex);
    }
}

static void s_handle_router(kz_broker_t *self)
{
    zmq_msg_t f[S_MAX_FRAMES];
    for (int b = 0; b < S_BATCH; b++) {
        size_t n = 0;
        bool too_many = false;
        while (true) {
            zmq_msg_t *m = n < S_MAX_FRAMES ? &f[n] : NULL;
            zmq_msg_t scratch;
            if (!m) {
                m = &scratch;
                too_many = true;
            }
            zmq_msg_init(m);
            if (zmq_msg_recv(m, self->router_h, ZMQ_DONTWAIT) == -1) {
                zmq_msg_close(m);
                break;
            }
            bool more = zmq_msg_more(m);
            if (m == &scratch)
                zmq_msg_close(m);
            else
                n++;
            if (!more)
                break;
        }
        if (n == 0)
            return;
        if (too_many)
            s_drop(self, S_DROP_TOO_MANY_FRAMES, NULL);
        else
            s_router_message(self, f, n);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
}

/* ---------------------------------------------------------------- timer */

/* Drop the queued requests whose time is up (s_request_expiry), telling
   kaizen clients why. A full pass runs only once the earliest expiry
   (svc->next_expiry) has come, so a long queue costs nothing per tick. */
static void s_expire_requests(kz_broker_t *self, s_service_t *svc)
{
    s_ring_t *q = &svc->requests;
    if (q->len == 0) {
        svc->next_expiry = INT64_MAX;
        return;
    }
    if (self->now < svc->next_expiry)
        return;
    int64_t next = INT64_MAX;
    /* one rotation keeps the order of the requests that stay */
    for (size_t n = q->len; n > 0; n--) {
        s_request_t *req = s_ring_pop_front(q);
        if (!req)
            break;
        bool no_worker = false;
        int64_t at = s_request_expiry(self, svc, req, &no_worker);
        if (self->now < at) {
            s_ring_push_back(q, req); /* room is there: it was just taken out */
            if (at < next)
                next = at;
            continue;
        }
        char text[512];
        int64_t waited = self->now - req->arrived;
        if (no_worker || svc->nworkers == 0) {
            /* whichever clock ran out, the truth is that nobody serves it */
            snprintf(text, sizeof text,
                     "no worker serves '%s': the request waited %" PRId64 " ms for one (%s)",
                     svc->name, waited, no_worker ? "broker.request_ttl" : "until its deadline");
            s_request_refuse(self, svc, req, S_DROP_NO_WORKER, "no_worker", text);
        } else {
            snprintf(text, sizeof text,
                     "the request to '%s' waited %" PRId64
                     " ms in the broker's queue and passed its %s (%zu worker%s, all busy)",
                     svc->name, waited, req->expires ? "deadline" : "broker.request_ttl",
                     svc->nworkers, svc->nworkers == 1 ? "" : "s");
            s_request_refuse(self, svc, req, S_DROP_REQUEST_EXPIRED, "expired", text);
        }
    }
    svc->next_expiry = next;
}

/* A queued request is taken back from the queue by the client's
   request.cancel event (PROTOCOL.md 1.3): the first queued request with
   that id from the same src goes, unanswered (its client stopped waiting).
   A request a worker holds is the worker's to stop (it sees the event too). */
static void s_cancel_request(kz_broker_t *self, zmq_msg_t *body)
{
    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode(zmq_msg_data(body), zmq_msg_size(body), NULL, &err);
    if (!msg)
        return; /* counted as malformed by whoever decodes it; we only route it */
    const kz_val_t *b = kz_msg_body_const(msg);
    const char *id = kz_map_str(b, "id");
    const char *service = kz_map_str(b, "service");
    const char *src = kz_msg_src(msg);
    /* the service it names, else every one */
    s_service_t *only = service ? zhashx_lookup(self->services, service) : NULL;
    for (s_service_t *svc = service ? only : zhashx_first(self->services); id && svc;
         svc = service ? NULL : zhashx_next(self->services)) {
        s_ring_t *q = &svc->requests;
        for (size_t i = 0; i < q->len; i++) {
            s_request_t *req = s_ring_at(q, i);
            if (!req->kaizen || strcmp(req->id, id) != 0 || strcmp(req->src, src) != 0)
                continue;
            s_ring_remove_at(q, i);
            s_drop_detail(self, S_DROP_REQUEST_CANCELLED, NULL, svc->name);
            s_request_free(self, req);
            kz_msg_destroy(&msg);
            return;
        }
    }
    kz_msg_destroy(&msg);
}

/* Remove the workers and group peers a send found gone. Removing may
   requeue work whose dispatch finds more of them: loop until none is left. */
static void s_reap(kz_broker_t *self)
{
    while (self->reap) {
        self->reap = false;
        for (size_t i = self->nworkers; i-- > 0;)
            if (i < self->nworkers && self->workers[i]->gone)
                s_worker_remove(self, self->workers[i], false);
        for (size_t i = self->ngpeers; i-- > 0;)
            if (i < self->ngpeers && self->gpeers[i]->gone)
                s_gpeer_remove(self, self->gpeers[i]);
    }
}

/* Forget services with no worker and no queued request, and groups with
   no member and no queued event, once unused for name_idle_ms: names that
   any peer can create must not fill the S_MAX_* tables for good */
static void s_reclaim(kz_broker_t *self)
{
    s_service_t *idle[256];
    size_t nidle = 0;
    for (s_service_t *s = zhashx_first(self->services); s && nidle < 256;
         s = zhashx_next(self->services))
        if (s->nworkers == 0 && s->requests.len == 0 &&
            self->now - s->last_used > self->name_idle_ms)
            idle[nidle++] = s;
    for (size_t i = 0; i < nidle; i++) {
        kz_debug("forgetting idle service '%s'", idle[i]->name);
        zhashx_delete(self->services, idle[i]->name);
        s_service_destroy(self, idle[i]);
    }
    for (size_t i = self->ngroups; i-- > 0;) {
        s_group_t *g = self->groups[i];
        if (!g->durable && g->nmembers == 0 && g->queue.len == 0 &&
            self->now - g->last_used > self->name_idle_ms) {
            kz_debug("forgetting idle group '%s'", g->name);
            self->groups[i] = self->groups[--self->ngroups];
            s_group_destroy(self, g);
        }
    }
}

static void s_log_stats(kz_broker_t *self)
{
    uint64_t requests = 0, replies = 0, delivered = 0, acked = 0, drops = 0;
    for (s_service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services)) {
        requests += s->nrequests;
        replies += s->nreplies;
    }
    for (size_t i = 0; i < self->ngroups; i++) {
        delivered += self->groups[i]->delivered;
        acked += self->groups[i]->acked;
    }
    for (int i = 0; i < S_DROP_COUNT; i++)
        drops += self->drops[i];
    kz_info("stats events=%" PRIu64 " event_bytes=%" PRIu64 " requests=%" PRIu64 " replies=%" PRIu64
            " workers=%zu members=%zu delivered=%" PRIu64 " acked=%" PRIu64 " drops=%" PRIu64,
            self->events_in, self->event_bytes, requests, replies, self->nworkers, self->ngpeers,
            delivered, acked, drops);
}

/* Liveness. An idle worker silent for liveness x heartbeat is expired. A
   busy one is not: a stock RFC 7 worker sends nothing while it works, for
   however long the request takes. Instead the broker's heartbeat to it,
   sent every interval like to any worker, is the probe: ROUTER_MANDATORY
   makes that send fail with EHOSTUNREACH once the connection is gone (the
   process died and the kernel closed its socket; a vanished host is
   caught by TCP keepalive), and the worker is removed and its request
   requeued. Group members are expired for silence, as KZG01 requires them
   to heartbeat; a failed heartbeat removes them at once. */
static void s_tick(kz_broker_t *self)
{
    int64_t expiry = (int64_t)self->heartbeat_ms * self->liveness;
    int err = 0;
    s_reap(self);
    for (size_t i = self->nworkers; i-- > 0;) {
        if (i >= self->nworkers)
            continue;
        s_worker_t *w = self->workers[i];
        if (!w->current && self->now - w->last_recv > expiry) {
            kz_info("worker %s of '%s' expired", w->hex, w->service->name);
            s_worker_remove(self, w, true);
        } else if (self->now - w->last_send >= self->heartbeat_ms) {
            w->last_send = self->now;
            if (s_worker_send_cmd(self, w->id, w->idlen, KZ_MDPW_HEARTBEAT, &err) == -1 &&
                err == EHOSTUNREACH) {
                kz_info("worker %s of '%s' gone (%s)", w->hex, w->service->name,
                        w->current ? "busy, silent" : "idle");
                s_worker_remove(self, w, false);
            }
        }
    }
    for (size_t i = self->ngpeers; i-- > 0;) {
        if (i >= self->ngpeers)
            continue;
        s_gpeer_t *p = self->gpeers[i];
        if (self->now - p->last_recv > expiry) {
            kz_info("group member %s expired", p->hex);
            s_gpeer_remove(self, p);
        } else if (self->now - p->last_send >= self->heartbeat_ms) {
            p->last_send = self->now;
            if (s_gpeer_send_cmd(self, p->id, p->idlen, KZ_GRP_HEARTBEAT, &err) == -1 &&
                err == EHOSTUNREACH) {
                kz_info("group member %s gone", p->hex);
                s_gpeer_remove(self, p);
            }
        }
    }
    s_reap(self);
    /* members and workers that were at their high-water mark get another
       chance once per tick */
    for (size_t i = 0; i < self->ngroups; i++) {
        s_group_t *g = self->groups[i];
        for (size_t k = 0; k < g->nmembers; k++)
            g->members[k]->stalled = false;
        if (g->queue.len > 0)
            s_group_dispatch(self, g);
    }
    for (s_service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services)) {
        s_expire_requests(self, s);
        s_service_dispatch(self, s);
    }
    s_reap(self);
    s_reclaim(self);
    if (self->dlog && kz_dlog_dirty(self->dlog)) {
        /* at most a tick (<= 100 ms) between an append and its fdatasync */
        char why[512];
        uint64_t ticket = 0;
        if (kz_dlog_sync_start(self->dlog, &ticket, why, sizeof why) != 0)
            kz_error("durable log: %s", why);
    }
    if (self->stats_interval_ms > 0 && self->now >= self->next_stats) {
        s_log_stats(self);
        self->next_stats = self->now + self->stats_interval_ms;
    }
}

/* ----------------------------------------------------------- lifecycle */

/* Refuse to steal an ipc:// path another process is serving: zmq would
   silently unlink it. 0 = free (or stale), -1 = in use. */
static int s_ipc_in_use(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0)
        return 0;
    const char *path = endpoint + 6;
    struct sockaddr_un addr;
    if (path[0] == '\0' || strcmp(path, "*") == 0 || strlen(path) >= sizeof(addr.sun_path))
        return 0;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path));
    socklen_t alen = (socklen_t)sizeof(addr);
    if (path[0] == '@') {
        addr.sun_path[0] = '\0'; /* abstract namespace */
        alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return 0;
    int rc = connect(fd, (struct sockaddr *)&addr, alen);
    close(fd);
    return rc == 0 ? -1 : 0;
}

static zsock_t *s_bind(kz_broker_t *self, int type, const char *what, const char *endpoint,
                       const kz_config_t *cfg, char *errbuf, size_t errlen)
{
    if (!endpoint || !*endpoint) {
        snprintf(errbuf, errlen, "bus.endpoints.%s is not set", what);
        return NULL;
    }
    char key[32];
    snprintf(key, sizeof key, "bus.endpoints.%s", what);
    if (kz_bus_ipc_check(endpoint, key, errbuf, errlen) != 0)
        return NULL;
    if (s_ipc_in_use(endpoint) == -1) {
        snprintf(errbuf, errlen,
                 "unable to bind '%s': Address already in use (is another kaizen-broker running?)",
                 endpoint);
        return NULL;
    }
    zsock_t *sock = zsock_new(type);
    if (!sock) {
        snprintf(errbuf, errlen, "unable to create the %s socket", what);
        return NULL;
    }
    void *h = zsock_resolve(sock);
    int zero = 0, hwm = cfg->bus.hwm;
    int64_t maxsize =
        cfg->bus.max_message_size > (size_t)INT64_MAX ? -1 : (int64_t)cfg->bus.max_message_size;
    zmq_setsockopt(h, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(h, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(h, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    if (maxsize > 0)
        zmq_setsockopt(h, ZMQ_MAXMSGSIZE, &maxsize, sizeof(maxsize));
    /* a peer whose host vanished (no FIN, no RST) is found by keepalive:
       its connection closes, and ROUTER_MANDATORY sends then report it */
    int ka = 1, ka_idle = 30, ka_intvl = 10, ka_cnt = 3;
    zmq_setsockopt(h, ZMQ_TCP_KEEPALIVE, &ka, sizeof(ka));
    zmq_setsockopt(h, ZMQ_TCP_KEEPALIVE_IDLE, &ka_idle, sizeof(ka_idle));
    zmq_setsockopt(h, ZMQ_TCP_KEEPALIVE_INTVL, &ka_intvl, sizeof(ka_intvl));
    zmq_setsockopt(h, ZMQ_TCP_KEEPALIVE_CNT, &ka_cnt, sizeof(ka_cnt));
    if (type == ZMQ_XPUB && self->rules_on && strcmp(what, "tap") == 0) {
        int one = 1;
        zmq_setsockopt(h, ZMQ_XPUB_MANUAL, &one, sizeof(one));
    }
    if (type == ZMQ_ROUTER) {
        /* sends to a gone peer fail (EHOSTUNREACH) instead of vanishing,
           and a full pipe says EAGAIN: see s_route */
        int one = 1;
        zmq_setsockopt(h, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    }
    if (self->cert) {
        zcert_apply(self->cert, sock);
        zsock_set_curve_server(sock, 1);
    }
    if (zmq_bind(h, endpoint) == -1) {
        int err = zmq_errno();
        snprintf(errbuf, errlen, "unable to bind '%s': %s%s", endpoint, zmq_strerror(err),
                 err == EADDRINUSE ? " (is another kaizen-broker running?)" : "");
        zsock_destroy(&sock);
        return NULL;
    }
    return sock;
}

static int s_curve_setup(kz_broker_t *self, const kz_curve_config_t *curve, char *errbuf,
                         size_t errlen)
{
    if (!curve->broker_cert || !*curve->broker_cert) {
        snprintf(errbuf, errlen, "bus.curve.broker_cert is not set (run 'kaizen keygen')");
        return -1;
    }
    if (!curve->allow_dir || !*curve->allow_dir) {
        snprintf(errbuf, errlen, "bus.curve.allow_dir is not set");
        return -1;
    }
    if (access(curve->broker_cert, R_OK) == -1) {
        snprintf(errbuf, errlen, "unable to read certificate '%s': %s", curve->broker_cert,
                 strerror(errno));
        return -1;
    }
    DIR *dir = opendir(curve->allow_dir);
    if (!dir) {
        snprintf(errbuf, errlen, "unable to open allow_dir '%s': %s", curve->allow_dir,
                 strerror(errno));
        return -1;
    }
    closedir(dir);
    self->cert = zcert_load(curve->broker_cert);
    if (!self->cert) {
        snprintf(errbuf, errlen, "unable to load certificate '%s'", curve->broker_cert);
        return -1;
    }
    const char *secret = zcert_secret_txt(self->cert);
    if (!secret || strspn(secret, "0") == strlen(secret)) {
        snprintf(errbuf, errlen, "certificate '%s' has no secret key (use NAME.key_secret)",
                 curve->broker_cert);
        return -1;
    }
    self->auth = zactor_new(zauth, NULL);
    if (!self->auth) {
        snprintf(errbuf, errlen, "unable to start the zauth actor");
        return -1;
    }
    zstr_sendx(self->auth, "CURVE", curve->allow_dir, NULL);
    zsock_wait(self->auth);
    return 0;
}

/* The default endpoints live in STATE/bus: make (or check) it private
   before binding there. On ipc:// without CURVE this directory is the
   bus's only authentication (proto/PROTOCOL.md 1.5). */
static int s_bus_dir(const kz_config_t *cfg, const char *const eps[4], char *errbuf, size_t errlen)
{
    char dir[PATH_MAX];
    if (!cfg->state_dir ||
        snprintf(dir, sizeof dir, "%s/%s", cfg->state_dir, KZ_BUS_DIR) >= (int)sizeof dir)
        return 0;
    size_t len = strlen(dir);
    for (int i = 0; i < 4; i++) {
        const char *ep = eps[i];
        if (ep && strncmp(ep, "ipc://", 6) == 0 && strncmp(ep + 6, dir, len) == 0 &&
            ep[6 + len] == '/')
            return kz_state_init(cfg, errbuf, errlen) == 0 ? kz_bus_dir_ensure(dir, errbuf, errlen)
                                                           : -1;
    }
    return 0;
}

static char *s_pick(const char *bind, const char *connect)
{
    const char *ep = bind && *bind ? bind : connect;
    return ep ? strdup(ep) : NULL;
}

kz_broker_t *kz_broker_new(const kz_config_t *cfg, char *errbuf, size_t errlen)
{
    assert(cfg);
    /* CZMQ's own handler would swallow SIGINT/SIGTERM; main installs ours */
    zsys_handler_set(NULL);
    kz_broker_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->heartbeat_ms = cfg->bus.heartbeat_ms > 0 ? cfg->bus.heartbeat_ms : 1000;
    self->liveness = cfg->bus.heartbeat_liveness > 0 ? cfg->bus.heartbeat_liveness : 3;
    self->group_queue_limit =
        cfg->broker.group_queue_limit > 0 ? (size_t)cfg->broker.group_queue_limit : 1;
    self->group_inflight = cfg->broker.group_inflight > 0 ? (size_t)cfg->broker.group_inflight : 1;
    self->service_queue_limit =
        cfg->broker.service_queue_limit > 0 ? (size_t)cfg->broker.service_queue_limit : 0;
    self->max_deliveries =
        cfg->broker.max_deliveries > 0 ? (unsigned)cfg->broker.max_deliveries : 5;
    self->request_ttl_ms = cfg->broker.request_ttl_ms;
    /* a name unused for twice the request ttl is forgotten */
    self->name_idle_ms = 2 * (int64_t)(self->request_ttl_ms > 0 ? self->request_ttl_ms : 60000);
    self->stats_interval_ms = cfg->broker.stats_interval_ms;
    kz_agent_make_id("kaizen-broker", self->id, sizeof self->id);
    self->now = self->started = s_mono_ms();
    self->next_stats = self->now + self->stats_interval_ms;
    self->topics = zhashx_new();
    self->services = zhashx_new();
    self->workers_by_id = zhashx_new();
    self->gpeers_by_id = zhashx_new();
    if (!self->topics || !self->services || !self->workers_by_id || !self->gpeers_by_id) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    zhashx_set_destructor(self->topics, s_free_ptr);

    self->ep_pub = s_pick(cfg->bus.bind.pub, cfg->bus.connect.pub);
    self->ep_sub = s_pick(cfg->bus.bind.sub, cfg->bus.connect.sub);
    self->ep_router = s_pick(cfg->bus.bind.router, cfg->bus.connect.router);
    self->ep_tap = s_pick(cfg->bus.bind.tap, cfg->bus.connect.tap);

    if (s_bus_dir(cfg, (const char *[]){self->ep_pub, self->ep_sub, self->ep_router, self->ep_tap},
                  errbuf, errlen) == -1)
        goto fail;
    if (cfg->bus.curve.enabled && s_curve_setup(self, &cfg->bus.curve, errbuf, errlen) == -1)
        goto fail;
    if (cfg->bus.curve.enabled) {
        /* with CURVE every peer has an identity, and the rules apply */
        self->rules_on = true;
        self->allow_dir = strdup(cfg->bus.curve.allow_dir);
        self->idents = zhashx_new();
        if (!self->allow_dir || !self->idents || s_rules_init(self, &cfg->broker.rules) == -1) {
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
        zhashx_set_destructor(self->idents, s_free_ptr);
        s_idents_load(self);
    }
    if (!(self->pub = s_bind(self, ZMQ_XSUB, "pub", self->ep_pub, cfg, errbuf, errlen)) ||
        !(self->sub = s_bind(self, ZMQ_XPUB, "sub", self->ep_sub, cfg, errbuf, errlen)) ||
        !(self->router =
              s_bind(self, ZMQ_ROUTER, "router", self->ep_router, cfg, errbuf, errlen)) ||
        !(self->tap = s_bind(self, ZMQ_XPUB, "tap", self->ep_tap, cfg, errbuf, errlen)))
        goto fail;
    self->pub_h = zsock_resolve(self->pub);
    self->sub_h = zsock_resolve(self->sub);
    self->router_h = zsock_resolve(self->router);
    self->tap_h = zsock_resolve(self->tap);
    /* the XSUB subscribes to everything so every event reaches us */
    if (zmq_send(self->pub_h, "\x01", 1, 0) == -1) {
        snprintf(errbuf, errlen, "unable to subscribe the pub socket: %s",
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (s_durable_setup(self, cfg, errbuf, errlen) != 0)
        goto fail;
    kz_info("broker ready pub=%s sub=%s router=%s tap=%s%s", self->ep_pub, self->ep_sub,
            self->ep_router, self->ep_tap, self->cert ? " curve=on" : "");
    const char *eps[4] = {self->ep_pub, self->ep_sub, self->ep_router, self->ep_tap};
    for (int i = 0; i < 4 && !self->cert; i++)
        if (strncmp(eps[i], "tcp://", 6) == 0) {
            kz_warn("'%s' is TCP without CURVE: every peer that reaches it may publish, approve "
                    "plans, serve validators and read the tap (enable bus.curve, or use the "
                    "default ipc:// endpoints; proto/PROTOCOL.md 1.5)",
                    eps[i]);
            break;
        }
    return self;
fail:
    kz_broker_destroy(&self);
    return NULL;
}

int kz_broker_run(kz_broker_t *self)
{
    assert(self);
    int tick = self->heartbeat_ms / 4;
    if (tick > 100)
        tick = 100;
    if (tick < 5)
        tick = 5;
    zmq_pollitem_t items[5] = {
        {self->pub_h, 0, ZMQ_POLLIN, 0},
        {self->router_h, 0, ZMQ_POLLIN, 0},
        {self->sub_h, 0, ZMQ_POLLIN, 0},
        {self->tap_h, 0, ZMQ_POLLIN, 0},
        {NULL, self->dlog ? kz_dlog_sync_fd(self->dlog) : -1, ZMQ_POLLIN, 0},
    };
    int nitems = self->dlog ? 5 : 4;
    self->now = s_mono_ms();
    int64_t next_tick = self->now + tick;
    while (!self->stopping) {
        long timeout = (long)(next_tick - self->now);
        if (timeout < 0)
            timeout = 0;
        int rc = zmq_poll(items, nitems, timeout);
        if (rc == -1) {
            int err = zmq_errno();
            if (err == EINTR) {
                self->now = s_mono_ms();
                continue;
            }
            if (err == ETERM)
                break;
            kz_error("poll failed: %s", zmq_strerror(err));
            return -1;
        }
        self->now = s_mono_ms();
        /* tap subscriptions first so a new listener sees this batch */
        if (items[3].revents & ZMQ_POLLIN)
            s_handle_tap(self);
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pub(self);
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_router(self);
        if (items[2].revents & ZMQ_POLLIN)
            s_handle_sub(self);
        if (self->reap)
            s_reap(self);
        if (self->syncs_new)
            s_sync_round(self);
        if (nitems == 5 && (items[4].revents & ZMQ_POLLIN))
            s_sync_confirm(self); /* the log's thread finished a sync */
        if (self->now >= next_tick) {
            s_tick(self);
            next_tick = self->now + tick;
        }
    }
    kz_info("broker stopping");
    return 0;
}

void kz_broker_stop(kz_broker_t *self)
{
    if (self)
        self->stopping = 1;
}

const char *kz_broker_endpoint(const kz_broker_t *self, const char *which)
{
    if (!self || !which)
        return NULL;
    if (strcmp(which, "pub") == 0)
        return self->ep_pub;
    if (strcmp(which, "sub") == 0)
        return self->ep_sub;
    if (strcmp(which, "router") == 0)
        return self->ep_router;
    if (strcmp(which, "tap") == 0)
        return self->ep_tap;
    return NULL;
}

void kz_broker_destroy(kz_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_broker_t *self = *self_p;
    /* members' deliveries go back to their queues: not acknowledged */
    while (self->ngpeers > 0)
        s_gpeer_remove(self, self->gpeers[self->ngpeers - 1]);
    kz_dlog_close(&self->dlog);
    free(self->syncs);
    for (size_t i = 0; i < self->nworkers; i++) {
        s_worker_t *w = self->workers[i];
        if (w->current)
            s_request_free(self, w->current);
        free(w);
    }
    self->nworkers = 0;
    for (size_t i = 0; i < self->ngroups; i++)
        s_group_destroy(self, self->groups[i]);
    if (self->services) {
        for (s_service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services))
            s_service_destroy(self, s);
    }
    zhashx_destroy(&self->services);
    zhashx_destroy(&self->topics);
    zhashx_destroy(&self->workers_by_id);
    zhashx_destroy(&self->gpeers_by_id);
    free(self->workers);
    free(self->gpeers);
    free(self->groups);
    while (self->free_items) {
        s_item_t *next = self->free_items->next_free;
        free(self->free_items);
        self->free_items = next;
    }
    while (self->free_requests) {
        s_request_t *next = self->free_requests->next_free;
        free(self->free_requests);
        self->free_requests = next;
    }
    /* a socket exists only once bound: those ipc paths are ours to unlink,
       as zmq does not always remove them on exit */
    const char *eps[4] = {self->pub ? self->ep_pub : NULL, self->sub ? self->ep_sub : NULL,
                          self->router ? self->ep_router : NULL, self->tap ? self->ep_tap : NULL};
    zsock_destroy(&self->pub);
    zsock_destroy(&self->sub);
    zsock_destroy(&self->router);
    zsock_destroy(&self->tap);
    for (int i = 0; i < 4; i++)
        if (eps[i] && strncmp(eps[i], "ipc://", 6) == 0 && eps[i][6] != '@' &&
            strcmp(eps[i] + 6, "*") != 0)
            unlink(eps[i] + 6);
    zactor_destroy(&self->auth);
    zcert_destroy(&self->cert);
    zhashx_destroy(&self->idents);
    s_rules_free(self);
    free(self->allow_dir);
    free(self->ep_pub);
    free(self->ep_sub);
    free(self->ep_router);
    free(self->ep_tap);
    free(self);
    *self_p = NULL;
}
