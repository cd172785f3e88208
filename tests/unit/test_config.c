/* auraed's JSON config, aer's client config, sizes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "client.h"
#include "config.h"

static void daemon_defaults(void **state) {
  (void)state;
  auraed_config c;
  config_init_defaults(&c);
  assert_string_equal(c.socket_path, "/run/aurae/aurae.sock");
  assert_int_equal(c.socket_mode, 0600);
  assert_string_equal(c.runtime_dir, "/run/aurae");
  assert_string_equal(c.library_dir, "/var/lib/aurae");
  assert_int_equal(c.max_message_bytes, 4 * 1024 * 1024);
  assert_int_equal(c.n_listen, 0);
  assert_false(c.authz.configured);
  assert_int_equal(c.cell_id_pool_start, 1879048192);
  assert_int_equal(c.cell_id_pool_cells, 4096);
  config_free(&c);
}

static void daemon_full_file(void **state) {
  (void)state;
  auraed_config c;
  config_init_defaults(&c);
  au_error err = {0};
  const char *json =
      "{\"socket\": \"/tmp/x.sock\", \"socket_mode\": \"0660\", \"listen\": [\"[::1]:8443\","
      " \"[fe80::1%tap0]:8443\"], \"runtime_dir\": \"/tmp/run\", \"vm_image_dirs\": "
      "[\"/srv/img\"], \"authorization\":"
      " {\"admin\": [\"spiffe://td/user/admin\"], \"read_only\": [\"spiffe://td/user/*\"]},"
      " \"limits\": {\"max_message_bytes\": 1048576, \"idle_timeout_ms\": 60000},"
      " \"log_level\": \"debug\"}";
  assert_int_equal(config_parse(&c, json, "test", &err), 0);
  assert_string_equal(c.socket_path, "/tmp/x.sock");
  assert_int_equal(c.socket_mode, 0660);
  assert_int_equal(c.n_listen, 2);
  assert_string_equal(c.listen[1], "[fe80::1%tap0]:8443");
  assert_true(c.authz.configured);
  assert_int_equal(c.authz.n_admin, 1);
  assert_string_equal(c.authz.read_only[0], "spiffe://td/user/*");
  assert_int_equal(c.max_message_bytes, 1048576);
  assert_int_equal(c.idle_timeout_ms, 60000);
  assert_true(c.verbose);
  assert_int_equal(c.n_vm_image_dirs, 1);
  assert_string_equal(c.vm_image_dirs[0], "/srv/img");
  config_free(&c);
}

static void expect_error(const char *json, const char *needle) {
  auraed_config c;
  config_init_defaults(&c);
  au_error err = {0};
  assert_int_equal(config_parse(&c, json, "f.conf", &err), -EINVAL);
  if (!strstr(err.msg, needle)) fail_msg("\"%s\" not in \"%s\"", needle, err.msg);
  config_free(&c);
}

static void daemon_bad_files(void **state) {
  (void)state;
  expect_error("{\"sockett\": \"x\"}", "sockett: unknown key");
  expect_error("{\"socket\": 5}", "socket: must be a string");
  expect_error("{\"socket_mode\": \"0666\"}", "socket_mode");
  expect_error("{\"listen\": [\"unix:/x\"]}", "TCP addresses only");
  expect_error("{\"limits\": {\"max_message_bytes\": 10}}", "limits.max_message_bytes");
  expect_error("{\"authorization\": {\"root\": []}}", "authorization.root: unknown role");
  expect_error("{\"authorization\": {\"admin\": [\"\"]}}", "authorization.admin[0]");
  expect_error("{\"vm_image_dirs\": [\"relative\"]}", "vm_image_dirs[0]: must be an absolute path");
  expect_error("[1]", "top level must be an object");
  expect_error("{\"socket\": \"a\", \"socket\": \"b\"}", "f.conf:");
  expect_error("{\"log_level\": \"trace\"}", "log_level");
}

static void daemon_id_pool(void **state) {
  (void)state;
  auraed_config c;
  config_init_defaults(&c);
  au_error err = {0};
  assert_int_equal(
      config_parse(&c, "{\"cell_id_pool\": {\"start\": 65536, \"cells\": 1000}}", "t", &err), 0);
  assert_int_equal(c.cell_id_pool_start, 65536);
  assert_int_equal(c.cell_id_pool_cells, 1000);
  config_free(&c);

  /* A sub-key left out keeps its default. */
  config_init_defaults(&c);
  assert_int_equal(config_parse(&c, "{\"cell_id_pool\": {\"cells\": 16}}", "t", &err), 0);
  assert_int_equal(c.cell_id_pool_start, 1879048192);
  assert_int_equal(c.cell_id_pool_cells, 16);
  config_free(&c);
  config_init_defaults(&c);
  assert_int_equal(
      config_parse(&c, "{\"cell_id_pool\": {\"start\": 4294836224, \"cells\": 1}}", "t", &err), 0);
  assert_int_equal(c.cell_id_pool_start, 4294836224u);
  config_free(&c);
  config_init_defaults(&c);
  assert_int_equal(config_parse(&c, "{\"cell_id_pool\": {}}", "t", &err), 0);
  assert_int_equal(c.cell_id_pool_start, 1879048192);
  assert_int_equal(c.cell_id_pool_cells, 4096);
  config_free(&c);

  expect_error("{\"cell_id_pool\": 5}", "cell_id_pool: must be an object");
  expect_error("{\"cell_id_pool\": {\"begin\": 65536}}", "cell_id_pool.begin: unknown key");
  expect_error("{\"cell_id_pool\": {\"start\": \"65536\"}}",
               "cell_id_pool.start: must be an integer");
  expect_error("{\"cell_id_pool\": {\"start\": 65536.0}}",
               "cell_id_pool.start: must be an integer");
  expect_error("{\"cell_id_pool\": {\"cells\": true}}", "cell_id_pool.cells: must be an integer");
  expect_error("{\"cell_id_pool\": {\"start\": 0}}", "cell_id_pool.start: must be an integer in");
  expect_error("{\"cell_id_pool\": {\"start\": -65536}}", "cell_id_pool.start");
  expect_error("{\"cell_id_pool\": {\"start\": 4294967296}}", "cell_id_pool.start");
  expect_error("{\"cell_id_pool\": {\"start\": 100000}}",
               "cell_id_pool.start: 100000 is not a multiple of 65536");
  expect_error("{\"cell_id_pool\": {\"cells\": 0}}", "cell_id_pool.cells: must be an integer in");
  expect_error("{\"cell_id_pool\": {\"cells\": 65537}}", "cell_id_pool.cells");
  /* Each value alone is in range; together they end past 4294967294. */
  expect_error("{\"cell_id_pool\": {\"start\": 4294836224, \"cells\": 2}}", "past 4294967294");
  expect_error("{\"cell_id_pool\": {\"start\": 4026531840}}", "f.conf: cell_id_pool: start");
}

