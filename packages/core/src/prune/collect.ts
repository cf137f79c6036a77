/**
 * Training pairs for a replacement of the window [start, end): each block runs layers [0, start) to give
 * x = h[start], then [start, end) to give y = h[end]; pairs go into a PairCache (memory or disk). A cache without
 * targets (the `lm` loss) gets x only and the window is not run. On `cuda` the layers run on the GPU and only x
 * and y come back to the host.
 */
import type { Device } from '../device.js';
import { makeTokenBatch } from '../engine/batch.js';
import { CudaEngine } from '../engine/cuda.js';
import type { ModelDescription } from '../engine/description.js';
import { embed, runLayers } from '../engine/forward.js';
import type { PairCache } from '../train/pair-cache.js';

export async function collectPairs(desc: ModelDescription, start: number, end: number, blocks: readonly Int32Array[],
                                   cache: PairCache, opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal; device?: Device } = {}): Promise<void> {
  const gpu = opts.device === 'cuda' ? new CudaEngine(desc) : null;
  try {
    for (let b = 0; b < blocks.length; b++) {
      const batch = makeTokenBatch([blocks[b]!]);
      let h = await embed(desc, batch);
      if (gpu) {
        await gpu.load(h);
        await gpu.run(0, start, { signal: opts.signal });
        h = await gpu.download();
      } else {
        h = await runLayers(desc, h, 0, start, { signal: opts.signal });
      }
      // Rows beyond the block are alignment padding (batch.ts ROW_ALIGN).
      const rows = batch.lengths[0]! * desc.semantics.hidden;
      const x = h.data.subarray(0, rows);
      if (!cache.hasTargets) {
        cache.add(x, x.subarray(0, 0));
      } else {
        if (gpu) {
          await gpu.run(start, end, { signal: opts.signal });
          h = await gpu.download();
        } else {
          h = await runLayers(desc, h, start, end, { signal: opts.signal });
        }
        cache.add(x, h.data.subarray(0, rows));
      }
      opts.onProgress?.(b + 1, blocks.length);
    }
  } finally {
    gpu?.close();
  }
}
