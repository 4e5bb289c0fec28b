/*  call.c - `kaizen call`: one request/reply by hand (like `nats req`)

    Sends a request envelope built from a JSON body to a service through
    the Majordomo client of lib/kz_bus and prints the reply, readable or
    as one JSON line. Broker-internal mmi.* services take a raw frame, not
    an envelope: their body is given as a JSON string and their reply is
    printed as text (or as JSON when it is a msgpack value, like
    mmi.stats's map).
*/
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_msg.h"

#define S_MAX_RETRIES 1000

static const char s_usage[] =
    "usage: kaizen [-c FILE] call SERVICE [BODY-JSON] [--type TYPE] [--timeout DURATION]\n"
    "                     [--retries N] [--target NAME] [--json]\n"
    "\n"
    "Send a request to SERVICE and print its reply: type, src, corr and the\n"
    "round trip, then the body as indented JSON. The request is an envelope\n"
    "of TYPE whose body is the JSON object BODY-JSON (default {}), checked\n"
    "against the type's schema before it is sent.\n"
    "\n"
    "Default TYPE by service: kaizen.status -> status.request, exec.* ->\n"
    "exec.request, validate.* -> validate.request, anything else -> demo.echo.\n"
    "\n"
    "Broker services mmi.* take a raw frame instead of an envelope: BODY-JSON\n"
    "is then a JSON string whose text is sent as is (default: an empty frame),\n"
    "and the reply is printed as text, or as JSON when it is a msgpack value:\n"
    "  kaizen call mmi.service '\"demo.echo\"'    prints 200 (served) or 404\n"
    "\n"
    "  --type TYPE          message type of the request (see above)\n"
    "  --timeout DURATION   wait per attempt (default: bus.call_timeout)\n"
    "  --retries N          attempts after the first one times out (default:\n"
    "                       bus.call_retries; mmi.* services: one attempt)\n"
    "  --target NAME        the request's envelope target (the repository it is about)\n"
    "  --json               print the reply envelope as one JSON line\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 a reply, 1 no reply, an error reply, unknown type or a body\n"
    "the schema refuses, 2 usage (bad flag, BODY-JSON that is not valid)\n";

/* The request type a service expects when --type is not given */
static const char *s_default_type(const char *service)
{
    if (strcmp(service, "kaizen.status") == 0)
        return "status.request";
    if (strncmp(service, "exec.", 5) == 0)
        return "exec.request";
    if (strncmp(service, "validate.", 9) == 0)
        return "validate.request";
    return "demo.echo";
}

