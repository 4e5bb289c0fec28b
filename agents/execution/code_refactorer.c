/*  code_refactorer.c - kaizen-code-refactorer (layer "execution")

    Serves "exec.refactor" (PROTOCOL.md 4.13): runs one plan's fixer on
    the plan's files in a worktree of its own and commits the result on
    the plan's branch. For a request {plan_id, fixer, files, base_commit,
    branch} whose envelope names the target:

      1. checks everything the message claims against this host's config
         and the repository: the plan id ([A-Za-z0-9_-], at most 128), the
         target (configured, a git repository), the fixer (in the LOCAL
         config: the command comes from here, never from the bus), the
         branch (kaizen/plan-<plan_id>, derived from the id: a request
         naming another is refused), the base commit (resolves), and every
         file (a safe relative path, tracked at the base commit, not a
         symbolic link leaving the tree); then, before anything is
         written, that the router executes this plan as requested: the
         orchestrator's kaizen.plan answers its state (executing), target,
         fixer, base commit, branch and call id (s_check_record);
      2. makes the worktree STATE/worktrees/<target>/plan-<plan_id> on the
         branch kaizen/plan-<plan_id> at the base commit;
      3. runs the fixer's argv ("{files}" = the plan's files) there with
         its timeout and environment, through kz_proc (no shell); a fixer
         with `output: diff` prints a patch instead of changing the files
         (shellcheck -f diff): it is applied with `git apply` to the
         plan's files only (kz_git_apply; a patch naming another path,
         or creating, deleting or renaming a file, fails the plan);
      4. judges by the changes, not the exit code (codespell -w exits 65
         after fixing, black 123 on a file it cannot parse): a crash or a
         timeout fails; a change to a path that is not one of the plan's
         files is reverted and reported; a plan file turned into something
         that is not a regular file inside the tree fails;
      5. commits in the target's style (kz_commitmsg.h): a subject from
         the fixer's template (fixers[].subject), Conventional Commits when
         most of the last 100 subjects at the base are, the findings of
         the request's finding_details one per line in the body, and a
         "Kaizen-Plan: <id>" trailer; author and committer are
         policy.commit_author. Removes the worktree and keeps the branch;
         the validators make worktrees of their own from the commit.

    Replies exec.result {plan_id, status changed|nothing|failed, commit,
    files, diffstat, error}. "nothing" (the fixer changed none of the
    files) is not an error. On "nothing" and "failed" the worktree and the
    branch are gone before the reply.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_commitmsg.h"
#include "kz_compdb.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_plan.h"
#include "kz_proc.h"
#include "kz_project.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define S_SERVICE      "exec.refactor"
#define S_MAX_ID       128
#define S_MAX_FILES    1000
#define S_MAX_FINDINGS 1000
#define S_MAX_PATCH    (4 * 1024 * 1024) /* bytes of a fixer's patch (output: diff) */
#define S_MAX_DETAIL   4096              /* bytes of one finding detail's string we keep */
#define S_HISTORY      100               /* subjects read to tell the target's style */
#define S_PLAN_SERVICE "kaizen.plan"     /* the router's record of a plan (the orchestrator's) */
#define S_PLAN_TIMEOUT 10000             /* ms for its answer, per attempt */

typedef enum { S_CHANGED, S_NOTHING, S_FAILED } s_status_t;

/* One exec.request being handled */
typedef struct {
    kz_agent_t *agent;
    const kz_config_t *cfg;
    const kz_target_config_t *target;
    const kz_fixer_config_t *fixer;
    const char *plan_id;
    char branch[256];
    char base[KZ_GIT_OID_MAX];
    char **files; /* the plan's files, NULL-terminated, without duplicates */
    size_t nfiles;
    char **findings; /* fingerprints when the request carries them (optional) */
    size_t nfindings;
    kz_commit_finding_t *details; /* finding_details (optional; strings owned) */
    size_t ndetails;
    char wt[PATH_MAX];
    int lock_fd;
    int runs; /* this run's number on this host: earlier runs died (the lock file says) */
    char lock_path[PATH_MAX];
    bool branch_made;
    /* the outcome */
    char commit[KZ_GIT_OID_MAX];
    char **changed; /* files changed by the commit */
    size_t nchanged;
    char *diffstat;
    char error[4096];
    char note[2048]; /* what was reverted, for the reply and the log */
    /* why a "failed" job failed (exec.result cause): "fixer" when the
       fixer itself misbehaved on the files (it counts against the fixer),
       "timeout", "interrupted", else "error" (git, the worktree, a fixer
       that cannot start: the machinery's, not the fixer's) */
    const char *cause;
} s_job_t;

