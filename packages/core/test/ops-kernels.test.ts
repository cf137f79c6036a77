// Forward kernels other than attention: each fast path against its reference (and against a JS f64
// formula where the reference itself encodes Hugging Face semantics), odd sizes, zero rows, NaN, bad input.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import { assertClose, bf16Tensor, f32Tensor, fromBf16, randn, throwsCode, toBf16 } from './ops-helpers.js';

const n = native();

test('rmsnorm: bad input is a typed error', () => {
  throwsCode(() => n.rmsnormForward(new Float32Array(6), new Float32Array(5), null, 2, 3, 1e-6), 'E_SHAPE', 'x');
  throwsCode(() => n.rmsnormForward(new Float32Array(6), new Float32Array(6), f32Tensor(new Float32Array(2), [2]), 2, 3, 1e-6), 'E_SHAPE', 'w');
  throwsCode(() => n.rmsnormForward(new Float64Array(6), new Float32Array(6), null, 2, 3, 1e-6), 'E_NATIVE_ARG', 'y');
});

test('rmsnorm: fast == reference == HF formula (f32 weights, bf16 weights, no weight), odd D, M = 0', () => {
  for (const D of [1, 3, 8, 17, 64, 255, 1000]) {
    for (const M of [0, 1, 5]) {
      const x = randn(M * D, D * 7 + M, 3), w = randn(D, D + 1);
      for (const wt of [f32Tensor(w, [D]), bf16Tensor(w, [D]), null]) {
        const y = new Float32Array(M * D), r = new Float32Array(M * D);
        n.rmsnormForward(y, x, wt, M, D, 1e-6);
        n.rmsnormForwardRef(r, x, wt, M, D, 1e-6);
        assert.equal(Array.from(y), Array.from(r), `fast == ref D=${D} M=${M} ${wt?.dtype}`);
        // HF: variance = mean(x^2) in f32, x * rsqrt(var + eps), times w
        const wf = wt === null ? null : wt.dtype === 'bf16' ? fromBf16(wt.data as Uint16Array) : w;
        const want = new Float32Array(M * D);
        for (let m = 0; m < M; m++) {
          let s = 0;
          for (let i = 0; i < D; i++) s += x[m * D + i]! * x[m * D + i]!;
          const rr = 1 / Math.sqrt(s / D + 1e-6);
          for (let i = 0; i < D; i++) want[m * D + i] = x[m * D + i]! * rr * (wf ? wf[i]! : 1);
        }
        assertClose(y, want, 1e-6, `HF formula D=${D}`);
      }
    }
  }
});

test('rmsnorm / layernorm: NaN in a row makes that row NaN and no other', () => {
  const D = 19, M = 3;
  const x = randn(M * D, 5);
  x[D + 4] = NaN;
  const y = new Float32Array(M * D), z = new Float32Array(M * D);
  n.rmsnormForward(y, x, null, M, D, 1e-6);
  n.layernormForward(z, x, null, null, M, D, 1e-5);
  for (const out of [y, z]) {
    for (let i = 0; i < D; i++) {
      assert.ok(Number.isFinite(out[i]!) && Number.isFinite(out[2 * D + i]!));
      assert.ok(Number.isNaN(out[D + i]!));
    }
  }
});

