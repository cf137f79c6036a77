/**
 * Qwen3 (Qwen3ForCausalLM): Qwen2's layout and sliding-window fields, with three differences (configuration_qwen3.py,
 * modeling_qwen3.py):
 * - `attention_bias` (default false) switches the q/k/v AND o_proj biases together; the MLP has none;
 * - `head_dim` defaults to 128 when absent, not hidden_size / num_attention_heads (an explicit null is refused:
 *   Qwen3Attention would build its projections from None);
 * - every layer has a per-head RMSNorm on queries and keys, `self_attn.q_norm.weight` / `self_attn.k_norm.weight`
 *   [head_dim] with eps rms_norm_eps, applied to the projections viewed as [.., heads, head_dim] before RoPE.
 * Other defaults: 32 KV heads when the key is absent (null means num_attention_heads), rope_theta 10000,
 * max_position_embeddings 32768, rms_norm_eps 1e-6, untied embeddings, no bos/eos ids.
 * The sibling `qwen3_moe` (sparse MoE MLP) is a different model_type and is not supported.
 */
import { boolField } from '../config-fields.js';
import type { ModelConfig } from '../config.js';
import { defineAdapter } from './common.js';
import { LLAMA_SPEC, llamaLayerShapes, llamaTraits, parseLlamaLike } from './llama.js';
import { QWEN2_LAYER_INDEX_DEFAULTS, qwen2Window } from './qwen2.js';
import type { ArchSpec } from './types.js';

export const QWEN3_SPEC: ArchSpec = {
  ...LLAMA_SPEC,
  modelType: 'qwen3',
  causalLMClass: 'Qwen3ForCausalLM',
  layerIndexDefaults: QWEN2_LAYER_INDEX_DEFAULTS,
  parseConfig: (raw) => parseLlamaLike(raw, {
    modelType: 'qwen3', causalLMClass: 'Qwen3ForCausalLM', kvHeadsIfAbsent: 32, maxPositionEmbeddings: 32768,
    headDimIfAbsent: 128, rmsNormEps: 1e-6, bosTokenId: null, eosTokenId: null,
    biases: (r) => {
      const attentionBias = boolField(r, 'attention_bias', false);
      return { attentionBias, attentionOutBias: attentionBias, mlpBias: false };
    },
    window: qwen2Window,
  }),
  traits: (c: ModelConfig) => ({ ...llamaTraits(c), qkNorm: true }),
  layerShapes: (c: ModelConfig) => ({ ...llamaLayerShapes(c), 'q_norm.weight': [c.headDim], 'k_norm.weight': [c.headDim] }),
};

/** The Qwen3 adapter. */
export const qwen3 = defineAdapter(QWEN3_SPEC);
