/**
 * The main entry point: a model directory opened for computation. `loadModel` validates the directory, memory-maps
 * the weights and loads the tokenizer; the result runs forward passes (layer slices, hidden states, logits,
 * log-probabilities) through the layer-streaming engine and scores sequences for @streamline/eval.
 */
import fs from 'node:fs';
import type { ModelConfig } from './config.js';
import { StreamlineError } from './errors.js';
import { assertModelValid, inspect, type ModelReport } from './inspect.js';
import { openModelDir, type ModelDir } from './model-dir.js';
import { loadTokenizer, type LoadedTokenizer } from './tokenizer.js';
import { makeTokenBatch, type HiddenBatch } from './engine/batch.js';
import type { ModelDescription } from './engine/description.js';
import { describeModel } from './engine/describe.js';
import { embed, head, runLayers, tokenLogprobs, type LogprobOptions } from './engine/forward.js';

export interface LoadedModel {
  dir: string;
  config: ModelConfig;
  modelDir: ModelDir;
  /** What the engine runs; pruned variants are derived from it. */
  description: ModelDescription;
  /** The model's tokenizer (null when the directory has no tokenizer.json). */
  tokenizer: LoadedTokenizer | null;
  /** Number of decoder layers L. */
  layers: number;
  /** Longest input in positions (max_position_embeddings). */
  maxLength: number;
  /** inspect() of the directory: architecture, parameter counts, dtypes, files. */
  report: ModelReport;
  /** result[i][t] = log p(seq[t+1] | seq[0..t]); see tokenLogprobs. */
  tokenLogprobs(sequences: Int32Array[], opts?: LogprobOptions): Promise<Float32Array[]>;
  /**
   * Runs layers [start, end) on token ids and returns the hidden states at the requested boundaries
   * (h[k] enters layer k; h[L] is the last layer's output before the final norm), and logits when asked.
   */
  forward(sequences: Int32Array[], opts?: ForwardOptions): Promise<ForwardResult>;
}

export interface ForwardOptions {
  /** Boundaries k in [0, L] whose hidden states to return. */
  boundaries?: number[];
  /** Return logits [B*T, V] (runs all layers and the head). */
  logits?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface ForwardResult {
  /** Right-padded batch shape. */
  B: number;
  T: number;
  mask: Uint8Array;
  /** Hidden states by boundary, each [B*T*D] f32. */
  hidden: Map<number, Float32Array>;
  logits?: Float32Array;
}

/** Forward pass over a description (a loaded or pruned model). */
export async function forwardDescription(desc: ModelDescription, sequences: Int32Array[], opts: ForwardOptions = {}): Promise<ForwardResult> {
  const L = desc.layers.length;
  const wanted = new Set(opts.boundaries ?? []);
  for (const k of wanted) if (!Number.isInteger(k) || k < 0 || k > L) throw new StreamlineError('E_RANGE', `boundary ${k} is not in [0, ${L}]`);
  const last = opts.logits ? L : Math.max(0, ...wanted);
  const batch = makeTokenBatch(sequences);
  const hidden = new Map<number, Float32Array>();
  let h: HiddenBatch = await embed(desc, batch);
  if (wanted.has(0)) hidden.set(0, h.data);
  h = await runLayers(desc, h, 0, last, {
    signal: opts.signal,
    onProgress: opts.onProgress,
    onBoundary: (k, s) => { if (wanted.has(k)) hidden.set(k, s.data); },
  });
  const result: ForwardResult = { B: batch.B, T: batch.T, mask: batch.mask, hidden };
  if (opts.logits) result.logits = (await head(desc, h, { logits: true })).logits!;
  return result;
}

/**
 * Opens a model directory for computation.
 * @throws StreamlineError E_MODEL_DIR, E_CONFIG_*, E_SAFETENSORS_*, E_MODEL_TENSORS (missing or mis-shaped tensors).
 * @example
 * const model = await loadModel('./Llama-3.2-1B');
 * const [lp] = await model.tokenLogprobs([model.tokenizer!.encode('In the beginning')]);
 */
export async function loadModel(dir: string): Promise<LoadedModel> {
  // inspect() also reads single files as safetensors: a calibration file given where the model goes would otherwise
  // fail with a safetensors header error that says nothing about the mix-up.
  let st: fs.Stats | undefined;
  try { st = fs.statSync(dir); } catch { st = undefined; }
  if (!st) throw new StreamlineError('E_MODEL_DIR', `model directory ${dir} does not exist`, { file: dir });
  if (!st.isDirectory()) {
    throw new StreamlineError('E_MODEL_DIR', dir.endsWith('.safetensors') ? `${dir} is a single safetensors file; give the model directory`
      : `${dir} is a file, not a model directory (config.json, safetensors weights, tokenizer.json)`, { file: dir });
  }
  const report = inspect(dir);
  assertModelValid(report as ModelReport);
  const modelDir = openModelDir(dir);
  const description = describeModel(modelDir);
  const tokenizer = modelDir.tokenizerFile ? loadTokenizer(dir) : null;
  return modelFromDescription(dir, modelDir, description, tokenizer, report as ModelReport);
}

/** A LoadedModel view over another description of the same source (e.g. a pruned model in memory). */
export function modelFromDescription(dir: string, modelDir: ModelDir, description: ModelDescription, tokenizer: LoadedTokenizer | null,
                                     report: ModelReport): LoadedModel {
  return {
    dir, config: modelDir.config, modelDir, description, tokenizer, report,
    layers: description.layers.length,
    maxLength: description.maxPositionEmbeddings,
    tokenLogprobs: (seqs, o) => tokenLogprobs(description, seqs, o),
    forward: (seqs, o) => forwardDescription(description, seqs, o),
  };
}
