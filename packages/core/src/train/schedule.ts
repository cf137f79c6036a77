/**
 * Learning-rate schedule of replacement training: linear warmup, then cosine decay to `minLr` over the real
 * number of optimiser steps (the official LLM-Streamline scheduler barely decays; this one ends at `minLr`).
 */
import { StreamlineError } from '../errors.js';

/** Options of {@link learningRate}; all steps count optimiser steps (after gradient accumulation). */
export interface ScheduleOptions {
  /** Peak learning rate, reached at the end of warmup. > 0. */
  lr: number;
  /** Final learning rate, reached at step `totalSteps − 1`. 0 ≤ minLr ≤ lr. */
  minLr: number;
  /** Warmup steps, 0 ≤ warmupSteps ≤ totalSteps. */
  warmupSteps: number;
  /** Number of optimiser steps in the whole run, ≥ 1. */
  totalSteps: number;
}

/**
 * The learning rate of optimiser step `step` (0-based), a pure function:
 * - warmup, `step < W`: `lr · (step + 1) / W` (so step 0 already trains and step W − 1 uses the peak);
 * - then, with `p = clamp((step − W) / max(1, totalSteps − W − 1), 0, 1)`:
 *   `minLr + (lr − minLr) · (1 + cos(π·p)) / 2`: the peak at step W, `minLr` at step `totalSteps − 1` and after.
 *
 * @example learningRate(0, { lr: 2e-4, minLr: 5e-5, warmupSteps: 10, totalSteps: 100 }) // 2e-5
 * @throws StreamlineError E_INVALID_OPTION when an option is out of range or `step` is not a non-negative integer.
 */
export function learningRate(step: number, o: ScheduleOptions): number {
  validate(step, o);
  const W = o.warmupSteps;
  if (step < W) return (o.lr * (step + 1)) / W;
  const p = Math.min(1, Math.max(0, (step - W) / Math.max(1, o.totalSteps - W - 1)));
  return o.minLr + ((o.lr - o.minLr) * (1 + Math.cos(Math.PI * p))) / 2;
}

function validate(step: number, o: ScheduleOptions): void {
  const bad = (what: string) => new StreamlineError('E_INVALID_OPTION', `learning-rate schedule: ${what}`);
  if (!Number.isInteger(step) || step < 0) throw bad(`step must be a non-negative integer, got ${step}`);
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1) throw bad(`totalSteps must be an integer >= 1, got ${o.totalSteps}`);
  if (!Number.isInteger(o.warmupSteps) || o.warmupSteps < 0 || o.warmupSteps > o.totalSteps)
    throw bad(`warmupSteps must be an integer in [0, totalSteps = ${o.totalSteps}], got ${o.warmupSteps}`);
  if (!(Number.isFinite(o.lr) && o.lr > 0)) throw bad(`lr must be a positive number, got ${o.lr}`);
  if (!(Number.isFinite(o.minLr) && o.minLr >= 0 && o.minLr <= o.lr))
    throw bad(`minLr must be in [0, lr = ${o.lr}], got ${o.minLr}`);
}
