// Fused cosine accumulation: fast path vs plain reference vs a JS f64 computation; zero vectors; masks; NaN.
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

function jsCos(a: Float32Array, b: Float32Array, M: number, D: number, mask?: Uint8Array) {
  let sum = 0, count = 0, zeros = 0;
  for (let t = 0; t < M; t++) {
    if (mask && !mask[t]) continue;
    let ab = 0, aa = 0, bb = 0;
    for (let i = 0; i < D; i++) { const x = a[t * D + i]!, y = b[t * D + i]!; ab += x * y; aa += x * x; bb += y * y; }
    count++;
    if (aa === 0 || bb === 0) { zeros++; continue; }
    sum += ab / (Math.sqrt(aa) * Math.sqrt(bb));
  }
  return { sum, count, zeros };
}

test('bad arguments are typed errors', () => {
  const out = new Float64Array(3);
  assert.throws(() => n.cosineAccumulate(out, new Float32Array(5), new Float32Array(6), null, 2, 3), (e: any) => e.code === 'E_SHAPE');
  assert.throws(() => n.cosineAccumulate(new Float32Array(3), new Float32Array(6), new Float32Array(6), null, 2, 3), (e: any) => e.code === 'E_NATIVE_ARG');
  assert.throws(() => n.cosineAccumulate(out, new Float32Array(6), new Float32Array(6), new Uint8Array(3), 2, 3), (e: any) => e.code === 'E_SHAPE');
});

for (const [M, D] of [[1, 1], [3, 7], [17, 64], [64, 129], [0, 8]] as const) {
  test(`fast == reference == f64 JS on [${M}, ${D}]`, () => {
    const a = rand(M * D, M * 31 + D), b = rand(M * D, M * 7 + D + 1);
    const fast = new Float64Array(3), ref = new Float64Array(3);
    n.cosineAccumulate(fast, a, b, null, M, D);
    n.cosineAccumulate(ref, a, b, null, M, D, true);
    const js = jsCos(a, b, M, D);
    assert.ok(Math.abs(fast[0]! - js.sum) <= 1e-12 * Math.max(1, M), `fast ${fast[0]} vs ${js.sum}`);
    assert.ok(Math.abs(ref[0]! - js.sum) <= 1e-12 * Math.max(1, M));
    assert.is(fast[1], M);
    assert.is(fast[2], 0);
  });
}

test('identical rows give 1, opposite rows -1, zero rows count as 0 and are reported', () => {
  const D = 33, M = 4;
  const a = rand(M * D, 5);
  const b = new Float32Array(a);
  for (let i = D; i < 2 * D; i++) b[i] = -a[i]!;     // row 1 opposite
  for (let i = 2 * D; i < 3 * D; i++) b[i] = 0;       // row 2 zero
  const out = new Float64Array(3);
  n.cosineAccumulate(out, a, b, null, M, D);
  assert.ok(Math.abs(out[0]! - (1 - 1 + 0 + 1)) < 1e-12);
  assert.is(out[1], 4);
  assert.is(out[2], 1);
});

test('mask skips padded rows', () => {
  const M = 9, D = 16;
  const a = rand(M * D, 1), b = rand(M * D, 2);
  const mask = new Uint8Array([1, 1, 0, 1, 0, 0, 1, 1, 1]);
  const out = new Float64Array(3);
  n.cosineAccumulate(out, a, b, mask, M, D);
  const js = jsCos(a, b, M, D, mask);
  assert.ok(Math.abs(out[0]! - js.sum) < 1e-12);
  assert.is(out[1], 6);
});

test('NaN in a state propagates (never silently passes)', () => {
  const a = rand(32, 3), b = rand(32, 4);
  a[5] = NaN;
  const out = new Float64Array(3);
  n.cosineAccumulate(out, a, b, null, 4, 8);
  assert.ok(Number.isNaN(out[0]));
});

test('pairs accumulate asynchronously and match single-pair calls', async () => {
  const M = 12, D = 40;
  const states = [0, 1, 2, 3].map((i) => rand(M * D, 100 + i));
  const pairs = new Int32Array([0, 1, 0, 3, 2, 3, 1, 1]);
  const out = new Float64Array(12);
  await n.cosinePairsAccumulate(out, states, pairs, null, M, D);
  for (let p = 0; p < 4; p++) {
    const one = new Float64Array(3);
    n.cosineAccumulate(one, states[pairs[2 * p]!]!, states[pairs[2 * p + 1]!]!, null, M, D);
    assert.ok(Math.abs(out[3 * p]! - one[0]!) < 1e-12);
  }
  assert.ok(Math.abs(out[9]! - M) < 1e-9, 'a state with itself has cosine 1 per token');
  await assert.not.throws(() => undefined);
  let threw = false;
  try { await n.cosinePairsAccumulate(out, states, new Int32Array([0, 9]), null, M, D); } catch (e: any) { threw = e.code === 'E_SHAPE'; }
  assert.ok(threw);
});

test.run();
