// The pieces around `streamline demo` and the --report wiring, without running a model: the caches, the
// comparison tables, the training curve of a prune result, the command line shown in reports, `eval --report`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import type { PruneResult } from '@streamline/core';
import type { EvalTokenizer, LogprobModel } from '@streamline/eval';
import { memoLogprobModel, memoTokenizer } from '../src/demo/memo.js';
import { comparisonText } from '../src/demo/format.js';
import type { DemoRow } from '../src/demo/pipeline.js';
import { DEMO_PRESETS, estimateSeconds } from '../src/demo/pipeline.js';
import { trainingRun } from '../src/ui/report-data.js';
import { commandLine } from '../src/ui/outputs.js';
import { pruneComparison } from '../src/commands/prune.js';
import { evalComparison, registerEval } from '../src/commands/eval.js';

test('memoTokenizer: same ids as the tokenizer, encodes each text once, returns copies', () => {
  let calls = 0;
  const tok = { bosId: 1, eosId: 2, encode: (t: string, o: { addSpecialTokens?: boolean } = {}) => { calls++; return Int32Array.from([...(o.addSpecialTokens === false ? [] : [1]), ...Array.from(t, (c) => c.charCodeAt(0))]); } };
  const m = memoTokenizer(tok as never);
  const a = m.encode('ab');
  assert.equal([...a], [1, 97, 98]);
  a[0] = 99;
  assert.equal([...m.encode('ab')], [1, 97, 98], 'a caller mutating its copy does not change the cache');
  assert.equal([...m.encode('ab', { addSpecialTokens: false })], [97, 98], 'the special-token flag is part of the key');
  assert.is(calls, 2);
  assert.is((m as unknown as { bosId: number }).bosId, 1, 'other members are the tokenizer\'s');
});

test('memoLogprobModel: results equal the model\'s; only unseen sequences reach it, in one call', async () => {
  const seen: number[] = [];
  const model: LogprobModel = {
    maxLength: 16,
    async tokenLogprobs(seqs) { seen.push(seqs.length); return seqs.map((s) => Float32Array.from(s.slice(1), (v) => -v / 10)); },
  };
  const m = memoLogprobModel(model);
  const s1 = Int32Array.from([1, 2, 3]), s2 = Int32Array.from([1, 4]), s3 = Int32Array.from([5, 6, 7]);
  const first = await m.tokenLogprobs([s1, s2]);
  const second = await m.tokenLogprobs([s2, s3, s1, s3]);
  assert.equal(seen, [2, 1], 'the second call only scores s3, once');
  assert.equal([...second[0]!], [...first[1]!]);
  assert.equal([...second[2]!], [...first[0]!]);
  assert.equal([...second[1]!].map((v) => Math.round(v * 10)), [-6, -7]);
  assert.is(m.maxLength, 16);
});

const row = (model: DemoRow['model'], ppl: number, extra: Partial<DemoRow> = {}): DemoRow => ({
  model, window: model === 'original' ? null : { start: 7, end: 11 }, layers: model === 'original' ? 16 : 12, parameters: model === 'original' ? 12_853_504 : 9_902_336,
  ppl, acc: 0.6, accNorm: 0.605, stability: model === 'original' ? null : 0.93, agreement: null, relativeError: null,
  pruneSeconds: model === 'original' ? null : 8.14, evalSeconds: null, dir: '/x', ...extra,
});

test('comparisonText: one row per model, ranges half-open, dashes for what the original lacks', () => {
  const t = comparisonText([row('original', 22.78), row('none', 26.55)]);
  const lines = t.trimEnd().split('\n');
  assert.is(lines.length, 3);
  assert.match(lines[0]!, /model\s+removed\s+layers\s+params\s+test PPL\s+acc\s+acc_norm\s+stability\s+prune time/);
  assert.match(lines[1]!, /^original\s+-\s+16\s+12\.85M\s+22\.78\s+0\.600\s+0\.605\s+-\s+-$/);
  assert.match(lines[2]!, /^none\s+\[7, 11\)\s+12\s+9\.90M\s+26\.55\s+0\.600\s+0\.605\s+0\.930\s+8\.1 s$/);
});

