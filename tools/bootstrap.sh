#!/usr/bin/env bash
# bootstrap.sh - sets up a fresh Debian 12 machine for dinodistill and builds it.
#
#   bash tools/bootstrap.sh            install packages (when missing), configure, build ./build
#
# Installs with apt-get when run as root (or through sudo when available).
# CUDA and NCCL are optional: when nvcc is on PATH the CUDA backend is built too.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential meson ninja-build pkg-config python3
          libyaml-dev libhdf5-dev hdf5-tools libopenmpi-dev openmpi-bin
          libopenblas-dev libopenblas-openmp-dev
          libturbojpeg0-dev libpng-dev libmicrohttpd-dev)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=release
fi
ninja -C build
