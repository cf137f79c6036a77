// The `lm` objective (issue 9, native/src/train/lm_loss.cpp): a frozen layer's input gradient, the head's
// next-token cross-entropy and its input gradient, and a whole lmLossStep (replacement → frozen layers → head),
// each against central finite differences of an f64 JavaScript forward (relative error ≤ 1e-3) and the losses
// against that forward and the engine's own forward (decoderLayerForward + headForward).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import os from 'node:os';
import { native } from '../src/native.js';
import { PairCache } from '../src/train/pair-cache.js';
import { nextTokenTargets, trainReplacement } from '../src/train/trainer.js';
import { dot, f64, numericGrad, randn, relErr, rmsnormF64, layernormF64, linearF64, rng, type F64 } from './backward-helpers.js';
import { forwardF64, shapes, type Kind, type Params, type Spec } from './replacement-f64.js';

const n = native();
const code = (c: string) => (e: any) => e.code === c;
const LIMIT = 1e-3;
const worst = new Map<string, number>();
function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-12) {
  const e = relErr(got, want, floor);
  worst.set(name, Math.max(worst.get(name) ?? 0, e));
  assert.ok(e <= LIMIT, `${name}: relative error ${e} > ${LIMIT}`);
}

const base: Spec = {
  batch: 2, seqLen: 5, hidden: 8, heads: 4, kvHeads: 2, headDim: 4, intermediate: 12, norm: 'rms', normEps: 1e-5,
  activation: 'silu', gatedMlp: true, preNorm: true, useRope: true, attnScale: 0.5, ropeAttentionScaling: 1,
};
const V = 11;

function dims(s: Spec): Record<string, number[]> {
  const D = s.hidden, F = s.intermediate, Q = s.heads * s.headDim, KV = s.kvHeads * s.headDim;
  return { 'q.weight': [Q, D], 'k.weight': [KV, D], 'v.weight': [KV, D], 'o.weight': [D, Q], 'gate.weight': [F, D], 'up.weight': [F, D], 'down.weight': [D, F] };
}
/** postNorms: Gemma's post-sublayer norms, weights far from 1 (so a skipped norm shows). */
function randomLayer(r: ReturnType<typeof rng>, kind: Kind, s: Spec, biases: boolean, qkNorm = false, postNorms = false): Params {
  const p: Params = {};
  for (const [role, size] of Object.entries(shapes(kind, s, biases, qkNorm, postNorms)))
    p[role] = role.startsWith('post_') ? Float32Array.from(randn(r, size, 0.5), (v) => 2 + v)
      : role.includes('norm.weight') ? Float32Array.from(randn(r, size, 0.2), (v) => 1 + v) : randn(r, size, role.endsWith('bias') ? 0.3 : 0.4);
  return p;
}
/** Weights as engine tensors in `dtype`, and the f32 values they hold (what the f64 reference must use). */
function asTensors(p: Params, s: Spec, dtype: 'f32' | 'bf16') {
  const d = dims(s), tensors: Record<string, { data: Float32Array | Uint16Array; dtype: string; shape: number[] }> = {}, values: Params = {};
  for (const [k, v] of Object.entries(p)) {
    if (dtype === 'f32') { tensors[k] = { data: v, dtype, shape: d[k] ?? [v.length] }; values[k] = v; continue; }
    const h = new Uint16Array(v.length), back = new Float32Array(v.length);
    n.convertFloats(h, 'bf16', v, 'f32');
    n.convertFloats(back, 'f32', h, 'bf16');
    tensors[k] = { data: h, dtype, shape: d[k] ?? [v.length] };
    values[k] = back;
  }
  return { tensors, values };
}
const toF64 = (p: Params) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, f64(v)]));

function inputs(s: Spec, r: ReturnType<typeof rng>) {
  const M = s.batch * s.seqLen;
  const positions = Int32Array.from({ length: M }, (_, i) => i % s.seqLen);
  const rot = s.rotaryDim ?? s.headDim;
  const invFreq = Float32Array.from({ length: rot / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / rot));
  const targets = Int32Array.from({ length: M }, (_, i) => (i % s.seqLen === s.seqLen - 1 ? -1 : Math.floor(r.uniform() * V)));
  return { positions, invFreq, targets };
}

