#!/usr/bin/env node
// One Llama-3.2-1B-shaped decoder layer (hidden 2048, intermediate 8192, 32 heads, 8 KV heads, head_dim 64,
// bf16 weights, batch 1 x 2048 tokens) through the native decoderLayerForward: a warm-up run, then --reps
// timed runs; prints per-run lines and, as its LAST line, one JSON object:
//   {"bench":"forward-layer","impl":"streamline","tokens":T,"batch":B,"threads":N,"seconds":best,
//    "tokens_per_s":..,"gflops":..,"runs":[...]}
// GFLOP counts 2·M·N·K for the seven linear layers plus 4·H·Dh·T(T+1)/2 per sequence for causal attention.
// Usage: node scripts/bench/forward-layer.mjs [--tokens 2048] [--batch 1] [--reps 3]
// Threads: STREAMLINE_NUM_THREADS (default: all cores); OpenBLAS follows OPENBLAS_NUM_THREADS.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const T = opt('tokens', 2048), B = opt('batch', 1), reps = opt('reps', 3);

// Same OpenBLAS core-type choice as packages/core/src/native.ts (0.3.21 misdetects recent CPUs).
if (process.env.OPENBLAS_CORETYPE === undefined) {
  const flags = (readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '').split(/\s+/);
  if (flags.includes('avx512f') && flags.includes('avx512bw')) process.env.OPENBLAS_CORETYPE = 'SkylakeX';
  else if (flags.includes('avx2')) process.env.OPENBLAS_CORETYPE = 'Haswell';
}
const require = createRequire(import.meta.url);
const n = require(process.env.STREAMLINE_NATIVE_PATH ?? path.join(root, 'packages/core/build/Release/streamline.node'));

const D = 2048, F = 8192, H = 32, Hk = 8, Dh = 64, M = B * T;
const spec = {
  batch: B, seqLen: T, hidden: D, heads: H, kvHeads: Hk, headDim: Dh, intermediate: F, norm: 'rms', normEps: 1e-5,
  activation: 'silu', gatedMlp: true, preNorm: true, useRope: true, ropeAttentionScaling: 1,
};

// Seeded xorshift; bf16 weights uniform in ±scale (scale ~ 1/sqrt(fan_in) keeps activations O(1)).
let seed = 0x9e3779b9;
const rand = () => {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296 - 0.5;
};
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function bf16(shape, scale, offset = 0) {
  const numel = shape.reduce((a, b) => a * b, 1);
  const h = new Uint16Array(numel);
  for (let i = 0; i < numel; i++) {
    f32[0] = offset + 2 * scale * rand();
    h[i] = (u32[0] + 0x7fff + ((u32[0] >>> 16) & 1)) >>> 16;
  }
  return { data: h, dtype: 'bf16', shape };
}
const weights = {
  'attn_norm.weight': bf16([D], 0.1, 1), 'mlp_norm.weight': bf16([D], 0.1, 1),
  'q.weight': bf16([H * Dh, D], 1 / Math.sqrt(D)), 'k.weight': bf16([Hk * Dh, D], 1 / Math.sqrt(D)),
  'v.weight': bf16([Hk * Dh, D], 1 / Math.sqrt(D)), 'o.weight': bf16([D, H * Dh], 1 / Math.sqrt(D)),
  'gate.weight': bf16([F, D], 1 / Math.sqrt(D)), 'up.weight': bf16([F, D], 1 / Math.sqrt(D)),
  'down.weight': bf16([D, F], 1 / Math.sqrt(F)),
};
const x = new Float32Array(M * D).map(() => 2 * rand());
const out = new Float32Array(M * D);
const positions = new Int32Array(M).map((_, i) => i % T);
const invFreq = new Float32Array(Dh / 2).map((_, i) => Math.fround(1 / 500000 ** ((2 * i) / Dh)));

const linearFlop = 2 * M * D * (H * Dh + 2 * Hk * Dh + H * Dh + 3 * F);
const attnFlop = B * 4 * H * Dh * (T * (T + 1)) / 2;
const flop = linearFlop + attnFlop;

const run = async () => {
  const t0 = process.hrtime.bigint();
  await n.decoderLayerForward(out, x, spec, weights, positions, null, invFreq, null);
  return Number(process.hrtime.bigint() - t0) / 1e9;
};
const warm = await run();
console.log(`warm-up: ${warm.toFixed(3)} s`);
const runs = [];
for (let r = 0; r < reps; r++) {
  const s = await run();
  runs.push(s);
  console.log(`run ${r + 1}: ${s.toFixed(3)} s  ${(M / s).toFixed(1)} tokens/s  ${(flop / s / 1e9).toFixed(1)} GFLOP/s`);
}
for (let i = 0; i < out.length; i += 4099)
  if (!Number.isFinite(out[i])) throw new Error(`non-finite output at ${i}`);
const best = Math.min(...runs);
console.log(JSON.stringify({
  bench: 'forward-layer', impl: 'streamline', tokens: T, batch: B, threads: n.cpuInfo().threads, level: n.cpuInfo().level,
  seconds: Number(best.toFixed(4)), tokens_per_s: Number((M / best).toFixed(1)), tokensPerSec: Number((M / best).toFixed(1)), gflops: Number((flop / best / 1e9).toFixed(1)),
  gflop_per_run: Number((flop / 1e9).toFixed(1)), runs: runs.map((s) => Number(s.toFixed(4))),
}));
