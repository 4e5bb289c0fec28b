/*  bench_recorder.c - messages per second from the bus into PostgreSQL,
    against raw COPY of the same rows

    One embedded PostgreSQL cluster (lib/kz_pgctl.h, default settings,
    durable commits) under the benchmark's temporary directory serves
    every sample. Each party in its own process:

      recorder: a raw PUB (role "rpub") -> kaizen-broker -> the real
                kaizen-orchestrator (supervisor.broker false, no agents),
                whose recorder stores each message in events (COPY into
                its staging table, INSERT ... ON CONFLICT, COMMIT) and
                only then acknowledges it. The rate is N / (time the
                harness first sees all N rows committed - time the
                publisher started the measured stream); the harness polls
                max(events.seq) every 20 ms and counts the rows exactly
                at the end.
      baseline: the harness itself COPYs the same N rows (same columns,
                same JSON bodies, pre-rendered in memory before the clock
                starts) into events_baseline (CREATE TABLE ... (LIKE events
                INCLUDING ALL): the same indexes and identity), in two
                ways each round: one COPY per transaction of 1000 rows
                (BEGIN, COPY, COMMIT), and all N rows in one COPY and one
                transaction. The baseline figure is the best sample of
                either: the fastest raw COPY path.

    The recorder runs with the default broker.group_inflight 4000 and
    database.batch_size 2000, written out in its config (it hands over
    batches of min(batch_size, group_inflight / 2) = 2000 messages).

    Messages are 300-byte test.event envelopes (bench_common.h) whose seq
    and id are stamped into the encoded bytes, so every message has its
    own id (the recorder stores a message once per id). Three
    interleaved samples of each; the best of each is reported:
      bench recorder      recorder msg/s vs raw COPY rows/s (goal >= 0.6)
      bench recorder_rss  the orchestrator's peak RSS (VmHWM) after
                          recording 1,000,000 messages, MiB, vs 64 MiB
                          (lower is better)
    BENCH_SCALE scales N (200,000) and the RSS run (1,000,000).
*/
#include "bench_common.h"

#include <libpq-fe.h>

#include "kz_config.h"
#include "kz_db.h"
#include "kz_pgctl.h"

#define R_COUNT        200000
#define R_RSS_COUNT    1000000
#define R_RSS_GOAL_MIB 64
#define R_TX_ROWS      1000 /* baseline rows per transaction (or all in one) */
#define R_INFLIGHT     4000 /* broker.group_inflight */
#define R_BATCH        2000 /* database.batch_size */
#define R_POLL_MS      20
#define R_STALL_MS     60000 /* no progress for this long: the sample failed */
#define R_ID_STAMP     10    /* trailing id characters stamped with a counter */

static kz_pg_t s_pg;
static bool s_pg_started;
static volatile pid_t s_postmaster;
static char s_state[PATH_MAX];

/* ----------------------------------------------------------- template */

typedef struct {
    bench_template_t tpl;
    size_t id_off; /* offset of the 26-character id string */
} r_template_t;

static int s_rtemplate(r_template_t *rt)
{
    if (s_template_make(&rt->tpl) != 0)
        return -1;
    /* fixstr "id" followed by a fixstr of 26 bytes */
    for (size_t i = 0; i + 4 + 26 <= BENCH_MSG_SIZE; i++) {
        if (rt->tpl.data[i] == 0xa2 && rt->tpl.data[i + 1] == 'i' && rt->tpl.data[i + 2] == 'd' &&
            rt->tpl.data[i + 3] == (0xa0 | 26)) {
            rt->id_off = i + 4;
            return 0;
        }
    }
    fprintf(stderr, "bench: envelope id not found in the template\n");
    return -1;
}

/* Stamp SEQ and a unique id (COUNTER in the id's last characters) */
static void s_rstamp(const r_template_t *rt, uint8_t *buf, uint64_t seq, uint64_t counter)
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    s_template_stamp(&rt->tpl, buf, seq);
    for (int i = R_ID_STAMP - 1; i >= 0; i--) {
        buf[rt->id_off + 26 - R_ID_STAMP + (size_t)i] = (uint8_t)b32[counter & 31];
        counter >>= 5;
    }
}

