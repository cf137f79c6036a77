#!/usr/bin/env bash
# Runs the forward harness groups unchanged against the real CUDA sources emulated on the CPU (cuda_runtime.h,
# train_extra.h and mma.h here): `ops` (run_op_checks: embedding, norms, RoPE, activations, log-softmax, cosine,
# the fallback GEMM and its backward products, attention f32 and bf16 on the scalar and both tensor-core variants),
# `layer` (run_layer_checks: every layer style through Context, weight streaming, and the C API through dlopen of an
# emulated streamline_cuda.so built from capi.cpp and the same kernels) and `model` (run_model_checks: kjv-llama
# and the golden fixtures of test/fixtures/models). Not emulated: cuBLASLt (never loaded: every GEMM takes the
# fallback kernel and the cuBLASLt rows report "skipped"), stream overlap, the benchmarks.
# Needs build-cu/libstreamline_core.a (the CUDA harness build) and g++ with C++20.
# Usage (from the repository root; ~3 minutes for the full sweep on a quiet 2-core machine, ~13 under load):
#   bash cuda/dev/emu/forward.sh [--quick] [--only ops|layer|model] [--model DIR] [--repo DIR]
# --quick is the harness's quick flag (fewer dtypes, masks and shapes in ops; one shape per style in layer); model
# has no quick form. The model directory defaults to ${STREAMLINE_SHARED:-../shared}/models/kjv-llama.
# STREAMLINE_ATTN=smem runs the layer and model groups on the tensor-core kernel with O in shared memory (the ops
# group checks both variants itself). EMU_ORDER=reverse|random changes the order threads run between barriers
# (cuda_runtime.h). EMU_ASAN=1 builds with AddressSanitizer (into build/emu-fwd-asan): device allocations have their
# exact size, so a kernel reading or writing past a buffer stops with a report.
set -euo pipefail
root=$(pwd)
asan=${EMU_ASAN:-0}
suffix=; [ "$asan" = 1 ] && suffix=-asan
out=${EMU_OUT:-$root/build/emu-fwd$suffix}  # build/ is ignored by git
mkdir -p "$out"
here=$root/cuda/dev/emu
source "$here/prepare.sh"
emu_prepare
cmp -s "$root/cuda/capi.cpp" "$out/capi.cpp" || cp "$root/cuda/capi.cpp" "$out/"
kernels=("${emu_kernels[@]}")
cat > "$out/main.cpp.new" <<'CPP'
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include "harness.h"
int main(int argc, char** argv) {
  bool quick = false;
  std::string only, model, repo = ".";
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--model" && i + 1 < argc) model = argv[++i];
    else if (a == "--repo" && i + 1 < argc) repo = argv[++i];
    else { std::fprintf(stderr, "usage: %s [--quick] [--only ops|layer|model] [--model DIR] [--repo DIR]\n", argv[0]); return 2; }
  }
  // Each group on its own, as main.cpp does: an exception fails that group and the next one still runs.
  auto group = [&](const char* name, auto&& fn) {
    if (!only.empty() && only != name) return;
    try { fn(); } catch (const std::exception& e) { harness::record(name, "uncaught exception", false, NAN, 0, e.what()); }
    std::fflush(stdout);
  };
  group("ops", [&] { harness::run_op_checks(quick); });
  group("layer", [&] { harness::run_layer_checks(quick); });
  group("model", [&] { harness::run_model_checks(model, repo); });
  int passed = 0, failed = 0;
  for (const auto& r : harness::results()) {
    (r.ok ? passed : failed)++;
    std::printf("%-10s %-100s %10.3g %10.3g  %s %s\n", r.group.c_str(), r.name.c_str(), r.err, r.tol,
                r.ok ? "ok" : "FAIL", r.note.c_str());
  }
  std::printf("\nemulated: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
CPP
for f in main; do cmp -s "$out/$f.cpp.new" "$out/$f.cpp" || mv "$out/$f.cpp.new" "$out/$f.cpp"; rm -f "$out/$f.cpp.new"; done
flags=(-std=c++20 -O2 -g -fPIC -ffp-contract=off -fno-strict-aliasing -pthread -Wall -Wno-unknown-pragmas
       -Wno-unused-parameter -Wno-unused-function -include "$here/train_extra.h" -I"$here" -I"$out" -I"$root/native/include"
       -I"$root/cuda/tests" -idirafter /usr/local/cuda/include)
ld=()
if [ "$asan" = 1 ]; then flags+=(-fsanitize=address -fno-omit-frame-pointer); ld=(-fsanitize=address); fi
dev_srcs=()
for f in "${kernels[@]}"; do dev_srcs+=("$out/$f.cpp"); done
dev_srcs+=("$here/lt_stub.cpp")
tests=(ops_check layer_check model_check layer_util cpu_ref safetensors harness)
host_srcs=("$out/main.cpp")
for t in "${tests[@]}"; do host_srcs+=("$root/cuda/tests/$t.cpp"); done
# Objects are rebuilt when their source or an emulation header is newer; two compilers at a time.
stamp=$(ls -t "$here"/*.h "$here"/*.cuh "$out"/*.cuh "$out"/*.h "$out"/common_device.inc | head -1)
todo=()
for s in "${dev_srcs[@]}" "${host_srcs[@]}" "$out/capi.cpp"; do
  o="$out/$(basename "$s" .cpp).o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ "$stamp" -nt "$o" ]; then todo+=("$s"); fi
done
if [ ${#todo[@]} -gt 0 ]; then
  printf '%s\n' "${todo[@]}" | xargs -P 2 -I{} sh -c 'g++ "$@" -c "$0" -o "'"$out"'/$(basename "$0" .cpp).o"' {} "${flags[@]}"
fi
dev_objs=() host_objs=()
for s in "${dev_srcs[@]}"; do dev_objs+=("$out/$(basename "$s" .cpp).o"); done
for s in "${host_srcs[@]}"; do host_objs+=("$out/$(basename "$s" .cpp).o"); done
blas=$(ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a 2>/dev/null || true)
core=$root/build-cu/libstreamline_core.a
# The C API library the layer group dlopen()s from the harness's own folder (its own copy of the kernels, as the real
# streamline_cuda.so has its own static runtime).
g++ "${ld[@]}" -shared -pthread -Wl,--no-undefined "${dev_objs[@]}" "$out/capi.o" "$core" -o "$out/streamline_cuda.so" $blas -ldl
g++ "${ld[@]}" -pthread "${dev_objs[@]}" "${host_objs[@]}" "$core" -o "$out/forward_emu" $blas -ldl
if [ -z "$(printf '%s\n' "$@" | grep -x -- --model || true)" ]; then
  set -- "$@" --model "${STREAMLINE_SHARED:-$root/../shared}/models/kjv-llama"
fi
if [ -z "$(printf '%s\n' "$@" | grep -x -- --repo || true)" ]; then set -- "$@" --repo "$root"; fi
# Line-buffered so FAIL lines show as they happen (stdbuf preloads a library: ASan must be told that is fine).
ASAN_OPTIONS=${ASAN_OPTIONS:-verify_asan_link_order=0} stdbuf -oL "$out/forward_emu" "$@"
