// Causal grouped-query attention: fast (blocked, online softmax) against the reference over a sweep of
// shapes (odd T and Dh, GQA ratios 1/2/4/8, several query/key blocks), padding masks, sliding windows, lse, NaN,
// and the reference against a direct JS f64 implementation.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import { assertClose, randn, throwsCode } from './ops-helpers.js';

const n = native();

interface Case { B: number; T: number; H: number; Hk: number; Dh: number; mask: 'none' | 'left' | 'right' | 'holes'; window?: number }

function makeMask(B: number, T: number, kind: Case['mask']): Uint8Array | null {
  if (kind === 'none') return null;
  const m = new Uint8Array(B * T).fill(1);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      if (kind === 'left' && t < b * 5) m[b * T + t] = 0;
      if (kind === 'right' && t >= T - b * 4) m[b * T + t] = 0;
      if (kind === 'holes' && (t * 7 + b) % 5 === 0) m[b * T + t] = 0;
    }
  return m;
}

function run(c: Case, seed: number, fn: 'attentionForward' | 'attentionForwardRef', q: Float32Array, k: Float32Array, v: Float32Array, mask: Uint8Array | null) {
  const out = new Float32Array(c.B * c.T * c.H * c.Dh), lse = new Float32Array(c.B * c.H * c.T);
  n[fn](out, lse, q, k, v, mask, c.B, c.T, c.H, c.Hk, c.Dh, 1 / Math.sqrt(c.Dh), c.window);
  return { out, lse };
}

function jsAttention(c: Case, q: Float32Array, k: Float32Array, v: Float32Array, mask: Uint8Array | null) {
  const { B, T, H, Hk, Dh } = c;
  const out = new Float64Array(B * T * H * Dh), lse = new Float64Array(B * H * T);
  const scale = 1 / Math.sqrt(Dh);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / (H / Hk));
      for (let i = 0; i < T; i++) {
        const s: number[] = [];
        const js: number[] = [];
        for (let j = c.window ? Math.max(0, i - c.window + 1) : 0; j <= i; j++) {
          if (mask && !mask[b * T + j]) continue;
          let d = 0;
          for (let x = 0; x < Dh; x++) d += q[((b * T + i) * H + h) * Dh + x]! * k[((b * T + j) * Hk + hk) * Dh + x]!;
          s.push(d * scale);
          js.push(j);
        }
        if (!s.length) { lse[(b * H + h) * T + i] = -Infinity; continue; }
        const mx = Math.max(...s);
        let l = 0;
        const p = s.map((x) => Math.exp(x - mx));
        for (const x of p) l += x;
        for (let a = 0; a < js.length; a++)
          for (let x = 0; x < Dh; x++)
            out[((b * T + i) * H + h) * Dh + x] += (p[a]! / l) * v[((b * T + js[a]!) * Hk + hk) * Dh + x]!;
        lse[(b * H + h) * T + i] = mx + Math.log(l);
      }
    }
  return { out, lse };
}

const finiteLse = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? -1e30 : x));

test('bad input is a typed error', () => {
  const z = new Float32Array(2 * 3 * 4 * 8);
  throwsCode(() => n.attentionForward(z, null, z, z, z, null, 2, 3, 4, 3, 8, 1), 'E_SHAPE', 'multiple');
  throwsCode(() => n.attentionForward(z, null, z, new Float32Array(5), z, null, 2, 3, 4, 4, 8, 1), 'E_SHAPE', 'k');
  throwsCode(() => n.attentionForward(z, new Float32Array(3), z, z, z, null, 2, 3, 4, 4, 8, 1), 'E_SHAPE', 'lse');
  throwsCode(() => n.attentionForward(z, null, z, z, z, new Uint8Array(5), 2, 3, 4, 4, 8, 1), 'E_SHAPE', 'keyMask');
});

test('reference equals a direct f64 implementation (GQA, masks, lse)', () => {
  for (const c of [
    { B: 2, T: 9, H: 4, Hk: 2, Dh: 5, mask: 'left' },
    { B: 3, T: 6, H: 2, Hk: 1, Dh: 8, mask: 'right' },
    { B: 1, T: 11, H: 3, Hk: 3, Dh: 4, mask: 'holes' },
    { B: 2, T: 12, H: 4, Hk: 2, Dh: 5, mask: 'holes', window: 3 },
    { B: 1, T: 9, H: 2, Hk: 1, Dh: 4, mask: 'none', window: 1 },
  ] as Case[]) {
    const q = randn(c.B * c.T * c.H * c.Dh, 1), k = randn(c.B * c.T * c.Hk * c.Dh, 2), v = randn(c.B * c.T * c.Hk * c.Dh, 3);
    const mask = makeMask(c.B, c.T, c.mask);
    const r = run(c, 0, 'attentionForwardRef', q, k, v, mask), js = jsAttention(c, q, k, v, mask);
    assertClose(r.out, js.out, 1e-6, `out ${JSON.stringify(c)}`);
    assertClose(finiteLse(r.lse), finiteLse(js.lse), 1e-6, `lse ${JSON.stringify(c)}`);
  }
});

