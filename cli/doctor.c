/*  doctor.c - `kaizen doctor`: what is missing, and the command that fixes it

    One line per check: ok, MISSING, FAIL, or off (not running - not a
    problem), and under each problem the exact command that fixes it.
    Checks: the config; the Debian packages kaizen runs on (dpkg-query,
    run with kz_proc: an argv, no shell); the kaizen programs beside this
    one (the broker, the orchestrator, every configured agent); the state
    directory; per target, exactly what it needs - the tool recipes that
    apply to its languages and that it chose (tools[].requires), the
    fixers of those tools and its test program - each program checked
    once, tools a target does not run only listed; whether
    each target's tests can run at the head of its branch (lib/
    kz_testsuite.h: the base cache when it has that commit, else the suite
    run in a temporary worktree kaizen removes afterwards); the database
    (the embedded cluster or the DSN's server, and the schema version
    against the compiled-in migrations); the broker and the orchestrator
    (mmi.service); the CURVE keys when CURVE is on.
*/
#include "cli.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_config_check.h"
#include "kz_db.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_pgctl.h"
#include "kz_proc.h"
#include "kz_recipe.h"
#include "kz_state.h"
#include "kz_testsuite.h"

#define S_APP        "kaizen-cli"
#define S_PROBE_MS   1500
#define S_DPKG_MS    10000
#define S_MAX_FIXPKG 64

static const char s_usage[] =
    "usage: kaizen [-c FILE] doctor\n"
    "\n"
    "Check what kaizen needs and print one line per check - ok, MISSING, FAIL,\n"
    "or off (not running, which is not a problem) - with, under each problem,\n"
    "the command that fixes it:\n"
    "\n"
    "  the config; the Debian packages kaizen runs on; the kaizen programs\n"
    "  (kaizen-broker, kaizen-orchestrator, kaizen-NAME for each agent); the\n"
    "  state directory (private: ours, writable by no one else); per target,\n"
    "  who owns it (another user only with trust_owner: true), what it needs:\n"
    "  the tool recipes that apply to its languages and that the project chose\n"
    "  (tools[].requires), their fixers and its test program (tools it does not\n"
    "  run are only listed); for\n"
    "  each target with a test command, whether its tests can run at the head\n"
    "  of its branch (from the test runner's base cache when it has that\n"
    "  commit, else by running them in a temporary worktree, removed after);\n"
    "  the database and its schema version; the broker and the orchestrator;\n"
    "  the CURVE keys when bus.curve.enabled is true.\n"
    "\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 nothing is wrong, 1 at least one MISSING or FAIL (or a bad\n"
    "config), 2 usage\n";

/* The libraries the kaizen programs are linked with, by Debian 12 package */
static const char *const s_runtime_packages[] = {
    "libzmq5",     "libczmq4", "libmsgpackc2", "libyaml-0-2", "libpq5",
    "libjansson4", "libxml2",  "libpcre2-8-0", "bubblewrap",
};

typedef struct {
    const kz_config_t *cfg;
    const char *config_path; /* NULL: the defaults */
    int checks;
    int problems;
    const char *fix_packages[S_MAX_FIXPKG]; /* for the one apt-get line at the end */
    size_t fix_count;
} s_doctor_t;

/* One result line: WORD is ok, MISSING, FAIL, off or skip */
static void s_line(s_doctor_t *d, const char *word, const char *what, const char *detail,
                   const char *fix)
{
    d->checks++;
    if (strcmp(word, "MISSING") == 0 || strcmp(word, "FAIL") == 0)
        d->problems++;
    printf("  %-7s  %-28s %s\n", word, what, detail ? detail : "");
    if (fix)
        printf("  %-7s  %-28s fix: %s\n", "", "", fix);
}

static void s_want_package(s_doctor_t *d, const char *pkg)
{
    for (size_t i = 0; i < d->fix_count; i++)
        if (strcmp(d->fix_packages[i], pkg) == 0)
            return;
    if (d->fix_count < S_MAX_FIXPKG)
        d->fix_packages[d->fix_count++] = pkg;
}

/* The config's semantics (lib/kz_config_check.h), as `kaizen up` checks
   them: one FAIL line per problem, "FILE:LINE:COL: KEY: what is wrong" */
static void s_config_check(s_doctor_t *d)
{
    kz_config_problems_t problems;
    char err[256];
    if (kz_config_check(d->cfg, NULL, &problems, err, sizeof err) != 0) {
        s_line(d, "FAIL", "config semantics", err, "run kaizen doctor again with more memory free");
        return;
    }
    if (problems.count == 0)
        s_line(d, "ok", "config semantics",
               "targets, their branches, test programs and languages' tools; endpoints", NULL);
    for (size_t i = 0; i < problems.count; i++)
        s_line(d, "FAIL", "config semantics", problems.lines[i],
               "correct the config at that position ('kaizen up' refuses to start until then)");
    kz_config_problems_clear(&problems);
}

/* ------------------------------------------------------------- packages */

