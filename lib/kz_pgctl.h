/*  kz_pgctl.h - the embedded PostgreSQL cluster under the state directory

    Layout:  STATE/db/data     the cluster (initdb), mode 0700
             STATE/db/run      its unix socket directory (no TCP port:
                               listen_addresses = '')
             STATE/logs/postgres.log  the server's log
    The server programs are Debian's: /usr/lib/postgresql/N/bin (highest
    N), or `pg_config --bindir`. The cluster has one superuser "kaizen"
    and a database "kaizen"; local connections are trusted, and only
    the owner of the socket directory (mode 0700) can reach the socket.

    PostgreSQL refuses to run as root. When kaizen runs as root the
    cluster belongs to, and the server runs as, an unprivileged system
    user: "postgres" (created by Debian's postgresql package); without
    it the call fails saying how to get it. Children drop privileges with initgroups/setgid/setuid before
    exec'ing initdb/pg_ctl; they never run a shell. That user must be able
    to reach STATE/db: when a parent directory is not searchable by it,
    the call fails naming the directory and the chmod that fixes it.
*/
#ifndef KZ_PGCTL_H_INCLUDED
#define KZ_PGCTL_H_INCLUDED

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char state_dir[PATH_MAX];
    char data_dir[PATH_MAX]; /* STATE/db/data */
    char sock_dir[PATH_MAX]; /* STATE/db/run */
    char log_file[PATH_MAX]; /* STATE/logs/postgres.log */
    char bin_dir[PATH_MAX];  /* where initdb and pg_ctl are */
    bool drop_privileges;    /* we are root: run the server as run_user */
    char run_user[64];       /* "postgres" when root, else our own user name */
    uid_t uid;
    gid_t gid;
} kz_pg_t;

/* Fill PG for STATE_DIR: paths, server programs, the user to run as.
   No side effects. 0, or -1 with ERRBUF (no PostgreSQL server programs
   installed: "install them with: apt-get install -y postgresql"; root
   without a postgres user; a socket path too long for AF_UNIX) */
int kz_pg_init(kz_pg_t *pg, const char *state_dir, char *errbuf, size_t errlen);

/* 1 when the cluster exists (initdb done), 0 when not */
int kz_pg_exists(const kz_pg_t *pg);

/* 1 when its server is running and accepts connections, 0 when not
   (a stale postmaster.pid of a dead server counts as not running),
   -1 with ERRBUF when that cannot be told */
int kz_pg_running(const kz_pg_t *pg, char *errbuf, size_t errlen);

/* Create the cluster when it does not exist (initdb -U kaizen, then the
   settings above, then createdb kaizen on first start), and start the
   server when it is not running; waits up to TIMEOUT_MS until it
   accepts connections. Idempotent. *STARTED (may be NULL) tells whether
   this call started it. Messages to the user (e.g. "running the
   embedded PostgreSQL as user 'postgres' (PostgreSQL refuses to run as
   root)") go to kz_info. 0, or -1 with ERRBUF quoting the server's log
   tail when it failed to start. */
int kz_pg_start(kz_pg_t *pg, int timeout_ms, bool *started, char *errbuf, size_t errlen);

/* Stop the server (fast shutdown: clients are disconnected, the data is
   safe) within TIMEOUT_MS, then immediate. 0 when it is stopped (or was
   not running), -1 with ERRBUF */
int kz_pg_stop(kz_pg_t *pg, int timeout_ms, char *errbuf, size_t errlen);

#endif
