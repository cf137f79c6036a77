/**
 * What an architecture adapter is: tensor names by role, the structural traits the forward pass needs, and the
 * config defaults of one model family. Role names are shared with the native decoder layer.
 */
import type { Activation, ModelConfig, ModelType } from '../config.js';
import type { RawConfig } from '../config-fields.js';

/**
 * Per-layer tensor roles. `q_norm.weight` / `k_norm.weight` are Qwen3's per-head RMSNorm weights [head_dim] on the
 * projected queries and keys (before RoPE). `post_attn_norm.weight` / `post_mlp_norm.weight` [hidden] norm the
 * attention and MLP outputs before their residual adds (Gemma 2/3 post_attention_layernorm /
 * post_feedforward_layernorm; the layer's norm kind and eps, weight only; pre-norm layers only). OPT maps self_attn_layer_norm → attn_norm, final_layer_norm → mlp_norm, fc1 → up, fc2 → down. */
export const LAYER_ROLES = [
  'attn_norm.weight', 'attn_norm.bias',
  'q.weight', 'q.bias', 'k.weight', 'k.bias', 'v.weight', 'v.bias', 'o.weight', 'o.bias',
  'mlp_norm.weight', 'mlp_norm.bias',
  'gate.weight', 'gate.bias', 'up.weight', 'up.bias', 'down.weight', 'down.bias',
  'q_norm.weight', 'k_norm.weight',
  'post_attn_norm.weight', 'post_mlp_norm.weight',
] as const;
export type LayerRole = (typeof LAYER_ROLES)[number];

/** Model-wide tensor roles. `lm_head.weight` is absent when embeddings are tied (the embedding is the head). */
export const GLOBAL_ROLES = [
  'embed.weight', 'pos_embed.weight', 'project_in.weight', 'project_out.weight',
  'final_norm.weight', 'final_norm.bias', 'lm_head.weight',
] as const;
export type GlobalRole = (typeof GLOBAL_ROLES)[number];

export type TensorRole = LayerRole | GlobalRole;

/** Structural facts the forward pass needs, derived from the config. */
export interface ArchTraits {
  norm: 'rms' | 'layer';
  normEps: number;
  /** Norms carry a bias (LayerNorm with elementwise affine). */
  normBias: boolean;
  /** Norms carry a weight (false only for OPT with layer_norm_elementwise_affine = false). */
  normWeight: boolean;
  activation: Activation;
  /** act(gate(x)) * up(x) (SwiGLU) rather than act(up(x)). */
  gatedMlp: boolean;
  /** Norm before each sub-block (true) or after the residual add (OPT do_layer_norm_before = false). */
  preNorm: boolean;
  positions: 'rope' | 'learned';
  /** Offset added to position ids before the learned-position lookup (2 for OPT). */
  positionOffset: number;
  /** A final norm after the last layer. */
  finalNorm: boolean;
  qkvBias: boolean;
  oBias: boolean;
  /** Per-head RMSNorm on queries and keys after their projection, before RoPE (Qwen3 q_norm / k_norm). */
  qkNorm: boolean;
  /**
   * A norm of each sub-block's output before its residual add (Gemma 2/3 post_attention_layernorm /
   * post_feedforward_layernorm: the post_attn_norm / post_mlp_norm roles). Pre-norm layers only.
   */
  postNorms: boolean;
  mlpBias: boolean;
  /** lm_head shares the embedding matrix. */
  tiedEmbeddings: boolean;
  /** Width of the token embedding and of the lm_head input (OPT word_embed_proj_dim; else hidden size). */
  embedDim: number;
  /** project_in / project_out exist (OPT when embedDim != hidden). */
  projectInOut: boolean;
}

/** A tensor the architecture expects. */
export interface ExpectedTensor {
  name: string;
  role: TensorRole;
  /** Layer index for per-layer roles, null for global ones. */
  layer: number | null;
  shape: number[];
  /** False for tensors that may be present or absent (lm_head when tied). */
  required: boolean;
  /** The roles a fused tensor stacks along its rows, in order (Phi-3 `qkv_proj`: q, k, v); absent for a plain tensor. */
  parts?: readonly LayerRole[];
}

/** How names are spelled in a particular checkpoint. */
export interface NamingOptions {
  /** The checkpoint lacks the `model.` prefix (e.g. some OPT checkpoints saved from OPTModel: `decoder.layers...`). */
  stripModelPrefix?: boolean;
}

/** Shape of each role present for a config (absent roles are omitted). */
export type RoleShapes<R extends string> = Partial<Record<R, number[]>>;

/** The data one family file provides. */
export interface ArchSpec {
  modelType: ModelType;
  /** The transformers causal-LM class (`LlamaForCausalLM`). */
  causalLMClass: string;
  /** Name templates with `{i}` for the layer index, spelled with the `model.` prefix. */
  layerNames: Readonly<Partial<Record<LayerRole, string>>>;
  globalNames: Readonly<Partial<Record<GlobalRole, string>>>;
  /**
   * Roles stored together in one checkpoint tensor, stacked along its rows in this order (Phi-3 `qkv_proj` holds
   * q | k | v, `gate_up_proj` gate | up). Each part's `layerNames` entry names the fused tensor; each part keeps its
   * own role shape, and the fused tensor's shape is theirs stacked.
   */
  fusedLayerRoles?: readonly (readonly LayerRole[])[];
  /** Checkpoint tensors that transformers ignores on load (e.g. rotary inv_freq buffers). */
  ignoredTensors: readonly RegExp[];
  /**
   * Defaults of config keys whose value is a layer index (Qwen2 `max_window_layers`): a pruned model's config must
   * spell them out, since the default no longer points at the same layers once layers are removed.
   */
  layerIndexDefaults?: Readonly<Record<string, number>>;
  parseConfig(raw: RawConfig): ModelConfig;
  traits(config: ModelConfig): ArchTraits;
  /** Shapes of the per-layer tensors (same for every layer). */
  layerShapes(config: ModelConfig): RoleShapes<LayerRole>;
  /** Shapes of the global tensors that exist for this config (lm_head included even when tied). */
  globalShapes(config: ModelConfig): RoleShapes<GlobalRole>;
}

/** An architecture adapter: the family's data plus the functions derived from it. */
export interface ArchAdapter extends ArchSpec {
  /** Full tensor name of a per-layer role, or undefined when the family has no such role. */
  layerTensorName(role: LayerRole, layer: number, naming?: NamingOptions): string | undefined;
  /** Full tensor name of a global role, or undefined when the family has no such role. */
  globalTensorName(role: GlobalRole, naming?: NamingOptions): string | undefined;
  /** The roles of the fused tensor that holds `role`, in row order, or undefined when the role has a tensor of its own. */
  fusedGroup(role: LayerRole): readonly LayerRole[] | undefined;
  /** Every tensor the config implies, with its shape (a fused tensor once, with its parts); lm_head is optional when tied. */
  expectedTensors(config: ModelConfig, naming?: NamingOptions): ExpectedTensor[];
  /** Parameters (elements) of one decoder layer. */
  layerParamCount(config: ModelConfig): number;
  /** Works out how a checkpoint spells names (with or without `model.`) from the names it holds. */
  detectNaming(names: Iterable<string>): NamingOptions;
  /** True when transformers would silently ignore this checkpoint tensor. */
  isIgnoredTensor(name: string): boolean;
}
