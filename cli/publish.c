/*  publish.c - `kaizen publish`: send one event by hand (like `nats pub`)

    Builds an envelope of a message type of proto/PROTOCOL.md from a JSON
    body given on the command line, checks it against the type's schema
    by encoding it (so the user gets the codec's error naming the field,
    not a silent drop by every receiver), waits a bounded time for the
    broker to accept publications and publishes it.
*/
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_curve_probe.h"
#include "kz_msg.h"

#define S_DEFAULT_TIMEOUT_MS 3000
#define S_PROBE_MS           2000 /* a CURVE handshake, after silence */
#define S_MAX_COUNT          1000000
#define S_FLUSH_MS           5000 /* the broker confirms what we published */

static const char s_usage[] =
    "usage: kaizen [-c FILE] publish TYPE [BODY-JSON] [--corr ID] [--target NAME]\n"
    "                        [--count N] [--timeout DURATION]\n"
    "\n"
    "Publish an event of message type TYPE (proto/PROTOCOL.md, section 4) whose\n"
    "body is the JSON object BODY-JSON (default {}), and print its id. The\n"
    "message is checked against the type's schema before anything is sent.\n"
    "JSON objects become maps; arrays, strings, integers, reals, true, false\n"
    "and null keep their type.\n"
    "\n"
    "  --corr ID            the envelope's correlation id\n"
    "  --target NAME        the envelope's target repository\n"
    "  --count N            publish N messages, each with its own id (default 1)\n"
    "  --timeout DURATION   how long to wait for the broker (default 3s)\n"
    "  -h, --help           this help\n"
    "\n"
    "example: make the demo agent run a cycle now\n"
    "  kaizen publish agent.run '{\"agent\":\"demo\"}'\n"
    "\n"
    "exit codes: 0 published, 1 unknown type, a body the schema refuses or no\n"
    "broker, 2 usage (bad flag, BODY-JSON that is not a JSON object)\n";

/* A copy of TEMPLATE with a new id and ts: same type, src, corr, target
   and body */
static kz_msg_t *s_copy(const kz_msg_t *template)
{
    kz_msg_t *msg = kz_msg_new(kz_msg_type(template));
    if (!msg)
        return NULL;
    const char *corr = kz_msg_corr(template);
    const char *target = kz_msg_target(template);
    if (kz_msg_set_src(msg, kz_msg_src(template)) != 0 ||
        (corr && kz_msg_set_corr(msg, corr) != 0) ||
        (target && kz_msg_set_target(msg, target) != 0) ||
        kz_val_copy(msg, kz_msg_body(msg), kz_msg_body_const(template)) != 0)
        kz_msg_destroy(&msg);
    return msg;
}

static const struct option s_opts[] = {
    {"corr", required_argument, NULL, 'C'},
    {"target", required_argument, NULL, 'T'},
    {"count", required_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    const char *corr = NULL, *target = NULL;
    long count = 1;
    int timeout_ms = S_DEFAULT_TIMEOUT_MS;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 'C':
            corr = optarg;
            break;
        case 'T':
            target = optarg;
            break;
        case 'n':
            if (kz_cli_parse_count(optarg, &count) != 0 || count < 1 || count > S_MAX_COUNT)
                return kz_cli_usage("publish", "invalid count '%s' (1 to %d)", optarg, S_MAX_COUNT);
            break;
        case 't':
            if (kz_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms <= 0)
                return kz_cli_usage("publish", "invalid duration '%s' (e.g. 500ms, 3s)", optarg);
            break;
        default:
            return kz_cli_bad_option("publish", c, argv);
        }
    }
    if (optind >= argc)
        return kz_cli_usage("publish", "missing TYPE");
    const char *type = argv[optind];
    const char *body = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (optind + 2 < argc)
        return kz_cli_usage("publish", "unexpected argument '%s'", argv[optind + 2]);

    char id[300], host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(id, sizeof id, "kaizen-publish@%s#%ld", host, (long)getpid());

    int rc;
    kz_msg_t *msg = kz_cli_json_msg("publish", type, body, &rc);
    if (!msg)
        return rc;
    if (kz_msg_set_src(msg, id) != 0 || (corr && kz_msg_set_corr(msg, corr) != 0) ||
        (target && kz_msg_set_target(msg, target) != 0)) {
        kz_msg_destroy(&msg);
        return kz_cli_error("publish", "out of memory");
    }
    rc = kz_cli_check_msg("publish", msg);
    if (rc != KZ_EXIT_OK) {
        kz_msg_destroy(&msg);
        return rc;
    }

    const kz_bus_config_t *bus_cfg = &cli->cfg->bus;
    const char *endpoint = bus_cfg->connect.pub ? bus_cfg->connect.pub : "?";
    char err[512] = "";
    kz_bus_t *bus = kz_bus_new(bus_cfg, id, err, sizeof err);
    if (!bus) {
        kz_msg_destroy(&msg);
        return kz_cli_error("publish", "%s", err);
    }
    if (kz_bus_wait_publisher(bus, timeout_ms) != 0) {
        /* silence is also what a CURVE refusal looks like: tell them apart */
        char why[1024] = "";
        if (kz_curve_probe(bus_cfg, bus_cfg->connect.pub, true, S_PROBE_MS, why, sizeof why) ==
            KZ_CURVE_REFUSED)
            rc = kz_cli_error("publish", "%s", why);
        else
            rc = kz_cli_error("publish", "no broker at '%s' (is kaizen-broker running?)", endpoint);
        goto done;
    }
    /* MSG stays the template: each one sent is a copy with its own, newer
       id, so ids come out in the order they are published */
    for (long i = 0; i < count; i++) {
        kz_msg_t *out = s_copy(msg);
        if (!out) {
            rc = kz_cli_error("publish", "out of memory");
            goto done;
        }
        char msg_id[65];
        snprintf(msg_id, sizeof msg_id, "%s", kz_msg_id(out));
        if (kz_bus_publish(bus, &out) != 0) {
            rc = kz_cli_error("publish", "unable to publish %s to '%s'", type, endpoint);
            goto done;
        }
        printf("%s\n", msg_id);
    }
    /* sent only once the broker confirms it has them (docs/durability.md) */
    int frc = kz_bus_flush(bus, S_FLUSH_MS);
    if (frc != 0) {
        char why[512];
        rc = kz_cli_error("publish", "%s",
                          kz_bus_flush_error(bus, frc, S_FLUSH_MS, why, sizeof why));
        goto done;
    }
    if (fflush(stdout) != 0)
        rc = KZ_EXIT_FAILURE;
done:
    kz_msg_destroy(&msg);
    kz_bus_destroy(&bus);
    return rc;
}

const kz_cli_cmd_t kz_cmd_publish = {
    "publish", "publish an event built from a JSON body (prints its id)",
    s_usage,   s_run,
    true,      s_opt_tables,
    NULL,
};
