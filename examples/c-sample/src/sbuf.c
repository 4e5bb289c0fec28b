/* sbuf.c - growable NUL-terminated string buffers */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

static int sbuf_reserve(sbuf_t *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap)
        return TB_OK;
    size_t cap = sb->cap ? sb->cap : 16;
    while (cap < sb->len + extra + 1)
        cap *= 2;
    char *data = realloc(sb->data, cap);
    if (!data) return TB_ENOMEM;
    sb->data = data;
    sb->cap = cap;
    return TB_OK;
}

int sbuf_init(sbuf_t *sb, size_t cap)
{
    sb->data = NULL;
    sb->len = sb->cap = 0;
    int rc = sbuf_reserve(sb, cap);
    if (rc == TB_OK)
        sb->data[0] = '\0';
    return rc;
}

void sbuf_free(sbuf_t *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

int sbuf_append_n(sbuf_t *sb, const char *text, size_t n)
{
    int rc = sbuf_reserve(sb, n);
    if (rc != TB_OK)
        return rc;
    memcpy(sb->data + sb->len, text, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return TB_OK;
}

int sbuf_append(sbuf_t *sb, const char *text)
{
    return sbuf_append_n(sb, text, strlen(text));
}

int sbuf_appendf(sbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TB_EIO;
    int rc = sbuf_reserve(sb, (size_t)n);
    if (rc != TB_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return TB_OK;
}

int sbuf_load_file(sbuf_t *sb, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return TB_EIO;
    if (fseek(f, 0, SEEK_END) != 0)
        return TB_EIO;
    long size = ftell(f);
    rewind(f);
    if (size < 0) {
        fclose(f);
        return TB_EIO;
    }
    int rc = sbuf_reserve(sb, (size_t)size);
    if (rc != TB_OK) {
        fclose(f);
        return rc;
    }
    size_t n = fread(sb->data + sb->len, 1, (size_t)size, f);
    fclose(f);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return n == (size_t)size ? TB_OK : TB_EIO;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void sbuf_trim(sbuf_t *sb)
{
    size_t start = 0, end = sb->len;
    if (!sb || !sb->data)
        return;
    while (start < end && is_space(sb->data[start]))
        start++;
    while (end > start && is_space(sb->data[end - 1]))
        end--;
    memmove(sb->data, sb->data + start, end - start);
    sb->len = end - start;
    sb->data[sb->len] = '\0';
}

char *sbuf_detach(sbuf_t *sb)
{
    char *data = sb->data;
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return data;
}
