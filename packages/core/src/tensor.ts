/**
 * Typed, contiguous tensors. A Tensor is a dtype, a shape and a byte view (`data`); the bytes live in ordinary
 * JavaScript memory or in a read-only memory-mapped file (then `readonly` is true and the tensor is a zero-copy
 * view). A Tensor is directly usable as a native tensor argument (`{data, dtype, shape}`).
 */
import { type DType, dtypeSize, isDType, isFloatDType } from './dtype.js';
import { StreamlineError } from './errors.js';
import { native } from './native.js';

/** The typed array a dtype is viewed as: f16 and bf16 as raw 16-bit patterns, bool as bytes. */
export type TypedArrayOf<D extends DType> = D extends 'f32' ? Float32Array
  : D extends 'f16' | 'bf16' ? Uint16Array
  : D extends 'i32' ? Int32Array
  : D extends 'i64' ? BigInt64Array
  : Uint8Array;

/** Number of elements of a shape; throws E_SHAPE when a dimension is not a non-negative safe integer. */
export function shapeNumel(shape: readonly number[], what = 'shape'): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new StreamlineError('E_SHAPE', `${what}: dimensions must be non-negative integers, got [${shape.join(', ')}]`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) throw new StreamlineError('E_SHAPE', `${what}: element count of [${shape.join(', ')}] overflows`);
  }
  return n;
}

/**
 * A dtype, a shape and contiguous row-major bytes. Pass it straight to native functions (it has `data`, `dtype`
 * and `shape`). Tensors from safetensors files are zero-copy read-only views of the mapping (`readonly`).
 * @example
 * const t = Tensor.fromFloat32([1, 2, 3, 4], [2, 2], 'bf16');
 * t.toFloat32(); // Float32Array [1, 2, 3, 4]
 */
export class Tensor {
  /** Element type. */
  readonly dtype: DType;
  /** Dimensions, outermost first; `[]` is a scalar (one element). */
  readonly shape: readonly number[];
  /** The tensor's bytes (row-major, contiguous). Never write to it when `readonly` is true. */
  readonly data: Uint8Array;
  /** Number of elements (product of the shape). */
  readonly numel: number;
  /**
   * True when `data` views a read-only memory mapping (a safetensors file): writing to it would fault.
   * Copy with `clone()` before modifying.
   */
  readonly readonly: boolean;

  /**
   * Wraps existing bytes (no copy).
   * @throws StreamlineError E_DTYPE for an unknown dtype, E_SHAPE when the byte length is not numel × dtype size.
   * @example new Tensor('u8', [2, 2], new Uint8Array([1, 2, 3, 4]))
   */
  constructor(dtype: DType, shape: readonly number[], data: Uint8Array, options: { readonly?: boolean } = {}) {
    if (!isDType(dtype)) throw new StreamlineError('E_DTYPE', `unknown dtype '${String(dtype)}' (expected f32, f16, bf16, i32, i64, u8 or bool)`);
    const numel = shapeNumel(shape);
    if (!(data instanceof Uint8Array)) throw new StreamlineError('E_SHAPE', 'tensor data must be a Uint8Array');
    if (data.byteLength !== numel * dtypeSize(dtype)) {
      throw new StreamlineError('E_SHAPE', `tensor data has ${data.byteLength} bytes; shape [${shape.join(', ')}] of ${dtype} needs ${numel * dtypeSize(dtype)}`);
    }
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
    this.numel = numel;
    this.readonly = options.readonly ?? false;
  }

  /** Size in bytes. */
  get nbytes(): number {
    return this.data.byteLength;
  }

  /** A new zero-filled tensor. */
  static zeros(dtype: DType, shape: readonly number[]): Tensor {
    const n = shapeNumel(shape);
    return new Tensor(dtype, shape, new Uint8Array(n * dtypeSize(dtype)));
  }

  /**
   * A tensor of `dtype` holding `values` (converted in native code with round-to-nearest-even for f16/bf16).
   * @throws StreamlineError E_SHAPE when values.length does not match the shape; E_DTYPE for a non-float dtype.
   * @example Tensor.fromFloat32(new Float32Array([1, 2, 3, 4]), [2, 2], 'bf16')
   */
  static fromFloat32(values: Float32Array | readonly number[], shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const src = values instanceof Float32Array ? values : Float32Array.from(values);
    const n = shapeNumel(shape);
    if (src.length !== n) throw new StreamlineError('E_SHAPE', `fromFloat32: ${src.length} values for shape [${shape.join(', ')}] (${n} elements)`);
    if (!isFloatDType(dtype)) throw new StreamlineError('E_DTYPE', `fromFloat32: target dtype must be f32, f16 or bf16, got '${dtype}'`);
    const out = Tensor.zeros(dtype, shape);
    if (dtype === 'f32') out.data.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    else if (n > 0) native().convertFloats(out.data, dtype, src, 'f32');
    return out;
  }

