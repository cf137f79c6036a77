/**
 * Report data shared by the commands: a prune run's training history as a curve for the report's Training section.
 */
import type { PruneResult } from '@streamline/core';
import type { TrainingRun } from '../report/types.js';

const range = (w: { start: number; end: number }) => `[${w.start}, ${w.end})`;

/** The training curve of one prune run (null when nothing was trained). */
export function trainingRun(label: string, r: PruneResult): TrainingRun | null {
  if (!r.training) return null;
  const t = r.training;
  return {
    label, replacement: r.plan.replacement,
    steps: t.history.map((h) => ({ step: h.step, loss: h.loss, lr: h.lr, tokens: h.tokens, ...(h.valLoss !== undefined ? { valLoss: h.valLoss } : {}) })),
    summary: {
      window: range(r.plan.window), parameters: r.plan.parametersAdded, steps: t.steps,
      'best val loss': t.bestValLoss ?? '-', 'best step': t.bestStep, 'time (s)': Number(t.seconds.toFixed(1)),
    },
  };
}
