/*  bench_majordomo.c - Majordomo request/reply through kaizen-broker
    against raw ZeroMQ

    One client doing synchronous round trips and one worker, each in its
    own process, both minimal MDP 0.1 peers written with raw libzmq
    (identical frames in both runs), 300-byte bodies:
      bare hop: client DEALER -> relay ROUTER | ROUTER <- worker DEALER
                (the relay learns the worker from READY and forwards
                REQUEST/REPLY, routing replies back by client identity)
      broker:   client DEALER -> kaizen-broker router <- worker DEALER
      direct:   client DEALER -> worker ROUTER (no broker; the worker
                echoes the client frames)
    Three interleaved samples of each; the best of each is reported:
      bench majordomo[_vs_direct]      req/s, broker vs baseline (goal >= 0.8)
      bench majordomo_p50[_vs_direct]  us, broker / baseline (lower is better)
      bench majordomo_p99[_vs_direct]  us, broker / baseline (lower is better)
*/
#include "bench_common.h"
#include "kz_wire.h"

#define BENCH_SERVICE      "bench.echo"
#define BENCH_MAX_FRAMES   8
#define BENCH_HEARTBEAT_MS 1000
#define BENCH_WARM_CALLS   2000

typedef struct {
    zmq_msg_t part[BENCH_MAX_FRAMES];
    int count;
} bench_frames_t;

/* Receive one whole message (extra frames beyond the cap are dropped).
   Returns the number of frames, -1 on error. */
static int s_recv_frames(void *sock, bench_frames_t *frames)
{
    frames->count = 0;
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) < 0) {
            zmq_msg_close(&msg);
            return -1;
        }
        int more = zmq_msg_more(&msg);
        if (frames->count < BENCH_MAX_FRAMES)
            frames->part[frames->count++] = msg;
        else
            zmq_msg_close(&msg);
        if (!more)
            return frames->count;
    }
}

static void s_frames_close(bench_frames_t *frames)
{
    for (int i = 0; i < frames->count; i++)
        zmq_msg_close(&frames->part[i]);
    frames->count = 0;
}

static bool s_frame_is(zmq_msg_t *frame, const char *text)
{
    size_t len = strlen(text);
    return zmq_msg_size(frame) == len && memcmp(zmq_msg_data(frame), text, len) == 0;
}

