/*  test_config.c - kz_config: the example file, defaults, every error class
    with its exact "FILE:LINE:COL: KEY: message", durations, sizes, path
    resolution and environment overrides. Runs from the repository root.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_config.h"

static kz_config_t *s_parse(const char *text, char *err, size_t len)
{
    return kz_config_parse("/etc/kz/t.yaml", text, strlen(text), err, len);
}

/* Parsing TEXT fails with exactly EXPECTED */
static void s_expect_error(const char *text, const char *expected)
{
    char err[512] = "";
    kz_config_t *cfg = s_parse(text, err, sizeof err);
    if (cfg)
        fail_msg("config loaded but expected: %s\n--- input:\n%s", expected, text);
    assert_string_equal(err, expected);
}

static void s_check_defaults(const kz_config_t *c)
{
    assert_int_equal(c->agent_heartbeat_ms, 5000);
    assert_int_equal(c->log.level, KZ_LOG_INFO);
    assert_false(c->log.json);
    /* ipc:// sockets in the private STATE/bus */
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "ipc://%s/bus/pub.sock", c->state_dir);
    assert_string_equal(c->bus.connect.pub, want);
    snprintf(want, sizeof want, "ipc://%s/bus/sub.sock", c->state_dir);
    assert_string_equal(c->bus.connect.sub, want);
    snprintf(want, sizeof want, "ipc://%s/bus/router.sock", c->state_dir);
    assert_string_equal(c->bus.connect.router, want);
    snprintf(want, sizeof want, "ipc://%s/bus/tap.sock", c->state_dir);
    assert_string_equal(c->bus.connect.tap, want);
    assert_null(c->bus.bind.pub);
    assert_null(c->bus.bind.sub);
    assert_null(c->bus.bind.router);
    assert_null(c->bus.bind.tap);
    assert_int_equal(c->bus.heartbeat_ms, 1000);
    assert_int_equal(c->bus.heartbeat_liveness, 3);
    assert_int_equal(c->bus.reconnect_ms, 250);
    assert_int_equal(c->bus.max_message_size, 1 << 20);
    assert_int_equal(c->bus.hwm, 100000);
    assert_int_equal(c->bus.call_timeout_ms, 10000);
    assert_int_equal(c->bus.call_retries, 3);
    assert_false(c->bus.curve.enabled);
    assert_null(c->bus.curve.broker_cert);
    assert_null(c->bus.curve.broker_public);
    assert_null(c->bus.curve.client_cert);
    assert_null(c->bus.curve.allow_dir);
    assert_int_equal(c->log.max_size, 10u << 20);
    assert_int_equal(c->log.keep, 5);
    assert_null(c->database.dsn);
    assert_int_equal(c->database.connect_timeout_ms, 5000);
    assert_int_equal(c->database.batch_size, 2000);
    assert_int_equal(c->database.flush_interval_ms, 200);
    assert_int_equal(c->database.retry_max_ms, 10000);
    assert_int_equal(c->database.spool_max, (size_t)1 << 30);
    assert_true(c->supervisor.broker);
    assert_int_equal(c->supervisor.restart_intensity, 5);
    assert_int_equal(c->supervisor.restart_window_ms, 60000);
    assert_int_equal(c->supervisor.backoff_initial_ms, 500);
    assert_int_equal(c->supervisor.backoff_max_ms, 30000);
    assert_int_equal(c->supervisor.start_timeout_ms, 10000);
    assert_int_equal(c->supervisor.stop_timeout_ms, 10000);
    assert_int_equal(c->supervisor.stale_after_ms, 15000);
    assert_int_equal(c->supervisor.gone_after_ms, 60000);
    assert_int_equal(c->broker.group_queue_limit, 100000);
    assert_int_equal(c->broker.group_inflight, 4000);
    assert_int_equal(c->broker.max_deliveries, 5);
    assert_int_equal(c->broker.service_queue_limit, 10000);
    assert_int_equal(c->broker.request_ttl_ms, 60000);
    assert_int_equal(c->broker.stats_interval_ms, 0);
    assert_non_null(c->state_dir);
    assert_true(c->state_dir[0] == '/');
}

/* The defaults of the loop's sections: policy, scan */
static void s_check_loop_defaults(const kz_config_t *c)
{
    assert_true(c->policy.require_approval > 0.79 && c->policy.require_approval < 0.81);
    assert_string_equal(c->policy.apply, "branch");
    assert_string_equal(c->policy.integration_branch, "kaizen/improvements");
    assert_int_equal(c->policy.max_open_plans, 20);
    assert_int_equal(c->policy.max_plans_per_hour, 60);
    assert_int_equal(c->policy.max_concurrent, 2);
    assert_int_equal(c->policy.max_files, 20);
    assert_int_equal(c->policy.max_lines, 500);
    assert_int_equal(c->policy.allowed_paths_count, 0);
    assert_int_equal(c->policy.validators_count, 2);
    assert_string_equal(c->policy.validators[0], "validate.tests");
    assert_string_equal(c->policy.validators[1], "validate.review");
    assert_string_equal(c->policy.commit_author, "kaizen <kaizen@localhost>");
    assert_false(c->policy.group);
    assert_null(c->policy.validators[2]);
    assert_int_equal(c->policy.exec_timeout_ms, 300000);
    assert_int_equal(c->policy.validate_timeout_ms, 900000);
    assert_int_equal(c->policy.retries, 1);
    assert_int_equal(c->scan.parallelism, 0);
    assert_int_equal(c->scan.batch_size, 500);
    assert_true(c->scan.incremental);
}