// f64 head: mean NLL over rows with a target.
function headNllF64(s: Spec, x: F64, normW: F64 | null, normB: F64 | null, lm: F64, targets: Int32Array): number {
  const M = targets.length, D = s.hidden;
  const h = s.norm === 'layer' ? layernormF64(x, normW, normB, M, D, s.normEps) : rmsnormF64(x, normW, M, D, s.normEps);
  const logits = linearF64(h, lm, null, M, V, D);
  let sum = 0, count = 0;
  for (let m = 0; m < M; m++) {
    const t = targets[m]!;
    if (t < 0) continue;
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[m * V + v]!);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[m * V + v]! - mx);
    sum += mx + Math.log(z) - logits[m * V + t]!;
    count++;
  }
  return sum / count;
}

function headSetup(s: Spec, r: ReturnType<typeof rng>, withBias: boolean) {
  const normW = Float32Array.from(randn(r, s.hidden, 0.2), (v) => 1 + v), normB = randn(r, s.hidden, 0.3), lm = randn(r, V * s.hidden, 0.5);
  const weights: Record<string, { data: Float32Array; dtype: string; shape: number[] }> = {
    'final_norm.weight': { data: normW, dtype: 'f32', shape: [s.hidden] }, 'lm_head.weight': { data: lm, dtype: 'f32', shape: [V, s.hidden] },
  };
  if (withBias) weights['final_norm.bias'] = { data: normB, dtype: 'f32', shape: [s.hidden] };
  return { weights, NW: f64(normW), NB: withBias ? f64(normB) : null, LM: f64(lm) };
}

test('bad arguments are typed errors', async () => {
  const r = rng(1), s = base, M = s.batch * s.seqLen;
  const { tensors } = asTensors(randomLayer(r, 'layer', s, false), s, 'f32');
  const { positions, invFreq, targets } = inputs(s, r);
  const hw = headSetup(s, r, false).weights;
  const x = randn(r, M * s.hidden);
  const params = randomLayer(r, 'mlp', s, false);
  const step = (over: { layers?: any; head?: any; targets?: Int32Array }) =>
    n.lmLossStep('mlp', s, params, {}, x, over.layers ?? [tensors], over.head ?? hw, over.targets ?? targets, positions, null, invFreq);
  assert.throws(() => step({ layers: tensors }), code('E_NATIVE_ARG'));
  assert.throws(() => step({ layers: [{ ...tensors, 'q.wieght': tensors['q.weight'] }] }), code('E_NATIVE_ARG'));
  assert.throws(() => step({ layers: [{ ...tensors, 'q.weight': { ...tensors['q.weight']!, shape: [3, 3] } }] }), code('E_SHAPE'));
  assert.throws(() => step({ head: { ...hw, 'project_out.weight': { data: new Float32Array(64), dtype: 'f32', shape: [8, 8] } } }), code('E_UNSUPPORTED'));
  assert.throws(() => step({ head: { 'final_norm.weight': hw['final_norm.weight'] } }), code('E_SHAPE'));
  assert.throws(() => step({ targets: Int32Array.from(targets, () => V) }), code('E_TOKEN_RANGE'));
  assert.throws(() => step({ targets: new Int32Array(3) }), code('E_SHAPE'));
  assert.throws(() => n.frozenLayerBackward(new Float32Array(M * 8), x, x, { ...s, preNorm: false }, tensors, positions, null, invFreq), code('E_UNSUPPORTED'));
  assert.is(await n.headLossBackward(null, x, M, s, hw, new Int32Array(M).fill(-1)), -1, 'no target: -1');
});

