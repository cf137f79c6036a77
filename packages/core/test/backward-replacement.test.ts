// Replacement training step (native/src/train/replacement.cpp): bad arguments, then for `mlp` and `layer`
// replacements in several configurations the forward output and loss against an f64 JavaScript forward, and
// every parameter gradient against central finite differences of that forward (relative error ≤ 1e-3, issue 5;
// the denominator is floored at 1e-3 of the case's largest gradient).
// Gradients accumulate across calls (micro-batching) and scale with gradScale.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import { f64, numericGrad, randn, relErr, rng, type F64 } from './backward-helpers.js';
import { forwardF64, shapes, type Kind, type Params, type Spec } from './replacement-f64.js';

const n = native();
const code = (c: string) => (e: any) => e.code === c;

function lossF64(s: Spec, y: F64, target: Float32Array, mask: Uint8Array | null): number {
  const D = s.hidden;
  let sum = 0, real = 0;
  for (let m = 0; m < s.batch * s.seqLen; m++) {
    if (mask && !mask[m]) continue;
    real++;
    for (let i = 0; i < D; i++) sum += (y[m * D + i]! - target[m * D + i]!) ** 2;
  }
  return sum / (real * D);
}

// ---- cases -------------------------------------------------------------------------------------------------
const base: Spec = {
  batch: 2, seqLen: 5, hidden: 8, heads: 4, kvHeads: 2, headDim: 4, intermediate: 12, norm: 'rms', normEps: 1e-5,
  activation: 'silu', gatedMlp: true, preNorm: true, useRope: true, attnScale: 0.5, ropeAttentionScaling: 1,
};
const cases: { name: string; kind: Kind; spec: Spec; biases: boolean; mask: number[] | null; qkNorm?: boolean; postNorms?: boolean }[] = [
  { name: 'mlp, SwiGLU + RMSNorm (Llama)', kind: 'mlp', spec: base, biases: false, mask: null },
  { name: 'mlp, fc1-ReLU-fc2 + LayerNorm with biases (OPT)', kind: 'mlp', spec: { ...base, norm: 'layer', activation: 'relu', gatedMlp: false }, biases: true, mask: null },
  { name: 'layer, Llama GQA 4/2 with RoPE and padding', kind: 'layer', spec: base, biases: false, mask: [0, 1, 1, 1, 1, 1, 1, 1, 1, 0] },
  { name: 'layer, Qwen2-like biases, MQA 4/1, gelu_tanh', kind: 'layer', spec: { ...base, kvHeads: 1, activation: 'gelu_tanh', ropeAttentionScaling: 1.1 }, biases: true, mask: null },
  { name: 'layer, Qwen3 per-head q/k RMSNorm, GQA 4/2, head_dim 4 != hidden/heads, RoPE and padding', kind: 'layer', spec: base, biases: false, mask: [1, 1, 1, 1, 0, 0, 1, 1, 1, 1], qkNorm: true },
  { name: 'layer, q/k norm with biases and a sliding window of 2', kind: 'layer', spec: { ...base, window: 2 }, biases: true, mask: null, qkNorm: true },
  { name: 'layer, partial RoPE (2 of 4 dims per head rotated, Phi-4-mini style) with padding', kind: 'layer', spec: { ...base, rotaryDim: 2 }, biases: false, mask: [1, 1, 1, 1, 1, 1, 1, 0, 0, 1] },
  { name: 'layer, LayerNorm + GELU plain MLP, no RoPE, MHA', kind: 'layer', spec: { ...base, kvHeads: 4, norm: 'layer', activation: 'gelu', gatedMlp: false, useRope: false }, biases: true, mask: [1, 1, 1, 0, 0, 1, 1, 1, 1, 1] },
  // Gemma 2/3 post-sublayer norms (post_attn_norm / post_mlp_norm), weights far from 1 so a skipped norm fails
  { name: 'mlp, SwiGLU + RMSNorm with post_mlp_norm (Gemma)', kind: 'mlp', spec: { ...base, activation: 'gelu_tanh' }, biases: false, mask: [1, 1, 1, 1, 1, 1, 0, 0, 1, 1], postNorms: true },
  { name: 'mlp, fc1-ReLU-fc2 + LayerNorm with biases and post_mlp_norm', kind: 'mlp', spec: { ...base, norm: 'layer', activation: 'relu', gatedMlp: false }, biases: true, mask: null, postNorms: true },
  { name: 'layer, Gemma post norms, GQA 4/2, RoPE and padding', kind: 'layer', spec: { ...base, activation: 'gelu_tanh' }, biases: false, mask: [0, 1, 1, 1, 1, 1, 1, 1, 1, 0], postNorms: true },
  { name: 'layer, post norms with q/k norm, biases and a sliding window of 2', kind: 'layer', spec: { ...base, window: 2 }, biases: true, mask: null, qkNorm: true, postNorms: true },
  { name: 'layer, post norms with LayerNorm + GELU plain MLP, no RoPE', kind: 'layer', spec: { ...base, kvHeads: 4, norm: 'layer', activation: 'gelu', gatedMlp: false, useRope: false }, biases: true, mask: [1, 1, 1, 0, 0, 1, 1, 1, 1, 1], postNorms: true },
];

