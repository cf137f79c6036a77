/**
 * `streamline prune <model> -o <out>`: score → choose the window → build and train the replacement → export a
 * standard Hugging Face checkpoint → before/after summary. Ctrl-C during training saves a checkpoint that
 * `--resume` continues from.
 */
import path from 'node:path';
import { Command, Option } from 'commander';
import { cudaUnsupported, loadModel, prune, type DeviceOption, type PruneOptions, type PruneResult } from '@streamline/core';
import { bytesOption, commandDevice, deviceOption, fractionOption, intOption, positiveOption, rangeOption } from '../ui/options.js';
import { note, progress, type Progress } from '../ui/progress.js';
import { fmt, human, table } from '../ui/table.js';
import { commandLine, writeOutputs } from '../ui/outputs.js';
import { checkOutputFiles } from '../ui/files.js';
import { trainingRun } from '../ui/report-data.js';
import type { ComparisonData } from '../report/types.js';

interface PruneCommandOptions {
  out: string;
  n?: number; sparsity?: number; range?: { start: number; end: number };
  replacement: 'none' | 'linear' | 'mlp' | 'layer';
  calib: string; field: string; samples: number; seqLen?: number; seed: number;
  metric: 'cosine' | 'angular' | 'bi'; batchSize: number;
  trainData?: string; trainSamples?: number; loss: 'mse' | 'lm';
  lr: number; minLr: number; warmup?: number; weightDecay: number; clip: number;
  microBatch: number; gradAccum: number; epochs: number; evalEvery?: number; validationFraction: number;
  cacheBudget?: number; cacheDtype: 'bf16' | 'f32'; cacheDir?: string; keepCache?: boolean;
  log?: string; checkpoint?: string; resume?: boolean; ridge?: number;
  json?: string; report?: string; dryRun?: boolean; force?: boolean; quiet?: boolean; device: DeviceOption;
}

export function pruneSummary(r: PruneResult): string {
  const p = r.plan;
  const rows = [['', 'original', 'pruned']];
  rows.push(['layers', String(p.layersBefore), String(p.layersAfter)]);
  rows.push(['parameters', human(p.parametersBefore), human(p.parametersAfter)]);
  if (r.heldOut) rows.push([`held-out perplexity (${r.heldOut.blocks} blocks, ${r.heldOut.tokens} tokens)`, fmt(r.heldOut.pplBefore, 3), fmt(r.heldOut.pplAfter, 3)]);
  let out = `window [${p.window.start}, ${p.window.end}) removed (${p.n} layers), replacement: ${p.replacement}; ` +
    `${human(p.parametersRemoved)} parameters removed, ${human(p.parametersAdded)} added (net sparsity ${(100 * p.sparsity).toFixed(1)}%)\n`;
  out += table(rows);
  if (r.relativeError !== null) out += `relative hidden-state error on held-out blocks ‖R(h[${p.window.start}]) − h[${p.window.end}]‖ / ‖h[${p.window.end}]‖: ${fmt(r.relativeError, 4)}\n`;
  if (r.training) out += `training: ${r.training.steps} steps, ${r.training.tokens} tokens, best validation loss ${fmt(r.training.bestValLoss, 6)}${r.training.loss === 'lm' ? ' (next-token NLL, loss lm)' : ''} at step ${r.training.bestStep}, ${r.training.seconds.toFixed(1)} s on ${r.training.device} (pairs in ${r.training.pairs === 'gpu' ? 'GPU memory' : r.training.cache})\n`;
  if (r.exported) out += `wrote ${r.exported.outDir} (${r.exported.files.length} files, ${(r.exported.bytes / 2 ** 20).toFixed(1)} MiB)\n`;
  return out;
}

