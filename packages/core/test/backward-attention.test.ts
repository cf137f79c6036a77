// attentionBackward (causal GQA with key mask): bad arguments, then the blockwise fast path against the plain
// reference on a sweep of shapes (GQA 1/2/4, odd T and Dh, several key blocks, left padding and holes, sliding
// windows). Forward out and lse come from the f64 JavaScript attention in backward-helpers.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import { attentionF64, f32, f64, lseF32, randn, relErr, rng } from './backward-helpers.js';

const n = native();
const code = (c: string) => (e: any) => e.code === c;

type Case = { B: number; T: number; H: number; Hk: number; Dh: number; mask: 'none' | 'left' | 'holes'; window?: number };

function setup(c: Case, seed: number) {
  const r = rng(seed);
  const { B, T, H, Hk, Dh } = c;
  const q = randn(r, B * T * H * Dh), k = randn(r, B * T * Hk * Dh), v = randn(r, B * T * Hk * Dh);
  const dout = randn(r, B * T * H * Dh);
  let mask: Uint8Array | null = null;
  if (c.mask !== 'none') {
    mask = new Uint8Array(B * T).fill(1);
    for (let b = 0; b < B; b++) {
      if (c.mask === 'left') for (let t = 0; t < Math.min(T - 1, 2 * b + 1); t++) mask[b * T + t] = 0;
      else for (let t = 0; t < T; t++) if (r.uniform() < 0.3) mask[b * T + t] = 0;
    }
  }
  const scale = 1 / Math.sqrt(Dh);
  const { out, lse } = attentionF64(f64(q), f64(k), f64(v), mask, B, T, H, Hk, Dh, scale, c.window ?? 0);
  return { q, k, v, dout, mask, scale, out: f32(out), lse: lseF32(lse) };
}

function run(c: Case, s: ReturnType<typeof setup>, ref: boolean) {
  const { B, T, H, Hk, Dh } = c;
  const dq = new Float32Array(B * T * H * Dh).fill(7), dk = new Float32Array(B * T * Hk * Dh).fill(7);
  const dv = new Float32Array(B * T * Hk * Dh).fill(7); // overwritten, whatever was there
  (ref ? n.attentionBackwardRef : n.attentionBackward)(dq, dk, dv, s.dout, s.q, s.k, s.v, s.out, s.lse, s.mask,
    B, T, H, Hk, Dh, s.scale, c.window ?? 0);
  return { dq, dk, dv };
}

test('bad arguments are typed errors', () => {
  const f = (k: number) => new Float32Array(k);
  const args = (over: Record<number, unknown>) => {
    const a: unknown[] = [f(16), f(8), f(8), f(16), f(16), f(8), f(8), f(16), f(4), null, 1, 2, 2, 1, 4, 0.5];
    for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
    return a;
  };
  n.attentionBackward(...args({}));
  assert.throws(() => n.attentionBackward(...args({ 13: 3 })), code('E_SHAPE'));
  assert.throws(() => n.attentionBackward(...args({ 13: 0 })), code('E_SHAPE'));
  assert.throws(() => n.attentionBackward(...args({ 8: f(3) })), code('E_SHAPE'));
  assert.throws(() => n.attentionBackward(...args({ 9: new Uint8Array(3) })), code('E_SHAPE'));
  assert.throws(() => n.attentionBackward(...args({ 9: new Int32Array(2) })), code('E_NATIVE_ARG'));
  assert.throws(() => n.attentionBackward(...args({ 1: f(16) })), code('E_SHAPE'));
});

const cases: Case[] = [
  { B: 1, T: 1, H: 1, Hk: 1, Dh: 1, mask: 'none' },
  { B: 2, T: 9, H: 4, Hk: 4, Dh: 5, mask: 'none' },
  { B: 2, T: 13, H: 4, Hk: 2, Dh: 8, mask: 'left' },
  { B: 3, T: 70, H: 4, Hk: 1, Dh: 16, mask: 'holes' },
  { B: 1, T: 130, H: 2, Hk: 1, Dh: 32, mask: 'left' },
  { B: 2, T: 65, H: 8, Hk: 2, Dh: 12, mask: 'none' },
  // sliding windows: inside one key block, straddling blocks, wider than a block, two keys, and with padding (a
  // window of one key has dq = dk = 0 up to rounding, which a relative comparison cannot judge)
  { B: 2, T: 70, H: 4, Hk: 2, Dh: 8, mask: 'none', window: 5 },
  { B: 1, T: 200, H: 2, Hk: 1, Dh: 16, mask: 'none', window: 70 },
  { B: 2, T: 150, H: 4, Hk: 4, Dh: 12, mask: 'holes', window: 64 },
  { B: 1, T: 40, H: 2, Hk: 1, Dh: 5, mask: 'none', window: 2 },
  { B: 3, T: 66, H: 4, Hk: 1, Dh: 16, mask: 'left', window: 3 },
];

for (const [i, c] of cases.entries()) {
  test(`fast == reference: B${c.B} T${c.T} H${c.H} Hk${c.Hk} Dh${c.Dh} mask=${c.mask}${c.window ? ` window ${c.window}` : ''}`, () => {
    const s = setup(c, 100 + i);
    const a = run(c, s, false), b = run(c, s, true);
    for (const key of ['dq', 'dk', 'dv'] as const) {
      const e = relErr(a[key], b[key], 1e-6);
      assert.ok(e < 2e-5, `${key}: relative error ${e}`);
    }
    // Queries that see no key (left padding) have zero dq; keys that are padding get zero dk and dv.
    if (s.mask) {
      const { B, T, H, Hk, Dh } = c;
      for (let bb = 0; bb < B; bb++)
        for (let t = 0; t < T; t++) {
          if (s.mask[bb * T + t]) continue;
          for (let e = 0; e < Hk * Dh; e++) {
            assert.is(a.dk[(bb * T + t) * Hk * Dh + e], 0);
            assert.is(a.dv[(bb * T + t) * Hk * Dh + e], 0);
          }
          let seen = false;
          for (let j = c.window ? Math.max(0, t - c.window + 1) : 0; j <= t; j++) seen = seen || s.mask[bb * T + j] === 1;
          if (!seen) for (let e = 0; e < H * Dh; e++) assert.is(a.dq[(bb * T + t) * H * Dh + e], 0);
        }
    }
  });
}

test('the result does not depend on the batch it is computed in', () => {
  const c: Case = { B: 3, T: 20, H: 4, Hk: 2, Dh: 8, mask: 'holes' };
  const s = setup(c, 7);
  const all = run(c, s, false);
  const per = c.T * c.H * c.Dh, perk = c.T * c.Hk * c.Dh;
  const c1: Case = { ...c, B: 1 };
  const one = run(c1, {
    ...s,
    q: s.q.subarray(per, 2 * per), k: s.k.subarray(perk, 2 * perk), v: s.v.subarray(perk, 2 * perk),
    dout: s.dout.subarray(per, 2 * per), out: s.out.subarray(per, 2 * per),
    lse: s.lse.subarray(c.H * c.T, 2 * c.H * c.T), mask: s.mask!.subarray(c.T, 2 * c.T),
  }, false);
  assert.equal(Array.from(one.dq), Array.from(all.dq.subarray(per, 2 * per)));
  assert.equal(Array.from(one.dk), Array.from(all.dk.subarray(perk, 2 * perk)));
});

test.run();
