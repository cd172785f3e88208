#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "names.h"

static void valid_names(void **state) {
  (void)state;
  au_error err = {0};
  assert_int_equal(name_validate_path("name", "a", &err), 0);
  assert_int_equal(name_validate_path("name", "a/b-2/c3", &err), 0);
  char label63[64];
  memset(label63, 'x', 63);
  label63[63] = '\0';
  assert_int_equal(name_validate_label("name", label63, &err), 0);
}

static void invalid_names(void **state) {
  (void)state;
  au_error err = {0};
  assert_int_equal(name_validate_path("cell_name", "", &err), -EINVAL);
  assert_int_equal(name_validate_path("cell_name", "A", &err), -EINVAL);
  assert_non_null(strstr(err.msg, "cell_name"));
  assert_int_equal(name_validate_path("cell_name", "a//b", &err), -EINVAL);
  assert_int_equal(name_validate_path("cell_name", "a/-b", &err), -EINVAL);
  assert_non_null(strstr(err.msg, "\"-b\""));
  assert_int_equal(name_validate_path("cell_name", "a/b-", &err), -EINVAL);
  assert_int_equal(name_validate_path("cell_name", "/a", &err), -EINVAL);
  assert_int_equal(name_validate_path("cell_name", "a/", &err), -EINVAL);
  assert_int_equal(name_validate_path("cell_name", "a/b_c", &err), -EINVAL);
  assert_int_equal(name_validate_label("name", "a/b", &err), -EINVAL);
  char label64[65];
  memset(label64, 'x', 64);
  label64[64] = '\0';
  assert_int_equal(name_validate_label("name", label64, &err), -EINVAL);
  assert_int_equal(name_validate_path("n", "a/b/c/d/e/f/g/h/i", &err), -EINVAL);
  assert_non_null(strstr(err.msg, "deeper"));
}

static void parent_and_leaf(void **state) {
  (void)state;
  char buf[64];
  assert_true(name_parent("a/b/c", buf, sizeof(buf)));
  assert_string_equal(buf, "a/b");
  assert_false(name_parent("a", buf, sizeof(buf)));
  assert_string_equal(name_leaf("a/b/c"), "c");
  assert_string_equal(name_leaf("a"), "a");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_names),
      cmocka_unit_test(invalid_names),
      cmocka_unit_test(parent_and_leaf),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
