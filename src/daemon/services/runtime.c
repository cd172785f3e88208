/* aurae.runtime.v0.Runtime: the method table, and the lifecycle calls
 * dispatched by WorkloadRef.kind to each workload kind's adapter. */
#include <stdlib.h>
#include <string.h>

#include "services.h"
#include "version.h"

#define RT "/aurae.runtime.v0.Runtime/"
#define STOP_GRACE_MAX_MS (10u * 60 * 1000)

typedef const workload_ops *(*ops_getter)(void);

/* Adapters per WorkloadKind; NULL until a kind is implemented. */
static const ops_getter kind_ops[] = {
    [AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_EXECUTABLE] = executables_workload_ops,
    [AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_CELL] = cells_workload_ops,
    [AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_VIRTUAL_MACHINE] = vms_workload_ops,
    [AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_INSTANCE] = NULL,
    [AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_POD] = NULL,
};

static const char *const kind_names[] = {
    "unspecified", "executables", "cells", "virtual machines", "instances", "pods",
};

static const workload_ops *ops_for(Aurae__Runtime__V0__WorkloadKind kind) {
  if ((unsigned)kind >= sizeof(kind_ops) / sizeof(kind_ops[0]) || !kind_ops[kind]) return NULL;
  return kind_ops[kind]();
}

/* Validates the ref and finds the adapter; answers the call and returns
 * NULL when there is none. */
static const workload_ops *resolve(rpc_call *call, const Aurae__Runtime__V0__WorkloadRef *ref,
                                   const char *verb, size_t op_offset) {
  if (!ref) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "ref: required");
    return NULL;
  }
  if (ref->kind <= AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_UNSPECIFIED ||
      ref->kind > AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_POD) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT,
                  "ref.kind: required (executable, cell, virtual machine, instance or pod)");
    return NULL;
  }
  const workload_ops *ops = ops_for(ref->kind);
  void *op = ops ? *(void **)((char *)ops + op_offset) : NULL;
  if (!op) {
    rpc_call_fail(call, RPC_UNIMPLEMENTED, "%s for %s is not implemented yet", verb,
                  kind_names[ref->kind]);
    return NULL;
  }
  return ops;
}

#define DISPATCH(field, verb, ref_expr, arg)                                                       \
  do {                                                                                             \
    const workload_ops *ops = resolve(call, (ref_expr), verb, offsetof(workload_ops, field));      \
    if (ops) ops->field(call, arg);                                                                \
  } while (0)

static void rt_inspect(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__InspectRequest *req = (const void *)msg;
  DISPATCH(inspect, "Inspect", req->ref, req->ref);
}

static void rt_wait(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__WaitRequest *req = (const void *)msg;
  DISPATCH(wait, "Wait", req->ref, req);
}

static void rt_signal(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__SignalRequest *req = (const void *)msg;
  if (req->signal <= 0 || req->signal >= 65) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "signal: %d is not a signal number (1-64)",
                  req->signal);
    return;
  }
  DISPATCH(signal, "Signal", req->ref, req);
}

static void rt_stop(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__StopRequest *req = (const void *)msg;
  /* A client-chosen wait holds a worker: keep it bounded. */
  if (req->grace_period_ms > STOP_GRACE_MAX_MS) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT,
                  "grace_period_ms: %u is more than the maximum %u (10 minutes)",
                  req->grace_period_ms, STOP_GRACE_MAX_MS);
    return;
  }
  DISPATCH(stop, "Stop", req->ref, req);
}

static void rt_free(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__FreeRequest *req = (const void *)msg;
  DISPATCH(free, "Free", req->ref, req);
}

static void rt_logs(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__LogsRequest *req = (const void *)msg;
  DISPATCH(logs, "Logs", req->ref, req);
}

