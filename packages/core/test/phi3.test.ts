// Phi-3: config defaults, LongRoPE, fused checkpoint tensors (qkv_proj, gate_up_proj) read as row views and written
// back by export. The forward semantics are checked against hf_reference.py by the phi3* golden fixtures
// (engine-fixtures.test.ts); here, what the fixtures cannot show: parsing, refusals, and the export round trip.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getAdapter, inspect, isStreamlineError, loadModel, openModelDir, parseModelConfig, prune, ropeFrequencies, Tensor, type DType } from '../src/index.js';
import { native } from '../src/native.js';
import { logitsOf, makeTinyModel, maxAbsDiff, repoRoot, tmpDir, writeCalibText, writeCharTokenizer } from './_helpers.js';

const tmp = tmpDir('phi3');
const fixture = (name: string) => path.join(repoRoot, 'test', 'fixtures', 'models', name);
const base = { model_type: 'phi3', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 4, num_attention_heads: 8, vocab_size: 100 };
const fails = (fn: () => unknown, code: string, mention: string) =>
  assert.throws(fn, (e: unknown) => isStreamlineError(e, code) && e.message.includes(mention), `${code} mentioning ${mention}`);

test('config: Phi3Config defaults (eps 1e-5, eos and pad 32000, MHA, no window unless set, no biases)', () => {
  const c = parseModelConfig(base);
  assert.is(c.modelType, 'phi3');
  assert.equal(c.architectures, ['Phi3ForCausalLM']);
  assert.equal([c.normEps, c.eosTokenId, c.padTokenId, c.bosTokenId, c.numKvHeads, c.headDim, c.maxPositionEmbeddings], [1e-5, 32000, 32000, 1, 8, 8, 4096]);
  assert.equal([c.attentionBias, c.attentionOutBias, c.mlpBias, c.tieWordEmbeddings], [false, false, false, false]);
  assert.is(c.slidingWindow, null);
  assert.equal(c.layerTypes, Array(4).fill('full_attention'));
  const w = parseModelConfig({ ...base, sliding_window: 2047 });
  assert.is(w.slidingWindow, 2047);
  assert.equal(w.layerTypes, Array(4).fill('sliding_attention'));
});

test('config: LongRoPE as Phi-3-mini-128k writes it (legacy type "su", original 4096 by default)', () => {
  const n = 4; // head_dim 8 / 2
  const rs = { type: 'su', short_factor: [1, 1.1, 1.2, 1.3], long_factor: [1, 2, 4, 8] };
  const c = parseModelConfig({ ...base, max_position_embeddings: 131072, rope_scaling: rs });
  const s = c.rope!.scaling;
  assert.is(s.type, 'longrope');
  if (s.type !== 'longrope') return;
  assert.is(s.originalMaxPositionEmbeddings, 4096);
  // factor 131072 / 4096 = 32: sqrt(1 + ln 32 / ln 4096), the 1.1902… of Phi-3-mini-128k
  assert.ok(Math.abs(s.attentionFactor - Math.sqrt(1 + Math.log(32) / Math.log(4096))) < 1e-15);
  assert.ok(Math.abs(s.attentionFactor - 1.1902380714238083) < 1e-12);
  // an explicit attention_factor wins; rope_type 'longrope' and the 'yarn' spelling Phi3Config renames alike
  const given = parseModelConfig({ ...base, rope_scaling: { ...rs, type: undefined, rope_type: 'yarn', attention_factor: 1.5 } }).rope!.scaling;
  assert.equal(given.type === 'longrope' && [given.attentionFactor, given.originalMaxPositionEmbeddings], [1.5, 4096]);
  // max_position_embeddings = original: factor 1, no scaling of cos/sin
  const same = parseModelConfig({ ...base, rope_scaling: rs }).rope!.scaling;
  assert.is(same.type === 'longrope' && same.attentionFactor, 1);
  fails(() => parseModelConfig({ ...base, rope_scaling: { ...rs, short_factor: [1, 2] } }), 'E_CONFIG_FIELD', `short_factor' must be a list of ${n}`);
  fails(() => parseModelConfig({ ...base, rope_scaling: { ...rs, long_factor: [1, 2, 'x', 4] } }), 'E_CONFIG_FIELD', 'long_factor');
  // Llama has no original_max_position_embeddings key by default: longrope's factor comes from rope_scaling.factor
  const ll = parseModelConfig({ ...base, model_type: 'llama', max_position_embeddings: 1024, rope_scaling: { rope_type: 'longrope', factor: 4, short_factor: rs.short_factor, long_factor: rs.long_factor } }).rope!.scaling;
  assert.equal(ll.type === 'longrope' && [ll.originalMaxPositionEmbeddings, ll.attentionFactor], [1024, Math.sqrt(1 + Math.log(4) / Math.log(1024))]);
  // and Llama does not rename 'yarn': there it is YaRN, which needs a factor and ignores the LongRoPE lists
  fails(() => parseModelConfig({ ...base, model_type: 'llama', rope_scaling: { ...rs, type: 'yarn' } }), 'E_CONFIG_FIELD', 'rope_scaling.factor');
  assert.is(parseModelConfig({ ...base, model_type: 'llama', rope_scaling: { ...rs, type: 'yarn', factor: 4 } }).rope!.scaling.type, 'yarn');
});

