/*  kz_msg.c - the kaizen message envelope, its schemas and its msgpack codec

    Encoding uses msgpack-c's packer. Decoding does NOT use msgpack-c's
    unpacker: that one trusts length headers (an array32 header makes it
    allocate 4G entries), so this file carries its own bounds-checked
    reader. Every read is checked against the end of the buffer, and every
    size taken from the input is checked against kz_msg_limits_t (and
    against the bytes actually left) before anything is allocated.

    All values of one message live in the message's arena: a chain of
    chunks with a bump pointer; the first chunk is inline in kz_msg_t, so a
    typical message costs one malloc. Nothing in the arena is freed on its
    own; it all goes with kz_msg_destroy.

    The body schemas (one static table per message type) are the C form of
    proto/PROTOCOL.md; keep the two in step. They are checked when decoding
    and again when encoding, so we never emit what a peer would refuse.
*/
#include "kz_msg.h"

#include <msgpack.h>

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Arena                                                               */

#define KZ_ARENA_INLINE 832  /* bytes of the first chunk, inside kz_msg_t */
#define KZ_ARENA_CHUNK  8192 /* minimum size of a further chunk */
#define KZ_DEPTH_HARD   128  /* recursion cap, whatever max_depth says */
#define KZ_PATH_MAX     24   /* path segments remembered for error texts */

typedef struct s_chunk {
    struct s_chunk *next;
    size_t size;
    max_align_t data[];
} s_chunk_t;

/* The envelope's strings, by index; each kept with its length */
enum { S_ID, S_TYPE, S_SRC, S_CORR, S_TARGET, S_NSTR };

typedef struct s_schema s_schema_t;

struct kz_msg {
    int version;
    int64_t ts;
    int64_t deadline; /* 0 = none */
    struct {
        const char *ptr; /* NULL when unset */
        uint32_t len;
    } str[S_NSTR];
    const s_schema_t *schema; /* of the type, NULL when unknown */
    kz_val_t body;
    /* arena */
    char *cur;         /* next free byte of the current chunk */
    char *end;         /* end of the current chunk */
    s_chunk_t *chunks; /* further chunks, newest first */
    size_t next_chunk; /* size of the next chunk to allocate */
    max_align_t inline_buf[KZ_ARENA_INLINE / sizeof(max_align_t)];
};

/* one malloc per typical message, small enough for glibc's per-thread
   cache (chunks up to 1032 bytes) */
_Static_assert(sizeof(kz_msg_t) <= 1024, "kz_msg_t outgrew the malloc fast path");

/* Allocate SIZE bytes aligned to ALIGN (a power of two) from SELF's arena.
   NULL when out of memory. */
static __attribute__((noinline)) void *s_alloc_chunk(kz_msg_t *self, size_t size, size_t align)
{
    uintptr_t p;
    size_t want = size + align;
    size_t csize = self->next_chunk;
    if (csize < want)
        csize = want;
    if (csize > SIZE_MAX - sizeof(s_chunk_t))
        return NULL;
    s_chunk_t *chunk = malloc(sizeof(s_chunk_t) + csize);
    if (!chunk)
        return NULL;
    chunk->next = self->chunks;
    chunk->size = csize;
    self->chunks = chunk;
    if (self->next_chunk < (1u << 20))
        self->next_chunk *= 2;
    self->cur = (char *)chunk->data;
    self->end = self->cur + csize;
    p = ((uintptr_t)self->cur + (align - 1)) & ~(uintptr_t)(align - 1);
    self->cur = (char *)(p + size);
    return (void *)p;
}

static inline void *s_alloc(kz_msg_t *self, size_t size, size_t align)
{
    uintptr_t p = ((uintptr_t)self->cur + (align - 1)) & ~(uintptr_t)(align - 1);
    if (p <= (uintptr_t)self->end && size <= (uintptr_t)self->end - p) {
        self->cur = (char *)(p + size);
        return (void *)p;
    }
    return s_alloc_chunk(self, size, align);
}

static inline char *s_strdup(kz_msg_t *self, const char *str, size_t len)
{
    char *copy = s_alloc(self, len + 1, 1);
    if (!copy)
        return NULL;
    if (len)
        memcpy(copy, str, len);
    copy[len] = '\0';
    return copy;
}

static kz_msg_t *s_msg_alloc(void)
{
    kz_msg_t *self = malloc(sizeof(kz_msg_t));
    if (!self)
        return NULL;
    memset(self, 0, offsetof(kz_msg_t, inline_buf));
    self->cur = (char *)self->inline_buf;
    self->end = self->cur + sizeof(self->inline_buf);
    self->next_chunk = KZ_ARENA_CHUNK;
    self->body.type = KZ_VAL_NIL;
    return self;
}

void kz_msg_destroy(kz_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kz_msg_t *self = *self_p;
    s_chunk_t *chunk = self->chunks;
    while (chunk) {
        s_chunk_t *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(self);
    *self_p = NULL;
}

/* ------------------------------------------------------------------ */
/* Time and ids                                                        */

int64_t kz_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static pthread_mutex_t s_ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t s_ulid_ms;
static uint8_t s_ulid_rand[10];

static void s_random_bytes(uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t rc = getrandom(buf + got, len - got, 0);
        if (rc <= 0) {
            /* getrandom cannot fail for <= 256 bytes once the pool is
               initialised; keep ids unique anyway with a weak fallback */
            uint64_t x = (uint64_t)kz_now_us() ^ ((uint64_t)(uintptr_t)buf << 16);
            for (; got < len; got++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[got] = (uint8_t)x;
            }
            return;
        }
        got += (size_t)rc;
    }
}

void kz_ulid(char *buf)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint8_t bytes[16];
    uint64_t now_ms = (uint64_t)(kz_now_us() / 1000);

    pthread_mutex_lock(&s_ulid_lock);
    if (now_ms > s_ulid_ms) {
        s_ulid_ms = now_ms;
        s_random_bytes(s_ulid_rand, sizeof(s_ulid_rand));
    } else {
        /* same millisecond (or the clock went back): keep the last time
           and increment the random part so ids stay strictly increasing */
        int i = 9;
        while (i >= 0 && ++s_ulid_rand[i] == 0)
            i--;
        if (i < 0)
            s_ulid_ms++;
    }
    uint64_t ms = s_ulid_ms & 0xffffffffffffULL;
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)(ms >> (8 * (5 - i)));
    memcpy(bytes + 6, s_ulid_rand, 10);
    pthread_mutex_unlock(&s_ulid_lock);

    /* 128 bits as 26 base32 digits: the first digit holds the top 3 bits */
    for (int i = 25; i >= 0; i--) {
        int bit = (25 - i) * 5; /* position of this digit's low bit from the right */
        int byte = 15 - bit / 8;
        int shift = bit % 8;
        unsigned v = bytes[byte] >> shift;
        if (shift > 3 && byte > 0)
            v |= (unsigned)bytes[byte - 1] << (8 - shift);
        buf[i] = alphabet[v & 31];
    }
    buf[26] = '\0';
}

/* ------------------------------------------------------------------ */
/* Building                                                            */

static const s_schema_t *s_schema_find(const char *type);
static int s_set_field(kz_msg_t *self, int index, const char *value);

kz_msg_t *kz_msg_new(const char *type)
{
    if (!type)
        return NULL;
    kz_msg_t *self = s_msg_alloc();
    if (!self)
        return NULL;
    char id[27];
    kz_ulid(id);
    self->version = KZ_PROTO_VERSION;
    self->ts = kz_now_us();
    self->body.type = KZ_VAL_MAP;
    self->schema = s_schema_find(type);
    if (s_set_field(self, S_ID, id) != 0 || s_set_field(self, S_TYPE, type) != 0)
        kz_msg_destroy(&self);
    return self;
}

int kz_msg_version(const kz_msg_t *self)
{
    return self->version;
}

const char *kz_msg_id(const kz_msg_t *self)
{
    return self->str[S_ID].ptr;
}

const char *kz_msg_type(const kz_msg_t *self)
{
    return self->str[S_TYPE].ptr;
}

const char *kz_msg_src(const kz_msg_t *self)
{
    return self->str[S_SRC].ptr;
}

int64_t kz_msg_ts(const kz_msg_t *self)
{
    return self->ts;
}

const char *kz_msg_corr(const kz_msg_t *self)
{
    return self->str[S_CORR].ptr;
}

const char *kz_msg_target(const kz_msg_t *self)
{
    return self->str[S_TARGET].ptr;
}

static int s_set_field(kz_msg_t *self, int index, const char *value)
{
    if (!value) {
        self->str[index].ptr = NULL;
        self->str[index].len = 0;
        return 0;
    }
    size_t len = strlen(value);
    if (len > UINT32_MAX)
        return -1;
    const char *copy = s_strdup(self, value, len);
    if (!copy)
        return -1;
    self->str[index].ptr = copy;
    self->str[index].len = (uint32_t)len;
    return 0;
}

int kz_msg_set_id(kz_msg_t *self, const char *id)
{
    return id ? s_set_field(self, S_ID, id) : -1;
}

int kz_msg_set_src(kz_msg_t *self, const char *src)
{
    return s_set_field(self, S_SRC, src);
}

int kz_msg_set_corr(kz_msg_t *self, const char *corr)
{
    return s_set_field(self, S_CORR, corr);
}

int kz_msg_set_target(kz_msg_t *self, const char *target)
{
    return s_set_field(self, S_TARGET, target);
}

void kz_msg_set_ts(kz_msg_t *self, int64_t ts_us)
{
    self->ts = ts_us;
}

int64_t kz_msg_deadline(const kz_msg_t *self)
{
    return self->deadline;
}

void kz_msg_set_deadline(kz_msg_t *self, int64_t deadline_us)
{
    self->deadline = deadline_us > 0 ? deadline_us : 0;
}

kz_val_t *kz_msg_body(kz_msg_t *self)
{
    return &self->body;
}

const kz_val_t *kz_msg_body_const(const kz_msg_t *self)
{
    return &self->body;
}

/* Containers grow by doubling inside the arena (from 8 entries), so the
   slot pointers returned by kz_map_put / kz_array_push (and everything
   below them) stay valid only until the next put / push into the SAME
   container moves its entries: fill a slot before adding its siblings
   beyond the eighth, or look it up again with kz_map_get. */
kz_val_t *kz_map_put(kz_msg_t *self, kz_val_t *map, const char *key)
{
    return key ? kz_map_putn(self, map, key, strlen(key)) : NULL;
}

kz_val_t *kz_map_putn(kz_msg_t *self, kz_val_t *map, const char *key, size_t keylen)
{
    if (!map || map->type != KZ_VAL_MAP || !key)
        return NULL;
    if (keylen > UINT32_MAX)
        return NULL;
    if (map->u.map.count == map->u.map.cap) {
        if (map->u.map.cap >= UINT32_MAX / 2)
            return NULL;
        uint32_t cap = map->u.map.cap ? map->u.map.cap * 2 : 8;
        kz_kv_t *items = s_alloc(self, (size_t)cap * sizeof(kz_kv_t), _Alignof(kz_kv_t));
        if (!items)
            return NULL;
        if (map->u.map.count)
            memcpy(items, map->u.map.items, (size_t)map->u.map.count * sizeof(kz_kv_t));
        map->u.map.items = items;
        map->u.map.cap = cap;
    }
    const char *copy = s_strdup(self, key, keylen);
    if (!copy)
        return NULL;
    kz_kv_t *kv = &map->u.map.items[map->u.map.count++];
    kv->key.type = KZ_VAL_STR;
    kv->key.u.str.ptr = copy;
    kv->key.u.str.len = (uint32_t)keylen;
    memset(&kv->val, 0, sizeof(kv->val));
    kv->val.type = KZ_VAL_NIL;
    return &kv->val;
}

