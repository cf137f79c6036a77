/**
 * Streaming safetensors writer. Tensors are described up front (name, dtype, shape) and their bytes are produced
 * one at a time, so a checkpoint larger than memory can be written while each tensor is loaded, converted or
 * computed on demand. Output is split into shards of at most `maxShardBytes` of tensor data (a tensor larger than
 * that gets a shard of its own), named like Hugging Face's (`model-00001-of-00003.safetensors` plus
 * `model.safetensors.index.json`), with headers padded by spaces to a multiple of 8 bytes. Every file is written
 * under a temporary name in the target directory, synced, and renamed only when all of them are complete.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type DType, dtypeSize, isDType, toSafetensorsDType } from '../dtype.js';
import { StreamlineError } from '../errors.js';
import { shapeNumel, Tensor } from '../tensor.js';
import { SAFE_WEIGHTS_INDEX_NAME } from './checkpoint.js';

/** A tensor to write whose bytes are produced only when the writer reaches it. */
export interface LazyTensorEntry {
  name: string;
  dtype: DType;
  shape: readonly number[];
  /** Produces the tensor; it must have exactly `dtype` and `shape`. Called once, in write order. */
  load(): Tensor | Promise<Tensor>;
}

/** A tensor to write: already in memory (`tensor`) or produced lazily (`load`). */
export type WriteEntry = LazyTensorEntry | { name: string; tensor: Tensor };

/** Progress of a write, reported after each tensor. */
export interface WriteProgress {
  tensor: string;
  /** Tensors written so far and in all. */
  done: number;
  total: number;
  /** Tensor bytes written so far and in all. */
  bytesDone: number;
  bytesTotal: number;
}

export interface WriteOptions {
  /** Largest tensor-data size of one shard in bytes. Default: no limit (one `model.safetensors`). */
  maxShardBytes?: number;
  /** Stored as `__metadata__` in every file (string keys and values). */
  metadata?: Record<string, string>;
  /** File name stem; default `model`. */
  baseName?: string;
  onProgress?: (p: WriteProgress) => void;
}

export interface WriteResult {
  /** Written safetensors files, relative to the directory. */
  files: string[];
  /** The index file name when the output is sharded, else null. */
  indexFile: string | null;
  /** Sum of tensor byte sizes (the index's `metadata.total_size`). */
  totalSize: number;
}

interface Planned { name: string; dtype: DType; shape: readonly number[]; nbytes: number; load: () => Tensor | Promise<Tensor> }

function argError(message: string): never {
  throw new StreamlineError('E_WRITE_ARG', message);
}

function plan(entries: Iterable<WriteEntry>): Planned[] {
  const seen = new Set<string>();
  const out: Planned[] = [];
  for (const e of entries) {
    if (typeof e?.name !== 'string' || e.name === '' || e.name === '__metadata__') argError(`invalid tensor name ${JSON.stringify(e?.name)}`);
    if (seen.has(e.name)) argError(`tensor '${e.name}' is given twice`);
    seen.add(e.name);
    if ('tensor' in e) {
      if (!(e.tensor instanceof Tensor)) argError(`tensor '${e.name}': 'tensor' must be a Tensor`);
      const t = e.tensor;
      out.push({ name: e.name, dtype: t.dtype, shape: t.shape, nbytes: t.nbytes, load: () => t });
    } else {
      if (!isDType(e.dtype)) argError(`tensor '${e.name}': unknown dtype '${String(e.dtype)}'`);
      if (typeof e.load !== 'function') argError(`tensor '${e.name}': needs a 'tensor' or a 'load' function`);
      const nbytes = shapeNumel(e.shape, `tensor '${e.name}' shape`) * dtypeSize(e.dtype);
      out.push({ name: e.name, dtype: e.dtype, shape: [...e.shape], nbytes, load: e.load.bind(e) });
    }
  }
  return out;
}

