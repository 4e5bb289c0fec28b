/*  cli.h - the `kaizen` command line: the command table and shared helpers

    cli/kaizen.c parses the global flags (-c FILE, --log-level,
    --log-format, --help, --version), finds the command in its table,
    takes the global options out of the command's arguments wherever they
    stand (`kaizen db start -c FILE`, `kaizen plans -c FILE show ID`: the
    command never sees them), answers `kaizen COMMAND --help` from the
    command's usage text without touching the config, loads the config
    when the command needs it and calls the command's run function.

    A new command is one file defining a kz_cli_cmd_t plus one line in
    the table of cli/kaizen.c (and one extern line here).

    Exit codes (docs/cli.md): 0 ok, 1 runtime error, 2 usage error; some
    commands add 3 (not found, timed out) and 4 (wrong state).
*/
#ifndef KZ_CLI_H_INCLUDED
#define KZ_CLI_H_INCLUDED

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "kz_config.h"
#include "kz_msg.h"
#include "kz_testsuite.h"

#ifndef KZ_VERSION
#define KZ_VERSION "0.1.0"
#endif

#define KZ_EXIT_OK      0
#define KZ_EXIT_FAILURE 1 /* runtime error: no broker, bad config, I/O */
#define KZ_EXIT_USAGE   2 /* unknown command or flag, bad argument */

/* What the dispatcher hands a command */
typedef struct {
    kz_config_t *cfg;        /* loaded config (NULL when the command has needs_config false) */
    const char *config_path; /* the file it came from, or NULL for defaults; for a command
                                with needs_config false, the -c FILE given (or NULL) */
} kz_cli_t;

/* Run the command. ARGV[0] is the command name, ARGV[1..] its arguments.
   Returns the process exit code. */
typedef int(kz_cli_run_fn)(kz_cli_t *cli, int argc, char **argv);

typedef struct {
    const char *name;    /* "monitor" */
    const char *summary; /* one line for `kaizen --help` */
    const char *usage;   /* the full text of `kaizen NAME --help` */
    kz_cli_run_fn *run;
    bool needs_config; /* load the config (and fail on a bad one) before run */
    /* Every option the command and its subcommands take: getopt_long
       tables (NULL-terminated list; NULL = none) and the short options
       ("fn:"; NULL = none). The dispatcher reads them only to know which
       words are an option's value, so that it takes out the global
       options - and nothing else - wherever they stand. A command must
       not use -c, --config, --log-level or --log-format itself. */
    const struct option *const *opts;
    const char *shortopts;
} kz_cli_cmd_t;

extern const kz_cli_cmd_t kz_cmd_monitor;
extern const kz_cli_cmd_t kz_cmd_keygen;
extern const kz_cli_cmd_t kz_cmd_stats;
extern const kz_cli_cmd_t kz_cmd_publish;
extern const kz_cli_cmd_t kz_cmd_call;
extern const kz_cli_cmd_t kz_cmd_up;       /* cli/up.c */
extern const kz_cli_cmd_t kz_cmd_down;     /* cli/down.c */
extern const kz_cli_cmd_t kz_cmd_status;   /* cli/status.c */
extern const kz_cli_cmd_t kz_cmd_report;   /* cli/report.c */
extern const kz_cli_cmd_t kz_cmd_doctor;   /* cli/doctor.c */
extern const kz_cli_cmd_t kz_cmd_logs;     /* cli/logs.c */
extern const kz_cli_cmd_t kz_cmd_db;       /* cli/db.c: db migrate|start|stop|status */
extern const kz_cli_cmd_t kz_cmd_run_once; /* cli/run_once.c */
extern const kz_cli_cmd_t kz_cmd_plans;    /* cli/plans.c: plans [show ID] */
extern const kz_cli_cmd_t kz_cmd_approve;  /* cli/plans.c */
extern const kz_cli_cmd_t kz_cmd_reject;   /* cli/plans.c */
extern const kz_cli_cmd_t kz_cmd_catalog;  /* cli/catalog.c */
extern const kz_cli_cmd_t kz_cmd_init;     /* cli/init.c */

/* Print "kaizen CMD: MESSAGE" and the hint "see 'kaizen CMD --help'" on
   stderr; returns KZ_EXIT_USAGE so callers write `return kz_cli_usage(...)`. */
int kz_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "kaizen CMD: MESSAGE" on stderr; returns KZ_EXIT_FAILURE */
int kz_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report the option getopt_long just refused (it returned '?' or ':'),
   using optopt/optind; returns KZ_EXIT_USAGE */
