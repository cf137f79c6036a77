# Sourced by run.sh, train.sh and forward.sh (after setting root, here and out): the one preparation step of every
# emulation build. emu_kernels lists the CUDA sources to compile, found from the directory so a new kernel file is
# picked up by all three (a hand-kept list per script once missed one and failed to link); common.cu (device queries)
# and probe.cu (the driver probe) have emulated stand-ins instead. emu_prepare writes into $out the rewritten kernels
# (rewrite.py), the real headers beside them (so their "common.cuh" resolves to the emulated one here) and the device
# helpers of the real common.cuh (weight loads, conversions, reductions) as common_device.inc. Unchanged files are
# left untouched, so make-style rebuilds keep their objects.
emu_kernels=()
for f in "$root"/cuda/*.cu; do
  name=$(basename "$f" .cu)
  case "$name" in common | probe) ;; *) emu_kernels+=("$name") ;; esac
done

emu_prepare() {
  local f h
  for f in "${emu_kernels[@]}"; do python3 "$here/rewrite.py" "$root/cuda/$f.cu" "$out/$f.cpp"; done
  for h in "$root"/cuda/*.cuh "$root"/cuda/*.h; do
    [ "$(basename "$h")" = common.cuh ] && continue
    cmp -s "$h" "$out/$(basename "$h")" || cp "$h" "$out/"
  done
  rm -f "$out/common.cuh"
  python3 - "$root/cuda/common.cuh" "$out/common_device.inc" <<'PY'
import os, sys
s = open(sys.argv[1]).read()
i = s.index('// Weight element i as f32')
j = s.index('\n}\n', s.index('T block_sum', i)) + 3
if not os.path.exists(sys.argv[2]) or open(sys.argv[2]).read() != s[i:j]:
    open(sys.argv[2], 'w').write(s[i:j])
PY
}