static void s_packages(s_doctor_t *d)
{
    char *dpkg = kz_proc_which("dpkg-query");
    if (!dpkg) {
        s_line(d, "skip", "Debian packages",
               "dpkg-query not found (not Debian): install ZeroMQ, CZMQ, msgpack-c, libyaml, "
               "libpq, jansson, libxml2, PCRE2 and the PostgreSQL server yourself",
               NULL);
        return;
    }
    free(dpkg);
    size_t n = sizeof s_runtime_packages / sizeof s_runtime_packages[0];
    for (size_t i = 0; i <= n; i++) {
        const char *pkg = i < n ? s_runtime_packages[i] : "postgresql";
        if (i == n && !kz_db_embedded(d->cfg))
            break; /* the server is someone else's */
        const char *argv[] = {"dpkg-query", "-W", "-f", "${Status}\t${Version}", pkg, NULL};
        kz_proc_opts_t opts;
        memset(&opts, 0, sizeof opts);
        opts.argv = argv;
        opts.timeout_ms = S_DPKG_MS;
        opts.out_cap = 4096;
        opts.err_cap = 4096;
        kz_proc_result_t res;
        char err[512] = "";
        char what[64], detail[256];
        snprintf(what, sizeof what, "package %s", pkg);
        int rc = kz_proc_run(&opts, &res, err, sizeof err);
        if (rc != 0) {
            s_line(d, "FAIL", what, err, NULL);
        } else if (res.exit_code == 0 && strncmp(res.out, "install ok installed", 20) == 0) {
            const char *tab = strchr(res.out, '\t');
            snprintf(detail, sizeof detail, "installed %s", tab ? tab + 1 : "");
            s_line(d, "ok", what, detail, NULL);
        } else {
            char fix[128];
            snprintf(fix, sizeof fix, "apt-get install -y %s", pkg);
            s_line(d, "MISSING", what,
                   i == n ? "not installed (the embedded database needs the server)"
                          : "not installed",
                   fix);
            s_want_package(d, pkg);
        }
        kz_proc_result_free(&res);
    }
}

/* ------------------------------------------------------------- programs */

static void s_program(s_doctor_t *d, const char *bin, const char *name, const char *agent)
{
    char path[PATH_MAX + 64], what[160], fix[512];
    snprintf(path, sizeof path, "%s/kaizen-%s", bin, name);
    snprintf(what, sizeof what, "%s kaizen-%s", agent ? "agent" : "program", name);
    if (access(path, X_OK) == 0) {
        s_line(d, "ok", what, path, NULL);
        return;
    }
    char detail[PATH_MAX + 128];
    snprintf(detail, sizeof detail, "%s %s", path,
             errno == ENOENT ? "not found" : "is not executable");
    if (agent)
        snprintf(fix, sizeof fix,
                 "build the agents with 'make' if '%s' is a kaizen agent, else remove it from "
                 "agents in %s",
                 agent, d->config_path ? d->config_path : "kaizen.yaml");
    else
        snprintf(fix, sizeof fix, "build kaizen with 'make' (or 'make install')");
    s_line(d, "MISSING", what, detail, fix);
}

static void s_programs(s_doctor_t *d)
{
    char bin[PATH_MAX];
    if (kz_cli_bin_dir(bin, sizeof bin) != 0) {
        s_line(d, "FAIL", "programs", "unable to find the directory of this kaizen executable",
               NULL);
        return;
    }
    s_program(d, bin, "broker", NULL);
    s_program(d, bin, "orchestrator", NULL);
    for (size_t i = 0; i < d->cfg->agents_count; i++) {
        const char *name = d->cfg->agents[i].name;
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen |= strcmp(d->cfg->agents[j].name, name) == 0;
        if (!seen)
            s_program(d, bin, name, name);
    }
}

/* --------------------------------------------------------- state, tools */

static void s_state_dir(s_doctor_t *d)
{
    const char *dir = d->cfg->state_dir;
    char fix[PATH_MAX + 128], detail[PATH_MAX + 128];
    struct stat st;
    if (stat(dir, &st) == 0) {
        char why[PATH_MAX * 2 + 512];
        if (kz_state_check_dir(dir, why, sizeof why) != 0) {
            /* another owner, or writable by others: refused (kz_state.h) */
            char *say = strstr(why, "; fix it with: ");
            if (say)
                *say = '\0';
            if (st.st_uid != geteuid())
                snprintf(fix, sizeof fix, "chown -R %ld '%s' && chmod 0711 '%s'", (long)geteuid(),
                         dir, dir);
            else
                snprintf(fix, sizeof fix, "chmod 0711 '%s'", dir);
            s_line(d, "FAIL", "state directory", why, fix);
            return;
        }
        if (S_ISDIR(st.st_mode) && access(dir, W_OK | X_OK) == 0) {
            if ((st.st_mode & 07777 & ~0711) != 0) {
                snprintf(detail, sizeof detail,
                         "%s (mode %04o: readable by other users; the next 'kaizen up' makes it "
                         "0711)",
                         dir, (unsigned)(st.st_mode & 07777));
                s_line(d, "ok", "state directory", detail, NULL);
            } else {
                s_line(d, "ok", "state directory", dir, NULL);
            }
            return;
        }
        snprintf(detail, sizeof detail, "%s is not a writable directory", dir);
        snprintf(fix, sizeof fix, "chown -R %ld '%s' (or set state_dir in the config)",
                 (long)geteuid(), dir);
        s_line(d, "FAIL", "state directory", detail, fix);
        return;
    }
    /* not there yet: `kaizen up` creates it when its parent lets it */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    for (;;) {
        char *slash = strrchr(parent, '/');
        if (!slash)
            snprintf(parent, sizeof parent, ".");
        else if (slash == parent)
            parent[1] = '\0';
        else
            *slash = '\0';
        if (stat(parent, &st) == 0 || strcmp(parent, "/") == 0 || strcmp(parent, ".") == 0)
            break;
    }
    if (access(parent, W_OK | X_OK) == 0) {
        snprintf(detail, sizeof detail, "%s (not there yet: 'kaizen up' creates it)", dir);
        s_line(d, "ok", "state directory", detail, NULL);
    } else {
        snprintf(detail, sizeof detail, "%s cannot be created: '%s' is not writable", dir, parent);
        snprintf(fix, sizeof fix, "mkdir -p '%s' && chown %ld '%s' (as root)", dir, (long)geteuid(),
                 dir);
        s_line(d, "FAIL", "state directory", detail, fix);
    }
}

