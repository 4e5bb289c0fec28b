/*  test_compdb.c - kz_compdb: a committed compile_commands.json rewritten
    with absolute directories (entries loading compiler plugins or leaving
    the tree dropped), a real cmake configure into the scratch directory
    (nothing written into the tree, the scratch directory gone after
    destroy), make under bear in a copy (paths the tree's, make -k), a configure that fails and a tree with no build files (each
    saying why), the "{compdb}" argv placeholder (filled, or its element
    left out) and the build files that decide a database.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kz_compdb.h"
#include "kz_proc.h"
#include "kz_recipe.h"
#include "kz_state.h"

static char s_tmp[PATH_MAX];
static char s_under[PATH_MAX + 16];

static void s_write(const char *rel, const char *text)
{
    char path[PATH_MAX * 2], dir[PATH_MAX * 2], err[256];
    snprintf(path, sizeof path, "%s/%s", s_tmp, rel);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(kz_mkdirs(dir, 0755, err, sizeof err), 0);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static bool s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int s_setup(void **state)
{
    (void)state;
    char err[256];
    if (kz_tmpdir_new(NULL, "kz-compdb-test", s_tmp, sizeof s_tmp, err, sizeof err) != 0)
        return -1;
    snprintf(s_under, sizeof s_under, "%s/scratch", s_tmp);
    /* the builds run in the sandbox, as its user, which goes through here */
    chmod(s_tmp, 0755);
    return kz_mkdirs(s_under, 0711, err, sizeof err);
}

static int s_teardown(void **state)
{
    (void)state;
    char err[256];
    return kz_rmtree(s_tmp, err, sizeof err);
}

static kz_compdb_t *s_make(const char *root)
{
    kz_compdb_opts_t o = {.root = root, .under = s_under, .timeout_ms = 120000};
    kz_compdb_t *db = kz_compdb_new(&o);
    assert_non_null(db);
    return db;
}

static void test_committed(void **state)
{
    (void)state;
    char root[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/committed", s_tmp);
    s_write(
        "committed/compile_commands.json",
        "[{\"directory\": \".\", \"command\": \"cc -Isrc -c src/a.c\", \"file\": \"src/a.c\"},"
        " {\"directory\": \"sub\", \"arguments\": [\"cc\", \"-c\", \"b.c\"], \"file\": \"b.c\"},"
        " {\"directory\": \".\", \"command\": \"cc -fplugin=./evil.so -c x.c\", \"file\": "
        "\"x.c\"},"
        " {\"directory\": \"../out\", \"command\": \"cc -c y.c\", \"file\": \"y.c\"},"
        " {\"directory\": \".\"}]");
    kz_compdb_t *db = s_make(root);
    assert_non_null(kz_compdb_dir(db));
    assert_string_equal(kz_compdb_how(db), "committed");
    assert_string_equal(kz_compdb_error(db), "");
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/compile_commands.json", kz_compdb_dir(db));
    json_t *j = json_load_file(path, 0, NULL);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 2);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "%s/.", root);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "directory")),
                        want);
    snprintf(want, sizeof want, "%s/sub", root);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "directory")),
                        want);
    json_decref(j);
    /* the scratch directory is kaizen's, and goes with the database */
    assert_int_equal(strncmp(kz_compdb_dir(db), s_under, strlen(s_under)), 0);
    char dir[PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s", kz_compdb_dir(db));
    kz_compdb_destroy(&db);
    assert_null(db);
    kz_compdb_destroy(&db);
    assert_false(s_exists(dir));
}

