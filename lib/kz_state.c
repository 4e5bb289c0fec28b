/*  kz_state.c - the state directory: paths, pid files, the up/down lock */
#include "kz_state.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kz_log.h"

int kz_state_path(const kz_config_t *cfg, const char *rel, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", cfg->state_dir, rel);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int kz_state_log_path(const kz_config_t *cfg, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/logs/%s.log", cfg->state_dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* mkdir PATH with exactly MODE when it is missing (the umask does not
   narrow it). 0 / -1 with errno */
static int s_mkdir_mode(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0)
        return errno == EEXIST ? 0 : -1;
    return chmod(path, mode);
}

int kz_mkdirs(const char *dir, mode_t mode, char *errbuf, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        snprintf(errbuf, errlen, "path too long: %s", dir);
        return -1;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (s_mkdir_mode(path, 0711) != 0) {
            snprintf(errbuf, errlen, "unable to create directory '%s': %s", path, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (s_mkdir_mode(path, mode) != 0) {
        snprintf(errbuf, errlen, "unable to create directory '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "'%s' is not a directory", path);
        return -1;
    }
    return 0;
}

/* Make every directory of the tree writable and searchable by us: a tool
   may leave read-only directories (caches) that rmdir cannot empty */
static int s_rm_chmod(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR)
        chmod(path, (st->st_mode & 07777) | S_IRWXU);
    return 0;
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR)
        return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

int kz_rmtree(const char *path, char *errbuf, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(errbuf, errlen, "unable to remove '%s': %s", path, strerror(errno));
        return -1;
    }
    if (strcmp(path, "/") == 0) {
        snprintf(errbuf, errlen, "refusing to remove '/'");
        return -1;
    }
    /* read-only directories stop the first pass: open them, then again */
    if (nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && lstat(path, &st) == 0 &&
        S_ISDIR(st.st_mode)) {
        nftw(path, s_rm_chmod, 16, FTW_PHYS);
        nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (lstat(path, &st) == 0) {
        snprintf(errbuf, errlen, "unable to remove '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int kz_tmpdir_new(const char *under, const char *prefix, char *buf, size_t len, char *errbuf,
                  size_t errlen)
{
    if (!under || !*under)
        under = getenv("TMPDIR");
    if (!under || !*under)
        under = "/tmp";
    if (snprintf(buf, len, "%s/%s.XXXXXX", under, prefix) >= (int)len) {
        snprintf(errbuf, errlen, "temporary directory path too long");
        return -1;
    }
    if (!mkdtemp(buf)) {
        snprintf(errbuf, errlen, "unable to create a directory in '%s': %s", under,
                 strerror(errno));
        return -1;
    }
    return 0;
}

void kz_state_umask(void)
{
    umask(077);
}

int kz_file_open(const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    /* a file of ours left more open by an older version */
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        (st.st_mode & 0777 & ~mode) != 0)
        (void)fchmod(fd, st.st_mode & 0777 & mode);
    return fd;
}

FILE *kz_file_fopen(const char *path, const char *how, mode_t mode)
{
    int flags;
    const char *fmode;
    if (strcmp(how, "w") == 0) {
        flags = O_WRONLY | O_CREAT | O_TRUNC;
        fmode = "w";
    } else if (strcmp(how, "a") == 0) {
        flags = O_WRONLY | O_CREAT | O_APPEND;
        fmode = "a";
    } else if (strcmp(how, "x") == 0) {
        flags = O_WRONLY | O_CREAT | O_EXCL;
        fmode = "w";
    } else {
        errno = EINVAL;
        return NULL;
    }
    int fd = kz_file_open(path, flags, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, fmode);
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

int kz_state_check_dir(const char *dir, char *errbuf, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(errbuf, errlen, "unable to examine the state directory '%s': %s", dir,
                 strerror(errno));
        return -1;
    }
    if (S_ISLNK(st.st_mode) && stat(dir, &st) != 0) {
        snprintf(errbuf, errlen, "the state directory '%s' is a dangling symlink", dir);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "the state directory '%s' is not a directory", dir);
        return -1;
    }
    uid_t me = geteuid();
    if (st.st_uid != me) {
        snprintf(errbuf, errlen,
                 "refusing the state directory '%s': it is owned by uid %ld, not by uid %ld "
                 "that kaizen runs as, so that user could read or change kaizen's state; "
                 "fix it with: chown -R %ld %s (or use another state_dir)",
                 dir, (long)st.st_uid, (long)me, (long)me, dir);
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(errbuf, errlen,
                 "refusing the state directory '%s': its mode %04o lets other users write "
                 "in it; fix it with: chmod 0711 %s",
                 dir, (unsigned)(st.st_mode & 07777), dir);
        return -1;
    }
    return 0;
}

/* DIR (of ours, existing; a symlink as STATE: its target) to MODE when
   it is more open; the directory's name into NOTE when it changed */
static void s_tighten(const char *dir, mode_t mode, char *note, size_t notelen)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 07777 & ~mode) == 0)
        return;
    if (chmod(dir, st.st_mode & 07777 & mode) == 0) {
        size_t used = strlen(note);
        snprintf(note + used, notelen - used, "%s%s %04o->%04o", used ? ", " : "", dir,
                 (unsigned)(st.st_mode & 07777), (unsigned)(st.st_mode & 07777 & mode));
    }
}

