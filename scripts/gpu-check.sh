#!/usr/bin/env bash
# One command for a GPU machine (CUDA, CMake, ninja, Python with PyTorch; no Node.js needed):
# builds the core, the CUDA backend and the harness with plain CMake, runs every CUDA check and the GPU
# benchmarks (streamline_cuda_check, training step included), runs the PyTorch baselines on the same card
# (scripts/bench/torch_gpu_layer.py, scripts/bench/torch_gpu_train_step.py) and prints a side-by-side table. Results go to $OUT when set (else ./gpu-check-out): logs, JSON, summary.md.
#
# Environment: CUDA_ARCH (default 90a: sm_90a code for H100/H200), STREAMLINE_CUBLASLT (path of libcublasLt.so.*;
# found automatically in the CUDA toolkit or PyTorch's nvidia wheels), STREAMLINE_MODEL_DIR (a Llama checkpoint for
# the model-level scoring check; default: shared/models/kjv-llama or ../shared/models/kjv-llama when present),
# QUICK=1 (smaller sizes), PREBUILT=0 (build here even when .gpu/prebuilt matches), SANITIZE=1 (also run the op checks under compute-sanitizer memcheck and racecheck).
# Exit status: 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUTDIR="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUTDIR"
START=$(date +%s)
log() { echo "[gpu-check +$(( $(date +%s) - START ))s] $*"; }

ARCH="${CUDA_ARCH:-90a}"
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi

# libcublasLt: the toolkit's, else the one PyTorch ships (nvidia-cublas wheel).
if [ -z "${STREAMLINE_CUBLASLT:-}" ]; then
  for c in /usr/local/cuda/lib64/libcublasLt.so.13 /usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so.13 \
           /usr/local/cuda/lib64/libcublasLt.so.12; do
    if [ -e "$c" ]; then STREAMLINE_CUBLASLT=$c; break; fi
  done
fi
if [ -z "${STREAMLINE_CUBLASLT:-}" ] && command -v python3 >/dev/null 2>&1; then
  STREAMLINE_CUBLASLT=$(python3 - <<'PY' 2>/dev/null
import glob, os, sys
for p in sys.path:
    for pat in ("nvidia/cu13/lib/libcublasLt.so.13", "nvidia/cublas/lib/libcublasLt.so.13", "nvidia/cublas/lib/libcublasLt.so.12"):
        m = glob.glob(os.path.join(p, pat))
        if m:
            print(m[0]); sys.exit(0)
PY
)
fi
if [ -n "${STREAMLINE_CUBLASLT:-}" ]; then
  export STREAMLINE_CUBLASLT
  # Its own dependencies (libcublas.so next to it) resolve through the same folder.
  export LD_LIBRARY_PATH="$(dirname "$STREAMLINE_CUBLASLT")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "cuBLASLt: $STREAMLINE_CUBLASLT"
else
  log "cuBLASLt: not found (the harness reports it and skips the cuBLASLt paths)"
fi

MODEL="${STREAMLINE_MODEL_DIR:-}"
if [ -z "$MODEL" ]; then
  for c in "$ROOT/shared/models/kjv-llama" "$ROOT/../shared/models/kjv-llama" "$ROOT/.gpu/kjv-llama"; do
    if [ -f "$c/config.json" ]; then MODEL=$c; break; fi
  done
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1; nvcc --version 2>&1 | tail -2; } \
  > "$OUTDIR/machine.txt"
cat "$OUTDIR/machine.txt"

# Binaries from scripts/gpu-prebuild.sh (.gpu/prebuilt, built elsewhere with the same nvcc) are used only when this
# tree has exactly the files they were built from, with the same hashes; otherwise, or with PREBUILT=0, build here.
PRE=.gpu/prebuilt
prebuilt_matches() {
  [ "${PREBUILT:-1}" != 0 ] && [ -f "$PRE/sources.sha256" ] && [ -f "$PRE/streamline_cuda_check.gz" ] || return 1
  grep -q "arch $ARCH;" "$PRE/build-info.txt" 2>/dev/null || { log "prebuilt: built for another arch"; return 1; }
  sha256sum -c --quiet "$PRE/sources.sha256" > "$OUTDIR/prebuilt-verify.log" 2>&1 \
    || { log "prebuilt: sources changed since it was built ($(grep -c . "$OUTDIR/prebuilt-verify.log") lines in prebuilt-verify.log)"; return 1; }
  local now; now=$(find CMakeLists.txt cuda native -type f ! -path 'cuda/dev/*' ! -name '*.md' | sort)
  [ "$now" = "$(awk '{print $2}' "$PRE/sources.sha256" | sort)" ] || { log "prebuilt: the tree has files it was not built from"; return 1; }
}
if prebuilt_matches; then
  BIN=build-gpu-prebuilt-bin
  rm -rf "$BIN" && mkdir -p "$BIN"
  for f in streamline_cuda_check streamline_cuda.so; do gunzip -c "$PRE/$f.gz" > "$BIN/$f"; done
  chmod +x "$BIN/streamline_cuda_check"
  log "using the prebuilt harness: $(head -1 "$PRE/build-info.txt")"
  cp "$PRE/build-info.txt" "$OUTDIR/prebuilt-info.txt"
