/**
 * What the execution engine needs to know about a model, independent of where it came from: dimensions,
 * layer semantics and where each layer's weights are. Built from a model directory by `describeModel`
 * (model-dir.ts); pruned models in memory are descriptions whose layers point at other sources.
 */
import type { RopeParams } from './rope.js';

/** A weight the native code can read in place: bytes, dtype name and shape. */
export interface WeightView {
  data: Uint8Array;
  dtype: string;
  shape: readonly number[];
}

import type { GlobalRole, LayerRole } from '../arch/types.js';

export type { GlobalRole, LayerRole };

/** How one decoder layer computes (shared by all layers of a model). */
export interface LayerSemantics {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  norm: 'rms' | 'layer';
  normEps: number;
  activation: 'silu' | 'relu' | 'gelu' | 'gelu_tanh';
  gatedMlp: boolean;
  /** false: OPT's post-norm layers (do_layer_norm_before = false). */
  preNorm: boolean;
  attnScale: number;
  /** RoPE rotates only the leading rotaryDim dims of each head (Phi-3 partial_rotary_factor); absent: all headDim. */
  rotaryDim?: number;
  /**
   * Per-head RMSNorm of queries and keys before RoPE (Qwen3 q_norm / k_norm roles). The CPU engine runs it from the
   * weights alone; this flag is what keeps such a model off the CUDA backend, which does not implement it.
   */
  qkNorm?: boolean;
  /**
   * Each sub-block's output is normed before its residual add (Gemma 2/3 post_attn_norm / post_mlp_norm roles). The
   * CPU engine runs it from the weights alone; this flag keeps such a model off the CUDA backend, which has no kernel
   * for it.
   */
  postNorms?: boolean;
}

/**
 * One entry of the layer sequence the engine runs: a decoder layer (original, or a trained replacement in the
 * same format), or an `mlp` replacement block computing x + MLP(norm(x)).
 */
export interface LayerSource {
  kind: 'decoder' | 'mlp';
  /** Weights by role, loaded lazily so only the running layer's pages are touched. */
  weights: () => Partial<Record<LayerRole, WeightView>>;
  /** Where the layer came from, for reports (e.g. "layer 12", "replacement of [4, 8)"). */
  label: string;
  /**
   * Sliding-window attention: query i sees only keys j with i − j < window (Mistral's `sliding_window`, Qwen2's
   * sliding layers). Absent or 0: full causal attention.
   */
  window?: number;
  /**
   * This layer's RoPE when it differs from the model's (Gemma 3's sliding layers; ModelConfig.ropeByLayerType).
   * Absent: `ModelDescription.rope`. Layers of one kind share one object, so identity tells ropes apart cheaply.
   * Same `dim` as the model's rope (LayerSemantics.rotaryDim is per model).
   */
  rope?: RopeParams;
}

export interface ModelDescription {
  modelType: string;
  vocab: number;
  semantics: LayerSemantics;
  /** RoPE parameters; null for learned positions (OPT). */
  rope: RopeParams | null;
  /** OPT: learned positions indexed by position + offset. */
  learnedPositionOffset: number | null;
  /** A final norm is applied before the LM head (false for OPT post-norm models). */
  finalNorm: boolean;
  /** OPT: word_embed_proj_dim when it differs from hidden. */
  projDim: number | null;
  /** Longest input in positions (max_position_embeddings). */
  maxPositionEmbeddings: number;
  layers: LayerSource[];
  global: () => Partial<Record<GlobalRole, WeightView>>;
}

/** The RoPE a layer runs with: its own (LayerSource.rope) or the model's; null for learned positions. */
export function layerRope(desc: Pick<ModelDescription, 'rope'>, layer: Pick<LayerSource, 'rope'>): RopeParams | null {
  return layer.rope ?? desc.rope;
}
