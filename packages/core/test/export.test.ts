// Export: the `mlp` replacement written as a standard decoder layer whose attention output projection is zero
// computes exactly x + MLP(norm(x)); config.json's per-layer fields follow the kept layers.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exportPruned, keptLayers, loadModel, pruneConfig } from '../src/index.js';
import { native } from '../src/native.js';
import { checkOutput } from '../src/prune/export.js';
import { prng, repoRoot, tmpDir } from './_helpers.js';

const src = path.join(repoRoot, 'test', 'fixtures', 'models', 'llama-gqa');

test('mlp export equivalence: the exported decoder layer reproduces x + MLP(norm(x)) exactly', async () => {
  const model = await loadModel(src);
  const s = model.description.semantics;
  const rnd = prng(11);
  const r = (n: number) => Float32Array.from({ length: n }, () => rnd() - 0.5);
  const D = s.hidden, F = s.intermediate;
  const weights = { 'mlp_norm.weight': r(D), 'gate.weight': r(F * D), 'up.weight': r(F * D), 'down.weight': r(D * F) };
  const out = path.join(tmpDir('export'), 'pruned');
  await exportPruned({
    source: { dir: src, rawConfig: model.config.raw as Record<string, unknown>, checkpoint: model.modelDir.checkpoint, numLayers: model.layers,
      layerTensorName: (role, i) => model.modelDir.layerTensorName(role, i)!, embedTensorName: 'model.embed_tokens.weight', tiedEmbeddings: false },
    start: 1, end: 3, replacement: { kind: 'mlp', weights }, outDir: out, manifest: {},
  });
  const exported = await loadModel(out);
  assert.is(exported.layers, 2);
  const layer = exported.description.layers[1]!.weights();
  assert.ok(layer['o.weight'] && Array.from(new Float32Array(layer['o.weight'].data.slice().buffer)).every((v) => v === 0), 'o_proj is zero');
  const B = 2, T = 9, M = B * T;
  const x = r(M * D);
  const spec = { batch: B, seqLen: T, hidden: D, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, intermediate: F,
    norm: s.norm, normEps: s.normEps, activation: s.activation, gatedMlp: true, preNorm: true, useRope: true, attnScale: s.attnScale, ropeAttentionScaling: 1 };
  const viaLayer = new Float32Array(M * D), viaBlock = new Float32Array(M * D);
  const positions = Int32Array.from({ length: M }, (_, i) => i % T);
  const invFreq = Float32Array.from({ length: s.headDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / s.headDim));
  await native().decoderLayerForward(viaLayer, x, spec, layer, positions, null, invFreq, null);
  const f32 = (a: Float32Array, shape: number[]) => ({ data: a, dtype: 'f32', shape });
  await native().mlpBlockForward(viaBlock, x, spec, { 'mlp_norm.weight': f32(weights['mlp_norm.weight'], [D]), 'gate.weight': f32(weights['gate.weight'], [F, D]),
    'up.weight': f32(weights['up.weight'], [F, D]), 'down.weight': f32(weights['down.weight'], [D, F]) });
  assert.ok(Buffer.from(viaLayer.buffer).equals(Buffer.from(viaBlock.buffer)), 'bitwise equal');
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'streamline.json'), 'utf8'));
  assert.equal(manifest.output.layerMap, [0, 1]);
});

test('pruneConfig keeps per-layer lists and max_window_layers consistent', () => {
  const kept = keptLayers(6, 2, 5, true);  // [0, 1, 2, 5]
  assert.equal(kept, [0, 1, 2, 5]);
  const { config, changed } = pruneConfig({ num_hidden_layers: 6, layer_types: ['a', 'b', 'c', 'd', 'e', 'f'], max_window_layers: 3, other: [1, 2] }, kept);
  assert.is(config.num_hidden_layers, 4);
  assert.equal(config.layer_types, ['a', 'b', 'c', 'f']);
  assert.is(config.max_window_layers, 3);
  assert.equal(config.other, [1, 2]);
  assert.ok(changed.includes('layer_types'));
  assert.equal(keptLayers(6, 2, 5, false), [0, 1, 5]);
});

test("checkOutput: '-o .' is the current folder (not its parent), and --force never replaces the folder the user is in", () => {
  const root = tmpDir('cwd');
  const inner = path.join(root, 'inner');
  fs.mkdirSync(inner);
  fs.writeFileSync(path.join(root, 'sibling.txt'), 'x');  // the parent is not empty; inner is
  const cwd = process.cwd();
  process.chdir(inner);
  try {
    checkOutput(src, '.', false);  // inner is empty: fine (the parent's contents used to count)
    fs.writeFileSync(path.join(inner, 'work.txt'), 'mine');
    assert.throws(() => checkOutput(src, '.', false), (e: unknown) => (e as { code?: string }).code === 'E_OUTPUT_EXISTS');
    assert.throws(() => checkOutput(src, '.', true), (e: unknown) => (e as { code?: string }).code === 'E_OUTPUT_EXISTS' && /current directory/.test((e as Error).message));
    assert.throws(() => checkOutput(src, '..', true), (e: unknown) => /current directory/.test((e as Error).message));
  } finally {
    process.chdir(cwd);
  }
  checkOutput(src, inner, true);  // from elsewhere, --force may replace it
  fs.rmSync(root, { recursive: true });
});

test.run();
