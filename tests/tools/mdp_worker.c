/*  mdp_worker.c - a stock Majordomo 0.1 worker (ZeroMQ RFC 7), for tests

    Written only from RFC 7 with raw libzmq, like the ZeroMQ Guide's
    mdwrkapi.c: a DEALER that sends READY, heartbeats the broker, treats
    the broker as dead after 3 silent heartbeat intervals and then
    reconnects with a new socket. Single-threaded like the Guide's worker:
    while it sleeps in --delay-ms it sends no heartbeats.

    mdp_worker ENDPOINT SERVICE [--name NAME] [--delay-ms N] [--max N]
               [--heartbeat MS] [--curve SERVER,PUBLIC,SECRET]

    For each request prints "got BODY" (flushed), waits --delay-ms, and
    replies with each body frame prefixed "NAME:". Exits 0 after --max
    requests (default: never). --curve connects with CURVE, as
    mdp_client's.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define MDPW_WORKER     "MDPW01"
#define MDPW_READY      "\001"
#define MDPW_REQUEST    "\002"
#define MDPW_REPLY      "\003"
#define MDPW_HEARTBEAT  "\004"
#define MDPW_DISCONNECT "\005"
#define LIVENESS        3
#define MAX_FRAMES      64

static long s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1)
        ;
}

static void s_send_cmd(void *sock, const char *cmd, const char *service)
{
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, MDPW_WORKER, strlen(MDPW_WORKER), ZMQ_SNDMORE);
    zmq_send(sock, cmd, 1, service ? ZMQ_SNDMORE : 0);
    if (service)
        zmq_send(sock, service, strlen(service), 0);
}

#define S_PROG "mdp_worker"

#include "mdp_curve.h"

static void *s_connect(void *ctx, const char *endpoint, const char *service)
{
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 1000;
    if (!sock)
        return NULL;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (s_curve_apply(sock) != 0) {
        zmq_close(sock);
        return NULL;
    }
    if (zmq_connect(sock, endpoint) == -1) {
        fprintf(stderr, "mdp_worker: unable to connect to '%s': %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    s_send_cmd(sock, MDPW_READY, service);
    return sock;
}

static int s_frame_is(zmq_msg_t *frame, const char *text, size_t len)
{
    return zmq_msg_size(frame) == len && memcmp(zmq_msg_data(frame), text, len) == 0;
}

int main(int argc, char **argv)
{
    const char *pos[2];
    int npos = 0;
    const char *name = "worker";
    long delay = 0, max = 0, heartbeat = 1000;
    for (int i = 1; i < argc; i++) {
        long *opt = NULL;
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--curve") == 0 && i + 1 < argc) {
            s_curve = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--delay-ms") == 0)
            opt = &delay;
        else if (strcmp(argv[i], "--max") == 0)
            opt = &max;
        else if (strcmp(argv[i], "--heartbeat") == 0)
            opt = &heartbeat;
        if (opt) {
            char *end;
            if (i + 1 >= argc || (*opt = strtol(argv[i + 1], &end, 10), *end != '\0') || *opt < 0) {
                fprintf(stderr, "mdp_worker: option '%s' needs a number\n", argv[i]);
                return 1;
            }
            i++;
        } else if (npos < 2 && argv[i][0] != '-')
            pos[npos++] = argv[i];
        else {
            npos = 3;
            break;
        }
    }
    if (npos != 2 || heartbeat <= 0) {
        fprintf(stderr, "usage: mdp_worker ENDPOINT SERVICE [--name NAME] [--delay-ms N] "
                        "[--max N] [--heartbeat MS] [--curve SERVER,PUBLIC,SECRET]\n");
        return 1;
    }
    const char *endpoint = pos[0], *service = pos[1];
    void *ctx = zmq_ctx_new();
    void *sock = s_connect(ctx, endpoint, service);
    if (!sock)
        return 1;
    int liveness = LIVENESS;
    long heartbeat_at = s_now_ms() + heartbeat, handled = 0;
    zmq_msg_t f[MAX_FRAMES];
    while (max == 0 || handled < max) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, heartbeat) == -1)
            break;
        if (item.revents & ZMQ_POLLIN) {
            int n = 0, more = 1;
            while (more) {
                zmq_msg_t scratch;
                zmq_msg_t *m = n < MAX_FRAMES ? &f[n] : &scratch;
                zmq_msg_init(m);
                if (zmq_msg_recv(m, sock, 0) == -1) {
                    zmq_msg_close(m);
                    break;
                }
                more = zmq_msg_more(m);
                if (m == &scratch)
                    zmq_msg_close(m);
                else
                    n++;
            }
            liveness = LIVENESS;
            /* [""][MDPW01][command]... */
            if (n >= 3 && zmq_msg_size(&f[0]) == 0 &&
                s_frame_is(&f[1], MDPW_WORKER, strlen(MDPW_WORKER))) {
                if (s_frame_is(&f[2], MDPW_REQUEST, 1) && n >= 5) {
                    /* [client][""][body...] */
                    const char *first = n > 5 ? (const char *)zmq_msg_data(&f[5]) : "";
                    int first_len = n > 5 ? (int)zmq_msg_size(&f[5]) : 0;
                    printf("got %.*s\n", first_len, first);
                    fflush(stdout);
                    if (delay > 0)
                        s_sleep_ms(delay);
                    zmq_send(sock, "", 0, ZMQ_SNDMORE);
                    zmq_send(sock, MDPW_WORKER, strlen(MDPW_WORKER), ZMQ_SNDMORE);
                    zmq_send(sock, MDPW_REPLY, 1, ZMQ_SNDMORE);
                    zmq_send(sock, zmq_msg_data(&f[3]), zmq_msg_size(&f[3]), ZMQ_SNDMORE);
                    zmq_send(sock, "", 0, n > 5 ? ZMQ_SNDMORE : 0);
                    for (int i = 5; i < n; i++) {
                        size_t len = strlen(name) + 1 + zmq_msg_size(&f[i]);
                        char *reply = malloc(len);
                        if (!reply)
                            return 1;
                        memcpy(reply, name, strlen(name));
                        reply[strlen(name)] = ':';
                        memcpy(reply + strlen(name) + 1, zmq_msg_data(&f[i]), zmq_msg_size(&f[i]));
                        zmq_send(sock, reply, len, i + 1 < n ? ZMQ_SNDMORE : 0);
                        free(reply);
                    }
                    handled++;
                    heartbeat_at = s_now_ms() + heartbeat;
                } else if (s_frame_is(&f[2], MDPW_DISCONNECT, 1)) {
                    fprintf(stderr, "mdp_worker: broker sent DISCONNECT, reconnecting\n");
                    zmq_close(sock);
                    sock = s_connect(ctx, endpoint, service);
                    if (!sock)
                        return 1;
                } else if (!s_frame_is(&f[2], MDPW_HEARTBEAT, 1))
                    fprintf(stderr, "mdp_worker: invalid command from the broker\n");
            } else
                fprintf(stderr, "mdp_worker: invalid message from the broker\n");
            for (int i = 0; i < n; i++)
                zmq_msg_close(&f[i]);
        } else if (--liveness == 0) {
            fprintf(stderr, "mdp_worker: broker silent, reconnecting\n");
            zmq_close(sock);
            s_sleep_ms(250);
            sock = s_connect(ctx, endpoint, service);
            if (!sock)
                return 1;
            liveness = LIVENESS;
        }
        if (s_now_ms() >= heartbeat_at) {
            s_send_cmd(sock, MDPW_HEARTBEAT, NULL);
            heartbeat_at = s_now_ms() + heartbeat;
        }
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}