/* ------------------------------------------------------ the publisher */

/* rpub ENDPOINT COUNT CTRL_FD START_FD
   Raw libzmq PUB into the broker. Warm-up messages one per millisecond
   until the harness writes '1' on CTRL_FD (it saw one recorded), then
   the WARM_LAST message every 10 ms until it writes '2' (that one is
   recorded: the path is warm and the queue empty); then the monotonic
   start time goes to START_FD and COUNT measured messages are sent as
   fast as the socket takes them. Every message has its own id. */
static int s_role_rpub(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    long count = atol(argv[3]);
    int ctrl_fd = atoi(argv[4]);
    int start_fd = atoi(argv[5]);
    r_template_t rt;
    if (s_rtemplate(&rt) != 0)
        return 1;
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    s_sockopt_int(pub, ZMQ_SNDHWM, 0); /* no limit: the whole stream queues, nothing drops */
    s_sockopt_int(pub, ZMQ_LINGER, 60000);
    if (s_attach(pub, "connect", argv[2]) != 0)
        return 1;
    uint8_t buf[BENCH_MSG_SIZE];
    memcpy(buf, rt.tpl.data, sizeof buf);
    uint64_t id = 1, warm = BENCH_SEQ_WARM;
    int64_t deadline = s_now_ns() + (int64_t)BENCH_READY_MS * 4 * 1000000;
    int rc;
    do {
        s_rstamp(&rt, buf, warm++, id++);
        zmq_send(pub, BENCH_TOPIC, strlen(BENCH_TOPIC), ZMQ_SNDMORE);
        zmq_send(pub, buf, BENCH_MSG_SIZE, 0);
        rc = s_ready_wait(ctrl_fd, '1', 1);
    } while (rc == 0 && s_now_ns() < deadline);
    while (rc == 1 && s_now_ns() < deadline) {
        s_rstamp(&rt, buf, BENCH_SEQ_WARM_LAST, id++);
        zmq_send(pub, BENCH_TOPIC, strlen(BENCH_TOPIC), ZMQ_SNDMORE);
        zmq_send(pub, buf, BENCH_MSG_SIZE, 0);
        if (s_ready_wait(ctrl_fd, '2', 10) != 0)
            break;
    }
    if (rc != 1 || s_now_ns() >= deadline) {
        fprintf(stderr, "bench rpub: the recorder never became ready\n");
        return 1;
    }
    char line[64];
    snprintf(line, sizeof line, "%" PRId64 "\n", s_now_ns());
    s_write_all(start_fd, line);
    for (long i = 0; i < count; i++) {
        s_rstamp(&rt, buf, BENCH_SEQ_MEASURED + (uint64_t)i, id++);
        zmq_send(pub, BENCH_TOPIC, strlen(BENCH_TOPIC), ZMQ_SNDMORE);
        zmq_send(pub, buf, BENCH_MSG_SIZE, 0);
    }
    zmq_close(pub); /* lingers until everything is handed to the broker */
    zmq_ctx_term(ctx);
    return 0;
}

/* ------------------------------------------------------------ database */

/* Stop the cluster from a signal handler: immediate shutdown */
static void s_on_fatal(int sig)
{
    for (int i = 0; i < s_nchildren; i++)
        kill(s_children[i], SIGKILL);
    if (s_postmaster > 0)
        kill(s_postmaster, SIGQUIT);
    _exit(128 + sig);
}

static void s_pg_stop_at_exit(void)
{
    if (!s_pg_started)
        return;
    char err[1024];
    if (kz_pg_stop(&s_pg, 30000, err, sizeof err) != 0)
        fprintf(stderr, "bench: %s\n", err);
    s_pg_started = false;
}

/* The config every party of every sample shares (one state_dir: one
   cluster); the bus endpoints live in DIR */
