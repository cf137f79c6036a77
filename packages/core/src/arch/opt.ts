/**
 * OPT (OPTForCausalLM): LayerNorm (eps 1e-5), learned absolute positions with an offset of 2, a plain
 * fc1 → activation → fc2 MLP, biases on every linear layer unless `enable_bias` is false, pre-norm unless
 * `do_layer_norm_before` is false (opt-350m), project_in/project_out when `word_embed_proj_dim` differs from
 * the hidden size, and tied embeddings by default (configuration_opt.py, modeling_opt.py).
 */
import type { ModelConfig } from '../config.js';
import { activationField, boolField, fieldError, intField, tokenIdField, type RawConfig } from '../config-fields.js';
import { defineAdapter } from './common.js';
import { architectures, torchDtype } from './llama.js';
import type { ArchSpec, ArchTraits, GlobalRole, LayerRole, RoleShapes } from './types.js';

const L = 'model.decoder.layers.{i}.';

function parseOpt(raw: RawConfig): ModelConfig {
  const hiddenSize = intField(raw, 'hidden_size');
  const numHeads = intField(raw, 'num_attention_heads');
  if (hiddenSize % numHeads !== 0) fieldError(raw, 'num_attention_heads', `a divisor of hidden_size (${hiddenSize})`, numHeads);
  const numLayers = intField(raw, 'num_hidden_layers');
  const act = activationField(raw, 'activation_function', 'relu');
  const enableBias = boolField(raw, 'enable_bias', true);
  return {
    modelType: 'opt',
    architectures: architectures(raw, 'OPTForCausalLM'),
    vocabSize: intField(raw, 'vocab_size'),
    hiddenSize,
    intermediateSize: intField(raw, 'ffn_dim'),
    numLayers,
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    rotaryDim: hiddenSize / numHeads,
    maxPositionEmbeddings: intField(raw, 'max_position_embeddings', 2048),
    hiddenAct: act.name,
    activation: act.activation,
    normEps: 1e-5,
    tieWordEmbeddings: boolField(raw, 'tie_word_embeddings', true),
    attentionBias: enableBias,
    attentionOutBias: enableBias,
    mlpBias: enableBias,
    rope: null,
    slidingWindow: null,
    layerTypes: Array(numLayers).fill('full_attention'),
    opt: {
      doLayerNormBefore: boolField(raw, 'do_layer_norm_before', true),
      wordEmbedProjDim: intField(raw, 'word_embed_proj_dim', hiddenSize),
      enableBias,
      layerNormElementwiseAffine: boolField(raw, 'layer_norm_elementwise_affine', true),
      removeFinalLayerNorm: boolField(raw, '_remove_final_layer_norm', false),
    },
    torchDtype: torchDtype(raw),
    bosTokenId: tokenIdField(raw, 'bos_token_id', 2),
    eosTokenId: tokenIdField(raw, 'eos_token_id', 2),
    padTokenId: tokenIdField(raw, 'pad_token_id', 1),
    raw: Object.freeze({ ...raw.json }),
  };
}

function optTraits(c: ModelConfig): ArchTraits {
  const o = c.opt!;
  return {
    norm: 'layer', normEps: c.normEps, normBias: o.layerNormElementwiseAffine, normWeight: o.layerNormElementwiseAffine,
    activation: c.activation, gatedMlp: false, preNorm: o.doLayerNormBefore, positions: 'learned', positionOffset: 2,
    finalNorm: o.doLayerNormBefore && !o.removeFinalLayerNorm, qkvBias: o.enableBias, oBias: o.enableBias, qkNorm: false, postNorms: false, mlpBias: o.enableBias,
    tiedEmbeddings: c.tieWordEmbeddings, embedDim: o.wordEmbedProjDim, projectInOut: o.wordEmbedProjDim !== c.hiddenSize,
  };
}

function optLayerShapes(c: ModelConfig): RoleShapes<LayerRole> {
  const H = c.hiddenSize, I = c.intermediateSize, o = c.opt!;
  const s: RoleShapes<LayerRole> = { 'q.weight': [H, H], 'k.weight': [H, H], 'v.weight': [H, H], 'o.weight': [H, H], 'up.weight': [I, H], 'down.weight': [H, I] };
  if (o.enableBias) Object.assign(s, { 'q.bias': [H], 'k.bias': [H], 'v.bias': [H], 'o.bias': [H], 'up.bias': [I], 'down.bias': [H] });
  if (o.layerNormElementwiseAffine) Object.assign(s, { 'attn_norm.weight': [H], 'attn_norm.bias': [H], 'mlp_norm.weight': [H], 'mlp_norm.bias': [H] });
  return s;
}

function optGlobalShapes(c: ModelConfig): RoleShapes<GlobalRole> {
  const H = c.hiddenSize, E = c.opt!.wordEmbedProjDim, t = optTraits(c);
  const s: RoleShapes<GlobalRole> = {
    'embed.weight': [c.vocabSize, E], 'pos_embed.weight': [c.maxPositionEmbeddings + 2, H], 'lm_head.weight': [c.vocabSize, E],
  };
  if (t.projectInOut) Object.assign(s, { 'project_in.weight': [H, E], 'project_out.weight': [E, H] });
  if (t.finalNorm && t.normWeight) Object.assign(s, { 'final_norm.weight': [H], 'final_norm.bias': [H] });
  return s;
}

export const OPT_SPEC: ArchSpec = {
  modelType: 'opt',
  causalLMClass: 'OPTForCausalLM',
  layerNames: {
    'attn_norm.weight': `${L}self_attn_layer_norm.weight`, 'attn_norm.bias': `${L}self_attn_layer_norm.bias`,
    'q.weight': `${L}self_attn.q_proj.weight`, 'q.bias': `${L}self_attn.q_proj.bias`,
    'k.weight': `${L}self_attn.k_proj.weight`, 'k.bias': `${L}self_attn.k_proj.bias`,
    'v.weight': `${L}self_attn.v_proj.weight`, 'v.bias': `${L}self_attn.v_proj.bias`,
    'o.weight': `${L}self_attn.out_proj.weight`, 'o.bias': `${L}self_attn.out_proj.bias`,
    'mlp_norm.weight': `${L}final_layer_norm.weight`, 'mlp_norm.bias': `${L}final_layer_norm.bias`,
    'up.weight': `${L}fc1.weight`, 'up.bias': `${L}fc1.bias`,
    'down.weight': `${L}fc2.weight`, 'down.bias': `${L}fc2.bias`,
  },
  globalNames: {
    'embed.weight': 'model.decoder.embed_tokens.weight',
    'pos_embed.weight': 'model.decoder.embed_positions.weight',
    'project_in.weight': 'model.decoder.project_in.weight',
    'project_out.weight': 'model.decoder.project_out.weight',
    'final_norm.weight': 'model.decoder.final_layer_norm.weight',
    'final_norm.bias': 'model.decoder.final_layer_norm.bias',
    'lm_head.weight': 'lm_head.weight',
  },
  ignoredTensors: [],
  parseConfig: parseOpt,
  traits: optTraits,
  layerShapes: optLayerShapes,
  globalShapes: optGlobalShapes,
};

/** The OPT adapter. */
export const opt = defineAdapter(OPT_SPEC);
