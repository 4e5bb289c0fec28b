/*  fuzz_msg.c - libFuzzer target for the message codec (proto/kz_msg.c)

    Decodes the input as an envelope and as a bare value. When the
    envelope decodes, it must encode again (the encoder checks what the
    decoder checked), and decoding that encoding must give the same JSON
    rendering: the codec is a fixed point after one round.

    kz_msg_peek (what the broker reads of a request) must never read past
    the input and must agree with the decoder on every envelope the
    decoder accepts.

    Seed corpus: tests/fuzz/corpus/msg/ (one valid message of each core
    type, written by `KZ_MSG_CORPUS=DIR test_msg`; TYPE-FIELD.msgpack are
    later ones with an optional field the first ones lack).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_check_value(const uint8_t *data, size_t size)
{
    kz_msg_err_t err;
    kz_msg_t *val = kz_msg_decode_value(data, size, NULL, &err);
    if (!val) {
        if (err.code <= 0 || err.code > KZ_EMSG_KEY || err.text[0] == '\0')
            abort(); /* every failure names its code and says why */
        return;
    }
    char *json = kz_val_to_json(kz_msg_body_const(val));
    if (!json)
        abort();
    free(json);
    kz_msg_destroy(&val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_check_value(data, size);

    /* the broker's peek reads any input without crashing; what decodes
       as an envelope, it reads the same way as the decoder */
    kz_msg_peek_t pk;
    int peeked = kz_msg_peek(data, size, &pk);

    kz_msg_err_t err;
    kz_msg_t *msg = kz_msg_decode(data, size, NULL, &err);
    if (msg && (peeked != 0 || strcmp(pk.id, kz_msg_id(msg)) != 0 || pk.ts != kz_msg_ts(msg) ||
                pk.deadline != kz_msg_deadline(msg) || strcmp(pk.src, kz_msg_src(msg)) != 0))
        abort();
    if (!msg) {
        if (err.code <= 0 || err.code > KZ_EMSG_KEY || err.text[0] == '\0')
            abort();
        return 0;
    }
    char *json1 = kz_msg_to_json(msg);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (kz_msg_encode(msg, &buf, &len, &err) != 0) {
        /* float32 values grow to float64 on re-encoding: only size may fail */
        if (err.code != KZ_EMSG_TOOBIG) {
            fprintf(stderr, "re-encode failed: %s (%s)\n", kz_msg_strerror(err.code), err.text);
            abort();
        }
        free(json1);
        kz_msg_destroy(&msg);
        return 0;
    }
    kz_msg_t *again = kz_msg_decode(buf, len, NULL, &err);
    if (!again) {
        fprintf(stderr, "re-decode failed: %s (%s)\n", kz_msg_strerror(err.code), err.text);
        abort();
    }
    char *json2 = kz_msg_to_json(again);
    if (!json1 || !json2 || strcmp(json1, json2) != 0) {
        fprintf(stderr, "json differs:\n%s\n%s\n", json1 ? json1 : "(null)",
                json2 ? json2 : "(null)");
        abort();
    }
    free(json1);
    free(json2);
    free(buf);
    kz_msg_destroy(&again);
    kz_msg_destroy(&msg);
    return 0;
}
