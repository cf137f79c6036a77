/**
 * Llama (LlamaForCausalLM): RMSNorm pre-norm, RoPE, SwiGLU MLP, optional attention/MLP biases.
 * Config defaults from transformers' configuration_llama.py; the Llama-like parser here is reused by Mistral
 * and Qwen2 with their own defaults.
 */
import type { ModelConfig, ModelType } from '../config.js';
import { activationField, boolField, fieldError, intField, numField, ropeField, strField, tokenIdField, type RawConfig } from '../config-fields.js';
import { defineAdapter } from './common.js';
import type { ArchSpec, ArchTraits, GlobalRole, LayerRole, RoleShapes } from './types.js';

/** Tensor names shared by Llama, Mistral, Qwen2 and Qwen3 (q_norm/k_norm exist only where traits say qkNorm). */
export const LLAMA_LAYER_NAMES: Readonly<Partial<Record<LayerRole, string>>> = {
  'attn_norm.weight': 'model.layers.{i}.input_layernorm.weight',
  'q.weight': 'model.layers.{i}.self_attn.q_proj.weight',
  'q.bias': 'model.layers.{i}.self_attn.q_proj.bias',
  'k.weight': 'model.layers.{i}.self_attn.k_proj.weight',
  'k.bias': 'model.layers.{i}.self_attn.k_proj.bias',
  'v.weight': 'model.layers.{i}.self_attn.v_proj.weight',
  'v.bias': 'model.layers.{i}.self_attn.v_proj.bias',
  'o.weight': 'model.layers.{i}.self_attn.o_proj.weight',
  'o.bias': 'model.layers.{i}.self_attn.o_proj.bias',
  'mlp_norm.weight': 'model.layers.{i}.post_attention_layernorm.weight',
  'gate.weight': 'model.layers.{i}.mlp.gate_proj.weight',
  'gate.bias': 'model.layers.{i}.mlp.gate_proj.bias',
  'up.weight': 'model.layers.{i}.mlp.up_proj.weight',
  'up.bias': 'model.layers.{i}.mlp.up_proj.bias',
  'down.weight': 'model.layers.{i}.mlp.down_proj.weight',
  'down.bias': 'model.layers.{i}.mlp.down_proj.bias',
  'q_norm.weight': 'model.layers.{i}.self_attn.q_norm.weight',
  'k_norm.weight': 'model.layers.{i}.self_attn.k_norm.weight',
};

export const LLAMA_GLOBAL_NAMES: Readonly<Partial<Record<GlobalRole, string>>> = {
  'embed.weight': 'model.embed_tokens.weight',
  'final_norm.weight': 'model.norm.weight',
  'lm_head.weight': 'lm_head.weight',
};

/** Defaults that differ between the Llama-like families. */
export interface LlamaLikeDefaults {
  modelType: ModelType;
  causalLMClass: string;
  /** num_key_value_heads when the key is absent ('heads' = num_attention_heads); null always means heads. */
  kvHeadsIfAbsent: number | 'heads';
  maxPositionEmbeddings: number;
  /**
   * head_dim when the key is absent (Qwen3: 128, whatever hidden_size / num_attention_heads is); then an explicit
   * null is an error, since that family's attention has no fallback for it. Undefined: absent or null both mean
   * hidden_size / num_attention_heads.
   */
  headDimIfAbsent?: number;
  rmsNormEps: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** pad_token_id when absent (null unless the family sets one). */
  padTokenId?: number | null;
  /** The family's default of `original_max_position_embeddings` (a LongRoPE input), when its config class has one. */
  originalMaxPositionEmbeddings?: number;
  /** rope_type spellings the family reads as longrope. */
  longropeAliases?: readonly string[];
  /** The family's attention rotates only the leading head_dim × partial_rotary_factor dims (Phi-3); elsewhere refused. */
  partialRotary?: boolean;
  /** Reads the family's bias flags. */
  biases(raw: RawConfig): { attentionBias: boolean; attentionOutBias: boolean; mlpBias: boolean };
  /** Reads the family's sliding-window fields. */
  window(raw: RawConfig, numLayers: number): { slidingWindow: number | null; layerTypes: ModelConfig['layerTypes'] };
}

