/**
 * Loads the native addon (node-gyp-build: build/Release, then prebuilds/) and describes its raw exports.
 * Everything here is internal: the public API wraps these with validation and documentation.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A tensor as the addon reads it: bytes, a dtype name and a shape. */
export interface NativeTensor {
  data: ArrayBufferView;
  dtype: string;
  shape: readonly number[];
}

/**
 * Spec of a trained replacement: the engine's layer spec (heads, kvHeads, headDim needed only for `layer`;
 * preNorm must be true) plus `gradScale` (default 1), which multiplies the gradients but not the loss.
 */
export type NativeReplacementSpec = NativeMlpSpec & Partial<Pick<NativeLayerSpec, 'heads' | 'kvHeads' | 'headDim' | 'useRope' | 'attnScale' | 'ropeAttentionScaling' | 'window' | 'rotaryDim'>> & {
  gradScale?: number;
  /** lmLossStep / lmLossEval: the frozen layers' sliding windows (one per layer, 0 = full causal); absent = none. */
  tailWindows?: number[];
  /**
   * lmLossStep / lmLossEval: the frozen layers' own RoPE inverse frequencies [rotaryDim/2] (one entry per layer; null =
   * ropeInvFreq) and attention scaling (one per layer); absent = every layer uses the replacement's. cudaTrainer hands
   * them to the backend at setLmTail (streamline_cuda_train_set_lm_tail_rope; a library without it refuses them:
   * cudaInfo().lmTailRope).
   */
  tailRopeInvFreq?: (Float32Array | null)[];
  tailRopeAttentionScaling?: number[];
};
/**
 * f32 parameters (or gradients) of a replacement by role, row-major ([out, in] for linear weights): a flat
 * Float32Array, or a tensor whose data is one (dtype 'f32', shape holding the expected element count).
 */
export type NativeReplacementParams = Partial<Record<NativeLayerRole, Float32Array | { data: Float32Array; dtype: string; shape: readonly number[] }>>;

/** One AdamW step as torch.optim.AdamW takes it; `step` is 1-based (the step being taken). */
export interface NativeAdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

