#!/usr/bin/env bash
# Builds and runs the wmma emulation's own check (mma_selftest.cpp). Usage: bash cuda/dev/emu/mma_selftest.sh
set -euo pipefail
root=$(pwd)
out=${EMU_OUT:-$root/build/emu}
mkdir -p "$out"
g++ -std=c++20 -O1 -pthread -Wall -include "$root/cuda/dev/emu/train_extra.h" -I"$root/cuda/dev/emu" \
  -I"$root/native/include" "$root/cuda/dev/emu/mma_selftest.cpp" -o "$out/mma_selftest"
"$out/mma_selftest"
