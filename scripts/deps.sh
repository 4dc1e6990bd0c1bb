#!/usr/bin/env bash
# Install the Debian packages halo needs to build and test. Idempotent: packages
# already installed are not touched, and apt-get runs only when one is missing.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev libpcre2-dev libutf8proc-dev libcjson-dev libmicrohttpd-dev
          libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