/** Raw addon exports; binding files add functions here as they register them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, any> & NativeScoring & NativeLinalg & NativeCuda & {
  cpuInfo(): { avx2: boolean; avx512f: boolean; avx512bf16: boolean; amx: boolean; amxPermitted: boolean; detected: string; level: string; threads: number; blas: string; blasCore: string };
  cudaInfo(): { compiled: boolean; loaded: boolean; deviceCount: number; runtimeVersion: number; deviceName: string; available: boolean; reason: string; qkNorm: boolean; postNorm: boolean; trainQkNorm: boolean; lmTailQkNorm: boolean; trainRotaryDim: boolean; trainPostNorm: boolean; lmTailPostNorm: boolean; lmTailRope: boolean };
  mapFile(path: string): ArrayBuffer;
  convertFloats(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): void;
  convertFloatsRef(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): void;
  convertFloatsAsync(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): Promise<void>;
  // ---- backward kernels, loss and optimiser (binding_backward.cpp). Arguments: outputs, inputs, dimensions;
  // buffers are Float32Array of exactly the implied length; `null` skips an optional output or input.
  // Gradients accumulate (+=) except linear dx, attention dq/dk/dv, rope (in place) and mse da (overwritten).
  linearBackward(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array | null, w: Float32Array | null, M: number, N: number, K: number): void;
  linearBackwardRef(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array | null, w: Float32Array | null, M: number, N: number, K: number): void;
  rmsnormBackward(dx: Float32Array | null, dw: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  rmsnormBackwardRef(dx: Float32Array | null, dw: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  layernormBackward(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  layernormBackwardRef(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  activationBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, kind: NativeActivation): void;
  activationBackwardRef(dx: Float32Array, dy: Float32Array, x: Float32Array, kind: NativeActivation): void;
  gatedBackward(dgate: Float32Array | null, dup: Float32Array | null, dy: Float32Array, gate: Float32Array, up: Float32Array, kind: NativeActivation): void;
  gatedBackwardRef(dgate: Float32Array | null, dup: Float32Array | null, dy: Float32Array, gate: Float32Array, up: Float32Array, kind: NativeActivation): void;
  /** Inverse rotation of the leading `rot` dims (default Dh) of each head; cos/sin [M, rot/2]. */
  ropeBackward(dx: Float32Array, cos: Float32Array, sin: Float32Array, M: number, nheads: number, Dh: number, rot?: number): void;
  ropeBackwardRef(dx: Float32Array, cos: Float32Array, sin: Float32Array, M: number, nheads: number, Dh: number, rot?: number): void;
  attentionBackward(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, keyMask: Uint8Array | null, B: number, T: number, H: number, Hk: number, Dh: number, scale: number, window?: number): void;
  attentionBackwardRef(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, keyMask: Uint8Array | null, B: number, T: number, H: number, Hk: number, Dh: number, scale: number, window?: number): void;
  mseForwardBackward(da: Float32Array | null, a: Float32Array, b: Float32Array): number;
  mseForwardBackwardRef(da: Float32Array | null, a: Float32Array, b: Float32Array): number;
  adamwStep(params: Float32Array[], grads: Float32Array[], m: Float32Array[], v: Float32Array[], options: NativeAdamWOptions): void;
  gradNorm(grads: Float32Array[]): number;
  clipGradNorm(grads: Float32Array[], maxNorm: number): { norm: number; scale: number };
  // The training steps keep their large work buffers for the next micro-batch (native/include/streamline/scratch.h:
  // page faults and TLB shootdowns cost ~7-20 % of a CPU step otherwise). scratchTrim frees them (the trainer calls it
  // when a run ends) and returns the bytes released; scratchBytes says how many are held now.
  scratchTrim(): number;
  scratchBytes(): number;
  // Replacement training (binding_replacement.cpp), off the JS thread. params/grads by role (f32 master
  // tensors, flat); grads accumulate and may omit frozen roles; the loss is the MSE over real tokens.
  // Buffers must not be touched from JS until the promise settles.
  /** gradScale (optional) multiplies spec.gradScale: the share of the optimiser step's loss this micro-batch carries. */
  replacementStep(kind: 'mlp' | 'layer', spec: NativeReplacementSpec, params: NativeReplacementParams, grads: NativeReplacementParams, x: Float32Array, target: Float32Array, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null, gradScale?: number): Promise<number>;
  /** Forward and loss only (validation). */
  replacementLoss(kind: 'mlp' | 'layer', spec: NativeReplacementSpec, params: NativeReplacementParams, x: Float32Array, target: Float32Array, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null): Promise<number>;
  replacementForward(kind: 'mlp' | 'layer', spec: NativeReplacementSpec, params: NativeReplacementParams, out: Float32Array, x: Float32Array, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null): Promise<void>;
  // The `lm` objective (binding_lmloss.cpp, issue 9): replacement → frozen layers (the model's layers after the
  // window, same spec, any float dtype, read in place) → final norm + lm_head → mean next-token NLL over rows
  // with targets >= 0. Only the replacement gets gradients (accumulated into grads as replacementStep does).
  lmLossStep(kind: 'mlp' | 'layer', spec: NativeReplacementSpec, params: NativeReplacementParams, grads: NativeReplacementParams, x: Float32Array, layers: NativeLayerWeights[], headWeights: NativeHeadWeights, targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null, gradScale?: number): Promise<number>;
  /** Loss only (validation). */
  lmLossEval(kind: 'mlp' | 'layer', spec: NativeReplacementSpec, params: NativeReplacementParams, x: Float32Array, layers: NativeLayerWeights[], headWeights: NativeHeadWeights, targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null): Promise<number>;
  /** dx = dL/dx of one frozen pre-norm decoder layer for dy = dL/dout (forward recomputed; no weight gradients). */
  frozenLayerBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, spec: NativeReplacementSpec, weights: NativeLayerWeights, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null): Promise<void>;
  /** Mean next-token NLL of the head on x[M, hidden] and (dh not null) dh = gradScale · dloss/dx; -1 when no target. */
  headLossBackward(dh: Float32Array | null, x: Float32Array, M: number, spec: { hidden: number; norm: 'rms' | 'layer'; normEps: number }, headWeights: NativeHeadWeights, targets: Int32Array, gradScale?: number): Promise<number>;
  // ---- end of backward block

  // ---- forward kernels (binding_ops.cpp): synchronous, fast path and `...Ref` plain reference.
  // Lengths are checked against the dimensions (E_SHAPE); activations are f32, weights any float dtype.
  rmsnormForward(y: Float32Array, x: Float32Array, w: NativeTensor | null, M: number, D: number, eps: number): void;
  rmsnormForwardRef(y: Float32Array, x: Float32Array, w: NativeTensor | null, M: number, D: number, eps: number): void;
  layernormForward(y: Float32Array, x: Float32Array, w: NativeTensor | null, b: NativeTensor | null, M: number, D: number, eps: number): void;
  layernormForwardRef(y: Float32Array, x: Float32Array, w: NativeTensor | null, b: NativeTensor | null, M: number, D: number, eps: number): void;
  /** out[M, D] = table[ids]; throws E_TOKEN_RANGE naming the first id outside [0, V). */
  embeddingForward(out: Float32Array, ids: Int32Array, table: NativeTensor): void;
  /** cos/sin [M, half] for positions[M] and invFreq[half], times attentionScaling (default 1). */
  ropeTables(cos: Float32Array, sin: Float32Array, positions: Int32Array, invFreq: Float32Array, attentionScaling?: number): void;
  /** In place on x[M, nheads, Dh], rotate-half layout. */
  /** Rotates the leading `rot` dims (default Dh) of each head in place; cos/sin [M, rot/2]. */
  ropeForward(x: Float32Array, cos: Float32Array, sin: Float32Array, M: number, nheads: number, Dh: number, rot?: number): void;
  ropeForwardRef(x: Float32Array, cos: Float32Array, sin: Float32Array, M: number, nheads: number, Dh: number, rot?: number): void;
  /** Causal GQA: q[B,T,H,Dh], k/v[B,T,Hk,Dh], out[B,T,H,Dh], lse[B,H,T], keyMask[B,T] (1 = real); window > 0: query i
   * sees only keys j with i - j < window (sliding-window attention). */
  attentionForward(out: Float32Array, lse: Float32Array | null, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Uint8Array | null, B: number, T: number, H: number, Hk: number, Dh: number, scale: number, window?: number): void;
  attentionForwardRef(out: Float32Array, lse: Float32Array | null, q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Uint8Array | null, B: number, T: number, H: number, Hk: number, Dh: number, scale: number, window?: number): void;
  activationForward(y: Float32Array, x: Float32Array, kind: NativeActivation): void;
  activationForwardRef(y: Float32Array, x: Float32Array, kind: NativeActivation): void;
  /** y = act(gate) * up. */
  gatedForward(y: Float32Array, gate: Float32Array, up: Float32Array, kind: NativeActivation): void;
  gatedForwardRef(y: Float32Array, gate: Float32Array, up: Float32Array, kind: NativeActivation): void;
  logSoftmaxForward(y: Float32Array, x: Float32Array, M: number, V: number): void;
  logSoftmaxForwardRef(y: Float32Array, x: Float32Array, M: number, V: number): void;
  /** lp[m] = log_softmax(logits[m])[targets[m]], 0 where targets[m] < 0; E_TOKEN_RANGE for targets >= V. */
  tokenLogprobs(lp: Float32Array, logits: Float32Array, targets: Int32Array, M: number, V: number): void;
  /** y[M, N] = x[M, K] · w[N, K]^T + bias[N]. */
  linearForward(y: Float32Array, x: Float32Array, w: NativeTensor, bias: Float32Array | null, M: number, N: number, K: number): void;
  linearForwardRef(y: Float32Array, x: Float32Array, w: NativeTensor, bias: Float32Array | null, M: number, N: number, K: number): void;

  // ---- layers (binding_model.cpp): asynchronous; every size and weight shape is checked before work starts.
  /** One decoder layer on x[batch*seqLen, hidden]; out may be x. positions/ropeInvFreq are required with useRope. */
  decoderLayerForward(out: Float32Array, x: Float32Array, spec: NativeLayerSpec, weights: NativeLayerWeights, positions: Int32Array | null, keyMask: Uint8Array | null, ropeInvFreq: Float32Array | null, captures: { attnResidual?: Float32Array; mlpOut?: Float32Array } | null): Promise<void>;
  /**
   * Pre-norm: out = x + MLP(n2(x)) (x + post_mlp_norm(MLP(n2(x))) with that weight); post-norm: out = n2(x + MLP(x)).
   * mlpOut receives what is added to the residual when given.
   */
  mlpBlockForward(out: Float32Array, x: Float32Array, spec: NativeMlpSpec, weights: NativeLayerWeights, mlpOut?: Float32Array | null): Promise<void>;
  /** Final norm, optional project_out, lm_head; logits [M, V] and/or log-probs of targets [M]. */
  headForward(x: Float32Array, M: number, spec: NativeHeadSpec, weights: NativeHeadWeights, targets: Int32Array | null, logitsOut: Float32Array | null, logprobsOut: Float32Array | null): Promise<void>;
};

