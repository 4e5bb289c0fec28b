/*  kz_msg.h - the kaizen message envelope and its msgpack codec

    Every message on the bus is one msgpack map (proto/PROTOCOL.md):
      v, id, type, src, ts, corr, target, body
    A kz_msg_t owns an arena; every value reachable from it (strings,
    body tree) lives in that arena and dies with kz_msg_destroy.

    Decoding works on a buffer, checks every read against its end, and
    enforces the limits in kz_msg_limits_t before allocating anything
    sized by the input. Each class of malformed input has its own code.
*/
#ifndef KZ_MSG_H_INCLUDED
#define KZ_MSG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KZ_PROTO_VERSION 1

/* Error codes returned (negated) by the decoder; kz_msg_strerror names them */
typedef enum {
    KZ_MSG_OK = 0,
    KZ_EMSG_TRUNCATED = 1, /* input ends inside a value */
    KZ_EMSG_TRAILING = 2,  /* bytes left after the envelope */
    KZ_EMSG_BADBYTE = 3,   /* a byte that starts no msgpack value (0xc1) */
    KZ_EMSG_TYPE = 4,      /* a value of the wrong msgpack type */
    KZ_EMSG_TOOBIG = 5,    /* whole message larger than max_size */
    KZ_EMSG_STRLEN = 6,    /* string or binary longer than its limit */
    KZ_EMSG_COUNT = 7,     /* array or map with too many entries */
    KZ_EMSG_DEPTH = 8,     /* nesting deeper than max_depth */
    KZ_EMSG_ITEMS = 9,     /* more values in total than max_items */
    KZ_EMSG_MISSING = 10,  /* a required field is absent */
    KZ_EMSG_DUPKEY = 11,   /* the same key twice in one map */
    KZ_EMSG_VERSION = 12,  /* unsupported protocol version */
    KZ_EMSG_UNKNOWN = 13,  /* unknown message type */
    KZ_EMSG_VALUE = 14,    /* a value outside its allowed set or range */
    KZ_EMSG_UTF8 = 15,     /* a string that is not valid UTF-8 */
    KZ_EMSG_NOMEM = 16,    /* allocation failed */
    KZ_EMSG_KEY = 17,      /* a map key that is not a string */
} kz_msg_code_t;

/* Error detail: code plus a lowercase message naming the field */
typedef struct {
    int code;
    char text[192];
} kz_msg_err_t;

/* Limits enforced by the decoder (and by the encoder, so we never emit
   what a peer must refuse). kz_msg_limits_default() gives the values of
   proto/PROTOCOL.md. */
typedef struct {
    size_t max_size;    /* whole encoded message, bytes */
    uint32_t max_str;   /* one string or binary, bytes */
    uint32_t max_count; /* entries in one array or map */
    uint32_t max_depth; /* nesting of maps and arrays, envelope = 1 */
    uint32_t max_items; /* values in the whole message */
} kz_msg_limits_t;

kz_msg_limits_t kz_msg_limits_default(void);

/* A decoded or built msgpack value. Read-only view for consumers. */
typedef enum {
    KZ_VAL_NIL,
    KZ_VAL_BOOL,
    KZ_VAL_INT,  /* fits int64 */
    KZ_VAL_UINT, /* > INT64_MAX */
    KZ_VAL_FLOAT,
    KZ_VAL_STR,
    KZ_VAL_BIN,
    KZ_VAL_ARRAY,
    KZ_VAL_MAP
} kz_val_type_t;

typedef struct kz_val kz_val_t;
typedef struct kz_kv kz_kv_t;

struct kz_val {
    kz_val_type_t type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double f;
        struct {
            const char *ptr;
            uint32_t len;
        } str; /* STR and BIN; STR is NUL-terminated */
        struct {
            kz_val_t *items;
            uint32_t count;
            uint32_t cap;
        } arr;
        struct {
            kz_kv_t *items;
            uint32_t count;
            uint32_t cap;
        } map;
    } u;
};

