/**
 * Readers for `config.json` fields shared by the architecture adapters: typed getters that apply a default when
 * the key is absent (or null) and throw E_CONFIG_FIELD naming the field otherwise, plus RoPE scaling and
 * activation parsing with Hugging Face's semantics (modeling_rope_utils.py, activations.py).
 */
import { StreamlineError } from './errors.js';
import type { Activation, RopeConfig, RopeScaling } from './config.js';

/** The raw JSON object plus the file name for messages. */
export interface RawConfig {
  json: Record<string, unknown>;
  file: string;
}

export function fieldError(cfg: RawConfig, field: string, expected: string, got?: unknown): never {
  const shown = got === undefined ? 'it is missing' : `got ${JSON.stringify(got)}`;
  throw new StreamlineError('E_CONFIG_FIELD', `${cfg.file}: field '${field}' must be ${expected}; ${shown}`, { file: cfg.file });
}

function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/** A positive (or, with min 0, non-negative) integer; `def` undefined means required. */
export function intField(cfg: RawConfig, key: string, def?: number, min = 1): number {
  const v = cfg.json[key];
  if (!present(v)) {
    if (def === undefined) fieldError(cfg, key, `an integer >= ${min}`);
    return def;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fieldError(cfg, key, `an integer >= ${min}`, v);
  return v;
}

/** A finite positive number. */
export function numField(cfg: RawConfig, key: string, def: number): number {
  const v = cfg.json[key];
  if (!present(v)) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fieldError(cfg, key, 'a positive number', v);
  return v;
}

export function boolField(cfg: RawConfig, key: string, def: boolean): boolean {
  const v = cfg.json[key];
  if (!present(v)) return def;
  if (typeof v !== 'boolean') fieldError(cfg, key, 'true or false', v);
  return v;
}

export function strField(cfg: RawConfig, key: string, def: string): string {
  const v = cfg.json[key];
  if (!present(v)) return def;
  if (typeof v !== 'string') fieldError(cfg, key, 'a string', v);
  return v;
}

/** Token ids: an integer, a list of integers, or null. */
export function tokenIdField(cfg: RawConfig, key: string, def: number | null): number | number[] | null {
  const v = cfg.json[key];
  if (v === undefined) return def;
  if (v === null) return null;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isSafeInteger(x))) return v as number[];
  fieldError(cfg, key, 'an integer, a list of integers or null', v);
}

const ACTIVATIONS: Readonly<Record<string, Activation>> = {
  silu: 'silu', swish: 'silu', relu: 'relu', gelu: 'gelu',
  gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', gelu_fast: 'gelu_tanh',
};

