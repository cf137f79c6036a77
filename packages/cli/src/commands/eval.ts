/**
 * `streamline eval <model>`: perplexity and multiple-choice tasks, optionally against a baseline (the original
 * model) with relative accuracy, stability and agreement. Options are checked here; the maths is @streamline/eval;
 * loading a model is injected (`deps.loadModel`) so the command can be wired to the engine by the program.
 */
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import path from 'node:path';
import { checkOutputFiles, writeFileAtomic } from '../ui/files.js';
import { commandLine, writeOutputs } from '../ui/outputs.js';
import type { ComparisonData } from '../report/types.js';
import { bad, commandDevice, deviceOption, intOption } from '../ui/options.js';
import { gpuMemory, type Device, type DeviceOption } from '@streamline/core';
import { fmt, table } from '../ui/table.js';
import { evaluate, type EvalProgress, type EvalReport, type EvalTokenizer, type LogprobModel } from '@streamline/eval';

/** What the command needs from the outside. */
export interface EvalDeps {
  /**
   * Loads a model directory as a scorer with its tokenizer, running its forward passes on `device`, or on the CPU
   * when `cudaUnsupported` (core's reason why the CUDA backend cannot run this model) is set.
   */
  loadModel(dir: string, opts: { device: Device }): Promise<LogprobModel & { tokenizer: EvalTokenizer; cudaUnsupported?: string | null }>;
  /** Text output (default: process.stdout). */
  write?: (s: string) => void;
  /** Show a progress bar (default: stderr is a terminal). */
  progress?: boolean;
}

/** Parsed and checked options of `streamline eval`. */
export interface EvalCommandOptions {
  baseline?: string;
  ppl: string[];
  pplMode: 'chunked' | 'rolling';
  field: string;
  task: { name: string; path: string }[];
  mode: 'lm-eval' | 'opencompass';
  seqLen?: number;
  batchSize: number;
  limit?: number;
  json?: string;
  report?: string;
  logSamples?: string;
  stabilityCompat?: 'official';
  device: DeviceOption;
}

/** Parses `--task NAME=FILE` (repeatable). */
export function parseTaskSpec(v: string, previous: { name: string; path: string }[] = []): { name: string; path: string }[] {
  const i = v.indexOf('=');
  if (i <= 0 || i === v.length - 1) bad(`--task expects NAME=FILE (for example piqa=./piqa/validation.jsonl), got "${v}"`);
  const name = v.slice(0, i).trim();
  if (!/^[\w.-]+$/.test(name)) bad(`--task name "${name}" may only contain letters, digits, "_", "-" and "."`);
  if (previous.some((t) => t.name === name)) bad(`--task ${name} is given twice`);
  return [...previous, { name, path: v.slice(i + 1) }];
}

const withErr = (v: number | null, se: number | null) => (v === null ? '-' : se === null ? fmt(v) : `${fmt(v)} ± ${fmt(se)}`);

/**
 * The text report: perplexity lines, then a table per task (acc, acc_norm with stderr; with a baseline, the
 * baseline's numbers, relative accuracy = acc / baseline acc, stability and agreement side by side).
 */
export function formatReport(report: EvalReport, opts: { stabilityCompat?: 'official' } = {}): string {
  let out = '';
  const files = Object.keys(report.ppl);
  if (files.length) {
    const head = ['perplexity (' + report.pplMode + ')', 'tokens', 'nll', 'ppl'];
    if (report.pplMode === 'rolling') head.push('word_ppl', 'byte_ppl', 'bits/byte');
    if (report.baseline) head.push('baseline ppl');
    const rows = [head];
    for (const f of files) {
      const p = report.ppl[f]!;
      const row = [f, String(p.tokens), fmt(p.nll), fmt(p.ppl, 2)];
      if (p.mode === 'rolling') row.push(fmt(p.word_perplexity, 2), fmt(p.byte_perplexity), fmt(p.bits_per_byte));
      if (report.baseline) row.push(fmt(report.baseline.ppl[f]?.ppl, 2));
      rows.push(row);
    }
    out += table(rows);
  }
  const names = Object.keys(report.tasks);
  if (names.length) {
    if (out) out += '\n';
    const stab = opts.stabilityCompat === 'official' ? report.stabilityCompat?.values : report.stability;
    const head = [`task (${report.mode})`, 'n', 'acc', 'acc_norm'];
    if (report.baseline) head.push('base acc', 'base acc_norm', 'rel. acc', opts.stabilityCompat === 'official' ? 'stability (official script)' : 'stability', 'agreement');
    const rows = [head];
    for (const name of names) {
      const t = report.tasks[name]!;
      const row = [name, String(t.n), withErr(t.acc, t.acc_stderr), withErr(t.acc_norm, t.acc_norm_stderr)];
      if (report.baseline) {
        const b = report.baseline.tasks[name]!;
        row.push(withErr(b.acc, b.acc_stderr), withErr(b.acc_norm, b.acc_norm_stderr), b.acc > 0 ? `${(100 * t.acc / b.acc).toFixed(1)}%` : '-', fmt(stab?.[name]), fmt(report.agreement?.[name]));
      }
      rows.push(row);
    }
    out += table(rows);
    if (report.baseline && opts.stabilityCompat === 'official') {
      out += 'stability (official script): the LLM-Streamline calculate_stability.py value (sum of the first `matches` weights), not the paper definition\n';
    }
  }
  return out;
}

