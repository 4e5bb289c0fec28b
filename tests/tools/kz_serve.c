/*  kz_serve.c - serve a service through lib/kz_bus (a Majordomo worker)

    kz_serve SERVICE [-c FILE] [--delay-ms MS] [--busy-ms MS [--no-keepalive]]
             [--count N] [--cancellable]

    For each request prints "got ID" (the request envelope's id, flushed),
    waits --delay-ms, works --busy-ms in 100 ms slices calling
    kz_bus_keepalive between them (a long tool run; --no-keepalive leaves
    the calls out, so the broker may give the request to another worker)
    and then prints "done ID", and replies with the request envelope itself
    under a new id, src = this worker and corr = the request's id: an echo of any
    type. With --cancellable it looks between the slices whether the
    request was cancelled (kz_bus_request_cancelled: its client's
    request.cancel, or its deadline); if so it prints "cancelled ID: WHY"
    and answers with an error instead. Exits 0 after --count requests or on
    SIGTERM/SIGINT.
*/
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kz_bus.h"
#include "tool.h"
#include "kz_config.h"
#include "kz_log.h"

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int s_usage(void)
{
    fprintf(stderr, "usage: kz_serve SERVICE [-c FILE] [--delay-ms MS] "
                    "[--busy-ms MS [--no-keepalive]] [--count N] [--cancellable]\n");
    return 2;
}

static void s_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Work MS milliseconds in 100 ms slices, keeping the bus alive between
   them when KEEPALIVE (what an agent does around a long subprocess); with
   CANCELLABLE, stop when REQUEST is cancelled (WHY says why): true then */
static bool s_busy(kz_bus_t *bus, const kz_delivery_t *request, long ms, bool keepalive,
                   bool cancellable, char *why, size_t len)
{
    while (ms > 0 && !s_stop) {
        long slice = ms < 100 ? ms : 100;
        s_sleep_ms(slice);
        ms -= slice;
        if (keepalive && kz_bus_keepalive(bus) != 0)
            fprintf(stderr, "kz_serve: keepalive failed\n");
        if (cancellable && kz_bus_request_cancelled(bus, request, why, len))
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"delay-ms", required_argument, NULL, 'd'}, {"count", required_argument, NULL, 'n'},
        {"busy-ms", required_argument, NULL, 'b'},  {"no-keepalive", no_argument, NULL, 'K'},
        {"cancellable", no_argument, NULL, 'C'},    {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    long delay = 0, count = 0, busy = 0;
    bool keepalive = true, cancellable = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'd':
            delay = atol(optarg);
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 'b':
            busy = atol(optarg);
            break;
        case 'K':
            keepalive = false;
            break;
        case 'C':
            cancellable = true;
            break;
        default:
            return s_usage();
        }
    }
    if (optind + 1 != argc || delay < 0 || count < 0 || busy < 0)
        return s_usage();
    const char *service = argv[optind];

    kz_tool_signals(s_on_signal);

    char err[512];
    kz_config_t *cfg = kz_config_open(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = 1;
    kz_bus_t *bus = kz_tool_bus("kz_serve", cfg);
    if (!bus)
        goto done;
    if (kz_bus_offer(bus, service) != 0)
        goto done;
    fprintf(stderr, "kz_serve: serving '%s'\n", service);
    long served = 0;
    while (!s_stop && (count == 0 || served < count)) {
        kz_delivery_t *d = NULL;
        int r = kz_bus_recv(bus, &d, 1000);
        if (r < 0 && !s_stop) {
            fprintf(stderr, "kz_serve: receive failed\n");
            goto done;
        }
        if (r != 1)
            continue;
        if (d->kind != KZ_DELIVERY_REQUEST) {
            kz_bus_delivery_destroy(&d);
            continue;
        }
        printf("got %s\n", kz_msg_id(d->msg));
        fflush(stdout);
        if (delay > 0)
            s_sleep_ms(delay);
        if (busy > 0) {
            char why[320];
            if (s_busy(bus, d, busy, keepalive, cancellable, why, sizeof why)) {
                printf("cancelled %s: %s\n", kz_msg_id(d->msg), why);
                fflush(stdout);
                kz_msg_t *no = kz_msg_new("error");
                if (no && kz_map_put_str(no, kz_msg_body(no), "code", "cancelled") == 0 &&
                    kz_map_put_str(no, kz_msg_body(no), "message", why) == 0)
                    kz_bus_reply(bus, d, &no);
                kz_msg_destroy(&no);
                kz_bus_delivery_destroy(&d);
                served++;
                continue;
            }
            printf("done %s\n", kz_msg_id(d->msg));
            fflush(stdout);
        }
        /* echo: the request envelope becomes the reply */
        kz_msg_t *reply = d->msg;
        d->msg = NULL;
        char new_id[32];
        kz_ulid(new_id);
        if (kz_msg_set_corr(reply, kz_msg_id(reply)) != 0 || kz_msg_set_id(reply, new_id) != 0 ||
            kz_msg_set_src(reply, kz_bus_agent_id(bus)) != 0) {
            kz_msg_destroy(&reply);
            kz_bus_delivery_destroy(&d);
            goto done;
        }
        kz_msg_set_ts(reply, kz_now_us());
        if (kz_bus_reply(bus, d, &reply) != 0)
            fprintf(stderr, "kz_serve: reply failed\n");
        kz_bus_delivery_destroy(&d);
        served++;
    }
    rc = 0;
done:
    fflush(stdout);
    kz_bus_destroy(&bus);
    kz_config_destroy(&cfg);
    return rc;
}