static int s_write_rconfig(const char *dir, char *path, size_t size)
{
    snprintf(path, size, "%s/kaizen.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "state_dir: %s\n"
            "bus:\n"
            "  endpoints:\n"
            "    pub: ipc://%s/pub\n"
            "    sub: ipc://%s/sub\n"
            "    router: ipc://%s/router\n"
            "    tap: ipc://%s/tap\n"
            "  hwm: 0\n" /* no limit: the published stream queues in the broker */
            "broker:\n"
            "  group_queue_limit: 4000000\n"
            "  group_inflight: %d\n"
            "database:\n"
            "  batch_size: %d\n"
            "supervisor:\n"
            "  broker: false\n"
            "agents: []\n" /* none: an absent list means the default agents */
            "log:\n"
            "  level: info\n",
            s_state, dir, dir, dir, dir, R_INFLIGHT, R_BATCH);
    return fclose(f) == 0 ? 0 : -1;
}

static PGconn *s_connect(const char *config)
{
    char err[1024];
    kz_config_t *cfg = kz_config_load(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "bench: %s\n", err);
        return NULL;
    }
    PGconn *db = kz_db_connect(cfg, "kaizen-bench", err, sizeof err);
    kz_config_destroy(&cfg);
    if (!db)
        fprintf(stderr, "bench: %s\n", err);
    return db;
}

