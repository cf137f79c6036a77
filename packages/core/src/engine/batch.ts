/**
 * Batches of token sequences, right-padded. Every row's positions are 0..T-1 (Hugging Face's default without
 * explicit position ids); with right padding and a causal mask a real token never sees padding, so each row's
 * results are exactly those of the row run alone (batch-size invariance).
 */
import { StreamlineError } from '../errors.js';

export interface TokenBatch {
  /** Rows. */
  B: number;
  /** Padded length (the longest row). */
  T: number;
  /** Token ids [B*T]; padding rows carry `padId`. */
  ids: Int32Array;
  /** 1 for real tokens, 0 for padding [B*T]. */
  mask: Uint8Array;
  /** Positions [B*T]: 0..T-1 in every row. */
  positions: Int32Array;
  /** Real length of each row. */
  lengths: number[];
}

/**
 * Rows per native GEMM call (native/src/matmul.cpp kRowBlock). Rows are padded to a multiple of it so every
 * sequence starts at a call boundary: a token then goes through exactly the same arithmetic whatever batch it is
 * in, and results are bitwise independent of batch size.
 */
export const ROW_ALIGN = 64;

/** Packs sequences into one right-padded batch (padded length: the longest row rounded up to ROW_ALIGN). */
export function makeTokenBatch(sequences: readonly Int32Array[], padId = 0): TokenBatch {
  if (sequences.length === 0) throw new StreamlineError('E_BATCH', 'a batch needs at least one sequence');
  const B = sequences.length;
  const longest = Math.max(...sequences.map((s) => s.length));
  if (longest === 0) throw new StreamlineError('E_BATCH', 'every sequence in the batch is empty');
  const T = Math.ceil(longest / ROW_ALIGN) * ROW_ALIGN;
  const ids = new Int32Array(B * T).fill(padId);
  const mask = new Uint8Array(B * T);
  const positions = new Int32Array(B * T);
  sequences.forEach((s, b) => {
    ids.set(s, b * T);
    mask.fill(1, b * T, b * T + s.length);
    for (let t = 0; t < T; t++) positions[b * T + t] = t;
  });
  return { B, T, ids, mask, positions, lengths: sequences.map((s) => s.length) };
}

/** Hidden states of a batch: data [B*T*D] f32, the residual stream entering some layer. */
export interface HiddenBatch {
  B: number;
  T: number;
  D: number;
  data: Float32Array;
  mask: Uint8Array;
  positions: Int32Array;
  lengths: number[];
}
