#!/usr/bin/env bash
# Runs the training-step checks (cuda/tests/train_check.cpp: run_train_step_checks, unchanged) against TrainStep and
# every kernel it launches emulated on the CPU: the backward kernels and optimiser (as run.sh does), and the forward
# kernels (the tensor-core attention forward included, wmma through mma.h), the GEMM fallback and replacement.cu.
# Not emulated: cuBLASLt (the fallback GEMM runs instead). This checks TrainStep's data flow, indexing, saved
# activations, masks and accumulation, and the wmma attention's bf16 probabilities feeding the backward.
# Needs build-cu/libstreamline_core.a (the CUDA harness build) and g++ with C++20.
# Usage: bash cuda/dev/emu/train.sh [--curves [MODEL_DIR]]   (from the repository root; about a minute here).
# --curves adds the loss-curve checks (30-step runs; the real window with a model directory): much longer.
set -euo pipefail
root=$(pwd)
out=${EMU_OUT:-$root/build-emu-train}
mkdir -p "$out"
here=$root/cuda/dev/emu
source "$here/prepare.sh"
emu_prepare
cat > "$out/main.cpp" <<'CPP'
#include <cstdio>
#include <cstring>
#include "harness.h"
int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--curves") == 0) harness::run_train_curve_checks(false, false, argc > 2 ? argv[2] : "");
  else harness::run_train_step_checks(false);
  int passed = 0, failed = 0;
  for (const auto& r : harness::results()) {
    (r.ok ? passed : failed)++;
    std::printf("%-8s %-80s %10.3g %10.3g  %s %s\n", r.group.c_str(), r.name.c_str(), r.err, r.tol,
                r.ok ? "ok" : "FAIL", r.note.c_str());
  }
  std::printf("\nemulated: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
CPP
flags=(-std=c++20 -O2 -g -ffp-contract=off -fno-strict-aliasing -pthread -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -Wno-unused-function -include "$here/train_extra.h" -I"$here" -I"$out" -I"$root/native/include"
       -I"$root/cuda/tests" -idirafter /usr/local/cuda/include)
srcs=()
for f in "${emu_kernels[@]}"; do srcs+=("$out/$f.cpp"); done
srcs+=("$here"/lt_stub.cpp
      "$out"/main.cpp "$root"/cuda/tests/train_check.cpp "$root"/cuda/tests/lm_check.cpp "$root"/cuda/tests/train_util.cpp
      "$root"/cuda/tests/train_real.cpp "$root"/cuda/tests/harness.cpp "$root"/cuda/tests/cpu_ref.cpp
      "$root"/cuda/tests/layer_util.cpp "$root"/cuda/tests/safetensors.cpp)
objs=()
# Rebuilt when the source or an emulation header is newer.
stamp=$(ls -t "$here"/*.h "$here"/*.cuh "$out"/*.cuh "$out"/*.h "$out"/common_device.inc | head -1)
for s in "${srcs[@]}"; do
  o="$out/$(basename "$s" .cpp).o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ "$stamp" -nt "$o" ]; then g++ "${flags[@]}" -c "$s" -o "$o"; fi
  objs+=("$o")
done
blas=$(ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a 2>/dev/null || true)
g++ -pthread "${objs[@]}" "$root/build-cu/libstreamline_core.a" -o "$out/train_emu" $blas -ldl
"$out/train_emu" "$@"
