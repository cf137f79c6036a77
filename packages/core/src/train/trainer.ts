/**
 * Replacement training: the `mlp` or `layer` replacement R is trained so that R(h[s]) ≈ h[s+n] (loss `mse`, from
 * pairs in a PairCache), or (loss `lm`, issue 9) so that the frozen rest of the model after the window, run on
 * R(h[s]), predicts the block's next tokens: the mean next-token NLL flows back through the frozen layers and the
 * LM head to R (native lmLossStep; only R gets gradients). For `lm` the cache holds h[s] only and the token ids
 * of each block come alongside. AdamW with f32 master weights, warmup + cosine decay to minLr over the real number of
 * optimiser steps, gradient clipping by global norm, micro-batches with gradient accumulation, validation on
 * held-out pairs every few steps, the best weights kept. Deterministic for a seed: the order of blocks comes
 * from the seed and the epoch only, so a run resumed from a checkpoint ends with bitwise the same weights.
 *
 * On `device` 'cuda' the micro-batch steps, clipping, AdamW and the validation forward run on the GPU through the
 * CUDA backend's trainer (the parameters, gradients and moments stay there; weights come back only when a validation
 * sets a new best, and at the end); the data order, schedule, loss bookkeeping (validation: the mean over blocks of
 * each block's loss, as on the CPU), best weights and log are this file's, the same for both devices. With loss `lm`
 * the frozen layers and the head go to the GPU once (setLmTail) and each micro-batch is stepLm with the blocks'
 * next-token targets, validation evalLm; a CUDA backend built before those (streamline_cuda_train_step_lm) trains
 * `lm` on the CPU instead, with a warning. A tail whose layers rotate otherwise than the replacement (LmTail.ropes:
 * per-layer RoPE, Gemma 3's sliding and full layers) reaches the GPU with the spec
 * (streamline_cuda_train_set_lm_tail_rope); a backend built before that function trains it on the CPU, with a warning.
 * A CUDA backend built before its eval function existed validates `mse` on the CPU instead, downloading the weights at
 * each validation. Checkpoints are one format for both devices and both losses: an interrupted cuda run downloads the
 * weights and AdamW moments (getState) and `resume` uploads them (setState), so a checkpoint moves between cpu and cuda. A CUDA backend built before getState/setState existed
 * trains but saves no checkpoint, and refuses `resume` (E_UNSUPPORTED). With a backend that has stage
 * (streamline_cuda_train_stage; for `lm`, streamline_cuda_train_stage_lm), the next micro-batch is read from the
 * cache (for `lm` with its next-token targets) and uploaded while the current one computes (see `pipe` below);
 * results are bitwise those of the unpipelined loop, which older backends keep.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fromNative, StreamlineError } from '../errors.js';
import { native, type NativeCudaTrainer, type NativeHeadWeights, type NativeLayerWeights } from '../native.js';
import type { Device, DeviceMessage } from '../device.js';
import type { LayerRole, LayerSemantics } from '../engine/description.js';
import { maskingWindow, nativeLayerSpec } from '../engine/spec.js';
import { learningRate } from './schedule.js';
import type { PairCache } from './pair-cache.js';
import { shuffledIndices } from '../data/prng.js';

export interface TrainOptions {
  kind: 'mlp' | 'layer';
  semantics: LayerSemantics;
  /** RoPE inverse frequencies for the block length (null: learned positions, no rotation). */
  ropeInvFreq: Float32Array | null;
  ropeAttentionScaling: number;
  /**
   * A `layer` replacement's sliding window (keys per query; the window's first layer's, LayerSource.window). Absent
   * or 0: full causal attention.
   */
  window?: number;
  /** Initial weights by role (f32 copies; they are trained in place). */
  init: Partial<Record<LayerRole, Float32Array>>;
  shapes: Partial<Record<LayerRole, number[]>>;
  train: PairCache;
  validation: PairCache | null;
  /** Objective: `mse` on h[s+n] (default) or `lm`, the next-token loss through the frozen rest (needs `lm`). */
  loss?: 'mse' | 'lm';
  /** For loss `lm`: the frozen layers after the window, the head, and each cached block's token ids. */
  lm?: LmTail;
  lr?: number;
  minLr?: number;
  /** Warmup steps; default 5% of the steps (at least 1 when there are 20 or more steps). */
  warmup?: number;
  weightDecay?: number;
  clip?: number;
  /** Blocks per micro-batch. */
  microBatch?: number;
  /** Micro-batches per optimiser step. */
  gradAccum?: number;
  epochs?: number;
  seed?: number;
  /** Validate every this many optimiser steps (and at the end). Default: about 10 times per run. */
  evalEvery?: number;
  /** JSONL log of step, loss, validation loss and learning rate. */
  logFile?: string;
  /** Where an interrupted run saves its state, and where `resume` reads it from. */
  checkpointFile?: string;
  resume?: boolean;
  /**
   * Where the optimiser steps run (already resolved, see resolveDevice): 'cpu' (default) or 'cuda' (both losses; with
   * a CUDA backend built before the lm functions, `lm` trains on the CPU after a warning through onLog; the result's
   * `device` says where it ran). Results differ from the CPU's by the GPU's precision (bf16 GEMM inputs,
   * cuda/NOTES.md), not by anything else.
   */
  device?: Device;
  onLog?: (m: DeviceMessage) => void;
  signal?: AbortSignal;
  onStep?: (s: StepRecord, total: number) => void;
}

