/*  bench_common.h - the harness shared by the kaizen benchmarks

    Every bench .c file is its own binary, so the shared code lives here
    as static functions (marked unused: not every binary needs all of
    them). A benchmark binary plays two parts:

      - the harness (no arguments): it forks and execs one process per
        party (publisher, broker or relay, subscriber, worker, client),
        itself or $KZ_BIN/kaizen-broker, collects each sample's result
        over a pipe, and prints "bench NAME VALUE UNIT baseline VALUE
        ratio R" lines on stdout and the raw samples on stderr;
      - a role (first argument names it): one party of one sample.

    The harness never creates a ZeroMQ context, so fork is safe; children
    get PR_SET_PDEATHSIG so they die with it, and every child is killed
    and reaped after each sample and on SIGINT/SIGTERM.

    Messages are 300-byte real kaizen envelopes (type "test.event", body
    {seq, pad}) encoded once with kz_msg_encode; the sequence number is
    patched into the encoded bytes at a fixed offset so neither side
    spends codec time per message unless the library under test does.
*/
#ifndef BENCH_COMMON_H_INCLUDED
#define BENCH_COMMON_H_INCLUDED

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "kz_msg.h"

#define BENCH_STATIC static __attribute__((unused))

#define BENCH_MSG_SIZE      300
#define BENCH_TOPIC         "test.event"
#define BENCH_HWM           1000000
#define BENCH_SAMPLES       3
#define BENCH_SEQ_WARM      0x10000000u /* warm-up messages: seq in [WARM, MEASURED) */
#define BENCH_SEQ_WARM_LAST 0x1fffffffu /* the last warm-up message */
#define BENCH_SEQ_MEASURED  0x20000000u /* measured messages: MEASURED + i */
#define BENCH_SEQ_MARK      0x7a5a5a5au /* placeholder located in the encoded template */
#define BENCH_WARM_BURST    20000       /* warm-up messages sent after the consumer is ready */
#define BENCH_MAX_CHILDREN  8
#define BENCH_READY_MS      30000 /* how long a consumer may take to see the first message */
#define BENCH_IDLE_MS       5000  /* silence that ends a measured stream early (losses) */

/* The encoded envelope every benchmark sends, with the place of its seq */
typedef struct {
    uint8_t data[BENCH_MSG_SIZE];
    size_t seq_off; /* offset of the big-endian seq integer */
    size_t seq_len; /* 4 or 8 bytes */
} bench_template_t;

/* ---------------------------------------------------------------- time */

BENCH_STATIC int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* BASE scaled by $BENCH_SCALE (default 1), at least 1000 */
BENCH_STATIC long s_scaled(long base)
{
    const char *env = getenv("BENCH_SCALE");
    double scale = env ? strtod(env, NULL) : 1.0;
    if (!(scale > 0.0))
        scale = 1.0;
    long n = (long)((double)base * scale);
    return n < 1000 ? 1000 : n;
}

/* ------------------------------------------------------------ template */

/* Encode a test.event envelope padded to exactly BENCH_MSG_SIZE bytes and
   find the seq placeholder in it. 0 / -1 (message on stderr). */
