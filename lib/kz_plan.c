/*  kz_plan.c - what the configuration and git say about a plan (kz_plan.h)
*/
#include "kz_plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kz_git.h"
#include "kz_msg.h"

static void s_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

double kz_plan_risk(const kz_fixer_config_t *fixer)
{
    return fixer->risk;
}

bool kz_plan_needs_approval(const kz_policy_config_t *policy, double risk)
{
    return risk >= policy->require_approval;
}

int kz_plan_branch(const char *plan_id, char *buf, size_t len)
{
    if (!plan_id || !kz_id_valid(plan_id))
        return -1;
    int n = snprintf(buf, len, "kaizen/plan-%s", plan_id);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

const char *kz_plan_target_branch(const kz_target_config_t *target)
{
    return target->branch && *target->branch ? target->branch : "main";
}

int kz_plan_check_base(const kz_target_config_t *target, const char *base, char *errbuf,
                       size_t errlen)
{
    const char *branch = kz_plan_target_branch(target);
    char ref[512], err[512];
    if (snprintf(ref, sizeof ref, "refs/heads/%s", branch) >= (int)sizeof ref) {
        s_err(errbuf, errlen, "branch name of target '%s' too long", target->name);
        return -1;
    }
    int on = kz_git_is_ancestor(target->path, base, ref, err, sizeof err);
    if (on < 0) {
        s_err(errbuf, errlen,
              "unable to tell whether base commit %.12s is on branch '%s' of "
              "target '%s': %s",
              base, branch, target->name, err);
        return -1;
    }
    if (on == 0) {
        s_err(errbuf, errlen, "base commit %.12s is not on branch '%s' of target '%s'", base,
              branch, target->name);
        return -1;
    }
    return 0;
}

int kz_plan_check_commit(const kz_target_config_t *target, const char *plan_id, const char *commit,
                         const char *base, char *errbuf, size_t errlen)
{
    char branch[256], ref[300], head[KZ_GIT_OID_MAX], err[512];
    if (kz_plan_branch(plan_id, branch, sizeof branch) != 0) {
        s_err(errbuf, errlen, "invalid plan id");
        return -1;
    }
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    int exists = kz_git_ref_exists(target->path, ref, err, sizeof err);
    if (exists < 0) {
        s_err(errbuf, errlen, "target '%s': %s", target->name, err);
        return -1;
    }
    if (!exists) {
        s_err(errbuf, errlen,
              "commit %.12s is not the head of the plan's branch '%s': there is "
              "no such branch in target '%s'",
              commit, branch, target->name);
        return -1;
    }
    if (kz_git_rev(target->path, ref, head, err, sizeof err) != 0) {
        s_err(errbuf, errlen, "branch '%s' of target '%s': %s", branch, target->name, err);
        return -1;
    }
    if (strcmp(head, commit) != 0) {
        s_err(errbuf, errlen, "commit %.12s is not the head of the plan's branch '%s' (%.12s)",
              commit, branch, head);
        return -1;
    }
    if (strcmp(commit, base) == 0) {
        s_err(errbuf, errlen, "commit %.12s is the base commit itself: a plan's commit changes it",
              commit);
        return -1;
    }
    int anc = kz_git_is_ancestor(target->path, base, commit, err, sizeof err);
    if (anc < 0) {
        s_err(errbuf, errlen, "target '%s': %s", target->name, err);
        return -1;
    }
    if (anc == 0) {
        s_err(errbuf, errlen, "commit %.12s does not descend from the base commit %.12s", commit,
              base);
        return -1;
    }
    return kz_plan_check_base(target, base, errbuf, errlen);
}
