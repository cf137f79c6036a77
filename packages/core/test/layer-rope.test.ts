// Per-layer RoPE (LayerSource.rope; ModelConfig.ropeByLayerType, Gemma 3's sliding layers with their own base):
// describeModel hands each layer of a typed kind its kind's RoPE, the forward pass rotates every layer with its
// own frequencies (checked against running each layer by hand, and shown to matter), and a `layer` replacement keeps
// the RoPE of the layer it stands in for. Built on the qwen2-window fixture (layer 0 full attention, 1 and 2 sliding).
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { openModelDir } from '../src/model-dir.js';
import { native } from '../src/native.js';
import { trainingRopes } from '../src/prune/run.js';
import type { ModelDescription } from '../src/index.js';
import { repoRoot } from './_helpers.js';

const fixture = path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen2-window');
/** Sliding layers rotate with base 100 and linear factor 2 (the fixture's theta is 1e6): far apart at every position. */
const SLIDING = { theta: 100, scaling: { type: 'linear' as const, factor: 2 } };

function describeWith(byType: Record<string, unknown> | undefined): ModelDescription {
  const md = openModelDir(fixture);
  const config = { ...md.config, ...(byType ? { ropeByLayerType: byType } : {}) } as typeof md.config;
  return core.describeModel({ ...md, config } as typeof md);
}
function slidingRope(d: ModelDescription) {
  return { ...d.rope!, theta: SLIDING.theta, scaling: SLIDING.scaling };
}
const seqs = [Int32Array.from({ length: 23 }, (_, i) => (i * 7 + 3) % 128), Int32Array.from({ length: 14 }, (_, i) => (i * 5 + 1) % 128)];

/** h[L] by calling the native layer with explicitly computed frequencies per layer (no engine rope lookup). */
async function byHand(d: ModelDescription, ropes: (core.RopeParams | null)[]) {
  const batch = core.makeTokenBatch(seqs);
  let h = await core.embed(d, batch);
  for (const [k, layer] of d.layers.entries()) {
    const f = core.ropeFrequencies(ropes[k]!, Math.max(...h.lengths));
    const spec = core.nativeLayerSpec(d.semantics, h.B, h.T, true, f.attentionScaling, layer.window);
    const out = new Float32Array(h.data.length);
    await native().decoderLayerForward(out, h.data, spec, layer.weights() as never, h.positions, h.mask, f.invFreq, null);
    h = { ...h, data: out };
  }
  return h;
}
async function engine(d: ModelDescription) {
  const h = await core.embed(d, core.makeTokenBatch(seqs));
  return core.runLayers(d, h, 0, d.layers.length);
}
function maxAbs(a: Float32Array, b: Float32Array, mask: Uint8Array, D: number): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (mask[Math.floor(i / D)]) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('describeModel: without ropeByLayerType no layer carries a rope (every family today)', () => {
  const d = describeWith(undefined);
  assert.equal(d.layers.map((l) => 'rope' in l), [false, false, false]);
  assert.equal(d.layers.map((l) => l.window ?? 0), [0, 4, 4]);
});

test('describeModel: ropeByLayerType gives the sliding layers one shared RopeParams, the others the model\'s', () => {
  const d = describeWith({ sliding_attention: { ...SLIDING, rotaryDim: 8 } });
  assert.equal(d.layers.map((l) => 'rope' in l), [false, true, true]);
  assert.ok(d.layers[1]!.rope === d.layers[2]!.rope, 'one object per layer type');
  assert.equal(d.layers[1]!.rope, slidingRope(d));
  assert.is(core.layerRope(d, d.layers[0]!), d.rope);
  assert.is(core.layerRope(d, d.layers[2]!), d.layers[2]!.rope);
  // a full_attention entry applies to layer 0 only
  const f = describeWith({ full_attention: { ...SLIDING, rotaryDim: 8 } });
  assert.equal(f.layers.map((l) => 'rope' in l), [true, false, false]);
});

test('describeModel: a per-type RoPE with another rotary dim is refused (one rot_dim per model)', () => {
  assert.throws(() => describeWith({ sliding_attention: { ...SLIDING, rotaryDim: 4 } }),
    (e: any) => e.code === 'E_CONFIG_UNSUPPORTED' && /sliding_attention layers rotates 4 dims/.test(e.message));
});

