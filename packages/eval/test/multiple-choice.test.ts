// lm-eval multiple-choice rules, each checked by hand: the _encode_pair split (fake and real tokenizer), the
// whitespace move, empty contexts, left truncation, ties, acc_norm by characters vs acc_bytes by UTF-8 bytes,
// winogrande partial scoring, and OpenCompass PPL mode.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { isStreamlineError, loadTokenizer } from '@streamline/core';
import { buildSequence, buildTaskItems, encodePair, predictItem, scoreItems, type McItem, type OptionScore } from '../src/index.js';
import { BOS, EOS, bigramModel, charTokenizer, greedyTokenizer, shared } from './helpers.js';

const arr = (x: Int32Array) => Array.from(x);
const c = (s: string) => 1000 + s.codePointAt(0)!;
const opt = (loglikelihood: number, tokens = 1): OptionScore => ({ loglikelihood, tokens, meanNll: -loglikelihood / tokens });

// vocab: "a"=3, "b"=4, " "=5, " b"=6, "ab"=7
const tok = greedyTokenizer({ a: 3, b: 4, ' ': 5, ' b': 6, ab: 7 });

test('encodePair: continuation tokens are whole[len(ctx):] with default special tokens', () => {
  // whole = enc("a b") = [BOS, a, " b"]; ctx = enc("a") = [BOS, a]; continuation = [" b"]
  const r = encodePair(tok, 'a', ' b');
  assert.equal(arr(r.contextEnc), [BOS, 3]);
  assert.equal(arr(r.continuationEnc), [6]);
  // A merge across the boundary: enc("ab") = [BOS, "ab"], enc("a") = [BOS, a]: whole[2:] is empty; such a
  // request cannot be scored, as lm-eval asserts.
  assert.equal(arr(encodePair(tok, 'a', 'b').continuationEnc), []);
  assert.throws(() => buildSequence(tok, { context: 'a', continuation: 'b' }, 'lm-eval', 16), (e: unknown) => isStreamlineError(e, 'E_TASK_FORMAT'));
});

test('encodePair: trailing whitespace of the context moves to the continuation', () => {
  // ("a ", "b") becomes ("a", " b"): continuation [" b"]. Without the move enc("a ") = [BOS, a, " "] and
  // whole = enc("a b") = [BOS, a, " b"] would leave whole[3:] = [].
  const r = encodePair(tok, 'a ', 'b');
  assert.equal(arr(r.contextEnc), [BOS, 3]);
  assert.equal(arr(r.continuationEnc), [6]);
  // Several whitespace characters move together, in order.
  const r2 = encodePair(charTokenizer, 'x\n ', 'y');
  assert.equal(arr(r2.contextEnc), [BOS, c('x')]);
  assert.equal(arr(r2.continuationEnc), [c('\n'), c(' '), c('y')]);
});

test('encodePair: an empty context is [BOS] + enc(continuation) (EOS without a BOS)', () => {
  assert.equal(arr(encodePair(tok, '', ' b').contextEnc), [BOS]);
  assert.equal(arr(encodePair(tok, '', ' b').continuationEnc), [BOS, 6]);
  const noBos = greedyTokenizer({ b: 4 }, { bos: false });
  assert.equal(arr(encodePair(noBos, '', 'b').contextEnc), [EOS]);
});

test('left truncation keeps the last maxLength + 1 tokens; the continuation is scored from the end', async () => {
  // context "wxyz" (5 tokens with BOS), continuation " a" (2 char tokens); maxLength 4 -> the model sees the
  // last 5 of [B w x y z ' ' a] = [x y z ' ' a] and the last 2 predictions are summed.
  const s = buildSequence(charTokenizer, { context: 'wxyz', continuation: ' a' }, 'lm-eval', 4);
  assert.equal(arr(s.sequence), [c('x'), c('y'), c('z'), c(' '), c('a')]);
  assert.is(s.scored, 2);
  const { model } = bigramModel((prev, next) => (next === c('a') ? -0.25 : prev === c('z') ? -0.5 : -8), 4);
  const [r] = await scoreItems({ model, tokenizer: charTokenizer, items: [{ requests: [{ context: 'wxyz', continuation: ' a' }], choices: ['a'], gold: 0 }] });
  assert.is(r!.options[0]!.loglikelihood, -0.75); // ' ' after z (-0.5) + a (-0.25); context tokens not counted
  assert.is(r!.options[0]!.tokens, 2);
  assert.throws(() => buildSequence(charTokenizer, { context: 'q', continuation: ' abcde' }, 'lm-eval', 4), (e: unknown) => isStreamlineError(e, 'E_TASK_FORMAT'));
});

test('acc: ties go to the first index', () => {
  const item: McItem = { requests: [], choices: ['x', 'y', 'z'], gold: 1 };
  const r = predictItem(item, [opt(-2), opt(-1), opt(-1)], 'lm-eval');
  assert.is(r.pred, 1);
  assert.is(predictItem(item, [opt(-1), opt(-1), opt(-1)], 'lm-eval').pred, 0);
});

