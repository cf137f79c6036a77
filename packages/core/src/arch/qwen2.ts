/**
 * Qwen2 (Qwen2ForCausalLM): Llama's layout with q/k/v biases (always; o_proj and the MLP have none), 32 KV heads
 * when the key is absent, and sliding-window attention only when `use_sliding_window` is true, for layers at or
 * past `max_window_layers` unless `layer_types` says otherwise (configuration_qwen2.py).
 */
import { boolField, fieldError, intField, type RawConfig } from '../config-fields.js';
import type { ModelConfig } from '../config.js';
import { defineAdapter } from './common.js';
import { LLAMA_SPEC, parseLlamaLike } from './llama.js';
import type { ArchSpec } from './types.js';

/** configuration_qwen2.py's default: layers from index 28 on use the window. */
export const QWEN2_LAYER_INDEX_DEFAULTS = { max_window_layers: 28 } as const;
const LAYER_INDEX_DEFAULTS = QWEN2_LAYER_INDEX_DEFAULTS;

/** Qwen2's sliding-window fields (shared by Qwen3, whose configuration reads them the same way). */
export function qwen2Window(r: RawConfig, n: number): { slidingWindow: number | null; layerTypes: ModelConfig['layerTypes'] } {
  const use = boolField(r, 'use_sliding_window', false);
  const window = r.json.sliding_window === null ? null : intField(r, 'sliding_window', 4096);
  const slidingWindow = use ? window : null;
  const maxWindowLayers = intField(r, 'max_window_layers', LAYER_INDEX_DEFAULTS.max_window_layers, 0);
  const given = r.json.layer_types;
  if (given !== undefined && given !== null) {
    if (!Array.isArray(given) || given.length !== n || !given.every((t) => t === 'full_attention' || t === 'sliding_attention')) {
      fieldError(r, 'layer_types', `a list of ${n} 'full_attention' / 'sliding_attention' entries`, given);
    }
    return { slidingWindow, layerTypes: [...given] };
  }
  const layerTypes = Array.from({ length: n }, (_, i) => (slidingWindow !== null && i >= maxWindowLayers ? 'sliding_attention' : 'full_attention') as 'full_attention' | 'sliding_attention');
  return { slidingWindow, layerTypes };
}

export const QWEN2_SPEC: ArchSpec = {
  ...LLAMA_SPEC,
  modelType: 'qwen2',
  causalLMClass: 'Qwen2ForCausalLM',
  layerIndexDefaults: LAYER_INDEX_DEFAULTS,
  parseConfig: (raw) => parseLlamaLike(raw, {
    modelType: 'qwen2', causalLMClass: 'Qwen2ForCausalLM', kvHeadsIfAbsent: 32, maxPositionEmbeddings: 32768,
    rmsNormEps: 1e-6, bosTokenId: null, eosTokenId: null,
    biases: () => ({ attentionBias: true, attentionOutBias: false, mlpBias: false }),
    window: qwen2Window,
  }),
};

/** The Qwen2 adapter. */
export const qwen2 = defineAdapter(QWEN2_SPEC);
