/*  samples.c - targets[].init_from: create a sample target before `kaizen
    up` and `kaizen run-once` start anything

    examples/kaizen.yaml points its targets at build/samples/<x>, which do
    not exist in a fresh clone: each is made from the plain files shipped
    in examples/<x> as a new git repository with one commit, so the loop
    has a real repository (a branch, a history, worktrees) to work on
    without ever touching the kaizen checkout itself.

    What is copied: when the directory is inside a git work tree, the
    files git would take (`ls-files --cached --others --exclude-standard`:
    tracked and untracked, ignored ones such as __pycache__ left out),
    else every file under it. Only regular files (with their mode),
    directories and symbolic links that point inside the directory are
    copied; nothing is ever followed, .git is never copied, anything else
    is skipped with a warning. The copy is built in a fresh directory
    beside the path and renamed into place only when the commit is made,
    so a failure never leaves a half-made target behind.
*/
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_git.h"
#include "kz_state.h"

#define S_MAX_DEPTH  64
#define S_GIT_MS     120000
#define S_LIST_LIMIT (64u * 1024u * 1024u)

typedef struct {
    const char *name; /* the target */
    const char *src;  /* init_from, absolute */
    char dst[PATH_MAX];
    size_t copied;
    char err[PATH_MAX * 2 + 256];
} s_copy_t;

static int s_fail(s_copy_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_fail(s_copy_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* DIR/REL into BUF; -1 when it does not fit */
static int s_join(char *buf, size_t len, const char *dir, const char *rel)
{
    int n = snprintf(buf, len, "%s/%s", dir, rel);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* True when the link at LINK_REL (relative to the root) pointing at
   TARGET stays inside the tree: TARGET is relative and, resolved
   lexically from the link's directory, never climbs above the root */
static bool s_link_inside(const char *link_rel, const char *target)
{
    if (target[0] == '/' || !*target)
        return false;
    int depth = 0;
    for (const char *p = link_rel; *p; p++)
        if (*p == '/')
            depth++;
    const char *p = target;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return false;
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            depth++;
        }
        p += n;
        while (*p == '/')
            p++;
    }
    return true;
}

/* A relative path git listed: no absolute path, no "." / ".." / ".git"
   component, no empty component */
static bool s_rel_ok(const char *rel)
{
    if (!*rel || rel[0] == '/')
        return false;
    const char *p = rel;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') ||
            (n == 4 && strncmp(p, ".git", 4) == 0))
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

/* Copy the regular file FROM (opened without following) to TO, new */
static int s_copy_file(s_copy_t *c, const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return s_fail(c, "unable to read '%s': %s", from, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return s_fail(c, "'%s' changed while it was copied", from);
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode & 0777) | 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return s_fail(c, "unable to create '%s': %s", to, strerror(e));
    }
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = s_fail(c, "unable to read '%s': %s", from, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = s_fail(c, "unable to write '%s': %s", to, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc != 0)
            break;
    }
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = s_fail(c, "unable to write '%s': %s", to, strerror(errno));
    return rc;
}

/* Copy the entry REL of the source (already lstat'ed into ST) */
static int s_copy_entry(s_copy_t *c, const char *rel, const struct stat *st)
{
    char from[PATH_MAX], to[PATH_MAX];
    if (s_join(from, sizeof from, c->src, rel) != 0 || s_join(to, sizeof to, c->dst, rel) != 0)
        return s_fail(c, "path too long: '%s/%s'", c->src, rel);
    if (S_ISDIR(st->st_mode)) {
        if (mkdir(to, (st->st_mode & 0777) | 0700) != 0 && errno != EEXIST)
            return s_fail(c, "unable to create '%s': %s", to, strerror(errno));
        return 0;
    }
    if (S_ISREG(st->st_mode)) {
        if (s_copy_file(c, from, to, st->st_mode) != 0)
            return -1;
        c->copied++;
        return 0;
    }
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(from, target, sizeof target - 1);
        if (n < 0)
            return s_fail(c, "unable to read the link '%s': %s", from, strerror(errno));
        target[n] = '\0';
        if (!s_link_inside(rel, target)) {
            fprintf(stderr, "warning: %s: skipped '%s': a symbolic link to '%s', outside %s\n",
                    c->name, rel, target, c->src);
            return 0;
        }
        if (symlink(target, to) != 0)
            return s_fail(c, "unable to create the link '%s': %s", to, strerror(errno));
        c->copied++;
        return 0;
    }
    fprintf(stderr, "warning: %s: skipped '%s': not a regular file, directory or link\n", c->name,
            rel);
    return 0;
}