/* Send N frames given as (data, size) pairs */
static int s_send_parts(void *sock, const void *const *data, const size_t *size, int n)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(sock, data[i], size[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            return -1;
    return 0;
}

/* Send FRAME (copying it), with SNDMORE unless LAST */
static int s_send_frame(void *sock, zmq_msg_t *frame, bool last)
{
    return zmq_send(sock, zmq_msg_data(frame), zmq_msg_size(frame), last ? 0 : ZMQ_SNDMORE) < 0 ? -1
                                                                                                : 0;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* client ENDPOINT COUNT RESULT_FD
   A Majordomo client on a DEALER: BENCH_WARM_CALLS unmeasured calls,
   then COUNT measured ones; writes "COUNT ELAPSED_NS P50_NS P99_NS". */
static int s_role_client(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    long count = atol(argv[3]);
    int result_fd = atoi(argv[4]);
    bench_template_t tpl;
    if (s_template_make(&tpl) != 0)
        return 1;
    int64_t *lat = malloc(sizeof *lat * (size_t)count);
    if (!lat)
        return 1;
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    s_sockopt_int(dealer, ZMQ_LINGER, 0);
    int rc = 1;
    if (s_attach(dealer, "connect", argv[2]) != 0)
        goto done;
    const void *data[] = {"", KZ_MDPC, BENCH_SERVICE, tpl.data};
    const size_t size[] = {0, strlen(KZ_MDPC), strlen(BENCH_SERVICE), BENCH_MSG_SIZE};
    bench_frames_t reply;
    int64_t start = 0;
    for (long i = -BENCH_WARM_CALLS; i < count; i++) {
        if (i == 0)
            start = s_now_ns();
        int64_t sent = s_now_ns();
        if (s_send_parts(dealer, data, size, 4) != 0)
            goto done;
        zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
        int timeout = i == -BENCH_WARM_CALLS ? BENCH_READY_MS : 10000;
        if (zmq_poll(&item, 1, timeout) <= 0) {
            fprintf(stderr, "bench client: no reply within %d ms (call %ld)\n", timeout, i);
            goto done;
        }
        if (s_recv_frames(dealer, &reply) != 4 || !s_frame_is(&reply.part[1], KZ_MDPC) ||
            zmq_msg_size(&reply.part[3]) != BENCH_MSG_SIZE) {
            fprintf(stderr, "bench client: malformed reply (%d frames)\n", reply.count);
            s_frames_close(&reply);
            goto done;
        }
        s_frames_close(&reply);
        if (i >= 0)
            lat[i] = s_now_ns() - sent;
    }
    int64_t elapsed = s_now_ns() - start;
    qsort(lat, (size_t)count, sizeof *lat, s_cmp_i64);
    char line[160];
    snprintf(line, sizeof line, "%ld %" PRId64 " %" PRId64 " %" PRId64 "\n", count, elapsed,
             lat[count / 2], lat[(count * 99) / 100]);
    s_write_all(result_fd, line);
    rc = 0;
done:
    free(lat);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    return rc;
}

/* worker ENDPOINT
   A Majordomo worker on a DEALER: READY, then echo every REQUEST body as
   a REPLY, heartbeating every BENCH_HEARTBEAT_MS. Runs until killed. */
static int s_role_worker(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    s_sockopt_int(dealer, ZMQ_LINGER, 0);
    if (s_attach(dealer, "connect", argv[2]) != 0)
        return 1;
    const uint8_t ready = KZ_MDPW_READY, beat = KZ_MDPW_HEARTBEAT, reply = KZ_MDPW_REPLY;
    const void *rdata[] = {"", KZ_MDPW, &ready, BENCH_SERVICE};
    const size_t rsize[] = {0, strlen(KZ_MDPW), 1, strlen(BENCH_SERVICE)};
    if (s_send_parts(dealer, rdata, rsize, 4) != 0)
        return 1;
    const void *hdata[] = {"", KZ_MDPW, &beat};
    const size_t hsize[] = {0, strlen(KZ_MDPW), 1};
    int64_t next_beat = s_now_ns() + (int64_t)BENCH_HEARTBEAT_MS * 1000000;
    bench_frames_t req;
    for (;;) {
        int64_t left = (next_beat - s_now_ns()) / 1000000;
        zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, left > 0 ? (long)left : 0);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0) {
            if (s_recv_frames(dealer, &req) < 0)
                break;
            /* ["", MDPW01, REQUEST, client, "", body] */
            if (req.count == 6 && s_frame_is(&req.part[1], KZ_MDPW) &&
                zmq_msg_size(&req.part[2]) == 1 &&
                *(const uint8_t *)zmq_msg_data(&req.part[2]) == KZ_MDPW_REQUEST) {
                const void *d[] = {"", KZ_MDPW, &reply};
                const size_t s[] = {0, strlen(KZ_MDPW), 1};
                for (int i = 0; i < 3; i++)
                    zmq_send(dealer, d[i], s[i], ZMQ_SNDMORE);
                s_send_frame(dealer, &req.part[3], false);
                s_send_frame(dealer, &req.part[4], false);
                s_send_frame(dealer, &req.part[5], true);
            } else if (req.count >= 3 && zmq_msg_size(&req.part[2]) == 1 &&
                       *(const uint8_t *)zmq_msg_data(&req.part[2]) == KZ_MDPW_DISCONNECT) {
                s_send_parts(dealer, rdata, rsize, 4); /* the broker forgot us */
            }
            s_frames_close(&req);
        }
        if (s_now_ns() >= next_beat) {
            s_send_parts(dealer, hdata, hsize, 3);
            next_beat = s_now_ns() + (int64_t)BENCH_HEARTBEAT_MS * 1000000;
        }
    }
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    return 0;
}

/* relay FRONT BACK
   The bare hop for requests: ROUTER frontend for clients, ROUTER backend
   for one worker. Client [id, "", MDPC01, service, body] goes to the
   worker as [wid, "", MDPW01, REQUEST, id, "", body]; the worker's
   [wid, "", MDPW01, REPLY, id, "", body] goes back as
   [id, "", MDPC01, service, body]. Requests that arrive before the
   worker's READY wait in a small queue. */
