/**
 * One evaluation run: perplexity files and multiple-choice tasks for a model and, optionally, a baseline (the
 * original, unpruned model), with stability and agreement when both are given. Produces the JSON report that
 * `streamline eval --json` writes and the per-sample log behind `--log-samples`.
 */
import { isStreamlineError, readTextDocuments, StreamlineError } from '@streamline/core';
import type { EvalTokenizer, LogprobModel } from './types.js';
import { chunkedPerplexity, rollingPerplexity, type ChunkedPerplexity, type RollingPerplexity } from './perplexity.js';
import { scoreItems, type ItemResult, type McItem, type McMode } from './multiple-choice.js';
import { loadTask } from './tasks.js';
import { stability, taskMetrics, type TaskMetrics } from './metrics.js';

/** Progress of {@link evaluate}. */
export interface EvalProgress {
  /** `ppl:<file>` or `task:<name>`. */
  stage: string;
  /** Which model is running. */
  model: 'model' | 'baseline';
  done: number;
  total: number;
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  model: LogprobModel;
  /** The original model, for the baseline columns, stability and agreement. */
  baseline?: LogprobModel;
  tokenizer: EvalTokenizer;
  /** The baseline's tokenizer; defaults to `tokenizer`. */
  baselineTokenizer?: EvalTokenizer;
  /** Text files (or directories) for perplexity. */
  ppl?: string[];
  /** JSONL / Parquet field for perplexity text. Default `text`. */
  pplField?: string;
  /** Perplexity convention. Default `chunked`. */
  pplMode?: 'chunked' | 'rolling';
  /** Multiple-choice tasks: name selects the schema (see tasks.ts), path the local file. */
  tasks?: { name: string; path: string }[];
  /** Scoring convention. Default `lm-eval`. */
  mode?: McMode;
  /** Chunked perplexity window (default: the model's maxLength); rolling mode's maximum window. */
  seqLen?: number;
  batchSize?: number;
  /** Keep the first N items of each task. */
  limit?: number;
  /** Also collect per-sample logs (per-option log-likelihoods). */
  logSamples?: boolean;
  onProgress?: (p: EvalProgress) => void;
}

/** Perplexity numbers of one file. */
export type PplResult = ChunkedPerplexity | RollingPerplexity;

/** Per-model results. */
export interface ModelReport {
  ppl: Record<string, PplResult>;
  tasks: Record<string, TaskMetrics>;
}

/** One logged sample (one item of one task for one model). */
export interface SampleLog {
  task: string;
  model: 'model' | 'baseline';
  doc_id: number;
  gold: number;
  pred: number;
  pred_norm: number | null;
  pred_bytes: number | null;
  /** Per option: the request and its scores (loglikelihood is lm-eval's `resps[i][0]`). */
  options: { context: string; continuation: string; loglikelihood: number; tokens: number; mean_nll: number; is_greedy: null }[];
}

/** The full report (`--json`). */
export interface EvalReport extends ModelReport {
  mode: McMode;
  pplMode: 'chunked' | 'rolling';
  baseline?: ModelReport;
  /** Paper-definition stability per task (needs a baseline). */
  stability?: Record<string, number>;
  /** Fraction of identical predictions per task (needs a baseline). */
  agreement?: Record<string, number>;
  /** The official LLM-Streamline script's stability (sums the first `matches` weights); labelled, not the paper's definition. */
  stabilityCompat?: { kind: 'official-script'; note: string; values: Record<string, number> };
  samples?: SampleLog[];
}

async function runModel(
  which: 'model' | 'baseline', model: LogprobModel, tokenizer: EvalTokenizer, docs: Map<string, string[]>,
  tasks: { name: string; file: string; items: McItem[] }[], opts: EvaluateOptions,
): Promise<{ report: ModelReport; results: Map<string, ItemResult[]> }> {
  const report: ModelReport = { ppl: {}, tasks: {} };
  const results = new Map<string, ItemResult[]>();
  const progress = (stage: string) => (done: number, total: number) => opts.onProgress?.({ stage, model: which, done, total });
  for (const [file, documents] of docs) {
    const common = { model, tokenizer, documents, batchSize: opts.batchSize, onProgress: progress(`ppl:${file}`) };
    try {
      report.ppl[file] = opts.pplMode === 'rolling'
        ? await rollingPerplexity({ ...common, maxLength: opts.seqLen })
        : await chunkedPerplexity({ ...common, seqLen: opts.seqLen });
    } catch (e) {
      // The perplexity functions see documents, not files: name the file that was too short.
      if (isStreamlineError(e, 'E_DATA_TOO_SMALL')) throw new StreamlineError(e.code, `${file}: ${e.message}`, { file, cause: e });
      throw e;
    }
  }
  for (const t of tasks) {
    const r = await scoreItems({ model, tokenizer, items: t.items, mode: opts.mode, batchSize: opts.batchSize, onProgress: progress(`task:${t.name}`), label: `task ${t.name} (${t.file})` });
    results.set(t.name, r);
    report.tasks[t.name] = taskMetrics(r);
  }
  return { report, results };
}

