/**
 * The architecture registry: model_type → adapter. Adding a family means one new file plus one line here
 * (see docs/adding-an-architecture.md).
 */
import { StreamlineError } from '../errors.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { opt } from './opt.js';
import { phi3 } from './phi3.js';
import { qwen2 } from './qwen2.js';
import { qwen3 } from './qwen3.js';
import type { ArchAdapter } from './types.js';

const ADAPTERS: ReadonlyMap<string, ArchAdapter> = new Map([llama, mistral, qwen2, qwen3, phi3, opt].map((a) => [a.modelType, a]));

/** The model_type values Streamline supports. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = [...ADAPTERS.keys()];

/**
 * The adapter of a model family.
 * @throws StreamlineError E_CONFIG_UNSUPPORTED listing the supported model types.
 * @example getAdapter('llama').layerTensorName('q.weight', 0) // 'model.layers.0.self_attn.q_proj.weight'
 */
export function getAdapter(modelType: string, file?: string): ArchAdapter {
  const a = ADAPTERS.get(modelType);
  if (!a) {
    throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${file ? `${file}: ` : ''}model_type '${modelType}' is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, file ? { file } : {});
  }
  return a;
}

export { llama, mistral, opt, phi3, qwen2, qwen3 };
export * from './types.js';
