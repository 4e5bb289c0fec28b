/* errors.h - error codes and their messages */
#ifndef ERRORS_H
#define ERRORS_H

enum {
    TB_OK = 0,
    TB_ENOMEM = -1,
    TB_EFULL = -2,
    TB_EEMPTY = -3,
    TB_EIO = -4,
    TB_EQUOTE = -5,
    TB_ERANGE = -6,
};

#define TB_ERROR_COUNT 7

/* The message of CODE (0 or a TB_E* code); "unknown error" otherwise */
const char *tb_strerror(int code);

#endif
