// Scoring: window choice on a model whose layers [5, 9) are exact identities (zero o_proj and down_proj), the
// matrix against the fixture's f64 reference, bad options, and the sparsity → n mapping.
import path from 'node:path';
import fs from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModel, nForSparsity, openSafetensors, scoreLayers } from '../src/index.js';
import { repoRoot } from './_helpers.js';

const dir = path.join(repoRoot, 'test', 'fixtures', 'models', 'llama-identity');

async function identityBlocks() {
  const g = openSafetensors(path.join(dir, 'golden.safetensors'));
  const ids = g.tensor('input_ids'), mask = g.tensor('attention_mask').data;
  const [B, T] = ids.shape as [number, number];
  const v = new Int32Array(ids.data.buffer.slice(ids.data.byteOffset, ids.data.byteOffset + ids.nbytes));
  return Array.from({ length: B }, (_, b) => v.slice(b * T, b * T + mask.subarray(b * T, (b + 1) * T).reduce((a, x) => a + x, 0)));
}

test('bad options are typed errors', async () => {
  const model = await loadModel(dir);
  const blocks = await identityBlocks();
  for (const [o, code] of [[{ n: 0 }, 'E_INVALID_OPTION'], [{ n: 11 }, 'E_INVALID_OPTION'], [{ n: 2, metric: 'x' }, 'E_INVALID_OPTION'], [{ n: 2, batchSize: 0 }, 'E_INVALID_OPTION']] as const) {
    let got = '';
    try { await scoreLayers(model.description, { blocks, ...(o as object) } as never); } catch (e: any) { got = e.code; }
    assert.is(got, code, JSON.stringify(o));
  }
  let got = '';
  try { await scoreLayers(model.description, { blocks: [], n: 2 }); } catch (e: any) { got = e.code; }
  assert.is(got, 'E_DATA_TOO_SMALL');
});

test('identity layers [5, 9): window [5, 9) scores cosine 1 and is chosen, for every metric', async () => {
  const model = await loadModel(dir);
  const blocks = await identityBlocks();
  for (const metric of ['cosine', 'angular', 'bi'] as const) {
    const r = await scoreLayers(model.description, { blocks, n: 4, metric });
    assert.equal(r.best && [r.best.start, r.best.end], [5, 9], metric);
    assert.ok(Math.abs(r.matrix[5]![9]! - 1) < 1e-6, `cos(h[5], h[9]) = ${r.matrix[5]![9]}`);
    if (metric === 'cosine') assert.ok(Math.abs(r.best!.score - 1) < 1e-6);
    else assert.ok(Math.abs(r.best!.score) < 1e-3);
    assert.is(r.windows.length, 10 - 4 + 1);
  }
});

test('matrix equals the fixture reference (f64 PyTorch) within 1e-4 and is independent of batch size', async () => {
  const model = await loadModel(dir);
  const blocks = await identityBlocks();
  const ref = JSON.parse(fs.readFileSync(path.join(dir, 'score.json'), 'utf8')).matrix as number[][];
  const a = await scoreLayers(model.description, { blocks, n: 4, batchSize: 1 });
  const b = await scoreLayers(model.description, { blocks, n: 4, batchSize: 2 });
  for (let i = 0; i <= 10; i++) for (let j = 0; j <= 10; j++) {
    assert.ok(Math.abs(a.matrix[i]![j]! - ref[i]![j]!) <= 1e-4, `[${i}][${j}] ${a.matrix[i]![j]} vs ${ref[i]![j]}`);
    assert.is(a.matrix[i]![j], b.matrix[i]![j], `batch size changed [${i}][${j}]`);
  }
});

test('sparsity → n picks the window length whose net removal is closest to the target', () => {
  const budget = { total: 1000, perLayer: Array(10).fill(80), mlpPerLayer: Array(10).fill(50) };
  // none: 25 % of 1000 = 250 → n·80: 240 (n=3) is closest.
  assert.is(nForSparsity(budget, 'none', 0.25), 3);
  // layer: (n−1)·80 → 240 at n=4.
  assert.is(nForSparsity(budget, 'layer', 0.25), 4);
  // mlp: n·80 − 50 → 270 at n=4 (diff 20) vs 190 at n=3 (diff 60).
  assert.is(nForSparsity(budget, 'mlp', 0.25), 4);
  assert.throws(() => nForSparsity(budget, 'none', 1.5), (e: any) => e.code === 'E_INVALID_OPTION');
});

test.run();
