#!/usr/bin/env bash
# Runs the backward harness (cuda/tests/backward_check.cpp, unchanged) against the backward kernels emulated on the
# CPU (cuda_runtime.h here). Needs build-cu/libstreamline_core.a (the CUDA harness build) and g++ with C++20.
# Usage: bash cuda/dev/emu/run.sh [--quick]   (from the repository root; takes minutes: a thread per CUDA thread)
set -euo pipefail
root=$(pwd)
out=${EMU_OUT:-$root/build/emu}  # build/ is ignored by git
mkdir -p "$out"
here=$root/cuda/dev/emu
# Kernel launches become emulator calls; `extern __shared__` becomes the block's buffer.
for f in backward_norm backward_elementwise backward_attention backward_attention_tc optimizer; do
  python3 - "$root/cuda/$f.cu" "$out/$f.cpp" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'([\w:]+(?:<[^<>;]*>)?)<<<(.*?)>>>\((.*?)\);',
           lambda m: 'emu::Cfg(%s).run([&] { %s(%s); });' % (m.group(2), m.group(1), m.group(3)), s, flags=re.S)
s = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = emu::dyn_smem<\1>();', s)
open(sys.argv[2], 'w').write(s)
PY
done
cp "$root/cuda/backward.cuh" "$root/cuda/attention.cuh" "$out/"
rm -f "$out/common.cuh"
# The device reductions of the real common.cuh (warp_sum, nan_max, warp_max, block_sum).
python3 - "$root/cuda/common.cuh" "$out/common_device.inc" <<'PY'
import sys
s = open(sys.argv[1]).read()
i = s.index('template <typename T> __device__ __forceinline__ T warp_sum')
j = s.index('\n}\n', s.index('T block_sum', i)) + 3
open(sys.argv[2], 'w').write(s[i:j])
PY
cat > "$out/stubs.cpp" <<'CPP'
// The forward attention is only used by the benchmarks, which the emulation does not run.
#include "attention.cuh"
namespace streamline { namespace cuda {
void attention_forward(float*, float*, const float*, const float*, const float*, const uint8_t*, size_t, size_t,
                       size_t, size_t, size_t, float, cudaStream_t) { throw CudaError("not emulated"); }
}}
CPP
cat > "$out/main.cpp" <<'CPP'
#include <cstring>
#include "harness.h"
namespace emu { extern unsigned long long g_blocks; }
int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  harness::run_backward_checks(quick);
  int passed = 0, failed = 0;
  for (const auto& r : harness::results()) {
    (r.ok ? passed : failed)++;
    std::printf("%-14s %-78s %10.3g %10.3g  %s %s\n", r.group.c_str(), r.name.c_str(), r.err, r.tol,
                r.ok ? "ok" : "FAIL", r.ok ? "" : r.note.c_str());
  }
  std::printf("\nemulated: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
CPP
flags=(-std=c++20 -O2 -g -ffp-contract=off -pthread -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -include "$here/train_extra.h" -I"$here"
       -I"$out" -I"$root/native/include" -I"$root/cuda/tests")
srcs=("$out"/backward_norm.cpp "$out"/backward_elementwise.cpp "$out"/backward_attention.cpp
      "$out"/backward_attention_tc.cpp "$out"/optimizer.cpp
      "$out"/stubs.cpp "$out"/main.cpp "$root"/cuda/tests/backward_check.cpp "$root"/cuda/tests/harness.cpp)
objs=()
for s in "${srcs[@]}"; do
  o="$out/$(basename "$s" .cpp).o"
  g++ "${flags[@]}" -c "$s" -o "$o"
  objs+=("$o")
done
g++ -pthread "${objs[@]}" "$root/build-cu/libstreamline_core.a" -o "$out/backward_emu" \
  $(ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a 2>/dev/null) -lgfortran -ldl 2>/dev/null ||
  g++ -pthread "${objs[@]}" "$root/build-cu/libstreamline_core.a" -o "$out/backward_emu" -ldl
"$out/backward_emu" "$@"
