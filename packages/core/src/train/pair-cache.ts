/**
 * Training pairs (h[s], h[s+n]) for a replacement, one calibration block at a time. Pairs are stored in the
 * cache dtype (bf16 by default) whether they live in memory or on disk, so where they live never changes the
 * result. When the pairs would exceed the budget they go to a file from the start (the total is known up front),
 * and are read back one block at a time: peak memory is the budget plus one batch.
 */
import fs from 'node:fs';
import path from 'node:path';
import { StreamlineError } from '../errors.js';
import { native } from '../native.js';

export type CacheDtype = 'bf16' | 'f32';

export interface PairCacheOptions {
  /** Blocks that will be added. */
  blocks: number;
  /** Rows (tokens) per block. */
  rows: number;
  /** Hidden size. */
  hidden: number;
  dtype?: CacheDtype;
  /** Bytes the cache may hold in memory; above it the pairs go to disk. */
  budgetBytes: number;
  /** Folder for the on-disk cache (created if needed). */
  dir: string;
  /** Keep the cache file after close(). */
  keep?: boolean;
  /** false: store x = h[s] only (the `lm` loss needs no target state); add() then takes no y. Default true. */
  targets?: boolean;
}

let cacheCounter = 0;

export class PairCache {
  readonly blocks: number;
  readonly rows: number;
  readonly hidden: number;
  readonly dtype: CacheDtype;
  /** 'memory' or 'disk'. */
  readonly location: 'memory' | 'disk';
  /** Path of the cache file when on disk. */
  readonly file: string | null;
  private readonly elemBytes: number;
  private readonly mem: Uint8Array[] = [];
  private fd: number | null = null;
  private added = 0;
  private readonly keep: boolean;
  /** Whether blocks carry y = h[s+n] (false: x only, read() returns an empty y). */
  readonly hasTargets: boolean;

  constructor(o: PairCacheOptions) {
    if (!(o.blocks >= 0 && o.rows > 0 && o.hidden > 0)) throw new StreamlineError('E_INVALID_OPTION', 'pair cache: invalid dimensions');
    this.blocks = o.blocks;
    this.rows = o.rows;
    this.hidden = o.hidden;
    this.dtype = o.dtype ?? 'bf16';
    this.elemBytes = this.dtype === 'bf16' ? 2 : 4;
    this.keep = o.keep ?? false;
    this.hasTargets = o.targets ?? true;
    const total = this.totalBytes;
    this.location = total > o.budgetBytes ? 'disk' : 'memory';
    if (this.location === 'disk') {
      // A per-process counter: two caches made in the same millisecond (train and validation) must not share a file.
      this.file = path.join(o.dir, `pairs-${process.pid}-${Date.now().toString(36)}-${cacheCounter++}.bin`);
      try {
        fs.mkdirSync(o.dir, { recursive: true });
        this.fd = fs.openSync(this.file, 'w+');
      } catch (e) {
        throw new StreamlineError('E_IO', `cannot create the pair cache in ${o.dir}: ${(e as Error).message}`, { file: o.dir, cause: e });
      }
    } else {
      this.file = null;
    }
  }

  /** Bytes of one block's pair (x and y). */
  get blockBytes(): number { return (this.hasTargets ? 2 : 1) * this.rows * this.hidden * this.elemBytes; }
  get totalBytes(): number { return this.blocks * this.blockBytes; }
  get size(): number { return this.added; }
  /** Bytes of pairs held in memory (0 when the cache is on disk). */
  get memoryBytes(): number { return this.mem.reduce((a, b) => a + b.byteLength, 0); }

