/*  code_reviewer.c - kaizen-code-reviewer (layer "validation")

    Serves "validate.review" (PROTOCOL.md 4.14): judges one plan's commit
    against the policy and against the tool whose findings it claims to
    fix. For a request {plan_id, commit, base_commit, files, fixer, tool,
    findings} whose envelope names the target:

    Policy, from the diff base..commit:
      - files changed <= policy.max_files, lines added + removed <=
        policy.max_lines (0 or less: no limit);
      - every touched path (changed or deleted) matches one of
        policy.allowed_paths when that list is set (fnmatch without
        flags: a "*" also matches "/", so the glob src/ followed by a
        star covers everything under src);
      - no binary file changed;
      - no new TODO or FIXME (as a word, case-sensitive): per file, the
        added lines must not hold more of them than the removed lines
        did, so a reformatted line that keeps its TODO is not "new".
    Tool (request `tool`, looked up in the LOCAL config; no `tool`: this
    part is skipped with a note in details): detached worktrees
    STATE/worktrees/<target>/review-<id> at the commit and review-base-<id>
    at the base, the tool run in both on the plan's files and the touched
    files that it wants (kz_tool_wants); every fingerprint of `findings`
    must be gone at the commit, and no finding may appear at the commit
    whose fingerprint the base run did not report - unless it is an
    untargeted base finding (same tool, rule, file and message) that only
    got a new fingerprint because the fix changed its line: findings the
    fixer was not asked to fix may stay.

    Replies validate.result {plan_id, commit (the request's), validator
    "code-reviewer", verdict pass | reject | error, reasons, details}.
    reject lists every violated rule; error means the review could not be
    done (unknown target or tool, a commit that does not resolve, a
    commit that is not a plan's - kz_plan_check_commit: the head of
    kaizen/plan-<plan_id>, descending from base_commit, which is on the
    target's branch -, a worktree or tool failure).
    details: files, added, removed, binary, findings_before,
    findings_after, targeted, targeted_gone, new_findings, remaining[] and
    new[] (fingerprints, at most 100 each), tool, note. Both worktrees are
    removed on every path.
*/
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_compdb.h"
#include "kz_finding.h"
#include "kz_git.h"
#include "kz_log.h"
#include "kz_plan.h"
#include "kz_project.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define S_SERVICE     "validate.review"
#define S_VALIDATOR   "code-reviewer"
#define S_MAX_ID      128
#define S_MAX_LIST    10000
#define S_MAX_REASONS 50
#define S_MAX_SHOWN   100
#define S_DIFF_MAX    (8u * 1024 * 1024)

/* One validate.request being handled */
typedef struct {
    kz_agent_t *agent;
    const kz_config_t *cfg;
    const kz_target_config_t *target;
    const kz_tool_config_t *tool;
    const char *plan_id;
    char commit[KZ_GIT_OID_MAX];
    char base[KZ_GIT_OID_MAX];
    char **files; /* the request's files (plan files) */
    size_t nfiles;
    char **targeted; /* the request's findings (fingerprints) */
    size_t ntargeted;
    char **changed; /* added or modified between base and commit */
    size_t nchanged;
    char **deleted;
    size_t ndeleted;
    char wt[PATH_MAX];
    char wt_base[PATH_MAX];
    /* the outcome */
    char error[2048]; /* verdict error when set */
    char **reasons;
    size_t nreasons, reasons_cap, reasons_dropped;
    long added, removed, nfiles_changed, binary;
    long findings_before, findings_after, targeted_gone, new_findings, targeted_unknown;
    bool tool_ran;
    char **remaining; /* targeted fingerprints still present */
    size_t nremaining;
    char **fresh; /* fingerprints of new findings */
    size_t nfresh;
    char note[1024];
} s_job_t;

