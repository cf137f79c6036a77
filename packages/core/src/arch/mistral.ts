/**
 * Mistral (MistralForCausalLM): Llama's layout without biases, 8 KV heads and a 4096-token sliding window by
 * default (configuration_mistral.py).
 */
import { intField } from '../config-fields.js';
import { defineAdapter } from './common.js';
import { LLAMA_SPEC, parseLlamaLike } from './llama.js';
import type { ArchSpec } from './types.js';

export const MISTRAL_SPEC: ArchSpec = {
  ...LLAMA_SPEC,
  modelType: 'mistral',
  causalLMClass: 'MistralForCausalLM',
  parseConfig: (raw) => parseLlamaLike(raw, {
    modelType: 'mistral', causalLMClass: 'MistralForCausalLM', kvHeadsIfAbsent: 8, maxPositionEmbeddings: 4096 * 32,
    rmsNormEps: 1e-6, bosTokenId: 1, eosTokenId: 2,
    biases: () => ({ attentionBias: false, attentionOutBias: false, mlpBias: false }),
    window: (r, n) => {
      // Absent → 4096; an explicit null disables the window.
      const slidingWindow = r.json.sliding_window === null ? null : intField(r, 'sliding_window', 4096);
      return { slidingWindow, layerTypes: Array(n).fill(slidingWindow === null ? 'full_attention' : 'sliding_attention') };
    },
  }),
};

/** The Mistral adapter. */
export const mistral = defineAdapter(MISTRAL_SPEC);
