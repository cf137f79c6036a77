/**
 * The demo pipeline behind `streamline demo`: on the bundled kjv-llama, score every window once, prune at 25 %
 * sparsity with each replacement kind (through core's `prune`, which exports a standard checkpoint), load each
 * exported checkpoint back and evaluate it against the original with @streamline/eval (chunked perplexity of the
 * test text, `kjv-verse-endings` accuracy, stability). No printing here: progress goes through hooks and the
 * command presents the result.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  gpuMemory, loadModel, prune, resolveN, runScore, StreamlineError,
  type Device, type LoadedModel, type PruneResult, type ReplacementKind, type RunScoreResult, type StepRecord,
} from '@streamline/core';
import { evaluate, type EvalProgress, type EvalReport } from '@streamline/eval';
import { writeFileAtomic } from '../ui/files.js';
import { memoLogprobModel, memoTokenizer } from './memo.js';
import type { DemoPaths } from './paths.js';

export const DEMO_KINDS: readonly ReplacementKind[] = ['none', 'linear', 'mlp', 'layer'];

/** Everything the demo's work depends on; two presets below. */
export interface DemoSettings {
  preset: 'default' | 'quick';
  /** Chapters of the train split used for calibration and training: every k-th chapter, spread over the whole book. */
  calibChapters: number;
  /** Calibration blocks for scoring. */
  scoreSamples: number;
  /** Training blocks for the replacement (about 10 % are held out for validation). */
  trainSamples: number;
  /** Tokens per block, for calibration, training and perplexity (the model was trained on 256). */
  seqLen: number;
  /** Target fraction of parameters removed, net of the replacement (sets n per kind). */
  sparsity: number;
  lr: number;
  minLr: number;
  epochs: number;
  microBatch: number;
  /** Chapters of the test split for perplexity (every k-th), or null for all of them. */
  testChapters: number | null;
  /** First N items of `kjv-verse-endings`, or null for all 500. */
  taskLimit: number | null;
  /** Sequences per forward batch in evaluation (results do not depend on it). */
  batchSize: number;
  seed: number;
}

/** The presets, measured to fit their budgets on a 2-core machine (see docs/cli.md and the README). */
export const DEMO_PRESETS: Record<'default' | 'quick', DemoSettings> = {
  // Tuned on kjv-llama (see the README): with the CLI's defaults (lr 2e-4, 1 epoch) the mlp replacement of a 5-layer
  // window does not beat plain removal of 4 layers; a higher learning rate and several epochs over 128 blocks do,
  // and training is cheap next to collecting the pairs, so epochs are the inexpensive knob.
  default: {
    preset: 'default', calibChapters: 200, scoreSamples: 16, trainSamples: 128, seqLen: 256, sparsity: 0.25,
    lr: 2e-3, minLr: 1e-4, epochs: 6, microBatch: 2, testChapters: null, taskLimit: 200, batchSize: 8, seed: 0,
  },
  quick: {
    preset: 'quick', calibChapters: 40, scoreSamples: 8, trainSamples: 32, seqLen: 256, sparsity: 0.25,
    lr: 3e-3, minLr: 1e-4, epochs: 6, microBatch: 2, testChapters: 5, taskLimit: 32, batchSize: 8, seed: 0,
  },
};

/**
 * Rough wall time on an idle 2-core machine, in seconds. Measured on the project's machine while it was shared
 * (default 370 s, quick 69 s at a load of 3–5) and scaled to an idle one; a busy machine takes longer.
 */
export function estimateSeconds(s: DemoSettings, kinds: readonly ReplacementKind[]): number {
  const base = s.preset === 'quick' ? 12 : 50;
  const per = s.preset === 'quick' ? { none: 6, linear: 6, mlp: 8, layer: 8 } : { none: 38, linear: 43, mlp: 57, layer: 58 };
  return base + kinds.reduce((a, k) => a + per[k], 0);
}

/** One row of the comparison: the original model or one pruned variant. */
export interface DemoRow {
  model: 'original' | ReplacementKind;
  /** The removed window [start, end) (null for the original). */
  window: { start: number; end: number } | null;
  layers: number;
  parameters: number;
  /** Chunked perplexity of the test text at seqLen. */
  ppl: number;
  acc: number;
  accNorm: number | null;
  /** Paper-definition stability against the original (null for the original itself). */
  stability: number | null;
  /** Fraction of identical predictions (null for the original). */
  agreement: number | null;
  /** ‖R(h[s]) − h[s+n]‖ / ‖h[s+n]‖ on held-out training blocks (null for the original). */
  relativeError: number | null;
  /** Seconds `prune` took (scoring, training, export; null for the original). */
  pruneSeconds: number | null;
  /** Seconds its evaluation took. */
  evalSeconds: number | null;
  /** The exported checkpoint (the bundled directory for the original). */
  dir: string;
}

