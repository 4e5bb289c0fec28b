/*  kz_config.h - kaizen.yaml loaded with libyaml into typed structures

    Every key is known: an unknown key, a wrong type, a missing required
    value or a YAML syntax error fails with "FILE:LINE:COL: KEY: what is
    wrong" and nothing starts. examples/kaizen.yaml documents every key
    and its default. Durations accept 250ms, 5s, 2m, 1h or a plain number
    of milliseconds; sizes accept 512, 64KiB, 1MiB, 1GiB.
*/
#ifndef KZ_CONFIG_H_INCLUDED
#define KZ_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kz_log.h"
#include "kz_sandbox.h"

/* The directory under state_dir of the default ipc:// endpoints */
#define KZ_BUS_DIR "bus"
/* The directory under state_dir of the automatic CURVE keys (a tcp://
   endpoint without bus.curve.enabled; kz_keys.h) */
#define KZ_KEYS_DIR "keys"

/* Bus endpoints: clients connect to these; the broker binds to bind_* (or
   these when bind_* is unset). The defaults are ipc:// sockets in
   STATE/bus, a directory the broker keeps 0700. */
typedef struct {
    char *pub; /* events in: broker XSUB; default ipc://STATE/bus/pub.sock */
    char *sub; /* events out: broker XPUB; default ipc://STATE/bus/sub.sock */
    char
        *router; /* services and queue groups: broker ROUTER; default ipc://STATE/bus/router.sock */
    char *tap;   /* tap: broker PUB; default ipc://STATE/bus/tap.sock */
} kz_endpoints_t;

typedef struct {
    bool enabled;        /* default false; true when automatic */
    bool automatic;      /* bus.curve.enabled unset and a tcp:// endpoint: CURVE switched
                            on with the keys under STATE/keys (kz_keys_ensure) for every
                            path below the config leaves unset */
    char *broker_cert;   /* broker: its secret certificate file (zcert) */
    char *broker_public; /* clients: the broker's public certificate file */
    char *client_cert;   /* clients: their own secret certificate file */
    char *allow_dir;     /* broker: directory of allowed client public certificates */
    /* each process's own certificate by its role (default: client_cert);
       kz_config_bus_role() makes the right one client_cert */
    char *orchestrator_cert; /* the orchestrator (and a --node orchestrator) */
    char *agent_cert;        /* agents */
    char *operator_cert;     /* the kaizen CLI */
} kz_curve_config_t;

/* What one role may do on the bus (broker.rules.ROLE); a NULL list or tap
   means the built-in default (proto/PROTOCOL.md 1.5) */
typedef struct {
    char **publish; /* event type patterns: "plan.approved", "scan.*", "!plan.state", "*" */
    size_t publish_count;
    char **offer; /* service patterns */
    size_t offer_count;
    char **join; /* queue group patterns */
    size_t join_count;
    char **call; /* service patterns it may send requests to */
    size_t call_count;
    char *tap; /* "true" | "false" */
} kz_role_rules_t;

typedef struct {
    kz_role_rules_t agent, operator, orchestrator;
} kz_bus_rules_t;

typedef struct {
    kz_endpoints_t connect;  /* bus.endpoints */
    kz_endpoints_t bind;     /* bus.bind (NULL members = same as connect) */
    int heartbeat_ms;        /* bus.heartbeat, default 1000 */
    int heartbeat_liveness;  /* bus.liveness, default 3 missed heartbeats */
    int reconnect_ms;        /* bus.reconnect, default 250 */
    size_t max_message_size; /* bus.max_message_size, default 1MiB (ZMQ_MAXMSGSIZE) */
    int hwm;                 /* bus.hwm, default 100000 messages per socket */
    int call_timeout_ms;     /* bus.call_timeout, default 10s */
    int call_retries;        /* bus.call_retries, default 3 */
    kz_curve_config_t curve; /* bus.curve */
} kz_bus_config_t;

/* One durable queue group (broker.durable_groups) */
typedef struct {
    char *name;   /* the group's name, as its members JOIN it */
    char *prefix; /* topic prefix, as its members JOIN it ("" = every event) */
} kz_durable_group_t;