test('layernorm: fast == reference == torch formula (biased variance, eps inside sqrt)', () => {
  for (const D of [1, 2, 7, 64, 513]) {
    const M = 4;
    const x = randn(M * D, D, 2), w = randn(D, D + 3), b = randn(D, D + 9);
    for (const dt of ['f32', 'bf16']) {
      const wt = dt === 'f32' ? f32Tensor(w, [D]) : bf16Tensor(w, [D]);
      const bt = dt === 'f32' ? f32Tensor(b, [D]) : bf16Tensor(b, [D]);
      const y = new Float32Array(M * D), r = new Float32Array(M * D);
      n.layernormForward(y, x, wt, bt, M, D, 1e-5);
      n.layernormForwardRef(r, x, wt, bt, M, D, 1e-5);
      assert.equal(Array.from(y), Array.from(r));
      const wf = dt === 'f32' ? w : fromBf16(toBf16(w)), bf = dt === 'f32' ? b : fromBf16(toBf16(b));
      const want = new Float64Array(M * D);
      for (let m = 0; m < M; m++) {
        let mean = 0, v = 0;
        for (let i = 0; i < D; i++) mean += x[m * D + i]!;
        mean /= D;
        for (let i = 0; i < D; i++) v += (x[m * D + i]! - mean) ** 2;
        v /= D;
        for (let i = 0; i < D; i++) want[m * D + i] = ((x[m * D + i]! - mean) / Math.sqrt(v + 1e-5)) * wf[i]! + bf[i]!;
      }
      // (x - mean) is evaluated in f32 with mean rounded to f32, as torch does: a few ulp of cancellation
      assertClose(y, want, 2e-5, `layernorm D=${D} ${dt}`);
    }
  }
  throwsCode(() => n.layernormForward(new Float32Array(4), new Float32Array(4), f32Tensor(new Float32Array(2), [2]), bf16Tensor(new Float32Array(2), [2]), 2, 2, 1e-5), 'E_DTYPE');
});

test('embedding: rows of f32 / bf16 / f16 tables; E_TOKEN_RANGE names the bad id', () => {
  const V = 11, D = 9;
  const t = randn(V * D, 3);
  const ids = new Int32Array([0, 10, 3, 3]);
  const out = new Float32Array(ids.length * D);
  n.embeddingForward(out, ids, f32Tensor(t, [V, D]));
  for (let m = 0; m < ids.length; m++)
    for (let i = 0; i < D; i++) assert.is(out[m * D + i], t[ids[m]! * D + i]);
  n.embeddingForward(out, ids, bf16Tensor(t, [V, D]));
  const tb = fromBf16(toBf16(t));
  for (let m = 0; m < ids.length; m++)
    for (let i = 0; i < D; i++) assert.is(out[m * D + i], tb[ids[m]! * D + i]);
  const h = new Uint16Array(V * D);
  n.convertFloats(h, 'f16', t, 'f32');
  n.embeddingForward(out, ids, { data: h, dtype: 'f16', shape: [V, D] });
  assert.ok(Math.abs(out[D]! - t[10 * D]!) < 1e-2);
  n.embeddingForward(new Float32Array(0), new Int32Array(0), f32Tensor(t, [V, D]));
  throwsCode(() => n.embeddingForward(out, new Int32Array([1, 11, 2, 0]), f32Tensor(t, [V, D])), 'E_TOKEN_RANGE', 'ids[1] = 11');
  throwsCode(() => n.embeddingForward(out, new Int32Array([1, -1, 2, 0]), f32Tensor(t, [V, D])), 'E_TOKEN_RANGE', '-1');
  throwsCode(() => n.embeddingForward(new Float32Array(3), ids, f32Tensor(t, [V, D])), 'E_SHAPE', 'out');
});

