/*  bench_events.c - events through kaizen-broker against raw ZeroMQ

    Same raw libzmq publisher and subscriber in every run, each party in
    its own process, 300-byte envelopes:
      bare hop: pub -> zmq_proxy (XSUB/XPUB) -> sub      (the limit)
      broker:   pub -> kaizen-broker (pub/sub endpoints) -> sub
      direct:   pub -> sub                                (no broker)
    Three interleaved samples of each; the best of each is reported:
      bench events           broker vs bare hop   (goal >= 0.8)
      bench events_vs_direct broker vs direct
*/
#include "bench_common.h"

static int s_run(void)
{
    long count = s_scaled(500000);
    double proxy[BENCH_SAMPLES], broker[BENCH_SAMPLES], direct[BENCH_SAMPLES];
    long lost = 0;
    int index = 0;
    fprintf(stderr, "events: %ld messages of %d bytes per sample\n", count, BENCH_MSG_SIZE);
    for (int i = 0; i < BENCH_SAMPLES; i++) {
        if (s_events_sample(BENCH_VIA_PROXY, count, index++, &proxy[i], &lost) != 0 ||
            s_events_sample(BENCH_VIA_BROKER, count, index++, &broker[i], &lost) != 0 ||
            s_events_sample(BENCH_VIA_DIRECT, count, index++, &direct[i], &lost) != 0)
            return 1;
    }
    double best = s_best(broker, BENCH_SAMPLES, false);
    s_report("events", "msg/s", best, s_best(proxy, BENCH_SAMPLES, false), 0);
    s_report("events_vs_direct", "msg/s", best, s_best(direct, BENCH_SAMPLES, false), 0);
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
        fprintf(stderr, "usage: bench_events   (runs the benchmark; BENCH_SCALE scales it)\n");
        return 2;
    }
    if (s_harness_init() != 0)
        return 1;
    return s_run();
}
