/**
 * Realistic sample data for the report tests (and for regenerating docs/report-screenshot.png): a 16-layer
 * model's 17×17 boundary matrix, 13 windows of n = 4, two 50-step training runs and a comparison table.
 * Deterministic (seeded), shaped like real output, but made up: not a measurement.
 */
import type { ReportData } from '../src/report/types.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sample report data; `layers` (default 16) sets the matrix size. */
export function sampleReportData(layers = 16): ReportData {
  const L = layers, n = 4;
  const rand = rng(42);
  // How much each layer turns the hidden state: large at the ends, small in the middle.
  const turn = Array.from({ length: L }, (_, k) => {
    const edge = Math.exp(-k / 1.5) * 0.55 + Math.exp(-(L - 1 - k) / 1.2) * 0.35;
    return 0.03 + edge + 0.04 * rand() + (k >= 8 && k < 12 ? -0.02 : 0);
  });
  const matrix = Array.from({ length: L + 1 }, (_, i) =>
    Array.from({ length: L + 1 }, (_, j) => {
      let d = 0;
      for (let k = Math.min(i, j); k < Math.max(i, j); k++) d += turn[k]!;
      return Math.cos(Math.min(Math.PI / 2, Math.sqrt(d)));
    }));
  const windows = Array.from({ length: L - n + 1 }, (_, start) => ({ start, end: start + n, score: matrix[start]![start + n]! }));
  const best = windows.reduce((a, b) => (b.score > a.score ? b : a));
  const blockInfluence = turn.map((_, k) => 1 - matrix[k]![k + 1]!);

  const run = (label: string, replacement: string, floor: number, speed: number) => {
    const steps = Array.from({ length: 50 }, (_, i) => {
      const step = i + 1;
      const lr = step <= 5 ? 2e-4 * step / 5 : 5e-5 + 1.5e-4 * 0.5 * (1 + Math.cos(Math.PI * (step - 5) / 45));
      const loss = floor + 0.9 * Math.exp(-step / speed) * (1 + 0.08 * (rand() - 0.5));
      return { step, loss, lr, tokens: step * 8 * 512, ...(step % 10 === 0 ? { valLoss: loss * 1.04 + 0.005 } : {}) };
    });
    return {
      label, replacement, steps,
      summary: {
        parameters: replacement === 'mlp' ? 196_864 : 262_400, 'final loss': steps[49]!.loss,
        'best val loss': steps[49]!.valLoss!, 'time (s)': replacement === 'mlp' ? 38.4 : 52.9,
      },
    };
  };

  return {
    title: 'kjv-llama: prune 4 of 16 layers',
    command: 'streamline demo --out runs/demo --report runs/demo/report.html',
    createdAt: '2026-11-28T21:04:11Z',
    tool: { name: 'streamline', version: '0.1.0' },
    manifest: {
      model: '../shared/models/kjv-llama',
      architecture: 'llama',
      layers: L,
      hidden: 256,
      dtype: 'bf16',
      calibration: { path: 'data/kjv/calib.jsonl', documents: 1189, samples: 50, seqLen: 512, seed: 0 },
      sparsity: 0.25,
      node: 'v20.20.2',
      cpu: 'AMD EPYC (avx2, fma, f16c)',
      threads: 2,
      'model sha256': '5f1c0e8b2d9a7c64e1f3b0a9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9',
    },
    score: {
      model: '../shared/models/kjv-llama', layers: L, samples: 50, seqLen: 512, tokens: 25_600, metric: 'cosine',
      matrix, n, windows, best, blockInfluence,
    },
    training: { runs: [run('mlp', 'mlp', 0.11, 6), run('layer', 'layer', 0.06, 9)] },
    comparison: {
      title: 'Original vs pruned',
      columns: ['metric', 'original', 'none', 'linear', 'mlp', 'layer'],
      rows: [
        { metric: 'decoder layers', original: L, none: L - n, linear: L - n, mlp: L - n + 1, layer: L - n + 1 },
        { metric: 'parameters', original: 14_230_784, none: 10_589_952, linear: 10_589_952, mlp: 10_786_816, layer: 10_852_352 },
        { metric: 'perplexity (kjv test)', original: 7.4182, none: 19.874, linear: 9.1203, mlp: 8.6123, layer: 8.0417 },
        { metric: 'kjv-verse-endings acc', original: 0.712, none: 0.402, linear: 0.633, mlp: 0.661, layer: 0.684 },
        { metric: 'stability', original: null, none: 0.6121, linear: 0.8766, mlp: 0.9045, layer: 0.9312 },
        { metric: 'training', original: null, none: 'none', linear: 'closed form', mlp: '50 steps', layer: '50 steps' },
      ],
      notes: [
        `Columns after "original" are the pruned models, one per replacement kind; window [${best.start}, ${best.end}) removed in each.`,
        'Perplexity on 64 held-out blocks of 512 tokens; accuracy scored as lm-evaluation-harness acc.',
      ],
    },
  };
}
