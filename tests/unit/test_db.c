/*  test_db.c - kz_db without a server: where the database is (DSN
    precedence, the embedded default), how it is shown to people
    (passwords redacted in URIs and keyword strings), and the compiled-in
    migrations (sorted, unique, named NNNN_what.sql)
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kz_config.h"
#include "kz_db.h"

static kz_config_t *s_cfg(const char *dsn)
{
    char text[1024], err[512];
    if (dsn) {
        /* a YAML double-quoted scalar: backslash and quote escaped */
        char quoted[512];
        size_t n = 0;
        for (const char *p = dsn; *p && n + 2 < sizeof quoted; p++) {
            if (*p == '\\' || *p == '"')
                quoted[n++] = '\\';
            quoted[n++] = *p;
        }
        quoted[n] = '\0';
        snprintf(text, sizeof text, "state_dir: /srv/kz\ndatabase:\n  dsn: \"%s\"\n", quoted);
    } else
        snprintf(text, sizeof text, "state_dir: /srv/kz\n");
    kz_config_t *cfg = kz_config_parse("t.yaml", text, strlen(text), err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    return cfg;
}

static void s_expect(const char *dsn, const char *shown)
{
    kz_config_t *cfg = s_cfg(dsn);
    char buf[512];
    kz_db_describe(cfg, buf, sizeof buf);
    assert_string_equal(buf, shown);
    kz_config_destroy(&cfg);
}

static void test_where(void **state)
{
    (void)state;
    unsetenv("KAIZEN_DATABASE_URL");
    unsetenv("KAIZEN_STATE_DIR");
    kz_config_t *cfg = s_cfg(NULL);
    assert_true(kz_db_embedded(cfg));
    assert_null(kz_db_dsn(cfg));
    char buf[256];
    kz_db_describe(cfg, buf, sizeof buf);
    assert_string_equal(buf, "embedded cluster in /srv/kz/db");

    /* the environment wins over the file, and over the embedded default */
    setenv("KAIZEN_DATABASE_URL", "postgresql://env@h/db", 1);
    assert_false(kz_db_embedded(cfg));
    assert_string_equal(kz_db_dsn(cfg), "postgresql://env@h/db");
    kz_config_destroy(&cfg);
    cfg = s_cfg("host=file dbname=x");
    assert_string_equal(kz_db_dsn(cfg), "postgresql://env@h/db");
    unsetenv("KAIZEN_DATABASE_URL");
    assert_string_equal(kz_db_dsn(cfg), "host=file dbname=x");
    kz_config_destroy(&cfg);
}

static void test_redaction(void **state)
{
    (void)state;
    unsetenv("KAIZEN_DATABASE_URL");
    s_expect("postgresql://kz:s3cret@db.example:5433/kaizen",
             "postgresql://kz:***@db.example:5433/kaizen");
    s_expect("postgres://kz:p%40ss@db/kaizen?sslmode=require&password=two",
             "postgres://kz:***@db/kaizen?sslmode=require&password=***");
    s_expect("postgresql://kz@db/kaizen", "postgresql://kz@db/kaizen");
    s_expect("postgresql:///kaizen?host=/run/pg", "postgresql:///kaizen?host=/run/pg");
    s_expect("host=db user=kz password=s3cret dbname=kaizen",
             "host=db user=kz password=*** dbname=kaizen");
    s_expect("host=db password = 'with space \\' quote' dbname=k",
             "host=db password = *** dbname=k");
    s_expect("host=db dbname=k", "host=db dbname=k");
    /* libpq ends the user info only at '/': a '?' or '#' in a password
       is valid there and must not end the redaction */
    s_expect("postgresql://kz:pa?ss@db/kaizen", "postgresql://kz:***@db/kaizen");
    s_expect("postgresql://kz:pa#ss@db/kaizen", "postgresql://kz:***@db/kaizen");
    /* an unencoded '/' makes the URI invalid, but it is still described */
    s_expect("postgresql://kz:pa/ss@db/kaizen", "postgresql://kz:***@db/kaizen");
    /* an '@' in the query is no user info */
    s_expect("postgresql://db:5432/kaizen?user=me@srv&password=x",
             "postgresql://db:5432/kaizen?user=me@srv&password=***");
    /* nothing of the secret survives anywhere in the text */
    kz_config_t *cfg = s_cfg("password=hunter2 passwordx=1");
    char buf[256];
    kz_db_describe(cfg, buf, sizeof buf);
    assert_null(strstr(buf, "hunter2"));
    kz_config_destroy(&cfg);
}

static void test_migrations(void **state)
{
    (void)state;
    assert_true(kz_migrations_count >= 1);
    assert_int_equal(kz_migrations[0].version, 1);
    for (size_t i = 0; i < kz_migrations_count; i++) {
        const kz_migration_t *m = &kz_migrations[i];
        char want[16];
        snprintf(want, sizeof want, "%04d_", m->version);
        assert_memory_equal(m->name, want, 5);
        assert_non_null(strstr(m->name, ".sql"));
        assert_true(strlen(m->sql) > 0);
        if (i > 0)
            assert_true(m->version > kz_migrations[i - 1].version);
    }
    /* the seed's four tables are in the first migration */
    const char *seed[] = {"autonomous_agent_logs", "improvement_suggestions",
                          "code_quality_snapshots", "learned_patterns"};
    for (size_t i = 0; i < 4; i++) {
        char create[96];
        snprintf(create, sizeof create, "CREATE TABLE %s (", seed[i]);
        assert_non_null(strstr(kz_migrations[0].sql, create));
    }
}

/* text[] literals: every element quoted, " and \ escaped */
static void test_text_array(void **state)
{
    (void)state;
    char *a = kz_db_text_array(NULL, 0);
    assert_string_equal(a, "{}");
    free(a);
    const char *items[] = {"abc", "", "a\"b", "c\\d", "{x,y}", "NULL"};
    a = kz_db_text_array(items, 6);
    assert_string_equal(a, "{\"abc\",\"\",\"a\\\"b\",\"c\\\\d\",\"{x,y}\",\"NULL\"}");
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_migrations),
        cmocka_unit_test(test_text_array),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
