/**
 * Export of a pruned model as a standard Hugging Face checkpoint: config.json with the new layer count and
 * consistent per-layer fields, safetensors in the source's dtype (sharded like the source), tokenizer and
 * generation files copied unchanged, and a streamline.json manifest. Layers are renumbered contiguously.
 *
 * Safety: the output is assembled in a hidden temporary directory next to it and renamed into place only when
 * complete (streamline.json is written last), so an interrupted export never leaves a directory that looks
 * finished; the source directory is never written; a non-empty output needs `force`; free space is checked first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type DType, dtypeSize } from '../dtype.js';
import { isStreamlineError, StreamlineError } from '../errors.js';
import { folderProblem, isInside } from '../fs-paths.js';
import type { Checkpoint } from '../safetensors/checkpoint.js';
import { writeSafetensors, type WriteEntry, type WriteProgress } from '../safetensors/writer.js';
import { Tensor } from '../tensor.js';
import type { LayerRole } from '../engine/description.js';
import { keptLayers, pruneConfig } from './config-edit.js';

/** What the exporter needs to know about the source model. */
export interface ExportSource {
  dir: string;
  rawConfig: Record<string, unknown>;
  checkpoint: Checkpoint;
  numLayers: number;
  /** Tensor name of a layer role (absent roles may still be named; the checkpoint decides). */
  layerTensorName(role: LayerRole, layer: number): string;
  /** The roles stacked in the fused tensor that holds `role` (Phi-3 q | k | v), in row order; undefined for a plain one. */
  fusedGroup?(role: LayerRole): readonly LayerRole[] | undefined;
  /** Tensor name of the input embedding. */
  embedTensorName: string;
  tiedEmbeddings: boolean;
  /**
   * A replacement tensor's values as the checkpoint stores them, from the values the engine runs (e.g. Gemma's norm
   * weights, stored as w − 1 for its (1 + w) norms); absent: stored as they are. The one place a family's per-role
   * transform on write applies. The in-memory model must round the same way for its logits to match the export.
   */
  toCheckpoint?(role: LayerRole, values: Float32Array): Float32Array;
}

/** The trained or computed replacement, in f32; it is rounded to each tensor's source dtype on export. */
export type ExportReplacement =
  | { kind: 'none' }
  /** `linear`: new weights for existing tensors (layer start−1's MLP output projection and bias, or the embedding). */
  | { kind: 'linear'; tensors: Record<string, Float32Array> }
  /** `mlp` / `layer`: weights by role for the layer that takes the window's place. */
  | { kind: 'mlp' | 'layer'; weights: Partial<Record<LayerRole, Float32Array>> };

export interface ExportOptions {
  source: ExportSource;
  /** The removed window [start, end). */
  start: number;
  end: number;
  replacement: ExportReplacement;
  outDir: string;
  /** Replace a non-empty output directory. */
  force?: boolean;
  /** Written as streamline.json (plus files and timings added here). */
  manifest: Record<string, unknown>;
  onProgress?: (p: WriteProgress) => void;
}

export interface ExportResult {
  outDir: string;
  files: string[];
  numLayers: number;
  parameters: number;
  bytes: number;
}

const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.gguf|\.h5|\.msgpack)$|^model\.safetensors\.index\.json$|^pytorch_model\.bin\.index\.json$/;
const ATTENTION_ROLES: LayerRole[] = ['q.weight', 'q.bias', 'k.weight', 'k.bias', 'v.weight', 'v.bias', 'o.weight', 'o.bias'];
const LAYER_NAME = /^(.*?\.?layers\.)(\d+)(\..+)$/;

/**
 * Checks an output directory before any work: its folder exists and can be written, it is not inside the source,
 * and it is empty unless force. Run before scoring and training, so a bad -o fails in seconds, not after hours.
 */