/** Splits in input order; within a shard, larger element sizes go first so every tensor starts aligned. */
function shard(planned: Planned[], maxShardBytes: number): Planned[][] {
  const shards: Planned[][] = [];
  let cur: Planned[] = [], size = 0;
  for (const p of planned) {
    if (cur.length > 0 && size + p.nbytes > maxShardBytes) { shards.push(cur); cur = []; size = 0; }
    cur.push(p);
    size += p.nbytes;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  return shards.map((s) => s.map((p, i) => ({ p, i })).sort((a, b) => dtypeSize(b.p.dtype) - dtypeSize(a.p.dtype) || a.i - b.i).map((x) => x.p));
}

/** The 8-byte length plus the JSON header, padded with spaces so that the data starts at a multiple of 8. */
export function encodeHeader(entries: readonly { name: string; dtype: DType; shape: readonly number[]; nbytes: number }[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: toSafetensorsDType(e.dtype), shape: e.shape, data_offsets: [offset, offset + e.nbytes] };
    offset += e.nbytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

async function writeAll(fh: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  const CHUNK = 1 << 28;
  for (let off = 0; off < bytes.byteLength; ) {
    const { bytesWritten } = await fh.write(bytes, off, Math.min(CHUNK, bytes.byteLength - off));
    off += bytesWritten;
  }
}

async function writeShard(tmp: string, entries: Planned[], metadata: Record<string, string> | undefined, tick: (p: Planned) => void): Promise<void> {
  const fh = await fs.promises.open(tmp, 'wx');
  try {
    await writeAll(fh, encodeHeader(entries, metadata));
    for (const p of entries) {
      const t = await p.load();
      if (!(t instanceof Tensor)) throw new StreamlineError('E_WRITE_MISMATCH', `tensor '${p.name}': load() did not return a Tensor`);
      if (t.dtype !== p.dtype || t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
        throw new StreamlineError('E_WRITE_MISMATCH', `tensor '${p.name}': declared ${p.dtype}[${p.shape.join(', ')}] but load() gave ${t}`);
      }
      await writeAll(fh, t.data);
      tick(p);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function checkOptions(options: WriteOptions): void {
  const m = options.maxShardBytes;
  if (m !== undefined && !(Number.isSafeInteger(m) && m > 0)) argError(`maxShardBytes must be a positive integer, got ${m}`);
  const md = options.metadata;
  if (md !== undefined) {
    if (typeof md !== 'object' || md === null || Array.isArray(md)) argError('metadata must be an object of strings');
    for (const [k, v] of Object.entries(md)) if (typeof v !== 'string') argError(`metadata.${k} must be a string`);
  }
  if (options.baseName !== undefined && !/^[\w.-]+$/.test(options.baseName)) argError(`baseName must be a plain file name stem, got '${options.baseName}'`);
}

/** File-system failures become E_IO; anything else (a producer's own error) passes through unchanged. */
function asIoError(e: unknown, where: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (e instanceof StreamlineError || typeof err?.syscall !== 'string') return e;
  return new StreamlineError('E_IO', `writing safetensors into ${where}: ${err.message}`, { file: where, cause: e });
}

function tmpName(dir: string, final: string): string {
  return path.join(dir, `.${final}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Writes tensors into `dir` as a Hugging Face safetensors checkpoint: `model.safetensors`, or shards plus
 * `model.safetensors.index.json` when `maxShardBytes` splits them. The directory is created if needed. Nothing
 * appears under the final names until every file is complete; on failure the temporary files are removed.
 * @throws StreamlineError E_WRITE_ARG (bad names, options or shapes), E_WRITE_MISMATCH (load() returned another
 *   dtype/shape), E_WRITE_CONFLICT (the directory already holds the other layout, which Hugging Face would load
 *   instead), E_IO (file system).
 * @example
 * await writeSafetensors('out', [{ name: 'w', tensor: Tensor.fromFloat32([1, 2], [2]) }], { maxShardBytes: 5e9 });
 */
export async function writeSafetensors(dir: string, entries: Iterable<WriteEntry>, options: WriteOptions = {}): Promise<WriteResult> {
  checkOptions(options);
  const planned = plan(entries);
  const base = options.baseName ?? 'model';
  const shards = shard(planned, options.maxShardBytes ?? Number.MAX_SAFE_INTEGER);
  const n = shards.length;
  const names = n === 1 ? [`${base}.safetensors`] : shards.map((_, i) => `${base}-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  const indexName = base === 'model' ? SAFE_WEIGHTS_INDEX_NAME : `${base}.safetensors.index.json`;
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (e) {
    throw asIoError(e, dir);
  }
  const conflict = n === 1 ? path.join(dir, indexName) : path.join(dir, `${base}.safetensors`);
  if (fs.existsSync(conflict)) {
    throw new StreamlineError('E_WRITE_CONFLICT', `${conflict} exists and would be loaded instead of (or mixed with) the new ${n === 1 ? 'single file' : 'shards'}; remove it or write elsewhere`, { file: conflict });
  }
  const bytesTotal = planned.reduce((s, p) => s + p.nbytes, 0);
  let done = 0, bytesDone = 0;
  const tick = (p: Planned) => {
    done++; bytesDone += p.nbytes;
    options.onProgress?.({ tensor: p.name, done, total: planned.length, bytesDone, bytesTotal });
  };
  const temps: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      temps.push(tmpName(dir, names[i]!));
      await writeShard(temps[i]!, shards[i]!, options.metadata, tick);
    }
    let indexTmp: string | null = null;
    if (n > 1) {
      const weightMap: Record<string, string> = Object.create(null);
      shards.forEach((s, i) => s.forEach((p) => (weightMap[p.name] = names[i]!)));
      indexTmp = tmpName(dir, indexName);
      temps.push(indexTmp);
      await fs.promises.writeFile(indexTmp, JSON.stringify({ metadata: { total_size: bytesTotal }, weight_map: weightMap }, null, 2) + '\n', { flag: 'wx' });
    }
    for (let i = 0; i < n; i++) await fs.promises.rename(temps[i]!, path.join(dir, names[i]!));
    if (indexTmp) await fs.promises.rename(indexTmp, path.join(dir, indexName));
  } catch (e) {
    await Promise.all(temps.map((t) => fs.promises.rm(t, { force: true })));
    throw asIoError(e, dir);
  }
  return { files: names, indexFile: n > 1 ? indexName : null, totalSize: bytesTotal };
}

/**
 * Writes one safetensors file at exactly `file` (temporary name, then rename), for callers that manage their own
 * layout. Tensors are stored in the given order except that larger element sizes come first (alignment).
 * @throws StreamlineError E_WRITE_ARG, E_WRITE_MISMATCH, E_IO
 */
export async function writeSafetensorsFile(file: string, entries: Iterable<WriteEntry>, options: { metadata?: Record<string, string> } = {}): Promise<void> {
  checkOptions(options);
  const [planned] = shard(plan(entries), Number.MAX_SAFE_INTEGER);
  const tmp = tmpName(path.dirname(file), path.basename(file));
  try {
    await writeShard(tmp, planned!, options.metadata, () => {});
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw asIoError(e, file);
  }
}