export type NativeActivation = 'silu' | 'relu' | 'gelu' | 'gelu_tanh';

/** The MLP half of a layer spec (mlpBlockForward). */
export interface NativeMlpSpec {
  batch: number;
  seqLen: number;
  hidden: number;
  intermediate: number;
  norm: 'rms' | 'layer';
  normEps: number;
  activation: NativeActivation;
  /** down(act(gate(x)) * up(x)) when true (default); down(act(up(x))) when false. */
  gatedMlp?: boolean;
  /** false: OPT do_layer_norm_before = false (norm after each residual add). Default true. */
  preNorm?: boolean;
}

/** A full decoder layer spec (decoderLayerForward). */
export interface NativeLayerSpec extends NativeMlpSpec {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Default true. */
  useRope?: boolean;
  /** Score scale; 0 or absent means 1/sqrt(headDim). */
  attnScale?: number;
  /** Multiplies cos and sin (llama3/yarn attention scaling). Default 1. */
  ropeAttentionScaling?: number;
  /** Sliding-window attention: keys per query (i − j < window). 0 or absent: full causal attention. */
  window?: number;
  /** RoPE on the leading rotaryDim dims of each head (even, ≤ headDim; Phi-3 partial_rotary_factor). 0 or absent: headDim. */
  rotaryDim?: number;
}

