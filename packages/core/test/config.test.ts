// config.json parsing: bad input first, then each family's Hugging Face defaults and RoPE scaling variants.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getAdapter, isStreamlineError, loadModelConfig, parseModelConfig } from '../src/index.js';
import { kjvLlama, tmpDir } from './_helpers.js';

const base = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 4, num_attention_heads: 8, vocab_size: 100 };
const llama = (extra: object = {}) => parseModelConfig({ model_type: 'llama', ...base, ...extra });
const fails = (fn: () => unknown, code: string, mention: string) =>
  assert.throws(fn, (e: unknown) => isStreamlineError(e, code) && e.message.includes(mention), `${code} mentioning ${mention}`);

test('bad input: not an object, unknown or missing model_type, missing and invalid fields', () => {
  fails(() => parseModelConfig([]), 'E_CONFIG_FIELD', 'JSON object');
  fails(() => parseModelConfig({ ...base }), 'E_CONFIG_FIELD', 'model_type');
  fails(() => parseModelConfig({ model_type: 'gpt2', ...base }), 'E_CONFIG_UNSUPPORTED', 'llama, mistral, qwen2, qwen3, phi3, gemma, gemma3_text, opt');
  fails(() => parseModelConfig({ model_type: 'gemma3', ...base }), 'E_CONFIG_UNSUPPORTED', 'gemma3_text');
  fails(() => parseModelConfig({ model_type: 'gemma2', ...base }), 'E_CONFIG_UNSUPPORTED', 'soft-caps');
  fails(() => parseModelConfig({ model_type: 'qwen3_moe', ...base }), 'E_CONFIG_UNSUPPORTED', "model_type 'qwen3_moe' is not supported");
  fails(() => parseModelConfig({ model_type: 'qwen3', ...base, num_key_value_heads: 2, head_dim: null }), 'E_CONFIG_FIELD', "field 'head_dim'");
  for (const key of Object.keys(base)) {
    const c: Record<string, unknown> = { model_type: 'llama', ...base };
    delete c[key];
    fails(() => parseModelConfig(c), 'E_CONFIG_FIELD', `'${key}'`);
  }
  fails(() => llama({ hidden_size: '64' }), 'E_CONFIG_FIELD', "'hidden_size'");
  fails(() => llama({ num_hidden_layers: 0 }), 'E_CONFIG_FIELD', "'num_hidden_layers'");
  fails(() => llama({ num_key_value_heads: 3 }), 'E_CONFIG_FIELD', "'num_key_value_heads'");
  fails(() => llama({ hidden_size: 60 }), 'E_CONFIG_FIELD', "'head_dim'");
  fails(() => llama({ rms_norm_eps: -1 }), 'E_CONFIG_FIELD', "'rms_norm_eps'");
  fails(() => llama({ tie_word_embeddings: 'yes' }), 'E_CONFIG_FIELD', "'tie_word_embeddings'");
  fails(() => llama({ hidden_act: 'tanh' }), 'E_CONFIG_UNSUPPORTED', 'hidden_act');
  fails(() => llama({ rope_scaling: { rope_type: 'proportional', factor: 4 } }), 'E_CONFIG_UNSUPPORTED', 'longrope, yarn)');
  fails(() => llama({ rope_scaling: { factor: 4 } }), 'E_CONFIG_FIELD', 'rope_scaling.rope_type');
  fails(() => llama({ rope_scaling: { rope_type: 'linear' } }), 'E_CONFIG_FIELD', 'rope_scaling.factor');
  fails(() => llama({ rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4, original_max_position_embeddings: 8192 } }), 'E_CONFIG_FIELD', 'rope_scaling.low_freq_factor');
  fails(() => llama({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } }), 'E_CONFIG_FIELD', 'high_freq_factor');
  fails(() => llama({ rope_scaling: [1] }), 'E_CONFIG_FIELD', 'rope_scaling');
  fails(() => parseModelConfig({ model_type: 'qwen2', ...base, num_attention_heads: 12, hidden_size: 96 }), 'E_CONFIG_FIELD', 'num_key_value_heads');
  fails(() => parseModelConfig({ model_type: 'opt', ...base, ffn_dim: 10, num_attention_heads: 7 }), 'E_CONFIG_FIELD', 'num_attention_heads');
  fails(() => parseModelConfig({ model_type: 'opt', ...base }), 'E_CONFIG_FIELD', "'ffn_dim'");
});

