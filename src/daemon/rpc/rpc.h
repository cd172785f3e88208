/* The daemon's RPC layer: the only code that touches the gRPC core API.
 * Services register methods with a protobuf-c request descriptor and a
 * handler; the layer does TLS, authorization per method, decoding, limits,
 * threading and status mapping.
 *
 * Threading: unary handlers run on a worker pool and may block (process
 * start, VM boot). Server-streaming handlers run on a thread of their own
 * and may block in rpc_call_send() until the client has taken a message.
 * Every handler must end the call exactly once: rpc_call_reply() or
 * rpc_call_fail*() (unary), rpc_call_finish() / rpc_call_fail*()
 * (streaming). */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* gRPC status codes (the numbers are fixed by the gRPC protocol). */
typedef enum rpc_status {
  RPC_OK = 0,
  RPC_CANCELLED = 1,
  RPC_UNKNOWN = 2,
  RPC_INVALID_ARGUMENT = 3,
  RPC_DEADLINE_EXCEEDED = 4,
  RPC_NOT_FOUND = 5,
  RPC_ALREADY_EXISTS = 6,
  RPC_PERMISSION_DENIED = 7,
  RPC_RESOURCE_EXHAUSTED = 8,
  RPC_FAILED_PRECONDITION = 9,
  RPC_ABORTED = 10,
  RPC_OUT_OF_RANGE = 11,
  RPC_UNIMPLEMENTED = 12,
  RPC_INTERNAL = 13,
  RPC_UNAVAILABLE = 14,
  RPC_DATA_LOSS = 15,
  RPC_UNAUTHENTICATED = 16,
} rpc_status;

/* Roles, ordered: a role may call every method that needs it or less. */
typedef enum rpc_role {
  RPC_ROLE_NONE = 0,
  RPC_ROLE_READ_ONLY = 1,
  RPC_ROLE_ADMIN = 2,
} rpc_role;

typedef struct rpc_call rpc_call;

typedef void (*rpc_handler)(rpc_call *call, const ProtobufCMessage *request, void *userdata);

typedef struct rpc_method {
  const char *path; /* "/aurae.runtime.v0.Runtime/RunCell" */
  const ProtobufCMessageDescriptor *request_type;
  rpc_role required_role;
  bool server_streaming;
  rpc_handler handler;
  void *userdata;
  /* Unary calls that may wait without bound (Wait). They and streaming
   * calls share a cap, so that waiters can never take every worker from
   * the calls that would end their wait (Stop, Free). */
  bool long_running;
} rpc_method;

/* errno (negative) -> status; one table for the whole daemon. */
rpc_status rpc_status_from_errno(int negative_errno);
const char *rpc_status_name(rpc_status status);

/* Ending a call. The message is sent to the client as grpc-message and
 * logged once with the method and the caller's identity. */
void rpc_call_reply(rpc_call *call, const ProtobufCMessage *response);
void rpc_call_fail(rpc_call *call, rpc_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Status from err->code through rpc_status_from_errno, message err->msg. */
void rpc_call_fail_error(rpc_call *call, const au_error *err);
void rpc_call_finish(rpc_call *call, rpc_status status, const char *message);

/* Streaming: sends one message and blocks until it is written; returns 0,
 * or -ECANCELED when the client went away or the server is shutting down. */
int rpc_call_send(rpc_call *call, const ProtobufCMessage *message);

/* True once the client cancelled, the deadline passed or the server is
 * shutting down; handlers that block should poll it. */
bool rpc_call_cancelled(const rpc_call *call);
/* Blocks until the call is cancelled (true) or timeout_ms passed (false). */
bool rpc_call_wait_cancelled(rpc_call *call, int64_t timeout_ms);
/* Milliseconds until the call's deadline (INT64_MAX when none). */
int64_t rpc_call_remaining_ms(const rpc_call *call);
/* The caller's identity (SPIFFE ID, else certificate CN) and role. */
const char *rpc_call_identity(const rpc_call *call);
rpc_role rpc_call_role(const rpc_call *call);
const char *rpc_call_method(const rpc_call *call);
