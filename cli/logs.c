/*  logs.c - `kaizen logs`: the log files under STATE/logs

    Every process kaizen runs logs to one file there (kz_state.h):
    broker.log, orchestrator.log, NAME.INSTANCE.log per agent,
    postgres.log; each rotated by size to FILE.1 .. FILE.KEEP. Without a
    NAME the files are listed; with one, the last lines of the matching
    files are printed and -f follows them - polling for growth, for a
    truncation and for a rotation (a new file at the path: the rest of
    the old one is read first, then the new one from its start).
*/
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_state.h"

#define S_DEFAULT_LINES 50
#define S_MAX_FILES     512
#define S_POLL_MS       200
#define S_CHUNK         65536

static const char s_usage[] =
    "usage: kaizen [-c FILE] logs [NAME] [-f] [-n LINES]\n"
    "\n"
    "Without NAME: list the log files under STATE/logs with their sizes and\n"
    "times. With NAME: print the last LINES lines of NAME's log. NAME is a\n"
    "process: broker, orchestrator, postgres, an agent instance (demo.0) or\n"
    "an agent (demo: all its instances, demo.0.log, demo.1.log, ...).\n"
    "\n"
    "  -f, --follow         keep printing new lines as they are written, also\n"
    "                       across rotations, until Ctrl-C\n"
    "  -n, --lines LINES    how many lines to print first (default 50)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit codes: 0 ok (also when -f is stopped by Ctrl-C), 1 unknown NAME (the\n"
    "available names are listed), unreadable file or bad config, 2 usage\n";

static volatile sig_atomic_t s_interrupted;

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

/* Copy LEN bytes of DATA to OUT, PREFIX at the start of every line;
   *AT_START tracks whether the next byte starts a line */
static void s_emit(FILE *out, const char *data, size_t len, const char *prefix, bool *at_start)
{
    if (!*prefix) {
        fwrite(data, 1, len, out);
        if (len > 0)
            *at_start = data[len - 1] == '\n';
        return;
    }
    for (size_t i = 0; i < len; i++) {
        if (*at_start)
            fputs(prefix, out);
        fputc(data[i], out);
        *at_start = data[i] == '\n';
    }
}

/* Where the last LINES lines of FD (SIZE bytes) begin */
static off_t s_tail_start(int fd, off_t size, long lines)
{
    if (lines <= 0)
        return size;
    char *buf = malloc(S_CHUNK);
    if (!buf)
        return 0;
    off_t pos = size;
    long seen = 0;
    bool last = true; /* the file's final byte: a newline there ends, not starts, a line */
    off_t start = 0;
    while (pos > 0) {
        size_t want = pos < S_CHUNK ? (size_t)pos : S_CHUNK;
        pos -= (off_t)want;
        ssize_t n = pread(fd, buf, want, pos);
        if (n != (ssize_t)want)
            break;
        for (ssize_t i = n - 1; i >= 0; i--) {
            if (buf[i] == '\n' && !last && ++seen == lines) {
                start = pos + i + 1;
                goto done;
            }
            last = false;
        }
    }
done:
    free(buf);
    return start;
}

/* Copy FD from OFFSET to its end to OUT; the new offset */
static off_t s_copy(int fd, off_t offset, FILE *out, const char *prefix, bool *at_start)
{
    char *buf = malloc(S_CHUNK);
    if (!buf)
        return offset;
    for (;;) {
        ssize_t n = pread(fd, buf, S_CHUNK, offset);
        if (n <= 0)
            break;
        s_emit(out, buf, (size_t)n, prefix, at_start);
        offset += n;
    }
    free(buf);
    return offset;
}

int kz_cli_print_tail(FILE *out, const char *path, long lines, const char *prefix)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    bool at_start = true;
    s_copy(fd, s_tail_start(fd, st.st_size, lines), out, prefix, &at_start);
    if (!at_start)
        fputc('\n', out);
    close(fd);
    return 0;
}

/* ------------------------------------------------------------- the files */

typedef struct {
    char file[256]; /* name in the directory: "demo.0.log", "demo.0.log.1" */
    char name[256]; /* the process: "demo.0" */
    int rotated;    /* N of FILE.log.N, 0 for the current file */
    off_t size;
    time_t mtime;
} s_file_t;

static int s_cmp_files(const void *a, const void *b)
{
    const s_file_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c == 0)
        c = x->rotated - y->rotated;
    return c;
}

/* Split a directory entry "NAME.log" or "NAME.log.N" into F; false when
   it is no log file */
