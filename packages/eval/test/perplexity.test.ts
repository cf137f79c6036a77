// Perplexity: lm-eval's rolling windows (its own gold list and a small list worked by hand), the rolling metrics,
// and the chunked convention.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isStreamlineError } from '@streamline/core';
import { chunkedPerplexity, countWords, getRollingTokenWindows, makeDisjointWindow, rollingPerplexity } from '../src/index.js';
import { BOS, bigramModel, charTokenizer, greedyTokenizer } from './helpers.js';

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

test('bad options are E_INVALID_OPTION; too little text is E_DATA_TOO_SMALL', async () => {
  const { model } = bigramModel(() => -1, 8);
  for (const seqLen of [1, 9, 2.5]) {
    try { await chunkedPerplexity({ model, tokenizer: charTokenizer, documents: ['abcdefghij'], seqLen }); assert.unreachable(); }
    catch (e) { assert.ok(isStreamlineError(e, 'E_INVALID_OPTION'), String(e)); }
  }
  try { await chunkedPerplexity({ model, tokenizer: charTokenizer, documents: ['ab'], seqLen: 8 }); assert.unreachable(); }
  catch (e) { assert.ok(isStreamlineError(e, 'E_DATA_TOO_SMALL'), String(e)); }
  const noSpecials = { ...greedyTokenizer({}, { bos: false }), eosId: undefined };
  try { await rollingPerplexity({ model, tokenizer: noSpecials, documents: ['ab'] }); assert.unreachable(); }
  catch (e) { assert.ok(isStreamlineError(e, 'E_INVALID_OPTION'), String(e)); }
  // Documents with no tokens: every rolling figure would be 0/0 (NaN, null in JSON) under exit status 0.
  for (const documents of [[], ['']]) {
    try { await rollingPerplexity({ model, tokenizer: charTokenizer, documents }); assert.unreachable(); }
    catch (e) { assert.ok(isStreamlineError(e, 'E_DATA_TOO_SMALL'), String(e)); }
  }
});

test('get_rolling_token_windows: lm-eval test gold (0..33, prefix -100, max 10, context 1)', () => {
  const w = getRollingTokenWindows(range(34), -100, 10, 1);
  assert.equal(w, [
    { input: [-100, ...range(9)], pred: range(10) },
    { input: range(10).map((x) => x + 9), pred: range(10).map((x) => x + 10) },
    { input: range(10).map((x) => x + 19), pred: range(10).map((x) => x + 20) },
    { input: range(10).map((x) => x + 23), pred: [30, 31, 32, 33] },
  ]);
  assert.equal(getRollingTokenWindows([], -1, 10, 1), []);
});

test('rolling windows + make_disjoint_window on 7 tokens, max 3, worked by hand', () => {
  // tokens t = [10..16], prefix P = 99, maxSeqLen 3, contextLen 1 -> pred_len = 3.
  // first: input [P, t0, t1] = [99,10,11], pred t[0:3] = [10,11,12]; predicted = 3
  // next:  window_pred_len = min(7-3, 3) = 3, end = 6: input t[6-3-1 : 5] = t[2:5] = [12,13,14], pred t[3:6] = [13,14,15]
  // last:  window_pred_len = min(1, 3) = 1, end = 7: input t[3:6] = [13,14,15], pred t[6:7] = [16]
  const t = [10, 11, 12, 13, 14, 15, 16];
  const w = getRollingTokenWindows(t, 99, 3, 1);
  assert.equal(w, [
    { input: [99, 10, 11], pred: [10, 11, 12] },
    { input: [12, 13, 14], pred: [13, 14, 15] },
    { input: [13, 14, 15], pred: [16] },
  ]);
  // make_disjoint_window: context = input[: len(input) - (len(pred) - 1)]
  assert.equal(w.map(makeDisjointWindow), [
    { context: [99], continuation: [10, 11, 12] },
    { context: [12], continuation: [13, 14, 15] },
    { context: [13, 14, 15], continuation: [16] },
  ]);
});

test('rollingPerplexity: sequences fed, every token predicted once, word/byte metrics from the original text', async () => {
  // charTokenizer without specials: "ab cd" -> 5 tokens a,b,' ',c,d (1000 + code point). maxLength 3.
  // First window: input [P a b], predicts {a b ' '}. pred_len = 3, so the second predicts t[3:5] = {c d}
  // with input t[5-3-1 : 4] = t[1:4] = [b ' ' c]; disjoint context = input[:3-(2-1)] = [b ' '].
  // The model sees (context + continuation)[-4:] = [b, ' ', c, d] and the last 2 predictions are scored.
  // lp(prev, next) = -1 if prev is BOS else -2  ->  ll = -1 (a | P) - 2 (b) - 2 (' ') - 2 (c) - 2 (d) = -9.
  const { model, seen } = bigramModel((prev) => (prev === BOS ? -1 : -2), 3);
  const c = (s: string) => 1000 + s.charCodeAt(0);
  const r = await rollingPerplexity({ model, tokenizer: charTokenizer, documents: ['ab cd'] });
  assert.equal(seen.map((s) => Array.from(s)), [[BOS, c('a'), c('b'), c(' ')], [c('b'), c(' '), c('c'), c('d')]]);
  assert.equal([r.tokens, r.windows, r.predicted, r.words, r.bytes], [5, 2, 5, 2, 5]);
  close(r.loglikelihood, -9);
  close(r.nll, 9 / 5);
  close(r.word_perplexity, Math.exp(9 / 2));
  close(r.byte_perplexity, Math.exp(9 / 5));
  close(r.bits_per_byte, 9 / 5 / Math.LN2);
});

test('rollingPerplexity: documents are scored separately; bytes are UTF-8 of the original text', async () => {
  // Two documents "é" and "x y": each starts from the prefix again. lp = -1 everywhere.
  const { model, seen } = bigramModel(() => -1, 8);
  const r = await rollingPerplexity({ model, tokenizer: charTokenizer, documents: ['é', 'x y'] });
  assert.is(seen.length, 2);
  assert.is(seen[1]![0], BOS);
  assert.equal([r.tokens, r.words, r.bytes], [4, 1 + 2, 2 + 3]);
  close(r.word_perplexity, Math.exp(4 / 3));
  close(r.byte_perplexity, Math.exp(4 / 5));
});

test('countWords is len(re.split(r"\\s+", doc))', () => {
  assert.is(countWords('a b  c'), 3);
  assert.is(countWords(' a'), 2); // leading empty piece, as Python
  assert.is(countWords(''), 1);
});

test('chunkedPerplexity: "\\n\\n"-joined text, BOS once, windows of seqLen, tail dropped, positions 1.. predicted', async () => {
  // ["ab", "c"] -> "ab\n\nc" -> [B, a, b, \n, \n, c] (6 tokens); seqLen 4 -> one window [B a b \n]; [\n c] dropped.
  // lp(prev, next) = -1 when next is 'b', -3 otherwise: predicted a, b, \n -> NLL = 3 + 1 + 3 = 7 over 3 positions.
  const c = (s: string) => 1000 + s.charCodeAt(0);
  const { model, seen } = bigramModel((_p, next) => (next === c('b') ? -1 : -3), 16);
  const r = await chunkedPerplexity({ model, tokenizer: charTokenizer, documents: ['ab', 'c'], seqLen: 4 });
  assert.equal(seen.map((s) => Array.from(s)), [[BOS, c('a'), c('b'), c('\n')]]);
  assert.equal([r.tokens, r.windows, r.predicted], [6, 1, 3]);
  close(r.nll, 7 / 3);
  close(r.ppl, Math.exp(7 / 3));
});

test.run();