export interface DemoRun {
  kind: ReplacementKind;
  prune: PruneResult;
  eval: EvalReport;
}

export interface DemoResult {
  settings: DemoSettings;
  kinds: ReplacementKind[];
  out: string;
  model: string;
  data: { calib: string; calibChapters: number; test: string; testChapters: number; task: string; taskItems: number };
  /** The scoring pass shown up front (n of the first kind; the full boundary matrix). */
  score: Omit<RunScoreResult, 'blocks'>;
  runs: DemoRun[];
  rows: DemoRow[];
  timings: { setup: number; score: number; total: number };
  /** Where the forward passes ran, and the CUDA backend's peak device memory over the whole demo (null on the CPU). */
  device: Device;
  gpuPeakBytes: number | null;
}

export interface DemoHooks {
  /** A new stage starts (`score`, `<kind>: train`, `<kind>: evaluate`, …), with a line of detail. */
  onStage?: (stage: string, detail?: string) => void;
  onProgress?: (stage: string, done: number, total: number, info?: string) => void;
  onScore?: (score: Omit<RunScoreResult, 'blocks'>, nByKind: Record<string, number>) => void;
  onRow?: (row: DemoRow) => void;
}

export interface DemoOptions extends DemoHooks {
  paths: DemoPaths;
  out: string;
  kinds: readonly ReplacementKind[];
  settings: DemoSettings;
  /** Replace existing pruned models under `out`. */
  force?: boolean;
  signal?: AbortSignal;
  /** Resolved device for scoring, pruning and evaluation (default 'cpu'). */
  device?: Device;
}

/** A loaded model's log-probabilities on a given device, as @streamline/eval sees a model. */
function onDevice(m: LoadedModel, device: Device) {
  return { maxLength: m.maxLength, tokenLogprobs: (seqs: Int32Array[], opts?: { batchSize?: number; onProgress?: (d: number, t: number) => void }) => m.tokenLogprobs(seqs, { ...opts, device }) };
}

/** Every k-th line of a JSONL file, k chosen to keep about `count` lines (all lines when count is null or larger). */
async function sliceJsonl(src: string, count: number | null, dest: string): Promise<{ kept: number; stride: number }> {
  const lines = (await readFile(src, 'utf8')).split('\n').filter((l) => l.trim() !== '');
  const stride = count === null || count >= lines.length ? 1 : Math.ceil(lines.length / count);
  const kept = lines.filter((_, i) => i % stride === 0);
  await writeFileAtomic(dest, kept.join('\n') + '\n');
  return { kept: kept.length, stride };
}

const stripBlocks = (s: RunScoreResult): Omit<RunScoreResult, 'blocks'> => { const { blocks: _b, ...rest } = s; return rest; };

/**
 * Runs the demo. Writes the data slices (`<out>/data/`) and one pruned checkpoint per kind (`<out>/<kind>/`).
 * @throws StreamlineError from core and eval (E_OUTPUT_* when `<out>/<kind>` is not empty and `force` is not set).
 */