static void test_example_file(void **state)
{
    (void)state;
    char err[512] = "";
    unsetenv("KAIZEN_STATE_DIR");
    kz_config_t *c = kz_config_load("examples/kaizen.yaml", err, sizeof err);
    if (!c)
        fail_msg("examples/kaizen.yaml: %s", err);
    s_check_defaults(c);
    assert_non_null(c->path);
    assert_true(c->path[0] == '/');
    const char *suffix = "/examples/kaizen.yaml";
    assert_true(strlen(c->path) > strlen(suffix));
    assert_string_equal(c->path + strlen(c->path) - strlen(suffix), suffix);
    s_check_loop_defaults(c);
    /* the broker's durable groups: the recorder's, as documented */
    assert_true(c->broker.durable);
    assert_int_equal(c->broker.durable_groups_count, 1);
    assert_string_equal(c->broker.durable_groups[0].name, "kaizen.recorder");
    assert_string_equal(c->broker.durable_groups[0].prefix, "");
    assert_int_equal(c->broker.log_max, (size_t)4 << 30);
    /* the loop: code-health on an interval, everything else reactive */
    static const char *const agents[] = {
        "code-health",     "code-quality", "improvement-planner", "feature-prioritizer",
        "code-refactorer", "test-runner",  "code-reviewer",       "pattern-learner"};
    assert_int_equal(c->agents_count, sizeof agents / sizeof agents[0]);
    for (size_t i = 0; i < c->agents_count; i++) {
        assert_string_equal(c->agents[i].name, agents[i]);
        assert_int_equal(c->agents[i].instances, 1);
        assert_int_equal(c->agents[i].interval_ms, i == 0 ? 600000 : 0);
        assert_null(c->agents[i].host);
    }
    /* the two samples, created from examples/<x> under build/samples */
    assert_int_equal(c->targets_count, 2);
    static const char *const samples[] = {"python-sample", "c-sample"};
    for (size_t i = 0; i < 2; i++) {
        const kz_target_config_t *t = kz_config_target(c, samples[i]);
        assert_non_null(t);
        char want[128];
        snprintf(want, sizeof want, "/build/samples/%s", samples[i]);
        assert_true(strlen(t->path) > strlen(want));
        assert_string_equal(t->path + strlen(t->path) - strlen(want), want);
        snprintf(want, sizeof want, "/examples/%s", samples[i]);
        assert_non_null(t->init_from);
        assert_true(t->init_from[0] == '/');
        assert_string_equal(t->init_from + strlen(t->init_from) - strlen(want), want);
        assert_string_equal(t->branch, "main");
        assert_int_equal(t->test_timeout_ms, 300000);
        assert_true(t->test_count > 0);
    }
    const kz_target_config_t *py = kz_config_target(c, "python-sample");
    assert_string_equal(py->test[py->test_count - 1], "--junitxml={junit}");
    /* the built-in catalog: a recipe for every tool it names, and a fixer
       for each formatter */
    static const char *const tools[] = {
        "flake8",       "pylint",     "mypy",       "black",  "isort",      "codespell", "cppcheck",
        "clang-format", "clang-tidy", "shellcheck", "bandit", "pydocstyle", "flawfinder"};
    assert_true(c->tools_count >= sizeof tools / sizeof tools[0]);
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        const kz_tool_config_t *t = kz_config_tool(c, tools[i]);
        if (!t) {
            fail_msg("no tool '%s' in the catalog", tools[i]);
            continue;
        }
        assert_true(t->argv_count > 0);
        assert_non_null(t->format);
        assert_true(t->files_count > 0);
        assert_non_null(t->origin);
        assert_true(strncmp(t->origin, "catalog/", 8) == 0);
        /* style tools need evidence, bug finders run everywhere */
        assert_true(strcmp(t->gate, "always") == 0 || t->requires_count > 0);
    }
    const kz_tool_config_t *black = kz_config_tool(c, "black");
    assert_string_equal(black->format, "files");
    assert_string_equal(black->gate, "chosen");
    assert_int_equal(black->requires_count, 2);
    assert_string_equal(black->requires[0], "pyproject.toml:[tool.black]");
    const kz_tool_config_t *pylint = kz_config_tool(c, "pylint");
    assert_string_equal(pylint->format, "pylint-json");
    assert_int_equal(pylint->exit_ok_count, 1);
    assert_string_equal(pylint->exit_ok[0], "0-31");
    const kz_tool_config_t *flake8 = kz_config_tool(c, "flake8");
    assert_true(flake8->rules_count >= 2);
    assert_string_equal(flake8->rules[0].match, "E9*");
    assert_string_equal(flake8->rules[0].severity, "high");
    assert_string_equal(flake8->rules[0].category, "bug");
    assert_string_equal(kz_config_tool(c, "mypy")->category, "type");
    assert_string_equal(kz_config_tool(c, "cppcheck")->gate, "always");
    assert_string_equal(kz_config_tool(c, "bandit")->gate, "always");
    assert_string_equal(kz_config_tool(c, "codespell")->gate, "chosen");
    static const char *const fixers[] = {"black", "isort", "codespell", "clang-format"};
    assert_true(c->fixers_count >= sizeof fixers / sizeof fixers[0]);
    for (size_t i = 0; i < sizeof fixers / sizeof fixers[0]; i++) {
        const kz_fixer_config_t *f = kz_config_fixer(c, fixers[i]);
        if (!f) {
            fail_msg("no fixer '%s' in examples/kaizen.yaml", fixers[i]);
            continue;
        }
        assert_non_null(kz_config_tool(c, f->tool));
        /* the example's fixers run without approval */
        assert_true(f->risk < c->policy.require_approval);
        assert_string_equal(f->service, "exec.refactor");
    }
    kz_config_destroy(&c);
    assert_null(c);
    kz_config_destroy(&c); /* safe twice */
}

static void test_defaults(void **state)
{
    (void)state;
    char err[256];
    unsetenv("KAIZEN_STATE_DIR");
    kz_config_t *c = kz_config_default();
    assert_non_null(c);
    s_check_defaults(c);
    assert_null(c->path);
    /* no agents: key: the loop's agents */
    assert_int_equal(c->agents_count, 8);
    assert_string_equal(c->agents[0].name, "code-health");
    assert_int_equal(c->agents[0].interval_ms, 600000);
    assert_string_equal(c->agents[7].name, "pattern-learner");
    assert_int_equal(c->agents[7].interval_ms, 0);
    assert_int_equal(c->targets_count, 0);
    kz_config_destroy(&c);

    /* empty file, comment only, empty document, null document: defaults */
    const char *empties[] = {"", "# nothing\n", "---\n", "~\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        c = s_parse(empties[i], err, sizeof err);
        if (!c)
            fail_msg("'%s': %s", empties[i], err);
        s_check_defaults(c);
        kz_config_destroy(&c);
    }

    /* null values mean "use the default"; sections may be null */
    c = s_parse("agent_heartbeat:\nlog:\n  level: null\n  format: ~\nbus:\n  heartbeat:\n"
                "  endpoints:\n  curve: {enabled: }\nbroker:\nagents:\ntargets: ~\n",
                err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    s_check_defaults(c);
    kz_config_destroy(&c);

    /* agents get their own defaults; a quoted "null" is a string */
    c = s_parse("agents:\n  - name: a\n  - {name: b, host: \"null\", args: [-v, --x=1]}\n", err,
                sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->agents_count, 2);
    assert_int_equal(c->agents[0].instances, 1);
    assert_int_equal(c->agents[0].interval_ms, 60000);
    assert_null(c->agents[0].host);
    assert_null(c->agents[0].args);
    assert_string_equal(c->agents[1].host, "null");
    assert_int_equal(c->agents[1].args_count, 2);
    assert_string_equal(c->agents[1].args[0], "-v");
    assert_string_equal(c->agents[1].args[1], "--x=1");
    assert_null(c->agents[1].args[2]);
    kz_config_destroy(&c);
}

static void test_values(void **state)
{
    (void)state;
    char err[256];
    kz_config_t *c = s_parse("log: {level: debug, format: json}\n"
                             "agent_heartbeat: 2m\n"
                             "bus:\n"
                             "  endpoints: {pub: ipc:///tmp/p, sub: inproc://s}\n"
                             "  bind: {pub: 'tcp://*:7510'}\n"
                             "  heartbeat: 1500\n"
                             "  liveness: 5\n"
                             "  max_message_size: 64KiB\n"
                             "  hwm: 0\n"
                             "  call_retries: 0\n"
                             "  curve: {enabled: yes}\n"
                             "broker: {request_ttl: 1h, stats_interval: 30s, group_inflight: 7}\n"
                             "targets:\n"
                             "  - name: web\n"
                             "    path: /srv/web\n"
                             "    languages: [python, c]\n"
                             "    test: [pytest, -q]\n"
                             "    branch: develop\n"
                             "  - {name: lib, path: /srv/lib}\n",
                             err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->log.level, KZ_LOG_DEBUG);
    assert_true(c->log.json);
    assert_int_equal(c->agent_heartbeat_ms, 120000);
    assert_string_equal(c->bus.connect.pub, "ipc:///tmp/p");
    assert_string_equal(c->bus.connect.sub, "inproc://s");
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "ipc://%s/bus/router.sock", c->state_dir);
    assert_string_equal(c->bus.connect.router, want);
    assert_string_equal(c->bus.bind.pub, "tcp://*:7510");
    assert_null(c->bus.bind.sub);
    assert_int_equal(c->bus.heartbeat_ms, 1500);
    assert_int_equal(c->bus.heartbeat_liveness, 5);
    assert_int_equal(c->bus.max_message_size, 65536);
    assert_int_equal(c->bus.hwm, 0);
    assert_int_equal(c->bus.call_retries, 0);
    assert_true(c->bus.curve.enabled); /* without files: not an error at load time */
    assert_int_equal(c->broker.request_ttl_ms, 3600000);
    assert_int_equal(c->broker.stats_interval_ms, 30000);
    assert_int_equal(c->broker.group_inflight, 7);
    assert_int_equal(c->targets_count, 2);
    assert_string_equal(c->targets[0].name, "web");
    assert_string_equal(c->targets[0].path, "/srv/web");
    assert_int_equal(c->targets[0].languages_count, 2);
    assert_string_equal(c->targets[0].languages[1], "c");
    assert_null(c->targets[0].languages[2]);
    assert_int_equal(c->targets[0].test_count, 2);
    assert_string_equal(c->targets[0].test[0], "pytest");
    assert_string_equal(c->targets[0].branch, "develop");
    assert_string_equal(c->targets[1].branch, "main");
    assert_null(c->targets[1].test);
    assert_int_equal(c->targets[1].languages_count, 0);
    kz_config_destroy(&c);
}

