#!/usr/bin/env bash
# Sets up a fresh clone: the pinned pnpm, OpenBLAS (Debian, when missing and we are root), the dependencies,
# the native addon (with the CUDA backend when nvcc exists) and the TypeScript build. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PNPM_VERSION=12.4.2

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "setup: installing pnpm@$PNPM_VERSION"
  npm i -g "pnpm@$PNPM_VERSION" >/dev/null
fi

# Build-time only: OpenBLAS (f32 GEMM, linked statically) and Eigen (headers, least-squares solve).
if { [ ! -f /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a ] || [ ! -d /usr/include/eigen3 ]; } \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing libopenblas-pthread-dev and libeigen3-dev"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopenblas-pthread-dev libeigen3-dev >/dev/null
fi

# Optional: qemu-user runs test/qemu-nehalem.test.ts (the addon on a CPU without AVX); the test skips without it.
if ! command -v qemu-x86_64 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing qemu-user (optional)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user; } >/dev/null 2>&1 \
    || echo "setup: qemu-user not installed; test/qemu-nehalem.test.ts will skip"
fi

echo "setup: installing dependencies"
pnpm install --frozen-lockfile --reporter=append-only 2>&1 | tail -n 3
echo "setup: building the native addon"
pnpm run build:native > /tmp/streamline-native-build.log 2>&1 || { cat /tmp/streamline-native-build.log; exit 1; }
grep -E 'streamline: ' /tmp/streamline-native-build.log | sed 's/^/  /' || true
echo "setup: building TypeScript"
pnpm exec tsc -b
echo "setup: done"
