/*  main.c - kaizen-broker: parse flags, load the config, run the broker

    kaizen-broker [-c FILE] [--log-file PATH] [--log-level L] [--log-format text|json] [--help]

    Exit status: 0 after SIGTERM/SIGINT, 1 when the config cannot be
    loaded or an endpoint cannot be bound, 2 on a usage error.
*/
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_broker.h"
#include "kz_config.h"
#include "kz_keys.h"
#include "kz_log.h"

static kz_broker_t *volatile s_broker;
static volatile sig_atomic_t s_signalled;

static void s_on_signal(int sig)
{
    (void)sig;
    s_signalled = 1;
    kz_broker_stop(s_broker);
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: kaizen-broker [-c FILE] [--log-file PATH] [--log-level LEVEL]\n"
                 "                     [--log-format text|json]\n"
                 "\n"
                 "Runs the kaizen message bus: events (pub/sub), queue groups and\n"
                 "Majordomo services (router) and the tap, on the endpoints of the\n"
                 "config's bus section.\n"
                 "\n"
                 "  -c, --config FILE   config file (default $KAIZEN_CONFIG, else ./kaizen.yaml,\n"
                 "                      else built-in defaults)\n"
                 "  --log-file PATH     log to PATH, rotated per log.max_size and log.keep\n"
                 "                      (stderr goes there too)\n"
                 "  --log-level LEVEL   debug, info, warn, error or off (default: log.level)\n"
                 "  --log-format FMT    text or json (default: log.format)\n"
                 "  -h, --help          show this help\n");
}

/* Value of "--flag VALUE" or "--flag=VALUE"; NULL when not this flag */
static const char *s_flag_value(int argc, char **argv, int *i, const char *longname,
                                const char *shortname, bool *missing)
{
    const char *arg = argv[*i];
    size_t len = strlen(longname);
    if (strncmp(arg, longname, len) == 0 && arg[len] == '=')
        return arg + len + 1;
    if (strcmp(arg, longname) == 0 || (shortname && strcmp(arg, shortname) == 0)) {
        if (*i + 1 >= argc) {
            *missing = true;
            return NULL;
        }
        return argv[++*i];
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *level_text = NULL, *format_text = NULL, *log_file = NULL;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            s_usage(stdout);
            return 0;
        } else if ((v = s_flag_value(argc, argv, &i, "--config", "-c", &missing)))
            config_path = v;
        else if ((v = s_flag_value(argc, argv, &i, "--log-file", NULL, &missing)))
            log_file = v;
        else if ((v = s_flag_value(argc, argv, &i, "--log-level", NULL, &missing)))
            level_text = v;
        else if ((v = s_flag_value(argc, argv, &i, "--log-format", NULL, &missing)))
            format_text = v;
        else {
            fprintf(stderr,
                    missing ? "kaizen-broker: option '%s' needs a value\n"
                            : "kaizen-broker: unknown option '%s'\n",
                    argv[i]);
            s_usage(stderr);
            return 2;
        }
    }

    kz_log_level_t level = KZ_LOG_INFO;
    bool json = false;
    if (level_text && kz_log_level_parse(level_text, &level) == -1) {
        fprintf(stderr, "kaizen-broker: unknown log level '%s' (debug, info, warn, error, off)\n",
                level_text);
        return 2;
    }
    if (format_text && kz_log_format_parse(format_text, &json) == -1) {
        fprintf(stderr, "kaizen-broker: unknown log format '%s' (text or json)\n", format_text);
        return 2;
    }

    char err[1024] = "";
    kz_config_t *cfg = kz_config_open(config_path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "kaizen-broker: %s\n", err);
        return 1;
    }
    /* from here on everything written to stderr goes to the file */
    if (log_file && kz_log_open_file(log_file, cfg->log.max_size, cfg->log.keep) != 0) {
        fprintf(stderr, "kaizen-broker: unable to open log file '%s': %s\n", log_file,
                strerror(errno));
        kz_config_destroy(&cfg);
        return 1;
    }
    kz_log_set_level(level_text ? level : cfg->log.level);
    kz_log_set_json(format_text ? json : cfg->log.json);
    char host[256] = "localhost", agent[320];
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(agent, sizeof(agent), "broker@%s#%ld", host, (long)getpid());
    kz_log_set_agent(agent);

    /* our handler, not CZMQ's: no SA_RESTART so zmq_poll returns EINTR */
    zsys_handler_set(NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* TCP requires CURVE: the automatic keys, on first use */
    bool made = false;
    if (kz_keys_ensure(cfg, &made, err, sizeof err) != 0) {
        kz_error("%s", err);
        kz_config_destroy(&cfg);
        return 1;
    }
    if (made)
        kz_info("made the bus's CURVE keys in %s/" KZ_KEYS_DIR, cfg->state_dir);
    s_broker = kz_broker_new(cfg, err, sizeof(err));
    kz_config_destroy(&cfg);
    if (!s_broker) {
        kz_error("%s", err);
        return 1;
    }
    /* a signal during start-up came before s_broker was set */
    if (s_signalled)
        kz_broker_stop(s_broker);
    int rc = kz_broker_run(s_broker);
    kz_broker_t *broker = s_broker;
    s_broker = NULL;
    kz_broker_destroy(&broker);
    return rc == 0 ? 0 : 1;
}
