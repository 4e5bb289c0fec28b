/*  kz_reqmem.h - a worker's memory of its recent requests

    A client whose connection to the broker dropped while its call was
    outstanding (a broker restart) sends the request again under a new
    id, marked with the first one (body field "retry_of", PROTOCOL.md
    1.3 "Re-asking"). The worker that already answered the first one,
    or still works on it, must not run it a second time: it remembers
    the requests it took (by id, and by the id they re-ask) and the
    encoded replies it sent, so a re-ask is answered from here.

    Bounded: at most KZ_REQMEM_ENTRIES requests and KZ_REQMEM_BYTES of
    replies; the oldest answered ones are forgotten first (a re-ask of a
    forgotten request runs it again, which the executors make
    idempotent). Pure: no bus, no I/O, no locking (one per bus).
*/
#ifndef KZ_REQMEM_H_INCLUDED
#define KZ_REQMEM_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define KZ_REQMEM_ENTRIES 64
#define KZ_REQMEM_BYTES   (16u * 1024 * 1024)
#define KZ_REQMEM_ID_MAX  64

typedef struct kz_reqmem kz_reqmem_t;

typedef enum {
    KZ_REQMEM_UNKNOWN = 0, /* never seen (or forgotten): run it */
    KZ_REQMEM_RUNNING,     /* taken, not answered yet: wait for the answer */
    KZ_REQMEM_DONE         /* answered: the reply is kept */
} kz_reqmem_state_t;

kz_reqmem_t *kz_reqmem_new(void);
void kz_reqmem_destroy(kz_reqmem_t **self_p);

/* What we know of request ID that re-asks RETRY_OF (NULL or "": not a
   re-ask): an entry matches when its id or its retry_of equals ID or
   RETRY_OF. DONE sets *REPLY / *LEN to the kept reply (valid until the
   next kz_reqmem_* call). */
kz_reqmem_state_t kz_reqmem_lookup(const kz_reqmem_t *self, const char *id, const char *retry_of,
                                   const uint8_t **reply, size_t *len);

/* Request ID (re-asking RETRY_OF, may be NULL) was handed to the
   application. 0, or -1 when an id is empty or longer than
   KZ_REQMEM_ID_MAX (not remembered). */
int kz_reqmem_start(kz_reqmem_t *self, const char *id, const char *retry_of);

/* The reply (REPLY, LEN bytes, copied) to request ID was sent: the
   entry (made by kz_reqmem_start, or made now) becomes DONE. A reply
   larger than KZ_REQMEM_BYTES / 4 is not kept (the entry is dropped).
   0 / -1 (out of memory, bad id: nothing kept) */
int kz_reqmem_done(kz_reqmem_t *self, const char *id, const uint8_t *reply, size_t len);

/* Entries and reply bytes held (tests) */
size_t kz_reqmem_count(const kz_reqmem_t *self);
size_t kz_reqmem_bytes(const kz_reqmem_t *self);

#endif
