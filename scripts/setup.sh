#!/bin/sh
# The README's first command: on a fresh Debian 12 machine, as root,
#   1. install every dependency (Debian packages by name),
#   2. build auraed and aer (meson + ninja) and install them in /usr/local/bin,
#   3. create a local PKI in /etc/aurae/pki if there is none, and a client
#      config in ~/.aurae/config for the admin identity,
#   4. install the microVM guest kernel under /var/lib/aurae/kernel,
#   5. start auraed in daemon mode on /run/aurae/aurae.sock (unless one is
#      already serving there) and check it with `aer health`.
#
# Usage: scripts/setup.sh [--skip-apt] [--skip-build] [--skip-kernel] [--no-start]
# Environment (for tests and unusual layouts):
#   AURAE_ETC (/etc/aurae)  AURAE_RUN (/run/aurae)  AURAE_LIB (/var/lib/aurae)
#   AURAE_BIN (/usr/local/bin)  AURAE_BUILD_DIR (<repo>/build)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
ETC=${AURAE_ETC:-/etc/aurae}
RUN=${AURAE_RUN:-/run/aurae}
LIB=${AURAE_LIB:-/var/lib/aurae}
BIN=${AURAE_BIN:-/usr/local/bin}
BUILD=${AURAE_BUILD_DIR:-$REPO/build}
SKIP_APT=0 SKIP_BUILD=0 SKIP_KERNEL=0 START=1
for arg in "$@"; do
  case "$arg" in
    --skip-apt) SKIP_APT=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --skip-kernel) SKIP_KERNEL=1 ;;
    --no-start) START=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { echo "setup: $*"; }

if [ "$SKIP_APT" = 0 ]; then
  say "installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2046
  apt-get install -y -qq --no-install-recommends $(grep -v '^#' "$REPO/scripts/packages.txt") >/dev/null
fi

if [ "$SKIP_BUILD" = 0 ]; then
  say "building in $BUILD"
  [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$REPO" >/dev/null
  ninja -C "$BUILD" >/dev/null
  install -d "$BIN"
  install -m 0755 "$BUILD/src/daemon/auraed" "$BUILD/src/cli/aer" "$BIN/"
fi
AER="$BIN/aer"
AURAED="$BIN/auraed"
[ -x "$AER" ] || AER="$BUILD/src/cli/aer"
[ -x "$AURAED" ] || AURAED="$BUILD/src/daemon/auraed"

say "PKI in $ETC/pki"
"$AER" pki init --if-missing --dir "$ETC/pki"

if [ ! -f "$ETC/auraed.conf" ]; then
  say "writing $ETC/auraed.conf"
  install -d -m 0755 "$ETC"
  umask 022
  cat > "$ETC/auraed.conf" <<CONF
{
  "socket": "$RUN/aurae.sock",
  "runtime_dir": "$RUN",
  "library_dir": "$LIB",
  "ca_crt": "$ETC/pki/ca.crt",
  "server_crt": "$ETC/pki/server.crt",
  "server_key": "$ETC/pki/server.key"
}
CONF
fi

CLIENT_CONFIG="$HOME/.aurae/config"
if [ ! -f "$CLIENT_CONFIG" ]; then
  say "writing $CLIENT_CONFIG (identity: admin)"
  install -d -m 0700 "$HOME/.aurae"
  umask 077
  cat > "$CLIENT_CONFIG" <<CONF
[auth]
ca_crt = "$ETC/pki/ca.crt"
client_crt = "$ETC/pki/client-admin.crt"
client_key = "$ETC/pki/client-admin.key"

[system]
socket = "$RUN/aurae.sock"
CONF
fi

if [ "$SKIP_KERNEL" = 0 ] && [ -x "$REPO/scripts/setup-guest-kernel.sh" ]; then
  say "guest kernel in $LIB/kernel"
  AURAE_KERNEL_DIR="$LIB/kernel" "$REPO/scripts/setup-guest-kernel.sh"
fi

if [ "$START" = 1 ]; then
  if "$AER" health >/dev/null 2>&1; then
    say "auraed is already serving on $RUN/aurae.sock"
  else
    say "starting auraed (log: /var/log/aurae/auraed.log)"
    "$AURAED" --config "$ETC/auraed.conf" --daemon --log-file "${AURAE_LOG:-/var/log/aurae/auraed.log}"
  fi
  "$AER" health
fi
