/* aer health [SERVICE]: grpc.health.v1.Health/Check. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "health.pb-c.h"

int cmd_health(aer_ctx *ctx, int argc, char **argv) {
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
    fprintf(stderr, "Usage: aer health [SERVICE]\n");
    return strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 1;
  }
  aer_client *client;
  int r = aer_connect(ctx, &client);
  if (r) return r;
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = argc == 2 ? argv[1] : "";
  ProtobufCMessage *resp = NULL;
  aer_status st = {0};
  r = aer_client_unary(client, "/grpc.health.v1.Health/Check", &req.base,
                       &grpc__health__v1__health_check_response__descriptor, 10000, &resp, &st);
  aer_client_close(client);
  if (r < 0) return aer_print_status(&st);
  const Grpc__Health__V1__HealthCheckResponse *h = (const void *)resp;
  bool serving = h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  if (ctx->output == AER_OUTPUT_JSON)
    aer_print_json(resp);
  else {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &grpc__health__v1__health_check_response__serving_status__descriptor, h->status);
    printf("%s\n", v ? v->name : "UNKNOWN");
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return serving ? 0 : 1;
}