/* Each target's repository belongs to us, or its entry trusts its owner */
static void s_target_owners(s_doctor_t *d)
{
    for (size_t t = 0; t < d->cfg->targets_count; t++) {
        const kz_target_config_t *target = &d->cfg->targets[t];
        char what[300], why[PATH_MAX * 2 + 512], fix[PATH_MAX + 256];
        snprintf(what, sizeof what, "owner of %s", target->name);
        if (!target->path)
            continue;
        if (kz_git_check_owner(target->path, target->trust_owner, why, sizeof why) == 0) {
            struct stat st;
            bool ours = stat(target->path, &st) != 0 || st.st_uid == geteuid();
            s_line(d, "ok", what, ours ? target->path : "another user (trusted: trust_owner: true)",
                   NULL);
            continue;
        }
        snprintf(fix, sizeof fix,
                 "set trust_owner: true in the entry of target %s if you trust that user, or "
                 "chown -R %ld '%s'",
                 target->name, (long)geteuid(), target->path);
        s_line(d, "FAIL", what, why, fix);
    }
}

/* The sandbox the tools, fixers and tests run in: a probe inside it, as
   its user (docs/sandbox.md) */
static void s_sandbox(s_doctor_t *d)
{
    char detail[512], err[1024];
    kz_sandbox_describe(detail, sizeof detail);
    if (!kz_sandbox_enabled()) {
        s_line(d, "off", "sandbox", detail, NULL);
        return;
    }
    if (kz_sandbox_check(true, err, sizeof err) != 0) {
        /* a reason that names its own fix (a state directory the sandbox's
           user cannot reach) is not about installing bubblewrap */
        s_line(d, "FAIL", "sandbox", err,
               strstr(err, "fix it with:")
                   ? NULL
                   : "apt-get install bubblewrap (or run scripts/install-deps, which also "
                     "creates kaizen-runner), or set sandbox.enabled: false in the config");
        return;
    }
    s_line(d, "ok", "sandbox", detail, NULL);
}

static bool s_language_used(const kz_config_t *cfg, const char *language)
{
    for (size_t t = 0; t < cfg->targets_count; t++)
        for (size_t l = 0; l < cfg->targets[t].languages_count; l++)
            if (strcmp(cfg->targets[t].languages[l], language) == 0)
                return true;
    return false;
}

/* Check one recipe's program (argv[0]; for "python3 -m MOD" also that
   MOD imports): WHAT names the check, NAME the tool or fixer (its
   Debian package, else the program's, goes in the fix) */
static void s_recipe_program(s_doctor_t *d, const char *what, const char *name, char **argv,
                             size_t argc)
{
    char fix[200], detail[PATH_MAX + 64];
    const char *package = kz_cli_tool_package(name);
    if (!package)
        package = kz_cli_tool_package(kz_cli_program_name(argv, argc));
    if (package)
        snprintf(fix, sizeof fix, "apt-get install -y %s", package);
    else
        snprintf(fix, sizeof fix, "install '%s' or change the recipe's argv", argc ? argv[0] : "");
    if (kz_cli_program_ready(argv, argc, detail, sizeof detail)) {
        s_line(d, "ok", what, detail, NULL);
        return;
    }
    s_line(d, "MISSING", what, detail, fix);
    if (package)
        s_want_package(d, package);
}

/* Append ", NAME" (or NAME first) to BUF of LEN at *AT, cut when full */
static void s_list_add(char *buf, size_t len, size_t *at, const char *name)
{
    if (*at >= len)
        return;
    int n = snprintf(buf + *at, len - *at, "%s%s", *at ? ", " : "", name);
    *at += n > 0 ? (size_t)n : 0;
}

/* Where to look for the evidence of TARGET's choices: its path, or the
   directory it will be created from while it does not exist yet */
