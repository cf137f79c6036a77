// Readers (txt, JSONL, Parquet, directories) and calibration packing with a fake character tokenizer.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { isStreamlineError, listDataFiles, packCalibration, readDocuments, readRecords, readTextDocuments } from '../src/index.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'data-'));

/** Fake tokenizer: one token per UTF-16 unit (its code), with "bos" 0 in front when special tokens are on. */
const charTok = {
  encode(text: string, o: { addSpecialTokens?: boolean } = {}): Int32Array {
    const ids = Array.from(text, (c) => c.charCodeAt(0));
    return Int32Array.from(o.addSpecialTokens ?? true ? [0, ...ids] : ids);
  },
};

async function collect(source: string, field?: string) {
  const out = [];
  for await (const d of readDocuments(source, { field })) out.push(d);
  return out;
}

async function rejects(p: Promise<unknown>, code: string, includes: string[]) {
  try {
    await p;
    assert.unreachable('expected a rejection');
  } catch (e) {
    assert.ok(isStreamlineError(e, code), `expected ${code}, got ${(e as Error).message}`);
    for (const s of includes) assert.ok((e as Error).message.includes(s), `message "${(e as Error).message}" lacks "${s}"`);
  }
}

test('missing path, unknown extension and empty directory are clear errors', async () => {
  const d = tmp();
  assert.throws(() => listDataFiles(path.join(d, 'nope')), (e: unknown) => isStreamlineError(e, 'E_DATA_MISSING'));
  writeFileSync(path.join(d, 'x.csv'), 'a,b');
  assert.throws(() => listDataFiles(path.join(d, 'x.csv')), (e: unknown) => isStreamlineError(e, 'E_DATA_FORMAT'));
  assert.throws(() => listDataFiles(d), (e: unknown) => isStreamlineError(e, 'E_DATA_MISSING'));
});

test('JSONL: a line that is not JSON, not an object, or lacks the field is E_DATA_FORMAT naming file:line', async () => {
  const d = tmp();
  const f = path.join(d, 'a.jsonl');
  writeFileSync(f, '{"text": "ok"}\n\n{"text": oops}\n');
  await rejects(collect(f), 'E_DATA_FORMAT', [`${f}:3`, 'not valid JSON']);
  writeFileSync(f, '{"text": "ok"}\n[1, 2]\n');
  await rejects(collect(f), 'E_DATA_FORMAT', [`${f}:2`, 'expected a JSON object']);
  writeFileSync(f, '{"text": "ok"}\n{"body": "x"}\n');
  await rejects(collect(f), 'E_DATA_FORMAT', [`${f}:2`, 'no field "text"', 'body']);
  writeFileSync(f, '{"text": 5}\n');
  await rejects(collect(f), 'E_DATA_FORMAT', [`${f}:1`, 'is a number']);
});

test('JSONL: one document per line (blank lines skipped, CRLF handled), custom field', async () => {
  const d = tmp();
  const f = path.join(d, 'a.jsonl');
  writeFileSync(f, '{"text": "one", "body": "x"}\r\n\r\n{"text": "two\\nlines", "body": "y"}\n');
  assert.equal((await collect(f)).map((x) => [x.text, x.line]), [['one', 1], ['two\nlines', 3]]);
  assert.equal(await readTextDocuments(f, 'body'), ['x', 'y']);
});

test('Parquet: the column is read in row order; a missing column names the columns there are', async () => {
  const d = tmp();
  const f = path.join(d, 'p.parquet');
  parquetWriteFile({ filename: f, columnData: [
    { name: 'text', data: ['alpha', 'beta', 'gamma'], type: 'STRING' },
    { name: 'label', data: [1n, 0n, 1n], type: 'INT64' },
  ] });
  assert.equal(await readTextDocuments(f), ['alpha', 'beta', 'gamma']);
  await rejects(collect(f, 'content'), 'E_DATA_FORMAT', [f, 'no column "content"', 'text, label']);
  // Records keep every column; INT64 comes back as a plain number.
  assert.equal(await readRecords(f), [{ text: 'alpha', label: 1 }, { text: 'beta', label: 0 }, { text: 'gamma', label: 1 }]);
});

