/* aer: the Aurae client. Global options, the client config, and the
 * command table; each command group lives in its own cmd_*.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runtime.pb-c.h"

typedef struct command {
  const char *name;
  aer_command_fn fn;
  const char *help;
} command;

static const command commands[] = {
    {"health", cmd_health, "check that auraed is serving (grpc.health.v1)"},
    {"version", cmd_version, "print aer's and auraed's versions and your identity"},
    {"pki", cmd_pki, "create and inspect certificates (init, client, server, instance, show)"},
    {"cell", cmd_cell, "create, list, inspect and free cells (cell run NAME ...)"},
    {"exec", cmd_exec, "run an executable in a cell: exec CELL -- CMD ARGS..."},
    {"ls", cmd_ls, "list cells and their executables"},
    {"inspect", cmd_inspect, "show a cell or an executable: inspect CELL [EXE]"},
    {"logs", cmd_logs, "print an executable's output: logs [-f] CELL EXE"},
    {"wait", cmd_wait, "wait until an executable (or all of a cell's) exits: wait CELL [EXE]"},
    {"kill", cmd_kill, "signal an executable, or all of a cell's: kill [-s SIG] CELL [EXE]"},
    {"stop", cmd_stop, "SIGTERM, then SIGKILL after a grace period: stop CELL [EXE]"},
    {"free", cmd_free, "free a cell (kills everything in it) or an executable"},
    {"vm", cmd_vm,
     "virtual machines: vm run NAME --kernel ... | ls | inspect | logs | stop | free"},
};

static void usage(FILE *out) {
  fprintf(out,
          "Usage: aer [OPTIONS] COMMAND [ARGS...]\n\n"
          "Options (anywhere before --):\n"
          "  -o, --output human|json   output format (default human)\n"
          "      --config PATH         client config (default ~/.aurae/config; $AURAE_CONFIG)\n"
          "      --socket ADDR         Unix socket path or host:port ($AURAE_SOCKET)\n"
          "      --ca-crt PATH         ($AURAE_CA_CRT)\n"
          "      --client-crt PATH     ($AURAE_CLIENT_CRT)\n"
          "      --client-key PATH     ($AURAE_CLIENT_KEY)\n"
          "      --server-name NAME    name to verify in the server certificate (localhost)\n"
          "      --server-id SPIFFE    the daemon's exact SPIFFE ID ($AURAE_SERVER_ID;\n"
          "                            default: any spiffe://TD/auraed/HOST of the CA)\n"
          "  -v, --verbose\n\n"
          "Commands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(out,
          "\nExit status: 0 ok; 1 local error; 1+N for a call that failed with gRPC status N.\n");
}

static int set(char **field, const char *value) {
  free(*field);
  *field = strdup(value);
  return *field ? 0 : -ENOMEM;
}

/* Takes the global options out of argv (they may appear anywhere before
 * "--"), so commands see only their own. Returns -1 on a bad option. */
static int take_global_options(aer_ctx *ctx, int *argc, char **argv, const char **config_path,
                               aer_client_config *flags) {
  int out = 1;
  bool passthrough = false;
  for (int i = 1; i < *argc; i++) {
    char *a = argv[i];
    if (passthrough || strcmp(a, "--") == 0) {
      passthrough = true;
      argv[out++] = a;
      continue;
    }
    const char *value = NULL;
    char **field = NULL;
    const char *names[] = {"--config",     "--socket",     "--ca-crt",
                           "--client-crt", "--client-key", "--server-name",
                           "--server-id",  "--output",     "-o"};
    int which = -1;
    for (int k = 0; k < 9; k++) {
      size_t n = strlen(names[k]);
      if (strcmp(a, names[k]) == 0) {
        if (i + 1 >= *argc) {
          fprintf(stderr, "aer: %s needs a value\n", a);
          return -1;
        }
        value = argv[++i];
        which = k;
        break;
      }
      if (strncmp(a, names[k], n) == 0 && a[n] == '=' && k < 8) {
        value = a + n + 1;
        which = k;
        break;
      }
    }
    if (which < 0) {
      if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)
        ctx->verbose = true;
      else
        argv[out++] = a;
      continue;
    }
    switch (which) {
    case 0: *config_path = value; break;
    case 1: field = &flags->socket; break;
    case 2: field = &flags->ca_crt; break;
    case 3: field = &flags->client_crt; break;
    case 4: field = &flags->client_key; break;
    case 5: field = &flags->server_name; break;
    case 6: field = &flags->server_id; break;
    default:
      if (strcmp(value, "json") == 0)
        ctx->output = AER_OUTPUT_JSON;
      else if (strcmp(value, "human") == 0)
        ctx->output = AER_OUTPUT_HUMAN;
      else {
        fprintf(stderr, "aer: --output: \"%s\" (human or json)\n", value);
        return -1;
      }
    }
    if (field && set(field, value) < 0) return -1;
  }
  *argc = out;
  argv[out] = NULL;
  return 0;
}

static void override(char **field, const char *flag, const char *env) {
  const char *v = flag ? flag : (env ? getenv(env) : NULL);
  if (v && *v) set(field, v);
}

