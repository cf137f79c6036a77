// Fakes shared by the eval tests: a greedy longest-match tokenizer over a tiny vocabulary and a "bigram" model
// whose log-prob of each token depends only on (previous token, token), so values can be worked out by hand.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EvalTokenizer, LogprobModel } from '../src/index.js';

export const BOS = 1;
export const EOS = 2;

/**
 * Greedy longest-match tokenizer. `vocab` maps strings to ids (ids ≥ 3); a character outside it becomes
 * 1000 + its code point. With special tokens (the default) BOS is put in front.
 */
export function greedyTokenizer(vocab: Record<string, number>, opts: { bos?: boolean } = {}): EvalTokenizer & { piece(id: number): string } {
  const entries = Object.entries(vocab).sort((a, b) => b[0].length - a[0].length);
  const byId = new Map(Object.entries(vocab).map(([s, id]) => [id, s]));
  const hasBos = opts.bos ?? true;
  return {
    bosId: hasBos ? BOS : undefined,
    eosId: EOS,
    encode(text: string, o: { addSpecialTokens?: boolean } = {}): Int32Array {
      const ids: number[] = (o.addSpecialTokens ?? true) && hasBos ? [BOS] : [];
      let i = 0;
      while (i < text.length) {
        const hit = entries.find(([s]) => text.startsWith(s, i));
        if (hit) { ids.push(hit[1]); i += hit[0].length; continue; }
        const cp = text.codePointAt(i)!;
        ids.push(1000 + cp);
        i += cp > 0xffff ? 2 : 1;
      }
      return Int32Array.from(ids);
    },
    piece(id: number) { return byId.get(id) ?? (id >= 1000 ? String.fromCodePoint(id - 1000) : `<${id}>`); },
  };
}

/** Character tokenizer: every character is its own token (1000 + code point), BOS in front by default. */
export const charTokenizer = greedyTokenizer({});

/** A model whose log p(next | prefix) = lp(prev, next); records every sequence and batch it is asked for. */
export function bigramModel(lp: (prev: number, next: number) => number, maxLength = 64) {
  const seen: Int32Array[] = [];
  const batches: number[] = [];
  const model: LogprobModel = {
    maxLength,
    async tokenLogprobs(sequences, opts = {}) {
      const bs = opts.batchSize ?? 4;
      const out: Float32Array[] = [];
      for (let s = 0; s < sequences.length; s += bs) {
        const batch = sequences.slice(s, s + bs);
        batches.push(batch.length);
        for (const seq of batch) {
          if (seq.length > maxLength + 1) throw new Error(`sequence of ${seq.length} > maxLength + 1`);
          seen.push(seq);
          const r = new Float32Array(Math.max(0, seq.length - 1));
          for (let t = 0; t + 1 < seq.length; t++) r[t] = lp(seq[t]!, seq[t + 1]!);
          out.push(r);
        }
        opts.onProgress?.(Math.min(s + bs, sequences.length), sequences.length);
      }
      return out;
    },
  };
  return { model, seen, batches };
}

/** A pseudo-random but deterministic bigram table (values in (−6, −0.5]). */
export function hashLp(seed: number) {
  return (prev: number, next: number) => -0.5 - (((prev * 2654435761 + next * 40503 + seed * 97) >>> 0) % 1000) / 200;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** ../shared next to the repository, or STREAMLINE_SHARED; undefined when neither exists. */
export const shared = [path.resolve(repoRoot, '../shared'), process.env.STREAMLINE_SHARED].find((p): p is string => !!p && existsSync(p));
