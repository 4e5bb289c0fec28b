/*  kz_spool.c - the recorder's append-only spool file (kz_spool.h)

    The file exists only while records wait: kz_spool_open of a missing
    file creates nothing, the first kz_spool_append creates it (header
    "KZSPOOL1", fsynced with its directory), and the kz_spool_commit that
    replays the last record removes it and its .pos again. So "no file"
    always means "nothing spooled".

    Durability: an append writes every record of the call with one
    pwritev at the end of the file and makes it durable with one
    fdatasync; only then does it return 0 (the recorder acknowledges the
    messages after that). Any failure truncates the file back to where
    the call started, so a batch is either wholly in the spool or not at
    all. The replay position lives in PATH.pos (u64 offset, u32 CRC-32C
    of those 8 bytes, little-endian), replaced atomically by rename; a
    missing or damaged .pos only means replaying from the start again,
    which the database's id key makes harmless.

    Damage: a record whose header or checksum is wrong is skipped by
    scanning forward for the next offset that holds a whole, checksummed
    record (resync); each skipped stretch counts as one corrupt record. A
    bad stretch with no good record after it is a torn tail (a crash in
    the middle of an append): kz_spool_open truncates it away.
*/
#include "kz_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kz_log.h"
#include "kz_state.h"

#define S_FILE_MAGIC  "KZSPOOL1"
#define S_FILE_HDR    8
#define S_REC_MAGIC   0x4B5A5352u /* "KZSR" */
#define S_REC_HDR     12
#define S_MAX_RECORD  (16u * 1024 * 1024) /* far above any message (max_size 1 MiB) */
#define S_SCAN_CHUNK  (256u * 1024)
#define S_IOV_RECORDS 256 /* records per pwritev (2 iovecs each, under IOV_MAX) */
#define S_POS_LEN     12

struct kz_spool {
    char *path;
    char *pos_path;
    char *dir;
    int fd;               /* -1 while the file does not exist */
    uint64_t max_bytes;   /* 0: no cap */
    uint64_t size;        /* end of the last whole record */
    uint64_t pos;         /* committed replay position */
    uint64_t cursor;      /* where the next kz_spool_read starts */
    uint64_t pending;     /* whole records in [pos, size) */
    uint64_t uncommitted; /* records handed out since pos */
    uint64_t appended, replayed, corrupt;
    uint64_t corrupt_uncommitted; /* corrupt stretches met since pos */
    uint8_t *buf;                 /* one record's payload (reads) */
    size_t buf_cap;
};

/* ------------------------------------------------------------ CRC-32C */

/* Castagnoli polynomial, reflected; slicing by 8 */
static uint32_t s_crc_table[8][256];
static int s_crc_ready;

static void s_crc_init(void)
{
    if (s_crc_ready)
        return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        s_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            s_crc_table[t][i] =
                (s_crc_table[t - 1][i] >> 8) ^ s_crc_table[0][s_crc_table[t - 1][i] & 0xff];
    s_crc_ready = 1;
}

static uint32_t s_crc32c(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = s_crc_table[7][lo & 0xff] ^ s_crc_table[6][(lo >> 8) & 0xff] ^
              s_crc_table[5][(lo >> 16) & 0xff] ^ s_crc_table[4][lo >> 24] ^ s_crc_table[3][p[4]] ^
              s_crc_table[2][p[5]] ^ s_crc_table[1][p[6]] ^ s_crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ s_crc_table[0][(crc ^ *p++) & 0xff];
    return crc ^ 0xFFFFFFFFu;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
/* The same CRC with SSE 4.2's crc32 instruction (about ten times faster:
   the broker's durable log checksums every event) */
__attribute__((target("sse4.2"))) static uint32_t s_crc32c_hw(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t crc = 0xFFFFFFFFu;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        crc = _mm_crc32_u64(crc, v);
        p += 8;
        len -= 8;
    }
    uint32_t c = (uint32_t)crc;
    while (len--)
        c = _mm_crc32_u8(c, *p++);
    return c ^ 0xFFFFFFFFu;
}
#endif

uint32_t kz_spool_crc32c(const void *data, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static int hw = -1;
    if (hw < 0)
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (hw)
        return s_crc32c_hw(data, len);
#endif
    s_crc_init();
    return s_crc32c(data, len);
}

