// Runs one forward pass of the llama-gqa fixture (3 layers, GQA, RoPE, f32) through the BUILT @streamline/core
// (packages/core/dist, plain JS: fast to start under qemu) and writes the kernel level, OpenBLAS core and logits
// as JSON to argv[2]. The addon is whatever node-gyp-build finds (build/Release, then prebuilds/linux-x64) or
// STREAMLINE_NATIVE_PATH. Used by test/qemu-nehalem.test.ts, natively and under qemu-x86_64 -cpu Nehalem.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const core = await import(pathToFileURL(path.join(repoRoot, 'packages', 'core', 'dist', 'index.js')).href);
const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'llama-gqa'));
// Two right-padded sequences of different lengths: masking, GQA attention, RoPE, RMSNorm, SwiGLU MLP, head GEMM.
const seqs = [
  Int32Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 128),
  Int32Array.from({ length: 17 }, (_, i) => (i * 11 + 90) % 128),
];
const r = await core.forwardDescription(model.description, seqs, { logits: true, boundaries: [1] });
const info = core.runtimeInfo();
const coreDir = path.join(repoRoot, 'packages', 'core');
const { createRequire } = await import('node:module');
const addon = process.env.STREAMLINE_NATIVE_PATH
  ? path.resolve(process.env.STREAMLINE_NATIVE_PATH)
  : createRequire(path.join(coreDir, 'package.json'))('node-gyp-build').resolve(coreDir);
writeFileSync(process.argv[2], JSON.stringify({
  addon,
  level: info.cpu.level,
  detected: info.cpu.detected,
  blas: info.cpu.blas,
  blasCore: info.cpu.blasCore,
  mask: Array.from(r.mask),
  logits: Array.from(r.logits),
  hidden1: Array.from(r.hidden.get(1)),
}));
