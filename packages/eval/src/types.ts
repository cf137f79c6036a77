/**
 * The two things evaluation needs from the outside world: a model that returns per-token log-probabilities and a
 * tokenizer. The forward-pass engine implements {@link LogprobModel}; `loadTokenizer` from @streamline/core
 * satisfies {@link EvalTokenizer}. Tests use small fakes of both.
 */

/** Options of {@link LogprobModel.tokenLogprobs}. */
export interface LogprobOptions {
  /** Sequences per forward batch. Results must not depend on it. */
  batchSize?: number;
  /** Called as sequences complete: `done` of `total`. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * A causal language model seen as a scorer of token sequences.
 *
 * Contract:
 * - `tokenLogprobs(seqs)[i][t] = log p(seqs[i][t+1] | seqs[i][0..t])` for t in 0..len−2 (length len−1;
 *   an empty array for a sequence of one token).
 * - A sequence may be `maxLength + 1` tokens long: its last token is only a target, so the forward pass runs on
 *   `seq[0..len−2]` (at most `maxLength` positions).
 * - Each result depends only on its own sequence: never on batch size, on the other sequences or their order
 *   (padding must be masked). Results come back in input order.
 */
export interface LogprobModel {
  /** Longest input (positions) the model accepts; contexts are left-truncated to it. */
  readonly maxLength: number;
  tokenLogprobs(sequences: Int32Array[], opts?: LogprobOptions): Promise<Float32Array[]>;
}

/** The tokenizer surface evaluation uses (a subset of core's `LoadedTokenizer`). */
export interface EvalTokenizer {
  /** Token ids; `addSpecialTokens` defaults to true (the tokenizer's post-processor, e.g. a leading BOS). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): Int32Array;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
}
