/*  db.c - `kaizen db`: schema migrations and the embedded PostgreSQL

    kaizen db migrate [--dir DIR]       apply the pending migrations
    kaizen db start|stop [--timeout D]  the embedded cluster under STATE/db
    kaizen db status [--json]           where, running, reachable, schema

    The connection and the migrations are lib/kz_db.c's, the cluster
    lib/kz_pgctl.c's; this file parses flags and prints.
*/
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_db.h"
#include "kz_pgctl.h"
#include "kz_state.h"

#define S_START_TIMEOUT_MS 60000
#define S_STOP_TIMEOUT_MS  30000
#define S_LOCK_WAIT_MS     120000 /* a `kaizen up` holds the lock while it starts everything */

static const char s_usage[] =
    "usage: kaizen [-c FILE] db migrate [--dir DIR]\n"
    "       kaizen [-c FILE] db start [--timeout DURATION]\n"
    "       kaizen [-c FILE] db stop [--timeout DURATION]\n"
    "       kaizen [-c FILE] db status [--json]\n"
    "\n"
    "The database kaizen records into: $KAIZEN_DATABASE_URL, else\n"
    "database.dsn, else the embedded PostgreSQL cluster under STATE/db (a\n"
    "unix socket in STATE/db/run, no TCP port; as root it runs as user\n"
    "postgres, since PostgreSQL refuses to run as root).\n"
    "\n"
    "  migrate   apply the schema migrations not applied yet, in order, each\n"
    "            in its own transaction, and print the schema version\n"
    "      --dir DIR           the files DIR/NNNN_*.sql instead of the\n"
    "                          migrations built into kaizen\n"
    "  start     create the embedded cluster (initdb) when missing and start it\n"
    "  stop      stop the embedded cluster (fast shutdown, then immediate)\n"
    "      --timeout DURATION  how long to wait (default 60s for start, 30s\n"
    "                          for stop)\n"
    "  status    where the database is, whether it runs and answers, the\n"
    "            schema version and the pending migrations\n"
    "      --json              one JSON object\n"
    "  -h, --help  this help\n"
    "\n"
    "start and stop refuse when a DSN is configured: kaizen does not manage\n"
    "that server.\n"
    "\n"
    "exit codes: 0 ok, 1 runtime error (status: the database is unreachable),\n"
    "2 usage\n";

/* Where a configured DSN comes from, for messages */
static const char *s_dsn_source(void)
{
    const char *url = getenv("KAIZEN_DATABASE_URL");
    return url && *url ? "$KAIZEN_DATABASE_URL" : "database.dsn";
}

/* The options of each subcommand */
static const struct option s_migrate_opts[] = {
    {"dir", required_argument, NULL, 'd'},
    {NULL, 0, NULL, 0},
};
static const struct option s_timeout_opts[] = {
    {"timeout", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
};
static const struct option s_status_opts[] = {
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_migrate_opts, s_timeout_opts, s_status_opts,
                                                    NULL};

/* Parse "--timeout DURATION" (the only flag of start and stop) */
static int s_parse_timeout(const char *cmd, int argc, char **argv, int *timeout_ms)
{
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_timeout_opts, NULL)) != -1) {
        if (c != 't')
            return kz_cli_bad_option(cmd, c, argv);
        if (kz_parse_duration_ms(optarg, timeout_ms) != 0 || *timeout_ms <= 0)
            return kz_cli_usage(cmd, "invalid duration '%s' (e.g. 30s, 2m)", optarg);
    }
    if (optind < argc)
        return kz_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    return KZ_EXIT_OK;
}

static int s_migrate(kz_cli_t *cli, int argc, char **argv)
{
    const char *dir = NULL;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_migrate_opts, NULL)) != -1) {
        if (c != 'd')
            return kz_cli_bad_option("db migrate", c, argv);
        if (!*optarg)
            return kz_cli_usage("db migrate", "--dir needs a directory");
        dir = optarg;
    }
    if (optind < argc)
        return kz_cli_usage("db migrate", "unexpected argument '%s'", argv[optind]);

    char err[2048] = "";
    PGconn *db = kz_db_connect(cli->cfg, "kaizen-db", err, sizeof err);
    if (!db)
        return kz_cli_error("db migrate", "%s", err);
    int applied = 0;
    int rc = kz_db_migrate(db, dir, &applied, err, sizeof err);
    int version = rc == 0 ? kz_db_schema_version(db, err, sizeof err) : -1;
    PQfinish(db);
    if (rc != 0 || version < 0)
        return kz_cli_error("db migrate", "%s", err);
    if (applied > 0)
        printf("applied %d migration%s, schema version %d\n", applied, applied == 1 ? "" : "s",
               version);
    else
        printf("schema is up to date (version %d)\n", version);
    return fflush(stdout) == 0 ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
}

