/**
 * `streamline demo`: the whole method on the bundled kjv-llama in a few minutes: score → prune at 25 % with each
 * replacement kind → evaluate each exported checkpoint against the original → one comparison table (and, with
 * --report, an HTML report). The work is ../demo/pipeline.ts; this file presents it.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import type { DeviceOption, ReplacementKind } from '@streamline/core';
import { DEMO_KINDS, DEMO_PRESETS, estimateSeconds, runDemo, type DemoResult } from '../demo/pipeline.js';
import { comparisonData, comparisonText, demoJson } from '../demo/format.js';
import { trainingRun } from '../ui/report-data.js';
import { demoPaths } from '../demo/paths.js';
import { note, progress, type Progress } from '../ui/progress.js';
import { commandLine, writeOutputs } from '../ui/outputs.js';
import { checkOutputFiles } from '../ui/files.js';
import { commandDevice, deviceOption } from '../ui/options.js';
import { fmt } from '../ui/table.js';
import { formatScore } from './score.js';

interface DemoCommandOptions {
  out?: string;
  quick?: boolean;
  replacement?: ReplacementKind;
  report?: string;
  json?: string;
  force?: boolean;
  quiet?: boolean;
  device: DeviceOption;
}

const minutes = (s: number) => (s < 90 ? `${Math.round(s / 5) * 5} s` : `${(s / 60).toFixed(1)} min`);

export function registerDemo(program: Command): Command {
  return program
    .command('demo')
    .description('Run the whole method on the bundled kjv-llama model: score, prune 25% with each replacement kind, evaluate against the original, compare')
    .option('--out <dir>', 'where the pruned models and data slices go (default: a new temporary directory)')
    .option('--quick', 'fewer calibration, training and evaluation samples: under a minute on 2 cores')
    .addOption(new Option('--replacement <kind>', 'run only this replacement kind (default: none, linear, mlp and layer)').choices([...DEMO_KINDS]))
    .option('--report <file>', 'write a self-contained HTML report (heat map, training curves, comparison, manifest)')
    .option('--json <file>', 'write every result (settings, scores, training, evaluation, table rows) as JSON')
    .option('--force', 'replace pruned models already in --out')
    .addOption(deviceOption())
    .option('-q, --quiet', 'no progress output (the tables are still printed)')
    .action(async (o: DemoCommandOptions) => {
      const started = new Date();
      checkOutputFiles({ '--json': o.json, '--report': o.report });
      const paths = demoPaths();
      const settings = DEMO_PRESETS[o.quick ? 'quick' : 'default'];
      const kinds = o.replacement ? [o.replacement] : [...DEMO_KINDS];
      const out = path.resolve(o.out ?? mkdtempSync(path.join(os.tmpdir(), 'streamline-demo-')));
      const say = (s: string) => { if (!o.quiet) note(s); };
      const device = commandDevice(o.device, o.quiet).device;
      say(`streamline demo${o.quick ? ' --quick' : ''}: the bundled kjv-llama (16-layer Llama, 12.85M parameters, trained on the King James Bible)\n` +
        `  1. score every window of consecutive layers on ${settings.scoreSamples} blocks of ${settings.seqLen} tokens of the train split\n` +
        `  2. prune ${settings.sparsity * 100}% of the parameters with ${kinds.join(', ')} (training on ${settings.trainSamples} blocks), export each checkpoint\n` +
        `  3. evaluate each against the original: test perplexity${settings.testChapters ? ` (${settings.testChapters} chapters)` : ''}, kjv-verse-endings accuracy` +
        `${settings.taskLimit ? ` (${settings.taskLimit} items)` : ''}, stability\n` +
        `  takes about ${minutes(estimateSeconds(settings, kinds))} on 2 idle CPU cores (this machine has ${os.availableParallelism()}; longer when it is busy)${o.quick ? '' : '; --quick takes under a minute'}\n` +
        `  output: ${out}`);

      const controller = new AbortController();
      const onSigint = () => { note('\ninterrupt: stopping…'); controller.abort(); };
      process.once('SIGINT', onSigint);
      let bar: Progress | null = null;
      let stage = '';
      let result: DemoResult;
      try {
        result = await runDemo({
          paths, out, kinds, settings, force: o.force ?? false, signal: controller.signal, device,
          onStage: (s, detail) => {
            bar?.stop();
            stage = s;
            bar = progress(s.replace(/^(\w+): /, '$1 '), { quiet: o.quiet });
            if (detail && !['setup'].includes(s)) say(`${s}: ${detail}`);
          },
          onProgress: (s, d, t, info) => { if (s === stage) bar?.update(d, t, info); },
          onScore: (score, nByKind) => {
            bar?.stop();
            bar = null;
            const ns = [...new Set(Object.values(nByKind))];
            process.stdout.write(`\nwindows of n = ${score.n} layers (cosine of h[s] and h[s+n], best first; scored in ${score.tokens} tokens)\n` + formatScore({ ...score, blocks: [] }, 5));
            if (ns.length > 1) say(`n per kind at ${settings.sparsity * 100}% sparsity: ${Object.entries(nByKind).map(([k, n]) => `${k} ${n}`).join(', ')} (mlp and layer add a block back, so they remove one layer more)`);
            process.stdout.write('\n');
          },
          onRow: (r) => {
            bar?.stop();
            bar = null;
            if (r.model === 'original') say(`original: test PPL ${fmt(r.ppl, 2)}, acc ${fmt(r.acc, 3)}`);
            else say(`${r.model}: removed [${r.window!.start}, ${r.window!.end}), ${r.layers} layers; test PPL ${fmt(r.ppl, 2)}, acc ${fmt(r.acc, 3)}, stability ${fmt(r.stability, 3)} (prune ${r.pruneSeconds!.toFixed(1)} s, evaluate ${r.evalSeconds!.toFixed(1)} s)`);
          },
        });
      } finally {
        (bar as Progress | null)?.stop();
        process.removeListener('SIGINT', onSigint);
      }
      const s = result.settings;
      process.stdout.write(`\n${comparisonText(result.rows)}`);
      process.stdout.write(`test PPL: ${result.data.testChapters} test chapters, chunked at ${s.seqLen} tokens; acc/acc_norm: kjv-verse-endings, ` +
        `${result.data.taskItems} items (chance 0.25); stability: agreement on correctness with the original, weighted by its uncertainty\n`);
      process.stdout.write(`pruned checkpoints: ${result.runs.map((r) => path.join(out, r.kind)).join(', ')}\n`);
      process.stdout.write(`done in ${result.timings.total.toFixed(1)} s\n`);

      const runs = result.runs.map((r) => trainingRun(`${r.kind} [${r.prune.plan.window.start}, ${r.prune.plan.window.end})`, r.prune)).filter((r) => r !== null);
      await writeOutputs({ json: o.json, report: o.report }, {
        json: () => JSON.stringify(demoJson(result), null, 2) + '\n',
        title: `streamline demo — kjv-llama, ${s.sparsity * 100}% sparsity${o.quick ? ' (quick)' : ''}`,
        command: commandLine(), createdAt: started.toISOString(),
        score: {
          model: 'kjv-llama (bundled)', layers: result.score.layers, samples: result.score.samples, seqLen: result.score.seqLen, tokens: result.score.tokens,
          metric: result.score.metric, matrix: result.score.matrix, n: result.score.n, windows: result.score.windows, best: result.score.best,
          blockInfluence: result.score.blockInfluence,
        },
        ...(runs.length ? { training: { runs } } : {}),
        comparison: comparisonData(result),
        manifest: {
          model: result.model, out, kinds: kinds.join(', '), settings: { ...s },
          data: { calibration: `${result.data.calibChapters} train chapters`, test: `${result.data.testChapters} test chapters`, task: `kjv-verse-endings, ${result.data.taskItems} items` },
          windows: Object.fromEntries(result.runs.map((r) => [r.kind, `[${r.prune.plan.window.start}, ${r.prune.plan.window.end})`])),
          timings: { ...Object.fromEntries(result.rows.filter((r) => r.pruneSeconds !== null).map((r) => [r.model, `prune ${r.pruneSeconds!.toFixed(1)} s, evaluate ${r.evalSeconds!.toFixed(1)} s`])), total: `${result.timings.total.toFixed(1)} s` },
          machine: { cpus: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${process.platform}-${process.arch}` },
        },
      });
      if (o.report) say(`report: ${path.resolve(o.report)}`);
      if (o.json) say(`json: ${path.resolve(o.json)}`);
    });
}
