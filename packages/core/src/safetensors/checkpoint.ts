/**
 * A checkpoint: one `model.safetensors`, or shards listed by `model.safetensors.index.json`. The index is untrusted
 * input like the files: every `weight_map` entry must name a file inside the model directory (no absolute paths,
 * no `..`, no symlink leading outside unless allowed), the file must exist and be a valid safetensors file, and it
 * must actually contain the tensor.
 */
import fs from 'node:fs';
import path from 'node:path';
import { StreamlineError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { openSafetensors, type SafetensorsFile, type TensorInfo } from './reader.js';

/** File names Hugging Face uses for a single-file and a sharded safetensors checkpoint. */
export const SAFE_WEIGHTS_NAME = 'model.safetensors';
export const SAFE_WEIGHTS_INDEX_NAME = 'model.safetensors.index.json';

/** A set of tensors spread over one or more safetensors files, addressed by name. */
export interface Checkpoint {
  /** The model directory (for a single file opened directly: its directory). */
  readonly dir: string;
  /** Safetensors files, relative to `dir`, in a stable order (index order for shards). */
  readonly files: readonly string[];
  /** `__metadata__` of the single file, or of the first shard. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The index's `metadata` object when the checkpoint is sharded (e.g. `{ total_size }`). */
  readonly indexMetadata?: Readonly<Record<string, unknown>>;
  /** Every tensor name (index order for shards, file order otherwise). */
  names(): string[];
  has(name: string): boolean;
  /** @throws StreamlineError E_SAFETENSORS_NOT_FOUND */
  info(name: string): TensorInfo;
  /** Zero-copy read-only view. @throws StreamlineError E_SAFETENSORS_NOT_FOUND */
  tensor(name: string): Tensor;
}

/** Options of openCheckpoint. */
export interface OpenCheckpointOptions {
  /**
   * Accept shard files that are symlinks to any place outside the model directory. Default false; the links of a
   * Hugging Face hub cache snapshot (`snapshots/<revision>/…` → `../../blobs/<hash>`) are accepted without it.
   */
  allowSymlinkEscape?: boolean;
}

function indexError(file: string, message: string): never {
  throw new StreamlineError('E_SAFETENSORS_INDEX', `${file}: ${message}`, { file });
}

function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

class CheckpointImpl implements Checkpoint {
  readonly dir: string;
  readonly files: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly indexMetadata?: Readonly<Record<string, unknown>>;
  readonly #where: Map<string, SafetensorsFile>;

  constructor(dir: string, files: string[], where: Map<string, SafetensorsFile>, first: SafetensorsFile | undefined, indexMetadata?: Record<string, unknown>) {
    this.dir = dir;
    this.files = Object.freeze(files);
    this.metadata = first?.metadata ?? {};
    if (indexMetadata) this.indexMetadata = Object.freeze(indexMetadata);
    this.#where = where;
  }

  names(): string[] { return [...this.#where.keys()]; }
  has(name: string): boolean { return this.#where.has(name); }
  info(name: string): TensorInfo { return this.#file(name).info(name); }
  tensor(name: string): Tensor { return this.#file(name).tensor(name); }

  #file(name: string): SafetensorsFile {
    const f = this.#where.get(name);
    if (!f) throw new StreamlineError('E_SAFETENSORS_NOT_FOUND', `${this.dir}: checkpoint has no tensor named '${name}'`, { file: this.dir });
    return f;
  }
}

/**
 * Opens the safetensors weights of a model directory (`model.safetensors`, else the sharded index), or a single
 * `.safetensors` file given directly.
 * @throws StreamlineError E_IO when the path cannot be read, E_CHECKPOINT_MISSING when the directory has no
 *   safetensors weights, E_SAFETENSORS_INDEX for a bad index, E_SAFETENSORS_* for a bad file.
 * @example
 * const ckpt = openCheckpoint('models/kjv-llama');
 * const w = ckpt.tensor('model.layers.0.self_attn.q_proj.weight');
 */
export function openCheckpoint(dirOrFile: string, options: OpenCheckpointOptions = {}): Checkpoint {
  let st: fs.Stats;
  try {
    st = fs.statSync(dirOrFile);
  } catch (e) {
    throw new StreamlineError('E_IO', `cannot read ${dirOrFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: dirOrFile, cause: e });
  }
  if (st.isFile()) {
    const f = openSafetensors(dirOrFile);
    return new CheckpointImpl(path.dirname(dirOrFile), [path.basename(dirOrFile)], new Map(f.names().map((n) => [n, f])), f);
  }
  const dir = dirOrFile;
  const single = path.join(dir, SAFE_WEIGHTS_NAME);
  if (fs.existsSync(single)) {
    const f = openSafetensors(single);
    return new CheckpointImpl(dir, [SAFE_WEIGHTS_NAME], new Map(f.names().map((n) => [n, f])), f);
  }
  const indexFile = path.join(dir, SAFE_WEIGHTS_INDEX_NAME);
  if (fs.existsSync(indexFile)) return openSharded(dir, indexFile, options);
  let present: string[] = [];
  try { present = fs.readdirSync(dir); } catch { /* reported below */ }
  const other = present.filter((n) => /\.(bin|pt|pth|gguf|safetensors)$/.test(n));
  throw new StreamlineError(
    'E_CHECKPOINT_MISSING',
    `${dir}: no ${SAFE_WEIGHTS_NAME} or ${SAFE_WEIGHTS_INDEX_NAME}` + (other.length ? ` (found ${other.slice(0, 5).join(', ')}; only safetensors checkpoints are read)` : ''),
    { file: dir },
  );
}

function openSharded(dir: string, indexFile: string, options: OpenCheckpointOptions): Checkpoint {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    indexError(indexFile, `not readable JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) indexError(indexFile, 'not a JSON object');
  const { weight_map: weightMap, metadata } = json as Record<string, unknown>;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) indexError(indexFile, "'weight_map' must be an object of tensor name -> file");
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))) indexError(indexFile, "'metadata' must be an object");
  const realDir = fs.realpathSync(dir);
  const opened = new Map<string, SafetensorsFile>();
  const where = new Map<string, SafetensorsFile>();
  for (const [name, rel] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof rel !== 'string' || rel === '') indexError(indexFile, `weight_map['${name}'] must be a file name, got ${JSON.stringify(rel)}`);
    let f = opened.get(rel);
    if (!f) {
      f = openShard(dir, realDir, rel, name, indexFile, options);
      opened.set(rel, f);
    }
    if (!f.has(name)) indexError(indexFile, `weight_map says '${name}' is in ${rel}, but that file has no such tensor`);
    where.set(name, f);
  }
  const files = [...opened.keys()];
  return new CheckpointImpl(dir, files, where, opened.get(files[0]!), { ...(metadata as Record<string, unknown> | undefined) });
}

/**
 * A Hugging Face hub cache snapshot (`<cache>/models--org--name/snapshots/<revision>/`) holds symlinks into the
 * repository's own `blobs/` folder: every sharded model downloaded with `from_pretrained` or `huggingface-cli download`
 * (without --local-dir) looks like this, so such links are followed; links anywhere else still need allowSymlinkEscape.
 */
function isInsideHubBlobs(realDir: string, real: string): boolean {
  if (path.basename(path.dirname(realDir)) !== 'snapshots') return false;
  const blobs = path.join(path.dirname(path.dirname(realDir)), 'blobs');
  return isInside(blobs, real) && path.dirname(real) === blobs;
}

function openShard(dir: string, realDir: string, rel: string, name: string, indexFile: string, options: OpenCheckpointOptions): SafetensorsFile {
  const parts = rel.split(/[\\/]/);
  if (path.isAbsolute(rel) || parts.includes('..') || rel.includes('\0')) {
    indexError(indexFile, `weight_map['${name}'] = '${rel}' must be a relative path inside the model directory`);
  }
  const full = path.join(dir, rel);
  if (!isInside(path.resolve(dir), path.resolve(full))) indexError(indexFile, `weight_map['${name}'] = '${rel}' points outside the model directory`);
  let real: string;
  try {
    real = fs.realpathSync(full);
  } catch {
    indexError(indexFile, `weight_map['${name}'] names ${rel}, which does not exist`);
  }
  if (!options.allowSymlinkEscape && !isInside(realDir, real) && !isInsideHubBlobs(realDir, real)) {
    indexError(indexFile, `weight_map['${name}'] = '${rel}' is a symlink to ${real}, outside the model directory (only a Hugging Face cache snapshot's links into its ../../blobs are followed; allowSymlinkEscape permits others)`);
  }
  if (!fs.statSync(real).isFile()) indexError(indexFile, `weight_map['${name}'] = '${rel}' is not a regular file`);
  return openSafetensors(full);
}