export interface StepRecord {
  step: number;
  loss: number;
  valLoss?: number;
  lr: number;
  tokens: number;
  seconds: number;
}

export interface TrainResult {
  /** Best weights (by validation loss; the last ones without validation). */
  weights: Partial<Record<LayerRole, Float32Array>>;
  history: StepRecord[];
  steps: number;
  bestStep: number;
  bestValLoss: number | null;
  tokens: number;
  seconds: number;
  /** True when the run stopped early on the abort signal (after saving a checkpoint, if checkpointFile is set). */
  interrupted: boolean;
  /** Set (true) when the interrupted run's state was written to checkpointFile (not on a CUDA backend without getState). */
  checkpointSaved?: true;
  /** Where the optimiser steps ran. */
  device: Device;
  /**
   * Where the training pairs were fed from: 'gpu' (kept in device memory, uploaded once), or the pair cache's
   * 'memory' or 'disk'.
   */
  pairs: 'gpu' | 'memory' | 'disk';
}

/** The frozen rest of the model for the `lm` loss. */
export interface LmTail {
  /** Weights of the model's layers [end, L), in order (read in place). */
  layers: NativeLayerWeights[];
  /** Their sliding windows (LayerSource.window; absent = none). */
  windows?: readonly number[];
  /**
   * Their RoPE for the block length where it differs from the replacement's (LayerSource.rope: Gemma 3's sliding and
   * full layers); one entry per layer, null = the replacement's (ropeInvFreq, ropeAttentionScaling). Absent: all null.
   */
  ropes?: readonly ({ invFreq: Float32Array; attentionScaling: number } | null)[];
  /** final_norm.weight (and .bias) when the model has a final norm, and lm_head.weight (or the tied embedding). */
  head: NativeHeadWeights;
  /** Token ids of block i of `train` / `validation` (seqLen each, in cache order). */
  trainTokens: readonly Int32Array[];
  validationTokens: readonly Int32Array[];
}

/** Next-token targets of blocks packed one after another: row t of a block predicts token t+1 (the last: -1). */
export function nextTokenTargets(blocks: readonly Int32Array[], T: number): Int32Array {
  const out = new Int32Array(blocks.length * T).fill(-1);
  blocks.forEach((ids, b) => { for (let t = 0; t + 1 < Math.min(T, ids.length); t++) out[b * T + t] = ids[t + 1]!; });
  return out;
}

interface State {
  step: number;
  params: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
  best: Float32Array[] | null;
  bestValLoss: number | null;
  bestStep: number;
  history: StepRecord[];
  tokens: number;
}

/**
 * Optimiser steps of a run over `blocks` training blocks: ceil(blocks / (microBatch · gradAccum)) per epoch (the
 * last step of an epoch may be short). prune checks --warmup against it before any work.
 */
export function optimiserSteps(blocks: number, o: { microBatch?: number; gradAccum?: number; epochs?: number }): number {
  return Math.ceil(blocks / ((o.microBatch ?? 1) * (o.gradAccum ?? 1))) * (o.epochs ?? 1);
}

