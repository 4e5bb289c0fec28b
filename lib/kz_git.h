/*  kz_git.h - the git operations kaizen needs, through the safe runner

    Every call runs `git -C REPO ...` through kz_proc (no shell) with
    LC_ALL=C, GIT_TERMINAL_PROMPT=0, hooks disabled (core.hooksPath=
    /dev/null: a target's hooks are commands kaizen never runs), no
    program a repository's own config names (filter and merge drivers
    are emptied, no transport, no submodules, no signature checks), no
    pager, and kaizen's own identity (kz_git_set_identity) as the author
    and committer of commits. Errors come back
    in ERRBUF as "git worktree add: fatal: ..." (the first line of git's
    stderr). Commit ids are full hex object names.

    The user's checkout is never changed by these functions except
    kz_git_fast_forward (policy apply: merge) - everything else
    works on refs, on worktrees kaizen created, or reads.
*/
#ifndef KZ_GIT_H_INCLUDED
#define KZ_GIT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"

#define KZ_GIT_OID_MAX 65 /* sha1 (40) or sha256 (64) hex + NUL */

/* Tick called while git runs (kz_agent_proc_tick and the agent), for
   the calling thread; NULL = none. Per thread (thread-local). */
void kz_git_set_tick(void (*tick)(void *arg), void *arg);

/* The author and committer of every commit made from now on, in this
   process (policy.commit_author split by kz_config_ident); default
   "kaizen <kaizen@localhost>". Call it before starting threads. 0, or
   -1 (too long or empty: the default is kept). */
int kz_git_set_identity(const char *name, const char *email);

/* A repository owned by another user is refused (git's own
   safe.directory check, and this one with a clear message): PATH (the
   repository's top directory) and PATH/.git must belong to the effective
   user, unless TRUST (targets[].trust_owner). A trusted foreign-owned
   PATH is added, for the rest of the process, to the directories every
   git call names with -c safe.directory. 0 (also when PATH does not
   exist yet) / -1 with ERRBUF saying who owns what and the fix */
int kz_git_check_owner(const char *path, bool trust, char *errbuf, size_t errlen);

/* kz_git_check_owner on every target of CFG (each with its trust_owner):
   the trusted ones are registered; 0, or -1 with ERRBUF naming the first
   target refused ("target NAME: ...") - the others are still checked */
int kz_git_check_targets(const kz_config_t *cfg, char *errbuf, size_t errlen);

/* Run `git -C REPO ARGS...` (ARGS NULL-terminated). 0 when git exited 0,
   with its stdout in *OUT (malloc'd, NUL-terminated; OUT may be NULL);
   -1 with ERRBUF otherwise. TIMEOUT_MS <= 0: 5 minutes. */
int kz_git(const char *repo, const char *const *args, int timeout_ms, char **out, char *errbuf,
           size_t errlen);

/* kz_git with IN (IN_LEN bytes) on git's stdin, for `--stdin` commands
   whose output may hold NULs (`-z`): *OUT gets it (malloc'd, NUL-
   terminated too), *OUT_LEN its length. More than OUT_CAP bytes of output
   (0: 1 MiB) is an error, as is a non-zero exit. 0 / -1 with ERRBUF */
int kz_git_input(const char *repo, const char *const *args, const char *in, size_t in_len,
                 size_t out_cap, char **out, size_t *out_len, char *errbuf, size_t errlen);

/* 0 when PATH is the top of a git work tree (or a bare repo), -1 with
   "'PATH' is not a git repository" */
int kz_git_check_repo(const char *path, char *errbuf, size_t errlen);
/* Resolve REV ("main", "HEAD", a commit) to a commit id in OID. 0 / -1 */
int kz_git_rev(const char *repo, const char *rev, char oid[KZ_GIT_OID_MAX], char *errbuf,
               size_t errlen);
/* *CLEAN = no staged, unstaged or untracked (not ignored) changes. 0 / -1 */
int kz_git_is_clean(const char *repo, bool *clean, char *errbuf, size_t errlen);
/* The branch checked out in REPO's main work tree ("main"), or "" when
   HEAD is detached. 0 / -1 */
int kz_git_current_branch(const char *repo, char *branch, size_t len, char *errbuf, size_t errlen);

/* Files (paths relative to the root) tracked at COMMIT, NULL-terminated,
   malloc'd (free with kz_strv_free from kz_recipe.h, or kz_git_strv_free). 0 / -1 */
int kz_git_ls_files(const char *repo, const char *commit, char ***files, size_t *count,
                    char *errbuf, size_t errlen);
/* Files added, modified or renamed (new name) between FROM and TO
   (commits), deleted ones excluded. 0 / -1 */
int kz_git_changed(const char *repo, const char *from, const char *to, char ***files, size_t *count,
                   char *errbuf, size_t errlen);
/* Files deleted between FROM and TO. 0 / -1 */
int kz_git_deleted(const char *repo, const char *from, const char *to, char ***files, size_t *count,
                   char *errbuf, size_t errlen);
void kz_git_strv_free(char **v);

/* Add a worktree at PATH for COMMIT: on a new branch BRANCH (created or
   reset there: `worktree add -B`), or detached when BRANCH is NULL. A
   stale worktree registration or leftover directory at PATH is removed
   first. 0 / -1 */
int kz_git_worktree_add(const char *repo, const char *path, const char *branch, const char *commit,
                        char *errbuf, size_t errlen);
/* Remove the worktree at PATH (forced: it is kaizen's), prune the
   registration, and delete the directory if anything is left. Missing
   worktree: 0. 0 / -1 */