else
  BIN=build-gpu
  log "configure (CUDA arch $ARCH)"
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" > "$OUTDIR/configure.log" 2>&1 \
    || { cat "$OUTDIR/configure.log"; log "configure failed"; exit 2; }
  grep -E "streamline: " "$OUTDIR/configure.log"
  log "build"
  cmake --build build-gpu -j "$(nproc)" > "$OUTDIR/build.log" 2>&1 || { tail -60 "$OUTDIR/build.log"; log "build failed"; exit 2; }
  grep -iE "warning" "$OUTDIR/build.log" | head -20
fi
CHECK=$BIN/streamline_cuda_check
[ -x "$CHECK" ] || { log "no $CHECK (was a CUDA compiler found?)"; exit 2; }
if command -v cuobjdump >/dev/null 2>&1; then
  { echo "tensor-core instructions in streamline_cuda.so:"; cuobjdump --dump-sass "$BIN/streamline_cuda.so" 2>/dev/null \
      | grep -oE "\b(HMMA|HGMMA|QGMMA|IMMA)\b[.A-Z0-9]*" | sort | uniq -c; } > "$OUTDIR/sass-summary.txt" 2>&1
  cat "$OUTDIR/sass-summary.txt"
fi

QFLAG=""
[ "${QUICK:-0}" = 1 ] && QFLAG="--quick"
log "streamline_cuda_check ${MODEL:+(model $MODEL)}"
"$CHECK" --cpu-selftest $QFLAG --json "$OUTDIR/cuda_check.json" --repo "$ROOT" ${MODEL:+--model "$MODEL"} 2>&1 | tee "$OUTDIR/cuda_check.log"
STATUS=${PIPESTATUS[0]}

if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null 2>&1; then
  # Memory and race checks of the op sweeps (slow: quick sizes, no benchmarks).
  for tool in memcheck racecheck; do
    for grp in ops backward; do
      log "compute-sanitizer --tool $tool ($grp, quick)"
      compute-sanitizer --tool "$tool" --error-exitcode 3 "$CHECK" --quick --only "$grp" --no-bench \
        --json "$OUTDIR/sanitize_${tool}_$grp.json" > "$OUTDIR/sanitize_${tool}_$grp.log" 2>&1
      rc=$?
      tail -5 "$OUTDIR/sanitize_${tool}_$grp.log"
      [ $rc -ne 0 ] && STATUS=$rc
    done
  done
fi

log "PyTorch baselines"
if python3 -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then
  PYTHONUNBUFFERED=1 python3 scripts/bench/torch_gpu_layer.py $QFLAG --json "$OUTDIR/torch_gpu_layer.json" 2>&1 | tee "$OUTDIR/torch.log"
  log "PyTorch training step"
  PYTHONUNBUFFERED=1 python3 scripts/bench/torch_gpu_train_step.py $QFLAG --json "$OUTDIR/torch_gpu_train_step.json" 2>&1 \
    | tee "$OUTDIR/torch_train.log"
  [ -f "$OUTDIR/torch_gpu_train_step.json" ] || echo '{"bench": []}' > "$OUTDIR/torch_gpu_train_step.json"
else
  log "PyTorch with CUDA not available: no baseline"
  echo '{"bench": []}' > "$OUTDIR/torch_gpu_layer.json"
  echo '{"bench": []}' > "$OUTDIR/torch_gpu_train_step.json"
fi

log "summary"
if [ -f "$OUTDIR/cuda_check.json" ]; then
  TJ=("$OUTDIR/cuda_check.json" "$OUTDIR/torch_gpu_layer.json" "$OUTDIR/torch_gpu_train_step.json")
  python3 scripts/bench/compare_gpu.py "${TJ[@]}" --markdown > "$OUTDIR/summary.md"
  python3 scripts/bench/compare_gpu.py "${TJ[@]}"
fi
log "done (checks exit status $STATUS); results in $OUTDIR"
exit "$STATUS"