static int s_fail_job(s_job_t *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record why the job failed (the first reason wins) and return -1 */
static int s_fail_job(s_job_t *job, const char *fmt, ...)
{
    if (!job->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->error, sizeof job->error, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool s_is_hex(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 4 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

/* A branch name kaizen may create, reset and delete: "kaizen/..." of
   [A-Za-z0-9._/-], no "..", "//", "/." or ".lock" ending, and git agrees */
static int s_check_branch(s_job_t *job, const char *branch)
{
    size_t n = strlen(branch);
    if (strncmp(branch, "kaizen/", 7) != 0 || n <= 7 || n >= sizeof job->branch)
        return s_fail_job(job, "branch '%.255s' is refused: plan branches are 'kaizen/...'",
                          branch);
    for (size_t i = 0; i < n; i++) {
        char c = branch[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == '/'))
            return s_fail_job(job, "branch '%.255s' is refused: only [A-Za-z0-9._/-] allowed",
                              branch);
    }
    if (strstr(branch, "..") || strstr(branch, "//") || strstr(branch, "/.") ||
        branch[n - 1] == '/' || branch[n - 1] == '.' ||
        (n > 5 && strcmp(branch + n - 5, ".lock") == 0))
        return s_fail_job(job, "branch '%.255s' is not a valid branch name", branch);
    const char *ib = job->cfg->policy.integration_branch;
    if (ib && strcmp(branch, ib) == 0)
        return s_fail_job(job,
                          "branch '%s' is the integration branch; a plan needs a branch "
                          "of its own",
                          branch);
    char ref[300], err[512];
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    const char *args[] = {"check-ref-format", ref, NULL};
    if (kz_git(job->target->path, args, 0, NULL, err, sizeof err) != 0)
        return s_fail_job(job, "branch '%s' is not a valid branch name", branch);
    snprintf(job->branch, sizeof job->branch, "%s", branch);
    return 0;
}

static bool s_in(char *const *v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

/* Copy the strings of array VAL (field NAME) into a NULL-terminated vector */
static int s_strings(s_job_t *job, const kz_val_t *val, const char *name, size_t max, char ***out,
                     size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!val)
        return 0;
    if (val->type != KZ_VAL_ARRAY)
        return s_fail_job(job, "'%s' is not a list of strings", name);
    if (val->u.arr.count > max)
        return s_fail_job(job, "'%s' has %u entries, at most %zu are handled", name,
                          val->u.arr.count, max);
    char **v = calloc(val->u.arr.count + 1, sizeof *v);
    if (!v)
        return s_fail_job(job, "out of memory");
    size_t n = 0;
    for (uint32_t i = 0; i < val->u.arr.count; i++) {
        const kz_val_t *it = &val->u.arr.items[i];
        if (it->type != KZ_VAL_STR) {
            kz_strv_free(v);
            return s_fail_job(job, "'%s[%u]' is not a string", name, i);
        }
        if (s_in(v, it->u.str.ptr))
            continue; /* a duplicate */
        v[n] = strdup(it->u.str.ptr);
        if (!v[n]) {
            kz_strv_free(v);
            return s_fail_job(job, "out of memory");
        }
        n++;
    }
    *out = v;
    *count = n;
    return 0;
}

/* A string field KEY of detail I, copied (cut at S_MAX_DETAIL bytes), or
   NULL when absent; -1 when it is not a string */
static int s_detail_str(s_job_t *job, const kz_val_t *item, uint32_t i, const char *key,
                        const char **out)
{
    *out = NULL;
    const kz_val_t *v = kz_map_get(item, key);
    if (!v || v->type == KZ_VAL_NIL)
        return 0;
    if (v->type != KZ_VAL_STR)
        return s_fail_job(job, "'finding_details[%u].%s' is not a string", i, key);
    *out = strndup(v->u.str.ptr, S_MAX_DETAIL);
    return *out ? 0 : s_fail_job(job, "out of memory");
}

/* finding_details: [{fingerprint, file, line, rule, message}], what the
   commit message lists. The text is the target's: kz_commitmsg cleans it */
static int s_details(s_job_t *job, const kz_val_t *val)
{
    if (!val)
        return 0;
    if (val->type != KZ_VAL_ARRAY)
        return s_fail_job(job, "'finding_details' is not a list");
    if (val->u.arr.count > S_MAX_FINDINGS)
        return s_fail_job(job, "'finding_details' has %u entries, at most %d are handled",
                          val->u.arr.count, S_MAX_FINDINGS);
    job->details = calloc(val->u.arr.count + 1, sizeof *job->details);
    if (!job->details)
        return s_fail_job(job, "out of memory");
    for (uint32_t i = 0; i < val->u.arr.count; i++) {
        const kz_val_t *it = &val->u.arr.items[i];
        kz_commit_finding_t *d = &job->details[job->ndetails];
        if (it->type != KZ_VAL_MAP)
            return s_fail_job(job, "'finding_details[%u]' is not a map", i);
        job->ndetails++; /* counted first: s_job_free frees what was copied */
        if (s_detail_str(job, it, i, "file", &d->file) != 0 ||
            s_detail_str(job, it, i, "rule", &d->rule) != 0 ||
            s_detail_str(job, it, i, "message", &d->message) != 0)
            return -1;
        int64_t line = kz_map_int(it, "line", 0);
        d->line = line > 0 && line < INT_MAX ? (int)line : 0;
    }
    return 0;
}

/* Step 1: everything the request claims, checked before anything runs */
static int s_validate(s_job_t *job, const kz_msg_t *req)
{
    const kz_val_t *body = kz_msg_body_const(req);
    const char *tname = kz_msg_target(req);
    if (!tname || !*tname)
        return s_fail_job(job, "the request names no target (envelope 'target')");
    job->target = kz_config_target(job->cfg, tname);
    if (!job->target)
        return s_fail_job(job, "unknown target '%.255s': not in this host's config", tname);
    char err[1024];
    if (kz_git_check_repo(job->target->path, err, sizeof err) != 0)
        return s_fail_job(job, "target '%s': %s", job->target->name, err);

    const char *fixer = kz_map_str(body, "fixer");
    if (!fixer || !*fixer)
        return s_fail_job(job, "the request names no fixer");
    job->fixer = kz_config_fixer(job->cfg, fixer);
    if (!job->fixer)
        return s_fail_job(job, "unknown fixer '%.255s': not in this host's config", fixer);
    if (!job->fixer->argv || !job->fixer->argv[0])
        return s_fail_job(job, "fixer '%s' has no argv", fixer);

    /* the branch is the plan's, derived from its id: a request naming
       another one (an accepted plan's, say) is refused */
    const char *branch = kz_map_str(body, "branch");
    char own[256];
    if (kz_plan_branch(job->plan_id, own, sizeof own) != 0)
        return s_fail_job(job, "plan id '%s' makes no branch name", job->plan_id);
    if (branch && *branch && strcmp(branch, own) != 0) {
        job->cause = "refused";
        return s_fail_job(job,
                          "branch '%.255s' is refused: plan %s works on its own branch '%s' only",
                          branch, job->plan_id, own);
    }
    if (s_check_branch(job, own) != 0)
        return -1;

    const char *base = kz_map_str(body, "base_commit");
    if (!base || !s_is_hex(base))
        return s_fail_job(job, "base commit '%.64s' is not a commit id (hex)", base ? base : "");
    if (kz_git_rev(job->target->path, base, job->base, err, sizeof err) != 0)
        return s_fail_job(job, "base commit %.64s not found in target '%s': %s", base,
                          job->target->name, err);

    if (s_strings(job, kz_map_get(body, "files"), "files", S_MAX_FILES, &job->files,
                  &job->nfiles) != 0)
        return -1;
    if (job->nfiles == 0)
        return s_fail_job(job, "the plan names no files");
    if (s_strings(job, kz_map_get(body, "findings"), "findings", S_MAX_FINDINGS, &job->findings,
                  &job->nfindings) != 0)
        return -1;
    if (s_details(job, kz_map_get(body, "finding_details")) != 0)
        return -1;

    char **tracked = NULL;
    size_t ntracked = 0;
    if (kz_git_ls_files(job->target->path, job->base, &tracked, &ntracked, err, sizeof err) != 0)
        return s_fail_job(job, "unable to list the files of %.12s: %s", job->base, err);
    int rc = 0;
    for (size_t i = 0; i < job->nfiles && rc == 0; i++) {
        char why[1024];
        const char *f = job->files[i];
        if (!kz_path_inside(job->target->path, f, why, sizeof why))
            rc = s_fail_job(job, "file refused: %s", why);
        else if (!s_in(tracked, f))
            rc = s_fail_job(job, "file '%s' is not tracked at base commit %.12s of target '%s'", f,
                            job->base, job->target->name);
    }
    kz_git_strv_free(tracked);
    return rc;
}

/* A field of the router's record (plan.info) that must equal WANT */
static int s_record_is(s_job_t *job, const kz_val_t *info, const char *key, const char *want)
{
    const char *got = kz_map_str(info, key);
    if (got && strcmp(got, want) == 0)
        return 0;
    job->cause = "refused";
    return s_fail_job(
        job, "refused: the request's %s '%.255s' is not the router's for plan %s ('%.255s')", key,
        want, job->plan_id, got ? got : "none");
}

/* True when REQ re-asks the call RID after a broker restart (kz_bus_call
   sends the re-ask under a new id with body "retry_of" = the first id,
   PROTOCOL.md 1.3): the router's record holds the first id */
static bool s_reasks(const kz_msg_t *req, const char *rid)
{
    const char *first = kz_map_str(kz_msg_body_const(req), "retry_of");
    return first && strcmp(first, rid) == 0;
}

/* Step 1b, before anything is written: the plan must be one the router
   executes right now, as the request says. Asks the orchestrator
   (kaizen.plan, PROTOCOL.md 4.13a): its state must be "executing", and
   its target, fixer, base commit, branch (and the id of the executor
   call in progress) those of this request. A request for a plan that
   ended (an accepted plan's branch) or that the router does not hold is
   refused; when the orchestrator cannot be asked nothing is done either
   (cause "unavailable": the request may be sent again). */
static int s_check_record(s_job_t *job, const kz_msg_t *req)
{
    kz_msg_t *q = kz_msg_new("plan.query");
    if (!q || kz_map_put_str(q, kz_msg_body(q), "plan_id", job->plan_id) != 0) {
        kz_msg_destroy(&q);
        return s_fail_job(job, "out of memory");
    }
    char err[512];
    kz_msg_t *info = kz_bus_call(kz_agent_bus(job->agent), S_PLAN_SERVICE, &q, S_PLAN_TIMEOUT, 1,
                                 err, sizeof err);
    if (!info) {
        job->cause = "unavailable";
        return s_fail_job(job,
                          "unable to ask the orchestrator about plan %s (%s): %s; nothing was "
                          "done, the request may be sent again",
                          job->plan_id, S_PLAN_SERVICE, err);
    }
    const kz_val_t *b = kz_msg_body_const(info);
    int rc = 0;
    if (strcmp(kz_msg_type(info), "plan.info") != 0) {
        const char *msg = kz_map_str(b, "message");
        job->cause = "unavailable";
        rc = s_fail_job(job,
                        "unable to ask the orchestrator about plan %s (%s): %s; nothing was "
                        "done, the request may be sent again",
                        job->plan_id, S_PLAN_SERVICE, msg ? msg : kz_msg_type(info));
    } else {
        const char *state = kz_map_str(b, "state");
        const char *pid = kz_map_str(b, "plan_id");
        const char *rid = kz_map_str(b, "request_id");
        if (!pid || strcmp(pid, job->plan_id) != 0) {
            job->cause = "unavailable";
            rc = s_fail_job(job, "the orchestrator answered about another plan than %s",
                            job->plan_id);
        } else if (!state || strcmp(state, "executing") != 0) {
            job->cause = "refused";
            rc = s_fail_job(job,
                            "refused: plan %s is not being executed by the router (its state "
                            "there is '%s'); an executor acts only on a plan the router runs",
                            job->plan_id, state ? state : "none");
        } else if (s_record_is(job, b, "target", job->target->name) != 0 ||
                   s_record_is(job, b, "fixer", job->fixer->name) != 0 ||
                   s_record_is(job, b, "base_commit", job->base) != 0 ||
                   s_record_is(job, b, "branch", job->branch) != 0) {
            rc = -1;
        } else if (rid && strcmp(rid, kz_msg_id(req)) != 0 && !s_reasks(req, rid)) {
            job->cause = "refused";
            rc = s_fail_job(job,
                            "refused: request %s is not the router's call for plan %s (that is "
                            "%s)",
                            kz_msg_id(req), job->plan_id, rid);
        }
    }
    kz_msg_destroy(&info);
    return rc;
}

/* One run at a time per plan, also across instances: a retried request
   that reaches another worker while the first still runs is refused */
static int s_lock(s_job_t *job)
{
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "worktrees/%s/plan-%s", job->target->name, job->plan_id);
    if (kz_state_path(job->cfg, rel, job->wt, sizeof job->wt) != 0)
        return s_fail_job(job, "worktree path for plan %s is too long", job->plan_id);
    if (snprintf(job->lock_path, sizeof job->lock_path, "%s.lock", job->wt) >=
        (int)sizeof job->lock_path)
        return s_fail_job(job, "worktree path for plan %s is too long", job->plan_id);
    /* the parent directories: STATE/worktrees/<target> is 0711 (kz_state.h) */
    char dir[PATH_MAX], why[512];
    snprintf(dir, sizeof dir, "%s", job->wt);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    if (kz_mkdirs(dir, 0711, why, sizeof why) != 0)
        return s_fail_job(job, "%s", why);
    int fd = kz_file_open(job->lock_path, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        return s_fail_job(job, "unable to open '%s': %s", job->lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return s_fail_job(job, "plan %s is being executed by another worker right now",
                          job->plan_id);
    }
    job->lock_fd = fd;
    /* the file holds the number of the run that made it; a finished run
       removes it, so one found here is that of a run that died */
    char buf[32] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long prev = n > 0 ? strtol(buf, NULL, 10) : 0;
    job->runs = prev > 0 && prev < 1000000 ? (int)prev + 1 : 1;
    int len = snprintf(buf, sizeof buf, "%d\n", job->runs);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
        kz_warn("plan %s: unable to write '%s': %s", job->plan_id, job->lock_path, strerror(errno));
    if (job->runs > 1)
        kz_info("plan %s: run %d: %d earlier run%s of this plan died before answering",
                job->plan_id, job->runs, job->runs - 1, job->runs == 2 ? "" : "s");
    return 0;
}

/* s_lock as soon as the request is taken, when its target is one of
   this host's (else s_validate refuses it; nothing to lock). 0 / -1 */
static int s_lock_early(s_job_t *job, const kz_msg_t *req)
{
    const char *tname = kz_msg_target(req);
    job->target = tname && *tname ? kz_config_target(job->cfg, tname) : NULL;
    return job->target ? s_lock(job) : 0;
}

static void s_unlock(s_job_t *job)
{
    if (job->lock_fd < 0)
        return;
    unlink(job->lock_path);
    close(job->lock_fd);
    job->lock_fd = -1;
}

/* The plan files in the fresh worktree: regular files inside it (a
   symbolic link could make the fixer write anywhere) */
static int s_check_files_in_worktree(s_job_t *job)
{
    for (size_t i = 0; i < job->nfiles; i++) {
        const char *f = job->files[i];
        char why[1024], path[PATH_MAX * 2];
        if (!kz_path_inside(job->wt, f, why, sizeof why))
            return s_fail_job(job, "file refused: %s", why);
        snprintf(path, sizeof path, "%s/%s", job->wt, f);
        struct stat st;
        if (lstat(path, &st) != 0)
            return s_fail_job(job, "file '%s' is missing in the worktree: %s", f, strerror(errno));
        if (S_ISLNK(st.st_mode))
            return s_fail_job(job, "file '%s' is a symbolic link; kaizen fixes regular files only",
                              f);
        if (!S_ISREG(st.st_mode))
            return s_fail_job(job, "file '%s' is not a regular file", f);
    }
    return 0;
}

/* First non-empty line of TEXT (at most LEN-1 bytes) */
static void s_first_line(const char *text, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!text)
        return;
    while (*text == '\n' || *text == '\r' || *text == ' ')
        text++;
    size_t n = strcspn(text, "\r\n");
    if (n >= len)
        n = len - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
}

static bool s_output_diff(const kz_fixer_config_t *fx)
{
    return fx->output && strcmp(fx->output, "diff") == 0;
}

/* Step 3 of a fixer whose stdout is a patch (fixers[].output: diff,
   shellcheck -f diff): apply it to the plan's files in the worktree
   (kz_git_apply refuses a patch naming any other path). 0 / -1 */
static int s_apply_output(s_job_t *job, const kz_proc_result_t *res)
{
    const kz_fixer_config_t *fx = job->fixer;
    char err[1024];
    if (res->out_truncated) {
        job->cause = "fixer";
        return s_fail_job(job, "fixer '%s' printed a patch of more than %d bytes", fx->name,
                          S_MAX_PATCH);
    }
    if (kz_git_apply(job->wt, res->out, res->out_len, (const char *const *)job->files, job->nfiles,
                     err, sizeof err) != 0) {
        job->cause = "fixer";
        return s_fail_job(job, "unable to apply the patch of fixer '%s': %s", fx->name, err);
    }
    kz_info("plan %s: applied the %zu-byte patch of fixer '%s'", job->plan_id, res->out_len,
            fx->name);
    return 0;
}

/* The compile database of the plan's worktree for a fixer that wants
   one ("{compdb}"), made there so its paths are the worktree's; NULL when
   it wants none. Without one the fixer runs without it (its "{compdb}"
   arguments left out). *OOM on out of memory. */
static kz_compdb_t *s_fixer_compdb(s_job_t *job, bool *oom)
{
    const kz_fixer_config_t *fx = job->fixer;
    *oom = false;
    if (!kz_compdb_wanted(fx->argv, fx->argv_count))
        return NULL;
    kz_compdb_t *db = kz_compdb_for(kz_agent_config(job->agent), job->wt, kz_agent_proc_tick,
                                    kz_agent_proc_cancel, job->agent);
    *oom = db == NULL;
    if (db && !kz_compdb_dir(db))
        kz_warn("plan %s: no compile database for fixer '%s': %s; it runs without one",
                job->plan_id, fx->name, kz_compdb_error(db));
    return db;
}

/* Step 3: run the fixer. 0 when it ran to an exit (*EXIT_CODE, and the
   first line of its output in LINE), -1 when it could not run, crashed
   or timed out */
static int s_run_fixer(s_job_t *job, int *exit_code, char *line, size_t linelen)
{
    const kz_fixer_config_t *fx = job->fixer;
    /* the project's arguments for the fixer's tool (its pre-commit hook,
       its settings): codespell -w must ignore the words the project told
       codespell to ignore */
    kz_tool_setup_t setup;
    char note[2048];
    const kz_tool_config_t *tool = kz_config_tool(job->cfg, fx->tool);
    if (kz_tool_setup_load(job->wt, tool, &setup, note, sizeof note) != 0)
        return s_fail_job(job, "out of memory");
    if (note[0])
        kz_warn("plan %s: fixer '%s': %s", job->plan_id, fx->name, note);
    bool oom;
    kz_compdb_t *db = s_fixer_compdb(job, &oom);
    char **argv = oom ? NULL
                      : kz_argv_build(fx->argv, (const char *const *)setup.args, false,
                                      (const char *const *)job->files, job->nfiles, job->wt, NULL,
                                      kz_compdb_dir(db));
    kz_tool_setup_clear(&setup);
    if (!argv) {
        kz_compdb_destroy(&db);
        return s_fail_job(job, "out of memory");
    }
    kz_proc_opts_t po = {0};
    po.argv = (const char *const *)argv;
    po.cwd = job->wt;
    po.env_add = (const char *const *)fx->env;
    /* the fixer writes the plan's worktree, and nothing else, in the sandbox */
    po.sandbox = KZ_SANDBOX_WRITE;
    const char *ro[] = {kz_compdb_dir(db), NULL};
    po.sandbox_ro = ro;
    po.timeout_ms = fx->timeout_ms > 0 ? fx->timeout_ms : 300000;
    po.out_cap = s_output_diff(fx) ? S_MAX_PATCH : 256 * 1024;
    po.err_cap = 256 * 1024;
    po.tick = kz_agent_proc_tick;
    po.tick_arg = job->agent;
    po.cancel = kz_agent_proc_cancel;
    po.cancel_arg = job->agent;
    kz_proc_result_t res;
    char err[512];
    kz_info("plan %s: running fixer '%s' on %zu file(s) in '%s'", job->plan_id, fx->name,
            job->nfiles, job->wt);
    int rc = kz_proc_run(&po, &res, err, sizeof err);
    if (rc != 0)
        rc = s_fail_job(job, "fixer '%s': %s", fx->name, err);
    else if (res.cancelled) {
        job->cause = "interrupted";
        rc = s_fail_job(job, "fixer '%s' stopped: the plan's request was cancelled", fx->name);
    } else if (res.timed_out) {
        job->cause = "timeout";
        rc = s_fail_job(job, "fixer '%s' timed out after %d s (fixers[].timeout)", fx->name,
                        po.timeout_ms / 1000);
    } else if (res.term_signal != 0 || res.exit_code < 0) {
        job->cause = "fixer";
        rc = s_fail_job(job, "fixer '%s' was killed by signal %d", fx->name, res.term_signal);
    } else {
        *exit_code = res.exit_code;
        s_first_line(res.err, line, linelen);
        if (!line[0] && !s_output_diff(fx))
            s_first_line(res.out, line, linelen);
        kz_info("plan %s: fixer '%s' exited %d after %lld ms%s%s", job->plan_id, fx->name,
                res.exit_code, (long long)(res.duration_us / 1000), line[0] ? ": " : "", line);
        if (s_output_diff(fx))
            rc = s_apply_output(job, &res);
    }
    kz_proc_result_free(&res);
    kz_strv_free(argv);
    kz_compdb_destroy(&db);
    return rc;
}

static void s_note(s_job_t *job, const char *what, const char *path)
{
    size_t used = strlen(job->note);
    if (used + 8 >= sizeof job->note)
        return;
    snprintf(job->note + used, sizeof job->note - used, "%s%s '%s'", used ? ", " : "", what, path);
}

/* Step 4: what did the fixer change? Stage everything (the worktree is
   kaizen's), compare the staged tree with the base, and put back every
   path that is not one of the plan's files. Plan files must still be
   regular files inside the tree. */
static int s_inspect(s_job_t *job)
{
    char err[1024];
    const char *add[] = {"add", "-A", "--", ".", NULL};
    if (kz_git(job->wt, add, 0, NULL, err, sizeof err) != 0)
        return s_fail_job(job, "unable to stage the fixer's changes: %s", err);
    const char *wtree[] = {"write-tree", NULL};
    char *tree = NULL;
    if (kz_git(job->wt, wtree, 0, &tree, err, sizeof err) != 0)
        return s_fail_job(job, "unable to read the fixer's changes: %s", err);
    tree[strcspn(tree, "\r\n")] = '\0';
    char **changed = NULL, **deleted = NULL;
    size_t nchanged = 0, ndeleted = 0;
    int rc = 0;
    if (kz_git_changed(job->wt, job->base, tree, &changed, &nchanged, err, sizeof err) != 0 ||
        kz_git_deleted(job->wt, job->base, tree, &deleted, &ndeleted, err, sizeof err) != 0) {
        rc = s_fail_job(job, "unable to list the fixer's changes: %s", err);
        goto done;
    }
    for (size_t i = 0; i < nchanged && rc == 0; i++) {
        const char *p = changed[i];
        if (s_in(job->files, p)) {
            char why[1024], path[PATH_MAX * 2];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", job->wt, p);
            if (!kz_path_inside(job->wt, p, why, sizeof why)) {
                job->cause = "fixer";
                rc = s_fail_job(job, "fixer '%s' made '%s' leave the worktree: %s",
                                job->fixer->name, p, why);
            } else if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
                job->cause = "fixer";
                rc = s_fail_job(job,
                                "fixer '%s' turned '%s' into something that is not a "
                                "regular file",
                                job->fixer->name, p);
            }
            continue;
        }
        /* not a plan file: put it back as it was at the base */
        bool was_tracked = false;
        const char *ls[] = {"cat-file", "-e", NULL, NULL};
        char spec[PATH_MAX + 80];
        snprintf(spec, sizeof spec, "%s:%s", job->base, p);
        ls[2] = spec;
        was_tracked = kz_git(job->wt, ls, 0, NULL, err, sizeof err) == 0;
        if (was_tracked) {
            const char *co[] = {"checkout", "--quiet", job->base, "--", p, NULL};
            if (kz_git(job->wt, co, 0, NULL, err, sizeof err) != 0)
                rc = s_fail_job(job, "unable to revert '%s': %s", p, err);
            s_note(job, "reverted change to", p);
        } else {
            const char *rm[] = {"rm", "--quiet", "--force", "--", p, NULL};
            if (kz_git(job->wt, rm, 0, NULL, err, sizeof err) != 0)
                rc = s_fail_job(job, "unable to remove '%s': %s", p, err);
            s_note(job, "removed new file", p);
        }
    }
    for (size_t i = 0; i < ndeleted && rc == 0; i++) {
        const char *p = deleted[i];
        const char *co[] = {"checkout", "--quiet", job->base, "--", p, NULL};
        if (kz_git(job->wt, co, 0, NULL, err, sizeof err) != 0)
            rc = s_fail_job(job, "unable to restore '%s': %s", p, err);
        s_note(job, "restored deleted", p);
    }
    if (rc == 0 && job->note[0])
        kz_warn("plan %s: fixer '%s' touched paths outside the plan's files: %s", job->plan_id,
                job->fixer->name, job->note);
done:
    kz_git_strv_free(changed);
    kz_git_strv_free(deleted);
    free(tree);
    return rc;
}

/* "a.py", "a.py, b.py" or "a.py, b.py and 3 more" */
static void s_files_summary(const s_job_t *job, char *buf, size_t len)
{
    buf[0] = '\0';
    size_t shown = job->nfiles <= 3 ? job->nfiles : 2;
    for (size_t i = 0; i < shown; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? ", " : "", job->files[i]);
    }
    if (shown < job->nfiles) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, " and %zu more", job->nfiles - shown);
    }
}