test('directory: recursive, sorted by name, hidden and unknown files skipped, .txt is one document', async () => {
  const d = tmp();
  writeFileSync(path.join(d, 'b.txt'), '\ufeffbee\nline two');
  writeFileSync(path.join(d, 'a.jsonl'), '{"text": "a1"}\n{"text": "a2"}\n');
  parquetWriteFile({ filename: path.join(d, 'a2.parquet'), columnData: [{ name: 'text', data: ['pq'], type: 'STRING' }] });
  mkdirSync(path.join(d, 'sub'));
  writeFileSync(path.join(d, 'sub', 'c.txt'), 'sea');
  writeFileSync(path.join(d, 'README.md'), 'not data');
  writeFileSync(path.join(d, '.hidden.txt'), 'hidden');
  assert.equal(listDataFiles(d).map((f) => path.relative(d, f)), ['a.jsonl', 'a2.parquet', 'b.txt', path.join('sub', 'c.txt')]);
  assert.equal(await readTextDocuments(d), ['a1', 'a2', 'pq', 'bee\nline two', 'sea']);
});

test('packCalibration: bad numbers are E_INVALID_OPTION', async () => {
  const d = tmp();
  writeFileSync(path.join(d, 'a.txt'), 'abc');
  for (const bad of [{ seqLen: 0 }, { samples: 0 }, { seed: -1 }, { seqLen: 2.5 }]) {
    await rejects(packCalibration({ source: d, tokenizer: charTok, seqLen: 2, samples: 1, ...bad }), 'E_INVALID_OPTION', []);
  }
});

test('packCalibration: exact blocks, tail dropped, all in order when samples == available, seeded draw', async () => {
  const d = tmp();
  writeFileSync(path.join(d, 'c.jsonl'), '{"text": "ab"}\n{"text": "cde"}\n{"text": "f"}\n');
  // Stream: [0 a b][0 c d e][0 f] = [0,97,98,0,99,100,101,0,102] (9 tokens); seqLen 4 -> blocks
  // [0,97,98,0] and [99,100,101,0]; [102] is dropped.
  const all = await packCalibration({ source: d, tokenizer: charTok, seqLen: 4, samples: 2, seed: 99 });
  assert.equal(all.blocks.map((b) => Array.from(b)), [[0, 97, 98, 0], [99, 100, 101, 0]]);
  assert.equal([all.documents, all.tokens, all.blocksAvailable, all.blocksUsed], [3, 9, 2, 2]);
  assert.equal(all.blockIndices, [0, 1]);
  // One of two with seed 0: below(2) of SplitMix64(0)'s first output 0xE220A8397B1DCDAF (odd) = 1 -> block 1.
  const one = await packCalibration({ source: d, tokenizer: charTok, seqLen: 4, samples: 1, seed: 0 });
  assert.equal(one.blockIndices, [1]);
  assert.equal(Array.from(one.blocks[0]!), [99, 100, 101, 0]);
  const progress: number[] = [];
  await packCalibration({ source: d, tokenizer: charTok, seqLen: 1, samples: 5, seed: 3, onProgress: (p) => progress.push(p.tokens) });
  assert.equal(progress, [3, 7, 9]);
});

test('packCalibration: same seed, same blocks; different seed, different draw', async () => {
  const d = tmp();
  writeFileSync(path.join(d, 'a.txt'), 'x'.repeat(199)); // 200 tokens with bos -> 50 blocks of 4
  writeFileSync(path.join(d, 'b.txt'), 'abcdefghijklmnopqrstuvwxyz'.repeat(3)); // +79 tokens
  const a = await packCalibration({ source: d, tokenizer: charTok, seqLen: 4, samples: 10, seed: 5 });
  const b = await packCalibration({ source: d, tokenizer: charTok, seqLen: 4, samples: 10, seed: 5 });
  const c = await packCalibration({ source: d, tokenizer: charTok, seqLen: 4, samples: 10, seed: 6 });
  assert.is(a.blocksAvailable, Math.floor(279 / 4));
  assert.equal(a.blockIndices, b.blockIndices);
  assert.equal(a.blocks, b.blocks);
  assert.not.equal(a.blockIndices, c.blockIndices);
  a.blockIndices.forEach((k, i) => assert.equal(a.blocks[i], Int32Array.from(
    [...[0, ...'x'.repeat(199)].map((ch) => (typeof ch === 'number' ? ch : ch.charCodeAt(0))),
      ...[0, ...'abcdefghijklmnopqrstuvwxyz'.repeat(3)].map((ch) => (typeof ch === 'number' ? ch : ch.charCodeAt(0)))].slice(k * 4, k * 4 + 4))));
});

test('packCalibration: too little data says how much there is and how much is needed', async () => {
  const d = tmp();
  writeFileSync(path.join(d, 'c.jsonl'), '{"text": "ab"}\n{"text": "cde"}\n{"text": "f"}\n');
  await rejects(packCalibration({ source: d, tokenizer: charTok, seqLen: 4, samples: 3 }), 'E_DATA_TOO_SMALL',
    ['9 tokens in 3 documents', '2 blocks of 4 tokens', '3 samples need 3 blocks (12 tokens)']);
});

test.run();