test('forward: each layer rotates with its own RoPE (equal to running it by hand), and ignoring it shows', async () => {
  const d = describeWith({ sliding_attention: { ...SLIDING, rotaryDim: 8 } });
  const slide = slidingRope(d);
  const got = await engine(d);
  const want = await byHand(d, [d.rope, slide, slide]);
  assert.equal(got.data, want.data, 'bitwise the hand-run layers');
  // The same layers all rotated with the model's rope: what the engine computed before per-layer ropes.
  const ignored = await byHand(d, [d.rope, d.rope, d.rope]);
  const D = d.semantics.hidden;
  const diff = maxAbs(got.data, ignored.data, got.mask, D);
  let scale = 0;
  for (const v of want.data) scale = Math.max(scale, Math.abs(v));
  console.log(`  per-layer rope vs one rope for all layers: max |Δh[L]| = ${diff.toExponential(3)} (max |h[L]| ${scale.toFixed(3)})`);
  assert.ok(diff > 1e-2 * scale, `ignoring the sliding layers' rope must change h[L] (Δ ${diff})`);
  // and the description without ropeByLayerType is exactly that
  const plain = await engine(describeWith(undefined));
  assert.equal(plain.data, ignored.data);
});

test('prunedDescription: a `layer` replacement keeps layer start\'s rope; an `mlp` block has none', () => {
  const d = describeWith({ sliding_attention: { ...SLIDING, rotaryDim: 8 } });
  const w = d.layers[1]!.weights();
  const layer = core.prunedDescription(d, 1, 2, { kind: 'layer', weights: w });
  assert.equal(layer.layers.map((l) => l.label), ['layer 0', 'layer replacement of [1, 2)', 'layer 2']);
  assert.ok(layer.layers[1]!.rope === d.layers[1]!.rope);
  assert.equal(layer.layers[1]!.window, 4);
  const atFull = core.prunedDescription(d, 0, 2, { kind: 'layer', weights: d.layers[0]!.weights() });
  assert.equal(atFull.layers.map((l) => 'rope' in l), [false, true], 'layer 0 is full attention: the model\'s rope');
  const mlp = core.prunedDescription(d, 1, 2, { kind: 'mlp', weights: w });
  assert.equal('rope' in mlp.layers[1]!, false);
  const linear = core.prunedDescription(d, 1, 2, { kind: 'linear' });
  assert.ok(linear.layers[1]!.rope === d.layers[2]!.rope, 'kept layers keep theirs');
});

test('pruned forward: the `layer` replacement runs with layer start\'s (sliding) rope', async () => {
  const d = describeWith({ sliding_attention: { ...SLIDING, rotaryDim: 8 } });
  const pruned = core.prunedDescription(d, 1, 2, { kind: 'layer', weights: d.layers[1]!.weights() });
  const slide = slidingRope(d);
  const got = await engine(pruned);
  assert.equal(got.data, (await byHand(pruned, [d.rope, slide, slide])).data);
});

test('trainingRopes: the replacement rotates like layer start; lm tail layers with another rope get their own', () => {
  const d = describeWith({ sliding_attention: { ...SLIDING, rotaryDim: 8 } });
  const T = 16, model = core.ropeFrequencies(d.rope!, T), slide = core.ropeFrequencies(slidingRope(d), T);
  // [1, 2): the replacement stands at a sliding layer; the tail (layer 2) rotates like it
  assert.equal(trainingRopes(d, 1, 2, T), { invFreq: slide.invFreq, attentionScaling: 1 });
  // [0, 1): full-attention replacement, sliding tail
  assert.equal(trainingRopes(d, 0, 1, T), { invFreq: model.invFreq, attentionScaling: 1, tail: [slide, slide] });
  // [0, 2): the tail is layer 2 only
  assert.equal(trainingRopes(d, 0, 2, T).tail, [slide]);
  // one rope per model: no tail entries, the model's frequencies
  assert.equal(trainingRopes(describeWith(undefined), 1, 2, T), { invFreq: model.invFreq, attentionScaling: 1 });
  assert.ok(Math.abs(slide.invFreq[1]! - model.invFreq[1]!) > 1e-3, 'the two ropes differ');
});

test.run();
