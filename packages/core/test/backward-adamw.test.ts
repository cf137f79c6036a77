// Optimiser: adamwStep against a line-by-line JavaScript transcription of torch.optim.AdamW's single-tensor
// update (f32 tensors, Python-float scalars rounded to f32 where torch rounds them), gradient norm and
// clip_grad_norm_ semantics, and the learning-rate schedule.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { learningRate } from '../src/train/schedule.js';
import { native } from '../src/native.js';
import { randn, rng } from './backward-helpers.js';

const n = native();
const code = (c: string) => (e: any) => e.code === c;
const fr = Math.fround;

interface Opt { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number }

// torch/optim/adam.py _single_tensor_adam with decoupled weight decay, amsgrad=False, capturable=False:
//   param.mul_(1 - lr * weight_decay); exp_avg.lerp_(grad, 1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   step_size = lr / (1 - beta1**step); bias_correction2_sqrt = (1 - beta2**step) ** 0.5
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps); param.addcdiv_(exp_avg, denom, value=-step_size)
function torchAdamW(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, o: Opt) {
  const decay = fr(1 - o.lr * o.weightDecay), w = fr(1 - o.beta1), b2 = fr(o.beta2), omb2 = fr(1 - o.beta2);
  const stepSize = fr(-(o.lr / (1 - o.beta1 ** o.step))), bc2 = fr(Math.sqrt(1 - o.beta2 ** o.step)), eps = fr(o.eps);
  for (let i = 0; i < p.length; i++) {
    let pi = p[i]!, mi = m[i]!, vi = v[i]!;
    const gi = g[i]!;
    if (o.weightDecay !== 0) pi = fr(pi * decay);
    mi = w < 0.5 ? fr(mi + fr(w * fr(gi - mi))) : fr(gi - fr(fr(gi - mi) * fr(1 - w)));
    vi = fr(vi * b2);
    vi = fr(vi + fr(fr(omb2 * gi) * gi));
    const denom = fr(fr(fr(Math.sqrt(vi)) / bc2) + eps);
    pi = fr(pi + fr(fr(stepSize * mi) / denom));
    p[i] = pi; m[i] = mi; v[i] = vi;
  }
}

test('bad arguments are typed errors', () => {
  const f = (k: number) => new Float32Array(k);
  const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
  assert.throws(() => n.adamwStep([f(3)], [f(4)], [f(3)], [f(3)], o), code('E_SHAPE'));
  assert.throws(() => n.adamwStep([f(3)], [f(3), f(1)], [f(3)], [f(3)], o), code('E_SHAPE'));
  assert.throws(() => n.adamwStep([f(3)], [f(3)], [f(3)], [new Float64Array(3)], o), code('E_NATIVE_ARG'));
  assert.throws(() => n.adamwStep([f(3)], [f(3)], [f(3)], [f(3)], { ...o, step: 0 }), code('E_NATIVE_ARG'));
  assert.throws(() => n.adamwStep([f(3)], [f(3)], [f(3)], [f(3)], { ...o, beta2: 1 }), code('E_NATIVE_ARG'));
  const { weightDecay: _, ...missing } = o;
  assert.throws(() => n.adamwStep([f(3)], [f(3)], [f(3)], [f(3)], missing), code('E_NATIVE_ARG'));
  assert.throws(() => n.gradNorm(f(3)), code('E_NATIVE_ARG'));
  assert.throws(() => n.clipGradNorm([f(3)], 0), code('E_NATIVE_ARG'));
});

for (const [label, base] of [
  ['defaults of issue 5', { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-3 }],
  ['beta1 0.3 (other lerp branch), no weight decay', { lr: 1e-2, beta1: 0.3, beta2: 0.95, eps: 1e-6, weightDecay: 0 }],
] as const) {
  test(`adamwStep matches the torch transcription bit for bit over 6 steps (${label})`, () => {
    const r = rng(21);
    const sizes = [1, 37, 70000];
    const P = sizes.map((s) => randn(r, s)), M = sizes.map((s) => new Float32Array(s)), V = sizes.map((s) => new Float32Array(s));
    const P2 = P.map((a) => a.slice()), M2 = M.map((a) => a.slice()), V2 = V.map((a) => a.slice());
    for (let step = 1; step <= 6; step++) {
      const G = sizes.map((s) => randn(r, s, step === 3 ? 1e-6 : 1)); // a tiny-gradient step too
      const o = { ...base, lr: base.lr * (1 - step / 10), step };
      n.adamwStep(P, G, M, V, o);
      for (let t = 0; t < sizes.length; t++) torchAdamW(P2[t]!, G[t]!, M2[t]!, V2[t]!, o);
    }
    for (let t = 0; t < sizes.length; t++) {
      for (let i = 0; i < sizes[t]!; i++) {
        assert.ok(Number.isFinite(P[t]![i]!));
        if (P[t]![i] !== P2[t]![i] || M[t]![i] !== M2[t]![i] || V[t]![i] !== V2[t]![i])
          assert.unreachable(`tensor ${t} element ${i}: p ${P[t]![i]} vs ${P2[t]![i]}, m ${M[t]![i]} vs ${M2[t]![i]}, v ${V[t]![i]} vs ${V2[t]![i]}`);
      }
    }
  });
}

