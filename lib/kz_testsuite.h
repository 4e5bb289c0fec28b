/*  kz_testsuite.h - running a target's test suite and judging the run

    Shared by kaizen-test-runner (validate.tests, tests.base) and `kaizen
    doctor`, so both run a suite and decide whether it can validate a plan
    the same way.

    A run is the target's test command (targets[].test, an argv run without
    a shell; the element "{junit}" becomes the path of a JUnit XML report)
    in a checkout of one commit, with targets[].env added to the
    environment, in its own process group, killed with it after
    targets[].test_timeout, stdout and stderr kept up to
    KZ_TESTSUITE_OUT_CAP bytes each. What it shows is read with the parsers
    of kz_testresult.h, best first: junit, lines, then the counts of a
    pytest, unittest, ctest or "N passed, N failed" summary, else only the
    exit status ("exit").

    Python. For a Python test command (argv[0], or argv[1] after env, named
    python*, pytest* or py.test; or a target whose languages include
    python) kaizen puts a directory of its own first on PYTHONPATH (before
    targets[].env's PYTHONPATH, or the inherited one) holding a
    sitecustomize.py that runs any sitecustomize it hides. At exit every
    Python process of the run appends to $KAIZEN_IMPORTS_FILE one line per
    imported top-level module that also exists in the worktree - a package
    NAME/__init__.py or a module NAME.py at its root, in src/ or in lib/ -
    but was loaded from outside it: "NAME<TAB>ORIGIN<TAB>DIR". The run
    keeps the first valid line (the file is written by the target's code:
    it is read without following a symlink, at most
    KZ_TESTSUITE_MAX_IMPORTS bytes, every field checked and cleaned).

    A usable base (kz_testsuite_judge): the command started, did not time
    out, no Python test imported the project's package from outside the
    worktree, at least one test passed (from a JUnit report, per-test lines
    or a summary's counts: a run whose output gives no count cannot show
    that any test ran), and it exited 0 - or non-zero only when the results
    show failing tests that explain it (a project with a few tests failing
    already can still validate plans: the comparison is per test).

    The base cache: the base run of a commit, judged, is kept in
    STATE/test-runner/<target>/<commit>.json for this target, commit, test
    command, env and timeout (another of them: run again), usable or not,
    so every plan on that base gets its answer at once. A lock file beside
    it (<commit>.lock) keeps two processes from running the same base at
    once; the newest KZ_TESTSUITE_CACHE_KEEP results per target are kept.
    Not cached: a run kaizen could not make (run->error) or whose command
    could not start (the machine's doing, fixed by installing something).
*/
#ifndef KZ_TESTSUITE_H_INCLUDED
#define KZ_TESTSUITE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kz_config.h"
#include "kz_git.h"
#include "kz_proc.h"
#include "kz_testresult.h"

#define KZ_TESTSUITE_OUT_CAP     (8u << 20)  /* bytes of stdout and of stderr kept per run */
#define KZ_TESTSUITE_MAX_IMPORTS (64u << 10) /* bytes of the imports file read */
#define KZ_TESTSUITE_CACHE_KEEP  64          /* base results kept per target */

/* Flags of kz_testsuite_base */
#define KZ_TESTSUITE_RECHECK 1 /* a cached unusable base is run again (doctor) */

/* One run of the test command on one commit, and its judgement */
typedef struct {
    char commit[KZ_GIT_OID_MAX];
    bool started;   /* the command ran (false: start_error says why not) */
    bool timed_out; /* killed after the timeout */
    int exit_code;  /* -1 when killed by a signal */
    int term_signal;
    int timeout_ms;        /* the timeout it ran with */
    const char *source;    /* junit | lines | pytest | unittest | ctest | summary | exit (static) */
    kz_test_cases_t tests; /* sorted by id, one per id, when have_cases */
    bool have_cases;
    bool have_counts;
    long passed, failed, errors, skipped;
    int64_t duration_ms;
    bool cached;    /* from the base cache */
    bool truncated; /* output beyond KZ_TESTSUITE_OUT_CAP was dropped */
    /* kaizen could not make the run (worktree, lock, state directory):
       not the suite's doing, so neither judged nor cached */
    char error[512];
    char start_error[512]; /* why the command could not start */
    char last[256];        /* the output's last non-empty line, for people */
    char problem[512];     /* kz_testresult_problem of the output: an import error */
    /* the first import of a worktree package from outside (Python) */
    char foreign_module[128];
    char foreign_origin[512];
    char foreign_dir[8]; /* where the worktree has it: ".", "src" or "lib" */
    /* kz_testsuite_judge */
    bool judged;
    bool usable;
    char why[1024]; /* when not usable: "0 tests ran (exit 4): ..." */
    char fix[256];  /* when not usable and kaizen knows: what to change */
} kz_testsuite_run_t;