static const char *s_target_root(const kz_target_config_t *target)
{
    struct stat st;
    if (target->init_from && stat(target->path, &st) != 0)
        return target->init_from;
    return target->path;
}

/* Exactly what TARGET needs: the tool recipes that apply to its languages
   and that it chose (tools[].requires) - each program checked once over
   all targets (DONE_TOOLS, DONE_FIXERS) - the fixers of those tools, and
   its test program. Tools that apply but were not chosen are listed,
   never checked: they do not run on this target */
static void s_target_needs(s_doctor_t *d, const kz_target_config_t *target, bool *done_tools,
                           bool *done_fixers)
{
    const kz_config_t *cfg = d->cfg;
    const char *root = s_target_root(target);
    char chosen[1024] = "", skipped[1024] = "", fixers[1024] = "", what[192], detail[3200];
    size_t nc = 0, ns = 0, nf = 0;
    for (size_t i = 0; i < cfg->tools_count; i++) {
        const kz_tool_config_t *tool = &cfg->tools[i];
        if (!kz_tool_applies(tool, target->languages))
            continue;
        if (!kz_tool_chosen(tool, root, NULL, 0)) {
            s_list_add(skipped, sizeof skipped, &ns, tool->name);
            continue;
        }
        s_list_add(chosen, sizeof chosen, &nc, tool->name);
        for (size_t f = 0; f < cfg->fixers_count; f++)
            if (cfg->fixers[f].tool && strcmp(cfg->fixers[f].tool, tool->name) == 0)
                s_list_add(fixers, sizeof fixers, &nf, cfg->fixers[f].name);
    }
    char langs[256] = "";
    size_t nl = 0;
    for (size_t l = 0; l < target->languages_count; l++)
        s_list_add(langs, sizeof langs, &nl, target->languages[l]);
    snprintf(what, sizeof what, "target %s", target->name);
    snprintf(detail, sizeof detail, "languages: %s; tools: %s; fixers: %s; test: %s",
             nl ? langs : "all", nc ? chosen : "none", nf ? fixers : "none",
             target->test_count ? target->test[0] : "none");
    s_line(d, "ok", what, detail, NULL);
    if (ns) {
        snprintf(what, sizeof what, "tools not chosen by %s", target->name);
        snprintf(detail, sizeof detail, "%s (no evidence in %s: tools[].requires; not run)",
                 skipped, root);
        s_line(d, "skip", what, detail, NULL);
    }
    for (size_t i = 0; i < cfg->tools_count; i++) {
        const kz_tool_config_t *tool = &cfg->tools[i];
        if (done_tools[i] || !kz_tool_applies(tool, target->languages) ||
            !kz_tool_chosen(tool, root, NULL, 0))
            continue;
        done_tools[i] = true;
        snprintf(what, sizeof what, "tool %s", tool->name);
        s_recipe_program(d, what, tool->name, tool->argv, tool->argv_count);
        for (size_t f = 0; f < cfg->fixers_count; f++) {
            const kz_fixer_config_t *fixer = &cfg->fixers[f];
            if (done_fixers[f] || !fixer->tool || strcmp(fixer->tool, tool->name) != 0)
                continue;
            done_fixers[f] = true;
            snprintf(what, sizeof what, "fixer %s", fixer->name);
            s_recipe_program(d, what, fixer->name, fixer->argv, fixer->argv_count);
        }
    }
    if (target->test_count) {
        snprintf(what, sizeof what, "test program of %s", target->name);
        s_recipe_program(d, what, kz_cli_program_name(target->test, target->test_count),
                         target->test, target->test_count);
    }
}

/* The tool and fixer recipes of the config, per target */
static void s_recipe_tools(s_doctor_t *d)
{
    bool *done_tools = calloc(d->cfg->tools_count + 1, sizeof *done_tools);
    bool *done_fixers = calloc(d->cfg->fixers_count + 1, sizeof *done_fixers);
    if (!done_tools || !done_fixers)
        s_line(d, "FAIL", "tools", "out of memory",
               "run kaizen doctor again with more memory free");
    else
        for (size_t t = 0; t < d->cfg->targets_count; t++)
            s_target_needs(d, &d->cfg->targets[t], done_tools, done_fixers);
    free(done_tools);
    free(done_fixers);
}

static void s_target_tools(s_doctor_t *d)
{
    if (d->cfg->tools_count || d->cfg->fixers_count) {
        s_recipe_tools(d);
        return;
    }
    for (size_t t = 0; t < d->cfg->targets_count; t++)
        for (size_t l = 0; l < d->cfg->targets[t].languages_count; l++) {
            const char *lang = d->cfg->targets[t].languages[l];
            bool known = false;
            for (size_t i = 0; i < kz_cli_tools_count; i++)
                known |= strcmp(kz_cli_tools[i].language, lang) == 0;
            if (!known) {
                char what[160];
                snprintf(what, sizeof what, "tools for %s", lang);
                s_line(d, "skip", what, "no tools known for this language", NULL);
            }
        }
    for (size_t i = 0; i < kz_cli_tools_count; i++) {
        const kz_cli_tool_t *t = &kz_cli_tools[i];
        if (!s_language_used(d->cfg, t->language))
            continue;
        char what[160], fix[160];
        snprintf(what, sizeof what, "tool %s (%s)", t->names[0], t->language);
        char *path = NULL;
        for (size_t n = 0; n < 3 && t->names[n] && !path; n++)
            path = kz_proc_which(t->names[n]);
        if (path) {
            s_line(d, "ok", what, path, NULL);
            free(path);
        } else {
            snprintf(fix, sizeof fix, "apt-get install -y %s", t->package);
            s_line(d, "MISSING", what, "not found on PATH", fix);
            s_want_package(d, t->package);
        }
    }
}

