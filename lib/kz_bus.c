/*  kz_bus.c - the bus client: publisher, subscriber, queue-group members,
    Majordomo workers and the Majordomo client (see kz_bus.h and
    proto/PROTOCOL.md, "Frames").

    Sockets are created with CZMQ; every frame is read and written with
    raw zmq_msg calls on the resolved handle, so the receive path costs
    one poll per batch of messages and no allocation beyond the decoded
    envelope (delivery structs come from a small free list).

    Everything that keeps the connection healthy - heartbeats, liveness
    checks, re-joining after the broker forgot us, batched acks - runs in
    s_maintain, which kz_bus_recv and kz_bus_call call between polls.
    kz_bus_keepalive is the send-only half of it for callers busy with
    one long request or delivery: heartbeats and acks go out, nothing is
    read, and liveness is not judged (we are not reading, so the broker's
    silence would be our own).
*/
#include "kz_bus.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_log.h"
#include "kz_reqmem.h"
#include "kz_wire.h"

#define S_MAX_MEMBERS       32
#define S_MAX_WORKERS       32
#define S_MAX_FRAMES        8
#define S_ACK_BATCH         64    /* acks per ACK command */
#define S_ACK_FLUSH_MS      5     /* oldest queued ack waits at most this long */
#define S_READ_BATCH        64    /* messages read from one socket per poll */
#define S_PENDING_MAX       10000 /* deliveries queued during a call before we stop reading */
#define S_CACHE_MAX         64    /* free delivery structs kept for reuse */
#define S_PUB_LINGER        2000
#define S_CANCELS           64 /* request.cancel ids remembered by a worker */
#define S_CANCEL_TOPIC      "request.cancel"
#define S_DEADLINE_GRACE_US 2000000 /* a worker gives up this long after a request's deadline */
#define S_BUSY_BACKOFF_MS   1000    /* first wait after a "queue_full" refusal, doubled up to 8 s */
/* a caller waits this long past its deadline for the broker's "expired"
   answer (the broker checks every tick) */
#define S_EXPIRY_WAIT_MS 1000
#define S_HELD           16 /* re-asks a worker holds until the request they re-ask is answered */
#define S_REASKS         8  /* re-asks of one call after lost connections, at most */
/* the outbox of events not yet confirmed durable (kz_bus_flush) */
#define S_OUTBOX_MAX      65536 /* events kept; beyond, the oldest is forgotten (warned) */
#define S_MARKER_EVERY    1024  /* events between the sync markers publish sends itself */
#define S_MARKERS         16    /* markers awaiting confirmation that are remembered */
#define S_MARKER_RETRY_MS 250   /* a flush sends its marker again after this */
#define S_FLUSH_SHORT_MS  200   /* kz_bus_flush_step's timeout while the broker is away */

typedef struct {
    bool used;
    zsock_t *sock;
    void *handle;
    char group[KZ_TOPIC_MAX + 1];
    char prefix[KZ_TOPIC_MAX + 1];
    int64_t last_recv;
    int64_t last_send;
    uint32_t generation; /* bumped whenever the broker may have forgotten us */
    uint8_t acks[S_ACK_BATCH * 8];
    size_t acks_n; /* ids queued in acks */
    int64_t ack_since;
} s_member_t;

typedef struct {
    bool used;
    zsock_t *sock;
    void *handle;
    char service[KZ_TOPIC_MAX + 1];
    int64_t last_recv;
    int64_t last_send;
    uint32_t generation;
} s_worker_t;

/* One event published and not yet confirmed durable */
typedef struct {
    zmq_msg_t topic, body;
    uint64_t seq;
} s_outbox_item_t;

typedef struct {
    zmq_msg_t f[S_MAX_FRAMES];
    int n;
    int total;     /* frames the message had, kept or not */
    bool overflow; /* more frames than S_MAX_FRAMES: only the first ones are kept */
} s_frames_t;

struct kz_bus {
    kz_bus_config_t cfg; /* deep copy */
    char agent_id[256];
    kz_msg_limits_t limits;

    zsock_t *pub;
    void *pub_h;
    bool pub_ready;     /* the broker's XSUB subscription is there */
    bool pub_waited;    /* the first publish already waited for it */
    bool pub_was_ready; /* a subscription came before: a new one is a reconnect */

    /* kz_bus_flush: the outbox (a ring) and the sync DEALER on "router" */
    s_outbox_item_t *outbox;
    size_t ob_head, ob_len, ob_cap;
    uint64_t pub_seq;       /* seq of the last event published */
    uint64_t confirmed_seq; /* every event up to this one is durable */
    uint64_t since_marker;  /* events published since the last marker */
    zsock_t *sync;
    void *sync_h;
    uint8_t sync_id[16];
    struct {
        uint64_t token, covers;
    } markers[S_MARKERS];
    size_t nmarkers;
    uint64_t next_token;
    bool sync_failed;   /* a SYNCED said some event could not be logged */
    bool resending;     /* s_outbox_resend is running */
    bool have_instance; /* the broker instance of the last SYNCED */
    uint8_t instance[8];
    uint64_t outbox_dropped, outbox_resent;
    int64_t outbox_warned;
    bool flush_failing; /* the last kz_bus_flush_step was not confirmed */
    int64_t flush_warned;

    zsock_t *sub;
    void *sub_h;

    s_member_t members[S_MAX_MEMBERS];
    s_worker_t workers[S_MAX_WORKERS];

    zsock_t *client;
    void *client_h;
    const char *call_service; /* set while a call waits for its reply */
    uint8_t *call_reply;      /* first body frame of the latest matching reply */
    size_t call_reply_len;
    bool call_replied;
    /* the client socket's connection to the broker dropped while a call
       was outstanding (socket monitor): the call re-asks (s_call_reask) */
    zsock_t *client_mon;
    void *client_mon_h;
    bool call_lost;
    unsigned mon_seq;
    kz_bus_call_info_t call_info; /* of the latest kz_bus_call */

    /* a worker's memory of its requests and replies, and the re-asks
       waiting for the answer to the request they re-ask (s_request_take) */
    kz_reqmem_t *reqmem;
    kz_delivery_t *held[S_HELD];
    size_t held_n;

    kz_delivery_t **pending; /* ring of deliveries not yet returned */
    size_t pending_head;
    size_t pending_count;
    size_t pending_cap;
    unsigned rr; /* round-robin start among readable sockets */

    int64_t keepalive_at; /* kz_bus_keepalive has nothing to send before this */
    bool acks_queued;     /* an ack waits in some member's batch */

    uint64_t dropped;
    uint64_t reconnects;
    int64_t droplog_at;
    uint64_t droplog_suppressed;

    /* request.cancel events seen while offering a service (a ring) */
    bool cancel_sub;     /* we subscribed to them ourselves */
    bool app_cancel_sub; /* the application subscribed to them too: deliver them */
    struct {
        char id[65];
        char src[256];
        char reason[256];
    } cancels[S_CANCELS];
    size_t cancels_next;
};

/* Free list of delivery structs shared by every bus in the process */
static pthread_mutex_t s_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static kz_delivery_t *s_cache[S_CACHE_MAX];
static size_t s_cache_count;
static int s_live_buses;

static bool s_czmq_ready;

static const char *s_retry_of(const kz_delivery_t *d);

static int64_t s_now(void)
{
    return zclock_mono();
}

static char *s_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void s_endpoints_copy(kz_endpoints_t *dst, const kz_endpoints_t *src)
{
    dst->pub = s_strdup(src->pub);
    dst->sub = s_strdup(src->sub);
    dst->router = s_strdup(src->router);
    dst->tap = s_strdup(src->tap);
}

static void s_endpoints_free(kz_endpoints_t *e)
{
    free(e->pub);
    free(e->sub);
    free(e->router);
    free(e->tap);
}

static void s_cfg_free(kz_bus_config_t *cfg)
{
    s_endpoints_free(&cfg->connect);
    s_endpoints_free(&cfg->bind);
    free(cfg->curve.broker_cert);
    free(cfg->curve.broker_public);
    free(cfg->curve.client_cert);
    free(cfg->curve.allow_dir);
}

static int s_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---------------------------------------------------------------- CURVE */

#define S_ZERO_KEY "0000000000000000000000000000000000000000"

int kz_bus_curve_client(void *zsock, const kz_bus_config_t *cfg, char *errbuf, size_t errlen)
{
    if (!cfg->curve.enabled)
        return 0;
    if (!zsys_has_curve())
        return s_err(errbuf, errlen, "bus.curve.enabled: libzmq was built without curve");
    const char *cpath = cfg->curve.client_cert;
    const char *bpath = cfg->curve.broker_public;
    if (!cpath || !*cpath)
        return s_err(errbuf, errlen, "bus.curve.client_cert: required when curve is enabled");
    if (!bpath || !*bpath)
        return s_err(errbuf, errlen, "bus.curve.broker_public: required when curve is enabled");
    if (cfg->curve.automatic && (access(cpath, F_OK) != 0 || access(bpath, F_OK) != 0))
        return s_err(errbuf, errlen,
                     "no bus keys: '%s' is missing. A tcp:// endpoint requires CURVE and its "
                     "keys are made on first use: run 'kaizen up' (or start kaizen-broker) "
                     "with this config first",
                     access(cpath, F_OK) != 0 ? cpath : bpath);
    if (access(cpath, R_OK) != 0)
        return s_err(errbuf, errlen, "unable to read client certificate '%s': %s", cpath,
                     strerror(errno));
    if (access(bpath, R_OK) != 0)
        return s_err(errbuf, errlen, "unable to read broker public certificate '%s': %s", bpath,
                     strerror(errno));
    zcert_t *client = zcert_load(cpath);
    if (!client)
        return s_err(errbuf, errlen, "unable to load client certificate '%s'", cpath);
    if (streq(zcert_secret_txt(client), S_ZERO_KEY)) {
        zcert_destroy(&client);
        return s_err(errbuf, errlen, "client certificate '%s' has no secret key", cpath);
    }
    zcert_t *broker = zcert_load(bpath);
    if (!broker) {
        zcert_destroy(&client);
        return s_err(errbuf, errlen, "unable to load broker public certificate '%s'", bpath);
    }
    if (zsock) {
        zcert_apply(client, zsock);
        zsock_set_curve_serverkey(zsock, zcert_public_txt(broker));
    }
    zcert_destroy(&client);
    zcert_destroy(&broker);
    return 0;
}

/* ----------------------------------------------------------- ipc paths */

int kz_bus_ipc_check(const char *endpoint, const char *key, char *errbuf, size_t errlen)
{
    if (!endpoint || strncmp(endpoint, "ipc://", 6) != 0 || endpoint[6] == '@')
        return 0;
    const char *path = endpoint + 6;
    if (strlen(path) > KZ_IPC_PATH_MAX)
        return s_err(errbuf, errlen,
                     "%s: the socket path '%s' is %zu bytes, longer than the %d a Unix socket "
                     "path may have: set %s to a shorter ipc:// path (or use a shorter state_dir)",
                     key, path, strlen(path), KZ_IPC_PATH_MAX, key);
    struct stat st;
    if (stat(path, &st) == -1 && errno == EACCES)
        return s_err(errbuf, errlen,
                     "%s: unable to reach '%s': Permission denied (the bus directory is private "
                     "to the user kaizen runs as)",
                     key, path);
    return 0;
}

