/* sbuf.h - growable NUL-terminated string buffers */
#ifndef SBUF_H
#define SBUF_H

#include <stddef.h>

typedef struct {
    char *data; /* always NUL-terminated once initialised */
    size_t len;
    size_t cap;
} sbuf_t;

/* 0 on success, a TB_E* code (errors.h) on failure */
int sbuf_init(sbuf_t *sb, size_t cap);
void sbuf_free(sbuf_t *sb);
int sbuf_append(sbuf_t *sb, const char *text);
int sbuf_append_n(sbuf_t *sb, const char *text, size_t n);
int sbuf_appendf(sbuf_t *sb, const char *fmt, ...);
/* Append the whole file PATH */
int sbuf_load_file(sbuf_t *sb, const char *path);
/* Remove leading and trailing spaces, tabs and newlines */
void sbuf_trim(sbuf_t *sb);
/* Hand the string over to the caller (free it); the buffer is left empty */
char *sbuf_detach(sbuf_t *sb);

#endif
