/*  kaizen.c - the `kaizen` command line: global flags and the dispatcher

    kaizen [-c FILE] [--log-level LEVEL] [--log-format text|json] COMMAND [ARGS]

    Commands live in a table: adding one is one line here (plus its file).
    The global options may also stand anywhere among the command's
    arguments (`kaizen db start -c FILE`, `kaizen plans -c FILE show ID`):
    the dispatcher takes them out before the command parses its own, so
    no command handles them. `kaizen COMMAND --help` is answered from the
    table before the config is loaded, so help works even next to a
    broken kaizen.yaml.
*/
#include "cli.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_git.h"
#include "kz_log.h"
#include "kz_state.h"

/* The commands, in the order `kaizen --help` lists them */
static const kz_cli_cmd_t *const s_commands[] = {
    &kz_cmd_init,    &kz_cmd_up,      &kz_cmd_down,   &kz_cmd_status,  &kz_cmd_run_once,
    &kz_cmd_plans,   &kz_cmd_approve, &kz_cmd_reject, &kz_cmd_report,  &kz_cmd_logs,
    &kz_cmd_doctor,  &kz_cmd_catalog, &kz_cmd_db,     &kz_cmd_monitor, &kz_cmd_stats,
    &kz_cmd_publish, &kz_cmd_call,    &kz_cmd_keygen,
};

#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

/* getopt values of the global options ('c' is -c and --config) */
#define S_OPT_LOG_LEVEL  0x1001
#define S_OPT_LOG_FORMAT 0x1002
#define S_OPT_COMMAND    0x1003 /* any option of the command's own */

/* What the global options said; the last of each wins */
typedef struct {
    const char *config;
    const char *log_level;
    const char *log_format;
} s_globals_t;

static const char s_globals_help[] =
    "\nglobal options, before or after the command (and its subcommand):\n"
    "  -c, --config FILE     configuration file (default: $KAIZEN_CONFIG, else\n"
    "                        ./kaizen.yaml if present, else built-in defaults)\n"
    "  --log-level LEVEL     debug, info, warn, error or off (overrides log.level)\n"
    "  --log-format FORMAT   text or json (overrides log.format)\n";

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
                 "The options -c, --log-level and --log-format may also follow the command.\n"
                 "\n"
                 "commands:\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "  %-12s %s\n", s_commands[i]->name, s_commands[i]->summary);
    fprintf(out, "\nexit codes: 0 ok, 1 runtime error, 2 usage error (some commands: 3 not\n"
                 "found or timed out, 4 the state does not allow it; see 'kaizen COMMAND "
                 "--help')\n");
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

/* Record the global option C (getopt's value) with VALUE in G; a usage
   error (exit code) for an empty value, else 0 */
static int s_global(const char *cmd, int c, const char *value, s_globals_t *g)
{
    static const char *const names[] = {"--config", "--log-level", "--log-format"};
    int k = c == 'c' ? 0 : c == S_OPT_LOG_LEVEL ? 1 : 2;
    if (!*value)
        return kz_cli_usage(cmd, "option '%s' needs a value", names[k]);
    if (k == 0)
        g->config = value;
    else if (k == 1)
        g->log_level = value;
    else
        g->log_format = value;
    return 0;
}

/* Take the global options out of the arguments of CMD (ARGV[0] is its
   name), wherever they stand before a "--": ARGV is rewritten in place
   to what the command parses, *ARGC its new length. Getopt reads the
   words in order (no permutation) with the command's own options
   beside the global ones, so the value of a command's option ("--why
   -c") is never taken for a global option, and a cluster such as
   "-fcFILE" keeps its "-f". *KEEP receives strings made here (freed by
   the caller). 0, or the exit code of a usage error (a global option
   without its value) */
