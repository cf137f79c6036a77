/**
 * Caches for the demo, which runs the same work several times: the calibration text is tokenized once per
 * pruning run (scoring and training data) and the original model is the baseline of every evaluation. Both
 * caches return exactly what the wrapped call returns (results depend only on their own input), so the numbers
 * are the ones an uncached run gives.
 */
import type { LoadedModel } from '@streamline/core';
import type { LogprobModel, LogprobOptions } from '@streamline/eval';

type Tokenizer = NonNullable<LoadedModel['tokenizer']>;

/** The tokenizer with `encode` memoised by (text, addSpecialTokens). Returns copies, so callers may mutate. */
export function memoTokenizer(tok: Tokenizer): Tokenizer {
  const cache = new Map<string, Int32Array>();
  const wrapped = Object.create(tok) as Tokenizer;
  wrapped.encode = (text, options = {}) => {
    const key = `${options.addSpecialTokens === false ? 0 : 1}${text}`;
    let ids = cache.get(key);
    if (!ids) {
      ids = tok.encode(text, options);
      cache.set(key, ids);
    }
    return ids.slice();
  };
  return wrapped;
}

function keyOf(seq: Int32Array): string {
  return Buffer.from(seq.buffer, seq.byteOffset, seq.byteLength).toString('base64');
}

/**
 * A {@link LogprobModel} whose per-sequence results are cached by token ids: a second request for the same
 * sequence is answered from memory, new sequences go to the model in one call (the contract makes each result
 * independent of batch composition, so this is exact).
 */
export function memoLogprobModel(model: LogprobModel): LogprobModel {
  const cache = new Map<string, Float32Array>();
  return {
    maxLength: model.maxLength,
    async tokenLogprobs(sequences: Int32Array[], opts: LogprobOptions = {}): Promise<Float32Array[]> {
      const keys = sequences.map(keyOf);
      const missing: number[] = [];
      const seen = new Set<string>();
      keys.forEach((k, i) => { if (!cache.has(k) && !seen.has(k)) { seen.add(k); missing.push(i); } });
      if (missing.length) {
        const cachedCount = sequences.length - missing.length;
        const fresh = await model.tokenLogprobs(missing.map((i) => sequences[i]!), {
          ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
          ...(opts.onProgress ? { onProgress: (d, t) => opts.onProgress!(cachedCount + d, cachedCount + t) } : {}),
        });
        missing.forEach((i, j) => cache.set(keys[i]!, fresh[j]!));
      } else opts.onProgress?.(sequences.length, sequences.length);
      return keys.map((k) => cache.get(k)!.slice());
    },
  };
}
