#!/bin/sh
# Installs the Debian packages herd needs, when any is missing.
# As root it runs apt-get; otherwise it prints the exact command to run.
set -e
PKGS="gcc libc6-dev make pkg-config ca-certificates curl liblua5.4-dev lua5.4
lua-cjson lua-busted lua-socket libuv1-dev libcurl4-openssl-dev libssl-dev
netcat-openbsd procps lsof iproute2 clang libclang-rt-14-dev valgrind nftables
liblmdb-dev lmdb-utils python3-prometheus-client gnuplot-nox strace"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "herd: missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
  echo "run as root:  apt-get update && apt-get install -y$missing"
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends $missing
