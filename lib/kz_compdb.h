/*  kz_compdb.h - a compile database for the C tools of a worktree

    clang-tidy and cppcheck need to know how each file is compiled
    (include paths, defines): a compile_commands.json. Projects seldom
    commit one, so kaizen makes one in a scratch directory of its own,
    never in the target's tree, and removes it afterwards:
      - a committed compile_commands.json (at the root) is used, rewritten
        with absolute "directory" entries (clang-tidy skips every file of
        an entry whose directory is relative);
      - a CMake project (CMakeLists.txt at the root) is configured, not
        built: cmake -S ROOT -B SCRATCH/build -DCMAKE_EXPORT_COMPILE_COMMANDS=ON;
      - a make project (Makefile, makefile or GNUmakefile at the root) is
        built under bear in a copy of the worktree in the scratch
        directory (make -k: a failing file does not stop the others),
        and the copy's paths are rewritten to the worktree's.
    Configuring or building runs the project's own build code (a known
    risk, docs/code-health.md). Entries that load compiler plugins
    (-fplugin, -load, -Xclang) are dropped: the C tools would load them.
    Commands run through kz_proc (argv, no shell, own process group,
    timeout, the caller's tick).
*/
#ifndef KZ_COMPDB_H_INCLUDED
#define KZ_COMPDB_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"

typedef struct kz_compdb_t kz_compdb_t;

typedef struct {
    const char *root;  /* the worktree */
    const char *under; /* the scratch directory is made here (kz_compdb_under) */
    int timeout_ms;    /* per command; <= 0: 10 minutes */
    void (*tick)(void *arg);
    void *tick_arg;
    bool (*cancel)(void *arg);
    void *cancel_arg;
} kz_compdb_opts_t;

/* Find or make the compile database of opts->root. NULL only when out of
   memory; otherwise look at kz_compdb_dir (NULL: there is none, and
   kz_compdb_error says why, e.g. "cmake configure failed: exit 1: CMake
   Error at CMakeLists.txt:3"). */
kz_compdb_t *kz_compdb_new(const kz_compdb_opts_t *opts);
/* kz_compdb_new for ROOT with the scratch directory under STATE/compdb
   (kz_compdb_under) and TICK / CANCEL called with ARG while commands run
   (an agent: kz_agent_proc_tick, kz_agent_proc_cancel; NULL for none).
   NULL only when out of memory; a scratch directory that cannot be made
   is one more reason there is no database (kz_compdb_error). */
kz_compdb_t *kz_compdb_for(const kz_config_t *cfg, const char *root, void (*tick)(void *arg),
                           bool (*cancel)(void *arg), void *arg);
/* Remove the scratch directory and free. Safe on NULL and twice. */
void kz_compdb_destroy(kz_compdb_t **self_p);

/* The directory holding compile_commands.json, or NULL */
const char *kz_compdb_dir(const kz_compdb_t *self);
/* How it was made: "committed", "cmake", "make" (or "none") */
const char *kz_compdb_how(const kz_compdb_t *self);
/* Why there is none ("" when there is one) */
const char *kz_compdb_error(const kz_compdb_t *self);

/* STATE/compdb (created) into BUF: where scratch directories go.
   0 / -1 with ERRBUF */
int kz_compdb_under(const kz_config_t *cfg, char *buf, size_t len, char *errbuf, size_t errlen);

/* True when one of ARGV's N elements holds "{compdb}" */
bool kz_compdb_wanted(char *const *argv, size_t n);

/* True when PATH (relative to the root) is a file the database is made
   from (CMakeLists.txt, *.cmake, Makefile, *.mk, compile_commands.json,
   ...): a change to one may change it. Scan caches hash their blobs. */
bool kz_compdb_input(const char *path);

#endif
