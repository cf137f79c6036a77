# Rewrites a CUDA source for the CPU emulation (cuda_runtime.h here): kernel<<<grid, block, smem, stream>>>(args);
# becomes emu::Cfg(grid, block, smem, stream).kernel(&kernel).run([&] { kernel(args); }); (the kernel pointer lets a
# launch be refused like on the GPU, see Cfg), `extern __shared__ [__align__(n)] T name[];` becomes a pointer to
# the block's dynamic shared memory, and `__shared__ T name[N]...;` a reference to a per-block array (block_shared). Usage: python3 rewrite.py IN OUT (OUT is left untouched when unchanged, so
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
# Static shared arrays: per block, NaN-filled at the block's start (a read of an unwritten element is garbage, as on
# the GPU), keyed by a static tag per declaration (and per template instantiation).
s = re.sub(r'__shared__ ((?:unsigned |long )*\w+) (\w+)((?:\[[^\]]+\])*);',
           r'static char \2_emu_site; auto& \2 = emu::block_shared<\1\3>(&\2_emu_site);', s)
if '<<<' in s or '__shared__' in s:
    sys.exit('rewrite.py: a launch or __shared__ declaration in %s was not rewritten' % src)
if not os.path.exists(dst) or open(dst).read() != s:
    open(dst, 'w').write(s)
