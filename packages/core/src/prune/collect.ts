/**
 * Training pairs for a replacement of the window [start, end): each batch of blocks runs layers [0, start) to give
 * x = h[start], then [start, end) to give y = h[end]; pairs go into a PairCache (memory or disk), block by block in
 * order. A cache without targets (the `lm` loss) gets x only and the window is not run. On `cuda` the layers run on
 * the GPU and only x and y come back to the host.
 *
 * `batchSize` blocks share one forward: the model's weights are read (on cuda: streamed to the GPU) once per batch
 * instead of once per block. Blocks are independent rows, so on the CPU the pairs do not depend on it (bitwise); on
 * cuda they may differ by GEMM rounding, as scoring's do.
 */
import type { Device } from '../device.js';
import { StreamlineError } from '../errors.js';
import { makeTokenBatch } from '../engine/batch.js';
import { CudaEngine } from '../engine/cuda.js';
import type { ModelDescription } from '../engine/description.js';
import { embed, runLayers } from '../engine/forward.js';
import type { PairCache } from '../train/pair-cache.js';

export interface CollectOptions {
  /** Blocks done of total, after each batch. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  device?: Device;
  /** Blocks per forward batch (default 1). */
  batchSize?: number;
}

export async function collectPairs(desc: ModelDescription, start: number, end: number, blocks: readonly Int32Array[],
                                   cache: PairCache, opts: CollectOptions = {}): Promise<void> {
  const per = opts.batchSize ?? 1;
  if (!Number.isInteger(per) || per < 1) throw new StreamlineError('E_INVALID_OPTION', `batch size must be a positive integer, got ${per}`);
  const gpu = opts.device === 'cuda' ? new CudaEngine(desc) : null;
  const D = desc.semantics.hidden;
  try {
    for (let b0 = 0; b0 < blocks.length; b0 += per) {
      const batch = makeTokenBatch(blocks.slice(b0, b0 + per));
      let h = await embed(desc, batch);
      if (gpu) {
        // a short last batch runs padded in the open context (reuse), so the context is built once
        await gpu.load(h, { reuse: true });
        await gpu.run(0, start, { signal: opts.signal });
        h = await gpu.download();
      } else {
        h = await runLayers(desc, h, 0, start, { signal: opts.signal });
      }
      const x = h.data;
      let y: Float32Array | null = null;
      if (cache.hasTargets) {
        if (gpu) {
          await gpu.run(start, end, { signal: opts.signal });
          y = (await gpu.download()).data;
        } else {
          y = (await runLayers(desc, h, start, end, { signal: opts.signal })).data;
        }
      }
      // Sequence i's rows start at i·T; rows beyond its length are alignment padding (batch.ts ROW_ALIGN).
      for (let i = 0; i < batch.B; i++) {
        const from = i * batch.T * D, to = from + batch.lengths[i]! * D;
        cache.add(x.subarray(from, to), y ? y.subarray(from, to) : x.subarray(0, 0));
      }
      opts.onProgress?.(Math.min(b0 + per, blocks.length), blocks.length);
    }
  } finally {
    gpu?.close();
  }
}
