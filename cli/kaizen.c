/*  kaizen.c - the `kaizen` command line: global flags and the dispatcher

    kaizen [-c FILE] [--log-level LEVEL] [--log-format text|json] COMMAND [ARGS]

    Commands live in a table: adding one is one line here (plus its file).
    `kaizen COMMAND --help` is answered from the table before the config
    is loaded, so help works even next to a broken kaizen.yaml.
*/
#include "cli.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_log.h"

/* The commands, in the order `kaizen --help` lists them */
static const kz_cli_cmd_t *const s_commands[] = {
    &kz_cmd_up,    &kz_cmd_down,    &kz_cmd_status, &kz_cmd_run_once,
    &kz_cmd_plans, &kz_cmd_approve, &kz_cmd_reject, &kz_cmd_report,
    &kz_cmd_logs,  &kz_cmd_doctor,  &kz_cmd_db,     &kz_cmd_monitor,
    &kz_cmd_stats, &kz_cmd_publish, &kz_cmd_call,   &kz_cmd_keygen,
};

#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static void s_usage(FILE *out)
{
    fprintf(out, "usage: kaizen [-c FILE] [--log-level LEVEL] [--log-format text|json] COMMAND "
                 "[ARGS]\n"
                 "       kaizen COMMAND --help\n"
                 "       kaizen --version\n"
                 "\n"
                 "options:\n"
                 "  -c, --config FILE     configuration file (default: $KAIZEN_CONFIG, else\n"
                 "                        ./kaizen.yaml if present, else built-in defaults)\n"
                 "  --log-level LEVEL     debug, info, warn, error or off (overrides log.level)\n"
                 "  --log-format FORMAT   text or json (overrides log.format)\n"
                 "  -h, --help            this help\n"
                 "  -V, --version         print the version\n"
                 "\n"
                 "commands:\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "  %-12s %s\n", s_commands[i]->name, s_commands[i]->summary);
    fprintf(out, "\nexit codes: 0 ok, 1 runtime error, 2 usage error\n");
}

static const kz_cli_cmd_t *s_find(const char *name)
{
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp(s_commands[i]->name, name) == 0)
            return s_commands[i];
    return NULL;
}

/* True when ARGV asks for help before a "--" */
static bool s_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    /* our own SIGINT/SIGTERM handling, not CZMQ's */
    zsys_handler_set(NULL);

    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},     {"log-level", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    const char *log_level = NULL;
    const char *log_format = NULL;
    opterr = 0;
    int c;
    /* "+": stop at the command name, its flags are its own */
    while ((c = getopt_long(argc, argv, "+:c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            log_level = optarg;
            break;
        case 'f':
            log_format = optarg;
            break;
        case 'h':
            s_usage(stdout);
            return KZ_EXIT_OK;
        case 'V':
            printf("kaizen %s\n", KZ_VERSION);
            return KZ_EXIT_OK;
        default:
            return kz_cli_bad_option(NULL, c, argv);
        }
    }
    kz_log_level_t level = KZ_LOG_INFO;
    bool json = false;
    if (log_level && kz_log_level_parse(log_level, &level) != 0)
        return kz_cli_usage(NULL, "unknown log level '%s' (use debug, info, warn, error or off)",
                            log_level);
    if (log_format && kz_log_format_parse(log_format, &json) != 0)
        return kz_cli_usage(NULL, "unknown log format '%s' (use text or json)", log_format);
    if (optind >= argc) {
        s_usage(stderr);
        return KZ_EXIT_USAGE;
    }
    const kz_cli_cmd_t *cmd = s_find(argv[optind]);
    if (!cmd)
        return kz_cli_usage(NULL, "'%s' is not a kaizen command", argv[optind]);
    int cargc = argc - optind;
    char **cargv = argv + optind;
    if (s_wants_help(cargc, cargv)) {
        fputs(cmd->usage, stdout);
        return KZ_EXIT_OK;
    }

    kz_log_set_agent("kaizen");
    kz_cli_t cli = {NULL, NULL};
    if (cmd->needs_config) {
        char err[512] = "";
        cli.cfg = kz_config_open(config_path, err, sizeof err);
        if (!cli.cfg) {
            fprintf(stderr, "kaizen: %s\n", err);
            return KZ_EXIT_FAILURE;
        }
        cli.config_path = cli.cfg->path; /* NULL when the defaults are used */
        kz_log_set_level(cli.cfg->log.level);
        kz_log_set_json(cli.cfg->log.json);
    }
    if (log_level)
        kz_log_set_level(level);
    if (log_format)
        kz_log_set_json(json);

    /* each command parses its own flags from a fresh getopt state */
    optind = 0;
    int rc = cmd->run(&cli, cargc, cargv);
    kz_config_destroy(&cli.cfg);
    return rc;
}
