/* The gRPC server: listeners (Unix socket and TCP, both mutual TLS only),
 * one completion-queue thread that never blocks, a worker pool for
 * handlers, authorization per method, graceful shutdown. */
#pragma once

#include <stddef.h>

#include "rpc.h"

typedef struct rpc_server rpc_server;

/* Identity -> role; the server asks it for every call. */
typedef rpc_role (*rpc_authorize_fn)(const char *identity, void *userdata);

typedef struct rpc_server_opts {
  const char *ca_crt_path;
  const char *server_crt_path;
  const char *server_key_path;
  size_t max_message_bytes;
  int max_concurrent_streams;
  int handshake_timeout_ms;
  int idle_timeout_ms;
  rpc_authorize_fn authorize;
  void *authorize_userdata;
} rpc_server_opts;

int rpc_server_new(const rpc_server_opts *opts, rpc_server **ret, au_error *err);
/* Methods must outlive the server. */
void rpc_server_add_methods(rpc_server *server, const rpc_method *methods, size_t n);
/* "unix:/path" or "[::1]:8443", "[fe80::1%tap0]:8443", "127.0.0.1:8443". */
int rpc_server_listen(rpc_server *server, const char *address, au_error *err);
int rpc_server_start(rpc_server *server, au_error *err);
/* Stop accepting, let in-flight calls finish for up to grace_ms, then
 * cancel what is left, join every thread and free the server. */
void rpc_server_shutdown(rpc_server *server, int grace_ms);
bool rpc_server_shutting_down(const rpc_server *server);

/* Route gRPC's own log (rejected handshakes live only there) into ours. */
void rpc_install_log_bridge(void);