test('loadModelConfig: missing file and invalid JSON', () => {
  const dir = tmpDir('cfg');
  fails(() => loadModelConfig(dir), 'E_CONFIG_MISSING', 'config.json');
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
  fails(() => loadModelConfig(dir), 'E_CONFIG_JSON', 'config.json');
  fs.rmSync(dir, { recursive: true });
});

test('llama defaults (configuration_llama.py)', () => {
  const c = llama();
  assert.is(c.headDim, 8);
  assert.is(c.numKvHeads, 8);
  assert.is(c.maxPositionEmbeddings, 2048);
  assert.is(c.normEps, 1e-6);
  assert.is(c.tieWordEmbeddings, false);
  assert.equal([c.attentionBias, c.attentionOutBias, c.mlpBias], [false, false, false]);
  assert.equal(c.rope, { theta: 10000, rotaryDim: 8, scaling: { type: 'default' } });
  assert.is(c.activation, 'silu');
  assert.is(c.slidingWindow, null);
  assert.equal(c.architectures, ['LlamaForCausalLM']);
  assert.equal([c.bosTokenId, c.eosTokenId, c.padTokenId], [1, 2, null]);
  const d = llama({ head_dim: 16, num_key_value_heads: null, attention_bias: true, mlp_bias: true, hidden_act: 'gelu_pytorch_tanh' });
  assert.equal([d.headDim, d.numKvHeads, d.attentionBias, d.attentionOutBias, d.mlpBias, d.activation], [16, 8, true, true, true, 'gelu_tanh']);
});

