#!/bin/sh
# Runs every benchmark against the given build (default build/). Each one
# prints ratios against a peer or a lower bound measured in the same run.
# Benchmarks are not tests: nothing here fails on a slow result.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$REPO/build}
echo "== cells: RunCell + RunExecutable(/bin/true) + Wait vs crun and the clone lower bound"
/usr/bin/python3 "$REPO/bench/cells/run.py" "$BUILD" "${CELL_RUNS:-30}"
echo "== microVMs: RunVirtualMachine to the guest's init marker vs the same QEMU by hand"
AURAE_BUILD_DIR="$BUILD" /usr/bin/python3 "$REPO/bench/vms/bench_vms.py" "${VM_RUNS:-5}"