static int s_take_globals(const kz_cli_cmd_t *cmd, int *argc, char **argv, s_globals_t *g,
                          char **keep)
{
    static const struct option globals[] = {
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, S_OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, S_OPT_LOG_FORMAT},
    };
    size_t n = 3;
    for (const struct option *const *t = cmd->opts; t && *t; t++)
        for (const struct option *o = *t; o->name; o++)
            n++;
    struct option *opts = calloc(n + 1, sizeof *opts);
    size_t shortlen = cmd->shortopts ? strlen(cmd->shortopts) : 0;
    char *shortopts = malloc(shortlen + 5);
    bool *drop = calloc((size_t)*argc + 1, sizeof *drop);
    if (!opts || !shortopts || !drop) {
        free(opts);
        free(shortopts);
        free(drop);
        return kz_cli_error(cmd->name, "out of memory");
    }
    memcpy(opts, globals, sizeof globals);
    n = 3;
    for (const struct option *const *t = cmd->opts; t && *t; t++)
        for (const struct option *o = *t; o->name; o++)
            opts[n++] = (struct option){o->name, o->has_arg, NULL, S_OPT_COMMAND};
    /* "-": every word in order, non-options as 1; ":": a missing value
       is ':', not '?' */
    snprintf(shortopts, shortlen + 5, "-:c:%s", cmd->shortopts ? cmd->shortopts : "");

    int rc = 0;
    opterr = 0;
    optind = 0;
    int c;
    for (;;) {
        int first = optind > 0 ? optind : 1; /* the word this option starts in */
        c = getopt_long(*argc, argv, shortopts, opts, NULL);
        if (c == -1)
            break;
        bool global = c == 'c' || c == S_OPT_LOG_LEVEL || c == S_OPT_LOG_FORMAT;
        if (c == ':' &&
            (optopt == 'c' || optopt == S_OPT_LOG_LEVEL || optopt == S_OPT_LOG_FORMAT)) {
            rc = kz_cli_bad_option(cmd->name, c, argv);
            break;
        }
        if (!global)
            continue; /* the command's own, or an error it reports itself */
        if ((rc = s_global(cmd->name, c, optarg, g)) != 0)
            break;
        /* the words it took: its own (and the value's); a short -c after
           other flags of the same word ("-fc FILE") leaves those */
        const char *word = argv[first];
        const char *at =
            c == 'c' && word[0] == '-' && word[1] != '-' ? strchr(word + 1, 'c') : NULL;
        if (at && at > word + 1) {
            char *rest = strndup(word, (size_t)(at - word));
            if (!rest) {
                rc = kz_cli_error(cmd->name, "out of memory");
                break;
            }
            keep[first] = rest;
            argv[first] = rest;
            first++;
        }
        for (int i = first; i < optind; i++)
            drop[i] = true;
    }
    if (rc == 0) {
        int to = 1;
        for (int i = 1; i < *argc; i++)
            if (!drop[i])
                argv[to++] = argv[i];
        argv[to] = NULL;
        *argc = to;
    }
    free(opts);
    free(shortopts);
    free(drop);
    return rc;
}

int main(int argc, char **argv)
{
    /* our own SIGINT/SIGTERM handling, not CZMQ's */
    zsys_handler_set(NULL);
    /* private files, also for the commands that load no config (init,
       keygen): kz_config_open does it for the others */
    kz_state_umask();

    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, S_OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, S_OPT_LOG_FORMAT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    s_globals_t g = {NULL, NULL, NULL};
    opterr = 0;
    int c;
    /* "+": stop at the command name; what follows is the command's */
    while ((c = getopt_long(argc, argv, "+:c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
        case S_OPT_LOG_LEVEL:
        case S_OPT_LOG_FORMAT:
            if (s_global(NULL, c, optarg, &g) != 0)
                return KZ_EXIT_USAGE;
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
        fputs(s_globals_help, stdout);
        return KZ_EXIT_OK;
    }
    int nmade = cargc;
    char **made = calloc((size_t)nmade + 1, sizeof *made);
    if (!made)
        return kz_cli_error(NULL, "out of memory");
    int rc = s_take_globals(cmd, &cargc, cargv, &g, made);
    kz_log_level_t level = KZ_LOG_INFO;
    bool json = false;
    if (rc == 0 && g.log_level && kz_log_level_parse(g.log_level, &level) != 0)
        rc = kz_cli_usage(cmd->name, "unknown log level '%s' (use debug, info, warn, error or off)",
                          g.log_level);
    if (rc == 0 && g.log_format && kz_log_format_parse(g.log_format, &json) != 0)
        rc = kz_cli_usage(cmd->name, "unknown log format '%s' (use text or json)", g.log_format);

    kz_log_set_agent("kaizen");
    /* a command that loads no config (init writes one) gets the -c FILE given */
    kz_cli_t cli = {NULL, cmd->needs_config ? NULL : g.config};
    if (rc == 0 && cmd->needs_config) {
        char err[512] = "";
        cli.cfg = kz_config_open(g.config, err, sizeof err);
        if (cli.cfg && kz_config_bus_role(cli.cfg, KZ_ROLE_OPERATOR) != 0) {
            snprintf(err, sizeof err, "out of memory");
            kz_config_destroy(&cli.cfg);
        }
        if (!cli.cfg) {
            fprintf(stderr, "kaizen: %s\n", err);
            rc = KZ_EXIT_FAILURE;
        } else {
            cli.config_path = cli.cfg->path; /* NULL when the defaults are used */
            /* trusted foreign-owned targets known to git; the refused
               ones are reported by the commands that use them */
            char why[1024];
            (void)kz_git_check_targets(cli.cfg, why, sizeof why);
            kz_log_set_level(cli.cfg->log.level);
            kz_log_set_json(cli.cfg->log.json);
        }
    }
    if (rc == 0) {
        if (g.log_level)
            kz_log_set_level(level);
        if (g.log_format)
            kz_log_set_json(json);
        /* each command parses its own flags from a fresh getopt state */
        optind = 0;
        rc = cmd->run(&cli, cargc, cargv);
    }
    kz_config_destroy(&cli.cfg);
    for (int i = 0; i < nmade; i++)
        free(made[i]);
    free(made);
    return rc;
}
