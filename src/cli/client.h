/* aer's gRPC client: the only part of aer that touches the gRPC core API.
 * Always mutual TLS, over the daemon's Unix socket or TCP. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "error.h"

/* The four fields of Aurae's client config, plus where to connect. */
typedef struct aer_client_config {
  char *ca_crt;      /* auth.ca_crt */
  char *client_crt;  /* auth.client_crt */
  char *client_key;  /* auth.client_key */
  char *socket;      /* system.socket: a Unix socket path, or
                        "host:port" / "[v6%scope]:port" for TCP */
  char *server_name; /* TLS name to check on the server; default localhost */
  /* The daemon's SPIFFE ID must be exactly this; when NULL it must at least
   * be an auraed's (spiffe://TD/auraed/HOST), so that another certificate
   * of the same CA (an instance's, a user's) cannot pose as the daemon. */
  char *server_id;
} aer_client_config;

typedef struct aer_status {
  int code; /* gRPC status code, or -1 for a local error */
  char message[1024];
} aer_status;

typedef struct aer_client aer_client;

int aer_client_open(const aer_client_config *config, aer_client **ret, aer_status *status);
void aer_client_close(aer_client *client);

/* One unary call. timeout_ms 0: no deadline. On success *ret_response is a
 * message of response_type (free with protobuf_c_message_free_unpacked). */
int aer_client_unary(aer_client *client, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, int64_t timeout_ms,
                     ProtobufCMessage **ret_response, aer_status *status);

/* A server-streaming call: on_message is called for each message (return
 * non-zero to stop early); returns 0 when the stream ended with OK. */
typedef int (*aer_stream_fn)(const ProtobufCMessage *message, void *userdata);
int aer_client_stream(aer_client *client, const char *method, const ProtobufCMessage *request,
                      const ProtobufCMessageDescriptor *response_type, int64_t timeout_ms,
                      aer_stream_fn on_message, void *userdata, aer_status *status);

/* Client config file: a TOML subset ([auth] ca_crt/client_crt/client_key,
 * [system] socket), values may start with "~/". Unknown keys are errors. */
int aer_config_parse(const char *text, aer_client_config *config, au_error *err);
int aer_config_load(const char *path, aer_client_config *config, au_error *err);
void aer_config_clear(aer_client_config *config);
