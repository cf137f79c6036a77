/**
 * Task-level metrics (accuracy with lm-eval's standard error) and the LLM-Streamline stability metric.
 *
 * Stability (paper definition): for sample i, σᵢ = population standard deviation over its options of the ORIGINAL
 * model's per-option mean NLL (lm-eval mode: −log-likelihood / continuation tokens; opencompass mode: mean NLL of
 * the whole prompt), wᵢ = softmax over samples of σᵢ, and
 *   stability = Σᵢ wᵢ · [original correct on i ⇔ pruned correct on i],
 * "correct" meaning the primary prediction (acc's) equals gold.
 *
 * Compatibility mode `official` reproduces the released script (calculate_stability.py): it counts
 * matches = #{i : original correct ⇔ pruned correct} and returns Σ_{i < matches} wᵢ, the sum of the FIRST
 * `matches` weights in sample order, whichever samples actually matched. It is labelled as such everywhere.
 *
 * Agreement: the fraction of samples where both models predict the same option.
 */
import { StreamlineError } from '@streamline/core';
import type { ItemResult } from './multiple-choice.js';
import { mean, meanStderr, populationStd, softmax } from './stats.js';

/** Accuracy metrics of one task. Null where a metric is not defined for the task or mode. */
export interface TaskMetrics {
  n: number;
  acc: number;
  acc_stderr: number | null;
  acc_norm: number | null;
  acc_norm_stderr: number | null;
  acc_bytes: number | null;
  acc_bytes_stderr: number | null;
}

function accuracy(results: ItemResult[], key: 'pred' | 'predNorm' | 'predBytes'): { value: number | null; stderr: number | null } {
  if (results.length === 0 || results.some((r) => r[key] === null)) return { value: null, stderr: null };
  const hits = results.map((r) => (r[key] === r.gold ? 1 : 0));
  const se = meanStderr(hits);
  return { value: mean(hits), stderr: Number.isFinite(se) ? se : null };
}

/** acc / acc_norm / acc_bytes with lm-eval's stderr (sample std / √n; null when n < 2). */
export function taskMetrics(results: ItemResult[]): TaskMetrics {
  const acc = accuracy(results, 'pred');
  const norm = accuracy(results, 'predNorm');
  const bytes = accuracy(results, 'predBytes');
  return {
    n: results.length,
    acc: acc.value ?? NaN,
    acc_stderr: acc.stderr,
    acc_norm: norm.value,
    acc_norm_stderr: norm.stderr,
    acc_bytes: bytes.value,
    acc_bytes_stderr: bytes.stderr,
  };
}

/** Stability of a pruned model against the original on one task (definitions in the file comment). */
export interface StabilityResult {
  /** The paper's definition. */
  stability: number;
  /** The official script's value (first `matches` weights). */
  official: number;
  /** Samples where original-correct ⇔ pruned-correct. */
  matches: number;
  /** Fraction of identical predictions. */
  agreement: number;
  /** The weights wᵢ (sum to 1). */
  weights: number[];
}

/**
 * Stability, its official-script variant and agreement.
 * @throws StreamlineError E_EVAL_MISMATCH when the two result lists differ in length or golds.
 */
export function stability(original: ItemResult[], pruned: ItemResult[]): StabilityResult {
  if (original.length !== pruned.length) {
    throw new StreamlineError('E_EVAL_MISMATCH', `stability needs the same samples for both models (${original.length} vs ${pruned.length})`);
  }
  const n = original.length;
  if (n === 0) return { stability: NaN, official: NaN, matches: 0, agreement: NaN, weights: [] };
  const sigma = original.map((r) => populationStd(r.options.map((o) => o.meanNll)));
  const weights = softmax(sigma);
  let s = 0;
  let matches = 0;
  let same = 0;
  for (let i = 0; i < n; i++) {
    const o = original[i]!, p = pruned[i]!;
    if (o.gold !== p.gold) throw new StreamlineError('E_EVAL_MISMATCH', `sample ${i} has gold ${o.gold} for the original and ${p.gold} for the pruned model`);
    if ((o.pred === o.gold) === (p.pred === p.gold)) {
      s += weights[i]!;
      matches++;
    }
    if (o.pred === p.pred) same++;
  }
  let official = 0;
  for (let i = 0; i < matches; i++) official += weights[i]!;
  return { stability: s, official, matches, agreement: same / n, weights };
}