/* True when most of the last S_HISTORY subjects at the plan's base are
   Conventional Commits (a history that cannot be read: plain) */
static bool s_conventional(const s_job_t *job)
{
    char **subjects = NULL;
    size_t n = 0;
    char err[512];
    if (kz_git_subjects(job->target->path, job->base, S_HISTORY, &subjects, &n, err, sizeof err) !=
        0) {
        kz_warn("plan %s: unable to read the history of '%s' at %.12s: %s; plain subject",
                job->plan_id, job->target->name, job->base, err);
        return false;
    }
    bool conventional = kz_commit_mostly_conventional((const char *const *)subjects, n);
    kz_git_strv_free(subjects);
    return conventional;
}

/* Step 5: the commit message (kz_commitmsg.h) */
static char *s_message(const s_job_t *job)
{
    const kz_commit_info_t info = {
        .plan_id = job->plan_id,
        .tool = job->fixer->tool,
        .subject = job->fixer->subject,
        .commit_type = job->fixer->commit_type,
        .conventional = s_conventional(job),
        .files = (const char *const *)job->files,
        .nfiles = job->nfiles,
        .nfixed = job->nfindings > job->ndetails ? job->nfindings : job->ndetails,
        .findings = job->details,
        .nfindings = job->ndetails,
        .note = job->note,
    };
    return kz_commit_message(&info);
}