static void rt_list(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Aurae__Runtime__V0__ListRequest *req = (const void *)msg;
  Aurae__Runtime__V0__ListResponse resp = AURAE__RUNTIME__V0__LIST_RESPONSE__INIT;
  au_error err = {0};
  int r = 0;
  for (unsigned k = 1; k < sizeof(kind_ops) / sizeof(kind_ops[0]) && r >= 0; k++) {
    if (req->kind != AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_UNSPECIFIED && req->kind != k)
      continue;
    const workload_ops *ops = ops_for(k);
    /* Executables are listed inside their cells. */
    if (ops && ops->list && k != AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_EXECUTABLE)
      r = ops->list(&resp, &err);
  }
  if (r < 0)
    rpc_call_fail_error(call, &err);
  else
    rpc_call_reply(call, &resp.base);
  /* Adapters allocate the repeated fields with malloc. */
  for (size_t i = 0; i < resp.n_cells; i++)
    protobuf_c_message_free_unpacked(&resp.cells[i]->base, NULL);
  for (size_t i = 0; i < resp.n_virtual_machines; i++)
    protobuf_c_message_free_unpacked(&resp.virtual_machines[i]->base, NULL);
  for (size_t i = 0; i < resp.n_instances; i++)
    protobuf_c_message_free_unpacked(&resp.instances[i]->base, NULL);
  for (size_t i = 0; i < resp.n_pods; i++)
    protobuf_c_message_free_unpacked(&resp.pods[i]->base, NULL);
  free(resp.cells);
  free(resp.virtual_machines);
  free(resp.instances);
  free(resp.pods);
}

static void rt_version(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)msg;
  const daemon_ctx *ctx = ud;
  Aurae__Runtime__V0__VersionResponse resp = AURAE__RUNTIME__V0__VERSION_RESPONSE__INIT;
  resp.version = (char *)AURAE_VERSION;
  resp.git_commit = (char *)AURAE_GIT_COMMIT;
  resp.spiffe_id = (char *)(ctx->spiffe_id ? ctx->spiffe_id : "");
  resp.peer_identity = (char *)rpc_call_identity(call);
  resp.peer_role = rpc_call_role(call) == RPC_ROLE_ADMIN ? "admin" : "read-only";
  rpc_call_reply(call, &resp.base);
}

/* Calls whose behaviour a later capability brings. */
static void rt_unimplemented(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)msg;
  rpc_call_fail(call, RPC_UNIMPLEMENTED, "%s is not implemented yet: %s", rpc_call_method(call),
                (const char *)ud);
}

static rpc_method methods[] = {
    {RT "RunExecutable", &aurae__runtime__v0__executable__descriptor, RPC_ROLE_ADMIN, false,
     cells_run_executable, NULL},
    {RT "RunCell", &aurae__runtime__v0__cell__descriptor, RPC_ROLE_ADMIN, false, cells_run_cell,
     NULL},
    {RT "RunVirtualMachine", &aurae__runtime__v0__virtual_machine__descriptor, RPC_ROLE_ADMIN,
     false, vms_run_virtual_machine, NULL},
    {RT "Spawn", &aurae__runtime__v0__instance__descriptor, RPC_ROLE_ADMIN, false, rt_unimplemented,
     "spawning auraed instances into microVMs"},
    {RT "RunPod", &aurae__runtime__v0__pod__descriptor, RPC_ROLE_ADMIN, false, rt_unimplemented,
     "pods (a cell in a spawned instance)"},
    {RT "List", &aurae__runtime__v0__list_request__descriptor, RPC_ROLE_READ_ONLY, false, rt_list,
     NULL},
    {RT "Inspect", &aurae__runtime__v0__inspect_request__descriptor, RPC_ROLE_READ_ONLY, false,
     rt_inspect, NULL},
    {RT "Wait", &aurae__runtime__v0__wait_request__descriptor, RPC_ROLE_READ_ONLY, false, rt_wait,
     NULL, .long_running = true},
    {RT "Signal", &aurae__runtime__v0__signal_request__descriptor, RPC_ROLE_ADMIN, false, rt_signal,
     NULL},
    {RT "Stop", &aurae__runtime__v0__stop_request__descriptor, RPC_ROLE_ADMIN, false, rt_stop,
     NULL},
    {RT "Free", &aurae__runtime__v0__free_request__descriptor, RPC_ROLE_ADMIN, false, rt_free,
     NULL},
    {RT "Logs", &aurae__runtime__v0__logs_request__descriptor, RPC_ROLE_READ_ONLY, true, rt_logs,
     NULL},
    {RT "Version", &aurae__runtime__v0__version_request__descriptor, RPC_ROLE_READ_ONLY, false,
     rt_version, NULL},
};

const rpc_method *runtime_methods(const daemon_ctx *ctx, size_t *ret_count) {
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (methods[i].handler == rt_version) methods[i].userdata = (void *)ctx;
  *ret_count = sizeof(methods) / sizeof(methods[0]);
  return methods;
}
