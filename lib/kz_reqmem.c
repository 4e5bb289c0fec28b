/*  kz_reqmem.c - a worker's memory of its recent requests (kz_reqmem.h) */
#include "kz_reqmem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool used;
    kz_reqmem_state_t state;
    char id[KZ_REQMEM_ID_MAX + 1];
    char retry_of[KZ_REQMEM_ID_MAX + 1]; /* "" when not a re-ask */
    uint8_t *reply;
    size_t len;
    uint64_t seq; /* age: lower is older */
} s_entry_t;

struct kz_reqmem {
    s_entry_t e[KZ_REQMEM_ENTRIES];
    size_t bytes;
    uint64_t seq;
};

kz_reqmem_t *kz_reqmem_new(void)
{
    return calloc(1, sizeof(kz_reqmem_t));
}

static void s_forget(kz_reqmem_t *self, s_entry_t *e)
{
    self->bytes -= e->len;
    free(e->reply);
    memset(e, 0, sizeof *e);
}

void kz_reqmem_destroy(kz_reqmem_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (size_t i = 0; i < KZ_REQMEM_ENTRIES; i++)
        free((*self_p)->e[i].reply);
    free(*self_p);
    *self_p = NULL;
}

static bool s_id_ok(const char *id)
{
    return id && *id && strlen(id) <= KZ_REQMEM_ID_MAX;
}

static bool s_match(const s_entry_t *e, const char *key)
{
    return s_id_ok(key) &&
           (strcmp(e->id, key) == 0 || (e->retry_of[0] && strcmp(e->retry_of, key) == 0));
}

static s_entry_t *s_find(const kz_reqmem_t *self, const char *id, const char *retry_of)
{
    /* the newest match: a DONE entry wins over a RUNNING one of the
       same request (a re-ask answered while its original runs) */
    const s_entry_t *best = NULL;
    for (size_t i = 0; i < KZ_REQMEM_ENTRIES; i++) {
        const s_entry_t *e = &self->e[i];
        if (!e->used || !(s_match(e, id) || s_match(e, retry_of)))
            continue;
        if (!best || (e->state == KZ_REQMEM_DONE && best->state != KZ_REQMEM_DONE) ||
            (e->state == best->state && e->seq > best->seq))
            best = e;
    }
    return (s_entry_t *)(uintptr_t)best;
}

kz_reqmem_state_t kz_reqmem_lookup(const kz_reqmem_t *self, const char *id, const char *retry_of,
                                   const uint8_t **reply, size_t *len)
{
    const s_entry_t *e = s_find(self, id, retry_of);
    if (!e)
        return KZ_REQMEM_UNKNOWN;
    if (e->state == KZ_REQMEM_DONE) {
        if (reply)
            *reply = e->reply;
        if (len)
            *len = e->len;
    }
    return e->state;
}

/* A free entry, or the oldest one made free: answered ones go first, a
   running one only when every entry runs */
static s_entry_t *s_slot(kz_reqmem_t *self)
{
    s_entry_t *old = NULL;
    for (size_t i = 0; i < KZ_REQMEM_ENTRIES; i++) {
        s_entry_t *e = &self->e[i];
        if (!e->used)
            return e;
        if (!old || (e->state == KZ_REQMEM_DONE && old->state != KZ_REQMEM_DONE) ||
            (e->state == old->state && e->seq < old->seq))
            old = e;
    }
    s_forget(self, old);
    return old;
}

int kz_reqmem_start(kz_reqmem_t *self, const char *id, const char *retry_of)
{
    if (!s_id_ok(id) || (retry_of && *retry_of && !s_id_ok(retry_of)))
        return -1;
    s_entry_t *e = s_slot(self);
    e->used = true;
    e->state = KZ_REQMEM_RUNNING;
    memcpy(e->id, id, strlen(id) + 1);
    if (retry_of && *retry_of)
        memcpy(e->retry_of, retry_of, strlen(retry_of) + 1);
    e->seq = ++self->seq;
    return 0;
}

int kz_reqmem_done(kz_reqmem_t *self, const char *id, const uint8_t *reply, size_t len)
{
    if (!s_id_ok(id))
        return -1;
    s_entry_t *e = NULL;
    for (size_t i = 0; i < KZ_REQMEM_ENTRIES && !e; i++)
        if (self->e[i].used && strcmp(self->e[i].id, id) == 0)
            e = &self->e[i];
    if (len > KZ_REQMEM_BYTES / 4) {
        if (e)
            s_forget(self, e);
        return -1;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        if (e)
            s_forget(self, e);
        return -1;
    }
    memcpy(copy, reply, len);
    if (!e) {
        e = s_slot(self);
        e->used = true;
        memcpy(e->id, id, strlen(id) + 1);
    } else {
        self->bytes -= e->len;
        free(e->reply);
    }
    e->state = KZ_REQMEM_DONE;
    e->reply = copy;
    e->len = len;
    e->seq = ++self->seq;
    self->bytes += len;
    /* over the byte budget: forget the oldest answered ones, never this */
    while (self->bytes > KZ_REQMEM_BYTES) {
        s_entry_t *old = NULL;
        for (size_t i = 0; i < KZ_REQMEM_ENTRIES; i++) {
            s_entry_t *c = &self->e[i];
            if (c->used && c != e && c->state == KZ_REQMEM_DONE && (!old || c->seq < old->seq))
                old = c;
        }
        if (!old)
            break;
        s_forget(self, old);
    }
    return 0;
}

size_t kz_reqmem_count(const kz_reqmem_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < KZ_REQMEM_ENTRIES; i++)
        n += self->e[i].used;
    return n;
}

size_t kz_reqmem_bytes(const kz_reqmem_t *self)
{
    return self->bytes;
}
