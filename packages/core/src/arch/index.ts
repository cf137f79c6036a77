/**
 * The architecture registry: model_type → adapter. Adding a family means one new file plus one line here
 * (see docs/adding-an-architecture.md).
 */
import { StreamlineError } from '../errors.js';
import { gemma } from './gemma.js';
import { gemma3 } from './gemma3.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { opt } from './opt.js';
import { phi3 } from './phi3.js';
import { qwen2 } from './qwen2.js';
import { qwen3 } from './qwen3.js';
import type { ArchAdapter } from './types.js';

const ADAPTERS: ReadonlyMap<string, ArchAdapter> = new Map([llama, mistral, qwen2, qwen3, phi3, gemma, gemma3, opt].map((a) => [a.modelType, a]));

/** Why a family users ask about is refused, when there is more to say than "not supported". */
const NOT_SUPPORTED_WHY: Readonly<Record<string, string>> = {
  gemma3: 'the multimodal Gemma 3 (4B and larger, Gemma3ForConditionalGeneration) is not supported; its text-only sizes (model_type gemma3_text: 270M, 1B) are',
  gemma2: 'Gemma 2 soft-caps attention logits (tanh), which the attention kernels do not implement',
  qwen3_moe: 'mixture-of-experts MLPs are not supported',
  qwen2_moe: 'mixture-of-experts MLPs are not supported',
  mixtral: 'mixture-of-experts MLPs are not supported',
  phimoe: 'mixture-of-experts MLPs are not supported',
};

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
    const why = Object.hasOwn(NOT_SUPPORTED_WHY, modelType) ? `: ${NOT_SUPPORTED_WHY[modelType]}` : '';
    throw new StreamlineError('E_CONFIG_UNSUPPORTED', `${file ? `${file}: ` : ''}model_type '${modelType}' is not supported${why} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, file ? { file } : {});
  }
  return a;
}

export { gemma, gemma3, llama, mistral, opt, phi3, qwen2, qwen3 };
export * from './types.js';
