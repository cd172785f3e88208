/* A strict pre-check of a protobuf request before it is decoded: every
 * field, at every depth, must be one the schema knows. protobuf-c keeps
 * each unknown field as an allocation of its own, so a 4 MiB request of
 * two-byte unknown fields would cost the daemon ~200 MiB to decode;
 * refusing them up front keeps decoding proportional to what we use, and
 * is deny-by-default for fields this daemon does not understand.
 * Strings must be UTF-8 without NUL bytes: protobuf-c hands them to the
 * services as C strings, which would end at the first NUL. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAX_DEPTH 32

/* 0, or -EINVAL with a message ("field 9 of aurae.runtime.v0.Cell is
 * unknown to this daemon", "field 1 (name) of aurae.runtime.v0.Cell:
 * contains a NUL byte"). */
int wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, char *msg,
               size_t msg_size);