/** Parses a Llama-like config with the given family defaults. */
export function parseLlamaLike(raw: RawConfig, d: LlamaLikeDefaults): ModelConfig {
  const j = raw.json;
  const hiddenSize = intField(raw, 'hidden_size');
  const numHeads = intField(raw, 'num_attention_heads');
  const numKvHeads = j.num_key_value_heads === undefined && d.kvHeadsIfAbsent !== 'heads'
    ? d.kvHeadsIfAbsent
    : intField(raw, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) fieldError(raw, 'num_key_value_heads', `a divisor of num_attention_heads (${numHeads})`, numKvHeads);
  let headDim: number;
  if (d.headDimIfAbsent !== undefined) {
    if (j.head_dim === null) fieldError(raw, 'head_dim', 'an integer >= 1 (absent means ' + d.headDimIfAbsent + ')', null);
    headDim = intField(raw, 'head_dim', d.headDimIfAbsent);
  } else if (j.head_dim !== undefined && j.head_dim !== null) headDim = intField(raw, 'head_dim');
  else {
    if (hiddenSize % numHeads !== 0) fieldError(raw, 'head_dim', `given when hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);
    headDim = hiddenSize / numHeads;
  }
  const numLayers = intField(raw, 'num_hidden_layers');
  const act = activationField(raw, 'hidden_act', 'silu');
  const maxPositionEmbeddings = intField(raw, 'max_position_embeddings', d.maxPositionEmbeddings);
  const rope = ropeField(raw, 10000, {
    headDim, maxPositionEmbeddings,
    ...(d.partialRotary ? { partialRotary: true } : {}),
    ...(d.originalMaxPositionEmbeddings !== undefined ? { originalMaxPositionEmbeddings: d.originalMaxPositionEmbeddings } : {}),
    ...(d.longropeAliases ? { longropeAliases: d.longropeAliases } : {}),
  });
  return {
    modelType: d.modelType,
    architectures: architectures(raw, d.causalLMClass),
    vocabSize: intField(raw, 'vocab_size'),
    hiddenSize,
    intermediateSize: intField(raw, 'intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rotaryDim: rope.rotaryDim,
    maxPositionEmbeddings,
    hiddenAct: act.name,
    activation: act.activation,
    normEps: numField(raw, 'rms_norm_eps', d.rmsNormEps),
    tieWordEmbeddings: boolField(raw, 'tie_word_embeddings', false),
    ...d.biases(raw),
    rope,
    ...d.window(raw, numLayers),
    opt: null,
    torchDtype: torchDtype(raw),
    bosTokenId: tokenIdField(raw, 'bos_token_id', d.bosTokenId),
    eosTokenId: tokenIdField(raw, 'eos_token_id', d.eosTokenId),
    padTokenId: tokenIdField(raw, 'pad_token_id', d.padTokenId ?? null),
    raw: Object.freeze({ ...raw.json }),
  };
}

export function architectures(raw: RawConfig, def: string): string[] {
  const a = raw.json.architectures;
  if (a === undefined || a === null) return [def];
  if (!Array.isArray(a) || !a.every((x) => typeof x === 'string')) fieldError(raw, 'architectures', 'a list of class names', a);
  return [...a];
}

export function torchDtype(raw: RawConfig): string | null {
  const v = strField(raw, 'torch_dtype', '') || strField(raw, 'dtype', '');
  return v === '' ? null : v;
}

export function llamaTraits(c: ModelConfig): ArchTraits {
  return {
    norm: 'rms', normEps: c.normEps, normBias: false, normWeight: true, activation: c.activation, gatedMlp: true,
    preNorm: true, positions: 'rope', positionOffset: 0, finalNorm: true, qkvBias: c.attentionBias,
    oBias: c.attentionOutBias, qkNorm: false, postNorms: false, mlpBias: c.mlpBias, tiedEmbeddings: c.tieWordEmbeddings, embedDim: c.hiddenSize, projectInOut: false,
  };
}

export function llamaLayerShapes(c: ModelConfig): RoleShapes<LayerRole> {
  const H = c.hiddenSize, Q = c.numHeads * c.headDim, KV = c.numKvHeads * c.headDim, I = c.intermediateSize;
  const s: RoleShapes<LayerRole> = {
    'attn_norm.weight': [H], 'q.weight': [Q, H], 'k.weight': [KV, H], 'v.weight': [KV, H], 'o.weight': [H, Q],
    'mlp_norm.weight': [H], 'gate.weight': [I, H], 'up.weight': [I, H], 'down.weight': [H, I],
  };
  if (c.attentionBias) Object.assign(s, { 'q.bias': [Q], 'k.bias': [KV], 'v.bias': [KV] });
  if (c.attentionOutBias) s['o.bias'] = [H];
  if (c.mlpBias) Object.assign(s, { 'gate.bias': [I], 'up.bias': [I], 'down.bias': [H] });
  return s;
}

export function llamaGlobalShapes(c: ModelConfig): RoleShapes<GlobalRole> {
  return { 'embed.weight': [c.vocabSize, c.hiddenSize], 'final_norm.weight': [c.hiddenSize], 'lm_head.weight': [c.vocabSize, c.hiddenSize] };
}

const noWindow = (_raw: RawConfig, n: number) => ({ slidingWindow: null, layerTypes: Array<'full_attention'>(n).fill('full_attention') });

export const LLAMA_SPEC: ArchSpec = {
  modelType: 'llama',
  causalLMClass: 'LlamaForCausalLM',
  layerNames: LLAMA_LAYER_NAMES,
  globalNames: LLAMA_GLOBAL_NAMES,
  ignoredTensors: [/\.rotary_emb\.inv_freq$/],
  parseConfig: (raw) => parseLlamaLike(raw, {
    modelType: 'llama', causalLMClass: 'LlamaForCausalLM', kvHeadsIfAbsent: 'heads', maxPositionEmbeddings: 2048,
    rmsNormEps: 1e-6, bosTokenId: 1, eosTokenId: 2,
    biases: (r) => {
      const attentionBias = boolField(r, 'attention_bias', false);
      return { attentionBias, attentionOutBias: attentionBias, mlpBias: boolField(r, 'mlp_bias', false) };
    },
    window: noWindow,
  }),
  traits: llamaTraits,
  layerShapes: llamaLayerShapes,
  globalShapes: llamaGlobalShapes,
};

/** The Llama adapter. */
export const llama = defineAdapter(LLAMA_SPEC);
