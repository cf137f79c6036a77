/**
 * Layer-window scoring (LLM-Streamline step 2). One forward pass over the calibration blocks gives the mean
 * cosine between every requested pair of boundaries h[i], h[j]; from it come the window scores
 * cos(h[s], h[s+n]), the angular distance arccos(cos)/π (Gromov et al., applied to the mean cosine) and
 * ShortGPT's Block Influence 1 − cos(h[k], h[k+1]). Boundary states are dropped as soon as no requested pair
 * needs them, so memory is bounded by the states the pairs need for one batch.
 */
import { gpuMemory, resolveDevice, type Device, type DeviceOptions } from '../device.js';
import { StreamlineError } from '../errors.js';
import { native } from '../native.js';
import { makeTokenBatch, type HiddenBatch } from '../engine/batch.js';
import type { ModelDescription } from '../engine/description.js';
import { CudaEngine, cudaUnsupported } from '../engine/cuda.js';
import { embed, runLayers } from '../engine/forward.js';

export type ScoreMetric = 'cosine' | 'angular' | 'bi';

export interface WindowScore {
  /** First removed layer (0-based). */
  start: number;
  /** One past the last removed layer: the window is [start, end). */
  end: number;
  /** Metric value: cosine (higher is better), angular distance or summed Block Influence (lower is better). */
  score: number;
}