export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const t0 = Date.now();
  const s = o.settings;
  if (o.kinds.length === 0) throw new StreamlineError('E_INVALID_OPTION', 'the demo needs at least one replacement kind');
  const out = path.resolve(o.out);
  for (const kind of o.kinds) {
    const dir = path.join(out, kind);
    if (!o.force && existsSync(dir) && readdirSync(dir).length > 0)
      throw new StreamlineError('E_OUTPUT_EXISTS', `output directory ${dir} is not empty; pass --force to replace it, or choose another --out`, { file: dir });
  }
  await mkdir(out, { recursive: true });

  o.onStage?.('setup', `model ${o.paths.model}`);
  const loaded = await loadModel(o.paths.model);
  if (!loaded.tokenizer) throw new StreamlineError('E_TOKENIZER_MISSING', `${o.paths.model} has no tokenizer.json`, { file: o.paths.model });
  const tokenizer = memoTokenizer(loaded.tokenizer);
  const model: LoadedModel = { ...loaded, tokenizer };
  const calib = path.join(out, 'data', 'train.jsonl');
  const test = path.join(out, 'data', 'test.jsonl');
  const calibSlice = await sliceJsonl(o.paths.train, s.calibChapters, calib);
  const calibChapters = calibSlice.kept;
  const testChapters = (await sliceJsonl(o.paths.test, s.testChapters, test)).kept;
  const setup = (Date.now() - t0) / 1000;

  // Score once, up front: the full boundary matrix and the ranked windows for the first kind's n.
  const device = o.device ?? 'cpu';
  if (device === 'cuda') gpuMemory(true);
  const nByKind: Record<string, number> = {};
  for (const k of o.kinds) nByKind[k] = resolveN(model, { sparsity: s.sparsity, replacement: k });
  let t = Date.now();
  o.onStage?.('score', `${s.scoreSamples} blocks of ${s.seqLen} tokens from ${calibChapters} train chapters (${calibSlice.stride === 1 ? 'all' : `every ${calibSlice.stride}th`})`);
  const score = stripBlocks(await runScore(model, {
    calib, samples: s.scoreSamples, seqLen: s.seqLen, seed: s.seed, sparsity: s.sparsity, replacement: o.kinds[0]!,
    onScoreProgress: (d, tot) => o.onProgress?.('score', d, tot), ...(o.signal ? { signal: o.signal } : {}), device,
  }));
  const scoreSeconds = (Date.now() - t) / 1000;
  o.onScore?.(score, nByKind);

  const baseline = memoLogprobModel(onDevice(model, device));
  const rows: DemoRow[] = [];
  const runs: DemoRun[] = [];
  let original: DemoRow | null = null;
  for (const kind of o.kinds) {
    t = Date.now();
    let stage = '';
    const r = await prune(model, {
      outDir: path.join(out, kind), replacement: kind, calib, samples: s.scoreSamples, seqLen: s.seqLen, seed: s.seed,
      sparsity: s.sparsity, trainSamples: s.trainSamples, lr: s.lr, minLr: s.minLr, epochs: s.epochs, microBatch: s.microBatch,
      cacheDir: path.join(out, '.cache'), force: o.force ?? false, ...(o.signal ? { signal: o.signal } : {}), device,
      onStage: (st, detail) => { stage = `${kind}: ${st}`; o.onStage?.(stage, detail); },
      onStageProgress: (_st, d, tot) => o.onProgress?.(stage, d, tot),
      onTrainStep: (step: StepRecord, total) => o.onProgress?.(stage, step.step, total, `loss ${step.loss.toExponential(3)}${step.valLoss !== undefined ? ` val ${step.valLoss.toExponential(3)}` : ''}`),
    });
    const pruneSeconds = (Date.now() - t) / 1000;

    t = Date.now();
    const evalStage = `${kind}: eval`;
    o.onStage?.(evalStage, `${r.exported!.outDir} against the original: test perplexity (${testChapters} chapters), kjv-verse-endings${s.taskLimit ? ` (first ${s.taskLimit} items)` : ''}`);
    const pruned = await loadModel(r.exported!.outDir);
    let totals = new Map<string, [number, number]>();
    const report = await evaluate({
      model: onDevice(pruned, device), baseline, tokenizer, ppl: [test], seqLen: s.seqLen, batchSize: s.batchSize,
      tasks: [{ name: 'kjv-verse-endings', path: o.paths.task }], ...(s.taskLimit ? { limit: s.taskLimit } : {}),
      onProgress: (p: EvalProgress) => {
        totals.set(`${p.model}:${p.stage}`, [p.done, p.total]);
        let d = 0, tot = 0;
        for (const [a, b] of totals.values()) { d += a; tot += b; }
        o.onProgress?.(evalStage, d, tot);
      },
    });
    totals = new Map();
    const evalSeconds = (Date.now() - t) / 1000;
    const task = report.tasks['kjv-verse-endings']!;
    const ppl = report.ppl[test]!;
    if (!original) {
      const b = report.baseline!;
      original = {
        model: 'original', window: null, layers: r.plan.layersBefore, parameters: r.plan.parametersBefore,
        ppl: b.ppl[test]!.ppl, acc: b.tasks['kjv-verse-endings']!.acc, accNorm: b.tasks['kjv-verse-endings']!.acc_norm,
        stability: null, agreement: null, relativeError: null, pruneSeconds: null, evalSeconds: null, dir: o.paths.model,
      };
      rows.push(original);
      o.onRow?.(original);
    }
    const row: DemoRow = {
      model: kind, window: r.plan.window, layers: r.plan.layersAfter, parameters: r.plan.parametersAfter,
      ppl: ppl.ppl, acc: task.acc, accNorm: task.acc_norm, stability: report.stability?.['kjv-verse-endings'] ?? null,
      agreement: report.agreement?.['kjv-verse-endings'] ?? null, relativeError: r.relativeError,
      pruneSeconds, evalSeconds, dir: r.exported!.outDir,
    };
    rows.push(row);
    runs.push({ kind, prune: { ...r, score: r.score ? { ...r.score, blocks: [] } : null }, eval: report });
    o.onRow?.(row);
  }
  return {
    settings: s, kinds: [...o.kinds], out, model: o.paths.model,
    data: { calib, calibChapters, test, testChapters, task: o.paths.task, taskItems: runs[0]!.eval.tasks['kjv-verse-endings']!.n },
    score, runs, rows, timings: { setup, score: scoreSeconds, total: (Date.now() - t0) / 1000 },
    device, gpuPeakBytes: device === 'cuda' ? gpuMemory()?.peak ?? null : null,
  };
}
