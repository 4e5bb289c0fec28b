/*  kz_log.h - levelled logging with the agent id and correlation id

    One line per call to stderr (or a file), text or JSON:
      2026-11-26T09:01:02.123456Z info code-health@host#123 corr=01J.. message
      {"ts":"...","level":"info","agent":"...","corr":"...","msg":"..."}
    Messages are lowercase without a full stop (STYLE.md).
*/
#ifndef KZ_LOG_H_INCLUDED
#define KZ_LOG_H_INCLUDED

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

typedef enum {
    KZ_LOG_DEBUG = 0,
    KZ_LOG_INFO,
    KZ_LOG_WARN,
    KZ_LOG_ERROR,
    KZ_LOG_OFF
} kz_log_level_t;

/* Set the agent id printed on every line (copied). NULL = program name. */
void kz_log_set_agent(const char *agent_id);
void kz_log_set_level(kz_log_level_t level);
kz_log_level_t kz_log_level(void);
void kz_log_set_json(bool json);
/* Send lines to FILE (not closed by kz_log); NULL = stderr */
void kz_log_set_file(FILE *file);
/* Send every line - and everything else the process writes to stderr,
   such as sanitizer reports - to PATH: opens it for appending and makes
   it the process's stderr (dup2). When a write takes the file beyond
   MAX_BYTES it is rotated: PATH.KEEP-1 -> PATH.KEEP, ..., PATH -> PATH.1,
   and a fresh PATH is opened and made stderr again (KEEP 0: truncated in
   place). Only this process writes PATH. 0 / -1 with errno (stderr is
   left as it was). */
int kz_log_open_file(const char *path, size_t max_bytes, int keep);

/* Correlation id of the work in progress in this thread (copied), NULL clears */
void kz_log_set_corr(const char *corr);
const char *kz_log_corr(void);

/* "debug" "info" "warn"/"warning" "error" "off" -> level; 0 or -1 */
int kz_log_level_parse(const char *text, kz_log_level_t *level);
/* "text" or "json" -> *json; 0 or -1 */
int kz_log_format_parse(const char *text, bool *json);

void kz_log_write(kz_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kz_log_vwrite(kz_log_level_t level, const char *fmt, va_list ap);

#define kz_debug(...)                                \
    do {                                             \
        if (kz_log_level() <= KZ_LOG_DEBUG)          \
            kz_log_write(KZ_LOG_DEBUG, __VA_ARGS__); \
    } while (0)
#define kz_info(...)  kz_log_write(KZ_LOG_INFO, __VA_ARGS__)
#define kz_warn(...)  kz_log_write(KZ_LOG_WARN, __VA_ARGS__)
#define kz_error(...) kz_log_write(KZ_LOG_ERROR, __VA_ARGS__)

/* git's error(): logs at error level and returns -1, so callers can
   write `return kz_fail("unable to open '%s'", path);` */
int kz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
