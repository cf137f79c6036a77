#!/usr/bin/env node
// Our side of `pnpm bench train`: one optimiser step of a Llama-3.2-1B-shaped replacement on 1 x 2048 tokens,
// the same work as torch_train_step.py: `mlp` (y = x + SwiGLU MLP(RMSNorm(x)), hidden 2048, intermediate 8192) and
// `layer` (one decoder layer, 32 heads, 8 KV heads, head_dim 64, causal, RoPE theta 500000) with f32 master
// weights; a step = forward with saved activations + MSE + backward (replacementStep), global gradient clipping
// to norm 5 (clipGradNorm) and AdamW (lr 2e-4, weight decay 1e-3). One warm-up step, then --repeats timed
// steps; the fastest counts. Prints one JSON line: {"bench": "train-step", "tokens", "mlp": {"seconds",
// "tokensPerSec"}, "layer": {...}, "threads"}.
// Usage: node scripts/bench/train-step.mjs [--threads N] [--repeats R] [--tokens T]
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return dflt;
  const v = args[i].includes('=') ? args[i].split('=')[1] : args[i + 1];
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
};
const threads = opt('threads', 2), repeats = opt('repeats', 2), T = opt('tokens', 2048);
// Before the addon (and OpenBLAS inside it) initialises.
process.env.STREAMLINE_NUM_THREADS = String(threads);
process.env.OPENBLAS_NUM_THREADS = String(threads);
if (process.env.OPENBLAS_CORETYPE === undefined && /\bavx2\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8')))
  process.env.OPENBLAS_CORETYPE = 'Haswell'; // as packages/core/src/native.ts does
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, 'packages', 'core', 'package.json')); // node-gyp-build is core's dependency
const n = process.env.STREAMLINE_NATIVE_PATH
  ? require(path.resolve(process.env.STREAMLINE_NATIVE_PATH))
  : require('node-gyp-build')(path.join(root, 'packages', 'core'));

const D = 2048, F = 8192, H = 32, Hk = 8, Dh = 64;
let s = 12345;
const uniform = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return (s + 0.5) / 4294967296; };
const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
const randn = (len, scale) => { const a = new Float32Array(len); for (let i = 0; i < len; i++) a[i] = normal() * scale; return a; };

const shapes = {
  'attn_norm.weight': [D], 'q.weight': [H * Dh, D], 'k.weight': [Hk * Dh, D], 'v.weight': [Hk * Dh, D], 'o.weight': [D, H * Dh],
  'mlp_norm.weight': [D], 'gate.weight': [F, D], 'up.weight': [F, D], 'down.weight': [D, F],
};
const spec = {
  batch: 1, seqLen: T, hidden: D, heads: H, kvHeads: Hk, headDim: Dh, intermediate: F, norm: 'rms', normEps: 1e-5,
  activation: 'silu', gatedMlp: true, preNorm: true, useRope: true, attnScale: 0, ropeAttentionScaling: 1,
};
const positions = Int32Array.from({ length: T }, (_, i) => i);
const invFreq = Float32Array.from({ length: Dh / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / Dh));
const x = randn(T * D, 1);
const target = x.map((v) => v + 0.1 * normal());

function measure(kind) {
  const roles = Object.keys(shapes).filter((r) => kind === 'layer' || !/^(attn_norm|q|k|v|o)\./.test(r));
  const params = {}, grads = {}, m = [], v = [];
  for (const r of roles) {
    const sh = shapes[r], len = sh.reduce((a, b) => a * b, 1);
    params[r] = sh.length === 2 ? randn(len, sh[1] ** -0.5) : new Float32Array(len).fill(1);
    grads[r] = new Float32Array(len);
    m.push(new Float32Array(len));
    v.push(new Float32Array(len));
  }
  const plist = roles.map((r) => params[r]), glist = roles.map((r) => grads[r]);
  let step = 0;
  const one = async () => {
    for (const g of glist) g.fill(0);
    await n.replacementStep(kind, spec, params, grads, x, target, positions, null, invFreq);
    n.clipGradNorm(glist, 5);
    n.adamwStep(plist, glist, m, v, { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-3, step: ++step });
  };
  return { one };
}

const out = { bench: 'train-step', impl: 'streamline', tokens: T, threads };
for (const kind of ['mlp', 'layer']) {
  const { one } = measure(kind);
  let t0 = performance.now();
  await one();
  console.error(`  ${kind}: warm-up ${((performance.now() - t0) / 1000).toFixed(2)}s`);
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    t0 = performance.now();
    await one();
    const sec = (performance.now() - t0) / 1000;
    console.error(`  ${kind}: run ${r + 1}/${repeats} ${sec.toFixed(2)}s`);
    best = Math.min(best, sec);
  }
  out[kind] = { seconds: best, tokensPerSec: T / best };
}
console.log(JSON.stringify(out));