int kz_bus_dir_ensure(const char *dir, char *errbuf, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return s_err(errbuf, errlen, "bus directory '%s': path too long", dir);
    if (mkdir(path, 0700) == -1 && errno != EEXIST)
        return s_err(errbuf, errlen, "unable to create the bus directory '%s': %s", path,
                     strerror(errno));
    struct stat st;
    if (lstat(path, &st) == -1)
        return s_err(errbuf, errlen, "bus directory '%s': %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return s_err(errbuf, errlen, "bus directory '%s' is not a directory", path);
    if (st.st_uid != geteuid())
        return s_err(errbuf, errlen,
                     "bus directory '%s' is owned by uid %ld, not by uid %ld that kaizen runs "
                     "as: refusing it (remove it, or run kaizen as its owner)",
                     path, (long)st.st_uid, (long)geteuid());
    if (st.st_mode & 077)
        return s_err(errbuf, errlen,
                     "bus directory '%s' has mode %04o: group and other must have no access, "
                     "or any local user could talk on the bus (chmod 700 '%s')",
                     path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

/* -------------------------------------------------------------- sockets */

static void s_czmq_init(void)
{
    if (!s_czmq_ready) {
        /* CZMQ must not take SIGINT/SIGTERM away from the agent runtime */
        zsys_handler_set(NULL);
        s_czmq_ready = true;
    }
}

/* A socket of TYPE connected to ENDPOINT with the bus options applied */
static zsock_t *s_socket_rid(kz_bus_t *self, int type, const char *endpoint, const void *rid,
                             size_t ridlen, char *errbuf, size_t errlen);

static zsock_t *s_socket(kz_bus_t *self, int type, const char *endpoint, char *errbuf,
                         size_t errlen)
{
    return s_socket_rid(self, type, endpoint, NULL, 0, errbuf, errlen);
}

/* A socket as s_socket, with routing id RID (RIDLEN bytes) when not NULL */
static zsock_t *s_socket_rid(kz_bus_t *self, int type, const char *endpoint, const void *rid,
                             size_t ridlen, char *errbuf, size_t errlen)
{
    s_czmq_init();
    zsock_t *sock = zsock_new(type);
    if (!sock) {
        s_err(errbuf, errlen, "unable to create socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    zsock_set_linger(sock, 0);
    zsock_set_sndhwm(sock, self->cfg.hwm);
    zsock_set_rcvhwm(sock, self->cfg.hwm);
    zsock_set_reconnect_ivl(sock, self->cfg.reconnect_ms > 0 ? self->cfg.reconnect_ms : 250);
    int64_t maxmsg = (int64_t)self->cfg.max_message_size;
    if (maxmsg > 0)
        zmq_setsockopt(zsock_resolve(sock), ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (type == ZMQ_XPUB)
        zsock_set_xpub_nodrop(sock, 1);
    if (type == ZMQ_DEALER)
        zsock_set_sndtimeo(sock, self->cfg.heartbeat_ms);
    if (rid)
        zmq_setsockopt(zsock_resolve(sock), ZMQ_ROUTING_ID, rid, ridlen);
    if (kz_bus_curve_client(sock, &self->cfg, errbuf, errlen) != 0) {
        zsock_destroy(&sock);
        return NULL;
    }
    if (zsock_connect(sock, "%s", endpoint) != 0) {
        s_err(errbuf, errlen, "unable to connect to '%s': %s", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&sock);
        return NULL;
    }
    return sock;
}

/* Close SOCK, letting queued frames go out for up to LINGER_MS */
static void s_close(zsock_t **sock_p, int linger_ms)
{
    if (*sock_p) {
        zsock_set_linger(*sock_p, linger_ms);
        zsock_destroy(sock_p);
    }
}

static bool s_endpoint_ok(const char *ep)
{
    return ep && (strncmp(ep, "tcp://", 6) == 0 || strncmp(ep, "ipc://", 6) == 0 ||
                  strncmp(ep, "inproc://", 9) == 0);
}

/* ---------------------------------------------------------------- frames */

/* Read one whole message without blocking. 1 read, 0 nothing there */
static int s_recv_frames(void *handle, s_frames_t *fr)
{
    fr->n = 0;
    fr->total = 0;
    fr->overflow = false;
    int flags = ZMQ_DONTWAIT;
    for (;;) {
        zmq_msg_t spill;
        zmq_msg_t *m = fr->n < S_MAX_FRAMES ? &fr->f[fr->n] : &spill;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, handle, flags) < 0) {
            zmq_msg_close(m);
            if (fr->n == 0 && !fr->overflow)
                return 0;
            if (zmq_errno() == EINTR)
                continue; /* the rest of a multipart message is there: finish it */
            break;
        }
        bool more = zmq_msg_more(m);
        fr->total++;
        if (m == &spill) {
            zmq_msg_close(&spill);
            fr->overflow = true;
        } else
            fr->n++;
        if (!more)
            break;
        flags = 0;
    }
    return 1;
}

static void s_frames_close(s_frames_t *fr)
{
    for (int i = 0; i < fr->n; i++)
        zmq_msg_close(&fr->f[i]);
    fr->n = 0;
}

static const uint8_t *s_fdata(s_frames_t *fr, int i)
{
    return zmq_msg_data(&fr->f[i]);
}

static size_t s_fsize(s_frames_t *fr, int i)
{
    return zmq_msg_size(&fr->f[i]);
}

static bool s_feq(s_frames_t *fr, int i, const char *s)
{
    size_t n = strlen(s);
    return s_fsize(fr, i) == n && memcmp(s_fdata(fr, i), s, n) == 0;
}

/* Copy frame I into BUF (NUL-terminated) when it is 1..KZ_TOPIC_MAX bytes */
static bool s_fname(s_frames_t *fr, int i, char *buf)
{
    size_t n = s_fsize(fr, i);
    if (n == 0 || n > KZ_TOPIC_MAX)
        return false;
    memcpy(buf, s_fdata(fr, i), n);
    buf[n] = '\0';
    return true;
}

/* Send N frames (copied). 0 / -1 */
static int s_sendv(void *handle, const void *const *data, const size_t *len, int n)
{
    for (int i = 0; i < n; i++) {
        int flags = i + 1 < n ? ZMQ_SNDMORE : 0;
        while (zmq_send(handle, data[i], len[i], flags) < 0) {
            if (zmq_errno() != EINTR || i == 0)
                return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- deliveries */

static kz_delivery_t *s_delivery_new(void)
{
    kz_delivery_t *d = NULL;
    pthread_mutex_lock(&s_cache_lock);
    if (s_cache_count > 0)
        d = s_cache[--s_cache_count];
    pthread_mutex_unlock(&s_cache_lock);
    if (!d)
        d = malloc(sizeof *d);
    if (d) {
        d->kind = KZ_DELIVERY_EVENT;
        d->topic[0] = '\0';
        d->group[0] = '\0';
        d->msg = NULL;
        d->delivery_id = 0;
        d->socket_index = -1;
        d->generation = 0;
        d->reply_to = NULL;
        d->reply_to_len = 0;
        d->settled = 0;
    }
    return d;
}

void kz_bus_delivery_destroy(kz_delivery_t **delivery_p)
{
    if (!delivery_p || !*delivery_p)
        return;
    kz_delivery_t *d = *delivery_p;
    *delivery_p = NULL;
    kz_msg_destroy(&d->msg);
    free(d->reply_to);
    d->reply_to = NULL;
    pthread_mutex_lock(&s_cache_lock);
    if (s_live_buses > 0 && s_cache_count < S_CACHE_MAX) {
        s_cache[s_cache_count++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&s_cache_lock);
    free(d);
}

static int s_pending_push(kz_bus_t *self, kz_delivery_t *d)
{
    if (self->pending_count == self->pending_cap) {
        size_t cap = self->pending_cap ? self->pending_cap * 2 : 64;
        kz_delivery_t **ring = malloc(cap * sizeof *ring);
        if (!ring)
            return -1;
        for (size_t i = 0; i < self->pending_count; i++)
            ring[i] = self->pending[(self->pending_head + i) % self->pending_cap];
        free(self->pending);
        self->pending = ring;
        self->pending_cap = cap;
        self->pending_head = 0;
    }
    self->pending[(self->pending_head + self->pending_count) % self->pending_cap] = d;
    self->pending_count++;
    return 0;
}

static kz_delivery_t *s_pending_pop(kz_bus_t *self)
{
    if (self->pending_count == 0)
        return NULL;
    kz_delivery_t *d = self->pending[self->pending_head];
    self->pending_head = (self->pending_head + 1) % self->pending_cap;
    self->pending_count--;
    return d;
}

/* Count and (rate-limited) log a message that failed to decode */
static void s_drop(kz_bus_t *self, const char *where, const kz_msg_err_t *err)
{
    self->dropped++;
    int64_t now = s_now();
    if (now - self->droplog_at >= 1000) {
        if (self->droplog_suppressed)
            kz_warn("dropped malformed message on %s: %s (%" PRIu64 " more since last report)",
                    where, err->text, self->droplog_suppressed);
        else
            kz_warn("dropped malformed message on %s: %s", where, err->text);
        self->droplog_at = now;
        self->droplog_suppressed = 0;
    } else
        self->droplog_suppressed++;
}

/* ------------------------------------------------------------ publisher */

/* Read the broker's (un)subscriptions waiting on the publisher */
static void s_outbox_resend(kz_bus_t *self, const char *why);

static void s_pub_input(kz_bus_t *self)
{
    bool resend = false;
    s_frames_t fr;
    while (self->pub && s_recv_frames(self->pub_h, &fr) == 1) {
        if (fr.n >= 1 && s_fsize(&fr, 0) >= 1) {
            uint8_t op = s_fdata(&fr, 0)[0];
            if (op == 1) {
                if (!self->pub_ready && self->pub_was_ready)
                    resend = true; /* a broker (the same or a new one) is back */
                self->pub_ready = self->pub_was_ready = true;
            } else if (op == 0 && s_fsize(&fr, 0) == 1)
                self->pub_ready = false;
        }
        s_frames_close(&fr);
    }
    if (resend)
        s_outbox_resend(self, "the broker reconnected");
}

/* ---------------------------------------------------------- the outbox */

static s_outbox_item_t *s_outbox_at(kz_bus_t *self, size_t i)
{
    return &self->outbox[(self->ob_head + i) & (self->ob_cap - 1)];
}

static void s_outbox_pop(kz_bus_t *self)
{
    s_outbox_item_t *it = s_outbox_at(self, 0);
    zmq_msg_close(&it->topic);
    zmq_msg_close(&it->body);
    self->ob_head = (self->ob_head + 1) & (self->ob_cap - 1);
    self->ob_len--;
}

/* Keep a copy of an event just sent until a flush confirms it; beyond
   S_OUTBOX_MAX the oldest is forgotten (counted, warned at most every 10 s) */
static void s_outbox_add(kz_bus_t *self, const char *topic, size_t tlen, zmq_msg_t *body)
{
    if (self->ob_len == self->ob_cap) {
        if (self->ob_cap >= S_OUTBOX_MAX) {
            s_outbox_pop(self);
            self->outbox_dropped++;
            if (s_now() - self->outbox_warned >= 10000) {
                self->outbox_warned = s_now();
                kz_warn("%" PRIu64 " published events were never confirmed by a flush and are no "
                        "longer kept for sending again (kz_bus_flush; outbox of %d)",
                        self->outbox_dropped, S_OUTBOX_MAX);
            }
        } else {
            size_t cap = self->ob_cap ? 2 * self->ob_cap : 256;
            s_outbox_item_t *ob = malloc(cap * sizeof(*ob));
            if (!ob)
                return;
            for (size_t i = 0; i < self->ob_len; i++)
                ob[i] = *s_outbox_at(self, i);
            free(self->outbox);
            self->outbox = ob;
            self->ob_cap = cap;
            self->ob_head = 0;
        }
    }
    s_outbox_item_t *it = &self->outbox[(self->ob_head + self->ob_len) & (self->ob_cap - 1)];
    zmq_msg_init(&it->body);
    if (zmq_msg_init_size(&it->topic, tlen) != 0 || zmq_msg_copy(&it->body, body) != 0) {
        zmq_msg_close(&it->topic);
        zmq_msg_close(&it->body);
        return;
    }
    memcpy(zmq_msg_data(&it->topic), topic, tlen);
    it->seq = ++self->pub_seq;
    self->ob_len++;
    self->since_marker++;
}

/* Every event up to COVERS is durable: forget it */
static void s_outbox_confirm(kz_bus_t *self, uint64_t covers)
{
    if (covers > self->confirmed_seq)
        self->confirmed_seq = covers;
    while (self->ob_len > 0 && s_outbox_at(self, 0)->seq <= covers)
        s_outbox_pop(self);
}

/* Send the outbox again (a broker restart may have lost it); earlier
   markers no longer prove anything */
static void s_outbox_resend(kz_bus_t *self, const char *why)
{
    if (self->resending || !self->pub)
        return;
    self->resending = true;
    self->nmarkers = 0;
    size_t sent = 0;
    for (size_t i = 0; i < self->ob_len; i++) {
        s_outbox_item_t *it = s_outbox_at(self, i);
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, &it->body);
        if (zmq_send(self->pub_h, zmq_msg_data(&it->topic), zmq_msg_size(&it->topic),
                     ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&copy);
            break; /* full: the next flush resends after its timeout */
        }
        if (zmq_msg_send(&copy, self->pub_h, 0) < 0)
            zmq_msg_close(&copy);
        sent++;
    }
    self->outbox_resent += sent;
    if (sent)
        kz_info("%s: sent %zu unconfirmed events again", why, sent);
    self->resending = false;
}

/* Send a sync marker after everything published so far (PROTOCOL.md 1.2a) */
static void s_marker_send(kz_bus_t *self)
{
    if (!self->pub || !self->sync)
        return;
    uint8_t body[2 + sizeof self->sync_id + 8];
    uint64_t token = ++self->next_token;
    body[0] = 1;
    body[1] = (uint8_t)sizeof self->sync_id;
    memcpy(body + 2, self->sync_id, sizeof self->sync_id);
    for (int i = 0; i < 8; i++)
        body[2 + sizeof self->sync_id + i] = (uint8_t)(token >> (56 - 8 * i));
    if (zmq_send(self->pub_h, KZ_SYNC_TOPIC, strlen(KZ_SYNC_TOPIC), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(self->pub_h, body, sizeof body, 0);
    if (self->nmarkers == S_MARKERS) {
        memmove(self->markers, self->markers + 1, (S_MARKERS - 1) * sizeof(self->markers[0]));
        self->nmarkers--;
    }
    self->markers[self->nmarkers].token = token;
    self->markers[self->nmarkers].covers = self->pub_seq;
    self->nmarkers++;
    self->since_marker = 0;
}

/* Read the broker's SYNCED confirmations: ["", KZG01, SYNCED, token,
   status, instance] */
static void s_sync_input(kz_bus_t *self)
{
    s_frames_t fr;
    while (self->sync && s_recv_frames(self->sync_h, &fr) == 1) {
        if (fr.n == 6 && s_fsize(&fr, 0) == 0 && s_feq(&fr, 1, KZ_GRP) && s_fsize(&fr, 2) == 1 &&
            s_fdata(&fr, 2)[0] == KZ_GRP_SYNCED && s_fsize(&fr, 3) == 8 && s_fsize(&fr, 4) == 1 &&
            s_fsize(&fr, 5) == 8) {
            uint64_t token = 0;
            for (int i = 0; i < 8; i++)
                token = token << 8 | s_fdata(&fr, 3)[i];
            uint8_t status = s_fdata(&fr, 4)[0];
            if (self->have_instance && memcmp(self->instance, s_fdata(&fr, 5), 8) != 0) {
                /* a new broker: what the old one confirmed may be lost
                   with it (not yet synced), and markers sent to it too */
                memcpy(self->instance, s_fdata(&fr, 5), 8);
                s_frames_close(&fr);
                s_outbox_resend(self, "a new broker instance");
                continue;
            }
            memcpy(self->instance, s_fdata(&fr, 5), 8);
            self->have_instance = true;
            for (size_t i = 0; i < self->nmarkers; i++) {
                if (self->markers[i].token != token)
                    continue;
                if (status == KZ_SYNC_OK)
                    s_outbox_confirm(self, self->markers[i].covers);
                else
                    self->sync_failed = true;
                memmove(self->markers, self->markers + i + 1,
                        (self->nmarkers - i - 1) * sizeof(self->markers[0]));
                self->nmarkers -= i + 1;
                break;
            }
        }
        s_frames_close(&fr);
    }
}

static int s_sync_ensure(kz_bus_t *self)
{
    if (self->sync)
        return 0;
    zuuid_t *uuid = zuuid_new();
    if (!uuid)
        return kz_fail("out of memory");
    memcpy(self->sync_id, zuuid_data(uuid), sizeof self->sync_id);
    zuuid_destroy(&uuid);
    self->sync_id[0] = 'S'; /* never a zero first byte (reserved by zmq) */
    char err[256];
    self->sync = s_socket_rid(self, ZMQ_DEALER, self->cfg.connect.router, self->sync_id,
                              sizeof self->sync_id, err, sizeof err);
    if (!self->sync)
        return kz_fail("%s", err);
    self->sync_h = zsock_resolve(self->sync);
    return 0;
}

int kz_bus_flush(kz_bus_t *self, int timeout_ms)
{
    if (!self->pub || self->ob_len == 0)
        return 0;
    if (s_sync_ensure(self) != 0)
        return -1;
    uint64_t target = self->pub_seq;
    int64_t deadline = s_now() + (timeout_ms < 0 ? 0 : timeout_ms);
    self->sync_failed = false;
    s_pub_input(self);
    s_marker_send(self);
    int64_t marker_at = s_now();
    for (;;) {
        s_sync_input(self);
        if (self->sync_failed) {
            self->sync_failed = false;
            return -2;
        }
        if (self->confirmed_seq >= target)
            return 0;
        int64_t now = s_now();
        if (now >= deadline)
            return -1;
        kz_bus_keepalive(self);
        zmq_pollitem_t items[2] = {{self->pub_h, 0, ZMQ_POLLIN, 0},
                                   {self->sync_h, 0, ZMQ_POLLIN, 0}};
        int64_t wait = deadline - now < 50 ? deadline - now : 50;
        if (zmq_poll(items, 2, (long)wait) < 0 && zmq_errno() == EINTR)
            return -1;
        s_pub_input(self);
        if (s_now() - marker_at >= S_MARKER_RETRY_MS || self->nmarkers == 0) {
            s_marker_send(self);
            marker_at = s_now();
        }
    }
}

const char *kz_bus_flush_error(const kz_bus_t *self, int rc, int timeout_ms, char *buf, size_t len)
{
    if (rc == -2)
        snprintf(buf, len,
                 "the broker could not log every event for its durable groups (its durable log "
                 "is full or failing: see the broker's log); %zu events kept",
                 self->ob_len);
    else
        snprintf(buf, len,
                 "no confirmation of our events from the broker at '%s' within %d ms; %zu events "
                 "kept, sent again when it is back",
                 self->cfg.connect.pub, timeout_ms, self->ob_len);
    return buf;
}

int kz_bus_flush_step(kz_bus_t *self, int timeout_ms)
{
    if (self->ob_len == 0)
        return 0;
    int timeout = self->flush_failing ? S_FLUSH_SHORT_MS : timeout_ms;
    int rc = kz_bus_flush(self, timeout);
    if (rc == 0) {
        if (self->flush_failing)
            kz_info("the broker confirms our events again");
        self->flush_failing = false;
        return 0;
    }
    self->flush_failing = true;
    if (s_now() - self->flush_warned >= 10000) {
        char why[512];
        self->flush_warned = s_now();
        kz_warn("%s; going on", kz_bus_flush_error(self, rc, timeout, why, sizeof why));
    }
    return rc;
}

size_t kz_bus_unconfirmed(const kz_bus_t *self)
{
    return self->ob_len;
}

static int s_pub_ensure(kz_bus_t *self)
{
    if (self->pub)
        return 0;
    char err[256];
    self->pub = s_socket(self, ZMQ_XPUB, self->cfg.connect.pub, err, sizeof err);
    if (!self->pub)
        return kz_fail("%s", err);
    self->pub_h = zsock_resolve(self->pub);
    /* the sync DEALER connects now, so the first flush finds it known */
    if (s_sync_ensure(self) != 0)
        kz_warn("no sync socket: kz_bus_flush will retry");
    return 0;
}

int kz_bus_wait_publisher(kz_bus_t *self, int timeout_ms)
{
    if (s_pub_ensure(self) != 0)
        return -1;
    int64_t deadline = s_now() + timeout_ms;
    for (;;) {
        s_pub_input(self);
        if (self->pub_ready)
            return 0;
        int64_t left = deadline - s_now();
        if (left <= 0)
            return -1;
        zmq_pollitem_t item = {self->pub_h, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) < 0 && zmq_errno() == EINTR)
            return -1;
    }
}

/* Send [topic][body] on the publisher; BODY is consumed. Waits up to one
   heartbeat while the socket is at its high-water mark (NODROP) */
static int s_pub_send(kz_bus_t *self, const char *topic, zmq_msg_t *body)
{
    size_t tlen = strlen(topic);
    if (tlen == 0 || tlen > KZ_TOPIC_MAX) {
        zmq_msg_close(body);
        return kz_fail("invalid topic '%s'", topic);
    }
    if (s_pub_ensure(self) != 0) {
        zmq_msg_close(body);
        return -1;
    }
    if (!self->pub_waited) {
        self->pub_waited = true;
        int wait = self->cfg.heartbeat_ms *
                   (self->cfg.heartbeat_liveness > 0 ? self->cfg.heartbeat_liveness : 3);
        if (kz_bus_wait_publisher(self, wait) != 0)
            kz_warn("no subscription from the broker at '%s' yet: events may be lost",
                    self->cfg.connect.pub);
    } else
        s_pub_input(self);

    int64_t deadline = s_now() + self->cfg.heartbeat_ms;
    while (zmq_send(self->pub_h, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        if ((e != EAGAIN && e != EINTR) || s_now() >= deadline) {
            zmq_msg_close(body);
            return kz_fail("unable to publish '%s': %s", topic,
                           e == EAGAIN ? "publisher queue full" : zmq_strerror(e));
        }
        /* XPUB always reports POLLOUT, so wait on its input for 1 ms */
        zmq_pollitem_t item = {self->pub_h, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 1);
        s_pub_input(self);
    }
    s_outbox_add(self, topic, tlen, body);
    while (zmq_msg_send(body, self->pub_h, 0) < 0) {
        if (zmq_errno() != EINTR && zmq_errno() != EAGAIN) {
            zmq_msg_close(body);
            return kz_fail("unable to publish '%s': %s", topic, zmq_strerror(zmq_errno()));
        }
    }
    if (self->since_marker >= S_MARKER_EVERY) {
        /* confirms come back on their own: the outbox stays short even
           for a publisher that never flushes */
        s_sync_input(self);
        s_marker_send(self);
    }
    return 0;
}

static void s_free_buf(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int kz_bus_publish(kz_bus_t *self, kz_msg_t **msg_p)
{
    kz_msg_t *msg = *msg_p;
    *msg_p = NULL;
    if (!msg)
        return -1;
    const char *src = kz_msg_src(msg);
    if ((!src || !*src) && kz_msg_set_src(msg, self->agent_id) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0) {
        int rc = kz_fail("unable to encode '%s': %s", kz_msg_type(msg), err.text);
        kz_msg_destroy(&msg);
        return rc;
    }
    char topic[KZ_TOPIC_MAX + 1];
    snprintf(topic, sizeof topic, "%s", kz_msg_type(msg));
    kz_msg_destroy(&msg);
    zmq_msg_t body;
    if (zmq_msg_init_data(&body, buf, len, s_free_buf, NULL) != 0) {
        free(buf);
        return kz_fail("out of memory");
    }
    return s_pub_send(self, topic, &body);
}

int kz_bus_publish_raw(kz_bus_t *self, const char *topic, const void *data, size_t len)
{
    zmq_msg_t body;
    if (zmq_msg_init_size(&body, len) != 0)
        return kz_fail("out of memory");
    if (len)
        memcpy(zmq_msg_data(&body), data, len);
    return s_pub_send(self, topic, &body);
}

/* ----------------------------------------------------------- subscriber */

static int s_subscribe(kz_bus_t *self, const char *prefix)
{
    if (!self->sub) {
        char err[256];
        self->sub = s_socket(self, ZMQ_SUB, self->cfg.connect.sub, err, sizeof err);
        if (!self->sub)
            return kz_fail("%s", err);
        self->sub_h = zsock_resolve(self->sub);
    }
    if (zmq_setsockopt(self->sub_h, ZMQ_SUBSCRIBE, prefix, strlen(prefix)) != 0)
        return kz_fail("unable to subscribe to '%s': %s", prefix, zmq_strerror(zmq_errno()));
    return 0;
}

int kz_bus_subscribe(kz_bus_t *self, const char *prefix)
{
    if (strncmp(S_CANCEL_TOPIC, prefix, strlen(prefix)) == 0)
        self->app_cancel_sub = true;
    return s_subscribe(self, prefix);
}

int kz_bus_unsubscribe(kz_bus_t *self, const char *prefix)
{
    if (!self->sub)
        return kz_fail("not subscribed to '%s'", prefix);
    if (zmq_setsockopt(self->sub_h, ZMQ_UNSUBSCRIBE, prefix, strlen(prefix)) != 0)
        return kz_fail("unable to unsubscribe from '%s': %s", prefix, zmq_strerror(zmq_errno()));
    return 0;
}

static void s_sub_input(kz_bus_t *self, s_frames_t *fr)
{
    kz_msg_err_t err;
    char topic[KZ_TOPIC_MAX + 1];
    if (fr->overflow || fr->n != 2 || !s_fname(fr, 0, topic)) {
        err.code = KZ_EMSG_TYPE;
        snprintf(err.text, sizeof err.text, "expected [topic][envelope] frames");
        s_drop(self, "subscription", &err);
        return;
    }
    kz_msg_t *msg = kz_msg_decode(s_fdata(fr, 1), s_fsize(fr, 1), &self->limits, &err);
    if (!msg) {
        s_drop(self, topic, &err);
        return;
    }
    if (self->cancel_sub && streq(kz_msg_type(msg), S_CANCEL_TOPIC)) {
        /* remembered for kz_bus_request_cancelled: the request may be ours,
           now or (dispatched a moment later) soon */
        const kz_val_t *b = kz_msg_body_const(msg);
        const char *id = kz_map_str(b, "id"), *reason = kz_map_str(b, "reason");
        if (id) {
            size_t k = self->cancels_next++ % S_CANCELS;
            snprintf(self->cancels[k].id, sizeof self->cancels[k].id, "%s", id);
            snprintf(self->cancels[k].src, sizeof self->cancels[k].src, "%s", kz_msg_src(msg));
            snprintf(self->cancels[k].reason, sizeof self->cancels[k].reason, "%s",
                     reason ? reason : "");
        }
        if (!self->app_cancel_sub) {
            kz_msg_destroy(&msg);
            return;
        }
    }
    kz_delivery_t *d = s_delivery_new();
    if (!d || s_pending_push(self, d) != 0) {
        kz_msg_destroy(&msg);
        kz_bus_delivery_destroy(&d);
        kz_error("out of memory: event '%s' lost", topic);
        return;
    }
    d->kind = KZ_DELIVERY_EVENT;
    memcpy(d->topic, topic, sizeof topic);
    d->msg = msg;
}

/* --------------------------------------------------------- queue groups */

static int s_member_send(kz_bus_t *self, s_member_t *m, uint8_t cmd, const void *a, size_t alen,
                         const void *b, size_t blen)
{
    (void)self;
    const void *data[5] = {"", KZ_GRP, &cmd, a, b};
    size_t len[5] = {0, strlen(KZ_GRP), 1, alen, blen};
    int n = b ? 5 : a ? 4 : 3;
    if (s_sendv(m->handle, data, len, n) != 0)
        return kz_fail("unable to send to broker for group '%s': %s", m->group,
                       zmq_strerror(zmq_errno()));
    m->last_send = s_now();
    return 0;
}

static int s_member_flush(kz_bus_t *self, s_member_t *m)
{
    if (m->acks_n == 0)
        return 0;
    int rc = s_member_send(self, m, KZ_GRP_ACK, m->acks, m->acks_n * 8, NULL, 0);
    m->acks_n = 0;
    return rc;
}

/* Queue ID for the next ACK command; flushes a full batch */
static int s_member_ack(kz_bus_t *self, s_member_t *m, uint64_t id)
{
    if (m->acks_n == 0)
        m->ack_since = s_now();
    uint8_t *p = m->acks + m->acks_n * 8;
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(id & 0xff);
        id >>= 8;
    }
    m->acks_n++;
    if (m->acks_n == S_ACK_BATCH || s_now() - m->ack_since >= S_ACK_FLUSH_MS)
        return s_member_flush(self, m);
    self->acks_queued = true;
    return 0;
}

/* (Re)connect M on a fresh socket and JOIN. Deliveries handed out
   before belong to an older generation: their acks are meaningless to
   the broker now (it requeued them, or it restarted and reuses ids). */
static int s_member_connect(kz_bus_t *self, s_member_t *m)
{
    char err[256];
    s_close(&m->sock, 0);
    m->handle = NULL;
    m->acks_n = 0;
    m->generation++;
    m->last_recv = m->last_send = s_now();
    m->sock = s_socket(self, ZMQ_DEALER, self->cfg.connect.router, err, sizeof err);
    if (!m->sock)
        return kz_fail("%s", err);
    m->handle = zsock_resolve(m->sock);
    return s_member_send(self, m, KZ_GRP_JOIN, m->group, strlen(m->group), m->prefix,
                         strlen(m->prefix));
}

int kz_bus_join(kz_bus_t *self, const char *group, const char *prefix)
{
    size_t glen = strlen(group), plen = strlen(prefix);
    if (glen == 0 || glen > KZ_TOPIC_MAX)
        return kz_fail("invalid group name '%s'", group);
    if (plen > KZ_TOPIC_MAX)
        return kz_fail("group prefix too long for '%s'", group);
    s_member_t *slot = NULL;
    for (int i = 0; i < S_MAX_MEMBERS; i++) {
        if (self->members[i].used && streq(self->members[i].group, group))
            return kz_fail("already a member of group '%s'", group);
        if (!self->members[i].used && !slot)
            slot = &self->members[i];
    }
    if (!slot)
        return kz_fail("too many group memberships (at most %d)", S_MAX_MEMBERS);
    memset(slot, 0, sizeof *slot);
    memcpy(slot->group, group, glen + 1);
    memcpy(slot->prefix, prefix, plen + 1);
    slot->used = true;
    if (s_member_connect(self, slot) != 0) {
        s_close(&slot->sock, 0);
        slot->used = false;
        return -1;
    }
    return 0;
}

static void s_member_close(kz_bus_t *self, s_member_t *m)
{
    s_member_flush(self, m);
    s_member_send(self, m, KZ_GRP_LEAVE, NULL, 0, NULL, 0);
    /* give the acks and LEAVE a heartbeat to reach the broker */
    s_close(&m->sock, self->cfg.heartbeat_ms);
    m->handle = NULL;
    m->used = false;
}

int kz_bus_leave(kz_bus_t *self, const char *group)
{
    for (int i = 0; i < S_MAX_MEMBERS; i++) {
        if (self->members[i].used && streq(self->members[i].group, group)) {
            s_member_close(self, &self->members[i]);
            return 0;
        }
    }
    return kz_fail("not a member of group '%s'", group);
}

static void s_member_input(kz_bus_t *self, int idx, s_frames_t *fr)
{
    s_member_t *m = &self->members[idx];
    m->last_recv = s_now();
    if (fr->overflow || fr->n < 3 || s_fsize(fr, 0) != 0 || !s_feq(fr, 1, KZ_GRP) ||
        s_fsize(fr, 2) != 1) {
        kz_debug("ignoring invalid frames from broker for group '%s'", m->group);
        return;
    }
    uint8_t cmd = s_fdata(fr, 2)[0];
    if (cmd == KZ_GRP_DELIVER) {
        char topic[KZ_TOPIC_MAX + 1];
        if (fr->n != 6 || s_fsize(fr, 3) != 8 || !s_fname(fr, 4, topic)) {
            kz_debug("ignoring invalid delivery for group '%s'", m->group);
            return;
        }
        const uint8_t *p = s_fdata(fr, 3);
        uint64_t id = 0;
        for (int i = 0; i < 8; i++)
            id = id << 8 | p[i];
        kz_msg_err_t err;
        kz_msg_t *msg = kz_msg_decode(s_fdata(fr, 5), s_fsize(fr, 5), &self->limits, &err);
        if (!msg) {
            s_drop(self, topic, &err);
            s_member_ack(self, m, id); /* a poison message must not loop */
            return;
        }
        kz_delivery_t *d = s_delivery_new();
        if (!d || s_pending_push(self, d) != 0) {
            kz_msg_destroy(&msg);
            kz_bus_delivery_destroy(&d);
            kz_error("out of memory: delivery of '%s' left to redelivery", topic);
            return;
        }
        d->kind = KZ_DELIVERY_GROUP;
        memcpy(d->topic, topic, strlen(topic) + 1);
        memcpy(d->group, m->group, strlen(m->group) + 1);
        d->msg = msg;
        d->delivery_id = id;
        d->socket_index = idx;
        d->generation = m->generation;
    } else if (cmd == KZ_GRP_DISCONNECT) {
        kz_info("broker forgot group member '%s', joining again", m->group);
        self->reconnects++;
        s_member_connect(self, m);
    } else if (cmd != KZ_GRP_HEARTBEAT)
        kz_debug("ignoring group command %u for '%s'", cmd, m->group);
}

/* The member a group DELIVERY came from, or NULL (logged) */
static s_member_t *s_delivery_member(kz_bus_t *self, const kz_delivery_t *delivery,
                                     const char *what)
{
    if (delivery->kind != KZ_DELIVERY_GROUP || delivery->socket_index < 0 ||
        delivery->socket_index >= S_MAX_MEMBERS) {
        kz_fail("%s of a delivery that is not from a queue group", what);
        return NULL;
    }
    s_member_t *m = &self->members[delivery->socket_index];
    if (!m->used || !streq(m->group, delivery->group)) {
        kz_fail("%s for group '%s' which we left", what, delivery->group);
        return NULL;
    }
    return m;
}

/* Record that DELIVERY is settled with CMD (ACK or NACK). 1 when it
   already was with the same command (nothing to send), 0 when it was
   not, -1 when it was settled the other way: an ack and a nack for one
   delivery would leave the broker with two contradicting answers. The
   delivery is the caller's, but its private fields are ours: it was
   allocated by s_delivery_new, never defined const, so the cast is
   well-defined. */
static int s_settle(const kz_delivery_t *delivery, uint8_t cmd)
{
    kz_delivery_t *d = (kz_delivery_t *)(uintptr_t)delivery;
    if (d->settled == cmd)
        return 1;
    if (d->settled)
        return kz_fail("delivery of '%s' from group '%s' was already %s", d->topic, d->group,
                       d->settled == KZ_GRP_ACK ? "acknowledged" : "nacked");
    d->settled = cmd;
    return 0;
}

bool kz_bus_replied(const kz_delivery_t *request)
{
    return request && request->kind == KZ_DELIVERY_REQUEST && request->settled != 0;
}

/* Read what waits on the SUB socket without blocking (events queue for
   kz_bus_recv as usual; request.cancel events are noted) */
static void s_sub_drain(kz_bus_t *self)
{
    for (int b = 0; self->sub_h && b < S_READ_BATCH && self->pending_count < S_PENDING_MAX; b++) {
        s_frames_t fr;
        if (s_recv_frames(self->sub_h, &fr) != 1)
            break;
        s_sub_input(self, &fr);
        s_frames_close(&fr);
    }
}

bool kz_bus_request_cancelled(kz_bus_t *self, const kz_delivery_t *request, char *why, size_t len)
{
    if (why && len)
        why[0] = '\0';
    if (!request || request->kind != KZ_DELIVERY_REQUEST || !request->msg)
        return false;
    s_sub_drain(self);
    const char *id = kz_msg_id(request->msg), *src = kz_msg_src(request->msg);
    /* a re-ask (PROTOCOL.md 1.3) is cancelled by its first id too */
    const char *first = s_retry_of(request);
    for (size_t i = 0; i < S_CANCELS; i++) {
        if (!(streq(self->cancels[i].id, id) || (first && streq(self->cancels[i].id, first))) ||
            !streq(self->cancels[i].src, src))
            continue;
        if (why)
            snprintf(why, len, "cancelled by its client%s%s",
                     self->cancels[i].reason[0] ? ": " : "", self->cancels[i].reason);
        return true;
    }
    int64_t deadline = kz_msg_deadline(request->msg);
    if (deadline > 0 && kz_now_us() > deadline + S_DEADLINE_GRACE_US) {
        if (why)
            snprintf(why, len, "its deadline passed %" PRId64 " s ago: the client no longer waits",
                     (kz_now_us() - deadline) / 1000000);
        return true;
    }
    return false;
}

int kz_bus_ack(kz_bus_t *self, const kz_delivery_t *delivery)
{
    s_member_t *m = s_delivery_member(self, delivery, "ack");
    if (!m)
        return -1;
    int rc = s_settle(delivery, KZ_GRP_ACK);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (m->generation != delivery->generation)
        return 0; /* the broker already handed it to another member */
    return s_member_ack(self, m, delivery->delivery_id);
}

int kz_bus_nack(kz_bus_t *self, const kz_delivery_t *delivery)
{
    s_member_t *m = s_delivery_member(self, delivery, "nack");
    if (!m)
        return -1;
    int rc = s_settle(delivery, KZ_GRP_NACK);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (m->generation != delivery->generation)
        return 0; /* the broker requeued it already when it forgot us */
    /* sent at once, not batched: a nack is rare, and the sooner the
       broker has it, the sooner another member gets the event */
    uint8_t id[8];
    uint64_t v = delivery->delivery_id;
    for (int i = 7; i >= 0; i--) {
        id[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
    if (s_member_send(self, m, KZ_GRP_NACK, id, sizeof id, NULL, 0) != 0) {
        /* not sent: the caller may try again, or ack it after all */
        ((kz_delivery_t *)(uintptr_t)delivery)->settled = 0;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- services */

static int s_worker_send(s_worker_t *w, uint8_t cmd, const void *client, size_t clen,
                         const void *body, size_t blen)
{
    const void *data[6] = {"", KZ_MDPW, &cmd, client, "", body};
    size_t len[6] = {0, strlen(KZ_MDPW), 1, clen, 0, blen};
    int n = 3;
    if (cmd == KZ_MDPW_READY) {
        data[3] = w->service;
        len[3] = strlen(w->service);
        n = 4;
    } else if (cmd == KZ_MDPW_REPLY)
        n = 6;
    if (s_sendv(w->handle, data, len, n) != 0)
        return kz_fail("unable to send to broker for service '%s': %s", w->service,
                       zmq_strerror(zmq_errno()));
    w->last_send = s_now();
    return 0;
}

static int s_worker_connect(kz_bus_t *self, s_worker_t *w)
{
    char err[256];
    s_close(&w->sock, 0);
    w->handle = NULL;
    w->generation++;
    w->last_recv = w->last_send = s_now();
    w->sock = s_socket(self, ZMQ_DEALER, self->cfg.connect.router, err, sizeof err);
    if (!w->sock)
        return kz_fail("%s", err);
    w->handle = zsock_resolve(w->sock);
    return s_worker_send(w, KZ_MDPW_READY, NULL, 0, NULL, 0);
}

int kz_bus_offer(kz_bus_t *self, const char *service)
{
    size_t slen = strlen(service);
    if (slen == 0 || slen > KZ_TOPIC_MAX || strncmp(service, "mmi.", 4) == 0)
        return kz_fail("invalid service name '%s'", service);
    s_worker_t *slot = NULL;
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        if (self->workers[i].used && streq(self->workers[i].service, service))
            return kz_fail("already offering service '%s'", service);
        if (!self->workers[i].used && !slot)
            slot = &self->workers[i];
    }
    if (!slot)
        return kz_fail("too many services (at most %d)", S_MAX_WORKERS);
    /* a client that stops waiting says so (request.cancel): hear it, so
       the work for it can stop (kz_bus_request_cancelled) */
    if (!self->cancel_sub) {
        if (s_subscribe(self, S_CANCEL_TOPIC) != 0)
            return -1;
        self->cancel_sub = true;
    }
    if (!self->reqmem && !(self->reqmem = kz_reqmem_new()))
        return kz_fail("out of memory");
    memset(slot, 0, sizeof *slot);
    memcpy(slot->service, service, slen + 1);
    slot->used = true;
    if (s_worker_connect(self, slot) != 0) {
        s_close(&slot->sock, 0);
        slot->used = false;
        return -1;
    }
    return 0;
}

/* Answer a request we cannot hand to the application with an error
   envelope {code: "malformed", message: TEXT}. The broker counts the
   request as this worker's current one until a reply comes, so silence
   here would take the worker out of service for good. */
static void s_worker_reply_error(kz_bus_t *self, s_worker_t *w, const void *client, size_t clen,
                                 const char *text)
{
    kz_msg_t *reply = kz_msg_new("error");
    if (!reply) {
        kz_error("out of memory: no error reply for service '%s'", w->service);
        return;
    }
    kz_val_t *body = kz_msg_body(reply);
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    if (kz_msg_set_src(reply, self->agent_id) == 0 &&
        kz_map_put_str(reply, body, "code", "malformed") == 0 &&
        kz_map_put_str(reply, body, "message", text) == 0 &&
        kz_msg_encode(reply, &buf, &len, &err) == 0)
        s_worker_send(w, KZ_MDPW_REPLY, client, clen, buf, len);
    else
        kz_error("unable to build the error reply for service '%s'", w->service);
    free(buf);
    kz_msg_destroy(&reply);
}

static void s_worker_input(kz_bus_t *self, int idx, s_frames_t *fr)
{
    s_worker_t *w = &self->workers[idx];
    w->last_recv = s_now();
    if (fr->n < 3 || s_fsize(fr, 0) != 0 || !s_feq(fr, 1, KZ_MDPW) || s_fsize(fr, 2) != 1) {
        kz_debug("ignoring invalid frames from broker for service '%s'", w->service);
        return;
    }
    uint8_t cmd = s_fdata(fr, 2)[0];
    if (cmd == KZ_MDPW_REQUEST) {
        /* [""][MDPW01][REQUEST][client][""][body...] */
        if (fr->n < 5 || s_fsize(fr, 3) == 0 || s_fsize(fr, 4) != 0) {
            kz_debug("ignoring request without a client address for service '%s'", w->service);
            return;
        }
        const void *client = s_fdata(fr, 3);
        size_t clen = s_fsize(fr, 3);
        int nbody = fr->total - 5;
        if (nbody != 1) {
            /* a kaizen body is exactly one envelope frame; whatever a
               stock client sent instead still gets an answer */
            kz_msg_err_t err;
            err.code = KZ_EMSG_TYPE;
            snprintf(err.text, sizeof err.text,
                     "request has %d body frames, expected one envelope frame", nbody);
            s_drop(self, w->service, &err);
            s_worker_reply_error(self, w, client, clen, err.text);
            return;
        }
        kz_msg_err_t err;
        kz_msg_t *msg = kz_msg_decode(s_fdata(fr, 5), s_fsize(fr, 5), &self->limits, &err);
        if (!msg) {
            s_drop(self, w->service, &err);
            s_worker_reply_error(self, w, client, clen, err.text);
            return;
        }
        kz_delivery_t *d = s_delivery_new();
        uint8_t *addr = malloc(s_fsize(fr, 3));
        if (!d || !addr || s_pending_push(self, d) != 0) {
            kz_msg_destroy(&msg);
            free(addr);
            kz_bus_delivery_destroy(&d);
            kz_error("out of memory: request for '%s' lost", w->service);
            return;
        }
        memcpy(addr, s_fdata(fr, 3), s_fsize(fr, 3));
        d->kind = KZ_DELIVERY_REQUEST;
        memcpy(d->topic, w->service, strlen(w->service) + 1);
        d->msg = msg;
        d->socket_index = idx;
        d->generation = w->generation;
        d->reply_to = addr;
        d->reply_to_len = s_fsize(fr, 3);
    } else if (cmd == KZ_MDPW_DISCONNECT) {
        kz_info("broker disconnected worker of '%s', registering again", w->service);
        self->reconnects++;
        s_worker_connect(self, w);
    } else if (cmd != KZ_MDPW_HEARTBEAT)
        kz_debug("ignoring worker command %u for '%s'", cmd, w->service);
}

/* ------------------------------------------------ re-asks, worker side */

/* The id request D re-asks (body "retry_of"), NULL when it is none */
static const char *s_retry_of(const kz_delivery_t *d)
{
    const char *r = d->msg ? kz_map_str(kz_msg_body_const(d->msg), "retry_of") : NULL;
    return r && *r ? r : NULL;
}

/* Answer request D with REPLY, the encoded reply we kept (its corr is
   the id of the request that ran) */
static void s_reply_kept(kz_bus_t *self, const kz_delivery_t *d, const uint8_t *reply, size_t len)
{
    s_worker_t *w = &self->workers[d->socket_index];
    const char *retry_of = s_retry_of(d);
    if (!w->used || !streq(w->service, d->topic) || w->generation != d->generation) {
        kz_warn("kept reply for request %s to '%s' not sent: the broker restarted meanwhile",
                kz_msg_id(d->msg), d->topic);
        return;
    }
    kz_info("request %s to '%s'%s%s was answered already: sending the kept reply",
            kz_msg_id(d->msg), d->topic, retry_of ? " re-asks " : "", retry_of ? retry_of : "");
    s_worker_send(w, KZ_MDPW_REPLY, d->reply_to, d->reply_to_len, reply, len);
}

/* Request D leaves the pending queue for the application. 1 when it is
   taken care of here: answered from the reply memory (a re-ask, or one
   the broker handed us again), or held until the request it re-asks,
   which the application still works on, is answered (no second
   concurrent run). 0: the application runs it. */
static int s_request_take(kz_bus_t *self, kz_delivery_t *d)
{
    if (!self->reqmem || !d->msg)
        return 0;
    const char *id = kz_msg_id(d->msg), *retry_of = s_retry_of(d);
    const uint8_t *reply = NULL;
    size_t len = 0;
    kz_reqmem_state_t st = kz_reqmem_lookup(self->reqmem, id, retry_of, &reply, &len);
    if (st == KZ_REQMEM_DONE) {
        s_reply_kept(self, d, reply, len);
        kz_bus_delivery_destroy(&d);
        return 1;
    }
    if (st == KZ_REQMEM_RUNNING && self->held_n < S_HELD) {
        kz_info("request %s to '%s' re-asks %s, which still runs: it gets its reply", id, d->topic,
                retry_of ? retry_of : id);
        self->held[self->held_n++] = d;
        return 1;
    }
    kz_reqmem_start(self->reqmem, id, retry_of);
    return 0;
}

/* REQUEST was answered with BUF (LEN bytes): keep the reply, and answer
   the held re-asks it answers */
static void s_request_done(kz_bus_t *self, const kz_delivery_t *request, const uint8_t *buf,
                           size_t len)
{
    if (!self->reqmem || !request->msg ||
        kz_reqmem_done(self->reqmem, kz_msg_id(request->msg), buf, len) != 0)
        return;
    size_t k = 0;
    for (size_t i = 0; i < self->held_n; i++) {
        kz_delivery_t *h = self->held[i];
        const uint8_t *r = NULL;
        size_t rlen = 0;
        if (kz_reqmem_lookup(self->reqmem, kz_msg_id(h->msg), s_retry_of(h), &r, &rlen) ==
            KZ_REQMEM_DONE) {
            s_reply_kept(self, h, r, rlen);
            kz_bus_delivery_destroy(&h);
        } else
            self->held[k++] = h;
    }
    self->held_n = k;
}

int kz_bus_reply(kz_bus_t *self, const kz_delivery_t *request, kz_msg_t **reply_p)
{
    kz_msg_t *reply = *reply_p;
    *reply_p = NULL;
    if (!reply)
        return -1;
    int rc = -1;
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err;
    if (request->kind != KZ_DELIVERY_REQUEST || request->socket_index < 0 ||
        request->socket_index >= S_MAX_WORKERS) {
        kz_fail("reply to a delivery that is not a request");
        goto done;
    }
    if (request->settled) {
        kz_fail("request to '%s' was already answered", request->topic);
        goto done;
    }
    s_worker_t *w = &self->workers[request->socket_index];
    if (!w->used || !streq(w->service, request->topic)) {
        kz_fail("reply for service '%s' which we no longer offer", request->topic);
        goto done;
    }
    const char *src = kz_msg_src(reply);
    const char *corr = kz_msg_corr(reply);
    if (((!src || !*src) && kz_msg_set_src(reply, self->agent_id) != 0) ||
        ((!corr || !*corr) && request->msg &&
         kz_msg_set_corr(reply, kz_msg_id(request->msg)) != 0)) {
        kz_fail("out of memory");
        goto done;
    }
    if (kz_msg_encode(reply, &buf, &len, &err) != 0) {
        kz_fail("unable to encode reply '%s': %s", kz_msg_type(reply), err.text);
        goto done;
    }
    /* kept for a re-ask, whether or not this send reaches the client */
    s_request_done(self, request, buf, len);
    if (w->generation != request->generation) {
        /* the broker forgot this request (restart); its client re-asks,
           and the re-ask is answered from what we just kept */
        kz_warn("reply for '%s' not sent: the broker restarted meanwhile; kept for the "
                "client's re-ask",
                w->service);
        rc = 0;
        goto done;
    }
    rc = s_worker_send(w, KZ_MDPW_REPLY, request->reply_to, request->reply_to_len, buf, len);
    if (rc == 0) /* one reply per request; see s_settle for the cast */
        ((kz_delivery_t *)(uintptr_t)request)->settled = KZ_MDPW_REPLY;
done:
    free(buf);
    kz_msg_destroy(&reply);
    return rc;
}

/* --------------------------------------------------------------- client */

static void s_client_input(kz_bus_t *self, s_frames_t *fr)
{
    /* [""][MDPC01][service][body...]; anything else, or a reply for
       another service (stale from an earlier call), is dropped */
    if (fr->overflow || fr->n < 4 || s_fsize(fr, 0) != 0 || !s_feq(fr, 1, KZ_MDPC) ||
        !self->call_service || !s_feq(fr, 2, self->call_service)) {
        kz_debug("ignoring unexpected reply frames");
        return;
    }
    free(self->call_reply);
    self->call_reply_len = s_fsize(fr, 3);
    self->call_reply = malloc(self->call_reply_len ? self->call_reply_len : 1);
    if (!self->call_reply) {
        kz_error("out of memory: reply dropped");
        return;
    }
    memcpy(self->call_reply, s_fdata(fr, 3), self->call_reply_len);
    self->call_replied = true;
}

/* ------------------------------------------------------------ the loop */

/* Heartbeats, liveness and ack flushing. Returns the ms until the next
   thing is due (at most one heartbeat). */
static int s_maintain(kz_bus_t *self)
{
    int64_t now = s_now();
    int64_t hb = self->cfg.heartbeat_ms > 0 ? self->cfg.heartbeat_ms : 1000;
    int64_t dead = hb * (self->cfg.heartbeat_liveness > 0 ? self->cfg.heartbeat_liveness : 3);
    int64_t next = hb;
    for (int i = 0; i < S_MAX_MEMBERS; i++) {
        s_member_t *m = &self->members[i];
        if (!m->used)
            continue;
        if (m->acks_n) {
            if (now - m->ack_since >= S_ACK_FLUSH_MS)
                s_member_flush(self, m);
            else if (m->ack_since + S_ACK_FLUSH_MS - now < next)
                next = m->ack_since + S_ACK_FLUSH_MS - now;
        }
        if (!m->sock || (now - m->last_recv > dead && !(zsock_events(m->sock) & ZMQ_POLLIN))) {
            kz_warn("broker silent for %" PRId64 " ms, joining group '%s' again",
                    now - m->last_recv, m->group);
            self->reconnects++;
            s_member_connect(self, m);
        }
        if (m->sock && now - m->last_send >= hb)
            s_member_send(self, m, KZ_GRP_HEARTBEAT, NULL, 0, NULL, 0);
        if (m->last_send + hb - now < next)
            next = m->last_send + hb - now;
        if (m->last_recv + dead + 1 - now < next)
            next = m->last_recv + dead + 1 - now;
    }
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        s_worker_t *w = &self->workers[i];
        if (!w->used)
            continue;
        if (!w->sock || (now - w->last_recv > dead && !(zsock_events(w->sock) & ZMQ_POLLIN))) {
            kz_warn("broker silent for %" PRId64 " ms, registering service '%s' again",
                    now - w->last_recv, w->service);
            self->reconnects++;
            s_worker_connect(self, w);
        }
        if (w->sock && now - w->last_send >= hb)
            s_worker_send(w, KZ_MDPW_HEARTBEAT, NULL, 0, NULL, 0);
        if (w->last_send + hb - now < next)
            next = w->last_send + hb - now;
        if (w->last_recv + dead + 1 - now < next)
            next = w->last_recv + dead + 1 - now;
    }
    return next < 0 ? 0 : (int)next;
}

static void s_client_mon_input(kz_bus_t *self, s_frames_t *fr);

enum { S_SRC_SUB, S_SRC_MEMBER, S_SRC_WORKER, S_SRC_PUB, S_SRC_CLIENT, S_SRC_CLIENT_MON };

/* Poll every socket for up to WAIT_MS and handle what arrived: deliveries
   go to the pending queue, replies to the call in progress. While the
   pending queue is full (a long call), delivery sockets are left alone
   (their last_recv refreshed so silence is not mistaken for death).
   0, or -1 when interrupted by a signal. */
static int s_pump(kz_bus_t *self, int wait_ms)
{
    zmq_pollitem_t items[S_MAX_MEMBERS + S_MAX_WORKERS + 4];
    int src[S_MAX_MEMBERS + S_MAX_WORKERS + 4];
    int idx[S_MAX_MEMBERS + S_MAX_WORKERS + 4];
    int n = 0;
    bool full = self->pending_count >= S_PENDING_MAX;
    int64_t now = s_now();
    if (!full) {
        if (self->sub) {
            items[n] = (zmq_pollitem_t){self->sub_h, 0, ZMQ_POLLIN, 0};
            src[n] = S_SRC_SUB;
            idx[n++] = 0;
        }
        for (int i = 0; i < S_MAX_MEMBERS; i++) {
            if (self->members[i].used && self->members[i].sock) {
                items[n] = (zmq_pollitem_t){self->members[i].handle, 0, ZMQ_POLLIN, 0};
                src[n] = S_SRC_MEMBER;
                idx[n++] = i;
            }
        }
        for (int i = 0; i < S_MAX_WORKERS; i++) {
            if (self->workers[i].used && self->workers[i].sock) {
                items[n] = (zmq_pollitem_t){self->workers[i].handle, 0, ZMQ_POLLIN, 0};
                src[n] = S_SRC_WORKER;
                idx[n++] = i;
            }
        }
    } else {
        for (int i = 0; i < S_MAX_MEMBERS; i++)
            self->members[i].last_recv = now;
        for (int i = 0; i < S_MAX_WORKERS; i++)
            self->workers[i].last_recv = now;
    }
    if (self->pub) {
        items[n] = (zmq_pollitem_t){self->pub_h, 0, ZMQ_POLLIN, 0};
        src[n] = S_SRC_PUB;
        idx[n++] = 0;
    }
    if (self->client && self->call_service) {
        items[n] = (zmq_pollitem_t){self->client_h, 0, ZMQ_POLLIN, 0};
        src[n] = S_SRC_CLIENT;
        idx[n++] = 0;
    }
    if (self->client_mon && self->call_service) {
        items[n] = (zmq_pollitem_t){self->client_mon_h, 0, ZMQ_POLLIN, 0};
        src[n] = S_SRC_CLIENT_MON;
        idx[n++] = 0;
    }
    if (n == 0) {
        if (wait_ms != 0) {
            /* nothing to wait on: sleep, but still wake on signals */
            if (zmq_poll(NULL, 0, wait_ms) < 0 && zmq_errno() == EINTR)
                return -1;
        }
        return 0;
    }
    int rc = zmq_poll(items, n, wait_ms);
    if (rc < 0)
        return zmq_errno() == EINTR ? -1 : kz_fail("poll failed: %s", zmq_strerror(zmq_errno()));
    if (rc == 0)
        return 0;
    self->rr++;
    for (int k = 0; k < n; k++) {
        int j = (int)((self->rr + (unsigned)k) % (unsigned)n);
        if (!(items[j].revents & ZMQ_POLLIN))
            continue;
        if (src[j] == S_SRC_PUB) {
            s_pub_input(self);
            continue;
        }
        for (int b = 0; b < S_READ_BATCH; b++) {
            /* a reconnect inside the handlers may have replaced the socket */
            void *h = src[j] == S_SRC_SUB          ? self->sub_h
                      : src[j] == S_SRC_MEMBER     ? self->members[idx[j]].handle
                      : src[j] == S_SRC_WORKER     ? self->workers[idx[j]].handle
                      : src[j] == S_SRC_CLIENT_MON ? self->client_mon_h
                                                   : self->client_h;
            if (!h || h != items[j].socket)
                break;
            s_frames_t fr;
            if (s_recv_frames(h, &fr) != 1)
                break;
            switch (src[j]) {
            case S_SRC_SUB:
                s_sub_input(self, &fr);
                break;
            case S_SRC_MEMBER:
                s_member_input(self, idx[j], &fr);
                break;
            case S_SRC_WORKER:
                s_worker_input(self, idx[j], &fr);
                break;
            case S_SRC_CLIENT_MON:
                s_client_mon_input(self, &fr);
                break;
            default:
                s_client_input(self, &fr);
                break;
            }
            s_frames_close(&fr);
        }
    }
    return 0;
}

/* Flush every queued ack now (before blocking) */
static void s_flush_acks(kz_bus_t *self)
{
    for (int i = 0; i < S_MAX_MEMBERS; i++)
        if (self->members[i].used && self->members[i].acks_n)
            s_member_flush(self, &self->members[i]);
}

int kz_bus_recv(kz_bus_t *self, kz_delivery_t **delivery_p, int timeout_ms)
{
    *delivery_p = NULL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : s_now() + timeout_ms;
    bool first = true;
    for (;;) {
        kz_delivery_t *d = s_pending_pop(self);
        if (d && d->kind == KZ_DELIVERY_REQUEST && s_request_take(self, d) == 1)
            continue;
        if (d) {
            *delivery_p = d;
            return 1;
        }
        int due = s_maintain(self);
        int64_t left = deadline - s_now();
        if (left < 0)
            left = 0;
        if (!first && left == 0)
            return 0;
        int wait = 0;
        if (!first) {
            wait = left < due ? (int)left : due;
            s_flush_acks(self);
        }
        first = false;
        if (s_pump(self, wait) < 0)
            return -1;
        if (wait == 0 && self->pending_count == 0 && left == 0)
            return 0;
    }
}

int kz_bus_keepalive(kz_bus_t *self)
{
    int64_t now = s_now();
    if (now < self->keepalive_at && !self->acks_queued)
        return 0;
    int64_t hb = self->cfg.heartbeat_ms;
    int64_t next = now + hb;
    int rc = 0;
    for (int i = 0; i < S_MAX_MEMBERS; i++) {
        s_member_t *m = &self->members[i];
        if (!m->used || !m->sock)
            continue;
        if (m->acks_n && s_member_flush(self, m) != 0)
            rc = -1;
        if (now - m->last_send >= hb &&
            s_member_send(self, m, KZ_GRP_HEARTBEAT, NULL, 0, NULL, 0) != 0)
            rc = -1;
        if (m->last_send + hb < next)
            next = m->last_send + hb;
    }
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        s_worker_t *w = &self->workers[i];
        if (!w->used || !w->sock)
            continue;
        if (now - w->last_send >= hb && s_worker_send(w, KZ_MDPW_HEARTBEAT, NULL, 0, NULL, 0) != 0)
            rc = -1;
        if (w->last_send + hb < next)
            next = w->last_send + hb;
    }
    self->acks_queued = false;
    /* after a failed send, retry on the next call rather than a beat later */
    self->keepalive_at = rc == 0 ? next : now;
    return rc;
}

/* -------------------------------------------------------------- calling */

/* Send BODY to SERVICE on the client socket (a fresh one when FRESH, so
   a late reply to an earlier attempt cannot be taken for this one's) and
   wait until DEADLINE (s_now time) for a reply that ACCEPT takes (NULL:
   any). 0 with the reply bytes in self->call_reply, 1 when no reply came
   in time, 2 when the connection to the broker dropped meanwhile (the
   request and its reply are lost with the broker's memory), -1 with
   ERRBUF (interrupted, a socket error). */
typedef bool(s_accept_fn)(kz_bus_t *self, void *arg);

/* Close the client socket and its monitor */
static void s_client_close(kz_bus_t *self)
{
    if (self->client_mon) {
        zmq_socket_monitor(self->client_h, NULL, 0);
        zsock_destroy(&self->client_mon);
        self->client_mon_h = NULL;
    }
    s_close(&self->client, 0);
    self->client_h = NULL;
    self->call_lost = false;
}

/* A new client socket, watched by a socket monitor for the loss of its
   connection: a broker that restarts forgets the requests it held and
   the replies it would route, so a call outstanding then is re-asked at
   once (kz_bus_call) instead of waiting out its timeout. Without the
   monitor (it failed) the call still works, noticing only by timeout. */
static int s_client_open(kz_bus_t *self, char *errbuf, size_t errlen)
{
    s_client_close(self);
    self->client = s_socket(self, ZMQ_DEALER, self->cfg.connect.router, errbuf, errlen);
    if (!self->client)
        return -1;
    self->client_h = zsock_resolve(self->client);
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://kz-bus-client-%p-%u", (void *)self, ++self->mon_seq);
    if (zmq_socket_monitor(self->client_h, ep, ZMQ_EVENT_DISCONNECTED) != 0)
        return 0;
    self->client_mon = zsock_new(ZMQ_PAIR);
    if (!self->client_mon || zsock_connect(self->client_mon, "%s", ep) != 0) {
        zmq_socket_monitor(self->client_h, NULL, 0);
        zsock_destroy(&self->client_mon);
        return 0;
    }
    self->client_mon_h = zsock_resolve(self->client_mon);
    return 0;
}

/* Forget the monitor events from before this send: a connection that
   dropped between calls lost nothing of this one */
static void s_client_mon_drain(kz_bus_t *self)
{
    s_frames_t fr;
    while (self->client_mon_h && s_recv_frames(self->client_mon_h, &fr) == 1)
        s_frames_close(&fr);
    self->call_lost = false;
}

/* A monitor event of the client socket: [u16 event, u32 value][endpoint] */
static void s_client_mon_input(kz_bus_t *self, s_frames_t *fr)
{
    if (fr->n < 1 || s_fsize(fr, 0) < 2)
        return;
    uint16_t ev;
    memcpy(&ev, s_fdata(fr, 0), sizeof ev);
    if (ev == ZMQ_EVENT_DISCONNECTED && self->call_service)
        self->call_lost = true;
}

static int s_call_once(kz_bus_t *self, const char *service, const void *body, size_t len,
                       int64_t deadline, bool fresh, s_accept_fn *accept, void *arg, char *errbuf,
                       size_t errlen)
{
    size_t slen = strlen(service);
    if (slen == 0 || slen > KZ_TOPIC_MAX)
        return s_err(errbuf, errlen, "invalid service name '%s'", service);
    if ((!self->client || fresh) && s_client_open(self, errbuf, errlen) != 0)
        return -1;
    s_client_mon_drain(self);
    const void *data[4] = {"", KZ_MDPC, service, body};
    size_t lens[4] = {0, strlen(KZ_MDPC), slen, len};
    if (s_sendv(self->client_h, data, lens, 4) != 0)
        return s_err(errbuf, errlen, "unable to send request to '%s': %s", service,
                     zmq_strerror(zmq_errno()));
    self->call_service = service;
    for (;;) {
        self->call_replied = false;
        int due = s_maintain(self);
        int64_t left = deadline - s_now();
        if (left <= 0)
            break;
        int rc = s_pump(self, left < due ? (int)left : due);
        if (rc < 0) {
            self->call_service = NULL;
            return s_err(errbuf, errlen, "call to '%s' interrupted", service);
        }
        if (self->call_replied && (!accept || accept(self, arg))) {
            self->call_service = NULL;
            return 0;
        }
        if (self->call_lost) {
            self->call_lost = false;
            self->call_service = NULL;
            return 2;
        }
    }
    self->call_service = NULL;
    return 1;
}

/* Wait MS while the other sockets' heartbeats go on; -1 when interrupted */
static int s_pause(kz_bus_t *self, int64_t ms)
{
    int64_t until = s_now() + ms;
    for (;;) {
        int due = s_maintain(self);
        int64_t left = until - s_now();
        if (left <= 0)
            return 0;
        if (s_pump(self, left < due ? (int)left : due) < 0)
            return -1;
    }
}

typedef struct {
    char ids[S_REASKS + 1][KZ_REQMEM_ID_MAX + 1]; /* the request's, then its re-asks' */
    int nids;
    int answered; /* 1-based index in ids of the one the reply answers */
    kz_msg_t *reply;
} s_call_ctx_t;

static bool s_accept_envelope(kz_bus_t *self, void *arg)
{
    s_call_ctx_t *ctx = arg;
    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode(self->call_reply, self->call_reply_len, &self->limits, &err);
    if (!msg) {
        s_drop(self, "reply", &err);
        return false;
    }
    const char *corr = kz_msg_corr(msg);
    int which = 0;
    for (int i = 0; corr && i < ctx->nids && !which; i++)
        if (streq(corr, ctx->ids[i]))
            which = i + 1;
    if (!which) {
        kz_debug("dropping stale reply (corr %s, expected %s)", corr ? corr : "-", ctx->ids[0]);
        kz_msg_destroy(&msg);
        return false;
    }
    ctx->answered = which;
    kz_msg_destroy(&ctx->reply);
    ctx->reply = msg;
    return true;
}

/* True when REPLY is the broker's "queue_full" refusal (PROTOCOL.md 1.3) */
static bool s_is_queue_full(const kz_msg_t *reply)
{
    const char *code = kz_map_str(kz_msg_body_const(reply), "code");
    return streq(kz_msg_type(reply), "error") && code && streq(code, "queue_full");
}

/* The connection to the broker dropped while REQ was outstanding: the
   broker that held it (or its reply) is gone. Give REQ a new id, mark it
   as a re-ask of the first one (body "retry_of") and remember the new id
   among those a reply may answer. The worker that ran the first answers
   from its memory, one still running it answers when done, any other
   runs it (PROTOCOL.md 1.3 "Re-asking"). 0 / -1 with ERRBUF. */
static int s_call_reask(kz_bus_t *self, const char *service, kz_msg_t *req, s_call_ctx_t *ctx,
                        char *errbuf, size_t errlen)
{
    (void)self;
    if (ctx->nids > S_REASKS)
        return s_err(errbuf, errlen,
                     "call to '%s' lost its broker connection %d times; giving up on request %s",
                     service, ctx->nids, ctx->ids[0]);
    char next[32];
    kz_ulid(next);
    if ((ctx->nids == 1 && kz_map_put_str(req, kz_msg_body(req), "retry_of", ctx->ids[0]) != 0) ||
        kz_msg_set_id(req, next) != 0)
        return s_err(errbuf, errlen, "out of memory");
    snprintf(ctx->ids[ctx->nids], sizeof ctx->ids[0], "%s", next);
    ctx->nids++;
    kz_warn("the connection to the broker dropped while '%s' (request %s) was outstanding "
            "(a broker restart?): asking again as %s",
            service, ctx->ids[0], next);
    return 0;
}

int kz_bus_cancel(kz_bus_t *self, const char *service, const char *request_id, const char *reason)
{
    kz_msg_t *msg = kz_msg_new(S_CANCEL_TOPIC);
    if (!msg || kz_map_put_str(msg, kz_msg_body(msg), "id", request_id) != 0 ||
        (service && kz_map_put_str(msg, kz_msg_body(msg), "service", service) != 0) ||
        (reason && kz_map_put_str(msg, kz_msg_body(msg), "reason", reason) != 0)) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    kz_msg_set_corr(msg, request_id);
    return kz_bus_publish(self, &msg);
}

kz_msg_t *kz_bus_call(kz_bus_t *self, const char *service, kz_msg_t **request_p, int timeout_ms,
                      int retries, char *errbuf, size_t errlen)
{
    kz_msg_t *req = *request_p;
    *request_p = NULL;
    if (!req) {
        s_err(errbuf, errlen, "no request");
        return NULL;
    }
    if (timeout_ms < 0)
        timeout_ms = self->cfg.call_timeout_ms;
    int attempts = 1 + (retries < 0 ? self->cfg.call_retries : retries);
    s_call_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.ids[0], sizeof ctx.ids[0], "%s", kz_msg_id(req));
    ctx.nids = 1;
    const char *id = ctx.ids[0];
    memset(&self->call_info, 0, sizeof self->call_info);
    const char *src = kz_msg_src(req);
    if ((!src || !*src) && kz_msg_set_src(req, self->agent_id) != 0) {
        s_err(errbuf, errlen, "out of memory");
        goto done;
    }
    for (int attempt = 1; attempt <= attempts; attempt++) {
        int64_t until = s_now() + timeout_ms;
        int64_t backoff = S_BUSY_BACKOFF_MS;
        for (bool fresh = attempt > 1;; fresh = false) {
            /* every send carries the time it was sent and the deadline of
               this attempt, so the broker drops it once we stop waiting */
            uint8_t *buf = NULL;
            size_t len = 0;
            kz_msg_err_t err;
            int64_t now_us = kz_now_us();
            kz_msg_set_ts(req, now_us);
            kz_msg_set_deadline(req, now_us + (until - s_now()) * 1000);
            if (kz_msg_encode(req, &buf, &len, &err) != 0) {
                s_err(errbuf, errlen, "unable to encode request '%s': %s", kz_msg_type(req),
                      err.text);
                goto done;
            }
            int rc = s_call_once(self, service, buf, len, until + S_EXPIRY_WAIT_MS, fresh,
                                 s_accept_envelope, &ctx, errbuf, errlen);
            free(buf);
            if (rc < 0)
                goto done; /* interrupted: the caller cancels when it wants to */
            if (rc == 1)
                break;
            if (rc == 2) {
                /* the broker's connection dropped: ask again at once,
                   through the new connection (held until it is up) */
                if (s_call_reask(self, service, req, &ctx, errbuf, errlen) != 0)
                    goto done;
                continue;
            }
            if (!s_is_queue_full(ctx.reply) || until - s_now() <= backoff)
                goto done; /* the reply, or the refusal when no time is left to wait it out */
            kz_info("'%s' is busy (the broker's queue is full): sending again in %" PRId64 " ms",
                    service, backoff);
            kz_msg_destroy(&ctx.reply);
            if (s_pause(self, backoff) < 0) {
                s_err(errbuf, errlen, "call to '%s' interrupted", service);
                goto done;
            }
            backoff = backoff < 8000 ? backoff * 2 : backoff;
        }
        if (attempt < attempts)
            kz_warn("no reply from '%s' within %d ms, retrying", service, timeout_ms);
    }
    /* the request may still be queued on the dead socket: drop it, and tell
       the broker and the worker that nobody waits for it any more */
    s_client_close(self);
    s_err(errbuf, errlen, "no reply from '%s' after %d attempt%s", service, attempts,
          attempts == 1 ? "" : "s");
    {
        char reason[128];
        snprintf(reason, sizeof reason, "no reply within %d ms", timeout_ms);
        kz_bus_cancel(self, service, id, reason);
    }
done:
    free(self->call_reply);
    self->call_reply = NULL;
    kz_msg_destroy(&req);
    self->call_info.asks = ctx.nids;
    self->call_info.answered = ctx.reply ? ctx.answered : 0;
    return ctx.reply;
}

const kz_bus_call_info_t *kz_bus_call_info(const kz_bus_t *self)
{
    return &self->call_info;
}

int kz_bus_call_raw(kz_bus_t *self, const char *service, const void *body, size_t len,
                    int timeout_ms, uint8_t **reply_p, size_t *reply_len, char *errbuf,
                    size_t errlen)
{
    *reply_p = NULL;
    *reply_len = 0;
    /* raw replies carry no correlation id: only a socket that has never
       carried another request can tell this call's reply for sure */
    int rc = s_call_once(self, service, body, len,
                         s_now() + (timeout_ms < 0 ? self->cfg.call_timeout_ms : timeout_ms), true,
                         NULL, NULL, errbuf, errlen);
    if (rc == 1)
        s_err(errbuf, errlen, "no reply from '%s' after 1 attempt", service);
    else if (rc == 2) /* raw replies carry no id: a re-ask could not be told apart */
        s_err(errbuf, errlen,
              "the connection to the broker dropped while '%s' was outstanding (a broker "
              "restart?): no reply",
              service);
    s_client_close(self);
    if (rc != 0) {
        free(self->call_reply);
        self->call_reply = NULL;
        return -1;
    }
    *reply_p = self->call_reply;
    *reply_len = self->call_reply_len;
    self->call_reply = NULL;
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

int kz_bus_await_echo(kz_bus_t *self, const char *probe, int timeout_ms, int every_ms,
                      void (*other)(kz_delivery_t *delivery, void *arg), void *arg)
{
    int64_t deadline = s_now() + timeout_ms, next = 0;
    bool published = false;
    while (s_now() < deadline) {
        if (s_now() >= next) {
            /* a failed publish (no broker yet) is tried again */
            kz_msg_t *run = kz_msg_new("agent.run");
            if (run && kz_map_put_str(run, kz_msg_body(run), "agent", probe) == 0 &&
                kz_bus_publish(self, &run) == 0)
                published = true;
            kz_msg_destroy(&run);
            next = s_now() + every_ms;
        }
        kz_delivery_t *d = NULL;
        int rc = kz_bus_recv(self, &d, 50);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        const char *who = d->kind == KZ_DELIVERY_EVENT && streq(kz_msg_type(d->msg), "agent.run")
                              ? kz_map_str(kz_msg_body_const(d->msg), "agent")
                              : NULL;
        bool ours = who && streq(who, probe);
        if (!ours && other)
            other(d, arg);
        kz_bus_delivery_destroy(&d);
        if (ours)
            return 0;
    }
    return published ? 1 : -2;
}

kz_bus_t *kz_bus_new(const kz_bus_config_t *cfg, const char *agent_id, char *errbuf, size_t errlen)
{
    const char *names[3] = {"bus.endpoints.pub", "bus.endpoints.sub", "bus.endpoints.router"};
    const char *eps[3] = {cfg->connect.pub, cfg->connect.sub, cfg->connect.router};
    for (int i = 0; i < 3; i++) {
        if (!s_endpoint_ok(eps[i])) {
            s_err(errbuf, errlen, "%s: invalid endpoint '%s' (expected tcp://, ipc://)", names[i],
                  eps[i] ? eps[i] : "");
            return NULL;
        }
        if (kz_bus_ipc_check(eps[i], names[i], errbuf, errlen) != 0)
            return NULL;
    }
    if (kz_bus_curve_client(NULL, cfg, errbuf, errlen) != 0)
        return NULL;
    kz_bus_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_err(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    s_endpoints_copy(&self->cfg.connect, &cfg->connect);
    s_endpoints_copy(&self->cfg.bind, &cfg->bind);
    self->cfg.curve.broker_cert = s_strdup(cfg->curve.broker_cert);
    self->cfg.curve.broker_public = s_strdup(cfg->curve.broker_public);
    self->cfg.curve.client_cert = s_strdup(cfg->curve.client_cert);
    self->cfg.curve.allow_dir = s_strdup(cfg->curve.allow_dir);
    /* the role certificates are only read before kz_bus_new (kz_config_bus_role) */
    self->cfg.curve.orchestrator_cert = NULL;
    self->cfg.curve.agent_cert = NULL;
    self->cfg.curve.operator_cert = NULL;
    if (self->cfg.heartbeat_ms <= 0)
        self->cfg.heartbeat_ms = 1000;
    if (self->cfg.heartbeat_liveness <= 0)
        self->cfg.heartbeat_liveness = 3;
    if (self->cfg.hwm < 0) /* 0 is ZeroMQ's "no limit", as documented for bus.hwm */
        self->cfg.hwm = 100000;
    if (self->cfg.call_timeout_ms <= 0)
        self->cfg.call_timeout_ms = 10000;
    if (self->cfg.call_retries < 0)
        self->cfg.call_retries = 0;
    snprintf(self->agent_id, sizeof self->agent_id, "%s", agent_id ? agent_id : "kaizen");
    self->limits = kz_msg_limits_default();
    if (self->cfg.max_message_size > 0)
        self->limits.max_size = self->cfg.max_message_size;
    if (!self->cfg.connect.pub || !self->cfg.connect.sub || !self->cfg.connect.router) {
        s_cfg_free(&self->cfg);
        free(self);
        s_err(errbuf, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&s_cache_lock);
    s_live_buses++;
    pthread_mutex_unlock(&s_cache_lock);
    return self;
}

void kz_bus_destroy(kz_bus_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_bus_t *self = *self_p;
    *self_p = NULL;
    for (int i = 0; i < S_MAX_MEMBERS; i++)
        if (self->members[i].used)
            s_member_close(self, &self->members[i]);
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        s_worker_t *w = &self->workers[i];
        if (w->used) {
            s_worker_send(w, KZ_MDPW_DISCONNECT, NULL, 0, NULL, 0);
            s_close(&w->sock, self->cfg.heartbeat_ms);
            w->used = false;
        }
    }
    s_client_close(self);
    s_close(&self->sub, 0);
    s_close(&self->sync, 0);
    while (self->ob_len > 0)
        s_outbox_pop(self);
    free(self->outbox);
    /* queued events get S_PUB_LINGER ms to reach the broker */
    s_close(&self->pub, S_PUB_LINGER);
    kz_delivery_t *d;
    while ((d = s_pending_pop(self)))
        kz_bus_delivery_destroy(&d);
    for (size_t i = 0; i < self->held_n; i++)
        kz_bus_delivery_destroy(&self->held[i]);
    kz_reqmem_destroy(&self->reqmem);
    free(self->pending);
    free(self->call_reply);
    s_cfg_free(&self->cfg);
    free(self);

    pthread_mutex_lock(&s_cache_lock);
    if (--s_live_buses == 0) {
        while (s_cache_count > 0)
            free(s_cache[--s_cache_count]);
    }
    pthread_mutex_unlock(&s_cache_lock);
}

const char *kz_bus_agent_id(const kz_bus_t *self)
{
    return self->agent_id;
}

uint64_t kz_bus_dropped(const kz_bus_t *self)
{
    return self->dropped;
}

uint64_t kz_bus_reconnects(const kz_bus_t *self)
{
    return self->reconnects;
}