test('acc_norm divides by characters (code points), acc_bytes by UTF-8 bytes of the choice (no delimiter)', () => {
  // choices "ééé" (3 chars, 6 bytes) and "abcd" (4 chars, 4 bytes); ll = -3 and -3.6
  //   acc:       argmax(-3, -3.6) = 0
  //   acc_norm:  -3/3 = -1    vs -3.6/4 = -0.9 -> 1
  //   acc_bytes: -3/6 = -0.5  vs -3.6/4 = -0.9 -> 0
  const item: McItem = { requests: [], choices: ['ééé', 'abcd'], gold: 1 };
  const r = predictItem(item, [opt(-3, 4), opt(-3.6, 5)], 'lm-eval');
  assert.equal([r.pred, r.predNorm, r.predBytes], [0, 1, 0]);
  // An astral character counts once, as Python's len: "😀" has length 1 (not JavaScript's 2).
  // ll -1.5 / 1 = -1.5 vs -2.8 / 2 = -1.4 -> choice 1; with UTF-16 length it would be -0.75 -> choice 0.
  const emoji: McItem = { requests: [], choices: ['😀', 'ab'], gold: 0 };
  assert.is(predictItem(emoji, [opt(-1.5), opt(-2.8)], 'lm-eval').predNorm, 1);
});

test('scoreItems: continuation = " " + choice, log-likelihood of those tokens only', async () => {
  // Char tokenizer: choice "ééé" -> continuation " ééé" (4 tokens), "abcd" -> " abcd" (5 tokens).
  // lp(next): ' ' -> 0, 'é' -> -1, a..d -> -0.9  =>  ll = -3 and -3.6 (as above).
  const lp: Record<string, number> = { ' ': 0, é: -1, a: -0.9, b: -0.9, c: -0.9, d: -0.9 };
  const { model } = bigramModel((_p, next) => lp[String.fromCodePoint(next - 1000)] ?? -50);
  const items = buildTaskItems('generic', [{ context: 'Q', choices: ['ééé', 'abcd'], gold: 1 }]);
  assert.equal(items[0]!.requests, [{ context: 'Q', continuation: ' ééé' }, { context: 'Q', continuation: ' abcd' }]);
  const [r] = await scoreItems({ model, tokenizer: charTokenizer, items });
  assert.ok(Math.abs(r!.options[0]!.loglikelihood - -3) < 1e-6 && Math.abs(r!.options[1]!.loglikelihood - -3.6) < 1e-6);
  assert.equal(r!.options.map((o) => o.tokens), [4, 5]);
  assert.equal([r!.pred, r!.predNorm, r!.predBytes], [0, 1, 0]);
});

test('winogrande: contexts differ per option, the continuation is shared; acc only', async () => {
  const items = buildTaskItems('winogrande', [{ sentence: 'The cup did not fit in the bag because _ was too big.', option1: 'the cup', option2: 'the bag', answer: '1' }]);
  const it = items[0]!;
  assert.equal(it.requests, [
    { context: 'The cup did not fit in the bag because the cup', continuation: ' was too big.' },
    { context: 'The cup did not fit in the bag because the bag', continuation: ' was too big.' },
  ]);
  assert.is(it.gold, 0);
  // lp = -0.1 after 'p' (end of "cup"), -1 otherwise: only the first continuation token depends on the option:
  // option 0: -0.1 + 12 * -1 = -12.1; option 1: 13 * -1 = -13. Both score the same 13 continuation tokens.
  const { model } = bigramModel((prev) => (prev === c('p') ? -0.1 : -1), 128);
  const [r] = await scoreItems({ model, tokenizer: charTokenizer, items });
  assert.equal(r!.options.map((o) => o.tokens), [13, 13]);
  assert.ok(Math.abs(r!.options[0]!.loglikelihood - -12.1) < 1e-6);
  assert.is(r!.options[1]!.loglikelihood, -13);
  assert.equal([r!.pred, r!.predNorm, r!.predBytes], [0, null, null]);
});

test('opencompass mode: whole prompt, mean NLL over all predicted positions, lowest wins', async () => {
  // Prompts "Q x" and "Q yy" with BOS: 4 and 5 tokens -> 3 and 4 predicted positions.
  // lp = -1 for every token except 'y' (-0.5): mean NLL 3/3 = 1 and (1 + 1 + 0.5 + 0.5)/4 = 0.75 -> option 1.
  const { model, seen } = bigramModel((_p, next) => (next === c('y') ? -0.5 : -1));
  const items = buildTaskItems('generic', [{ context: 'Q', choices: ['x', 'yy'], gold: 1 }]);
  const [r] = await scoreItems({ model, tokenizer: charTokenizer, items, mode: 'opencompass' });
  assert.equal(seen.map((s) => s.length), [4, 5]);
  assert.equal(r!.options.map((o) => o.meanNll), [1, 0.75]);
  assert.equal([r!.pred, r!.predNorm], [1, null]);
});

const kjv = shared ? path.join(shared, 'models/kjv-llama') : undefined;
if (!kjv || !existsSync(kjv)) {
  console.log('skip: ../shared not found');
} else {
  test('kjv-llama tokenizer: the split and the whitespace move on real BPE merges', () => {
    const t = loadTokenizer(kjv);
    // enc("and the beg") = [bos, "and", " the", "beg"(797)]; enc("and the beginning") = [bos, 377, 258, " begin"(1825), "ning"(1258)]
    // so the continuation of ("and the beg", "inning") is whole[4:] = ["ning"], not enc("inning") = ["in", "ning"].
    const r = encodePair(t, 'and the beg', 'inning');
    assert.equal(arr(r.contextEnc), [2045, 377, 258, 797]);
    assert.equal(arr(r.continuationEnc), [1258]);
    // "Answer: " + "yes" -> ("Answer:", " yes"): continuation [" y"(307), "es"(282)]; without the move
    // enc("Answer: ") ends in " "(32) and only ["es"] would remain.
    const m = encodePair(t, 'Answer: ', 'yes');
    assert.equal(arr(m.contextEnc), [2045, 65, 110, 763, 266, 58]);
    assert.equal(arr(m.continuationEnc), [307, 282]);
  });
}

test.run();
