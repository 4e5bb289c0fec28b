/*  kz_db.h - PostgreSQL connections and schema migrations (libpq)

    Where the database is: $KAIZEN_DATABASE_URL, else database.dsn from
    the config, else the embedded cluster under STATE/db (kz_pgctl.h),
    reached through its unix socket directory STATE/db/run as user
    "kaizen", database "kaizen". Every connection is made with
    PQconnectdbParams (parameters only, expand_dbname for the DSN),
    application_name set, connect_timeout from database.connect_timeout
    and the session TimeZone forced to UTC (the seed's TIMESTAMP columns
    hold UTC). Every statement uses parameters (PQexecParams or prepared
    statements); nothing is built from data. Every result is checked.

    Migrations are the numbered files db/migrations/NNNN_what.sql,
    compiled into the binaries (scripts/embed-sql -> kz_migrations).
    kz_db_migrate applies those not yet recorded in schema_migrations, in
    order, each in its own transaction together with its
    schema_migrations row, so a failing migration leaves nothing behind
    and the ones before it applied. A advisory lock keeps two migrating
    processes from racing.
*/
#ifndef KZ_DB_H_INCLUDED
#define KZ_DB_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "kz_config.h"

typedef struct {
    int version;      /* NNNN of the file name */
    const char *name; /* "0001_init.sql" */
    const char *sql;
} kz_migration_t;

/* The compiled-in migrations, sorted by version (generated) */
extern const kz_migration_t kz_migrations[];
extern const size_t kz_migrations_count;

/* The DSN in use: $KAIZEN_DATABASE_URL, else cfg->database.dsn, else NULL
   (the embedded cluster) */
const char *kz_db_dsn(const kz_config_t *cfg);
/* True when the embedded cluster is the database (no DSN) */
bool kz_db_embedded(const kz_config_t *cfg);

/* For people: "embedded cluster in STATE/db" or the DSN with any
   password replaced by "***" */
void kz_db_describe(const kz_config_t *cfg, char *buf, size_t len);

/* Connect as APP (application_name, e.g. "kaizen-orchestrator").
   NULL with ERRBUF on failure, e.g. "database unreachable (embedded
   cluster in /x/db): connection to server on socket ... failed: No such
   file or directory; start it with 'kaizen up' or 'kaizen db start'" */
PGconn *kz_db_connect(const kz_config_t *cfg, const char *app, char *errbuf, size_t errlen);

/* Run SQL with N text PARAMS (NULL entries are SQL NULL). Returns the
   result when its status is COMMAND_OK or TUPLES_OK (PQclear it), else
   NULL with ERRBUF holding the server's message (first line, plus the
   detail and the position when given) */
PGresult *kz_db_exec(PGconn *db, const char *sql, int n, const char *const *params, char *errbuf,
                     size_t errlen);

/* ITEMS (N strings) as the text of a PostgreSQL text[] literal,
   '{"a","b\\"c"}', for a $n::text[] parameter (a parameter, never SQL
   text). malloc'd; NULL when out of memory */
char *kz_db_text_array(const char *const *items, size_t n);

/* Apply the pending migrations: the compiled-in ones, or the files
   DIR/NNNN_*.sql when DIR is not NULL (tests and development). *APPLIED
   (may be NULL) gets how many were applied now. 0, or -1 with ERRBUF
   naming the file and the server's message; the failing migration is
   rolled back entirely. */
int kz_db_migrate(PGconn *db, const char *dir, int *applied, char *errbuf, size_t errlen);

/* The highest applied version, 0 for none, -1 with ERRBUF */
int kz_db_schema_version(PGconn *db, char *errbuf, size_t errlen);

#endif
