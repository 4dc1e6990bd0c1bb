#!/usr/bin/env bash
# Set up halo on a fresh Debian 12 machine: install dependencies, build into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