/** Before/after for the report: layers, parameters, held-out perplexity (calibration blocks training never saw). */
export function pruneComparison(r: PruneResult): ComparisonData {
  const p = r.plan;
  const h = r.heldOut!;
  return {
    title: 'Before and after',
    columns: ['model', 'layers', 'parameters', 'held-out PPL', 'rel. error'],
    rows: [
      { model: 'original', layers: p.layersBefore, parameters: human(p.parametersBefore), 'held-out PPL': h.pplBefore, 'rel. error': null },
      { model: `${p.replacement}, [${p.window.start}, ${p.window.end}) removed`, layers: p.layersAfter, parameters: human(p.parametersAfter), 'held-out PPL': h.pplAfter, 'rel. error': r.relativeError },
    ],
    notes: [
      `held-out PPL: ${h.blocks} calibration blocks (${h.tokens} predicted tokens) held out from training.`,
      `rel. error: ‖R(h[${p.window.start}]) − h[${p.window.end}]‖ / ‖h[${p.window.end}]‖ on the same blocks.`,
    ],
  };
}

export function registerPrune(program: Command): Command {
  const collect = (v: string) => v;
  return program
    .command('prune')
    .description('Remove the most redundant window of layers, train a replacement, and export a standard Hugging Face checkpoint')
    .argument('<model>', 'Hugging Face model directory')
    .requiredOption('-o, --out <dir>', 'output directory (must be empty unless --force)')
    .option('--n <N>', 'number of consecutive layers to remove', intOption('--n', 1))
    .option('--sparsity <F>', 'remove about F of the parameters (net of the replacement; default 0.25)', fractionOption('--sparsity'))
    .option('--range <START:END>', 'remove exactly the layers [START, END) (0-based, half-open); skips scoring', rangeOption('--range'))
    .addOption(new Option('--replacement <kind>', 'what stands in for the window').choices(['none', 'linear', 'mlp', 'layer']).default('layer'))
    .requiredOption('--calib <path>', 'calibration text: .txt, .jsonl, .parquet, or a directory of them')
    .option('--field <name>', 'JSONL / Parquet field holding the text', 'text')
    .option('--samples <N>', 'calibration blocks for scoring', intOption('--samples', 1), 50)
    .option('--seq-len <T>', 'tokens per block (default: 2048, capped by the model maximum)', intOption('--seq-len', 2))
    .option('--seed <S>', 'seed for data sampling and training order', intOption('--seed', 0), 0)
    .addOption(new Option('--metric <metric>', 'window score').choices(['cosine', 'angular', 'bi']).default('cosine'))
    .option('--batch-size <B>', 'blocks per forward batch when scoring and collecting training pairs (results do not depend on it)', intOption('--batch-size', 1), 1)
    .option('--train-data <path>', 'training text for the replacement (default: the calibration source)')
    .option('--train-samples <N>', 'training blocks (default: --samples); about 10% are held out for validation', intOption('--train-samples', 2))
    .addOption(new Option('--loss <loss>', 'training objective of an mlp/layer replacement: mse on the hidden state h[end], or lm, the next-token loss through the frozen layers after the window and the LM head (slower)').choices(['mse', 'lm']).default('mse'))
    .option('--lr <x>', 'peak learning rate (AdamW)', positiveOption('--lr'), 2e-4)
    .option('--min-lr <x>', 'final learning rate of the cosine decay', positiveOption('--min-lr', true), 5e-5)
    .option('--warmup <steps>', 'warmup steps (default: 5% of the steps)', intOption('--warmup', 0))
    .option('--weight-decay <x>', 'AdamW weight decay', positiveOption('--weight-decay', true), 1e-3)
    .option('--clip <x>', 'gradient clipping (global norm)', positiveOption('--clip'), 5)
    .option('--micro-batch <B>', 'blocks per micro-batch', intOption('--micro-batch', 1), 1)
    .option('--grad-accum <K>', 'micro-batches per optimiser step', intOption('--grad-accum', 1), 1)
    .option('--epochs <E>', 'passes over the training pairs', intOption('--epochs', 1), 1)
    .option('--eval-every <steps>', 'validate every this many steps (default: about 10 times per run)', intOption('--eval-every', 1))
    .option('--validation-fraction <F>', 'fraction of training blocks held out', fractionOption('--validation-fraction'), 0.1)
    .option('--cache-budget <size>', 'memory for training pairs before they spill to disk (e.g. 512M, 8G; default: a quarter of free memory)', bytesOption('--cache-budget'))
    .addOption(new Option('--cache-dtype <dtype>', 'dtype of cached pairs (memory and disk)').choices(['bf16', 'f32']).default('bf16'))
    .option('--cache-dir <dir>', 'folder for the on-disk pair cache (default: next to the output)')
    .option('--keep-cache', 'keep the on-disk pair cache afterwards')
    .option('--log <file>', 'JSONL training log (step, loss, validation loss, learning rate)')
    .option('--checkpoint <file>', 'training checkpoint written on Ctrl-C (default: <out>.train-checkpoint)', collect)
    .option('--resume', 'continue training from --checkpoint (saved on either device)')
    .option('--ridge <x>', 'linear replacement: ridge term relative to the mean Gram diagonal', positiveOption('--ridge', true))
    .addOption(deviceOption())
    .option('--json <file>', 'write the plan, scores, training summary and result as JSON')
    .option('--report <file>', 'write a self-contained HTML report')
    .option('--dry-run', 'print the plan (window, parameters, estimated size) and do nothing')
    .option('--force', 'replace a non-empty output directory')
    .option('-q, --quiet', 'no progress output')
    .action(async (modelDir: string, o: PruneCommandOptions) => {
      const started = new Date();
      checkOutputFiles({ '--json': o.json, '--report': o.report, '--log': o.log, '--checkpoint': o.checkpoint });
      const model = await loadModel(modelDir);
      const device = commandDevice(o.device, o.quiet, cudaUnsupported(model.description)).device;
      const controller = new AbortController();
      const onSigint = () => { note('\ninterrupt: stopping after the current step…'); controller.abort(); };
      process.once('SIGINT', onSigint);
      const checkpointFile = o.checkpoint ?? `${path.resolve(o.out)}.train-checkpoint`;
      let bar: Progress | null = null;
      let stage = '';
      const opts: PruneOptions = {
        outDir: o.out, replacement: o.replacement, calib: o.calib, field: o.field, samples: o.samples, seed: o.seed, metric: o.metric,
        batchSize: o.batchSize, loss: o.loss, lr: o.lr, minLr: o.minLr, weightDecay: o.weightDecay, clip: o.clip, microBatch: o.microBatch, gradAccum: o.gradAccum, epochs: o.epochs,
        validationFraction: o.validationFraction, cacheDtype: o.cacheDtype, checkpointFile, signal: controller.signal, device,
        // Device messages after the resolution above (e.g. --loss lm training on the CPU with an old CUDA backend) are warnings: always shown.
        onLog: (m) => { if (m.level === 'warning') note(`warning: ${m.message}`); else if (!o.quiet && process.stderr.isTTY) note(m.message); },
        ...(o.n !== undefined ? { n: o.n } : {}), ...(o.sparsity !== undefined ? { sparsity: o.sparsity } : {}), ...(o.range ? { range: o.range } : {}),
        ...(o.seqLen !== undefined ? { seqLen: o.seqLen } : {}), ...(o.trainData ? { trainData: o.trainData } : {}),
        ...(o.trainSamples !== undefined ? { trainSamples: o.trainSamples } : {}), ...(o.warmup !== undefined ? { warmup: o.warmup } : {}),
        ...(o.evalEvery !== undefined ? { evalEvery: o.evalEvery } : {}), ...(o.cacheBudget !== undefined ? { cacheBudget: o.cacheBudget } : {}),
        ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}), ...(o.keepCache ? { keepCache: true } : {}), ...(o.log ? { logFile: o.log } : {}),
        ...(o.resume ? { resume: true } : {}), ...(o.ridge !== undefined ? { ridge: o.ridge } : {}),
        ...(o.force ? { force: true } : {}), ...(o.dryRun ? { dryRun: true } : {}),
        onStage: (s, detail) => { bar?.stop(); bar = progress(s, { quiet: o.quiet }); stage = s; if (!o.quiet && detail) note(`${s}: ${detail}`); },
        onStageProgress: (s, d, t) => { if (s === stage) bar?.update(d, t); },
        onTrainStep: (s, total) => bar?.update(s.step, total, `loss ${s.loss.toExponential(3)}${s.valLoss !== undefined ? ` val ${s.valLoss.toExponential(3)}` : ''}`),
      };
      let r: PruneResult;
      try {
        r = await prune(model, opts);
      } finally {
        (bar as Progress | null)?.stop();
        process.removeListener('SIGINT', onSigint);
      }
      if (o.dryRun) {
        const p = r.plan;
        process.stdout.write(`plan (dry run; nothing written):\n` + table([
          ['window', `[${p.window.start}, ${p.window.end})${r.score ? ` (cos ${fmt(r.score.best!.score, 6)})` : ''}`],
          ['replacement', p.replacement],
          ['layers', `${p.layersBefore} → ${p.layersAfter}`],
          ['parameters removed / added', `${human(p.parametersRemoved)} / ${human(p.parametersAdded)}`],
          ['parameters after', `${human(p.parametersAfter)} (net sparsity ${(100 * p.sparsity).toFixed(1)}%)`],
          ['output size (estimate)', `${(p.estimatedBytes / 2 ** 20).toFixed(1)} MiB`],
          ['work (estimate)', `${p.estimatedTflop.toFixed(2)} TFLOP (≈ ${Math.max(1, Math.round(p.estimatedTflop * 1e12 / 50e9))} s at 50 GFLOP/s)`],
        ]));
      } else {
        process.stdout.write(pruneSummary(r));
      }
      // n is chosen as the closest window length, so a target out of reach (embeddings and head are never removed)
      // would otherwise pass unnoticed.
      const target = o.range || o.n !== undefined ? undefined : (o.sparsity ?? 0.25);
      if (target !== undefined && Math.abs(r.plan.sparsity - target) > 0.05) {
        note(`warning: --sparsity ${target} asked for; the closest window removes ${(100 * r.plan.sparsity).toFixed(1)}% net (${r.plan.n} of ${r.plan.layersBefore} layers, ${r.plan.replacement} replacement)`);
      }
      await writeOutputs({ json: o.json, report: o.report }, {
        json: () => JSON.stringify({
          model: modelDir, out: o.out, ...r, pruned: undefined, gpuPeakBytes: r.gpuPeakBytes ?? undefined,
          score: r.score ? { ...r.score, blocks: undefined, gpuPeakBytes: undefined } : null,
        }, null, 2) + '\n',
        title: `streamline prune — ${modelDir}`, command: commandLine(), createdAt: started.toISOString(),
        manifest: {
          model: modelDir, out: o.out, replacement: o.replacement, window: `[${r.plan.window.start}, ${r.plan.window.end})`, calib: o.calib,
          samples: o.samples, seqLen: o.seqLen ?? null, seed: o.seed, trainSamples: o.trainSamples ?? null, lr: o.lr, minLr: o.minLr, epochs: o.epochs,
          timings: r.timings,
        },
        ...(r.training ? { training: { runs: [trainingRun(`${r.plan.replacement} [${r.plan.window.start}, ${r.plan.window.end})`, r)!] } } : {}),
        ...(r.heldOut ? { comparison: pruneComparison(r) } : {}),
        ...(r.score ? { score: { model: modelDir, layers: r.score.layers, samples: r.score.samples, seqLen: r.score.seqLen, tokens: r.score.tokens, metric: r.score.metric, matrix: r.score.matrix, n: r.score.n, windows: r.score.windows, best: r.score.best, blockInfluence: r.score.blockInfluence } } : {}),
      });
    });
}
