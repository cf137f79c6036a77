// Backward kernels: bad arguments, then the fast path against the plain reference on a sweep of shapes (odd
// sizes, zero rows), and the accumulate/overwrite contract of ops.h. Gradient correctness itself is checked by
// finite differences in backward-gradcheck.test.ts; attention has its own file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import { ACTS, randn, relErr, rng } from './backward-helpers.js';

const n = native();
const code = (c: string) => (e: any) => e.code === c;
const TOL = 2e-5; // fast f32 vs f64-accumulating reference, relative in the max norm

test('bad arguments are typed errors', () => {
  const f = (k: number) => new Float32Array(k);
  assert.throws(() => n.linearBackward(f(5), null, null, f(6), f(6), f(9), 2, 3, 3), code('E_SHAPE'));
  assert.throws(() => n.linearBackward(f(6), null, null, new Float64Array(6), f(6), f(9), 2, 3, 3), code('E_NATIVE_ARG'));
  assert.throws(() => n.linearBackward(f(6), null, null, f(6), f(6), f(9), 2, -3, 3), code('E_SHAPE'));
  assert.throws(() => n.rmsnormBackward(f(6), f(3), f(6), f(6), null, 2, 3, 1e-5), code('E_NATIVE_ARG'));
  assert.throws(() => n.rmsnormBackward(f(6), null, f(6), f(6), f(4), 2, 3, 1e-5), code('E_SHAPE'));
  assert.throws(() => n.layernormBackward(f(6), null, null, f(6), f(6), null, 2, 3, -1), code('E_NATIVE_ARG'));
  assert.throws(() => n.activationBackward(f(4), f(4), f(4), 'tanh'), code('E_NATIVE_ARG'));
  assert.throws(() => n.activationBackward(f(4), f(3), f(4), 'silu'), code('E_SHAPE'));
  assert.throws(() => n.gatedBackward(f(4), f(4), f(4), f(4), f(5), 'silu'), code('E_SHAPE'));
  assert.throws(() => n.ropeBackward(f(12), f(6), f(6), 2, 2, 3), code('E_SHAPE'));
  assert.throws(() => n.ropeBackward(f(16), f(3), f(4), 2, 2, 4), code('E_SHAPE'));
  assert.throws(() => n.mseForwardBackward(null, f(3), f(4)), code('E_SHAPE'));
});

test('linearBackward matches the reference; dx overwritten, dw/db accumulate', () => {
  const r = rng(1);
  for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [17, 33, 9], [64, 65, 130], [0, 4, 3], [5, 4, 0]] as const) {
    const dy = randn(r, M * N), x = randn(r, M * K), w = randn(r, N * K);
    const dx = randn(r, M * K), dw0 = randn(r, N * K), db0 = randn(r, N);
    const rdx = new Float32Array(M * K), rdw = dw0.slice(), rdb = db0.slice();
    const dw = dw0.slice(), db = db0.slice();
    n.linearBackward(dx, dw, db, dy, x, w, M, N, K);
    n.linearBackwardRef(rdx, rdw, rdb, dy, x, w, M, N, K);
    assert.ok(relErr(dx, rdx, 1) < TOL, `dx ${M}x${N}x${K}: ${relErr(dx, rdx, 1)}`);
    assert.ok(relErr(dw, rdw, 1) < TOL, `dw ${M}x${N}x${K}: ${relErr(dw, rdw, 1)}`);
    assert.ok(relErr(db, rdb, 1) < TOL, `db ${M}x${N}x${K}`);
    if (M === 0) {
      assert.equal(Array.from(dw), Array.from(dw0), 'no rows: dw unchanged');
      assert.equal(Array.from(db), Array.from(db0), 'no rows: db unchanged');
    }
  }
  // Optional outputs: only db.
  const dy = randn(r, 6), db = new Float32Array(3);
  n.linearBackward(null, null, db, dy, null, null, 2, 3, 4);
  for (let j = 0; j < 3; j++) assert.ok(Math.abs(db[j]! - (dy[j]! + dy[3 + j]!)) < 1e-6);
});