static void test_errors_syntax(void **state)
{
    (void)state;
    s_expect_error("bus:\n  heartbeat: [1s\n",
                   "/etc/kz/t.yaml:3:1: bus.heartbeat: syntax error: did not find expected ',' "
                   "or ']' (while parsing a flow sequence)");
    s_expect_error("log:\n  level: info\n level: debug\n",
                   "/etc/kz/t.yaml:3:2: syntax error: did not find expected key (while parsing "
                   "a block mapping)");
    s_expect_error("a: b\n---\nc: d\n", "/etc/kz/t.yaml:2:1: only one YAML document is allowed");
    s_expect_error("log:\n\tlevel: info\n",
                   "/etc/kz/t.yaml:2:1: log: syntax error: found character that cannot start "
                   "any token (while scanning for the next token)");
    /* invalid UTF-8: a reader error, located from its byte offset */
    s_expect_error("log:\n  level: \xff\n",
                   "/etc/kz/t.yaml:2:10: syntax error: invalid leading UTF-8 octet");
    /* CR and CR LF line ends count as libyaml counts them */
    s_expect_error("log:\r  level: info\rbus: \xff\r",
                   "/etc/kz/t.yaml:3:6: syntax error: invalid leading UTF-8 octet");
    s_expect_error("log:\r\n  level: info\r\nbus: \xff\r\n",
                   "/etc/kz/t.yaml:3:6: syntax error: invalid leading UTF-8 octet");
}

static void test_errors_keys(void **state)
{
    (void)state;
    s_expect_error("bus:\n  heartbeet: 1s\n",
                   "/etc/kz/t.yaml:2:3: bus.heartbeet: unknown key, did you mean 'heartbeat'?");
    s_expect_error("agents:\n  - name: a\n    intervall: 5s\n",
                   "/etc/kz/t.yaml:3:5: agents[0].intervall: unknown key, did you mean "
                   "'interval'?");
    s_expect_error("colour: blue\n", "/etc/kz/t.yaml:1:1: colour: unknown key");
    s_expect_error("log:\n  level: info\n  level: debug\n",
                   "/etc/kz/t.yaml:3:3: log.level: duplicate key (first at line 2)");
    s_expect_error("? [a]\n: b\n", "/etc/kz/t.yaml:1:3: keys must be strings, got a list");
    s_expect_error("agents:\n  - instances: 2\n",
                   "/etc/kz/t.yaml:2:5: agents[0].name: missing required value");
    s_expect_error("agents:\n  - name:\n",
                   "/etc/kz/t.yaml:2:10: agents[0].name: missing required value");
    s_expect_error("targets:\n  - name: t\n",
                   "/etc/kz/t.yaml:2:5: targets[0].path: missing required value");
    s_expect_error("targets: [{path: /x}]\n",
                   "/etc/kz/t.yaml:1:11: targets[0].name: missing required value");
    s_expect_error("log: &l {level: info}\n",
                   "/etc/kz/t.yaml:1:6: log: anchors are not supported: write the value out");
    s_expect_error("agents:\n  - name: a\n    args: &x [a]\n  - name: b\n    args: *x\n",
                   "/etc/kz/t.yaml:3:11: agents[0].args: anchors are not supported: write the "
                   "value out");
    s_expect_error(
        "log:\n  level: *x\n",
        "/etc/kz/t.yaml:2:10: log.level: aliases are not supported: write the value out");
}

static void test_errors_types(void **state)
{
    (void)state;
    s_expect_error("[1, 2]\n",
                   "/etc/kz/t.yaml:1:1: expected a mapping of keys at the top level, got a list");
    s_expect_error("bus: 3\n", "/etc/kz/t.yaml:1:6: bus: expected a mapping, got a string");
    s_expect_error("bus:\n  liveness: abc\n",
                   "/etc/kz/t.yaml:2:13: bus.liveness: expected an integer, got 'abc'");
    s_expect_error("bus:\n  hwm: [1]\n",
                   "/etc/kz/t.yaml:2:8: bus.hwm: expected an integer, got a list");
    s_expect_error("targets:\n  - {name: t, path: /t, test: pytest}\n",
                   "/etc/kz/t.yaml:2:31: targets[0].test: expected a list of strings, got a "
                   "string");
    s_expect_error("agents: [{name: a, args: [1, {b: 2}]}]\n",
                   "/etc/kz/t.yaml:1:30: agents[0].args[1]: expected a list of strings, got a "
                   "mapping");
    s_expect_error("agents: {name: a}\n",
                   "/etc/kz/t.yaml:1:9: agents: expected a list, got a mapping");
    s_expect_error("agents:\n  - demo\n",
                   "/etc/kz/t.yaml:2:5: agents[0]: expected a mapping, got a string");
    s_expect_error("bus: {curve: {enabled: maybe}}\n",
                   "/etc/kz/t.yaml:1:24: bus.curve.enabled: expected true or false, got 'maybe'");
    s_expect_error("state_dir: {a: b}\n",
                   "/etc/kz/t.yaml:1:12: state_dir: expected a string, got a mapping");
}

