/*  kz_pub.c - publish test events through lib/kz_bus (tests, benchmarks)

    kz_pub TOPIC [-c FILE] [--count N] [--start N] [--size BYTES]
           [--rate PER_SECOND] [--type TYPE] [-f KEY=VALUE]... [-i KEY=INT]...
           [--ids FILE] [--keep-going]

    Publishes COUNT (default 1; 0 = until SIGTERM/SIGINT) events on TOPIC.
    With the default type test.event each body is {seq: START + i, pad}
    where pad fills the encoded envelope up to --size bytes; other types
    get the -f (string) and -i (integer) fields as their body. Prints
    "sent N" at the end. Exit 0, 1 on a bus error, 2 on a usage error.

    --ids FILE     append "ID SEQ" of every event handed over to the bus,
                   one a line, after a first line "# handed-over: HOW"
                   (HOW = flush: kz_bus_publish and then kz_bus_flush
                   returned, every 64 events; the chaos suite,
                   tests/chaos, compares these with the events table).
    --keep-going   a publish that fails (the broker is away long enough to
                   fill the socket) is tried again every 100 ms with the
                   same message instead of ending the run (tests/chaos:
                   the broker is killed under it)
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

#define S_MAX_FIELDS 16

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int s_usage(void)
{
    fprintf(stderr, "usage: kz_pub TOPIC [-c FILE] [--count N] [--start N] [--size BYTES] "
                    "[--rate N] [--type TYPE] [-f KEY=VALUE]... [-i KEY=INT]... "
                    "[--ids FILE] [--keep-going]\n");
    return 2;
}

/* The ids published since the last hand-over */
typedef struct {
    FILE *file;
    char (*ids)[32];
    long long *seqs;
    size_t n, cap;
} s_ids_t;

/* Hand the events published since the last call over (kz_bus_flush:
   the broker confirmed them durable) and write their ids. When the
   broker does not confirm within TIMEOUT_MS (it is away) nothing is
   written: the ids wait for the next handover, the events stay in the
   bus's outbox. The ids file's first line says "flush": tests/chaos
   counts every id written here and missing from the events table as
   lost. 0, or -1 when the file cannot be written */
#define S_HANDED_OVER "flush"
static int s_handover(kz_bus_t *bus, s_ids_t *ids, int timeout_ms)
{
    if (!ids->file || ids->n == 0)
        return 0;
    if (kz_bus_flush(bus, timeout_ms) != 0)
        return 0;
    for (size_t i = 0; i < ids->n; i++)
        fprintf(ids->file, "%s %lld\n", ids->ids[i], ids->seqs[i]);
    ids->n = 0;
    return fflush(ids->file) == 0 ? 0 : -1;
}

static int s_ids_add(s_ids_t *ids, const char *id, long long seq)
{
    if (!ids->file)
        return 0;
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        char(*nid)[32] = realloc(ids->ids, cap * sizeof *nid);
        if (!nid)
            return -1;
        ids->ids = nid;
        long long *nseq = realloc(ids->seqs, cap * sizeof *nseq);
        if (!nseq)
            return -1;
        ids->seqs = nseq;
        ids->cap = cap;
    }
    snprintf(ids->ids[ids->n], sizeof ids->ids[ids->n], "%s", id);
    ids->seqs[ids->n++] = seq;
    return 0;
}

static bool s_number(const char *text, long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && *out >= 0;
}

