/* Authorization: a caller's identity (SPIFFE ID, else CN) -> role. Deny by
 * default: an identity in no list has no role and may call nothing. */
#pragma once

#include "config.h"
#include "rpc/rpc.h"

rpc_role authz_role(const authz_rules *rules, const char *identity);
/* Rules used when the config has no "authorization": admin is
 * spiffe://<trust domain of our own certificate>/user/admin. */
int authz_default_rules(authz_rules *rules, const char *server_spiffe_id, au_error *err);
