/*  bench_group.c - queue-group delivery with acknowledgements through
    kaizen-broker against raw ZeroMQ events

    Each party in its own process, 300-byte envelopes:
      group:    raw PUB -> kaizen-broker -> one member of group "bench"
                (lib/kz_bus: kz_bus_join, kz_bus_recv, kz_bus_ack), i.e.
                at-least-once delivery, decoding and acknowledging each
      bare hop: raw PUB -> zmq_proxy (XSUB/XPUB) -> raw SUB
      direct:   raw PUB -> raw SUB
    Three interleaved samples of each; the best of each is reported:
      bench group            group vs bare-hop events (goal >= 0.4)
      bench group_vs_direct  group vs direct events
*/
#include "bench_common.h"
#include "bench_member.h"

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
        fprintf(stderr, "usage: bench_group   (runs the benchmark; BENCH_SCALE scales it)\n");
        return 2;
    }
    if (s_harness_init() != 0)
        return 1;
    return s_events_bench("group", BENCH_VIA_GROUP);
}
