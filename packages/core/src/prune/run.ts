/**
 * `prune` end to end: score → choose the window (or take the given range) → build and train the replacement →
 * splice → export → before/after summary (parameters, layers, held-out perplexity on calibration blocks that
 * training never saw). The CLI's `prune` and `demo` call this; it never prints.
 */
import os from 'node:os';
import path from 'node:path';
import { gpuMemory, resolveDevice, type Device, type DeviceOptions } from '../device.js';
import { isStreamlineError, StreamlineError } from '../errors.js';
import { native, type NativeHeadWeights, type NativeLayerWeights } from '../native.js';
import { layerRope, type LayerRole, type ModelDescription, type WeightView } from '../engine/description.js';
import { NORM_WEIGHT_ROLES } from '../arch/types.js';
import { cudaUnsupported } from '../engine/cuda.js';
import { ropeFrequencies } from '../engine/rope.js';
import { tokenLogprobs } from '../engine/forward.js';
import type { LoadedModel } from '../model.js';
import { calibrationBlocks, runScore, type CalibrationOptions, type RunScoreResult } from '../scoring/run.js';
import type { ScoreMetric } from '../scoring/score.js';
import { paramBudget, removedParams, replacementParams, type ReplacementKind } from '../scoring/sparsity.js';
import { PairCache, type CacheDtype } from '../train/pair-cache.js';
import { optimiserSteps, trainReplacement, type LmTail, type StepRecord, type TrainResult } from '../train/trainer.js';
import { collectPairs } from './collect.js';
import { exportPruned, type ExportReplacement, type ExportResult } from './export.js';
import { checkRunPaths } from './paths.js';
import { fitLinear } from './linear.js';
import { hashData, hashDirectory } from './manifest.js';
import { f32View, prunedDescription, type InMemoryReplacement } from './pruned-model.js';

export const TOOL_VERSION = '0.1.0';

export interface TrainingOptions {
  /**
   * Training objective of the `mlp` / `layer` replacement: `mse` (default) fits R(h[s]) to h[s+n]; `lm` minimises
   * the next-token loss of the frozen layers [end, L) and the head run on R(h[s]) (slower: every step runs and
   * back-propagates through the rest of the model; validation loss is then the mean next-token NLL).
   */
  loss?: 'mse' | 'lm';
  lr?: number;
  minLr?: number;
  warmup?: number;
  weightDecay?: number;
  clip?: number;
  microBatch?: number;
  gradAccum?: number;
  epochs?: number;
  evalEvery?: number;
  /** Fraction of training blocks held out for validation (and the before/after perplexity). Default 0.1. */
  validationFraction?: number;
  /** Bytes of training pairs kept in memory before spilling to disk. Default: a quarter of free memory. */
  cacheBudget?: number;
  cacheDtype?: CacheDtype;
  /** Folder of the on-disk cache. Default: the output's parent folder. */
  cacheDir?: string;
  keepCache?: boolean;
  logFile?: string;
  checkpointFile?: string;
  resume?: boolean;
}

/**
 * `device` (default 'auto') runs scoring, the collection of training pairs, the held-out perplexity and the
 * replacement's optimiser steps and validation losses (either loss) on CUDA when it is usable; the `linear` fit and
 * the relative error run on the CPU (so do `mse` validation losses with a CUDA backend built before
 * streamline_cuda_train_eval, and `lm` training with one built before streamline_cuda_train_step_lm, after a
 * warning). A training checkpoint (Ctrl-C, `resume`) has one format for both
 * devices: one saved on either device resumes on either.
 */
export interface PruneOptions extends Omit<CalibrationOptions, 'onProgress'>, TrainingOptions, DeviceOptions {
  outDir: string;
  replacement?: ReplacementKind;
  n?: number;
  sparsity?: number;
  /** Explicit window [start, end): skips scoring. */
  range?: { start: number; end: number };
  metric?: ScoreMetric;
  /**
   * Blocks per forward batch when scoring and collecting training pairs (default 1): the weights are read (on cuda:
   * streamed to the GPU) once per batch. Results do not depend on it on the CPU; on cuda within GEMM rounding.
   */
  batchSize?: number;
  /** Training data (default: the calibration source) and how many blocks of it. */
  trainData?: string;
  trainSamples?: number;
  /** Ridge term of the linear replacement (relative). */
  ridge?: number;
  force?: boolean;
  dryRun?: boolean;
  signal?: AbortSignal;
  onStage?: (stage: string, detail?: string) => void;
  onStageProgress?: (stage: string, done: number, total: number) => void;
  onTrainStep?: (s: StepRecord, total: number) => void;
}

