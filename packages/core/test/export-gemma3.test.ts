// Exports of a Gemma 3 text model (test/fixtures/models/gemma3: bf16, sandwich norms stored as offsets from one,
// per-head q/k norms, sliding layers from sliding_window_pattern 3 with their own RoPE base, tied embeddings): every
// replacement kind that applies writes a checkpoint `inspect` accepts, whose config spells out the kept layers'
// layer_types (the pattern no longer lines up), whose norm weights keep Gemma's convention (stored w, used as 1 + w),
// and whose logits read back equal the pruned model's in memory.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { inspect, isStreamlineError, loadModel, openSafetensors, prune, type ModelReport } from '../src/index.js';
import { loadCharFixture, logitsOf, maxAbsDiff, repoRoot, tmpDir, writeCalibText, writeCharTokenizer } from './_helpers.js';

const tmp = tmpDir('export-gemma3');
const calib = writeCalibText(tmp);
const tokens = Int32Array.from({ length: 20 }, (_, i) => 2 + ((i * 37 + 11) % 95));
const NORMS = ['input_layernorm', 'post_attention_layernorm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm', 'self_attn.q_norm', 'self_attn.k_norm'];

const runs = [
  { name: 'none', replacement: 'none' as const, range: { start: 1, end: 3 }, kept: [0, 3] },
  { name: 'mlp', replacement: 'mlp' as const, range: { start: 1, end: 3 }, kept: [0, 1, 3] },
  { name: 'layer', replacement: 'layer' as const, range: { start: 1, end: 3 }, kept: [0, 1, 3] },
  // starts on a full-attention layer (2): the replacement keeps that layer's type, window (none) and RoPE base
  { name: 'layer, --loss lm', replacement: 'layer' as const, range: { start: 2, end: 3 }, kept: [0, 1, 2, 3], loss: 'lm' as const },
];
const sourceTypes = ['sliding_attention', 'sliding_attention', 'full_attention', 'sliding_attention'];

for (const r of runs) {
  test(`gemma3 ${r.name}: the export is valid, spells out layer_types, stores norms as offsets, gives the in-memory logits`, async () => {
    const model = await loadCharFixture('gemma3', tmp);
    const out = path.join(tmp, r.name.replace(/[^a-z]+/g, '-'));
    const res = await prune(model, { outDir: out, calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, lr: 1e-2, range: r.range,
      replacement: r.replacement, device: 'cpu', ...(r.loss ? { loss: r.loss } : {}) });
    writeCharTokenizer(out);
    const rep = inspect(out) as ModelReport;
    assert.ok(rep.valid, `inspect: ${JSON.stringify({ missing: rep.missing, wrongShape: rep.wrongShape, unexpected: rep.unexpected })}`);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal([cfg.model_type, cfg.num_hidden_layers, cfg.layer_types], ['gemma3_text', r.kept.length, r.kept.map((i) => sourceTypes[i])]);
    const exported = await loadModel(out);
    assert.equal(exported.config.layerTypes, r.kept.map((i) => sourceTypes[i]));
    // Stored norm weights stay offsets from one (the fixture draws them around 0, std 0.3); a trained norm exported
    // without subtracting the one would sit around 1.
    const st = openSafetensors(path.join(out, 'model.safetensors'));
    for (let i = 0; i < r.kept.length; i++)
      for (const n of NORMS) {
        const v = st.tensor(`model.layers.${i}.${n}.weight`).toFloat32();
        const mean = v.reduce((a, b) => a + Math.abs(b), 0) / v.length;
        assert.ok(mean < 0.6, `layer ${i} ${n}: mean |w| ${mean.toFixed(3)} (stored as an offset from one)`);
      }
    if (r.replacement === 'layer') {
      const src = model.description.layers[r.range.start]!.weights(), got = exported.description.layers[r.range.start]!.weights();
      for (const role of ['attn_norm.weight', 'post_attn_norm.weight', 'mlp_norm.weight', 'post_mlp_norm.weight', 'q_norm.weight'] as const) {
        const a = new Float32Array(src[role]!.data.slice().buffer), b = new Float32Array(got[role]!.data.slice().buffer);
        assert.ok(b.some((v, i) => v !== a[i]), `${role} was trained and exported`);
      }
    }
    const a = await logitsOf(res.pruned!, tokens), b = await logitsOf(exported.description, tokens), worst = maxAbsDiff(a, b);
    assert.ok(a.every(Number.isFinite), 'finite logits');
    assert.ok(worst === 0, `logits of the export vs the pruned model in memory differ by up to ${worst}`);
  });
}

test('gemma (1) layer: the export stores norms as offsets and gives the in-memory logits', async () => {
  const model = await loadCharFixture('gemma', tmp);
  const out = path.join(tmp, 'gemma1-layer');
  const res = await prune(model, { outDir: out, calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, lr: 1e-2, range: { start: 1, end: 3 }, replacement: 'layer', device: 'cpu' });
  writeCharTokenizer(out);
  assert.ok((inspect(out) as ModelReport).valid);
  const st = openSafetensors(path.join(out, 'model.safetensors'));
  for (const n of ['input_layernorm', 'post_attention_layernorm']) {
    const v = st.tensor(`model.layers.1.${n}.weight`).toFloat32();
    assert.ok(v.reduce((a, b) => a + Math.abs(b), 0) / v.length < 0.6, `${n} stored as an offset from one`);
  }
  const exported = await loadModel(out);
  const a = await logitsOf(res.pruned!, tokens), b = await logitsOf(exported.description, tokens);
  assert.ok(a.every(Number.isFinite) && maxAbsDiff(a, b) === 0, `export vs in memory: ${maxAbsDiff(a, b)}`);
});

test('gemma3: the embedding scale is sqrt(hidden) rounded to the embedding dtype, as transformers casts it', async () => {
  // The goldens alone barely see this (bf16 moves sqrt(32) by 1.1e-4 relative, against a 1e-4 tolerance).
  const bf16 = await loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'gemma3'));
  const f32 = await loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'gemma3-types'));
  assert.equal([bf16.description.embedScale, f32.description.embedScale], [5.65625, Math.fround(Math.sqrt(32))]);
});

test('gemma3: the linear replacement is refused (the MLP output is normalised before the residual add, so nothing can fold)', async () => {
  const model = await loadCharFixture('gemma3', tmp);
  try {
    await prune(model, { outDir: path.join(tmp, 'linear'), calib, samples: 2, seqLen: 16, range: { start: 1, end: 3 }, replacement: 'linear', device: 'cpu' });
    assert.unreachable('linear should be refused');
  } catch (e) {
    assert.ok(isStreamlineError(e, 'E_REPLACEMENT'), String(e));
  }
});

test.run();
