#!/usr/bin/env bash
# Runs the training-step checks (cuda/tests/train_check.cpp: run_train_step_checks, unchanged) against TrainStep and
# every kernel it launches emulated on the CPU: the backward kernels and optimiser (as run.sh does), and the forward
# kernels (the tensor-core attention forward included, wmma through mma.h), the GEMM fallback and replacement.cu.
# Not emulated: cuBLASLt (the fallback GEMM runs instead). This checks TrainStep's data flow, indexing, saved
# activations, masks and accumulation, and the wmma attention's bf16 probabilities feeding the backward. The C API
# checks of the training step (mse and lm) run too, through dlopen of an emulated streamline_cuda.so built from
# capi.cpp and the same kernels (as forward.sh does for the layer C API).
# Needs build-cu/libstreamline_core.a (the CUDA harness build) and g++ with C++20.
# Usage: bash cuda/dev/emu/train.sh [--curves [MODEL_DIR]]   (from the repository root; about 2 minutes here, a first build more).
# --curves adds the loss-curve checks (30-step runs; the real window with a model directory): much longer.
set -euo pipefail
root=$(pwd)
out=${EMU_OUT:-$root/build-emu-train}
mkdir -p "$out"
here=$root/cuda/dev/emu
source "$here/prepare.sh"
emu_prepare
cmp -s "$root/cuda/capi.cpp" "$out/capi.cpp" || cp "$root/cuda/capi.cpp" "$out/"
cat > "$out/main.cpp" <<'CPP'
#include <cstdio>
#include <cstring>
#include "harness.h"
#include "train_util.h"
int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--curves") == 0) harness::run_train_curve_checks(false, false, argc > 2 ? argv[2] : "");
  else {
    harness::run_train_step_checks(false);
    harness::tr::guard("C API", [] { harness::tr::check_capi_train(); });
    harness::tr::guard("C API lm", [] { harness::check_capi_lm(); });
  }
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
flags=(-std=c++20 -O2 -g -fPIC -ffp-contract=off -fno-strict-aliasing -pthread -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -Wno-unused-function -include "$here/train_extra.h" -I"$here" -I"$out" -I"$root/native/include"
       -I"$root/cuda/tests" -idirafter /usr/local/cuda/include)
# Objects built with other flags (an older version of this script) are rebuilt.
printf '%s\n' "${flags[@]}" > "$out/flags.new"
if ! cmp -s "$out/flags.new" "$out/flags.txt"; then rm -f "$out"/*.o; mv "$out/flags.new" "$out/flags.txt"; else rm -f "$out/flags.new"; fi
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
# The C API library the C API checks dlopen() from the harness's own folder (its own copy of the kernels, as the real
# streamline_cuda.so has its own static runtime).
capi_o=$out/capi.o
if [ ! -f "$capi_o" ] || [ "$out/capi.cpp" -nt "$capi_o" ] || [ "$stamp" -nt "$capi_o" ]; then g++ "${flags[@]}" -c "$out/capi.cpp" -o "$capi_o"; fi
dev_objs=()
for f in "${emu_kernels[@]}"; do dev_objs+=("$out/$f.o"); done
dev_objs+=("$out/lt_stub.o")
g++ -shared -pthread -Wl,--no-undefined "${dev_objs[@]}" "$capi_o" "$root/build-cu/libstreamline_core.a" \
  -o "$out/streamline_cuda.so" $blas -ldl
g++ -pthread "${objs[@]}" "$root/build-cu/libstreamline_core.a" -o "$out/train_emu" $blas -ldl
"$out/train_emu" "$@"
