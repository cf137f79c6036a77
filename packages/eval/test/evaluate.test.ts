// evaluate(): the report shape, batch-size invariance, baseline columns with stability, sample logs; and, when
// ../shared is present, kjv-verse-endings / test.jsonl run end to end through a fake model (scores are not the
// README's: the real model arrives with the engine).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isStreamlineError } from '@streamline/core';
import { evaluate } from '../src/index.js';
import { existsSync } from 'node:fs';
import { loadTokenizer } from '@streamline/core';
import { bigramModel, charTokenizer, hashLp, shared } from './helpers.js';

const d = mkdtempSync(path.join(tmpdir(), 'evaluate-'));
const pplFile = path.join(d, 'ppl.jsonl');
writeFileSync(pplFile, ['In the beginning God created', 'the heaven and the earth.', 'And the earth was without form'].map((text) => JSON.stringify({ text })).join('\n') + '\n');
const taskFile = path.join(d, 'endings.jsonl');
const recs = Array.from({ length: 11 }, (_, i) => ({ context: `Verse ${i} says`, choices: ['light', 'darkness', 'waters', `day ${i}`], gold: i % 4 }));
writeFileSync(taskFile, recs.map((r) => JSON.stringify(r)).join('\n') + '\n');
const wino = path.join(d, 'wino.jsonl');
writeFileSync(wino, JSON.stringify({ sentence: 'Ann gave Bea a book because _ was kind.', option1: 'Ann', option2: 'Bea', answer: '1' }) + '\n');

const tasks = [{ name: 'endings', path: taskFile }, { name: 'winogrande', path: wino }];

test('bad options: duplicate task names, bad limit', async () => {
  const { model } = bigramModel(hashLp(1));
  for (const bad of [{ tasks: [tasks[0]!, tasks[0]!] }, { tasks, limit: 0 }]) {
    try { await evaluate({ model, tokenizer: charTokenizer, ...bad }); assert.unreachable(); }
    catch (e) { assert.ok(isStreamlineError(e, 'E_INVALID_OPTION'), String(e)); }
  }
});

test('report shape; identical results at batch sizes 1, 3 and 8', async () => {
  const reports = [];
  for (const batchSize of [1, 3, 8]) {
    const { model, batches } = bigramModel(hashLp(1), 32);
    const { model: base } = bigramModel(hashLp(2), 32);
    reports.push(await evaluate({ model, baseline: base, tokenizer: charTokenizer, ppl: [pplFile], tasks, seqLen: 16, batchSize }));
    assert.ok(batches.every((b) => b <= batchSize));
  }
  assert.equal(reports[0], reports[1]);
  assert.equal(reports[0], reports[2]);
  const r = reports[0]!;
  assert.equal(Object.keys(r.ppl), [pplFile]);
  const p = r.ppl[pplFile]!;
  assert.ok(p.tokens > 0 && Number.isFinite(p.nll) && Math.abs(p.ppl - Math.exp(p.nll)) < 1e-9);
  assert.is(r.tasks.endings!.n, 11);
  for (const k of ['acc', 'acc_norm', 'acc_stderr', 'acc_norm_stderr', 'acc_bytes'] as const) assert.ok(Number.isFinite(r.tasks.endings![k]), k);
  assert.is(r.tasks.winogrande!.acc_norm, null);
  assert.ok(r.baseline && r.baseline.tasks.endings!.n === 11 && r.baseline.ppl[pplFile]);
  for (const name of ['endings', 'winogrande']) {
    assert.ok(r.stability![name]! >= 0 && r.stability![name]! <= 1 + 1e-12, name);
    assert.ok(r.agreement![name]! >= 0 && r.agreement![name]! <= 1, name);
  }
  assert.is(r.stabilityCompat!.kind, 'official-script');
  assert.ok('endings' in r.stabilityCompat!.values);
  // The same model as its own baseline is perfectly stable.
  const { model } = bigramModel(hashLp(1), 32);
  const self = await evaluate({ model, baseline: model, tokenizer: charTokenizer, tasks });
  assert.ok(Math.abs(self.stability!.endings! - 1) < 1e-12); // a sum of softmax weights
  assert.is(self.agreement!.endings, 1);
});

test('limit, rolling perplexity, opencompass mode, sample logs and progress', async () => {
  const { model } = bigramModel(hashLp(3), 32);
  const stages = new Set<string>();
  const r = await evaluate({
    model, baseline: model, tokenizer: charTokenizer, ppl: [pplFile], pplMode: 'rolling', tasks, mode: 'opencompass', limit: 5,
    logSamples: true, onProgress: (p) => stages.add(`${p.model}:${p.stage}`),
  });
  assert.is(r.mode, 'opencompass');
  assert.is(r.ppl[pplFile]!.mode, 'rolling');
  assert.ok('word_perplexity' in r.ppl[pplFile]!);
  assert.is(r.tasks.endings!.n, 5);
  assert.is(r.tasks.endings!.acc_norm, null);
  assert.is(r.samples!.length, 2 * (5 + 1));
  const s = r.samples![0]!;
  assert.equal([s.task, s.model, s.doc_id, s.options.length], ['endings', 'model', 0, 4]);
  assert.is(s.options[0]!.continuation, ' light');
  assert.ok(stages.has(`model:ppl:${pplFile}`) && stages.has('baseline:task:endings'));
});

if (!shared || !existsSync(path.join(shared, 'data/kjv/test.jsonl'))) {
  console.log('skip: ../shared not found');
} else {
  test('kjv: chunked convention gives the README\'s 228 windows of 256 (58,471 tokens); kjv-verse-endings loads as generic', async () => {
    const tokenizer = loadTokenizer(path.join(shared, 'models/kjv-llama'));
    const { model } = bigramModel(hashLp(4), 512);
    const testFile = path.join(shared, 'data/kjv/test.jsonl');
    const r = await evaluate({
      model, tokenizer, ppl: [testFile], seqLen: 256, limit: 8,
      tasks: [{ name: 'kjv-verse-endings', path: path.join(shared, 'data/kjv/kjv-verse-endings/test.jsonl') }],
    });
    const p = r.ppl[testFile]!;
    assert.equal([p.tokens, (p as { windows: number }).windows, p.predicted], [58471, 228, 228 * 255]);
    assert.is(r.tasks['kjv-verse-endings']!.n, 8);
  });
}

test.run();
