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
    return s_events_bench("events", BENCH_VIA_BROKER);
}
