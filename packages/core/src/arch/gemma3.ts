/**
 * Gemma 3 text models (`model_type: gemma3_text`, Gemma3ForCausalLM: Gemma 3 270M and 1B; configuration_gemma3.py,
 * modeling_gemma3.py). Llama's tensor layout plus:
 * - four RMSNorms per layer ("sandwich"): `input_layernorm` before attention, `post_attention_layernorm` on the
 *   attention OUTPUT before its residual add, `pre_feedforward_layernorm` before the MLP, `post_feedforward_layernorm`
 *   on the MLP output; per-head `q_norm` / `k_norm` before RoPE (as Qwen3);
 * - every norm weight is stored as an offset from one (the norm multiplies by 1 + w, in f32): `normWeightOffset`
 *   makes the model directory hand the engine 1 + w, and export writes trained values back as w;
 * - token embeddings times sqrt(hidden_size) rounded to the embedding dtype; scores times
 *   query_pre_attn_scalar^-0.5 (default 256), not head_dim^-0.5; GeGLU MLP (`hidden_activation`, gelu_pytorch_tanh);
 * - sliding-window layers (`layer_types`, or without it every `sliding_window_pattern`-th layer, default 6th, is
 *   full attention) rotate with `rope_local_base_freq` (10000) and no scaling; full-attention layers with `rope_theta`
 *   (1e6) and `rope_scaling`. transformers 5 writes both as `rope_parameters: {full_attention, sliding_attention}`.
 * Defaults: head_dim 256, 4 KV heads, max_position_embeddings 131072, rms_norm_eps 1e-6, tied embeddings, pad 0,
 * eos 1, bos 2. Attention/final logit soft-capping (Gemma 2) and bidirectional attention (EmbeddingGemma) are refused.
 */
import { boolField, fieldError, intField, numField, ropeField, type RawConfig, type RopeContext } from '../config-fields.js';
import type { ModelConfig, RopeConfig } from '../config.js';
import { StreamlineError } from '../errors.js';
import { defineAdapter } from './common.js';
import { LLAMA_LAYER_NAMES, LLAMA_SPEC, llamaLayerShapes, llamaTraits, parseLlamaLike } from './llama.js';
import type { ArchSpec } from './types.js';

type LayerType = ModelConfig['layerTypes'][number];

function gemmaWindow(r: RawConfig, n: number): { slidingWindow: number | null; layerTypes: LayerType[] } {
  const given = r.json.layer_types;
  let layerTypes: LayerType[];
  if (given !== undefined && given !== null) {
    if (!Array.isArray(given) || given.length !== n || !given.every((t) => t === 'full_attention' || t === 'sliding_attention'))
      fieldError(r, 'layer_types', `a list of ${n} 'full_attention' / 'sliding_attention' entries`, given);
    layerTypes = [...given];
  } else {
    const pattern = intField(r, 'sliding_window_pattern', 6);
    layerTypes = Array.from({ length: n }, (_, i) => ((i + 1) % pattern ? 'sliding_attention' : 'full_attention'));
  }
  const sliding = layerTypes.includes('sliding_attention');
  if (sliding && r.json.sliding_window === null) fieldError(r, 'sliding_window', 'an integer >= 1 (layer_types has sliding layers)', null);
  return { slidingWindow: sliding ? intField(r, 'sliding_window', 4096) : null, layerTypes };
}

/**
 * The RoPE of full-attention and of sliding layers. The per-type `rope_parameters` object of transformers 5 is parsed
 * one type at a time as if it were the config's own `rope_parameters`.
 */