static int s_error(s_job_t *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_reason(s_job_t *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The review could not be done: verdict error (the first reason wins) */
static int s_error(s_job_t *job, const char *fmt, ...)
{
    if (!job->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->error, sizeof job->error, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int s_push(char ***v, size_t *n, size_t *cap, const char *s)
{
    if (*n + 2 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        char **nv = realloc(*v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        *v = nv;
        *cap = ncap;
    }
    char *copy = strdup(s);
    if (!copy)
        return -1;
    (*v)[(*n)++] = copy;
    (*v)[*n] = NULL;
    return 0;
}

/* A violated rule: verdict reject */
static void s_reason(s_job_t *job, const char *fmt, ...)
{
    if (job->nreasons >= S_MAX_REASONS) {
        job->reasons_dropped++;
        return;
    }
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (s_push(&job->reasons, &job->nreasons, &job->reasons_cap, buf) != 0)
        s_error(job, "out of memory");
}

static void s_note(s_job_t *job, const char *text)
{
    size_t used = strlen(job->note);
    snprintf(job->note + used, sizeof job->note - used, "%s%s", used ? "; " : "", text);
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

static bool s_in(char *const *v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

/* The strings of array VAL (field NAME), without duplicates */
static int s_strings(s_job_t *job, const kz_val_t *val, const char *name, char ***out,
                     size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!val)
        return 0;
    if (val->type != KZ_VAL_ARRAY)
        return s_error(job, "'%s' is not a list of strings", name);
    if (val->u.arr.count > S_MAX_LIST)
        return s_error(job, "'%s' has %u entries, at most %d are handled", name, val->u.arr.count,
                       S_MAX_LIST);
    char **v = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t i = 0; i < val->u.arr.count; i++) {
        const kz_val_t *it = &val->u.arr.items[i];
        if (it->type != KZ_VAL_STR) {
            kz_strv_free(v);
            return s_error(job, "'%s[%u]' is not a string", name, i);
        }
        if (!s_in(v, it->u.str.ptr) && s_push(&v, &n, &cap, it->u.str.ptr) != 0) {
            kz_strv_free(v);
            return s_error(job, "out of memory");
        }
    }
    *out = v;
    *count = n;
    return 0;
}

/* Everything the request claims, checked against the config and the repo */
static int s_validate(s_job_t *job, const kz_msg_t *req)
{
    const kz_val_t *body = kz_msg_body_const(req);
    const char *tname = kz_msg_target(req);
    char err[1024];
    if (!tname || !*tname)
        return s_error(job, "the request names no target (envelope 'target')");
    job->target = kz_config_target(job->cfg, tname);
    if (!job->target)
        return s_error(job, "unknown target '%.255s': not in this host's config", tname);
    if (kz_git_check_repo(job->target->path, err, sizeof err) != 0)
        return s_error(job, "target '%s': %s", job->target->name, err);
    const char *commit = kz_map_str(body, "commit");
    const char *base = kz_map_str(body, "base_commit");
    if (!s_is_hex(commit))
        return s_error(job, "commit '%.64s' is not a commit id (hex)", commit ? commit : "");
    if (!s_is_hex(base))
        return s_error(job, "base commit '%.64s' is not a commit id (hex)", base ? base : "");
    if (kz_git_rev(job->target->path, commit, job->commit, err, sizeof err) != 0)
        return s_error(job, "commit %.64s not found in target '%s': %s", commit, job->target->name,
                       err);
    if (kz_git_rev(job->target->path, base, job->base, err, sizeof err) != 0)
        return s_error(job, "base commit %.64s not found in target '%s': %s", base,
                       job->target->name, err);
    /* only a plan's own commit, on its base on the target's branch */
    if (kz_plan_check_commit(job->target, job->plan_id, job->commit, job->base, err, sizeof err) !=
        0)
        return s_error(job, "%s", err);
    if (s_strings(job, kz_map_get(body, "files"), "files", &job->files, &job->nfiles) != 0 ||
        s_strings(job, kz_map_get(body, "findings"), "findings", &job->targeted, &job->ntargeted) !=
            0)
        return -1;
    for (size_t i = 0; i < job->nfiles; i++) {
        char why[1024];
        if (!kz_path_inside(job->target->path, job->files[i], why, sizeof why))
            return s_error(job, "file refused: %s", why);
    }
    const char *tool = kz_map_str(body, "tool");
    if (tool && *tool) {
        job->tool = kz_config_tool(job->cfg, tool);
        if (!job->tool)
            return s_error(job, "unknown tool '%.255s': not in this host's config", tool);
    }
    return 0;
}

/* ------------------------------------------------------------- policy */

static bool s_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* True when LINE[0..LEN) holds TODO or FIXME as a word */
static bool s_has_todo(const char *line, size_t len)
{
    static const char *const words[] = {"TODO", "FIXME"};
    for (size_t w = 0; w < 2; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            if (memcmp(line + i, words[w], wl) != 0)
                continue;
            if ((i == 0 || !s_word_char(line[i - 1])) &&
                (i + wl == len || !s_word_char(line[i + wl])))
                return true;
        }
    }
    return false;
}

/* Per-file counts of TODO/FIXME lines added and removed */
typedef struct {
    char file[512];
    long added, removed;
    char example[200]; /* the first added line with one */
} s_todo_t;

static void s_todo_finish(s_job_t *job, const s_todo_t *t)
{
    if (t->file[0] && t->added > t->removed)
        s_reason(job, "new TODO/FIXME in %s: \"%s\"", t->file, t->example);
}

/* Walk the unified diff: the TODO/FIXME rule. Hunks are followed by their
   line counts, so a removed line "-- x" is never taken for a header. */
static void s_check_todo(s_job_t *job, const char *diff)
{
    s_todo_t cur;
    memset(&cur, 0, sizeof cur);
    long old_left = 0, new_left = 0;
    for (const char *p = diff; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (old_left > 0 || new_left > 0) {
            if (p[0] == '+') {
                new_left--;
                if (s_has_todo(p + 1, len - 1) && cur.added++ == 0) {
                    size_t n = len - 1 < sizeof cur.example - 1 ? len - 1 : sizeof cur.example - 1;
                    memcpy(cur.example, p + 1, n);
                    cur.example[n] = '\0';
                }
            } else if (p[0] == '-') {
                old_left--;
                if (s_has_todo(p + 1, len - 1))
                    cur.removed++;
            } else if (p[0] == ' ' || len == 0) {
                old_left--;
                new_left--;
            } /* "\ No newline at end of file" counts for nothing */
        } else if (strncmp(p, "diff --git ", 11) == 0) {
            s_todo_finish(job, &cur);
            memset(&cur, 0, sizeof cur);
        } else if (strncmp(p, "+++ ", 4) == 0) {
            const char *name = p + 4;
            size_t n = len - 4;
            if (n > 2 && strncmp(name, "b/", 2) == 0) {
                name += 2;
                n -= 2;
            }
            if (n >= sizeof cur.file)
                n = sizeof cur.file - 1;
            memcpy(cur.file, name, n);
            cur.file[n] = '\0';
        } else if (strncmp(p, "@@ -", 4) == 0) {
            /* "@@ -a[,b] +c[,d] @@": counts default to 1 */
            const char *q = p + 4;
            char *e = NULL;
            strtol(q, &e, 10);
            old_left = 1;
            if (*e == ',')
                old_left = strtol(e + 1, &e, 10);
            if (e[0] == ' ' && e[1] == '+') {
                strtol(e + 2, &e, 10);
                new_left = 1;
                if (*e == ',')
                    new_left = strtol(e + 1, &e, 10);
            }
        }
        p = end ? end + 1 : NULL;
    }
    s_todo_finish(job, &cur);
}

static int s_check_policy(s_job_t *job)
{
    const kz_policy_config_t *pol = &job->cfg->policy;
    const char *repo = job->target->path;
    char err[1024];
    if (kz_git_numstat(repo, job->base, job->commit, &job->added, &job->removed,
                       &job->nfiles_changed, &job->binary, err, sizeof err) != 0)
        return s_error(job, "unable to read the diff %.12s..%.12s: %s", job->base, job->commit,
                       err);
    if (kz_git_changed(repo, job->base, job->commit, &job->changed, &job->nchanged, err,
                       sizeof err) != 0 ||
        kz_git_deleted(repo, job->base, job->commit, &job->deleted, &job->ndeleted, err,
                       sizeof err) != 0)
        return s_error(job, "unable to list the files changed by %.12s: %s", job->commit, err);
    if (job->nfiles_changed == 0)
        s_reason(job, "the commit %.12s changes nothing against the base %.12s", job->commit,
                 job->base);
    if (pol->max_files > 0 && job->nfiles_changed > pol->max_files)
        s_reason(job, "%ld files changed, policy.max_files is %d", job->nfiles_changed,
                 pol->max_files);
    if (pol->max_lines > 0 && job->added + job->removed > pol->max_lines)
        s_reason(job, "%ld lines changed (%ld added, %ld removed), policy.max_lines is %d",
                 job->added + job->removed, job->added, job->removed, pol->max_lines);
    if (pol->allowed_paths_count > 0) {
        for (int pass = 0; pass < 2; pass++) {
            char **list = pass == 0 ? job->changed : job->deleted;
            for (size_t i = 0; list && list[i]; i++) {
                bool ok = false;
                for (size_t g = 0; g < pol->allowed_paths_count && !ok; g++)
                    ok = fnmatch(pol->allowed_paths[g], list[i], 0) == 0;
                if (!ok)
                    s_reason(job, "'%s' is outside policy.allowed_paths", list[i]);
            }
        }
    }
    if (job->binary > 0) {
        /* name them: "-<TAB>-<TAB>path" lines of --numstat */
        const char *args[] = {"diff",
                              "--numstat",
                              "--no-renames",
                              "--no-ext-diff",
                              "--no-textconv",
                              job->base,
                              job->commit,
                              "--",
                              NULL};
        char *out = NULL;
        if (kz_git(repo, args, 0, &out, err, sizeof err) == 0) {
            for (char *line = out; line && *line;) {
                char *next = strchr(line, '\n');
                if (next)
                    *next++ = '\0';
                if (strncmp(line, "-\t-\t", 4) == 0)
                    s_reason(job, "binary file changed: %s", line + 4);
                line = next;
            }
        } else {
            s_reason(job, "%ld binary file(s) changed", job->binary);
        }
        free(out);
    }
    char *diff = NULL;
    if (kz_git_diff(repo, job->base, job->commit, S_DIFF_MAX, &diff, err, sizeof err) != 0)
        return s_error(job, "unable to read the diff %.12s..%.12s: %s", job->base, job->commit,
                       err);
    if (strlen(diff) >= S_DIFF_MAX - 1)
        s_note(job, "diff larger than 8 MiB: the TODO/FIXME check saw only its start");
    s_check_todo(job, diff);
    free(diff);
    return 0;
}

/* --------------------------------------------------------------- tool */

static int s_worktree(s_job_t *job, const char *name, const char *commit, char *path, size_t len)
{
    char rel[PATH_MAX], err[1024];
    snprintf(rel, sizeof rel, "worktrees/%s/%s-%s", job->target->name, name, job->plan_id);
    if (kz_state_path(job->cfg, rel, path, len) != 0)
        return s_error(job, "worktree path for plan %s is too long", job->plan_id);
    if (kz_git_worktree_add(job->target->path, path, NULL, commit, err, sizeof err) != 0) {
        int rc = s_error(job, "unable to create the worktree '%s': %s", path, err);
        path[0] = '\0';
        return rc;
    }
    return 0;
}

/* The files to run the tool on in ROOT: the plan's files and the changed
   files that exist there and that the tool wants */
static const char **s_tool_files(const s_job_t *job, const char *root, const kz_tool_setup_t *setup,
                                 size_t *n)
{
    const char **v = calloc(job->nfiles + job->nchanged + 1, sizeof *v);
    if (!v)
        return NULL;
    *n = 0;
    for (int pass = 0; pass < 2; pass++) {
        char **list = pass == 0 ? job->files : job->changed;
        for (size_t i = 0; list && list[i]; i++) {
            const char *f = list[i];
            bool dup = false;
            for (size_t k = 0; k < *n && !dup; k++)
                dup = strcmp(v[k], f) == 0;
            if (dup || !kz_tool_wants(job->tool, f) || !kz_tool_setup_wants(setup, f))
                continue;
            char path[PATH_MAX * 2];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", root, f);
            if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            v[(*n)++] = f;
        }
    }
    return v;
}

/* The compile database of ROOT into *DB when the tool wants one
   ("{compdb}"; the same as code-health makes), else NULL. A tool without
   one runs all the same, like in the scan. 0 / -1 (out of memory) */
static int s_tool_compdb(s_job_t *job, const char *root, kz_compdb_t **db)
{
    *db = NULL;
    if (!kz_compdb_wanted(job->tool->argv, job->tool->argv_count))
        return 0;
    *db = kz_compdb_for(kz_agent_config(job->agent), root, kz_agent_proc_tick, kz_agent_proc_cancel,
                        job->agent);
    if (!*db)
        return -1;
    if (!kz_compdb_dir(*db))
        kz_warn("tool '%s' in '%s': no compile database: %s", job->tool->name, root,
                kz_compdb_error(*db));
    return 0;
}

/* Run the tool in ROOT on its files the way the project at ROOT runs it
   (as code-health did: lib/kz_project.h); keep only findings in those
   files */
static int s_run_tool(s_job_t *job, const char *root, const char *which, kz_findings_t *out)
{
    kz_tool_setup_t setup;
    char note[2048];
    if (kz_tool_setup_load(root, job->tool, &setup, note, sizeof note) != 0)
        return s_error(job, "out of memory");
    if (note[0])
        kz_warn("plan %s: tool '%s' at the %s: %s", job->plan_id, job->tool->name, which, note);
    size_t n = 0;
    const char **files = s_tool_files(job, root, &setup, &n);
    if (!files) {
        kz_tool_setup_clear(&setup);
        return s_error(job, "out of memory");
    }
    kz_findings_t all;
    kz_findings_init(&all);
    kz_tool_run_opts_t opts = {.root = root,
                               .files = files,
                               .nfiles = n,
                               .tick = kz_agent_proc_tick,
                               .tick_arg = job->agent,
                               .cancel = kz_agent_proc_cancel,
                               .cancel_arg = job->agent,
                               .extra_args = (const char *const *)setup.args,
                               .project_files = setup.project_files};
    kz_tool_result_t res;
    int rc = 0;
    if (n == 0) {
        free(files);
        kz_tool_setup_clear(&setup);
        return 0;
    }
    kz_compdb_t *db = NULL;
    if (s_tool_compdb(job, root, &db) != 0) {
        free(files);
        kz_tool_setup_clear(&setup);
        return s_error(job, "out of memory");
    }
    opts.compdb = kz_compdb_dir(db);
    if (kz_tool_run(job->tool, &opts, &all, &res) != 0)
        rc = s_error(job, "out of memory running tool '%s'", job->tool->name);
    else if (res.status != KZ_TOOL_OK)
        rc = s_error(job, "tool '%s' at the %s: %s: %s", job->tool->name, which,
                     kz_tool_status_name(res.status), res.error);
    for (size_t i = 0; rc == 0 && i < all.count; i++) {
        bool mine = false;
        for (size_t k = 0; k < n && !mine; k++)
            mine = all.items[i].file && strcmp(all.items[i].file, files[k]) == 0;
        if (mine && kz_findings_add(out, &all.items[i]) != 0)
            rc = s_error(job, "out of memory");
    }
    kz_findings_free(&all);
    kz_compdb_destroy(&db);
    free(files);
    kz_tool_setup_clear(&setup);
    return rc;
}

static const kz_finding_t *s_find_fp(const kz_findings_t *list, const char *fp)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].fingerprint, fp) == 0)
            return &list->items[i];
    return NULL;
}