test('rope: tables match HF (f32 angle, cos/sin, attention scaling) and rotation fast == ref == formula', () => {
  const Dh = 12, half = 6, M = 7, nh = 3;
  const inv = new Float32Array(half).map((_, i) => Math.fround(1 / 10000 ** ((2 * i) / Dh)));
  const pos = new Int32Array([0, 1, 2, 5, 100, 4095, 131071]);
  const cos = new Float32Array(M * half), sin = new Float32Array(M * half);
  n.ropeTables(cos, sin, pos, inv, 0.75);
  for (let m = 0; m < M; m++)
    for (let i = 0; i < half; i++) {
      const a = Math.fround(pos[m]! * inv[i]!);
      assert.is(cos[m * half + i], Math.fround(Math.fround(Math.cos(a)) * 0.75));
      assert.is(sin[m * half + i], Math.fround(Math.fround(Math.sin(a)) * 0.75));
    }
  for (const [dh, heads] of [[12, 3], [64, 2], [2, 1], [18, 5]] as const) {
    const h2 = dh / 2;
    const ivf = new Float32Array(h2).map((_, i) => Math.fround(1 / 10000 ** ((2 * i) / dh)));
    const c = new Float32Array(M * h2), s = new Float32Array(M * h2);
    n.ropeTables(c, s, pos, ivf);
    const x = randn(M * heads * dh, dh + heads);
    const a = x.slice(), b = x.slice();
    n.ropeForward(a, c, s, M, heads, dh);
    n.ropeForwardRef(b, c, s, M, heads, dh);
    assert.equal(Array.from(a), Array.from(b), `dh=${dh}`);
    for (let m = 0; m < M; m++)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < h2; i++) {
          const o = (m * heads + h) * dh, x1 = x[o + i]!, x2 = x[o + h2 + i]!, cc = c[m * h2 + i]!, ss = s[m * h2 + i]!;
          assert.is(a[o + i], Math.fround(Math.fround(x1 * cc) - Math.fround(x2 * ss)));
          assert.is(a[o + h2 + i], Math.fround(Math.fround(x2 * cc) + Math.fround(x1 * ss)));
        }
  }
  throwsCode(() => n.ropeForward(new Float32Array(10), cos, sin, M, 1, 10), 'E_SHAPE');
});

test('activations and gated products: fast == reference, formulas, NaN kept', () => {
  const N = 1037;
  const x = randn(N, 1, 5), up = randn(N, 2);
  x[0] = NaN; x[1] = 100; x[2] = -100; x[3] = 0; x[4] = -0; x[5] = 88.5; x[6] = -88.5;
  const f: Record<string, (v: number) => number> = {
    silu: (v) => v / (1 + Math.exp(-v)),
    relu: (v) => (v < 0 ? 0 : v),
    gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
    gelu_tanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  };
  for (const kind of ['silu', 'relu', 'gelu', 'gelu_tanh'] as const) {
    const y = new Float32Array(N), r = new Float32Array(N), g = new Float32Array(N), gr = new Float32Array(N);
    n.activationForward(y, x, kind);
    n.activationForwardRef(r, x, kind);
    n.gatedForward(g, x, up, kind);
    n.gatedForwardRef(gr, x, up, kind);
    assert.ok(Number.isNaN(y[0]!) && Number.isNaN(r[0]!) && Number.isNaN(g[0]!), `${kind}: NaN stays NaN`);
    assertClose(y.subarray(1), r.subarray(1), 2e-7, `${kind} fast vs ref`);
    assertClose(g.subarray(1), gr.subarray(1), 2e-7, `${kind} gated fast vs ref`);
    const want = Array.from(x.subarray(1), f[kind]!);
    assertClose(r.subarray(1), want, 2e-6, `${kind} ref vs formula`);
    const gw = Array.from(x.subarray(1), (v, i) => f[kind]!(v) * up[i + 1]!);
    assertClose(g.subarray(1), gw, 2e-6, `${kind} gated vs formula`);
  }
  n.activationForward(new Float32Array(0), new Float32Array(0), 'silu');
  throwsCode(() => n.activationForward(new Float32Array(3), new Float32Array(3), 'swish' as never), 'E_NATIVE_ARG', 'swish');
  throwsCode(() => n.gatedForward(new Float32Array(3), new Float32Array(3), new Float32Array(2), 'silu'), 'E_SHAPE', 'up');
});

