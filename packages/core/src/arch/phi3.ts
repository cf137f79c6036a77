/**
 * Phi-3 (Phi3ForCausalLM: Phi-3/3.5 mini and medium, Phi-4 with full rotation): Llama's computation with fused
 * projections — `qkv_proj` stacks q | k | v rows, `gate_up_proj` stacks gate | up (the MLP is up · act(gate)) —,
 * no biases, pad and eos token 32000, rms_norm_eps 1e-5, a sliding window on every layer only when `sliding_window`
 * is set (Phi-3-mini-4k: 2047), and LongRoPE for the 128k variants, with `original_max_position_embeddings`
 * defaulting to 4096 (configuration_phi3.py, modeling_phi3.py). `partial_rotary_factor` < 1 (Phi-4-mini: 0.75)
 * rotates only the leading int(head_dim × factor) dims of each head.
 */
import { intField } from '../config-fields.js';
import { defineAdapter } from './common.js';
import { LLAMA_SPEC, parseLlamaLike } from './llama.js';
import type { ArchSpec } from './types.js';

const QKV = 'model.layers.{i}.self_attn.qkv_proj.weight';
const GATE_UP = 'model.layers.{i}.mlp.gate_up_proj.weight';

export const PHI3_SPEC: ArchSpec = {
  ...LLAMA_SPEC,
  modelType: 'phi3',
  causalLMClass: 'Phi3ForCausalLM',
  layerNames: {
    'attn_norm.weight': 'model.layers.{i}.input_layernorm.weight',
    'q.weight': QKV, 'k.weight': QKV, 'v.weight': QKV,
    'o.weight': 'model.layers.{i}.self_attn.o_proj.weight',
    'mlp_norm.weight': 'model.layers.{i}.post_attention_layernorm.weight',
    'gate.weight': GATE_UP, 'up.weight': GATE_UP,
    'down.weight': 'model.layers.{i}.mlp.down_proj.weight',
  },
  fusedLayerRoles: [['q.weight', 'k.weight', 'v.weight'], ['gate.weight', 'up.weight']],
  parseConfig: (raw) => parseLlamaLike(raw, {
    modelType: 'phi3', causalLMClass: 'Phi3ForCausalLM', kvHeadsIfAbsent: 'heads', maxPositionEmbeddings: 4096,
    rmsNormEps: 1e-5, bosTokenId: 1, eosTokenId: 32000, padTokenId: 32000,
    originalMaxPositionEmbeddings: 4096, longropeAliases: ['su', 'yarn'], partialRotary: true,
    biases: () => ({ attentionBias: false, attentionOutBias: false, mlpBias: false }),
    window: (r, n) => {
      // Absent or null: no window (unlike Mistral, whose default is 4096).
      const slidingWindow = r.json.sliding_window === undefined || r.json.sliding_window === null ? null : intField(r, 'sliding_window');
      return { slidingWindow, layerTypes: Array(n).fill(slidingWindow === null ? 'full_attention' : 'sliding_attention') };
    },
  }),
};

/** The Phi-3 adapter. */
export const phi3 = defineAdapter(PHI3_SPEC);