export interface PrunePlan {
  window: { start: number; end: number };
  n: number;
  replacement: ReplacementKind;
  layersBefore: number;
  layersAfter: number;
  parametersBefore: number;
  parametersRemoved: number;
  parametersAdded: number;
  parametersAfter: number;
  sparsity: number;
  /** Rough estimates: output size, and forward-pass work in TFLOP (time depends on the machine). */
  estimatedBytes: number;
  estimatedTflop: number;
}

export interface PruneResult {
  plan: PrunePlan;
  score: RunScoreResult | null;
  /** `loss`: the objective; with `lm` the validation losses are mean next-token NLL (nats). `device`: where the optimiser steps ran. */
  training: (Omit<TrainResult, 'weights'> & { loss: 'mse' | 'lm'; trainBlocks: number; validationBlocks: number; cache: 'memory' | 'disk' }) | null;
  linear: { tokens: number } | null;
  heldOut: { blocks: number; tokens: number; pplBefore: number; pplAfter: number } | null;
  /** Relative hidden-state error ‖R(h[s]) − h[s+n]‖ / ‖h[s+n]‖ on the held-out blocks. */
  relativeError: number | null;
  exported: ExportResult | null;
  /** The pruned model in memory (what was evaluated and exported); null for a dry run. */
  pruned: import('../engine/description.js').ModelDescription | null;
  timings: Record<string, number>;
  /** Where the forward passes (scoring, pairs, held-out perplexity) ran. */
  device: Device;
  /** Peak device memory of the CUDA backend (bytes); null on the CPU. */
  gpuPeakBytes: number | null;
}

function defaultCacheBudget(): number {
  return Math.floor(os.freemem() / 4);
}

async function perplexity(desc: Parameters<typeof tokenLogprobs>[0], blocks: Int32Array[], device: Device): Promise<{ ppl: number; tokens: number }> {
  const lps = await tokenLogprobs(desc, blocks, { batchSize: 4, device });
  let nll = 0, n = 0;
  for (const lp of lps) for (const v of lp) { nll -= v; n++; }
  return { ppl: Math.exp(nll / n), tokens: n };
}

/** Validation blocks held out of `blocks` training blocks: ~fraction (default 0.1) of them, at least one when there are two or more. */
export function heldOutBlocks(blocks: number, fraction = 0.1): number {
  return blocks >= 2 ? Math.max(1, Math.round(blocks * fraction)) : 0;
}

/**
 * The RoPE a replacement of [start, end) trains with, for blocks of seqLen: layer start's (it stands where that layer
 * was, like its window), and for the lm loss's frozen layers [end, L) their own where it differs from that one
 * (LayerSource.rope; `tail` is then one entry per frozen layer, null = the replacement's), else no `tail`.
 */
export function trainingRopes(desc: ModelDescription, start: number, end: number, seqLen: number):
  { invFreq: Float32Array | null; attentionScaling: number; tail?: ({ invFreq: Float32Array; attentionScaling: number } | null)[] } {
  const own = layerRope(desc, desc.layers[start]!);
  const f = own ? ropeFrequencies(own, seqLen) : null;
  const tail = desc.layers.slice(end).map((l) => {
    const r = layerRope(desc, l);
    return r && r !== own ? ropeFrequencies(r, seqLen) : null;
  });
  return { invFreq: f?.invFreq ?? null, attentionScaling: f?.attentionScaling ?? 1, ...(tail.some((r) => r !== null) ? { tail } : {}) };
}

/**
 * Prunes a model and writes the result (unless dryRun).
 * @throws StreamlineError E_INVALID_OPTION, E_RANGE, E_REPLACEMENT, E_OUTPUT_*, E_DISK_SPACE, data and model errors.
 */