test('log_softmax and token log-probs: fast == ref == f64 formula, large V, NaN rows, M = 0', () => {
  for (const [M, V] of [[3, 1], [4, 7], [2, 1001], [2, 50257]] as const) {
    const x = randn(M * V, V, 8);
    const y = new Float32Array(M * V), r = new Float32Array(M * V);
    n.logSoftmaxForward(y, x, M, V);
    n.logSoftmaxForwardRef(r, x, M, V);
    assertClose(y, r, 1e-6, `fast vs ref V=${V}`);
    const want = new Float64Array(M * V);
    for (let m = 0; m < M; m++) {
      let mx = -Infinity, s = 0;
      for (let i = 0; i < V; i++) mx = Math.max(mx, x[m * V + i]!);
      for (let i = 0; i < V; i++) s += Math.exp(x[m * V + i]! - mx);
      for (let i = 0; i < V; i++) want[m * V + i] = x[m * V + i]! - mx - Math.log(s);
    }
    assertClose(y, want, 2e-6, `formula V=${V}`);
    const tg = new Int32Array(M).map((_, m) => (m === 1 ? -1 : (m * 7919) % V));
    const lp = new Float32Array(M);
    n.tokenLogprobs(lp, x, tg, M, V);
    for (let m = 0; m < M; m++) assert.is(lp[m], tg[m]! < 0 ? 0 : y[m * V + tg[m]!], `row ${m}`);
    // in place
    const z = x.slice();
    n.logSoftmaxForward(z, z, M, V);
    assert.equal(Array.from(z), Array.from(y));
  }
  const x = randn(3 * 9, 4);
  x[9 + 5] = NaN;
  const y = new Float32Array(27), lp = new Float32Array(3);
  n.logSoftmaxForward(y, x, 3, 9);
  n.tokenLogprobs(lp, x, new Int32Array([0, 0, 0]), 3, 9);
  for (let i = 0; i < 9; i++) assert.ok(Number.isNaN(y[9 + i]!) && Number.isFinite(y[i]!) && Number.isFinite(y[18 + i]!));
  assert.ok(Number.isNaN(lp[1]!) && Number.isFinite(lp[0]!));
  n.logSoftmaxForward(new Float32Array(0), new Float32Array(0), 0, 9);
  throwsCode(() => n.tokenLogprobs(lp, x, new Int32Array([0, 9, 0]), 3, 9), 'E_TOKEN_RANGE', 'targets[1] = 9');
});

test('linear: fast == reference for f32 / bf16 / f16 weights, bias, odd and zero sizes', () => {
  for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [17, 33, 65], [70, 130, 48], [0, 4, 4], [4, 4, 0]] as const) {
    const x = randn(M * K, M + N + K), w = randn(N * K, N * K, 0.3), b = randn(N, N);
    for (const dt of ['f32', 'bf16', 'f16']) {
      let wt = f32Tensor(w, [N, K]);
      if (dt === 'bf16') wt = bf16Tensor(w, [N, K]);
      if (dt === 'f16') {
        const h = new Uint16Array(N * K);
        n.convertFloats(h, 'f16', w, 'f32');
        wt = { data: h, dtype: 'f16', shape: [N, K] };
      }
      for (const bias of [b, null]) {
        const y = new Float32Array(M * N), r = new Float32Array(M * N);
        n.linearForward(y, x, wt, bias, M, N, K);
        n.linearForwardRef(r, x, wt, bias, M, N, K);
        assertClose(y, r, 1e-5, `linear ${M}x${N}x${K} ${dt}`);
      }
    }
  }
  throwsCode(() => n.linearForward(new Float32Array(4), new Float32Array(4), f32Tensor(new Float32Array(3), [3]), null, 2, 2, 2), 'E_SHAPE', 'w');
});

// Abramowitz-Stegun 7.1.26 is too coarse; use a series / continued fraction accurate to ~1e-15.
function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 3) {
    let sum = t, term = t;
    for (let k = 1; k < 200; k++) {
      term *= (-t * t) / k;
      const add = term / (2 * k + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (t + f);
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f);
  return Math.sign(x) * (1 - erfc);
}

test.run();
