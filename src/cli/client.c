/* aer's gRPC client over the core C API. Mutual TLS always; a blocking
 * pluck queue per call is all a command-line client needs. */
#include "client.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "pki/pki.h"

#define MAX_MESSAGE (4 * 1024 * 1024)

struct aer_client {
  grpc_channel *channel;
  grpc_channel_credentials *creds;
};

static int local_error(aer_status *st, int code, const char *fmt, const char *arg) {
  if (st) {
    st->code = -1;
    snprintf(st->message, sizeof(st->message), fmt, arg);
  }
  return code;
}

static char *read_file(const char *path) {
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) return NULL;
  char *buf = malloc(1024 * 1024);
  if (!buf) return NULL;
  size_t n = fread(buf, 1, 1024 * 1024 - 1, f);
  buf[n] = '\0';
  return buf;
}

/* gRPC's own log is noise for a CLI; failures come back as statuses. */
static void quiet_log(gpr_log_func_args *args) { (void)args; }

/* A Unix socket path, or a TCP address with the resolver prefix gRPC needs
 * to take IP literals (and IPv6 scopes) as they are. */
static void make_target(const char *where, char *buf, size_t size) {
  if (where[0] == '/')
    snprintf(buf, size, "unix:%s", where);
  else if (strncmp(where, "unix:", 5) == 0)
    snprintf(buf, size, "%s", where);
  else if (where[0] == '[')
    snprintf(buf, size, "ipv6:%s", where);
  else if (strspn(where, "0123456789.:") == strlen(where))
    snprintf(buf, size, "ipv4:%s", where);
  else
    snprintf(buf, size, "dns:///%s", where);
}

/* Runs after the chain was verified against our CA: is the peer an auraed
 * (or exactly the one asked for)? Non-zero fails the handshake. */
static int verify_server_identity(const char *target_name, const char *peer_pem, void *userdata) {
  (void)target_name;
  const char *expected = userdata;
  pki_cert_info info = {0};
  au_error err = {0};
  if (pki_cert_info_from_pem(peer_pem, &info, &err) < 0) return 1;
  int bad;
  if (expected) {
    bad = strcmp(info.spiffe_id, expected) != 0;
  } else {
    const char *p = strncmp(info.spiffe_id, "spiffe://", 9) == 0 ? info.spiffe_id + 9 : NULL;
    const char *path = p ? strchr(p, '/') : NULL;
    bad = !path || strncmp(path, "/auraed/", 8) != 0 || path[8] == '\0';
  }
  if (bad) {
    fprintf(stderr, "aer: the server presented %s, not %s\n",
            info.spiffe_id[0] ? info.spiffe_id : "no SPIFFE ID",
            expected ? expected : "an auraed identity (spiffe://TD/auraed/HOST)");
  }
  pki_cert_info_clear(&info);
  return bad;
}

int aer_client_open(const aer_client_config *config, aer_client **ret, aer_status *st) {
  if (!config->ca_crt || !config->client_crt || !config->client_key || !config->socket)
    return local_error(st, -EINVAL, "%s",
                       "client config incomplete: need ca_crt, client_crt, client_key and socket");
  _cleanup_free_ char *ca = read_file(config->ca_crt);
  if (!ca) return local_error(st, -ENOENT, "cannot read CA certificate %s", config->ca_crt);
  _cleanup_free_ char *crt = read_file(config->client_crt);
  if (!crt)
    return local_error(st, -ENOENT, "cannot read client certificate %s", config->client_crt);
  _cleanup_free_ char *key = read_file(config->client_key);
  if (!key) return local_error(st, -ENOENT, "cannot read client key %s", config->client_key);

  gpr_set_log_function(quiet_log);
  grpc_init();
  aer_client *c = calloc(1, sizeof(*c));
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = crt};
  grpc_ssl_verify_peer_options verify = {
      .verify_peer_callback = verify_server_identity,
      .verify_peer_callback_userdata = config->server_id,
  };
  c->creds = grpc_ssl_credentials_create_ex(ca, &pair, &verify, NULL);
  explicit_bzero(key, strlen(key));
  char target[4200];
  make_target(config->socket, target, sizeof(target));
  /* The name checked against the server certificate: the daemon's
   * certificate always carries "localhost". */
  const char *name = config->server_name ? config->server_name : "localhost";
  grpc_arg args[] = {
      {GRPC_ARG_STRING, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, {.string = (char *)name}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = MAX_MESSAGE}},
  };
  grpc_channel_args channel_args = {.num_args = 2, .args = args};
  c->channel = grpc_channel_create(target, c->creds, &channel_args);
  *ret = c;
  return 0;
}