struct kz_kv {
    kz_val_t key; /* always KZ_VAL_STR */
    kz_val_t val;
};

typedef struct kz_msg kz_msg_t;

/* Create a message of TYPE with v=1, a fresh sortable id, ts=now and an
   empty body map. Returns NULL on allocation failure. */
kz_msg_t *kz_msg_new(const char *type);
void kz_msg_destroy(kz_msg_t **self_p);

/* Envelope accessors; strings are never NULL for required fields of a
   decoded message, optional ones (corr, target) may be NULL */
int kz_msg_version(const kz_msg_t *self);
const char *kz_msg_id(const kz_msg_t *self);
const char *kz_msg_type(const kz_msg_t *self);
const char *kz_msg_src(const kz_msg_t *self);
int64_t kz_msg_ts(const kz_msg_t *self);
const char *kz_msg_corr(const kz_msg_t *self);
const char *kz_msg_target(const kz_msg_t *self);

/* Setters copy the string into the message's arena; 0 or -1 */
int kz_msg_set_id(kz_msg_t *self, const char *id);
int kz_msg_set_src(kz_msg_t *self, const char *src);
int kz_msg_set_corr(kz_msg_t *self, const char *corr);
int kz_msg_set_target(kz_msg_t *self, const char *target);
void kz_msg_set_ts(kz_msg_t *self, int64_t ts_us);

/* The request's deadline (envelope "deadline"): microseconds since the
   epoch after which the sender no longer waits for a reply; 0 = none.
   Setting 0 (or a negative value) removes it. */
int64_t kz_msg_deadline(const kz_msg_t *self);
void kz_msg_set_deadline(kz_msg_t *self, int64_t deadline_us);

/* The body map: mutable for building, read-only after decode by convention */
kz_val_t *kz_msg_body(kz_msg_t *self);
const kz_val_t *kz_msg_body_const(const kz_msg_t *self);

/* Building values inside SELF's arena. A container's items are stored
   contiguously and move when it grows: a slot pointer returned by
   kz_map_put / kz_array_push (or kz_map_put_map / _array) stays valid only
   until the next item is added to that same container. Fill a nested
   container before adding more items to its parent, or look it up again
   with kz_map_get. kz_map_put adds KEY to MAP and returns the new value
   slot (NIL) to fill; kz_array_push likewise.
   The kz_map_put_* helpers combine both. NULL/-1 on allocation failure
   or when MAP/ARR is not a map/array. */
kz_val_t *kz_map_put(kz_msg_t *self, kz_val_t *map, const char *key);
/* The same with a key of KEYLEN bytes, which may contain NUL */
kz_val_t *kz_map_putn(kz_msg_t *self, kz_val_t *map, const char *key, size_t keylen);
kz_val_t *kz_array_push(kz_msg_t *self, kz_val_t *arr);
int kz_val_set_str(kz_msg_t *self, kz_val_t *val, const char *str);
int kz_val_set_strn(kz_msg_t *self, kz_val_t *val, const char *str, size_t len);
int kz_val_set_bin(kz_msg_t *self, kz_val_t *val, const void *data, size_t len);
void kz_val_set_int(kz_val_t *val, int64_t i);
void kz_val_set_bool(kz_val_t *val, bool b);
void kz_val_set_float(kz_val_t *val, double f);
void kz_val_set_map(kz_val_t *val);   /* empty map */
void kz_val_set_array(kz_val_t *val); /* empty array */
int kz_map_put_str(kz_msg_t *self, kz_val_t *map, const char *key, const char *str);
int kz_map_put_int(kz_msg_t *self, kz_val_t *map, const char *key, int64_t i);
int kz_map_put_bool(kz_msg_t *self, kz_val_t *map, const char *key, bool b);
int kz_map_put_float(kz_msg_t *self, kz_val_t *map, const char *key, double f);
kz_val_t *kz_map_put_map(kz_msg_t *self, kz_val_t *map, const char *key);
kz_val_t *kz_map_put_array(kz_msg_t *self, kz_val_t *map, const char *key);

