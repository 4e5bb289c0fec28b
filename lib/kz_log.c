/*  kz_log.c - levelled logging with the agent id and correlation id

    Each call formats the whole line into one buffer and hands it to the
    stream with a single fwrite and fflush, so lines from threads of one
    process never interleave, and lines from processes sharing a file
    (O_APPEND) are written whole as long as they fit a pipe buffer.
    The correlation id is thread-local: concurrent work in one process
    keeps its own id.
*/
#include "kz_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_state.h"

#define KZ_LOG_AGENT_MAX 256
#define KZ_LOG_CORR_MAX  128

static atomic_int s_level = KZ_LOG_INFO;
static atomic_bool s_json = false;
static FILE *_Atomic s_file = NULL;
static char s_agent[KZ_LOG_AGENT_MAX];
static _Thread_local char s_corr[KZ_LOG_CORR_MAX];

/* The rotated log file that is our stderr (kz_log_open_file) */
static pthread_mutex_t s_rot_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_rot_path[PATH_MAX];
static size_t s_rot_max;
static int s_rot_keep;
static dev_t s_rot_dev; /* the file fd 2 is while we rotate it */
static ino_t s_rot_ino;
static atomic_bool s_rot_on = false;

/* A growable line buffer; on allocation failure it stays truncated
   rather than losing the line */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    char local[1024];
} s_buf_t;

static void s_buf_init(s_buf_t *buf)
{
    buf->data = buf->local;
    buf->len = 0;
    buf->cap = sizeof buf->local;
}

static void s_buf_free(s_buf_t *buf)
{
    if (buf->data != buf->local)
        free(buf->data);
}

/* Ensure room for N more bytes plus a NUL; false when out of memory */
static bool s_buf_reserve(s_buf_t *buf, size_t n)
{
    if (buf->len + n + 1 <= buf->cap)
        return true;
    size_t cap = buf->cap * 2;
    while (cap < buf->len + n + 1)
        cap *= 2;
    char *data;
    if (buf->data == buf->local) {
        data = malloc(cap);
        if (data)
            memcpy(data, buf->local, buf->len);
    } else
        data = realloc(buf->data, cap);
    if (!data)
        return false;
    buf->data = data;
    buf->cap = cap;
    return true;
}

static void s_buf_add(s_buf_t *buf, const char *text, size_t n)
{
    if (!s_buf_reserve(buf, n))
        n = buf->cap - buf->len - 1;
    memcpy(buf->data + buf->len, text, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
}

static void s_buf_str(s_buf_t *buf, const char *text)
{
    s_buf_add(buf, text, strlen(text));
}

/* Append TEXT as JSON string contents (without the quotes) */
static void s_buf_json(s_buf_t *buf, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char esc[7];
        switch (*p) {
        case '"':
            s_buf_add(buf, "\\\"", 2);
            break;
        case '\\':
            s_buf_add(buf, "\\\\", 2);
            break;
        case '\n':
            s_buf_add(buf, "\\n", 2);
            break;
        case '\r':
            s_buf_add(buf, "\\r", 2);
            break;
        case '\t':
            s_buf_add(buf, "\\t", 2);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 0xf];
                s_buf_add(buf, esc, 6);
            } else
                s_buf_add(buf, (const char *)p, 1);
        }
    }
}

static const char *s_level_name(kz_log_level_t level)
{
    switch (level) {
    case KZ_LOG_DEBUG:
        return "debug";
    case KZ_LOG_INFO:
        return "info";
    case KZ_LOG_WARN:
        return "warn";
    case KZ_LOG_ERROR:
        return "error";
    default:
        return "off";
    }
}

void kz_log_set_agent(const char *agent_id)
{
    if (!agent_id)
        agent_id = "";
    snprintf(s_agent, sizeof s_agent, "%s", agent_id);
}

void kz_log_set_level(kz_log_level_t level)
{
    atomic_store(&s_level, (int)level);
}

kz_log_level_t kz_log_level(void)
{
    return (kz_log_level_t)atomic_load(&s_level);
}

void kz_log_set_json(bool json)
{
    atomic_store(&s_json, json);
}

void kz_log_set_file(FILE *file)
{
    atomic_store(&s_file, file);
}

void kz_log_set_corr(const char *corr)
{
    snprintf(s_corr, sizeof s_corr, "%s", corr ? corr : "");
}

const char *kz_log_corr(void)
{
    return s_corr[0] ? s_corr : NULL;
}

int kz_log_level_parse(const char *text, kz_log_level_t *level)
{
    static const struct {
        const char *name;
        kz_log_level_t level;
    } names[] = {{"debug", KZ_LOG_DEBUG},  {"info", KZ_LOG_INFO},   {"warn", KZ_LOG_WARN},
                 {"warning", KZ_LOG_WARN}, {"error", KZ_LOG_ERROR}, {"off", KZ_LOG_OFF}};
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(text, names[i].name) == 0) {
            *level = names[i].level;
            return 0;
        }
    return -1;
}

int kz_log_format_parse(const char *text, bool *json)
{
    if (!text)
        return -1;
    if (strcasecmp(text, "text") == 0)
        *json = false;
    else if (strcasecmp(text, "json") == 0)
        *json = true;
    else
        return -1;
    return 0;
}

/* "2026-11-26T09:01:02.123456Z" into TS (at least 32 bytes) */
static void s_timestamp(char *ts, size_t len)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, len - n, ".%06ldZ", (long)(now.tv_nsec / 1000));
}

static void s_rotate_if_due(void);

