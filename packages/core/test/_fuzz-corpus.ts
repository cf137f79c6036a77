// Seeded generator of mutated safetensors files for the fuzz test and scripts/fuzz-valgrind.sh, plus the check
// applied to each: a StreamlineError with a known code, or a read whose every tensor lies inside the file.
import { dtypeSize, isStreamlineError, SafetensorsFile, type Tensor } from '../src/index.js';
import { craft, prng } from './_helpers.js';

export const KNOWN_CODES = new Set([
  'E_SAFETENSORS_TRUNCATED', 'E_SAFETENSORS_HEADER_TOO_LARGE', 'E_SAFETENSORS_HEADER_LENGTH', 'E_SAFETENSORS_UTF8',
  'E_SAFETENSORS_JSON', 'E_SAFETENSORS_DTYPE', 'E_SAFETENSORS_SHAPE', 'E_SAFETENSORS_SIZE', 'E_SAFETENSORS_OFFSET',
  'E_SAFETENSORS_TRAILING', 'E_SAFETENSORS_METADATA',
]);

const ST_DTYPES = ['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'BOOL'];
const SIZES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1, BOOL: 1 };

/** A valid file with a few tensors of random dtypes and shapes (some zero-size) and maybe metadata. */
function validFile(r: () => number): Uint8Array {
  const header: Record<string, unknown> = {};
  if (r() < 0.5) header.__metadata__ = { format: 'pt', note: 'ü✓' };
  let off = 0;
  const n = 1 + Math.floor(r() * 5);
  for (let i = 0; i < n; i++) {
    const dtype = ST_DTYPES[Math.floor(r() * ST_DTYPES.length)]!;
    const rank = Math.floor(r() * 3);
    const shape = Array.from({ length: rank }, () => (r() < 0.1 ? 0 : 1 + Math.floor(r() * 6)));
    const nb = shape.reduce((a, b) => a * b, 1) * SIZES[dtype]!;
    header[`t${i}.weight`] = { dtype, shape, data_offsets: [off, off + nb] };
    off += nb;
  }
  return craft(header, off);
}

function randomValue(r: () => number): unknown {
  const pick = Math.floor(r() * 12);
  switch (pick) {
    case 0: return -1;
    case 1: return 1.5;
    case 2: return 2 ** 53 + 2;
    case 3: return 'F32';
    case 4: return null;
    case 5: return [];
    case 6: return [Math.floor(r() * 40), Math.floor(r() * 40)];
    case 7: return { a: 'b' };
    case 8: return ST_DTYPES[Math.floor(r() * ST_DTYPES.length)];
    case 9: return 'F8_E4M3';
    case 10: return [2 ** 31, 2 ** 31, 2 ** 31];
    default: return Math.floor(r() * 64);
  }
}

/** A header built from plausible and hostile parts. */
function craftedFile(r: () => number): Uint8Array {
  const header: Record<string, unknown> = {};
  const n = Math.floor(r() * 4);
  let off = 0;
  for (let i = 0; i < n; i++) {
    const dtype = r() < 0.8 ? ST_DTYPES[Math.floor(r() * ST_DTYPES.length)] : randomValue(r);
    const shape = r() < 0.7 ? [1 + Math.floor(r() * 4)] : randomValue(r);
    const nb = Array.isArray(shape) && typeof dtype === 'string' && SIZES[dtype] ? (shape as number[]).reduce((a, b) => a * b, 1) * SIZES[dtype]! : 4;
    const offsets = r() < 0.7 ? [off, off + nb] : randomValue(r);
    const entry: Record<string, unknown> = { dtype, shape, data_offsets: offsets };
    if (r() < 0.1) delete entry[['dtype', 'shape', 'data_offsets'][Math.floor(r() * 3)]!];
    header[r() < 0.05 ? '__metadata__' : `w${i}`] = r() < 0.05 ? randomValue(r) : entry;
    off += Number.isFinite(nb) ? nb : 0;
  }
  if (r() < 0.2) header.__metadata__ = r() < 0.5 ? { k: randomValue(r) } : { k: 'v' };
  const data = Math.max(0, off + Math.floor(r() * 3) - 1);
  return craft(header, Math.min(data, 4096));
}

/** Case i of the corpus (deterministic for a given seed). */
export function fuzzCase(seed: number, i: number): Uint8Array {
  const r = prng(seed * 1_000_003 + i);
  const kind = i % 6;
  if (kind === 5) return craftedFile(r);
  const b = validFile(r);
  const hlen = Number(new DataView(b.buffer).getBigUint64(0, true));
  switch (kind) {
    case 0: { // byte flips, mostly in the header
      const flips = 1 + Math.floor(r() * 6);
      for (let k = 0; k < flips; k++) {
        const at = r() < 0.8 ? 8 + Math.floor(r() * hlen) : Math.floor(r() * b.length);
        b[at] = r() < 0.5 ? b[at]! ^ (1 << Math.floor(r() * 8)) : Math.floor(r() * 256);
      }
      return b;
    }
    case 1: // truncation
      return b.slice(0, Math.floor(r() * b.length));
    case 2: { // header-length edits
      const v = [0n, 1n, BigInt(hlen - 1), BigInt(hlen + 1), BigInt(hlen + 8), BigInt(b.length), 100_000_001n, 2n ** 63n, 2n ** 64n - 1n, BigInt(Math.floor(r() * 2 ** 32))];
      new DataView(b.buffer).setBigUint64(0, v[Math.floor(r() * v.length)]!, true);
      return b;
    }
    case 3: { // append or drop bytes at the end
      if (r() < 0.5) return b.slice(0, Math.max(0, b.length - 1 - Math.floor(r() * 3)));
      const out = new Uint8Array(b.length + 1 + Math.floor(r() * 8));
      out.set(b);
      return out;
    }
    default: { // splice the JSON text: delete or duplicate a span
      const text = Buffer.from(b.subarray(8, 8 + hlen)).toString('utf8');
      const a = Math.floor(r() * text.length), len = 1 + Math.floor(r() * 6);
      const edited = r() < 0.5 ? text.slice(0, a) + text.slice(a + len) : text.slice(0, a + len) + text.slice(a);
      return craft(edited, b.subarray(8 + hlen), { pad: r() < 0.5 });
    }
  }
}

/** The property every case must satisfy. Returns 'ok' or the error code; throws (failing the test) otherwise. */
export function checkCase(bytes: Uint8Array, name: string, open: (b: Uint8Array) => SafetensorsFile = (b) => new SafetensorsFile(b, name)): string {
  let f: SafetensorsFile;
  try {
    f = open(bytes);
  } catch (e) {
    if (isStreamlineError(e) && KNOWN_CODES.has(e.code)) return e.code;
    throw new Error(`${name}: unexpected error ${(e as Error)?.stack ?? e}`);
  }
  const hlen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  for (const n of f.names()) {
    const t: Tensor = f.tensor(n);
    const start = t.data.byteOffset, end = start + t.data.byteLength;
    if (start < 8 + hlen || end > f.size) throw new Error(`${name}: tensor ${n} [${start}, ${end}) outside the data section`);
    if (t.data.byteLength !== t.numel * dtypeSize(t.dtype)) throw new Error(`${name}: tensor ${n} size mismatch`);
    const v = t.toFloat32(); // reads every byte (through native code for f16/bf16)
    if (v.length !== t.numel) throw new Error(`${name}: tensor ${n} toFloat32 length`);
  }
  return 'ok';
}