static int s_start_stop(kz_cli_t *cli, bool start, int argc, char **argv)
{
    const char *cmd = start ? "db start" : "db stop";
    int timeout_ms = start ? S_START_TIMEOUT_MS : S_STOP_TIMEOUT_MS;
    int rc = s_parse_timeout(cmd, argc, argv, &timeout_ms);
    if (rc != KZ_EXIT_OK)
        return rc;
    if (!kz_db_embedded(cli->cfg))
        return kz_cli_error(cmd, "%s is set: kaizen does not manage that server", s_dsn_source());
    char err[2048] = "";
    kz_pg_t pg;
    if (kz_pg_init(&pg, cli->cfg->state_dir, err, sizeof err) != 0)
        return kz_cli_error(cmd, "%s", err);
    /* not while `kaizen up` or `kaizen down` works on the same state */
    if (start && kz_state_init(cli->cfg, err, sizeof err) != 0)
        return kz_cli_error(cmd, "%s", err);
    int lock = -1;
    char run[PATH_MAX];
    struct stat st;
    if (kz_state_path(cli->cfg, "run", run, sizeof run) == 0 && stat(run, &st) == 0) {
        lock = kz_state_lock(cli->cfg, S_LOCK_WAIT_MS, err, sizeof err);
        if (lock < 0)
            return kz_cli_error(cmd, "%s", err);
    }
    int rc_pg;
    bool started = false;
    if (start)
        rc_pg = kz_pg_start(&pg, timeout_ms, &started, err, sizeof err);
    else
        rc_pg = kz_pg_stop(&pg, timeout_ms, err, sizeof err);
    if (lock >= 0)
        close(lock);
    if (rc_pg != 0)
        return kz_cli_error(cmd, "%s", err);
    if (start)
        printf("%s (socket directory %s, log %s)\n",
               started ? "started the embedded PostgreSQL"
                       : "the embedded PostgreSQL is already running",
               pg.sock_dir, pg.log_file);
    else
        printf("the embedded PostgreSQL in %s is stopped\n", pg.data_dir);
    return fflush(stdout) == 0 ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
}

/* What `db status` found */
typedef struct {
    char where[1024];
    bool embedded;
    bool pg_ok; /* kz_pg_init worked (embedded only) */
    char pg_error[1024];
    kz_pg_t pg;
    int exists;  /* cluster made (embedded only) */
    int running; /* 1 / 0 / -1 unknown (embedded only) */
    bool reachable;
    char error[2048];
    int version; /* -1 unknown */
    int latest;
    int npending;
    const char *pending[64]; /* names of the first pending migrations */
} s_status_t;

static void s_collect(kz_cli_t *cli, s_status_t *st)
{
    memset(st, 0, sizeof *st);
    kz_db_describe(cli->cfg, st->where, sizeof st->where);
    st->embedded = kz_db_embedded(cli->cfg);
    st->version = -1;
    st->running = -1;
    for (size_t i = 0; i < kz_migrations_count; i++)
        if (kz_migrations[i].version > st->latest)
            st->latest = kz_migrations[i].version;
    if (st->embedded) {
        st->pg_ok =
            kz_pg_init(&st->pg, cli->cfg->state_dir, st->pg_error, sizeof st->pg_error) == 0;
        if (st->pg_ok) {
            st->exists = kz_pg_exists(&st->pg);
            char err[512];
            st->running = kz_pg_running(&st->pg, err, sizeof err);
        }
    }
    PGconn *db = kz_db_connect(cli->cfg, "kaizen-db", st->error, sizeof st->error);
    if (!db)
        return;
    st->reachable = true;
    st->version = kz_db_schema_version(db, st->error, sizeof st->error);
    PGresult *res = NULL;
    if (st->version > 0) {
        res = kz_db_exec(db, "SELECT version FROM schema_migrations", 0, NULL, st->error,
                         sizeof st->error);
        if (!res)
            st->version = -1;
    }
    if (st->version >= 0) {
        for (size_t i = 0; i < kz_migrations_count; i++) {
            bool done = false;
            for (int r = 0; res && r < PQntuples(res) && !done; r++)
                done = strtol(PQgetvalue(res, r, 0), NULL, 10) == kz_migrations[i].version;
            if (done)
                continue;
            if (st->npending < (int)(sizeof st->pending / sizeof st->pending[0]))
                st->pending[st->npending] = kz_migrations[i].name;
            st->npending++;
        }
        st->error[0] = '\0';
    }
    PQclear(res);
    PQfinish(db);
}

static void s_json_str(const char *text)
{
    if (text)
        kz_cli_json_str(stdout, text, strlen(text));
    else
        fputs("null", stdout);
}

