/* One call's life: authorize, receive the request, hand it to a worker,
 * send the reply or stream, send the status, free. The completion-queue
 * thread runs every tag's done(); handlers run on workers. State shared by
 * the two lives under call->lock; the call is freed when its last reference
 * (the close op and the handler's final batch) goes. */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rpc_internal.h"
#include "wire.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static void on_request(rpc_tag *tag, bool ok);
static void on_recv(rpc_tag *tag, bool ok);
static void on_close(rpc_tag *tag, bool ok);
static void on_send(rpc_tag *tag, bool ok);
static void on_final(rpc_tag *tag, bool ok);

rpc_call *rpc_call_new(rpc_server *server) {
  rpc_call *call = calloc(1, sizeof(*call));
  if (!call) return NULL;
  call->server = server;
  grpc_call_details_init(&call->details);
  grpc_metadata_array_init(&call->request_metadata);
  pthread_mutex_init(&call->lock, NULL);
  pthread_cond_init(&call->cond, NULL);
  call->request_tag.done = on_request;
  call->recv_tag.done = on_recv;
  call->close_tag.done = on_close;
  call->send_tag.done = on_send;
  call->final_tag.done = on_final;
  call->refs = 1; /* the pending request */
  return call;
}

static void call_free(rpc_call *call) {
  if (call->request) protobuf_c_message_free_unpacked(call->request, NULL);
  if (call->request_payload) grpc_byte_buffer_destroy(call->request_payload);
  if (call->call) grpc_call_unref(call->call);
  grpc_call_details_destroy(&call->details);
  grpc_metadata_array_destroy(&call->request_metadata);
  pthread_mutex_destroy(&call->lock);
  pthread_cond_destroy(&call->cond);
  free(call);
}

void rpc_call_unref(rpc_call *call) {
  pthread_mutex_lock(&call->lock);
  int left = --call->refs;
  pthread_mutex_unlock(&call->lock);
  if (left == 0) call_free(call);
}

static void call_ref(rpc_call *call) {
  pthread_mutex_lock(&call->lock);
  call->refs++;
  pthread_mutex_unlock(&call->lock);
}

static grpc_call_error start_batch(rpc_call *call, const grpc_op *ops, size_t n, rpc_tag *tag) {
  grpc_call_error e = grpc_call_start_batch(call->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK) log_error("%s: grpc_call_start_batch failed: %d", call->method_name, e);
  return e;
}

/* ---------------------------------------------------------------- identity */

static bool auth_property(grpc_auth_context *ctx, const char *name, char *buf, size_t size) {
  grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
  const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
  if (!p || !p->value || p->value_length == 0 || p->value_length >= size) return false;
  memcpy(buf, p->value, p->value_length);
  buf[p->value_length] = '\0';
  return true;
}

/* A certificate with URI SANs speaks SPIFFE: its identity is its SPIFFE
 * ID, which gRPC only reports for exactly one valid URI SAN; with several,
 * or an invalid one, it has none (denied). Only a certificate without any
 * URI SAN is named by its CN, as "cn:NAME", so a CN can never pass for a
 * SPIFFE ID in the authorization lists. */
static void read_identity(rpc_call *call) {
  call->identity[0] = '\0';
  grpc_auth_context *ctx = grpc_call_auth_context(call->call);
  if (!ctx) return;
  char buf[sizeof(call->identity) - 3];
  if (auth_property(ctx, GRPC_PEER_URI_PROPERTY_NAME, buf, sizeof(buf))) {
    auth_property(ctx, GRPC_PEER_SPIFFE_ID_PROPERTY_NAME, call->identity, sizeof(call->identity));
  } else if (auth_property(ctx, GRPC_X509_CN_PROPERTY_NAME, buf, sizeof(buf))) {
    snprintf(call->identity, sizeof(call->identity), "cn:%s", buf);
  }
  grpc_auth_context_release(ctx);
}

/* ------------------------------------------------------------ ending calls */

static void send_final(rpc_call *call, rpc_status status, const char *message,
                       grpc_byte_buffer *payload) {
  pthread_mutex_lock(&call->lock);
  if (call->finished) {
    pthread_mutex_unlock(&call->lock);
    log_error("%s: handler ended the call twice", call->method_name);
    if (payload) grpc_byte_buffer_destroy(payload);
    return;
  }
  call->finished = true;
  bool need_md = !call->initial_md_sent;
  call->initial_md_sent = true;
  pthread_mutex_unlock(&call->lock);

  grpc_slice details = grpc_slice_from_copied_string(message ? message : "");
  grpc_op ops[3];
  size_t n = 0;
  memset(ops, 0, sizeof(ops));
  if (need_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (payload) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = payload;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)status;
  ops[n++].data.send_status_from_server.status_details = &details;
  /* The final batch holds the reference the handler had. */
  if (start_batch(call, ops, n, &call->final_tag) != GRPC_CALL_OK) rpc_call_unref(call);
  grpc_slice_unref(details);
  if (payload) grpc_byte_buffer_destroy(payload);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  grpc_slice slice = grpc_slice_malloc(len);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return bb;
}