int kz_cli_bad_option(const char *cmd, int rc, char **argv);

/* Parse a non-negative decimal integer; 0 / -1 */
int kz_cli_parse_count(const char *text, long *value);

/* Format BYTES as "512 B", "3.4 KiB", "1.2 MiB" into BUF */
void kz_cli_human_bytes(double bytes, char *buf, size_t len);

/* Write TEXT[0..LEN) as a JSON string (quotes included) to OUT; bytes
   that are not valid UTF-8 become U+FFFD so the output is always valid */
void kz_cli_json_str(FILE *out, const char *text, size_t len);

/* Length of the valid UTF-8 sequence at P (at most N bytes), 0 when invalid */
size_t kz_cli_utf8_seq(const unsigned char *p, size_t n);

/* cli/json.c: JSON on the command line */

/* Parse the JSON text TEXT (any JSON value) and store it in the slot TO
   of MSG's arena: objects become maps, then arrays, strings, integers,
   reals, true/false and null. Duplicate keys and NUL in strings are
   refused. 0; -2 when TEXT is not JSON or nests too deep (ERR says where,
   "invalid JSON at line 1, column 7 (byte 6): ..."); -1 out of memory. */
int kz_cli_json_to_val(kz_msg_t *msg, kz_val_t *to, const char *text, char *err, size_t errlen);

/* A new envelope of TYPE whose body is the JSON object BODY_JSON (NULL:
   an empty body). On error prints "kaizen CMD: ..." and returns NULL
   with *RC the exit code: 1 for an unknown type (with the hint to
   proto/PROTOCOL.md) or no memory, 2 for bad JSON or a non-object. */
kz_msg_t *kz_cli_json_msg(const char *cmd, const char *type, const char *body_json, int *rc);

/* Check MSG against its type's schema and the limits by encoding it;
   prints the codec's error ("body.agent: required field is missing").
   KZ_EXIT_OK / KZ_EXIT_FAILURE */
int kz_cli_check_msg(const char *cmd, const kz_msg_t *msg);

/* Write VAL as JSON indented by two spaces per level, starting at
   column INDENT (no final newline) */
void kz_cli_print_json(FILE *out, const kz_val_t *val, int indent);

/* Shared by up, down, status, report, doctor and logs */

/* cli/status.c: ask the orchestrator's kaizen.status service once (a
   status.request, one attempt of TIMEOUT_MS through the broker on
   bus.endpoints.router). Returns the status.reply (its body is the
   status; kz_msg_destroy it) or NULL with ERRBUF: "no answer from
   kaizen.status on ENDPOINT", or the service's error reply */
kz_msg_t *kz_cli_status_call(const kz_config_t *cfg, int timeout_ms, char *errbuf, size_t errlen);

/* cli/status.c: MS as "850ms", "12.3s", "5m02s", "3h04m", "2d03h" into BUF */
void kz_cli_human_ms(int64_t ms, char *buf, size_t len);

/* cli/up.c: what `kaizen up` does, shared with `kaizen run-once`: under
   the lock STATE/run/up.lock create the missing sample targets
   (kz_cli_prepare_targets), then - unless kaizen already runs - clean up
   after a run that did not stop, check the bus endpoints, start the
   database and the orchestrator and wait for the agents. CMD names the
   command in messages ("kaizen CMD: ..."); OUT receives the summary
   ("kaizen is up: ..." or "kaizen is already running ...": stdout for up,
   stderr for run-once so its --json stays alone on stdout); progress goes
   to stderr. *STARTED (may be NULL): true when this call started kaizen.
   Ctrl-C while starting stops what was started; afterwards the signal
   handlers are the caller's again. KZ_EXIT_OK / KZ_EXIT_FAILURE */
int kz_cli_up(kz_cli_t *cli, const char *cmd, FILE *out, bool *started);

/* cli/samples.c: targets[].init_from. For each target whose path does not
   exist and that has init_from: copy that directory's regular files and
   directories (symbolic links only when they point inside it; never
   followed) to a new directory beside the path, `git init -b BRANCH`,
   commit everything as kaizen (hooks off), and rename it to the path;
   prints "created sample target NAME at PATH from DIR" on stderr. A path
   that exists is left alone (not a git repository: the scan reports it).
   The caller holds kz_state_lock. KZ_EXIT_OK, or KZ_EXIT_FAILURE after
   "kaizen CMD: ..." naming the target and what failed (nothing is left
   at the path then) */
