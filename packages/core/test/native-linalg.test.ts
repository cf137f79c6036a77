// Least squares for the linear replacement: accumulation vs reference, recovery of a known map, folding.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';

const n = native();

function rand(len: number, seed: number): Float32Array {
  const a = new Float32Array(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = s / 2 ** 32 - 0.5; }
  return a;
}

test('bad sizes are typed errors', () => {
  assert.throws(() => n.normalEquationsAccumulate(new Float64Array(3), new Float64Array(4), new Float32Array(4), new Float32Array(4), null, 2, 2, 2), (e: any) => e.code === 'E_SHAPE');
  assert.throws(() => n.foldLeft(new Float32Array(4), new Float32Array(4), { data: new Float32Array(5), dtype: 'f32', shape: [5] }, 2, 2), (e: any) => e.code === 'E_SHAPE');
});

test('accumulation: fast == reference (masked rows skipped)', async () => {
  const M = 37, D = 9, E = 9;
  const X = rand(M * D, 1), Y = rand(M * E, 2);
  const mask = new Uint8Array(M).map((_, i) => (i % 5 === 3 ? 0 : 1));
  const a1 = new Float64Array(D * D), b1 = new Float64Array(D * E), a2 = new Float64Array(D * D), b2 = new Float64Array(D * E);
  await n.normalEquationsAccumulate(a1, b1, X, Y, mask, M, D, E);
  n.normalEquationsAccumulate(a2, b2, X, Y, mask, M, D, E, true);
  for (let i = 0; i < D * D; i++) assert.ok(Math.abs(a1[i]! - a2[i]!) < 1e-12, `XtX ${i}`);
  for (let i = 0; i < D * E; i++) assert.ok(Math.abs(b1[i]! - b2[i]!) < 1e-12, `XtY ${i}`);
});

test('solve recovers a known linear map', async () => {
  const M = 400, D = 12;
  const X = rand(M * D, 3), Ttrue = rand(D * D, 4);
  const Y = new Float32Array(M * D);
  for (let m = 0; m < M; m++) for (let j = 0; j < D; j++) {
    let s = 0; for (let i = 0; i < D; i++) s += X[m * D + i]! * Ttrue[i * D + j]!; Y[m * D + j] = s;
  }
  const A = new Float64Array(D * D), B = new Float64Array(D * D);
  await n.normalEquationsAccumulate(A, B, X, Y, null, M, D, D);
  const T = new Float32Array(D * D);
  await n.solveNormalEquations(T, A, B, D, D, 0);
  for (let i = 0; i < D * D; i++) assert.ok(Math.abs(T[i]! - Ttrue[i]!) < 1e-4, `T[${i}] ${T[i]} vs ${Ttrue[i]}`);
});

test('singular system without ridge fails with E_LINEAR_SOLVE or solves finitely; with ridge it solves', async () => {
  const D = 4;
  const A = new Float64Array(D * D); // all-zero Gram matrix
  const B = new Float64Array(D * D).fill(1);
  const T = new Float32Array(D * D);
  let code = '';
  try { await n.solveNormalEquations(T, A, B, D, D, 0); } catch (e: any) { code = e.code; }
  assert.ok(code === 'E_LINEAR_SOLVE' || T.every(Number.isFinite));
  await n.solveNormalEquations(T, A, B, D, D, 1);
  for (const v of T) assert.ok(Math.abs(v - 1) < 1e-6);
});

test('foldLeft = Tᵀ·W (bf16 input) and foldRight = E·T', async () => {
  const D = 5, F = 7, V = 6;
  const T = rand(D * D, 5), W = rand(D * F, 6), Em = rand(V * D, 7);
  const Wb = new Uint16Array(D * F);
  n.convertFloats(Wb, 'bf16', W, 'f32');
  const Wr = new Float32Array(D * F);
  n.convertFloats(Wr, 'f32', Wb, 'bf16');
  const out = new Float32Array(D * F);
  await n.foldLeft(out, T, { data: Wb, dtype: 'bf16', shape: [D, F] }, D, F);
  for (let i = 0; i < D; i++) for (let j = 0; j < F; j++) {
    let s = 0; for (let k = 0; k < D; k++) s += T[k * D + i]! * Wr[k * F + j]!;
    assert.ok(Math.abs(out[i * F + j]! - s) < 1e-5);
  }
  const eo = new Float32Array(V * D);
  await n.foldRight(eo, { data: Em, dtype: 'f32', shape: [V, D] }, T, V, D);
  for (let v = 0; v < V; v++) for (let j = 0; j < D; j++) {
    let s = 0; for (let k = 0; k < D; k++) s += Em[v * D + k]! * T[k * D + j]!;
    assert.ok(Math.abs(eo[v * D + j]! - s) < 1e-5);
  }
});

test.run();
