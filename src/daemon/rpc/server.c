/* The gRPC server. One completion queue, one thread draining it: that
 * thread only dispatches tags and starts batches, never blocks. Handlers
 * run on the worker pool (workers.c). */
#include "server.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "rpc_internal.h"

#define MAX_METHODS 64
#define ARMED_REQUESTS 4
#define WORKERS_MIN 2
/* Twice the long-call cap: unary calls always find a worker. */
#define WORKERS_MAX (2 * RPC_LONG_CALLS_MAX)
#define PEM_MAX (1024 * 1024)

struct rpc_server {
  grpc_server *server;
  grpc_completion_queue *cq;
  grpc_server_credentials *creds;
  pthread_t cq_thread;
  bool cq_thread_started;
  rpc_workers *workers;
  rpc_server_opts opts;
  const rpc_method *methods[MAX_METHODS];
  size_t n_methods;
  atomic_bool shutting_down;
  atomic_int long_calls;

  rpc_tag shutdown_tag;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool shutdown_done; /* under lock */
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ------------------------------------------------------------- log bridge */

static void grpc_log_bridge(gpr_log_func_args *args) {
  const char *m = args->message ? args->message : "";
  /* Rejected TLS handshakes (no client certificate, another CA, plaintext)
   * are only visible here; make them an operator-visible warning. */
  if (strstr(m, "andshake") && (strstr(m, "fail") || strstr(m, "Fail"))) {
    log_warn("tls: rejected connection: %s", m);
    return;
  }
  switch (args->severity) {
  case GPR_LOG_SEVERITY_ERROR: log_error("grpc: %s", m); break;
  case GPR_LOG_SEVERITY_INFO:
  case GPR_LOG_SEVERITY_DEBUG: log_debug("grpc: %s (%s:%d)", m, args->file, args->line); break;
  }
}

void rpc_install_log_bridge(void) {
  gpr_set_log_function(grpc_log_bridge);
  /* INFO so that handshake failures reach the bridge; the bridge keeps
   * routine INFO lines at our debug level. */
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_INFO);
}

/* ------------------------------------------------------------ credentials */

static int read_pem(const char *path, char **ret, au_error *err) {
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) return au_error_errno(err, -errno, "open %s", path);
  _cleanup_free_ char *buf = malloc(PEM_MAX + 1);
  if (!buf) return au_error_set(err, -ENOMEM, "read %s: out of memory", path);
  size_t n = fread(buf, 1, PEM_MAX + 1, f);
  if (ferror(f)) return au_error_errno(err, -EIO, "read %s", path);
  if (n > PEM_MAX) return au_error_set(err, -EFBIG, "read %s: larger than 1 MiB", path);
  if (n == 0) return au_error_set(err, -EINVAL, "read %s: empty file", path);
  buf[n] = '\0';
  *ret = TAKE_PTR(buf);
  return 0;
}

static int make_credentials(rpc_server *s, au_error *err) {
  _cleanup_free_ char *ca = NULL, *crt = NULL, *key = NULL;
  int r;
  if ((r = read_pem(s->opts.ca_crt_path, &ca, err)) < 0 ||
      (r = read_pem(s->opts.server_crt_path, &crt, err)) < 0 ||
      (r = read_pem(s->opts.server_key_path, &key, err)) < 0)
    return au_error_prefix(err, "server credentials");
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = crt};
  /* Mutual TLS, always: a client must present a certificate signed by our
   * CA. There is no plaintext mode on any listener. */
  s->creds = grpc_ssl_server_credentials_create_ex(
      ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
  explicit_bzero(key, strlen(key));
  if (!s->creds)
    return au_error_set(err, -EINVAL, "server credentials: gRPC rejected %s / %s",
                        s->opts.server_crt_path, s->opts.server_key_path);
  return 0;
}

/* ------------------------------------------------------------------ setup */

static void on_shutdown(rpc_tag *tag, bool ok) {
  (void)ok;
  rpc_server *s = container_of(tag, rpc_server, shutdown_tag);
  pthread_mutex_lock(&s->lock);
  s->shutdown_done = true;
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

int rpc_server_new(const rpc_server_opts *opts, rpc_server **ret, au_error *err) {
  rpc_server *s = calloc(1, sizeof(*s));
  if (!s) return au_error_set(err, -ENOMEM, "out of memory");
  s->opts = *opts;
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->cond, NULL);
  s->shutdown_tag.done = on_shutdown;
  int r = make_credentials(s, err);
  if (r < 0) {
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    return r;
  }
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER,
       GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       {.integer = (int)opts->max_message_bytes}},
      {GRPC_ARG_INTEGER,
       GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
       {.integer = (int)opts->max_message_bytes}},
      {GRPC_ARG_INTEGER,
       GRPC_ARG_MAX_CONCURRENT_STREAMS,
       {.integer = opts->max_concurrent_streams}},
      {GRPC_ARG_INTEGER,
       GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
       {.integer = opts->handshake_timeout_ms}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS, {.integer = opts->idle_timeout_ms}},
      /* A second daemon must fail to bind, not share the port. */
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
  };
  grpc_channel_args channel_args = {.num_args = ARRAY_SIZE(args), .args = args};
  s->server = grpc_server_create(&channel_args, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  *ret = s;
  return 0;
}