/* ------------------------------------------------------------ helpers */

/* pread exactly LEN bytes at OFF. 0, or -1 (errno; EIO-like 0 for a short file) */
static int s_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENODATA;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
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

static int s_buf_reserve(kz_spool_t *self, size_t len)
{
    if (len <= self->buf_cap)
        return 0;
    size_t cap = self->buf_cap ? self->buf_cap : 64 * 1024;
    while (cap < len)
        cap *= 2;
    uint8_t *buf = realloc(self->buf, cap);
    if (!buf)
        return -1;
    self->buf = buf;
    self->buf_cap = cap;
    return 0;
}

/* Is there a whole, checksummed record at OFF? 1 yes (*LEN_P = payload
   length, payload in self->buf), 0 no, -1 on a read or memory error */
static int s_record_at(kz_spool_t *self, uint64_t off, uint32_t *len_p)
{
    if (off + S_REC_HDR > self->size)
        return 0;
    uint8_t hdr[S_REC_HDR];
    if (s_pread_all(self->fd, hdr, sizeof hdr, off) != 0)
        return -1;
    uint32_t len = kz_le_get32(hdr + 4);
    if (kz_le_get32(hdr) != S_REC_MAGIC || len == 0 || len > S_MAX_RECORD ||
        off + S_REC_HDR + len > self->size)
        return 0;
    if (s_buf_reserve(self, len) != 0)
        return -1;
    if (s_pread_all(self->fd, self->buf, len, off + S_REC_HDR) != 0)
        return -1;
    if (s_crc32c(self->buf, len) != kz_le_get32(hdr + 8))
        return 0;
    *len_p = len;
    return 1;
}

/* The offset of the next whole record after the bad spot FROM, or
   self->size when there is none. -1 on a read error */
static int64_t s_resync(kz_spool_t *self, uint64_t from)
{
    static const uint8_t magic[4] = {0x52, 0x53, 0x5A, 0x4B}; /* S_REC_MAGIC, little-endian */
    uint8_t *chunk = malloc(S_SCAN_CHUNK);
    if (!chunk)
        return -1;
    uint64_t off = from + 1;
    while (off + S_REC_HDR <= self->size) {
        size_t want =
            self->size - off < S_SCAN_CHUNK ? (size_t)(self->size - off) : (size_t)S_SCAN_CHUNK;
        if (s_pread_all(self->fd, chunk, want, off) != 0) {
            free(chunk);
            return -1;
        }
        size_t i = 0;
        while (i + sizeof magic <= want) {
            const uint8_t *hit = memmem(chunk + i, want - i, magic, sizeof magic);
            if (!hit)
                break;
            uint64_t cand = off + (uint64_t)(hit - chunk);
            uint32_t len;
            int rc = s_record_at(self, cand, &len);
            if (rc != 0) {
                free(chunk);
                return rc < 0 ? -1 : (int64_t)cand;
            }
            i = (size_t)(hit - chunk) + 1;
        }
        /* the magic may straddle the chunk end: look again from 3 bytes back */
        off += want > sizeof magic ? want - (sizeof magic - 1) : 1;
    }
    free(chunk);
    return (int64_t)self->size;
}

/* ---------------------------------------------------------- .pos file */

static int s_pos_read(kz_spool_t *self, uint64_t *pos)
{
    int fd = open(self->pos_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t raw[S_POS_LEN];
    ssize_t n = read(fd, raw, sizeof raw);
    close(fd);
    if (n != (ssize_t)sizeof raw || s_crc32c(raw, 8) != kz_le_get32(raw + 8))
        return -1;
    *pos = kz_le_get64(raw);
    return 0;
}

static int s_pos_write(kz_spool_t *self, char *errbuf, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", self->pos_path) >= (int)sizeof tmp) {
        snprintf(errbuf, errlen, "spool path too long: %s", self->path);
        return -1;
    }
    uint8_t raw[S_POS_LEN];
    kz_le_put64(raw, self->pos);
    kz_le_put32(raw + 8, s_crc32c(raw, 8));
    int fd = kz_file_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        snprintf(errbuf, errlen, "unable to write '%s': %s", tmp, strerror(errno));
        return -1;
    }
    int rc = write(fd, raw, sizeof raw) == (ssize_t)sizeof raw && fdatasync(fd) == 0 ? 0 : -1;
    int err = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc == 0 && rename(tmp, self->pos_path) != 0) {
        rc = -1;
        err = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        snprintf(errbuf, errlen, "unable to write '%s': %s", self->pos_path, strerror(err));
    }
    return rc;
}