int kz_cli_prepare_targets(const kz_config_t *cfg, const char *cmd);

/* The config's semantics on this host (lib/kz_config_check.h), before
   anything starts: every problem on stderr as "kaizen CMD: FILE:LINE:COL:
   KEY: what is wrong", then how many. KZ_EXIT_OK, or KZ_EXIT_FAILURE when
   there is one */
int kz_cli_config_check(const kz_config_t *cfg, const char *cmd);

/* cli/up.c: the directory of the running kaizen executable, where
   kaizen-broker, kaizen-orchestrator and the agents kaizen-NAME are
   installed (readlink /proc/self/exe). 0 / -1 */
int kz_cli_bin_dir(char *buf, size_t len);

/* cli/down.c: kill the processes a previous `kaizen up` under CFG's
   state directory left behind: kaizen programs in process group PGID
   (the orchestrator's pid from run/orchestrator.pid; 0 = none) or
   logging to STATE/logs (--log-file), never this process nor SPARE (a
   broker `kaizen up` adopts; 0 = none). SIGTERM, then SIGKILL after
   GRACE_MS. Returns how many there were, or -1 when some outlived
   SIGKILL (named on stderr) */
int kz_cli_kill_leftovers(const kz_config_t *cfg, pid_t pgid, pid_t spare, int grace_ms);

/* cli/down.c: the pid of a running kaizen-broker of CFG's run (logging
   under STATE/logs), or 0: the broker a crashed orchestrator left */
pid_t kz_cli_find_broker(const kz_config_t *cfg);

/* cli/down.c: true when PID is a live kaizen process of CFG's run: a
   kaizen executable whose --log-file lies under STATE/logs (a pid file
   left by a crash may name a pid reused since, even by a kaizen program
   of another state directory) */
bool kz_cli_pid_is_ours(const kz_config_t *cfg, pid_t pid);

/* cli/down.c: stop everything `kaizen up` started under CFG: SIGTERM to
   the orchestrator and up to TIMEOUT_MS for it to stop its agents and
   broker, then the leftovers (kz_cli_kill_leftovers), then the embedded
   database; removes stale pid files, the configured ipc:// socket
   files nobody listens on, and the worktrees under STATE/worktrees/
   TARGET in each configured target's repository
   (kz_git_worktrees_remove_under). The caller holds kz_state_lock. Progress on
   stderr. *WAS_RUNNING (may be NULL): whether anything was running.
   KZ_EXIT_OK / KZ_EXIT_FAILURE */
int kz_cli_stop(const kz_config_t *cfg, int timeout_ms, bool *was_running);

/* cli/logs.c: print the last LINES lines of the file PATH to OUT, each
   prefixed with PREFIX (may be ""). 0, -1 when it cannot be read */
int kz_cli_print_tail(FILE *out, const char *path, long lines, const char *prefix);

/* cli/tools.c: the checkers and test programs kaizen knows - a program
   (any of NAMES), the language whose targets use it, its Debian package */
typedef struct {
    const char *language;
    const char *names[3];
    const char *package;
} kz_cli_tool_t;
extern const kz_cli_tool_t kz_cli_tools[];
extern const size_t kz_cli_tools_count;

/* cli/tools.c: the Debian package of the program or tool NAME ("pytest":
   "python3-pytest"), or NULL when kaizen does not know it */
const char *kz_cli_tool_package(const char *name);

/* cli/tools.c: the name a recipe's ARGV runs: MOD for "python3 -m MOD",
   else argv[0]'s base name ("" for an empty argv) */
const char *kz_cli_program_name(char *const *argv, size_t argc);

/* cli/tools.c: whether the program of ARGV (ARGC words) can run here:
   argv[0] on PATH and, for "python3 -m MOD", MOD importable. true with
   DETAIL its path ("/usr/bin/python3 -m black"), false with DETAIL why
   ("program 'flake8' not found on PATH", "/usr/bin/python3 has no
   module 'x'") */
bool kz_cli_program_ready(char *const *argv, size_t argc, char *detail, size_t len);

/* cli/tools.c: run TARGET's tests at RUN->commit in a new temporary
   directory PREFIX.XXXXXX (a detached worktree and kaizen's work
   directory), removed after whatever happened. 0 (RUN judged, or
   run->error) / -1 out of memory */
int kz_cli_tests_in_tmp(const kz_target_config_t *target, const char *prefix,
                        kz_testsuite_run_t *run);

#endif