for (const kind of ['rms', 'layer'] as const) {
  test(`${kind}norm backward matches the reference and accumulates`, () => {
    const r = rng(kind === 'rms' ? 2 : 3);
    for (const [M, D] of [[1, 1], [3, 7], [37, 64], [70, 255], [0, 8]] as const) {
      for (const withW of [true, false]) {
        const dy = randn(r, M * D), x = randn(r, M * D, 2), w = withW ? randn(r, D) : null;
        const dx = randn(r, M * D), dw = randn(r, D), db = randn(r, D);
        const rdx = dx.slice(), rdw = dw.slice(), rdb = db.slice();
        if (kind === 'rms') {
          n.rmsnormBackward(dx, withW ? dw : null, dy, x, w, M, D, 1e-5);
          n.rmsnormBackwardRef(rdx, withW ? rdw : null, dy, x, w, M, D, 1e-5);
        } else {
          n.layernormBackward(dx, withW ? dw : null, db, dy, x, w, M, D, 1e-5);
          n.layernormBackwardRef(rdx, withW ? rdw : null, rdb, dy, x, w, M, D, 1e-5);
        }
        const what = `${M}x${D} w=${withW}`;
        assert.ok(relErr(dx, rdx, 1) < TOL, `dx ${what}: ${relErr(dx, rdx, 1)}`);
        assert.ok(relErr(dw, rdw, 1) < TOL, `dw ${what}`);
        assert.ok(relErr(db, rdb, 1) < TOL, `db ${what}`);
      }
    }
    // Accumulation: two calls from zero give twice one call.
    const M = 5, D = 9, dy = randn(r, M * D), x = randn(r, M * D), w = randn(r, D);
    const once = new Float32Array(M * D), twice = new Float32Array(M * D), dw1 = new Float32Array(D), dw2 = new Float32Array(D);
    const call = (dx: Float32Array, dw: Float32Array) =>
      kind === 'rms' ? n.rmsnormBackward(dx, dw, dy, x, w, M, D, 1e-6) : n.layernormBackward(dx, dw, null, dy, x, w, M, D, 1e-6);
    call(once, dw1); call(twice, dw2); call(twice, dw2);
    for (let i = 0; i < M * D; i++) assert.ok(Math.abs(twice[i]! - 2 * once[i]!) <= 1e-6 * (1 + Math.abs(once[i]!)));
    for (let i = 0; i < D; i++) assert.ok(Math.abs(dw2[i]! - 2 * dw1[i]!) <= 1e-6 * (1 + Math.abs(dw1[i]!)));
  });
}

test('activationBackward and gatedBackward match the reference for every activation', () => {
  const r = rng(4);
  for (const act of ACTS) {
    for (const len of [1, 7, 5000, 20001]) {
      const x = randn(r, len, 3), dy = randn(r, len);
      if (len > 2) x[0] = 0, x[1] = -0, x[2] = 40; // ReLU at 0 has gradient 0; large |x| saturates
      const dx = randn(r, len), rdx = dx.slice();
      n.activationBackward(dx, dy, x, act);
      n.activationBackwardRef(rdx, dy, x, act);
      assert.ok(relErr(dx, rdx, 1) < TOL, `${act} ${len}: ${relErr(dx, rdx, 1)}`);
      const up = randn(r, len), dg = new Float32Array(len), du = new Float32Array(len);
      const rdg = new Float32Array(len), rdu = new Float32Array(len);
      n.gatedBackward(dg, du, dy, x, up, act);
      n.gatedBackwardRef(rdg, rdu, dy, x, up, act);
      assert.ok(relErr(dg, rdg, 1) < TOL, `gated ${act} dgate`);
      assert.ok(relErr(du, rdu, 1) < TOL, `gated ${act} dup`);
    }
  }
  const zero = new Float32Array(2), dx = new Float32Array(2);
  n.activationBackward(dx, new Float32Array([1, 1]), zero, 'relu');
  assert.equal(Array.from(dx), [0, 0], 'relu gradient at 0 is 0 (torch threshold_backward)');
});

test('ropeBackward is the inverse rotation and matches the reference', () => {
  const r = rng(5);
  for (const [M, nh, Dh] of [[1, 1, 2], [7, 3, 8], [33, 5, 64]] as const) {
    const half = Dh / 2, ang = randn(r, M * half, 3);
    const cos = Float32Array.from(ang, Math.cos), sin = Float32Array.from(ang, Math.sin);
    const dx = randn(r, M * nh * Dh), rdx = dx.slice();
    n.ropeBackward(dx, cos, sin, M, nh, Dh);
    n.ropeBackwardRef(rdx, cos, sin, M, nh, Dh);
    assert.ok(relErr(dx, rdx, 1) < 1e-6, `${M}x${nh}x${Dh}`);
  }
});

test('mseForwardBackward: f64 loss, gradient 2(a-b)/n, matches the reference', () => {
  const r = rng(6);
  for (const len of [1, 3, 8193, 100000]) {
    const a = randn(r, len), b = randn(r, len), da = new Float32Array(len), rda = new Float32Array(len);
    const loss = n.mseForwardBackward(da, a, b), rloss = n.mseForwardBackwardRef(rda, a, b);
    let s = 0;
    for (let i = 0; i < len; i++) s += (a[i]! - b[i]!) ** 2;
    assert.ok(Math.abs(loss - s / len) <= 1e-12 * (s / len), `loss ${len}`);
    assert.ok(Math.abs(rloss - s / len) <= 1e-12 * (s / len));
    assert.ok(relErr(da, rda, 1e-30) < 1e-7);
    assert.ok(Math.abs(da[0]! - Math.fround((2 * (a[0]! - b[0]!)) / len)) <= 1e-7 * Math.abs(da[0]!));
  }
  assert.is(n.mseForwardBackward(null, new Float32Array(0), new Float32Array(0)), 0);
  assert.is(n.mseForwardBackward(null, new Float32Array([1, 2]), new Float32Array([1, 4])), 2);
});

test.run();