static void s_cleanup(s_job_t *job, bool keep_branch)
{
    char err[1024];
    if (job->wt[0] && kz_git_worktree_remove(job->target->path, job->wt, err, sizeof err) != 0)
        kz_error("plan %s: unable to remove worktree '%s': %s", job->plan_id, job->wt, err);
    if (!keep_branch && job->branch_made &&
        kz_git_branch_delete(job->target->path, job->branch, err, sizeof err) != 0)
        kz_error("plan %s: unable to delete branch '%s': %s", job->plan_id, job->branch, err);
}

/* Steps 2-5. The status of the job; the details are in JOB */
static s_status_t s_execute(s_job_t *job)
{
    char err[1024];
    if (kz_git_worktree_add(job->target->path, job->wt, job->branch, job->base, err, sizeof err) !=
        0) {
        /* `worktree add -B` may have created or reset the branch before failing */
        job->branch_made =
            kz_git_branch_exists(job->target->path, job->branch, err, sizeof err) == 1;
        s_fail_job(job, "unable to create the worktree for plan %s: %s", job->plan_id, err);
        return S_FAILED;
    }
    job->branch_made = true;
    if (s_check_files_in_worktree(job) != 0)
        return S_FAILED;
    int code = 0;
    char line[400];
    if (s_run_fixer(job, &code, line, sizeof line) != 0)
        return S_FAILED;
    if (s_inspect(job) != 0)
        return S_FAILED;

    char *msg = s_message(job);
    if (!msg) {
        s_fail_job(job, "out of memory");
        return S_FAILED;
    }
    bool changed = false;
    int rc = kz_git_commit_all(job->wt, msg, &changed, job->commit, err, sizeof err);
    free(msg);
    if (rc != 0) {
        s_fail_job(job, "unable to commit the fix: %s", err);
        return S_FAILED;
    }
    if (!changed) {
        char summary[1024];
        s_files_summary(job, summary, sizeof summary);
        if (code != 0)
            snprintf(job->error, sizeof job->error,
                     "nothing to do: %s changed none of %s (it exited %d%s%s)%s%s",
                     job->fixer->name, summary, code, line[0] ? ": " : "", line,
                     job->note[0] ? "; " : "", job->note);
        else
            snprintf(job->error, sizeof job->error, "nothing to do: %s changed none of %s%s%s",
                     job->fixer->name, summary, job->note[0] ? "; " : "", job->note);
        job->commit[0] = '\0';
        return S_NOTHING;
    }
    if (kz_git_changed(job->target->path, job->base, job->commit, &job->changed, &job->nchanged,
                       err, sizeof err) != 0 ||
        kz_git_shortstat(job->target->path, job->base, job->commit, &job->diffstat, err,
                         sizeof err) != 0) {
        s_fail_job(job, "unable to read the commit %.12s: %s", job->commit, err);
        return S_FAILED;
    }
    if (job->note[0])
        snprintf(job->error, sizeof job->error, "fixer '%s' touched paths outside the plan: %s",
                 job->fixer->name, job->note);
    return S_CHANGED;
}

