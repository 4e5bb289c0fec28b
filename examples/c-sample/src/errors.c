/* errors.c - the messages of the TB_E* codes; scripts parse them, so the
   text of every message is fixed (tests/golden/errors.txt) */
#include "errors.h"

static const char *const messages[TB_ERROR_COUNT] = {
    "success",
    "out of memory",
    "buffer full",
    "buffer empty: nothing recieved yet",
    "input/output error",
    "unterminated quote",
    "index out of range",
};

const char *tb_strerror(int code)
{
    if (code > 0 || code <= -TB_ERROR_COUNT)
        return "unknown error";
    return messages[-code];
}
