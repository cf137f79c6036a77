/**
 * Data shapes the report and the charts consume. Everything arrives computed (by @streamline/core and
 * @streamline/eval); the report layer only presents it. Ranges are 0-based half-open `[start, end)`, and
 * `h[k]` is the hidden state entering layer k (`h[0]` the embedding output, `h[L]` the last layer's output).
 */

/** One candidate window of `n` consecutive layers `[start, end)` and its score under the chosen metric. */
export interface WindowScore {
  start: number;
  end: number;
  score: number;
}

/** The window-scoring metric: mean cosine (higher = more redundant), angular distance or Block Influence (lower). */
export type ScoreMetric = 'cosine' | 'angular' | 'bi';

/** Output of `streamline score`, as written to `--json`. */
export interface ScoreData {
  /** Model path or name (user input: always escaped). */
  model: string;
  /** Number of decoder layers L. */
  layers: number;
  samples: number;
  seqLen: number;
  tokens: number;
  metric: ScoreMetric;
  /** (L+1)×(L+1) mean cosine between boundaries h[i] and h[j]; NaN (or null after JSON) for pairs not computed. */
  matrix: Array<Array<number | null>>;
  /** Window length in layers, or null when no window was chosen. */
  n: number | null;
  /** Every candidate window, in order of start. */
  windows: WindowScore[];
  best: WindowScore | null;
  /** Block Influence per layer, `1 − cos(h[k], h[k+1])`, k = 0..L−1. */
  blockInfluence?: number[];
}

/** One logged optimiser step of a replacement's training. */
export interface TrainingStep {
  step: number;
  loss: number;
  valLoss?: number;
  lr: number;
  tokens?: number;
}

/** One training run (one replacement kind). */
export interface TrainingRun {
  label: string;
  replacement: string;
  steps: TrainingStep[];
  /** Shown as a row of the summary table (keys become columns, in first-seen order). */
  summary?: Record<string, string | number>;
}

export interface TrainingData {
  runs: TrainingRun[];
}

/** A before/after table: `columns` name the keys of each row, in display order (the first is the row label). */
export interface ComparisonData {
  title?: string;
  columns: string[];
  rows: Array<Record<string, string | number | null>>;
  notes?: string[];
}

/** Everything one HTML report shows; sections appear only when their data is present. */
export interface ReportData {
  title: string;
  /** The command line that produced the run (user input: always escaped). */
  command: string;
  /** ISO 8601 time stamp. */
  createdAt: string;
  tool: { name: string; version: string };
  /** The run manifest (versions, options, inputs, hashes): shown as a key/value table and as JSON. */
  manifest: Record<string, unknown>;
  score?: ScoreData;
  training?: TrainingData;
  comparison?: ComparisonData;
}