export async function prune(model: LoadedModel, o: PruneOptions): Promise<PruneResult> {
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const lap = (k: string, since: number) => { timings[k] = (Date.now() - since) / 1000; return Date.now(); };
  const kind = o.replacement ?? 'layer';
  if (!['none', 'linear', 'mlp', 'layer'].includes(kind)) throw new StreamlineError('E_INVALID_OPTION', `--replacement must be none, linear, mlp or layer, got '${kind}'`);
  const desc = model.description;
  const L = model.layers;
  const given = [o.range !== undefined, o.n !== undefined, o.sparsity !== undefined].filter(Boolean).length;
  const lossKind = o.loss ?? 'mse';
  if (lossKind !== 'mse' && lossKind !== 'lm') throw new StreamlineError('E_INVALID_OPTION', `--loss must be mse or lm, got '${String(lossKind)}'`);
  if (lossKind === 'lm' && kind !== 'mlp' && kind !== 'layer')
    throw new StreamlineError('E_INVALID_OPTION', `--loss lm trains a replacement by gradient steps; it needs --replacement mlp or layer, not ${kind}`);
  if (lossKind === 'lm' && desc.projDim)
    throw new StreamlineError('E_UNSUPPORTED', '--loss lm does not support models with project_out (OPT word_embed_proj_dim != hidden_size); use --loss mse');
  if (given > 1) throw new StreamlineError('E_INVALID_OPTION', 'give only one of --n, --sparsity and --range');
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize >= 1))
    throw new StreamlineError('E_INVALID_OPTION', `--batch-size must be a positive integer, got ${o.batchSize}`);
  if ((kind === 'mlp' || kind === 'layer') && !desc.semantics.preNorm)
    throw new StreamlineError('E_REPLACEMENT', `the '${kind}' replacement needs pre-norm decoder layers; this model normalises after the residual add (OPT do_layer_norm_before=false). Use --replacement none${model.config.tieWordEmbeddings ? '' : ', or linear with a window that starts at layer 0'}`);
  // linear folds into layer start−1's MLP output, which post-norm layers and a post_mlp_norm (Gemma) do not allow, or
  // (start 0) into untied, unprojected embeddings: refuse what no window can satisfy before scoring rather than after.
  const embedsFold = !model.config.tieWordEmbeddings && desc.projDim === null;
  const postMlpNorm = (layer: number) => desc.layers[layer]!.weights()['post_mlp_norm.weight'] !== undefined;
  if (kind === 'linear' && !desc.semantics.preNorm && (model.config.tieWordEmbeddings || (o.range !== undefined && o.range.start > 0)))
    throw new StreamlineError('E_REPLACEMENT', `the linear replacement needs pre-norm decoder layers, or a window starting at layer 0 with untied embeddings; this model normalises after the residual add (OPT do_layer_norm_before=false)${model.config.tieWordEmbeddings ? ' and ties its embeddings' : ''}. Use --replacement none${model.config.tieWordEmbeddings ? '' : ', or --range 0:N'}`);
  // The lm loss backpropagates through the frozen layers after the window, and neither backward (CPU or CUDA) has the
  // gate-projection bias of Llama mlp_bias; refuse here rather than after scoring.
  const gateBias = desc.semantics.gatedMlp && model.config.mlpBias;
  if (lossKind === 'lm' && gateBias)
    throw new StreamlineError('E_UNSUPPORTED', `--loss lm cannot backpropagate through layers with a gate-projection bias (mlp_bias = true in ${model.dir}/config.json); use --loss mse`);
  if (o.range) {
    if (!(Number.isInteger(o.range.start) && Number.isInteger(o.range.end) && 0 <= o.range.start && o.range.start < o.range.end && o.range.end <= L))
      throw new StreamlineError('E_RANGE', `--range ${o.range.start}:${o.range.end} is not a window inside [0, ${L})`);
    if (o.range.end - o.range.start >= L) throw new StreamlineError('E_RANGE', '--range would remove every layer');
    // With the window known, fitLinear's own refusal (after the data and pair stages) can be given now.
    if (kind === 'linear' && o.range.start === 0 && (model.config.tieWordEmbeddings || desc.projDim !== null))
      throw new StreamlineError('E_REPLACEMENT', `--range 0:${o.range.end} with the linear replacement would fold into the input embeddings, which ${model.config.tieWordEmbeddings ? 'are tied to the LM head' : 'this model projects (project_in)'}; choose a window that starts later`);
    if (kind === 'linear' && o.range.start > 0 && postMlpNorm(o.range.start - 1))
      throw new StreamlineError('E_REPLACEMENT', `--range ${o.range.start}:${o.range.end} with the linear replacement would fold into layer ${o.range.start - 1}'s MLP output projection, which its post_mlp_norm (Gemma post_feedforward_layernorm) follows; use --replacement mlp or layer${embedsFold ? ', or --range 0:N' : ''}`);
  }

  // --warmup against the steps the run will take (the training blocks are exactly --train-samples, or the data stage
  // fails): known now, so a warmup longer than the run fails before scoring, not after it.
  if ((kind === 'mlp' || kind === 'layer') && o.warmup !== undefined) {
    const blocks = o.trainSamples ?? o.samples ?? 50, training = blocks - heldOutBlocks(blocks, o.validationFraction);
    const steps = optimiserSteps(training, o);
    if (!Number.isInteger(o.warmup) || o.warmup < 0 || o.warmup > steps)
      throw new StreamlineError('E_INVALID_OPTION', `--warmup ${o.warmup} is not in [0, ${steps}]: the run takes ${steps} optimiser steps (${training} training blocks of --train-samples ${blocks}, --micro-batch ${o.microBatch ?? 1} x --grad-accum ${o.gradAccum ?? 1} per step, --epochs ${o.epochs ?? 1}); lower --warmup or train longer`);
  }

  // Resolved once: the one fallback message, and every stage after it on the same backend.
  const device = resolveDevice(o.device, o.onLog, cudaUnsupported(desc)).device;
  if (device === 'cuda') gpuMemory(true);
  const gpuPeak = () => (device === 'cuda' ? gpuMemory()?.peak ?? null : null);

  if (!o.dryRun) {
    checkRunPaths(model.dir, o);  // fail before hours of work, not after
  }

  const trainSamples = o.trainSamples ?? o.samples ?? 50;
  const seqLen = o.seqLen ?? Math.min(2048, model.maxLength);
  let t = Date.now();
  // 1. Training data, before scoring (tokenising and packing take seconds), so that too little of it fails before the
  // scoring pass: blocks drawn from the training source; the last ~10% are held out.
  let trainBlocks: Awaited<ReturnType<typeof calibrationBlocks>>['blocks'] = [];
  let valBlocks: typeof trainBlocks = [];
  if (!o.dryRun) {
    o.onStage?.('data');
    let trainCal: Awaited<ReturnType<typeof calibrationBlocks>>;
    try {
      trainCal = await calibrationBlocks(model, { ...calibrationOf(o), calib: o.trainData ?? o.calib, samples: trainSamples, seqLen, seed: (o.seed ?? 0) + 1 });
    } catch (e) {
      // The packer speaks of calibration and --samples; here the count is --train-samples (default: --samples).
      if (isStreamlineError(e, 'E_DATA_TOO_SMALL')) {
        throw new StreamlineError(e.code, e.message.replace(/^calibration data/, 'training data').replace('lower --samples', 'lower --train-samples'),
          { ...(e.file !== undefined ? { file: e.file } : {}), cause: e });
      }
      throw e;
    }
    const valCount = heldOutBlocks(trainCal.blocks.length, o.validationFraction);
    trainBlocks = trainCal.blocks.slice(0, trainCal.blocks.length - valCount);
    valBlocks = trainCal.blocks.slice(trainCal.blocks.length - valCount);
    if (trainBlocks.length === 0) throw new StreamlineError('E_DATA_TOO_SMALL', 'no training blocks left after holding out validation blocks; raise --train-samples');
    t = lap('data', t);
  }

  // 2. Score and choose.
  let score: RunScoreResult | null = null;
  let start: number, end: number;
  if (o.range) {
    ({ start, end } = o.range);
  } else {
    o.onStage?.('score');
    score = await runScore(model, {
      ...calibrationOf(o), replacement: kind, metric: o.metric ?? 'cosine', ...(o.signal ? { signal: o.signal } : {}), device,
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
      onScoreProgress: (d, tot) => o.onStageProgress?.('score', d, tot),
      ...(o.n !== undefined ? { n: o.n } : {}), ...(o.sparsity !== undefined ? { sparsity: o.sparsity } : {}),
    });
    if (!score.best) throw new StreamlineError('E_RANGE', 'no window was scored');
    ({ start, end } = score.best);
    // Where linear can fold T (fitLinear's rules): into layer start−1's MLP output, which needs pre-norm layers, or at
    // layer 0 into untied, unprojected input embeddings. When the best window is not such a place, take the best one
    // that is rather than fail after the scoring pass (Llama 3.2, Qwen2.5 and OPT tie their embeddings; OPT-350m is
    // post-norm).
    const linearFits = (s: number) => (s === 0 ? embedsFold : desc.semantics.preNorm && !postMlpNorm(s - 1));
    if (kind === 'linear' && !linearFits(start)) {
      const why = start === 0 ? `${model.config.tieWordEmbeddings ? 'tied' : 'projected'} embeddings`
        : desc.semantics.preNorm ? `layer ${start - 1}'s MLP output is normed (post_mlp_norm) after the projection a fold would change` : 'post-norm layers leave no MLP output to fold into';
      const better = (a: { score: number }, b: { score: number }) => (score!.metric === 'cosine' ? a.score > b.score : a.score < b.score);
      const feasible = score.windows.filter((w) => linearFits(w.start)).reduce<typeof score.windows[number] | null>((b, w) => (!b || better(w, b) ? w : b), null);
      if (!feasible) throw new StreamlineError('E_REPLACEMENT', `no window of ${end - start} layers can take the linear replacement here (${why}); use a smaller --n or another --replacement`);
      o.onLog?.({ level: 'warning', message: `the best window [${start}, ${end}) cannot take the linear replacement (${why}); using the best window that can, [${feasible.start}, ${feasible.end})` });
      ({ start, end } = feasible);
    }
    t = lap('score', t);
  }
  const n = end - start;
  const budget = paramBudget(model.report, model.modelDir);
  const added = replacementParams(budget, kind, start);
  const removed = removedParams(budget, kind, start, n);
  const before = budget.total;
  const bytesPerParam = model.report.tensors > 0 ? model.modelDir.checkpoint.names().reduce((a, k) => a + model.modelDir.checkpoint.info(k).nbytes, 0) / before : 2;
  const plan: PrunePlan = {
    window: { start, end }, n, replacement: kind,
    layersBefore: L, layersAfter: L - n + (kind === 'mlp' || kind === 'layer' ? 1 : 0),
    parametersBefore: before, parametersRemoved: removed + added, parametersAdded: added, parametersAfter: before - removed,
    sparsity: removed / before,
    estimatedBytes: Math.round((before - removed) * bytesPerParam),
    // forward to h[end] for every training block, plus (for training) ~3x the replacement's own forward per epoch
    estimatedTflop: (2 * (before - budget.perLayer.slice(end).reduce((a, b) => a + b, 0)) * trainSamples * seqLen +
                     (kind === 'mlp' || kind === 'layer' ? 6 * added * trainSamples * seqLen * (o.epochs ?? 1) : 0)) / 1e12,
  };
  if (o.dryRun) return { plan, score, training: null, linear: null, heldOut: null, relativeError: null, exported: null, pruned: null, timings, device, gpuPeakBytes: gpuPeak() };


  // 3. Replacement.
  let inMemory: InMemoryReplacement = { kind: 'none' };
  let exportRep: ExportReplacement = { kind: 'none' };
  let training: PruneResult['training'] = null;
  let linear: PruneResult['linear'] = null;
  const srcLayer = desc.layers[start]!.weights();
  const roundTo = (values: Float32Array, view: { dtype: string }): Float32Array => {
    if (view.dtype === 'f32') return values;
    const tmp = new Uint16Array(values.length);
    native().convertFloats(tmp, view.dtype, values, 'f32');
    const back = new Float32Array(values.length);
    native().convertFloats(back, 'f32', tmp, view.dtype);
    return back;
  };
  // A family that stores norm weights as offsets (Gemma's 1 + w) trains effective weights; the checkpoint gets
  // effective − offset rounded to its dtype, and the model in memory that value + offset, as a reload computes it.
  const normOffset = model.modelDir.adapter.normWeightOffset;
  const storedValues = (role: LayerRole, values: Float32Array): { exported: Float32Array; inMemory: Float32Array } => {
    if (normOffset === undefined || !NORM_WEIGHT_ROLES.includes(role)) {
      const v = roundTo(values, srcLayer[role]!);
      return { exported: v, inMemory: v };
    }
    const exported = roundTo(values.map((x) => x - normOffset), model.modelDir.checkpoint.info(model.modelDir.layerTensorName(role, start)!));
    return { exported, inMemory: exported.map((w) => w + normOffset) };
  };
  if (kind === 'linear') {
    o.onStage?.('linear', `least squares over ${trainBlocks.length} blocks`);
    const fit = await fitLinear(desc, start, end, { blocks: trainBlocks, ...(o.ridge !== undefined ? { ridge: o.ridge } : {}), onProgress: (d, tot) => o.onStageProgress?.('linear', d, tot), ...(o.signal ? { signal: o.signal } : {}) });
    linear = { tokens: fit.tokens };
    // Round to the stored dtype so the model in memory is exactly what is exported.
    const tensors: Record<string, Float32Array> = {};
    const layerOverrides: Partial<Record<LayerRole, WeightView>> = {};
    let globalOverrides: Record<string, WeightView> | undefined;
    for (const [role, f] of Object.entries(fit.folded)) {
      const srcView = start === 0 ? desc.global()['embed.weight']! : desc.layers[start - 1]!.weights()[role as LayerRole]!;
      const v = roundTo(f.values, srcView);
      const name = start === 0 ? model.modelDir.globalTensorName('embed.weight')! : model.modelDir.layerTensorName(role as LayerRole, start - 1)!;
      tensors[name] = v;
      if (start === 0) (globalOverrides ??= {})[role] = f32View(v, f.shape);
      else layerOverrides[role as LayerRole] = f32View(v, f.shape);
    }
    inMemory = start === 0 ? { kind: 'linear', globalOverrides: globalOverrides! } : { kind: 'linear', layerOverrides };
    exportRep = { kind: 'linear', tensors };
    t = lap('replacement', t);
  } else if (kind === 'mlp' || kind === 'layer') {
    // The trainer has no gate-projection bias (Llama mlp_bias): it is held at zero, in training, in memory and in the
    // exported tensor, so the replacement keeps the architecture's shape with one parameter vector fixed.
    // An `mlp` replacement takes the MLP's roles, its post-sublayer norm (Gemma) included; its exported attention is zero.
    const roles = (Object.keys(srcLayer) as LayerRole[]).filter((r) => r !== 'gate.bias' &&
      (kind === 'layer' || r.startsWith('mlp_norm') || r.startsWith('gate') || r.startsWith('up') || r.startsWith('down') || r === 'post_mlp_norm.weight'));
    const init: Partial<Record<LayerRole, Float32Array>> = {};
    const shapes: Partial<Record<LayerRole, number[]>> = {};
    for (const r of roles) {
      const v = srcLayer[r]!;
      const f = new Float32Array(v.shape.reduce((a, b) => a * b, 1));
      native().convertFloats(f, 'f32', v.data, v.dtype);
      init[r] = f;
      shapes[r] = [...v.shape];
    }
    const D = desc.semantics.hidden;
    const cacheDir = o.cacheDir ?? path.join(path.dirname(path.resolve(o.outDir)), `.${path.basename(o.outDir)}.streamline-cache`);
    const cacheBudget = o.cacheBudget ?? defaultCacheBudget();
    const cacheDtype = o.cacheDtype ?? 'bf16';
    const targets = lossKind === 'mse';  // the lm loss needs h[s] and the token ids only
    const trainCache = new PairCache({ blocks: trainBlocks.length, rows: seqLen, hidden: D, dtype: cacheDtype, budgetBytes: cacheBudget, dir: cacheDir, keep: o.keepCache ?? false, targets });
    const valCache = new PairCache({ blocks: valBlocks.length, rows: seqLen, hidden: D, dtype: cacheDtype, budgetBytes: Math.max(0, cacheBudget - trainCache.totalBytes), dir: cacheDir, keep: o.keepCache ?? false, targets });
    try {
      o.onStage?.('pairs', `${trainBlocks.length + valBlocks.length} blocks through layers [0, ${end}) (${trainCache.location})`);
      const collect = { ...(o.signal ? { signal: o.signal } : {}), device, ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}) };
      await collectPairs(desc, start, end, trainBlocks, trainCache, { ...collect, onProgress: (d, tot) => o.onStageProgress?.('pairs', d, tot + valBlocks.length) });
      await collectPairs(desc, start, end, valBlocks, valCache, { ...collect, onProgress: (d, tot) => o.onStageProgress?.('pairs', trainBlocks.length + d, trainBlocks.length + tot) });
      t = lap('pairs', t);
      o.onStage?.('train', `${kind} replacement of [${start}, ${end}), loss ${lossKind}`);
      const ropes = trainingRopes(desc, start, end, seqLen);
      let lm: LmTail | undefined;
      if (lossKind === 'lm') {
        const g = desc.global();
        const lmHead = g['lm_head.weight'] ?? g['embed.weight'];
        if (!lmHead) throw new StreamlineError('E_MODEL_TENSORS', 'the model has no LM head');
        const head: Record<string, WeightView> = { 'lm_head.weight': lmHead };
        if (desc.finalNorm) for (const r of ['final_norm.weight', 'final_norm.bias'] as const) if (g[r]) head[r] = g[r]!;
        const tail = desc.layers.slice(end);
        lm = { layers: tail.map((l) => l.weights()) as NativeLayerWeights[],
               windows: tail.map((l) => l.window ?? 0), head: head as NativeHeadWeights,
               ...(ropes.tail ? { ropes: ropes.tail } : {}),
               trainTokens: trainBlocks, validationTokens: valBlocks };
      }
      const r = await trainReplacement({
        kind, semantics: desc.semantics, ropeInvFreq: ropes.invFreq, ropeAttentionScaling: ropes.attentionScaling,
        ...(desc.layers[start]!.window ? { window: desc.layers[start]!.window } : {}), init, shapes, train: trainCache, validation: valCache, loss: lossKind, ...(lm ? { lm } : {}),
        ...pick(o, ['lr', 'minLr', 'warmup', 'weightDecay', 'clip', 'microBatch', 'gradAccum', 'epochs', 'evalEvery', 'logFile', 'checkpointFile', 'resume', 'signal']),
        seed: o.seed ?? 0, device, ...(o.onLog ? { onLog: o.onLog } : {}),
        ...(o.onTrainStep ? { onStep: o.onTrainStep } : {}),
      });
      if (r.interrupted) {
        throw new StreamlineError('E_INTERRUPTED', !o.checkpointFile ? `training interrupted at step ${r.steps}`
          : !r.checkpointSaved ? `training interrupted at step ${r.steps}; no checkpoint saved (this CUDA backend library cannot read its AdamW moments back: it predates streamline_cuda_train_get_state; rebuild it, or train with --device cpu to be able to resume)`
          : `training interrupted at step ${r.steps}; state saved to ${o.checkpointFile} (rerun with --resume)`);
      }
      const { weights, ...rest } = r;
      training = { ...rest, loss: lossKind, trainBlocks: trainBlocks.length, validationBlocks: valBlocks.length, cache: trainCache.location };
      const rounded: Partial<Record<LayerRole, Float32Array>> = {};
      const views: Partial<Record<LayerRole, WeightView>> = {};
      for (const role of roles) {
        const v = storedValues(role, weights[role]!);
        rounded[role] = v.exported;
        views[role] = f32View(v.inMemory, shapes[role]!);
      }
      if (srcLayer['gate.bias']) {
        rounded['gate.bias'] = new Float32Array(desc.semantics.intermediate);
        views['gate.bias'] = f32View(rounded['gate.bias'], [desc.semantics.intermediate]);
      }
      inMemory = { kind, weights: views };
      exportRep = { kind, weights: rounded };
      t = lap('train', t);
    } finally {
      trainCache.close();
      valCache.close();
    }
  }

  // 4. The pruned model in memory; before/after on held-out blocks.
  const pruned = prunedDescription(desc, start, end, inMemory);
  let heldOut: PruneResult['heldOut'] = null;
  let relativeError: number | null = null;
  if (valBlocks.length > 0) {
    o.onStage?.('evaluate', `held-out perplexity on ${valBlocks.length} blocks`);
    const b = await perplexity(desc, valBlocks, device);
    const a = await perplexity(pruned, valBlocks, device);
    heldOut = { blocks: valBlocks.length, tokens: a.tokens, pplBefore: b.ppl, pplAfter: a.ppl };
    relativeError = await replacementError(desc, pruned, start, end, kind, valBlocks);
    t = lap('evaluate', t);
  }

  // 5. Export.
  o.onStage?.('export', o.outDir);
  const manifest = {
    tool: { name: 'streamline', version: TOOL_VERSION },
    createdAt: new Date().toISOString(),
    source: { dir: model.dir, modelType: model.config.modelType, layers: L, files: hashDirectory(model.dir) },
    calibration: { path: o.calib, sha256: hashData(o.calib), field: o.field ?? 'text', samples: o.samples ?? 50, seqLen, seed: o.seed ?? 0 },
    training_data: { path: o.trainData ?? o.calib, sha256: o.trainData ? hashData(o.trainData) : undefined, samples: trainSamples, trainBlocks: trainBlocks.length, validationBlocks: valBlocks.length },
    metric: score?.metric ?? null,
    scores: score ? { n: score.n, windows: score.windows, best: score.best, blockInfluence: score.blockInfluence } : null,
    range: { start, end },
    replacement: kind,
    plan,
    training: training ? { ...training, history: undefined, options: pick(o, ['loss', 'lr', 'minLr', 'warmup', 'weightDecay', 'clip', 'microBatch', 'gradAccum', 'epochs']) } : null,
    heldOut, relativeError, device,
    timings: { ...timings, totalBeforeExport: (Date.now() - t0) / 1000 },
  };
  const exported = await exportPruned({
    source: {
      dir: model.dir, rawConfig: model.config.raw as Record<string, unknown>, checkpoint: model.modelDir.checkpoint, numLayers: L,
      layerTensorName: (role, i) => model.modelDir.layerTensorName(role, i) ?? `missing.${role}.${i}`,
      fusedGroup: (role) => model.modelDir.adapter.fusedGroup(role),
      embedTensorName: model.modelDir.globalTensorName('embed.weight')!, tiedEmbeddings: model.config.tieWordEmbeddings,
    },
    start, end, replacement: exportRep, outDir: o.outDir, force: o.force ?? false, manifest,
    onProgress: (p) => o.onStageProgress?.('export', p.done, p.total),
  });
  lap('export', t);
  timings.total = (Date.now() - t0) / 1000;
  return { plan, score, training, linear, heldOut, relativeError, exported, pruned, timings, device, gpuPeakBytes: gpuPeak() };
}