const layerCases: { name: string; spec: Spec; biases: boolean; mask: number[] | null; dtype: 'f32' | 'bf16'; qkNorm?: boolean; postNorms?: boolean }[] = [
  { name: 'Qwen3 per-head q/k norm, GQA, RoPE, padding, bf16 weights', spec: base, biases: false, mask: [1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype: 'bf16', qkNorm: true },
  { name: 'Llama GQA, RoPE, padding, f32', spec: base, biases: false, mask: [1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype: 'f32' },
  { name: 'Llama GQA, RoPE, bf16 weights', spec: base, biases: false, mask: null, dtype: 'bf16' },
  { name: 'LayerNorm + biases, GELU plain MLP, no RoPE', spec: { ...base, kvHeads: 4, norm: 'layer', activation: 'gelu', gatedMlp: false, useRope: false }, biases: true, mask: null, dtype: 'f32' },
  { name: 'sliding window of 2 keys, padding', spec: { ...base, window: 2 }, biases: false, mask: [1, 1, 0, 1, 1, 1, 1, 1, 1, 1], dtype: 'f32' },
  { name: 'partial RoPE (2 of 4 dims per head), padding', spec: { ...base, rotaryDim: 2 }, biases: false, mask: [1, 1, 1, 1, 1, 1, 0, 1, 1, 1], dtype: 'f32' },
  { name: 'Gemma post-sublayer norms, GQA, RoPE, padding, bf16 weights', spec: { ...base, activation: 'gelu_tanh' }, biases: false, mask: [1, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype: 'bf16', postNorms: true },
  { name: 'post norms with q/k norm and a sliding window of 2, f32', spec: { ...base, window: 2 }, biases: false, mask: null, dtype: 'f32', qkNorm: true, postNorms: true },
  { name: 'post norms with LayerNorm + biases, GELU plain MLP, no RoPE', spec: { ...base, kvHeads: 4, norm: 'layer', activation: 'gelu', gatedMlp: false, useRope: false }, biases: true, mask: null, dtype: 'f32', postNorms: true },
];
for (const [ci, c] of layerCases.entries()) {
  test(`frozenLayerBackward (${c.name}): dx vs f64 finite differences`, async () => {
    const r = rng(20 + ci), s = c.spec, M = s.batch * s.seqLen;
    const { tensors, values } = asTensors(randomLayer(r, 'layer', s, c.biases, c.qkNorm, c.postNorms), s, c.dtype);
    const { positions, invFreq } = inputs(s, r);
    const mask = c.mask ? Uint8Array.from(c.mask) : null;
    const x = randn(r, M * s.hidden), G = randn(r, M * s.hidden);
    const dx = new Float32Array(M * s.hidden);
    await n.frozenLayerBackward(dx, G, x, s, tensors as any, positions, mask, invFreq);
    const X = f64(x), P = toF64(values);
    check('frozen layer dx', dx, numericGrad(X, () => dot(G, forwardF64('layer', s, P, X, positions, mask, invFreq))));
  });
}

test('headLossBackward: loss and dh vs f64 (RMSNorm; LayerNorm with bias), gradScale', async () => {
  for (const [i, s] of [base, { ...base, norm: 'layer' as const }].entries()) {
    const r = rng(30 + i), M = s.batch * s.seqLen;
    const h = headSetup(s, r, s.norm === 'layer');
    const { targets } = inputs(s, r);
    const x = randn(r, M * s.hidden, 2), X = f64(x);
    const dh = new Float32Array(M * s.hidden);
    const loss = await n.headLossBackward(dh, x, M, s, h.weights, targets);
    const L = () => headNllF64(s, X, h.NW, h.NB, h.LM, targets);
    const l64 = L();
    assert.ok(Math.abs(loss - l64) <= 1e-5 * l64, `loss ${loss} vs ${l64}`);
    check('head dh', dh, numericGrad(X, L));
    const dh2 = new Float32Array(M * s.hidden);
    assert.is(await n.headLossBackward(dh2, x, M, s, h.weights, targets, 0.5), loss);
    for (let j = 0; j < dh.length; j++) assert.ok(Math.abs(dh2[j]! - 0.5 * dh[j]!) <= 1e-7 * (1 + Math.abs(dh[j]!)));
  }
});

// post: the replacement and the frozen layers have Gemma's post-sublayer norms (trained in the one, frozen in the others)
for (const [kind, qk, post] of [['mlp', false, false], ['layer', false, false], ['layer', true, false], ['mlp', false, true], ['layer', false, true]] as const) {
  test(`lmLossStep (${kind} replacement${qk ? ' and frozen layers with q/k norm (Qwen3)' : ''}${post ? ' with post-sublayer norms, as the frozen layers (Gemma)' : ''}, 2 frozen layers, one bf16): loss and every gradient vs f64`, async () => {
    const r = rng(post ? (kind === 'mlp' ? 44 : 45) : kind === 'mlp' ? 40 : qk ? 43 : 41), s = base, M = s.batch * s.seqLen;
    const params = randomLayer(r, kind, s, false, qk, post);
    const f0 = asTensors(randomLayer(r, 'layer', s, false, qk, post), s, 'f32'), f1 = asTensors(randomLayer(r, 'layer', s, false, qk, post), s, 'bf16');
    const h = headSetup(s, r, false);
    const { positions, invFreq, targets } = inputs(s, r);
    const mask = Uint8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    targets[8] = -1;
    const x = randn(r, M * s.hidden);
    const grads: Params = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, new Float32Array(v.length)]));
    const layers = [f0.tensors, f1.tensors] as any;
    const loss = await n.lmLossStep(kind, s, params, grads, x, layers, h.weights, targets, positions, mask, invFreq);
    const P = toF64(params), F0 = toF64(f0.values), F1 = toF64(f1.values), X = f64(x);
    const L = () => {
      let y = forwardF64(kind, s, P, X, positions, mask, invFreq);
      y = forwardF64('layer', s, F0, y, positions, mask, invFreq);
      y = forwardF64('layer', s, F1, y, positions, mask, invFreq);
      return headNllF64(s, y, h.NW, null, h.LM, targets);
    };
    const l64 = L();
    assert.ok(Math.abs(loss - l64) <= 1e-5 * l64, `loss ${loss} vs ${l64}`);
    const numeric = Object.fromEntries(Object.keys(params).map((role) => [role, numericGrad(P[role]!, L)]));
    const floor = 1e-3 * Math.max(...Object.values(numeric).map((g) => Math.max(...Array.from(g, Math.abs))));
    for (const role of Object.keys(params)) check(`lmLossStep ${kind} ${role}`, grads[role]!, numeric[role]!, floor);

    // Validation loss = the step's loss = the engine's forward (decoderLayerForward + headForward) NLL.
    const ev = await n.lmLossEval(kind, s, params, x, layers, h.weights, targets, positions, mask, invFreq);
    assert.ok(Math.abs(ev - loss) <= 1e-6 * loss, `eval ${ev} vs step ${loss}`);
    const y = new Float32Array(M * s.hidden);
    await n.replacementForward(kind, s, params, y, x, positions, mask, invFreq);
    for (const w of layers) await n.decoderLayerForward(y, y, s, w, positions, mask, invFreq, null);
    const lp = new Float32Array(M);
    await n.headForward(y, M, { hidden: s.hidden, vocab: V, norm: 'rms', normEps: s.normEps }, h.weights as any, targets, null, lp);
    let nll = 0, cnt = 0;
    targets.forEach((t, m) => { if (t >= 0) { nll -= lp[m]!; cnt++; } });
    assert.ok(Math.abs(nll / cnt - loss) <= 1e-5 * loss, `engine NLL ${nll / cnt} vs ${loss}`);
  });
}