function setup(c: (typeof cases)[number], seed: number) {
  const r = rng(seed);
  const s = c.spec, M = s.batch * s.seqLen;
  const params: Params = {};
  for (const [role, size] of Object.entries(shapes(c.kind, s, c.biases, c.qkNorm, c.postNorms)))
    params[role] = role.startsWith('post_') ? Float32Array.from(randn(r, size, 0.5), (v) => 2 + v)
      : role.includes('norm.weight') ? Float32Array.from(randn(r, size, 0.2), (v) => 1 + v) : randn(r, size, role.endsWith('bias') ? 0.3 : 0.4);
  const x = randn(r, M * s.hidden), target = randn(r, M * s.hidden);
  const positions = Int32Array.from({ length: M }, (_, i) => (i % s.seqLen) + 3 * Math.floor(i / s.seqLen));
  const mask = c.mask ? Uint8Array.from(c.mask) : null;
  const rot = s.rotaryDim ?? s.headDim;
  const invFreq = Float32Array.from({ length: rot / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / rot));
  return { params, x, target, positions, mask, invFreq };
}

const zeros = (p: Params): Params => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, new Float32Array(v.length)]));

test('bad arguments are typed errors', async () => {
  const c = cases[2]!, d = setup(c, 1), s = c.spec;
  const call = (over: { kind?: string; spec?: object; params?: Params; grads?: Params; x?: Float32Array }) =>
    n.replacementStep(over.kind ?? c.kind, over.spec ?? s, over.params ?? d.params, over.grads ?? zeros(d.params),
      over.x ?? d.x, d.target, d.positions, d.mask, d.invFreq);
  assert.throws(() => call({ kind: 'attention' }), code('E_NATIVE_ARG'));
  assert.throws(() => call({ params: { ...d.params, 'q.wieght': d.params['q.weight']! } }), code('E_NATIVE_ARG'));
  const { 'k.weight': _, ...noK } = d.params;
  assert.throws(() => call({ params: noK }), code('E_NATIVE_ARG'));
  assert.throws(() => call({ params: { ...d.params, 'q.weight': new Float32Array(3) } }), code('E_SHAPE'));
  assert.throws(() => call({ params: { ...d.params, 'attn_norm.bias': new Float32Array(8) } }), code('E_NATIVE_ARG'));
  assert.throws(() => call({ grads: { ...zeros(d.params), 'q.bias': new Float32Array(16) } }), code('E_NATIVE_ARG'));
  assert.throws(() => call({ spec: { ...s, preNorm: false } }), code('E_UNSUPPORTED'));
  assert.throws(() => call({ spec: { ...s, kvHeads: 3 } }), code('E_SHAPE'));
  assert.throws(() => call({ spec: { ...s, norm: 'batch' } }), code('E_NATIVE_ARG'));
  assert.throws(() => call({ x: new Float32Array(5) }), code('E_SHAPE'));
  assert.throws(() => n.replacementStep(c.kind, s, d.params, zeros(d.params), d.x, d.target, null, d.mask, d.invFreq), code('E_NATIVE_ARG'));
  // q/k norms: [headDim] each, both or neither, RMS layers only, never in an mlp replacement
  const qn = new Float32Array(s.headDim).fill(1);
  assert.throws(() => call({ params: { ...d.params, 'q_norm.weight': qn } }), code('E_NATIVE_ARG'));
  assert.throws(() => call({ params: { ...d.params, 'q_norm.weight': qn, 'k_norm.weight': new Float32Array(3) } }), code('E_SHAPE'));
  const ln = setup(cases[cases.length - 1]!, 2);
  assert.throws(() => n.replacementStep('layer', cases[cases.length - 1]!.spec, { ...ln.params, 'q_norm.weight': qn, 'k_norm.weight': qn },
    zeros(ln.params), ln.x, ln.target, ln.positions, ln.mask, ln.invFreq), code('E_NATIVE_ARG'));
  const mlp = setup(cases[0]!, 3);
  assert.throws(() => n.replacementStep('mlp', cases[0]!.spec, { ...mlp.params, 'q_norm.weight': qn, 'k_norm.weight': qn },
    zeros(mlp.params), mlp.x, mlp.target, mlp.positions, mlp.mask, mlp.invFreq), code('E_NATIVE_ARG'));
  // post-sublayer norms: [hidden]; an mlp replacement has no attention output to norm
  const pn = new Float32Array(s.hidden).fill(1);
  assert.throws(() => n.replacementStep('mlp', cases[0]!.spec, { ...mlp.params, 'post_attn_norm.weight': pn },
    zeros(mlp.params), mlp.x, mlp.target, mlp.positions, mlp.mask, mlp.invFreq), /post_attn_norm\.weight'\] is not used/);
  assert.throws(() => call({ params: { ...d.params, 'post_mlp_norm.weight': new Float32Array(3) } }), code('E_SHAPE'));
  assert.throws(() => call({ params: { ...d.params, 'post_attn_norm.weight': new Float32Array(s.hidden + 1) } }), code('E_SHAPE'));
});

const worst = new Map<string, number>();
for (const [ci, c] of cases.entries()) {
  test(`${c.name}: forward, loss and every gradient vs f64 finite differences`, async () => {
    const d = setup(c, 50 + ci), s = c.spec, M = s.batch * s.seqLen;
    const P = Object.fromEntries(Object.entries(d.params).map(([k, v]) => [k, f64(v)]));
    const X = f64(d.x);
    const yRef = forwardF64(c.kind, s, P, X, d.positions, d.mask, d.invFreq);
    const y = new Float32Array(M * s.hidden);
    await n.replacementForward(c.kind, s, d.params, y, d.x, d.positions, d.mask, d.invFreq);
    const ef = relErr(y, yRef);
    assert.ok(ef < 1e-5, `forward: relative error ${ef}`);

    const grads = zeros(d.params);
    const loss = await n.replacementStep(c.kind, s, d.params, grads, d.x, d.target, d.positions, d.mask, d.invFreq);
    const L = () => lossF64(s, forwardF64(c.kind, s, P, X, d.positions, d.mask, d.invFreq), d.target, d.mask);
    const l64 = L();
    assert.ok(Number.isFinite(loss) && Math.abs(loss - l64) <= 1e-5 * l64, `loss ${loss} vs ${l64}`);
    // Gradients that are exactly zero in theory (k.bias without RoPE: softmax ignores a constant score shift)
    // are compared against 1e-3 of the largest gradient of the case instead of their own size.
    const numeric = Object.fromEntries(Object.keys(d.params).map((role) => [role, numericGrad(P[role]!, L)]));
    const floor = 1e-3 * Math.max(...Object.values(numeric).map((g) => Math.max(...Array.from(g, Math.abs))));
    for (const role of Object.keys(d.params)) {
      const e = relErr(grads[role]!, numeric[role]!, floor);
      worst.set(`${c.kind} ${role}`, Math.max(worst.get(`${c.kind} ${role}`) ?? 0, e));
      assert.ok(e <= 1e-3, `${role}: relative error ${e}`);
    }
  });
}

test('replacementForward equals the engine\'s decoderLayerForward / mlpBlockForward on the same f32 weights', async () => {
  for (const [ci, c] of cases.entries()) {
    const d = setup(c, 70 + ci), s = c.spec, M = s.batch * s.seqLen;
    const y = new Float32Array(M * s.hidden), e = new Float32Array(M * s.hidden);
    await n.replacementForward(c.kind, s, d.params, y, d.x, d.positions, d.mask, d.invFreq);
    const weights = Object.fromEntries(Object.entries(d.params).map(([k, v]) => [k, { data: v, dtype: 'f32', shape: [v.length] }]));
    // The engine checks 2-D weight shapes; give them theirs.
    const D = s.hidden, F = s.intermediate, Q = s.heads * s.headDim, KV = s.kvHeads * s.headDim;
    const dims: Record<string, number[]> = {
      'q.weight': [Q, D], 'k.weight': [KV, D], 'v.weight': [KV, D], 'o.weight': [D, Q], 'gate.weight': [F, D],
      'up.weight': [F, D], 'down.weight': [D, F],
    };
    for (const [k, w] of Object.entries(weights)) if (dims[k]) w.shape = dims[k]!;
    if (c.kind === 'mlp') await n.mlpBlockForward(e, d.x, s, weights);
    else await n.decoderLayerForward(e, d.x, s, weights, d.positions, d.mask, d.invFreq, null);
    const err = relErr(y, e);
    assert.ok(err < 1e-5, `${c.name}: relative difference ${err}`);
  }
});

test('gradients accumulate across calls and scale with gradScale', async () => {
  const c = cases[2]!, d = setup(c, 9);
  const g1 = zeros(d.params), g2 = zeros(d.params), gh = zeros(d.params);
  const args = [d.x, d.target, d.positions, d.mask, d.invFreq] as const;
  const l1 = await n.replacementStep(c.kind, c.spec, d.params, g1, ...args);
  await n.replacementStep(c.kind, c.spec, d.params, g2, ...args);
  const l2 = await n.replacementStep(c.kind, c.spec, d.params, g2, ...args);
  const lh = await n.replacementStep(c.kind, { ...c.spec, gradScale: 0.5 }, d.params, gh, ...args);
  assert.is(l1, l2, 'same inputs, same loss (deterministic)');
  assert.is(lh, l1, 'gradScale does not scale the loss');
  for (const role of Object.keys(d.params)) {
    for (let i = 0; i < g1[role]!.length; i++) {
      const a = g1[role]![i]!;
      assert.ok(Math.abs(g2[role]![i]! - 2 * a) <= 1e-6 * (1 + Math.abs(a)), `${role}[${i}] accumulates`);
      assert.ok(Math.abs(gh[role]![i]! - 0.5 * a) <= 1e-6 * (1 + Math.abs(a)), `${role}[${i}] gradScale`);
    }
  }
  // Frozen roles: a role left out of grads is not written (and training still runs).
  const { 'q.weight': _, ...partial } = zeros(d.params);
  await n.replacementStep(c.kind, c.spec, d.params, partial, ...args);
  assert.equal(Array.from(partial['o.weight']!.slice(0, 4)).map((v) => Math.abs(v) > 0), [true, true, true, true]);
});

// The step's large work buffers (>= 1 MiB) are kept for the next call (streamline/scratch.h): the reused, dirty
// memory must not change a bit of the result, and scratchTrim must hand it all back.
test('work buffers are reused across steps without changing the result, and scratchTrim frees them', async () => {
  const c = { name: 'mlp, wide', kind: 'mlp' as Kind, spec: { ...base, batch: 1, seqLen: 64, hidden: 16, intermediate: 4096 }, biases: false, mask: null };
  const d = setup(c, 21);
  const args = [d.x, d.target, d.positions, d.mask, d.invFreq] as const;
  n.scratchTrim();
  assert.is(n.scratchBytes(), 0);
  const g1 = zeros(d.params), g2 = zeros(d.params);
  const l1 = await n.replacementStep(c.kind, c.spec, d.params, g1, ...args);
  const held = n.scratchBytes();
  assert.ok(held >= 3 * 64 * 4096 * 4, `the [64, 4096] gate/up/hidden buffers are kept (${held} bytes)`);
  // Poison what the cache holds by running a step on other data first: the next step gets that memory back dirty.
  const other = setup(c, 22);
  await n.replacementStep(c.kind, c.spec, other.params, zeros(other.params), other.x, other.target, other.positions, other.mask, other.invFreq);
  const l2 = await n.replacementStep(c.kind, c.spec, d.params, g2, ...args);
  assert.is(l2, l1, 'loss bitwise');
  for (const role of Object.keys(d.params)) assert.equal(g2[role], g1[role], `${role} bitwise`);
  assert.is(n.scratchBytes(), held, 'the same blocks are reused, none added');
  assert.is(n.scratchTrim(), held);
  assert.is(n.scratchBytes(), 0);
});

test('tensor-object params, the gradScale argument and replacementLoss (the trainer\'s calling convention)', async () => {
  const c = cases[2]!, d = setup(c, 11), s = c.spec;
  const D = s.hidden, F = s.intermediate, Q = s.heads * s.headDim, KV = s.kvHeads * s.headDim;
  const dims: Record<string, number[]> = { 'q.weight': [Q, D], 'k.weight': [KV, D], 'v.weight': [KV, D], 'o.weight': [D, Q], 'gate.weight': [F, D], 'up.weight': [F, D], 'down.weight': [D, F] };
  const asTensors = (p: Params) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, { data: v, dtype: 'f32', shape: dims[k] ?? [v.length] }]));
  const ga = zeros(d.params), gb = zeros(d.params);
  const la = await n.replacementStep(c.kind, s, d.params, ga, d.x, d.target, d.positions, d.mask, d.invFreq);
  const lb = await n.replacementStep(c.kind, { ...s, gradScale: 2 }, asTensors(d.params), asTensors(gb), d.x, d.target, d.positions, d.mask, d.invFreq, 0.25);
  assert.is(lb, la);
  for (const role of Object.keys(ga))
    for (let i = 0; i < ga[role]!.length; i++) assert.ok(Math.abs(gb[role]![i]! - 0.5 * ga[role]![i]!) <= 1e-7 * (1 + Math.abs(ga[role]![i]!)), role);
  const lv = await n.replacementLoss(c.kind, s, asTensors(d.params), d.x, d.target, d.positions, d.mask, d.invFreq);
  assert.is(lv, la, 'validation loss is the step\'s loss');
  const bad = asTensors(d.params);
  bad['q.weight']!.dtype = 'bf16';
  assert.throws(() => n.replacementLoss(c.kind, s, bad, d.x, d.target, d.positions, d.mask, d.invFreq), code('E_DTYPE'));
  const badShape = asTensors(d.params);
  badShape['q.weight']!.shape = [Q, D + 1];
  assert.throws(() => n.replacementLoss(c.kind, s, badShape, d.x, d.target, d.positions, d.mask, d.invFreq), code('E_SHAPE'));
  const allPad = new Uint8Array(s.batch * s.seqLen);
  assert.is(await n.replacementLoss(c.kind, s, d.params, d.x, d.target, d.positions, allPad, d.invFreq), 0, 'no real token: loss 0');
});

test('worst relative errors', () => {
  const lines = [...worst].map(([k, v]) => `${k.padEnd(24)} ${v.toExponential(2)}`);
  console.log(`  replacement gradient check, worst relative error (limit 1e-3):\n    ${lines.join('\n    ')}`);
  assert.ok(worst.size > 0);
});

test.run();
