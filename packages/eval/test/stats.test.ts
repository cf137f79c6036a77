// Numeric helpers: numpy's first-index tie rule, lm-eval's stderr, population std, code points vs bytes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { argmax, argmin, codePointLength, meanStderr, populationStd, softmax, utf8Length } from '../src/index.js';

test('argmax/argmin: first index wins ties, NaN never wins, empty is -1', () => {
  assert.is(argmax([-2, -1, -1, -3]), 1);
  assert.is(argmin([2, 1, 1, 3]), 1);
  assert.is(argmax([NaN, -5, -5]), 1);
  assert.is(argmax([]), -1);
});

test('meanStderr = sample std / sqrt(n)', () => {
  // [1,0,1,1]: mean 0.75; squared deviations 0.0625*3 + 0.5625 = 0.75; /(n-1) = 0.25; sd 0.5; /sqrt(4) = 0.25
  assert.is(meanStderr([1, 0, 1, 1]), 0.25);
  assert.ok(Number.isNaN(meanStderr([1])));
});

test('populationStd divides by n; softmax sums to 1', () => {
  assert.is(populationStd([1, 3]), 1); // mean 2, deviations 1 and 1
  const w = softmax([Math.log(3), 0, Math.log(2)]);
  assert.ok(Math.abs(w[0]! - 0.5) < 1e-15 && Math.abs(w[1]! - 1 / 6) < 1e-15 && Math.abs(w[2]! - 1 / 3) < 1e-15);
});

test('code points (Python len) vs UTF-16 length vs UTF-8 bytes', () => {
  const s = 'é😀';
  assert.is(s.length, 3); // what JavaScript would count
  assert.is(codePointLength(s), 2);
  assert.is(utf8Length(s), 6); // é = 2 bytes, 😀 = 4
});

test.run();
