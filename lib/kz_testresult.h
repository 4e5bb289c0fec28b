/*  kz_testresult.h - the parsers of test results (kaizen-test-runner)

    A test command's results, read from what it left behind, best first:
      JUnit XML   the report it wrote (testsuites/testsuite/testcase with
                  failure, error and skipped children): one case per test,
                  id "classname::name", else "file::name", else "name"
      lines       per-test lines of its output: automake's "PASS: name",
                  "FAIL: name[:] why", "ERROR:", "SKIP:", "XFAIL:" (a pass),
                  "XPASS:" (a failure) and TAP "ok N - name" / "not ok N -
                  name" (with "# SKIP" a skip; "# TODO" on a failure a skip)
                  (unittest's "FAIL: name (id)" / "ERROR: name (id)" headers,
                  right after its line of 70 '=', are not such lines: they
                  name the failures only)
      summaries   counts only: ctest's "67% tests passed, 1 tests failed out
                  of 3", pytest's "== 1 failed, 2 passed in 0.1s ==" (and
                  its "1 error in 0.05s", "2 skipped in 0.01s", "no tests ran
                  in 0.01s"), unittest's "Ran 6 tests in 0.001s" followed by
                  "OK" / "OK (skipped=1)" / "FAILED (failures=1, errors=2,
                  skipped=3, expected failures=1, unexpected successes=1)",
                  and any "N passed, N failed[, N errors][, N skipped]" line;
                  the last such summary of the output wins
      problem     the line that says why a suite could not even start: an
                  import error (pytest's "E   ModuleNotFoundError: ...", a
                  traceback's last line), with where it happened ("ImportError
                  while loading conftest '...'", "... while importing test
                  module '...'", unittest's "Failed to import test module")

    Everything here works on buffers of LEN bytes (not NUL-terminated),
    trusts nothing in them and caps what it keeps: at most
    KZ_TESTRESULT_MAX_CASES tests (the rest are counted in `dropped`), ids
    of at most KZ_TESTRESULT_MAX_ID bytes and messages of at most
    KZ_TESTRESULT_MAX_MESSAGE bytes (longer ones cut with "..." appended),
    every string valid UTF-8 without control characters, and counts of at
    most KZ_TESTRESULT_MAX_COUNT. The XML parser never loads a DTD, never
    touches the network and never expands an entity (a DOCTYPE's entities
    read as nothing).
*/
#ifndef KZ_TESTRESULT_H_INCLUDED
#define KZ_TESTRESULT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define KZ_TESTRESULT_MAX_CASES   200000
#define KZ_TESTRESULT_MAX_ID      512          /* bytes of a test id (before "...") */
#define KZ_TESTRESULT_MAX_MESSAGE 300          /* bytes of a message (before "...") */
#define KZ_TESTRESULT_MAX_XML     (256u << 20) /* bytes of a JUnit report */
#define KZ_TESTRESULT_MAX_COUNT   1000000000L  /* a summary's counts are capped here */

/* Ordered from good to bad: merging two results of one test keeps the
   worse one, a skip giving way to anything */
typedef enum {
    KZ_TEST_PASS = 0,
    KZ_TEST_SKIP = 1,
    KZ_TEST_FAIL = 2,
    KZ_TEST_ERROR = 3,
} kz_test_status_t;

/* "passed", "skipped", "failed", "error" */
const char *kz_test_status_name(kz_test_status_t status);
/* The status named NAME (as kz_test_status_name writes it). 0 / -1 when unknown */
int kz_test_status_parse(const char *name, kz_test_status_t *status);

typedef struct {
    char *id;
    kz_test_status_t status;
    char *message; /* first line of the failure or error, or NULL */
} kz_test_case_t;

typedef struct {
    kz_test_case_t *items;
    size_t count, cap;
    size_t dropped; /* tests beyond KZ_TESTRESULT_MAX_CASES, not kept */
    /* set by kz_test_cases_finish */
    long passed, failed, errors, skipped;
} kz_test_cases_t;

void kz_test_cases_init(kz_test_cases_t *list);
/* Free every test; LIST is left empty (and may be reused) */
void kz_test_cases_free(kz_test_cases_t *list);
/* Append a test: ID (IDLEN bytes) and MESSAGE (MSGLEN bytes, may be NULL)
   are copied cleaned (kz_testresult_clean). An id that cleans to nothing
   is ignored; beyond KZ_TESTRESULT_MAX_CASES the test is only counted in
   `dropped`. 0 / -1 (out of memory) */
int kz_test_cases_add(kz_test_cases_t *list, const char *id, size_t idlen, kz_test_status_t status,
                      const char *message, size_t msglen);
/* Sort by id (strcmp), merge repeated ids (a failure or error wins over a
   pass, anything over a skip; the worse status keeps its message) and set
   the counts */
void kz_test_cases_finish(kz_test_cases_t *list);
/* The test ID of a finished LIST, or NULL */
const kz_test_case_t *kz_test_cases_find(const kz_test_cases_t *list, const char *id);

/* Append the tests of the JUnit XML report in BUF (LEN bytes) to LIST and
   finish it. 1 when it was a JUnit report; 0 when it was not (not
   well-formed XML, another root element than testsuites/testsuite, empty
   or bigger than KZ_TESTRESULT_MAX_XML; ERR says why, LIST untouched);
   -1 when out of memory (ERR says so; LIST holds what was read) */
int kz_testresult_parse_junit(const char *buf, size_t len, kz_test_cases_t *list, char *err,
                              size_t errlen);

/* Append the per-test lines of the output TEXT (LEN bytes) to LIST and
   finish it when there were any. 0 / -1 (out of memory) */
int kz_testresult_parse_lines(const char *text, size_t len, kz_test_cases_t *list);

typedef struct {
    /* "ctest", "pytest" (a summary with " in 0.12s"), "unittest" or "summary" */
    const char *source;
    long passed, failed, errors, skipped;
} kz_test_summary_t;

/* The counts of the last summary of TEXT (LEN bytes) into *SUM. true when
   there was one (*SUM untouched otherwise). unittest's counts: failed =
   failures + unexpected successes, passed = ran - failed - errors -
   skipped (an expected failure is a pass) */
bool kz_testresult_parse_summary(const char *text, size_t len, kz_test_summary_t *sum);

/* Why the output TEXT (LEN bytes) shows a suite that could not start, into
   BUF (always terminated, cleaned; "" when nothing was found): the first
   import error's place and cause, "ImportError while loading conftest
   'tests/conftest.py': ModuleNotFoundError: No module named 'x'", or the
   cause alone, or else pytest's first "ERROR: " line ("ERROR: file or
   directory not found: tests"). Every occurrence of STRIP followed by '/'
   (a worktree's path; NULL or "" = none) is removed from the text first,
   so paths read relative to it. */
void kz_testresult_problem(const char *text, size_t len, const char *strip, char *buf,
                           size_t buflen);

/* A malloc'd copy of S (N bytes) that is valid UTF-8 without control
   characters (invalid bytes become '?', controls ' '), trimmed, at most
   MAX bytes (cut on a character boundary, "..." appended, so at most
   MAX + 3). NULL when out of memory */
char *kz_testresult_clean(const char *s, size_t n, size_t max);

/* The last non-empty line of TEXT (LEN bytes), cleaned, into BUF (always
   terminated; "" when there is none) */
void kz_testresult_last_line(const char *text, size_t len, char *buf, size_t buflen);

#endif
