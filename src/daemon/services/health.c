/* grpc.health.v1.Health: Check and Watch. The overall server ("") and the
 * Runtime service are known; anything else is NOT_FOUND (Check) or
 * SERVICE_UNKNOWN (Watch), as the health protocol says. */
#include <stdatomic.h>
#include <string.h>

#include "health.pb-c.h"
#include "services.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

static atomic_bool serving = true;

void health_set_serving(bool value) { atomic_store(&serving, value); }

static bool known_service(const char *name) {
  return name[0] == '\0' || strcmp(name, "aurae.runtime.v0.Runtime") == 0 ||
         strcmp(name, "grpc.health.v1.Health") == 0;
}

static serving_status current_status(const char *service) {
  if (!known_service(service))
    return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  return atomic_load(&serving)
             ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
             : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void health_check(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
  if (!known_service(req->service)) {
    rpc_call_fail(call, RPC_NOT_FOUND, "service: unknown service \"%s\"", req->service);
    return;
  }
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = current_status(req->service);
  rpc_call_reply(call, &resp.base);
}

/* Sends the status now and again whenever it changes, until the client
 * goes away or the daemon shuts down (after saying NOT_SERVING). */
static void health_watch(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  int last = -1;
  for (;;) {
    serving_status now = current_status(req->service);
    if ((int)now != last) {
      resp.status = now;
      if (rpc_call_send(call, &resp.base) < 0) break;
      last = (int)now;
    }
    if (rpc_call_wait_cancelled(call, 200)) {
      /* Shutting down: tell the watcher before the stream ends. */
      if (current_status(req->service) != (serving_status)last) {
        resp.status = current_status(req->service);
        rpc_call_send(call, &resp.base);
      }
      break;
    }
  }
  rpc_call_finish(call, RPC_CANCELLED, "watch ended");
}

static const rpc_method methods[] = {
    {"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor,
     RPC_ROLE_READ_ONLY, false, health_check, NULL},
    {"/grpc.health.v1.Health/Watch", &grpc__health__v1__health_check_request__descriptor,
     RPC_ROLE_READ_ONLY, true, health_watch, NULL},
};

const rpc_method *health_methods(size_t *ret_count) {
  *ret_count = sizeof(methods) / sizeof(methods[0]);
  return methods;
}
