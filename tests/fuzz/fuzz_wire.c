/* libFuzzer target: the strict wire-format check every request passes
 * before protobuf-c decodes it (src/daemon/rpc/wire.c), then the decode
 * itself for what the check lets through. */
#include <stdint.h>
#include <stdlib.h>

#include "runtime.pb-c.h"
#include "wire.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &aurae__runtime__v0__cell__descriptor,
    &aurae__runtime__v0__executable__descriptor,
    &aurae__runtime__v0__virtual_machine__descriptor,
    &aurae__runtime__v0__pod__descriptor,
    &aurae__runtime__v0__logs_request__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const ProtobufCMessageDescriptor *d = types[data[0] % (sizeof(types) / sizeof(types[0]))];
  char msg[256];
  if (wire_check(d, data + 1, size - 1, msg, sizeof(msg)) < 0) return 0;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
  if (m) protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
