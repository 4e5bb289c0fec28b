/*  fuzz_spool.c - libFuzzer target for the recorder's spool reader

    The input is written as a spool file; opening it and reading every
    record must never crash, hang or hand out a payload that does not lie
    inside the file, whatever the framing, lengths and checksums say.
    Corrupt records are skipped and counted, a torn tail is dropped.
*/
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char s_path[64];
static char s_pos[80];

typedef struct {
    size_t file_size;
    size_t records;
    size_t bytes;
} s_seen_t;

static int s_record(void *arg, const void *payload, size_t len)
{
    s_seen_t *seen = arg;
    if (!payload || len == 0 || len > seen->file_size)
        abort();
    /* touch every byte: ASan catches a payload outside its buffer */
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum ^= ((const uint8_t *)payload)[i];
    (void)sum;
    seen->records++;
    seen->bytes += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_path[0]) {
        snprintf(s_path, sizeof s_path, "/tmp/kz-fuzz-spool.%ld", (long)getpid());
        snprintf(s_pos, sizeof s_pos, "%s.pos", s_path);
    }
    unlink(s_pos);
    int fd = open(s_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    close(fd);

    char err[256];
    kz_spool_t *spool = kz_spool_open(s_path, 1u << 20, err, sizeof err);
    if (spool) {
        s_seen_t seen = {size, 0, 0};
        for (int rounds = 0; rounds < 100000; rounds++) {
            int n = kz_spool_read(spool, 7, s_record, &seen);
            if (n <= 0)
                break;
            if (rounds % 3 == 2)
                kz_spool_rewind(spool); /* read the same records again */
            else if (kz_spool_commit(spool) != 0)
                break;
        }
        if (seen.bytes > (size_t)100000 * size + 1)
            abort();
        kz_spool_close(&spool);
    }
    unlink(s_path);
    unlink(s_pos);
    return 0;
}
