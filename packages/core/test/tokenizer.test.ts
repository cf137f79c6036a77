// loadTokenizer: bad input first (missing tokenizer.json, broken JSON), then the real kjv-llama tokenizer when
// ../shared is present (default encoding prepends bos 2045; without specials it does not).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenizer, isStreamlineError } from '../src/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
// ../shared next to the repository (CI, main checkout), or STREAMLINE_SHARED for other checkouts.
const shared = [path.resolve(repoRoot, '../shared'), process.env.STREAMLINE_SHARED].find((p) => p && existsSync(p));
const kjv = path.join(shared ?? '/nonexistent', 'models/kjv-llama');

test('missing tokenizer.json is E_TOKENIZER_MISSING naming the directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tok-'));
  try {
    loadTokenizer(dir);
    assert.unreachable();
  } catch (e) {
    assert.ok(isStreamlineError(e, 'E_TOKENIZER_MISSING'));
    assert.ok((e as Error).message.includes(dir), (e as Error).message);
  }
});

test('tokenizer.json that is not JSON is E_TOKENIZER_FORMAT', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tok-'));
  writeFileSync(path.join(dir, 'tokenizer.json'), '{not json');
  assert.throws(() => loadTokenizer(dir), (e: unknown) => isStreamlineError(e, 'E_TOKENIZER_FORMAT'));
});

if (!existsSync(path.join(kjv, 'tokenizer.json'))) {
  console.log('skip: ../shared not found');
} else {
  test('kjv-llama: default encoding prepends bos 2045; specials, vocab and max length come from the config', () => {
    const tok = loadTokenizer(kjv);
    assert.is(tok.bosId, 2045);
    assert.is(tok.eosId, 2046);
    assert.is(tok.padId, 2047);
    assert.is(tok.vocabSize, 2048);
    assert.is(tok.modelMaxLength, 512);
    const withBos = tok.encode('In the beginning');
    assert.ok(withBos instanceof Int32Array);
    assert.equal(Array.from(withBos), [2045, 1190, 258, 1825, 1258]);
    assert.equal(Array.from(tok.encode('In the beginning', { addSpecialTokens: false })), [1190, 258, 1825, 1258]);
    assert.is(tok.decode(withBos, { skipSpecialTokens: true }), 'In the beginning');
    assert.is(tok.decode(withBos), '<|begin_of_text|>In the beginning');
  });
}

test.run();