static void test_errors_values(void **state)
{
    (void)state;
    s_expect_error("bus: {liveness: -1}\n",
                   "/etc/kz/t.yaml:1:17: bus.liveness: must not be negative, got '-1'");
    s_expect_error("agents: [{name: a, instances: -2}]\n",
                   "/etc/kz/t.yaml:1:31: agents[0].instances: must not be negative, got '-2'");
    s_expect_error("database: {batch_size: 0}\n",
                   "/etc/kz/t.yaml:1:24: database.batch_size: must not be zero, got '0'");
    s_expect_error("supervisor:\n  broker: maybe\n",
                   "/etc/kz/t.yaml:2:11: supervisor.broker: expected true or false, got 'maybe'");
    s_expect_error("database:\n  dsn: [a]\n",
                   "/etc/kz/t.yaml:2:8: database.dsn: expected a string, got a list");
    s_expect_error("bus: {liveness: 0}\n",
                   "/etc/kz/t.yaml:1:17: bus.liveness: must not be zero, got '0'");
    s_expect_error("broker: {group_inflight: 99999999999}\n",
                   "/etc/kz/t.yaml:1:26: broker.group_inflight: must be at most 2147483647, got "
                   "'99999999999'");
    s_expect_error("bus:\n  heartbeat: 5 s\n",
                   "/etc/kz/t.yaml:2:14: bus.heartbeat: expected a duration like 250ms, 5s, 2m "
                   "or 1h, got '5 s'");
    s_expect_error("bus:\n  heartbeat: -5s\n",
                   "/etc/kz/t.yaml:2:14: bus.heartbeat: must not be negative, got '-5s'");
    s_expect_error("bus:\n  heartbeat: 0\n",
                   "/etc/kz/t.yaml:2:14: bus.heartbeat: must not be zero, got '0'");
    s_expect_error("bus:\n  max_message_size: 1TB\n",
                   "/etc/kz/t.yaml:2:21: bus.max_message_size: expected a size like 512, 64KiB, "
                   "1MiB or 1GiB, got '1TB'");
    s_expect_error("log: {level: loud}\n", "/etc/kz/t.yaml:1:14: log.level: unknown log level "
                                           "'loud' (expected debug, info, warn, error or off)");
    s_expect_error("log: {format: xml}\n", "/etc/kz/t.yaml:1:15: log.format: unknown log format "
                                           "'xml' (expected text or json)");
    s_expect_error("bus:\n  endpoints:\n    pub: http://127.0.0.1:1\n",
                   "/etc/kz/t.yaml:3:10: bus.endpoints.pub: invalid endpoint "
                   "'http://127.0.0.1:1': expected tcp://, ipc:// or inproc:// and an address");
    s_expect_error("bus: {bind: {tap: 'tcp://'}}\n",
                   "/etc/kz/t.yaml:1:19: bus.bind.tap: invalid endpoint 'tcp://': expected "
                   "tcp://, ipc:// or inproc:// and an address");
    s_expect_error("agents:\n  - name: a\n  - name: b\n  - name: a\n",
                   "/etc/kz/t.yaml:4:11: agents[2].name: duplicate agent name 'a' (also "
                   "agents[0])");
    s_expect_error("targets:\n  - {name: t, path: /a}\n  - {name: t, path: /b}\n",
                   "/etc/kz/t.yaml:3:12: targets[1].name: duplicate target name 't' (also "
                   "targets[0])");
    s_expect_error("agents: [{name: ../evil}]\n",
                   "/etc/kz/t.yaml:1:17: agents[0].name: invalid name '../evil': use letters, "
                   "digits, '-', '_' and '.'");
    s_expect_error("targets: [{name: t, path: ''}]\n",
                   "/etc/kz/t.yaml:1:27: targets[0].path: must not be empty");
}