typedef struct {
    int group_queue_limit; /* broker.group_queue_limit, default 100000 waiting events per group */
    int group_inflight;    /* broker.group_inflight, default 4000 unacked per member */
    int max_deliveries;    /* broker.max_deliveries, default 5: then a group event is dropped */
    int service_queue_limit; /* broker.service_queue_limit, default 10000 waiting requests per service */
    int request_ttl_ms;    /* broker.request_ttl, default 60s: a queued request older is dropped */
    int stats_interval_ms; /* broker.stats_interval, default 0 = never log stats */
    kz_bus_rules_t rules;  /* broker.rules: enforced for CURVE identities */
    /* durability (docs/durability.md) */
    bool durable;                       /* broker.durable, default true */
    kz_durable_group_t *durable_groups; /* broker.durable_groups; none = the recorder's group */
    size_t durable_groups_count;
    size_t log_max; /* broker.log_max, default 4GiB: bytes of STATE/broker/log */
} kz_broker_config_t;

typedef struct {
    kz_log_level_t level; /* log.level, default info */
    bool json;            /* log.format: text | json, default text */
    size_t max_size;      /* log.max_size, default 10MiB: a log file is rotated beyond this */
    int keep;             /* log.keep, default 5 rotated files (NAME.log.1 .. NAME.log.5) */
} kz_logcfg_t;

/* database: where the orchestrator records and the CLI reads */
typedef struct {
    char *dsn;              /* database.dsn: libpq connection string or URI; NULL = the embedded
                               cluster under state_dir/db ($KAIZEN_DATABASE_URL wins) */
    int connect_timeout_ms; /* database.connect_timeout, default 5s */
    int batch_size;         /* database.batch_size, default 2000 messages per transaction at most */
    int flush_interval_ms; /* database.flush_interval, default 200ms: a partial batch waits no longer */
    int retry_max_ms;      /* database.retry_max, default 10s: longest wait between reconnects */
    size_t spool_max;      /* database.spool_max, default 1GiB: spool file cap during an outage */
} kz_db_config_t;

/* supervisor: how kaizen-orchestrator runs this host's processes */
typedef struct {
    bool broker;            /* supervisor.broker, default true: start and supervise kaizen-broker
                               here (false on hosts whose orchestrator runs with --node) */
    int restart_intensity;  /* supervisor.restart_intensity, default 5 restarts ... */
    int restart_window_ms;  /* supervisor.restart_window, default 60s: ... within this window,
                               one more marks the agent failed */
    int backoff_initial_ms; /* supervisor.backoff_initial, default 500ms: first restart delay */
    int backoff_max_ms;     /* supervisor.backoff_max, default 30s: the delay doubles up to this */
    int start_timeout_ms;   /* supervisor.start_timeout, default 10s: wait for a layer's
                               agent.hello before starting the next layer */
    int stop_timeout_ms;    /* supervisor.stop_timeout, default 10s: SIGTERM, then SIGKILL */
    int stale_after_ms;     /* supervisor.stale_after, default 15s without heartbeat: stale */
    int gone_after_ms;      /* supervisor.gone_after, default 60s without heartbeat: gone */
} kz_supervisor_config_t;

typedef struct {
    char *name;      /* agents[].name, required: "code-health" runs kaizen-code-health */
    int instances;   /* default 1 */
    int interval_ms; /* default 60s; 0 = only on demand */
    char *host;      /* default NULL = the main host (the orchestrator without --node);
                        a node orchestrator runs only the agents naming its host */
    char **args;     /* extra argv, NULL-terminated (may be NULL) */
    size_t args_count;
} kz_agent_config_t;

/* A per-rule override of a tool's severity and category (tools[].rules[]) */
typedef struct {
    char *match;    /* required: a glob (fnmatch) on the finding's rule, e.g. "E9*" */
    char *severity; /* NULL = the tool's; info | low | medium | high | critical */
    char *category; /* NULL = the tool's; style | bug | type | security | ... */
} kz_rule_config_t;

/* A tool recipe (tools[]): how code-health and the reviewer run one checker.
   The built-in catalog (catalog/NAME.yaml, compiled in) holds a recipe for
   every tool kaizen knows; tools[] of the config adds to it or replaces a
   catalog recipe of the same name (enabled: false switches one off). */