/* ---------------------------------------------------------- open/close */

/* Check an existing file: header, replay position, pending records, torn
   tail. 0 / -1 with ERRBUF */
static int s_load(kz_spool_t *self, char *errbuf, size_t errlen)
{
    struct stat st;
    if (fstat(self->fd, &st) != 0) {
        snprintf(errbuf, errlen, "unable to stat '%s': %s", self->path, strerror(errno));
        return -1;
    }
    self->size = (uint64_t)st.st_size;
    if (self->size < S_FILE_HDR) {
        /* a crash while creating it: nothing was ever acknowledged from it */
        self->size = 0;
        return 0;
    }
    uint8_t hdr[S_FILE_HDR];
    if (s_pread_all(self->fd, hdr, sizeof hdr, 0) != 0)
        goto read_error;
    if (memcmp(hdr, S_FILE_MAGIC, S_FILE_HDR) != 0) {
        /* a damaged header does not hide the records behind it */
        kz_warn("spool '%s': bad file header, scanning for records", self->path);
        self->corrupt++;
    }
    uint64_t pos;
    if (s_pos_read(self, &pos) != 0 || pos < S_FILE_HDR || pos > self->size)
        pos = S_FILE_HDR;
    /* count whole records from pos; find where the good data ends */
    uint64_t off = pos, good_end = pos;
    while (off < self->size) {
        uint32_t len;
        int rc = s_record_at(self, off, &len);
        if (rc < 0)
            goto read_error;
        if (rc == 1) {
            self->pending++;
            off += S_REC_HDR + len;
            good_end = off;
            continue;
        }
        int64_t next = s_resync(self, off);
        if (next < 0)
            goto read_error;
        off = (uint64_t)next; /* a stretch in the middle: counted when read */
    }
    if (good_end < self->size) {
        /* a torn last append; a whole record with a bad checksum there is
           damage and counted as such */
        uint8_t rh[S_REC_HDR];
        uint64_t bad = self->size - good_end;
        if (bad >= S_REC_HDR && s_pread_all(self->fd, rh, sizeof rh, good_end) == 0 &&
            kz_le_get32(rh) == S_REC_MAGIC && S_REC_HDR + (uint64_t)kz_le_get32(rh + 4) == bad)
            self->corrupt++;
        kz_warn("spool '%s': dropping %llu bytes of an incomplete record at the end", self->path,
                (unsigned long long)bad);
        if (ftruncate(self->fd, (off_t)good_end) != 0 || fdatasync(self->fd) != 0) {
            snprintf(errbuf, errlen, "unable to truncate '%s': %s", self->path, strerror(errno));
            return -1;
        }
        self->size = good_end;
    }
    self->pos = self->cursor = pos;
    return 0;
read_error:
    snprintf(errbuf, errlen, "unable to read '%s': %s", self->path, strerror(errno));
    return -1;
}