void kz_log_vwrite(kz_log_level_t level, const char *fmt, va_list ap)
{
    if (level < kz_log_level() || level >= KZ_LOG_OFF)
        return;
    int saved_errno = errno; /* a log call must not disturb the caller's errno */

    char small[512];
    char *msg = small;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        snprintf(small, sizeof small, "(unprintable log message)");
    } else if ((size_t)n >= sizeof small) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            msg = big;
        }
    }

    char ts[40];
    s_timestamp(ts, sizeof ts);
    const char *agent = s_agent[0] ? s_agent : program_invocation_short_name;
    const char *corr = kz_log_corr();

    s_buf_t buf;
    s_buf_init(&buf);
    if (atomic_load(&s_json)) {
        s_buf_str(&buf, "{\"ts\":\"");
        s_buf_str(&buf, ts);
        s_buf_str(&buf, "\",\"level\":\"");
        s_buf_str(&buf, s_level_name(level));
        s_buf_str(&buf, "\",\"agent\":\"");
        s_buf_json(&buf, agent);
        if (corr) {
            s_buf_str(&buf, "\",\"corr\":\"");
            s_buf_json(&buf, corr);
        }
        s_buf_str(&buf, "\",\"msg\":\"");
        s_buf_json(&buf, msg);
        s_buf_str(&buf, "\"}\n");
    } else {
        s_buf_str(&buf, ts);
        s_buf_str(&buf, " ");
        s_buf_str(&buf, s_level_name(level));
        s_buf_str(&buf, " ");
        s_buf_str(&buf, agent);
        if (corr) {
            s_buf_str(&buf, " corr=");
            s_buf_str(&buf, corr);
        }
        s_buf_str(&buf, " ");
        /* a text line stays one line: newlines inside the message are escaped */
        for (const char *p = msg; *p; p++) {
            if (*p == '\n')
                s_buf_add(&buf, "\\n", 2);
            else
                s_buf_add(&buf, p, 1);
        }
        s_buf_str(&buf, "\n");
    }
    if (buf.len > 0 && buf.data[buf.len - 1] != '\n') /* truncated by lack of memory */
        buf.data[buf.len - 1] = '\n';

    FILE *out = atomic_load(&s_file);
    if (!out)
        out = stderr;
    fwrite(buf.data, 1, buf.len, out);
    fflush(out);
    if (atomic_load(&s_rot_on) && out == stderr)
        s_rotate_if_due();

    s_buf_free(&buf);
    if (msg != small)
        free(msg);
    errno = saved_errno;
}

/* Open PATH for appending and make it fd 2. 0 / -1 with errno */
static int s_open_as_stderr(const char *path)
{
    /* never through a symlink planted in the log's place; ours alone */
    int fd = kz_file_open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0)
        return -1;
    fflush(stderr);
    if (fd != STDERR_FILENO) {
        if (dup2(fd, STDERR_FILENO) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        close(fd);
    } else
        fcntl(fd, F_SETFD, 0); /* fd 2 was closed: children must inherit it */
    struct stat st;
    if (fstat(STDERR_FILENO, &st) == 0) {
        s_rot_dev = st.st_dev;
        s_rot_ino = st.st_ino;
    }
    return 0;
}

static void s_rotate_if_due(void)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0 || (size_t)st.st_size <= s_rot_max)
        return;
    pthread_mutex_lock(&s_rot_lock);
    /* another thread may have rotated meanwhile; and fd 2 may have been
       pointed elsewhere since (then PATH is not ours to rotate) */
    if (fstat(STDERR_FILENO, &st) == 0 && (size_t)st.st_size > s_rot_max &&
        st.st_dev == s_rot_dev && st.st_ino == s_rot_ino) {
        if (s_rot_keep <= 0) {
            if (ftruncate(STDERR_FILENO, 0) != 0)
                s_rot_max = SIZE_MAX; /* cannot rotate: stop trying */
        } else {
            char from[PATH_MAX + 16], to[PATH_MAX + 16];
            for (int i = s_rot_keep - 1; i >= 1; i--) {
                snprintf(from, sizeof from, "%s.%d", s_rot_path, i);
                snprintf(to, sizeof to, "%s.%d", s_rot_path, i + 1);
                rename(from, to); /* a missing one is fine */
            }
            /* a supervised process has stdout on the same file: it moves
               too, or it would keep writing into PATH.1 (and later into
               an unlinked file) */
            struct stat out;
            bool out_too = fstat(STDOUT_FILENO, &out) == 0 && out.st_dev == st.st_dev &&
                           out.st_ino == st.st_ino;
            snprintf(to, sizeof to, "%s.1", s_rot_path);
            if (rename(s_rot_path, to) != 0 || s_open_as_stderr(s_rot_path) != 0)
                s_rot_max = SIZE_MAX; /* keep writing to the open file */
            else if (out_too) {
                fflush(stdout);
                dup2(STDERR_FILENO, STDOUT_FILENO);
            }
        }
    }
    pthread_mutex_unlock(&s_rot_lock);
}

int kz_log_open_file(const char *path, size_t max_bytes, int keep)
{
    if (!path || strlen(path) >= sizeof s_rot_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    pthread_mutex_lock(&s_rot_lock);
    int rc = s_open_as_stderr(path);
    if (rc == 0) {
        snprintf(s_rot_path, sizeof s_rot_path, "%s", path);
        s_rot_max = max_bytes > 0 ? max_bytes : SIZE_MAX;
        s_rot_keep = keep;
        atomic_store(&s_rot_on, true);
        atomic_store(&s_file, NULL); /* lines go to stderr, which is now the file */
    }
    pthread_mutex_unlock(&s_rot_lock);
    if (rc == 0)
        s_rotate_if_due();
    return rc;
}

void kz_log_write(kz_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kz_log_vwrite(level, fmt, ap);
    va_end(ap);
}

int kz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kz_log_vwrite(KZ_LOG_ERROR, fmt, ap);
    va_end(ap);
    return -1;
}
