// Exports of models with sliding-window attention: the exported config.json makes transformers run every kept layer
// (and a `layer` replacement) with the window the pruned model in memory used. Checked here by reading the export back
// (Streamline reads config.json as transformers does: scripts/fixtures/hf_reference.py agreed to ~3e-7 on these
// configurations) and comparing per-layer windows and logits with the in-memory model.
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { keptLayers, loadModel, prune, pruneConfig, type ModelDescription } from '../src/index.js';
import { logitsOf, makeTinyModel, maxAbsDiff, tmpDir, writeCalibText, writeCharTokenizer } from './_helpers.js';

const tmp = tmpDir('export-window');
const calib = writeCalibText(tmp);
const QWEN2 = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 16, intermediate_size: 24, num_attention_heads: 4,
  num_key_value_heads: 2, vocab_size: 101, max_position_embeddings: 64, rms_norm_eps: 1e-5, tie_word_embeddings: false,
  use_sliding_window: true, sliding_window: 3,
};
const tokens = Int32Array.from({ length: 20 }, (_, i) => 2 + ((i * 37 + 11) % 95));

const windows = (d: ModelDescription) => d.layers.map((l) => l.window ?? 0);


test('pruneConfig writes out a Qwen2 max_window_layers left at its default (28), counted over the kept layers', () => {
  const kept = keptLayers(30, 0, 4, false);
  const { config, changed } = pruneConfig({ model_type: 'qwen2', num_hidden_layers: 30, use_sliding_window: true }, kept);
  // source layers 28 and 29 use the window; they are layers 24 and 25 of the pruned model, whose default 28 marks none
  assert.is(config.max_window_layers, 24);
  assert.ok(changed.includes('max_window_layers'));
  // Families without the key get none.
  assert.not.ok('max_window_layers' in pruneConfig({ model_type: 'mistral', num_hidden_layers: 30 }, kept).config);
  assert.not.ok('max_window_layers' in pruneConfig({ num_hidden_layers: 30 }, kept).config);
});

test('a Qwen2 model with max_window_layers at its default: the export keeps the windows of the pruned model', async () => {
  const dir = path.join(tmp, 'qwen2-default-mwl');
  await makeTinyModel(dir, { ...QWEN2, num_hidden_layers: 30 }, { dtype: 'f32' });
  writeCharTokenizer(dir);
  const model = await loadModel(dir);
  assert.equal(windows(model.description), [...Array(28).fill(0), 3, 3]);
  for (const [kind, range] of [['none', { start: 0, end: 4 }], ['layer', { start: 10, end: 12 }]] as const) {
    const out = path.join(tmp, `qwen2-default-mwl-${kind}`);
    const r = await prune(model, { outDir: out, calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range, replacement: kind, device: 'cpu' });
    const exported = await loadModel(out);
    assert.equal(windows(exported.description), windows(r.pruned!), `${kind}: per-layer windows of the export`);
    const a = await logitsOf(r.pruned!, tokens), b = await logitsOf(exported.description, tokens), worst = maxAbsDiff(a, b);
    assert.ok(worst === 0, `${kind}: logits of the export vs the pruned model in memory differ by up to ${worst}`);
  }
});

test.run();
