/*  test_sandbox_argv.c - kz_sandbox: the bubblewrap argv (what is bound, how,
    and that the state directory never is), the allow-listed environment,
    the limits, sandbox off, refusals (a missing program, one the sandbox
    cannot see), and real runs through kz_proc_run: the user, the
    environment, no network namespace escape, the read-only worktree.
    Needs /usr/bin/bwrap (scripts/install-deps); the user switch is checked
    when the tests run as root and kaizen-runner exists.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_proc.h"
#include "kz_sandbox.h"

static char s_dir[PATH_MAX];   /* a scratch directory: the "worktree" */
static char s_state[PATH_MAX]; /* the "state directory" */

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/kz-sandbox-test.XXXXXX");
    if (!mkdtemp(s_dir))
        return -1;
    chmod(s_dir, 0755);
    snprintf(s_state, sizeof s_state, "/tmp/kz-sandbox-state.XXXXXX");
    if (!mkdtemp(s_state))
        return -1;
    kz_sandbox_config_t cfg;
    kz_sandbox_config_defaults(&cfg);
    static char extra[] = "/opt/kz-extra";
    char *ro[] = {extra, NULL};
    cfg.bind_ro = ro;
    char *rw[] = {NULL};
    cfg.bind_rw = rw;
    return kz_sandbox_configure(&cfg, s_state, NULL, 0);
}