function sampleLogs(which: 'model' | 'baseline', tasks: { name: string; items: McItem[] }[], results: Map<string, ItemResult[]>): SampleLog[] {
  const out: SampleLog[] = [];
  for (const t of tasks) {
    const rs = results.get(t.name)!;
    t.items.forEach((item, i) => {
      const r = rs[i]!;
      out.push({
        task: t.name, model: which, doc_id: i, gold: r.gold, pred: r.pred, pred_norm: r.predNorm, pred_bytes: r.predBytes,
        options: item.requests.map((q, k) => ({
          context: q.context, continuation: q.continuation, loglikelihood: r.options[k]!.loglikelihood,
          tokens: r.options[k]!.tokens, mean_nll: r.options[k]!.meanNll, is_greedy: null,
        })),
      });
    });
  }
  return out;
}

/**
 * Runs perplexity and tasks for `model` (and `baseline`), then stability and agreement per task.
 * Task files are read once and shared by both models; every model call gets all of a task's requests at once,
 * so results are identical for any batch size.
 * @example
 * const report = await evaluate({ model, baseline, tokenizer, ppl: ['test.jsonl'], tasks: [{ name: 'piqa', path: 'piqa.jsonl' }] });
 * report.tasks.piqa.acc; report.stability?.piqa;
 * @throws StreamlineError E_INVALID_OPTION for duplicate task names or bad numbers; the loaders' and scorers' errors.
 */
export async function evaluate(opts: EvaluateOptions): Promise<EvalReport> {
  const mode = opts.mode ?? 'lm-eval';
  const pplMode = opts.pplMode ?? 'chunked';
  const names = new Set<string>();
  for (const t of opts.tasks ?? []) {
    if (names.has(t.name)) throw new StreamlineError('E_INVALID_OPTION', `task "${t.name}" is given twice`);
    names.add(t.name);
  }
  if (opts.limit !== undefined && (!Number.isSafeInteger(opts.limit) || opts.limit < 1)) {
    throw new StreamlineError('E_INVALID_OPTION', `limit must be a positive integer, got ${opts.limit}`);
  }
  const docs = new Map<string, string[]>();
  for (const f of opts.ppl ?? []) docs.set(f, await readTextDocuments(f, opts.pplField ?? 'text'));
  const tasks: { name: string; file: string; items: McItem[] }[] = [];
  for (const t of opts.tasks ?? []) tasks.push(await loadTask(t.name, t.path, opts.limit));

  const o = { ...opts, mode, pplMode };
  const main = await runModel('model', opts.model, opts.tokenizer, docs, tasks, o);
  const report: EvalReport = { mode, pplMode, ...main.report };
  const samples = opts.logSamples ? sampleLogs('model', tasks, main.results) : undefined;
  if (opts.baseline) {
    const base = await runModel('baseline', opts.baseline, opts.baselineTokenizer ?? opts.tokenizer, docs, tasks, o);
    report.baseline = base.report;
    report.stability = {};
    report.agreement = {};
    const official: Record<string, number> = {};
    for (const t of tasks) {
      const s = stability(base.results.get(t.name)!, main.results.get(t.name)!);
      report.stability[t.name] = s.stability;
      report.agreement[t.name] = s.agreement;
      official[t.name] = s.official;
    }
    report.stabilityCompat = {
      kind: 'official-script',
      note: 'LLM-Streamline calculate_stability.py: sum of the first `matches` softmax weights in sample order, not the paper definition',
      values: official,
    };
    if (samples) samples.push(...sampleLogs('baseline', tasks, base.results));
  }
  if (samples) report.samples = samples;
  return report;
}
