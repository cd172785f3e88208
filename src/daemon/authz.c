#include "authz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool matches(const char *pattern, const char *identity) {
  size_t n = strlen(pattern);
  if (n > 0 && pattern[n - 1] == '*') return strncmp(pattern, identity, n - 1) == 0;
  return strcmp(pattern, identity) == 0;
}

static bool in_list(char *const *list, size_t n, const char *identity) {
  for (size_t i = 0; i < n; i++)
    if (matches(list[i], identity)) return true;
  return false;
}

rpc_role authz_role(const authz_rules *rules, const char *identity) {
  if (!identity || !identity[0]) return RPC_ROLE_NONE;
  if (in_list(rules->admin, rules->n_admin, identity)) return RPC_ROLE_ADMIN;
  if (in_list(rules->read_only, rules->n_read_only, identity)) return RPC_ROLE_READ_ONLY;
  return RPC_ROLE_NONE;
}

int authz_default_rules(authz_rules *rules, const char *server_spiffe_id, au_error *err) {
  const char *prefix = "spiffe://";
  if (!server_spiffe_id || strncmp(server_spiffe_id, prefix, strlen(prefix)) != 0)
    return au_error_set(err, -EINVAL,
                        "authorization: no rules configured and the server certificate has no "
                        "SPIFFE ID to derive them from");
  const char *td = server_spiffe_id + strlen(prefix);
  const char *slash = strchr(td, '/');
  size_t td_len = slash ? (size_t)(slash - td) : strlen(td);
  char buf[512];
  snprintf(buf, sizeof(buf), "spiffe://%.*s/user/admin", (int)td_len, td);
  rules->admin[0] = strdup(buf);
  if (!rules->admin[0]) return au_error_set(err, -ENOMEM, "out of memory");
  rules->n_admin = 1;
  return 0;
}