test('rope scaling: llama3 (Llama 3.1), legacy "type" key, linear, dynamic, rope_parameters', () => {
  const l3 = llama({ rope_theta: 500000, rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' } });
  assert.equal(l3.rope, { theta: 500000, rotaryDim: 8, scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } });
  assert.equal(llama({ rope_scaling: { type: 'linear', factor: 2.0 } }).rope!.scaling, { type: 'linear', factor: 2 });
  assert.equal(llama({ rope_scaling: { type: 'dynamic', factor: 2.0 } }).rope!.scaling, { type: 'dynamic', factor: 2 });
  assert.equal(llama({ rope_scaling: { rope_type: 'default' } }).rope!.scaling, { type: 'default' });
  assert.equal(llama({ rope_scaling: null }).rope!.scaling, { type: 'default' });
  assert.equal(llama({ rope_parameters: { rope_type: 'linear', factor: 4.0, rope_theta: 1e6 } }).rope, { theta: 1e6, rotaryDim: 8, scaling: { type: 'linear', factor: 4 } });
});

test('rope scaling: yarn, bad input first', () => {
  const yarn = (rs: object, extra: object = {}) => llama({ max_position_embeddings: 4096, rope_scaling: { rope_type: 'yarn', ...rs }, ...extra });
  fails(() => yarn({}), 'E_CONFIG_FIELD', "'rope_scaling.factor' must be a positive number; it is missing");
  fails(() => yarn({ factor: 0 }), 'E_CONFIG_FIELD', 'rope_scaling.factor');
  fails(() => yarn({ factor: 4, beta_fast: 1, beta_slow: 2 }), 'E_CONFIG_FIELD', "'rope_scaling.beta_fast' must be greater than beta_slow (2); got 1");
  fails(() => yarn({ factor: 4, beta_fast: 1 }), 'E_CONFIG_FIELD', 'beta_slow (1); got 1');
  fails(() => yarn({ factor: 4, beta_slow: 32 }), 'E_CONFIG_FIELD', 'greater than beta_slow (32); got 32');
  fails(() => yarn({ factor: 4, beta_fast: '32' }), 'E_CONFIG_FIELD', 'rope_scaling.beta_fast');
  fails(() => yarn({ factor: 4, truncate: 'no' }), 'E_CONFIG_FIELD', "'rope_scaling.truncate' must be true or false");
  fails(() => yarn({ factor: 4, attention_factor: -1 }), 'E_CONFIG_FIELD', 'rope_scaling.attention_factor');
  fails(() => yarn({ factor: 4, mscale: 'x', mscale_all_dim: 1 }), 'E_CONFIG_FIELD', 'rope_scaling.mscale');
  fails(() => yarn({ factor: 4, original_max_position_embeddings: -5 }), 'E_CONFIG_FIELD', 'rope_scaling.original_max_position_embeddings');
  fails(() => yarn({ factor: 4 }, { original_max_position_embeddings: 'x' }), 'E_CONFIG_FIELD', "field 'original_max_position_embeddings'");

  // Qwen3's card: factor 4 over an original 32768, max_position_embeddings left at 40960. transformers v5 keeps the
  // written factor (4.5x would have used 40960 / 32768 = 1.25); attention factor 0.1 ln 4 + 1, beta 32 / 1, truncate.
  const q = parseModelConfig({ model_type: 'qwen3', ...base, num_key_value_heads: 8, max_position_embeddings: 40960,
    rope_scaling: { rope_type: 'yarn', factor: 4.0, original_max_position_embeddings: 32768 } });
  assert.equal(q.rope!.scaling, { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 32768, attentionFactor: 0.1 * Math.log(4) + 1, betaFast: 32, betaSlow: 1, truncate: true });
  // no original anywhere: max_position_embeddings; legacy `type` key and rope_parameters alike
  const d = yarn({ factor: 2 }).rope!.scaling;
  assert.equal(d.type === 'yarn' && [d.originalMaxPositionEmbeddings, d.attentionFactor], [4096, 0.1 * Math.log(2) + 1]);
  assert.is(llama({ rope_scaling: { type: 'yarn', factor: 2 } }).rope!.scaling.type, 'yarn');
  const p = llama({ rope_parameters: { rope_type: 'yarn', factor: 2, rope_theta: 1e6, original_max_position_embeddings: 1024 } }).rope!;
  assert.equal([p.theta, p.scaling.type === 'yarn' && p.scaling.originalMaxPositionEmbeddings], [1e6, 1024]);
  // factor null: max_position_embeddings / original (v5's only derivation)
  const n = yarn({ factor: null, original_max_position_embeddings: 1024 }).rope!.scaling;
  assert.equal(n.type === 'yarn' && [n.factor, n.attentionFactor], [4, 0.1 * Math.log(4) + 1]);
  // a top-level original_max_position_embeddings wins over rope_scaling's (standardize_rope_params)
  const t = yarn({ factor: 4, original_max_position_embeddings: 1024 }, { original_max_position_embeddings: 2048 }).rope!.scaling;
  assert.is(t.type === 'yarn' && t.originalMaxPositionEmbeddings, 2048);
  // DeepSeek-style mscale / mscale_all_dim (both needed), an explicit attention_factor over everything, the knobs
  const ms = (m: number) => 0.1 * m * Math.log(40) + 1;
  const dk = yarn({ factor: 40, mscale: 0.707, mscale_all_dim: 0.5, beta_fast: 16, beta_slow: 2, truncate: false }).rope!.scaling;
  assert.equal(dk, { type: 'yarn', factor: 40, originalMaxPositionEmbeddings: 4096, attentionFactor: ms(0.707) / ms(0.5), betaFast: 16, betaSlow: 2, truncate: false });
  const one = yarn({ factor: 40, mscale: 0.707 }).rope!.scaling;
  assert.is(one.type === 'yarn' && one.attentionFactor, ms(1));
  // 0 is unset for the knobs transformers tests for truth
  const zero = yarn({ factor: 40, mscale: 0.707, mscale_all_dim: 0, beta_fast: 0, beta_slow: 0 }).rope!.scaling;
  assert.equal(zero.type === 'yarn' && [zero.attentionFactor, zero.betaFast, zero.betaSlow], [ms(1), 32, 1]);
  fails(() => yarn({ factor: 4, mscale: -1, mscale_all_dim: 1 }), 'E_CONFIG_FIELD', 'rope_scaling.mscale');
  const given = yarn({ factor: 40, mscale: 0.707, mscale_all_dim: 0.5, attention_factor: 0.9 }).rope!.scaling;
  assert.is(given.type === 'yarn' && given.attentionFactor, 0.9);
  // factor <= 1: no attention scaling (get_mscale is 1)
  const low = yarn({ factor: 0.5 }).rope!.scaling;
  assert.is(low.type === 'yarn' && low.attentionFactor, 1);
});

test('mistral defaults (configuration_mistral.py): 8 KV heads when absent, 4096 sliding window, no biases', () => {
  const c = parseModelConfig({ model_type: 'mistral', ...base });
  assert.equal([c.numKvHeads, c.slidingWindow, c.maxPositionEmbeddings, c.normEps, c.tieWordEmbeddings], [8, 4096, 131072, 1e-6, false]);
  assert.equal([c.attentionBias, c.attentionOutBias, c.mlpBias], [false, false, false]);
  assert.ok(c.layerTypes.every((t) => t === 'sliding_attention'));
  const d = parseModelConfig({ model_type: 'mistral', ...base, num_key_value_heads: null, sliding_window: null, attention_bias: true });
  assert.equal([d.numKvHeads, d.slidingWindow, d.attentionBias], [8, null, false]);
  assert.is(parseModelConfig({ model_type: 'mistral', ...base, num_key_value_heads: 2 }).numKvHeads, 2);
});

test('qwen2 defaults (configuration_qwen2.py): q/k/v biases always, 32 KV heads when absent, window only when enabled', () => {
  const c = parseModelConfig({ model_type: 'qwen2', ...base, num_attention_heads: 32, hidden_size: 256 });
  assert.equal([c.numKvHeads, c.attentionBias, c.attentionOutBias, c.mlpBias, c.slidingWindow, c.maxPositionEmbeddings], [32, true, false, false, null, 32768]);
  assert.ok(c.layerTypes.every((t) => t === 'full_attention'));
  const w = parseModelConfig({ model_type: 'qwen2', ...base, num_key_value_heads: 2, use_sliding_window: true, sliding_window: 128, max_window_layers: 2 });
  assert.is(w.slidingWindow, 128);
  assert.equal(w.layerTypes, ['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention']);
  const t = parseModelConfig({ model_type: 'qwen2', ...base, num_key_value_heads: 2, tie_word_embeddings: true, attention_bias: false });
  assert.equal([t.tieWordEmbeddings, t.attentionBias], [true, true]);
});

test('qwen3 defaults (configuration_qwen3.py): head_dim 128 when absent, 32 KV heads, attention_bias for q/k/v and o, Qwen2 windows', () => {
  const c = parseModelConfig({ model_type: 'qwen3', ...base, num_attention_heads: 32, hidden_size: 256 });
  assert.equal([c.headDim, c.numKvHeads, c.attentionBias, c.attentionOutBias, c.mlpBias, c.slidingWindow, c.maxPositionEmbeddings, c.normEps, c.tieWordEmbeddings],
    [128, 32, false, false, false, null, 32768, 1e-6, false]);
  assert.equal([c.rope!.theta, c.bosTokenId, c.eosTokenId, c.architectures], [10000, null, null, ['Qwen3ForCausalLM']]);
  assert.ok(c.layerTypes.every((t) => t === 'full_attention'));
  const n = parseModelConfig({ model_type: 'qwen3', ...base, num_key_value_heads: null, head_dim: 16, attention_bias: true });
  assert.equal([n.numKvHeads, n.headDim, n.attentionBias, n.attentionOutBias], [8, 16, true, true]);
  const w = parseModelConfig({ model_type: 'qwen3', ...base, num_key_value_heads: 2, use_sliding_window: true, sliding_window: 128, max_window_layers: 2 });
  assert.is(w.slidingWindow, 128);
  assert.equal(w.layerTypes, ['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention']);
  const off = parseModelConfig({ model_type: 'qwen3', ...base, num_key_value_heads: 2, sliding_window: 128, max_window_layers: 0 });
  assert.equal([off.slidingWindow, off.layerTypes.every((t) => t === 'full_attention')], [null, true]);
});

test('gemma3_text defaults (configuration_gemma3.py): head_dim 256, 4 KV heads, tied, GeGLU, 5:1 sliding pattern, local RoPE, scales', () => {
  const gemma = (extra: object = {}) => parseModelConfig({ model_type: 'gemma3_text', ...base, num_hidden_layers: 7, ...extra });
  const c = gemma();
  assert.equal([c.headDim, c.numKvHeads, c.attentionBias, c.mlpBias, c.maxPositionEmbeddings, c.normEps, c.tieWordEmbeddings, c.hiddenAct, c.activation],
    [256, 4, false, false, 131072, 1e-6, true, 'gelu_pytorch_tanh', 'gelu_tanh']);
  assert.equal([c.bosTokenId, c.eosTokenId, c.padTokenId, c.architectures], [2, 1, 0, ['Gemma3ForCausalLM']]);
  // every 6th layer full attention, the rest a 4096-token window (sliding_window_pattern 6 by default)
  assert.equal(c.layerTypes, ['sliding_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention', 'full_attention', 'sliding_attention']);
  assert.is(c.slidingWindow, 4096);
  assert.equal([c.rope!.theta, c.rope!.scaling, c.ropeByLayerType?.sliding_attention?.theta, c.ropeByLayerType?.sliding_attention?.scaling], [1e6, { type: 'default' }, 10000, { type: 'default' }]);
  assert.equal([c.attentionScale, c.embedScale], [256 ** -0.5, 8]);
  const t = gemma({ sliding_window_pattern: 2, sliding_window: 512, query_pre_attn_scalar: 64, rope_local_base_freq: 5000, rope_theta: 2e5,
    rope_scaling: { rope_type: 'linear', factor: 8 }, hidden_activation: 'gelu', head_dim: 16, num_key_value_heads: 1, tie_word_embeddings: false });
  assert.equal(t.layerTypes.slice(0, 4), ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention']);
  assert.equal([t.slidingWindow, t.attentionScale, t.activation, t.headDim, t.numKvHeads, t.tieWordEmbeddings], [512, 0.125, 'gelu', 16, 1, false]);
  // the full-attention layers scale their RoPE; the local ones never do
  assert.equal([t.rope!.theta, t.rope!.scaling, t.ropeByLayerType?.sliding_attention?.theta, t.ropeByLayerType?.sliding_attention?.scaling], [2e5, { type: 'linear', factor: 8 }, 5000, { type: 'default' }]);
  // layer_types wins over the pattern (as in transformers >= 4.53); transformers 5's per-type rope_parameters
  const types = ['full_attention', 'sliding_attention', 'full_attention', 'full_attention', 'sliding_attention', 'full_attention', 'full_attention'];
  const v5 = gemma({ layer_types: types, sliding_window_pattern: 3, rope_parameters: {
    full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } });
  assert.equal(v5.layerTypes, types);
  assert.equal([v5.rope!.theta, v5.rope!.scaling, v5.ropeByLayerType?.sliding_attention?.theta], [1e6, { type: 'linear', factor: 8 }, 1e4]);
  assert.ok('full_attention' in (v5.raw.rope_parameters as object), 'the file\'s own rope_parameters are kept for export');
  fails(() => gemma({ attn_logit_softcapping: 50 }), 'E_CONFIG_UNSUPPORTED', 'attn_logit_softcapping');
  fails(() => gemma({ final_logit_softcapping: 30 }), 'E_CONFIG_UNSUPPORTED', 'final_logit_softcapping');
  fails(() => gemma({ use_bidirectional_attention: true }), 'E_CONFIG_UNSUPPORTED', 'use_bidirectional_attention');
  fails(() => gemma({ layer_types: ['full_attention'] }), 'E_CONFIG_FIELD', 'layer_types');
  fails(() => gemma({ sliding_window: null }), 'E_CONFIG_FIELD', 'sliding_window');
  fails(() => gemma({ query_pre_attn_scalar: 0 }), 'E_CONFIG_FIELD', 'query_pre_attn_scalar');
  fails(() => gemma({ partial_rotary_factor: 0.5 }), 'E_CONFIG_UNSUPPORTED', 'partial_rotary_factor');
  // all full attention: no window needed
  assert.is(gemma({ sliding_window_pattern: 1, sliding_window: null }).slidingWindow, null);
});

test('gemma defaults (configuration_gemma.py): head_dim 256, 16 KV heads when absent, tied, tanh GeGLU whatever hidden_act says, no window', () => {
  const g = (extra: object = {}) => parseModelConfig({ model_type: 'gemma', ...base, num_attention_heads: 16, hidden_size: 128, ...extra });
  const c = g({ hidden_act: 'gelu' });
  assert.equal([c.headDim, c.numKvHeads, c.tieWordEmbeddings, c.activation, c.hiddenAct, c.slidingWindow, c.maxPositionEmbeddings, c.rope!.theta],
    [256, 16, true, 'gelu_tanh', 'gelu_pytorch_tanh', null, 8192, 10000]);
  assert.equal([c.embedScale, c.attentionScale, c.bosTokenId, c.eosTokenId, c.padTokenId], [Math.sqrt(128), undefined, 2, 1, 0]);
  // hidden_activation, when set, is the activation (transformers 4.38-4.47 read only it)
  assert.is(g({ hidden_activation: 'gelu' }).activation, 'gelu');
  assert.is(g({ num_key_value_heads: 1 }).numKvHeads, 1);
});

test('opt defaults (configuration_opt.py): tied, relu, biases, pre-norm, LayerNorm eps 1e-5; opt-350m style', () => {
  const c = parseModelConfig({ model_type: 'opt', hidden_size: 64, ffn_dim: 256, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 });
  assert.equal([c.tieWordEmbeddings, c.activation, c.attentionBias, c.mlpBias, c.normEps, c.maxPositionEmbeddings, c.rope], [true, 'relu', true, true, 1e-5, 2048, null]);
  assert.equal(c.opt, { doLayerNormBefore: true, wordEmbedProjDim: 64, enableBias: true, layerNormElementwiseAffine: true, removeFinalLayerNorm: false });
  const t = getAdapter('opt').traits(c);
  assert.equal([t.norm, t.gatedMlp, t.preNorm, t.positions, t.positionOffset, t.finalNorm, t.projectInOut], ['layer', false, true, 'learned', 2, true, false]);
  const m350 = parseModelConfig({ model_type: 'opt', hidden_size: 1024, ffn_dim: 4096, num_hidden_layers: 24, num_attention_heads: 16, vocab_size: 50272, word_embed_proj_dim: 512, do_layer_norm_before: false, enable_bias: false });
  const t2 = getAdapter('opt').traits(m350);
  assert.equal([t2.preNorm, t2.finalNorm, t2.projectInOut, t2.embedDim, t2.qkvBias, t2.mlpBias], [false, false, true, 512, false, false]);
});

test('the demo model config (../shared/models/kjv-llama)', () => {
  if (!fs.existsSync(kjvLlama)) { console.log('skip: ../shared not found'); return; }
  const c = loadModelConfig(kjvLlama);
  assert.equal([c.modelType, c.numLayers, c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.intermediateSize, c.vocabSize], ['llama', 16, 256, 8, 4, 32, 704, 2048]);
  assert.equal([c.normEps, c.tieWordEmbeddings, c.torchDtype, c.rope!.theta], [1e-5, false, 'bfloat16', 10000]);
});

test.run();