static const char *s_status_name(s_status_t st)
{
    return st == S_CHANGED ? "changed" : st == S_NOTHING ? "nothing" : "failed";
}

static int s_reply(kz_agent_t *agent, kz_delivery_t *d, const s_job_t *job, s_status_t st)
{
    kz_msg_t *reply = kz_msg_new("exec.result");
    if (!reply)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(reply);
    int rc = kz_map_put_str(reply, b, "plan_id", job->plan_id);
    rc |= kz_map_put_str(reply, b, "status", s_status_name(st));
    if (st == S_CHANGED) {
        rc |= kz_map_put_str(reply, b, "commit", job->commit);
        kz_val_t *files = kz_map_put_array(reply, b, "files");
        if (!files)
            rc = -1;
        for (size_t i = 0; files && i < job->nchanged; i++) {
            kz_val_t *it = kz_array_push(reply, files);
            rc |= it ? kz_val_set_str(reply, it, job->changed[i]) : -1;
        }
        rc |= kz_map_put_str(reply, b, "diffstat", job->diffstat ? job->diffstat : "");
    }
    if (job->error[0])
        rc |= kz_map_put_str(reply, b, "error", job->error);
    if (job->runs > 1)
        rc |= kz_map_put_int(reply, b, "runs", job->runs);
    if (st == S_FAILED)
        rc |= kz_map_put_str(reply, b, "cause", job->cause ? job->cause : "error");
    const char *target = kz_msg_target(d->msg);
    if (target && *target)
        rc |= kz_msg_set_target(reply, target);
    if (rc != 0) {
        kz_msg_destroy(&reply);
        return kz_fail("out of memory");
    }
    return kz_bus_reply(kz_agent_bus(agent), d, &reply);
}

