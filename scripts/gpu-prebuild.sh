#!/usr/bin/env bash
# Builds the CUDA harness and backend here (nvcc, no GPU needed) into .gpu/prebuilt/ so that scripts/gpu-check.sh on
# a lent GPU machine can skip its own build (~2.5 minutes of a 15-minute device budget). Carry `.gpu` to the device.
#
# .gpu/prebuilt/ holds streamline_cuda_check.gz and streamline_cuda.so.gz (stripped, gzip: the carry limit is 64 MiB
# with the demo model beside them), build-info.txt, and sources.sha256: every source file the build can read, with its hash.
# gpu-check.sh uses the binaries only when its copy of the tree has exactly those files with those hashes, so an
# edit made after this script ran means a fresh build there, never a stale binary.
#
# Environment: CUDA_ARCH (default 90a, as gpu-check.sh), JOBS (default nproc).
# The binaries need glibc >= this machine's and a driver for this nvcc's CUDA major version (statically linked cudart).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH="${CUDA_ARCH:-90a}"
DEST=.gpu/prebuilt
BUILD=build-gpu-prebuilt

command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || { echo "gpu-prebuild: no nvcc" >&2; exit 2; }
[ -n "${CUDACXX:-}" ] || command -v nvcc >/dev/null 2>&1 || export CUDACXX=/usr/local/cuda/bin/nvcc

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DSTREAMLINE_CUDA_CPU_TEST=OFF >/dev/null
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target streamline_cuda_check streamline_cuda
# The targets' output folder (the harness finds streamline_cuda.so beside itself).
CHECK=$(find "$BUILD" -name streamline_cuda_check -type f -perm -u+x | head -1)
LIB=$(dirname "$CHECK")/streamline_cuda.so
[ -x "$CHECK" ] && [ -f "$LIB" ] || { echo "gpu-prebuild: build produced no harness" >&2; exit 2; }

rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
for f in "$CHECK" "$LIB"; do
  strip -o "$DEST.tmp/$(basename "$f")" "$f"
  gzip -9 "$DEST.tmp/$(basename "$f")"
done
# Stamped: every file of the tree the build can read (tracked or new, not ignored): the CMake files, cuda/ and
# native/ but the CPU emulation and docs. Conservative: an edit to a binding file also means a fresh build there.
git ls-files --cached --others --exclude-standard CMakeLists.txt cuda native \
  | grep -vE '^cuda/dev/|\.md$' | sort -u | xargs sha256sum > "$DEST.tmp/sources.sha256"
{
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -n), commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' + local changes')"
  echo "arch $ARCH; $(nvcc --version 2>/dev/null | tail -1 || "$CUDACXX" --version | tail -1); $(ldd --version | head -1)"
} > "$DEST.tmp/build-info.txt"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
cat "$DEST/build-info.txt"
echo "gpu-prebuild: $(wc -l < "$DEST/sources.sha256") source files stamped; $(du -sh "$DEST" | cut -f1) in $DEST (carry \".gpu\")"
