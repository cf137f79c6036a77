/**
 * Multiple-choice scoring in two labelled modes.
 *
 * `lm-eval` (lm-evaluation-harness ≥ 0.4.10, `output_type: multiple_choice`, zero-shot):
 * - one log-likelihood request (context, continuation) per choice; continuation = target_delimiter (" ") + choice;
 *   for `multiple_inputs` tasks (winogrande) the contexts differ per option and the continuation is shared;
 * - `_encode_pair`: trailing whitespace of the context moves to the front of the continuation; whole =
 *   enc(context + continuation), ctx = enc(context), both with the tokenizer's default special tokens;
 *   continuation tokens = whole[len(ctx):]; an empty context is scored as [BOS or EOS] + enc(continuation);
 * - left truncation: the model sees (ctx + cont)[−(maxLength + 1):] (last token only a target) and the
 *   continuation's log-probs are the last len(cont) predictions; log-likelihood = their sum;
 * - acc: argmax of the log-likelihoods (first index wins ties); acc_norm: argmax of ll / len(choice) in Unicode
 *   characters (the choice text without the delimiter); acc_bytes: argmax of ll / UTF-8 bytes of the choice;
 *   for multiple-input tasks only acc is meaningful (lm-eval would divide by the contexts' lengths) and the others
 *   are reported as null.
 *
 * `opencompass` (OpenCompass PPL inferencer, as the LLM-Streamline paper's tables): each option rendered into one
 * full prompt (context + continuation, i.e. context + " " + choice), tokenized with default special tokens and
 * left-truncated to maxLength + 1 tokens, mean NLL over every predicted position; the lowest mean NLL wins
 * (first index on ties). acc only.
 */
import { StreamlineError } from '@streamline/core';
import type { EvalTokenizer, LogprobModel } from './types.js';
import { argmax, argmin, codePointLength, utf8Length } from './stats.js';

/** One log-likelihood request. */
export interface McRequest {
  context: string;
  continuation: string;
}

/** One multiple-choice question in scoring form (task loaders produce these). */
export interface McItem {
  /** Requests, one per option. */
  requests: McRequest[];
  /** lm-eval's doc_to_choice strings (the normalisation lengths); for multiple-input tasks, the contexts. */
  choices: string[];
  /** Index of the correct option. */
  gold: number;
  /** True for winogrande-style tasks (contexts differ, continuation shared): acc only. */
  multipleInputs?: boolean;
}

/** Scoring mode. */
export type McMode = 'lm-eval' | 'opencompass';

/** Per-option scores of one item. */
export interface OptionScore {
  /** lm-eval: Σ log p of the continuation tokens; opencompass: Σ log p over the whole prompt. */
  loglikelihood: number;
  /** Tokens scored (continuation tokens, or predicted positions of the whole prompt). */
  tokens: number;
  /** −loglikelihood / tokens: the per-choice mean NLL used by stability. */
  meanNll: number;
}

/** Scores and predictions of one item. */
export interface ItemResult {
  options: OptionScore[];
  gold: number;
  /** acc's prediction (lm-eval) or the lowest mean NLL (opencompass). */
  pred: number;
  /** acc_norm's prediction; null where not defined (opencompass, multiple-input tasks). */
  predNorm: number | null;
  /** acc_bytes' prediction; null where not defined. */
  predBytes: number | null;
}

/**
 * lm-eval `_encode_pair` with default special tokens (file comment).
 * @example
 * encodePair(tok, 'Question: x\nAnswer: ', 'yes') // context "Question: x\nAnswer:", continuation " yes"
 */
export function encodePair(tokenizer: EvalTokenizer, context: string, continuation: string): { contextEnc: Int32Array; continuationEnc: Int32Array } {
  if (context === '') {
    const prefix = tokenizer.bosId ?? tokenizer.eosId;
    if (prefix === undefined) throw new StreamlineError('E_INVALID_OPTION', 'an empty context needs a BOS or EOS token to condition on');
    return { contextEnc: Int32Array.of(prefix), continuationEnc: tokenizer.encode(continuation) };
  }
  const stripped = context.replace(/\s+$/u, '');
  const nSpaces = context.length - stripped.length;
  if (nSpaces > 0) {
    continuation = context.slice(context.length - nSpaces) + continuation;
    context = stripped;
  }
  const whole = tokenizer.encode(context + continuation);
  const contextEnc = tokenizer.encode(context);
  return { contextEnc, continuationEnc: whole.slice(contextEnc.length) };
}

/** A model input built from one request, and how many of its final predictions are scored. */
export interface ScoredSequence {
  sequence: Int32Array;
  /** Number of trailing predictions summed (lm-eval: continuation tokens; opencompass: all). */
  scored: number;
}

