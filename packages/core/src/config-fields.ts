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

/**
 * RoPE settings: `rope_theta` (default `defTheta`) and `rope_scaling` (`rope_type`, or the legacy `type` key),
 * or the newer single `rope_parameters` object. Supported types: default, linear, dynamic, llama3.
 */
export function ropeField(cfg: RawConfig, defTheta: number): RopeConfig {
  const params = cfg.json.rope_parameters;
  const where = present(params) ? 'rope_parameters' : 'rope_scaling';
  const obj = present(params) ? params : cfg.json.rope_scaling;
  let theta = numField(cfg, 'rope_theta', defTheta);
  if (!present(obj)) return { theta, scaling: { type: 'default' } };
  if (typeof obj !== 'object' || Array.isArray(obj)) fieldError(cfg, where, 'an object or null', obj);
  const s = obj as Record<string, unknown>;
  if (where === 'rope_parameters' && present(s.rope_theta)) theta = scalingNumber(cfg, s, where, 'rope_theta', true)!;
  const type = s.rope_type ?? s.type ?? (where === 'rope_parameters' ? 'default' : undefined);
  if (typeof type !== 'string') fieldError(cfg, `${where}.rope_type`, 'a string (default, linear, dynamic or llama3)', type);
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
    default:
      throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${cfg.file}: ${where}.rope_type '${type}' is not supported (supported: default, linear, dynamic, llama3)`, { file: cfg.file });
  }
  return { theta, scaling };
}
