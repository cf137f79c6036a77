/**
 * `score` end to end: calibration text → blocks → one scoring pass → ranked windows. Shared by the CLI's
 * `score`, `prune` and `demo`.
 */
import { packCalibration, type PackedCalibration, type PackProgress } from '../data/pack.js';
import type { DeviceOptions } from '../device.js';
import { StreamlineError } from '../errors.js';
import type { LoadedModel } from '../model.js';
import { scoreLayers, type ScoreMetric, type ScoreResult } from './score.js';
import { nForSparsity, paramBudget, type ReplacementKind } from './sparsity.js';

export interface CalibrationOptions {
  /** Text file, JSONL, Parquet or a directory of them. */
  calib: string;
  /** JSONL/Parquet field. Default `text`. */
  field?: string;
  /** Blocks to draw. Default 50. */
  samples?: number;
  /** Tokens per block. Default min(2048, the model's max_position_embeddings). */
  seqLen?: number;
  seed?: number;
  onProgress?: (p: PackProgress) => void;
}

/** Tokenizes and packs calibration data for a model, with the defaults of the CLI. */
export async function calibrationBlocks(model: LoadedModel, o: CalibrationOptions): Promise<PackedCalibration & { seqLen: number }> {
  if (!model.tokenizer) throw new StreamlineError('E_TOKENIZER_MISSING', `${model.dir} has no tokenizer.json; calibration text cannot be tokenized`, { file: model.dir });
  const seqLen = o.seqLen ?? Math.min(2048, model.maxLength);
  if (seqLen > model.maxLength)
    throw new StreamlineError('E_INVALID_OPTION', `--seq-len ${seqLen} exceeds the model's maximum length ${model.maxLength} (max_position_embeddings)`);
  const packed = await packCalibration({
    source: o.calib, tokenizer: model.tokenizer, seqLen, samples: o.samples ?? 50, seed: o.seed ?? 0,
    ...(o.field ? { field: o.field } : {}), ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return { ...packed, seqLen };
}

export interface WindowChoice {
  /** Window length to rank, or null to derive it from `sparsity`. */
  n?: number;
  /** Target fraction of parameters removed (net of the replacement). Default 0.25 when n is not given. */
  sparsity?: number;
  /** Replacement the sparsity accounts for. Default `layer`. */
  replacement?: ReplacementKind;
}

/** The window length for a request: n directly, or from the target sparsity. */
export function resolveN(model: LoadedModel, c: WindowChoice): number {
  if (c.n !== undefined && c.sparsity !== undefined) throw new StreamlineError('E_INVALID_OPTION', 'give either --n or --sparsity, not both');
  // A window must leave at least one layer; with one layer the option checks below would print "[1, 0]".
  if (model.layers < 2) throw new StreamlineError('E_RANGE', `${model.dir} has ${model.layers} decoder layer${model.layers === 1 ? '' : 's'}; a window must leave at least one layer, so there is nothing to score or remove`);
  if (c.n !== undefined) {
    if (!Number.isInteger(c.n) || c.n < 1 || c.n >= model.layers)
      throw new StreamlineError('E_INVALID_OPTION', `--n must be an integer in [1, ${model.layers - 1}], got ${c.n}`);
    return c.n;
  }
  return nForSparsity(paramBudget(model.report, model.modelDir), c.replacement ?? 'layer', c.sparsity ?? 0.25);
}

export interface RunScoreOptions extends CalibrationOptions, WindowChoice, DeviceOptions {
  metric?: ScoreMetric;
  batchSize?: number;
  onScoreProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface RunScoreResult extends ScoreResult {
  seqLen: number;
  documents: number;
  calibrationTokens: number;
  blocksAvailable: number;
  blocks: Int32Array[];
}

export async function runScore(model: LoadedModel, o: RunScoreOptions): Promise<RunScoreResult> {
  const n = resolveN(model, o);
  const cal = await calibrationBlocks(model, o);
  const r = await scoreLayers(model.description, {
    blocks: cal.blocks, n, metric: o.metric ?? 'cosine', batchSize: o.batchSize ?? 1,
    ...(o.onScoreProgress ? { onProgress: o.onScoreProgress } : {}), ...(o.signal ? { signal: o.signal } : {}),
    ...(o.device ? { device: o.device } : {}), ...(o.onLog ? { onLog: o.onLog } : {}),
  });
  return { ...r, seqLen: cal.seqLen, documents: cal.documents, calibrationTokens: cal.tokens, blocksAvailable: cal.blocksAvailable, blocks: cal.blocks };
}
