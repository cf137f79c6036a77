/**
 * Layer-streaming forward pass. A batch goes through the model one layer at a time; each layer's weights are
 * read in place from the memory-mapped checkpoint by the native kernels (bf16/f16 widened panel by panel), so
 * peak memory is the activations plus one layer's working set, whatever the number of layers.
 * Every call runs off the JavaScript thread; progress is reported per layer.
 */
import { resolveDevice, type DeviceOptions } from '../device.js';
import { fromNative, StreamlineError } from '../errors.js';
import { native } from '../native.js';
import { makeTokenBatch, type HiddenBatch, type TokenBatch } from './batch.js';
import { CudaEngine, cudaUnsupported } from './cuda.js';
import { layerRope, type LayerSource, type ModelDescription } from './description.js';
import { ropeFrequencies } from './rope.js';
import { nativeLayerSpec } from './spec.js';

export interface RunLayersOptions {
  /** Called with h[k] for every boundary k in (start, end]; h[start] is the input. Awaited before continuing. */
  onBoundary?: (k: number, h: HiddenBatch) => void | Promise<void>;
  /** Called after each layer with (layers done, layers total). */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** h[0]: token embeddings (plus OPT's learned positions and project_in). */
export async function embed(desc: ModelDescription, batch: TokenBatch): Promise<HiddenBatch> {
  const n = native();
  const g = desc.global();
  const D = desc.semantics.hidden;
  const M = batch.B * batch.T;
  const table = g['embed.weight'];
  if (!table) throw new StreamlineError('E_MODEL_TENSORS', 'the model has no input embedding');
  const embDim = table.shape[1]!;
  let h = new Float32Array(M * embDim);
  try {
    // Padding ids are never looked at by real tokens; keep them in range.
    n.embeddingForward(h, batch.ids, table);
    if (g['project_in.weight']) {
      const p = new Float32Array(M * D);
      n.linearForward(p, h, g['project_in.weight'], null, M, D, embDim);
      h = p;
    }
    if (desc.learnedPositionOffset !== null) {
      const pos = g['pos_embed.weight'];
      if (!pos) throw new StreamlineError('E_MODEL_TENSORS', 'the model has no position embedding');
      // HF OPT: position = cumsum(mask) * mask - 1, then + offset; with right padding real tokens get 0..len-1.
      const ids = new Int32Array(M);
      for (let b = 0; b < batch.B; b++) {
        let c = 0;
        for (let t = 0; t < batch.T; t++) {
          const i = b * batch.T + t;
          c += batch.mask[i]!;
          ids[i] = c * batch.mask[i]! - 1 + desc.learnedPositionOffset;
        }
      }
      const pe = new Float32Array(M * D);
      n.embeddingForward(pe, ids, pos);
      for (let i = 0; i < pe.length; i++) h[i]! += pe[i]!;
    }
  } catch (e) {
    throw fromNative(e, 'embedding');
  }
  return { B: batch.B, T: batch.T, D, data: h, mask: batch.mask, positions: batch.positions, lengths: batch.lengths };
}

/** Intermediate outputs of a decoder layer, for the `linear` replacement: h_out = attnResidual + mlpOut (pre-norm). */
export interface LayerCaptures {
  /** x + attention(x): the residual stream after the attention block [B*T*D] (its output post-normed when the layer has post_attn_norm). */
  attnResidual: Float32Array;
  /** What the MLP block adds to the residual [B*T*D]: its output, post-normed when the layer has post_mlp_norm. */
  mlpOut: Float32Array;
}

/** Runs one layer source on h (returns a new batch; h is not modified). */
export async function runLayer(desc: ModelDescription, layer: LayerSource, h: HiddenBatch, captures?: LayerCaptures): Promise<HiddenBatch> {
  const n = native();
  const out = new Float32Array(h.data.length);
  // Dynamic RoPE depends on the sequence length: HF uses the padded length of its batch, which with right padding
  // is the longest real row (our rows are padded further, for batch invariance of the GEMMs).
  const longest = Math.max(...h.lengths);
  const rope = layerRope(desc, layer);
  const { invFreq, attentionScaling } = rope ? ropeFrequencies(rope, longest) : { invFreq: null, attentionScaling: 1 };
  const spec = nativeLayerSpec(desc.semantics, h.B, h.T, rope !== null, attentionScaling, layer.window);
  try {
    if (layer.kind === 'mlp') await n.mlpBlockForward(out, h.data, spec, layer.weights());
    else await n.decoderLayerForward(out, h.data, spec, layer.weights(), h.positions, h.mask, invFreq, captures ?? null);
  } catch (e) {
    throw fromNative(e, layer.label);
  }
  return { ...h, data: out };
}

/** Runs layers [start, end) of the description on h, which must be h[start]. Returns h[end]. */
export async function runLayers(desc: ModelDescription, h: HiddenBatch, start: number, end: number,
                                opts: RunLayersOptions = {}): Promise<HiddenBatch> {
  const L = desc.layers.length;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > L || start > end)
    throw new StreamlineError('E_RANGE', `layer range [${start}, ${end}) is not within [0, ${L}]`);
  let cur = h;
  for (let k = start; k < end; k++) {
    if (opts.signal?.aborted) throw new StreamlineError('E_ABORTED', 'forward pass aborted');
    cur = await runLayer(desc, desc.layers[k]!, cur);
    if (opts.onBoundary) await opts.onBoundary(k + 1, cur);
    opts.onProgress?.(k + 1 - start, end - start);
  }
  return cur;
}

export interface HeadOptions {
  /** Target token per row position [B*T] (-1: none); returns log p(target). */
  targets?: Int32Array;
  /** Also return logits [B*T, V]. */
  logits?: boolean;
}

/** Final norm, (OPT project_out) and LM head on h[L]. */
export async function head(desc: ModelDescription, h: HiddenBatch, opts: HeadOptions = {}):
  Promise<{ logits?: Float32Array; logprobs?: Float32Array }> {
  const n = native();
  const g = desc.global();
  const M = h.B * h.T;
  const lm = g['lm_head.weight'] ?? g['embed.weight'];
  if (!lm) throw new StreamlineError('E_MODEL_TENSORS', 'the model has no LM head');
  const weights: Record<string, unknown> = { 'lm_head.weight': lm };
  for (const r of ['final_norm.weight', 'final_norm.bias', 'project_out.weight'] as const) if (g[r]) weights[r] = g[r];
  const logits = opts.logits ? new Float32Array(M * desc.vocab) : null;
  const logprobs = opts.targets ? new Float32Array(M) : null;
  const s = desc.semantics;
  const spec = { hidden: s.hidden, vocab: desc.vocab, norm: desc.finalNorm ? s.norm : ('none' as const), normEps: s.normEps, ...(desc.projDim ? { projDim: desc.projDim } : {}) };
  try {
    await n.headForward(h.data, M, spec, weights, opts.targets ?? null, logits, logprobs);
  } catch (e) {
    throw fromNative(e, 'LM head');
  }
  return { ...(logits ? { logits } : {}), ...(logprobs ? { logprobs } : {}) };
}

export interface LogprobOptions extends DeviceOptions {
  /** Sequences per forward batch (results do not depend on it on the CPU; on CUDA within GEMM rounding). Default 8. */
  batchSize?: number;
  /** Sequences done of total, after each batch. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * Per-token log-probabilities: result[i][t] = log p(seq[t+1] | seq[0..t]) for t in 0..len-2. The forward pass
 * runs on seq[0..len-2] (the last token is only a target), so a sequence may be maxPositionEmbeddings + 1 long.
 * Sequences are batched longest first; every result is independent of the batch it ran in. `device` picks the
 * backend (see resolveDevice); on CUDA the layers and the head run on the GPU, the embeddings on the CPU.
 * @throws StreamlineError E_INVALID_OPTION (batchSize, device), E_SEQ_LEN, E_TOKEN_RANGE, E_CUDA, E_NUMERIC (a NaN or
 *   infinite log-probability).
 */
export async function tokenLogprobs(desc: ModelDescription, sequences: readonly Int32Array[], opts: LogprobOptions = {}):
  Promise<Float32Array[]> {
  const batchSize = opts.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new StreamlineError('E_INVALID_OPTION', `batchSize must be a positive integer, got ${batchSize}`);
  for (const [i, s] of sequences.entries())
    if (s.length - 1 > desc.maxPositionEmbeddings)
      throw new StreamlineError('E_SEQ_LEN', `sequence ${i} has ${s.length} tokens; the model takes at most ${desc.maxPositionEmbeddings} positions (+1 target)`);
  const results: Float32Array[] = new Array(sequences.length);
  const scored = sequences.map((s, i) => i).filter((i) => sequences[i]!.length >= 2);
  for (const i of sequences.keys()) if (sequences[i]!.length < 2) results[i] = new Float32Array(0);
  const order = scored.sort((a, b) => sequences[b]!.length - sequences[a]!.length || a - b);
  const L = desc.layers.length;
  const gpu = resolveDevice(opts.device, opts.onLog, cudaUnsupported(desc)).device === 'cuda' ? new CudaEngine(desc) : null;
  try {
    for (let i = 0; i < order.length; i += batchSize) {
      const idx = order.slice(i, i + batchSize);
      const batch = makeTokenBatch(idx.map((j) => sequences[j]!.subarray(0, sequences[j]!.length - 1)));
      const targets = new Int32Array(batch.B * batch.T).fill(-1);
      idx.forEach((j, b) => {
        const s = sequences[j]!;
        for (let t = 0; t + 1 < s.length; t++) targets[b * batch.T + t] = s[t + 1]!;
      });
      let h = await embed(desc, batch);
      let logprobs: Float32Array;
      if (gpu) {
        // Batches come longest first: later ones usually fit the first context, which keeps its uploaded LM head.
        await gpu.load(h, { reuse: true });
        await gpu.run(0, L, { signal: opts.signal });
        logprobs = await gpu.logprobs(targets);
      } else {
        h = await runLayers(desc, h, 0, L, { signal: opts.signal });
        logprobs = (await head(desc, h, { targets })).logprobs!;
      }
      idx.forEach((j, b) => {
        const len = batch.lengths[b]!;
        results[j] = logprobs.slice(b * batch.T, b * batch.T + len);
        // A NaN here would surface as a perplexity or accuracy that JSON writes as null (or an argmax that
        // silently picks choice 0): stop with the position instead.
        const bad = results[j]!.findIndex((v) => !Number.isFinite(v));
        if (bad >= 0) {
          throw new StreamlineError('E_NUMERIC', `the log-probability of sequence ${j} at position ${bad + 1} is ${results[j]![bad]}: ` +
            'the model\'s weights hold NaN/Inf or its activations overflow');
        }
      });
      opts.onProgress?.(Math.min(order.length, i + batchSize), order.length);
    }
  } finally {
    gpu?.close();
  }
  return results;
}