static int s_exec(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    int rc =
        PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "bench: %s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

/* A single bigint from SQL with one text parameter (NULL: none); -1 on error */
static int64_t s_query_int(PGconn *db, const char *sql, const char *param)
{
    const char *params[1] = {param};
    PGresult *res = PQexecParams(db, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    int64_t v = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 1)
        v = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        fprintf(stderr, "bench: %s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return v;
}

/* Start the cluster, apply the schema, create events_baseline. 0 / -1 */
static int s_db_setup(const char *config)
{
    char err[2048];
    if (kz_pg_init(&s_pg, s_state, err, sizeof err) != 0 ||
        kz_pg_start(&s_pg, 120000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    s_pg_started = true;
    atexit(s_pg_stop_at_exit);
    char pidfile[PATH_MAX + 32];
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", s_pg.data_dir);
    FILE *f = fopen(pidfile, "r");
    if (f) {
        long pid = 0;
        if (fscanf(f, "%ld", &pid) == 1)
            s_postmaster = (pid_t)pid;
        fclose(f);
    }
    PGconn *db = s_connect(config);
    if (!db)
        return -1;
    int rc = kz_db_migrate(db, NULL, NULL, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "bench: %s\n", err);
    if (rc == 0)
        rc = s_exec(db, "CREATE TABLE events_baseline (LIKE events INCLUDING ALL)");
    PQfinish(db);
    return rc;
}

/* ------------------------------------------------------------ baseline */

/* The COPY rows of the N measured messages exactly as the recorder
   stores them: id, type, src, ts, corr, target, body (the JSON the
   recorder writes: kz_val_to_json of the decoded body) */
static char *s_baseline_rows(long count, size_t **offsets_p)
{
    r_template_t rt;
    if (s_rtemplate(&rt) != 0)
        return NULL;
    size_t cap = (size_t)count * 420 + 4096, len = 0;
    char *text = malloc(cap);
    size_t *offsets = malloc(((size_t)count + 1) * sizeof *offsets);
    uint8_t buf[BENCH_MSG_SIZE];
    memcpy(buf, rt.tpl.data, sizeof buf);
    for (long i = 0; text && offsets && i < count; i++) {
        s_rstamp(&rt, buf, BENCH_SEQ_MEASURED + (uint64_t)i, (uint64_t)i + 1);
        kz_msg_err_t err;
        kz_msg_t *msg = kz_msg_decode(buf, sizeof buf, NULL, &err);
        char *json = msg ? kz_val_to_json(kz_msg_body_const(msg)) : NULL;
        if (!json) {
            kz_msg_destroy(&msg);
            break;
        }
        int64_t us = kz_msg_ts(msg);
        time_t sec = (time_t)(us / 1000000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char row[1024];
        int n = snprintf(
            row, sizeof row, "%s\t%s\t%s\t%04d-%02d-%02d %02d:%02d:%02d.%06d+00\t\\N\t\\N\t%s\n",
            kz_msg_id(msg), kz_msg_type(msg), kz_msg_src(msg), tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000), json);
        free(json);
        kz_msg_destroy(&msg);
        if (n <= 0 || (size_t)n >= sizeof row)
            break;
        if (len + (size_t)n > cap) {
            cap *= 2;
            char *bigger = realloc(text, cap);
            if (!bigger)
                break;
            text = bigger;
        }
        offsets[i] = len;
        memcpy(text + len, row, (size_t)n);
        len += (size_t)n;
        offsets[i + 1] = len;
        if (i + 1 == count) {
            *offsets_p = offsets;
            return text;
        }
    }
    free(text);
    free(offsets);
    fprintf(stderr, "bench: unable to render the baseline rows\n");
    return NULL;
}

/* COPY rows [FROM, TO) in one transaction: BEGIN, COPY, COMMIT */
static int s_copy_tx(PGconn *db, const char *text, const size_t *offsets, long from, long to)
{
    PGresult *res = PQexec(db, "BEGIN");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(res);
    if (rc != 0)
        return -1;
    res = PQexec(db, "COPY events_baseline (id, type, src, ts, corr, target, body) FROM STDIN");
    rc = PQresultStatus(res) == PGRES_COPY_IN ? 0 : -1;
    PQclear(res);
    if (rc != 0)
        return -1;
    if (PQputCopyData(db, text + offsets[from], (int)(offsets[to] - offsets[from])) != 1 ||
        PQputCopyEnd(db, NULL) != 1)
        return -1;
    while ((res = PQgetResult(db)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = -1;
        PQclear(res);
    }
    res = PQexec(db, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = -1;
    PQclear(res);
    if (rc != 0)
        fprintf(stderr, "bench baseline: %s", PQerrorMessage(db));
    return rc;
}

/* One baseline sample: rows/s of raw COPY, TX_ROWS per transaction */
static int s_baseline_sample(const char *config, long count, long tx_rows, const char *text,
                             const size_t *offsets, double *rate)
{
    PGconn *db = s_connect(config);
    if (!db)
        return -1;
    int rc = s_exec(db, "TRUNCATE events_baseline");
    if (rc == 0)
        rc = s_exec(db, "CHECKPOINT");
    int64_t t0 = s_now_ns();
    for (long i = 0; rc == 0 && i < count; i += tx_rows)
        rc = s_copy_tx(db, text, offsets, i, i + tx_rows < count ? i + tx_rows : count);
    int64_t t1 = s_now_ns();
    if (rc == 0 && s_query_int(db, "SELECT count(*) FROM events_baseline", NULL) != count) {
        fprintf(stderr, "bench baseline: rows missing\n");
        rc = -1;
    }
    PQfinish(db);
    if (rc != 0)
        return -1;
    *rate = (double)count * 1e9 / (double)(t1 - t0);
    fprintf(stderr,
            "sample baseline: %.0f rows/s, %ld rows in %.3f s (COPY, %ld rows per "
            "transaction)\n",
            *rate, count, (double)(t1 - t0) / 1e9, tx_rows);
    return 0;
}

/* ------------------------------------------------------------ recorder */

static long s_vm_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, flen) == 0 && line[flen] == ':')
            kib = strtol(line + flen + 1, NULL, 10);
    fclose(f);
    return kib;
}

/* One recorder sample of COUNT messages; *RATE msg/s, *HWM_KIB the
   orchestrator's VmHWM at the end */
static int s_recorder_sample(int index, long count, double *rate, long *hwm_kib)
{
    char dir[384], config[512], log[512], orch[PATH_MAX], endpoint[512];
    char count_s[32], ctrl_s[16], start_s[16];
    int ctrl[2] = {-1, -1}, start[2] = {-1, -1};
    int rc = -1;
    PGconn *db = NULL;
    if (s_sample_dir(index, dir, sizeof dir) != 0 ||
        s_write_rconfig(dir, config, sizeof config) != 0)
        return -1;
    db = s_connect(config);
    if (!db || s_exec(db, "TRUNCATE events, agents CASCADE") != 0 || s_exec(db, "CHECKPOINT") != 0)
        goto done;
    if (s_start_broker(dir, config) < 0)
        goto done;
    const char *bin = getenv("KZ_BIN");
    snprintf(orch, sizeof orch, "%s/kaizen-orchestrator", bin && *bin ? bin : "bin");
    snprintf(log, sizeof log, "%s/orchestrator.log", dir);
    char *oargv[] = {orch, (char *)"-c", config, NULL};
    pid_t opid = s_spawn(oargv, NULL, log);
    if (opid < 0 || s_wait_log(log, "recording to the database", opid, 60000) != 0) {
        fprintf(stderr, "bench: the orchestrator does not record\n");
        s_dump_log(log);
        goto done;
    }
    if (s_pipe(ctrl) != 0 || s_pipe(start) != 0)
        goto done;
    snprintf(endpoint, sizeof endpoint, "ipc://%s/pub", dir);
    snprintf(count_s, sizeof count_s, "%ld", count);
    snprintf(ctrl_s, sizeof ctrl_s, "%d", ctrl[0]);
    snprintf(start_s, sizeof start_s, "%d", start[1]);
    int keep[] = {ctrl[0], start[1], -1};
    char *pargv[] = {s_self, (char *)"rpub", endpoint, count_s, ctrl_s, start_s, NULL};
    if (s_spawn(pargv, keep, NULL) < 0)
        goto done;
    close(ctrl[0]);
    close(start[1]);
    ctrl[0] = start[1] = -1;

    /* warm-up: one recorded message, then the marker */
    char warm_last[32];
    snprintf(warm_last, sizeof warm_last, "%u", BENCH_SEQ_WARM_LAST);
    int64_t deadline = s_now_ns() + (int64_t)BENCH_READY_MS * 2 * 1000000;
    while (s_query_int(db, "SELECT count(*) FROM events WHERE type = 'test.event'", NULL) < 1) {
        if (s_now_ns() > deadline || !s_alive(opid)) {
            fprintf(stderr, "bench: no warm-up message recorded\n");
            s_dump_log(log);
            goto done;
        }
        usleep(R_POLL_MS * 1000);
    }
    s_write_all(ctrl[1], "1");
    while (s_query_int(db,
                       "SELECT count(*) FROM events WHERE type = 'test.event' AND "
                       "body->>'seq' = $1",
                       warm_last) < 1) {
        if (s_now_ns() > deadline || !s_alive(opid)) {
            fprintf(stderr, "bench: the warm-up marker was not recorded\n");
            goto done;
        }
        usleep(R_POLL_MS * 1000);
    }
    int64_t seq0 = s_query_int(db, "SELECT max(seq) FROM events", NULL);
    s_write_all(ctrl[1], "2");
    char line[64];
    if (seq0 < 0 || s_read_line(start[0], line, sizeof line, 30000) != 0) {
        fprintf(stderr, "bench: the publisher did not start\n");
        goto done;
    }
    int64_t t0 = strtoll(line, NULL, 10);

    /* poll max(seq) (cheap) until N rows can be there, then count them */
    char seq0_s[32], measured_s[32];
    snprintf(seq0_s, sizeof seq0_s, "%" PRId64, seq0);
    snprintf(measured_s, sizeof measured_s, "%u", BENCH_SEQ_MEASURED);
    int64_t target = seq0 + count, mark = seq0, t1 = 0;
    int64_t stall = s_now_ns() + (int64_t)R_STALL_MS * 1000000;
    while (t1 == 0) {
        int64_t max = s_query_int(db, "SELECT max(seq) FROM events", NULL);
        int64_t now = s_now_ns();
        if (max < 0)
            goto done;
        if (max > mark + 100) { /* more than the orchestrator's own heartbeats */
            mark = max;
            stall = now + (int64_t)R_STALL_MS * 1000000;
        } else if (now > stall || !s_alive(opid)) {
            fprintf(stderr, "bench: recording stalled at %" PRId64 " of %ld rows\n", max - seq0,
                    count);
            s_dump_log(log);
            goto done;
        }
        if (max >= target) {
            const char *params[2] = {seq0_s, measured_s};
            PGresult *res = PQexecParams(db,
                                         "SELECT count(*) FROM events WHERE seq > $1::bigint "
                                         "AND type = 'test.event' "
                                         "AND (body->>'seq')::bigint >= $2::bigint",
                                         2, NULL, params, NULL, NULL, 0);
            long got = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;
            PQclear(res);
            if (got < 0)
                goto done;
            if (got >= count)
                t1 = now;
            else
                target = max + (count - got); /* other rows in between: wait for the rest */
        }
        if (t1 == 0)
            usleep(R_POLL_MS * 1000);
    }
    *rate = (double)count * 1e9 / (double)(t1 - t0);
    *hwm_kib = s_vm_kib(opid, "VmHWM");
    fprintf(stderr,
            "sample recorder %d: %.0f msg/s, %ld messages in %.3f s, orchestrator VmHWM %ld KiB "
            "VmRSS %ld KiB\n",
            index, *rate, count, (double)(t1 - t0) / 1e9, *hwm_kib, s_vm_kib(opid, "VmRSS"));
    rc = 0;
done:
    s_kill_all();
    PQfinish(db);
    for (int i = 0; i < 2; i++) {
        if (ctrl[i] >= 0)
            close(ctrl[i]);
        if (start[i] >= 0)
            close(start[i]);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "rpub") == 0)
            return s_role_rpub(argc, argv);
        fprintf(stderr, "usage: bench_recorder   (runs the benchmark; BENCH_SCALE scales it)\n");
        return 2;
    }
    if (s_harness_init() != 0)
        return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_fatal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* as root the cluster runs as user postgres, which must reach it */
    chmod(s_tmpdir, 0711);
    snprintf(s_state, sizeof s_state, "%s/state", s_tmpdir);
    char setup_dir[384], config[512];
    if (s_sample_dir(0, setup_dir, sizeof setup_dir) != 0 ||
        s_write_rconfig(setup_dir, config, sizeof config) != 0 || s_db_setup(config) != 0)
        return 1;

    long count = s_scaled(R_COUNT);
    fprintf(stderr, "recorder: %ld messages of %d bytes per sample\n", count, BENCH_MSG_SIZE);
    size_t *offsets = NULL;
    char *rows = s_baseline_rows(count, &offsets);
    if (!rows)
        return 1;
    double recorded[BENCH_SAMPLES], baseline[2 * BENCH_SAMPLES];
    long hwm = 0;
    int index = 1;
    for (int i = 0; i < BENCH_SAMPLES; i++) {
        if (s_baseline_sample(config, count, R_TX_ROWS, rows, offsets, &baseline[2 * i]) != 0 ||
            s_recorder_sample(index++, count, &recorded[i], &hwm) != 0 ||
            s_baseline_sample(config, count, count, rows, offsets, &baseline[2 * i + 1]) != 0) {
            free(rows);
            free(offsets);
            return 1;
        }
    }
    free(rows);
    free(offsets);
    s_report("recorder", "msg/s", s_best(recorded, BENCH_SAMPLES, false),
             s_best(baseline, 2 * BENCH_SAMPLES, false), 0);

    long rss_count = s_scaled(R_RSS_COUNT);
    double rate;
    fprintf(stderr, "recorder_rss: %ld messages\n", rss_count);
    if (s_recorder_sample(index++, rss_count, &rate, &hwm) != 0 || hwm <= 0)
        return 1;
    s_report("recorder_rss", "MiB", (double)hwm / 1024.0, R_RSS_GOAL_MIB, 1);
    return 0;
}
