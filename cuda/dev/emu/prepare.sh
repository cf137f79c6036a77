# Sourced by run.sh, train.sh and forward.sh: the CUDA sources every emulation build compiles, found from the
# directory so a new kernel file is picked up by all three (a hand-kept list per script once missed one and failed to
# link). common.cu (device queries) and probe.cu (the driver probe) have emulated stand-ins instead.
emu_kernels=()
for f in "$root"/cuda/*.cu; do
  name=$(basename "$f" .cu)
  case "$name" in common | probe) ;; *) emu_kernels+=("$name") ;; esac
done
