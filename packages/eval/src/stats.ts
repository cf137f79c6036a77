/**
 * Small numeric helpers with the exact semantics evaluation depends on (numpy's argmax tie rule, lm-eval's
 * standard error, population standard deviation, softmax).
 */

/** Index of the largest value; the first index wins ties (numpy.argmax). NaN never wins. -1 for an empty list. */
export function argmax(values: ArrayLike<number>): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) continue;
    if (best < 0 || v > values[best]!) best = i;
  }
  return best;
}

/** Index of the smallest value; the first index wins ties. NaN never wins. -1 for an empty list. */
export function argmin(values: ArrayLike<number>): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) continue;
    if (best < 0 || v < values[best]!) best = i;
  }
  return best;
}

/** Arithmetic mean (NaN for an empty list). */
export function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return s / values.length;
}

/**
 * Standard error of the mean as lm-evaluation-harness reports it (`mean_stderr`): sample standard deviation
 * (n − 1 denominator) divided by √n. Undefined (returns NaN) for fewer than two values.
 */
export function meanStderr(values: ArrayLike<number>): number {
  const n = values.length;
  if (n < 2) return NaN;
  const m = mean(values);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i]! - m) ** 2;
  return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
}

/** Population standard deviation (n denominator, numpy.std's default). */
export function populationStd(values: ArrayLike<number>): number {
  const n = values.length;
  const m = mean(values);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i]! - m) ** 2;
  return Math.sqrt(ss / n);
}

/** Softmax, computed with the maximum subtracted (same value as exp(x) / Σ exp(x), without overflow). */
export function softmax(values: ArrayLike<number>): number[] {
  let mx = -Infinity;
  for (let i = 0; i < values.length; i++) mx = Math.max(mx, values[i]!);
  const e = Array.from({ length: values.length }, (_, i) => Math.exp(values[i]! - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Length in Unicode code points (Python's `len(str)`), not UTF-16 units. */
export function codePointLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Length in UTF-8 bytes (Python's `len(s.encode("utf-8"))`). */
export function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}