/* Build one message. PAD_LEN < 0: no pad field */
static kz_msg_t *s_build(const char *type, long long seq, long pad_len, char **fields, int nfields,
                         const char *agent_id)
{
    kz_msg_t *msg = kz_msg_new(type);
    if (!msg)
        return NULL;
    kz_val_t *b = kz_msg_body(msg);
    int rc = kz_msg_set_src(msg, agent_id);
    if (strcmp(type, "test.event") == 0) {
        rc |= kz_map_put_int(msg, b, "seq", seq);
        if (pad_len >= 0) {
            char *pad = malloc((size_t)pad_len + 1);
            if (!pad) {
                kz_msg_destroy(&msg);
                return NULL;
            }
            memset(pad, 'x', (size_t)pad_len);
            pad[pad_len] = '\0';
            rc |= kz_map_put_str(msg, b, "pad", pad);
            free(pad);
        }
    }
    for (int i = 0; i < nfields; i++) {
        /* "s:key=value" or "i:key=123" */
        char *eq = strchr(fields[i] + 2, '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - fields[i] - 2), fields[i] + 2);
        if (fields[i][0] == 'i')
            rc |= kz_map_put_int(msg, b, key, strtoll(eq + 1, NULL, 10));
        else
            rc |= kz_map_put_str(msg, b, key, eq + 1);
    }
    if (rc != 0)
        kz_msg_destroy(&msg);
    return msg;
}

static int s_encode(kz_msg_t **msg_p, uint8_t **buf, size_t *len, char *id, size_t idlen)
{
    if (id)
        snprintf(id, idlen, "%s", kz_msg_id(*msg_p));
    kz_msg_err_t err;
    int rc = kz_msg_encode(*msg_p, buf, len, &err);
    if (rc != 0)
        fprintf(stderr, "kz_pub: unable to encode: %s\n", err.text);
    kz_msg_destroy(msg_p);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"count", required_argument, NULL, 'n'}, {"start", required_argument, NULL, 's'},
        {"size", required_argument, NULL, 'z'},  {"rate", required_argument, NULL, 'r'},
        {"type", required_argument, NULL, 't'},  {"ids", required_argument, NULL, 'I'},
        {"keep-going", no_argument, NULL, 'k'},  {NULL, 0, NULL, 0},
    };
    const char *ids_path = NULL;
    bool keep_going = false;
    const char *config = NULL, *type = "test.event";
    long long count = 1, start = 0, size = 0, rate = 0;
    char *fields[S_MAX_FIELDS];
    char field_buf[S_MAX_FIELDS][512];
    int nfields = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:f:i:", opts, NULL)) != -1) {
        long long *num = c == 'n' ? &count : c == 's' ? &start : c == 'z' ? &size : &rate;
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 't':
            type = optarg;
            break;
        case 'I':
            ids_path = optarg;
            break;
        case 'k':
            keep_going = true;
            break;
        case 'n':
        case 's':
        case 'z':
        case 'r':
            if (!s_number(optarg, num))
                return s_usage();
            break;
        case 'f':
        case 'i':
            if (nfields == S_MAX_FIELDS || !strchr(optarg, '=') || optarg[0] == '=')
                return s_usage();
            snprintf(field_buf[nfields], sizeof field_buf[nfields], "%c:%s", c == 'i' ? 'i' : 's',
                     optarg);
            fields[nfields] = field_buf[nfields];
            nfields++;
            break;
        default:
            return s_usage();
        }
    }
    if (optind + 1 != argc)
        return s_usage();
    const char *topic = argv[optind];

    kz_tool_signals(s_on_signal);

    s_ids_t ids = {0};
    if (ids_path) {
        ids.file = fopen(ids_path, "a");
        if (!ids.file) {
            fprintf(stderr, "kz_pub: %s: %s\n", ids_path, strerror(errno));
            return 1;
        }
        fprintf(ids.file, "# handed-over: " S_HANDED_OVER "\n");
    }

    char err[512];
    kz_config_t *cfg = kz_config_open(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        if (ids.file)
            fclose(ids.file);
        return 1;
    }
    kz_bus_t *bus = kz_tool_bus("kz_pub", cfg);
    int rc = 1;
    long long sent = 0;
    if (!bus)
        goto done;
    if (kz_bus_wait_publisher(bus, 30000) != 0) {
        fprintf(stderr, "kz_pub: no broker at '%s'\n", cfg->bus.connect.pub);
        goto done;
    }
    /* pad length: measure the envelope without pad first */
    long pad_len = -1;
    if (size > 0 && strcmp(type, "test.event") == 0) {
        kz_msg_t *probe = s_build(type, start, 0, fields, nfields, kz_bus_agent_id(bus));
        uint8_t *buf = NULL;
        size_t len = 0;
        if (!probe || s_encode(&probe, &buf, &len, NULL, 0) != 0)
            goto done;
        free(buf);
        pad_len = size > (long long)len ? (long)(size - (long long)len) : 0;
        /* longer strings need a longer msgpack header */
        pad_len -= pad_len > 255 ? (pad_len > 65535 ? 4 : 2) : pad_len > 31 ? 1 : 0;
        if (pad_len < 0)
            pad_len = 0;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long long i = 0; (count == 0 || i < count) && !s_stop; i++) {
        kz_msg_t *msg = s_build(type, start + i, pad_len, fields, nfields, kz_bus_agent_id(bus));
        uint8_t *buf = NULL;
        size_t len = 0;
        char id[32];
        if (!msg || s_encode(&msg, &buf, &len, id, sizeof id) != 0)
            goto done;
        int prc = kz_bus_publish_raw(bus, topic, buf, len);
        while (prc != 0 && keep_going && !s_stop) {
            struct timespec pause = {0, 100000000L};
            nanosleep(&pause, NULL);
            prc = kz_bus_publish_raw(bus, topic, buf, len);
        }
        free(buf);
        if (prc != 0) {
            if (s_stop)
                break;
            goto done;
        }
        sent++;
        if (s_ids_add(&ids, id, start + i) != 0 ||
            ((sent % 64) == 0 && s_handover(bus, &ids, 2000) != 0)) {
            fprintf(stderr, "kz_pub: unable to record the ids in %s\n", ids_path);
            goto done;
        }
        if (rate > 0) {
            long long due_ns = (i + 1) * 1000000000LL / rate;
            struct timespec due = {t0.tv_sec + (time_t)(due_ns / 1000000000LL),
                                   t0.tv_nsec + (long)(due_ns % 1000000000LL)};
            if (due.tv_nsec >= 1000000000L) {
                due.tv_sec++;
                due.tv_nsec -= 1000000000L;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
        }
    }
    rc = 0;
done:
    if (s_handover(bus, &ids, 10000) != 0)
        rc = 1;
    if (ids.file)
        fclose(ids.file);
    free(ids.ids);
    free(ids.seqs);
    printf("sent %lld\n", sent);
    fflush(stdout);
    kz_bus_destroy(&bus);
    kz_config_destroy(&cfg);
    return rc;
}
