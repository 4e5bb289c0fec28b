/*  kz_spool.h - the recorder's append-only spool file

    While the database is unreachable the recorder appends every message
    here and acknowledges it to the broker only after the append is
    fsynced; when the database is back it replays the records in order.

    File format (little-endian), after an 8-byte file header "KZSPOOL1":
      record = u32 magic 0x4B5A5352 ("KZSR") | u32 length N | u32 CRC-32C
               of the payload | N bytes payload (one encoded envelope)
    A record whose magic, length (0 < N <= max record size) or checksum
    is wrong is corrupt: the reader skips it by scanning forward for the
    next magic whose record checks out, counts it, and goes on - a bad
    record never blocks the ones after it. A record cut short at the end
    of the file (a crash mid-append) is dropped at open, the file
    truncated to the last whole record.

    The replay position is kept in PATH.pos (u64 offset + CRC, written to
    a temp file, fsynced and renamed) after each replayed batch commits,
    so a restart resumes where it stopped; a record replayed twice is
    harmless (the database keys messages by id). When everything is
    replayed the file and its .pos are removed.
*/
#ifndef KZ_SPOOL_H_INCLUDED
#define KZ_SPOOL_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct kz_spool kz_spool_t;

typedef struct {
    uint64_t bytes;   /* file size */
    uint64_t pending; /* records appended and not yet replayed (known after open: counted) */
    uint64_t appended, replayed; /* since open */
    uint64_t corrupt;            /* corrupt records skipped since open */
    uint64_t read_pos;
} kz_spool_stats_t;

/* Open or create the spool at PATH with a size cap of MAX_BYTES. An
   existing file is checked and its pending records counted. NULL with
   ERRBUF */
kz_spool_t *kz_spool_open(const char *path, uint64_t max_bytes, char *errbuf, size_t errlen);
void kz_spool_close(kz_spool_t **self_p);

/* Append COUNT payloads (write, then one fdatasync). All or nothing: on
   failure (ENOSPC, the cap) the file is truncated back and -1 returned
   with ERRBUF ("spool full: ...", "no space left on device: ..."). */
int kz_spool_append(kz_spool_t *self, const void *const *data, const size_t *lens, size_t count,
                    char *errbuf, size_t errlen);

/* How many of the COUNT payloads of LENS, from the first, an append would
   take now without passing the cap (all of them when there is no cap) -
   a batch larger than the room goes in in pieces that fit */
size_t kz_spool_fits(const kz_spool_t *self, const size_t *lens, size_t count);

/* True when records wait for replay */
int kz_spool_pending(const kz_spool_t *self);

/* Read up to MAX records from the replay position into the callback
   (payload valid during the call). Corrupt records are skipped and
   counted. Returns the number read (0 at the end), -1 on a read error.
   The position does not move until kz_spool_commit. */
typedef int(kz_spool_record_fn)(void *arg, const void *data, size_t len);
int kz_spool_read(kz_spool_t *self, size_t max, kz_spool_record_fn *fn, void *arg);
/* The records of the last kz_spool_read are stored: persist the new
   position; when nothing is pending any more, empty the spool. 0 / -1 */
int kz_spool_commit(kz_spool_t *self);
/* Forget the last kz_spool_read (its batch failed): the next read starts
   at the committed position again */
void kz_spool_rewind(kz_spool_t *self);

/* CRC-32C (Castagnoli) of DATA, as in the spool's records (kz_dlog too) */
uint32_t kz_spool_crc32c(const void *data, size_t len);

void kz_spool_stats(const kz_spool_t *self, kz_spool_stats_t *stats);
const char *kz_spool_path(const kz_spool_t *self);

/* Little-endian fields of the spool's and the durable log's records */
static inline void kz_le_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t kz_le_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void kz_le_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t kz_le_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#endif