/** Random inputs for a case (seeds seed, seed+10, seed+20), the fast and reference results, compared (5e-6). */
function fastVsRef(c: Case, seed: number) {
  const q = randn(c.B * c.T * c.H * c.Dh, seed, 2), k = randn(c.B * c.T * c.Hk * c.Dh, seed + 10, 2);
  const v = randn(c.B * c.T * c.Hk * c.Dh, seed + 20);
  const mask = makeMask(c.B, c.T, c.mask);
  const f = run(c, 0, 'attentionForward', q, k, v, mask), r = run(c, 0, 'attentionForwardRef', q, k, v, mask);
  assertClose(f.out, r.out, 5e-6, `out ${JSON.stringify(c)}`);
  assertClose(finiteLse(f.lse), finiteLse(r.lse), 5e-6, `lse ${JSON.stringify(c)}`);
  return { q, k, v, mask, f, r };
}

test('fast equals the reference over shapes, GQA ratios 1/2/4/8 and padding masks', () => {
  const cases: Case[] = [
    { B: 1, T: 1, H: 1, Hk: 1, Dh: 1, mask: 'none' },
    { B: 1, T: 3, H: 2, Hk: 2, Dh: 3, mask: 'none' },
    { B: 2, T: 17, H: 4, Hk: 2, Dh: 7, mask: 'left' },
    { B: 2, T: 65, H: 8, Hk: 2, Dh: 16, mask: 'right' },
    { B: 1, T: 150, H: 4, Hk: 1, Dh: 64, mask: 'none' },
    { B: 3, T: 33, H: 8, Hk: 1, Dh: 24, mask: 'holes' },
    { B: 2, T: 70, H: 3, Hk: 3, Dh: 33, mask: 'left' },
    { B: 1, T: 129, H: 6, Hk: 3, Dh: 20, mask: 'holes' },
  ];
  for (const [i, c] of cases.entries()) {
    const { mask, f } = fastVsRef(c, 10 + i);
    // fully padded query rows (no visible key) are exact zeros with lse = -inf
    if (mask)
      for (let b = 0; b < c.B; b++)
        for (let t = 0; t < c.T; t++) {
          let visible = false;
          for (let j = 0; j <= t; j++) visible ||= mask[b * c.T + j] === 1;
          if (!visible) {
            for (let h = 0; h < c.H; h++) {
              assert.is(f.lse[(b * c.H + h) * c.T + t], -Infinity);
              for (let x = 0; x < c.Dh; x++) assert.is(f.out[((b * c.T + t) * c.H + h) * c.Dh + x], 0);
            }
          }
        }
  }
  n.attentionForward(new Float32Array(0), null, new Float32Array(0), new Float32Array(0), new Float32Array(0), null, 0, 5, 2, 1, 4, 1);
});

test('masked and future keys cannot leak (even NaN), a NaN in a visible key makes its queries NaN', () => {
  const c: Case = { B: 2, T: 80, H: 4, Hk: 2, Dh: 8, mask: 'left' };
  const q = randn(c.B * c.T * c.H * c.Dh, 1), k = randn(c.B * c.T * c.Hk * c.Dh, 2), v = randn(c.B * c.T * c.Hk * c.Dh, 3);
  const mask = makeMask(c.B, c.T, 'left')!;
  const clean = run(c, 0, 'attentionForward', q, k, v, mask);
  // poison padded positions of batch 1 (t < 5) and the last position of batch 0
  const k2 = k.slice(), v2 = v.slice();
  const poison = (b: number, t: number) => {
    for (let x = 0; x < c.Hk * c.Dh; x++) { k2[(b * c.T + t) * c.Hk * c.Dh + x] = NaN; v2[(b * c.T + t) * c.Hk * c.Dh + x] = Infinity; }
  };
  for (let t = 0; t < 5; t++) poison(1, t);
  poison(0, c.T - 1);
  const p = run(c, 0, 'attentionForward', q, k2, v2, mask);
  for (let b = 0; b < c.B; b++)
    for (let t = 0; t < c.T; t++) {
      if (b === 0 && t === c.T - 1) continue;  // the poisoned query itself sees its own key
      for (let x = 0; x < c.H * c.Dh; x++) {
        const i = (b * c.T + t) * c.H * c.Dh + x;
        assert.is(p.out[i], clean.out[i], `b${b} t${t}`);
      }
    }
  for (let x = 0; x < c.H * c.Dh; x++) assert.ok(Number.isNaN(p.out[(0 * c.T + c.T - 1) * c.H * c.Dh + x]!));
  // NaN in one visible key: every query that sees it (t >= 30 in batch 0, its kv head's query heads) is NaN
  const k3 = k.slice();
  k3[(0 * c.T + 30) * c.Hk * c.Dh + 0] = NaN;  // kv head 0 -> query heads 0, 1
  for (const fn of ['attentionForward', 'attentionForwardRef'] as const) {
    const r = run(c, 0, fn, q, k3, v, mask);
    for (let t = 0; t < c.T; t++)
      for (let h = 0; h < c.H; h++) {
        const val = r.out[((0 * c.T + t) * c.H + h) * c.Dh]!;
        if (t >= 30 && h < 2) assert.ok(Number.isNaN(val), `${fn} t${t} h${h} should be NaN`);
        else assert.ok(Number.isFinite(val), `${fn} t${t} h${h} should be finite`);
      }
  }
});