/** Maps a Hugging Face activation name (ACT2FN key) to the activation the kernels implement. */
export function activationField(cfg: RawConfig, key: string, def: string): { name: string; activation: Activation } {
  const name = strField(cfg, key, def);
  const activation = ACTIVATIONS[name];
  if (!activation) {
    throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${cfg.file}: ${key} '${name}' is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`, { file: cfg.file });
  }
  return { name, activation };
}

function scalingNumber(cfg: RawConfig, obj: Record<string, unknown>, where: string, key: string, required: boolean): number | undefined {
  const v = obj[key];
  if (!present(v)) {
    if (required) fieldError(cfg, `${where}.${key}`, 'a positive number');
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fieldError(cfg, `${where}.${key}`, 'a positive number', v);
  return v;
}

/** What ropeField needs beyond the RoPE keys themselves. */
export interface RopeContext {
  /** head_dim. */
  headDim: number;
  /** The family rotates part of each head when `partial_rotary_factor` says so (Phi-3); elsewhere a factor below 1 is refused. */
  partialRotary?: boolean;
  /** The model's max_position_embeddings, defaulted. */
  maxPositionEmbeddings: number;
  /**
   * The family's default of the top-level `original_max_position_embeddings` (Phi-3: 4096), or undefined when the
   * family has no such key: longrope then takes its scaling factor from `factor`.
   */
  originalMaxPositionEmbeddings?: number;
  /** Older spellings the family reads as longrope (configuration_phi3.py renames 'su' and 'yarn'). */
  longropeAliases?: readonly string[];
}

function factorList(cfg: RawConfig, obj: Record<string, unknown>, where: string, key: string, n: number): number[] {
  const v = obj[key];
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0))
    fieldError(cfg, `${where}.${key}`, `a list of ${n} positive numbers (rotary dimension / 2)`, v);
  return [...v] as number[];
}

/**
 * LongRoPE (Phi-3 128k, Phi-3.5): per-frequency divisors, `short_factor` while the sequence fits the original context
 * and `long_factor` beyond it, and cos/sin scaled by `attention_factor`, by default sqrt(1 + ln(f) / ln(original))
 * with f = max_position_embeddings / original_max_position_embeddings when the config has the latter, else `factor`
 * (modeling_rope_utils._compute_longrope_parameters).
 */
function longrope(cfg: RawConfig, s: Record<string, unknown>, where: string, ctx: RopeContext, rotaryDim: number): RopeScaling {
  const n = rotaryDim / 2;
  const shortFactor = factorList(cfg, s, where, 'short_factor', n), longFactor = factorList(cfg, s, where, 'long_factor', n);
  const topOriginal = cfg.json.original_max_position_embeddings;
  let original: number, factor: number;
  if (present(topOriginal) || ctx.originalMaxPositionEmbeddings !== undefined) {
    original = intField(cfg, 'original_max_position_embeddings', ctx.originalMaxPositionEmbeddings);
    factor = ctx.maxPositionEmbeddings / original;
  } else {
    original = ctx.maxPositionEmbeddings;
    factor = scalingNumber(cfg, s, where, 'factor', false) ?? 1;
  }
  const given = scalingNumber(cfg, s, where, 'attention_factor', false);
  const attentionFactor = given ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original)));
  return { type: 'longrope', shortFactor, longFactor, attentionFactor, originalMaxPositionEmbeddings: original };
}

/**
 * YaRN (Qwen2.5 / Qwen3 long context, DeepSeek, many Llama derivatives), with the newest transformers' semantics
 * (v5 modeling_rope_utils: standardize_rope_params + _compute_yarn_parameters):
 * - `original_max_position_embeddings`: a top-level key wins (standardize_rope_params gives the config attribute
 *   priority), then the one in rope_scaling, else max_position_embeddings.
 * - `factor` as written. transformers 4.5x instead replaced it by max_position_embeddings / original whenever
 *   rope_scaling has an original (so Qwen3's 40960 / 32768 ran as 1.25, not the 4 its card asks for); v5 keeps the
 *   explicit factor (only warning about the mismatch) and derives it only when `factor` is null, as here. A missing
 *   `factor` key is an error there and here.
 * - `attention_factor` given, else get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) when both are
 *   set, else get_mscale(factor) = 0.1·ln(factor) + 1 (1 for factor ≤ 1).
 * - `beta_fast` 32, `beta_slow` 1; beta_fast must exceed beta_slow (transformers only warns; the ramp would run
 *   backwards). transformers tests beta_*, mscale and mscale_all_dim for truth, so 0 means unset here too.
 * - `truncate` (true): floor/ceil the correction range.
 */
function yarn(cfg: RawConfig, s: Record<string, unknown>, where: string, ctx: RopeContext): RopeScaling {
  const num = (key: string) => scalingNumber(cfg, s, where, key, false);
  const knob = (key: string) => (s[key] === 0 ? undefined : num(key));
  const top = cfg.json.original_max_position_embeddings;
  const original = present(top) ? numField(cfg, 'original_max_position_embeddings', 0) : num('original_max_position_embeddings') ?? ctx.maxPositionEmbeddings;
  let factor: number;
  if (s.factor === null) factor = ctx.maxPositionEmbeddings / original;
  else factor = scalingNumber(cfg, s, where, 'factor', true)!;
  const mscale = (m: number) => (factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1);
  const m = knob('mscale'), mAll = knob('mscale_all_dim');
  const attentionFactor = num('attention_factor') ?? (m !== undefined && mAll !== undefined ? mscale(m) / mscale(mAll) : mscale(1));
  const betaFast = knob('beta_fast') ?? 32, betaSlow = knob('beta_slow') ?? 1;
  if (betaFast <= betaSlow) fieldError(cfg, `${where}.beta_fast`, `greater than beta_slow (${betaSlow})`, betaFast);
  const truncate = s.truncate ?? true;
  if (typeof truncate !== 'boolean') fieldError(cfg, `${where}.truncate`, 'true or false', truncate);
  return { type: 'yarn', factor, originalMaxPositionEmbeddings: original, attentionFactor, betaFast, betaSlow, truncate };
}

/**
 * The rotated dims per head: int(head_dim × partial_rotary_factor) as transformers computes it (the top-level key, or
 * the one inside rope_parameters / rope_scaling). Only families whose attention rotates part of a head (Phi-3:
 * Phi-4-mini's 0.75) accept a factor below 1; Llama-like code would fail on it in transformers, so it is refused.
 */
function rotaryDimOf(cfg: RawConfig, obj: Record<string, unknown> | null, where: string, ctx: RopeContext): number {
  let dim = ctx.headDim;
  for (const [field, v] of [['partial_rotary_factor', cfg.json.partial_rotary_factor], [`${where}.partial_rotary_factor`, obj?.partial_rotary_factor]] as const) {
    if (!present(v)) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 1) fieldError(cfg, field, 'a number in (0, 1]', v);
    if (v === 1) continue;
    if (!ctx.partialRotary) throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${cfg.file}: ${field} ${v} (rotary embedding on part of each head) is not supported for this model_type; only 1.0`, { file: cfg.file });
    dim = Math.floor(ctx.headDim * v);
    if (dim < 2 || dim % 2 !== 0) fieldError(cfg, field, `a factor giving an even number of rotated dims (head_dim ${ctx.headDim} × ${v} = ${ctx.headDim * v})`, v);
    return dim;
  }
  return dim;
}

