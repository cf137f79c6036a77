#!/usr/bin/env bash
# Prints the facts docs/building.md records about the shipped native files: size, glibc / libstdc++ floors,
# NEEDED libraries, exported symbols, and the functions outside OpenBLAS that contain VEX/AVX instructions
# (each must be a per-function target("avx2,...") fast path, reached only after the runtime CPU check).
#   bash scripts/native-facts.sh [DIR]   DIR: packages/core/prebuilds/linux-x64 (default) or a build/Release
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-packages/core/prebuilds/linux-x64}
max_version() { objdump -T "$1" | grep -o "$2[0-9.]*" | sort -uV | tail -1; }
for f in "$dir"/*.node "$dir"/*.so; do
  [ -f "$f" ] || continue
  echo "== $f"
  echo "size          $(stat -c %s "$f") bytes ($(file -b "$f" | grep -o 'not stripped\|stripped'))"
  echo "glibc floor   $(max_version "$f" GLIBC_) ($(objdump -T "$f" | grep "($(max_version "$f" GLIBC_))" | awk '{print $NF}' | sort -u | head -8 | tr '\n' ' '))"
  echo "GLIBCXX floor $(max_version "$f" GLIBCXX_ || true)"
  echo "CXXABI floor  $(max_version "$f" CXXABI_ || true)"
  echo "needed        $(readelf -d "$f" | awk '/NEEDED/ {gsub(/[][]/, "", $5); print $5}' | tr '\n' ' ')"
  echo "exports (T)   $(nm -D --defined-only "$f" | awk '$2 == "T" {print $3}' | tr '\n' ' ')"
  echo "exports (W/V/u, weak std:: template instances) $(nm -D --defined-only "$f" | awk '$2 != "T"' | wc -l)"
done
# No translation unit may be compiled for more than the baseline.
if [ -f packages/core/build/build.ninja ]; then
  n=$(grep -cE -- '-march|-mavx|-mfma|-mf16c|-mamx' packages/core/build/build.ninja || true)
  echo "== compile flags: $n ISA flags (-march/-mavx/-mfma/-mf16c/-mamx) in packages/core/build/build.ninja"
fi
# VEX-encoded instructions need symbols: use an unstripped build.
bin=packages/core/build/Release/streamline.node
blas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a
if [ -f "$bin" ] && file -b "$bin" | grep -q 'not stripped' && [ -f "$blas" ]; then
  nm --defined-only "$blas" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u > /tmp/streamline-openblas.syms
  objdump -d --no-show-raw-insn -C "$bin" | awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
    /\t(v[a-z0-9]+|kmov[a-z]*|andn|bextr|bzhi|sarx|shlx|shrx|pdep|pext|mulx|rorx)[ \t]/ || /%[yz]mm/ { if (!(fn in seen)) { seen[fn] = 1; print fn } }' \
    | sort -u > /tmp/streamline-vex.fns
  total=$(wc -l < /tmp/streamline-vex.fns)
  comm -23 /tmp/streamline-vex.fns /tmp/streamline-openblas.syms > /tmp/streamline-vex-ours.fns
  echo "== VEX/AVX code in $bin: $total functions, $((total - $(wc -l < /tmp/streamline-vex-ours.fns))) of them OpenBLAS kernels (DYNAMIC_ARCH), ours:"
  sed 's/^/  /' /tmp/streamline-vex-ours.fns
fi
