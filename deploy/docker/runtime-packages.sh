#!/usr/bin/env bash
# Prints the Debian/Ubuntu packages that provide the shared libraries the given binaries
# load (ldd + dpkg -S), one per line, sorted. The Dockerfile's build stage writes this list
# and the runtime stage installs exactly it, so the runtime image follows whatever the
# build linked (Debian 12 sonames for the CPU image, Ubuntu 24.04 ones for the CUDA image)
# without a hand-kept list of package names.
set -euo pipefail
for bin in "$@"; do
  ldd "$bin" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  # dpkg knows the path it installed, which may differ from ldd's by a /usr prefix or link.
  real=$(readlink -f "$lib")
  dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null \
    || { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
done | cut -d: -f1 | sort -u