function gemmaRopes(r: RawConfig, ctx: RopeContext): { full: RopeConfig; sliding: RopeConfig } {
  const rp = r.json.rope_parameters;
  const perType = typeof rp === 'object' && rp !== null && !Array.isArray(rp) && ('full_attention' in rp || 'sliding_attention' in rp);
  const as = (json: Record<string, unknown>): RawConfig => ({ json: { ...r.json, rope_scaling: null, rope_theta: null, ...json }, file: r.file });
  if (perType) {
    const p = rp as Record<string, unknown>;
    return {
      full: ropeField(as({ rope_parameters: p.full_attention ?? null }), 1e6, ctx),
      sliding: ropeField(as({ rope_parameters: p.sliding_attention ?? null }), 10000, ctx),
    };
  }
  return {
    full: ropeField(r, 1e6, ctx),
    sliding: ropeField(as({ rope_parameters: null, rope_theta: numField(r, 'rope_local_base_freq', 10000) }), 10000, ctx),
  };
}

function parseGemma3(raw: RawConfig): ModelConfig {
  const j = raw.json;
  for (const key of ['attn_logit_softcapping', 'final_logit_softcapping'])
    if (j[key] !== undefined && j[key] !== null)
      throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${raw.file}: ${key} ${JSON.stringify(j[key])} (tanh soft-capping) is not supported; only null`, { file: raw.file });
  if (boolField(raw, 'use_bidirectional_attention', false))
    throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${raw.file}: use_bidirectional_attention true (an embedding model, e.g. EmbeddingGemma) is not supported: layer pruning here scores causal language models`, { file: raw.file });
  // parseLlamaLike reads one RoPE: hand it the full-attention one, and keep the file's own JSON for export.
  const rp = j.rope_parameters;
  const perType = typeof rp === 'object' && rp !== null && 'full_attention' in rp;
  const base = parseLlamaLike(perType ? { json: { ...j, rope_parameters: (rp as Record<string, unknown>).full_attention }, file: raw.file } : raw, {
    modelType: 'gemma3_text', causalLMClass: 'Gemma3ForCausalLM', kvHeadsIfAbsent: 4, maxPositionEmbeddings: 131072,
    headDimIfAbsent: 256, rmsNormEps: 1e-6, bosTokenId: 2, eosTokenId: 1, padTokenId: 0, ropeTheta: 1e6,
    tieWordEmbeddings: true, activation: { key: 'hidden_activation', def: 'gelu_pytorch_tanh' },
    biases: (r) => {
      const attentionBias = boolField(r, 'attention_bias', false);
      return { attentionBias, attentionOutBias: attentionBias, mlpBias: false };
    },
    window: gemmaWindow,
  });
  const ropes = gemmaRopes(raw, { headDim: base.headDim, maxPositionEmbeddings: base.maxPositionEmbeddings });
  return {
    ...base,
    rope: ropes.full,
    ropeByLayerType: { sliding_attention: ropes.sliding },
    attentionScale: numField(raw, 'query_pre_attn_scalar', 256) ** -0.5,
    embedScale: Math.sqrt(base.hiddenSize),
    raw: Object.freeze({ ...j }),
  };
}

export const GEMMA3_SPEC: ArchSpec = {
  ...LLAMA_SPEC,
  modelType: 'gemma3_text',
  causalLMClass: 'Gemma3ForCausalLM',
  layerNames: {
    ...LLAMA_LAYER_NAMES,
    'post_attn_norm.weight': 'model.layers.{i}.post_attention_layernorm.weight',
    'mlp_norm.weight': 'model.layers.{i}.pre_feedforward_layernorm.weight',
    'post_mlp_norm.weight': 'model.layers.{i}.post_feedforward_layernorm.weight',
  },
  normWeightOffset: 1,
  derivedLayerLists: (c: ModelConfig) => ({ layer_types: c.layerTypes }),
  parseConfig: parseGemma3,
  traits: (c: ModelConfig) => ({ ...llamaTraits(c), qkNorm: true, postNorms: true }),
  layerShapes: (c: ModelConfig) => ({
    ...llamaLayerShapes(c), 'q_norm.weight': [c.headDim], 'k_norm.weight': [c.headDim],
    'post_attn_norm.weight': [c.hiddenSize], 'post_mlp_norm.weight': [c.hiddenSize],
  }),
};

/** The Gemma 3 (text) adapter. */
export const gemma3 = defineAdapter(GEMMA3_SPEC);
