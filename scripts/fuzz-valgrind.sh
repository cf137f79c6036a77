#!/usr/bin/env bash
# Runs a small safetensors fuzz corpus (default 100 cases) through node under valgrind memcheck, covering the
# native mapFile / convertFloats paths the reader uses. Not part of CI (slow). Exit status 1 on any memory error.
# Usage: bash scripts/fuzz-valgrind.sh [cases] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
fi
[ -f packages/core/build/Release/streamline.node ] || pnpm run build:native
log=$(mktemp)
# V8 generates code at run time: --smc-check=all-non-file makes valgrind notice it. Children (tsx's esbuild
# service) are not traced; leaks are not checked (V8 keeps its heap until exit).
set +e
valgrind --error-exitcode=1 --smc-check=all-non-file --trace-children=no --leak-check=no --log-file="$log" \
  node --conditions=@streamline/source --import tsx scripts/fuzz-safetensors.ts "${1:-100}" "${2:-3}"
rc=$?
set -e
grep -E 'ERROR SUMMARY|Invalid (read|write)|uninitialised' "$log" | sort | uniq -c | head -20
echo "valgrind exit status: $rc (log: $log)"
exit $rc