/**
 * The sequence the model sees for one request in `mode`, left-truncated to maxLength + 1 tokens.
 * @throws StreamlineError E_TASK_FORMAT when a continuation encodes to no token or to more than maxLength tokens.
 */
export function buildSequence(tokenizer: EvalTokenizer, req: McRequest, mode: McMode, maxLength: number): ScoredSequence {
  if (mode === 'opencompass') {
    const ids = tokenizer.encode(req.context + req.continuation);
    const sequence = ids.length > maxLength + 1 ? ids.slice(ids.length - (maxLength + 1)) : ids;
    return { sequence, scored: sequence.length - 1 };
  }
  const { contextEnc, continuationEnc } = encodePair(tokenizer, req.context, req.continuation);
  if (continuationEnc.length === 0) {
    throw new StreamlineError('E_TASK_FORMAT', `continuation ${JSON.stringify(req.continuation)} encodes to no token after context ${JSON.stringify(req.context.slice(-40))}`);
  }
  if (continuationEnc.length > maxLength) {
    throw new StreamlineError('E_TASK_FORMAT', `continuation of ${continuationEnc.length} tokens exceeds the model's maximum length ${maxLength}`);
  }
  const full = new Int32Array(contextEnc.length + continuationEnc.length);
  full.set(contextEnc);
  full.set(continuationEnc, contextEnc.length);
  const sequence = full.length > maxLength + 1 ? full.slice(full.length - (maxLength + 1)) : full;
  return { sequence, scored: continuationEnc.length };
}

/** Sums the last `scored` log-probs (f64, in order). */
export function scoreOption(logprobs: Float32Array, scored: number): OptionScore {
  let ll = 0;
  for (let t = logprobs.length - scored; t < logprobs.length; t++) ll += logprobs[t]!;
  return { loglikelihood: ll, tokens: scored, meanNll: scored > 0 ? -ll / scored : NaN };
}

/** Predictions of one item from its option scores (rules in the file comment). */
export function predictItem(item: McItem, options: OptionScore[], mode: McMode): ItemResult {
  if (mode === 'opencompass') {
    return { options, gold: item.gold, pred: argmin(options.map((o) => o.meanNll)), predNorm: null, predBytes: null };
  }
  const lls = options.map((o) => o.loglikelihood);
  const pred = argmax(lls);
  if (item.multipleInputs) return { options, gold: item.gold, pred, predNorm: null, predBytes: null };
  const predNorm = argmax(lls.map((ll, i) => ll / codePointLength(item.choices[i]!)));
  const predBytes = argmax(lls.map((ll, i) => ll / utf8Length(item.choices[i]!)));
  return { options, gold: item.gold, pred, predNorm, predBytes };
}

/** Options of {@link scoreItems}. */
export interface ScoreItemsOptions {
  model: LogprobModel;
  tokenizer: EvalTokenizer;
  items: McItem[];
  mode?: McMode;
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Prefix for error messages (e.g. the task name and file). */
  label?: string;
}

/**
 * Scores every option of every item with one call to the model (requests in item order, option order), so
 * results cannot depend on batch size.
 */
export async function scoreItems(opts: ScoreItemsOptions): Promise<ItemResult[]> {
  const { model, tokenizer, items, batchSize, onProgress } = opts;
  const mode = opts.mode ?? 'lm-eval';
  const built: ScoredSequence[] = [];
  items.forEach((item, i) => item.requests.forEach((r, k) => {
    try {
      built.push(buildSequence(tokenizer, r, mode, model.maxLength));
    } catch (e) {
      if (e instanceof StreamlineError) throw new StreamlineError(e.code, `${opts.label ? `${opts.label}, ` : ''}item ${i + 1}, option ${k}: ${e.message}`, { cause: e });
      throw e;
    }
  }));
  const lps = await model.tokenLogprobs(built.map((b) => b.sequence), { batchSize, onProgress });
  if (lps.length !== built.length) {
    throw new StreamlineError('E_INTERNAL', `the model returned ${lps.length} results for ${built.length} sequences`);
  }
  let k = 0;
  return items.map((item) => {
    const options = item.requests.map(() => {
      const b = built[k]!;
      const lp = lps[k++]!;
      if (lp.length !== b.sequence.length - 1) {
        throw new StreamlineError('E_INTERNAL', `the model returned ${lp.length} log-probs for a sequence of ${b.sequence.length} tokens`);
      }
      return scoreOption(lp, b.scored);
    });
    return predictItem(item, options, mode);
  });
}