static void test_cmake(void **state)
{
    (void)state;
    char *cmake = kz_proc_which("cmake");
    if (!cmake) {
        skip();
        return;
    }
    free(cmake);
    char root[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/cm", s_tmp);
    s_write("cm/CMakeLists.txt", "cmake_minimum_required(VERSION 3.13)\nproject(t C)\n"
                                 "add_library(t STATIC a.c)\n"
                                 "target_compile_definitions(t PRIVATE LEVEL=3)\n");
    s_write("cm/a.c", "int a(void) { return LEVEL; }\n");
    kz_compdb_t *db = s_make(root);
    assert_non_null(kz_compdb_dir(db));
    assert_string_equal(kz_compdb_how(db), "cmake");
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/compile_commands.json", kz_compdb_dir(db));
    json_t *j = json_load_file(path, 0, NULL);
    assert_int_equal(json_array_size(j), 1);
    const char *cmd = json_string_value(json_object_get(json_array_get(j, 0), "command"));
    assert_non_null(cmd);
    assert_non_null(strstr(cmd, "-DLEVEL=3"));
    json_decref(j);
    /* configure only: nothing in the tree */
    snprintf(path, sizeof path, "%s/CMakeCache.txt", root);
    assert_false(s_exists(path));
    snprintf(path, sizeof path, "%s/compile_commands.json", root);
    assert_false(s_exists(path));
    kz_compdb_destroy(&db);

    /* a configure that fails says why */
    s_write("cm/CMakeLists.txt", "cmake_minimum_required(VERSION 3.13)\nproject(t C)\n"
                                 "message(FATAL_ERROR \"no such platform\")\n");
    db = s_make(root);
    assert_null(kz_compdb_dir(db));
    assert_string_equal(kz_compdb_how(db), "none");
    assert_non_null(strstr(kz_compdb_error(db), "cmake configure failed: exit 1: CMake Error"));
    kz_compdb_destroy(&db);
}

static void test_make(void **state)
{
    (void)state;
    char *bear = kz_proc_which("bear");
    if (!bear) {
        skip();
        return;
    }
    free(bear);
    char root[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/mk", s_tmp);
    s_write("mk/Makefile", "all: a.o bad.o\n%.o: %.c\n\tcc -DLEVEL=3 -c $< -o $@\n");
    s_write("mk/a.c", "int a(void) { return LEVEL; }\n");
    s_write("mk/bad.c", "int b(void) { return }\n");
    kz_compdb_t *db = s_make(root);
    assert_non_null(kz_compdb_dir(db));
    assert_string_equal(kz_compdb_how(db), "make");
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/compile_commands.json", kz_compdb_dir(db));
    json_t *j = json_load_file(path, 0, NULL);
    /* make -k: the file that fails to build is recorded too */
    assert_int_equal(json_array_size(j), 2);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "%s/a.c", root);
    size_t i;
    json_t *e;
    bool found = false;
    json_array_foreach(j, i, e)
    {
        assert_string_equal(json_string_value(json_object_get(e, "directory")), root);
        found = found || strcmp(json_string_value(json_object_get(e, "file")), want) == 0;
    }
    assert_true(found);
    json_decref(j);
    /* built in the copy: no object in the tree */
    snprintf(path, sizeof path, "%s/a.o", root);
    assert_false(s_exists(path));
    kz_compdb_destroy(&db);
}

static void test_none(void **state)
{
    (void)state;
    char root[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/bare", s_tmp);
    s_write("bare/a.c", "int a;\n");
    kz_compdb_t *db = s_make(root);
    assert_null(kz_compdb_dir(db));
    assert_string_equal(kz_compdb_error(db),
                        "no compile_commands.json, CMakeLists.txt or Makefile at the root");
    kz_compdb_destroy(&db);
    /* a database that is no array */
    s_write("bad/compile_commands.json", "{\"x\": 1}");
    snprintf(root, sizeof root, "%s/bad", s_tmp);
    db = s_make(root);
    assert_null(kz_compdb_dir(db));
    assert_non_null(strstr(kz_compdb_error(db), "is not a JSON array"));
    kz_compdb_destroy(&db);
}

static void test_argv(void **state)
{
    (void)state;
    char *argv[] = {(char *)"clang-tidy", (char *)"-p={compdb}",
                    (char *)"--project={compdb}/compile_commands.json", (char *)"{files}", NULL};
    const char *files[] = {"a.c", NULL};
    char **v = kz_argv_expand_compdb(argv, files, 1, "/w", NULL, "/s/db");
    assert_non_null(v);
    assert_string_equal(v[1], "-p=/s/db");
    assert_string_equal(v[2], "--project=/s/db/compile_commands.json");
    assert_string_equal(v[3], "a.c");
    assert_null(v[4]);
    kz_strv_free(v);
    /* no database: the elements holding the placeholder are left out */
    v = kz_argv_expand(argv, files, 1, "/w", NULL);
    assert_string_equal(v[0], "clang-tidy");
    assert_string_equal(v[1], "a.c");
    assert_null(v[2]);
    kz_strv_free(v);
    assert_true(kz_compdb_wanted(argv, 4));
    assert_false(kz_compdb_wanted(argv, 1));
    assert_true(kz_compdb_input("CMakeLists.txt"));
    assert_true(kz_compdb_input("src/CMakeLists.txt"));
    assert_true(kz_compdb_input("cmake/warnings.cmake"));
    assert_true(kz_compdb_input("Makefile"));
    assert_true(kz_compdb_input("rules.mk"));
    assert_false(kz_compdb_input("src/a.c"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_committed), cmocka_unit_test(test_cmake), cmocka_unit_test(test_make),
        cmocka_unit_test(test_none),      cmocka_unit_test(test_argv),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
