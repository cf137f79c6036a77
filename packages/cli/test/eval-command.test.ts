// `streamline eval` option checking, table and files, with an injected fake model (the engine is wired later).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { isStreamlineError } from '@streamline/core';
import type { EvalTokenizer, LogprobModel } from '@streamline/eval';
import { registerEval } from '../src/commands/eval.js';

const tokenizer: EvalTokenizer = {
  bosId: 1, eosId: 2,
  encode: (text, o = {}) => Int32Array.from([...(o.addSpecialTokens ?? true ? [1] : []), ...Array.from(text, (ch) => 1000 + ch.charCodeAt(0))]),
};
function fakeModel(seed: number): LogprobModel & { tokenizer: EvalTokenizer } {
  return {
    maxLength: 64, tokenizer,
    async tokenLogprobs(seqs) {
      return seqs.map((s) => Float32Array.from({ length: s.length - 1 }, (_, t) => -0.5 - ((s[t]! * 31 + s[t + 1]! * 17 + seed) % 50) / 20));
    },
  };
}

const d = mkdtempSync(path.join(tmpdir(), 'cli-eval-'));
const taskFile = path.join(d, 't.jsonl');
writeFileSync(taskFile, Array.from({ length: 6 }, (_, i) => JSON.stringify({ context: `Item ${i}:`, choices: ['yes', 'no', 'maybe'], gold: i % 3 })).join('\n') + '\n');
const pplFile = path.join(d, 'p.txt');
writeFileSync(pplFile, 'In the beginning God created the heaven and the earth.');

async function run(args: string[]) {
  let out = '';
  const program = new Command('streamline').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  registerEval(program, { loadModel: async (dir) => fakeModel(dir === 'base' ? 2 : 1), write: (s) => { out += s; }, progress: false });
  await program.parseAsync(['node', 'streamline', 'eval', ...args]);
  return out;
}

async function rejects(args: string[], check: (e: unknown) => boolean, what: string) {
  try { await run(args); assert.unreachable(`expected ${what}`); }
  catch (e) { assert.ok(check(e), `${what}: got ${(e as Error).message}`); }
}
const invalid = (includes: string) => (e: unknown) => isStreamlineError(e, 'E_INVALID_OPTION') && (e as Error).message.includes(includes);

test('option errors are E_INVALID_OPTION with the option named; unknown choices are usage errors', async () => {
  await rejects(['m'], invalid('nothing to evaluate'), 'no inputs');
  await rejects(['m', '--task', 'piqa'], invalid('--task expects NAME=FILE'), 'bad task spec');
  await rejects(['m', '--task', `a=${taskFile}`, '--task', `a=${taskFile}`], invalid('given twice'), 'duplicate task');
  await rejects(['m', '--ppl', pplFile, '--batch-size', '0'], invalid('--batch-size'), 'batch size 0');
  await rejects(['m', '--ppl', pplFile, '--seq-len', 'x'], invalid('--seq-len'), 'non-integer seq len');
  await rejects(['m', '--ppl', pplFile, '--seq-len', '100'], invalid('exceeds the model'), 'seq len above max');
  await rejects(['m', '--task', `a=${taskFile}`, '--stability-compat', 'official'], invalid('needs --baseline'), 'compat without baseline');
  await rejects(['m', '--ppl', pplFile, '--mode', 'harness'], (e) => e instanceof CommanderError, 'bad mode');
});

test('table with baseline: acc, acc_norm, baseline numbers, relative accuracy, stability; JSON and sample log files', async () => {
  const json = path.join(d, 'r.json');
  const log = path.join(d, 's.jsonl');
  const out = await run(['m', '--baseline', 'base', '--ppl', pplFile, '--seq-len', '8', '--task', `mine=${taskFile}`, '--batch-size', '3', '--json', json, '--log-samples', log]);
  for (const h of ['perplexity (chunked)', 'baseline ppl', 'task (lm-eval)', 'acc_norm', 'base acc', 'rel. acc', 'stability', 'agreement', 'mine']) assert.ok(out.includes(h), `table lacks "${h}":\n${out}`);
  const r = JSON.parse(readFileSync(json, 'utf8'));
  for (const k of ['ppl', 'tasks', 'baseline', 'stability', 'agreement', 'stabilityCompat']) assert.ok(k in r, k);
  assert.equal(Object.keys(r.ppl[pplFile]).sort().filter((k) => ['tokens', 'nll', 'ppl'].includes(k)), ['nll', 'ppl', 'tokens']);
  assert.equal(Object.keys(r.tasks.mine).filter((k) => ['n', 'acc', 'acc_norm', 'acc_stderr'].includes(k)).length, 4);
  assert.ok(!('samples' in r));
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.is(lines.length, 12); // 6 items x (model, baseline)
  assert.is(lines[0].options.length, 3);
  const official = await run(['m', '--baseline', 'base', '--task', `mine=${taskFile}`, '--stability-compat', 'official']);
  assert.ok(official.includes('stability (official script)'));
});

test.run();