int kz_state_init(const kz_config_t *cfg, char *errbuf, size_t errlen)
{
    static const struct {
        const char *rel;
        mode_t mode;
    } dirs[] = {{"run", 0700}, {"logs", 0700}, {"spool", 0700}, {"worktrees", 0711}};
    kz_state_umask();
    if (kz_state_check_dir(cfg->state_dir, errbuf, errlen) != 0 ||
        kz_mkdirs(cfg->state_dir, 0711, errbuf, errlen) != 0)
        return -1;
    char note[1024] = "";
    s_tighten(cfg->state_dir, 0711, note, sizeof note);
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[PATH_MAX];
        if (kz_state_path(cfg, dirs[i].rel, path, sizeof path) != 0) {
            snprintf(errbuf, errlen, "state directory path too long: %s", cfg->state_dir);
            return -1;
        }
        if (kz_mkdirs(path, dirs[i].mode, errbuf, errlen) != 0)
            return -1;
        /* logs: the embedded PostgreSQL (another user) writing
           postgres.log there gets it searchable when it starts
           (kz_pgctl); a program starting while it runs leaves it so
           (search only: 0711), or the server could not reopen its log */
        s_tighten(path, strcmp(dirs[i].rel, "logs") == 0 ? 0711 : dirs[i].mode, note, sizeof note);
    }
    if (note[0])
        kz_info("made the state directory private (it was readable by other users): %s", note);
    return 0;
}

int kz_pidfile_write(const char *path, pid_t pid)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = kz_file_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)pid);
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

pid_t kz_pidfile_read(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0 || pid > INT_MAX)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

bool kz_pid_is_kaizen(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    char link[64], exe[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%ld/exe", (long)pid);
    ssize_t n = readlink(link, exe, sizeof exe - 1);
    if (n <= 0) {
        /* a zombie or no access: fall back to the command name */
        snprintf(link, sizeof link, "/proc/%ld/comm", (long)pid);
        FILE *f = fopen(link, "re");
        if (!f)
            return false;
        char comm[64] = "";
        bool ok = fgets(comm, sizeof comm, f) && strncmp(comm, "kaizen", 6) == 0;
        fclose(f);
        return ok;
    }
    exe[n] = '\0';
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    return strncmp(base, "kaizen", 6) == 0;
}

int kz_state_lock(const kz_config_t *cfg, int timeout_ms, char *errbuf, size_t errlen)
{
    char path[PATH_MAX];
    if (kz_state_path(cfg, "run/up.lock", path, sizeof path) != 0) {
        snprintf(errbuf, errlen, "state directory path too long: %s", cfg->state_dir);
        return -1;
    }
    int fd = kz_file_open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0) {
        snprintf(errbuf, errlen, "unable to open '%s': %s", path, strerror(errno));
        return -1;
    }
    for (int waited = 0;; waited += 50) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(errbuf, errlen, "unable to lock '%s': %s", path, strerror(errno));
            break;
        }
        if (waited >= timeout_ms) {
            snprintf(errbuf, errlen,
                     "another 'kaizen up' or 'kaizen down' is working on %s (lock %s)",
                     cfg->state_dir, path);
            break;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    close(fd);
    return -1;
}
