/*  kz_dlog.c - the broker's durable-group log (kz_dlog.h)

    State: the list of live segments, oldest first, each with the highest
    event LSN it holds and how many of its events are not acknowledged;
    the current (last) segment is open for appending. An ACK finds the
    segment of its LSN by binary search on those highest LSNs. The
    events themselves are not kept here: the broker holds them in its
    queues; only open reads them back from disk.
*/
#include "kz_dlog.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_spool.h"
#include "kz_state.h"

#define S_SEG_MAGIC   "KZDLOG01"
#define S_SEG_HDR     8
#define S_REC_MAGIC   0x4B5A444Cu /* "KZDL" */
#define S_REC_HDR     12
#define S_MAX_RECORD  (16u * 1024 * 1024)
#define S_BUF_MAX     (256u * 1024) /* buffered bytes before a write */
#define S_SEG_DEFAULT (64ull * 1024 * 1024)
#define S_EVENT       1
#define S_ACK         2

typedef struct {
    uint64_t index;    /* file name */
    uint64_t last_lsn; /* highest event LSN in it (0: none yet) */
    uint64_t unacked;
    uint64_t bytes;
} s_seg_t;

struct kz_dlog {
    char *dir;
    uint64_t max_bytes, segment_bytes;
    s_seg_t *segs;
    size_t nsegs, capsegs;
    int fd; /* the current segment */
    uint64_t next_lsn;
    uint64_t bytes; /* all segments, buffered bytes included */
    uint8_t *buf;
    size_t buf_len, buf_cap;
    bool dirty; /* appended since the last sync */
    kz_dlog_stats_t st;

    /* the sync thread: fdatasync off the caller's thread (async syncs) */
    pthread_t thread;
    bool thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv, idle_cv;
    uint64_t ticket;    /* last ticket handed out (one per started sync) */
    uint64_t requested; /* the thread syncs up to this ticket */
    uint64_t done;      /* tickets up to this are durable */
    int sync_errno;     /* the thread's last write or fdatasync failure (0: none) */
    /* filled buffers the thread writes (in order), so a full page cache
       or a slow disk never blocks the caller's loop in write() */
    struct s_chunk {
        uint8_t *data;
        size_t len;
    } * q;
    size_t qn, qcap;
    uint64_t q_bytes;
    bool busy; /* the thread is writing or syncing */
    bool stop;
    int efd; /* eventfd: a sync finished */
};

static int s_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errbuf && errlen)
        vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void s_seg_path(const kz_dlog_t *self, uint64_t index, char *out, size_t len)
{
    snprintf(out, len, "%s/%016" PRIx64 ".log", self->dir, index);
}

static int s_write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int s_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Write the buffer to the current segment (no sync) */
#define S_QUEUE_MAX (64u * 1024 * 1024) /* bytes waiting for the thread before appends wait */

static int s_drain(kz_dlog_t *self, char *errbuf, size_t errlen)
{
    if (self->buf_len == 0)
        return 0;
    if (self->thread_on) {
        uint8_t *fresh = malloc(self->buf_cap);
        if (!fresh)
            return s_err(errbuf, errlen, "out of memory");
        pthread_mutex_lock(&self->mu);
        while (self->q_bytes > S_QUEUE_MAX) /* the disk is slower than the events */
            pthread_cond_wait(&self->idle_cv, &self->mu);
        if (self->qn == self->qcap) {
            size_t cap = self->qcap ? 2 * self->qcap : 16;
            struct s_chunk *q = realloc(self->q, cap * sizeof(*q));
            if (!q) {
                pthread_mutex_unlock(&self->mu);
                free(fresh);
                return s_err(errbuf, errlen, "out of memory");
            }
            self->q = q;
            self->qcap = cap;
        }
        self->q[self->qn].data = self->buf;
        self->q[self->qn].len = self->buf_len;
        self->qn++;
        self->q_bytes += self->buf_len;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
        self->buf = fresh;
        self->buf_len = 0;
        return 0;
    }
    if (s_write_all(self->fd, self->buf, self->buf_len) != 0)
        return s_err(errbuf, errlen, "unable to write the durable log in %s: %s", self->dir,
                     strerror(errno));
    self->buf_len = 0;
    return 0;
}

