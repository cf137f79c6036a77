/**
 * Gemma (1) (`model_type: gemma`, GemmaForCausalLM: Gemma 2B/7B, CodeGemma; configuration_gemma.py,
 * modeling_gemma.py). Llama's tensor layout and computation with Gemma's conventions, shared with Gemma 3
 * (gemma3.ts): norm weights stored as offsets (the norm multiplies by 1 + w in f32: `normWeightOffset`), embeddings
 * × sqrt(hidden_size) rounded to the embedding dtype, GeGLU, tied embeddings; scores × head_dim^-0.5 (no
 * query_pre_attn_scalar), two norms per layer, no q/k norms, no sliding window.
 * The activation: transformers 4.38–4.47 read `hidden_activation` and, when it is null or absent, used
 * gelu_pytorch_tanh whatever `hidden_act` says (the original checkpoints write `hidden_act: "gelu"` and were trained
 * with the tanh approximation); later versions read `hidden_act`. Here: `hidden_activation` when set, else
 * gelu_pytorch_tanh, the activation the checkpoints were trained with.
 * Defaults: head_dim 256, 16 KV heads when the key is absent (GemmaConfig's, whatever the heads), 8192 positions, rms_norm_eps 1e-6,
 * rope_theta 10000, pad 0, eos 1, bos 2.
 */
import { boolField } from '../config-fields.js';
import type { ModelConfig } from '../config.js';
import { defineAdapter } from './common.js';
import { LLAMA_SPEC, parseLlamaLike } from './llama.js';
import type { ArchSpec } from './types.js';

function parseGemma(raw: Parameters<ArchSpec['parseConfig']>[0]): ModelConfig {
  const base = parseLlamaLike(raw, {
    modelType: 'gemma', causalLMClass: 'GemmaForCausalLM', kvHeadsIfAbsent: 16, maxPositionEmbeddings: 8192,
    headDimIfAbsent: 256, rmsNormEps: 1e-6, bosTokenId: 2, eosTokenId: 1, padTokenId: 0, tieWordEmbeddings: true,
    activation: { key: 'hidden_activation', def: 'gelu_pytorch_tanh' },
    biases: (r) => {
      const attentionBias = boolField(r, 'attention_bias', false);
      return { attentionBias, attentionOutBias: attentionBias, mlpBias: false };
    },
    window: (_r, n) => ({ slidingWindow: null, layerTypes: Array<'full_attention'>(n).fill('full_attention') }),
  });
  return { ...base, embedScale: Math.sqrt(base.hiddenSize) };
}

export const GEMMA_SPEC: ArchSpec = {
  ...LLAMA_SPEC,
  modelType: 'gemma',
  causalLMClass: 'GemmaForCausalLM',
  normWeightOffset: 1,
  parseConfig: parseGemma,
};

/** The Gemma (1) adapter. */
export const gemma = defineAdapter(GEMMA_SPEC);