void rpc_server_add_methods(rpc_server *s, const rpc_method *methods, size_t n) {
  for (size_t i = 0; i < n && s->n_methods < MAX_METHODS; i++)
    s->methods[s->n_methods++] = &methods[i];
}

int rpc_server_listen(rpc_server *s, const char *address, au_error *err) {
  if (grpc_server_add_http2_port(s->server, address, s->creds) == 0)
    return au_error_set(err, -EADDRNOTAVAIL,
                        "listen on %s: gRPC could not bind (in use, or not a local address)",
                        address);
  return 0;
}

static void *cq_main(void *arg) {
  rpc_server *s = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    rpc_tag *tag = ev.tag;
    tag->done(tag, ev.success != 0);
  }
  return NULL;
}

void rpc_server_arm(rpc_server *s) {
  if (atomic_load(&s->shutting_down)) return;
  rpc_call *call = rpc_call_new(s);
  if (!call) {
    log_error("rpc: out of memory arming a call");
    return;
  }
  grpc_call_error e =
      grpc_server_request_call(s->server, &call->call, &call->details, &call->request_metadata,
                               s->cq, s->cq, &call->request_tag);
  if (e != GRPC_CALL_OK) {
    log_error("rpc: grpc_server_request_call failed: %d", e);
    rpc_call_unref(call);
  }
}

int rpc_server_start(rpc_server *s, au_error *err) {
  int r = rpc_workers_start(WORKERS_MIN, WORKERS_MAX, &s->workers);
  if (r < 0) return au_error_errno(err, r, "start worker pool");
  grpc_server_start(s->server);
  r = pthread_create(&s->cq_thread, NULL, cq_main, s);
  if (r != 0) return au_error_errno(err, -r, "start completion queue thread");
  s->cq_thread_started = true;
  for (int i = 0; i < ARMED_REQUESTS; i++)
    rpc_server_arm(s);
  return 0;
}

static bool wait_shutdown_done(rpc_server *s, int ms) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (long)(ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&s->lock);
  while (!s->shutdown_done)
    if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT) break;
  bool done = s->shutdown_done;
  pthread_mutex_unlock(&s->lock);
  return done;
}

void rpc_server_shutdown(rpc_server *s, int grace_ms) {
  if (!s) return;
  atomic_store(&s->shutting_down, true);
  if (s->cq_thread_started) {
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    if (!wait_shutdown_done(s, grace_ms)) {
      log_info("rpc: cancelling calls still running after %d ms", grace_ms);
      grpc_server_cancel_all_calls(s->server);
      wait_shutdown_done(s, 5000);
    }
  } else {
    /* Never started (a listener failed): gRPC still wants a shutdown
     * before destroy once a port was added; no thread drains the queue,
     * so take the notification here. */
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    for (;;) {
      grpc_event ev = grpc_completion_queue_next(
          s->cq, gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(5, GPR_TIMESPAN)),
          NULL);
      if (ev.type != GRPC_OP_COMPLETE || ev.tag == &s->shutdown_tag) break;
    }
  }
  /* Handlers see shutting_down/cancelled and end their calls. */
  rpc_workers_stop(s->workers);
  grpc_completion_queue_shutdown(s->cq);
  if (s->cq_thread_started) {
    pthread_join(s->cq_thread, NULL);
  } else {
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
      ;
  }
  grpc_server_destroy(s->server);
  grpc_completion_queue_destroy(s->cq);
  grpc_server_credentials_release(s->creds);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cond);
  free(s);
}

bool rpc_server_shutting_down(const rpc_server *s) {
  return atomic_load(&((rpc_server *)s)->shutting_down);
}

/* --------------------------------------------------------- for call.c */

const rpc_method *rpc_server_find_method(rpc_server *s, const char *path) {
  for (size_t i = 0; i < s->n_methods; i++)
    if (strcmp(s->methods[i]->path, path) == 0) return s->methods[i];
  return NULL;
}

rpc_role rpc_server_role_of(rpc_server *s, const char *identity) {
  return s->opts.authorize ? s->opts.authorize(identity, s->opts.authorize_userdata)
                           : RPC_ROLE_NONE;
}

rpc_workers *rpc_server_workers(rpc_server *s) { return s->workers; }
grpc_completion_queue *rpc_server_cq(rpc_server *s) { return s->cq; }
size_t rpc_server_max_message(rpc_server *s) { return s->opts.max_message_bytes; }

bool rpc_server_take_long_call(rpc_server *s) {
  int now = atomic_fetch_add(&s->long_calls, 1);
  if (now < RPC_LONG_CALLS_MAX) return true;
  atomic_fetch_sub(&s->long_calls, 1);
  return false;
}

void rpc_server_release_long_call(rpc_server *s) { atomic_fetch_sub(&s->long_calls, 1); }
