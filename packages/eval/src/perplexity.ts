/**
 * Perplexity in two labelled modes.
 *
 * `chunked` (the project convention, as pruning papers report it): documents joined with "\n\n", tokenized once
 * with the tokenizer's default special tokens, cut into consecutive non-overlapping windows of `seqLen` tokens
 * (last partial window dropped), every window scored independently, positions 1..seqLen−1 of each window
 * predicted, PPL = exp(total NLL / predicted tokens).
 *
 * `rolling` (lm-evaluation-harness `loglikelihood_rolling`, as its wikitext task uses it): each document on its
 * own, tokenized WITHOUT special tokens, split by `get_rolling_token_windows(context_len=1)` +
 * `make_disjoint_window` into windows of the model's max length; the first window is fed the prefix token
 * (BOS, or EOS when there is none) and predicts the first min(maxLength, n) tokens, each later window predicts
 * the next maxLength tokens (fewer at the end) and is fed the maxLength tokens before its last prediction as
 * context, so every token is predicted exactly once. Reported as lm-eval's wikitext: word_perplexity =
 * exp(−Σ ll / Σ words), byte_perplexity = exp(−Σ ll / Σ bytes), bits_per_byte = −Σ ll / Σ bytes / ln 2, with
 * words = len(re.split(r"\s+", doc)) and bytes = UTF-8 length of the original document; plus token perplexity.
 */
import { StreamlineError } from '@streamline/core';
import type { EvalTokenizer, LogprobModel } from './types.js';
import { utf8Length } from './stats.js';

/** A rolling window: `input` fed to the model, `pred` the tokens it predicts (the last `pred.length` targets). */
export interface RollingWindow {
  input: number[];
  pred: number[];
}

/**
 * lm-evaluation-harness `get_rolling_token_windows`: windows of `maxSeqLen` inputs that predict every token of
 * `tokens` exactly once (see the file comment). `contextLen` ≥ 1 reserves that many tokens of context in later
 * windows (lm-eval calls it with 1). An empty token list gives no window.
 * @example
 * // tokens 0..33, prefix -100, maxSeqLen 10: inputs [-100,0..8] [9..18] [19..28] [23..32];
 * // predictions [0..9] [10..19] [20..29] [30..33]
 */
export function getRollingTokenWindows(tokens: ArrayLike<number>, prefixToken: number, maxSeqLen: number, contextLen: number): RollingWindow[] {
  if (!(contextLen >= 1 && contextLen <= maxSeqLen)) throw new RangeError(`contextLen must be in [1, ${maxSeqLen}], got ${contextLen}`);
  const t = Array.from(tokens);
  const out: RollingWindow[] = [];
  if (t.length === 0) return out;
  const predLen = maxSeqLen - contextLen + 1;
  const firstLen = Math.min(maxSeqLen, t.length);
  out.push({ input: [prefixToken, ...t.slice(0, firstLen - 1)], pred: t.slice(0, firstLen) });
  let predicted = firstLen;
  while (predicted < t.length) {
    const windowPredLen = Math.min(t.length - predicted, predLen);
    const windowEnd = predicted + windowPredLen;
    out.push({ input: t.slice(windowEnd - maxSeqLen - 1, windowEnd - 1), pred: t.slice(windowEnd - windowPredLen, windowEnd) });
    predicted += windowPredLen;
  }
  return out;
}

/**
 * lm-evaluation-harness `make_disjoint_window`: drops from the input the tokens that are also predicted, leaving
 * a (context, continuation) pair whose concatenation is the window: context = input[0 .. len(input) − (len(pred) − 1)).
 */
export function makeDisjointWindow(w: RollingWindow): { context: number[]; continuation: number[] } {
  return { context: w.input.slice(0, w.input.length - (w.pred.length - 1)), continuation: w.pred };
}

/** Chunked-mode result. `nll` is the mean negative log-likelihood per predicted token (nats); ppl = exp(nll). */
export interface ChunkedPerplexity {
  mode: 'chunked';
  /** Tokens in the tokenized text (all of it, including the dropped tail). */
  tokens: number;
  windows: number;
  seqLen: number;
  /** windows × (seqLen − 1). */
  predicted: number;
  nll: number;
  ppl: number;
}

/** Rolling-mode result: token-level numbers plus lm-eval's word/byte metrics. */
export interface RollingPerplexity {
  mode: 'rolling';
  documents: number;
  /** Tokens in all documents (each predicted once). */
  tokens: number;
  windows: number;
  predicted: number;
  /** Mean NLL per token; ppl = exp(nll) (token perplexity). */
  nll: number;
  ppl: number;
  /** Σ log-likelihood over documents (nats). */
  loglikelihood: number;
  words: number;
  bytes: number;
  word_perplexity: number;
  byte_perplexity: number;
  bits_per_byte: number;
}

