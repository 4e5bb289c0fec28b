/*  kz_broker.h - the kaizen bus broker

    One object owns the four bound sockets of the bus (proto/PROTOCOL.md):
      pub    XSUB   events in, subscribed to everything
      sub    XPUB   events out, prefix filtering done by zmq
      router ROUTER Majordomo 0.1 services (MDPC01 / MDPW01) and kaizen
                    queue groups (KZG01)
      tap    XPUB   a copy of everything routed, built only while someone
                    listens
    kz_broker_run() polls them in one loop on the calling thread; the
    broker is not thread-safe except for kz_broker_stop(), which only sets
    a flag and may be called from a signal handler.
*/
#ifndef KZ_BROKER_H_INCLUDED
#define KZ_BROKER_H_INCLUDED

#include <stddef.h>

#include "kz_config.h"

typedef struct kz_broker_t kz_broker_t;

/* Create the sockets and bind them to CFG's bus endpoints (bind.* when
   set, else endpoints.*). With bus.curve.enabled, loads the broker's
   secret certificate and starts CZMQ's zauth with the allow-list. Returns
   NULL with a one-line reason in ERRBUF (e.g. "unable to bind '...':
   Address already in use (is another kaizen-broker running?)"). CFG is
   not kept: the broker copies what it needs. */
kz_broker_t *kz_broker_new(const kz_config_t *cfg, char *errbuf, size_t errlen);

/* Route messages until kz_broker_stop() is called (or a signal interrupts
   the poll and the caller's handler called kz_broker_stop). 0 on a clean
   stop, -1 on a fatal socket error (logged). */
int kz_broker_run(kz_broker_t *self);

/* Ask kz_broker_run to return. Async-signal-safe. */
void kz_broker_stop(kz_broker_t *self);

/* Destroy the broker: close every socket with linger 0 and free all
   queued messages. Safe to call twice; sets *SELF_P to NULL. */
void kz_broker_destroy(kz_broker_t **self_p);

/* The endpoint the broker bound for "pub", "sub", "router" or "tap";
   NULL for another name */
const char *kz_broker_endpoint(const kz_broker_t *self, const char *which);

#endif