// Sliding windows: the replacement's own (spec.window) and each frozen layer's (spec.tailWindows), against the f64
// forward with the same windows, and the engine's forward with each layer's window.
test('lmLossStep (layer replacement, window 2; frozen layers with windows 3 and none): loss and gradients vs f64', async () => {
  const r = rng(42), M = base.batch * base.seqLen;
  const s: Spec & { tailWindows: number[] } = { ...base, window: 2, tailWindows: [3, 0] };
  const params = randomLayer(r, 'layer', s, false);
  const f0 = asTensors(randomLayer(r, 'layer', s, false), s, 'f32'), f1 = asTensors(randomLayer(r, 'layer', s, false), s, 'f32');
  const h = headSetup(s, r, false);
  const { positions, invFreq, targets } = inputs(s, r);
  const x = randn(r, M * s.hidden);
  const grads: Params = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, new Float32Array(v.length)]));
  const layers = [f0.tensors, f1.tensors] as any;
  const loss = await n.lmLossStep('layer', s, params, grads, x, layers, h.weights, targets, positions, null, invFreq);
  const P = toF64(params), F0 = toF64(f0.values), F1 = toF64(f1.values), X = f64(x);
  const L = (windows = [2, 3, 0]) => {
    let y = forwardF64('layer', { ...s, window: windows[0] }, P, X, positions, null, invFreq);
    y = forwardF64('layer', { ...s, window: windows[1] }, F0, y, positions, null, invFreq);
    y = forwardF64('layer', { ...s, window: windows[2] }, F1, y, positions, null, invFreq);
    return headNllF64(s, y, h.NW, null, h.LM, targets);
  };
  const l64 = L();
  assert.ok(Math.abs(loss - l64) <= 1e-5 * l64, `loss ${loss} vs ${l64}`);
  assert.ok(Math.abs(L([0, 0, 0]) - l64) > 1e-3 * l64, 'the windows change the loss (else this test could not fail)');
  const numeric = Object.fromEntries(Object.keys(params).map((role) => [role, numericGrad(P[role]!, L)]));
  const floor = 1e-3 * Math.max(...Object.values(numeric).map((g) => Math.max(...Array.from(g, Math.abs))));
  for (const role of Object.keys(params)) check(`lmLossStep windowed ${role}`, grads[role]!, numeric[role]!, floor);
  const ev = await n.lmLossEval('layer', s, params, x, layers, h.weights, targets, positions, null, invFreq);
  assert.ok(Math.abs(ev - loss) <= 1e-6 * loss, `eval ${ev} vs step ${loss}`);
  const y = new Float32Array(M * s.hidden);
  await n.replacementForward('layer', s, params, y, x, positions, null, invFreq);
  for (const [k, w] of layers.entries()) await n.decoderLayerForward(y, y, { ...s, window: s.tailWindows[k] }, w, positions, null, invFreq, null);
  const lp = new Float32Array(M);
  await n.headForward(y, M, { hidden: s.hidden, vocab: V, norm: 'rms', normEps: s.normEps }, h.weights as any, targets, null, lp);
  let nll = 0, cnt = 0;
  targets.forEach((t, m) => { if (t >= 0) { nll -= lp[m]!; cnt++; } });
  assert.ok(Math.abs(nll / cnt - loss) <= 1e-5 * loss, `engine NLL ${nll / cnt} vs ${loss}`);
  assert.throws(() => n.lmLossStep('layer', { ...s, tailWindows: [3] }, params, grads, x, layers, h.weights, targets, positions, null, invFreq), code('E_NATIVE_ARG'));
});

