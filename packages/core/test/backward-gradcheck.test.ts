// Gradient checks: every native backward kernel (f32) against central finite differences of an f64 forward
// pass written in JavaScript (backward-helpers.ts), on small shapes. With upstream gradient G the checked
// scalar is L = Σ G·f(inputs); issue 5 requires relative error ≤ 1e-3 (max norm). The worst error per op is
// printed at the end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import {
  ACTS, actF64, attentionF64, dot, f32, f64, layernormF64, linearF64, lseF32, numericGrad, randn, relErr,
  rmsnormF64, rng, ropeF64, ropeTablesF64,
} from './backward-helpers.js';

const n = native();
const LIMIT = 1e-3;
const worst = new Map<string, number>();

function check(name: string, got: ArrayLike<number>, want: ArrayLike<number>) {
  const e = relErr(got, want, 1e-12);
  worst.set(name, Math.max(worst.get(name) ?? 0, e));
  assert.ok(e <= LIMIT, `${name}: relative error ${e} > ${LIMIT}`);
}

test('linear: dx, dW, db', () => {
  const r = rng(11);
  for (const [M, N, K] of [[3, 4, 5], [6, 1, 7]] as const) {
    const x = randn(r, M * K), w = randn(r, N * K), b = randn(r, N), G = randn(r, M * N);
    const X = f64(x), W = f64(w), Bv = f64(b);
    const L = () => dot(G, linearF64(X, W, Bv, M, N, K));
    const dx = new Float32Array(M * K), dw = new Float32Array(N * K), db = new Float32Array(N);
    n.linearBackward(dx, dw, db, G, x, w, M, N, K);
    check('linear dx', dx, numericGrad(X, L));
    check('linear dW', dw, numericGrad(W, L));
    check('linear db', db, numericGrad(Bv, L));
  }
});

test('rmsnorm: dx, dw (with and without weight)', () => {
  const r = rng(12);
  for (const [M, D] of [[3, 8], [2, 13]] as const) {
    for (const withW of [true, false]) {
      const x = randn(r, M * D), w = randn(r, D), G = randn(r, M * D), eps = 1e-5;
      const X = f64(x), W = f64(w);
      const L = () => dot(G, rmsnormF64(X, withW ? W : null, M, D, eps));
      const dx = new Float32Array(M * D), dw = new Float32Array(D);
      n.rmsnormBackward(dx, withW ? dw : null, G, x, withW ? w : null, M, D, eps);
      check('rmsnorm dx', dx, numericGrad(X, L));
      if (withW) check('rmsnorm dw', dw, numericGrad(W, L));
    }
  }
});

test('layernorm: dx, dw, db', () => {
  const r = rng(13);
  for (const [M, D] of [[3, 8], [2, 11]] as const) {
    const x = randn(r, M * D, 2), w = randn(r, D), b = randn(r, D), G = randn(r, M * D), eps = 1e-5;
    const X = f64(x), W = f64(w), Bv = f64(b);
    const L = () => dot(G, layernormF64(X, W, Bv, M, D, eps));
    const dx = new Float32Array(M * D), dw = new Float32Array(D), db = new Float32Array(D);
    n.layernormBackward(dx, dw, db, G, x, w, M, D, eps);
    check('layernorm dx', dx, numericGrad(X, L));
    check('layernorm dw', dw, numericGrad(W, L));
    check('layernorm db', db, numericGrad(Bv, L));
  }
});

for (const act of ACTS) {
  test(`${act}: activation and gated unit`, () => {
    const r = rng(14);
    const len = 40, x = randn(r, len, 2), up = randn(r, len), G = randn(r, len);
    // Keep ReLU away from its kink, where central differences are not the derivative.
    if (act === 'relu') for (let i = 0; i < len; i++) if (Math.abs(x[i]!) < 1e-3) x[i] = 0.5;
    const X = f64(x), U = f64(up);
    const La = () => dot(G, Array.from(X, (v) => actF64(v, act)));
    const dx = new Float32Array(len);
    n.activationBackward(dx, G, x, act);
    check(`${act} dx`, dx, numericGrad(X, La));
    const Lg = () => dot(G, Array.from(X, (v, i) => actF64(v, act) * U[i]!));
    const dg = new Float32Array(len), du = new Float32Array(len);
    n.gatedBackward(dg, du, G, x, up, act);
    check(`gated ${act} dgate`, dg, numericGrad(X, Lg));
    check(`gated ${act} dup`, du, numericGrad(U, Lg));
  });
}

