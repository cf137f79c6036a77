// Shared helpers for the ops-*.test.ts files: a seeded generator, tensors, bf16 rounding and error measures.
import * as assert from 'uvu/assert';
import type { NativeTensor } from '../src/native.js';

/** Deterministic generator (mulberry32) with a Gaussian sampler. */
export function rng(seed: number) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r.normal() * scale;
  return a;
}

/** f32 -> bf16 bits, round to nearest even (finite inputs). */
export function toBf16(a: Float32Array): Uint16Array {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const x = u[i]!;
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}
export function fromBf16(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i]! << 16;
  return new Float32Array(u.buffer);
}

export function f32Tensor(data: Float32Array, shape: number[]): NativeTensor {
  return { data, dtype: 'f32', shape };
}
export function bf16Tensor(data: Float32Array, shape: number[]): NativeTensor {
  return { data: toBf16(data), dtype: 'bf16', shape };
}

/** max |a - b| / max |b| (a norm-wise relative error); NaN or length mismatch gives Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) return Infinity;
    num = Math.max(num, Math.abs(x - y));
    den = Math.max(den, Math.abs(y));
  }
  return den === 0 ? num : num / den;
}

/** max over elements of |a - b| / (1 + |b|); NaN gives Infinity. */
export function mixedErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let w = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) return Infinity;
    w = Math.max(w, Math.abs(x - y) / (1 + Math.abs(y)));
  }
  return w;
}

export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string, measure = mixedErr) {
  const e = measure(a, b);
  assert.ok(e <= tol, `${what}: error ${e} > ${tol}`);
}

/** Asserts that fn throws an error whose code is `code` and whose message contains `part`. */
export function throwsCode(fn: () => unknown, code: string, part?: string) {
  let err: (Error & { code?: string }) | undefined;
  try {
    fn();
  } catch (e) {
    err = e as Error & { code?: string };
  }
  assert.ok(err, `expected ${code}, nothing was thrown`);
  assert.is(err!.code, code, `code of: ${err!.message}`);
  if (part) assert.ok(err!.message.includes(part), `message "${err!.message}" should mention "${part}"`);
}

export async function rejectsCode(p: Promise<unknown>, code: string, part?: string) {
  let err: (Error & { code?: string }) | undefined;
  try {
    await p;
  } catch (e) {
    err = e as Error & { code?: string };
  }
  assert.ok(err, `expected ${code}, the promise resolved`);
  assert.is(err!.code, code, `code of: ${err!.message}`);
  if (part) assert.ok(err!.message.includes(part), `message "${err!.message}" should mention "${part}"`);
}