export type NativeLayerRole =
  | 'attn_norm.weight' | 'attn_norm.bias' | 'q.weight' | 'q.bias' | 'k.weight' | 'k.bias' | 'v.weight' | 'v.bias'
  | 'o.weight' | 'o.bias' | 'mlp_norm.weight' | 'mlp_norm.bias' | 'gate.weight' | 'gate.bias' | 'up.weight' | 'up.bias'
  | 'down.weight' | 'down.bias' | 'q_norm.weight' | 'k_norm.weight' | 'post_attn_norm.weight' | 'post_mlp_norm.weight';
export type NativeLayerWeights = Partial<Record<NativeLayerRole, NativeTensor | null>>;

export interface NativeHeadSpec {
  hidden: number;
  vocab: number;
  /** 'none': no final norm (OPT post-norm models). */
  norm: 'rms' | 'layer' | 'none';
  normEps: number;
  /** OPT word_embed_proj_dim when the model has project_out. */
  projDim?: number;
}
export type NativeHeadWeights = Partial<
  Record<'final_norm.weight' | 'final_norm.bias' | 'project_out.weight' | 'lm_head.weight', NativeTensor | null>
>;

let cached: NativeAddon | undefined;

/**
 * The addon, loaded once: node-gyp-build picks build/Release (a source build) before prebuilds/<platform>-<arch>
 * (the published binary). STREAMLINE_NATIVE_PATH points at a specific `.node` file (tests, custom builds).
 * OpenBLAS's core type (OPENBLAS_CORETYPE) is chosen inside the addon from CPUID when unset, before OpenBLAS
 * initialises (native/src/cpu_features.cpp).
 */