test('rope: dx through the rotation', () => {
  const r = rng(15);
  const M = 5, nh = 3, Dh = 8, pos = [0, 1, 2, 7, 300], invFreq = [1, 0.1, 0.01, 0.001];
  const { cos, sin } = ropeTablesF64(pos, invFreq);
  const x = randn(r, M * nh * Dh), G = randn(r, M * nh * Dh);
  const X = f64(x), c32 = f32(cos), s32 = f32(sin);
  const L = () => dot(G, ropeF64(X, c32, s32, M, nh, Dh));
  const dx = G.slice();
  n.ropeBackward(dx, c32, s32, M, nh, Dh);
  check('rope dx', dx, numericGrad(X, L));
});

const attnCases = [
  { B: 1, T: 5, H: 2, Hk: 2, Dh: 4, mask: null as number[] | null },
  { B: 2, T: 6, H: 4, Hk: 2, Dh: 3, mask: [0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1] },
  { B: 1, T: 7, H: 4, Hk: 1, Dh: 4, mask: [1, 1, 0, 1, 1, 1, 1] },
  // sliding windows of 3 keys (some of them padding) and 2 (a window of 1 makes dq and dk exactly zero: P = 1)
  { B: 2, T: 7, H: 4, Hk: 2, Dh: 3, mask: [1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1], window: 3 },
  { B: 1, T: 6, H: 2, Hk: 1, Dh: 4, mask: null, window: 2 },
];
for (const c of attnCases) {
  const window = 'window' in c ? c.window : 0;
  test(`attention: dq, dk, dv (H${c.H} Hk${c.Hk} mask=${c.mask ? 'yes' : 'no'}${window ? ` window ${window}` : ''})`, () => {
    const r = rng(16);
    const { B, T, H, Hk, Dh } = c, scale = 1 / Math.sqrt(Dh);
    const mask = c.mask ? Uint8Array.from(c.mask) : null;
    const q = randn(r, B * T * H * Dh), k = randn(r, B * T * Hk * Dh), v = randn(r, B * T * Hk * Dh);
    const G = randn(r, B * T * H * Dh);
    const Q = f64(q), K = f64(k), V = f64(v);
    const L = () => dot(G, attentionF64(Q, K, V, mask, B, T, H, Hk, Dh, scale, window).out);
    const { out, lse } = attentionF64(Q, K, V, mask, B, T, H, Hk, Dh, scale, window);
    const dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
    n.attentionBackward(dq, dk, dv, G, q, k, v, f32(out), lseF32(lse), mask, B, T, H, Hk, Dh, scale, window);
    check('attention dq', dq, numericGrad(Q, L));
    check('attention dk', dk, numericGrad(K, L));
    check('attention dv', dv, numericGrad(V, L));
  });
}

test('mse: da', () => {
  const r = rng(17);
  const a = randn(r, 50), b = randn(r, 50), A = f64(a);
  const L = () => { let s = 0; for (let i = 0; i < 50; i++) s += (A[i]! - b[i]!) ** 2; return s / 50; };
  const da = new Float32Array(50);
  const loss = n.mseForwardBackward(da, a, b);
  assert.ok(Math.abs(loss - L()) < 1e-14);
  check('mse da', da, numericGrad(A, L));
});

test('worst relative errors', () => {
  const lines = [...worst].map(([k, v]) => `${k.padEnd(20)} ${v.toExponential(2)}`);
  console.log(`  gradient check, worst relative error (limit ${LIMIT}):\n    ${lines.join('\n    ')}`);
  assert.ok(worst.size >= 20);
});

test.run();
