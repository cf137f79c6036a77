/**
 * Validation of untrusted safetensors bytes, following the reference implementation (huggingface/safetensors):
 * an 8-byte little-endian header length N (at most 100 MB, with 8 + N inside the file), N bytes of UTF-8 JSON
 * starting with `{`, one entry per tensor `{dtype, shape, data_offsets: [begin, end]}` plus an optional
 * `__metadata__` string map, and a data section that the entries cover exactly: sorted by offset, contiguous
 * from 0, no overlap, no gap, no trailing bytes, and each byte range equal to numel × dtype size.
 * Pure: works on any byte view, so tests and fuzzers can call it without files.
 */
import { type DType, dtypeSize, fromSafetensorsDType, UNSUPPORTED_SAFETENSORS_DTYPES } from '../dtype.js';
import { StreamlineError } from '../errors.js';

/** The largest header the reader accepts, as in the reference implementation. */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor's entry, validated. Offsets are relative to the start of the data section. */
export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: readonly number[];
  /** Byte range [begin, end) within the data section. */
  begin: number;
  end: number;
}

/** A validated header. */
export interface ParsedHeader {
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
  /** Entries in file order (sorted by offset). */
  entries: TensorEntry[];
  /** The `__metadata__` map (empty when absent). */
  metadata: Record<string, string>;
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function fail(code: string, file: string, message: string): never {
  throw new StreamlineError(code, `${file}: ${message}`, { file });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Checks a whole safetensors file given as bytes and returns its layout.
 * @param bytes the entire file
 * @param file the file name used in error messages
 * @throws StreamlineError with one of the E_SAFETENSORS_* codes listed in docs/errors.md
 */
export function parseSafetensorsHeader(bytes: Uint8Array, file: string): ParsedHeader {
  const fileSize = bytes.byteLength;
  if (fileSize < 8) fail('E_SAFETENSORS_TRUNCATED', file, `file has ${fileSize} bytes, fewer than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    fail('E_SAFETENSORS_HEADER_TOO_LARGE', file, `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(n64);
  if (8 + n > fileSize) fail('E_SAFETENSORS_HEADER_LENGTH', file, `header length ${n} runs past the end of the ${fileSize}-byte file`);
  let text: string;
  try {
    text = decoder.decode(bytes.subarray(8, 8 + n));
  } catch {
    fail('E_SAFETENSORS_UTF8', file, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail('E_SAFETENSORS_JSON', file, 'header does not start with "{"');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail('E_SAFETENSORS_JSON', file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) fail('E_SAFETENSORS_JSON', file, 'header is not a JSON object');

  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = checkMetadata(value, file);
      continue;
    }
    entries.push(checkEntry(name, value, file));
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const dataSize = fileSize - 8 - n;
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      const what = e.begin < expected ? 'overlaps the previous tensor' : 'leaves a gap after the previous tensor';
      fail('E_SAFETENSORS_OFFSET', file, `tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] ${what} (expected begin ${expected})`);
    }
    if (e.end > dataSize) {
      fail('E_SAFETENSORS_TRUNCATED', file, `tensor '${e.name}': data_offsets end ${e.end} is past the ${dataSize}-byte data section (file truncated?)`);
    }
    expected = e.end;
  }
  if (expected !== dataSize) {
    fail('E_SAFETENSORS_TRAILING', file, `data section has ${dataSize} bytes but the tensors cover ${expected} (${dataSize - expected} trailing bytes)`);
  }
  return { dataStart: 8 + n, entries, metadata };
}

function checkMetadata(value: unknown, file: string): Record<string, string> {
  if (!isPlainObject(value)) fail('E_SAFETENSORS_METADATA', file, `__metadata__ must be an object of strings, got ${show(value)}`);
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail('E_SAFETENSORS_METADATA', file, `__metadata__.${k} must be a string, got ${show(v)}`);
    out[k] = v;
  }
  return out;
}

function checkEntry(name: string, value: unknown, file: string): TensorEntry {
  const where = `tensor '${name}'`;
  if (!isPlainObject(value)) fail('E_SAFETENSORS_JSON', file, `${where}: entry must be an object with dtype, shape and data_offsets, got ${show(value)}`);
  for (const key of ['dtype', 'shape', 'data_offsets']) {
    if (!Object.hasOwn(value, key)) fail('E_SAFETENSORS_JSON', file, `${where}: entry has no '${key}'`);
  }
  const st = value.dtype;
  if (typeof st !== 'string') fail('E_SAFETENSORS_DTYPE', file, `${where}: dtype must be a string, got ${show(st)}`);
  const dtype = fromSafetensorsDType(st);
  if (!dtype) {
    const why = UNSUPPORTED_SAFETENSORS_DTYPES.includes(st) ? 'is not supported by Streamline' : 'is not a safetensors dtype';
    fail('E_SAFETENSORS_DTYPE', file, `${where}: dtype ${show(st)} ${why} (supported: F32, F16, BF16, I32, I64, U8, BOOL)`);
  }
  const shape = value.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail('E_SAFETENSORS_SHAPE', file, `${where}: shape must be an array of non-negative integers, got ${show(shape)}`);
  }
  const offs = value.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail('E_SAFETENSORS_OFFSET', file, `${where}: data_offsets must be two non-negative integers [begin, end], got ${show(offs)}`);
  }
  const [begin, end] = offs as [number, number];
  if (end < begin) fail('E_SAFETENSORS_OFFSET', file, `${where}: data_offsets [${begin}, ${end}] end before they begin`);
  // numel × size in checked arithmetic: with no zero dimension the product never decreases, so once it passes
  // the byte range it can stop (and never overflows a double's exact integers).
  const range = end - begin;
  const dims = shape as number[];
  let bytes = dims.includes(0) ? 0 : dtypeSize(dtype);
  let overflow = false;
  for (let i = 0; i < dims.length && bytes > 0 && !overflow; i++) {
    bytes *= dims[i]!;
    if (bytes > range) overflow = true;
  }
  if (overflow || bytes !== range) {
    fail('E_SAFETENSORS_SIZE', file, `${where}: shape [${(shape as number[]).join(', ')}] of ${st} needs ${overflow ? 'more than ' + range : bytes} bytes but data_offsets [${begin}, ${end}] hold ${range}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}
