#!/usr/bin/env bash
# deps.sh -- install the Debian packages sparse needs, only those missing.
#
# Usage: bash scripts/deps.sh   (root, or sudo available)
# Checks each package with dpkg-query; runs apt-get update once and installs
# the missing ones.  Prints nothing when all are present.
set -euo pipefail

PKGS=(
  build-essential clang libclang-rt-14-dev    # compiler, libFuzzer, sanitizers
  libtsan2                                     # gcc's ThreadSanitizer runtime (make unit-tsan)
  libzstd-dev zstd libxxhash-dev libssl-dev libcjson-dev libsnappy-dev
  libsqlite3-dev sqlite3
  postgresql-15 postgresql-server-dev-15 postgresql-common libpq-dev
  xdelta3 bsdiff time                          # reference tools for make bench
  python3                                      # test fixtures, bench reports, make route-eval
  python3-numpy                                # bench/mkpair.py (make bench-scale)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
