/**
 * The forward pass on the CUDA backend, with the CPU engine's inputs and results: embeddings are computed on the
 * CPU (one gather), the batch's hidden state then stays on the GPU while the layers stream through two weight
 * slots: layer k+1 is staged from the memory-mapped checkpoint while layer k computes (cuda/streamline_cuda.h).
 * Boundary states for scoring stay on the GPU; only what a caller asks for (a boundary state, log-probabilities,
 * cosine sums) comes back. `mlp` replacement blocks (in-memory pruned models) run in a second context built for
 * that block, the hidden state moving through host memory around them.
 *
 * A context holds one batch shape, and the LM head is uploaded into it. Callers whose batches shrink (tokenLogprobs:
 * longest first, the last batch short) load with `reuse`: a batch that fits in the open context runs in it, padded
 * with masked tokens, so the context and its head stay. Padding rows are fully masked (a query with no visible key
 * gets zeros, on both backends) and rows are independent, so a real token's result does not depend on it.
 */
import { fromNative, StreamlineError } from '../errors.js';
import { native, type NativeCudaContext, type NativeHeadSpec, type NativeHeadWeights, type NativeLayerWeights } from '../native.js';
import type { HiddenBatch } from './batch.js';
import { layerRope, type ModelDescription } from './description.js';
import { ropeFrequencies, type RopeParams } from './rope.js';
import { maskingWindow, nativeLayerSpec } from './spec.js';

export interface CudaLoadOptions {
  /**
   * Run the batch inside the open context when it fits (no more rows, no longer rows, at least half the context's
   * tokens, so padding at most doubles the work), keeping the context and the uploaded LM head. Default false: the
   * context follows the batch shape exactly.
   */
  reuse?: boolean;
}

export interface CudaRunOptions {
  /** After layer k-1 ran (h[k] is the context's hidden state, k in (start, end]); awaited before continuing. */
  onBoundary?: (k: number) => void | Promise<void>;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

async function call<T>(what: string, p: () => Promise<T> | T): Promise<T> {
  try {
    return await p();
  } catch (e) {
    throw fromNative(e, `CUDA ${what}`);
  }
}

/**
 * Why the CUDA backend cannot run this model's forward, in words, or null when it can. Today: a backend library built
 * before a layer feature it needs existed: Gemma's post-sublayer norms (post_attn_norm / post_mlp_norm; no
 * streamline_cuda_upload_layer_post_norm) or Qwen3's per-head q/k RMSNorm (q_norm / k_norm; no
 * streamline_cuda_upload_layer_qk_norm). Running there would drop them. Null when no library is loaded: the
 * machine's missing piece (device.ts cudaMissingPiece) is then the reason. Training decides on its own (trainer.ts).
 */
export function cudaUnsupported(desc: Pick<ModelDescription, 'semantics' | 'modelType'>): string | null {
  if (desc.semantics.postNorms) {
    const c = native().cudaInfo();
    if (c.loaded && !c.postNorm)
      return `the CUDA backend library lacks streamline_cuda_upload_layer_post_norm for the post-sublayer norms (post_attn_norm/post_mlp_norm) of ${desc.modelType} (built before post norms on the GPU; rebuild it)`;
  }
  if (desc.semantics.qkNorm) {
    const c = native().cudaInfo();
    if (c.loaded && !c.qkNorm)
      return `the CUDA backend library lacks streamline_cuda_upload_layer_qk_norm for the per-head q/k norm (q_norm/k_norm) of ${desc.modelType} (built before q/k norms on the GPU; rebuild it)`;
  }
  return null;
}

/** A model description bound to the GPU for batches of one shape at a time; close() frees the device memory. */
export class CudaEngine {
  private ctx: NativeCudaContext | null = null;
  private mlpCtx: NativeCudaContext | null = null;
  /** The open contexts' batch shape (0 × 0: none). */
  private cap = { B: 0, T: 0 };
  private headLoaded = false;
  /** The batch as the caller loaded it, and as it runs on the GPU (padded to `cap`, or the same object). */
  private batch: HiddenBatch | null = null;
  private gpuBatch: HiddenBatch | null = null;
  /** The RoPE whose tables the main context holds (layers may carry their own: LayerSource.rope). */
  private ctxRope: RopeParams | null = null;

  /** @throws StreamlineError E_UNSUPPORTED when cudaUnsupported(desc) names a reason (callers resolve the device first). */
  constructor(private readonly desc: ModelDescription) {
    const why = cudaUnsupported(desc);
    if (why !== null) throw new StreamlineError('E_UNSUPPORTED', `CUDA engine: ${why}`);
  }