test('presets: quick does less work than the default and is estimated under a minute', () => {
  const q = DEMO_PRESETS.quick, d = DEMO_PRESETS.default;
  assert.ok(q.trainSamples < d.trainSamples && q.scoreSamples <= d.scoreSamples && (q.taskLimit ?? 500) < (d.taskLimit ?? 500));
  assert.ok(estimateSeconds(q, ['none', 'linear', 'mlp', 'layer']) < 60);
  assert.ok(estimateSeconds(d, ['none']) < estimateSeconds(d, ['none', 'linear', 'mlp', 'layer']));
});

const pruneResult = {
  plan: { window: { start: 7, end: 12 }, n: 5, replacement: 'mlp', layersBefore: 16, layersAfter: 12, parametersBefore: 100, parametersRemoved: 30, parametersAdded: 5, parametersAfter: 75, sparsity: 0.25, estimatedBytes: 0, estimatedTflop: 0 },
  score: null, linear: null, exported: null, timings: {},
  training: { history: [{ step: 1, loss: 4, lr: 1e-3, tokens: 512, seconds: 0.1 }, { step: 2, loss: 3, lr: 5e-4, tokens: 1024, seconds: 0.2, valLoss: 3.5 }], steps: 2, bestStep: 2, bestValLoss: 3.5, tokens: 1024, seconds: 0.2, interrupted: false, trainBlocks: 9, validationBlocks: 1, cache: 'memory' },
  heldOut: { blocks: 1, tokens: 255, pplBefore: 20, pplAfter: 25 }, relativeError: 0.3,
} as unknown as PruneResult;

test('trainingRun and pruneComparison: the report data of `prune --report`', () => {
  const r = trainingRun('mlp [7, 12)', pruneResult)!;
  assert.is(r.replacement, 'mlp');
  assert.equal(r.steps.map((s) => [s.step, s.loss, s.valLoss]), [[1, 4, undefined], [2, 3, 3.5]]);
  assert.is(r.summary!.window, '[7, 12)');
  assert.is(trainingRun('x', { ...pruneResult, training: null }), null);
  const c = pruneComparison(pruneResult);
  assert.equal(c.rows.map((x) => x['held-out PPL']), [20, 25]);
  assert.is(c.rows[1]!['rel. error'], 0.3);
});

test('commandLine: the command as typed, arguments with spaces quoted', () => {
  assert.is(commandLine(['node', '/x/bin.js', 'demo', '--out', 'my dir', '--quick']), "streamline demo --out 'my dir' --quick");
});

test('eval --report: an HTML report with the comparison against the baseline', async () => {
  const d = mkdtempSync(path.join(tmpdir(), 'cli-eval-report-'));
  const taskFile = path.join(d, 't.jsonl');
  writeFileSync(taskFile, Array.from({ length: 4 }, (_, i) => JSON.stringify({ context: `Item ${i}:`, choices: ['yes', 'no'], gold: i % 2 })).join('\n') + '\n');
  const tokenizer: EvalTokenizer = { bosId: 1, eosId: 2, encode: (text, o = {}) => Int32Array.from([...(o.addSpecialTokens ?? true ? [1] : []), ...Array.from(text, (ch) => 1000 + ch.charCodeAt(0))]) };
  const fake = (seed: number) => ({ maxLength: 64, tokenizer, async tokenLogprobs(seqs: Int32Array[]) { return seqs.map((s) => Float32Array.from({ length: s.length - 1 }, (_, t) => -0.5 - ((s[t]! * 31 + s[t + 1]! * 17 + seed) % 50) / 20)); } });
  const program = new Command('streamline').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  registerEval(program, { loadModel: async (dir) => fake(dir === 'base' ? 2 : 1), write: () => {}, progress: false });
  const report = path.join(d, 'r.html');
  await program.parseAsync(['node', 'streamline', 'eval', 'm', '--baseline', 'base', '--task', `mine=${taskFile}`, '--report', report]);
  const html = readFileSync(report, 'utf8');
  assert.ok(html.includes('<section id="comparison">') && html.includes('mine stability') && html.includes('baseline: base'), 'comparison section');
  const c = evalComparison({ mode: 'lm-eval', pplMode: 'chunked', ppl: {}, tasks: { t: { n: 2, acc: 0.5, acc_stderr: 0.5, acc_norm: 0.5, acc_norm_stderr: 0.5, acc_bytes: 0.5, acc_bytes_stderr: 0.5 } } }, 'm');
  assert.equal(c.columns, ['model', 't acc', 't acc_norm']);
  assert.is(c.rows.length, 1);
});

test.run();