// Per-layer RoPE (Gemma 3: sliding and full layers rotate with other bases): frozen layers with their own inverse
// frequencies and attention scaling (spec.tailRopeInvFreq / tailRopeAttentionScaling; null = the replacement's),
// against the f64 forward with each layer's own, and the engine's forward layer by layer.
for (const kind of ['layer', 'mlp'] as const) {
  test(`lmLossStep (${kind} replacement; frozen layers with their own RoPE and the replacement's): loss and gradients vs f64`, async () => {
    const r = rng(kind === 'layer' ? 44 : 45), M = base.batch * base.seqLen;
    const { positions, invFreq, targets } = inputs(base, r);
    const own = Float32Array.from({ length: base.headDim / 2 }, (_, i) => 1 / 100 ** ((2 * i) / base.headDim) / 2);
    // three frozen layers: own rope (scaling 1.3), the replacement's (null), own rope with the replacement's scaling
    const s: Spec & { tailRopeInvFreq: (Float32Array | null)[]; tailRopeAttentionScaling: number[] } =
      { ...base, ropeAttentionScaling: 0.9, tailRopeInvFreq: [own, null, own], tailRopeAttentionScaling: [1.3, 0.9, 0.9] };
    const params = randomLayer(r, kind, s, false);
    const fr = [0, 1, 2].map((k) => asTensors(randomLayer(r, 'layer', s, false), s, k === 1 ? 'bf16' : 'f32'));
    const h = headSetup(s, r, false);
    const mask = Uint8Array.from([1, 1, 1, 1, 1, 1, 0, 1, 1, 1]);
    const x = randn(r, M * s.hidden);
    const grads: Params = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, new Float32Array(v.length)]));
    const layers = fr.map((f) => f.tensors) as any;
    const loss = await n.lmLossStep(kind, s, params, grads, x, layers, h.weights, targets, positions, mask, invFreq);
    const P = toF64(params), F = fr.map((f) => toF64(f.values)), X = f64(x);
    const L = (perLayer = true) => {
      let y = forwardF64(kind, s, P, X, positions, mask, invFreq);
      for (let k = 0; k < 3; k++)
        y = perLayer ? forwardF64('layer', { ...s, ropeAttentionScaling: s.tailRopeAttentionScaling[k]! }, F[k]!, y, positions, mask, s.tailRopeInvFreq[k] ?? invFreq)
          : forwardF64('layer', s, F[k]!, y, positions, mask, invFreq);
      return headNllF64(s, y, h.NW, null, h.LM, targets);
    };
    const l64 = L(), ignored = L(false);
    console.log(`  ${kind}: lm loss with per-layer tail RoPE ${l64.toFixed(6)}, with the replacement's for all ${ignored.toFixed(6)}`);
    assert.ok(Math.abs(loss - l64) <= 1e-5 * l64, `loss ${loss} vs ${l64}`);
    assert.ok(Math.abs(ignored - l64) > 1e-3 * l64, 'the per-layer RoPE changes the loss (else this test could not fail)');
    const numeric = Object.fromEntries(Object.keys(params).map((role) => [role, numericGrad(P[role]!, () => L())]));
    const floor = 1e-3 * Math.max(...Object.values(numeric).map((g) => Math.max(...Array.from(g, Math.abs))));
    for (const role of Object.keys(params)) check(`lmLossStep tail rope ${kind} ${role}`, grads[role]!, numeric[role]!, floor);
    const ev = await n.lmLossEval(kind, s, params, x, layers, h.weights, targets, positions, mask, invFreq);
    assert.ok(Math.abs(ev - loss) <= 1e-6 * loss, `eval ${ev} vs step ${loss}`);
    // The engine's forward, each frozen layer with its own RoPE.
    const y = new Float32Array(M * s.hidden);
    await n.replacementForward(kind, s, params, y, x, positions, mask, invFreq);
    for (const [k, w] of layers.entries())
      await n.decoderLayerForward(y, y, { ...s, ropeAttentionScaling: s.tailRopeAttentionScaling[k]! }, w, positions, mask, s.tailRopeInvFreq[k] ?? invFreq, null);
    const lp = new Float32Array(M);
    await n.headForward(y, M, { hidden: s.hidden, vocab: V, norm: 'rms', normEps: s.normEps }, h.weights as any, targets, null, lp);
    let nll = 0, cnt = 0;
    targets.forEach((t, m) => { if (t >= 0) { nll -= lp[m]!; cnt++; } });
    assert.ok(Math.abs(nll / cnt - loss) <= 1e-5 * loss, `engine NLL ${nll / cnt} vs ${loss}`);
    // Without the per-layer entries the step is the one-rope step (what ignoring them would give).
    const plain = await n.lmLossEval(kind, { ...base, ropeAttentionScaling: 0.9 }, params, x, layers, h.weights, targets, positions, mask, invFreq);
    assert.ok(Math.abs(plain - ignored) <= 1e-5 * ignored, `one rope: ${plain} vs f64 ${ignored}`);
    // Bad input: one entry per frozen layer, Float32Arrays of rotaryDim / 2, finite scalings, and RoPE layers.
    const bad = (over: Record<string, unknown>) => () => n.lmLossEval(kind, { ...s, ...over } as any, params, x, layers, h.weights, targets, positions, mask, invFreq);
    assert.throws(bad({ tailRopeInvFreq: [own, null] }), code('E_NATIVE_ARG'));
    assert.throws(bad({ tailRopeInvFreq: [own, null, new Float32Array(3)] }), code('E_SHAPE'));
    assert.throws(bad({ tailRopeInvFreq: own }), code('E_NATIVE_ARG'));
    assert.throws(bad({ tailRopeAttentionScaling: [1, 1] }), code('E_NATIVE_ARG'));
    assert.throws(bad({ tailRopeAttentionScaling: [1, NaN, 1] }), code('E_NATIVE_ARG'));
  });
}

