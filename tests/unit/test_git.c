/*  test_git.c - kz_git on real repositories in a temporary directory:
    listing files, changes between commits, worktrees (stale ones too),
    commits, diff statistics, cherry-picks onto a branch without touching
    the user's checkout, conflicts, and fast-forwards of a checked-out
    branch (clean, dirty, diverged), ancestry, and where a plan's commits
    must be (kz_plan).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_git.h"
#include "kz_plan.h"

typedef struct {
    char dir[PATH_MAX - 64]; /* the temporary directory */
    char repo[PATH_MAX];     /* DIR/repo: the "user's" repository, branch main */
    char c1[KZ_GIT_OID_MAX]; /* its first commit */
} s_fix_t;

static void s_write(const char *root, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    /* mkdir -p */
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *s_read(const char *root, const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* git in REPO, must succeed; returns its output (malloc'd) */
static char *s_git(const char *repo, const char *const *args)
{
    char err[512] = "";
    char *out = NULL;
    int rc = kz_git(repo, args, 0, &out, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "git failed: %s\n", err);
    assert_int_equal(rc, 0);
    return out;
}

#define GIT(repo, ...)                          \
    do {                                        \
        const char *a_[] = {__VA_ARGS__, NULL}; \
        free(s_git((repo), a_));                \
    } while (0)

static void s_commit(const char *wt, const char *msg, char oid[KZ_GIT_OID_MAX])
{
    char err[512] = "";
    bool changed = false;
    int rc = kz_git_commit_all(wt, msg, &changed, oid, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "commit failed: %s\n", err);
    assert_int_equal(rc, 0);
    assert_true(changed);
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int s_setup(void **state)
{
    s_fix_t *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/kz-test-git.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->repo, sizeof fx->repo, "%s/repo", fx->dir);
    assert_int_equal(mkdir(fx->repo, 0755), 0);
    GIT(fx->repo, "init", "--quiet", "--initial-branch=main");
    s_write(fx->repo, "a.py", "import os\nx = 1\ny = 2\n");
    s_write(fx->repo, "pkg/b.c", "int b(void) { return 1; }\n");
    s_write(fx->repo, "README.md", "# sample\n");
    s_commit(fx->repo, "first", fx->c1);
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    s_fix_t *fx = *state;
    nftw(fx->dir, s_rm, 32, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* HEAD commit, branch and porcelain status of the user's checkout */
typedef struct {
    char head[KZ_GIT_OID_MAX];
    char branch[256];
    char *status;
    char *index; /* `ls-files --stage` */
} s_snap_t;

static void s_snapshot(const char *repo, s_snap_t *s)
{
    char err[512];
    assert_int_equal(kz_git_rev(repo, "HEAD", s->head, err, sizeof err), 0);
    assert_int_equal(kz_git_current_branch(repo, s->branch, sizeof s->branch, err, sizeof err), 0);
    const char *st[] = {"status", "--porcelain", "--untracked-files=all", NULL};
    s->status = s_git(repo, st);
    const char *ix[] = {"ls-files", "--stage", NULL};
    s->index = s_git(repo, ix);
}

static void s_same(const char *repo, s_snap_t *before)
{
    s_snap_t now;
    s_snapshot(repo, &now);
    assert_string_equal(now.head, before->head);
    assert_string_equal(now.branch, before->branch);
    assert_string_equal(now.status, before->status);
    assert_string_equal(now.index, before->index);
    free(now.status);
    free(now.index);
    free(before->status);
    free(before->index);
}

static bool s_has(char **v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

/* Number of worktrees registered in REPO (the main one included) */
static int s_worktrees(const char *repo)
{
    const char *args[] = {"worktree", "list", "--porcelain", NULL};
    char *out = s_git(repo, args);
    int n = 0;
    for (const char *p = out; (p = strstr(p, "worktree ")); p += 9)
        n++;
    free(out);
    return n;
}

/* A commit on a new branch BRANCH from COMMIT that writes TEXT to REL, made
   in a kaizen worktree that is removed again */
static void s_branch_commit(s_fix_t *fx, const char *branch, const char *from, const char *rel,
                            const char *text, char oid[KZ_GIT_OID_MAX])
{
    char wt[PATH_MAX + 64], err[512] = "";
    snprintf(wt, sizeof wt, "%s/wt-%s", fx->dir, strrchr(branch, '/') + 1);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, branch, from, err, sizeof err), 0);
    s_write(wt, rel, text);
    s_commit(wt, "change", oid);
    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
}

static void test_repo_basics(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", oid[KZ_GIT_OID_MAX], branch[64];
    assert_int_equal(kz_git_check_repo(fx->repo, err, sizeof err), 0);
    assert_int_equal(kz_git_check_repo(fx->dir, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not a git repository"));
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof sub, "%s/pkg", fx->repo);
    assert_int_equal(kz_git_check_repo(sub, err, sizeof err), -1);
    assert_int_equal(kz_git_check_repo("/nonexistent/kz", err, sizeof err), -1);

    assert_int_equal(kz_git_rev(fx->repo, "main", oid, err, sizeof err), 0);
    assert_string_equal(oid, fx->c1);
    assert_int_equal(kz_git_rev(fx->repo, "nosuch", oid, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown revision 'nosuch'"));
    assert_int_equal(kz_git_rev(fx->repo, "--all", oid, err, sizeof err), -1);

    assert_int_equal(kz_git_current_branch(fx->repo, branch, sizeof branch, err, sizeof err), 0);
    assert_string_equal(branch, "main");
    bool clean = false;
    assert_int_equal(kz_git_is_clean(fx->repo, &clean, err, sizeof err), 0);
    assert_true(clean);
    s_write(fx->repo, "new.txt", "x\n");
    assert_int_equal(kz_git_is_clean(fx->repo, &clean, err, sizeof err), 0);
    assert_false(clean);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/new.txt", fx->repo);
    unlink(path);

    /* a GIT_DIR in the caller's environment (an agent started from a hook)
       does not send git elsewhere */
    setenv("GIT_DIR", "/nonexistent", 1);
    setenv("GIT_WORK_TREE", "/nonexistent", 1);
    int rc = kz_git_rev(fx->repo, "HEAD", oid, err, sizeof err);
    unsetenv("GIT_DIR");
    unsetenv("GIT_WORK_TREE");
    assert_int_equal(rc, 0);
    assert_string_equal(oid, fx->c1);
}

static void test_ls_files(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", c2[KZ_GIT_OID_MAX];
    char **files = NULL;
    size_t n = 0;
    s_write(fx->repo, "dir with space/é.txt", "x\n");
    s_commit(fx->repo, "second", c2);
    assert_int_equal(kz_git_ls_files(fx->repo, fx->c1, &files, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_true(s_has(files, "a.py"));
    assert_true(s_has(files, "pkg/b.c"));
    assert_true(s_has(files, "README.md"));
    kz_git_strv_free(files);
    assert_int_equal(kz_git_ls_files(fx->repo, c2, &files, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_true(s_has(files, "dir with space/é.txt"));
    assert_null(files[4]);
    kz_git_strv_free(files);
    assert_int_equal(kz_git_ls_files(fx->repo, "nosuch", &files, &n, err, sizeof err), -1);
    assert_null(files);
}

static void test_changed_deleted(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", c2[KZ_GIT_OID_MAX], path[PATH_MAX + 32], path2[PATH_MAX + 32];
    s_write(fx->repo, "a.py", "import os\nx = 10\ny = 2\n");
    snprintf(path, sizeof path, "%s/README.md", fx->repo);
    unlink(path);
    s_write(fx->repo, "new.py", "z = 3\n");
    snprintf(path, sizeof path, "%s/pkg/b.c", fx->repo);
    snprintf(path2, sizeof path2, "%s/pkg/c.c", fx->repo);
    assert_int_equal(rename(path, path2), 0);
    s_commit(fx->repo, "second", c2);

    char **files = NULL;
    size_t n = 0;
    assert_int_equal(kz_git_changed(fx->repo, fx->c1, c2, &files, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_true(s_has(files, "a.py"));
    assert_true(s_has(files, "new.py"));
    assert_true(s_has(files, "pkg/c.c")); /* a rename: its new name */
    kz_git_strv_free(files);
    assert_int_equal(kz_git_deleted(fx->repo, fx->c1, c2, &files, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_true(s_has(files, "README.md"));
    assert_true(s_has(files, "pkg/b.c")); /* and its old name */
    kz_git_strv_free(files);
    assert_int_equal(kz_git_changed(fx->repo, c2, c2, &files, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_non_null(files);
    assert_null(files[0]);
    kz_git_strv_free(files);
}

static void test_worktree(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", wt[PATH_MAX + 64], junk[PATH_MAX + 128];
    s_snap_t before;
    s_snapshot(fx->repo, &before);
    snprintf(wt, sizeof wt, "%s/state/worktrees/t/scan", fx->dir);

    /* detached, parents created */
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, fx->c1, err, sizeof err), 0);
    assert_non_null(s_read(wt, "a.py"));
    assert_int_equal(s_worktrees(fx->repo), 2);
    char branch[64] = "x";
    assert_int_equal(kz_git_current_branch(wt, branch, sizeof branch, err, sizeof err), 0);
    assert_string_equal(branch, "");

    /* again at the same path: the old one is replaced */
    s_write(wt, "scratch.txt", "left behind\n");
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, fx->c1, err, sizeof err), 0);
    assert_null(s_read(wt, "scratch.txt"));
    assert_int_equal(s_worktrees(fx->repo), 2);

    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
    assert_int_equal(access(wt, F_OK), -1);
    assert_int_equal(s_worktrees(fx->repo), 1);
    /* missing: fine */
    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);

    /* a stale directory (no worktree) at the path */
    s_write(wt, "deep/junk.txt", "junk\n");
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, fx->c1, err, sizeof err), 0);
    snprintf(junk, sizeof junk, "%s/deep/junk.txt", wt);
    assert_int_equal(access(junk, F_OK), -1);
    /* a stale registration: the directory vanished */
    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, fx->c1, err, sizeof err), 0);
    nftw(wt, s_rm, 32, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, fx->c1, err, sizeof err), 0);
    assert_int_equal(s_worktrees(fx->repo), 2);
    /* a `worktree add` killed half-way: its registration still locked
       ("initializing"), the directory gone ("missing but locked") */
    const char *lock[] = {"worktree", "lock", "--reason", "initializing", wt, NULL};
    free(s_git(fx->repo, lock));
    nftw(wt, s_rm, 32, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, fx->c1, err, sizeof err), 0);
    assert_non_null(s_read(wt, "a.py"));
    assert_int_equal(s_worktrees(fx->repo), 2);

    /* on a branch (created, then reset with -B) */
    assert_int_equal(kz_git_branch_exists(fx->repo, "kaizen/plan-1", err, sizeof err), 0);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, "kaizen/plan-1", fx->c1, err, sizeof err),
                     0);
    assert_int_equal(kz_git_current_branch(wt, branch, sizeof branch, err, sizeof err), 0);
    assert_string_equal(branch, "kaizen/plan-1");
    assert_int_equal(kz_git_branch_exists(fx->repo, "kaizen/plan-1", err, sizeof err), 1);
    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
    assert_int_equal(kz_git_branch_delete(fx->repo, "kaizen/plan-1", err, sizeof err), 0);
    assert_int_equal(kz_git_branch_exists(fx->repo, "kaizen/plan-1", err, sizeof err), 0);
    assert_int_equal(kz_git_branch_delete(fx->repo, "kaizen/plan-1", err, sizeof err), 0);
    assert_int_equal(kz_git_branch_exists(fx->repo, "-x", err, sizeof err), -1);
    assert_int_equal(s_worktrees(fx->repo), 1);

    /* never the repository itself */
    assert_int_equal(kz_git_worktree_remove(fx->repo, fx->repo, err, sizeof err), -1);
    assert_non_null(s_read(fx->repo, "a.py"));
    s_same(fx->repo, &before);
}

/* kaizen down: every worktree under STATE/worktrees/<target> goes (with
   a stale registration, a locked worktree and a plain leftover
   directory), the user's own worktrees and checkout stay */
static void test_worktrees_remove_under(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", dir[PATH_MAX + 64], wt[PATH_MAX + 128], mine[PATH_MAX + 64];
    char near[PATH_MAX + 64];
    s_snap_t before;
    s_snapshot(fx->repo, &before);
    snprintf(dir, sizeof dir, "%s/state/worktrees/t", fx->dir);
    const char *names[] = {"scan", "plan-01A", "tests-01A", "review-01A"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(wt, sizeof wt, "%s/%s", dir, names[i]);
        assert_int_equal(kz_git_worktree_add(fx->repo, wt, i == 1 ? "kaizen/plan-01A" : NULL,
                                             fx->c1, err, sizeof err),
                         0);
    }
    /* locked, as `git worktree lock` leaves one */
    snprintf(wt, sizeof wt, "%s/review-01A", dir);
    GIT(fx->repo, "worktree", "lock", wt);
    /* a stale registration: its directory is gone */
    snprintf(wt, sizeof wt, "%s/tests-01A", dir);
    nftw(wt, s_rm, 32, FTW_DEPTH | FTW_PHYS);
    /* a directory git does not know */
    s_write(dir, "half-made/junk.txt", "junk\n");
    /* the user's own worktrees: one beside the state, one whose name
       begins like kaizen's directory */
    snprintf(mine, sizeof mine, "%s/mine", fx->dir);
    GIT(fx->repo, "worktree", "add", "--quiet", "-b", "feature", mine, fx->c1);
    snprintf(near, sizeof near, "%s/state/worktrees/t2", fx->dir);
    GIT(fx->repo, "worktree", "add", "--quiet", "--detach", near, fx->c1);
    assert_int_equal(s_worktrees(fx->repo), 7);

    int removed = -1;
    assert_int_equal(kz_git_worktrees_remove_under(fx->repo, dir, &removed, err, sizeof err), 0);
    assert_int_equal(removed, 4);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(s_worktrees(fx->repo), 3); /* the checkout, mine and t2 */
    const char *list[] = {"worktree", "list", "--porcelain", NULL};
    char *out = s_git(fx->repo, list);
    assert_non_null(strstr(out, mine));
    assert_non_null(strstr(out, near));
    assert_null(strstr(out, "/state/worktrees/t/"));
    free(out);
    assert_non_null(s_read(mine, "a.py"));
    assert_non_null(s_read(near, "a.py"));
    /* the plan branch stays: only its worktree was kaizen's to remove */
    assert_int_equal(kz_git_branch_exists(fx->repo, "kaizen/plan-01A", err, sizeof err), 1);

    /* again: nothing to do */
    assert_int_equal(kz_git_worktrees_remove_under(fx->repo, dir, &removed, err, sizeof err), 0);
    assert_int_equal(removed, 0);
    /* no repository there: nothing to do either */
    snprintf(wt, sizeof wt, "%s/no-such-repo", fx->dir);
    assert_int_equal(kz_git_worktrees_remove_under(wt, dir, &removed, err, sizeof err), 0);
    assert_int_equal(kz_git_worktrees_remove_under(fx->dir, dir, &removed, err, sizeof err), 0);
    /* never a directory that holds the repository, nor a relative one */
    assert_int_equal(kz_git_worktrees_remove_under(fx->repo, fx->dir, &removed, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "holds the repository"));
    assert_int_equal(kz_git_worktrees_remove_under(fx->repo, "state", &removed, err, sizeof err),
                     -1);
    assert_non_null(s_read(fx->repo, "a.py"));
    assert_non_null(s_read(mine, "a.py"));
    s_same(fx->repo, &before);
}

static void test_commit_all(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", oid[KZ_GIT_OID_MAX], wt[PATH_MAX + 16];
    bool changed = true;
    s_snap_t before;
    s_snapshot(fx->repo, &before);
    snprintf(wt, sizeof wt, "%s/wt", fx->dir);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, "kaizen/plan-2", fx->c1, err, sizeof err),
                     0);
    assert_int_equal(kz_git_commit_all(wt, "nothing", &changed, oid, err, sizeof err), 0);
    assert_false(changed);
    assert_string_equal(oid, fx->c1);

    s_write(wt, "a.py", "import os\n\nx = 1\ny = 2\n");
    s_write(wt, "added.py", "pass\n");
    assert_int_equal(kz_git_commit_all(wt, "kaizen: black on a.py (plan 2)\n\nFindings: f1",
                                       &changed, oid, err, sizeof err),
                     0);
    assert_true(changed);
    assert_string_not_equal(oid, fx->c1);
    const char *log[] = {"log", "-1", "--format=%an <%ae>|%cn|%s|%b", oid, NULL};
    char *out = s_git(fx->repo, log);
    assert_non_null(strstr(out, "kaizen <kaizen@localhost>|kaizen|kaizen: black on a.py (plan 2)|"
                                "Findings: f1"));
    free(out);
    char tip[KZ_GIT_OID_MAX];
    assert_int_equal(kz_git_rev(fx->repo, "kaizen/plan-2", tip, err, sizeof err), 0);
    assert_string_equal(tip, oid);
    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
    s_same(fx->repo, &before);
}

/* policy.commit_author reaches author and committer; subjects, the
   message, and a commit kept under refs/kaizen/ without a branch */
static void test_identity_and_refs(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", oid[KZ_GIT_OID_MAX], wt[PATH_MAX + 16];
    bool changed = false;
    snprintf(wt, sizeof wt, "%s/wt", fx->dir);
    assert_int_equal(kz_git_set_identity("Kai Zen Bot", "bot@example.org"), 0);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, "kaizen/plan-3", fx->c1, err, sizeof err),
                     0);
    s_write(wt, "a.py", "import os\n\nx = 9\n");
    assert_int_equal(
        kz_git_commit_all(wt, "Fix a.py\n\nKaizen-Plan: 3", &changed, oid, err, sizeof err), 0);
    assert_int_equal(kz_git_set_identity("", "x"), -1); /* refused: the default again */
    const char *log[] = {"log", "-1", "--format=%an <%ae>|%cn <%ce>", oid, NULL};
    char *out = s_git(fx->repo, log);
    assert_non_null(strstr(out, "Kai Zen Bot <bot@example.org>|Kai Zen Bot <bot@example.org>"));
    free(out);

    char **subjects = NULL;
    size_t n = 0;
    assert_int_equal(kz_git_subjects(fx->repo, oid, 100, &subjects, &n, err, sizeof err), 0);
    assert_true(n >= 2);
    assert_string_equal(subjects[0], "Fix a.py");
    kz_git_strv_free(subjects);
    char *msg = NULL;
    assert_int_equal(kz_git_message(fx->repo, oid, 0, &msg, err, sizeof err), 0);
    assert_string_equal(msg, "Fix a.py\n\nKaizen-Plan: 3");
    free(msg);

    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
    assert_int_equal(kz_git_keep(fx->repo, "refs/kaizen/plans/3", "kaizen/plan-3", err, sizeof err),
                     0);
    assert_int_equal(kz_git_branch_delete(fx->repo, "kaizen/plan-3", err, sizeof err), 0);
    assert_int_equal(kz_git_ref_exists(fx->repo, "refs/kaizen/plans/3", err, sizeof err), 1);
    assert_int_equal(kz_git_ref_exists(fx->repo, "refs/kaizen/plans/4", err, sizeof err), 0);
    char kept[KZ_GIT_OID_MAX];
    assert_int_equal(kz_git_rev(fx->repo, "refs/kaizen/plans/3", kept, err, sizeof err), 0);
    assert_string_equal(kept, oid);
    const char *branches[] = {"branch", "--list", NULL};
    out = s_git(fx->repo, branches);
    assert_null(strstr(out, "plan-3"));
    free(out);
    /* only refs under refs/kaizen/, never an option */
    assert_int_equal(kz_git_keep(fx->repo, "refs/heads/main", oid, err, sizeof err), -1);
    assert_int_equal(kz_git_keep(fx->repo, "--all", oid, err, sizeof err), -1);
    assert_int_equal(kz_git_keep(fx->repo, "refs/kaizen/a..b", oid, err, sizeof err), -1);
}