/**
 * RoPE settings: `rope_theta` (default `defTheta`) and `rope_scaling` (`rope_type`, or the legacy `type` key),
 * or the newer single `rope_parameters` object. Supported types: default, linear, dynamic, llama3, longrope, yarn.
 */
export function ropeField(cfg: RawConfig, defTheta: number, ctx: RopeContext): RopeConfig {
  const params = cfg.json.rope_parameters;
  const where = present(params) ? 'rope_parameters' : 'rope_scaling';
  const obj = present(params) ? params : cfg.json.rope_scaling;
  let theta = numField(cfg, 'rope_theta', defTheta);
  if (!present(obj)) return { theta, rotaryDim: rotaryDimOf(cfg, null, where, ctx), scaling: { type: 'default' } };
  if (typeof obj !== 'object' || Array.isArray(obj)) fieldError(cfg, where, 'an object or null', obj);
  const s = obj as Record<string, unknown>;
  const rotaryDim = rotaryDimOf(cfg, s, where, ctx);
  if (where === 'rope_parameters' && present(s.rope_theta)) theta = scalingNumber(cfg, s, where, 'rope_theta', true)!;
  const type = s.rope_type ?? s.type ?? (where === 'rope_parameters' ? 'default' : undefined);
  if (typeof type !== 'string') fieldError(cfg, `${where}.rope_type`, 'a string (default, linear, dynamic, llama3, longrope or yarn)', type);
  const num = (key: string, required: boolean) => scalingNumber(cfg, s, where, key, required);
  let scaling: RopeScaling;
  switch (type) {
    case 'default':
      scaling = { type: 'default' };
      break;
    case 'linear':
      scaling = { type: 'linear', factor: num('factor', true)! };
      break;
    case 'dynamic': {
      const omp = num('original_max_position_embeddings', false);
      scaling = { type: 'dynamic', factor: num('factor', true)!, ...(omp === undefined ? {} : { originalMaxPositionEmbeddings: omp }) };
      break;
    }
    case 'llama3': {
      scaling = {
        type: 'llama3', factor: num('factor', true)!, lowFreqFactor: num('low_freq_factor', true)!,
        highFreqFactor: num('high_freq_factor', true)!, originalMaxPositionEmbeddings: num('original_max_position_embeddings', true)!,
      };
      if (scaling.highFreqFactor <= scaling.lowFreqFactor) fieldError(cfg, `${where}.high_freq_factor`, `greater than low_freq_factor (${scaling.lowFreqFactor})`, scaling.highFreqFactor);
      break;
    }
    case 'longrope':
      scaling = longrope(cfg, s, where, ctx, rotaryDim);
      break;
    default:
      // Phi3Config renames 'yarn' to longrope before anything reads it, so the alias check comes first
      if (ctx.longropeAliases?.includes(type)) {
        scaling = longrope(cfg, s, where, ctx, rotaryDim);
        break;
      }
      if (type === 'yarn') {
        scaling = yarn(cfg, s, where, ctx);
        break;
      }
      throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${cfg.file}: ${where}.rope_type '${type}' is not supported (supported: default, linear, dynamic, llama3, longrope, yarn)`, { file: cfg.file });
  }
  return { theta, rotaryDim, scaling };
}