/**
 * The report's comparison table: one row per model (the baseline first), columns for each perplexity file and each
 * task's acc and acc_norm, and with a baseline each task's stability and agreement.
 */
export function evalComparison(report: Omit<EvalReport, 'samples'>, model: string, baseline?: string, compat?: 'official'): ComparisonData {
  const files = Object.keys(report.ppl);
  const tasks = Object.keys(report.tasks);
  const pplCol = (f: string) => `PPL ${path.basename(f)}`;
  const columns = ['model', ...files.map(pplCol), ...tasks.flatMap((t) => [`${t} acc`, `${t} acc_norm`])];
  if (report.baseline) columns.push(...tasks.flatMap((t) => [`${t} stability`, `${t} agreement`]));
  const row = (label: string, r: { ppl: EvalReport['ppl']; tasks: EvalReport['tasks'] }, isBaseline: boolean) => {
    const out: Record<string, string | number | null> = { model: label };
    for (const f of files) out[pplCol(f)] = r.ppl[f]?.ppl ?? null;
    for (const t of tasks) { out[`${t} acc`] = r.tasks[t]?.acc ?? null; out[`${t} acc_norm`] = r.tasks[t]?.acc_norm ?? null; }
    if (report.baseline) {
      const stab = compat === 'official' ? report.stabilityCompat?.values : report.stability;
      for (const t of tasks) { out[`${t} stability`] = isBaseline ? null : stab?.[t] ?? null; out[`${t} agreement`] = isBaseline ? null : report.agreement?.[t] ?? null; }
    }
    return out;
  };
  const rows = [...(report.baseline ? [row(`baseline: ${baseline ?? ''}`, report.baseline, true)] : []), row(`model: ${model}`, report, false)];
  const notes = [`perplexity: ${report.pplMode}; multiple choice: ${report.mode} scoring.`];
  if (report.baseline) notes.push(compat === 'official' ? 'stability: the official LLM-Streamline script\'s computation (labelled compatibility mode).' : 'stability: softmax(σ)-weighted agreement on correctness with the baseline (paper definition); agreement: identical predictions.');
  return { title: report.baseline ? 'Model against baseline' : 'Results', columns, rows, notes };
}