kz_val_t *kz_array_push(kz_msg_t *self, kz_val_t *arr)
{
    if (!arr || arr->type != KZ_VAL_ARRAY)
        return NULL;
    if (arr->u.arr.count == arr->u.arr.cap) {
        if (arr->u.arr.cap >= UINT32_MAX / 2)
            return NULL;
        uint32_t cap = arr->u.arr.cap ? arr->u.arr.cap * 2 : 8;
        kz_val_t *items = s_alloc(self, (size_t)cap * sizeof(kz_val_t), _Alignof(kz_val_t));
        if (!items)
            return NULL;
        if (arr->u.arr.count)
            memcpy(items, arr->u.arr.items, (size_t)arr->u.arr.count * sizeof(kz_val_t));
        arr->u.arr.items = items;
        arr->u.arr.cap = cap;
    }
    kz_val_t *val = &arr->u.arr.items[arr->u.arr.count++];
    memset(val, 0, sizeof(*val));
    val->type = KZ_VAL_NIL;
    return val;
}

int kz_val_set_strn(kz_msg_t *self, kz_val_t *val, const char *str, size_t len)
{
    if (!val || (!str && len) || len > UINT32_MAX)
        return -1;
    char *copy = s_strdup(self, str ? str : "", len);
    if (!copy)
        return -1;
    val->type = KZ_VAL_STR;
    val->u.str.ptr = copy;
    val->u.str.len = (uint32_t)len;
    return 0;
}

int kz_val_set_str(kz_msg_t *self, kz_val_t *val, const char *str)
{
    if (!str)
        return -1;
    return kz_val_set_strn(self, val, str, strlen(str));
}

int kz_val_set_bin(kz_msg_t *self, kz_val_t *val, const void *data, size_t len)
{
    if (kz_val_set_strn(self, val, data, len) != 0)
        return -1;
    val->type = KZ_VAL_BIN;
    return 0;
}

void kz_val_set_int(kz_val_t *val, int64_t i)
{
    val->type = KZ_VAL_INT;
    val->u.i = i;
}

void kz_val_set_bool(kz_val_t *val, bool b)
{
    val->type = KZ_VAL_BOOL;
    val->u.b = b;
}

void kz_val_set_float(kz_val_t *val, double f)
{
    val->type = KZ_VAL_FLOAT;
    val->u.f = f;
}

void kz_val_set_map(kz_val_t *val)
{
    memset(val, 0, sizeof(*val));
    val->type = KZ_VAL_MAP;
}

void kz_val_set_array(kz_val_t *val)
{
    memset(val, 0, sizeof(*val));
    val->type = KZ_VAL_ARRAY;
}

int kz_map_put_str(kz_msg_t *self, kz_val_t *map, const char *key, const char *str)
{
    kz_val_t *val = kz_map_put(self, map, key);
    if (!val)
        return -1;
    if (kz_val_set_str(self, val, str) != 0) {
        map->u.map.count--;
        return -1;
    }
    return 0;
}

int kz_map_put_int(kz_msg_t *self, kz_val_t *map, const char *key, int64_t i)
{
    kz_val_t *val = kz_map_put(self, map, key);
    if (!val)
        return -1;
    kz_val_set_int(val, i);
    return 0;
}

int kz_map_put_bool(kz_msg_t *self, kz_val_t *map, const char *key, bool b)
{
    kz_val_t *val = kz_map_put(self, map, key);
    if (!val)
        return -1;
    kz_val_set_bool(val, b);
    return 0;
}

int kz_map_put_float(kz_msg_t *self, kz_val_t *map, const char *key, double f)
{
    kz_val_t *val = kz_map_put(self, map, key);
    if (!val)
        return -1;
    kz_val_set_float(val, f);
    return 0;
}

kz_val_t *kz_map_put_map(kz_msg_t *self, kz_val_t *map, const char *key)
{
    kz_val_t *val = kz_map_put(self, map, key);
    if (val)
        kz_val_set_map(val);
    return val;
}