/** Options shared by both perplexity modes. */
export interface PerplexityOptions {
  model: LogprobModel;
  tokenizer: EvalTokenizer;
  /** The documents (see core's readTextDocuments). */
  documents: string[];
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Chunked perplexity (file comment). `seqLen` defaults to the model's maxLength and may not exceed it.
 * @throws StreamlineError E_INVALID_OPTION for a bad seqLen; E_DATA_TOO_SMALL when the text is shorter than one window.
 */
export async function chunkedPerplexity(opts: PerplexityOptions & { seqLen?: number }): Promise<ChunkedPerplexity> {
  const { model, tokenizer, documents, batchSize, onProgress } = opts;
  const seqLen = opts.seqLen ?? model.maxLength;
  if (!Number.isSafeInteger(seqLen) || seqLen < 2 || seqLen > model.maxLength) {
    throw new StreamlineError('E_INVALID_OPTION', `seqLen must be an integer in [2, ${model.maxLength}] (the model's maximum length), got ${seqLen}`);
  }
  const ids = tokenizer.encode(documents.join('\n\n'), { addSpecialTokens: true });
  const windows = Math.floor(ids.length / seqLen);
  if (windows === 0) {
    throw new StreamlineError('E_DATA_TOO_SMALL', `the text has ${ids.length} tokens, fewer than one window of ${seqLen}`);
  }
  const seqs: Int32Array[] = [];
  for (let w = 0; w < windows; w++) seqs.push(ids.slice(w * seqLen, (w + 1) * seqLen));
  const lps = await model.tokenLogprobs(seqs, { batchSize, onProgress });
  let sum = 0;
  let predicted = 0;
  for (const lp of lps) {
    for (let i = 0; i < lp.length; i++) sum -= lp[i]!;
    predicted += lp.length;
  }
  const nll = sum / predicted;
  return { mode: 'chunked', tokens: ids.length, windows, seqLen, predicted, nll, ppl: Math.exp(nll) };
}

/** lm-eval's word count: `len(re.split(r"\s+", doc))` (a leading or trailing space adds an empty piece). */
export function countWords(doc: string): number {
  return doc.split(/\s+/).length;
}

/**
 * Rolling perplexity (file comment). `maxLength` defaults to the model's; `prefixToken` to BOS, else EOS.
 * @throws StreamlineError E_INVALID_OPTION when there is no prefix token or maxLength is out of range; E_DATA_TOO_SMALL
 *   when the documents encode to no tokens.
 */
export async function rollingPerplexity(opts: PerplexityOptions & { maxLength?: number; prefixToken?: number }): Promise<RollingPerplexity> {
  const { model, tokenizer, documents, batchSize, onProgress } = opts;
  const maxLength = opts.maxLength ?? model.maxLength;
  if (!Number.isSafeInteger(maxLength) || maxLength < 1 || maxLength > model.maxLength) {
    throw new StreamlineError('E_INVALID_OPTION', `maxLength must be an integer in [1, ${model.maxLength}], got ${maxLength}`);
  }
  const prefix = opts.prefixToken ?? tokenizer.bosId ?? tokenizer.eosId;
  if (prefix === undefined) {
    throw new StreamlineError('E_INVALID_OPTION', 'rolling perplexity needs a prefix token: the tokenizer has neither BOS nor EOS');
  }
  const seqs: Int32Array[] = [];
  const owner: number[] = [];
  const predLens: number[] = [];
  let tokens = 0;
  documents.forEach((doc, d) => {
    const ids = tokenizer.encode(doc, { addSpecialTokens: false });
    tokens += ids.length;
    for (const w of getRollingTokenWindows(ids, prefix, maxLength, 1)) {
      const { context, continuation } = makeDisjointWindow(w);
      // lm-eval feeds (context + continuation)[-(maxLength + 1):][:-1]; the last token is only a target.
      const full = [...context, ...continuation].slice(-(maxLength + 1));
      seqs.push(Int32Array.from(full));
      owner.push(d);
      predLens.push(continuation.length);
    }
  });
  // Nothing to predict would make every figure 0/0 (NaN, written as null in JSON) and still look like a result.
  if (tokens === 0) throw new StreamlineError('E_DATA_TOO_SMALL', `the text (${documents.length} document${documents.length === 1 ? '' : 's'}) encodes to no tokens; nothing to score`);
  const lps = await model.tokenLogprobs(seqs, { batchSize, onProgress });
  const perDoc = new Float64Array(documents.length);
  let predicted = 0;
  lps.forEach((lp, i) => {
    const k = predLens[i]!;
    let s = 0;
    for (let t = lp.length - k; t < lp.length; t++) s += lp[t]!;
    perDoc[owner[i]!] += s;
    predicted += k;
  });
  let ll = 0;
  let words = 0;
  let bytes = 0;
  documents.forEach((doc, d) => {
    ll += perDoc[d]!;
    words += countWords(doc);
    bytes += utf8Length(doc);
  });
  const nll = -ll / tokens;
  return {
    mode: 'rolling', documents: documents.length, tokens, windows: seqs.length, predicted, nll, ppl: Math.exp(nll),
    loglikelihood: ll, words, bytes,
    word_perplexity: Math.exp(-ll / words),
    byte_perplexity: Math.exp(-ll / bytes),
    bits_per_byte: -ll / bytes / Math.LN2,
  };
}