export function native(): NativeAddon {
  if (cached) return cached;
  const explicit = process.env.STREAMLINE_NATIVE_PATH;
  try {
    cached = (explicit ? require(path.resolve(explicit)) : require('node-gyp-build')(packageRoot)) as NativeAddon;
  } catch (e) {
    const err = new Error(
      `could not load the Streamline native addon: ${(e as Error).message}\n` +
        'Possible solutions:\n' +
        '- in the repository: run `bash scripts/setup.sh` or `pnpm run build:native`;\n' +
        '- install a package version that ships a prebuilt binary for ' + `${process.platform}-${process.arch}, ` +
        'or build one from source (see the @streamline/core README);\n' +
        '- set STREAMLINE_NATIVE_PATH to a built streamline.node.',
    );
    (err as Error & { code: string }).code = 'E_NATIVE_LOAD';
    throw err;
  }
  return cached;
}

/** Fused cosine scoring (native/binding/binding_score.cpp). */
export interface NativeScoring {
  /** Adds [sum of cosines, tokens counted, zero-norm tokens] for one pair into out (Float64Array(3)). */
  cosineAccumulate(out: Float64Array, a: Float32Array, b: Float32Array, mask: Uint8Array | null, M: number, D: number, useRef?: boolean): void;
  /** The same for pairs (states[pairs[2p]], states[pairs[2p+1]]), off the JS thread; out has 3 values per pair. */
  cosinePairsAccumulate(out: Float64Array, states: Float32Array[], pairs: Int32Array, mask: Uint8Array | null, M: number, D: number): Promise<void>;
}

/** The CUDA backend's C API behind a JS object (native/binding/binding_cuda.cpp); throws E_CUDA_UNAVAILABLE without it. */
export interface NativeCuda {
  /** Creates a device context for batches of spec.batch x spec.seqLen tokens (off the JS thread). */
  cudaContext(spec: NativeCudaSpec): Promise<NativeCudaContext>;
  /** Bytes of device memory the backend holds now and at most since the last reset. */
  cudaMemory(resetPeak?: boolean): { current: number; peak: number };
  /**
   * A replacement trainer on the GPU (native/binding/binding_cuda_train.cpp): params are copied to the device;
   * spec.batch is the largest micro-batch a step may take; spec.gradScale must be absent (it is per step).
   * ropeInvFreq [headDim/2] is required when the spec has heads and RoPE, for an `mlp` trainer too (the frozen layers
   * of an lm tail rotate), else may be null.
   */
  cudaTrainer(kind: 'mlp' | 'layer', spec: NativeReplacementSpec, params: NativeReplacementParams, ropeInvFreq: Float32Array | null): Promise<NativeCudaTrainer>;
}

/** AdamW and clipping options of one optimiser step on the GPU; maxNorm <= 0: no clipping. */
export interface NativeCudaAdamWOptions extends NativeAdamWOptions {
  maxNorm: number;
}

