#!/bin/sh
# Fails when a C file differs from what clang-format makes of it with the
# committed .clang-format. Fix with: scripts/check-format.sh --fix
set -eu
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
bad=0
for f in $(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'bench/*.c'); do
  if [ "$fix" = 1 ]; then
    clang-format -i --style=file "$f"
  elif ! clang-format --style=file "$f" | cmp -s - "$f"; then
    echo "not formatted: $f"
    bad=1
  fi
done
exit $bad