static void test_numstat_binary(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", c2[KZ_GIT_OID_MAX], path[PATH_MAX + 16];
    s_write(fx->repo, "a.py", "import os\nx = 1\ny = 3\nz = 4\n");
    snprintf(path, sizeof path, "%s/blob.bin", fx->repo);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    const unsigned char bin[] = {0, 1, 2, 0, 255, 0, 7, 0};
    fwrite(bin, 1, sizeof bin, f);
    fclose(f);
    s_commit(fx->repo, "second", c2);
    long added = -1, removed = -1, files = -1, binary = -1;
    assert_int_equal(
        kz_git_numstat(fx->repo, fx->c1, c2, &added, &removed, &files, &binary, err, sizeof err),
        0);
    assert_int_equal(added, 2);
    assert_int_equal(removed, 1);
    assert_int_equal(files, 2);
    assert_int_equal(binary, 1);
    char *stat = NULL;
    assert_int_equal(kz_git_shortstat(fx->repo, fx->c1, c2, &stat, err, sizeof err), 0);
    assert_string_equal(stat, "2 files changed, 2 insertions(+), 1 deletion(-)");
    free(stat);
    char *diff = NULL;
    assert_int_equal(kz_git_diff(fx->repo, fx->c1, c2, 0, &diff, err, sizeof err), 0);
    assert_non_null(strstr(diff, "\n+z = 4\n"));
    assert_non_null(strstr(diff, "\n-y = 2\n"));
    free(diff);
    assert_int_equal(kz_git_diff(fx->repo, fx->c1, c2, 16, &diff, err, sizeof err), 0);
    assert_true(strlen(diff) <= 16);
    free(diff);
}