test('trainer, loss lm: x-only cache, next-token targets, the student learns the teacher\'s tokens', async () => {
  assert.equal(Array.from(nextTokenTargets([Int32Array.from([5, 6, 7]), Int32Array.from([1, 2, 3])], 3)), [6, 7, -1, 2, 3, -1]);
  const r = rng(60), s = { ...base, batch: 1, seqLen: 8 }, T = s.seqLen, D = s.hidden;
  const teacher = randomLayer(r, 'mlp', s, false);
  const student = Object.fromEntries(Object.entries(teacher).map(([k, v]) => [k, Float32Array.from(v, (x) => x + 0.15 * r.normal())]));
  const frozen = asTensors(randomLayer(r, 'layer', s, false), s, 'f32').tensors as any;
  const h = headSetup(s, r, false);
  h.LM.forEach((_, i) => { h.weights['lm_head.weight']!.data[i]! *= 4; });  // confident teacher
  const { invFreq } = inputs(s, r);
  const pos = Int32Array.from({ length: T }, (_, i) => i);
  const cache = (blocks: number) => new PairCache({ blocks, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 30, dir: os.tmpdir(), targets: false });
  const train = cache(12), val = cache(4), tokens: Int32Array[][] = [[], []];
  assert.is(train.blockBytes, T * D * 4, 'x only');
  for (const [ci, c] of [train, val].entries())
    for (let b = 0; b < c.blocks; b++) {
      const x = randn(r, T * D), y = new Float32Array(T * D), logits = new Float32Array(T * V);
      await n.replacementForward('mlp', s, teacher, y, x, pos, null, invFreq);
      await n.decoderLayerForward(y, y, s, frozen, pos, null, invFreq, null);
      await n.headForward(y, T, { hidden: D, vocab: V, norm: 'rms', normEps: s.normEps }, h.weights as any, null, logits, null);
      const ids = new Int32Array(T);
      for (let t = 0; t + 1 < T; t++) { let best = 0; for (let v = 1; v < V; v++) if (logits[t * V + v]! > logits[t * V + best]!) best = v; ids[t + 1] = best; }
      c.add(x, new Float32Array(0));
      tokens[ci]!.push(ids);
    }
  const shapesOf = Object.fromEntries(Object.keys(student).map((k) => [k, dims(s)[k] ?? [student[k]!.length]]));
  const semantics = { hidden: D, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, intermediate: s.intermediate, norm: 'rms' as const, normEps: s.normEps, activation: 'silu' as const, gatedMlp: true, preNorm: true, attnScale: 0.5 };
  const lm = { layers: [frozen], head: h.weights as any, trainTokens: tokens[0]!, validationTokens: tokens[1]! };
  const opts = { kind: 'mlp' as const, semantics, ropeInvFreq: invFreq, ropeAttentionScaling: 1, init: student, shapes: shapesOf, train, validation: val, lr: 1e-2, minLr: 1e-3, epochs: 10, seed: 1, evalEvery: 4 };
  let err: any = null;
  await trainReplacement({ ...opts, loss: 'lm' }).catch((e) => { err = e; });
  assert.is(err?.code, 'E_INVALID_OPTION', 'loss lm without the frozen tail');
  let before = 0;
  for (let j = 0; j < val.size; j++)
    before += await n.lmLossEval('mlp', { ...s, attnScale: 0.5 }, student, val.read(j).x, [frozen], h.weights as any, nextTokenTargets([tokens[1]![j]!], T), pos, null, invFreq) / val.size;
  const res = await trainReplacement({ ...opts, loss: 'lm', lm });
  assert.ok(res.history.every((x) => Number.isFinite(x.loss)));
  assert.ok(res.bestValLoss! < 0.6 * before, `validation NLL ${before} -> ${res.bestValLoss}`);
  train.close(); val.close();
});

