#!/usr/bin/env bash
# Installs the packed tarballs the way a user would and runs the CLI on a machine without build tools:
# pack (unless --no-pack), `npm install` the three tarballs into an empty directory (third-party dependencies
# from the registry or npm's cache), then, with a PATH holding only node/npm/npx and core utilities (no
# compiler, cmake or nvcc), run `streamline --help`, `info`, `inspect` and a short `score` on the demo model.
#   bash scripts/install-test.sh [--no-pack] [--full]   (--full: full prebuildify instead of --from-build)
# The model: ../shared/models/kjv-llama (or $STREAMLINE_SHARED/models/kjv-llama); without it, inspect and score
# are skipped with a message. Keeps the install directory when STREAMLINE_KEEP_INSTALL=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pack=1; pack_args=(--from-build)
for a in "$@"; do
  case "$a" in
    --no-pack) pack=0 ;;
    --full) pack_args=() ;;
    *) echo "install-test: unknown option $a" >&2; exit 2 ;;
  esac
done
t0=$(date +%s)
if [ "$pack" = 1 ]; then bash scripts/pack.sh "${pack_args[@]}"; fi
tarballs=("$root"/dist-packages/*.tgz)
[ -f "${tarballs[0]}" ] || { echo "install-test: no tarballs in dist-packages/" >&2; exit 1; }

work=$(mktemp -d /tmp/streamline-install.XXXXXX)
[ "${STREAMLINE_KEEP_INSTALL:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/app" "$work/bin"

# A PATH with node, npm, npx and the utilities npm's scripts and shims use, and nothing that builds code.
for tool in node npm npx sh bash env cat ls mkdir rm cp mv ln chmod dirname basename uname readlink realpath \
            head tail grep sed tr sort wc mktemp date true false test printf; do
  p=$(command -v "$tool" || true)
  if [ -n "$p" ]; then ln -s "$p" "$work/bin/$tool"; fi
done
export PATH="$work/bin"
for tool in cc gcc g++ c++ clang make cmake ninja nvcc python3; do
  if command -v "$tool" >/dev/null 2>&1; then echo "install-test: $tool is still on PATH" >&2; exit 1; fi
done

cd "$work/app"
printf '{ "name": "streamline-install-test", "version": "1.0.0", "private": true }\n' > package.json
t1=$(date +%s)
echo "install-test: npm install ${tarballs[*]##*/}"
npm install --no-audit --no-fund --prefer-offline --loglevel=error "${tarballs[@]}"
t2=$(date +%s)
# Nothing was built at install time: the addon is the prebuilt one.
[ ! -e node_modules/@streamline/core/build ] || { echo "install-test: a build/ folder appeared in @streamline/core" >&2; exit 1; }
ls node_modules/@streamline/core/prebuilds/linux-x64/

echo "install-test: npx streamline --help"
npx --no-install streamline --help > help.txt
grep -q 'Usage: streamline' help.txt && grep -q 'score' help.txt
echo "install-test: npx streamline info"
npx --no-install streamline info
# The CUDA backend is found next to the prebuilt addon (whatever the .node is called); without a GPU the reason
# then comes from the backend's own probe, not from dlopen.
if [ -f node_modules/@streamline/core/prebuilds/linux-x64/streamline_cuda.so ]; then
  npx --no-install streamline info --json > info.json
  node -e "const r = require('./info.json').cuda.reason; if (/backend library not available/.test(r)) { console.error('install-test: CUDA backend not found: ' + r); process.exit(1); }"
fi

shared=""
for d in "$root/../shared" "${STREAMLINE_SHARED:-}"; do
  if [ -n "$d" ] && [ -d "$d/models/kjv-llama" ]; then shared=$(cd "$d" && pwd); break; fi
done
if [ -z "$shared" ]; then
  echo "install-test: skip inspect and score: ../shared/models/kjv-llama not found"
else
  model="$shared/models/kjv-llama"
  echo "install-test: npx streamline inspect $model"
  npx --no-install streamline inspect "$model"
  echo "install-test: npx streamline score (2 samples x 64 tokens, n = 2)"
  npx --no-install streamline score "$model" --calib "$shared/data/kjv/train.jsonl" --samples 2 --seq-len 64 --n 2 \
    --quiet --json score.json
  node -e "const s = require('./score.json'); if (!s || typeof s !== 'object') process.exit(1); console.log('install-test: score.json has', Object.keys(s).join(', '))"
fi
t3=$(date +%s)
echo "install-test: ok (pack $((t1 - t0)) s, npm install $((t2 - t1)) s, commands $((t3 - t2)) s)"
