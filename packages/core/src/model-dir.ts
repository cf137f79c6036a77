/**
 * A Hugging Face model directory: config.json (parsed with the family's defaults), the architecture adapter, the
 * safetensors checkpoint (memory-mapped) and the tokenizer file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fusedShape } from './arch/common.js';
import { getAdapter } from './arch/index.js';
import { NORM_WEIGHT_ROLES, type ArchAdapter, type GlobalRole, type LayerRole, type NamingOptions, type TensorRole } from './arch/types.js';
import { loadModelConfig, type ModelConfig } from './config.js';
import { StreamlineError } from './errors.js';
import { openCheckpoint, type Checkpoint, type OpenCheckpointOptions } from './safetensors/checkpoint.js';
import { Tensor } from './tensor.js';

/** An opened model directory. Nothing is read beyond config.json and the safetensors headers. */
export interface ModelDir {
  dir: string;
  config: ModelConfig;
  adapter: ArchAdapter;
  checkpoint: Checkpoint;
  /** How this checkpoint spells tensor names (some lack the `model.` prefix). */
  naming: NamingOptions;
  /** Path of tokenizer.json when present. */
  tokenizerFile?: string;
  /** Every file in the directory (names relative to it, sorted). */
  files: string[];
  /** Full name of the checkpoint tensor holding a per-layer role (a fused one for Phi-3 q/k/v, gate/up), or undefined when the family has no such role. */
  layerTensorName(role: LayerRole, layer: number): string | undefined;
  globalTensorName(role: GlobalRole): string | undefined;
  /**
   * The tensor for a role (zero-copy, read-only), or undefined when the role does not exist for this model
   * (e.g. `q.bias` in Llama, `lm_head.weight` when tied: use `embed.weight`). A role stored in a fused tensor
   * (Phi-3 `qkv_proj`) is its row range. A norm weight of a family that stores offsets (Gemma's 1 + w) is the
   * effective weight, a small f32 copy.
   * @throws StreamlineError E_MODEL_TENSORS when the architecture expects it but the checkpoint lacks it.
   */
  layerTensor(role: LayerRole, layer: number): Tensor | undefined;
  globalTensor(role: GlobalRole): Tensor | undefined;
}

/**
 * Opens a model directory: reads config.json, picks the adapter, memory-maps the weights.
 * @throws StreamlineError E_MODEL_DIR (not a directory), E_CONFIG_* (config.json), E_CHECKPOINT_MISSING,
 *   E_SAFETENSORS_* (weights). Missing or mis-shaped tensors are not checked here: use inspect().
 * @example
 * const m = openModelDir('../shared/models/kjv-llama');
 * const wq = m.layerTensor('q.weight', 0); // bf16[256, 256]
 */
export function openModelDir(dir: string, options: OpenCheckpointOptions = {}): ModelDir {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(dir); } catch { st = undefined; }
  if (!st?.isDirectory()) throw new StreamlineError('E_MODEL_DIR', `${dir} is not a model directory`, { file: dir });
  const snapshots = path.join(dir, 'snapshots');
  if (!fs.existsSync(path.join(dir, 'config.json')) && fs.existsSync(snapshots) && fs.statSync(snapshots).isDirectory()) {
    // A Hugging Face cache repository folder (models--org--name): the model itself is one of its snapshots.
    const revisions = fs.readdirSync(snapshots).sort();
    throw new StreamlineError('E_CONFIG_MISSING', `${dir} has no config.json; it looks like a Hugging Face cache folder: give ${path.join(dir, 'snapshots', revisions[0] ?? '<revision>')}` +
      (revisions.length > 1 ? ` (revisions: ${revisions.join(', ')})` : ''), { file: dir });
  }
  const config = loadModelConfig(path.join(dir, 'config.json'));
  const adapter = getAdapter(config.modelType);
  const checkpoint = openCheckpoint(dir, options);
  const naming = adapter.detectNaming(checkpoint.names());
  const files = fs.readdirSync(dir).sort();
  const tokenizer = path.join(dir, 'tokenizer.json');
  const shapes = { layer: adapter.layerShapes(config), global: adapter.globalShapes(config) };
  const offset = adapter.normWeightOffset;
  const effective = new Map<string, Tensor>();
  const get = (name: string | undefined, exists: boolean, what: string, role: TensorRole): Tensor | undefined => {
    if (!name || !exists) return undefined;
    if (!checkpoint.has(name)) throw new StreamlineError('E_MODEL_TENSORS', `${dir}: ${what} (${name}) is missing from the checkpoint`, { file: dir });
    if (offset === undefined || !NORM_WEIGHT_ROLES.includes(role)) return checkpoint.tensor(name);
    // Gemma computes (1 + w) in f32 from the stored w: the same sum here, once per tensor.
    let t = effective.get(name);
    if (!t) {
      const stored = checkpoint.tensor(name);
      t = Tensor.fromFloat32(stored.toFloat32().map((w) => w + offset), stored.shape, 'f32');
      effective.set(name, t);
    }
    return t;
  };
  return {
    dir, config, adapter, checkpoint, naming, files,
    ...(fs.existsSync(tokenizer) ? { tokenizerFile: tokenizer } : {}),
    layerTensorName: (role, layer) => adapter.layerTensorName(role, layer, naming),
    globalTensorName: (role) => adapter.globalTensorName(role, naming),
    layerTensor(role, layer) {
      if (!Number.isSafeInteger(layer) || layer < 0 || layer >= config.numLayers) {
        throw new StreamlineError('E_MODEL_LAYER', `layer ${layer} is outside [0, ${config.numLayers})`);
      }
      const name = adapter.layerTensorName(role, layer, naming);
      const whole = get(name, shapes.layer[role] !== undefined, `layer ${layer} ${role}`, role);
      const parts = adapter.fusedGroup(role);
      if (!whole || !parts) return whole;
      // A fused tensor (Phi-3 qkv_proj): the role is a row range of it, and only the expected stacked shape says where.
      const want = fusedShape(parts, shapes.layer);
      if (whole.shape.length !== want.length || whole.shape.some((d, k) => d !== want[k]))
        throw new StreamlineError('E_MODEL_TENSORS', `${dir}: ${name} has shape [${whole.shape.join(', ')}]; the config implies [${want.join(', ')}] (${parts.join(' | ')} stacked)`, { file: dir });
      let start = 0;
      for (const p of parts) {
        const rows = shapes.layer[p]![0]!;
        if (p === role) return whole.rows(start, start + rows);
        start += rows;
      }
      return undefined;
    },
    globalTensor(role) {
      if (role === 'lm_head.weight' && config.tieWordEmbeddings) return undefined;
      return get(adapter.globalTensorName(role, naming), shapes.global[role] !== undefined, role, role);
    },
  };
}
