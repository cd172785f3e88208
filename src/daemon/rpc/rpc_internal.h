/* Private to src/daemon/rpc: the server, calls, tags and the worker pool. */
#pragma once

#include <grpc/grpc.h>
#include <pthread.h>

#include "rpc.h"
#include "server.h"

/* Every operation batch we start carries a tag; the completion-queue thread
 * calls tag->done(tag, ok). Tags are embedded in the object they belong to. */
typedef struct rpc_tag rpc_tag;
struct rpc_tag {
  void (*done)(rpc_tag *tag, bool ok);
};

struct rpc_call {
  rpc_server *server;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array request_metadata;
  const rpc_method *method;
  char method_name[256];
  char identity[512];
  rpc_role role;
  gpr_timespec deadline;

  grpc_byte_buffer *request_payload;
  ProtobufCMessage *request;

  rpc_tag request_tag; /* grpc_server_request_call completed */
  rpc_tag recv_tag;    /* request message received */
  rpc_tag close_tag;   /* RECV_CLOSE_ON_SERVER: client done or cancelled */
  rpc_tag send_tag;    /* one streaming SEND_MESSAGE */
  rpc_tag final_tag;   /* SEND_STATUS_FROM_SERVER */
  int close_cancelled; /* written by gRPC when close_tag completes */

  pthread_mutex_t lock;
  pthread_cond_t cond;
  int refs;       /* under lock */
  bool closed;    /* close_tag completed */
  bool cancelled; /* client cancelled or server shut down */
  bool initial_md_sent;
  bool send_pending;
  bool send_ok;
  bool finished;        /* final status batch started */
  bool holds_long_slot; /* counted in the server's long-call cap */
};

/* call.c */
rpc_call *rpc_call_new(rpc_server *server);
/* request_call completed for this call object: authorize, read, dispatch. */
void rpc_call_started(rpc_call *call);
void rpc_call_unref(rpc_call *call);

/* workers.c: a pool that grows on demand up to a maximum; idle threads
 * beyond the minimum exit after a while. */
typedef struct rpc_workers rpc_workers;
int rpc_workers_start(unsigned min_threads, unsigned max_threads, rpc_workers **ret);
/* 0, or a negative errno when the job cannot be queued (out of memory, no
 * thread at all); the caller then ends the call itself. */
int rpc_workers_submit(rpc_workers *pool, void (*fn)(void *), void *arg);
/* Waits until every submitted job finished, then stops the threads. */
void rpc_workers_stop(rpc_workers *pool);

/* server.c, for call.c */
const rpc_method *rpc_server_find_method(rpc_server *server, const char *path);
rpc_role rpc_server_role_of(rpc_server *server, const char *identity);
rpc_workers *rpc_server_workers(rpc_server *server);
grpc_completion_queue *rpc_server_cq(rpc_server *server);
/* Arms the next grpc_server_request_call (unless shutting down). */
void rpc_server_arm(rpc_server *server);
size_t rpc_server_max_message(rpc_server *server);
/* Streaming and long-running calls in flight, capped (RPC_LONG_CALLS_MAX):
 * take returns false at the cap. */
#define RPC_LONG_CALLS_MAX 128
bool rpc_server_take_long_call(rpc_server *server);
void rpc_server_release_long_call(rpc_server *server);
