/* aer: shared state of one invocation and the command table. Each command
 * group lives in its own cmd_*.c and has the signature of aer_command_fn. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "client.h"

typedef enum aer_output { AER_OUTPUT_HUMAN = 0, AER_OUTPUT_JSON } aer_output;

typedef struct aer_ctx {
  aer_client_config config; /* from ~/.aurae/config, env and flags */
  aer_output output;
  bool verbose;
} aer_ctx;

/* argv[0] is the command's own name ("health", "cell", ...). Returns the
 * process exit code: 0 ok; for a failed call 1 + print_status(). */
typedef int (*aer_command_fn)(aer_ctx *ctx, int argc, char **argv);

/* Open a client from ctx->config; on failure prints why and returns the
 * exit code (non-zero). */
int aer_connect(aer_ctx *ctx, aer_client **ret);

/* One unary call on a fresh connection: connect, call, close. Returns 0
 * with *ret set, or the exit code after printing why (aer_print_status). */
int aer_unary(aer_ctx *ctx, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *type, int64_t timeout_ms, ProtobufCMessage **ret);

/* Streams a Logs call to stdout/stderr (JSON chunks with -o json), noting
 * dropped bytes on stderr; returns the exit code. */
struct Aurae__Runtime__V0__LogsRequest;
int aer_stream_logs(aer_ctx *ctx, const struct Aurae__Runtime__V0__LogsRequest *req);

/* Print a protobuf message as JSON on stdout (for -o json). */
void aer_print_json(const ProtobufCMessage *msg);
/* Print a failed call as "aer: STATUS_NAME: message" on stderr; returns the
 * exit code for it (1 + the gRPC status code, so scripts can tell them
 * apart; 1 for local errors). */
int aer_print_status(const aer_status *status);

int cmd_health(aer_ctx *ctx, int argc, char **argv);
int cmd_version(aer_ctx *ctx, int argc, char **argv);
int cmd_pki(aer_ctx *ctx, int argc, char **argv);
int cmd_vm(aer_ctx *ctx, int argc, char **argv);
/* Cells and executables (cmd_cell.c). */
int cmd_cell(aer_ctx *ctx, int argc, char **argv);
int cmd_exec(aer_ctx *ctx, int argc, char **argv);
int cmd_ls(aer_ctx *ctx, int argc, char **argv);
int cmd_inspect(aer_ctx *ctx, int argc, char **argv);
int cmd_logs(aer_ctx *ctx, int argc, char **argv);
int cmd_wait(aer_ctx *ctx, int argc, char **argv);
int cmd_kill(aer_ctx *ctx, int argc, char **argv);
int cmd_stop(aer_ctx *ctx, int argc, char **argv);
int cmd_free(aer_ctx *ctx, int argc, char **argv);