test('config: partial rotation (Phi-4-mini partial_rotary_factor 0.75) on Phi-3 only; LongRoPE factors then cover the rotated dims', () => {
  const c = parseModelConfig({ ...base, partial_rotary_factor: 0.75 });
  assert.equal([c.headDim, c.rotaryDim, c.rope!.rotaryDim], [8, 6, 6]);
  assert.is(parseModelConfig({ ...base, partial_rotary_factor: 1.0 }).rotaryDim, 8);
  assert.is(parseModelConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 } }).rotaryDim, 4);
  // int(8 × 0.3) = 2: transformers truncates
  assert.is(parseModelConfig({ ...base, partial_rotary_factor: 0.3 }).rotaryDim, 2);
  const lr = parseModelConfig({ ...base, partial_rotary_factor: 0.5, rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [3, 4] } }).rope!.scaling;
  assert.equal(lr.type === 'longrope' && lr.shortFactor, [1, 2]);
  fails(() => parseModelConfig({ ...base, partial_rotary_factor: 0.5, rope_scaling: { type: 'longrope', short_factor: [1, 2, 3, 4], long_factor: [1, 2, 3, 4] } }), 'E_CONFIG_FIELD', "short_factor' must be a list of 2");
  fails(() => parseModelConfig({ ...base, partial_rotary_factor: 0.375 }), 'E_CONFIG_FIELD', 'even number of rotated dims');
  fails(() => parseModelConfig({ ...base, partial_rotary_factor: 2 }), 'E_CONFIG_FIELD', 'partial_rotary_factor');
  // Llama-like attention in transformers rotates whole heads (a factor below 1 fails there): refused, not ignored
  fails(() => parseModelConfig({ ...base, model_type: 'llama', partial_rotary_factor: 0.75 }), 'E_CONFIG_UNSUPPORTED', 'partial_rotary_factor 0.75');
  fails(() => parseModelConfig({ ...base, model_type: 'qwen2', num_key_value_heads: 8, rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 } }), 'E_CONFIG_UNSUPPORTED', 'rope_parameters.partial_rotary_factor 0.5');
});

test('partial RoPE kernels: the leading rot dims rotate as a whole-head RoPE of width rot would, the rest pass through; backward inverts', () => {
  const n = native();
  const M = 3, H = 2, Dh = 8, rot = 6;
  const x = Float32Array.from({ length: M * H * Dh }, (_, i) => Math.sin(i * 1.7) + 0.1 * i);
  const cos = Float32Array.from({ length: M * rot / 2 }, (_, i) => Math.cos(0.3 * i)), sin = Float32Array.from({ length: M * rot / 2 }, (_, i) => Math.sin(0.3 * i));
  for (const [fwd, bwd] of [[n.ropeForward, n.ropeBackward], [n.ropeForwardRef, n.ropeBackwardRef]] as const) {
    const y = Float32Array.from(x);
    fwd(y, cos, sin, M, H, Dh, rot);
    // each head's first rot dims through a full RoPE of head size rot, the last Dh - rot unchanged
    for (let r = 0; r < M * H; r++) {
      const head = Float32Array.from(x.subarray(r * Dh, r * Dh + rot));
      fwd(head, cos.subarray(Math.floor(r / H) * rot / 2, (Math.floor(r / H) + 1) * rot / 2), sin.subarray(Math.floor(r / H) * rot / 2, (Math.floor(r / H) + 1) * rot / 2), 1, 1, rot);
      assert.equal([...y.subarray(r * Dh, r * Dh + rot)], [...head], `row ${r}: rotated part`);
      assert.equal([...y.subarray(r * Dh + rot, (r + 1) * Dh)], [...x.subarray(r * Dh + rot, (r + 1) * Dh)], `row ${r}: pass-through`);
    }
    bwd(y, cos, sin, M, H, Dh, rot);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(y[i]! - x[i]!) < 1e-5, `inverse at ${i}`);
  }
  assert.throws(() => n.ropeForward(Float32Array.from(x), cos, sin, M, H, Dh, 5), /rot/);
  assert.throws(() => n.ropeBackward(Float32Array.from(x), cos, sin, M, H, Dh, 10), /rot/);
});

