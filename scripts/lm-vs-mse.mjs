// Issue 9 check, run by hand (not CI): train the `layer` replacement of the same window with `--loss mse` and
// `--loss lm` on the same data and steps, then compare chunked perplexity (seqLen 256) on held-out text.
//   node --import tsx scripts/lm-vs-mse.mjs [model] [data-dir] [n] [train-samples] [lr]
// Defaults (../shared or $STREAMLINE_SHARED): models/kjv-llama, ../shared/data/kjv, n = 4, 200 training blocks, lr 1e-3, 1 epoch.
// The window is scored once (50 samples of 256 tokens) and used for every run. Prints a table and JSON.
// Measured 2026-11-28 on the 2-core dev machine (kjv-llama, window [7, 11), 180 training + 20 validation blocks,
// 1 epoch, micro-batch 1; test.jsonl, 228 windows of 256): original 22.78; none 26.55;
//   lr 1e-3: mse 23.89, lm 24.36 (train 33 s vs 60 s);   lr 2e-4: mse 24.52, lm 24.82.
// lm does not win at this budget: it also ends with a higher held-out next-token NLL on the calibration blocks
// (its own objective: 18.84 vs 18.61 ppl at lr 1e-3), so it is the weaker optimiser here, not a mismatched goal.
// With 1600 blocks (2026-11-29, lr 1e-3, 1440 steps): mse 23.24, lm 23.42; lm wins its own objective (16.90 vs 16.95)
// but not the test text; its hidden-state error is 0.33 vs mse's 0.15.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, prune, readTextDocuments, tokenLogprobs } from '../packages/core/src/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = [path.resolve(root, '../shared'), process.env.STREAMLINE_SHARED].find((p) => p && fs.existsSync(path.join(p, 'models'))) ?? path.resolve(root, '../shared');
const args = process.argv.slice(2).map((a) => a || undefined);
const [modelDir = path.join(shared, 'models/kjv-llama'), dataDir = path.join(shared, 'data/kjv'),
  nArg = '4', samplesArg = '200', lrArg = '1e-3'] = args;
const seqLen = 256;

async function chunkedPpl(desc, ids) {
  const seqs = [];
  for (let w = 0; (w + 1) * seqLen <= ids.length; w++) seqs.push(ids.slice(w * seqLen, (w + 1) * seqLen));
  const lps = await tokenLogprobs(desc, seqs, { batchSize: 8 });
  let nll = 0, n = 0;
  for (const lp of lps) for (const v of lp) { nll -= v; n++; }
  return { ppl: Math.exp(nll / n), nll: nll / n, windows: seqs.length, tokens: n };
}

const model = await loadModel(modelDir);
const docs = await readTextDocuments(path.join(dataDir, 'test.jsonl'), 'text');
const testIds = model.tokenizer.encode(docs.join('\n\n'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lm-vs-mse-'));
const common = {
  calib: path.join(dataDir, 'train.jsonl'), samples: 50, seqLen, trainSamples: Number(samplesArg), lr: Number(lrArg),
  epochs: 1, seed: 0, n: Number(nArg), replacement: 'layer',
};
const t0 = Date.now();
const plan = await prune(model, { ...common, outDir: path.join(tmp, 'plan'), dryRun: true });
const range = plan.plan.window;
console.log(`window [${range.start}, ${range.end}) (scored in ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
const original = await chunkedPpl(model.description, testIds);
const rows = [{ run: 'original', ...original }];
for (const loss of ['mse', 'lm']) {
  const t = Date.now();
  const r = await prune(model, { ...common, n: undefined, range, loss, outDir: path.join(tmp, loss) });
  const ppl = await chunkedPpl(r.pruned, testIds);
  rows.push({ run: `layer, loss ${loss}`, ...ppl, heldOutCalibPpl: r.heldOut?.pplAfter, relErr: r.relativeError,
    bestValLoss: r.training?.bestValLoss, steps: r.training?.steps, trainSeconds: r.training?.seconds, seconds: (Date.now() - t) / 1000 });
  console.log(JSON.stringify(rows.at(-1)));
}
const none = await prune(model, { ...common, n: undefined, range, replacement: 'none', outDir: path.join(tmp, 'none') });
rows.push({ run: 'none (plain removal)', ...(await chunkedPpl(none.pruned, testIds)) });
console.log(`\ntest.jsonl chunked perplexity, seqLen ${seqLen}, window [${range.start}, ${range.end}), ${common.trainSamples} training blocks, lr ${common.lr}:`);
for (const r of rows) console.log(`  ${r.run.padEnd(22)} ppl ${r.ppl.toFixed(3).padStart(9)}  (nll ${r.nll.toFixed(4)}, ${r.windows} windows)` +
  (r.relErr !== undefined ? `  held-out calib ppl ${r.heldOutCalibPpl.toFixed(3)}, rel. hidden error ${r.relErr.toFixed(4)}, ${r.steps} steps, train ${r.trainSeconds.toFixed(0)} s` : ''));
console.log(JSON.stringify({ window: range, rows }));
fs.rmSync(tmp, { recursive: true, force: true });