static void s_job_free(s_job_t *job)
{
    kz_strv_free(job->files);
    kz_strv_free(job->findings);
    for (size_t i = 0; i < job->ndetails; i++) {
        free((char *)job->details[i].file);
        free((char *)job->details[i].rule);
        free((char *)job->details[i].message);
    }
    free(job->details);
    kz_git_strv_free(job->changed);
    free(job->diffstat);
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *d, void *arg)
{
    (void)arg;
    if (d->kind != KZ_DELIVERY_REQUEST || strcmp(d->topic, S_SERVICE) != 0)
        return 0;
    /* the runtime answers these with an error reply: without a usable
       plan id there is no exec.result to send */
    if (strcmp(kz_msg_type(d->msg), "exec.request") != 0)
        return kz_fail("'%s' wants an exec.request, got '%s'", S_SERVICE, kz_msg_type(d->msg));
    const char *plan_id = kz_map_str(kz_msg_body_const(d->msg), "plan_id");
    if (!plan_id || !*plan_id || strlen(plan_id) > S_MAX_ID)
        return kz_fail("exec.request from '%s' without a usable plan_id", kz_msg_src(d->msg));

    s_job_t job;
    memset(&job, 0, sizeof job);
    job.agent = agent;
    job.cfg = kz_agent_config(agent);
    job.plan_id = plan_id;
    job.lock_fd = -1;
    kz_git_set_tick(kz_agent_proc_tick, agent);

    s_status_t st = S_FAILED;
    if (!kz_id_valid(plan_id))
        s_fail_job(&job, "plan id '%s' is not an id ([A-Za-z0-9_-], at most %d)", plan_id,
                   S_MAX_ID);
    else if (s_lock_early(&job, d->msg) == 0) {
        /* the run is counted (s_lock) before anything that takes time:
           a run killed while it checks the request counts too */
        if (s_validate(&job, d->msg) == 0 && s_check_record(&job, d->msg) == 0) {
            st = s_execute(&job);
            s_cleanup(&job, st == S_CHANGED);
        }
        s_unlock(&job);
    }
    switch (st) {
    case S_CHANGED:
        kz_info("plan %s: %s committed %.12s on '%s' (%s)", plan_id, job.fixer->name, job.commit,
                job.branch, job.diffstat ? job.diffstat : "");
        break;
    case S_NOTHING:
        kz_info("plan %s: %s", plan_id, job.error);
        break;
    case S_FAILED:
        kz_error("plan %s failed: %s", plan_id, job.error);
        break;
    }
    int rc = s_reply(agent, d, &job, st);
    kz_git_set_tick(NULL, NULL);
    s_job_free(&job);
    return rc;
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    (void)arg;
    /* policy.commit_author was checked when the config was loaded */
    const kz_config_t *cfg = kz_agent_config(agent);
    char name[256], email[256], why[512] = "too long";
    if (kz_config_ident(cfg->policy.commit_author, name, sizeof name, email, sizeof email, why,
                        sizeof why) != 0 ||
        kz_git_set_identity(name, email) != 0)
        return kz_fail("policy.commit_author: %s", why);
    return kz_bus_offer(kz_agent_bus(agent), S_SERVICE);
}

int main(int argc, char **argv)
{
    const kz_agent_def_t def = {
        .name = "code-refactorer",
        .layer = "execution",
        .summary = "serves exec.refactor: runs a plan's fixer in a worktree and commits the fix "
                   "on the plan's branch",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = NULL,
    };
    return kz_agent_main(argc, argv, &def);
}