static bool s_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool s_targeted(const s_job_t *job, const char *fp)
{
    for (size_t i = 0; i < job->ntargeted; i++)
        if (strcmp(job->targeted[i], fp) == 0)
            return true;
    return false;
}

/* True when F (at the commit, its fingerprint unknown at the base) is a
   finding the plan did not target that stayed while the fix changed its
   line: a fingerprint hashes the source line, so "te" beside a corrected
   "teh" gets a new one. The base must hold a finding of the same tool,
   rule, file and message that was not targeted and whose fingerprint is
   gone at the commit; each such base finding (marked in USED) vouches for
   one finding only. */
static bool s_carried_over(const s_job_t *job, const kz_findings_t *before,
                           const kz_findings_t *after, const kz_finding_t *f, bool *used)
{
    for (size_t i = 0; i < before->count; i++) {
        const kz_finding_t *b = &before->items[i];
        if (used[i] || !s_same(b->tool, f->tool) || !s_same(b->rule, f->rule) ||
            !s_same(b->file, f->file) || !s_same(b->message, f->message) ||
            s_targeted(job, b->fingerprint) || s_find_fp(after, b->fingerprint))
            continue;
        used[i] = true;
        return true;
    }
    return false;
}

static int s_check_tool(s_job_t *job)
{
    if (!job->tool) {
        s_note(job, "no tool in the request: findings not re-checked");
        return 0;
    }
    kz_findings_t before, after;
    kz_findings_init(&before);
    kz_findings_init(&after);
    int rc = -1;
    if (s_worktree(job, "review", job->commit, job->wt, sizeof job->wt) != 0 ||
        s_worktree(job, "review-base", job->base, job->wt_base, sizeof job->wt_base) != 0)
        goto done;
    if (s_run_tool(job, job->wt_base, "base commit", &before) != 0 ||
        s_run_tool(job, job->wt, "commit", &after) != 0)
        goto done;
    job->tool_ran = true;
    kz_findings_sort(&after);
    job->findings_before = (long)before.count;
    job->findings_after = (long)after.count;
    size_t cap = 0, cap2 = 0;
    for (size_t i = 0; i < job->ntargeted; i++) {
        const char *fp = job->targeted[i];
        if (!s_find_fp(&before, fp))
            job->targeted_unknown++;
        const kz_finding_t *f = s_find_fp(&after, fp);
        if (!f) {
            job->targeted_gone++;
            continue;
        }
        s_reason(job, "targeted finding still there: %s %s at %s:%d: %s", f->tool, f->rule, f->file,
                 f->line, f->message ? f->message : "");
        if (job->nremaining < S_MAX_SHOWN &&
            s_push(&job->remaining, &job->nremaining, &cap, fp) != 0)
            s_error(job, "out of memory");
    }
    bool *used = calloc(before.count + 1, sizeof *used);
    if (!used) {
        s_error(job, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < after.count; i++) {
        const kz_finding_t *f = &after.items[i];
        if (s_find_fp(&before, f->fingerprint) || s_carried_over(job, &before, &after, f, used))
            continue;
        job->new_findings++;
        s_reason(job, "new %s %s at %s:%d: %s", f->tool, f->rule, f->file, f->line,
                 f->message ? f->message : "");
        if (job->nfresh < S_MAX_SHOWN &&
            s_push(&job->fresh, &job->nfresh, &cap2, f->fingerprint) != 0)
            s_error(job, "out of memory");
    }
    free(used);
    if (job->targeted_unknown > 0) {
        char text[160];
        snprintf(text, sizeof text,
                 "%ld targeted fingerprint(s) not reported by '%s' at the base commit either",
                 job->targeted_unknown, job->tool->name);
        s_note(job, text);
    }
    rc = job->error[0] ? -1 : 0;
done:
    kz_findings_free(&before);
    kz_findings_free(&after);
    return rc;
}

static void s_cleanup(s_job_t *job)
{
    char err[1024];
    if (job->wt[0] && kz_git_worktree_remove(job->target->path, job->wt, err, sizeof err) != 0)
        kz_error("plan %s: unable to remove worktree '%s': %s", job->plan_id, job->wt, err);
    if (job->wt_base[0] &&
        kz_git_worktree_remove(job->target->path, job->wt_base, err, sizeof err) != 0)
        kz_error("plan %s: unable to remove worktree '%s': %s", job->plan_id, job->wt_base, err);
}

/* ------------------------------------------------------------- reply */

static const char *s_verdict(const s_job_t *job)
{
    if (job->error[0])
        return "error";
    return job->nreasons > 0 ? "reject" : "pass";
}

static int s_put_strings(kz_msg_t *msg, kz_val_t *map, const char *key, char *const *v, size_t n)
{
    kz_val_t *arr = kz_map_put_array(msg, map, key);
    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        kz_val_t *it = kz_array_push(msg, arr);
        if (!it || kz_val_set_str(msg, it, v[i]) != 0)
            return -1;
    }
    return 0;
}