static bool s_parse_file(const char *entry, s_file_t *f)
{
    size_t len = strlen(entry);
    if (len >= sizeof f->file)
        return false;
    const char *dot = strstr(entry, ".log");
    while (dot) {
        const char *rest = dot + 4;
        if (*rest == '\0' || (*rest == '.' && rest[1] >= '0' && rest[1] <= '9')) {
            char *end = NULL;
            long n = *rest ? strtol(rest + 1, &end, 10) : 0;
            if (*rest && (!end || *end || n <= 0 || n > 1000))
                return false;
            if (dot == entry)
                return false;
            snprintf(f->file, sizeof f->file, "%s", entry);
            snprintf(f->name, sizeof f->name, "%.*s", (int)(dot - entry), entry);
            f->rotated = (int)n;
            return true;
        }
        dot = strstr(dot + 1, ".log");
    }
    return false;
}

/* The log files of DIR, sorted by name then rotation; NULL with *COUNT 0
   when there are none, *ERR set when DIR cannot be read */
static s_file_t *s_scan(const char *dir, size_t *count, int *err)
{
    *count = 0;
    *err = 0;
    DIR *d = opendir(dir);
    if (!d) {
        *err = errno;
        return NULL;
    }
    s_file_t *files = calloc(S_MAX_FILES, sizeof *files);
    if (!files) {
        closedir(d);
        *err = ENOMEM;
        return NULL;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && *count < S_MAX_FILES) {
        s_file_t *f = &files[*count];
        if (!s_parse_file(e->d_name, f))
            continue;
        char path[PATH_MAX + 256];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        f->size = st.st_size;
        f->mtime = st.st_mtime;
        (*count)++;
    }
    closedir(d);
    qsort(files, *count, sizeof *files, s_cmp_files);
    return files;
}

static int s_list(const char *dir, const s_file_t *files, size_t n)
{
    if (n == 0) {
        printf("no log files in %s yet ('kaizen up' starts the processes that write them)\n", dir);
        return KZ_EXIT_OK;
    }
    int width = 4;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(files[i].name) > width)
            width = (int)strlen(files[i].name);
    printf("logs in %s\n\n", dir);
    printf("%-*s  %10s  %-19s  %s\n", width, "NAME", "SIZE", "MODIFIED", "FILE");
    for (size_t i = 0; i < n; i++) {
        char size[32], when[32] = "-";
        struct tm tm;
        kz_cli_human_bytes((double)files[i].size, size, sizeof size);
        if (localtime_r(&files[i].mtime, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%-*s  %10s  %-19s  %s\n", width, files[i].name, size, when, files[i].file);
    }
    printf("\nshow one with 'kaizen logs NAME [-f] [-n LINES]'\n");
    return KZ_EXIT_OK;
}

/* True when the process NAME of a current file matches what the user
   asked for: exactly, as an agent (WANT.N), or as the file name itself */
static bool s_matches(const s_file_t *f, const char *want)
{
    if (f->rotated != 0)
        return false;
    if (strcmp(f->name, want) == 0 || strcmp(f->file, want) == 0)
        return true;
    size_t len = strlen(want);
    if (strncmp(f->name, want, len) != 0 || f->name[len] != '.')
        return false;
    const char *p = f->name + len + 1;
    if (!*p)
        return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static void s_available(const char *dir, const s_file_t *files, size_t n, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at + 1 < len; i++) {
        if (files[i].rotated != 0)
            continue;
        int w = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", files[i].name);
        if (w < 0 || (size_t)w >= len - at)
            break;
        at += (size_t)w;
    }
    if (!at)
        snprintf(buf, len, "none yet in %.*s", (int)(len > 64 ? len - 64 : 0), dir);
}

/* ------------------------------------------------------------- following */

typedef struct {
    char path[PATH_MAX + 256];
    char name[256];
    int fd;
    dev_t dev;
    ino_t ino;
    off_t offset;
    bool at_start;
} s_follow_t;

static void s_header(const s_follow_t *f, const s_follow_t **last, size_t n)
{
    if (n > 1 && *last != f) {
        printf("%s==> %s <==\n", *last ? "\n" : "", f->path);
        *last = f;
    }
}

/* One look at F: new bytes, a truncation, or a new file at the path */
static void s_poll(s_follow_t *f, const s_follow_t **last, size_t n)
{
    struct stat st;
    if (f->fd >= 0 && fstat(f->fd, &st) == 0) {
        if (st.st_size < f->offset) /* truncated in place (log.keep 0) */
            f->offset = 0;
        if (st.st_size > f->offset) {
            s_header(f, last, n);
            f->offset = s_copy(f->fd, f->offset, stdout, "", &f->at_start);
        }
    }
    struct stat now;
    if (stat(f->path, &now) != 0)
        return; /* between the rename and the new file: look again later */
    if (f->fd >= 0 && now.st_dev == f->dev && now.st_ino == f->ino)
        return;
    /* rotated: the rest of the old file (what was written to it after
       the read above, before the rename, too); then the new one */
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (f->fd >= 0) {
        if (fstat(f->fd, &st) == 0 && st.st_size > f->offset) {
            s_header(f, last, n);
            f->offset = s_copy(f->fd, f->offset, stdout, "", &f->at_start);
        }
        close(f->fd);
    }
    f->fd = fd;
    f->dev = now.st_dev;
    f->ino = now.st_ino;
    f->offset = 0;
    if (now.st_size > 0) {
        s_header(f, last, n);
        f->offset = s_copy(f->fd, 0, stdout, "", &f->at_start);
    }
}

static int s_follow(s_follow_t *fs, size_t n)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    s_interrupted = 0;
    const s_follow_t *last = n > 0 ? &fs[n - 1] : NULL;
    while (!s_interrupted) {
        for (size_t i = 0; i < n; i++)
            s_poll(&fs[i], &last, n);
        if (fflush(stdout) != 0)
            return kz_cli_error("logs", "unable to write the output: %s", strerror(errno));
        struct timespec ts = {0, S_POLL_MS * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return KZ_EXIT_OK;
}

static int s_show(const char *dir, const s_file_t *files, size_t n, const char *want, long lines,
                  bool follow)
{
    s_follow_t *fs = calloc(S_MAX_FILES, sizeof *fs);
    if (!fs)
        return kz_cli_error("logs", "out of memory");
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s_matches(&files[i], want))
            continue;
        s_follow_t *f = &fs[count++];
        snprintf(f->path, sizeof f->path, "%s/%s", dir, files[i].file);
        snprintf(f->name, sizeof f->name, "%s", files[i].name);
        f->fd = -1;
        f->at_start = true;
    }
    if (count == 0) {
        char avail[4096];
        s_available(dir, files, n, avail, sizeof avail);
        free(fs);
        return kz_cli_error("logs", "no log named '%s' (available: %s)", want, avail);
    }
    int rc = KZ_EXIT_OK;
    for (size_t i = 0; i < count; i++) {
        s_follow_t *f = &fs[i];
        f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (f->fd < 0 || fstat(f->fd, &st) != 0) {
            rc = kz_cli_error("logs", "unable to read '%s': %s", f->path, strerror(errno));
            break;
        }
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        if (count > 1)
            printf("%s==> %s <==\n", i ? "\n" : "", f->path);
        f->offset = s_copy(f->fd, s_tail_start(f->fd, st.st_size, lines), stdout, "", &f->at_start);
        if (!follow && !f->at_start)
            putchar('\n'); /* a last line still being written */
    }
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = kz_cli_error("logs", "unable to write the output: %s", strerror(errno));
    if (rc == KZ_EXIT_OK && follow)
        rc = s_follow(fs, count);
    for (size_t i = 0; i < count; i++)
        if (fs[i].fd >= 0)
            close(fs[i].fd);
    free(fs);
    return rc;
}

