/*  kz_sub.c - receive events or queue-group deliveries through lib/kz_bus

    kz_sub [PREFIX] [-c FILE] [--group NAME --prefix P] [--count N]
           [--ack-delay-ms MS] [--busy-ms MS] [--nack-every N | --nack-all]
           [--out FILE] [--json]

    Subscribes to PREFIX (default: everything), or joins queue group NAME
    for topics starting with P. For each message it writes one line and
    flushes it: "seq N" when the body has an integer seq, else "msg TYPE";
    with --json "TOPIC JSON-ENVELOPE". Group deliveries are acknowledged
    after the line is written (and after --ack-delay-ms, or after working
    --busy-ms in 100 ms slices with kz_bus_keepalive between them, as an
    agent does around a long tool run, then "done N"), so a member killed
    in between has written seqs that the broker hands out again.
    --nack-every N refuses (kz_bus_nack) a group delivery whose seq is a
    multiple of N the first time this process sees that seq, and handles
    it normally when it comes back; --nack-all refuses every delivery,
    every time. A refused delivery writes "nack N" ("nack TYPE" without a
    seq) instead of "seq N", so "seq" lines are the handled (acked) ones.
    Exits 0 after --count messages (refused ones included) or on
    SIGTERM/SIGINT.
*/
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    fprintf(stderr, "usage: kz_sub [PREFIX] [-c FILE] [--group NAME --prefix P] [--count N] "
                    "[--ack-delay-ms MS] [--busy-ms MS] [--nack-every N | --nack-all] "
                    "[--out FILE] [--json]\n");
    return 2;
}

/* Work MS milliseconds in 100 ms slices, keeping the bus alive between them */
static void s_busy(kz_bus_t *bus, long long ms)
{
    while (ms > 0 && !s_stop) {
        long long slice = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
        if (kz_bus_keepalive(bus) != 0)
            fprintf(stderr, "kz_sub: keepalive failed\n");
    }
}

/* Seqs this process has refused once (--nack-every): a growable array
   searched linearly, enough for test sizes */
typedef struct {
    long long *v;
    size_t n, cap;
} s_seqset_t;

static bool s_seqset_has(const s_seqset_t *set, long long seq)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->v[i] == seq)
            return true;
    return false;
}

static int s_seqset_add(s_seqset_t *set, long long seq)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        long long *v = realloc(set->v, cap * sizeof *v);
        if (!v)
            return -1;
        set->v = v;
        set->cap = cap;
    }
    set->v[set->n++] = seq;
    return 0;
}

static bool s_number(const char *text, long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && *out >= 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"group", required_argument, NULL, 'g'},   {"prefix", required_argument, NULL, 'p'},
        {"count", required_argument, NULL, 'n'},   {"ack-delay-ms", required_argument, NULL, 'd'},
        {"busy-ms", required_argument, NULL, 'b'}, {"out", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},          {"nack-every", required_argument, NULL, 'N'},
        {"nack-all", no_argument, NULL, 'A'},      {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *group = NULL, *prefix = NULL, *out_path = NULL;
    long long count = 0, ack_delay = 0, busy = 0, nack_every = 0;
    bool json = false, nack_all = false;
    s_seqset_t nacked = {NULL, 0, 0};
    int c;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'n':
            if (!s_number(optarg, &count))
                return s_usage();
            break;
        case 'd':
            if (!s_number(optarg, &ack_delay))
                return s_usage();
            break;
        case 'b':
            if (!s_number(optarg, &busy))
                return s_usage();
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'N':
            if (!s_number(optarg, &nack_every) || nack_every == 0)
                return s_usage();
            break;
        case 'A':
            nack_all = true;
            break;
        default:
            return s_usage();
        }
    }
    if (optind < argc) {
        if (group || optind + 1 != argc)
            return s_usage();
        prefix = argv[optind];
    }
    if (!prefix)
        prefix = "";
    if ((nack_all || nack_every) && (!group || (nack_all && nack_every)))
        return s_usage();

    kz_tool_signals(s_on_signal);

    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "a"))) {
        fprintf(stderr, "kz_sub: unable to open '%s': %s\n", out_path, strerror(errno));
        return 1;
    }
    char err[512];
    kz_config_t *cfg = kz_config_open(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        if (out != stdout)
            fclose(out);
        return 1;
    }
    int rc = 1;
    kz_bus_t *bus = kz_tool_bus("kz_sub", cfg);
    if (!bus)
        goto done;
    if (group ? kz_bus_join(bus, group, prefix) : kz_bus_subscribe(bus, prefix))
        goto done;
    fprintf(stderr, "kz_sub: listening\n");

    long long got = 0;
    while (!s_stop && (count == 0 || got < count)) {
        kz_delivery_t *d = NULL;
        int r = kz_bus_recv(bus, &d, 1000);
        if (r < 0 && !s_stop) {
            fprintf(stderr, "kz_sub: receive failed\n");
            goto done;
        }
        if (r != 1)
            continue;
        const kz_val_t *seq = kz_map_get(kz_msg_body_const(d->msg), "seq");
        bool has_seq = seq && seq->type == KZ_VAL_INT;
        bool refuse = nack_all || (nack_every && has_seq && seq->u.i % nack_every == 0 &&
                                   !s_seqset_has(&nacked, (long long)seq->u.i));
        if (refuse && d->kind == KZ_DELIVERY_GROUP) {
            if (has_seq)
                fprintf(out, "nack %lld\n", (long long)seq->u.i);
            else
                fprintf(out, "nack %s\n", kz_msg_type(d->msg));
            fflush(out);
            if ((nack_every && s_seqset_add(&nacked, (long long)seq->u.i) != 0) ||
                kz_bus_nack(bus, d) != 0)
                fprintf(stderr, "kz_sub: nack failed\n");
            kz_bus_delivery_destroy(&d);
            got++;
            continue;
        }
        if (json) {
            char *text = kz_msg_to_json(d->msg);
            fprintf(out, "%s %s\n", d->topic, text ? text : "null");
            free(text);
        } else if (has_seq)
            fprintf(out, "seq %lld\n", (long long)seq->u.i);
        else
            fprintf(out, "msg %s\n", kz_msg_type(d->msg));
        fflush(out);
        if (ack_delay > 0) {
            struct timespec ts = {(time_t)(ack_delay / 1000), (long)(ack_delay % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (busy > 0)
            s_busy(bus, busy);
        if (d->kind == KZ_DELIVERY_GROUP && kz_bus_ack(bus, d) != 0)
            fprintf(stderr, "kz_sub: ack failed\n");
        if (busy > 0 && !json && has_seq) {
            fprintf(out, "done %lld\n", (long long)seq->u.i);
            fflush(out);
        }
        kz_bus_delivery_destroy(&d);
        got++;
    }
    rc = 0;
done:
    fprintf(stderr, "kz_sub: dropped %llu, reconnects %llu\n",
            bus ? (unsigned long long)kz_bus_dropped(bus) : 0ULL,
            bus ? (unsigned long long)kz_bus_reconnects(bus) : 0ULL);
    kz_bus_destroy(&bus);
    kz_config_destroy(&cfg);
    free(nacked.v);
    if (out != stdout)
        fclose(out);
    return rc;
}
