#!/bin/sh
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 20) from its seed corpus. Exits non-zero on a crash.
# Usage: tests/fuzz/run.sh [TARGET...]
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${FUZZ_OUT:-$REPO/build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-20}
mkdir -p "$OUT"
GEN=$OUT/gen
mkdir -p "$GEN"
protoc-c --proto_path="$REPO/api/aurae/runtime/v0" --c_out="$GEN" runtime.proto
CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I$REPO/src/lib -I$REPO/src/daemon -I$REPO/src/cli -I$GEN"

build_config() {
  # shellcheck disable=SC2086
  clang $CFLAGS $(pkg-config --cflags jansson) -o "$OUT/fuzz_config" \
    "$REPO/tests/fuzz/fuzz_config.c" "$REPO/src/daemon/config.c" "$REPO/src/cli/config.c" \
    "$REPO/src/lib/names.c" "$REPO/src/lib/error.c" "$REPO/src/lib/log.c" \
    "$REPO/src/lib/cell/idpool.c" $(pkg-config --libs jansson)
}

build_wire() {
  # shellcheck disable=SC2086
  clang $CFLAGS -I"$REPO/src/daemon/rpc" $(pkg-config --cflags libprotobuf-c) -o "$OUT/fuzz_wire" \
    "$REPO/tests/fuzz/fuzz_wire.c" "$REPO/src/daemon/rpc/wire.c" "$GEN/runtime.pb-c.c" \
    $(pkg-config --libs libprotobuf-c)
}

build_ctlmsg() {
  # shellcheck disable=SC2086
  clang $CFLAGS -o "$OUT/fuzz_ctlmsg" "$REPO/tests/fuzz/fuzz_ctlmsg.c" \
    "$REPO/src/lib/cell/ctlmsg.c" "$REPO/src/lib/cell/ctl.c" "$REPO/src/lib/names.c" \
    "$REPO/src/lib/path.c" "$REPO/src/lib/error.c"
}

targets=${*:-config wire ctlmsg}
for t in $targets; do
  "build_$t"
  corpus="$OUT/corpus-$t"
  mkdir -p "$corpus"
  cp -n "$REPO/tests/fuzz/seeds/$t/"* "$corpus/" 2>/dev/null || true
  echo "== fuzz_$t for ${SECONDS_EACH}s"
  "$OUT/fuzz_$t" -max_total_time="$SECONDS_EACH" -max_len=4096 "$corpus" 2>&1 | tail -3
done
