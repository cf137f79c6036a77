/**
 * The forward pass on the CUDA backend, with the CPU engine's inputs and results: embeddings are computed on the
 * CPU (one gather), the batch's hidden state then stays on the GPU while the layers stream through two weight
 * slots: layer k+1 is staged from the memory-mapped checkpoint while layer k computes (cuda/streamline_cuda.h).
 * Boundary states for scoring stay on the GPU; only what a caller asks for (a boundary state, log-probabilities,
 * cosine sums) comes back. `mlp` replacement blocks (in-memory pruned models) run in a second context built for
 * that block, the hidden state moving through host memory around them.
 */
import { fromNative, StreamlineError } from '../errors.js';
import { native, type NativeCudaContext, type NativeHeadSpec, type NativeHeadWeights, type NativeLayerWeights } from '../native.js';
import type { HiddenBatch } from './batch.js';
import type { ModelDescription } from './description.js';
import { ropeFrequencies } from './rope.js';
import { nativeLayerSpec } from './spec.js';

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

/** A model description bound to the GPU for batches of one shape at a time; close() frees the device memory. */
export class CudaEngine {
  private ctx: NativeCudaContext | null = null;
  private mlpCtx: NativeCudaContext | null = null;
  private shape = '';
  private headLoaded = false;
  private batch: HiddenBatch | null = null;

  constructor(private readonly desc: ModelDescription) {}

  /** Puts h (h[start] of some layer range, usually the embeddings) on the GPU; contexts follow the batch shape. */
  async load(h: HiddenBatch): Promise<void> {
    const key = `${h.B}x${h.T}`;
    if (key !== this.shape) {
      this.close();
      this.ctx = await this.open(h, false);
      this.shape = key;
    }
    this.batch = h;
    this.setInputs(this.ctx!, h);
    await call('upload_hidden', () => this.ctx!.uploadHidden(h.data));
  }

  private async open(h: HiddenBatch, mlpOnly: boolean): Promise<NativeCudaContext> {
    const d = this.desc;
    const spec = { ...nativeLayerSpec(d.semantics, h.B, h.T, d.rope !== null, 1), rotDim: d.rope ? d.rope.dim : 0, mlpOnly };
    return call('create', () => native().cudaContext(spec));
  }

  private setInputs(ctx: NativeCudaContext, h: HiddenBatch) {
    // As on the CPU: dynamic RoPE follows the longest real row of the batch.
    const rope = this.desc.rope ? ropeFrequencies(this.desc.rope, Math.max(...h.lengths)) : null;
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
        await call(`run_layer (${layer.label})`, () => ctx.runLayer(slotOf.get(k)!));
        await stageNext();
      } else {
        await this.runMlpBlock(k);
      }
      if (opts.onBoundary) await opts.onBoundary(k + 1);
      opts.onProgress?.(k + 1 - start, end - start);
    }
  }

  private async runMlpBlock(k: number): Promise<void> {
    const h = this.batch!;
    this.mlpCtx ??= await this.open(h, true);
    const buf = new Float32Array(h.data.length);
    const layer = this.desc.layers[k]!;
    await call('download_hidden', () => this.ctx!.downloadHidden(buf));
    this.setInputs(this.mlpCtx, h);
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

  /** The current hidden state as a host batch. */
  async download(): Promise<HiddenBatch> {
    const h = this.batch!;
    const data = new Float32Array(h.data.length);
    await call('download_hidden', () => this.c.downloadHidden(data));
    return { ...h, data };
  }

  /** log p(targets[m]) for the current state (h[L]) through the model's head; 0 where targets[m] < 0. */
  async logprobs(targets: Int32Array): Promise<Float32Array> {
    const ctx = this.c;
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
    const out = new Float32Array(targets.length);
    await call('head_logprobs', () => ctx.headLogprobs(targets, out));
    return out;
  }

  /** Frees the device memory (the engine can load another batch afterwards). */
  close(): void {
    this.ctx?.destroy();
    this.mlpCtx?.destroy();
    this.ctx = this.mlpCtx = null;
    this.shape = '';
    this.headLoaded = false;
  }
}
