// The engine on the real demo model (../shared/models/kjv-llama) against independent references:
// - chunked test perplexity at seqLen 256 vs the f64 PyTorch reference (test/fixtures/kjv/ppl-test-256.json), ≤ 0.5 %;
// - the 17×17 boundary cosine matrix vs the PyTorch reference (score-matrix.json), ≤ 1e-4 absolute;
// - kjv-verse-endings accuracy vs ../shared/data/kjv/README.md (acc 0.568, acc_norm 0.570), identical at batch
//   sizes 1, 3 and 8.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModel, readTextDocuments, scoreLayers } from '../packages/core/src/index.js';
import { chunkedPerplexity, evaluate } from '../packages/eval/src/index.js';
import { kjvData, kjvModel, repoRoot, skipWithoutShared } from './_shared.js';

if (!skipWithoutShared('kjv-engine.test.ts')) {
  const ref = (f: string) => JSON.parse(fs.readFileSync(path.join(repoRoot, 'test', 'fixtures', 'kjv', f), 'utf8'));

  test('chunked test perplexity (seqLen 256) is within 0.5 % of the PyTorch reference', async () => {
    const model = await loadModel(kjvModel);
    const docs = await readTextDocuments(path.join(kjvData, 'test.jsonl'), 'text');
    const r = await chunkedPerplexity({ model, tokenizer: model.tokenizer!, documents: docs, seqLen: 256, batchSize: 8 });
    const want = ref('ppl-test-256.json');
    assert.is(r.predicted, want.predicted);
    const rel = Math.abs(r.ppl - want.ppl) / want.ppl;
    assert.ok(rel <= 0.005, `ppl ${r.ppl} vs ${want.ppl} (${(rel * 100).toFixed(4)} %)`);
  });

  test('boundary cosine matrix matches the PyTorch computation within 1e-4', async () => {
    const model = await loadModel(kjvModel);
    const want = ref('score-matrix.json');
    const blocks = (want.blocks as number[][]).map((b) => Int32Array.from(b));
    const r = await scoreLayers(model.description, { blocks, n: 4, batchSize: 3 });
    let worst = 0;
    for (let i = 0; i <= 16; i++) for (let j = 0; j <= 16; j++) worst = Math.max(worst, Math.abs(r.matrix[i]![j]! - want.matrix[i][j]));
    assert.ok(worst <= 1e-4, `max |Δ| = ${worst}`);
    assert.is(r.tokens, 8 * 128);
  });

  test('kjv-verse-endings accuracy equals the data README, identical at batch sizes 1, 3 and 8', async () => {
    const model = await loadModel(kjvModel);
    const task = { name: 'kjv-verse-endings', path: path.join(kjvData, 'kjv-verse-endings', 'test.jsonl') };
    const full = await evaluate({ model, tokenizer: model.tokenizer!, tasks: [task], batchSize: 8 });
    const t = full.tasks['kjv-verse-endings']!;
    assert.is(t.n, 500);
    assert.ok(Math.abs(t.acc - 0.568) <= 0.002, `acc ${t.acc}`);
    assert.ok(Math.abs(t.acc_norm! - 0.570) <= 0.002, `acc_norm ${t.acc_norm}`);
    // Batch-size invariance on the log-likelihoods themselves (first 40 items, 160 sequences).
    const logs: string[] = [];
    for (const bs of [1, 3, 8]) {
      const r = await evaluate({ model, tokenizer: model.tokenizer!, tasks: [task], batchSize: bs, limit: 40, logSamples: true });
      logs.push(JSON.stringify(r.samples));
    }
    assert.ok(logs[0]!.length > 1000);
    assert.is(logs[1], logs[0], 'batch size 3 differs from 1');
    assert.is(logs[2], logs[0], 'batch size 8 differs from 1');
  });
}

test.run();