static double s_ms_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* True when DATA is UTF-8 text without control characters (but \t \n \r) */
static bool s_printable(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len;) {
        if ((data[i] < 0x20 && data[i] != '\t' && data[i] != '\n' && data[i] != '\r') ||
            data[i] == 0x7f)
            return false;
        size_t n = kz_cli_utf8_seq(data + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Our src and bus identity: kaizen-call@HOST#PID */
static void s_agent_id(char *id, size_t idlen)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(id, idlen, "kaizen-call@%s#%ld", host, (long)getpid());
}

static kz_bus_t *s_bus(kz_cli_t *cli, const char *id, int *rc)
{
    char err[512] = "";
    kz_bus_t *bus = kz_bus_new(&cli->cfg->bus, id, err, sizeof err);
    if (!bus)
        *rc = kz_cli_error("call", "%s", err);
    return bus;
}

/* mmi.*: BODY_JSON is a JSON string sent as the raw request frame */
static int s_call_raw(kz_cli_t *cli, const char *service, const char *body_json, int timeout_ms,
                      bool json)
{
    kz_msg_t *scratch = kz_msg_new("demo.echo");
    if (!scratch)
        return kz_cli_error("call", "out of memory");
    const char *frame = "";
    size_t frame_len = 0;
    char err[512] = "";
    if (body_json) {
        kz_val_t *slot = kz_map_put(scratch, kz_msg_body(scratch), "frame");
        int crc = slot ? kz_cli_json_to_val(scratch, slot, body_json, err, sizeof err) : -1;
        int rc = KZ_EXIT_OK;
        if (crc == -1)
            rc = kz_cli_error("call", "out of memory");
        else if (crc != 0)
            rc = kz_cli_usage("call", "BODY-JSON: %s", err);
        else if (slot->type != KZ_VAL_STR)
            rc = kz_cli_usage("call", "the body of an mmi.* call is a JSON string, e.g. "
                                      "'\"demo.echo\"'");
        if (rc != KZ_EXIT_OK) {
            kz_msg_destroy(&scratch);
            return rc;
        }
        frame = slot->u.str.ptr;
        frame_len = slot->u.str.len;
    }
    int rc = KZ_EXIT_OK;
    char id[300];
    s_agent_id(id, sizeof id);
    kz_bus_t *bus = s_bus(cli, id, &rc);
    if (!bus) {
        kz_msg_destroy(&scratch);
        return rc;
    }
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    int crc = kz_bus_call_raw(bus, service, frame, frame_len, timeout_ms, &reply, &reply_len, err,
                              sizeof err);
    kz_bus_destroy(&bus);
    kz_msg_destroy(&scratch);
    if (crc != 0)
        return kz_cli_error("call", "%s", err);

    if (s_printable(reply, reply_len)) {
        if (json)
            kz_cli_json_str(stdout, (const char *)reply, reply_len);
        else
            fwrite(reply, 1, reply_len, stdout);
        fputc('\n', stdout);
    } else {
        /* the broker's own replies may be large (mmi.stats): allow them */
        kz_msg_limits_t limits = kz_msg_limits_default();
        if (limits.max_size < reply_len)
            limits.max_size = reply_len;
        limits.max_count = 1000000;
        limits.max_items = 10000000;
        kz_msg_err_t derr = {0, ""};
        kz_msg_t *value = kz_msg_decode_value(reply, reply_len, &limits, &derr);
        if (!value) {
            rc = kz_cli_error("call", "reply from '%s' is neither text nor msgpack (%zu bytes): %s",
                              service, reply_len, derr.text);
        } else if (json) {
            char *text = kz_val_to_json(kz_msg_body_const(value));
            if (text)
                printf("%s\n", text);
            else
                rc = kz_cli_error("call", "out of memory");
            free(text);
        } else {
            kz_cli_print_json(stdout, kz_msg_body_const(value), 0);
            fputc('\n', stdout);
        }
        kz_msg_destroy(&value);
    }
    free(reply);
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = KZ_EXIT_FAILURE;
    return rc;
}

static void s_print_reply(const kz_msg_t *reply, double rtt_ms)
{
    const char *corr = kz_msg_corr(reply);
    const char *target = kz_msg_target(reply);
    printf("type:   %s\n", kz_msg_type(reply));
    printf("src:    %s\n", kz_msg_src(reply));
    printf("corr:   %s\n", corr ? corr : "-");
    if (target)
        printf("target: %s\n", target);
    printf("rtt:    %.2f ms\n", rtt_ms);
    printf("body:   ");
    kz_cli_print_json(stdout, kz_msg_body_const(reply), 0);
    fputc('\n', stdout);
}

static const struct option s_opts[] = {
    {"type", required_argument, NULL, 'T'},    {"timeout", required_argument, NULL, 't'},
    {"retries", required_argument, NULL, 'r'}, {"json", no_argument, NULL, 'j'},
    {"target", required_argument, NULL, 'g'},  {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    const char *type = NULL;
    const char *target = NULL;
    int timeout_ms = cli->cfg->bus.call_timeout_ms;
    long retries = cli->cfg->bus.call_retries;
    bool json = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            type = optarg;
            break;
        case 't':
            if (kz_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms <= 0)
                return kz_cli_usage("call", "invalid duration '%s' (e.g. 500ms, 3s)", optarg);
            break;
        case 'r':
            if (kz_cli_parse_count(optarg, &retries) != 0 || retries > S_MAX_RETRIES)
                return kz_cli_usage("call", "invalid retries '%s' (0 to %d)", optarg,
                                    S_MAX_RETRIES);
            break;
        case 'j':
            json = true;
            break;
        case 'g':
            if (!*optarg)
                return kz_cli_usage("call", "empty --target");
            target = optarg;
            break;
        default:
            return kz_cli_bad_option("call", c, argv);
        }
    }
    if (optind >= argc)
        return kz_cli_usage("call", "missing SERVICE");
    const char *service = argv[optind];
    const char *body = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (optind + 2 < argc)
        return kz_cli_usage("call", "unexpected argument '%s'", argv[optind + 2]);
    if (!*service)
        return kz_cli_usage("call", "empty SERVICE");

    if (strncmp(service, "mmi.", 4) == 0) {
        if (type)
            return kz_cli_usage("call", "--type does not apply to mmi.* services (raw frames)");
        return s_call_raw(cli, service, body, timeout_ms, json);
    }

    int rc;
    char id[300];
    kz_msg_t *req = kz_cli_json_msg("call", type ? type : s_default_type(service), body, &rc);
    if (!req)
        return rc;
    s_agent_id(id, sizeof id);
    if (kz_msg_set_src(req, id) != 0 || (target && kz_msg_set_target(req, target) != 0)) {
        kz_msg_destroy(&req);
        return kz_cli_error("call", "out of memory");
    }
    rc = kz_cli_check_msg("call", req);
    kz_bus_t *bus = rc == KZ_EXIT_OK ? s_bus(cli, id, &rc) : NULL;
    if (!bus) {
        kz_msg_destroy(&req);
        return rc;
    }
    char err[512] = "";
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    kz_msg_t *reply = kz_bus_call(bus, service, &req, timeout_ms, (int)retries, err, sizeof err);
    double rtt_ms = s_ms_since(&start);
    kz_bus_destroy(&bus);
    if (!reply)
        return kz_cli_error("call", "%s", err);

    rc = KZ_EXIT_OK;
    if (json) {
        char *text = kz_msg_to_json(reply);
        if (text)
            printf("%s\n", text);
        else
            rc = kz_cli_error("call", "out of memory");
        free(text);
    }
    if (strcmp(kz_msg_type(reply), "error") == 0) {
        const kz_val_t *b = kz_msg_body_const(reply);
        const char *code = kz_map_str(b, "code");
        const char *message = kz_map_str(b, "message");
        fflush(stdout);
        rc = kz_cli_error("call", "'%s' answered error %s: %s", service, code ? code : "?",
                          message ? message : "");
    } else if (!json) {
        s_print_reply(reply, rtt_ms);
    }
    kz_msg_destroy(&reply);
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = KZ_EXIT_FAILURE;
    return rc;
}

const kz_cli_cmd_t kz_cmd_call = {
    "call", "send a request to a service and print the reply", s_usage, s_run, true, s_opt_tables,
    NULL,
};
