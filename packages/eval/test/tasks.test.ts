// Task schemas and prompts (lm-eval zero-shot YAML templates), from JSONL and Parquet files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { isStreamlineError } from '@streamline/core';
import { buildTaskItems, hellaswagPreprocess, loadTask, pyCapitalize, schemaFor } from '../src/index.js';

const one = (name: string, rec: Record<string, unknown>) => buildTaskItems(name, [rec])[0]!;
const ctxs = (name: string, rec: Record<string, unknown>) => one(name, rec).requests.map((r) => r.context);
const conts = (name: string, rec: Record<string, unknown>) => one(name, rec).requests.map((r) => r.continuation);

test('records that do not fit are E_TASK_FORMAT naming the record', () => {
  for (const [name, rec] of [
    ['generic', { context: 'c', choices: ['a'], gold: 1 }],
    ['generic', { prompt: 'c' }],
    ['piqa', { goal: 'g', sol1: 'a', sol2: 'b', label: 2 }],
    ['arc_easy', { question: 'q', choices: { text: ['a'], label: ['A'] }, answerKey: 'E' }],
    ['winogrande', { sentence: 'no blank', option1: 'a', option2: 'b', answer: '1' }],
    ['mmlu', { question: 'q', choices: ['a', 'b'], answer: 0 }],
    ['hellaswag', { activity_label: 'x', ctx_a: 'a', ctx_b: 'b', endings: ['e'], label: '' }],
  ] as const) {
    assert.throws(() => buildTaskItems(name, [{ ok: 1 }, rec as Record<string, unknown>].slice(1), 'f.jsonl'),
      (e: unknown) => isStreamlineError(e, 'E_TASK_FORMAT') && (e as Error).message.includes('f.jsonl (record 1'), `${name} ${JSON.stringify(rec)}`);
  }
});

test('schema selection by name', () => {
  assert.equal(['piqa', 'arc_challenge', 'mmlu_anatomy', 'kjv-verse-endings'].map(schemaFor), ['piqa', 'arc', 'mmlu', 'generic']);
});

test('piqa: "Question: {goal}\\nAnswer:", choices [sol1, sol2], gold label', () => {
  const it = one('piqa', { goal: 'Open a jar', sol1: 'Twist the lid.', sol2: 'Eat it.', label: 0 });
  assert.equal(it.requests[0], { context: 'Question: Open a jar\nAnswer:', continuation: ' Twist the lid.' });
  assert.equal([it.choices, it.gold], [['Twist the lid.', 'Eat it.'], 0]);
});

test('hellaswag: preprocess and ctx_a + " " + ctx_b.capitalize()', () => {
  // Python capitalize lower-cases the rest: "THEN he" -> "Then he".
  assert.is(pyCapitalize('THEN he'), 'Then he');
  assert.is(pyCapitalize(''), '');
  assert.is(hellaswagPreprocess('  Do it [title] Step one [header] now  then.  '), 'Do it. Step one now then.');
  const it = one('hellaswag', {
    activity_label: 'Baking cookies', ctx_a: 'A woman [step] mixes flour.', ctx_b: 'SHE then', endings: ['bakes [title] them.', 'sings  loudly.'], label: '1',
  });
  // ctx = "A woman [step] mixes flour. She then"; query = preprocess("Baking cookies: " + ctx)
  //   -> remove "[step]" -> "A woman  mixes" -> "  " -> " " once
  assert.is(it.requests[0]!.context, 'Baking cookies: A woman mixes flour. She then');
  assert.equal(it.choices, ['bakes. them.', 'sings loudly.']);
  assert.is(it.gold, 1);
});

test('arc: HF shape and AI2 shape give the same prompt; answerKey may be a digit label', () => {
  const hf = one('arc_easy', { question: 'Which is a gas?', choices: { text: ['ice', 'steam'], label: ['A', 'B'] }, answerKey: 'B' });
  const ai2 = one('arc_challenge', { question: { stem: 'Which is a gas?', choices: [{ text: 'ice', label: 'A' }, { text: 'steam', label: 'B' }] }, answerKey: 'B' });
  assert.equal(hf, ai2);
  assert.equal(hf.requests[1], { context: 'Question: Which is a gas?\nAnswer:', continuation: ' steam' });
  assert.is(hf.gold, 1);
  assert.is(one('arc_easy', { question: 'q', choices: { text: ['a', 'b', 'c'], label: ['1', '2', '3'] }, answerKey: '3' }).gold, 2);
});

test('boolq: "{passage}\\nQuestion: {question}?\\nAnswer:" with ["no", "yes"]; label or boolean answer', () => {
  assert.equal(ctxs('boolq', { passage: 'P.', question: 'is it', label: 1 }), Array(2).fill('P.\nQuestion: is it?\nAnswer:'));
  assert.equal(conts('boolq', { passage: 'P.', question: 'is it', label: 1 }), [' no', ' yes']);
  assert.is(one('boolq', { passage: 'P.', question: 'is it', answer: false }).gold, 0);
});

test('openbookqa: the bare question_stem, answerKey left-stripped', () => {
  const it = one('openbookqa', { question_stem: 'The sun is', choices: { text: ['hot', 'cold'], label: ['A', 'B'] }, answerKey: ' A' });
  assert.equal(it.requests[0], { context: 'The sun is', continuation: ' hot' });
  assert.is(it.gold, 0);
});

test('mmlu: stripped question, lettered options, continuations " A".." D", letter or index answer', () => {
  const rec = { question: '  What is 2+2? ', choices: ['3', '4', '5', '6'], answer: 1 };
  assert.is(one('mmlu', rec).requests[0]!.context, 'What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:');
  assert.equal(conts('mmlu', rec), [' A', ' B', ' C', ' D']);
  assert.equal(one('mmlu', rec).choices, ['A', 'B', 'C', 'D']);
  assert.is(one('mmlu_x', { ...rec, answer: 'C' }).gold, 2);
});

test('loadTask: JSONL and Parquet files, --limit keeps the first N', async () => {
  const d = mkdtempSync(path.join(tmpdir(), 'task-'));
  const jf = path.join(d, 'piqa.jsonl');
  writeFileSync(jf, ['a', 'b', 'c'].map((g, i) => JSON.stringify({ goal: g, sol1: 'x', sol2: 'y', label: i % 2 })).join('\n') + '\n');
  const pf = path.join(d, 'piqa.parquet');
  parquetWriteFile({ filename: pf, columnData: [
    { name: 'goal', data: ['a', 'b', 'c'], type: 'STRING' },
    { name: 'sol1', data: ['x', 'x', 'x'], type: 'STRING' },
    { name: 'sol2', data: ['y', 'y', 'y'], type: 'STRING' },
    { name: 'label', data: [0n, 1n, 0n], type: 'INT64' },
  ] });
  const j = await loadTask('piqa', jf);
  const p = await loadTask('piqa', pf);
  assert.equal(j.items, p.items);
  assert.is(j.items.length, 3);
  assert.is((await loadTask('piqa', pf, 2)).items.length, 2);
  assert.is(j.schema, 'piqa');
  // An empty file used to load as a task of 0 items: accuracy 0/0, written as null, exit status 0.
  const empty = path.join(d, 'empty.jsonl');
  writeFileSync(empty, '');
  try { await loadTask('piqa', empty); assert.unreachable(); }
  catch (e) { assert.ok(isStreamlineError(e, 'E_TASK_FORMAT') && (e as Error).message.includes('empty.jsonl'), String(e)); }
});

test.run();