test('ropeFrequencies: LongRoPE switches from the short to the long factors past the original context', () => {
  const p = { theta: 10000, dim: 8, maxPositionEmbeddings: 64, scaling: { type: 'longrope' as const, shortFactor: [1, 2, 3, 4], longFactor: [5, 6, 7, 8], attentionFactor: 1.25, originalMaxPositionEmbeddings: 16 } };
  const plain = ropeFrequencies({ ...p, scaling: null }, 16).invFreq;
  for (const [seqLen, factors] of [[16, p.scaling.shortFactor], [17, p.scaling.longFactor]] as const) {
    const r = ropeFrequencies(p, seqLen);
    assert.is(r.attentionScaling, 1.25);
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(r.invFreq[i]! - plain[i]! / factors[i]!) <= 1e-7 * plain[i]!, `seqLen ${seqLen}, frequency ${i}`);
  }
});

test('Tensor.rows: a zero-copy row range; out-of-range and scalars refused', () => {
  const t = Tensor.fromFloat32(Float32Array.from({ length: 12 }, (_, i) => i), [4, 3]);
  const r = t.rows(1, 3);
  assert.equal(r.shape, [2, 3]);
  assert.equal([...r.toFloat32()], [3, 4, 5, 6, 7, 8]);
  assert.is(r.data.buffer, t.data.buffer, 'shares the bytes');
  assert.equal(t.rows(4, 4).shape, [0, 3]);
  fails(() => t.rows(2, 5), 'E_SHAPE', '[2, 5)');
  fails(() => t.rows(3, 2), 'E_SHAPE', 'rows');
  fails(() => Tensor.fromFloat32([1], []).rows(0, 1), 'E_SHAPE', 'scalar');
});

test('adapter: q|k|v and gate|up are one expected tensor each, with their parts; parameter count unchanged', () => {
  const c = parseModelConfig({ ...base, num_key_value_heads: 2 });
  const a = getAdapter('phi3');
  const layer0 = a.expectedTensors(c).filter((e) => e.layer === 0);
  assert.equal(layer0.map((e) => [e.name, e.shape, e.parts ?? null]), [
    ['model.layers.0.input_layernorm.weight', [64], null],
    ['model.layers.0.self_attn.qkv_proj.weight', [64 + 16 + 16, 64], ['q.weight', 'k.weight', 'v.weight']],
    ['model.layers.0.self_attn.o_proj.weight', [64, 64], null],
    ['model.layers.0.post_attention_layernorm.weight', [64], null],
    ['model.layers.0.mlp.gate_up_proj.weight', [256, 64], ['gate.weight', 'up.weight']],
    ['model.layers.0.mlp.down_proj.weight', [64, 128], null],
  ]);
  assert.is(a.layerParamCount(c), layer0.reduce((n, e) => n + e.shape[0]! * (e.shape[1] ?? 1), 0));
  assert.is(a.layerTensorName('k.weight', 3), 'model.layers.3.self_attn.qkv_proj.weight');
  assert.equal(a.fusedGroup('up.weight'), ['gate.weight', 'up.weight']);
  assert.is(a.fusedGroup('o.weight'), undefined);
});

