#!/usr/bin/env bash
# Runs the training-step checks (cuda/tests/train_check.cpp: run_train_step_checks, unchanged) against TrainStep and
# every kernel it launches emulated on the CPU: the backward kernels and optimiser (as run.sh does), and the forward
# kernels, the GEMM fallback and replacement.cu. Not emulated: cuBLASLt (the fallback GEMM runs instead) and the
# tensor-core attention forward, replaced by the harness's CPU reference on the same bf16 rows (attention_forward_bf16
# below), so this checks TrainStep's data flow, indexing, saved activations, masks and accumulation, not those two.
# Needs build-cu/libstreamline_core.a (the CUDA harness build) and g++ with C++20.
# Usage: bash cuda/dev/emu/train.sh [--curves [MODEL_DIR]]   (from the repository root; minutes: a thread per CUDA
# thread). --curves adds the loss-curve checks (30-step runs; the real window with a model directory): much longer.
set -euo pipefail
root=$(pwd)
out=${EMU_OUT:-$root/build-emu-train}
mkdir -p "$out"
here=$root/cuda/dev/emu
for f in backward_norm backward_elementwise backward_attention backward_attention_tc optimizer norm rope activation gemm \
         replacement; do
  python3 - "$root/cuda/$f.cu" "$out/$f.cpp" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'([\w:]+(?:<[^<>;]*>)?)<<<(.*?)>>>\((.*?)\);',
           lambda m: 'emu::Cfg(%s).run([&] { %s(%s); });' % (m.group(2), m.group(1), m.group(3)), s, flags=re.S)
s = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = emu::dyn_smem<\1>();', s)
import os
if not os.path.exists(sys.argv[2]) or open(sys.argv[2]).read() != s:  # unchanged sources keep their objects
    open(sys.argv[2], 'w').write(s)
PY
done
# Headers beside the rewritten sources, so their "common.cuh" resolves to the emulated one (cuda/dev/emu).
for h in backward.cuh attention.cuh norm.cuh rope.cuh activation.cuh gemm.cuh replacement.cuh cublaslt_loader.h \
         decoder_layer.cuh cosine.cuh streamline_cuda.h; do
  cmp -s "$root/cuda/$h" "$out/$h" || cp "$root/cuda/$h" "$out/"
done
rm -f "$out/common.cuh"
# The device helpers of the real common.cuh (weight loads, conversions, reductions).
python3 - "$root/cuda/common.cuh" "$out/common_device.inc" <<'PY'
import sys
s = open(sys.argv[1]).read()
i = s.index('// Weight element i as f32')
j = s.index('\n}\n', s.index('T block_sum', i)) + 3
open(sys.argv[2], 'w').write(s[i:j])
PY
cat > "$out/stubs.cpp" <<'CPP'
// cuBLASLt is never loaded (the GEMMs take the fallback kernel); the bf16 attention forward is the harness's CPU
// reference on the same bf16 rows, output rounded to bf16 once.
#include <vector>
#include "attention.cuh"
#include "cpu_ref.h"
#include "cublaslt_loader.h"
namespace streamline { namespace cuda {
namespace lt {
const Api* api() { return nullptr; }
const std::string& reason() { static const std::string r = "not loaded in the CPU emulation"; return r; }
}
void attention_forward_bf16(bf16* out, size_t out_stride, float* lse, const bf16* q, size_t q_stride, const bf16* k,
                            const bf16* v, size_t kv_stride, const uint8_t* mask, size_t B, size_t T, size_t H,
                            size_t Hk, size_t Dh, float scale, cudaStream_t) {
  const size_t M = B * T, Q = H * Dh, KV = Hk * Dh;
  std::vector<float> qf(M * Q), kf(M * KV), vf(M * KV), of(M * Q);
  for (size_t m = 0; m < M; m++) {
    for (size_t i = 0; i < Q; i++) qf[m * Q + i] = streamline::bf16_to_f32(q[m * q_stride + i]);
    for (size_t i = 0; i < KV; i++) {
      kf[m * KV + i] = streamline::bf16_to_f32(k[m * kv_stride + i]);
      vf[m * KV + i] = streamline::bf16_to_f32(v[m * kv_stride + i]);
    }
  }
  harness::ref::attention_forward(of.data(), Q, lse, qf.data(), Q, kf.data(), vf.data(), KV, mask, B, T, H, Hk, Dh, scale);
  for (size_t m = 0; m < M; m++)
    for (size_t i = 0; i < Q; i++) out[m * out_stride + i] = streamline::f32_to_bf16(of[m * Q + i]);
}
}}
CPP
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
flags=(-std=c++20 -O2 -g -ffp-contract=off -pthread -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -Wno-unused-function -include "$here/train_extra.h" -I"$here" -I"$out" -I"$root/native/include"
       -I"$root/cuda/tests" -idirafter /usr/local/cuda/include)
srcs=("$out"/backward_norm.cpp "$out"/backward_elementwise.cpp "$out"/backward_attention.cpp
      "$out"/backward_attention_tc.cpp "$out"/optimizer.cpp
      "$out"/norm.cpp "$out"/rope.cpp "$out"/activation.cpp "$out"/gemm.cpp "$out"/replacement.cpp "$out"/stubs.cpp
      "$out"/main.cpp "$root"/cuda/tests/train_check.cpp "$root"/cuda/tests/train_util.cpp
      "$root"/cuda/tests/train_real.cpp "$root"/cuda/tests/harness.cpp "$root"/cuda/tests/cpu_ref.cpp
      "$root"/cuda/tests/layer_util.cpp "$root"/cuda/tests/safetensors.cpp)
objs=()
for s in "${srcs[@]}"; do
  o="$out/$(basename "$s" .cpp).o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then g++ "${flags[@]}" -c "$s" -o "$o"; fi
  objs+=("$o")
done
blas=$(ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a 2>/dev/null || true)
g++ -pthread "${objs[@]}" "$root/build-cu/libstreamline_core.a" -o "$out/train_emu" $blas -ldl
"$out/train_emu" "$@"
