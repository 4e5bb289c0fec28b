/*  test_proc.c - kz_proc: exit codes, signals, timeouts that kill the whole
    process group, output caps, exec failures, environment, cwd, stdin,
    descriptor hygiene. `sh` appears only as a test subject.

    Nothing here depends on how fast the machine is: a child that must
    be running when something happens waits for it (a file the tick
    makes, a marker it prints first, retried with a longer timeout when
    the shell was too slow to print it), and a time bound only says that
    the runner did not wait for a child that would run for minutes.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_proc.h"

/* Run ARGV with OPTS (argv filled in); returns kz_proc_run's result */
static int s_run(kz_proc_opts_t *opts, const char *const *argv, kz_proc_result_t *res, char *err,
                 size_t len)
{
    opts->argv = argv;
    return kz_proc_run(opts, res, err, len);
}

/* True once PID is gone (or a zombie nobody reaped yet), within 60 s */
static bool s_gone(pid_t pid)
{
    for (int i = 0; i < 6000; i++) {
        char path[64], stat[512] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            return true;
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        const char *close_paren = strrchr(stat, ')');
        if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z')
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void test_exit_codes(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0};
    kz_proc_result_t res;
    char err[256];

    assert_int_equal(s_run(&opts, (const char *[]){"true", NULL}, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(res.term_signal, 0);
    assert_false(res.timed_out);
    assert_string_equal(res.out, "");
    assert_string_equal(res.err, "");
    assert_true(res.duration_us > 0);
    kz_proc_result_free(&res);

    assert_int_equal(s_run(&opts, (const char *[]){"false", NULL}, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 1);
    kz_proc_result_free(&res);

    assert_int_equal(
        s_run(&opts, (const char *[]){"sh", "-c", "exit 42", NULL}, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 42);
    kz_proc_result_free(&res);
}

static void test_signal_death(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0};
    kz_proc_result_t res;
    char err[256];

    /* dispositions and mask are reset in the child: an ignored and blocked
       SIGTERM in the parent does not protect it (sh keeps signals that were
       ignored at its start ignored, so this fails without the reset) */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigset_t set, old_set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaction(SIGTERM, &ign, &old);
    sigprocmask(SIG_BLOCK, &set, &old_set);
    int rc = s_run(&opts, (const char *[]){"sh", "-c", "kill -TERM $$; sleep 5", NULL}, &res, err,
                   sizeof err);
    sigprocmask(SIG_SETMASK, &old_set, NULL);
    sigaction(SIGTERM, &old, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(res.exit_code, -1);
    assert_int_equal(res.term_signal, SIGTERM);
    assert_false(res.timed_out);
    kz_proc_result_free(&res);
}

/* Run ARGV with OPTS until its output begins with "ready" - the child
   prints it once it has done what must happen before the timeout (set a
   trap, started a grandchild) - doubling opts->timeout_ms after a run in
   which the shell was too slow to get there (a loaded machine), up to
   five times. The timeout is the subject of the test, so it cannot be
   made generous once and for all. Returns kz_proc_run's result. */
static int s_run_ready(kz_proc_opts_t *opts, const char *const *argv, kz_proc_result_t *res,
                       char *err, size_t len)
{
    for (int attempt = 0;; attempt++) {
        int rc = s_run(opts, argv, res, err, len);
        if (rc != 0 || attempt == 4 || strncmp(res->out, "ready", 5) == 0)
            return rc;
        kz_proc_result_free(res);
        opts->timeout_ms *= 2;
    }
}

static void test_timeout_kills_group(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {.timeout_ms = 1000, .kill_grace_ms = 500};
    kz_proc_result_t res;
    char err[256];

    /* the grandchild's pid comes out on stdout before the timeout; both
       would sleep for 10 minutes */
    int rc = s_run_ready(&opts,
                         (const char *[]){"sh", "-c", "sleep 600 & echo ready $!; sleep 600", NULL},
                         &res, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_true(res.timed_out);
    assert_int_equal(res.exit_code, -1);
    assert_int_equal(res.term_signal, SIGTERM);
    assert_true(res.duration_us >= (int64_t)opts.timeout_ms * 1000);
    assert_true(res.duration_us < 300 * 1000 * 1000LL); /* not the child's 10 minutes */
    assert_true(res.out && strncmp(res.out, "ready ", 6) == 0);
    pid_t grandchild = (pid_t)atoi(res.out + 5);
    assert_true(grandchild > 0);
    assert_true(s_gone(grandchild));
    kz_proc_result_free(&res);

    /* a child that ignores SIGTERM gets SIGKILL after the grace */
    opts.timeout_ms = 1000;
    opts.kill_grace_ms = 300;
    rc = s_run_ready(
        &opts,
        (const char *[]){"sh", "-c", "trap '' TERM; sleep 600 & echo ready; sleep 600", NULL}, &res,
        err, sizeof err);
    assert_int_equal(rc, 0);
    assert_true(res.timed_out);
    assert_int_equal(res.term_signal, SIGKILL);
    assert_true(res.duration_us >= ((int64_t)opts.timeout_ms + 300) * 1000);
    assert_true(res.duration_us < 300 * 1000 * 1000LL);
    kz_proc_result_free(&res);
}

static void test_leader_exits_grandchild_holds_pipes(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0}; /* no timeout: only the orphan rule saves us */
    kz_proc_result_t res;
    char err[256];

    int rc = s_run(&opts, (const char *[]){"sh", "-c", "sleep 600 & echo $!", NULL}, &res, err,
                   sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(res.exit_code, 0);
    assert_false(res.timed_out);
    assert_true(res.duration_us < 300 * 1000 * 1000LL); /* not the grandchild's 10 minutes */
    pid_t grandchild = (pid_t)atoi(res.out);
    assert_true(grandchild > 0);
    assert_true(s_gone(grandchild));
    kz_proc_result_free(&res);

    /* a straggler that let go of the pipes is not left behind either */
    rc = s_run(&opts, (const char *[]){"sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!", NULL},
               &res, err, sizeof err);
    assert_int_equal(rc, 0);
    grandchild = (pid_t)atoi(res.out);
    assert_true(grandchild > 0);
    assert_true(s_gone(grandchild));
    kz_proc_result_free(&res);
}

static void test_escaped_grandchild(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0};
    kz_proc_result_t res;
    char err[256];
    char *setsid_path = kz_proc_which("setsid");
    if (!setsid_path)
        skip();
    free(setsid_path);
    /* it leaves the group, so no kill reaches it, and keeps stdout open:
       we stop waiting for it shortly after the leader is gone */
    int rc = s_run(&opts, (const char *[]){"sh", "-c", "setsid sleep 600 & echo $!", NULL}, &res,
                   err, sizeof err);
    /* killed first: a failed assertion must not leave it sleeping */
    pid_t escaped = rc == 0 && res.out ? (pid_t)atoi(res.out) : 0;
    if (escaped > 0)
        kill(escaped, SIGKILL);
    assert_int_equal(rc, 0);
    assert_int_equal(res.exit_code, 0);
    assert_true(res.duration_us < 300 * 1000 * 1000LL); /* not the escaped one's 10 minutes */
    assert_true(escaped > 0);
    assert_true(s_gone(escaped));
    kz_proc_result_free(&res);
}

static void test_output_cap(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {.out_cap = 1000, .timeout_ms = 60000};
    kz_proc_result_t res;
    char err[256];

    int rc = s_run(&opts, (const char *[]){"head", "-c", "5000000", "/dev/zero", NULL}, &res, err,
                   sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(res.exit_code, 0); /* it was never blocked nor killed */
    assert_false(res.timed_out);
    assert_int_equal(res.out_len, 1000);
    assert_true(res.out_truncated);
    assert_false(res.err_truncated);
    kz_proc_result_free(&res);

    opts.out_cap = 0; /* default 1 MiB */
    rc = s_run(&opts, (const char *[]){"head", "-c", "5000000", "/dev/zero", NULL}, &res, err,
               sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(res.out_len, 1 << 20);
    assert_true(res.out_truncated);
    kz_proc_result_free(&res);

    /* exactly at the cap is not truncated */
    opts.out_cap = 5;
    rc = s_run(&opts, (const char *[]){"printf", "12345", NULL}, &res, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_string_equal(res.out, "12345");
    assert_false(res.out_truncated);
    kz_proc_result_free(&res);

    /* stderr has its own cap */
    opts.out_cap = 0;
    opts.err_cap = 10;
    rc = s_run(&opts, (const char *[]){"sh", "-c", "echo out; echo 0123456789abc >&2", NULL}, &res,
               err, sizeof err);
    assert_int_equal(rc, 0);
    assert_string_equal(res.out, "out\n");
    assert_int_equal(res.err_len, 10);
    assert_string_equal(res.err, "0123456789");
    assert_true(res.err_truncated);
    kz_proc_result_free(&res);
}

static void test_exec_failures(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0};
    kz_proc_result_t res;
    char err[256];

    assert_int_equal(
        s_run(&opts, (const char *[]){"kz-no-such-program", "x", NULL}, &res, err, sizeof err), -1);
    assert_string_equal(err, "unable to run 'kz-no-such-program': No such file or directory");
    assert_non_null(res.out);
    kz_proc_result_free(&res);

    assert_int_equal(
        s_run(&opts, (const char *[]){"/nonexistent/prog", NULL}, &res, err, sizeof err), -1);
    assert_string_equal(err, "unable to run '/nonexistent/prog': No such file or directory");
    kz_proc_result_free(&res);

    opts.cwd = "/nonexistent-dir";
    assert_int_equal(s_run(&opts, (const char *[]){"pwd", NULL}, &res, err, sizeof err), -1);
    assert_string_equal(err, "unable to run 'pwd': cannot change directory to "
                             "'/nonexistent-dir': No such file or directory");
    kz_proc_result_free(&res);

    /* a file that exists but cannot be executed: the exec error comes back */
    char script[] = "/tmp/kz-test-proc.XXXXXX";
    int fd = mkstemp(script);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd);
    opts.cwd = NULL;
    assert_int_equal(s_run(&opts, (const char *[]){script, NULL}, &res, err, sizeof err), -1);
    assert_non_null(strstr(err, "Permission denied"));
    kz_proc_result_free(&res);
    /* executable but with a bad interpreter: exec itself fails */
    assert_int_equal(chmod(script, 0700), 0);
    fd = open(script, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/nonexistent/interp\n", 22), 22);
    close(fd);
    assert_int_equal(s_run(&opts, (const char *[]){script, NULL}, &res, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want, "unable to run '%s': No such file or directory", script);
    assert_string_equal(err, want);
    kz_proc_result_free(&res);
    unlink(script);

    opts.argv = NULL;
    assert_int_equal(kz_proc_run(&opts, &res, err, sizeof err), -1);
    kz_proc_result_free(&res);
}

static void test_env_cwd_stdin(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0};
    kz_proc_result_t res;
    char err[256];

    setenv("KZ_TEST_B", "old", 1);
    const char *add[] = {"KZ_TEST_A=1", "KZ_TEST_B=new", NULL};
    opts.env_add = add;
    assert_int_equal(s_run(&opts,
                           (const char *[]){"sh", "-c", "echo $KZ_TEST_A-$KZ_TEST_B-$HOME", NULL},
                           &res, err, sizeof err),
                     0);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "1-new-%s\n", getenv("HOME") ? getenv("HOME") : "");
    assert_string_equal(res.out, want);
    kz_proc_result_free(&res);

    /* a whole environment, with env_add on top */
    const char *env[] = {"PATH=/usr/bin:/bin", "KZ_TEST_A=0", "ONLY=yes", NULL};
    opts.env = env;
    assert_int_equal(s_run(&opts, (const char *[]){"sh", "-c", "echo $KZ_TEST_A$ONLY$HOME.", NULL},
                           &res, err, sizeof err),
                     0);
    assert_string_equal(res.out, "1yes.\n");
    kz_proc_result_free(&res);
    opts.env = NULL;
    opts.env_add = NULL;
    unsetenv("KZ_TEST_B");

    opts.cwd = "/";
    assert_int_equal(s_run(&opts, (const char *[]){"pwd", NULL}, &res, err, sizeof err), 0);
    assert_string_equal(res.out, "/\n");
    kz_proc_result_free(&res);
    opts.cwd = NULL;

    opts.stdin_data = "hello\nworld";
    opts.stdin_len = 11;
    assert_int_equal(s_run(&opts, (const char *[]){"cat", NULL}, &res, err, sizeof err), 0);
    assert_string_equal(res.out, "hello\nworld");
    kz_proc_result_free(&res);

    /* more than a pipe buffer in both directions at once */
    size_t big = 3000000;
    char *data = malloc(big);
    assert_non_null(data);
    memset(data, 'x', big);
    opts.stdin_data = data;
    opts.stdin_len = big;
    opts.out_cap = 4 << 20;
    assert_int_equal(s_run(&opts, (const char *[]){"cat", NULL}, &res, err, sizeof err), 0);
    assert_int_equal(res.out_len, big);
    assert_memory_equal(res.out, data, big);
    kz_proc_result_free(&res);

    /* a child that never reads its stdin: no SIGPIPE for us */
    assert_int_equal(s_run(&opts, (const char *[]){"true", NULL}, &res, err, sizeof err), 0);
    assert_int_equal(res.exit_code, 0);
    kz_proc_result_free(&res);
    free(data);

    /* no stdin_data: /dev/null */
    opts.stdin_data = NULL;
    opts.stdin_len = 0;
    assert_int_equal(s_run(&opts, (const char *[]){"wc", "-c", NULL}, &res, err, sizeof err), 0);
    assert_int_equal(atoi(res.out), 0);
    kz_proc_result_free(&res);
}

static void test_fds_not_inherited(void **state)
{
    (void)state;
    kz_proc_opts_t opts = {0};
    kz_proc_result_t res;
    char err[256];

    int fd = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 57), 57);
    close(fd);
    assert_int_equal(
        s_run(&opts, (const char *[]){"ls", "/proc/self/fd", NULL}, &res, err, sizeof err), 0);
    /* ls sees 0, 1, 2 and the descriptor of the directory it lists */
    assert_string_equal(res.out, "0\n1\n2\n3\n");
    kz_proc_result_free(&res);
    close(57);

    /* the child leads its own process group */
    assert_int_equal(s_run(&opts, (const char *[]){"sh", "-c", "ps -o pgid= -p $$", NULL}, &res,
                           err, sizeof err),
                     0);
    if (res.exit_code == 0) /* ps may be missing; the group is also proven by the kill tests */
        assert_int_not_equal(atoi(res.out), (int)getpgrp());
    kz_proc_result_free(&res);
}

typedef struct {
    int count;
    int64_t last_us;
    int64_t min_gap_us;
    int64_t start_us;
    int release_at;   /* the tick that lets the child finish */
    const char *flag; /* the file the child waits for */
} s_ticks_t;

static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void s_count_tick(void *arg)
{
    s_ticks_t *t = arg;
    int64_t now = s_mono_us();
    int64_t gap = now - (t->count ? t->last_us : t->start_us);
    if (t->count == 0 || gap < t->min_gap_us)
        t->min_gap_us = gap;
    t->last_us = now;
    if (++t->count == t->release_at) {
        int fd = open(t->flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
    }
}

/* Run a child that runs until the RELEASE_AT-th tick of OPTS (every
   TICK_MS, 0 = the default) and check the ticks: that many came while it
   ran, and never two closer than TICK_MS (only a lower bound: a loaded
   machine makes the gaps longer, never shorter) */
static void s_tick_run(int tick_ms, int release_at, int64_t want_gap_ms)
{
    char flag[] = "/tmp/kz-test-tick.XXXXXX";
    int fd = mkstemp(flag);
    assert_true(fd >= 0);
    close(fd);
    unlink(flag);
    s_ticks_t ticks = {.release_at = release_at, .flag = flag};
    kz_proc_opts_t opts = {
        .tick = s_count_tick, .tick_arg = &ticks, .tick_ms = tick_ms, .timeout_ms = 120000};
    kz_proc_result_t res;
    char err[256];
    char script[128];
    snprintf(script, sizeof script, "while [ ! -e %s ]; do sleep 0.02; done", flag);
    ticks.start_us = s_mono_us();
    assert_int_equal(
        s_run(&opts, (const char *[]){"sh", "-c", script, NULL}, &res, err, sizeof err), 0);
    unlink(flag);
    assert_false(res.timed_out);
    assert_int_equal(res.exit_code, 0);
    assert_true(ticks.count >= release_at);
    assert_true(ticks.min_gap_us >= (want_gap_ms - 1) * 1000);
    kz_proc_result_free(&res);
}

/* The tick runs periodically while the child runs (what keeps a bus
   client's heartbeats going during a long tool run): every tick_ms, by
   default every 250 ms. The child is slow on purpose: it waits for the
   third tick. */
static void test_tick(void **state)
{
    (void)state;
    s_tick_run(100, 3, 100);
    s_tick_run(0, 3, 250);
}

/* a process that ignores SIGCHLD has its children reaped by the kernel:
   the runner must notice the child is gone instead of waiting forever */
static void test_status_lost(void **state)
{
    (void)state;
    kz_proc_result_t res;
    char err[256];
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &ign, &old);
    /* waiting forever would end in this timeout */
    kz_proc_opts_t opts = {.timeout_ms = 120000};
    assert_int_equal(s_run(&opts, (const char *[]){"true", NULL}, &res, err, sizeof err), 0);
    sigaction(SIGCHLD, &old, NULL);
    assert_int_equal(res.exit_code, -1);
    assert_false(res.timed_out);
    kz_proc_result_free(&res);
}

static void test_which(void **state)
{
    (void)state;
    char *sh = kz_proc_which("sh");
    assert_non_null(sh);
    assert_true(sh[0] == '/');
    assert_int_equal(access(sh, X_OK), 0);
    free(sh);
    assert_null(kz_proc_which("kz-no-such-program"));
    assert_null(kz_proc_which(""));
    assert_null(kz_proc_which(NULL));
    char *abs = kz_proc_which("/bin/sh");
    assert_string_equal(abs, "/bin/sh");
    free(abs);
    assert_null(kz_proc_which("/etc/passwd")); /* not executable */
    assert_null(kz_proc_which("/tmp"));        /* a directory */

    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    setenv("PATH", "/nonexistent:/bin", 1);
    char *ls = kz_proc_which("ls");
    assert_string_equal(ls, "/bin/ls");
    free(ls);
    if (saved) {
        setenv("PATH", saved, 1);
        free(saved);
    } else
        unsetenv("PATH");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_signal_death),
        cmocka_unit_test(test_timeout_kills_group),
        cmocka_unit_test(test_leader_exits_grandchild_holds_pipes),
        cmocka_unit_test(test_escaped_grandchild),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_exec_failures),
        cmocka_unit_test(test_env_cwd_stdin),
        cmocka_unit_test(test_fds_not_inherited),
        cmocka_unit_test(test_tick),
        cmocka_unit_test(test_status_lost),
        cmocka_unit_test(test_which),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
