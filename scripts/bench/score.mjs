#!/usr/bin/env node
// The fused cosine kernel on two [16384, 2048] f32 tensors (one pass, f64 accumulation) and a plain memory copy
// of the same bytes in the same process. GB/s counts bytes moved: the kernel reads 2 x 128 MiB; the copy reads
// and writes 128 MiB. Prints per-run lines and, as its LAST line, JSON: {seconds, gbps, copyGBps, fraction}.
// Usage: node scripts/bench/score.mjs [--tokens 16384] [--hidden 2048] [--reps 5]
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? Number(args[i + 1]) : def; };
const T = opt('tokens', 16384), D = opt('hidden', 2048), reps = opt('reps', 5);
if (process.env.OPENBLAS_CORETYPE === undefined) {
  const flags = (readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '').split(/\s+/);
  if (flags.includes('avx512f') && flags.includes('avx512bw')) process.env.OPENBLAS_CORETYPE = 'SkylakeX';
  else if (flags.includes('avx2')) process.env.OPENBLAS_CORETYPE = 'Haswell';
}
const require = createRequire(import.meta.url);
const n = require(process.env.STREAMLINE_NATIVE_PATH ?? path.join(root, 'packages/core/build/Release/streamline.node'));

const a = new Float32Array(T * D), b = new Float32Array(T * D);
for (let i = 0; i < a.length; i++) { a[i] = Math.sin(i * 0.001); b[i] = Math.cos(i * 0.0007); }
const out = new Float64Array(3);
let best = Infinity;
for (let r = 0; r <= reps; r++) {
  out.fill(0);
  const t0 = performance.now();
  n.cosineAccumulate(out, a, b, null, T, D);
  const s = (performance.now() - t0) / 1000;
  if (r > 0) best = Math.min(best, s);  // run 0 is a warm-up
  console.error(`  fused cosine run ${r}: ${s.toFixed(4)} s (mean cos ${(out[0] / out[1]).toFixed(6)})`);
}
const dst = new Float32Array(T * D);
let copyBest = Infinity;
for (let r = 0; r <= reps; r++) {
  const t0 = performance.now();
  dst.set(a);
  const s = (performance.now() - t0) / 1000;
  if (r > 0) copyBest = Math.min(copyBest, s);
}
const gbps = (2 * a.byteLength) / best / 1e9;
const copyGBps = (2 * a.byteLength) / copyBest / 1e9;
console.log(JSON.stringify({ bench: 'score', impl: 'streamline', tokens: T, hidden: D, threads: n.cpuInfo().threads,
  seconds: Number(best.toFixed(5)), gbps: Number(gbps.toFixed(2)), copyGBps: Number(copyGBps.toFixed(2)), fraction: Number((gbps / copyGBps).toFixed(3)) }));
