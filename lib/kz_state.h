/*  kz_state.h - the state directory: pid files, logs, the up/down lock

    The state is private (docs/security.md, "Private state"): every kaizen
    program runs under umask 077 (kz_state_umask, from kz_config_open);
    STATE is owned by the user kaizen runs as and writable by nobody else
    (kz_state_check refuses anything else); STATE, STATE/worktrees and
    STATE/worktrees/<target> are 0711 (the embedded PostgreSQL's user and
    the sandbox's user traverse them, without listing them), every other
    directory is 0700 (STATE/logs 0711 while the embedded PostgreSQL runs
    as another user: pg_ctl opens logs/postgres.log); files are 0600
    (0640 where another user reads them), opened with O_NOFOLLOW
    (kz_file_open): a symlink planted in their place is never followed.

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
#include <stdio.h>
#include <sys/types.h>

#include "kz_config.h"

/* STATE/REL into BUF. 0, or -1 when it does not fit */
int kz_state_path(const kz_config_t *cfg, const char *rel, char *buf, size_t len);

/* umask 077: what a kaizen program creates is its user's alone unless it
   says otherwise (kz_config_open calls it, so every program does) */
void kz_state_umask(void);

/* Create STATE (0711) and STATE/{run,logs,spool} (0700) and
   STATE/worktrees (0711), after kz_state_check. A STATE of ours that is
   more open than 0711 (0755 from older versions) is tightened to 0711,
   and so are its subdirectories to their modes, saying so once in the
   log. 0 / -1 with ERRBUF */
int kz_state_init(const kz_config_t *cfg, char *errbuf, size_t errlen);

/* The state directory DIR, when it exists, is a directory (not a
   symlink) owned by the effective user and not writable by group or
   other. 0 (also when DIR does not exist yet) / -1 with ERRBUF saying
   what is wrong and the chown / chmod that fixes it */
int kz_state_check_dir(const char *dir, char *errbuf, size_t errlen);

/* open(PATH, FLAGS | O_NOFOLLOW | O_CLOEXEC, MODE) for a file kaizen
   writes (FLAGS holds O_WRONLY / O_RDWR and O_CREAT, O_APPEND, O_TRUNC,
   O_EXCL as needed): a symlink in PATH's place fails with ELOOP. An
   existing file of ours more open than MODE is narrowed to MODE. fd / -1
   with errno */
int kz_file_open(const char *path, int flags, mode_t mode);
/* kz_file_open as a stdio stream: HOW "w" (truncate), "a" (append) or
   "x" (new file only). NULL with errno */
FILE *kz_file_fopen(const char *path, const char *how, mode_t mode);

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

/* mkdir -p DIR: missing parents 0711 (searchable: the embedded
   PostgreSQL reaches STATE/db), DIR itself MODE when this call
   creates it (chmod: whatever the umask). 0 / -1 with ERRBUF */
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