export function checkOutput(source: string, out: string, force: boolean): void {
  const resolved = path.resolve(out);
  const parentPath = path.dirname(resolved);
  let parent: string;
  try {
    parent = fs.realpathSync(parentPath);
  } catch (e) {
    throw new StreamlineError('E_OUTPUT', `cannot write ${out}: folder ${parentPath} does not exist (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: out, cause: e });
  }
  const problem = folderProblem(parentPath);
  if (problem) throw new StreamlineError('E_OUTPUT', `cannot write ${out}: ${problem.why}`, { file: out, ...(problem.cause ? { cause: problem.cause } : {}) });
  const src = fs.realpathSync(source);
  // basename of the resolved path: for `-o .` or `-o dir/..`, path.basename(out) is '.' or '..' and named another folder.
  const target = path.join(parent, path.basename(resolved));
  if (isInside(src, target)) throw new StreamlineError('E_OUTPUT_INSIDE_SOURCE', `output ${out} is inside the source model directory ${source}; choose another place`);
  if (isInside(target, src)) throw new StreamlineError('E_OUTPUT_INSIDE_SOURCE', `output ${out} contains the source model directory ${source}`);
  if (fs.existsSync(target)) {
    if (!fs.statSync(target).isDirectory()) throw new StreamlineError('E_OUTPUT_EXISTS', `output ${out} exists and is not a directory`);
    const empty = fs.readdirSync(target).length === 0;
    if (!empty && !force) throw new StreamlineError('E_OUTPUT_EXISTS', `output directory ${out} is not empty; pass --force to replace it`);
    // --force replaces the whole folder: never the one the user is working in, or one above it.
    if (!empty && isInside(target, fs.realpathSync(process.cwd())))
      throw new StreamlineError('E_OUTPUT_EXISTS', `output ${out} is the current directory or contains it; --force would delete it. Choose a new folder`);
  }
}

function checkFreeSpace(dir: string, bytes: number): void {
  const st = fs.statfsSync(dir);
  const free = Number(st.bavail) * Number(st.bsize);
  const need = Math.ceil(bytes * 1.02) + 16 * 1024 * 1024;
  if (free < need) throw new StreamlineError('E_DISK_SPACE', `not enough free space in ${dir}: need about ${(need / 2 ** 20).toFixed(0)} MiB, ${(free / 2 ** 20).toFixed(0)} MiB free`);
}

/** Removes temporary directories left by interrupted exports to the same output. */
function removeStale(parent: string, base: string): void {
  for (const name of fs.readdirSync(parent))
    if (name.startsWith(`.${base}.streamline-tmp-`) || name.startsWith(`.${base}.streamline-old-`))
      fs.rmSync(path.join(parent, name), { recursive: true, force: true });
}

/**
 * Writes the pruned model. See the module comment for the safety rules.
 * @throws StreamlineError E_OUTPUT_EXISTS, E_OUTPUT_INSIDE_SOURCE, E_DISK_SPACE, E_EXPORT (inconsistent input).
 */
export async function exportPruned(o: ExportOptions): Promise<ExportResult> {
  const { source, start, end, replacement } = o;
  const L = source.numLayers;
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start < end && end <= L))
    throw new StreamlineError('E_RANGE', `window [${start}, ${end}) is not inside [0, ${L})`);
  checkOutput(source.dir, o.outDir, o.force ?? false);
  const out = path.resolve(o.outDir);
  const parent = path.dirname(out), base = path.basename(out);
  fs.mkdirSync(parent, { recursive: true });
  removeStale(parent, base);

  const hasLayer = replacement.kind === 'mlp' || replacement.kind === 'layer';
  const kept = keptLayers(L, start, end, hasLayer);
  const newIndex = new Map(kept.map((src, i) => [src, i]));
  const ckpt = source.checkpoint;

  // Names of the replacement layer's tensors, by role.
  const replacedByName = new Map<string, { role: string; values: Float32Array | null }>();
  if (hasLayer) {
    const trained = (replacement as { weights: Partial<Record<LayerRole, Float32Array>> }).weights;
    const w: Partial<Record<LayerRole, Float32Array>> = {};
    for (const [role, values] of Object.entries(trained) as [LayerRole, Float32Array][])
      w[role] = source.toCheckpoint ? source.toCheckpoint(role, values) : values;
    const roles = new Set<LayerRole>([...(Object.keys(w) as LayerRole[]), ...(replacement.kind === 'mlp' ? ATTENTION_ROLES : [])]);
    for (const role of roles) {
      const name = source.layerTensorName(role, start);
      if (!ckpt.has(name)) {
        if (w[role]) throw new StreamlineError('E_EXPORT', `replacement has '${role}' but the source layer ${start} has no tensor ${name}`);
        continue;
      }
      if (replacedByName.has(name)) continue;
      const parts = source.fusedGroup?.(role);
      // `mlp`: attention weights are zero so the layer computes exactly x + MLP(norm(x)).
      replacedByName.set(name, parts ? { role: parts.join(' | '), values: stackParts(parts, w, name) } : { role, values: w[role] ?? null });
    }
  }
  const linearTensors = replacement.kind === 'linear' ? replacement.tensors : {};
  for (const name of Object.keys(linearTensors))
    if (!ckpt.has(name)) throw new StreamlineError('E_EXPORT', `linear replacement folds into ${name}, which the checkpoint lacks`);

  const entries: WriteEntry[] = [];
  let parameters = 0, bytes = 0;
  for (const name of ckpt.names()) {
    const info = ckpt.info(name);
    const m = LAYER_NAME.exec(name);
    let outName = name;
    if (m) {
      const layer = Number(m[2]);
      const ni = newIndex.get(layer);
      if (ni === undefined) continue;
      outName = `${m[1]}${ni}${m[3]}`;
    }
    const dtype = info.dtype as DType;
    const shape = info.shape;
    const rep = replacedByName.get(name);
    const lin = linearTensors[name];
    let load: () => Tensor;
    if (rep) {
      const values = rep.values;
      if (values && values.length !== info.nbytes / dtypeSize(dtype))
        throw new StreamlineError('E_EXPORT', `replacement '${rep.role}' has ${values.length} values; ${name} has shape [${shape.join(', ')}]`);
      load = () => (values ? Tensor.fromFloat32(values, shape, dtype) : Tensor.zeros(dtype, shape));
    } else if (lin) {
      if (lin.length !== info.nbytes / dtypeSize(dtype)) throw new StreamlineError('E_EXPORT', `folded ${name} has the wrong size`);
      load = () => Tensor.fromFloat32(lin, shape, dtype);
    } else {
      load = () => ckpt.tensor(name);
    }
    entries.push({ name: outName, dtype, shape, load });
    parameters += shape.reduce((a, b) => a * b, 1);
    bytes += info.nbytes;
  }
  checkFreeSpace(parent, bytes);

  const tmp = path.join(parent, `.${base}.streamline-tmp-${process.pid}`);
  try {
    fs.mkdirSync(tmp);
    const maxShard = shardSize(source);
    const written = await writeSafetensors(tmp, entries, {
      ...(maxShard ? { maxShardBytes: maxShard } : {}),
      metadata: { format: 'pt' },
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    });
    const { config } = pruneConfig(source.rawConfig, kept);
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    const copied: string[] = [];
    for (const f of fs.readdirSync(source.dir)) {
      const p = path.join(source.dir, f);
      // The source's model card describes the source model, not this one.
      if (f === 'config.json' || f === 'streamline.json' || f === 'README.md' || WEIGHT_FILE.test(f) || !fs.statSync(p).isFile()) continue;
      fs.copyFileSync(p, path.join(tmp, f));
      fs.chmodSync(path.join(tmp, f), 0o644);
      copied.push(f);
    }
    const manifest = { ...o.manifest, output: { files: [...written.files, ...(written.indexFile ? [written.indexFile] : []), 'config.json', ...copied], numLayers: kept.length, parameters, bytes, layerMap: kept } };
    fs.writeFileSync(path.join(tmp, 'streamline.json'), JSON.stringify(manifest, null, 2) + '\n');
    if (fs.existsSync(out)) {
      const old = path.join(parent, `.${base}.streamline-old-${process.pid}`);
      fs.renameSync(out, old);
      fs.renameSync(tmp, out);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, out);
    }
    return { outDir: out, files: manifest.output.files, numLayers: kept.length, parameters, bytes };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (isStreamlineError(e)) throw e;
    // The output was checked before the work began; a file system that fills up or turns read-only since is still
    // the user's to fix, so it gets the system's reason, not a stack trace.
    throw new StreamlineError('E_IO', `cannot write the pruned model to ${o.outDir}: ${(e as Error).message}`, { file: o.outDir, cause: e });
  }
}

/**
 * The values of a fused tensor from its parts' values, stacked in row order; null (zeros) when the replacement has
 * none of them (the attention of an `mlp` replacement). Some but not all would leave rows undefined: an error.
 */
function stackParts(parts: readonly LayerRole[], w: Partial<Record<LayerRole, Float32Array>>, name: string): Float32Array | null {
  const have = parts.filter((r) => w[r]);
  if (have.length === 0) return null;
  if (have.length !== parts.length) throw new StreamlineError('E_EXPORT', `${name} stacks ${parts.join(' | ')}, but the replacement has only ${have.join(', ')}`);
  const out = new Float32Array(parts.reduce((n, r) => n + w[r]!.length, 0));
  let at = 0;
  for (const r of parts) {
    out.set(w[r]!, at);
    at += w[r]!.length;
  }
  return out;
}

/** The source's largest shard size when it is sharded (so the output shards alike), else undefined. */
function shardSize(source: ExportSource): number | undefined {
  const files = source.checkpoint.files;
  if (files.length <= 1) return undefined;
  return Math.max(...files.map((f) => fs.statSync(path.join(source.checkpoint.dir, f)).size));
}