/* RUN empty (source "exit", no tests) */
void kz_testsuite_run_init(kz_testsuite_run_t *run);
/* Free RUN's tests and empty it, keeping its commit */
void kz_testsuite_run_clear(kz_testsuite_run_t *run);

/* True when TARGET's test command is Python's (see above) */
bool kz_testsuite_is_python(const kz_target_config_t *target);

/* Run TARGET's test command in DIR (a checkout of RUN->commit). WORK is a
   directory for kaizen's files of this run (the JUnit report, the Python
   hook, the imports file): created, and removed with everything in it
   afterwards. PROC (may be NULL) holds the caller's kz_proc options to
   keep - tick and tick_arg (kz_agent_proc_tick), cancel and cancel_arg
   (kz_agent_proc_cancel: a run nobody waits for is stopped, with
   run->error set, so it is neither judged nor cached) and whatever else
   it sets; argv, cwd, env, env_add, stdin, timeout and the output caps
   are this function's. Fills RUN (start_error when the command could not
   start). 0, or -1 when out of memory */
int kz_testsuite_exec(const kz_target_config_t *target, const char *dir, const char *work,
                      const kz_proc_opts_t *proc, kz_testsuite_run_t *run);

/* Judge RUN (see above): sets run->judged, usable, why and fix. DIR (may
   be NULL) is the checkout it ran in, looked at for a hint (a missing
   module that is the worktree's src/NAME). Does nothing to a run with
   run->error (it was not made). */
void kz_testsuite_judge(const kz_target_config_t *target, const char *dir, kz_testsuite_run_t *run);

/* Check out RUN->commit of TARGET as a detached worktree at WT, run the
   tests there (kz_testsuite_exec with WORK and PROC), judge the run and
   remove the worktree, whatever happened. run->error when the worktree
   could not be made. 0, or -1 when out of memory */
int kz_testsuite_test_at(const kz_target_config_t *target, const char *wt, const char *work,
                         const kz_proc_opts_t *proc, kz_testsuite_run_t *run);

/* kz_testsuite_test_at in STATE/worktrees/<target>/<NAME>, with WORK
   STATE/test-runner/<target>/run-<NAME>. NAME is a file name kaizen made
   ("tests-<plan>"). 0 / -1 (out of memory) */
int kz_testsuite_test_commit(const kz_config_t *cfg, const kz_target_config_t *target,
                             const char *name, const kz_proc_opts_t *proc, kz_testsuite_run_t *run);

/* The judged base run of RUN->commit (a full commit id): from the cache,
   else run in worktree "tests-base-<commit>" and cached. While another
   process holds the commit's lock it waits for its result (calling
   proc->tick), at most the test timeout and a minute. FLAGS:
   KZ_TESTSUITE_RECHECK. run->error when kaizen could not make or lock it.
   0 / -1 (out of memory) */
int kz_testsuite_base(const kz_config_t *cfg, const kz_target_config_t *target,
                      const kz_proc_opts_t *proc, int flags, kz_testsuite_run_t *run);

/* The cached base run of RUN->commit, without running anything or taking
   the lock (a cache file is replaced atomically). true when there is one
   for this target, commit, command, env and timeout (RUN filled, cached
   set); false otherwise (RUN left empty but for its commit) */
bool kz_testsuite_cached(const kz_config_t *cfg, const kz_target_config_t *target,
                         kz_testsuite_run_t *run);

/* Read the imports file's text BUF (LEN bytes, hostile) into RUN's
   foreign_module, foreign_origin and foreign_dir: the first line whose
   NAME is a Python identifier of at most 127 bytes, ORIGIN a non-empty
   path and DIR ".", "src" or "lib" (longer origins cut, every field
   cleaned). true when there was one (RUN untouched otherwise) */
bool kz_testsuite_parse_imports(const char *buf, size_t len, kz_testsuite_run_t *run);

#endif