/* Every parent directory of REL, in the source, must be a real directory
   (not a link): git never lists a path through a link, but the tree may
   have changed since */
static int s_parents(s_copy_t *c, const char *rel)
{
    char part[PATH_MAX];
    size_t len = strlen(rel);
    if (len >= sizeof part)
        return s_fail(c, "path too long: '%s'", rel);
    for (size_t i = 0; i < len; i++) {
        if (rel[i] != '/')
            continue;
        memcpy(part, rel, i);
        part[i] = '\0';
        char from[PATH_MAX];
        struct stat st;
        if (s_join(from, sizeof from, c->src, part) != 0)
            return s_fail(c, "path too long: '%s/%s'", c->src, part);
        if (lstat(from, &st) != 0 || !S_ISDIR(st.st_mode))
            return s_fail(c, "'%s' is not a directory", from);
        if (s_copy_entry(c, part, &st) != 0)
            return -1;
    }
    return 0;
}

/* The files git would take from the source, NUL-separated in *LIST
   (malloc'd, *LEN bytes); -1 when the source is not in a git work tree */
static int s_git_list(const char *src, char **list, size_t *len)
{
    static const char *const args[] = {
        "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".", NULL,
    };
    char err[512];
    char *out = NULL;
    if (kz_git(src, args, S_GIT_MS, &out, err, sizeof err) != 0) {
        free(out);
        return -1;
    }
    *list = out;
    *len = 0;
    /* kz_git NUL-terminates its output: find the real end of the -z list */
    if (out) {
        size_t n = 0;
        while (n < S_LIST_LIMIT) {
            size_t k = strlen(out + n);
            if (k == 0)
                break;
            n += k + 1;
        }
        *len = n;
    }
    return 0;
}

/* Copy what git lists */
static int s_copy_listed(s_copy_t *c, const char *list, size_t len)
{
    for (size_t at = 0; at < len;) {
        const char *rel = list + at;
        size_t n = strlen(rel);
        at += n + 1;
        if (n == 0)
            continue;
        if (!s_rel_ok(rel))
            continue; /* .git of a nested repository, or nonsense */
        char from[PATH_MAX];
        struct stat st;
        if (s_join(from, sizeof from, c->src, rel) != 0)
            return s_fail(c, "path too long: '%s/%s'", c->src, rel);
        if (lstat(from, &st) != 0)
            continue; /* tracked, deleted from the work tree */
        if (s_parents(c, rel) != 0 || s_copy_entry(c, rel, &st) != 0)
            return -1;
    }
    return 0;
}

/* Copy everything under REL ("" = the root) */
static int s_copy_walk(s_copy_t *c, const char *rel, int depth)
{
    if (depth > S_MAX_DEPTH)
        return s_fail(c, "'%s/%s' is nested too deep", c->src, rel);
    char dir[PATH_MAX];
    if (*rel ? s_join(dir, sizeof dir, c->src, rel) != 0
             : snprintf(dir, sizeof dir, "%s", c->src) >= (int)sizeof dir)
        return s_fail(c, "path too long: '%s/%s'", c->src, rel);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return s_fail(c, "unable to read the directory '%s': %s", dir, strerror(e));
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, ".git") == 0)
            continue;
        char sub[PATH_MAX];
        if (*rel ? s_join(sub, sizeof sub, rel, e->d_name) != 0
                 : snprintf(sub, sizeof sub, "%s", e->d_name) >= (int)sizeof sub) {
            rc = s_fail(c, "path too long: '%s/%s'", rel, e->d_name);
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = s_fail(c, "unable to read '%s/%s': %s", c->src, sub, strerror(errno));
            break;
        }
        rc = s_copy_entry(c, sub, &st);
        if (rc == 0 && S_ISDIR(st.st_mode))
            rc = s_copy_walk(c, sub, depth + 1);
    }
    closedir(d);
    return rc;
}

