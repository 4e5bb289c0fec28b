/*  kz_layers.c - which layer each known agent belongs to (DESIGN.md section 3)

    The supervisor starts agents layer by layer in kz_agent_layer_rank
    order and stops them the other way round, so an analysis agent finds
    the monitoring agents already publishing and an execution agent is
    gone before the planners that feed it. A name not listed here (a
    third-party agent) has no layer and is started last.
*/
#include "kz_agent.h"

#include <string.h>

typedef struct {
    const char *name;
    const char *layer;
} s_agent_layer_t;

static const s_agent_layer_t s_agents[] = {
    {"code-health", "monitoring"},
    {"performance-monitor", "monitoring"},
    {"security-auditor", "monitoring"},
    {"dependency-scanner", "monitoring"},
    {"demo", "monitoring"},
    {"code-quality", "analysis"},
    {"architecture", "analysis"},
    {"test-coverage", "analysis"},
    {"documentation", "analysis"},
    {"improvement-planner", "planning"},
    {"refactoring-strategist", "planning"},
    {"feature-prioritizer", "planning"},
    {"debt-manager", "planning"},
    {"code-refactorer", "execution"},
    {"test-generator", "execution"},
    {"documentation-writer", "execution"},
    {"dependency-updater", "execution"},
    {"code-reviewer", "validation"},
    {"test-runner", "validation"},
    {"security-validator", "validation"},
    {"performance-benchmarker", "validation"},
    {"pattern-learner", "learning"},
    {"strategy-optimizer", "learning"},
    {"metrics-collector", "learning"},
    {"feedback-integrator", "learning"},
    {"orchestrator", "orchestration"},
};

/* In start order; the index is the rank */
static const char *const s_layers[] = {
    "monitoring", "analysis", "planning", "execution", "validation", "learning", "orchestration",
};

#define S_COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *kz_agent_layer_of(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < S_COUNT(s_agents); i++)
        if (strcmp(s_agents[i].name, name) == 0)
            return s_agents[i].layer;
    return NULL;
}

int kz_agent_layer_rank(const char *layer)
{
    if (layer)
        for (size_t i = 0; i < S_COUNT(s_layers); i++)
            if (strcmp(s_layers[i], layer) == 0)
                return (int)i;
    return (int)S_COUNT(s_layers);
}
