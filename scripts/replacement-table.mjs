#!/usr/bin/env node
// The replacement comparison of issue 5 on the demo model: n layers at the window scoring chooses, for none,
// linear, mlp and layer: held-out relative hidden-state error ‖R(h[s]) − h[s+n]‖ / ‖h[s+n]‖ and test perplexity
// (chunked, seqLen 256, the project convention). Prints a markdown table; run after `pnpm exec tsc -b`.
// Usage: node scripts/replacement-table.mjs [model-dir] [data-dir] [--n 4] [--train-samples 400] [--epochs 2] [--lr 1e-3]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, prune, readTextDocuments } from '../packages/core/dist/index.js';
import { chunkedPerplexity } from '../packages/eval/dist/index.js';

const args = process.argv.slice(2);
const flag = (n, d) => { const i = args.indexOf(`--${n}`); return i >= 0 ? Number(args[i + 1]) : d; };
const pos = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
const modelDir = pos[0] ?? '../shared/models/kjv-llama', dataDir = pos[1] ?? '../shared/data/kjv';
const n = flag('n', 4), trainSamples = flag('train-samples', 400), epochs = flag('epochs', 2), lr = flag('lr', 1e-3);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'streamline-table-'));
const model = await loadModel(modelDir);
const docs = await readTextDocuments(path.join(dataDir, 'test.jsonl'), 'text');
const ppl = async (m) => (await chunkedPerplexity({ model: m, tokenizer: model.tokenizer, documents: docs, seqLen: 256, batchSize: 8 })).ppl;
const rows = [['original', '—', '—', (await ppl(model)).toFixed(2), '—']];
for (const kind of ['none', 'linear', 'mlp', 'layer']) {
  const t0 = Date.now();
  const r = await prune(model, { outDir: path.join(tmp, kind), replacement: kind, n, calib: path.join(dataDir, 'train.jsonl'),
    samples: 50, seqLen: 256, trainSamples, epochs, lr, minLr: lr / 10, microBatch: 4, seed: 0 });
  const pruned = { maxLength: model.maxLength, tokenLogprobs: (s, o) => import('../packages/core/dist/index.js').then((c) => c.tokenLogprobs(r.pruned, s, o)) };
  rows.push([kind, `[${r.plan.window.start}, ${r.plan.window.end})`, r.relativeError.toFixed(4), (await ppl(pruned)).toFixed(2), `${((Date.now() - t0) / 1000).toFixed(0)} s`]);
  console.error(`${kind}: done`);
}
console.log(`| replacement | window | relative error ‖R(h[s]) − h[s+n]‖/‖h[s+n]‖ (held out) | test PPL (seqLen 256) | prune time |`);
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nn = ${n}, calibration 50 × 256 tokens of train.jsonl, training ${trainSamples} blocks × 256 tokens (10 % held out), ${epochs} epochs, lr ${lr} → ${lr / 10}, micro-batch 4, seed 0; ${new Date().toISOString().slice(0, 10)}`);
fs.rmSync(tmp, { recursive: true, force: true });