/* Create target T's path from its init_from. 0, or -1 with C->err */
static int s_create(s_copy_t *c, const kz_target_config_t *t)
{
    struct stat st;
    if (stat(t->init_from, &st) != 0 || !S_ISDIR(st.st_mode))
        return s_fail(c, "init_from '%s' is not a directory", t->init_from);

    /* the copy is made beside the path and renamed into place */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", t->path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    else if (slash)
        parent[1] = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    char mk_err[512];
    if (kz_mkdirs(parent, 0755, mk_err, sizeof mk_err) != 0)
        return s_fail(c, "%s", mk_err);
    if (snprintf(c->dst, sizeof c->dst, "%s.kaizen-new-XXXXXX", t->path) >= (int)sizeof c->dst)
        return s_fail(c, "path too long: '%s'", t->path);
    if (!mkdtemp(c->dst))
        return s_fail(c, "unable to create a directory beside '%s': %s", t->path, strerror(errno));
    if (chmod(c->dst, 0755) != 0) {
        /* mkdtemp's 0700 would keep a database user or a reviewer out; not fatal */
        fprintf(stderr, "warning: %s: unable to chmod '%s': %s\n", c->name, c->dst,
                strerror(errno));
    }

    char *list = NULL;
    size_t len = 0;
    /* nothing listed: the directory is ignored where it lies (under build/) */
    int rc = s_git_list(c->src, &list, &len) == 0 && len > 0 ? s_copy_listed(c, list, len)
                                                             : s_copy_walk(c, "", 0);
    free(list);
    if (rc != 0)
        goto fail;

    const char *branch = t->branch && *t->branch ? t->branch : "main";
    char msg[PATH_MAX + 256];
    snprintf(msg, sizeof msg, "kaizen: sample target %s from %s", t->name, c->src);
    char err[1024];
    const char *init[] = {"init", "-q", "-b", branch, NULL};
    const char *add[] = {"add", "-A", NULL};
    const char *commit[] = {"-c",
                            "user.name=kaizen",
                            "-c",
                            "user.email=kaizen@localhost",
                            "commit",
                            "-q",
                            "--no-gpg-sign",
                            "--no-verify",
                            "--allow-empty",
                            "-m",
                            msg,
                            NULL};
    if (kz_git(c->dst, init, S_GIT_MS, NULL, err, sizeof err) != 0 ||
        kz_git(c->dst, add, S_GIT_MS, NULL, err, sizeof err) != 0 ||
        kz_git(c->dst, commit, S_GIT_MS, NULL, err, sizeof err) != 0) {
        rc = s_fail(c, "%s", err);
        goto fail;
    }
    if (rename(c->dst, t->path) != 0) {
        rc = s_fail(c, "unable to rename '%s' to '%s': %s", c->dst, t->path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    char rm_err[512];
    (void)kz_rmtree(c->dst, rm_err, sizeof rm_err); /* best effort, as before */
    return rc;
}

int kz_cli_prepare_targets(const kz_config_t *cfg, const char *cmd)
{
    for (size_t i = 0; i < cfg->targets_count; i++) {
        const kz_target_config_t *t = &cfg->targets[i];
        struct stat st;
        if (!t->init_from || !t->path || lstat(t->path, &st) == 0)
            continue; /* exists: left alone, whatever it is */
        if (errno != ENOENT)
            return kz_cli_error(cmd, "target %s: unable to check '%s': %s", t->name, t->path,
                                strerror(errno));
        s_copy_t c;
        memset(&c, 0, sizeof c);
        c.name = t->name;
        c.src = t->init_from;
        if (s_create(&c, t) != 0)
            return kz_cli_error(cmd, "target %s: unable to create it at '%s' from '%s': %s",
                                t->name, t->path, t->init_from, c.err);
        fprintf(stderr, "created sample target %s at %s from %s\n", t->name, t->path, t->init_from);
    }
    char why[2048];
    if (kz_git_check_targets(cfg, why, sizeof why) != 0)
        return kz_cli_error(cmd, "%s", why);
    return KZ_EXIT_OK;
}
