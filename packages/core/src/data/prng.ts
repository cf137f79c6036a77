/**
 * A small, documented, deterministic PRNG for sampling calibration blocks, so that a seed means the same blocks on
 * every machine and in every language that reimplements it.
 *
 * Generator: SplitMix64 (Steele, Lea & Flood 2014; the seeding generator of xoshiro). State `s` is a 64-bit
 * unsigned integer initialised to the seed; each call does
 *   s = s + 0x9E3779B97F4A7C15 (mod 2^64); z = s;
 *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
 * (all mod 2^64). Reference outputs for seed 0: 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F.
 *
 * Uniform integers in [0, n) use rejection so they are exactly uniform: draw x until x < 2^64 − (2^64 mod n),
 * return x mod n.
 */

const MASK64 = (1n << 64n) - 1n;
const TWO64 = 1n << 64n;

/** SplitMix64: `next()` gives the next 64-bit output, `below(n)` an exactly uniform integer in [0, n). */
export class SplitMix64 {
  private state: bigint;

  /** @param seed a non-negative safe integer (0..2^53−1) or a bigint (taken mod 2^64). */
  constructor(seed: number | bigint) {
    if (typeof seed === 'number' && (!Number.isSafeInteger(seed) || seed < 0)) {
      throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
    }
    this.state = BigInt(seed) & MASK64;
  }

  /** The next 64-bit output as a bigint. */
  next(): bigint {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /** An exactly uniform integer in [0, n), n a positive safe integer. */
  below(n: number): number {
    if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`below(n) needs a positive integer, got ${n}`);
    const bn = BigInt(n);
    const limit = TWO64 - (TWO64 % bn);
    for (;;) {
      const x = this.next();
      if (x < limit) return Number(x % bn);
    }
  }
}

/**
 * Draws `k` distinct indices from [0, n) with a partial Fisher–Yates shuffle driven by SplitMix64(seed): for
 * i = 0..k−1, j = i + below(n − i), swap a[i] and a[j]; the result is a[0..k). When k equals n the indices are
 * returned in order 0..n−1 (no shuffle), which is the documented "all blocks, in order" rule.
 * @throws RangeError when k > n or either is negative.
 */
export function sampleWithoutReplacement(n: number, k: number, seed: number | bigint): number[] {
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(k) || n < 0 || k < 0 || k > n) {
    throw new RangeError(`cannot draw ${k} of ${n} without replacement`);
  }
  if (k === n) return Array.from({ length: n }, (_, i) => i);
  return partialFisherYates(n, k, seed);
}

/**
 * A seeded permutation of [0, n): the same partial Fisher–Yates as sampleWithoutReplacement, run to the end
 * (used to order training blocks per epoch; unlike sampling, k = n still shuffles).
 */
export function shuffledIndices(n: number, seed: number | bigint): number[] {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`cannot shuffle ${n} indices`);
  return partialFisherYates(n, n, seed);
}

function partialFisherYates(n: number, k: number, seed: number | bigint): number[] {
  const rng = new SplitMix64(seed);
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  const out: number[] = [];
  for (let i = 0; i < k; i++) {
    const j = i + rng.below(n - i);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
    out.push(a[i]!);
  }
  return out;
}