BENCH_STATIC int s_template_make(bench_template_t *tpl)
{
    long pad = 200;
    for (int attempt = 0; attempt < 8; attempt++) {
        kz_msg_t *msg = kz_msg_new(BENCH_TOPIC);
        if (!msg)
            return -1;
        char padbuf[BENCH_MSG_SIZE + 1];
        memset(padbuf, 'p', (size_t)pad);
        padbuf[pad] = '\0';
        kz_val_t *body = kz_msg_body(msg);
        int rc = kz_msg_set_src(msg, "bench@kaizen#0");
        rc |= kz_map_put_int(msg, body, "seq", (int64_t)BENCH_SEQ_MARK);
        rc |= kz_map_put_str(msg, body, "pad", padbuf);
        uint8_t *buf = NULL;
        size_t len = 0;
        kz_msg_err_t err = {0, ""};
        if (rc == 0)
            rc = kz_msg_encode(msg, &buf, &len, &err);
        kz_msg_destroy(&msg);
        if (rc != 0) {
            fprintf(stderr, "bench: unable to encode test.event: %s\n", err.text);
            return -1;
        }
        if (len != BENCH_MSG_SIZE) {
            free(buf);
            pad += (long)BENCH_MSG_SIZE - (long)len;
            if (pad < 0 || pad > BENCH_MSG_SIZE)
                break;
            continue;
        }
        memcpy(tpl->data, buf, len);
        free(buf);
        for (size_t i = 1; i + 4 <= len; i++) {
            if (tpl->data[i] != 0x7a || tpl->data[i + 1] != 0x5a || tpl->data[i + 2] != 0x5a ||
                tpl->data[i + 3] != 0x5a)
                continue;
            uint8_t head = tpl->data[i - 1];
            if (head == 0xce || head == 0xd2) { /* uint32 / int32 */
                tpl->seq_off = i;
                tpl->seq_len = 4;
                return 0;
            }
            if (i >= 5 && (tpl->data[i - 5] == 0xcf || tpl->data[i - 5] == 0xd3)) {
                tpl->seq_off = i - 4; /* uint64 / int64 */
                tpl->seq_len = 8;
                return 0;
            }
        }
        fprintf(stderr, "bench: seq placeholder not found in the encoded envelope\n");
        return -1;
    }
    fprintf(stderr, "bench: unable to pad test.event to %d bytes\n", BENCH_MSG_SIZE);
    return -1;
}

BENCH_STATIC void s_template_stamp(const bench_template_t *tpl, uint8_t *buf, uint64_t seq)
{
    for (size_t i = 0; i < tpl->seq_len; i++)
        buf[tpl->seq_off + i] = (uint8_t)(seq >> (8 * (tpl->seq_len - 1 - i)));
}

/* The seq of an encoded message of our template's shape; 0 if not one */
BENCH_STATIC uint64_t s_template_seq(const bench_template_t *tpl, const uint8_t *buf, size_t len)
{
    if (len != BENCH_MSG_SIZE)
        return 0;
    uint64_t seq = 0;
    for (size_t i = 0; i < tpl->seq_len; i++)
        seq = (seq << 8) | buf[tpl->seq_off + i];
    return seq;
}

/* ----------------------------------------------------------- processes */

static pid_t s_children[BENCH_MAX_CHILDREN];
static volatile sig_atomic_t s_nchildren;
static char s_tmpdir[256];
static char s_self[PATH_MAX];

