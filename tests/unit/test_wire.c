/* The wire check every request passes before protobuf-c decodes it
 * (src/daemon/rpc/wire.c), on hand-written encodings: protobuf-c would
 * stop a C string at its first NUL, and a hostile client does not use
 * protobuf-c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/wire.h"
#include "runtime.pb-c.h"

#define CELL (&aurae__runtime__v0__cell__descriptor)
#define EXE (&aurae__runtime__v0__executable__descriptor)

static char msg[256];

static int check(const ProtobufCMessageDescriptor *d, const void *data, size_t len) {
  msg[0] = '\0';
  return wire_check(d, data, len, msg, sizeof(msg));
}

static void well_formed_requests_pass(void **state) {
  (void)state;
  /* Cell{name: "web", image: {reference: "héllo:1"}} */
  static const uint8_t cell[] = {0x0a, 3,    'w',  'e', 'b', 0x22, 10,  0x0a, 8,
                                 'h',  0xc3, 0xa9, 'l', 'l', 'o',  ':', '1'};
  assert_int_equal(check(CELL, cell, sizeof(cell)), 0);
  /* Executable{args: ["€", "𝄞"], env: ["A=B"]}: three- and four-byte
   * sequences */
  static const uint8_t exe[] = {0x1a, 3,    0xe2, 0x82, 0xac, 0x1a, 4,   0xf0,
                                0x9d, 0x84, 0x9e, 0x22, 3,    'A',  '=', 'B'};
  assert_int_equal(check(EXE, exe, sizeof(exe)), 0);
  /* bytes may carry anything: Executable{stdin: "\0\xff"} */
  static const uint8_t in[] = {0x3a, 2, 0x00, 0xff};
  assert_int_equal(check(EXE, in, sizeof(in)), 0);
  assert_int_equal(check(CELL, "", 0), 0);
}

static void a_nul_byte_in_a_string_is_refused(void **state) {
  (void)state;
  /* Cell{name: "x\0/../../y"}: protobuf-c would hand the service "x". */
  static const uint8_t cell[] = {0x0a, 10, 'x', 0, '/', '.', '.', '/', '.', '.', '/', 'y'};
  assert_int_equal(check(CELL, cell, sizeof(cell)), -EINVAL);
  assert_string_equal(msg, "field 1 (name) of aurae.runtime.v0.Cell: contains a NUL byte");
  /* at the end, in a repeated field, after a good field */
  static const uint8_t env[] = {0x0a, 1, 'c', 0x22, 4, 'A', '=', 'B', 0};
  assert_int_equal(check(EXE, env, sizeof(env)), -EINVAL);
  assert_string_equal(msg, "field 4 (env) of aurae.runtime.v0.Executable: contains a NUL byte");
  /* at any depth: Cell{image: {reference: "\0"}} */
  static const uint8_t nested[] = {0x22, 3, 0x0a, 1, 0};
  assert_int_equal(check(CELL, nested, sizeof(nested)), -EINVAL);
  assert_string_equal(msg, "field 1 (reference) of aurae.runtime.v0.OciImage: contains a NUL byte");
}

static void invalid_utf8_in_a_string_is_refused(void **state) {
  (void)state;
  static const struct {
    uint8_t bytes[4];
    size_t len;
  } bad[] = {
      {{0xff}, 1},                   /* never in UTF-8 */
      {{0x80}, 1},                   /* a continuation byte alone */
      {{0xc3}, 1},                   /* truncated two-byte sequence */
      {{0xc3, 'a'}, 2},              /* not a continuation byte */
      {{0xc0, 0x80}, 2},             /* overlong NUL ("modified UTF-8") */
      {{0xc1, 0xbf}, 2},             /* overlong */
      {{0xe0, 0x80, 0xaf}, 3},       /* overlong three-byte */
      {{0xed, 0xa0, 0x80}, 3},       /* a UTF-16 surrogate, U+D800 */
      {{0xe2, 0x82}, 2},             /* truncated three-byte */
      {{0xf0, 0x80, 0x80, 0xaf}, 4}, /* overlong four-byte */
      {{0xf4, 0x90, 0x80, 0x80}, 4}, /* above U+10FFFF */
      {{0xf5, 0x80, 0x80, 0x80}, 4}, /* above U+10FFFF */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    /* Executable{cwd: "/" + bad} */
    uint8_t req[8] = {0x2a, (uint8_t)(bad[i].len + 1), '/'};
    memcpy(req + 3, bad[i].bytes, bad[i].len);
    assert_int_equal(check(EXE, req, 3 + bad[i].len), -EINVAL);
    assert_string_equal(msg, "field 5 (cwd) of aurae.runtime.v0.Executable: invalid UTF-8");
  }
  /* The largest code point and the last one below the surrogates pass. */
  static const uint8_t edge[] = {0x2a, 7, 0xf4, 0x8f, 0xbf, 0xbf, 0xed, 0x9f, 0xbf};
  assert_int_equal(check(EXE, edge, sizeof(edge)), 0);
}

static void malformed_fields_are_named(void **state) {
  (void)state;
  /* Cell{name} with a length past the end */
  static const uint8_t len[] = {0x0a, 5, 'a'};
  assert_int_equal(check(CELL, len, sizeof(len)), -EINVAL);
  assert_string_equal(msg, "field 1 (name) of aurae.runtime.v0.Cell: bad length");
  /* Executable{output_limit_bytes} with an unterminated varint */
  static const uint8_t varint[] = {0x48, 0x80};
  assert_int_equal(check(EXE, varint, sizeof(varint)), -EINVAL);
  assert_string_equal(msg,
                      "field 9 (output_limit_bytes) of aurae.runtime.v0.Executable: bad varint");
  /* a truncated 64-bit value */
  static const uint8_t fixed[] = {0x09, 1, 2};
  assert_int_equal(check(CELL, fixed, sizeof(fixed)), -EINVAL);
  assert_string_equal(msg, "field 1 (name) of aurae.runtime.v0.Cell: truncated");
  /* a group (wire type 3) */
  static const uint8_t group[] = {0x0b};
  assert_int_equal(check(CELL, group, sizeof(group)), -EINVAL);
  assert_string_equal(msg, "field 1 (name) of aurae.runtime.v0.Cell: unsupported wire type 3");
  static const uint8_t unknown[] = {0x48, 1};
  assert_int_equal(check(CELL, unknown, sizeof(unknown)), -EINVAL);
  assert_string_equal(msg, "field 9 of aurae.runtime.v0.Cell is unknown to this daemon");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(well_formed_requests_pass),
      cmocka_unit_test(a_nul_byte_in_a_string_is_refused),
      cmocka_unit_test(invalid_utf8_in_a_string_is_refused),
      cmocka_unit_test(malformed_fields_are_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
