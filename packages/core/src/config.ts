/**
 * `config.json` → a typed ModelConfig with Hugging Face's defaults applied. The family-specific defaults live in
 * the architecture adapters (arch/*.ts); this file holds the shared type and the entry points.
 */
import fs from 'node:fs';
import path from 'node:path';
import { getAdapter, SUPPORTED_MODEL_TYPES } from './arch/index.js';
import { StreamlineError } from './errors.js';

/** Model families Streamline understands. */
export type ModelType = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'phi3' | 'gemma' | 'gemma3_text' | 'opt';

/** Activations the kernels implement (`gelu_tanh` is the tanh approximation: gelu_new / gelu_pytorch_tanh). */
export type Activation = 'silu' | 'relu' | 'gelu' | 'gelu_tanh';

/** RoPE frequency scaling, as in transformers' modeling_rope_utils.py. */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'dynamic'; factor: number; originalMaxPositionEmbeddings?: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  /** LongRoPE: divisors per frequency (short while seqLen <= originalMaxPositionEmbeddings, else long), cos/sin × attentionFactor. */
  | { type: 'longrope'; shortFactor: number[]; longFactor: number[]; attentionFactor: number; originalMaxPositionEmbeddings: number }
  /**
   * YaRN: frequencies interpolated (÷ factor) or kept by a linear ramp over the rotated dims between the correction
   * dims of betaFast and betaSlow rotations in originalMaxPositionEmbeddings (floor/ceil when truncate), cos/sin ×
   * attentionFactor (already resolved from mscale / mscale_all_dim or 0.1·ln(factor) + 1).
   */
  | { type: 'yarn'; factor: number; originalMaxPositionEmbeddings: number; attentionFactor: number; betaFast: number; betaSlow: number; truncate: boolean };

export interface RopeConfig {
  /** Base period (`rope_theta`). */
  theta: number;
  /** Leading dims of each head rotated (head_dim unless partial_rotary_factor < 1, Phi-3 only). */
  rotaryDim: number;
  scaling: RopeScaling;
}

/** OPT-only fields. */
export interface OptConfig {
  /** Pre-norm (true) or post-norm (false, e.g. opt-350m). */
  doLayerNormBefore: boolean;
  /** Embedding width; when it differs from hiddenSize, project_in/project_out map between them. */
  wordEmbedProjDim: number;
  /** Biases on every linear layer. */
  enableBias: boolean;
  /** LayerNorms have weight and bias. */
  layerNormElementwiseAffine: boolean;
  /** `_remove_final_layer_norm`: no final LayerNorm even when doLayerNormBefore. */
  removeFinalLayerNorm: boolean;
}

/** A parsed, defaulted model configuration. Sizes are element counts; every field is always set. */
export interface ModelConfig {
  modelType: ModelType;
  /** `architectures` from the file (e.g. `['LlamaForCausalLM']`), or the family's causal-LM class. */
  architectures: string[];
  vocabSize: number;
  hiddenSize: number;
  /** MLP width (`intermediate_size`; OPT `ffn_dim`). */
  intermediateSize: number;
  /** L, the number of decoder layers (`num_hidden_layers`). */
  numLayers: number;
  numHeads: number;
  /** Key/value heads (grouped-query attention); equals numHeads for multi-head attention. */
  numKvHeads: number;
  headDim: number;
  /** Leading dims of each head that RoPE rotates: headDim × partial_rotary_factor (Phi-3 family only; else headDim). */
  rotaryDim: number;
  maxPositionEmbeddings: number;
  /** The activation name as written (`hidden_act` / OPT `activation_function`) and what it means. */
  hiddenAct: string;
  activation: Activation;
  /** RMSNorm (`rms_norm_eps`) or LayerNorm epsilon (1e-5 for OPT). */
  normEps: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections. */
  attentionBias: boolean;
  /** Bias on the attention output projection. */
  attentionOutBias: boolean;
  /** Bias on the MLP projections. */
  mlpBias: boolean;
  /** Multiplies attention scores; absent: 1/sqrt(headDim). Gemma 3: query_pre_attn_scalar^-0.5. */
  attentionScale?: number;
  /**
   * Multiplies the token embeddings, after rounding to the embedding's stored dtype (Gemma 3: sqrt(hidden_size), which
   * transformers casts to the weight's dtype: 33.94 becomes 34.0 in bf16 at 1152). Absent: 1.
   */
  embedScale?: number;
  /** RoPE settings; null for learned absolute positions (OPT). */
  rope: RopeConfig | null;
  /** Effective sliding-window size (Mistral `sliding_window`, Qwen2 when `use_sliding_window`), else null. */
  slidingWindow: number | null;
  /** Per-layer attention kind (Qwen2 `layer_types`; all `full_attention` when no window applies). */
  layerTypes: ('full_attention' | 'sliding_attention')[];
  /**
   * RoPE of the layers of one attention kind when it differs from `rope` (Gemma 3's sliding layers:
   * rope_local_base_freq, unscaled; transformers 5's `rope_parameters` by layer type). A kind absent here uses `rope`;
   * unset for every family whose layers share one RoPE. Same rotaryDim as `rope` (the engine has one per model).
   */
  ropeByLayerType?: Partial<Record<'full_attention' | 'sliding_attention', RopeConfig>>;
  opt: OptConfig | null;
  /** `torch_dtype` / `dtype` as written, or null. */
  torchDtype: string | null;
  bosTokenId: number | number[] | null;
  eosTokenId: number | number[] | null;
  padTokenId: number | number[] | null;
  /** The JSON object as read, for export (unknown keys are kept there). */
  raw: Readonly<Record<string, unknown>>;
}

/**
 * Parses a config.json object.
 * @param json the parsed JSON
 * @param file name used in error messages
 * @throws StreamlineError E_CONFIG_UNSUPPORTED (model_type or a feature such as a rope_type is not supported;
 *   the message lists the supported ones), E_CONFIG_FIELD (a field is missing or invalid; names the field).
 * @example parseModelConfig({ model_type: 'llama', hidden_size: 256, ... }).headDim
 */
export function parseModelConfig(json: unknown, file = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new StreamlineError('E_CONFIG_FIELD', `${file}: must be a JSON object`, { file });
  }
  const mt = (json as Record<string, unknown>).model_type;
  if (typeof mt !== 'string') {
    throw new StreamlineError('E_CONFIG_FIELD', `${file}: field 'model_type' must be a string (one of ${SUPPORTED_MODEL_TYPES.join(', ')}); got ${JSON.stringify(mt) ?? 'nothing'}`, { file });
  }
  const adapter = getAdapter(mt, file);
  return adapter.parseConfig({ json: json as Record<string, unknown>, file });
}

/**
 * Reads and parses `config.json` from a model directory (or the given file).
 * @throws StreamlineError E_CONFIG_MISSING (no file), E_CONFIG_JSON (not JSON), and parseModelConfig's errors.
 */
export function loadModelConfig(dirOrFile: string): ModelConfig {
  const file = fs.existsSync(dirOrFile) && fs.statSync(dirOrFile).isDirectory() ? path.join(dirOrFile, 'config.json') : dirOrFile;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new StreamlineError('E_CONFIG_MISSING', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file, cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new StreamlineError('E_CONFIG_JSON', `${file}: not valid JSON (${(e as Error).message})`, { file, cause: e });
  }
  return parseModelConfig(json, file);
}