BENCH_STATIC void s_on_signal(int sig)
{
    for (int i = 0; i < s_nchildren; i++)
        kill(s_children[i], SIGKILL);
    _exit(128 + sig);
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

BENCH_STATIC void s_tmp_cleanup(void)
{
    if (s_tmpdir[0])
        nftw(s_tmpdir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    s_tmpdir[0] = '\0';
}

/* Set up the harness: temp dir, signal handlers, our own path. 0 / -1 */
BENCH_STATIC int s_harness_init(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(s_tmpdir, sizeof s_tmpdir, "%s/kz-bench.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(s_tmpdir)) {
        fprintf(stderr, "bench: unable to create a temporary directory: %s\n", strerror(errno));
        s_tmpdir[0] = '\0';
        return -1;
    }
    atexit(s_tmp_cleanup);
    ssize_t n = readlink("/proc/self/exe", s_self, sizeof s_self - 1);
    if (n <= 0) {
        fprintf(stderr, "bench: unable to find our own executable\n");
        return -1;
    }
    s_self[n] = '\0';
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Fork and exec ARGV[0] (a path). KEEP lists -1-terminated descriptors
   the child inherits (all others are close-on-exec); LOG, when set,
   receives the child's stdout and stderr. Returns the pid or -1. */
BENCH_STATIC pid_t s_spawn(char *const argv[], const int *keep, const char *log)
{
    if (s_nchildren >= BENCH_MAX_CHILDREN)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork failed: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        for (int i = 0; keep && keep[i] >= 0; i++)
            fcntl(keep[i], F_SETFD, 0);
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        execv(argv[0], argv);
        fprintf(stderr, "bench: unable to run '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    s_children[s_nchildren] = pid;
    s_nchildren = s_nchildren + 1;
    return pid;
}

/* SIGTERM every child, SIGKILL those still alive after 3 s, reap all */
BENCH_STATIC void s_kill_all(void)
{
    int n = s_nchildren;
    for (int i = 0; i < n; i++)
        kill(s_children[i], SIGTERM);
    int64_t deadline = s_now_ns() + 3000000000LL;
    for (int i = 0; i < n; i++) {
        while (waitpid(s_children[i], NULL, WNOHANG) == 0) {
            if (s_now_ns() > deadline) {
                kill(s_children[i], SIGKILL);
                waitpid(s_children[i], NULL, 0);
                break;
            }
            usleep(10000);
        }
    }
    s_nchildren = 0;
}

/* True while PID has not exited (reaps it when it has) */
BENCH_STATIC bool s_alive(pid_t pid)
{
    return waitpid(pid, NULL, WNOHANG) == 0;
}

/* Wait up to TIMEOUT_MS for PATTERN in file PATH while PID lives. 0 / -1 */
BENCH_STATIC int s_wait_log(const char *path, const char *pattern, pid_t pid, int timeout_ms)
{
    int64_t deadline = s_now_ns() + (int64_t)timeout_ms * 1000000;
    char buf[65536];
    while (s_now_ns() < deadline) {
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            if (strstr(buf, pattern))
                return 0;
        }
        if (!s_alive(pid))
            return -1;
        usleep(20000);
    }
    return -1;
}

/* Print the last lines of a log file to stderr (after a failure) */
BENCH_STATIC void s_dump_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    fprintf(stderr, "--- %s\n%s\n---\n", path, buf);
}

/* Read one result line from FD (until EOF or newline) within TIMEOUT_MS.
   Returns 0 with BUF NUL-terminated, -1 on timeout or EOF before data. */
BENCH_STATIC int s_read_line(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t used = 0;
    int64_t deadline = s_now_ns() + (int64_t)timeout_ms * 1000000;
    while (used + 1 < size) {
        int64_t left = (deadline - s_now_ns()) / 1000000;
        if (left <= 0)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int rc = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc <= 0)
            continue;
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        if (memchr(buf, '\n', used))
            break;
    }
    buf[used] = '\0';
    return used > 0 ? 0 : -1;
}

/* Write the line TEXT to descriptor FD (a result pipe) */
BENCH_STATIC void s_write_all(int fd, const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n <= 0 && errno != EINTR)
            return;
        if (n > 0) {
            text += n;
            len -= (size_t)n;
        }
    }
}