static void sizes(void **state) {
  (void)state;
  size_t v;
  assert_int_equal(config_parse_size("4096", &v), 0);
  assert_int_equal(v, 4096);
  assert_int_equal(config_parse_size("64M", &v), 0);
  assert_int_equal(v, 64u << 20);
  assert_int_equal(config_parse_size("2GiB", &v), 0);
  assert_int_equal(v, 2ull << 30);
  assert_int_equal(config_parse_size("-1", &v), -EINVAL);
  assert_int_equal(config_parse_size("12X", &v), -EINVAL);
  assert_int_equal(config_parse_size("", &v), -EINVAL);
  assert_int_equal(config_parse_size("99999999999999999999", &v), -EINVAL);
}

static void client_config(void **state) {
  (void)state;
  setenv("HOME", "/home/op", 1);
  aer_client_config c = {0};
  au_error err = {0};
  const char *text = "# Aurae client\n[auth]\nca_crt = \"~/.aurae/pki/ca.crt\"\n"
                     "client_crt = \"/etc/c.crt\"\n  client_key = \"/etc/c.key\"  \n\n"
                     "[system]\nsocket = \"/run/aurae/aurae.sock\"\n";
  assert_int_equal(aer_config_parse(text, &c, &err), 0);
  assert_string_equal(c.ca_crt, "/home/op/.aurae/pki/ca.crt");
  assert_string_equal(c.client_crt, "/etc/c.crt");
  assert_string_equal(c.client_key, "/etc/c.key");
  assert_string_equal(c.socket, "/run/aurae/aurae.sock");
  aer_config_clear(&c);

  assert_int_equal(aer_config_parse("[auth]\nca = \"x\"\n", &c, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "unknown key auth.ca"));
  assert_int_equal(aer_config_parse("[auth]\nca_crt = x\n", &c, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "double-quoted"));
  assert_int_equal(aer_config_parse("[auth]\n\n\n# c\nbad line\n", &c, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "line 5:"));
  assert_int_equal(aer_config_parse("[nope]\n", &c, &err), -EINVAL);
  assert_int_equal(aer_config_parse("socket = \"x\"\n", &c, &err), -EINVAL);
  aer_config_clear(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(daemon_defaults),
      cmocka_unit_test(daemon_full_file),
      cmocka_unit_test(daemon_bad_files),
      cmocka_unit_test(daemon_id_pool),
      cmocka_unit_test(sizes),
      cmocka_unit_test(client_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