typedef struct {
    char *name;      /* tools[].name, required, unique: "flake8" */
    bool enabled;    /* default true; false: the catalog's recipe of this name is not run */
    char *gate;      /* "chosen": runs only on evidence the project chose it (requires, which
                         must not be empty) - style tools; "always": runs on every target of
                         its languages - bug and security finders. Default: chosen when
                         requires is set, else always */
    char **settings; /* the project files the tool reads its settings from (documentation,
                         and part of what decides whether a scan may reuse its findings) */
    size_t settings_count;
    char **exclude; /* globs (as files) of tracked files it never checks */
    size_t exclude_count;
    char **languages; /* NULL-terminated; empty = every language */
    size_t languages_count;
    char **files; /* globs (fnmatch, on the path relative to the target, and on its base
                     name) of the tracked files it checks; empty = every tracked file */
    size_t files_count;
    char **argv; /* required; the element "{files}" becomes the files to check, "{root}"
                    the directory it runs in; run there, never through a shell */
    size_t argv_count;
    char *format;            /* required: gcc | sarif | pylint-json | files */
    char *category;          /* default category, default "style" */
    char *severity;          /* default severity, default "low" */
    kz_rule_config_t *rules; /* per-rule overrides, first match wins */
    size_t rules_count;
    char **ignore; /* globs on rules whose findings are dropped (known false positives) */
    size_t ignore_count;
    char *min_severity; /* NULL = keep all; else findings of a lower severity (after the
                           overrides) are dropped: a tool's low-confidence classes */
    char **requires;    /* evidence that the target chose the tool: "FILE" (exists) or
                        "FILE:TEXT" (exists and contains TEXT); any one is enough;
                        empty = none needed */
    size_t requires_count;
    char **exit_ok; /* exit codes meaning "ran": "0", "1", "0-31"; default 0 and 1 */
    size_t exit_ok_count;
    int timeout_ms; /* default 10m */
    int batch;      /* files per invocation, 0 (default) = all in one; the runs of one
                       tool may then go in parallel */
    char **env;     /* extra "K=V" environment entries */
    size_t env_count;
    char **hooks; /* ids of the project's pre-commit hooks that run this tool (their args,
                     files and exclude apply; lib/kz_project.h); empty = [name] */
    size_t hooks_count;
    char **version; /* argv printing the installed version ("codespell --version"); empty =
                       the version is not compared with the project's pin */
    size_t version_count;
    char *pin_repo;     /* the pre-commit repository whose hook rev pins this tool's version:
                       "codespell-project/codespell"; NULL = no pin read */
    const char *origin; /* the catalog file it comes from ("catalog/python.yaml"), NULL when
                           the config defines it (not owned) */
} kz_tool_config_t;

/* A fixer recipe (fixers[]): how code-refactorer fixes findings of a tool */
typedef struct {
    char *name;   /* fixers[].name, required, unique: "black" */
    bool enabled; /* default true; false: the catalog's fixer of this name is not used */
    char *tool;   /* required: the tool (tools[].name) whose findings it fixes */
    char **rules; /* globs on the rules it fixes; empty = every rule of the tool */
    size_t rules_count;
    char **fixes; /* built-in predicates a finding must also pass to be planned
                     (kz_fixable.h): single-suggestion, not-identifier, has-fix */
    size_t fixes_count;
    char **exclude; /* globs (fnmatch, on the path and on its base name) of files whose
                       findings it leaves alone ("__init__.py" for autoflake) */
    size_t exclude_count;
    char **defer_to; /* fixer names: when one of them has a plan for a file in the same
                        scan, this fixer gets none there (autopep8 defers to black) */
    size_t defer_to_count;
    char **argv; /* required; "{files}" becomes the plan's files */
    size_t argv_count;
    char *output;   /* "files" (default): it changes the files; "diff": its stdout is a
                     patch the refactorer applies to the plan's files (git apply) */
    char *service;  /* the execution service that runs it, default "exec.refactor" */
    double effort;  /* estimated effort per file, default 1 */
    double risk;    /* 0..1, default 0.2 */
    int timeout_ms; /* default 5m */
    char **env;
    size_t env_count;
    char *subject;      /* fixers[].subject: the commit subject's template ({n} {s} {file}
                          {tool} {rule}, kz_commitmsg.h), default "Fix {n} {tool}
                          finding{s} in {file}" */
    char *commit_type;  /* fixers[].commit_type: the Conventional Commits type used when
                          the target's history follows them, default "style" */
    const char *origin; /* as kz_tool_config_t.origin */
} kz_fixer_config_t;

