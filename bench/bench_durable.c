/*  bench_durable.c - events reaching the recorder's durable group against
    the same events through a plain (not durable) group and the bare hop

    Each party in its own process, 300-byte envelopes:
      durable:  raw PUB -> kaizen-broker -> one member of "kaizen.recorder"
                (prefix "": the default durable group, every event appended
                to STATE/broker/log, fsynced on the broker's tick, the ACKs
                logged too), kz_bus_recv and kz_bus_ack of each
      group:    the same through a broker with broker.durable: false
                (group "kaizen.recorder" is then a plain group)
      bare hop: raw PUB -> zmq_proxy (XSUB/XPUB) -> raw SUB
    BENCH_DURABLE_ROUNDS (5) interleaved rounds of (bare hop, group,
    durable); each round gives group/bare and durable/bare, and the
    medians are reported:
      bench durable          durable vs bare hop (median of the rounds)
      bench durable_plain    group vs bare hop (median of the rounds)
      bench durable_vs_plain durable/bare over group/bare: the median of
                             the rounds' quotients, what durability
                             costs (goal >= 0.9, docs/bench.md)
*/
#include "bench_common.h"
#include "bench_member.h"

#define BENCH_DURABLE_ROUNDS 5

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int s_durable_bench(void)
{
    long count = s_scaled(200000);
    double bare[BENCH_DURABLE_ROUNDS], plain[BENCH_DURABLE_ROUNDS], durable[BENCH_DURABLE_ROUNDS];
    double rp[BENCH_DURABLE_ROUNDS], rd[BENCH_DURABLE_ROUNDS], rdp[BENCH_DURABLE_ROUNDS];
    long lost = 0;
    int index = 0;
    setenv("BENCH_GROUP_NAME", "kaizen.recorder", 1);
    setenv("BENCH_GROUP_PREFIX", "", 1);
    fprintf(stderr, "durable: %ld messages of %d bytes per sample, %d rounds\n", count,
            BENCH_MSG_SIZE, BENCH_DURABLE_ROUNDS);
    for (int i = 0; i < BENCH_DURABLE_ROUNDS; i++) {
        if (s_events_sample(BENCH_VIA_PROXY, count, index++, &bare[i], &lost) != 0)
            return 1;
        setenv("BENCH_BROKER_EXTRA", "  durable: false\n", 1);
        if (s_events_sample(BENCH_VIA_GROUP, count, index++, &plain[i], &lost) != 0)
            return 1;
        setenv("BENCH_BROKER_EXTRA", "", 1);
        if (s_events_sample(BENCH_VIA_GROUP, count, index++, &durable[i], &lost) != 0)
            return 1;
        rp[i] = plain[i] / bare[i];
        rd[i] = durable[i] / bare[i];
        rdp[i] = rd[i] / rp[i];
        fprintf(stderr, "round %d: plain/bare %.3f durable/bare %.3f durable/plain %.3f\n", i,
                rp[i], rd[i], rd[i] / rp[i]);
    }
    double mb = s_median(bare, BENCH_DURABLE_ROUNDS);
    double mp = s_median(plain, BENCH_DURABLE_ROUNDS);
    double md = s_median(durable, BENCH_DURABLE_ROUNDS);
    double mrp = s_median(rp, BENCH_DURABLE_ROUNDS), mrd = s_median(rd, BENCH_DURABLE_ROUNDS);
    double mrdp = s_median(rdp, BENCH_DURABLE_ROUNDS);
    printf("bench durable %.0f msg/s baseline %.0f ratio %.2f\n", md, mb, mrd);
    printf("bench durable_plain %.0f msg/s baseline %.0f ratio %.2f\n", mp, mb, mrp);
    /* the median of the rounds' own durable/plain quotients: both ratios
       of a round share its machine load */
    printf("bench durable_vs_plain %.3f ratio baseline %.3f ratio %.3f\n", mrd, mrp, mrdp);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "pub") == 0)
            return s_role_pub(argc, argv);
        if (strcmp(argv[1], "sub") == 0)
            return s_role_sub(argc, argv);
        if (strcmp(argv[1], "proxy") == 0)
            return s_role_proxy(argc, argv);
        if (strcmp(argv[1], "member") == 0)
            return s_role_member(argc, argv);
        fprintf(stderr, "usage: bench_durable   (runs the benchmark; BENCH_SCALE scales it)\n");
        return 2;
    }
    if (s_harness_init() != 0)
        return 1;
    return s_durable_bench();
}