void aer_client_close(aer_client *c) {
  if (!c) return;
  grpc_channel_destroy(c->channel);
  grpc_channel_credentials_release(c->creds);
  free(c);
  grpc_shutdown();
}

typedef struct call_state {
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
} call_state;

static bool run_batch(call_state *cs, const grpc_op *ops, size_t n) {
  if (grpc_call_start_batch(cs->call, ops, n, cs, NULL) != GRPC_CALL_OK) return false;
  grpc_event ev = grpc_completion_queue_pluck(cs->cq, cs, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static int start_call(aer_client *c, const char *method, const ProtobufCMessage *req,
                      int64_t timeout_ms, call_state *cs) {
  memset(cs, 0, sizeof(*cs));
  cs->cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec deadline = timeout_ms > 0
                              ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                             gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                              : gpr_inf_future(GPR_CLOCK_REALTIME);
  grpc_slice method_slice = grpc_slice_from_static_string(method);
  cs->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cs->cq,
                                      method_slice, NULL, deadline, NULL);
  grpc_metadata_array_init(&cs->initial_md);
  grpc_metadata_array_init(&cs->trailing_md);

  size_t len = protobuf_c_message_get_packed_size(req);
  grpc_slice payload_slice = grpc_slice_malloc(len);
  protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(payload_slice));
  grpc_byte_buffer *payload = grpc_raw_byte_buffer_create(&payload_slice, 1);
  grpc_slice_unref(payload_slice);

  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = payload;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &cs->initial_md;
  /* A failed send still lets us read the status below. */
  run_batch(cs, ops, 4);
  grpc_byte_buffer_destroy(payload);
  return 0;
}

static ProtobufCMessage *recv_message(call_state *cs, const ProtobufCMessageDescriptor *type,
                                      bool *ret_bad) {
  grpc_byte_buffer *bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  *ret_bad = false;
  if (!run_batch(cs, &op, 1) || !bb) return NULL;
  grpc_byte_buffer_reader reader;
  grpc_byte_buffer_reader_init(&reader, bb);
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  grpc_byte_buffer_destroy(bb);
  ProtobufCMessage *m =
      protobuf_c_message_unpack(type, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
  grpc_slice_unref(all);
  if (!m) *ret_bad = true;
  return m;
}

static int finish_call(call_state *cs, aer_status *st) {
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &cs->trailing_md;
  op.data.recv_status_on_client.status = &cs->status;
  op.data.recv_status_on_client.status_details = &cs->details;
  run_batch(cs, &op, 1);
  if (st) {
    st->code = cs->status;
    size_t n = GRPC_SLICE_LENGTH(cs->details);
    if (n >= sizeof(st->message)) n = sizeof(st->message) - 1;
    memcpy(st->message, GRPC_SLICE_START_PTR(cs->details), n);
    st->message[n] = '\0';
  }
  int r = cs->status == GRPC_STATUS_OK ? 0 : -EIO;
  grpc_slice_unref(cs->details);
  grpc_metadata_array_destroy(&cs->initial_md);
  grpc_metadata_array_destroy(&cs->trailing_md);
  grpc_call_unref(cs->call);
  grpc_completion_queue_shutdown(cs->cq);
  while (grpc_completion_queue_pluck(cs->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy(cs->cq);
  return r;
}

int aer_client_unary(aer_client *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *type, int64_t timeout_ms,
                     ProtobufCMessage **ret, aer_status *st) {
  call_state cs;
  start_call(c, method, req, timeout_ms, &cs);
  bool bad;
  ProtobufCMessage *m = recv_message(&cs, type, &bad);
  int r = finish_call(&cs, st);
  if (r == 0 && !m) {
    if (st) {
      st->code = -1;
      snprintf(st->message, sizeof(st->message), "%s: %s response", method,
               bad ? "undecodable" : "missing");
    }
    return -EIO;
  }
  if (r < 0) {
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    return r;
  }
  *ret = m;
  return 0;
}

int aer_client_stream(aer_client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *type, int64_t timeout_ms,
                      aer_stream_fn on_message, void *userdata, aer_status *st) {
  call_state cs;
  start_call(c, method, req, timeout_ms, &cs);
  for (;;) {
    bool bad;
    ProtobufCMessage *m = recv_message(&cs, type, &bad);
    if (!m) break;
    int stop = on_message(m, userdata);
    protobuf_c_message_free_unpacked(m, NULL);
    if (stop) {
      grpc_call_cancel(cs.call, NULL);
      finish_call(&cs, NULL);
      return 0;
    }
  }
  return finish_call(&cs, st);
}
