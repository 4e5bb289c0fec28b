/*  cli.h - the `kaizen` command line: the command table and shared helpers

    cli/kaizen.c parses the global flags (-c FILE, --log-level,
    --log-format, --help, --version), finds the command in its table,
    answers `kaizen COMMAND --help` from the command's usage text without
    touching the config, loads the config when the command needs it and
    calls the command's run function.

    A new command is one file defining a kz_cli_cmd_t plus one line in
    the table of cli/kaizen.c (and one extern line here).

    Exit codes (docs/cli.md): 0 ok, 1 runtime error, 2 usage error.
*/
#ifndef KZ_CLI_H_INCLUDED
#define KZ_CLI_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kz_config.h"
#include "kz_msg.h"

#ifndef KZ_VERSION
#define KZ_VERSION "0.1.0"
#endif

#define KZ_EXIT_OK      0
#define KZ_EXIT_FAILURE 1 /* runtime error: no broker, bad config, I/O */
#define KZ_EXIT_USAGE   2 /* unknown command or flag, bad argument */

/* What the dispatcher hands a command */
typedef struct {
    kz_config_t *cfg;        /* loaded config (NULL when the command has needs_config false) */
    const char *config_path; /* the file it came from, or NULL for defaults */
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
} kz_cli_cmd_t;

extern const kz_cli_cmd_t kz_cmd_monitor;
extern const kz_cli_cmd_t kz_cmd_keygen;
extern const kz_cli_cmd_t kz_cmd_stats;
extern const kz_cli_cmd_t kz_cmd_publish;
extern const kz_cli_cmd_t kz_cmd_call;

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

#endif
