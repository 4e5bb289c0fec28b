/*  kz_curve_probe.h - does the broker accept our CURVE key?

    A client whose key the broker's ZAP handler refuses (a public key not
    in bus.curve.allow_dir, or the wrong bus.curve.broker_public) sees
    only silence on the bus: ZeroMQ retries the handshake quietly. This
    tells the refusal apart from a broker that is not there: a socket of
    its own, with the config's CURVE keys, connects to the endpoint and
    watches the handshake with zmq_socket_monitor
    (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH / _PROTOCOL / _SUCCEEDED).
*/
#ifndef KZ_CURVE_PROBE_H_INCLUDED
#define KZ_CURVE_PROBE_H_INCLUDED

#include <stddef.h>

#include "kz_config.h"

typedef enum {
    KZ_CURVE_ACCEPTED = 0, /* the handshake succeeded, or CURVE is off */
    KZ_CURVE_REFUSED = 1,  /* the broker refused our key (or we its key) */
    KZ_CURVE_SILENT = 2,   /* no handshake within the time: no broker there */
} kz_curve_probe_t;

/* Probe ENDPOINT (a broker's pub (XSUB) endpoint when PUB, else its
   router) with the CURVE client settings of CFG for at most TIMEOUT_MS.
   On KZ_CURVE_REFUSED, WHY says what to do ("the broker at ... refused our
   key (CURVE): add ..."). -1 with WHY on a local error (keys unreadable) */
int kz_curve_probe(const kz_bus_config_t *cfg, const char *endpoint, bool pub, int timeout_ms,
                   char *why, size_t wlen);

#endif
