/**
 * @streamline/eval: perplexity (chunked and lm-eval rolling), multiple-choice accuracy with
 * lm-evaluation-harness ≥ 0.4.10 rules or OpenCompass PPL mode, and the LLM-Streamline stability metric.
 * The model is anything implementing {@link LogprobModel}; the tokenizer is core's `loadTokenizer` result.
 */
export type { LogprobModel, LogprobOptions, EvalTokenizer } from './types.js';
export { argmax, argmin, mean, meanStderr, populationStd, softmax, codePointLength, utf8Length } from './stats.js';
export {
  getRollingTokenWindows, makeDisjointWindow, chunkedPerplexity, rollingPerplexity, countWords,
} from './perplexity.js';
export type { RollingWindow, ChunkedPerplexity, RollingPerplexity, PerplexityOptions } from './perplexity.js';
export { encodePair, buildSequence, scoreOption, predictItem, scoreItems } from './multiple-choice.js';
export type { McRequest, McItem, McMode, OptionScore, ItemResult, ScoredSequence, ScoreItemsOptions } from './multiple-choice.js';
export { taskMetrics, stability } from './metrics.js';
export type { TaskMetrics, StabilityResult } from './metrics.js';
export { loadTask, buildTaskItems, schemaFor, hellaswagPreprocess, pyCapitalize } from './tasks.js';
export type { LoadedTask } from './tasks.js';
export { evaluate } from './evaluate.js';
export type { EvaluateOptions, EvalReport, ModelReport, PplResult, SampleLog, EvalProgress } from './evaluate.js';