  /** A tensor over a typed array's bytes (no copy): Float32Array → f32, Int32Array → i32, BigInt64Array → i64, Uint8Array → u8. */
  static fromTyped(values: Float32Array | Int32Array | BigInt64Array | Uint8Array, shape: readonly number[]): Tensor {
    const dtype: DType = values instanceof Float32Array ? 'f32' : values instanceof Int32Array ? 'i32' : values instanceof BigInt64Array ? 'i64' : 'u8';
    return new Tensor(dtype, shape, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }

  /** A writable copy in fresh memory. */
  clone(): Tensor {
    return new Tensor(this.dtype, this.shape, this.data.slice());
  }

  /**
   * Rows [start, end) of the outermost dimension, sharing the bytes (no copy; `readonly` carries over). Row-major
   * storage makes them contiguous, so a fused checkpoint tensor (Phi-3 `qkv_proj`) yields each part zero-copy.
   * @throws StreamlineError E_SHAPE for a scalar or a range outside [0, shape[0]]
   */
  rows(start: number, end: number): Tensor {
    const n = this.shape[0];
    if (n === undefined) throw new StreamlineError('E_SHAPE', 'rows: a scalar has no rows');
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n))
      throw new StreamlineError('E_SHAPE', `rows: [${start}, ${end}) is not inside [0, ${n}) of [${this.shape.join(', ')}]`);
    const rowBytes = n === 0 ? 0 : this.data.byteLength / n;
    return new Tensor(this.dtype, [end - start, ...this.shape.slice(1)], this.data.subarray(start * rowBytes, end * rowBytes), { readonly: this.readonly });
  }

  /** The same bytes with another shape of the same element count. @throws StreamlineError E_SHAPE */
  reshape(shape: readonly number[]): Tensor {
    if (shapeNumel(shape) !== this.numel) {
      throw new StreamlineError('E_SHAPE', `reshape: [${this.shape.join(', ')}] has ${this.numel} elements, [${shape.join(', ')}] has ${shapeNumel(shape)}`);
    }
    return new Tensor(this.dtype, shape, this.data, { readonly: this.readonly });
  }

  /**
   * The elements as the dtype's typed array (see TypedArrayOf): a zero-copy view when the bytes are aligned for
   * that type, otherwise an aligned copy. Check `isAligned()` when you need to know which.
   */
  typed(): TypedArrayOf<this['dtype']> {
    const d = this.isAligned() ? this.data : this.data.slice();
    const n = this.numel;
    switch (this.dtype) {
      case 'f32': return new Float32Array(d.buffer, d.byteOffset, n) as TypedArrayOf<this['dtype']>;
      case 'f16': case 'bf16': return new Uint16Array(d.buffer, d.byteOffset, n) as TypedArrayOf<this['dtype']>;
      case 'i32': return new Int32Array(d.buffer, d.byteOffset, n) as TypedArrayOf<this['dtype']>;
      case 'i64': return new BigInt64Array(d.buffer, d.byteOffset, n) as TypedArrayOf<this['dtype']>;
      default: return d as TypedArrayOf<this['dtype']>;
    }
  }

  /** True when `data` starts at a multiple of the element size, so typed() is a zero-copy view. */
  isAligned(): boolean {
    return this.data.byteOffset % dtypeSize(this.dtype) === 0;
  }

  /**
   * The values as a new Float32Array (always a copy). Floats convert exactly in native code; integers and bool
   * convert with JavaScript rounding (i64 beyond 2^24 loses precision).
   */
  toFloat32(): Float32Array {
    const out = new Float32Array(this.numel);
    if (this.numel === 0) return out;
    if (this.dtype === 'f32') {
      new Uint8Array(out.buffer).set(this.data);
    } else if (this.dtype === 'f16' || this.dtype === 'bf16') {
      native().convertFloats(out, 'f32', this.data, this.dtype);
    } else {
      const t = this.typed() as Int32Array | BigInt64Array | Uint8Array;
      for (let i = 0; i < out.length; i++) out[i] = Number(t[i]);
    }
    return out;
  }

  /**
   * This tensor in another dtype (a new tensor; a copy even when the dtype is the same). Float ↔ float
   * conversions round to nearest even in native code; integer and bool sources convert to floats.
   * @throws StreamlineError E_DTYPE when converting to an integer or bool dtype from a different dtype.
   * @example const w32 = weight.convert('f32');
   */
  convert(dtype: DType): Tensor {
    if (dtype === this.dtype) return this.clone();
    if (!isFloatDType(dtype)) {
      throw new StreamlineError('E_DTYPE', `convert: cannot convert ${this.dtype} to ${dtype} (only to f32, f16 and bf16)`);
    }
    if (isFloatDType(this.dtype)) {
      const out = Tensor.zeros(dtype, this.shape);
      if (this.numel > 0) native().convertFloats(out.data, dtype, this.data, this.dtype);
      return out;
    }
    return Tensor.fromFloat32(this.toFloat32(), this.shape, dtype);
  }

  /** A short description such as `bf16[256, 704]`. */
  toString(): string {
    return `${this.dtype}[${this.shape.join(', ')}]`;
  }
}
