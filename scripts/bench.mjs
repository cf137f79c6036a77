#!/usr/bin/env node
// `pnpm bench [forward|score|train|all] [--threads N]`: runs each benchmark on our side and in PyTorch in the same
// run, then prints a side-by-side table (markdown, ready for BENCHMARKS.md) with the ratio and the machine.
// Dev tooling: not part of CI, never asserts timings.
//
// Our side: `node scripts/bench/<script>.mjs --threads N` (env STREAMLINE_THREADS=N too); its last stdout line
// is one JSON object with these fields:
//   forward-layer.mjs  { tokensPerSec }                       one Llama-3.2-1B-shaped layer, bf16 weights, 1 x 2048
//   score.mjs          { seconds, gbps }                      fused cosine kernel on two [16384, 2048] f32 tensors
//   train-step.mjs     { mlp: { tokensPerSec }, layer: { tokensPerSec } }   one optimiser step, 1 x 2048 tokens
// PyTorch side: `/usr/bin/python3 scripts/bench/torch_<name>.py --threads N` (skipped with a message when that
// Python has no torch), same JSON-last-line contract (see each script's docstring).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PYTHON = process.env.STREAMLINE_BENCH_PYTHON ?? '/usr/bin/python3';

const BENCHES = {
  forward: {
    title: 'Forward, one Llama-3.2-1B-shaped decoder layer (bf16 weights, 1 x 2048 tokens)',
    ours: 'forward-layer.mjs',
    torch: 'torch_layer.py',
    rows: (o, t) => [
      row('tokens/s (bf16 weights)', o?.tokensPerSec, t?.tokensPerSec, 'higher'),
      row('tokens/s, ours (bf16 weights) vs PyTorch f32 module', o?.tokensPerSec, t?.f32?.tokensPerSec, 'higher'),
    ],
  },
  score: {
    title: 'Scoring one boundary pair, two [16384, 2048] f32 tensors',
    ours: 'score.mjs',
    torch: 'torch_score.py',
    rows: (o, t) => [
      row('seconds (ours fused; PyTorch official T x T + trace)', o?.seconds, t?.seconds, 'lower'),
      row('PyTorch row-wise F.cosine_similarity seconds (reference)', undefined, t?.rowwiseSeconds, 'none'),
      row('GB/s (ours) vs memory copy GB/s', o?.gbps, t?.copyGBps, 'fraction'),
    ],
  },
  train: {
    title: 'Training step (forward, backward, AdamW), Llama-3.2-1B shapes, 1 x 2048 tokens, PyTorch bf16 autocast',
    ours: 'train-step.mjs',
    torch: 'torch_train_step.py',
    rows: (o, t) => [
      row('mlp replacement tokens/s', o?.mlp?.tokensPerSec ?? o?.mlpTokensPerSec, t?.mlp?.tokensPerSec, 'higher'),
      row('layer replacement tokens/s', o?.layer?.tokensPerSec ?? o?.layerTokensPerSec, t?.layer?.tokensPerSec, 'higher'),
      row('mlp tokens/s vs PyTorch f32 (no autocast)', o?.mlp?.tokensPerSec ?? o?.mlpTokensPerSec, t?.f32?.mlp?.tokensPerSec, 'higher'),
      row('layer tokens/s vs PyTorch f32 (no autocast)', o?.layer?.tokensPerSec ?? o?.layerTokensPerSec, t?.f32?.layer?.tokensPerSec, 'higher'),
    ],
  },
};

function row(label, ours, torch, better) {
  let ratio = '';
  if (Number.isFinite(ours) && Number.isFinite(torch) && ours > 0 && torch > 0) {
    if (better === 'higher') ratio = `${(ours / torch).toFixed(2)}x`;
    else if (better === 'lower') ratio = `${(torch / ours).toFixed(1)}x faster`;
    else if (better === 'fraction') ratio = `${((100 * ours) / torch).toFixed(0)} % of copy`;
  }
  return { label, ours, torch, ratio };
}

function fmt(v) {
  if (!Number.isFinite(v)) return '—';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function lastJson(stdout) {
  const lines = stdout.trim().split('\n').reverse();
  for (const l of lines) {
    try {
      const v = JSON.parse(l);
      if (v && typeof v === 'object') return v;
    } catch { /* not JSON */ }
  }
  return undefined;
}

function runSide(cmd, args, env) {
  const r = spawnSync(cmd, args, { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  if (r.error) return { error: r.error.message };
  if (r.status !== 0) return { error: `exit ${r.status}` };
  const json = lastJson(r.stdout ?? '');
  return json ? { json } : { error: 'no JSON line on stdout' };
}

function torchAvailable() {
  const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

const argv = process.argv.slice(2);
let threads = 2;
const names = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--threads') threads = Number(argv[++i]);
  else if (argv[i].startsWith('--threads=')) threads = Number(argv[i].slice(10));
  else names.push(argv[i]);
}
if (!Number.isInteger(threads) || threads < 1) {
  console.error('--threads must be a positive integer');
  process.exit(2);
}
const which = names.length === 0 || names.includes('all') ? Object.keys(BENCHES) : names;
for (const n of which) {
  if (!BENCHES[n]) {
    console.error(`unknown benchmark "${n}": expected one of forward, score, train, all`);
    process.exit(2);
  }
}

const torchVersion = torchAvailable();
if (!torchVersion) console.error(`PyTorch side skipped: ${PYTHON} cannot import torch (Debian: apt install python3-torch)`);
const env = { STREAMLINE_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
const results = [];
for (const n of which) {
  const b = BENCHES[n];
  console.error(`\n== ${n}: ${b.title}`);
  let ours;
  const oursScript = path.join(root, 'scripts', 'bench', b.ours);
  if (!existsSync(oursScript)) console.error(`ours: scripts/bench/${b.ours} not available yet`);
  else {
    const r = runSide(process.execPath, [oursScript, '--threads', String(threads)], env);
    if (r.error) console.error(`ours: scripts/bench/${b.ours} failed (${r.error})`);
    ours = r.json;
  }
  let torch;
  if (torchVersion) {
    const r = runSide(PYTHON, [path.join(root, 'scripts', 'bench', b.torch), '--threads', String(threads)], env);
    if (r.error) console.error(`pytorch: scripts/bench/${b.torch} failed (${r.error})`);
    torch = r.json;
  }
  results.push({ name: n, title: b.title, rows: b.rows(ours, torch) });
}

const cpu = os.cpus();
console.log(`\nMachine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} logical cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
  `threads ${threads}; node ${process.version}; PyTorch ${torchVersion ?? 'not available'}; ${new Date().toISOString()}`);
for (const r of results) {
  console.log(`\n### ${r.title}\n`);
  console.log('| measure | Streamline | PyTorch | ratio |');
  console.log('|---|---|---|---|');
  for (const x of r.rows) console.log(`| ${x.label} | ${fmt(x.ours)} | ${fmt(x.torch)} | ${x.ratio || '—'} |`);
}