/* Deep-copy FROM (from any message) into the slot TO of SELF's arena,
   e.g. to echo a request's body into a reply. 0 / -1 on allocation failure */
int kz_val_copy(kz_msg_t *self, kz_val_t *to, const kz_val_t *from);

/* Reading. kz_map_get returns NULL when KEY is absent or MAP is not a map.
   The typed getters return DFLT (or NULL) when absent or of another type. */
const kz_val_t *kz_map_get(const kz_val_t *map, const char *key);
const char *kz_map_str(const kz_val_t *map, const char *key);
int64_t kz_map_int(const kz_val_t *map, const char *key, int64_t dflt);
bool kz_map_bool(const kz_val_t *map, const char *key, bool dflt);
double kz_map_float(const kz_val_t *map, const char *key, double dflt);

/* Encode into a malloc'd buffer (*buf_p, *len_p); the caller frees it.
   The message is validated against its type's schema and the default
   limits first. 0 on success, -1 with ERR filled (ERR may be NULL). */
int kz_msg_encode(const kz_msg_t *self, uint8_t **buf_p, size_t *len_p, kz_msg_err_t *err);

/* Decode BUF[0..LEN) with LIMITS (NULL = defaults). Returns a new message,
   or NULL with ERR->code a kz_msg_code_t and ERR->text saying what and
   where (e.g. "body.findings[3].line: expected integer"). */
kz_msg_t *kz_msg_decode(const uint8_t *buf, size_t len, const kz_msg_limits_t *limits,
                        kz_msg_err_t *err);

/* Decode any msgpack value (not an envelope) with the same checks; used
   by the tap header and tools. The value lives in the returned message's
   arena: kz_msg_body_const(result). NULL on error. */
kz_msg_t *kz_msg_decode_value(const uint8_t *buf, size_t len, const kz_msg_limits_t *limits,
                              kz_msg_err_t *err);

/* What the broker needs of a request without decoding it: the envelope's
   id, src, ts and deadline (0 when absent). kz_msg_peek walks only the
   top-level map of BUF[0..LEN) (nested values are skipped, bounds and
   depth checked) and returns 0 when it is a version-1 envelope with an
   id and a ts, -1 otherwise (a stock Majordomo client's body, garbage).
   It does not check the rest of the message: a worker still decodes it. */
typedef struct {
    char id[65];
    char src[256];
    int64_t ts;
    int64_t deadline;
} kz_msg_peek_t;
int kz_msg_peek(const uint8_t *buf, size_t len, kz_msg_peek_t *out);

/* Short constant name for a code: "truncated", "trailing bytes", ... */
const char *kz_msg_strerror(int code);

/* True when TYPE is a message type of proto/PROTOCOL.md */
bool kz_msg_type_known(const char *type);

/* Write VAL as JSON (UTF-8, strings escaped, bin as base64 string) into a
   malloc'd NUL-terminated string. NULL on allocation failure. Used by
   `kaizen monitor --json` and logs. */
char *kz_val_to_json(const kz_val_t *val);
/* The whole envelope as one JSON object (body included) */
char *kz_msg_to_json(const kz_msg_t *self);

/* Fill BUF (at least 27 bytes) with a new ULID: 26 Crockford base32
   characters, time-sortable, unique within the process. */
void kz_ulid(char *buf);

/* True when ID (a plan or scan id from a message) is 1..128 characters of
   [A-Za-z0-9_-]: safe in branch names ("kaizen/plan-ID") and file names */
bool kz_id_valid(const char *id);

/* Microseconds since the epoch (CLOCK_REALTIME) */
int64_t kz_now_us(void);

#endif