/* ---------------------------------------------------------------- tests */

/* A line that is no check: what doctor is doing (a suite may take minutes) */
static void s_note(const char *what, const char *detail)
{
    printf("  %-7s  %-28s %s\n", "...", what, detail);
    fflush(stdout);
}

/* Whether TARGET's tests can run at the head of its branch */
static void s_target_suite(s_doctor_t *d, const kz_target_config_t *target)
{
    char what[160], detail[2048], err[512];
    snprintf(what, sizeof what, "tests of %s", target->name);
    if (!target->test || target->test_count == 0) {
        s_line(d, "skip", what, "no test command (targets[].test)", NULL);
        return;
    }
    struct stat st;
    if (target->init_from && stat(target->path, &st) != 0 && errno == ENOENT) {
        s_line(d, "skip", what, "not created yet ('kaizen up' creates it from init_from)", NULL);
        return;
    }
    kz_testsuite_run_t run;
    kz_testsuite_run_init(&run);
    if (kz_git_check_repo(target->path, err, sizeof err) != 0) {
        s_line(d, "FAIL", what, err, "set targets[].path to the repository's top directory");
        return;
    }
    if (kz_git_rev(target->path, target->branch, run.commit, err, sizeof err) != 0) {
        snprintf(detail, sizeof detail, "branch '%s': %s", target->branch, err);
        s_line(d, "FAIL", what, detail, "set targets[].branch to a branch of the repository");
        return;
    }
    int rc = 0;
    bool state = stat(d->cfg->state_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
                 access(d->cfg->state_dir, W_OK | X_OK) == 0;
    /* a usable cached base is the answer; an unusable one is checked
       again: doctor is where a user looks after fixing the suite */
    if (!state || !kz_testsuite_cached(d->cfg, target, &run) || !run.usable) {
        kz_testsuite_run_clear(&run);
        snprintf(detail, sizeof detail,
                 "running the test command at %.12s in a temporary worktree%s (removed after; "
                 "up to targets[].test_timeout, %g s)",
                 run.commit, state ? " under the state directory" : "",
                 target->test_timeout_ms / 1000.0);
        s_note(what, detail);
        rc = state ? kz_testsuite_base(d->cfg, target, NULL, KZ_TESTSUITE_RECHECK, &run)
                   : kz_cli_tests_in_tmp(target, "kaizen-doctor", &run);
    }
    char fix[512];
    if (rc != 0) {
        s_line(d, "FAIL", what, "out of memory", "run kaizen doctor again with more memory free");
    } else if (run.error[0]) {
        snprintf(detail, sizeof detail, "unable to run them at %.12s: %s", run.commit, run.error);
        snprintf(fix, sizeof fix, "git -C '%s' worktree prune, and check that %s is writable",
                 target->path, state ? d->cfg->state_dir : "the temporary directory");
        s_line(d, "FAIL", what, detail, fix);
    } else if (!run.usable) {
        snprintf(detail, sizeof detail, "cannot run at %.12s of %s: %s", run.commit, target->branch,
                 run.why);
        snprintf(fix, sizeof fix,
                 "run the test command by hand in a checkout of %.12s and fix what stops it",
                 run.commit);
        s_line(d, "FAIL", what, detail, run.fix[0] ? run.fix : fix);
    } else {
        snprintf(detail, sizeof detail,
                 "can run at %.12s of %s: %ld passed, %ld failed, %ld "
                 "skipped (%s; %s)",
                 run.commit, target->branch, run.passed, run.failed + run.errors, run.skipped,
                 run.source, run.cached ? "cached" : "ran now");
        s_line(d, "ok", what, detail, NULL);
    }
    kz_testsuite_run_clear(&run);
}

static void s_tests(s_doctor_t *d)
{
    /* the suite's own progress lines are the test runner's business */
    kz_log_level_t level = kz_log_level();
    kz_log_set_level(KZ_LOG_OFF);
    for (size_t t = 0; t < d->cfg->targets_count; t++)
        s_target_suite(d, &d->cfg->targets[t]);
    kz_log_set_level(level);
}

/* ------------------------------------------------------------- database */

static void s_schema(s_doctor_t *d, const char *where)
{
    char err[2048] = "", detail[2400];
    PGconn *db = kz_db_connect(d->cfg, S_APP, err, sizeof err);
    if (!db) {
        s_line(d, "FAIL", "database", err,
               kz_db_embedded(d->cfg) ? "kaizen db start (or kaizen up)" : NULL);
        return;
    }
    snprintf(detail, sizeof detail, "%s, reachable", where);
    s_line(d, "ok", "database", detail, NULL);
    int version = kz_db_schema_version(db, err, sizeof err);
    PQfinish(db);
    int expected = kz_migrations_count > 0 ? kz_migrations[kz_migrations_count - 1].version : 0;
    if (version < 0) {
        s_line(d, "FAIL", "database schema", err, NULL);
    } else if (version < expected) {
        snprintf(detail, sizeof detail, "version %d, this kaizen needs %d", version, expected);
        s_line(d, "FAIL", "database schema", detail, "kaizen db migrate");
    } else if (version > expected) {
        snprintf(detail, sizeof detail, "version %d is newer than this kaizen knows (%d)", version,
                 expected);
        s_line(d, "FAIL", "database schema", detail, "install the newer kaizen that migrated it");
    } else {
        snprintf(detail, sizeof detail, "version %d, up to date", version);
        s_line(d, "ok", "database schema", detail, NULL);
    }
}

static void s_database(s_doctor_t *d)
{
    char where[1024], err[2048] = "", detail[3200];
    kz_db_describe(d->cfg, where, sizeof where);
    if (!kz_db_embedded(d->cfg)) {
        s_schema(d, where);
        return;
    }
    kz_pg_t pg;
    if (kz_pg_init(&pg, d->cfg->state_dir, err, sizeof err) != 0) {
        s_line(d, "FAIL", "database", err, NULL);
        return;
    }
    if (kz_pg_exists(&pg) != 1) {
        snprintf(detail, sizeof detail, "%s: not created yet ('kaizen up' creates it%s)", where,
                 pg.drop_privileges ? "; it runs as user postgres" : "");
        s_line(d, "off", "database", detail, NULL);
        return;
    }
    int running = kz_pg_running(&pg, err, sizeof err);
    if (running < 0) {
        s_line(d, "FAIL", "database", err, NULL);
    } else if (running == 0) {
        snprintf(detail, sizeof detail,
                 "%s: stopped (start it with 'kaizen up' or 'kaizen db "
                 "start')",
                 where);
        s_line(d, "off", "database", detail, NULL);
    } else {
        s_schema(d, where);
    }
}

/* ------------------------------------------------------- broker and keys */

static void s_broker(s_doctor_t *d)
{
    char err[1024] = "", detail[1200], id[320], host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(id, sizeof id, "kaizen-doctor@%s#%ld", host, (long)getpid());
    kz_bus_t *bus = kz_bus_new(&d->cfg->bus, id, err, sizeof err);
    if (!bus) {
        s_line(d, "FAIL", "broker", err, NULL);
        return;
    }
    uint8_t *reply = NULL;
    size_t len = 0;
    static const char service[] = "kaizen.status";
    int rc = kz_bus_call_raw(bus, "mmi.service", service, sizeof service - 1, S_PROBE_MS, &reply,
                             &len, err, sizeof err);
    kz_bus_destroy(&bus);
    const char *router = d->cfg->bus.connect.router;
    char pidfile[PATH_MAX];
    pid_t pid = 0;
    if (kz_state_path(d->cfg, "run/orchestrator.pid", pidfile, sizeof pidfile) == 0)
        pid = kz_pidfile_read(pidfile);
    bool orch_alive = pid > 0 && kz_pid_is_kaizen(pid);
    if (rc != 0) {
        if (orch_alive) {
            snprintf(detail, sizeof detail,
                     "no answer on %s although the orchestrator runs (pid %ld)", router, (long)pid);
            s_line(d, "FAIL", "broker", detail,
                   "kaizen logs broker; then kaizen down && kaizen up");
        } else {
            snprintf(detail, sizeof detail,
                     "not running (no answer on %s): start it with "
                     "'kaizen up'",
                     router);
            s_line(d, "off", "broker", detail, NULL);
        }
        free(reply);
        return;
    }
    snprintf(detail, sizeof detail, "answering on %s", router);
    s_line(d, "ok", "broker", detail, NULL);
    bool served = len >= 3 && memcmp(reply, "200", 3) == 0;
    free(reply);
    if (served)
        s_line(d, "ok", "orchestrator", "answering kaizen.status", NULL);
    else if (orch_alive) {
        snprintf(detail, sizeof detail, "runs (pid %ld) but does not serve kaizen.status",
                 (long)pid);
        s_line(d, "FAIL", "orchestrator", detail, "kaizen logs orchestrator");
    } else
        s_line(d, "off", "orchestrator", "not running: start it with 'kaizen up'", NULL);
}

/* The key name for `kaizen keygen`: the file name without .key/_secret */
static void s_key_name(const char *path, char *buf, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, len, "%s", base);
    char *dot = strstr(buf, ".key");
    if (dot)
        *dot = '\0';
}

