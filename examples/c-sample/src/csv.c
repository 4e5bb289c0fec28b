/* csv.c - split one CSV line into fields */
#include "csv.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "sbuf.h"

void csv_free(char **fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(fields[i]);
}

/* Fields are seperated by commas; a field in double quotes may hold commas,
   and two double quotes inside it stand for one. */
int csv_split(const char *line, char **fields, size_t max)
{
    size_t n = 0;
    const char *p = line;
    for (;;) {
        if (n == max) {
            csv_free(fields, n);
            return TB_ERANGE;
        }
        sbuf_t field;
        if (sbuf_init(&field, 16) != TB_OK) {
            csv_free(fields, n);
            return TB_ENOMEM;
        }
        int rc = TB_OK;
        if (*p == '"') {
            for (p++; *p && !(p[0] == '"' && p[1] != '"'); p++) {
                if (p[0] == '"')
                    p++;
                rc = rc ? rc : sbuf_append_n(&field, p, 1);
            }
            if (*p != '"')
                rc = TB_EQUOTE;
            else
                p++;
        } else {
            size_t len = strcspn(p, ",");
            rc = sbuf_append_n(&field, p, len);
            p += len;
        }
        if (rc != TB_OK) {
            sbuf_free(&field);
            csv_free(fields, n);
            return rc;
        }
        fields[n++] = sbuf_detach(&field);
        if (*p != ',')
            return (int)n;
        p++;
    }
}