/* Make the sample directory TMPDIR/sN for ipc endpoints and logs */
BENCH_STATIC int s_sample_dir(int index, char *dir, size_t size)
{
    snprintf(dir, size, "%s/s%d", s_tmpdir, index);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench: unable to create '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The kaizen-broker executable: $KZ_BIN/kaizen-broker (default bin/) */
BENCH_STATIC void s_broker_path(char *path, size_t size)
{
    const char *bin = getenv("KZ_BIN");
    snprintf(path, size, "%s/kaizen-broker", bin && *bin ? bin : "bin");
}

/* Write DIR/kaizen.yaml with ipc endpoints in DIR; returns 0 / -1 */
BENCH_STATIC int s_write_config(const char *dir, char *path, size_t size)
{
    snprintf(path, size, "%s/kaizen.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "state_dir: %s/state\n"
            "bus:\n"
            "  endpoints:\n"
            "    pub: ipc://%s/pub\n"
            "    sub: ipc://%s/sub\n"
            "    router: ipc://%s/router\n"
            "    tap: ipc://%s/tap\n"
            "  hwm: %d\n"
            "broker:\n"
            "  group_queue_limit: 4000000\n"
            "%s"
            "log:\n"
            "  level: info\n",
            dir, dir, dir, dir, dir, BENCH_HWM,
            getenv("BENCH_BROKER_EXTRA") ? getenv("BENCH_BROKER_EXTRA") : "");
    return fclose(f) == 0 ? 0 : -1;
}

/* Start kaizen-broker with CONFIG, logging to DIR/broker.log, and wait for
   "broker ready". Returns the pid or -1. */
BENCH_STATIC pid_t s_start_broker(const char *dir, const char *config)
{
    char broker[PATH_MAX], log[PATH_MAX + 16];
    s_broker_path(broker, sizeof broker);
    snprintf(log, sizeof log, "%s/broker.log", dir);
    if (access(broker, X_OK) != 0) {
        fprintf(stderr, "bench: '%s' not found: build it first (make)\n", broker);
        return -1;
    }
    char *argv[] = {broker, (char *)"-c", (char *)config, NULL};
    pid_t pid = s_spawn(argv, NULL, log);
    if (pid < 0)
        return -1;
    if (s_wait_log(log, "broker ready", pid, 30000) != 0) {
        fprintf(stderr, "bench: kaizen-broker did not become ready\n");
        s_dump_log(log);
        return -1;
    }
    return pid;
}

/* pipe2 with close-on-exec on both ends */
BENCH_STATIC int s_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fprintf(stderr, "bench: pipe failed: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------- reporting */

/* Best of N samples: the highest (throughput) or lowest (latency) */
BENCH_STATIC double s_best(const double *v, int n, bool lowest)
{
    double best = v[0];
    for (int i = 1; i < n; i++)
        if (lowest ? v[i] < best : v[i] > best)
            best = v[i];
    return best;
}

/* One result line: bench NAME VALUE UNIT baseline VALUE ratio R */
BENCH_STATIC void s_report(const char *name, const char *unit, double value, double baseline,
                           int decimals)
{
    printf("bench %s %.*f %s baseline %.*f ratio %.2f\n", name, decimals, value, unit, decimals,
           baseline, baseline > 0 ? value / baseline : 0.0);
    fflush(stdout);
}

/* -------------------------------------------------------- socket setup */

BENCH_STATIC void s_sockopt_int(void *sock, int opt, int value)
{
    zmq_setsockopt(sock, opt, &value, sizeof value);
}

/* Bind or connect SOCK to ENDPOINT according to MODE ("bind" or "connect") */
BENCH_STATIC int s_attach(void *sock, const char *mode, const char *endpoint)
{
    int rc = strcmp(mode, "bind") == 0 ? zmq_bind(sock, endpoint) : zmq_connect(sock, endpoint);
    if (rc != 0)
        fprintf(stderr, "bench: unable to %s '%s': %s\n", mode, endpoint, zmq_strerror(errno));
    return rc;
}

/* -------------------------------------------------------- event roles */

/* Send one event [topic][body] with SEQ stamped into BUF */
BENCH_STATIC void s_pub_send(void *pub, const bench_template_t *tpl, uint8_t *buf, uint64_t seq)
{
    s_template_stamp(tpl, buf, seq);
    zmq_send(pub, BENCH_TOPIC, strlen(BENCH_TOPIC), ZMQ_SNDMORE);
    zmq_send(pub, buf, BENCH_MSG_SIZE, 0);
}

/* Wait up to WAIT_MS for byte WANT on the consumer's ready pipe; the
   bytes come in order ('1' then '2'), so any later byte counts too.
   1 when seen, 0 on timeout, -1 when the pipe closed. */
BENCH_STATIC int s_ready_wait(int fd, char want, int wait_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, wait_ms) <= 0)
        return 0;
    char got[8];
    ssize_t n = read(fd, got, sizeof got);
    if (n <= 0)
        return -1;
    for (ssize_t i = 0; i < n; i++)
        if (got[i] >= want)
            return 1;
    return 0;
}

/* pub MODE ENDPOINT COUNT READY_FD START_FD
   Raw libzmq PUB. Handshake with the consumer over READY_FD so the
   measured stream starts on a live, warm and empty path:
     1. one warm-up message per millisecond until the consumer says '1'
        (its subscription or group membership works);
     2. BENCH_WARM_BURST warm-up messages, the last with seq WARM_LAST
        (resent every 10 ms until the consumer says '2': it has drained
        the burst);
     3. writes the monotonic time to START_FD and sends COUNT measured
        messages as fast as it can. */