void rpc_call_reply(rpc_call *call, const ProtobufCMessage *response) {
  log_debug("%s by %s: OK", call->method_name, call->identity);
  send_final(call, RPC_OK, "", pack(response));
}

void rpc_call_finish(rpc_call *call, rpc_status status, const char *message) {
  if (status == RPC_OK)
    log_debug("%s by %s: OK", call->method_name, call->identity);
  else
    log_warn("%s by %s: %s: %s", call->method_name,
             call->identity[0] ? call->identity : "(unknown)", rpc_status_name(status),
             message ? message : "");
  send_final(call, status, message, NULL);
}

void rpc_call_fail(rpc_call *call, rpc_status status, const char *fmt, ...) {
  char message[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof(message), fmt, ap);
  va_end(ap);
  rpc_call_finish(call, status, message);
}

void rpc_call_fail_error(rpc_call *call, const au_error *err) {
  rpc_status status = rpc_status_from_errno(err->code);
  if (status == RPC_OK) status = RPC_INTERNAL;
  rpc_call_finish(call, status, err->msg[0] ? err->msg : "internal error");
}

/* --------------------------------------------------------------- streaming */

int rpc_call_send(rpc_call *call, const ProtobufCMessage *message) {
  pthread_mutex_lock(&call->lock);
  if (call->cancelled || call->finished) {
    pthread_mutex_unlock(&call->lock);
    return -ECANCELED;
  }
  bool need_md = !call->initial_md_sent;
  call->initial_md_sent = true;
  call->send_pending = true;
  call->refs++; /* held by the send op */
  pthread_mutex_unlock(&call->lock);

  grpc_byte_buffer *payload = pack(message);
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof(ops));
  if (need_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = payload;
  grpc_call_error e = start_batch(call, ops, n, &call->send_tag);
  grpc_byte_buffer_destroy(payload);
  pthread_mutex_lock(&call->lock);
  if (e != GRPC_CALL_OK) {
    call->send_pending = false;
    call->refs--;
    pthread_mutex_unlock(&call->lock);
    return -ECANCELED;
  }
  while (call->send_pending)
    pthread_cond_wait(&call->cond, &call->lock);
  bool ok = call->send_ok;
  pthread_mutex_unlock(&call->lock);
  return ok ? 0 : -ECANCELED;
}

static void on_send(rpc_tag *tag, bool ok) {
  rpc_call *call = container_of(tag, rpc_call, send_tag);
  pthread_mutex_lock(&call->lock);
  call->send_pending = false;
  call->send_ok = ok;
  pthread_cond_broadcast(&call->cond);
  pthread_mutex_unlock(&call->lock);
  rpc_call_unref(call);
}

/* -------------------------------------------------------------- accessors */

static bool deadline_passed(const rpc_call *call) {
  return gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC)) >= 0;
}

bool rpc_call_cancelled(const rpc_call *call) {
  rpc_call *c = (rpc_call *)call;
  pthread_mutex_lock(&c->lock);
  bool cancelled = c->cancelled;
  pthread_mutex_unlock(&c->lock);
  return cancelled || deadline_passed(call) || rpc_server_shutting_down(call->server);
}

bool rpc_call_wait_cancelled(rpc_call *call, int64_t timeout_ms) {
  int64_t remaining = rpc_call_remaining_ms(call);
  if (remaining < timeout_ms) timeout_ms = remaining;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (timeout_ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&call->lock);
  while (!call->cancelled && !rpc_server_shutting_down(call->server)) {
    if (pthread_cond_timedwait(&call->cond, &call->lock, &until) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&call->lock);
  return rpc_call_cancelled(call);
}

int64_t rpc_call_remaining_ms(const rpc_call *call) {
  gpr_timespec deadline = gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(deadline, gpr_inf_future(GPR_CLOCK_MONOTONIC)) >= 0) return INT64_MAX;
  gpr_timespec left = gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC));
  int64_t ms = gpr_time_to_millis(left);
  return ms < 0 ? 0 : ms;
}

const char *rpc_call_identity(const rpc_call *call) { return call->identity; }
rpc_role rpc_call_role(const rpc_call *call) { return call->role; }
const char *rpc_call_method(const rpc_call *call) { return call->method_name; }

/* ------------------------------------------------------------- dispatching */

/* On the worker, not the completion-queue thread: decoding is work a
 * client controls. */
static bool decode_request(rpc_call *call) {
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, call->request_payload)) {
    rpc_call_finish(call, RPC_INTERNAL, "cannot read request payload");
    return false;
  }
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  grpc_byte_buffer_destroy(call->request_payload);
  call->request_payload = NULL;
  char why[256];
  if (wire_check(call->method->request_type, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), why,
                 sizeof(why)) < 0) {
    grpc_slice_unref(all);
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "request: %s", why);
    return false;
  }
  call->request = protobuf_c_message_unpack(call->method->request_type, NULL,
                                            GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
  grpc_slice_unref(all);
  if (!call->request) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "request: not a valid %s message",
                  call->method->request_type->name);
    return false;
  }
  return true;
}

