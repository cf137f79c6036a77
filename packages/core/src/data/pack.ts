/**
 * Calibration packing, exactly as documented for `streamline score`:
 *  1. every document (a `.txt` file; a JSONL line's field; a Parquet row's column) is tokenized with the
 *     tokenizer's default special tokens (so a Llama-3 style tokenizer puts BOS in front of each document);
 *  2. the documents' tokens are concatenated in reading order (see readers.ts for the order of files);
 *  3. the stream is cut into consecutive blocks of `seqLen` tokens, the last partial block dropped;
 *  4. `samples` blocks are drawn without replacement by a partial Fisher–Yates shuffle seeded with `seed`
 *     (prng.ts: SplitMix64), in the order drawn; when `samples` equals the number of blocks, all of them in order.
 */
import { StreamlineError } from '../errors.js';
import { readDocuments } from './readers.js';
import { sampleWithoutReplacement } from './prng.js';

/** What packing needs from a tokenizer (core's LoadedTokenizer satisfies it). */
export interface PackTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): Int32Array;
}

/** Progress of {@link packCalibration}: documents and tokens read so far, and the file being read. */
export interface PackProgress {
  documents: number;
  tokens: number;
  file: string;
}

/** Options of {@link packCalibration}. */
export interface PackOptions {
  /** A .txt / .jsonl / .parquet file or a directory of them. */
  source: string;
  tokenizer: PackTokenizer;
  /** Tokens per block (positive integer). */
  seqLen: number;
  /** Blocks to draw (positive integer, at most the number available). */
  samples: number;
  /** PRNG seed (non-negative integer). Default 0. */
  seed?: number;
  /** JSONL / Parquet field holding the text. Default `text`. */
  field?: string;
  /** Called after each document. */
  onProgress?: (p: PackProgress) => void;
}

/** The packed calibration set. */
export interface PackedCalibration {
  /** `blocksUsed` blocks of `seqLen` token ids, in drawing order. */
  blocks: Int32Array[];
  /** Block numbers (0-based position in the stream) of `blocks`, same order. */
  blockIndices: number[];
  /** Documents read. */
  documents: number;
  /** Tokens in the concatenated stream (special tokens included). */
  tokens: number;
  /** floor(tokens / seqLen). */
  blocksAvailable: number;
  /** = samples. */
  blocksUsed: number;
}

/**
 * Tokenizes and packs calibration text into `samples` blocks of `seqLen` tokens (rules in the file comment).
 * @example
 * const tok = loadTokenizer('models/kjv-llama');
 * const cal = await packCalibration({ source: 'data/kjv/train.jsonl', tokenizer: tok, seqLen: 256, samples: 50, seed: 0 });
 * cal.blocks.length; // 50
 * @throws StreamlineError E_INVALID_OPTION for a bad seqLen, samples or seed; E_DATA_TOO_SMALL when fewer than
 *   `samples` blocks exist (the message gives documents, tokens, blocks available and tokens needed); the
 *   readers' E_DATA_MISSING / E_DATA_FORMAT.
 */
export async function packCalibration(options: PackOptions): Promise<PackedCalibration> {
  const { source, tokenizer, seqLen, samples, seed = 0, field = 'text', onProgress } = options;
  checkInt('seqLen', seqLen, 1);
  checkInt('samples', samples, 1);
  checkInt('seed', seed, 0);

  let stream = new Int32Array(1 << 16);
  let tokens = 0;
  let documents = 0;
  for await (const doc of readDocuments(source, { field })) {
    const ids = tokenizer.encode(doc.text, { addSpecialTokens: true });
    if (tokens + ids.length > stream.length) {
      let cap = stream.length;
      while (cap < tokens + ids.length) cap *= 2;
      const grown = new Int32Array(cap);
      grown.set(stream.subarray(0, tokens));
      stream = grown;
    }
    stream.set(ids, tokens);
    tokens += ids.length;
    documents++;
    onProgress?.({ documents, tokens, file: doc.file });
  }

  const blocksAvailable = Math.floor(tokens / seqLen);
  if (blocksAvailable < samples) {
    throw new StreamlineError(
      'E_DATA_TOO_SMALL',
      `calibration data ${source} has ${tokens} tokens in ${documents} document${documents === 1 ? '' : 's'}, ` +
        `which make ${blocksAvailable} block${blocksAvailable === 1 ? '' : 's'} of ${seqLen} tokens; ` +
        `${samples} samples need ${samples} blocks (${samples * seqLen} tokens). ` +
        'Add data, or lower --samples or --seq-len.',
      { file: source },
    );
  }
  const blockIndices = sampleWithoutReplacement(blocksAvailable, samples, seed);
  const blocks = blockIndices.map((b) => stream.slice(b * seqLen, (b + 1) * seqLen));
  return { blocks, blockIndices, documents, tokens, blocksAvailable, blocksUsed: samples };
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new StreamlineError('E_INVALID_OPTION', `${name} must be an integer ≥ ${min}, got ${v}`);
  }
}