function calibrationOf(o: PruneOptions): CalibrationOptions {
  return { calib: o.calib, ...pick(o, ['field', 'samples', 'seqLen', 'seed']) };
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const r: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) r[k] = o[k];
  return r;
}

/**
 * ‖R(h[s]) − h[e]‖ / ‖h[e]‖ over the held-out blocks, where R(h[s]) is the pruned model's state after the
 * replacement (for `linear`: after the folded layer s−1 applied to h[s−1]; for `none`: h[s] itself).
 */
async function replacementError(desc: import('../engine/description.js').ModelDescription, pruned: import('../engine/description.js').ModelDescription,
                                start: number, end: number, kind: ReplacementKind, blocks: Int32Array[]): Promise<number> {
  const { embed, runLayers } = await import('../engine/forward.js');
  const { makeTokenBatch } = await import('../engine/batch.js');
  let num = 0, den = 0;
  const hasLayer = kind === 'mlp' || kind === 'layer';
  for (const block of blocks) {
    const batch = makeTokenBatch([block]);
    const h0 = await embed(desc, batch);
    const target = await runLayers(desc, h0, 0, end);
    // In the pruned model, layer index `start` (+1 with a replacement layer) is where h[end] should be.
    const p0 = await embed(pruned, batch);
    const got = await runLayers(pruned, p0, 0, start + (hasLayer ? 1 : 0));
    const real = batch.lengths[0]! * desc.semantics.hidden;  // skip alignment padding
    for (let i = 0; i < real; i++) { const d = got.data[i]! - target.data[i]!; num += d * d; den += target.data[i]! * target.data[i]!; }
  }
  return Math.sqrt(num / den);
}
