# Rewrites a CUDA source for the CPU emulation (cuda_runtime.h here): kernel<<<grid, block, smem, stream>>>(args);
# becomes emu::Cfg(grid, block, smem, stream).kernel(&kernel).run([&] { kernel(args); }); (the kernel pointer lets a
# launch be refused like on the GPU, see Cfg), and `extern __shared__ [__align__(n)] T name[];` becomes a pointer to
# the block's dynamic shared memory. Usage: python3 rewrite.py IN OUT (OUT is left untouched when unchanged, so
# make-style rebuilds keep their objects).
import os
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
s = re.sub(r'([\w:]+(?:<[^<>;]*>)?)<<<(.*?)>>>\((.*?)\);',
           lambda m: 'emu::Cfg(%s).kernel(&%s).run([&] { %s(%s); });' % (m.group(2), m.group(1), m.group(1), m.group(3)),
           s, flags=re.S)
s = re.sub(r'extern __shared__ (?:__align__\(\d+\) )?((?:unsigned )?\w+) (\w+)\[\];', r'\1* \2 = emu::dyn_smem<\1>();', s)
if '<<<' in s or 'extern __shared__' in s:
    sys.exit('rewrite.py: a launch or extern __shared__ in %s was not rewritten' % src)
if not os.path.exists(dst) or open(dst).read() != s:
    open(dst, 'w').write(s)
