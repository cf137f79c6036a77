/**
 * Safetensors files, memory-mapped and read lazily: opening a file maps it and checks its header (see header.ts);
 * `tensor(name)` returns a zero-copy, read-only view of that tensor's bytes. Nothing is read from disk until the
 * bytes are touched, so opening a 100 GB checkpoint is instant and costs no memory.
 */
import { type DType } from '../dtype.js';
import { StreamlineError, fromNative } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { parseSafetensorsHeader, type TensorEntry } from './header.js';

/** Where a tensor is and what it holds, without reading it. */
export interface TensorInfo {
  dtype: DType;
  shape: readonly number[];
  /** The file that holds it. */
  file: string;
  /** Byte length (numel × dtype size). */
  nbytes: number;
}

/** An open, validated safetensors file. */
export class SafetensorsFile {
  /** The path it was opened from. */
  readonly path: string;
  /** The header's `__metadata__` (empty object when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** File size in bytes. */
  readonly size: number;
  readonly #bytes: Uint8Array;
  readonly #dataStart: number;
  readonly #entries: Map<string, TensorEntry>;
  readonly #readonly: boolean;

  /**
   * Validates `bytes` as a safetensors file. Prefer openSafetensors(path), which memory-maps the file.
   * @throws StreamlineError E_SAFETENSORS_* (see docs/errors.md)
   */
  constructor(bytes: Uint8Array, path: string, options: { readonly?: boolean } = {}) {
    const h = parseSafetensorsHeader(bytes, path);
    this.path = path;
    this.size = bytes.byteLength;
    this.metadata = Object.freeze({ ...h.metadata });
    this.#bytes = bytes;
    this.#dataStart = h.dataStart;
    this.#entries = new Map(h.entries.map((e) => [e.name, e]));
    this.#readonly = options.readonly ?? false;
  }

  /** Tensor names in file order (by offset). */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** True when the file holds a tensor called `name`. */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** Dtype, shape and size of a tensor. @throws StreamlineError E_SAFETENSORS_NOT_FOUND */
  info(name: string): TensorInfo {
    const e = this.#entry(name);
    return { dtype: e.dtype, shape: e.shape, file: this.path, nbytes: e.end - e.begin };
  }

  /**
   * A zero-copy Tensor over the mapped bytes (read-only: use `.clone()` or `.convert()` for a writable copy).
   * @throws StreamlineError E_SAFETENSORS_NOT_FOUND
   */
  tensor(name: string): Tensor {
    const e = this.#entry(name);
    const data = this.#bytes.subarray(this.#dataStart + e.begin, this.#dataStart + e.end);
    return new Tensor(e.dtype, e.shape, data, { readonly: this.#readonly });
  }

  #entry(name: string): TensorEntry {
    const e = this.#entries.get(name);
    if (!e) throw new StreamlineError('E_SAFETENSORS_NOT_FOUND', `${this.path}: no tensor named '${name}'`, { file: this.path });
    return e;
  }
}

/**
 * Memory-maps and validates a safetensors file.
 * @throws StreamlineError E_IO when the file cannot be opened or mapped; E_SAFETENSORS_* when it is malformed.
 * @example
 * const f = openSafetensors('model.safetensors');
 * const w = f.tensor('model.embed_tokens.weight'); // zero-copy view
 */
export function openSafetensors(path: string): SafetensorsFile {
  let buffer: ArrayBuffer;
  try {
    buffer = native().mapFile(path);
  } catch (e) {
    const err = fromNative(e);
    throw new StreamlineError(err.code === 'E_NATIVE' ? 'E_IO' : err.code, `cannot open ${path}: ${err.message.replace(`${path}: `, '')}`, { file: path, cause: e });
  }
  return new SafetensorsFile(new Uint8Array(buffer), path, { readonly: true });
}