static const struct option s_opts[] = {
    {"follow", no_argument, NULL, 'f'},
    {"lines", required_argument, NULL, 'n'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};
#define S_SHORTOPTS "fn:"

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    bool follow = false;
    long lines = S_DEFAULT_LINES;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":" S_SHORTOPTS, s_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            follow = true;
            break;
        case 'n':
            if (kz_cli_parse_count(optarg, &lines) != 0 || lines > 10000000)
                return kz_cli_usage("logs", "invalid line count '%s'", optarg);
            break;
        default:
            return kz_cli_bad_option("logs", c, argv);
        }
    }
    const char *want = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc)
        return kz_cli_usage("logs", "unexpected argument '%s'", argv[optind + 1]);
    if (want && (!*want || strchr(want, '/')))
        return kz_cli_usage("logs", "invalid name '%s'", want);
    if (follow && !want)
        return kz_cli_usage("logs", "-f needs a NAME");

    char dir[PATH_MAX];
    if (kz_state_path(cli->cfg, "logs", dir, sizeof dir) != 0)
        return kz_cli_error("logs", "state directory path too long: %s", cli->cfg->state_dir);
    size_t n = 0;
    int err = 0;
    s_file_t *files = s_scan(dir, &n, &err);
    if (err && err != ENOENT) {
        free(files);
        return kz_cli_error("logs", "unable to read '%s': %s", dir, strerror(err));
    }
    int rc = want ? s_show(dir, files, n, want, lines, follow) : s_list(dir, files, n);
    free(files);
    if (fflush(stdout) != 0 && rc == KZ_EXIT_OK)
        rc = KZ_EXIT_FAILURE;
    return rc;
}

const kz_cli_cmd_t kz_cmd_logs = {
    "logs",      "list the log files, or show and follow one (-f)",
    s_usage,     s_run,
    true,        s_opt_tables,
    S_SHORTOPTS,
};
