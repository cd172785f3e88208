#!/bin/sh
# The README's second command: builds if needed, then runs the whole test
# suite: cmocka unit tests (meson test) and the pytest integration suites
# against the real auraed (run as root: cells, taps and VMs need it).
#
# Environment: AURAE_BUILD_DIR (default <repo>/build), PYTEST_ARGS (extra).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AURAE_BUILD_DIR:-$REPO/build}
export AURAE_BUILD_DIR="$BUILD"

[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$REPO"
ninja -C "$BUILD"

echo "== unit tests ($BUILD)"
meson test -C "$BUILD" --suite unit --print-errorlogs

echo "== integration tests ($BUILD)"
cd "$REPO"
# shellcheck disable=SC2086
exec /usr/bin/python3 -m pytest -v -p no:cacheprovider ${PYTEST_ARGS:-} tests/integration
