/**
 * The native layer spec (what decoderLayerForward, the training bindings and the CUDA context read) from a
 * model's layer semantics: one place, so the CPU, training and CUDA paths can never describe a layer differently.
 */
import type { NativeLayerSpec } from '../native.js';
import type { LayerSemantics } from './description.js';

/**
 * The window the kernels need for rows of T positions: 0 when there is none or it is at least T (it then masks
 * nothing, and asks nothing of a backend built before sliding windows).
 */
export function maskingWindow(window: number | undefined, T: number): number {
  return window !== undefined && window > 0 && window < T ? window : 0;
}

/**
 * Spec of a batch of B rows of T tokens.
 * @param useRope whether the model rotates q and k (false for learned positions, e.g. OPT)
 * @param ropeAttentionScaling multiplies cos and sin (1 unless the RoPE variant scales attention)
 * @param window the layer's sliding window (LayerSource.window; absent or 0 = full causal attention)
 */
export function nativeLayerSpec(s: LayerSemantics, B: number, T: number, useRope: boolean, ropeAttentionScaling: number,
                                window = 0): NativeLayerSpec {
  return {
    batch: B, seqLen: T, hidden: s.hidden, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim,
    intermediate: s.intermediate, norm: s.norm, normEps: s.normEps, activation: s.activation, gatedMlp: s.gatedMlp,
    preNorm: s.preNorm, useRope, attnScale: s.attnScale, ropeAttentionScaling, window,
    ...(useRope && s.rotaryDim !== undefined ? { rotaryDim: s.rotaryDim } : {}),
  };
}