/**
 * One replacement's training state on the GPU (cuda/streamline_cuda.h, streamline_cuda_train_*): f32 master weights,
 * gradients and AdamW moments, with the CPU trainer's semantics (replacementStep, or lmLossStep with a tail set, +
 * clipGradNorm + adamwStep).
 * One call at a time (E_CUDA_BUSY otherwise), except that stage and stepStaged may overlap, and so may stageLm and
 * stepLmStaged (never a stage of one loss with a staged step of the other); errors carry code E_CUDA and the backend's
 * message.
 */
export interface NativeCudaTrainer {
  /** One micro-batch of `batch` blocks: gradients += gradScale · dloss; resolves to the MSE over real tokens. */
  step(x: Float32Array, target: Float32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number, gradScale?: number): Promise<number>;
  /** Clip, AdamW, zero the gradients; resolves to the norm before clipping (not finite: nothing was updated). */
  apply(options: NativeCudaAdamWOptions): Promise<number>;
  /** A role's f32 master weights (a new array). */
  getParams(role: NativeLayerRole): Promise<Float32Array>;
  /** A role's accumulated gradient (a new array). */
  getGrads(role: NativeLayerRole): Promise<Float32Array>;
  /** Whether the backend exports the checkpoint functions (getState/setState); an older backend throws E_UNSUPPORTED. */
  hasState(): boolean;
  /** A role's f32 master weights and AdamW moments (new arrays), for a checkpoint between optimiser steps. */
  getState(role: NativeLayerRole): Promise<NativeCudaTrainState>;
  /** Overwrites a role's weights and moments (copied; resume). Gradients are not state: call between apply and step. */
  setState(role: NativeLayerRole, state: NativeCudaTrainState): Promise<void>;
  /** Whether the backend exports eval (streamline_cuda_train_eval); an older backend throws E_UNSUPPORTED from eval. */
  hasEval(): boolean;
  /**
   * Validation: each of the `batch` blocks' MSE over its real tokens under the current weights (replacementLoss of
   * that block alone), forward only: gradients, weights and moments are untouched. Inputs as in step.
   */
  eval(x: Float32Array, target: Float32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<Float64Array>;
  /** Whether the backend exports stage/stepStaged (streamline_cuda_train_stage); an older backend has only step. */
  hasStage(): boolean;
  /**
   * Uploads a micro-batch (inputs as in step) into the trainer's idle device input slot (there are two) so that its
   * copy overlaps a step in flight: the one call allowed while stepStaged runs (and the reverse). The arrays may change
   * once it settles. E_CUDA when both slots hold batches not yet stepped.
   */
  stage(x: Float32Array, target: Float32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<void>;
  /** step on the oldest staged batch (bitwise step's result on the same inputs); E_CUDA when none is staged. */
  stepStaged(gradScale?: number): Promise<number>;
  /**
   * Whether the backend exports the lm loss (streamline_cuda_train_set_lm_tail, train_step_lm, train_eval_lm); an
   * older backend throws E_UNSUPPORTED from setLmTail, stepLm and evalLm, and `--loss lm` then trains on the CPU.
   */
  hasLm(): boolean;
  /**
   * The frozen rest of the model that stepLm and evalLm run the replacement's output through: the layers after the
   * window in order (any float dtype, read as lmLossStep reads them; the trainer's spec as a full decoder layer, so an
   * `mlp` trainer needs heads, kvHeads and headDim in its spec when there are layers, and ropeInvFreq with RoPE) and
   * the head (`lm_head.weight` [vocab, hidden], the tied embedding where there is none; the final norm when present).
   * Copied to the device before the promise settles; replaces an earlier tail. Throws E_UNSUPPORTED for gate.bias and
   * OPT project_out (as lmLossStep), E_SHAPE for weights that do not fit the spec, E_CUDA when the device is out of
   * memory (nothing changed then).
   */
  setLmTail(layers: NativeLayerWeights[], head: NativeHeadWeights): Promise<void>;
  /** Whether the backend takes sliding windows (streamline_cuda_train_set_windows); an older one throws E_UNSUPPORTED. */
  hasWindows(): boolean;
  /**
   * Sliding-window attention for the following steps and evaluations: the `layer` replacement's window and the lm
   * tail's, one per frozen layer ([] without a tail); 0 = full causal. Call after setLmTail, which resets the tail's.
   * E_CUDA when tailWindows does not match the tail, or a window is given to an `mlp` replacement.
   */
  setWindows(window: number, tailWindows: readonly number[]): void;
  /**
   * One micro-batch with the next-token loss (lmLossStep's semantics): targets[batch·seqLen] is the token id each row
   * predicts (-1 = none; see nextTokenTargets); gradients += gradScale · dloss; resolves to the mean NLL (nats) over
   * the rows with a target (0, and no gradient, when none has). E_CUDA (with the backend's message) without a tail
   * (setLmTail first) or for a target >= vocab.
   */
  stepLm(x: Float32Array, targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number, gradScale?: number): Promise<number>;
  /**
   * Validation with the lm loss: each of the `batch` blocks' mean next-token NLL over its rows with a target (0 when
   * none): lmLossEval of that block alone. Forward only, no state changes. Inputs and errors as in stepLm.
   */
  evalLm(x: Float32Array, targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<Float64Array>;
  /**
   * Whether the backend exports prefetch for the lm loss (streamline_cuda_train_stage_lm, train_step_lm_staged; only
   * with hasLm()); an older backend throws E_UNSUPPORTED from stageLm and stepLmStaged, and lm micro-batches go
   * through stepLm.
   */
  hasStageLm(): boolean;
  /**
   * stage with stepLm's inputs: uploads an lm micro-batch into the idle input slot (the two slots stage uses: a third
   * batch staged by either fails with E_CUDA) while a stepLmStaged runs. The backend checks the targets here: E_CUDA
   * naming the row for one >= vocab, and without a tail (setLmTail first). The arrays may change once it settles.
   */
  stageLm(x: Float32Array, targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<void>;
  /**
   * stepLm on the oldest staged batch (bitwise stepLm's loss and gradients on the same inputs). E_CUDA when none is
   * staged, or when the oldest was staged by stage (the mse loss: it stays staged for stepStaged); stepStaged likewise
   * refuses a batch staged by stageLm.
   */
  stepLmStaged(gradScale?: number): Promise<number>;
  /**
   * Whether the backend exports the bf16 stages (streamline_cuda_train_stage_bf16, and train_stage_lm_bf16 where
   * hasStageLm()); an older backend throws E_UNSUPPORTED from them, and the caller widens on the host and stages f32.
   */
  hasStageBf16(): boolean;
  /**
   * stage with the states as bf16 bits and one array per sequence (a bf16 pair cache's blocks as they are stored:
   * xRows[b] and targetRows[b] are sequence b's [seqLen·hidden]). Half the bytes cross the bus, the host widens and
   * gathers nothing, the GPU widens (exactly), so stepStaged gives stage's result on the widened values.
   */
  stageBf16(xRows: Uint16Array[], targetRows: Uint16Array[], positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<void>;
  /** stageLm with x as bf16 rows, one array per sequence (see stageBf16). */
  stageLmBf16(xRows: Uint16Array[], targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<void>;
  /** Whether the backend can keep training pairs on the GPU (keepPairs, putPair, stageKept; stageLmKept with hasStageLm()). */
  hasKeptPairs(): boolean;
  /**
   * Reserves GPU storage for `blocks` bf16 pairs (x, and the target when `targets`) if that, with the trainer's own
   * later allocations, fits in maxFraction of the free device memory: true; false (nothing reserved) otherwise.
   * Between steps only; once per trainer.
   */
  keepPairs(blocks: number, targets: boolean, maxFraction: number): Promise<boolean>;
  /** Copies block `block`'s bf16 states ([seqLen·hidden] each; target null when kept without targets) to the GPU. */
  putPair(block: number, x: Uint16Array, target: Uint16Array | null): Promise<void>;
  /** stage from kept blocks by index (blocks[batch]), device to device: stepStaged gives stageBf16's result on them. */
  stageKept(blocks: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<void>;
  /** stageLm from kept blocks by index (see stageKept). */
  stageLmKept(blocks: Int32Array, targets: Int32Array, positions: Int32Array | null, keyMask: Uint8Array | null, batch: number): Promise<void>;
  /** Frees the device memory now (a finalizer does it otherwise). */
  destroy(): void;
}

/** One role's optimiser state on the GPU: weights and AdamW first/second moments, each of the role's size. */
export interface NativeCudaTrainState {
  param: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/** The engine's layer spec plus rotDim (rotated dims per head; 0 = headDim) and mlpOnly (the `mlp` replacement block). */
export type NativeCudaSpec = NativeLayerSpec & { rotDim?: number; mlpOnly?: boolean };

/**
 * One batch on the GPU: the hidden state, two weight slots and saved boundary states (cuda/streamline_cuda.h).
 * One call at a time (E_CUDA_BUSY otherwise); errors carry code E_CUDA and the backend's message.
 */
export interface NativeCudaContext {
  /** positions [M], key mask [M] (1 = real), RoPE inverse frequencies [rotDim/2] (null without RoPE). */
  setInputs(positions: Int32Array | null, keyMask: Uint8Array | null, invFreq: Float32Array | null, attentionScaling: number): void;
  uploadHidden(h: Float32Array): Promise<void>;
  downloadHidden(out: Float32Array): Promise<void>;
  /**
   * Weights as tensors (e.g. the memory-mapped views) or bare f32 arrays shaped as the spec implies. Settles once the
   * host memory is staged; the device copy overlaps with the other slot's layer.
   */
  uploadLayer(slot: 0 | 1, weights: Partial<Record<NativeLayerRole, NativeTensor | Float32Array | null>>): Promise<void>;
  /**
   * h = layer(h) with that slot's weights; window > 0: sliding-window attention (keys per query). E_UNSUPPORTED for a
   * window when the backend library predates streamline_cuda_set_window.
   */
  runLayer(slot: 0 | 1, window?: number): Promise<void>;
  saveState(index: number): void;
  /** [sum of cosines, tokens counted, zero-norm tokens] of saved states i and j over the batch's real tokens. */
  cosineStates(i: number, j: number): Promise<[number, number, number]>;
  uploadHead(spec: NativeHeadSpec, weights: NativeHeadWeights): Promise<void>;
  headLogprobs(targets: Int32Array, out: Float32Array): Promise<void>;
  synchronize(): Promise<void>;
  /** Frees the device memory now (a finalizer does it otherwise). */
  destroy(): void;
}

/** Least squares for the `linear` replacement (native/binding/binding_linalg.cpp). */
export interface NativeLinalg {
  /** XtX += XᵀX, XtY += XᵀY over unmasked rows, in f64. Async unless useRef (the plain reference, synchronous). */
  normalEquationsAccumulate(XtX: Float64Array, XtY: Float64Array, X: Float32Array, Y: Float32Array, mask: Uint8Array | null, M: number, D: number, E: number, useRef?: boolean): Promise<void> | void;
  /** Solves (XtX + ridge·I) T = XtY into T; rejects with E_LINEAR_SOLVE. */
  solveNormalEquations(T: Float32Array, XtX: Float64Array, XtY: Float64Array, D: number, E: number, ridge: number): Promise<void>;
  /** Wout[D,F] = Tᵀ · Win. */
  foldLeft(Wout: Float32Array, T: Float32Array, Win: NativeTensor, D: number, F: number): Promise<void>;
  /** Eout[V,D] = Ein · T. */
  foldRight(Eout: Float32Array, Ein: NativeTensor, T: Float32Array, V: number, D: number): Promise<void>;
}
