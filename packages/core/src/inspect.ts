/**
 * `inspect`: a trustworthy description of a model directory or a single safetensors file: architecture, sizes,
 * parameter counts (sums of the tensors' element counts), dtypes, shards, and whether every tensor the
 * architecture needs is present with the right shape.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { TensorRole } from './arch/types.js';
import { StreamlineError } from './errors.js';
import { openModelDir } from './model-dir.js';
import { openSafetensors } from './safetensors/reader.js';
import { shapeNumel } from './tensor.js';

/** Count of tensors and of their elements per dtype. */
export type DTypeHistogram = Record<string, { tensors: number; parameters: number }>;

export interface MissingTensor { name: string; role: TensorRole; layer: number | null; shape: number[] }
export interface WrongShapeTensor { name: string; role: TensorRole; layer: number | null; expected: number[]; actual: number[] }

/** inspect() of a model directory. */
export interface ModelReport {
  kind: 'model';
  path: string;
  /** No missing, unexpected or wrong-shape tensors. */
  valid: boolean;
  architecture: string;
  modelType: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  maxPositions: number;
  /** Sliding-window attention: keys per query and the layers that use it (null: full causal attention everywhere). */
  slidingWindow: { size: number; layers: number[] } | null;
  tieWordEmbeddings: boolean;
  norm: 'rms' | 'layer';
  activation: string;
  positions: 'rope' | 'learned';
  /**
   * RoPE details (null with learned positions): scaling type, theta, and the rotated dims per head (headDim unless
   * partial); `sliding`: the RoPE of sliding-window layers when it differs (Gemma 3's rope_local_base_freq).
   */
  rope: { type: string; theta: number; rotaryDim: number; sliding?: { type: string; theta: number } } | null;
  torchDtype: string | null;
  /** Element counts: total over all checkpoint tensors, per layer i (tensors named `…layers.i.…`), and the rest. */
  parameters: { total: number; perLayer: number[]; nonLayer: number; expectedPerLayer: number };
  tensors: number;
  dtypes: DTypeHistogram;
  /** Safetensors files relative to the directory. */
  files: string[];
  tokenizer: string | null;
  missing: MissingTensor[];
  wrongShape: WrongShapeTensor[];
  /** Tensors the architecture does not use (transformers would warn and drop them). */
  unexpected: string[];
  /** Tensors transformers ignores silently (e.g. rotary inv_freq buffers). */
  ignored: string[];
}

/** inspect() of a bare safetensors file. */
export interface FileReport {
  kind: 'file';
  path: string;
  valid: true;
  tensors: { name: string; dtype: string; shape: readonly number[]; numel: number }[];
  parameters: { total: number };
  dtypes: DTypeHistogram;
  metadata: Record<string, string>;
}

const LAYER_RE = /(?:^|\.)layers\.(\d+)\./;

function addDtype(h: DTypeHistogram, dtype: string, numel: number): void {
  const e = (h[dtype] ??= { tensors: 0, parameters: 0 });
  e.tensors++;
  e.parameters += numel;
}

/**
 * Describes a model directory or a `.safetensors` file. Never throws for missing or mis-shaped tensors: they are
 * listed in the report and `valid` is false (see assertModelValid).
 * @throws StreamlineError E_IO, E_MODEL_DIR, E_CONFIG_*, E_CHECKPOINT_MISSING, E_SAFETENSORS_* for unreadable input.
 * @example
 * const r = inspect('../shared/models/kjv-llama');
 * console.log(r.kind === 'model' && r.parameters.total);
 */
