/*  kz_config_check.h - what a loaded config names must exist on this host

    kz_config_load checks the syntax and the types; this checks what the
    values point at, before anything starts (`kaizen up`, `run-once` and
    `doctor` share it), for the roles this host runs:

    - every target (on the main host - supervisor.broker true - or a host
      whose agents[] name an agent here): its path is a git repository
      with the branch targets[].branch (or, while it does not exist,
      targets[].init_from is a directory it will be created from); its
      test program (the first word of targets[].test) is on PATH, or a
      file of the repository when it names one ("./run-tests"); each of
      its languages has at least one enabled tool recipe whose program is
      installed;
    - the bus endpoints: tcp:// with a host and a port 1-65535 (or *),
      ipc:// with a path short enough for a unix socket; the bind side
      only where the broker runs (supervisor.broker).

    It only reads: nothing is created, started or removed. Every problem
    is one line "FILE:LINE:COL: KEY: what is wrong", at the position of
    the key's value in the file (kz_config_mark), all of them.
*/
#ifndef KZ_CONFIG_CHECK_H_INCLUDED
#define KZ_CONFIG_CHECK_H_INCLUDED

#include <stddef.h>

#include "kz_config.h"

typedef struct {
    char **lines; /* "FILE:LINE:COL: KEY: what is wrong" */
    size_t count;
} kz_config_problems_t;

/* Check CFG for HOST (NULL: this host's name). 0 with *PROBLEMS filled (count
   0 when all is well; free with kz_config_problems_clear), -1 when out of
   memory (ERRBUF) */
int kz_config_check(const kz_config_t *cfg, const char *host, kz_config_problems_t *problems,
                    char *errbuf, size_t errlen);

void kz_config_problems_clear(kz_config_problems_t *problems);

#endif