kz_spool_t *kz_spool_open(const char *path, uint64_t max_bytes, char *errbuf, size_t errlen)
{
    s_crc_init();
    kz_spool_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->fd = -1;
    self->max_bytes = max_bytes;
    self->path = strdup(path);
    self->dir = strdup(path);
    if (self->path && asprintf(&self->pos_path, "%s.pos", path) < 0)
        self->pos_path = NULL;
    if (!self->path || !self->dir || !self->pos_path) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    char *slash = strrchr(self->dir, '/');
    if (slash == self->dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(self->dir, ".");

    self->fd = kz_file_open(path, O_RDWR, 0600);
    if (self->fd < 0) {
        if (errno != ENOENT) {
            snprintf(errbuf, errlen, "unable to open spool '%s': %s", path, strerror(errno));
            goto fail;
        }
        unlink(self->pos_path); /* a leftover of a removed spool */
        return self;
    }
    if (s_load(self, errbuf, errlen) != 0)
        goto fail;
    if (self->pending == 0) {
        /* nothing left to replay: behave as if it were not there */
        close(self->fd);
        self->fd = -1;
        unlink(path);
        unlink(self->pos_path);
        self->size = self->pos = self->cursor = 0;
    }
    return self;
fail:
    kz_spool_close(&self);
    return NULL;
}

void kz_spool_close(kz_spool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_spool_t *self = *self_p;
    if (self->fd >= 0)
        close(self->fd);
    free(self->buf);
    free(self->path);
    free(self->pos_path);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* ------------------------------------------------------------- append */

/* Create the file with its header, durably. 0 / -1 with ERRBUF */
static int s_create(kz_spool_t *self, char *errbuf, size_t errlen)
{
    self->fd = kz_file_open(self->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (self->fd < 0) {
        snprintf(errbuf, errlen, "unable to create spool '%s': %s", self->path, strerror(errno));
        return -1;
    }
    ssize_t n = pwrite(self->fd, S_FILE_MAGIC, S_FILE_HDR, 0);
    if (n != S_FILE_HDR || fdatasync(self->fd) != 0 || s_fsync_dir(self->dir) != 0) {
        int err = n < 0 || n == S_FILE_HDR ? errno : ENOSPC;
        snprintf(errbuf, errlen, "%s: unable to create spool '%s'",
                 err == ENOSPC ? "no space left on device" : strerror(err), self->path);
        close(self->fd);
        self->fd = -1;
        unlink(self->path);
        return -1;
    }
    unlink(self->pos_path);
    self->size = self->pos = self->cursor = S_FILE_HDR;
    return 0;
}

size_t kz_spool_fits(const kz_spool_t *self, const size_t *lens, size_t count)
{
    if (self->max_bytes == 0)
        return count;
    uint64_t used = self->fd >= 0 ? self->size : S_FILE_HDR;
    size_t n = 0;
    for (; n < count; n++) {
        uint64_t rec = S_REC_HDR + (uint64_t)lens[n];
        if (used + rec > self->max_bytes)
            break;
        used += rec;
    }
    return n;
}

int kz_spool_append(kz_spool_t *self, const void *const *data, const size_t *lens, size_t count,
                    char *errbuf, size_t errlen)
{
    if (count == 0)
        return 0;
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (lens[i] == 0 || lens[i] > S_MAX_RECORD) {
            snprintf(errbuf, errlen, "spool record of %zu bytes refused (1..%u)", lens[i],
                     S_MAX_RECORD);
            return -1;
        }
        total += S_REC_HDR + lens[i];
    }
    uint64_t base = self->fd >= 0 ? self->size : S_FILE_HDR;
    if (self->max_bytes > 0 && base + total > self->max_bytes) {
        snprintf(errbuf, errlen,
                 "spool full: '%s' holds %llu bytes, %llu more would pass database.spool_max "
                 "(%llu)",
                 self->path, (unsigned long long)base, (unsigned long long)total,
                 (unsigned long long)self->max_bytes);
        return -1;
    }
    if (self->fd < 0 && s_create(self, errbuf, errlen) != 0)
        return -1;
    uint8_t(*hdrs)[S_REC_HDR] = malloc((count < S_IOV_RECORDS ? count : S_IOV_RECORDS) * S_REC_HDR);
    if (!hdrs) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    struct iovec iov[2 * S_IOV_RECORDS];
    uint64_t off = self->size;
    int err = 0;
    for (size_t i = 0; i < count && !err;) {
        size_t n = 0;
        size_t bytes = 0;
        for (; n < S_IOV_RECORDS && i + n < count; n++) {
            size_t k = i + n;
            kz_le_put32(hdrs[n], S_REC_MAGIC);
            kz_le_put32(hdrs[n] + 4, (uint32_t)lens[k]);
            kz_le_put32(hdrs[n] + 8, s_crc32c(data[k], lens[k]));
            iov[2 * n].iov_base = hdrs[n];
            iov[2 * n].iov_len = S_REC_HDR;
            iov[2 * n + 1].iov_base = (void *)data[k];
            iov[2 * n + 1].iov_len = lens[k];
            bytes += S_REC_HDR + lens[k];
        }
        /* write the whole group, resuming after short writes */
        struct iovec *v = iov;
        int nv = (int)(2 * n);
        while (bytes > 0) {
            ssize_t w = pwritev(self->fd, v, nv, (off_t)off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                err = w < 0 ? errno : ENOSPC;
                break;
            }
            off += (uint64_t)w;
            bytes -= (size_t)w;
            size_t left = (size_t)w;
            while (nv > 0 && left >= v->iov_len) {
                left -= v->iov_len;
                v++;
                nv--;
            }
            if (nv > 0) {
                v->iov_base = (uint8_t *)v->iov_base + left;
                v->iov_len -= left;
            }
        }
        i += n;
    }
    free(hdrs);
    if (!err && fdatasync(self->fd) != 0)
        err = errno;
    if (err) {
        /* all or nothing: cut what this call wrote */
        if (ftruncate(self->fd, (off_t)self->size) != 0 || fdatasync(self->fd) != 0)
            kz_warn("spool '%s': unable to truncate back to %llu bytes: %s", self->path,
                    (unsigned long long)self->size, strerror(errno));
        if (err == ENOSPC || err == EDQUOT)
            snprintf(errbuf, errlen, "no space left on device: unable to append to spool '%s'",
                     self->path);
        else
            snprintf(errbuf, errlen, "unable to append to spool '%s': %s", self->path,
                     strerror(err));
        return -1;
    }
    self->size = off;
    self->pending += count;
    self->appended += count;
    return 0;
}

/* --------------------------------------------------------------- read */

int kz_spool_pending(const kz_spool_t *self)
{
    return self->pending > 0;
}

/* FN returns 0 to go on; anything else stops the read before that record
   (it is not consumed) and kz_spool_read returns -1 */
int kz_spool_read(kz_spool_t *self, size_t max, kz_spool_record_fn *fn, void *arg)
{
    if (self->fd < 0)
        return 0;
    size_t got = 0;
    while (got < max && self->cursor < self->size) {
        uint32_t len;
        int rc = s_record_at(self, self->cursor, &len);
        if (rc < 0) {
            kz_warn("spool '%s': read error: %s", self->path, strerror(errno));
            return -1;
        }
        if (rc == 0) {
            int64_t next = s_resync(self, self->cursor);
            if (next < 0) {
                kz_warn("spool '%s': read error: %s", self->path, strerror(errno));
                return -1;
            }
            kz_warn("spool '%s': skipped a corrupt record (%llu bytes at offset %llu)", self->path,
                    (unsigned long long)((uint64_t)next - self->cursor),
                    (unsigned long long)self->cursor);
            self->corrupt++;
            self->corrupt_uncommitted++;
            self->cursor = (uint64_t)next;
            continue;
        }
        if (fn(arg, self->buf, len) != 0)
            return -1;
        self->cursor += S_REC_HDR + len;
        self->uncommitted++;
        got++;
    }
    return (int)got;
}

int kz_spool_commit(kz_spool_t *self)
{
    if (self->fd < 0)
        return 0;
    self->pos = self->cursor;
    self->replayed += self->uncommitted;
    self->pending -= self->uncommitted <= self->pending ? self->uncommitted : self->pending;
    self->uncommitted = 0;
    self->corrupt_uncommitted = 0;
    if (self->pos >= self->size) {
        /* everything replayed: the spool goes away */
        close(self->fd);
        self->fd = -1;
        int rc = 0;
        if (unlink(self->path) != 0 && errno != ENOENT) {
            kz_warn("unable to remove spool '%s': %s", self->path, strerror(errno));
            rc = -1;
        }
        unlink(self->pos_path);
        s_fsync_dir(self->dir);
        self->pending = 0;
        self->size = self->pos = self->cursor = 0;
        return rc;
    }
    char err[PATH_MAX + 128];
    if (s_pos_write(self, err, sizeof err) != 0) {
        kz_warn("%s", err);
        return -1;
    }
    return 0;
}

void kz_spool_rewind(kz_spool_t *self)
{
    self->cursor = self->pos;
    self->uncommitted = 0;
    /* the stretches will be met, and counted, again */
    self->corrupt -= self->corrupt_uncommitted;
    self->corrupt_uncommitted = 0;
}

void kz_spool_stats(const kz_spool_t *self, kz_spool_stats_t *stats)
{
    stats->bytes = self->fd >= 0 ? self->size : 0;
    stats->pending = self->pending;
    stats->appended = self->appended;
    stats->replayed = self->replayed;
    stats->corrupt = self->corrupt;
    stats->read_pos = self->pos;
}

const char *kz_spool_path(const kz_spool_t *self)
{
    return self->path;
}