/* policy: what kaizen may do with the plans */
typedef struct {
    double require_approval;  /* policy.require_approval, default 0.8: plans with risk at or above
                                wait in awaiting_approval for a person (above 1 = never) */
    char *apply;              /* policy.apply, default "branch": keep the plan branch and add the
                                commit to integration_branch; "merge": fast-forward the target's
                                own branch (only when its working tree is clean) */
    char *integration_branch; /* policy.integration_branch, default "kaizen/improvements" */
    int max_open_plans;       /* policy.max_open_plans, default 20 plans not yet final */
    int max_plans_per_hour;   /* policy.max_plans_per_hour, default 60 */
    int max_concurrent;       /* policy.max_concurrent, default 2 plans executing/validating */
    int max_files;            /* policy.max_files, default 20 files changed by one plan */
    int max_lines;            /* policy.max_lines, default 500 lines added + removed */
    char **allowed_paths;     /* policy.allowed_paths: globs; empty = any path */
    size_t allowed_paths_count;
    char **validators; /* policy.validators, default [validate.tests, validate.review] */
    size_t validators_count;
    int exec_timeout_ms;     /* policy.exec_timeout, default 5m per execution call */
    int validate_timeout_ms; /* policy.validate_timeout, default 15m per validation call */
    int retries;             /* policy.retries, default 1: more attempts of a call that
                                got no reply */
    char *commit_author;     /* policy.commit_author, default "kaizen <kaizen@localhost>": the
                            author and committer of every commit kaizen makes */
    bool group;              /* policy.group, default false: one plan per fixer across the
                            files of a target (at most max_files), split per file when
                            it is rejected or fails */
} kz_policy_config_t;

/* scan: how code-health scans */
typedef struct {
    int parallelism;  /* scan.parallelism, default 0 = the number of cores */
    int batch_size;   /* scan.batch_size, default 500 findings per finding.batch */
    bool incremental; /* scan.incremental, default true */
} kz_scan_config_t;

typedef struct {
    char *name;       /* targets[].name, required, unique */
    char *path;       /* required */
    char **languages; /* NULL-terminated */
    size_t languages_count;
    char **test; /* argv of the test command, NULL-terminated (may be NULL); run in a
                    worktree of the target, never through a shell; "{junit}" becomes the
                    path of a JUnit XML report the runner then reads */
    size_t test_count;
    char *branch;        /* default "main" */
    int test_timeout_ms; /* targets[].test_timeout, default 10m */
    char *init_from;     /* targets[].init_from: when path does not exist, `kaizen up` and
                        `run-once` create it as a new git repository (branch `branch`)
                        whose first commit holds this directory's files (the samples) */
    char **env;          /* targets[].env: "NAME=VALUE" entries added to the environment of every
                   run of the test command (NULL-terminated, may be NULL; a later entry
                   of the same NAME wins), e.g. "PYTHONPATH=src" */
    size_t env_count;
    bool trust_owner;  /* targets[].trust_owner, default false: a repository (or its .git)
                         owned by another user than kaizen's is refused unless true (like
                         git's safe.directory); kz_git_check_owner */
    bool test_network; /* targets[].test_network, default false: the test command keeps the
                          host's network inside the sandbox (kz_sandbox.h) */
} kz_target_config_t;

/* Where a key's value was written (kz_config_mark) */
typedef struct {
    char *key;     /* dotted path: "targets[0].path", "targets[0].languages[1]" */
    int line, col; /* 1-based */
} kz_config_mark_t;

