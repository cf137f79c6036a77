// The forward pass against golden files from the independent f64 PyTorch implementation of the Hugging Face
// semantics (scripts/fixtures/hf_reference.py). Metric per tensor over real tokens: normwise max relative error
// max|x − golden| / max|golden| (test/fixtures/README.md explains why, and the measured margins).
// Tolerance 1e-4 for f32 and for bf16 weights alike: bf16 weights are widened exactly and computed in f32, and the
// goldens use the very same bf16 values, so only f32 rounding separates them (observed ≤ 1e-6).
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forwardDescription, loadModel, openSafetensors, runLayers, embed, makeTokenBatch, tokenLogprobs } from '../src/index.js';
import { normwiseError, repoRoot } from './_helpers.js';

const TOL = 1e-4;
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'models');
const names = fs.readdirSync(fixtures).filter((n) => fs.existsSync(path.join(fixtures, n, 'golden.safetensors'))).sort();

function golden(name: string) {
  const g = openSafetensors(path.join(fixtures, name, 'golden.safetensors'));
  const ids = new Int32Array(g.tensor('input_ids').toFloat32 ? 0 : 0);
  void ids;
  const idsT = g.tensor('input_ids');
  const [B, T] = idsT.shape as [number, number];
  const idv = new Int32Array(idsT.data.buffer.slice(idsT.data.byteOffset, idsT.data.byteOffset + idsT.nbytes));
  const mask = g.tensor('attention_mask').data.slice();
  const seqs = Array.from({ length: B }, (_, b) => {
    let len = 0;
    for (let t = 0; t < T; t++) len += mask[b * T + t]!;
    return idv.slice(b * T, b * T + len);
  });
  return { g, B, T, seqs, mask };
}

for (const name of names) {
  test(`${name}: every boundary hidden state and the logits match the golden (≤ ${TOL})`, async () => {
    const model = await loadModel(path.join(fixtures, name));
    const { g, B, T, seqs } = golden(name);
    const L = model.layers;
    const D = model.config.hiddenSize, V = model.config.vocabSize;
    const r = await forwardDescription(model.description, seqs, { boundaries: Array.from({ length: L + 1 }, (_, k) => k), logits: true });
    const lengths = seqs.map((s) => s.length);
    const worst: string[] = [];
    for (let k = 0; k <= L; k++) {
      const e = normwiseError(r.hidden.get(k)!, r.T, g.tensor(`h.${k}`).toFloat32(), B, T, D, lengths);
      if (!(e <= TOL)) worst.push(`h[${k}] ${e.toExponential(2)}`);
    }
    const el = normwiseError(r.logits!, r.T, g.tensor('logits').toFloat32(), B, T, V, lengths);
    if (!(el <= TOL)) worst.push(`logits ${el.toExponential(2)}`);
    assert.equal(worst, [], `${name}: ${worst.join(', ')}`);
  });
}

test('slicing is consistent: [0, k) then [k, L) equals [0, L), bit for bit', async () => {
  const model = await loadModel(path.join(fixtures, 'llama-gqa'));
  const { seqs } = golden('llama-gqa');
  const desc = model.description, L = model.layers;
  const h0 = await embed(desc, makeTokenBatch(seqs));
  const full = await runLayers(desc, h0, 0, L);
  for (let k = 0; k <= L; k++) {
    const mid = await runLayers(desc, h0, 0, k);
    const end = await runLayers(desc, mid, k, L);
    assert.ok(Buffer.from(end.data.buffer).equals(Buffer.from(full.data.buffer)), `split at ${k}`);
  }
});

for (const name of ['llama-gqa', 'qwen2-bias-bf16', 'opt', 'mistral']) {
  test(`${name}: batch-size invariance: each sequence alone equals its row in a padded batch`, async () => {
    const model = await loadModel(path.join(fixtures, name));
    const { seqs } = golden(name);
    const batched = await tokenLogprobs(model.description, seqs, { batchSize: 8 });
    for (let i = 0; i < seqs.length; i++) {
      const [alone] = await tokenLogprobs(model.description, [seqs[i]!], { batchSize: 1 });
      let d = 0;
      for (let t = 0; t < alone!.length; t++) d = Math.max(d, Math.abs(alone![t]! - batched[i]![t]!));
      assert.ok(d <= 1e-5, `sequence ${i}: max |Δ log p| ${d}`);
      assert.ok(alone!.every(Number.isFinite));
    }
  });
}

test('errors: out-of-range token ids and over-long sequences are typed errors', async () => {
  const model = await loadModel(path.join(fixtures, 'llama-gqa'));
  let code = '';
  try { await model.tokenLogprobs([new Int32Array([1, 2, 100000])]); } catch (e: any) { code = e.code; }
  assert.is(code, 'E_TOKEN_RANGE');
  code = '';
  try { await model.tokenLogprobs([new Int32Array(model.maxLength + 2)]); } catch (e: any) { code = e.code; }
  assert.is(code, 'E_SEQ_LEN');
});

test.run();