test('trainer, loss lm, frozen layers with their own RoPE (LmTail.ropes): the steps take them; lengths are checked', async () => {
  const r = rng(61), s = { ...base, batch: 1, seqLen: 8 }, T = s.seqLen, D = s.hidden;
  const params = randomLayer(r, 'layer', s, false);
  const frozen = [0, 1].map(() => asTensors(randomLayer(r, 'layer', s, false), s, 'f32').tensors as any);
  const h = headSetup(s, r, false);
  const { invFreq } = inputs(s, r);
  const own = { invFreq: Float32Array.from(invFreq, (v) => v * 7), attentionScaling: 1.2 };
  const pos = Int32Array.from({ length: T }, (_, i) => i);
  const train = new PairCache({ blocks: 1, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 20, dir: os.tmpdir(), targets: false });
  const x = randn(r, T * D);
  train.add(x, new Float32Array(0));
  const ids = Int32Array.from({ length: T }, () => Math.floor(r.uniform() * V));
  const semantics = { hidden: D, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, intermediate: s.intermediate, norm: 'rms' as const, normEps: s.normEps, activation: 'silu' as const, gatedMlp: true, preNorm: true, attnScale: 0.5 };
  const shapesOf = Object.fromEntries(Object.keys(params).map((k) => [k, dims(s)[k] ?? [params[k]!.length]]));
  const run = (ropes?: ({ invFreq: Float32Array; attentionScaling: number } | null)[]) => trainReplacement({
    kind: 'layer', semantics, ropeInvFreq: invFreq, ropeAttentionScaling: 1, init: params, shapes: shapesOf, train, validation: null, loss: 'lm', epochs: 1, seed: 1,
    lm: { layers: frozen, head: h.weights as any, trainTokens: [ids], validationTokens: [], ...(ropes ? { ropes } : {}) },
  });
  const evalWith = (extra: object) => n.lmLossEval('layer', { ...s, attnScale: 0.5, ...extra }, params, x, frozen, h.weights as any, nextTokenTargets([ids], T), pos, null, invFreq);
  const perLayer = await evalWith({ tailRopeInvFreq: [null, own.invFreq], tailRopeAttentionScaling: [1, own.attentionScaling] });
  const shared = await evalWith({});
  assert.ok(Math.abs(perLayer - shared) > 1e-3 * shared, `the tail's own rope changes the loss (${perLayer} vs ${shared})`);
  // step 1's loss is taken at the initial weights: the per-layer loss, not the shared one
  const got = (await run([null, own])).history[0]!.loss;
  assert.ok(Math.abs(got - perLayer) <= 1e-6 * perLayer, `step loss ${got} vs lmLossEval with tail ropes ${perLayer}`);
  // entries equal to the replacement's rope are the replacement's: the one-rope run
  const same = (await run([{ invFreq, attentionScaling: 1 }, null])).history[0]!.loss;
  assert.ok(Math.abs(same - shared) <= 1e-6 * shared, `step loss ${same} vs the one-rope loss ${shared}`);
  let err: any = null;
  await run([own]).catch((e) => { err = e; });
  assert.is(err?.code, 'E_SHAPE');
  train.close();
});

test('worst relative errors', () => {
  const lines = [...worst].map(([k, v]) => `${k.padEnd(34)} ${v.toExponential(2)}`);
  console.log(`  lm-loss gradient check, worst relative error (limit 1e-3):\n    ${lines.join('\n    ')}`);
  assert.ok(worst.size > 0);
});

test.run();