/** Registers `streamline eval` on `program`. */
export function registerEval(program: Command, deps: EvalDeps): Command {
  return program
    .command('eval')
    .description('Measure perplexity and multiple-choice accuracy (lm-evaluation-harness rules or OpenCompass PPL mode); with --baseline, relative accuracy and stability')
    .argument('<model>', 'model directory to evaluate')
    .option('--baseline <model>', 'original model directory: adds its numbers, relative accuracy, stability and agreement')
    .option('--ppl <file>', 'text file or directory for perplexity (.txt, .jsonl, .parquet; repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(new Option('--ppl-mode <mode>', 'perplexity convention').choices(['chunked', 'rolling']).default('chunked'))
    .option('--field <name>', 'JSONL / Parquet field holding perplexity text', 'text')
    .option('--task <name=file>', 'multiple-choice task from a local JSONL/Parquet file, e.g. piqa=./piqa/validation.jsonl (repeatable)', parseTaskSpec, [] as { name: string; path: string }[])
    .addOption(new Option('--mode <mode>', 'multiple-choice scoring').choices(['lm-eval', 'opencompass']).default('lm-eval'))
    .option('--seq-len <T>', 'chunked perplexity window / rolling maximum window (default: the model maximum)', intOption('--seq-len', 2))
    .option('--batch-size <B>', 'sequences per forward batch (results do not depend on it)', intOption('--batch-size', 1), 8)
    .option('--limit <N>', 'first N items of each task', intOption('--limit', 1))
    .option('--json <file>', 'write the full report as JSON')
    .option('--report <file>', 'write a self-contained HTML report (the comparison table and the run manifest)')
    .option('--log-samples <file>', 'write per-choice log-likelihoods of every sample as JSONL')
    .addOption(new Option('--stability-compat <kind>', 'show the official LLM-Streamline script\'s stability instead of the paper definition').choices(['official']))
    .addOption(deviceOption())
    .action(async (modelDir: string, o: EvalCommandOptions) => {
      const started = new Date();
      if (o.ppl.length === 0 && o.task.length === 0) bad('nothing to evaluate: give --ppl FILE and/or --task NAME=FILE');
      if (o.stabilityCompat && !o.baseline) bad('--stability-compat needs --baseline (stability compares a pruned model with its original)');
      checkOutputFiles({ '--json': o.json, '--report': o.report, '--log-samples': o.logSamples });
      const write = deps.write ?? ((s: string) => void process.stdout.write(s));
      const quiet = !(deps.progress ?? Boolean(process.stderr.isTTY));
      let device = commandDevice(o.device, quiet).device;
      const model = await deps.loadModel(modelDir, { device });
      const baseline = o.baseline ? await deps.loadModel(o.baseline, { device }) : undefined;
      // The device is resolved before loading (a missing GPU fails fast), but only the loaded model can say it cannot
      // run there (Qwen3's q/k norm on an older backend): then it ran on the CPU, and the one message and the JSON say so.
      const why = model.cudaUnsupported ?? baseline?.cudaUnsupported ?? null;
      if (device === 'cuda' && why !== null) device = commandDevice(o.device, quiet, why).device;
      if (device === 'cuda') gpuMemory(true);
      if (o.seqLen !== undefined && o.seqLen > model.maxLength) bad(`--seq-len ${o.seqLen} exceeds the model's maximum length ${model.maxLength} (max_position_embeddings)`);

      const showBar = deps.progress ?? Boolean(process.stderr.isTTY);
      const bar = showBar ? new cliProgress.SingleBar({ format: '{stage} |{bar}| {value}/{total} ETA {eta_formatted}', stream: process.stderr, clearOnComplete: true }, cliProgress.Presets.shades_classic) : undefined;
      let current = '';
      const onProgress = (p: EvalProgress) => {
        if (!bar) return;
        const stage = `${p.model === 'baseline' ? 'baseline ' : ''}${p.stage}`;
        if (stage !== current) {
          if (current) bar.stop();
          current = stage;
          bar.start(p.total, p.done, { stage });
        } else bar.update(p.done);
      };
      let report: EvalReport;
      try {
        report = await evaluate({
          model, baseline, tokenizer: model.tokenizer, baselineTokenizer: baseline?.tokenizer,
          ppl: o.ppl, pplField: o.field, pplMode: o.pplMode, tasks: o.task, mode: o.mode, seqLen: o.seqLen,
          batchSize: o.batchSize, limit: o.limit, logSamples: Boolean(o.logSamples), onProgress,
        });
      } finally {
        bar?.stop();
      }
      const gpuPeakBytes = device === 'cuda' ? gpuMemory()?.peak ?? null : null;
      const { samples, ...rest } = report;
      write(formatReport(rest, { stabilityCompat: o.stabilityCompat }));
      await writeOutputs({ json: o.json, report: o.report }, {
        json: () => JSON.stringify({ model: modelDir, baselineModel: o.baseline ?? null, ...rest, device, ...(gpuPeakBytes !== null ? { gpuPeakBytes } : {}) }, null, 2) + '\n',
        title: `streamline eval — ${modelDir}${o.baseline ? ` against ${o.baseline}` : ''}`,
        command: commandLine(), createdAt: started.toISOString(),
        comparison: evalComparison(rest, modelDir, o.baseline, o.stabilityCompat),
        manifest: {
          model: modelDir, baseline: o.baseline ?? null, ppl: o.ppl.join(', ') || null, pplMode: o.pplMode,
          tasks: o.task.map((t) => `${t.name}=${t.path}`).join(', ') || null, mode: o.mode, seqLen: o.seqLen ?? null,
          limit: o.limit ?? null, batchSize: o.batchSize,
        },
      });
      if (o.logSamples) await writeFileAtomic(o.logSamples, (samples ?? []).map((s) => JSON.stringify(s)).join('\n') + '\n');
    });
}