BENCH_STATIC int s_role_pub(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    long count = atol(argv[4]);
    int ready_fd = atoi(argv[5]);
    int start_fd = atoi(argv[6]);
    bench_template_t tpl;
    if (s_template_make(&tpl) != 0)
        return 1;
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    s_sockopt_int(pub, ZMQ_SNDHWM, BENCH_HWM);
    s_sockopt_int(pub, ZMQ_LINGER, 30000);
    if (s_attach(pub, argv[2], argv[3]) != 0)
        return 1;
    uint8_t buf[BENCH_MSG_SIZE];
    memcpy(buf, tpl.data, sizeof buf);
    uint64_t warm = BENCH_SEQ_WARM;
    int64_t deadline = s_now_ns() + (int64_t)BENCH_READY_MS * 1000000;
    int rc;
    do {
        s_pub_send(pub, &tpl, buf, warm++);
        rc = s_ready_wait(ready_fd, '1', 1);
    } while (rc == 0 && s_now_ns() < deadline);
    if (rc == 1) {
        for (int i = 0; i < BENCH_WARM_BURST - 1; i++)
            s_pub_send(pub, &tpl, buf, warm++);
        deadline = s_now_ns() + (int64_t)BENCH_READY_MS * 1000000;
        do {
            s_pub_send(pub, &tpl, buf, BENCH_SEQ_WARM_LAST);
            rc = s_ready_wait(ready_fd, '2', 10);
        } while (rc == 0 && s_now_ns() < deadline);
    }
    if (rc != 1) {
        fprintf(stderr, "bench pub: the consumer never became ready\n");
        return 1;
    }
    char line[64];
    snprintf(line, sizeof line, "%" PRId64 "\n", s_now_ns());
    s_write_all(start_fd, line);
    for (long i = 0; i < count; i++)
        s_pub_send(pub, &tpl, buf, BENCH_SEQ_MEASURED + (uint64_t)i);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}

/* sub MODE ENDPOINT COUNT READY_FD RESULT_FD
   Raw libzmq SUB on the topic prefix. Writes '1' to READY_FD on the
   first warm-up message and '2' on WARM_LAST, then counts measured
   messages until COUNT or BENCH_IDLE_MS of silence, and writes
   "RECEIVED LAST_NS DUPLICATES MALFORMED" to RESULT_FD (LAST_NS: the
   monotonic time of the last measured message). */
BENCH_STATIC int s_role_sub(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    long count = atol(argv[4]);
    int ready_fd = atoi(argv[5]);
    int result_fd = atoi(argv[6]);
    bench_template_t tpl;
    if (s_template_make(&tpl) != 0)
        return 1;
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    s_sockopt_int(sub, ZMQ_RCVHWM, BENCH_HWM);
    s_sockopt_int(sub, ZMQ_LINGER, 0);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, BENCH_TOPIC, strlen(BENCH_TOPIC));
    if (s_attach(sub, argv[2], argv[3]) != 0)
        return 1;
    bool ready = false, warm_done = false;
    long received = 0, bad = 0;
    int64_t last = 0;
    int64_t start = s_now_ns();
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    while (received < count) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, warm_done ? BENCH_IDLE_MS : 500);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc <= 0) {
            if (received > 0 || (warm_done && rc == 0))
                break; /* silence: the rest is lost */
            if (s_now_ns() - start > (int64_t)BENCH_READY_MS * 2 * 1000000) {
                fprintf(stderr, "bench sub: no measured message within %d ms\n",
                        BENCH_READY_MS * 2);
                return 1;
            }
            continue;
        }
        /* drain without polling between messages */
        while (received < count && zmq_msg_recv(&frame, sub, ZMQ_DONTWAIT) >= 0) {
            if (!zmq_msg_more(&frame))
                continue; /* a lone frame: ignore */
            if (zmq_msg_recv(&frame, sub, 0) < 0)
                break;
            uint64_t seq =
                s_template_seq(&tpl, (const uint8_t *)zmq_msg_data(&frame), zmq_msg_size(&frame));
            if (seq < BENCH_SEQ_WARM) {
                bad++;
            } else if (seq >= BENCH_SEQ_MEASURED) {
                received++;
                last = s_now_ns();
            } else if (!ready) {
                ready = true;
                s_write_all(ready_fd, "1");
            }
            if (seq == BENCH_SEQ_WARM_LAST && !warm_done) {
                warm_done = true;
                s_write_all(ready_fd, "2");
            }
        }
    }
    zmq_msg_close(&frame);
    char line[128];
    snprintf(line, sizeof line, "%ld %" PRId64 " 0 %ld\n", received, last, bad);
    s_write_all(result_fd, line);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}