typedef struct {
    char *path;             /* the file it was loaded from, or NULL */
    char *state_dir;        /* state_dir, default ~/.local/state/kaizen, /var/lib/kaizen for
                               root ($KAIZEN_STATE_DIR wins) */
    int agent_heartbeat_ms; /* agent_heartbeat, default 5s: agent.heartbeat period */
    kz_logcfg_t log;
    kz_bus_config_t bus;
    kz_broker_config_t broker;
    kz_db_config_t database;
    kz_supervisor_config_t supervisor;
    kz_agent_config_t *agents;
    size_t agents_count;
    kz_target_config_t *targets;
    size_t targets_count;
    kz_tool_config_t *tools;
    size_t tools_count;
    kz_fixer_config_t *fixers;
    size_t fixers_count;
    kz_policy_config_t policy;
    kz_scan_config_t scan;
    kz_sandbox_config_t sandbox; /* sandbox: how tools, fixers and tests run (kz_sandbox.h) */
    bool catalog; /* catalog, default true: the built-in recipes (catalog/NAME.yaml) are merged
                     under tools[] and fixers[]; false: only the config's own */
    kz_config_mark_t *marks; /* the position of every key the file sets (kz_config_mark) */
    size_t marks_count;
} kz_config_t;

/* One file of the built-in recipe catalog, compiled in by
   scripts/embed-catalog: its path ("catalog/python.yaml") and text, which
   holds only tools: and fixers: */
typedef struct {
    const char *name;
    const char *text;
} kz_catalog_file_t;
extern const kz_catalog_file_t kz_catalog[];
extern const size_t kz_catalog_count;

/* The agents a config without an agents: key runs: the improvement loop
   (code-health every 10 minutes, every other agent on demand) */
extern const char *const kz_config_loop_agents[];

/* Lookups by name; NULL when absent */
const kz_target_config_t *kz_config_target(const kz_config_t *self, const char *name);
const kz_tool_config_t *kz_config_tool(const kz_config_t *self, const char *name);
const kz_fixer_config_t *kz_config_fixer(const kz_config_t *self, const char *name);

/* A configuration holding every default (the loop's agents, the
   catalog's recipes, no targets) */
kz_config_t *kz_config_default(void);

/* Bus roles: "orchestrator", "agent", "operator" (proto/PROTOCOL.md 1.5) */
#define KZ_ROLE_ORCHESTRATOR "orchestrator"
#define KZ_ROLE_AGENT        "agent"
#define KZ_ROLE_OPERATOR     "operator"

/* Make the certificate of ROLE (bus.curve.ROLE_cert, when set) this
   process's bus.curve.client_cert. 0, or -1 when out of memory. */
int kz_config_bus_role(kz_config_t *self, const char *role);

/* Load PATH. NULL on failure with ERRBUF = "PATH:LINE:COL: KEY: what is
   wrong" (KEY is the dotted path, e.g. "bus.heartbeat"). */
kz_config_t *kz_config_load(const char *path, char *errbuf, size_t errlen);

/* Same, from a buffer; NAME is used in messages */
kz_config_t *kz_config_parse(const char *name, const char *text, size_t len, char *errbuf,
                             size_t errlen);

void kz_config_destroy(kz_config_t **self_p);

/* Where KEY ("targets[0].path") was written in the file: its value's LINE
   and COL (1-based). A key the file does not set is looked up by its
   parents in turn ("targets[0]"), so a default is placed at the entry that
   took it. 0, or -1 when not even a parent is in the file (LINE, COL 1) */
int kz_config_mark(const kz_config_t *self, const char *key, int *line, int *col);

/* The configuration every kaizen program uses: PATH when given, else
   kz_config_default_path(), else the defaults. NULL with ERRBUF (the
   loader's "FILE:LINE:COL: KEY: what is wrong") on failure. Sets the
   process's umask to 077 first (kz_state_umask): the state is private. */
kz_config_t *kz_config_open(const char *path, char *errbuf, size_t errlen);

/* The config file to use when none is given: $KAIZEN_CONFIG, else
   ./kaizen.yaml if it exists, else NULL (use defaults) */
const char *kz_config_default_path(void);

/* Split an identity "Name <email>" (policy.commit_author) into NAME and
   EMAIL: a non-empty name without '<', '>' or control characters, an
   email without spaces, '<', '>' or control characters, nothing after
   '>'. 0 / -1 with WHY. */
int kz_config_ident(const char *text, char *name, size_t nlen, char *email, size_t elen, char *why,
                    size_t wlen);

/* Parse "250ms" "5s" "2m" "1h" "1500" -> ms; "64KiB" "1MiB" "100" -> bytes. 0 / -1 */
int kz_parse_duration_ms(const char *text, int *ms);
int kz_parse_size(const char *text, size_t *bytes);

#endif