static void run_handler(void *arg) {
  rpc_call *call = arg;
  /* Our own reference: the final batch may complete and drop the handler's
   * reference before we look at the call again below. */
  call_ref(call);
  if (!decode_request(call)) goto out;
  call->method->handler(call, call->request, call->method->userdata);
  /* The handler's reference moves to the final batch (send_final). A
   * handler that forgot to end the call would leak it and hang the client;
   * answer for it so neither happens. */
  pthread_mutex_lock(&call->lock);
  bool finished = call->finished;
  pthread_mutex_unlock(&call->lock);
  if (!finished) {
    log_error("%s: handler returned without ending the call", call->method_name);
    rpc_call_finish(call, RPC_INTERNAL, "handler did not answer");
  }
out:
  if (call->holds_long_slot) rpc_server_release_long_call(call->server);
  rpc_call_unref(call);
}

static void on_recv(rpc_tag *tag, bool ok) {
  rpc_call *call = container_of(tag, rpc_call, recv_tag);
  if (!ok || !call->request_payload) {
    /* Cancelled, or the client half-closed without a message. */
    if (!ok) {
      send_final(call, RPC_CANCELLED, "call cancelled", NULL);
    } else {
      rpc_call_finish(call, RPC_INVALID_ARGUMENT, "request message missing");
    }
    return;
  }
  if (call->method->server_streaming || call->method->long_running) {
    if (!rpc_server_take_long_call(call->server)) {
      rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED,
                    "too many streaming and waiting calls in flight (%d); retry later",
                    RPC_LONG_CALLS_MAX);
      return;
    }
    call->holds_long_slot = true;
  }
  int r = rpc_workers_submit(rpc_server_workers(call->server), run_handler, call);
  if (r < 0) {
    if (call->holds_long_slot) rpc_server_release_long_call(call->server);
    call->holds_long_slot = false;
    rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "no worker available: %s", strerror(-r));
  }
}

static void on_close(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_call *call = container_of(tag, rpc_call, close_tag);
  pthread_mutex_lock(&call->lock);
  call->closed = true;
  if (call->close_cancelled) call->cancelled = true;
  pthread_cond_broadcast(&call->cond);
  pthread_mutex_unlock(&call->lock);
  rpc_call_unref(call);
}

static void on_final(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_call_unref(container_of(tag, rpc_call, final_tag));
}

static const char *role_name(rpc_role role) {
  switch (role) {
  case RPC_ROLE_ADMIN: return "admin";
  case RPC_ROLE_READ_ONLY: return "read-only";
  default: return "none";
  }
}

void rpc_call_started(rpc_call *call) {
  size_t len = GRPC_SLICE_LENGTH(call->details.method);
  if (len >= sizeof(call->method_name)) len = sizeof(call->method_name) - 1;
  memcpy(call->method_name, GRPC_SLICE_START_PTR(call->details.method), len);
  call->method_name[len] = '\0';
  call->deadline = call->details.deadline;
  read_identity(call);

  /* Learn about cancellation whatever happens next; this op holds a ref.
   * The pending-request ref becomes the handler's ref. */
  call_ref(call);
  grpc_op close_op;
  memset(&close_op, 0, sizeof(close_op));
  close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  close_op.data.recv_close_on_server.cancelled = &call->close_cancelled;
  if (start_batch(call, &close_op, 1, &call->close_tag) != GRPC_CALL_OK) rpc_call_unref(call);

  /* Deny by default: an identity without a role learns nothing, not even
   * which methods exist. */
  call->role = call->identity[0] ? rpc_server_role_of(call->server, call->identity) : RPC_ROLE_NONE;
  call->method = rpc_server_find_method(call->server, call->method_name);
  rpc_role needed = call->method ? call->method->required_role : RPC_ROLE_READ_ONLY;
  if (call->role < needed || call->role == RPC_ROLE_NONE) {
    rpc_call_fail(call, RPC_PERMISSION_DENIED,
                  "identity %s (role %s) may not call %s (needs role %s)",
                  call->identity[0] ? call->identity : "(none)", role_name(call->role),
                  call->method_name, role_name(needed));
    return;
  }
  if (!call->method) {
    rpc_call_fail(call, RPC_UNIMPLEMENTED, "method %s is not implemented by auraed",
                  call->method_name);
    return;
  }
  grpc_op recv_op;
  memset(&recv_op, 0, sizeof(recv_op));
  recv_op.op = GRPC_OP_RECV_MESSAGE;
  recv_op.data.recv_message.recv_message = &call->request_payload;
  if (start_batch(call, &recv_op, 1, &call->recv_tag) != GRPC_CALL_OK)
    send_final(call, RPC_INTERNAL, "cannot receive the request", NULL);
}

static void on_request(rpc_tag *tag, bool ok) {
  rpc_call *call = container_of(tag, rpc_call, request_tag);
  rpc_server *server = call->server;
  if (!ok) {
    /* The server is shutting down: the pending request is returned. */
    rpc_call_unref(call);
    return;
  }
  rpc_server_arm(server);
  rpc_call_started(call);
}