export interface ScoreOptions extends DeviceOptions {
  /** Calibration blocks (token ids, usually all of one length). */
  blocks: readonly Int32Array[];
  /** Window length to rank; required unless only the matrix is wanted. */
  n?: number;
  metric?: ScoreMetric;
  /** Compute the full (L+1)×(L+1) matrix (all pairs); otherwise only the pairs the windows and BI need. Default true. */
  matrix?: boolean;
  /** Blocks per forward batch (results do not depend on it on the CPU; on CUDA within GEMM rounding). Default 1. */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface ScoreResult {
  layers: number;
  samples: number;
  tokens: number;
  metric: ScoreMetric;
  /** Mean cosine between h[i] and h[j] (L+1 rows of L+1; NaN where a pair was not computed). */
  matrix: number[][];
  /** Block Influence per layer: 1 − cos(h[k], h[k+1]). */
  blockInfluence: number[];
  /** Tokens whose hidden state had zero norm in some pair (their cosine counts as 0). */
  zeroNormTokens: number;
  n: number | null;
  windows: WindowScore[];
  best: WindowScore | null;
  /** Where the forward passes ran. */
  device: Device;
  /** Peak device memory of the CUDA backend during scoring (bytes); null on the CPU. */
  gpuPeakBytes: number | null;
}

/** Which pairs (i < j) the request needs. */
function requestedPairs(L: number, n: number | undefined, full: boolean): Array<[number, number]> {
  const set = new Set<string>();
  const pairs: Array<[number, number]> = [];
  const add = (i: number, j: number) => { const k = `${i},${j}`; if (!set.has(k)) { set.add(k); pairs.push([i, j]); } };
  if (full) for (let i = 0; i <= L; i++) for (let j = i + 1; j <= L; j++) add(i, j);
  for (let k = 0; k < L; k++) add(k, k + 1);
  if (n !== undefined) for (let s = 0; s + n <= L; s++) if (n > 0) add(s, s + n);
  return pairs;
}

/**
 * Scores layer windows over calibration blocks. On CUDA (`device`, see resolveDevice) the boundary states stay on
 * the GPU and each requested pair's cosine sum comes back per batch; the result has the same shape.
 * @throws StreamlineError E_INVALID_OPTION for an invalid n, metric, batch size or device; E_DATA_TOO_SMALL without
 * blocks; E_CUDA when the GPU fails.
 * @example
 * const r = await scoreLayers(model, { blocks, n: 4 }); console.log(r.best); // { start: 9, end: 13, score: 0.93 }
 */
export async function scoreLayers(desc: ModelDescription, opts: ScoreOptions): Promise<ScoreResult> {
  const L = desc.layers.length;
  const metric = opts.metric ?? 'cosine';
  if (!['cosine', 'angular', 'bi'].includes(metric)) throw new StreamlineError('E_INVALID_OPTION', `--metric must be cosine, angular or bi, got '${metric}'`);
  const n = opts.n;
  if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > L))
    throw new StreamlineError('E_INVALID_OPTION', `n must be an integer in [1, ${L}], got ${n}`);
  const batchSize = opts.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new StreamlineError('E_INVALID_OPTION', `batch size must be a positive integer, got ${batchSize}`);
  if (opts.blocks.length === 0) throw new StreamlineError('E_DATA_TOO_SMALL', 'scoring needs at least one calibration block');

  const pairs = requestedPairs(L, n, opts.matrix ?? true);
  // lastUse[i]: the largest j that pairs with i; a state is freed once the pass reaches it.
  const lastUse = new Array<number>(L + 1).fill(-1);
  for (const [i, j] of pairs) lastUse[i] = Math.max(lastUse[i]!, j);
  const byJ = new Map<number, number[]>();
  pairs.forEach(([, j], p) => byJ.set(j, [...(byJ.get(j) ?? []), p]));
  const acc = new Float64Array(pairs.length * 3);
  const nat = native();
  const D = desc.semantics.hidden;
  let tokens = 0;
  const batches = Math.ceil(opts.blocks.length / batchSize);
  const device = resolveDevice(opts.device, opts.onLog, cudaUnsupported(desc)).device;
  let done = 0;
  let gpuPeakBytes: number | null = null;
  if (device === 'cuda') gpuPeakBytes = await scoreOnGpu();
  else await scoreOnCpu();

  // Boundary states are host arrays; each is dropped once the pass is past every pair that needs it.
  async function scoreOnCpu(): Promise<void> {
    for (let bi = 0; bi < opts.blocks.length; bi += batchSize) {
      const batch = makeTokenBatch(opts.blocks.slice(bi, bi + batchSize));
      tokens += batch.lengths.reduce((a, b) => a + b, 0);
      const held = new Map<number, HiddenBatch>();
      const consume = async (k: number, h: HiddenBatch) => {
        if (lastUse[k]! > k) held.set(k, h);
        const ps = byJ.get(k) ?? [];
        if (ps.length) {
          const states: Float32Array[] = [];
          const idx = new Int32Array(ps.length * 2);
          const slot = new Map<number, number>();
          const slotOf = (s: number, data: Float32Array) => {
            if (!slot.has(s)) { slot.set(s, states.length); states.push(data); }
            return slot.get(s)!;
          };
          ps.forEach((p, q) => {
            const [i] = pairs[p]!;
            idx[2 * q] = slotOf(i, held.get(i)!.data);
            idx[2 * q + 1] = slotOf(k, h.data);
          });
          const out = new Float64Array(ps.length * 3);
          await nat.cosinePairsAccumulate(out, states, idx, h.mask, h.B * h.T, D);
          ps.forEach((p, q) => { for (let c = 0; c < 3; c++) acc[3 * p + c]! += out[3 * q + c]!; });
        }
        for (const [i] of held) if (lastUse[i]! <= k) held.delete(i);
      };
      const h0 = await embed(desc, batch);
      await consume(0, h0);
      await runLayers(desc, h0, 0, L, {
        signal: opts.signal,
        onBoundary: consume,
        onProgress: (d, t) => opts.onProgress?.(done * L + d, batches * L),
      });
      done++;
    }
  }

  // Every boundary a pair needs is kept on the GPU for the batch (save_state); the cosines are taken after the
  // last layer, so no host round trip interrupts the layer stream.
  async function scoreOnGpu(): Promise<number> {
    gpuMemory(true);
    const gpu = new CudaEngine(desc);
    try {
      for (let bi = 0; bi < opts.blocks.length; bi += batchSize) {
        const batch = makeTokenBatch(opts.blocks.slice(bi, bi + batchSize));
        tokens += batch.lengths.reduce((a, b) => a + b, 0);
        await gpu.load(await embed(desc, batch));
        if (lastUse[0]! > 0) gpu.saveState(0);
        await gpu.run(0, L, {
          signal: opts.signal,
          onBoundary: (k) => { if (lastUse[k]! > k || byJ.has(k)) gpu.saveState(k); },
          onProgress: (d) => opts.onProgress?.(done * L + d, batches * L),
        });
        for (const [p, [i, j]] of pairs.entries()) {
          const r = await gpu.cosine(i, j);
          for (let c = 0; c < 3; c++) acc[3 * p + c]! += r[c]!;
        }
        done++;
      }
    } finally {
      gpu.close();
    }
    return gpuMemory()?.peak ?? 0;
  }

  const matrix: number[][] = Array.from({ length: L + 1 }, (_, i) => Array.from({ length: L + 1 }, (_, j) => (i === j ? 1 : NaN)));
  let zeroNormTokens = 0;
  pairs.forEach(([i, j], p) => {
    const mean = acc[3 * p]! / acc[3 * p + 1]!;
    matrix[i]![j] = mean;
    matrix[j]![i] = mean;
    zeroNormTokens = Math.max(zeroNormTokens, acc[3 * p + 2]!);
  });
  const blockInfluence = Array.from({ length: L }, (_, k) => 1 - matrix[k]![k + 1]!);
  const windows: WindowScore[] = [];
  let best: WindowScore | null = null;
  if (n !== undefined) {
    for (let s = 0; s + n <= L; s++) {
      const cos = matrix[s]![s + n]!;
      const score = metric === 'cosine' ? cos
        : metric === 'angular' ? Math.acos(Math.min(1, Math.max(-1, cos))) / Math.PI
        : blockInfluence.slice(s, s + n).reduce((a, b) => a + b, 0);
      windows.push({ start: s, end: s + n, score });
    }
    const better = (a: WindowScore, b: WindowScore) => (metric === 'cosine' ? a.score > b.score : a.score < b.score);
    for (const w of windows) {
      if (!Number.isFinite(w.score)) throw new StreamlineError('E_NUMERIC', `window [${w.start}, ${w.end}) scored ${w.score}: the hidden states contain NaN or Inf`);
      if (!best || better(w, best)) best = w;
    }
  }

  return { layers: L, samples: opts.blocks.length, tokens, metric, matrix, blockInfluence, zeroNormTokens, n: n ?? null, windows, best, device, gpuPeakBytes };
}