  /** Puts h (h[start] of some layer range, usually the embeddings) on the GPU; see CudaLoadOptions for the shape. */
  async load(h: HiddenBatch, opts: CudaLoadOptions = {}): Promise<void> {
    const { B, T } = this.cap;
    const same = h.B === B && h.T === T;
    const fits = opts.reuse === true && h.B <= B && h.T <= T && 2 * h.B * h.T >= B * T;
    if (!same && !fits) {
      this.close();
      this.ctx = await this.open(h, false);
      this.cap = { B: h.B, T: h.T };
    }
    const g = padBatch(h, this.cap.B, this.cap.T);
    this.batch = h;
    this.gpuBatch = g;
    this.setInputs(this.ctx!, g, this.desc.rope);
    this.ctxRope = this.desc.rope;
    await call('upload_hidden', () => this.ctx!.uploadHidden(g.data));
  }

  private async open(h: HiddenBatch, mlpOnly: boolean): Promise<NativeCudaContext> {
    const d = this.desc;
    const spec = { ...nativeLayerSpec(d.semantics, h.B, h.T, d.rope !== null, 1), rotDim: d.rope ? d.rope.dim : 0, mlpOnly };
    return call('create', () => native().cudaContext(spec));
  }

  private setInputs(ctx: NativeCudaContext, h: HiddenBatch, params: RopeParams | null) {
    // As on the CPU: dynamic RoPE follows the longest real row of the batch.
    const rope = params ? ropeFrequencies(params, Math.max(...h.lengths)) : null;
    try {
      ctx.setInputs(h.positions, h.mask, rope?.invFreq ?? null, rope?.attentionScaling ?? 1);
    } catch (e) {
      throw fromNative(e, 'CUDA set_inputs');
    }
  }

  private get c(): NativeCudaContext {
    if (!this.ctx || !this.batch) throw new StreamlineError('E_CUDA', 'CUDA engine: load a batch first');
    return this.ctx;
  }

  /** Runs layers [start, end) on the loaded state (which must be h[start]). */
  async run(start: number, end: number, opts: CudaRunOptions = {}): Promise<void> {
    const layers = this.desc.layers;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > layers.length || start > end)
      throw new StreamlineError('E_RANGE', `layer range [${start}, ${end}) is not within [0, ${layers.length}]`);
    const ctx = this.c;
    // Double buffering: one decoder layer is staged ahead of the one computing; slots alternate.
    const slotOf = new Map<number, 0 | 1>();
    let nextSlot: 0 | 1 = 0;
    let ahead = start;
    const stageNext = async () => {
      while (ahead < end && layers[ahead]!.kind !== 'decoder') ahead++;
      if (ahead >= end) return;
      const k = ahead++;
      slotOf.set(k, nextSlot);
      const slot = nextSlot;
      nextSlot = nextSlot === 0 ? 1 : 0;
      await call(`upload_layer (${layers[k]!.label})`, () => ctx.uploadLayer(slot, layers[k]!.weights() as NativeLayerWeights));
    };
    await stageNext();
    for (let k = start; k < end; k++) {
      if (opts.signal?.aborted) throw new StreamlineError('E_ABORTED', 'forward pass aborted');
      const layer = layers[k]!;
      if (layer.kind === 'decoder') {
        // A layer with its own RoPE (Gemma 3's sliding layers) gets its tables rebuilt in place: set_inputs waits for
        // the queued layer, leaves the hidden state alone and costs one small kernel, so only when the rope changes.
        const rope = layerRope(this.desc, layer);
        if (rope !== this.ctxRope) {
          this.setInputs(ctx, this.gpuBatch!, rope);
          this.ctxRope = rope;
        }
        const window = maskingWindow(layer.window, this.cap.T);
        await call(`run_layer (${layer.label})`, () => ctx.runLayer(slotOf.get(k)!, window));
        await stageNext();
      } else {
        await this.runMlpBlock(k);
      }
      if (opts.onBoundary) await opts.onBoundary(k + 1);
      opts.onProgress?.(k + 1 - start, end - start);
    }
  }

  private async runMlpBlock(k: number): Promise<void> {
    const h = this.gpuBatch!;
    this.mlpCtx ??= await this.open(h, true);
    const buf = new Float32Array(h.data.length);
    const layer = this.desc.layers[k]!;
    await call('download_hidden', () => this.ctx!.downloadHidden(buf));
    this.setInputs(this.mlpCtx, h, this.desc.rope);
    await call('upload_hidden', () => this.mlpCtx!.uploadHidden(buf));
    await call(`upload_layer (${layer.label})`, () => this.mlpCtx!.uploadLayer(0, layer.weights() as NativeLayerWeights));
    await call(`run_layer (${layer.label})`, () => this.mlpCtx!.runLayer(0));
    await call('download_hidden', () => this.mlpCtx!.downloadHidden(buf));
    await call('upload_hidden', () => this.ctx!.uploadHidden(buf));
  }