test('first AdamW step moves each weight by about lr (sign of the gradient) plus decay', () => {
  const p = new Float32Array([1, -2, 0.5]), g = new Float32Array([3, -0.1, 0]);
  n.adamwStep([p], [g], [new Float32Array(3)], [new Float32Array(3)], { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5, step: 1 });
  assert.ok(Math.abs(p[0]! - (1 * 0.95 - 0.1)) < 1e-6);
  assert.ok(Math.abs(p[1]! - (-2 * 0.95 + 0.1)) < 1e-6);
  assert.ok(Math.abs(p[2]! - 0.5 * 0.95) < 1e-7, 'zero gradient: only decay');
});

test('gradNorm is the f64 global L2 norm over all tensors', () => {
  const r = rng(22);
  const G = [randn(r, 5), randn(r, 100001), new Float32Array(0)];
  let s = 0;
  for (const g of G) for (const x of g) s += x * x;
  assert.ok(Math.abs(n.gradNorm(G) - Math.sqrt(s)) <= 1e-12 * Math.sqrt(s));
  assert.is(n.gradNorm([]), 0);
});

test('clipGradNorm scales by max/(norm + 1e-6) only when that is below 1', () => {
  const g = [new Float32Array([3, 0]), new Float32Array([4])]; // norm 5
  const keep = g.map((a) => a.slice());
  const a = n.clipGradNorm(g, 5.00001);
  assert.is(a.scale, 1, 'norm 5 with max 5.00001: coefficient above 1, nothing changes');
  assert.ok(Math.abs(a.norm - 5) < 1e-12);
  assert.equal(g.map((x) => Array.from(x)), keep.map((x) => Array.from(x)));
  const edge = g.map((x) => x.slice());
  assert.ok(n.clipGradNorm(edge, 5).scale < 1, 'norm == max: 5/(5 + 1e-6) < 1 clips, as torch does');
  const b = n.clipGradNorm(g, 1);
  const want = 1 / (5 + 1e-6);
  assert.ok(Math.abs(b.scale - want) < 1e-15);
  assert.is(g[0]![0], Math.fround(3 * Math.fround(want)));
  assert.is(g[1]![0], Math.fround(4 * Math.fround(want)));
  assert.ok(Math.abs(n.gradNorm(g) - 1) < 1e-6);
});

test('learningRate: warmup, cosine decay to minLr, pure and validated', () => {
  const o = { lr: 2e-4, minLr: 5e-5, warmupSteps: 10, totalSteps: 110 };
  assert.ok(Math.abs(learningRate(0, o) - 2e-5) < 1e-18);
  assert.ok(Math.abs(learningRate(9, o) - 2e-4) < 1e-18);
  assert.ok(Math.abs(learningRate(10, o) - 2e-4) < 1e-18);
  assert.ok(Math.abs(learningRate(109, o) - 5e-5) < 1e-18);
  assert.ok(Math.abs(learningRate(500, o) - 5e-5) < 1e-18);
  const mid = learningRate(59, { ...o, totalSteps: 109 }); // p = 49/98 = 0.5
  assert.ok(Math.abs(mid - 1.25e-4) < 1e-15);
  let prev = Infinity;
  for (let s = 10; s < 110; s++) { const l = learningRate(s, o); assert.ok(l <= prev); prev = l; }
  assert.is(learningRate(0, { lr: 1, minLr: 0, warmupSteps: 0, totalSteps: 1 }), 1);
  assert.is(learningRate(1, { lr: 1, minLr: 0, warmupSteps: 0, totalSteps: 2 }), 0);
  for (const bad of [{ ...o, warmupSteps: 200 }, { ...o, minLr: 1 }, { ...o, totalSteps: 0 }, { ...o, lr: -1 }])
    assert.throws(() => learningRate(0, bad), (e: any) => e.code === 'E_INVALID_OPTION');
  assert.throws(() => learningRate(1.5, o), (e: any) => e.code === 'E_INVALID_OPTION');
});

test.run();