static void s_print_json(const s_status_t *st)
{
    printf("{\"database\": ");
    s_json_str(st->where);
    printf(", \"embedded\": %s", st->embedded ? "true" : "false");
    if (st->embedded) {
        printf(", \"cluster\": {");
        if (st->pg_ok) {
            printf("\"data_dir\": ");
            s_json_str(st->pg.data_dir);
            printf(", \"socket_dir\": ");
            s_json_str(st->pg.sock_dir);
            printf(", \"log\": ");
            s_json_str(st->pg.log_file);
            printf(", \"run_user\": ");
            s_json_str(st->pg.run_user);
            printf(", \"exists\": %s, \"running\": %s", st->exists ? "true" : "false",
                   st->running < 0 ? "null"
                   : st->running   ? "true"
                                   : "false");
        } else {
            printf("\"error\": ");
            s_json_str(st->pg_error);
        }
        printf("}");
    }
    printf(", \"reachable\": %s, \"error\": ", st->reachable ? "true" : "false");
    s_json_str(st->error[0] ? st->error : NULL);
    printf(", \"schema_version\": ");
    if (st->version >= 0)
        printf("%d", st->version);
    else
        printf("null");
    printf(", \"latest_version\": %d, \"pending\": ", st->latest);
    if (st->version < 0) {
        printf("null");
    } else {
        printf("[");
        int shown = st->npending < 64 ? st->npending : 64;
        for (int i = 0; i < shown; i++) {
            printf(i ? ", " : "");
            s_json_str(st->pending[i]);
        }
        printf("]");
    }
    printf("}\n");
}

static void s_print_text(const s_status_t *st)
{
    printf("%-16s %s\n", "database", st->where);
    if (st->embedded) {
        if (st->pg_ok) {
            printf("%-16s %s (%s, runs as user %s)\n", "cluster", st->pg.data_dir,
                   st->exists ? "created" : "not created yet", st->pg.run_user);
            printf("%-16s %s\n", "socket", st->pg.sock_dir);
            printf("%-16s %s\n", "log", st->pg.log_file);
            printf("%-16s %s\n", "running",
                   st->running < 0 ? "unknown"
                   : st->running   ? "yes"
                                   : "no");
        } else {
            printf("%-16s %s\n", "cluster", st->pg_error);
        }
    }
    if (st->reachable)
        printf("%-16s yes\n", "reachable");
    else
        printf("%-16s no: %s\n", "reachable", st->error);
    if (st->version >= 0) {
        printf("%-16s %d (latest %d)\n", "schema version", st->version, st->latest);
        if (st->npending == 0) {
            printf("%-16s none\n", "pending");
        } else {
            printf("%-16s %d:", "pending", st->npending);
            int shown = st->npending < 64 ? st->npending : 64;
            for (int i = 0; i < shown; i++)
                printf(" %s", st->pending[i]);
            printf("%s (apply with 'kaizen db migrate')\n", shown < st->npending ? " ..." : "");
        }
    } else if (st->reachable) {
        printf("%-16s unknown: %s\n", "schema version", st->error);
    }
}

static int s_status(kz_cli_t *cli, int argc, char **argv)
{
    bool json = false;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_status_opts, NULL)) != -1) {
        if (c != 'j')
            return kz_cli_bad_option("db status", c, argv);
        json = true;
    }
    if (optind < argc)
        return kz_cli_usage("db status", "unexpected argument '%s'", argv[optind]);

    s_status_t *st = malloc(sizeof *st);
    if (!st)
        return kz_cli_error("db status", "out of memory");
    s_collect(cli, st);
    if (json)
        s_print_json(st);
    else
        s_print_text(st);
    int rc = st->reachable && st->version >= 0 ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
    free(st);
    if (fflush(stdout) != 0)
        rc = KZ_EXIT_FAILURE;
    return rc;
}

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    if (argc < 2)
        return kz_cli_usage("db", "missing subcommand (migrate, start, stop or status)");
    const char *sub = argv[1];
    if (strcmp(sub, "migrate") == 0)
        return s_migrate(cli, argc - 1, argv + 1);
    if (strcmp(sub, "start") == 0)
        return s_start_stop(cli, true, argc - 1, argv + 1);
    if (strcmp(sub, "stop") == 0)
        return s_start_stop(cli, false, argc - 1, argv + 1);
    if (strcmp(sub, "status") == 0)
        return s_status(cli, argc - 1, argv + 1);
    return kz_cli_usage("db", "'%s' is not a db subcommand (migrate, start, stop or status)", sub);
}

const kz_cli_cmd_t kz_cmd_db = {
    "db",    "the database: migrate the schema, start/stop the embedded PostgreSQL, status",
    s_usage, s_run,
    true,    s_opt_tables,
    NULL,
};