kz_val_t *kz_map_put_array(kz_msg_t *self, kz_val_t *map, const char *key)
{
    kz_val_t *val = kz_map_put(self, map, key);
    if (val)
        kz_val_set_array(val);
    return val;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

static const kz_val_t *s_map_getn(const kz_val_t *map, const char *key, size_t keylen)
{
    if (!map || map->type != KZ_VAL_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->u.map.count; i++) {
        const kz_val_t *k = &map->u.map.items[i].key;
        if (k->u.str.len == keylen && (keylen == 0 || k->u.str.ptr[0] == key[0]) &&
            memcmp(k->u.str.ptr, key, keylen) == 0)
            return &map->u.map.items[i].val;
    }
    return NULL;
}

const kz_val_t *kz_map_get(const kz_val_t *map, const char *key)
{
    if (!key)
        return NULL;
    return s_map_getn(map, key, strlen(key));
}

const char *kz_map_str(const kz_val_t *map, const char *key)
{
    const kz_val_t *val = kz_map_get(map, key);
    return val && val->type == KZ_VAL_STR ? val->u.str.ptr : NULL;
}

int64_t kz_map_int(const kz_val_t *map, const char *key, int64_t dflt)
{
    const kz_val_t *val = kz_map_get(map, key);
    return val && val->type == KZ_VAL_INT ? val->u.i : dflt;
}

bool kz_map_bool(const kz_val_t *map, const char *key, bool dflt)
{
    const kz_val_t *val = kz_map_get(map, key);
    return val && val->type == KZ_VAL_BOOL ? val->u.b : dflt;
}

double kz_map_float(const kz_val_t *map, const char *key, double dflt)
{
    const kz_val_t *val = kz_map_get(map, key);
    if (!val)
        return dflt;
    if (val->type == KZ_VAL_FLOAT)
        return val->u.f;
    if (val->type == KZ_VAL_INT)
        return (double)val->u.i;
    if (val->type == KZ_VAL_UINT)
        return (double)val->u.u;
    return dflt;
}

/* ------------------------------------------------------------------ */
/* Limits, error texts, UTF-8                                          */

kz_msg_limits_t kz_msg_limits_default(void)
{
    kz_msg_limits_t limits = {
        .max_size = 1u << 20,
        .max_str = 64u << 10,
        .max_count = 10000,
        .max_depth = 16,
        .max_items = 200000,
    };
    return limits;
}

const char *kz_msg_strerror(int code)
{
    if (code < 0)
        code = -code;
    switch (code) {
    case KZ_MSG_OK:
        return "ok";
    case KZ_EMSG_TRUNCATED:
        return "truncated";
    case KZ_EMSG_TRAILING:
        return "trailing bytes";
    case KZ_EMSG_BADBYTE:
        return "bad byte";
    case KZ_EMSG_TYPE:
        return "wrong type";
    case KZ_EMSG_TOOBIG:
        return "message too big";
    case KZ_EMSG_STRLEN:
        return "string too long";
    case KZ_EMSG_COUNT:
        return "too many entries";
    case KZ_EMSG_DEPTH:
        return "nested too deep";
    case KZ_EMSG_ITEMS:
        return "too many values";
    case KZ_EMSG_MISSING:
        return "missing field";
    case KZ_EMSG_DUPKEY:
        return "duplicate key";
    case KZ_EMSG_VERSION:
        return "unsupported version";
    case KZ_EMSG_UNKNOWN:
        return "unknown message type";
    case KZ_EMSG_VALUE:
        return "value not allowed";
    case KZ_EMSG_UTF8:
        return "invalid utf-8";
    case KZ_EMSG_NOMEM:
        return "out of memory";
    case KZ_EMSG_KEY:
        return "non-string key";
    default:
        return "unknown error";
    }
}

static const char *s_type_name(kz_val_type_t type)
{
    switch (type) {
    case KZ_VAL_NIL:
        return "nil";
    case KZ_VAL_BOOL:
        return "boolean";
    case KZ_VAL_INT:
    case KZ_VAL_UINT:
        return "integer";
    case KZ_VAL_FLOAT:
        return "float";
    case KZ_VAL_STR:
        return "string";
    case KZ_VAL_BIN:
        return "binary";
    case KZ_VAL_ARRAY:
        return "array";
    case KZ_VAL_MAP:
        return "map";
    }
    return "?";
}

/* The path of the value being looked at, kept as a small stack so that
   an error can say "body.findings[3].line"; only formatted on error. */
typedef struct {
    const char *key; /* NULL: an array index */
    uint32_t keylen;
    uint32_t index;
} s_seg_t;

typedef struct {
    s_seg_t segs[KZ_PATH_MAX];
    uint32_t depth; /* may exceed KZ_PATH_MAX; deeper segments are elided */
} s_path_t;

static void s_path_key(s_path_t *path, const char *key, uint32_t keylen)
{
    if (path->depth < KZ_PATH_MAX) {
        path->segs[path->depth].key = key;
        path->segs[path->depth].keylen = keylen;
    }
    path->depth++;
}

static void s_path_index(s_path_t *path, uint32_t index)
{
    if (path->depth < KZ_PATH_MAX) {
        path->segs[path->depth].key = NULL;
        path->segs[path->depth].index = index;
    }
    path->depth++;
}

static void s_path_pop(s_path_t *path)
{
    path->depth--;
}

/* Fill ERR with CODE and "PATH: detail"; returns -CODE */
static int s_fail(kz_msg_err_t *err, const s_path_t *path, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int s_fail(kz_msg_err_t *err, const s_path_t *path, int code, const char *fmt, ...)
{
    if (!err)
        return -code;
    err->code = code;
    size_t n = 0, cap = sizeof(err->text);
    uint32_t depth = path ? path->depth : 0;
    for (uint32_t i = 0; i < depth && n < cap - 1; i++) {
        if (i >= KZ_PATH_MAX) {
            n += (size_t)snprintf(err->text + n, cap - n, "...");
            break;
        }
        const s_seg_t *seg = &path->segs[i];
        if (seg->key) {
            if (i > 0)
                err->text[n++] = '.';
            /* keys are input: show printable ASCII only, and not too much */
            for (uint32_t j = 0; j < seg->keylen && j < 48 && n < cap - 1; j++) {
                unsigned char c = (unsigned char)seg->key[j];
                err->text[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
            }
        } else {
            n += (size_t)snprintf(err->text + n, cap - n, "[%" PRIu32 "]", seg->index);
        }
    }
    if (n >= cap)
        n = cap - 1;
    if (n > 0 && n < cap - 3) {
        err->text[n++] = ':';
        err->text[n++] = ' ';
    }
    va_list ap;
    va_start(ap, fmt);
    if (n < cap - 1)
        vsnprintf(err->text + n, cap - n, fmt, ap);
    else
        err->text[cap - 1] = '\0';
    va_end(ap);
    return -code;
}

/* Length of the valid UTF-8 sequence at S (at most LEN bytes), 0 if
   invalid (overlong forms, surrogates and code points above U+10FFFF are
   invalid). */
static size_t s_utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2)
        return 0;
    if (c < 0xe0) {
        if (len < 2 || (s[1] & 0xc0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xf0) {
        if (len < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && s[1] >= 0xa0)
            return 0; /* surrogate */
        return 3;
    }
    if (c < 0xf5) {
        if (len < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && s[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

static bool s_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    /* most strings are ASCII: OR them together a word at a time */
    uint64_t any = 0;
    size_t k = 0;
    for (; k + 8 <= len; k += 8) {
        uint64_t w;
        memcpy(&w, s + k, 8);
        any |= w;
    }
    for (; k < len; k++)
        any |= s[k];
    if (!(any & 0x8080808080808080ULL))
        return true;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = s_utf8_seq(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Duplicate keys                                                      */

/* Scratch index array for the duplicate-key check of large maps; reused
   for every map of one decode or encode (maps are checked after their
   values, so the checks never nest). */
typedef struct {
    uint32_t *slots;
    size_t cap;
} s_scratch_t;

/* Equality of short byte strings (keys) without a call to memcmp */
static inline bool s_memeq(const char *a, const char *b, size_t len)
{
    if (len > 16)
        return memcmp(a, b, len) == 0;
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static inline bool s_key_eq(const kz_val_t *a, const kz_val_t *b)
{
    /* strings are NUL-terminated, so the first byte is always readable */
    return a->u.str.len == b->u.str.len && a->u.str.ptr[0] == b->u.str.ptr[0] &&
           s_memeq(a->u.str.ptr, b->u.str.ptr, a->u.str.len);
}

/* qsort_r order of key indices: by length, then bytes, then index (a
   total order, so equal keys end up next to each other) */
static int s_key_order(const void *pa, const void *pb, void *arg)
{
    const kz_kv_t *items = arg;
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    const kz_val_t *ka = &items[a].key, *kb = &items[b].key;
    if (ka->u.str.len != kb->u.str.len)
        return ka->u.str.len < kb->u.str.len ? -1 : 1;
    int c = memcmp(ka->u.str.ptr, kb->u.str.ptr, ka->u.str.len);
    if (c)
        return c;
    return a < b ? -1 : a > b;
}

/* Index of the first key of MAP that repeats an earlier one, or -1;
   -2 when out of memory. */
static int64_t s_find_dup(const kz_val_t *map, s_scratch_t *scratch)
{
    const kz_kv_t *items = map->u.map.items;
    uint32_t count = map->u.map.count;
    if (count <= 12) {
        for (uint32_t i = 1; i < count; i++)
            for (uint32_t j = 0; j < i; j++)
                if (s_key_eq(&items[i].key, &items[j].key))
                    return i;
        return -1;
    }
    /* larger maps: sort the key indices and compare neighbours. A hash
       table would be faster on average, but a sender could choose keys
       that collide and make every receiver's decode quadratic; sorting
       is O(n log n) whatever the keys are. */
    if (scratch->cap < count) {
        uint32_t *slots = realloc(scratch->slots, (size_t)count * sizeof(uint32_t));
        if (!slots)
            return -2;
        scratch->slots = slots;
        scratch->cap = count;
    }
    for (uint32_t i = 0; i < count; i++)
        scratch->slots[i] = i;
    qsort_r(scratch->slots, count, sizeof(uint32_t), s_key_order, (void *)(uintptr_t)items);
    int64_t dup = -1;
    for (uint32_t i = 1; i < count; i++) {
        uint32_t a = scratch->slots[i - 1], b = scratch->slots[i];
        if (s_key_eq(&items[a].key, &items[b].key)) {
            /* report the later of the two, as a reader going forward would */
            int64_t later = a > b ? a : b;
            if (dup == -1 || later < dup)
                dup = later;
        }
    }
    return dup;
}

/* ------------------------------------------------------------------ */
/* Bounds-checked msgpack reader                                       */

typedef struct {
    const uint8_t *p;
    const uint8_t *start;
    const uint8_t *end;
    kz_msg_t *msg;
    kz_msg_limits_t lim;
    uint64_t items;
    kz_msg_err_t *err;
    s_path_t path;
    s_scratch_t scratch;
    /* kz_msg_decode only: the envelope map is taken apart right after
       decoding, so its entries may live in the caller's ROOT_ITEMS and
       its keys may point into the input instead of the arena */
    kz_kv_t *root_items;
    uint32_t root_cap;
} s_dec_t;

static inline uint16_t s_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t s_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t s_be64(const uint8_t *p)
{
    return ((uint64_t)s_be32(p) << 32) | s_be32(p + 4);
}

static int s_truncated(s_dec_t *d)
{
    return s_fail(d->err, &d->path, KZ_EMSG_TRUNCATED, "input ends inside a value (offset %zu)",
                  (size_t)(d->end - d->start));
}

/* Read N header bytes; NULL (with ERR filled) if the input ends first */
static inline const uint8_t *s_take(s_dec_t *d, size_t n)
{
    if ((size_t)(d->end - d->p) < n) {
        s_truncated(d);
        return NULL;
    }
    const uint8_t *p = d->p;
    d->p += n;
    return p;
}

/* Read a string or binary body of LEN bytes into OUT; with BORROW the
   value points into the input (not NUL-terminated) instead of a copy */
static int s_read_str(s_dec_t *d, kz_val_t *out, uint32_t len, bool is_str, bool borrow)
{
    if (len > d->lim.max_str)
        return s_fail(d->err, &d->path, KZ_EMSG_STRLEN, "%s of %" PRIu32 " bytes exceeds %" PRIu32,
                      is_str ? "string" : "binary", len, d->lim.max_str);
    if ((size_t)(d->end - d->p) < len)
        return s_truncated(d);
    const char *src = (const char *)d->p;
    if (is_str && !s_utf8_valid(src, len))
        return s_fail(d->err, &d->path, KZ_EMSG_UTF8, "string is not valid utf-8");
    const char *copy = borrow ? src : s_strdup(d->msg, src, len);
    if (!copy)
        return s_fail(d->err, &d->path, KZ_EMSG_NOMEM, "out of memory");
    d->p += len;
    out->type = is_str ? KZ_VAL_STR : KZ_VAL_BIN;
    out->u.str.ptr = copy;
    out->u.str.len = len;
    return 0;
}

static int s_read_value(s_dec_t *d, kz_val_t *out, uint32_t depth);

/* Check a container header of N entries (WIDTH values each) against the
   limits and the bytes left, before anything is allocated */
static int s_check_container(s_dec_t *d, uint32_t n, uint32_t width, uint32_t depth,
                             const char *what)
{
    if (depth + 1 > d->lim.max_depth || depth + 1 > KZ_DEPTH_HARD)
        return s_fail(d->err, &d->path, KZ_EMSG_DEPTH, "nesting deeper than %" PRIu32,
                      d->lim.max_depth);
    if (n > d->lim.max_count)
        return s_fail(d->err, &d->path, KZ_EMSG_COUNT, "%s of %" PRIu32 " entries exceeds %" PRIu32,
                      what, n, d->lim.max_count);
    /* every value takes at least one byte */
    if ((uint64_t)(d->end - d->p) < (uint64_t)n * width)
        return s_truncated(d);
    d->items += (uint64_t)n * width;
    if (d->items > d->lim.max_items)
        return s_fail(d->err, &d->path, KZ_EMSG_ITEMS, "more than %" PRIu32 " values in total",
                      d->lim.max_items);
    return 0;
}

static int s_read_array(s_dec_t *d, kz_val_t *out, uint32_t n, uint32_t depth)
{
    int rc = s_check_container(d, n, 1, depth, "array");
    if (rc)
        return rc;
    out->type = KZ_VAL_ARRAY;
    out->u.arr.items = NULL;
    out->u.arr.count = out->u.arr.cap = 0;
    if (n == 0)
        return 0;
    kz_val_t *items = s_alloc(d->msg, (size_t)n * sizeof(kz_val_t), _Alignof(kz_val_t));
    if (!items)
        return s_fail(d->err, &d->path, KZ_EMSG_NOMEM, "out of memory");
    out->u.arr.items = items;
    out->u.arr.cap = n;
    for (uint32_t i = 0; i < n; i++) {
        s_path_index(&d->path, i);
        rc = s_read_value(d, &items[i], depth + 1);
        if (rc)
            return rc;
        s_path_pop(&d->path);
        out->u.arr.count = i + 1;
    }
    return 0;
}

static int s_read_key(s_dec_t *d, kz_val_t *key, bool borrow)
{
    if (d->p >= d->end)
        return s_truncated(d);
    uint8_t b = *d->p++;
    const uint8_t *h;
    uint32_t len;
    if ((b & 0xe0) == 0xa0)
        len = b & 0x1f;
    else if (b == 0xd9) {
        if (!(h = s_take(d, 1)))
            return -KZ_EMSG_TRUNCATED;
        len = h[0];
    } else if (b == 0xda) {
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        len = s_be16(h);
    } else if (b == 0xdb) {
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        len = s_be32(h);
    } else if (b == 0xc1)
        return s_fail(d->err, &d->path, KZ_EMSG_BADBYTE, "byte 0xc1 starts no value");
    else
        return s_fail(d->err, &d->path, KZ_EMSG_KEY, "map key is not a string (byte 0x%02x)", b);
    return s_read_str(d, key, len, true, borrow);
}

static int s_read_map(s_dec_t *d, kz_val_t *out, uint32_t n, uint32_t depth)
{
    int rc = s_check_container(d, n, 2, depth, "map");
    if (rc)
        return rc;
    out->type = KZ_VAL_MAP;
    out->u.map.items = NULL;
    out->u.map.count = out->u.map.cap = 0;
    if (n == 0)
        return 0;
    bool root = depth == 0 && d->root_items && n <= d->root_cap;
    kz_kv_t *items =
        root ? d->root_items : s_alloc(d->msg, (size_t)n * sizeof(kz_kv_t), _Alignof(kz_kv_t));
    if (!items)
        return s_fail(d->err, &d->path, KZ_EMSG_NOMEM, "out of memory");
    out->u.map.items = items;
    out->u.map.cap = n;
    for (uint32_t i = 0; i < n; i++) {
        rc = s_read_key(d, &items[i].key, root);
        if (rc)
            return rc;
        s_path_key(&d->path, items[i].key.u.str.ptr, items[i].key.u.str.len);
        rc = s_read_value(d, &items[i].val, depth + 1);
        if (rc)
            return rc;
        s_path_pop(&d->path);
        out->u.map.count = i + 1;
    }
    int64_t dup = s_find_dup(out, &d->scratch);
    if (dup == -2)
        return s_fail(d->err, &d->path, KZ_EMSG_NOMEM, "out of memory");
    if (dup >= 0) {
        const kz_val_t *key = &items[dup].key;
        s_path_key(&d->path, key->u.str.ptr, key->u.str.len);
        rc = s_fail(d->err, &d->path, KZ_EMSG_DUPKEY, "duplicate key");
        s_path_pop(&d->path);
        return rc;
    }
    return 0;
}

/* Read one value at nesting DEPTH (the value itself is at DEPTH + 1 if it
   is a container) into OUT. 0 or -code with d->err filled. */
static int s_read_value(s_dec_t *d, kz_val_t *out, uint32_t depth)
{
    if (d->p >= d->end)
        return s_truncated(d);
    uint8_t b = *d->p++;
    const uint8_t *h;

    if (b <= 0x7f) {
        out->type = KZ_VAL_INT;
        out->u.i = b;
        return 0;
    }
    if (b >= 0xe0) {
        out->type = KZ_VAL_INT;
        out->u.i = (int8_t)b;
        return 0;
    }
    if (b <= 0x8f)
        return s_read_map(d, out, b & 0x0f, depth);
    if (b <= 0x9f)
        return s_read_array(d, out, b & 0x0f, depth);
    if (b <= 0xbf)
        return s_read_str(d, out, b & 0x1f, true, false);

    switch (b) {
    case 0xc0:
        out->type = KZ_VAL_NIL;
        return 0;
    case 0xc1:
        return s_fail(d->err, &d->path, KZ_EMSG_BADBYTE, "byte 0xc1 starts no value");
    case 0xc2:
    case 0xc3:
        out->type = KZ_VAL_BOOL;
        out->u.b = b == 0xc3;
        return 0;
    case 0xc4:
        if (!(h = s_take(d, 1)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_str(d, out, h[0], false, false);
    case 0xc5:
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_str(d, out, s_be16(h), false, false);
    case 0xc6:
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_str(d, out, s_be32(h), false, false);
    case 0xca: {
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        uint32_t bits = s_be32(h);
        float f;
        memcpy(&f, &bits, 4);
        out->type = KZ_VAL_FLOAT;
        out->u.f = f;
        return 0;
    }
    case 0xcb: {
        if (!(h = s_take(d, 8)))
            return -KZ_EMSG_TRUNCATED;
        uint64_t bits = s_be64(h);
        double f;
        memcpy(&f, &bits, 8);
        out->type = KZ_VAL_FLOAT;
        out->u.f = f;
        return 0;
    }
    case 0xcc:
        if (!(h = s_take(d, 1)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = h[0];
        return 0;
    case 0xcd:
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = s_be16(h);
        return 0;
    case 0xce:
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = s_be32(h);
        return 0;
    case 0xcf: {
        if (!(h = s_take(d, 8)))
            return -KZ_EMSG_TRUNCATED;
        uint64_t u = s_be64(h);
        if (u > INT64_MAX) {
            out->type = KZ_VAL_UINT;
            out->u.u = u;
        } else {
            out->type = KZ_VAL_INT;
            out->u.i = (int64_t)u;
        }
        return 0;
    }
    case 0xd0:
        if (!(h = s_take(d, 1)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = (int8_t)h[0];
        return 0;
    case 0xd1:
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = (int16_t)s_be16(h);
        return 0;
    case 0xd2:
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = (int32_t)s_be32(h);
        return 0;
    case 0xd3:
        if (!(h = s_take(d, 8)))
            return -KZ_EMSG_TRUNCATED;
        out->type = KZ_VAL_INT;
        out->u.i = (int64_t)s_be64(h);
        return 0;
    case 0xd9:
        if (!(h = s_take(d, 1)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_str(d, out, h[0], true, false);
    case 0xda:
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_str(d, out, s_be16(h), true, false);
    case 0xdb:
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_str(d, out, s_be32(h), true, false);
    case 0xdc:
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_array(d, out, s_be16(h), depth);
    case 0xdd:
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_array(d, out, s_be32(h), depth);
    case 0xde:
        if (!(h = s_take(d, 2)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_map(d, out, s_be16(h), depth);
    case 0xdf:
        if (!(h = s_take(d, 4)))
            return -KZ_EMSG_TRUNCATED;
        return s_read_map(d, out, s_be32(h), depth);
    default: /* 0xc7-0xc9 ext, 0xd4-0xd8 fixext */
        return s_fail(d->err, &d->path, KZ_EMSG_TYPE, "extension type (byte 0x%02x) not allowed",
                      b);
    }
}

/* Decode one value from BUF into a fresh message's body slot */
static kz_msg_t *s_decode_any(const uint8_t *buf, size_t len, const kz_msg_limits_t *limits,
                              kz_msg_err_t *err, s_dec_t *d, kz_kv_t *root_items, uint32_t root_cap)
{
    memset(d, 0, sizeof(*d));
    d->root_items = root_items;
    d->root_cap = root_cap;
    d->lim = limits ? *limits : kz_msg_limits_default();
    d->err = err;
    if (err) {
        err->code = KZ_MSG_OK;
        err->text[0] = '\0';
    }
    if (!buf && len) {
        s_fail(err, NULL, KZ_EMSG_TRUNCATED, "no input");
        return NULL;
    }
    if (len > d->lim.max_size) {
        s_fail(err, NULL, KZ_EMSG_TOOBIG, "message of %zu bytes exceeds %zu", len, d->lim.max_size);
        return NULL;
    }
    d->msg = s_msg_alloc();
    if (!d->msg) {
        s_fail(err, NULL, KZ_EMSG_NOMEM, "out of memory");
        return NULL;
    }
    d->start = d->p = buf ? buf : (const uint8_t *)"";
    d->end = d->p + len;
    d->items = 1;
    if (d->items > d->lim.max_items) {
        s_fail(err, NULL, KZ_EMSG_ITEMS, "more than %" PRIu32 " values in total", d->lim.max_items);
        goto fail;
    }
    if (s_read_value(d, &d->msg->body, 0) != 0)
        goto fail;
    if (d->p != d->end) {
        s_fail(err, NULL, KZ_EMSG_TRAILING, "%zu bytes after the value", (size_t)(d->end - d->p));
        goto fail;
    }
    free(d->scratch.slots);
    return d->msg;
fail:
    free(d->scratch.slots);
    kz_msg_destroy(&d->msg);
    return NULL;
}

kz_msg_t *kz_msg_decode_value(const uint8_t *buf, size_t len, const kz_msg_limits_t *limits,
                              kz_msg_err_t *err)
{
    s_dec_t d;
    return s_decode_any(buf, len, limits, err, &d, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Schemas                                                             */

typedef enum {
    S_STR,    /* string, len in [min, max] (max 0: max_str), optional allowed set */
    S_INT,    /* integer (int64) >= imin */
    S_NUM,    /* float or integer */
    S_BOOL,   /* boolean */
    S_MAP,    /* any map */
    S_STRMAP, /* map whose values are strings */
    S_STRARR, /* array (count <= max, 0: max_count) of strings (len <= smax) */
    S_MAPARR, /* array of maps, each checked against SUB */
    S_ARRAY,  /* array of anything */
} s_kind_t;

typedef struct {
    const char *name;
    uint8_t namelen;
    uint8_t kind;
    bool required;
    uint32_t min;               /* S_STR: min length; S_STRARR: min length of each string */
    uint32_t max;               /* S_STR: max length; arrays: max count (0: limit) */
    uint32_t smax;              /* S_STRARR: max length of each string (0: limit) */
    int64_t imin;               /* S_INT */
    const char *const *allowed; /* S_STR: NULL-terminated set, or NULL */
    const s_schema_t *sub;      /* S_MAPARR */
} s_field_t;

struct s_schema {
    const char *type;
    const s_field_t *fields;
    size_t nfields;
};

#define F_(n, k, r, lo, hi, sm, im, al, sb)            \
    {                                                  \
        n, sizeof(n) - 1, k, r, lo, hi, sm, im, al, sb \
    }
#define STR(n, lo, hi)         F_(n, S_STR, true, lo, hi, 0, 0, NULL, NULL)
#define STR_OPT(n, lo, hi)     F_(n, S_STR, false, lo, hi, 0, 0, NULL, NULL)
#define ENUM(n, set)           F_(n, S_STR, true, 1, 0, 0, 0, set, NULL)
#define ENUM_OPT(n, set)       F_(n, S_STR, false, 1, 0, 0, 0, set, NULL)
#define INT(n, lo)             F_(n, S_INT, true, 0, 0, 0, lo, NULL, NULL)
#define INT_OPT(n, lo)         F_(n, S_INT, false, 0, 0, 0, lo, NULL, NULL)
#define NUM(n)                 F_(n, S_NUM, true, 0, 0, 0, 0, NULL, NULL)
#define BOOL(n)                F_(n, S_BOOL, true, 0, 0, 0, 0, NULL, NULL)
#define MAP(n)                 F_(n, S_MAP, true, 0, 0, 0, 0, NULL, NULL)
#define MAP_OPT(n)             F_(n, S_MAP, false, 0, 0, 0, 0, NULL, NULL)
#define STRMAP_OPT(n)          F_(n, S_STRMAP, false, 0, 0, 0, 0, NULL, NULL)
#define STRARR(n, cnt, sm)     F_(n, S_STRARR, true, 1, cnt, sm, 0, NULL, NULL)
#define STRARR_OPT(n, cnt, sm) F_(n, S_STRARR, false, 1, cnt, sm, 0, NULL, NULL)
#define MAPARR(n, sub)         F_(n, S_MAPARR, true, 0, 0, 0, 0, NULL, &sub)
#define MAPARR_OPT(n, sub)     F_(n, S_MAPARR, false, 0, 0, 0, 0, NULL, &sub)
#define ARRAY_OPT(n)           F_(n, S_ARRAY, false, 0, 0, 0, 0, NULL, NULL)
#define BOOL_OPT(n)            F_(n, S_BOOL, false, 0, 0, 0, 0, NULL, NULL)
#define SCHEMA(t, f)                   \
    {                                  \
        t, f, sizeof(f) / sizeof(f[0]) \
    }
#define OPEN_SCHEMA(t) \
    {                  \
        t, NULL, 0     \
    }

/* Common lengths (bytes) */
#define L_NAME   255  /* agent names, fixers, tools, rules, patterns */
#define L_ID     128  /* scan ids, plan ids */
#define L_COMMIT 64   /* hex object names (sha1 or sha256) */
#define L_PATH   4096 /* file paths */
#define L_WORD   64   /* short words: layer, kind, code, version */

static const char *const s_states[] = {"starting", "idle", "busy", "stopping", NULL};
static const char *const s_results[] = {"ok", "error", NULL};
static const char *const s_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const s_severities[] = {"info", "low", "medium", "high", "critical", NULL};
static const char *const s_categories[] = {"style",  "bug",          "type",        "security",
                                           "secret", "dependency",   "performance", "coverage",
                                           "docs",   "architecture", "complexity",  NULL};
static const char *const s_scan_status[] = {"ok", "partial", "failed", NULL};
static const char *const s_tool_status[] = {"ok", "error", "timeout", "missing", "skipped", NULL};
static const char *const s_exec_status[] = {"changed", "nothing", "failed", "lost", NULL};
static const char *const s_verdicts[] = {"pass", "reject", "error", NULL};
static const char *const s_decisions[] = {"approve", "reject", NULL};

static const s_field_t s_agent_hello[] = {
    STR("name", 1, L_NAME),
    STR("layer", 1, L_WORD),
    STR("host", 1, L_NAME),
    INT("pid", 0),
    STR("version", 1, L_WORD),
    INT_OPT("interval_ms", 0),
    STRARR_OPT("services", 0, L_NAME),
    STRARR_OPT("groups", 0, L_NAME),
};
static const s_field_t s_agent_heartbeat[] = {
    STR("name", 1, L_NAME), ENUM("state", s_states),     INT("uptime_ms", 0),
    INT("cycles", 0),       INT_OPT("last_cycle_ms", 0), ENUM_OPT("last_result", s_results),
    INT("pid", 0),
};
static const s_field_t s_agent_bye[] = {
    STR("name", 1, L_NAME),
    STR_OPT("reason", 0, 0),
};
static const s_field_t s_agent_exited[] = {
    STR("name", 1, L_NAME),      INT("instance", 0),
    STR("host", 1, L_NAME),      INT("pid", 0),
    STR("status", 1, 0),         INT("restarts", 0),
    INT_OPT("restart_in_ms", 0), STR_OPT("id", 1, L_NAME),
};
static const s_field_t s_agent_failed[] = {
    STR("name", 1, L_NAME), INT("instance", 0), STR("host", 1, L_NAME),   STR("reason", 1, 0),
    INT("restarts", 0),     INT_OPT("pid", 0),  STR_OPT("id", 1, L_NAME),
};
static const s_field_t s_agent_log[] = {
    ENUM("level", s_levels),
    STR("message", 0, 0),
};
static const s_field_t s_agent_run[] = {
    STR("agent", 1, L_NAME),
};
static const s_field_t s_scan_started[] = {
    STR("scan_id", 1, L_ID),
    STR_OPT("commit", 1, L_COMMIT),
    INT_OPT("files", 0),
    STRARR_OPT("tools", 0, L_NAME),
};
static const s_field_t s_finding[] = {
    STR("tool", 1, L_NAME),
    STR("rule", 1, L_NAME),
    ENUM("severity", s_severities),
    ENUM("category", s_categories),
    STR("file", 1, L_PATH),
    INT("line", 0),
    INT_OPT("col", 0),
    STR("message", 0, 0),
    STR("fingerprint", 1, L_WORD),
    STR_OPT("fix", 0, 0),
};
static const s_schema_t s_finding_schema = SCHEMA("finding", s_finding);
static const s_field_t s_finding_batch[] = {
    STR("scan_id", 1, L_ID),
    INT("seq", 0),
    MAPARR("findings", s_finding_schema),
};
static const s_field_t s_metric[] = {
    STR("name", 1, L_NAME),
    NUM("value"),
    STR_OPT("unit", 0, L_WORD),
    STRMAP_OPT("labels"),
};
static const s_schema_t s_metric_schema = SCHEMA("metric", s_metric);
static const s_field_t s_metric_batch[] = {
    STR_OPT("scan_id", 1, L_ID),
    MAPARR("metrics", s_metric_schema),
};
static const s_field_t s_tool_run[] = {
    STR("name", 1, L_NAME), ENUM("status", s_tool_status), INT("findings", 0),
    INT("duration_ms", 0),  STR_OPT("error", 0, 0),
};
static const s_schema_t s_tool_run_schema = SCHEMA("tool", s_tool_run);
static const s_field_t s_scan_completed[] = {
    STR("scan_id", 1, L_ID),
    ENUM("status", s_scan_status),
    INT("findings", 0),
    INT("files", 0),
    INT("duration_ms", 0),
    MAPARR_OPT("tools", s_tool_run_schema),
    STR_OPT("commit", 1, L_COMMIT),
    INT_OPT("loc", 0),
    INT_OPT("rescanned", 0),
    STR_OPT("error", 0, 0),
    BOOL_OPT("reused"),
};
static const s_field_t s_analysis_result[] = {
    STR("scan_id", 1, L_ID),
    STR("kind", 1, L_WORD),
    MAP("summary"),
};
static const s_field_t s_plan[] = {
    STR("plan_id", 1, L_ID),
    STR("fixer", 1, L_NAME),
    STRARR("files", 0, L_PATH),
    STRARR("findings", 0, L_WORD),
    NUM("impact"),
    NUM("effort"),
    NUM("risk"),
    INT_OPT("rank", 0),
    STR_OPT("rationale", 0, 0),
    STR_OPT("scan_id", 1, L_ID),
    STR_OPT("base_commit", 1, L_COMMIT),
    STR_OPT("tool", 1, L_NAME),
    STRARR_OPT("rules", 0, L_NAME),
    STR_OPT("language", 1, L_NAME),
};
static const s_schema_t s_plan_schema = SCHEMA("plan", s_plan);
static const s_field_t s_plan_batch[] = {
    STR("scan_id", 1, L_ID),
    MAPARR("plans", s_plan_schema),
    MAP_OPT("unplanned"),
};
static const s_field_t s_plan_dropped[] = {
    STR("plan_id", 1, L_ID),
    STR("reason", 0, 0),
};
static const s_schema_t s_plan_dropped_schema = SCHEMA("dropped", s_plan_dropped);
static const s_field_t s_plan_ranked[] = {
    STR("scan_id", 1, L_ID),
    STRARR("ready", 0, L_ID),
    MAPARR_OPT("dropped", s_plan_dropped_schema),
};
static const s_field_t s_plan_state[] = {
    STR("plan_id", 1, L_ID),
    STR("state", 1, L_WORD),
    STR_OPT("reason", 0, 0),
    MAP_OPT("details"),
};
static const s_field_t s_plan_decision[] = {
    STR("plan_id", 1, L_ID),     STR_OPT("by", 0, L_NAME),    STR_OPT("reason", 0, 0),
    STRARR_OPT("reasons", 0, 0), STR_OPT("state", 1, L_WORD),
};
/* plan.rejected: a decision, and why in one word (cause) */
static const s_field_t s_plan_rejected[] = {
    STR("plan_id", 1, L_ID),     STR_OPT("by", 0, L_NAME),    STR_OPT("reason", 0, 0),
    STRARR_OPT("reasons", 0, 0), STR_OPT("state", 1, L_WORD), STR_OPT("cause", 1, L_WORD),
};
/* plan.query (to kaizen.plan): what the router's record says of a plan */
static const s_field_t s_plan_query[] = {
    STR("plan_id", 1, L_ID),
};
/* plan.info: its reply; state "unknown" when the router has no such plan */
static const s_field_t s_plan_info[] = {
    STR("plan_id", 1, L_ID),
    STR("state", 1, L_WORD),
    STR_OPT("target", 1, L_NAME),
    STR_OPT("fixer", 1, L_NAME),
    STR_OPT("base_commit", 1, L_COMMIT),
    STR_OPT("branch", 1, L_NAME),
    STR_OPT("request_id", 1, 64),
};
static const s_field_t s_exec_request[] = {
    STR("plan_id", 1, L_ID),         STR("fixer", 1, L_NAME),      STRARR("files", 0, L_PATH),
    STR("base_commit", 1, L_COMMIT), STR_OPT("branch", 1, L_NAME),
};
static const s_field_t s_exec_result[] = {
    STR("plan_id", 1, L_ID),        ENUM("status", s_exec_status),
    STR_OPT("commit", 1, L_COMMIT), STRARR_OPT("files", 0, L_PATH),
    STR_OPT("diffstat", 0, 0),      STR_OPT("error", 0, 0),
    STR_OPT("cause", 1, L_WORD),    INT_OPT("attempt", 1),
    BOOL_OPT("replayed"),           INT_OPT("runs", 1),
};
static const s_field_t s_validate_request[] = {
    STR("plan_id", 1, L_ID),         STR("commit", 1, L_COMMIT),
    STR("base_commit", 1, L_COMMIT), STRARR_OPT("files", 0, L_PATH),
    STR_OPT("check", 1, L_NAME),     STR_OPT("fixer", 1, L_NAME),
    STR_OPT("tool", 1, L_NAME),      STRARR_OPT("findings", 0, L_WORD),
};
static const s_field_t s_validate_result[] = {
    STR("plan_id", 1, L_ID),        STR("validator", 1, L_NAME), ENUM("verdict", s_verdicts),
    STRARR_OPT("reasons", 0, 0),    MAP_OPT("details"),          STR_OPT("cause", 1, L_WORD),
    STR_OPT("commit", 1, L_COMMIT), INT_OPT("attempt", 1),       BOOL_OPT("replayed"),
};
static const s_field_t s_tests_base[] = {
    STR("commit", 1, L_COMMIT),
    BOOL("usable"),
    STR_OPT("reason", 0, 0),
    STR_OPT("cause", 1, L_WORD),
    INT("passed", 0),
    INT("failed", 0),
    INT("errors", 0),
    INT("skipped", 0),
    STR("source", 1, L_WORD),
    INT("duration_ms", 0),
    BOOL("cached"),
    STR_OPT("scan_id", 1, L_ID),
};
static const s_field_t s_plan_accepted[] = {
    STR("plan_id", 1, L_ID),
    STR("commit", 1, L_COMMIT),
    STR("branch", 1, L_NAME),
    STR_OPT("integrated", 1, L_NAME),
    STR_OPT("integrated_commit", 1, L_COMMIT),
    STR_OPT("recovered", 0, 0),
};
static const s_field_t s_plan_failed[] = {
    STR("plan_id", 1, L_ID),
    STR("state", 1, L_WORD),
    STR("reason", 0, 0),
    STR_OPT("cause", 1, L_WORD),
};
static const char *const s_outcomes[] = {"success", "failure", "ignored", NULL};
static const s_field_t s_learn_update[] = {
    STR("pattern", 1, 1024),     INT("success", 0),
    INT("failure", 0),           NUM("rate"),
    STR_OPT("plan_id", 1, L_ID), ENUM_OPT("outcome", s_outcomes),
    STR_OPT("cause", 1, L_WORD),
};
static const s_field_t s_request_cancel[] = {
    STR("id", 1, 64),
    STR_OPT("service", 1, L_NAME),
    STR_OPT("reason", 0, 0),
};
static const s_field_t s_request_started[] = {
    STR("id", 1, 64),
    STR("service", 1, L_NAME),
    STR_OPT("plan_id", 1, L_ID),
};
static const s_field_t s_feedback_decision[] = {
    STR("plan_id", 1, L_ID),
    ENUM("decision", s_decisions),
    STR_OPT("by", 0, L_NAME),
    STR_OPT("reason", 0, 0),
};
static const s_field_t s_status_reply[] = {
    F_("agents", S_MAPARR, false, 0, 0, 0, 0, NULL, NULL),
};
static const s_field_t s_error[] = {
    STR("code", 1, L_WORD),
    STR("message", 0, 0),
};
static const s_field_t s_test_event[] = {
    INT("seq", 0),
    STR_OPT("pad", 0, 0),
};

/* Sorted by type (strcmp) for the binary search; test_msg checks it */
static const s_schema_t s_schemas[] = {
    SCHEMA("agent.bye", s_agent_bye),
    SCHEMA("agent.exited", s_agent_exited),
    SCHEMA("agent.failed", s_agent_failed),
    SCHEMA("agent.heartbeat", s_agent_heartbeat),
    SCHEMA("agent.hello", s_agent_hello),
    SCHEMA("agent.log", s_agent_log),
    SCHEMA("agent.run", s_agent_run),
    SCHEMA("analysis.result", s_analysis_result),
    OPEN_SCHEMA("demo.echo"),
    SCHEMA("error", s_error),
    SCHEMA("exec.request", s_exec_request),
    SCHEMA("exec.result", s_exec_result),
    SCHEMA("feedback.decision", s_feedback_decision),
    SCHEMA("finding.batch", s_finding_batch),
    SCHEMA("learn.update", s_learn_update),
    SCHEMA("metric.batch", s_metric_batch),
    SCHEMA("plan.accepted", s_plan_accepted),
    SCHEMA("plan.approved", s_plan_decision),
    SCHEMA("plan.batch", s_plan_batch),
    SCHEMA("plan.failed", s_plan_failed),
    SCHEMA("plan.info", s_plan_info),
    SCHEMA("plan.proposed", s_plan),
    SCHEMA("plan.query", s_plan_query),
    SCHEMA("plan.ranked", s_plan_ranked),
    SCHEMA("plan.ready", s_plan),
    SCHEMA("plan.rejected", s_plan_rejected),
    SCHEMA("plan.state", s_plan_state),
    SCHEMA("request.cancel", s_request_cancel),
    SCHEMA("request.started", s_request_started),
    SCHEMA("scan.completed", s_scan_completed),
    SCHEMA("scan.started", s_scan_started),
    SCHEMA("status.reply", s_status_reply),
    OPEN_SCHEMA("status.request"),
    SCHEMA("test.event", s_test_event),
    SCHEMA("tests.base", s_tests_base),
    SCHEMA("validate.request", s_validate_request),
    SCHEMA("validate.result", s_validate_result),
};
#define S_NSCHEMAS (sizeof(s_schemas) / sizeof(s_schemas[0]))

static const s_schema_t *s_schema_find(const char *type)
{
    size_t lo = 0, hi = S_NSCHEMAS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(type, s_schemas[mid].type);
        if (cmp == 0)
            return &s_schemas[mid];
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

bool kz_msg_type_known(const char *type)
{
    return type && s_schema_find(type) != NULL;
}

static int s_check_schema(const s_schema_t *schema, const kz_val_t *map, s_path_t *path,
                          const kz_msg_limits_t *lim, kz_msg_err_t *err);

static int s_check_field(const s_field_t *f, const kz_val_t *v, s_path_t *path,
                         const kz_msg_limits_t *lim, kz_msg_err_t *err)
{
    switch ((s_kind_t)f->kind) {
    case S_STR: {
        if (v->type != KZ_VAL_STR)
            break;
        uint32_t max = f->max ? f->max : lim->max_str;
        if (v->u.str.len > max)
            return s_fail(err, path, KZ_EMSG_STRLEN, "string of %" PRIu32 " bytes exceeds %" PRIu32,
                          v->u.str.len, max);
        if (v->u.str.len < f->min)
            return s_fail(err, path, KZ_EMSG_VALUE, "string must not be empty");
        if (f->allowed) {
            for (const char *const *a = f->allowed; *a; a++)
                /* ptr is NUL-terminated; the length check catches an
                   embedded NUL after a matching prefix */
                if ((*a)[0] == v->u.str.ptr[0] && strcmp(*a, v->u.str.ptr) == 0 &&
                    strlen(*a) == v->u.str.len)
                    return 0;
            char shown[40];
            snprintf(shown, sizeof(shown), "%.32s", v->u.str.ptr);
            for (char *c = shown; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                    *c = '?';
            return s_fail(err, path, KZ_EMSG_VALUE, "'%s' is not an allowed value", shown);
        }
        return 0;
    }
    case S_INT:
        if (v->type == KZ_VAL_UINT)
            return s_fail(err, path, KZ_EMSG_VALUE, "integer out of range");
        if (v->type != KZ_VAL_INT)
            break;
        if (v->u.i < f->imin)
            return s_fail(err, path, KZ_EMSG_VALUE, "%" PRId64 " is below the minimum %" PRId64,
                          v->u.i, f->imin);
        return 0;
    case S_NUM:
        if (v->type == KZ_VAL_FLOAT || v->type == KZ_VAL_INT || v->type == KZ_VAL_UINT)
            return 0;
        return s_fail(err, path, KZ_EMSG_TYPE, "expected number, got %s", s_type_name(v->type));
    case S_BOOL:
        if (v->type != KZ_VAL_BOOL)
            break;
        return 0;
    case S_MAP:
        if (v->type != KZ_VAL_MAP)
            break;
        return 0;
    case S_STRMAP:
        if (v->type != KZ_VAL_MAP)
            break;
        for (uint32_t i = 0; i < v->u.map.count; i++) {
            const kz_kv_t *kv = &v->u.map.items[i];
            if (kv->val.type != KZ_VAL_STR) {
                s_path_key(path, kv->key.u.str.ptr, kv->key.u.str.len);
                int rc = s_fail(err, path, KZ_EMSG_TYPE, "expected string, got %s",
                                s_type_name(kv->val.type));
                s_path_pop(path);
                return rc;
            }
        }
        return 0;
    case S_STRARR:
    case S_MAPARR:
    case S_ARRAY: {
        if (v->type != KZ_VAL_ARRAY)
            break;
        uint32_t max = f->max ? f->max : lim->max_count;
        if (v->u.arr.count > max)
            return s_fail(err, path, KZ_EMSG_COUNT, "array of %" PRIu32 " entries exceeds %" PRIu32,
                          v->u.arr.count, max);
        if (f->kind == S_ARRAY)
            return 0;
        for (uint32_t i = 0; i < v->u.arr.count; i++) {
            const kz_val_t *item = &v->u.arr.items[i];
            int rc = 0;
            s_path_index(path, i);
            if (f->kind == S_STRARR) {
                uint32_t smax = f->smax ? f->smax : lim->max_str;
                if (item->type != KZ_VAL_STR)
                    rc = s_fail(err, path, KZ_EMSG_TYPE, "expected string, got %s",
                                s_type_name(item->type));
                else if (item->u.str.len < f->min)
                    rc = s_fail(err, path, KZ_EMSG_VALUE, "empty string");
                else if (item->u.str.len > smax)
                    rc = s_fail(err, path, KZ_EMSG_STRLEN,
                                "string of %" PRIu32 " bytes exceeds %" PRIu32, item->u.str.len,
                                smax);
            } else if (item->type != KZ_VAL_MAP) {
                rc = s_fail(err, path, KZ_EMSG_TYPE, "expected map, got %s",
                            s_type_name(item->type));
            } else if (f->sub) {
                rc = s_check_schema(f->sub, item, path, lim, err);
            }
            s_path_pop(path);
            if (rc)
                return rc;
        }
        return 0;
    }
    }
    static const char *const expected[] = {"string", "integer", "number", "boolean", "map",
                                           "map",    "array",   "array",  "array"};
    return s_fail(err, path, KZ_EMSG_TYPE, "expected %s, got %s", expected[f->kind],
                  s_type_name(v->type));
}

/* Check MAP against SCHEMA: required fields present, every known field of
   the right type and within its limits; unknown keys are ignored. */
static int s_check_schema(const s_schema_t *schema, const kz_val_t *map, s_path_t *path,
                          const kz_msg_limits_t *lim, kz_msg_err_t *err)
{
    /* senders usually put the fields in schema order: start each search
       where the last one succeeded */
    uint32_t count = map->u.map.count, hint = 0;
    for (size_t i = 0; i < schema->nfields; i++) {
        const s_field_t *f = &schema->fields[i];
        const kz_val_t *v = NULL;
        for (uint32_t n = 0, k = hint; n < count; n++, k = k + 1 < count ? k + 1 : 0) {
            const kz_val_t *key = &map->u.map.items[k].key;
            if (key->u.str.len == f->namelen && key->u.str.ptr[0] == f->name[0] &&
                s_memeq(key->u.str.ptr, f->name, f->namelen)) {
                v = &map->u.map.items[k].val;
                hint = k + 1 < count ? k + 1 : 0;
                break;
            }
        }
        s_path_key(path, f->name, f->namelen);
        int rc = 0;
        if (!v) {
            if (f->required)
                rc = s_fail(err, path, KZ_EMSG_MISSING, "required field is missing");
        } else {
            rc = s_check_field(f, v, path, lim, err);
        }
        s_path_pop(path);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Envelope                                                            */

/* Check the envelope fields of SELF (both after decoding and before
   encoding) and its body against the schema of its type. DECODED: the
   strings came from the decoder, which validated their UTF-8 already. */
static int s_check_envelope(const kz_msg_t *self, const kz_msg_limits_t *lim, bool decoded,
                            kz_msg_err_t *err)
{
    static const struct {
        const char *name;
        uint32_t min, max;
    } rules[S_NSTR] = {
        [S_ID] = {"id", 1, 64},      [S_TYPE] = {"type", 1, 64},      [S_SRC] = {"src", 1, 255},
        [S_CORR] = {"corr", 0, 128}, [S_TARGET] = {"target", 0, 255},
    };
    if (self->version != KZ_PROTO_VERSION)
        return s_fail(err, NULL, KZ_EMSG_VERSION, "v: version %d is not supported (expected %d)",
                      self->version, KZ_PROTO_VERSION);
    for (int i = 0; i < S_NSTR; i++) {
        const char *value = self->str[i].ptr;
        uint32_t len = self->str[i].len;
        if (!value) {
            if (rules[i].min)
                return s_fail(err, NULL, KZ_EMSG_MISSING, "%s: required field is missing",
                              rules[i].name);
            continue;
        }
        if (len > rules[i].max)
            return s_fail(err, NULL, KZ_EMSG_STRLEN,
                          "%s: string of %" PRIu32 " bytes exceeds %" PRIu32, rules[i].name, len,
                          rules[i].max);
        if (len < rules[i].min)
            return s_fail(err, NULL, KZ_EMSG_VALUE, "%s: string must not be empty", rules[i].name);
        if (!decoded && !s_utf8_valid(value, len))
            return s_fail(err, NULL, KZ_EMSG_UTF8, "%s: string is not valid utf-8", rules[i].name);
    }
    if (self->ts < 0)
        return s_fail(err, NULL, KZ_EMSG_VALUE, "ts: %" PRId64 " is negative", self->ts);
    if (!self->schema)
        return s_fail(err, NULL, KZ_EMSG_UNKNOWN, "type: unknown message type '%.64s'",
                      self->str[S_TYPE].ptr);
    if (self->body.type != KZ_VAL_MAP)
        return s_fail(err, NULL, KZ_EMSG_TYPE, "body: expected map, got %s",
                      s_type_name(self->body.type));
    s_path_t path;
    path.depth = 0;
    s_path_key(&path, "body", 4);
    return s_check_schema(self->schema, &self->body, &path, lim, err);
}

/* An envelope string: a string without NUL bytes */
static int s_env_str(kz_msg_t *self, const kz_val_t *v, int index, const char *name,
                     kz_msg_err_t *err)
{
    if (v->type != KZ_VAL_STR)
        return s_fail(err, NULL, KZ_EMSG_TYPE, "%s: expected string, got %s", name,
                      s_type_name(v->type));
    if (memchr(v->u.str.ptr, '\0', v->u.str.len))
        return s_fail(err, NULL, KZ_EMSG_VALUE, "%s: string contains a nul byte", name);
    self->str[index].ptr = v->u.str.ptr;
    self->str[index].len = v->u.str.len;
    return 0;
}

kz_msg_t *kz_msg_decode(const uint8_t *buf, size_t len, const kz_msg_limits_t *limits,
                        kz_msg_err_t *err)
{
    s_dec_t d;
    kz_kv_t root_items[16];
    kz_msg_t *self = s_decode_any(buf, len, limits, err, &d, root_items, 16);
    if (!self)
        return NULL;
    kz_val_t root = self->body;
    if (root.type != KZ_VAL_MAP) {
        s_fail(err, NULL, KZ_EMSG_TYPE, "envelope: expected map, got %s", s_type_name(root.type));
        goto fail;
    }
    /* pick the envelope keys out first, then check them in a fixed order:
       the version first, since a v2 envelope may differ in anything else */
    enum { E_V, E_ID, E_TYPE, E_SRC, E_TS, E_CORR, E_TARGET, E_BODY, E_DEADLINE, E_N };
    const kz_val_t *env[E_N] = {NULL};
    self->body.type = KZ_VAL_NIL;
    for (uint32_t i = 0; i < root.u.map.count; i++) {
        const kz_val_t *key = &root.u.map.items[i].key;
        const char *k = key->u.str.ptr;
        int slot = -1;
        switch (key->u.str.len) {
        case 1:
            slot = k[0] == 'v' ? E_V : -1;
            break;
        case 2:
            slot = memcmp(k, "id", 2) == 0 ? E_ID : memcmp(k, "ts", 2) == 0 ? E_TS : -1;
            break;
        case 3:
            slot = memcmp(k, "src", 3) == 0 ? E_SRC : -1;
            break;
        case 4:
            slot = memcmp(k, "type", 4) == 0   ? E_TYPE
                   : memcmp(k, "corr", 4) == 0 ? E_CORR
                   : memcmp(k, "body", 4) == 0 ? E_BODY
                                               : -1;
            break;
        case 6:
            slot = memcmp(k, "target", 6) == 0 ? E_TARGET : -1;
            break;
        case 8:
            slot = memcmp(k, "deadline", 8) == 0 ? E_DEADLINE : -1;
            break;
        default:
            break; /* unknown keys are ignored (forward compatibility) */
        }
        if (slot >= 0)
            env[slot] = &root.u.map.items[i].val;
    }
    const kz_val_t *v = env[E_V];
    if (!v) {
        s_fail(err, NULL, KZ_EMSG_MISSING, "v: required field is missing");
        goto fail;
    }
    if (v->type == KZ_VAL_UINT || (v->type == KZ_VAL_INT && v->u.i != KZ_PROTO_VERSION)) {
        s_fail(err, NULL, KZ_EMSG_VERSION,
               "v: version %s%" PRId64 " is not supported (expected %d)",
               v->type == KZ_VAL_UINT ? ">" : "", v->type == KZ_VAL_UINT ? INT64_MAX : v->u.i,
               KZ_PROTO_VERSION);
        goto fail;
    }
    if (v->type != KZ_VAL_INT) {
        s_fail(err, NULL, KZ_EMSG_TYPE, "v: expected integer, got %s", s_type_name(v->type));
        goto fail;
    }
    self->version = KZ_PROTO_VERSION;
    static const char *const names[] = {"v",    "id",     "type", "src",     "ts",
                                        "corr", "target", "body", "deadline"};
    static const int required_order[] = {E_TYPE, E_ID, E_SRC, E_TS, E_BODY};
    for (size_t i = 0; i < sizeof(required_order) / sizeof(required_order[0]); i++) {
        int slot = required_order[i];
        if (!env[slot]) {
            s_fail(err, NULL, KZ_EMSG_MISSING, "%s: required field is missing", names[slot]);
            goto fail;
        }
        if (slot == E_TYPE) {
            if (s_env_str(self, env[E_TYPE], S_TYPE, "type", err) != 0)
                goto fail;
            self->schema = s_schema_find(self->str[S_TYPE].ptr);
            if (!self->schema) {
                s_fail(err, NULL, KZ_EMSG_UNKNOWN, "type: unknown message type '%.64s'",
                       self->str[S_TYPE].ptr);
                goto fail;
            }
        }
    }
    if (s_env_str(self, env[E_ID], S_ID, "id", err) != 0 ||
        s_env_str(self, env[E_SRC], S_SRC, "src", err) != 0 ||
        (env[E_CORR] && s_env_str(self, env[E_CORR], S_CORR, "corr", err) != 0) ||
        (env[E_TARGET] && s_env_str(self, env[E_TARGET], S_TARGET, "target", err) != 0))
        goto fail;
    const kz_val_t *ts = env[E_TS];
    if (ts->type == KZ_VAL_UINT) {
        s_fail(err, NULL, KZ_EMSG_VALUE, "ts: integer out of range");
        goto fail;
    }
    if (ts->type != KZ_VAL_INT) {
        s_fail(err, NULL, KZ_EMSG_TYPE, "ts: expected integer, got %s", s_type_name(ts->type));
        goto fail;
    }
    self->ts = ts->u.i;
    const kz_val_t *dl = env[E_DEADLINE];
    if (dl && (dl->type == KZ_VAL_UINT || (dl->type == KZ_VAL_INT && dl->u.i < 0))) {
        s_fail(err, NULL, KZ_EMSG_VALUE, "deadline: integer out of range");
        goto fail;
    }
    if (dl && dl->type != KZ_VAL_INT) {
        s_fail(err, NULL, KZ_EMSG_TYPE, "deadline: expected integer, got %s",
               s_type_name(dl->type));
        goto fail;
    }
    self->deadline = dl ? dl->u.i : 0;
    const kz_val_t *body = env[E_BODY];
    self->body = *body;
    if (s_check_envelope(self, &d.lim, true, err) != 0)
        goto fail;
    return self;
fail:
    kz_msg_destroy(&self);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed;
} s_out_t;

static __attribute__((noinline)) int s_out_grow(s_out_t *out, size_t len)
{
    if (out->failed)
        return -1;
    size_t cap = out->cap ? out->cap : 512;
    while (cap - out->len < len) {
        if (cap > SIZE_MAX / 2) {
            out->failed = true;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *grown = realloc(out->data, cap);
    if (!grown) {
        out->failed = true;
        return -1;
    }
    out->data = grown;
    out->cap = cap;
    return 0;
}

/* The packer's write callback. Once a write failed, out->failed makes
   kz_msg_encode discard the output whatever later writes do. */
static int s_out_write(void *data, const char *buf, size_t len)
{
    s_out_t *out = data;
    if (out->cap - out->len < len && s_out_grow(out, len) != 0)
        return -1;
    uint8_t *dst = out->data + out->len;
    out->len += len;
    /* headers and most strings are short: copy them with fixed-size
       (possibly overlapping) moves instead of a call to memcpy */
    if (len >= 16) {
        memcpy(dst, buf, len);
    } else if (len >= 8) {
        memcpy(dst, buf, 8);
        memcpy(dst + len - 8, buf + len - 8, 8);
    } else if (len >= 4) {
        memcpy(dst, buf, 4);
        memcpy(dst + len - 4, buf + len - 4, 4);
    } else if (len >= 2) {
        memcpy(dst, buf, 2);
        memcpy(dst + len - 2, buf + len - 2, 2);
    } else if (len == 1) {
        *dst = (uint8_t)*buf;
    }
    return 0;
}

typedef struct {
    msgpack_packer pk;
    const kz_msg_limits_t *lim;
    uint64_t items;
    kz_msg_err_t *err;
    s_path_t path;
    s_scratch_t scratch;
} s_enc_t;

static inline void s_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Pack VAL (at nesting DEPTH) checking what a decoder would check */
static int s_pack_value(s_enc_t *e, const kz_val_t *val, uint32_t depth)
{
    switch (val->type) {
    case KZ_VAL_NIL:
        msgpack_pack_nil(&e->pk);
        return 0;
    case KZ_VAL_BOOL:
        if (val->u.b)
            msgpack_pack_true(&e->pk);
        else
            msgpack_pack_false(&e->pk);
        return 0;
    case KZ_VAL_INT:
        msgpack_pack_int64(&e->pk, val->u.i);
        return 0;
    case KZ_VAL_UINT:
        msgpack_pack_uint64(&e->pk, val->u.u);
        return 0;
    case KZ_VAL_FLOAT:
        msgpack_pack_double(&e->pk, val->u.f);
        return 0;
    case KZ_VAL_STR:
    case KZ_VAL_BIN:
        if (val->u.str.len > e->lim->max_str)
            return s_fail(
                e->err, &e->path, KZ_EMSG_STRLEN, "%s of %" PRIu32 " bytes exceeds %" PRIu32,
                val->type == KZ_VAL_STR ? "string" : "binary", val->u.str.len, e->lim->max_str);
        if (val->type == KZ_VAL_STR) {
            if (!s_utf8_valid(val->u.str.ptr, val->u.str.len))
                return s_fail(e->err, &e->path, KZ_EMSG_UTF8, "string is not valid utf-8");
            s_pack_str(&e->pk, val->u.str.ptr, val->u.str.len);
        } else {
            msgpack_pack_bin(&e->pk, val->u.str.len);
            msgpack_pack_bin_body(&e->pk, val->u.str.ptr, val->u.str.len);
        }
        return 0;
    case KZ_VAL_ARRAY:
    case KZ_VAL_MAP: {
        bool is_map = val->type == KZ_VAL_MAP;
        uint32_t n = is_map ? val->u.map.count : val->u.arr.count;
        if (depth + 1 > e->lim->max_depth || depth + 1 > KZ_DEPTH_HARD)
            return s_fail(e->err, &e->path, KZ_EMSG_DEPTH, "nesting deeper than %" PRIu32,
                          e->lim->max_depth);
        if (n > e->lim->max_count)
            return s_fail(e->err, &e->path, KZ_EMSG_COUNT,
                          "%s of %" PRIu32 " entries exceeds %" PRIu32, is_map ? "map" : "array", n,
                          e->lim->max_count);
        e->items += (uint64_t)n * (is_map ? 2 : 1);
        if (e->items > e->lim->max_items)
            return s_fail(e->err, &e->path, KZ_EMSG_ITEMS, "more than %" PRIu32 " values in total",
                          e->lim->max_items);
        if (!is_map) {
            msgpack_pack_array(&e->pk, n);
            for (uint32_t i = 0; i < n; i++) {
                s_path_index(&e->path, i);
                int rc = s_pack_value(e, &val->u.arr.items[i], depth + 1);
                if (rc)
                    return rc;
                s_path_pop(&e->path);
            }
            return 0;
        }
        msgpack_pack_map(&e->pk, n);
        for (uint32_t i = 0; i < n; i++) {
            const kz_kv_t *kv = &val->u.map.items[i];
            s_path_key(&e->path, kv->key.u.str.ptr, kv->key.u.str.len);
            if (kv->key.type != KZ_VAL_STR)
                return s_fail(e->err, &e->path, KZ_EMSG_KEY, "map key is not a string");
            int rc = s_pack_value(e, &kv->key, depth + 1);
            if (rc == 0)
                rc = s_pack_value(e, &kv->val, depth + 1);
            if (rc)
                return rc;
            s_path_pop(&e->path);
        }
        int64_t dup = s_find_dup(val, &e->scratch);
        if (dup == -2)
            return s_fail(e->err, &e->path, KZ_EMSG_NOMEM, "out of memory");
        if (dup >= 0) {
            const kz_val_t *key = &val->u.map.items[dup].key;
            s_path_key(&e->path, key->u.str.ptr, key->u.str.len);
            return s_fail(e->err, &e->path, KZ_EMSG_DUPKEY, "duplicate key");
        }
        return 0;
    }
    }
    return s_fail(e->err, &e->path, KZ_EMSG_TYPE, "value of unknown type %d", (int)val->type);
}

int kz_msg_encode(const kz_msg_t *self, uint8_t **buf_p, size_t *len_p, kz_msg_err_t *err)
{
    assert(self && buf_p && len_p);
    kz_msg_limits_t lim = kz_msg_limits_default();
    *buf_p = NULL;
    *len_p = 0;
    if (err) {
        err->code = KZ_MSG_OK;
        err->text[0] = '\0';
    }
    if (s_check_envelope(self, &lim, false, err) != 0)
        return -1;

    s_out_t out = {NULL, 0, 0, false};
    s_enc_t e;
    e.lim = &lim;
    e.items = 1;
    e.err = err;
    e.path.depth = 0;
    e.scratch.slots = NULL;
    e.scratch.cap = 0;
    msgpack_packer_init(&e.pk, &out, s_out_write);

    uint32_t n = 6 + (self->str[S_CORR].ptr != NULL) + (self->str[S_TARGET].ptr != NULL) +
                 (self->deadline > 0);
    e.items += 2 * n;
    msgpack_pack_map(&e.pk, n);
    s_pack_str(&e.pk, "v", 1);
    msgpack_pack_int(&e.pk, self->version);
    s_pack_str(&e.pk, "id", 2);
    s_pack_str(&e.pk, self->str[S_ID].ptr, self->str[S_ID].len);
    s_pack_str(&e.pk, "type", 4);
    s_pack_str(&e.pk, self->str[S_TYPE].ptr, self->str[S_TYPE].len);
    s_pack_str(&e.pk, "src", 3);
    s_pack_str(&e.pk, self->str[S_SRC].ptr, self->str[S_SRC].len);
    s_pack_str(&e.pk, "ts", 2);
    msgpack_pack_int64(&e.pk, self->ts);
    if (self->str[S_CORR].ptr) {
        s_pack_str(&e.pk, "corr", 4);
        s_pack_str(&e.pk, self->str[S_CORR].ptr, self->str[S_CORR].len);
    }
    if (self->str[S_TARGET].ptr) {
        s_pack_str(&e.pk, "target", 6);
        s_pack_str(&e.pk, self->str[S_TARGET].ptr, self->str[S_TARGET].len);
    }
    if (self->deadline > 0) {
        s_pack_str(&e.pk, "deadline", 8);
        msgpack_pack_int64(&e.pk, self->deadline);
    }
    s_pack_str(&e.pk, "body", 4);
    s_path_key(&e.path, "body", 4);
    int rc = s_pack_value(&e, &self->body, 1);
    free(e.scratch.slots);
    if (rc)
        goto fail;
    if (out.failed) {
        s_fail(err, NULL, KZ_EMSG_NOMEM, "out of memory");
        goto fail;
    }
    if (out.len > lim.max_size) {
        s_fail(err, NULL, KZ_EMSG_TOOBIG, "message of %zu bytes exceeds %zu", out.len,
               lim.max_size);
        goto fail;
    }
    *buf_p = out.data;
    *len_p = out.len;
    return 0;
fail:
    free(out.data);
    return -1;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} s_buf_t;

static void s_buf_put(s_buf_t *b, const char *s, size_t len)
{
    if (b->failed)
        return;
    if (b->cap - b->len <= len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= len)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void s_buf_cstr(s_buf_t *b, const char *s)
{
    s_buf_put(b, s, strlen(s));
}

static void s_json_str(s_buf_t *b, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    s_buf_put(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = s_utf8_seq(s + i, len - i);
            if (n) {
                i += n;
                continue;
            }
        }
        s_buf_put(b, str + run, i - run);
        char esc[8];
        switch (c) {
        case '"':
            s_buf_put(b, "\\\"", 2);
            break;
        case '\\':
            s_buf_put(b, "\\\\", 2);
            break;
        case '\n':
            s_buf_put(b, "\\n", 2);
            break;
        case '\r':
            s_buf_put(b, "\\r", 2);
            break;
        case '\t':
            s_buf_put(b, "\\t", 2);
            break;
        case '\b':
            s_buf_put(b, "\\b", 2);
            break;
        case '\f':
            s_buf_put(b, "\\f", 2);
            break;
        default:
            if (c >= 0x80) {
                s_buf_put(b, "\\ufffd", 6); /* invalid utf-8 byte */
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                s_buf_put(b, esc, 6);
            }
            break;
        }
        i++;
        run = i;
    }
    s_buf_put(b, str + run, i - run);
    s_buf_put(b, "\"", 1);
}

static void s_json_base64(s_buf_t *b, const unsigned char *s, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s_buf_put(b, "\"", 1);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        char quad[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63],
                        i + 1 < len ? tab[(v >> 6) & 63] : '=', i + 2 < len ? tab[v & 63] : '='};
        s_buf_put(b, quad, 4);
    }
    s_buf_put(b, "\"", 1);
}

static void s_json_value(s_buf_t *b, const kz_val_t *val, uint32_t depth)
{
    char num[40];
    if (depth > KZ_DEPTH_HARD) {
        s_buf_cstr(b, "null");
        return;
    }
    switch (val->type) {
    case KZ_VAL_NIL:
        s_buf_cstr(b, "null");
        break;
    case KZ_VAL_BOOL:
        s_buf_cstr(b, val->u.b ? "true" : "false");
        break;
    case KZ_VAL_INT:
        s_buf_put(b, num, (size_t)snprintf(num, sizeof(num), "%" PRId64, val->u.i));
        break;
    case KZ_VAL_UINT:
        s_buf_put(b, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, val->u.u));
        break;
    case KZ_VAL_FLOAT:
        if (isfinite(val->u.f)) {
            /* the shortest of 15, 16, 17 digits that reads back exactly:
               0.1 stays "0.1", not "0.10000000000000001" */
            int n = 0;
            for (int digits = 15; digits <= 17; digits++) {
                n = snprintf(num, sizeof(num), "%.*g", digits, val->u.f);
                if (strtod(num, NULL) == val->u.f)
                    break;
            }
            s_buf_put(b, num, (size_t)n);
        } else
            s_buf_cstr(b, "null");
        break;
    case KZ_VAL_STR:
        s_json_str(b, val->u.str.ptr, val->u.str.len);
        break;
    case KZ_VAL_BIN:
        s_json_base64(b, (const unsigned char *)val->u.str.ptr, val->u.str.len);
        break;
    case KZ_VAL_ARRAY:
        s_buf_put(b, "[", 1);
        for (uint32_t i = 0; i < val->u.arr.count; i++) {
            if (i)
                s_buf_put(b, ",", 1);
            s_json_value(b, &val->u.arr.items[i], depth + 1);
        }
        s_buf_put(b, "]", 1);
        break;
    case KZ_VAL_MAP:
        s_buf_put(b, "{", 1);
        for (uint32_t i = 0; i < val->u.map.count; i++) {
            const kz_kv_t *kv = &val->u.map.items[i];
            if (i)
                s_buf_put(b, ",", 1);
            s_json_str(b, kv->key.u.str.ptr, kv->key.u.str.len);
            s_buf_put(b, ":", 1);
            s_json_value(b, &kv->val, depth + 1);
        }
        s_buf_put(b, "}", 1);
        break;
    }
}

static char *s_buf_finish(s_buf_t *b)
{
    if (b->failed) {
        free(b->data);
        return NULL;
    }
    if (!b->data) {
        s_buf_put(b, "", 0);
        if (b->failed)
            return NULL;
    }
    return b->data;
}

char *kz_val_to_json(const kz_val_t *val)
{
    s_buf_t b = {NULL, 0, 0, false};
    if (val)
        s_json_value(&b, val, 0);
    else
        s_buf_cstr(&b, "null");
    return s_buf_finish(&b);
}

static void s_json_field(s_buf_t *b, const char *key, const char *value, uint32_t len)
{
    if (!value)
        return;
    s_buf_put(b, ",\"", 2);
    s_buf_cstr(b, key);
    s_buf_put(b, "\":", 2);
    s_json_str(b, value, len);
}

char *kz_msg_to_json(const kz_msg_t *self)
{
    s_buf_t b = {NULL, 0, 0, false};
    char num[40];
    s_buf_put(&b, num, (size_t)snprintf(num, sizeof(num), "{\"v\":%d", self->version));
    s_json_field(&b, "id", self->str[S_ID].ptr, self->str[S_ID].len);
    s_json_field(&b, "type", self->str[S_TYPE].ptr, self->str[S_TYPE].len);
    s_json_field(&b, "src", self->str[S_SRC].ptr, self->str[S_SRC].len);
    s_buf_put(&b, num, (size_t)snprintf(num, sizeof(num), ",\"ts\":%" PRId64, self->ts));
    s_json_field(&b, "corr", self->str[S_CORR].ptr, self->str[S_CORR].len);
    s_json_field(&b, "target", self->str[S_TARGET].ptr, self->str[S_TARGET].len);
    if (self->deadline > 0)
        s_buf_put(&b, num,
                  (size_t)snprintf(num, sizeof(num), ",\"deadline\":%" PRId64, self->deadline));
    s_buf_cstr(&b, ",\"body\":");
    s_json_value(&b, &self->body, 0);
    s_buf_put(&b, "}", 1);
    return s_buf_finish(&b);
}

/* ------------------------------------------------------------ copying */

int kz_val_copy(kz_msg_t *dst, kz_val_t *to, const kz_val_t *from)
{
    switch (from->type) {
    case KZ_VAL_NIL:
        to->type = KZ_VAL_NIL;
        return 0;
    case KZ_VAL_BOOL:
        kz_val_set_bool(to, from->u.b);
        return 0;
    case KZ_VAL_INT:
        kz_val_set_int(to, from->u.i);
        return 0;
    case KZ_VAL_UINT:
        to->type = KZ_VAL_UINT;
        to->u.u = from->u.u;
        return 0;
    case KZ_VAL_FLOAT:
        kz_val_set_float(to, from->u.f);
        return 0;
    case KZ_VAL_STR:
        return kz_val_set_strn(dst, to, from->u.str.ptr, from->u.str.len);
    case KZ_VAL_BIN:
        return kz_val_set_bin(dst, to, from->u.str.ptr, from->u.str.len);
    case KZ_VAL_ARRAY:
        kz_val_set_array(to);
        for (uint32_t i = 0; i < from->u.arr.count; i++) {
            kz_val_t *slot = kz_array_push(dst, to);
            if (!slot || kz_val_copy(dst, slot, &from->u.arr.items[i]) != 0)
                return -1;
        }
        return 0;
    case KZ_VAL_MAP:
        kz_val_set_map(to);
        for (uint32_t i = 0; i < from->u.map.count; i++) {
            const kz_kv_t *kv = &from->u.map.items[i];
            kz_val_t *slot = kz_map_putn(dst, to, kv->key.u.str.ptr, kv->key.u.str.len);
            if (!slot || kz_val_copy(dst, slot, &kv->val) != 0)
                return -1;
        }
        return 0;
    }
    return -1;
}

bool kz_id_valid(const char *id)
{
    if (!id || !*id)
        return false;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++)
        if (n >= 128 || !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    return true;
}

/* ------------------------------------------------------------------ */
/* Peeking at an envelope                                              */

/* A cursor over BUF for kz_msg_peek: reads check the end, skips are
   bounded in depth */
typedef struct {
    const uint8_t *p, *end;
} s_peek_t;

static bool s_peek_take(s_peek_t *c, size_t n, const uint8_t **out)
{
    if ((size_t)(c->end - c->p) < n)
        return false;
    if (out)
        *out = c->p;
    c->p += n;
    return true;
}

static bool s_peek_be(s_peek_t *c, size_t n, uint64_t *v)
{
    const uint8_t *b;
    if (!s_peek_take(c, n, &b))
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = (*v << 8) | b[i];
    return true;
}

/* A string header: its bytes in *S, *LEN; false when not a string */
static bool s_peek_str(s_peek_t *c, const uint8_t **s, size_t *len)
{
    const uint8_t *b;
    uint64_t n;
    if (!s_peek_take(c, 1, &b))
        return false;
    if ((*b & 0xe0) == 0xa0)
        n = *b & 0x1f;
    else if (*b == 0xd9 || *b == 0xda || *b == 0xdb) {
        if (!s_peek_be(c, (size_t)1 << (*b - 0xd9), &n))
            return false;
    } else
        return false;
    if (n > (uint64_t)(c->end - c->p))
        return false;
    *len = (size_t)n;
    return s_peek_take(c, *len, s);
}

/* An integer that fits int64; false otherwise */
static bool s_peek_int(s_peek_t *c, int64_t *v)
{
    const uint8_t *b;
    uint64_t u;
    if (!s_peek_take(c, 1, &b))
        return false;
    if (*b <= 0x7f) {
        *v = *b;
        return true;
    }
    if (*b >= 0xe0) {
        *v = (int8_t)*b;
        return true;
    }
    if (*b >= 0xcc && *b <= 0xcf) { /* uint 8..64 */
        if (!s_peek_be(c, (size_t)1 << (*b - 0xcc), &u) || u > INT64_MAX)
            return false;
        *v = (int64_t)u;
        return true;
    }
    if (*b >= 0xd0 && *b <= 0xd3) { /* int 8..64 */
        size_t n = (size_t)1 << (*b - 0xd0);
        if (!s_peek_be(c, n, &u))
            return false;
        if (n < 8 && (u >> (8 * n - 1)) & 1)
            u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        *v = (int64_t)u;
        return true;
    }
    return false;
}

/* Skip one value, at most DEPTH levels of nesting; false when malformed */
static bool s_peek_skip(s_peek_t *c, int depth)
{
    const uint8_t *b;
    uint64_t n = 0, items = 0;
    if (depth > 16 || !s_peek_take(c, 1, &b))
        return false;
    uint8_t t = *b;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return true;
    if ((t & 0xe0) == 0xa0)
        return s_peek_take(c, t & 0x1f, NULL);
    if ((t & 0xf0) == 0x90)
        items = t & 0x0f;
    else if ((t & 0xf0) == 0x80)
        items = 2 * (uint64_t)(t & 0x0f);
    else if (t >= 0xcc && t <= 0xcf)
        return s_peek_take(c, (size_t)1 << (t - 0xcc), NULL);
    else if (t >= 0xd0 && t <= 0xd3)
        return s_peek_take(c, (size_t)1 << (t - 0xd0), NULL);
    else if (t == 0xca || t == 0xcb)
        return s_peek_take(c, t == 0xca ? 4 : 8, NULL);
    else if (t == 0xd9 || t == 0xda || t == 0xdb || t == 0xc4 || t == 0xc5 || t == 0xc6) {
        size_t w = t >= 0xd9 ? (size_t)1 << (t - 0xd9) : (size_t)1 << (t - 0xc4);
        if (!s_peek_be(c, w, &n) || n > (uint64_t)(c->end - c->p))
            return false;
        return s_peek_take(c, (size_t)n, NULL);
    } else if (t == 0xdc || t == 0xdd || t == 0xde || t == 0xdf) {
        if (!s_peek_be(c, t == 0xdc || t == 0xde ? 2 : 4, &n))
            return false;
        items = t >= 0xde ? 2 * n : n;
    } else
        return false; /* extension types and 0xc1: not in a kaizen message */
    /* each item takes at least one byte: refuse counts the input cannot hold */
    if (items > (uint64_t)(c->end - c->p))
        return false;
    for (uint64_t i = 0; i < items; i++)
        if (!s_peek_skip(c, depth + 1))
            return false;
    return true;
}

int kz_msg_peek(const uint8_t *buf, size_t len, kz_msg_peek_t *out)
{
    memset(out, 0, sizeof *out);
    if (!buf || len == 0)
        return -1;
    s_peek_t c = {buf, buf + len};
    const uint8_t *b;
    uint64_t n;
    if (!s_peek_take(&c, 1, &b))
        return -1;
    if ((*b & 0xf0) == 0x80)
        n = *b & 0x0f;
    else if (*b == 0xde || *b == 0xdf) {
        if (!s_peek_be(&c, *b == 0xde ? 2 : 4, &n))
            return -1;
    } else
        return -1;
    if (n > 64)
        return -1; /* an envelope has 8 keys and a few unknown ones at most */
    bool have_v = false, have_id = false, have_ts = false;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *k;
        size_t klen;
        if (!s_peek_str(&c, &k, &klen))
            return -1;
        const uint8_t *s;
        size_t slen;
        int64_t v;
        if (klen == 1 && k[0] == 'v') {
            if (!s_peek_int(&c, &v) || v != KZ_PROTO_VERSION)
                return -1;
            have_v = true;
        } else if (klen == 2 && memcmp(k, "id", 2) == 0) {
            if (!s_peek_str(&c, &s, &slen) || slen == 0 || slen >= sizeof out->id ||
                memchr(s, '\0', slen))
                return -1;
            memcpy(out->id, s, slen);
            out->id[slen] = '\0';
            have_id = true;
        } else if (klen == 3 && memcmp(k, "src", 3) == 0) {
            if (!s_peek_str(&c, &s, &slen) || slen >= sizeof out->src || memchr(s, '\0', slen))
                return -1;
            memcpy(out->src, s, slen);
            out->src[slen] = '\0';
        } else if (klen == 2 && memcmp(k, "ts", 2) == 0) {
            if (!s_peek_int(&c, &out->ts) || out->ts < 0)
                return -1;
            have_ts = true;
        } else if (klen == 8 && memcmp(k, "deadline", 8) == 0) {
            if (!s_peek_int(&c, &out->deadline) || out->deadline < 0)
                return -1;
        } else if (!s_peek_skip(&c, 1))
            return -1;
    }
    return have_v && have_id && have_ts ? 0 : -1;
}
