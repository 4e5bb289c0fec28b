/*  json.c - JSON on the command line: JSON text to kz_val (for `kaizen
    publish` and `kaizen call` bodies), envelopes built from it, and
    kz_val printed as indented JSON for people

    Parsing is jansson's (duplicate keys refused, no NUL in strings); the
    conversion caps the nesting so a hostile argument cannot recurse us
    deep, and the codec's own limits are enforced afterwards by encoding
    (kz_cli_check_msg) so we never publish what a peer must refuse.
*/
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Deeper than the codec's max_depth (16) so its error, which names the
   field, is what a user sees; low enough to keep the recursion short */
#define S_MAX_DEPTH 64

/* Store the jansson value J in the slot TO of MSG. 0, -1 out of memory,
   -2 too deep (ERR set) */
static int s_convert(kz_msg_t *msg, kz_val_t *to, const json_t *j, int depth, char *err,
                     size_t errlen)
{
    if (depth > S_MAX_DEPTH) {
        snprintf(err, errlen, "JSON nested deeper than %d levels", S_MAX_DEPTH);
        return -2;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        kz_val_set_map(to);
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)j, key, value)
        {
            kz_val_t *slot = kz_map_put(msg, to, key);
            if (!slot)
                return -1;
            int rc = s_convert(msg, slot, value, depth + 1, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case JSON_ARRAY: {
        kz_val_set_array(to);
        size_t i;
        json_t *value;
        json_array_foreach(j, i, value)
        {
            kz_val_t *slot = kz_array_push(msg, to);
            if (!slot)
                return -1;
            int rc = s_convert(msg, slot, value, depth + 1, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case JSON_STRING:
        return kz_val_set_strn(msg, to, json_string_value(j), json_string_length(j)) == 0 ? 0 : -1;
    case JSON_INTEGER:
        kz_val_set_int(to, (int64_t)json_integer_value(j));
        return 0;
    case JSON_REAL:
        kz_val_set_float(to, json_real_value(j));
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        kz_val_set_bool(to, json_is_true(j));
        return 0;
    case JSON_NULL:
    default:
        to->type = KZ_VAL_NIL;
        return 0;
    }
}

int kz_cli_json_to_val(kz_msg_t *msg, kz_val_t *to, const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "invalid JSON at line %d, column %d (byte %d): %s", jerr.line,
                 jerr.column, jerr.position, jerr.text);
        return -2;
    }
    int rc = s_convert(msg, to, root, 1, err, errlen);
    if (rc == -1)
        snprintf(err, errlen, "out of memory");
    json_decref(root);
    return rc;
}

kz_msg_t *kz_cli_json_msg(const char *cmd, const char *type, const char *body_json, int *rc)
{
    char err[512] = "";
    if (!kz_msg_type_known(type)) {
        *rc = kz_cli_error(cmd, "unknown message type '%s' (see proto/PROTOCOL.md for the list)",
                           type);
        return NULL;
    }
    kz_msg_t *msg = kz_msg_new(type);
    if (!msg) {
        *rc = kz_cli_error(cmd, "out of memory");
        return NULL;
    }
    if (body_json) {
        kz_val_t *body = kz_msg_body(msg);
        int crc = kz_cli_json_to_val(msg, body, body_json, err, sizeof err);
        if (crc == -1) {
            *rc = kz_cli_error(cmd, "out of memory");
        } else if (crc != 0) {
            *rc = kz_cli_usage(cmd, "BODY-JSON: %s", err);
        } else if (body->type != KZ_VAL_MAP) {
            *rc = kz_cli_usage(cmd, "BODY-JSON must be a JSON object, e.g. '{\"key\":\"value\"}'");
        } else {
            *rc = KZ_EXIT_OK;
            return msg;
        }
        kz_msg_destroy(&msg);
        return NULL;
    }
    *rc = KZ_EXIT_OK;
    return msg;
}

int kz_cli_check_msg(const char *cmd, const kz_msg_t *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    kz_msg_err_t err = {0, ""};
    int rc = kz_msg_encode(msg, &buf, &len, &err);
    free(buf);
    if (rc != 0)
        return kz_cli_error(cmd, "invalid %s message: %s", kz_msg_type(msg), err.text);
    return KZ_EXIT_OK;
}

/* Leaves (strings, numbers, binary) go through kz_val_to_json so their
   rendering is exactly that of `--json` output and logs */
static void s_print_leaf(FILE *out, const kz_val_t *val)
{
    char *text = kz_val_to_json(val);
    fputs(text ? text : "null", out);
    free(text);
}

void kz_cli_print_json(FILE *out, const kz_val_t *val, int indent)
{
    if (val->type == KZ_VAL_MAP && val->u.map.count > 0) {
        fputs("{\n", out);
        for (uint32_t i = 0; i < val->u.map.count; i++) {
            const kz_kv_t *kv = &val->u.map.items[i];
            fprintf(out, "%*s", indent + 2, "");
            kz_cli_json_str(out, kv->key.u.str.ptr, kv->key.u.str.len);
            fputs(": ", out);
            kz_cli_print_json(out, &kv->val, indent + 2);
            fputs(i + 1 < val->u.map.count ? ",\n" : "\n", out);
        }
        fprintf(out, "%*s}", indent, "");
    } else if (val->type == KZ_VAL_ARRAY && val->u.arr.count > 0) {
        fputs("[\n", out);
        for (uint32_t i = 0; i < val->u.arr.count; i++) {
            fprintf(out, "%*s", indent + 2, "");
            kz_cli_print_json(out, &val->u.arr.items[i], indent + 2);
            fputs(i + 1 < val->u.arr.count ? ",\n" : "\n", out);
        }
        fprintf(out, "%*s]", indent, "");
    } else {
        s_print_leaf(out, val);
    }
}
