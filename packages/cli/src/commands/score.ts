/**
 * `streamline score <model> --calib <path>`: one pass over calibration blocks, the boundary cosine matrix, and
 * every window of n layers ranked. Windows are printed 0-based half-open: [20, 28) removes layers 20..27.
 */
import { Command, Option } from 'commander';
import { cudaUnsupported, loadModel, runScore, type DeviceOption, type RunScoreResult } from '@streamline/core';
import { commandDevice, deviceOption, fractionOption, intOption } from '../ui/options.js';
import { note, progress } from '../ui/progress.js';
import { fmt, table } from '../ui/table.js';
import { commandLine, writeOutputs } from '../ui/outputs.js';
import { checkOutputFiles } from '../ui/files.js';

export interface ScoreCommandOptions {
  calib: string;
  field: string;
  samples: number;
  seqLen?: number;
  seed: number;
  n?: number;
  sparsity?: number;
  replacement: 'none' | 'linear' | 'mlp' | 'layer';
  metric: 'cosine' | 'angular' | 'bi';
  batchSize: number;
  json?: string;
  plot?: string;
  report?: string;
  top: number;
  device: DeviceOption;
  quiet?: boolean;
}

/** The JSON document of `--json` (issue fields first; extra fields after). */
export function scoreJson(model: string, r: RunScoreResult) {
  return {
    model, layers: r.layers, samples: r.samples, seqLen: r.seqLen, tokens: r.tokens, metric: r.metric,
    matrix: r.matrix.map((row) => row.map((v) => (Number.isFinite(v) ? v : null))), n: r.n, windows: r.windows, best: r.best,
    blockInfluence: r.blockInfluence, zeroNormTokens: r.zeroNormTokens, documents: r.documents,
    calibrationTokens: r.calibrationTokens, blocksAvailable: r.blocksAvailable,
    device: r.device, ...(r.gpuPeakBytes !== null ? { gpuPeakBytes: r.gpuPeakBytes } : {}),
  };
}

/** Ranked windows as a table (best first). */
export function formatScore(r: RunScoreResult, top: number): string {
  const better = r.metric === 'cosine' ? (a: number, b: number) => b - a : (a: number, b: number) => a - b;
  const ranked = [...r.windows].sort((a, b) => better(a.score, b.score) || a.start - b.start);
  const label = r.metric === 'cosine' ? 'cos(h[s], h[s+n])' : r.metric === 'angular' ? 'angular distance' : 'sum of Block Influence';
  const rows = [['rank', 'window', label]];
  ranked.slice(0, top).forEach((w, i) => rows.push([String(i + 1), `[${w.start}, ${w.end})`, fmt(w.score, 6)]));
  let out = table(rows);
  if (ranked.length > top) out += `… ${ranked.length - top} more windows (all are in --json)\n`;
  if (r.best) out += `\nbest window: [${r.best.start}, ${r.best.end})  (remove layers ${r.best.start}..${r.best.end - 1}, ${label} ${fmt(r.best.score, 6)})\n`;
  if (r.zeroNormTokens > 0) out += `note: ${r.zeroNormTokens} token(s) had a zero hidden state in some pair; counted as cosine 0\n`;
  return out;
}

export function registerScore(program: Command): Command {
  return program
    .command('score')
    .description('Score every window of n consecutive layers by the cosine similarity of the hidden states around it (LLM-Streamline)')
    .argument('<model>', 'Hugging Face model directory (config.json, safetensors, tokenizer.json)')
    .requiredOption('--calib <path>', 'calibration text: .txt, .jsonl, .parquet, or a directory of them')
    .option('--field <name>', 'JSONL / Parquet field holding the text', 'text')
    .option('--samples <N>', 'calibration blocks to draw', intOption('--samples', 1), 50)
    .option('--seq-len <T>', 'tokens per block (default: 2048, capped by the model maximum)', intOption('--seq-len', 2))
    .option('--seed <S>', 'seed for drawing blocks', intOption('--seed', 0), 0)
    .option('--n <N>', 'window length (layers to remove)', intOption('--n', 1))
    .option('--sparsity <F>', 'choose n so that about F of the parameters are removed (default 0.25 when --n is not given)', fractionOption('--sparsity'))
    .addOption(new Option('--replacement <kind>', 'replacement the sparsity accounts for').choices(['none', 'linear', 'mlp', 'layer']).default('layer'))
    .addOption(new Option('--metric <metric>', 'window score: cosine (LLM-Streamline), angular (Gromov et al.), bi (ShortGPT Block Influence)').choices(['cosine', 'angular', 'bi']).default('cosine'))
    .option('--batch-size <B>', 'blocks per forward batch (results do not depend on it)', intOption('--batch-size', 1), 1)
    .addOption(deviceOption())
    .option('--top <K>', 'windows to show in the table', intOption('--top', 1), 10)
    .option('--json <file>', 'write the scores as JSON')
    .option('--plot <file>', 'write the boundary-similarity heat map (.svg, or .png)')
    .option('--report <file>', 'write a self-contained HTML report')
    .option('-q, --quiet', 'no progress output')
    .action(async (modelDir: string, o: ScoreCommandOptions) => {
      const started = new Date();
      checkOutputFiles({ '--json': o.json, '--plot': o.plot, '--report': o.report });
      const model = await loadModel(modelDir);
      const device = commandDevice(o.device, o.quiet, cudaUnsupported(model.description)).device;
      const bar = progress('calibrate', { quiet: o.quiet });
      const scoreBar = progress('score', { quiet: o.quiet });
      let r: RunScoreResult;
      try {
        r = await runScore(model, {
          calib: o.calib, field: o.field, samples: o.samples, seed: o.seed, metric: o.metric, batchSize: o.batchSize,
          replacement: o.replacement, device,
          ...(o.seqLen !== undefined ? { seqLen: o.seqLen } : {}),
          ...(o.n !== undefined ? { n: o.n } : {}), ...(o.sparsity !== undefined ? { sparsity: o.sparsity } : {}),
          onProgress: (p) => bar.update(p.documents, p.documents, `${p.tokens} tokens`),
          onScoreProgress: (d, t) => { bar.stop(); scoreBar.update(d, t, 'layers'); },
        });
      } finally {
        bar.stop();
        scoreBar.stop();
      }
      if (!o.quiet) note(`${model.report.architecture}, ${r.layers} layers; calibration: ${r.documents} documents, ${r.calibrationTokens} tokens, ${r.samples} of ${r.blocksAvailable} blocks of ${r.seqLen} tokens (${r.tokens} tokens scored)`);
      process.stdout.write(`windows of n = ${r.n} layers, metric ${r.metric}\n` + formatScore(r, o.top));
      await writeOutputs({ json: o.json, plot: o.plot, report: o.report }, {
        json: () => JSON.stringify(scoreJson(modelDir, r), null, 2) + '\n',
        score: { model: modelDir, layers: r.layers, samples: r.samples, seqLen: r.seqLen, tokens: r.tokens, metric: r.metric, matrix: r.matrix, n: r.n, windows: r.windows, best: r.best, blockInfluence: r.blockInfluence },
        title: `streamline score — ${modelDir}`,
        command: commandLine(),
        createdAt: started.toISOString(),
        manifest: { model: modelDir, calib: o.calib, samples: o.samples, seqLen: r.seqLen, seed: o.seed, metric: o.metric, n: r.n },
      });
    });
}
