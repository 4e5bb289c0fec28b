/*  kz_state.h - the state directory: pid files, logs, the up/down lock

    STATE (config state_dir) holds:
      run/orchestrator.pid   the orchestrator kaizen up started (it leads
                             its own session: pgid = pid, and the broker
                             and agents it starts stay in that group)
      run/up.lock            flock'd by kaizen up / down while they work
      logs/NAME.log          one file per process, rotated by size:
                             broker.log, orchestrator.log,
                             AGENT.INSTANCE.log (code-health.0.log),
                             postgres.log, up.log
      spool/recorder.spool   the recorder's spool while the database is away
      db/                    the embedded cluster (kz_pgctl.h)
*/
#ifndef KZ_STATE_H_INCLUDED
#define KZ_STATE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "kz_config.h"

/* STATE/REL into BUF. 0, or -1 when it does not fit */
int kz_state_path(const kz_config_t *cfg, const char *rel, char *buf, size_t len);

/* Create STATE and STATE/{run,logs,spool} (mode 0755 for STATE so an
   unprivileged database user can reach STATE/db; 0700 for spool). 0 / -1
   with ERRBUF */
int kz_state_init(const kz_config_t *cfg, char *errbuf, size_t errlen);

/* The log file of process NAME ("broker", "orchestrator",
   "code-health.0"): STATE/logs/NAME.log */
int kz_state_log_path(const kz_config_t *cfg, const char *name, char *buf, size_t len);

/* Write PID to PATH atomically (temp file + rename). 0 / -1 */
int kz_pidfile_write(const char *path, pid_t pid);
/* The pid in PATH, 0 when the file is missing or unreadable */
pid_t kz_pidfile_read(const char *path);
/* True when PID runs and its executable's base name starts with "kaizen"
   (a pid file left by a crash may name a pid reused by something else) */
bool kz_pid_is_kaizen(pid_t pid);

/* mkdir -p DIR: parents 0755, DIR itself MODE. 0 / -1 with ERRBUF */
int kz_mkdirs(const char *dir, mode_t mode, char *errbuf, size_t errlen);
/* rm -rf PATH: symlinks are removed, never followed; a missing PATH is
   fine. 0 / -1 with ERRBUF */
int kz_rmtree(const char *path, char *errbuf, size_t errlen);

/* Create a new private directory PREFIX.XXXXXX under UNDER (NULL or "":
   $TMPDIR, else /tmp) and put its path in BUF. 0 / -1 with ERRBUF */
int kz_tmpdir_new(const char *under, const char *prefix, char *buf, size_t len, char *errbuf,
                  size_t errlen);

/* Take the exclusive lock STATE/run/up.lock, waiting up to TIMEOUT_MS.
   Returns the fd to close to release it, or -1 with ERRBUF */
int kz_state_lock(const kz_config_t *cfg, int timeout_ms, char *errbuf, size_t errlen);

#endif