export async function trainReplacement(o: TrainOptions): Promise<TrainResult> {
  const n = native();
  const roles = (Object.keys(o.init) as LayerRole[]).sort();
  if (roles.length === 0) throw new StreamlineError('E_TRAIN', 'the replacement has no parameters');
  const lr = o.lr ?? 2e-4, minLr = o.minLr ?? 5e-5, wd = o.weightDecay ?? 1e-3, clip = o.clip ?? 5;
  const micro = o.microBatch ?? 1, accum = o.gradAccum ?? 1, epochs = o.epochs ?? 1, seed = o.seed ?? 0;
  for (const [k, v] of Object.entries({ microBatch: micro, gradAccum: accum, epochs }))
    if (!Number.isInteger(v) || v < 1) throw new StreamlineError('E_INVALID_OPTION', `${k} must be a positive integer, got ${v}`);
  if (!(clip > 0)) throw new StreamlineError('E_INVALID_OPTION', `clip must be > 0, got ${clip}`);
  if (!(lr > 0) || !(minLr >= 0) || minLr > lr) throw new StreamlineError('E_INVALID_OPTION', `learning rates must satisfy 0 <= min-lr <= lr, got ${minLr} and ${lr}`);
  const lossKind = o.loss ?? 'mse';
  if (lossKind !== 'mse' && lossKind !== 'lm') throw new StreamlineError('E_INVALID_OPTION', `loss must be 'mse' or 'lm', got '${String(lossKind)}'`);
  const lm = lossKind === 'lm' ? o.lm : undefined;
  if (lossKind === 'lm') {
    if (!lm) throw new StreamlineError('E_INVALID_OPTION', "loss 'lm' needs the frozen layers, head and token ids (option lm)");
    if (lm.trainTokens.length !== o.train.size || lm.validationTokens.length !== (o.validation?.size ?? 0))
      throw new StreamlineError('E_SHAPE', `loss 'lm': ${lm.trainTokens.length} + ${lm.validationTokens.length} token blocks for ${o.train.size} + ${o.validation?.size ?? 0} cached blocks`);
  }
  const N = o.train.size;
  if (N === 0) throw new StreamlineError('E_DATA_TOO_SMALL', 'no training pairs');
  const perStep = micro * accum;
  const stepsPerEpoch = Math.ceil(N / perStep);
  const total = optimiserSteps(N, { microBatch: micro, gradAccum: accum, epochs });
  const warmup = o.warmup ?? (total >= 20 ? Math.max(1, Math.round(total * 0.05)) : 0);
  if (!Number.isInteger(warmup) || warmup < 0 || warmup > total)
    throw new StreamlineError('E_INVALID_OPTION', `warmup must be an integer in [0, ${total}] (the run's optimiser steps: ${N} blocks, ${perStep} per step, ${epochs} epoch${epochs === 1 ? '' : 's'}), got ${warmup}`);
  const evalEvery = o.evalEvery ?? Math.max(1, Math.round(total / 10));
  const T = o.train.rows, D = o.train.hidden;
  const positions = (B: number) => { const p = new Int32Array(B * T); for (let i = 0; i < p.length; i++) p[i] = i % T; return p; };

  let st: State;
  const resumed = o.resume === true && o.checkpointFile !== undefined && fs.existsSync(o.checkpointFile);
  if (resumed) {
    st = loadCheckpoint(o.checkpointFile!, roles);
  } else {
    st = { step: 0, params: roles.map((r) => Float32Array.from(o.init[r]!)), m: [], v: [], best: null, bestValLoss: null, bestStep: 0, history: [], tokens: 0 };
  }
  const byRole = (arrs: Float32Array[]) => Object.fromEntries(roles.map((r, i) => [r, { data: arrs[i]!, dtype: 'f32', shape: o.shapes[r] ?? [arrs[i]!.length] }]));
  const window = o.kind === 'layer' ? maskingWindow(o.window, T) : 0;
  const tailWindows = lm ? lm.layers.map((_, k) => maskingWindow(lm.windows?.[k], T)) : [];
  const windowed = window > 0 || tailWindows.some((w) => w > 0);
  if (lm?.ropes !== undefined && lm.ropes.length !== lm.layers.length)
    throw new StreamlineError('E_SHAPE', `loss 'lm': ${lm.ropes.length} RoPE entries for ${lm.layers.length} frozen layers`);
  // Frozen layers that rotate otherwise than the replacement (per-layer RoPE): their frequencies go with the spec.
  const tailRopes = lm?.ropes?.some((r) => r !== null && !sameRope(r, o.ropeInvFreq, o.ropeAttentionScaling))
    ? { tailRopeInvFreq: lm.ropes.map((r) => r?.invFreq ?? null), tailRopeAttentionScaling: lm.ropes.map((r) => r?.attentionScaling ?? o.ropeAttentionScaling) }
    : null;
  const spec = (B: number) => ({
    ...nativeLayerSpec(o.semantics, B, T, o.ropeInvFreq !== null, o.ropeAttentionScaling, window),
    ...(lm ? { tailWindows } : {}),
    ...(tailRopes ?? {}),
  });

  // On cuda the trainer holds the current weights; st.params is refreshed from it only where the host needs them. It
  // is opened first because only it says whether the backend has the lm loss; without, `lm` trains on the CPU.
  let gpu: NativeCudaTrainer | null = null;
  // Qwen3's q/k norms: the replacement's go to the GPU through streamline_cuda_train_set_qk_norm, the lm tail's through
  // streamline_cuda_train_set_lm_tail_qk_norm; a library built before them lacks them (the binding would refuse the
  // norms rather than drop them), so such a run trains on the CPU.
  const qkNorm = roles.some((r) => r === 'q_norm.weight' || r === 'k_norm.weight');
  const tailQkNorm = lm !== undefined && lm.layers.some((l) => l['q_norm.weight'] !== undefined || l['k_norm.weight'] !== undefined);
  // The trainer's C spec has no rotary width: partial RoPE (Phi-4-mini's partial_rotary_factor) goes to the GPU through
  // streamline_cuda_train_set_rotary_dim; a library built before it would rotate whole heads (the binding refuses).
  const partialRope = o.ropeInvFreq !== null && o.semantics.rotaryDim !== undefined && o.semantics.rotaryDim < o.semantics.headDim;
  // Gemma's post-sublayer norms: the replacement's go to the GPU through streamline_cuda_train_set_post_norm, the lm
  // tail's through streamline_cuda_train_set_lm_tail_post_norm; a library built before them lacks them (the binding
  // would refuse the norms rather than drop them), so such a run trains on the CPU.
  const postNorms = roles.some((r) => r === 'post_attn_norm.weight' || r === 'post_mlp_norm.weight');
  const tailPostNorms = lm !== undefined && lm.layers.some((l) => l['post_attn_norm.weight'] != null || l['post_mlp_norm.weight'] != null);
  // One message for every feature an older backend library lacks: the run then trains on the CPU.
  const olderLibrary = (what: string, lacks: string, before: string) => o.onLog?.({ level: 'warning',
    message: `${what}: the replacement trains on the CPU (this CUDA backend library lacks ${lacks}: it was built before ${before}; rebuild it)` });
  if (o.device === 'cuda') {
    const info = n.cudaInfo();
    if (postNorms && !info.trainPostNorm) {
      olderLibrary('post-sublayer norms (post_attn_norm/post_mlp_norm)', 'streamline_cuda_train_set_post_norm', 'post norms were trained on the GPU');
    } else if (tailPostNorms && !info.lmTailPostNorm) {
      olderLibrary('--loss lm', 'streamline_cuda_train_set_lm_tail_post_norm for the frozen layers\' post-sublayer norms (post_attn_norm/post_mlp_norm)', 'them');
    } else if (partialRope && !info.trainRotaryDim) {
      olderLibrary(`partial rotary embedding (${o.semantics.rotaryDim} of ${o.semantics.headDim} dims per head)`, 'streamline_cuda_train_set_rotary_dim', 'partial RoPE was trained on the GPU');
    } else if (qkNorm && !info.trainQkNorm) {
      olderLibrary('q/k norm (q_norm/k_norm)', 'streamline_cuda_train_set_qk_norm', 'q/k norms were trained on the GPU');
    } else if (tailQkNorm && !info.lmTailQkNorm) {
      olderLibrary('--loss lm', 'streamline_cuda_train_set_lm_tail_qk_norm for the frozen layers\' per-head q/k norm (q_norm/k_norm)', 'them');
    } else if (tailRopes !== null && !info.lmTailRope) {
      // Without the function the binding would refuse the spec's tail ropes rather than rotate every layer like R.
      olderLibrary('--loss lm with frozen layers whose RoPE differs from the replacement\'s (per-layer RoPE, e.g. Gemma 3\'s sliding and full layers)',
        'streamline_cuda_train_set_lm_tail_rope', 'per-layer RoPE in the lm tail on the GPU');
    } else {
      // Whether the library has the lm loss and the windows only the opened trainer says.
      const g = await n.cudaTrainer(o.kind, spec(Math.min(micro, N)), byRole(st.params), o.ropeInvFreq);
      if (lm && !g.hasLm()) olderLibrary('--loss lm', 'streamline_cuda_train_step_lm', 'the lm loss on the GPU existed');
      else if (windowed && !g.hasWindows()) olderLibrary('sliding-window attention', 'streamline_cuda_train_set_windows', 'sliding windows on the GPU existed');
      else gpu = g;
      if (gpu === null) g.destroy();
    }
  }
  const device: Device = gpu !== null ? 'cuda' : 'cpu';
  // On cuda the gradients and moments live on the GPU only.
  if (device === 'cpu' && !resumed) { st.m = roles.map((r) => new Float32Array(o.init[r]!.length)); st.v = roles.map((r) => new Float32Array(o.init[r]!.length)); }
  const grads = device === 'cpu' ? roles.map((r) => new Float32Array(o.init[r]!.length)) : [];
  let log: number | null = null;
  const t0 = Date.now();

  const loadBatch = (cache: PairCache, idx: number[]) => {
    const x = new Float32Array(idx.length * T * D), y = new Float32Array(cache.hasTargets ? idx.length * T * D : 0);
    idx.forEach((j, b) => cache.readInto(j, x.subarray(b * T * D, (b + 1) * T * D), y.subarray(b * T * D, (b + 1) * T * D)));
    return { x, y };
  };
  const validateOnHost = async (params: Float32Array[]): Promise<number> => {
    const val = o.validation!;
    let sum = 0;
    for (let j = 0; j < val.size; j++) {
      const { x, y } = loadBatch(val, [j]);
      sum += lm
        ? await n.lmLossEval(o.kind, spec(1), byRole(params), x, lm.layers, lm.head, nextTokenTargets([lm.validationTokens[j]!], T), positions(1), null, o.ropeInvFreq)
        : await n.replacementLoss(o.kind, spec(1), byRole(params), x, y, positions(1), null, o.ropeInvFreq);
    }
    return sum / val.size;
  };

  const hostParams = async (): Promise<Float32Array[]> => {
    const g = gpu;
    if (g === null) return st.params;
    const out: Float32Array[] = [];
    for (const r of roles) out.push(await g.getParams(r));
    return (st.params = out);
  };
  // Validation on the GPU: the blocks in order, as many per call as the trainer takes, summed in the CPU's order.
  const validateOnGpu = async (g: NativeCudaTrainer): Promise<number> => {
    const val = o.validation!, per = Math.min(micro, N);
    let sum = 0;
    for (let j = 0; j < val.size; j += per) {
      const idx = Array.from({ length: Math.min(per, val.size - j) }, (_, i) => j + i);
      const { x, y } = loadBatch(val, idx);
      const losses = lm
        ? await g.evalLm(x, nextTokenTargets(idx.map((k) => lm.validationTokens[k]!), T), positions(idx.length), null, idx.length)
        : await g.eval(x, y, positions(idx.length), null, idx.length);
      for (const l of losses) sum += l;
    }
    return sum / val.size;
  };
  let interrupted = false, checkpointSaved = false;
  let pairsOn: TrainResult['pairs'] = o.train.location;
  try {
    try {
      // Missing folders are created, as for the CLI's other output files.
      if (o.logFile) fs.mkdirSync(path.dirname(path.resolve(o.logFile)), { recursive: true });
      log = o.logFile ? fs.openSync(o.logFile, st.step > 0 ? 'a' : 'w') : null;
    } catch (e) {
      throw new StreamlineError('E_IO', `cannot open the training log ${o.logFile}: ${(e as Error).message}`, { file: o.logFile!, cause: e });
    }
    if (gpu !== null) {
      const g = gpu;
      if (lm) await g.setLmTail(lm.layers, lm.head);
      if (windowed) g.setWindows(window, tailWindows);  // after setLmTail, which resets the tail's windows
      if (resumed) {
        if (!g.hasState())
          throw new StreamlineError('E_UNSUPPORTED', `resuming ${o.checkpointFile} on cuda: this CUDA backend library cannot load AdamW moments (built before streamline_cuda_train_set_state); rebuild it, or resume with --device cpu`, { file: o.checkpointFile });
        for (const [i, r] of roles.entries()) await g.setState(r, { param: st.params[i]!, m: st.m[i]!, v: st.v[i]! });
        // From here the moments live on the GPU only, as in a fresh cuda run.
        st.m = [];
        st.v = [];
      }
    }
    // The micro-batches of optimiser step s (0-based): its slice of the epoch's shuffled order, a function of s alone,
    // so loading one ahead of time consumes nothing. The order is shuffled once per epoch (prefetch asks for the next
    // step's batches before that step runs).
    let orderEpoch = -1, order: number[] = [];
    const microBatches = (s: number): number[][] => {
      const epoch = Math.floor(s / stepsPerEpoch);
      if (epoch !== orderEpoch) { order = shuffledIndices(N, BigInt(seed) * 1000003n + BigInt(epoch)); orderEpoch = epoch; }
      const first = (s % stepsPerEpoch) * perStep;
      const blocks = order.slice(first, Math.min(N, first + perStep));
      const out: number[][] = [];
      for (let a = 0; a < blocks.length; a += micro) out.push(blocks.slice(a, a + micro));
      return out;
    };
    // Prefetch (a backend with stage, or stageLm for `lm`): while the GPU runs micro-batch i, the next one is read
    // from the cache and uploaded into the trainer's idle input slot, across optimiser steps too (the next step's first
    // micro-batch is staged during this step's last one, before apply and validation, which use the other slot). An
    // interruption or error leaves at most that one batch staged and never stepped: the next step starts from its
    // index as before. Both losses feed the staged step the unpipelined loop's inputs and gradient scale, so the
    // results are the same bits.
    const pipe = gpu !== null && (lm ? gpu.hasStageLm() : gpu.hasStage()) ? gpu : null;
    // A bf16 cache goes to the GPU as it is stored, one block per sequence: no widening, gathering or f32 copy on the
    // host (at 8B shapes those cost more than the GPU's step) and half the bytes over the bus; the GPU widens exactly.
    const stageRows = pipe !== null && o.train.dtype === 'bf16' && pipe.hasStageBf16();
    // Pairs that fit in half the free device memory (after the trainer and the lm tail) are kept there: one upload,
    // then every epoch stages device to device.
    if (stageRows && pipe!.hasKeptPairs() && await pipe!.keepPairs(N, !lm, 0.5)) {
      for (let j = 0; j < N; j++) {
        const b = o.train.readBf16(j);
        await pipe!.putPair(j, b.x, lm ? null : b.y);
      }
      pairsOn = 'gpu';
      o.onLog?.({ level: 'info', message: `training pairs kept in GPU memory (${N} blocks, ${(N * T * D * 2 * (lm ? 1 : 2) / 2 ** 30).toFixed(2)} GiB)` });
    }
    let stagedStep = -1;  // the optimiser step whose first micro-batch sits staged
    const stage = async (g: NativeCudaTrainer, idx: number[]) => {
      const B = idx.length, pos = positions(B);
      const targets = lm ? nextTokenTargets(idx.map((j) => lm.trainTokens[j]!), T) : null;
      if (pairsOn === 'gpu') {
        const blocks = Int32Array.from(idx);
        await (targets ? g.stageLmKept(blocks, targets, pos, null, B) : g.stageKept(blocks, pos, null, B));
      } else if (stageRows) {
        const blocks = idx.map((j) => o.train.readBf16(j)), xRows = blocks.map((b) => b.x);
        await (targets ? g.stageLmBf16(xRows, targets, pos, null, B) : g.stageBf16(xRows, blocks.map((b) => b.y), pos, null, B));
      } else {
        const { x, y } = loadBatch(o.train, idx);
        await (targets ? g.stageLm(x, targets, pos, null, B) : g.stage(x, y, pos, null, B));
      }
    };
    while (st.step < total) {
      if (o.signal?.aborted) { interrupted = true; break; }
      const step = st.step + 1;
      const micros = microBatches(st.step);
      const nBlocks = micros.reduce((k, idx) => k + idx.length, 0);
      if (gpu === null) for (const g of grads) g.fill(0);
      let loss = 0, parts = 0;
      for (const [a, idx] of micros.entries()) {
        if (pipe !== null) {
          if (a === 0 && stagedStep !== st.step) await stage(pipe, idx);  // the run's (or the resumed run's) first
          stagedStep = -1;
          const pending = lm ? pipe.stepLmStaged(idx.length / nBlocks) : pipe.stepStaged(idx.length / nBlocks);
          // Handled now, awaited below: a step that fails while the next stage is in flight is not an unhandled rejection.
          pending.catch(() => undefined);
          const next = a + 1 < micros.length ? micros[a + 1]! : step < total ? microBatches(step)[0]! : null;
          try {
            if (next !== null) await stage(pipe, next);
          } catch (e) {
            await pending.catch(() => undefined);  // settle the step (its error is secondary) before reporting this one
            throw e;
          }
          if (next !== null && a + 1 === micros.length) stagedStep = step;
          const l = await pending;
          loss += l * (idx.length / nBlocks);
          parts++;
          continue;
        }
        const { x, y } = loadBatch(o.train, idx);
        const l = gpu !== null
          ? lm
            ? await gpu.stepLm(x, nextTokenTargets(idx.map((j) => lm.trainTokens[j]!), T), positions(idx.length), null, idx.length, idx.length / nBlocks)
            : await gpu.step(x, y, positions(idx.length), null, idx.length, idx.length / nBlocks)
          : lm
          ? await n.lmLossStep(o.kind, spec(idx.length), byRole(st.params), byRole(grads), x, lm.layers, lm.head,
            nextTokenTargets(idx.map((j) => lm.trainTokens[j]!), T), positions(idx.length), null, o.ropeInvFreq, idx.length / nBlocks)
          : await n.replacementStep(o.kind, spec(idx.length), byRole(st.params), byRole(grads), x, y, positions(idx.length), null,
            o.ropeInvFreq, idx.length / nBlocks);
        loss += l * (idx.length / nBlocks);
        parts++;
      }
      const rate = learningRate(step - 1, { lr, minLr, warmupSteps: warmup, totalSteps: total });
      const adam = { lr: rate, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: wd, step };
      // Clipping needs every micro-batch's gradient, so the norm is known only here; a non-finite one stops the run
      // before any update (the GPU trainer then updates nothing).
      const norm = gpu !== null ? await gpu.apply({ ...adam, maxNorm: clip }) : n.clipGradNorm(grads, clip).norm;
      if (!Number.isFinite(norm)) throw new StreamlineError('E_NUMERIC', `gradient norm is ${norm} at step ${step}: training diverged`);
      if (gpu === null) n.adamwStep(st.params, grads, st.m, st.v, adam);
      st.step = step;
      st.tokens += nBlocks * T;
      const rec: StepRecord = { step, loss, lr: rate, tokens: st.tokens, seconds: (Date.now() - t0) / 1000 };
      if (o.validation && o.validation.size > 0 && (step % evalEvery === 0 || step === total)) {
        // On cuda the weights come to the host only for a new best (or, from a backend without eval, to validate).
        let downloaded: Float32Array[] | null = null;
        if (gpu !== null && (lm !== undefined || gpu.hasEval())) {
          rec.valLoss = await validateOnGpu(gpu);
        } else {
          const params = await hostParams();
          if (gpu !== null) downloaded = params;
          rec.valLoss = await validateOnHost(params);
        }
        if (st.bestValLoss === null || rec.valLoss < st.bestValLoss) {
          st.bestValLoss = rec.valLoss; st.bestStep = step;
          // hostParams() on cuda returns fresh arrays that nothing writes afterwards: no copy needed.
          st.best = gpu !== null ? downloaded ?? await hostParams() : st.params.map((p) => Float32Array.from(p));
        }
      }
      st.history.push(rec);
      if (log !== null) fs.writeSync(log, JSON.stringify(rec) + '\n');
      o.onStep?.(rec, total);
      void parts;
    }
    if (gpu !== null && interrupted && o.checkpointFile && gpu.hasState()) {
      // The loop stops between optimiser steps, where the GPU's gradients are zero: weights and moments are the state.
      const params: Float32Array[] = [], m: Float32Array[] = [], v: Float32Array[] = [];
      for (const r of roles) { const s = await gpu.getState(r); params.push(s.param); m.push(s.m); v.push(s.v); }
      st.params = params; st.m = m; st.v = v;
    } else if (gpu !== null && st.best === null) {
      await hostParams();  // the result is the last weights (no validation picked a best)
    }
    if (interrupted && o.checkpointFile && (gpu === null || gpu.hasState())) {
      saveCheckpoint(o.checkpointFile, roles, st);
      checkpointSaved = true;
    }
    // Only a file that is a checkpoint is removed: --checkpoint may name any path, and a typo must not delete it.
    if (!interrupted && o.checkpointFile && isTrainCheckpoint(o.checkpointFile)) fs.rmSync(o.checkpointFile, { force: true });
  } catch (e) {
    // The addon's errors (a stable E_ code on a plain Error, e.g. a CUDA backend's refusal) surface as StreamlineError
    // with their code and message unchanged.
    const c = (e as { code?: unknown } | null)?.code;
    throw typeof c === 'string' && c.startsWith('E_') ? fromNative(e) : e;
  } finally {
    if (log !== null) fs.closeSync(log);
    gpu?.destroy();
    n.scratchTrim();  // the CPU steps' reused work buffers (nothing on cuda)
  }
  const final = st.best ?? st.params;
  return {
    weights: Object.fromEntries(roles.map((r, i) => [r, final[i]!])),
    history: st.history, steps: st.step, bestStep: st.best ? st.bestStep : st.step, bestValLoss: st.bestValLoss,
    tokens: st.tokens, seconds: (Date.now() - t0) / 1000, interrupted, ...(checkpointSaved ? { checkpointSaved: true as const } : {}), device, pairs: pairsOn,
  };
}