static int s_role_relay(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    void *ctx = zmq_ctx_new();
    void *front = zmq_socket(ctx, ZMQ_ROUTER);
    void *back = zmq_socket(ctx, ZMQ_ROUTER);
    s_sockopt_int(front, ZMQ_SNDHWM, BENCH_HWM);
    s_sockopt_int(back, ZMQ_SNDHWM, BENCH_HWM);
    if (s_attach(front, "bind", argv[2]) != 0 || s_attach(back, "bind", argv[3]) != 0)
        return 1;
    uint8_t wid[256], service[KZ_TOPIC_MAX + 1];
    size_t wid_len = 0, service_len = 0;
    bench_frames_t queue[16];
    int queued = 0;
    const uint8_t request = KZ_MDPW_REQUEST;
    bench_frames_t msg;
    for (;;) {
        zmq_pollitem_t items[] = {{back, 0, ZMQ_POLLIN, 0}, {front, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            if (s_recv_frames(back, &msg) < 0)
                break;
            /* [wid, "", MDPW01, cmd, ...] */
            if (msg.count >= 4 && zmq_msg_size(&msg.part[3]) == 1) {
                uint8_t cmd = *(const uint8_t *)zmq_msg_data(&msg.part[3]);
                if (cmd == KZ_MDPW_READY && msg.count == 5 &&
                    zmq_msg_size(&msg.part[0]) <= sizeof wid &&
                    zmq_msg_size(&msg.part[4]) < sizeof service) {
                    wid_len = zmq_msg_size(&msg.part[0]);
                    memcpy(wid, zmq_msg_data(&msg.part[0]), wid_len);
                    service_len = zmq_msg_size(&msg.part[4]);
                    memcpy(service, zmq_msg_data(&msg.part[4]), service_len);
                } else if (cmd == KZ_MDPW_REPLY && msg.count == 7) {
                    s_send_frame(front, &msg.part[4], false);
                    zmq_send(front, "", 0, ZMQ_SNDMORE);
                    zmq_send(front, KZ_MDPC, strlen(KZ_MDPC), ZMQ_SNDMORE);
                    zmq_send(front, service, service_len, ZMQ_SNDMORE);
                    s_send_frame(front, &msg.part[6], true);
                }
            }
            s_frames_close(&msg);
        }
        if (items[1].revents & ZMQ_POLLIN) {
            if (queued < 16 && s_recv_frames(front, &queue[queued]) == 5)
                queued++;
            else
                s_frames_close(&queue[queued < 16 ? queued : 15]);
        }
        while (wid_len > 0 && queued > 0) {
            bench_frames_t *req = &queue[0];
            zmq_send(back, wid, wid_len, ZMQ_SNDMORE);
            zmq_send(back, "", 0, ZMQ_SNDMORE);
            zmq_send(back, KZ_MDPW, strlen(KZ_MDPW), ZMQ_SNDMORE);
            zmq_send(back, &request, 1, ZMQ_SNDMORE);
            s_send_frame(back, &req->part[0], false);
            zmq_send(back, "", 0, ZMQ_SNDMORE);
            s_send_frame(back, &req->part[4], true);
            s_frames_close(req);
            memmove(&queue[0], &queue[1], sizeof queue[0] * (size_t)(queued - 1));
            queued--;
        }
    }
    return 0;
}

/* dworker ENDPOINT - no broker: a ROUTER that echoes each client's
   [id, "", MDPC01, service, body] back unchanged */
static int s_role_dworker(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    if (s_attach(router, "bind", argv[2]) != 0)
        return 1;
    bench_frames_t msg;
    while (s_recv_frames(router, &msg) >= 0) {
        if (msg.count == 5 && s_frame_is(&msg.part[2], KZ_MDPC))
            for (int i = 0; i < 5; i++)
                s_send_frame(router, &msg.part[i], i == 4);
        s_frames_close(&msg);
    }
    return 0;
}

typedef struct {
    double rate, p50_us, p99_us;
} bench_rr_t;

/* One sample of COUNT round trips through VIA (PROXY = the relay) */
static int s_rr_sample(bench_via_t via, long count, int index, bench_rr_t *out)
{
    char dir[384], front[512], back[512], config[512], count_s[32], result_s[16];
    int result[2] = {-1, -1};
    int rc = -1;
    if (s_sample_dir(index, dir, sizeof dir) != 0)
        return -1;
    snprintf(front, sizeof front, "ipc://%s/front", dir);
    snprintf(back, sizeof back, "ipc://%s/back", dir);
    snprintf(count_s, sizeof count_s, "%ld", count);
    if (via == BENCH_VIA_PROXY) {
        char *relay[] = {s_self, (char *)"relay", front, back, NULL};
        char *worker[] = {s_self, (char *)"worker", back, NULL};
        if (s_spawn(relay, NULL, NULL) < 0 || s_spawn(worker, NULL, NULL) < 0)
            goto done;
    } else if (via == BENCH_VIA_BROKER) {
        if (s_write_config(dir, config, sizeof config) != 0 || s_start_broker(dir, config) < 0)
            goto done;
        snprintf(front, sizeof front, "ipc://%s/router", dir);
        char *worker[] = {s_self, (char *)"worker", front, NULL};
        if (s_spawn(worker, NULL, NULL) < 0)
            goto done;
    } else {
        char *worker[] = {s_self, (char *)"dworker", front, NULL};
        if (s_spawn(worker, NULL, NULL) < 0)
            goto done;
    }
    if (s_pipe(result) != 0)
        goto done;
    snprintf(result_s, sizeof result_s, "%d", result[1]);
    int keep[] = {result[1], -1};
    char *client[] = {s_self, (char *)"client", front, count_s, result_s, NULL};
    if (s_spawn(client, keep, NULL) < 0)
        goto done;
    close(result[1]);
    result[1] = -1;
    char line[256];
    if (s_read_line(result[0], line, sizeof line, 60000 + (int)(count / 2)) != 0) {
        fprintf(stderr, "bench: no result from the client (%s)\n", s_via_names[via]);
        if (via == BENCH_VIA_BROKER) {
            char log[512];
            snprintf(log, sizeof log, "%s/broker.log", dir);
            s_dump_log(log);
        }
        goto done;
    }
    long done_count = 0;
    int64_t elapsed = 0, p50 = 0, p99 = 0;
    if (sscanf(line, "%ld %" SCNd64 " %" SCNd64 " %" SCNd64, &done_count, &elapsed, &p50, &p99) !=
            4 ||
        elapsed <= 0) {
        fprintf(stderr, "bench: bad result from the client: %s\n", line);
        goto done;
    }
    out->rate = (double)done_count * 1e9 / (double)elapsed;
    out->p50_us = (double)p50 / 1000.0;
    out->p99_us = (double)p99 / 1000.0;
    fprintf(stderr, "sample %s %d: %.0f req/s, p50 %.1f us, p99 %.1f us (%ld calls)\n",
            via == BENCH_VIA_PROXY ? "relay" : s_via_names[via], index, out->rate, out->p50_us,
            out->p99_us, done_count);
    rc = 0;
done:
    s_kill_all();
    for (int i = 0; i < 2; i++)
        if (result[i] >= 0)
            close(result[i]);
    return rc;
}

static int s_run(void)
{
    long count = s_scaled(20000);
    double rate[3][BENCH_SAMPLES], p50[3][BENCH_SAMPLES], p99[3][BENCH_SAMPLES];
    const bench_via_t order[3] = {BENCH_VIA_PROXY, BENCH_VIA_BROKER, BENCH_VIA_DIRECT};
    int index = 0;
    fprintf(stderr, "majordomo: %ld synchronous calls of %d bytes per sample\n", count,
            BENCH_MSG_SIZE);
    for (int i = 0; i < BENCH_SAMPLES; i++) {
        for (int v = 0; v < 3; v++) {
            bench_rr_t rr;
            if (s_rr_sample(order[v], count, index++, &rr) != 0)
                return 1;
            rate[v][i] = rr.rate;
            p50[v][i] = rr.p50_us;
            p99[v][i] = rr.p99_us;
        }
    }
    double r = s_best(rate[1], BENCH_SAMPLES, false);
    double l50 = s_best(p50[1], BENCH_SAMPLES, true);
    double l99 = s_best(p99[1], BENCH_SAMPLES, true);
    s_report("majordomo", "req/s", r, s_best(rate[0], BENCH_SAMPLES, false), 0);
    s_report("majordomo_p50", "us", l50, s_best(p50[0], BENCH_SAMPLES, true), 1);
    s_report("majordomo_p99", "us", l99, s_best(p99[0], BENCH_SAMPLES, true), 1);
    s_report("majordomo_vs_direct", "req/s", r, s_best(rate[2], BENCH_SAMPLES, false), 0);
    s_report("majordomo_p50_vs_direct", "us", l50, s_best(p50[2], BENCH_SAMPLES, true), 1);
    s_report("majordomo_p99_vs_direct", "us", l99, s_best(p99[2], BENCH_SAMPLES, true), 1);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "client") == 0)
            return s_role_client(argc, argv);
        if (strcmp(argv[1], "worker") == 0)
            return s_role_worker(argc, argv);
        if (strcmp(argv[1], "relay") == 0)
            return s_role_relay(argc, argv);
        if (strcmp(argv[1], "dworker") == 0)
            return s_role_dworker(argc, argv);
        fprintf(stderr, "usage: bench_majordomo   (runs the benchmark; BENCH_SCALE scales it)\n");
        return 2;
    }
    if (s_harness_init() != 0)
        return 1;
    return s_run();
}
