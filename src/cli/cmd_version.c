/* aer version: this client's version, the daemon's, and who we are to it. */
#include <stdio.h>

#include "cli.h"
#include "runtime.pb-c.h"
#include "version.h"

int cmd_version(aer_ctx *ctx, int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    fprintf(stderr, "Usage: aer version\n");
    return 1;
  }
  aer_client *client;
  int r = aer_connect(ctx, &client);
  if (r) {
    printf("aer %s (%s)\n", AURAE_VERSION, AURAE_GIT_COMMIT);
    return r;
  }
  Aurae__Runtime__V0__VersionRequest req = AURAE__RUNTIME__V0__VERSION_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  aer_status st = {0};
  r = aer_client_unary(client, "/aurae.runtime.v0.Runtime/Version", &req.base,
                       &aurae__runtime__v0__version_response__descriptor, 10000, &resp, &st);
  aer_client_close(client);
  if (r < 0) {
    printf("aer %s (%s)\n", AURAE_VERSION, AURAE_GIT_COMMIT);
    return aer_print_status(&st);
  }
  const Aurae__Runtime__V0__VersionResponse *v = (const void *)resp;
  if (ctx->output == AER_OUTPUT_JSON) {
    aer_print_json(resp);
  } else {
    printf("aer     %s (%s)\n", AURAE_VERSION, AURAE_GIT_COMMIT);
    printf("auraed  %s (%s) as %s\n", v->version, v->git_commit, v->spiffe_id);
    printf("you     %s (%s)\n", v->peer_identity, v->peer_role);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}
