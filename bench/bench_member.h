/*  bench_member.h - the queue-group member role of bench_group and
    bench_durable: kz_bus_join, kz_bus_recv, kz_bus_ack of every delivery.
    Joins BENCH_GROUP_NAME (default "bench") for BENCH_GROUP_PREFIX
    (default the bench topic) from the environment. */
#ifndef BENCH_MEMBER_H_INCLUDED
#define BENCH_MEMBER_H_INCLUDED

#include "bench_common.h"
#include "kz_bus.h"
#include "kz_config.h"

#define BENCH_GROUP "bench"

/* member CONFIG COUNT READY_FD RESULT_FD
   A queue-group member through kz_bus. Acknowledges every delivery;
   writes '1' to READY_FD on the first warm-up message and '2' on
   WARM_LAST; counts distinct measured seqs until COUNT or BENCH_IDLE_MS
   of silence; writes "RECEIVED LAST_NS DUPLICATES MALFORMED". */
BENCH_STATIC int s_role_member(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    long count = atol(argv[3]);
    int ready_fd = atoi(argv[4]);
    int result_fd = atoi(argv[5]);
    char err[512];
    kz_config_t *cfg = kz_config_load(argv[2], err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "bench member: %s\n", err);
        return 1;
    }
    char id[64];
    snprintf(id, sizeof id, "bench-member@bench#%d", (int)getpid());
    kz_bus_t *bus = kz_bus_new(&cfg->bus, id, err, sizeof err);
    kz_config_destroy(&cfg);
    if (!bus) {
        fprintf(stderr, "bench member: %s\n", err);
        return 1;
    }
    const char *group = getenv("BENCH_GROUP_NAME"), *prefix = getenv("BENCH_GROUP_PREFIX");
    if (!group || !*group)
        group = BENCH_GROUP;
    if (!prefix)
        prefix = BENCH_TOPIC;
    if (kz_bus_join(bus, group, prefix) != 0) {
        fprintf(stderr, "bench member: unable to join group '%s'\n", group);
        return 1;
    }
    uint8_t *seen = calloc((size_t)count / 8 + 1, 1);
    if (!seen)
        return 1;
    bool ready = false, warm_done = false;
    long received = 0, dups = 0, bad = 0;
    int64_t last = 0, start = s_now_ns();
    while (received < count) {
        kz_delivery_t *d = NULL;
        int rc = kz_bus_recv(bus, &d, warm_done ? BENCH_IDLE_MS : 500);
        if (rc < 0)
            break;
        if (rc == 0) {
            if (received > 0 || warm_done)
                break; /* silence: the rest is lost */
            if (s_now_ns() - start > (int64_t)BENCH_READY_MS * 2 * 1000000) {
                fprintf(stderr, "bench member: no measured message within %d ms\n",
                        BENCH_READY_MS * 2);
                return 1;
            }
            continue;
        }
        int64_t seq = kz_map_int(kz_msg_body_const(d->msg), "seq", -1);
        if (d->kind == KZ_DELIVERY_GROUP)
            kz_bus_ack(bus, d);
        kz_bus_delivery_destroy(&d);
        if (seq < (int64_t)BENCH_SEQ_WARM) {
            bad++;
        } else if (seq >= (int64_t)BENCH_SEQ_MEASURED &&
                   seq < (int64_t)BENCH_SEQ_MEASURED + count) {
            uint64_t i = (uint64_t)seq - BENCH_SEQ_MEASURED;
            if (seen[i / 8] & (1u << (i % 8))) {
                dups++;
            } else {
                seen[i / 8] |= (uint8_t)(1u << (i % 8));
                received++;
                last = s_now_ns();
            }
        } else if (seq >= (int64_t)BENCH_SEQ_MEASURED) {
            bad++;
        } else if (!ready) {
            ready = true;
            s_write_all(ready_fd, "1");
        }
        if (seq == (int64_t)BENCH_SEQ_WARM_LAST && !warm_done) {
            warm_done = true;
            s_write_all(ready_fd, "2");
        }
    }
    char line[128];
    snprintf(line, sizeof line, "%ld %" PRId64 " %ld %ld\n", received, last, dups, bad);
    s_write_all(result_fd, line);
    free(seen);
    kz_bus_destroy(&bus);
    return 0;
}

#endif
