/*  tools.c - what `kaizen doctor` and `kaizen init` both say about programs

    The Debian package of each checker and test program kaizen knows,
    whether a recipe's program can run here (on PATH; for "python3 -m
    MOD" also that MOD imports), and a test suite run in a temporary
    worktree of its own (nothing left behind).
*/
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kz_proc.h"
#include "kz_recipe.h"
#include "kz_state.h"

#define S_IMPORT_MS 30000

const kz_cli_tool_t kz_cli_tools[] = {
    {"python", {"flake8", NULL, NULL}, "flake8"},
    {"python", {"pylint", NULL, NULL}, "pylint"},
    {"python", {"mypy", NULL, NULL}, "mypy"},
    {"python", {"black", NULL, NULL}, "black"},
    {"python", {"isort", NULL, NULL}, "isort"},
    {"python", {"bandit", NULL, NULL}, "bandit"},
    {"python", {"codespell", NULL, NULL}, "codespell"},
    {"python", {"pytest", "pytest-3", NULL}, "python3-pytest"},
    {"python", {"python3-coverage", NULL, NULL}, "python3-coverage"},
    {"c", {"cppcheck", NULL, NULL}, "cppcheck"},
    {"c", {"clang-tidy", NULL, NULL}, "clang-tidy"},
    {"c", {"clang-format", NULL, NULL}, "clang-format"},
    {"c", {"gcovr", NULL, NULL}, "gcovr"},
    {"shell", {"shellcheck", NULL, NULL}, "shellcheck"},
};
const size_t kz_cli_tools_count = sizeof kz_cli_tools / sizeof kz_cli_tools[0];

/* Programs that are no checkers but run tests or builds */
static const struct {
    const char *name;
    const char *package;
} s_programs[] = {
    {"make", "make"},
    {"cmake", "cmake"},
    {"ctest", "cmake"},
    {"meson", "meson"},
    {"ninja", "ninja-build"},
    {"npm", "npm"},
    {"bear", "bear"},
    {"tox", "tox"},
    {"python3", "python3"},
    {"pycodestyle", "pycodestyle"},
    {"pydocstyle", "pydocstyle"},
};

const char *kz_cli_tool_package(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < kz_cli_tools_count; i++)
        for (size_t n = 0; n < 3 && kz_cli_tools[i].names[n]; n++)
            if (strcmp(kz_cli_tools[i].names[n], name) == 0)
                return kz_cli_tools[i].package;
    for (size_t i = 0; i < sizeof s_programs / sizeof s_programs[0]; i++)
        if (strcmp(s_programs[i].name, name) == 0)
            return s_programs[i].package;
    return NULL;
}

const char *kz_cli_program_name(char *const *argv, size_t argc)
{
    if (argc == 0 || !argv || !argv[0])
        return "";
    const char *module = kz_argv_python_module(argv, argc);
    if (module)
        return module;
    const char *slash = strrchr(argv[0], '/');
    return slash ? slash + 1 : argv[0];
}

bool kz_cli_program_ready(char *const *argv, size_t argc, char *detail, size_t len)
{
    if (argc == 0 || !argv || !argv[0] || !*argv[0]) {
        snprintf(detail, len, "no program");
        return false;
    }
    char *path = kz_proc_which(argv[0]);
    if (!path) {
        snprintf(detail, len, "program not found on PATH: %s", argv[0]);
        return false;
    }
    const char *module = kz_argv_python_module(argv, argc);
    if (!module) {
        snprintf(detail, len, "%s", path);
        free(path);
        return true;
    }
    /* "python3 -m MOD": the interpreter is there, the module may not be;
       the name goes in as an argument, never into the code; -I: the
       working directory (a target's) shadows no module */
    const char *args[] = {path,   "-I",
                          "-c",   "import importlib, sys; importlib.import_module(sys.argv[1])",
                          module, NULL};
    /* in the sandbox, where the tool will run: a module only kaizen's own
       environment finds is not there */
    kz_proc_opts_t opts = {.argv = args,
                           .sandbox = KZ_SANDBOX_READ,
                           .timeout_ms = S_IMPORT_MS,
                           .out_cap = 4096,
                           .err_cap = 4096};
    kz_proc_result_t res;
    char err[256];
    bool ok = kz_proc_run(&opts, &res, err, sizeof err) == 0 && res.exit_code == 0;
    kz_proc_result_free(&res);
    if (ok)
        snprintf(detail, len, "%s -m %s", path, module);
    else
        snprintf(detail, len, "%s has no module '%s'", path, module);
    free(path);
    return ok;
}

int kz_cli_tests_in_tmp(const kz_target_config_t *target, const char *prefix,
                        kz_testsuite_run_t *run)
{
    char tmp[PATH_MAX], wt[PATH_MAX], work[PATH_MAX], err[512];
    if (kz_tmpdir_new(NULL, prefix, tmp, sizeof tmp, err, sizeof err) != 0) {
        snprintf(run->error, sizeof run->error, "%s", err);
        return 0;
    }
    /* the sandbox's user goes through it to the worktree */
    if (kz_sandbox_runner(NULL, NULL) && chmod(tmp, 0711) != 0) {
        snprintf(run->error, sizeof run->error, "unable to open %.300s: %s", tmp, strerror(errno));
        (void)kz_rmtree(tmp, err, sizeof err);
        return 0;
    }
    snprintf(wt, sizeof wt, "%.*s/worktree", PATH_MAX - 16, tmp);
    snprintf(work, sizeof work, "%.*s/work", PATH_MAX - 16, tmp);
    int rc = kz_testsuite_test_at(target, wt, work, NULL, run);
    if (kz_rmtree(tmp, err, sizeof err) != 0)
        fprintf(stderr, "kaizen: %s\n", err);
    return rc;
}
