/* protobuf-c message -> JSON, driven by the descriptors, for `-o json`.
 * Field names are the proto names; enums print as their names; bytes as
 * UTF-8 text when valid, else base64 under "<name>_base64". */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static json_t *message_to_json(const ProtobufCMessage *msg);

static bool valid_utf8(const uint8_t *p, size_t n) {
  json_t *s = json_stringn((const char *)p, n);
  bool ok = s != NULL;
  json_decref(s);
  return ok;
}

static json_t *base64(const uint8_t *p, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t out_len = 4 * ((n + 2) / 3);
  char *out = malloc(out_len + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  out[o] = '\0';
  json_t *j = json_string(out);
  free(out);
  return j;
}

static json_t *value_to_json(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: return json_integer(*(const int64_t *)p);
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: return json_integer((json_int_t) * (const uint64_t *)p);
  case PROTOBUF_C_TYPE_FLOAT: return json_real(*(const float *)p);
  case PROTOBUF_C_TYPE_DOUBLE: return json_real(*(const double *)p);
  case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
    return ev ? json_string(ev->name) : json_integer(*(const int *)p);
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return json_string(s ? s : "");
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *b = p;
    if (valid_utf8(b->data, b->len)) return json_stringn((const char *)b->data, b->len);
    return base64(b->data, b->len);
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
    return m ? message_to_json(m) : json_null();
  }
  }
  return json_null();
}

static size_t value_size(const ProtobufCFieldDescriptor *f) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: return 8;
  case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  default: return 4;
  }
}

static json_t *message_to_json(const ProtobufCMessage *msg) {
  json_t *obj = json_object();
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *base = (const char *)msg;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      const char *arr = *(char *const *)(base + f->offset);
      json_t *ja = json_array();
      for (size_t k = 0; k < n; k++)
        json_array_append_new(ja, value_to_json(f, arr + k * value_size(f)));
      json_object_set_new(obj, f->name, ja);
      continue;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
    }
    json_t *v = value_to_json(f, base + f->offset);
    if (json_is_null(v)) {
      json_decref(v);
      continue; /* absent sub-message */
    }
    json_object_set_new(obj, f->name, v);
  }
  return obj;
}

void aer_print_json(const ProtobufCMessage *msg) {
  json_t *j = message_to_json(msg);
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (s) puts(s);
  free(s);
  json_decref(j);
}
