/**
 * @streamline/eval: perplexity, multiple-choice accuracy with lm-evaluation-harness rules, and stability.
 */
export {};