static int s_seg_push(kz_dlog_t *self, uint64_t index, uint64_t bytes)
{
    if (self->nsegs == self->capsegs) {
        size_t cap = self->capsegs ? 2 * self->capsegs : 16;
        s_seg_t *segs = realloc(self->segs, cap * sizeof(*segs));
        if (!segs)
            return -1;
        self->segs = segs;
        self->capsegs = cap;
    }
    self->segs[self->nsegs++] = (s_seg_t){index, 0, 0, bytes};
    return 0;
}

/* Start segment INDEX as the current one (the previous is synced first) */
static void s_wait_idle(kz_dlog_t *self);

static int s_seg_start(kz_dlog_t *self, uint64_t index, char *errbuf, size_t errlen)
{
    if (self->fd >= 0) {
        /* the thread has written everything queued: the rest goes here,
           synchronously, before the file is closed */
        s_wait_idle(self);
        if (self->buf_len && s_write_all(self->fd, self->buf, self->buf_len) != 0)
            return s_err(errbuf, errlen, "unable to write the durable log in %s: %s", self->dir,
                         strerror(errno));
        self->buf_len = 0;
        if (fdatasync(self->fd) != 0)
            return s_err(errbuf, errlen, "unable to sync the durable log in %s: %s", self->dir,
                         strerror(errno));
        close(self->fd);
        self->fd = -1;
    }
    char path[4096];
    s_seg_path(self, index, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return s_err(errbuf, errlen, "unable to create %s: %s", path, strerror(errno));
    if (s_write_all(fd, (const uint8_t *)S_SEG_MAGIC, S_SEG_HDR) != 0 || fdatasync(fd) != 0 ||
        s_fsync_dir(self->dir) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return s_err(errbuf, errlen, "unable to create %s: %s", path, strerror(e));
    }
    if (s_seg_push(self, index, S_SEG_HDR) != 0) {
        close(fd);
        unlink(path);
        return s_err(errbuf, errlen, "out of memory");
    }
    if (self->thread_on)
        pthread_mutex_lock(&self->mu);
    self->fd = fd;
    if (self->thread_on)
        pthread_mutex_unlock(&self->mu);
    self->bytes += S_SEG_HDR;
    return 0;
}

/* Delete the oldest segments while all their events are acknowledged
   (never the current one) */
static void s_trim(kz_dlog_t *self)
{
    size_t n = 0;
    while (n + 1 < self->nsegs && self->segs[n].unacked == 0) {
        char path[4096];
        s_seg_path(self, self->segs[n].index, path, sizeof path);
        unlink(path);
        self->bytes -= self->segs[n].bytes;
        n++;
    }
    if (n > 0) {
        memmove(self->segs, self->segs + n, (self->nsegs - n) * sizeof(*self->segs));
        self->nsegs -= n;
    }
}

/* Append one record to the buffer (and so to the current segment) */
static int s_record(kz_dlog_t *self, const uint8_t *head, size_t head_len, const void *tail,
                    size_t tail_len, char *errbuf, size_t errlen)
{
    size_t n = head_len + tail_len;
    size_t need = S_REC_HDR + n;
    if (self->buf_len + need > self->buf_cap) {
        if (s_drain(self, errbuf, errlen) != 0)
            return -1;
        if (need > self->buf_cap) {
            uint8_t *buf = realloc(self->buf, need);
            if (!buf)
                return s_err(errbuf, errlen, "out of memory");
            self->buf = buf;
            self->buf_cap = need;
        }
    }
    uint8_t *p = self->buf + self->buf_len;
    memcpy(p + S_REC_HDR, head, head_len);
    if (tail_len)
        memcpy(p + S_REC_HDR + head_len, tail, tail_len);
    kz_le_put32(p, S_REC_MAGIC);
    kz_le_put32(p + 4, (uint32_t)n);
    kz_le_put32(p + 8, kz_spool_crc32c(p + S_REC_HDR, n));
    self->buf_len += need;
    self->bytes += need;
    self->segs[self->nsegs - 1].bytes += need;
    self->dirty = true;
    return 0;
}

int kz_dlog_append(kz_dlog_t *self, const char *group, const void *topic, size_t topic_len,
                   const void *body, size_t body_len, uint64_t *lsn, char *errbuf, size_t errlen)
{
    size_t glen = strlen(group);
    if (glen > 255 || topic_len > 255 || topic_len == 0)
        return s_err(errbuf, errlen, "invalid group or topic");
    size_t n = 1 + 8 + 1 + glen + 1 + topic_len + body_len;
    if (n > S_MAX_RECORD)
        return s_err(errbuf, errlen, "event too large for the durable log (%zu bytes)", n);
    if (self->max_bytes && self->bytes + S_REC_HDR + n > self->max_bytes) {
        self->st.full++;
        return s_err(errbuf, errlen,
                     "log full: %" PRIu64 " bytes in %s, broker.log_max is %" PRIu64 " (%" PRIu64
                     " events not acknowledged)",
                     self->bytes, self->dir, self->max_bytes, self->st.unacked);
    }
    if (self->segs[self->nsegs - 1].bytes + S_REC_HDR + n > self->segment_bytes &&
        self->segs[self->nsegs - 1].bytes > S_SEG_HDR &&
        s_seg_start(self, self->segs[self->nsegs - 1].index + 1, errbuf, errlen) != 0)
        return -1;
    uint8_t head[1 + 8 + 1 + 255 + 1 + 255];
    size_t h = 0;
    head[h++] = S_EVENT;
    kz_le_put64(head + h, self->next_lsn);
    h += 8;
    head[h++] = (uint8_t)glen;
    memcpy(head + h, group, glen);
    h += glen;
    head[h++] = (uint8_t)topic_len;
    memcpy(head + h, topic, topic_len);
    h += topic_len;
    if (s_record(self, head, h, body, body_len, errbuf, errlen) != 0)
        return -1;
    s_seg_t *cur = &self->segs[self->nsegs - 1];
    cur->last_lsn = self->next_lsn;
    cur->unacked++;
    self->st.unacked++;
    self->st.appended++;
    *lsn = self->next_lsn++;
    return 0;
}

/* The segment holding event LSN, or NULL */
static s_seg_t *s_seg_of(kz_dlog_t *self, uint64_t lsn)
{
    size_t lo = 0, hi = self->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->segs[mid].last_lsn < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < self->nsegs ? &self->segs[lo] : NULL;
}

int kz_dlog_ack(kz_dlog_t *self, uint64_t lsn, char *errbuf, size_t errlen)
{
    s_seg_t *seg = s_seg_of(self, lsn);
    if (!seg || seg->unacked == 0)
        return 0;
    uint8_t head[9];
    head[0] = S_ACK;
    kz_le_put64(head + 1, lsn);
    if (s_record(self, head, sizeof head, NULL, 0, errbuf, errlen) != 0)
        return -1;
    seg->unacked--; /* s_record never moves or reallocates segments */
    self->st.unacked--;
    self->st.acked++;
    if (seg == &self->segs[0] && seg->unacked == 0)
        s_trim(self);
    return 0;
}

/* The log's thread: writes the queued buffers in order, then, when a
   newer ticket is requested and nothing is queued, fdatasyncs */
static void *s_sync_main(void *arg)
{
    kz_dlog_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->stop && self->qn == 0 && self->requested == self->done)
            pthread_cond_wait(&self->cv, &self->mu);
        if (self->qn == 0 && self->requested == self->done && self->stop)
            break;
        self->busy = true;
        int fd = self->fd;
        if (self->qn > 0) {
            struct s_chunk c = self->q[0];
            memmove(self->q, self->q + 1, (self->qn - 1) * sizeof(*self->q));
            self->qn--;
            pthread_mutex_unlock(&self->mu);
            int rc = s_write_all(fd, c.data, c.len);
            int e = errno;
            free(c.data);
            pthread_mutex_lock(&self->mu);
            if (rc != 0)
                self->sync_errno = e;
            self->q_bytes -= c.len;
            self->busy = false;
            pthread_cond_broadcast(&self->idle_cv);
            continue;
        }
        uint64_t target = self->requested;
        pthread_mutex_unlock(&self->mu);
        int rc = fdatasync(fd);
        int e = errno;
        pthread_mutex_lock(&self->mu);
        if (rc != 0)
            self->sync_errno = e;
        self->done = target;
        self->st.syncs++;
        self->busy = false;
        pthread_cond_broadcast(&self->idle_cv);
        uint64_t one = 1;
        if (write(self->efd, &one, sizeof one) < 0) {
            /* the counter cannot overflow in practice */
        }
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

static void s_wait_idle(kz_dlog_t *self)
{
    if (!self->thread_on)
        return;
    pthread_mutex_lock(&self->mu);
    while (self->done != self->requested || self->qn > 0 || self->busy)
        pthread_cond_wait(&self->idle_cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

int kz_dlog_sync_start(kz_dlog_t *self, uint64_t *ticket, char *errbuf, size_t errlen)
{
    if (!self->dirty) {
        /* everything appended is covered by a sync already started */
        *ticket = self->ticket;
        return 0;
    }
    if (s_drain(self, errbuf, errlen) != 0)
        return -1;
    self->dirty = false;
    pthread_mutex_lock(&self->mu);
    self->requested = ++self->ticket;
    *ticket = self->ticket;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    return 0;
}

int kz_dlog_synced(kz_dlog_t *self, uint64_t *done)
{
    uint64_t n;
    while (read(self->efd, &n, sizeof n) > 0)
        ;
    pthread_mutex_lock(&self->mu);
    *done = self->done;
    int e = self->sync_errno;
    self->sync_errno = 0;
    pthread_mutex_unlock(&self->mu);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

int kz_dlog_sync_fd(const kz_dlog_t *self)
{
    return self->efd;
}

int kz_dlog_sync(kz_dlog_t *self, char *errbuf, size_t errlen)
{
    if (self->thread_on) {
        uint64_t ticket = 0, done = 0;
        if (kz_dlog_sync_start(self, &ticket, errbuf, errlen) != 0)
            return -1;
        pthread_mutex_lock(&self->mu);
        while (self->done < ticket)
            pthread_cond_wait(&self->idle_cv, &self->mu);
        pthread_mutex_unlock(&self->mu);
        if (kz_dlog_synced(self, &done) != 0)
            return s_err(errbuf, errlen, "unable to sync the durable log in %s: %s", self->dir,
                         strerror(errno));
        return 0;
    }
    if (!self->dirty)
        return 0;
    if (s_drain(self, errbuf, errlen) != 0)
        return -1;
    if (fdatasync(self->fd) != 0)
        return s_err(errbuf, errlen, "unable to sync the durable log in %s: %s", self->dir,
                     strerror(errno));
    self->dirty = false;
    self->st.syncs++;
    return 0;
}

bool kz_dlog_dirty(const kz_dlog_t *self)
{
    return self->dirty;
}

void kz_dlog_stats(const kz_dlog_t *self, kz_dlog_stats_t *stats)
{
    *stats = self->st;
    stats->bytes = self->bytes;
    stats->segments = self->nsegs;
}

/* ---------------------------------------------------------------- open */

/* An event read back, until replayed */
typedef struct {
    uint64_t lsn;
    size_t seg; /* index into segs */
    uint8_t *payload;
    size_t len;
    bool acked;
} s_rec_t;

typedef struct {
    s_rec_t *recs;
    size_t n, cap;
} s_recs_t;

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Is there a whole, checksummed record at OFF of DATA (SIZE bytes)? Its
   payload length in *LEN */
static bool s_record_at(const uint8_t *data, size_t size, size_t off, uint32_t *len)
{
    if (size - off < S_REC_HDR || kz_le_get32(data + off) != S_REC_MAGIC)
        return false;
    uint32_t n = kz_le_get32(data + off + 4);
    if (n < 9 || n > S_MAX_RECORD || n > size - off - S_REC_HDR)
        return false;
    if (kz_spool_crc32c(data + off + S_REC_HDR, n) != kz_le_get32(data + off + 8))
        return false;
    *len = n;
    return true;
}

static s_rec_t *s_find(s_recs_t *r, uint64_t lsn)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->recs[mid].lsn == lsn)
            return &r->recs[mid];
        if (r->recs[mid].lsn < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Read one segment file into R (events) and mark its ACKs */
static int s_read_seg(kz_dlog_t *self, size_t si, s_recs_t *r, char *errbuf, size_t errlen)
{
    char path[4096];
    s_seg_path(self, self->segs[si].index, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return s_err(errbuf, errlen, "unable to open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return s_err(errbuf, errlen, "unable to read %s: %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (!data) {
        close(fd);
        return s_err(errbuf, errlen, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, data + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    size = got;
    self->segs[si].bytes = size;
    self->bytes += size;
    size_t off = S_SEG_HDR;
    if (size < S_SEG_HDR || memcmp(data, S_SEG_MAGIC, S_SEG_HDR) != 0) {
        self->st.corrupt++;
        off = size; /* not a segment of ours: nothing in it is trusted */
    }
    bool in_bad = false;
    while (off < size) {
        uint32_t n = 0;
        if (!s_record_at(data, size, off, &n)) {
            if (!in_bad)
                self->st.corrupt++;
            in_bad = true;
            off++;
            continue;
        }
        in_bad = false;
        const uint8_t *p = data + off + S_REC_HDR;
        uint64_t lsn = kz_le_get64(p + 1);
        if (p[0] == S_EVENT && n >= 11 && p[9] <= n - 10 && p[10 + p[9]] > 0 &&
            (size_t)10 + p[9] + 1 + p[10 + p[9]] <= n) {
            if (r->n == r->cap) {
                size_t cap = r->cap ? 2 * r->cap : 256;
                s_rec_t *recs = realloc(r->recs, cap * sizeof(*recs));
                if (!recs) {
                    free(data);
                    return s_err(errbuf, errlen, "out of memory reading %s", path);
                }
                r->recs = recs;
                r->cap = cap;
            }
            uint8_t *copy = malloc(n);
            if (!copy) {
                free(data);
                return s_err(errbuf, errlen, "out of memory reading %s", path);
            }
            memcpy(copy, p, n);
            /* LSNs only grow; an out-of-order one (damage) is kept apart */
            if (r->n == 0 || r->recs[r->n - 1].lsn < lsn) {
                r->recs[r->n++] = (s_rec_t){lsn, si, copy, n, false};
                if (lsn > self->segs[si].last_lsn)
                    self->segs[si].last_lsn = lsn;
            } else {
                free(copy);
                self->st.corrupt++;
            }
            if (lsn >= self->next_lsn)
                self->next_lsn = lsn + 1;
        } else if (p[0] == S_ACK && n == 9) {
            s_rec_t *rec = s_find(r, lsn);
            if (rec)
                rec->acked = true;
        } else
            self->st.corrupt++;
        off += S_REC_HDR + n;
    }
    free(data);
    return 0;
}

kz_dlog_t *kz_dlog_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                        kz_dlog_replay_fn *fn, void *arg, char *errbuf, size_t errlen)
{
    if (kz_mkdirs(dir, 0700, errbuf, errlen) != 0)
        return NULL;
    kz_dlog_t *self = calloc(1, sizeof(*self));
    if (!self || !(self->dir = strdup(dir)) || !(self->buf = malloc(S_BUF_MAX))) {
        if (self)
            free(self->dir);
        free(self);
        s_err(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->buf_cap = S_BUF_MAX;
    self->fd = -1;
    self->efd = -1;
    self->max_bytes = max_bytes;
    self->segment_bytes = segment_bytes ? segment_bytes : S_SEG_DEFAULT;
    self->next_lsn = 1;

    /* the segments, in index order */
    uint64_t *idx = NULL;
    size_t nidx = 0, capidx = 0;
    DIR *d = opendir(dir);
    if (!d) {
        s_err(errbuf, errlen, "unable to read %s: %s", dir, strerror(errno));
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end = NULL;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".log") != 0)
            continue;
        uint64_t v = strtoull(e->d_name, &end, 16);
        if (end != e->d_name + 16)
            continue;
        if (nidx == capidx) {
            capidx = capidx ? 2 * capidx : 16;
            uint64_t *ni = realloc(idx, capidx * sizeof(*idx));
            if (!ni) {
                closedir(d);
                s_err(errbuf, errlen, "out of memory");
                goto fail;
            }
            idx = ni;
        }
        idx[nidx++] = v;
    }
    closedir(d);
    if (nidx)
        qsort(idx, nidx, sizeof(*idx), s_cmp_u64);

    s_recs_t r = {NULL, 0, 0};
    int rc = 0;
    for (size_t i = 0; i < nidx && rc == 0; i++) {
        if (s_seg_push(self, idx[i], 0) != 0)
            rc = s_err(errbuf, errlen, "out of memory");
        else
            rc = s_read_seg(self, self->nsegs - 1, &r, errbuf, errlen);
    }
    uint64_t next_index = nidx ? idx[nidx - 1] + 1 : 1;
    free(idx);
    /* a segment with no event gets the LSN bound of its predecessor, so
       the binary search of s_seg_of stays ordered */
    for (size_t i = 1; i < self->nsegs; i++)
        if (self->segs[i].last_lsn < self->segs[i - 1].last_lsn)
            self->segs[i].last_lsn = self->segs[i - 1].last_lsn;
    for (size_t i = 0; i < r.n; i++)
        if (!r.recs[i].acked) {
            self->segs[r.recs[i].seg].unacked++;
            self->st.unacked++;
        }
    for (size_t i = 0; i < r.n && rc == 0; i++) {
        s_rec_t *rec = &r.recs[i];
        if (rec->acked || !fn)
            continue;
        const uint8_t *p = rec->payload;
        char group[256], topic[256];
        size_t glen = p[9];
        memcpy(group, p + 10, glen);
        group[glen] = '\0';
        size_t tlen = p[10 + glen];
        memcpy(topic, p + 11 + glen, tlen);
        topic[tlen] = '\0';
        size_t off = 11 + glen + tlen;
        kz_dlog_event_t ev = {rec->lsn, group, topic, p + off, rec->len - off};
        self->st.replayed++;
        if (fn(arg, &ev) != 0)
            rc = s_err(errbuf, errlen, "replay of the durable log in %s stopped", dir);
    }
    for (size_t i = 0; i < r.n; i++)
        free(r.recs[i].payload);
    free(r.recs);
    if (rc != 0)
        goto fail;
    if (s_seg_start(self, next_index, errbuf, errlen) != 0)
        goto fail;
    if ((self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        s_err(errbuf, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    pthread_cond_init(&self->idle_cv, NULL);
    if (pthread_create(&self->thread, NULL, s_sync_main, self) != 0) {
        s_err(errbuf, errlen, "unable to start the durable log's sync thread");
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->cv);
        pthread_cond_destroy(&self->idle_cv);
        goto fail;
    }
    self->thread_on = true;
    if (self->nsegs > 1)
        self->segs[self->nsegs - 1].last_lsn = self->segs[self->nsegs - 2].last_lsn;
    s_trim(self);
    return self;
fail:
    kz_dlog_close(&self);
    return NULL;
}

void kz_dlog_close(kz_dlog_t **self_p)
{
    kz_dlog_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0) {
        char err[256];
        kz_dlog_sync(self, err, sizeof err);
    }
    if (self->thread_on) {
        pthread_mutex_lock(&self->mu);
        self->stop = true;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->thread, NULL);
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->cv);
        pthread_cond_destroy(&self->idle_cv);
    }
    for (size_t i = 0; i < self->qn; i++)
        free(self->q[i].data);
    free(self->q);
    if (self->fd >= 0)
        close(self->fd);
    if (self->efd >= 0)
        close(self->efd);
    free(self->segs);
    free(self->buf);
    free(self->dir);
    free(self);
    *self_p = NULL;
}
