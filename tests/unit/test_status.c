/* The errno -> gRPC status table and role checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "authz.h"
#include "rpc/rpc.h"

static void errno_to_status(void **state) {
  (void)state;
  assert_int_equal(rpc_status_from_errno(0), RPC_OK);
  assert_int_equal(rpc_status_from_errno(-EINVAL), RPC_INVALID_ARGUMENT);
  assert_int_equal(rpc_status_from_errno(-ENOENT), RPC_NOT_FOUND);
  assert_int_equal(rpc_status_from_errno(-ESRCH), RPC_NOT_FOUND);
  assert_int_equal(rpc_status_from_errno(-EEXIST), RPC_ALREADY_EXISTS);
  assert_int_equal(rpc_status_from_errno(-EPERM), RPC_PERMISSION_DENIED);
  assert_int_equal(rpc_status_from_errno(-EACCES), RPC_PERMISSION_DENIED);
  assert_int_equal(rpc_status_from_errno(-EOPNOTSUPP), RPC_FAILED_PRECONDITION);
  assert_int_equal(rpc_status_from_errno(-ENODEV), RPC_FAILED_PRECONDITION);
  assert_int_equal(rpc_status_from_errno(-EBUSY), RPC_FAILED_PRECONDITION);
  assert_int_equal(rpc_status_from_errno(-ENOTEMPTY), RPC_FAILED_PRECONDITION);
  assert_int_equal(rpc_status_from_errno(-ETIMEDOUT), RPC_DEADLINE_EXCEEDED);
  assert_int_equal(rpc_status_from_errno(-E2BIG), RPC_RESOURCE_EXHAUSTED);
  assert_int_equal(rpc_status_from_errno(-ENOMEM), RPC_RESOURCE_EXHAUSTED);
  assert_int_equal(rpc_status_from_errno(-ECANCELED), RPC_CANCELLED);
  assert_int_equal(rpc_status_from_errno(-ENOSYS), RPC_UNIMPLEMENTED);
  assert_int_equal(rpc_status_from_errno(-EIO), RPC_INTERNAL);
  assert_int_equal(rpc_status_from_errno(-12345), RPC_INTERNAL);
}

static void status_names(void **state) {
  (void)state;
  assert_string_equal(rpc_status_name(RPC_OK), "OK");
  assert_string_equal(rpc_status_name(RPC_PERMISSION_DENIED), "PERMISSION_DENIED");
  assert_string_equal(rpc_status_name(RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
  assert_string_equal(rpc_status_name((rpc_status)99), "UNKNOWN");
}

static void roles(void **state) {
  (void)state;
  authz_rules rules = {0};
  char *admin = "spiffe://td/user/admin", *ro = "spiffe://td/user/*", *cn = "cn:ops";
  rules.admin[0] = admin;
  rules.admin[1] = cn;
  rules.n_admin = 2;
  rules.read_only[0] = ro;
  rules.n_read_only = 1;
  assert_int_equal(authz_role(&rules, "spiffe://td/user/admin"), RPC_ROLE_ADMIN);
  assert_int_equal(authz_role(&rules, "cn:ops"), RPC_ROLE_ADMIN);
  assert_int_equal(authz_role(&rules, "ops"), RPC_ROLE_NONE);
  assert_int_equal(authz_role(&rules, "spiffe://td/user/bob"), RPC_ROLE_READ_ONLY);
  assert_int_equal(authz_role(&rules, "spiffe://other/user/admin"), RPC_ROLE_NONE);
  assert_int_equal(authz_role(&rules, "spiffe://td/user/admin2"), RPC_ROLE_READ_ONLY);
  assert_int_equal(authz_role(&rules, ""), RPC_ROLE_NONE);
  assert_int_equal(authz_role(&rules, NULL), RPC_ROLE_NONE);
}

static void default_rules(void **state) {
  (void)state;
  authz_rules rules = {0};
  au_error err = {0};
  assert_int_equal(authz_default_rules(&rules, "spiffe://prod.example/auraed/host1", &err), 0);
  assert_int_equal(authz_role(&rules, "spiffe://prod.example/user/admin"), RPC_ROLE_ADMIN);
  assert_int_equal(authz_role(&rules, "spiffe://prod.example/user/eve"), RPC_ROLE_NONE);
  free(rules.admin[0]);
  authz_rules none = {0};
  assert_int_equal(authz_default_rules(&none, "", &err), -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(errno_to_status),
      cmocka_unit_test(status_names),
      cmocka_unit_test(roles),
      cmocka_unit_test(default_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
