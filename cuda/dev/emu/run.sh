#!/usr/bin/env bash
# Runs the backward harness (cuda/tests/backward_check.cpp, unchanged) against the backward kernels emulated on the
# CPU (cuda_runtime.h here). Needs build-cu/libstreamline_core.a (the CUDA harness build) and g++ with C++20.
# Usage: bash cuda/dev/emu/run.sh [--quick]   (from the repository root; quick ~2 minutes here)
set -euo pipefail
root=$(pwd)
out=${EMU_OUT:-$root/build/emu}  # build/ is ignored by git
mkdir -p "$out"
here=$root/cuda/dev/emu
source "$here/prepare.sh"
emu_prepare
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
flags=(-std=c++20 -O2 -g -ffp-contract=off -fno-strict-aliasing -pthread -Wall -Wno-unknown-pragmas -Wno-unused-parameter
       -Wno-unused-function -include "$here/train_extra.h" -I"$here" -I"$out" -I"$root/native/include"
       -I"$root/cuda/tests" -idirafter /usr/local/cuda/include)
srcs=()
for f in "${emu_kernels[@]}"; do srcs+=("$out/$f.cpp"); done
srcs+=("$here"/lt_stub.cpp "$out"/main.cpp "$root"/cuda/tests/backward_check.cpp "$root"/cuda/tests/harness.cpp)
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
