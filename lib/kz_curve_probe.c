/*  kz_curve_probe.c - does the broker accept our CURVE key?

    A throw-away socket with the client keys and a monitor on it; the
    first handshake event decides.
*/
#include "kz_curve_probe.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kz_bus.h"

/* A public certificate's key ("public-key = ...") for the advice, or "" */
static void s_public_key(const char *cert_path, char *key, size_t len)
{
    key[0] = '\0';
    zcert_t *cert = cert_path ? zcert_load(cert_path) : NULL;
    if (cert) {
        snprintf(key, len, "%s", zcert_public_txt(cert));
        zcert_destroy(&cert);
    }
}

int kz_curve_probe(const kz_bus_config_t *cfg, const char *endpoint, bool pub, int timeout_ms,
                   char *why, size_t wlen)
{
    if (!cfg->curve.enabled || !endpoint)
        return KZ_CURVE_ACCEPTED;
    zsock_t *sock = zsock_new(pub ? ZMQ_PUB : ZMQ_DEALER);
    zsock_t *events = zsock_new(ZMQ_PAIR);
    if (!sock || !events) {
        zsock_destroy(&sock);
        zsock_destroy(&events);
        snprintf(why, wlen, "unable to make a probe socket");
        return -1;
    }
    int rc = -1;
    char inproc[96];
    snprintf(inproc, sizeof inproc, "inproc://kz-curve-probe-%ld-%p", (long)getpid(), (void *)sock);
    zsock_set_linger(sock, 0);
    if (kz_bus_curve_client(sock, cfg, why, wlen) != 0)
        goto done;
    if (zmq_socket_monitor(zsock_resolve(sock), inproc,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0 ||
        zsock_connect(events, "%s", inproc) != 0 || zsock_connect(sock, "%s", endpoint) != 0) {
        snprintf(why, wlen, "unable to probe '%s': %s", endpoint, zmq_strerror(zmq_errno()));
        goto done;
    }
    rc = KZ_CURVE_SILENT;
    int64_t deadline = zclock_mono() + timeout_ms;
    while (rc == KZ_CURVE_SILENT) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0)
            break;
        zmq_pollitem_t item = {zsock_resolve(events), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) <= 0)
            continue;
        zmsg_t *msg = zmsg_recv(events);
        zframe_t *head = msg ? zmsg_first(msg) : NULL;
        if (head && zframe_size(head) >= 2) {
            uint16_t event;
            memcpy(&event, zframe_data(head), sizeof event);
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
                rc = KZ_CURVE_ACCEPTED;
            } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                       event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
                char key[64];
                s_public_key(cfg->curve.client_cert, key, sizeof key);
                snprintf(why, wlen,
                         "the broker at '%s' refused our key (CURVE): add our public key %s "
                         "(the public NAME.key beside '%s') to the broker's bus.curve.allow_dir, "
                         "or make a key pair the broker admits with 'kaizen keygen NAME --role "
                         "operator' and name it in bus.curve.operator_cert; and check that "
                         "bus.curve.broker_public is the broker's public key",
                         endpoint, key[0] ? key : "(unreadable)",
                         cfg->curve.client_cert ? cfg->curve.client_cert : "?");
                rc = KZ_CURVE_REFUSED;
            }
        }
        zmsg_destroy(&msg);
    }
done:
    zmq_socket_monitor(zsock_resolve(sock), NULL, 0);
    zsock_destroy(&sock);
    zsock_destroy(&events);
    return rc;
}
