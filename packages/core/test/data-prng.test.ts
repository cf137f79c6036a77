// SplitMix64 reference outputs and the partial Fisher–Yates draw.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SplitMix64, sampleWithoutReplacement } from '../src/index.js';

test('bad arguments throw RangeError', () => {
  assert.throws(() => new SplitMix64(-1), RangeError);
  assert.throws(() => new SplitMix64(1.5), RangeError);
  assert.throws(() => new SplitMix64(0).below(0), RangeError);
  assert.throws(() => sampleWithoutReplacement(3, 4, 0), RangeError);
});

test('SplitMix64(0) gives the published reference outputs', () => {
  const r = new SplitMix64(0);
  assert.is(r.next(), 0xe220a8397b1dcdafn);
  assert.is(r.next(), 0x6e789e6aa1b965f4n);
  assert.is(r.next(), 0x06c45d188009454fn);
});

test('below(n) = x mod n of the next output (no rejection needed for small n)', () => {
  // 0xE220A8397B1DCDAF mod 10 = 16294208416658607535 mod 10 = 5
  assert.is(new SplitMix64(0).below(10), 5);
});

test('draws are distinct, in range, deterministic per seed, and all-in-order when k == n', () => {
  const a = sampleWithoutReplacement(100, 20, 7);
  assert.is(new Set(a).size, 20);
  assert.ok(a.every((x) => x >= 0 && x < 100));
  assert.equal(sampleWithoutReplacement(100, 20, 7), a);
  assert.not.equal(sampleWithoutReplacement(100, 20, 8), a);
  assert.equal(sampleWithoutReplacement(5, 5, 123), [0, 1, 2, 3, 4]);
  // k = 1 of 10 with seed 0: j = 0 + below(10) = 5 (previous test), so the first draw is block 5.
  assert.equal(sampleWithoutReplacement(10, 1, 0), [5]);
});

test.run();
