#!/usr/bin/env bash
# Packs @streamline/core, @streamline/eval and @streamline/cli into dist-packages/*.tgz, as they would be published:
# TypeScript build, the prebuilt addon (prebuilds/linux-x64: stripped .node + streamline_cuda.so), the native sources
# for an on-request source build, and `workspace:*` turned into real versions (pnpm pack does that).
#   bash scripts/pack.sh               full prebuild: `pnpm run prebuildify` (cmake-js rebuild, several minutes)
#   bash scripts/pack.sh --from-build  prebuild from the existing packages/core/build/Release (pnpm run build:native)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
from_build=0
for a in "$@"; do
  case "$a" in
    --from-build) from_build=1 ;;
    *) echo "pack: unknown option $a" >&2; exit 2 ;;
  esac
done

echo "pack: building TypeScript"
pnpm exec tsc -b
if [ "$from_build" = 1 ]; then
  if [ ! -f packages/core/build/Release/streamline.node ]; then
    echo "pack: building the native addon"
    pnpm run build:native > /tmp/streamline-pack-native.log 2>&1 || { cat /tmp/streamline-pack-native.log; exit 1; }
  fi
  node scripts/prebuildify.mjs --from-build
else
  pnpm run prebuildify
fi

# Native sources for build-from-source.cjs, staged into the core package only while packing (gitignored).
core=packages/core
staged=("$core/CMakeLists.txt" "$core/native" "$core/cuda")
cleanup() { rm -rf "${staged[@]}"; }
trap cleanup EXIT
cleanup
cp CMakeLists.txt "$core/"
mkdir -p "$core/native" "$core/cuda"
cp -r native/include native/src native/binding "$core/native/"
find cuda -maxdepth 1 -type f \( -name '*.cu' -o -name '*.cpp' -o -name '*.h' -o -name '*.cuh' \) -exec cp {} "$core/cuda/" \;

rm -rf dist-packages
mkdir -p dist-packages
for p in core eval cli; do
  (cd "packages/$p" && pnpm pack --pack-destination "$root/dist-packages" >/dev/null)
done
for f in dist-packages/*.tgz; do
  printf 'pack: %s %s\n' "$f" "$(du -h "$f" | cut -f1)"
done