export function inspect(pathOrFile: string): ModelReport | FileReport {
  let st: fs.Stats;
  try {
    st = fs.statSync(pathOrFile);
  } catch (e) {
    throw new StreamlineError('E_IO', `cannot read ${pathOrFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: pathOrFile, cause: e });
  }
  return st.isDirectory() ? inspectModel(pathOrFile) : inspectFile(pathOrFile);
}

function inspectFile(file: string): FileReport {
  const f = openSafetensors(file);
  const dtypes: DTypeHistogram = {};
  let total = 0;
  const tensors = f.names().map((name) => {
    const i = f.info(name);
    const numel = shapeNumel(i.shape);
    total += numel;
    addDtype(dtypes, i.dtype, numel);
    return { name, dtype: i.dtype, shape: i.shape, numel };
  });
  return { kind: 'file', path: file, valid: true, tensors, parameters: { total }, dtypes, metadata: { ...f.metadata } };
}

function inspectModel(dir: string): ModelReport {
  const m = openModelDir(dir);
  const { config: c, adapter, checkpoint } = m;
  const traits = adapter.traits(c);
  const expected = adapter.expectedTensors(c, m.naming);
  const expectedByName = new Map(expected.map((e) => [e.name, e]));
  const missing: MissingTensor[] = [], wrongShape: WrongShapeTensor[] = [], unexpected: string[] = [], ignored: string[] = [];
  for (const e of expected) {
    if (!checkpoint.has(e.name)) {
      if (e.required) missing.push({ name: e.name, role: e.role, layer: e.layer, shape: e.shape });
      continue;
    }
    const actual = [...checkpoint.info(e.name).shape];
    if (actual.length !== e.shape.length || actual.some((d, i) => d !== e.shape[i])) {
      wrongShape.push({ name: e.name, role: e.role, layer: e.layer, expected: e.shape, actual });
    }
  }
  const perLayer = new Array<number>(c.numLayers).fill(0);
  const dtypes: DTypeHistogram = {};
  let total = 0, nonLayer = 0;
  for (const name of checkpoint.names()) {
    const info = checkpoint.info(name);
    const numel = shapeNumel(info.shape);
    total += numel;
    addDtype(dtypes, info.dtype, numel);
    const layer = LAYER_RE.exec(name);
    const li = layer ? Number(layer[1]) : -1;
    if (li >= 0 && li < c.numLayers) perLayer[li]! += numel;
    else nonLayer += numel;
    if (!expectedByName.has(name)) (adapter.isIgnoredTensor(name) ? ignored : unexpected).push(name);
  }
  return {
    kind: 'model',
    path: dir,
    valid: missing.length === 0 && wrongShape.length === 0 && unexpected.length === 0,
    architecture: c.architectures[0] ?? adapter.causalLMClass,
    modelType: c.modelType,
    layers: c.numLayers,
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    intermediate: c.intermediateSize,
    vocab: c.vocabSize,
    maxPositions: c.maxPositionEmbeddings,
    slidingWindow: c.slidingWindow !== null && c.layerTypes.includes('sliding_attention')
      ? { size: c.slidingWindow, layers: c.layerTypes.flatMap((t, i) => (t === 'sliding_attention' ? [i] : [])) } : null,
    tieWordEmbeddings: c.tieWordEmbeddings,
    norm: traits.norm,
    activation: c.hiddenAct,
    positions: traits.positions,
    rope: c.rope ? {
      type: c.rope.scaling.type, theta: c.rope.theta, rotaryDim: c.rope.rotaryDim,
      ...(c.ropeByLayerType?.sliding_attention ? { sliding: { type: c.ropeByLayerType.sliding_attention.scaling.type, theta: c.ropeByLayerType.sliding_attention.theta } } : {}),
    } : null,
    torchDtype: c.torchDtype,
    parameters: { total, perLayer, nonLayer, expectedPerLayer: adapter.layerParamCount(c) },
    tensors: checkpoint.names().length,
    dtypes,
    files: [...checkpoint.files],
    tokenizer: m.tokenizerFile ? path.basename(m.tokenizerFile) : null,
    missing,
    wrongShape,
    unexpected,
    ignored,
  };
}

/** Human-readable problems of a model report (empty when valid), most important first. */
export function modelProblems(r: ModelReport): string[] {
  const shape = (s: readonly number[]) => `[${s.join(', ')}]`;
  return [
    ...r.missing.map((m) => `missing ${m.name} ${shape(m.shape)}`),
    ...r.wrongShape.map((w) => `${w.name} has shape ${shape(w.actual)}, expected ${shape(w.expected)}`),
    ...r.unexpected.map((u) => `unexpected tensor ${u}`),
  ];
}

/**
 * Throws unless the report is valid.
 * @throws StreamlineError E_MODEL_TENSORS naming the first few problems and how many there are.
 */
export function assertModelValid(r: ModelReport): void {
  const p = modelProblems(r);
  if (p.length === 0) return;
  const more = p.length > 3 ? `; and ${p.length - 3} more` : '';
  throw new StreamlineError('E_MODEL_TENSORS', `${r.path}: ${p.length} tensor problem(s): ${p.slice(0, 3).join('; ')}${more}`, { file: r.path });
}
