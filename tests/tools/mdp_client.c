/*  mdp_client.c - a stock Majordomo 0.1 client (ZeroMQ RFC 7), for tests

    Written only from RFC 7 with raw libzmq, like the ZeroMQ Guide's
    mdcliapi.c: a REQ socket, a reply timeout, and retries by closing the
    socket and reconnecting. No kaizen code: it proves that the broker
    serves clients that know nothing but the RFC.

    mdp_client ENDPOINT SERVICE BODY [--timeout MS] [--retries N] [--count N]
               [--curve SERVER,PUBLIC,SECRET]

    Sends BODY to SERVICE COUNT times, one request at a time, and prints
    each reply's body frames one per line. --retries N resends up to N
    times after a timeout (default 0). Exit 0 when every request got a
    reply, 2 when one did not, 1 on a usage or socket error. --curve
    connects with CURVE: the broker's public key and the client's key
    pair in Z85 (tests/integration/lib.sh kz_curve_keys reads them from
    certificate files).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MDPC_CLIENT "MDPC01"

#define S_PROG "mdp_client"

#include "mdp_curve.h"

static void *s_connect(void *ctx, const char *endpoint)
{
    void *sock = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0;
    if (!sock)
        return NULL;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (s_curve_apply(sock) != 0) {
        zmq_close(sock);
        return NULL;
    }
    if (zmq_connect(sock, endpoint) == -1) {
        fprintf(stderr, "mdp_client: unable to connect to '%s': %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

static int s_send_request(void *sock, const char *service, const char *body)
{
    if (zmq_send(sock, MDPC_CLIENT, strlen(MDPC_CLIENT), ZMQ_SNDMORE) == -1 ||
        zmq_send(sock, service, strlen(service), ZMQ_SNDMORE) == -1 ||
        zmq_send(sock, body, strlen(body), 0) == -1)
        return -1;
    return 0;
}

/* Receive one reply [MDPC01][service][body...] and print its body frames.
   0 = printed, -1 = malformed (reported) */
static int s_print_reply(void *sock, const char *service)
{
    int index = 0, rc = 0;
    int more = 1;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, sock, 0) == -1) {
            zmq_msg_close(&frame);
            return -1;
        }
        more = zmq_msg_more(&frame);
        size_t size = zmq_msg_size(&frame);
        const char *data = zmq_msg_data(&frame);
        if (index == 0 && (size != strlen(MDPC_CLIENT) || memcmp(data, MDPC_CLIENT, size) != 0)) {
            fprintf(stderr, "mdp_client: reply without the MDPC01 header\n");
            rc = -1;
        } else if (index == 1 && (size != strlen(service) || memcmp(data, service, size) != 0)) {
            fprintf(stderr, "mdp_client: reply for another service\n");
            rc = -1;
        } else if (index >= 2 && rc == 0) {
            fwrite(data, 1, size, stdout);
            fputc('\n', stdout);
        }
        zmq_msg_close(&frame);
        index++;
    }
    if (index < 2) {
        fprintf(stderr, "mdp_client: reply with %d frames\n", index);
        rc = -1;
    }
    fflush(stdout);
    return rc;
}

int main(int argc, char **argv)
{
    const char *pos[3];
    int npos = 0;
    long timeout = 2500, retries = 0, count = 1;
    for (int i = 1; i < argc; i++) {
        long *opt = NULL;
        if (strcmp(argv[i], "--curve") == 0 && i + 1 < argc) {
            s_curve = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--timeout") == 0)
            opt = &timeout;
        else if (strcmp(argv[i], "--retries") == 0)
            opt = &retries;
        else if (strcmp(argv[i], "--count") == 0)
            opt = &count;
        if (opt) {
            char *end;
            if (i + 1 >= argc || (*opt = strtol(argv[i + 1], &end, 10), *end != '\0') || *opt < 0) {
                fprintf(stderr, "mdp_client: option '%s' needs a number\n", argv[i]);
                return 1;
            }
            i++;
        } else if (npos < 3)
            pos[npos++] = argv[i];
        else {
            npos = 4;
            break;
        }
    }
    if (npos != 3) {
        fprintf(stderr, "usage: mdp_client ENDPOINT SERVICE BODY [--timeout MS] [--retries N] "
                        "[--count N] [--curve SERVER,PUBLIC,SECRET]\n");
        return 1;
    }
    const char *endpoint = pos[0], *service = pos[1], *body = pos[2];
    void *ctx = zmq_ctx_new();
    void *sock = s_connect(ctx, endpoint);
    int status = 0;
    for (long n = 0; n < count && sock && status == 0; n++) {
        long left = retries;
        if (s_send_request(sock, service, body) == -1) {
            fprintf(stderr, "mdp_client: send failed: %s\n", zmq_strerror(zmq_errno()));
            status = 1;
            break;
        }
        while (1) {
            zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
            int rc = zmq_poll(&item, 1, timeout);
            if (rc == -1) {
                status = 1;
                break;
            }
            if (item.revents & ZMQ_POLLIN) {
                if (s_print_reply(sock, service) == -1)
                    status = 1;
                break;
            }
            if (left-- <= 0) {
                fprintf(stderr, "mdp_client: no reply from '%s' after %ld ms, giving up\n", service,
                        timeout);
                status = 2;
                break;
            }
            /* RFC 7: a client that got no reply closes the socket and resends */
            fprintf(stderr, "mdp_client: no reply, reconnecting and retrying\n");
            zmq_close(sock);
            sock = s_connect(ctx, endpoint);
            if (!sock || s_send_request(sock, service, body) == -1) {
                status = 1;
                break;
            }
        }
    }
    if (!sock)
        status = 1;
    else
        zmq_close(sock);
    zmq_ctx_term(ctx);
    return status;
}
