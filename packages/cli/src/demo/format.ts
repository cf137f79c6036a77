/**
 * Presentation of the demo's results: the comparison table (text and report), the training runs for the report's
 * curves, the JSON document of `--json`.
 */
import type { ComparisonData } from '../report/types.js';
import { fmt, human, table } from '../ui/table.js';
import type { DemoResult, DemoRow } from './pipeline.js';

const range = (w: { start: number; end: number } | null) => (w ? `[${w.start}, ${w.end})` : '-');
const secs = (x: number | null) => (x === null ? '-' : `${x.toFixed(1)} s`);

/** The comparison as a plain-text table (rows: original, then each kind). */
export function comparisonText(rows: DemoRow[]): string {
  const head = ['model', 'removed', 'layers', 'params', 'test PPL', 'acc', 'acc_norm', 'stability', 'prune time'];
  return table([head, ...rows.map((r) => [
    r.model, range(r.window), String(r.layers), human(r.parameters), fmt(r.ppl, 2), fmt(r.acc, 3), fmt(r.accNorm, 3),
    fmt(r.stability, 3), secs(r.pruneSeconds),
  ])]);
}

/** The comparison for the HTML report. */
export function comparisonData(d: DemoResult): ComparisonData {
  const s = d.settings;
  return {
    title: 'Original against each replacement',
    columns: ['model', 'removed', 'layers', 'parameters', 'test PPL', 'acc', 'acc_norm', 'stability', 'agreement', 'rel. error', 'prune time (s)'],
    rows: d.rows.map((r) => ({
      model: r.model, removed: range(r.window), layers: r.layers, parameters: human(r.parameters), 'test PPL': r.ppl, acc: r.acc,
      acc_norm: r.accNorm, stability: r.stability, agreement: r.agreement, 'rel. error': r.relativeError,
      'prune time (s)': r.pruneSeconds === null ? null : Number(r.pruneSeconds.toFixed(1)),
    })),
    notes: [
      `Target sparsity ${s.sparsity} of the parameters, net of the replacement; the window length n follows from it for each kind.`,
      `test PPL: chunked perplexity of ${d.data.testChapters} test chapters at seqLen ${s.seqLen} (the model's training length).`,
      `acc, acc_norm: kjv-verse-endings, ${d.data.taskItems} items, lm-evaluation-harness rules; chance 0.25.`,
      'stability: softmax(σ)-weighted agreement on correctness with the original (the paper\'s definition); agreement: identical predictions.',
      'rel. error: ‖R(h[s]) − h[s+n]‖ / ‖h[s+n]‖ on held-out training blocks.',
    ],
  };
}

/** The document of `demo --json`. */
export function demoJson(d: DemoResult) {
  return {
    model: d.model, out: d.out, settings: d.settings, kinds: d.kinds, data: d.data,
    score: { ...d.score, matrix: d.score.matrix.map((row) => row.map((v) => (Number.isFinite(v) ? v : null))) },
    rows: d.rows,
    runs: d.runs.map((r) => ({
      kind: r.kind, plan: r.prune.plan, heldOut: r.prune.heldOut, relativeError: r.prune.relativeError,
      training: r.prune.training, linear: r.prune.linear, timings: r.prune.timings, exported: r.prune.exported,
      eval: r.eval,
    })),
    timings: d.timings,
    device: d.device, ...(d.gpuPeakBytes !== null ? { gpuPeakBytes: d.gpuPeakBytes } : {}),
  };
}