/* tools, fixers, policy, scan and the targets' test_timeout / init_from */
static void test_loop_keys(void **state)
{
    (void)state;
    char err[512];
    kz_config_t *c = kz_config_default();
    assert_non_null(c);
    s_check_loop_defaults(c);
    assert_true(c->catalog);
    assert_true(c->tools_count > 0);
    assert_true(c->fixers_count > 0);
    kz_config_destroy(&c);
    c = s_parse("catalog: false\n", err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->tools_count, 0);
    assert_int_equal(c->fixers_count, 0);
    kz_config_destroy(&c);
    c = s_parse("policy:\nscan: ~\ntools: []\nfixers:\n", err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    s_check_loop_defaults(c);
    kz_config_destroy(&c);

    /* a minimal tool, fixer and target take every default */
    c = s_parse("catalog: false\n"
                "tools:\n"
                "  - {name: lint, argv: [lint, '{files}'], format: gcc}\n"
                "fixers:\n"
                "  - {name: fix, tool: lint, argv: [fix, '{files}']}\n"
                "targets:\n"
                "  - {name: t, path: /t}\n",
                err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    const kz_tool_config_t *tool = kz_config_tool(c, "lint");
    assert_non_null(tool);
    assert_null(kz_config_tool(c, "fix"));
    assert_int_equal(tool->argv_count, 2);
    assert_string_equal(tool->argv[1], "{files}");
    assert_null(tool->argv[2]);
    assert_string_equal(tool->format, "gcc");
    assert_string_equal(tool->category, "style");
    assert_string_equal(tool->severity, "low");
    assert_int_equal(tool->languages_count, 0);
    assert_int_equal(tool->files_count, 0);
    assert_int_equal(tool->rules_count, 0);
    assert_int_equal(tool->requires_count, 0);
    assert_int_equal(tool->exit_ok_count, 0); /* = 0 and 1 (kz_tool_exit_ok) */
    assert_int_equal(tool->timeout_ms, 600000);
    assert_int_equal(tool->batch, 0);
    assert_int_equal(tool->env_count, 0);
    const kz_fixer_config_t *fixer = kz_config_fixer(c, "fix");
    assert_non_null(fixer);
    assert_null(kz_config_fixer(c, "lint"));
    assert_string_equal(fixer->tool, "lint");
    assert_int_equal(fixer->rules_count, 0);
    assert_string_equal(fixer->service, "exec.refactor");
    assert_true(fixer->effort > 0.99 && fixer->effort < 1.01);
    assert_true(fixer->risk > 0.19 && fixer->risk < 0.21);
    assert_int_equal(fixer->timeout_ms, 300000);
    const kz_target_config_t *t = kz_config_target(c, "t");
    assert_non_null(t);
    assert_null(kz_config_target(c, "u"));
    assert_int_equal(t->test_timeout_ms, 600000);
    assert_null(t->init_from);
    assert_null(t->env);
    assert_int_equal(t->env_count, 0);
    kz_config_destroy(&c);

    /* every key set */
    c = s_parse("tools:\n"
                "  - name: pylint\n"
                "    languages: [python]\n"
                "    files: ['*.py']\n"
                "    argv: [python3, -m, pylint, --output-format=json, '{files}']\n"
                "    format: pylint-json\n"
                "    category: bug\n"
                "    severity: medium\n"
                "    rules:\n"
                "      - {match: 'unused-*', severity: info}\n"
                "      - {match: 'E*', category: type}\n"
                "    requires: ['pyproject.toml:[tool.pylint', .pylintrc]\n"
                "    exit_ok: ['0-31', '32']\n"
                "    timeout: 90s\n"
                "    batch: 50\n"
                "    env: [PYTHONHASHSEED=0]\n"
                "fixers:\n"
                "  - {name: fix, tool: pylint, rules: ['unused-*'], argv: [fix], service: "
                "exec.other, effort: 2.5, risk: 0.9, timeout: 1m, env: [A=1], "
                "subject: 'Fix {n} thing{s} in {file}', commit_type: fix}\n"
                "policy: {require_approval: 1.5, apply: merge, integration_branch: kz/imp, "
                "max_open_plans: 0, max_plans_per_hour: 5, max_concurrent: 1, max_files: 3, "
                "max_lines: 40, allowed_paths: ['src/*'], validators: [validate.tests], "
                "exec_timeout: 1m, validate_timeout: 2m, retries: 0, commit_author: 'Kai Bot "
                "<bot@example.org>', group: true}\n"
                "scan: {parallelism: 3, batch_size: 10, incremental: no}\n"
                "targets:\n"
                "  - {name: t, path: repo, test: [make, test], test_timeout: 30s, "
                "init_from: ../samples/t, env: [PYTHONPATH=src, 'EMPTY=', 'A_1=x=y z']}\n",
                err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    tool = kz_config_tool(c, "pylint");
    assert_string_equal(tool->languages[0], "python");
    assert_string_equal(tool->files[0], "*.py");
    assert_string_equal(tool->format, "pylint-json");
    assert_string_equal(tool->category, "bug");
    assert_string_equal(tool->severity, "medium");
    assert_int_equal(tool->rules_count, 2);
    assert_string_equal(tool->rules[0].match, "unused-*");
    assert_string_equal(tool->rules[0].severity, "info");
    assert_null(tool->rules[0].category);
    assert_null(tool->rules[1].severity);
    assert_string_equal(tool->rules[1].category, "type");
    assert_int_equal(tool->requires_count, 2);
    assert_string_equal(tool->requires[0], "pyproject.toml:[tool.pylint");
    assert_int_equal(tool->exit_ok_count, 2);
    assert_string_equal(tool->exit_ok[0], "0-31");
    assert_string_equal(tool->exit_ok[1], "32");
    assert_int_equal(tool->timeout_ms, 90000);
    assert_int_equal(tool->batch, 50);
    assert_string_equal(tool->env[0], "PYTHONHASHSEED=0");
    fixer = kz_config_fixer(c, "fix");
    assert_string_equal(fixer->rules[0], "unused-*");
    assert_string_equal(fixer->service, "exec.other");
    assert_true(fixer->effort > 2.49 && fixer->effort < 2.51);
    assert_true(fixer->risk > 0.89 && fixer->risk < 0.91);
    assert_int_equal(fixer->timeout_ms, 60000);
    assert_string_equal(fixer->env[0], "A=1");
    assert_string_equal(fixer->subject, "Fix {n} thing{s} in {file}");
    assert_string_equal(fixer->commit_type, "fix");
    assert_true(c->policy.require_approval > 1.49 && c->policy.require_approval < 1.51);
    assert_string_equal(c->policy.apply, "merge");
    assert_string_equal(c->policy.integration_branch, "kz/imp");
    assert_int_equal(c->policy.max_open_plans, 0);
    assert_int_equal(c->policy.max_plans_per_hour, 5);
    assert_int_equal(c->policy.max_concurrent, 1);
    assert_int_equal(c->policy.max_files, 3);
    assert_int_equal(c->policy.max_lines, 40);
    assert_int_equal(c->policy.allowed_paths_count, 1);
    assert_string_equal(c->policy.allowed_paths[0], "src/*");
    assert_int_equal(c->policy.validators_count, 1);
    assert_string_equal(c->policy.validators[0], "validate.tests");
    assert_int_equal(c->policy.exec_timeout_ms, 60000);
    assert_int_equal(c->policy.validate_timeout_ms, 120000);
    assert_int_equal(c->policy.retries, 0);
    assert_string_equal(c->policy.commit_author, "Kai Bot <bot@example.org>");
    assert_true(c->policy.group);
    char name[64], email[64], why[256];
    assert_int_equal(kz_config_ident(c->policy.commit_author, name, sizeof name, email,
                                     sizeof email, why, sizeof why),
                     0);
    assert_string_equal(name, "Kai Bot");
    assert_string_equal(email, "bot@example.org");
    assert_int_equal(c->scan.parallelism, 3);
    assert_int_equal(c->scan.batch_size, 10);
    assert_false(c->scan.incremental);
    t = kz_config_target(c, "t");
    assert_string_equal(t->path, "/etc/kz/repo");
    assert_int_equal(t->test_timeout_ms, 30000);
    assert_string_equal(t->init_from, "/etc/samples/t"); /* relative to the file, normalised */
    /* targets[].env: kept as written (a relative path in a value is the
       worktree's: the test command runs there) */
    assert_int_equal(t->env_count, 3);
    assert_string_equal(t->env[0], "PYTHONPATH=src");
    assert_string_equal(t->env[1], "EMPTY=");
    assert_string_equal(t->env[2], "A_1=x=y z");
    assert_null(t->env[3]);
    kz_config_destroy(&c);
}

/* The errors of the loop's keys */
/* The built-in catalog under the config's own recipes */
static void test_catalog(void **state)
{
    (void)state;
    char err[512];
    /* every catalog file loads on its own: no tool of the catalog is lost */
    kz_config_t *all = kz_config_default();
    assert_non_null(all);
    size_t ntools = all->tools_count, nfixers = all->fixers_count;
    assert_true(kz_catalog_count >= 4);
    for (size_t k = 0; k < kz_catalog_count; k++) {
        kz_config_t *one = kz_config_parse(kz_catalog[k].name, kz_catalog[k].text,
                                           strlen(kz_catalog[k].text), err, sizeof err);
        if (!one)
            fail_msg("%s", err);
        kz_config_destroy(&one);
    }

    /* a targets-only config runs the loop's agents and every recipe */
    kz_config_t *c = s_parse("targets:\n  - {name: t, path: /t}\n", err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->agents_count, 8);
    assert_int_equal(c->tools_count, ntools);
    assert_int_equal(c->fixers_count, nfixers);
    kz_config_destroy(&c);

    /* a recipe of the same name replaces the catalog's (the config's
       first, its origin NULL); a new one adds; enabled: false switches one
       off together with the catalog's fixer of that tool */
    c = s_parse("tools:\n"
                "  - {name: black, argv: [my-black, '{files}'], format: files,\n"
                "     requires: [my.cfg]}\n"
                "  - {name: mine, argv: [mine, '{files}'], format: gcc}\n"
                "  - {name: isort, enabled: false}\n"
                "fixers:\n"
                "  - {name: codespell, enabled: false}\n",
                err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->tools_count, ntools);       /* +mine -isort */
    assert_int_equal(c->fixers_count, nfixers - 2); /* -isort (no tool) -codespell */
    const kz_tool_config_t *black = kz_config_tool(c, "black");
    assert_ptr_equal(black, &c->tools[0]);
    assert_null(black->origin);
    assert_string_equal(black->argv[0], "my-black");
    assert_string_equal(black->gate, "chosen");
    assert_string_equal(kz_config_tool(c, "mine")->gate, "always");
    assert_null(kz_config_tool(c, "isort"));
    assert_null(kz_config_fixer(c, "isort"));
    assert_null(kz_config_fixer(c, "codespell"));
    assert_non_null(kz_config_tool(c, "codespell"));
    assert_non_null(kz_config_fixer(c, "black")); /* the catalog's fixer, on our tool */
    kz_config_destroy(&c);

    /* agents: [] runs none; catalog: false keeps only the config's */
    c = s_parse("agents: []\ncatalog: false\ntools:\n  - {name: x, argv: [x], format: gcc}\n", err,
                sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->agents_count, 0);
    assert_int_equal(c->tools_count, 1);
    assert_int_equal(c->fixers_count, 0);
    kz_config_destroy(&c);

    /* a style gate needs its evidence; a fixer of a tool switched off by
       the config itself is an error */
    s_expect_error("tools:\n  - {name: x, gate: chosen, argv: [x], format: gcc}\n",
                   "/etc/kz/t.yaml:2:21: tools[0].requires: gate 'chosen' needs the evidence "
                   "that the project chose 'x' (requires: [FILE or FILE:TEXT, ...]), or gate: "
                   "always");
    s_expect_error("tools:\n  - {name: x, gate: maybe, argv: [x], format: gcc}\n",
                   "/etc/kz/t.yaml:2:21: tools[0].gate: unknown gate 'maybe' (expected chosen, "
                   "always)");
    s_expect_error("tools:\n  - {name: black, enabled: false}\n"
                   "fixers:\n  - {name: b2, tool: black, argv: [b]}\n",
                   "/etc/kz/t.yaml:4:22: fixers[0].tool: no tool named 'black' in tools");
    kz_config_destroy(&all);
}

static void test_loop_errors(void **state)
{
    (void)state;
    /* required keys */
    s_expect_error("tools:\n  - {name: x, format: gcc}\n",
                   "/etc/kz/t.yaml:2:5: tools[0].argv: missing required value");
    s_expect_error("tools:\n  - {name: x, argv: [x]}\n",
                   "/etc/kz/t.yaml:2:5: tools[0].format: missing required value");
    s_expect_error("tools: [{argv: [x], format: gcc}]\n",
                   "/etc/kz/t.yaml:1:9: tools[0].name: missing required value");
    s_expect_error("tools: [{name: x, argv: [x], format: gcc}]\nfixers: [{name: f, tool: x}]\n",
                   "/etc/kz/t.yaml:2:10: fixers[0].argv: missing required value");
    s_expect_error("tools: [{name: x, argv: [x], format: gcc}]\nfixers: [{name: f, argv: [f]}]\n",
                   "/etc/kz/t.yaml:2:10: fixers[0].tool: missing required value");
    /* a bad format, severity, category */
    s_expect_error("tools:\n  - {name: x, argv: [x], format: json}\n",
                   "/etc/kz/t.yaml:2:34: tools[0].format: unknown output format 'json' "
                   "(expected gcc, sarif, pylint-json, files, pydocstyle, "
                   "rewrite)");
    s_expect_error("tools:\n  - {name: x, argv: [x], format: gcc, severity: huge}\n",
                   "/etc/kz/t.yaml:2:49: tools[0].severity: unknown severity 'huge' (expected "
                   "info, low, medium, high, critical)");
    s_expect_error("tools:\n  - name: x\n    argv: [x]\n    format: gcc\n    rules:\n"
                   "      - {match: 'E*', category: nitpick}\n",
                   "/etc/kz/t.yaml:6:33: tools[0].rules[0].category: unknown category 'nitpick' "
                   "(expected style, bug, type, security, secret, dependency, performance, "
                   "coverage, docs, architecture, complexity)");
    s_expect_error("tools:\n  - name: x\n    argv: [x]\n    format: gcc\n    rules:\n"
                   "      - {severity: low}\n",
                   "/etc/kz/t.yaml:6:9: tools[0].rules[0].match: missing required value");
    /* a fixer naming a tool that is not configured */
    s_expect_error("catalog: false\ntools:\n  - {name: flake8, argv: [flake8], format: gcc}\n"
                   "fixers:\n  - {name: black, tool: black, argv: [black, '{files}']}\n",
                   "/etc/kz/t.yaml:5:25: fixers[0].tool: no tool named 'black' in tools");
    s_expect_error("catalog: false\nfixers:\n  - name: black\n    tool: black\n    argv: [black]\n",
                   "/etc/kz/t.yaml:4:11: fixers[0].tool: no tool named 'black' in tools");
    /* exit_ok: codes 0..255, ranges LOW-HIGH with LOW <= HIGH */
    static const char *const bad_exit[] = {"-1", "256",   "31-0", "1-",   "-",
                                           "a",  "0-31x", "1,2",  "0-256"};
    for (size_t i = 0; i < sizeof bad_exit / sizeof bad_exit[0]; i++) {
        char text[256], want[512];
        snprintf(text, sizeof text,
                 "tools:\n  - {name: x, argv: [x], format: gcc, exit_ok: "
                 "['%s']}\n",
                 bad_exit[i]);
        snprintf(want, sizeof want,
                 "/etc/kz/t.yaml:2:49: tools[0].exit_ok[0]: expected an exit "
                 "code or a range like 0-31, got '%s'",
                 bad_exit[i]);
        s_expect_error(text, want);
    }
    char err[512];
    kz_config_t *c = s_parse("tools:\n  - {name: x, argv: [x], format: gcc, exit_ok: "
                             "[0, '255', '0-255', '65-65', 2]}\n",
                             err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->tools[0].exit_ok_count, 5);
    assert_string_equal(c->tools[0].exit_ok[4], "2");
    kz_config_destroy(&c);
    /* numbers and choices */
    s_expect_error("fixers: ~\ntools: [{name: x, argv: [x], format: gcc}]\n"
                   "fixers: [{name: f, tool: x, argv: [f], risk: 1.5}]\n",
                   "/etc/kz/t.yaml:3:1: fixers: duplicate key (first at line 1)");
    s_expect_error("tools: [{name: x, argv: [x], format: gcc}]\n"
                   "fixers: [{name: f, tool: x, argv: [f], risk: 1.5}]\n",
                   "/etc/kz/t.yaml:2:46: fixers[0].risk: must be between 0 and 1, got '1.5'");
    s_expect_error("policy: {apply: rebase}\n", "/etc/kz/t.yaml:1:17: policy.apply: unknown "
                                                "apply mode 'rebase' (expected branch, merge)");
    s_expect_error("policy: {integration_branch: ../x}\n",
                   "/etc/kz/t.yaml:1:30: policy.integration_branch: invalid branch name '../x'");
    s_expect_error("policy: {commit_author: kaizen}\n",
                   "/etc/kz/t.yaml:1:25: policy.commit_author: expected 'Name <email>', got "
                   "'kaizen'");
    s_expect_error("policy: {commit_author: '<a@b>'}\n",
                   "/etc/kz/t.yaml:1:25: policy.commit_author: expected 'Name <email>' with a "
                   "name and an email of printable characters (no spaces in the email), got "
                   "'<a@b>'");
    s_expect_error("policy: {commit_author: 'K <a b>'}\n",
                   "/etc/kz/t.yaml:1:25: policy.commit_author: expected 'Name <email>' with a "
                   "name and an email of printable characters (no spaces in the email), got "
                   "'K <a b>'");
    s_expect_error("tools: [{name: x, argv: [x], format: gcc}]\n"
                   "fixers: [{name: f, tool: x, argv: [f], subject: 'Fix {what}'}]\n",
                   "/etc/kz/t.yaml:2:49: fixers[0].subject: unknown placeholder in 'Fix {what}': "
                   "use {n}, {s}, {file}, {tool} and {rule}");
    s_expect_error("tools: [{name: x, argv: [x], format: gcc}]\n"
                   "fixers: [{name: f, tool: x, argv: [f], commit_type: Style}]\n",
                   "/etc/kz/t.yaml:2:53: fixers[0].commit_type: a commit type is 1 to 20 "
                   "lowercase letters ('style', 'fix'), not 'Style'");
    s_expect_error("policy: {max_concurrent: 0}\n",
                   "/etc/kz/t.yaml:1:26: policy.max_concurrent: must not be zero, got '0'");
    s_expect_error("scan: {incremental: sometimes}\n",
                   "/etc/kz/t.yaml:1:21: scan.incremental: expected true or false, got "
                   "'sometimes'");
    s_expect_error("targets: [{name: t, path: /t, test_timeout: 0}]\n",
                   "/etc/kz/t.yaml:1:45: targets[0].test_timeout: must not be zero, got '0'");
    /* targets[].env: NAME=VALUE entries with a variable name */
    s_expect_error("targets:\n  - name: t\n    path: /t\n    env: [A=1, PYTHONPATH]\n",
                   "/etc/kz/t.yaml:4:16: targets[0].env[1]: expected NAME=VALUE, got "
                   "'PYTHONPATH'");
    s_expect_error("targets:\n  - name: t\n    path: /t\n    env:\n      - =src\n",
                   "/etc/kz/t.yaml:5:9: targets[0].env[0]: invalid variable name '': use "
                   "letters, digits and '_', not starting with a digit");
    s_expect_error("targets: [{name: t, path: /t, env: ['1X=a']}]\n",
                   "/etc/kz/t.yaml:1:37: targets[0].env[0]: invalid variable name '1X': use "
                   "letters, digits and '_', not starting with a digit");
    s_expect_error("targets: [{name: t, path: /t, env: ['PYTHON PATH=src']}]\n",
                   "/etc/kz/t.yaml:1:37: targets[0].env[0]: invalid variable name 'PYTHON "
                   "PATH': use letters, digits and '_', not starting with a digit");
    s_expect_error("targets: [{name: t, path: /t, env: {PYTHONPATH: src}}]\n",
                   "/etc/kz/t.yaml:1:36: targets[0].env: expected a list of strings, got a "
                   "mapping");
    s_expect_error("targets: [{name: t, path: /t, env: [[A=1]]}]\n",
                   "/etc/kz/t.yaml:1:37: targets[0].env[0]: expected a list of strings, got a "
                   "list");
    s_expect_error("tools:\n  - {name: x, argv: [x], format: gcc}\n  - {name: x, argv: [y], "
                   "format: gcc}\n",
                   "/etc/kz/t.yaml:3:12: tools[1].name: duplicate tool name 'x' (also "
                   "tools[0])");
}

static void test_durations_sizes(void **state)
{
    (void)state;
    int ms = -1;
    assert_int_equal(kz_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(kz_parse_duration_ms("5s", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(kz_parse_duration_ms("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(kz_parse_duration_ms("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(kz_parse_duration_ms("1500", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(kz_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    const char *bad_durations[] = {"",    "s",    "5x",   "-5s",     "5 s",
                                   " 5s", "1.5s", "5sec", "999999h", "99999999999999999999",
                                   NULL};
    for (const char **p = bad_durations; *p; p++) {
        ms = 42;
        if (kz_parse_duration_ms(*p, &ms) != -1)
            fail_msg("duration '%s' accepted", *p);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(kz_parse_duration_ms(NULL, &ms), -1);

    size_t bytes = 0;
    struct {
        const char *text;
        size_t bytes;
    } sizes[] = {{"512", 512},
                 {"512B", 512},
                 {"64KiB", 65536},
                 {"64K", 65536},
                 {"1MiB", 1u << 20},
                 {"1M", 1u << 20},
                 {"1GiB", (size_t)1 << 30},
                 {"2G", (size_t)2 << 30},
                 {"0", 0}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(kz_parse_size(sizes[i].text, &bytes), 0);
        assert_int_equal(bytes, sizes[i].bytes);
    }
    const char *bad_sizes[] = {"",  "K", "1TiB", "-1", "1 MiB", "1.5M", "99999999999999999999G",
                               NULL};
    for (const char **p = bad_sizes; *p; p++)
        if (kz_parse_size(*p, &bytes) != -1)
            fail_msg("size '%s' accepted", *p);
}

/* TCP requires CURVE: unset bus.curve.enabled with a tcp:// endpoint
   switches it on with the keys of STATE/keys; explicit paths win;
   enabled: false with tcp is refused; ipc stays without CURVE */
static void test_bus_tcp_curve(void **state)
{
    (void)state;
    char err[1024];
    const char *text = "state_dir: /s\nbus:\n  endpoints: {router: 'tcp://127.0.0.1:7512'}\n";
    kz_config_t *c = s_parse(text, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    const kz_curve_config_t *k = &c->bus.curve;
    assert_true(k->enabled);
    assert_true(k->automatic);
    assert_string_equal(k->broker_cert, "/s/keys/broker.key_secret");
    assert_string_equal(k->broker_public, "/s/keys/broker.key");
    assert_string_equal(k->allow_dir, "/s/keys/allow");
    assert_string_equal(k->client_cert, "/s/keys/agent.key_secret");
    assert_string_equal(k->orchestrator_cert, "/s/keys/orchestrator.key_secret");
    assert_string_equal(k->operator_cert, "/s/keys/operator.key_secret");
    assert_int_equal(kz_config_bus_role(c, KZ_ROLE_OPERATOR), 0);
    assert_string_equal(c->bus.curve.client_cert, "/s/keys/operator.key_secret");
    kz_config_destroy(&c);

    /* a bind address counts too; the config's own paths win, and its
       client_cert stands for every role */
    text = "state_dir: /s\nbus:\n  bind: {pub: 'tcp://*:7510'}\n  curve:\n"
           "    enabled:\n    client_cert: /k/node.secret\n    broker_public: /k/b.key\n";
    c = s_parse(text, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    k = &c->bus.curve;
    assert_true(k->enabled && k->automatic);
    assert_string_equal(k->broker_public, "/k/b.key");
    assert_string_equal(k->client_cert, "/k/node.secret");
    assert_null(k->orchestrator_cert);
    assert_int_equal(kz_config_bus_role(c, KZ_ROLE_ORCHESTRATOR), 0);
    assert_string_equal(c->bus.curve.client_cert, "/k/node.secret");
    kz_config_destroy(&c);

    /* enabled: true is the user's own setup: nothing automatic */
    text = "bus:\n  endpoints: {pub: 'tcp://127.0.0.1:1'}\n  curve: {enabled: true}\n";
    c = s_parse(text, err, sizeof err);
    assert_non_null(c);
    assert_true(c->bus.curve.enabled);
    assert_false(c->bus.curve.automatic);
    assert_null(c->bus.curve.broker_cert);
    kz_config_destroy(&c);

    /* ipc (the default) and enabled: false: no CURVE */
    text = "bus:\n  curve: {enabled: false}\n";
    c = s_parse(text, err, sizeof err);
    assert_non_null(c);
    assert_false(c->bus.curve.enabled);
    assert_false(c->bus.curve.automatic);
    assert_null(c->bus.curve.broker_cert);
    kz_config_destroy(&c);

    s_expect_error("bus:\n  endpoints:\n    tap: tcp://10.0.0.1:7513\n  curve:\n    enabled: no\n",
                   "/etc/kz/t.yaml:5:14: bus.curve.enabled: false with a tcp:// endpoint "
                   "(bus.endpoints.tap: tcp://10.0.0.1:7513): TCP requires CURVE; remove "
                   "bus.curve.enabled for keys made under state_dir/keys on first use, or leave "
                   "bus.endpoints unset for the private ipc:// default (proto/PROTOCOL.md 1.5)");
}

static void test_bus_rules(void **state)
{
    (void)state;
    char err[512];
    const char *text = "bus:\n  curve:\n    client_cert: /k/any.secret\n"
                       "    agent_cert: /k/agent.secret\n    operator_cert: /k/op.secret\n"
                       "broker:\n  rules:\n    agent:\n      publish: ['!plan.*', '*']\n"
                       "      offer: []\n      tap: true\n"
                       "    operator:\n      call: ['!exec.*', 'kaizen.*']\n";
    kz_config_t *c = kz_config_parse("/k/kaizen.yaml", text, strlen(text), err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    const kz_role_rules_t *a = &c->broker.rules.agent;
    assert_int_equal(a->publish_count, 2);
    assert_string_equal(a->publish[0], "!plan.*");
    assert_string_equal(a->publish[1], "*");
    assert_non_null(a->offer); /* given, empty: nothing */
    assert_int_equal(a->offer_count, 0);
    assert_null(a->join); /* not given: the built-in list */
    assert_string_equal(a->tap, "true");
    assert_null(c->broker.rules.operator.publish);
    assert_null(a->call); /* not given: the built-in list */
    assert_int_equal(c->broker.rules.operator.call_count, 2);
    assert_string_equal(c->broker.rules.operator.call[0], "!exec.*");
    assert_string_equal(c->broker.rules.operator.call[1], "kaizen.*");
    assert_null(c->broker.rules.orchestrator.tap);
    /* each process takes its role's certificate, else client_cert */
    assert_int_equal(kz_config_bus_role(c, KZ_ROLE_AGENT), 0);
    assert_string_equal(c->bus.curve.client_cert, "/k/agent.secret");
    kz_config_destroy(&c);
    c = kz_config_parse("/k/kaizen.yaml", text, strlen(text), err, sizeof err);
    assert_non_null(c);
    assert_int_equal(kz_config_bus_role(c, KZ_ROLE_ORCHESTRATOR), 0);
    assert_string_equal(c->bus.curve.client_cert, "/k/any.secret");
    kz_config_destroy(&c);

    static const char *const bad[][2] = {
        {"broker:\n  rules:\n    agent:\n      publish: ['a*b']\n", "broker.rules.agent.publish"},
        {"broker:\n  rules:\n    agent:\n      join: ['!']\n", "invalid pattern '!'"},
        {"broker:\n  rules:\n    agent:\n      tap: maybe\n", "expected true or false"},
        {"broker:\n  rules:\n    operator:\n      call: ['e*x']\n", "broker.rules.operator.call"},
        {"broker:\n  rules:\n    root:\n      tap: true\n", "broker.rules.root"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = kz_config_parse("t.yaml", bad[i][0], strlen(bad[i][0]), err, sizeof err);
        assert_null(c);
        if (!strstr(err, bad[i][1]))
            fail_msg("case %zu: '%s' not in '%s'", i, bad[i][1], err);
    }
}

static void test_paths(void **state)
{
    (void)state;
    char err[512];
    unsetenv("KAIZEN_STATE_DIR");
    setenv("HOME", "/home/kz", 1);
    const char *text = "state_dir: ../state\n"
                       "bus:\n  curve:\n    broker_cert: certs/./broker.secret\n"
                       "    broker_public: /k/b.pub\n"
                       "    client_cert: ~/c.secret\n    allow_dir: ../../../allowed/\n"
                       "targets:\n  - {name: a, path: ../repos/a}\n  - {name: b, path: .}\n";
    kz_config_t *c = kz_config_parse("/srv/conf/kaizen.yaml", text, strlen(text), err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_string_equal(c->state_dir, "/srv/state");
    assert_string_equal(c->bus.curve.broker_cert, "/srv/conf/certs/broker.secret");
    assert_string_equal(c->bus.curve.broker_public, "/k/b.pub");
    assert_string_equal(c->bus.curve.client_cert, "/home/kz/c.secret");
    assert_string_equal(c->bus.curve.allow_dir, "/allowed");
    assert_string_equal(c->targets[0].path, "/srv/repos/a");
    assert_string_equal(c->targets[1].path, "/srv/conf");
    kz_config_destroy(&c);

    /* a bare file name is relative to the current directory */
    char cwd[PATH_MAX], want[PATH_MAX + 16];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "%s/st", cwd);
    c = kz_config_parse("kaizen.yaml", "state_dir: st\n", 14, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_string_equal(c->state_dir, want);
    kz_config_destroy(&c);
}

static void test_env(void **state)
{
    (void)state;
    char err[512];
    const char *text = "state_dir: /configured\n";

    setenv("KAIZEN_STATE_DIR", "/from/env//x/", 1);
    kz_config_t *c = s_parse(text, err, sizeof err);
    assert_non_null(c);
    assert_string_equal(c->state_dir, "/from/env/x");
    kz_config_destroy(&c);
    c = kz_config_default();
    assert_string_equal(c->state_dir, "/from/env/x");
    kz_config_destroy(&c);

    unsetenv("KAIZEN_STATE_DIR");
    setenv("XDG_STATE_HOME", "/xdg", 1);
    setenv("HOME", "/home/kz", 1);
    c = s_parse(text, err, sizeof err);
    assert_string_equal(c->state_dir, "/configured");
    kz_config_destroy(&c);
    /* root: /var/lib/kaizen; others: XDG, then HOME */
    bool root = geteuid() == 0;
    c = s_parse("", err, sizeof err);
    assert_string_equal(c->state_dir, root ? "/var/lib/kaizen" : "/xdg/kaizen");
    kz_config_destroy(&c);
    unsetenv("XDG_STATE_HOME");
    c = s_parse("", err, sizeof err);
    assert_string_equal(c->state_dir, root ? "/var/lib/kaizen" : "/home/kz/.local/state/kaizen");
    kz_config_destroy(&c);

    /* default path: $KAIZEN_CONFIG, else ./kaizen.yaml if present, else NULL */
    setenv("KAIZEN_CONFIG", "/etc/kaizen/k.yaml", 1);
    assert_string_equal(kz_config_default_path(), "/etc/kaizen/k.yaml");
    unsetenv("KAIZEN_CONFIG");
    char cwd[PATH_MAX];
    char dir[] = "/tmp/kz-test-config.XXXXXX";
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    assert_null(kz_config_default_path());
    FILE *f = fopen("kaizen.yaml", "w");
    assert_non_null(f);
    fputs("agents: [{name: x}]\n", f);
    fclose(f);
    assert_string_equal(kz_config_default_path(), "kaizen.yaml");
    c = kz_config_load(kz_config_default_path(), err, sizeof err);
    assert_non_null(c);
    assert_int_equal(c->agents_count, 1);
    kz_config_destroy(&c);
    unlink("kaizen.yaml");
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[512];
    kz_config_t *c = kz_config_load("/nonexistent/kaizen.yaml", err, sizeof err);
    assert_null(c);
    assert_string_equal(err, "unable to open '/nonexistent/kaizen.yaml': No such file or "
                             "directory");
    /* errors are still reported (truncated) into a tiny buffer, and no buffer is fine */
    char tiny[8];
    assert_null(s_parse("x: 1\n", tiny, sizeof tiny));
    assert_string_equal(tiny, "/etc/kz");
    assert_null(s_parse("x: 1\n", NULL, 0));
    /* nesting is capped */
    char deep[400];
    memset(deep, '[', 300);
    deep[300] = '\0';
    c = s_parse(deep, err, sizeof err);
    assert_null(c);
    assert_non_null(strstr(err, "nesting too deep"));
}

/* kz_config_mark: where each key's value was written, a parent's for a
   key left to its default */
static void test_marks(void **state)
{
    (void)state;
    char err[256];
    kz_config_t *c = s_parse("bus:\n"
                             "  endpoints: {pub: ipc:///tmp/p}\n"
                             "targets:\n"
                             "  - name: web\n"
                             "    path: /srv/web\n"
                             "    languages: [python, c]\n"
                             "    test: [pytest, -q]\n"
                             "  - {name: lib, path: /srv/lib}\n",
                             err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    int line, col;
    assert_int_equal(kz_config_mark(c, "targets[0].path", &line, &col), 0);
    assert_int_equal(line, 5);
    assert_int_equal(col, 11);
    assert_int_equal(kz_config_mark(c, "targets[0].languages[1]", &line, &col), 0);
    assert_int_equal(line, 6);
    assert_int_equal(col, 25);
    assert_int_equal(kz_config_mark(c, "targets[0].test[0]", &line, &col), 0);
    assert_int_equal(line, 7);
    assert_int_equal(col, 12);
    assert_int_equal(kz_config_mark(c, "targets[1].path", &line, &col), 0);
    assert_int_equal(line, 8);
    assert_int_equal(col, 23);
    assert_int_equal(kz_config_mark(c, "bus.endpoints.pub", &line, &col), 0);
    assert_int_equal(line, 2);
    assert_int_equal(col, 20);
    /* left to its default: the entry that took it */
    assert_int_equal(kz_config_mark(c, "targets[1].branch", &line, &col), 0);
    assert_int_equal(line, 8);
    assert_int_equal(col, 5);
    assert_int_equal(kz_config_mark(c, "bus.endpoints.sub", &line, &col), 0);
    assert_int_equal(line, 2);
    assert_int_equal(col, 14);
    /* not in the file at all */
    assert_int_equal(kz_config_mark(c, "policy.apply", &line, &col), -1);
    assert_int_equal(line, 1);
    assert_int_equal(col, 1);
    kz_config_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_file),  cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_errors_keys),   cmocka_unit_test(test_errors_types),
        cmocka_unit_test(test_errors_values), cmocka_unit_test(test_durations_sizes),
        cmocka_unit_test(test_paths),         cmocka_unit_test(test_bus_rules),
        cmocka_unit_test(test_env),           cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_loop_keys),     cmocka_unit_test(test_loop_errors),
        cmocka_unit_test(test_catalog),       cmocka_unit_test(test_bus_tcp_curve),
        cmocka_unit_test(test_marks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