static void test_cherry_pick(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", x[KZ_GIT_OID_MAX], y[KZ_GIT_OID_MAX], z[KZ_GIT_OID_MAX];
    char head[KZ_GIT_OID_MAX], head2[KZ_GIT_OID_MAX], tip[KZ_GIT_OID_MAX];
    s_branch_commit(fx, "kaizen/plan-x", fx->c1, "a.py", "import os\nx = 100\ny = 2\n", x);
    s_branch_commit(fx, "kaizen/plan-y", fx->c1, "pkg/b.c", "int b(void)\n{\n    return 1;\n}\n",
                    y);
    s_branch_commit(fx, "kaizen/plan-z", fx->c1, "a.py", "import os\nx = 200\ny = 2\n", z);
    /* the user has work in progress: it stays as it is */
    s_write(fx->repo, "README.md", "# sample, edited\n");
    s_write(fx->repo, "untracked.txt", "mine\n");
    s_snap_t before;
    s_snapshot(fx->repo, &before);

    const char *tmp = fx->dir;
    assert_int_equal(kz_git_branch_exists(fx->repo, "kaizen/improvements", err, sizeof err), 0);
    assert_int_equal(kz_git_cherry_pick_onto(fx->repo, "kaizen/improvements", fx->c1, x, tmp, head,
                                             err, sizeof err),
                     0);
    assert_int_equal(kz_git_rev(fx->repo, "kaizen/improvements", tip, err, sizeof err), 0);
    assert_string_equal(tip, head);
    char spec[128];
    snprintf(spec, sizeof spec, "%s^", head);
    assert_int_equal(kz_git_rev(fx->repo, spec, tip, err, sizeof err), 0);
    assert_string_equal(tip, fx->c1);

    /* a second pick goes on top of the first */
    assert_int_equal(kz_git_cherry_pick_onto(fx->repo, "kaizen/improvements", fx->c1, y, tmp, head2,
                                             err, sizeof err),
                     0);
    snprintf(spec, sizeof spec, "%s^", head2);
    assert_int_equal(kz_git_rev(fx->repo, spec, tip, err, sizeof err), 0);
    assert_string_equal(tip, head);
    const char *show[] = {"show", "kaizen/improvements:a.py", NULL};
    char *out = s_git(fx->repo, show);
    assert_string_equal(out, "import os\nx = 100\ny = 2\n");
    free(out);
    const char *stat[] = {"diff", "--name-only", fx->c1, "kaizen/improvements", NULL};
    out = s_git(fx->repo, stat);
    assert_string_equal(out, "a.py\npkg/b.c\n");
    free(out);

    /* a pick whose change is there already adds nothing */
    char again[KZ_GIT_OID_MAX];
    assert_int_equal(kz_git_cherry_pick_onto(fx->repo, "kaizen/improvements", fx->c1, x, tmp, again,
                                             err, sizeof err),
                     0);
    assert_string_equal(again, head2);
    assert_int_equal(kz_git_rev(fx->repo, "kaizen/improvements", tip, err, sizeof err), 0);
    assert_string_equal(tip, head2);

    /* a conflicting pick: refused, the branch stays */
    assert_int_equal(kz_git_cherry_pick_onto(fx->repo, "kaizen/improvements", fx->c1, z, tmp, head,
                                             err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "conflict"));
    assert_non_null(strstr(err, "a.py"));
    assert_int_equal(kz_git_rev(fx->repo, "kaizen/improvements", tip, err, sizeof err), 0);
    assert_string_equal(tip, head2);

    /* the branch checked out by the user is never moved under them */
    assert_int_equal(
        kz_git_cherry_pick_onto(fx->repo, "main", fx->c1, x, tmp, head, err, sizeof err), -1);
    assert_non_null(strstr(err, "checked out"));

    assert_int_equal(s_worktrees(fx->repo), 1);
    s_same(fx->repo, &before);
    assert_string_equal(s_read(fx->repo, "README.md"), "# sample, edited\n");
    assert_string_equal(s_read(fx->repo, "a.py"), "import os\nx = 1\ny = 2\n");
    /* no temporary directory left behind */
    DIR *d = opendir(fx->dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        assert_true(strncmp(e->d_name, "kz-pick.", 8) != 0);
    closedir(d);
}

/* Filter and merge drivers named by the repository's own .git/config (and
   chosen by its committed .gitattributes) never run in kaizen's git:
   worktree add (smudge), commit (clean), cherry-pick (merge driver) */
static void test_repo_drivers(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", mark[PATH_MAX + 16], cmd[PATH_MAX + 64], oid[KZ_GIT_OID_MAX];
    char x[KZ_GIT_OID_MAX], z[KZ_GIT_OID_MAX], head[KZ_GIT_OID_MAX];
    snprintf(mark, sizeof mark, "%s/driver-ran", fx->dir);
    snprintf(cmd, sizeof cmd, "sh -c 'touch %s; cat'", mark);
    s_write(fx->repo, ".gitattributes", "* filter=evil merge=evil\n");
    s_commit(fx->repo, "attributes", oid);
    GIT(fx->repo, "config", "filter.evil.smudge", cmd);
    GIT(fx->repo, "config", "filter.evil.clean", cmd);
    GIT(fx->repo, "config", "filter.evil.process", cmd);
    GIT(fx->repo, "config", "filter.evil.required", "true");
    GIT(fx->repo, "config", "merge.evil.driver", cmd);
    unlink(mark);

    char wt[PATH_MAX + 64];
    snprintf(wt, sizeof wt, "%s/wt-drivers", fx->dir);
    assert_int_equal(kz_git_worktree_add(fx->repo, wt, NULL, oid, err, sizeof err), 0);
    assert_string_equal(s_read(wt, "a.py"), "import os\nx = 1\ny = 2\n");
    assert_int_equal(kz_git_worktree_remove(fx->repo, wt, err, sizeof err), 0);
    s_branch_commit(fx, "kaizen/plan-x", oid, "a.py", "import os\nx = 100\ny = 2\n", x);
    s_branch_commit(fx, "kaizen/plan-z", oid, "a.py", "import os\nx = 200\ny = 2\n", z);
    assert_int_equal(kz_git_cherry_pick_onto(fx->repo, "kaizen/improvements", oid, x, fx->dir, head,
                                             err, sizeof err),
                     0);
    /* the merge driver would have "resolved" it: a conflict instead */
    assert_int_equal(kz_git_cherry_pick_onto(fx->repo, "kaizen/improvements", oid, z, fx->dir, head,
                                             err, sizeof err),
                     -1);
    struct stat st;
    assert_int_not_equal(stat(mark, &st), 0);

    /* a driver name that cannot be overridden on a command line: refused */
    GIT(fx->repo, "config", "filter.a=b.smudge", cmd);
    const char *log[] = {"log", "-1", "--format=%H", NULL};
    char *out = NULL;
    assert_int_equal(kz_git(fx->repo, log, 0, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot be switched off"));
    free(out);
    assert_int_not_equal(stat(mark, &st), 0);
}

/* A repository owned by another user: refused unless trusted */
static void test_check_owner(void **state)
{
    s_fix_t *fx = *state;
    char err[1024] = "";
    assert_int_equal(kz_git_check_owner(fx->repo, false, err, sizeof err), 0);
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/not-yet", fx->dir);
    assert_int_equal(kz_git_check_owner(missing, false, err, sizeof err), 0);
    if (geteuid() != 0)
        skip(); /* chown needs root */
    char dotgit[PATH_MAX + 16];
    snprintf(dotgit, sizeof dotgit, "%s/.git", fx->repo);
    assert_int_equal(chown(dotgit, 65534, (gid_t)-1), 0);
    assert_int_equal(kz_git_check_owner(fx->repo, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "trust_owner: true"));
    assert_non_null(strstr(err, "uid 65534"));
    const char *rev[] = {"rev-parse", "HEAD", NULL};
    char *out = NULL;
    assert_int_equal(kz_git(fx->repo, rev, 0, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "trust_owner"));
    free(out);
    /* trusted: accepted, and git is told (safe.directory) */
    assert_int_equal(kz_git_check_owner(fx->repo, true, err, sizeof err), 0);
    out = s_git(fx->repo, rev);
    assert_int_equal(strncmp(out, fx->c1, strlen(fx->c1)), 0);
    free(out);
    assert_int_equal(chown(dotgit, 0, (gid_t)-1), 0);
}

static void test_fast_forward(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", x[KZ_GIT_OID_MAX], d[KZ_GIT_OID_MAX], tip[KZ_GIT_OID_MAX];
    s_branch_commit(fx, "kaizen/plan-x", fx->c1, "a.py", "import os\nx = 100\ny = 2\n", x);

    /* local changes: refused, nothing moves */
    s_write(fx->repo, "pkg/b.c", "int b(void) { return 2; }\n");
    assert_int_equal(kz_git_fast_forward(fx->repo, "main", x, err, sizeof err), -1);
    assert_non_null(strstr(err, "working tree of 'main' has local changes"));
    assert_int_equal(kz_git_rev(fx->repo, "main", tip, err, sizeof err), 0);
    assert_string_equal(tip, fx->c1);
    GIT(fx->repo, "checkout", "--quiet", "--", "pkg/b.c");

    /* clean: main and its working tree move */
    assert_int_equal(kz_git_fast_forward(fx->repo, "main", x, err, sizeof err), 0);
    assert_int_equal(kz_git_rev(fx->repo, "HEAD", tip, err, sizeof err), 0);
    assert_string_equal(tip, x);
    assert_string_equal(s_read(fx->repo, "a.py"), "import os\nx = 100\ny = 2\n");
    bool clean = false;
    assert_int_equal(kz_git_is_clean(fx->repo, &clean, err, sizeof err), 0);
    assert_true(clean);

    /* not a fast-forward: a commit from c1 that main does not have */
    s_branch_commit(fx, "kaizen/plan-d", fx->c1, "README.md", "# other\n", d);
    assert_int_equal(kz_git_fast_forward(fx->repo, "main", d, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a fast-forward"));
    assert_int_equal(kz_git_rev(fx->repo, "main", tip, err, sizeof err), 0);
    assert_string_equal(tip, x);

    /* a branch nobody has checked out: the ref moves */
    GIT(fx->repo, "branch", "other", fx->c1);
    assert_int_equal(kz_git_fast_forward(fx->repo, "other", d, err, sizeof err), 0);
    assert_int_equal(kz_git_rev(fx->repo, "other", tip, err, sizeof err), 0);
    assert_string_equal(tip, d);
    assert_int_equal(kz_git_rev(fx->repo, "HEAD", tip, err, sizeof err), 0);
    assert_string_equal(tip, x);
    assert_int_equal(kz_git_fast_forward(fx->repo, "nosuch", d, err, sizeof err), -1);
}

/* kz_git_apply: a patch of the plan's file applies; one naming another
   path, creating, deleting or renaming a file, or that does not apply,
   is refused and leaves the tree as it was */
static void test_apply(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "";
    const char *files[] = {"a.py", NULL};
    static const char good[] = "--- a/a.py\n"
                               "+++ b/a.py\n"
                               "@@ -1,3 +1,3 @@\n"
                               " import os\n"
                               "-x = 1\n"
                               "+x = 10\n"
                               " y = 2\n";
    assert_int_equal(kz_git_apply(fx->repo, "", 0, files, 1, err, sizeof err), 0);
    assert_int_equal(kz_git_apply(fx->repo, good, strlen(good), files, 1, err, sizeof err), 0);
    assert_string_equal(s_read(fx->repo, "a.py"), "import os\nx = 10\ny = 2\n");
    /* a fixer given ./a.py (a name starting with '-' goes in so) names
       "a/./a.py", which git alone calls an invalid path */
    static const char dotted[] = "--- a/./a.py\n"
                                 "+++ b/./a.py\n"
                                 "@@ -1,3 +1,3 @@\n"
                                 " import os\n"
                                 "-x = 10\n"
                                 "+x = 11\n"
                                 " y = 2\n";
    assert_int_equal(kz_git_apply(fx->repo, dotted, strlen(dotted), files, 1, err, sizeof err), 0);
    assert_string_equal(s_read(fx->repo, "a.py"), "import os\nx = 11\ny = 2\n");
    static const char back[] = "--- ./a.py\n"
                               "+++ ././a.py\n"
                               "@@ -1,3 +1,3 @@\n"
                               " import os\n"
                               "-x = 11\n"
                               "+x = 10\n"
                               " y = 2\n";
    assert_int_equal(kz_git_apply(fx->repo, back, strlen(back), files, 1, err, sizeof err), 0);
    assert_string_equal(s_read(fx->repo, "a.py"), "import os\nx = 10\ny = 2\n");

    /* the same patch again does not apply: git's reason */
    assert_int_equal(kz_git_apply(fx->repo, good, strlen(good), files, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "git apply: error: patch failed: a.py:1"));

    static const char other[] = "--- a/pkg/b.c\n"
                                "+++ b/pkg/b.c\n"
                                "@@ -1 +1 @@\n"
                                "-int b(void) { return 1; }\n"
                                "+int b(void) { return 2; }\n";
    assert_int_equal(kz_git_apply(fx->repo, other, strlen(other), files, 1, err, sizeof err), -1);
    assert_string_equal(err, "patch names 'pkg/b.c', which is not one of the plan's files");
    static const char escape[] = "--- a/../outside.py\n"
                                 "+++ b/../outside.py\n"
                                 "@@ -0,0 +1 @@\n"
                                 "+x\n";
    assert_int_equal(kz_git_apply(fx->repo, escape, strlen(escape), files, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "'../outside.py', which is not one of the plan's files"));
    static const char created[] = "diff --git a/a.py b/a.py\n"
                                  "new file mode 100755\n"
                                  "--- /dev/null\n"
                                  "+++ b/a.py\n";
    assert_int_equal(kz_git_apply(fx->repo, created, strlen(created), files, 1, err, sizeof err),
                     -1);
    assert_string_equal(err,
                        "patch does more than change the plan's files: 'new file mode 100755'");
    static const char deleted[] = "--- a/a.py\n"
                                  "+++ /dev/null\n"
                                  "@@ -1,3 +0,0 @@\n"
                                  "-import os\n";
    assert_int_equal(kz_git_apply(fx->repo, deleted, strlen(deleted), files, 1, err, sizeof err),
                     -1);
    assert_string_equal(err, "patch names '/dev/null', which is not one of the plan's files");
    static const char renamed[] = "diff --git a/a.py b/a.py\n"
                                  "rename from a.py\n"
                                  "rename to a.py\n";
    assert_int_equal(kz_git_apply(fx->repo, renamed, strlen(renamed), files, 1, err, sizeof err),
                     -1);
    assert_string_equal(err, "patch does more than change the plan's files: 'rename from a.py'");
    assert_int_equal(kz_git_apply(fx->repo, "x\0y", 3, files, 1, err, sizeof err), -1);
    assert_string_equal(err, "patch holds a NUL byte");
    assert_string_equal(s_read(fx->repo, "a.py"), "import os\nx = 10\ny = 2\n");
    assert_string_equal(s_read(fx->repo, "pkg/b.c"), "int b(void) { return 1; }\n");
}

static int s_tick_calls;
static void s_tick(void *arg)
{
    (void)arg;
    s_tick_calls++;
}

static void test_tick_and_errors(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "";
    /* a failing command names itself and git's reason */
    const char *args[] = {"worktree", "add", "--quiet", "--detach", "/dev/null/x", "nosuch", NULL};
    assert_int_equal(kz_git(fx->repo, args, 0, NULL, err, sizeof err), -1);
    assert_true(strncmp(err, "git worktree add: fatal: ", 25) == 0);
    kz_git_set_tick(s_tick, NULL);
    const char *log[] = {"log", "--oneline", NULL};
    char *out = NULL;
    assert_int_equal(kz_git(fx->repo, log, 0, &out, err, sizeof err), 0);
    free(out);
    kz_git_set_tick(NULL, NULL);
    assert_int_equal(kz_git(fx->dir, log, 0, &out, err, sizeof err), -1);
    assert_null(out);
    assert_non_null(strstr(err, "git log: fatal: not a git repository"));
}

/* kz_git_is_ancestor, and kz_plan's checks of a plan's commits */
static void test_plan_place(void **state)
{
    s_fix_t *fx = *state;
    char err[512] = "", c2[KZ_GIT_OID_MAX], c3[KZ_GIT_OID_MAX], branch[64];
    s_branch_commit(fx, "kaizen/plan-P1", fx->c1, "a.txt", "one\n", c2);
    s_branch_commit(fx, "kaizen/plan-P4", c2, "a.txt", "two\n", c3);
    assert_int_equal(kz_git_is_ancestor(fx->repo, fx->c1, c2, err, sizeof err), 1);
    assert_int_equal(kz_git_is_ancestor(fx->repo, fx->c1, fx->c1, err, sizeof err), 1);
    assert_int_equal(kz_git_is_ancestor(fx->repo, c2, "refs/heads/main", err, sizeof err), 0);
    assert_int_equal(kz_git_is_ancestor(fx->repo, "--all", c2, err, sizeof err), -1);
    assert_non_null(strstr(err, "starts with '-'"));
    assert_int_equal(kz_git_is_ancestor(fx->repo, "0123456789abcdef0123456789abcdef01234567", c2,
                                        err, sizeof err),
                     -1);

    kz_target_config_t t;
    memset(&t, 0, sizeof t);
    char tname[] = "repo", other[] = "kaizen/plan-P1";
    t.name = tname;
    t.path = fx->repo;
    t.branch = NULL; /* "main" */
    assert_string_equal(kz_plan_target_branch(&t), "main");
    assert_int_equal(kz_plan_branch("P1", branch, sizeof branch), 0);
    assert_string_equal(branch, "kaizen/plan-P1");
    assert_int_equal(kz_plan_branch("../x", branch, sizeof branch), -1);
    assert_int_equal(kz_plan_branch("P1", branch, 8), -1);

    assert_int_equal(kz_plan_check_base(&t, fx->c1, err, sizeof err), 0);
    assert_int_equal(kz_plan_check_base(&t, c2, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not on branch 'main' of target 'repo'"));
    assert_int_equal(kz_plan_check_commit(&t, "P1", c2, fx->c1, err, sizeof err), 0);
    /* no branch for the plan; another plan's head; the base itself */
    assert_int_equal(kz_plan_check_commit(&t, "P2", c2, fx->c1, err, sizeof err), -1);
    assert_non_null(strstr(err, "no such branch"));
    assert_int_equal(kz_plan_check_commit(&t, "P1", c3, fx->c1, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not the head of the plan's branch 'kaizen/plan-P1'"));
    const char *args[] = {"branch", "kaizen/plan-P3", fx->c1, NULL};
    assert_int_equal(kz_git(fx->repo, args, 0, NULL, err, sizeof err), 0);
    assert_int_equal(kz_plan_check_commit(&t, "P3", fx->c1, fx->c1, err, sizeof err), -1);
    assert_non_null(strstr(err, "is the base commit itself"));
    /* a base off main; a base the commit does not descend from */
    assert_int_equal(kz_plan_check_commit(&t, "P4", c3, c2, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not on branch 'main'"));
    assert_int_equal(kz_plan_check_commit(&t, "P1", c2, c3, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not descend from the base commit"));
    /* another branch of the target */
    t.branch = other;
    assert_int_equal(kz_plan_check_commit(&t, "P4", c3, c2, err, sizeof err), 0);

    kz_fixer_config_t fixer;
    memset(&fixer, 0, sizeof fixer);
    fixer.risk = 0.3;
    kz_policy_config_t policy;
    memset(&policy, 0, sizeof policy);
    policy.require_approval = 0.25;
    assert_true(kz_plan_risk(&fixer) == 0.3);
    assert_true(kz_plan_needs_approval(&policy, kz_plan_risk(&fixer)));
    policy.require_approval = 0.8;
    assert_false(kz_plan_needs_approval(&policy, kz_plan_risk(&fixer)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repo_basics, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ls_files, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_changed_deleted, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_worktree, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_worktrees_remove_under, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_commit_all, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_identity_and_refs, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_numstat_binary, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cherry_pick, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_repo_drivers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_check_owner, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_fast_forward, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_apply, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tick_and_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_plan_place, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