static void s_key_file(s_doctor_t *d, const char *key, const char *path)
{
    if (!path)
        return;
    char what[96], detail[PATH_MAX + 64], fix[PATH_MAX * 2 + 64];
    snprintf(what, sizeof what, "key %s", key);
    FILE *f = fopen(path, "re");
    if (f) {
        fclose(f);
        s_line(d, "ok", what, path, NULL);
        return;
    }
    int e = errno;
    snprintf(detail, sizeof detail, "%s: %s", path, strerror(e));
    char name[256], dir[PATH_MAX];
    s_key_name(path, name, sizeof name);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (e == ENOENT)
        snprintf(fix, sizeof fix, "kaizen keygen %s --dir '%s' (docs/cli.md, 'kaizen keygen')",
                 name, dir);
    else
        snprintf(fix, sizeof fix, "chmod u+r '%s' (or run kaizen as its owner)", path);
    s_line(d, e == ENOENT ? "MISSING" : "FAIL", what, detail, fix);
}

/* The public certificate in allow_dir whose key is KEY: its file name,
   role metadata ("" when none) into NAME/ROLE; -1 when none is */
static int s_allowed_cert(const char *allow_dir, const char *key, char *name, size_t nlen,
                          char *role, size_t rlen)
{
    DIR *dir = allow_dir ? opendir(allow_dir) : NULL;
    if (!dir)
        return -1;
    int rc = -1;
    struct dirent *e;
    while (rc == -1 && (e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || (len > 7 && strcmp(e->d_name + len - 7, "_secret") == 0))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", allow_dir, e->d_name) >= (int)sizeof path)
            continue;
        zcert_t *cert = zcert_load(path);
        if (cert && strcmp(zcert_public_txt(cert), key) == 0) {
            const char *r = zcert_meta(cert, "role");
            snprintf(name, nlen, "%s", e->d_name);
            snprintf(role, rlen, "%s", r ? r : "");
            rc = 0;
        }
        zcert_destroy(&cert);
    }
    closedir(dir);
    return rc;
}

