/*  kz_call.c - call a service through lib/kz_bus and print the reply

    kz_call SERVICE [-c FILE] [--type TYPE] [-f KEY=VALUE]... [-i KEY=INT]...
            [--raw BODY] [--timeout-ms MS] [--retries N]

    Sends an envelope of TYPE (default demo.echo) whose body holds the -f
    (string) and -i (integer) fields, and prints the reply envelope as one
    line of JSON. --raw sends BODY as the raw request frame instead (for
    mmi.* and malformed-input tests) and prints the reply as JSON when it
    decodes as an envelope, else as text. Exit 0 with a reply, 1 without.
*/
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_bus.h"
#include "tool.h"
#include "kz_config.h"
#include "kz_log.h"

static int s_usage(void)
{
    fprintf(stderr, "usage: kz_call SERVICE [-c FILE] [--type TYPE] [-f KEY=VALUE]... "
                    "[-i KEY=INT]... [--raw BODY] [--timeout-ms MS] [--retries N]\n");
    return 2;
}

static int s_put_field(kz_msg_t *msg, const char *arg, bool integer)
{
    const char *eq = strchr(arg, '=');
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
    kz_val_t *b = kz_msg_body(msg);
    return integer ? kz_map_put_int(msg, b, key, strtoll(eq + 1, NULL, 10))
                   : kz_map_put_str(msg, b, key, eq + 1);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},
        {"raw", required_argument, NULL, 'r'},
        {"timeout-ms", required_argument, NULL, 'T'},
        {"retries", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *type = "demo.echo", *raw = NULL;
    const char *fields[32];
    bool integer[32];
    int nfields = 0, timeout = -1, retries = -1;
    int c;
    while ((c = getopt_long(argc, argv, "c:f:i:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 't':
            type = optarg;
            break;
        case 'r':
            raw = optarg;
            break;
        case 'T':
            timeout = atoi(optarg);
            break;
        case 'R':
            retries = atoi(optarg);
            break;
        case 'f':
        case 'i':
            if (nfields == 32 || !strchr(optarg, '=') || optarg[0] == '=')
                return s_usage();
            integer[nfields] = c == 'i';
            fields[nfields++] = optarg;
            break;
        default:
            return s_usage();
        }
    }
    if (optind + 1 != argc)
        return s_usage();
    const char *service = argv[optind];

    char err[512];
    kz_config_t *cfg = kz_config_open(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = 1;
    kz_msg_t *reply = NULL;
    kz_bus_t *bus = kz_tool_bus("kz_call", cfg);
    if (!bus)
        goto done;
    if (raw) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (kz_bus_call_raw(bus, service, raw, strlen(raw), timeout, &data, &len, err,
                            sizeof err) != 0) {
            fprintf(stderr, "kz_call: %s\n", err);
            goto done;
        }
        kz_msg_err_t derr;
        reply = kz_msg_decode(data, len, NULL, &derr);
        if (!reply)
            printf("%.*s\n", (int)len, (const char *)data);
        free(data);
    } else {
        kz_msg_t *req = kz_msg_new(type);
        if (!req)
            goto done;
        for (int i = 0; i < nfields; i++) {
            if (s_put_field(req, fields[i], integer[i]) != 0) {
                kz_msg_destroy(&req);
                goto done;
            }
        }
        reply = kz_bus_call(bus, service, &req, timeout, retries, err, sizeof err);
        if (!reply) {
            fprintf(stderr, "kz_call: %s\n", err);
            goto done;
        }
    }
    if (reply) {
        char *text = kz_msg_to_json(reply);
        printf("%s\n", text ? text : "null");
        free(text);
    }
    rc = 0;
done:
    fflush(stdout);
    kz_msg_destroy(&reply);
    kz_bus_destroy(&bus);
    kz_config_destroy(&cfg);
    return rc;
}
