/**
 * @streamline/core: depth pruning with layer replacement for Hugging Face decoder-only models.
 * See the package README and docs/ for the method and notation (h[k] enters layer k; ranges are [start, end)).
 */
export { StreamlineError, isStreamlineError } from './errors.js';
export { runtimeInfo } from './runtime.js';
export type { RuntimeInfo } from './runtime.js';
export { loadTokenizer } from './tokenizer.js';
export type { LoadedTokenizer, EncodeOptions } from './tokenizer.js';
export * from './data/index.js';
