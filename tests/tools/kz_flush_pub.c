/*  kz_flush_pub.c - publish a steady stream of events and hand them over
    with kz_bus_flush (tests of durability across broker crashes)

    kz_flush_pub -c FILE [--rate PER_SECOND] [--every N] [--count N]
                 [--timeout MS] [--start SEQ]

    Publishes test.event {seq} (from SEQ, default 0) at RATE (default 500) per second, calling
    kz_bus_flush (timeout MS, default 2000) after every N (default 50)
    events; COUNT (default 0 = until SIGTERM/SIGINT) events in all. After
    each flush that returned 0 it prints "confirmed ID" for every event
    published since the last such flush: those are handed over and must
    all reach the recorder. A failed flush keeps them pending (they are
    printed after a later flush that succeeds). At the end it flushes
    once more and prints "published N confirmed M". Exit 0, 1 on a bus
    error, 2 on a usage error.
*/
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kz_bus.h"
#include "kz_config.h"
#include "kz_log.h"
#include "tool.h"

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Print the pending ids as confirmed */
static void s_confirm(char (*ids)[64], long *npending, long *confirmed)
{
    for (long i = 0; i < *npending; i++)
        printf("confirmed %s\n", ids[i]);
    *confirmed += *npending;
    *npending = 0;
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"rate", required_argument, NULL, 'r'},  {"every", required_argument, NULL, 'e'},
        {"count", required_argument, NULL, 'n'}, {"timeout", required_argument, NULL, 't'},
        {"start", required_argument, NULL, 's'}, {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    long rate = 500, every = 50, count = 0, timeout = 2000, first = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'r':
            rate = atol(optarg);
            break;
        case 'e':
            every = atol(optarg);
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 't':
            timeout = atol(optarg);
            break;
        case 's':
            first = atol(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!config || rate <= 0 || every <= 0 || timeout <= 0 || count < 0) {
        fprintf(stderr, "usage: kz_flush_pub -c FILE [--rate N] [--every N] [--count N] "
                        "[--timeout MS] [--start SEQ]\n");
        return 2;
    }
    char err[512];
    kz_config_t *cfg = kz_config_load(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "kz_flush_pub: %s\n", err);
        return 2;
    }
    kz_tool_signals(s_on_signal);
    kz_bus_t *bus = kz_tool_bus("kz_flush_pub", cfg);
    kz_config_destroy(&cfg);
    if (!bus)
        return 1;
    /* ids published and not yet confirmed: bounded by what one flush
       covers plus what failed flushes left (grown as needed) */
    long cap = 4096, npending = 0, published = 0, confirmed = 0;
    char(*ids)[64] = malloc((size_t)cap * sizeof(*ids));
    if (!ids)
        return 1;
    int64_t start = s_now_ms();
    while (!s_stop && (count == 0 || published < count)) {
        int64_t due = start + published * 1000 / rate;
        int64_t now = s_now_ms();
        if (due > now) {
            struct timespec ts = {0, (long)(due - now) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        kz_msg_t *msg = kz_msg_new("test.event");
        if (!msg || kz_map_put_int(msg, kz_msg_body(msg), "seq", first + published) != 0) {
            kz_msg_destroy(&msg);
            return 1;
        }
        if (npending == cap) {
            cap *= 2;
            char(*more)[64] = realloc(ids, (size_t)cap * sizeof(*ids));
            if (!more)
                return 1;
            ids = more;
        }
        snprintf(ids[npending], sizeof ids[npending], "%s", kz_msg_id(msg));
        if (kz_bus_publish(bus, &msg) != 0) {
            fprintf(stderr, "kz_flush_pub: publish failed\n");
            continue; /* not handed over: not counted */
        }
        npending++;
        published++;
        if (published % every == 0) {
            if (kz_bus_flush(bus, (int)timeout) == 0)
                s_confirm(ids, &npending, &confirmed);
            else
                fprintf(stderr, "kz_flush_pub: flush failed (%zu unconfirmed)\n",
                        kz_bus_unconfirmed(bus));
        }
    }
    for (int i = 0; i < 10 && npending > 0; i++)
        if (kz_bus_flush(bus, (int)timeout) == 0)
            s_confirm(ids, &npending, &confirmed);
    printf("published %ld confirmed %ld\n", published, confirmed);
    fflush(stdout);
    free(ids);
    kz_bus_destroy(&bus);
    return 0;
}