/* Each role's certificate: readable, and (when this host has allow_dir,
   i.e. runs the broker) admitted with that role; the broker's own key
   must not be a client's */
static void s_curve_roles(s_doctor_t *d, const kz_curve_config_t *c)
{
    static const char *const roles[] = {KZ_ROLE_ORCHESTRATOR, KZ_ROLE_AGENT, KZ_ROLE_OPERATOR};
    const char *certs[] = {c->orchestrator_cert, c->agent_cert, c->operator_cert};
    char what[64], detail[PATH_MAX + 256], fix[PATH_MAX + 256], name[256], role[64];
    for (size_t i = 0; i < 3; i++) {
        snprintf(what, sizeof what, "bus.curve.%s_cert", roles[i]);
        /* without role certificates every process uses client_cert (the
           CLI made its operator_cert its client_cert: kz_config_bus_role) */
        bool none =
            !(certs[0] && *certs[0]) && !(certs[1] && *certs[1]) && !(certs[2] && *certs[2]);
        const char *path = certs[i] && *certs[i] ? certs[i] : none ? c->client_cert : NULL;
        if (certs[i] && *certs[i])
            s_key_file(d, what, certs[i]);
        zcert_t *cert = path && access(path, R_OK) == 0 ? zcert_load(path) : NULL;
        if (!cert || !c->allow_dir)
            goto next;
        snprintf(what, sizeof what, "bus role %s", roles[i]);
        if (s_allowed_cert(c->allow_dir, zcert_public_txt(cert), name, sizeof name, role,
                           sizeof role) == -1) {
            snprintf(detail, sizeof detail, "the key of %s is not in %s", path, c->allow_dir);
            snprintf(fix, sizeof fix,
                     "kaizen keygen NAME --role %s, copy NAME.key into %s and name "
                     "NAME.key_secret in bus.curve.%s_cert",
                     roles[i], c->allow_dir, roles[i]);
            s_line(d, "FAIL", what, detail, fix);
        } else if (strcmp(role[0] ? role : KZ_ROLE_AGENT, roles[i]) != 0) {
            snprintf(detail, sizeof detail,
                     "%s/%s has role %s: the broker refuses what only %s may", c->allow_dir, name,
                     role[0] ? role : "none (agent)", roles[i]);
            snprintf(fix, sizeof fix, "kaizen keygen NAME --role %s (proto/PROTOCOL.md 1.5)",
                     roles[i]);
            s_line(d, "FAIL", what, detail, fix);
        } else {
            snprintf(detail, sizeof detail, "%s in allow_dir as %s", path, name);
            s_line(d, "ok", what, detail, NULL);
        }
    next:
        zcert_destroy(&cert);
    }
    zcert_t *broker =
        c->broker_cert && access(c->broker_cert, R_OK) == 0 ? zcert_load(c->broker_cert) : NULL;
    if (broker && c->allow_dir &&
        s_allowed_cert(c->allow_dir, zcert_public_txt(broker), name, sizeof name, role,
                       sizeof role) == 0) {
        snprintf(detail, sizeof detail, "the broker's own key is in allow_dir as %s", name);
        snprintf(fix, sizeof fix, "rm '%s/%s' (clients name it in bus.curve.broker_public)",
                 c->allow_dir, name);
        s_line(d, "FAIL", "bus.curve.allow_dir", detail, fix);
    }
    zcert_destroy(&broker);
    const kz_bus_rules_t *r = &d->cfg->broker.rules;
    const kz_role_rules_t *rr[] = {&r->orchestrator, &r->agent, &r->operator};
    bool custom = false;
    for (size_t i = 0; i < 3; i++)
        custom |= rr[i]->publish || rr[i]->offer || rr[i]->join || rr[i]->tap;
    s_line(d, "ok", "bus rules",
           custom ? "broker.rules set: built-in rules with the config's lists"
                  : "built-in (proto/PROTOCOL.md 1.5)",
           NULL);
}

