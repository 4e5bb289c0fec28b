/*  kz_plan.h - what the local configuration and the target's repository
    say about a plan, whatever its message says

    A plan travels as a message (plan.ready, validate.request) that any
    peer of the bus could have written. The planner, the router and the
    validators compute what matters from their own configuration and from
    git instead of taking it from the message: the plan's risk (from the
    fixer's recipe), its branch (from its id) and whether its commits are
    where a plan's commits must be (docs/orchestrator.md "What the router
    trusts").
*/
#ifndef KZ_PLAN_H_INCLUDED
#define KZ_PLAN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"

/* The risk of a plan of FIXER: fixers[].risk of the local configuration.
   The planner puts it in plan.ready; the router computes it again and
   never takes the message's. */
double kz_plan_risk(const kz_fixer_config_t *fixer);

/* True when a plan of RISK waits for a person: RISK at or above
   policy.require_approval */
bool kz_plan_needs_approval(const kz_policy_config_t *policy, double risk);

/* The branch of plan PLAN_ID, "kaizen/plan-<id>", into BUF. 0, or -1
   when the id is not valid (kz_id_valid) or BUF too small. */
int kz_plan_branch(const char *plan_id, char *buf, size_t len);

/* The branch of TARGET (targets[].branch, "main" when unset) */
const char *kz_plan_target_branch(const kz_target_config_t *target);

/* 0 when BASE (a full commit id) is on TARGET's branch (an ancestor of
   refs/heads/<branch>, or its head), -1 with the reason in ERRBUF ("base
   commit 1234abcd5678 is not on branch 'main' of target 'py'", or git's
   error) */
int kz_plan_check_base(const kz_target_config_t *target, const char *base, char *errbuf,
                       size_t errlen);

/* 0 when COMMIT (a full commit id) is what a plan's validators may be
   asked about: the head of the plan's branch kaizen/plan-<PLAN_ID> in
   TARGET's repository, not BASE itself but a descendant of it, and BASE
   on the target's branch (kz_plan_check_base). -1 with the reason in
   ERRBUF otherwise. */
int kz_plan_check_commit(const kz_target_config_t *target, const char *plan_id, const char *commit,
                         const char *base, char *errbuf, size_t errlen);

#endif