/* proxy FRONT BACK - the bare hop: zmq_proxy between XSUB and XPUB */
BENCH_STATIC int s_role_proxy(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    void *ctx = zmq_ctx_new();
    void *xsub = zmq_socket(ctx, ZMQ_XSUB);
    void *xpub = zmq_socket(ctx, ZMQ_XPUB);
    s_sockopt_int(xsub, ZMQ_RCVHWM, BENCH_HWM);
    s_sockopt_int(xsub, ZMQ_SNDHWM, BENCH_HWM);
    s_sockopt_int(xpub, ZMQ_RCVHWM, BENCH_HWM);
    s_sockopt_int(xpub, ZMQ_SNDHWM, BENCH_HWM);
    if (s_attach(xsub, "bind", argv[2]) != 0 || s_attach(xpub, "bind", argv[3]) != 0)
        return 1;
    zmq_proxy(xsub, xpub, NULL); /* until SIGTERM */
    return 0;
}

/* ------------------------------------------------------ event samples */

typedef enum {
    BENCH_VIA_PROXY,  /* pub -> zmq_proxy -> sub */
    BENCH_VIA_BROKER, /* pub -> kaizen-broker -> sub */
    BENCH_VIA_DIRECT, /* pub -> sub */
    BENCH_VIA_GROUP   /* pub -> kaizen-broker -> group member (role "member") */
} bench_via_t;

static const char *const s_via_names[] = {"bare-hop", "broker", "direct", "broker-group"};

/* One sample of COUNT events through VIA. On success returns 0 with the
   delivered rate in *RATE: messages received / (time of the last one at
   the consumer - time the publisher started the measured stream), and
   the lost count in *LOST. */
