// Shared pieces of the backward-pass tests: a seeded generator, plain f64 forward passes written in JavaScript
// (the native forward kernels are tested elsewhere; these are the ground truth for the gradient checks),
// central finite differences and error measures. Not a test file itself.

export type F64 = Float64Array;

/** Seeded xorshift32 generator with normal samples (Box–Muller). */
export function rng(seed: number): { uniform(): number; normal(): number } {
  let s = seed >>> 0 || 1;
  const uniform = (): number => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return {
    uniform,
    normal: () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()),
  };
}

/** n normal samples times `scale`, rounded to f32 so that the f64 and f32 computations see the same values. */
export function randn(r: ReturnType<typeof rng>, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r.normal() * scale;
  return a;
}

export const f64 = (a: ArrayLike<number>): F64 => Float64Array.from(a);
export const f32 = (a: ArrayLike<number>): Float32Array => Float32Array.from(a);

/** max |a − b| / max(max |b|, floor): a relative error in the max norm. NaN anywhere gives Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-30): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let num = 0, den = floor;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) return Infinity;
    num = Math.max(num, Math.abs(x - y));
    den = Math.max(den, Math.abs(y));
  }
  return num / den;
}

/** Σ g·y: the scalar whose gradient a backward pass with upstream gradient g computes. */
export function dot(g: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += g[i]! * y[i]!;
  return s;
}

/** Central differences of loss() with respect to every element of x (perturbed in place and restored). */
export function numericGrad(x: F64, loss: () => number, h = 1e-6): F64 {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    const step = h * Math.max(1, Math.abs(x0));
    x[i] = x0 + step; const lp = loss();
    x[i] = x0 - step; const lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * step);
  }
  return g;
}

// ---- f64 forward passes (same semantics as ops.h) ---------------------------------------------------------

export function linearF64(x: F64, w: F64, b: F64 | null, M: number, N: number, K: number): F64 {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s;
    }
  return y;
}

export function rmsnormF64(x: F64, w: F64 | null, M: number, D: number, eps: number): F64 {
  const y = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[m * D + i]! ** 2;
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[m * D + i] = x[m * D + i]! * r * (w ? w[i]! : 1);
  }
  return y;
}

export function layernormF64(x: F64, w: F64 | null, b: F64 | null, M: number, D: number, eps: number): F64 {
  const y = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let mu = 0;
    for (let i = 0; i < D; i++) mu += x[m * D + i]!;
    mu /= D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[m * D + i]! - mu) ** 2;
    const r = 1 / Math.sqrt(v / D + eps);
    for (let i = 0; i < D; i++) y[m * D + i] = (x[m * D + i]! - mu) * r * (w ? w[i]! : 1) + (b ? b[i]! : 0);
  }
  return y;
}

/** erf to ~1e-15 (series for small |x|, continued fraction via erfc for large). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = ax, sum = ax;
    for (let n = 1; n < 80; n++) {
      term *= -ax * ax / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz-free backward evaluation)
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

export type ActName = 'silu' | 'relu' | 'gelu' | 'gelu_tanh';
export const ACTS: ActName[] = ['silu', 'relu', 'gelu', 'gelu_tanh'];

export function actF64(x: number, act: ActName): number {
  switch (act) {
    case 'silu': return x / (1 + Math.exp(-x));
    case 'relu': return x > 0 ? x : 0;
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  }
}

/** cos/sin tables [M, half] for positions, f64 (angle = pos·invFreq). */
export function ropeTablesF64(positions: ArrayLike<number>, invFreq: ArrayLike<number>): { cos: F64; sin: F64 } {
  const M = positions.length, half = invFreq.length;
  const cos = new Float64Array(M * half), sin = new Float64Array(M * half);
  for (let m = 0; m < M; m++)
    for (let i = 0; i < half; i++) {
      const a = positions[m]! * invFreq[i]!;
      cos[m * half + i] = Math.cos(a);
      sin[m * half + i] = Math.sin(a);
    }
  return { cos, sin };
}

/** Rotate-half RoPE on x[M, nheads, Dh] (returns a new array). */
export function ropeF64(x: F64, cos: ArrayLike<number>, sin: ArrayLike<number>, M: number, nh: number, Dh: number, rot = Dh): F64 {
  // partial rotary (rot < Dh): the dims past rot keep their values
  const y = Float64Array.from(x), half = rot / 2;
  for (let m = 0; m < M; m++)
    for (let h = 0; h < nh; h++)
      for (let i = 0; i < half; i++) {
        const o = (m * nh + h) * Dh, c = cos[m * half + i]!, s = sin[m * half + i]!;
        const x1 = x[o + i]!, x2 = x[o + i + half]!;
        y[o + i] = x1 * c - x2 * s;
        y[o + i + half] = x2 * c + x1 * s;
      }
  return y;
}

/**
 * Causal GQA attention in f64: q[B,T,H,Dh], k/v[B,T,Hk,Dh], mask[B,T] (null = all real). Returns out and
 * lse[B,H,T] (−Infinity for a query that sees no key; its output is 0).
 */
/** Causal GQA attention in f64; window > 0: query i sees only keys j with i - j < window (sliding window). */
export function attentionF64(q: F64, k: F64, v: F64, mask: Uint8Array | null, B: number, T: number, H: number,
  Hk: number, Dh: number, scale: number, window = 0): { out: F64; lse: F64 } {
  const out = new Float64Array(B * T * H * Dh), lse = new Float64Array(B * H * T).fill(-Infinity);
  const nrep = H / Hk, s = new Float64Array(T);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / nrep);
      for (let i = 0; i < T; i++) {
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          if ((mask && !mask[b * T + j]) || (window > 0 && i - j >= window)) { s[j] = -Infinity; continue; }
          let d = 0;
          for (let e = 0; e < Dh; e++) d += q[((b * T + i) * H + h) * Dh + e]! * k[((b * T + j) * Hk + g) * Dh + e]!;
          s[j] = d * scale;
          mx = Math.max(mx, s[j]!);
        }
        if (mx === -Infinity) continue;
        let z = 0;
        for (let j = 0; j <= i; j++) z += Math.exp(s[j]! - mx);
        lse[(b * H + h) * T + i] = mx + Math.log(z);
        for (let j = 0; j <= i; j++) {
          const p = Math.exp(s[j]! - mx) / z;
          if (p === 0) continue;
          for (let e = 0; e < Dh; e++) out[((b * T + i) * H + h) * Dh + e] += p * v[((b * T + j) * Hk + g) * Dh + e]!;
        }
      }
    }
  return { out, lse };
}

/** lse as the native kernel takes it: f32, with rows that see no key set to 0 (their value is never read). */
export function lseF32(lse: F64): Float32Array {
  return Float32Array.from(lse, (x) => (Number.isFinite(x) ? x : 0));
}
