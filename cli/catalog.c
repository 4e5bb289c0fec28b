/*  catalog.c - `kaizen catalog`: the tool and fixer recipes kaizen runs

    Lists every recipe of the configuration - the built-in catalog's
    (catalog/NAME.yaml, compiled in) merged under the config's own tools:
    and fixers: - with where it comes from, its gate and what it needs;
    --yaml prints the built-in catalog files themselves, the starting
    point for a recipe of one's own.
*/
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char s_usage[] =
    "usage: kaizen catalog [--yaml]\n"
    "\n"
    "List the tool and fixer recipes the configuration runs: the built-in\n"
    "catalog's, merged under the config's own tools: and fixers: (which add\n"
    "recipes or replace the catalog's of the same name; enabled: false\n"
    "switches one off, catalog: false keeps only the config's). For each\n"
    "tool: where it comes from, its gate (chosen: a style tool, run only where\n"
    "the project shows it chose it; always: a bug or security finder, run on\n"
    "every target of its languages), its languages and the evidence it looks\n"
    "for; for each fixer: the tool and rules it fixes.\n"
    "\n"
    "  --yaml       print the built-in catalog files instead (docs/catalog.md)\n"
    "  -h, --help   this help\n"
    "\n"
    "exit codes: 0 listed, 2 usage\n";

static const struct option s_opts[] = {
    {"yaml", no_argument, NULL, 'y'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

/* LIST (N entries) joined by SEP into BUF, or DEF when empty */
static const char *s_join(char *const *list, size_t n, const char *sep, const char *def, char *buf,
                          size_t len)
{
    if (!n || !list)
        return def;
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && list[i] && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? sep : "", list[i]);
    return buf;
}

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    bool yaml = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", s_opts, NULL)) != -1) {
        switch (c) {
        case 'y':
            yaml = true;
            break;
        case 'h':
            fputs(s_usage, stdout);
            return KZ_EXIT_OK;
        default:
            return kz_cli_usage("catalog", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return kz_cli_usage("catalog", "unexpected argument '%s'", argv[optind]);
    if (yaml) {
        for (size_t k = 0; k < kz_catalog_count; k++)
            printf("%s# --- %s\n%s", k ? "\n" : "", kz_catalog[k].name, kz_catalog[k].text);
        return KZ_EXIT_OK;
    }
    const kz_config_t *cfg = cli->cfg;
    printf("tools (%zu)\n", cfg->tools_count);
    for (size_t i = 0; i < cfg->tools_count; i++) {
        const kz_tool_config_t *t = &cfg->tools[i];
        char langs[256], reqs[1024];
        printf("  %-13s %-7s %-22s %-24s %s\n", t->name, t->gate ? t->gate : "?",
               t->origin ? t->origin : "config",
               s_join(t->languages, t->languages_count, ",", "every language", langs, sizeof langs),
               strcmp(t->gate ? t->gate : "", "always") == 0
                   ? "(no evidence needed)"
                   : s_join(t->requires, t->requires_count, " | ", "(no evidence needed)", reqs,
                            sizeof reqs));
    }
    printf("fixers (%zu)\n", cfg->fixers_count);
    for (size_t i = 0; i < cfg->fixers_count; i++) {
        const kz_fixer_config_t *x = &cfg->fixers[i];
        char rules[512];
        printf("  %-13s %-7s %-22s fixes %s: %s\n", x->name, "", x->origin ? x->origin : "config",
               x->tool, s_join(x->rules, x->rules_count, ",", "every rule", rules, sizeof rules));
    }
    return KZ_EXIT_OK;
}

const kz_cli_cmd_t kz_cmd_catalog = {
    .name = "catalog",
    .summary = "list the tool and fixer recipes (the built-in catalog and the config's)",
    .usage = s_usage,
    .run = s_run,
    .needs_config = true,
    .opts = s_opt_tables,
    .shortopts = "h",
};