test('model directory: each role is its rows of the fused tensor; a mis-shaped fused tensor is named', async () => {
  const m = openModelDir(fixture('phi3'));
  const qkv = m.checkpoint.tensor('model.layers.1.self_attn.qkv_proj.weight').toFloat32();
  const gu = m.checkpoint.tensor('model.layers.1.mlp.gate_up_proj.weight').toFloat32();
  const D = 32;
  const rows = (t: Float32Array, a: number, b: number) => [...t.subarray(a * D, b * D)];
  assert.equal([...m.layerTensor('q.weight', 1)!.toFloat32()], rows(qkv, 0, 32));
  assert.equal([...m.layerTensor('k.weight', 1)!.toFloat32()], rows(qkv, 32, 48));
  assert.equal([...m.layerTensor('v.weight', 1)!.toFloat32()], rows(qkv, 48, 64));
  assert.equal([...m.layerTensor('gate.weight', 1)!.toFloat32()], rows(gu, 0, 64));
  assert.equal([...m.layerTensor('up.weight', 1)!.toFloat32()], rows(gu, 64, 128));
  assert.is((await inspect(fixture('phi3'))).valid, true);
  const partial = await inspect(fixture('phi3-partial'));
  assert.equal(partial.kind === 'model' && [partial.valid, partial.rope], [true, { type: 'longrope', theta: 10000, rotaryDim: 12 }]);

  const bad = path.join(tmp, 'bad-qkv');
  const cfg = JSON.parse(fs.readFileSync(path.join(fixture('phi3'), 'config.json'), 'utf8'));
  await makeTinyModel(bad, cfg, { reshape: { 'model.layers.2.self_attn.qkv_proj.weight': [60, 32] } });
  const report = await inspect(bad);
  assert.is(report.valid, false);
  assert.equal(report.kind === 'model' && report.wrongShape.map((w) => [w.name, w.expected, w.actual]), [['model.layers.2.self_attn.qkv_proj.weight', [64, 32], [60, 32]]]);
  fails(() => openModelDir(bad).layerTensor('v.weight', 2), 'E_MODEL_TENSORS', 'qkv_proj.weight has shape [60, 32]; the config implies [64, 32]');
});


test('prune + export: every replacement writes fused tensors the export reads back as the pruned model in memory', async () => {
  const calib = writeCalibText(tmp);
  const tokens = Int32Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % 128);
  for (const name of ['phi3', 'phi3-longrope-long', 'phi3-partial']) {
    const src = path.join(tmp, name);
    fs.cpSync(fixture(name), src, { recursive: true });
    writeCharTokenizer(src);
    const model = await loadModel(src);
    for (const replacement of ['none', 'linear', 'mlp', 'layer'] as const) {
      const out = path.join(tmp, `${name}-${replacement}`);
      const r = await prune(model, { outDir: out, calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range: { start: 1, end: 2 }, replacement, device: 'cpu' });
      assert.is((await inspect(out)).valid, true, `${name} ${replacement}: the export is a valid phi3 model`);
      const exported = await loadModel(out);
      assert.is(exported.config.modelType, 'phi3');
      const a = await logitsOf(r.pruned!, tokens), b = await logitsOf(exported.description, tokens), worst = maxAbsDiff(a, b);
      assert.ok(worst === 0 && a.every(Number.isFinite), `${name} ${replacement}: export vs in-memory logits differ by up to ${worst}`);
      if (replacement !== 'mlp' && replacement !== 'layer') continue;
      // the replacement is layer 1 of the export
      const qkv = openModelDir(out).checkpoint.tensor('model.layers.1.self_attn.qkv_proj.weight').toFloat32();
      if (replacement === 'mlp') assert.ok(qkv.every((v) => v === 0), 'mlp: the stacked attention projections are zero');
      if (replacement === 'layer') {
        // the trained projections, stacked: the export's rows are the replacement's q, then k, then v
        const w = r.pruned!.layers[1]!.weights();
        const parts = (['q.weight', 'k.weight', 'v.weight'] as const).map((role) => new Tensor(w[role]!.dtype as DType, w[role]!.shape, w[role]!.data).toFloat32());
        const stacked = new Float32Array(qkv.length);
        let at = 0;
        for (const p of parts) { stacked.set(p, at); at += p.length; }
        const before = openModelDir(fixture(name)).checkpoint.tensor('model.layers.1.self_attn.qkv_proj.weight').toFloat32();
        assert.ok(stacked.some((v, i) => v !== before[i]), 'layer: training changed the projections');
        // the in-memory replacement is already rounded to the stored dtype, so the rows match exactly
        assert.ok(qkv.every((v, i) => v === stacked[i]), 'layer: exported rows are the trained q | k | v');
      }
    }
  }
});

test.run();
