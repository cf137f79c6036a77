// Stability (paper definition), the official script's variant, and agreement on a worked example.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isStreamlineError } from '@streamline/core';
import { stability, taskMetrics, type ItemResult } from '../src/index.js';

/** An item with two options whose ORIGINAL mean NLLs are `nll`, gold 0, predicted `pred`. */
const item = (nll: [number, number], pred: number): ItemResult => ({
  options: nll.map((m) => ({ loglikelihood: -m, tokens: 1, meanNll: m })), gold: 0, pred, predNorm: pred, predBytes: pred,
});

// Worked example, 3 samples, gold 0 everywhere.
//   original mean NLLs: s0 [0, 2 ln 3], s1 [1, 1], s2 [0, 2 ln 2]
//   sigma (population std of two values = |a - b| / 2): ln 3, 0, ln 2
//   w = softmax(sigma) = [3, 1, 2] / 6 = [1/2, 1/6, 1/3]
//   original preds [0, 1, 0] -> correct [Y, N, Y]; pruned preds [1, 1, 0] -> correct [N, N, Y]
//   original correct <=> pruned correct: [no, yes, yes]
//   stability (paper)   = w1 + w2 = 1/6 + 1/3 = 1/2
//   matches = 2 -> official script = w0 + w1 (the FIRST two weights) = 1/2 + 1/6 = 2/3
//   agreement (same prediction): [no, yes, yes] = 2/3
const original = [item([0, 2 * Math.log(3)], 0), item([1, 1], 1), item([0, 2 * Math.log(2)], 0)];
const pruned = [item([5, 5], 1), item([5, 5], 1), item([5, 5], 0)];
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

test('mismatched inputs are E_EVAL_MISMATCH', () => {
  assert.throws(() => stability(original, pruned.slice(1)), (e: unknown) => isStreamlineError(e, 'E_EVAL_MISMATCH'));
  assert.throws(() => stability(original, [pruned[0]!, pruned[1]!, { ...pruned[2]!, gold: 1 }]), (e: unknown) => isStreamlineError(e, 'E_EVAL_MISMATCH'));
});

test('worked example: weights, stability, official-script value, agreement', () => {
  const s = stability(original, pruned);
  close(s.weights[0]!, 1 / 2);
  close(s.weights[1]!, 1 / 6);
  close(s.weights[2]!, 1 / 3);
  close(s.stability, 1 / 2);
  assert.is(s.matches, 2);
  close(s.official, 2 / 3);
  close(s.agreement, 2 / 3);
});

test('identical models: stability 1, official 1, agreement 1', () => {
  const s = stability(original, original);
  close(s.stability, 1);
  close(s.official, 1);
  close(s.agreement, 1);
});

test('taskMetrics: acc and lm-eval stderr; null where a metric is undefined', () => {
  const m = taskMetrics([item([0, 1], 0), item([0, 1], 1), item([0, 1], 0), item([0, 1], 0)]);
  // hits [1, 0, 1, 1]: acc 0.75, stderr sqrt(0.25) / 2 = 0.25
  assert.equal([m.n, m.acc, m.acc_stderr, m.acc_norm, m.acc_bytes], [4, 0.75, 0.25, 0.75, 0.75]);
  const w = taskMetrics([{ ...item([0, 1], 0), predNorm: null, predBytes: null }]);
  assert.equal([w.acc, w.acc_stderr, w.acc_norm, w.acc_bytes], [1, null, null, null]);
});

test.run();