static int s_teardown(void **state)
{
    (void)state;
    char cmd[2 * PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", s_dir, s_state);
    return system(cmd) == 0 ? 0 : -1;
}

static bool s_has(char **v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* The index of the triple A B C in V, -1 when absent */
static long s_triple(char **v, const char *a, const char *b, const char *c)
{
    for (size_t i = 0; v && v[i] && v[i + 1] && v[i + 2]; i++)
        if (strcmp(v[i], a) == 0 && strcmp(v[i + 1], b) == 0 && strcmp(v[i + 2], c) == 0)
            return (long)i;
    return -1;
}

static void test_argv_read(void **state)
{
    (void)state;
    if (access(KZ_SANDBOX_BWRAP, X_OK) != 0)
        skip();
    setenv("KAIZEN_DATABASE_URL", "postgresql://u:secret@h/db", 1);
    setenv("PGPASSWORD", "secret", 1);
    setenv("SSH_AUTH_SOCK", "/tmp/agent", 1);
    setenv("PYTHONPATH", "/evil", 1);
    setenv("GIT_DIR", "/evil", 1);
    const char *argv[] = {"python3", "-m", "flake8", "x.py", NULL};
    const char *env_add[] = {"FOO=1", "FOO=2", NULL};
    kz_sandbox_spec_t spec = {
        .mode = KZ_SANDBOX_READ, .cwd = s_dir, .env_add = env_add, .argv = argv};
    kz_sandbox_exec_t x;
    char err[512] = "";
    assert_int_equal(kz_sandbox_prepare(&spec, &x, err, sizeof err), 0);
    assert_string_equal(x.path, KZ_SANDBOX_BWRAP);
    assert_true(s_has(x.argv, "--unshare-all"));
    assert_false(s_has(x.argv, "--share-net"));
    assert_true(s_has(x.argv, "--die-with-parent"));
    assert_true(s_has(x.argv, "--new-session"));
    assert_true(s_triple(x.argv, "--ro-bind", "/usr", "/usr") >= 0);
    assert_true(s_triple(x.argv, "--ro-bind", "/etc", "/etc") >= 0);
    assert_true(s_triple(x.argv, "--ro-bind", s_dir, s_dir) >= 0);
    assert_true(s_triple(x.argv, "--bind", s_dir, s_dir) < 0);
    assert_true(s_triple(x.argv, "--ro-bind-try", "/opt/kz-extra", "/opt/kz-extra") >= 0);
    assert_true(s_triple(x.argv, "--chdir", s_dir, "--") >= 0);
    assert_true(s_has(x.argv, "/tmp")); /* --tmpfs /tmp */
    /* never / itself, never the state directory, /root, /home or /var */
    for (size_t i = 0; x.argv[i]; i++) {
        assert_string_not_equal(x.argv[i], "/");
        assert_null(strstr(x.argv[i], s_state));
        assert_string_not_equal(x.argv[i], "/root");
        assert_string_not_equal(x.argv[i], "/home");
        assert_string_not_equal(x.argv[i], "/var");
    }
    /* the command after "--", its program found in the sandbox's PATH */
    size_t dd = 0;
    while (strcmp(x.argv[dd], "--") != 0)
        dd++;
    assert_non_null(strstr(x.argv[dd + 1], "/python3"));
    assert_int_equal(x.argv[dd + 1][0], '/');
    assert_string_equal(x.argv[dd + 2], "-m");
    assert_string_equal(x.argv[dd + 4], "x.py");
    assert_null(x.argv[dd + 5]);
    /* the environment: exactly the allow-list and the recipe's */
    const char *want[] = {"PATH=" KZ_SANDBOX_PATH,
                          "HOME=/tmp",
                          "LANG=C.UTF-8",
                          "LC_ALL=C.UTF-8",
                          "PYTHONSAFEPATH=1",
                          "PYTHONDONTWRITEBYTECODE=1",
                          "FOO=2",
                          NULL};
    size_t n = 0;
    for (; x.env[n]; n++) {
        assert_null(strstr(x.env[n], "secret"));
        assert_true(strncmp(x.env[n], "PG", 2) != 0);
        assert_true(strncmp(x.env[n], "GIT_", 4) != 0);
        assert_true(strncmp(x.env[n], "SSH_", 4) != 0);
        assert_true(strncmp(x.env[n], "PYTHONPATH=", 11) != 0);
        assert_true(strncmp(x.env[n], "KAIZEN_", 7) != 0);
    }
    for (size_t i = 0; want[i]; i++)
        assert_true(s_has(x.env, want[i]));
    assert_int_equal(n, 8); /* the seven above and TERM */
    assert_false(s_has(x.env, "FOO=1"));
    assert_true(x.nlimits == 4);
    if (geteuid() == 0 && getpwnam(KZ_SANDBOX_USER)) {
        assert_true(x.switch_user);
        assert_int_not_equal(x.uid, 0);
        assert_int_not_equal(x.gid, 0);
    } else {
        assert_false(x.switch_user);
    }
    kz_sandbox_exec_free(&x);
    unsetenv("KAIZEN_DATABASE_URL");
    unsetenv("PGPASSWORD");
    unsetenv("SSH_AUTH_SOCK");
    unsetenv("PYTHONPATH");
    unsetenv("GIT_DIR");
}

static void test_argv_write_network(void **state)
{
    (void)state;
    if (access(KZ_SANDBOX_BWRAP, X_OK) != 0)
        skip();
    char work[PATH_MAX + 16];
    snprintf(work, sizeof work, "%s/work", s_dir);
    const char *argv[] = {"true", NULL};
    const char *rw[] = {work, NULL};
    kz_sandbox_spec_t spec = {
        .mode = KZ_SANDBOX_WRITE, .cwd = s_dir, .rw = rw, .network = true, .argv = argv};
    kz_sandbox_exec_t x;
    char err[512];
    assert_int_equal(kz_sandbox_prepare(&spec, &x, err, sizeof err), 0);
    assert_true(s_has(x.argv, "--share-net"));
    assert_true(s_triple(x.argv, "--bind", s_dir, s_dir) >= 0);
    assert_true(s_triple(x.argv, "--bind", work, work) >= 0);
    kz_sandbox_exec_free(&x);
}

static void test_refusals(void **state)
{
    (void)state;
    if (access(KZ_SANDBOX_BWRAP, X_OK) != 0)
        skip();
    kz_sandbox_exec_t x;
    char err[512];
    const char *missing[] = {"kz-no-such-program", NULL};
    kz_sandbox_spec_t spec = {.mode = KZ_SANDBOX_READ, .cwd = s_dir, .argv = missing};
    assert_int_equal(kz_sandbox_prepare(&spec, &x, err, sizeof err), -1);
    assert_non_null(strstr(err, "unable to run 'kz-no-such-program'"));
    /* a program the sandbox does not show: in the state directory */
    char prog[PATH_MAX + 16];
    snprintf(prog, sizeof prog, "%s/tool", s_state);
    FILE *f = fopen(prog, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n", f);
    fclose(f);
    chmod(prog, 0755);
    const char *hidden[] = {prog, NULL};
    spec.argv = hidden;
    assert_int_equal(kz_sandbox_prepare(&spec, &x, err, sizeof err), -1);
    assert_non_null(strstr(err, "not visible in the sandbox"));
}

/* Real runs: the user, the environment, the read-only worktree, no state */
static void test_runs(void **state)
{
    (void)state;
    if (access(KZ_SANDBOX_BWRAP, X_OK) != 0)
        skip();
    struct passwd *pw = geteuid() == 0 ? getpwnam(KZ_SANDBOX_USER) : NULL;
    uid_t want = pw ? pw->pw_uid : geteuid();
    setenv("KAIZEN_DATABASE_URL", "postgresql://u:secret@h/db", 1);
    const char *id[] = {"id", "-u", NULL};
    kz_proc_opts_t po = {0};
    po.argv = id;
    po.cwd = s_dir;
    po.sandbox = KZ_SANDBOX_READ;
    po.timeout_ms = 30000;
    kz_proc_result_t res;
    char err[512];
    assert_int_equal(kz_proc_run(&po, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(strtoul(res.out, NULL, 10), want);
    kz_proc_result_free(&res);

    const char *env[] = {"env", NULL};
    po.argv = env;
    assert_int_equal(kz_proc_run(&po, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 0);
    assert_null(strstr(res.out, "KAIZEN_DATABASE_URL"));
    assert_non_null(strstr(res.out, "HOME=/tmp"));
    kz_proc_result_free(&res);

    /* a checker cannot write its worktree; the state directory is not there */
    const char *touch[] = {"touch", "written", NULL};
    po.argv = touch;
    assert_int_equal(kz_proc_run(&po, &res, err, sizeof err), 0);
    assert_int_not_equal(res.exit_code, 0);
    kz_proc_result_free(&res);
    char written[PATH_MAX + 16];
    snprintf(written, sizeof written, "%s/written", s_dir);
    assert_int_not_equal(access(written, F_OK), 0);
    const char *look[] = {"test", "-e", s_state, NULL};
    po.argv = look;
    assert_int_equal(kz_proc_run(&po, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 1);
    kz_proc_result_free(&res);

    /* bubblewrap that cannot set the sandbox up exits 1, which a tool's
       exit_ok would take for "findings": it is a failure to run instead */
    const char *gone[] = {"/nonexistent/kaizen-test", NULL};
    po.argv = id;
    po.sandbox_ro = gone;
    assert_int_equal(kz_proc_run(&po, &res, err, sizeof err), -1);
    assert_non_null(strstr(err, "the sandbox could not start it: bwrap: "));
    kz_proc_result_free(&res);
    po.sandbox_ro = NULL;
    unsetenv("KAIZEN_DATABASE_URL");
    assert_int_equal(kz_sandbox_check(true, err, sizeof err), 0);
}

/* sandbox off: no bubblewrap, no user switch, the allow-list all the same */
static void test_off(void **state)
{
    (void)state;
    kz_sandbox_config_t cfg;
    kz_sandbox_config_defaults(&cfg);
    cfg.enabled = false;
    assert_int_equal(kz_sandbox_configure(&cfg, s_state, NULL, 0), 0);
    setenv("PGPASSWORD", "secret", 1);
    const char *argv[] = {"env", NULL};
    kz_sandbox_spec_t spec = {.mode = KZ_SANDBOX_WRITE, .cwd = s_dir, .argv = argv};
    kz_sandbox_exec_t x;
    char err[512];
    assert_int_equal(kz_sandbox_prepare(&spec, &x, err, sizeof err), 0);
    assert_false(x.switch_user);
    assert_null(strstr(x.path, "bwrap"));
    assert_false(s_has(x.argv, "--unshare-all"));
    /* a private HOME and TMPDIR of its own (no bubblewrap /tmp to hide a
       shared one), removed with the run */
    assert_non_null(x.home);
    char kv[PATH_MAX + 16];
    snprintf(kv, sizeof kv, "HOME=%s", x.home);
    assert_true(s_has(x.env, kv));
    snprintf(kv, sizeof kv, "TMPDIR=%s", x.home);
    assert_true(s_has(x.env, kv));
    assert_false(s_has(x.env, "HOME=/tmp"));
    struct stat st;
    assert_int_equal(stat(x.home, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    char home[PATH_MAX];
    snprintf(home, sizeof home, "%s", x.home);
    for (size_t i = 0; x.env[i]; i++)
        assert_null(strstr(x.env[i], "secret"));
    kz_sandbox_exec_free(&x);
    assert_int_equal(stat(home, &st), -1);
    char desc[256];
    kz_sandbox_describe(desc, sizeof desc);
    assert_true(strncmp(desc, "off", 3) == 0);
    unsetenv("PGPASSWORD");
    kz_sandbox_config_defaults(&cfg);
    assert_int_equal(kz_sandbox_configure(&cfg, s_state, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_read), cmocka_unit_test(test_argv_write_network),
        cmocka_unit_test(test_refusals),  cmocka_unit_test(test_runs),
        cmocka_unit_test(test_off),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