// Checkpoint: a JSON header line then raw f32 arrays (params, m, v, best) in role order. Written to a temporary
// name and renamed, so a checkpoint is either complete or absent.
function saveCheckpoint(file: string, roles: LayerRole[], st: State): void {
  const arrays = [...st.params, ...st.m, ...st.v, ...(st.best ?? [])];
  const header = JSON.stringify({ format: 'streamline-train-checkpoint', version: 1, roles, lengths: st.params.map((p) => p.length), hasBest: st.best !== null,
    step: st.step, bestValLoss: st.bestValLoss, bestStep: st.bestStep, history: st.history, tokens: st.tokens }) + '\n';
  const tmp = `${file}.tmp-${process.pid}`;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, header);
  for (const a of arrays) fs.writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** True when `file` exists and starts with a training checkpoint's header line (the first 64 KiB are read). */
export function isTrainCheckpoint(file: string): boolean {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return false; }
  try {
    const buf = Buffer.alloc(65536);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl < 0) return false;
    const h = JSON.parse(buf.subarray(0, nl).toString('utf8'));
    return h !== null && typeof h === 'object' && h.format === 'streamline-train-checkpoint';
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
}

function loadCheckpoint(file: string, roles: LayerRole[]): State {
  const buf = fs.readFileSync(file);
  const nl = buf.indexOf(10);
  let h;
  try {
    h = JSON.parse(buf.subarray(0, nl < 0 ? buf.length : nl).toString('utf8'));
  } catch {
    h = null;
  }
  // Any other file given as --checkpoint (a typo, the model's config) is not a checkpoint: say so, not "SyntaxError".
  if (h === null || typeof h !== 'object' || h.format !== 'streamline-train-checkpoint' || !Array.isArray(h.lengths))
    throw new StreamlineError('E_CHECKPOINT', `${file} is not a Streamline training checkpoint`, { file });
  if (JSON.stringify(h.roles) !== JSON.stringify(roles))
    throw new StreamlineError('E_CHECKPOINT', `${file} is not a checkpoint of this replacement (roles differ)`, { file });
  let off = nl + 1;
  const take = (len: number) => { const a = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + len * 4)); off += len * 4; return a; };
  const lengths: number[] = h.lengths;
  const params = lengths.map(take), m = lengths.map(take), v = lengths.map(take);
  const best = h.hasBest ? lengths.map(take) : null;
  if (off !== buf.length) throw new StreamlineError('E_CHECKPOINT', `${file} is truncated or has trailing bytes`, { file });
  return { step: h.step, params, m, v, best, bestValLoss: h.bestValLoss, bestStep: h.bestStep, history: h.history, tokens: h.tokens };
}

/** Whether a frozen layer's RoPE is the replacement's, value for value (then it needs no entry of its own in the spec). */
function sameRope(r: { invFreq: Float32Array; attentionScaling: number }, invFreq: Float32Array | null, attentionScaling: number): boolean {
  return invFreq !== null && r.attentionScaling === attentionScaling && r.invFreq.length === invFreq.length && r.invFreq.every((v, i) => v === invFreq[i]);
}