static void s_curve(s_doctor_t *d)
{
    const kz_curve_config_t *c = &d->cfg->bus.curve;
    if (!c->enabled) {
        /* without CURVE the bus has no identities: TCP admits anyone that
           reaches the port with every role, ipc:// only who may enter
           its directory */
        const kz_bus_config_t *b = &d->cfg->bus;
        const char *eps[8] = {b->connect.pub, b->connect.sub, b->connect.router, b->connect.tap,
                              b->bind.pub,    b->bind.sub,    b->bind.router,    b->bind.tap};
        const char *tcp = NULL;
        for (int i = 0; i < 8 && !tcp; i++)
            if (eps[i] && strncmp(eps[i], "tcp://", 6) == 0)
                tcp = eps[i];
        if (tcp) {
            char detail[512];
            snprintf(detail, sizeof detail,
                     "%s without CURVE: any peer that reaches it may approve plans and serve "
                     "validators",
                     tcp);
            s_line(d, "FAIL", "bus security", detail,
                   "enable bus.curve with a key per role (docs/cli.md, 'kaizen keygen'), or "
                   "leave bus.endpoints unset for the private ipc:// default");
        } else
            s_line(d, "ok", "bus security",
                   "ipc:// without CURVE: only users who may enter the sockets' directories "
                   "(STATE/bus: kaizen's own)",
                   NULL);
        s_line(d, "skip", "CURVE keys", "bus.curve.enabled is false", NULL);
        return;
    }
    s_line(d, "ok", "bus security",
           c->automatic ? "tcp:// with CURVE, the automatic keys of state_dir/" KZ_KEYS_DIR
                        : "CURVE: every peer has an identity, the broker's rules apply",
           NULL);
    s_key_file(d, "bus.curve.client_cert", c->client_cert);
    s_key_file(d, "bus.curve.broker_public", c->broker_public);
    s_key_file(d, "bus.curve.broker_cert", c->broker_cert);
    if (c->allow_dir) {
        struct stat st;
        char detail[PATH_MAX + 64];
        if (stat(c->allow_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
            access(c->allow_dir, R_OK | X_OK) == 0)
            s_line(d, "ok", "key bus.curve.allow_dir", c->allow_dir, NULL);
        else {
            snprintf(detail, sizeof detail, "%s is not a readable directory", c->allow_dir);
            char fix[PATH_MAX + 128];
            snprintf(fix, sizeof fix,
                     "mkdir -p '%s' and copy each client's public NAME.key into it", c->allow_dir);
            s_line(d, "MISSING", "key bus.curve.allow_dir", detail, fix);
        }
    }
    s_curve_roles(d, c);
}

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c = getopt_long(argc, argv, ":", opts, NULL);
    if (c != -1)
        return kz_cli_bad_option("doctor", c, argv);
    if (optind < argc)
        return kz_cli_usage("doctor", "unexpected argument '%s'", argv[optind]);

    s_doctor_t d;
    memset(&d, 0, sizeof d);
    d.cfg = cli->cfg;
    d.config_path = cli->config_path;
    printf("kaizen doctor\n\n");
    char detail[PATH_MAX + 128];
    snprintf(detail, sizeof detail, "%s: %zu agent%s, %zu target%s",
             d.config_path ? d.config_path : "(built-in defaults)", d.cfg->agents_count,
             d.cfg->agents_count == 1 ? "" : "s", d.cfg->targets_count,
             d.cfg->targets_count == 1 ? "" : "s");
    s_line(&d, "ok", "config", detail, NULL);
    s_config_check(&d);
    s_packages(&d);
    s_programs(&d);
    s_state_dir(&d);
    s_target_owners(&d);
    s_sandbox(&d);
    s_target_tools(&d);
    s_tests(&d);
    s_database(&d);
    s_broker(&d);
    s_curve(&d);

    printf("\n");
    if (d.problems == 0) {
        printf("%d checks, no problems found\n", d.checks);
    } else {
        printf("%d checks, %d problem%s found\n", d.checks, d.problems, d.problems == 1 ? "" : "s");
        if (d.fix_count > 0) {
            printf("install every missing package at once (as root):\n  apt-get install -y");
            for (size_t i = 0; i < d.fix_count; i++)
                printf(" %s", d.fix_packages[i]);
            printf("\n");
        }
    }
    if (fflush(stdout) != 0)
        return KZ_EXIT_FAILURE;
    return d.problems == 0 ? KZ_EXIT_OK : KZ_EXIT_FAILURE;
}

const kz_cli_cmd_t kz_cmd_doctor = {
    "doctor", "check packages, tools, programs, database, broker and keys",
    s_usage,  s_run,
    true,     NULL,
    NULL,
};