test('sliding window: fast equals the reference (windows inside a key block, straddling blocks, wider than one)', () => {
  const cases: Case[] = [
    { B: 2, T: 70, H: 4, Hk: 2, Dh: 8, mask: 'none', window: 5 },
    { B: 1, T: 200, H: 8, Hk: 2, Dh: 16, mask: 'none', window: 70 },
    { B: 2, T: 150, H: 4, Hk: 4, Dh: 12, mask: 'holes', window: 64 },
    { B: 1, T: 40, H: 2, Hk: 1, Dh: 5, mask: 'none', window: 1 },
    { B: 3, T: 66, H: 8, Hk: 1, Dh: 16, mask: 'left', window: 3 },
    { B: 2, T: 130, H: 6, Hk: 3, Dh: 20, mask: 'right', window: 129 },
    { B: 1, T: 33, H: 2, Hk: 2, Dh: 8, mask: 'none', window: 1000 },
  ];
  for (const [i, c] of cases.entries()) {
    const { q, k, v, mask, f, r } = fastVsRef(c, 40 + i);
    if (c.T <= 70) assertClose(r.out, jsAttention(c, q, k, v, mask).out, 1e-6, `ref vs js ${JSON.stringify(c)}`);
    // the window matters: without it the outputs differ once a query has more than `window` keys
    if (c.window! < c.T) {
      const full = run({ ...c, window: 0 }, i, 'attentionForward', q, k, v, mask);
      assert.ok(f.out.some((x, j) => x !== full.out[j]), `window ${c.window} changed nothing`);
    } else {
      assert.equal(Array.from(f.out), Array.from(run({ ...c, window: 0 }, i, 'attentionForward', q, k, v, mask).out));
    }
  }
});

test("sliding window: keys before a query's window cannot leak into it (even NaN / inf)", () => {
  const c: Case = { B: 1, T: 150, H: 4, Hk: 2, Dh: 8, mask: 'none', window: 20 };
  const q = randn(c.T * c.H * c.Dh, 1), k = randn(c.T * c.Hk * c.Dh, 2), v = randn(c.T * c.Hk * c.Dh, 3);
  const clean = run(c, 0, 'attentionForward', q, k, v, null);
  const k2 = k.slice(), v2 = v.slice(), bad = 60;
  for (let x = 0; x < c.Hk * c.Dh; x++) { k2[bad * c.Hk * c.Dh + x] = NaN; v2[bad * c.Hk * c.Dh + x] = Infinity; }
  for (const fn of ['attentionForward', 'attentionForwardRef'] as const) {
    const p = run(c, 0, fn, q, k2, v2, null);
    for (let t = 0; t < c.T; t++) {
      const sees = t >= bad && t - bad < c.window!;
      for (let x = 0; x < c.H * c.Dh; x++) {
        const j = t * c.H * c.Dh + x;
        if (sees) assert.ok(Number.isNaN(p.out[j]), `${fn} t${t} sees the poisoned key`);
        else assert.is(p.out[j], fn === 'attentionForward' ? clean.out[j] : p.out[j], `${fn} t${t}`);
        if (!sees) assert.ok(Number.isFinite(p.out[j]), `${fn} t${t} finite`);
      }
    }
  }
});

test('batch invariance: a padded sequence in a batch equals the same sequence alone', () => {
  const T = 40, H = 4, Hk = 2, Dh = 16, pad = 7;
  const q = randn(2 * T * H * Dh, 5), k = randn(2 * T * Hk * Dh, 6), v = randn(2 * T * Hk * Dh, 7);
  const mask = new Uint8Array(2 * T).fill(1);
  for (let t = 0; t < pad; t++) mask[T + t] = 0;
  const out = new Float32Array(2 * T * H * Dh);
  n.attentionForward(out, null, q, k, v, mask, 2, T, H, Hk, Dh, 0.25);
  const L = T - pad, off = T + pad;
  const alone = new Float32Array(L * H * Dh);
  n.attentionForward(alone, null, q.slice(off * H * Dh), k.slice(off * Hk * Dh), v.slice(off * Hk * Dh), null, 1, L, H, Hk, Dh, 0.25);
  assertClose(out.subarray(off * H * Dh), alone, 1e-6, 'padded row vs alone');
});

test.run();
