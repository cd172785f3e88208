#include "wire.h"

#include <errno.h>
#include <stdio.h>

/* Reads a varint; returns bytes used, 0 when malformed or truncated. */
static size_t read_varint(const uint8_t *p, size_t len, uint64_t *ret) {
  uint64_t v = 0;
  for (size_t i = 0; i < len && i < 10; i++) {
    v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *ret = v;
      return i + 1;
    }
  }
  return 0;
}

static int fail(char *msg, size_t size, const char *fmt, unsigned field, const char *type) {
  snprintf(msg, size, fmt, field, type);
  return -EINVAL;
}

static int check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                 char *msg, size_t size) {
  if (depth > WIRE_MAX_DEPTH)
    return fail(msg, size, "nested deeper than %u levels in %s", WIRE_MAX_DEPTH, d->name);
  size_t off = 0;
  while (off < len) {
    uint64_t key;
    size_t n = read_varint(p + off, len - off, &key);
    if (n == 0)
      return fail(msg, size, "malformed field key at byte %u of %s", (unsigned)off, d->name);
    off += n;
    unsigned number = (unsigned)(key >> 3);
    const ProtobufCFieldDescriptor *f =
        key >> 3 > UINT32_MAX ? NULL : protobuf_c_message_descriptor_get_field(d, number);
    if (!f) return fail(msg, size, "field %u of %s is unknown to this daemon", number, d->name);
    uint64_t v;
    switch (key & 7) {
    case 0: /* varint */
      if ((n = read_varint(p + off, len - off, &v)) == 0)
        return fail(msg, size, "field %u of %s: malformed varint", number, d->name);
      off += n;
      break;
    case 1: /* 64-bit */
      if (len - off < 8) return fail(msg, size, "field %u of %s: truncated", number, d->name);
      off += 8;
      break;
    case 5: /* 32-bit */
      if (len - off < 4) return fail(msg, size, "field %u of %s: truncated", number, d->name);
      off += 4;
      break;
    case 2: /* length-delimited: strings, bytes, packed scalars, messages */
      if ((n = read_varint(p + off, len - off, &v)) == 0 || v > len - off - n)
        return fail(msg, size, "field %u of %s: bad length", number, d->name);
      off += n;
      if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        int r = check(f->descriptor, p + off, (size_t)v, depth + 1, msg, size);
        if (r < 0) return r;
      }
      off += (size_t)v;
      break;
    default: /* groups (3, 4) are not proto3 */
      return fail(msg, size, "field %u of %s: unsupported wire type", number, d->name);
    }
  }
  return 0;
}

int wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, char *msg,
               size_t msg_size) {
  return check(desc, data, len, 0, msg, msg_size);
}
