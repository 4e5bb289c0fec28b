/*  kz_store.h - what agents read back from PostgreSQL

    The orchestrator's recorder writes every bus message into PostgreSQL;
    agents that need a whole scan's findings or the history (code-quality,
    improvement-planner, feature-prioritizer, pattern-learner) read them
    here, read-only, with parameterised SQL. Because the recorder stores
    asynchronously, a reader that reacts to scan.completed first waits
    until the scan's findings are all stored (kz_store_wait_scan), and one
    that needs its own earlier messages stored waits for them
    (kz_store_wait_event). The planner's rule of which findings plans
    already cover lives here (kz_store_covered); the prioritizer, its
    safety net, shares the open states and the causes that settle a
    finding (KZ_STORE_OPEN_STATES, kz_store_is_open,
    kz_store_cause_settles).
*/
#ifndef KZ_STORE_H_INCLUDED
#define KZ_STORE_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"
#include "kz_finding.h"

/* A lazily (re)connected database handle for an agent */
typedef struct kz_store kz_store_t;

/* APP is the application_name ("kaizen-code-quality"). Never fails:
   the connection is made on first use. */
kz_store_t *kz_store_new(const kz_config_t *cfg, const char *app);
void kz_store_destroy(kz_store_t **self_p);
/* The connection, (re)connecting when needed; NULL with ERRBUF when the
   database is unreachable (the caller NACKs its delivery and tries later) */
PGconn *kz_store_db(kz_store_t *self, char *errbuf, size_t errlen);
/* Forget a connection that failed (the next kz_store_db reconnects) */
void kz_store_reset(kz_store_t *self);

/* Wait until the recorder has stored EXPECTED findings of SCAN_ID (and
   the scan's row), up to TIMEOUT_MS, calling TICK (may be NULL) between
   polls: TICK keeps the caller alive (kz_agent_keepalive) and returns
   false to end the wait at once (kz_agent_stopping). 0 when they are all
   there, -1 with ERRBUF on timeout ("only 12 of 40 findings of scan S
   stored after 60 s"), on error, or when TICK ended the wait. */
int kz_store_wait_scan(kz_store_t *self, const char *scan_id, long expected, int timeout_ms,
                       bool (*tick)(void *arg), void *arg, char *errbuf, size_t errlen);

/* Every finding of SCAN_ID, appended to OUT (one per fingerprint: a
   redelivered batch stored twice is read once), each with its `excluded`
   reason (NULL: the project's own code). 0 / -1 */
int kz_store_findings(kz_store_t *self, const char *scan_id, kz_findings_t *out, char *errbuf,
                      size_t errlen);

/* The plan PLAN_ID as it was proposed (improvement_suggestions
   .implementation_plan, JSON text, malloc'd into *JSON) and its target
   into TARGET. 1 when there is such a plan, 0 when not (*JSON NULL), -1
   with ERRBUF */
int kz_store_plan(kz_store_t *self, const char *plan_id, char **json, char *target,
                  size_t target_len, char *errbuf, size_t errlen);

/* The status of SCAN_ID's row in scans (running, ok, partial, failed)
   into STATUS, "" when there is no row. 0 / -1 with ERRBUF */
int kz_store_scan_status(kz_store_t *self, const char *scan_id, char *status, size_t status_len,
                         char *errbuf, size_t errlen);

/* The scan's commit and target into the buffers ("" when unknown). 0 / -1 */
int kz_store_scan_info(kz_store_t *self, const char *scan_id, char *commit, size_t commit_len,
                       char *target, size_t target_len, char *errbuf, size_t errlen);

/* Wait until the recorder has stored the bus message EVENT_ID (in
   events), up to TIMEOUT_MS, calling TICK as kz_store_wait_scan does. The
   recorder stores messages in the order it receives them, each with the
   rows derived from it in the same transaction: once an agent's message
   is stored, the rows of that agent's earlier messages are too. 0 when it
   is stored, -1 with ERRBUF */
int kz_store_wait_event(kz_store_t *self, const char *event_id, int timeout_ms,
                        bool (*tick)(void *arg), void *arg, char *errbuf, size_t errlen);

/* True when a plan that failed with CAUSE (plan.failed's cause) settles
   its findings at its base commit: trying again there cannot help -
   nothing_to_do (the fixer changes nothing there), suite (the target's
   tests cannot run there), fixer (the fixer itself failed on those
   files: it would again). A failure of the machinery (timeout,
   no_reply, ...) or an unknown cause (NULL) does not. */
bool kz_store_cause_settles(const char *cause);

/* The states of a plan not yet final (after "proposed"), for SQL and C */
#define KZ_STORE_OPEN_STATES \
    "'ready', 'awaiting_approval', 'approved', 'executing', 'executed', 'validating'"
bool kz_store_is_open(const char *status);

/* Which of the N fingerprints FPS plans of TARGET already cover, for
   findings found at COMMIT: COVERED[i] is set true for FPS[i] when it is
   among the findings of a plan that is
     - open: ready, approved, awaiting_approval, executing, executed,
       validating;
     - accepted (at any commit: its fix is on the integration branch);
     - proposed or rejected with base commit COMMIT (a proposal that was
       never ranked - its plan.batch lost - must not hide its findings for
       good);
     - failed with base commit COMMIT and a cause that settles it
       (kz_store_cause_settles).
   Plans of other targets do not count. 0 / -1 with ERRBUF */
int kz_store_covered(kz_store_t *self, const char *target, const char *commit,
                     const char *const *fps, size_t n, bool *covered, char *errbuf, size_t errlen);

#endif