static int s_reply(kz_agent_t *agent, kz_delivery_t *d, s_job_t *job)
{
    kz_msg_t *reply = kz_msg_new("validate.result");
    if (!reply)
        return kz_fail("out of memory");
    kz_val_t *b = kz_msg_body(reply);
    const char *verdict = s_verdict(job);
    int rc = kz_map_put_str(reply, b, "plan_id", job->plan_id);
    const char *commit = kz_map_str(kz_msg_body_const(d->msg), "commit");
    if (commit)
        rc |= kz_map_put_str(reply, b, "commit", commit);
    rc |= kz_map_put_str(reply, b, "validator", S_VALIDATOR);
    rc |= kz_map_put_str(reply, b, "verdict", verdict);
    if (job->error[0]) {
        char *one[] = {job->error};
        rc |= s_put_strings(reply, b, "reasons", one, 1);
    } else if (job->nreasons > 0) {
        if (job->reasons_dropped > 0) {
            char more[64];
            snprintf(more, sizeof more, "... and %zu more", job->reasons_dropped);
            job->reasons_dropped = 0;
            s_push(&job->reasons, &job->nreasons, &job->reasons_cap, more);
        }
        rc |= s_put_strings(reply, b, "reasons", job->reasons, job->nreasons);
    }
    kz_val_t *det = kz_map_put_map(reply, b, "details");
    if (!det) {
        rc = -1;
    } else {
        rc |= kz_map_put_int(reply, det, "files", job->nfiles_changed);
        rc |= kz_map_put_int(reply, det, "added", job->added);
        rc |= kz_map_put_int(reply, det, "removed", job->removed);
        rc |= kz_map_put_int(reply, det, "binary", job->binary);
        if (job->tool) {
            rc |= kz_map_put_str(reply, det, "tool", job->tool->name);
            rc |= kz_map_put_bool(reply, det, "tool_ran", job->tool_ran);
            rc |= kz_map_put_int(reply, det, "findings_before", job->findings_before);
            rc |= kz_map_put_int(reply, det, "findings_after", job->findings_after);
            rc |= kz_map_put_int(reply, det, "targeted", (int64_t)job->ntargeted);
            rc |= kz_map_put_int(reply, det, "targeted_gone", job->targeted_gone);
            rc |= kz_map_put_int(reply, det, "new_findings", job->new_findings);
            rc |= s_put_strings(reply, det, "remaining", job->remaining, job->nremaining);
            rc |= s_put_strings(reply, det, "new", job->fresh, job->nfresh);
        }
        if (job->note[0])
            rc |= kz_map_put_str(reply, det, "note", job->note);
    }
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
    kz_strv_free(job->targeted);
    kz_git_strv_free(job->changed);
    kz_git_strv_free(job->deleted);
    kz_strv_free(job->reasons);
    kz_strv_free(job->remaining);
    kz_strv_free(job->fresh);
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *d, void *arg)
{
    (void)arg;
    if (d->kind != KZ_DELIVERY_REQUEST || strcmp(d->topic, S_SERVICE) != 0)
        return 0;
    if (strcmp(kz_msg_type(d->msg), "validate.request") != 0)
        return kz_fail("'%s' wants a validate.request, got '%s'", S_SERVICE, kz_msg_type(d->msg));
    const char *plan_id = kz_map_str(kz_msg_body_const(d->msg), "plan_id");
    if (!plan_id || !*plan_id || strlen(plan_id) > S_MAX_ID)
        return kz_fail("validate.request from '%s' without a usable plan_id", kz_msg_src(d->msg));
    s_job_t job;
    memset(&job, 0, sizeof job);
    job.agent = agent;
    job.cfg = kz_agent_config(agent);
    job.plan_id = plan_id;
    kz_git_set_tick(kz_agent_proc_tick, agent);

    if (!kz_id_valid(plan_id))
        s_error(&job, "plan id '%s' is not an id ([A-Za-z0-9_-], at most %d)", plan_id, S_MAX_ID);
    else if (s_validate(&job, d->msg) == 0 && s_check_policy(&job) == 0)
        s_check_tool(&job);
    if (job.target)
        s_cleanup(&job);

    if (job.error[0])
        kz_error("plan %s: review failed: %s", plan_id, job.error);
    else if (job.nreasons > 0)
        kz_info("plan %s: reject: %s%s", plan_id, job.reasons[0],
                job.nreasons > 1 ? " (and more)" : "");
    else
        kz_info("plan %s: pass (%ld files, +%ld -%ld, %ld targeted finding(s) gone)", plan_id,
                job.nfiles_changed, job.added, job.removed, job.targeted_gone);
    int rc = s_reply(agent, d, &job);
    kz_git_set_tick(NULL, NULL);
    s_job_free(&job);
    return rc;
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    (void)arg;
    return kz_bus_offer(kz_agent_bus(agent), S_SERVICE);
}

int main(int argc, char **argv)
{
    const kz_agent_def_t def = {
        .name = "code-reviewer",
        .layer = "validation",
        .summary = "serves validate.review: checks a plan's commit against the policy and "
                   "re-runs the plan's tool on the touched files",
        .setup = s_setup,
        .cycle = NULL,
        .on_message = s_on_message,
        .arg = NULL,
    };
    return kz_agent_main(argc, argv, &def);
}
