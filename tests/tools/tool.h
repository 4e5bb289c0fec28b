/*  tool.h - what the bus test tools (kz_pub, kz_sub, kz_call, kz_serve)
    share: signal handling and connecting to the bus the way an agent does.
    Header-only: every C file in tests/tools/ builds its own executable. */
#ifndef KZ_TOOL_H_INCLUDED
#define KZ_TOOL_H_INCLUDED

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kz_bus.h"
#include "kz_config.h"
#include "kz_log.h"

/* Route SIGTERM and SIGINT to HANDLER (no SA_RESTART: blocking bus calls
   return so the tool can check its stop flag) */
static inline void kz_tool_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Log as "TOOL#PID" and connect a bus client with CFG's bus settings.
   NULL after printing "TOOL: why" on stderr. */
static inline kz_bus_t *kz_tool_bus(const char *tool, const kz_config_t *cfg)
{
    char id[256], err[512];
    snprintf(id, sizeof id, "%s#%ld", tool, (long)getpid());
    kz_log_set_agent(id);
    kz_bus_t *bus = kz_bus_new(&cfg->bus, id, err, sizeof err);
    if (!bus)
        fprintf(stderr, "%s: %s\n", tool, err);
    return bus;
}

#endif