int kz_git_worktree_remove(const char *repo, const char *path, char *errbuf, size_t errlen);
/* Remove every worktree of REPO that lies under DIR (an absolute path:
   kaizen's STATE/worktrees/<target>), forced, under the repository's
   worktree lock; prune the registrations whose directory is gone; then
   delete DIR with whatever is left in it (never when it holds REPO).
   REPO's main work tree and every worktree outside DIR are left alone.
   *REMOVED (may be NULL) gets how many worktrees were removed. REPO
   missing or not a git repository: 0, nothing done. 0 / -1 */
int kz_git_worktrees_remove_under(const char *repo, const char *dir, int *removed, char *errbuf,
                                  size_t errlen);
/* 1 when commit ANCESTOR is REV or one of its ancestors (`merge-base
   --is-ancestor`; REV may be a ref such as "refs/heads/main"), 0 when
   not, -1 with ERRBUF (an unknown revision, a name that starts with
   '-') */
int kz_git_is_ancestor(const char *repo, const char *ancestor, const char *rev, char *errbuf,
                       size_t errlen);
/* Delete BRANCH (forced). Missing branch: 0. 0 / -1 */
int kz_git_branch_delete(const char *repo, const char *branch, char *errbuf, size_t errlen);
/* 1 when BRANCH exists, 0 when not, -1 on error */
int kz_git_branch_exists(const char *repo, const char *branch, char *errbuf, size_t errlen);

/* In worktree WT: stage every change (`add -A`), and when something
   changed commit it with MESSAGE (author and committer: the
   kz_git_set_identity one); *CHANGED says whether a commit was made, OID
   gets the new HEAD. 0 / -1 */
int kz_git_commit_all(const char *wt, const char *message, bool *changed, char oid[KZ_GIT_OID_MAX],
                      char *errbuf, size_t errlen);
/* `git diff --shortstat FROM TO` ("1 file changed, 2 insertions(+), ...") into
   a malloc'd *OUT (trimmed). 0 / -1 */
int kz_git_shortstat(const char *repo, const char *from, const char *to, char **out, char *errbuf,
                     size_t errlen);
/* `git diff --numstat` totals between FROM and TO: lines added and
   removed, files changed, binary files changed. 0 / -1 */
int kz_git_numstat(const char *repo, const char *from, const char *to, long *added, long *removed,
                   long *files, long *binary, char *errbuf, size_t errlen);
/* The unified diff FROM..TO (malloc'd; capped at MAX bytes, 0 = 1 MiB). 0 / -1 */
int kz_git_diff(const char *repo, const char *from, const char *to, size_t max, char **out,
                char *errbuf, size_t errlen);

/* Apply PATCH (LEN bytes of unified diff, e.g. a fixer's stdout) to the
   files of the worktree WT with `git apply` (patch on stdin). Every file
   the patch names ("--- a/F", "+++ b/F", "diff --git") must be one of
   FILES (NFILES paths relative to WT, already checked to stay inside it);
   a patch that creates, deletes, renames or copies a file, changes a
   mode or holds binary data is refused whole, before git runs. With at
   most 32 files, git is also told to touch only them (--include). 0, or
   -1 with ERRBUF ("patch names 'x', which is not one of the plan's
   files", "git apply: error: patch failed: ..."). An empty patch
   applies as nothing (0). */
int kz_git_apply(const char *wt, const char *patch, size_t len, const char *const *files,
                 size_t nfiles, char *errbuf, size_t errlen);
/* The subjects of the last MAX commits reachable from COMMIT (newest
   first; MAX <= 0: 100), malloc'd like kz_git_ls_files. 0 / -1 */
int kz_git_subjects(const char *repo, const char *commit, int max, char ***subjects, size_t *count,
                    char *errbuf, size_t errlen);
/* The message of COMMIT (malloc'd, trimmed, capped at MAX bytes, 0 = 64
   KiB). 0 / -1 */
int kz_git_message(const char *repo, const char *commit, size_t max, char **out, char *errbuf,
                   size_t errlen);
/* Point REF (under "refs/kaizen/", e.g. refs/kaizen/plans/<id>) at
   COMMIT, so the commit stays reachable without a branch: `git branch`
   does not list it, gc keeps it. 0 / -1 */
int kz_git_keep(const char *repo, const char *ref, const char *commit, char *errbuf, size_t errlen);
/* 1 when the full ref REF ("refs/...") exists, 0 when not, -1 on error */
int kz_git_ref_exists(const char *repo, const char *ref, char *errbuf, size_t errlen);

/* Add COMMIT (whose parent is on some base) onto BRANCH without touching
   the user's checkout: a temporary worktree of BRANCH (created at BASE
   when BRANCH does not exist yet) under TMPDIR, `cherry-pick` there,
   worktree removed. NEW_OID gets BRANCH's new head. A conflict aborts the
   pick, leaves BRANCH as it was and returns -1 with "conflict: ...". */
int kz_git_cherry_pick_onto(const char *repo, const char *branch, const char *base,
                            const char *commit, const char *tmpdir, char new_oid[KZ_GIT_OID_MAX],
                            char *errbuf, size_t errlen);
/* Policy apply: merge. Fast-forward BRANCH to COMMIT when COMMIT descends
   from it: when BRANCH is checked out in REPO's work tree, only if that
   tree is clean (`merge --ff-only`); otherwise by moving the ref
   (`update-ref` with the old value). -1 with the reason otherwise
   ("working tree of 'main' has local changes", "not a fast-forward"). */
int kz_git_fast_forward(const char *repo, const char *branch, const char *commit, char *errbuf,
                        size_t errlen);

#endif