  /** Keeps the current hidden state on the GPU under `index` (for cosine). */
  saveState(index: number): void {
    try {
      this.c.saveState(index);
    } catch (e) {
      throw fromNative(e, 'CUDA save_state');
    }
  }

  /** [sum, count, zeros] of cos(state i, state j) over the batch's real tokens. */
  cosine(i: number, j: number): Promise<[number, number, number]> {
    return call('cosine_states', () => this.c.cosineStates(i, j));
  }

  /** The current hidden state as a host batch (the loaded batch's shape). */
  async download(): Promise<HiddenBatch> {
    const ctx = this.c;
    const h = this.batch!, g = this.gpuBatch!;
    const data = new Float32Array(g.data.length);
    await call('download_hidden', () => ctx.downloadHidden(data));
    return { ...h, data: unpad(data, g, h, h.D) };
  }

  /**
   * log p(targets[m]) for the current state (h[L]) through the model's head; 0 where targets[m] < 0. targets and the
   * result are in the loaded batch's shape [B*T].
   */
  async logprobs(targets: Int32Array): Promise<Float32Array> {
    const ctx = this.c;
    const h = this.batch!, g = this.gpuBatch!;
    if (targets.length !== h.B * h.T)
      throw new StreamlineError('E_SHAPE', `CUDA logprobs: ${targets.length} targets for a batch of ${h.B} × ${h.T} tokens`);
    if (!this.headLoaded) {
      const d = this.desc;
      const g = d.global();
      const lm = g['lm_head.weight'] ?? g['embed.weight'];
      if (!lm) throw new StreamlineError('E_MODEL_TENSORS', 'the model has no LM head');
      const weights: NativeHeadWeights = { 'lm_head.weight': lm };
      for (const r of ['final_norm.weight', 'final_norm.bias', 'project_out.weight'] as const) if (g[r]) weights[r] = g[r];
      const s = d.semantics;
      const spec: NativeHeadSpec = { hidden: s.hidden, vocab: d.vocab, norm: d.finalNorm ? s.norm : 'none', normEps: s.normEps, ...(d.projDim ? { projDim: d.projDim } : {}) };
      await call('upload_head', () => ctx.uploadHead(spec, weights));
      this.headLoaded = true;
    }
    const padded = g === h ? targets : new Int32Array(g.B * g.T).fill(-1);
    if (padded !== targets) for (let b = 0; b < h.B; b++) padded.set(targets.subarray(b * h.T, (b + 1) * h.T), b * g.T);
    const out = new Float32Array(padded.length);
    await call('head_logprobs', () => ctx.headLogprobs(padded, out));
    return unpad(out, g, h, 1);
  }

  /** Frees the device memory (the engine can load another batch afterwards). */
  close(): void {
    this.ctx?.destroy();
    this.mlpCtx?.destroy();
    this.ctx = this.mlpCtx = null;
    this.cap = { B: 0, T: 0 };
    this.headLoaded = false;
    this.batch = this.gpuBatch = null;
    this.ctxRope = null;
  }
}

/**
 * h in a B × T batch (B >= h.B, T >= h.T): its rows at the same places, the rest masked. Padding positions continue
 * each row's (padding rows count from 0), so RoPE tables stay within the range a batch of T tokens has anyway.
 */
function padBatch(h: HiddenBatch, B: number, T: number): HiddenBatch {
  if (h.B === B && h.T === T) return h;
  const D = h.D;
  const data = new Float32Array(B * T * D), mask = new Uint8Array(B * T), positions = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    if (b < h.B) {
      data.set(h.data.subarray(b * h.T * D, (b + 1) * h.T * D), b * T * D);
      mask.set(h.mask.subarray(b * h.T, (b + 1) * h.T), b * T);
      positions.set(h.positions.subarray(b * h.T, (b + 1) * h.T), b * T);
    }
    const first = b < h.B ? h.T : 0, last = b < h.B && h.T > 0 ? h.positions[b * h.T + h.T - 1]! : -1;
    for (let t = first; t < T; t++) positions[b * T + t] = last + 1 + (t - first);
  }
  return { B, T, D, data, mask, positions, lengths: [...h.lengths, ...new Array<number>(B - h.B).fill(0)] };
}

/** The rows of the batch h out of x, which holds `width` values per token of its padded form g. */
function unpad(x: Float32Array, g: HiddenBatch, h: HiddenBatch, width: number): Float32Array {
  if (g === h) return x;
  const out = new Float32Array(h.B * h.T * width);
  for (let b = 0; b < h.B; b++) out.set(x.subarray(b * g.T * width, (b * g.T + h.T) * width), b * h.T * width);
  return out;
}