  /** Appends one block: x = h[s], y = h[s+n], each [rows, hidden] f32 (y ignored without targets). */
  add(x: Float32Array, y: Float32Array): void {
    const n = this.rows * this.hidden;
    if (!this.hasTargets) y = x.subarray(0, 0);
    if (x.length !== n || (this.hasTargets && y.length !== n)) throw new StreamlineError('E_SHAPE', `pair cache: expected ${n} values per state`);
    if (this.added >= this.blocks) throw new StreamlineError('E_STATE', 'pair cache is full');
    const buf = new Uint8Array(this.blockBytes);
    const half = n * this.elemBytes;
    if (this.dtype === 'f32') {
      buf.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), 0);
      if (this.hasTargets) buf.set(new Uint8Array(y.buffer, y.byteOffset, y.byteLength), half);
    } else {
      native().convertFloats(new Uint16Array(buf.buffer, 0, n), 'bf16', x, 'f32');
      if (this.hasTargets) native().convertFloats(new Uint16Array(buf.buffer, half, n), 'bf16', y, 'f32');
    }
    if (this.fd !== null) fs.writeSync(this.fd, buf, 0, buf.length, this.added * this.blockBytes);
    else this.mem.push(buf);
    this.added++;
  }

  // Block i's stored bytes: the cache's own buffer (memory) or a fresh read (disk).
  private block(i: number): Uint8Array {
    if (!(i >= 0 && i < this.added)) throw new StreamlineError('E_RANGE', `pair cache: block ${i} not in [0, ${this.added})`);
    if (this.fd === null) return this.mem[i]!;
    const buf = new Uint8Array(this.blockBytes);
    const got = fs.readSync(this.fd, buf, 0, buf.length, i * this.blockBytes);
    if (got !== buf.length) throw new StreamlineError('E_IO', `pair cache ${this.file}: short read of block ${i}`);
    return buf;
  }

  /**
   * Block i as the bf16 bits it is stored in (bf16 caches only), without widening or copying in memory: views of the
   * cache's own buffer, which callers must not write (from disk, a fresh read). y is empty without targets. For
   * backends that widen on their side (the CUDA trainer's stageBf16): bf16 -> f32 is exact, so they see read()'s values.
   */
  readBf16(i: number): { x: Uint16Array; y: Uint16Array } {
    if (this.dtype !== 'bf16') throw new StreamlineError('E_STATE', 'pair cache: readBf16 needs a bf16 cache');
    const buf = this.block(i), n = this.rows * this.hidden;
    return {
      x: new Uint16Array(buf.buffer, buf.byteOffset, n),
      y: new Uint16Array(buf.buffer, buf.byteOffset + 2 * n, this.hasTargets ? n : 0),
    };
  }

  /** Block i as f32 states (a fresh copy). */
  read(i: number): { x: Float32Array; y: Float32Array } {
    const n = this.rows * this.hidden;
    const x = new Float32Array(n), y = new Float32Array(this.hasTargets ? n : 0);
    this.readInto(i, x, y);
    return { x, y };
  }

  /**
   * Block i as f32 states written into x and y (rows·hidden values each; y is not touched without targets): a batch
   * is assembled in place, without a fresh array per block.
   */
  readInto(i: number, x: Float32Array, y: Float32Array): void {
    const buf = this.block(i);
    const n = this.rows * this.hidden, half = n * this.elemBytes;
    if (x.length !== n || (this.hasTargets && y.length !== n)) throw new StreamlineError('E_SHAPE', `pair cache: expected ${n} values per state`);
    if (this.dtype === 'f32') {
      // The stored bytes may sit at any offset of a disk read's buffer: copied as bytes, not viewed as f32.
      new Uint8Array(x.buffer, x.byteOffset, x.byteLength).set(buf.subarray(0, half));
      if (this.hasTargets) new Uint8Array(y.buffer, y.byteOffset, y.byteLength).set(buf.subarray(half, 2 * half));
    } else {
      native().convertFloats(x, 'f32', new Uint16Array(buf.buffer, buf.byteOffset, n), 'bf16');
      if (this.hasTargets) native().convertFloats(y, 'f32', new Uint16Array(buf.buffer, buf.byteOffset + half, n), 'bf16');
    }
  }

  /** Releases memory and removes the file unless `keep`. */
  close(): void {
    this.mem.length = 0;
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
      if (!this.keep && this.file) fs.rmSync(this.file, { force: true });
    }
  }
}
