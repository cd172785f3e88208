#include "wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

/* Well-formed UTF-8 as RFC 3629 defines it: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF. The second byte's range depends on
 * the first; every later byte is a plain continuation byte. */
static bool utf8_valid(const uint8_t *p, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = p[i];
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
      if (c == 0xed) hi = 0x9f; /* surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
      if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
      return false; /* a continuation byte, 0xc0, 0xc1 or 0xf5.. */
    }
    if (len - i - 1 < n || p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k <= n; k++)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
    i += n + 1;
  }
  return true;
}

/* "field 1 (name) of aurae.runtime.v0.Cell: bad length": the number is
 * what a client's encoder sees, the name what its author wrote. */
static int fail_field(char *msg, size_t size, const ProtobufCMessageDescriptor *d,
                      const ProtobufCFieldDescriptor *f, const char *why) {
  snprintf(msg, size, "field %u (%s) of %s: %s", f->id, f->name, d->name, why);
  return -EINVAL;
}

static int check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                 char *msg, size_t size) {
  if (depth > WIRE_MAX_DEPTH) {
    snprintf(msg, size, "nested deeper than %d levels in %s", WIRE_MAX_DEPTH, d->name);
    return -EINVAL;
  }
  size_t off = 0;
  while (off < len) {
    uint64_t key;
    size_t n = read_varint(p + off, len - off, &key);
    if (n == 0) {
      snprintf(msg, size, "malformed field key at byte %zu of %s", off, d->name);
      return -EINVAL;
    }
    off += n;
    unsigned number = (unsigned)(key >> 3);
    const ProtobufCFieldDescriptor *f =
        key >> 3 > UINT32_MAX ? NULL : protobuf_c_message_descriptor_get_field(d, number);
    if (!f) {
      snprintf(msg, size, "field %u of %s is unknown to this daemon", number, d->name);
      return -EINVAL;
    }
    uint64_t v;
    switch (key & 7) {
    case 0: /* varint */
      if ((n = read_varint(p + off, len - off, &v)) == 0)
        return fail_field(msg, size, d, f, "bad varint");
      off += n;
      break;
    case 1: /* 64-bit */
      if (len - off < 8) return fail_field(msg, size, d, f, "truncated");
      off += 8;
      break;
    case 5: /* 32-bit */
      if (len - off < 4) return fail_field(msg, size, d, f, "truncated");
      off += 4;
      break;
    case 2: /* length-delimited: strings, bytes, packed scalars, messages */
      if ((n = read_varint(p + off, len - off, &v)) == 0 || v > len - off - n)
        return fail_field(msg, size, d, f, "bad length");
      off += n;
      if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        int r = check(f->descriptor, p + off, (size_t)v, depth + 1, msg, size);
        if (r < 0) return r;
      } else if (f->type == PROTOBUF_C_TYPE_STRING) {
        /* protobuf-c hands the services NUL-terminated C strings, so
         * "x\0/../../y" would be validated, and used, as "x". proto3
         * requires strings to be UTF-8, and other implementations refuse
         * to parse anything else, so what we store and echo back stays
         * readable by every client. */
        if (memchr(p + off, '\0', (size_t)v))
          return fail_field(msg, size, d, f, "contains a NUL byte");
        if (!utf8_valid(p + off, (size_t)v)) return fail_field(msg, size, d, f, "invalid UTF-8");
      }
      off += (size_t)v;
      break;
    default: /* groups (3, 4) are not proto3 */
      snprintf(msg, size, "field %u (%s) of %s: unsupported wire type %u", f->id, f->name, d->name,
               (unsigned)(key & 7));
      return -EINVAL;
    }
  }
  return 0;
}

int wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, char *msg,
               size_t msg_size) {
  return check(desc, data, len, 0, msg, msg_size);
}