BENCH_STATIC int s_events_sample(bench_via_t via, long count, int index, double *rate, long *lost)
{
    char dir[384], front[512], back[512], config[512];
    char count_s[32], ready_s[16], result_s[16], start_s[16];
    int ready[2] = {-1, -1}, result[2] = {-1, -1}, start[2] = {-1, -1};
    int rc = -1;
    if (s_sample_dir(index, dir, sizeof dir) != 0)
        return -1;
    snprintf(front, sizeof front, "ipc://%s/pub", dir);
    snprintf(back, sizeof back, "ipc://%s/sub", dir);
    snprintf(count_s, sizeof count_s, "%ld", count);
    if (via == BENCH_VIA_PROXY) {
        char *argv[] = {s_self, (char *)"proxy", front, back, NULL};
        if (s_spawn(argv, NULL, NULL) < 0)
            goto done;
    } else if (via == BENCH_VIA_BROKER || via == BENCH_VIA_GROUP) {
        if (s_write_config(dir, config, sizeof config) != 0 || s_start_broker(dir, config) < 0)
            goto done;
    } else {
        snprintf(front, sizeof front, "ipc://%s/direct", dir);
        snprintf(back, sizeof back, "ipc://%s/direct", dir);
    }
    if (s_pipe(ready) != 0 || s_pipe(result) != 0 || s_pipe(start) != 0)
        goto done;
    snprintf(ready_s, sizeof ready_s, "%d", ready[1]);
    snprintf(result_s, sizeof result_s, "%d", result[1]);
    int keep_consumer[] = {ready[1], result[1], -1};
    if (via == BENCH_VIA_GROUP) {
        char *argv[] = {s_self, (char *)"member", config, count_s, ready_s, result_s, NULL};
        if (s_spawn(argv, keep_consumer, NULL) < 0)
            goto done;
    } else {
        char *argv[] = {s_self,  (char *)"sub", (char *)"connect", back,
                        count_s, ready_s,       result_s,          NULL};
        if (s_spawn(argv, keep_consumer, NULL) < 0)
            goto done;
    }
    close(ready[1]);
    close(result[1]);
    ready[1] = result[1] = -1;
    snprintf(ready_s, sizeof ready_s, "%d", ready[0]);
    snprintf(start_s, sizeof start_s, "%d", start[1]);
    int keep_pub[] = {ready[0], start[1], -1};
    {
        char *argv[] = {
            s_self,  (char *)"pub", (char *)(via == BENCH_VIA_DIRECT ? "bind" : "connect"),
            front,   count_s,       ready_s,
            start_s, NULL};
        if (s_spawn(argv, keep_pub, NULL) < 0)
            goto done;
    }
    close(start[1]);
    start[1] = -1;
    char line[256], start_line[64];
    /* generous: even at 5k msg/s the stream finishes well within this */
    int timeout_ms = 120000 + (int)(count / 5);
    if (s_read_line(result[0], line, sizeof line, timeout_ms) != 0 ||
        s_read_line(start[0], start_line, sizeof start_line, 5000) != 0) {
        fprintf(stderr, "bench: no result from the %s sample\n", s_via_names[via]);
        if (via != BENCH_VIA_PROXY && via != BENCH_VIA_DIRECT) {
            char log[512];
            snprintf(log, sizeof log, "%s/broker.log", dir);
            s_dump_log(log);
        }
        goto done;
    }
    long received = 0, dups = 0, bad = 0;
    int64_t last = 0, first = strtoll(start_line, NULL, 10);
    if (sscanf(line, "%ld %" SCNd64 " %ld %ld", &received, &last, &dups, &bad) != 4 ||
        received < 1 || last <= first) {
        fprintf(stderr, "bench: bad result from the %s consumer: %s\n", s_via_names[via], line);
        goto done;
    }
    *rate = (double)received * 1e9 / (double)(last - first);
    *lost = count - received;
    fprintf(stderr,
            "sample %s %d: %.0f msg/s, %ld of %ld delivered in %.3f s, lost %ld, duplicates %ld, "
            "malformed %ld\n",
            s_via_names[via], index, *rate, received, count, (double)(last - first) / 1e9, *lost,
            dups, bad);
    rc = 0;
done:
    s_kill_all();
    for (int i = 0; i < 2; i++) {
        if (ready[i] >= 0)
            close(ready[i]);
        if (result[i] >= 0)
            close(result[i]);
        if (start[i] >= 0)
            close(start[i]);
    }
    return rc;
}

/* The events-shaped benchmark: BENCH_SAMPLES rounds of (bare hop, VIA,
   direct), interleaved, then "bench NAME" against the bare hop and
   "bench NAME_vs_direct" against no broker, each the best sample. */
BENCH_STATIC int s_events_bench(const char *name, bench_via_t via)
{
    long count = s_scaled(500000);
    double proxy[BENCH_SAMPLES], tested[BENCH_SAMPLES], direct[BENCH_SAMPLES];
    long lost = 0;
    int index = 0;
    fprintf(stderr, "%s: %ld messages of %d bytes per sample\n", name, count, BENCH_MSG_SIZE);
    for (int i = 0; i < BENCH_SAMPLES; i++) {
        if (s_events_sample(BENCH_VIA_PROXY, count, index++, &proxy[i], &lost) != 0 ||
            s_events_sample(via, count, index++, &tested[i], &lost) != 0 ||
            s_events_sample(BENCH_VIA_DIRECT, count, index++, &direct[i], &lost) != 0)
            return 1;
    }
    char vs_direct[64];
    snprintf(vs_direct, sizeof vs_direct, "%s_vs_direct", name);
    double best = s_best(tested, BENCH_SAMPLES, false);
    s_report(name, "msg/s", best, s_best(proxy, BENCH_SAMPLES, false), 0);
    s_report(vs_direct, "msg/s", best, s_best(direct, BENCH_SAMPLES, false), 0);
    return 0;
}

#endif