static char *config_error; /* reported only when a command connects */

static int load_config(aer_ctx *ctx, const char *config_path, const aer_client_config *flags) {
  char default_path[4096];
  bool explicit_path = config_path || getenv("AURAE_CONFIG");
  if (!config_path) config_path = getenv("AURAE_CONFIG");
  if (!config_path) {
    snprintf(default_path, sizeof(default_path), "%s/.aurae/config",
             getenv("HOME") ? getenv("HOME") : "/root");
    config_path = default_path;
  }
  au_error err = {0};
  if (access(config_path, F_OK) == 0 || explicit_path) {
    if (aer_config_load(config_path, &ctx->config, &err) < 0) {
      fprintf(stderr, "aer: %s\n", err.msg);
      return -1;
    }
  } else if (asprintf(&config_error,
                      "no client config at %s (create one with `aer pki init`, or pass "
                      "--socket/--ca-crt/--client-crt/--client-key)",
                      config_path) < 0) {
    config_error = NULL;
  }
  override(&ctx->config.socket, flags->socket, "AURAE_SOCKET");
  override(&ctx->config.ca_crt, flags->ca_crt, "AURAE_CA_CRT");
  override(&ctx->config.client_crt, flags->client_crt, "AURAE_CLIENT_CRT");
  override(&ctx->config.client_key, flags->client_key, "AURAE_CLIENT_KEY");
  override(&ctx->config.server_name, flags->server_name, NULL);
  override(&ctx->config.server_id, flags->server_id, "AURAE_SERVER_ID");
  if (!ctx->config.socket) set(&ctx->config.socket, "/run/aurae/aurae.sock");
  return 0;
}

int aer_connect(aer_ctx *ctx, aer_client **ret) {
  const aer_client_config *c = &ctx->config;
  if ((!c->ca_crt || !c->client_crt || !c->client_key) && config_error) {
    fprintf(stderr, "aer: %s\n", config_error);
    return 1;
  }
  aer_status st = {0};
  if (aer_client_open(c, ret, &st) < 0) return aer_print_status(&st);
  return 0;
}

int aer_unary(aer_ctx *ctx, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *type, int64_t timeout_ms, ProtobufCMessage **ret) {
  aer_client *client;
  int r = aer_connect(ctx, &client);
  if (r) return r;
  aer_status st = {0};
  r = aer_client_unary(client, method, req, type, timeout_ms, ret, &st);
  aer_client_close(client);
  return r < 0 ? aer_print_status(&st) : 0;
}

static int write_chunk(const ProtobufCMessage *msg, void *userdata) {
  aer_ctx *ctx = userdata;
  const Aurae__Runtime__V0__LogChunk *c = (const void *)msg;
  if (ctx->output == AER_OUTPUT_JSON) {
    aer_print_json(msg);
    return 0;
  }
  bool is_stderr = c->stream == AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDERR;
  const char *name = is_stderr                                                         ? "stderr"
                     : c->stream == AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_CONSOLE ? "console"
                                                                                       : "stdout";
  if (c->dropped_bytes)
    fprintf(stderr, "[aer: %" PRIu64 " bytes of %s dropped]\n", c->dropped_bytes, name);
  FILE *out = is_stderr ? stderr : stdout;
  fwrite(c->data.data, 1, c->data.len, out);
  fflush(out);
  return 0;
}

int aer_stream_logs(aer_ctx *ctx, const Aurae__Runtime__V0__LogsRequest *req) {
  aer_client *client;
  int r = aer_connect(ctx, &client);
  if (r) return r;
  aer_status st = {0};
  r = aer_client_stream(client, "/aurae.runtime.v0.Runtime/Logs", &req->base,
                        &aurae__runtime__v0__log_chunk__descriptor, 0, write_chunk, ctx, &st);
  aer_client_close(client);
  return r < 0 ? aer_print_status(&st) : 0;
}

static const char *const status_names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

int aer_print_status(const aer_status *st) {
  if (st->code < 0) {
    fprintf(stderr, "aer: %s\n", st->message);
    return 1;
  }
  const char *name = (unsigned)st->code < 17 ? status_names[st->code] : "UNKNOWN";
  fprintf(stderr, "aer: %s: %s\n", name, st->message);
  return 1 + st->code;
}

int main(int argc, char **argv) {
  aer_ctx ctx = {0};
  aer_client_config flags = {0};
  const char *config_path = NULL;
  if (take_global_options(&ctx, &argc, argv, &config_path, &flags) < 0) return 1;
  if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  const command *cmd = NULL;
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(argv[1], commands[i].name) == 0) cmd = &commands[i];
  if (!cmd) {
    fprintf(stderr, "aer: unknown command \"%s\" (see aer --help)\n", argv[1]);
    return 1;
  }
  /* pki works on files only and must not need a client config. */
  if (cmd->fn != cmd_pki && load_config(&ctx, config_path, &flags) < 0) return 1;
  int r = cmd->fn(&ctx, argc - 1, argv + 1);
  aer_config_clear(&ctx.config);
  aer_config_clear(&flags);
  free(config_error);
  return r;
}
